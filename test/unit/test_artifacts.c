/* test/unit/test_artifacts.c - runner/artifacts.*: names, paths, globs, storing artifacts
 * from hostile tars, report parsers (JUnit fixtures in test/data/cache/junit) and the GitHub
 * Actions formatter. */
#define TEST_CACHE_HELPERS_ONLY
#include "test_cache.c"

/* ------------------------------------------------------------------ names and paths */

static void
test_names(void **state)
{
  (void)state;
  const char *safe[] = {"Build",
                        "test_25519-42",
                        "42",
                        "main",
                        "Tests: Linux",
                        "binary",
                        "with space",
                        "\xd0\xa2\xd0\xb5\xd1\x81\xd1\x82" /* Тест */,
                        "\xe6\xb5\x8b\xe8\xaf\x95" /* 测试 */};
  const char *unsafe[] = {
      "",         "name/that/looks/like/a/path", "..",  ".", "a.b", "tab\tx", "new\nline",
      "\xff\xfe", "\xe2\x98\x83" /* snowman */,  "a\\b"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(safe); i++)
    if (!artifacts_name_is_safe(safe[i]))
      fail_msg("'%s' should be safe", safe[i]);
  for (size_t i = 0; i < CI_ARRAY_SIZE(unsafe); i++)
    if (artifacts_name_is_safe(unsafe[i]))
      fail_msg("'%s' should not be safe", unsafe[i]);
  assert_false(artifacts_name_is_safe(NULL));
}

