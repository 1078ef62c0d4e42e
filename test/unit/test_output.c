/* Unit tests for cmd/output.c: upstream's simple format, CI folding, block buffering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration),          cmocka_unit_test(test_task_scope),
      cmocka_unit_test(test_simple_sequential), cmocka_unit_test(test_simple_blocks),
      cmocka_unit_test(test_ci_folds),          cmocka_unit_test(test_mode_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
