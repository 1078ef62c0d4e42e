/* backends/runtime/runtime.h - the built-in rootless runtime (module ci_runtime, prefix rt_).
 *
 * Synchronous, no libuv, single-threaded callers only (a multithreaded process cannot create or
 * join a user namespace).  The executable cirrus-runtime (cmd/runtime_main.c) is its only
 * user; backends/rootless.c drives that executable from the loop.  See README.md for the
 * design and the helper protocol.
 *
 * A container is: a user namespace (always, also for root), mount, pid, uts and ipc namespaces
 * (and a network namespace: only lo for --network none, slirp4netns for --network private, or
 * another container's with --netns-of), an overlay of the image layers
 * with an upper dir in the run dir, pivot_root, and a tiny init as pid 1 that idles and reaps.
 * Processes join it with setns (rt_exec); files move in and out as tar (rt_copy_in/_out).
 */
#ifndef CI_RUNTIME_H
#define CI_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/util.h"

/* ---------------------------------------------------------------- id mapping */

/* Root's subordinate range when /etc/subuid (/etc/subgid) has no entry for root. */
#define RT_ROOT_ID_BASE 100000000u
/* How many ids a container gets (0..65535 inside). */
#define RT_ID_COUNT 65536u

enum rt_idmap_mode {
  RT_IDMAP_SINGLE = 1, /* unprivileged, no subordinate ids: 0 -> the user, nothing else */
  RT_IDMAP_SUBID,      /* unprivileged: 0 -> the user, 1..N -> /etc/subuid range (newuidmap) */
  RT_IDMAP_ROOT,       /* real root: 0..65535 -> root's subordinate range, written directly */
};

struct rt_idmap_range {
  uint32_t inside, outside, count;
};

struct rt_idmap {
  enum rt_idmap_mode mode;
  struct rt_idmap_range uid[2], gid[2];
  unsigned n_uid, n_gid;
  char *user;    /* owned: the user's name (or its uid as a string) */
  char *warning; /* owned: one line to show the user, or NULL */
};

/* Find the range of user (name) or uid in /etc/subuid-format text: the first line
 * "NAME:START:COUNT" or "UID:START:COUNT" with COUNT > 0.  Returns 1 and fills *start and *count
 * when found, 0 when not, < 0 for a malformed matching line. */
int rt_subid_find(const char *text, const char *user, uid_t uid, uint32_t *start, uint32_t *count,
                  struct ci_error **err);

/* The base of root's container range: root's entry in subuid_path (or uid 0's) if any, else
 * RT_ROOT_ID_BASE.  The image store of a root runtime is extracted with this id shift. */
uint32_t rt_root_id_base(const char *subuid_path);

/* Decide the mapping for the calling user (euid): root, subuid (when both /etc/subuid and
 * /etc/subgid have a range and newuidmap/newgidmap exist) or single.  The paths may be NULL
 * for /etc/subuid and /etc/subgid. */
int rt_idmap_detect(struct rt_idmap *m, const char *subuid_path, const char *subgid_path,
                    struct ci_error **err);
void rt_idmap_release(struct rt_idmap *m);
/* Write the maps of process pid (which must be waiting in a fresh user namespace). */
int rt_idmap_apply(const struct rt_idmap *m, pid_t pid, struct ci_error **err);
/* The host uid/gid that root inside maps to. */
uid_t rt_idmap_root_uid(const struct rt_idmap *m);
gid_t rt_idmap_root_gid(const struct rt_idmap *m);

/* ---------------------------------------------------------------- users */

struct rt_user {
  uid_t uid;
  gid_t gid;
  gid_t *groups; /* owned: supplementary groups (from the group file) */
  size_t n_groups;
};

/* Resolve spec ("name", "uid", "uid:gid", "name:group", "uid:group", "name:gid") against the
 * texts of the container's /etc/passwd and /etc/group (either may be NULL = absent).  A numeric
 * uid not in passwd is accepted with gid 0 (as Docker does); an unknown name is an error. */
int rt_user_resolve(const char *spec, const char *passwd, const char *group, struct rt_user *out,
                    struct ci_error **err);
