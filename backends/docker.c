/* backends/docker.c - the Docker Engine API backend, and Podman through its Docker-compatible
 * API (the same endpoints; podman.c only finds or starts the socket).
 *
 * A task's container idles in a shell loop; each step is an exec whose output streams back
 * multiplexed in the body of POST /exec/{id}/start (no connection upgrade needed: without
 * "Connection: Upgrade" the engine answers 200 and streams the raw frames until the process
 * ends), and whose exit code is read with GET /exec/{id}/json.  The project enters with
 * PUT /containers/{id}/archive (a tar, streamed from a file); small files come back with
 * GET /containers/{id}/archive, and whole trees (copy_out) are streamed from it to a file.
 * Images are built with POST /build (the context tar streamed from a file, JSON-lines
 * progress); named volumes are bound by name.  Containers and volumes carry the label
 * dev.cirrus.run-id, which is all `clean` looks for.  README.md lists the engine facts.
 */
#include "docker.h"
#include "common/log.h"
#include "engine_http.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define API "/v1.41"

/* The container's main process: idle until killed. */
static const char idle_script[] = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

struct docker {
  struct backend base;
  struct engine_http *http;
  struct engine_endpoint ep;
  bool podman; /* compat API of podman: a few differences (see below) */
  unsigned active;
  void (*on_closed)(void *data);
  void *closed_data;
  bool closing;
  /* podman.c's service, if it started one: killed at close */
  struct docker_service *service;
};

static struct docker *
D(struct backend *b)
{
  return container_of(b, struct docker, base);
}

/* ---- small helpers ---- */

static char *
path_fmt(const char *fmt, const char *id)
{
  struct ci_buf b = CI_BUF_INIT;
  const char *p = strstr(fmt, "%s");
  ci_buf_add(&b, fmt, (size_t)(p - fmt));
  engine_buf_add_query(&b, id);
  ci_buf_adds(&b, p + 2);
  return ci_buf_take(&b);
}

static json_t *
env_array(const struct cfg_env *env)
{
  json_t *a = json_array();
  for (size_t i = 0; env && i < env->n; i++) {
    char *kv = xasprintf("%s=%s", env->v[i].key, env->v[i].value);
    json_array_append_new(a, json_string(kv));
    free(kv);
  }
  return a;
}

static json_t *
argv_array(const char *const *argv)
{
  json_t *a = json_array();
  for (size_t i = 0; argv && argv[i]; i++)
    json_array_append_new(a, json_string(argv[i]));
  return a;
}

/* Split an image reference into repository and tag/digest for /images/create. */
static void
split_ref(const char *ref, char **repo, char **tag)
{
  const char *at = strchr(ref, '@');
  if (at) {
    *repo = xstrndup(ref, (size_t)(at - ref));
    *tag = xstrdup(at + 1);
    return;
  }
  const char *slash = strrchr(ref, '/');
  const char *colon = strrchr(ref, ':');
  if (colon && (!slash || colon > slash)) {
    *repo = xstrndup(ref, (size_t)(colon - ref));
    *tag = xstrdup(colon + 1);
  } else {
    *repo = xstrdup(ref);
    *tag = xstrdup("latest");
  }
}

/* Volume names as both engines accept them ([a-zA-Z0-9][a-zA-Z0-9_.-]+); anything else
 * would be read as a host path in a bind. */
static bool
valid_volume_name(const char *name)
{
  if (!name || !isalnum((unsigned char)name[0]) || !name[1] || strlen(name) > 255)
    return false;
  for (const char *p = name + 1; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
      return false;
  return true;
}

static void
op_begin(struct docker *d)
{
  d->active++;
}

static void maybe_closed(struct docker *d);

static void
op_end(struct docker *d)
{
  d->active--;
  if (d->closing)
    maybe_closed(d);
}

/* Start the request of an operation that keeps the backend open until it ends (op_begin); its
 * callback then calls op_end.  The engine's message is dropped: the code says what failed. */
static int
op_start(struct docker *d, const struct engine_req_opts *o)
{
  struct ci_error *err = NULL;
  int r = engine_req_start(d->http, &d->ep, o, NULL, &err);
  ci_error_free(&err);
  if (r == 0)
    op_begin(d);
  return r;
}

/* ---- image_prepare ---- */

struct img_op {
  struct docker *d;
  char *ref;
  enum backend_pull_policy policy;
  backend_progress_cb on_progress;
  backend_image_cb cb;
  void *data;
  bool pulled;
  double last_progress;
};

static void img_inspect(struct img_op *op);

static void
img_finish(struct img_op *op, const struct backend_image_info *info, const struct ci_error *err)
{
  struct docker *d = op->d;
  op->cb(op->data, info, err);
  free(op->ref);
  free(op);
  op_end(d);
}

static int
on_pull_msg(json_t *msg, void *data, struct ci_error **err)
{
  struct img_op *op = data;
  const char *status = json_string_value(json_object_get(msg, "status"));
  const char *id = json_string_value(json_object_get(msg, "id"));
  if (!status || !op->on_progress)
    return 0;
  /* Progress bars repeat many times a second: pass on the state changes only. */
  if (json_object_get(msg, "progressDetail") && json_object_size(json_object_get(msg, "progressDetail")))
    return 0;
  char *line = id ? xasprintf("%s: %s", id, status) : xstrdup(status);
  op->on_progress(op->data, line);
  free(line);
  return 0;
}

static void
on_pulled(struct engine_req *req, const struct ci_error *err, void *data)
{
  struct img_op *op = data;
  if (err) {
    /* Say what to try next; the engine's answer stays for the details. */
    struct ci_error *e = NULL;
    ci_error_make(&e, err->code,
                  "%s; check the image name and that its registry is reachable (`%s pull %s` "
                  "shows the same error)",
                  err->msg, op->d->ep.name, op->ref);
    img_finish(op, NULL, e);
    ci_error_free(&e);
    return;
  }
  op->pulled = true;
  img_inspect(op);
}

static void
img_pull(struct img_op *op)
{
  struct docker *d = op->d;
  if (op->on_progress) {
    char *m = xasprintf("Pulling image %s...", op->ref);
    op->on_progress(op->data, m);
    free(m);
  }
  char *repo, *tag;
  split_ref(op->ref, &repo, &tag);
  struct ci_buf path = CI_BUF_INIT;
  ci_buf_adds(&path, API "/images/create?fromImage=");
  engine_buf_add_query(&path, repo);
  ci_buf_adds(&path, "&tag=");
  engine_buf_add_query(&path, tag);
  free(repo);
  free(tag);
  struct engine_req_opts o = {.method = "POST", .path = ci_buf_str(&path)};
  struct ci_error *err = NULL;
  if (engine_progress_start(d->http, &d->ep, &o, on_pull_msg, on_pulled, op, NULL, &err) < 0) {
    ci_buf_release(&path);
    img_finish(op, NULL, err);
    ci_error_free(&err);
    return;
  }
  ci_buf_release(&path);
}

static void
on_inspected(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
             void *data)
{
  struct img_op *op = data;
  if (err) {
    bool missing = err->code == -ENOENT;
    if (missing && !op->pulled && op->policy != BACKEND_PULL_NEVER) {
      img_pull(op);
      return;
    }
    if (missing && op->policy == BACKEND_PULL_NEVER) {
      struct ci_error e = {.code = -ENOENT, .msg = NULL};
      e.msg = xasprintf("image %s is not present locally and --pull=never forbids pulling it; "
                        "pull it first (`%s pull %s`) or run without --pull=never",
                        op->ref, op->d->ep.name, op->ref);
      img_finish(op, NULL, &e);
      free(e.msg);
      return;
    }
    img_finish(op, NULL, err);
    return;
  }
  struct backend_image_info info = {CFG_ENV_INIT, NULL, NULL, NULL};
  json_t *config = json_object_get(json, "Config");
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(config, "Env"), i, v)
  {
    const char *kv = json_string_value(v);
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq)
      continue;
    char *k = xstrndup(kv, (size_t)(eq - kv));
    cfg_env_set(&info.env, k, eq + 1);
    free(k);
  }
  const char *user = json_string_value(json_object_get(config, "User"));
  const char *wd = json_string_value(json_object_get(config, "WorkingDir"));
  const char *id = json_string_value(json_object_get(json, "Id"));
  info.user = xstrdup(user ? user : "");
  info.workdir = xstrdup(wd ? wd : "");
  info.id = xstrdup(id ? id : "");
  img_finish(op, &info, NULL);
  backend_image_info_release(&info);
}

