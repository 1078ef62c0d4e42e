/* backends/image/extract.c - extract a layer tar into a directory, safely.
 *
 * Two libarchive readers are stacked so that the uncompressed stream can be hashed (the diff
 * id): the outer one only decompresses (format "raw"), the inner one reads tar from the
 * outer's data.  Every file system operation is relative to a directory fd obtained with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) below the layer root, never by path string,
 * so a symlink in the layer can never redirect a write outside it.  See image.h for the rules.
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define EX_BUF (128 * 1024)

CI_TESTABLE bool img__test_no_openat2 = false;
static bool have_no_openat2 = false; /* set once the kernel said ENOSYS */

struct dmeta {
  char *path; /* owned, clean relative path */
  size_t seq;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  bool has_mtime;
  struct timespec mtime;
};

struct ex {
  int root; /* borrowed */
  const struct img__extract_opts *o;
  img__read_fn rd;
  void *rctx;
  struct archive *outer, *inner;
  struct ci_error *cb_err; /* raised inside a libarchive callback */
  struct img__hash hash;
  unsigned char *inbuf, *midbuf;
  bool outer_eof;
  struct dmeta *dirs;
  size_t n_dirs, alloc_dirs;
  /* one cached parent directory: entries of a tar come grouped by directory */
  char *cache_path; /* owned */
  int cache_fd;
  struct img__extract_result res;
  unsigned neutralised;
  uid_t euid;
  gid_t egid;
  bool root_sgid; /* the layer root is setgid: new entries do not get our group */
};

/* ------------------------------------------------------------ libarchive callbacks */

static la_ssize_t
outer_read(struct archive *a, void *data, const void **buf)
{
  struct ex *x = data;
  if (img__canceled(x->o->cancel)) {
    if (!x->cb_err)
      img__err_canceled(&x->cb_err);
    archive_set_error(a, ECANCELED, "canceled");
    return -1;
  }
  ssize_t n = x->rd(x->rctx, x->inbuf, EX_BUF, x->cb_err ? NULL : &x->cb_err);
  if (n < 0) {
    archive_set_error(a, EIO, "read failed");
    return -1;
  }
  *buf = x->inbuf;
  return n;
}

static la_ssize_t
inner_read(struct archive *a, void *data, const void **buf)
{
  struct ex *x = data;
  if (x->outer_eof)
    return 0;
  la_ssize_t n = archive_read_data(x->outer, x->midbuf, EX_BUF);
  if (n < 0) {
    if (!x->cb_err)
      ci_error_make(&x->cb_err, CI_EPROTO, "cannot decompress layer: %s",
                    archive_error_string(x->outer));
    archive_set_error(a, EIO, "decompression failed");
    return -1;
  }
  if (n == 0)
    x->outer_eof = true;
  img__hash_update(&x->hash, x->midbuf, (size_t)n);
  *buf = x->midbuf;
  return n;
}

/* ------------------------------------------------------------ paths */

/* Normalise an archive path into out (a clean relative path: no leading "/" or "./", no
 * empty, "." or ".." components).  "" is the layer root. */
static int
clean_path(const char *in, const char *what, struct ci_buf *out, struct ci_error **err)
{
  ci_buf_reset(out);
  if (!in)
    return ci_error_make(err, CI_EPROTO, "layer has an entry without a usable %s", what);
  if (in[0] == '/')
    return ci_error_make(err, CI_EPROTO, "layer entry %s '%s' is an absolute path", what, in);
  for (const char *p = in; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return ci_error_make(err, CI_EPROTO, "layer entry %s '%s' contains '..'", what, in);
    if (n > 0 && !(n == 1 && p[0] == '.')) {
      if (out->len)
        ci_buf_addc(out, '/');
      ci_buf_add(out, p, n);
    }
    if (!e)
      break;
    p = e + 1;
  }
  return 0;
}

static long
sys_openat2(int dfd, const char *path, int flags, unsigned long long resolve)
{
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = (unsigned long long)flags;
  how.resolve = resolve;
  return syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}

/* Open rel (non-empty clean path) below root, every component resolved inside root.
 * Without openat2: walk the components with O_NOFOLLOW and refuse symlinks (EXDEV). */
