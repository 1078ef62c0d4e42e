/* runner/graph.c - the task dependency graph. */
#include "graph.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static long
index_of_id(const struct graph *g, unsigned id)
{
  /* Tasks are sorted by id: binary search. */
  size_t lo = 0, hi = g->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    unsigned mid_id = g->nodes[mid].task->id;
    if (mid_id == id)
      return (long)mid;
    if (mid_id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static void
link_edges(struct graph *g)
{
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    free(nd->deps);
    free(nd->dependents);
    nd->deps = nd->dependents = NULL;
    nd->ndeps = nd->ndependents = 0;
  }
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    for (size_t d = 0; d < nd->task->ndepends_on; d++) {
      long j = index_of_id(g, nd->task->depends_on[d]);
      if (j < 0 || g->nodes[j].state == GRAPH_EXCLUDED)
        continue;
      nd->deps = xreallocarray(nd->deps, nd->ndeps + 1, sizeof(size_t));
      nd->deps[nd->ndeps++] = (size_t)j;
      struct graph_node *dep = &g->nodes[j];
      dep->dependents = xreallocarray(dep->dependents, dep->ndependents + 1, sizeof(size_t));
      dep->dependents[dep->ndependents++] = i;
    }
  }
  g->selected = 0;
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    g->selected++;
    nd->waiting = nd->ndeps;
    nd->state = nd->waiting ? GRAPH_PENDING : GRAPH_READY;
  }
}

void
graph_init(struct graph *g, const struct cfg_task *tasks, size_t n)
{
  memset(g, 0, sizeof(*g));
  g->nodes = xcalloc(n ? n : 1, sizeof(*g->nodes));
  g->n = n;
  for (size_t i = 0; i < n; i++) {
    g->nodes[i].task = &tasks[i];
    g->nodes[i].state = GRAPH_PENDING;
  }
  link_edges(g);
}

void
graph_release(struct graph *g)
{
  for (size_t i = 0; i < g->n; i++) {
    free(g->nodes[i].deps);
    free(g->nodes[i].dependents);
    free(g->nodes[i].reason);
  }
  free(g->nodes);
  memset(g, 0, sizeof(*g));
}

static bool
has_label(const struct cfg_task *t, const char *label, size_t len)
{
  for (size_t i = 0; i < t->labels.n; i++)
    if (strlen(t->labels.v[i]) == len && !strncasecmp(t->labels.v[i], label, len))
      return true;
  return false;
}

/* upstream's matchTask: nameOrAlias is a case-insensitive prefix of the filter, and the
 * remaining words are all labels of the task. */
static bool
match_one(const struct cfg_task *t, const char *name, const char *filter)
{
  if (!name || !*name)
    return false;
  size_t nl = strlen(name);
  if (strncasecmp(filter, name, nl) != 0)
    return false;
  const char *p = filter + nl;
  while (*p) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    const char *e = p;
    while (*e && *e != ' ')
      e++;
    if (!has_label(t, p, (size_t)(e - p)))
      return false;
    p = e;
  }
  return true;
}

int
graph_filter(struct graph *g, const char *const *filters, size_t n, struct ci_error **err)
{
  if (n == 0)
    return 0;
  bool *keep = xcalloc(g->n ? g->n : 1, sizeof(bool));
  for (size_t f = 0; f < n; f++) {
    bool any = false;
    for (size_t i = 0; i < g->n; i++) {
      const struct cfg_task *t = g->nodes[i].task;
      if (match_one(t, t->name, filters[f]) || match_one(t, t->alias, filters[f])) {
        keep[i] = true;
        any = true;
      }
    }
    if (!any) {
      struct ci_buf names = CI_BUF_INIT;
      for (size_t i = 0; i < g->n; i++) {
        const struct cfg_task *t = g->nodes[i].task;
        if (t->instance == CFG_INSTANCE_PREBUILT)
          continue;
        ci_buf_addf(&names, "%s'%s'", names.len ? ", " : "", t->name);
        for (size_t l = 0; l < t->labels.n; l++)
          ci_buf_addf(&names, "%s%s", l ? " " : " (", t->labels.v[l]);
        if (t->labels.n)
          ci_buf_addc(&names, ')');
      }
      int ret = ci_error_make(err, CI_EUSAGE,
                              "task filter yielded no matches: none of the %zu task(s) were "
                              "matched using a \"%s\" filter; the tasks are: %s",
                              g->n, filters[f], names.len ? ci_buf_str(&names) : "(none)");
      ci_buf_release(&names);
      free(keep);
      return ret;
    }
  }
  /* Selected tasks run without their dependencies, except the service tasks that build
   * the images they use. */
  for (size_t i = 0; i < g->n; i++) {
    if (!keep[i])
      continue;
    const struct cfg_task *t = g->nodes[i].task;
    for (size_t d = 0; d < t->ndepends_on; d++) {
      long j = index_of_id(g, t->depends_on[d]);
      if (j >= 0 && g->nodes[j].task->instance == CFG_INSTANCE_PREBUILT)
        keep[j] = true;
    }
  }
  for (size_t i = 0; i < g->n; i++)
    g->nodes[i].state = keep[i] ? GRAPH_PENDING : GRAPH_EXCLUDED;
  free(keep);
  /* Drop edges between selected tasks too (upstream clears RequiredGroups), but keep the
   * edges to service tasks. */
  link_edges(g);
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED || nd->task->instance == CFG_INSTANCE_PREBUILT)
      continue;
    size_t w = 0;
    for (size_t d = 0; d < nd->ndeps; d++)
      if (g->nodes[nd->deps[d]].task->instance == CFG_INSTANCE_PREBUILT)
        nd->deps[w++] = nd->deps[d];
    nd->ndeps = w;
    nd->waiting = w;
    nd->state = w ? GRAPH_PENDING : GRAPH_READY;
  }
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    size_t w = 0;
    for (size_t k = 0; k < nd->ndependents; k++) {
      struct graph_node *dn = &g->nodes[nd->dependents[k]];
      bool still = false;
      for (size_t d = 0; d < dn->ndeps && !still; d++)
        still = dn->deps[d] == i;
      if (still)
        nd->dependents[w++] = nd->dependents[k];
    }
    nd->ndependents = w;
  }
  return 0;
}

