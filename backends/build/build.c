/* backends/build/build.c - executing a Dockerfile: the build state, the layer cache, RUN.
 *
 * The state is the base image's layers and config plus what each instruction changes.  Every
 * instruction extends a key (sha256 of the parent key, the instruction text and the build
 * arguments in scope; COPY/ADD add the digest of the layer they make).  RUN results are cached
 * under that key in <store>/build-cache/<key>.json (the layer's diff id): a rebuild with
 * nothing changed runs nothing.  COPY/ADD layers are content-addressed in the store already.
 */
#include "build.h"
#include "internal.h"

#include "backends/image/image.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void
bld__sha256_hex(const void *p, size_t n, char out[65])
{
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct state {
  struct img_store *store;
  const struct bld_opts *o;
  const char *file;
  struct ci_strv diff_ids;
  struct ci_strv env;    /* "K=V" (ENV) */
  struct ci_strv args;   /* "K=V" (ARG values in scope) */
  struct ci_strv labels; /* "K=V" */
  struct ci_strv entrypoint, cmd;
  char *workdir, *user, *os, *arch, *variant;
  char key[65];
  unsigned seq;
  size_t step, nsteps;
};

static void progress(struct state *s, const char *fmt, ...) CI_PRINTF(2, 3);
static void
progress(struct state *s, const char *fmt, ...)
{
  if (!s->o->on_progress)
    return;
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *line = xvasprintf(fmt, ap);
  va_end(ap);
  s->o->on_progress(line, s->o->progress_data);
}

static const char *
kv_get(const struct ci_strv *v, const char *name)
{
  size_t n = strlen(name);
  for (size_t i = v->n; i-- > 0;)
    if (!strncmp(v->v[i], name, n) && v->v[i][n] == '=')
      return v->v[i] + n + 1;
  return NULL;
}

static void
kv_set(struct ci_strv *v, const char *name, const char *value)
{
  size_t n = strlen(name);
  for (size_t i = 0; i < v->n; i++)
    if (!strncmp(v->v[i], name, n) && v->v[i][n] == '=') {
      free(v->v[i]);
      v->v[i] = xasprintf("%s=%s", name, value);
      return;
    }
  ci_strv_push_take(v, xasprintf("%s=%s", name, value));
}

static const char *
lookup(const char *name, void *data)
{
  struct state *s = data;
  const char *v = kv_get(&s->env, name);
  return v ? v : kv_get(&s->args, name);
}

static void
strv_copy(struct ci_strv *dst, const struct ci_strv *src)
{
  ci_strv_release(dst);
  for (size_t i = 0; i < src->n; i++)
    ci_strv_push(dst, src->v[i]);
}

/* key = sha256(key \n text \n args \n extra) */
static void
advance_key(struct state *s, const char *text, const char *extra)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_addf(&b, "%s\n%s\n", s->key, text);
  for (size_t i = 0; i < s->args.n; i++)
    ci_buf_addf(&b, "%s\n", s->args.v[i]);
  ci_buf_addf(&b, "\n%s", extra ? extra : "");
  bld__sha256_hex(b.s, b.len, s->key);
  ci_buf_release(&b);
}

static int
instr_error(struct state *s, const struct bld_instr *in, struct ci_error **err)
{
  return ci_error_prefix(err, "%s:%u: %s", s->file, in->line, in->text);
}

static const char *
build_arg(const struct bld_opts *o, const char *name)
{
  return o->args ? kv_get(o->args, name) : NULL;
}

/* ARG NAME[=default]...: the build argument if given, else the default. */
static void
declare_args(struct state *s, const struct ci_strv *words)
{
  for (size_t i = 0; i < words->n; i++) {
    const char *w = words->v[i];
    const char *eq = strchr(w, '=');
    cleanup_free char *name = eq ? xstrndup(w, (size_t)(eq - w)) : xstrdup(w);
    const char *v = build_arg(s->o, name);
    if (v)
      kv_set(&s->args, name, v);
    else if (eq)
      kv_set(&s->args, name, eq + 1);
  }
}

