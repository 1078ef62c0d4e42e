/* config/resolve.c - after every task is parsed: dependencies by name or alias, cycles,
 * Dockerfile service tasks, unique labels; then the healthy tasks move into the file.
 * (upstream: parser.go resolveDependenciesShallow, validate.go validateDependenciesDeep,
 * dockerfile.go, labels.go.) */
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- dependencies ---- */

static int
cmp_unsigned(const void *a, const void *b)
{
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return x < y ? -1 : x > y;
}

static void
dep_pos(const struct cfg__pending *pt, size_t i, unsigned *line, unsigned *col)
{
  const struct cfg__node *n = pt->depends_on_node;
  if (!n) {
    *line = pt->t.pos.line;
    *col = pt->t.pos.col;
  } else if (n->kind == CFG_NODE_SEQ && n->n == pt->depends_on.n) {
    *line = n->kids[i]->vline;
    *col = n->kids[i]->vcol;
  } else {
    *line = n->vline;
    *col = n->vcol;
  }
}

/* Name and alias -> task ids, sorted for binary search. */
struct name_ref {
  const char *name;
  unsigned id;
};

static int
cmp_name_ref(const void *a, const void *b)
{
  const struct name_ref *x = a, *y = b;
  int r = strcmp(x->name, y->name);
  return r ? r : (x->id < y->id ? -1 : x->id > y->id);
}

static bool
resolve_shallow(struct cfg__ctx *c, struct cfg__pending *tasks, size_t n,
                const struct ci_strv *disabled)
{
  struct name_ref *refs = xcalloc(2 * n + 1, sizeof(*refs));
  size_t nrefs = 0;
  for (size_t j = 0; j < n; j++) {
    refs[nrefs++] = (struct name_ref){tasks[j].t.name, tasks[j].t.id};
    if (tasks[j].t.alias && strcmp(tasks[j].t.alias, tasks[j].t.name) != 0)
      refs[nrefs++] = (struct name_ref){tasks[j].t.alias, tasks[j].t.id};
  }
  qsort(refs, nrefs, sizeof(*refs), cmp_name_ref);
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    struct cfg__pending *pt = &tasks[i];
    if (pt->broken)
      continue;
    unsigned *ids = NULL;
    size_t nids = 0, alloc = 0;
    for (size_t d = 0; d < pt->depends_on.n; d++) {
      const char *dep = pt->depends_on.v[d];
      /* first entry with this name */
      size_t lo = 0, hi = nrefs;
      while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(refs[mid].name, dep) < 0)
          lo = mid + 1;
        else
          hi = mid;
      }
      bool found = false;
      for (size_t k = lo; k < nrefs && !strcmp(refs[k].name, dep); k++) {
        CI_GROW(ids, alloc, nids + 1);
        ids[nids++] = refs[k].id;
        found = true;
      }
      if (found)
        continue;
      unsigned line, col;
      dep_pos(pt, d, &line, &col);
      if (ci_strv_contains(disabled, dep)) {
        cfg__warn(c, line, col,
                  "task '%s' depends on task '%s', which only_if disabled; the dependency is "
                  "dropped",
                  pt->t.name, dep);
        continue;
      }
      bool fallback = false;
      for (size_t j = 0; j < n && !fallback; j++)
        fallback = !strcmp(tasks[j].t.fallback_name, dep);
      if (fallback)
        cfg__error(c, line, col,
                   "task '%s' depends on task '%s', which name was overridden by a name: field "
                   "inside of that task",
                   pt->t.name, dep);
      else
        cfg__error(c, line, col, "there's no task '%s', but task '%s' depends on it", dep,
                   pt->t.name);
      ok = false;
    }
    if (nids) {
      qsort(ids, nids, sizeof(*ids), cmp_unsigned);
      size_t w = 0;
      for (size_t k = 0; k < nids; k++)
        if (!w || ids[w - 1] != ids[k])
          ids[w++] = ids[k];
      nids = w;
    }
    pt->t.depends_on = ids;
    pt->t.ndepends_on = nids;
  }
  free(refs);
  return ok;
}

/* Tasks that can never run because of a cycle (upstream's validateDependenciesDeep), found
 * with Kahn's algorithm in O(tasks + edges). */
