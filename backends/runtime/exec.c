/* backends/runtime/exec.c - join a container and run a process in it (the hot path). */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static bool joined;

bool
rt_joined_container(void)
{
  return joined;
}

int
rt__join(pid_t pid, bool with_pid, struct ci_error **err)
{
  char path[64];
  cleanup_close int pidfd = rt__pidfd_open(pid);
  if (pidfd < 0)
    return ci_error_make(err, -errno, "no container with init pid %d: %s", (int)pid,
                         strerror(errno));
  snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
  cleanup_close int rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return ci_error_make(err, -errno, "cannot open %s: %s", path, strerror(errno));
  int flags = CLONE_NEWUSER | CLONE_NEWNS;
  if (with_pid) {
    flags |= CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    struct stat a, b;
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    if (stat(path, &a) == 0 && stat("/proc/self/ns/net", &b) == 0 && a.st_ino != b.st_ino)
      flags |= CLONE_NEWNET;
  }
  /* The user namespace must belong to a container of ours: refuse the host's. */
  if (setns(pidfd, flags) < 0)
    return ci_error_make(err, -errno, "cannot join the container of pid %d: %s", (int)pid,
                         strerror(errno));
  joined = true;
  /* Root inside first: a fuse-overlayfs root refuses requests from ids its namespace does not
   * map (EOVERFLOW), and the host's ids are not mapped there. */
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
    return ci_error_make(err, -errno, "cannot become root in the container: %s",
                         strerror(errno));
  if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
    return ci_error_make(err, -errno, "cannot enter the container's root: %s", strerror(errno));
  if (setgroups(0, NULL) < 0 && errno != EPERM)
    return ci_error_make(err, -errno, "cannot drop supplementary groups: %s", strerror(errno));
  return 0;
}

static pid_t step_pid;

static void
on_stop_signal(int sig)
{
  (void)sig;
  if (step_pid > 0)
    kill(-step_pid, SIGKILL);
}

/* The child's failure report: "CODE message". */
static void __attribute__((noreturn))
child_report(int fd, int code, const char *msg, const char *arg, int e)
{
  char buf[1024];
  int n;
  if (e)
    n = snprintf(buf, sizeof buf, "%d %s%s: %s", code, arg, msg, strerror(e));
  else
    n = snprintf(buf, sizeof buf, "%d %s%s", code, arg, msg);
  if (n > 0 && write(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0) {
    /* nothing to do */
  }
  _exit(code);
}

static const char *
env_get(const struct ci_strv *env, const char *key)
{
  size_t kl = strlen(key);
  for (size_t i = env->n; i-- > 0;)
    if (!strncmp(env->v[i], key, kl) && env->v[i][kl] == '=')
      return env->v[i] + kl + 1;
  return NULL;
}

static void __attribute__((noreturn))
exec_child(const struct rt_exec_opts *o, const struct rt_user *u, bool single, int rfd)
{
  sigset_t none;
  sigemptyset(&none);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setpgid(0, 0);
  /* stdin is /dev/null (the container's); nothing but 0-2 is inherited. */
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0)
    child_report(rfd, 1, "cannot open /dev/null in the container", "", errno);
  if (null > 0)
    close(null);
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (setgroups(u->n_groups, u->groups) < 0 && !(single && errno == EPERM))
    child_report(rfd, 1, "cannot set supplementary groups", "", errno);
  if (setresgid(u->gid, u->gid, u->gid) < 0)
    child_report(rfd, 1,
                 single ? "cannot switch group (single id mapping: only root exists here)"
                        : "cannot switch group",
                 "", errno);
  if (setresuid(u->uid, u->uid, u->uid) < 0)
    child_report(rfd, 1,
                 single ? "cannot switch user (single id mapping: only root exists here)"
                        : "cannot switch user",
                 "", errno);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  const char *cwd = o->cwd ? o->cwd : "/";
  if (chdir(cwd) < 0)
    child_report(rfd, 1, ": cannot change to this directory", cwd, errno);
  char **envp = xcalloc(o->env.n + 1, sizeof *envp);
  for (size_t i = 0; i < o->env.n; i++)
    envp[i] = o->env.v[i];
  /* ci_strv is not NULL-terminated: execve needs argv that is. */
  char **argv = xcalloc(o->argv.n + 1, sizeof *argv);
  for (size_t i = 0; i < o->argv.n; i++)
    argv[i] = o->argv.v[i];
  const char *file = argv[0];
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    int e = errno;
    if (e == ENOENT || e == ENOTDIR)
      child_report(rfd, 127, ": no such file or directory", file, 0);
    child_report(rfd, 126, "", file, e);
  }
  const char *path = env_get(&o->env, "PATH");
  if (!path)
    path = DEFAULT_PATH;
  int seen = 0;
  char buf[4096];
  for (const char *p = path;;) {
    const char *c = strchrnul(p, ':');
    size_t dl = (size_t)(c - p);
    const char *dir = dl ? p : ".";
    if (!dl)
      dl = 1;
    if (dl + 1 + strlen(file) < sizeof buf) {
      memcpy(buf, dir, dl);
      buf[dl] = '/';
      strcpy(buf + dl + 1, file);
      execve(buf, argv, envp);
      if (errno != ENOENT && errno != ENOTDIR && !seen)
        seen = errno;
    }
    if (!*c)
      break;
    p = c + 1;
  }
  if (seen)
    child_report(rfd, 126, "", file, seen);
  child_report(rfd, 127, ": command not found", file, 0);
}