/* Unique in this process: several builds may run at once (one per worker thread). */
static unsigned
next_seq(struct state *s)
{
  static unsigned counter;
  s->seq = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
  return s->seq;
}

/* A temporary layer tar in <store>/build-cache (made on first use). */
static int
temp_tar(struct state *s, char **out, struct ci_error **err)
{
  cleanup_free char *dir = xasprintf("%s/build-cache", img_store_get_root(s->store));
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return ci_error_make(err, -errno, "cannot create %s: %s", dir, strerror(errno));
  *out = xasprintf("%s/layer-%ld-%u.tar.tmp", dir, (long)getpid(), next_seq(s));
  return 0;
}

/* ---------------------------------------------------------------- processes */

static int
spawn(const char *helper, char **argv, int in_fd, int out_fd, pid_t *pid, struct ci_error **err)
{
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  int rc = posix_spawn(pid, helper, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc)
    return ci_error_make(err, -rc, "cannot run %s: %s", helper, strerror(rc));
  return 0;
}

static int
wait_pid(pid_t pid)
{
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return st;
}

/* Read lines from fd until EOF (or, with stop_at_ready, a "ready PID" line), passing them to
 * the progress callback; *tail keeps the last lines for error messages.  Returns the ready pid,
 * 0 at EOF, or -1 when canceled. */
static long
pump(struct state *s, int fd, bool stop_at_ready, pid_t child, struct ci_buf *tail)
{
  struct ci_buf line = CI_BUF_INIT;
  long ready = 0;
  for (;;) {
    if (s->o->cancel && *s->o->cancel) {
      if (child > 0)
        kill(child, SIGTERM); /* exec kills its step, create tears its container down */
      ready = -1;
      break;
    }
    struct pollfd pf = {fd, POLLIN, 0};
    int n = poll(&pf, 1, 200);
    if (n < 0 && errno != EINTR)
      break;
    if (n <= 0)
      continue;
    char buf[4096];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != '\n') {
        if (line.len < 65536)
          ci_buf_addc(&line, buf[i]);
        continue;
      }
      const char *l = ci_buf_str(&line);
      if (stop_at_ready && ci_str_has_prefix(l, "ready ")) {
        ready = atol(l + 6);
        ci_buf_release(&line);
        return ready > 0 ? ready : 0;
      }
      if (s->o->on_progress)
        s->o->on_progress(l, s->o->progress_data);
      if (tail->len > 8192)
        ci_buf_reset(tail);
      ci_buf_addf(tail, "%s\n", l);
      ci_buf_reset(&line);
    }
  }
  if (line.len && s->o->on_progress)
    s->o->on_progress(ci_buf_str(&line), s->o->progress_data);
  ci_buf_release(&line);
  return ready;
}

static char *
last_line(const struct ci_buf *b)
{
  const char *s = ci_buf_str(b);
  size_t len = b->len;
  while (len && s[len - 1] == '\n')
    len--;
  const char *start = s;
  for (size_t i = 0; i < len; i++)
    if (s[i] == '\n')
      start = s + i + 1;
  const char *p = "cirrus-runtime: ";
  if (ci_str_has_prefix(start, p))
    start += strlen(p);
  return xstrndup(start, (size_t)(s + len - start));
}

/* Run a helper to completion, its output shown; returns its wait status or < 0. */
static int
run_helper(struct state *s, char **argv, struct ci_buf *tail, struct ci_error **err)
{
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return ci_error_make(err, -errno, "pipe: %s", strerror(errno));
  pid_t pid;
  int ret = spawn(s->o->helper, argv, -1, p[1], &pid, err);
  close(p[1]);
  if (ret < 0) {
    close(p[0]);
    return ret;
  }
  long r = pump(s, p[0], false, pid, tail);
  close(p[0]);
  int st = wait_pid(pid);
  if (r < 0)
    return ci_error_make(err, CI_ECANCELED, "build canceled");
  return st;
}

struct container {
  pid_t monitor;
  int stop_fd;
  int out_fd; /* the monitor's output, drained at the end (closing it would kill it) */
  long pid;
  char *run_dir;
};

