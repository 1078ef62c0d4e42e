/* test/unit/test_image_e2e.c - pull the test image from the real sources the test setup
 * provides, and check the extracted root filesystem:
 *   CIRRUS_TEST_REGISTRY        host:port of a registry v2 holding cirrus-test/busybox:latest
 *   CIRRUS_TEST_OCI_LAYOUT      DIR[:TAG] of an OCI layout of the same image
 *   CIRRUS_TEST_DOCKER_ARCHIVE  FILE written by docker/podman/skopeo save of the same image
 * Missing variables or an unreachable registry FAIL with a message; the test exits 77 (skipped)
 * only when CIRRUS_TEST_SKIP names "registry". */
#include "test_image_lib.c"

static const char *registry, *oci_layout, *docker_archive;

static char *
registry_ref(void)
{
  return xasprintf("%s/cirrus-test/busybox:latest", registry);
}

/* What every source must have produced: a busybox root filesystem. */
static void
check_rootfs(const struct img_image *img)
{
  assert_true(img->layers.n >= 1);
  const char *top = NULL;
  for (size_t i = img->layers.n; i-- > 0 && !top;)
    if (tl_exists("%s/bin/busybox", img->layers.v[i]))
      top = img->layers.v[i];
  if (!top)
    fail_msg("no layer of '%s' has bin/busybox", img->name);
  cleanup_free char *bb = xasprintf("%s/bin/busybox", top);
  struct stat st;
  assert_int_equal(lstat(bb, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_true(st.st_mode & S_IXUSR);
  assert_true(st.st_size > 500 * 1024);
  int fd = open(bb, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  char magic[4];
  assert_int_equal(read(fd, magic, 4), 4);
  close(fd);
  assert_memory_equal(magic,
                      "\x7f"
                      "ELF",
                      4);
  bool sh = false;
  for (size_t i = 0; i < img->layers.n; i++)
    sh = sh || tl_exists("%s/bin/sh", img->layers.v[i]);
  assert_true(sh);
  assert_true(img->config.cmd.n >= 1);
  assert_string_equal(img->config.cmd.v[0], "/bin/sh");
  assert_string_equal(img->config.os, "linux");
  assert_int_equal(img->diff_ids.n, img->layers.n);
}

struct fixture {
  char *base;
  char *root;
  struct img_store *s;
};

static int
setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof(*f));
  f->base = tl_mkdtemp("e2e");
  f->root = xasprintf("%s/store", f->base);
  struct ci_error *err = NULL;
  tl_ok(img_store_open(f->root, NULL, &f->s, &err), &err);
  *state = f;
  return 0;
}

static int
teardown(void **state)
{
  struct fixture *f = *state;
  img_store_free(f->s);
  tl_rm_rf(f->base);
  free(f->base);
  free(f->root);
  free(f);
  return 0;
}

static struct img_image *
pull_ok(struct img_store *s, const char *ref, struct img_pull_stats *st)
{
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.stats = st;
  po.policy = IMG_PULL_ALWAYS;
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  if (img_pull(s, ref, &po, &img, &err) < 0)
    fail_msg("pulling '%s': %s", ref, err ? err->msg : "?");
  return img;
}

static void
test_registry(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *ref = registry_ref();
  struct img_pull_stats st;
  struct img_image *img = pull_ok(f->s, ref, &st);
  check_rootfs(img);
  assert_int_equal(st.layers_extracted, img->layers.n);
  assert_true(st.bytes_downloaded > 100000);
  assert_non_null(img->manifest_digest);
  /* pulled by digest too */
  cleanup_free char *by_digest =
      xasprintf("%s/cirrus-test/busybox@%s", registry, img->manifest_digest);
  struct img_image *img2 = pull_ok(f->s, by_digest, &st);
  assert_string_equal(img2->id, img->id);
  assert_int_equal(st.layers_extracted, 0);
  assert_int_equal(st.bytes_downloaded, 0);
  img_image_free(img2);
  img_image_free(img);
}

static void
test_oci_layout(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *ref = xasprintf("oci:%s", oci_layout);
  struct img_pull_stats st;
  struct img_image *img = pull_ok(f->s, ref, &st);
  check_rootfs(img);
  assert_int_equal(st.layers_extracted, img->layers.n);
  img_image_free(img);
}

static void
test_docker_archive(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *ref = xasprintf("docker-archive:%s", docker_archive);
  struct img_pull_stats st;
  struct img_image *img = pull_ok(f->s, ref, &st);
  check_rootfs(img);
  assert_int_equal(st.layers_extracted, img->layers.n);
  assert_null(img->manifest_digest);
  img_image_free(img);
}

/* The three sources hold the same image: one store extracts its layers once. */
static void
test_sources_share_layers(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *r1 = registry_ref();
  cleanup_free char *r2 = xasprintf("oci:%s", oci_layout);
  cleanup_free char *r3 = xasprintf("docker-archive:%s", docker_archive);
  struct img_pull_stats st;
  struct img_image *a = pull_ok(f->s, r1, &st);
  struct img_image *b = pull_ok(f->s, r2, &st);
  assert_int_equal(st.layers_extracted, 0);
  struct img_image *c = pull_ok(f->s, r3, &st);
  assert_int_equal(st.layers_extracted, 0);
  assert_string_equal(a->id, b->id);
  assert_string_equal(a->id, c->id);
  for (size_t i = 0; i < a->layers.n; i++) {
    assert_string_equal(a->layers.v[i], b->layers.v[i]);
    assert_string_equal(a->layers.v[i], c->layers.v[i]);
  }
  struct img_list_entry *v = NULL;
  size_t n = 0;
  struct ci_error *err = NULL;
  tl_ok(img_store_list(f->s, &v, &n, &err), &err);
  assert_int_equal(n, 3);
  img_list_free(v, n);
  img_image_free(a);
  img_image_free(b);
  img_image_free(c);
}

/* Two processes pull from the registry into one fresh store at the same time. */
static void
test_two_processes(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *ref = registry_ref();
  int go[2], res[2];
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(res), 0);
  pid_t pids[2];
  for (int p = 0; p < 2; p++) {
    pids[p] = fork();
    assert_true(pids[p] >= 0);
    if (pids[p] == 0) {
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) < 0)
        _exit(20);
      struct img_store *s = NULL;
      struct img_image *img = NULL;
      struct img_pull_stats st;
      struct img_pull_opts po = IMG_PULL_OPTS_INIT;
      po.stats = &st;
      struct ci_error *err = NULL;
      if (img_store_open(f->root, NULL, &s, &err) < 0 || img_pull(s, ref, &po, &img, &err) < 0) {
        fprintf(stderr, "child %d: %s\n", p, err ? err->msg : "?");
        _exit(21);
      }
      unsigned char out = (unsigned char)st.layers_extracted;
      if (write(res[1], &out, 1) != 1 || !tl_exists("%s/bin/busybox", img->layers.v[0]))
        _exit(22);
      img_image_free(img);
      img_store_free(s);
      _exit(0);
    }
  }
  close(go[0]);
  close(go[1]);
  close(res[1]);
  for (int p = 0; p < 2; p++) {
    int st;
    assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  unsigned total = 0;
  unsigned char b;
  while (read(res[0], &b, 1) == 1)
    total += b;
  close(res[0]);
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  tl_ok(img_lookup(f->s, ref, &img, &err), &err);
  assert_int_equal(total, img->layers.n); /* extracted once between them */
  check_rootfs(img);
  img_image_free(img);
}

