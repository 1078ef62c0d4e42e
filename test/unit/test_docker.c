/* Tests of backends/docker.c against a fake engine: a unix-socket HTTP server on a thread of
 * its own that answers from a per-test route function and records every request.  Covers what
 * the real engines cannot be made to do on demand (a removal that fails during clean, an exec
 * whose stream ends while the process runs, a build error with secret build args) and checks
 * the exact requests sent: paths, queries, bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/docker.h"
#include "backends/engine_http.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ==== the fake engine ========================================================================= */

struct fake_req {
  char *method;
  char *path; /* with the query */
  char *content_type;
  struct ci_buf body;
};

struct fake;
/* Answer rq: append a whole HTTP response to resp; *close_after ends the connection after it
 * (a body delimited by the connection's end, as exec start sends it). */
typedef void (*fake_route)(struct fake *f, const struct fake_req *rq, struct ci_buf *resp,
                           bool *close_after);

#define FAKE_MAX_CONN 16
#define FAKE_MAX_LOG 64

struct fake {
  char dir[64];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int lfd;
  int wake[2];
  pthread_t thread;
  pthread_mutex_t mu;
  fake_route route;
  int counter; /* for routes that change their answer */
  int hits;
  struct fake_req log[FAKE_MAX_LOG];
  size_t nlog;
};

struct fake_conn {
  int fd;
  struct ci_buf in;
};

static void
fake_req_release(struct fake_req *rq)
{
  free(rq->method);
  free(rq->path);
  free(rq->content_type);
  ci_buf_release(&rq->body);
  memset(rq, 0, sizeof(*rq));
}

/* A header's value in the header block [h, end), or NULL (owned). */
static char *
header(const char *h, const char *end, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = strstr(h, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
    if (!strncasecmp(p + 2, name, n) && p[2 + n] == ':') {
      const char *v = p + 3 + n;
      while (*v == ' ')
        v++;
      return xstrndup(v, strcspn(v, "\r"));
    }
  }
  return NULL;
}

/* Take one complete request off the front of in: 1 if one was there, 0 if more is needed. */
static int
parse_request(struct ci_buf *in, struct fake_req *rq)
{
  const char *s = ci_buf_str(in);
  const char *end = strstr(s, "\r\n\r\n");
  if (!end)
    return 0;
  size_t hlen = (size_t)(end - s) + 4;
  size_t used;
  struct ci_buf body = CI_BUF_INIT;
  char *cl = header(s, end, "Content-Length");
  char *te = header(s, end, "Transfer-Encoding");
  if (te && !strcasecmp(te, "chunked")) {
    const char *p = s + hlen;
    for (;;) {
      char *e;
      if (!memchr(p, '\n', in->len - (size_t)(p - s)))
        goto more;
      unsigned long n = strtoul(p, &e, 16);
      p = e + 2;
      if ((size_t)(p - s) + n + 2 > in->len)
        goto more;
      if (n == 0) {
        p += 2;
        break;
      }
      ci_buf_add(&body, p, n);
      p += n + 2;
    }
    used = (size_t)(p - s);
  } else {
    size_t want = cl ? strtoul(cl, NULL, 10) : 0;
    if (in->len < hlen + want)
      goto more;
    ci_buf_add(&body, s + hlen, want);
    used = hlen + want;
  }
  const char *sp = strchr(s, ' ');
  const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
  rq->method = xstrndup(s, (size_t)(sp - s));
  rq->path = xstrndup(sp + 1, (size_t)(sp2 - sp - 1));
  rq->content_type = header(s, end, "Content-Type");
  rq->body = body;
  free(cl);
  free(te);
  char *rest = xstrndup(s + used, in->len - used);
  size_t rest_len = in->len - used;
  ci_buf_reset(in);
  ci_buf_add(in, rest, rest_len);
  free(rest);
  return 1;
more:
  ci_buf_release(&body);
  free(cl);
  free(te);
  return 0;
}

static bool
write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0)
      return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static void *