static int
container_start(struct state *s, struct container *c, struct ci_error **err)
{
  c->monitor = -1;
  c->stop_fd = -1;
  c->out_fd = -1;
  c->run_dir = xasprintf("%s/build-%ld-%u", s->o->runs_dir, (long)getpid(), next_seq(s));
  if (mkdir(c->run_dir, 0700) < 0)
    return ci_error_make(err, -errno, "cannot create %s: %s", c->run_dir, strerror(errno));
  struct ci_strv a = CI_STRV_INIT;
  char ppid[24];
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  ci_strv_push(&a, "cirrus-runtime");
  ci_strv_push(&a, "create");
  ci_strv_push(&a, "--ppid");
  ci_strv_push(&a, ppid);
  ci_strv_push(&a, "--run-dir");
  ci_strv_push(&a, c->run_dir);
  ci_strv_push(&a, "--hostname");
  ci_strv_push(&a, "buildkitsandbox");
  ci_strv_push(&a, "--image-tmp"); /* /tmp belongs to the image being built */
  const char *root = img_store_get_root(s->store);
  for (size_t i = 0; i < s->diff_ids.n; i++) {
    ci_strv_push(&a, "--layer");
    ci_strv_push_take(&a, xasprintf("%s/layers/%s/diff", root, s->diff_ids.v[i] + 7));
  }
  ci_strv_push_take(&a, NULL);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) < 0)
    return ci_error_make(err, -errno, "pipe: %s", strerror(errno));
  if (pipe2(out, O_CLOEXEC) < 0) {
    close(in[0]);
    close(in[1]);
    return ci_error_make(err, -errno, "pipe: %s", strerror(errno));
  }
  int ret = spawn(s->o->helper, a.v, in[0], out[1], &c->monitor, err);
  ci_strv_release(&a);
  close(in[0]);
  close(out[1]);
  if (ret < 0) {
    close(in[1]);
    close(out[0]);
    rmdir(c->run_dir);
    return ret;
  }
  c->stop_fd = in[1];
  struct ci_buf tail = CI_BUF_INIT;
  long pid = pump(s, out[0], true, c->monitor, &tail);
  c->out_fd = out[0];
  if (pid <= 0) {
    cleanup_free char *why = last_line(&tail);
    ret = pid < 0 ? ci_error_make(err, CI_ECANCELED, "build canceled")
                  : ci_error_make(err, CI_EFAIL, "cannot create the build container: %s",
                                  *why ? why : "the runtime helper failed");
  }
  ci_buf_release(&tail);
  c->pid = pid;
  return ret;
}

static void
container_stop(struct container *c)
{
  if (c->stop_fd >= 0)
    close(c->stop_fd); /* EOF: the monitor tears the container down and removes the run dir */
  if (c->out_fd >= 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(c->out_fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    }
    close(c->out_fd);
  }
  if (c->monitor > 0)
    wait_pid(c->monitor);
  free(c->run_dir);
}

/* ---------------------------------------------------------------- instructions */

static void
run_env(struct state *s, struct ci_strv *out)
{
  for (size_t i = 0; i < s->args.n; i++) {
    const char *eq = strchr(s->args.v[i], '=');
    cleanup_free char *k = xstrndup(s->args.v[i], (size_t)(eq - s->args.v[i]));
    if (!kv_get(&s->env, k))
      ci_strv_push(out, s->args.v[i]);
  }
  for (size_t i = 0; i < s->env.n; i++)
    ci_strv_push(out, s->env.v[i]);
  if (!kv_get(&s->env, "PATH"))
    ci_strv_push(out, "PATH=" DEFAULT_PATH);
  if (!kv_get(&s->env, "HOME"))
    ci_strv_push(out, "HOME=/root");
  ci_strv_push(out, "HOSTNAME=buildkitsandbox");
}

