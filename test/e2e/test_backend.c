/* End-to-end: the scheduler and the backend operations on a real engine (docker or podman,
 * argv[1]) with the test image.  Covers what the shell suite cannot see from outside: every
 * event of a run, and each operation of backend.h (copy_out, image_build, volumes, clean)
 * checked against what the engine then holds.  The engine's death in the middle of a step is
 * simulated by a proxy between us and the engine's socket that drops every connection and
 * stops listening, as a killed daemon does (stopping the shared daemon would break the other
 * tests that use it at the same time).
 *
 * Everything is made with a run id of this process ("e2etest-<pid>") or a name holding the
 * pid, and removed at the end, also when a check fails. */
#include "backends/backend.h"
#include "backends/docker.h"
#include "backends/engine_http.h"
#include "runner/env.h"
#include "runner/sched.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                        \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

static const char *engine; /* argv[1] */
static char run_id[64];    /* e2etest-<pid>: every container and volume of this process */

static const char *
test_image(void)
{
  const char *image = getenv("CIRRUS_TEST_IMAGE");
  return image && *image ? image : "localhost/cirrus-test/busybox:latest";
}

/* The engine's API socket, as the backends find it. */
static const char *
engine_url(void)
{
  const char *var = !strcmp(engine, "docker") ? "DOCKER_HOST" : "CONTAINER_HOST";
  const char *v = getenv(var);
  if (v && *v)
    return v;
  return !strcmp(engine, "docker") ? "unix:///var/run/docker.sock"
                                   : "unix:///run/podman/podman.sock";
}

/* ==== the scheduler on the engine ============================================================ */

struct rec {
  struct ci_buf out;
  struct ci_strv events;
  /* the daemon-dies case: kill this proxy once the step has printed "started" */
  struct proxy *kill_on_start;
  bool restart; /* and listen again at once */
  double killed_at;
};

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void proxy_kill(struct proxy *p);
static void proxy_listen(struct proxy *p);

static void
on_event(const struct sched_event *ev, void *data)
{
  struct rec *r = data;
  static const char *const st[] = {"succeeded", "failed", "skipped", "timed out", "canceled"};
  if (ev->kind == SCHED_OUTPUT)
    ci_buf_add(&r->out, ev->text, ev->len);
  else if (ev->kind == SCHED_MESSAGE)
    ci_buf_addf(&r->out, "[%.*s]\n", (int)ev->len, ev->text);
  else if (ev->kind == SCHED_SCOPE_FINISHED)
    ci_strv_push_take(&r->events, xasprintf("%s: %s %s", ev->task->name, ev->scope, st[ev->status]));
  else if (ev->kind == SCHED_TASK_FINISHED)
    ci_strv_push_take(&r->events, xasprintf("end %s %s", ev->task->name, st[ev->status]));
  if (r->kill_on_start && ev->kind == SCHED_OUTPUT && strstr(ci_buf_str(&r->out), "started")) {
    proxy_kill(r->kill_on_start);
    if (r->restart)
      proxy_listen(r->kill_on_start);
    r->kill_on_start = NULL;
    r->killed_at = now();
  }
}

/* Run yaml (with the test image) on b. */
static int
run_on(uv_loop_t *loop, struct backend *b, const char *yaml, unsigned parallel, struct rec *rec)
{
  char *full = xasprintf("container:\n  image: %s\n%s", test_image(), yaml);
  struct cfg_file *f = cfg_parse("t.yml", full, strlen(full), NULL);
  free(full);
  if (f->nerrors) {
    fprintf(stderr, "config error: %s\n", f->diags[0].msg);
    exit(2);
  }
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  struct ci_error *err = NULL;
  struct cfg_env base = CFG_ENV_INIT, user = CFG_ENV_INIT;
  char uuid[37];
  run_uuid(uuid);
  run_env_base(&base, uuid);
  struct sched_options o = {.parallel = parallel,
                            .project_dir = "/tmp",
                            .run_id = run_id,
                            .base_env = &base,
                            .user_env = &user,
                            .on_event = on_event,
                            .event_data = rec};
  struct sched_result res;
  if (sched_run(loop, b, &g, &o, &res, &err) < 0) {
    fprintf(stderr, "sched_run: %s\n", err->msg);
    exit(1);
  }
  int status = res.status;
  sched_result_release(&res);
  graph_release(&g);
  cfg_file_free(f);
  cfg_env_release(&base);
  cfg_env_release(&user);
  return status;
}

static int
run(const char *yaml, unsigned parallel, struct rec *rec)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct backend *b = NULL;
  struct ci_error *err = NULL;
  struct backend_options bo = {.name = engine};
  if (backend_open(&loop, &bo, &b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open the %s backend: %s\n", engine, err->msg);
    exit(1);
  }
  int status = run_on(&loop, b, yaml, parallel, rec);
  b->ops->close(b, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "handles left open on the loop");
  return status;
}

static bool
has(const struct rec *r, const char *e)
{
  return ci_strv_contains(&r->events, e);
}

static void
release(struct rec *r)
{
  ci_buf_release(&r->out);
  ci_strv_release(&r->events);
  memset(r, 0, sizeof(*r));
}

/* ==== the backend operations, one at a time ================================================== */

