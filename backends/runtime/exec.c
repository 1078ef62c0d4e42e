/* backends/runtime/exec.c - run a process in a container (the hot path), and join one.
 *
 * An exec does not join the container: the container's init serves execs on a unix socket in
 * the run dir (RT__EXEC_SOCK).  `cirrus-runtime exec` connects, checks that the listener is
 * the container's init (SO_PEERCRED), sends the request with its stdout and stderr
 * (SCM_RIGHTS) and waits for the reply.  The init forks a child per connection, already in
 * every namespace and cgroup of the container, which reads the request, switches user and
 * execs the process (rt__exec_session): no process of ours stands between the init and the
 * step, as with an engine's exec.  Joining (setns, and as root a cgroup v1 attach that waits
 * for an RCU grace period, ~15 ms here) is left to the file operations, which need host files.
 *
 * Request: a 4-byte length (host order) sent with the two fds, then that many bytes of
 * NUL-terminated tagged strings: 'C' cwd, 'U' user, 'E' an environment entry, 'A' an argv
 * element, in order.  The client shuts its writing side down to have the process group killed
 * (SIGTERM, SIGINT, SIGHUP to the client); a closed connection does the same.  Replies, one
 * line each: "F <exit code> <message>" when the process could not be started, then from the
 * init "X <wait status>" when it ended. */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <linux/filter.h>

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

