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

/* In a child: a user + mount namespace, then an overlay with userxattr in a temp dir.
 * Exit 0: both work; 2: userns only; 1: no userns. */
static int
probe(const struct rt_idmap *m, const char *tmp)
{
  int gp[2];
  if (pipe2(gp, O_CLOEXEC) < 0)
    return 1;
  pid_t c = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL,
                           NULL);
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
    char opts[4096], merged[600];
    snprintf(opts, sizeof opts, "lowerdir=%s/l,upperdir=%s/u,workdir=%s/w,userxattr", tmp, tmp,
             tmp);
    snprintf(merged, sizeof merged, "%s/m", tmp);
    _exit(mount("overlay", merged, "overlay", 0, opts) == 0 ? 0 : 2);
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
  static const char *const subs[] = {"l", "u", "w", "m"};
  int dfd = open(tmp, O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; i < CI_ARRAY_SIZE(subs); i++) {
    mkdirat(dfd, subs[i], 0755);
    if (m.mode == RT_IDMAP_ROOT)
      fchownat(dfd, subs[i], rt_idmap_root_uid(&m), rt_idmap_root_gid(&m), 0);
  }
  if (m.mode == RT_IDMAP_ROOT)
    fchmod(dfd, 0755);
  int r = probe(&m, tmp);
  struct ci_error *e = NULL;
  close(dfd);
  rt_remove_tree_at(AT_FDCWD, tmp, &e);
  ci_error_free(&e);
  bool w;
  const char *cgv = rt__cgroup_version(&w);
  const char *mode = m.mode == RT_IDMAP_ROOT    ? "root"
                     : m.mode == RT_IDMAP_SUBID ? "subid"
                                                : "single";
  dprintf(out_fd, "userns: %s\n", r == 1 ? "no" : "yes");
  dprintf(out_fd, "overlay-userxattr: %s\n", r == 0 ? "yes" : "no");
  dprintf(out_fd, "idmap: %s", mode);
  for (unsigned i = 0; i < m.n_uid; i++)
    dprintf(out_fd, " %u:%u:%u", m.uid[i].inside, m.uid[i].outside, m.uid[i].count);
  dprintf(out_fd, "\n");
  dprintf(out_fd, "cgroups: %s%s\n", cgv, w ? "" : " (not writable: limits not applied)");
  if (m.warning)
    dprintf(out_fd, "warning: %s\n", m.warning);
  rt_idmap_release(&m);
  if (r != 0)
    return ci_error_make(err, CI_EFAIL,
                         r == 1 ? "cannot create a user namespace here"
                                : "cannot mount overlay with userxattr in a user namespace "
                                  "(kernel >= 5.11 needed)");
  return 0;
}
