/* backends/engine_stream.c - what the engines stream back, decoded incrementally: multiplexed
 * log frames, newline-delimited JSON progress, wait results and error bodies; and the request
 * helpers built on them (engine_json_start, engine_logs_start, engine_progress_start,
 * engine_wait_start).  The decoders are pure (no libuv, no curl) and bounded in memory.
 */
#include "engine_http.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- error bodies --------------------------------------------------------------------------- */

#define MESSAGE_MAX 300

/* s[0..n) with control characters replaced by spaces, cut at MESSAGE_MAX bytes. */
static char *
clean_text(const char *s, size_t n)
{
  while (n && isspace((unsigned char)s[n - 1]))
    n--;
  while (n && isspace((unsigned char)*s)) {
    s++;
    n--;
  }
  if (n == 0)
    return NULL;
  bool cut = n > MESSAGE_MAX;
  if (cut)
    n = MESSAGE_MAX;
  struct ci_buf b = CI_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    ci_buf_addc(&b, c < ' ' || c == 0x7f ? ' ' : (char)c);
  }
  if (cut)
    ci_buf_adds(&b, "...");
  return ci_buf_take(&b);
}

char *
engine_error_message(const char *body, size_t len)
{
  if (!body || len == 0)
    return NULL;
  json_error_t jerr;
  json_t *j = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, &jerr);
  if (j) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (!msg) /* some endpoints say {"error": "..."} or {"Error": "..."} */
      msg = json_string_value(json_object_get(j, "error"));
    if (!msg)
      msg = json_string_value(json_object_get(j, "Error"));
    char *ret = msg ? clean_text(msg, strlen(msg)) : NULL;
    bool structured = json_is_object(j) || json_is_array(j);
    json_decref(j);
    if (ret || structured) /* JSON without a message: nothing human to show */
      return ret;
  }
  const char *nl = memchr(body, '\n', len);
  return clean_text(body, nl ? (size_t)(nl - body) : len);
}

void
engine_buf_add_query(struct ci_buf *b, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      ci_buf_addc(b, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      ci_buf_add(b, e, 3);
    }
  }
}

/* ---- multiplexed log frames ----------------------------------------------------------------- */

void
engine_demux_init(struct engine_demux *d, bool raw, engine_frame_cb on_frame, void *data)
{
  memset(d, 0, sizeof(*d));
  d->raw = raw;
  d->on_frame = on_frame;
  d->data = data;
}

int
engine_demux_feed(struct engine_demux *d, const char *buf, size_t len, struct ci_error **err)
{
  if (d->failed)
    return ci_error_make(err, CI_EPROTO, "malformed log stream");
  if (d->raw) {
    d->offset += len;
    return len ? d->on_frame(ENGINE_STDOUT, buf, len, d->data, err) : 0;
  }
  while (len) {
    if (d->left == 0) {
      size_t need = sizeof(d->hdr) - d->hdr_len;
      size_t n = len < need ? len : need;
      memcpy(d->hdr + d->hdr_len, buf, n);
      d->hdr_len += n;
      buf += n;
      len -= n;
      if (d->hdr_len < sizeof(d->hdr))
        return 0;
      const unsigned char *h = d->hdr;
      uint32_t size = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
      if (h[0] > ENGINE_SYSERR || h[1] || h[2] || h[3] || size > ENGINE_MAX_FRAME) {
        d->failed = true;
        return ci_error_make(err, CI_EPROTO,
                             "malformed log stream at byte %llu: frame header %02x %02x %02x "
                             "%02x %02x %02x %02x %02x (a TTY stream read as multiplexed?)",
                             (unsigned long long)d->offset, h[0], h[1], h[2], h[3], h[4], h[5],
                             h[6], h[7]);
      }
      d->offset += sizeof(d->hdr);
      d->hdr_len = 0;
      d->stream = (enum engine_stream)h[0];
      d->left = size;
      continue; /* an empty frame is legal: next header */
    }
    size_t n = len < d->left ? len : d->left;
    d->left -= (uint32_t)n;
    d->offset += n;
    int r = d->on_frame(d->stream, buf, n, d->data, err);
    if (r < 0)
      return r;
    buf += n;
    len -= n;
  }
  return 0;
}

