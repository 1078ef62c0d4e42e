/* config/task.c - task-like top-level nodes -> struct cfg_task.
 *
 * Mirrors upstream's parseable.DefaultParser: "collectible" fields (env, container, only_if,
 * ...) are merged from the task and every ancestor, instance errors are delayed in the hope
 * that another instance matches, collectibles named in the task itself are evaluated again,
 * then ordinary fields run in document order (a non-repeatable field only for its last
 * occurrence), then required fields are checked.  Unknown keys get a warning (upstream is
 * silent).  Errors are reported per task, so one run shows every broken task.
 */
#include "internal.h"
#include "expr.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum tl_kind { TL_TASK, TL_PIPE, TL_BUILDER };

struct instrv {
  struct cfg_instr *v;
  size_t n, alloc;
};

struct tparse {
  struct cfg__ctx *c;
  enum tl_kind kind;
  struct cfg__node *node;
  struct cfg_task *t;
  struct cfg_env fenv_; /* task env merged with the parser env (parser env wins); use fenv() */
  bool fenv_stale;      /* the task env changed since fenv_ was built */
  bool failed;
  struct instrv instrs;
  struct ci_strv depends_on;
  struct cfg__node *depends_on_node;
};

/* A merged view of two sorted environments (b wins on equal keys) whose strings are
 * BORROWED from a and b: free only view->v (view_release), never its entries.  Building
 * it costs one array, not a copy of every string: fields are expanded with it all the
 * time. */
static void
env_view(struct cfg_env *view, const struct cfg_env *a, const struct cfg_env *b)
{
  size_t need = a->n + b->n;
  if (view->alloc < need) {
    free(view->v);
    view->v = xcalloc(need ? need : 1, sizeof(*view->v));
    view->alloc = need;
  }
  size_t i = 0, j = 0, n = 0;
  while (i < a->n || j < b->n) {
    int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->v[i].key, b->v[j].key);
    if (c < 0)
      view->v[n++] = a->v[i++];
    else if (c > 0)
      view->v[n++] = b->v[j++];
    else {
      view->v[n++] = b->v[j++];
      i++;
    }
  }
  view->n = n;
}

static void
view_release(struct cfg_env *view)
{
  free(view->v);
  memset(view, 0, sizeof(*view));
}

/* The task env changed: the view must be rebuilt (on first use: env often changes several
 * times before a field needs it).  Every change to p->t->env must be followed by this. */
static void
refresh_fenv(struct tparse *p, const struct cfg_env *penv)
{
  (void)penv;
  p->fenv_stale = true;
}

/* The environment fields are expanded with: the task's env so far, then the parser's. */
static const struct cfg_env *
fenv(struct tparse *p)
{
  if (p->fenv_stale) {
    env_view(&p->fenv_, &p->t->env, &p->c->penv);
    p->fenv_stale = false;
  }
  return &p->fenv_;
}

/* ---- instruction vectors ---- */

static struct cfg_instr *
instr_push(struct instrv *iv, enum cfg_instr_kind kind, char *name, const struct cfg__node *n)
{
  CI_GROW(iv->v, iv->alloc, iv->n + 1);
  struct cfg_instr *i = &iv->v[iv->n++];
  memset(i, 0, sizeof(*i));
  i->kind = kind;
  i->name = name;
  i->when = CFG_WHEN_ON_SUCCESS;
  i->pipe_step = -1;
  i->pos.line = n->line;
  i->pos.col = n->col;
  return i;
}

void
cfg__instr_release(struct cfg_instr *i)
{
  free(i->name);
  ci_strv_release(&i->script);
  ci_strv_release(&i->folders);
  ci_strv_release(&i->fingerprint_script);
  free(i->fingerprint_key);
  ci_strv_release(&i->populate_script);
  ci_strv_release(&i->paths);
  free(i->type);
  free(i->format);
  free(i->path);
  free(i->variable_name);
  free(i->from_contents);
  free(i->cache_name);
}

static void
instrv_release(struct instrv *iv)
{
  for (size_t i = 0; i < iv->n; i++)
    cfg__instr_release(&iv->v[i]);
  free(iv->v);
  memset(iv, 0, sizeof(*iv));
}

/* ---- generic field tables (upstream's DefaultParser) ---- */

typedef int (*field_fn)(struct tparse *p, struct cfg__node *n, void *data);

enum match { M_EXACT, M_SUFFIX };

struct field {
  const char *name;
  enum match match;
  bool repeatable;
  bool required;
  field_fn fn;
};

static bool
field_matches(const struct field *f, const char *key)
{
  if (f->match == M_EXACT)
    return strcmp(f->name, key) == 0;
  return ci_str_has_suffix(key, f->name);
}

static const struct field *
find_field(const struct field *fields, size_t nfields, const char *key)
{
  for (size_t i = 0; i < nfields; i++)
    if (field_matches(&fields[i], key))
      return &fields[i];
  return NULL;
}

/* Keys that Cirrus CI knows but that have no effect in a local run. */
static const char *const cloud_only_keys[] = {
    "labels",          "required_pr_labels", "auto_cancellation", "execution_lock",
    "trigger_type",    "use_compute_credits", "stateful",         "experimental",
    "retry",           "skip_notifications", "timeout",           "only_if_modified",
    "clone_depth",     "cron",               "allow_failures_if",
};

static bool
is_cloud_only(const char *key)
{
  for (size_t i = 0; i < CI_ARRAY_SIZE(cloud_only_keys); i++)
    if (!strcmp(key, cloud_only_keys[i]))
      return true;
  return false;
}

static void
warn_unknown(struct tparse *p, const struct cfg__node *k, const char *where)
{
  if (is_cloud_only(k->name)) {
    cfg__node_warn(p->c, k, "'%s' only has an effect on Cirrus CI; it is ignored here", k->name);
    return;
  }
  if (ci_str_has_suffix(k->name, "_instance") || ci_str_has_suffix(k->name, "_container")) {
    cfg__node_warn(p->c, k, "'%s' is not an execution environment that can run here; it is "
                            "ignored",
                   k->name);
    return;
  }
  cfg__node_warn(p->c, k, "unknown field '%s' in %s is ignored", k->name, where);
}

/* Run the ordinary fields of a map node.  `known` lists extra keys that are handled elsewhere
 * (collectibles) and must not be reported as unknown. */
static int
parse_fields(struct tparse *p, struct cfg__node *n, const struct field *fields, size_t nfields,
             const char *const *known, size_t nknown, const char *where, void *data)
{
  if (n->kind != CFG_NODE_MAP) {
    if (!cfg__node_is_empty(n))
      cfg__node_warn(p->c, n, "'%s' should be a map, found a %s", n->name,
                     cfg__node_kind_name(n));
  }
  bool *seen = nfields ? xcalloc(nfields, sizeof(bool)) : NULL;
  int ret = 0;
  for (size_t i = 0; i < n->n; i++) {
    struct cfg__node *k = n->kids[i];
    const struct field *f = n->kind == CFG_NODE_MAP ? find_field(fields, nfields, k->name) : NULL;
    if (!f) {
      bool is_known = false;
      for (size_t j = 0; j < nknown && !is_known; j++)
        is_known = strcmp(known[j], k->name) == 0;
      if (!is_known && n->kind == CFG_NODE_MAP)
        warn_unknown(p, k, where);
      continue;
    }
    if (!f->repeatable) {
      bool later = false;
      for (size_t j = i + 1; j < n->n && !later; j++)
        later = strcmp(n->kids[j]->name, k->name) == 0;
      if (later)
        continue;
    }
    seen[f - fields] = true;
    if (f->fn(p, k, data) < 0) {
      ret = -1;
      break;
    }
  }
  if (ret == 0)
    for (size_t i = 0; i < nfields; i++)
      if (fields[i].required && !seen[i]) {
        cfg__node_error(p->c, n, "required field '%s' was not set in %s", fields[i].name, where);
        ret = -1;
        break;
      }
  free(seen);
  return ret;
}

