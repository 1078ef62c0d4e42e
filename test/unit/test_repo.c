/* Unit tests for runner/repo.h: git facts, changed files, and the project copy.
 *
 * Every test builds its trees and repositories (with libgit2) under one temporary
 * directory; HOME and XDG_CONFIG_HOME point into it, and GIT_CEILING_DIRECTORIES stops
 * repository discovery there, so the machine's git configuration plays no part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/repo.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <locale.h>
#include <git2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- scaffolding ---- */

static char *top;              /* the temporary directory of the whole run */
static struct ci_strv garbage; /* strings freed after each test */
static int seq;

/* A path below top (formatted); freed after the test. */
static const char *P(const char *fmt, ...) CI_PRINTF(1, 2);
static const char *
P(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *rel = xvasprintf(fmt, ap);
  va_end(ap);
  char *p = xasprintf("%s/%s", top, rel);
  free(rel);
  ci_strv_push_take(&garbage, p);
  return p;
}

/* A fresh directory for one test. */
static const char *
fresh(const char *what)
{
  const char *d = P("%s-%d", what, ++seq);
  assert_int_equal(mkdir(d, 0755), 0);
  return d;
}

static void
mkdirs(const char *path)
{
  char *p = xstrdup(path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      mkdir(p, 0755);
      *s = '/';
    }
  mkdir(p, 0755);
  free(p);
}

static void
put_bytes(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
  char *path = xasprintf("%s/%s", dir, rel);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  mkdirs(path);
  *slash = '/';
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
  free(path);
}

static void
put(const char *dir, const char *rel, const char *text)
{
  put_bytes(dir, rel, text, strlen(text), 0644);
}

static void
link_at(const char *dir, const char *rel, const char *target)
{
  char *path = xasprintf("%s/%s", dir, rel);
  assert_int_equal(symlink(target, path), 0);
  free(path);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int
chmod_dirs(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  if (flag == FTW_D || flag == FTW_DNR)
    chmod(path, 0755);
  return 0;
}

static void
rm_rf(const char *path)
{
  nftw(path, chmod_dirs, 16, FTW_PHYS);
  nftw(path, rm_one, 16, FTW_PHYS | FTW_DEPTH);
}

static int
teardown_test(void **state)
{
  ci_strv_release(&garbage);
  return 0;
}

static char *
slurp(const char *path)
{
  char *text = NULL;
  struct ci_error *err = NULL;
  if (ci_read_file(path, 1 << 24, &text, NULL, &err) < 0) {
    ci_error_free(&err);
    return NULL;
  }
  return text;
}

/* ---- libgit2 helpers ---- */

static git_signature *
sig(void)
{
  static git_signature *s;
  if (!s)
    assert_int_equal(git_signature_new(&s, "Test", "test@example.com", 1700000000, 0), 0);
  return s;
}

static git_repository *
g_init(const char *dir)
{
  git_repository *r = NULL;
  git_repository_init_options o;
  git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
  o.flags = GIT_REPOSITORY_INIT_MKPATH;
  o.initial_head = "main";
  assert_int_equal(git_repository_init_ext(&r, dir, &o), 0);
  return r;
}

/* Stage the work tree like `git add -A` (ignored files stay out), plus force-added paths. */
static void
g_stage(git_repository *r, const char *const *forced)
{
  git_index *idx = NULL;
  assert_int_equal(git_repository_index(&idx, r), 0);
  char *all = "*";
  git_strarray spec = {&all, 1};
  assert_int_equal(git_index_add_all(idx, &spec, GIT_INDEX_ADD_DEFAULT, NULL, NULL), 0);
  assert_int_equal(git_index_update_all(idx, &spec, NULL, NULL), 0);
  for (; forced && *forced; forced++)
    assert_int_equal(git_index_add_bypath(idx, *forced), 0);
  assert_int_equal(git_index_write(idx), 0);
  git_index_free(idx);
}

/* Commit the index on HEAD; *out = the new commit. */
static void
g_commit_index(git_repository *r, const char *msg, git_oid *out)
{
  git_index *idx = NULL;
  git_oid tree_id, id;
  git_tree *tree = NULL;
  assert_int_equal(git_repository_index(&idx, r), 0);
  assert_int_equal(git_index_write_tree(&tree_id, idx), 0);
  assert_int_equal(git_tree_lookup(&tree, r, &tree_id), 0);
  git_object *parent = NULL;
  int n = git_revparse_single(&parent, r, "HEAD") == 0 ? 1 : 0;
  const git_commit *parents[1] = {(const git_commit *)parent};
  assert_int_equal(
      git_commit_create(&id, r, "HEAD", sig(), sig(), NULL, msg, tree, (size_t)n, parents), 0);
  if (out)
    *out = id;
  git_object_free(parent);
  git_tree_free(tree);
  git_index_free(idx);
}

static void
g_commit(git_repository *r, const char *msg, git_oid *out)
{
  g_stage(r, NULL);
  g_commit_index(r, msg, out);
}

/* Set (value NULL: delete) a variable of r's configuration.  (Not git_remote_create():
 * libgit2 1.5 leaks in it.) */
static void
set_config(git_repository *r, const char *key, const char *value)
{
  git_config *cfg = NULL;
  assert_int_equal(git_repository_config(&cfg, r), 0);
  if (value)
    assert_int_equal(git_config_set_string(cfg, key, value), 0);
  else
    assert_int_equal(git_config_delete_entry(cfg, key), 0);
  git_config_free(cfg);
}

static git_object *
g_obj(git_repository *r, const char *spec)
{
  git_object *o = NULL;
  assert_int_equal(git_revparse_single(&o, r, spec), 0);
  return o;
}

static char *
hex(const git_oid *id)
{
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), id);
  char *s = xstrdup(buf);
  ci_strv_push_take(&garbage, s);
  return s;
}

/* ---- 1. facts ---- */

static void
test_facts_not_a_repo(void **state)
{
  const char *d = fresh("plain");
  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_null(err);
  assert_null(f.root);
  assert_null(f.branch);
  assert_null(f.change);
  assert_null(f.message);
  assert_null(f.tag);
  assert_null(f.clone_url);

  struct cfg_env env = CFG_ENV_INIT;
  cfg_env_set(&env, "KEEP", "1");
  assert_int_equal(repo_env_add(d, &env, &err), 0);
  assert_int_equal(env.n, 1);
  cfg_env_release(&env);
}

static void
test_facts_bad_dir(void **state)
{
  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;
  const char *missing = P("does-not-exist");
  assert_true(repo_facts_read(missing, &f, &err) < 0);
  assert_non_null(err);
  assert_int_equal(err->code, -ENOENT);
  assert_non_null(strstr(err->msg, missing));
  ci_error_free(&err);

  const char *d = fresh("file");
  put(d, "f", "x");
  assert_true(repo_facts_read(P("file-%d/f", seq), &f, &err) < 0);
  assert_int_equal(err->code, -ENOTDIR);
  ci_error_free(&err);
}

