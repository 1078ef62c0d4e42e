/* test/unit/test_build.c - ci_build: Dockerfile parsing (every instruction, errors with line
 * numbers), word expansion, COPY/ADD layers from a context tar, and the store functions the
 * builder writes images with (img_store_add_layer, img_store_add_image). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/build/internal.h"
#include "backends/image/image.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ parsing */

static void
test_parse_all(void **state)
{
  (void)state;
  const char *text = "# a comment\n"
                     "ARG BASE=busybox\n"
                     "FROM $BASE AS one\n"
                     "ARG GREETING=hi\n"
                     "ENV A=1 B=\"two words\"\n"
                     "ENV LEGACY value with spaces\n"
                     "RUN echo a && \\\n"
                     "    # comment inside\n"
                     "    echo b\n"
                     "RUN [\"/bin/sh\", \"-c\", \"echo json\"]\n"
                     "COPY --chown=1:2 src/ /dst/\n"
                     "ADD [\"a b.tar\", \"/opt/\"]\n"
                     "WORKDIR /work\n"
                     "USER 1000:1000\n"
                     "LABEL org.x=y \"k 2\"=v\n"
                     "EXPOSE 80/tcp\n"
                     "entrypoint [\"/bin/app\"]\n"
                     "CMD run --fast\n";
  struct bld_dockerfile df;
  struct ci_error *err = NULL;
  assert_int_equal(bld_parse("Dockerfile", text, &df, &err), 0);
  assert_null(err);
  assert_int_equal(df.n, 15);
  static const enum bld_kind kinds[] = {
      BLD_ARG, BLD_FROM,    BLD_ARG,  BLD_ENV,   BLD_ENV,    BLD_RUN,        BLD_RUN, BLD_COPY,
      BLD_ADD, BLD_WORKDIR, BLD_USER, BLD_LABEL, BLD_EXPOSE, BLD_ENTRYPOINT, BLD_CMD};
  static const unsigned lines[] = {2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  for (size_t i = 0; i < df.n; i++) {
    assert_int_equal(df.v[i].kind, kinds[i]);
    assert_int_equal(df.v[i].line, lines[i]);
  }
  /* the continued RUN: one shell command, the comment line dropped */
  assert_int_equal(df.v[5].argv.n, 1);
  assert_string_equal(df.v[5].argv.v[0], "echo a &&     echo b");
  assert_false(df.v[5].json);
  assert_true(df.v[6].json);
  assert_int_equal(df.v[6].argv.n, 3);
  assert_string_equal(df.v[6].argv.v[2], "echo json");
  assert_int_equal(df.v[7].flags.n, 1);
  assert_string_equal(df.v[7].flags.v[0], "--chown=1:2");
  assert_string_equal(df.v[7].rest, "src/ /dst/");
  assert_true(df.v[8].json);
  assert_string_equal(df.v[8].argv.v[0], "a b.tar");
  assert_true(df.v[13].json);
  assert_string_equal(df.v[14].argv.v[0], "run --fast");
  assert_string_equal(df.v[13].text, "ENTRYPOINT [\"/bin/app\"]");
  bld_dockerfile_release(&df);
  /* empty lines inside a continued instruction do not end it (as Docker) */
  assert_int_equal(bld_parse("Dockerfile", "FROM a\nRUN a \\\n\n  b\nCMD x\n", &df, &err), 0);
  assert_int_equal(df.n, 3);
  assert_string_equal(df.v[1].argv.v[0], "a   b");
  assert_int_equal(df.v[2].line, 5);
  bld_dockerfile_release(&df);
}

struct err_case {
  const char *text;
  const char *msg; /* the whole message must contain it */
};

static const struct err_case err_cases[] = {
    {"FROM busybox\nFROBNICATE x\n", "Dockerfile:2: unknown instruction 'FROBNICATE'"},
    {"FROM busybox\n\nVOLUME /data\n", "Dockerfile:3: unsupported instruction 'VOLUME'"},
    {"FROM busybox\nHEALTHCHECK NONE\n", "Dockerfile:2: unsupported instruction 'HEALTHCHECK'"},
    {"RUN true\n", "Dockerfile:1: the first instruction must be FROM"},
    {"ARG X\nRUN true\n", "Dockerfile:2: RUN before FROM"},
    {"# only a comment\n", "Dockerfile:1: no FROM instruction"},
    {"FROM a\nFROM b\n", "Dockerfile:2: multi-stage builds are not supported"},
    {"FROM\n", "Dockerfile:1: FROM needs an image"},
    {"FROM a\nRUN\n", "Dockerfile:2: RUN needs a command"},
    {"FROM a\nRUN [\"sh\", 1]\n", "Dockerfile:2: RUN: invalid JSON array"},
    {"FROM a\nCMD [\"unterminated\n", "Dockerfile:2: CMD: invalid JSON array"},
    {"FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY needs at least one source and a destination"},
    {"FROM a\nCOPY --from=build /a /b\n", "Dockerfile:2: COPY: unsupported flag '--from=build'"},
    {"FROM a\nADD https://example.com/x /x\n", "Dockerfile:2: ADD: remote sources are not"},
    {"FROM a\nENV\n", "Dockerfile:2: ENV needs KEY=VALUE"},
    {"FROM a\nENV ONLYKEY\n", "Dockerfile:2: ENV needs KEY=VALUE (or KEY VALUE)"},
    {"FROM a\nENV A=1 B\n", "Dockerfile:2: ENV: 'B' is not KEY=VALUE"},
    {"FROM a\nLABEL novalue\n", "Dockerfile:2: LABEL needs KEY=VALUE"},
    {"FROM a\nENV A=\"open\n", "Dockerfile:2: ENV: unterminated double quote"},
    {"FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR needs exactly one argument"},
    {"FROM a\nUSER a b\n", "Dockerfile:2: USER needs exactly one argument"},
    {"FROM a\nARG\n", "Dockerfile:2: ARG needs a name"},
    {"FROM a\nARG =x\n", "Dockerfile:2: ARG: '=x' has no name"},
    {"FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE needs a port"},
    {"FROM a\nRUN --mount=type=cache true\n", "Dockerfile:2: RUN: flags are not supported"},
    {"FROM a\nRUN <<EOF\necho hi\nEOF\n", "Dockerfile:2: RUN: heredocs are not supported"},
    {"FROM a\nWORKDIR --x /a\n", "Dockerfile:2: WORKDIR: unsupported flag '--x'"},
    {"FROM a\nENV A=${B\n", "Dockerfile:2: ENV: missing '}'"},
    {"FROM a\nRUN a \\\n  b\n\nFROBNICATE\n", "Dockerfile:5: unknown instruction"},
};

static void
test_parse_errors(void **state)
{
  (void)state;
  for (size_t i = 0; i < CI_ARRAY_SIZE(err_cases); i++) {
    struct bld_dockerfile df;
    struct ci_error *err = NULL;
    int r = bld_parse("Dockerfile", err_cases[i].text, &df, &err);
    if (r >= 0 || !err || !strstr(err->msg, err_cases[i].msg))
      fail_msg("case %zu: want '%s', got '%s'", i, err_cases[i].msg, err ? err->msg : "(ok)");
    assert_int_equal(err->code, CI_ECONFIG);
    ci_error_free(&err);
  }
}

/* ------------------------------------------------------------ words */

static const char *
vars(const char *name, void *data)
{
  (void)data;
  if (!strcmp(name, "A"))
    return "x y";
  if (!strcmp(name, "EMPTY"))
    return "";
  return NULL;
}

static void
check_words(const char *in, const char *const *want, size_t n)
{
  struct ci_strv w = CI_STRV_INIT;
  struct ci_error *err = NULL;
  if (bld_words(in, vars, NULL, &w, &err) < 0)
    fail_msg("'%s': %s", in, err->msg);
  if (w.n != n)
    fail_msg("'%s': %zu words, want %zu", in, w.n, n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(w.v[i], want[i]);
  ci_strv_release(&w);
}

static void
test_words(void **state)
{
  (void)state;
  check_words("a  b\tc", (const char *const[]){"a", "b", "c"}, 3);
  check_words("$A", (const char *const[]){"x y"}, 1); /* no re-splitting, as Docker */
  check_words("${A}z '$A' \"$A\"", (const char *const[]){"x yz", "$A", "x y"}, 3);
  check_words("${UNSET:-def} ${A:+set} ${EMPTY:-e}x${UNSET}",
              (const char *const[]){"def", "set", "ex"}, 3);
  check_words("a\\ b \\$A \"q\\\"q\"", (const char *const[]){"a b", "$A", "q\"q"}, 3);
  check_words("K=\"v w\" L='a b'", (const char *const[]){"K=v w", "L=a b"}, 2);
  check_words("cost$ $", (const char *const[]){"cost$", "$"}, 2);
  check_words("", NULL, 0);
  struct ci_strv w = CI_STRV_INIT;
  struct ci_error *err = NULL;
  assert_true(bld_words("'open", NULL, NULL, &w, &err) < 0);
  assert_non_null(strstr(err->msg, "unterminated single quote"));
  ci_error_free(&err);
  assert_true(bld_words("${A:?x}", vars, NULL, &w, &err) < 0);
  assert_non_null(strstr(err->msg, "unsupported modifier"));
  ci_error_free(&err);
  assert_int_equal(w.n, 0);
}

/* ------------------------------------------------------------ COPY / ADD layers */

static char tmpdir[] = "/tmp/test_build.XXXXXX";

struct tar_file {
  const char *name;
  const char *data; /* NULL: a directory */
  mode_t mode;
};

static void
write_tar(const char *path, const struct tar_file *f, size_t n, bool gzip)
{
  struct archive *w = archive_write_new();
  archive_write_set_format_pax_restricted(w);
  if (gzip)
    archive_write_add_filter_gzip(w);
  assert_int_equal(archive_write_open_filename(w, path), ARCHIVE_OK);
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, f[i].name);
    archive_entry_set_filetype(e, f[i].data ? AE_IFREG : AE_IFDIR);
    archive_entry_set_perm(e, f[i].mode);
    archive_entry_set_uid(e, 1234);
    archive_entry_set_mtime(e, 1000000, 0);
    archive_entry_set_size(e, f[i].data ? (la_int64_t)strlen(f[i].data) : 0);
    assert_true(archive_write_header(w, e) >= ARCHIVE_WARN);
    if (f[i].data)
      archive_write_data(w, f[i].data, strlen(f[i].data));
    archive_entry_free(e);
  }
  archive_write_close(w);
  archive_write_free(w);
}

