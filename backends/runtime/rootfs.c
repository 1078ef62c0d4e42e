/* backends/runtime/rootfs.c - the container's root file system from the image's layers.
 *
 * Three drivers, tried in this order by "auto" (README.md, "Root file system"):
 *   overlay         the kernel's overlayfs with userxattr: upper/ and work/ in the run dir;
 *   fuse-overlayfs  the same directories through fuse-overlayfs, run in the container's user,
 *                   mount and pid namespaces (it dies with the container's init);
 *   copy            the layers copied bottom-up into merged/ (reflinks where the file system
 *                   has them), whiteouts and opaque directories applied, then bound on itself.
 * Everything here runs in the container's init before pivot_root: in its user and mount
 * namespaces, as root there, with "/" private.
 */
#include "runtime.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define FUSE_MAGIC 0x65735546
#define OVERLAY_MAGIC 0x794c7630

static const char *const names[] = {"auto", "overlay", "fuse-overlayfs", "copy"};

int
rt_rootfs_parse(const char *s, enum rt_rootfs *out)
{
  for (size_t i = 0; i < CI_ARRAY_SIZE(names); i++)
    if (!strcmp(s, names[i])) {
      *out = (enum rt_rootfs)i;
      return 0;
    }
  return -1;
}

const char *
rt_rootfs_name(enum rt_rootfs d)
{
  return (size_t)d < CI_ARRAY_SIZE(names) ? names[d] : "?";
}

/* ---------------------------------------------------------------- overlay options */

/* Escape ',' ':' '\' for an overlay option value (fuse-overlayfs' option parser, libfuse's,
 * takes the same escapes). */
static void
ovl_escape(struct ci_buf *b, const char *s)
{
  for (; *s; s++) {
    if (*s == ',' || *s == ':' || *s == '\\')
      ci_buf_addc(b, '\\');
    ci_buf_addc(b, *s);
  }
}

/* lowerdir=...,upperdir=...,workdir=... with the layers' paths after skip bytes each. */
static void
ovl_options(struct ci_buf *b, const struct ci_strv *layers, size_t skip, const char *upper,
            const char *work)
{
  ci_buf_adds(b, "lowerdir=");
  for (size_t i = layers->n; i-- > 0;) {
    ovl_escape(b, layers->v[i] + skip);
    if (i)
      ci_buf_addc(b, ':');
  }
  ci_buf_adds(b, ",upperdir=");
  ovl_escape(b, upper);
  ci_buf_adds(b, ",workdir=");
  ovl_escape(b, work);
}

int
rt__rootfs_overlay(const struct ci_strv *layers, const char *upper, const char *work,
                   const char *merged, struct ci_error **err)
{
  /* Layers usually share a parent (<store>/layers/): name them relative to it so that many
   * layers fit in one page of mount options. */
  const char *first = layers->v[0];
  size_t plen = strlen(first);
  for (size_t i = 1; i < layers->n; i++) {
    size_t k = 0;
    while (k < plen && first[k] == layers->v[i][k])
      k++;
    plen = k;
  }
  while (plen > 0 && first[plen - 1] != '/')
    plen--;
  char prefix[4096];
  if (plen >= sizeof prefix || plen <= 1)
    plen = 0;
  memcpy(prefix, first, plen);
  prefix[plen] = '\0';
  if (plen && chdir(prefix) < 0)
    return ci_error_make(err, -errno, "cannot enter %s: %s", prefix, strerror(errno));
  struct ci_buf b = CI_BUF_INIT;
  ovl_options(&b, layers, plen, upper, work);
  ci_buf_adds(&b, ",userxattr");
  int ret = 0;
  if (b.len >= 4096)
    ret = ci_error_make(err, -E2BIG, "too many layers (%zu) for one overlay mount", layers->n);
  else if (mount("overlay", merged, "overlay", 0, b.s) < 0)
    ret = ci_error_make(err, -errno, "cannot mount the overlay of %zu layers (lowest %s): %s",
                        layers->n, first, strerror(errno));
  ci_buf_release(&b);
  if (chdir("/") < 0 && ret == 0)
    ret = ci_error_make(err, -errno, "cannot enter /: %s", strerror(errno));
  return ret;
}

