/* backends/rootless.h - the "builtin" backend: the rootless runtime, no daemon.
 *
 * Images come from the OCI store of backends/image (pulled on the libuv thread pool); every
 * container is a `cirrus-runtime create` monitor process, every exec, copy and file read a
 * short-lived `cirrus-runtime` process joining the container's namespaces (the protocol is in
 * backends/runtime/README.md).  Run directories live in <store>/runs and are removed by the
 * monitor; those of a killed run are collected by `cirrus-runtime gc` when a backend opens and
 * by `cirrus clean`.
 */
#ifndef ROOTLESS_H
#define ROOTLESS_H

#include "backend.h"

extern const struct backend_factory rootless_factory;

/* The helper executable: $CIRRUS_RUNTIME when set, else cirrus-runtime next to the running
 * binary, else the installed libexec copy.  A new string, or NULL when none is executable. */
char *rootless_helper_path(void);

struct img_store;
/* Open the built-in backend's image store: $CIRRUS_STORE when set (an absolute path), else
 * the default of backends/image (/var/lib/cirrus for root, ~/.local/share/cirrus).  *dir_out
 * (may be NULL) gets its directory. */
int rootless_store_open(struct img_store **out, char **dir_out, struct ci_error **err);

#endif
