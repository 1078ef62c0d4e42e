/* test/unit/test_cache.c - runner/cache.*: keys, the blob store (hit, miss, optimistic,
 * concurrent writers, killed writers), tar <-> blob round trips, change detection, folder
 * rules and the upstream messages.  Every archive is generated here with libarchive.
 *
 * The first part (tar and file helpers) is shared with test_artifacts.c, which includes this
 * file with TEST_CACHE_HELPERS_ONLY defined. */
#include "runner/artifacts.h"
#include "runner/cache.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* ------------------------------------------------------------------ helpers */

/* One archive entry: type 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'p' FIFO,
 * 'c' character device. */
struct tent {
  const char *name;
  char type;
  const char *data; /* file content, or link target */
  int mode;         /* 0: 0644 for files, 0755 for dirs, 0777 for links */
  long mtime;
};

CI_UNUSED static void
tar_add(struct archive *a, const struct tent *t)
{
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, t->name);
  archive_entry_set_mtime(e, t->mtime ? t->mtime : 1700000000, 0);
  archive_entry_set_uid(e, 1000);
  archive_entry_set_gid(e, 1000);
  size_t len = 0;
  switch (t->type) {
  case 'f':
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, t->mode ? t->mode : 0644);
    len = t->data ? strlen(t->data) : 0;
    archive_entry_set_size(e, (la_int64_t)len);
    break;
  case 'd':
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, t->mode ? t->mode : 0755);
    break;
  case 'l':
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_perm(e, 0777);
    archive_entry_set_symlink(e, t->data);
    break;
  case 'h':
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, t->mode ? t->mode : 0644);
    archive_entry_set_hardlink(e, t->data);
    archive_entry_set_size(e, 0);
    break;
  case 'p':
    archive_entry_set_filetype(e, AE_IFIFO);
    archive_entry_set_perm(e, 0644);
    break;
  case 'c':
    archive_entry_set_filetype(e, AE_IFCHR);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_rdev(e, makedev(1, 3));
    break;
  default:
    fail_msg("bad test entry type %c", t->type);
  }
  assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
  if (len)
    assert_int_equal(archive_write_data(a, t->data, len), (la_ssize_t)len);
  archive_entry_free(e);
}

/* An unlinked temporary file, positioned at 0. */
CI_UNUSED static int
tmp_fd(void)
{
  char name[] = "/tmp/cirrus-test-XXXXXX";
  int fd = mkstemp(name);
  assert_true(fd >= 0);
  unlink(name);
  return fd;
}

/* A tar (gzip when gz) of n entries in an unlinked temporary file, positioned at 0. */
CI_UNUSED static int
tar_fd(const struct tent *v, size_t n, bool gz)
{
  int fd = tmp_fd();
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gz)
    archive_write_add_filter_gzip(a);
  assert_int_equal(archive_write_open_fd(a, fd), ARCHIVE_OK);
  for (size_t i = 0; i < n; i++)
    tar_add(a, &v[i]);
  assert_int_equal(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
  return fd;
}

/* "name type mode [content|target]\n" for every entry of the tar at fd (read from 0). */
CI_UNUSED static char *
tar_list(int fd)
{
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_gzip(a);
  assert_int_equal(archive_read_open_fd(a, fd, 4096), ARCHIVE_OK);
  struct ci_buf b = CI_BUF_INIT;
  struct archive_entry *e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    const char *hl = archive_entry_hardlink(e);
    mode_t t = archive_entry_filetype(e);
    char c = hl ? 'h' : t == AE_IFDIR ? 'd' : t == AE_IFLNK ? 'l' : t == AE_IFREG ? 'f' : '?';
    ci_buf_addf(&b, "%s %c %04o", archive_entry_pathname(e), c, (unsigned)archive_entry_perm(e));
    if (hl)
      ci_buf_addf(&b, " ->%s", hl);
    else if (c == 'l')
      ci_buf_addf(&b, " ->%s", archive_entry_symlink(e));
    else if (c == 'f') {
      char buf[256];
      la_ssize_t n = archive_read_data(a, buf, sizeof(buf) - 1);
      assert_true(n >= 0);
      buf[n] = '\0';
      ci_buf_addf(&b, " %s", buf);
    }
    ci_buf_addc(&b, '\n');
  }
  archive_read_free(a);
  return ci_buf_take(&b);
}

CI_UNUSED static char *
mk_tmpdir(const char *what)
{
  char *t = xasprintf("/tmp/cirrus-test-%s-XXXXXX", what);
  assert_non_null(mkdtemp(t));
  return t;
}

CI_UNUSED static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

CI_UNUSED static void
rm_rf(const char *p)
{
  nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

CI_UNUSED static char *
read_text(const char *path)
{
  char *out = NULL;
  size_t len;
  struct ci_error *err = NULL;
  if (ci_read_file(path, 1 << 20, &out, &len, &err) < 0) {
    ci_error_free(&err);
    return NULL;
  }
  return out;
}

CI_UNUSED static void
write_text(const char *path, const char *s)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(s, f);
  fclose(f);
}

static unsigned file_mode(const char *fmt, ...) CI_PRINTF(1, 2) CI_UNUSED;
static unsigned
file_mode(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *p = xvasprintf(fmt, ap);
  va_end(ap);
  struct stat st;
  if (lstat(p, &st) < 0)
    return 0;
  return (unsigned)st.st_mode;
}

/* Number of directory entries of dir (without . and ..) whose name starts with prefix. */
CI_UNUSED static int
count_entries(const char *dir, const char *prefix)
{
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
        ci_str_has_prefix(de->d_name, prefix))
      n++;
  closedir(d);
  return n;
}

#ifndef TEST_CACHE_HELPERS_ONLY

/* ------------------------------------------------------------------ fixtures */

struct env {
  char *home; /* cache home */
  struct cache_store *s;
};

static int
setup(void **state)
{
  struct env *e = xcalloc(1, sizeof(*e));
  e->home = mk_tmpdir("cache");
  struct ci_error *err = NULL;
  assert_int_equal(cache_store_open("/src/my-project", e->home, &e->s, &err), 0);
  assert_null(err);
  *state = e;
  return 0;
}

