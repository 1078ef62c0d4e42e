/* config/node.c - the arena and the generic tree: creation, copies, and upstream's
 * collectible merging (node.go MergeFrom/Deduplicate, finder.go DeepFindCollectible). */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct cfg__arena_chunk {
  struct cfg__arena_chunk *next;
  size_t size;
  max_align_t data[];
};

#define ARENA_CHUNK (64 * 1024)

void *
cfg__arena_alloc(struct cfg__arena *a, size_t n)
{
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  if (!a->head || a->used + n > a->head->size) {
    size_t size = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
    struct cfg__arena_chunk *ch = xmalloc(sizeof(*ch) + size);
    ch->size = size;
    if (a->head && n > ARENA_CHUNK / 4) {
      /* A big block: keep the current chunk as the one to bump from. */
      ch->next = a->head->next;
      a->head->next = ch;
      a->total += size;
      return ch->data;
    }
    ch->next = a->head;
    a->head = ch;
    a->used = 0;
    a->total += size;
  }
  void *p = (char *)a->head->data + a->used;
  a->used += n;
  return p;
}

char *
cfg__arena_strndup(struct cfg__arena *a, const char *s, size_t n)
{
  char *p = cfg__arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void
cfg__arena_release(struct cfg__arena *a)
{
  struct cfg__arena_chunk *ch = a->head;
  while (ch) {
    struct cfg__arena_chunk *next = ch->next;
    free(ch);
    ch = next;
  }
  a->head = NULL;
  a->used = a->total = 0;
}

/* ---- diagnostics ---- */

void
cfg__diag(struct cfg__ctx *c, enum cfg_diag_level level, unsigned line, unsigned col,
          const char *fmt, ...)
{
  struct cfg_file *f = c->file;
  if (level == CFG_DIAG_WARNING && c->quiet)
    return;
  CI_GROW(f->diags, f->diags_alloc, f->ndiags + 1);
  struct cfg_diag *d = &f->diags[f->ndiags++];
  d->level = level;
  d->pos.file = f->path;
  d->pos.line = line;
  d->pos.col = line ? col : 0;
  va_list ap;
  va_start(ap, fmt);
  d->msg = xvasprintf(fmt, ap);
  va_end(ap);
  if (level == CFG_DIAG_ERROR)
    f->nerrors++;
}

/* ---- nodes ---- */

static struct cfg__node overflow_node; /* returned once the budget is exhausted */

struct cfg__node *
cfg__node_new(struct cfg__ctx *c, enum cfg__node_kind kind, const char *name)
{
  if (++c->nnodes > CFG_MAX_NODES) {
    if (!c->overflow) {
      c->overflow = true;
      cfg__error(c, 0, 0,
                 "configuration too large: more than %d nodes after expanding aliases and "
                 "matrices",
                 CFG_MAX_NODES);
    }
    memset(&overflow_node, 0, sizeof(overflow_node));
    overflow_node.kind = kind;
    overflow_node.name = "";
    return &overflow_node;
  }
  if (c->mem == &c->scratch)
    c->scratch_nodes++;
  struct cfg__node *n = cfg__arena_alloc(c->mem, sizeof(*n));
  memset(n, 0, sizeof(*n));
  n->kind = kind;
  n->name = name ? name : "";
  return n;
}

void
cfg__node_append(struct cfg__ctx *c, struct cfg__node *parent, struct cfg__node *kid)
{
  if (parent == &overflow_node || kid == &overflow_node)
    return;
  if (parent->n == parent->alloc) {
    size_t na = parent->alloc ? parent->alloc * 2 : 4;
    struct cfg__node **k = cfg__arena_alloc(c->mem, na * sizeof(*k));
    if (parent->n)
      memcpy(k, parent->kids, parent->n * sizeof(*k));
    parent->kids = k;
    parent->alloc = na;
  }
  parent->kids[parent->n++] = kid;
  kid->parent = parent;
}

/* Copy without recursion: an explicit stack of (source, copy) pairs. */
struct cfg__node *
cfg__node_copy(struct cfg__ctx *c, const struct cfg__node *n, struct cfg__node *parent)
{
  struct cfg__node *root = cfg__node_new(c, n->kind, n->name);
  if (root == &overflow_node)
    return root;
  struct pair {
    const struct cfg__node *src;
    struct cfg__node *dst;
  };
  struct pair *stack = NULL;
  size_t sn = 0, salloc = 0;
  CI_GROW(stack, salloc, 1);
  stack[sn++] = (struct pair){n, root};
  while (sn) {
    struct pair p = stack[--sn];
    const struct cfg__node *s = p.src;
    struct cfg__node *d = p.dst;
    d->value = s->value;
    d->line = s->line;
    d->col = s->col;
    d->vline = s->vline;
    d->vcol = s->vcol;
    d->anchor = s->anchor;
    d->height = s->height;
    if (s->n) {
      d->kids = cfg__arena_alloc(c->mem, s->n * sizeof(*d->kids));
      d->alloc = s->n;
      for (size_t i = 0; i < s->n; i++) {
        struct cfg__node *k = cfg__node_new(c, s->kids[i]->kind, s->kids[i]->name);
        if (k == &overflow_node) {
          free(stack);
          return k;
        }
        k->parent = d;
        d->kids[d->n++] = k;
        CI_GROW(stack, salloc, sn + 1);
        stack[sn++] = (struct pair){s->kids[i], k};
      }
    }
  }
  free(stack);
  root->parent = parent;
  return root;
}

struct cfg__node *
cfg__node_find(const struct cfg__node *n, const char *name)
{
  for (size_t i = 0; i < n->n; i++)
    if (strcmp(n->kids[i]->name, name) == 0)
      return n->kids[i];
  return NULL;
}

const char *
cfg__node_kind_name(const struct cfg__node *n)
{
  switch (n->kind) {
  case CFG_NODE_MAP:
    return "map";
  case CFG_NODE_SEQ:
    return "list";
  default:
    return "scalar";
  }
}

bool
cfg__node_is_empty(const struct cfg__node *n)
{
  if (n->kind == CFG_NODE_SCALAR)
    return !n->value || !*n->value;
  return n->n == 0;
}

/* MergeListOfMapsToSingleMap: a list whose items are all maps becomes one map. */
static void
merge_list_of_maps(struct cfg__ctx *c, struct cfg__node *n)
{
  if (n->kind != CFG_NODE_SEQ)
    return;
  for (size_t i = 0; i < n->n; i++)
    if (n->kids[i]->kind != CFG_NODE_MAP)
      return;
  /* Like upstream's zero-valued virtual node: the first merge overwrites it. */
  struct cfg__node virt = {.kind = CFG_NODE_SCALAR, .name = ""};
  for (size_t i = 0; i < n->n; i++)
    cfg__node_merge_from(c, &virt, n->kids[i]);
  n->kind = CFG_NODE_MAP;
  n->kids = virt.kids;
  n->n = virt.n;
  n->alloc = virt.alloc;
  for (size_t i = 0; i < n->n; i++)
    n->kids[i]->parent = n;
}

static struct cfg__node *
chain_first_cast(const struct cfg__node *n)
{
  return (struct cfg__node *)n; /* read-only from here on */
}

static bool
is_env_name(const char *name)
{
  return strcmp(name, "env") == 0 || strcmp(name, "environment") == 0;
}

static void
replace_kids_with_copies(struct cfg__ctx *c, struct cfg__node *n, const struct cfg__node *other)
{
  n->n = 0;
  for (size_t i = 0; i < other->n; i++)
    cfg__node_append(c, n, cfg__node_copy(c, other->kids[i], n));
}

/* Upstream's MergeFrom: merge `other` into `n` (other wins).  A fresh virtual node is an
 * empty scalar, so merging a map or a list into it copies that map or list. */
void
cfg__node_merge_from(struct cfg__ctx *c, struct cfg__node *n, const struct cfg__node *other)
{
  n->name = other->name;
  n->line = other->line;
  n->col = other->col;
  n->vline = other->vline;
  n->vcol = other->vcol;
  struct cfg__node *oc = NULL;
  if (is_env_name(n->name)) {
    merge_list_of_maps(c, n);
    if (other->kind == CFG_NODE_SEQ) {
      /* Do not mutate `other` (it lives in the document): convert a copy. */
      oc = cfg__node_copy(c, other, NULL);
      merge_list_of_maps(c, oc);
      other = oc;
    }
  }
  if (n->kind != other->kind) {
    n->kind = other->kind;
    n->value = other->value;
    replace_kids_with_copies(c, n, other);
    return;
  }
  switch (other->kind) {
  case CFG_NODE_MAP:
    for (size_t i = 0; i < other->n; i++) {
      const struct cfg__node *ok = other->kids[i];
      /* existingChildren: the last child with that name wins. */
      struct cfg__node *existing = NULL;
      for (size_t j = 0; j < n->n; j++)
        if (strcmp(n->kids[j]->name, ok->name) == 0)
          existing = n->kids[j];
      if (existing)
        cfg__node_merge_from(c, existing, ok);
      else
        cfg__node_append(c, n, cfg__node_copy(c, ok, n));
    }
    break;
  case CFG_NODE_SEQ:
    if (strcmp(n->name, "additional_containers") == 0) {
      for (size_t i = 0; i < other->n; i++) {
        if (i < n->n)
          cfg__node_merge_from(c, n->kids[i], other->kids[i]);
        else
          cfg__node_append(c, n, cfg__node_copy(c, other->kids[i], n));
      }
      break;
    }
    replace_kids_with_copies(c, n, other);
    break;
  case CFG_NODE_SCALAR:
    n->value = other->value;
    break;
  }
}

void
cfg__node_dedup(struct cfg__ctx *c, struct cfg__node *n)
{
  size_t nu = 0;
  struct cfg__node **unique = n->n ? cfg__arena_alloc(c->mem, n->n * sizeof(*unique)) : NULL;
  for (size_t i = 0; i < n->n; i++) {
    struct cfg__node *k = n->kids[i];
    struct cfg__node *seen = NULL;
    for (size_t j = 0; j < nu; j++)
      if (strcmp(unique[j]->name, k->name) == 0) {
        seen = unique[j];
        break;
      }
    if (!seen) {
      unique[nu++] = k;
      continue;
    }
    cfg__node_dedup(c, k);
    cfg__node_merge_from(c, seen, k);
  }
  n->kids = unique;
  n->n = nu;
  n->alloc = nu;
}

struct cfg__node *
cfg__find_collectible(struct cfg__ctx *c, struct cfg__node *n, const char *name)
{
  /* Priority from low to high: the root's first match ... the task's last match. */
  size_t nchain = 0, alloc = 0;
  struct cfg__node **chain = NULL;
  for (struct cfg__node *cur = n; cur; cur = cur->parent) {
    if (cur == c->root) {
      /* The root can have thousands of entries: scan it once per name. */
      struct cfg__rootcol *rc = NULL;
      for (size_t i = 0; i < c->nrootcol && !rc; i++)
        if (!strcmp(c->rootcol[i].name, name))
          rc = &c->rootcol[i];
      if (!rc && c->nrootcol < CI_ARRAY_SIZE(c->rootcol)) {
        rc = &c->rootcol[c->nrootcol++];
        rc->name = name;
        rc->v = NULL;
        rc->n = 0;
        size_t ra = 0;
        for (size_t i = 0; i < cur->n; i++)
          if (strcmp(cur->kids[i]->name, name) == 0) {
            CI_GROW(rc->v, ra, rc->n + 1);
            rc->v[rc->n++] = cur->kids[i];
          }
      }
      if (rc) {
        for (size_t i = rc->n; i-- > 0;) {
          CI_GROW(chain, alloc, nchain + 1);
          chain[nchain++] = rc->v[i];
        }
        continue;
      }
    }
    for (size_t i = cur->n; i-- > 0;)
      if (strcmp(cur->kids[i]->name, name) == 0) {
        CI_GROW(chain, alloc, nchain + 1);
        chain[nchain++] = cur->kids[i];
      }
  }
  if (!nchain)
    return NULL;
  if (nchain == 1) {
    /* A single definition: merging it into an empty node would copy it unchanged unless it
     * has repeated keys (which Deduplicate merges).  Use it as it is (callers only read). */
    const struct cfg__node *only = chain[0];
    bool repeated = false;
    if (only->kind == CFG_NODE_MAP)
      for (size_t i = 0; i < only->n && !repeated; i++)
        for (size_t j = 0; j < i && !repeated; j++)
          repeated = strcmp(only->kids[i]->name, only->kids[j]->name) == 0;
    bool env_list = only->kind == CFG_NODE_SEQ && is_env_name(name);
    if (!repeated && !env_list) {
      free(chain);
      return chain_first_cast(only);
    }
  }
  struct cfg__node *virt = cfg__node_new(c, CFG_NODE_SCALAR, name);
  for (size_t i = nchain; i-- > 0;)
    cfg__node_merge_from(c, virt, chain[i]);
  free(chain);
  cfg__node_dedup(c, virt);
  virt->parent = n;
  return virt;
}
