/* backends/runtime/copy.c - files in and out of a container: tar (libarchive) and cat.
 *
 * Host files are opened before joining the container, so every host path is resolved in the
 * host's mount namespace and every container path in the container's (after chroot). */
#include "runtime.h"
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dlfcn.h>
#include <sys/sysmacros.h>
#include <grp.h>
#include <sched.h>

/* libarchive is loaded on first use: linking it would pull 16 libraries into every exec of the
 * helper (~3 ms of dynamic linking), and only cp-in and cp-out need it. */
#define LA_FUNCS \
  X(archive_read_new) \
  X(archive_write_disk_new) \
  X(archive_read_support_format_tar) \
  X(archive_read_support_format_gnutar) \
  X(archive_read_support_filter_none) \
  X(archive_write_disk_set_options) \
  X(archive_read_open_fd) \
  X(archive_error_string) \
  X(archive_read_next_header) \
  X(archive_entry_pathname) \
  X(archive_entry_hardlink) \
  X(archive_write_header) \
  X(archive_entry_size) \
  X(archive_read_data_block) \
  X(archive_write_data_block) \
  X(archive_write_finish_entry) \
  X(archive_write_close) \
  X(archive_read_free) \
  X(archive_write_free) \
  X(archive_read_disk_new) \
  X(archive_write_new) \
  X(archive_read_disk_set_symlink_physical) \
  X(archive_read_disk_set_standard_lookup) \
  X(archive_write_set_format_pax_restricted) \
  X(archive_write_set_bytes_in_last_block) \
  X(archive_write_open_fd) \
  X(archive_read_disk_open) \
  X(archive_entry_new) \
  X(archive_entry_clear) \
  X(archive_read_next_header2) \
  X(archive_read_disk_descend) \
  X(archive_entry_set_pathname) \
  X(archive_entry_filetype) \
  X(archive_entry_sourcepath) \
  X(archive_write_data) \
  X(archive_entry_free) \
  X(archive_read_disk_set_behavior) \
  X(archive_entry_rdev) \
  X(archive_entry_set_uname) \
  X(archive_entry_set_gname) \
  X(archive_entry_set_filetype) \
  X(archive_entry_set_perm) \
  X(archive_entry_set_size)
static struct {
#define X(f) __typeof__(&f) f;
  LA_FUNCS
#undef X
} la;