int
engine_demux_finish(struct engine_demux *d, struct ci_error **err)
{
  if (d->failed)
    return ci_error_make(err, CI_EPROTO, "malformed log stream");
  if (d->hdr_len)
    return ci_error_make(err, CI_EPROTO,
                         "log stream cut inside a frame header (%zu of 8 bytes) at byte %llu",
                         d->hdr_len, (unsigned long long)d->offset);
  if (d->left)
    return ci_error_make(err, CI_EPROTO,
                         "log stream cut inside a frame: %lu bytes missing at byte %llu",
                         (unsigned long)d->left, (unsigned long long)d->offset);
  return 0;
}

/* ---- lines ---------------------------------------------------------------------------------- */

void
engine_lines_init(struct engine_lines *l, size_t max_line, engine_line_cb on_line, void *data)
{
  memset(l, 0, sizeof(*l));
  l->max_line = max_line ? max_line : ENGINE_MAX_LINE;
  l->on_line = on_line;
  l->data = data;
  ci_buf_init(&l->partial);
}

void
engine_lines_release(struct engine_lines *l)
{
  ci_buf_release(&l->partial);
}

static int
emit_line(struct engine_lines *l, char *line, size_t len, struct ci_error **err)
{
  if (len && line[len - 1] == '\r')
    len--;
  line[len] = '\0';
  return l->on_line(line, len, l->data, err);
}

static int
too_long(struct engine_lines *l, struct ci_error **err)
{
  l->failed = true;
  ci_buf_release(&l->partial);
  return ci_error_make(err, -E2BIG, "line of a JSON stream longer than %zu bytes", l->max_line);
}

/* The line held in l->partial, without a final "\r", fits in max_line. */
static bool
partial_fits(const struct engine_lines *l)
{
  size_t n = l->partial.len;
  if (n && l->partial.s[n - 1] == '\r')
    n--;
  return n <= l->max_line;
}

int
engine_lines_feed(struct engine_lines *l, const char *buf, size_t len, struct ci_error **err)
{
  if (l->failed)
    return ci_error_make(err, CI_EPROTO, "line stream already failed");
  while (len) {
    const char *nl = memchr(buf, '\n', len);
    size_t n = nl ? (size_t)(nl - buf) : len;
    /* Hold at most max_line bytes and one "\r". */
    if (n > l->max_line + 1 - l->partial.len)
      return too_long(l, err);
    ci_buf_add(&l->partial, buf, n);
    if (!nl)
      return 0;
    if (!partial_fits(l))
      return too_long(l, err);
    int r = emit_line(l, l->partial.s, l->partial.len, err);
    ci_buf_reset(&l->partial);
    if (r < 0) {
      l->failed = true;
      return r;
    }
    buf += n + 1;
    len -= n + 1;
  }
  return 0;
}

int
engine_lines_finish(struct engine_lines *l, struct ci_error **err)
{
  if (l->failed)
    return ci_error_make(err, CI_EPROTO, "line stream already failed");
  if (l->partial.len == 0)
    return 0;
  if (!partial_fits(l))
    return too_long(l, err);
  int r = emit_line(l, l->partial.s, l->partial.len, err);
  ci_buf_reset(&l->partial);
  if (r < 0)
    l->failed = true;
  return r;
}

/* ---- progress messages ---------------------------------------------------------------------- */

int
engine_progress_parse(const char *line, size_t len, json_t **msg, struct ci_error **err)
{
  size_t i = 0;
  while (i < len && isspace((unsigned char)line[i]))
    i++;
  if (i == len) {
    *msg = NULL;
    return 0;
  }
  json_error_t jerr;
  json_t *j = json_loadb(line + i, len - i, 0, &jerr);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    cleanup_free char *shown = clean_text(line + i, len - i > 80 ? 80 : len - i);
    return ci_error_make(err, CI_EPROTO, "malformed progress message '%s'%s: %s",
                         shown ? shown : "", len - i > 80 ? "..." : "",
                         j ? "not a JSON object" : jerr.text);
  }
  json_t *e = json_object_get(j, "error");
  if (e && !json_is_null(e) && !(json_is_string(e) && !*json_string_value(e))) {
    const char *text =
        json_string_value(json_object_get(json_object_get(j, "errorDetail"), "message"));
    if (!text || !*text)
      text = json_string_value(e);
    if (!text && json_is_object(e))
      text = json_string_value(json_object_get(e, "message"));
    cleanup_free char *clean = text ? clean_text(text, strlen(text)) : NULL;
    int ret = ci_error_make(err, CI_EFAIL, "%s", clean ? clean : "the engine reported an error");
    json_decref(j);
    return ret;
  }
  *msg = j;
  return 0;
}

/* ---- wait results --------------------------------------------------------------------------- */