/* What one asynchronous call reported. */
struct call {
  int done;
  int code; /* 0: success */
  char *msg;
  char *id;
  struct backend_exit ex;
  struct ci_buf out;
  struct ci_strv lines; /* progress or on_removed lines */
};

static void
call_release(struct call *c)
{
  free(c->msg);
  free(c->id);
  ci_buf_release(&c->out);
  ci_strv_release(&c->lines);
  memset(c, 0, sizeof(*c));
}

static void
call_err(struct call *c, const struct ci_error *err)
{
  c->done++;
  if (err) {
    c->code = err->code ? err->code : -1;
    c->msg = xstrdup(err->msg);
  }
}

static void
on_call_done(void *data, const struct ci_error *err)
{
  call_err(data, err);
}

static void
on_call_id(void *data, const char *id, const struct ci_error *err)
{
  struct call *c = data;
  if (id)
    c->id = xstrdup(id);
  call_err(c, err);
}

static void
on_call_image(void *data, const struct backend_image_info *info, const struct ci_error *err)
{
  struct call *c = data;
  if (info)
    c->id = xstrdup(info->id);
  call_err(c, err);
}

static void
on_call_output(void *data, int stream, const char *buf, size_t len)
{
  struct call *c = data;
  ci_buf_add(&c->out, buf, len);
}

static void
on_call_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct call *c = data;
  if (ex)
    c->ex = *ex;
  call_err(c, err);
}

static void
on_call_line(void *data, const char *line)
{
  struct call *c = data;
  ci_strv_push(&c->lines, line);
}

/* Run the loop until c has completed (a start that failed completes it with its code). */
static void
call_wait(uv_loop_t *loop, struct call *c, int start_ret)
{
  if (start_ret < 0) {
    c->done = 1;
    c->code = start_ret;
    c->msg = xasprintf("the call was refused: %s", strerror(-start_ret));
    return;
  }
  CHECK(c->done == 0, "callback ran inside the call");
  while (!c->done)
    uv_run(loop, UV_RUN_ONCE);
  CHECK(c->done == 1, "callback ran %d times", c->done);
}

struct env {
  uv_loop_t loop;
  struct backend *b;
};

static void
env_open(struct env *e)
{
  uv_loop_init(&e->loop);
  struct ci_error *err = NULL;
  struct backend_options bo = {.name = engine};
  if (backend_open(&e->loop, &bo, &e->b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open the %s backend: %s\n", engine, err->msg);
    exit(1);
  }
}

static void
env_close(struct env *e)
{
  e->b->ops->close(e->b, NULL, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&e->loop) == 0, "handles left open on the loop");
}

/* An idle container of this run (task_name may be NULL); its id (owned), or NULL. */
static char *
create(struct env *e, const char *task_name, const struct backend_volume_mount *vols, size_t nvols)
{
  struct backend_container_spec spec = {.image = test_image(),
                                        .run_id = run_id,
                                        .task_name = task_name,
                                        .volumes = vols,
                                        .nvolumes = nvols};
  struct call c = {0};
  call_wait(&e->loop, &c, e->b->ops->container_create(e->b, &spec, on_call_id, &c));
  CHECK(c.code == 0 && c.id, "container_create: %s", c.msg);
  char *id = steal_pointer(&c.id);
  call_release(&c);
  return id;
}

static void
remove_container(struct env *e, const char *id)
{
  struct call c = {0};
  call_wait(&e->loop, &c, e->b->ops->container_remove(e->b, id, on_call_done, &c));
  CHECK(c.code == 0, "container_remove: %s", c.msg);
  call_release(&c);
}

/* sh -c script in container id; returns the exit code, output in *out (owned) if out. */
static int
sh(struct env *e, const char *id, const char *script, char **out)
{
  const char *argv[] = {"/bin/sh", "-c", script, NULL};
  struct backend_exec_spec spec = {.argv = argv};
  struct call c = {0};
  call_wait(&e->loop, &c, e->b->ops->exec(e->b, id, &spec, on_call_output, on_call_exit, &c));
  CHECK(c.code == 0, "exec '%s': %s", script, c.msg);
  int code = c.code ? -1 : c.ex.exit_code;
  if (out)
    *out = ci_buf_take(&c.out);
  call_release(&c);
  return code;
}

/* A request straight to the engine (on a loop of its own) for checking what it holds: the
 * status, and the JSON answer in *out (owned) if out. */
struct raw {
  bool done;
  long status;
  json_t *json;
  char *msg;
};

static void
on_raw(struct engine_req *req, long status, json_t *json, const struct ci_error *err, void *data)
{
  struct raw *r = data;
  r->done = true;
  r->status = status;
  r->json = json ? json_incref(json) : NULL;
  r->msg = err ? xstrdup(err->msg) : NULL;
}

static long
raw(const char *method, const char *path, json_t **out)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct engine_http *http = NULL;
  struct engine_endpoint ep;
  struct ci_error *err = NULL;
  struct raw r = {0};
  if (engine_http_new(&loop, &http, &err) < 0 ||
      engine_endpoint_init(&ep, engine, engine_url(), &err) < 0 ||
      engine_json_start(http, &ep, method, path, NULL, 120000, on_raw, &r, NULL, &err) < 0) {
    fprintf(stderr, "FAIL: %s %s: %s\n", method, path, err->msg);
    exit(1);
  }
  while (!r.done)
    uv_run(&loop, UV_RUN_ONCE);
  engine_endpoint_release(&ep);
  engine_http_close(http);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(r.msg);
  if (out)
    *out = r.json;
  else
    json_decref(r.json);
  return r.status;
}