static void
test_facts_unborn(void **state)
{
  const char *d = fresh("unborn");
  git_repository *r = g_init(d);
  set_config(r, "remote.origin.url", "https://github.com/acme/rocket.git");

  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.root, d);
  assert_null(f.branch);
  assert_null(f.change);
  assert_null(f.message);
  assert_null(f.tag);
  /* as upstream: the remote facts come from the configuration, commits or not */
  assert_string_equal(f.full_name, "acme/rocket");
  repo_facts_release(&f);
  git_repository_free(r);
}

static void
test_facts_branch_commit_message(void **state)
{
  const char *d = fresh("facts");
  git_repository *r = g_init(d);
  put(d, "a", "1");
  git_oid first, second;
  g_commit(r, "first\n", &first);
  put(d, "a", "2");
  g_commit(r, "Subject line\n\nBody with\nseveral lines.\n", &second);

  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.branch, "main");
  assert_string_equal(f.change, hex(&second));
  assert_string_equal(f.message, "Subject line\n\nBody with\nseveral lines.\n");
  assert_null(f.tag);
  assert_null(f.clone_url);
  assert_null(f.owner);

  /* a branch with a slash, checked out */
  git_object *head = g_obj(r, "HEAD");
  git_reference *br = NULL;
  assert_int_equal(git_branch_create(&br, r, "feature/x", (git_commit *)head, 0), 0);
  assert_int_equal(git_repository_set_head(r, "refs/heads/feature/x"), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0); /* replaces the previous facts */
  assert_string_equal(f.branch, "feature/x");
  assert_string_equal(f.change, hex(&second));

  /* detached HEAD: no branch, the commit still */
  assert_int_equal(git_repository_set_head_detached(r, &first), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_null(f.branch);
  assert_string_equal(f.change, hex(&first));
  assert_string_equal(f.message, "first\n");

  /* from a subdirectory: the enclosing repository, like git */
  mkdirs(P("facts-%d/sub/deeper", seq));
  assert_int_equal(repo_facts_read(P("facts-%d/sub/deeper", seq), &f, &err), 0);
  assert_string_equal(f.root, d);
  assert_string_equal(f.change, hex(&first));

  repo_facts_release(&f);
  git_reference_free(br);
  git_object_free(head);
  git_repository_free(r);
}

