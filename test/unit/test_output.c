/* Unit tests for cmd/output.c: upstream's simple format, CI folding, block buffering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "junit.h"
#include "output.h"
#include "text.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
test_duration(void **state)
{
  char b[32];
  out_format_duration(0.34, b, sizeof(b));
  assert_string_equal(b, "0.3s");
  out_format_duration(9.96, b, sizeof(b));
  assert_string_equal(b, "10.0s");
  out_format_duration(12.7, b, sizeof(b));
  assert_string_equal(b, "12s");
  out_format_duration(65, b, sizeof(b));
  assert_string_equal(b, "01:05");
  out_format_duration(3723, b, sizeof(b));
  assert_string_equal(b, "01:02:03");
}

static struct cfg_task *
mktask(const char *name, unsigned id)
{
  struct cfg_task *t = xcalloc(1, sizeof(*t));
  t->name = xstrdup(name);
  t->id = id;
  return t;
}

static void
freetask(struct cfg_task *t)
{
  free(t->name);
  ci_strv_release(&t->labels);
  free(t);
}

static void
test_task_scope(void **state)
{
  struct cfg_task *t = mktask("main", 0);
  char *s = out_task_scope(t);
  assert_string_equal(s, "'main' task");
  free(s);
  free(t->name);
  t->name = xstrdup("Second Working");
  ci_strv_push(&t->labels, "VERSION:1.14");
  ci_strv_push(&t->labels, "container:x");
  s = out_task_scope(t);
  assert_string_equal(s, "'Second Working' Task (VERSION:1.14 container:x)");
  free(s);
  freetask(t);
}

static void
ev(struct out *o, enum sched_event_kind k, const struct cfg_task *t, size_t idx,
   const char *scope, enum sched_status st, double secs, const char *text)
{
  struct sched_event e = {.kind = k,
                          .task = t,
                          .task_index = idx,
                          .scope = scope,
                          .status = st,
                          .seconds = secs,
                          .text = text,
                          .len = text ? strlen(text) : 0,
                          .stream = 1,
                          .level = CI_LOG_INFO};
  out_event(&e, o);
}

static char *
render(enum out_mode mode, unsigned parallel)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  struct out *o = out_new(mode, f, parallel, false, false);
  struct cfg_task *a = mktask("a", 0), *b = mktask("b", 1);
  ev(o, SCHED_TASK_STARTED, a, 0, NULL, 0, 0, NULL);
  ev(o, SCHED_TASK_STARTED, b, 1, NULL, 0, 0, NULL);
  ev(o, SCHED_SCOPE_STARTED, a, 0, "'main' script", 0, 0, NULL);
  ev(o, SCHED_SCOPE_STARTED, b, 1, "image pull", 0, 0, NULL);
  ev(o, SCHED_OUTPUT, a, 0, "'main' script", 0, 0, "hello ");
  ev(o, SCHED_OUTPUT, a, 0, "'main' script", 0, 0, "world\nsecond");
  ev(o, SCHED_MESSAGE, b, 1, "image pull", 0, 0, "Pulling image x...");
  ev(o, SCHED_SCOPE_FINISHED, b, 1, "image pull", SCHED_SUCCEEDED, 1.25, NULL);
  ev(o, SCHED_SCOPE_FINISHED, a, 0, "'main' script", SCHED_FAILED, 0.5, NULL);
  ev(o, SCHED_TASK_FINISHED, a, 0, NULL, SCHED_FAILED, 2, NULL);
  ev(o, SCHED_TASK_FINISHED, b, 1, NULL, SCHED_SUCCEEDED, 75, NULL);
  out_free(o);
  fclose(f);
  freetask(a);
  freetask(b);
  return buf;
}

static void
test_simple_sequential(void **state)
{
  char *s = render(OUT_SIMPLE, 1);
  assert_string_equal(s, "Started 'a' task\n"
                         "Started 'b' task\n"
                         "Started 'main' script\n"
                         "Started 'image pull'\n"
                         "hello world\n"
                         "Pulling image x...\n"
                         "'image pull' succeeded in 1.2s!\n"
                         "second\n"
                         "'main' script failed in 0.5s!\n"
                         "'a' task failed in 2.0s!\n"
                         "'b' task succeeded in 01:15!\n");
  free(s);
}

static void
test_simple_blocks(void **state)
{
  /* -p > 1: each task's lines come out together when it finishes. */
  char *s = render(OUT_SIMPLE, 2);
  assert_string_equal(s, "Started 'a' task\n"
                         "Started 'main' script\n"
                         "hello world\n"
                         "second\n"
                         "'main' script failed in 0.5s!\n"
                         "'a' task failed in 2.0s!\n"
                         "Started 'b' task\n"
                         "Started 'image pull'\n"
                         "Pulling image x...\n"
                         "'image pull' succeeded in 1.2s!\n"
                         "'b' task succeeded in 01:15!\n");
  free(s);
}