static void
exec_args(struct state *s, struct ci_strv *a, long pid, const char *run_dir, const char *ppid)
{
  ci_strv_push(a, "cirrus-runtime");
  ci_strv_push(a, "exec");
  ci_strv_push(a, "--ppid");
  ci_strv_push(a, ppid);
  ci_strv_push(a, "--pid");
  ci_strv_push_take(a, xasprintf("%ld", pid));
  ci_strv_push(a, "--run-dir");
  ci_strv_push(a, run_dir);
  if (s->workdir) {
    ci_strv_push(a, "--cwd");
    ci_strv_push(a, s->workdir);
  }
  if (s->user && *s->user) {
    ci_strv_push(a, "--user");
    ci_strv_push(a, s->user);
  }
  struct ci_strv env = CI_STRV_INIT;
  run_env(s, &env);
  for (size_t i = 0; i < env.n; i++) {
    ci_strv_push(a, "--env");
    ci_strv_push(a, env.v[i]);
  }
  ci_strv_release(&env);
  ci_strv_push(a, "--");
}

static int
do_run(struct state *s, const struct bld_instr *in, struct ci_error **err)
{
  advance_key(s, in->text, NULL);
  const char *root = img_store_get_root(s->store);
  cleanup_free char *cache = xasprintf("%s/build-cache/%s.json", root, s->key);
  json_error_t je;
  json_t *hit = json_load_file(cache, 0, &je);
  if (hit) {
    const char *d = json_string_value(json_object_get(hit, "diff_id"));
    cleanup_free char *meta =
        d && strlen(d) == 71 ? xasprintf("%s/layers/%s/meta.json", root, d + 7) : NULL;
    if (meta && access(meta, F_OK) == 0) {
      progress(s, " ---> Using cache %.19s", d);
      ci_strv_push(&s->diff_ids, d);
      json_decref(hit);
      return 0;
    }
    json_decref(hit);
  }
  struct container c;
  int ret = container_start(s, &c, err);
  if (ret < 0) {
    if (c.run_dir && c.monitor < 0) {
      free(c.run_dir);
      return ret;
    }
    container_stop(&c);
    return ret;
  }
  char ppid[24];
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  struct ci_buf tail = CI_BUF_INIT;
  if (s->workdir && strcmp(s->workdir, "/")) {
    /* Docker creates the working directory; busybox and the like have mkdir. */
    struct ci_strv a = CI_STRV_INIT;
    ci_strv_push(&a, "cirrus-runtime");
    ci_strv_push(&a, "exec");
    ci_strv_push(&a, "--ppid");
    ci_strv_push(&a, ppid);
    ci_strv_push(&a, "--pid");
    ci_strv_push_take(&a, xasprintf("%ld", c.pid));
    ci_strv_push(&a, "--run-dir");
    ci_strv_push(&a, c.run_dir);
    ci_strv_push(&a, "--");
    ci_strv_push(&a, "mkdir");
    ci_strv_push(&a, "-p");
    ci_strv_push(&a, s->workdir);
    ci_strv_push_take(&a, NULL);
    struct ci_buf ignore = CI_BUF_INIT;
    int st = run_helper(s, a.v, &ignore, err);
    ci_buf_release(&ignore);
    ci_strv_release(&a);
    if (st < 0) {
      container_stop(&c);
      return st;
    }
  }
  struct ci_strv a = CI_STRV_INIT;
  exec_args(s, &a, c.pid, c.run_dir, ppid);
  if (in->json) {
    for (size_t i = 0; i < in->argv.n; i++)
      ci_strv_push(&a, in->argv.v[i]);
  } else {
    ci_strv_push(&a, "/bin/sh");
    ci_strv_push(&a, "-c");
    ci_strv_push(&a, in->argv.v[0]);
  }
  ci_strv_push_take(&a, NULL);
  int st = run_helper(s, a.v, &tail, err);
  ci_strv_release(&a);
  if (st >= 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    ret = ci_error_make(err, CI_EFAIL, "the command returned a non-zero code: %d", code);
  } else if (st < 0) {
    ret = st;
  }
  cleanup_free char *tar = NULL;
  if (ret == 0) {
    ret = temp_tar(s, &tar, err);
  }
  if (ret == 0) {
    struct ci_strv d = CI_STRV_INIT;
    ci_strv_push(&d, "cirrus-runtime");
    ci_strv_push(&d, "diff");
    ci_strv_push(&d, "--ppid");
    ci_strv_push(&d, ppid);
    ci_strv_push(&d, "--pid");
    ci_strv_push_take(&d, xasprintf("%ld", c.pid));
    ci_strv_push_take(&d, xasprintf("%s/upper", c.run_dir));
    ci_strv_push(&d, tar);
    ci_strv_push_take(&d, NULL);
    struct ci_buf dt = CI_BUF_INIT;
    st = run_helper(s, d.v, &dt, err);
    ci_strv_release(&d);
    if (st >= 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      cleanup_free char *why = last_line(&dt);
      ret = ci_error_make(err, CI_EFAIL, "cannot make the layer: %s", why);
    } else if (st < 0) {
      ret = st;
    }
    ci_buf_release(&dt);
  }
  container_stop(&c);
  ci_buf_release(&tail);
  cleanup_free char *diff_id = NULL;
  if (ret == 0)
    ret = img_store_add_layer(s->store, tar, &diff_id, err);
  if (tar)
    unlink(tar);
  if (ret < 0)
    return ret;
  ci_strv_push(&s->diff_ids, diff_id);
  cleanup_free char *dir = xasprintf("%s/build-cache", root);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return ci_error_make(err, -errno, "cannot create %s: %s", dir, strerror(errno));
  json_t *j = json_pack("{s:s, s:s}", "diff_id", diff_id, "instruction", in->text);
  cleanup_free char *tmp = xasprintf("%s.tmp-%ld", cache, (long)getpid());
  if (json_dump_file(j, tmp, JSON_COMPACT) == 0)
    rename(tmp, cache);
  else
    unlink(tmp);
  json_decref(j);
  progress(s, " ---> %.19s", diff_id);
  return 0;
}