/* ---------------------------------------------------------------- fuse-overlayfs */

const char *
rt__fuse_overlayfs_path(void)
{
  static char found[4096];
  if (access("/usr/bin/fuse-overlayfs", X_OK) == 0)
    return "/usr/bin/fuse-overlayfs";
  const char *path = getenv("PATH");
  if (!path)
    return NULL;
  for (const char *p = path; *p;) {
    const char *e = strchrnul(p, ':');
    if (e > p && (size_t)(e - p) < sizeof found - 20) {
      snprintf(found, sizeof found, "%.*s/fuse-overlayfs", (int)(e - p), p);
      if (found[0] == '/' && access(found, X_OK) == 0)
        return found;
    }
    p = *e ? e + 1 : e;
  }
  return NULL;
}

int
rt__fuse_usable(const char **bin, struct ci_error **err)
{
  *bin = rt__fuse_overlayfs_path();
  if (!*bin)
    return ci_error_make(err, -ENOENT, "no fuse-overlayfs in /usr/bin or on PATH");
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "/dev/fuse: %s", strerror(errno));
  close(fd);
  return 0;
}

int
rt__rootfs_fuse(const char *bin, const struct ci_strv *layers, const char *upper, const char *work,
                const char *merged, struct ci_error **err)
{
  struct ci_buf b = CI_BUF_INIT;
  ovl_options(&b, layers, 0, upper, work);
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) {
    ci_buf_release(&b);
    return ci_error_make(err, -errno, "cannot make a pipe: %s", strerror(errno));
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* It daemonizes once mounted: the daemon is a child of the container's init then, in its
     * pid namespace, and dies with it.  Its own uid/gid are the namespace's root, where the
     * layers' owners already show as they are in the image: no uidmapping/squash needed. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(ep[1], 2) < 0)
      _exit(126);
    close_range(3, ~0U, 0); /* the daemon lives as long as the container: nothing of ours */
    char *argv[] = {(char *)"fuse-overlayfs", (char *)"-o", b.s, (char *)merged, NULL};
    execv(bin, argv);
    dprintf(2, "cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
  }
  int fork_errno = errno;
  close(ep[1]);
  ci_buf_release(&b);
  if (pid < 0) {
    close(ep[0]);
    return ci_error_make(err, -fork_errno, "cannot fork: %s", strerror(fork_errno));
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  /* The daemon's stderr is /dev/null by now (it daemonized) or it is gone: no blocking. */
  fcntl(ep[0], F_SETFL, O_NONBLOCK);
  char msg[512];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof msg - 1 && (n = read(ep[0], msg + len, sizeof msg - 1 - len)) > 0)
    len += (size_t)n;
  close(ep[0]);
  msg[len] = '\0';
  /* Its last meaningful line (it also prints harmless notes such as "unknown argument"). */
  while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
    msg[--len] = '\0';
  char *last = strrchr(msg, '\n');
  last = last ? last + 1 : msg;
  struct statfs sf;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return ci_error_make(err, -EPERM, "fuse-overlayfs failed (%s %d)%s%s",
                         WIFEXITED(st) ? "exit status" : "signal",
                         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), *last ? ": " : "", last);
  if (statfs(merged, &sf) < 0 || sf.f_type != FUSE_MAGIC)
    return ci_error_make(err, -EPERM, "fuse-overlayfs exited without mounting %s", merged);
  return 0;
}

/* ---------------------------------------------------------------- copy */

struct hardlink {
  dev_t dev;
  ino_t ino;
  char *rel; /* owned: the copy's path relative to the root */
};

struct cp {
  int root; /* merged/ */
  struct hardlink *links;
  size_t n_links, alloc_links;
  const char *layer; /* for messages */
  char *buf;         /* read/write fallback */
};

static bool
is_whiteout(const struct stat *st)
{
  return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

bool
rt__is_opaque(int fd)
{
  char v[4];
  ssize_t n = fgetxattr(fd, "user.overlay.opaque", v, sizeof v);
  if (n < 0)
    n = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof v);
  return n == 1 && v[0] == 'y';
}