static void
test_ci_folds(void **state)
{
  char *s = render(OUT_GITHUB, 2);
  assert_non_null(strstr(s, "##[group]'main' script\nStarted 'main' script\n"));
  assert_non_null(strstr(s, "'main' script failed in 0.5s!\n##[endgroup]\n"));
  free(s);
  s = render(OUT_TRAVIS, 2);
  assert_non_null(strstr(s, "travis_fold:start:image pull\n"));
  assert_non_null(strstr(s, "travis_fold:end:image pull\n"));
  free(s);
  s = render(OUT_TEAMCITY, 2);
  assert_non_null(strstr(s, "##teamcity[blockOpened name='|'main|' script']\n"));
  assert_non_null(strstr(s, "##teamcity[blockClosed name='image pull']\n"));
  free(s);
}

static void
test_mode_parse(void **state)
{
  enum out_mode m;
  assert_int_equal(out_mode_parse("simple", &m), 0);
  assert_int_equal(m, OUT_SIMPLE);
  assert_int_equal(out_mode_parse("teamcity", &m), 0);
  assert_int_equal(m, OUT_TEAMCITY);
  assert_int_equal(out_mode_parse("bogus", &m), -1);
  setenv("GITHUB_ACTIONS", "true", 1);
  assert_int_equal(out_mode_parse("auto", &m), 0);
  assert_int_equal(m, OUT_GITHUB);
  setenv("TRAVIS", "true", 1);
  assert_int_equal(out_mode_parse("auto", &m), 0);
  assert_int_equal(m, OUT_TRAVIS);
  unsetenv("TRAVIS");
  unsetenv("GITHUB_ACTIONS");
  setenv("TEAMCITY_VERSION", "2024.1", 1);
  assert_int_equal(out_mode_parse("auto", &m), 0);
  assert_int_equal(m, OUT_TEAMCITY);
  unsetenv("TEAMCITY_VERSION");
  setenv("CI", "true", 1);
  assert_int_equal(out_mode_parse("auto", &m), 0);
  assert_int_equal(m, OUT_SIMPLE);
}