fake_main(void *arg)
{
  struct fake *f = arg;
  struct fake_conn conns[FAKE_MAX_CONN];
  size_t n = 0;
  for (;;) {
    struct pollfd pfd[2 + FAKE_MAX_CONN];
    pfd[0] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = n < FAKE_MAX_CONN ? f->lfd : -1, .events = POLLIN};
    for (size_t i = 0; i < n; i++)
      pfd[2 + i] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
    if (poll(pfd, 2 + n, -1) < 0)
      continue;
    if (pfd[0].revents)
      break;
    for (size_t i = 0; i < n; i++) {
      if (!pfd[2 + i].revents)
        continue;
      char buf[65536];
      ssize_t r = read(conns[i].fd, buf, sizeof(buf));
      bool open = r > 0;
      if (open)
        ci_buf_add(&conns[i].in, buf, (size_t)r);
      struct fake_req rq = {0};
      while (open && parse_request(&conns[i].in, &rq)) {
        struct ci_buf resp = CI_BUF_INIT;
        bool close_after = false;
        pthread_mutex_lock(&f->mu);
        f->route(f, &rq, &resp, &close_after);
        if (f->nlog < FAKE_MAX_LOG)
          f->log[f->nlog++] = rq;
        else
          fake_req_release(&rq);
        pthread_mutex_unlock(&f->mu);
        memset(&rq, 0, sizeof(rq));
        open = write_all(conns[i].fd, resp.s ? resp.s : "", resp.len) && !close_after;
        ci_buf_release(&resp);
      }
      if (!open) {
        close(conns[i].fd);
        ci_buf_release(&conns[i].in);
        conns[i].fd = -1;
      }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (conns[i].fd >= 0)
        conns[k++] = conns[i];
    n = k;
    if (pfd[1].revents & POLLIN) {
      int c = accept(f->lfd, NULL, NULL);
      if (c >= 0)
        conns[n++] = (struct fake_conn){.fd = c, .in = CI_BUF_INIT};
    }
  }
  for (size_t i = 0; i < n; i++) {
    close(conns[i].fd);
    ci_buf_release(&conns[i].in);
  }
  return NULL;
}

/* Answers every test needs: the ping and /info that opening the backend sends. */
static bool
common_route(const struct fake_req *rq, struct ci_buf *resp)
{
  if (!strcmp(rq->path, "/_ping")) {
    ci_buf_adds(resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
    return true;
  }
  if (!strcmp(rq->path, "/v1.41/info")) {
    const char *j = "{\"NCPU\":2,\"MemTotal\":1073741824,\"ServerVersion\":\"fake\"}";
    ci_buf_addf(
        resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
        strlen(j), j);
    return true;
  }
  return false;
}

static void
reply(struct ci_buf *resp, int status, const char *ctype, const char *body, size_t len)
{
  ci_buf_addf(resp, "HTTP/1.1 %d X\r\n", status);
  if (ctype)
    ci_buf_addf(resp, "Content-Type: %s\r\n", ctype);
  ci_buf_addf(resp, "Content-Length: %zu\r\n\r\n", len);
  ci_buf_add(resp, body, len);
}

static void
reply_json(struct ci_buf *resp, int status, const char *json)
{
  reply(resp, status, "application/json", json, strlen(json));
}

static void
fake_start(struct fake *f, fake_route route)
{
  memset(f, 0, sizeof(*f));
  f->route = route;
  pthread_mutex_init(&f->mu, NULL);
  strcpy(f->dir, "/tmp/ci-docker-test-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/engine.sock", f->dir);
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(f->lfd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, f->path);
  assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(f->lfd, 16), 0);
  assert_int_equal(pipe(f->wake), 0);
  assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_stop(struct fake *f)
{
  assert_int_equal(write(f->wake[1], "x", 1), 1);
  pthread_join(f->thread, NULL);
  close(f->wake[0]);
  close(f->wake[1]);
  close(f->lfd);
  unlink(f->path);
  rmdir(f->dir);
  for (size_t i = 0; i < f->nlog; i++)
    fake_req_release(&f->log[i]);
  pthread_mutex_destroy(&f->mu);
}

/* The first recorded request whose method is m and whose path starts with prefix. */
static const struct fake_req *
find_req(struct fake *f, const char *m, const char *prefix)
{
  const struct fake_req *found = NULL;
  pthread_mutex_lock(&f->mu);
  for (size_t i = 0; i < f->nlog && !found; i++)
    if (!strcmp(f->log[i].method, m) && ci_str_has_prefix(f->log[i].path, prefix))
      found = &f->log[i];
  pthread_mutex_unlock(&f->mu);
  return found;
}

/* ==== the backend on the fake ==================================================================
 */

struct env {
  uv_loop_t loop;
  struct backend *b;
  struct fake f;
};

static void
env_open(struct env *e, const char *name, fake_route route)
{
  fake_start(&e->f, route);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  struct ci_error *err = NULL;
  char *url = xasprintf("unix://%s", e->f.path);
  int r = docker_backend_open_at(&e->loop, name, url, NULL, &e->b, &err);
  free(url);
  if (r < 0)
    fail_msg("open: %s", err->msg);
  assert_int_equal(e->b->host_cpus, 2);
  assert_int_equal(e->b->host_mem_mb, 1024);
}

static void
env_close(struct env *e)
{
  e->b->ops->close(e->b, NULL, NULL);
  assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  fake_stop(&e->f);
}

struct call {
  int done;
  int code;
  char *msg;
  char *id;
  struct backend_exit ex;
  struct ci_buf out;
  struct ci_strv lines;
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
    c->code = err->code;
    c->msg = xstrdup(err->msg);
  }
}