static int
teardown(void **state)
{
  struct env *e = *state;
  cache_store_free(e->s);
  rm_rf(e->home);
  free(e->home);
  free(e);
  return 0;
}

/* Save the tar built from v (taken of folder, names relative to root) under key. */
static void
save_tar(struct cache_store *s, const char *key, const char *base, const char *root,
         const char *folder, const struct tent *v, size_t n)
{
  struct ci_error *err = NULL;
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(s, key, base, &w, &err), 0);
  cleanup_close int fd = tar_fd(v, n, false);
  assert_int_equal(cache_save_add_tar(w, fd, root, folder, &err), 0);
  assert_int_equal(cache_save_finish(w, &err), 0);
  assert_int_equal(cache_save_commit(w, &err), 0);
  assert_null(err);
}

/* Restore key's blob relative to put_at; returns the tar listing and fills *dg. */
static char *
restore_list(struct cache_store *s, const char *key, const char *base, const char *put_at,
             struct cache_digest *dg)
{
  struct ci_error *err = NULL;
  cleanup_close int bfd = -1;
  assert_int_equal(cache_store_get(s, key, &bfd, &err), 1);
  cleanup_close int out = tmp_fd();
  int ret = cache_restore(s, bfd, base, put_at, out, dg, &err);
  if (ret < 0)
    fail_msg("restore: %s", err->msg);
  return tar_list(out);
}

/* ------------------------------------------------------------------ keys */

static void
test_keys(void **state)
{
  (void)state;
  cleanup_free char *k1 = cache_key_compute("node_modules", "my-key v1", "ignored", 7, "t", "0");
  assert_string_equal(k1, "my-key v1");

  const char *out = "key that's similar between tasks\n";
  cleanup_free char *k2 = cache_key_compute("test", NULL, out, strlen(out), "t", "0");
  assert_string_equal(k2, "test-20d2c34006530fb8f4e3e7522404ea2f1b0bdaa0f8b07e7bf29b04e4e73d43a0");

  /* fed in pieces: the same key */
  struct cache_fingerprint *f = cache_fingerprint_new();
  cache_fingerprint_update(f, out, 10);
  cache_fingerprint_update(f, out + 10, strlen(out) - 10);
  cleanup_free char *k3 = cache_fingerprint_key(f, "test");
  cache_fingerprint_free(f);
  assert_string_equal(k3, k2);

  /* a script that printed nothing still counts as a fingerprint */
  cleanup_free char *k4 = cache_key_compute("c", NULL, "", 0, "main", "0");
  assert_string_equal(k4, "c-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  /* neither: task name + node index */
  cleanup_free char *k5 = cache_key_compute("c", NULL, NULL, 0, "main", "0");
  assert_string_equal(k5, "c-143f4779fdb67e167b85d0514e7a0b4e119c7ef6be06a5550fc62dbaeb8a5c8d");
  cleanup_free char *k6 = cache_key_default("c", "main", "0");
  assert_string_equal(k6, k5);
  cleanup_free char *k7 = cache_key_default("c", "main", "1");
  assert_string_not_equal(k7, k5);
}

static void
test_blob_names(void **state)
{
  (void)state;
  static const struct {
    const char *key, *name;
  } cases[] = {
      {"node_modules-abc123", "node_modules-abc123"},
      {"A-Z_0-9", "A-Z_0-9"},
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"..", "5ec1f7e700f37c3d0b2981d04855fc34b94aaa15457b05ca571817442d228f81"},
      {"1/2/3", "9de93caf7d8d2a94ab2abad16f8270f7c73be60b26777046cc11dd0557461bbb"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++) {
    cleanup_free char *n = cache_blob_name(cases[i].key);
    assert_string_equal(n, cases[i].name);
  }
  const char *hashed[] = {"a b", "my.key", "/file.tar.gz", "caf\xc3\xa9", "k\n"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(hashed); i++) {
    cleanup_free char *n = cache_blob_name(hashed[i]);
    assert_int_equal(strlen(n), 64);
    assert_int_equal(strspn(n, "0123456789abcdef"), 64);
  }
}

/* ------------------------------------------------------------------ the store */

static void
test_store_location(void **state)
{
  (void)state;
  struct ci_error *err = NULL;
  cleanup_free char *home = mk_tmpdir("loc");
  cleanup_free char *xdg = xasprintf("%s/xdg", home);
  cleanup_free char *saved_xdg =
      getenv("XDG_CACHE_HOME") ? xstrdup(getenv("XDG_CACHE_HOME")) : NULL;
  cleanup_free char *saved_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;

  setenv("XDG_CACHE_HOME", xdg, 1);
  struct cache_store *s = NULL;
  assert_int_equal(cache_store_open("/work/projects/demo/", NULL, &s, &err), 0);
  cleanup_free char *want = xasprintf("%s/cirrus/projects/demo", xdg);
  assert_string_equal(cache_store_get_dir(s), want);
  assert_true(S_ISDIR(file_mode("%s", want)));
  assert_int_equal(file_mode("%s", want) & 0777, 0700);
  assert_int_equal(file_mode("%s/cirrus", xdg) & 0777, 0700);
  cache_store_free(s);

  /* $XDG_CACHE_HOME unset: $HOME/.cache */
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", home, 1);
  assert_int_equal(cache_store_open("/x/other", NULL, &s, &err), 0);
  cleanup_free char *want2 = xasprintf("%s/.cache/cirrus/projects/other", home);
  assert_string_equal(cache_store_get_dir(s), want2);
  cache_store_free(s);

  /* a relative project directory is taken from the current directory */
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(home), 0);
  assert_int_equal(cache_store_open(".", NULL, &s, &err), 0);
  const char *base = strrchr(home, '/') + 1;
  cleanup_free char *want3 = xasprintf("%s/.cache/cirrus/projects/%s", home, base);
  assert_string_equal(cache_store_get_dir(s), want3);
  cache_store_free(s);
  assert_int_equal(chdir(cwd), 0);

  /* a relative $XDG_CACHE_HOME is an error, as in Go */
  setenv("XDG_CACHE_HOME", "relative/dir", 1);
  assert_true(cache_store_open("/x/p", NULL, &s, &err) < 0);
  assert_non_null(strstr(err->msg, "XDG_CACHE_HOME is relative"));
  ci_error_free(&err);

  if (saved_xdg)
    setenv("XDG_CACHE_HOME", saved_xdg, 1);
  else
    unsetenv("XDG_CACHE_HOME");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  rm_rf(home);
}

