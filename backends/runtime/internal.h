/* backends/runtime/internal.h - cross-file internals of ci_runtime; not for other modules. */
#ifndef CI_RUNTIME_INTERNAL_H
#define CI_RUNTIME_INTERNAL_H

#include "runtime.h"

#include <sys/syscall.h>
#include <unistd.h>

/* Join the namespaces of pid's container: user, mnt (+ pid, uts, ipc, net when with_pid), then
 * chroot to its root and become root (0:0) inside.  Single-threaded callers only. */
int rt__join(pid_t pid, bool with_pid, struct ci_error **err);

/* The init's exec socket, in the run dir. */
#define RT__EXEC_SOCK "exec.sock"
/* Serve one exec request on conn (a connection to the init's exec socket) in a process forked
 * by the init: fork the process, wait, reply; see exec.c.  single: a single id mapping. */
void rt__exec_session(int conn, bool single) __attribute__((noreturn));

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

/* Thin syscall wrappers (glibc 2.36 has some, but its headers clash with linux/mount.h). */
static inline int
rt__pidfd_open(pid_t pid)
{
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

#endif
