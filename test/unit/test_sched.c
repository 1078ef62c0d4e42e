/* Scheduler tests against the scripted fake backend: step semantics, concurrency, failure
 * handling, timeouts, cancellation and cleanup.  (The real engines are tested end to end.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_backend.h"
#include "runner/env.h"
#include "runner/sched.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rec {
  struct ci_buf out;
  struct ci_strv events;
};

static const char *
status_name(enum sched_status s)
{
  static const char *const n[] = {"succeeded", "failed", "skipped", "timed out", "canceled"};
  return n[s];
}

static void
on_event(const struct sched_event *ev, void *data)
{
  struct rec *r = data;
  switch (ev->kind) {
  case SCHED_TASK_STARTED:
    ci_strv_push_take(&r->events, xasprintf("start %s", ev->task->name));
    break;
  case SCHED_TASK_FINISHED:
    ci_strv_push_take(&r->events, xasprintf("end %s %s%s%s", ev->task->name,
                                            status_name(ev->status), ev->reason ? ": " : "",
                                            ev->reason ? ev->reason : ""));
    break;
  case SCHED_SCOPE_STARTED:
    break;
  case SCHED_ANNOTATION:
    ci_strv_push_take(&r->events,
                      xasprintf("%s: annotation %s", ev->task->name, ev->annotation->message));
    break;
  case SCHED_SCOPE_FINISHED:
    ci_strv_push_take(&r->events, xasprintf("%s: %s %s", ev->task->name, ev->scope,
                                            status_name(ev->status)));
    break;
  case SCHED_OUTPUT:
    if (ev->stream == 1)
      ci_buf_add(&r->out, ev->text, ev->len);
    break;
  case SCHED_MESSAGE:
    if (ev->level <= CI_LOG_INFO)
      ci_strv_push_take(&r->events,
                        xasprintf("%s: msg %.*s", ev->task->name, (int)ev->len, ev->text));
    break;
  }
}

/* Extra options for the next run_config (tests reset them). */
static const char *g_cache_home, *g_artifacts_dir, *g_context;
static const struct cfg_options *g_cfg_opts;

struct run {
  struct cfg_file *f;
  struct graph g;
  uv_loop_t loop;
  struct backend *b;
  struct rec rec;
  struct sched_result res;
  struct cfg_env base, user;
};

static void
run_config(struct run *r, const char *yaml, unsigned parallel, const char *const *filters,
           size_t nfilters, void (*tweak)(struct run *))
{
  memset(r, 0, sizeof(*r));
  r->f = cfg_parse("t.yml", yaml, strlen(yaml), g_cfg_opts);
  for (size_t i = 0; i < r->f->ndiags; i++)
    if (r->f->diags[i].level == CFG_DIAG_ERROR)
      fail_msg("config error: %s", r->f->diags[i].msg);
  graph_init(&r->g, r->f->tasks, r->f->ntasks);
  struct ci_error *err = NULL;
  assert_int_equal(graph_filter(&r->g, filters, nfilters, &err), 0);
  uv_loop_init(&r->loop);
  r->b = fake_backend_new(&r->loop);
  if (tweak)
    tweak(r);
  run_env_base(&r->base, "00000000-0000-4000-8000-000000000000");
  cfg_env_set(&r->user, "FROM_USER", "u");
  struct sched_options o = {
      .parallel = parallel,
      .project_dir = "/nonexistent/project",
      .tars = &(struct sched_tar){"/tmp/cirrus-ci/working-dir", "/nonexistent/project.tar"},
      .ntars = 1,
      .run_id = "r1",
      .base_env = &r->base,
      .user_env = &r->user,
      .on_event = on_event,
      .event_data = &r->rec,
      .cache_home = g_cache_home,
      .artifacts_dir = g_artifacts_dir,
      .build_context = g_context,
  };
  assert_int_equal(sched_run(&r->loop, r->b, &r->g, &o, &r->res, &err), 0);
  /* Everything closes: no leaked handle. */
  uv_run(&r->loop, UV_RUN_DEFAULT);
  assert_int_equal(fake_backend_get(r->b)->open_handles, 0);
  assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void
run_release(struct run *r)
{
  fake_backend_free(r->b);
  graph_release(&r->g);
  cfg_file_free(r->f);
  ci_buf_release(&r->rec.out);
  ci_strv_release(&r->rec.events);
  sched_result_release(&r->res);
  cfg_env_release(&r->base);
  cfg_env_release(&r->user);
}

static bool
has_event(const struct run *r, const char *ev)
{
  return ci_strv_contains(&r->rec.events, ev);
}

static long
event_index(const struct run *r, const char *ev)
{
  for (size_t i = 0; i < r->rec.events.n; i++)
    if (!strcmp(r->rec.events.v[i], ev))
      return (long)i;
  return -1;
}

static void
dump(const struct run *r)
{
  for (size_t i = 0; i < r->rec.events.n; i++)
    fprintf(stderr, "  event: %s\n", r->rec.events.v[i]);
  fprintf(stderr, "  output: %s\n", ci_buf_str(&r->rec.out));
}

static void
test_steps_and_env(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "env:\n  GREETING: hello\n  DERIVED: ${GREETING}-world\n"
             "task:\n"
             "  first_script:\n    - echo $GREETING $CIRRUS_TASK_NAME $CI_NODE_TOTAL\n"
             "    - echo LATER=set-by-step >> $CIRRUS_ENV\n"
             "  second_script: echo $LATER $DERIVED $FROM_USER $CIRRUS_WORKING_DIR $CI\n",
             2, NULL, 0, NULL);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  assert_string_equal(ci_buf_str(&r.rec.out),
                      "hello main 1\nset-by-step hello-world u /tmp/cirrus-ci/working-dir true\n");
  assert_true(has_event(&r, "main: 'first' script succeeded"));
  assert_true(has_event(&r, "end main succeeded"));
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_int_equal(fb->created, 1);
  assert_int_equal(fb->removed, 1);
  assert_true(ci_strv_contains(&fb->log, "copy id-cirrus-r1-0"));
  run_release(&r);
}