static void
img_inspect(struct img_op *op)
{
  struct docker *d = op->d;
  char *path = path_fmt(API "/images/%s/json", op->ref);
  struct ci_error *err = NULL;
  if (engine_json_start(d->http, &d->ep, "GET", path, NULL, 30000, on_inspected, op, NULL,
                        &err) < 0) {
    img_finish(op, NULL, err);
    ci_error_free(&err);
  }
  free(path);
}

static int
d_image_prepare(struct backend *b, const char *ref, enum backend_pull_policy policy,
                backend_progress_cb on_progress, backend_image_cb cb, void *data)
{
  struct docker *d = D(b);
  if (!ref || !*ref)
    return -EINVAL;
  struct img_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->ref = xstrdup(ref);
  op->policy = policy;
  op->on_progress = on_progress;
  op->cb = cb;
  op->data = data;
  op_begin(d);
  if (policy == BACKEND_PULL_ALWAYS)
    img_pull(op);
  else
    img_inspect(op);
  return 0;
}

/* ---- container_create ---- */

struct create_op {
  struct docker *d;
  backend_id_cb cb;
  void *data;
  char *image; /* for messages */
  char *id;
  struct ci_error *start_err;
};

static void
create_finish(struct create_op *op, const struct ci_error *err)
{
  struct docker *d = op->d;
  op->cb(op->data, err ? NULL : op->id, err);
  free(op->image);
  free(op->id);
  free(op);
  op_end(d);
}

static void
on_removed_after_failed_start(struct engine_req *req, const struct engine_resp *resp,
                              const struct ci_error *err, void *data)
{
  struct create_op *op = data;
  struct ci_error *saved = op->start_err;
  op->start_err = NULL;
  create_finish(op, saved);
  ci_error_free(&saved);
}

static void
on_started(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
           void *data)
{
  struct create_op *op = data;
  if (!err) {
    create_finish(op, NULL);
    return;
  }
  /* The container exists but did not start: remove it, then report the start error. */
  ci_error_make(&op->start_err, err->code, "%s", err->msg);
  char *path = path_fmt(API "/containers/%s?force=1&v=1", op->id);
  struct engine_req_opts o = {.method = "DELETE",
                              .path = path,
                              .timeout_ms = 60000,
                              .on_done = on_removed_after_failed_start,
                              .data = op};
  struct ci_error *e = NULL;
  if (engine_req_start(op->d->http, &op->d->ep, &o, NULL, &e) < 0) {
    ci_error_free(&e);
    struct ci_error *saved = op->start_err;
    op->start_err = NULL;
    create_finish(op, saved);
    ci_error_free(&saved);
  }
  free(path);
}

static void
on_created(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
           void *data)
{
  struct create_op *op = data;
  struct docker *d = op->d;
  if (err) {
    /* A missing image: Docker answers 404 "No such image: x", podman 500 "x: image not
     * known".  Say it the same way for both (the engine's words follow). */
    if (err->code == -ENOENT || (status == 500 && strstr(err->msg, "image not known"))) {
      struct ci_error e = {.code = -ENOENT, .msg = NULL};
      e.msg =
          xasprintf("image '%s' is not present in %s (%s)", op->image, d->base.ops->name, err->msg);
      create_finish(op, &e);
      free(e.msg);
      return;
    }
    create_finish(op, err);
    return;
  }
  const char *id = json_string_value(json_object_get(json, "Id"));
  if (!id) {
    struct ci_error e = {.code = CI_EPROTO, .msg = (char *)"create answered without an Id"};
    create_finish(op, &e);
    return;
  }
  op->id = xstrdup(id);
  char *path = path_fmt(API "/containers/%s/start", op->id);
  struct engine_req_opts o = {
      .method = "POST", .path = path, .timeout_ms = 60000, .on_done = on_started, .data = op};
  struct ci_error *e = NULL;
  if (engine_req_start(d->http, &d->ep, &o, NULL, &e) < 0) {
    create_finish(op, e);
    ci_error_free(&e);
  }
  free(path);
}