/* Remove name in dfd, whatever it is, never following a symlink. */
static int
remove_entry(int dfd, const char *name, const char *rel, struct ci_error **err)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : ci_error_make(err, -errno, "%s: %s", rel, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return rt_remove_tree_at(dfd, name, err);
  if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
    return ci_error_make(err, -errno, "cannot remove %s: %s", rel, strerror(errno));
  return 0;
}

/* user.* xattrs but overlay's own (the copy is no overlay layer). */
static void
copy_xattrs(int sfd, int dfd)
{
  char list[4096], val[4096];
  ssize_t n = flistxattr(sfd, list, sizeof list);
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1) {
    const char *k = list + i;
    if (strncmp(k, "user.", 5) || !strncmp(k, "user.overlay.", 13))
      continue;
    ssize_t vn = fgetxattr(sfd, k, val, sizeof val);
    if (vn >= 0 && fsetxattr(dfd, k, val, (size_t)vn, 0) < 0) {
      /* best effort, as extraction is */
    }
  }
}

/* Owner, mode and times of an entry made by us (fd: an fd of it, or -1 for a symlink). */
static int
copy_meta(int dfd, const char *name, int fd, const struct stat *st, const char *rel,
          struct ci_error **err)
{
  int r = fd >= 0 ? fchown(fd, st->st_uid, st->st_gid)
                  : fchownat(dfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
  /* EINVAL: an id this namespace does not map (shows as the overflow id): keep root's. */
  if (r < 0 && errno != EINVAL)
    return ci_error_make(err, -errno, "cannot chown %s: %s", rel, strerror(errno));
  if (fd >= 0 && fchmod(fd, st->st_mode & 07777) < 0)
    return ci_error_make(err, -errno, "cannot chmod %s: %s", rel, strerror(errno));
  struct timespec ts[2] = {st->st_atim, st->st_mtim};
  if (fd >= 0)
    (void)futimens(fd, ts);
  else
    (void)utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
  return 0;
}

/* The data of sfd into dfd: a reflink when the file system can, else copy_file_range (which
 * shares extents or copies in the kernel), else read/write. */
static int
copy_data(struct cp *cp, int sfd, int dfd, off_t size, const char *rel, struct ci_error **err)
{
  if (size == 0 || ioctl(dfd, FICLONE, sfd) == 0)
    return 0;
  off_t done = 0;
  while (done < size) {
    ssize_t n = copy_file_range(sfd, NULL, dfd, NULL, (size_t)(size - done), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    done += n;
  }
  if (done >= size)
    return 0;
  if (lseek(sfd, done, SEEK_SET) < 0 || lseek(dfd, done, SEEK_SET) < 0)
    return ci_error_make(err, -errno, "cannot copy %s: %s", rel, strerror(errno));
  if (!cp->buf)
    cp->buf = xmalloc(1 << 17);
  for (;;) {
    ssize_t n = read(sfd, cp->buf, 1 << 17);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return ci_error_make(err, -errno, "cannot read %s: %s", rel, strerror(errno));
    if (n == 0)
      return 0;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(dfd, cp->buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return ci_error_make(err, -errno, "cannot write %s: %s", rel, strerror(errno));
      off += w;
    }
  }
}

/* A hard link to the earlier copy of the same inode of this layer, if any: 1 when linked. */
static int
link_earlier(struct cp *cp, const struct stat *st, int dfd, const char *name, const char *rel)
{
  if (st->st_nlink < 2)
    return 0;
  for (size_t i = 0; i < cp->n_links; i++) {
    struct hardlink *h = &cp->links[i];
    if (h->dev != st->st_dev || h->ino != st->st_ino)
      continue;
    /* Its parent, resolved in the copy without following anything (the layer has real
     * directories all along that path, and so has the copy by now). */
    const char *slash = strrchr(h->rel, '/');
    cleanup_free char *dir = slash ? xstrndup(h->rel, (size_t)(slash - h->rel)) : xstrdup(".");
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV};
    int pfd = (int)syscall(SYS_openat2, cp->root, dir, &how, sizeof how);
    if (pfd < 0)
      return 0;
    int r = linkat(pfd, slash ? slash + 1 : h->rel, dfd, name, 0);
    close(pfd);
    return r == 0;
  }
  CI_GROW(cp->links, cp->alloc_links, cp->n_links + 1);
  cp->links[cp->n_links++] = (struct hardlink){st->st_dev, st->st_ino, xstrdup(rel)};
  return 0;
}

static int copy_dir(struct cp *cp, int sfd, int dfd, const char *rel, struct ci_error **err);

/* One entry of a layer directory onto the copy (sfd/dfd: the two directories). */
static int
copy_entry(struct cp *cp, int sfd, int dfd, const char *name, const char *rel,
           struct ci_error **err)
{
  struct stat st, dst;
  if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
  if (is_whiteout(&st))
    return remove_entry(dfd, name, rel, err);
  bool have = fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
  if (S_ISDIR(st.st_mode)) {
    cleanup_close int s = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0)
      return ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
    /* A directory replaces a non-directory; an opaque one hides what lower layers had. */
    if (have && (!S_ISDIR(dst.st_mode) || rt__is_opaque(s))) {
      if (remove_entry(dfd, name, rel, err) < 0)
        return -1;
      have = false;
    }
    if (!have && mkdirat(dfd, name, 0700) < 0)
      return ci_error_make(err, -errno, "cannot create %s: %s", rel, strerror(errno));
    cleanup_close int d = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
      return ci_error_make(err, -errno, "cannot open %s: %s", rel, strerror(errno));
    if (copy_dir(cp, s, d, rel, err) < 0)
      return -1;
    copy_xattrs(s, d);
    return copy_meta(dfd, name, d, &st, rel, err);
  }
  if (have && remove_entry(dfd, name, rel, err) < 0)
    return -1;
  if (S_ISREG(st.st_mode)) {
    if (link_earlier(cp, &st, dfd, name, rel))
      return 0;
    cleanup_close int s = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0)
      return ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
    cleanup_close int d =
        openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (d < 0)
      return ci_error_make(err, -errno, "cannot create %s: %s", rel, strerror(errno));
    if (copy_data(cp, s, d, st.st_size, rel, err) < 0)
      return -1;
    copy_xattrs(s, d);
    return copy_meta(dfd, name, d, &st, rel, err);
  }
  if (S_ISLNK(st.st_mode)) {
    char target[4097];
    ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
    if (n < 0)
      return ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
    target[n] = '\0';
    if (symlinkat(target, dfd, name) < 0)
      return ci_error_make(err, -errno, "cannot create %s: %s", rel, strerror(errno));
    return copy_meta(dfd, name, -1, &st, rel, err);
  }
  if (S_ISFIFO(st.st_mode)) {
    if (mkfifoat(dfd, name, 0600) < 0)
      return ci_error_make(err, -errno, "cannot create %s: %s", rel, strerror(errno));
    /* Just made, in a tree only we write: fchmodat cannot be sent elsewhere. */
    if (fchownat(dfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EINVAL)
      return ci_error_make(err, -errno, "cannot chown %s: %s", rel, strerror(errno));
    if (fchmodat(dfd, name, st.st_mode & 07777, 0) < 0)
      return ci_error_make(err, -errno, "cannot chmod %s: %s", rel, strerror(errno));
    return 0;
  }
  return 0; /* devices and sockets are no layer material (extraction skips them too) */
}

