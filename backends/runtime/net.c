/* backends/runtime/net.c - a container's network beyond the host's: slirp4netns, shared
 * namespaces, resolv.conf.
 *
 * --network private gives the init a new network namespace (owned by the container's user
 * namespace) and the monitor starts slirp4netns for it: a tap device with 10.0.2.100/24, the
 * gateway 10.0.2.2 (the host, without its loopback: --disable-host-loopback) and a DNS
 * forwarder at 10.0.2.3.  slirp4netns is the monitor's child: it dies with it (PDEATHSIG, and
 * EOF on its --exit-fd), and the monitor kills it at teardown.  --netns-of PID makes the
 * container join the user and network namespaces of another container's init instead (a
 * task's containers share one network, so services answer on localhost): a network namespace
 * can only be entered with CAP_SYS_ADMIN in the user namespace that owns it.
 */
#include "runtime.h"
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* slirp4netns's fixed addresses (its --configure defaults). */
#define SLIRP_DNS "10.0.2.3"
/* How long slirp4netns may take to configure the namespace. */
#define SLIRP_READY_MS 20000
#define SLIRP_LOG "slirp4netns.log"

bool
rt__net_isolated(const struct rt_create_opts *o)
{
  return o->network != RT_NET_HOST || o->netns_of;
}

/* Is the nameserver address a (IPv4, the only family slirp forwards) address reachable from
 * the namespace: not loopback, not unspecified? */
static bool
reachable_ns(const char *addr)
{
  struct in_addr a;
  if (inet_pton(AF_INET, addr, &a) != 1)
    return false;
  uint32_t h = ntohl(a.s_addr);
  return (h >> 24) != 127 && h != 0;
}

void
rt__net_resolv_conf(struct ci_buf *out, const char *host, enum rt_network net)
{
  if (net == RT_NET_NONE)
    return;
  if (net == RT_NET_HOST) {
    ci_buf_adds(out, host);
    return;
  }
  bool kept = false;
  while (*host) {
    const char *nl = strchr(host, '\n');
    size_t len = nl ? (size_t)(nl - host) : strlen(host);
    const char *p = host;
    while (p < host + len && (*p == ' ' || *p == '\t'))
      p++;
    bool copy = true;
    if ((size_t)(host + len - p) > 10 && !strncmp(p, "nameserver", 10) &&
        (p[10] == ' ' || p[10] == '\t')) {
      p += 10;
      while (p < host + len && (*p == ' ' || *p == '\t'))
        p++;
      const char *e = p;
      while (e < host + len && *e != ' ' && *e != '\t' && *e != '\r' && *e != '#')
        e++;
      char addr[64];
      size_t alen = (size_t)(e - p) < sizeof addr ? (size_t)(e - p) : sizeof addr - 1;
      memcpy(addr, p, alen);
      addr[alen] = '\0';
      copy = reachable_ns(addr);
      kept |= copy;
    }
    if (copy) {
      ci_buf_add(out, host, len);
      ci_buf_addc(out, '\n');
    }
    host += len + (nl ? 1 : 0);
  }
  if (!kept)
    ci_buf_adds(out, "nameserver " SLIRP_DNS "\n");
}

int
rt__net_join(pid_t pid)
{
  int pidfd = rt__pidfd_open(pid);
  if (pidfd < 0)
    return -1;
  struct stat a, b;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  /* Only another container's namespaces: never the host's user namespace. */
  if (stat(path, &a) < 0 || stat("/proc/self/ns/user", &b) < 0) {
    close(pidfd);
    return -1;
  }
  if (a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
    close(pidfd);
    errno = EINVAL;
    return -1;
  }
  int r = setns(pidfd, CLONE_NEWUSER | CLONE_NEWNET);
  int e = errno;
  close(pidfd);
  errno = e;
  return r;
}

