/* Unit tests for runner/graph: readiness order, failure propagation, filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/graph.h"

#include <stdlib.h>
#include <string.h>

static struct cfg_file *
parse(const char *yaml)
{
  struct cfg_file *f = cfg_parse("t.yml", yaml, strlen(yaml), NULL);
  for (size_t i = 0; i < f->ndiags; i++)
    if (f->diags[i].level == CFG_DIAG_ERROR)
      fail_msg("config error: %s", f->diags[i].msg);
  return f;
}

static const char *chain = "container:\n  image: alpine\n"
                           "a_task:\n  script: true\n"
                           "b_task:\n  depends_on: a\n  script: true\n"
                           "c_task:\n  depends_on: b\n  script: true\n"
                           "d_task:\n  script: true\n"
                           "e_task:\n  depends_on: [a, d]\n  script: true\n";

static void
test_order(void **state)
{
  struct cfg_file *f = parse(chain);
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  assert_int_equal(g.selected, 5);
  /* a (0) and d (3) are ready; lowest id first. */
  assert_int_equal(graph_next_ready(&g), 0);
  graph_start(&g, 0);
  assert_int_equal(graph_next_ready(&g), 3);
  graph_start(&g, 3);
  assert_int_equal(graph_next_ready(&g), -1);
  graph_finish(&g, 0, GRAPH_OK);
  assert_int_equal(graph_next_ready(&g), 1); /* b */
  graph_finish(&g, 3, GRAPH_OK);
  graph_start(&g, 1);
  assert_int_equal(graph_next_ready(&g), 4); /* e: a and d done */
  graph_finish(&g, 1, GRAPH_OK);
  graph_start(&g, 4);
  graph_start(&g, 2);
  graph_finish(&g, 4, GRAPH_OK);
  assert_false(graph_all_done(&g));
  graph_finish(&g, 2, GRAPH_OK);
  assert_true(graph_all_done(&g));
  graph_release(&g);
  cfg_file_free(f);
}

static void
test_failure_propagates(void **state)
{
  struct cfg_file *f = parse(chain);
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  graph_start(&g, 0);
  graph_finish(&g, 0, GRAPH_FAILED);
  /* b, c (through b) and e are skipped because a failed; d still runs. */
  assert_int_equal(g.nodes[1].outcome, GRAPH_DEP_FAILED);
  assert_int_equal(g.nodes[2].outcome, GRAPH_DEP_FAILED);
  assert_int_equal(g.nodes[4].outcome, GRAPH_DEP_FAILED);
  assert_string_equal(g.nodes[1].reason, "dependency 'a' failed");
  assert_string_equal(g.nodes[2].reason, "dependency 'b' did not run");
  assert_int_equal(graph_next_ready(&g), 3);
  graph_start(&g, 3);
  graph_finish(&g, 3, GRAPH_OK);
  assert_true(graph_all_done(&g));
  assert_true(graph_outcome_fails(GRAPH_DEP_FAILED));
  assert_false(graph_outcome_fails(GRAPH_ALLOWED_FAILURE));
  assert_false(graph_outcome_fails(GRAPH_SKIPPED));
  graph_release(&g);
  cfg_file_free(f);
}

static void
test_allowed_failure_and_skip_unblock(void **state)
{
  struct cfg_file *f = parse(chain);
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  graph_start(&g, 0);
  graph_finish(&g, 0, GRAPH_ALLOWED_FAILURE);
  assert_int_equal(graph_next_ready(&g), 1);
  graph_start(&g, 3);
  graph_finish(&g, 3, GRAPH_SKIPPED);
  assert_int_equal(g.nodes[4].state, GRAPH_READY);
  graph_release(&g);
  cfg_file_free(f);
}

static void
test_cancel(void **state)
{
  struct cfg_file *f = parse(chain);
  struct graph g;
  graph_init(&g, f->tasks, f->ntasks);
  graph_start(&g, 0);
  graph_cancel_pending(&g, "interrupted");
  assert_int_equal(g.nodes[3].outcome, GRAPH_CANCELED);
  assert_false(graph_all_done(&g)); /* a is still running */
  graph_finish(&g, 0, GRAPH_CANCELED);
  assert_true(graph_all_done(&g));
  graph_release(&g);
  cfg_file_free(f);
}

static void
test_filter(void **state)
{
  const char *yaml = "container:\n  image: alpine\n"
                     "lint_task:\n  alias: check\n  script: true\n"
                     "test_task:\n  depends_on: lint\n  env:\n    matrix:\n"
                     "      - VERSION: \"1.14\"\n      - VERSION: \"1.15\"\n  script: true\n"
                     "Second Working_task:\n  script: true\n";
  struct cfg_file *f = parse(yaml);
  struct graph g;
  struct ci_error *err = NULL;

  graph_init(&g, f->tasks, f->ntasks);
  const char *f1[] = {"TEST"};
  assert_int_equal(graph_filter(&g, f1, 1, &err), 0);
  assert_int_equal(g.selected, 2); /* both matrix copies, without their dependency */
  assert_int_equal(g.nodes[0].state, GRAPH_EXCLUDED);
  assert_int_equal(g.nodes[1].state, GRAPH_READY);
  assert_int_equal(g.nodes[2].state, GRAPH_READY);
  graph_release(&g);

  graph_init(&g, f->tasks, f->ntasks);
  const char *f2[] = {"test VERSION:1.14"};
  assert_int_equal(graph_filter(&g, f2, 1, &err), 0);
  assert_int_equal(g.selected, 1);
  assert_int_equal(g.nodes[1].state, GRAPH_READY);
  graph_release(&g);

  graph_init(&g, f->tasks, f->ntasks);
  const char *f3[] = {"check", "second working"};
  assert_int_equal(graph_filter(&g, f3, 2, &err), 0);
  assert_int_equal(g.selected, 2);
  assert_int_equal(g.nodes[0].state, GRAPH_READY);
  assert_int_equal(g.nodes[3].state, GRAPH_READY);
  graph_release(&g);

  graph_init(&g, f->tasks, f->ntasks);
  const char *f4[] = {"nope"};
  assert_true(graph_filter(&g, f4, 1, &err) < 0);
  assert_non_null(strstr(err->msg, "task filter yielded no matches: none of the 4 task(s)"));
  assert_non_null(strstr(err->msg, "'lint'"));
  assert_non_null(strstr(err->msg, "'test' (VERSION:1.14)"));
  ci_error_free(&err);
  /* "testx" needs label "x" after the prefix "test". */
  const char *f5[] = {"testx"};
  assert_true(graph_filter(&g, f5, 1, &err) < 0);
  ci_error_free(&err);
  graph_release(&g);
  cfg_file_free(f);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order),  cmocka_unit_test(test_failure_propagates),
      cmocka_unit_test(test_allowed_failure_and_skip_unblock),
      cmocka_unit_test(test_cancel), cmocka_unit_test(test_filter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