/* ---- scalar helpers ---- */

static int
get_float(struct tparse *p, struct cfg__node *n, double *out)
{
  cleanup_free char *s = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v) || v < 0) {
    cfg__value_error(p->c, n, "invalid %s value '%s': expected a non-negative number", n->name,
                     s);
    return -1;
  }
  *out = v;
  return 0;
}

static int
get_megabytes(struct tparse *p, struct cfg__node *n, unsigned *out)
{
  cleanup_free char *s = NULL;
  cleanup_free char *msg = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  if (cfg_parse_megabytes(s, out, &msg) < 0) {
    cfg__value_error(p->c, n, "invalid %s value '%s': %s", n->name, s, msg);
    return -1;
  }
  return 0;
}

static int
set_expanded(struct tparse *p, struct cfg__node *n, char **slot)
{
  char *s;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  free(*slot);
  *slot = s;
  return 0;
}

/* ---- instructions ---- */

struct instr_ctx {
  struct instrv *iv;           /* where instructions go */
  const struct instrv *before; /* instructions defined earlier (for upload_caches), or NULL */
  enum cfg_when when;
};

static int
f_script(struct tparse *p, struct cfg__node *n, void *data, bool background)
{
  struct instr_ctx *ic = data;
  struct ci_strv lines;
  if (cfg__get_script(p->c, n, &lines) < 0)
    return -1;
  char *name = cfg__name_from_key(n->name, background ? "background_script" : "script", "main");
  if (!background && strcmp(name, "clone") == 0 && p->kind != TL_PIPE && ic->when == CFG_WHEN_ON_SUCCESS) {
    cfg__node_warn(p->c, n, "clone_script is ignored: the project is copied into the working "
                            "directory instead");
    free(name);
    ci_strv_release(&lines);
    return 0;
  }
  struct cfg_instr *i = instr_push(ic->iv, background ? CFG_INSTR_BACKGROUND_SCRIPT : CFG_INSTR_SCRIPT,
                                   name, n);
  i->when = ic->when;
  i->script = lines;
  return 0;
}

static int
f_script_fg(struct tparse *p, struct cfg__node *n, void *data)
{
  return f_script(p, n, data, false);
}

static int
f_script_bg(struct tparse *p, struct cfg__node *n, void *data)
{
  return f_script(p, n, data, true);
}

/* cache */

struct cache_ctx {
  struct cfg_instr *i;
  char *folder;
  bool have_folders;
  bool reupload_explicit;
};

static int
fc_name(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  return set_expanded(p, n, &i->name);
}

static int
fc_folder(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  return set_expanded(p, n, &cc->folder);
}

static int
fc_folders(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  struct ci_strv v;
  if (cfg__get_expanded_list(p->c, n, fenv(p), &v) < 0)
    return -1;
  ci_strv_release(&cc->i->folders);
  cc->i->folders = v;
  cc->have_folders = v.n > 0;
  return 0;
}

static int
fc_fingerprint_script(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  struct ci_strv v;
  if (cfg__get_script(p->c, n, &v) < 0)
    return -1;
  ci_strv_release(&cc->i->fingerprint_script);
  cc->i->fingerprint_script = v;
  if (!cc->reupload_explicit)
    cc->i->reupload_on_changes = false;
  return 0;
}

static int
fc_fingerprint_key(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  if (set_expanded(p, n, &cc->i->fingerprint_key) < 0)
    return -1;
  if (!cc->reupload_explicit)
    cc->i->reupload_on_changes = false;
  return 0;
}

static int
fc_populate(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  struct ci_strv v;
  if (cfg__get_script(p->c, n, &v) < 0)
    return -1;
  ci_strv_release(&cc->i->populate_script);
  cc->i->populate_script = v;
  return 0;
}

static int
fc_reupload(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  if (cfg__get_bool(p->c, n, fenv(p), &cc->i->reupload_on_changes) < 0)
    return -1;
  cc->reupload_explicit = true;
  return 0;
}

static int
fc_optimistic(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cache_ctx *cc = data;
  return cfg__get_bool(p->c, n, fenv(p), &cc->i->optimistically_restore_on_miss);
}

static const struct field cache_fields[] = {
    {"name", M_EXACT, false, false, fc_name},
    {"folder", M_EXACT, false, false, fc_folder},
    {"folders", M_EXACT, false, false, fc_folders},
    {"fingerprint_script", M_EXACT, false, false, fc_fingerprint_script},
    {"fingerprint_key", M_EXACT, false, false, fc_fingerprint_key},
    {"populate_script", M_EXACT, false, false, fc_populate},
    {"reupload_on_changes", M_EXACT, false, false, fc_reupload},
    {"optimistically_restore_on_miss", M_EXACT, false, false, fc_optimistic},
};

static void
fix_folder(struct ci_strv *out, const char *folder)
{
  const char *s = folder, *e = folder + strlen(folder);
  while (s < e && isspace((unsigned char)*s))
    s++;
  while (e > s && isspace((unsigned char)e[-1]))
    e--;
  if (e - s >= 2 && s[0] == '~' && s[1] == '/')
    ci_strv_push_take(out, xasprintf("$HOME/%.*s", (int)(e - s - 2), s + 2));
  else
    ci_strv_push_take(out, xstrndup(s, (size_t)(e - s)));
}

static int
f_cache(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx *ic = data;
  struct cfg_instr *i = instr_push(ic->iv, CFG_INSTR_CACHE, NULL, n);
  i->when = ic->when;
  i->reupload_on_changes = true;
  struct cache_ctx cc = {.i = i};
  /* The field callbacks take a struct cache_ctx, whose first member is the instruction
   * pointer (fc_name reads it as such). */
  int ret = parse_fields(p, n, cache_fields, CI_ARRAY_SIZE(cache_fields), NULL, 0, "cache", &cc);
  i = cc.i;
  if (ret == 0) {
    if (!i->name)
      i->name = cfg__name_from_key(n->name, "cache", "main");
    bool have_folder = cc.folder && *cc.folder;
    if (!have_folder && !cc.have_folders) {
      cfg__node_error(p->c, n, "please specify the folders to cache, with either folder: or "
                               "folders:");
      ret = -1;
    } else if (have_folder && cc.have_folders) {
      cfg__node_error(p->c, n, "please specify either folder: or folders: but not both, to "
                               "avoid ambiguity");
      ret = -1;
    } else {
      struct ci_strv raw = i->folders;
      struct ci_strv fixed = CI_STRV_INIT;
      if (have_folder)
        fix_folder(&fixed, cc.folder);
      else
        for (size_t k = 0; k < raw.n; k++)
          fix_folder(&fixed, raw.v[k]);
      ci_strv_release(&i->folders);
      i->folders = fixed;
    }
    if (ret == 0 && i->fingerprint_script.n && i->fingerprint_key) {
      cfg__node_error(p->c, n, "please either use fingerprint_script: or fingerprint_key, since "
                               "otherwise there's ambiguity about which one to prefer for cache "
                               "key calculation");
      ret = -1;
    }
  }
  free(cc.folder);
  if (ret < 0 && !i->name)
    i->name = xstrdup("");
  return ret;
}

