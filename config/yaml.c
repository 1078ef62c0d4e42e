/* config/yaml.c - libyaml's event API -> the generic tree.
 *
 * Semantics follow upstream's yaml.v3-based loader (pkg/parser/node/yaml.go): repeated keys
 * are kept, every scalar is a string, null sequence items are dropped, map keys must resolve
 * to strings, aliases are deep copies (recursion detected through ancestor anchors), and
 * merge keys insert the merged map's keys only when absent, except "merge exemptions"
 * (collectible and repeatable task fields), which are always appended.
 */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_NULL "tag:yaml.org,2002:null"
#define TAG_MERGE "tag:yaml.org,2002:merge"

/* Collectible fields of task, pipe and docker_builder, and their repeatable fields. */
static const char *const merge_exemptions[] = {
    "env",         "environment",    "container",       "arm_container", "windows_container",
    "macos_instance", "persistent_worker", "only_if",   "skip",          "allow_failures",
    "timeout_in",  "upload_caches",  "on_success",      "on_failure",    "always",
    "on_timeout",
};

static bool
is_merge_exempt(const char *name)
{
  for (size_t i = 0; i < CI_ARRAY_SIZE(merge_exemptions); i++)
    if (strcmp(name, merge_exemptions[i]) == 0)
      return true;
  return false;
}

/* ---- plain scalar resolution (what yaml.v3 would tag a plain scalar as) ---- */

static bool
is_null_word(const char *v)
{
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
         !strcmp(v, "NULL");
}

static bool
is_bool_word(const char *v)
{
  static const char *const w[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(w); i++)
    if (!strcmp(v, w[i]))
      return true;
  return false;
}

static bool
all_digits(const char *s, size_t n, int base)
{
  if (!n)
    return false;
  for (size_t i = 0; i < n; i++) {
    int ch = (unsigned char)s[i];
    bool ok = base == 16 ? isxdigit(ch) : base == 8 ? (ch >= '0' && ch <= '7')
                                     : base == 2 ? (ch == '0' || ch == '1')
                                                 : isdigit(ch);
    if (!ok)
      return false;
  }
  return true;
}