static void
read_file(const char *path, char **out, size_t *len)
{
  struct ci_error *err = NULL;
  assert_int_equal(ci_read_file(path, 1 << 24, out, len, &err), 0);
}

/* The names of a tar (and their uid and content) as "name uid content\n" lines. */
static char *
tar_listing(const char *path)
{
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  assert_int_equal(archive_read_open_filename(a, path, 10240), ARCHIVE_OK);
  struct ci_buf b = CI_BUF_INIT;
  struct archive_entry *e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char data[256] = "";
    la_ssize_t n = archive_read_data(a, data, sizeof data - 1);
    if (n > 0)
      data[n] = '\0';
    ci_buf_addf(&b, "%s %ld %o %s\n", archive_entry_pathname(e), (long)archive_entry_uid(e),
                (unsigned)archive_entry_perm(e), data);
  }
  archive_read_free(a);
  return ci_buf_take(&b);
}

static char *
copy_listing(const char *ctx, const char *const *srcs, size_t n, const char *dest,
             const char *chown, bool add, const char *expect_err)
{
  char out[256];
  snprintf(out, sizeof out, "%s/layer.tar", tmpdir);
  struct bld__copy c = {ctx, srcs, n, dest, "/work", chown, add};
  struct ci_error *err = NULL;
  int r = bld__copy_layer(&c, out, &err);
  if (expect_err) {
    if (r >= 0 || !strstr(err->msg, expect_err))
      fail_msg("want '%s', got '%s'", expect_err, err ? err->msg : "(ok)");
    ci_error_free(&err);
    return NULL;
  }
  if (r < 0)
    fail_msg("%s", err->msg);
  return tar_listing(out);
}