static void
test_failure_semantics(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "task:\n"
             "  a_script: exit 3\n"
             "  b_script: echo never\n"
             "  on_failure:\n    report_script: echo reporting\n"
             "  always:\n    cleanup_script: echo cleanup\n"
             "  on_success:\n    deploy_script: echo deploy\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 1);
  assert_string_equal(r.res.first_failure, "task main (0) failed");
  assert_true(has_event(&r, "main: 'a' script failed"));
  assert_true(has_event(&r, "main: 'b' script skipped"));
  assert_true(has_event(&r, "main: 'report' script succeeded"));
  assert_true(has_event(&r, "main: 'cleanup' script succeeded"));
  assert_true(has_event(&r, "main: 'deploy' script skipped"));
  assert_string_equal(ci_buf_str(&r.rec.out), "\nExit status: 3reporting\ncleanup\n");
  assert_int_equal(fake_backend_get(r.b)->removed, 1);
  run_release(&r);
}

static void
test_dependents_skipped_and_allowed_failures(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "a_task:\n  script: false\n"
             "b_task:\n  depends_on: a\n  script: echo b\n"
             "c_task:\n  allow_failures: true\n  script: false\n"
             "d_task:\n  depends_on: c\n  script: echo d\n"
             "e_task:\n  skip: true\n  script: echo e\n"
             "f_task:\n  script: echo f\n",
             1, NULL, 0, NULL);
  if (r.res.status != 1)
    dump(&r);
  assert_int_equal(r.res.status, 1);
  assert_string_equal(r.res.first_failure, "task a (0) failed");
  assert_true(has_event(&r, "end b skipped: dependency 'a' failed"));
  assert_true(has_event(&r, "end a failed: 'main' script failed with exit status 1"));
  assert_true(has_event(&r, "end c failed: 'main' script failed with exit status 1"));
  assert_true(has_event(&r, "end d succeeded"));
  assert_true(has_event(&r, "end e skipped: skip: is true"));
  assert_true(has_event(&r, "end f succeeded"));
  /* -p 1: upstream's order, lowest id first. */
  assert_true(event_index(&r, "start a") < event_index(&r, "start c"));
  assert_true(event_index(&r, "start c") < event_index(&r, "start d"));
  assert_true(event_index(&r, "start d") < event_index(&r, "start f"));
  assert_false(has_event(&r, "start b"));
  assert_false(has_event(&r, "start e"));
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_int_equal(fb->created, fb->removed);
  assert_int_equal(fb->max_concurrent, 1);
  run_release(&r);
}