static int
open_beneath(int root, const char *rel, int flags)
{
  if (!img__test_no_openat2 && !have_no_openat2) {
    long fd = sys_openat2(root, rel, flags | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    if (fd >= 0 || errno != ENOSYS)
      return (int)fd;
    have_no_openat2 = true;
  }
  int cur = fcntl(root, F_DUPFD_CLOEXEC, 0);
  if (cur < 0)
    return -1;
  cleanup_free char *copy = xstrdup(rel);
  char *save = NULL;
  char *comp = strtok_r(copy, "/", &save);
  while (comp) {
    char *next_comp = strtok_r(NULL, "/", &save);
    bool last = next_comp == NULL;
    struct stat st;
    if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      int e = errno;
      close(cur);
      errno = e;
      return -1;
    }
    if (S_ISLNK(st.st_mode) &&
        !(last && (flags & O_NOFOLLOW) && (flags & O_PATH) && !(flags & O_DIRECTORY))) {
      close(cur);
      errno = last && (flags & O_NOFOLLOW) ? ELOOP : EXDEV;
      return -1;
    }
    int nf = last ? flags | O_NOFOLLOW | O_CLOEXEC : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(cur, comp, nf);
    int e = errno;
    close(cur);
    if (fd < 0) {
      errno = e;
      return -1;
    }
    cur = fd;
    comp = next_comp;
  }
  return cur;
}

static void
cache_drop(struct ex *x)
{
  if (x->cache_fd >= 0)
    close(x->cache_fd);
  x->cache_fd = -1;
  free(x->cache_path);
  x->cache_path = NULL;
}

/* The cached directory may no longer be what its path resolves to once something at or above
 * that path is removed or replaced (by a symlink, say): forget it then. */
static void
cache_invalidate(struct ex *x, const char *changed)
{
  if (!x->cache_path)
    return;
  size_t n = strlen(changed);
  if (!strncmp(x->cache_path, changed, n) && (x->cache_path[n] == '\0' || x->cache_path[n] == '/'))
    cache_drop(x);
}

static void
record_dir(struct ex *x, const char *path, mode_t mode, uid_t uid, gid_t gid,
           const struct timespec *mtime)
{
  CI_GROW(x->dirs, x->alloc_dirs, x->n_dirs + 1);
  struct dmeta *d = &x->dirs[x->n_dirs];
  d->path = xstrdup(path);
  d->seq = x->n_dirs;
  d->mode = mode;
  d->uid = uid;
  d->gid = gid;
  d->has_mtime = mtime != NULL;
  if (mtime)
    d->mtime = *mtime;
  x->n_dirs++;
}

static int
path_error(int e, const char *entry, const char *what, struct ci_error **err)
{
  if (e == EXDEV || e == ELOOP)
    return ci_error_make(err, CI_EPROTO,
                         "layer entry '%s': %s leads outside the layer through a symlink", entry,
                         what);
  if (e == ENOTDIR)
    return ci_error_make(err, CI_EPROTO, "layer entry '%s': %s is not a directory", entry, what);
  return ci_error_make(err, -e, "layer entry '%s': cannot open %s: %s", entry, what, strerror(e));
}

/* An O_PATH fd of the directory dir (clean relative path, "" = root).  With create, missing
 * components are made (mode 0755 recorded, as tar does for implicit directories).  The result
 * is borrowed from the cache: do not close it. */
