/* config/matrix.c - matrix: expansion (upstream's modifier/matrix).
 *
 * Repeatedly take the first `matrix` node in document order; its nearest ancestor whose key
 * ends in "task", "docker_builder" or "pipe" is copied once per matrix entry, with the matrix
 * node replaced by that entry (a map's entry, or a list item's entries), and the copies take
 * the task's place.  Nested and sibling matrices therefore multiply, first matrix outermost.
 *
 * Top-level items are processed in order and expansions never touch earlier items, so the
 * search restarts from the current item instead of the root: linear, not quadratic, in the
 * number of tasks.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* First node named "matrix" at or below n, in pre-order. */
static struct cfg__node *
find_matrix(struct cfg__node *n)
{
  if (strcmp(n->name, "matrix") == 0)
    return n;
  for (size_t i = 0; i < n->n; i++) {
    struct cfg__node *m = find_matrix(n->kids[i]);
    if (m)
      return m;
  }
  return NULL;
}

static bool
is_task_like(const char *name)
{
  return ci_str_has_suffix(name, "task") || ci_str_has_suffix(name, "docker_builder") ||
         ci_str_has_suffix(name, "pipe");
}

/* Copy task with the node at `path` (indices from task down to the matrix node) replaced by
 * the nodes in repl[0..nrepl). */
static struct cfg__node *
copy_with_replacement(struct cfg__ctx *c, const struct cfg__node *task, const size_t *path,
                      size_t depth, struct cfg__node **repl, size_t nrepl)
{
  struct cfg__node *copy = cfg__node_copy(c, task, task->parent);
  struct cfg__node *parent = copy;
  for (size_t d = 0; d + 1 < depth; d++)
    parent = parent->kids[path[d]];
  size_t at = path[depth - 1];
  /* Rebuild parent's kids: [0, at) + repl + (at, n). */
  struct cfg__node **old = parent->kids;
  size_t oldn = parent->n;
  parent->kids = NULL;
  parent->n = parent->alloc = 0;
  for (size_t i = 0; i < oldn; i++) {
    if (i != at) {
      cfg__node_append(c, parent, old[i]);
      continue;
    }
    for (size_t r = 0; r < nrepl; r++)
      cfg__node_append(c, parent, cfg__node_copy(c, repl[r], parent));
  }
  return copy;
}

/* Expand the first matrix under root->kids[i].  Returns 1 if one was expanded, 0 if there is
 * none, -1 on error (reported; the item is then dropped). */
static int
expand_one(struct cfg__ctx *c, struct cfg__node *root, size_t i)
{
  struct cfg__node *m = find_matrix(root->kids[i]);
  if (!m)
    return 0;
  struct cfg__node *task = m->parent;
  while (task && !is_task_like(task->name))
    task = task->parent;
  if (!task || task == root) {
    cfg__node_error(c, m, "matrix can be defined only under a task, docker_builder or pipe");
    return -1;
  }
  if (m->kind == CFG_NODE_SCALAR) {
    cfg__node_error(c, m, "matrix should contain a collection");
    return -1;
  }
  if (m->kind == CFG_NODE_SEQ)
    for (size_t k = 0; k < m->n; k++)
      if (m->kids[k]->kind != CFG_NODE_MAP) {
        cfg__node_error(c, m->kids[k], "matrix with a list can only contain maps as it's items");
        return -1;
      }

  /* Path from task down to m. */
  size_t depth = 0;
  for (struct cfg__node *p = m; p != task; p = p->parent)
    depth++;
  size_t *path = xcalloc(depth, sizeof(*path));
  size_t d = depth;
  for (struct cfg__node *p = m; p != task; p = p->parent) {
    struct cfg__node *par = p->parent;
    size_t idx = 0;
    while (par->kids[idx] != p)
      idx++;
    path[--d] = idx;
  }

  struct cfg__node **copies = xcalloc(m->n ? m->n : 1, sizeof(*copies));
  for (size_t k = 0; k < m->n; k++) {
    if (m->kind == CFG_NODE_MAP)
      copies[k] = copy_with_replacement(c, task, path, depth, &m->kids[k], 1);
    else
      copies[k] = copy_with_replacement(c, task, path, depth, m->kids[k]->kids, m->kids[k]->n);
  }
  free(path);

  /* Replace task by its copies in task's parent. */
  struct cfg__node *tp = task->parent;
  struct cfg__node **old = tp->kids;
  size_t oldn = tp->n;
  tp->kids = NULL;
  tp->n = tp->alloc = 0;
  for (size_t k = 0; k < oldn; k++) {
    if (old[k] != task) {
      cfg__node_append(c, tp, old[k]);
      continue;
    }
    for (size_t r = 0; r < m->n; r++)
      cfg__node_append(c, tp, copies[r]);
  }
  free(copies);
  return 1;
}

int
cfg__matrix_expand(struct cfg__ctx *c, struct cfg__node *root)
{
  int ret = 0;
  size_t i = 0;
  while (i < root->n && !c->overflow) {
    int r = expand_one(c, root, i);
    if (r < 0) {
      /* Drop the item so that its other errors do not pile up on a broken expansion. */
      memmove(root->kids + i, root->kids + i + 1, (root->n - i - 1) * sizeof(*root->kids));
      root->n--;
      ret = -1;
      continue;
    }
    if (r == 0)
      i++;
  }
  return c->overflow ? -1 : ret;
}