/* Containers (all states) and volumes labelled with run id rid. */
static size_t
count_labelled(const char *what, const char *rid)
{
  struct ci_buf path = CI_BUF_INIT;
  char *filter = xasprintf("{\"label\":[\"dev.cirrus.run-id=%s\"]}", rid);
  ci_buf_adds(&path, !strcmp(what, "volumes") ? "/v1.41/volumes?filters="
                                              : "/v1.41/containers/json?all=1&filters=");
  engine_buf_add_query(&path, filter);
  free(filter);
  json_t *j = NULL;
  long st = raw("GET", ci_buf_str(&path), &j);
  CHECK(st == 200, "listing %s: HTTP %ld", what, st);
  ci_buf_release(&path);
  size_t n = json_array_size(!strcmp(what, "volumes") ? json_object_get(j, "Volumes") : j);
  json_decref(j);
  return n;
}

/* The regular files of a tar (name -> content) and its directories, as "d name" lines. */
static void
read_tar(const char *path, struct ci_strv *entries, struct ci_buf *contents)
{
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
    CHECK(0, "cannot read %s: %s", path, archive_error_string(a));
    archive_read_free(a);
    return;
  }
  struct archive_entry *ent;
  while (archive_read_next_header(a, &ent) == ARCHIVE_OK) {
    const char *name = archive_entry_pathname(ent);
    size_t nlen = strlen(name);
    while (nlen > 1 && name[nlen - 1] == '/') /* docker says "data/", podman "data" */
      nlen--;
    if (archive_entry_filetype(ent) == AE_IFDIR) {
      ci_strv_push_take(entries, xasprintf("d %.*s", (int)nlen, name));
      continue;
    }
    ci_strv_push_take(
        entries, xasprintf("f %.*s %lld", (int)nlen, name, (long long)archive_entry_size(ent)));
    char buf[65536];
    la_ssize_t n;
    size_t total = 0;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
      if (total < 4096)
        ci_buf_add(contents, buf, (size_t)n > 4096 - total ? 4096 - total : (size_t)n);
      total += (size_t)n;
    }
  }
  archive_read_free(a);
}

static void
test_copy_out(void)
{
  struct env e;
  env_open(&e);
  char *id = create(&e, "copy", NULL, 0);
  if (!id) {
    env_close(&e);
    return;
  }
  CHECK(sh(&e, id,
           "mkdir -p /data/sub && echo alpha > /data/a.txt && echo beta > /data/sub/b.txt && "
           "head -c 8388608 /dev/zero > /data/big",
           NULL) == 0,
        "preparing the files");
  char dir[] = "/tmp/cirrus-e2e-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char *tar = xasprintf("%s/out.tar", dir);

  /* a file: one entry, its content */
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->copy_out(e.b, id, "/data/a.txt", tar, on_call_done, &c));
  CHECK(c.code == 0, "copy_out of a file: %s", c.msg);
  struct ci_strv ents = CI_STRV_INIT;
  struct ci_buf content = CI_BUF_INIT;
  read_tar(tar, &ents, &content);
  CHECK(ents.n == 1 && !strcmp(ents.v[0], "f a.txt 6"), "file tar: %s",
        ents.n ? ents.v[0] : "empty");
  CHECK(!strcmp(ci_buf_str(&content), "alpha\n"), "file content '%s'", ci_buf_str(&content));
  ci_strv_release(&ents);
  ci_buf_release(&content);
  call_release(&c);

  /* a directory, with an 8 MiB file that goes straight to disk */
  call_wait(&e.loop, &c, e.b->ops->copy_out(e.b, id, "/data", tar, on_call_done, &c));
  CHECK(c.code == 0, "copy_out of a directory: %s", c.msg);
  read_tar(tar, &ents, &content);
  CHECK(ci_strv_contains(&ents, "d data"), "no data/ entry");
  CHECK(ci_strv_contains(&ents, "d data/sub"), "no data/sub/ entry");
  CHECK(ci_strv_contains(&ents, "f data/a.txt 6"), "no data/a.txt");
  CHECK(ci_strv_contains(&ents, "f data/sub/b.txt 5"), "no data/sub/b.txt");
  CHECK(ci_strv_contains(&ents, "f data/big 8388608"), "no data/big of 8 MiB");
  CHECK(ents.n == 5, "%zu entries in the directory's tar", ents.n);
  struct stat st;
  CHECK(stat(tar, &st) == 0 && st.st_size > 8388608, "tar of %lld bytes", (long long)st.st_size);
  ci_strv_release(&ents);
  ci_buf_release(&content);
  call_release(&c);

  /* a missing path: -ENOENT, no file left */
  unlink(tar);
  call_wait(&e.loop, &c, e.b->ops->copy_out(e.b, id, "/nope/missing", tar, on_call_done, &c));
  CHECK(c.code == -ENOENT, "copy_out of a missing path: code %d (%s)", c.code, c.msg);
  CHECK(c.msg && strstr(c.msg, "/nope/missing"), "message does not name the path: %s", c.msg);
  CHECK(access(tar, F_OK) < 0, "a failed copy_out left %s", tar);
  call_release(&c);

  remove_container(&e, id);
  free(id);
  unlink(tar);
  rmdir(dir);
  free(tar);
  env_close(&e);
}

