/* test/unit/test_image_registry.c - the registry v2 client against a fake registry: a plain
 * HTTP server forked by the test on 127.0.0.1 that logs every request.  Covers the TLS->HTTP
 * fallback for loopback, bearer tokens (and their expiry), Basic auth, manifest lists, blob
 * redirects (without leaking Authorization), resumable and re-verified downloads, servers that
 * ignore Range, corrupt blobs, cancellation, registry errors and registries.conf mirrors. */
#include "test_image_lib.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#define REPO "test/img"
#define TOKEN "T0K-123"
#define D64_LIE "abababababababababababababababababababababababababababababababab"

struct srv_doc {
  const char *path; /* "/v2/test/img/manifests/v1", "/blob/<hex>" (blobs by digest hex) */
  const char *ctype;
  const char *data;
  size_t len;
  const char *digest_header; /* Docker-Content-Digest to send (NULL: none) */
};

struct srv {
  /* behaviour */
  bool bearer;          /* require Authorization: Bearer TOKEN */
  bool basic;           /* require Basic alice:s3cr3t */
  bool redirect;        /* blob GETs answer 307 to /storage/<hex> */
  bool ignore_range;    /* answer 200 with the whole blob even to Range requests */
  bool truncate_first;  /* the first blob GET gets half its body, then the connection closes */
  bool truncate_config; /* the same for the first small blob (the config) */
  bool slow;            /* send blobs in 16 KiB pieces, 10 ms apart */
  bool expire_once;     /* the first blob GET is 401 even with a valid token */
  bool not_a_registry;  /* /v2/ answers 404 */
  struct srv_doc docs[16];
  size_t n_docs;
  /* runtime */
  int port;
  pid_t pid;
  char *log; /* path of the request log */
};

static void
srv_add(struct srv *s, const char *path, const char *ctype, const char *data, size_t len,
        const char *digest_header)
{
  assert_true(s->n_docs < CI_ARRAY_SIZE(s->docs));
  s->docs[s->n_docs++] = (struct srv_doc){path, ctype, data, len, digest_header};
}

static void
send_all(int fd, const void *p, size_t n)
{
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0)
      return;
    c += w;
    n -= (size_t)w;
  }
}

static void
respond(int fd, int status, const char *reason, const char *extra_headers, const char *ctype,
        const char *body, size_t len, size_t send_len)
{
  char head[2048];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s%s%s%s\r\n",
                   status, reason, len, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                   ctype ? "\r\n" : "", extra_headers ? extra_headers : "");
  send_all(fd, head, (size_t)n);
  if (body)
    send_all(fd, body, send_len);
}

static char *
header(const char *req, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (!strncasecmp(line, name, n) && line[n] == ':') {
      const char *v = line + n + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      return xstrndup(v, e ? (size_t)(e - v) : strlen(v));
    }
  }
  return NULL;
}

static const struct srv_doc *
find_doc(const struct srv *s, const char *path)
{
  for (size_t i = 0; i < s->n_docs; i++)
    if (!strcmp(s->docs[i].path, path))
      return &s->docs[i];
  return NULL;
}

