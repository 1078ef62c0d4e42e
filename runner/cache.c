/* runner/cache.c - cache keys, the host blob store, blobs <-> tars, change detection.
 * See cache.h for the contract and the invariants. */
#include "cache.h"
#include "artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_BUF (128 * 1024)
#define TMP_PREFIX ".temporary-blob-"

/* ------------------------------------------------------------------ sha256 */

static void
sha256(const void *data, size_t len, unsigned char out[32])
{
  unsigned int n = 32;
  if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
    CI_BUG("EVP_Digest(sha256) failed");
}

static EVP_MD_CTX *
sha256_new(void)
{
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
    CI_BUG("cannot initialise sha256");
  return c;
}

static void
sha256_update(EVP_MD_CTX *c, const void *data, size_t len)
{
  if (len && EVP_DigestUpdate(c, data, len) != 1)
    CI_BUG("EVP_DigestUpdate failed");
}

static void
sha256_final(EVP_MD_CTX *c, unsigned char out[32])
{
  unsigned int n = 32;
  if (EVP_DigestFinal_ex(c, out, &n) != 1)
    CI_BUG("EVP_DigestFinal_ex failed");
}

static void
hex32(const unsigned char sum[32], char out[65])
{
  static const char x[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = x[sum[i] >> 4];
    out[2 * i + 1] = x[sum[i] & 15];
  }
  out[64] = '\0';
}

/* ------------------------------------------------------------------ messages */

char *
cache_folders_join(const char *const *folders, size_t n)
{
  struct ci_buf b = CI_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (i)
      ci_buf_adds(&b, ", ");
    ci_buf_adds(&b, folders[i]);
  }
  return ci_buf_take(&b);
}

char *
cache_size_message(const char *cache_name, uint64_t bytes)
{
  if (bytes < 1024)
    return xasprintf("%s cache size is %llu bytes.", cache_name, (unsigned long long)bytes);
  if (bytes < 1024 * 1024)
    return xasprintf("%s cache size is %lluKb.", cache_name, (unsigned long long)(bytes / 1024));
  return xasprintf("%s cache size is %lluMb.", cache_name,
                   (unsigned long long)(bytes / 1024 / 1024));
}

/* ------------------------------------------------------------------ keys */

struct cache_fingerprint {
  EVP_MD_CTX *md;
};

struct cache_fingerprint *
cache_fingerprint_new(void)
{
  struct cache_fingerprint *f = xcalloc(1, sizeof(*f));
  f->md = sha256_new();
  return f;
}

void
cache_fingerprint_update(struct cache_fingerprint *f, const void *data, size_t len)
{
  if (f->md)
    sha256_update(f->md, data, len);
}

char *
cache_fingerprint_key(struct cache_fingerprint *f, const char *cache_name)
{
  if (!f->md)
    CI_BUG("cache_fingerprint_key called twice");
  unsigned char sum[32];
  char hex[65];
  sha256_final(f->md, sum);
  EVP_MD_CTX_free(f->md);
  f->md = NULL;
  hex32(sum, hex);
  return xasprintf("%s-%s", cache_name, hex);
}

void
cache_fingerprint_free(struct cache_fingerprint *f)
{
  if (!f)
    return;
  EVP_MD_CTX_free(f->md);
  free(f);
}

char *
cache_key_default(const char *cache_name, const char *task_name, const char *node_index)
{
  struct cache_fingerprint *f = cache_fingerprint_new();
  cache_fingerprint_update(f, task_name, strlen(task_name));
  cache_fingerprint_update(f, node_index, strlen(node_index));
  char *key = cache_fingerprint_key(f, cache_name);
  cache_fingerprint_free(f);
  return key;
}

char *
cache_key_compute(const char *cache_name, const char *fingerprint_key,
                  const void *fingerprint_output, size_t fingerprint_output_len,
                  const char *task_name, const char *node_index)
{
  if (fingerprint_key)
    return xstrdup(fingerprint_key);
  if (!fingerprint_output)
    return cache_key_default(cache_name, task_name, node_index);
  struct cache_fingerprint *f = cache_fingerprint_new();
  cache_fingerprint_update(f, fingerprint_output, fingerprint_output_len);
  char *key = cache_fingerprint_key(f, cache_name);
  cache_fingerprint_free(f);
  return key;
}

static bool
key_is_safe(const char *key)
{
  if (!*key)
    return false;
  for (const char *p = key; *p; p++) {
    char c = *p;
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
          c == '_'))
      return false;
  }
  return true;
}

char *
cache_blob_name(const char *key)
{
  if (key_is_safe(key))
    return xstrdup(key);
  unsigned char sum[32];
  char hex[65];
  sha256(key, strlen(key), sum);
  hex32(sum, hex);
  return xstrdup(hex);
}

/* ------------------------------------------------------------------ the store */

struct cache_store {
  char *dir; /* owned */
  int dfd;
  struct cache_limits lim;
};