static void
test_facts_tags(void **state)
{
  const char *d = fresh("tags");
  git_repository *r = g_init(d);
  put(d, "a", "1");
  git_oid old_id, head_id, tag_id, oid;
  g_commit(r, "old", &old_id);
  put(d, "a", "2");
  g_commit(r, "new", &head_id);
  git_object *old = NULL, *head = NULL;
  assert_int_equal(git_object_lookup(&old, r, &old_id, GIT_OBJECT_COMMIT), 0);
  assert_int_equal(git_object_lookup(&head, r, &head_id, GIT_OBJECT_COMMIT), 0);

  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;

  /* a tag elsewhere is not CIRRUS_TAG */
  assert_int_equal(git_tag_create_lightweight(&oid, r, "a-old", old, 0), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_null(f.tag);

  /* lightweight at HEAD */
  assert_int_equal(git_tag_create_lightweight(&oid, r, "v2", head, 0), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.tag, "v2");

  /* annotated at HEAD, sorting before v2: the first name wins */
  assert_int_equal(git_tag_create(&tag_id, r, "v1.0", head, sig(), "release 1.0", 0), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.tag, "v1.0");

  /* a tag of a tag of HEAD is peeled too; names with slashes are kept whole */
  git_object *tagobj = NULL;
  assert_int_equal(git_object_lookup(&tagobj, r, &tag_id, GIT_OBJECT_TAG), 0);
  assert_int_equal(git_tag_create(&oid, r, "release/1.0", tagobj, sig(), "nested", 0), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.tag, "release/1.0");

  /* a tag of a blob is disregarded, even if it sorts first */
  git_oid blob;
  assert_int_equal(git_blob_create_from_buffer(&blob, r, "x", 1), 0);
  git_object *blobobj = NULL;
  assert_int_equal(git_object_lookup(&blobobj, r, &blob, GIT_OBJECT_BLOB), 0);
  assert_int_equal(git_tag_create_lightweight(&oid, r, "0-blob", blobobj, 0), 0);
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_string_equal(f.tag, "release/1.0");

  /* the env */
  struct cfg_env env = CFG_ENV_INIT;
  cfg_env_set(&env, "CIRRUS_TAG", "stale");
  repo_facts_to_env(&f, &env);
  assert_string_equal(cfg_env_get(&env, "CIRRUS_TAG"), "release/1.0");
  assert_string_equal(cfg_env_get(&env, "CIRRUS_BRANCH"), "main");
  assert_string_equal(cfg_env_get(&env, "CIRRUS_CHANGE_IN_REPO"), hex(&head_id));
  assert_string_equal(cfg_env_get(&env, "CIRRUS_CHANGE_MESSAGE"), "new");
  assert_null(cfg_env_get(&env, "CIRRUS_REPO_NAME"));
  cfg_env_release(&env);

  repo_facts_release(&f);
  git_object_free(blobobj);
  git_object_free(tagobj);
  git_object_free(old);
  git_object_free(head);
  git_repository_free(r);
}

CI_TESTABLE bool repo_parse_github_url(const char *url, char **owner, char **name);

static void
test_github_url(void **state)
{
  static const struct {
    const char *url, *owner, *name;
  } cases[] = {
      {"https://github.com/cirruslabs/cirrus-cli", "cirruslabs", "cirrus-cli"},
      {"https://github.com/cirruslabs/cirrus-cli.git", "cirruslabs", "cirrus-cli"},
      {"git@github.com:cirruslabs/cirrus-cli.git", "cirruslabs", "cirrus-cli"},
      {"git@github.com:a/b", "a", "b"},
      {"https://github.com/a/b.c.git", "a", "b.c"},
      {"ssh://git@github.com/a/b.git", NULL, NULL},
      {"https://gitlab.com/a/b.git", NULL, NULL},
      {"http://github.com/a/b", NULL, NULL},
      {"https://github.com/a", NULL, NULL},
      {"https://github.com/a/b/c", NULL, NULL},
      {"https://github.com/a/b/", NULL, NULL},
      {"https://github.com//b", NULL, NULL},
      {"https://github.com/a/.git", NULL, NULL},
      {"", NULL, NULL},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++) {
    char *owner = NULL, *name = NULL;
    bool ok = repo_parse_github_url(cases[i].url, &owner, &name);
    if (!cases[i].owner) {
      if (ok)
        fail_msg("'%s' must not parse", cases[i].url);
      continue;
    }
    if (!ok)
      fail_msg("'%s' must parse", cases[i].url);
    assert_string_equal(owner, cases[i].owner);
    assert_string_equal(name, cases[i].name);
    free(owner);
    free(name);
  }
}

static void
test_facts_remote(void **state)
{
  const char *d = fresh("remote");
  git_repository *r = g_init(d);
  put(d, "a", "1");
  g_commit(r, "c", NULL);
  set_config(r, "remote.origin.url", "git@github.com:cirruslabs/cirrus-cli.git");

  struct cfg_env env = CFG_ENV_INIT;
  struct ci_error *err = NULL;
  assert_int_equal(repo_env_add(d, &env, &err), 0);
  assert_string_equal(cfg_env_get(&env, "CIRRUS_REPO_CLONE_URL"),
                      "git@github.com:cirruslabs/cirrus-cli.git");
  assert_string_equal(cfg_env_get(&env, "CIRRUS_REPO_OWNER"), "cirruslabs");
  assert_string_equal(cfg_env_get(&env, "CIRRUS_REPO_NAME"), "cirrus-cli");
  assert_string_equal(cfg_env_get(&env, "CIRRUS_REPO_FULL_NAME"), "cirruslabs/cirrus-cli");
  assert_null(cfg_env_get(&env, "CIRRUS_TAG"));
  cfg_env_release(&env);

  /* not GitHub: nothing */
  set_config(r, "remote.origin.url", "https://gitlab.com/acme/rocket.git");
  struct repo_facts f = REPO_FACTS_INIT;
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_null(f.clone_url);
  assert_null(f.owner);
  assert_null(f.name);
  assert_null(f.full_name);
  assert_non_null(f.change);

  /* a remote other than origin does not count */
  set_config(r, "remote.origin.url", NULL);
  set_config(r, "remote.upstream.url", "https://github.com/a/b");
  assert_int_equal(repo_facts_read(d, &f, &err), 0);
  assert_null(f.clone_url);
  repo_facts_release(&f);
  git_repository_free(r);
}

static void
test_facts_corrupt(void **state)
{
  const char *d = fresh("corrupt");
  git_repository *r = g_init(d);
  put(d, "a", "1");
  g_commit(r, "c", NULL);
  git_repository_free(r);

  struct repo_facts f = REPO_FACTS_INIT;
  struct ci_error *err = NULL;

  /* HEAD names a branch whose commit is missing */
  put(d, ".git/refs/heads/main", "0123456789012345678901234567890123456789\n");
  assert_true(repo_facts_read(d, &f, &err) < 0);
  assert_non_null(strstr(err->msg, "cannot read the commit at HEAD"));
  assert_non_null(strstr(err->msg, d));
  assert_null(f.change);
  ci_error_free(&err);

  /* HEAD is garbage */
  put(d, ".git/HEAD", "this is not a reference\n");
  assert_true(repo_facts_read(d, &f, &err) < 0);
  assert_non_null(strstr(err->msg, "HEAD"));
  ci_error_free(&err);

  /* an unreadable configuration */
  put(d, ".git/HEAD", "ref: refs/heads/main\n");
  put(d, ".git/config", "[core\n\tbroken = \"\n");
  assert_true(repo_facts_read(d, &f, &err) < 0);
  assert_non_null(err);
  ci_error_free(&err);
  assert_null(f.root);
}

/* ---- 2. changed files ---- */

static char *
joined(const struct ci_strv *v)
{
  struct ci_buf b = CI_BUF_INIT;
  for (size_t i = 0; i < v->n; i++)
    ci_buf_addf(&b, "%s%s", i ? " " : "", v->v[i]);
  char *s = ci_buf_take(&b);
  ci_strv_push_take(&garbage, s);
  return s;
}

static const char *
changed(const char *dir, const char *rev, enum repo_diff_kind kind)
{
  struct ci_strv v = CI_STRV_INIT;
  struct ci_error *err = NULL;
  if (repo_changed_files(dir, rev, kind, &v, &err) < 0)
    fail_msg("repo_changed_files: %s", err->msg);
  const char *s = joined(&v);
  ci_strv_release(&v);
  return s;
}

static void
test_changed_files(void **state)
{
  const char *d = fresh("diff");
  git_repository *r = g_init(d);
  put(d, ".gitignore", "*.log\n");
  put(d, "a", "a");
  put(d, "b", "b");
  put(d, "c", "c");
  put(d, "dir/x", "x");
  put(d, "revert", "r");
  put(d, "tracked.log", "t");
  put(d, "mode", "m");
  link_at(d, "ln", "a");
  link_at(d, "ln2", "b");
  const char *const forced[] = {"tracked.log", NULL};
  g_stage(r, forced);
  git_oid first;
  g_commit_index(r, "first", &first);

  /* clean: nothing */
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_WORKDIR), "");
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_INDEX), "");

  put(d, "a", "a2");                                /* modified */
  assert_int_equal(unlink(P("diff-%d/b", seq)), 0); /* deleted */
  put(d, "new/deep/n", "n");                        /* untracked, in a new directory */
  put(d, "ignored.log", "i");                       /* untracked and ignored */
  put(d, "tracked.log", "t2");                      /* tracked, matches *.log */
  put(d, "revert", "r2");                           /* modified then restored */
  put(d, "revert", "r");
  assert_int_equal(chmod(P("diff-%d/mode", seq), 0755), 0); /* mode only */
  assert_int_equal(unlink(P("diff-%d/ln", seq)), 0);
  link_at(d, "ln", "c"); /* a link with a new target (ln2 is untouched) */
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_WORKDIR), "a b ln mode new/deep/n tracked.log");
  /* nothing staged yet */
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_INDEX), "");

  /* stage a change to c and a new file, then change c back in the work tree */
  put(d, "c", "c2");
  put(d, "staged", "s");
  git_index *idx = NULL;
  assert_int_equal(git_repository_index(&idx, r), 0);
  assert_int_equal(git_index_add_bypath(idx, "c"), 0);
  assert_int_equal(git_index_add_bypath(idx, "staged"), 0);
  assert_int_equal(git_index_write(idx), 0);
  git_index_free(idx);
  put(d, "c", "c");
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_INDEX), "c staged");
  /* the work tree counts contents on disk: c is as committed */
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_WORKDIR),
                      "a b ln mode new/deep/n staged tracked.log");

  /* removed from the index but still on disk, unchanged: only the index differs */
  assert_int_equal(git_repository_index(&idx, r), 0);
  assert_int_equal(git_index_remove_bypath(idx, "dir/x"), 0);
  assert_int_equal(git_index_write(idx), 0);
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_INDEX), "c dir/x staged");
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_WORKDIR),
                      "a b ln mode new/deep/n staged tracked.log");
  assert_int_equal(git_index_add_bypath(idx, "dir/x"), 0);
  assert_int_equal(git_index_write(idx), 0);
  git_index_free(idx);

  /* against an older commit, by sha; from a subdirectory, paths stay root-relative */
  g_commit_index(r, "second", NULL);
  assert_string_equal(changed(d, hex(&first), REPO_DIFF_INDEX), "c staged");
  assert_string_equal(changed(P("diff-%d/dir", seq), "HEAD~1", REPO_DIFF_INDEX), "c staged");
  assert_string_equal(changed(d, "HEAD", REPO_DIFF_INDEX), "");
  git_repository_free(r);
}

