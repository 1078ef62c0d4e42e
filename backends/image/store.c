/* backends/image/store.c - the store directory: opening, the name index, listing, pruning. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *
img__store_path(const struct img_store *s, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *tail = xvasprintf(fmt, ap);
  va_end(ap);
  char *p = xasprintf("%s/%s", s->root, tail);
  free(tail);
  return p;
}

int
img_store_default_dir(char **out, struct ci_error **err)
{
  if (geteuid() == 0) {
    *out = xstrdup("/var/lib/cirrus");
    return 0;
  }
  const char *xdg = getenv("XDG_DATA_HOME");
  if (xdg && xdg[0] == '/') {
    *out = xasprintf("%s/cirrus", xdg);
    return 0;
  }
  const char *home = getenv("HOME");
  if (!home || home[0] != '/') {
    struct passwd *pw = getpwuid(geteuid());
    home = pw ? pw->pw_dir : NULL;
  }
  if (!home || home[0] != '/')
    return ci_error_make(err, -ENOENT,
                         "cannot find a home directory for the image store (set XDG_DATA_HOME)");
  *out = xasprintf("%s/.local/share/cirrus", home);
  return 0;
}

static const char *
opaque_name(enum img_opaque_xattr m)
{
  switch (m) {
  case IMG_OPAQUE_TRUSTED:
    return "trusted";
  case IMG_OPAQUE_BOTH:
    return "both";
  default:
    return "user";
  }
}

static int
opaque_parse(const char *s, enum img_opaque_xattr *m)
{
  if (!s)
    return -1;
  if (!strcmp(s, "user"))
    *m = IMG_OPAQUE_USER;
  else if (!strcmp(s, "trusted"))
    *m = IMG_OPAQUE_TRUSTED;
  else if (!strcmp(s, "both"))
    *m = IMG_OPAQUE_BOTH;
  else
    return -1;
  return 0;
}

/* Read or create store.json (under index.lock so two first users agree). */
static int
store_config(struct img_store *s, enum img_opaque_xattr want, uint32_t shift,
             struct ci_error **err)
{
  cleanup_free char *lock = img__store_path(s, "index.lock");
  cleanup_free char *path = img__store_path(s, "store.json");
  cleanup_close int lfd = -1;
  int ret = img__lock(lock, LOCK_EX, NULL, &lfd, err);
  if (ret < 0)
    return ret;
  json_t *j = NULL;
  if (access(path, F_OK) == 0) {
    ret = img__json_read(path, 1 << 16, &j, err);
    if (ret < 0)
      return ret;
    json_t *ver = json_object_get(j, "version");
    enum img_opaque_xattr have;
    if (!json_is_integer(ver) || json_integer_value(ver) != 1 ||
        opaque_parse(img__json_str(j, "opaque_xattr"), &have) < 0) {
      json_decref(j);
      return ci_error_make(err, CI_ECONFIG, "image store '%s': unsupported store.json", s->root);
    }
    json_t *js = json_object_get(j, "id_shift");
    json_int_t have_shift = json_is_integer(js) ? json_integer_value(js) : 0;
    json_decref(j);
    if (have_shift != (json_int_t)shift)
      return ci_error_make(err, CI_ECONFIG,
                           "image store '%s' was created with id shift %lld, not %u (use another "
                           "store directory)",
                           s->root, (long long)have_shift, shift);
    if (want != IMG_OPAQUE_DEFAULT && want != have)
      return ci_error_make(err, CI_ECONFIG,
                           "image store '%s' was created for the '%s' opaque xattr, not '%s' "
                           "(use another store directory)",
                           s->root, opaque_name(have), opaque_name(want));
    s->opaque = have;
    return 0;
  }
  s->opaque = want == IMG_OPAQUE_DEFAULT ? IMG_OPAQUE_USER : want;
  j = json_pack("{s:i, s:s}", "version", 1, "opaque_xattr", opaque_name(s->opaque));
  if (shift)
    json_object_set_new(j, "id_shift", json_integer(shift));
  ret = img__json_write(path, j, err);
  json_decref(j);
  return ret;
}

