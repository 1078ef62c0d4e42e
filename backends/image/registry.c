/* backends/image/registry.c - the docker:// source: the registry v2 HTTP API through libcurl
 * easy handles (this module is synchronous; see image.h). */
#include "internal.h"
#include "backends/curl/curl_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REG_ACCEPT                                                                                 \
  "Accept: " IMG__MT_OCI_MANIFEST ", " IMG__MT_OCI_INDEX ", " IMG__MT_DOCKER_MANIFEST              \
  ", " IMG__MT_DOCKER_LIST
#define REG_ERRBODY_MAX (64 * 1024)
#define REG_ATTEMPTS 3

struct reg_src {
  struct img__source base;
  char *canonical; /* owned; for messages */
  char *tag;       /* owned; NULL with a digest */
  char *digest;    /* owned; NULL with a tag */
  struct img__endpoints eps;
  size_t cur;        /* the endpoint in use */
  char *url_base;    /* owned; "https://host" once the endpoint answered /v2/ */
  char *auth;        /* owned; "Authorization: ..." header or NULL */
  char *basic;       /* owned; "user:password" from the auth file, or NULL */
  bool basic_loaded; /* for eps.v[cur] */
  CURL *curl;
  char errbuf[CURL_ERROR_SIZE];
};

/* ------------------------------------------------------------ one HTTP exchange */

struct http {
  struct reg_src *r;
  /* response of the last hop */
  long status;
  char *content_type;
  char *digest;
  char *www_auth;
  long long range_start; /* Content-Range start, -1 when absent */
  /* body sinks: mem for small documents, fd for blobs; errors go to errbody */
  struct ci_buf mem;
  size_t max;
  int fd;
  struct img__hash *hash;
  uint64_t offset;   /* bytes already in the file (resume) */
  uint64_t received; /* body bytes of this response */
  uint64_t limit;    /* fd: refuse more than this many bytes in total; 0 = none */
  struct ci_buf errbody;
  bool too_big;
  bool canceled;
  bool restarted; /* a 200 answered our Range: the file was started over */
  /* progress */
  const char *label;
  uint64_t total;
};

static void
http_reset_response(struct http *h)
{
  h->status = 0;
  free(h->content_type);
  free(h->digest);
  free(h->www_auth);
  h->content_type = h->digest = h->www_auth = NULL;
  h->range_start = -1;
  h->received = 0;
  ci_buf_reset(&h->mem);
  ci_buf_reset(&h->errbody);
}

static void
http_release(struct http *h)
{
  http_reset_response(h);
  ci_buf_release(&h->mem);
  ci_buf_release(&h->errbody);
}

static char *
header_value(const char *line, size_t len, const char *name)
{
  size_t n = strlen(name);
  if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
    return NULL;
  const char *v = line + n + 1;
  const char *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  return xstrndup(v, (size_t)(end - v));
}

static size_t
on_header(char *buf, size_t size, size_t nitems, void *data)
{
  struct http *h = data;
  size_t len = size * nitems;
  if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
    http_reset_response(h);
    const char *sp = memchr(buf, ' ', len);
    if (sp)
      h->status = strtol(sp + 1, NULL, 10);
    return len;
  }
  char *v;
  if ((v = header_value(buf, len, "Content-Type"))) {
    free(h->content_type);
    char *semi = strchr(v, ';');
    if (semi)
      *semi = '\0';
    h->content_type = v;
  } else if ((v = header_value(buf, len, "Docker-Content-Digest"))) {
    free(h->digest);
    h->digest = v;
  } else if ((v = header_value(buf, len, "WWW-Authenticate"))) {
    /* keep the first challenge (Bearer is what registries send first) */
    if (!h->www_auth)
      h->www_auth = v;
    else
      free(v);
  } else if ((v = header_value(buf, len, "Content-Range"))) {
    /* "bytes START-END/TOTAL" */
    const char *p = v;
    if (!strncasecmp(p, "bytes ", 6))
      h->range_start = strtoll(p + 6, NULL, 10);
    free(v);
  }
  return len;
}