static int
d_container_create(struct backend *b, const struct backend_container_spec *s, backend_id_cb cb,
                   void *data)
{
  struct docker *d = D(b);
  if (!s->image || !*s->image)
    return -EINVAL;
  for (size_t i = 0; i < s->nvolumes; i++)
    if (!valid_volume_name(s->volumes[i].name) || !s->volumes[i].container_path ||
        s->volumes[i].container_path[0] != '/' || strchr(s->volumes[i].container_path, ':'))
      return -EINVAL;
  json_t *body = json_object();
  json_object_set_new(body, "Image", json_string(s->image));
  if (s->argv) {
    json_object_set_new(body, "Cmd", argv_array(s->argv));
  } else {
    const char *idle[] = {"/bin/sh", "-c", idle_script, NULL};
    json_object_set_new(body, "Entrypoint", argv_array(idle));
    json_object_set_new(body, "Cmd", json_array());
  }
  if (s->env)
    json_object_set_new(body, "Env", env_array(s->env));
  json_t *labels = json_object();
  json_object_set_new(labels, "dev.cirrus.run-id", json_string(s->run_id ? s->run_id : ""));
  json_object_set_new(labels, BACKEND_LABEL_HOST, json_string(backend_owner_host()));
  json_object_set_new(labels, BACKEND_LABEL_PID, json_string(backend_owner_pid()));
  if (s->task_name)
    json_object_set_new(labels, "dev.cirrus.task", json_string(s->task_name));
  json_object_set_new(body, "Labels", labels);
  json_t *hc = json_object();
  /* The engines refuse limits above what the host has (Docker: "Range of CPUs is from 0.01 to
   * N"); the scheduler clamps too, this keeps any caller safe. */
  double cpu = s->cpu;
  if (d->base.host_cpus && cpu > d->base.host_cpus)
    cpu = d->base.host_cpus;
  unsigned long mem_mb = s->memory_mb;
  if (d->base.host_mem_mb && mem_mb > d->base.host_mem_mb)
    mem_mb = d->base.host_mem_mb;
  if (cpu > 0)
    json_object_set_new(hc, "NanoCpus", json_integer((json_int_t)(cpu * 1e9)));
  if (mem_mb)
    json_object_set_new(hc, "Memory", json_integer((json_int_t)mem_mb << 20));
  json_t *binds = json_array();
  for (size_t i = 0; i < s->nmounts; i++) {
    char *bind = xasprintf("%s:%s:%s", s->mounts[i].host_path, s->mounts[i].container_path,
                           s->mounts[i].read_only ? "ro" : "rw");
    json_array_append_new(binds, json_string(bind));
    free(bind);
  }
  /* A named volume is a bind whose source is a name (both engines). */
  for (size_t i = 0; i < s->nvolumes; i++) {
    char *bind = xasprintf("%s:%s:rw", s->volumes[i].name, s->volumes[i].container_path);
    json_array_append_new(binds, json_string(bind));
    free(bind);
  }
  json_object_set_new(hc, "Binds", binds);
  if (s->network_of) {
    char *nm = xasprintf("container:%s", s->network_of);
    json_object_set_new(hc, "NetworkMode", json_string(nm));
    free(nm);
  } else if (d->base.network == BACKEND_NET_HOST || d->base.network == BACKEND_NET_NONE) {
    /* private and the default: the engine's default network (a bridge) */
    json_object_set_new(hc, "NetworkMode",
                        json_string(d->base.network == BACKEND_NET_HOST ? "host" : "none"));
  }
  json_object_set_new(hc, "Privileged", json_boolean(s->privileged));
  json_t *secopt = json_array();
  json_array_append_new(secopt, json_string("label=disable"));
  json_object_set_new(hc, "SecurityOpt", secopt);
  json_object_set_new(body, "HostConfig", hc);

  struct ci_buf path = CI_BUF_INIT;
  ci_buf_adds(&path, API "/containers/create");
  if (s->name) {
    ci_buf_adds(&path, "?name=");
    engine_buf_add_query(&path, s->name);
  }
  struct create_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->cb = cb;
  op->data = data;
  op->image = xstrdup(s->image);
  struct ci_error *err = NULL;
  int r = engine_json_start(d->http, &d->ep, "POST", ci_buf_str(&path), body, 60000, on_created,
                            op, NULL, &err);
  json_decref(body);
  ci_buf_release(&path);
  if (r < 0) {
    ci_error_free(&err);
    free(op->image);
    free(op);
    return r;
  }
  op_begin(d);
  return 0;
}

/* ---- copy_in ---- */

struct copy_op {
  struct docker *d;
  int fd;
  backend_done_cb cb;
  void *data;
};

/* Upload source: the next piece of a local file (a regular file: reads do not block). */
static int
read_some(int fd, char *buf, size_t cap, size_t *len, const char *what, struct ci_error **err)
{
  ssize_t n;
  do
    n = read(fd, buf, cap);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return ci_error_make(err, -errno, "cannot read %s: %s", what, strerror(errno));
  *len = (size_t)n;
  return 0;
}

static int
copy_send(struct engine_req *req, char *buf, size_t cap, size_t *len, void *data,
          struct ci_error **err)
{
  struct copy_op *op = data;
  return read_some(op->fd, buf, cap, len, "the project archive", err);
}

static void
on_copied(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
          void *data)
{
  struct copy_op *op = data;
  struct docker *d = op->d;
  close(op->fd);
  op->cb(op->data, err);
  free(op);
  op_end(d);
}

static int
d_copy_in(struct backend *b, const char *id, const char *tar_path, backend_done_cb cb, void *data)
{
  struct docker *d = D(b);
  int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  off_t size = lseek(fd, 0, SEEK_END);
  lseek(fd, 0, SEEK_SET);
  struct copy_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->fd = fd;
  op->cb = cb;
  op->data = data;
  char *path = path_fmt(API "/containers/%s/archive?path=%2F", id);
  struct engine_req_opts o = {
      .method = "PUT",
      .path = path,
      .content_type = "application/x-tar",
      .on_send = copy_send,
      .send_len = size,
      .timeout_ms = 0,
      .on_done = on_copied,
      .data = op,
  };
  int r = op_start(d, &o);
  free(path);
  if (r < 0) {
    close(fd);
    free(op);
  }
  return r;
}

/* ---- exec ---- */

struct exec_op {
  struct docker *d;
  backend_output_cb on_output;
  backend_exit_cb on_exit;
  void *data;
  char *exec_id;
  struct engine_demux demux;
  unsigned inspect_tries;
  uv_timer_t retry;
  bool retry_open;
};

static void
on_retry_closed(uv_handle_t *h)
{
  free(container_of(h, struct exec_op, retry));
}