static int
copy_dir(struct cp *cp, int sfd, int dfd, const char *rel, struct ci_error **err)
{
  int dup_fd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (!d) {
    if (dup_fd >= 0)
      close(dup_fd);
    return ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
  }
  int ret = 0;
  struct dirent *de;
  while (ret == 0 && (errno = 0, de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    cleanup_free char *sub = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
    ret = copy_entry(cp, sfd, dfd, de->d_name, sub, err);
  }
  if (ret == 0 && errno)
    ret = ci_error_make(err, -errno, "%s in layer %s: %s", rel, cp->layer, strerror(errno));
  closedir(d);
  return ret;
}

int
rt__rootfs_copy(const struct ci_strv *layers, const char *merged, struct ci_error **err)
{
  struct cp cp = {.root = open(merged, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
  if (cp.root < 0)
    return ci_error_make(err, -errno, "cannot open %s: %s", merged, strerror(errno));
  int ret = 0;
  for (size_t i = 0; i < layers->n && ret == 0; i++) {
    cp.layer = layers->v[i];
    int l = open(layers->v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (l < 0) {
      ret = ci_error_make(err, -errno, "cannot open layer %s: %s", layers->v[i], strerror(errno));
      break;
    }
    ret = copy_dir(&cp, l, cp.root, "", err);
    close(l);
    for (size_t k = 0; k < cp.n_links; k++)
      free(cp.links[k].rel);
    cp.n_links = 0; /* hard links never cross layers */
  }
  free(cp.links);
  free(cp.buf);
  close(cp.root);
  /* pivot_root wants a mount point. */
  if (ret == 0 && mount(merged, merged, NULL, MS_BIND | MS_REC, NULL) < 0)
    ret = ci_error_make(err, -errno, "cannot bind %s: %s", merged, strerror(errno));
  return ret;
}

/* ---------------------------------------------------------------- the choice */

/* Why overlay was refused, for the warning: the errno and what the upper dir is on. */
static void
refusal(char *buf, size_t n, int code, const char *upper)
{
  struct statfs sf;
  const char *fs = NULL;
  if (statfs(upper, &sf) == 0) {
    switch ((unsigned long)sf.f_type) {
    case OVERLAY_MAGIC:
      fs = "overlayfs";
      break;
    case FUSE_MAGIC:
      fs = "fuse";
      break;
    case 0x6969:
      fs = "nfs";
      break;
    case 0xff534d42:
      fs = "cifs";
      break;
    case 0x2fc12fc1:
      fs = "zfs";
      break;
    default:
      break;
    }
  }
  snprintf(buf, n, "%s%s%s", strerror(code < 0 ? -code : code), fs ? ", the run dir is on " : "",
           fs ? fs : "");
}

int
rt__rootfs_mount(const struct rt_create_opts *o, const char *merged, struct ci_error **err)
{
  cleanup_free char *upper = xasprintf("%s/upper", o->run_dir);
  cleanup_free char *work = xasprintf("%s/work", o->run_dir);
  char why_ovl[256] = "", why_fuse[512] = "";
  struct ci_error *e = NULL;
  if (o->rootfs == RT_ROOTFS_AUTO || o->rootfs == RT_ROOTFS_OVERLAY) {
    int r = rt__rootfs_overlay(&o->layers, upper, work, merged, &e);
    if (r == 0)
      return 0;
    if (o->rootfs == RT_ROOTFS_OVERLAY || r == -ENOENT) {
      *err = e;
      return r;
    }
    refusal(why_ovl, sizeof why_ovl, r, upper);
    ci_error_free(&e);
  }
  if (o->rootfs == RT_ROOTFS_AUTO || o->rootfs == RT_ROOTFS_FUSE) {
    const char *bin;
    int r = rt__fuse_usable(&bin, &e);
    if (r == 0)
      r = rt__rootfs_fuse(bin, &o->layers, upper, work, merged, &e);
    if (r == 0) {
      if (o->rootfs == RT_ROOTFS_AUTO && o->warn) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "warning: the kernel refused an overlay mount (%s): the root file system is "
                 "mounted with fuse-overlayfs",
                 why_ovl);
        o->warn(msg, o->warn_data);
      }
      return 0;
    }
    if (o->rootfs == RT_ROOTFS_FUSE) {
      *err = e;
      return r;
    }
    snprintf(why_fuse, sizeof why_fuse, "%s", e->msg);
    ci_error_free(&e);
    if (o->image_tmp)
      return ci_error_make(err, CI_EFAIL,
                           "an image build needs an upper layer, but the kernel refused an "
                           "overlay mount (%s) and fuse-overlayfs cannot be used (%s)",
                           why_ovl, why_fuse);
  }
  if (rt__rootfs_copy(&o->layers, merged, err) < 0)
    return -1;
  if (o->rootfs == RT_ROOTFS_AUTO && o->warn) {
    char msg[1024];
    snprintf(msg, sizeof msg,
             "warning: the kernel refused an overlay mount (%s) and fuse-overlayfs cannot be "
             "used (%s): the root file system is a copy of the image (slow)",
             why_ovl, why_fuse);
    o->warn(msg, o->warn_data);
  }
  return 0;
}
