/* runner/sched.h - run the selected tasks of a graph on one libuv loop.
 *
 * Steps for a caller (cmd/run.c):
 *   1. build the graph (graph.h), open a backend (backends/backend.h), fill sched_options;
 *   2. sched_run(): independent tasks run concurrently up to `parallel`, each in its own
 *      container, steps in order with upstream's semantics; events stream to on_event;
 *      SIGINT/SIGTERM stop starting tasks, kill running steps, remove every container;
 *   3. read the outcome of each task from the graph and the run's status from the result.
 *
 * Everything happens on the calling thread, inside uv_run() of the given loop.
 */
#ifndef SCHED_H
#define SCHED_H

#include "backends/backend.h"
#include "common/log.h"
#include "runner/artifacts.h"
#include "runner/graph.h"

enum sched_event_kind {
  SCHED_TASK_STARTED,
  SCHED_TASK_FINISHED, /* status, seconds, reason */
  SCHED_SCOPE_STARTED, /* scope: "'main' script", "image pull", ... */
  SCHED_SCOPE_FINISHED,
  SCHED_OUTPUT,  /* text/len from a step (stream 1 or 2), in the current scope */
  SCHED_MESSAGE, /* a line from cirrus itself about the task (level) */
  SCHED_ANNOTATION, /* annotation: parsed from an artifact with a format (junit, ...) */
};

enum sched_status {
  SCHED_SUCCEEDED,
  SCHED_FAILED,
  SCHED_SKIPPED,
  SCHED_TIMED_OUT,
  SCHED_CANCELED,
};

struct sched_event {
  enum sched_event_kind kind;
  const struct cfg_task *task;
  size_t task_index;   /* index in the graph */
  const char *scope;   /* SCOPE_*, and the scope of OUTPUT/MESSAGE (NULL: the task) */
  enum sched_status status;
  double seconds;
  const char *reason;  /* TASK_FINISHED: why it was skipped/failed, or NULL */
  const char *text;
  size_t len;
  int stream;
  enum ci_log_level level;
  const struct artifacts_annotation *annotation; /* ANNOTATION, borrowed for the call */
};

typedef void (*sched_event_cb)(const struct sched_event *ev, void *data);

struct sched_options {
  unsigned parallel;            /* >= 1 */
  enum backend_pull_policy pull;
  bool dirty;                   /* bind-mount the project instead of copying it */
  const char *project_dir;      /* absolute path */
  /* Tars of the project, one per working directory (entries relative to "/", already
   * prefixed with that directory); a task uses the one of its CIRRUS_WORKING_DIR. */
  const struct sched_tar {
    const char *workdir;
    const char *path;
  } *tars;
  size_t ntars;
  const char *run_id;           /* labels containers */
  const struct cfg_env *base_env; /* static + build id + git facts */
  const struct cfg_env *user_env; /* -e / --env-file */
  const char *working_dir;      /* default CIRRUS_WORKING_DIR: /tmp/cirrus-ci/working-dir */
  bool debug_no_cleanup;        /* keep containers (their ids are printed) */
  /* --artifacts-dir: artifacts are stored at <dir>/<task>/<artifact>/<path>; NULL: not
   * stored (formats are still parsed into annotations). */
  const char *artifacts_dir;
  /* --export-bundle: a failed task's container is written to <dir>/<task> as an OCI runtime
   * bundle (runner/bundle.h) before it is removed; NULL: not exported. */
  const char *export_bundle_dir;
  /* The build context of Dockerfile images (a tar of the project, entries at its top);
   * NULL when no selected task builds one. */
  const char *build_context;
  /* The directory holding "cirrus/" for caches; NULL: $XDG_CACHE_HOME, else ~/.cache. */
  const char *cache_home;
  sched_event_cb on_event;
  void *event_data;
};

struct sched_result {
  int status;          /* 0 ok, 1 a task failed, 130/143 interrupted */
  char *first_failure; /* owned: "task NAME (ID) failed" / "timed out", or NULL */
};

/* Run the graph's selected tasks to completion.  Returns < 0 only when the run could not
 * start at all; task failures are in the graph and *result. */
int sched_run(uv_loop_t *loop, struct backend *b, struct graph *g,
              const struct sched_options *opts, struct sched_result *result,
              struct ci_error **err);

void sched_result_release(struct sched_result *r);

/* The shell-side pieces, exposed for tests. */
/* argv launching one script step (see sched.c for the launcher's contract). */
char **sched_step_argv(const struct ci_strv *lines, unsigned step_no, const char *cwd);
void sched_argv_free(char **argv);
/* Parse $CIRRUS_ENV contents (KEY=VALUE lines) into env; < 0 on a malformed line. */
int sched_parse_cirrus_env(const char *content, size_t len, struct cfg_env *env,
                           char **errmsg);

#endif