static void
exec_finish(struct exec_op *op, const struct backend_exit *ex, const struct ci_error *err)
{
  struct docker *d = op->d;
  op->on_exit(op->data, ex, err);
  free(op->exec_id);
  if (op->retry_open)
    uv_close((uv_handle_t *)&op->retry, on_retry_closed); /* op goes with its timer */
  else
    free(op);
  op_end(d);
}

static void exec_inspect(struct exec_op *op);

static void
on_retry(uv_timer_t *t)
{
  struct exec_op *op = container_of(t, struct exec_op, retry);
  exec_inspect(op);
}

static void
on_exec_inspected(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
                  void *data)
{
  struct exec_op *op = data;
  if (err) {
    exec_finish(op, NULL, err);
    return;
  }
  if (json_is_true(json_object_get(json, "Running"))) {
    if (op->inspect_tries++ < 200) {
      /* The stream can end a moment before the engine records the exit. */
      if (!op->retry_open) {
        uv_timer_init(op->d->base.loop, &op->retry);
        op->retry_open = true;
      }
      uv_timer_start(&op->retry, on_retry, 10, 0);
      return;
    }
    /* The body ends when the connection closes (no length, no chunks): a connection the
     * engine dropped looks like the end of the output.  Podman keeps exec sessions across a
     * restart of its service, so the process can still be running. */
    struct ci_error e = {.code = CI_EPROTO, .msg = NULL};
    e.msg = xasprintf("the output of exec %.12s ended 2 s ago but the process still runs "
                      "(did the %s service restart?)",
                      op->exec_id, op->d->ep.name);
    exec_finish(op, NULL, &e);
    free(e.msg);
    return;
  }
  json_t *code = json_object_get(json, "ExitCode");
  /* The launcher shell reports a step killed by signal n as 128+n, like any shell. */
  struct backend_exit ex = {json_is_integer(code) ? (int)json_integer_value(code) : -1, 0};
  exec_finish(op, &ex, NULL);
}

static void
exec_inspect(struct exec_op *op)
{
  struct docker *d = op->d;
  char *path = path_fmt(API "/exec/%s/json", op->exec_id);
  struct ci_error *err = NULL;
  if (engine_json_start(d->http, &d->ep, "GET", path, NULL, 30000, on_exec_inspected, op, NULL,
                        &err) < 0) {
    exec_finish(op, NULL, err);
    ci_error_free(&err);
  }
  free(path);
}

static int
on_exec_frame(enum engine_stream stream, const char *buf, size_t len, void *data,
              struct ci_error **err)
{
  struct exec_op *op = data;
  if (op->on_output)
    op->on_output(op->data, stream == ENGINE_STDERR ? 2 : 1, buf, len);
  return 0;
}

static int
on_exec_body(struct engine_req *req, const char *buf, size_t len, void *data,
             struct ci_error **err)
{
  struct exec_op *op = data;
  return engine_demux_feed(&op->demux, buf, len, err);
}

static void
on_exec_done(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
             void *data)
{
  struct exec_op *op = data;
  if (err) {
    exec_finish(op, NULL, err);
    return;
  }
  struct ci_error *e = NULL;
  if (engine_demux_finish(&op->demux, &e) < 0) {
    exec_finish(op, NULL, e);
    ci_error_free(&e);
    return;
  }
  exec_inspect(op);
}

static void
on_exec_created(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
                void *data)
{
  struct exec_op *op = data;
  struct docker *d = op->d;
  if (err) {
    exec_finish(op, NULL, err);
    return;
  }
  const char *id = json_string_value(json_object_get(json, "Id"));
  if (!id) {
    struct ci_error e = {.code = CI_EPROTO, .msg = (char *)"exec create answered without an Id"};
    exec_finish(op, NULL, &e);
    return;
  }
  op->exec_id = xstrdup(id);
  engine_demux_init(&op->demux, false, on_exec_frame, op);
  char *path = path_fmt(API "/exec/%s/start", op->exec_id);
  static const char start_body[] = "{\"Detach\":false,\"Tty\":false}";
  struct engine_req_opts o = {
      .method = "POST",
      .path = path,
      .body = start_body,
      .body_len = sizeof(start_body) - 1,
      .on_body = on_exec_body,
      .on_done = on_exec_done,
      .data = op,
  };
  struct ci_error *e = NULL;
  if (engine_req_start(d->http, &d->ep, &o, NULL, &e) < 0) {
    exec_finish(op, NULL, e);
    ci_error_free(&e);
  }
  free(path);
}

static int
d_exec(struct backend *b, const char *id, const struct backend_exec_spec *s,
       backend_output_cb on_output, backend_exit_cb on_exit, void *data)
{
  struct docker *d = D(b);
  json_t *body = json_object();
  json_object_set_new(body, "AttachStdout", json_true());
  json_object_set_new(body, "AttachStderr", json_true());
  json_object_set_new(body, "Cmd", argv_array(s->argv));
  if (s->env)
    json_object_set_new(body, "Env", env_array(s->env));
  if (s->cwd)
    json_object_set_new(body, "WorkingDir", json_string(s->cwd));
  if (s->user)
    json_object_set_new(body, "User", json_string(s->user));
  struct exec_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->on_output = on_output;
  op->on_exit = on_exit;
  op->data = data;
  char *path = path_fmt(API "/containers/%s/exec", id);
  struct ci_error *err = NULL;
  int r = engine_json_start(d->http, &d->ep, "POST", path, body, 30000, on_exec_created, op, NULL,
                            &err);
  free(path);
  json_decref(body);
  if (r < 0) {
    ci_error_free(&err);
    free(op);
    return r;
  }
  op_begin(d);
  return 0;
}

/* ---- read_file ---- */

struct file_op {
  struct docker *d;
  size_t max;
  backend_file_cb cb;
  void *data;
};