static void
test_paths(void **state)
{
  (void)state;
  static const char *const clean[][2] = {
      {"", "."},
      {"/", "/"},
      {"a/b/", "a/b"},
      {"a//b", "a/b"},
      {"./a/./b", "a/b"},
      {"a/../b", "b"},
      {"../a", "../a"},
      {"a/../..", ".."},
      {"/../a", "/a"},
      {"/a/b/../../..", "/"},
      {"/w/x/../../y", "/y"},
      {"a/b/../../../c", "../c"},
      {"/tmp/cirrus-ci/working-dir/./**/*.xml", "/tmp/cirrus-ci/working-dir/**/*.xml"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(clean); i++) {
    cleanup_free char *c = artifacts_path_clean(clean[i][0]);
    if (strcmp(c, clean[i][1]))
      fail_msg("clean('%s') = '%s', want '%s'", clean[i][0], c, clean[i][1]);
  }
  assert_true(artifacts_path_is_within("/w", "/w"));
  assert_true(artifacts_path_is_within("/w/a", "/w"));
  assert_false(artifacts_path_is_within("/wx", "/w"));
  assert_false(artifacts_path_is_within("/", "/w"));
  assert_true(artifacts_path_is_within("/anything", "/"));
  assert_string_equal(artifacts_path_rel("/w/a/b", "/w"), "a/b");
  assert_string_equal(artifacts_path_rel("/w", "/w"), "");
  assert_string_equal(artifacts_path_rel("/w", "/"), "w");
  assert_null(artifacts_path_rel("/v/a", "/w"));
  static const char *const rel[][3] = {{"/w", "/w/a/b", "a/b"},
                                       {"/w/a/b", "/w", "../.."},
                                       {"/w/a", "/w/b/c", "../b/c"},
                                       {"/w", "/w", "."},
                                       {"/", "/x", "x"}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(rel); i++) {
    cleanup_free char *r = artifacts_path_relative(rel[i][0], rel[i][1]);
    assert_string_equal(r, rel[i][2]);
  }
}

/* ------------------------------------------------------------------ globs */

static void
test_glob_match(void **state)
{
  (void)state;
  static const struct {
    const char *pattern, *path;
    int want;
  } cases[] = {
      {"/w/*.txt", "/w/a.txt", 1},
      {"/w/*.txt", "/w/sub/a.txt", 0},
      {"/w/*.txt", "/w/.hidden.txt", 1}, /* doublestar does not hide dot files */
      {"/w/**/*.txt", "/w/a.txt", 1},    /* zero directories */
      {"/w/**/*.txt", "/w/x/y/a.txt", 1},
      {"/w/**/*.txt", "/w/x/y/a.txt.bak", 0},
      {"/w/**", "/w/a", 1},
      {"/w/**", "/w/a/b/c", 1},
      {"/w/build/**", "/w/build", 0}, /* as Glob: below only */
      {"/w/**/node_modules", "/w/node_modules", 1},
      {"/w/**/node_modules", "/w/a/b/node_modules", 1},
      {"/w/**/node_modules", "/w/a/node_modules/x", 0},
      {"/w/**/**/x", "/w/x", 1},
      {"/w/**/**/x", "/w/a/b/x", 1},
      {"/w/**/**", "/w/a", 1},
      {"/w/a**b", "/w/axxb", 1}, /* "**" inside a component is two stars */
      {"/w/a**b", "/w/ax/xb", 0},
      {"/w/?.log", "/w/a.log", 1},
      {"/w/?.log", "/w/ab.log", 0},
      {"/w/?", "/w/\xc3\xa9", 1}, /* one character, not one byte */
      {"/w/[a-c].txt", "/w/b.txt", 1},
      {"/w/[a-c].txt", "/w/d.txt", 0},
      {"/w/[^a-c].txt", "/w/d.txt", 1},
      {"/w/[^a-c].txt", "/w/a.txt", 0},
      {"/w/[\\]x].txt", "/w/].txt", 1},
      {"/w/{a,b}/x", "/w/b/x", 1},
      {"/w/{a,b}/x", "/w/c/x", 0},
      {"/w/{a,{b,c}d}", "/w/cd", 1},
      {"/w/{a,{b,c}d}", "/w/c", 0},
      {"/w/{src/main,test}/*.c", "/w/src/main/x.c", 1},
      {"/w/x.{c,}", "/w/x.", 1},
      {"/w/\\*.txt", "/w/*.txt", 1},
      {"/w/\\*.txt", "/w/a.txt", 0},
      {"/w/*a*b*c", "/w/xaybzc", 1},
      {"/w/*a*b*c", "/w/xaybz", 0},
      {"a/*", "a/b", 1},
      {"a/*", "/a/b", 0}, /* relative pattern, absolute path */
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++) {
    struct ci_error *err = NULL;
    int got = artifacts_glob_match(cases[i].pattern, cases[i].path, &err);
    if (got != cases[i].want)
      fail_msg("match('%s', '%s') = %d, want %d", cases[i].pattern, cases[i].path, got,
               cases[i].want);
  }
  const char *bad[] = {"/w/[", "/w/[]", "/w/{a", "/w/a\\", "/w/[a-]", "/w/[-a]"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct ci_error *err = NULL;
    if (artifacts_glob_match(bad[i], "/w/a", &err) >= 0)
      fail_msg("'%s' should be a malformed pattern", bad[i]);
    assert_non_null(strstr(err->msg, "invalid glob pattern"));
    ci_error_free(&err);
  }
  assert_true(artifacts_glob_has_meta("a/*.c"));
  assert_true(artifacts_glob_has_meta("a/{b,c}"));
  assert_false(artifacts_glob_has_meta("a/b.c"));
}

static const struct artifacts_path wd_listing[] = {
    {"./a.txt", false},       {"./b.txt", false},
    {"./reports", true},      {"./reports/junit.xml", false},
    {"./reports/sub", true},  {"./reports/sub/x.xml", false},
    {"./build", true},        {"./build/out", false},
    {"./logs", true},         {"./logs/one.log", false},
    {"./a.bin", false},       {"./c.bin", false},
    {"../escape.txt", false}, {"/etc/passwd", false},
};

static void
test_expand(void **state)
{
  (void)state;
  struct ci_error *err = NULL;
  struct artifacts_matches m = ARTIFACTS_MATCHES_INIT;
  const char *pats[] = {"*.txt",         "reports/**/*.xml", "build",
                        "/w/logs/*.log", "{a,b}.bin",        "nothing/*"};
  assert_int_equal(artifacts_expand(pats, CI_ARRAY_SIZE(pats), "/w/", wd_listing,
                                    CI_ARRAY_SIZE(wd_listing), &m, &err),
                   0);
  assert_int_equal(m.n, 6);
  assert_string_equal(m.v[0].pattern, "/w/*.txt");
  assert_int_equal(m.v[0].files.n, 2);
  assert_string_equal(m.v[0].files.v[0], "a.txt");
  assert_string_equal(m.v[0].files.v[1], "b.txt");
  assert_int_equal(m.v[1].files.n, 2);
  assert_string_equal(m.v[1].files.v[0], "reports/junit.xml");
  assert_string_equal(m.v[1].files.v[1], "reports/sub/x.xml");
  assert_int_equal(m.v[2].files.n, 0); /* a folder is matched but not uploaded */
  assert_int_equal(m.v[2].dirs.n, 1);
  assert_string_equal(m.v[2].dirs.v[0], "build");
  assert_int_equal(m.v[3].files.n, 1);
  assert_string_equal(m.v[3].files.v[0], "logs/one.log");
  assert_int_equal(m.v[4].files.n, 1);
  assert_string_equal(m.v[4].files.v[0], "a.bin");
  assert_int_equal(m.v[5].files.n + m.v[5].dirs.n, 0);
  char buf[256];
  snprintf(buf, sizeof(buf), ARTIFACTS_MSG_UPLOADING, m.v[0].files.n, m.v[0].pattern);
  assert_string_equal(buf, "Uploading 2 artifacts for /w/*.txt");

  const char *outside[][1] = {{"../secret/*"}, {"/etc/passwd"}, {"/tmp/**/x"}, {"{a,../b}"}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(outside); i++) {
    assert_true(
        artifacts_expand(outside[i], 1, "/w", wd_listing, CI_ARRAY_SIZE(wd_listing), &m, &err) < 0);
    assert_non_null(strstr(err->msg, "path is outside of CIRRUS_WORKING_DIR"));
    ci_error_free(&err);
    assert_int_equal(m.n, 0);
  }
  const char *bad[] = {"x/[a"};
  assert_true(artifacts_expand(bad, 1, "/w", wd_listing, 2, &m, &err) < 0);
  ci_error_free(&err);
  artifacts_matches_release(&m);
}

/* ------------------------------------------------------------------ storing */

struct sandbox {
  char *base;
  char *dir;     /* the artifacts directory (not created) */
  char *outside; /* must never change */
  char *victim;
};

static int
sb_setup(void **state)
{
  struct sandbox *sb = xcalloc(1, sizeof(*sb));
  sb->base = mk_tmpdir("artifacts");
  sb->dir = xasprintf("%s/artifacts", sb->base);
  sb->outside = xasprintf("%s/outside", sb->base);
  sb->victim = xasprintf("%s/victim", sb->outside);
  assert_int_equal(mkdir(sb->outside, 0755), 0);
  write_text(sb->victim, "original\n");
  *state = sb;
  return 0;
}

static int
sb_teardown(void **state)
{
  struct sandbox *sb = *state;
  /* nothing outside ever changes */
  cleanup_free char *v = read_text(sb->victim);
  assert_non_null(v);
  assert_string_equal(v, "original\n");
  assert_int_equal(count_entries(sb->outside, ""), 1);
  rm_rf(sb->base);
  free(sb->base);
  free(sb->dir);
  free(sb->outside);
  free(sb->victim);
  free(sb);
  return 0;
}

static char *read_textf(const char *fmt, ...) CI_PRINTF(1, 2);
static char *
read_textf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *p = xvasprintf(fmt, ap);
  va_end(ap);
  return read_text(p);
}