static void
check_cycles(struct cfg__ctx *c, struct cfg__pending *tasks, size_t n)
{
  unsigned maxid = 0;
  for (size_t i = 0; i < n; i++)
    if (tasks[i].t.id > maxid)
      maxid = tasks[i].t.id;
  size_t nid = (size_t)maxid + 1;
  long *index = xcalloc(nid, sizeof(long)); /* id -> task index + 1 */
  for (size_t i = 0; i < n; i++)
    index[tasks[i].t.id] = (long)i + 1;
  /* Reverse edges: for each task, the tasks that wait for it (CSR layout). */
  size_t *indeg = xcalloc(n ? n : 1, sizeof(size_t));
  size_t *start = xcalloc(n + 1, sizeof(size_t));
  for (size_t i = 0; i < n; i++) {
    if (tasks[i].broken)
      continue;
    for (size_t d = 0; d < tasks[i].t.ndepends_on; d++) {
      long j = index[tasks[i].t.depends_on[d]] - 1;
      if (j < 0 || tasks[j].broken)
        continue; /* broken tasks count as satisfied: their own errors were reported */
      indeg[i]++;
      start[j + 1]++;
    }
  }
  for (size_t i = 0; i < n; i++)
    start[i + 1] += start[i];
  size_t *fill = xcalloc(n ? n : 1, sizeof(size_t));
  size_t *waiters = xcalloc(start[n] ? start[n] : 1, sizeof(size_t));
  for (size_t i = 0; i < n; i++) {
    if (tasks[i].broken)
      continue;
    for (size_t d = 0; d < tasks[i].t.ndepends_on; d++) {
      long j = index[tasks[i].t.depends_on[d]] - 1;
      if (j < 0 || tasks[j].broken)
        continue;
      waiters[start[j] + fill[j]++] = i;
    }
  }
  size_t *queue = xcalloc(n ? n : 1, sizeof(size_t));
  size_t head = 0, tail = 0;
  bool *done = xcalloc(n ? n : 1, sizeof(bool));
  for (size_t i = 0; i < n; i++)
    if (indeg[i] == 0)
      queue[tail++] = i;
  while (head < tail) {
    size_t i = queue[head++];
    done[i] = true;
    for (size_t k = start[i]; k < start[i + 1]; k++)
      if (--indeg[waiters[k]] == 0)
        queue[tail++] = waiters[k];
  }
  struct ci_buf names = CI_BUF_INIT;
  const struct cfg__pending *first = NULL;
  for (size_t i = 0; i < n; i++)
    if (!done[i]) {
      if (!first)
        first = &tasks[i];
      else
        ci_buf_adds(&names, ", ");
      ci_buf_adds(&names, tasks[i].t.name);
    }
  if (first) {
    unsigned line, col;
    dep_pos(first, 0, &line, &col);
    cfg__error(c, line, col, "error in dependencies between tasks: %s (a dependency cycle)",
               ci_buf_str(&names));
  }
  ci_buf_release(&names);
  free(index);
  free(indeg);
  free(start);
  free(fill);
  free(waiters);
  free(queue);
  free(done);
}

/* ---- Dockerfile hashing (dockerfile.go) ---- */

struct hasher {
  EVP_MD_CTX *md5, *sha;
};

static void
hash_update(struct hasher *h, const void *data, size_t len, bool both)
{
  if (both)
    EVP_DigestUpdate(h->md5, data, len);
  EVP_DigestUpdate(h->sha, data, len);
}

static char *
hex_digest(EVP_MD_CTX *ctx)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  char *hex = xmalloc(len * 2 + 1);
  for (unsigned i = 0; i < len; i++)
    sprintf(hex + 2 * i, "%02x", md[i]);
  return hex;
}

/* Substitute $VAR / ${VAR} from args (Dockerfile ARG values). */
static char *
df_subst(const char *s, const struct cfg_env *args)
{
  struct ci_buf b = CI_BUF_INIT;
  for (const char *p = s; *p;) {
    if (*p != '$') {
      ci_buf_addc(&b, *p++);
      continue;
    }
    const char *q = p + 1;
    bool brace = *q == '{';
    if (brace)
      q++;
    const char *start = q;
    while (isalnum((unsigned char)*q) || *q == '_')
      q++;
    if (q == start || (brace && *q != '}')) {
      ci_buf_addc(&b, *p++);
      continue;
    }
    char *name = xstrndup(start, (size_t)(q - start));
    const char *v = cfg_env_get(args, name);
    free(name);
    if (v)
      ci_buf_adds(&b, v);
    p = brace ? q + 1 : q;
  }
  return ci_buf_take(&b);
}