int
img_store_open(const char *root, const struct img_store_opts *opts, struct img_store **out,
               struct ci_error **err)
{
  if (!root || root[0] != '/')
    return ci_error_make(err, CI_EUSAGE, "image store directory '%s' is not an absolute path",
                         root ? root : "");
  enum img_opaque_xattr want = opts ? opts->opaque_xattr : IMG_OPAQUE_DEFAULT;
  if ((want == IMG_OPAQUE_TRUSTED || want == IMG_OPAQUE_BOTH) && geteuid() != 0)
    return ci_error_make(err, CI_ECONFIG,
                         "the trusted.overlay.opaque xattr needs root: use the user xattr for a "
                         "rootless store");
  struct img_store *s = xcalloc(1, sizeof(*s));
  s->root = xstrdup(root);
  size_t n = strlen(s->root);
  while (n > 1 && s->root[n - 1] == '/')
    s->root[--n] = '\0';
  s->preserve_owner = geteuid() == 0;
  s->id_shift = opts ? opts->id_shift : 0;
  if (s->id_shift && (!s->preserve_owner || s->id_shift > UINT32_MAX - 65536)) {
    img_store_free(s);
    return ci_error_make(err, CI_ECONFIG, "an id shift (%u) needs a root store and a base below "
                         "%u", opts->id_shift, UINT32_MAX - 65536);
  }
  static const struct {
    const char *name;
    mode_t mode;
  } dirs[] = {{"", 0755},       {"blobs/sha256", 0755}, {"blobs/partial", 0700}, {"layers", 0755},
              {"images", 0755}, {"locks", 0755},        {"staging", 0700}};
  int ret = 0;
  for (size_t i = 0; i < CI_ARRAY_SIZE(dirs) && ret == 0; i++) {
    cleanup_free char *p = img__store_path(s, "%s", dirs[i].name);
    ret = img__mkdirs(p, dirs[i].mode, err);
  }
  if (ret == 0)
    ret = store_config(s, want, s->id_shift, err);
  if (ret < 0) {
    img_store_free(s);
    return IMG__PREFIX(err, ret, "cannot open image store '%s'", root);
  }
  *out = s;
  return 0;
}

void
img_store_free(struct img_store *s)
{
  if (!s)
    return;
  free(s->root);
  free(s);
}

void
img_store_freep(struct img_store **s)
{
  img_store_free(*s);
  *s = NULL;
}

const char *
img_store_get_root(const struct img_store *s)
{
  return s->root;
}

/* ------------------------------------------------------------ the index */

void
img__index_release(struct img__index *ix)
{
  for (size_t i = 0; i < ix->n; i++) {
    free(ix->v[i].name);
    free(ix->v[i].id);
    free(ix->v[i].manifest);
  }
  free(ix->v);
  memset(ix, 0, sizeof(*ix));
}

int
img__index_load(struct img_store *s, struct img__index *ix, struct ci_error **err)
{
  cleanup_free char *path = img__store_path(s, "index.json");
  memset(ix, 0, sizeof(*ix));
  if (access(path, F_OK) < 0 && errno == ENOENT)
    return 0;
  json_t *j = NULL;
  int ret = img__json_read(path, 64 << 20, &j, err);
  if (ret < 0)
    return ret;
  json_t *arr = json_object_get(j, "images");
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v)
  {
    const char *name = img__json_str(v, "name"), *id = img__json_str(v, "id");
    if (!name || !id || !img__digest_valid(id))
      continue; /* tolerate (and drop) a damaged entry rather than lose the store */
    const char *m = img__json_str(v, "manifest");
    CI_GROW(ix->v, ix->alloc, ix->n + 1);
    struct img__index_entry *e = &ix->v[ix->n++];
    e->name = xstrdup(name);
    e->id = xstrdup(id);
    e->manifest = m && img__digest_valid(m) ? xstrdup(m) : NULL;
    json_t *p = json_object_get(v, "pulled");
    e->pulled = json_is_integer(p) ? json_integer_value(p) : 0;
  }
  json_decref(j);
  return 0;
}

static int
cmp_entry(const void *a, const void *b)
{
  return strcmp(((const struct img__index_entry *)a)->name,
                ((const struct img__index_entry *)b)->name);
}

int
img__index_save(struct img_store *s, const struct img__index *ix, struct ci_error **err)
{
  cleanup_free char *path = img__store_path(s, "index.json");
  if (ix->n)
    qsort(ix->v, ix->n, sizeof(*ix->v), cmp_entry);
  json_t *arr = json_array();
  for (size_t i = 0; i < ix->n; i++) {
    const struct img__index_entry *e = &ix->v[i];
    json_t *o =
        json_pack("{s:s, s:s, s:I}", "name", e->name, "id", e->id, "pulled", (json_int_t)e->pulled);
    if (e->manifest)
      json_object_set_new(o, "manifest", json_string(e->manifest));
    json_array_append_new(arr, o);
  }
  json_t *j = json_pack("{s:i, s:o}", "version", 1, "images", arr);
  int ret = img__json_write(path, j, err);
  json_decref(j);
  return ret;
}