static size_t
on_body(char *buf, size_t size, size_t nmemb, void *data)
{
  struct http *h = data;
  size_t len = size * nmemb;
  if (img__canceled(h->r->base.ctx->opts.cancel)) {
    h->canceled = true;
    return 0;
  }
  if (h->status < 200 || h->status >= 300) {
    if (h->errbody.len + len <= REG_ERRBODY_MAX)
      ci_buf_add(&h->errbody, buf, len);
    return len;
  }
  if (h->fd < 0) {
    if (h->mem.len + len > h->max) {
      h->too_big = true;
      return 0;
    }
    ci_buf_add(&h->mem, buf, len);
    return len;
  }
  if (h->status == 200 && h->offset > 0 && h->received == 0) {
    /* We asked for a range and got the whole blob: start the file (and its hash) over. */
    if (ftruncate(h->fd, 0) < 0 || lseek(h->fd, 0, SEEK_SET) < 0)
      return 0;
    if (h->hash) {
      img__hash_release(h->hash);
      img__hash_init(h->hash);
    }
    h->offset = 0;
    h->restarted = true;
  }
  if (h->limit && h->offset + h->received + len > h->limit) {
    h->too_big = true;
    return 0;
  }
  const char *p = buf;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(h->fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return 0;
    }
    p += w;
    left -= (size_t)w;
  }
  if (h->hash)
    img__hash_update(h->hash, buf, len);
  h->received += len;
  h->r->base.ctx->stats.bytes_downloaded += len;
  img__progress(h->r->base.ctx, IMG_PROGRESS_DOWNLOAD, h->label, h->offset + h->received, h->total,
                false);
  return len;
}

static int
on_xfer(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
  struct http *h = data;
  if (img__canceled(h->r->base.ctx->opts.cancel)) {
    h->canceled = true;
    return 1;
  }
  return 0;
}

/* Perform a GET of url.  extra: headers to add (may be NULL).  auth: send our Authorization.
 * verify: check TLS certificates.  Returns 0 with h->status set when an HTTP answer came, or a
 * transport error (CI_ECANCELED when canceled). */
static int
http_get(struct reg_src *r, struct http *h, const char *url, struct curl_slist *extra, bool auth,
         bool verify, struct ci_error **err)
{
  CURL *c = r->curl;
  curl_dl.curl_easy_reset(c);
  http_reset_response(h);
  h->r = r;
  h->too_big = h->canceled = false;
  r->errbuf[0] = '\0';
  struct curl_slist *hdrs = NULL;
  for (struct curl_slist *s = extra; s; s = s->next)
    hdrs = curl_dl.curl_slist_append(hdrs, s->data);
  if (auth && r->auth)
    hdrs = curl_dl.curl_slist_append(hdrs, r->auth);
  const char *ua = r->base.ctx->opts.user_agent ? r->base.ctx->opts.user_agent : "cirrus";
  curl_dl.curl_easy_setopt(c, CURLOPT_URL, url);
  curl_dl.curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_dl.curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
  curl_dl.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_dl.curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_dl.curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_dl.curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_dl.curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_dl.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_dl.curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_dl.curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_dl.curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_dl.curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* manifests may come compressed */
  curl_dl.curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_dl.curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
  curl_dl.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_dl.curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
  curl_dl.curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_dl.curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
  curl_dl.curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
  if (!verify) {
    curl_dl.curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_dl.curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (h->fd >= 0)
    curl_dl.curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL); /* blobs: the bytes as stored */
  CURLcode cc = curl_dl.curl_easy_perform(c);
  curl_dl.curl_slist_free_all(hdrs);
  if (h->canceled)
    return img__err_canceled(err);
  if (h->too_big && cc == CURLE_WRITE_ERROR)
    return ci_error_make(err, CI_EPROTO, "'%s' sent more data than expected", url);
  if (cc != CURLE_OK)
    return ci_error_make(err, -EIO, "cannot fetch '%s': %s", url,
                         r->errbuf[0] ? r->errbuf : curl_dl.curl_easy_strerror(cc));
  long code = 0;
  curl_dl.curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  h->status = code;
  return 0;
}

