/* config/access.c - typed reads of tree nodes (upstream's node/accessor.go). */
#include "internal.h"
#include "expr.h"

#include <stdlib.h>
#include <string.h>

int
cfg__get_string(struct cfg__ctx *c, const struct cfg__node *n, const char **out)
{
  if (n->kind != CFG_NODE_SCALAR) {
    cfg__node_error(c, n, "'%s' should be a scalar value, found a %s", n->name,
                    cfg__node_kind_name(n));
    return -1;
  }
  *out = n->value;
  return 0;
}

int
cfg__get_expanded(struct cfg__ctx *c, const struct cfg__node *n, const struct cfg_env *env,
                  char **out)
{
  const char *s;
  if (cfg__get_string(c, n, &s) < 0)
    return -1;
  *out = cfg_expand(s, env);
  return 0;
}

/* Scripts: a string (split into lines) or a list of strings (each split into lines). */
int
cfg__get_script(struct cfg__ctx *c, const struct cfg__node *n, struct ci_strv *out)
{
  struct ci_strv lines = CI_STRV_INIT;
  if (n->kind == CFG_NODE_MAP) {
    cfg__node_error(c, n, "'%s' should be a string or a list of strings, found a map", n->name);
    return -1;
  }
  const struct cfg__node *const *items = (const struct cfg__node *const *)n->kids;
  size_t nitems = n->n;
  const struct cfg__node *single[1] = {n};
  if (n->kind == CFG_NODE_SCALAR) {
    items = single;
    nitems = 1;
  }
  for (size_t i = 0; i < nitems; i++) {
    const struct cfg__node *it = items[i];
    if (it->kind == CFG_NODE_SCALAR) {
      const char *s = it->value;
      for (;;) {
        const char *nl = strchr(s, '\n');
        if (!nl) {
          ci_strv_push(&lines, s);
          break;
        }
        ci_strv_push_take(&lines, xstrndup(s, (size_t)(nl - s)));
        s = nl + 1;
      }
    } else if (it->kind == CFG_NODE_MAP) {
      if (cfg__node_find(it, "ps")) {
        cfg__node_error(c, it, "PowerShell script lines ('ps:') are not supported on Linux");
        ci_strv_release(&lines);
        return -1;
      }
      /* Historically accepted: an unquoted "- echo a: b" parses as a map; re-join it. */
      for (size_t k = 0; k < it->n; k++) {
        const struct cfg__node *kv = it->kids[k];
        if (kv->kind != CFG_NODE_SCALAR) {
          cfg__node_error(c, kv, "unsupported script syntax: quote script lines that contain "
                                 "': '");
          ci_strv_release(&lines);
          return -1;
        }
        ci_strv_push_take(&lines, xasprintf("%s: %s", kv->name, kv->value));
      }
    }
    /* Upstream silently ignores nested lists. */
  }
  *out = lines;
  return 0;
}

/* A string or a list of strings, each expanded; an expansion that produces "[a, b]" is
 * split on commas (upstream's GetSliceOfExpandedStrings). */
int
cfg__get_expanded_list(struct cfg__ctx *c, const struct cfg__node *n, const struct cfg_env *env,
                       struct ci_strv *out)
{
  struct ci_strv res = CI_STRV_INIT;
  const struct cfg__node *const *items = (const struct cfg__node *const *)n->kids;
  size_t nitems = n->n;
  const struct cfg__node *single[1] = {n};
  if (n->kind == CFG_NODE_SCALAR) {
    items = single;
    nitems = 1;
  } else if (n->kind == CFG_NODE_MAP) {
    cfg__node_error(c, n, "'%s' should be a string or a list of strings, found a map", n->name);
    return -1;
  }
  for (size_t i = 0; i < nitems; i++) {
    if (items[i]->kind != CFG_NODE_SCALAR) {
      cfg__node_error(c, n, "'%s' list items should be scalars", n->name);
      ci_strv_release(&res);
      return -1;
    }
    const char *raw = items[i]->value;
    char *e = cfg_expand(raw, env);
    size_t el = strlen(e);
    if (strcmp(e, raw) != 0 && el >= 2 && e[0] == '[' && e[el - 1] == ']') {
      e[el - 1] = '\0';
      char *p = e + 1;
      for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
          *comma = '\0';
        char *s = p, *t = p + strlen(p);
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
          s++;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\n' || t[-1] == '\r'))
          t--;
        ci_strv_push_take(&res, xstrndup(s, (size_t)(t - s)));
        if (!comma)
          break;
        p = comma + 1;
      }
      free(e);
    } else {
      ci_strv_push_take(&res, e);
    }
  }
  *out = res;
  return 0;
}

