/* test/unit/fake_backend.c - see fake_backend.h. */
#include "fake_backend.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

struct fake_file {
  char *path;
  struct ci_buf content;
  struct fake_file *next;
};

enum op_kind { OP_IMAGE, OP_ID, OP_DONE, OP_EXEC, OP_FILE };

struct fake_op {
  struct fake_backend *fb;
  enum op_kind kind;
  uv_timer_t timer;
  void *data;
  backend_image_cb image_cb;
  backend_id_cb id_cb;
  backend_done_cb done_cb;
  backend_exit_cb exit_cb;
  backend_output_cb out_cb;
  backend_file_cb file_cb;
  char *id;
  bool fail;
  int code; /* of the error; 0 = CI_EFAIL */
  char *errmsg;
  /* exec */
  struct ci_strv lines;
  size_t line;
  struct cfg_env env;
  char *env_path;
  char *pidfile;
  int exit_code;
  const char *output; /* printed on stdout first */
  bool killed;
  bool finished;
  struct fake_op *next;
};

struct fake_backend *
fake_backend_get(struct backend *b)
{
  return container_of(b, struct fake_backend, base);
}

static struct fake_file *
file_get(struct fake_backend *fb, const char *path, bool create)
{
  for (struct fake_file *f = fb->files; f; f = f->next)
    if (!strcmp(f->path, path))
      return f;
  if (!create)
    return NULL;
  struct fake_file *f = xcalloc(1, sizeof(*f));
  f->path = xstrdup(path);
  ci_buf_init(&f->content);
  f->next = fb->files;
  fb->files = f;
  return f;
}

static void
op_closed(uv_handle_t *h)
{
  struct fake_op *op = h->data;
  struct fake_backend *fb = op->fb;
  fb->open_handles--;
  struct fake_op **pp = &fb->ops;
  while (*pp && *pp != op)
    pp = &(*pp)->next;
  if (*pp)
    *pp = op->next;
  ci_strv_release(&op->lines);
  cfg_env_release(&op->env);
  free(op->env_path);
  free(op->pidfile);
  free(op->id);
  free(op->errmsg);
  free(op);
}

