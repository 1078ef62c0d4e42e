/* backends/engine_http.c - one libcurl multi handle per libuv loop, driven by curl's
 * multi-socket interface (curl docs/examples/multi-uv.c), and the requests made through it.
 *
 * Shape of the machinery:
 *   - curl tells us which sockets to watch (on_curl_socket): we keep one struct engine_sock
 *     (a uv_poll_t) per socket, attached to it with curl_multi_assign();
 *   - curl tells us when to call it back (on_curl_timer): one uv_timer_t;
 *   - both callbacks call curl_multi_socket_action() and then drain CURLMSG_DONE messages,
 *     which complete requests (req_finish) outside libcurl;
 *   - cancellation and shutdown are deferred to a second timer, so that no completion ever runs
 *     inside a caller's call and no curl function is called from inside a curl callback.
 * The loop is kept alive by our handles only while requests are in flight: idle connections
 * in curl's cache do not hold uv_run() open.
 */
#include "engine_http.h"

#include "common/log.h"
#include "backends/curl/curl_dl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Cap on an error body kept to extract the engine's message from. */
#define ERROR_BODY_MAX (64u << 10)
/* Connecting to a local socket is instant; a TCP engine gets this long. */
#define CONNECT_TIMEOUT_MS 30000L

struct engine_sock {
  uv_poll_t poll;           /* poll.data = this */
  struct engine_http *http; /* borrowed */
  curl_socket_t fd;
  bool closing;             /* uv_close() called; freed in its callback */
  struct engine_sock *next; /* in http->socks */
  struct engine_sock *prev;
};

struct engine_http {
  uv_loop_t *loop;           /* borrowed */
  CURLM *multi;              /* owned; NULL once cleaned up */
  uv_timer_t timer;          /* curl's timeout */
  uv_idle_t kick;            /* curl's "timeout 0": call me as soon as possible */
  uv_timer_t defer;          /* cancellations and shutdown */
  struct engine_req *reqs;   /* requests in flight */
  struct engine_sock *socks; /* poll handles, closing ones included */
  size_t nreqs;
  int open_handles; /* the timers, kick and socks not yet closed */
  bool closing;     /* engine_http_close() was called */
  bool finalized;   /* curl is gone, handles are closing */
};

struct engine_req {
  struct engine_http *http;   /* borrowed */
  CURL *easy;                 /* owned */
  struct curl_slist *headers; /* owned */
  char *desc;                 /* owned: "docker POST /v1.41/containers/create" */
  uint64_t t0;                /* uv_hrtime() at the start, for the debug log */
  char *url;                  /* owned */
  char *socket_path;          /* owned, NULL for TCP */
  char *endpoint_url;         /* owned: "unix:///var/run/docker.sock" */
  char errbuf[CURL_ERROR_SIZE];

  char *send_buf; /* owned copy of a fixed body */
  size_t send_len, send_off;
  engine_send_cb on_send;
  bool send_paused;

  engine_body_cb on_body;
  engine_done_cb on_done;
  void *data;
  struct ci_buf body; /* collected body (or error body) */
  size_t max_body;
  bool status_known;    /* the first body byte arrived: stream or collect decided */
  bool streaming;       /* body bytes go to on_body */
  bool error_truncated; /* an error body beyond ERROR_BODY_MAX was cut */

  bool canceled;           /* engine_req_cancel() or shutdown */
  bool aborted;            /* ended by us with err (a failed resume) */
  struct ci_error *err;    /* owned: failure raised inside a curl callback */
  struct engine_req *next; /* in http->reqs */
  struct engine_req *prev;
};

/* ---- endpoints ------------------------------------------------------------------------------ */