void rt_user_release(struct rt_user *u);

/* ---------------------------------------------------------------- options */

enum rt_mount_kind {
  RT_MOUNT_BIND = 1, /* --mount HOST:CT[:ro] */
  RT_MOUNT_VOLUME,   /* --volume HOSTDIR:CT */
  RT_MOUNT_TMPFS,    /* --tmpfs CT */
};

struct rt_mount {
  enum rt_mount_kind kind;
  char *src; /* owned; NULL for tmpfs */
  char *dst; /* owned; absolute path in the container */
  bool ro;
};

/* How the container's root file system is made from the image's layers (--rootfs). */
enum rt_rootfs {
  RT_ROOTFS_AUTO = 0, /* overlay; where the kernel refuses it fuse-overlayfs, else a copy */
  RT_ROOTFS_OVERLAY,  /* the kernel's overlayfs (userxattr), upper dir in the run dir */
  RT_ROOTFS_FUSE,     /* fuse-overlayfs in the container's namespaces, same dirs */
  RT_ROOTFS_COPY,     /* the layers copied into the run dir (reflinks where possible) */
};

/* "auto", "overlay", "fuse-overlayfs", "copy" -> *out; -1 for anything else. */
int rt_rootfs_parse(const char *s, enum rt_rootfs *out);
const char *rt_rootfs_name(enum rt_rootfs d);

/* --network: the host's (default), an isolated one with only lo, or an isolated one with
 * outbound access through slirp4netns (net.c). */
enum rt_network {
  RT_NET_HOST = 0,
  RT_NET_NONE,
  RT_NET_PRIVATE,
};

/* --seccomp: the steps' seccomp filter (seccomp.c): the default deny-list, or none. */
enum rt_seccomp {
  RT_SECCOMP_DEFAULT = 0,
  RT_SECCOMP_UNCONFINED,
};

/* "default", "unconfined" -> *out; -1 for anything else. */
int rt_seccomp_parse(const char *s, enum rt_seccomp *out);
const char *rt_seccomp_name(enum rt_seccomp s);

/* The default filter, as data (also for the OCI bundle's linux.seccomp, runner/bundle.c):
 * these syscalls fail with EPERM (NULL-terminated; names libseccomp resolves per
 * architecture) ... */
extern const char *const rt_seccomp_denied[];
/* ... and so does personality(a0) when a0 > RT_SECCOMP_PERSONA_MAX or, for one of the rules,
 * (a0 & mask) == value: every persona but 0, 8, 0x20000, 0x20008 and the query 0xffffffff. */
#define RT_SECCOMP_PERSONA_MAX UINT64_C(0xffffffff)
#define RT_SECCOMP_PERSONA_RULES 32
struct rt_seccomp_masked {
  uint64_t mask, value;
};
size_t rt_seccomp_persona_rules(struct rt_seccomp_masked out[RT_SECCOMP_PERSONA_RULES]);
/* Whether the rules above deny personality(a0). */
bool rt_seccomp_persona_denied(uint64_t a0);

struct rt_create_opts {
  char *run_dir;         /* owned */
  struct ci_strv layers; /* bottom first */
  char *hostname;        /* owned; NULL = keep the default ("cirrus") */
  struct rt_mount *mounts;
  size_t n_mounts;
  uint64_t memory_mb; /* 0 = no limit */
  double cpus;        /* 0 = no limit */
  enum rt_rootfs rootfs;    /* --rootfs */
  enum rt_network network; /* --network */
  pid_t netns_of;     /* --netns-of PID: join that container's user and network namespaces
                         (a task's containers share one; needs --network none or private) */
  enum rt_seccomp seccomp; /* --seccomp */
  bool image_tmp;     /* --image-tmp: /tmp as the image has it, no tmpfs (image builds: what a
                         COPY put there is seen, what a RUN writes there is kept) */
  pid_t ppid;         /* 0 = not checked */
  /* Called with one line for the user (id mapping or limits that could not be applied). */
  void (*warn)(const char *msg, void *data);
  void *warn_data;
};

