/* test/unit/test_bundle.c - runner/bundle.*: a container's "/" tar turned into an OCI runtime
 * bundle: what is kept, what is refused (hostile names, writes through symlinks, devices),
 * config.json, and an existing directory never touched. */
#define TEST_CACHE_HELPERS_ONLY
#include "test_cache.c"

#include "runner/bundle.h"
#include "backends/runtime/runtime.h"

#include <jansson.h>

/* Write a bundle of the entries into DIR/b; returns bundle_write's result. */
static int
write_bundle(const char *dir, const struct tent *v, size_t n, struct ci_error **err)
{
  cleanup_close int fd = tar_fd(v, n, false);
  char tar[64];
  snprintf(tar, sizeof tar, "/proc/self/fd/%d", fd);
  struct cfg_env img = CFG_ENV_INIT, env = CFG_ENV_INIT;
  cfg_env_set(&img, "PATH", "/image/bin:/bin");
  cfg_env_set(&img, "LANG", "C.UTF-8");
  cfg_env_set(&env, "LANG", "task-wins");
  cfg_env_set(&env, "CIRRUS_TASK_NAME", "broken build");
  cleanup_free char *b = xasprintf("%s/b", dir);
  struct bundle_spec spec = {.tar = tar,
                             .dir = b,
                             .image_env = &img,
                             .env = &env,
                             .cwd = "/tmp/cirrus-ci/working-dir",
                             .hostname = "box"};
  int r = bundle_write(&spec, err);
  cfg_env_release(&img);
  cfg_env_release(&env);
  return r;
}