/* artifacts */

static int
fa_paths(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  struct ci_strv v;
  if (cfg__get_expanded_list(p->c, n, fenv(p), &v) < 0)
    return -1;
  ci_strv_release(&i->paths);
  i->paths = v;
  return 0;
}

static int
fa_path(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  char *s;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  ci_strv_release(&i->paths);
  ci_strv_push_take(&i->paths, s);
  return 0;
}

static int
fa_type(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  return set_expanded(p, n, &i->type);
}

static int
fa_format(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  return set_expanded(p, n, &i->format);
}

static const struct field artifacts_fields[] = {
    {"name", M_EXACT, false, false, fc_name},   {"paths", M_EXACT, false, false, fa_paths},
    {"path", M_EXACT, false, false, fa_path},   {"type", M_EXACT, false, false, fa_type},
    {"format", M_EXACT, false, false, fa_format},
};

static int
f_artifacts(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx *ic = data;
  struct cfg_instr *i = instr_push(ic->iv, CFG_INSTR_ARTIFACTS, NULL, n);
  i->when = ic->when;
  int ret = parse_fields(p, n, artifacts_fields, CI_ARRAY_SIZE(artifacts_fields), NULL, 0,
                         "artifacts", &i);
  if (!i->name)
    i->name = cfg__name_from_key(n->name, "artifacts", "binary");
  return ret;
}

/* file */

static int
ff_path(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  return set_expanded(p, n, &i->path);
}

static int
ff_variable(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  const char *s;
  if (cfg__get_string(p->c, n, &s) < 0)
    return -1;
  if (*s == '$')
    s++;
  free(i->variable_name);
  free(i->from_contents);
  i->from_contents = NULL;
  i->variable_name = xstrdup(s);
  return 0;
}

static int
ff_contents(struct tparse *p, struct cfg__node *n, void *data)
{
  struct cfg_instr *i = *(struct cfg_instr **)data;
  if (set_expanded(p, n, &i->from_contents) < 0)
    return -1;
  free(i->variable_name);
  i->variable_name = NULL;
  return 0;
}

static const struct field file_fields[] = {
    {"name", M_EXACT, false, false, fc_name},
    {"path", M_EXACT, false, true, ff_path},
    {"variable_name", M_EXACT, false, false, ff_variable},
    {"from_contents", M_EXACT, false, false, ff_contents},
};

static int
f_file(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx *ic = data;
  struct cfg_instr *i = instr_push(ic->iv, CFG_INSTR_FILE, NULL, n);
  i->when = ic->when;
  int ret = parse_fields(p, n, file_fields, CI_ARRAY_SIZE(file_fields), NULL, 0,
                         "file instruction", &i);
  if (!i->name)
    i->name = cfg__name_from_key(n->name, "file", "file");
  if (ret == 0 && !i->variable_name && !i->from_contents) {
    cfg__node_error(p->c, n, "either \"variable_name\" or \"from_contents\" field should be set");
    ret = -1;
  }
  return ret;
}

/* upload_caches */

static bool
instr_named(const struct instrv *a, const struct instrv *b, const char *name)
{
  const struct instrv *lists[2] = {a, b};
  for (int l = 0; l < 2; l++)
    for (size_t k = 0; lists[l] && k < lists[l]->n; k++)
      if (lists[l]->v[k].name && !strcmp(lists[l]->v[k].name, name))
        return true;
  return false;
}

static int
f_upload_caches(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx *ic = data;
  struct ci_strv names;
  if (cfg__get_expanded_list(p->c, n, fenv(p), &names) < 0)
    return -1;
  int ret = 0;
  for (size_t k = 0; k < names.n && ret == 0; k++) {
    if (!instr_named(ic->before, ic->iv, names.v[k])) {
      cfg__node_error(p->c, n, "no cache with name \"%s\" is defined", names.v[k]);
      ret = -1;
      break;
    }
    char *uname = xasprintf("Upload '%s' cache", names.v[k]);
    if (instr_named(ic->before, ic->iv, uname)) {
      cfg__node_error(p->c, n, "the cache with name \"%s\" is already scheduled to be uploaded "
                               "in one of the previous upload_caches instructions",
                      uname);
      free(uname);
      ret = -1;
      break;
    }
    struct cfg_instr *i = instr_push(ic->iv, CFG_INSTR_UPLOAD_CACHE, uname, n);
    i->when = ic->when;
    i->cache_name = xstrdup(names.v[k]);
  }
  ci_strv_release(&names);
  return ret;
}

/* execution-behaviour blocks: on_success, on_failure, always, on_timeout */

static const struct field behavior_fields[] = {
    {"background_script", M_SUFFIX, false, false, f_script_bg},
    {"script", M_SUFFIX, false, false, f_script_fg},
    {"cache", M_SUFFIX, false, false, f_cache},
    {"upload_caches", M_EXACT, true, false, f_upload_caches},
    {"artifacts", M_SUFFIX, false, false, f_artifacts},
    {"file", M_SUFFIX, false, false, f_file},
};

static int
f_behavior(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx *outer = data;
  struct instr_ctx ic = *outer;
  if (!strcmp(n->name, "on_failure"))
    ic.when = CFG_WHEN_ON_FAILURE;
  else if (!strcmp(n->name, "always"))
    ic.when = CFG_WHEN_ALWAYS;
  else if (!strcmp(n->name, "on_timeout"))
    ic.when = CFG_WHEN_ON_TIMEOUT;
  else
    ic.when = CFG_WHEN_ON_SUCCESS;
  /* Instructions defined so far in the enclosing list count as "before" for upload_caches. */
  char *where = xasprintf("'%s' block", n->name);
  int ret = parse_fields(p, n, behavior_fields, CI_ARRAY_SIZE(behavior_fields), NULL, 0, where,
                         &ic);
  free(where);
  return ret;
}

/* ---- task-level ordinary fields ---- */

static int
ft_name(struct tparse *p, struct cfg__node *n, void *data)
{
  return set_expanded(p, n, &p->t->name);
}

static int
ft_alias(struct tparse *p, struct cfg__node *n, void *data)
{
  return set_expanded(p, n, &p->t->alias);
}

static int
ft_depends_on(struct tparse *p, struct cfg__node *n, void *data)
{
  struct ci_strv v;
  if (cfg__get_expanded_list(p->c, n, fenv(p), &v) < 0)
    return -1;
  ci_strv_release(&p->depends_on);
  p->depends_on = v;
  p->depends_on_node = n;
  return 0;
}