static const struct tent modules[] = {
    {"node_modules", 'd', NULL, 0755, 0},
    {"node_modules/left-pad", 'd', NULL, 0750, 0},
    {"node_modules/left-pad/index.js", 'f', "module.exports = pad;\n", 0644, 0},
    {"node_modules/.bin", 'd', NULL, 0, 0},
    {"node_modules/.bin/pad", 'l', "../left-pad/index.js", 0, 0},
    {"node_modules/.bin/abs", 'l', "/w/node_modules/left-pad/index.js", 0, 0},
    {"node_modules/.bin/run", 'f', "#!/bin/sh\n", 0755, 0},
    {"node_modules/.bin/run2", 'h', "node_modules/.bin/run", 0755, 0},
};

static void
test_hit_miss_round_trip(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  assert_int_equal(cache_store_get(e->s, "nm-1", NULL, &err), 0);
  save_tar(e->s, "nm-1", "/w/node_modules", "/w", "/w/node_modules", modules,
           CI_ARRAY_SIZE(modules));
  assert_int_equal(cache_store_get(e->s, "nm-1", NULL, &err), 1);
  assert_int_equal(cache_store_get(e->s, "nm-2", NULL, &err), 0);
  /* the blob is a gzip file named by the key, mode 0600, and nothing else is left behind */
  cleanup_free char *blob = xasprintf("%s/nm-1", cache_store_get_dir(e->s));
  assert_int_equal(file_mode("%s", blob) & 0777, 0600);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ""), 1);
  cleanup_close int bfd = open(blob, O_RDONLY);
  unsigned char magic[2];
  assert_int_equal(read(bfd, magic, 2), 2);
  assert_true(magic[0] == 0x1f && magic[1] == 0x8b);
  /* the blob holds names relative to the base folder; the absolute symlink target inside
   * the base folder became relative, as upstream does */
  cleanup_free char *inner = tar_list(bfd);
  assert_string_equal(inner, "./ d 0755\n"
                             "left-pad/ d 0750\n"
                             "left-pad/index.js f 0644 module.exports = pad;\n\n"
                             ".bin/ d 0755\n"
                             ".bin/pad l 0777 ->../left-pad/index.js\n"
                             ".bin/abs l 0777 ->../left-pad/index.js\n"
                             ".bin/run f 0755 #!/bin/sh\n\n"
                             ".bin/run2 h 0755 ->.bin/run\n");

  /* restored for PUT ...?path=/ */
  struct cache_digest dg = CACHE_DIGEST_INIT;
  cleanup_free char *l1 = restore_list(e->s, "nm-1", "/w/node_modules", "/", &dg);
  assert_string_equal(l1, "w/node_modules/ d 0755\n"
                          "w/node_modules/left-pad/ d 0750\n"
                          "w/node_modules/left-pad/index.js f 0644 module.exports = pad;\n\n"
                          "w/node_modules/.bin/ d 0755\n"
                          "w/node_modules/.bin/pad l 0777 ->../left-pad/index.js\n"
                          "w/node_modules/.bin/abs l 0777 ->../left-pad/index.js\n"
                          "w/node_modules/.bin/run f 0755 #!/bin/sh\n\n"
                          "w/node_modules/.bin/run2 h 0755 ->w/node_modules/.bin/run\n");
  /* and relative to the folder itself */
  cleanup_free char *l2 = restore_list(e->s, "nm-1", "/w/node_modules", "/w/node_modules", NULL);
  assert_string_equal(l2, inner);
  /* owners and times survive */
  cleanup_close int out = tmp_fd();
  cleanup_close int bfd2 = -1;
  assert_int_equal(cache_store_get(e->s, "nm-1", &bfd2, &err), 1);
  assert_int_equal(cache_restore(e->s, bfd2, "/w/node_modules", "/", out, NULL, &err), 0);
  lseek(out, 0, SEEK_SET);
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  assert_int_equal(archive_read_open_fd(a, out, 4096), ARCHIVE_OK);
  struct archive_entry *ae;
  assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_OK);
  assert_int_equal(archive_entry_uid(ae), 1000);
  assert_int_equal(archive_entry_mtime(ae), 1700000000);
  archive_read_free(a);

  /* the digest of what was restored is the digest of what was saved */
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(e->s, "nm-1", "/w/node_modules", &w, &err), 0);
  cleanup_close int fd = tar_fd(modules, CI_ARRAY_SIZE(modules), false);
  assert_int_equal(cache_save_add_tar(w, fd, "/w", "/w/node_modules", &err), 0);
  assert_int_equal(cache_save_finish(w, &err), 0);
  assert_string_equal(cache_save_get_digest(w)->sha, dg.sha);
  assert_int_equal(dg.n, 5); /* index.js, pad, abs, run, run2: no directories */
  assert_string_equal(dg.v[0].path, ".bin/abs");
  assert_int_equal(dg.v[3].type, 'f'); /* run2, a hard link, counts as the file */
  assert_memory_equal(dg.v[3].sum, dg.v[2].sum, 32);
  assert_false(cache_save_is_empty(w));
  assert_true(cache_save_get_size(w) > 0);
  /* hashing the restored tree (names relative to "/") gives the same digest again */
  cleanup_close int rfd = tmp_fd();
  cleanup_close int bfd3 = -1;
  assert_int_equal(cache_store_get(e->s, "nm-1", &bfd3, &err), 1);
  assert_int_equal(cache_restore(e->s, bfd3, "/w/node_modules", "/", rfd, NULL, &err), 0);
  lseek(rfd, 0, SEEK_SET);
  cleanup_cache_hasher struct cache_hasher *h = NULL;
  assert_int_equal(cache_hasher_new(e->s, "/w/node_modules", &h, &err), 0);
  assert_int_equal(cache_hasher_add_tar(h, rfd, "/", "/w/node_modules", &err), 0);
  assert_false(cache_hasher_is_empty(h));
  struct cache_digest hd = CACHE_DIGEST_INIT;
  assert_int_equal(cache_hasher_finish(h, &hd, &err), 0);
  assert_string_equal(hd.sha, dg.sha);
  assert_true(cache_hasher_add_tar(h, rfd, "/", "/w/node_modules", &err) < 0); /* finished */
  ci_error_free(&err);
  cache_digest_release(&hd);
  cache_digest_release(&dg);
  /* hashing wrote nothing to the store: the blob, and the uncommitted save's temporary */
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ""), 2);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 1);
  assert_null(err);
}