static void
on_done(void *data, const struct ci_error *err)
{
  call_err(data, err);
}

static void
on_id(void *data, const char *id, const struct ci_error *err)
{
  struct call *c = data;
  if (id)
    c->id = xstrdup(id);
  call_err(c, err);
}

static void
on_line(void *data, const char *line)
{
  struct call *c = data;
  ci_strv_push(&c->lines, line);
}

static void
on_output(void *data, int stream, const char *buf, size_t len)
{
  struct call *c = data;
  ci_buf_addf(&c->out, "%d:", stream);
  ci_buf_add(&c->out, buf, len);
}

static void
on_exit_cb(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct call *c = data;
  if (ex)
    c->ex = *ex;
  call_err(c, err);
}

static void
wait_call(struct env *e, struct call *c, int start)
{
  assert_int_equal(start, 0);
  assert_int_equal(c->done, 0); /* never from inside the call */
  while (!c->done)
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_int_equal(c->done, 1);
}

static char *
temp_file(const char *content)
{
  char *path = xstrdup("/tmp/ci-docker-test-file-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_true(write_all(fd, content, strlen(content)));
  close(fd);
  return path;
}

/* ==== builds ================================================================================== */

static void
route_build(struct fake *f, const struct fake_req *rq, struct ci_buf *resp, bool *close_after)
{
  if (common_route(rq, resp))
    return;
  if (!strcmp(rq->method, "POST") && ci_str_has_prefix(rq->path, "/v1.41/build?")) {
    /* Docker's way: a step line and its newline apart; a pull's progress; a last piece
     * without a newline. */
    const char *lines = "{\"stream\":\"Step 1/2 : FROM x\"}\n"
                        "{\"stream\":\"\\n\"}\n"
                        "{\"stream\":\" ---> abc\\n\"}\n"
                        "{\"status\":\"Pulling from x\",\"id\":\"latest\"}\n"
                        "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":1,"
                        "\"total\":2},\"id\":\"l1\"}\n"
                        "{\"stream\":\"two\\nlines\\r\\n\"}\n"
                        "{\"aux\":{\"ID\":\"sha256:abc\"}}\n"
                        "{\"stream\":\"no newline at the end\"}\n";
    const char *fail = "{\"stream\":\"Step 1/1 : RUN false\\n\"}\n"
                       "{\"errorDetail\":{\"code\":1,\"message\":\"The command '/bin/sh -c "
                       "false' returned a non-zero code: 1\"},\"error\":\"x\"}\n";
    const char *body = strstr(rq->path, "t=bad") ? fail : lines;
    reply(resp, 200, "application/json", body, strlen(body));
    return;
  }
  reply_json(resp, 404, "{\"message\":\"no route\"}");
}

static void
test_build_output(void **state)
{
  struct env e;
  env_open(&e, "docker", route_build);
  char *ctx = temp_file("pretend this is a tar");
  struct cfg_env args = CFG_ENV_INIT;
  cfg_env_set(&args, "TOKEN", "s3cr3t value");
  cfg_env_set(&args, "A", "1");
  struct backend_build_spec spec = {.context_tar = ctx,
                                    .dockerfile = "ci/Dockerfile",
                                    .args = &args,
                                    .tag = "img:1",
                                    .pull = true};
  struct call c = {0};
  wait_call(&e, &c, e.b->ops->image_build(e.b, &spec, on_line, on_done, &c));
  assert_null(c.msg);
  const char *want[] = {
      "Step 1/2 : FROM x",    " ---> abc", "latest: Pulling from x", "two", "lines",
      "no newline at the end"};
  assert_int_equal(c.lines.n, CI_ARRAY_SIZE(want));
  for (size_t i = 0; i < CI_ARRAY_SIZE(want); i++)
    assert_string_equal(c.lines.v[i], want[i]);
  call_release(&c);

  const struct fake_req *rq = find_req(&e.f, "POST", "/v1.41/build?");
  assert_non_null(rq);
  assert_string_equal(rq->path, "/v1.41/build?t=img%3A1&dockerfile=ci%2FDockerfile"
                                "&buildargs=%7B%22A%22%3A%221%22%2C%22TOKEN%22%3A%22s3cr3t%20value"
                                "%22%7D&rm=1&forcerm=1&pull=1");
  assert_string_equal(rq->content_type, "application/x-tar");
  assert_string_equal(ci_buf_str(&rq->body), "pretend this is a tar");

  /* a failing step: the engine's words, the tag, and no build arguments in the message */
  spec.tag = "bad";
  wait_call(&e, &c, e.b->ops->image_build(e.b, &spec, NULL, on_done, &c));
  assert_int_equal(c.code, CI_EFAIL);
  assert_string_equal(c.msg, "building image 'bad' failed: docker POST /v1.41/build: The command "
                             "'/bin/sh -c false' returned a non-zero code: 1");
  call_release(&c);

  /* refused before any request: no context, a directory as context, no tag */
  spec.tag = "img:1";
  spec.context_tar = "/nonexistent/ctx.tar";
  assert_int_equal(e.b->ops->image_build(e.b, &spec, NULL, on_done, &c), -ENOENT);
  spec.context_tar = "/tmp";
  assert_int_equal(e.b->ops->image_build(e.b, &spec, NULL, on_done, &c), -EINVAL);
  spec.context_tar = ctx;
  spec.tag = "";
  assert_int_equal(e.b->ops->image_build(e.b, &spec, NULL, on_done, &c), -EINVAL);
  spec.tag = "img:1";
  cfg_env_set(&args, "LATIN1", "caf\xe9"); /* not UTF-8: refused, not dropped */
  assert_int_equal(e.b->ops->image_build(e.b, &spec, NULL, on_done, &c), -EINVAL);
  assert_int_equal(c.done, 0);

  cfg_env_release(&args);
  unlink(ctx);
  free(ctx);
  env_close(&e);
}

/* ==== clean =================================================================================== */

/* pids for clean without a run id: a live process named cirrus, and one that is gone */
static char live_owner[24], dead_owner[24];

static void
route_clean(struct fake *f, const struct fake_req *rq, struct ci_buf *resp, bool *close_after)
{
  if (common_route(rq, resp))
    return;
  if (!strcmp(rq->method, "GET") && ci_str_has_prefix(rq->path, "/v1.41/containers/json?")) {
    if (f->counter == 1) {
      reply_json(resp, 500, "{\"message\":\"database is locked\"}");
      return;
    }
    if (f->counter == 2) { /* clean without a run id: one owner alive, one gone */
      char *body = xasprintf(
          "[{\"Id\":\"eeeeeeeeeeeeeeee5\",\"Labels\":{\"dev.cirrus.run-id\":\"live\","
          "\"dev.cirrus.host\":\"%s\",\"dev.cirrus.pid\":\"%s\"}},"
          "{\"Id\":\"ffffffffffffffff6\",\"Labels\":{\"dev.cirrus.run-id\":\"dead\","
          "\"dev.cirrus.host\":\"%s\",\"dev.cirrus.pid\":\"%s\"}}]",
          backend_owner_host(), live_owner, backend_owner_host(), dead_owner);
      reply_json(resp, 200, body);
      free(body);
      return;
    }
    reply_json(resp, 200,
               "[{\"Id\":\"aaaaaaaaaaaaaaaa1\",\"Labels\":{\"dev.cirrus.run-id\":\"r1\","
               "\"dev.cirrus.task\":\"lint\"}},"
               "{\"Id\":\"bbbbbbbbbbbbbbbb2\",\"Labels\":{\"dev.cirrus.run-id\":\"r1\"}},"
               "{\"Id\":\"cccccccccccccccc3\",\"Labels\":{}},"
               "{\"Id\":\"dddddddddddddddd4\"}]");
    return;
  }
  if (!strcmp(rq->method, "GET") && ci_str_has_prefix(rq->path, "/v1.41/volumes?")) {
    reply_json(resp, 200, "{\"Volumes\":[{\"Name\":\"v1\",\"Labels\":{}}],\"Warnings\":null}");
    return;
  }
  if (!strcmp(rq->method, "DELETE")) {
    if (strstr(rq->path, "bbbb"))
      reply_json(resp, 500, "{\"message\":\"device or resource busy\"}");
    else if (strstr(rq->path, "cccc"))
      reply_json(resp, 404, "{\"message\":\"No such container\"}"); /* gone meanwhile */
    else
      reply(resp, 204, NULL, "", 0);
    return;
  }
  reply_json(resp, 404, "{\"message\":\"no route\"}");
}

static void
test_clean(void **state)
{
  struct env e;
  env_open(&e, "docker", route_clean);
  struct call c = {0};
  wait_call(&e, &c, e.b->ops->clean(e.b, "r1", on_line, on_done, &c));
  /* reported: what was removed, in order, volumes after containers */
  assert_int_equal(c.lines.n, 3);
  assert_string_equal(c.lines.v[0], "container aaaaaaaaaaaa (task 'lint')");
  assert_string_equal(c.lines.v[1], "container dddddddddddd");
  assert_string_equal(c.lines.v[2], "volume v1");
  assert_int_equal(c.code, CI_EFAIL);
  assert_non_null(strstr(c.msg, "1 of 5 could not be removed: docker DELETE "
                                "/v1.41/containers/bbbbbbbbbbbbbbbb2?force=1&v=1: HTTP 500: "
                                "device or resource busy"));
  call_release(&c);
  const struct fake_req *rq = find_req(&e.f, "GET", "/v1.41/containers/json");
  assert_string_equal(rq->path, "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22dev."
                                "cirrus.run-id%3Dr1%22%5D%7D");
  rq = find_req(&e.f, "GET", "/v1.41/volumes");
  assert_string_equal(
      rq->path, "/v1.41/volumes?filters=%7B%22label%22%3A%5B%22dev.cirrus.run-id%3Dr1%22%5D%7D");
  assert_non_null(find_req(&e.f, "DELETE", "/v1.41/volumes/v1?force=1"));
  assert_non_null(find_req(&e.f, "DELETE", "/v1.41/containers/aaaaaaaaaaaaaaaa1?force=1&v=1"));

  /* every run: the label without a value; a listing that fails ends it with that error */
  e.f.counter = 1;
  wait_call(&e, &c, e.b->ops->clean(e.b, NULL, NULL, on_done, &c));
  assert_string_equal(c.msg, "cannot list the containers to clean: docker GET /v1.41/containers/"
                             "json?all=1&filters=%7B%22label%22%3A%5B%22dev.cirrus.run-id%22%5D%7D"
                             ": HTTP 500: database is locked");
  call_release(&c);

  /* every run, while one is going on this host: what it owns stays */
  pid_t live = fork();
  if (live == 0) {
    prctl(PR_SET_NAME, "cirrus");
    for (;;)
      pause();
  }
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  snprintf(live_owner, sizeof live_owner, "%d", (int)live);
  snprintf(dead_owner, sizeof dead_owner, "%d", (int)dead);
  for (int i = 0; i < 200; i++) { /* the child renames itself */
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)live);
    FILE *f = fopen(path, "r");
    if (f && fgets(comm, sizeof comm, f) && !strcmp(comm, "cirrus\n")) {
      fclose(f);
      break;
    }
    if (f)
      fclose(f);
    usleep(5000);
  }
  assert_true(backend_owner_alive(backend_owner_host(), live_owner));
  assert_false(backend_owner_alive(backend_owner_host(), dead_owner));
  assert_false(backend_owner_alive("another-host", live_owner));
  assert_false(backend_owner_alive(backend_owner_host(), backend_owner_pid())); /* ourselves */
  assert_false(backend_owner_alive(NULL, live_owner));
  e.f.counter = 2;
  wait_call(&e, &c, e.b->ops->clean(e.b, NULL, on_line, on_done, &c));
  assert_int_equal(c.lines.n, 2);
  assert_string_equal(c.lines.v[0], "container ffffffffffff");
  assert_string_equal(c.lines.v[1], "volume v1");
  assert_null(find_req(&e.f, "DELETE", "/v1.41/containers/eeeeeeeeeeeeeeee5?force=1&v=1"));
  call_release(&c);
  kill(live, SIGKILL);
  waitpid(live, NULL, 0);
  env_close(&e);
}