static int
ft_instr(struct tparse *p, struct cfg__node *n, void *data)
{
  /* Dispatch task-level instruction keys through the behaviour table with ON_SUCCESS. */
  struct instr_ctx ic = {.iv = &p->instrs, .before = NULL, .when = CFG_WHEN_ON_SUCCESS};
  const struct field *f = find_field(behavior_fields, CI_ARRAY_SIZE(behavior_fields), n->name);
  return f->fn(p, n, &ic);
}

static int
ft_behavior(struct tparse *p, struct cfg__node *n, void *data)
{
  struct instr_ctx ic = {.iv = &p->instrs, .before = NULL, .when = CFG_WHEN_ON_SUCCESS};
  return f_behavior(p, n, &ic);
}

static int
ft_noop(struct tparse *p, struct cfg__node *n, void *data)
{
  return 0;
}

static int
ft_platform(struct tparse *p, struct cfg__node *n, void *data)
{
  cleanup_free char *s = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  for (char *q = s; *q; q++)
    *q = (char)tolower((unsigned char)*q);
  if (strcmp(s, "linux") && strcmp(s, "windows") && strcmp(s, "darwin") && strcmp(s, "freebsd")) {
    cfg__value_error(p->c, n, "unknown platform name: \"%s\"", s);
    return -1;
  }
  cfg_env_set(&p->t->env, "CIRRUS_OS", s);
  refresh_fenv(p, &p->c->penv);
  return 0;
}

static const struct field task_fields[] = {
    {"name", M_EXACT, false, false, ft_name},
    {"background_script", M_SUFFIX, false, false, ft_instr},
    {"script", M_SUFFIX, false, false, ft_instr},
    {"cache", M_SUFFIX, false, false, ft_instr},
    {"upload_caches", M_EXACT, true, false, ft_instr},
    {"artifacts", M_SUFFIX, false, false, ft_instr},
    {"file", M_SUFFIX, false, false, ft_instr},
    {"on_success", M_EXACT, true, false, ft_behavior},
    {"on_failure", M_EXACT, true, false, ft_behavior},
    {"always", M_EXACT, true, false, ft_behavior},
    {"on_timeout", M_EXACT, true, false, ft_behavior},
    {"alias", M_EXACT, false, false, ft_alias},
    {"depends_on", M_EXACT, false, false, ft_depends_on},
};

static const struct field builder_fields[] = {
    {"name", M_EXACT, false, false, ft_name},
    {"background_script", M_SUFFIX, false, false, ft_instr},
    {"script", M_SUFFIX, false, false, ft_instr},
    {"cache", M_SUFFIX, false, false, ft_instr},
    {"upload_caches", M_EXACT, true, false, ft_instr},
    {"artifacts", M_SUFFIX, false, false, ft_instr},
    {"file", M_SUFFIX, false, false, ft_instr},
    {"on_success", M_EXACT, true, false, ft_behavior},
    {"on_failure", M_EXACT, true, false, ft_behavior},
    {"always", M_EXACT, true, false, ft_behavior},
    {"on_timeout", M_EXACT, true, false, ft_behavior},
    {"alias", M_EXACT, false, false, ft_alias},
    {"depends_on", M_EXACT, false, false, ft_depends_on},
    {"use_static_ip", M_EXACT, false, false, ft_noop},
    {"platform", M_EXACT, false, false, ft_platform},
    {"os_version", M_EXACT, false, false, ft_noop},
};

/* ---- pipes ---- */

static int
fr_cpu(struct tparse *p, struct cfg__node *n, void *data)
{
  return get_float(p, n, &p->t->container.cpu);
}

static int
fr_memory(struct tparse *p, struct cfg__node *n, void *data)
{
  return get_megabytes(p, n, &p->t->container.memory_mb);
}

static const struct field resources_fields[] = {
    {"cpu", M_EXACT, false, false, fr_cpu},
    {"memory", M_EXACT, false, false, fr_memory},
};

static int
fp_resources(struct tparse *p, struct cfg__node *n, void *data)
{
  return parse_fields(p, n, resources_fields, CI_ARRAY_SIZE(resources_fields), NULL, 0,
                      "pipe resources", NULL);
}

struct step_ctx {
  struct instr_ctx ic;
  char *image;
};

static int
fs_image(struct tparse *p, struct cfg__node *n, void *data)
{
  struct step_ctx *sc = data;
  return set_expanded(p, n, &sc->image);
}

static int
fs_instr(struct tparse *p, struct cfg__node *n, void *data)
{
  struct step_ctx *sc = data;
  const struct field *f = find_field(behavior_fields, CI_ARRAY_SIZE(behavior_fields), n->name);
  /* Pipe steps have no background scripts: "background_script" is a script named
   * "background" there, as upstream parses it. */
  if (f->fn == f_script_bg)
    f = &behavior_fields[1];
  return f->fn(p, n, &sc->ic);
}

static int
fs_behavior(struct tparse *p, struct cfg__node *n, void *data)
{
  struct step_ctx *sc = data;
  return f_behavior(p, n, &sc->ic);
}

static const struct field step_fields[] = {
    {"image", M_EXACT, false, true, fs_image},
    {"script", M_SUFFIX, false, false, fs_instr},
    {"cache", M_SUFFIX, false, false, fs_instr},
    {"upload_caches", M_EXACT, true, false, fs_instr},
    {"artifacts", M_SUFFIX, false, false, fs_instr},
    {"file", M_SUFFIX, false, false, fs_instr},
    {"on_success", M_EXACT, true, false, fs_behavior},
    {"on_failure", M_EXACT, true, false, fs_behavior},
    {"always", M_EXACT, true, false, fs_behavior},
    {"on_timeout", M_EXACT, true, false, fs_behavior},
};

static int
fp_steps(struct tparse *p, struct cfg__node *n, void *data)
{
  if (n->kind != CFG_NODE_SEQ) {
    cfg__node_error(p->c, n, "steps should be a list");
    return -1;
  }
  for (size_t k = 0; k < n->n; k++) {
    struct cfg__node *sn = n->kids[k];
    struct instrv step = {0};
    struct step_ctx sc = {.ic = {.iv = &step, .before = &p->instrs, .when = CFG_WHEN_ON_SUCCESS}};
    char *where = xasprintf("pipe step %zu", k + 1);
    int ret = parse_fields(p, sn, step_fields, CI_ARRAY_SIZE(step_fields), NULL, 0, where, &sc);
    free(where);
    if (ret == 0 && step.n == 0) {
      cfg__node_error(p->c, sn, "pipe steps defined without scripts inside them");
      ret = -1;
    }
    if (ret < 0) {
      instrv_release(&step);
      free(sc.image);
      return -1;
    }
    struct cfg_task *t = p->t;
    t->pipe_steps = xreallocarray(t->pipe_steps, t->npipe_steps + 1, sizeof(*t->pipe_steps));
    t->pipe_steps[t->npipe_steps].image = sc.image;
    t->pipe_steps[t->npipe_steps].pos.line = sn->line;
    t->pipe_steps[t->npipe_steps].pos.col = sn->col;
    for (size_t s = 0; s < step.n; s++) {
      step.v[s].pipe_step = (int)t->npipe_steps;
      CI_GROW(p->instrs.v, p->instrs.alloc, p->instrs.n + 1);
      p->instrs.v[p->instrs.n++] = step.v[s];
    }
    free(step.v);
    t->npipe_steps++;
  }
  return 0;
}