static void
on_archive(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
           void *data)
{
  struct file_op *op = data;
  struct docker *d = op->d;
  if (err && err->code == -ENOENT) {
    op->cb(op->data, NULL, 0, NULL); /* no such file */
  } else if (err) {
    op->cb(op->data, NULL, 0, err);
  } else {
    /* The answer is a tar holding the file. */
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    struct archive_entry *e;
    struct ci_buf content = CI_BUF_INIT;
    bool found = false;
    if (archive_read_open_memory(a, resp->body, resp->body_len) == ARCHIVE_OK &&
        archive_read_next_header(a, &e) == ARCHIVE_OK &&
        archive_entry_filetype(e) == AE_IFREG) {
      char buf[8192];
      la_ssize_t n;
      while ((n = archive_read_data(a, buf, sizeof(buf))) > 0 && content.len < op->max)
        ci_buf_add(&content, buf, (size_t)n);
      found = true;
    }
    archive_read_free(a);
    if (found)
      op->cb(op->data, ci_buf_str(&content), content.len, NULL);
    else
      op->cb(op->data, NULL, 0, NULL);
    ci_buf_release(&content);
  }
  free(op);
  op_end(d);
}

static int
d_read_file(struct backend *b, const char *id, const char *file, size_t max, backend_file_cb cb,
            void *data)
{
  struct docker *d = D(b);
  struct ci_buf path = CI_BUF_INIT;
  char *p = path_fmt(API "/containers/%s/archive?path=", id);
  ci_buf_adds(&path, p);
  free(p);
  engine_buf_add_query(&path, file);
  struct file_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->max = max;
  op->cb = cb;
  op->data = data;
  struct engine_req_opts o = {
      .method = "GET",
      .path = ci_buf_str(&path),
      .max_body = max + 64 * 1024,
      .timeout_ms = 30000,
      .on_done = on_archive,
      .data = op,
  };
  int r = op_start(d, &o);
  ci_buf_release(&path);
  if (r < 0)
    free(op);
  return r;
}

/* ---- container_remove ---- */

struct remove_op {
  struct docker *d;
  backend_done_cb cb;
  void *data;
};

static void
on_deleted(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
           void *data)
{
  struct remove_op *op = data;
  struct docker *d = op->d;
  /* Already gone is fine. */
  op->cb(op->data, err && err->code != -ENOENT ? err : NULL);
  free(op);
  op_end(d);
}

static int
d_container_remove(struct backend *b, const char *id, backend_done_cb cb, void *data)
{
  struct docker *d = D(b);
  char *path = path_fmt(API "/containers/%s?force=1&v=1", id);
  struct remove_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->cb = cb;
  op->data = data;
  struct engine_req_opts o = {
      .method = "DELETE", .path = path, .timeout_ms = 120000, .on_done = on_deleted, .data = op};
  int r = op_start(d, &o);
  free(path);
  if (r < 0)
    free(op);
  return r;
}

/* ---- copy_out ---- */

struct copy_out_op {
  struct docker *d;
  int fd;
  char *tar_path;
  char *path; /* in the container, for messages */
  backend_done_cb cb;
  void *data;
};