static bool
is_number(const char *v)
{
  /* Underscores are ignored, as Go's ParseInt with base 0 does. */
  char buf[128];
  size_t n = 0;
  for (const char *p = v; *p && n < sizeof(buf) - 1; p++)
    if (*p != '_')
      buf[n++] = *p;
  if (n == sizeof(buf) - 1)
    return false;
  buf[n] = '\0';
  static const char *const special[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                        "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(special); i++)
    if (!strcmp(v, special[i]))
      return true;
  const char *s = buf;
  if (*s == '+' || *s == '-')
    s++;
  size_t len = strlen(s);
  if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    return all_digits(s + 2, len - 2, 16);
  if (len > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
    return all_digits(s + 2, len - 2, 8);
  if (len > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
    return all_digits(s + 2, len - 2, 2);
  if (all_digits(s, len, 10))
    return true;
  /* Float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
  const char *p = s;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p))
      return false;
    while (isdigit((unsigned char)*p))
      p++;
  } else {
    if (!isdigit((unsigned char)*p))
      return false;
    while (isdigit((unsigned char)*p))
      p++;
    if (*p == '.') {
      p++;
      while (isdigit((unsigned char)*p))
        p++;
    }
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!isdigit((unsigned char)*p))
      return false;
    while (isdigit((unsigned char)*p))
      p++;
  }
  return *p == '\0';
}

static bool
is_timestamp(const char *v)
{
  /* YYYY-M-D, optionally followed by a time part. */
  const char *p = v;
  for (int i = 0; i < 4; i++, p++)
    if (!isdigit((unsigned char)*p))
      return false;
  if (*p++ != '-')
    return false;
  if (!isdigit((unsigned char)*p))
    return false;
  while (isdigit((unsigned char)*p))
    p++;
  if (*p++ != '-')
    return false;
  if (!isdigit((unsigned char)*p))
    return false;
  while (isdigit((unsigned char)*p))
    p++;
  return *p == '\0' || *p == 'T' || *p == 't' || *p == ' ';
}

enum key_kind { KEY_STRING, KEY_MERGE, KEY_OTHER };

static enum key_kind
classify_key(const yaml_event_t *ev)
{
  const char *tag = (const char *)ev->data.scalar.tag;
  const char *v = (const char *)ev->data.scalar.value;
  if (tag && strcmp(tag, "!") != 0) {
    if (!strcmp(tag, TAG_STR))
      return KEY_STRING;
    if (!strcmp(tag, TAG_MERGE))
      return KEY_MERGE;
    return KEY_OTHER;
  }
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return KEY_STRING;
  if (!strcmp(v, "<<"))
    return KEY_MERGE;
  if (is_null_word(v) || is_bool_word(v) || is_number(v) || is_timestamp(v))
    return KEY_OTHER;
  return KEY_STRING;
}

static bool
scalar_is_null(const yaml_event_t *ev)
{
  const char *tag = (const char *)ev->data.scalar.tag;
  if (tag && strcmp(tag, "!") != 0)
    return strcmp(tag, TAG_NULL) == 0;
  return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         is_null_word((const char *)ev->data.scalar.value);
}

/* ---- the builder ---- */

struct frame {
  struct cfg__node *node; /* map or sequence under construction */
  /* maps: the pending key */
  bool have_key;
  enum key_kind key_kind;
  const char *key;
  unsigned kline, kcol;
};

struct anchor {
  const char *name;
  struct cfg__node *node;
};

struct builder {
  struct cfg__ctx *c;
  struct frame *stack;
  size_t depth, alloc;
  struct anchor *anchors;
  size_t nanchors, anchors_alloc;
  struct cfg__node *root; /* the document's top node */
  bool failed;
};

static void
fail(struct builder *b, unsigned line, unsigned col, const char *fmt, const char *arg)
{
  if (!b->failed)
    cfg__error(b->c, line, col, fmt, arg);
  b->failed = true;
}

static struct cfg__node *
anchor_lookup(struct builder *b, const char *name)
{
  for (size_t i = b->nanchors; i-- > 0;)
    if (!strcmp(b->anchors[i].name, name))
      return b->anchors[i].node;
  return NULL;
}

static void
anchor_add(struct builder *b, const char *name, struct cfg__node *node)
{
  CI_GROW(b->anchors, b->anchors_alloc, b->nanchors + 1);
  b->anchors[b->nanchors].name = cfg__arena_strndup(&b->c->arena, name, strlen(name));
  b->anchors[b->nanchors].node = node;
  node->anchor = b->anchors[b->nanchors].name;
  b->nanchors++;
}

/* MergeFromMap: insert `with`'s entries into `map` unless present (or exempt). */
static void
merge_from_map(struct builder *b, struct cfg__node *map, struct cfg__node *with)
{
  for (size_t i = 0; i < with->n; i++) {
    struct cfg__node *k = with->kids[i];
    if (is_merge_exempt(k->name) || !cfg__node_find(map, k->name))
      cfg__node_append(b->c, map, k);
  }
}

/* A merge key's value arrived: apply it to the map in `f`. */
static void
apply_merge(struct builder *b, struct frame *f, struct cfg__node *value, bool from_alias,
            unsigned line, unsigned col)
{
  struct cfg__node *map = f->node;
  if (value->kind == CFG_NODE_MAP) {
    merge_from_map(b, map, value);
  } else if (value->kind == CFG_NODE_SEQ) {
    if (from_alias) {
      /* Upstream's OverwriteWith: the map becomes that list. */
      map->kind = CFG_NODE_SEQ;
      map->n = 0;
      for (size_t i = 0; i < value->n; i++)
        cfg__node_append(b->c, map, value->kids[i]);
      return;
    }
    for (size_t i = 0; i < value->n; i++)
      if (value->kids[i]->kind != CFG_NODE_MAP) {
        fail(b, map->vline, map->vcol, "%s",
             "got a sequence as a merge key's value, but not all of it's entries are mappings "
             "(as required per spec)");
        return;
      }
    for (size_t i = 0; i < value->n; i++)
      merge_from_map(b, map, value->kids[i]);
  } else if (from_alias) {
    fail(b, map->vline, map->vcol, "%s",
         "merge key should either be associated with a mapping or a sequence");
  } else {
    cfg__warn(b->c, line, col, "merge key '<<' with a scalar value is ignored");
  }
}

/* Attach a finished value to the innermost open collection (or make it the root). */
static void
place(struct builder *b, struct cfg__node *value, bool is_null, bool from_alias)
{
  if (!b->depth) {
    b->root = value;
    return;
  }
  struct frame *f = &b->stack[b->depth - 1];
  if (f->node->kind == CFG_NODE_SEQ) {
    if (!is_null)
      cfg__node_append(b->c, f->node, value);
    return;
  }
  /* a map value */
  f->have_key = false;
  if (f->key_kind == KEY_MERGE) {
    apply_merge(b, f, value, from_alias, f->kline, f->kcol);
    return;
  }
  value->name = f->key;
  value->line = f->kline;
  value->col = f->kcol;
  cfg__node_append(b->c, f->node, value);
}

/* For a map awaiting a key, a non-scalar (or alias) key is an error. */
static bool
check_not_key(struct builder *b, const yaml_event_t *ev)
{
  if (!b->depth)
    return true;
  struct frame *f = &b->stack[b->depth - 1];
  if (f->node->kind != CFG_NODE_MAP || f->have_key)
    return true;
  fail(b, ev->start_mark.line + 1, ev->start_mark.column + 1, "%s", "map key is not a string");
  return false;
}

static void
push(struct builder *b, struct cfg__node *n)
{
  CI_GROW(b->stack, b->alloc, b->depth + 1);
  memset(&b->stack[b->depth], 0, sizeof(b->stack[b->depth]));
  b->stack[b->depth++].node = n;
}

/* An alias naming a collection that is still open refers to one of its own ancestors. */
static bool
alias_is_recursive(struct builder *b, const char *name)
{
  for (size_t i = b->depth; i-- > 0;)
    if (b->stack[i].node->anchor && !strcmp(b->stack[i].node->anchor, name))
      return true;
  return false;
}

static void
handle_event(struct builder *b, yaml_event_t *ev)
{
  struct cfg__ctx *c = b->c;
  unsigned line = ev->start_mark.line + 1, col = ev->start_mark.column + 1;

  switch (ev->type) {
  case YAML_SCALAR_EVENT: {
    const char *v = (const char *)ev->data.scalar.value;
    struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
    if (f && f->node->kind == CFG_NODE_MAP && !f->have_key) {
      f->have_key = true;
      f->key_kind = classify_key(ev);
      f->key = cfg__arena_strndup(&c->arena, v, ev->data.scalar.length);
      f->kline = line;
      f->kcol = col;
      if (f->key_kind == KEY_OTHER)
        fail(b, line, col, "%s", "map key is not a string");
      return;
    }
    struct cfg__node *n = cfg__node_new(c, CFG_NODE_SCALAR, "");
    n->value = cfg__arena_strndup(&c->arena, v, ev->data.scalar.length);
    n->line = n->vline = line;
    n->col = n->vcol = col;
    if (ev->data.scalar.anchor)
      anchor_add(b, (const char *)ev->data.scalar.anchor, n);
    place(b, n, scalar_is_null(ev), false);
    return;
  }
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    if (!check_not_key(b, ev))
      return; /* parsing stops at the first structural error */
    if (b->depth >= CFG_MAX_DEPTH) {
      fail(b, line, col, "%s", "document nested too deeply");
      return;
    }
    bool is_map = ev->type == YAML_MAPPING_START_EVENT;
    struct cfg__node *n = cfg__node_new(c, is_map ? CFG_NODE_MAP : CFG_NODE_SEQ, "");
    n->line = n->vline = line;
    n->col = n->vcol = col;
    const yaml_char_t *anchor =
        is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    if (anchor)
      anchor_add(b, (const char *)anchor, n);
    push(b, n);
    return;
  }
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT: {
    if (!b->depth)
      return;
    struct cfg__node *n = b->stack[--b->depth].node;
    for (size_t i = 0; i < n->n; i++)
      if (n->kids[i]->height + 1 > n->height)
        n->height = n->kids[i]->height + 1;
    place(b, n, false, false);
    return;
  }
  case YAML_ALIAS_EVENT: {
    const char *name = (const char *)ev->data.alias.anchor;
    if (!check_not_key(b, ev))
      return;
    struct cfg__node *target = anchor_lookup(b, name);
    if (!target) {
      fail(b, line, col, "unknown anchor '%s' referenced", name);
      return;
    }
    if (alias_is_recursive(b, name)) {
      fail(b, line, col, "recursive alias '%s'", name);
      return;
    }
    if (b->depth + target->height >= 2 * CFG_MAX_DEPTH) {
      fail(b, line, col, "alias '%s' nests the document too deeply", name);
      return;
    }
    struct cfg__node *copy = cfg__node_copy(c, target, NULL);
    copy->line = copy->vline = line;
    copy->col = copy->vcol = col;
    place(b, copy, false, true);
    return;
  }
  default:
    return;
  }
}

struct cfg__node *
cfg__yaml_parse(struct cfg__ctx *c)
{
  struct cfg_file *f = c->file;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    CI_BUG("yaml_parser_initialize failed");
  yaml_parser_set_input_string(&parser, (const unsigned char *)f->text, f->len);

  struct builder b = {.c = c};
  int ndocs = 0;
  bool done = false;
  unsigned extra_line = 0, extra_col = 0;
  while (!done && !b.failed && !c->overflow) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      const yaml_mark_t *m = &parser.problem_mark;
      const char *problem = parser.problem ? parser.problem : "invalid YAML";
      if (parser.context)
        cfg__error(c, m->line + 1, m->column + 1, "%s (%s started at line %zu, column %zu)",
                   problem, parser.context, parser.context_mark.line + 1,
                   parser.context_mark.column + 1);
      else
        cfg__error(c, m->line + 1, m->column + 1, "%s", problem);
      b.failed = true;
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      ndocs++;
      if (ndocs == 2) {
        extra_line = ev.start_mark.line + 1;
        extra_col = ev.start_mark.column + 1;
      }
      break;
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
      break;
    default:
      if (ndocs <= 1)
        handle_event(&b, &ev);
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  free(b.stack);
  free(b.anchors);
  if (b.failed || c->overflow)
    return NULL;
  if (ndocs > 1)
    cfg__warn(c, extra_line, extra_col,
              "only the first YAML document is used; this one and any later are ignored");

  struct cfg__node *root = b.root;
  if (!root || (root->kind == CFG_NODE_SCALAR && !root->anchor && is_null_word(root->value) &&
                !*root->value)) {
    root = cfg__node_new(c, CFG_NODE_MAP, "root");
    root->line = root->vline = 1;
    root->col = root->vcol = 1;
    return root;
  }
  if (root->kind != CFG_NODE_MAP) {
    cfg__error(c, root->vline, root->vcol,
               "YAML document should contain a mapping as its top-level element, but found %s",
               root->kind == CFG_NODE_SEQ ? "sequence" : "scalar");
    return NULL;
  }
  root->name = "root";
  return root;
}