int
engine_endpoint_init(struct engine_endpoint *ep, const char *name, const char *url,
                     struct ci_error **err)
{
  memset(ep, 0, sizeof(*ep));
  if (!url || !*url)
    return ci_error_make(err, -EINVAL, "%s: empty engine address", name);
  if (ci_str_has_prefix(url, "unix://")) {
    const char *path = url + strlen("unix://");
    if (path[0] != '/')
      return ci_error_make(err, -EINVAL,
                           "%s: invalid engine address '%s': a unix socket needs an absolute "
                           "path (unix:///path/to.sock)",
                           name, url);
    if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
      return ci_error_make(err, -ENAMETOOLONG,
                           "%s: invalid engine address '%s': socket path longer than %zu bytes",
                           name, url, sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
    ep->socket_path = xstrdup(path);
    ep->base_url = xstrdup("http://localhost");
  } else if (ci_str_has_prefix(url, "tcp://") || ci_str_has_prefix(url, "http://")) {
    const char *host = strstr(url, "://") + 3;
    size_t n = strcspn(host, "/?#");
    if (n == 0 || host[n] == '?' || host[n] == '#' || (host[n] == '/' && host[n + 1]))
      return ci_error_make(
          err, -EINVAL, "%s: invalid engine address '%s': expected tcp://host[:port]", name, url);
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)host[i];
      if (c <= ' ' || c == '@' || c == '\\' || c >= 0x7f)
        return ci_error_make(err, -EINVAL, "%s: invalid engine address '%s': bad host", name, url);
    }
    /* A port is present unless the host ends without ":digits" (IPv6 literals are bracketed). */
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--) {
      if (host[i - 1] == ':') {
        colon = host + i - 1;
        break;
      }
      if (host[i - 1] == ']')
        break;
    }
    if (colon && colon == host + n - 1)
      return ci_error_make(err, -EINVAL, "%s: invalid engine address '%s': empty port", name, url);
    ep->base_url = colon ? xasprintf("http://%.*s", (int)n, host)
                         : xasprintf("http://%.*s:2375", (int)n, host);
  } else {
    const char *sep = strstr(url, "://");
    if (sep)
      return ci_error_make(err, -EPROTONOSUPPORT,
                           "%s: engine address '%s': scheme '%.*s' is not supported (use "
                           "unix:// or tcp://)",
                           name, url, (int)(sep - url), url);
    return ci_error_make(err, -EINVAL,
                         "%s: invalid engine address '%s': expected unix:///path or "
                         "tcp://host:port",
                         name, url);
  }
  ep->name = xstrdup(name);
  ep->url = xstrdup(url);
  return 0;
}

int
engine_endpoint_from_env(struct engine_endpoint *ep, const char *name, const char *env_var,
                         const char *fallback, struct ci_error **err)
{
  const char *v = env_var ? getenv(env_var) : NULL;
  if (v && *v) {
    int ret = engine_endpoint_init(ep, name, v, err);
    if (ret < 0)
      return ci_error_prefix(err, "from %s", env_var);
    return ret;
  }
  return engine_endpoint_init(ep, name, fallback, err);
}

void
engine_endpoint_release(struct engine_endpoint *ep)
{
  free(ep->name);
  free(ep->url);
  free(ep->socket_path);
  free(ep->base_url);
  memset(ep, 0, sizeof(*ep));
}

/* ---- handle bookkeeping --------------------------------------------------------------------- */

static void
http_maybe_free(struct engine_http *http)
{
  if (http->finalized && http->open_handles == 0)
    free(http);
}

static void
on_handle_closed(uv_handle_t *h)
{
  struct engine_http *http = h->data;
  http->open_handles--;
  http_maybe_free(http);
}

static void
on_sock_closed(uv_handle_t *h)
{
  struct engine_sock *s = h->data;
  struct engine_http *http = s->http;
  if (s->prev)
    s->prev->next = s->next;
  else
    http->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  free(s);
  http->open_handles--;
  http_maybe_free(http);
}