static void
test_changed_files_errors(void **state)
{
  const char *d = fresh("diff-err");
  git_repository *r = g_init(d);
  put(d, "a", "a");
  g_commit(r, "first", NULL);
  struct ci_strv v = CI_STRV_INIT;
  ci_strv_push(&v, "untouched on failure");
  struct ci_error *err = NULL;

  assert_true(repo_changed_files(d, "nope", REPO_DIFF_WORKDIR, &v, &err) < 0);
  assert_true(ci_str_has_prefix(err->msg, "bad revision 'nope': "));
  ci_error_free(&err);
  assert_true(repo_changed_files(d, "HEAD~5", REPO_DIFF_INDEX, &v, &err) < 0);
  assert_true(ci_str_has_prefix(err->msg, "bad revision 'HEAD~5'"));
  ci_error_free(&err);
  assert_true(repo_changed_files(d, "HEAD^{tree}", REPO_DIFF_INDEX, &v, &err) < 0);
  assert_true(ci_str_has_prefix(err->msg, "revision 'HEAD^{tree}' is not a commit"));
  ci_error_free(&err);

  const char *plain = fresh("diff-plain");
  assert_true(repo_changed_files(plain, "HEAD", REPO_DIFF_WORKDIR, &v, &err) < 0);
  assert_non_null(strstr(err->msg, "is not in a git repository"));
  assert_non_null(strstr(err->msg, plain));
  ci_error_free(&err);

  assert_int_equal(v.n, 1);
  assert_string_equal(v.v[0], "untouched on failure");
  ci_strv_release(&v);
  git_repository_free(r);
}

/* ---- 3. the copy ---- */

struct entry {
  char *name;
  mode_t type, perm;
  int64_t uid, gid, size;
  time_t mtime;
  char *data; /* files */
  char *link; /* symlinks */
};

struct listing {
  struct entry *v;
  size_t n, alloc;
};

static void
listing_release(struct listing *l)
{
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
    free(l->v[i].data);
    free(l->v[i].link);
  }
  free(l->v);
  memset(l, 0, sizeof(*l));
}

/* The entry called name, or NULL. */
static const struct entry *
lookup(const struct listing *l, const char *name)
{
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].name, name) == 0)
      return &l->v[i];
  return NULL;
}

/* The entry called name; fails the test when there is none. */
static const struct entry *
find(const struct listing *l, const char *name)
{
  const struct entry *e = lookup(l, name);
  if (!e)
    fail_msg("no entry '%s'", name);
  return e;
}

static int
cmp_line(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "name" per file, "name/" per directory, "name -> target" per link; sorted, one per line.
 * Entries under skip_prefix (e.g. ".git/") are left out; strip is removed from names. */
static const char *
describe(const struct listing *l, const char *strip, const char *skip_prefix)
{
  struct ci_strv lines = CI_STRV_INIT;
  for (size_t i = 0; i < l->n; i++) {
    const struct entry *e = &l->v[i];
    const char *n = e->name;
    if (strip && ci_str_has_prefix(n, strip))
      n += strlen(strip);
    if (!*n || strcmp(n, "./") == 0)
      continue; /* the root */
    if (skip_prefix && ci_str_has_prefix(n, skip_prefix))
      continue;
    if (e->type == S_IFLNK)
      ci_strv_push_take(&lines, xasprintf("%s -> %s", n, e->link));
    else
      ci_strv_push(&lines, n);
  }
  qsort(lines.v, lines.n, sizeof(*lines.v), cmp_line);
  struct ci_buf b = CI_BUF_INIT;
  for (size_t i = 0; i < lines.n; i++)
    ci_buf_addf(&b, "%s\n", lines.v[i]);
  ci_strv_release(&lines);
  char *s = ci_buf_take(&b);
  ci_strv_push_take(&garbage, s);
  return s;
}

static void
read_tar(const void *buf, size_t len, struct listing *out)
{
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  assert_int_equal(archive_read_open_memory(a, buf, len), ARCHIVE_OK);
  struct archive_entry *e;
  int r;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    CI_GROW(out->v, out->alloc, out->n + 1);
    struct entry *x = &out->v[out->n++];
    memset(x, 0, sizeof(*x));
    x->name = xstrdup(archive_entry_pathname(e));
    x->type = archive_entry_filetype(e);
    x->perm = archive_entry_perm(e);
    x->uid = archive_entry_uid(e);
    x->gid = archive_entry_gid(e);
    x->size = archive_entry_size(e);
    x->mtime = archive_entry_mtime(e);
    const char *uname = archive_entry_uname(e), *gname = archive_entry_gname(e);
    assert_true(!uname || !*uname); /* numeric ownership only */
    assert_true(!gname || !*gname);
    if (archive_entry_symlink(e))
      x->link = xstrdup(archive_entry_symlink(e));
    x->data = xmalloc((size_t)x->size + 1);
    la_ssize_t n = archive_read_data(a, x->data, (size_t)x->size);
    assert_int_equal(n, x->size);
    x->data[x->size] = '\0';
  }
  if (r != ARCHIVE_EOF)
    fail_msg("bad archive: %s", archive_error_string(a));
  archive_read_free(a);
}

static int
collect(const void *buf, size_t len, void *data, struct ci_error **err)
{
  ci_buf_add(data, buf, len);
  return 0;
}

/* Archive project (with prefix) into a listing; fails the test on error. */
static void
tar_listing(const char *project, const char *prefix, struct listing *out,
            struct repo_copy_stats *st)
{
  struct ci_buf b = CI_BUF_INIT;
  struct ci_error *err = NULL;
  struct repo_copy_opts o = {.prefix = prefix};
  if (repo_tar_write(project, &o, collect, &b, st, &err) < 0)
    fail_msg("repo_tar_write: %s", err->msg);
  assert_int_equal(b.len % 512, 0);
  if (st)
    assert_int_equal(st->out_bytes, b.len);
  read_tar(b.s, b.len, out);
  ci_buf_release(&b);
}

static int dir_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static struct listing *dir_out;
static size_t dir_strip;

/* List a directory tree the same way (names relative to it, dirs with a slash). */
static void
dir_listing(const char *dir, struct listing *out)
{
  dir_out = out;
  dir_strip = strlen(dir) + 1;
  assert_int_equal(nftw(dir, dir_entry, 16, FTW_PHYS), 0);
}

static int
dir_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  struct listing *out = dir_out;
  CI_GROW(out->v, out->alloc, out->n + 1);
  struct entry *x = &out->v[out->n++];
  memset(x, 0, sizeof(*x));
  const char *rel = strlen(path) >= dir_strip ? path + dir_strip : "";
  x->name = S_ISDIR(st->st_mode) && *rel ? xasprintf("%s/", rel) : xstrdup(rel);
  x->type = st->st_mode & S_IFMT;
  x->perm = st->st_mode & 07777;
  x->uid = st->st_uid;
  x->gid = st->st_gid;
  x->size = st->st_size;
  x->mtime = st->st_mtime;
  if (S_ISLNK(st->st_mode)) {
    char buf[4096];
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    x->link = xstrdup(buf);
  } else if (S_ISREG(st->st_mode)) {
    x->data = slurp(path);
  }
  return 0;
}