/* Flattened value of an env entry: a scalar, or a list of scalars joined with "\n". */
static int
flattened_value(struct cfg__ctx *c, const struct cfg__node *n, char **out)
{
  if (n->kind == CFG_NODE_SCALAR) {
    *out = xstrdup(n->value);
    return 0;
  }
  if (n->kind == CFG_NODE_SEQ) {
    struct ci_buf b = CI_BUF_INIT;
    for (size_t i = 0; i < n->n; i++) {
      if (n->kids[i]->kind != CFG_NODE_SCALAR) {
        cfg__node_error(c, n->kids[i], "list should only contain scalar values");
        ci_buf_release(&b);
        return -1;
      }
      if (i)
        ci_buf_addc(&b, '\n');
      ci_buf_adds(&b, n->kids[i]->value);
    }
    *out = ci_buf_take(&b);
    return 0;
  }
  cfg__node_error(c, n, "value of '%s' should be a scalar value or a list with scalar values",
                  n->name);
  return -1;
}

static int
string_mapping(struct cfg__ctx *c, const struct cfg__node *n, struct cfg_env *out)
{
  if (n->kind != CFG_NODE_MAP) {
    cfg__node_error(c, n, "expected a map, found a %s", cfg__node_kind_name(n));
    return -1;
  }
  for (size_t i = 0; i < n->n; i++) {
    const struct cfg__node *k = n->kids[i];
    if (k->kind == CFG_NODE_SCALAR) {
      cfg_env_set(out, k->name, k->value);
      continue;
    }
    char *v;
    if (flattened_value(c, k, &v) < 0)
      return -1;
    cfg_env_set(out, k->name, v);
    free(v);
  }
  return 0;
}

/* On failure out may hold part of the entries: the caller's task has failed anyway. */
int
cfg__get_map_or_list_of_maps(struct cfg__ctx *c, const struct cfg__node *n, struct cfg_env *out)
{
  if (n->kind == CFG_NODE_MAP)
    return string_mapping(c, n, out);
  if (n->kind == CFG_NODE_SEQ) {
    for (size_t i = 0; i < n->n; i++)
      if (string_mapping(c, n->kids[i], out) < 0)
        return -1;
    return 0;
  }
  if (cfg__node_is_empty(n))
    return 0; /* "env:" with nothing after it */
  cfg__node_error(c, n, "'%s' should be a map or a list of maps, found a scalar", n->name);
  return -1;
}

int
cfg__get_bool(struct cfg__ctx *c, const struct cfg__node *n, const struct cfg_env *env,
              bool *out)
{
  const char *expr;
  if (cfg__get_string(c, n, &expr) < 0)
    return -1;
  char *msg = NULL;
  if (cfg__bool_eval(expr, env, c->opts ? c->opts->affected_files : NULL, out, &msg) < 0) {
    cfg__value_error(c, n, "cannot evaluate '%s': %s", n->name, msg);
    free(msg);
    return -1;
  }
  return 0;
}

char *
cfg__name_from_key(const char *key, const char *suffix, const char *dflt)
{
  size_t kl = strlen(key), sl = strlen(suffix);
  if (kl < sl || strcmp(key + kl - sl, suffix) != 0 || kl == sl)
    return xstrdup(dflt);
  size_t n = kl - sl;
  if (key[n - 1] == '_')
    n--;
  if (n == 0)
    return xstrdup(dflt);
  return xstrndup(key, n);
}