static void
serve_blob(const struct srv *s, int fd, const struct srv_doc *d, const char *range, int *blob_gets)
{
  size_t start = 0;
  if (range && !s->ignore_range && !strncmp(range, "bytes=", 6))
    start = strtoul(range + 6, NULL, 10);
  if (start > d->len) {
    respond(fd, 416, "Range Not Satisfiable", NULL, NULL, NULL, 0, 0);
    return;
  }
  size_t len = d->len - start;
  char extra[256] = "";
  int status = 200;
  if (start > 0) {
    status = 206;
    snprintf(extra, sizeof(extra), "Content-Range: bytes %zu-%zu/%zu\r\n", start, d->len - 1,
             d->len);
  }
  static int small_gets;
  if (d->len > 10000) /* count layer blobs, not configs */
    (*blob_gets)++;
  else
    small_gets++;
  size_t send_len = len;
  if (s->truncate_first && *blob_gets == 1 && d->len > 10000)
    send_len = len / 2;
  if (s->truncate_config && small_gets == 1 && d->len <= 10000)
    send_len = len / 2;
  if (!s->slow) {
    respond(fd, status, status == 200 ? "OK" : "Partial Content", extra, "application/octet-stream",
            d->data + start, len, send_len);
    return;
  }
  respond(fd, status, "OK", extra, "application/octet-stream", NULL, len, 0);
  for (size_t off = 0; off < send_len; off += 16384) {
    size_t n = send_len - off < 16384 ? send_len - off : 16384;
    send_all(fd, d->data + start + off, n);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static void
srv_handle(struct srv *s, int fd, int logfd, int *blob_gets, int *expired)
{
  char req[65536];
  size_t got = 0;
  while (got < sizeof(req) - 1) {
    ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n"))
      break;
    if (got >= 4 && memcmp(req, "GET ", 4) != 0)
      break; /* not HTTP (a TLS hello): give up at once */
  }
  req[got] = '\0';
  if (got < 4 || memcmp(req, "GET ", 4) != 0) {
    dprintf(logfd, "NOT-HTTP\n");
    return;
  }
  char path[2048];
  if (sscanf(req, "GET %2047s", path) != 1)
    return;
  cleanup_free char *auth = header(req, "Authorization");
  cleanup_free char *range = header(req, "Range");
  cleanup_free char *accept = header(req, "Accept");
  dprintf(logfd, "GET %s auth=%s range=%s accept=%s\n", path, auth ? auth : "-",
          range ? range : "-", accept ? accept : "-");

  char challenge[512];
  if (s->basic)
    snprintf(challenge, sizeof(challenge), "WWW-Authenticate: Basic realm=\"fake\"\r\n");
  else
    snprintf(challenge, sizeof(challenge),
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\"\r\n",
             s->port);
  bool authed = true;
  if (s->bearer)
    authed = auth && !strcmp(auth, "Bearer " TOKEN);
  if (s->basic)
    authed = auth && !strcmp(auth, "Basic YWxpY2U6czNjcjN0"); /* alice:s3cr3t */

  if (!strcmp(path, "/v2/")) {
    if (s->not_a_registry)
      respond(fd, 404, "Not Found", NULL, "text/html", "<html/>", 7, 7);
    else if (!authed)
      respond(fd, 401, "Unauthorized", challenge, "application/json", "{}", 2, 2);
    else
      respond(fd, 200, "OK", NULL, "application/json", "{}", 2, 2);
    return;
  }
  if (!strncmp(path, "/token?", 7)) {
    bool ok = strstr(path, "scope=repository%3A") && strstr(path, "%3Apull") &&
              strstr(path, "service=fake");
    static const char tok[] = "{\"token\":\"" TOKEN "\",\"expires_in\":60}";
    if (ok)
      respond(fd, 200, "OK", NULL, "application/json", tok, strlen(tok), strlen(tok));
    else
      respond(fd, 400, "Bad Request", NULL, NULL, NULL, 0, 0);
    return;
  }
  if (!strncmp(path, "/storage/", 9)) {
    cleanup_free char *key = xasprintf("/blob/%s", path + 9);
    const struct srv_doc *d = find_doc(s, key);
    if (d)
      serve_blob(s, fd, d, range, blob_gets);
    else
      respond(fd, 404, "Not Found", NULL, NULL, NULL, 0, 0);
    return;
  }
  if (!strncmp(path, "/v2/", 4)) {
    if (!authed) {
      respond(fd, 401, "Unauthorized", challenge, "application/json", "{}", 2, 2);
      return;
    }
    const char *blobs = strstr(path, "/blobs/sha256:");
    if (blobs) {
      if (s->expire_once && !*expired) {
        *expired = 1;
        respond(fd, 401, "Unauthorized", challenge, "application/json", "{}", 2, 2);
        return;
      }
      cleanup_free char *key = xasprintf("/blob/%s", blobs + 14);
      const struct srv_doc *d = find_doc(s, key);
      if (d && s->redirect) {
        char loc[256];
        /* another host name, as a CDN would be: curl must not forward our credentials */
        snprintf(loc, sizeof(loc), "Location: http://localhost:%d/storage/%s\r\n", s->port,
                 blobs + 14);
        respond(fd, 307, "Temporary Redirect", loc, NULL, NULL, 0, 0);
      } else if (d) {
        serve_blob(s, fd, d, range, blob_gets);
      } else {
        static const char e[] = "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"blob "
                                "unknown to registry\"}]}";
        respond(fd, 404, "Not Found", NULL, "application/json", e, strlen(e), strlen(e));
      }
      return;
    }
    const struct srv_doc *d = find_doc(s, path);
    if (d) {
      char extra[256] = "";
      if (d->digest_header)
        snprintf(extra, sizeof(extra), "Docker-Content-Digest: %s\r\n", d->digest_header);
      respond(fd, 200, "OK", extra, d->ctype, d->data, d->len, d->len);
      return;
    }
    static const char e[] = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                            "unknown\",\"detail\":{}}]}";
    respond(fd, 404, "Not Found", NULL, "application/json", e, strlen(e), strlen(e));
    return;
  }
  respond(fd, 404, "Not Found", NULL, NULL, NULL, 0, 0);
}

static void
srv_start(struct srv *s, const char *dir)
{
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(lfd >= 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(lfd, 64), 0);
  socklen_t al = sizeof(a);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
  s->port = ntohs(a.sin_port);
  s->log = xasprintf("%s/requests.log", dir);
  int logfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  assert_true(logfd >= 0);
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    signal(SIGPIPE, SIG_IGN);
    int blob_gets = 0, expired = 0;
    for (;;) {
      int c = accept(lfd, NULL, NULL);
      if (c < 0)
        continue;
      srv_handle(s, c, logfd, &blob_gets, &expired);
      shutdown(c, SHUT_WR);
      close(c);
    }
  }
  close(lfd);
  close(logfd);
}

static void
srv_stop(struct srv *s)
{
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  free(s->log);
  s->log = NULL;
}

static char *
srv_log(const struct srv *s)
{
  char *l = tl_read(s->log);
  return l ? l : xstrdup("");
}

static size_t
count_lines(const char *log, const char *needle)
{
  size_t n = 0;
  for (const char *p = log; (p = strstr(p, needle)); p++)
    n++;
  return n;
}

/* ------------------------------------------------------------ the image served */

struct img_fixture {
  struct tl_layer layer;
  char *config;
  char *manifest;
  char *index;
  char mdigest[IMG__DIGEST_LEN + 1];
  char idigest[IMG__DIGEST_LEN + 1];
  char cdigest[IMG__DIGEST_LEN + 1];
  const char *mpath_digest; /* borrowed from paths */
  struct ci_strv paths;     /* request paths served */
  char *cpath, *lpath;
  char *base;
  char *root;
  struct img_store *s;
  struct srv srv;
};

static const char *
keep(struct img_fixture *f, char *s)
{
  ci_strv_push_take(&f->paths, s);
  return s;
}

static void
fixture_add_docs(struct img_fixture *f, struct srv *s, const char *repo)
{
  const char *mtag = keep(f, xasprintf("/v2/%s/manifests/single", repo));
  const char *mdig = keep(f, xasprintf("/v2/%s/manifests/%s", repo, f->mdigest));
  const char *itag = keep(f, xasprintf("/v2/%s/manifests/v1", repo));
  if (!f->mpath_digest)
    f->mpath_digest = mdig;
  srv_add(s, itag, IMG__MT_OCI_INDEX, f->index, strlen(f->index), f->idigest);
  srv_add(s, mtag, IMG__MT_OCI_MANIFEST, f->manifest, strlen(f->manifest), NULL);
  srv_add(s, mdig, IMG__MT_OCI_MANIFEST, f->manifest, strlen(f->manifest), f->mdigest);
  srv_add(s, f->cpath, "application/octet-stream", f->config, strlen(f->config), NULL);
  srv_add(s, f->lpath, "application/octet-stream", f->layer.blob, f->layer.blob_len, NULL);
}

static int
setup(void **state)
{
  struct img_fixture *f = xcalloc(1, sizeof(*f));
  struct tb t;
  tb_init(&t);
  tb_file(&t, "etc/hostname", 0644, "fake\n");
  tb_big_file(&t, "data/blob", 600000, 42);
  tl_layer_make(&f->layer, &t, "gzip");
  f->config = tl_config(&f->layer, 1, "amd64", "\"Env\":[\"FROM=registry\"]");
  img__digest_bytes(f->config, strlen(f->config), f->cdigest);
  f->manifest = tl_manifest(IMG__MT_OCI_MANIFEST, f->config, &f->layer, 1,
                            "application/vnd.oci.image.layer.v1.tar+gzip");
  img__digest_bytes(f->manifest, strlen(f->manifest), f->mdigest);
  f->index =
      xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
                "{\"mediaType\":\"%s\",\"digest\":\"sha256:"
                "%064d"
                "\",\"size\":1,"
                "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
                "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
                "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
                "{\"mediaType\":\"%s\",\"digest\":\"sha256:"
                "%064d"
                "\",\"size\":1,"
                "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"},\"annotations\":"
                "{\"vnd.docker.reference.type\":\"attestation-manifest\"}}]}",
                IMG__MT_OCI_INDEX, IMG__MT_OCI_MANIFEST, 0, IMG__MT_OCI_MANIFEST, f->mdigest,
                strlen(f->manifest), IMG__MT_OCI_MANIFEST, 1);
  img__digest_bytes(f->index, strlen(f->index), f->idigest);
  f->cpath = xasprintf("/blob/%s", f->cdigest + 7);
  f->lpath = xasprintf("/blob/%s", f->layer.digest + 7);
  f->base = tl_mkdtemp("registry");
  f->root = xasprintf("%s/store", f->base);
  struct ci_error *err = NULL;
  tl_ok(img_store_open(f->root, NULL, &f->s, &err), &err);
  fixture_add_docs(f, &f->srv, REPO);
  /* never read the machine's registries.conf or credentials */
  setenv("CIRRUS_REGISTRIES_CONF", "/nonexistent/registries.conf", 1);
  setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json", 1);
  unsetenv("XDG_RUNTIME_DIR");
  unsetenv("DOCKER_CONFIG");
  setenv("HOME", f->base, 1);
  unsetenv("http_proxy");
  unsetenv("https_proxy");
  unsetenv("HTTP_PROXY");
  unsetenv("HTTPS_PROXY");
  unsetenv("ALL_PROXY");
  *state = f;
  return 0;
}

