/* config/matrix.c - matrix: expansion (upstream's modifier/matrix).
 *
 * Repeatedly take the first `matrix` node in document order; its nearest ancestor whose key
 * ends in "task", "docker_builder" or "pipe" is copied once per matrix entry, with the matrix
 * node replaced by that entry (a map's entry, or a list item's entries), and the copies take
 * the task's place.  Nested and sibling matrices therefore multiply, first matrix outermost.
 *
 * Upstream restarts from the root after every expansion, which is quadratic.  Here each
 * top-level item is expanded on its own with a work stack (depth-first, so the order is the
 * same) and the root's entries are rebuilt once at the end.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* First node named "matrix" at or below n, in pre-order (explicit stack: no recursion). */
static struct cfg__node *
find_matrix(struct cfg__node *n)
{
  struct cfg__node **stack = NULL;
  size_t sn = 0, alloc = 0;
  struct cfg__node *found = NULL;
  CI_GROW(stack, alloc, 1);
  stack[sn++] = n;
  while (sn && !found) {
    struct cfg__node *cur = stack[--sn];
    if (strcmp(cur->name, "matrix") == 0) {
      found = cur;
      break;
    }
    CI_GROW(stack, alloc, sn + cur->n);
    for (size_t i = cur->n; i-- > 0;)
      stack[sn++] = cur->kids[i];
  }
  free(stack);
  return found;
}

static bool
is_task_like(const char *name)
{
  return ci_str_has_suffix(name, "task") || ci_str_has_suffix(name, "docker_builder") ||
         ci_str_has_suffix(name, "pipe");
}

/* Replace parent->kids[at] by copies of repl[0..nrepl), building the array once. */
static void
splice(struct cfg__ctx *c, struct cfg__node *parent, size_t at, struct cfg__node **repl,
       size_t nrepl, bool copy)
{
  size_t n = parent->n - 1 + nrepl;
  struct cfg__node **kids = cfg__arena_alloc(&c->arena, (n ? n : 1) * sizeof(*kids));
  size_t w = 0;
  for (size_t i = 0; i < parent->n; i++) {
    if (i != at) {
      kids[w++] = parent->kids[i];
      continue;
    }
    for (size_t r = 0; r < nrepl; r++) {
      struct cfg__node *k = copy ? cfg__node_copy(c, repl[r], parent) : repl[r];
      k->parent = parent;
      kids[w++] = k;
    }
  }
  parent->kids = kids;
  parent->n = parent->alloc = w;
}

/* Copy task with the node at `path` (child indices from task down to the matrix node)
 * replaced by copies of repl[0..nrepl).  NULL once the node budget is exhausted. */
static struct cfg__node *
copy_with_replacement(struct cfg__ctx *c, const struct cfg__node *task, const size_t *path,
                      size_t depth, struct cfg__node **repl, size_t nrepl)
{
  struct cfg__node *copy = cfg__node_copy(c, task, task->parent);
  if (c->overflow)
    return NULL;
  struct cfg__node *parent = copy;
  for (size_t d = 0; d + 1 < depth; d++)
    parent = parent->kids[path[d]];
  splice(c, parent, path[depth - 1], repl, nrepl, true);
  return c->overflow ? NULL : copy;
}

/* Check a matrix node; report and return -1 if it cannot be expanded. */
static int
check_matrix(struct cfg__ctx *c, struct cfg__node *m, struct cfg__node **task)
{
  struct cfg__node *t = m->parent;
  while (t && !is_task_like(t->name))
    t = t->parent;
  if (!t || t == c->root) {
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
  *task = t;
  return 0;
}

/* The copies of `task` for matrix m (in order), in *out.  Returns -1 on overflow. */
static int
make_copies(struct cfg__ctx *c, struct cfg__node *task, struct cfg__node *m,
            struct cfg__node ***out, size_t *nout)
{
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
  int ret = 0;
  for (size_t k = 0; k < m->n && ret == 0; k++) {
    if (m->kind == CFG_NODE_MAP)
      copies[k] = copy_with_replacement(c, task, path, depth, &m->kids[k], 1);
    else
      copies[k] = copy_with_replacement(c, task, path, depth, m->kids[k]->kids, m->kids[k]->n);
    if (!copies[k])
      ret = -1;
  }
  free(path);
  if (ret < 0) {
    free(copies);
    return -1;
  }
  *out = copies;
  *nout = m->n;
  return 0;
}

/* Expand every matrix of one top-level item; append the resulting items to out. */
static int
expand_item(struct cfg__ctx *c, struct cfg__node *item, struct cfg__node ***out, size_t *nout,
            size_t *alloc)
{
  struct cfg__node **stack = NULL;
  size_t sn = 0, salloc = 0;
  CI_GROW(stack, salloc, 1);
  stack[sn++] = item;
  int ret = 0;
  while (sn && ret == 0) {
    struct cfg__node *n = stack[--sn];
    struct cfg__node *m = find_matrix(n);
    if (!m) {
      CI_GROW(*out, *alloc, *nout + 1);
      (*out)[(*nout)++] = n;
      continue;
    }
    struct cfg__node *task;
    if (check_matrix(c, m, &task) < 0) {
      ret = -1;
      break;
    }
    struct cfg__node **copies;
    size_t ncopies;
    if (make_copies(c, task, m, &copies, &ncopies) < 0) {
      ret = -1;
      break;
    }
    if (task == n) {
      /* The usual case: the item is the task; its copies are the next items. */
      CI_GROW(stack, salloc, sn + ncopies);
      for (size_t k = ncopies; k-- > 0;)
        stack[sn++] = copies[k];
    } else {
      /* A task-like key nested inside the item: replace it there and look again. */
      struct cfg__node *par = task->parent;
      size_t at = 0;
      while (par->kids[at] != task)
        at++;
      splice(c, par, at, copies, ncopies, false);
      CI_GROW(stack, salloc, sn + 1);
      stack[sn++] = n;
    }
    free(copies);
  }
  free(stack);
  return ret;
}

int
cfg__matrix_expand(struct cfg__ctx *c, struct cfg__node *root)
{
  struct cfg__node **out = NULL;
  size_t nout = 0, alloc = 0;
  int ret = 0;
  for (size_t i = 0; i < root->n && !c->overflow; i++) {
    size_t mark = nout;
    if (expand_item(c, root->kids[i], &out, &nout, &alloc) < 0) {
      /* Drop the item so that its other errors do not pile up on a broken expansion. */
      nout = mark;
      ret = -1;
    }
  }
  if (c->overflow) {
    free(out);
    return -1;
  }
  struct cfg__node **kids = cfg__arena_alloc(&c->arena, (nout ? nout : 1) * sizeof(*kids));
  for (size_t i = 0; i < nout; i++) {
    kids[i] = out[i];
    kids[i]->parent = root;
  }
  free(out);
  root->kids = kids;
  root->n = root->alloc = nout;
  return ret;
}