/* Go's os.UserCacheDir, with a passwd fallback for an unset $HOME. */
static int
user_cache_dir(char **out, struct ci_error **err)
{
  const char *x = getenv("XDG_CACHE_HOME");
  if (x && *x) {
    if (x[0] != '/')
      return ci_error_make(err, -EINVAL,
                           "cannot find the cache directory: path in "
                           "$XDG_CACHE_HOME is relative");
    *out = xstrdup(x);
    return 0;
  }
  const char *home = getenv("HOME");
  if (home && *home) {
    *out = xasprintf("%s/.cache", home);
    return 0;
  }
  struct passwd pw, *res = NULL;
  char buf[4096];
  if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) != 0 || !res || !pw.pw_dir || !*pw.pw_dir)
    return ci_error_make(err, -ENOENT,
                         "cannot find the cache directory: neither "
                         "$XDG_CACHE_HOME nor $HOME are defined");
  *out = xasprintf("%s/.cache", pw.pw_dir);
  return 0;
}

int
cache_store_open(const char *project_dir, const char *cache_home, struct cache_store **out,
                 struct ci_error **err)
{
  cleanup_free char *home = NULL;
  int ret;
  if (cache_home)
    home = xstrdup(cache_home);
  else if ((ret = user_cache_dir(&home, err)) < 0)
    return ret;
  cleanup_free char *abs = NULL;
  if (project_dir[0] == '/') {
    abs = artifacts_path_clean(project_dir);
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
      return ci_error_make(err, -errno, "cannot get the current directory: %s", strerror(errno));
    cleanup_free char *j = xasprintf("%s/%s", cwd, project_dir);
    abs = artifacts_path_clean(j);
  }
  const char *base = strrchr(abs, '/');
  base = base ? base + 1 : abs; /* "" for "/": the projects directory itself, as Go's Join */
  cleanup_free char *dir = *base ? xasprintf("%s/cirrus/projects/%s", home, base)
                                 : xasprintf("%s/cirrus/projects", home);
  ret = ci_mkdirs(dir, 0700, err);
  if (ret < 0)
    return ci_error_prefix(err, "cannot initialize the cache");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return ci_error_make(err, -errno, "cannot open cache directory '%s': %s", dir, strerror(errno));
  struct cache_store *s = xcalloc(1, sizeof(*s));
  s->dir = steal_pointer(&dir);
  s->dfd = dfd;
  cache_store_set_limits(s, NULL);
  struct ci_error *perr = NULL;
  if (cache_store_prune_temporary(s, 3600, &perr) < 0)
    ci_error_free(&perr); /* best effort */
  *out = s;
  return 0;
}

void
cache_store_free(struct cache_store *s)
{
  if (!s)
    return;
  if (s->dfd >= 0)
    close(s->dfd);
  free(s->dir);
  free(s);
}

const char *
cache_store_get_dir(const struct cache_store *s)
{
  return s->dir;
}

void
cache_store_set_limits(struct cache_store *s, const struct cache_limits *lim)
{
  if (lim) {
    s->lim = *lim;
  } else {
    s->lim.max_bytes = CACHE_DEFAULT_MAX_BYTES;
    s->lim.max_entries = CACHE_DEFAULT_MAX_ENTRIES;
  }
}

const struct cache_limits *
cache_store_get_limits(const struct cache_store *s)
{
  return &s->lim;
}

/* Open the blob file name read-only; 1 with *fd, 0 when missing. */
static int
open_blob(struct cache_store *s, const char *name, int *fd, struct ci_error **err)
{
  int f = openat(s->dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0) {
    if (errno == ENOENT)
      return 0;
    return ci_error_make(err, -errno, "cannot open cache blob '%s/%s': %s", s->dir, name,
                         strerror(errno));
  }
  struct stat st;
  if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(f);
    return ci_error_make(err, -EINVAL, "cache blob '%s/%s' is not a regular file", s->dir, name);
  }
  if (fd)
    *fd = f;
  else
    close(f);
  return 1;
}

int
cache_store_get(struct cache_store *s, const char *key, int *fd, struct ci_error **err)
{
  cleanup_free char *name = cache_blob_name(key);
  return open_blob(s, name, fd, err);
}