enum { BIN_SIZE = 300000 };

/* The tree of most copy tests.  git: make it a repository with some tracked files under
 * ignored paths.  Returns the expected listing (see describe()). */
static const char *
make_tree(const char *d, bool git)
{
  git_repository *r = git ? g_init(d) : NULL;
  put(d, ".gitignore", "*.log\n!keep.log\n/build\nignored_dir/\n");
  put(d, "a.log", "ignored by *.log");
  put(d, "keep.log", "negated by !keep.log");
  put(d, "build/out.o", "ignored: /build is anchored here");
  put(d, "sub/build/x.o", "kept: /build is anchored at the top only");
  put(d, "ignored_dir/f", "ignored with its directory");
  put(d, "local.txt", "kept: sub/.gitignore applies below sub only");
  put(d, "sub/.gitignore", "local.txt\n");
  put(d, "sub/local.txt", "ignored");
  put(d, "sub/deep/local.txt", "ignored at any depth below sub");
  put(d, "sub/deep/keep.c", "kept");
  put(d, "sub/deep/x.log", "ignored by the top .gitignore");
  put(d, "z.globalignored", "ignored by the user's core.excludesFile");
  put_bytes(d, "src/main.c", "int main(void) { return 0; }\n", 29, 0755);
  char *bin = xmalloc(BIN_SIZE);
  for (size_t i = 0; i < BIN_SIZE; i++)
    bin[i] = (char)(i * 7 % 251);
  put_bytes(d, "src/data.bin", bin, BIN_SIZE, 0640);
  free(bin);
  put_bytes(d, "src/setuid", "#!/bin/sh\n", 10, 04755);
  link_at(d, "link_in", "src/main.c");
  link_at(d, "link_out", "/etc/passwd");
  link_at(d, "link_dir", "src");
  link_at(d, "dangling", "does/not/exist");
  assert_int_equal(mkfifo(P("%s/fifo", d + strlen(top) + 1), 0644), 0);
  assert_int_equal(mkdir(P("%s/empty", d + strlen(top) + 1), 0700), 0);
  put_bytes(d, "ro/f", "read-only", 9, 0444);
  assert_int_equal(chmod(P("%s/ro", d + strlen(top) + 1), 0555), 0);
  struct timespec ts[2] = {{1600000000, 0}, {1600000000, 0}};
  assert_int_equal(utimensat(AT_FDCWD, P("%s/src/main.c", d + strlen(top) + 1), ts, 0), 0);

  const char *expected = ".gitignore\n"
                         "dangling -> does/not/exist\n"
                         "empty/\n"
                         "keep.log\n"
                         "link_dir -> src\n"
                         "link_in -> src/main.c\n"
                         "link_out -> /etc/passwd\n"
                         "local.txt\n"
                         "ro/\n"
                         "ro/f\n"
                         "src/\n"
                         "src/data.bin\n"
                         "src/main.c\n"
                         "src/setuid\n"
                         "sub/\n"
                         "sub/.gitignore\n"
                         "sub/build/\n"
                         "sub/build/x.o\n"
                         "sub/deep/\n"
                         "sub/deep/keep.c\n";
  if (git) {
    /* .git is copied whole, ignore rules or not */
    put(d, ".git/extra.log", "inside .git");
    /* tracked files are copied even where ignore rules say otherwise */
    put(d, "build/keep/tracked.o", "tracked below an ignored directory");
    put(d, "forced.log", "tracked despite *.log");
    const char *const forced[] = {"build/keep/tracked.o", "forced.log", NULL};
    g_stage(r, forced);
    git_repository_free(r);
    expected = ".gitignore\n"
               "build/\n"
               "build/keep/\n"
               "build/keep/tracked.o\n"
               "dangling -> does/not/exist\n"
               "empty/\n"
               "forced.log\n"
               "keep.log\n"
               "link_dir -> src\n"
               "link_in -> src/main.c\n"
               "link_out -> /etc/passwd\n"
               "local.txt\n"
               "ro/\n"
               "ro/f\n"
               "src/\n"
               "src/data.bin\n"
               "src/main.c\n"
               "src/setuid\n"
               "sub/\n"
               "sub/.gitignore\n"
               "sub/build/\n"
               "sub/build/x.o\n"
               "sub/deep/\n"
               "sub/deep/keep.c\n";
  }
  return expected;
}

/* What every copy of make_tree() must hold, whatever the container (names relative). */
static void
check_entries(const struct listing *l, const char *pre, bool archive)
{
  char name[256];
#define E(rel) (snprintf(name, sizeof(name), "%s%s", pre, rel), find(l, name))
  const struct entry *e = E("src/main.c");
  assert_non_null(e);
  assert_int_equal(e->type, S_IFREG);
  assert_int_equal(e->perm, 0755);
  assert_int_equal(e->size, 29);
  assert_string_equal(e->data, "int main(void) { return 0; }\n");
  assert_int_equal(e->mtime, 1600000000);

  e = E("src/data.bin");
  assert_non_null(e);
  assert_int_equal(e->perm, 0640);
  assert_int_equal(e->size, BIN_SIZE);
  for (size_t i = 0; i < BIN_SIZE; i++)
    if (e->data[i] != (char)(i * 7 % 251))
      fail_msg("data.bin differs at byte %zu", i);

  assert_int_equal(E("src/setuid")->perm, 0755); /* setuid dropped */
  assert_int_equal(E("ro/")->perm, 0555);
  assert_int_equal(E("ro/f")->perm, 0444);
  assert_int_equal(E("empty/")->perm, 0700);
  assert_int_equal(E("empty/")->type, S_IFDIR);

  e = E("link_out");
  assert_int_equal(e->type, S_IFLNK);
  assert_string_equal(e->link, "/etc/passwd"); /* a link, never the file behind it */
  assert_int_equal(E("link_dir")->type, S_IFLNK);
  snprintf(name, sizeof(name), "%slink_dir/main.c", pre);
  assert_null(lookup(l, name));
  snprintf(name, sizeof(name), "%sfifo", pre);
  assert_null(lookup(l, name));

  if (archive)
    for (size_t i = 0; i < l->n; i++) {
      assert_int_equal(l->v[i].uid, 0);
      assert_int_equal(l->v[i].gid, 0);
    }
#undef E
}

