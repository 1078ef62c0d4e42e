/* runner/sched_internal.h - the blocking halves of cache and artifact steps (sched_io.c).
 *
 * The scheduler (sched.c) moves files in and out of containers as tar files in its temporary
 * directory; these functions turn them into cache blobs, restore blobs, and store artifacts.
 * They block on file I/O and compression: the scheduler runs them on libuv's thread pool
 * (uv_queue_work), one job at a time per task.  Each job opens its own cache store object,
 * so jobs of different tasks may run at once.  Messages for the task's log are appended to
 * `msgs` in the order upstream prints them; the loop thread prints them after the job.
 */
#ifndef RUNNER_SCHED_INTERNAL_H
#define RUNNER_SCHED_INTERNAL_H

#include "runner/artifacts.h"
#include "runner/cache.h"

/* Look a cache up and turn its blob into a tar at tar_path (names relative to "/"). */
struct sched__restore {
  /* in */
  const char *project_dir;
  const char *cache_home; /* NULL: $XDG_CACHE_HOME... */
  const char *name;       /* the cache's name */
  const char *key;
  const char *base; /* the plan's base folder */
  bool optimistic;
  const char *tar_path;
  /* out */
  bool restored;              /* tar_path holds the blob's content */
  struct cache_digest digest; /* of the restored blob */
  struct ci_strv msgs;
  struct ci_error *err; /* the store could not be opened or read */
};
void sched__restore_run(struct sched__restore *r);
void sched__restore_release(struct sched__restore *r);

/* Build the blob of a cache from tars of its folders and store it when it changed. */
struct sched__save {
  /* in */
  const char *project_dir;
  const char *cache_home;
  const char *name;
  const char *key;
  const struct cache_plan *plan;
  const struct ci_strv *folders; /* the folders that were copied out */
  const struct ci_strv *tars;    /* one tar per folder (same index) */
  bool available;                /* a blob was restored (exact or optimistic) */
  const struct cache_digest *restored;
  /* out */
  struct ci_strv msgs;
};
void sched__save_run(struct sched__save *s);
void sched__save_release(struct sched__save *s);

/* Store artifacts from tars and parse their annotations. */
struct sched__artifacts {
  /* in */
  struct artifacts_save_opts opts; /* tar_root is per tar */
  const struct ci_strv *tars;
  const struct ci_strv *tar_roots;
  /* out */
  struct artifacts_result res;
  struct ci_error *err;
};
void sched__artifacts_run(struct sched__artifacts *a);
void sched__artifacts_release(struct sched__artifacts *a);

/* Parse the output of the working-directory listing script (directories, an empty name,
 * then other entries, every name NUL-terminated) into paths pointing into buf. */
void sched__parse_listing(const char *buf, size_t len, struct artifacts_path **out, size_t *n);

/* The port wait's answer: the ports (4 hex digits each, space-separated) that never opened.
 * Their number (at most max), or -1 when out is anything else. */
int sched__parse_ports(const char *out, unsigned *ports, size_t max);

#endif