static char *
fixture(const char *name, size_t *len)
{
  cleanup_free char *p = xasprintf("%s/cache/junit/%s", CI_TEST_DATA_DIR, name);
  char *out = NULL;
  struct ci_error *err = NULL;
  if (ci_read_file(p, 1 << 20, &out, len, &err) < 0)
    fail_msg("%s", err->msg);
  return out;
}

static int
save(const struct sandbox *sb, const char *task, const char *name, const struct ci_strv *only,
     const char *format, const struct tent *v, size_t n, struct artifacts_result *res,
     struct ci_error **err)
{
  struct artifacts_save_opts o = {sb ? sb->dir : NULL, task, name,  "/tmp/cirrus-ci/working-dir",
                                  "/tmp/cirrus-ci",    only, format};
  cleanup_close int fd = tar_fd(v, n, false);
  return artifacts_save_tar(&o, fd, res, err);
}

static void
test_store(void **state)
{
  struct sandbox *sb = *state;
  struct ci_error *err = NULL;
  size_t len;
  cleanup_free char *junit = fixture("gradle-java.xml", &len);
  const struct tent t[] = {
      {"working-dir", 'd', NULL, 0, 0},
      {"working-dir/data.txt", 'f', "hello\n", 0644, 0},
      {"working-dir/other.txt", 'f', "not selected\n", 0644, 0},
      {"working-dir/reports", 'd', NULL, 0755, 0},
      {"working-dir/reports/junit.xml", 'f', junit, 0644, 0},
      {"working-dir/reports/link", 'l', "junit.xml", 0, 0},
      {"working-dir/reports/copy", 'h', "working-dir/reports/junit.xml", 0, 0},
  };
  struct ci_strv only = CI_STRV_INIT;
  ci_strv_push(&only, "data.txt");
  ci_strv_push(&only, "./reports/junit.xml");
  ci_strv_push(&only, "reports/link");
  ci_strv_push(&only, "reports/copy");
  struct artifacts_result res = ARTIFACTS_RESULT_INIT;
  int ret = save(sb, "main", "text", &only, "JUnit", t, CI_ARRAY_SIZE(t), &res, &err);
  if (ret < 0)
    fail_msg("%s", err->msg);
  cleanup_free char *data = read_textf("%s/main/text/data.txt", sb->dir);
  assert_string_equal(data, "hello\n");
  cleanup_free char *copy = xasprintf("%s/main/text/reports/copy", sb->dir);
  cleanup_free char *copied = read_text(copy);
  assert_string_equal(copied, junit);
  assert_int_equal(file_mode("%s/main/text/data.txt", sb->dir) & 07777, 0600);
  assert_int_equal(file_mode("%s/main/text/reports/junit.xml", sb->dir) & 07777, 0600);
  assert_true(S_ISREG(file_mode("%s", copy)));
  assert_int_equal(file_mode("%s/main", sb->dir) & 07777, 0700);
  assert_int_equal(file_mode("%s/main/text", sb->dir) & 07777, 0700);
  assert_int_equal(file_mode("%s/main/text/reports", sb->dir) & 07777, 0700);
  assert_int_equal(file_mode("%s/main/text/other.txt", sb->dir), 0);    /* not selected */
  assert_int_equal(file_mode("%s/main/text/reports/link", sb->dir), 0); /* symlinks skipped */
  assert_int_equal(res.stored.n, 3);
  assert_string_equal(res.stored.v[2], "reports/copy");
  assert_int_equal(res.skipped.n, 1);
  assert_string_equal(res.skipped.v[0], "reports/link");
  assert_int_equal(res.bytes, 6 + 2 * strlen(junit));
  assert_int_equal(res.annotations.n, 6); /* the report and its hard-linked copy */
  assert_int_equal(res.annotations.v[2].level, ARTIFACTS_FAILURE);
  assert_string_equal(res.annotations.v[2].path, "LibraryTest.java");

  /* a second run truncates and re-protects what is there; a planted symlink or FIFO at a
   * file's place is replaced, never followed */
  cleanup_free char *data_path = xasprintf("%s/main/text/data.txt", sb->dir);
  write_text(data_path, "a much longer previous content\n");
  assert_int_equal(chmod(data_path, 0644), 0);
  cleanup_free char *junit_path = xasprintf("%s/main/text/reports/junit.xml", sb->dir);
  assert_int_equal(unlink(junit_path), 0);
  assert_int_equal(symlink(sb->victim, junit_path), 0);
  assert_int_equal(unlink(copy), 0);
  assert_int_equal(mkfifo(copy, 0644), 0);
  artifacts_result_release(&res);
  ret = save(sb, "main", "text", &only, NULL, t, CI_ARRAY_SIZE(t), &res, &err);
  if (ret < 0)
    fail_msg("%s", err->msg);
  cleanup_free char *data2 = read_text(data_path);
  assert_string_equal(data2, "hello\n");
  assert_int_equal(file_mode("%s", data_path) & 07777, 0600);
  assert_true(S_ISREG(file_mode("%s", junit_path)));
  assert_true(S_ISREG(file_mode("%s", copy)));
  assert_int_equal(res.annotations.n, 0); /* no format */

  /* without `only`: every regular file below the working directory */
  artifacts_result_release(&res);
  assert_int_equal(save(sb, "Tests: Linux", "binary", NULL, NULL, t, CI_ARRAY_SIZE(t), &res, &err),
                   0);
  assert_int_equal(res.stored.n, 4);
  assert_true(S_ISREG(file_mode("%s/Tests: Linux/binary/other.txt", sb->dir)));

  artifacts_result_release(&res);
  ci_strv_release(&only);
}