static void
test_tar_not_a_repo(void **state)
{
  const char *d = fresh("tar-plain");
  const char *expected = make_tree(d, false);
  struct listing l = {0};
  struct repo_copy_stats st;
  tar_listing(d, NULL, &l, &st);
  assert_string_equal(describe(&l, NULL, NULL), expected);
  check_entries(&l, "", true);
  const struct entry *root = find(&l, "./");
  assert_non_null(root);
  assert_int_equal(root->type, S_IFDIR);
  assert_int_equal(root->perm, 0755);

  assert_int_equal(st.files, 10);
  assert_int_equal(st.dirs, 7); /* root, empty, ro, src, sub, sub/build, sub/deep */
  assert_int_equal(st.symlinks, 4);
  assert_int_equal(st.skipped, 1); /* the FIFO */
  /* a.log build ignored_dir sub/local.txt sub/deep/local.txt sub/deep/x.log
   * z.globalignored */
  assert_int_equal(st.ignored, 7);
  uint64_t bytes = 0;
  for (size_t i = 0; i < l.n; i++)
    if (l.v[i].type == S_IFREG)
      bytes += (uint64_t)l.v[i].size;
  assert_int_equal(st.bytes, bytes);
  listing_release(&l);
}

static void
test_tar_repo_with_prefix(void **state)
{
  const char *d = fresh("tar-git");
  const char *expected = make_tree(d, true);
  struct listing l = {0};
  const char *pre = "tmp/cirrus-ci/working-dir/";
  tar_listing(d, "/tmp/cirrus-ci/working-dir/", &l, NULL);
  /* every entry below the prefix; the root is the prefix itself, 0755 */
  for (size_t i = 0; i < l.n; i++)
    if (!ci_str_has_prefix(l.v[i].name, pre))
      fail_msg("'%s' is outside the prefix", l.v[i].name);
  const struct entry *root = find(&l, pre);
  assert_non_null(root);
  assert_int_equal(root->type, S_IFDIR);
  assert_int_equal(root->perm, 0755);
  assert_null(lookup(&l, "tmp/"));
  assert_string_equal(describe(&l, pre, ".git/"), expected);
  check_entries(&l, pre, true);
  /* .git is there, ignore rules or not */
  assert_non_null(find(&l, "tmp/cirrus-ci/working-dir/.git/"));
  assert_non_null(find(&l, "tmp/cirrus-ci/working-dir/.git/HEAD"));
  assert_non_null(find(&l, "tmp/cirrus-ci/working-dir/.git/index"));
  assert_string_equal(find(&l, "tmp/cirrus-ci/working-dir/.git/extra.log")->data, "inside .git");
  listing_release(&l);

  /* the archive is in walk order (names sorted per directory) and reproducible */
  struct ci_buf a = CI_BUF_INIT, b = CI_BUF_INIT;
  struct ci_error *err = NULL;
  struct repo_copy_opts o = {.prefix = "w"};
  assert_int_equal(repo_tar_write(d, &o, collect, &a, NULL, &err), 0);
  assert_int_equal(repo_tar_write(d, &o, collect, &b, NULL, &err), 0);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.s, b.s, a.len);
  read_tar(a.s, a.len, &l);
  assert_string_equal(l.v[0].name, "w/");
  assert_string_equal(l.v[1].name, "w/.git/");
  const struct entry *src = find(&l, "w/src/");
  assert_string_equal(src[1].name, "w/src/data.bin");
  assert_string_equal(src[2].name, "w/src/main.c");
  assert_string_equal(src[3].name, "w/src/setuid");
  assert_string_equal(src[4].name, "w/sub/");
  listing_release(&l);
  ci_buf_release(&a);
  ci_buf_release(&b);
}

static void
test_copy_enclosing_repo(void **state)
{
  const char *outer = fresh("outer");
  git_repository *r = g_init(outer);
  git_repository_free(r);
  put(outer, ".gitignore", "*.tmp\n/proj/anchored\n");
  put(outer, ".git/info/exclude", "info_excluded\n");
  put(outer, "proj/x.tmp", "ignored by the outer .gitignore");
  put(outer, "proj/anchored", "ignored by an outer pattern anchored at the top");
  put(outer, "proj/sub/anchored", "kept");
  put(outer, "proj/info_excluded", "ignored by .git/info/exclude, as git does");
  put(outer, "proj/z.globalignored", "ignored by the user's core.excludesFile");
  put(outer, "proj/y", "kept");

  struct listing l = {0};
  tar_listing(P("outer-%d/proj", seq), "", &l, NULL);
  assert_string_equal(describe(&l, NULL, NULL), "sub/\nsub/anchored\ny\n");
  listing_release(&l);

  /* a project that the enclosing repository ignores is a tree of its own */
  put(outer, ".gitignore", "gen/\n");
  put(outer, "gen/proj/.gitignore", "*.o\n");
  put(outer, "gen/proj/a.c", "kept");
  put(outer, "gen/proj/a.o", "ignored by its own rules");
  tar_listing(P("outer-%d/gen/proj", seq), "", &l, NULL);
  assert_string_equal(describe(&l, NULL, NULL), ".gitignore\na.c\n");
  listing_release(&l);
}

static void
test_copy_dir(void **state)
{
  const char *d = fresh("copy-src");
  const char *expected = make_tree(d, false);
  const char *dest = P("copy-dest-%d", seq);
  struct repo_copy_stats st;
  struct ci_error *err = NULL;
  if (repo_copy_dir(d, dest, NULL, &st, &err) < 0)
    fail_msg("repo_copy_dir: %s", err->msg);
  struct listing l = {0};
  dir_listing(dest, &l);
  assert_string_equal(describe(&l, NULL, NULL), expected);
  check_entries(&l, "", false);
  const struct entry *root = find(&l, "");
  assert_int_equal(root->perm, 0755);
  assert_int_equal(st.files, 10);
  assert_int_equal(st.dirs, 7);
  assert_int_equal(st.symlinks, 4);
  assert_int_equal(st.skipped, 1);
  assert_int_equal(st.ignored, 7);
  assert_int_equal(st.out_bytes, 0);
  /* link mtimes too */
  struct stat a, b;
  assert_int_equal(lstat(P("copy-src-%d/link_out", seq), &a), 0);
  assert_int_equal(lstat(P("copy-dest-%d/link_out", seq), &b), 0);
  assert_int_equal(a.st_mtime, b.st_mtime);
  listing_release(&l);

  /* the source is untouched: same listing as a fresh archive of it */
  tar_listing(d, NULL, &l, NULL);
  assert_string_equal(describe(&l, NULL, NULL), expected);
  listing_release(&l);

  /* existing entries are never replaced */
  assert_true(repo_copy_dir(d, dest, NULL, NULL, &err) < 0);
  assert_int_equal(err->code, -EEXIST);
  char *want = xasprintf("cannot copy '.gitignore' to '%s/.gitignore': File exists", dest);
  assert_non_null(strstr(err->msg, want));
  free(want);
  ci_error_free(&err);

  /* a destination inside the project is not copied into itself */
  const char *inner = P("copy-src-%d/sub/out", seq);
  assert_int_equal(repo_copy_dir(d, inner, NULL, &st, &err), 0);
  assert_int_equal(st.files, 10);
  struct stat x;
  assert_int_equal(lstat(P("copy-src-%d/sub/out/sub/deep/keep.c", seq), &x), 0);
  assert_int_equal(lstat(P("copy-src-%d/sub/out/sub/out", seq), &x), -1);
  assert_int_equal(errno, ENOENT);
}

