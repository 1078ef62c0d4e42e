/* backends/engine_http.h - REST client for container engines (Docker Engine API, Podman's
 * libpod and Docker-compatible APIs) over unix sockets or TCP, on a libuv loop.
 *
 * Every call is an HTTP request made by libcurl's multi-socket interface, driven by the
 * caller's uv_loop_t: one CURLM per loop, a uv_poll_t per socket curl opens, one uv_timer_t for
 * curl's timeouts (and a uv_idle_t for its "call me at once").  Nothing here blocks the loop
 * thread, so a long poll (`wait`, followed logs, a pull) costs one socket and no thread.
 *
 * How to use it (docker.c and podman.c do exactly this):
 *
 *   1. Once per loop, engine_http_new(loop, &http, &err).
 *   2. Once per engine, engine_endpoint_init(&ep, "docker", url, &err), with url taken from
 *      DOCKER_HOST / CONTAINER_HOST or a default (engine_endpoint_from_env does that).
 *   3. Per call, one of:
 *        engine_json_start()      request with an optional JSON body, response parsed as JSON;
 *        engine_logs_start()      followed container logs, demultiplexed into stdout/stderr;
 *        engine_progress_start()  pull/build/events: newline-delimited JSON messages, with the
 *                                 engines' in-band {"error": ...} lines turned into errors;
 *        engine_wait_start()      the long-polled `wait`, parsed into an exit code;
 *        engine_req_start()       anything else (raw bytes in and out, tar uploads).
 *      Each returns 0 and later runs its completion callback exactly once, on the loop thread,
 *      never from inside the start call; or returns < 0 with *err set, and no callback runs.
 *   4. engine_req_cancel() ends a request early; its completion callback then runs with an
 *      error whose code is CI_ECANCELED.
 *   5. engine_http_close(http) when done: requests still in flight complete with CI_ECANCELED,
 *      then every handle is closed.  Run the loop until uv_run() returns; uv_loop_close() then
 *      returns 0.  engine_endpoint_release(&ep) whenever no new request will name it.
 *
 * Threads: everything here is called on the loop's thread only; curl handles are never touched
 * from anywhere else.
 *
 * Errors name the engine, the call and, for connection failures, the socket:
 *   podman GET /v4.0.0/libpod/_ping: cannot connect to unix:///run/podman/podman.sock:
 *     socket '/run/podman/podman.sock' does not exist (is the engine running?)
 *   docker POST /v1.41/containers/create: HTTP 404: No such image: nosuch:latest
 * The code is a negative errno where one fits (-ENOENT for a missing socket or a 404,
 * -ECONNREFUSED, -EACCES, -EINVAL for a 400, -EBUSY for a 409), CI_ETIMEDOUT, CI_ECANCELED,
 * CI_EPROTO for a malformed answer, else CI_EFAIL.
 */
#ifndef CI_ENGINE_HTTP_H
#define CI_ENGINE_HTTP_H

#include "common/error.h"
#include "common/util.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

struct engine_http; /* one per loop: the curl multi handle and its libuv handles */
struct engine_req;  /* one request in flight */

/* Default cap on a response body collected in memory (engine_req_opts.max_body = 0). */
#define ENGINE_MAX_BODY (16u << 20)
/* Cap on one line of a newline-delimited JSON stream (engine_lines_init max_line = 0). */
#define ENGINE_MAX_LINE (1u << 20)
/* A log frame announcing more than this is taken as a sign of a garbled stream. */
#define ENGINE_MAX_FRAME (64u << 20)

/* ---- endpoints ------------------------------------------------------------------------------ */

/* Where an engine listens.  All strings are owned; release with engine_endpoint_release(). */
struct engine_endpoint {
  char *name;        /* "docker", "podman": the first word of every error message */
  char *url;         /* as given: "unix:///var/run/docker.sock", "tcp://10.0.0.2:2375" */
  char *socket_path; /* the unix socket, or NULL for TCP */
  char *base_url;    /* what request paths are appended to: "http://localhost" for a unix
                        socket (the host part is not used), "http://10.0.0.2:2375" for TCP */
};

/* Parse url, in the syntax of DOCKER_HOST and CONTAINER_HOST:
 *   unix:///absolute/path.sock   a unix socket (at most 107 bytes of path)
 *   tcp://host[:port]            plain HTTP; the port defaults to 2375 (http:// is accepted too)
 * Anything else (ssh://, npipe://, a relative path, an empty string) is refused with an error
 * that quotes it.  name and url are copied.  On failure *ep is left zeroed and needs no release. */