long
graph_next_ready(const struct graph *g)
{
  for (size_t i = 0; i < g->n; i++)
    if (g->nodes[i].state == GRAPH_READY)
      return (long)i;
  return -1;
}

void
graph_start(struct graph *g, size_t i)
{
  if (g->nodes[i].state != GRAPH_READY)
    CI_BUG("starting task %zu in state %d", i, g->nodes[i].state);
  g->nodes[i].state = GRAPH_RUNNING;
}

bool
graph_outcome_fails(enum graph_outcome o)
{
  return o == GRAPH_FAILED || o == GRAPH_TIMED_OUT || o == GRAPH_DEP_FAILED ||
         o == GRAPH_CANCELED;
}

static bool
outcome_blocks_dependents(enum graph_outcome o)
{
  return o == GRAPH_FAILED || o == GRAPH_TIMED_OUT || o == GRAPH_DEP_FAILED ||
         o == GRAPH_CANCELED;
}

void
graph_finish(struct graph *g, size_t i, enum graph_outcome outcome)
{
  /* Iterative: a failure propagates to dependents of dependents. */
  size_t *stack = xcalloc(g->n + 1, sizeof(size_t));
  size_t sn = 0;
  struct graph_node *nd = &g->nodes[i];
  nd->state = GRAPH_DONE;
  nd->outcome = outcome;
  g->done++;
  stack[sn++] = i;
  while (sn) {
    size_t cur = stack[--sn];
    struct graph_node *c = &g->nodes[cur];
    for (size_t k = 0; k < c->ndependents; k++) {
      struct graph_node *dn = &g->nodes[c->dependents[k]];
      if (dn->state != GRAPH_PENDING)
        continue;
      if (outcome_blocks_dependents(c->outcome)) {
        dn->state = GRAPH_DONE;
        dn->outcome = c->outcome == GRAPH_CANCELED ? GRAPH_CANCELED : GRAPH_DEP_FAILED;
        free(dn->reason);
        dn->reason = c->outcome == GRAPH_CANCELED
                         ? xstrdup("the run was interrupted")
                         : xasprintf("dependency '%s' %s", c->task->name,
                                     c->outcome == GRAPH_TIMED_OUT  ? "timed out"
                                     : c->outcome == GRAPH_FAILED   ? "failed"
                                                                    : "did not run");
        g->done++;
        stack[sn++] = c->dependents[k];
      } else if (--dn->waiting == 0) {
        dn->state = GRAPH_READY;
      }
    }
  }
  free(stack);
}

void
graph_cancel_pending(struct graph *g, const char *reason)
{
  for (size_t i = 0; i < g->n; i++) {
    struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_PENDING || nd->state == GRAPH_READY) {
      nd->state = GRAPH_DONE;
      nd->outcome = GRAPH_CANCELED;
      free(nd->reason);
      nd->reason = xstrdup(reason);
      g->done++;
    }
  }
}

bool
graph_all_done(const struct graph *g)
{
  return g->done >= g->selected;
}

const char *
graph_outcome_name(enum graph_outcome o)
{
  switch (o) {
  case GRAPH_OK:
    return "succeeded";
  case GRAPH_FAILED:
    return "failed";
  case GRAPH_ALLOWED_FAILURE:
    return "failed (allowed)";
  case GRAPH_TIMED_OUT:
    return "timed out";
  case GRAPH_SKIPPED:
    return "skipped";
  case GRAPH_DEP_FAILED:
    return "skipped";
  case GRAPH_CANCELED:
    return "canceled";
  }
  return "unknown";
}