struct img__index_entry *
img__index_find(struct img__index *ix, const char *name)
{
  for (size_t i = 0; i < ix->n; i++)
    if (!strcmp(ix->v[i].name, name))
      return &ix->v[i];
  return NULL;
}

int
img__index_set(struct img_store *s, const char *name, const char *id, const char *manifest,
               struct ci_error **err)
{
  cleanup_free char *lock = img__store_path(s, "index.lock");
  cleanup_close int lfd = -1;
  int ret = img__lock(lock, LOCK_EX, NULL, &lfd, err);
  if (ret < 0)
    return ret;
  struct img__index ix;
  ret = img__index_load(s, &ix, err);
  if (ret < 0)
    return ret;
  struct img__index_entry *e = img__index_find(&ix, name);
  if (!e) {
    CI_GROW(ix.v, ix.alloc, ix.n + 1);
    e = &ix.v[ix.n++];
    memset(e, 0, sizeof(*e));
    e->name = xstrdup(name);
  }
  free(e->id);
  free(e->manifest);
  e->id = xstrdup(id);
  e->manifest = manifest ? xstrdup(manifest) : NULL;
  e->pulled = (int64_t)time(NULL);
  ret = img__index_save(s, &ix, err);
  img__index_release(&ix);
  return ret;
}

/* ------------------------------------------------------------ listing */

static uint64_t
image_size(struct img_store *s, const char *id)
{
  cleanup_free char *path = img__store_path(s, "images/%s.json", img__digest_hex(id));
  json_t *j = NULL;
  if (img__json_read(path, 16 << 20, &j, NULL) < 0)
    return 0;
  json_t *sz = json_object_get(j, "size");
  uint64_t n = json_is_integer(sz) ? (uint64_t)json_integer_value(sz) : 0;
  json_decref(j);
  return n;
}

int
img_store_list(struct img_store *s, struct img_list_entry **out, size_t *n, struct ci_error **err)
{
  struct img__index ix;
  int ret = img__index_load(s, &ix, err);
  if (ret < 0)
    return ret;
  if (ix.n)
    qsort(ix.v, ix.n, sizeof(*ix.v), cmp_entry);
  struct img_list_entry *v = xcalloc(ix.n ? ix.n : 1, sizeof(*v));
  for (size_t i = 0; i < ix.n; i++) {
    v[i].name = steal_pointer(&ix.v[i].name);
    v[i].id = steal_pointer(&ix.v[i].id);
    v[i].manifest_digest = steal_pointer(&ix.v[i].manifest);
    v[i].pulled = ix.v[i].pulled;
    v[i].size = image_size(s, v[i].id);
  }
  *out = v;
  *n = ix.n;
  img__index_release(&ix);
  return 0;
}

void
img_list_free(struct img_list_entry *v, size_t n)
{
  if (!v)
    return;
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].id);
    free(v[i].manifest_digest);
  }
  free(v);
}