static int
teardown(void **state)
{
  struct img_fixture *f = *state;
  if (f->srv.pid > 0)
    srv_stop(&f->srv);
  img_store_free(f->s);
  tl_rm_rf(f->base);
  tl_layer_release(&f->layer);
  free(f->config);
  free(f->manifest);
  free(f->index);
  ci_strv_release(&f->paths);
  free(f->cpath);
  free(f->lpath);
  free(f->base);
  free(f->root);
  free(f);
  return 0;
}

static int
pull(struct img_fixture *f, const char *tag, struct img_pull_opts *po, struct img_image **out,
     struct ci_error **err)
{
  cleanup_free char *ref = xasprintf("127.0.0.1:%d/" REPO "%s", f->srv.port, tag);
  struct img_pull_opts local = IMG_PULL_OPTS_INIT;
  if (!po)
    po = &local;
  if (!po->platform)
    po->platform = "linux/amd64";
  po->policy = IMG_PULL_ALWAYS;
  struct img_image *img = NULL;
  int ret = img_pull(f->s, ref, po, &img, err);
  if (out)
    *out = img;
  else
    img_image_free(img);
  return ret;
}

static void
assert_image(struct img_fixture *f, struct img_image *img)
{
  assert_int_equal(img->layers.n, 1);
  assert_string_equal(img->manifest_digest, f->mdigest);
  assert_string_equal(img->id, f->cdigest);
  assert_string_equal(img->config.env.v[0], "FROM=registry");
  struct stat st;
  cleanup_free char *blob = xasprintf("%s/data/blob", img->layers.v[0]);
  assert_int_equal(stat(blob, &st), 0);
  assert_int_equal(st.st_size, 600000);
}

