/* runner/artifacts.h - the host side of artifacts: which files match, storing them under
 * --artifacts-dir, and annotations (JUnit and the other report formats) turned into GitHub
 * Actions workflow commands.  Also the path and glob helpers runner/cache.c shares.
 *
 * An `*_artifacts` instruction (struct cfg_instr, CFG_INSTR_ARTIFACTS) names paths (globs,
 * relative to CIRRUS_WORKING_DIR) in the task's container.  The scheduler's steps, as
 * upstream's agent does them:
 *
 *   1. no paths -> log ARTIFACTS_MSG_NO_PATHS, done (success).
 *   2. list the working directory in the container (every path below it, relative, with a
 *      directory flag: `find . -mindepth 1` and `-type d` say enough) and call
 *      artifacts_expand() with the env-expanded paths.  A pattern that points outside the
 *      working directory fails the step with the error it returns.
 *   3. per pattern: log ARTIFACTS_MSG_UPLOADING with its file count, and
 *      ARTIFACTS_MSG_SKIP_FOLDER for each matched directory.
 *   4. take a tar of the matched files from the container (of the working directory, or of
 *      each file, whichever the backend does best) and hand it to artifacts_save_tar() with the
 *      matched files as the `only` filter.  It stores them under
 *      <artifacts dir>/<task name>/<artifact name>/<path relative to the working dir>
 *      (only with --artifacts-dir, and only when both names are path-safe) and, when the
 *      instruction has a `format`, parses each file into annotations.
 *   5. artifacts_annotations_normalize() with the same listing, then, under
 *      `-o github-actions`, print artifacts_annotation_github() for each annotation.
 *
 * Everything here is synchronous; artifacts_save_tar() blocks on file I/O (run it off the
 * loop thread).  No function keeps state between calls.
 *
 * Safety of artifacts_save_tar(): the tar comes from a container and is hostile.  Nothing is
 * ever written outside <artifacts dir>/<task>/<artifact>: entry names with "..", absolute
 * names, and entries outside the working directory are refused; symbolic links in the tar are
 * never created (they are reported as skipped); directories are walked one component at a
 * time from a directory fd with O_NOFOLLOW, so a symlink planted in the artifacts directory
 * is refused rather than followed; files are opened with O_NOFOLLOW and must be regular.
 */
#ifndef RUNNER_ARTIFACTS_H
#define RUNNER_ARTIFACTS_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ messages */

/* Upstream's log lines (printf formats; no newlines). */
#define ARTIFACTS_MSG_NO_PATHS "Skipping artifacts upload because there are no paths specified..."
#define ARTIFACTS_MSG_UPLOADING "Uploading %zu artifacts for %s" /* count, absolute pattern */
#define ARTIFACTS_MSG_SKIP_FOLDER "Skipping uploading of '%s' because it's a folder" /* path */
#define ARTIFACTS_MSG_UPLOADED "Uploaded %s"                              /* absolute path */
#define ARTIFACTS_MSG_FAILED "Failed to upload artifacts: %s"             /* error */
#define ARTIFACTS_MSG_PARSING "Trying to parse annotations for %s format" /* format */

/* ------------------------------------------------------------------ names and paths */

/* Upstream's pathsafe rule on Linux: non-empty, and every character a Unicode letter or
 * number (UTF-8), '_', '-', ' ' or ':'.  Such a name has no '/' and no '.', so it can only
 * ever name one directory entry.  Invalid UTF-8 is not safe. */
bool artifacts_name_is_safe(const char *name);

/* Go's path.Clean: collapse "//", drop ".", resolve ".." textually ("/.." is "/"), no
 * trailing '/', "" becomes ".".  Returns an owned string. */
char *artifacts_path_clean(const char *path);
/* True when path (clean, absolute) is dir (clean, absolute) or below it. */
bool artifacts_path_is_within(const char *path, const char *dir);
/* The part of path (clean) below dir (clean): "" when equal, NULL when path is not within
 * dir.  Borrowed: points into path. */
const char *artifacts_path_rel(const char *path, const char *dir);
/* Go's filepath.Rel for two clean absolute paths: target relative to base, with ".."
 * components where needed ("." when equal).  Returns an owned string. */
char *artifacts_path_relative(const char *base, const char *target);

/* ------------------------------------------------------------------ globs */