/* -o json: every line is one JSON object; fields as docs/json-output.md says. */
static void
test_json(void **state)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  struct out *o = out_new(OUT_JSON, f, 2, false, false);
  struct cfg_task tasks[2] = {{0}};
  tasks[0].name = "lint";
  tasks[0].id = 0;
  tasks[1].name = "test";
  tasks[1].id = 1;
  tasks[1].allow_failures = true;
  ci_strv_push(&tasks[1].labels, "VERSION:1.14");
  struct graph g;
  graph_init(&g, tasks, 2);
  out_run_started(o, "r1", "docker", &g);
  struct cfg_task *a = &tasks[0], *b = &tasks[1];
  ev(o, SCHED_TASK_STARTED, a, 0, NULL, 0, 0, NULL);
  ev(o, SCHED_SCOPE_STARTED, a, 0, "'main' script", 0, 0, NULL);
  /* "é" cut in two by the chunk boundary, then an invalid byte. */
  ev(o, SCHED_OUTPUT, a, 0, "'main' script", 0, 0, "caf\xc3");
  ev(o, SCHED_OUTPUT, a, 0, "'main' script", 0, 0, "\xa9 \xff\n");
  struct sched_event e = {.kind = SCHED_OUTPUT,
                          .task = a,
                          .task_index = 0,
                          .scope = "'main' script",
                          .text = "oops\n",
                          .len = 5,
                          .stream = 2};
  out_event(&e, o);
  ev(o, SCHED_MESSAGE, a, 0, "'main' script", 0, 0, "debug only");
  ev(o, SCHED_SCOPE_FINISHED, a, 0, "'main' script", SCHED_SUCCEEDED, 0.5, NULL);
  ev(o, SCHED_TASK_FINISHED, a, 0, NULL, SCHED_SUCCEEDED, 1.5, NULL);
  struct sched_event fin = {.kind = SCHED_TASK_FINISHED,
                            .task = b,
                            .task_index = 1,
                            .status = SCHED_FAILED,
                            .seconds = 2,
                            .reason = "exit status 3"};
  out_event(&fin, o);
  out_run_finished(o, 0, NULL);
  out_free(o);
  fclose(f);
  graph_release(&g);
  ci_strv_release(&tasks[1].labels);

  const char *want[] = {"run_started",   "task_started",  "step_started", "output",
                        "output",        "output",        "message",      "step_finished",
                        "task_finished", "task_finished", "run_finished"};
  size_t n = 0;
  char *save = NULL;
  json_t *lines[16] = {0};
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (!j)
      fail_msg("not JSON: %s (%s)", line, jerr.text);
    assert_true(n < 16);
    lines[n++] = j;
  }
  assert_int_equal(n, CI_ARRAY_SIZE(want));
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(json_string_value(json_object_get(lines[i], "event")), want[i]);
    const char *t = json_string_value(json_object_get(lines[i], "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), strlen("2024-01-02T03:04:05.678Z"));
  }
  json_t *r = lines[0];
  assert_string_equal(json_string_value(json_object_get(r, "run_id")), "r1");
  assert_string_equal(json_string_value(json_object_get(r, "backend")), "docker");
  json_t *ts = json_object_get(r, "tasks");
  assert_int_equal(json_array_size(ts), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(ts, 1), "name")), "test");
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(json_array_get(ts, 1), "labels"), 0)),
      "VERSION:1.14");
  assert_true(json_is_true(json_object_get(json_array_get(ts, 1), "allow_failures")));
  assert_string_equal(json_string_value(json_object_get(lines[1], "task")), "lint");
  assert_int_equal(json_integer_value(json_object_get(lines[1], "task_id")), 0);
  assert_string_equal(json_string_value(json_object_get(lines[2], "step")), "'main' script");
  /* The cut character waits for its end; the invalid byte becomes U+FFFD. */
  assert_string_equal(json_string_value(json_object_get(lines[3], "text")), "caf");
  assert_string_equal(json_string_value(json_object_get(lines[4], "text")),
                      "\xc3\xa9 \xef\xbf\xbd\n");
  assert_string_equal(json_string_value(json_object_get(lines[4], "stream")), "stdout");
  assert_string_equal(json_string_value(json_object_get(lines[5], "stream")), "stderr");
  assert_string_equal(json_string_value(json_object_get(lines[5], "text")), "oops\n");
  assert_string_equal(json_string_value(json_object_get(lines[6], "level")), "info");
  assert_string_equal(json_string_value(json_object_get(lines[7], "status")), "succeeded");
  assert_true(json_real_value(json_object_get(lines[7], "seconds")) == 0.5);
  assert_true(json_is_null(json_object_get(lines[8], "reason")));
  assert_true(json_is_false(json_object_get(lines[8], "allowed_failure")));
  assert_string_equal(json_string_value(json_object_get(lines[9], "status")), "failed");
  assert_true(json_is_true(json_object_get(lines[9], "allowed_failure")));
  assert_string_equal(json_string_value(json_object_get(lines[9], "reason")), "exit status 3");
  assert_int_equal(json_integer_value(json_object_get(lines[10], "status")), 0);
  assert_true(json_is_null(json_object_get(lines[10], "failure")));
  for (size_t i = 0; i < n; i++)
    json_decref(lines[i]);
  free(buf);
}