static void
test_store_annotations_only(void **state)
{
  struct sandbox *sb = *state;
  struct ci_error *err = NULL;
  size_t len;
  cleanup_free char *junit = fixture("pytest.xml", &len);
  const struct tent t[] = {{"working-dir/report.xml", 'f', junit, 0, 0},
                           {"working-dir/copy.xml", 'h', "working-dir/report.xml", 0, 0}};
  struct artifacts_result res = ARTIFACTS_RESULT_INIT;
  /* no --artifacts-dir: nothing is written, the report is still parsed; an unsafe task
   * name does not matter then */
  assert_int_equal(save(NULL, "a/b", "x.y", NULL, "junit", t, 2, &res, &err), 0);
  assert_int_equal(res.annotations.n, 3);
  assert_int_equal(res.stored.n, 2);
  assert_int_equal(count_entries(sb->base, ""), 1); /* only outside/ */
  artifacts_result_release(&res);

  /* a report that does not parse: files are stored, the error comes at the end */
  const struct tent bad[] = {{"working-dir/bad.xml", 'f', "<testsuite><testcase>", 0, 0},
                             {"working-dir/good.txt", 'f', "fine", 0, 0}};
  assert_true(save(sb, "main", "junit", NULL, "junit", bad, 2, &res, &err) < 0);
  assert_non_null(strstr(err->msg, "bad.xml"));
  ci_error_free(&err);
  assert_int_equal(res.stored.n, 2);
  assert_true(S_ISREG(file_mode("%s/main/junit/good.txt", sb->dir)));
  artifacts_result_release(&res);
}

static void
test_store_unsafe_names(void **state)
{
  struct sandbox *sb = *state;
  const struct tent t[] = {{"working-dir/a", 'f', "a", 0, 0}};
  const char *names[][2] = {
      {"../evil", "binary"}, {"main", ".."}, {"main", "a/b"}, {"", "x"}, {"main", "x.y"}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(names); i++) {
    struct ci_error *err = NULL;
    struct artifacts_result res = ARTIFACTS_RESULT_INIT;
    assert_int_equal(save(sb, names[i][0], names[i][1], NULL, NULL, t, 1, &res, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "cannot name a directory"));
    ci_error_free(&err);
    artifacts_result_release(&res);
  }
  assert_int_equal(file_mode("%s", sb->dir), 0); /* not even the directory was created */
}

