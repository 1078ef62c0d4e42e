/* test/unit/test_image.c - ci_image: references, manifests and platform selection, configs,
 * registries.conf, credentials, and the store (oci:/docker-archive: pulls, lookup, listing,
 * removal, pruning, use locks, concurrent pulls by several processes). */
#include "test_image_lib.c"

#include <sys/file.h>
#include <sys/xattr.h>

/* ------------------------------------------------------------ references */

struct ref_case {
  const char *in;
  const char *canonical; /* NULL: must fail */
  const char *domain, *path, *tag, *digest;
  const char *err; /* part of the error */
};

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct ref_case ref_cases[] = {
    {"busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", NULL,
     NULL},
    {"docker://busybox:1.36", "docker.io/library/busybox:1.36", "docker.io", "library/busybox",
     "1.36", NULL, NULL},
    {"library/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox",
     "latest", NULL, NULL},
    {"user/repo:v1.2-rc_3", "docker.io/user/repo:v1.2-rc_3", "docker.io", "user/repo", "v1.2-rc_3",
     NULL, NULL},
    {"docker.io/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox",
     "latest", NULL, NULL},
    {"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io",
     "library/busybox", "latest", NULL, NULL},
    {"127.0.0.1:5000/cirrus-test/busybox:latest", "127.0.0.1:5000/cirrus-test/busybox:latest",
     "127.0.0.1:5000", "cirrus-test/busybox", "latest", NULL, NULL},
    {"localhost/foo", "localhost/foo:latest", "localhost", "foo", "latest", NULL, NULL},
    {"localhost:5000/a/b/c:v1", "localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", NULL,
     NULL},
    {"quay.io/org/img@sha256:" D64, "quay.io/org/img@sha256:" D64, "quay.io", "org/img", NULL,
     "sha256:" D64, NULL},
    {"img:tag@sha256:" D64, "docker.io/library/img@sha256:" D64, "docker.io", "library/img", "tag",
     "sha256:" D64, NULL},
    {"[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000", "x", "latest", NULL, NULL},
    {"Registry.Example.com/foo", "Registry.Example.com/foo:latest", "Registry.Example.com", "foo",
     "latest", NULL, NULL},
    {"a__b/c.d-e--f:x", "docker.io/a__b/c.d-e--f:x", "docker.io", "a__b/c.d-e--f", "x", NULL, NULL},
    {"", NULL, NULL, NULL, NULL, NULL, "empty"},
    {"Busybox", NULL, NULL, NULL, NULL, NULL, "lowercase"},
    {"busybox@sha256:abc", NULL, NULL, NULL, NULL, NULL, "64 hex"},
    {"busybox@md5:" D64, NULL, NULL, NULL, NULL, NULL, "only sha256"},
    {"a//b", NULL, NULL, NULL, NULL, NULL, "invalid name"},
    {"-foo", NULL, NULL, NULL, NULL, NULL, "invalid name"},
    {"foo_", NULL, NULL, NULL, NULL, NULL, "invalid name"},
    {"a___b", NULL, NULL, NULL, NULL, NULL, "invalid name"},
    {"busybox:", NULL, NULL, NULL, NULL, NULL, "invalid tag"},
    {"busybox:-x", NULL, NULL, NULL, NULL, NULL, "invalid tag"},
    {"bad_host.com:port/x", NULL, NULL, NULL, NULL, NULL, "invalid registry"},
    {"dir:/tmp/x", NULL, NULL, NULL, NULL, NULL, "unsupported image transport 'dir'"},
    {"containers-storage:x", NULL, NULL, NULL, NULL, NULL, "unsupported image transport"},
    {"oci:", NULL, NULL, NULL, NULL, NULL, "needs a path"},
    {"oci:/x:", NULL, NULL, NULL, NULL, NULL, "empty name"},
    {"docker-archive:/x.tar:a@sha256:" D64, NULL, NULL, NULL, NULL, NULL, "cannot have a digest"},
};

static void
test_ref_parse(void **state)
{
  (void)state;
  for (size_t i = 0; i < CI_ARRAY_SIZE(ref_cases); i++) {
    const struct ref_case *c = &ref_cases[i];
    struct img_ref r = {0};
    struct ci_error *err = NULL;
    int ret = img_ref_parse(c->in, &r, &err);
    if (!c->canonical) {
      if (ret >= 0)
        fail_msg("'%s' parsed as '%s', expected an error", c->in, r.canonical);
      assert_int_equal(ret, CI_EUSAGE);
      if (!strstr(err->msg, c->err))
        fail_msg("'%s': error '%s' lacks '%s'", c->in, err->msg, c->err);
      ci_error_free(&err);
      continue;
    }
    if (ret < 0)
      fail_msg("'%s' failed: %s", c->in, err->msg);
    assert_int_equal(r.transport, IMG_TRANSPORT_DOCKER);
    assert_string_equal(r.canonical, c->canonical);
    assert_string_equal(r.domain, c->domain);
    assert_string_equal(r.path, c->path);
    if (c->tag)
      assert_string_equal(r.tag, c->tag);
    else
      assert_null(r.tag);
    if (c->digest)
      assert_string_equal(r.digest, c->digest);
    else
      assert_null(r.digest);
    img_ref_release(&r);
  }
}

static void
test_ref_file_transports(void **state)
{
  (void)state;
  struct img_ref r = {0};
  struct ci_error *err = NULL;
  tl_ok(img_ref_parse("oci:/tmp/layout:latest", &r, &err), &err);
  assert_int_equal(r.transport, IMG_TRANSPORT_OCI);
  assert_string_equal(r.file, "/tmp/layout");
  assert_string_equal(r.subname, "latest");
  assert_string_equal(r.canonical, "oci:/tmp/layout:latest");
  img_ref_release(&r);

  tl_ok(img_ref_parse("oci:/tmp/layout/", &r, &err), &err);
  assert_null(r.subname);
  assert_string_equal(r.canonical, "oci:/tmp/layout");
  img_ref_release(&r);

  char *cwd = getcwd(NULL, 0);
  tl_ok(img_ref_parse("oci:rel/dir:v2", &r, &err), &err);
  cleanup_free char *want = xasprintf("%s/rel/dir", cwd);
  assert_string_equal(r.file, want);
  img_ref_release(&r);
  free(cwd);

  tl_ok(img_ref_parse("docker-archive:/x/a.tar:cirrus-test/busybox:latest", &r, &err), &err);
  assert_int_equal(r.transport, IMG_TRANSPORT_DOCKER_ARCHIVE);
  assert_string_equal(r.file, "/x/a.tar");
  assert_string_equal(r.subname, "docker.io/cirrus-test/busybox:latest");
  assert_string_equal(r.canonical, "docker-archive:/x/a.tar:docker.io/cirrus-test/busybox:latest");
  img_ref_release(&r);

  tl_ok(img_ref_parse("docker-archive:/x/a.tar", &r, &err), &err);
  assert_null(r.subname);
  img_ref_release(&r);
  tl_fails(img_ref_parse("docker-archive:/x/a.tar:BAD", &r, &err), &err, "lowercase");
}

/* ------------------------------------------------------------ manifests and platforms */

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
    "\"digest\":\"sha256:" D64 "\",\"size\":426},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
    "\"digest\":\"sha256:" D64 "\",\"size\":100},"
    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
    "\"digest\":\"sha256:" D64 "\",\"size\":200}]}";

static void
test_manifest_parse(void **state)
{
  (void)state;
  struct img__manifest m = {0};
  struct ci_error *err = NULL;
  tl_ok(img__manifest_parse(oci_manifest, strlen(oci_manifest), NULL, &m, &err), &err);
  assert_int_equal(m.kind, IMG__KIND_MANIFEST);
  assert_string_equal(m.media_type, IMG__MT_OCI_MANIFEST);
  assert_int_equal(m.n_layers, 2);
  assert_int_equal(m.layers[1].size, 200);
  assert_int_equal(m.config.size, 426);
  img__manifest_release(&m);

  /* no mediaType in the document: the HTTP Content-Type decides */
  static const char bare[] =
      "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:" D64 "\",\"size\":1},\"layers\":[]}";
  tl_ok(img__manifest_parse(bare, strlen(bare), IMG__MT_DOCKER_MANIFEST, &m, &err), &err);
  assert_int_equal(m.kind, IMG__KIND_MANIFEST);
  assert_string_equal(m.media_type, IMG__MT_DOCKER_MANIFEST);
  img__manifest_release(&m);
  tl_ok(img__manifest_parse(bare, strlen(bare), "application/json", &m, &err), &err);
  assert_int_equal(m.kind, IMG__KIND_MANIFEST);
  img__manifest_release(&m);

  static const char v1[] = "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}";
  tl_fails(img__manifest_parse(v1, strlen(v1), NULL, &m, &err), &err, "schema 1");
  tl_fails(img__manifest_parse("{}", 2, IMG__MT_DOCKER_V1_SIGNED, &m, &err), &err, "schema 1");
  static const char odd[] = "{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\"}";
  tl_fails(img__manifest_parse(odd, strlen(odd), NULL, &m, &err), &err, "unsupported manifest");
  static const char sha512[] = "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha512:abc\"},"
                               "\"layers\":[]}";
  tl_fails(img__manifest_parse(sha512, strlen(sha512), NULL, &m, &err), &err, "only sha256");
  static const char travers[] = "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:../../etc/"
                                "passwd\"},\"layers\":[]}";
  tl_fails(img__manifest_parse(travers, strlen(travers), NULL, &m, &err), &err, "digest");
  static const char nolayers[] = "{\"schemaVersion\":2,\"mediaType\":\"" IMG__MT_OCI_MANIFEST
                                 "\",\"config\":{\"digest\":\"sha256:" D64 "\"}}";
  tl_fails(img__manifest_parse(nolayers, strlen(nolayers), NULL, &m, &err), &err, "layers");
  tl_fails(img__manifest_parse("[1,2]", 5, NULL, &m, &err), &err, "not an object");
  tl_fails(img__manifest_parse("{", 1, NULL, &m, &err), &err, "invalid JSON");
}

