/* backends/runtime/container.c - create a container, be its monitor, tear it down.
 *
 * The monitor (the calling process) clones the container's init with new user, mount, pid,
 * uts and ipc namespaces (and net for --network none|private; with --netns-of it joins another
 * container's user and network namespaces, net.c), writes its id maps, and releases it
 * over a socketpair (with idmapped bind mounts attached when running as root).  The init builds
 * the root file system (rootfs.c: overlay, fuse-overlayfs or a copy; then /proc, /sys, /dev,
 * /tmp, the asked mounts), pivots into it, reports "ready" (or an error message) over a pipe
 * and then serves execs as pid 1, reaping orphans (init_loop; the exec protocol is in exec.c).
 */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <linux/filter.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the container's side */

static char *argv_area;
static size_t argv_len;

void
rt_set_argv_area(char *start, size_t len)
{
  argv_area = start;
  argv_len = len;
}

struct child {
  const struct rt_create_opts *o;
  const struct rt_idmap *m;
  int sync_fd; /* socketpair end: 'G' + idmapped trees from the monitor */
  int msg_fd;  /* pipe: "R" when ready, "E<message>" on failure */
  int *src_fds; /* per mount: O_PATH of the host source, or -1 */
  int *tree_fds; /* per mount: an idmapped detached tree from the monitor, or -1 */
  int listen_fd; /* the exec socket (RT__EXEC_SOCK in the run dir) */
  const struct sock_fprog *filter; /* the steps' seccomp filter (built by the monitor), or NULL */
};

static void __attribute__((noreturn, format(printf, 2, 3)))
child_fail(struct child *c, const char *fmt, ...)
{
  char buf[1024];
  int e = errno;
  buf[0] = 'E';
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + 1, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  size_t len = 1 + ((size_t)n < sizeof buf - 1 ? (size_t)n : sizeof buf - 2);
  if (e && len + 2 < sizeof buf)
    len += (size_t)snprintf(buf + len, sizeof buf - len, ": %s", strerror(e));
  if (write(c->msg_fd, buf, len) < 0) {
    /* nobody to tell */
  }
  _exit(1);
}

static int
openat2_in_root(int rootfd, const char *path, int flags)
{
  struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  while (*path == '/')
    path++;
  if (!*path)
    path = ".";
  return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* An O_PATH fd of path inside the root at rootfd, creating what is missing: directories, and a
 * regular file as the last component when want_file. */
static int
target_at(struct child *c, int rootfd, const char *path, bool want_file)
{
  int fd = openat2_in_root(rootfd, path, O_PATH);
  if (fd >= 0)
    return fd;
  if (errno != ENOENT)
    child_fail(c, "cannot open %s in the container", path);
  size_t len = strlen(path);
  char buf[4096];
  if (len >= sizeof buf)
    child_fail(c, "path too long: %s", path);
  memcpy(buf, path, len + 1);
  /* Walk the components, creating each missing one in its (resolved) parent. */
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char saved = *p;
    *p = '\0';
    int cfd = openat2_in_root(rootfd, buf, O_PATH);
    if (cfd < 0) {
      if (errno != ENOENT)
        child_fail(c, "cannot open %s in the container", buf);
      char *slash = strrchr(buf, '/');
      const char *name = slash + 1;
      *slash = '\0';
      int pfd = openat2_in_root(rootfd, buf[0] ? buf : "/", O_DIRECTORY);
      *slash = '/';
      if (pfd < 0)
        child_fail(c, "cannot open the parent of %s in the container", buf);
      bool last = saved == '\0';
      if (last && want_file) {
        int f = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (f < 0 && errno != EEXIST)
          child_fail(c, "cannot create %s in the container", buf);
        if (f >= 0)
          close(f);
      } else if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST) {
        child_fail(c, "cannot create %s in the container", buf);
      }
      close(pfd);
      cfd = openat2_in_root(rootfd, buf, O_PATH);
      if (cfd < 0)
        child_fail(c, "cannot open %s in the container", buf);
    }
    *p = saved;
    if (saved == '\0')
      return cfd;
    close(cfd);
  }
}