static void
test_text_utf8(void **state)
{
  struct ci_buf b = CI_BUF_INIT;
  cli_text_add_utf8(&b, "a<b&\"c'\x01\tz\xed\xa0\x80", 13, true);
  assert_string_equal(
      ci_buf_str(&b),
      "a&lt;b&amp;&quot;c&apos;\xef\xbf\xbd\tz\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  ci_buf_release(&b);
  assert_int_equal(cli_text_utf8_tail("ab\xe2\x82", 4), 2);
  assert_int_equal(cli_text_utf8_tail("ab\xe2\x82\xac", 5), 0);
  assert_int_equal(cli_text_utf8_tail("\xf0", 1), 1);
  assert_int_equal(cli_text_utf8_tail("a\x80", 2), 0);
}

/* --junit: one testcase per task; failures carry the end of the log, escaped. */
static void
test_junit(void **state)
{
  struct cfg_task t[5] = {{0}};
  const char *names[] = {"ok", "bad", "flaky", "slow", "later"};
  for (int i = 0; i < 5; i++) {
    t[i].name = (char *)names[i];
    t[i].id = (unsigned)i;
  }
  t[2].allow_failures = true;
  ci_strv_push(&t[1].labels, "CC:<gcc>");
  struct junit *j = junit_new("proj&co");
  struct sched_event e = {0};
  for (int i = 0; i < 4; i++) {
    e = (struct sched_event){.kind = SCHED_TASK_STARTED, .task = &t[i], .task_index = i};
    junit_event(j, &e);
  }
  e = (struct sched_event){
      .kind = SCHED_SCOPE_STARTED, .task = &t[1], .task_index = 1, .scope = "'main' script"};
  junit_event(j, &e);
  for (int k = 0; k < 150; k++) {
    char line[32];
    int n = snprintf(line, sizeof(line), "line %d%s", k, k == 149 ? " <end> & \x01" : "\n");
    e = (struct sched_event){.kind = SCHED_OUTPUT,
                             .task = &t[1],
                             .task_index = 1,
                             .scope = "'main' script",
                             .text = line,
                             .len = (size_t)n,
                             .stream = 1};
    junit_event(j, &e);
  }
  e = (struct sched_event){.kind = SCHED_SCOPE_FINISHED,
                           .task = &t[1],
                           .task_index = 1,
                           .scope = "'main' script",
                           .status = SCHED_FAILED,
                           .seconds = 1};
  junit_event(j, &e);
  struct {
    int i;
    enum sched_status st;
    double secs;
    const char *reason;
  } fin[] = {{0, SCHED_SUCCEEDED, 1.5, NULL},
             {1, SCHED_FAILED, 2.25, "'main' script failed with exit status 1"},
             {2, SCHED_FAILED, 0.5, "'main' script failed with exit status 3"},
             {3, SCHED_TIMED_OUT, 60, "timed out after 60s"},
             {4, SCHED_SKIPPED, 0, "dependency 'bad' failed"}};
  for (size_t k = 0; k < CI_ARRAY_SIZE(fin); k++) {
    e = (struct sched_event){.kind = SCHED_TASK_FINISHED,
                             .task = &t[fin[k].i],
                             .task_index = (size_t)fin[k].i,
                             .status = fin[k].st,
                             .seconds = fin[k].secs,
                             .reason = fin[k].reason};
    junit_event(j, &e);
  }
  char *x = junit_xml(j);
  assert_non_null(strstr(x, "<testsuites name=\"proj&amp;co\" tests=\"5\" failures=\"2\" "
                            "errors=\"0\" skipped=\"1\" time=\"64.250\">"));
  assert_non_null(strstr(x, "<testcase classname=\"ok\" name=\"ok\" time=\"1.500\"/>"));
  assert_non_null(strstr(x, "<testcase classname=\"bad\" name=\"bad (CC:&lt;gcc&gt;)\" "
                            "time=\"2.250\">\n      <failure message=\"&apos;main&apos; script "
                            "failed with exit status 1\" type=\"failed\">"));
  /* The last 100 lines only: lines 0..50 and the scope's start are gone. */
  assert_null(strstr(x, "line 50\n"));
  assert_non_null(strstr(x, ">line 51\nline 52\n"));
  assert_non_null(
      strstr(x, "line 149 &lt;end&gt; &amp; \xef\xbf\xbd\n&apos;main&apos; script failed in "
                "1.0s\n</failure>"));
  assert_non_null(strstr(x, "<testcase classname=\"flaky\" name=\"flaky\" time=\"0.500\">\n"
                            "      <system-out>allowed failure: &apos;main&apos; script failed"));
  assert_non_null(strstr(x, "<failure message=\"timed out after 60s\" type=\"timed_out\">"));
  assert_non_null(strstr(x, "<testcase classname=\"later\" name=\"later\" time=\"0.000\">\n"
                            "      <skipped message=\"dependency &apos;bad&apos; failed\"/>"));
  free(x);

  /* Written atomically: a directory that cannot take it leaves nothing behind. */
  char dir[] = "/tmp/cirrus-junit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *path = xasprintf("%s/report.xml", dir);
  struct ci_error *err = NULL;
  assert_int_equal(junit_write(j, path, &err), 0);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(ci_read_file(path, 1 << 20, &text, &len, &err), 0);
  assert_non_null(strstr(text, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
  free(text);
  unlink(path);
  free(path);
  path = xasprintf("%s/missing/report.xml", dir);
  assert_true(junit_write(j, path, &err) < 0);
  assert_non_null(strstr(err->msg, "cannot write the JUnit report"));
  ci_error_free(&err);
  free(path);
  assert_int_equal(rmdir(dir), 0);
  junit_free(j);
  ci_strv_release(&t[1].labels);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_task_scope),
      cmocka_unit_test(test_simple_sequential),
      cmocka_unit_test(test_simple_blocks),
      cmocka_unit_test(test_ci_folds),
      cmocka_unit_test(test_mode_parse),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_text_utf8),
      cmocka_unit_test(test_junit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