static void
test_copy_layer(void **state)
{
  (void)state;
  char ctx[256], inner[256];
  snprintf(ctx, sizeof ctx, "%s/context.tar", tmpdir);
  snprintf(inner, sizeof inner, "%s/inner.tar.gz", tmpdir);
  static const struct tar_file in[] = {{"a/x.txt", "X", 0644}, {"a/sub/y.txt", "Y", 0600}};
  write_tar(inner, in, 2, true);
  char *gz = NULL;
  size_t gzlen = 0;
  read_file(inner, &gz, &gzlen);
  /* the context: a tree, a Dockerfile, and a gzipped tar */
  struct archive *w = archive_write_new();
  archive_write_set_format_pax_restricted(w);
  assert_int_equal(archive_write_open_filename(w, ctx), ARCHIVE_OK);
  static const struct tar_file files[] = {
      {"./", NULL, 0755},
      {"./src/", NULL, 0755},
      {"./src/one.txt", "1", 0644},
      {"./src/deep/", NULL, 0700},
      {"./src/deep/two.sh", "2", 0755},
      {"./top.txt", "T", 0644},
      {"./Dockerfile", "FROM x\n", 0644},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(files); i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, files[i].name);
    archive_entry_set_filetype(e, files[i].data ? AE_IFREG : AE_IFDIR);
    archive_entry_set_perm(e, files[i].mode);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_size(e, files[i].data ? (la_int64_t)strlen(files[i].data) : 0);
    archive_write_header(w, e);
    if (files[i].data)
      archive_write_data(w, files[i].data, strlen(files[i].data));
    archive_entry_free(e);
  }
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, "./pkg.tar.gz");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, (la_int64_t)gzlen);
  archive_write_header(w, e);
  archive_write_data(w, gz, gzlen);
  archive_entry_free(e);
  archive_write_close(w);
  archive_write_free(w);
  free(gz);

  /* the Dockerfile is read from the context */
  char *text = NULL;
  struct ci_error *err = NULL;
  assert_int_equal(bld__context_read(ctx, "Dockerfile", 1024, &text, &err), 0);
  assert_string_equal(text, "FROM x\n");
  free(text);
  assert_true(bld__context_read(ctx, "missing/Dockerfile", 1024, &text, &err) < 0);
  assert_non_null(strstr(err->msg, "missing/Dockerfile is not in the build context"));
  ci_error_free(&err);

  /* a directory: its contents below dest, owned by root, modes kept */
  char *l = copy_listing(ctx, (const char *const[]){"src"}, 1, "/opt/app", NULL, false, NULL);
  assert_string_equal(l, "opt/app/one.txt 0 644 1\nopt/app/deep/ 0 700 \n"
                         "opt/app/deep/two.sh 0 755 2\n");
  free(l);
  /* a file to a file name, relative to WORKDIR; --chown */
  l = copy_listing(ctx, (const char *const[]){"./top.txt"}, 1, "renamed", "7:8", false, NULL);
  assert_string_equal(l, "work/renamed 7 644 T\n");
  free(l);
  /* several sources and a glob into a directory */
  l = copy_listing(ctx, (const char *const[]){"top.txt", "src/*.txt"}, 2, "/d/", NULL, false, NULL);
  assert_string_equal(l, "d/one.txt 0 644 1\nd/top.txt 0 644 T\n");
  free(l);
  /* COPY keeps an archive as it is; ADD extracts it (owners as in the archive) */
  l = copy_listing(ctx, (const char *const[]){"pkg.tar.gz"}, 1, "/x/", NULL, false, NULL);
  assert_non_null(strstr(l, "x/pkg.tar.gz 0 644"));
  free(l);
  l = copy_listing(ctx, (const char *const[]){"pkg.tar.gz"}, 1, "/x/", NULL, true, NULL);
  assert_string_equal(l, "x/a/x.txt 1234 644 X\nx/a/sub/y.txt 1234 600 Y\n");
  free(l);
  /* errors */
  copy_listing(ctx, (const char *const[]){"nope"}, 1, "/x", NULL, false,
               "'nope' is not in the build context");
  copy_listing(ctx, (const char *const[]){"../etc/passwd"}, 1, "/x", NULL, false,
               "outside of the build context");
  copy_listing(ctx, (const char *const[]){"top.txt"}, 1, "/x", "user:group", false,
               "only numeric ids");
  /* the same sources make the same layer */
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/a.tar", tmpdir);
  snprintf(b, sizeof b, "%s/b.tar", tmpdir);
  struct bld__copy c = {ctx, (const char *const[]){"src"}, 1, "/s", "/", NULL, false};
  assert_int_equal(bld__copy_layer(&c, a, &err), 0);
  assert_int_equal(bld__copy_layer(&c, b, &err), 0);
  char *da = NULL, *db = NULL;
  size_t la = 0, lb = 0;
  read_file(a, &da, &la);
  read_file(b, &db, &lb);
  assert_int_equal(la, lb);
  assert_memory_equal(da, db, la);
  free(da);
  free(db);
}