static void
test_copy_dir_symlinked_dest_entries(void **state)
{
  /* a destination that already holds a link to the outside: never written through */
  const char *d = fresh("swap-src");
  put(d, "victim", "from the project");
  const char *dest = fresh("swap-dest");
  const char *outside = fresh("swap-outside");
  char *target = xasprintf("%s/victim", outside);
  link_at(dest, "victim", target);
  struct ci_error *err = NULL;
  assert_true(repo_copy_dir(d, dest, NULL, NULL, &err) < 0);
  assert_int_equal(err->code, -EEXIST);
  ci_error_free(&err);
  struct stat st;
  assert_int_equal(stat(target, &st), -1);
  free(target);
}

static bool
contains(const struct ci_buf *b, const char *needle)
{
  return memmem(b->s, b->len, needle, strlen(needle)) != NULL;
}

static void
test_names(void **state)
{
  const char *d = fresh("names");
  char longname[201];
  memset(longname, 'n', 200);
  longname[200] = '\0';
  char *deep = xasprintf("%s/%s/f", longname, longname);
  put(d, deep, "deep");
  put(d, "ünïcødé ✓.txt", "utf-8");
  put(d, "with space/and\ttab", "odd");
  /* a long UTF-8 name goes into a pax record */
  put(d, "üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüü/x", "long");
  struct listing l = {0};
  tar_listing(d, "p", &l, NULL);
  char *want = xasprintf("p/%s", deep);
  assert_string_equal(find(&l, want)->data, "deep");
  assert_string_equal(find(&l, "p/ünïcødé ✓.txt")->data, "utf-8");
  assert_string_equal(find(&l, "p/with space/and\ttab")->data, "odd");
  assert_string_equal(
      find(&l, "p/üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüü/x")->data,
      "long");
  listing_release(&l);

  /* UTF-8 names need no charset marker, whatever the caller's locale (C here) */
  struct ci_buf b = CI_BUF_INIT;
  struct ci_error *err = NULL;
  locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  assert_non_null(c);
  locale_t old = uselocale(c);
  assert_int_equal(repo_tar_write(d, NULL, collect, &b, NULL, &err), 0);
  uselocale(old);
  freelocale(c);
  assert_true(contains(&b, "path=üüü"));
  assert_false(contains(&b, "hdrcharset"));
  ci_buf_release(&b);

  /* a name that is not UTF-8 goes as raw bytes, marked as such */
  put(d, "bad\xff\xfe", "bytes");
  assert_int_equal(repo_tar_write(d, NULL, collect, &b, NULL, &err), 0);
  assert_true(contains(&b, "hdrcharset=BINARY"));
  read_tar(b.s, b.len, &l);
  assert_string_equal(find(&l, "bad\xff\xfe")->data, "bytes");
  listing_release(&l);
  ci_buf_release(&b);
  free(want);
  free(deep);
}

static void
test_empty_project(void **state)
{
  const char *d = fresh("empty");
  struct listing l = {0};
  struct repo_copy_stats st;
  tar_listing(d, "x/y", &l, &st);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].name, "x/y/");
  assert_int_equal(st.dirs, 1);
  assert_int_equal(st.files, 0);
  listing_release(&l);
}

static void
test_bind_mount_loop(void **state)
{
  const char *d = fresh("loop");
  put(d, "a", "a");
  mkdirs(P("loop-%d/sub/loop", seq));
  const char *loop = P("loop-%d/sub/loop", seq);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* In a private mount namespace, so nothing leaks out of this child. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(d, loop, NULL, MS_BIND, NULL) < 0)
      _exit(77);
    struct ci_buf b = CI_BUF_INIT;
    struct ci_error *err = NULL;
    int ret = repo_tar_write(d, NULL, collect, &b, NULL, &err);
    bool ok = ret == -ELOOP && strstr(err->msg, "directory 'sub/loop' contains itself");
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77)
    skip(); /* no mount namespace for us (not root, no user namespaces) */
  assert_int_equal(WEXITSTATUS(status), 0);
}

struct pipe_reader {
  int fd;
  struct ci_buf got;
};

static void *
read_slowly(void *arg)
{
  struct pipe_reader *pr = arg;
  char buf[4096];
  ssize_t n;
  while ((n = read(pr->fd, buf, sizeof(buf))) > 0) {
    ci_buf_add(&pr->got, buf, (size_t)n);
    if (pr->got.len % 65536 < 4096)
      usleep(1000);
  }
  return NULL;
}

static void
test_tar_fd(void **state)
{
  const char *d = fresh("tar-fd");
  const char *expected = make_tree(d, false);

  /* a non-blocking pipe with a slow reader: every byte arrives */
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
  struct pipe_reader pr = {.fd = p[0], .got = CI_BUF_INIT};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, read_slowly, &pr), 0);
  struct repo_copy_stats st;
  struct ci_error *err = NULL;
  if (repo_tar_fd(d, NULL, p[1], &st, &err) < 0)
    fail_msg("repo_tar_fd: %s", err->msg);
  close(p[1]);
  pthread_join(th, NULL);
  close(p[0]);
  assert_int_equal(pr.got.len, st.out_bytes);
  struct listing l = {0};
  read_tar(pr.got.s, pr.got.len, &l);
  assert_string_equal(describe(&l, NULL, NULL), expected);
  listing_release(&l);
  ci_buf_release(&pr.got);

  /* an archive written into the project leaves itself out */
  const char *self = P("tar-fd-%d/src/self.tar", seq);
  int fd = open(self, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(repo_tar_fd(d, NULL, fd, &st, &err), 0);
  close(fd);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(ci_read_file(self, 1 << 24, &text, &len, &err), 0);
  read_tar(text, len, &l);
  assert_string_equal(describe(&l, NULL, NULL), expected);
  listing_release(&l);
  free(text);
}

struct failing {
  size_t budget; /* bytes accepted before failing */
  size_t calls_after;
  bool failed;
};

static int
fail_after(const void *buf, size_t len, void *data, struct ci_error **err)
{
  struct failing *f = data;
  if (f->failed) {
    f->calls_after++;
    return ci_error_make(err, -EIO, "called after failing");
  }
  if (len > f->budget) {
    f->failed = true;
    return ci_error_make(err, -ENOSPC, "disk full");
  }
  f->budget -= len;
  return 0;
}

