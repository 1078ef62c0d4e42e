/* Data-driven configuration tests (curl's tests/data style).
 *
 * Each case is test/data/config/<case>.yml plus what it must produce:
 *   <case>.json       the resolved model, as `cirrus validate --json` prints it
 *   <case>.expected   every diagnostic, one per line: "LINE:COL: error|warning: message"
 *                     (no file = no diagnostic allowed)
 * and optionally:
 *   <case>.env        NAME=VALUE lines: the parser environment (added to the static one)
 *   <case>.affected   affected files, one per line (changesInclude)
 *   <case>.files/     project directory (Dockerfiles and their sources)
 * Adding a case means adding files, not code.  CIRRUS_TEST_UPDATE=1 rewrites the expected
 * files from the current output (review every change before committing it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA CI_TEST_DATA_DIR "/config"

static bool
file_exists(const char *p)
{
  struct stat st;
  return stat(p, &st) == 0;
}

static char *
read_or_null(const char *path)
{
  char *text = NULL;
  struct ci_error *err = NULL;
  if (ci_read_file(path, 64 << 20, &text, NULL, &err) < 0) {
    ci_error_free(&err);
    return NULL;
  }
  return text;
}

static void
write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *
format_diags(const struct cfg_file *f)
{
  struct ci_buf b = CI_BUF_INIT;
  for (size_t i = 0; i < f->ndiags; i++) {
    const struct cfg_diag *d = &f->diags[i];
    ci_buf_addf(&b, "%u:%u: %s: %s\n", d->pos.line, d->pos.col,
                d->level == CFG_DIAG_ERROR ? "error" : "warning", d->msg);
  }
  return ci_buf_take(&b);
}

static int failures;

static void
run_case(const char *name)
{
  char *yml = xasprintf("%s/%s.yml", DATA, name);
  char *text = read_or_null(yml);
  assert_non_null(text);

  struct cfg_env env = CFG_ENV_INIT;
  cfg_env_add_static(&env);
  char *envpath = xasprintf("%s/%s.env", DATA, name);
  char *envtext = read_or_null(envpath);
  if (envtext) {
    char *save = NULL;
    for (char *line = strtok_r(envtext, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      char *eq = strchr(line, '=');
      if (!eq)
        continue;
      *eq = '\0';
      cfg_env_set(&env, line, eq + 1);
    }
  }
  struct ci_strv affected = CI_STRV_INIT;
  char *affpath = xasprintf("%s/%s.affected", DATA, name);
  char *afftext = read_or_null(affpath);
  if (afftext) {
    char *save = NULL;
    for (char *line = strtok_r(afftext, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
      ci_strv_push(&affected, line);
  }
  char *files = xasprintf("%s/%s.files", DATA, name);
  struct cfg_options opts = {
      .env = &env,
      .affected_files = afftext ? &affected : NULL,
      .project_dir = file_exists(files) ? files : DATA,
  };
  struct cfg_file *f = cfg_parse(".cirrus.yml", text, strlen(text), &opts);

  bool update = getenv("CIRRUS_TEST_UPDATE") != NULL;
  char *diags = format_diags(f);
  char *exppath = xasprintf("%s/%s.expected", DATA, name);
  char *expected = read_or_null(exppath);
  if (update) {
    if (*diags)
      write_file(exppath, diags);
    else if (expected)
      unlink(exppath);
  } else if (strcmp(expected ? expected : "", diags) != 0) {
    fprintf(stderr, "[%s] diagnostics differ\n--- expected\n%s--- got\n%s", name,
            expected ? expected : "", diags);
    failures++;
  }

  char *jsonpath = xasprintf("%s/%s.json", DATA, name);
  if (f->nerrors == 0) {
    json_t *got = cfg_file_to_json(f);
    char *gots = json_dumps(got, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (update) {
      char *withnl = xasprintf("%s\n", gots);
      write_file(jsonpath, withnl);
      free(withnl);
    } else {
      json_error_t jerr;
      json_t *exp = json_load_file(jsonpath, 0, &jerr);
      if (!exp) {
        fprintf(stderr, "[%s] no valid %s.json: %s\n--- got\n%s\n", name, name, jerr.text, gots);
        failures++;
      } else if (!json_equal(exp, got)) {
        char *exps = json_dumps(exp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fprintf(stderr, "[%s] model differs\n--- expected\n%s\n--- got\n%s\n", name, exps, gots);
        free(exps);
        failures++;
      }
      json_decref(exp);
    }
    free(gots);
    json_decref(got);
  } else if (file_exists(jsonpath)) {
    if (update)
      unlink(jsonpath);
    else {
      fprintf(stderr, "[%s] has errors but a .json file expects a model\n", name);
      failures++;
    }
  }
  cfg_file_free(f);
  free(jsonpath);
  free(exppath);
  free(expected);
  free(diags);
  free(files);
  free(affpath);
  free(afftext);
  ci_strv_release(&affected);
  free(envpath);
  free(envtext);
  cfg_env_release(&env);
  free(text);
  free(yml);
}

static int
cmp_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_data_driven(void **state)
{
  DIR *d = opendir(DATA);
  assert_non_null(d);
  struct ci_strv names = CI_STRV_INIT;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 4 && !strcmp(de->d_name + l - 4, ".yml"))
      ci_strv_push_take(&names, xstrndup(de->d_name, l - 4));
  }
  closedir(d);
  qsort(names.v, names.n, sizeof(*names.v), cmp_names);
  const char *only = getenv("CIRRUS_TEST_CASE");
  size_t ran = 0;
  for (size_t i = 0; i < names.n; i++) {
    if (only && !strstr(names.v[i], only))
      continue;
    run_case(names.v[i]);
    ran++;
  }
  fprintf(stderr, "%zu configuration cases, %d failed\n", ran, failures);
  ci_strv_release(&names);
  assert_true(ran > 0);
  assert_int_equal(failures, 0);
}

/* ---- direct unit tests of the small parsers ---- */

