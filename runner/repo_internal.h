/* runner/repo_internal.h - shared by runner/repo*.c only; never include from outside. */
#ifndef REPO_INTERNAL_H
#define REPO_INTERNAL_H

#include "runner/repo.h"

#include <git2.h>

/* Fail with git_error_last()'s message appended: "<what>: <libgit2 message>".
 * Call on the thread that made the failing libgit2 call.  Returns the error's code. */
int repo__git_error(struct ci_error **err, const char *fmt, ...) CI_PRINTF(2, 3);

/* Open the repository containing dir (upwards, GIT_CEILING_DIRECTORIES honoured).
 * Returns 1 with *out set, 0 when dir is not inside a repository, < 0 on error.
 * The caller holds a git_libgit2_init() reference. */
int repo__open(const char *dir, git_repository **out, struct ci_error **err);

/* git's ignore rules for the paths below one project directory (see repo.h). */
struct repo__ignore {
  git_repository *repo; /* owned: the enclosing repository or a work-directory-only one */
  git_index *index;     /* owned: its index; NULL for a work-directory-only repository */
  char *base;           /* owned: the project relative to repo's work dir, "" or "a/b/" */
  struct ci_buf path;   /* scratch */
};

enum repo__verdict {
  REPO__KEEP,         /* not ignored */
  REPO__SKIP,         /* ignored and not tracked */
  REPO__TRACKED_ONLY, /* an ignored directory that holds tracked files: enter it, but keep
                         only what is tracked below it */
};

/* Set up ig for the project directory project (an absolute, resolved path).
 * Takes a git_libgit2_init() reference that repo__ignore_release() drops. */
int repo__ignore_init(struct repo__ignore *ig, const char *project, struct ci_error **err);
/* The verdict on rel (relative to the project, no trailing slash).  tracked_only: rel is
 * below a REPO__TRACKED_ONLY directory (no ignore rules, only the index decides). */
int repo__ignore_check(struct repo__ignore *ig, const char *rel, bool is_dir, bool tracked_only,
                       enum repo__verdict *out, struct ci_error **err);
void repo__ignore_release(struct repo__ignore *ig);

#endif