static bool
partial_exists(struct img_fixture *f, off_t *size)
{
  cleanup_free char *p = xasprintf("%s/blobs/partial/%s", f->root, f->layer.digest + 7);
  struct stat st;
  if (stat(p, &st) < 0)
    return false;
  if (size)
    *size = st.st_size;
  return true;
}

/* ------------------------------------------------------------ tests */

static void
test_bearer_index_redirect(void **state)
{
  struct img_fixture *f = *state;
  f->srv.bearer = true;
  f->srv.redirect = true;
  srv_start(&f->srv, f->base);
  struct img_image *img = NULL;
  struct img_pull_stats st;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.stats = &st;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":v1", &po, &img, &err), &err);
  assert_image(f, img);
  assert_int_equal(st.layers_extracted, 1);
  assert_int_equal(st.bytes_downloaded, f->layer.blob_len);
  img_image_free(img);
  cleanup_free char *log = srv_log(&f->srv);
  /* https was tried first (the fake speaks plain HTTP only), then http */
  assert_true(strstr(log, "NOT-HTTP\nGET /v2/ auth=-") == log);
  assert_int_equal(count_lines(log, "GET /token?"), 1);
  assert_non_null(strstr(log, "GET /v2/" REPO "/manifests/v1 auth=Bearer " TOKEN));
  assert_non_null(strstr(log, IMG__MT_OCI_MANIFEST)); /* in Accept: the registry needs it */
  assert_non_null(strstr(log, IMG__MT_DOCKER_LIST));
  cleanup_free char *by_digest = xasprintf("GET %s auth=Bearer", f->mpath_digest);
  assert_non_null(strstr(log, by_digest));
  /* the redirected blob request carries no credentials */
  cleanup_free char *storage = xasprintf("GET /storage/%s auth=-", f->layer.digest + 7);
  assert_non_null(strstr(log, storage));
  assert_int_equal(count_lines(log, "Bearer " TOKEN), 4); /* manifest x2, config, blob */
  /* the downloaded layer blob is not kept once extracted */
  assert_false(tl_exists("%s/blobs/sha256/%s", f->root, f->layer.digest + 7));
  assert_false(partial_exists(f, NULL));
  assert_true(tl_exists("%s/blobs/sha256/%s", f->root, f->mdigest + 7));

  /* pulled again by digest: no blob is downloaded */
  cleanup_free char *dref = xasprintf("@%s", f->mdigest);
  tl_ok(pull(f, dref, &po, NULL, &err), &err);
  assert_int_equal(st.bytes_downloaded, 0);
  assert_int_equal(st.layers_reused, 1);
}

