/* backends/build/internal.h - cross-file internals of ci_build; not for other modules. */
#ifndef CI_BUILD_INTERNAL_H
#define CI_BUILD_INTERNAL_H

#include "build.h"

#include <stddef.h>

/* sha256 of p as 64 hex digits. */
void bld__sha256_hex(const void *p, size_t n, char out[65]);

/* Read the file `path` of the context tar (at most max bytes) into *out (NUL-terminated). */
int bld__context_read(const char *context_tar, const char *path, size_t max, char **out,
                      struct ci_error **err);

/* COPY / ADD from the build context into a layer tar. */
struct bld__copy {
  const char *context_tar;
  const char *const *sources; /* as written (globs allowed), relative to the context */
  size_t n_sources;
  const char *dest;      /* absolute, or relative to workdir; a trailing '/' means a directory */
  const char *workdir;   /* absolute */
  const char *chown;     /* "uid[:gid]" (numeric) or NULL: 0:0 */
  bool extract_archives; /* ADD: local tar archives are extracted into dest */
};
/* Write the layer to tar_path.  Errors name the source that matched nothing. */
int bld__copy_layer(const struct bld__copy *c, const char *tar_path, struct ci_error **err);

#endif