/* A tar of name/content pairs at path. */
static void
write_tar(const char *path, const char *const *files)
{
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
    fprintf(stderr, "FAIL: cannot write %s\n", path);
    exit(1);
  }
  for (size_t i = 0; files[i]; i += 2) {
    struct archive_entry *ent = archive_entry_new();
    archive_entry_set_pathname(ent, files[i]);
    archive_entry_set_filetype(ent, AE_IFREG);
    archive_entry_set_perm(ent, 0644);
    archive_entry_set_size(ent, (la_int64_t)strlen(files[i + 1]));
    archive_write_header(a, ent);
    archive_write_data(a, files[i + 1], strlen(files[i + 1]));
    archive_entry_free(ent);
  }
  archive_write_close(a);
  archive_write_free(a);
}

static bool
lines_have(const struct ci_strv *lines, const char *needle)
{
  for (size_t i = 0; i < lines->n; i++)
    if (strcasestr(lines->v[i], needle))
      return true;
  return false;
}

/* Containers (also the builder's own, on podman) made from image id. */
static size_t
count_from_image(const char *image_id)
{
  json_t *j = NULL;
  raw("GET",
      !strcmp(engine, "podman") ? "/v4.0.0/libpod/containers/json?all=true&external=true"
                                : "/v1.41/containers/json?all=1",
      &j);
  size_t n = 0, i;
  json_t *v;
  const char *bare = ci_str_has_prefix(image_id, "sha256:") ? image_id + 7 : image_id;
  json_array_foreach(j, i, v)
  {
    const char *img = json_string_value(json_object_get(v, "ImageID"));
    if (img && strstr(img, bare))
      n++;
  }
  json_decref(j);
  return n;
}

/* Remove an image and its untagged parents (the build's intermediate images). */
static void
delete_image(const char *ref)
{
  struct ci_buf p = CI_BUF_INIT;
  ci_buf_adds(&p, "/v1.41/images/");
  engine_buf_add_query(&p, ref);
  ci_buf_adds(&p, "?force=1");
  long st = raw("DELETE", ci_buf_str(&p), NULL);
  CHECK(st == 200, "removing image %s: HTTP %ld", ref, st);
  ci_buf_release(&p);
}