static void
test_several_folders(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  /* base /w; folders /w/a (tar of /w/a: names "a/...") and /w/b/c (names "c/...") */
  static const struct tent ta[] = {{"a", 'd', NULL, 0, 0}, {"a/x", 'f', "x", 0, 0}};
  static const struct tent tc[] = {{"c", 'd', NULL, 0, 0}, {"c/y", 'f', "y", 0, 0}};
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(e->s, "multi", "/w", &w, &err), 0);
  cleanup_close int fa = tar_fd(ta, 2, false);
  cleanup_close int fc = tar_fd(tc, 2, true); /* gzip input works too */
  assert_int_equal(cache_save_add_tar(w, fa, "/w", "/w/a", &err), 0);
  assert_int_equal(cache_save_add_tar(w, fc, "/w/b", "/w/b/c", &err), 0);
  assert_int_equal(cache_save_finish(w, &err), 0);
  assert_int_equal(cache_save_commit(w, &err), 0);
  cleanup_free char *l = restore_list(e->s, "multi", "/w", "/", NULL);
  assert_string_equal(l, "w/a/ d 0755\nw/a/x f 0644 x\nw/b/c/ d 0755\nw/b/c/y f 0644 y\n");
  /* a second commit of the same save is refused */
  assert_true(cache_save_commit(w, &err) < 0);
  ci_error_free(&err);
}

/* One ustar block as Go's archive/tar writes it (name as is, even ""), plus the data. */
static void
ustar_entry(struct ci_buf *b, const char *name, char type, const char *data, unsigned mode)
{
  unsigned char h[512];
  memset(h, 0, sizeof(h));
  size_t len = type == '0' && data ? strlen(data) : 0;
  memcpy(h, name, strlen(name));
  snprintf((char *)h + 100, 8, "%07o", mode);
  snprintf((char *)h + 108, 8, "%07o", 1000u);
  snprintf((char *)h + 116, 8, "%07o", 1000u);
  snprintf((char *)h + 124, 12, "%011o", (unsigned)len);
  snprintf((char *)h + 136, 12, "%011o", 1700000000u);
  memset(h + 148, ' ', 8);
  h[156] = (unsigned char)type;
  if (type == '2')
    memcpy(h + 157, data, strlen(data));
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof(h); i++)
    sum += h[i];
  snprintf((char *)h + 148, 7, "%06o", sum);
  ci_buf_add(b, h, sizeof(h));
  if (len) {
    ci_buf_add(b, data, len);
    static const char zero[512];
    ci_buf_add(b, zero, (512 - len % 512) % 512);
  }
}

static void
test_upstream_blob(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  /* upstream's Go writer names the base folder "" and everything else "/x" */
  struct ci_buf t = CI_BUF_INIT;
  ustar_entry(&t, "", '5', NULL, 0755);
  ustar_entry(&t, "/file.txt", '0', "hello", 0644);
  ustar_entry(&t, "/sub", '5', NULL, 0700);
  ustar_entry(&t, "/sub/deep.txt", '0', "deep", 0600);
  ustar_entry(&t, "/sub/env", '2', "/usr/bin/env", 0777);
  static const char end[1024];
  ci_buf_add(&t, end, sizeof(end));
  /* gzip it into the store under an upstream-style key */
  cleanup_free char *path = xasprintf("%s/cache-0123", cache_store_get_dir(e->s));
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true(fd >= 0);
  struct archive *a = archive_write_new();
  archive_write_set_format_raw(a);
  archive_write_add_filter_gzip(a);
  assert_int_equal(archive_write_open_fd(a, fd), ARCHIVE_OK);
  struct archive_entry *ae = archive_entry_new();
  archive_entry_set_filetype(ae, AE_IFREG);
  archive_entry_set_size(ae, (la_int64_t)t.len);
  assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
  assert_int_equal(archive_write_data(a, t.s, t.len), (la_ssize_t)t.len);
  assert_int_equal(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  archive_entry_free(ae);
  close(fd);
  ci_buf_release(&t);
  struct cache_digest dg = CACHE_DIGEST_INIT;
  cleanup_free char *l = restore_list(e->s, "cache-0123", "/root/.cache", "/", &dg);
  assert_string_equal(l, "root/.cache/ d 0755\n"
                         "root/.cache/file.txt f 0644 hello\n"
                         "root/.cache/sub/ d 0700\n"
                         "root/.cache/sub/deep.txt f 0600 deep\n"
                         "root/.cache/sub/env l 0777 ->/usr/bin/env\n");
  assert_int_equal(dg.n, 3);
  assert_string_equal(dg.v[0].path, "file.txt");
  cache_digest_release(&dg);
  assert_null(err);
}

static void
test_refused_entries(void **state)
{
  struct env *e = *state;
  static const struct {
    struct tent t;
    const char *msg;
  } bad[] = {
      {{"node_modules/../../etc/passwd", 'f', "x", 0, 0}, "contains '..'"},
      {{"/etc/passwd", 'f', "x", 0, 0}, "absolute path"},
      {{"other/file", 'f', "x", 0, 0}, "outside of the cache base folder"},
      {{"node_modules/h", 'h', "other/file", 0, 0}, "outside of the cache base folder"},
      {{"node_modules/h", 'h', "../x", 0, 0}, "contains '..'"},
      {{"node_modules", 'f', "a file", 0, 0}, "must be directories"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct ci_error *err = NULL;
    cleanup_cache_save struct cache_save *w = NULL;
    assert_int_equal(cache_save_begin(e->s, "bad", "/w/node_modules", &w, &err), 0);
    cleanup_close int fd = tar_fd(&bad[i].t, 1, false);
    assert_true(cache_save_add_tar(w, fd, "/w", "/w/node_modules", &err) < 0);
    if (!strstr(err->msg, bad[i].msg))
      fail_msg("case %zu: '%s' lacks '%s'", i, err->msg, bad[i].msg);
    ci_error_free(&err);
    /* a broken save cannot be finished or committed */
    assert_true(cache_save_finish(w, &err) < 0);
    ci_error_free(&err);
    assert_true(cache_save_commit(w, &err) < 0);
    ci_error_free(&err);
  }
  /* nothing was stored, nothing temporary is left */
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ""), 0);

  /* special files are dropped, not refused */
  static const struct tent special[] = {{"node_modules", 'd', NULL, 0, 0},
                                        {"node_modules/fifo", 'p', NULL, 0, 0},
                                        {"node_modules/null", 'c', NULL, 0, 0},
                                        {"node_modules/ok", 'f', "ok", 0, 0}};
  save_tar(e->s, "special", "/w/node_modules", "/w", "/w/node_modules", special, 4);
  cleanup_free char *l = restore_list(e->s, "special", "/w/node_modules", "/w/node_modules", NULL);
  assert_string_equal(l, "./ d 0755\nok f 0644 ok\n");

  /* a corrupt blob is an error on restore, not a crash */
  cleanup_free char *path = xasprintf("%s/corrupt", cache_store_get_dir(e->s));
  write_text(path, "\x1f\x8b\x08\x00garbage that is not deflate data at all");
  struct ci_error *err = NULL;
  cleanup_close int bfd = -1;
  assert_int_equal(cache_store_get(e->s, "corrupt", &bfd, &err), 1);
  cleanup_close int out = tmp_fd();
  assert_true(cache_restore(e->s, bfd, "/w", "/", out, NULL, &err) < 0);
  ci_error_free(&err);
  /* a blob with '..' is refused on restore too */
  static const struct tent evil[] = {{"../escape", 'f', "x", 0, 0}};
  cleanup_free char *path2 = xasprintf("%s/evil", cache_store_get_dir(e->s));
  int efd = open(path2, O_WRONLY | O_CREAT, 0600);
  cleanup_close int src = tar_fd(evil, 1, true);
  char buf[4096];
  ssize_t n;
  while ((n = read(src, buf, sizeof(buf))) > 0)
    assert_int_equal(write(efd, buf, (size_t)n), n);
  close(efd);
  cleanup_close int bfd2 = -1;
  assert_int_equal(cache_store_get(e->s, "evil", &bfd2, &err), 1);
  assert_int_equal(ftruncate(out, 0), 0);
  assert_true(cache_restore(e->s, bfd2, "/w", "/", out, NULL, &err) < 0);
  assert_non_null(strstr(err->msg, "contains '..'"));
  ci_error_free(&err);
  /* put_at must be an ancestor of base */
  assert_true(cache_restore(e->s, bfd2, "/w", "/x", out, NULL, &err) < 0);
  ci_error_free(&err);
}