int engine_endpoint_init(struct engine_endpoint *ep, const char *name, const char *url,
                         struct ci_error **err);

/* engine_endpoint_init() with the URL from the environment variable env_var when it is set and
 * not empty, else fallback.  Errors say which of the two was used. */
int engine_endpoint_from_env(struct engine_endpoint *ep, const char *name, const char *env_var,
                             const char *fallback, struct ci_error **err);

/* Free the strings and zero *ep.  Requests in flight keep their own copies. */
void engine_endpoint_release(struct engine_endpoint *ep);

/* ---- the client ----------------------------------------------------------------------------- */

/* Create the client of loop (borrowed; it must outlive the client).  Synchronous. */
int engine_http_new(uv_loop_t *loop, struct engine_http **out, struct ci_error **err);

/* Start shutting the client down; returns at once.  On the next loop iteration every request
 * still in flight completes with CI_ECANCELED (its callbacks may run, but engine_req_start()
 * now fails with -ESHUTDOWN), then curl's handles are cleaned up and every libuv handle is
 * closed; the client frees itself in the last close callback.  May be called from inside any
 * callback of this module.  http must not be used afterwards.  NULL is accepted. */
void engine_http_close(struct engine_http *http);

/* The number of requests in flight. */
size_t engine_http_active(const struct engine_http *http);

/* ---- raw requests --------------------------------------------------------------------------- */

/* What a completion callback learns besides the error.  Borrowed: valid during the callback. */
struct engine_resp {
  long status;      /* HTTP status; 0 when no response arrived */
  const char *body; /* the collected body, NUL-terminated ("" when it was streamed to
                       on_body or empty); for a status >= 400 always the error body */
  size_t body_len;
  const char *content_type; /* Content-Type of the response, or NULL */
};

/* Streaming response bytes, called on the loop thread from inside libcurl for each chunk of a
 * response whose status is below 400, in order, with len > 0.  Return 0 to go on, or < 0 with
 * *err set to end the request with that error (it then reaches on_done, prefixed with the
 * call).  May call engine_req_cancel() and engine_http_close(), nothing else of this module. */
typedef int (*engine_body_cb)(struct engine_req *req, const char *buf, size_t len, void *data,
                              struct ci_error **err);

/* Request body supplier for uploads of unknown size (a tar produced while it is sent): fill
 * buf with at most cap bytes and set *len; *len == 0 ends the body.  Return 0, or
 * ENGINE_SEND_PAUSE when nothing is ready yet (then call engine_req_resume() once it is), or
 * < 0 with *err set to abort the request.  Same calling rules as engine_body_cb. */
#define ENGINE_SEND_PAUSE 1
typedef int (*engine_send_cb)(struct engine_req *req, char *buf, size_t cap, size_t *len,
                              void *data, struct ci_error **err);

/* Completion: runs exactly once per started request, on the loop thread, outside libcurl.
 * err is NULL on success (any status below 400), else borrowed and set; resp is always given
 * (status 0 if the engine never answered).  req is valid only during the call and is freed
 * afterwards.  The callback may start, cancel and close anything. */
typedef void (*engine_done_cb)(struct engine_req *req, const struct engine_resp *resp,
                               const struct ci_error *err, void *data);

struct engine_req_opts {
  const char *method;         /* "GET", "POST", "PUT", "DELETE", "HEAD", ...; required */
  const char *path;           /* "/v1.41/containers/json?all=1": begins with '/', no spaces or
                                 control characters; the caller escapes query values */
  const char *const *headers; /* optional extra "Name: value" lines, NULL-terminated */
  const char *content_type;   /* of the request body; default "application/json" */
  /* The request body, one of: */
  const void *body; /* bytes, copied at start (body_len of them) */
  size_t body_len;
  engine_send_cb on_send; /* or streamed: sent with chunked encoding unless */
  int64_t send_len;       /*   send_len >= 0 gives the exact length (-1: unknown) */
  /* The response: */
  engine_body_cb on_body; /* optional; without it the body is collected for on_done */
  size_t max_body;        /* cap on the collected body; 0 means ENGINE_MAX_BODY; a larger
                             body ends the request with -EFBIG */
  long timeout_ms;        /* whole-request deadline; 0 means none (long polls) */
  engine_done_cb on_done; /* required */
  void *data;             /* passed to every callback */
};