/* An error for a non-2xx answer, with the registry's own words when it sent JSON errors. */
static int
http_status_error(struct http *h, const char *what, struct ci_error **err)
{
  struct ci_buf msg = CI_BUF_INIT;
  ci_buf_init(&msg);
  json_t *j = h->errbody.len ? json_loadb(h->errbody.s, h->errbody.len, 0, NULL) : NULL;
  json_t *errors = json_object_get(j, "errors");
  size_t i;
  json_t *e;
  json_array_foreach(errors, i, e)
  {
    const char *code = img__json_str(e, "code"), *m = img__json_str(e, "message");
    ci_buf_addf(&msg, "%s%s%s%s", msg.len ? "; " : "", code ? code : "", code && m ? ": " : "",
                m ? m : "");
  }
  json_decref(j);
  int code = h->status == 404                       ? -ENOENT
             : h->status == 401 || h->status == 403 ? -EACCES
                                                    : CI_EPROTO;
  int ret = ci_error_make(err, code, "%s: HTTP %ld%s%s", what, h->status, msg.len ? " " : "",
                          ci_buf_str(&msg));
  ci_buf_release(&msg);
  return ret;
}

/* ------------------------------------------------------------ authentication */

static char *
b64_encode(const char *s)
{
  size_t n = strlen(s);
  unsigned char *out = xmalloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock(out, (const unsigned char *)s, (int)n);
  return (char *)out;
}

static int
load_basic(struct reg_src *r, struct ci_error **err)
{
  if (r->basic_loaded)
    return 0;
  r->basic_loaded = true;
  const char *host = r->eps.v[r->cur].host;
  return img__auth_lookup(r->base.ctx->opts.auth_file, host, &r->basic, err);
}

