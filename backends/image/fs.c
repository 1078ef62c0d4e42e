/* backends/image/fs.c - directories, atomic files, recursive removal and lock files. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
img__mkdirs(const char *path, mode_t mode, struct ci_error **err)
{
  cleanup_free char *p = xstrdup(path);
  size_t len = strlen(p);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, mode) < 0 && errno != EEXIST)
      return ci_error_make(err, -errno, "cannot create directory '%s': %s", p, strerror(errno));
    p[i] = c;
  }
  struct stat st;
  if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
    return ci_error_make(err, -ENOTDIR, "cannot create directory '%s': not a directory", path);
  return 0;
}

/* Open the directory name below dfd without following symlinks, making it readable,
 * writable and searchable by us first if it is not. */
static int
open_dir_for_removal(int dfd, const char *name)
{
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) {
    if (fchmodat(dfd, name, 0700, 0) < 0)
      return -1;
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700)
    (void)fchmod(fd, (st.st_mode & 07777) | 0700);
  return fd;
}

/* One directory level of the removal walk: the names of its subdirectories still to visit. */
struct rm_level {
  struct ci_strv subdirs;
  size_t next;
  char *name; /* owned; this directory's name in its parent */
};

/* Unlink every non-directory in fd and collect the subdirectories into lv. */
static int
rm_scan(int fd, struct rm_level *lv, const char *what, struct ci_error **err)
{
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0)
    return ci_error_make(err, -errno, "cannot remove '%s': %s", what, strerror(errno));
  DIR *d = fdopendir(dup_fd);
  if (!d) {
    int e = errno;
    close(dup_fd);
    return ci_error_make(err, -e, "cannot remove '%s': %s", what, strerror(e));
  }
  int ret = 0;
  struct dirent *de;
  while ((errno = 0, de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    bool is_dir = de->d_type == DT_DIR;
    if (de->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        is_dir = S_ISDIR(st.st_mode);
    }
    if (is_dir) {
      ci_strv_push(&lv->subdirs, de->d_name);
    } else if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT) {
      ret = ci_error_make(err, -errno, "cannot remove '%s/%s': %s", what, de->d_name,
                          strerror(errno));
      break;
    }
  }
  if (ret == 0 && errno != 0)
    ret = ci_error_make(err, -errno, "cannot read directory '%s': %s", what, strerror(errno));
  closedir(d);
  return ret;
}

static void
rm_levels_release(struct rm_level *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    ci_strv_release(&v[i].subdirs);
    free(v[i].name);
  }
  free(v);
}

/* Depth-first removal that keeps one directory fd open at a time (climbing back with ".."),
 * so arbitrarily deep trees (a hostile layer can nest beyond PATH_MAX through symlinked
 * parents) neither exhaust descriptors nor the stack. */
int
img__rm_rf_at(int dfd, const char *name, struct ci_error **err)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      return 0;
    return ci_error_make(err, -errno, "cannot remove '%s': %s", name, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
      return ci_error_make(err, -errno, "cannot remove '%s': %s", name, strerror(errno));
    return 0;
  }
  int cur = open_dir_for_removal(dfd, name);
  if (cur < 0)
    return ci_error_make(err, -errno, "cannot remove '%s': %s", name, strerror(errno));
  struct rm_level *lv = NULL;
  size_t n = 0, alloc = 0;
  CI_GROW(lv, alloc, 1);
  lv[0] = (struct rm_level){CI_STRV_INIT, 0, xstrdup(name)};
  n = 1;
  int ret = rm_scan(cur, &lv[0], name, err);
  while (ret == 0 && n > 0) {
    struct rm_level *top = &lv[n - 1];
    if (top->next < top->subdirs.n) {
      const char *sub = top->subdirs.v[top->next++];
      int child = open_dir_for_removal(cur, sub);
      if (child < 0) {
        if (errno == ENOENT)
          continue;
        ret =
            ci_error_make(err, -errno, "cannot remove '%s/.../%s': %s", name, sub, strerror(errno));
        break;
      }
      close(cur);
      cur = child;
      CI_GROW(lv, alloc, n + 1);
      lv[n] = (struct rm_level){CI_STRV_INIT, 0, xstrdup(sub)};
      n++;
      ret = rm_scan(cur, &lv[n - 1], name, err);
      continue;
    }
    /* This directory is empty now: climb up and remove it. */
    if (n == 1) {
      close(cur);
      cur = -1;
      if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        ret = ci_error_make(err, -errno, "cannot remove '%s': %s", name, strerror(errno));
      break; /* lv[0] is released below */
    }
    int parent = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0) {
      ret = ci_error_make(err, -errno, "cannot remove '%s': %s", name, strerror(errno));
      break;
    }
    close(cur);
    cur = parent;
    if (unlinkat(cur, top->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
      ret = ci_error_make(err, -errno, "cannot remove '%s/.../%s': %s", name, top->name,
                          strerror(errno));
      break;
    }
    ci_strv_release(&top->subdirs);
    free(top->name);
    n--;
  }
  if (cur >= 0)
    close(cur);
  rm_levels_release(lv, n);
  return ret;
}

int
img__rm_rf(const char *path, struct ci_error **err)
{
  return img__rm_rf_at(AT_FDCWD, path, err);
}

int
img__write_atomic(const char *path, const void *data, size_t len, struct ci_error **err)
{
  cleanup_free char *tmp = xasprintf("%s.tmp-XXXXXX", path);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot create '%s': %s", tmp, strerror(errno));
  const char *p = data;
  size_t left = len;
  int e = 0;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      e = errno;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  if (!e && fchmod(fd, 0644) < 0)
    e = errno;
  if (!e && fsync(fd) < 0)
    e = errno;
  if (close(fd) < 0 && !e)
    e = errno;
  if (!e && rename(tmp, path) < 0)
    e = errno;
  if (e) {
    unlink(tmp);
    return ci_error_make(err, -e, "cannot write '%s': %s", path, strerror(e));
  }
  return 0;
}

int
img__lock(const char *path, int op, const volatile sig_atomic_t *cancel, int *out,
          struct ci_error **err)
{
  bool nb = (op & LOCK_NB) != 0;
  op &= ~LOCK_NB;
  for (;;) {
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return ci_error_make(err, -errno, "cannot open lock file '%s': %s", path, strerror(errno));
    for (;;) {
      if (flock(fd, op | LOCK_NB) == 0)
        break;
      if (errno == EINTR)
        continue;
      if (errno != EWOULDBLOCK)
        return ci_error_make(err, -errno, "cannot lock '%s': %s", path, strerror(errno));
      if (nb)
        return -EWOULDBLOCK;
      if (!cancel) {
        if (flock(fd, op) == 0)
          break;
        if (errno == EINTR)
          continue;
        return ci_error_make(err, -errno, "cannot lock '%s': %s", path, strerror(errno));
      }
      if (img__canceled(cancel))
        return img__err_canceled(err);
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    /* The holder we waited for may have removed the file (prune does, while holding it):
     * a lock on an unlinked inode protects nothing, so start over on the new file. */
    struct stat a, b;
    if (fstat(fd, &a) < 0)
      return ci_error_make(err, -errno, "cannot stat lock '%s': %s", path, strerror(errno));
    if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      *out = steal_fd(&fd);
      return 0;
    }
  }
}