static const struct field pipe_fields[] = {
    {"name", M_EXACT, false, false, ft_name},
    {"alias", M_EXACT, false, false, ft_alias},
    {"resources", M_EXACT, false, false, fp_resources},
    {"steps", M_EXACT, false, true, fp_steps},
    {"depends_on", M_EXACT, false, false, ft_depends_on},
};

/* ---- containers ---- */

struct container_ctx {
  struct cfg_container *ct;
  struct cfg_additional_container *ac; /* while parsing one additional container */
  bool have_port, have_ports;
};

static int
fct_image(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  free(cc->ct->dockerfile);
  cc->ct->dockerfile = NULL; /* image: resets dockerfile: */
  return set_expanded(p, n, &cc->ct->image);
}

static int
fct_dockerfile(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return set_expanded(p, n, &cc->ct->dockerfile);
}

static int
fct_docker_arguments(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  struct cfg_env raw = CFG_ENV_INIT;
  if (cfg__get_map_or_list_of_maps(p->c, n, &raw) < 0)
    return -1;
  cfg_env_release(&cc->ct->docker_arguments);
  for (size_t k = 0; k < raw.n; k++) {
    char *v = cfg_expand(raw.v[k].value, fenv(p));
    cfg_env_set(&cc->ct->docker_arguments, raw.v[k].key, v);
    free(v);
  }
  cfg_env_release(&raw);
  return 0;
}

static int
fct_cpu(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return get_float(p, n, &cc->ct->cpu);
}

static int
fct_memory(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return get_megabytes(p, n, &cc->ct->memory_mb);
}

/* additional containers */

static int
fac_name(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  cleanup_free char *name = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &name) < 0)
    return -1;
  if (!strcmp(name, "main")) {
    cfg__value_error(p->c, n, "use of reserved name '%s' for an additional container, please "
                              "choose another one",
                     name);
    return -1;
  }
  for (const unsigned char *q = (const unsigned char *)name; *q; q++)
    if (!isalpha(*q) && *q < 0x80) {
      cfg__value_error(p->c, n, "additional container name '%s' is invalid, please only use "
                                "letters without special symbols",
                       name);
      return -1;
    }
  free(cc->ac->name);
  cc->ac->name = steal_pointer(&name);
  return 0;
}

static int
fac_env(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return cfg__get_map_or_list_of_maps(p->c, n, &cc->ac->env);
}

static int
fac_image(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return set_expanded(p, n, &cc->ac->image);
}

static int
parse_port(struct tparse *p, struct cfg__node *n, const char *s, struct cfg_port *out)
{
  unsigned long v[2];
  int nv = 0;
  const char *q = s;
  for (;;) {
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*q))
      goto bad;
    v[nv] = strtoul(q, &end, 10);
    if (errno || v[nv] > 0xffffffffUL)
      goto bad;
    nv++;
    if (*end == '\0')
      break;
    if (*end != ':' || nv == 2)
      goto bad;
    q = end + 1;
  }
  if (nv == 2) {
    out->host = (unsigned)v[0];
    out->container = (unsigned)v[1];
  } else {
    out->host = 0;
    out->container = (unsigned)v[0];
  }
  if (out->container == 0 || out->container > 65535 || out->host > 65535)
    goto bad;
  return 0;
bad:
  cfg__value_error(p->c, n, "failed to parse port: '%s' is not PORT or HOST_PORT:PORT", s);
  return -1;
}

static void
push_port(struct cfg_additional_container *ac, struct cfg_port port)
{
  ac->ports = xreallocarray(ac->ports, ac->nports + 1, sizeof(*ac->ports));
  ac->ports[ac->nports++] = port;
}

static int
fac_port(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  cleanup_free char *s = NULL;
  struct cfg_port port;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0 || parse_port(p, n, s, &port) < 0)
    return -1;
  push_port(cc->ac, port);
  cc->have_port = true;
  return 0;
}

static int
fac_ports(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  struct ci_strv v;
  if (cfg__get_expanded_list(p->c, n, fenv(p), &v) < 0)
    return -1;
  int ret = 0;
  for (size_t k = 0; k < v.n && ret == 0; k++) {
    struct cfg_port port;
    ret = parse_port(p, n, v.v[k], &port);
    if (ret == 0)
      push_port(cc->ac, port);
  }
  ci_strv_release(&v);
  cc->have_ports = true;
  return ret;
}

static int
fac_cpu(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return get_float(p, n, &cc->ac->cpu);
}

static int
fac_memory(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return get_megabytes(p, n, &cc->ac->memory_mb);
}

/* google/shlex-style splitting: whitespace, '...', "..." with \\ escapes, \x, # comments. */
static int
shell_split(const char *s, struct ci_strv *out, const char **err)
{
  struct ci_buf w = CI_BUF_INIT;
  bool in_word = false;
  const char *q = s;
  while (*q) {
    char ch = *q;
    if (!in_word && isspace((unsigned char)ch)) {
      q++;
      continue;
    }
    if (!in_word && ch == '#') {
      while (*q && *q != '\n')
        q++;
      continue;
    }
    if (in_word && isspace((unsigned char)ch)) {
      ci_strv_push_take(out, ci_buf_take(&w));
      in_word = false;
      q++;
      continue;
    }
    in_word = true;
    if (ch == '\\') {
      if (!q[1]) {
        *err = "EOF found after escape character";
        ci_buf_release(&w);
        return -1;
      }
      ci_buf_addc(&w, q[1]);
      q += 2;
    } else if (ch == '\'') {
      const char *e = strchr(q + 1, '\'');
      if (!e) {
        *err = "EOF found when expecting closing quote";
        ci_buf_release(&w);
        return -1;
      }
      ci_buf_add(&w, q + 1, (size_t)(e - q - 1));
      q = e + 1;
    } else if (ch == '"') {
      q++;
      for (;;) {
        if (!*q) {
          *err = "EOF found when expecting closing quote";
          ci_buf_release(&w);
          return -1;
        }
        if (*q == '"') {
          q++;
          break;
        }
        if (*q == '\\' && q[1]) {
          q++;
        }
        ci_buf_addc(&w, *q++);
      }
    } else {
      ci_buf_addc(&w, ch);
      q++;
    }
  }
  if (in_word)
    ci_strv_push_take(out, ci_buf_take(&w));
  ci_buf_release(&w);
  return 0;
}

static int
fac_command(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  cleanup_free char *s = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  struct ci_strv v = CI_STRV_INIT;
  const char *err = NULL;
  if (shell_split(s, &v, &err) < 0) {
    cfg__value_error(p->c, n, "failed to tokenize command: %s", err);
    ci_strv_release(&v);
    return -1;
  }
  ci_strv_release(&cc->ac->command);
  cc->ac->command = v;
  return 0;
}

static int
fac_readiness(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  struct ci_strv v = CI_STRV_INIT;
  if (n->kind == CFG_NODE_SCALAR) {
    ci_strv_push(&v, n->value);
  } else if (n->kind == CFG_NODE_SEQ) {
    for (size_t k = 0; k < n->n; k++) {
      if (n->kids[k]->kind != CFG_NODE_SCALAR) {
        cfg__node_error(p->c, n, "'%s' list items should be scalars", n->name);
        ci_strv_release(&v);
        return -1;
      }
      ci_strv_push(&v, n->kids[k]->value);
    }
  } else {
    cfg__node_error(p->c, n, "'%s' should be a string or a list of strings", n->name);
    return -1;
  }
  ci_strv_release(&cc->ac->readiness_command);
  cc->ac->readiness_command = v;
  return 0;
}