static void
op_close(struct fake_op *op)
{
  op->finished = true;
  if (!uv_is_closing((uv_handle_t *)&op->timer))
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void run_exec(uv_timer_t *t);

static void
fire(uv_timer_t *t)
{
  struct fake_op *op = t->data;
  struct ci_error e = {.code = op->code ? op->code : CI_EFAIL, .msg = op->errmsg};
  const struct ci_error *err = op->fail ? &e : NULL;
  switch (op->kind) {
  case OP_IMAGE: {
    struct backend_image_info info = {CFG_ENV_INIT, (char *)"", (char *)"/", (char *)"sha256:fake"};
    cfg_env_set(&info.env, "PATH", "/usr/bin:/bin");
    cfg_env_set(&info.env, "HOME", "/root");
    op->image_cb(op->data, err ? NULL : &info, err);
    cfg_env_release(&info.env);
    break;
  }
  case OP_ID:
    op->id_cb(op->data, err ? NULL : op->id, err);
    break;
  case OP_DONE:
    op->done_cb(op->data, err);
    break;
  case OP_FILE: {
    struct fake_file *f = file_get(op->fb, op->id, false);
    op->file_cb(op->data, f ? f->content.s : NULL, f ? f->content.len : 0, NULL);
    break;
  }
  case OP_EXEC:
    run_exec(t);
    return;
  }
  op_close(op);
}

static struct fake_op *
op_new(struct fake_backend *fb, enum op_kind kind, void *data)
{
  struct fake_op *op = xcalloc(1, sizeof(*op));
  op->fb = fb;
  op->kind = kind;
  op->data = data;
  uv_timer_init(fb->base.loop, &op->timer);
  op->timer.data = op;
  fb->open_handles++;
  op->next = fb->ops;
  fb->ops = op;
  return op;
}

static int
f_image(struct backend *b, const char *ref, enum backend_pull_policy policy,
        backend_progress_cb on_progress, backend_image_cb cb, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  fb->pulls++;
  ci_strv_push_take(&fb->log, xasprintf("pull %s", ref ? ref : "(null)"));
  struct fake_op *op = op_new(fb, OP_IMAGE, data);
  op->image_cb = cb;
  if (!ref || (fb->fail_pull_image && !strcmp(ref, fb->fail_pull_image))) {
    op->fail = true;
    op->errmsg = xasprintf("manifest for %s not found", ref ? ref : "(null)");
  } else if ((ci_strv_contains(&fb->absent, ref) || ci_strv_contains(&fb->absent, "*")) &&
             !ci_strv_contains(&fb->built, ref)) {
    op->fail = true;
    op->code = -ENOENT;
    op->errmsg = xasprintf("image %s is not present", ref);
  }
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static int
f_create(struct backend *b, const struct backend_container_spec *spec, backend_id_cb cb,
         void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  fb->created++;
  fb->concurrent++;
  if (fb->concurrent > fb->max_concurrent)
    fb->max_concurrent = fb->concurrent;
  ci_strv_push_take(&fb->log, xasprintf("create %s", spec->name));
  if (spec->network_of)
    ci_strv_push_take(&fb->log, xasprintf("  network of %s", spec->network_of));
  for (size_t i = 0; i < spec->nvolumes; i++)
    ci_strv_push_take(&fb->log, xasprintf("  volume %s at %s", spec->volumes[i].name,
                                          spec->volumes[i].container_path));
  struct fake_op *op = op_new(fb, OP_ID, data);
  op->id_cb = cb;
  op->id = xasprintf("id-%s", spec->name);
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static int
f_copy(struct backend *b, const char *id, const char *tar, backend_done_cb cb, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  ci_strv_push_take(&fb->log, xasprintf("copy %s", id));
  struct fake_op *op = op_new(fb, OP_DONE, data);
  op->done_cb = cb;
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static char *
expand_vars(const char *s, const struct cfg_env *env)
{
  struct ci_buf b = CI_BUF_INIT;
  for (const char *p = s; *p;) {
    if (*p == '$') {
      const char *q = p + 1;
      while (*q == '_' || (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
             (*q >= '0' && *q <= '9'))
        q++;
      char *name = xstrndup(p + 1, (size_t)(q - p - 1));
      const char *v = cfg_env_get(env, name);
      ci_buf_adds(&b, v ? v : "");
      free(name);
      p = q;
      continue;
    }
    ci_buf_addc(&b, *p++);
  }
  return ci_buf_take(&b);
}

/* Interpret lines until the end or a sleep. */
static void
run_exec(uv_timer_t *t)
{
  struct fake_op *op = t->data;
  struct fake_backend *fb = op->fb;
  if (op->killed) {
    struct backend_exit ex = {137, 0};
    op->exit_cb(op->data, &ex, NULL);
    op_close(op);
    return;
  }
  if (op->output && op->out_cb) {
    op->out_cb(op->data, 1, op->output, strlen(op->output));
    op->output = NULL;
  }
  while (op->line < op->lines.n) {
    const char *l = op->lines.v[op->line++];
    if (!strncmp(l, "set ", 4) || !*l)
      continue;
    if (op->out_cb) {
      /* set -o verbose: the line is echoed */
      char *echo = xasprintf("%s\n", l);
      op->out_cb(op->data, 2, echo, strlen(echo));
      free(echo);
    }
    if (!strncmp(l, "echo ", 5)) {
      const char *redir = strstr(l, ">> $CIRRUS_ENV");
      if (redir) {
        char *kv = xstrndup(l + 5, (size_t)(redir - l - 5));
        size_t n = strlen(kv);
        while (n && kv[n - 1] == ' ')
          kv[--n] = '\0';
        struct fake_file *f = file_get(fb, op->env_path, true);
        ci_buf_addf(&f->content, "%s\n", kv);
        free(kv);
        continue;
      }
      char *text = expand_vars(l + 5, &op->env);
      char *line = xasprintf("%s\n", text);
      if (op->out_cb)
        op->out_cb(op->data, 1, line, strlen(line));
      free(text);
      free(line);
    } else if (!strncmp(l, "exit ", 5)) {
      op->exit_code = atoi(l + 5);
      break;
    } else if (!strcmp(l, "false")) {
      op->exit_code = 1;
      break;
    } else if (!strncmp(l, "sleep ", 6)) {
      uv_timer_start(&op->timer, run_exec, (uint64_t)atoi(l + 6), 0);
      return;
    }
  }
  struct backend_exit ex = {op->exit_code, 0};
  op->exit_cb(op->data, &ex, NULL);
  op_close(op);
}

static int
f_exec(struct backend *b, const char *id, const struct backend_exec_spec *spec,
       backend_output_cb on_output, backend_exit_cb on_exit, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  fb->execs++;
  struct fake_op *op = op_new(fb, OP_EXEC, data);
  op->exit_cb = on_exit;
  op->out_cb = on_output;
  op->id = xstrdup(id);
  const char *const *argv = spec->argv;
  if (argv[3] && !strcmp(argv[3], "cirrus-kill")) {
    /* kill the exec whose pid file matches */
    ci_strv_push_take(&fb->log, xasprintf("kill %s", argv[4]));
    for (struct fake_op *o = fb->ops; o; o = o->next)
      if (o->kind == OP_EXEC && o->pidfile && !strcmp(o->pidfile, argv[4]) && !o->finished) {
        o->killed = true;
        uv_timer_start(&o->timer, run_exec, 0, 0);
      }
  } else if (argv[3] && !strcmp(argv[3], "cirrus-internal")) {
    ci_strv_push(&fb->log, "exec internal");
    if (strstr(argv[2], "/proc/net/tcp")) {
      op->output = fb->port_wait_output;
      op->exit_code = fb->port_wait_code;
    }
  } else if (argv[3] && !strcmp(argv[3], "cirrus-file")) {
    ci_strv_push_take(&fb->log, xasprintf("file %s=%s", argv[4], argv[5]));
  } else if (argv[3] && !strcmp(argv[3], "cirrus-step")) {
    const char *script = argv[4];
    ci_strv_push_take(&fb->log, xasprintf("exec step %s", argv[5]));
    op->pidfile = xasprintf("/tmp/cirrus-ci/step-%s.pid", argv[5]);
    const char *p = script;
    for (;;) {
      const char *nl = strchr(p, '\n');
      if (!nl) {
        ci_strv_push(&op->lines, p);
        break;
      }
      ci_strv_push_take(&op->lines, xstrndup(p, (size_t)(nl - p)));
      p = nl + 1;
    }
    if (spec->env)
      cfg_env_copy(&op->env, spec->env);
    const char *ep = spec->env ? cfg_env_get(spec->env, "CIRRUS_ENV") : NULL;
    op->env_path = xstrdup(ep ? ep : "/nonexistent");
  }
  uv_timer_start(&op->timer, run_exec, 0, 0);
  return 0;
}

static int
f_read_file(struct backend *b, const char *id, const char *path, size_t max, backend_file_cb cb,
            void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  struct fake_op *op = op_new(fb, OP_FILE, data);
  op->file_cb = cb;
  op->id = xstrdup(path);
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static int
f_remove(struct backend *b, const char *id, backend_done_cb cb, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  fb->removed++;
  fb->concurrent--;
  ci_strv_push_take(&fb->log, xasprintf("remove %s", id));
  /* Everything running in it dies. */
  for (struct fake_op *o = fb->ops; o; o = o->next)
    if (o->kind == OP_EXEC && o->id && !strcmp(o->id, id) && !o->finished) {
      o->killed = true;
      uv_timer_start(&o->timer, run_exec, 0, 0);
    }
  struct fake_op *op = op_new(fb, OP_DONE, data);
  op->done_cb = cb;
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static int
f_done_op(struct backend *b, char *logline, backend_done_cb cb, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  ci_strv_push_take(&fb->log, logline);
  struct fake_op *op = op_new(fb, OP_DONE, data);
  op->done_cb = cb;
  uv_timer_start(&op->timer, fire, 0, 0);
  return 0;
}

static int
f_copy_out(struct backend *b, const char *id, const char *path, const char *tar_path,
           backend_done_cb cb, void *data)
{
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, tar_path) != ARCHIVE_OK) {
    archive_write_free(a);
    return -EIO;
  }
  struct archive_entry *e = archive_entry_new();
  char *name = xasprintf("%s/", base);
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFDIR);
  archive_entry_set_perm(e, 0755);
  archive_write_header(a, e);
  free(name);
  archive_entry_clear(e);
  name = xasprintf("%s/f.txt", base);
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, 5);
  archive_write_header(a, e);
  archive_write_data(a, "fake\n", 5);
  free(name);
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return f_done_op(b, xasprintf("copy_out %s %s", id, path), cb, data);
}

static int
f_volume_create(struct backend *b, const char *name, const char *run_id, backend_done_cb cb,
                void *data)
{
  (void)run_id;
  fake_backend_get(b)->volumes_alive++;
  return f_done_op(b, xasprintf("volume %s", name), cb, data);
}

static int
f_volume_remove(struct backend *b, const char *name, backend_done_cb cb, void *data)
{
  fake_backend_get(b)->volumes_alive--;
  return f_done_op(b, xasprintf("rmvolume %s", name), cb, data);
}

static int
f_image_build(struct backend *b, const struct backend_build_spec *spec,
              backend_progress_cb on_progress, backend_done_cb cb, void *data)
{
  struct fake_backend *fb = fake_backend_get(b);
  fb->builds++;
  ci_strv_push(&fb->built, spec->tag);
  if (on_progress)
    on_progress(data, "Step 1/1 : FROM scratch");
  return f_done_op(b, xasprintf("build %s %s", spec->tag, spec->dockerfile), cb, data);
}

static void
f_close(struct backend *b, void (*on_closed)(void *data), void *data)
{
  (void)b;
  if (on_closed)
    on_closed(data);
}

static const struct backend_ops fake_ops = {
    .name = "fake",
    .image_prepare = f_image,
    .container_create = f_create,
    .copy_in = f_copy,
    .exec = f_exec,
    .read_file = f_read_file,
    .container_remove = f_remove,
    .image_build = f_image_build,
    .volume_create = f_volume_create,
    .volume_remove = f_volume_remove,
    .copy_out = f_copy_out,
    .close = f_close,
};

struct backend *
fake_backend_new(uv_loop_t *loop)
{
  struct fake_backend *fb = xcalloc(1, sizeof(*fb));
  fb->base.ops = &fake_ops;
  fb->base.loop = loop;
  fb->base.description = xstrdup("fake");
  return &fb->base;
}

void
fake_backend_free(struct backend *b)
{
  struct fake_backend *fb = fake_backend_get(b);
  for (struct fake_file *f = fb->files, *n; f; f = n) {
    n = f->next;
    free(f->path);
    ci_buf_release(&f->content);
    free(f);
  }
  ci_strv_release(&fb->log);
  ci_strv_release(&fb->absent);
  ci_strv_release(&fb->built);
  free(fb->base.description);
  free(fb);
}