/* The glob syntax of upstream's doublestar v1: '*' (any run of characters but '/'), '?' (one
 * character but '/'), '[...]' / '[^...]' classes with ranges, '{a,b}' alternatives (nested),
 * '\' escapes the next character, and a "**" path component matches zero or more directories
 * (as the last component: everything below, one or more components, as doublestar.Glob).
 * Hidden files are not special. */

/* True when pattern has any of the glob metacharacters *?[{\ */
bool artifacts_glob_has_meta(const char *pattern);
/* Match path against pattern, both absolute or both relative, component by component.
 * Returns 1 on a match, 0 on none, < 0 (with *err) on a malformed pattern. */
int artifacts_glob_match(const char *pattern, const char *path, struct ci_error **err);

/* One path of a listing of the container's working directory. */
struct artifacts_path {
  const char *path; /* borrowed, relative to the working directory ("./" prefix allowed) */
  bool is_dir;
};

/* The result of one pattern. */
struct artifacts_match {
  char *pattern;        /* owned: the absolute, cleaned pattern (as upstream logs it) */
  struct ci_strv files; /* owned: matched non-directories, relative, sorted, unique */
  struct ci_strv dirs;  /* owned: matched directories, relative, sorted (skipped on upload) */
};
struct artifacts_matches {
  struct artifacts_match *v; /* owned */
  size_t n;
};
#define ARTIFACTS_MATCHES_INIT                                                                     \
  {                                                                                                \
    NULL, 0                                                                                        \
  }

/* Expand patterns (env-expanded; relative ones are joined to working_dir, which is absolute)
 * over listing (n paths below working_dir).  Each pattern and each of its {a,b} alternatives
 * is cleaned; one whose literal leading part is not within working_dir is refused with
 * "path is outside of CIRRUS_WORKING_DIR: path <p> should be relative to <w>" (upstream
 * only notices when such a path exists; a pattern that can never name a file inside is an
 * error here).  Listing entries outside the working directory (after cleaning) are ignored.
 * On success *out (released first) has one match per pattern, in order; on failure it is
 * left empty. */
int artifacts_expand(const char *const *patterns, size_t npatterns, const char *working_dir,
                     const struct artifacts_path *listing, size_t n, struct artifacts_matches *out,
                     struct ci_error **err);
void artifacts_matches_release(struct artifacts_matches *m);

/* ------------------------------------------------------------------ annotations */

enum artifacts_level {
  ARTIFACTS_NOTICE,
  ARTIFACTS_WARNING,
  ARTIFACTS_FAILURE,
};

/* One annotation (upstream's model.Annotation, after GitHub's check-run annotation). */
struct artifacts_annotation {
  enum artifacts_level level;
  char *message;     /* owned, never NULL */
  char *raw_details; /* owned, never NULL */
  char *path;        /* owned, never NULL ("" = no file) */
  int64_t start_line, end_line, start_column, end_column;
};
struct artifacts_annotations {
  struct artifacts_annotation *v; /* owned */
  size_t n, alloc;
};
#define ARTIFACTS_ANNOTATIONS_INIT                                                                 \
  {                                                                                                \
    NULL, 0, 0                                                                                     \
  }
void artifacts_annotations_release(struct artifacts_annotations *a);

/* Formats upstream (cirrus-ci-annotations) parses, matched case-insensitively: junit, cirrus,
 * golangci, eslint, rubocop, rspec, qodana, android-lint, boost, buf, swiftformat, flutter,
 * xclogparser.  Upstream silently ignores other formats; so does artifacts_parse_annotations(). */
bool artifacts_format_is_known(const char *format);

/* Parse one report (data, len bytes; need not be NUL-terminated) of the given format and
 * append its annotations to *out.  name is the report's path, for messages.  An unknown format
 * appends nothing and succeeds.  Malformed input fails with CI_EPROTO and a message naming
 * the report; *out keeps what earlier calls appended.
 *
 * JUnit follows upstream (go-junit + cirrus-ci-annotations): every <testsuite> found in the
 * document (several roots, none, and <testsuites> wrappers are fine), each <testcase> child
 * gives one annotation, "classname.name" its message: a passed test a notice without a file;
 * a <failure> a failure whose details are the element's text (else its message attribute,
 * else its type) and whose file:line is guessed from the first "name.ext:123" in the details
 * on a line that mentions neither "junit" nor "kotlin"; testcase attributes file= and line=
 * override the location.  Where upstream is plainly wrong this differs: an <error> is a failure
 * like <failure> (upstream emits an empty notice), a skipped test gives nothing (upstream: an
 * empty notice), and test cases of nested <testsuite>s count (upstream drops them).  XML:
 * UTF-8 (or US-ASCII / ISO-8859-1 when declared), the five predefined entities and character
 * references, CDATA, comments, processing instructions and a DOCTYPE without entity
 * definitions; no external entities are ever loaded.  Element depth is limited to 256. */