static void
test_dir_name(void **state)
{
  (void)state;
  static const char *const cases[][2] = {
      {"broken build", "broken-build"}, {"Lint", "Lint"},     {"a/b", "a-b"},
      {"..", "-."},                     {".hidden", "-hidden"}, {"", "task"},
      {"tests (linux)", "tests--linux-"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++) {
    cleanup_free char *got = bundle_dir_name(cases[i][0]);
    if (strcmp(got, cases[i][1]))
      fail_msg("bundle_dir_name('%s') = '%s', want '%s'", cases[i][0], got, cases[i][1]);
  }
}

static void
test_rootfs_and_config(void **state)
{
  (void)state;
  cleanup_free char *d = mk_tmpdir("bundle");
  /* names as the backends give them: "/x" (docker), "./x" (builtin), "x" */
  static const struct tent v[] = {
      {"/", 'd', NULL, 0755, 0},
      {"/bin/", 'd', NULL, 0755, 0},
      {"/bin/sh", 'f', "#!shell", 0755, 0},
      {"./etc", 'd', NULL, 0755, 0},
      {"./etc/passwd", 'f', "root:x:0:0::/root:/bin/sh\n", 0644, 0},
      {"root/marker", 'f', "hello from the task\n", 0600, 0},
      {"/bin/ash", 'h', "/bin/sh", 0, 0},
      {"/proc/", 'd', NULL, 0555, 0},
      {"/proc/1/status", 'f', "kernel's", 0, 0},
      {"./sys/kernel/x", 'f', "kernel's", 0, 0},
      {"/dev/null", 'c', NULL, 0, 0},
      {"/weird-device", 'c', NULL, 0, 0},
      {"/tmp/cirrus-ci/working-dir/made", 'f', "made\n", 0, 0},
  };
  struct ci_error *err = NULL;
  if (write_bundle(d, v, CI_ARRAY_SIZE(v), &err) < 0)
    fail_msg("bundle_write: %s", err->msg);
  cleanup_free char *b = xasprintf("%s/b", d);
  cleanup_free char *marker = xasprintf("%s/rootfs/root/marker", b);
  cleanup_free char *m = read_text(marker);
  assert_non_null(m);
  assert_string_equal(m, "hello from the task\n");
  struct stat st, st2;
  cleanup_free char *sh = xasprintf("%s/rootfs/bin/sh", b);
  cleanup_free char *ash = xasprintf("%s/rootfs/bin/ash", b);
  assert_int_equal(stat(sh, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755);
  assert_int_equal(stat(ash, &st2), 0);
  assert_int_equal(st.st_ino, st2.st_ino); /* the hard link is one, inside the bundle */
  /* pseudo file systems: empty mount points; no device node anywhere */
  cleanup_free char *proc1 = xasprintf("%s/rootfs/proc/1", b);
  cleanup_free char *sysk = xasprintf("%s/rootfs/sys/kernel", b);
  cleanup_free char *dev = xasprintf("%s/rootfs/dev", b);
  cleanup_free char *devnull = xasprintf("%s/rootfs/dev/null", b);
  cleanup_free char *weird = xasprintf("%s/rootfs/weird-device", b);
  assert_int_equal(access(proc1, F_OK), -1);
  assert_int_equal(access(sysk, F_OK), -1);
  assert_int_equal(stat(dev, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(access(devnull, F_OK), -1);
  assert_int_equal(access(weird, F_OK), -1);
  cleanup_free char *made = xasprintf("%s/rootfs/tmp/cirrus-ci/working-dir/made", b);
  assert_int_equal(access(made, F_OK), 0);

  cleanup_free char *cfgp = xasprintf("%s/config.json", b);
  json_error_t je;
  json_t *c = json_load_file(cfgp, 0, &je);
  if (!c)
    fail_msg("config.json: %s", je.text);
  assert_string_equal(json_string_value(json_object_get(c, "ociVersion")), "1.0.2");
  assert_string_equal(json_string_value(json_object_get(json_object_get(c, "root"), "path")),
                      "rootfs");
  assert_string_equal(json_string_value(json_object_get(c, "hostname")), "box");
  json_t *p = json_object_get(c, "process");
  assert_string_equal(json_string_value(json_object_get(p, "cwd")),
                      "/tmp/cirrus-ci/working-dir");
  assert_true(json_is_true(json_object_get(p, "terminal")));
  /* the image's environment, the task's winning */
  bool lang = false, path = false, name = false;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(p, "env"), i, e) {
    const char *s = json_string_value(e);
    lang |= !strcmp(s, "LANG=task-wins");
    path |= !strcmp(s, "PATH=/image/bin:/bin");
    name |= !strcmp(s, "CIRRUS_TASK_NAME=broken build");
    assert_false(!strcmp(s, "LANG=C.UTF-8"));
  }
  assert_true(lang && path && name);
  bool has_user_ns = false;
  json_array_foreach(json_object_get(json_object_get(c, "linux"), "namespaces"), i, e)
    has_user_ns |= !strcmp(json_string_value(json_object_get(e, "type")), "user");
  assert_int_equal(has_user_ns, geteuid() != 0); /* unprivileged: root maps to the caller */
  /* the built-in runtime's default seccomp filter: allow all but the deny-list, EPERM */
  json_t *sc = json_object_get(json_object_get(c, "linux"), "seccomp");
  assert_non_null(sc);
  assert_string_equal(json_string_value(json_object_get(sc, "defaultAction")), "SCMP_ACT_ALLOW");
#if defined(__x86_64__)
  bool x86 = false;
  json_array_foreach(json_object_get(sc, "architectures"), i, e) {
    x86 |= !strcmp(json_string_value(e), "SCMP_ARCH_X86");
  }
  assert_true(x86);
#endif
  json_t *calls = json_object_get(sc, "syscalls");
  bool keyctl = false, unshare = false;
  size_t persona = 0;
  json_array_foreach(calls, i, e) {
    assert_string_equal(json_string_value(json_object_get(e, "action")), "SCMP_ACT_ERRNO");
    assert_int_equal(json_integer_value(json_object_get(e, "errnoRet")), EPERM);
    size_t k;
    json_t *nm;
    json_array_foreach(json_object_get(e, "names"), k, nm) {
      keyctl |= !strcmp(json_string_value(nm), "keyctl");
      unshare |= !strcmp(json_string_value(nm), "unshare");
      if (!strcmp(json_string_value(nm), "personality")) {
        persona++;
        assert_int_equal(json_array_size(json_object_get(e, "args")), 1);
      }
    }
  }
  assert_true(keyctl);
  assert_false(unshare);
  assert_int_equal(persona, RT_SECCOMP_PERSONA_RULES + 1);
  json_decref(c);
  rm_rf(d);
}

/* CIRRUS_SECCOMP=unconfined: the bundle has no filter either. */
static void
test_unconfined(void **state)
{
  (void)state;
  cleanup_free char *d = mk_tmpdir("bundle");
  const struct tent v[] = {{"f", 'f', "x", 0, 0}};
  struct ci_error *err = NULL;
  setenv("CIRRUS_SECCOMP", "unconfined", 1);
  int r = write_bundle(d, v, 1, &err);
  unsetenv("CIRRUS_SECCOMP");
  if (r < 0)
    fail_msg("bundle_write: %s", err->msg);
  cleanup_free char *cfgp = xasprintf("%s/b/config.json", d);
  json_error_t je;
  json_t *c = json_load_file(cfgp, 0, &je);
  if (!c)
    fail_msg("config.json: %s", je.text);
  assert_non_null(json_object_get(c, "linux"));
  assert_null(json_object_get(json_object_get(c, "linux"), "seccomp"));
  json_decref(c);
  rm_rf(d);
}

/* ".." and writes through a symlink are refused: nothing lands outside the bundle. */
static void
test_hostile(void **state)
{
  (void)state;
  cleanup_free char *d = mk_tmpdir("bundle");
  cleanup_free char *outside = xasprintf("%s/outside", d);
  assert_int_equal(mkdir(outside, 0755), 0);
  const struct tent dotdot[] = {{"../../escaped", 'f', "x", 0, 0}};
  struct ci_error *err = NULL;
  assert_true(write_bundle(d, dotdot, 1, &err) < 0);
  ci_error_free(&err);
  cleanup_free char *esc = xasprintf("%s/escaped", d);
  assert_int_equal(access(esc, F_OK), -1);
  rm_rf(d);
  assert_int_equal(mkdir(d, 0700), 0);
  assert_int_equal(mkdir(outside, 0755), 0);

  /* The symlink is replaced by a directory of the bundle's (libarchive's SECURE_SYMLINKS
   * with UNLINK), never followed. */
  const struct tent through[] = {{"link", 'l', outside, 0, 0}, {"link/planted", 'f', "x", 0, 0}};
  if (write_bundle(d, through, 2, &err) < 0)
    ci_error_free(&err);
  cleanup_free char *planted = xasprintf("%s/planted", outside);
  assert_int_equal(access(planted, F_OK), -1);
  cleanup_free char *link = xasprintf("%s/b/rootfs/link", d);
  struct stat st;
  if (lstat(link, &st) == 0)
    assert_true(S_ISDIR(st.st_mode));

  /* an existing bundle directory is never written into */
  cleanup_free char *b = xasprintf("%s/b2", d);
  assert_int_equal(mkdir(b, 0755), 0);
  cleanup_close int fd = tar_fd(dotdot, 0, false);
  char tar[64];
  snprintf(tar, sizeof tar, "/proc/self/fd/%d", fd);
  struct cfg_env env = CFG_ENV_INIT;
  struct bundle_spec spec = {.tar = tar, .dir = b, .env = &env, .cwd = "/"};
  assert_true(bundle_write(&spec, &err) < 0);
  assert_non_null(strstr(err->msg, b));
  ci_error_free(&err);
  cleanup_free char *cfg = xasprintf("%s/config.json", b);
  assert_int_equal(access(cfg, F_OK), -1);
  rm_rf(d);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dir_name),
      cmocka_unit_test(test_rootfs_and_config),
      cmocka_unit_test(test_unconfined),
      cmocka_unit_test(test_hostile),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
