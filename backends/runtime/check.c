/* backends/runtime/check.c - what this machine allows, tried for real. */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a child: a user, mount and pid namespace (fuse-overlayfs' daemon dies with it), then an
 * overlay with userxattr and a fuse-overlayfs mount in a temp dir.  Exit 1: no userns; else
 * 16 + 1 (overlay works) + 2 (fuse-overlayfs works).  Why fuse-overlayfs cannot be used goes
 * to why_fd. */
static int
probe(const struct rt_idmap *m, const char *tmp, int why_fd)
{
  int gp[2];
  if (pipe2(gp, O_CLOEXEC) < 0)
    return 1;
  pid_t c = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL,
                           NULL, NULL, NULL);
  if (c < 0) {
    close(gp[0]);
    close(gp[1]);
    return 1;
  }
  if (c == 0) {
    close(gp[1]);
    char go;
    if (read(gp[0], &go, 1) != 1)
      _exit(1);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
      _exit(1);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
      _exit(1);
    char d[6][600];
    static const char *const subs[] = {"l", "u", "w", "m", "u2", "w2"};
    for (size_t i = 0; i < CI_ARRAY_SIZE(subs); i++)
      snprintf(d[i], sizeof d[i], "%s/%s", tmp, subs[i]);
    struct ci_strv layers = CI_STRV_INIT;
    ci_strv_push(&layers, d[0]);
    struct ci_error *e = NULL;
    int ok = 16;
    if (rt__rootfs_overlay(&layers, d[1], d[2], d[3], &e) == 0) {
      ok |= 1;
      umount2(d[3], MNT_DETACH);
    }
    ci_error_free(&e);
    const char *bin;
    if (rt__fuse_usable(&bin, &e) == 0 && rt__rootfs_fuse(bin, &layers, d[4], d[5], d[3], &e) == 0)
      ok |= 2;
    else
      dprintf(why_fd, "%s", e ? e->msg : "?");
    _exit(ok);
  }
  close(gp[0]);
  struct ci_error *e = NULL;
  int ok = rt_idmap_apply(m, c, &e) == 0;
  ci_error_free(&e);
  if (ok && write(gp[1], "G", 1) != 1)
    ok = 0;
  close(gp[1]);
  int st;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  if (!ok)
    return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int
rt_check(int out_fd, struct ci_error **err)
{
  struct rt_idmap m;
  if (rt_idmap_detect(&m, NULL, NULL, err) < 0)
    return -1;
  char tmp[] = "/tmp/cirrus-runtime-check.XXXXXX";
  if (!mkdtemp(tmp)) {
    rt_idmap_release(&m);
    return ci_error_make(err, -errno, "cannot make a temporary directory: %s", strerror(errno));
  }
  static const char *const subs[] = {"l", "u", "w", "m", "u2", "w2"};
  int dfd = open(tmp, O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; i < CI_ARRAY_SIZE(subs); i++) {
    mkdirat(dfd, subs[i], 0755);
    if (m.mode == RT_IDMAP_ROOT)
      fchownat(dfd, subs[i], rt_idmap_root_uid(&m), rt_idmap_root_gid(&m), 0);
  }
  if (m.mode == RT_IDMAP_ROOT)
    fchmod(dfd, 0755);
  int wp[2] = {-1, -1};
  if (pipe2(wp, O_CLOEXEC) < 0) {
    /* no reason to show */
  }
  int r = probe(&m, tmp, wp[1]);
  char why[512] = "";
  if (wp[0] >= 0) {
    close(wp[1]);
    ssize_t n = read(wp[0], why, sizeof why - 1);
    why[n > 0 ? n : 0] = '\0';
    close(wp[0]);
  }
  bool userns = r != 1, ovl = userns && (r & 1), fuse = userns && (r & 2);
  struct ci_error *e = NULL;
  close(dfd);
  rt_remove_tree_at(AT_FDCWD, tmp, &e);
  ci_error_free(&e);
  bool w;
  const char *cgv = rt__cgroup_version(&w);
  const char *mode = m.mode == RT_IDMAP_ROOT    ? "root"
                     : m.mode == RT_IDMAP_SUBID ? "subid"
                                                : "single";
  dprintf(out_fd, "userns: %s\n", userns ? "yes" : "no");
  dprintf(out_fd, "overlay-userxattr: %s\n", ovl ? "yes" : "no");
  dprintf(out_fd, "rootfs: overlay %s, fuse-overlayfs %s%s%s%s, copy %s\n", ovl ? "yes" : "no",
          fuse ? "yes" : "no", !fuse && *why ? " (" : "", fuse ? "" : why, !fuse && *why ? ")" : "",
          userns ? "yes" : "no");
  dprintf(out_fd, "idmap: %s", mode);
  for (unsigned i = 0; i < m.n_uid; i++)
    dprintf(out_fd, " %u:%u:%u", m.uid[i].inside, m.uid[i].outside, m.uid[i].count);
  dprintf(out_fd, "\n");
  dprintf(out_fd, "cgroups: %s%s\n", cgv, w ? "" : " (not writable: limits not applied)");
  if (m.warning)
    dprintf(out_fd, "warning: %s\n", m.warning);
  rt_idmap_release(&m);
  /* Without overlay the root file system is fuse-overlayfs' or a copy: slower, but it runs. */
  if (!userns)
    return ci_error_make(err, CI_EFAIL, "cannot create a user namespace here");
  return 0;
}