int artifacts_parse_annotations(const char *format, const char *name, const char *data, size_t len,
                                struct artifacts_annotations *out, struct ci_error **err);

/* Upstream's NormalizeAnnotations: make annotation paths relative to the working directory.
 * An absolute path is made relative to working_dir; a path that does not name a listed
 * entry is replaced by the listed file with the same base name (the last one in walk order),
 * if any.  listing is as for artifacts_expand(). */
void artifacts_annotations_normalize(struct artifacts_annotations *a, const char *working_dir,
                                     const struct artifacts_path *listing, size_t n);

/* The GitHub Actions workflow command for one annotation, as upstream prints it under
 * `-o github-actions`: "::<notice|warning|error> file=F,line=L,endLine=E,title=MESSAGE::DETAILS"
 * (no newline).  Unlike upstream, values are escaped as GitHub documents ('%', CR, LF, and
 * in properties ':' and ','), so a multi-line failure stays one command.  Owned string. */
char *artifacts_annotation_github(const struct artifacts_annotation *a);

/* ------------------------------------------------------------------ storing */

struct artifacts_save_opts {
  const char *artifacts_dir; /* --artifacts-dir, or NULL: store nothing (annotations only) */
  const char *task_name;     /* must be path-safe when artifacts_dir is set */
  const char *artifact_name; /* likewise ("binary" unless the instruction is named) */
  const char *working_dir;   /* CIRRUS_WORKING_DIR in the container, absolute */
  const char *tar_root;      /* container directory the tar's entry names are relative to */
  /* Paths relative to working_dir to take from the tar (artifacts_match.files); NULL takes
   * every regular file below working_dir. */
  const struct ci_strv *only;
  const char *format; /* annotations format, or NULL */
};

struct artifacts_result {
  struct ci_strv stored;  /* owned: relative paths written (or parsed, without a dir) */
  struct ci_strv skipped; /* owned: relative paths of selected entries not stored: symlinks,
                           * special files, hard links to files not taken */
  uint64_t bytes;         /* file content bytes stored */
  struct artifacts_annotations annotations; /* when format is set */
};
#define ARTIFACTS_RESULT_INIT                                                                      \
  {                                                                                                \
    CI_STRV_INIT, CI_STRV_INIT, 0, ARTIFACTS_ANNOTATIONS_INIT                                      \
  }
void artifacts_result_release(struct artifacts_result *r);

/* Largest report parsed for annotations. */
#define ARTIFACTS_MAX_REPORT ((size_t)64 << 20)

/* Read the tar at tar_fd (plain or gzip; to its end; not closed) and store the selected
 * regular files at <artifacts_dir>/<task_name>/<artifact_name>/<relative path>: directories
 * created 0700, files created or truncated and set to 0600, as upstream.  artifacts_dir is
 * created if missing (and may itself be a symlink: it is the user's choice).  A hard link to a
 * file stored by this call is stored as a copy.
 *
 * Fails with -EINVAL before reading anything when artifacts_dir is set and a name is not
 * path-safe (upstream then silently stores nothing; call artifacts_name_is_safe() first and
 * pass artifacts_dir = NULL to still get annotations).  Fails with CI_EPROTO on a hostile
 * entry (see the top of this file) and with -ELOOP/-ENOTDIR when the artifacts directory has
 * a symlink where a directory is needed.  A report that does not parse does not stop the
 * others: every file is still stored and the first parse error is returned at the end.
 * res accumulates (it may hold results of earlier calls); on failure it holds what was done. */
int artifacts_save_tar(const struct artifacts_save_opts *o, int tar_fd,
                       struct artifacts_result *res, struct ci_error **err);

#endif
