/* runner/graph.h - the task dependency graph: which tasks run, in what order, and what
 * happens to dependents when a task fails.  Pure data: no I/O, no libuv.
 *
 * Steps for a caller (the scheduler):
 *   1. graph_init(&g, file->tasks, file->ntasks);
 *   2. graph_filter(&g, filters, n, &err) keeps only the selected tasks (upstream's task
 *      filter: case-insensitive name/alias prefix plus labels; the selected tasks run without
 *      their dependencies, except Dockerfile service tasks, which are kept);
 *   3. loop: graph_next_ready() gives the lowest-id task whose dependencies are all done;
 *      graph_start(); ... graph_finish(&g, i, outcome) marks dependents of a failure as
 *      skipped (with the reason) and makes others ready;
 *   4. graph_release(&g).
 */
#ifndef GRAPH_H
#define GRAPH_H

#include "common/error.h"
#include "config/config.h"

enum graph_state {
  GRAPH_EXCLUDED,  /* not selected by the filter */
  GRAPH_PENDING,   /* waiting for dependencies */
  GRAPH_READY,     /* may start */
  GRAPH_RUNNING,
  GRAPH_DONE,      /* finished: see outcome */
};

enum graph_outcome {
  GRAPH_OK,              /* succeeded */
  GRAPH_FAILED,          /* failed (the run fails) */
  GRAPH_ALLOWED_FAILURE, /* failed with allow_failures: true (the run does not fail) */
  GRAPH_TIMED_OUT,       /* timed out (the run fails) */
  GRAPH_SKIPPED,         /* skip: true, or no supported instance: counts as done */
  GRAPH_DEP_FAILED,      /* never started because a dependency failed (the run fails) */
  GRAPH_CANCELED,        /* never started or stopped because the run was interrupted */
};

struct graph_node {
  const struct cfg_task *task; /* borrowed from the cfg_file */
  enum graph_state state;
  enum graph_outcome outcome;
  size_t *deps; /* indices of the tasks this one waits for (owned) */
  size_t ndeps;
  size_t *dependents; /* indices of the tasks waiting for this one (owned) */
  size_t ndependents;
  size_t waiting;     /* dependencies not done yet */
  char *reason;       /* owned: why it was skipped/canceled, or NULL */
};

struct graph {
  struct graph_node *nodes; /* owned; same order as the tasks (by id) */
  size_t n;
  size_t selected; /* nodes not EXCLUDED */
  size_t done;     /* nodes DONE among the selected */
};

/* Build the graph over tasks (borrowed, sorted by id, dependencies by id). */
void graph_init(struct graph *g, const struct cfg_task *tasks, size_t n);
void graph_release(struct graph *g);

/* Keep only tasks matching one of filters[0..n) (none = keep all).  A filter "NAME" or
 * "NAME LABEL..." matches a task whose name or alias, case-insensitively, is a prefix of the
 * filter, when every remaining space-separated word is one of the task's labels.  Fails with
 * a message listing the tasks when some filter matches nothing. */
int graph_filter(struct graph *g, const char *const *filters, size_t n, struct ci_error **err);

/* Index of the lowest-id READY task, or -1. */
long graph_next_ready(const struct graph *g);
void graph_start(struct graph *g, size_t i);
/* Mark task i done with outcome; updates dependents (a failed dependency skips them,
 * recursively, with a reason naming the failed task). */
void graph_finish(struct graph *g, size_t i, enum graph_outcome outcome);
/* Cancel every task that has not started (Ctrl-C). */
void graph_cancel_pending(struct graph *g, const char *reason);
bool graph_all_done(const struct graph *g);
/* Whether an outcome fails the run. */
bool graph_outcome_fails(enum graph_outcome o);
const char *graph_outcome_name(enum graph_outcome o);

#endif