static int
get_dir(struct ex *x, const char *dir, bool create, const char *entry, struct ci_error **err)
{
  if (x->cache_path && !strcmp(x->cache_path, dir))
    return x->cache_fd;
  cache_drop(x);
  int fd;
  if (!*dir)
    fd = fcntl(x->root, F_DUPFD_CLOEXEC, 0);
  else
    fd = open_beneath(x->root, dir, O_PATH | O_DIRECTORY);
  if (fd < 0 && errno == ENOENT && create) {
    /* Make the missing components one by one, each resolved from the root again. */
    struct ci_buf prefix = CI_BUF_INIT;
    ci_buf_init(&prefix);
    fd = -1;
    for (const char *p = dir;;) {
      const char *e = strchr(p, '/');
      size_t n = e ? (size_t)(e - p) : strlen(p);
      size_t parent_len = prefix.len;
      if (prefix.len)
        ci_buf_addc(&prefix, '/');
      ci_buf_add(&prefix, p, n);
      int cfd = open_beneath(x->root, prefix.s, O_PATH | O_DIRECTORY);
      if (cfd < 0 && errno == ENOENT) {
        int pfd;
        if (parent_len == 0) {
          pfd = fcntl(x->root, F_DUPFD_CLOEXEC, 0);
        } else {
          prefix.s[parent_len] = '\0';
          pfd = open_beneath(x->root, prefix.s, O_PATH | O_DIRECTORY);
          prefix.s[parent_len] = '/';
        }
        if (pfd < 0) {
          int en = errno;
          ci_buf_release(&prefix);
          return path_error(en, entry, "its parent directory", err);
        }
        cleanup_free char *comp = xstrndup(p, n);
        if (mkdirat(pfd, comp, 0700) < 0 && errno != EEXIST) {
          int en = errno;
          close(pfd);
          ci_buf_release(&prefix);
          return ci_error_make(err, -en, "layer entry '%s': cannot create directory: %s", entry,
                               strerror(en));
        }
        close(pfd);
        record_dir(x, prefix.s, 0755, 0, 0, NULL);
        cfd = open_beneath(x->root, prefix.s, O_PATH | O_DIRECTORY);
      }
      if (cfd < 0) {
        int en = errno;
        ci_buf_release(&prefix);
        return path_error(en, entry, "its parent directory", err);
      }
      if (!e) {
        fd = cfd;
        break;
      }
      close(cfd);
      p = e + 1;
    }
    ci_buf_release(&prefix);
  }
  if (fd < 0)
    return path_error(errno, entry, "its parent directory", err);
  x->cache_fd = fd;
  x->cache_path = xstrdup(dir);
  return fd;
}

/* Remove whatever is at name in pfd unless keep_dir and it is a directory.
 * Returns 1 when a directory was kept, 0 otherwise. */
static int
clear_slot(struct ex *x, int pfd, const char *name, const char *path, bool keep_dir,
           struct ci_error **err)
{
  struct stat st;
  if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      return 0;
    return ci_error_make(err, -errno, "layer entry '%s': %s", path, strerror(errno));
  }
  if (S_ISDIR(st.st_mode) && keep_dir)
    return 1;
  cache_invalidate(x, path);
  if (S_ISDIR(st.st_mode)) {
    int ret = img__rm_rf_at(pfd, name, err);
    if (ret < 0)
      return IMG__PREFIX(err, ret, "layer entry '%s'", path);
    return 0;
  }
  if (unlinkat(pfd, name, 0) < 0)
    return ci_error_make(err, -errno, "layer entry '%s': cannot replace: %s", path,
                         strerror(errno));
  return 0;
}

enum mk_kind { MK_FILE, MK_DIR, MK_SYMLINK, MK_FIFO, MK_HARDLINK };

/* Create name in pfd, optimistically: only when the name is taken is whatever is there removed
 * (never followed) and the creation tried once more.  MK_DIR keeps an existing directory and
 * returns 1; MK_FILE returns the new file's descriptor; the others return 0. */
static int
create_entry(struct ex *x, int pfd, const char *name, const char *path, enum mk_kind kind,
             const char *target, int tfd, const char *tname, struct ci_error **err)
{
  static const char *const what[] = {"file", "directory", "symlink", "fifo", "hardlink"};
  for (int attempt = 0;; attempt++) {
    int r = -1;
    switch (kind) {
    case MK_FILE:
      r = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      break;
    case MK_DIR:
      r = mkdirat(pfd, name, 0700);
      break;
    case MK_SYMLINK:
      r = symlinkat(target, pfd, name);
      break;
    case MK_FIFO:
      r = mkfifoat(pfd, name, 0600);
      break;
    case MK_HARDLINK:
      r = linkat(tfd, tname, pfd, name, 0);
      break;
    }
    if (r >= 0)
      return kind == MK_FILE ? r : 0;
    if (errno != EEXIST || attempt > 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot create %s: %s", path, what[kind],
                           strerror(errno));
    int kept = clear_slot(x, pfd, name, path, kind == MK_DIR, err);
    if (kept != 0)
      return kept; /* an error, or the directory that is already there */
  }
}

/* Whether an entry's owner must be set: only when the store keeps owners and the entry's
 * differs from what a new file gets anyway (our ids; no setgid directory exists while
 * extracting, as directory modes are applied at the end, unless the layer root has it). */