#define ENTRY(plat, d)                                                                             \
  "{\"mediaType\":\"" IMG__MT_OCI_MANIFEST "\",\"digest\":\"sha256:" d "\",\"size\":1,"            \
  "\"platform\":" plat "}"
#define DA "a" D64 + 1
static const char index_json[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" IMG__MT_OCI_INDEX
    "\",\"manifests\":[" ENTRY("{\"os\":\"linux\",\"architecture\":\"amd64\"}", "111111111111111111"
                                                                                "111111111111111111"
                                                                                "111111111111111111"
                                                                                "1111111111") "," ENTRY("{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}", "2222222222222222222222222222222222222222222222222222222222222222") "," ENTRY("{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}", "3333333333333333333333333333333333333333333333333333333333333333") "," ENTRY("{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}", "4444444444444444444444444444444444444444444444444444444444444444") "," ENTRY(
        "{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v5\"}",
        "5555555555555555555555555555555555555555555555555555555555555555") "," ENTRY("{\"os\":"
                                                                                      "\"windows\","
                                                                                      "\"architectu"
                                                                                      "re\":"
                                                                                      "\"amd64\"}",
                                                                                      "666666666666"
                                                                                      "666666666666"
                                                                                      "666666666666"
                                                                                      "666666666666"
                                                                                      "666666666666"
                                                                                      "6666") "," ENTRY("{\"os\":\"unknown\",\"architecture\":\"unknown\"}",
                                                                                                        "7777777777777777777777777777777777777777777777777777777777777777") "," ENTRY("{\"os\":\"linux\",\"architecture\":\"s390x\"}",
                                                                                                                                                                                      "8888888888888888888888888888888888888888888888888888888888888888") "]}";

static char
select_digit(const struct img__manifest *idx, const char *plat, struct ci_error **err)
{
  struct img__platform p;
  int ret = img__platform_parse(plat, &p, err);
  if (ret < 0)
    return 0;
  const struct img__desc *d = NULL;
  if (img__index_select(idx, &p, &d, err) < 0)
    return 0;
  return d->digest[7];
}

static void
test_index_select(void **state)
{
  (void)state;
  struct img__manifest idx = {0};
  struct ci_error *err = NULL;
  tl_ok(img__manifest_parse(index_json, strlen(index_json), NULL, &idx, &err), &err);
  assert_int_equal(idx.kind, IMG__KIND_INDEX);
  assert_int_equal(idx.n_manifests, 8);
  assert_true(idx.manifests[6].attestation);
  assert_int_equal(select_digit(&idx, "linux/amd64", &err), '1');
  assert_int_equal(select_digit(&idx, "linux/x86_64", &err), '1');
  assert_int_equal(select_digit(&idx, "linux/arm64", &err), '2'); /* "" = v8 */
  assert_int_equal(select_digit(&idx, "linux/arm64/v8", &err), '2');
  assert_int_equal(select_digit(&idx, "linux/aarch64", &err), '2');
  assert_int_equal(select_digit(&idx, "linux/arm/v7", &err), '4'); /* exact */
  assert_int_equal(select_digit(&idx, "linux/arm/v6", &err), '3');
  assert_int_equal(select_digit(&idx, "linux/armhf", &err), '4');
  assert_int_equal(select_digit(&idx, "windows/amd64", &err), '6');
  assert_int_equal(select_digit(&idx, "linux/s390x", &err), '8');
  assert_int_equal(select_digit(&idx, "linux/ppc64le", &err), 0);
  assert_non_null(err);
  assert_non_null(strstr(err->msg, "no image for platform linux/ppc64le"));
  assert_non_null(strstr(err->msg, "linux/arm/v7"));
  assert_null(strstr(err->msg, "unknown")); /* attestations are not offered */
  ci_error_free(&err);
  assert_int_equal(select_digit(&idx, "linux/unknown", &err), 0);
  ci_error_free(&err);
  img__manifest_release(&idx);

  /* arm v7 host, no v7 image: the closest lower variant (v6 before v5) */
  static const char arm[] =
      "{\"schemaVersion\":2,\"manifests\":[" ENTRY("{\"os\":\"linux\",\"architecture\":\"arm\","
                                                   "\"variant\":\"v5\"}",
                                                   "55555555555555555555555555555555555555555555555"
                                                   "55555555555555555") "," ENTRY("{\"os\":"
                                                                                  "\"linux\","
                                                                                  "\"architecture\""
                                                                                  ":\"arm\","
                                                                                  "\"variant\":"
                                                                                  "\"v6\"}",
                                                                                  "3333333333333333"
                                                                                  "3333333333333333"
                                                                                  "3333333333333333"
                                                                                  "333333333333333"
                                                                                  "3") "," ENTRY("{"
                                                                                                 "\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v8\"}",
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "9") "]}";
  tl_ok(img__manifest_parse(arm, strlen(arm), NULL, &idx, &err), &err);
  assert_int_equal(select_digit(&idx, "linux/arm/v7", &err), '3');
  assert_int_equal(select_digit(&idx, "linux/arm/v5", &err), '5');
  img__manifest_release(&idx);

  /* amd64 variants: an image without variant is the baseline; v3 only on request */
  static const char amd[] = "{\"schemaVersion\":2,\"manifests\":[" ENTRY(
      "{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v3\"}",
      "3333333333333333333333333333333333333333333333333333333333333333") "," ENTRY("{\"os\":"
                                                                                    "\"linux\","
                                                                                    "\"architecture"
                                                                                    "\":\"amd64\"}",
                                                                                    "11111111111111"
                                                                                    "11111111111111"
                                                                                    "11111111111111"
                                                                                    "11111111111111"
                                                                                    "11111111") "]"
                                                                                                "}";
  tl_ok(img__manifest_parse(amd, strlen(amd), NULL, &idx, &err), &err);
  assert_int_equal(select_digit(&idx, "linux/amd64", &err), '1');
  assert_int_equal(select_digit(&idx, "linux/amd64/v3", &err), '3');
  img__manifest_release(&idx);
}

static void
test_platform(void **state)
{
  (void)state;
  struct img__platform p;
  struct ci_error *err = NULL;
  tl_ok(img__platform_parse("linux/arm/v7", &p, &err), &err);
  assert_string_equal(p.os, "linux");
  assert_string_equal(p.arch, "arm");
  assert_string_equal(p.variant, "v7");
  tl_fails(img__platform_parse("linux", &p, &err), &err, "os/arch");
  tl_fails(img__platform_parse("linux/", &p, &err), &err, "os/arch");
  tl_fails(img__platform_parse("/amd64", &p, &err), &err, "os/arch");
  tl_fails(img__platform_parse("linux/arm/v7/x", &p, &err), &err, "os/arch");
  img__platform_host(&p);
  assert_string_equal(p.os, "linux");
#if defined(__x86_64__)
  assert_string_equal(p.arch, "amd64");
  assert_string_equal(p.variant, "");
#elif defined(__aarch64__)
  assert_string_equal(p.arch, "arm64");
  assert_string_equal(p.variant, "v8");
#endif
}

static void
test_config_parse(void **state)
{
  (void)state;
  static const char cfg[] =
      "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin:/bin\","
      "\"A=b=c\"],\"Entrypoint\":null,\"Cmd\":[\"/bin/sh\",\"-c\",\"echo hi\"],"
      "\"WorkingDir\":\"/srv\",\"User\":\"1000:1000\"},"
      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:" D64 "\"]}}";
  struct img_config c = {0};
  struct ci_strv ids = CI_STRV_INIT;
  struct ci_error *err = NULL;
  tl_ok(img__config_parse(cfg, strlen(cfg), &c, &ids, &err), &err);
  assert_int_equal(c.env.n, 2);
  assert_string_equal(c.env.v[1], "A=b=c");
  assert_int_equal(c.entrypoint.n, 0);
  assert_int_equal(c.cmd.n, 3);
  assert_string_equal(c.cmd.v[2], "echo hi");
  assert_string_equal(c.working_dir, "/srv");
  assert_string_equal(c.user, "1000:1000");
  assert_string_equal(c.architecture, "amd64");
  assert_null(c.variant);
  assert_int_equal(ids.n, 1);
  img__config_release(&c);
  ci_strv_release(&ids);

  static const char empty[] = "{\"config\":{\"WorkingDir\":\"\",\"User\":\"\"},"
                              "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
  tl_ok(img__config_parse(empty, strlen(empty), &c, &ids, &err), &err);
  assert_null(c.working_dir);
  assert_null(c.user);
  img__config_release(&c);

  static const char noroot[] = "{\"config\":{}}";
  tl_fails(img__config_parse(noroot, strlen(noroot), &c, &ids, &err), &err, "rootfs");
  static const char badenv[] = "{\"config\":{\"Env\":\"PATH=/\"},\"rootfs\":{\"type\":"
                               "\"layers\",\"diff_ids\":[]}}";
  tl_fails(img__config_parse(badenv, strlen(badenv), &c, &ids, &err), &err, "Env");
  static const char badid[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"md5:x\"]}}";
  tl_fails(img__config_parse(badid, strlen(badid), &c, &ids, &err), &err, "diff id");
  static const char badtype[] = "{\"rootfs\":{\"type\":\"other\",\"diff_ids\":[]}}";
  tl_fails(img__config_parse(badtype, strlen(badtype), &c, &ids, &err), &err, "rootfs type");
}

/* ------------------------------------------------------------ registries.conf and auth */

static const char regconf[] = "# comment\n"
                              "unqualified-search-registries = [\"docker.io\",\n"
                              "   \"quay.io\"]  # multi-line array\n"
                              "short-name-mode = \"enforcing\"\n"
                              "[aliases]\n"
                              "\"fedora\" = \"registry.fedoraproject.org/fedora\"\n"
                              "[engine]\n"
                              "inline = { a = \"}\", b = 1 }\n"
                              "\n"
                              "[[registry]]\n"
                              "prefix = \"docker.io\"\n"
                              "location = \"primary.local:5000\"\n"
                              "mirror-by-digest-only = false\n"
                              "[[registry.mirror]]\n"
                              "location = \"mirror1.local\"\n"
                              "insecure = true\n"
                              "[[registry.mirror]]\n"
                              "location = 'mirror2.local/ns'\n"
                              "\n"
                              "[[registry]]\n"
                              "location = \"insecure.local:5000\"\n"
                              "insecure = true\n"
                              "[[registry]]\n"
                              "prefix = \"blocked.example.com/bad\"\n"
                              "location = \"blocked.example.com/bad\"\n"
                              "blocked = true\n"
                              "[[registry]]\n"
                              "prefix = \"*.wild.example\"\n"
                              "[[registry.mirror]]\n"
                              "location = \"wildmirror.local\"\n"
                              "[[registry]]\n"
                              "prefix = \"quay.io/org\"\n"
                              "location = \"quay-mirror.local/q\\\"x\"\n"
                              "[registries.insecure]\n"
                              "registries = ['v1.local:8080']\n"
                              "[registries.block]\n"
                              "registries = [\"evil.example\"]\n";

static void
check_ep(const struct img__endpoints *e, size_t i, const char *host, const char *repo,
         bool insecure)
{
  assert_true(i < e->n);
  assert_string_equal(e->v[i].host, host);
  assert_string_equal(e->v[i].repo, repo);
  assert_int_equal(e->v[i].insecure, insecure);
}

static void
test_regconf(void **state)
{
  (void)state;
  struct img__regconf rc = {0};
  struct ci_error *err = NULL;
  tl_ok(img__regconf_parse(regconf, "test.conf", &rc, &err), &err);
  assert_int_equal(rc.n, 5);
  assert_string_equal(rc.v[4].location, "quay-mirror.local/q\"x");
  struct img__endpoints e;

  tl_ok(img__regconf_endpoints(&rc, "docker.io", "library/busybox", &e, &err), &err);
  assert_int_equal(e.n, 3);
  check_ep(&e, 0, "mirror1.local", "library/busybox", true);
  check_ep(&e, 1, "mirror2.local", "ns/library/busybox", false);
  check_ep(&e, 2, "primary.local:5000", "library/busybox", false);
  img__endpoints_release(&e);

  tl_ok(img__regconf_endpoints(&rc, "insecure.local:5000", "a/b", &e, &err), &err);
  assert_int_equal(e.n, 1);
  check_ep(&e, 0, "insecure.local:5000", "a/b", true);
  img__endpoints_release(&e);

  tl_ok(img__regconf_endpoints(&rc, "blocked.example.com", "badness", &e, &err), &err);
  check_ep(&e, 0, "blocked.example.com", "badness", false); /* not below the prefix */
  img__endpoints_release(&e);
  int ret = img__regconf_endpoints(&rc, "blocked.example.com", "bad/x", &e, &err);
  assert_int_equal(ret, -EACCES);
  tl_fails(ret, &err, "blocked");
  ret = img__regconf_endpoints(&rc, "evil.example", "x", &e, &err);
  tl_fails(ret, &err, "blocked");

  tl_ok(img__regconf_endpoints(&rc, "a.wild.example", "ns/img", &e, &err), &err);
  assert_int_equal(e.n, 2);
  check_ep(&e, 0, "wildmirror.local", "ns/img", false);
  check_ep(&e, 1, "a.wild.example", "ns/img", false);
  img__endpoints_release(&e);

  tl_ok(img__regconf_endpoints(&rc, "quay.io", "org/img", &e, &err), &err);
  check_ep(&e, 0, "quay-mirror.local", "q\"x/img", false);
  img__endpoints_release(&e);
  tl_ok(img__regconf_endpoints(&rc, "quay.io", "orgx/img", &e, &err), &err);
  check_ep(&e, 0, "quay.io", "orgx/img", false);
  img__endpoints_release(&e);

  tl_ok(img__regconf_endpoints(&rc, "v1.local:8080", "x", &e, &err), &err);
  check_ep(&e, 0, "v1.local:8080", "x", true);
  img__endpoints_release(&e);
  img__regconf_release(&rc);

  /* no configuration */
  tl_ok(img__regconf_endpoints(NULL, "docker.io", "library/x", &e, &err), &err);
  check_ep(&e, 0, "registry-1.docker.io", "library/x", false);
  img__endpoints_release(&e);
  tl_ok(img__regconf_endpoints(NULL, "127.0.0.1:5000", "cirrus-test/busybox", &e, &err), &err);
  check_ep(&e, 0, "127.0.0.1:5000", "cirrus-test/busybox", true); /* loopback */
  img__endpoints_release(&e);

  static const char *const bad[][2] = {
      {"[[registry]]\nlocation = 5\n", "test.conf:2: registry prefix and location must be"},
      {"[[registry]]\nlocation = \"x\n", "test.conf:2: unterminated string"},
      {"[[registry]]\ninsecure = \"yes\"\n", "must be true or false"},
      {"[[registry.mirror]]\nlocation = \"m\"\n", "before any [[registry]]"},
      {"[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\ninsecure = true\n", "no location"},
      {"[[registry]]\n[[registry]]\nlocation = \"x\"\n", "neither prefix nor location"},
      {"key value\n", "expected '='"},
      {"a = \"b\" c\n", "unexpected text"},
      {"a = [\"b\" \"c\"]\n", "expected ','"},
      {"[registries.insecure]\nregistries = \"x\"\n", "array of strings"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct img__regconf r2 = {0};
    tl_fails(img__regconf_parse(bad[i][0], "test.conf", &r2, &err), &err, bad[i][1]);
  }

  /* loading: a missing file is an empty configuration */
  tl_ok(img__regconf_load("/nonexistent/registries.conf", &rc, &err), &err);
  assert_int_equal(rc.n, 0);
  img__regconf_release(&rc);
}

static void
test_loopback(void **state)
{
  (void)state;
  static const char *const yes[] = {"localhost",    "localhost:5000", "127.0.0.1",
                                    "127.1.2.3:80", "[::1]:5000",     "[::1]"};
  static const char *const no[] = {"128.0.0.1",   "localhost.evil.com", "127.0.0.1.evil.com",
                                   "127.0.0",     "10.0.0.1:5000",      "[::2]",
                                   "example.com", "127.0.0.x"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(yes); i++)
    if (!img__host_is_loopback(yes[i]))
      fail_msg("%s should be loopback", yes[i]);
  for (size_t i = 0; i < CI_ARRAY_SIZE(no); i++)
    if (img__host_is_loopback(no[i]))
      fail_msg("%s should not be loopback", no[i]);
}

static void
test_auth_file(void **state)
{
  (void)state;
  cleanup_free char *dir = tl_mkdtemp("auth");
  cleanup_free char *path = xasprintf("%s/auth.json", dir);
  /* dTpw = "u:p", YWxpY2U6czNjcjN0 = "alice:s3cr3t" */
  static const char json[] = "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"dTpw\"},"
                             "\"reg.local:5000\":{\"auth\":\"YWxpY2U6czNjcjN0\"},"
                             "\"http://other.local/v2/\":{\"auth\":\"dTpw\"},"
                             "\"broken.local\":{\"auth\":\"!!!!\"}}}";
  tl_write(path, json, strlen(json));
  char *cred = NULL;
  struct ci_error *err = NULL;
  tl_ok(img__auth_lookup(path, "registry-1.docker.io", &cred, &err), &err);
  assert_string_equal(cred, "u:p");
  free(cred);
  tl_ok(img__auth_lookup(path, "reg.local:5000", &cred, &err), &err);
  assert_string_equal(cred, "alice:s3cr3t");
  free(cred);
  tl_ok(img__auth_lookup(path, "other.local", &cred, &err), &err);
  assert_string_equal(cred, "u:p");
  free(cred);
  tl_ok(img__auth_lookup(path, "nobody.local", &cred, &err), &err);
  assert_null(cred);
  tl_fails(img__auth_lookup(path, "broken.local", &cred, &err), &err, "invalid credentials");
  /* an explicitly named file must exist */
  cleanup_free char *missing = xasprintf("%s/none.json", dir);
  tl_fails(img__auth_lookup(missing, "x", &cred, &err), &err, "cannot open");
  tl_rm_rf(dir);
}

static void
test_challenge(void **state)
{
  (void)state;
  char *scheme, *realm, *service, *scope;
  assert_int_equal(img__parse_challenge("Bearer realm=\"https://auth.docker.io/token\","
                                        "service=\"registry.docker.io\",scope=\"repository:"
                                        "library/busybox:pull\"",
                                        &scheme, &realm, &service, &scope),
                   0);
  assert_string_equal(scheme, "bearer");
  assert_string_equal(realm, "https://auth.docker.io/token");
  assert_string_equal(service, "registry.docker.io");
  assert_string_equal(scope, "repository:library/busybox:pull");
  free(scheme), free(realm), free(service), free(scope);
  assert_int_equal(img__parse_challenge("Basic realm=\"Registry \\\"Realm\\\"\"", &scheme, &realm,
                                        &service, &scope),
                   0);
  assert_string_equal(scheme, "basic");
  assert_string_equal(realm, "Registry \"Realm\"");
  assert_null(service);
  free(scheme), free(realm);
  assert_int_equal(img__parse_challenge("BEARER realm=http://x/t, service=s , junk", &scheme,
                                        &realm, &service, &scope),
                   0);
  assert_string_equal(scheme, "bearer");
  assert_string_equal(realm, "http://x/t");
  assert_string_equal(service, "s");
  free(scheme), free(realm), free(service);
  assert_int_equal(img__parse_challenge("", &scheme, &realm, &service, &scope), -1);
}

/* ------------------------------------------------------------ store */

struct fixture {
  char *base; /* temp dir */
  char *root; /* store root */
  struct img_store *s;
};

static int
setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof(*f));
  f->base = tl_mkdtemp("store");
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

static void
test_store_open(void **state)
{
  struct fixture *f = *state;
  static const char *const dirs[] = {"blobs/sha256", "blobs/partial", "layers",
                                     "images",       "locks",         "staging"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(dirs); i++)
    assert_true(S_ISDIR(tl_mode("%s/%s", f->root, dirs[i])));
  cleanup_free char *sj = xasprintf("%s/store.json", f->root);
  cleanup_free char *content = tl_read(sj);
  assert_non_null(strstr(content, "\"opaque_xattr\":\"user\""));
  assert_string_equal(img_store_get_root(f->s), f->root);

  struct img_store *s2 = NULL;
  struct ci_error *err = NULL;
  struct img_store_opts o = {IMG_OPAQUE_USER, 0};
  tl_ok(img_store_open(f->root, &o, &s2, &err), &err);
  img_store_free(s2);
  if (geteuid() == 0) {
    o.opaque_xattr = IMG_OPAQUE_TRUSTED;
    int ret = img_store_open(f->root, &o, &s2, &err);
    assert_int_equal(ret, CI_ECONFIG);
    tl_fails(ret, &err, "created for the 'user' opaque xattr, not 'trusted'");
    cleanup_free char *other = xasprintf("%s/rootful", f->base);
    tl_ok(img_store_open(other, &o, &s2, &err), &err);
    img_store_free(s2);
    o.opaque_xattr = IMG_OPAQUE_DEFAULT; /* an existing store says what it is */
    tl_ok(img_store_open(other, &o, &s2, &err), &err);
    assert_int_equal(s2->opaque, IMG_OPAQUE_TRUSTED);
    img_store_free(s2);
  }
  tl_fails(img_store_open("relative/dir", NULL, &s2, &err), &err, "not an absolute path");
  cleanup_free char *file = xasprintf("%s/afile", f->base);
  tl_write(file, "x", 1);
  cleanup_free char *under = xasprintf("%s/sub", file);
  tl_fails(img_store_open(under, NULL, &s2, &err), &err, "cannot open image store");
}

/* img_store_default_dir for a non-root user (in a child that drops to nobody). */
static void
test_store_default_dir(void **state)
{
  (void)state;
  char *dir = NULL;
  struct ci_error *err = NULL;
  if (geteuid() != 0) {
    tl_ok(img_store_default_dir(&dir, &err), &err);
    assert_non_null(strstr(dir, "/cirrus"));
    free(dir);
    return;
  }
  tl_ok(img_store_default_dir(&dir, &err), &err);
  assert_string_equal(dir, "/var/lib/cirrus");
  free(dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgid(65534) < 0 || setuid(65534) < 0)
      _exit(10);
    int bad = 0;
    setenv("XDG_DATA_HOME", "/xdg/data", 1);
    if (img_store_default_dir(&dir, NULL) < 0 || strcmp(dir, "/xdg/data/cirrus"))
      bad |= 1;
    free(dir);
    setenv("XDG_DATA_HOME", "relative", 1); /* ignored, as the XDG spec says */
    setenv("HOME", "/home/someone", 1);
    if (img_store_default_dir(&dir, NULL) < 0 || strcmp(dir, "/home/someone/.local/share/cirrus"))
      bad |= 2;
    free(dir);
    unsetenv("XDG_DATA_HOME");
    if (img_store_default_dir(&dir, NULL) < 0 || strcmp(dir, "/home/someone/.local/share/cirrus"))
      bad |= 4;
    free(dir);
    _exit(bad);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* Layers used by the pull tests: a base layer and a gzip layer that deletes and masks. */
static void
make_layers(struct tl_layer *l1, struct tl_layer *l2)
{
  struct tb t;
  tb_init(&t);
  tb_dir(&t, "etc", 0755);
  tb_file(&t, "etc/passwd", 0644, "root:x:0:0::/root:/bin/sh\n");
  tb_file(&t, "etc/group", 0644, "root:x:0:\n");
  tb_dir(&t, "bin", 0755);
  tb_file(&t, "bin/sh", 0755, "#!fake shell\n");
  tb_dir(&t, "opt/app", 0755);
  tb_file(&t, "opt/app/old", 0644, "old");
  tl_layer_make(l1, &t, NULL);
  tb_init(&t);
  tb_file(&t, "etc/.wh.group", 0644, "");
  tb_file(&t, "opt/app/.wh..wh..opq", 0644, "");
  tb_file(&t, "opt/app/new", 0644, "new");
  tb_file(&t, "srv/data", 0644, "data");
  tl_layer_make(l2, &t, "gzip");
}

static struct img_image *
pull_ok(struct img_store *s, const char *ref, const struct img_pull_opts *po)
{
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  int ret = img_pull(s, ref, po, &img, &err);
  if (ret < 0)
    fail_msg("pull '%s' failed: %s", ref, err ? err->msg : "?");
  return img;
}

static void
count_progress(const struct img_progress *p, void *data)
{
  unsigned *counts = data;
  counts[p->phase]++;
}

/* img_store_opts.id_shift: owners shifted at extraction (root only), recorded, enforced. */
static void
test_store_id_shift(void **state)
{
  struct fixture *f = *state;
  struct ci_error *err = NULL;
  struct img_store *s2 = NULL;
  struct img_store_opts o = {IMG_OPAQUE_DEFAULT, 200000};
  cleanup_free char *root = xasprintf("%s/shifted", f->base);
  if (geteuid() != 0) {
    tl_fails(img_store_open(root, &o, &s2, &err), &err, "needs a root store");
    return;
  }
  /* an existing store without a shift refuses one, and the other way round */
  int ret = img_store_open(f->root, &o, &s2, &err);
  assert_int_equal(ret, CI_ECONFIG);
  tl_fails(ret, &err, "created with id shift 0, not 200000");
  tl_ok(img_store_open(root, &o, &s2, &err), &err);
  cleanup_free char *sj = xasprintf("%s/store.json", root);
  cleanup_free char *content = tl_read(sj);
  assert_non_null(strstr(content, "\"id_shift\":200000"));
  struct img_store *s3 = NULL;
  ret = img_store_open(root, NULL, &s3, &err);
  assert_int_equal(ret, CI_ECONFIG);
  tl_fails(ret, &err, "created with id shift 200000, not 0");
  /* The pull chowns to 200000..265534: root of a user namespace that maps fewer ids (a
   * container of the built-in backend, where the project's own CI runs) cannot. */
  cleanup_free char *probe = xasprintf("%s/chown-probe", f->base);
  int pfd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(pfd >= 0);
  close(pfd);
  bool mappable = chown(probe, 200000 + 65534, 200000 + 65534) == 0;
  unlink(probe);
  if (!mappable) {
    img_store_free(s2);
    return;
  }

  struct tb t;
  struct tl_layer l;
  tb_init(&t);
  tb_dir(&t, "etc", 0755);
  tb_file(&t, "etc/root-file", 0644, "r");
  tb_file_owned(&t, "etc/user-file", 0640, "u", 1000, 1001);
  tb_file_owned(&t, "etc/big-ids", 0600, "b", 70000, 80000);
  tl_layer_make(&l, &t, NULL);
  cleanup_free char *layout = xasprintf("%s/layout-shift", f->base);
  char mdigest[IMG__DIGEST_LEN + 1];
  tl_oci_image(layout, &l, 1, "v1", mdigest);
  cleanup_free char *ref = xasprintf("oci:%s:v1", layout);
  struct img_image *img = pull_ok(s2, ref, NULL);
  struct stat st;
  cleanup_free char *p = xasprintf("%s/etc/root-file", img->layers.v[0]);
  assert_int_equal(lstat(p, &st), 0);
  assert_int_equal(st.st_uid, 200000);
  assert_int_equal(st.st_gid, 200000);
  cleanup_free char *pu = xasprintf("%s/etc/user-file", img->layers.v[0]);
  assert_int_equal(lstat(pu, &st), 0);
  assert_int_equal(st.st_uid, 201000);
  assert_int_equal(st.st_gid, 201001);
  assert_int_equal(st.st_mode & 07777, 0640);
  /* ids a 65536-id namespace cannot map become its nobody */
  cleanup_free char *pb = xasprintf("%s/etc/big-ids", img->layers.v[0]);
  assert_int_equal(lstat(pb, &st), 0);
  assert_int_equal(st.st_uid, 200000 + 65534);
  assert_int_equal(st.st_gid, 200000 + 65534);
  /* the layer root belongs to the namespace's root; the layer dir is reachable */
  assert_int_equal(lstat(img->layers.v[0], &st), 0);
  assert_int_equal(st.st_uid, 200000);
  cleanup_free char *ldir = xstrndup(img->layers.v[0], strlen(img->layers.v[0]) - 5);
  assert_int_equal(lstat(ldir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0755);
  img_image_free(img);
  img_store_free(s2);
  tl_layer_release(&l);
}

/* img_store_tag: another name for a stored image, as docker tag does. */
static void
test_store_tag(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l[2];
  make_layers(&l[0], &l[1]);
  cleanup_free char *layout = xasprintf("%s/layout-tag", f->base);
  char mdigest[IMG__DIGEST_LEN + 1];
  tl_oci_image(layout, l, 2, "v1", mdigest);
  cleanup_free char *ref = xasprintf("oci:%s:v1", layout);
  struct img_image *img = pull_ok(f->s, ref, NULL);
  cleanup_free char *id = xstrdup(img->id);
  img_image_free(img);
  struct ci_error *err = NULL;
  tl_ok(img_store_tag(f->s, ref, "localhost/x:tag", &err), &err);
  tl_ok(img_lookup(f->s, "localhost/x:tag", &img, &err), &err);
  assert_string_equal(img->id, id);
  assert_string_equal(img->name, "localhost/x:tag");
  assert_int_equal(img->layers.n, 2);
  img_image_free(img);
  /* by id, and a short name is docker.io's */
  tl_ok(img_store_tag(f->s, id, "x", &err), &err);
  tl_ok(img_lookup(f->s, "docker.io/library/x:latest", &img, &err), &err);
  assert_string_equal(img->id, id);
  img_image_free(img);
  /* both names are listed; the source name stays */
  struct img_list_entry *v = NULL;
  size_t n = 0;
  tl_ok(img_store_list(f->s, &v, &n, &err), &err);
  assert_int_equal(n, 3);
  img_list_free(v, n);
  /* errors: unknown source, names that are not registry names with a tag */
  int ret = img_store_tag(f->s, "localhost/none:1", "localhost/y:1", &err);
  assert_true(ret < 0);
  ci_error_free(&err);
  tl_fails(img_store_tag(f->s, ref, "oci:/tmp/z", &err), &err, "cannot name an image");
  cleanup_free char *bydigest = xasprintf("localhost/y@%s", mdigest);
  tl_fails(img_store_tag(f->s, ref, bydigest, &err), &err, "cannot name an image");
  tl_fails(img_store_tag(f->s, ref, "Upper/Case", &err), &err, "");
  tl_layer_release(&l[0]);
  tl_layer_release(&l[1]);
}

static void
test_pull_oci(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l[2];
  make_layers(&l[0], &l[1]);
  cleanup_free char *layout = xasprintf("%s/layout", f->base);
  char mdigest[IMG__DIGEST_LEN + 1];
  tl_oci_image(layout, l, 2, "v1", mdigest);
  cleanup_free char *ref = xasprintf("oci:%s:v1", layout);

  unsigned counts[IMG_PROGRESS_DONE + 1] = {0};
  struct img_pull_stats st;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.on_progress = count_progress;
  po.progress_data = counts;
  po.stats = &st;
  struct img_image *img = pull_ok(f->s, ref, &po);
  assert_int_equal(st.layers_extracted, 2);
  assert_int_equal(st.layers_reused, 0);
  assert_int_equal(counts[IMG_PROGRESS_RESOLVE], 1);
  assert_int_equal(counts[IMG_PROGRESS_LAYER_DONE], 2);
  assert_int_equal(counts[IMG_PROGRESS_DONE], 1);
  assert_true(counts[IMG_PROGRESS_EXTRACT] >= 2);
  assert_string_equal(img->name, ref);
  assert_string_equal(img->manifest_digest, mdigest);
  assert_int_equal(img->layers.n, 2);
  assert_int_equal(img->diff_ids.n, 2);
  assert_string_equal(img->diff_ids.v[0], l[0].diff_id);
  assert_string_equal(img->diff_ids.v[1], l[1].diff_id);
  cleanup_free char *want0 = xasprintf("%s/layers/%s/diff", f->root, l[0].diff_id + 7);
  assert_string_equal(img->layers.v[0], want0);
  assert_int_equal(img->n_lock_fds, 2);
  assert_int_equal(img->config.cmd.n, 1);
  assert_string_equal(img->config.cmd.v[0], "/bin/sh");
  assert_true(img->size > 0);
  /* the top layer's whiteout and opaque dir */
  struct stat stt;
  cleanup_free char *wh = xasprintf("%s/etc/group", img->layers.v[1]);
  assert_int_equal(lstat(wh, &stt), 0);
  assert_true(S_ISCHR(stt.st_mode) && stt.st_rdev == 0);
  char v[4];
  cleanup_free char *opq = xasprintf("%s/opt/app", img->layers.v[1]);
  assert_int_equal(getxattr(opq, "user.overlay.opaque", v, sizeof(v)), 1);
  assert_true(tl_exists("%s/bin/sh", img->layers.v[0]));
  /* the stored config and manifest, verified */
  assert_true(tl_exists("%s/blobs/sha256/%s", f->root, mdigest + 7));
  assert_true(tl_exists("%s/blobs/sha256/%s", f->root, img->id + 7));
  assert_true(tl_exists("%s/images/%s.json", f->root, img->id + 7));
  cleanup_free char *stg = xasprintf("%s/staging", f->root);
  cleanup_free char *stg_tree = tl_tree(stg);
  assert_string_equal(stg_tree, "");
  img_image_free(img);

  /* again: found in the store without asking the source */
  memset(counts, 0, sizeof(counts));
  img = pull_ok(f->s, ref, &po);
  assert_int_equal(st.layers_extracted, 0);
  assert_int_equal(st.layers_reused, 2);
  assert_int_equal(counts[IMG_PROGRESS_RESOLVE], 0);
  img_image_free(img);
  /* always: asks the source, reuses the layers */
  po.policy = IMG_PULL_ALWAYS;
  img = pull_ok(f->s, ref, &po);
  assert_int_equal(st.layers_extracted, 0);
  assert_int_equal(st.layers_reused, 2);
  assert_int_equal(counts[IMG_PROGRESS_RESOLVE], 1);
  img_image_free(img);

  /* lookup by name and by id */
  struct ci_error *err = NULL;
  tl_ok(img_lookup(f->s, ref, &img, &err), &err);
  cleanup_free char *id = xstrdup(img->id);
  img_image_free(img);
  tl_ok(img_lookup(f->s, id, &img, &err), &err);
  assert_string_equal(img->name, ref);
  img_image_free(img);
  cleanup_free char *other = xasprintf("oci:%s:v2", layout);
  int ret = img_lookup(f->s, other, &img, &err);
  assert_int_equal(ret, -ENOENT);
  tl_fails(ret, &err, "not in the store");
  po.policy = IMG_PULL_NEVER;
  tl_fails(img_pull(f->s, other, &po, &img, &err), &err, "pull policy is 'never'");
  po.policy = IMG_PULL_MISSING;
  tl_fails(img_pull(f->s, other, &po, &img, &err), &err, "no image tagged 'v2'");
  cleanup_free char *notag = xasprintf("oci:%s", layout);
  img = pull_ok(f->s, notag, NULL); /* the only image */
  assert_string_equal(img->id, id);
  img_image_free(img);
  cleanup_free char *nodir = xasprintf("oci:%s/none", f->base);
  tl_fails(img_pull(f->s, nodir, NULL, &img, &err), &err, "is not a directory");
  tl_fails(img_pull(f->s, "oci:/etc", NULL, &img, &err), &err, "not an OCI image layout");

  tl_layer_release(&l[0]);
  tl_layer_release(&l[1]);
}

/* A layout whose index.json points at an image index with two platforms. */
static void
test_pull_oci_multiarch(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *layout = xasprintf("%s/multi", f->base);
  struct tl_layer la, lb;
  struct tb t;
  tb_init(&t);
  tb_file(&t, "arch", 0644, "amd64\n");
  tl_layer_make(&la, &t, "gzip");
  tb_init(&t);
  tb_file(&t, "arch", 0644, "arm64\n");
  tl_layer_make(&lb, &t, "zstd");
  char d[IMG__DIGEST_LEN + 1], ma[IMG__DIGEST_LEN + 1], mb[IMG__DIGEST_LEN + 1];
  char ix[IMG__DIGEST_LEN + 1];
  cleanup_free char *ca = tl_config(&la, 1, "amd64", NULL);
  cleanup_free char *cb = tl_config(&lb, 1, "arm64", "\"Env\":[\"ARCH=arm64\"]");
  tl_oci_blob(layout, ca, strlen(ca), d);
  tl_oci_blob(layout, cb, strlen(cb), d);
  tl_oci_blob(layout, la.blob, la.blob_len, d);
  tl_oci_blob(layout, lb.blob, lb.blob_len, d);
  cleanup_free char *man_a =
      tl_manifest(IMG__MT_OCI_MANIFEST, ca, &la, 1, "application/vnd.oci.image.layer.v1.tar+gzip");
  cleanup_free char *man_b =
      tl_manifest(IMG__MT_OCI_MANIFEST, cb, &lb, 1, "application/vnd.oci.image.layer.v1.tar+zstd");
  tl_oci_blob(layout, man_a, strlen(man_a), ma);
  tl_oci_blob(layout, man_b, strlen(man_b), mb);
  cleanup_free char *index = xasprintf(
      "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
      "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"os\":\"linux\","
      "\"architecture\":\"amd64\"}},"
      "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"os\":\"linux\","
      "\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}",
      IMG__MT_OCI_INDEX, IMG__MT_OCI_MANIFEST, ma, strlen(man_a), IMG__MT_OCI_MANIFEST, mb,
      strlen(man_b));
  tl_oci_blob(layout, index, strlen(index), ix);
  cleanup_free char *top = xasprintf(
      "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
      "\"annotations\":{\"org.opencontainers.image.ref.name\":\"multi\"}}]}",
      IMG__MT_OCI_INDEX, ix, strlen(index));
  tl_oci_finish(layout, top);

  cleanup_free char *ref = xasprintf("oci:%s:multi", layout);
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.platform = "linux/arm64";
  struct img_image *img = pull_ok(f->s, ref, &po);
  assert_string_equal(img->manifest_digest, mb);
  assert_string_equal(img->config.architecture, "arm64");
  assert_string_equal(img->config.env.v[0], "ARCH=arm64");
  cleanup_free char *arch = xasprintf("%s/arch", img->layers.v[0]);
  cleanup_free char *content = tl_read(arch);
  assert_string_equal(content, "arm64\n");
  img_image_free(img);
#if defined(__x86_64__)
  po.platform = NULL;
  po.policy = IMG_PULL_ALWAYS;
  img = pull_ok(f->s, ref, &po);
  assert_string_equal(img->manifest_digest, ma);
  img_image_free(img);
#endif
  struct ci_error *err = NULL;
  po.platform = "linux/riscv64";
  po.policy = IMG_PULL_ALWAYS;
  tl_fails(img_pull(f->s, ref, &po, &img, &err), &err, "no image for platform linux/riscv64");
  po.platform = "nonsense";
  tl_fails(img_pull(f->s, ref, &po, &img, &err), &err, "invalid platform");
  tl_layer_release(&la);
  tl_layer_release(&lb);
}

/* Whatever is wrong with a layout, the pull fails and the store keeps no half layer. */
static void
test_pull_oci_corrupt(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l[2];
  make_layers(&l[0], &l[1]);
  struct ci_error *err = NULL;
  struct img_image *img = NULL;
  cleanup_free char *layers = xasprintf("%s/layers", f->root);
  cleanup_free char *staging = xasprintf("%s/staging", f->root);

  /* 1. a layer blob whose bytes do not match its digest (same size) */
  cleanup_free char *a = xasprintf("%s/bad-blob", f->base);
  char md[IMG__DIGEST_LEN + 1];
  tl_oci_image(a, l, 2, "x", md);
  cleanup_free char *blob = xasprintf("%s/blobs/sha256/%s", a, l[1].digest + 7);
  l[1].blob[l[1].blob_len - 10] ^= 1;
  tl_write(blob, l[1].blob, l[1].blob_len);
  l[1].blob[l[1].blob_len - 10] ^= 1;
  cleanup_free char *ra = xasprintf("oci:%s:x", a);
  tl_fails(img_pull(f->s, ra, NULL, &img, &err), &err, "");
  assert_false(tl_exists("%s/%s", layers, l[1].diff_id + 7));
  cleanup_free char *st1 = tl_tree(staging);
  assert_string_equal(st1, "");
  /* the good bottom layer was kept (it is valid and shared), the image was not named */
  assert_true(tl_exists("%s/%s/meta.json", layers, l[0].diff_id + 7));
  assert_int_equal(img_lookup(f->s, ra, &img, NULL), -ENOENT);

  /* 2. a config whose diff id does not match the layer */
  cleanup_free char *b = xasprintf("%s/bad-diffid", f->base);
  struct tl_layer fake = l[1];
  memcpy(fake.diff_id, "sha256:" D64, sizeof(fake.diff_id));
  struct tl_layer pair[2] = {l[0], fake};
  tl_oci_image(b, pair, 2, "x", md);
  cleanup_free char *rb = xasprintf("oci:%s:x", b);
  tl_fails(img_pull(f->s, rb, NULL, &img, &err), &err, "but the image config says");
  assert_false(tl_exists("%s/" D64, layers));

  /* 3. a manifest that was tampered with */
  cleanup_free char *c = xasprintf("%s/bad-manifest", f->base);
  tl_oci_image(c, l, 2, "x", md);
  cleanup_free char *mpath = xasprintf("%s/blobs/sha256/%s", c, md + 7);
  cleanup_free char *mtext = tl_read(mpath);
  mtext[strlen(mtext) - 1] = ' ';
  tl_write(mpath, mtext, strlen(mtext));
  cleanup_free char *rc = xasprintf("oci:%s:x", c);
  tl_fails(img_pull(f->s, rc, NULL, &img, &err), &err, "manifest has digest");

  /* 4. a missing blob, and a layer count that disagrees with the config */
  cleanup_free char *d = xasprintf("%s/missing", f->base);
  tl_oci_image(d, l, 2, "x", md);
  cleanup_free char *gone = xasprintf("%s/blobs/sha256/%s", d, l[1].digest + 7);
  unlink(gone);
  cleanup_free char *rd = xasprintf("oci:%s:x", d);
  tl_fails(img_pull(f->s, rd, NULL, &img, &err), &err, "cannot open layer");
  cleanup_free char *e = xasprintf("%s/count", f->base);
  char cd[IMG__DIGEST_LEN + 1], md2[IMG__DIGEST_LEN + 1];
  cleanup_free char *cfg = tl_config(l, 1, "amd64", NULL);
  tl_oci_blob(e, cfg, strlen(cfg), cd);
  tl_oci_blob(e, l[0].blob, l[0].blob_len, cd);
  tl_oci_blob(e, l[1].blob, l[1].blob_len, cd);
  cleanup_free char *man = tl_manifest(IMG__MT_OCI_MANIFEST, cfg, l, 2, "x");
  tl_oci_blob(e, man, strlen(man), md2);
  cleanup_free char *idx = xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\","
                                     "\"digest\":\"%s\",\"size\":%zu}]}",
                                     IMG__MT_OCI_MANIFEST, md2, strlen(man));
  tl_oci_finish(e, idx);
  cleanup_free char *re = xasprintf("oci:%s", e);
  tl_fails(img_pull(f->s, re, NULL, &img, &err), &err,
           "the manifest has 2 layers but the config 1");

  /* 5. two names and no tag asked for */
  cleanup_free char *g = xasprintf("%s/two", f->base);
  char m1[IMG__DIGEST_LEN + 1];
  tl_oci_image(g, l, 2, "one", m1);
  cleanup_free char *two = xasprintf(
      "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,"
      "\"annotations\":{\"org.opencontainers.image.ref.name\":\"one\"}},{\"mediaType\":\"%s\","
      "\"digest\":\"%s\",\"size\":1,\"annotations\":{\"org.opencontainers.image.ref.name\":"
      "\"two\"}}]}",
      IMG__MT_OCI_MANIFEST, m1, IMG__MT_OCI_MANIFEST, m1);
  tl_oci_finish(g, two);
  cleanup_free char *rg = xasprintf("oci:%s", g);
  tl_fails(img_pull(f->s, rg, NULL, &img, &err), &err, "holds 2 images");
  cleanup_free char *rg2 = xasprintf("oci:%s:one", g);
  tl_fails(img_pull(f->s, rg2, NULL, &img, &err), &err, "bytes, expected 1"); /* size lies */
  cleanup_free char *st2 = tl_tree(staging);
  assert_string_equal(st2, "");
  tl_layer_release(&l[0]);
  tl_layer_release(&l[1]);
}

/* ------------------------------------------------------------ docker-archive */

struct arch_member {
  const char *name;
  const char *data; /* NULL: symlink to target */
  size_t len;
  const char *target;
};

static void
write_archive(const char *path, const struct arch_member *m, size_t n, const char *filter)
{
  struct tb t;
  tb_init(&t);
  for (size_t i = 0; i < n; i++) {
    if (m[i].data) {
      struct archive_entry *e = archive_entry_new();
      archive_entry_set_pathname(e, m[i].name);
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0444);
      archive_entry_set_size(e, (la_int64_t)m[i].len);
      assert_int_equal(archive_write_header(t.a, e), ARCHIVE_OK);
      assert_int_equal(archive_write_data(t.a, m[i].data, m[i].len), (la_ssize_t)m[i].len);
      archive_entry_free(e);
    } else {
      tb_symlink(&t, m[i].name, m[i].target);
    }
  }
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  if (filter) {
    size_t clen;
    cleanup_free char *c = tl_compress(tar, len, filter, &clen);
    tl_write(path, c, clen);
  } else {
    tl_write(path, tar, len);
  }
}

static void
test_pull_docker_archive(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l[2];
  make_layers(&l[0], &l[1]);
  cleanup_free char *cfg = tl_config(l, 2, "amd64", "\"WorkingDir\":\"/srv\"");
  cleanup_free char *cfg2 = tl_config(l, 1, "amd64", NULL);
  cleanup_free char *chex = tl_digest_hex(cfg, strlen(cfg));
  cleanup_free char *chex2 = tl_digest_hex(cfg2, strlen(cfg2));
  cleanup_free char *cname = xasprintf("%s.json", chex);
  cleanup_free char *cname2 = xasprintf("%s.json", chex2);
  cleanup_free char *l0 = xasprintf("%s.tar", l[0].diff_id + 7);
  cleanup_free char *manifest = xasprintf(
      "[{\"Config\":\"%s\",\"RepoTags\":[\"example.com/app:1\"],\"Layers\":[\"aaa/layer.tar\","
      "\"bbb/layer.tar\"]},{\"Config\":\"%s\",\"RepoTags\":[\"busybox:latest\"],"
      "\"Layers\":[\"aaa/layer.tar\"]}]",
      cname, cname2);
  cleanup_free char *up = xasprintf("../%s", l0);
  /* podman save writes "<id>/layer.tar" symlinks to the real tar; manifest.json comes last */
  const struct arch_member members[] = {
      {l0, l[0].tar, l[0].tar_len, NULL},
      {"aaa/layer.tar", NULL, 0, up},
      {"bbb/layer.tar", l[1].blob, l[1].blob_len, NULL}, /* a gzip member is fine too */
      {cname, cfg, strlen(cfg), NULL},
      {cname2, cfg2, strlen(cfg2), NULL},
      {"manifest.json", manifest, strlen(manifest), NULL},
  };
  cleanup_free char *file = xasprintf("%s/save.tar", f->base);
  write_archive(file, members, CI_ARRAY_SIZE(members), NULL);

  cleanup_free char *ref = xasprintf("docker-archive:%s:example.com/app:1", file);
  struct img_pull_stats st;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.stats = &st;
  struct img_image *img = pull_ok(f->s, ref, &po);
  assert_int_equal(st.layers_extracted, 2);
  assert_null(img->manifest_digest);
  cleanup_free char *want_id = xasprintf("sha256:%s", chex);
  assert_string_equal(img->id, want_id);
  assert_string_equal(img->config.working_dir, "/srv");
  assert_true(tl_exists("%s/etc/passwd", img->layers.v[0]));
  assert_true(tl_exists("%s/srv/data", img->layers.v[1]));
  img_image_free(img);

  /* RepoTags are compared normalised: busybox:latest = docker.io/library/busybox:latest */
  cleanup_free char *ref2 = xasprintf("docker-archive:%s:docker.io/library/busybox", file);
  img = pull_ok(f->s, ref2, &po);
  assert_int_equal(st.layers_extracted, 0);
  assert_int_equal(st.layers_reused, 1);
  assert_int_equal(img->layers.n, 1);
  img_image_free(img);

  struct ci_error *err = NULL;
  cleanup_free char *ambiguous = xasprintf("docker-archive:%s", file);
  tl_fails(img_pull(f->s, ambiguous, NULL, &img, &err), &err, "holds 2 images");
  cleanup_free char *absent = xasprintf("docker-archive:%s:nope:1", file);
  tl_fails(img_pull(f->s, absent, NULL, &img, &err), &err, "no image named");
  cleanup_free char *nofile = xasprintf("docker-archive:%s/none.tar", f->base);
  tl_fails(img_pull(f->s, nofile, NULL, &img, &err), &err, "cannot open");

  /* a compressed archive with one image, whose config file name lies about its digest */
  cleanup_free char *liar = xasprintf("%s.json", chex2);
  cleanup_free char *m2 =
      xasprintf("[{\"Config\":\"%s\",\"RepoTags\":null,\"Layers\":[\"%s\"]}]", liar, l0);
  const struct arch_member bad[] = {
      {"manifest.json", m2, strlen(m2), NULL},
      {l0, l[0].tar, l[0].tar_len, NULL},
      {liar, cfg, strlen(cfg), NULL},
  };
  cleanup_free char *file2 = xasprintf("%s/liar.tar.gz", f->base);
  write_archive(file2, bad, CI_ARRAY_SIZE(bad), "gzip");
  cleanup_free char *ref3 = xasprintf("docker-archive:%s", file2);
  tl_fails(img_pull(f->s, ref3, NULL, &img, &err), &err, "image config has digest");

  /* a member path that climbs out of the archive */
  cleanup_free char *m3 = xasprintf("[{\"Config\":\"../../etc/passwd\",\"Layers\":[]}]");
  const struct arch_member climb[] = {{"manifest.json", m3, strlen(m3), NULL}};
  cleanup_free char *file3 = xasprintf("%s/climb.tar", f->base);
  write_archive(file3, climb, 1, NULL);
  cleanup_free char *ref4 = xasprintf("docker-archive:%s", file3);
  tl_fails(img_pull(f->s, ref4, NULL, &img, &err), &err, "outside the archive");
  tl_layer_release(&l[0]);
  tl_layer_release(&l[1]);
}

/* ------------------------------------------------------------ list, remove, prune, holds */

static void
test_list_remove_prune(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l[3];
  make_layers(&l[0], &l[1]);
  struct tb t;
  tb_init(&t);
  tb_file(&t, "only-in-b", 0644, "b");
  tl_layer_make(&l[2], &t, "gzip");
  cleanup_free char *la = xasprintf("%s/a", f->base);
  cleanup_free char *lb = xasprintf("%s/b", f->base);
  char md[IMG__DIGEST_LEN + 1];
  tl_oci_image(la, l, 2, "a", md);
  struct tl_layer bl[2] = {l[0], l[2]};
  tl_oci_image(lb, bl, 2, "b", md);
  cleanup_free char *ra = xasprintf("oci:%s:a", la);
  cleanup_free char *rb = xasprintf("oci:%s:b", lb);
  img_image_free(pull_ok(f->s, ra, NULL));
  img_image_free(pull_ok(f->s, rb, NULL));

  struct img_list_entry *v = NULL;
  size_t n = 0;
  struct ci_error *err = NULL;
  tl_ok(img_store_list(f->s, &v, &n, &err), &err);
  assert_int_equal(n, 2);
  assert_string_equal(v[0].name, ra);
  assert_string_equal(v[1].name, rb);
  assert_true(v[0].size > 0);
  assert_true(v[0].pulled > 1700000000);
  assert_non_null(v[0].manifest_digest);
  img_list_free(v, n);

  /* leftovers of a crashed pull: a staging dir and a partial download */
  cleanup_free char *stale = xasprintf("%s/staging/%s-abcdef", f->root, l[2].diff_id + 7);
  assert_int_equal(mkdir(stale, 0700), 0);
  cleanup_free char *partial = xasprintf("%s/blobs/partial/%s", f->root, D64);
  tl_write(partial, "part", 4);

  /* hold image a (as a running task would), then forget its name */
  struct img_image *held = NULL;
  tl_ok(img_lookup(f->s, ra, &held, &err), &err);
  tl_ok(img_store_remove(f->s, ra, &err), &err);
  int ret = img_store_remove(f->s, ra, &err);
  assert_int_equal(ret, -ENOENT);
  tl_fails(ret, &err, "not in the store");
  struct img_prune_stats ps;
  tl_ok(img_store_prune(f->s, &ps, &err), &err);
  assert_int_equal(ps.images, 1);
  assert_int_equal(ps.layers, 0);
  assert_int_equal(ps.busy, 1); /* l[1], held */
  assert_true(ps.blobs >= 3);   /* a's manifest and config, the partial download */
  assert_true(tl_exists("%s/layers/%s/diff/srv/data", f->root, l[1].diff_id + 7));
  assert_false(tl_exists("%s", stale));
  assert_false(tl_exists("%s", partial));
  img_image_free(held);

  tl_ok(img_store_prune(f->s, &ps, &err), &err);
  assert_int_equal(ps.layers, 1);
  assert_int_equal(ps.busy, 0);
  assert_true(ps.bytes > 0);
  assert_false(tl_exists("%s/layers/%s", f->root, l[1].diff_id + 7));
  assert_false(tl_exists("%s/locks/%s.lock", f->root, l[1].diff_id + 7));
  /* b is intact and usable */
  struct img_image *img = NULL;
  tl_ok(img_lookup(f->s, rb, &img, &err), &err);
  assert_true(tl_exists("%s/etc/passwd", img->layers.v[0]));
  assert_true(tl_exists("%s/only-in-b", img->layers.v[1]));
  cleanup_free char *idb = xstrdup(img->id);
  img_image_free(img);
  tl_ok(img_store_prune(f->s, &ps, &err), &err);
  assert_int_equal(ps.layers + ps.images + ps.blobs, 0);

  /* remove by short id, then everything goes */
  cleanup_free char *shortid = xstrndup(idb + 7, 12);
  tl_ok(img_store_remove(f->s, shortid, &err), &err);
  tl_ok(img_store_prune(f->s, &ps, &err), &err);
  assert_int_equal(ps.layers, 2);
  assert_int_equal(ps.images, 1);
  cleanup_free char *layers = xasprintf("%s/layers", f->root);
  cleanup_free char *tree = tl_tree(layers);
  assert_string_equal(tree, "");
  tl_ok(img_store_list(f->s, &v, &n, &err), &err);
  assert_int_equal(n, 0);
  img_list_free(v, n);
  /* a pull after a prune extracts again */
  struct img_pull_stats st;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.stats = &st;
  img_image_free(pull_ok(f->s, rb, &po));
  assert_int_equal(st.layers_extracted, 2);
  for (int i = 0; i < 3; i++)
    tl_layer_release(&l[i]);
}

/* ------------------------------------------------------------ several processes */

static void
test_concurrent_pulls(void **state)
{
  struct fixture *f = *state;
  enum { PROCS = 4, LAYERS = 3 };
  struct tl_layer l[LAYERS];
  for (int i = 0; i < LAYERS; i++) {
    struct tb t;
    tb_init(&t);
    char name[32];
    snprintf(name, sizeof(name), "layer%d/blob", i);
    tb_big_file(&t, name, 3 << 20, (unsigned)i + 10);
    tl_layer_make(&l[i], &t, "gzip");
  }
  cleanup_free char *layout = xasprintf("%s/big", f->base);
  char md[IMG__DIGEST_LEN + 1];
  tl_oci_image(layout, l, LAYERS, "v", md);
  cleanup_free char *ref = xasprintf("oci:%s:v", layout);

  int go[2], results[2];
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(results), 0);
  pid_t pids[PROCS];
  for (int p = 0; p < PROCS; p++) {
    pids[p] = fork();
    assert_true(pids[p] >= 0);
    if (pids[p] == 0) {
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) < 0) /* wait for the start signal (EOF) */
        _exit(20);
      struct img_store *s = NULL;
      if (img_store_open(f->root, NULL, &s, NULL) < 0)
        _exit(21);
      struct img_pull_stats st;
      struct img_pull_opts po = IMG_PULL_OPTS_INIT;
      po.policy = IMG_PULL_ALWAYS;
      po.stats = &st;
      struct img_image *img = NULL;
      struct ci_error *err = NULL;
      if (img_pull(s, ref, &po, &img, &err) < 0) {
        fprintf(stderr, "child %d: %s\n", p, err->msg);
        _exit(22);
      }
      int ok = img->layers.n == LAYERS;
      for (size_t i = 0; i < img->layers.n; i++) {
        cleanup_free char *blob = xasprintf("%s/layer%zu/blob", img->layers.v[i], i);
        struct stat sb;
        ok = ok && stat(blob, &sb) == 0 && sb.st_size == (3 << 20);
      }
      unsigned char out[2] = {(unsigned char)st.layers_extracted, (unsigned char)st.layers_reused};
      if (write(results[1], out, 2) != 2)
        _exit(23);
      img_image_free(img);
      img_store_free(s);
      _exit(ok ? 0 : 24);
    }
  }
  close(go[0]);
  close(go[1]); /* all start now */
  close(results[1]);
  unsigned extracted = 0, reused = 0;
  for (int p = 0; p < PROCS; p++) {
    int st;
    assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
      fail_msg("child %d exited %d", p, WEXITSTATUS(st));
  }
  unsigned char buf[2];
  while (read(results[0], buf, 2) == 2) {
    extracted += buf[0];
    reused += buf[1];
  }
  close(results[0]);
  assert_int_equal(extracted, LAYERS); /* each layer extracted exactly once */
  assert_int_equal(reused, (PROCS - 1) * LAYERS);
  cleanup_free char *staging = xasprintf("%s/staging", f->root);
  cleanup_free char *tree = tl_tree(staging);
  assert_string_equal(tree, "");
  struct img_list_entry *v = NULL;
  size_t n = 0;
  struct ci_error *err = NULL;
  tl_ok(img_store_list(f->s, &v, &n, &err), &err);
  assert_int_equal(n, 1);
  img_list_free(v, n);
  for (int i = 0; i < LAYERS; i++)
    tl_layer_release(&l[i]);
}

