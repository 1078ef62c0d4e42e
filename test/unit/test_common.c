/* Unit tests for common/: errors, buffers, string vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_error_prefix(void **state)
{
  struct ci_error *err = NULL;
  int ret = ci_error_make(&err, -ENOENT, "cannot open '%s'", "x");
  assert_int_equal(ret, -ENOENT);
  assert_int_equal(ci_error_prefix(&err, "pulling '%s'", "img"), -ENOENT);
  assert_string_equal(err->msg, "pulling 'img': cannot open 'x'");
  ci_error_free(&err);
  assert_null(err);
}

static void
test_error_at(void **state)
{
  struct ci_error *err = NULL;
  struct ci_pos pos = {"f.yml", 3, 7};
  assert_int_equal(ci_error_at(&err, &pos, "bad %d", 1), CI_ECONFIG);
  assert_int_equal(err->pos.line, 3);
  assert_int_equal(err->pos.col, 7);
  assert_string_equal(err->msg, "bad 1");
  ci_error_free(&err);
  /* A NULL err only returns the code. */
  assert_int_equal(ci_error_make(NULL, -EIO, "x"), -EIO);
}

static void
test_buf(void **state)
{
  struct ci_buf b = CI_BUF_INIT;
  assert_string_equal(ci_buf_str(&b), "");
  for (int i = 0; i < 1000; i++)
    ci_buf_addf(&b, "%d,", i);
  assert_true(ci_str_has_prefix(ci_buf_str(&b), "0,1,2,"));
  assert_true(ci_str_has_suffix(ci_buf_str(&b), "998,999,"));
  char *s = ci_buf_take(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(ci_buf_str(&b), "");
  free(s);
  ci_buf_adds(&b, "a");
  ci_buf_addc(&b, 'b');
  assert_string_equal(b.s, "ab");
  ci_buf_reset(&b);
  assert_string_equal(ci_buf_str(&b), "");
  ci_buf_release(&b);
}

static void
test_strv(void **state)
{
  struct ci_strv sv = CI_STRV_INIT;
  for (int i = 0; i < 100; i++)
    ci_strv_push_take(&sv, xasprintf("s%d", i));
  assert_int_equal(sv.n, 100);
  assert_true(ci_strv_contains(&sv, "s42"));
  assert_false(ci_strv_contains(&sv, "s100"));
  ci_strv_release(&sv);
  assert_int_equal(sv.n, 0);
}

static void
test_read_file(void **state)
{
  struct ci_error *err = NULL;
  char *text = NULL;
  size_t len = 0;
  assert_true(ci_read_file("/nonexistent/x", 100, &text, &len, &err) < 0);
  assert_non_null(strstr(err->msg, "cannot open '/nonexistent/x'"));
  ci_error_free(&err);
  char path[] = "/tmp/ci-test-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "hello", 5), 5);
  close(fd);
  assert_int_equal(ci_read_file(path, 100, &text, &len, &err), 0);
  assert_string_equal(text, "hello");
  assert_int_equal(len, 5);
  free(text);
  assert_int_equal(ci_read_file(path, 4, &text, &len, &err), -EFBIG);
  ci_error_free(&err);
  unlink(path);
}

static void
test_mkdirs(void **state)
{
  char tmpl[] = "/tmp/cirrus-test-mkdirs.XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  cleanup_free char *deep = xasprintf("%s/a/b/c", tmpl);
  struct ci_error *err = NULL;
  assert_int_equal(ci_mkdirs(deep, 0700, &err), 0);
  struct stat st;
  assert_int_equal(stat(deep, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(ci_mkdirs(deep, 0700, &err), 0); /* existing: fine */
  /* A file in the way: an error that names the path. */
  cleanup_free char *file = xasprintf("%s/f", tmpl);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  cleanup_free char *under = xasprintf("%s/x", file);
  assert_true(ci_mkdirs(under, 0700, &err) < 0);
  assert_non_null(strstr(err->msg, under));
  ci_error_free(&err);
  cleanup_free char *rm = xasprintf("rm -rf '%s'", tmpl);
  assert_int_equal(system(rm), 0);
  (void)state;
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_prefix), cmocka_unit_test(test_error_at),
      cmocka_unit_test(test_buf),          cmocka_unit_test(test_strv),
      cmocka_unit_test(test_read_file),    cmocka_unit_test(test_mkdirs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