/* Start a request to ep.  ep and opts are borrowed: everything in them is copied before this
 * returns (the body included), except data, which is handed to the callbacks.  Returns 0 and, if
 * out is not NULL, a handle for engine_req_cancel()/engine_req_resume(), valid until on_done
 * returns; or < 0 with *err set (bad arguments, a closing client, curl refusing the handle), and
 * then no callback ever runs.  With neither body nor on_send, POST and PUT send an empty body. */
int engine_req_start(struct engine_http *http, const struct engine_endpoint *ep,
                     const struct engine_req_opts *opts, struct engine_req **out,
                     struct ci_error **err);

/* Ask for req to end: on_body and on_send are not called again (nor the helpers' on_frame and
 * on_msg, even for data already received), and on_done runs soon (never
 * inside this call) with CI_ECANCELED, unless the request had already completed in the same
 * loop iteration, in which case it reports that outcome.  Only valid until on_done has run. */
void engine_req_cancel(struct engine_req *req);

/* Whether engine_req_cancel() (or engine_http_close()) was called for req.  Stream consumers
 * check it to stop handing on data that arrived in the same chunk. */
bool engine_req_canceled(const struct engine_req *req);

/* Continue a request whose on_send returned ENGINE_SEND_PAUSE.  Not from inside on_send. */
void engine_req_resume(struct engine_req *req);

/* "docker POST /v1.41/containers/create": the description errors start with.  Borrowed. */
const char *engine_req_describe(const struct engine_req *req);

/* ---- JSON requests -------------------------------------------------------------------------- */

/* Completion of engine_json_start: json is the parsed response (borrowed, valid during the
 * call; take a reference to keep it), or NULL when the body was empty (204 No Content) or the
 * request failed.  status as in engine_resp. */
typedef void (*engine_json_cb)(struct engine_req *req, long status, json_t *json,
                               const struct ci_error *err, void *data);

/* method path with body (borrowed, serialised at start; NULL sends none) as JSON.  A 2xx or 3xx
 * answer that is not valid JSON completes with CI_EPROTO.  timeout_ms as in engine_req_opts. */
int engine_json_start(struct engine_http *http, const struct engine_endpoint *ep,
                      const char *method, const char *path, json_t *body, long timeout_ms,
                      engine_json_cb cb, void *data, struct engine_req **out,
                      struct ci_error **err);

/* ---- streams: demultiplexed logs ------------------------------------------------------------ */

/* The engines' stream ids in multiplexed logs and attach streams. */
enum engine_stream {
  ENGINE_STDIN = 0,
  ENGINE_STDOUT = 1,
  ENGINE_STDERR = 2,
  ENGINE_SYSERR = 3, /* Docker's "system error" stream */
};

/* One piece of a frame's payload, len > 0.  A frame split across network chunks arrives as
 * several calls with the same stream.  Return 0, or < 0 with *err set to stop. */
typedef int (*engine_frame_cb)(enum engine_stream stream, const char *buf, size_t len, void *data,
                               struct ci_error **err);

/* The decoder of non-TTY log streams: frames of an 8-byte header {stream, 0, 0, 0, length as a
 * 32-bit big-endian integer} and a payload.  Payload bytes are handed on as they come, so the
 * decoder holds at most the 8 header bytes whatever the frame sizes.  A header with an unknown
 * stream, non-zero padding or a length above ENGINE_MAX_FRAME is a malformed stream (CI_EPROTO):
 * typically a TTY container's raw output read as multiplexed.  In raw mode (TTY containers)
 * every byte is passed through as ENGINE_STDOUT. */
struct engine_demux {
  engine_frame_cb on_frame;
  void *data;
  bool raw;
  bool failed;          /* a malformed header was seen; feed refuses more */
  unsigned char hdr[8]; /* header bytes gathered so far */
  size_t hdr_len;
  uint32_t left; /* payload bytes still due in the current frame */
  enum engine_stream stream;
  uint64_t offset; /* bytes consumed so far, for error messages */
};

void engine_demux_init(struct engine_demux *d, bool raw, engine_frame_cb on_frame, void *data);
/* Decode len bytes (any split).  Returns 0, or < 0 with *err set: malformed input, or the
 * error of on_frame. */
int engine_demux_feed(struct engine_demux *d, const char *buf, size_t len, struct ci_error **err);
/* At the end of the stream: an error (CI_EPROTO) if it stopped inside a header or a payload. */
int engine_demux_finish(struct engine_demux *d, struct ci_error **err);

/* Completion of the stream helpers and of other requests with no result but success. */
typedef void (*engine_result_cb)(struct engine_req *req, const struct ci_error *err, void *data);