static void
test_store_hostile(void **state)
{
  struct sandbox *sb = *state;
  cleanup_free char *victim_rel = xasprintf("working-dir/../../..%s", sb->victim);
  const struct {
    struct tent t[2];
    size_t n;
    const char *msg;
  } cases[] = {
      {{{victim_rel, 'f', "pwned", 0, 0}}, 1, "contains '..'"},
      {{{"working-dir/a/../../x", 'f', "pwned", 0, 0}}, 1, "contains '..'"},
      {{{"/etc/passwd", 'f', "pwned", 0, 0}}, 1, "absolute path"},
      {{{"elsewhere/file", 'f', "pwned", 0, 0}}, 1, "outside of the working directory"},
      {{{"working-dir/h", 'h', "elsewhere/file", 0, 0}}, 1, "outside of the working directory"},
      {{{"working-dir/h", 'h', "../x", 0, 0}}, 1, "contains '..'"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++) {
    struct ci_error *err = NULL;
    struct artifacts_result res = ARTIFACTS_RESULT_INIT;
    assert_true(save(sb, "main", "evil", NULL, NULL, cases[i].t, cases[i].n, &res, &err) < 0);
    if (!strstr(err->msg, cases[i].msg))
      fail_msg("case %zu: '%s' lacks '%s'", i, err->msg, cases[i].msg);
    assert_int_equal(err->code, CI_EPROTO);
    ci_error_free(&err);
    assert_int_equal(res.stored.n, 0);
    artifacts_result_release(&res);
  }

  /* a symlink entry, then a file "through" it: the link is never created, so the file lands
   * in a real directory inside the artifacts directory */
  struct ci_error *err = NULL;
  struct artifacts_result res = ARTIFACTS_RESULT_INIT;
  const struct tent through[] = {{"working-dir/evil", 'l', sb->outside, 0, 0},
                                 {"working-dir/evil/victim", 'f', "pwned", 0, 0}};
  assert_int_equal(save(sb, "main", "evil", NULL, NULL, through, 2, &res, &err), 0);
  assert_true(S_ISDIR(file_mode("%s/main/evil/evil", sb->dir)));
  cleanup_free char *inside = read_textf("%s/main/evil/evil/victim", sb->dir);
  assert_string_equal(inside, "pwned");
  assert_int_equal(res.skipped.n, 1);
  artifacts_result_release(&res);

  /* a symlink planted in the artifacts directory is refused, not followed */
  cleanup_free char *planted = xasprintf("%s/main/evil/planted", sb->dir);
  assert_int_equal(symlink(sb->outside, planted), 0);
  const struct tent via[] = {{"working-dir/planted/victim", 'f', "pwned", 0, 0}};
  assert_true(save(sb, "main", "evil", NULL, NULL, via, 1, &res, &err) < 0);
  assert_non_null(strstr(err->msg, "symbolic link"));
  ci_error_free(&err);
  artifacts_result_release(&res);

  /* so is a symlinked task directory */
  cleanup_free char *task = xasprintf("%s/linked", sb->dir);
  assert_int_equal(symlink(sb->outside, task), 0);
  const struct tent plain[] = {{"working-dir/victim", 'f', "pwned", 0, 0}};
  assert_true(save(sb, "linked", "x", NULL, NULL, plain, 1, &res, &err) < 0);
  assert_non_null(strstr(err->msg, "symbolic link"));
  ci_error_free(&err);
  artifacts_result_release(&res);

  /* a directory where a file goes is an error */
  cleanup_free char *dirpath = xasprintf("%s/main/evil/victim", sb->dir);
  assert_int_equal(mkdir(dirpath, 0700), 0);
  assert_true(save(sb, "main", "evil", NULL, NULL, plain, 1, &res, &err) < 0);
  assert_non_null(strstr(err->msg, "a directory is in the way"));
  ci_error_free(&err);
  artifacts_result_release(&res);

  /* garbage instead of a tar */
  cleanup_close int fd = tmp_fd();
  assert_int_equal(write(fd, "this is not a tar archive at all", 32), 32);
  lseek(fd, 0, SEEK_SET);
  struct artifacts_save_opts o = {sb->dir, "main", "x", "/w", "/", NULL, NULL};
  assert_true(artifacts_save_tar(&o, fd, &res, &err) < 0);
  ci_error_free(&err);
  artifacts_result_release(&res);
}

/* ------------------------------------------------------------------ annotations */

static void
expect(const struct artifacts_annotation *a, enum artifacts_level level, const char *message,
       const char *path, int64_t line)
{
  assert_int_equal(a->level, level);
  assert_string_equal(a->message, message);
  assert_string_equal(a->path, path);
  assert_int_equal(a->start_line, line);
  assert_int_equal(a->end_line, line);
}

static void
parse_fixture(const char *name, struct artifacts_annotations *out)
{
  size_t len;
  cleanup_free char *data = fixture(name, &len);
  struct ci_error *err = NULL;
  if (artifacts_parse_annotations("junit", name, data, len, out, &err) < 0)
    fail_msg("%s", err->msg);
}

static void
test_junit(void **state)
{
  (void)state;
  struct artifacts_annotations a = ARTIFACTS_ANNOTATIONS_INIT;
  parse_fixture("gradle-java.xml", &a);
  assert_int_equal(a.n, 3);
  expect(&a.v[0], ARTIFACTS_NOTICE, "com.example.LibraryTest.returnsTrue", "", 0);
  expect(&a.v[1], ARTIFACTS_NOTICE, "com.example.LibraryTest.parsesConfig", "", 0);
  /* the junit frames are skipped: the location is the test's own line */
  expect(&a.v[2], ARTIFACTS_FAILURE, "com.example.LibraryTest.someLibraryMethodReturnsTrue",
         "LibraryTest.java", 21);
  assert_true(ci_str_has_prefix(a.v[2].raw_details,
                                "java.lang.AssertionError: expected <true>\n\tat org.junit."));
  artifacts_annotations_release(&a);

  parse_fixture("pytest.xml", &a);
  assert_int_equal(a.n, 3); /* the skipped test gives nothing */
  expect(&a.v[0], ARTIFACTS_NOTICE, "tests.test_math.test_add", "tests/test_math.py", 3);
  /* file= and line= attributes win over the guess (test_math.py:8) */
  expect(&a.v[1], ARTIFACTS_FAILURE, "tests.test_math.test_div", "tests/test_math.py", 6);
  assert_non_null(strstr(a.v[1].raw_details, ">       assert divide(1, 2) == 2\n"));
  /* an <error> is a failure too */
  expect(&a.v[2], ARTIFACTS_FAILURE, "tests.test_db.test_connect", "conftest.py", 14);
  assert_non_null(strstr(a.v[2].raw_details, "return connect('localhost')"));
  artifacts_annotations_release(&a);

  parse_fixture("nested-latin1.xml", &a);
  assert_int_equal(a.n, 3);
  expect(&a.v[0], ARTIFACTS_FAILURE, "com.example.Caf\xc3\xa9Test.handles \xc3\xa9t\xc3\xa9", "",
         0);
  assert_string_equal(a.v[0].raw_details, "kotlin.AssertionError"); /* the type */
  expect(&a.v[1], ARTIFACTS_FAILURE, "com.example.Caf\xc3\xa9Test.only message", "", 0);
  assert_string_equal(a.v[1].raw_details, "");
  /* CR LF folded; the kotlin frame skipped */
  expect(&a.v[2], ARTIFACTS_FAILURE, "com.example.TopTest.stack", "TopTest.kt", 41);
  assert_string_equal(a.v[2].raw_details, "kotlin.AssertionError: boom\n\tat "
                                          "kotlin.test.AssertionsKt.fail(Assertions.kt:12)\n\tat "
                                          "com.example.TopTest.stack(TopTest.kt:41)\n");
  artifacts_annotations_release(&a);
}

static void
test_xml_robustness(void **state)
{
  (void)state;
  static const struct {
    const char *doc, *msg;
  } bad[] = {
      {"<testsuite><testcase>", "not closed"},
      {"<testsuite></testcase>", "does not match"},
      {"</testsuite>", "end tag without a start tag"},
      {"<testsuite name=x/>", "quoted attribute value"},
      {"<testsuite name=\"a<b\"/>", "unescaped '<'"},
      {"<t>&nbsp;</t>", "unknown entity"},
      {"<t>&#0;</t>", "invalid character reference"},
      {"<t>&#x110000;</t>", "out of range"},
      {"<t>&#xD800;</t>", "invalid character reference"},
      {"<!DOCTYPE t [<!ENTITY lol \"lol\">]><t>&lol;</t>", "entity declarations"},
      {"<!DOCTYPE t SYSTEM \"file:///etc/passwd\"><t>&xxe;</t>", "unknown entity"},
      {"<t><!-- never closed</t>", "unterminated comment"},
      {"<t><![CDATA[ never closed</t>", "unterminated CDATA"},
      {"<t>\xff</t>", "invalid UTF-8"},
      {"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><t/>", "unsupported XML encoding"},
      {"\xff\xfe<\0t\0/\0>\0", "UTF-16"},
      {"<t a=\"1\"b=\"2\"/>", "whitespace between attributes"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct artifacts_annotations a = ARTIFACTS_ANNOTATIONS_INIT;
    struct ci_error *err = NULL;
    size_t len = strlen(bad[i].doc);
    if (i == CI_ARRAY_SIZE(bad) - 2)
      len = 10;
    if (artifacts_parse_annotations("junit", "r.xml", bad[i].doc, len, &a, &err) >= 0)
      fail_msg("case %zu parsed", i);
    if (!strstr(err->msg, bad[i].msg) || !strstr(err->msg, "r.xml"))
      fail_msg("case %zu: '%s' lacks '%s'", i, err->msg, bad[i].msg);
    assert_int_equal(err->code, CI_EPROTO);
    ci_error_free(&err);
    assert_int_equal(a.n, 0);
  }
  /* deep nesting is bounded */
  struct ci_buf deep = CI_BUF_INIT;
  for (int i = 0; i < 10000; i++)
    ci_buf_adds(&deep, "<a>");
  struct artifacts_annotations a = ARTIFACTS_ANNOTATIONS_INIT;
  struct ci_error *err = NULL;
  assert_true(artifacts_parse_annotations("junit", "deep.xml", deep.s, deep.len, &a, &err) < 0);
  assert_non_null(strstr(err->msg, "nested too deeply"));
  ci_error_free(&err);
  ci_buf_release(&deep);
  /* empty documents, several roots, a BOM, and text at the top are fine */
  static const char two_roots[] = "<testsuite><testcase classname=\"A\" name=\"x\"/></testsuite>"
                                  "<testsuite><testcase classname=\"B\" name=\"y\"/></testsuite>";
  const char *ok[] = {"", "  \n", "\xef\xbb\xbf<testsuite name=\"a\"/>", two_roots,
                      "text <x/> more"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(ok); i++) {
    if (artifacts_parse_annotations("junit", "ok.xml", ok[i], strlen(ok[i]), &a, &err) < 0)
      fail_msg("case %zu: %s", i, err->msg);
  }
  assert_int_equal(a.n, 2);
  assert_string_equal(a.v[1].message, "B.y");
  artifacts_annotations_release(&a);
  /* unknown formats are ignored, as upstream */
  assert_false(artifacts_format_is_known("nunit"));
  assert_true(artifacts_format_is_known("GolangCI"));
  assert_int_equal(artifacts_parse_annotations("nunit", "x", "<garbage", 8, &a, &err), 0);
  assert_int_equal(a.n, 0);
}

static void
parse_ok(const char *format, const char *doc, struct artifacts_annotations *a)
{
  struct ci_error *err = NULL;
  if (artifacts_parse_annotations(format, format, doc, strlen(doc), a, &err) < 0)
    fail_msg("%s: %s", format, err->msg);
}

static void
test_other_formats(void **state)
{
  (void)state;
  struct artifacts_annotations a = ARTIFACTS_ANNOTATIONS_INIT;
  parse_ok("cirrus",
           "{\"level\": \"warning\", \"message\": \"deprecated call\", \"path\": \"cmd/main.go\", "
           "\"start_line\": 12, \"end_line\": 14}\n"
           "{\"level\": \"failure\", \"message\": \"TestParse failed\", \"raw_details\": "
           "\"parse_test.go:40: want 2\", \"path\": \"parse_test.go\", \"start_line\": 40, "
           "\"end_line\": 40, \"start_column\": 3}\n{\"Message\": \"plain notice\"}",
           &a);
  assert_int_equal(a.n, 3);
  assert_int_equal(a.v[0].level, ARTIFACTS_WARNING);
  assert_int_equal(a.v[0].end_line, 14);
  assert_int_equal(a.v[1].level, ARTIFACTS_FAILURE);
  assert_string_equal(a.v[1].raw_details, "parse_test.go:40: want 2");
  assert_int_equal(a.v[1].start_column, 3);
  assert_int_equal(a.v[2].level, ARTIFACTS_NOTICE);
  assert_string_equal(a.v[2].message, "plain notice"); /* keys match case-insensitively */
  artifacts_annotations_release(&a);

  parse_ok("golangci",
           "{\"Issues\":[{\"FromLinter\":\"gosimple\",\"Text\":\"S1007: should use raw "
           "string\",\"SourceLines\":[\"x\"],\"Pos\":{\"Filename\":\"util/location.go\","
           "\"Offset\":220,\"Line\":11,\"Column\":16}}],\"Report\":{\"Linters\":[]}}",
           &a);
  assert_int_equal(a.n, 1);
  expect(&a.v[0], ARTIFACTS_FAILURE, "S1007: should use raw string (gosimple)", "util/location.go",
         11);
  assert_int_equal(a.v[0].start_column, 16);
  assert_int_equal(a.v[0].end_column, 0);
  artifacts_annotations_release(&a);
  parse_ok("golangci", "{\"Issues\":null}", &a);
  assert_int_equal(a.n, 0);

  parse_ok("eslint",
           "[{\"filePath\":\"/w/src/app.js\",\"messages\":[{\"ruleId\":\"no-unused-vars\","
           "\"severity\":2,\"message\":\"'x' is defined but never used.\",\"line\":3,"
           "\"column\":7},{\"ruleId\":null,\"severity\":1,\"message\":\"Parsing\",\"line\":1,"
           "\"column\":1}],\"errorCount\":1}]",
           &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_FAILURE, "no-unused-vars: 'x' is defined but never used.",
         "/w/src/app.js", 3);
  assert_int_equal(a.v[0].end_column, 7);
  expect(&a.v[1], ARTIFACTS_WARNING, ": Parsing", "/w/src/app.js", 1);
  artifacts_annotations_release(&a);

  parse_ok("rubocop",
           "{\"files\":[{\"path\":\"lib/calc.rb\",\"offenses\":[{\"severity\":\"convention\","
           "\"message\":\"Use snake_case.\",\"cop_name\":\"Naming/MethodName\",\"corrected\":false,"
           "\"location\":{\"line\":4,\"column\":7}},{\"severity\":\"error\",\"message\":\"Fixed\","
           "\"cop_name\":\"Lint/X\",\"corrected\":true,\"location\":{\"line\":9,\"column\":1}},"
           "{\"severity\":\"info\",\"message\":\"ignored\",\"cop_name\":\"I\"}]}]}",
           &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_NOTICE, "Naming/MethodName: Use snake_case.", "lib/calc.rb", 4);
  expect(&a.v[1], ARTIFACTS_NOTICE, "Lint/X: Fixed", "lib/calc.rb", 9); /* corrected */
  artifacts_annotations_release(&a);

  parse_ok("rspec",
           "{\"examples\":[{\"status\":\"passed\",\"full_description\":\"ok\"},"
           "{\"status\":\"failed\",\"full_description\":\"Calc adds\",\"file_path\":"
           "\"./spec/calc_spec.rb\",\"line_number\":5,\"exception\":{\"message\":\"expected 3\"}},"
           "{\"status\":\"pending\",\"full_description\":\"Calc later\",\"file_path\":"
           "\"spec//calc_spec.rb\",\"line_number\":9,\"pending_message\":\"soon\"}]}",
           &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_FAILURE, "Calc adds", "spec/calc_spec.rb", 5);
  assert_string_equal(a.v[0].raw_details, "expected 3");
  expect(&a.v[1], ARTIFACTS_NOTICE, "Calc later", "spec/calc_spec.rb", 9);
  assert_string_equal(a.v[1].raw_details, "soon");
  artifacts_annotations_release(&a);

  parse_ok("qodana",
           "{\"version\":\"2\",\"listProblem\":[{\"severity\":\"Critical\",\"comment\":\"NPE\","
           "\"detailsInfo\":\"may be null\",\"sources\":[{\"path\":\"A.java\",\"line\":3,"
           "\"offset\":5},{\"path\":\"B.java\",\"line\":4}]},{\"severity\":\"moderate\","
           "\"comment\":\"m\",\"sources\":[{\"path\":\"C.java\",\"line\":1}]}]}",
           &a);
  assert_int_equal(a.n, 3);
  expect(&a.v[0], ARTIFACTS_FAILURE, "NPE", "A.java", 3);
  assert_int_equal(a.v[0].start_column, 5);
  expect(&a.v[2], ARTIFACTS_WARNING, "m", "C.java", 1);
  artifacts_annotations_release(&a);

  parse_ok("buf",
           "{\"path\":\"a.proto\",\"start_line\":2,\"end_line\":2,\"start_column\":1,"
           "\"end_column\":9,\"type\":\"FIELD_LOWER_SNAKE_CASE\",\"message\":\"use snake\"}\n"
           "{\"path\":\"b.proto\",\"start_line\":7,\"end_line\":7,\"message\":\"x\"}",
           &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_WARNING, "use snake", "a.proto", 2);
  artifacts_annotations_release(&a);

  parse_ok("swiftformat",
           "[{\"file\":\"Sources/A.swift\",\"line\":3,\"reason\":\"Remove semicolons.\","
           "\"rule_id\":\"semicolons\"}]",
           &a);
  assert_int_equal(a.n, 1);
  expect(&a.v[0], ARTIFACTS_WARNING, "semicolons: Remove semicolons.", "Sources/A.swift", 3);
  artifacts_annotations_release(&a);

  parse_ok("flutter",
           "[{\"event\":\"test.startedProcess\"}]\n"
           "{\"type\":\"testStart\",\"test\":{\"id\":1,\"name\":\"adds\",\"url\":"
           "\"file:///w/test/a_test.dart\",\"line\":10,\"column\":3}}\n"
           "{\"type\":\"testStart\",\"test\":{\"id\":2,\"name\":\"works\",\"line\":20}}\n"
           "{\"type\":\"error\",\"testID\":1,\"error\":\"Expected: 3\"}\n"
           "{\"type\":\"testDone\",\"testID\":2,\"result\":\"success\"}\n"
           "{\"type\":\"testDone\",\"testID\":1,\"result\":\"failure\"}\n",
           &a);
  assert_int_equal(a.n, 1);
  expect(&a.v[0], ARTIFACTS_FAILURE, "adds", "/w/test/a_test.dart", 10);
  assert_string_equal(a.v[0].raw_details, "Expected: 3");
  artifacts_annotations_release(&a);

  parse_ok("xclogparser",
           "[{\"errors\":[{\"title\":\"E\",\"detail\":\"d\",\"documentURL\":\"file:///w/A.swift\","
           "\"startingLineNumber\":1,\"endingLineNumber\":2,\"startingColumnNumber\":3,"
           "\"endingColumnNumber\":4},{\"title\":\"no url\"}],\"warnings\":[{\"title\":\"W\","
           "\"documentURL\":\"B.swift\",\"startingLineNumber\":5,\"endingLineNumber\":5}],"
           "\"notes\":[]}]",
           &a);
  assert_int_equal(a.n, 2);
  assert_string_equal(a.v[0].path, "/w/A.swift");
  assert_int_equal(a.v[0].end_line, 2);
  assert_int_equal(a.v[0].end_column, 4);
  expect(&a.v[1], ARTIFACTS_WARNING, "W", "B.swift", 5);
  artifacts_annotations_release(&a);

  parse_ok(
      "android-lint",
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<issues format=\"6\" by=\"lint 8.2\">\n"
      "<issue id=\"Unused\" severity=\"Warning\" message=\"Unused resource\" "
      "explanation=\"Remove it\"><location file=\"res/a.xml\" line=\"3\" column=\"5\"/>"
      "<location file=\"res/b.xml\" line=\" 4 \"/></issue>"
      "<issue id=\"Ign\" severity=\"Ignore\" message=\"ignored\"><location file=\"x\"/></issue>"
      "</issues>",
      &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_WARNING, "Unused resource", "res/a.xml", 3);
  assert_string_equal(a.v[0].raw_details, "Remove it");
  assert_int_equal(a.v[0].start_column, 5);
  expect(&a.v[1], ARTIFACTS_WARNING, "Unused resource", "res/b.xml", 4);
  artifacts_annotations_release(&a);

  parse_ok("boost",
           "<TestLog><TestSuite name=\"all\"><TestCase name=\"t1\"><Error file=\"t.cpp\" "
           "line=\"12\">check a == b has failed</Error></TestCase><TestSuite name=\"inner\">"
           "<TestCase name=\"t2\"><Error file=\"u.cpp\" line=\"3\">boom</Error></TestCase>"
           "</TestSuite></TestSuite></TestLog>",
           &a);
  assert_int_equal(a.n, 2);
  expect(&a.v[0], ARTIFACTS_FAILURE, "boom", "u.cpp", 3); /* nested suites first, as upstream */
  expect(&a.v[1], ARTIFACTS_FAILURE, "check a == b has failed", "t.cpp", 12);
  artifacts_annotations_release(&a);

  /* malformed reports name the file */
  static const char *const bad[][2] = {
      {"cirrus", "{\"level\": \"fatal\"}"},
      {"cirrus", "{\"level\": \"notice\"} [1]"},
      {"cirrus", "{\"message\": "},
      {"golangci", "{\"Issues\": [{\"Pos\": {\"Line\": \"eleven\"}}]}"},
      {"eslint", "{}"},
      {"android-lint", "<issues format=\"7\"/>"},
      {"android-lint", "<lint/>"},
      {"android-lint", "<issues><issue severity=\"Error\"><location line=\"x\"/></issue></issues>"},
      {"boost",
       "<TestLog><TestSuite><TestCase><Error line=\"?\"/></TestCase></TestSuite></TestLog>"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct ci_error *err = NULL;
    if (artifacts_parse_annotations(bad[i][0], "report.json", bad[i][1], strlen(bad[i][1]), &a,
                                    &err) >= 0)
      fail_msg("case %zu (%s) parsed", i, bad[i][0]);
    assert_non_null(strstr(err->msg, "report.json"));
    ci_error_free(&err);
  }
  artifacts_annotations_release(&a);
}

static void
test_normalize(void **state)
{
  (void)state;
  const struct artifacts_path listing[] = {
      {"src", true},   {"src/main.go", false},   {"src/pkg", true}, {"src/pkg/util.go", false},
      {"other", true}, {"other/util.go", false}, {"tests", true},   {"tests/test_math.py", false},
  };
  struct artifacts_annotations a = ARTIFACTS_ANNOTATIONS_INIT;
  const char *paths[] = {"/w/src/main.go", "main.go", "util.go",         "tests/test_math.py",
                         "nothere.c",      "",        "/elsewhere/x.go", "src"};
  const char *want[] = {"src/main.go",        "src/main.go", "src/pkg/util.go",
                        "tests/test_math.py", "nothere.c",   "",
                        "/elsewhere/x.go",    "src"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(paths); i++) {
    CI_GROW(a.v, a.alloc, a.n + 1);
    a.v[a.n++] = (struct artifacts_annotation){
        ARTIFACTS_NOTICE, xstrdup("m"), xstrdup(""), xstrdup(paths[i]), 1, 1, 0, 0};
  }
  artifacts_annotations_normalize(&a, "/w", listing, CI_ARRAY_SIZE(listing));
  for (size_t i = 0; i < CI_ARRAY_SIZE(paths); i++)
    if (strcmp(a.v[i].path, want[i]))
      fail_msg("'%s' normalized to '%s', want '%s'", paths[i], a.v[i].path, want[i]);
  artifacts_annotations_release(&a);
}

static void
test_github(void **state)
{
  (void)state;
  struct artifacts_annotation w = {ARTIFACTS_WARNING,
                                   (char *)"use of os.SEEK_START is deprecated",
                                   (char *)"",
                                   (char *)"main.go",
                                   35,
                                   35,
                                   0,
                                   0};
  cleanup_free char *l1 = artifacts_annotation_github(&w);
  assert_string_equal(l1, "::warning file=main.go,line=35,endLine=35,title=use of os.SEEK_START is "
                          "deprecated::");
  struct artifacts_annotation f = {ARTIFACTS_FAILURE,
                                   (char *)"TestMain() failed!",
                                   (char *)"main_test.go:18: expected a non-nil return",
                                   (char *)"main_test.go",
                                   18,
                                   18,
                                   0,
                                   0};
  cleanup_free char *l2 = artifacts_annotation_github(&f);
  assert_string_equal(l2, "::error file=main_test.go,line=18,endLine=18,title=TestMain() "
                          "failed!::main_test.go:18: expected a non-nil return");
  struct artifacts_annotation n = {ARTIFACTS_NOTICE,
                                   (char *)"a: b, 100%",
                                   (char *)"one\r\ntwo, 5%: x",
                                   (char *)"dir,x/a:b.c",
                                   0,
                                   0,
                                   0,
                                   0};
  cleanup_free char *l3 = artifacts_annotation_github(&n);
  assert_string_equal(l3, "::notice file=dir%2Cx/a%3Ab.c,line=0,endLine=0,title=a%3A b%2C "
                          "100%25::one%0D%0Atwo, 5%25: x");
  assert_null(strchr(l3, '\n'));
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_glob_match),
      cmocka_unit_test(test_expand),
      cmocka_unit_test_setup_teardown(test_store, sb_setup, sb_teardown),
      cmocka_unit_test_setup_teardown(test_store_annotations_only, sb_setup, sb_teardown),
      cmocka_unit_test_setup_teardown(test_store_unsafe_names, sb_setup, sb_teardown),
      cmocka_unit_test_setup_teardown(test_store_hostile, sb_setup, sb_teardown),
      cmocka_unit_test(test_junit),
      cmocka_unit_test(test_xml_robustness),
      cmocka_unit_test(test_other_formats),
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_github),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