static volatile sig_atomic_t alarm_cancel;
static void
on_alarm(int sig)
{
  (void)sig;
  alarm_cancel = 1;
}

/* A pull that waits for another process's layer lock reports it and can be canceled. */
static void
test_wait_and_cancel(void **state)
{
  struct fixture *f = *state;
  struct tl_layer l;
  struct tb t;
  tb_init(&t);
  tb_file(&t, "x", 0644, "x");
  tl_layer_make(&l, &t, NULL);
  cleanup_free char *layout = xasprintf("%s/w", f->base);
  char md[IMG__DIGEST_LEN + 1];
  tl_oci_image(layout, &l, 1, "v", md);
  cleanup_free char *ref = xasprintf("oci:%s:v", layout);
  cleanup_free char *lock = xasprintf("%s/locks/%s.lock", f->root, l.diff_id + 7);
  int fd = -1;
  struct ci_error *err = NULL;
  tl_ok(img__lock(lock, LOCK_EX, NULL, &fd, &err), &err);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fd);
    signal(SIGALRM, on_alarm);
    ualarm(300000, 0);
    unsigned counts[IMG_PROGRESS_DONE + 1] = {0};
    struct img_pull_opts po = IMG_PULL_OPTS_INIT;
    po.cancel = &alarm_cancel;
    po.on_progress = count_progress;
    po.progress_data = counts;
    struct img_store *s = NULL;
    struct img_image *img = NULL;
    if (img_store_open(f->root, NULL, &s, NULL) < 0)
      _exit(30);
    int ret = img_pull(s, ref, &po, &img, NULL);
    img_store_free(s);
    _exit(ret == CI_ECANCELED && counts[IMG_PROGRESS_WAIT] == 1 ? 0 : 31);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  close(fd);
  assert_false(tl_exists("%s/layers/%s", f->root, l.diff_id + 7));
  img_image_free(pull_ok(f->s, ref, NULL)); /* the lock is free again */
  tl_layer_release(&l);
}