static char *
clean_path(const char *p)
{
  while (*p == '/')
    p++;
  while (p[0] == '.' && p[1] == '/')
    p += 2;
  size_t l = strlen(p);
  while (l > 1 && p[l - 1] == '/')
    l--;
  if (l == 0)
    return xstrdup(".");
  return xstrndup(p, l);
}

/* Local sources of COPY/ADD instructions (buildkit's followpaths, approximated: flags and
 * --from= stages are skipped, URLs too, ARG defaults and build arguments substituted). */
static void
dockerfile_sources(const char *text, const struct cfg_env *build_args, struct ci_strv *out)
{
  struct cfg_env args = CFG_ENV_INIT;
  cfg_env_merge(&args, build_args);
  /* Join continuation lines. */
  struct ci_buf joined = CI_BUF_INIT;
  for (const char *p = text; *p; p++) {
    if (*p == '\\' && (p[1] == '\n' || (p[1] == '\r' && p[2] == '\n'))) {
      p += p[1] == '\r' ? 2 : 1;
      continue;
    }
    ci_buf_addc(&joined, *p);
  }
  char *save = NULL;
  char *buf = ci_buf_take(&joined);
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    while (isspace((unsigned char)*line))
      line++;
    if (!*line || *line == '#')
      continue;
    char *sp = line;
    while (*sp && !isspace((unsigned char)*sp))
      sp++;
    size_t kwlen = (size_t)(sp - line);
    bool is_copy = kwlen == 4 && !strncasecmp(line, "COPY", 4);
    bool is_add = kwlen == 3 && !strncasecmp(line, "ADD", 3);
    bool is_arg = kwlen == 3 && !strncasecmp(line, "ARG", 3);
    char *rest = sp;
    while (isspace((unsigned char)*rest))
      rest++;
    if (is_arg) {
      char *eq = strchr(rest, '=');
      char *end = rest + strcspn(rest, " \t\r");
      *end = '\0';
      if (eq && eq < end) {
        *eq = '\0';
        if (!cfg_env_get(build_args, rest)) {
          char *v = eq + 1;
          size_t vl = strlen(v);
          if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
          }
          cfg_env_set(&args, rest, v);
        }
      }
      continue;
    }
    if (!is_copy && !is_add)
      continue;
    char *subst = df_subst(rest, &args);
    struct ci_strv words = CI_STRV_INIT;
    char *r = subst;
    while (isspace((unsigned char)*r))
      r++;
    if (*r == '[') {
      /* JSON form: ["src", ..., "dest"] */
      json_error_t jerr;
      json_t *arr = json_loads(r, 0, &jerr);
      if (json_is_array(arr)) {
        size_t k;
        json_t *v;
        json_array_foreach(arr, k, v) if (json_is_string(v)) ci_strv_push(&words, json_string_value(v));
      }
      json_decref(arr);
    } else {
      char *wsave = NULL;
      for (char *w = strtok_r(r, " \t\r", &wsave); w; w = strtok_r(NULL, " \t\r", &wsave))
        ci_strv_push(&words, w);
    }
    free(subst);
    bool from_stage = false;
    size_t first = 0;
    while (first < words.n && ci_str_has_prefix(words.v[first], "--")) {
      if (ci_str_has_prefix(words.v[first], "--from="))
        from_stage = true;
      first++;
    }
    if (!from_stage && words.n >= first + 2)
      for (size_t k = first; k + 1 < words.n; k++) {
        const char *src = words.v[k];
        if (is_add && (strstr(src, "://") || ci_str_has_prefix(src, "git@")))
          continue;
        ci_strv_push_take(out, clean_path(src));
      }
    ci_strv_release(&words);
  }
  free(buf);
  cfg_env_release(&args);
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hash the contents of every file at or below path (breadth first, names sorted). */
static bool
hash_tree(struct hasher *h, const char *root, const char *path, struct cfg__ctx *c,
          const struct ci_pos *pos)
{
  bool any = false;
  struct ci_strv todo = CI_STRV_INIT;
  ci_strv_push(&todo, path);
  for (size_t i = 0; i < todo.n; i++) {
    char *full = xasprintf("%s/%s", root, todo.v[i]);
    struct stat st;
    if (stat(full, &st) < 0) {
      cfg__warn(c, pos->line, pos->col,
                "failed to retrieve file \"%s\" referenced in ADD/COPY instruction: %s",
                todo.v[i], strerror(errno));
      free(full);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      DIR *d = opendir(full);
      struct ci_strv names = CI_STRV_INIT;
      struct dirent *de;
      while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
          ci_strv_push(&names, de->d_name);
      if (d)
        closedir(d);
      if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), cmp_str);
      for (size_t k = 0; k < names.n; k++)
        ci_strv_push_take(&todo, strcmp(todo.v[i], ".") ? xasprintf("%s/%s", todo.v[i], names.v[k])
                                                         : xstrdup(names.v[k]));
      ci_strv_release(&names);
    } else if (S_ISREG(st.st_mode)) {
      char *data = NULL;
      size_t len = 0;
      struct ci_error *err = NULL;
      if (ci_read_file(full, (size_t)1 << 31, &data, &len, &err) == 0) {
        hash_update(h, data, len, false);
        any = true;
        free(data);
      } else {
        cfg__warn(c, pos->line, pos->col, "%s", err->msg);
        ci_error_free(&err);
      }
    }
    free(full);
  }
  ci_strv_release(&todo);
  return any;
}

