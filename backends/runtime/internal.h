/* backends/runtime/internal.h - cross-file internals of ci_runtime; not for other modules. */
#ifndef CI_RUNTIME_INTERNAL_H
#define CI_RUNTIME_INTERNAL_H

#include "runtime.h"

#include <sys/syscall.h>
#include <unistd.h>

/* Join the namespaces of pid's container: user, mnt (+ pid, uts, ipc, net when with_pid), then
 * chroot to its root and become root (0:0) inside.  Single-threaded callers only. */
int rt__join(pid_t pid, bool with_pid, struct ci_error **err);

struct sock_fprog;
/* The default seccomp filter (seccomp.c): rt__seccomp_build compiles it with libseccomp
 * (dlopen'ed) into *out (out->filter owned); rt__seccomp_apply loads it into the calling
 * process, which must hold CAP_SYS_ADMIN in its user namespace (no NO_NEW_PRIVS is set);
 * -1 with errno. */
int rt__seccomp_build(struct sock_fprog *out, struct ci_error **err);
int rt__seccomp_apply(const struct sock_fprog *prog);

/* The init's exec socket, in the run dir. */
#define RT__EXEC_SOCK "exec.sock"
/* Serve one exec request on conn (a connection to the init's exec socket) in a process forked
 * by the init: fork the process, wait, reply; see exec.c.  single: a single id mapping;
 * filter: the seccomp filter the process gets before it switches user, or NULL. */
void rt__exec_session(int conn, bool single, const struct sock_fprog *filter)
    __attribute__((noreturn));

/* cgroups (root only): one per controller, named after the run dir. */
struct rt__cgroup {
  char *dirs[3]; /* owned: created cgroup directories */
  unsigned n;
};
/* Create cgroups with the limits; returns 1 when applied, 0 when cgroups cannot be used (the
 * caller warns), < 0 on error. */
int rt__cgroup_setup(const char *name, uint64_t memory_mb, double cpus, struct rt__cgroup *cg,
                     struct ci_error **err);
int rt__cgroup_attach(const struct rt__cgroup *cg, pid_t pid, struct ci_error **err);
void rt__cgroup_remove(struct rt__cgroup *cg);
/* Remove the cgroups a killed monitor left for run dir name (gc). */
void rt__cgroup_remove_stale(const char *name);
/* Remove every empty cirrus-rt-* cgroup older than a minute (what killed monitors of any
 * store left; a cgroup with a process in it cannot be removed). */
void rt__cgroup_sweep(void);
/* "v1", "v2" or "none" and whether this process may create cgroups. */
const char *rt__cgroup_version(bool *writable);

/* The container's root file system (rootfs.c).  All of these run in the container's user and
 * mount namespaces as root there, with "/" private, before pivot_root; on success merged is a
 * mount point holding the root.  Errors carry -errno codes.
 *
 * rt__rootfs_mount: the driver of o->rootfs; "auto" tries overlay, then fuse-overlayfs, then a
 * copy (not for image builds, --image-tmp: they need an upper layer) and says which fallback it
 * took, and why, in one o->warn line.  A missing layer (-ENOENT) is never a reason to fall back. */
int rt__rootfs_mount(const struct rt_create_opts *o, const char *merged, struct ci_error **err);
/* Kernel overlay with userxattr (layers bottom first; many layers: relative to their common
 * parent, so the cwd changes meanwhile and is "/" afterwards). */
int rt__rootfs_overlay(const struct ci_strv *layers, const char *upper, const char *work,
                       const char *merged, struct ci_error **err);
/* fuse-overlayfs' path (/usr/bin, else PATH; static storage) or NULL. */
const char *rt__fuse_overlayfs_path(void);
/* Whether fuse-overlayfs can run here: found (*bin), and /dev/fuse opens. */
int rt__fuse_usable(const char **bin, struct ci_error **err);
/* Run bin (fuse-overlayfs) on the same directories; returns once it is mounted (its daemon is
 * then a child of this process's pid namespace's init). */
int rt__rootfs_fuse(const char *bin, const struct ci_strv *layers, const char *upper,
                    const char *work, const char *merged, struct ci_error **err);
/* Whether the directory fd is an opaque overlay directory (user. or trusted.overlay.opaque=y). */
bool rt__is_opaque(int fd);
/* Copy the layers bottom-up into merged (whiteouts and opaque directories applied, owners,
 * modes, times, user xattrs and hard links kept, symlinks never followed, reflinks where the
 * file system can), then bind it on itself. */
int rt__rootfs_copy(const struct ci_strv *layers, const char *merged, struct ci_error **err);

/* The network (net.c).  Whether the container has a network namespace of its own or joins
 * another container's (--network none|private, --netns-of). */
bool rt__net_isolated(const struct rt_create_opts *o);
/* Join the user and network namespaces of pid's container (the init of --netns-of, from a
 * child of the monitor); -1 with errno.  Refuses the caller's own user namespace. */
int rt__net_join(pid_t pid);
/* slirp4netns for --network private (nothing otherwise): rt__net_start launches it for the
 * init pid as the monitor's child (its output in RUN/slirp4netns.log, dirfd the run dir),
 * rt__net_wait waits until it configured the namespace (an error says why it could not),
 * rt__net_stop kills and reaps it (safe on a zeroed or stopped struct). */
struct rt__net {
  pid_t slirp; /* 0 = none */
  int ready_fd, exit_fd;
};
int rt__net_start(struct rt__net *n, const struct rt_create_opts *o, int dirfd, pid_t pid,
                  struct ci_error **err);
int rt__net_wait(struct rt__net *n, int dirfd, struct ci_error **err);
void rt__net_stop(struct rt__net *n);
/* The container's resolv.conf from the host's text: the host's (host), nothing (none), or
 * the host's IPv4 name servers that are not loopback, else slirp's 10.0.2.3 (private). */
void rt__net_resolv_conf(struct ci_buf *out, const char *host, enum rt_network net);

/* Thin syscall wrappers (glibc 2.36 has some, but its headers clash with linux/mount.h). */
static inline int
rt__pidfd_open(pid_t pid)
{
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

#endif