static void
sock_close(struct engine_sock *s)
{
  if (s->closing)
    return;
  s->closing = true;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* Our handles keep the loop alive only while requests are in flight. */
static void
update_refs(struct engine_http *http)
{
  bool active = http->nreqs > 0;
  if (http->finalized)
    return;
  if (active) {
    uv_ref((uv_handle_t *)&http->timer);
    uv_ref((uv_handle_t *)&http->kick);
  } else {
    uv_unref((uv_handle_t *)&http->timer);
    uv_unref((uv_handle_t *)&http->kick);
  }
  for (struct engine_sock *s = http->socks; s; s = s->next) {
    if (s->closing)
      continue;
    if (active)
      uv_ref((uv_handle_t *)&s->poll);
    else
      uv_unref((uv_handle_t *)&s->poll);
  }
}

/* ---- completing requests -------------------------------------------------------------------- */

static void
req_free(struct engine_req *req)
{
  if (req->easy)
    curl_dl.curl_easy_cleanup(req->easy);
  curl_dl.curl_slist_free_all(req->headers);
  free(req->desc);
  free(req->url);
  free(req->socket_path);
  free(req->endpoint_url);
  free(req->send_buf);
  ci_buf_release(&req->body);
  ci_error_free(&req->err);
  free(req);
}

static int
http_status_code(long status)
{
  switch (status) {
  case 400:
    return -EINVAL;
  case 401:
  case 403:
    return -EACCES;
  case 404:
    return -ENOENT;
  case 409:
    return -EBUSY;
  default:
    return CI_EFAIL;
  }
}

/* Turn a failed transfer into an error naming the endpoint and, for unix sockets, what is
 * wrong with the socket. */
static void
curl_error(struct engine_req *req, CURLcode rc, struct ci_error **err)
{
  const char *detail = req->errbuf[0] ? req->errbuf : curl_dl.curl_easy_strerror(rc);
  long os_errno = 0;
  curl_dl.curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);

  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
    if (req->socket_path) {
      struct stat st;
      int e = (int)os_errno;
      if (e == 0 && stat(req->socket_path, &st) < 0)
        e = errno;
      if (e == ENOENT)
        ci_error_make(err, -ENOENT,
                      "cannot connect to %s: socket '%s' does not exist (is the engine "
                      "running?)",
                      req->endpoint_url, req->socket_path);
      else if (e == ECONNREFUSED)
        ci_error_make(err, -ECONNREFUSED,
                      "cannot connect to %s: nothing listens on socket '%s' (is the engine "
                      "running?)",
                      req->endpoint_url, req->socket_path);
      else if (e == EACCES || e == EPERM)
        ci_error_make(err, -EACCES, "cannot connect to %s: permission denied on socket '%s'",
                      req->endpoint_url, req->socket_path);
      else if (e)
        ci_error_make(err, -e, "cannot connect to %s: %s", req->endpoint_url, strerror(e));
      else
        ci_error_make(err, -ECONNREFUSED, "cannot connect to %s: %s", req->endpoint_url, detail);
    } else {
      ci_error_make(err, -ECONNREFUSED, "cannot connect to %s: %s", req->endpoint_url, detail);
    }
    return;
  case CURLE_OPERATION_TIMEDOUT:
    ci_error_make(err, CI_ETIMEDOUT, "no answer from %s in time: %s", req->endpoint_url, detail);
    return;
  case CURLE_GOT_NOTHING:
    ci_error_make(err, CI_EPROTO, "%s closed the connection without answering", req->endpoint_url);
    return;
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
    ci_error_make(err, CI_EPROTO, "connection to %s broke before the answer was complete: %s",
                  req->endpoint_url, detail);
    return;
  default:
    ci_error_make(err, CI_EFAIL, "request to %s failed: %s", req->endpoint_url, detail);
    return;
  }
}

/* Complete req: remove it from curl, build its outcome, run on_done, free it. */
static void
req_finish(struct engine_req *req, CURLcode rc)
{
  struct engine_http *http = req->http;
  struct engine_resp resp = {0};
  struct ci_error *err = NULL;

  curl_dl.curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &resp.status);
  char *ct = NULL;
  curl_dl.curl_easy_getinfo(req->easy, CURLINFO_CONTENT_TYPE, &ct);
  resp.content_type = ct;
  if (http->multi)
    curl_dl.curl_multi_remove_handle(http->multi, req->easy);

  if (req->prev)
    req->prev->next = req->next;
  else
    http->reqs = req->next;
  if (req->next)
    req->next->prev = req->prev;
  http->nreqs--;
  update_refs(http);

  /* A request canceled after curl finished it reports what really happened. */
  if (req->err && (rc != CURLE_OK || req->aborted)) {
    err = steal_pointer(&req->err);
    ci_error_prefix(&err, "%s", req->desc);
  } else if (req->canceled && rc != CURLE_OK) {
    ci_error_make(&err, CI_ECANCELED, "%s: canceled", req->desc);
  } else if (rc != CURLE_OK) {
    curl_error(req, rc, &err);
    ci_error_prefix(&err, "%s", req->desc);
  } else if (resp.status >= 400) {
    cleanup_free char *msg = engine_error_message(req->body.s, req->body.len);
    ci_error_make(&err, http_status_code(resp.status), "%s: HTTP %ld%s%s", req->desc, resp.status,
                  msg ? ": " : "", msg ? msg : "");
  } else if (resp.status == 0) {
    ci_error_make(&err, CI_EPROTO, "%s: no HTTP status from %s", req->desc, req->endpoint_url);
  }
  resp.body = ci_buf_str(&req->body);
  resp.body_len = req->body.len;
  /* -v / --debug: every API call with its status and how long it took. */
  if (ci_log_enabled(CI_LOG_DEBUG)) {
    double ms = (double)(uv_hrtime() - req->t0) / 1e6;
    if (err)
      ci_log_debug("%s (%.1f ms)", err->msg, ms);
    else
      ci_log_debug("%s: HTTP %ld in %.1f ms", req->desc, resp.status, ms);
  }

  req->on_done(req, &resp, err, req->data);
  ci_error_free(&err);
  req_free(req);
}