/* ==== exec ==================================================================================== */

static void
route_exec(struct fake *f, const struct fake_req *rq, struct ci_buf *resp, bool *close_after)
{
  if (common_route(rq, resp))
    return;
  if (!strcmp(rq->method, "POST") && !strcmp(rq->path, "/v1.41/containers/c1/exec")) {
    reply_json(resp, 201, "{\"Id\":\"e1\"}");
    return;
  }
  if (!strcmp(rq->method, "POST") && !strcmp(rq->path, "/v1.41/exec/e1/start")) {
    /* no length, no chunks: the body ends with the connection */
    ci_buf_adds(resp, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n");
    ci_buf_add(resp, "\1\0\0\0\0\0\0\3out\2\0\0\0\0\0\0\3err", 22);
    *close_after = true;
    return;
  }
  if (!strcmp(rq->method, "GET") && !strcmp(rq->path, "/v1.41/exec/e1/json")) {
    /* counter 0: exits with 3 after two inspects say running; 1: runs on */
    if (f->counter == 1 || f->hits++ < 2)
      reply_json(resp, 200, "{\"Running\":true,\"ExitCode\":null}");
    else
      reply_json(resp, 200, "{\"Running\":false,\"ExitCode\":3}");
    return;
  }
  reply_json(resp, 404, "{\"message\":\"no route\"}");
}

static void
test_exec_stream_end(void **state)
{
  struct env e;
  env_open(&e, "podman", route_exec);
  const char *argv[] = {"sh", "-c", "x", NULL};
  struct backend_exec_spec spec = {.argv = argv};
  struct call c = {0};
  wait_call(&e, &c, e.b->ops->exec(e.b, "c1", &spec, on_output, on_exit_cb, &c));
  if (c.msg)
    fail_msg("exec: %s", c.msg);
  assert_int_equal(c.ex.exit_code, 3);
  assert_string_equal(ci_buf_str(&c.out), "1:out2:err");
  call_release(&c);

  /* the stream ended but the process runs on (the service restarted under us) */
  e.f.counter = 1;
  wait_call(&e, &c, e.b->ops->exec(e.b, "c1", &spec, on_output, on_exit_cb, &c));
  assert_int_equal(c.code, CI_EPROTO);
  assert_string_equal(c.msg, "the output of exec e1 ended 2 s ago but the process still runs "
                             "(did the podman service restart?)");
  call_release(&c);
  env_close(&e);
}

/* ==== copy_out ================================================================================ */

static void
route_archive(struct fake *f, const struct fake_req *rq, struct ci_buf *resp, bool *close_after)
{
  if (common_route(rq, resp))
    return;
  if (!strcmp(rq->path, "/v1.41/containers/c1/archive?path=%2Fdata%20dir")) {
    ci_buf_adds(resp, "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 64; i++) /* 64 chunks of 4 KiB */
      ci_buf_addf(resp, "1000\r\n%04096d\r\n", i);
    ci_buf_adds(resp, "0\r\n\r\n");
    return;
  }
  if (!strcmp(rq->path, "/v1.41/containers/c1/archive?path=%2Fcut")) {
    ci_buf_adds(resp, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this");
    *close_after = true;
    return;
  }
  reply_json(resp, 404, "{\"message\":\"Could not find the file in container c1\"}");
}

static void
test_copy_out(void **state)
{
  struct env e;
  env_open(&e, "docker", route_archive);
  char dir[] = "/tmp/ci-docker-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *tar = xasprintf("%s/out.tar", dir);
  struct call c = {0};
  wait_call(&e, &c, e.b->ops->copy_out(e.b, "c1", "/data dir", tar, on_done, &c));
  assert_null(c.msg);
  call_release(&c);
  char *content = NULL;
  size_t len = 0;
  struct ci_error *err = NULL;
  assert_int_equal(ci_read_file(tar, 1 << 20, &content, &len, &err), 0);
  assert_int_equal(len, 64 * 4096);
  for (int i = 0; i < 64; i++) {
    char want[4097];
    snprintf(want, sizeof(want), "%04096d", i);
    assert_memory_equal(content + (size_t)i * 4096, want, 4096);
  }
  free(content);

  /* missing: -ENOENT naming the path, and no file */
  wait_call(&e, &c, e.b->ops->copy_out(e.b, "c1", "/nope", tar, on_done, &c));
  assert_int_equal(c.code, -ENOENT);
  assert_true(ci_str_has_prefix(c.msg, "cannot copy '/nope' out of the container: docker GET "));
  assert_int_equal(access(tar, F_OK), -1);
  call_release(&c);

  /* cut short by the engine: an error, and the partial file is removed */
  wait_call(&e, &c, e.b->ops->copy_out(e.b, "c1", "/cut", tar, on_done, &c));
  assert_true(c.code < 0);
  assert_int_equal(access(tar, F_OK), -1);
  call_release(&c);

  /* refused at once: a relative path, a file that cannot be created */
  assert_int_equal(e.b->ops->copy_out(e.b, "c1", "rel", tar, on_done, &c), -EINVAL);
  char *bad = xasprintf("%s/no/such/dir/out.tar", dir);
  assert_int_equal(e.b->ops->copy_out(e.b, "c1", "/x", bad, on_done, &c), -ENOENT);
  assert_int_equal(c.done, 0);
  free(bad);
  rmdir(dir);
  free(tar);
  env_close(&e);
}

/* ==== container_create and volumes ==============================================================
 */

static void
route_create(struct fake *f, const struct fake_req *rq, struct ci_buf *resp, bool *close_after)
{
  if (common_route(rq, resp))
    return;
  if (!strcmp(rq->method, "POST") && ci_str_has_prefix(rq->path, "/v1.41/containers/create")) {
    if (strstr(rq->body.s, "\"Image\":\"gone:1\""))
      reply_json(resp, 500,
                 "{\"cause\":\"image not known\",\"message\":\"gone:1: image not known\","
                 "\"response\":500}");
    else
      reply_json(resp, 201, "{\"Id\":\"c1\",\"Warnings\":[]}");
    return;
  }
  if (!strcmp(rq->method, "POST") && !strcmp(rq->path, "/v1.41/containers/c1/start")) {
    reply(resp, 204, NULL, "", 0);
    return;
  }
  if (!strcmp(rq->method, "POST") && !strcmp(rq->path, "/v1.41/volumes/create")) {
    reply_json(resp, 201, "{\"Name\":\"v1\"}");
    return;
  }
  if (!strcmp(rq->method, "DELETE") && ci_str_has_prefix(rq->path, "/v1.41/volumes/")) {
    reply_json(resp, 404, "{\"message\":\"no such volume\"}");
    return;
  }
  reply_json(resp, 404, "{\"message\":\"no route\"}");
}

static void
test_create_and_volumes(void **state)
{
  struct env e;
  env_open(&e, "podman", route_create);
  struct backend_volume_mount vols[] = {{"v1", "/work"}};
  struct backend_container_spec spec = {.image = "img:1",
                                        .run_id = "r1",
                                        .task_name = "t",
                                        .cpu = 8,
                                        .memory_mb = 4096,
                                        .volumes = vols,
                                        .nvolumes = 1};
  struct call c = {0};
  wait_call(&e, &c, e.b->ops->container_create(e.b, &spec, on_id, &c));
  assert_null(c.msg);
  assert_string_equal(c.id, "c1");
  call_release(&c);
  const struct fake_req *rq = find_req(&e.f, "POST", "/v1.41/containers/create");
  json_error_t jerr;
  json_t *body = json_loads(ci_buf_str(&rq->body), 0, &jerr);
  assert_non_null(body);
  json_t *hc = json_object_get(body, "HostConfig");
  /* clamped to what /info said: 2 CPUs, 1024 MiB */
  assert_int_equal(json_integer_value(json_object_get(hc, "NanoCpus")), 2000000000);
  assert_int_equal(json_integer_value(json_object_get(hc, "Memory")), 1024 << 20);
  assert_string_equal(json_string_value(json_array_get(json_object_get(hc, "Binds"), 0)),
                      "v1:/work:rw");
  json_t *labels = json_object_get(body, "Labels");
  assert_string_equal(json_string_value(json_object_get(labels, "dev.cirrus.run-id")), "r1");
  assert_string_equal(json_string_value(json_object_get(labels, BACKEND_LABEL_HOST)),
                      backend_owner_host());
  assert_string_equal(json_string_value(json_object_get(labels, BACKEND_LABEL_PID)),
                      backend_owner_pid());
  assert_string_equal(json_string_value(json_object_get(labels, "dev.cirrus.task")), "t");
  json_decref(body);

  /* podman's 500 for a missing image reads like Docker's 404 */
  spec.image = "gone:1";
  wait_call(&e, &c, e.b->ops->container_create(e.b, &spec, on_id, &c));
  assert_int_equal(c.code, -ENOENT);
  assert_true(ci_str_has_prefix(c.msg, "image 'gone:1' is not present in podman (podman POST "));
  assert_null(c.id);
  call_release(&c);

  /* volume names that a bind would read as paths are refused */
  const char *bad[] = {"/etc", "../x", "a/b", "", "-x", "x", "a b", "a:b"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    assert_int_equal(e.b->ops->volume_create(e.b, bad[i], "r1", on_done, &c), -EINVAL);
    assert_int_equal(e.b->ops->volume_remove(e.b, bad[i], on_done, &c), -EINVAL);
    struct backend_volume_mount m = {bad[i], "/w"};
    spec.volumes = &m;
    assert_int_equal(e.b->ops->container_create(e.b, &spec, on_id, &c), -EINVAL);
  }
  struct backend_volume_mount rel = {"v1", "work"};
  spec.volumes = &rel;
  assert_int_equal(e.b->ops->container_create(e.b, &spec, on_id, &c), -EINVAL);
  struct backend_volume_mount colon = {"v1", "/work:ro"};
  spec.volumes = &colon;
  assert_int_equal(e.b->ops->container_create(e.b, &spec, on_id, &c), -EINVAL);
  assert_int_equal(c.done, 0);

  wait_call(&e, &c, e.b->ops->volume_create(e.b, "v1.cache_x-y", "r1", on_done, &c));
  assert_null(c.msg);
  call_release(&c);
  rq = find_req(&e.f, "POST", "/v1.41/volumes/create");
  {
    /* labelled with the run and its owner (this host, this process) */
    cleanup_free char *want = xasprintf(
        "{\"Name\":\"v1.cache_x-y\",\"Labels\":{\"dev.cirrus.run-id\":\"r1\","
        "\"dev.cirrus.host\":\"%s\",\"dev.cirrus.pid\":\"%d\"}}",
        backend_owner_host(), (int)getpid());
    assert_string_equal(ci_buf_str(&rq->body), want);
  }
  /* already gone is fine */
  wait_call(&e, &c, e.b->ops->volume_remove(e.b, "v1", on_done, &c));
  assert_null(c.msg);
  call_release(&c);
  assert_non_null(find_req(&e.f, "DELETE", "/v1.41/volumes/v1?force=1"));
  env_close(&e);
}

int
main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_output),       cmocka_unit_test(test_clean),
      cmocka_unit_test(test_exec_stream_end),    cmocka_unit_test(test_copy_out),
      cmocka_unit_test(test_create_and_volumes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