static void
test_limits(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  struct cache_limits lim = {10, 100};
  cache_store_set_limits(e->s, &lim);
  static const struct tent big[] = {{"d", 'd', NULL, 0, 0}, {"d/f", 'f', "01234567890", 0, 0}};
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(e->s, "big", "/w/d", &w, &err), 0);
  cleanup_close int fd = tar_fd(big, 2, false);
  assert_true(cache_save_add_tar(w, fd, "/w", "/w/d", &err) < 0);
  assert_non_null(strstr(err->msg, "larger than 10 bytes"));
  ci_error_free(&err);

  lim.max_bytes = 1000;
  lim.max_entries = 3;
  cache_store_set_limits(e->s, &lim);
  struct tent many[5];
  for (int i = 0; i < 5; i++)
    many[i] = (struct tent){i ? "d/x" : "d", i ? 'f' : 'd', "1", 0, 0};
  cleanup_cache_save struct cache_save *w2 = NULL;
  assert_int_equal(cache_save_begin(e->s, "many", "/w/d", &w2, &err), 0);
  cleanup_close int fd2 = tar_fd(many, 5, false);
  assert_true(cache_save_add_tar(w2, fd2, "/w", "/w/d", &err) < 0);
  assert_non_null(strstr(err->msg, "more than 3 entries"));
  ci_error_free(&err);
  cache_store_set_limits(e->s, NULL);
  assert_int_equal(cache_store_get_limits(e->s)->max_bytes, CACHE_DEFAULT_MAX_BYTES);
}