static int
do_copy(struct state *s, const struct bld_instr *in, struct ci_error **err)
{
  struct ci_strv w = CI_STRV_INIT;
  int ret = 0;
  if (in->json) {
    for (size_t i = 0; i < in->argv.n; i++)
      ci_strv_push(&w, in->argv.v[i]);
  } else {
    ret = bld_words(in->rest, lookup, s, &w, err);
  }
  if (ret < 0)
    return ret;
  const char *chown = NULL;
  for (size_t i = 0; i < in->flags.n; i++)
    if (ci_str_has_prefix(in->flags.v[i], "--chown="))
      chown = in->flags.v[i] + 8;
  struct bld__copy c = {
      .context_tar = s->o->context_tar,
      .sources = (const char *const *)w.v,
      .n_sources = w.n - 1,
      .dest = w.v[w.n - 1],
      .workdir = s->workdir ? s->workdir : "/",
      .chown = chown,
      .extract_archives = in->kind == BLD_ADD,
  };
  cleanup_free char *tar = NULL;
  ret = temp_tar(s, &tar, err);
  if (ret == 0)
    ret = bld__copy_layer(&c, tar, err);
  ci_strv_release(&w);
  cleanup_free char *diff_id = NULL;
  if (ret == 0)
    ret = img_store_add_layer(s->store, tar, &diff_id, err);
  if (tar)
    unlink(tar);
  if (ret < 0)
    return ret;
  advance_key(s, in->text, diff_id);
  ci_strv_push(&s->diff_ids, diff_id);
  progress(s, " ---> %.19s", diff_id);
  return 0;
}