static int
fac_privileged(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  return cfg__get_bool(p->c, n, fenv(p), &cc->ac->privileged);
}

static const struct field additional_fields[] = {
    {"name", M_EXACT, false, false, fac_name},
    {"environment", M_EXACT, false, false, fac_env},
    {"env", M_EXACT, false, false, fac_env},
    {"image", M_EXACT, false, true, fac_image},
    {"port", M_EXACT, false, false, fac_port},
    {"ports", M_EXACT, false, false, fac_ports},
    {"cpu", M_EXACT, false, false, fac_cpu},
    {"memory", M_EXACT, false, false, fac_memory},
    {"command", M_EXACT, false, false, fac_command},
    {"readiness_command", M_EXACT, false, false, fac_readiness},
    {"privileged", M_EXACT, false, false, fac_privileged},
};

static void
additional_release(struct cfg_additional_container *ac)
{
  free(ac->name);
  free(ac->image);
  free(ac->ports);
  cfg_env_release(&ac->env);
  ci_strv_release(&ac->command);
  ci_strv_release(&ac->readiness_command);
}

static int
fct_additional(struct tparse *p, struct cfg__node *n, void *data)
{
  struct container_ctx *cc = data;
  struct cfg_container *ct = cc->ct;
  for (size_t k = 0; k < ct->nadditional; k++)
    additional_release(&ct->additional[k]);
  free(ct->additional);
  ct->additional = NULL;
  ct->nadditional = 0;
  if (n->kind != CFG_NODE_SEQ && !cfg__node_is_empty(n)) {
    cfg__node_error(p->c, n, "additional_containers should be a list");
    return -1;
  }
  for (size_t k = 0; k < n->n; k++) {
    struct cfg__node *an = n->kids[k];
    struct cfg_additional_container ac = {0};
    ac.pos.line = an->line;
    ac.pos.col = an->col;
    struct container_ctx acc = {.ct = ct, .ac = &ac};
    int ret = parse_fields(p, an, additional_fields, CI_ARRAY_SIZE(additional_fields), NULL, 0,
                           "additional container", &acc);
    if (ret == 0 && cfg__node_find(an, "port") && cfg__node_find(an, "ports")) {
      cfg__node_error(p->c, an, "please only use \"ports\" field");
      ret = -1;
    }
    if (ret < 0) {
      additional_release(&ac);
      return -1;
    }
    if (ac.cpu == 0)
      ac.cpu = 0.5;
    if (ac.memory_mb == 0)
      ac.memory_mb = 512;
    if (!ac.name)
      ac.name = xstrdup("");
    for (size_t j = 0; j < ct->nadditional; j++)
      if (*ac.name && !strcmp(ct->additional[j].name, ac.name)) {
        cfg__node_error(p->c, an, "two additional containers are named '%s'", ac.name);
        additional_release(&ac);
        return -1;
      }
    ct->additional = xreallocarray(ct->additional, ct->nadditional + 1, sizeof(*ct->additional));
    ct->additional[ct->nadditional++] = ac;
  }
  return 0;
}

static const struct field container_fields[] = {
    {"image", M_EXACT, false, false, fct_image},
    {"dockerfile", M_EXACT, false, false, fct_dockerfile},
    {"docker_arguments", M_EXACT, false, false, fct_docker_arguments},
    {"cpu", M_EXACT, false, false, fct_cpu},
    {"memory", M_EXACT, false, false, fct_memory},
    {"additional_containers", M_EXACT, false, false, fct_additional},
    {"kvm", M_EXACT, false, false, ft_noop},
    {"registry_config", M_EXACT, false, false, ft_noop},
    {"use_in_memory_disk", M_EXACT, false, false, ft_noop},
    {"use_static_ip", M_EXACT, false, false, ft_noop},
};

static void
container_release(struct cfg_container *ct)
{
  free(ct->image);
  free(ct->dockerfile);
  free(ct->dockerfile_hash);
  cfg_env_release(&ct->docker_arguments);
  for (size_t k = 0; k < ct->nadditional; k++)
    additional_release(&ct->additional[k]);
  free(ct->additional);
  memset(ct, 0, sizeof(*ct));
}

/* ---- collectible fields ---- */



static int
fcol_env(struct tparse *p, struct cfg__node *n, void *data)
{
  if (cfg__get_map_or_list_of_maps(p->c, n, &p->t->env) < 0)
    return -1;
  refresh_fenv(p, &p->c->penv);
  return 0;
}

static int
fcol_container(struct tparse *p, struct cfg__node *n, void *data)
{
  bool arm = !strcmp(n->name, "arm_container");
  struct cfg_container ct = {0};
  ct.pos.line = n->line;
  ct.pos.col = n->col;
  struct container_ctx cc = {.ct = &ct};
  if (parse_fields(p, n, container_fields, CI_ARRAY_SIZE(container_fields), NULL, 0,
                   arm ? "arm_container" : "container", &cc) < 0) {
    container_release(&ct);
    return -1;
  }
  if (ct.cpu == 0)
    ct.cpu = 2;
  if (ct.memory_mb == 0)
    ct.memory_mb = 4096;
  if (!ct.dockerfile)
    cfg_env_release(&ct.docker_arguments);
  ct.arch = arm ? "arm64" : "amd64";
  container_release(&p->t->container);
  p->t->container = ct;
  p->t->instance = CFG_INSTANCE_CONTAINER;
  p->t->instance_key = arm ? "arm_container" : "container";
  cfg_env_set(&p->t->env, "CIRRUS_OS", "linux");
  refresh_fenv(p, &p->c->penv);
  return 0;
}

static int
fcol_unsupported(struct tparse *p, struct cfg__node *n, void *data)
{
  container_release(&p->t->container);
  p->t->instance = CFG_INSTANCE_UNSUPPORTED;
  if (!strcmp(n->name, "windows_container")) {
    p->t->instance_key = "windows_container";
    cfg_env_set(&p->t->env, "CIRRUS_OS", "windows");
  } else if (!strcmp(n->name, "macos_instance")) {
    p->t->instance_key = "macos_instance";
    cfg_env_set(&p->t->env, "CIRRUS_OS", "darwin");
  } else {
    p->t->instance_key = "persistent_worker";
    struct cfg__node *iso = cfg__node_find(n, "isolation");
    if (iso && cfg__node_find(iso, "tart"))
      cfg_env_set(&p->t->env, "CIRRUS_OS", "darwin");
    else
      cfg_env_unset(&p->t->env, "CIRRUS_OS");
  }
  refresh_fenv(p, &p->c->penv);
  return 0;
}

static int
fcol_skip(struct tparse *p, struct cfg__node *n, void *data)
{
  return cfg__get_bool(p->c, n, fenv(p), &p->t->skip);
}

static int
fcol_allow_failures(struct tparse *p, struct cfg__node *n, void *data)
{
  return cfg__get_bool(p->c, n, fenv(p), &p->t->allow_failures);
}