static void
test_parallel(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "a_task:\n  script: sleep 50\n"
             "b_task:\n  script: sleep 50\n"
             "c_task:\n  script: sleep 50\n"
             "d_task:\n  depends_on: [a, b, c]\n  script: echo d\n",
             3, NULL, 0, NULL);
  assert_int_equal(r.res.status, 0);
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_int_equal(fb->max_concurrent, 3);
  assert_int_equal(fb->created, 4);
  assert_int_equal(fb->removed, 4);
  assert_true(event_index(&r, "end a succeeded") < event_index(&r, "start d"));
  run_release(&r);
}

static void
test_timeout(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "task:\n  timeout_in: 1s\n"
             "  slow_script: sleep 5000\n"
             "  after_script: echo after\n"
             "  on_timeout:\n    dump_script: echo dumping\n"
             "  always:\n    always_script: echo always\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 1);
  assert_string_equal(r.res.first_failure, "task main (0) timed out");
  assert_true(has_event(&r, "main: msg Timed out!"));
  assert_true(has_event(&r, "main: 'after' script skipped"));
  assert_true(has_event(&r, "main: 'dump' script succeeded"));
  assert_true(has_event(&r, "main: 'always' script succeeded"));
  assert_true(has_event(&r, "end main timed out: timed out after 1 seconds"));
  assert_int_equal(fake_backend_get(r.b)->removed, 1);
  run_release(&r);
}

static void
test_background(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "task:\n  server_background_script: sleep 60000\n"
             "  main_script: echo main\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 0);
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_true(ci_strv_contains(&fb->log, "kill /tmp/cirrus-ci/step-1.pid"));
  assert_int_equal(fb->removed, 1);
  run_release(&r);
}

static void
test_file_instruction(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "env:\n  SECRET: s3cret\n"
             "task:\n"
             "  a_file:\n    path: conf/a.txt\n    from_contents: hello\n"
             "  b_file:\n    path: /tmp/b\n    variable_name: SECRET\n"
             "  c_file:\n    path: /tmp/c\n    variable_name: UNSET\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 0);
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_true(ci_strv_contains(&fb->log, "file /tmp/cirrus-ci/working-dir/conf/a.txt=hello"));
  assert_true(ci_strv_contains(&fb->log, "file /tmp/b=s3cret"));
  assert_true(has_event(&r, "main: msg Environment variable UNSET is not set! Skipping file "
                            "creation..."));
  run_release(&r);
}

static void
fail_pulls(struct run *r)
{
  fake_backend_get(r->b)->fail_pull_image = "missing:latest";
}

static void
test_missing_image(void **state)
{
  struct run r;
  run_config(&r,
             "a_task:\n  container:\n    image: missing:latest\n  script: echo a\n"
             "b_task:\n  container:\n    image: alpine\n  script: echo b\n",
             1, NULL, 0, fail_pulls);
  assert_int_equal(r.res.status, 1);
  assert_true(has_event(&r, "a: image pull failed"));
  assert_true(has_event(&r, "end a failed: image missing:latest: manifest for missing:latest "
                            "not found"));
  assert_true(has_event(&r, "end b succeeded"));
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_int_equal(fb->created, fb->removed);
  run_release(&r);
}

static void
interrupt_soon(uv_timer_t *t)
{
  raise(SIGINT);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void
arm_interrupt(struct run *r)
{
  uv_timer_t *t = xcalloc(1, sizeof(*t));
  uv_timer_init(&r->loop, t);
  uv_timer_start(t, interrupt_soon, 100, 0);
}

static void
test_interrupt(void **state)
{
  struct run r;
  run_config(&r,
             "container:\n  image: alpine\n"
             "a_task:\n  long_script: sleep 60000\n  always:\n    x_script: echo no\n"
             "b_task:\n  long_script: sleep 60000\n"
             "c_task:\n  depends_on: a\n  script: echo c\n",
             2, NULL, 0, arm_interrupt);
  assert_int_equal(r.res.status, 130);
  assert_true(has_event(&r, "end a canceled: interrupted"));
  assert_true(has_event(&r, "end b canceled: interrupted"));
  assert_false(has_event(&r, "start c"));
  assert_false(has_event(&r, "a: 'x' script succeeded"));
  struct fake_backend *fb = fake_backend_get(r.b);
  assert_int_equal(fb->created, 2);
  assert_int_equal(fb->removed, 2);
  run_release(&r);
}

static bool
log_has(const struct run *r, const char *line)
{
  return ci_strv_contains(&fake_backend_get(r->b)->log, line);
}

static long
log_index(const struct run *r, const char *line)
{
  const struct ci_strv *l = &fake_backend_get(r->b)->log;
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->v[i], line))
      return (long)i;
  return -1;
}

