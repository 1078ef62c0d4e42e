/* runner/repo.c - repository facts, changed files, and git's ignore rules (libgit2). */
#include "runner/repo.h"
#include "runner/repo_internal.h"

#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <git2/sys/repository.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
repo__git_error(struct ci_error **err, const char *fmt, ...)
{
  const git_error *ge = git_error_last();
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *what = xvasprintf(fmt, ap);
  va_end(ap);
  int ret = ci_error_make(err, CI_EFAIL, "%s: %s", what,
                          ge && ge->message ? ge->message : "unknown libgit2 error");
  git_error_clear();
  return ret;
}

/* dir must exist and be a directory; libgit2 would only say "not found". */
static int
check_dir(const char *dir, struct ci_error **err)
{
  struct stat st;
  if (stat(dir, &st) < 0)
    return ci_error_make(err, -errno, "cannot open '%s': %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return ci_error_make(err, -ENOTDIR, "'%s' is not a directory", dir);
  return 0;
}

int
repo__open(const char *dir, git_repository **out, struct ci_error **err)
{
  git_repository *repo = NULL;
  int ret = check_dir(dir, err);
  if (ret < 0)
    return ret;
  ret = git_repository_open_ext(&repo, dir, 0, getenv("GIT_CEILING_DIRECTORIES"));
  if (ret == GIT_ENOTFOUND) {
    git_error_clear();
    return 0;
  }
  if (ret < 0)
    return repo__git_error(err, "cannot open the git repository of '%s'", dir);
  *out = repo;
  return 1;
}

static void
repo_freep(git_repository **r)
{
  git_repository_free(*r);
}
static void
ref_freep(git_reference **r)
{
  git_reference_free(*r);
}
static void
object_freep(git_object **o)
{
  git_object_free(*o);
}
static void
libgit2_done(int *initialised)
{
  if (*initialised > 0)
    git_libgit2_shutdown();
}
#define cleanup_repo __attribute__((cleanup(repo_freep)))
#define cleanup_ref __attribute__((cleanup(ref_freep)))
#define cleanup_object __attribute__((cleanup(object_freep)))
/* Holds a libgit2 reference for the scope. */
#define CLEANUP_LIBGIT2                                                                            \
  __attribute__((cleanup(libgit2_done), unused)) int libgit2_ref_ = git_libgit2_init()

static pthread_t prefetch_thread;
static bool prefetching;

static void *
prefetch_main(void *arg)
{
  (void)arg;
  git_libgit2_init();
  return NULL;
}

void
repo_lib_prefetch(void)
{
  if (!prefetching && pthread_create(&prefetch_thread, NULL, prefetch_main, NULL) == 0)
    prefetching = true;
}

void
repo_lib_hold(void)
{
  if (prefetching) {
    pthread_join(prefetch_thread, NULL);
    prefetching = false;
    return;
  }
  git_libgit2_init();
}

void
repo_lib_settle(void)
{
  if (prefetching) {
    pthread_join(prefetch_thread, NULL);
    prefetching = false;
    git_libgit2_shutdown();
  }
}

void
repo_lib_release(void)
{
  git_libgit2_shutdown();
}

/* ---- facts ---- */

void
repo_facts_release(struct repo_facts *f)
{
  free(f->root);
  free(f->branch);
  free(f->change);
  free(f->message);
  free(f->tag);
  free(f->clone_url);
  free(f->owner);
  free(f->name);
  free(f->full_name);
  *f = (struct repo_facts)REPO_FACTS_INIT;
}

/* Upstream's addRemoteVariables: "https://github.com/" or "git@github.com:", then exactly
 * OWNER/NAME with an optional ".git".  Empty components are refused (upstream would set
 * an empty owner for "https://github.com//x"). */
CI_TESTABLE bool
repo_parse_github_url(const char *url, char **owner, char **name)
{
  static const char *const prefixes[] = {"https://github.com/", "git@github.com:"};
  const char *rest = NULL;
  for (size_t i = 0; i < CI_ARRAY_SIZE(prefixes); i++)
    if (ci_str_has_prefix(url, prefixes[i])) {
      rest = url + strlen(prefixes[i]);
      break;
    }
  if (!rest)
    return false;
  size_t len = strlen(rest);
  if (len >= 4 && memcmp(rest + len - 4, ".git", 4) == 0)
    len -= 4;
  const char *slash = memchr(rest, '/', len);
  if (!slash || slash == rest || slash + 1 == rest + len ||
      memchr(slash + 1, '/', (size_t)(rest + len - slash - 1)))
    return false;
  *owner = xstrndup(rest, (size_t)(slash - rest));
  *name = xstrndup(slash + 1, (size_t)(rest + len - slash - 1));
  return true;
}

static int
first_value(const git_config_entry *e, void *data)
{
  char **out = data;
  if (!*out)
    *out = xstrdup(e->value ? e->value : "");
  return 0;
}

/* Upstream takes the first URL of remote "origin" as configured (no insteadOf rewriting).
 * Read from the configuration directly: libgit2 1.5's git_remote_lookup() leaks PCRE2
 * match data (fixed upstream in libgit2 PR 6382). */
static int
read_remote(git_repository *repo, struct repo_facts *f, struct ci_error **err)
{
  git_config *cfg = NULL;
  if (git_repository_config_snapshot(&cfg, repo) < 0)
    return repo__git_error(err, "cannot read the git configuration");
  cleanup_free char *url = NULL;
  int ret = git_config_get_multivar_foreach(cfg, "remote.origin.url", NULL, first_value, &url);
  git_config_free(cfg);
  if (ret < 0 && ret != GIT_ENOTFOUND)
    return repo__git_error(err, "cannot read the URL of remote 'origin'");
  git_error_clear();
  char *owner = NULL, *name = NULL;
  if (url && repo_parse_github_url(url, &owner, &name)) {
    f->clone_url = steal_pointer(&url);
    f->owner = owner;
    f->name = name;
    f->full_name = xasprintf("%s/%s", owner, name);
  }
  return 0;
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first name (bytewise) among the tags that lead to commit head. */
static int
read_tag(git_repository *repo, const git_oid *head, struct repo_facts *f, struct ci_error **err)
{
  git_reference_iterator *it = NULL;
  if (git_reference_iterator_glob_new(&it, repo, "refs/tags/*") < 0)
    return repo__git_error(err, "cannot list tags");
  char *best = NULL;
  git_reference *ref = NULL;
  int ret;
  while ((ret = git_reference_next(&ref, it)) == 0) {
    git_object *obj = NULL;
    if (git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT) == 0) {
      if (git_oid_equal(git_object_id(obj), head)) {
        const char *name = git_reference_shorthand(ref);
        if (!best || strcmp(name, best) < 0) {
          free(best);
          best = xstrdup(name);
        }
      }
      git_object_free(obj);
    } else {
      git_error_clear(); /* a tag of a tree or blob, or a dangling one */
    }
    git_reference_free(ref);
    ref = NULL;
  }
  git_reference_iterator_free(it);
  if (ret != GIT_ITEROVER) {
    free(best);
    return repo__git_error(err, "cannot list tags");
  }
  git_error_clear();
  f->tag = best;
  return 0;
}

static int
read_head(git_repository *repo, struct repo_facts *f, struct ci_error **err)
{
  cleanup_ref git_reference *head = NULL;
  int ret = git_repository_head(&head, repo);
  if (ret == GIT_EUNBORNBRANCH) {
    git_error_clear();
    return 0;
  }
  if (ret < 0)
    return repo__git_error(err, "cannot read HEAD");
  cleanup_object git_object *commit = NULL;
  if (git_reference_peel(&commit, head, GIT_OBJECT_COMMIT) < 0)
    return repo__git_error(err, "cannot read the commit at HEAD");
  if (git_reference_is_branch(head))
    f->branch = xstrdup(git_reference_shorthand(head));
  char sha[GIT_OID_HEXSZ + 1];
  git_oid_tostr(sha, sizeof(sha), git_object_id(commit));
  f->change = xstrdup(sha);
  const char *msg = git_commit_message((const git_commit *)commit);
  f->message = xstrdup(msg ? msg : "");
  return read_tag(repo, git_object_id(commit), f, err);
}

int
repo_facts_read(const char *dir, struct repo_facts *out, struct ci_error **err)
{
  CLEANUP_LIBGIT2;
  cleanup_repo git_repository *repo = NULL;
  struct repo_facts f = REPO_FACTS_INIT;
  int ret = repo__open(dir, &repo, err);
  if (ret < 0)
    return ci_error_prefix(err, "reading git facts");
  if (ret > 0) {
    const char *wd = git_repository_workdir(repo);
    if (wd) {
      f.root = xstrdup(wd);
      size_t n = strlen(f.root);
      if (n > 1 && f.root[n - 1] == '/')
        f.root[n - 1] = '\0';
    }
    ret = read_head(repo, &f, err);
    if (ret >= 0)
      ret = read_remote(repo, &f, err);
    if (ret < 0) {
      repo_facts_release(&f);
      return ci_error_prefix(err, "reading git facts of '%s'", dir);
    }
  }
  repo_facts_release(out);
  *out = f;
  return 0;
}

void
repo_facts_to_env(const struct repo_facts *f, struct cfg_env *env)
{
  const struct {
    const char *key, *value;
  } vars[] = {
      {"CIRRUS_BRANCH", f->branch},
      {"CIRRUS_CHANGE_IN_REPO", f->change},
      {"CIRRUS_CHANGE_MESSAGE", f->message},
      {"CIRRUS_TAG", f->tag},
      {"CIRRUS_REPO_CLONE_URL", f->clone_url},
      {"CIRRUS_REPO_OWNER", f->owner},
      {"CIRRUS_REPO_NAME", f->name},
      {"CIRRUS_REPO_FULL_NAME", f->full_name},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(vars); i++)
    if (vars[i].value)
      cfg_env_set(env, vars[i].key, vars[i].value);
}

int
repo_env_add(const char *dir, struct cfg_env *env, struct ci_error **err)
{
  struct repo_facts f = REPO_FACTS_INIT;
  int ret = repo_facts_read(dir, &f, err);
  if (ret < 0)
    return ret;
  repo_facts_to_env(&f, env);
  repo_facts_release(&f);
  return 0;
}

/* ---- changed files ---- */

/* The path a delta changes, or NULL when it changes nothing. */
static const char *
delta_path(const git_diff_delta *d)
{
  switch (d->status) {
  case GIT_DELTA_ADDED:
  case GIT_DELTA_MODIFIED:
  case GIT_DELTA_UNTRACKED:
  case GIT_DELTA_TYPECHANGE:
  case GIT_DELTA_CONFLICTED:
    return d->new_file.path;
  case GIT_DELTA_DELETED:
    return d->old_file.path;
  default:
    return NULL;
  }
}

static bool
filemode_matters(git_repository *repo)
{
  git_config *cfg = NULL;
  int on = 1;
  if (git_repository_config_snapshot(&cfg, repo) == 0) {
    if (git_config_get_bool(&on, cfg, "core.filemode") < 0)
      on = 1;
    git_config_free(cfg);
  }
  git_error_clear();
  return on != 0;
}

/* Whether path (relative to the work tree) differs between tree and the file system:
 * upstream compares the two directly, so a change that is only in the index (staged,
 * then undone on disk; or removed from the index but still on disk) is no change. */
static int
differs_on_disk(git_repository *repo, git_tree *tree, const char *path, bool filemode, bool *out,
                struct ci_error **err)
{
  cleanup_free char *full = xasprintf("%s%s", git_repository_workdir(repo), path);
  struct stat st;
  bool on_disk = lstat(full, &st) == 0;
  git_tree_entry *te = NULL;
  if (git_tree_entry_bypath(&te, tree, path) < 0) {
    git_error_clear();
    *out = on_disk; /* new, unless it is gone again */
    return 0;
  }
  git_filemode_t mode = git_tree_entry_filemode(te);
  git_oid want = *git_tree_entry_id(te);
  git_tree_entry_free(te);
  if (!on_disk || mode == GIT_FILEMODE_COMMIT || mode == GIT_FILEMODE_TREE) {
    *out = true; /* deleted; a submodule (trust the diff); a directory in the tree */
    return 0;
  }
  git_oid got;
  if (mode == GIT_FILEMODE_LINK) {
    if (!S_ISLNK(st.st_mode)) {
      *out = true;
      return 0;
    }
    char target[PATH_MAX];
    ssize_t n = readlink(full, target, sizeof(target));
    if (n < 0)
      return ci_error_make(err, -errno, "cannot read link '%s': %s", path, strerror(errno));
    if (git_odb_hash(&got, target, (size_t)n, GIT_OBJECT_BLOB) < 0)
      return repo__git_error(err, "cannot hash '%s'", path);
  } else {
    if (!S_ISREG(st.st_mode) ||
        (filemode && ((st.st_mode & 0100) != 0) != (mode == GIT_FILEMODE_BLOB_EXECUTABLE))) {
      *out = true;
      return 0;
    }
    /* as git hashes it: with the path's filters (line endings) applied */
    if (git_repository_hashfile(&got, repo, full, GIT_OBJECT_BLOB, path) < 0)
      return repo__git_error(err, "cannot hash '%s'", path);
  }
  *out = !git_oid_equal(&got, &want);
  return 0;
}

int
repo_changed_files(const char *dir, const char *rev, enum repo_diff_kind kind, struct ci_strv *out,
                   struct ci_error **err)
{
  CLEANUP_LIBGIT2;
  cleanup_repo git_repository *repo = NULL;
  int ret = repo__open(dir, &repo, err);
  if (ret < 0)
    return ret;
  if (ret == 0)
    return ci_error_make(err, -ENOENT, "'%s' is not in a git repository", dir);
  if (git_repository_is_bare(repo))
    return ci_error_make(err, CI_EFAIL, "the git repository of '%s' has no work tree", dir);

  cleanup_object git_object *obj = NULL;
  cleanup_object git_object *tree = NULL;
  if (git_revparse_single(&obj, repo, rev) < 0)
    return repo__git_error(err, "bad revision '%s'", rev);
  if (git_object_peel(&tree, obj, GIT_OBJECT_COMMIT) < 0)
    return repo__git_error(err, "revision '%s' is not a commit", rev);
  git_object_free(obj);
  obj = steal_pointer(&tree);
  if (git_object_peel(&tree, obj, GIT_OBJECT_TREE) < 0)
    return repo__git_error(err, "cannot read the tree of revision '%s'", rev);

  git_diff_options opts;
  git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
  opts.flags = GIT_DIFF_INCLUDE_TYPECHANGE;
  /* A submodule changes when its checked-out commit does (upstream's submodule status). */
  opts.ignore_submodules = GIT_SUBMODULE_IGNORE_DIRTY;
  git_diff *diff = NULL;
  if (kind == REPO_DIFF_INDEX) {
    git_index *index = NULL;
    if (git_repository_index(&index, repo) < 0)
      return repo__git_error(err, "cannot read the index of '%s'", dir);
    ret = git_diff_tree_to_index(&diff, repo, (git_tree *)tree, index, &opts);
    git_index_free(index);
  } else {
    /* The index's stat cache finds the candidates quickly; differs_on_disk() then
     * keeps those whose content on disk differs from the tree (see below). */
    opts.flags |= GIT_DIFF_INCLUDE_UNTRACKED | GIT_DIFF_RECURSE_UNTRACKED_DIRS;
    ret = git_diff_tree_to_workdir_with_index(&diff, repo, (git_tree *)tree, &opts);
  }
  if (ret < 0)
    return repo__git_error(err, "cannot compare '%s' with revision '%s'", dir, rev);

  struct ci_strv paths = CI_STRV_INIT;
  bool filemode = kind == REPO_DIFF_WORKDIR && filemode_matters(repo);
  for (size_t i = 0, n = git_diff_num_deltas(diff); i < n && ret >= 0; i++) {
    const char *path = delta_path(git_diff_get_delta(diff, i));
    bool differs = path != NULL;
    if (differs && kind == REPO_DIFF_WORKDIR)
      ret = differs_on_disk(repo, (git_tree *)tree, path, filemode, &differs, err);
    if (differs)
      ci_strv_push(&paths, path);
  }
  if (ret < 0) {
    git_diff_free(diff);
    ci_strv_release(&paths);
    return ci_error_prefix(err, "comparing '%s' with revision '%s'", dir, rev);
  }
  git_diff_free(diff);

  if (paths.n > 1)
    qsort(paths.v, paths.n, sizeof(*paths.v), cmp_str);
  size_t n = 0;
  for (size_t i = 0; i < paths.n; i++) {
    if (n > 0 && strcmp(paths.v[n - 1], paths.v[i]) == 0)
      free(paths.v[i]);
    else
      paths.v[n++] = paths.v[i];
  }
  paths.n = n;
  ci_strv_release(out);
  *out = paths;
  return 0;
}

/* ---- ignore rules ---- */

/* A repository object with a work directory and nothing else: libgit2 then applies the
 * .gitignore files below it and the user's core.excludesFile. */
static int
open_workdir_only(const char *dir, git_repository **out, struct ci_error **err)
{
  git_repository *repo = NULL;
  if (git_repository_new(&repo) < 0)
    return repo__git_error(err, "cannot set up ignore rules for '%s'", dir);
  if (git_repository_set_workdir(repo, dir, 0) < 0) {
    git_repository_free(repo);
    return repo__git_error(err, "cannot set up ignore rules for '%s'", dir);
  }
  *out = repo;
  return 0;
}

int
repo__ignore_init(struct repo__ignore *ig, const char *project, struct ci_error **err)
{
  git_libgit2_init();
  cleanup_repo git_repository *repo = NULL;
  cleanup_free char *base = NULL;
  git_index *index = NULL;
  int ret = repo__open(project, &repo, err);
  if (ret > 0 && git_repository_workdir(repo)) {
    char wd[PATH_MAX];
    size_t plen = strlen(project);
    if (realpath(git_repository_workdir(repo), wd)) {
      size_t wlen = strlen(wd);
      if (strcmp(wd, "/") == 0)
        wlen = 0;
      if (strncmp(project, wd, wlen) == 0 && (project[wlen] == '/' || project[wlen] == '\0'))
        base = plen > wlen ? xasprintf("%s/", project + wlen + 1) : xstrdup("");
    }
    if (base && *base) {
      int ignored = 0;
      if (git_ignore_path_is_ignored(&ignored, repo, base) < 0) {
        ret = repo__git_error(err, "cannot read the ignore rules of '%s'", project);
      } else if (ignored) {
        ci_log_debug("'%s' is ignored by the repository at '%s': using its own ignore rules",
                     project, wd);
        free(steal_pointer(&base));
      }
    }
    if (ret >= 0 && base && git_repository_index(&index, repo) < 0)
      ret = repo__git_error(err, "cannot read the index of '%s'", wd);
  }
  if (ret >= 0 && !base) {
    git_repository_free(steal_pointer(&repo));
    ret = open_workdir_only(project, &repo, err);
    base = xstrdup("");
  }
  if (ret < 0) {
    git_index_free(index);
    git_libgit2_shutdown();
    return ci_error_prefix(err, "reading ignore rules");
  }
  ig->repo = steal_pointer(&repo);
  ig->index = index;
  ig->base = steal_pointer(&base);
  ci_buf_init(&ig->path);
  return 0;
}

/* Whether the index tracks ig->path (a file), or something below it (a directory). */
static bool
is_tracked(struct repo__ignore *ig, bool is_dir)
{
  size_t pos;
  if (!ig->index)
    return false;
  if (is_dir) {
    ci_buf_addc(&ig->path, '/');
    bool found = git_index_find_prefix(&pos, ig->index, ci_buf_str(&ig->path)) == 0;
    ig->path.s[--ig->path.len] = '\0';
    return found;
  }
  return git_index_find(&pos, ig->index, ci_buf_str(&ig->path)) == 0;
}

int
repo__ignore_check(struct repo__ignore *ig, const char *rel, bool is_dir, bool tracked_only,
                   enum repo__verdict *out, struct ci_error **err)
{
  ci_buf_reset(&ig->path);
  ci_buf_adds(&ig->path, ig->base);
  ci_buf_adds(&ig->path, rel);
  if (!tracked_only) {
    int ignored = 0;
    /* A trailing slash tells libgit2 that this is a directory without a stat(). */
    if (is_dir)
      ci_buf_addc(&ig->path, '/');
    int r = git_ignore_path_is_ignored(&ignored, ig->repo, ci_buf_str(&ig->path));
    if (is_dir)
      ig->path.s[--ig->path.len] = '\0';
    if (r < 0)
      return repo__git_error(err, "cannot check whether '%s' is ignored", rel);
    if (!ignored) {
      *out = REPO__KEEP;
      return 0;
    }
  }
  if (!is_tracked(ig, is_dir))
    *out = REPO__SKIP;
  else
    *out = is_dir ? REPO__TRACKED_ONLY : REPO__KEEP;
  git_error_clear();
  return 0;
}

void
repo__ignore_release(struct repo__ignore *ig)
{
  if (!ig->repo)
    return;
  git_index_free(ig->index);
  ig->index = NULL;
  git_repository_free(ig->repo);
  ig->repo = NULL;
  free(ig->base);
  ig->base = NULL;
  ci_buf_release(&ig->path);
  git_libgit2_shutdown();
}
