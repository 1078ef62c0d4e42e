/* cmd/junit.c - the JUnit XML report (see junit.h). */
#include "junit.h"
#include "output.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct jcase {
  const struct cfg_task *task; /* borrowed; NULL until the task has an event */
  bool started, finished;
  enum sched_status status;
  double seconds;
  char *reason;
  char *lines[JUNIT_TAIL_LINES]; /* ring of the last lines of the log */
  size_t first, nlines;
  struct ci_buf partial; /* an output line without its newline yet */
};

struct junit {
  char *suite;
  time_t started; /* wall clock of junit_new */
  struct jcase *cases;
  size_t n;
};

struct junit *
junit_new(const char *suite_name)
{
  struct junit *j = xcalloc(1, sizeof(*j));
  j->suite = xstrdup(suite_name);
  j->started = time(NULL);
  return j;
}

void
junit_free(struct junit *j)
{
  if (!j)
    return;
  for (size_t i = 0; i < j->n; i++) {
    struct jcase *c = &j->cases[i];
    free(c->reason);
    for (size_t k = 0; k < c->nlines; k++)
      free(c->lines[(c->first + k) % JUNIT_TAIL_LINES]);
    ci_buf_release(&c->partial);
  }
  free(j->cases);
  free(j->suite);
  free(j);
}

static void
push_line(struct jcase *c, const char *s, size_t len)
{
  if (c->nlines == JUNIT_TAIL_LINES) {
    free(c->lines[c->first]);
    c->lines[c->first] = xstrndup(s, len);
    c->first = (c->first + 1) % JUNIT_TAIL_LINES;
  } else {
    c->lines[(c->first + c->nlines++) % JUNIT_TAIL_LINES] = xstrndup(s, len);
  }
}

static void
flush_partial(struct jcase *c)
{
  if (c->partial.len) {
    push_line(c, c->partial.s, c->partial.len);
    ci_buf_reset(&c->partial);
  }
}

static void
push_text(struct jcase *c, const char *p, size_t len)
{
  const char *end = p + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      ci_buf_add(&c->partial, p, (size_t)(end - p));
      return;
    }
    ci_buf_add(&c->partial, p, (size_t)(nl - p));
    push_line(c, c->partial.s ? c->partial.s : "", c->partial.len);
    ci_buf_reset(&c->partial);
    p = nl + 1;
  }
}

static const char *
status_word(enum sched_status st)
{
  switch (st) {
  case SCHED_SUCCEEDED:
    return "succeeded";
  case SCHED_FAILED:
    return "failed";
  case SCHED_SKIPPED:
    return "skipped";
  case SCHED_TIMED_OUT:
    return "timed out";
  case SCHED_CANCELED:
    return "canceled";
  }
  return "failed";
}

void
junit_event(struct junit *j, const struct sched_event *ev)
{
  if (ev->task_index >= j->n) {
    size_t n = ev->task_index + 1;
    j->cases = xreallocarray(j->cases, n, sizeof(*j->cases));
    memset(j->cases + j->n, 0, (n - j->n) * sizeof(*j->cases));
    j->n = n;
  }
  struct jcase *c = &j->cases[ev->task_index];
  c->task = ev->task;
  char dur[32];
  switch (ev->kind) {
  case SCHED_TASK_STARTED:
    c->started = true;
    break;
  case SCHED_SCOPE_STARTED: {
    flush_partial(c);
    char *l = xasprintf("Started %s", ev->scope ? ev->scope : "");
    push_line(c, l, strlen(l));
    free(l);
    break;
  }
  case SCHED_OUTPUT:
    push_text(c, ev->text, ev->len);
    break;
  case SCHED_ANNOTATION:
    break; /* the report files themselves are the artifacts */
  case SCHED_MESSAGE:
    if (ev->level >= CI_LOG_DEBUG)
      break;
    flush_partial(c);
    push_text(c, ev->text, ev->len);
    flush_partial(c);
    break;
  case SCHED_SCOPE_FINISHED: {
    flush_partial(c);
    out_format_duration(ev->seconds, dur, sizeof(dur));
    char *l = xasprintf("%s %s in %s", ev->scope ? ev->scope : "", status_word(ev->status), dur);
    push_line(c, l, strlen(l));
    free(l);
    break;
  }
  case SCHED_TASK_FINISHED:
    flush_partial(c);
    c->finished = true;
    c->status = ev->status;
    c->seconds = ev->seconds;
    free(c->reason);
    c->reason = ev->reason ? xstrdup(ev->reason) : NULL;
    break;
  }
}

static void
xml_add(struct ci_buf *b, const char *s)
{
  cli_text_add_utf8(b, s, strlen(s), true);
}

static void
add_tail(struct ci_buf *b, const struct jcase *c)
{
  for (size_t k = 0; k < c->nlines; k++) {
    xml_add(b, c->lines[(c->first + k) % JUNIT_TAIL_LINES]);
    ci_buf_addc(b, '\n');
  }
}