static void
test_resume_after_truncation(void **state)
{
  struct img_fixture *f = *state;
  f->srv.truncate_first = true;
  srv_start(&f->srv, f->base);
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", NULL, &img, &err), &err);
  assert_image(f, img);
  img_image_free(img);
  cleanup_free char *log = srv_log(&f->srv);
  cleanup_free char *resumed = xasprintf("range=bytes=%zu-", (f->layer.blob_len) / 2);
  assert_non_null(strstr(log, resumed));
}

static void
test_config_retry(void **state)
{
  struct img_fixture *f = *state;
  f->srv.truncate_config = true;
  srv_start(&f->srv, f->base);
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", NULL, &img, &err), &err);
  assert_image(f, img);
  img_image_free(img);
  cleanup_free char *log = srv_log(&f->srv);
  cleanup_free char *cfg = xasprintf("GET /v2/" REPO "/blobs/%s", f->cdigest);
  assert_int_equal(count_lines(log, cfg), 2);
}

static void
test_resume_partial(void **state)
{
  struct img_fixture *f = *state;
  srv_start(&f->srv, f->base);
  /* an earlier run left the first 100000 bytes */
  cleanup_free char *p = xasprintf("%s/blobs/partial/%s", f->root, f->layer.digest + 7);
  tl_write(p, f->layer.blob, 100000);
  struct img_pull_stats st;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.stats = &st;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", &po, NULL, &err), &err);
  assert_int_equal(st.bytes_downloaded, f->layer.blob_len - 100000);
  cleanup_free char *log = srv_log(&f->srv);
  assert_non_null(strstr(log, "range=bytes=100000-"));
  assert_false(partial_exists(f, NULL));

  /* a partial file with wrong bytes: detected, removed, and the next pull starts over */
  struct img_prune_stats ps;
  tl_ok(img_store_remove(f->s, f->cdigest, &err), &err);
  tl_ok(img_store_prune(f->s, &ps, &err), &err);
  assert_int_equal(ps.layers, 1);
  char junk[5000];
  memset(junk, 'j', sizeof(junk));
  tl_write(p, junk, sizeof(junk));
  tl_fails(pull(f, ":single", NULL, NULL, &err), &err, "downloaded blob has digest");
  assert_false(partial_exists(f, NULL));
  tl_ok(pull(f, ":single", &po, NULL, &err), &err);
  assert_int_equal(st.bytes_downloaded, f->layer.blob_len);
}

static void
test_range_ignored(void **state)
{
  struct img_fixture *f = *state;
  f->srv.ignore_range = true;
  srv_start(&f->srv, f->base);
  cleanup_free char *p = xasprintf("%s/blobs/partial/%s", f->root, f->layer.digest + 7);
  tl_write(p, f->layer.blob, 4096);
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", NULL, &img, &err), &err);
  assert_image(f, img);
  img_image_free(img);
  cleanup_free char *log = srv_log(&f->srv);
  assert_non_null(strstr(log, "range=bytes=4096-"));
}