static int
la_load(struct ci_error **err)
{
  static bool loaded;
  if (loaded)
    return 0;
  void *h = dlopen(CI_LIBARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return ci_error_make(err, CI_EFAIL, "cannot load %s: %s", CI_LIBARCHIVE_SONAME, dlerror());
#define X(f)                                                                                       \
  if (!(la.f = (__typeof__(&f))dlsym(h, #f)))                                                      \
    return ci_error_make(err, CI_EFAIL, "%s has no %s", CI_LIBARCHIVE_SONAME, #f);
  LA_FUNCS
#undef X
  loaded = true;
  return 0;
}

int
rt_copy_in(const struct rt_file_opts *o, struct ci_error **err)
{
  cleanup_close int fd = open(o->tar, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", o->tar, strerror(errno));
  if (la_load(err) < 0 || rt__join(o->pid, false, err) < 0)
    return -1;
  umask(0);
  struct archive *a = la.archive_read_new();
  struct archive *w = la.archive_write_disk_new();
  la.archive_read_support_format_tar(a);
  la.archive_read_support_format_gnutar(a);
  la.archive_read_support_filter_none(a);
  la.archive_write_disk_set_options(
      w, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
             ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
             ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_UNLINK);
  int ret = 0;
  if (la.archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", o->tar, la.archive_error_string(a));
    goto out;
  }
  struct archive_entry *e;
  for (;;) {
    int r = la.archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", o->tar, la.archive_error_string(a));
      goto out;
    }
    const char *name = la.archive_entry_pathname(e);
    if (!name || name[0] == '/' || !strcmp(name, "..") || !strncmp(name, "../", 3) ||
        strstr(name, "/../") || (strlen(name) >= 3 && !strcmp(name + strlen(name) - 3, "/.."))) {
      ret = ci_error_make(err, CI_EFAIL, "%s: refusing entry '%s' (absolute or with '..')",
                          o->tar, name ? name : "");
      goto out;
    }
    const char *hl = la.archive_entry_hardlink(e);
    if (hl && (hl[0] == '/' || strstr(hl, ".."))) {
      ret = ci_error_make(err, CI_EFAIL, "%s: refusing hard link '%s' -> '%s'", o->tar, name, hl);
      goto out;
    }
    r = la.archive_write_header(w, e);
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, la.archive_error_string(w));
      goto out;
    }
    if (la.archive_entry_size(e) > 0) {
      const void *buf;
      size_t size;
      la_int64_t off;
      while ((r = la.archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
        if (la.archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN) {
          ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, la.archive_error_string(w));
          goto out;
        }
      }
      if (r != ARCHIVE_EOF) {
        ret = ci_error_make(err, CI_EFAIL, "%s: %s", o->tar, la.archive_error_string(a));
        goto out;
      }
    }
    if (la.archive_write_finish_entry(w) < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, la.archive_error_string(w));
      goto out;
    }
  }
  if (la.archive_write_close(w) < ARCHIVE_WARN)
    ret = ci_error_make(err, CI_EFAIL, "%s", la.archive_error_string(w));
out:
  la.archive_read_free(a);
  la.archive_write_free(w);
  return ret;
}

/* The data of the file at path (size bytes, as its header said) into w. */
static int
copy_data(struct archive *w, const char *path, la_int64_t size, struct ci_error **err)
{
  cleanup_close int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", path, strerror(errno));
  char buf[65536];
  la_int64_t left = size;
  while (left > 0) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (n > left)
      n = (ssize_t)left;
    if (la.archive_write_data(w, buf, (size_t)n) < 0)
      return ci_error_make(err, CI_EFAIL, "%s: %s", path, la.archive_error_string(w));
    left -= n;
  }
  memset(buf, 0, sizeof buf);
  while (left > 0) { /* shrank meanwhile: keep the archive valid */
    size_t n = left > (la_int64_t)sizeof buf ? sizeof buf : (size_t)left;
    la.archive_write_data(w, buf, n);
    left -= (la_int64_t)n;
  }
  return 0;
}

/* A tar of a directory tree on disk, read with libarchive's disk reader (symlinks not
 * followed): dt_open, dt_next for each entry (dt.e, its path as read), dt_write of the entries
 * to keep, dt_close. */
struct disk_tar {
  struct archive *disk, *w;
  struct archive_entry *e;
  const char *what; /* the tree, for messages */
};

static int
dt_open(struct disk_tar *t, int fd, const char *root, int behavior, struct ci_error **err)
{
  t->what = root;
  t->disk = la.archive_read_disk_new();
  t->w = la.archive_write_new();
  t->e = la.archive_entry_new();
  la.archive_read_disk_set_symlink_physical(t->disk);
  if (behavior)
    la.archive_read_disk_set_behavior(t->disk, behavior);
  else
    la.archive_read_disk_set_standard_lookup(t->disk);
  la.archive_write_set_format_pax_restricted(t->w);
  la.archive_write_set_bytes_in_last_block(t->w, 1);
  if (la.archive_write_open_fd(t->w, fd) != ARCHIVE_OK ||
      la.archive_read_disk_open(t->disk, root) != ARCHIVE_OK)
    return ci_error_make(err, CI_EFAIL, "%s: %s", root,
                         la.archive_error_string(t->disk) ? la.archive_error_string(t->disk)
                                                          : la.archive_error_string(t->w));
  return 0;
}

/* 1: an entry in t->e; 0: the end; -1: an error. */
static int
dt_next(struct disk_tar *t, struct ci_error **err)
{
  la.archive_entry_clear(t->e);
  int r = la.archive_read_next_header2(t->disk, t->e);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r < ARCHIVE_WARN)
    return ci_error_make(err, CI_EFAIL, "%s: %s", t->what, la.archive_error_string(t->disk));
  return 1;
}

/* Write the current entry as name, with the data of src for a regular file. */
static int
dt_write(struct disk_tar *t, const char *name, const char *src, struct ci_error **err)
{
  la.archive_entry_set_pathname(t->e, name);
  if (la.archive_write_header(t->w, t->e) < ARCHIVE_WARN)
    return ci_error_make(err, CI_EFAIL, "%s: %s", src, la.archive_error_string(t->w));
  if (la.archive_entry_filetype(t->e) == AE_IFREG && la.archive_entry_size(t->e) > 0)
    return copy_data(t->w, src, la.archive_entry_size(t->e), err);
  return 0;
}