static int
fcol_timeout(struct tparse *p, struct cfg__node *n, void *data)
{
  cleanup_free char *s = NULL;
  cleanup_free char *msg = NULL;
  if (cfg__get_expanded(p->c, n, fenv(p), &s) < 0)
    return -1;
  if (cfg_parse_seconds(s, &p->t->timeout_seconds, &msg) < 0) {
    cfg__value_error(p->c, n, "invalid timeout_in '%s': %s", s, msg);
    return -1;
  }
  return 0;
}

static int
fcol_only_if(struct tparse *p, struct cfg__node *n, void *data)
{
  const char *s;
  if (cfg__get_string(p->c, n, &s) < 0)
    return -1;
  free(p->t->only_if);
  p->t->only_if = xstrdup(s);
  *(struct cfg__node **)data = n;
  return 0;
}

struct collectible {
  const char *name;
  bool instance;
  field_fn fn;
};

static const struct collectible task_collectibles[] = {
    {"environment", false, fcol_env},
    {"env", false, fcol_env},
    {"container", true, fcol_container},
    {"arm_container", true, fcol_container},
    {"windows_container", true, fcol_unsupported},
    {"macos_instance", true, fcol_unsupported},
    {"persistent_worker", true, fcol_unsupported},
    {"skip", false, fcol_skip},
    {"allow_failures", false, fcol_allow_failures},
    {"timeout_in", false, fcol_timeout},
    {"only_if", false, fcol_only_if},
};

static const struct collectible plain_collectibles[] = {
    {"environment", false, fcol_env},       {"env", false, fcol_env},
    {"skip", false, fcol_skip},             {"allow_failures", false, fcol_allow_failures},
    {"timeout_in", false, fcol_timeout},    {"only_if", false, fcol_only_if},
};

static const char *const all_collectible_names[] = {
    "environment", "env",  "container",      "arm_container", "windows_container",
    "macos_instance", "persistent_worker", "skip", "allow_failures", "timeout_in", "only_if",
};

static bool
is_collectible_name(const char *name)
{
  for (size_t i = 0; i < CI_ARRAY_SIZE(all_collectible_names); i++)
    if (!strcmp(name, all_collectible_names[i]))
      return true;
  return false;
}

static int
eval_collectible(struct tparse *p, const struct collectible *col, bool *matched, void *data)
{
  struct cfg__node *v = cfg__find_collectible(p->c, p->node, col->name);
  *matched = v != NULL;
  if (!v)
    return 0;
  return col->fn(p, v, data);
}

static int
parse_collectibles(struct tparse *p, const struct collectible *cols, size_t ncols,
                   struct cfg__node **only_if_node)
{
  bool instance_matched = false;
  bool delayed = false;
  size_t errors_before = p->c->file->nerrors;
  /* Errors of instance fields are delayed: if another instance matches, they are dropped. */
  size_t ndiags_mark = p->c->file->ndiags;
  for (size_t i = 0; i < ncols; i++) {
    bool matched;
    if (eval_collectible(p, &cols[i], &matched, only_if_node) < 0) {
      if (cols[i].instance) {
        delayed = true;
        continue;
      }
      return -1;
    }
    if (cols[i].instance && matched)
      instance_matched = true;
  }
  if (delayed) {
    if (!instance_matched)
      return -1;
    /* Another instance matched: drop the delayed instance errors (keep warnings). */
    struct cfg_file *f = p->c->file;
    size_t w = ndiags_mark;
    for (size_t r = ndiags_mark; r < f->ndiags; r++) {
      if (f->diags[r].level == CFG_DIAG_ERROR) {
        free(f->diags[r].msg);
        continue;
      }
      f->diags[w++] = f->diags[r];
    }
    f->ndiags = w;
    f->nerrors = (unsigned)errors_before;
  }
  /* Collectibles named in the task itself are evaluated again, in document order (so the
   * last instance key of the task wins).  Their warnings were already reported. */
  p->c->quiet = true;
  int ret = 0;
  for (size_t k = 0; k < p->node->n && ret == 0; k++) {
    for (size_t i = 0; i < ncols; i++) {
      if (strcmp(cols[i].name, p->node->kids[k]->name) != 0)
        continue;
      bool matched;
      ret = eval_collectible(p, &cols[i], &matched, only_if_node);
      break;
    }
  }
  p->c->quiet = false;
  return ret;
}

/* ---- the task ---- */

static const char *const instr_kind_names[] = {"script",    "background script", "cache",
                                               "artifacts", "file",              "upload cache"};

static int
check_duplicate_instructions(struct cfg__ctx *c, const struct cfg_task *t)
{
  for (size_t i = 0; i < t->ninstrs; i++)
    for (size_t j = 0; j < i; j++) {
      const struct cfg_instr *a = &t->instrs[j], *b = &t->instrs[i];
      if (strcmp(a->name, b->name) != 0)
        continue;
      if (a->kind == b->kind)
        cfg__error(c, b->pos.line, b->pos.col,
                   "task '%s' has two %s instructions with an identical name '%s'", t->name,
                   instr_kind_names[a->kind], b->name);
      else
        cfg__error(c, b->pos.line, b->pos.col,
                   "task '%s' has %s and %s instructions with an identical name '%s'", t->name,
                   instr_kind_names[a->kind], instr_kind_names[b->kind], b->name);
      return -1;
    }
  return 0;
}

static void
gen_upload_caches(struct tparse *p)
{
  for (size_t i = 0; i < p->instrs.n; i++)
    if (p->instrs.v[i].kind == CFG_INSTR_UPLOAD_CACHE)
      return;
  size_t n = p->instrs.n;
  for (size_t i = 0; i < n; i++) {
    if (p->instrs.v[i].kind != CFG_INSTR_CACHE)
      continue;
    struct cfg_instr *cache = &p->instrs.v[i];
    char *uname = xasprintf("Upload '%s' cache", cache->name);
    struct ci_pos pos = cache->pos;
    enum cfg_when when = cache->when;
    int step = cache->pipe_step;
    char *cname = xstrdup(cache->name);
    CI_GROW(p->instrs.v, p->instrs.alloc, p->instrs.n + 1);
    struct cfg_instr *u = &p->instrs.v[p->instrs.n++];
    memset(u, 0, sizeof(*u));
    u->kind = CFG_INSTR_UPLOAD_CACHE;
    u->name = uname;
    u->pos = pos;
    u->when = when;
    u->pipe_step = step;
    u->cache_name = cname;
  }
}

void
cfg__task_release(struct cfg_task *t)
{
  free(t->name);
  free(t->fallback_name);
  free(t->alias);
  ci_strv_release(&t->labels);
  free(t->depends_on);
  free(t->only_if);
  container_release(&t->container);
  for (size_t i = 0; i < t->npipe_steps; i++)
    free(t->pipe_steps[i].image);
  free(t->pipe_steps);
  cfg_env_release(&t->env);
  for (size_t i = 0; i < t->ninstrs; i++)
    cfg__instr_release(&t->instrs[i]);
  free(t->instrs);
  memset(t, 0, sizeof(*t));
}

/* Parse one task-like node.  Returns 0 and fills *t (t->name set), or -1 (errors reported;
 * *t still holds whatever was parsed, for dependency bookkeeping). */