/* Answer a 401 challenge: fetch a bearer token, or use Basic credentials. */
static int
authenticate(struct reg_src *r, const char *challenge, struct ci_error **err)
{
  cleanup_free char *scheme = NULL, *realm = NULL, *service = NULL, *scope = NULL;
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  if (!challenge || img__parse_challenge(challenge, &scheme, &realm, &service, &scope) < 0)
    return ci_error_make(err, -EACCES, "registry '%s' refused access without an auth challenge",
                         ep->host);
  int ret = load_basic(r, err);
  if (ret < 0)
    return ret;
  if (!strcmp(scheme, "basic")) {
    if (!r->basic)
      return ci_error_make(err, -EACCES,
                           "registry '%s' requires a login (no credentials for it in the auth "
                           "file)",
                           ep->host);
    cleanup_free char *enc = b64_encode(r->basic);
    free(r->auth);
    r->auth = xasprintf("Authorization: Basic %s", enc);
    return 0;
  }
  if (strcmp(scheme, "bearer") != 0 || !realm)
    return ci_error_make(err, -EACCES, "registry '%s' asks for unsupported authentication '%s'",
                         ep->host, scheme);
  if (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0)
    return ci_error_make(err, CI_EPROTO, "registry '%s' sent an invalid token realm '%s'", ep->host,
                         realm);
  /* Always ask for pull access to our repository (the challenge's scope, if any, may be for
   * the registry as a whole when it came from /v2/). */
  cleanup_free char *want_scope = xasprintf("repository:%s:pull", ep->repo);
  char *esc_scope = curl_dl.curl_easy_escape(r->curl, want_scope, 0);
  char *esc_service = service ? curl_dl.curl_easy_escape(r->curl, service, 0) : NULL;
  cleanup_free char *url =
      xasprintf("%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?", esc_scope,
                esc_service ? "&service=" : "", esc_service ? esc_service : "");
  curl_dl.curl_free(esc_scope);
  curl_dl.curl_free(esc_service);

  struct http h;
  memset(&h, 0, sizeof(h));
  h.fd = -1;
  h.max = 1 << 20;
  ci_buf_init(&h.mem);
  ci_buf_init(&h.errbody);
  struct curl_slist *extra = NULL;
  cleanup_free char *basic_hdr = NULL;
  if (r->basic) {
    cleanup_free char *enc = b64_encode(r->basic);
    basic_hdr = xasprintf("Authorization: Basic %s", enc);
    extra = curl_dl.curl_slist_append(extra, basic_hdr);
  }
  ret = http_get(r, &h, url, extra, false, !ep->insecure, err);
  curl_dl.curl_slist_free_all(extra);
  if (ret == 0 && h.status != 200)
    ret = http_status_error(&h, "cannot get a registry token", err);
  json_t *j = NULL;
  if (ret == 0)
    ret = img__json_parse(h.mem.s, h.mem.len, "token response", &j, err);
  if (ret == 0) {
    const char *tok = img__json_str(j, "token");
    if (!tok || !*tok)
      tok = img__json_str(j, "access_token");
    if (!tok || !*tok) {
      ret = ci_error_make(err, CI_EPROTO, "the token response of '%s' has no token", realm);
    } else {
      for (const char *p = tok; *p && ret == 0; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
          ret = ci_error_make(err, CI_EPROTO, "the token of '%s' has invalid characters", realm);
      if (ret == 0) {
        free(r->auth);
        r->auth = xasprintf("Authorization: Bearer %s", tok);
      }
    }
  }
  json_decref(j);
  http_release(&h);
  return ret;
}

/* Find out how to talk to the current endpoint: HTTPS, or (insecure/loopback) plain HTTP when
 * it does not speak TLS; and authenticate if /v2/ asks for it. */
static int
ping(struct reg_src *r, struct ci_error **err)
{
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  struct http h;
  memset(&h, 0, sizeof(h));
  h.fd = -1;
  h.max = 1 << 20;
  ci_buf_init(&h.mem);
  ci_buf_init(&h.errbody);
  static const char *const schemes[] = {"https", "http"};
  int ret = 0;
  struct ci_error *first = NULL;
  for (size_t i = 0; i < (ep->insecure ? 2u : 1u); i++) {
    cleanup_free char *url = xasprintf("%s://%s/v2/", schemes[i], ep->host);
    ret = http_get(r, &h, url, NULL, false, !ep->insecure, i == 0 ? &first : err);
    if (ret == CI_ECANCELED)
      break;
    if (ret == 0) {
      free(r->url_base);
      r->url_base = xasprintf("%s://%s", schemes[i], ep->host);
      break;
    }
  }
  if (ret < 0) {
    if (ret == CI_ECANCELED || !ep->insecure) {
      if (first && err && !*err)
        *err = steal_pointer(&first);
    }
    ci_error_free(&first);
    http_release(&h);
    return ret;
  }
  ci_error_free(&first);
  if (h.status == 401) {
    ret = authenticate(r, h.www_auth, err);
  } else if (h.status != 200) {
    ret = http_status_error(&h, "registry ping", err);
    ret = IMG__PREFIX(err, ret, "'%s' does not look like a registry (v2 API)", ep->host);
  }
  http_release(&h);
  return ret;
}

/* GET path on the current endpoint with auth; on 401 re-authenticate once (tokens expire). */
static int
reg_get(struct reg_src *r, struct http *h, const char *path, struct curl_slist *extra,
        struct ci_error **err)
{
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  cleanup_free char *url = xasprintf("%s/v2/%s", r->url_base, path);
  for (int attempt = 0;; attempt++) {
    int ret = http_get(r, h, url, extra, true, !ep->insecure, err);
    if (ret < 0 || h->status != 401 || attempt > 0)
      return ret;
    cleanup_free char *challenge = h->www_auth ? xstrdup(h->www_auth) : NULL;
    ret = authenticate(r, challenge, err);
    if (ret < 0)
      return ret;
    /* the 401 body went to errbody, nothing was written: just ask again */
  }
}

/* ------------------------------------------------------------ manifests */

static int
get_manifest(struct reg_src *r, const char *reference, char **buf, size_t *len, char **ctype,
             char **digest, struct ci_error **err)
{
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  struct http h;
  memset(&h, 0, sizeof(h));
  h.fd = -1;
  h.max = IMG__MAX_MANIFEST;
  ci_buf_init(&h.mem);
  ci_buf_init(&h.errbody);
  struct curl_slist *extra = curl_dl.curl_slist_append(NULL, REG_ACCEPT);
  cleanup_free char *path = xasprintf("%s/manifests/%s", ep->repo, reference);
  int ret = reg_get(r, &h, path, extra, err);
  curl_dl.curl_slist_free_all(extra);
  if (ret == 0 && h.too_big)
    ret = ci_error_make(err, CI_EPROTO, "manifest larger than %zu bytes", IMG__MAX_MANIFEST);
  if (ret == 0 && h.status != 200)
    ret = http_status_error(&h, "cannot fetch manifest", err);
  char got[IMG__DIGEST_LEN + 1];
  if (ret == 0) {
    img__digest_bytes(h.mem.s, h.mem.len, got);
    if (img__digest_valid(reference) && strcmp(got, reference) != 0)
      ret = ci_error_make(err, CI_EPROTO, "manifest has digest %s, expected %s", got, reference);
    else if (h.digest && img__digest_valid(h.digest) && strcmp(got, h.digest) != 0)
      ret = ci_error_make(err, CI_EPROTO, "manifest has digest %s, but the registry says %s", got,
                          h.digest);
  }
  if (ret == 0) {
    *len = h.mem.len;
    *buf = ci_buf_take(&h.mem);
    *ctype = h.content_type ? xstrdup(h.content_type) : NULL;
    *digest = xstrdup(got);
  }
  http_release(&h);
  return ret;
}

static int
reg_resolve(struct img__source *src, const struct img__platform *want, struct img__resolved *out,
            struct ci_error **err)
{
  struct reg_src *r = (struct reg_src *)src;
  const char *reference = r->digest ? r->digest : r->tag;
  cleanup_free char *buf = NULL, *ctype = NULL, *digest = NULL;
  size_t len = 0;
  int ret = -1;
  /* Mirrors first, then the registry itself; the first that serves the manifest is used for
   * the whole image. */
  for (size_t i = 0; i < r->eps.n; i++) {
    struct ci_error *e = NULL;
    r->cur = i;
    free(r->auth);
    free(r->basic);
    r->auth = r->basic = NULL;
    r->basic_loaded = false;
    ret = ping(r, &e);
    if (ret == 0)
      ret = get_manifest(r, reference, &buf, &len, &ctype, &digest, &e);
    if (ret == 0)
      break;
    if (e && r->eps.v[i].host)
      ci_error_prefix(&e, "%s", r->eps.v[i].host);
    if (ret == CI_ECANCELED || i + 1 == r->eps.n) {
      if (err)
        *err = steal_pointer(&e);
      ci_error_free(&e);
      return ret;
    }
    ci_log_debug("mirror failed, trying the next: %s", e ? e->msg : "");
    ci_error_free(&e);
  }
  struct img__manifest m = {0};
  ret = img__manifest_parse(buf, len, ctype, &m, err);
  if (ret == 0 && m.kind == IMG__KIND_INDEX) {
    const struct img__desc *sel = NULL;
    ret = img__index_select(&m, want, &sel, err);
    cleanup_free char *seldigest = ret == 0 ? xstrdup(sel->digest) : NULL;
    img__manifest_release(&m);
    if (ret == 0) {
      free(buf);
      free(ctype);
      free(digest);
      buf = ctype = digest = NULL;
      ret = get_manifest(r, seldigest, &buf, &len, &ctype, &digest, err);
    }
    if (ret == 0)
      ret = img__manifest_parse(buf, len, ctype, &m, err);
    if (ret == 0 && m.kind != IMG__KIND_MANIFEST) {
      img__manifest_release(&m);
      ret = ci_error_make(err, CI_EPROTO, "a manifest list entry is itself a manifest list");
    }
  }
  if (ret < 0)
    return ret;
  out->m = m;
  out->manifest = steal_pointer(&buf);
  out->manifest_len = len;
  out->manifest_digest = steal_pointer(&digest);
  return 0;
}

/* ------------------------------------------------------------ blobs */

static int
reg_read_blob(struct img__source *src, const struct img__desc *d, size_t max, char **buf,
              size_t *len, struct ci_error **err)
{
  struct reg_src *r = (struct reg_src *)src;
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  if (!d->digest)
    return ci_error_make(err, CI_EPROTO, "blob without a digest");
  if (d->size >= 0 && (uint64_t)d->size > max)
    return ci_error_make(err, -EFBIG, "blob %s is larger than %zu bytes", d->digest, max);
  struct http h;
  memset(&h, 0, sizeof(h));
  h.fd = -1;
  h.max = max;
  ci_buf_init(&h.mem);
  ci_buf_init(&h.errbody);
  cleanup_free char *path = xasprintf("%s/blobs/%s", ep->repo, d->digest);
  int ret;
  for (int attempt = 1;; attempt++) { /* transport failures are retried, as for layers */
    struct ci_error *e = NULL;
    ret = reg_get(r, &h, path, NULL, &e);
    if (ret != -EIO || attempt == REG_ATTEMPTS) {
      if (e && err)
        *err = steal_pointer(&e);
      ci_error_free(&e);
      break;
    }
    ci_log_debug("blob %s: %s; trying again", d->digest, e->msg);
    ci_error_free(&e);
  }
  if (ret == 0 && h.status != 200)
    ret = http_status_error(&h, "cannot fetch blob", err);
  if (ret == 0) {
    *len = h.mem.len;
    *buf = ci_buf_take(&h.mem);
  }
  http_release(&h);
  return ret < 0 ? IMG__PREFIX(err, ret, "blob %s", d->digest) : 0;
}

/* Hash the first n bytes of fd into hash. */
static int
hash_prefix(int fd, uint64_t n, struct img__hash *hash, struct ci_error **err)
{
  char buf[65536];
  uint64_t off = 0;
  while (off < n) {
    size_t want = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
    ssize_t got = pread(fd, buf, want, (off_t)off);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return ci_error_make(err, got < 0 ? -errno : CI_EPROTO, "cannot re-read partial download");
    img__hash_update(hash, buf, (size_t)got);
    off += (uint64_t)got;
  }
  return 0;
}

/* Download blob d into blobs/partial/<hex>, resuming what an earlier attempt left there, verify
 * it and rename it into blobs/sha256/<hex>. */
static int
download_blob(struct reg_src *r, const struct img__desc *d, const char *final,
              struct ci_error **err)
{
  struct img_store *s = r->base.ctx->store;
  const struct img__endpoint *ep = &r->eps.v[r->cur];
  cleanup_free char *partial = img__store_path(s, "blobs/partial/%s", img__digest_hex(d->digest));
  cleanup_close int fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open '%s': %s", partial, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0)
    return ci_error_make(err, -errno, "cannot stat '%s': %s", partial, strerror(errno));
  uint64_t have = (uint64_t)st.st_size;
  if (d->size >= 0 && have > (uint64_t)d->size) {
    if (ftruncate(fd, 0) < 0)
      return ci_error_make(err, -errno, "cannot truncate '%s': %s", partial, strerror(errno));
    have = 0;
  }
  struct img__hash hash;
  img__hash_init(&hash);
  /* Re-verify what is already there by hashing it again: the digest covers the whole blob. */
  int ret = hash_prefix(fd, have, &hash, err);
  if (ret == 0 && have)
    ci_log_debug("resuming %s at byte %llu", d->digest, (unsigned long long)have);

  struct http h;
  memset(&h, 0, sizeof(h));
  h.fd = fd;
  h.hash = &hash;
  h.limit = d->size >= 0 ? (uint64_t)d->size : 0;
  h.label = d->digest;
  h.total = d->size >= 0 ? (uint64_t)d->size : 0;
  ci_buf_init(&h.mem);
  ci_buf_init(&h.errbody);
  cleanup_free char *path = xasprintf("%s/blobs/%s", ep->repo, d->digest);
  for (int attempt = 0; ret == 0; attempt++) {
    if (d->size >= 0 && have == (uint64_t)d->size)
      break; /* complete: verify below */
    if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
      ret = ci_error_make(err, -errno, "cannot seek '%s': %s", partial, strerror(errno));
      break;
    }
    h.offset = have;
    h.restarted = false;
    struct curl_slist *extra = NULL;
    char range[64];
    if (have) {
      snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)have);
      extra = curl_dl.curl_slist_append(extra, range);
    }
    struct ci_error *e = NULL;
    int r2 = reg_get(r, &h, path, extra, &e);
    curl_dl.curl_slist_free_all(extra);
    if (h.restarted)
      have = 0; /* the server ignored the range: on_body started the file over */
    have += h.received;
    if (r2 == 0) {
      if (h.status == 416 && have > 0)
        break; /* nothing left to send: verification decides */
      if (h.status != 200 && h.status != 206) {
        ret = http_status_error(&h, "cannot fetch blob", err);
        break;
      }
      if (d->size < 0 || have == (uint64_t)d->size)
        break;
    } else if (r2 == CI_ECANCELED || e->code == CI_EPROTO) {
      ret = r2;
      if (err)
        *err = steal_pointer(&e);
      ci_error_free(&e);
      break;
    }
    if (attempt + 1 >= REG_ATTEMPTS) {
      if (r2 < 0) {
        ret = r2;
        if (err)
          *err = steal_pointer(&e);
      } else {
        ret = ci_error_make(err, CI_EPROTO, "got %llu of %lld bytes", (unsigned long long)have,
                            (long long)d->size);
      }
      ci_error_free(&e);
      break;
    }
    ci_log_debug("blob %s: %s; resuming at byte %llu", d->digest, e ? e->msg : "short answer",
                 (unsigned long long)have);
    ci_error_free(&e);
  }
  if (ret == 0) {
    char got[IMG__DIGEST_LEN + 1];
    img__hash_final(&hash, got);
    if (strcmp(got, d->digest) != 0 || (d->size >= 0 && have != (uint64_t)d->size)) {
      unlink(partial); /* bad bytes must not be resumed */
      ret = ci_error_make(err, CI_EPROTO, "downloaded blob has digest %s (%llu bytes)", got,
                          (unsigned long long)have);
    }
  }
  img__hash_release(&hash);
  http_release(&h);
  if (ret == 0 && fsync(fd) < 0)
    ret = ci_error_make(err, -errno, "cannot sync '%s': %s", partial, strerror(errno));
  if (ret == 0 && rename(partial, final) < 0)
    ret = ci_error_make(err, -errno, "cannot move '%s': %s", partial, strerror(errno));
  return ret;
}