int
cache_store_find_latest(struct cache_store *s, const char *cache_name, char **key, int *fd,
                        struct ci_error **err)
{
  cleanup_free char *prefix = xasprintf("%s-", cache_name);
  int d = fcntl(s->dfd, F_DUPFD_CLOEXEC, 0);
  if (d < 0)
    return ci_error_make(err, -errno, "cannot read cache directory '%s': %s", s->dir,
                         strerror(errno));
  DIR *dir = fdopendir(d);
  if (!dir) {
    int e = errno;
    close(d);
    return ci_error_make(err, -e, "cannot read cache directory '%s': %s", s->dir, strerror(e));
  }
  rewinddir(dir);
  cleanup_free char *best = NULL;
  struct timespec best_t = {0, 0};
  struct dirent *de;
  while ((de = readdir(dir))) {
    if (de->d_name[0] == '.' || !ci_str_has_prefix(de->d_name, prefix))
      continue;
    struct stat st;
    if (fstatat(s->dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
      continue;
    bool newer = !best || st.st_mtim.tv_sec > best_t.tv_sec ||
                 (st.st_mtim.tv_sec == best_t.tv_sec &&
                  (st.st_mtim.tv_nsec > best_t.tv_nsec ||
                   (st.st_mtim.tv_nsec == best_t.tv_nsec && strcmp(de->d_name, best) > 0)));
    if (newer) {
      free(best);
      best = xstrdup(de->d_name);
      best_t = st.st_mtim;
    }
  }
  closedir(dir);
  if (!best)
    return 0;
  int ret = open_blob(s, best, fd, err);
  if (ret <= 0)
    return ret; /* removed meanwhile: nothing found */
  *key = steal_pointer(&best);
  return 1;
}

int
cache_store_prune_temporary(struct cache_store *s, time_t older_than, struct ci_error **err)
{
  int d = fcntl(s->dfd, F_DUPFD_CLOEXEC, 0);
  if (d < 0)
    return ci_error_make(err, -errno, "cannot read cache directory '%s': %s", s->dir,
                         strerror(errno));
  DIR *dir = fdopendir(d);
  if (!dir) {
    int e = errno;
    close(d);
    return ci_error_make(err, -e, "cannot read cache directory '%s': %s", s->dir, strerror(e));
  }
  rewinddir(dir);
  time_t now = time(NULL);
  int removed = 0;
  struct dirent *de;
  while ((de = readdir(dir))) {
    if (!ci_str_has_prefix(de->d_name, TMP_PREFIX))
      continue;
    struct stat st;
    if (fstatat(s->dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
      continue;
    if (now - st.st_mtime < older_than)
      continue;
    if (unlinkat(s->dfd, de->d_name, 0) == 0)
      removed++;
  }
  closedir(dir);
  return removed;
}

/* ------------------------------------------------------------------ folders */

void
cache_plan_release(struct cache_plan *p)
{
  free(p->base);
  p->base = NULL;
  ci_strv_release(&p->folders);
  p->has_globs = false;
}

/* upstream's pathLooksLikeGlob */
static bool
looks_like_glob(const char *p)
{
  return strchr(p, '*') != NULL;
}

int
cache_plan_init(struct cache_plan *p, const char *const *folders, size_t nfolders,
                const char *working_dir, struct ci_error **err)
{
  cache_plan_release(p);
  if (nfolders == 0)
    return ci_error_make(err, -EINVAL, "a cache needs at least one folder");
  if (working_dir[0] != '/')
    return ci_error_make(err, -EINVAL, "working directory '%s' is not absolute", working_dir);
  cleanup_free char *wd = artifacts_path_clean(working_dir);
  struct cache_plan r = CACHE_PLAN_INIT;
  for (size_t i = 0; i < nfolders; i++) {
    if (folders[i][0] == '/') {
      ci_strv_push_take(&r.folders, artifacts_path_clean(folders[i]));
    } else {
      cleanup_free char *j = xasprintf("%s/%s", wd, folders[i]);
      ci_strv_push_take(&r.folders, artifacts_path_clean(j));
    }
    r.has_globs |= looks_like_glob(r.folders.v[i]);
  }
  if (nfolders == 1 && !r.has_globs) {
    r.base = xstrdup(r.folders.v[0]);
  } else {
    r.base = xstrdup(wd);
    cleanup_free char *term = strcmp(wd, "/") ? xasprintf("%s/", wd) : xstrdup("/");
    for (size_t i = 0; i < r.folders.n; i++) {
      if (!ci_str_has_prefix(r.folders.v[i], term)) {
        int ret = ci_error_make(err, CI_EFAIL,
                                "When using globs or multiple cache folders, all folders should be "
                                "relative to the current working directory, yet, folder '%s' "
                                "points above the current working directory '%s'",
                                r.folders.v[i], term);
        cache_plan_release(&r);
        return ret;
      }
    }
  }
  *p = r;
  return 0;
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int
cache_plan_expand(const struct cache_plan *p, const char *working_dir,
                  const struct artifacts_path *listing, size_t n, struct ci_strv *out,
                  struct ci_error **err)
{
  cleanup_free char *wd = artifacts_path_clean(working_dir);
  struct ci_strv all = CI_STRV_INIT;
  for (size_t i = 0; i < p->folders.n; i++) {
    const char *f = p->folders.v[i];
    if (!looks_like_glob(f)) {
      ci_strv_push(&all, f);
      continue;
    }
    for (size_t k = 0; k < n; k++) {
      if (!listing[k].path || listing[k].path[0] == '/')
        continue;
      cleanup_free char *j = xasprintf("%s/%s", wd, listing[k].path);
      cleanup_free char *full = artifacts_path_clean(j);
      const char *rel = artifacts_path_rel(full, wd);
      if (!rel || !*rel)
        continue;
      int m = artifacts_glob_match(f, full, err);
      if (m < 0) {
        ci_strv_release(&all);
        return m;
      }
      if (m)
        ci_strv_push(&all, full);
    }
  }
  qsort(all.v, all.n, sizeof(*all.v), cmp_str);
  const char *prev = NULL;
  for (size_t i = 0; i < all.n; i++) {
    const char *f = all.v[i];
    if (prev && (!strcmp(f, prev) || artifacts_path_is_within(f, prev)))
      continue;
    ci_strv_push(out, f);
    prev = f;
  }
  ci_strv_release(&all);
  return 0;
}

/* ------------------------------------------------------------------ digests */

void
cache_digest_init(struct cache_digest *d)
{
  memset(d, 0, sizeof(*d));
}

void
cache_digest_release(struct cache_digest *d)
{
  for (size_t i = 0; i < d->n; i++)
    free(d->v[i].path);
  free(d->v);
  cache_digest_init(d);
}

void
cache_digest_move(struct cache_digest *to, struct cache_digest *from)
{
  if (to == from)
    return;
  cache_digest_release(to);
  *to = *from;
  cache_digest_init(from);
}

const char *
cache_change_str(enum cache_change c)
{
  switch (c) {
  case CACHE_CREATED:
    return "created";
  case CACHE_MODIFIED:
    return "modified";
  case CACHE_DELETED:
    return "deleted";
  }
  return "unknown";
}

void
cache_digest_diff(const struct cache_digest *older, const struct cache_digest *newer,
                  cache_diff_cb cb, void *data)
{
  size_t i = 0, k = 0;
  while (i < older->n || k < newer->n) {
    int c = i == older->n ? 1 : k == newer->n ? -1 : strcmp(older->v[i].path, newer->v[k].path);
    if (c < 0) {
      cb(data, CACHE_DELETED, older->v[i++].path);
    } else if (c > 0) {
      cb(data, CACHE_CREATED, newer->v[k++].path);
    } else {
      const struct cache_digest_entry *a = &older->v[i++], *b = &newer->v[k++];
      if (a->type != b->type || a->mode != b->mode || memcmp(a->sum, b->sum, 32) != 0)
        cb(data, CACHE_MODIFIED, b->path);
    }
  }
}

/* Records are appended as entries stream by; hard links are resolved and duplicates dropped
 * (the later entry wins, as extraction would have it) when the digest is made final. */
struct dbuild {
  struct cache_digest d;
  char **hl; /* parallel to d.v: owned hard link target, or NULL */
  size_t hl_alloc;
};

static void
db_release(struct dbuild *b)
{
  for (size_t i = 0; i < b->d.n; i++)
    free(b->hl[i]);
  free(b->hl);
  b->hl = NULL;
  b->hl_alloc = 0;
  cache_digest_release(&b->d);
}

static void
db_add(struct dbuild *b, const char *path, char type, unsigned mode, const unsigned char sum[32],
       const char *hl_target)
{
  CI_GROW(b->d.v, b->d.alloc, b->d.n + 1);
  CI_GROW(b->hl, b->hl_alloc, b->d.n + 1);
  struct cache_digest_entry *e = &b->d.v[b->d.n];
  e->path = xstrdup(path);
  e->type = type;
  e->mode = mode & 07777;
  if (sum)
    memcpy(e->sum, sum, 32);
  else
    memset(e->sum, 0, 32);
  b->hl[b->d.n] = hl_target ? xstrdup(hl_target) : NULL;
  b->d.n++;
}

static int
cmp_idx(const void *a, const void *b, void *ctx)
{
  const struct cache_digest_entry *v = ctx;
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  int c = strcmp(v[x].path, v[y].path);
  if (c)
    return c;
  return x < y ? -1 : x > y;
}

static int
cmp_entry_path(const void *key, const void *e)
{
  return strcmp((const char *)key, ((const struct cache_digest_entry *)e)->path);
}

/* Make the digest final into *out (released first); b is emptied. */
static void
db_finish(struct dbuild *b, struct cache_digest *out)
{
  size_t n = b->d.n;
  size_t *idx = xcalloc(n ? n : 1, sizeof(*idx));
  for (size_t i = 0; i < n; i++)
    idx[i] = i;
  /* qsort is not stable: the index tie-break keeps entries of one path in archive order */
  qsort_r(idx, n, sizeof(*idx), cmp_idx, b->d.v);
  struct cache_digest r = CACHE_DIGEST_INIT;
  char **hl = xcalloc(n ? n : 1, sizeof(*hl));
  for (size_t i = 0; i < n; i++) {
    size_t x = idx[i];
    if (i + 1 < n && strcmp(b->d.v[x].path, b->d.v[idx[i + 1]].path) == 0)
      continue; /* a later entry of the same path wins */
    CI_GROW(r.v, r.alloc, r.n + 1);
    r.v[r.n] = b->d.v[x];
    b->d.v[x].path = NULL;
    hl[r.n] = b->hl[x];
    b->hl[x] = NULL;
    r.n++;
  }
  for (size_t i = 0; i < r.n; i++) {
    if (!hl[i])
      continue;
    const struct cache_digest_entry *t = bsearch(hl[i], r.v, r.n, sizeof(*r.v), cmp_entry_path);
    if (t && t->type == 'f') {
      r.v[i].type = 'f';
      r.v[i].mode = t->mode;
      memcpy(r.v[i].sum, t->sum, 32);
    } else {
      r.v[i].type = 'h';
      sha256(hl[i], strlen(hl[i]), r.v[i].sum);
    }
    free(hl[i]);
  }
  free(hl);
  free(idx);
  EVP_MD_CTX *md = sha256_new();
  for (size_t i = 0; i < r.n; i++) {
    const struct cache_digest_entry *e = &r.v[i];
    unsigned char m[4] = {(unsigned char)(e->mode >> 24), (unsigned char)(e->mode >> 16),
                          (unsigned char)(e->mode >> 8), (unsigned char)e->mode};
    sha256_update(md, e->path, strlen(e->path) + 1);
    sha256_update(md, &e->type, 1);
    sha256_update(md, m, 4);
    sha256_update(md, e->sum, 32);
  }
  unsigned char sum[32];
  sha256_final(md, sum);
  EVP_MD_CTX_free(md);
  hex32(sum, r.sha);
  for (size_t i = 0; i < b->d.n; i++)
    free(b->d.v[i].path);
  b->d.n = 0;
  db_release(b);
  cache_digest_move(out, &r);
}

/* ------------------------------------------------------------------ copying entries */

enum xmode { XM_SAVE, XM_RESTORE };

struct xcopy {
  enum xmode mode;
  const struct cache_limits *lim;
  struct archive *in, *out; /* out is NULL when only hashing */
  struct dbuild *db;
  unsigned char *buf;
  uint64_t *bytes;
  size_t *entries;
  size_t *content;
  const char *base;    /* clean absolute base folder */
  const char *in_root; /* XM_SAVE: the container dir the tar's names are relative to */
  const char *put_at;  /* XM_RESTORE: the container dir the output names are relative to */
  const char *folder;  /* XM_SAVE: the folder the tar was taken of */
};

static bool
has_dotdot(const char *p)
{
  for (const char *s = p; *s;) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.')
      return true;
    if (!e)
      break;
    s = e + 1;
  }
  return false;
}

/* An input entry name (or hard link target) to a path relative to the base folder ("" for the
 * base folder itself).  *rel is owned. */
static int
xc_map(struct xcopy *x, const char *name, const char *what, char **rel, struct ci_error **err)
{
  if (!name)
    name = "";
  if (strlen(name) >= PATH_MAX)
    return ci_error_make(err, CI_EPROTO, "cache archive entry %s is too long", what);
  if (has_dotdot(name))
    return ci_error_make(err, CI_EPROTO, "refusing cache archive entry %s '%s': it contains '..'",
                         what, name);
  if (x->mode == XM_RESTORE) {
    while (*name == '/')
      name++; /* upstream's blobs name entries "/x" */
    cleanup_free char *c = artifacts_path_clean(name);
    *rel = strcmp(c, ".") ? steal_pointer(&c) : xstrdup("");
    return 0;
  }
  if (!*name || name[0] == '/')
    return ci_error_make(err, CI_EPROTO, "refusing cache archive entry %s '%s': %s", what, name,
                         *name ? "absolute path" : "empty name");
  cleanup_free char *j = xasprintf("%s/%s", x->in_root, name);
  cleanup_free char *full = artifacts_path_clean(j);
  const char *r = artifacts_path_rel(full, x->base);
  if (!r)
    return ci_error_make(err, CI_EPROTO,
                         "refusing cache archive entry %s '%s': it is outside of the cache base "
                         "folder '%s'",
                         what, name, x->base);
  *rel = xstrdup(r);
  return 0;
}

/* The output name of a base-relative path. */
static char *
xc_out_name(struct xcopy *x, const char *rel)
{
  if (x->mode == XM_SAVE)
    return xstrdup(*rel ? rel : ".");
  cleanup_free char *j = *rel ? xasprintf("%s/%s", x->base, rel) : xstrdup(x->base);
  const char *r = artifacts_path_rel(j, x->put_at);
  return xstrdup(r && *r ? r : ".");
}

static int
xc_write_header(struct xcopy *x, struct archive_entry *oe, const char *rel, struct ci_error **err)
{
  if (x->out && archive_write_header(x->out, oe) < ARCHIVE_WARN)
    return ci_error_make(err, -EIO, "cannot write cache archive entry '%s': %s", rel,
                         archive_error_string(x->out));
  return 0;
}

static int
xc_entry(struct xcopy *x, struct archive_entry *e, struct ci_error **err)
{
  if (++*x->entries > x->lim->max_entries)
    return ci_error_make(err, -EFBIG, "cache archive has more than %zu entries",
                         x->lim->max_entries);
  cleanup_free char *rel = NULL;
  int ret = xc_map(x, archive_entry_pathname(e), "path", &rel, err);
  if (ret < 0)
    return ret;
  const char *hl = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  if (!hl && type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK)
    return 0; /* sockets, devices, FIFOs: not cached */
  if (!*rel && (hl || type != AE_IFDIR))
    return ci_error_make(err, CI_EPROTO,
                         "cache archive entry '%s' is the base folder '%s' but not a directory "
                         "(cache folders must be directories)",
                         archive_entry_pathname(e), x->base);
  struct archive_entry *oe = archive_entry_clone(e);
  if (!oe)
    CI_BUG("archive_entry_clone failed");
  archive_entry_sparse_clear(oe);
  cleanup_free char *oname = xc_out_name(x, rel);
  archive_entry_copy_pathname(oe, oname);
  if (hl) {
    cleanup_free char *trel = NULL;
    ret = xc_map(x, hl, "hard link target", &trel, err);
    if (ret >= 0 && !*trel)
      ret = ci_error_make(err, CI_EPROTO,
                          "cache archive entry '%s' is a hard link to the base "
                          "folder",
                          rel);
    if (ret >= 0) {
      cleanup_free char *tname = xc_out_name(x, trel);
      archive_entry_copy_hardlink(oe, tname);
      archive_entry_set_size(oe, 0);
      ret = xc_write_header(x, oe, rel, err);
      db_add(x->db, rel, 'H', archive_entry_perm(e), NULL, trel);
      if (x->content)
        ++*x->content;
    }
    archive_entry_free(oe);
    return ret;
  }
  if (type == AE_IFDIR) {
    ret = xc_write_header(x, oe, rel, err);
    archive_entry_free(oe);
    if (x->content && ret >= 0) {
      cleanup_free char *j = *rel ? xasprintf("%s/%s", x->base, rel) : xstrdup(x->base);
      if (strcmp(j, x->folder) != 0)
        ++*x->content;
    }
    return ret;
  }
  if (type == AE_IFLNK) {
    const char *target = archive_entry_symlink(e);
    if (!target)
      target = "";
    cleanup_free char *newt = NULL;
    if (x->mode == XM_SAVE && target[0] == '/') {
      /* upstream: an absolute target inside the base folder becomes relative */
      cleanup_free char *ct = artifacts_path_clean(target);
      if (artifacts_path_is_within(ct, x->base)) {
        cleanup_free char *j = xasprintf("%s/%s", x->base, rel);
        char *sl = strrchr(j, '/');
        if (sl == j)
          sl[1] = '\0';
        else
          *sl = '\0';
        newt = artifacts_path_relative(j, ct);
        archive_entry_copy_symlink(oe, newt);
        target = newt;
      }
    }
    archive_entry_set_size(oe, 0);
    ret = xc_write_header(x, oe, rel, err);
    archive_entry_free(oe);
    unsigned char sum[32];
    sha256(target, strlen(target), sum);
    db_add(x->db, rel, 'l', archive_entry_perm(e), sum, NULL);
    if (x->content)
      ++*x->content;
    return ret;
  }
  /* a regular file */
  la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (size < 0 || (uint64_t)size > x->lim->max_bytes - *x->bytes) {
    archive_entry_free(oe);
    return ci_error_make(err, -EFBIG, "cache content is larger than %llu bytes",
                         (unsigned long long)x->lim->max_bytes);
  }
  ret = xc_write_header(x, oe, rel, err);
  archive_entry_free(oe);
  if (ret < 0)
    return ret;
  EVP_MD_CTX *md = sha256_new();
  uint64_t got = 0;
  for (;;) {
    la_ssize_t n = archive_read_data(x->in, x->buf, IO_BUF);
    if (n < 0) {
      EVP_MD_CTX_free(md);
      return ci_error_make(err, CI_EPROTO, "cannot read cache archive entry '%s': %s", rel,
                           archive_error_string(x->in));
    }
    if (n == 0)
      break;
    got += (uint64_t)n;
    if (got > (uint64_t)size) {
      EVP_MD_CTX_free(md);
      return ci_error_make(err, CI_EPROTO, "cache archive entry '%s' has more data than its size",
                           rel);
    }
    sha256_update(md, x->buf, (size_t)n);
    if (x->out && archive_write_data(x->out, x->buf, (size_t)n) != n) {
      EVP_MD_CTX_free(md);
      return ci_error_make(err, -EIO, "cannot write cache archive entry '%s': %s", rel,
                           archive_error_string(x->out));
    }
  }
  *x->bytes += got;
  unsigned char sum[32];
  sha256_final(md, sum);
  EVP_MD_CTX_free(md);
  if (got != (uint64_t)size)
    return ci_error_make(err, CI_EPROTO, "cache archive entry '%s' is truncated", rel);
  db_add(x->db, rel, 'f', archive_entry_perm(e), sum, NULL);
  if (x->content)
    ++*x->content;
  return 0;
}

/* A reader over fd for tar, optionally gzip-compressed (in-process zlib only). */
static struct archive *
tar_reader(int fd, struct ci_error **err, const char *what)
{
  struct archive *a = archive_read_new();
  if (!a)
    CI_BUG("archive_read_new failed");
  archive_read_support_format_tar(a);
  archive_read_support_filter_gzip(a);
  if (archive_read_open_fd(a, fd, IO_BUF) != ARCHIVE_OK) {
    ci_error_make(err, CI_EPROTO, "cannot read %s: %s", what, archive_error_string(a));
    archive_read_free(a);
    return NULL;
  }
  return a;
}

static int
xc_run(struct xcopy *x, const char *what, struct ci_error **err)
{
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(x->in, &e);
    if (r == ARCHIVE_EOF)
      return 0;
    if (r < ARCHIVE_WARN)
      return ci_error_make(err, CI_EPROTO, "cannot read %s: %s", what, archive_error_string(x->in));
    int ret = xc_entry(x, e, err);
    if (ret < 0)
      return ret;
  }
}

/* ------------------------------------------------------------------ restore */

int
cache_restore(struct cache_store *s, int blob_fd, const char *base, const char *put_at, int out_fd,
              struct cache_digest *digest, struct ci_error **err)
{
  if (base[0] != '/' || put_at[0] != '/')
    return ci_error_make(err, -EINVAL, "cache restore needs absolute paths");
  cleanup_free char *cbase = artifacts_path_clean(base);
  cleanup_free char *cput = artifacts_path_clean(put_at);
  if (!artifacts_path_is_within(cbase, cput))
    return ci_error_make(err, -EINVAL, "cannot restore a cache of '%s' relative to '%s'", cbase,
                         cput);
  struct archive *in = tar_reader(blob_fd, err, "cache blob");
  if (!in)
    return CI_EPROTO;
  struct archive *out = archive_write_new();
  if (!out)
    CI_BUG("archive_write_new failed");
  archive_write_set_format_pax_restricted(out);
  int ret = 0;
  if (archive_write_open_fd(out, out_fd) != ARCHIVE_OK)
    ret = ci_error_make(err, -EIO, "cannot write the cache archive: %s", archive_error_string(out));
  struct dbuild db = {CACHE_DIGEST_INIT, NULL, 0};
  uint64_t bytes = 0;
  size_t entries = 0;
  unsigned char *buf = xmalloc(IO_BUF);
  struct xcopy x = {XM_RESTORE, &s->lim, in,    out,  &db,  buf, &bytes,
                    &entries,   NULL,    cbase, NULL, cput, NULL};
  if (ret >= 0)
    ret = xc_run(&x, "cache blob", err);
  if (ret >= 0 && archive_write_close(out) != ARCHIVE_OK)
    ret = ci_error_make(err, -EIO, "cannot write the cache archive: %s", archive_error_string(out));
  archive_write_free(out);
  archive_read_free(in);
  free(buf);
  if (ret >= 0 && digest)
    db_finish(&db, digest);
  db_release(&db);
  return ret;
}

/* ------------------------------------------------------------------ save */

struct cache_save {
  struct cache_store *s; /* borrowed */
  char *key, *base;      /* owned */
  char *tmp;             /* owned: temporary file name in the store, NULL once renamed */
  int fd;
  struct archive *out;
  struct dbuild db;
  struct cache_digest digest;
  uint64_t bytes, size;
  size_t entries, content;
  bool finished, broken;
  unsigned char *buf;
};

int
cache_save_begin(struct cache_store *s, const char *key, const char *base, struct cache_save **out,
                 struct ci_error **err)
{
  if (base[0] != '/')
    return ci_error_make(err, -EINVAL, "cache base folder '%s' is not absolute", base);
  char name[] = TMP_PREFIX "XXXXXX";
  cleanup_free char *tmpl = xasprintf("%s/%s", s->dir, name);
  int fd = mkostemp(tmpl, O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot create a temporary blob in '%s': %s", s->dir,
                         strerror(errno));
  struct cache_save *w = xcalloc(1, sizeof(*w));
  w->s = s;
  w->key = xstrdup(key);
  w->base = artifacts_path_clean(base);
  w->tmp = xstrdup(strrchr(tmpl, '/') + 1);
  w->fd = fd;
  w->buf = xmalloc(IO_BUF);
  w->out = archive_write_new();
  if (!w->out)
    CI_BUG("archive_write_new failed");
  archive_write_set_format_pax_restricted(w->out);
  archive_write_add_filter_gzip(w->out);
  archive_write_set_bytes_in_last_block(w->out, 1);
  if (archive_write_open_fd(w->out, fd) != ARCHIVE_OK) {
    int ret =
        ci_error_make(err, -EIO, "cannot write a cache blob: %s", archive_error_string(w->out));
    cache_save_free(w);
    return ret;
  }
  *out = w;
  return 0;
}

int
cache_save_add_tar(struct cache_save *w, int tar_fd, const char *tar_root, const char *folder,
                   struct ci_error **err)
{
  if (w->broken || w->finished)
    return ci_error_make(err, -EINVAL, "cache save is %s", w->broken ? "broken" : "finished");
  if (tar_root[0] != '/' || folder[0] != '/')
    return ci_error_make(err, -EINVAL, "cache archive roots must be absolute");
  cleanup_free char *root = artifacts_path_clean(tar_root);
  cleanup_free char *cfolder = artifacts_path_clean(folder);
  struct archive *in = tar_reader(tar_fd, err, "the cache folder archive");
  if (!in) {
    w->broken = true;
    return CI_EPROTO;
  }
  size_t content = 0;
  struct xcopy x = {XM_SAVE,     &w->s->lim, in,      w->out, &w->db, w->buf, &w->bytes,
                    &w->entries, &content,   w->base, root,   NULL,   cfolder};
  int ret = xc_run(&x, "the cache folder archive", err);
  archive_read_free(in);
  w->content += content;
  if (ret < 0) {
    w->broken = true;
    return ci_error_prefix(err, "archiving cache folder '%s'", cfolder);
  }
  return 0;
}

int
cache_save_finish(struct cache_save *w, struct ci_error **err)
{
  if (w->broken)
    return ci_error_make(err, -EINVAL, "cache save is broken");
  if (w->finished)
    return 0;
  if (archive_write_close(w->out) != ARCHIVE_OK) {
    w->broken = true;
    return ci_error_make(err, -EIO, "cannot write a cache blob: %s", archive_error_string(w->out));
  }
  struct stat st;
  if (fstat(w->fd, &st) < 0) {
    w->broken = true;
    return ci_error_make(err, -errno, "cannot stat a cache blob: %s", strerror(errno));
  }
  w->size = (uint64_t)st.st_size;
  db_finish(&w->db, &w->digest);
  w->finished = true;
  return 0;
}

const struct cache_digest *
cache_save_get_digest(const struct cache_save *w)
{
  return &w->digest;
}

bool
cache_save_is_empty(const struct cache_save *w)
{
  return w->content == 0;
}

uint64_t
cache_save_get_size(const struct cache_save *w)
{
  return w->size;
}

int
cache_save_commit(struct cache_save *w, struct ci_error **err)
{
  if (!w->finished || w->broken || !w->tmp)
    return ci_error_make(err, -EINVAL, "cache save of '%s' is not ready to commit", w->key);
  if (fsync(w->fd) < 0)
    return ci_error_make(err, -errno, "cannot sync cache blob: %s", strerror(errno));
  cleanup_free char *name = cache_blob_name(w->key);
  if (renameat(w->s->dfd, w->tmp, w->s->dfd, name) < 0)
    return ci_error_make(err, -errno, "cannot store cache blob '%s/%s': %s", w->s->dir, name,
                         strerror(errno));
  free(w->tmp);
  w->tmp = NULL;
  fsync(w->s->dfd); /* the rename is durable; failure here changes nothing visible */
  return 0;
}

void
cache_save_free(struct cache_save *w)
{
  if (!w)
    return;
  if (w->out)
    archive_write_free(w->out);
  if (w->fd >= 0)
    close(w->fd);
  if (w->tmp)
    unlinkat(w->s->dfd, w->tmp, 0);
  db_release(&w->db);
  cache_digest_release(&w->digest);
  free(w->tmp);
  free(w->key);
  free(w->base);
  free(w->buf);
  free(w);
}

/* ------------------------------------------------------------------ hashing only */

struct cache_hasher {
  struct cache_store *s; /* borrowed */
  char *base;            /* owned */
  struct dbuild db;
  uint64_t bytes;
  size_t entries, content;
  bool broken;
  unsigned char *buf;
};

int
cache_hasher_new(struct cache_store *s, const char *base, struct cache_hasher **out,
                 struct ci_error **err)
{
  if (base[0] != '/')
    return ci_error_make(err, -EINVAL, "cache base folder '%s' is not absolute", base);
  struct cache_hasher *h = xcalloc(1, sizeof(*h));
  h->s = s;
  h->base = artifacts_path_clean(base);
  h->buf = xmalloc(IO_BUF);
  *out = h;
  return 0;
}

int
cache_hasher_add_tar(struct cache_hasher *h, int tar_fd, const char *tar_root, const char *folder,
                     struct ci_error **err)
{
  if (h->broken)
    return ci_error_make(err, -EINVAL, "cache hasher is broken");
  if (tar_root[0] != '/' || folder[0] != '/')
    return ci_error_make(err, -EINVAL, "cache archive roots must be absolute");
  cleanup_free char *root = artifacts_path_clean(tar_root);
  cleanup_free char *cfolder = artifacts_path_clean(folder);
  struct archive *in = tar_reader(tar_fd, err, "the cache folder archive");
  if (!in) {
    h->broken = true;
    return CI_EPROTO;
  }
  size_t content = 0;
  struct xcopy x = {XM_SAVE,     &h->s->lim, in,      NULL, &h->db, h->buf, &h->bytes,
                    &h->entries, &content,   h->base, root, NULL,   cfolder};
  int ret = xc_run(&x, "the cache folder archive", err);
  archive_read_free(in);
  h->content += content;
  if (ret < 0) {
    h->broken = true;
    return ci_error_prefix(err, "hashing cache folder '%s'", cfolder);
  }
  return 0;
}

bool
cache_hasher_is_empty(const struct cache_hasher *h)
{
  return h->content == 0;
}

int
cache_hasher_finish(struct cache_hasher *h, struct cache_digest *out, struct ci_error **err)
{
  if (h->broken)
    return ci_error_make(err, -EINVAL, "cache hasher is broken");
  db_finish(&h->db, out);
  h->broken = true; /* nothing more can be added */
  return 0;
}

void
cache_hasher_free(struct cache_hasher *h)
{
  if (!h)
    return;
  db_release(&h->db);
  free(h->base);
  free(h->buf);
  free(h);
}