static int
parse_task(struct cfg__ctx *c, struct cfg__node *node, enum tl_kind kind, struct cfg_task *t,
           struct ci_strv *depends_on, struct cfg__node **depends_on_node,
           struct cfg__node **only_if_node)
{
  struct tparse p = {.c = c, .kind = kind, .node = node, .t = t};
  t->timeout_seconds = 3600;
  t->instance = CFG_INSTANCE_NONE;
  t->pos.line = node->line;
  t->pos.col = node->col;
  if (kind != TL_TASK)
    cfg_env_set(&t->env, "CIRRUS_OS", "linux");
  refresh_fenv(&p, &c->penv);

  const char *where = kind == TL_PIPE ? "pipe" : kind == TL_BUILDER ? "docker_builder" : "task";
  int ret;
  if (kind == TL_TASK)
    ret = parse_collectibles(&p, task_collectibles, CI_ARRAY_SIZE(task_collectibles),
                             only_if_node);
  else
    ret = parse_collectibles(&p, plain_collectibles, CI_ARRAY_SIZE(plain_collectibles),
                             only_if_node);
  if (ret == 0) {
    const struct field *fields = kind == TL_TASK   ? task_fields
                                 : kind == TL_PIPE ? pipe_fields
                                                   : builder_fields;
    size_t nfields = kind == TL_TASK   ? CI_ARRAY_SIZE(task_fields)
                     : kind == TL_PIPE ? CI_ARRAY_SIZE(pipe_fields)
                                       : CI_ARRAY_SIZE(builder_fields);
    /* Everything an ancestor could contribute is "known" at task level. */
    ret = parse_fields(&p, node, fields, nfields, all_collectible_names,
                       CI_ARRAY_SIZE(all_collectible_names), where, NULL);
  }
  if (kind == TL_PIPE) {
    t->instance = CFG_INSTANCE_PIPE;
    t->instance_key = "pipe";
    if (t->container.cpu == 0)
      t->container.cpu = 2;
    if (t->container.memory_mb == 0)
      t->container.memory_mb = 4096;
    t->container.arch = "amd64";
  } else if (kind == TL_BUILDER) {
    t->instance = CFG_INSTANCE_UNSUPPORTED;
    t->instance_key = "docker_builder";
  }
  if (ret == 0) {
    gen_upload_caches(&p);
    if (!t->name || !*t->name) {
      free(t->name);
      t->name = NULL; /* the caller sets the fallback name */
    }
  }
  t->instrs = p.instrs.v;
  t->ninstrs = p.instrs.n;
  *depends_on = p.depends_on;
  *depends_on_node = p.depends_on_node;
  view_release(&p.fenv_);
  return ret;
}

/* ---- top level ---- */

static void
scratch_reset(struct cfg__ctx *c)
{
  cfg__arena_release(&c->scratch);
  c->nnodes -= c->scratch_nodes;
  c->scratch_nodes = 0;
}

void
cfg__parse_tasks(struct cfg__ctx *c, struct cfg__node *root)
{
  struct cfg__pending *tasks = NULL;
  size_t n = 0, alloc = 0;
  struct ci_strv disabled = CI_STRV_INIT;

  for (size_t i = 0; i < root->n && !c->overflow; i++) {
    struct cfg__node *item = root->kids[i];
    const char *key = item->name;
    if (ci_str_has_prefix(key, "task_"))
      cfg__node_warn(c, item, "you've probably meant %s_task", key + strlen("task_"));
    enum tl_kind kind;
    const char *suffix;
    if (ci_str_has_suffix(key, "task")) {
      kind = TL_TASK;
      suffix = "task";
    } else if (ci_str_has_suffix(key, "pipe")) {
      kind = TL_PIPE;
      suffix = "pipe";
    } else if (ci_str_has_suffix(key, "docker_builder")) {
      kind = TL_BUILDER;
      suffix = "docker_builder";
    } else {
      if (!is_collectible_name(key) && !item->anchor && !ci_str_has_prefix(key, "task_"))
        cfg__node_warn(c, item, "unknown top-level key '%s' is ignored", key);
      continue;
    }
    CI_GROW(tasks, alloc, n + 1);
    struct cfg__pending *pt = &tasks[n];
    memset(pt, 0, sizeof(*pt));
    struct cfg__node *only_if_node = NULL;
    unsigned errors_before = c->file->nerrors;
    /* Merged collectibles are temporaries of one task: they live in scratch, which is
     * emptied here, before the next task (only_if_node below points into it). */
    scratch_reset(c);
    c->mem = &c->scratch;
    int ret = parse_task(c, item, kind, &pt->t, &pt->depends_on, &pt->depends_on_node,
                         &only_if_node);
    c->mem = &c->arena;
    pt->t.id = c->next_id++;
    pt->t.fallback_name = cfg__name_from_key(key, suffix, "main");
    if (!pt->t.name)
      pt->t.name = xstrdup(pt->t.fallback_name);
    if (ret < 0 || c->file->nerrors != errors_before) {
      pt->broken = true;
      n++;
      continue;
    }
    if (check_duplicate_instructions(c, &pt->t) < 0) {
      pt->broken = true;
      n++;
      continue;
    }
    if (pt->t.instance == CFG_INSTANCE_NONE)
      cfg__node_warn(c, item, "task '%s' has no container; it will be skipped (give it a "
                              "container: with an image)",
                     pt->t.name);
    else if (pt->t.instance == CFG_INSTANCE_CONTAINER && !pt->t.container.image &&
             !pt->t.container.dockerfile)
      cfg__node_warn(c, item, "the container of task '%s' has neither an image nor a "
                              "dockerfile",
                     pt->t.name);
    /* only_if: false removes the task; its name and alias are remembered. */
    if (pt->t.only_if) {
      /* Upstream: Merge(task env, Merge({CIRRUS_TASK_NAME}, parser env)). */
      struct cfg_kv name_kv = {(char *)"CIRRUS_TASK_NAME", pt->t.name};
      struct cfg_env name_env = {&name_kv, 1, 1};
      struct cfg_env v1 = CFG_ENV_INIT, env = CFG_ENV_INIT;
      env_view(&v1, &pt->t.env, &name_env);
      env_view(&env, &v1, &c->penv);
      bool enabled = true;
      char *msg = NULL;
      int r = cfg__bool_eval(pt->t.only_if, &env, c->opts ? c->opts->affected_files : NULL,
                             &enabled, &msg);
      view_release(&v1);
      view_release(&env);
      if (r < 0) {
        unsigned line = only_if_node ? only_if_node->vline : item->line;
        unsigned col = only_if_node ? only_if_node->vcol : item->col;
        cfg__error(c, line, col, "cannot evaluate 'only_if' of task '%s': %s", pt->t.name, msg);
        free(msg);
        pt->broken = true;
        n++;
        continue;
      }
      if (!enabled) {
        ci_strv_push(&disabled, pt->t.name);
        if (pt->t.alias)
          ci_strv_push(&disabled, pt->t.alias);
        cfg__task_release(&pt->t);
        ci_strv_release(&pt->depends_on);
        continue;
      }
    }
    n++;
  }
  scratch_reset(c);
  cfg__resolve_tasks(c, tasks, n, &disabled);
  ci_strv_release(&disabled);
}