static int
reg_open_blob(struct img__source *src, const struct img__desc *d, struct img__stream **out,
              struct ci_error **err)
{
  struct reg_src *r = (struct reg_src *)src;
  if (!d->digest)
    return ci_error_make(err, CI_EPROTO, "layer without a digest");
  struct img_store *s = r->base.ctx->store;
  cleanup_free char *final = img__store_path(s, "blobs/sha256/%s", img__digest_hex(d->digest));
  int ret = 0;
  if (access(final, F_OK) < 0)
    ret = download_blob(r, d, final, err);
  if (ret < 0)
    return IMG__PREFIX(err, ret, "blob %s", d->digest);
  int fd = open(final, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open '%s': %s", final, strerror(errno));
  struct stat st;
  uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  struct img__stream *stream = img__stream_fd(fd, size);
  stream->verified = true; /* checked while downloading; files in blobs/ are only renamed in */
  stream->unlink_after = steal_pointer(&final);
  *out = stream;
  return 0;
}

static void
reg_free(struct img__source *src)
{
  struct reg_src *r = (struct reg_src *)src;
  free(r->canonical);
  free(r->tag);
  free(r->digest);
  img__endpoints_release(&r->eps);
  free(r->url_base);
  free(r->auth);
  free(r->basic);
  if (r->curl)
    curl_dl.curl_easy_cleanup(r->curl);
  free(r);
}

static const struct img__source_ops reg_ops = {
    "docker", reg_resolve, reg_read_blob, reg_open_blob, reg_free,
};

int
img__registry_open(const struct img_ref *ref, struct img__pull_ctx *ctx, struct img__source **out,
                   struct ci_error **err)
{
  if (curl_dl_load(err) < 0)
    return -1;
  struct img__regconf rc = {0};
  int ret = img__regconf_load(ctx->opts.registries_conf, &rc, err);
  if (ret < 0)
    return ret;
  struct reg_src *r = xcalloc(1, sizeof(*r));
  r->base.ops = &reg_ops;
  r->base.ctx = ctx;
  ret = img__regconf_endpoints(&rc, ref->domain, ref->path, &r->eps, err);
  img__regconf_release(&rc);
  if (ret < 0) {
    reg_free(&r->base);
    return ret;
  }
  r->canonical = xstrdup(ref->canonical);
  r->tag = ref->tag ? xstrdup(ref->tag) : NULL;
  r->digest = ref->digest ? xstrdup(ref->digest) : NULL;
  r->curl = curl_dl.curl_easy_init();
  if (!r->curl) {
    reg_free(&r->base);
    return ci_error_make(err, -ENOMEM, "cannot create a libcurl handle");
  }
  *out = &r->base;
  return 0;
}
