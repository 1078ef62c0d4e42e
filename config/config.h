/* config/config.h - `.cirrus.yml` -> the task model.
 *
 * Steps for a caller:
 *   1. cfg_discover(".", &path, &err) finds `.cirrus.yaml` / `.cirrus.yml` (or refuses
 *      `.cirrus.star`), unless the user named a file;
 *   2. fill struct cfg_options (parser environment, affected files, project directory);
 *   3. cfg_load(path, &opts, &file, &err): < 0 only when the file cannot be read at all;
 *      otherwise *file holds the tasks and every diagnostic (file->nerrors > 0 means
 *      the configuration is invalid and file->tasks must not be run);
 *   4. print file->diags (cfg_file_get_line() gives the source line for the caret),
 *      use file->tasks (sorted by id), or cfg_file_to_json() for `validate --json`;
 *   5. cfg_file_free(file).
 *
 * Everything is synchronous and owned by the struct cfg_file: every string, every
 * position (ci_pos.file points at file->path) lives until cfg_file_free().
 */
#ifndef CFG_CONFIG_H
#define CFG_CONFIG_H

#include "common/error.h"
#include "common/util.h"

#include <jansson.h>
#include <stdbool.h>

/* ---- environments: sorted, unique keys ---- */

struct cfg_kv {
  char *key;   /* owned */
  char *value; /* owned */
};

struct cfg_env {
  struct cfg_kv *v; /* owned, sorted by key (strcmp), keys unique */
  size_t n, alloc;
};
#define CFG_ENV_INIT {NULL, 0, 0}

/* The value of key, or NULL; borrowed. */
const char *cfg_env_get(const struct cfg_env *env, const char *key);
/* Set key to value (both copied), replacing an existing value. */
void cfg_env_set(struct cfg_env *env, const char *key, const char *value);
void cfg_env_unset(struct cfg_env *env, const char *key);
/* Copy every entry of from into env (from wins). */
void cfg_env_merge(struct cfg_env *env, const struct cfg_env *from);
void cfg_env_copy(struct cfg_env *dst, const struct cfg_env *src);
void cfg_env_release(struct cfg_env *env);

/* Upstream's parse-time expansion: replaces $KEY, ${KEY} and %KEY% for keys present in
 * env only (longest key first, up to 10 passes); unknown references stay as written.
 * Returns an owned string. */
char *cfg_expand(const char *s, const struct cfg_env *env);

/* The environment every configuration sees: CI, CIRRUS_CI, CIRRUS_ENVIRONMENT=CLI, ...
 * (upstream's environment.Static()). */
void cfg_env_add_static(struct cfg_env *env);

/* ---- instructions ---- */

enum cfg_instr_kind {
  CFG_INSTR_SCRIPT,
  CFG_INSTR_BACKGROUND_SCRIPT,
  CFG_INSTR_CACHE,
  CFG_INSTR_ARTIFACTS,
  CFG_INSTR_FILE,
  CFG_INSTR_UPLOAD_CACHE,
};

/* When an instruction runs, given what happened before it (upstream's execution behaviour). */
enum cfg_when {
  CFG_WHEN_ON_SUCCESS, /* default: only while nothing has failed */
  CFG_WHEN_ON_FAILURE, /* only after a failure */
  CFG_WHEN_ALWAYS,
  CFG_WHEN_ON_TIMEOUT, /* only after the task timed out */
};

struct cfg_instr {
  enum cfg_instr_kind kind;
  enum cfg_when when;
  char *name;        /* owned; unique within a task */
  struct ci_pos pos; /* of the instruction's key */
  int pipe_step;     /* index into task->pipe_steps, or -1 outside pipes */

  /* CFG_INSTR_SCRIPT, CFG_INSTR_BACKGROUND_SCRIPT: one element per line */
  struct ci_strv script;

  /* CFG_INSTR_CACHE */
  struct ci_strv folders;            /* "~/" already rewritten to "$HOME/" */
  struct ci_strv fingerprint_script; /* empty when not given */
  char *fingerprint_key;             /* owned, NULL when not given */
  struct ci_strv populate_script;
  bool reupload_on_changes;
  bool optimistically_restore_on_miss;

  /* CFG_INSTR_ARTIFACTS */
  struct ci_strv paths;
  char *type;   /* owned, NULL when not given */
  char *format; /* owned, NULL when not given */

  /* CFG_INSTR_FILE: exactly one of variable_name / from_contents is set */
  char *path;
  char *variable_name; /* owned, leading '$' stripped */
  char *from_contents; /* owned */

  /* CFG_INSTR_UPLOAD_CACHE */
  char *cache_name; /* owned */
};

const char *cfg_instr_kind_name(enum cfg_instr_kind kind); /* "script", "cache", ... */
const char *cfg_when_name(enum cfg_when when);             /* "on_success", ... */

/* ---- execution environments ---- */

enum cfg_instance {
  CFG_INSTANCE_NONE,        /* no execution environment: skipped at run time */
  CFG_INSTANCE_CONTAINER,   /* container: / arm_container: */
  CFG_INSTANCE_PIPE,        /* *_pipe: one image per step */
  CFG_INSTANCE_PREBUILT,    /* service task that builds a container's Dockerfile */
  CFG_INSTANCE_UNSUPPORTED, /* windows_container, macos_instance, persistent_worker,
                               docker_builder: parsed, skipped at run time */
};

struct cfg_port {
  unsigned host;      /* 0 when not given */
  unsigned container;
};