/* As an unprivileged user (the rootless runtime's case), into the user's own store. */
static void
test_unprivileged(void **state)
{
  struct fixture *f = *state;
  if (geteuid() != 0)
    skip(); /* the other tests already ran unprivileged */
  cleanup_free char *dir = xasprintf("%s/user", f->base);
  assert_int_equal(mkdir(dir, 0700), 0);
  assert_int_equal(chown(dir, 65534, 65534), 0);
  assert_int_equal(chmod(f->base, 0755), 0);
  cleanup_free char *ref = registry_ref();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgid(65534) < 0 || setuid(65534) < 0)
      _exit(10);
    cleanup_free char *root = xasprintf("%s/store", dir);
    struct img_store *s = NULL;
    struct img_image *img = NULL;
    struct ci_error *err = NULL;
    struct img_pull_opts po = IMG_PULL_OPTS_INIT;
    if (img_store_open(root, NULL, &s, &err) < 0 || img_pull(s, ref, &po, &img, &err) < 0) {
      fprintf(stderr, "unprivileged pull: %s\n", err ? err->msg : "?");
      _exit(11);
    }
    struct stat st;
    cleanup_free char *bb = xasprintf("%s/bin/busybox", img->layers.v[0]);
    int ok = stat(bb, &st) == 0 && st.st_uid == 65534;
    img_image_free(img);
    struct img_prune_stats ps;
    ok = ok && img_store_remove(s, ref, NULL) == 0 && img_store_prune(s, &ps, NULL) == 0 &&
         ps.layers >= 1;
    img_store_free(s);
    _exit(ok ? 0 : 12);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

static bool
skipped(void)
{
  const char *s = getenv("CIRRUS_TEST_SKIP");
  if (!s)
    return false;
  cleanup_free char *copy = xstrdup(s);
  char *save = NULL;
  for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
    if (!strcmp(t, "registry"))
      return true;
  return false;
}

int
main(void)
{
  if (skipped()) {
    fprintf(stderr, "skipped: CIRRUS_TEST_SKIP names registry\n");
    return 77;
  }
  registry = getenv("CIRRUS_TEST_REGISTRY");
  oci_layout = getenv("CIRRUS_TEST_OCI_LAYOUT");
  docker_archive = getenv("CIRRUS_TEST_DOCKER_ARCHIVE");
  if (!registry || !*registry || !oci_layout || !*oci_layout || !docker_archive ||
      !*docker_archive) {
    fprintf(stderr, "error: CIRRUS_TEST_REGISTRY, CIRRUS_TEST_OCI_LAYOUT and "
                    "CIRRUS_TEST_DOCKER_ARCHIVE must be set (start the test engines with "
                    "scripts/engines.sh, or set CIRRUS_TEST_SKIP=registry to skip)\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oci_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_docker_archive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sources_share_layers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unprivileged, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