static char *
dockerfile_hash(struct cfg__ctx *c, struct cfg_task *t)
{
  const struct cfg_container *ct = &t->container;
  const char *root = c->opts && c->opts->project_dir ? c->opts->project_dir : ".";
  char *path = ct->dockerfile[0] == '/' ? xstrdup(ct->dockerfile)
                                         : xasprintf("%s/%s", root, ct->dockerfile);
  char *text = NULL;
  size_t len = 0;
  struct ci_error *err = NULL;
  int r = ci_read_file(path, 16 << 20, &text, &len, &err);
  free(path);
  if (r < 0) {
    cfg__error(c, ct->pos.line, ct->pos.col, "failed to retrieve \"%s\": %s", ct->dockerfile,
               r == -ENOENT ? "file does not exist" : err->msg);
    ci_error_free(&err);
    return NULL;
  }
  struct hasher h = {EVP_MD_CTX_new(), EVP_MD_CTX_new()};
  EVP_DigestInit_ex(h.md5, EVP_md5(), NULL);
  EVP_DigestInit_ex(h.sha, EVP_sha256(), NULL);
  hash_update(&h, text, len, true);
  /* Build arguments as sorted "keyvalue" strings joined by ", ". */
  struct ci_strv kv = CI_STRV_INIT;
  for (size_t i = 0; i < ct->docker_arguments.n; i++)
    ci_strv_push_take(&kv, xasprintf("%s%s", ct->docker_arguments.v[i].key,
                                     ct->docker_arguments.v[i].value));
  if (kv.n)
    qsort(kv.v, kv.n, sizeof(*kv.v), cmp_str);
  for (size_t i = 0; i < kv.n; i++) {
    if (i)
      hash_update(&h, ", ", 2, true);
    hash_update(&h, kv.v[i], strlen(kv.v[i]), true);
  }
  ci_strv_release(&kv);
  const char *arch = cfg_env_get(&t->env, "CIRRUS_ARCH");
  if (arch && *arch && strcmp(arch, "amd64") != 0)
    hash_update(&h, arch, strlen(arch), true);
  struct ci_strv sources = CI_STRV_INIT;
  dockerfile_sources(text, &ct->docker_arguments, &sources);
  free(text);
  const char *context = cfg_env_get(&t->env, "CIRRUS_DOCKER_CONTEXT");
  bool any = false;
  for (size_t i = 0; i < sources.n; i++) {
    char *p = context && *context ? xasprintf("%s/%s", context, sources.v[i])
                                  : xstrdup(sources.v[i]);
    any |= hash_tree(&h, root, p, c, &ct->pos);
    free(p);
  }
  ci_strv_release(&sources);
  char *md5 = hex_digest(h.md5), *sha = hex_digest(h.sha);
  EVP_MD_CTX_free(h.md5);
  EVP_MD_CTX_free(h.sha);
  if (any) {
    free(md5);
    return sha;
  }
  free(sha);
  return md5;
}

static char *
image_from_template(const struct cfg__ctx *c, const char *hash)
{
  const char *tmpl = c->opts && c->opts->dockerfile_image_template
                         ? c->opts->dockerfile_image_template
                         : "gcr.io/cirrus-ci-community/%s:latest";
  struct ci_buf b = CI_BUF_INIT;
  for (const char *p = tmpl; *p; p++) {
    if (p[0] == '%' && p[1] == 's') {
      ci_buf_adds(&b, hash);
      p++;
    } else {
      ci_buf_addc(&b, *p);
    }
  }
  return ci_buf_take(&b);
}

