/* backends/build/build.h - a rootless Dockerfile builder of our own (module ci_build, prefix bld_).
 *
 * No daemon: the Dockerfile is parsed here, RUN executes in a container of the built-so-far image
 * through the runtime helper (cirrus-runtime create + exec), the container's upper directory
 * becomes the new layer (cirrus-runtime diff: overlay whiteouts -> OCI `.wh.` entries), COPY and
 * ADD layers are made from the build context tar, and the result is written to the image store
 * of backends/image under the asked name.  Every layer-making instruction is cached; see
 * backends/README.md ("The Dockerfile builder").
 *
 * Synchronous and blocking (it spawns and waits for processes): call it from a worker thread or a
 * helper process, never from the runner's loop thread.
 */
#ifndef CI_BUILD_H
#define CI_BUILD_H

#include <signal.h>
#include <stdbool.h>

#include "common/error.h"
#include "common/util.h"

struct img_store;
struct img_image;

/* ---------------------------------------------------------------- parsing */

enum bld_kind {
  BLD_FROM = 1,
  BLD_RUN,
  BLD_COPY,
  BLD_ADD,
  BLD_ENV,
  BLD_ARG,
  BLD_WORKDIR,
  BLD_USER,
  BLD_LABEL,
  BLD_ENTRYPOINT,
  BLD_CMD,
  BLD_EXPOSE, /* documentation only: containers share the host's network */
};

struct bld_instr {
  enum bld_kind kind;
  unsigned line;        /* 1-based line where the instruction starts */
  char *text;           /* owned: "KEYWORD rest" with continuations joined (part of cache keys) */
  char *rest;           /* owned: what follows the keyword and the flags, unexpanded */
  bool json;            /* RUN/CMD/ENTRYPOINT/COPY/ADD written as a JSON array */
  struct ci_strv argv;  /* JSON form: the array; shell form RUN/CMD/ENTRYPOINT: the command */
  struct ci_strv flags; /* "--name=value" flags before the arguments (COPY --chown, ...) */
};

struct bld_dockerfile {
  char *file; /* owned: the name used in error messages */
  struct bld_instr *v;
  size_t n;
};

/* Parse Dockerfile text.  Errors name file:line and the instruction: unknown or unsupported
 * instructions, a missing FROM, a second FROM (multi-stage builds), bad JSON, unterminated
 * quotes, missing arguments, heredocs.  *out is caller memory (bld_dockerfile_release). */
int bld_parse(const char *file, const char *text, struct bld_dockerfile *out,
              struct ci_error **err);
void bld_dockerfile_release(struct bld_dockerfile *df);

/* Variables in scope while words are expanded (looked up by name; NULL = unset). */
typedef const char *(*bld_lookup_fn)(const char *name, void *data);

/* Split s into words the way Dockerfile instructions do (whitespace separates; '...' and "..."
 * quote; backslash escapes), expanding $VAR, ${VAR}, ${VAR:-word} and ${VAR:+word} outside
 * single quotes with lookup (may be NULL: everything unset).  Errors: unterminated quotes or
 * ${...}. */
int bld_words(const char *s, bld_lookup_fn lookup, void *data, struct ci_strv *out,
              struct ci_error **err);

/* ---------------------------------------------------------------- building */

/* One line of progress or of a RUN step's output (without its newline). */
typedef void (*bld_progress_fn)(const char *line, void *data);

struct bld_opts {
  const char *helper;          /* the runtime helper executable (cirrus-runtime) */
  const char *runs_dir;        /* where containers get their run directories */
  const char *context_tar;     /* the build context */
  const char *dockerfile;      /* its path inside the context */
  const char *tag;             /* the name of the result in the store */
  const struct ci_strv *args;  /* "NAME=VALUE" build arguments; may be NULL */
  bool pull;                   /* ask the registry for the base image even when it is stored */
  bld_progress_fn on_progress; /* may be NULL */
  void *progress_data;
  const volatile sig_atomic_t *cancel; /* non-zero: stop (the running step is killed) */
};

/* Build and name the image; *out is the result (img_image_free).  Blocking. */
int bld_build(struct img_store *store, const struct bld_opts *o, struct img_image **out,
              struct ci_error **err);

#endif