static void
test_corrupt_blob(void **state)
{
  struct img_fixture *f = *state;
  cleanup_free char *bad = xmalloc(f->layer.blob_len);
  memcpy(bad, f->layer.blob, f->layer.blob_len);
  bad[f->layer.blob_len / 3] ^= 0x40;
  f->srv.docs[4].data = bad; /* the layer blob */
  srv_start(&f->srv, f->base);
  struct ci_error *err = NULL;
  tl_fails(pull(f, ":single", NULL, NULL, &err), &err, "downloaded blob has digest");
  assert_false(partial_exists(f, NULL));
  assert_false(tl_exists("%s/layers/%s", f->root, f->layer.diff_id + 7));
  struct img_image *img = NULL;
  cleanup_free char *ref = xasprintf("127.0.0.1:%d/" REPO ":single", f->srv.port);
  assert_int_equal(img_lookup(f->s, ref, &img, NULL), -ENOENT);
}

struct cancel_ctx {
  volatile sig_atomic_t flag;
  uint64_t at;
};

static void
cancel_after(const struct img_progress *p, void *data)
{
  struct cancel_ctx *c = data;
  if (p->phase == IMG_PROGRESS_DOWNLOAD && p->done >= c->at)
    c->flag = 1;
}

static void
test_cancel_and_resume(void **state)
{
  struct img_fixture *f = *state;
  f->srv.slow = true;
  srv_start(&f->srv, f->base);
  struct cancel_ctx c = {0, 100000};
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.cancel = &c.flag;
  po.on_progress = cancel_after;
  po.progress_data = &c;
  struct ci_error *err = NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int ret = pull(f, ":single", &po, NULL, &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_int_equal(ret, CI_ECANCELED);
  tl_fails(ret, &err, "canceled");
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(secs < 0.3); /* the whole blob would take ~0.4 s */
  off_t have = 0;
  assert_true(partial_exists(f, &have));
  assert_true(have >= 100000 && (size_t)have < f->layer.blob_len);
  assert_false(tl_exists("%s/layers/%s", f->root, f->layer.diff_id + 7));
  cleanup_free char *stg = xasprintf("%s/staging", f->root);
  cleanup_free char *tree = tl_tree(stg);
  assert_string_equal(tree, "");

  po.cancel = NULL;
  po.on_progress = NULL;
  struct img_pull_stats st;
  po.stats = &st;
  tl_ok(pull(f, ":single", &po, NULL, &err), &err);
  assert_int_equal(st.bytes_downloaded, f->layer.blob_len - (size_t)have);
  cleanup_free char *log = srv_log(&f->srv);
  cleanup_free char *resumed = xasprintf("range=bytes=%lld-", (long long)have);
  assert_non_null(strstr(log, resumed));
}

static void
test_token_expiry(void **state)
{
  struct img_fixture *f = *state;
  f->srv.bearer = true;
  f->srv.expire_once = true;
  srv_start(&f->srv, f->base);
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", NULL, NULL, &err), &err);
  cleanup_free char *log = srv_log(&f->srv);
  assert_int_equal(count_lines(log, "GET /token?"), 2);
}

static void
test_basic_auth(void **state)
{
  struct img_fixture *f = *state;
  f->srv.basic = true;
  srv_start(&f->srv, f->base);
  struct ci_error *err = NULL;
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  tl_fails(pull(f, ":single", &po, NULL, &err), &err, "requires a login");
  cleanup_free char *auth = xasprintf("%s/auth.json", f->base);
  cleanup_free char *json =
      xasprintf("{\"auths\":{\"127.0.0.1:%d\":{\"auth\":\"YWxpY2U6czNjcjN0\"}}}", f->srv.port);
  tl_write(auth, json, strlen(json));
  po.auth_file = auth;
  struct img_image *img = NULL;
  tl_ok(pull(f, ":single", &po, &img, &err), &err);
  assert_image(f, img);
  img_image_free(img);
  /* found through $REGISTRY_AUTH_FILE as well */
  setenv("REGISTRY_AUTH_FILE", auth, 1);
  po.auth_file = NULL;
  tl_ok(pull(f, ":single", &po, NULL, &err), &err);
}

static void
test_registry_errors(void **state)
{
  struct img_fixture *f = *state;
  /* a tag whose Docker-Content-Digest does not match the body */
  srv_add(&f->srv, "/v2/" REPO "/manifests/liar", IMG__MT_OCI_MANIFEST, f->manifest,
          strlen(f->manifest), "sha256:" D64_LIE);
  static const char v1[] = "{\"schemaVersion\":1,\"name\":\"test/img\"}";
  srv_add(&f->srv, "/v2/" REPO "/manifests/old", IMG__MT_DOCKER_V1_SIGNED, v1, strlen(v1), NULL);
  srv_start(&f->srv, f->base);
  struct ci_error *err = NULL;
  int ret = pull(f, ":missing", NULL, NULL, &err);
  assert_int_equal(ret, -ENOENT);
  tl_fails(ret, &err, "HTTP 404 MANIFEST_UNKNOWN: manifest unknown");
  tl_fails(pull(f, ":liar", NULL, NULL, &err), &err, "but the registry says");
  tl_fails(pull(f, ":old", NULL, NULL, &err), &err, "schema 1");
  cleanup_free char *wrong = xasprintf("@sha256:%064d", 5);
  tl_fails(pull(f, wrong, NULL, NULL, &err), &err, "MANIFEST_UNKNOWN");
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.platform = "linux/s390x";
  tl_fails(pull(f, ":v1", &po, NULL, &err), &err, "available: linux/arm64/v8, linux/amd64)");
  srv_stop(&f->srv);

  /* nobody listening */
  tl_fails(pull(f, ":single", NULL, NULL, &err), &err, "cannot fetch");
  /* something that is not a registry */
  f->srv.not_a_registry = true;
  srv_start(&f->srv, f->base);
  tl_fails(pull(f, ":single", NULL, NULL, &err), &err, "does not look like a registry");
}

static void
test_mirrors(void **state)
{
  struct img_fixture *f = *state;
  fixture_add_docs(f, &f->srv, "mirror/img"); /* the mirror has the image under its own path */
  srv_start(&f->srv, f->base);
  cleanup_free char *conf = xasprintf("%s/registries.conf", f->base);
  cleanup_free char *text =
      xasprintf("[[registry]]\n"
                "prefix = \"127.0.0.1:%d/test\"\n"
                "location = \"127.0.0.1:%d/test\"\n"
                "[[registry.mirror]]\n"
                "location = \"127.0.0.1:%d/absent\"\n"
                "[[registry.mirror]]\n"
                "location = \"127.0.0.1:%d/mirror\"\n"
                "[[registry]]\n"
                "prefix = \"127.0.0.1:%d/blocked\"\n"
                "blocked = true\n",
                f->srv.port, f->srv.port, f->srv.port, f->srv.port, f->srv.port);
  tl_write(conf, text, strlen(text));
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.registries_conf = conf;
  struct img_image *img = NULL;
  struct ci_error *err = NULL;
  tl_ok(pull(f, ":single", &po, &img, &err), &err);
  assert_image(f, img);
  /* named as asked, whatever mirror served it */
  cleanup_free char *want = xasprintf("127.0.0.1:%d/" REPO ":single", f->srv.port);
  assert_string_equal(img->name, want);
  img_image_free(img);
  cleanup_free char *log = srv_log(&f->srv);
  assert_non_null(strstr(log, "GET /v2/absent/img/manifests/single"));
  assert_non_null(strstr(log, "GET /v2/mirror/img/manifests/single"));
  assert_null(strstr(log, "GET /v2/" REPO "/manifests/single"));
  cleanup_free char *blob = xasprintf("GET /v2/mirror/img/blobs/%s", f->layer.digest);
  assert_non_null(strstr(log, blob));

  /* through $CIRRUS_REGISTRIES_CONF, a blocked prefix */
  setenv("CIRRUS_REGISTRIES_CONF", conf, 1);
  cleanup_free char *blocked = xasprintf("127.0.0.1:%d/blocked/x", f->srv.port);
  po.registries_conf = NULL;
  tl_fails(img_pull(f->s, blocked, &po, &img, &err), &err, "blocked in registries.conf");
}

int
main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bearer_index_redirect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resume_after_truncation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_retry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resume_partial, setup, teardown),
      cmocka_unit_test_setup_teardown(test_range_ignored, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_blob, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_and_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_basic_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_registry_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mirrors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