/* The last non-empty line slirp4netns wrote (for an error message), or "". */
static void
log_tail(int dirfd, char *buf, size_t n)
{
  buf[0] = '\0';
  int fd = openat(dirfd, SLIRP_LOG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  char text[4096];
  off_t size = lseek(fd, 0, SEEK_END);
  off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
  ssize_t len = pread(fd, text, sizeof text - 1, from);
  close(fd);
  if (len <= 0)
    return;
  text[len] = '\0';
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    text[--len] = '\0';
  const char *line = strrchr(text, '\n');
  line = line ? line + 1 : text;
  size_t len2 = strlen(line) < n - 1 ? strlen(line) : n - 1;
  memcpy(buf, line, len2);
  buf[len2] = '\0';
}

int
rt__net_start(struct rt__net *n, const struct rt_create_opts *o, int dirfd, pid_t pid,
              struct ci_error **err)
{
  n->slirp = 0;
  n->exit_fd = n->ready_fd = -1;
  if (o->network != RT_NET_PRIVATE || o->netns_of)
    return 0;
  int rp[2] = {-1, -1}, xp[2] = {-1, -1};
  int logfd = openat(dirfd, SLIRP_LOG, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                     0600);
  if (logfd < 0 || pipe2(rp, O_CLOEXEC) < 0 || pipe2(xp, O_CLOEXEC) < 0) {
    ci_error_make(err, -errno, "cannot start slirp4netns: %s", strerror(errno));
    goto fail;
  }
  char target[32];
  snprintf(target, sizeof target, "%d", (int)pid);
  pid_t monitor = getpid();
  pid_t s = fork();
  if (s < 0) {
    ci_error_make(err, -errno, "cannot start slirp4netns: %s", strerror(errno));
    goto fail;
  }
  if (s == 0) {
    /* Die with the monitor, even when it is SIGKILLed. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != monitor)
      _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* fds 3 and 4 are the ready and exit pipes; nothing else stays open.  Above 4 first, so
     * that no dup2 below overwrites a source. */
    int null = fcntl(open("/dev/null", O_RDONLY | O_CLOEXEC), F_DUPFD_CLOEXEC, 5);
    int lfd = fcntl(logfd, F_DUPFD_CLOEXEC, 5), rfd = fcntl(rp[1], F_DUPFD_CLOEXEC, 5);
    int xfd = fcntl(xp[0], F_DUPFD_CLOEXEC, 5);
    if (null < 0 || lfd < 0 || rfd < 0 || xfd < 0 || dup2(null, 0) < 0 || dup2(lfd, 1) < 0 ||
        dup2(lfd, 2) < 0 || dup2(rfd, 3) < 0 || dup2(xfd, 4) < 0)
      _exit(127);
    close_range(5, ~0U, 0);
    /* slirp4netns' --enable-sandbox makes only "/" private in the mount namespace it creates,
     * then detaches the old root.  Where it may create one in the host's user namespace (as
     * root), that unmount propagates to the host's shared mounts: the network namespaces
     * podman keeps in /run/netns, the root file systems of docker's running containers.  A
     * mount namespace of its own, slave to the host's, stops it there. */
    if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
      dprintf(2, "cannot make the mounts of slirp4netns's namespace slaves: %s\n",
              strerror(errno));
      _exit(126);
    }
    char *argv[] = {"slirp4netns",     "--configure",   "--mtu=65520",
                    "--disable-host-loopback",           "--enable-sandbox",
                    "--enable-seccomp", "--ready-fd=3", "--exit-fd=4",
                    target,            "tap0",          NULL};
    execvp(argv[0], argv);
    dprintf(2, "cannot run slirp4netns: %s\n", strerror(errno));
    _exit(127);
  }
  close(logfd);
  close(rp[1]);
  close(xp[0]);
  n->slirp = s;
  n->ready_fd = rp[0];
  n->exit_fd = xp[1];
  return 0;
fail:
  if (logfd >= 0)
    close(logfd);
  for (int i = 0; i < 2; i++) {
    if (rp[i] >= 0)
      close(rp[i]);
    if (xp[i] >= 0)
      close(xp[i]);
  }
  return -1;
}

int
rt__net_wait(struct rt__net *n, int dirfd, struct ci_error **err)
{
  if (!n->slirp)
    return 0;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (spent >= SLIRP_READY_MS)
      return ci_error_make(err, -ETIMEDOUT, "slirp4netns was not ready after %d s",
                           SLIRP_READY_MS / 1000);
    struct pollfd pf = {n->ready_fd, POLLIN, 0};
    int r = poll(&pf, 1, (int)(SLIRP_READY_MS - spent));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    char ch;
    ssize_t got = read(n->ready_fd, &ch, 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got == 1)
      break;
    /* EOF: it died before it was ready. */
    int st = 0;
    while (waitpid(n->slirp, &st, 0) < 0 && errno == EINTR) {
    }
    n->slirp = 0;
    char why[512];
    log_tail(dirfd, why, sizeof why);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
      return ci_error_make(err, -ENOENT,
                           "--network private needs slirp4netns (Debian: apt-get install "
                           "slirp4netns)%s%s",
                           why[0] ? ": " : "", why);
    return ci_error_make(err, CI_EFAIL, "slirp4netns failed%s%s", why[0] ? ": " : "", why);
  }
  close(n->ready_fd);
  n->ready_fd = -1;
  return 0;
}

void
rt__net_stop(struct rt__net *n)
{
  if (n->ready_fd >= 0)
    close(n->ready_fd);
  if (n->exit_fd >= 0)
    close(n->exit_fd);
  n->ready_fd = n->exit_fd = -1;
  if (n->slirp > 0) {
    kill(n->slirp, SIGKILL);
    while (waitpid(n->slirp, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  n->slirp = 0;
}