struct rt_exec_opts {
  char *run_dir;       /* owned: the container's run dir (its exec socket) */
  pid_t pid;           /* the container's init as the host sees it; 0 = not checked */
  char *cwd;           /* owned; NULL = "/" */
  char *user;          /* owned; NULL = root */
  struct ci_strv env;  /* exactly the process environment */
  struct ci_strv argv; /* the command */
  pid_t ppid;
};

/* cp-in, cp-out, cat, diff */
struct rt_file_opts {
  pid_t pid;
  pid_t ppid;
  uint64_t max; /* cat: at most this many bytes (default 1 MiB) */
  char *path;   /* owned: cp-out/cat: the path in the container */
  char *tar;    /* owned: cp-in/cp-out: the host tar file */
};

/* Parse the arguments after the subcommand name (argv[0] is the first option).  Errors are
 * CI_EUSAGE and name the option. */
int rt_create_opts_parse(int argc, char **argv, struct rt_create_opts *o, struct ci_error **err);
void rt_create_opts_release(struct rt_create_opts *o);
int rt_exec_opts_parse(int argc, char **argv, struct rt_exec_opts *o, struct ci_error **err);
void rt_exec_opts_release(struct rt_exec_opts *o);
/* which: "cp-in", "cp-out", "cat" or "diff" (they differ in their positional arguments). */
int rt_file_opts_parse(const char *which, int argc, char **argv, struct rt_file_opts *o,
                       struct ci_error **err);
void rt_file_opts_release(struct rt_file_opts *o);

/* ---------------------------------------------------------------- operations */

/* create: set the container up, write "ready PID\n" to ready_fd and close it, then monitor it
 * until EOF on stop_fd or SIGTERM/SIGINT, tear it down and remove the run dir.  Returns 0 after
 * a normal teardown; < 0 with *err when the container could not be made (the run dir is then
 * removed too, except when it could not be locked). */
int rt_create(const struct rt_create_opts *o, int ready_fd, int stop_fd, struct ci_error **err);

/* exec: returns the wait status of the process (as waitpid reports it) or < 0 with *err when
 * it could not be started; *exit_code is then what the helper should exit with (1, 126, 127). */
int rt_exec(const struct rt_exec_opts *o, int *status, int *exit_code, struct ci_error **err);

/* File operations.  They return 0, or < 0 with *err; -ENOENT when the path is missing. */
int rt_copy_in(const struct rt_file_opts *o, struct ci_error **err);
int rt_copy_out(const struct rt_file_opts *o, struct ci_error **err);
int rt_cat(const struct rt_file_opts *o, int out_fd, struct ci_error **err);
/* diff (the image builder): write the changes in the upper directory o->path (a host path) of
 * the container of o->pid as an OCI layer tar to o->tar (see diff.c). */
int rt_diff(const struct rt_file_opts *o, struct ci_error **err);

/* Remove a run dir (and the dir itself): chmod u+rwx on directories first (overlay leaves
 * work/work mode 000); with a subordinate-id mapping, from inside a user namespace with that
 * mapping (userns_fd >= 0: join it; else make a new one).  m may be NULL (plain removal). */
int rt_rundir_remove(const char *dir, const struct rt_idmap *m, int userns_fd,
                     struct ci_error **err);
/* Remove the contents of dirfd and everything below (chmod u+rwx on directories first). */
int rt_remove_tree_at(int dirfd, const char *name, struct ci_error **err);

/* gc: remove the stale run dirs under runs (whose lock is free); calls on_removed per dir. */
int rt_gc(const char *runs, void (*on_removed)(const char *dir, void *data), void *data,
          struct ci_error **err);

/* Whether this process joined a container (its /proc and root are the container's then). */
bool rt_joined_container(void);

/* The helper's argv area (argv[0] .. end of the last argument): the container's init
 * overwrites it with "cirrus-init" so that /proc/1/cmdline shows no host paths. */
void rt_set_argv_area(char *start, size_t len);

/* check: print "name: value" lines to out; returns 0 when containers can run here. */
int rt_check(int out_fd, struct ci_error **err);

#endif