/* Add one "Prebuild <dockerfile>[ k=v...]" task per distinct hash, after all other tasks. */
static void
add_service_tasks(struct cfg__ctx *c, struct cfg__pending **tasks, size_t *n, size_t *alloc,
                  unsigned *next_id)
{
  size_t orig = *n;
  for (size_t i = 0; i < orig; i++) {
    struct cfg_task *t = &(*tasks)[i].t;
    if ((*tasks)[i].broken || t->instance != CFG_INSTANCE_CONTAINER || !t->container.dockerfile)
      continue;
    char *hash = dockerfile_hash(c, t);
    if (!hash) {
      (*tasks)[i].broken = true;
      continue;
    }
    t->container.dockerfile_hash = hash;
    struct cfg_task *svc = NULL;
    for (size_t k = orig; k < *n && !svc; k++)
      if (!strcmp((*tasks)[k].t.container.dockerfile_hash, hash))
        svc = &(*tasks)[k].t;
    if (!svc) {
      CI_GROW(*tasks, *alloc, *n + 1);
      t = &(*tasks)[i].t; /* the array may have moved */
      struct cfg__pending *ps = &(*tasks)[(*n)++];
      memset(ps, 0, sizeof(*ps));
      svc = &ps->t;
      struct ci_buf name = CI_BUF_INIT;
      ci_buf_addf(&name, "Prebuild %s", t->container.dockerfile);
      struct ci_strv kv = CI_STRV_INIT;
      for (size_t a = 0; a < t->container.docker_arguments.n; a++)
        ci_strv_push_take(&kv, xasprintf("%s=%s", t->container.docker_arguments.v[a].key,
                                         t->container.docker_arguments.v[a].value));
      if (kv.n)
        qsort(kv.v, kv.n, sizeof(*kv.v), cmp_str);
      for (size_t a = 0; a < kv.n; a++)
        ci_buf_addf(&name, " %s", kv.v[a]);
      ci_strv_release(&kv);
      svc->id = (*next_id)++;
      svc->name = ci_buf_take(&name);
      svc->fallback_name = xstrdup(svc->name);
      svc->timeout_seconds = t->timeout_seconds;
      svc->instance = CFG_INSTANCE_PREBUILT;
      svc->instance_key = "prebuilt";
      svc->pos = t->container.pos;
      cfg_env_copy(&svc->env, &t->env);
      svc->container.image = image_from_template(c, hash);
      svc->container.dockerfile = xstrdup(t->container.dockerfile);
      svc->container.dockerfile_hash = xstrdup(hash);
      cfg_env_copy(&svc->container.docker_arguments, &t->container.docker_arguments);
      svc->container.arch = t->container.arch;
      svc->container.cpu = t->container.cpu;
      svc->container.memory_mb = t->container.memory_mb;
      svc->container.pos = t->container.pos;
    }
    t->depends_on = xreallocarray(t->depends_on, t->ndepends_on + 1, sizeof(unsigned));
    t->depends_on[t->ndepends_on++] = svc->id;
    free(t->container.image);
    t->container.image = xstrdup(svc->container.image);
  }
}

/* ---- labels (labels.go) ---- */

static void
task_labels(const struct cfg_task *t, struct ci_strv *out)
{
  if (t->instance == CFG_INSTANCE_NONE)
    return;
  if (t->instance == CFG_INSTANCE_CONTAINER) {
    const struct cfg_container *ct = &t->container;
    struct ci_strv inst = CI_STRV_INIT;
    if (!ct->dockerfile) {
      ci_strv_push_take(&inst, xasprintf("container:%s", ct->image ? ct->image : ""));
    } else {
      ci_strv_push_take(&inst, xasprintf("Dockerfile:%s", ct->dockerfile));
      for (size_t i = 0; i < ct->docker_arguments.n; i++)
        ci_strv_push_take(&inst, xasprintf("%s:%s", ct->docker_arguments.v[i].key,
                                           ct->docker_arguments.v[i].value));
    }
    for (size_t i = 0; i < ct->nadditional; i++)
      ci_strv_push_take(&inst, xasprintf("%s:%s", ct->additional[i].name,
                                         ct->additional[i].image ? ct->additional[i].image : ""));
    for (size_t i = 0; i < inst.n; i++)
      if (!ci_str_has_suffix(inst.v[i], ":"))
        ci_strv_push(out, inst.v[i]);
    ci_strv_release(&inst);
  } else if (t->instance == CFG_INSTANCE_PIPE) {
    ci_strv_push(out, "pipe");
  }
  for (size_t i = 0; i < t->env.n; i++) {
    const char *v = t->env.v[i].value;
    if (ci_str_has_prefix(v, "ENCRYPTED[") && ci_str_has_suffix(v, "]"))
      continue;
    ci_strv_push_take(out, xasprintf("%s:%s", t->env.v[i].key, v));
  }
}