static int
do_config(struct state *s, const struct bld_instr *in, struct ci_error **err)
{
  struct ci_strv w = CI_STRV_INIT;
  int ret = 0;
  bool words = in->kind != BLD_CMD && in->kind != BLD_ENTRYPOINT;
  if (words && (ret = bld_words(in->rest, lookup, s, &w, err)) < 0)
    return ret;
  switch (in->kind) {
  case BLD_ENV:
  case BLD_LABEL: {
    struct ci_strv *dst = in->kind == BLD_ENV ? &s->env : &s->labels;
    if (!strchr(w.v[0], '=')) { /* ENV KEY VALUE... (legacy form) */
      struct ci_buf v = CI_BUF_INIT;
      for (size_t i = 1; i < w.n; i++)
        ci_buf_addf(&v, "%s%s", i > 1 ? " " : "", w.v[i]);
      kv_set(dst, w.v[0], ci_buf_str(&v));
      ci_buf_release(&v);
    } else {
      for (size_t i = 0; i < w.n; i++) {
        char *eq = strchr(w.v[i], '=');
        *eq = '\0';
        kv_set(dst, w.v[i], eq + 1);
      }
    }
    break;
  }
  case BLD_ARG:
    declare_args(s, &w);
    break;
  case BLD_WORKDIR: {
    const char *d = w.v[0];
    char *nw = d[0] == '/'
                   ? xstrdup(d)
                   : xasprintf("%s/%s", s->workdir && strcmp(s->workdir, "/") ? s->workdir : "", d);
    free(s->workdir);
    s->workdir = nw;
    break;
  }
  case BLD_USER:
    free(s->user);
    s->user = xstrdup(w.v[0]);
    break;
  case BLD_CMD:
  case BLD_ENTRYPOINT: {
    struct ci_strv *dst = in->kind == BLD_CMD ? &s->cmd : &s->entrypoint;
    ci_strv_release(dst);
    if (in->json) {
      strv_copy(dst, &in->argv);
    } else if (in->argv.n) {
      ci_strv_push(dst, "/bin/sh");
      ci_strv_push(dst, "-c");
      ci_strv_push(dst, in->argv.v[0]);
    }
    if (in->kind == BLD_ENTRYPOINT)
      ci_strv_release(&s->cmd); /* Docker: ENTRYPOINT resets an inherited CMD */
    break;
  }
  case BLD_EXPOSE:
    break; /* containers share the host's network: every port is reachable */
  default:
    CI_BUG("not a config instruction: %d", (int)in->kind);
  }
  ci_strv_release(&w);
  advance_key(s, in->text, NULL);
  return 0;
}

static json_t *
strv_json(const struct ci_strv *v)
{
  json_t *a = json_array();
  for (size_t i = 0; i < v->n; i++)
    json_array_append_new(a, json_string(v->v[i]));
  return a;
}

static char *
config_json(struct state *s, size_t *len)
{
  json_t *cfg = json_object();
  json_object_set_new(cfg, "Env", strv_json(&s->env));
  if (s->entrypoint.n)
    json_object_set_new(cfg, "Entrypoint", strv_json(&s->entrypoint));
  if (s->cmd.n)
    json_object_set_new(cfg, "Cmd", strv_json(&s->cmd));
  if (s->workdir)
    json_object_set_new(cfg, "WorkingDir", json_string(s->workdir));
  if (s->user)
    json_object_set_new(cfg, "User", json_string(s->user));
  if (s->labels.n) {
    json_t *l = json_object();
    for (size_t i = 0; i < s->labels.n; i++) {
      char *eq = strchr(s->labels.v[i], '=');
      cleanup_free char *k = xstrndup(s->labels.v[i], (size_t)(eq - s->labels.v[i]));
      json_object_set_new(l, k, json_string(eq + 1));
    }
    json_object_set_new(cfg, "Labels", l);
  }
  json_t *j = json_pack("{s:s, s:s, s:o, s:{s:s, s:o}}", "architecture",
                        s->arch ? s->arch : "amd64", "os", s->os ? s->os : "linux", "config", cfg,
                        "rootfs", "type", "layers", "diff_ids", strv_json(&s->diff_ids));
  if (s->variant)
    json_object_set_new(j, "variant", json_string(s->variant));
  char *out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  *len = strlen(out);
  return out;
}