int
engine_wait_parse(const char *body, size_t len, int *exit_code, struct ci_error **err)
{
  json_error_t jerr;
  json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
  if (!j)
    return ci_error_make(err, CI_EPROTO, "malformed wait answer: %s", jerr.text);
  int ret = 0;
  json_int_t code = 0;
  if (json_is_integer(j)) { /* libpod */
    code = json_integer_value(j);
  } else if (json_is_object(j)) { /* Docker and Podman's compat API */
    json_t *e = json_object_get(j, "Error");
    const char *emsg = NULL;
    if (json_is_object(e))
      emsg = json_string_value(json_object_get(e, "Message"));
    else if (json_is_string(e))
      emsg = json_string_value(e);
    json_t *sc = json_object_get(j, "StatusCode");
    if (emsg && *emsg)
      ret = ci_error_make(err, CI_EFAIL, "waiting failed: %s", emsg);
    else if (!json_is_integer(sc))
      ret = ci_error_make(err, CI_EPROTO, "wait answer without a StatusCode");
    else
      code = json_integer_value(sc);
  } else {
    ret = ci_error_make(err, CI_EPROTO, "malformed wait answer: neither a number nor an object");
  }
  json_decref(j);
  if (ret < 0)
    return ret;
  if (code < INT_MIN || code > INT_MAX)
    return ci_error_make(err, CI_EPROTO, "wait answer with an impossible exit code %lld",
                         (long long)code);
  *exit_code = (int)code;
  return 0;
}

/* ---- request helpers ------------------------------------------------------------------------ */

struct json_ctx {
  engine_json_cb cb;
  void *data;
};

static void
json_done(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
          void *data)
{
  struct json_ctx *c = data;
  json_t *j = NULL;
  struct ci_error *perr = NULL;
  if (!err && resp->body_len) {
    json_error_t jerr;
    j = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (!j)
      ci_error_make(&perr, CI_EPROTO, "%s: malformed JSON answer (HTTP %ld): %s",
                    engine_req_describe(req), resp->status, jerr.text);
  }
  c->cb(req, resp->status, j, err ? err : perr, c->data);
  json_decref(j);
  ci_error_free(&perr);
  free(c);
}

int
engine_json_start(struct engine_http *http, const struct engine_endpoint *ep, const char *method,
                  const char *path, json_t *body, long timeout_ms, engine_json_cb cb, void *data,
                  struct engine_req **out, struct ci_error **err)
{
  cleanup_free char *text = NULL;
  if (body) {
    text = json_dumps(body, JSON_COMPACT);
    if (!text)
      return ci_error_make(err, -EINVAL, "%s %s %s: cannot serialise the JSON body", ep->name,
                           method, path);
  }
  struct json_ctx *c = xcalloc(1, sizeof(*c));
  c->cb = cb;
  c->data = data;
  struct engine_req_opts o = {
      .method = method,
      .path = path,
      .body = text,
      .body_len = text ? strlen(text) : 0,
      .timeout_ms = timeout_ms,
      .on_done = json_done,
      .data = c,
  };
  int ret = engine_req_start(http, ep, &o, out, err);
  if (ret < 0)
    free(c);
  return ret;
}

/* Logs: a request whose body goes through a demuxer. */
struct logs_ctx {
  struct engine_req *req; /* set by the first body chunk */
  struct engine_demux demux;
  engine_frame_cb on_frame;
  engine_result_cb on_end;
  void *data;
};

static int
logs_frame(enum engine_stream stream, const char *buf, size_t len, void *data,
           struct ci_error **err)
{
  struct logs_ctx *c = data;
  if (engine_req_canceled(c->req)) /* frames after a cancel in the same chunk */
    return ci_error_make(err, CI_ECANCELED, "canceled");
  return c->on_frame(stream, buf, len, c->data, err);
}

static int
logs_body(struct engine_req *req, const char *buf, size_t len, void *data, struct ci_error **err)
{
  struct logs_ctx *c = data;
  c->req = req;
  return engine_demux_feed(&c->demux, buf, len, err);
}

static void
logs_done(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
          void *data)
{
  struct logs_ctx *c = data;
  struct ci_error *ferr = NULL;
  if (!err && engine_demux_finish(&c->demux, &ferr) < 0)
    ci_error_prefix(&ferr, "%s", engine_req_describe(req));
  c->on_end(req, err ? err : ferr, c->data);
  ci_error_free(&ferr);
  free(c);
}