/* ------------------------------------------------------------ the store */

static void
test_store_add(void **state)
{
  (void)state;
  char root[256], layer[256];
  snprintf(root, sizeof root, "%s/store", tmpdir);
  snprintf(layer, sizeof layer, "%s/l.tar", tmpdir);
  struct img_store *s = NULL;
  struct ci_error *err = NULL;
  assert_int_equal(img_store_open(root, NULL, &s, &err), 0);
  static const struct tar_file f[] = {
      {"etc/", NULL, 0755}, {"etc/motd", "hello\n", 0644}, {"etc/.wh.gone", "", 0}};
  write_tar(layer, f, 3, false);
  char *id = NULL, *id2 = NULL;
  assert_int_equal(img_store_add_layer(s, layer, &id, &err), 0);
  assert_true(ci_str_has_prefix(id, "sha256:"));
  assert_int_equal(strlen(id), 71);
  /* the same content again: the same layer, nothing extracted twice */
  assert_int_equal(img_store_add_layer(s, layer, &id2, &err), 0);
  assert_string_equal(id, id2);
  char motd[512];
  snprintf(motd, sizeof motd, "%s/layers/%s/diff/etc/motd", root, id + 7);
  char *text = NULL;
  size_t len = 0;
  read_file(motd, &text, &len);
  assert_string_equal(text, "hello\n");
  free(text);
  /* the whiteout became an overlay whiteout (a 0:0 character device) */
  snprintf(motd, sizeof motd, "%s/layers/%s/diff/etc/gone", root, id + 7);
  struct stat st;
  assert_int_equal(lstat(motd, &st), 0);
  assert_true(S_ISCHR(st.st_mode));

  /* an image of that layer, named and found again */
  char *cfg = xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":"
                        "[\"A=1\"],\"Cmd\":[\"sh\"],\"WorkingDir\":\"/w\"},\"rootfs\":{\"type\":"
                        "\"layers\",\"diff_ids\":[\"%s\"]}}",
                        id);
  struct img_image *img = NULL;
  assert_int_equal(img_store_add_image(s, "localhost/built/x:1", cfg, strlen(cfg), &img, &err), 0);
  assert_string_equal(img->name, "localhost/built/x:1");
  assert_int_equal(img->layers.n, 1);
  assert_string_equal(img->diff_ids.v[0], id);
  assert_string_equal(img->config.working_dir, "/w");
  assert_string_equal(img->config.env.v[0], "A=1");
  char *imgid = xstrdup(img->id);
  img_image_free(img);
  img = NULL;
  assert_int_equal(img_lookup(s, "localhost/built/x:1", &img, &err), 0);
  assert_string_equal(img->id, imgid);
  img_image_free(img);
  img = NULL;
  free(imgid);
  /* refused: a layer that is not there, a bad name, a bad config */
  char *bad = xasprintf("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%064d\"]}}", 0);
  assert_true(img_store_add_image(s, "localhost/b:1", bad, strlen(bad), &img, &err) < 0);
  assert_non_null(strstr(err->msg, "is not in the store"));
  ci_error_free(&err);
  assert_true(img_store_add_image(s, "oci:/x", cfg, strlen(cfg), &img, &err) < 0);
  assert_non_null(strstr(err->msg, "cannot name an image"));
  ci_error_free(&err);
  assert_true(img_store_add_image(s, "localhost/b:1", "{", 1, &img, &err) < 0);
  ci_error_free(&err);
  assert_true(img_store_add_layer(s, "/nonexistent.tar", &id2, &err) < 0);
  assert_non_null(strstr(err->msg, "cannot open layer"));
  ci_error_free(&err);
  free(bad);
  free(cfg);
  free(id);
  free(id2);
  img_store_free(s);
}

static int
setup(void **state)
{
  (void)state;
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_all), cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_words),     cmocka_unit_test(test_copy_layer),
      cmocka_unit_test(test_store_add),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