static void
fdpath(char *buf, size_t n, int fd)
{
  snprintf(buf, n, "/proc/self/fd/%d", fd);
}

/* Mount a new file system of type at path (in the root at rootfd). */
static void
mount_fs_at(struct child *c, int rootfd, const char *path, const char *type, unsigned long flags,
            const char *data)
{
  char fp[64];
  int t = target_at(c, rootfd, path, false);
  fdpath(fp, sizeof fp, t);
  if (mount(type, fp, type, flags, data) < 0)
    child_fail(c, "cannot mount %s on %s", type, path);
  close(t);
}

/* Attach a detached tree (from open_tree) at target fd t; ro makes it read-only recursively. */
static void
attach_tree(struct child *c, int tree, int t, bool ro, const char *what)
{
  if (ro) {
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
      child_fail(c, "cannot make %s read-only", what);
  }
  if (move_mount(tree, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    child_fail(c, "cannot mount %s", what);
}

static void
bind_at(struct child *c, int rootfd, const char *host, int srcfd, int tree, const char *path,
        bool ro)
{
  struct stat st;
  if (tree < 0) {
    /* By path: the monitor's fd belongs to the host's mount namespace, which open_tree
     * refuses to clone from here; the path resolves the same in our copy of it. */
    (void)srcfd;
    tree = open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
      child_fail(c, "cannot bind %s", host);
  }
  if (fstat(tree, &st) < 0)
    child_fail(c, "cannot stat %s", host);
  int t = target_at(c, rootfd, path, !S_ISDIR(st.st_mode));
  char what[4200];
  snprintf(what, sizeof what, "%s on %s", host, path);
  attach_tree(c, tree, t, ro, what);
  close(t);
  close(tree);
}

static void
setup_dev(struct child *c, int rootfd)
{
  mount_fs_at(c, rootfd, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k");
  int dev = openat2_in_root(rootfd, "/dev", O_DIRECTORY);
  if (dev < 0)
    child_fail(c, "cannot open /dev in the container");
  static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(nodes); i++) {
    char host[32];
    snprintf(host, sizeof host, "/dev/%s", nodes[i]);
    int f = openat(dev, nodes[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (f < 0)
      child_fail(c, "cannot create /dev/%s", nodes[i]);
    close(f);
    int tree = open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
      child_fail(c, "cannot bind %s", host);
    if (move_mount(tree, "", dev, nodes[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
      child_fail(c, "cannot bind %s", host);
    close(tree);
  }
  static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                          {"stdin", "/proc/self/fd/0"},
                                          {"stdout", "/proc/self/fd/1"},
                                          {"stderr", "/proc/self/fd/2"},
                                          {"ptmx", "pts/ptmx"},
                                          {"core", "/proc/kcore"}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(links); i++)
    if (symlinkat(links[i][1], dev, links[i][0]) < 0)
      child_fail(c, "cannot create /dev/%s", links[i][0]);
  if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 ||
      mkdirat(dev, "mqueue", 0755) < 0)
    child_fail(c, "cannot create /dev/pts, /dev/shm or /dev/mqueue");
  close(dev);
  /* devpts: optional (a step without a terminal does not need it). */
  int t = openat2_in_root(rootfd, "/dev/pts", O_PATH);
  if (t >= 0) {
    char fp[64];
    fdpath(fp, sizeof fp, t);
    if (c->m->mode == RT_IDMAP_SINGLE ||
        mount("devpts", fp, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0) {
      if (mount("devpts", fp, "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620") < 0) {
        /* no /dev/pts */
      }
    }
    close(t);
  }
  mount_fs_at(c, rootfd, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
  t = openat2_in_root(rootfd, "/dev/mqueue", O_PATH);
  if (t >= 0) {
    char fp[64];
    fdpath(fp, sizeof fp, t);
    if (mount("mqueue", fp, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
      /* optional */
    }
    close(t);
  }
}

static void
lo_up(struct child *c)
{
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    child_fail(c, "cannot open a socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
    child_fail(c, "cannot read the flags of lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
    child_fail(c, "cannot bring lo up");
  close(s);
}

/* Write text to path in the root at rootfd (created or truncated). */
static void
write_in_root(struct child *c, int rootfd, const char *path, const char *text, size_t len)
{
  char fp[64];
  int t = target_at(c, rootfd, path, true);
  fdpath(fp, sizeof fp, t);
  int fd = open(fp, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0)
    child_fail(c, "cannot write %s in the container", path);
  close(t);
  while (len) {
    ssize_t n = write(fd, text, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      child_fail(c, "cannot write %s in the container", path);
    text += n;
    len -= (size_t)n;
  }
  close(fd);
}

/* Append the host's file at path (best effort, at most 64 KiB) to b. */
static void
add_host_file(struct ci_buf *b, const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[4096];
  ssize_t n;
  while (b->len < 65536 && (n = read(fd, buf, sizeof buf)) > 0)
    ci_buf_add(b, buf, (size_t)n);
  close(fd);
  if (b->len && b->s[b->len - 1] != '\n')
    ci_buf_addc(b, '\n');
}

/* /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker provides them: localhost and the
 * container's name resolve, and so does what the host resolves (with the host's network its
 * name servers are reachable; with --network private those that are not loopback, else
 * slirp4netns's forwarder; with --network none they do not matter).  They are written into
 * the upper layer; an image build leaves them out of its layers. */
static void
write_etc_files(struct child *c, int rootfd, const char *hostname)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_addf(&b, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                  "127.0.1.1\t%s\n", hostname);
  if (c->o->network != RT_NET_NONE) {
    ci_buf_adds(&b, "# from the host\n");
    add_host_file(&b, "/etc/hosts");
  }
  write_in_root(c, rootfd, "/etc/hosts", b.s, b.len);
  ci_buf_reset(&b);
  ci_buf_addf(&b, "%s\n", hostname);
  write_in_root(c, rootfd, "/etc/hostname", b.s, b.len);
  ci_buf_reset(&b);
  struct ci_buf host = CI_BUF_INIT;
  add_host_file(&host, "/etc/resolv.conf");
  rt__net_resolv_conf(&b, ci_buf_str(&host), c->o->network);
  ci_buf_release(&host);
  write_in_root(c, rootfd, "/etc/resolv.conf", b.len ? b.s : "", b.len);
  ci_buf_release(&b);
}

/* Receive the go byte and the monitor's idmapped trees. */
static void
child_wait_go(struct child *c)
{
  size_t n = c->o->n_mounts;
  char cbuf[CMSG_SPACE(sizeof(int) * 64)];
  char go = 0;
  struct iovec iov = {&go, 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  ssize_t r;
  do
    r = recvmsg(c->sync_fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r != 1 || go != 'G')
    _exit(1); /* the monitor gave up (it reports why) */
  size_t k = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *fds = (int *)CMSG_DATA(cm);
    for (size_t i = 0; i < cnt; i++) {
      /* trees come in the order of the mounts that have a source */
      while (k < n && c->src_fds[k] < 0)
        k++;
      if (k < n)
        c->tree_fds[k++] = fds[i];
      else
        close(fds[i]);
    }
  }
}

/* The exec socket, made in the run dir while the host's tree is still in view. */
static void
listen_exec(struct child *c)
{
  c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->listen_fd < 0)
    child_fail(c, "cannot make the exec socket");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, RT__EXEC_SOCK, sizeof RT__EXEC_SOCK);
  /* relative to the run dir: its path may be longer than sun_path */
  if (chdir(c->o->run_dir) < 0)
    child_fail(c, "cannot enter %s", c->o->run_dir);
  if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(c->listen_fd, 64) < 0)
    child_fail(c, "cannot listen on %s/" RT__EXEC_SOCK, c->o->run_dir);
  if (chdir("/") < 0)
    child_fail(c, "cannot enter /");
}

/*
 * pid 1: serve execs and reap orphans.  Each connection to the exec socket gets a child that
 * becomes the process (rt__exec_session); its wait status goes back on the connection.  A
 * connection whose client shut down or went away has its process group killed.  Execs wait
 * until the monitor says 'C' (the init is in the container's cgroups, so what it forks is too),
 * which the monitor sends after "ready" so that the cgroup attach overlaps the caller's copy.
 * Every fd here is CLOEXEC: none reaches a process.
 */
struct served {
  pid_t pid;
  int conn;
  bool killed; /* the client shut down: the group is killed, the status still goes back */
};

/* Close every fd from 3 up but a and b. */
static void
close_all_but(int a, int b)
{
  int lo = a < b ? a : b, hi = a < b ? b : a;
  if (lo > 3)
    close_range(3, (unsigned)lo - 1, 0);
  if (hi > lo + 1)
    close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
  close_range((unsigned)hi + 1, ~0U, 0);
}

static void __attribute__((noreturn))
init_loop(struct child *c)
{
  int lfd = c->listen_fd, sfd = c->sync_fd;
  bool single = c->m->mode == RT_IDMAP_SINGLE, open_for_exec = false;
  close_all_but(lfd, sfd);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int sigfd = signalfd(-1, &chld, SFD_CLOEXEC);
  if (sigfd < 0)
    _exit(1);
  struct served *sv = NULL;
  size_t n = 0, alloc = 0;
  struct pollfd *pf = NULL;
  size_t pf_alloc = 0;
  for (;;) {
    CI_GROW(pf, pf_alloc, n + 3);
    pf[0] = (struct pollfd){sigfd, POLLIN, 0};
    pf[1] = (struct pollfd){sfd, POLLIN, 0};
    pf[2] = (struct pollfd){open_for_exec ? lfd : -1, POLLIN, 0};
    for (size_t i = 0; i < n; i++)
      pf[3 + i] = (struct pollfd){sv[i].killed ? -1 : sv[i].conn, POLLRDHUP, 0};
    if (poll(pf, n + 3, -1) < 0)
      continue;
    for (size_t i = 0; i < n; i++) {
      if (pf[3 + i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        kill(-sv[i].pid, SIGKILL);
        sv[i].killed = true;
      }
    }
    if (pf[0].revents) {
      struct signalfd_siginfo si;
      if (read(sigfd, &si, sizeof si) < 0) {
        /* EINTR or nothing: reap anyway */
      }
      int st;
      pid_t p;
      while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < n; i++) {
          if (sv[i].pid != p)
            continue;
          char line[32];
          int ll = snprintf(line, sizeof line, "X %d\n", st);
          if (send(sv[i].conn, line, (size_t)ll, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the client is gone */
          }
          close(sv[i].conn);
          sv[i] = sv[--n];
          break;
        }
      }
    }
    if (pf[1].revents) {
      char b = 0;
      ssize_t r = read(sfd, &b, 1);
      if (r == 1 && b == 'C') {
        open_for_exec = true;
      } else if (r == 0 || (r < 0 && errno != EINTR)) {
        close(sfd); /* the monitor is done with us (or gone: PDEATHSIG follows) */
        sfd = -1;
      }
    }
    if (pf[2].revents & POLLIN) {
      int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      if (conn < 0)
        continue;
      pid_t p = fork();
      if (p == 0)
        rt__exec_session(conn, single, c->filter);
      if (p < 0) {
        char line[96];
        int ll = snprintf(line, sizeof line, "F 1 cannot fork: %s\n", strerror(errno));
        if (send(conn, line, (size_t)ll, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
          /* the client is gone */
        }
        close(conn);
        continue;
      }
      setpgid(p, p); /* now, so that a kill right away reaches it (the child does it too) */
      CI_GROW(sv, alloc, n + 1);
      sv[n++] = (struct served){p, conn, false};
    }
  }
}

static void __attribute__((noreturn))
child_main(struct child *c)
{
  const struct rt_create_opts *o = c->o;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  child_wait_go(c);
  if (setresgid(0, 0, 0) < 0)
    child_fail(c, "cannot become group 0 in the user namespace");
  if (c->m->mode != RT_IDMAP_SINGLE && setgroups(0, NULL) < 0)
    child_fail(c, "cannot drop supplementary groups");
  if (setresuid(0, 0, 0) < 0)
    child_fail(c, "cannot become root in the user namespace");
  /* Credential changes reset the parent-death signal: arm it again. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    child_fail(c, "cannot make the mounts private");
  char merged[4200];
  snprintf(merged, sizeof merged, "%s/merged", o->run_dir);
  struct ci_error *rerr = NULL;
  if (rt__rootfs_mount(o, merged, &rerr) < 0) {
    errno = 0;
    child_fail(c, "%s", rerr->msg);
  }
  listen_exec(c);
  int rootfd = open(merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    child_fail(c, "cannot open %s", merged);
  mount_fs_at(c, rootfd, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  if (rt__net_isolated(o)) {
    mount_fs_at(c, rootfd, "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  } else {
    int t = target_at(c, rootfd, "/sys", false);
    int tree = open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
      child_fail(c, "cannot bind /sys");
    attach_tree(c, tree, t, true, "/sys");
    close(tree);
    close(t);
  }
  setup_dev(c, rootfd);
  if (!o->image_tmp)
    mount_fs_at(c, rootfd, "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  for (size_t i = 0; i < o->n_mounts; i++) {
    const struct rt_mount *mt = &o->mounts[i];
    if (mt->kind == RT_MOUNT_TMPFS)
      mount_fs_at(c, rootfd, mt->dst, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    else
      bind_at(c, rootfd, mt->src, c->src_fds[i], c->tree_fds[i], mt->dst, mt->ro);
  }
  const char *hn = o->hostname ? o->hostname : "cirrus";
  if (sethostname(hn, strlen(hn)) < 0)
    child_fail(c, "cannot set the hostname");
  write_etc_files(c, rootfd, hn);
  if (rt__net_isolated(o) && !o->netns_of)
    lo_up(c);
  if (fchdir(rootfd) < 0)
    child_fail(c, "cannot enter the root file system");
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    child_fail(c, "pivot_root failed");
  if (umount2(".", MNT_DETACH) < 0)
    child_fail(c, "cannot detach the old root");
  if (chdir("/") < 0)
    child_fail(c, "cannot enter /");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0)
    child_fail(c, "cannot open /dev/null");
  if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
    child_fail(c, "cannot redirect to /dev/null");
  prctl(PR_SET_NAME, "cirrus-init");
  if (argv_area && argv_len > sizeof "cirrus-init") {
    memset(argv_area, 0, argv_len);
    memcpy(argv_area, "cirrus-init", sizeof "cirrus-init");
  }
  if (write(c->msg_fd, "R", 1) != 1)
    _exit(1);
  init_loop(c);
}

/* ---------------------------------------------------------------- the monitor's side */

static int
send_go(int fd, const int *fds, size_t n, struct ci_error **err)
{
  char go = 'G';
  struct iovec iov = {&go, 1};
  char cbuf[CMSG_SPACE(sizeof(int) * 64)];
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n > 64)
    return ci_error_make(err, CI_EUSAGE, "too many bind mounts (%zu, at most 64)", n);
  if (n) {
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
  }
  if (sendmsg(fd, &mh, MSG_NOSIGNAL) != 1)
    return ci_error_make(err, -errno, "cannot release the container's init: %s",
                         strerror(errno));
  return 0;
}

/* Read the child's report: 0 when ready, < 0 with its message. */
static int
read_report(int fd, struct ci_error **err)
{
  char buf[1100];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (buf[0] == 'R' || len == sizeof buf - 1)
      break;
  }
  buf[len] = '\0';
  if (len && buf[0] == 'R')
    return 0;
  if (len > 1)
    return ci_error_make(err, CI_EFAIL, "%s", buf + 1);
  return ci_error_make(err, CI_EFAIL, "the container's init died while setting up");
}

static void
close_all(int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

static int
prepare_run_dir(int dirfd, const struct rt_idmap *m, struct ci_error **err)
{
  static const char *const subs[] = {"upper", "work", "merged"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(subs); i++) {
    if (mkdirat(dirfd, subs[i], 0755) < 0)
      return ci_error_make(err, -errno, "cannot create %s in the run dir: %s", subs[i],
                           strerror(errno));
    if (m->mode == RT_IDMAP_ROOT &&
        fchownat(dirfd, subs[i], rt_idmap_root_uid(m), rt_idmap_root_gid(m),
                 AT_SYMLINK_NOFOLLOW) < 0)
      return ci_error_make(err, -errno, "cannot chown %s: %s", subs[i], strerror(errno));
  }
  /* The container's root must be able to reach upper/ work/ merged/. */
  if (m->mode == RT_IDMAP_ROOT &&
      fchown(dirfd, rt_idmap_root_uid(m), rt_idmap_root_gid(m)) < 0)
    return ci_error_make(err, -errno, "cannot chown the run dir: %s", strerror(errno));
  return 0;
}

/* As root: idmapped clones of the bind sources, so that host root's files are root's inside. */
static int
make_idmapped_trees(const struct rt_create_opts *o, const int *src_fds, int userns, int *trees,
                    size_t *n, struct ci_error **err)
{
  *n = 0;
  for (size_t i = 0; i < o->n_mounts; i++) {
    if (src_fds[i] < 0)
      continue;
    int tree = open_tree(src_fds[i], "",
                         AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree >= 0) {
      struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
      if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        /* The file system cannot be idmapped: the child binds it as it is (host root's files
         * then show as nobody inside). */
        close(tree);
        tree = -1;
      }
    }
    if (tree < 0)
      tree = open_tree(src_fds[i], "",
                       AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
      return ci_error_make(err, -errno, "cannot bind %s: %s", o->mounts[i].src, strerror(errno));
    trees[(*n)++] = tree;
  }
  return 0;
}

/* Clone the container's init (child_main) and close the child's ends of sp and mp; the init's
 * pid, or -1 with *err.  With --netns-of, an intermediate child joins that container's user and
 * network namespaces (creating namespaces needs capabilities only held there) and clones the
 * init with CLONE_PARENT, so that the init is still ours to wait for; it sends the init's pid
 * over sp and exits. */
static pid_t
spawn_init(struct child *c, int sp[2], int mp[2], struct ci_error **err)
{
  const struct rt_create_opts *o = c->o;
  unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  if (!o->netns_of)
    flags |= CLONE_NEWUSER | (rt__net_isolated(o) ? CLONE_NEWNET : 0);
  pid_t pid = (pid_t)syscall(SYS_clone, (o->netns_of ? 0 : flags) | SIGCHLD, NULL, NULL, NULL,
                             NULL);
  if (pid == 0) {
    close(sp[0]);
    close(mp[0]);
    if (!o->netns_of)
      child_main(c);
    if (rt__net_join(o->netns_of) < 0)
      child_fail(c, "cannot join the network of the container of pid %d", (int)o->netns_of);
    pid_t init = (pid_t)syscall(SYS_clone, flags | CLONE_PARENT | SIGCHLD, NULL, NULL, NULL,
                                NULL);
    if (init == 0)
      child_main(c);
    if (init < 0)
      child_fail(c, "cannot create the container's namespaces");
    _exit(send(c->sync_fd, &init, sizeof init, MSG_NOSIGNAL) == sizeof init ? 0 : 1);
  }
  int e = errno;
  close(sp[1]);
  sp[1] = -1;
  close(mp[1]);
  mp[1] = -1;
  if (pid < 0)
    return ci_error_make(err, -e, "cannot create the container's namespaces: %s", strerror(e));
  if (!o->netns_of)
    return pid;
  pid_t init = -1;
  ssize_t n;
  do
    n = recv(sp[0], &init, sizeof init, MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  if (n == sizeof init && init > 0)
    return init;
  read_report(mp[0], err);
  return -1;
}

/*
 * The cgroup attach, from a child of the monitor: a v1 attach waits for an RCU grace period
 * (~15-17 ms measured here), which then overlaps the id maps, the init's mounts and the
 * caller's copy of the project instead of following them.  Returns the child's pid (-1 when
 * it could not fork: the monitor attaches itself then); *fd reads its error message.
 */
static pid_t
attach_async(const struct rt__cgroup *cg, pid_t pid, int *fd)
{
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return -1;
  pid_t a = fork();
  if (a == 0) {
    close(p[0]);
    struct ci_error *e = NULL;
    if (rt__cgroup_attach(cg, pid, &e) < 0) {
      if (write(p[1], e->msg, strlen(e->msg)) < 0) {
        /* the monitor is gone */
      }
      _exit(1);
    }
    _exit(0);
  }
  close(p[1]);
  if (a < 0) {
    close(p[0]);
    return -1;
  }
  *fd = p[0];
  return a;
}

/* Wait for attach_async's child; < 0 with msg ("warning: limits not applied: ...") when the
 * attach failed. */
static int
attach_wait(pid_t *attacher, int *fd, char *msg, size_t size)
{
  char why[512];
  size_t n = 0;
  for (ssize_t r; *fd >= 0 && n < sizeof why - 1;) {
    r = read(*fd, why + n, sizeof why - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  why[n] = '\0';
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
  int st = 0;
  while (*attacher > 0 && waitpid(*attacher, &st, 0) < 0 && errno == EINTR) {
  }
  bool ok = *attacher > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  *attacher = -1;
  if (ok)
    return 0;
  snprintf(msg, size, "warning: limits not applied: %s",
           n ? why : "the cgroup attach did not finish");
  return -1;
}

int
rt_create(const struct rt_create_opts *o, int ready_fd, int stop_fd, struct ci_error **err)
{
  int ret = -1;
  struct rt_idmap m = {0};
  struct rt__cgroup cg = {0};
  struct rt__net net = {0, -1, -1};
  cleanup_close int dirfd = -1, lockfd = -1, userns = -1, sigfd = -1;
  int sp[2] = {-1, -1}, mp[2] = {-1, -1};
  size_t nm = o->n_mounts;
  int *src_fds = xcalloc(nm + 1, sizeof(int)), *tree_fds = xcalloc(nm + 1, sizeof(int));
  int *sent = xcalloc(nm + 1, sizeof(int));
  size_t nsent = 0;
  pid_t pid = -1, attacher = -1;
  int attach_fd = -1;
  bool made = false;
  struct sock_fprog filter = {0, NULL};
  for (size_t i = 0; i < nm; i++)
    src_fds[i] = tree_fds[i] = -1;

  dirfd = open(o->run_dir, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) {
    ci_error_make(err, -errno, "cannot open the run dir %s: %s", o->run_dir, strerror(errno));
    goto out;
  }
  lockfd = openat(dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
    ci_error_make(err, -errno, "cannot lock %s/lock: %s", o->run_dir, strerror(errno));
    goto out;
  }
  made = true; /* from here on the run dir is ours to remove */
  if (rt_idmap_detect(&m, NULL, NULL, err) < 0)
    goto out;
  if (m.warning && o->warn)
    o->warn(m.warning, o->warn_data);
  if (prepare_run_dir(dirfd, &m, err) < 0)
    goto out;
  for (size_t i = 0; i < nm; i++) {
    if (o->mounts[i].kind == RT_MOUNT_TMPFS)
      continue;
    src_fds[i] = open(o->mounts[i].src, O_PATH | O_CLOEXEC);
    if (src_fds[i] < 0) {
      ci_error_make(err, -errno, "cannot mount %s: %s", o->mounts[i].src, strerror(errno));
      goto out;
    }
    if (o->mounts[i].kind == RT_MOUNT_VOLUME) {
      struct stat st;
      if (fstat(src_fds[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
        ci_error_make(err, -ENOTDIR, "volume %s is not a directory", o->mounts[i].src);
        goto out;
      }
    }
  }
  /* Once, here: the init inherits the compiled filter and each step loads it (seccomp.c). */
  if (o->seccomp == RT_SECCOMP_DEFAULT && rt__seccomp_build(&filter, err) < 0)
    goto out;
  if (o->memory_mb || o->cpus > 0) {
    const char *base = strrchr(o->run_dir, '/');
    int r = geteuid() == 0 ? rt__cgroup_setup(base + 1, o->memory_mb, o->cpus, &cg, err) : 0;
    if (r < 0)
      goto out;
    if (r == 0 && o->warn) {
      char msg[256];
      char mem[64] = "", cpu[64] = "";
      if (o->memory_mb)
        snprintf(mem, sizeof mem, "memory %llu MB", (unsigned long long)o->memory_mb);
      if (o->cpus > 0)
        snprintf(cpu, sizeof cpu, "%scpu %g", o->memory_mb ? " and " : "", o->cpus);
      snprintf(msg, sizeof msg,
               "warning: no cgroup this user may manage: limits not applied (%s%s)", mem, cpu);
      o->warn(msg, o->warn_data);
    }
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || pipe2(mp, O_CLOEXEC) < 0) {
    ci_error_make(err, -errno, "cannot make a pipe: %s", strerror(errno));
    goto out;
  }
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old);
  struct child c = {o, &m, sp[1], mp[1], src_fds, tree_fds, -1, filter.filter ? &filter : NULL};
  pid = spawn_init(&c, sp, mp, err);
  if (pid < 0)
    goto out;
  if (cg.n)
    attacher = attach_async(&cg, pid, &attach_fd);
  if (!o->netns_of && rt_idmap_apply(&m, pid, err) < 0)
    goto out;
  if (rt__net_start(&net, o, dirfd, pid, err) < 0)
    goto out;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) {
    ci_error_make(err, -errno, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  if (m.mode == RT_IDMAP_ROOT) {
    if (make_idmapped_trees(o, src_fds, userns, sent, &nsent, err) < 0)
      goto out;
  }
  if (send_go(sp[0], sent, nsent, err) < 0)
    goto out;
  close_all(sent, nsent);
  if (read_report(mp[0], err) < 0)
    goto out;
  close(mp[0]);
  mp[0] = -1;
  close_all(src_fds, nm);
  if (rt__net_wait(&net, dirfd, err) < 0)
    goto out;

  /* Ready: tell the caller, then close our end so it sees EOF. */
  char line[64];
  int ll = snprintf(line, sizeof line, "ready %d\n", (int)pid);
  if (write(ready_fd, line, (size_t)ll) != ll) {
    /* the caller went away: tear down */
  }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, ready_fd);
    close(null);
  }
  /* The init serves execs only after 'C': once it is in its cgroups. */
  if (cg.n) {
    char msg[600];
    struct ci_error *cg_err = NULL;
    if (attacher > 0) {
      if (attach_wait(&attacher, &attach_fd, msg, sizeof msg) < 0 && o->warn)
        o->warn(msg, o->warn_data);
    } else if (rt__cgroup_attach(&cg, pid, &cg_err) < 0) { /* could not fork: here, then */
      snprintf(msg, sizeof msg, "warning: limits not applied: %s", cg_err->msg);
      if (o->warn)
        o->warn(msg, o->warn_data);
      ci_error_free(&cg_err);
    }
  }
  if (write(sp[0], "C", 1) != 1) {
    /* the init died: the loop below sees it */
  }
  close(sp[0]);
  sp[0] = -1;

  sigfd = signalfd(-1, &set, SFD_CLOEXEC);
  bool init_gone = false;
  for (bool stop = false; !stop;) {
    struct pollfd pf[2] = {{stop_fd, POLLIN, 0}, {sigfd, POLLIN, 0}};
    int n = poll(pf, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pf[0].revents) {
      char buf[256];
      ssize_t r = read(stop_fd, buf, sizeof buf);
      if (r <= 0 && !(r < 0 && errno == EINTR))
        stop = true;
    }
    if (pf[1].revents) {
      struct signalfd_siginfo si;
      if (read(sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
          if (waitpid(pid, NULL, WNOHANG) == pid) {
            init_gone = true;
            stop = true;
          }
        } else {
          stop = true;
        }
      }
    }
  }
  if (!init_gone) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  pid = -1;
  ret = 0;

out:
  if (attacher > 0) {
    char msg[600];
    attach_wait(&attacher, &attach_fd, msg, sizeof msg);
  }
  if (pid > 0) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  rt__net_stop(&net);
  close_all(sp, 2);
  close_all(mp, 2);
  close_all(src_fds, nm);
  close_all(tree_fds, nm);
  close_all(sent, nsent);
  free(src_fds);
  free(tree_fds);
  free(sent);
  free(filter.filter);
  rt__cgroup_remove(&cg);
  if (made) {
    struct ci_error *e2 = NULL;
    if (rt_rundir_remove(o->run_dir, m.mode ? &m : NULL, userns, ret < 0 ? &e2 : err) < 0 &&
        ret == 0)
      ret = -1;
    ci_error_free(&e2);
  }
  rt_idmap_release(&m);
  return ret;
}