static void
test_tar_errors(void **state)
{
  const char *d = fresh("tar-err");
  make_tree(d, false);
  struct ci_error *err = NULL;

  /* the writer fails: its error comes back with the path; nothing is written after */
  struct failing f = {.budget = 100000};
  assert_true(repo_tar_write(d, NULL, fail_after, &f, NULL, &err) < 0);
  assert_int_equal(err->code, -ENOSPC);
  assert_non_null(strstr(err->msg, "cannot archive 'src/data.bin': disk full"));
  assert_non_null(strstr(err->msg, d));
  assert_int_equal(f.calls_after, 0);
  ci_error_free(&err);

  /* a full device */
  int fd = open("/dev/full", O_WRONLY);
  if (fd >= 0) {
    assert_true(repo_tar_fd(d, NULL, fd, NULL, &err) < 0);
    assert_int_equal(err->code, -ENOSPC);
    assert_non_null(strstr(err->msg, "No space left on device"));
    ci_error_free(&err);
    close(fd);
  }

  /* a closed pipe */
  int p[2];
  assert_int_equal(pipe(p), 0);
  close(p[0]);
  signal(SIGPIPE, SIG_IGN);
  assert_true(repo_tar_fd(d, NULL, p[1], NULL, &err) < 0);
  assert_int_equal(err->code, -EPIPE);
  ci_error_free(&err);
  close(p[1]);

  /* bad prefixes */
  struct ci_buf b = CI_BUF_INIT;
  struct repo_copy_opts o = {.prefix = "a/../b"};
  assert_int_equal(repo_tar_write(d, &o, collect, &b, NULL, &err), -EINVAL);
  assert_non_null(strstr(err->msg, "'a/../b'"));
  ci_error_free(&err);
  o.prefix = "./a";
  assert_int_equal(repo_tar_write(d, &o, collect, &b, NULL, &err), -EINVAL);
  ci_error_free(&err);
  assert_int_equal(b.len, 0);

  /* a missing project, a file as project */
  const char *missing = P("tar-err-missing");
  assert_int_equal(repo_tar_write(missing, NULL, collect, &b, NULL, &err), -ENOENT);
  assert_non_null(strstr(err->msg, missing));
  ci_error_free(&err);
  assert_int_equal(repo_tar_write(P("tar-err-%d/local.txt", seq), NULL, collect, &b, NULL, &err),
                   -ENOTDIR);
  ci_error_free(&err);

  /* canceled */
  atomic_bool cancel = true;
  o = (struct repo_copy_opts){.cancel = &cancel};
  assert_int_equal(repo_tar_write(d, &o, collect, &b, NULL, &err), CI_ECANCELED);
  ci_error_free(&err);
  ci_buf_release(&b);

  /* unreadable content (only meaningful when permissions apply to us) */
  if (geteuid() != 0) {
    put_bytes(d, "secret", "s", 1, 0000);
    assert_true(repo_tar_write(d, NULL, collect, &b, NULL, &err) < 0);
    assert_non_null(strstr(err->msg, "cannot open 'secret': Permission denied"));
    ci_error_free(&err);
    ci_buf_release(&b);
  }
}

static void
test_copy_dir_errors(void **state)
{
  const char *d = fresh("copy-err");
  make_tree(d, false);
  struct ci_error *err = NULL;

  /* a write fails midway (the file size limit stands in for a full disk) */
  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = 100000;
  signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  const char *dest = P("copy-err-dest-%d", seq);
  int ret = repo_copy_dir(d, dest, NULL, NULL, &err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  assert_true(ret < 0);
  assert_int_equal(err->code, -EFBIG);
  char *want = xasprintf("cannot copy 'src/data.bin' to '%s/src/data.bin': File too large", dest);
  assert_non_null(strstr(err->msg, want));
  free(want);
  ci_error_free(&err);

  /* no parent for the destination; a file as destination */
  assert_int_equal(repo_copy_dir(d, P("copy-err-none/a/b"), NULL, NULL, &err), -ENOENT);
  assert_non_null(strstr(err->msg, "cannot create"));
  ci_error_free(&err);
  assert_int_equal(repo_copy_dir(d, P("copy-err-%d/local.txt", seq), NULL, NULL, &err), -ENOTDIR);
  ci_error_free(&err);

  /* canceled */
  atomic_bool cancel = true;
  struct repo_copy_opts o = {.cancel = &cancel};
  assert_int_equal(repo_copy_dir(d, P("copy-err-cancel-%d", seq), &o, NULL, &err), CI_ECANCELED);
  ci_error_free(&err);
}

/* ---- main ---- */

int
main(void)
{
  char tmpl[] = "/tmp/cirrus-test-repo.XXXXXX";
  top = mkdtemp(tmpl);
  if (!top)
    return 1;
  /* Hermetic git: no user configuration, no discovery above top. */
  char *home = xasprintf("%s/home", top);
  char *xdg = xasprintf("%s/home/.config", top);
  char *ignore = xasprintf("%s/home/.config/git/ignore", top);
  mkdirs(xdg);
  mkdirs(ignore);
  rmdir(ignore);
  setenv("HOME", home, 1);
  setenv("XDG_CONFIG_HOME", xdg, 1);
  setenv("GIT_CEILING_DIRECTORIES", top, 1);
  unsetenv("GIT_DIR");
  unsetenv("GIT_WORK_TREE");
  FILE *f = fopen(ignore, "w");
  fputs("*.globalignored\n", f);
  fclose(f);
  git_libgit2_init();
  /* The tests read archives as a UTF-8 user would; the library itself must not depend on
   * the locale (it runs in the C locale until here). */
  setlocale(LC_CTYPE, "C.UTF-8");

  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_facts_not_a_repo, teardown_test),
      cmocka_unit_test_teardown(test_facts_bad_dir, teardown_test),
      cmocka_unit_test_teardown(test_facts_unborn, teardown_test),
      cmocka_unit_test_teardown(test_facts_branch_commit_message, teardown_test),
      cmocka_unit_test_teardown(test_facts_tags, teardown_test),
      cmocka_unit_test_teardown(test_github_url, teardown_test),
      cmocka_unit_test_teardown(test_facts_remote, teardown_test),
      cmocka_unit_test_teardown(test_facts_corrupt, teardown_test),
      cmocka_unit_test_teardown(test_changed_files, teardown_test),
      cmocka_unit_test_teardown(test_changed_files_errors, teardown_test),
      cmocka_unit_test_teardown(test_tar_not_a_repo, teardown_test),
      cmocka_unit_test_teardown(test_tar_repo_with_prefix, teardown_test),
      cmocka_unit_test_teardown(test_copy_enclosing_repo, teardown_test),
      cmocka_unit_test_teardown(test_copy_dir, teardown_test),
      cmocka_unit_test_teardown(test_copy_dir_symlinked_dest_entries, teardown_test),
      cmocka_unit_test_teardown(test_names, teardown_test),
      cmocka_unit_test_teardown(test_empty_project, teardown_test),
      cmocka_unit_test_teardown(test_tar_fd, teardown_test),
      cmocka_unit_test_teardown(test_bind_mount_loop, teardown_test),
      cmocka_unit_test_teardown(test_tar_errors, teardown_test),
      cmocka_unit_test_teardown(test_copy_dir_errors, teardown_test),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);

  git_signature_free(sig());
  git_libgit2_shutdown();
  if (!getenv("CIRRUS_TEST_KEEP"))
    rm_rf(top);
  free(home);
  free(xdg);
  free(ignore);
  return failed;
}