enum jkind { J_PASSED, J_ALLOWED, J_FAILURE, J_ERROR, J_SKIPPED };

static enum jkind
kind_of(const struct jcase *c)
{
  switch (c->status) {
  case SCHED_SUCCEEDED:
    return J_PASSED;
  case SCHED_FAILED:
    return c->task->allow_failures ? J_ALLOWED : J_FAILURE;
  case SCHED_TIMED_OUT:
    return J_FAILURE;
  case SCHED_SKIPPED:
    return J_SKIPPED;
  case SCHED_CANCELED:
    return c->started ? J_ERROR : J_SKIPPED;
  }
  return J_FAILURE;
}

char *
junit_xml(const struct junit *j)
{
  size_t tests = 0, failures = 0, errors = 0, skipped = 0;
  double total = 0;
  for (size_t i = 0; i < j->n; i++) {
    const struct jcase *c = &j->cases[i];
    if (!c->task || !c->finished)
      continue;
    tests++;
    total += c->seconds;
    enum jkind k = kind_of(c);
    failures += k == J_FAILURE;
    errors += k == J_ERROR;
    skipped += k == J_SKIPPED;
  }
  char stamp[32], host[HOST_NAME_MAX + 1] = "localhost";
  struct tm tm;
  gmtime_r(&j->started, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  if (gethostname(host, sizeof(host)) < 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';

  struct ci_buf b = CI_BUF_INIT;
  ci_buf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"");
  xml_add(&b, j->suite);
  ci_buf_addf(&b,
              "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" time=\"%.3f\">\n",
              tests, failures, errors, skipped, total);
  ci_buf_adds(&b, "  <testsuite name=\"");
  xml_add(&b, j->suite);
  ci_buf_addf(&b,
              "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" time=\"%.3f\" "
              "timestamp=\"%s\" hostname=\"",
              tests, failures, errors, skipped, total, stamp);
  xml_add(&b, host);
  ci_buf_adds(&b, "\">\n");
  for (size_t i = 0; i < j->n; i++) {
    const struct jcase *c = &j->cases[i];
    if (!c->task || !c->finished)
      continue;
    ci_buf_adds(&b, "    <testcase classname=\"");
    xml_add(&b, c->task->name);
    ci_buf_adds(&b, "\" name=\"");
    xml_add(&b, c->task->name);
    for (size_t k = 0; k < c->task->labels.n; k++) {
      ci_buf_adds(&b, k ? " " : " (");
      xml_add(&b, c->task->labels.v[k]);
    }
    if (c->task->labels.n)
      ci_buf_addc(&b, ')');
    ci_buf_addf(&b, "\" time=\"%.3f\"", c->seconds);
    const char *reason = c->reason ? c->reason : status_word(c->status);
    switch (kind_of(c)) {
    case J_PASSED:
      ci_buf_adds(&b, "/>\n");
      continue;
    case J_ALLOWED:
      ci_buf_adds(&b, ">\n      <system-out>allowed failure: ");
      xml_add(&b, reason);
      ci_buf_addc(&b, '\n');
      add_tail(&b, c);
      ci_buf_adds(&b, "</system-out>\n");
      break;
    case J_FAILURE:
    case J_ERROR: {
      const char *el = kind_of(c) == J_ERROR ? "error" : "failure";
      ci_buf_addf(&b, ">\n      <%s message=\"", el);
      xml_add(&b, reason);
      ci_buf_addf(&b, "\" type=\"%s\">",
                  c->status == SCHED_TIMED_OUT  ? "timed_out"
                  : c->status == SCHED_CANCELED ? "canceled"
                                                : "failed");
      add_tail(&b, c);
      ci_buf_addf(&b, "</%s>\n", el);
      break;
    }
    case J_SKIPPED:
      ci_buf_adds(&b, ">\n      <skipped message=\"");
      xml_add(&b, reason);
      ci_buf_adds(&b, "\"/>\n");
      break;
    }
    ci_buf_adds(&b, "    </testcase>\n");
  }
  ci_buf_adds(&b, "  </testsuite>\n</testsuites>\n");
  return ci_buf_take(&b);
}

int
junit_write(const struct junit *j, const char *path, struct ci_error **err)
{
  cleanup_free char *xml = junit_xml(j);
  cleanup_free char *tmp = xasprintf("%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot write the JUnit report '%s': %s", path,
                         strerror(errno));
  mode_t um = umask(0);
  umask(um);
  size_t len = strlen(xml), off = 0;
  int e = 0;
  if (fchmod(fd, 0666 & ~um) < 0)
    e = errno;
  while (!e && off < len) {
    ssize_t w = write(fd, xml + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      e = errno;
    else
      off += (size_t)w;
  }
  if (!e && fsync(fd) < 0)
    e = errno;
  if (close(fd) < 0 && !e)
    e = errno;
  if (!e && rename(tmp, path) < 0)
    e = errno;
  if (e) {
    unlink(tmp);
    return ci_error_make(err, -e, "cannot write the JUnit report '%s': %s", path, strerror(e));
  }
  return 0;
}