static int
read_text(const char *path, char **out)
{
  struct ci_error *e = NULL;
  size_t len;
  int r = ci_read_file(path, 4 << 20, out, &len, &e);
  ci_error_free(&e);
  if (r < 0)
    *out = NULL;
  return r;
}

int
rt_exec(const struct rt_exec_opts *o, int *status, int *exit_code, struct ci_error **err)
{
  *exit_code = 1;
  bool root = geteuid() == 0;
  bool single = false;
  if (root)
    rt__cgroup_join_of(o->pid);
  else {
    /* Single mapping: setgroups is denied in the container's namespace. */
    char p[64], buf[8] = "";
    snprintf(p, sizeof p, "/proc/%d/setgroups", (int)o->pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      single = read(fd, buf, sizeof buf - 1) >= 4 && !strncmp(buf, "deny", 4);
      close(fd);
    }
  }
  if (rt__join(o->pid, true, err) < 0)
    return -1;
  struct rt_user u = {0};
  if (!o->user || !strcmp(o->user, "root") || !strcmp(o->user, "0") ||
      !strcmp(o->user, "0:0")) {
    /* root: no need to read the password database */
  } else {
    cleanup_free char *passwd = NULL, *group = NULL;
    read_text("/etc/passwd", &passwd);
    read_text("/etc/group", &group);
    if (rt_user_resolve(o->user, passwd, group, &u, err) < 0)
      return -1;
  }
  int rp[2];
  if (pipe2(rp, O_CLOEXEC) < 0) {
    rt_user_release(&u);
    return ci_error_make(err, -errno, "cannot make a pipe: %s", strerror(errno));
  }
  struct sigaction sa = {.sa_handler = on_stop_signal};
  sigemptyset(&sa.sa_mask);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &old);
  pid_t c = fork();
  if (c < 0) {
    int e = errno;
    close(rp[0]);
    close(rp[1]);
    rt_user_release(&u);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return ci_error_make(err, -e, "cannot fork: %s", strerror(e));
  }
  if (c == 0) {
    close(rp[0]);
    exec_child(o, &u, single, rp[1]);
  }
  close(rp[1]);
  rt_user_release(&u);
  setpgid(c, c);
  step_pid = c;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  char buf[1100];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(rp[0], buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len == sizeof buf - 1)
      break;
  }
  close(rp[0]);
  buf[len] = '\0';
  int st;
  while (waitpid(c, &st, 0) < 0)
    if (errno != EINTR)
      return ci_error_make(err, -errno, "cannot wait for the process: %s", strerror(errno));
  step_pid = 0;
  if (len) {
    char *sp = strchr(buf, ' ');
    *exit_code = atoi(buf);
    return ci_error_make(err, CI_EFAIL, "%s", sp ? sp + 1 : buf);
  }
  *status = st;
  return 0;
}