static void
test_build(void)
{
  struct env e;
  env_open(&e);
  char dir[] = "/tmp/cirrus-e2e-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char *ctx = xasprintf("%s/context.tar", dir);
  char *dockerfile = xasprintf("FROM %s\n"
                               "ARG GREETING=none\n"
                               "RUN echo \"built with $GREETING\" > /greeting\n"
                               "COPY hello.txt /hello.txt\n",
                               test_image());
  const char *files[] = {"ci/Dockerfile.test", dockerfile, "hello.txt", "hi from the context\n",
                         NULL};
  write_tar(ctx, files);
  char *tag = xasprintf("localhost/cirrus-e2e-build-%s:%d", engine, (int)getpid());
  struct cfg_env args = CFG_ENV_INIT;
  cfg_env_set(&args, "GREETING", "a build arg");
  struct backend_build_spec spec = {
      .context_tar = ctx, .dockerfile = "ci/Dockerfile.test", .args = &args, .tag = tag};
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->image_build(e.b, &spec, on_call_line, on_call_done, &c));
  CHECK(c.code == 0, "build: %s", c.msg);
  CHECK(lines_have(&c.lines, "step 1/4"), "no 'step 1/4' in the build output");
  for (size_t i = 0; i < c.lines.n; i++)
    CHECK(!strchr(c.lines.v[i], '\n'), "a progress line holds a newline: '%s'", c.lines.v[i]);
  call_release(&c);

  /* the image is there, and a container made from it sees the RUN, the arg and the COPY */
  call_wait(&e.loop, &c,
            e.b->ops->image_prepare(e.b, tag, BACKEND_PULL_NEVER, NULL, on_call_image, &c));
  CHECK(c.code == 0 && c.id, "the built image is not there: %s", c.msg);
  char *image_id = steal_pointer(&c.id);
  call_release(&c);
  struct backend_container_spec cs = {.image = tag, .run_id = run_id};
  call_wait(&e.loop, &c, e.b->ops->container_create(e.b, &cs, on_call_id, &c));
  CHECK(c.code == 0 && c.id, "container from the built image: %s", c.msg);
  if (c.id) {
    char *out = NULL;
    CHECK(sh(&e, c.id, "cat /greeting /hello.txt", &out) == 0, "cat in the built image");
    CHECK(out && !strcmp(out, "built with a build arg\nhi from the context\n"), "built image: '%s'",
          out);
    free(out);
    remove_container(&e, c.id);
  }
  call_release(&c);

  /* a failing build: its output, the failing command in the error, no container left */
  if (image_id) {
    char *bad = xasprintf("FROM %s\nRUN echo about to fail; exit 7\n", tag);
    const char *bad_files[] = {"Dockerfile", bad, NULL};
    write_tar(ctx, bad_files);
    free(bad);
    char *bad_tag = xasprintf("localhost/cirrus-e2e-bad-%s:%d", engine, (int)getpid());
    struct backend_build_spec bs = {.context_tar = ctx, .tag = bad_tag};
    call_wait(&e.loop, &c, e.b->ops->image_build(e.b, &bs, on_call_line, on_call_done, &c));
    CHECK(c.code < 0, "the failing build succeeded");
    CHECK(c.msg && strstr(c.msg, bad_tag) &&
              (strstr(c.msg, "returned a non-zero code: 7") || strstr(c.msg, "exit status 7")),
          "failing build: %s", c.msg);
    CHECK(lines_have(&c.lines, "about to fail"), "the failing step's output is missing");
    CHECK(count_from_image(image_id) == 0, "the failed build left a container behind");
    call_release(&c);
    free(bad_tag);
  }

  /* pull: the base image is fetched from the test registry first */
  const char *registry = getenv("CIRRUS_TEST_REGISTRY");
  if (registry && *registry) {
    char *df = xasprintf("FROM %s/cirrus-test/busybox:latest\nRUN echo pulled > /p\n", registry);
    const char *pull_files[] = {"Dockerfile", df, NULL};
    write_tar(ctx, pull_files);
    char *pull_tag = xasprintf("localhost/cirrus-e2e-pull-%s:%d", engine, (int)getpid());
    struct backend_build_spec ps = {.context_tar = ctx, .tag = pull_tag, .pull = true};
    call_wait(&e.loop, &c, e.b->ops->image_build(e.b, &ps, on_call_line, on_call_done, &c));
    CHECK(c.code == 0, "build with pull: %s", c.msg);
    CHECK(lines_have(&c.lines, "pull"), "the build with pull did not pull");
    if (c.code == 0)
      delete_image(pull_tag);
    call_release(&c);
    free(pull_tag);
    free(df);
  } else {
    fprintf(stderr, "note: CIRRUS_TEST_REGISTRY is not set: no build with pull\n");
  }

  /* a missing Dockerfile and a missing context: errors, not crashes */
  struct backend_build_spec ms = {.context_tar = ctx, .dockerfile = "nope/Dockerfile", .tag = tag};
  call_wait(&e.loop, &c, e.b->ops->image_build(e.b, &ms, NULL, on_call_done, &c));
  CHECK(c.code < 0 && c.msg, "build without its Dockerfile succeeded");
  call_release(&c);
  struct backend_build_spec nc = {.context_tar = "/nonexistent/context.tar", .tag = tag};
  CHECK(e.b->ops->image_build(e.b, &nc, NULL, on_call_done, &c) == -ENOENT,
        "a missing context was not refused");

  if (image_id)
    delete_image(tag);
  free(image_id);
  cfg_env_release(&args);
  unlink(ctx);
  rmdir(dir);
  free(ctx);
  free(dockerfile);
  free(tag);
  env_close(&e);
}

static void
test_volumes(void)
{
  struct env e;
  env_open(&e);
  char *vol = xasprintf("cirrus-e2e-vol-%d", (int)getpid());
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->volume_create(e.b, vol, run_id, on_call_done, &c));
  CHECK(c.code == 0, "volume_create: %s", c.msg);
  call_release(&c);
  CHECK(count_labelled("volumes", run_id) == 1, "the volume is not labelled with the run id");

  struct backend_volume_mount m = {.name = vol, .container_path = "/shared"};
  char *one = create(&e, "writer", &m, 1);
  char *two = create(&e, "reader", &m, 1);
  if (one && two) {
    CHECK(sh(&e, one, "echo written by one > /shared/f", NULL) == 0, "write in the volume");
    char *out = NULL;
    CHECK(sh(&e, two, "cat /shared/f", &out) == 0, "read from the volume");
    CHECK(out && !strcmp(out, "written by one\n"), "the second container read '%s'", out);
    free(out);
  }
  if (one)
    remove_container(&e, one);
  if (two)
    remove_container(&e, two);
  free(one);
  free(two);

  call_wait(&e.loop, &c, e.b->ops->volume_remove(e.b, vol, on_call_done, &c));
  CHECK(c.code == 0, "volume_remove: %s", c.msg);
  call_release(&c);
  CHECK(count_labelled("volumes", run_id) == 0, "the volume is still there");
  call_wait(&e.loop, &c, e.b->ops->volume_remove(e.b, vol, on_call_done, &c));
  CHECK(c.code == 0, "removing a removed volume: %s", c.msg);
  call_release(&c);

  /* names that would be read as host paths are refused */
  CHECK(e.b->ops->volume_create(e.b, "/etc", run_id, on_call_done, &c) == -EINVAL,
        "volume '/etc' accepted");
  struct backend_volume_mount bad = {.name = "../x", .container_path = "/x"};
  struct backend_container_spec spec = {.image = test_image(), .volumes = &bad, .nvolumes = 1};
  CHECK(e.b->ops->container_create(e.b, &spec, on_call_id, &c) == -EINVAL,
        "volume '../x' accepted");
  free(vol);
  env_close(&e);
}