/* Set a file's modification time. */
static void
set_mtime(struct cache_store *s, const char *name, time_t t)
{
  cleanup_free char *p = xasprintf("%s/%s", cache_store_get_dir(s), name);
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static void
test_optimistic(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  static const struct tent one[] = {{"c", 'd', NULL, 0, 0}, {"c/v", 'f', "v1", 0, 0}};
  static const struct tent two[] = {{"c", 'd', NULL, 0, 0}, {"c/v", 'f', "v2", 0, 0}};
  char *key = NULL;
  int fd = -1;
  assert_int_equal(cache_store_find_latest(e->s, "test", &key, &fd, &err), 0);
  save_tar(e->s, "test-aaaa", "/w/c", "/w", "/w/c", one, 2);
  save_tar(e->s, "test-bbbb", "/w/c", "/w", "/w/c", two, 2);
  save_tar(e->s, "test_other-cccc", "/w/c", "/w", "/w/c", two, 2); /* another cache */
  save_tar(e->s, "testing-dddd", "/w/c", "/w", "/w/c", two, 2);
  set_mtime(e->s, "test-aaaa", 2000000000);
  set_mtime(e->s, "test-bbbb", 1000000000);
  set_mtime(e->s, "test_other-cccc", 2100000000);
  set_mtime(e->s, "testing-dddd", 2100000000);
  /* a newer temporary blob and a directory are ignored */
  cleanup_free char *tmp = xasprintf("%s/.temporary-blob-test-x", cache_store_get_dir(e->s));
  write_text(tmp, "partial");
  cleanup_free char *dir = xasprintf("%s/test-zzzz", cache_store_get_dir(e->s));
  assert_int_equal(mkdir(dir, 0700), 0);

  assert_int_equal(cache_store_find_latest(e->s, "test", &key, &fd, &err), 1);
  assert_string_equal(key, "test-aaaa"); /* the newest, not the oldest */
  char *l = tar_list(fd);
  assert_string_equal(l, "./ d 0755\nv f 0644 v1\n");
  free(l);
  free(key);
  close(fd);

  set_mtime(e->s, "test-bbbb", 2050000000);
  assert_int_equal(cache_store_find_latest(e->s, "test", &key, &fd, &err), 1);
  assert_string_equal(key, "test-bbbb");
  free(key);
  close(fd);
  assert_int_equal(cache_store_find_latest(e->s, "nothing", &key, &fd, &err), 0);
  assert_null(err);
}

static const struct tent ver_a[] = {{"c", 'd', NULL, 0, 0}, {"c/data", 'f', "AAAA", 0, 0}};
static const struct tent ver_b[] = {{"c", 'd', NULL, 0, 0}, {"c/data", 'f', "BBBBBBBB", 0, 0}};

static void
writer_loop(const char *home, const struct tent *v, int rounds)
{
  struct cache_store *s = NULL;
  struct ci_error *err = NULL;
  if (cache_store_open("/src/my-project", home, &s, &err) < 0)
    _exit(2);
  for (int i = 0; i < rounds; i++) {
    struct cache_save *w = NULL;
    int fd = tar_fd(v, 2, false);
    if (cache_save_begin(s, "shared-key", "/w/c", &w, &err) < 0 ||
        cache_save_add_tar(w, fd, "/w", "/w/c", &err) < 0 || cache_save_finish(w, &err) < 0 ||
        cache_save_commit(w, &err) < 0)
      _exit(3);
    cache_save_free(w);
    close(fd);
  }
  cache_store_free(s);
  _exit(0);
}

static void
test_concurrent_writers(void **state)
{
  struct env *e = *state;
  pid_t a = fork();
  if (a == 0)
    writer_loop(e->home, ver_a, 40);
  pid_t b = fork();
  if (b == 0)
    writer_loop(e->home, ver_b, 40);
  /* meanwhile every blob a reader sees is complete: one version or the other */
  int seen = 0, status;
  bool a_done = false, b_done = false;
  while (!a_done || !b_done) {
    struct ci_error *err = NULL;
    int fd = -1;
    int r = cache_store_get(e->s, "shared-key", &fd, &err);
    assert_true(r >= 0);
    if (r == 1) {
      char *l = tar_list(fd);
      if (strcmp(l, "./ d 0755\ndata f 0644 AAAA\n") &&
          strcmp(l, "./ d 0755\ndata f 0644 BBBBBBBB\n"))
        fail_msg("incomplete blob seen: %s", l);
      free(l);
      close(fd);
      seen++;
    }
    if (!a_done && waitpid(a, &status, WNOHANG) == a) {
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      a_done = true;
    }
    if (!b_done && waitpid(b, &status, WNOHANG) == b) {
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      b_done = true;
    }
  }
  assert_true(seen > 0);
  /* one blob, no temporary files */
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ""), 1);
}

static void
test_killed_writer(void **state)
{
  struct env *e = *state;
  struct ci_error *err = NULL;
  /* an older complete blob for the key */
  save_tar(e->s, "k", "/w/c", "/w", "/w/c", ver_a, 2);
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[1]);
    struct cache_store *s = NULL;
    struct cache_save *w = NULL;
    if (cache_store_open("/src/my-project", e->home, &s, &err) < 0 ||
        cache_save_begin(s, "k", "/w/c", &w, &err) < 0)
      _exit(2);
    cache_save_add_tar(w, p[0], "/w", "/w/c", &err); /* blocks on the pipe */
    _exit(3);
  }
  close(p[0]);
  /* feed half of a big archive, then kill the writer */
  char *big = xmalloc(1 << 20);
  memset(big, 'x', (1 << 20) - 1);
  big[(1 << 20) - 1] = '\0';
  struct tent t[] = {{"c", 'd', NULL, 0, 0}, {"c/big", 'f', big, 0, 0}};
  cleanup_close int fd = tar_fd(t, 2, false);
  char buf[65536];
  for (int i = 0; i < 8; i++) {
    ssize_t n = read(fd, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(write(p[1], buf, (size_t)n), n);
  }
  /* wait until the writer has its temporary blob */
  for (int i = 0; i < 500 && count_entries(cache_store_get_dir(e->s), ".temporary-blob-") == 0; i++)
    usleep(10000);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 1);
  kill(pid, SIGKILL);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  close(p[1]);
  free(big);
  /* the key still reads the old, complete blob */
  int bfd = -1;
  assert_int_equal(cache_store_get(e->s, "k", &bfd, &err), 1);
  char *l = tar_list(bfd);
  assert_string_equal(l, "./ d 0755\ndata f 0644 AAAA\n");
  free(l);
  close(bfd);
  /* the leftover is garbage that pruning removes (a fresh one is kept) */
  assert_int_equal(cache_store_prune_temporary(e->s, 3600, &err), 0);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 1);
  assert_int_equal(cache_store_prune_temporary(e->s, 0, &err), 1);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 0);
  /* and a save that is freed without commit leaves nothing */
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(e->s, "never", "/w/c", &w, &err), 0);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 1);
  cache_save_free(steal_pointer(&w));
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ".temporary-blob-"), 0);
  assert_int_equal(cache_store_get(e->s, "never", NULL, &err), 0);
  assert_null(err);
}

/* ------------------------------------------------------------------ change detection */

/* Final digest and emptiness of the given tars (each taken of folder with names relative to
 * root), saved under base. */
static bool
digest_of(struct cache_store *s, const char *base, const char *root, const char *folder,
          const struct tent *v, size_t n, struct cache_digest *out)
{
  struct ci_error *err = NULL;
  cleanup_cache_save struct cache_save *w = NULL;
  assert_int_equal(cache_save_begin(s, "digest", base, &w, &err), 0);
  if (v) {
    cleanup_close int fd = tar_fd(v, n, false);
    assert_int_equal(cache_save_add_tar(w, fd, root, folder, &err), 0);
  }
  assert_int_equal(cache_save_finish(w, &err), 0);
  struct cache_digest copy = CACHE_DIGEST_INIT;
  const struct cache_digest *d = cache_save_get_digest(w);
  for (size_t i = 0; i < d->n; i++) {
    CI_GROW(copy.v, copy.alloc, copy.n + 1);
    copy.v[copy.n] = d->v[i];
    copy.v[copy.n++].path = xstrdup(d->v[i].path);
  }
  memcpy(copy.sha, d->sha, sizeof(copy.sha));
  cache_digest_move(out, &copy);
  return cache_save_is_empty(w);
}