static void
drain_done(struct engine_http *http)
{
  CURLMsg *msg;
  int left;
  while (http->multi && (msg = curl_dl.curl_multi_info_read(http->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    struct engine_req *req = NULL;
    CURLcode rc = msg->data.result;
    curl_dl.curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
    req_finish(req, rc);
  }
}

/* ---- the libuv side of curl ------------------------------------------------------------------ */

static void
on_poll(uv_poll_t *handle, int status, int events)
{
  struct engine_sock *s = handle->data;
  struct engine_http *http = s->http;
  int flags = 0, running = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  /* s may be closed by curl during this call; its memory lives until the close callback. */
  curl_dl.curl_multi_socket_action(http->multi, s->fd, flags, &running);
  drain_done(http);
}

static void
on_timer(uv_timer_t *t)
{
  struct engine_http *http = t->data;
  int running = 0;
  curl_dl.curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain_done(http);
}

static void
on_kick(uv_idle_t *idle)
{
  uv_idle_stop(idle);
  on_timer(&((struct engine_http *)idle->data)->timer);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl asks, or stop watching it. */
static int
on_curl_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
  struct engine_http *http = userp;
  struct engine_sock *s = socketp;

  if (action == CURL_POLL_REMOVE) {
    if (s) {
      if (!http->finalized) /* not while curl_multi_cleanup() runs */
        curl_dl.curl_multi_assign(http->multi, fd, NULL);
      sock_close(s);
    }
    return 0;
  }
  if (!s) {
    s = xcalloc(1, sizeof(*s));
    int r = uv_poll_init_socket(http->loop, &s->poll, fd);
    if (r < 0) {
      ci_log_error("cannot watch socket %d of the engine client: %s", (int)fd, uv_strerror(r));
      free(s);
      return -1;
    }
    s->poll.data = s;
    s->http = http;
    s->fd = fd;
    s->next = http->socks;
    if (s->next)
      s->next->prev = s;
    http->socks = s;
    http->open_handles++;
    if (http->nreqs == 0)
      uv_unref((uv_handle_t *)&s->poll);
    curl_dl.curl_multi_assign(http->multi, fd, s);
  }
  int events = 0;
  if (action & CURL_POLL_IN)
    events |= UV_READABLE;
  if (action & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  int r = uv_poll_start(&s->poll, events, on_poll);
  if (r < 0) {
    ci_log_error("cannot watch socket %d of the engine client: %s", (int)fd, uv_strerror(r));
    return -1;
  }
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer, anything else replaces it.  curl is never called
 * from here (CURLMOPT_TIMERFUNCTION.md).  "0 ms" goes to an idle handle rather than a timer due
 * at once: libuv runs idle handles once per iteration, before polling for I/O, whereas a timer
 * due at once that is restarted from a timer callback runs again in the same pass, before any
 * I/O.  (multi-uv.c turns 0 into 1 ms instead; that costs a millisecond per request.) */
static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
  struct engine_http *http = userp;
  if (http->finalized)
    return 0;
  if (timeout_ms == 0) {
    uv_timer_stop(&http->timer);
    uv_idle_start(&http->kick, on_kick);
  } else {
    uv_idle_stop(&http->kick);
    if (timeout_ms < 0)
      uv_timer_stop(&http->timer);
    else
      uv_timer_start(&http->timer, on_timer, (uint64_t)timeout_ms, 0);
  }
  return 0;
}

/* ---- deferred work: cancellations and shutdown ----------------------------------------------- */

static void
finalize(struct engine_http *http)
{
  struct engine_req *req;
  while ((req = http->reqs)) {
    req->canceled = true;
    req_finish(req, CURLE_ABORTED_BY_CALLBACK);
  }
  http->finalized = true;
  /* Cleaning up may report sockets of cached connections through on_curl_socket. */
  curl_dl.curl_multi_cleanup(http->multi);
  http->multi = NULL;
  for (struct engine_sock *s = http->socks; s; s = s->next)
    sock_close(s);
  uv_close((uv_handle_t *)&http->timer, on_handle_closed);
  uv_close((uv_handle_t *)&http->kick, on_handle_closed);
  uv_close((uv_handle_t *)&http->defer, on_handle_closed);
}

static void
on_defer(uv_timer_t *t)
{
  struct engine_http *http = t->data;
  /* Completions may cancel or start requests: look again from the start after each. */
  for (;;) {
    struct engine_req *req = http->reqs;
    while (req && !req->canceled && !req->aborted)
      req = req->next;
    if (!req)
      break;
    req_finish(req, CURLE_ABORTED_BY_CALLBACK);
  }
  if (http->closing && !http->finalized)
    finalize(http);
}

static void
defer_kick(struct engine_http *http)
{
  if (!http->finalized)
    uv_timer_start(&http->defer, on_defer, 0, 0);
}

/* ---- the client ----------------------------------------------------------------------------- */

int
engine_http_new(uv_loop_t *loop, struct engine_http **out, struct ci_error **err)
{
  if (curl_dl_load(err) < 0)
    return -1;
  CURLM *multi = curl_dl.curl_multi_init();
  if (!multi)
    return ci_error_make(err, CI_EFAIL, "cannot create a libcurl multi handle");

  struct engine_http *http = xcalloc(1, sizeof(*http));
  http->loop = loop;
  http->multi = multi;
  uv_timer_init(loop, &http->timer);
  uv_idle_init(loop, &http->kick);
  uv_timer_init(loop, &http->defer);
  http->timer.data = http;
  http->kick.data = http;
  http->defer.data = http;
  http->open_handles = 3;
  uv_unref((uv_handle_t *)&http->timer);
  uv_unref((uv_handle_t *)&http->kick);
  curl_dl.curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_dl.curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, http);
  curl_dl.curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_dl.curl_multi_setopt(multi, CURLMOPT_TIMERDATA, http);
  *out = http;
  return 0;
}

void
engine_http_close(struct engine_http *http)
{
  if (!http || http->closing)
    return;
  http->closing = true;
  for (struct engine_req *req = http->reqs; req; req = req->next)
    req->canceled = true;
  defer_kick(http);
}

size_t
engine_http_active(const struct engine_http *http)
{
  return http->nreqs;
}

/* ---- requests -------------------------------------------------------------------------------- */

static size_t
on_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct engine_req *req = userdata;
  size_t n = size * nmemb;
  if (req->canceled || req->aborted)
    return 0;
  if (!req->status_known) {
    long status = 0;
    curl_dl.curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    req->status_known = true;
    req->streaming = req->on_body && status < 400;
    if (status >= 400)
      req->max_body = ERROR_BODY_MAX;
  }
  if (req->streaming) {
    struct ci_error *e = NULL;
    int r = req->on_body(req, ptr, n, req->data, &e);
    if (r < 0) {
      if (!e)
        ci_error_make(&e, r, "the response handler failed (%s)", ci_error_code_str(r));
      ci_error_free(&req->err);
      req->err = e;
      return 0;
    }
    ci_error_free(&e); /* a handler that set *err but returned 0: ignored */
    return req->canceled || req->aborted ? 0 : n;
  }
  if (req->body.len + n > req->max_body) {
    if (req->max_body == ERROR_BODY_MAX) { /* error body: keep its start, read on */
      req->error_truncated = true;
      if (req->body.len < req->max_body)
        ci_buf_add(&req->body, ptr, req->max_body - req->body.len);
      return n;
    }
    ci_error_make(&req->err, -EFBIG, "response larger than %zu bytes", req->max_body);
    return 0;
  }
  ci_buf_add(&req->body, ptr, n);
  return n;
}

static size_t
on_curl_read(char *buf, size_t size, size_t nitems, void *userdata)
{
  struct engine_req *req = userdata;
  size_t cap = size * nitems;
  if (req->canceled || req->aborted)
    return CURL_READFUNC_ABORT;
  if (req->on_send) {
    size_t len = 0;
    struct ci_error *e = NULL;
    int r = req->on_send(req, buf, cap, &len, req->data, &e);
    if (r < 0) {
      if (!e)
        ci_error_make(&e, r, "the request body supplier failed (%s)", ci_error_code_str(r));
      ci_error_free(&req->err);
      req->err = e;
      return CURL_READFUNC_ABORT;
    }
    ci_error_free(&e);
    if (r == ENGINE_SEND_PAUSE) {
      req->send_paused = true;
      return CURL_READFUNC_PAUSE;
    }
    if (len > cap)
      CI_BUG("on_send wrote %zu bytes into a buffer of %zu", len, cap);
    return len;
  }
  size_t n = req->send_len - req->send_off;
  if (n > cap)
    n = cap;
  if (n)
    memcpy(buf, req->send_buf + req->send_off, n);
  req->send_off += n;
  return n;
}

/* A fixed body can be sent again when curl retries on a fresh connection. */
static int
on_curl_seek(void *userdata, curl_off_t offset, int origin)
{
  struct engine_req *req = userdata;
  if (req->on_send || origin != SEEK_SET || offset < 0 || (size_t)offset > req->send_len)
    return CURL_SEEKFUNC_CANTSEEK;
  req->send_off = (size_t)offset;
  return CURL_SEEKFUNC_OK;
}

static bool
valid_token(const char *s)
{
  if (!s || !*s)
    return false;
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '-' || *s == '_'))
      return false;
  return true;
}