static char *
make_tmpdir(void)
{
  char *d = xstrdup("/tmp/cirrus-test-sched-XXXXXX");
  assert_non_null(mkdtemp(d));
  return d;
}

static void
rm_rf(const char *d)
{
  char *cmd = xasprintf("rm -rf '%s'", d);
  assert_int_equal(system(cmd), 0);
  free(cmd);
}

static const char cache_yaml[] = "container:\n  image: alpine\n"
                                 "first_task:\n"
                                 "  deps_cache:\n    folder: deps\n    fingerprint_key: k1\n"
                                 "    populate_script: echo populating\n"
                                 "  build_script: echo building\n"
                                 "second_task:\n  depends_on: first\n"
                                 "  deps_cache:\n    folder: deps\n    fingerprint_key: k1\n"
                                 "    populate_script: exit 1\n"
                                 "  use_script: echo using\n";

static void
test_cache_steps(void **state)
{
  char *home = make_tmpdir();
  g_cache_home = home;
  struct run r;
  run_config(&r, cache_yaml, 1, NULL, 0, NULL);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  /* The first task misses and populates, then uploads after its scripts. */
  assert_true(has_event(&r, "first: msg Cache miss for k1! Populating..."));
  assert_true(has_event(&r, "first: msg Uploading cache deps..."));
  assert_true(event_index(&r, "first: 'build' script succeeded") <
              event_index(&r, "first: Upload 'deps' cache succeeded"));
  assert_true(log_has(&r, "copy_out id-cirrus-r1-0 /tmp/cirrus-ci/working-dir/deps"));
  char *blob = xasprintf("%s/cirrus/projects/project/k1", home);
  assert_int_equal(access(blob, F_OK), 0);
  free(blob);
  /* The dependent hits: the blob goes into its container; fingerprint_key means no upload. */
  assert_true(has_event(&r, "second: msg Cache hit for k1!"));
  assert_true(has_event(&r, "second: 'deps' cache succeeded"));
  assert_true(log_has(&r, "copy id-cirrus-r1-1"));
  assert_true(has_event(&r, "second: msg Skipping change detection for deps cache!"));
  assert_string_equal(ci_buf_str(&r.rec.out), "populating\nbuilding\nusing\n");
  run_release(&r);

  /* A failing populate script fails the cache step (and so the task). */
  rm_rf(home);
  run_config(&r, cache_yaml, 1, (const char *const[]){"second"}, 1, NULL);
  assert_int_equal(r.res.status, 1);
  assert_true(has_event(&r, "second: 'deps' cache failed"));
  assert_true(has_event(&r, "second: 'use' script skipped"));
  run_release(&r);

  /* Several folders must lie in the working directory. */
  run_config(&r,
             "container:\n  image: alpine\n"
             "task:\n  bad_cache:\n    folders:\n      - a\n      - /etc\n  script: echo x\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 1);
  assert_true(has_event(&r, "main: 'bad' cache failed"));
  assert_non_null(strstr(r.g.nodes[0].reason, "points above the current working directory"));
  run_release(&r);
  g_cache_home = NULL;
  rm_rf(home);
  free(home);
}

static void
test_artifacts_steps(void **state)
{
  struct run r;
  /* Patterns outside the working directory fail the step before anything is read. */
  run_config(&r,
             "container:\n  image: alpine\n"
             "task:\n  script: echo x\n  leak_artifacts:\n    path: ../../etc/passwd\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 1);
  assert_true(has_event(&r, "main: 'leak' artifacts failed"));
  assert_non_null(strstr(r.g.nodes[0].reason, "path is outside of CIRRUS_WORKING_DIR"));
  assert_true(log_has(&r, "exec internal")); /* the listing */
  run_release(&r);
  /* No paths: nothing to do. */
  run_config(&r,
             "container:\n  image: alpine\ntask:\n  script: echo x\n  artifacts:\n    paths: []\n",
             1, NULL, 0, NULL);
  assert_true(
      has_event(&r, "main: msg Skipping artifacts upload because there are no paths specified..."));
  run_release(&r);
}

static void
tweak_fail_nope(struct run *r)
{
  fake_backend_get(r->b)->fail_pull_image = "nope";
}

static void
test_additional_containers(void **state)
{
  struct run r;
  run_config(&r,
             "task:\n  container:\n    image: alpine\n    cpu: 100000\n"
             "    additional_containers:\n"
             "      - name: db\n        image: postgres\n        port: 5432\n"
             "      - name: cache\n        image: redis\n        ports: 6379\n"
             "  script: echo hi\n",
             1, NULL, 0, NULL);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  /* Created after the task's container, in its network namespace; removed before it. */
  long main_c = log_index(&r, "create cirrus-r1-0");
  long db = log_index(&r, "create cirrus-r1-0-db");
  long redis = log_index(&r, "create cirrus-r1-0-cache");
  assert_true(main_c >= 0 && db > main_c && redis > db);
  assert_string_equal(fake_backend_get(r.b)->log.v[db + 1], "  network of id-cirrus-r1-0");
  assert_true(log_has(&r, "pull postgres"));
  assert_true(has_event(&r, "main: msg Waiting on port 5432..."));
  assert_true(has_event(&r, "main: msg Waiting on port 6379..."));
  long rm_db = log_index(&r, "remove id-cirrus-r1-0-db");
  long rm_main = log_index(&r, "remove id-cirrus-r1-0");
  assert_true(rm_db >= 0 && rm_main > rm_db);
  assert_true(log_has(&r, "remove id-cirrus-r1-0-cache"));
  assert_int_equal(fake_backend_get(r.b)->removed, 3);
  run_release(&r);

  /* A service whose image is missing fails the task; the task's container still goes. */
  run_config(&r,
             "task:\n  container:\n    image: alpine\n"
             "    additional_containers:\n      - name: db\n        image: nope\n"
             "  script: echo hi\n",
             1, NULL, 0, tweak_fail_nope);
  assert_int_equal(r.res.status, 1);
  assert_non_null(strstr(r.g.nodes[0].reason, "additional container 'db'"));
  assert_int_equal(fake_backend_get(r.b)->created, 1);
  assert_int_equal(fake_backend_get(r.b)->removed, 1);
  run_release(&r);
}

static void
tweak_port_engine_error(struct run *r)
{
  fake_backend_get(r->b)->port_wait_output =
      "unable to find user root: no matching entries in passwd file\n";
  fake_backend_get(r->b)->port_wait_code = 126;
}

static void
tweak_port_closed(struct run *r)
{
  fake_backend_get(r->b)->port_wait_output = " 1538 18EB\n";
  fake_backend_get(r->b)->port_wait_code = 1;
}

/* The port wait's answer: the ports that never opened are warnings; an engine that could not
 * run the wait is one warning with its message, never ports read out of it. */
static void
test_port_wait_failures(void **state)
{
  static const char yaml[] = "task:\n  container:\n    image: alpine\n"
                             "    additional_containers:\n"
                             "      - name: db\n        image: postgres\n"
                             "        ports: [5432, 6379]\n"
                             "  script: echo hi\n";
  struct run r;
  run_config(&r, yaml, 1, NULL, 0, tweak_port_closed);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  assert_true(has_event(&r, "main: msg Failed to wait for port 5432: nothing listens on it after "
                            "60 seconds"));
  assert_true(has_event(&r, "main: msg Failed to wait for port 6379: nothing listens on it after "
                            "60 seconds"));
  run_release(&r);

  run_config(&r, yaml, 1, NULL, 0, tweak_port_engine_error);
  assert_int_equal(r.res.status, 0);
  assert_true(has_event(&r, "main: msg Failed to wait for ports: exit status 126: unable to find "
                            "user root: no matching entries in passwd file"));
  for (size_t i = 0; i < r.rec.events.n; i++)
    assert_null(strstr(r.rec.events.v[i], "Failed to wait for port "));
  run_release(&r);
  (void)state;
}

static void
test_pipe(void **state)
{
  struct run r;
  run_config(&r,
             "task_pipe:\n  steps:\n"
             "    - image: one\n      a_script: echo first\n"
             "    - image: two\n      b_script: echo second\n      c_script: echo third\n",
             1, NULL, 0, NULL);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  assert_string_equal(ci_buf_str(&r.rec.out), "first\nsecond\nthird\n");
  /* One volume at the working directory; one container per step, one after the other. */
  long vol = log_index(&r, "volume cirrus-r1-0-wd");
  long c0 = log_index(&r, "create cirrus-r1-0-0");
  long rm0 = log_index(&r, "remove id-cirrus-r1-0-0");
  long c1 = log_index(&r, "create cirrus-r1-0-1");
  long rm1 = log_index(&r, "remove id-cirrus-r1-0-1");
  long rmvol = log_index(&r, "rmvolume cirrus-r1-0-wd");
  assert_true(vol >= 0 && c0 > vol && rm0 > c0 && c1 > rm0 && rm1 > c1 && rmvol > rm1);
  assert_true(log_has(&r, "  volume cirrus-r1-0-wd at /tmp/cirrus-ci/working-dir"));
  assert_true(log_has(&r, "pull one") && log_has(&r, "pull two"));
  /* The project is copied once, into the first step's container. */
  assert_true(log_has(&r, "copy id-cirrus-r1-0-0"));
  assert_false(log_has(&r, "copy id-cirrus-r1-0-1"));
  assert_int_equal(fake_backend_get(r.b)->volumes_alive, 0);
  run_release(&r);

  /* A failing step skips the next steps' containers but still removes everything. */
  run_config(&r,
             "task_pipe:\n  steps:\n"
             "    - image: one\n      a_script: exit 2\n"
             "    - image: two\n      b_script: echo never\n",
             1, NULL, 0, NULL);
  assert_int_equal(r.res.status, 1);
  assert_false(log_has(&r, "create cirrus-r1-0-1"));
  assert_true(log_has(&r, "rmvolume cirrus-r1-0-wd"));
  assert_int_equal(fake_backend_get(r.b)->volumes_alive, 0);
  run_release(&r);
}

static void
tweak_absent(struct run *r)
{
  ci_strv_push(&fake_backend_get(r->b)->absent, "*");
}

static void
test_dockerfile_build(void **state)
{
  char *dir = make_tmpdir();
  char *df = xasprintf("%s/Dockerfile", dir);
  FILE *f = fopen(df, "w");
  assert_non_null(f);
  fputs("FROM alpine\nRUN true\n", f);
  fclose(f);
  struct cfg_options co = {.project_dir = dir, .dockerfile_image_template = "local/%s:latest"};
  g_cfg_opts = &co;
  g_context = "/nonexistent/context.tar";
  static const char yaml[] =
      "a_task:\n  container:\n    dockerfile: Dockerfile\n  script: echo a\n"
      "b_task:\n  container:\n    dockerfile: Dockerfile\n  script: echo b\n";
  struct run r;
  run_config(&r, yaml, 2, NULL, 0, tweak_absent);
  if (r.res.status != 0)
    dump(&r);
  assert_int_equal(r.res.status, 0);
  struct fake_backend *fb = fake_backend_get(r.b);
  /* Built once, before both tasks, which never pull it. */
  assert_int_equal(fb->builds, 1);
  const char *tag = r.f->tasks[0].container.image;
  char *build = xasprintf("build %s Dockerfile", tag);
  char *create_a = xasprintf("create cirrus-r1-0");
  long bi = log_index(&r, build);
  assert_true(bi >= 0 && log_index(&r, create_a) > bi);
  assert_true(has_event(&r, "Prebuild Dockerfile: msg Step 1/1 : FROM scratch"));
  free(build);
  free(create_a);
  run_release(&r);
  /* Present: reused, not built. */
  run_config(&r, yaml, 2, NULL, 0, NULL);
  assert_int_equal(r.res.status, 0);
  assert_int_equal(fake_backend_get(r.b)->builds, 0);
  char *reuse = xasprintf("Prebuild Dockerfile: msg Re-using local image %s...",
                          r.f->tasks[0].container.image);
  assert_true(has_event(&r, reuse));
  free(reuse);
  run_release(&r);
  g_cfg_opts = NULL;
  g_context = NULL;
  rm_rf(dir);
  free(df);
  free(dir);
}

static void
test_helpers(void **state)
{
  struct cfg_env env = CFG_ENV_INIT;
  char *msg = NULL;
  const char *c = "A=1\nB=x=y\r\n\nC=\n";
  assert_int_equal(sched_parse_cirrus_env(c, strlen(c), &env, &msg), 0);
  assert_string_equal(cfg_env_get(&env, "A"), "1");
  assert_string_equal(cfg_env_get(&env, "B"), "x=y");
  assert_string_equal(cfg_env_get(&env, "C"), "");
  assert_int_equal(sched_parse_cirrus_env("oops\n", 5, &env, &msg), -1);
  assert_non_null(strstr(msg, "KEY=VALUE"));
  free(msg);
  cfg_env_release(&env);

  struct ci_strv lines = CI_STRV_INIT;
  ci_strv_push(&lines, "echo a");
  ci_strv_push(&lines, "echo b");
  char **argv = sched_step_argv(&lines, 7, "/w d");
  assert_string_equal(argv[0], "/bin/sh");
  assert_string_equal(argv[3], "cirrus-step");
  assert_string_equal(argv[4],
                      "set -e\nset -o pipefail 2>/dev/null || true\nset -o verbose\necho a\necho b");
  assert_string_equal(argv[5], "7");
  assert_string_equal(argv[6], "/w d");
  assert_null(argv[7]);
  sched_argv_free(argv);
  ci_strv_release(&lines);
}

static const char *
lookup_map(const char *name, void *data)
{
  return cfg_env_get(data, name);
}

static void
test_run_env_expand(void **state)
{
  struct cfg_env e = CFG_ENV_INIT;
  cfg_env_set(&e, "A", "1");
  cfg_env_set(&e, "EMPTY", "");
  char *s = run_env_expand_text("$A ${A} %A% ${B:def} ${EMPTY:x} $B-$$ ${} ${ $A$", lookup_map, &e);
  /* Go's os.Expand: "$$" names "$" (unset), "${}" and an unclosed "${" are eaten. */
  assert_string_equal(s, "1 1 1 def  -   1$");
  free(s);

  struct cfg_env env = CFG_ENV_INIT, os = CFG_ENV_INIT;
  cfg_env_set(&os, "PATH", "/bin");
  cfg_env_set(&env, "PATH", "/custom:$PATH");
  cfg_env_set(&env, "X", "${Y}/x");
  cfg_env_set(&env, "Y", "${Z}/y");
  cfg_env_set(&env, "Z", "z");
  cfg_env_set(&env, "SELF", "$SELF-more");
  run_env_expand_recursively(&env, &os);
  assert_string_equal(cfg_env_get(&env, "PATH"), "/custom:/bin");
  assert_string_equal(cfg_env_get(&env, "X"), "z/y/x");
  assert_string_equal(cfg_env_get(&env, "SELF"), "$SELF-more");
  cfg_env_release(&env);
  cfg_env_release(&os);
  cfg_env_release(&e);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_helpers),
      cmocka_unit_test(test_run_env_expand),
      cmocka_unit_test(test_steps_and_env),
      cmocka_unit_test(test_failure_semantics),
      cmocka_unit_test(test_dependents_skipped_and_allowed_failures),
      cmocka_unit_test(test_parallel),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_background),
      cmocka_unit_test(test_file_instruction),
      cmocka_unit_test(test_missing_image),
      cmocka_unit_test(test_interrupt),
      cmocka_unit_test(test_cache_steps),
      cmocka_unit_test(test_artifacts_steps),
      cmocka_unit_test(test_additional_containers),
      cmocka_unit_test(test_port_wait_failures),
      cmocka_unit_test(test_pipe),
      cmocka_unit_test(test_dockerfile_build),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
