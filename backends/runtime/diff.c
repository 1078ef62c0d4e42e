/* backends/runtime/diff.c - a container's changes as an OCI layer tar (the image builder's RUN).
 *
 * The upper directory of the container's overlay holds what its processes changed.  Its files
 * belong to the container's ids, which the host user may not be able to read (subordinate ids):
 * the tar is written from inside the container's user namespace (but the host's mount
 * namespace, where the upper directory is), so that owners come out as the container sees them.
 * Overlay whiteouts (0:0 character devices) become `.wh.NAME` entries and opaque directories
 * (user.overlay.opaque=y) get a `.wh..wh..opq` entry; the files the runtime writes itself
 * (/etc/hosts, /etc/hostname, /etc/resolv.conf) are left out, as Docker's builds do. */
#include "runtime.h"
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static bool
runtime_file(const char *rel)
{
  return !strcmp(rel, "etc/hosts") || !strcmp(rel, "etc/hostname") ||
         !strcmp(rel, "etc/resolv.conf");
}

static bool
opaque_dir(const char *path)
{
  char v[4];
  ssize_t n = lgetxattr(path, "user.overlay.opaque", v, sizeof v);
  if (n < 0)
    n = lgetxattr(path, "trusted.overlay.opaque", v, sizeof v);
  return n == 1 && v[0] == 'y';
}

static int
write_empty(struct archive *w, const char *name, struct ci_error **err)
{
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0);
  archive_entry_set_size(e, 0);
  int r = archive_write_header(w, e);
  archive_entry_free(e);
  if (r < ARCHIVE_WARN)
    return ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(w));
  return 0;
}

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
    if (archive_write_data(w, buf, (size_t)n) < 0)
      return ci_error_make(err, CI_EFAIL, "%s: %s", path, archive_error_string(w));
    left -= n;
  }
  memset(buf, 0, sizeof buf);
  while (left > 0) { /* shrank meanwhile: keep the archive valid */
    size_t n = left > (la_int64_t)sizeof buf ? sizeof buf : (size_t)left;
    archive_write_data(w, buf, n);
    left -= (la_int64_t)n;
  }
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
    return ci_error_make(err, -errno, "cannot become root in the container: %s",
                         strerror(errno));
  if (setgroups(0, NULL) < 0 && errno != EPERM)
    return ci_error_make(err, -errno, "cannot drop supplementary groups: %s", strerror(errno));
  return 0;
}

int
rt_diff(const struct rt_file_opts *o, struct ci_error **err)
{
  cleanup_close int fd = open(o->tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                              0600);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: %s", o->tar, strerror(errno));
  /* The caller's directory may be closed to the container's ids (libarchive reopens it). */
  if (chdir("/") < 0)
    return ci_error_make(err, -errno, "cannot enter /: %s", strerror(errno));
  if (join_userns(o->pid, err) < 0)
    return -1;
  cleanup_free char *root = xstrdup(o->path);
  size_t rl = strlen(root);
  while (rl > 1 && root[rl - 1] == '/')
    root[--rl] = '\0';
  struct archive *disk = archive_read_disk_new();
  struct archive *w = archive_write_new();
  archive_read_disk_set_symlink_physical(disk);
  archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                           ARCHIVE_READDISK_NO_FFLAGS);
  archive_write_set_format_pax_restricted(w);
  archive_write_set_bytes_in_last_block(w, 1);
  int ret = 0;
  struct archive_entry *e = NULL;
  if (archive_write_open_fd(w, fd) != ARCHIVE_OK ||
      archive_read_disk_open(disk, root) != ARCHIVE_OK) {
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", root,
                        archive_error_string(disk) ? archive_error_string(disk)
                                                   : archive_error_string(w));
    goto out;
  }
  e = archive_entry_new();
  for (;;) {
    archive_entry_clear(e);
    int r = archive_read_next_header2(disk, e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", root, archive_error_string(disk));
      goto out;
    }
    archive_read_disk_descend(disk);
    const char *p = archive_entry_pathname(e);
    if (strncmp(p, root, rl) != 0 || (p[rl] != '/' && p[rl] != '\0'))
      continue;
    const char *rel = p + rl;
    while (*rel == '/')
      rel++;
    if (!*rel || runtime_file(rel))
      continue; /* the root itself; files of the runtime */
    cleanup_free char *src = xstrdup(p);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFCHR && archive_entry_rdev(e) == makedev(0, 0)) {
      const char *slash = strrchr(rel, '/');
      cleanup_free char *wh =
          slash ? xasprintf("%.*s/.wh.%s", (int)(slash - rel), rel, slash + 1)
                : xasprintf(".wh.%s", rel);
      if ((ret = write_empty(w, wh, err)) < 0)
        goto out;
      continue;
    }
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO)
      continue; /* devices and sockets: not layer material */
    archive_entry_set_uname(e, NULL);
    archive_entry_set_gname(e, NULL);
    cleanup_free char *name = xstrdup(rel);
    archive_entry_set_pathname(e, name);
    if (archive_write_header(w, e) < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", rel, archive_error_string(w));
      goto out;
    }
    if (type == AE_IFREG && archive_entry_size(e) > 0 &&
        (ret = copy_data(w, src, archive_entry_size(e), err)) < 0)
      goto out;
    if (type == AE_IFDIR && opaque_dir(src)) {
      cleanup_free char *opq = xasprintf("%s/.wh..wh..opq", rel);
      if ((ret = write_empty(w, opq, err)) < 0)
        goto out;
    }
  }
  if (archive_write_close(w) != ARCHIVE_OK)
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", o->tar, archive_error_string(w));
out:
  if (e)
    archive_entry_free(e);
  archive_read_free(disk);
  archive_write_free(w);
  return ret;
}