static int
cmp_task_name(const void *a, const void *b)
{
  const struct cfg_task *x = *(struct cfg_task *const *)a, *y = *(struct cfg_task *const *)b;
  int r = strcmp(x->name, y->name);
  return r ? r : (x->id < y->id ? -1 : x->id > y->id);
}

static void
unique_labels(struct cfg_task **ts, size_t n)
{
  if (n < 2)
    return;
  qsort(ts, n, sizeof(*ts), cmp_task_name);
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    while (j < n && !strcmp(ts[j]->name, ts[i]->name))
      j++;
    size_t g = j - i;
    if (g > 1) {
      struct ci_strv *labels = xcalloc(g, sizeof(*labels));
      struct ci_strv all = CI_STRV_INIT;
      for (size_t k = 0; k < g; k++) {
        task_labels(ts[i + k], &labels[k]);
        for (size_t l = 0; l < labels[k].n; l++)
          ci_strv_push(&all, labels[k].v[l]);
      }
      if (all.n)
        qsort(all.v, all.n, sizeof(*all.v), cmp_str);
      /* common: labels present as many times as there are tasks */
      struct ci_strv common = CI_STRV_INIT;
      for (size_t a = 0; a < all.n;) {
        size_t b = a + 1;
        while (b < all.n && !strcmp(all.v[b], all.v[a]))
          b++;
        if (b - a == g)
          ci_strv_push(&common, all.v[a]);
        a = b;
      }
      for (size_t k = 0; k < g; k++) {
        struct ci_strv kept = CI_STRV_INIT;
        for (size_t l = 0; l < labels[k].n; l++)
          if (!(common.n && bsearch(&labels[k].v[l], common.v, common.n, sizeof(*common.v),
                                    cmp_str)))
            ci_strv_push(&kept, labels[k].v[l]);
        if (kept.n)
          qsort(kept.v, kept.n, sizeof(*kept.v), cmp_str);
        ci_strv_release(&ts[i + k]->labels);
        ts[i + k]->labels = kept;
        ci_strv_release(&labels[k]);
      }
      ci_strv_release(&common);
      ci_strv_release(&all);
      free(labels);
    }
    i = j;
  }
}

static int
cmp_task_id(const void *a, const void *b)
{
  const struct cfg_task *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

void
cfg__resolve_tasks(struct cfg__ctx *c, struct cfg__pending *tasks, size_t n,
                   const struct ci_strv *disabled)
{
  size_t alloc = n;
  /* Service tasks take ids after every task-like key, including those only_if removed. */
  unsigned next_id = c->next_id;
  if (resolve_shallow(c, tasks, n, disabled))
    check_cycles(c, tasks, n);
  if (c->file->nerrors == 0)
    add_service_tasks(c, &tasks, &n, &alloc, &next_id);

  struct cfg_file *f = c->file;
  f->tasks = xcalloc(n ? n : 1, sizeof(*f->tasks));
  f->ntasks = 0;
  for (size_t i = 0; i < n; i++) {
    ci_strv_release(&tasks[i].depends_on);
    if (tasks[i].broken) {
      cfg__task_release(&tasks[i].t);
      continue;
    }
    f->tasks[f->ntasks++] = tasks[i].t;
  }
  qsort(f->tasks, f->ntasks, sizeof(*f->tasks), cmp_task_id);
  struct cfg_task **ptrs = xcalloc(f->ntasks ? f->ntasks : 1, sizeof(*ptrs));
  for (size_t i = 0; i < f->ntasks; i++)
    ptrs[i] = &f->tasks[i];
  unique_labels(ptrs, f->ntasks);
  free(ptrs);
  free(tasks);
}
