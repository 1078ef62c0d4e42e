/* End-to-end: the scheduler on a real engine (docker or podman, argv[1]) with the test image.
 * Covers what the shell suite cannot see from outside: every event of a run. */
#include "backends/backend.h"
#include "runner/env.h"
#include "runner/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct rec {
  struct ci_buf out;
  struct ci_strv events;
};

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
}

static int
run(const char *backend, const char *yaml, unsigned parallel, struct rec *rec)
{
  const char *image = getenv("CIRRUS_TEST_IMAGE");
  if (!image)
    image = "localhost/cirrus-test/busybox:latest";
  char *full = xasprintf("container:\n  image: %s\n%s", image, yaml);
  struct cfg_file *f = cfg_parse("t.yml", full, strlen(full), NULL);
  free(full);
  if (f->nerrors) {
    fprintf(stderr, "config error: %s\n", f->diags[0].msg);
    exit(2);
  }
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct backend *b = NULL;
  struct ci_error *err = NULL;
  struct backend_options bo = {.name = backend};
  if (backend_open(&loop, &bo, &b, &err) < 0) {
    fprintf(stderr, "FAIL: cannot open the %s backend: %s\n", backend, err->msg);
    exit(1);
  }
  struct cfg_env base = CFG_ENV_INIT, user = CFG_ENV_INIT;
  char uuid[37];
  run_uuid(uuid);
  run_env_base(&base, uuid);
  struct sched_options o = {.parallel = parallel,
                            .project_dir = "/tmp",
                            .run_id = "e2etest",
                            .base_env = &base,
                            .user_env = &user,
                            .on_event = on_event,
                            .event_data = rec};
  struct sched_result res;
  if (sched_run(&loop, b, &g, &o, &res, &err) < 0) {
    fprintf(stderr, "sched_run: %s\n", err->msg);
    exit(1);
  }
  b->ops->close(b, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "handles left open on the loop");
  int status = res.status;
  sched_result_release(&res);
  graph_release(&g);
  cfg_file_free(f);
  cfg_env_release(&base);
  cfg_env_release(&user);
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

int
main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s docker|podman\n", argv[0]);
    return 2;
  }
  const char *be = argv[1];
  const char *skip = getenv("CIRRUS_TEST_SKIP");
  if (skip && strstr(skip, be))
    return 77;
  struct rec r = {0};

  int s = run(be,
              "task:\n"
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

  s = run(be,
          "task:\n  a_script: exit 3\n  b_script: echo never\n"
          "  always:\n    c_script: echo always\n",
          1, &r);
  CHECK(s == 1, "failing task status %d", s);
  CHECK(strstr(ci_buf_str(&r.out), "Exit status: 3"), "exit status: %s", ci_buf_str(&r.out));
  CHECK(has(&r, "main: 'b' script skipped"), "b not skipped");
  CHECK(has(&r, "main: 'c' script succeeded"), "always did not run");
  release(&r);

  s = run(be,
          "task:\n  timeout_in: 2s\n  slow_script: sleep 30\n"
          "  on_timeout:\n    t_script: echo timeout-hook\n",
          1, &r);
  CHECK(s == 1, "timeout status %d", s);
  CHECK(has(&r, "end main timed out"), "not timed out");
  CHECK(strstr(ci_buf_str(&r.out), "timeout-hook"), "on_timeout did not run: %s",
        ci_buf_str(&r.out));
  release(&r);

  s = run(be,
          "task:\n  bg_background_script: while true; do echo tick; sleep 0.2; done\n"
          "  main_script: sleep 1\n",
          1, &r);
  CHECK(s == 0, "background status %d: %s", s, ci_buf_str(&r.out));
  CHECK(strstr(ci_buf_str(&r.out), "tick"), "background output missing");
  release(&r);

  s = run(be,
          "a_task:\n  script: sleep 1\nb_task:\n  script: sleep 1\nc_task:\n  script: sleep 1\n",
          3, &r);
  CHECK(s == 0, "parallel status %d", s);
  release(&r);

  s = run(be, "task:\n  container:\n    image: localhost/cirrus-test/nope:nope\n  script: true\n",
          1, &r);
  CHECK(s == 1, "missing image status %d", s);
  CHECK(has(&r, "main: image pull failed"), "pull did not fail");
  release(&r);

  fprintf(stderr, "%s: %d failures\n", be, failures);
  return failures ? 1 : 0;
}