/* Finish the tar (named tar in messages) unless ret already failed; frees t. */
static int
dt_close(struct disk_tar *t, const char *tar, int ret, struct ci_error **err)
{
  if (ret == 0 && la.archive_write_close(t->w) != ARCHIVE_OK)
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", tar, la.archive_error_string(t->w));
  la.archive_entry_free(t->e);
  la.archive_read_free(t->disk);
  la.archive_write_free(t->w);
  return ret;
}

int
rt_copy_out(const struct rt_file_opts *o, struct ci_error **err)
{
  cleanup_close int fd = open(o->tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", o->tar, strerror(errno));
  if (la_load(err) < 0 || rt__join(o->pid, false, err) < 0)
    return -1;
  struct stat st;
  if (lstat(o->path, &st) < 0)
    return ci_error_make(err, -errno, "%s: %s", o->path, strerror(errno));
  /* Entries are named like docker cp: the basename of PATH, then what is below it. */
  cleanup_free char *copy = xstrdup(o->path);
  size_t pl = strlen(copy);
  while (pl > 1 && copy[pl - 1] == '/')
    copy[--pl] = '\0';
  const char *base = strrchr(copy, '/');
  base = base && base[1] ? base + 1 : (pl == 1 ? "." : copy);
  struct disk_tar t;
  int ret = dt_open(&t, fd, copy, 0, err);
  int r;
  while (ret == 0 && (r = dt_next(&t, err)) != 0) {
    if (r < 0) {
      ret = -1;
      break;
    }
    const char *p = la.archive_entry_pathname(t.e);
    /* "/": the container's pseudo file systems are kept as empty directories (docker cp
     * gives them so); what they hold is the kernel's, not the task's. */
    if (pl > 1 || (strcmp(p, "/proc") && strcmp(p, "/sys") && strcmp(p, "/dev")))
      la.archive_read_disk_descend(t.disk);
    const char *rest = pl == 1 ? p : p + strlen(copy);
    if (strncmp(p, copy, strlen(copy)) != 0)
      rest = "";
    cleanup_free char *name = xasprintf("%s%s", base, rest);
    const char *src = la.archive_entry_sourcepath(t.e);
    cleanup_free char *from = xstrdup(src ? src : p);
    ret = dt_write(&t, name, from, err);
  }
  return dt_close(&t, o->tar, ret, err);
}

int
rt_cat(const struct rt_file_opts *o, int out_fd, struct ci_error **err)
{
  if (rt__join(o->pid, false, err) < 0)
    return -1;
  cleanup_close int fd = open(o->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", o->path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0)
    return ci_error_make(err, -errno, "%s: %s", o->path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return ci_error_make(err, -EISDIR, "%s: %s", o->path, strerror(EISDIR));
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > o->max)
    return ci_error_make(err, -EFBIG, "%s: larger than %llu bytes", o->path,
                         (unsigned long long)o->max);
  /* Read it all first (within max) so nothing is written for a file that turns out too big. */
  struct ci_buf b = CI_BUF_INIT;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      ci_buf_release(&b);
      return ci_error_make(err, -e, "%s: %s", o->path, strerror(e));
    }
    if (n == 0)
      break;
    if (b.len + (size_t)n > o->max) {
      ci_buf_release(&b);
      return ci_error_make(err, -EFBIG, "%s: larger than %llu bytes", o->path,
                           (unsigned long long)o->max);
    }
    ci_buf_add(&b, buf, (size_t)n);
  }
  size_t off = 0;
  while (off < b.len) {
    ssize_t n = write(out_fd, b.s + off, b.len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int e = errno;
      ci_buf_release(&b);
      return ci_error_make(err, -e, "writing %s: %s", o->path, strerror(e));
    }
    off += (size_t)n;
  }
  ci_buf_release(&b);
  return 0;
}

/* ---------------------------------------------------------------- diff (the image builder)
 *
 * A container's changes as an OCI layer tar.  The upper directory of the container's overlay
 * holds what its processes changed.  Its files belong to the container's ids, which the host
 * user may not be able to read (subordinate ids): the tar is written from inside the
 * container's user namespace (but the host's mount namespace, where the upper directory is), so
 * that owners come out as the container sees them.  Overlay whiteouts (0:0 character devices)
 * become `.wh.NAME` entries and opaque directories (user.overlay.opaque=y) get a `.wh..wh..opq`
 * entry; the files the runtime writes itself (/etc/hosts, /etc/hostname, /etc/resolv.conf) are
 * left out, as Docker's builds do. */

