/* runner/repo.h - what a task learns from the project's git repository, and the copy of
 * the project that its container works in.
 *
 * Three independent jobs, all synchronous and independent of libuv.  Callers run them
 * before the loop starts or inside one bounded uv_queue_work() job; any thread may call
 * them, and two calls may run at the same time on different threads (each opens its own
 * libgit2 repository; libgit2's error state is per thread and is read on the calling
 * thread; archiving switches the calling thread, and only it, to the C.UTF-8 locale for
 * the duration of the call).  Nothing here modifies the user's tree, its repository or
 * its index (unless the caller puts a copy's destination inside the project).
 *
 * The repository of a directory is found as git finds it: upwards from the directory,
 * not crossing file systems, stopping at GIT_CEILING_DIRECTORIES.  GIT_DIR and
 * GIT_WORK_TREE are not consulted (git hooks set them to the same repository anyway).
 *
 * 1. Repository facts for the steps' environment (reference §3.4):
 *
 *      struct repo_facts facts = REPO_FACTS_INIT;
 *      if (repo_facts_read(project_dir, &facts, &err) < 0)
 *        ... a broken repository: report err ...
 *      repo_facts_to_env(&facts, &task_env);      (or repo_env_add() for both at once)
 *      repo_facts_release(&facts);
 *
 * 2. Changed files for --affected-files-git REV and --affected-files-git-cached REV:
 *
 *      struct ci_strv files = CI_STRV_INIT;
 *      if (repo_changed_files(project_dir, "origin/main", REPO_DIFF_WORKDIR, &files, &err) < 0)
 *        ...
 *      ci_strv_release(&files);
 *
 * 3. The project copy that becomes CIRRUS_WORKING_DIR, leaving out whatever git ignores:
 *    a tar stream for the engine APIs (repo_tar_fd(), repo_tar_write()) or a plain
 *    directory for the built-in runtime (repo_copy_dir()).  Both walk the tree in the
 *    same order (names sorted bytewise) with the same rules:
 *
 *    - What git ignores is left out: a path matched by git's ignore rules (every
 *      .gitignore from the top of the enclosing work tree down to the path, the
 *      repository's .git/info/exclude, the user's core.excludesFile, default
 *      ~/.config/git/ignore; evaluated by libgit2 as `git status` does), unless git tracks
 *      it: a file in the index is always copied, even below an ignored directory (which
 *      then holds only its tracked entries).  An ignored directory is otherwise not
 *      entered.  A directory that is not inside a repository gets the same treatment
 *      with its own .gitignore files (libgit2 on a repository object that has only a
 *      work directory).  If the project directory itself is ignored by the repository
 *      around it, that repository is disregarded and the project directory is treated
 *      as a tree of its own.
 *      Upstream's rsync filter honours only the .gitignore files and drops tracked files
 *      that match them (a force-added gradle-wrapper.jar under "*.jar"); this project
 *      copies what git considers part of the project instead.
 *    - Every entry named ".git" (directory or gitlink file, at any depth) is copied whole,
 *      without ignore rules inside it, as upstream's rsync does: steps may run git.
 *    - Regular files are copied with their content, permission bits (setuid and setgid
 *      dropped, as rsync without --perms does) and modification time (whole seconds).
 *      Hard links become separate files.  Symbolic links are copied as links with their
 *      target verbatim; they are never followed, wherever they point.  Sockets, FIFOs
 *      and device nodes are skipped (counted in stats.skipped).
 *    - The project directory becomes the root of the copy, with mode 0755.
 *    - A directory that is an ancestor of itself (a bind-mount loop) fails the copy.
 *    - A file that changes while it is copied: at most the size it had when it was
 *      examined is copied; in an archive, a file that shrank meanwhile is padded with
 *      zero bytes to that size (with a warning in the log).
 *    - Errors stop the copy at once (no partial success): the message names the
 *      project-relative path being copied and the cause, e.g.
 *      "cannot copy 'build/big.bin' to '/w/build/big.bin': No space left on device".
 */
