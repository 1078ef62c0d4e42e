/* config/internal.h - module-internal: the generic node tree and the parse context.
 * Never included from outside config/.
 *
 * The pipeline (config/README.md has the invariants):
 *   yaml.c    libyaml events -> struct cfg_node tree (anchors resolved, merge keys applied)
 *   matrix.c  matrix: expansion, in place
 *   task.c    task-like top-level nodes -> struct cfg_task (fields, instructions, instances)
 *   resolve.c dependencies, cycles, Dockerfile service tasks, unique labels
 *   json.c    the model as JSON
 */
#ifndef CFG_INTERNAL_H
#define CFG_INTERNAL_H

#include "config.h"

#include <stdint.h>

/* ---- arena: every node and node string of one parse lives here ---- */

struct cfg__arena_chunk;
struct cfg__arena {
  struct cfg__arena_chunk *head;
  size_t used; /* bytes used in head */
  size_t total;
};
void *cfg__arena_alloc(struct cfg__arena *a, size_t n);
char *cfg__arena_strndup(struct cfg__arena *a, const char *s, size_t n);
void cfg__arena_release(struct cfg__arena *a);

/* ---- the generic tree (upstream's node.Node) ---- */

enum cfg__node_kind { CFG_NODE_SCALAR, CFG_NODE_MAP, CFG_NODE_SEQ };

struct cfg__node {
  const char *name;  /* key in the parent map; "" for sequence items; arena */
  const char *value; /* scalars only; arena */
  struct cfg__node *parent;
  struct cfg__node **kids; /* map entries (keys may repeat) or sequence items; arena */
  const char *anchor;      /* anchor defined on this node, or NULL (recursion check) */
  uint32_t n, alloc;
  uint32_t line, col;   /* of the key for map entries, else of the value */
  uint32_t vline, vcol; /* of the value */
  uint16_t height;      /* levels below this node (0 for scalars and empty collections) */
  uint8_t kind;         /* enum cfg__node_kind */
};

/* Limits that keep hostile input from exhausting memory or the stack. */
#define CFG_MAX_DEPTH 256
#define CFG_MAX_NODES 1000000

struct cfg__ctx {
  struct cfg_file *file;
  const struct cfg_options *opts;
  struct cfg_env penv; /* parser environment (owned copy of opts->env) */
  struct cfg__arena arena;   /* the document tree */
  struct cfg__arena scratch; /* per-task temporaries (merged collectibles), reset per task */
  struct cfg__arena *mem;    /* where node functions allocate: &arena or &scratch */
  size_t scratch_nodes;      /* nodes counted in nnodes that live in scratch */
  size_t nnodes;  /* nodes created so far (budget CFG_MAX_NODES) */
  bool overflow;  /* the node budget was exhausted */
  bool quiet;     /* drop warnings (while fields are evaluated a second time) */
  unsigned next_id; /* ids given to task-like keys so far */
  struct cfg__node *root;
  /* Top-level entries per collectible name, looked up once (see cfg__find_collectible). */
  struct cfg__rootcol {
    const char *name;
    struct cfg__node **v;
    size_t n;
  } rootcol[16];
  size_t nrootcol;
};

/* A parsed task before dependency resolution (task.c -> resolve.c). */
struct cfg__pending {
  struct cfg_task t;
  struct ci_strv depends_on;         /* expanded names */
  struct cfg__node *depends_on_node; /* for positions */
  bool broken;                       /* had errors: kept only so that others may name it */
};

/* Diagnostics (positions are 1-based; line 0 = none). */
void cfg__diag(struct cfg__ctx *c, enum cfg_diag_level level, unsigned line, unsigned col,
               const char *fmt, ...) CI_PRINTF(5, 6);
#define cfg__error(c, line, col, ...) cfg__diag((c), CFG_DIAG_ERROR, (line), (col), __VA_ARGS__)
#define cfg__warn(c, line, col, ...) cfg__diag((c), CFG_DIAG_WARNING, (line), (col), __VA_ARGS__)
/* Report at a node: map entries at their key, other nodes at their value. */
#define cfg__node_error(c, node, ...) cfg__error((c), (node)->line, (node)->col, __VA_ARGS__)
#define cfg__node_warn(c, node, ...) cfg__warn((c), (node)->line, (node)->col, __VA_ARGS__)
#define cfg__value_error(c, node, ...) cfg__error((c), (node)->vline, (node)->vcol, __VA_ARGS__)

/* Nodes. */
struct cfg__node *cfg__node_new(struct cfg__ctx *c, enum cfg__node_kind kind, const char *name);
void cfg__node_append(struct cfg__ctx *c, struct cfg__node *parent, struct cfg__node *kid);
struct cfg__node *cfg__node_copy(struct cfg__ctx *c, const struct cfg__node *n,
                                 struct cfg__node *parent);
struct cfg__node *cfg__node_find(const struct cfg__node *n, const char *name);
const char *cfg__node_kind_name(const struct cfg__node *n); /* "map", "list", "scalar" */
bool cfg__node_is_empty(const struct cfg__node *n);
/* Upstream's MergeFrom (collectible merge), Deduplicate and DeepFindCollectible. */
void cfg__node_merge_from(struct cfg__ctx *c, struct cfg__node *n, const struct cfg__node *other);
void cfg__node_dedup(struct cfg__ctx *c, struct cfg__node *n);
struct cfg__node *cfg__find_collectible(struct cfg__ctx *c, struct cfg__node *n,
                                        const char *name);

/* yaml.c: parse c->file->text into a tree rooted at a map named "root".  Returns NULL on
 * error (reported).  An empty document gives an empty root map. */
struct cfg__node *cfg__yaml_parse(struct cfg__ctx *c);

/* matrix.c: expand every matrix: in the tree.  Returns < 0 on error (reported). */
int cfg__matrix_expand(struct cfg__ctx *c, struct cfg__node *root);

/* task.c: parse the top-level task-like nodes into c->file->tasks. */
void cfg__parse_tasks(struct cfg__ctx *c, struct cfg__node *root);

/* resolve.c: resolve dependencies, add Dockerfile service tasks, compute labels, and move
 * the healthy tasks into c->file->tasks.  Takes ownership of tasks (malloc'd). */
void cfg__resolve_tasks(struct cfg__ctx *c, struct cfg__pending *tasks, size_t n,
                        const struct ci_strv *disabled);

/* Free the contents of a task / instruction (task.c). */
void cfg__task_release(struct cfg_task *t);
void cfg__instr_release(struct cfg_instr *i);

/* Accessors mirroring upstream's (node/accessor.go).  On a type mismatch they report an
 * error at the node and return -1. */
int cfg__get_string(struct cfg__ctx *c, const struct cfg__node *n, const char **out);
int cfg__get_expanded(struct cfg__ctx *c, const struct cfg__node *n, const struct cfg_env *env,
                      char **out);
int cfg__get_script(struct cfg__ctx *c, const struct cfg__node *n, struct ci_strv *out);
int cfg__get_expanded_list(struct cfg__ctx *c, const struct cfg__node *n,
                           const struct cfg_env *env, struct ci_strv *out);
int cfg__get_map_or_list_of_maps(struct cfg__ctx *c, const struct cfg__node *n,
                                 struct cfg_env *out);
int cfg__get_bool(struct cfg__ctx *c, const struct cfg__node *n, const struct cfg_env *env,
                  bool *out);

/* Name derived from a key by a suffix rule: "lint_task" with suffix "task" -> "lint";
 * "task" -> dflt.  Owned. */
char *cfg__name_from_key(const char *key, const char *suffix, const char *dflt);

#endif