/* A lock file removed by its holder (as prune does) is not trusted by the next holder. */
static void
test_lock_recheck(void **state)
{
  struct fixture *f = *state;
  cleanup_free char *lock = xasprintf("%s/locks/test.lock", f->root);
  int a = -1, b = -1;
  struct ci_error *err = NULL;
  tl_ok(img__lock(lock, LOCK_EX, NULL, &a, &err), &err);
  assert_int_equal(img__lock(lock, LOCK_SH | LOCK_NB, NULL, &b, &err), -EWOULDBLOCK);
  assert_null(err);
  struct stat s1;
  assert_int_equal(fstat(a, &s1), 0);
  unlink(lock);
  tl_ok(img__lock(lock, LOCK_SH | LOCK_NB, NULL, &b, &err), &err); /* a fresh file */
  struct stat s2;
  assert_int_equal(fstat(b, &s2), 0);
  assert_true(s1.st_ino != s2.st_ino || s1.st_nlink == 0);
  close(a);
  close(b);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ref_parse),
      cmocka_unit_test(test_ref_file_transports),
      cmocka_unit_test(test_manifest_parse),
      cmocka_unit_test(test_index_select),
      cmocka_unit_test(test_platform),
      cmocka_unit_test(test_config_parse),
      cmocka_unit_test(test_regconf),
      cmocka_unit_test(test_loopback),
      cmocka_unit_test(test_auth_file),
      cmocka_unit_test(test_challenge),
      cmocka_unit_test(test_store_default_dir),
      cmocka_unit_test_setup_teardown(test_store_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_id_shift, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_tag, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pull_oci, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pull_oci_multiarch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pull_oci_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pull_docker_archive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_remove_prune, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_pulls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wait_and_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock_recheck, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