static void
test_units(void **state)
{
  unsigned v;
  char *msg = NULL;
  assert_int_equal(cfg_parse_seconds("90", &v, &msg), 0);
  assert_int_equal(v, 5400);
  assert_int_equal(cfg_parse_seconds("30s", &v, &msg), 0);
  assert_int_equal(v, 30);
  assert_int_equal(cfg_parse_seconds("2h", &v, &msg), 0);
  assert_int_equal(v, 7200);
  assert_int_equal(cfg_parse_seconds("5M", &v, &msg), 0);
  assert_int_equal(v, 300);
  assert_int_equal(cfg_parse_seconds("5d", &v, &msg), -1);
  assert_string_equal(msg, "unsupported time unit suffix: \"d\"");
  free(msg);
  assert_int_equal(cfg_parse_seconds("abc", &v, &msg), -1);
  free(msg);
  assert_int_equal(cfg_parse_seconds("99999999999", &v, &msg), -1);
  free(msg);

  assert_int_equal(cfg_parse_megabytes("4", &v, &msg), 0);
  assert_int_equal(v, 4096);
  assert_int_equal(cfg_parse_megabytes("100", &v, &msg), 0);
  assert_int_equal(v, 100);
  assert_int_equal(cfg_parse_megabytes("512M", &v, &msg), 0);
  assert_int_equal(v, 512);
  assert_int_equal(cfg_parse_megabytes("12G", &v, &msg), 0);
  assert_int_equal(v, 12288);
  assert_int_equal(cfg_parse_megabytes("2Gi", &v, &msg), 0);
  assert_int_equal(v, 2048);
  assert_int_equal(cfg_parse_megabytes("3mb", &v, &msg), 0);
  assert_int_equal(v, 3);
  assert_int_equal(cfg_parse_megabytes("1T", &v, &msg), -1);
  assert_string_equal(msg, "unsupported digital information unit suffix: \"t\"");
  free(msg);
}

static void
test_env(void **state)
{
  struct cfg_env e = CFG_ENV_INIT;
  cfg_env_set(&e, "B", "2");
  cfg_env_set(&e, "A", "1");
  cfg_env_set(&e, "C", "3");
  cfg_env_set(&e, "B", "two");
  assert_int_equal(e.n, 3);
  assert_string_equal(e.v[0].key, "A");
  assert_string_equal(e.v[1].value, "two");
  assert_null(cfg_env_get(&e, "D"));
  cfg_env_unset(&e, "A");
  assert_int_equal(e.n, 2);
  assert_string_equal(e.v[0].key, "B");
  cfg_env_release(&e);
}

static void
test_lines(void **state)
{
  const char *text = "a: 1\r\nbb: 2\n\nlast";
  struct cfg_file *f = cfg_parse("x.yml", text, strlen(text), NULL);
  size_t len;
  const char *l = cfg_file_get_line(f, 1, &len);
  assert_int_equal(len, 4);
  assert_memory_equal(l, "a: 1", 4);
  l = cfg_file_get_line(f, 3, &len);
  assert_int_equal(len, 0);
  l = cfg_file_get_line(f, 4, &len);
  assert_int_equal(len, 4);
  assert_null(cfg_file_get_line(f, 5, &len));
  assert_null(cfg_file_get_line(f, 0, &len));
  cfg_file_free(f);
}

static void
test_discover(void **state)
{
  char dir[] = "/tmp/ci-discover-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *path = NULL;
  struct ci_error *err = NULL;
  assert_int_equal(cfg_discover(dir, &path, &err), -ENOENT);
  assert_non_null(strstr(err->msg, "neither .cirrus.yml"));
  ci_error_free(&err);
  char *star = xasprintf("%s/.cirrus.star", dir);
  write_file(star, "def main(): pass\n");
  assert_int_equal(cfg_discover(dir, &path, &err), -ENOTSUP);
  assert_non_null(strstr(err->msg, "Starlark configuration is not supported"));
  ci_error_free(&err);
  char *yml = xasprintf("%s/.cirrus.yml", dir), *yaml = xasprintf("%s/.cirrus.yaml", dir);
  write_file(yml, "");
  assert_int_equal(cfg_discover(dir, &path, &err), 0);
  assert_string_equal(path, yml);
  free(path);
  write_file(yaml, "");
  assert_int_equal(cfg_discover(dir, &path, &err), 0);
  assert_string_equal(path, yaml); /* .cirrus.yaml wins */
  free(path);
  unlink(star);
  unlink(yml);
  unlink(yaml);
  rmdir(dir);
  free(star);
  free(yml);
  free(yaml);
  struct cfg_file *f = NULL;
  assert_int_equal(cfg_load("x.txt", NULL, &f, &err), -EINVAL);
  ci_error_free(&err);
  assert_int_equal(cfg_load("x.star", NULL, &f, &err), -ENOTSUP);
  ci_error_free(&err);
  assert_true(cfg_load("/nonexistent/.cirrus.yml", NULL, &f, &err) < 0);
  assert_non_null(strstr(err->msg, "failed to read configuration"));
  ci_error_free(&err);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_units),  cmocka_unit_test(test_env),
      cmocka_unit_test(test_lines),  cmocka_unit_test(test_discover),
      cmocka_unit_test(test_data_driven),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