static bool
need_chown(const struct ex *x, uid_t uid, gid_t gid)
{
  return x->o->preserve_owner && (uid != x->euid || gid != x->egid || x->root_sgid);
}

static mode_t
safe_file_mode(struct ex *x, const char *path, mode_t mode)
{
  mode_t m = mode & 07777;
  if (m & (S_ISUID | S_ISGID)) {
    ci_log_debug("layer entry '%s': clearing setuid/setgid bits (mode %04o)", path, (unsigned)m);
    x->neutralised++;
  }
  return m & (S_ISVTX | 0777);
}

static void
apply_xattrs(struct ex *x, int fd, struct archive_entry *e, const char *path)
{
  const char *name;
  const void *value;
  size_t size;
  if (archive_entry_xattr_reset(e) == 0)
    return;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (!name)
      continue;
    if (strncmp(name, "user.", 5) != 0 || !strncmp(name, "user.overlay.", 13)) {
      ci_log_debug("layer entry '%s': dropping xattr '%s'", path, name);
      x->neutralised++;
      continue;
    }
    if (fsetxattr(fd, name, value, size, 0) < 0)
      ci_log_debug("layer entry '%s': cannot set xattr '%s': %s", path, name, strerror(errno));
  }
}

static int
set_opaque(struct ex *x, const char *dir, const char *entry, struct ci_error **err)
{
  int pfd = get_dir(x, dir, true, entry, err); /* makes sure it exists */
  if (pfd < 0)
    return pfd;
  cleanup_close int fd = -1;
  if (!*dir)
    fd = openat(x->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else
    fd = open_beneath(x->root, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0)
    return path_error(errno, entry, "the opaque directory", err);
  enum img_opaque_xattr m = x->o->opaque;
  if ((m == IMG_OPAQUE_USER || m == IMG_OPAQUE_BOTH) &&
      fsetxattr(fd, "user.overlay.opaque", "y", 1, 0) < 0)
    return ci_error_make(err, -errno, "layer entry '%s': cannot set user.overlay.opaque: %s", entry,
                         strerror(errno));
  if ((m == IMG_OPAQUE_TRUSTED || m == IMG_OPAQUE_BOTH) &&
      fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) < 0)
    return ci_error_make(err, -errno,
                         "layer entry '%s': cannot set trusted.overlay.opaque: %s (needs root; "
                         "use the user opaque xattr mode for a rootless store)",
                         entry, strerror(errno));
  return 0;
}

static int
write_data(struct ex *x, int fd, struct archive_entry *e, const char *path, struct ci_error **err)
{
  const void *buf;
  size_t size;
  la_int64_t off;
  int64_t end = 0;
  for (;;) {
    if (img__canceled(x->o->cancel))
      return img__err_canceled(err);
    int r = archive_read_data_block(x->inner, &buf, &size, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      if (x->cb_err) {
        *err = steal_pointer(&x->cb_err);
        return (*err)->code;
      }
      return ci_error_make(err, CI_EPROTO, "layer entry '%s': %s", path,
                           archive_error_string(x->inner));
    }
    const char *p = buf;
    size_t left = size;
    while (left > 0) {
      ssize_t w = pwrite(fd, p, left, off);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        return ci_error_make(err, -errno, "layer entry '%s': cannot write: %s", path,
                             strerror(errno));
      }
      p += w;
      off += w;
      left -= (size_t)w;
    }
    x->res.bytes += size;
    if (off > end)
      end = off;
  }
  int64_t want = archive_entry_size(e);
  if (want > end && ftruncate(fd, want) < 0) /* sparse tail */
    return ci_error_make(err, -errno, "layer entry '%s': cannot extend: %s", path, strerror(errno));
  return 0;
}

static int
do_entry(struct ex *x, struct archive_entry *e, struct ci_buf *path, struct ci_buf *tmp,
         struct ci_error **err)
{
  int ret = clean_path(archive_entry_pathname(e), "path", path, err);
  if (ret < 0)
    return ret;
  if (path->len == 0)
    return 0; /* the layer root "./": its metadata is the runtime's business */
  const char *p = path->s;
  const char *slash = strrchr(p, '/');
  const char *name = slash ? slash + 1 : p;
  cleanup_free char *dir = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup("");

