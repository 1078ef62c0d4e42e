/* runner/bundle.h - a task's container as an OCI runtime bundle (`cirrus run --export-bundle`).
 *
 * A failed task can be looked at with standard tools: its root file system as the task left it
 * (the image, what the steps changed, the working directory) in DIR/rootfs and a config.json
 * that runs a shell in it with the task's environment:
 *
 *   runc run --bundle DIR debug        (or crun; as an unprivileged user: runc --root ...)
 *
 * The input is a tar of the container's "/" as the backends' copy_out gives it (names "/x",
 * "./x" or "x"); /proc, /sys and /dev are kept as empty directories (the runtime mounts
 * them).  Extraction refuses what the layer extractor refuses ("..", writes through
 * symlinks, device nodes); owners are kept when running as root.  The shell runs as root,
 * with the container's working directory as its cwd, in new pid, ipc, uts and mount
 * namespaces on the host's network (as the built-in backend's default); unprivileged, in a
 * user namespace that maps root to the caller.  Its linux.seccomp is the built-in runtime's
 * default filter (backends/runtime/README.md), none with CIRRUS_SECCOMP=unconfined.
 */
#ifndef RUNNER_BUNDLE_H
#define RUNNER_BUNDLE_H

#include "common/error.h"
#include "config/config.h"

#include <stdbool.h>

struct bundle_spec {
  const char *tar;              /* the container's "/" */
  const char *dir;              /* the bundle, created (its parent must exist) */
  const struct cfg_env *image_env; /* the image's Env, or NULL */
  const struct cfg_env *env;    /* the task's environment (wins over the image's) */
  const char *cwd;              /* the process's working directory */
  const char *hostname;         /* NULL: "cirrus" */
};

/* Write the bundle.  Fails when dir exists (nothing of the user's is overwritten). */
int bundle_write(const struct bundle_spec *b, struct ci_error **err);

/* The name of a task's bundle directory: the task name with every byte outside
 * [A-Za-z0-9._-] replaced by '-' (owned). */
char *bundle_dir_name(const char *task_name);

#endif
