/* backends/backend.h - the one interface every container backend implements.
 *
 * A task runs in one container (one per pipe step): the scheduler asks the backend to make
 * the image available, creates and starts a container that idles, copies the project into
 * it, runs each step as a process inside it (exec), reads small files back (CIRRUS_ENV) and
 * finally removes it.  Backends: "docker" and "podman" (REST APIs over unix sockets, see
 * engine_http.h) and "builtin" (the rootless runtime, no daemon).
 *
 * Caller's steps:
 *   1. backend_open(name, loop, &opts, &b, &err)   ("auto" tries docker, podman, builtin)
 *   2. b->ops->image_prepare(...), container_create(...), copy_in(...), exec(...)...
 *   3. b->ops->container_remove(...) for every container created, in every outcome
 *   4. backend_close(b, on_closed) once nothing is pending; on_closed runs on the loop.
 *
 * Threading and callbacks: everything runs on the loop thread that owns the backend.  Every
 * asynchronous operation keeps libuv's promise: a negative return means its callback will
 * never run; 0 means the callback runs exactly once, later (never from inside the call).
 * Errors passed to callbacks are borrowed for the duration of the callback.
 */
#ifndef BACKEND_H
#define BACKEND_H

#include "common/error.h"
#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct backend;

enum backend_pull_policy {
  BACKEND_PULL_MISSING, /* pull only when the image is not present (default) */
  BACKEND_PULL_ALWAYS,
  BACKEND_PULL_NEVER,
};

/* How a task's containers reach the network (`cirrus run --container-network`).  Whatever
 * the mode, a task's additional containers share its main container's network (services
 * answer on localhost). */
enum backend_network {
  BACKEND_NET_DEFAULT = 0, /* the backend's own: the engine's default network (docker, podman:
                              a bridge, or rootless podman's user-mode network); builtin: host */
  BACKEND_NET_HOST,        /* the host's network namespace */
  BACKEND_NET_PRIVATE,     /* an isolated namespace with outbound access (docker, podman: the
                              engine's default network; builtin: slirp4netns) */
  BACKEND_NET_NONE,        /* an isolated namespace with only lo */
};

/* What an image says about how to run it. */
struct backend_image_info {
  struct cfg_env env; /* the image's Env */
  char *user;         /* owned, "" = root */
  char *workdir;      /* owned, "" = / */
  char *id;           /* owned: image id/digest as the backend knows it */
};
void backend_image_info_release(struct backend_image_info *info);

struct backend_container_spec {
  const char *image;     /* reference, as prepared by image_prepare */
  const char *name;      /* container name (unique per run), or NULL */
  const char *run_id;    /* labels the container for `cirrus clean` */
  const char *task_name; /* for labels and messages */
  double cpu;            /* 0 = no limit */
  unsigned memory_mb;    /* 0 = no limit */
  /* Mounts: host_path bound at container_path (rw unless read_only). */
  const struct backend_mount {
    const char *host_path;
    const char *container_path;
    bool read_only;
  } *mounts;
  size_t nmounts;
  /* The main process: NULL = an idle process that keeps the container alive (steps run
   * through exec); else argv of a service (additional containers), where an empty argv
   * (argv[0] == NULL) runs the image's own command. */
  const char *const *argv;
  const struct cfg_env *env; /* container environment (services), or NULL */
  /* Join the network namespace of this container (additional containers), or NULL. */
  const char *network_of;
  bool privileged;
  /* Named volumes (backend volume_create) mounted at container_path (pipes share their
   * working directory this way). */
  const struct backend_volume_mount {
    const char *name;
    const char *container_path;
  } *volumes;
  size_t nvolumes;
};

/* An image to build from a Dockerfile (container: dockerfile:). */
struct backend_build_spec {
  const char *context_tar;   /* host file: the build context as a tar (the project dir) */
  const char *dockerfile;    /* path of the Dockerfile inside the context */
  const struct cfg_env *args; /* build arguments (docker_arguments) */
  const char *tag;           /* the image name to give the result */
  bool pull;                 /* refresh the base images (--pull) */
};

struct backend_exec_spec {
  const char *const *argv; /* NULL-terminated */
  const struct cfg_env *env;
  const char *cwd; /* NULL = the image's */
  const char *user; /* NULL = the image's */
};

/* How a process ended.  signal > 0: killed by that signal (exit_code is then 128+signal
 * when the backend only knows the shell's view). */
struct backend_exit {
  int exit_code;
  int signal;
};

typedef void (*backend_done_cb)(void *data, const struct ci_error *err);
typedef void (*backend_image_cb)(void *data, const struct backend_image_info *info,
                                 const struct ci_error *err);
typedef void (*backend_id_cb)(void *data, const char *id, const struct ci_error *err);
/* A chunk of a process's output (stream 1 = stdout, 2 = stderr); never called after the
 * matching exit callback. */