/* A failure before execve, to the client: "F CODE message"; then exit with CODE. */
static void __attribute__((noreturn))
child_report(int fd, int code, const char *msg, const char *arg, int e)
{
  char buf[1024];
  int n;
  if (e)
    n = snprintf(buf, sizeof buf, "F %d %s%s: %s\n", code, arg, msg, strerror(e));
  else
    n = snprintf(buf, sizeof buf, "F %d %s%s\n", code, arg, msg);
  if (n > 0 && send(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, MSG_NOSIGNAL) < 0) {
    /* the client is gone */
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
exec_child(const struct rt_exec_opts *o, const struct rt_user *u, bool single,
           const struct sock_fprog *filter, int rfd)
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
  /* While still root in the user namespace: a process that switched to another user needs
   * NO_NEW_PRIVS to load a filter, which would break the image's setuid programs. */
  if (filter && rt__seccomp_apply(filter) < 0)
    child_report(rfd, 1, "cannot load the seccomp filter", "", errno);
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

/* ---------------------------------------------------------------- the session (in the init) */

#define REQUEST_MAX ((size_t)8 << 20)

static bool
read_full(int fd, void *buf, size_t len)
{
  char *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

/* Receive the request: the length and the client's stdout/stderr, then the strings. */
static bool
recv_request(int conn, struct rt_exec_opts *o, int fds[2])
{
  uint32_t len = 0;
  char cbuf[CMSG_SPACE(sizeof(int) * 2)];
  struct iovec iov = {&len, sizeof len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  ssize_t r;
  do
    r = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (r < 0 && errno == EINTR);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  if (r != sizeof len || !cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
      cm->cmsg_len != CMSG_LEN(sizeof(int) * 2) || len == 0 || len > REQUEST_MAX)
    return false;
  memcpy(fds, CMSG_DATA(cm), sizeof(int) * 2);
  cleanup_free char *buf = xmalloc(len);
  if (!read_full(conn, buf, len) || buf[len - 1] != '\0')
    return false;
  for (const char *p = buf; p < buf + len; p += strlen(p) + 1) {
    switch (p[0]) {
    case 'C':
      free(o->cwd);
      o->cwd = xstrdup(p + 1);
      break;
    case 'U':
      free(o->user);
      o->user = xstrdup(p + 1);
      break;
    case 'E':
      ci_strv_push(&o->env, p + 1);
      break;
    case 'A':
      ci_strv_push(&o->argv, p + 1);
      break;
    default:
      return false;
    }
  }
  return o->argv.n > 0;
}

void
rt__exec_session(int conn, bool single, const struct sock_fprog *filter)
{
  struct rt_exec_opts o = {0};
  int fds[2] = {-1, -1};
  if (!recv_request(conn, &o, fds))
    child_report(conn, 1, "malformed exec request", "", 0);
  struct rt_user u = {0};
  if (o.user && strcmp(o.user, "root") && strcmp(o.user, "0") && strcmp(o.user, "0:0")) {
    cleanup_free char *passwd = NULL, *group = NULL;
    struct ci_error *err = NULL;
    read_text("/etc/passwd", &passwd);
    read_text("/etc/group", &group);
    if (rt_user_resolve(o.user, passwd, group, &u, &err) < 0)
      child_report(conn, 1, err->msg, "", 0);
  }
  if (dup2(fds[0], 1) < 0 || dup2(fds[1], 2) < 0)
    child_report(conn, 1, "cannot set up the output", "", errno);
  exec_child(&o, &u, single, filter, conn);
}

/* ---------------------------------------------------------------- the client */

static int client_conn = -1;

static void
on_stop_signal(int sig)
{
  (void)sig;
  if (client_conn >= 0)
    shutdown(client_conn, SHUT_WR); /* the init kills the process group */
}

static void
add_tagged(struct ci_buf *b, char tag, const char *s)
{
  ci_buf_addc(b, tag);
  ci_buf_adds(b, s);
  ci_buf_addc(b, '\0');
}

int
rt_exec(const struct rt_exec_opts *o, int *status, int *exit_code, struct ci_error **err)
{
  *exit_code = 1;
  cleanup_close int dirfd = open(o->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return ci_error_make(err, -errno, "no container in %s: %s", o->run_dir, strerror(errno));
  /* Through /proc/self/fd: a run dir path of any length fits in sun_path. */
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/" RT__EXEC_SOCK, dirfd);
  int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (conn < 0)
    return ci_error_make(err, -errno, "socket: %s", strerror(errno));
  if (connect(conn, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(conn);
    return ci_error_make(err, -e, "the container of %s does not answer: %s", o->run_dir,
                         strerror(e));
  }
  /* The listener must be that container's init, not whatever else is bound there. */
  struct ucred cr;
  socklen_t cl = sizeof cr;
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || (o->pid && cr.pid != o->pid)) {
    close(conn);
    return ci_error_make(err, CI_EFAIL, "the exec socket of %s is not served by pid %d",
                         o->run_dir, (int)o->pid);
  }
  struct ci_buf b = CI_BUF_INIT;
  if (o->cwd)
    add_tagged(&b, 'C', o->cwd);
  if (o->user)
    add_tagged(&b, 'U', o->user);
  for (size_t i = 0; i < o->env.n; i++)
    add_tagged(&b, 'E', o->env.v[i]);
  for (size_t i = 0; i < o->argv.n; i++)
    add_tagged(&b, 'A', o->argv.v[i]);
  uint32_t len = (uint32_t)b.len;
  int fds[2] = {1, 2};
  char cbuf[CMSG_SPACE(sizeof fds)];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {&len, sizeof len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof fds);
  memcpy(CMSG_DATA(cm), fds, sizeof fds);
  bool sent = b.len <= REQUEST_MAX && sendmsg(conn, &mh, MSG_NOSIGNAL) == sizeof len;
  for (size_t off = 0; sent && off < b.len;) {
    ssize_t n = send(conn, b.s + off, b.len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      sent = false;
    else
      off += (size_t)n;
  }
  ci_buf_release(&b);
  if (!sent) {
    int e = errno;
    close(conn);
    return ci_error_make(err, -e, "cannot send the exec request: %s",
                         len > REQUEST_MAX ? "too large" : strerror(e));
  }
  /* SIGTERM/SIGINT/SIGHUP: the init kills the process group; we report how it ended. */
  client_conn = conn;
  struct sigaction sa_stop = {.sa_handler = on_stop_signal};
  sigemptyset(&sa_stop.sa_mask);
  sigaction(SIGTERM, &sa_stop, NULL);
  sigaction(SIGINT, &sa_stop, NULL);
  sigaction(SIGHUP, &sa_stop, NULL);
  char reply[1200];
  size_t rl = 0;
  for (;;) {
    ssize_t n = read(conn, reply + rl, sizeof reply - 1 - rl);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    rl += (size_t)n;
    if (rl == sizeof reply - 1)
      break;
  }
  client_conn = -1;
  close(conn);
  reply[rl] = '\0';
  char *nl = strchr(reply, '\n');
  if (nl)
    *nl = '\0';
  if (rl > 2 && reply[0] == 'X') {
    *status = atoi(reply + 2);
    return 0;
  }
  if (rl > 2 && reply[0] == 'F') {
    char *sp = strchr(reply + 2, ' ');
    *exit_code = atoi(reply + 2);
    return ci_error_make(err, CI_EFAIL, "%s", sp ? sp + 1 : "");
  }
  return ci_error_make(err, CI_EFAIL, "the container of %s went away", o->run_dir);
}