int
engine_logs_start(struct engine_http *http, const struct engine_endpoint *ep, const char *path,
                  bool tty, engine_frame_cb on_frame, engine_result_cb on_end, void *data,
                  struct engine_req **out, struct ci_error **err)
{
  struct logs_ctx *c = xcalloc(1, sizeof(*c));
  engine_demux_init(&c->demux, tty, logs_frame, c);
  c->on_frame = on_frame;
  c->on_end = on_end;
  c->data = data;
  struct engine_req_opts o = {
      .method = "GET",
      .path = path,
      .on_body = logs_body,
      .on_done = logs_done,
      .data = c,
  };
  int ret = engine_req_start(http, ep, &o, out, err);
  if (ret < 0)
    free(c);
  return ret;
}

/* Progress: a request whose body goes through a line splitter and engine_progress_parse. */
struct progress_ctx {
  struct engine_req *req; /* set by the first body chunk */
  struct engine_lines lines;
  engine_msg_cb on_msg;
  engine_result_cb on_end;
  engine_send_cb on_send; /* the caller's upload (a build context), or NULL */
  void *data;
};

static int
progress_send(struct engine_req *req, char *buf, size_t cap, size_t *len, void *data,
              struct ci_error **err)
{
  struct progress_ctx *c = data;
  return c->on_send(req, buf, cap, len, c->data, err);
}

static int
progress_line(char *line, size_t len, void *data, struct ci_error **err)
{
  struct progress_ctx *c = data;
  json_t *msg = NULL;
  if (engine_req_canceled(c->req)) /* lines after a cancel in the same chunk */
    return ci_error_make(err, CI_ECANCELED, "canceled");
  int r = engine_progress_parse(line, len, &msg, err);
  if (r < 0 || !msg)
    return r;
  r = c->on_msg ? c->on_msg(msg, c->data, err) : 0;
  json_decref(msg);
  return r;
}

static int
progress_body(struct engine_req *req, const char *buf, size_t len, void *data,
              struct ci_error **err)
{
  struct progress_ctx *c = data;
  c->req = req;
  return engine_lines_feed(&c->lines, buf, len, err);
}

static void
progress_done(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
              void *data)
{
  struct progress_ctx *c = data;
  struct ci_error *ferr = NULL;
  if (!err && engine_lines_finish(&c->lines, &ferr) < 0)
    ci_error_prefix(&ferr, "%s", engine_req_describe(req));
  c->on_end(req, err ? err : ferr, c->data);
  ci_error_free(&ferr);
  engine_lines_release(&c->lines);
  free(c);
}

int
engine_progress_start(struct engine_http *http, const struct engine_endpoint *ep,
                      const struct engine_req_opts *opts, engine_msg_cb on_msg,
                      engine_result_cb on_end, void *data, struct engine_req **out,
                      struct ci_error **err)
{
  struct progress_ctx *c = xcalloc(1, sizeof(*c));
  engine_lines_init(&c->lines, 0, progress_line, c);
  c->on_msg = on_msg;
  c->on_end = on_end;
  c->on_send = opts->on_send;
  c->data = data;
  struct engine_req_opts o = *opts;
  if (opts->on_send)
    o.on_send = progress_send;
  o.on_body = progress_body;
  o.on_done = progress_done;
  o.max_body = 0;
  o.data = c;
  int ret = engine_req_start(http, ep, &o, out, err);
  if (ret < 0) {
    engine_lines_release(&c->lines);
    free(c);
  }
  return ret;
}

/* Wait: a long poll whose small body is parsed at the end. */
struct wait_ctx {
  engine_exit_cb cb;
  void *data;
};

static void
wait_done(struct engine_req *req, const struct engine_resp *resp, const struct ci_error *err,
          void *data)
{
  struct wait_ctx *c = data;
  struct ci_error *perr = NULL;
  int code = -1;
  if (!err && engine_wait_parse(resp->body, resp->body_len, &code, &perr) < 0)
    ci_error_prefix(&perr, "%s", engine_req_describe(req));
  c->cb(req, code, err ? err : perr, c->data);
  ci_error_free(&perr);
  free(c);
}

int
engine_wait_start(struct engine_http *http, const struct engine_endpoint *ep, const char *path,
                  engine_exit_cb cb, void *data, struct engine_req **out, struct ci_error **err)
{
  struct wait_ctx *c = xcalloc(1, sizeof(*c));
  c->cb = cb;
  c->data = data;
  struct engine_req_opts o = {
      .method = "POST",
      .path = path,
      .max_body = 64u << 10,
      .on_done = wait_done,
      .data = c,
  };
  int ret = engine_req_start(http, ep, &o, out, err);
  if (ret < 0)
    free(c);
  return ret;
}