static void
test_clean(void)
{
  struct env e;
  env_open(&e);
  /* What a killed run leaves: two containers (one using a volume) and the volume; and a
   * container of another run, which clean must not touch. */
  char *vol = xasprintf("cirrus-e2e-clean-%d", (int)getpid());
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->volume_create(e.b, vol, run_id, on_call_done, &c));
  CHECK(c.code == 0, "volume_create: %s", c.msg);
  call_release(&c);
  struct backend_volume_mount m = {.name = vol, .container_path = "/w"};
  char *a = create(&e, "lint", &m, 1);
  char *b = create(&e, NULL, NULL, 0);
  char saved[32];
  snprintf(saved, sizeof(saved), "%.31s", run_id);
  snprintf(run_id, sizeof(run_id), "%.31s-other", saved);
  char *other = create(&e, "other", NULL, 0);
  snprintf(run_id, sizeof(run_id), "%s", saved);
  CHECK(count_labelled("containers", run_id) == 2, "containers of the run before clean");

  call_wait(&e.loop, &c, e.b->ops->clean(e.b, run_id, on_call_line, on_call_done, &c));
  CHECK(c.code == 0, "clean: %s", c.msg);
  char *want_a = xasprintf("container %.12s (task 'lint')", a ? a : "");
  char *want_b = xasprintf("container %.12s", b ? b : "");
  char *want_v = xasprintf("volume %s", vol);
  CHECK(c.lines.n == 3, "clean reported %zu removals", c.lines.n);
  CHECK(ci_strv_contains(&c.lines, want_a), "clean did not report '%s'", want_a);
  CHECK(ci_strv_contains(&c.lines, want_b), "clean did not report '%s'", want_b);
  CHECK(ci_strv_contains(&c.lines, want_v), "clean did not report '%s'", want_v);
  CHECK(c.lines.n < 3 || !strcmp(c.lines.v[2], want_v), "volumes are not removed last");
  call_release(&c);
  CHECK(count_labelled("containers", run_id) == 0, "containers left after clean");
  CHECK(count_labelled("volumes", run_id) == 0, "volumes left after clean");
  char *other_run = xasprintf("%s-other", run_id);
  CHECK(count_labelled("containers", other_run) == 1, "clean removed another run's container");

  /* nothing left: clean succeeds and reports nothing */
  call_wait(&e.loop, &c, e.b->ops->clean(e.b, run_id, on_call_line, on_call_done, &c));
  CHECK(c.code == 0 && c.lines.n == 0, "second clean: %s, %zu lines", c.msg, c.lines.n);
  call_release(&c);
  call_wait(&e.loop, &c, e.b->ops->clean(e.b, other_run, NULL, on_call_done, &c));
  CHECK(c.code == 0, "clean of the other run: %s", c.msg);
  call_release(&c);
  CHECK(count_labelled("containers", other_run) == 0, "the other run's container is left");

  free(other_run);
  free(want_a);
  free(want_b);
  free(want_v);
  free(a);
  free(b);
  free(other);
  free(vol);
  env_close(&e);
}

static void
test_missing_image(void)
{
  struct env e;
  env_open(&e);
  struct backend_container_spec spec = {.image = "localhost/cirrus-test/nope:nope",
                                        .run_id = run_id};
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->container_create(e.b, &spec, on_call_id, &c));
  CHECK(c.code == -ENOENT, "create with a missing image: code %d (%s)", c.code, c.msg);
  char *want = xasprintf("image 'localhost/cirrus-test/nope:nope' is not present in %s", engine);
  CHECK(c.msg && ci_str_has_prefix(c.msg, want), "message: %s", c.msg);
  free(want);
  call_release(&c);
  env_close(&e);
}

/* ==== a proxy in front of the engine's socket, killed like the daemon ========================= */

struct proxy {
  char dir[64];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];     /* our socket */
  char upstream[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* the engine's */
  int lfd;
  int wake[2];
  pthread_t thread;
  bool running;
};

#define PROXY_MAX 64

