/* Tests of backends/curl/curl_dl.c: what the user sees when libcurl cannot be loaded.  The
 * shim loads once per process, so the process runs with CIRRUS_TEST_LIBCURL pointing at a
 * missing file (set in main), and the one case that needs another library runs in a child. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/backend.h"
#include "backends/curl/curl_dl.h"
#include "backends/engine_http.h"
#include "backends/image/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MISSING "/nonexistent/libcurl.so.4"
#define WHY "cannot load " MISSING " (needed to talk to docker/podman and to registries): "

static void
assert_missing(const struct ci_error *err, const char *prefix)
{
  assert_non_null(err);
  cleanup_free char *want = xasprintf("%s" WHY, prefix);
  if (!ci_str_has_prefix(err->msg, want))
    fail_msg("got '%s', want it to start with '%s'", err->msg, want);
  /* then dlerror()'s own words */
  assert_non_null(strstr(err->msg, "No such file or directory"));
}

/* A library without curl's functions is refused by name.  Runs in a child, before anything
 * in this process loads (the outcome of the first load is kept for the process's life). */
static void
test_not_libcurl(void **state)
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("CIRRUS_TEST_LIBCURL", "libc.so.6", 1);
    struct ci_error *err = NULL;
    int ret = curl_dl_load(&err);
    _exit(ret == -ELIBBAD && err &&
                  !strcmp(err->msg,
                          "libc.so.6 has no curl_global_init (libcurl 7.88 or later is needed)")
              ? 0
              : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_load_missing(void **state)
{
  for (int i = 0; i < 2; i++) { /* the second call reports the first outcome again */
    cleanup_error struct ci_error *err = NULL;
    assert_int_equal(curl_dl_load(&err), -ELIBACC);
    assert_int_equal(err->code, -ELIBACC);
    assert_missing(err, "");
  }
  assert_int_equal(curl_dl_load(NULL), -ELIBACC);
}

static void
test_engine_http_new(void **state)
{
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct engine_http *http = NULL;
  cleanup_error struct ci_error *err = NULL;
  assert_true(engine_http_new(&loop, &http, &err) < 0);
  assert_null(http);
  assert_missing(err, "");
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Through the backend, as `cirrus run --container-backend docker` reports it. */
static void
test_docker_backend(void **state)
{
  setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock", 1);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct backend_options bo = {.name = "docker"};
  struct backend *b = NULL;
  cleanup_error struct ci_error *err = NULL;
  assert_true(backend_open(&loop, &bo, &b, &err) < 0);
  assert_null(b);
  assert_missing(err, "docker at unix:///nonexistent/docker.sock: ");
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A registry pull (the built-in backend's, and `cirrus images pull`) fails with it too, while
 * nothing else in the store needs libcurl. */
static void
test_registry_pull(void **state)
{
  setenv("CIRRUS_REGISTRIES_CONF", "/nonexistent/registries.conf", 1);
  setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json", 1);
  char dir[] = "/tmp/cirrus-test-curl-XXXXXX";
  assert_non_null(mkdtemp(dir));
  cleanup_free char *root = xasprintf("%s/store", dir);
  struct img_store *s = NULL;
  cleanup_error struct ci_error *err = NULL;
  assert_int_equal(img_store_open(root, NULL, &s, &err), 0);
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.policy = IMG_PULL_ALWAYS;
  po.platform = "linux/amd64";
  struct img_image *img = NULL;
  assert_true(img_pull(s, "127.0.0.1:1/cirrus/none:1", &po, &img, &err) < 0);
  assert_null(img);
  assert_non_null(err);
  if (!strstr(err->msg, WHY))
    fail_msg("got '%s', want it to contain '%s'", err->msg, WHY);
  img_store_free(s);
  cleanup_free char *rm = xasprintf("rm -rf '%s'", dir);
  assert_int_equal(system(rm), 0);
}

int
main(void)
{
  setenv("CIRRUS_TEST_LIBCURL", MISSING, 1);
  const struct CMUnitTest tests[] = {
      /* first: nothing is loaded yet when it forks */
      cmocka_unit_test(test_not_libcurl),     cmocka_unit_test(test_load_missing),
      cmocka_unit_test(test_engine_http_new), cmocka_unit_test(test_docker_backend),
      cmocka_unit_test(test_registry_pull),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