static bool
valid_path(const char *s)
{
  if (!s || s[0] != '/')
    return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
      return false;
  return true;
}

static bool
valid_header(const char *s)
{
  const char *colon = strchr(s, ':');
  if (!colon || colon == s)
    return false;
  for (; *s; s++)
    if (*s == '\r' || *s == '\n')
      return false;
  return true;
}

#define SETOPT(opt, val)                                                                           \
  do {                                                                                             \
    if (rc == CURLE_OK)                                                                            \
      rc = curl_dl.curl_easy_setopt(req->easy, opt, val);                                          \
  } while (0)

int
engine_req_start(struct engine_http *http, const struct engine_endpoint *ep,
                 const struct engine_req_opts *o, struct engine_req **out, struct ci_error **err)
{
  const char *name = ep && ep->name ? ep->name : "engine";
  if (!ep || !ep->base_url || !ep->url)
    return ci_error_make(err, -EINVAL, "%s: request without an engine address", name);
  if (!valid_token(o->method))
    return ci_error_make(err, -EINVAL, "%s: invalid HTTP method '%s'", name,
                         o->method ? o->method : "(null)");
  if (!valid_path(o->path))
    return ci_error_make(err, -EINVAL, "%s %s: invalid request path '%s'", name, o->method,
                         o->path ? o->path : "(null)");
  if (!o->on_done)
    CI_BUG("engine_req_start without on_done");
  if (o->on_send && o->body)
    CI_BUG("engine_req_start with both body and on_send");
  for (const char *const *h = o->headers; h && *h; h++)
    if (!valid_header(*h))
      return ci_error_make(err, -EINVAL, "%s %s %s: invalid header '%s'", name, o->method, o->path,
                           *h);
  if (http->closing)
    return ci_error_make(err, -ESHUTDOWN, "%s %s %s: the engine client is shutting down", name,
                         o->method, o->path);

  struct engine_req *req = xcalloc(1, sizeof(*req));
  req->http = http;
  req->desc = xasprintf("%s %s %s", name, o->method, o->path);
  req->t0 = uv_hrtime();
  req->url = xasprintf("%s%s", ep->base_url, o->path);
  req->socket_path = ep->socket_path ? xstrdup(ep->socket_path) : NULL;
  req->endpoint_url = xstrdup(ep->url);
  req->on_body = o->on_body;
  req->on_done = o->on_done;
  req->on_send = o->on_send;
  req->data = o->data;
  req->max_body = o->max_body ? o->max_body : ENGINE_MAX_BODY;
  ci_buf_init(&req->body);
  if (o->body) {
    req->send_buf = xmalloc(o->body_len ? o->body_len : 1);
    memcpy(req->send_buf, o->body, o->body_len);
    req->send_len = o->body_len;
  }

  req->easy = curl_dl.curl_easy_init();
  if (!req->easy) {
    req_free(req);
    return ci_error_make(err, CI_EFAIL, "%s %s %s: cannot create a libcurl handle", name, o->method,
                         o->path);
  }
  bool has_body = o->body || o->on_send;
  bool is_put = strcmp(o->method, "PUT") == 0;
  bool is_post = strcmp(o->method, "POST") == 0;
  curl_off_t len = o->on_send ? (o->send_len >= 0 ? o->send_len : -1) : (curl_off_t)req->send_len;

  req->headers = curl_dl.curl_slist_append(req->headers, "Expect:");
  if (has_body) {
    cleanup_free char *ct =
        xasprintf("Content-Type: %s", o->content_type ? o->content_type : "application/json");
    req->headers = curl_dl.curl_slist_append(req->headers, ct);
  }
  for (const char *const *h = o->headers; h && *h; h++)
    req->headers = curl_dl.curl_slist_append(req->headers, *h);

  CURLcode rc = CURLE_OK;
  SETOPT(CURLOPT_URL, req->url);
  if (req->socket_path)
    SETOPT(CURLOPT_UNIX_SOCKET_PATH, req->socket_path);
  SETOPT(CURLOPT_PRIVATE, req);
  SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http");
  SETOPT(CURLOPT_USERAGENT, "cirrus");
  SETOPT(CURLOPT_HTTPHEADER, req->headers);
  SETOPT(CURLOPT_WRITEFUNCTION, on_curl_write);
  SETOPT(CURLOPT_WRITEDATA, req);
  SETOPT(CURLOPT_READFUNCTION, on_curl_read);
  SETOPT(CURLOPT_READDATA, req);
  SETOPT(CURLOPT_SEEKFUNCTION, on_curl_seek);
  SETOPT(CURLOPT_SEEKDATA, req);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
  SETOPT(CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : 0L);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  if (strcmp(o->method, "GET") == 0 && !has_body) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(o->method, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (is_put) {
    SETOPT(CURLOPT_UPLOAD, 1L);
    SETOPT(CURLOPT_INFILESIZE_LARGE, len);
  } else if (is_post || has_body) {
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, len);
    if (!is_post)
      SETOPT(CURLOPT_CUSTOMREQUEST, o->method);
  } else {
    SETOPT(CURLOPT_CUSTOMREQUEST, o->method);
  }
  if (rc != CURLE_OK) {
    int ret = ci_error_make(err, CI_EFAIL, "%s: cannot set up the request: %s", req->desc,
                            curl_dl.curl_easy_strerror(rc));
    req_free(req);
    return ret;
  }

  /* Linked before adding: curl may call the socket callback from inside curl_multi_add_handle,
   * and the handles it creates must count as busy. */
  req->next = http->reqs;
  if (req->next)
    req->next->prev = req;
  http->reqs = req;
  http->nreqs++;
  update_refs(http);
  CURLMcode mc = curl_dl.curl_multi_add_handle(http->multi, req->easy);
  if (mc != CURLM_OK) {
    http->reqs = req->next;
    if (req->next)
      req->next->prev = NULL;
    http->nreqs--;
    update_refs(http);
    int ret = ci_error_make(err, CI_EFAIL, "%s: libcurl refused the request: %s", req->desc,
                            curl_dl.curl_multi_strerror(mc));
    req_free(req);
    return ret;
  }
  if (out)
    *out = req;
  return 0;
}

void
engine_req_cancel(struct engine_req *req)
{
  if (req->canceled)
    return;
  req->canceled = true;
  defer_kick(req->http);
}

bool
engine_req_canceled(const struct engine_req *req)
{
  return req->canceled;
}

void
engine_req_resume(struct engine_req *req)
{
  if (!req->send_paused || req->canceled || req->aborted)
    return;
  req->send_paused = false;
  CURLcode rc = curl_dl.curl_easy_pause(req->easy, CURLPAUSE_CONT);
  if (rc != CURLE_OK) {
    ci_error_free(&req->err);
    ci_error_make(&req->err, CI_EFAIL, "cannot resume sending: %s", curl_dl.curl_easy_strerror(rc));
    req->aborted = true;
    defer_kick(req->http);
  }
}

const char *
engine_req_describe(const struct engine_req *req)
{
  return req->desc;
}