static int
do_from(struct state *s, const struct bld_instr *in, struct ci_error **err)
{
  struct ci_strv w = CI_STRV_INIT;
  int ret = bld_words(in->rest, lookup, s, &w, err);
  if (ret < 0)
    return ret;
  progress(s, "Step %zu/%zu : FROM %s", s->step, s->nsteps, w.v[0]);
  struct img_image *base = NULL;
  if (strcmp(w.v[0], "scratch")) {
    struct img_pull_opts po = IMG_PULL_OPTS_INIT;
    po.cancel = s->o->cancel;
    po.policy = s->o->pull ? IMG_PULL_ALWAYS : IMG_PULL_MISSING;
    ret = img_pull(s->store, w.v[0], &po, &base, err);
  }
  ci_strv_release(&w);
  if (ret < 0)
    return ret;
  ci_strv_release(&s->args); /* ARGs before FROM are for FROM only */
  if (base) {
    strv_copy(&s->diff_ids, &base->diff_ids);
    strv_copy(&s->env, &base->config.env);
    strv_copy(&s->entrypoint, &base->config.entrypoint);
    strv_copy(&s->cmd, &base->config.cmd);
    s->workdir = base->config.working_dir && *base->config.working_dir
                     ? xstrdup(base->config.working_dir)
                     : NULL;
    s->user = base->config.user && *base->config.user ? xstrdup(base->config.user) : NULL;
    s->os = base->config.os ? xstrdup(base->config.os) : NULL;
    s->arch = base->config.architecture ? xstrdup(base->config.architecture) : NULL;
    s->variant = base->config.variant ? xstrdup(base->config.variant) : NULL;
    bld__sha256_hex(base->id, strlen(base->id), s->key);
    img_image_free(base);
  } else {
    bld__sha256_hex("scratch", 7, s->key);
  }
  return 0;
}

static void
state_release(struct state *s)
{
  ci_strv_release(&s->diff_ids);
  ci_strv_release(&s->env);
  ci_strv_release(&s->args);
  ci_strv_release(&s->labels);
  ci_strv_release(&s->entrypoint);
  ci_strv_release(&s->cmd);
  free(s->workdir);
  free(s->user);
  free(s->os);
  free(s->arch);
  free(s->variant);
}

int
bld_build(struct img_store *store, const struct bld_opts *o, struct img_image **out,
          struct ci_error **err)
{
  cleanup_free char *text = NULL;
  int ret = bld__context_read(o->context_tar, o->dockerfile, 1 << 20, &text, err);
  if (ret < 0)
    return ret;
  struct bld_dockerfile df;
  if ((ret = bld_parse(o->dockerfile, text, &df, err)) < 0)
    return ret;
  struct state s = {.store = store, .o = o, .file = df.file};
  for (size_t i = 0; ret == 0 && i < df.n; i++) {
    const struct bld_instr *in = &df.v[i];
    if (o->cancel && *o->cancel) {
      ret = ci_error_make(err, CI_ECANCELED, "build canceled");
      break;
    }
    s.step = i + 1;
    s.nsteps = df.n;
    if (in->kind != BLD_FROM)
      progress(&s, "Step %zu/%zu : %s", i + 1, df.n, in->text);
    switch (in->kind) {
    case BLD_FROM:
      ret = do_from(&s, in, err);
      break;
    case BLD_ARG:
      if (!s.key[0]) { /* before FROM */
        struct ci_strv w = CI_STRV_INIT;
        ret = bld_words(in->rest, lookup, &s, &w, err);
        if (ret == 0)
          declare_args(&s, &w);
        ci_strv_release(&w);
        break;
      }
      ret = do_config(&s, in, err);
      break;
    case BLD_RUN:
      ret = do_run(&s, in, err);
      break;
    case BLD_COPY:
    case BLD_ADD:
      ret = do_copy(&s, in, err);
      break;
    default:
      ret = do_config(&s, in, err);
      break;
    }
    if (ret < 0 && (*err)->code != CI_ECANCELED)
      instr_error(&s, in, err);
  }
  if (ret == 0) {
    size_t len = 0;
    cleanup_free char *cfg = config_json(&s, &len);
    ret = img_store_add_image(store, o->tag, cfg, len, out, err);
  }
  state_release(&s);
  bld_dockerfile_release(&df);
  return ret;
}