struct cfg_additional_container {
  char *name;  /* owned; letters only */
  char *image; /* owned */
  struct cfg_port *ports;
  size_t nports;
  struct cfg_env env;         /* raw values */
  struct ci_strv command;     /* shell-split; empty: the image's CMD */
  struct ci_strv readiness_command;
  double cpu;         /* default 0.5 */
  unsigned memory_mb; /* default 512 */
  bool privileged;
  struct ci_pos pos;
};

struct cfg_container {
  char *image;            /* owned; for a dockerfile: the image the service task builds */
  char *dockerfile;       /* owned, NULL unless built from a Dockerfile */
  char *dockerfile_hash;  /* owned, NULL unless dockerfile */
  struct cfg_env docker_arguments;
  const char *arch;       /* "amd64" or "arm64" (static string) */
  double cpu;             /* default 2 */
  unsigned memory_mb;     /* default 4096 */
  struct cfg_additional_container *additional;
  size_t nadditional;
  struct ci_pos pos;      /* of the container key */
};

struct cfg_pipe_step {
  char *image; /* owned */
  struct ci_pos pos;
};

/* ---- tasks ---- */

struct cfg_task {
  unsigned id;          /* upstream's LocalGroupId: document order, before only_if */
  char *name;           /* owned */
  char *fallback_name;  /* owned: the name derived from the key */
  char *alias;          /* owned, NULL when not given */
  struct ci_strv labels; /* unique labels among same-named tasks, sorted */
  unsigned *depends_on;  /* owned: ids, sorted */
  size_t ndepends_on;
  bool skip;
  bool allow_failures;
  unsigned timeout_seconds; /* default 3600 */
  char *only_if;            /* owned raw expression, NULL when not given */
  enum cfg_instance instance;
  const char *instance_key; /* static: "container", "arm_container", "pipe", ... or NULL */
  struct cfg_container container; /* CONTAINER, PREBUILT; cpu/memory also for PIPE */
  struct cfg_pipe_step *pipe_steps;
  size_t npipe_steps;
  struct cfg_env env; /* raw values: top level merged with the task's */
  struct cfg_instr *instrs;
  size_t ninstrs;
  struct ci_pos pos; /* of the task's key */
};

/* ---- diagnostics ---- */

enum cfg_diag_level { CFG_DIAG_ERROR, CFG_DIAG_WARNING };

struct cfg_diag {
  enum cfg_diag_level level;
  struct ci_pos pos; /* line 0: no position (file only) */
  char *msg;         /* owned */
};

/* ---- the file ---- */

struct cfg_options {
  /* Environment for expansion and only_if/skip: usually cfg_env_add_static() plus the
   * user's -e/--env-file values.  Borrowed; NULL = empty. */
  const struct cfg_env *env;
  /* Files for changesInclude()/changesIncludeOnly(); borrowed; NULL = none. */
  const struct ci_strv *affected_files;
  /* Directory that Dockerfile paths are relative to; NULL = the config file's directory. */
  const char *project_dir;
  /* printf template with one %s for built Dockerfile images; NULL = upstream's
   * "gcr.io/cirrus-ci-community/%s:latest". */
  const char *dockerfile_image_template;
};

struct cfg_file {
  char *path;  /* owned */
  char *text;  /* owned, NUL-terminated */
  size_t len;
  size_t *line_starts; /* owned: offset of each line's first byte */
  size_t nlines;
  struct cfg_task *tasks; /* owned, sorted by id */
  size_t ntasks;
  struct cfg_diag *diags; /* owned, in the order found, errors and warnings mixed */
  size_t ndiags, diags_alloc;
  unsigned nerrors;
};

/* Find the configuration in dir: `.cirrus.yaml`, else `.cirrus.yml`; a lone `.cirrus.star`
 * is refused ("Starlark configuration is not supported").  *path is owned. */
int cfg_discover(const char *dir, char **path, struct ci_error **err);

/* Read and parse path.  Fails (< 0) only when the file cannot be read or is not a YAML
 * file name; configuration problems are diagnostics in *out. */
int cfg_load(const char *path, const struct cfg_options *opts, struct cfg_file **out,
             struct ci_error **err);

/* Parse text (copied) as if read from path.  Never fails: problems are diagnostics. */
struct cfg_file *cfg_parse(const char *path, const char *text, size_t len,
                           const struct cfg_options *opts);

/* Line `line` (1-based) of the source without its newline, or NULL; borrowed. */
const char *cfg_file_get_line(const struct cfg_file *f, unsigned line, size_t *len);

/* The resolved model as documented for `cirrus validate --json` (new reference). */
json_t *cfg_file_to_json(const struct cfg_file *f);
json_t *cfg_task_to_json(const struct cfg_task *t);

void cfg_file_free(struct cfg_file *f);
static inline void
cfg_file_freep(struct cfg_file **f)
{
  if (*f)
    cfg_file_free(*f);
}
#define cleanup_cfg_file __attribute__((cleanup(cfg_file_freep)))

/* Parse a duration: "N" (minutes), "Ns", "Nm", "Nh" (upstream's ParseSeconds). */
int cfg_parse_seconds(const char *s, unsigned *out, char **errmsg);
/* Parse a memory size in MiB: "N" (N < 100: GiB), "Nm/mb/mi", "Ng/gb/gi". */
int cfg_parse_megabytes(const char *s, unsigned *out, char **errmsg);

#endif