/* GET path (a logs or attach URL with follow, stdout and stderr set by the caller) and
 * demultiplex it (raw when tty) into on_frame; then on_end once, after the last frame, with
 * the error if any (a stream cut inside a frame is one).  No deadline: a followed log ends when
 * the container stops or the request is cancelled. */
int engine_logs_start(struct engine_http *http, const struct engine_endpoint *ep, const char *path,
                      bool tty, engine_frame_cb on_frame, engine_result_cb on_end, void *data,
                      struct engine_req **out, struct ci_error **err);

/* ---- streams: newline-delimited JSON ----------------------------------------------------------
 */

/* One line without its "\n" (nor a "\r" before it), NUL-terminated at line[len]; the buffer
 * is the splitter's and may be modified.  Return 0, or < 0 with *err set to stop. */
typedef int (*engine_line_cb)(char *line, size_t len, void *data, struct ci_error **err);

/* A line splitter for chunked streams.  Holds the unfinished line, at most max_line bytes. */
struct engine_lines {
  engine_line_cb on_line;
  void *data;
  size_t max_line;
  struct ci_buf partial; /* the unfinished line */
  bool failed;
};

/* max_line 0 means ENGINE_MAX_LINE. */
void engine_lines_init(struct engine_lines *l, size_t max_line, engine_line_cb on_line, void *data);
/* Split len bytes.  A line longer than max_line is an error (-E2BIG). */
int engine_lines_feed(struct engine_lines *l, const char *buf, size_t len, struct ci_error **err);
/* At the end of the stream: hand on a last line that had no newline. */
int engine_lines_finish(struct engine_lines *l, struct ci_error **err);
void engine_lines_release(struct engine_lines *l);

/* One message of a JSON-lines stream (borrowed; take a reference to keep it). */
typedef int (*engine_msg_cb)(json_t *msg, void *data, struct ci_error **err);

/* Check one line of a progress stream.  Blank lines are skipped (0, *msg NULL).  A line that is
 * not a JSON object is CI_EPROTO.  An object with a non-empty "error" member (Docker and Podman
 * report a failed pull or build that way, inside a 200 response) becomes an error (CI_EFAIL)
 * carrying errorDetail.message or error.  Otherwise *msg is the new object (owned). */
int engine_progress_parse(const char *line, size_t len, json_t **msg, struct ci_error **err);

/* Send the request of opts (method, path, headers, body or on_send, timeout_ms; its on_body,
 * on_done, data and max_body are ignored; on_send gets this function's data) and parse the
 * answer as newline-delimited JSON: on_msg per message, then on_end once.  An {"error": ...}
 * message ends the request with that error.  For pulls (POST /images/create, /libpod/images/pull),
 * builds and events. */
int engine_progress_start(struct engine_http *http, const struct engine_endpoint *ep,
                          const struct engine_req_opts *opts, engine_msg_cb on_msg,
                          engine_result_cb on_end, void *data, struct engine_req **out,
                          struct ci_error **err);

/* ---- wait ----------------------------------------------------------------------------------- */

/* Completion of engine_wait_start: the container's exit code (0..255, or negative when the
 * engine reports one), valid only when err is NULL. */
typedef void (*engine_exit_cb)(struct engine_req *req, int exit_code, const struct ci_error *err,
                               void *data);

/* POST path, a wait URL: Docker's /containers/{id}/wait[?condition=...] answering
 * {"StatusCode": n, "Error": null | {"Message": "..."}}, or libpod's
 * /libpod/containers/{id}/wait?condition=... answering a bare integer.  Long poll: no deadline
 * (use the task's timer and engine_req_cancel()); an Error member becomes the error. */
int engine_wait_start(struct engine_http *http, const struct engine_endpoint *ep, const char *path,
                      engine_exit_cb cb, void *data, struct engine_req **out,
                      struct ci_error **err);

/* Parse a wait answer (either form) into *exit_code.  CI_EPROTO if it is neither; CI_EFAIL
 * with the engine's message when it reports an Error. */
int engine_wait_parse(const char *body, size_t len, int *exit_code, struct ci_error **err);

/* ---- helpers ------------------------------------------------------------------------------- */

/* The human part of an engine's error body: its JSON "message" (Docker, Podman), else the
 * first line of a text body, at most 300 bytes; NULL when there is nothing.  Owned. */
char *engine_error_message(const char *body, size_t len);

/* Append s percent-encoded for a URL query value (RFC 3986 unreserved characters stay). */
void engine_buf_add_query(struct ci_buf *b, const char *s);

#endif