/* "sha256:<64 hex>" or a hex prefix of at least 12 digits: an image id (or its start). */
static bool
looks_like_id(const char *s, size_t *hexlen)
{
  const char *h = ci_str_has_prefix(s, "sha256:") ? s + 7 : s;
  size_t n = strlen(h);
  if (n < 12 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
      return false;
  if (h == s && n != 64 && strchr(s, ':'))
    return false;
  *hexlen = n;
  return true;
}

int
img_store_remove(struct img_store *s, const char *ref, struct ci_error **err)
{
  cleanup_free char *lock = img__store_path(s, "index.lock");
  cleanup_close int lfd = -1;
  int ret = img__lock(lock, LOCK_EX, NULL, &lfd, err);
  if (ret < 0)
    return ret;
  struct img__index ix;
  ret = img__index_load(s, &ix, err);
  if (ret < 0)
    return ret;
  size_t hexlen = 0;
  const char *hex = ci_str_has_prefix(ref, "sha256:") ? ref + 7 : ref;
  cleanup_free char *canonical = NULL;
  if (!looks_like_id(ref, &hexlen)) {
    struct img_ref r = {0};
    ret = img_ref_parse(ref, &r, err);
    if (ret < 0) {
      img__index_release(&ix);
      return ret;
    }
    canonical = steal_pointer(&r.canonical);
    img_ref_release(&r);
  }
  size_t kept = 0, removed = 0;
  for (size_t i = 0; i < ix.n; i++) {
    struct img__index_entry *e = &ix.v[i];
    bool match =
        canonical ? !strcmp(e->name, canonical) : !strncmp(img__digest_hex(e->id), hex, hexlen);
    if (match) {
      free(e->name);
      free(e->id);
      free(e->manifest);
      removed++;
    } else {
      ix.v[kept++] = *e;
    }
  }
  ix.n = kept;
  if (removed == 0) {
    img__index_release(&ix);
    return ci_error_make(err, -ENOENT, "image '%s' is not in the store", ref);
  }
  ret = img__index_save(s, &ix, err);
  img__index_release(&ix);
  return ret;
}

/* ------------------------------------------------------------ pruning */

struct refset {
  struct ci_strv layers; /* diff id hex */
  struct ci_strv blobs;  /* blob hex */
  struct ci_strv images; /* image id hex */
};

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
refset_has(const struct ci_strv *v, const char *s)
{
  return v->n && bsearch(&s, v->v, v->n, sizeof(char *), cmp_str) != NULL;
}

static void
refset_release(struct refset *r)
{
  ci_strv_release(&r->layers);
  ci_strv_release(&r->blobs);
  ci_strv_release(&r->images);
}

static int
collect_refs(struct img_store *s, struct refset *r, struct ci_error **err)
{
  struct img__index ix;
  int ret = img__index_load(s, &ix, err);
  if (ret < 0)
    return ret;
  for (size_t i = 0; i < ix.n; i++) {
    const char *idhex = img__digest_hex(ix.v[i].id);
    if (ci_strv_contains(&r->images, idhex))
      continue;
    ci_strv_push(&r->images, idhex);
    ci_strv_push(&r->blobs, idhex);
    if (ix.v[i].manifest)
      ci_strv_push(&r->blobs, img__digest_hex(ix.v[i].manifest));
    cleanup_free char *path = img__store_path(s, "images/%s.json", idhex);
    json_t *j = NULL;
    if (img__json_read(path, 16 << 20, &j, NULL) < 0)
      continue;
    const char *m = img__json_str(j, "manifest");
    if (m && img__digest_valid(m))
      ci_strv_push(&r->blobs, img__digest_hex(m));
    size_t k;
    json_t *l;
    json_array_foreach(json_object_get(j, "layers"), k, l)
    {
      if (json_is_string(l) && img__digest_valid(json_string_value(l)))
        ci_strv_push(&r->layers, img__digest_hex(json_string_value(l)));
    }
    json_decref(j);
  }
  img__index_release(&ix);
  if (r->layers.n)
    qsort(r->layers.v, r->layers.n, sizeof(char *), cmp_str);
  if (r->blobs.n)
    qsort(r->blobs.v, r->blobs.n, sizeof(char *), cmp_str);
  if (r->images.n)
    qsort(r->images.v, r->images.n, sizeof(char *), cmp_str);
  return 0;
}

static int
list_dir(const char *path, struct ci_strv *out, struct ci_error **err)
{
  DIR *d = opendir(path);
  if (!d) {
    if (errno == ENOENT)
      return 0;
    return ci_error_make(err, -errno, "cannot read '%s': %s", path, strerror(errno));
  }
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      ci_strv_push(out, de->d_name);
  closedir(d);
  if (out->n)
    qsort(out->v, out->n, sizeof(char *), cmp_str);
  return 0;
}

static uint64_t
file_size(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t
layer_size(const char *meta)
{
  json_t *j = NULL;
  if (img__json_read(meta, 1 << 20, &j, NULL) < 0)
    return 0;
  json_t *sz = json_object_get(j, "size");
  uint64_t n = json_is_integer(sz) ? (uint64_t)json_integer_value(sz) : 0;
  json_decref(j);
  return n;
}

/* Remove the unreferenced entries of one directory; names are "<hex>" or "<hex>.json". */
static int
prune_files(struct img_store *s, const char *dir, const struct ci_strv *keep, const char *suffix,
            unsigned *count, uint64_t *bytes, struct ci_error **err)
{
  cleanup_free char *path = img__store_path(s, "%s", dir);
  struct ci_strv names = CI_STRV_INIT;
  int ret = list_dir(path, &names, err);
  for (size_t i = 0; ret == 0 && i < names.n; i++) {
    cleanup_free char *key = xstrdup(names.v[i]);
    if (suffix && ci_str_has_suffix(key, suffix))
      key[strlen(key) - strlen(suffix)] = '\0';
    if (keep && refset_has(keep, key))
      continue;
    cleanup_free char *f = xasprintf("%s/%s", path, names.v[i]);
    uint64_t sz = file_size(f);
    ret = img__rm_rf(f, err);
    if (ret == 0) {
      (*count)++;
      *bytes += sz;
    }
  }
  ci_strv_release(&names);
  return ret;
}

int
img_store_prune(struct img_store *s, struct img_prune_stats *st, struct ci_error **err)
{
  struct img_prune_stats local = {0};
  cleanup_free char *store_lock = img__store_path(s, "store.lock");
  cleanup_close int sfd = -1;
  /* Exclusive: no pull is running, so everything unreferenced is garbage, including staging
   * directories and partial downloads of pulls that crashed. */
  int ret = img__lock(store_lock, LOCK_EX, NULL, &sfd, err);
  if (ret < 0)
    return ret;
  struct refset refs = {CI_STRV_INIT, CI_STRV_INIT, CI_STRV_INIT};
  ret = collect_refs(s, &refs, err);
  if (ret == 0)
    ret = prune_files(s, "images", &refs.images, ".json", &local.images, &local.bytes, err);
  if (ret == 0)
    ret = prune_files(s, "blobs/sha256", &refs.blobs, NULL, &local.blobs, &local.bytes, err);
  if (ret == 0)
    ret = prune_files(s, "blobs/partial", NULL, NULL, &local.blobs, &local.bytes, err);
  unsigned staged = 0;
  if (ret == 0)
    ret = prune_files(s, "staging", NULL, NULL, &staged, &local.bytes, err);

  struct ci_strv names = CI_STRV_INIT;
  cleanup_free char *layers = img__store_path(s, "layers");
  if (ret == 0)
    ret = list_dir(layers, &names, err);
  for (size_t i = 0; ret == 0 && i < names.n; i++) {
    const char *hex = names.v[i];
    if (refset_has(&refs.layers, hex))
      continue;
    cleanup_free char *lock = img__store_path(s, "locks/%s.lock", hex);
    cleanup_close int lfd = -1;
    int r = img__lock(lock, LOCK_EX | LOCK_NB, NULL, &lfd, err);
    if (r == -EWOULDBLOCK) {
      local.busy++;
      continue;
    }
    if (r < 0) {
      ret = r;
      break;
    }
    cleanup_free char *dir = xasprintf("%s/%s", layers, hex);
    cleanup_free char *meta = xasprintf("%s/meta.json", dir);
    uint64_t sz = layer_size(meta);
    ret = img__rm_rf(dir, err);
    if (ret == 0) {
      local.layers++;
      local.bytes += sz;
      unlink(lock); /* while holding it: waiters notice and re-open (img__lock) */
    }
  }
  ci_strv_release(&names);

  /* Lock files of layers that no longer exist. */
  cleanup_free char *locks = img__store_path(s, "locks");
  if (ret == 0)
    ret = list_dir(locks, &names, err);
  for (size_t i = 0; ret == 0 && i < names.n; i++) {
    if (!ci_str_has_suffix(names.v[i], ".lock"))
      continue;
    cleanup_free char *hex = xstrndup(names.v[i], strlen(names.v[i]) - 5);
    cleanup_free char *dir = xasprintf("%s/%s", layers, hex);
    if (access(dir, F_OK) == 0)
      continue;
    cleanup_free char *lock = xasprintf("%s/%s", locks, names.v[i]);
    cleanup_close int lfd = -1;
    int r = img__lock(lock, LOCK_EX | LOCK_NB, NULL, &lfd, err);
    if (r == 0)
      unlink(lock);
    else if (r != -EWOULDBLOCK)
      ret = r;
  }
  ci_strv_release(&names);
  refset_release(&refs);
  if (ret < 0)
    return IMG__PREFIX(err, ret, "cannot prune image store '%s'", s->root);
  if (st)
    *st = local;
  return 0;
}
