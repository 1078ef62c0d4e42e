/* backends/runtime/rundir.c - removing run dirs, also from inside a user namespace, and gc. */
#include "runtime.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Remove everything inside the directory dfd (which stays open and is not removed). */
static int
remove_contents(int dfd, const char *what, struct ci_error **err)
{
  int dup_fd = dup(dfd);
  if (dup_fd < 0)
    return ci_error_make(err, -errno, "cannot remove %s: %s", what, strerror(errno));
  DIR *d = fdopendir(dup_fd);
  if (!d) {
    close(dup_fd);
    return ci_error_make(err, -errno, "cannot remove %s: %s", what, strerror(errno));
  }
  int ret = 0;
  struct dirent *de;
  while ((errno = 0, de = readdir(d))) {
    const char *n = de->d_name;
    if (!strcmp(n, ".") || !strcmp(n, ".."))
      continue;
    bool isdir = de->d_type == DT_DIR;
    if (de->d_type == DT_UNKNOWN) {
      struct stat st;
      isdir = fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (isdir) {
      fchmodat(dfd, n, 0700, 0); /* overlay leaves work/work mode 000 */
      int sub = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        ret = ci_error_make(err, -errno, "cannot remove %s/%s: %s", what, n, strerror(errno));
        break;
      }
      cleanup_free char *sw = xasprintf("%s/%s", what, n);
      int r = remove_contents(sub, sw, err);
      close(sub);
      if (r < 0) {
        ret = r;
        break;
      }
      if (unlinkat(dfd, n, AT_REMOVEDIR) < 0) {
        ret = ci_error_make(err, -errno, "cannot remove %s: %s", sw, strerror(errno));
        break;
      }
    } else if (unlinkat(dfd, n, 0) < 0 && errno != ENOENT) {
      ret = ci_error_make(err, -errno, "cannot remove %s/%s: %s", what, n, strerror(errno));
      break;
    }
  }
  if (ret == 0 && errno)
    ret = ci_error_make(err, -errno, "cannot read %s: %s", what, strerror(errno));
  closedir(d);
  return ret;
}

int
rt_remove_tree_at(int dirfd, const char *name, struct ci_error **err)
{
  fchmodat(dirfd, name, 0700, 0);
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    if (errno == ENOTDIR || errno == ELOOP) {
      if (unlinkat(dirfd, name, 0) < 0)
        return ci_error_make(err, -errno, "cannot remove %s: %s", name, strerror(errno));
      return 0;
    }
    return ci_error_make(err, -errno, "cannot open %s: %s", name, strerror(errno));
  }
  int r = remove_contents(fd, name, err);
  close(fd);
  if (r < 0)
    return r;
  if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return ci_error_make(err, -errno, "cannot remove %s: %s", name, strerror(errno));
  return 0;
}

/* In a child: join userns_fd (or wait for the parent to map a new one), become root, remove. */
static int
remove_in_userns(const char *dir, const struct rt_idmap *m, int userns_fd, struct ci_error **err)
{
  int ep[2], gp[2];
  if (pipe2(ep, O_CLOEXEC) < 0)
    return ci_error_make(err, -errno, "cannot make a pipe: %s", strerror(errno));
  if (pipe2(gp, O_CLOEXEC) < 0) {
    close(ep[0]);
    close(ep[1]);
    return ci_error_make(err, -errno, "cannot make a pipe: %s", strerror(errno));
  }
  pid_t c = fork();
  if (c < 0) {
    int e = errno;
    close(ep[0]);
    close(ep[1]);
    close(gp[0]);
    close(gp[1]);
    return ci_error_make(err, -e, "cannot fork: %s", strerror(e));
  }
  if (c == 0) {
    close(ep[0]);
    close(gp[1]);
    struct ci_error *e = NULL;
    int r;
    if (userns_fd >= 0) {
      r = setns(userns_fd, CLONE_NEWUSER);
    } else {
      r = unshare(CLONE_NEWUSER);
      char go = 0;
      if (r == 0 && (write(ep[1], "U", 1) != 1 || read(gp[0], &go, 1) != 1 || go != 'G'))
        _exit(1);
    }
    if (r < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
      dprintf(ep[1], "Ecannot enter the user namespace to remove %s: %s", dir, strerror(errno));
      _exit(1);
    }
    if (rt_remove_tree_at(AT_FDCWD, dir, &e) < 0) {
      dprintf(ep[1], "E%s", e->msg);
      _exit(1);
    }
    _exit(0);
  }
  close(ep[1]);
  close(gp[0]);
  char buf[1100];
  size_t len = 0;
  int ret = 0;
  if (userns_fd < 0) {
    ssize_t n = read(ep[0], buf, 1);
    if (n == 1 && buf[0] == 'U') {
      struct ci_error *e = NULL;
      if (rt_idmap_apply(m, c, &e) < 0) {
        ret = ci_error_make(err, e->code, "%s", e->msg);
        ci_error_free(&e);
      } else if (write(gp[1], "G", 1) != 1) {
        ret = ci_error_make(err, -errno, "cannot release the remover");
      }
    } else if (n == 1) {
      buf[0] = buf[0];
      len = 1;
    }
  }
  close(gp[1]);
  for (;;) {
    ssize_t n = read(ep[0], buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len == sizeof buf - 1)
      break;
  }
  close(ep[0]);
  buf[len] = '\0';
  int st;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  if (ret < 0)
    return ret;
  if (len > 1 && buf[0] == 'E')
    return ci_error_make(err, CI_EFAIL, "%s", buf + 1);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return ci_error_make(err, CI_EFAIL, "cannot remove %s", dir);
  return 0;
}

int
rt_rundir_remove(const char *dir, const struct rt_idmap *m, int userns_fd, struct ci_error **err)
{
  if (m && m->mode == RT_IDMAP_SUBID && geteuid() != 0)
    return remove_in_userns(dir, m, userns_fd, err);
  return rt_remove_tree_at(AT_FDCWD, dir, err);
}

int
rt_gc(const char *runs, void (*on_removed)(const char *dir, void *data), void *data,
      struct ci_error **err)
{
  DIR *d = opendir(runs);
  if (!d) {
    if (errno == ENOENT)
      return 0;
    return ci_error_make(err, -errno, "cannot open %s: %s", runs, strerror(errno));
  }
  struct rt_idmap m = {0};
  bool have_map = false;
  int ret = 0;
  struct dirent *de;
  time_t now = time(NULL);
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    cleanup_free char *path = xasprintf("%s/%s", runs, de->d_name);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
      continue;
    cleanup_free char *lock = xasprintf("%s/lock", path);
    int fd = open(lock, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      /* Not locked yet: the caller may be about to start its helper.  Old ones are stale. */
      if (errno != ENOENT || now - st.st_mtime < 60)
        continue;
    } else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
      close(fd);
      continue; /* in use */
    }
    if (!have_map) {
      if (rt_idmap_detect(&m, NULL, NULL, err) < 0) {
        if (fd >= 0)
          close(fd);
        ret = -1;
        break;
      }
      have_map = true;
    }
    int r = rt_rundir_remove(path, &m, -1, err);
    if (fd >= 0)
      close(fd);
    if (r < 0) {
      ret = r;
      break;
    }
    if (geteuid() == 0)
      rt__cgroup_remove_stale(de->d_name);
    if (on_removed)
      on_removed(path, data);
  }
  closedir(d);
  rt_idmap_release(&m);
  if (geteuid() == 0)
    rt__cgroup_sweep();
  return ret;
}