typedef void (*backend_output_cb)(void *data, int stream, const char *buf, size_t len);
typedef void (*backend_exit_cb)(void *data, const struct backend_exit *exit,
                                const struct ci_error *err);
typedef void (*backend_file_cb)(void *data, const char *content, size_t len,
                                const struct ci_error *err);
/* Progress lines (image pull, build): human-readable, one line per call. */
typedef void (*backend_progress_cb)(void *data, const char *line);

struct backend_ops {
  const char *name;
  int (*image_prepare)(struct backend *b, const char *ref, enum backend_pull_policy policy,
                       backend_progress_cb on_progress, backend_image_cb cb, void *data);
  int (*container_create)(struct backend *b, const struct backend_container_spec *spec,
                          backend_id_cb cb, void *data);
  /* Extract the tar archive at tar_path (a host file) at "/" in the container. */
  int (*copy_in)(struct backend *b, const char *id, const char *tar_path, backend_done_cb cb,
                 void *data);
  int (*exec)(struct backend *b, const char *id, const struct backend_exec_spec *spec,
              backend_output_cb on_output, backend_exit_cb on_exit, void *data);
  /* Read a small file (at most max bytes) from the container; a missing file gives
   * content NULL and no error. */
  int (*read_file)(struct backend *b, const char *id, const char *path, size_t max,
                   backend_file_cb cb, void *data);
  /* Kill and remove the container and anything created with it. */
  int (*container_remove)(struct backend *b, const char *id, backend_done_cb cb, void *data);
  /* Build an image; progress lines (the build's output) go to on_progress.  May be NULL in a
   * backend that cannot build (the scheduler then reports it). */
  int (*image_build)(struct backend *b, const struct backend_build_spec *spec,
                     backend_progress_cb on_progress, backend_done_cb cb, void *data);
  /* A volume shared by containers of one task (labelled with run_id); remove it after. */
  int (*volume_create)(struct backend *b, const char *name, const char *run_id,
                       backend_done_cb cb, void *data);
  int (*volume_remove)(struct backend *b, const char *name, backend_done_cb cb, void *data);
  /* Remove every container and volume labelled with run_id (NULL: of any run), reporting
   * each one removed through on_removed ("container 1f2e3d... (task 'lint')"). */
  int (*clean)(struct backend *b, const char *run_id, backend_progress_cb on_removed,
               backend_done_cb cb, void *data);
  /* Copy path (a file or directory in the container) out as a tar written to tar_path
   * (a host file, created).  A missing path is an error with code -ENOENT. */
  int (*copy_out)(struct backend *b, const char *id, const char *path, const char *tar_path,
                  backend_done_cb cb, void *data);
  /* Stop talking to the engine, close every handle, free b, then call on_closed (from the
   * loop).  Nothing may be pending (every container removed first). */
  void (*close)(struct backend *b, void (*on_closed)(void *data), void *data);
};

/* Embedded first in each backend's own struct (recover it with container_of). */
struct backend {
  const struct backend_ops *ops;
  uv_loop_t *loop;
  char *description; /* owned: e.g. "docker (unix:///var/run/docker.sock, API 1.41)" */
  unsigned host_cpus;       /* for clamping limits; 0 = unknown */
  unsigned long host_mem_mb; /* 0 = unknown */
  enum backend_network network; /* from backend_options (set by backend_open) */
};

struct backend_options {
  const char *name; /* "auto", "docker", "podman", "builtin" */
  bool verbose;
  enum backend_network network;
};

/* Open a backend.  Synchronous probing (pinging a socket, starting `podman system
 * service`) happens here, before tasks run.  "auto" honours CIRRUS_CONTAINER_BACKEND. */
int backend_open(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
                 struct ci_error **err);

/* Backends register themselves here (redis connTypeRegister). */
struct backend_factory {
  const char *name;
  /* Return 0 with *out, or < 0 with *err explaining why this backend is not usable. */
  int (*open)(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
              struct ci_error **err);
};
extern const struct backend_factory *const backend_factories[];

/* Who owns an engine's container or volume: labels dev.cirrus.host (this host's name) and
 * dev.cirrus.pid (the cirrus process) next to dev.cirrus.run-id.  `cirrus clean` without
 * --run-id keeps what a run still going on this host owns. */
#define BACKEND_LABEL_HOST "dev.cirrus.host"
#define BACKEND_LABEL_PID "dev.cirrus.pid"
/* This host's name and this process's pid as the labels hold them (static strings). */
const char *backend_owner_host(void);
const char *backend_owner_pid(void);
/* Whether labels host and pid (either may be NULL) name a cirrus process alive on this host
 * (not this process): its /proc/PID/comm is "cirrus". */
bool backend_owner_alive(const char *host, const char *pid);

#endif