static bool
runtime_file(const char *rel)
{
  return !strcmp(rel, "etc/hosts") || !strcmp(rel, "etc/hostname") ||
         !strcmp(rel, "etc/resolv.conf");
}

static int
write_empty(struct archive *w, const char *name, struct ci_error **err)
{
  struct archive_entry *e = la.archive_entry_new();
  la.archive_entry_set_pathname(e, name);
  la.archive_entry_set_filetype(e, AE_IFREG);
  la.archive_entry_set_perm(e, 0);
  la.archive_entry_set_size(e, 0);
  int r = la.archive_write_header(w, e);
  la.archive_entry_free(e);
  if (r < ARCHIVE_WARN)
    return ci_error_make(err, CI_EFAIL, "%s: %s", name, la.archive_error_string(w));
  return 0;
}

/* Join only the user namespace of pid's container and become its root. */
static int
join_userns(pid_t pid, struct ci_error **err)
{
  cleanup_close int pidfd = rt__pidfd_open(pid);
  if (pidfd < 0)
    return ci_error_make(err, -errno, "no container with init pid %d: %s", (int)pid,
                         strerror(errno));
  if (setns(pidfd, CLONE_NEWUSER) < 0)
    return ci_error_make(err, -errno, "cannot join the user namespace of pid %d: %s", (int)pid,
                         strerror(errno));
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
    return ci_error_make(err, -errno, "cannot become root in the container: %s", strerror(errno));
  if (setgroups(0, NULL) < 0 && errno != EPERM)
    return ci_error_make(err, -errno, "cannot drop supplementary groups: %s", strerror(errno));
  return 0;
}

int
rt_diff(const struct rt_file_opts *o, struct ci_error **err)
{
  cleanup_close int fd = open(o->tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", o->tar, strerror(errno));
  /* The caller's directory may be closed to the container's ids (libarchive reopens it). */
  if (chdir("/") < 0)
    return ci_error_make(err, -errno, "cannot enter /: %s", strerror(errno));
  if (la_load(err) < 0 || join_userns(o->pid, err) < 0)
    return -1;
  cleanup_free char *root = xstrdup(o->path);
  size_t rl = strlen(root);
  while (rl > 1 && root[rl - 1] == '/')
    root[--rl] = '\0';
  struct disk_tar t;
  int ret = dt_open(
      &t, fd, root,
      ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL | ARCHIVE_READDISK_NO_FFLAGS, err);
  int r;
  while (ret == 0 && (r = dt_next(&t, err)) != 0) {
    if (r < 0) {
      ret = -1;
      break;
    }
    la.archive_read_disk_descend(t.disk);
    cleanup_free char *src = xstrdup(la.archive_entry_pathname(t.e));
    if (strncmp(src, root, rl) != 0 || (src[rl] != '/' && src[rl] != '\0'))
      continue;
    const char *rel = src + rl;
    while (*rel == '/')
      rel++;
    if (!*rel || runtime_file(rel))
      continue; /* the root itself; files of the runtime */
    mode_t type = la.archive_entry_filetype(t.e);
    if (type == AE_IFCHR && la.archive_entry_rdev(t.e) == makedev(0, 0)) {
      const char *slash = strrchr(rel, '/');
      cleanup_free char *wh = slash ? xasprintf("%.*s/.wh.%s", (int)(slash - rel), rel, slash + 1)
                                    : xasprintf(".wh.%s", rel);
      ret = write_empty(t.w, wh, err);
      continue;
    }
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO)
      continue; /* devices and sockets: not layer material */
    la.archive_entry_set_uname(t.e, NULL);
    la.archive_entry_set_gname(t.e, NULL);
    cleanup_free char *name = xstrdup(rel);
    if ((ret = dt_write(&t, name, src, err)) < 0)
      break;
    cleanup_close int dir =
        type == AE_IFDIR ? open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (dir >= 0 && rt__is_opaque(dir)) {
      cleanup_free char *opq = xasprintf("%s/.wh..wh..opq", rel);
      ret = write_empty(t.w, opq, err);
    }
  }
  return dt_close(&t, o->tar, ret, err);
}