#ifndef REPO_REPO_H
#define REPO_REPO_H

#include "common/error.h"
#include "common/util.h"
#include "config/config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- 1. facts ---- */

/* The git facts of a project directory.  Every field is owned, and NULL when the fact
 * does not apply. */
struct repo_facts {
  char *root;      /* the work tree root (no trailing slash); NULL: not in a repository */
  char *branch;    /* CIRRUS_BRANCH: short name of HEAD when HEAD is a branch */
  char *change;    /* CIRRUS_CHANGE_IN_REPO: the commit at HEAD, 40 hex digits */
  char *message;   /* CIRRUS_CHANGE_MESSAGE: its full message (as stored, leading blank
                      lines dropped, trailing newline kept) */
  char *tag;       /* CIRRUS_TAG: a tag that points at HEAD (see repo_facts_read) */
  char *clone_url; /* CIRRUS_REPO_CLONE_URL: the URL of remote "origin" ... */
  char *owner;     /* CIRRUS_REPO_OWNER     ... when it is https://github.com/OWNER/NAME */
  char *name;      /* CIRRUS_REPO_NAME      ... or git@github.com:OWNER/NAME, with an */
  char *full_name; /* CIRRUS_REPO_FULL_NAME ... optional ".git" suffix: "OWNER/NAME" */
};
/* clang-format off */
#define REPO_FACTS_INIT {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}
/* clang-format on */

/* Read the facts of the repository that contains dir (found as described above; upstream
 * looks at dir itself only).
 *
 * dir not inside a repository: success, every field NULL.  A repository whose HEAD is
 * unborn (no commit yet) has no branch, change, message or tag, but may have the remote
 * facts, as upstream.  When several tags point at HEAD (lightweight ones, or annotated
 * ones peeled through any number of tag objects), CIRRUS_TAG is the one whose name sorts
 * first bytewise ("v1.0" before "v1.0-rc1" before "v2").  Tags that do not lead to a
 * commit are disregarded.
 *
 * Fails (< 0, *err set, *out untouched) when the repository cannot be read: a HEAD that
 * is not a valid reference, a HEAD commit missing from the object database, an
 * unreadable configuration.  *out must be REPO_FACTS_INIT or released; on success it is
 * filled and owned by the caller, who calls repo_facts_release(). */
int repo_facts_read(const char *dir, struct repo_facts *out, struct ci_error **err);

/* Optional: keep libgit2 initialised between calls (a command that reads facts, ignore rules
 * and changed files of one project).  libgit2 loads the system's CA bundle at every
 * initialisation (milliseconds); the calls above initialise it themselves otherwise. */
void repo_lib_hold(void);
void repo_lib_release(void);
/* Start that initialisation on a thread now, to overlap it with other work; the next
 * repo_lib_hold() waits for it and takes it as its hold.  repo_lib_settle() waits for a
 * prefetch that no hold took and drops it (call it on every way out). */
void repo_lib_prefetch(void);
void repo_lib_settle(void);

/* Free every field and reset f to REPO_FACTS_INIT. */
void repo_facts_release(struct repo_facts *f);

/* Set the CIRRUS_* variables above in env for every fact that is not NULL (values are
 * copied; existing values of those keys are replaced). */
void repo_facts_to_env(const struct repo_facts *f, struct cfg_env *env);

/* repo_facts_read(dir) followed by repo_facts_to_env(env).  On failure env is unchanged. */
int repo_env_add(const char *dir, struct cfg_env *env, struct ci_error **err);

/* ---- 2. changed files ---- */

enum repo_diff_kind {
  /* The work tree against REV, as upstream's --affected-files-git: file contents on disk
   * compared with REV's tree (the index plays no part), so modified, deleted, and new
   * files, untracked ones included. */
  REPO_DIFF_WORKDIR,
  /* The index against REV, as --affected-files-git-cached (`git diff --cached REV`). */
  REPO_DIFF_INDEX,
};