static void *
proxy_main(void *arg)
{
  struct proxy *p = arg;
  int fds[2 * PROXY_MAX]; /* pairs: client, engine */
  size_t n = 0;
  for (;;) {
    struct pollfd pfd[2 + 2 * PROXY_MAX];
    pfd[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = n < 2 * PROXY_MAX ? p->lfd : -1, .events = POLLIN};
    for (size_t i = 0; i < n; i++)
      pfd[2 + i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    if (poll(pfd, 2 + n, -1) < 0 && errno != EINTR)
      break;
    if (pfd[0].revents)
      break; /* killed */
    if (pfd[1].revents & POLLIN) {
      int c = accept(p->lfd, NULL, NULL);
      int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct sockaddr_un sa = {.sun_family = AF_UNIX};
      snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->upstream);
      if (c >= 0 && u >= 0 && connect(u, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        fds[n++] = c;
        fds[n++] = u;
      } else {
        if (c >= 0)
          close(c);
        if (u >= 0)
          close(u);
      }
    }
    for (size_t i = 0; i < n; i++) {
      if (!(pfd[2 + i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      char buf[65536];
      ssize_t r = read(fds[i], buf, sizeof(buf));
      int to = fds[i ^ 1];
      bool ok = r > 0;
      for (ssize_t off = 0; ok && off < r;) {
        ssize_t w = write(to, buf + off, (size_t)(r - off));
        ok = w > 0;
        off += w;
      }
      if (!ok) { /* either side closed: close the pair; mark it for removal */
        close(fds[i & ~(size_t)1]);
        close(fds[i | 1]);
        fds[i & ~(size_t)1] = fds[i | 1] = -1;
        pfd[2 + (i ^ 1)].revents = 0;
      }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i += 2)
      if (fds[i] >= 0) {
        fds[k++] = fds[i];
        fds[k++] = fds[i + 1];
      }
    n = k;
  }
  /* The daemon dies: every connection drops; the socket file stays, refusing connections. */
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
  close(p->lfd);
  p->lfd = -1;
  return NULL;
}

static void
proxy_listen(struct proxy *p)
{
  unlink(p->path);
  p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
  if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      listen(p->lfd, 16) < 0 || pipe(p->wake) < 0 ||
      pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
    fprintf(stderr, "FAIL: cannot start the proxy: %s\n", strerror(errno));
    exit(1);
  }
  p->running = true;
}

static bool
proxy_start(struct proxy *p)
{
  memset(p, 0, sizeof(*p));
  const char *url = engine_url();
  if (!ci_str_has_prefix(url, "unix://"))
    return false;
  if (strlen(url + 7) >= sizeof(p->upstream))
    return false;
  snprintf(p->upstream, sizeof(p->upstream), "%s", url + 7);
  snprintf(p->dir, sizeof(p->dir), "/tmp/cirrus-e2e-proxy-XXXXXX");
  if (!mkdtemp(p->dir))
    return false;
  snprintf(p->path, sizeof(p->path), "%s/engine.sock", p->dir);
  proxy_listen(p);
  return true;
}

static void
proxy_kill(struct proxy *p)
{
  if (!p->running)
    return;
  if (write(p->wake[1], "k", 1) < 0)
    perror("proxy");
  pthread_join(p->thread, NULL);
  close(p->wake[0]);
  close(p->wake[1]);
  p->running = false;
}

static void
proxy_stop(struct proxy *p)
{
  proxy_kill(p);
  unlink(p->path);
  rmdir(p->dir);
}

/* The engine dies while a step runs: the task fails soon with a message that says so, nothing
 * hangs; once it is back, clean removes what the run left. */
static void
test_daemon_dies(void)
{
  struct proxy p;
  if (!proxy_start(&p)) {
    CHECK(0, "cannot put a proxy in front of %s", engine_url());
    return;
  }
  char *url = xasprintf("unix://%s", p.path);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct backend *b = NULL;
  struct ci_error *err = NULL;
  if (docker_backend_open_at(&loop, engine, url, NULL, &b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open %s through the proxy: %s\n", engine, err->msg);
    exit(1);
  }
  struct rec r = {.kill_on_start = &p};
  int s = run_on(&loop, b, "task:\n  main_script: echo started; sleep 60\n  never_script: true\n",
                 1, &r);
  double took = now() - r.killed_at;
  CHECK(r.killed_at > 0, "the step never started: %s", ci_buf_str(&r.out));
  CHECK(s == 1, "status %d after the engine died", s);
  CHECK(has(&r, "end main failed"), "the task did not fail");
  CHECK(has(&r, "main: 'never' script skipped"), "the next step was not skipped");
  CHECK(took < 10, "the task took %.1f s to fail after the engine died", took);
  CHECK(strstr(ci_buf_str(&r.out), "broke before the answer was complete") ||
            strstr(ci_buf_str(&r.out), "nothing listens on socket"),
        "the failure does not say the engine went away:\n%s", ci_buf_str(&r.out));
  fprintf(stderr, "%s: the task failed %.3f s after the engine died:\n%s", engine, took,
          ci_buf_str(&r.out));
  release(&r);
  b->ops->close(b, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);

  /* back again: the container is still there, and clean removes it */
  CHECK(count_labelled("containers", run_id) == 1, "the run's container is not there");
  proxy_listen(&p);
  if (docker_backend_open_at(&loop, engine, url, NULL, &b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open %s through the restarted proxy: %s\n", engine, err->msg);
    exit(1);
  }
  struct call c = {0};
  call_wait(&loop, &c, b->ops->clean(b, run_id, on_call_line, on_call_done, &c));
  CHECK(c.code == 0, "clean: %s", c.msg);
  CHECK(c.lines.n == 1 && strstr(c.lines.v[0], "(task 'main')"), "clean after the restart: %s",
        c.lines.n ? c.lines.v[0] : "nothing");
  call_release(&c);
  CHECK(count_labelled("containers", run_id) == 0, "containers left after clean");
  b->ops->close(b, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "handles left open on the loop");
  proxy_stop(&p);
  free(url);
}

/* The connections drop but the engine answers again at once (a service restarted): the step's
 * output ends while its process still runs; the task fails with a message that says so. */
static void
test_daemon_restarts(void)
{
  struct proxy p;
  if (!proxy_start(&p)) {
    CHECK(0, "cannot put a proxy in front of %s", engine_url());
    return;
  }
  char *url = xasprintf("unix://%s", p.path);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct backend *b = NULL;
  struct ci_error *err = NULL;
  if (docker_backend_open_at(&loop, engine, url, NULL, &b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open %s through the proxy: %s\n", engine, err->msg);
    exit(1);
  }
  struct rec r = {.kill_on_start = &p, .restart = true};
  int s = run_on(&loop, b, "task:\n  main_script: echo started; sleep 60\n", 1, &r);
  double took = now() - r.killed_at;
  CHECK(s == 1, "status %d after the engine's connections dropped", s);
  CHECK(has(&r, "end main failed"), "the task did not fail");
  CHECK(took < 15, "the task took %.1f s to fail", took);
  CHECK(strstr(ci_buf_str(&r.out), "ended 2 s ago but the process still runs"),
        "the failure does not say the output ended early:\n%s", ci_buf_str(&r.out));
  fprintf(stderr, "%s: the task failed %.3f s after the connections dropped\n", engine, took);
  release(&r);
  b->ops->close(b, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "handles left open on the loop");
  CHECK(count_labelled("containers", run_id) == 0, "the task's container was not removed");
  proxy_stop(&p);
  free(url);
}

/* Whatever a failed check left behind. */
static void
clean_up(void)
{
  struct env e;
  env_open(&e);
  struct call c = {0};
  call_wait(&e.loop, &c, e.b->ops->clean(e.b, run_id, NULL, on_call_done, &c));
  CHECK(c.code == 0, "final clean: %s", c.msg);
  call_release(&c);
  env_close(&e);
}

int
main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s docker|podman\n", argv[0]);
    return 2;
  }
  const char *be = argv[1];
  engine = be;
  const char *skip = getenv("CIRRUS_TEST_SKIP");
  if (skip && strstr(skip, be))
    return 77;
  signal(SIGPIPE, SIG_IGN); /* the proxy writes to sockets that may be gone */
  snprintf(run_id, sizeof(run_id), "e2etest-%d", (int)getpid());
  struct rec r = {0};

  int s = run("task:\n"
              "  a_script:\n    - echo hello $CIRRUS_TASK_NAME\n    - echo err >&2\n"
              "    - echo K=from-a >> $CIRRUS_ENV\n"
              "  b_script: echo \"K=$K pwd=$(pwd)\"\n"
              "  f_file:\n    path: sub/f.txt\n    from_contents: content\n"
              "  c_script: cat sub/f.txt\n",
              1, &r);
  CHECK(s == 0, "status %d, output:\n%s", s, ci_buf_str(&r.out));
  CHECK(strstr(ci_buf_str(&r.out), "hello main\n"), "stdout: %s", ci_buf_str(&r.out));
  CHECK(strstr(ci_buf_str(&r.out), "err\n"), "stderr missing");
  CHECK(strstr(ci_buf_str(&r.out), "K=from-a pwd=/tmp/cirrus-ci/working-dir\n"), "CIRRUS_ENV/pwd: %s",
        ci_buf_str(&r.out));
  CHECK(strstr(ci_buf_str(&r.out), "echo hello $CIRRUS_TASK_NAME"), "verbose echo missing");
  CHECK(strstr(ci_buf_str(&r.out), "content"), "file instruction: %s", ci_buf_str(&r.out));
  release(&r);

  s = run("task:\n  a_script: exit 3\n  b_script: echo never\n"
          "  always:\n    c_script: echo always\n",
          1, &r);
  CHECK(s == 1, "failing task status %d", s);
  CHECK(strstr(ci_buf_str(&r.out), "Exit status: 3"), "exit status: %s", ci_buf_str(&r.out));
  CHECK(has(&r, "main: 'b' script skipped"), "b not skipped");
  CHECK(has(&r, "main: 'c' script succeeded"), "always did not run");
  release(&r);

  s = run("task:\n  timeout_in: 2s\n  slow_script: sleep 30\n"
          "  on_timeout:\n    t_script: echo timeout-hook\n",
          1, &r);
  CHECK(s == 1, "timeout status %d", s);
  CHECK(has(&r, "end main timed out"), "not timed out");
  CHECK(strstr(ci_buf_str(&r.out), "timeout-hook"), "on_timeout did not run: %s",
        ci_buf_str(&r.out));
  release(&r);

  s = run("task:\n  bg_background_script: while true; do echo tick; sleep 0.2; done\n"
          "  main_script: sleep 1\n",
          1, &r);
  CHECK(s == 0, "background status %d: %s", s, ci_buf_str(&r.out));
  CHECK(strstr(ci_buf_str(&r.out), "tick"), "background output missing");
  release(&r);

  s = run("a_task:\n  script: sleep 1\nb_task:\n  script: sleep 1\nc_task:\n  script: sleep 1\n", 3,
          &r);
  CHECK(s == 0, "parallel status %d", s);
  release(&r);

  s = run("task:\n  container:\n    image: localhost/cirrus-test/nope:nope\n  script: true\n", 1,
          &r);
  CHECK(s == 1, "missing image status %d", s);
  CHECK(has(&r, "main: image pull failed"), "pull did not fail");
  release(&r);

  test_copy_out();
  test_build();
  test_volumes();
  test_clean();
  test_missing_image();
  test_daemon_dies();
  test_daemon_restarts();
  clean_up();

  fprintf(stderr, "%s: %d failures\n", be, failures);
  return failures ? 1 : 0;
}