  /* OCI whiteouts */
  if (!strncmp(name, ".wh.", 4)) {
    if (!strcmp(name, ".wh..wh..opq"))
      return set_opaque(x, dir, p, err);
    if (!strncmp(name, ".wh..wh.", 8))
      return 0; /* aufs bookkeeping (.wh..wh.plnk etc.): meaningless here */
    const char *target = name + 4;
    if (!*target || !strcmp(target, ".") || !strcmp(target, ".."))
      return ci_error_make(err, CI_EPROTO, "layer entry '%s' is an invalid whiteout", p);
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    struct stat st;
    if (fstatat(pfd, target, &st, AT_SYMLINK_NOFOLLOW) == 0)
      return 0; /* present in this same layer: a whiteout only hides lower layers */
    if (mknodat(pfd, target, S_IFCHR | 0, makedev(0, 0)) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot create whiteout: %s", p,
                           strerror(errno));
    return 0;
  }

  uid_t uid = (uid_t)archive_entry_uid(e);
  gid_t gid = (gid_t)archive_entry_gid(e);
  if (x->o->preserve_owner && x->o->id_shift) {
    uid = x->o->id_shift + (uid < 65536 ? uid : 65534);
    gid = x->o->id_shift + (gid < 65536 ? gid : 65534);
  }
  bool own = need_chown(x, uid, gid);
  struct timespec times[2];
  bool has_mtime = archive_entry_mtime_is_set(e);
  times[0].tv_sec = times[1].tv_sec = archive_entry_mtime(e);
  times[0].tv_nsec = times[1].tv_nsec = archive_entry_mtime_nsec(e);

  /* hardlinks */
  const char *hl = archive_entry_hardlink(e);
  if (hl) {
    ret = clean_path(hl, "hardlink target", tmp, err);
    if (ret < 0)
      return IMG__PREFIX(err, ret, "layer entry '%s'", p);
    if (tmp->len == 0)
      return ci_error_make(err, CI_EPROTO, "layer entry '%s' is a hardlink to the layer root", p);
    if (!strcmp(tmp->s, p))
      return 0;
    const char *ts = strrchr(tmp->s, '/');
    const char *tname = ts ? ts + 1 : tmp->s;
    cleanup_free char *tdir = ts ? xstrndup(tmp->s, (size_t)(ts - tmp->s)) : xstrdup("");
    cleanup_close int tfd = -1;
    if (!*tdir)
      tfd = fcntl(x->root, F_DUPFD_CLOEXEC, 0);
    else
      tfd = open_beneath(x->root, tdir, O_PATH | O_DIRECTORY);
    if (tfd < 0) {
      if (errno == ENOENT)
        return ci_error_make(err, CI_EPROTO,
                             "layer entry '%s' is a hardlink to '%s', which is not in the layer", p,
                             hl);
      return path_error(errno, p, "its hardlink target", err);
    }
    struct stat tst;
    if (fstatat(tfd, tname, &tst, AT_SYMLINK_NOFOLLOW) < 0)
      return ci_error_make(err, CI_EPROTO,
                           "layer entry '%s' is a hardlink to '%s', which is not in the layer", p,
                           hl);
    if (S_ISDIR(tst.st_mode))
      return ci_error_make(err, CI_EPROTO, "layer entry '%s' is a hardlink to a directory", p);
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    ret = create_entry(x, pfd, name, p, MK_HARDLINK, NULL, tfd, tname, err);
    return ret < 0 ? ret : 0;
  }