static int
copy_out_body(struct engine_req *req, const char *buf, size_t len, void *data,
              struct ci_error **err)
{
  struct copy_out_op *op = data;
  while (len) {
    ssize_t n = write(op->fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return ci_error_make(err, -errno, "cannot write '%s': %s", op->tar_path, strerror(errno));
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void
on_copied_out(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
              void *data)
{
  struct copy_out_op *op = data;
  struct docker *d = op->d;
  struct ci_error *e = NULL;
  if (close(op->fd) < 0 && !err)
    ci_error_make(&e, -errno, "cannot write '%s': %s", op->tar_path, strerror(errno));
  if (err)
    ci_error_make(&e, err->code, "cannot copy '%s' out of the container: %s", op->path, err->msg);
  if (e)
    unlink(op->tar_path); /* no half-written archive */
  op->cb(op->data, e);
  ci_error_free(&e);
  free(op->tar_path);
  free(op->path);
  free(op);
  op_end(d);
}

static int
d_copy_out(struct backend *b, const char *id, const char *path, const char *tar_path,
           backend_done_cb cb, void *data)
{
  struct docker *d = D(b);
  if (!id || !path || path[0] != '/' || !tar_path)
    return -EINVAL;
  int fd = open(tar_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  struct copy_out_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->fd = fd;
  op->tar_path = xstrdup(tar_path);
  op->path = xstrdup(path);
  op->cb = cb;
  op->data = data;
  struct ci_buf url = CI_BUF_INIT;
  char *p = path_fmt(API "/containers/%s/archive?path=", id);
  ci_buf_adds(&url, p);
  free(p);
  engine_buf_add_query(&url, path);
  struct engine_req_opts o = {
      .method = "GET",
      .path = ci_buf_str(&url),
      .on_body = copy_out_body, /* straight to the file: no size cap in memory */
      .timeout_ms = 0,
      .on_done = on_copied_out,
      .data = op,
  };
  int r = op_start(d, &o);
  ci_buf_release(&url);
  if (r < 0) {
    close(fd);
    unlink(tar_path);
    free(op->tar_path);
    free(op->path);
    free(op);
  }
  return r;
}

/* ---- image_build ---- */

/* Longest build output line handed on whole; longer ones are cut into pieces of this size. */
#define BUILD_MAX_LINE (64u << 10)

struct build_op {
  struct docker *d;
  int fd;
  char *tag;
  backend_progress_cb on_progress;
  backend_done_cb cb;
  void *data;
  struct ci_buf line; /* build output not yet ended by a newline */
};

static void
build_emit(struct build_op *op, const char *s, size_t len)
{
  if (len && s[len - 1] == '\r')
    len--;
  if (!op->on_progress)
    return;
  char *line = xstrndup(s, len);
  op->on_progress(op->data, line);
  free(line);
}

/* Docker sends "Step 1/4 : FROM x" and its "\n" as two messages: join the "stream" pieces
 * and hand on whole lines. */
static void
build_add_output(struct build_op *op, const char *text)
{
  ci_buf_adds(&op->line, text);
  size_t start = 0;
  for (size_t i = 0; i < op->line.len; i++) {
    if (op->line.s[i] == '\n') {
      build_emit(op, op->line.s + start, i - start);
      start = i + 1;
    } else if (i + 1 - start >= BUILD_MAX_LINE) {
      build_emit(op, op->line.s + start, i + 1 - start);
      start = i + 1;
    }
  }
  char *rest = xstrndup(op->line.s + start, op->line.len - start);
  ci_buf_reset(&op->line);
  ci_buf_adds(&op->line, rest);
  free(rest);
}

static int
on_build_msg(json_t *msg, void *data, struct ci_error **err)
{
  struct build_op *op = data;
  const char *stream = json_string_value(json_object_get(msg, "stream"));
  if (stream) {
    build_add_output(op, stream);
    return 0;
  }
  /* Pulling a base image: the same messages as a pull; pass on state changes only. */
  const char *status = json_string_value(json_object_get(msg, "status"));
  json_t *detail = json_object_get(msg, "progressDetail");
  if (status && !(detail && json_object_size(detail))) {
    const char *id = json_string_value(json_object_get(msg, "id"));
    char *line = id ? xasprintf("%s: %s", id, status) : xstrdup(status);
    build_emit(op, line, strlen(line));
    free(line);
  }
  return 0;
}

static int
build_send(struct engine_req *req, char *buf, size_t cap, size_t *len, void *data,
           struct ci_error **err)
{
  struct build_op *op = data;
  return read_some(op->fd, buf, cap, len, "the build context", err);
}

static void
on_built(struct engine_req *req, const struct ci_error *err, void *data)
{
  struct build_op *op = data;
  struct docker *d = op->d;
  close(op->fd);
  if (op->line.len)
    build_emit(op, op->line.s, op->line.len);
  struct ci_error *e = NULL;
  if (err) {
    /* The request's query holds the build arguments: name only the endpoint. */
    const char *desc = engine_req_describe(req);
    const char *what = err->msg;
    if (ci_str_has_prefix(what, desc) && what[strlen(desc)] == ':')
      what += strlen(desc) + 1;
    while (*what == ' ')
      what++;
    ci_error_make(&e, err->code, "building image '%s' failed: %s POST " API "/build: %s", op->tag,
                  d->ep.name, what);
  }
  op->cb(op->data, e);
  ci_error_free(&e);
  ci_buf_release(&op->line);
  free(op->tag);
  free(op);
  op_end(d);
}

static int
d_image_build(struct backend *b, const struct backend_build_spec *s,
              backend_progress_cb on_progress, backend_done_cb cb, void *data)
{
  struct docker *d = D(b);
  if (!s->context_tar || !s->tag || !*s->tag)
    return -EINVAL;
  int fd = open(s->context_tar, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  int r = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
  if (r < 0) {
    close(fd);
    return r;
  }
  struct ci_buf path = CI_BUF_INIT;
  ci_buf_adds(&path, API "/build?t=");
  engine_buf_add_query(&path, s->tag);
  if (s->dockerfile && *s->dockerfile) {
    ci_buf_adds(&path, "&dockerfile=");
    engine_buf_add_query(&path, s->dockerfile);
  }
  if (s->args && s->args->n) {
    json_t *args = json_object();
    bool ok = true;
    for (size_t i = 0; i < s->args->n && ok; i++) /* jansson refuses what is not UTF-8 */
      ok = json_object_set_new(args, s->args->v[i].key, json_string(s->args->v[i].value)) == 0;
    char *text = ok ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(args);
    if (!text) {
      close(fd);
      ci_buf_release(&path);
      return -EINVAL;
    }
    ci_buf_adds(&path, "&buildargs=");
    engine_buf_add_query(&path, text);
    free(text);
  }
  /* rm: remove the intermediate containers; forcerm: also when a step fails (both engines
   * leave the failed step's container behind without it). */
  ci_buf_adds(&path, "&rm=1&forcerm=1");
  if (s->pull)
    ci_buf_adds(&path, "&pull=1");
  struct build_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->fd = fd;
  op->tag = xstrdup(s->tag);
  op->on_progress = on_progress;
  op->cb = cb;
  op->data = data;
  struct engine_req_opts o = {
      .method = "POST",
      .path = ci_buf_str(&path),
      .content_type = "application/x-tar",
      .on_send = build_send,
      .send_len = st.st_size,
      .timeout_ms = 0, /* builds take what they take; the task's timeout bounds them */
  };
  struct ci_error *err = NULL;
  r = engine_progress_start(d->http, &d->ep, &o, on_build_msg, on_built, op, NULL, &err);
  ci_buf_release(&path);
  if (r < 0) {
    ci_error_free(&err);
    close(fd);
    free(op->tag);
    free(op);
    return r;
  }
  op_begin(d);
  return 0;
}

/* ---- volumes ---- */

struct vol_op {
  struct docker *d;
  char *name;
  backend_done_cb cb;
  void *data;
};

static void
vol_finish(struct vol_op *op, const struct ci_error *err)
{
  struct docker *d = op->d;
  op->cb(op->data, err);
  free(op->name);
  free(op);
  op_end(d);
}

static void
on_volume_created(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
                  void *data)
{
  vol_finish(data, err);
}

static int
d_volume_create(struct backend *b, const char *name, const char *run_id, backend_done_cb cb,
                void *data)
{
  struct docker *d = D(b);
  if (!valid_volume_name(name))
    return -EINVAL;
  json_t *body = json_object();
  json_object_set_new(body, "Name", json_string(name));
  json_t *labels = json_object();
  json_object_set_new(labels, "dev.cirrus.run-id", json_string(run_id ? run_id : ""));
  json_object_set_new(labels, BACKEND_LABEL_HOST, json_string(backend_owner_host()));
  json_object_set_new(labels, BACKEND_LABEL_PID, json_string(backend_owner_pid()));
  json_object_set_new(body, "Labels", labels);
  struct vol_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->name = xstrdup(name);
  op->cb = cb;
  op->data = data;
  struct ci_error *err = NULL;
  int r = engine_json_start(d->http, &d->ep, "POST", API "/volumes/create", body, 60000,
                            on_volume_created, op, NULL, &err);
  json_decref(body);
  if (r < 0) {
    ci_error_free(&err);
    free(op->name);
    free(op);
    return r;
  }
  op_begin(d);
  return 0;
}

static void
on_volume_removed(struct engine_req *req, const struct engine_resp *resp,
                  const struct ci_error *err, void *data)
{
  vol_finish(data, err && err->code != -ENOENT ? err : NULL); /* already gone is fine */
}

static int
d_volume_remove(struct backend *b, const char *name, backend_done_cb cb, void *data)
{
  struct docker *d = D(b);
  if (!valid_volume_name(name))
    return -EINVAL;
  char *path = path_fmt(API "/volumes/%s?force=1", name);
  struct vol_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->name = xstrdup(name);
  op->cb = cb;
  op->data = data;
  struct engine_req_opts o = {.method = "DELETE",
                              .path = path,
                              .timeout_ms = 120000,
                              .on_done = on_volume_removed,
                              .data = op};
  int r = op_start(d, &o);
  free(path);
  if (r < 0) {
    free(op->name);
    free(op);
  }
  return r;
}

/* ---- clean ---- */

/* Removals in flight at once: enough to overlap the engine's work, few enough not to flood it. */
#define CLEAN_PARALLEL 4

struct clean_item {
  char *path; /* the DELETE to send */
  char *what; /* what on_removed says: "container 1f2e3d4c5b6a (task 'lint')" */
};

struct clean_op {
  struct docker *d;
  char *filters; /* the label filter, URL-encoded */
  backend_progress_cb on_removed;
  backend_done_cb cb;
  void *data;
  bool volumes; /* second phase */
  bool all;     /* no run id: keep what runs still going own */
  struct clean_item *items;
  size_t nitems, nalloc, next, inflight;
  unsigned failed, total;
  struct ci_error *first_err;
};

static int clean_list(struct clean_op *op, struct ci_error **err);
static void clean_pump(struct clean_op *op);

static void
clean_items_release(struct clean_op *op)
{
  for (size_t i = 0; i < op->nitems; i++) {
    free(op->items[i].path);
    free(op->items[i].what);
  }
  free(op->items);
  op->items = NULL;
  op->nitems = op->nalloc = op->next = 0;
}

static void
clean_finish(struct clean_op *op, const struct ci_error *err)
{
  struct docker *d = op->d;
  struct ci_error *e = NULL;
  if (!err && op->failed)
    ci_error_make(&e, op->first_err->code, "%u of %u could not be removed: %s", op->failed,
                  op->total, op->first_err->msg);
  op->cb(op->data, err ? err : e);
  ci_error_free(&e);
  ci_error_free(&op->first_err);
  clean_items_release(op);
  free(op->filters);
  free(op);
  op_end(d);
}

struct clean_req {
  struct clean_op *op;
  char *what;
};

static void
on_clean_removed(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
                 void *data)
{
  struct clean_req *cr = data;
  struct clean_op *op = cr->op;
  op->inflight--;
  if (err && err->code != -ENOENT) { /* gone meanwhile: not ours to report */
    op->failed++;
    if (!op->first_err)
      ci_error_make(&op->first_err, err->code, "%s", err->msg);
  } else if (!err && op->on_removed) {
    op->on_removed(op->data, cr->what);
  }
  free(cr->what);
  free(cr);
  clean_pump(op);
}

/* Keep up to CLEAN_PARALLEL removals in flight; after the last, the next phase or the end. */
static void
clean_pump(struct clean_op *op)
{
  struct docker *d = op->d;
  while (op->next < op->nitems && op->inflight < CLEAN_PARALLEL) {
    struct clean_item *it = &op->items[op->next++];
    struct clean_req *cr = xcalloc(1, sizeof(*cr));
    cr->op = op;
    cr->what = steal_pointer(&it->what);
    struct engine_req_opts o = {.method = "DELETE",
                                .path = it->path,
                                .timeout_ms = 120000,
                                .on_done = on_clean_removed,
                                .data = cr};
    struct ci_error *err = NULL;
    op->total++;
    if (engine_req_start(d->http, &d->ep, &o, NULL, &err) < 0) {
      op->failed++;
      if (!op->first_err)
        op->first_err = steal_pointer(&err);
      ci_error_free(&err);
      free(cr->what);
      free(cr);
      continue;
    }
    op->inflight++;
  }
  if (op->inflight || op->next < op->nitems)
    return;
  clean_items_release(op);
  if (!op->volumes) {
    op->volumes = true; /* containers first: a volume in use cannot go */
    struct ci_error *err = NULL;
    if (clean_list(op, &err) < 0) {
      clean_finish(op, err);
      ci_error_free(&err);
    }
  } else {
    clean_finish(op, NULL);
  }
}

static void
on_clean_listed(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
                void *data)
{
  struct clean_op *op = data;
  if (err) {
    struct ci_error *e = NULL;
    ci_error_make(&e, err->code, "cannot list the %s to clean: %s",
                  op->volumes ? "volumes" : "containers", err->msg);
    clean_finish(op, e);
    ci_error_free(&e);
    return;
  }
  /* Containers: an array of {Id, Labels}; volumes: {"Volumes": [{Name, Labels}] | null}. */
  json_t *list = op->volumes ? json_object_get(json, "Volumes") : json;
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v)
  {
    const char *id = json_string_value(json_object_get(v, op->volumes ? "Name" : "Id"));
    if (!id || !*id)
      continue;
    json_t *labels = json_object_get(v, "Labels");
    const char *task = json_string_value(json_object_get(labels, "dev.cirrus.task"));
    const char *pid = json_string_value(json_object_get(labels, BACKEND_LABEL_PID));
    if (op->all &&
        backend_owner_alive(json_string_value(json_object_get(labels, BACKEND_LABEL_HOST)), pid)) {
      ci_log(CI_LOG_WARN, "kept %s %.12s: its run is still going (cirrus pid %s; --run-id "
             "removes it anyway)", op->volumes ? "volume" : "container", id, pid);
      continue;
    }
    CI_GROW(op->items, op->nalloc, op->nitems + 1);
    struct clean_item *it = &op->items[op->nitems++];
    if (op->volumes) {
      it->path = path_fmt(API "/volumes/%s?force=1", id);
      it->what = xasprintf("volume %s", id);
    } else {
      it->path = path_fmt(API "/containers/%s?force=1&v=1", id);
      it->what = task && *task ? xasprintf("container %.12s (task '%s')", id, task)
                               : xasprintf("container %.12s", id);
    }
  }
  clean_pump(op);
}

static int
clean_list(struct clean_op *op, struct ci_error **err)
{
  struct docker *d = op->d;
  char *path = op->volumes ? xasprintf(API "/volumes?filters=%s", op->filters)
                           : xasprintf(API "/containers/json?all=1&filters=%s", op->filters);
  int r =
      engine_json_start(d->http, &d->ep, "GET", path, NULL, 60000, on_clean_listed, op, NULL, err);
  free(path);
  return r;
}

static int
d_clean(struct backend *b, const char *run_id, backend_progress_cb on_removed, backend_done_cb cb,
        void *data)
{
  struct docker *d = D(b);
  /* {"label":["dev.cirrus.run-id=<id>"]}, or any value of the label without a run id. */
  json_t *filters = json_object();
  json_t *labels = json_array();
  char *label = run_id ? xasprintf("dev.cirrus.run-id=%s", run_id) : xstrdup("dev.cirrus.run-id");
  json_array_append_new(labels, json_string(label));
  free(label);
  json_object_set_new(filters, "label", labels);
  char *text = json_dumps(filters, JSON_COMPACT);
  json_decref(filters);
  if (!text)
    return -EINVAL; /* run_id is not UTF-8 */
  struct ci_buf q = CI_BUF_INIT;
  engine_buf_add_query(&q, text);
  free(text);
  struct clean_op *op = xcalloc(1, sizeof(*op));
  op->d = d;
  op->filters = ci_buf_take(&q);
  op->all = !run_id;
  op->on_removed = on_removed;
  op->cb = cb;
  op->data = data;
  struct ci_error *err = NULL;
  int r = clean_list(op, &err);
  if (r < 0) {
    ci_error_free(&err);
    free(op->filters);
    free(op);
    return r;
  }
  op_begin(d);
  return 0;
}

/* ---- lifecycle ---- */

static void
maybe_closed(struct docker *d)
{
  if (d->active)
    return;
  engine_http_close(d->http);
  engine_endpoint_release(&d->ep);
  docker_service_stop(d->service);
  void (*cb)(void *) = d->on_closed;
  void *data = d->closed_data;
  free(d->base.description);
  free(d);
  if (cb)
    cb(data);
}

static void
d_close(struct backend *b, void (*on_closed)(void *data), void *data)
{
  struct docker *d = D(b);
  d->closing = true;
  d->on_closed = on_closed;
  d->closed_data = data;
  maybe_closed(d);
}

static const struct backend_ops docker_ops = {
    .name = "docker",
    .image_prepare = d_image_prepare,
    .container_create = d_container_create,
    .copy_in = d_copy_in,
    .exec = d_exec,
    .read_file = d_read_file,
    .container_remove = d_container_remove,
    .image_build = d_image_build,
    .volume_create = d_volume_create,
    .volume_remove = d_volume_remove,
    .clean = d_clean,
    .copy_out = d_copy_out,
    .close = d_close,
};

static const struct backend_ops podman_ops = {
    .name = "podman",
    .image_prepare = d_image_prepare,
    .container_create = d_container_create,
    .copy_in = d_copy_in,
    .exec = d_exec,
    .read_file = d_read_file,
    .container_remove = d_container_remove,
    .image_build = d_image_build,
    .volume_create = d_volume_create,
    .volume_remove = d_volume_remove,
    .clean = d_clean,
    .copy_out = d_copy_out,
    .close = d_close,
};

/* ---- opening: a synchronous ping and /info before the loop runs ---- */

struct sync_call {
  bool done;
  long status;
  json_t *json;
  struct ci_error *err;
};

static void
on_sync_json(struct engine_req *req, long status, json_t *json, const struct ci_error *err,
             void *data)
{
  struct sync_call *sc = data;
  sc->done = true;
  sc->status = status;
  if (json)
    sc->json = json_incref(json);
  if (err)
    ci_error_make(&sc->err, err->code, "%s", err->msg);
}

static void
on_sync_raw(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
            void *data)
{
  struct sync_call *sc = data;
  sc->done = true;
  sc->status = resp->status;
  if (err)
    ci_error_make(&sc->err, err->code, "%s", err->msg);
}

/* Run one request to completion on the (not yet running) loop. */
static int
sync_request(struct docker *d, const char *method, const char *path, bool json, long timeout_ms,
             json_t **out, struct ci_error **err)
{
  struct sync_call sc = {0};
  int r;
  if (json)
    r = engine_json_start(d->http, &d->ep, method, path, NULL, timeout_ms, on_sync_json, &sc,
                          NULL, err);
  else {
    struct engine_req_opts o = {.method = method,
                                .path = path,
                                .timeout_ms = timeout_ms,
                                .on_done = on_sync_raw,
                                .data = &sc};
    r = engine_req_start(d->http, &d->ep, &o, NULL, err);
  }
  if (r < 0)
    return r;
  while (!sc.done)
    uv_run(d->base.loop, UV_RUN_ONCE);
  if (sc.err) {
    *err = sc.err;
    json_decref(sc.json);
    return (*err)->code;
  }
  if (out)
    *out = sc.json;
  else
    json_decref(sc.json);
  return 0;
}

int
docker_backend_open_at(uv_loop_t *loop, const char *name, const char *url,
                       struct docker_service *service, struct backend **out,
                       struct ci_error **err)
{
  struct docker *d = xcalloc(1, sizeof(*d));
  bool podman = !strcmp(name, "podman");
  d->base.ops = podman ? &podman_ops : &docker_ops;
  d->base.loop = loop;
  d->podman = podman;
  if (engine_endpoint_init(&d->ep, name, url, err) < 0) {
    docker_service_stop(service);
    free(d);
    return -1;
  }
  if (engine_http_new(loop, &d->http, err) < 0) {
    docker_service_stop(service);
    engine_endpoint_release(&d->ep);
    free(d);
    return -1;
  }
  json_t *info = NULL;
  if (sync_request(d, "GET", "/_ping", false, 5000, NULL, err) < 0 ||
      sync_request(d, "GET", API "/info", true, 10000, &info, err) < 0) {
    engine_http_close(d->http);
    while (uv_run(loop, UV_RUN_NOWAIT))
      ;
    engine_endpoint_release(&d->ep);
    docker_service_stop(service);
    free(d);
    return -1;
  }
  json_t *ncpu = json_object_get(info, "NCPU");
  json_t *mem = json_object_get(info, "MemTotal");
  if (json_is_integer(ncpu))
    d->base.host_cpus = (unsigned)json_integer_value(ncpu);
  if (json_is_integer(mem))
    d->base.host_mem_mb = (unsigned long)(json_integer_value(mem) >> 20);
  const char *version = json_string_value(json_object_get(info, "ServerVersion"));
  d->base.description = xasprintf("%s %s (%s)", name, version ? version : "?", url);
  json_decref(info);
  d->service = service;
  *out = &d->base;
  return 0;
}

static int
docker_open(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
            struct ci_error **err)
{
  const char *host = getenv("DOCKER_HOST");
  const char *url = host && *host ? host : "unix:///var/run/docker.sock";
  int r = docker_backend_open_at(loop, "docker", url, NULL, out, err);
  if (r < 0)
    ci_error_prefix(err, "docker at %s", url);
  return r;
}

const struct backend_factory docker_factory = {"docker", docker_open};