static void
diff_cb(void *data, enum cache_change kind, const char *path)
{
  ci_buf_addf(data, "%s: %s\n", cache_change_str(kind), path);
}

static void
test_change_detection(void **state)
{
  struct env *e = *state;
  static const struct tent base[] = {{"c", 'd', NULL, 0, 0},
                                     {"c/a", 'f', "alpha", 0644, 100},
                                     {"c/sub", 'd', NULL, 0, 0},
                                     {"c/sub/b", 'f', "beta", 0644, 100},
                                     {"c/l", 'l', "a", 0, 0}};
  /* same content, other order, other times, other directory modes */
  static const struct tent shuffled[] = {{"c/sub/b", 'f', "beta", 0644, 999},
                                         {"c/l", 'l', "a", 0, 0},
                                         {"c/a", 'f', "alpha", 0644, 555},
                                         {"c/sub", 'd', NULL, 0700, 0},
                                         {"c", 'd', NULL, 0, 0}};
  static const struct tent modified[] = {{"c", 'd', NULL, 0, 0},
                                         {"c/a", 'f', "ALPHA", 0644, 100},
                                         {"c/sub/b", 'f', "beta", 0644, 100},
                                         {"c/l", 'l', "a", 0, 0}};
  static const struct tent chmodded[] = {{"c", 'd', NULL, 0, 0},
                                         {"c/a", 'f', "alpha", 0755, 100},
                                         {"c/sub/b", 'f', "beta", 0644, 100},
                                         {"c/l", 'l', "a", 0, 0}};
  static const struct tent renamed[] = {{"c", 'd', NULL, 0, 0},
                                        {"c/a2", 'f', "alpha", 0644, 100},
                                        {"c/sub/b", 'f', "beta", 0644, 100},
                                        {"c/l", 'l', "a", 0, 0}};
  static const struct tent relinked[] = {{"c", 'd', NULL, 0, 0},
                                         {"c/a", 'f', "alpha", 0644, 100},
                                         {"c/sub/b", 'f', "beta", 0644, 100},
                                         {"c/l", 'l', "sub/b", 0, 0}};
  /* a later duplicate wins, as extraction would */
  static const struct tent dup[] = {{"c", 'd', NULL, 0, 0},
                                    {"c/a", 'f', "stale", 0644, 100},
                                    {"c/sub/b", 'f', "beta", 0644, 100},
                                    {"c/a", 'f', "alpha", 0644, 100},
                                    {"c/l", 'l', "a", 0, 0}};
  struct cache_digest d0 = CACHE_DIGEST_INIT, d1 = CACHE_DIGEST_INIT;
  digest_of(e->s, "/w/c", "/w", "/w/c", base, CI_ARRAY_SIZE(base), &d0);
  assert_int_equal(d0.n, 3);
  assert_int_equal(strlen(d0.sha), 64);
  digest_of(e->s, "/w/c", "/w", "/w/c", shuffled, CI_ARRAY_SIZE(shuffled), &d1);
  assert_string_equal(d1.sha, d0.sha);
  digest_of(e->s, "/w/c", "/w", "/w/c", dup, CI_ARRAY_SIZE(dup), &d1);
  assert_string_equal(d1.sha, d0.sha);

  const struct {
    const struct tent *v;
    size_t n;
    const char *diff;
  } changes[] = {
      {modified, CI_ARRAY_SIZE(modified), "modified: a\n"},
      {chmodded, CI_ARRAY_SIZE(chmodded), "modified: a\n"},
      {renamed, CI_ARRAY_SIZE(renamed), "deleted: a\ncreated: a2\n"},
      {relinked, CI_ARRAY_SIZE(relinked), "modified: l\n"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(changes); i++) {
    digest_of(e->s, "/w/c", "/w", "/w/c", changes[i].v, changes[i].n, &d1);
    assert_string_not_equal(d1.sha, d0.sha);
    struct ci_buf b = CI_BUF_INIT;
    cache_digest_diff(&d0, &d1, diff_cb, &b);
    assert_string_equal(ci_buf_str(&b), changes[i].diff);
    ci_buf_release(&b);
  }

  /* emptiness: no tar, or only the folder's own directory, is empty; anything below is not */
  assert_true(digest_of(e->s, "/w/c", "/w", "/w/c", NULL, 0, &d1));
  /* an empty cache hashes like upstream's empty hasher: sha256 of nothing */
  assert_string_equal(d1.sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  static const struct tent only_root[] = {{"c", 'd', NULL, 0, 0}};
  assert_true(digest_of(e->s, "/w/c", "/w", "/w/c", only_root, 1, &d1));
  static const struct tent subdir[] = {{"c", 'd', NULL, 0, 0}, {"c/empty", 'd', NULL, 0, 0}};
  assert_false(digest_of(e->s, "/w/c", "/w", "/w/c", subdir, 2, &d1));
  /* several folders under the working directory: each folder's own entry is not content */
  static const struct tent f1[] = {{"a", 'd', NULL, 0, 0}};
  assert_true(digest_of(e->s, "/w", "/w", "/w/a", f1, 1, &d1));
  cache_digest_release(&d0);
  cache_digest_release(&d1);
  assert_int_equal(count_entries(cache_store_get_dir(e->s), ""), 0);
}

/* ------------------------------------------------------------------ folders */

static void
test_plan(void **state)
{
  (void)state;
  struct ci_error *err = NULL;
  struct cache_plan p = CACHE_PLAN_INIT;
  const char *one[] = {"node_modules"};
  assert_int_equal(cache_plan_init(&p, one, 1, "/tmp/cirrus-ci/working-dir", &err), 0);
  assert_string_equal(p.base, "/tmp/cirrus-ci/working-dir/node_modules");
  assert_false(p.has_globs);

  const char *home[] = {"/root/.gradle/caches/"};
  assert_int_equal(cache_plan_init(&p, home, 1, "/tmp/cirrus-ci/working-dir", &err), 0);
  assert_string_equal(p.base, "/root/.gradle/caches"); /* a single folder may be anywhere */

  const char *several[] = {"a", "./b/../c", "/w/d/e"};
  assert_int_equal(cache_plan_init(&p, several, 3, "/w", &err), 0);
  assert_string_equal(p.base, "/w");
  assert_int_equal(p.folders.n, 3);
  assert_string_equal(p.folders.v[1], "/w/c");

  const char *glob[] = {"**/node_modules"};
  assert_int_equal(cache_plan_init(&p, glob, 1, "/w/", &err), 0);
  assert_string_equal(p.base, "/w");
  assert_true(p.has_globs);
  assert_string_equal(p.folders.v[0], "/w/**/node_modules");

  const char *outside[] = {"a", "/root/.npm"};
  assert_true(cache_plan_init(&p, outside, 2, "/tmp/cirrus-ci/working-dir", &err) < 0);
  assert_string_equal(err->msg,
                      "When using globs or multiple cache folders, all folders should be "
                      "relative to the current working directory, yet, folder '/root/.npm' "
                      "points above the current working directory '/tmp/cirrus-ci/working-dir/'");
  ci_error_free(&err);
  assert_null(p.base);
  const char *up[] = {"a", "../sibling"};
  assert_true(cache_plan_init(&p, up, 2, "/w", &err) < 0);
  assert_non_null(strstr(err->msg, "folder '/sibling' points above"));
  ci_error_free(&err);
  const char *itself[] = {".", "a"};
  assert_true(cache_plan_init(&p, itself, 2, "/w", &err) < 0);
  ci_error_free(&err);
  const char *glob_out[] = {"/root/*/cache"};
  assert_true(cache_plan_init(&p, glob_out, 1, "/w", &err) < 0);
  ci_error_free(&err);
  assert_true(cache_plan_init(&p, NULL, 0, "/w", &err) < 0);
  ci_error_free(&err);
  cache_plan_release(&p);
}

static void
test_plan_expand(void **state)
{
  (void)state;
  struct ci_error *err = NULL;
  struct cache_plan p = CACHE_PLAN_INIT;
  const char *folders[] = {"**/node_modules", "build", "build/sub", "missing"};
  assert_int_equal(cache_plan_init(&p, folders, 4, "/w", &err), 0);
  const struct artifacts_path listing[] = {
      {"./node_modules", true},
      {"./node_modules/x/node_modules", true}, /* below a kept one: dropped */
      {"./pkgs", true},
      {"./pkgs/a/node_modules", true},
      {"./pkgs/a/node_modules/f", false},
      {"./pkgs/node_modules.txt", false},
      {"./build", true},
  };
  struct ci_strv out = CI_STRV_INIT;
  assert_int_equal(cache_plan_expand(&p, "/w", listing, CI_ARRAY_SIZE(listing), &out, &err), 0);
  cleanup_free char *joined = cache_folders_join((const char *const *)out.v, out.n);
  assert_string_equal(joined, "/w/build, /w/missing, /w/node_modules, /w/pkgs/a/node_modules");
  ci_strv_release(&out);
  cache_plan_release(&p);
  const char *bad[] = {"[a"};
  assert_int_equal(cache_plan_init(&p, bad, 1, "/w", &err), 0); /* no '*': not a glob */
  cache_plan_release(&p);
  const char *bad2[] = {"x/*[a"};
  assert_int_equal(cache_plan_init(&p, bad2, 1, "/w", &err), 0);
  assert_true(cache_plan_expand(&p, "/w", listing, CI_ARRAY_SIZE(listing), &out, &err) < 0);
  assert_non_null(strstr(err->msg, "invalid glob pattern"));
  ci_error_free(&err);
  ci_strv_release(&out);
  cache_plan_release(&p);
}

/* ------------------------------------------------------------------ messages */

static void
test_messages(void **state)
{
  (void)state;
  char buf[512];
  snprintf(buf, sizeof(buf), CACHE_MSG_HIT, "node-abc");
  assert_string_equal(buf, "Cache hit for node-abc!");
  snprintf(buf, sizeof(buf), CACHE_MSG_MISS_POPULATING, "node-abc");
  assert_string_equal(buf, "Cache miss for node-abc! Populating...");
  snprintf(buf, sizeof(buf), CACHE_MSG_MISS_NO_SCRIPT, "node-abc");
  assert_string_equal(buf, "Cache miss for node-abc! No script to populate with.");
  snprintf(buf, sizeof(buf), CACHE_MSG_SKIP_CHANGE_DETECTION, "node");
  assert_string_equal(buf, "Skipping change detection for node cache!");
  const char *f[] = {"/w/a", "/w/b"};
  cleanup_free char *list = cache_folders_join(f, 2);
  snprintf(buf, sizeof(buf), CACHE_MSG_ALL_EMPTY, list);
  assert_string_equal(buf, "All cache folders (/w/a, /w/b) are empty! Skipping uploading ...");
  snprintf(buf, sizeof(buf), CACHE_MSG_UNCHANGED, "node");
  assert_string_equal(buf, "Cache node hasn't changed! Skipping uploading...");
  snprintf(buf, sizeof(buf), CACHE_MSG_POPULATE_FAILED, "node");
  assert_string_equal(buf, "Failed to execute populate script for node cache!");
  cleanup_free char *s1 = cache_size_message("node", 512);
  assert_string_equal(s1, "node cache size is 512 bytes.");
  cleanup_free char *s2 = cache_size_message("node", 5000);
  assert_string_equal(s2, "node cache size is 4Kb.");
  cleanup_free char *s3 = cache_size_message("node", 5u << 20);
  assert_string_equal(s3, "node cache size is 5Mb.");
  cleanup_free char *none = cache_folders_join(NULL, 0);
  assert_string_equal(none, "");
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_blob_names),
      cmocka_unit_test(test_store_location),
      cmocka_unit_test_setup_teardown(test_hit_miss_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_several_folders, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upstream_blob, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_entries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_optimistic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_killed_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_detection, setup, teardown),
      cmocka_unit_test(test_plan),
      cmocka_unit_test(test_plan_expand),
      cmocka_unit_test(test_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif /* TEST_CACHE_HELPERS_ONLY */