  mode_t type = archive_entry_filetype(e);
  mode_t mode = archive_entry_perm(e);
  switch (type) {
  case AE_IFDIR: {
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    int kept = create_entry(x, pfd, name, p, MK_DIR, NULL, -1, NULL, err);
    if (kept < 0)
      return kept;
    mode_t m = mode & 07777;
    if (m & S_ISUID) {
      x->neutralised++;
      m &= ~(mode_t)S_ISUID;
    }
    record_dir(x, p, m, uid, gid, has_mtime ? &times[1] : NULL);
    if (archive_entry_xattr_count(e) > 0) {
      cleanup_close int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (dfd >= 0)
        apply_xattrs(x, dfd, e, p);
    }
    return 0;
  }
  case AE_IFREG: {
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    cleanup_close int fd = create_entry(x, pfd, name, p, MK_FILE, NULL, -1, NULL, err);
    if (fd < 0)
      return fd;
    if ((ret = write_data(x, fd, e, p, err)) < 0)
      return ret;
    if (own && fchown(fd, uid, gid) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot chown: %s", p, strerror(errno));
    if (fchmod(fd, safe_file_mode(x, p, mode)) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot chmod: %s", p, strerror(errno));
    apply_xattrs(x, fd, e, p);
    if (has_mtime)
      (void)futimens(fd, times);
    return 0;
  }
  case AE_IFLNK: {
    const char *target = archive_entry_symlink(e);
    if (!target || !*target)
      return ci_error_make(err, CI_EPROTO, "layer entry '%s' is a symlink without a target", p);
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    cache_invalidate(x, p);
    if ((ret = create_entry(x, pfd, name, p, MK_SYMLINK, target, -1, NULL, err)) < 0)
      return ret;
    if (own && fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot chown: %s", p, strerror(errno));
    if (has_mtime)
      (void)utimensat(pfd, name, times, AT_SYMLINK_NOFOLLOW);
    return 0;
  }
  case AE_IFIFO: {
    int pfd = get_dir(x, dir, true, p, err);
    if (pfd < 0)
      return pfd;
    if ((ret = create_entry(x, pfd, name, p, MK_FIFO, NULL, -1, NULL, err)) < 0)
      return ret;
    /* The name is ours (just made, in a private directory), so fchmodat cannot be fooled. */
    if (own && fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot chown: %s", p, strerror(errno));
    if (fchmodat(pfd, name, safe_file_mode(x, p, mode), 0) < 0)
      return ci_error_make(err, -errno, "layer entry '%s': cannot chmod: %s", p, strerror(errno));
    if (has_mtime)
      (void)utimensat(pfd, name, times, AT_SYMLINK_NOFOLLOW);
    return 0;
  }
  case AE_IFCHR:
  case AE_IFBLK:
  case AE_IFSOCK:
    ci_log_debug("layer entry '%s': skipping %s", p, type == AE_IFSOCK ? "socket" : "device node");
    x->neutralised++;
    return 0;
  default:
    return ci_error_make(err, CI_EPROTO, "layer entry '%s' has an unknown type 0%o", p,
                         (unsigned)type);
  }
}

static int
cmp_dmeta(const void *a, const void *b)
{
  const struct dmeta *x = a, *y = b;
  int c = strcmp(x->path, y->path);
  if (c)
    return c;
  return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0; /* latest first */
}

/* Directory modes, owners and times are applied last (adding entries changes mtimes, and a
 * 0555 directory would refuse its own entries), children before parents. */
static int
apply_dir_meta(struct ex *x, struct ci_error **err)
{
  if (!x->n_dirs)
    return 0;
  qsort(x->dirs, x->n_dirs, sizeof(*x->dirs), cmp_dmeta);
  /* Sorted by path, the latest record of each path first; a parent sorts before its children,
   * so walking backwards visits children first.  Only the latest record of a path counts. */
  for (size_t i = x->n_dirs; i-- > 0;) {
    if (i > 0 && !strcmp(x->dirs[i - 1].path, x->dirs[i].path))
      continue;
    const struct dmeta *d = &x->dirs[i];
    int fd = open_beneath(x->root, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == EXDEV)
        continue; /* replaced later by something else */
      return ci_error_make(err, -errno, "layer directory '%s': %s", d->path, strerror(errno));
    }
    int e = 0;
    if (x->o->preserve_owner && fchown(fd, d->uid, d->gid) < 0)
      e = errno;
    if (!e && fchmod(fd, d->mode) < 0)
      e = errno;
    if (!e && d->has_mtime) {
      struct timespec ts[2] = {d->mtime, d->mtime};
      (void)futimens(fd, ts);
    }
    close(fd);
    if (e)
      return ci_error_make(err, -e, "layer directory '%s': %s", d->path, strerror(e));
  }
  return 0;
}

int
img__extract(int dirfd, img__read_fn rd, void *rctx, const struct img__extract_opts *o,
             struct img__extract_result *res, struct ci_error **err_out)
{
  struct ci_error *lerr = NULL;
  struct ci_error **err = &lerr; /* callers may pass NULL; the code below wants a slot */
  struct ex x;
  memset(&x, 0, sizeof(x));
  x.root = dirfd;
  x.o = o;
  x.rd = rd;
  x.rctx = rctx;
  x.cache_fd = -1;
  x.euid = geteuid();
  x.egid = getegid();
  struct stat rst;
  x.root_sgid = fstat(dirfd, &rst) == 0 && (rst.st_mode & S_ISGID);
  x.inbuf = xmalloc(EX_BUF);
  x.midbuf = xmalloc(EX_BUF);
  img__hash_init(&x.hash);
  struct ci_buf path = CI_BUF_INIT, tmp = CI_BUF_INIT;
  ci_buf_init(&path);
  ci_buf_init(&tmp);
  int ret = 0;

  x.outer = archive_read_new();
  x.inner = archive_read_new();
  if (!x.outer || !x.inner)
    CI_BUG("archive_read_new failed");
  /* Only in-process decompressors: support_filter_all would also run external programs. */
  archive_read_support_filter_gzip(x.outer);
  archive_read_support_filter_zstd(x.outer);
  archive_read_support_filter_bzip2(x.outer);
  archive_read_support_filter_xz(x.outer);
  archive_read_support_format_raw(x.outer);
  archive_read_support_format_tar(x.inner);

  struct archive_entry *e;
  if (archive_read_open(x.outer, &x, NULL, outer_read, NULL) != ARCHIVE_OK ||
      archive_read_next_header(x.outer, &e) != ARCHIVE_OK) {
    if (!x.cb_err)
      ci_error_make(&x.cb_err, CI_EPROTO, "cannot read layer: %s",
                    archive_error_string(x.outer) ? archive_error_string(x.outer)
                                                  : "empty or unreadable");
    ret = -1;
  } else if (archive_read_open(x.inner, &x, NULL, inner_read, NULL) != ARCHIVE_OK) {
    if (!x.cb_err)
      ci_error_make(&x.cb_err, CI_EPROTO, "layer is not a tar archive: %s",
                    archive_error_string(x.inner));
    ret = -1;
  }
  while (ret == 0) {
    if (img__canceled(o->cancel)) {
      ret = img__err_canceled(err);
      break;
    }
    int r = archive_read_next_header(x.inner, &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r == ARCHIVE_WARN) {
      ci_log_debug("layer: %s", archive_error_string(x.inner));
    } else if (r != ARCHIVE_OK) {
      if (!x.cb_err)
        ci_error_make(&x.cb_err, CI_EPROTO, "invalid layer tar: %s", archive_error_string(x.inner));
      ret = -1;
      break;
    }
    x.res.entries++;
    ret = do_entry(&x, e, &path, &tmp, err);
  }
  /* Hash whatever follows the end-of-archive blocks: the diff id covers the whole stream. */
  while (ret == 0 && !x.outer_eof) {
    la_ssize_t n = archive_read_data(x.outer, x.midbuf, EX_BUF);
    if (n < 0) {
      if (!x.cb_err)
        ci_error_make(&x.cb_err, CI_EPROTO, "cannot decompress layer: %s",
                      archive_error_string(x.outer));
      ret = -1;
      break;
    }
    if (n == 0)
      x.outer_eof = true;
    img__hash_update(&x.hash, x.midbuf, (size_t)n);
  }
  if (ret == 0)
    ret = apply_dir_meta(&x, err);
  if (ret < 0 && !lerr) {
    if (!x.cb_err)
      CI_BUG("layer extraction failed without an error");
    ret = x.cb_err->code;
    lerr = steal_pointer(&x.cb_err);
  }
  if (ret < 0) {
    if (err_out)
      *err_out = steal_pointer(&lerr);
    ci_error_free(&lerr);
  }
  if (ret == 0) {
    img__hash_final(&x.hash, x.res.diff_id);
    if (x.neutralised)
      ci_log_debug("layer: %u entries or attributes neutralised", x.neutralised);
    *res = x.res;
  }
  archive_read_free(x.inner);
  archive_read_free(x.outer);
  ci_error_free(&x.cb_err);
  img__hash_release(&x.hash);
  cache_drop(&x);
  for (size_t i = 0; i < x.n_dirs; i++)
    free(x.dirs[i].path);
  free(x.dirs);
  free(x.inbuf);
  free(x.midbuf);
  ci_buf_release(&path);
  ci_buf_release(&tmp);
  return ret;
}