/* The paths that differ between REV and the work tree or the index of the repository
 * containing dir: relative to the work tree root, '/'-separated, sorted bytewise, unique.
 * A submodule counts as changed when its checked-out commit differs.  Untracked files
 * that git ignores are left out; tracked files are reported whatever the ignore rules say
 * (upstream drops those too, an accident of its .gitignore filter).
 *
 * rev is any revision git understands ("HEAD~2", "main", a sha, "v1.0") and must name a
 * commit.  Fails with a message naming rev when it does not resolve
 * ("bad revision 'nope': ..."), and with a message naming dir when dir is not inside a
 * repository.  On success *out (any previous content is released) holds the list,
 * owned by the caller; on failure *out is untouched. */
int repo_changed_files(const char *dir, const char *rev, enum repo_diff_kind kind,
                       struct ci_strv *out, struct ci_error **err);

/* ---- 3. the project copy ---- */

/* What a copy wrote.  An ignored directory counts once in ignored, whatever it holds. */
struct repo_copy_stats {
  uint64_t files;     /* regular files */
  uint64_t dirs;      /* directories, the root included */
  uint64_t symlinks;  /* symbolic links */
  uint64_t ignored;   /* entries left out by the ignore rules */
  uint64_t skipped;   /* sockets, FIFOs, device nodes */
  uint64_t bytes;     /* bytes of file content */
  uint64_t out_bytes; /* tar only: bytes of archive written */
};

struct repo_copy_opts {
  /* Tar only: the path every entry name starts with, e.g. "tmp/cirrus-ci/working-dir" so
   * that extracting at "/" puts the project there (extractors create the missing parent
   * directories; the archive holds no entries for them).  Leading and trailing slashes
   * are dropped; "." and ".." components are refused.  NULL or "" puts the project's
   * content at the top of the archive ("./" is then the root entry). */
  const char *prefix;
  /* Optional: when it becomes true (set from another thread), the copy stops at the
   * next entry or the next MiB of content and fails with CI_ECANCELED. */
  const atomic_bool *cancel;
};
/* clang-format off */
#define REPO_COPY_OPTS_INIT {NULL, NULL}
/* clang-format on */

/* Called with consecutive pieces of the archive.  Return >= 0 when all len bytes were
 * consumed, < 0 with *err set to stop the copy (that error is then returned, prefixed
 * with the path being archived). */
typedef int (*repo_write_fn)(const void *buf, size_t len, void *data, struct ci_error **err);

/* Write a POSIX tar archive (pax, ustar whenever an entry fits it) of project to fn.
 * Every entry is owned by uid 0 and gid 0 with no user or group names.
 * opts may be NULL (no prefix, no cancellation).  stats may be NULL; it is written only
 * on success.  On failure some of the archive may already have been passed to fn. */
int repo_tar_write(const char *project, const struct repo_copy_opts *opts, repo_write_fn fn,
                   void *data, struct repo_copy_stats *stats, struct ci_error **err);

/* repo_tar_write() to a file descriptor (a pipe, socket or file; blocking or not: a full
 * non-blocking descriptor is waited for with poll()).  fd stays open and owned by the
 * caller.  If fd is a regular file inside project, that file is left out of the archive. */
int repo_tar_fd(const char *project, const struct repo_copy_opts *opts, int fd,
                struct repo_copy_stats *stats, struct ci_error **err);

/* Copy project into the directory dest, which is created (mode 0755, its parent must
 * exist) or, if it exists, must be a directory; existing entries are never replaced:
 * a name that already exists in dest fails the copy.  Everything below dest is created
 * through file descriptors relative to dest with O_NOFOLLOW and O_EXCL, so nothing is
 * ever written outside dest, even if dest's content changes meanwhile.  Entries are
 * owned by the caller.  If dest lies inside project it is not copied into itself.
 * opts->prefix is not used.  On failure what was copied so far stays in dest. */
int repo_copy_dir(const char *project, const char *dest, const struct repo_copy_opts *opts,
                  struct repo_copy_stats *stats, struct ci_error **err);

#endif
