/* cmd/output_json.c - `-o json`: one JSON object per line (docs/json-output.md). */
#include "output.h"
#include "text.h"
#include "runner/artifacts.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

struct pending {
  char b[4]; /* the start of a UTF-8 character cut by the end of an output chunk */
  size_t n;
};

struct out_json {
  FILE *f;
  bool verbose;
  struct pending (*pend)[2]; /* per task, per stream (stdout, stderr) */
  size_t npend;
};

struct out_json *
out_json_new(FILE *f, bool verbose)
{
  struct out_json *j = xcalloc(1, sizeof(*j));
  j->f = f;
  j->verbose = verbose;
  return j;
}

void
out_json_free(struct out_json *j)
{
  if (!j)
    return;
  free(j->pend);
  free(j);
}

static json_t *
event_new(const char *name)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[64];
  size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
  json_t *o = json_object();
  json_object_set_new(o, "event", json_string(name));
  json_object_set_new(o, "time", json_string(when));
  return o;
}

static void
emit(struct out_json *j, json_t *o)
{
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  if (s) {
    fputs(s, j->f);
    fputc('\n', j->f);
    free(s);
  }
  json_decref(o);
  fflush(j->f);
}

/* Seconds rounded to the millisecond ("seconds":0.304). */
static json_t *
seconds_value(double s)
{
  return json_real(s > 0 ? (double)(long long)(s * 1000 + 0.5) / 1000 : 0);
}

static json_t *
text_value(const char *s, size_t len)
{
  struct ci_buf b = CI_BUF_INIT;
  cli_text_add_utf8(&b, s, len, false);
  json_t *v = json_stringn(b.s ? b.s : "", b.len);
  ci_buf_release(&b);
  return v;
}

static const char *
status_name(enum sched_status st)
{
  switch (st) {
  case SCHED_SUCCEEDED:
    return "succeeded";
  case SCHED_FAILED:
    return "failed";
  case SCHED_SKIPPED:
    return "skipped";
  case SCHED_TIMED_OUT:
    return "timed_out";
  case SCHED_CANCELED:
    return "canceled";
  }
  return "failed";
}

static const char *
level_name(enum ci_log_level l)
{
  static const char *const n[] = {"error", "warning", "info", "debug", "trace"};
  return l <= CI_LOG_TRACE ? n[l] : "info";
}

static void
set_task(json_t *o, const struct cfg_task *t)
{
  json_object_set_new(o, "task", json_string(t->name));
  json_object_set_new(o, "task_id", json_integer(t->id));
}

void
out_json_run_started(struct out_json *j, const char *run_id, const char *backend,
                     const struct graph *g)
{
  json_t *o = event_new("run_started");
  json_object_set_new(o, "run_id", json_string(run_id));
  json_object_set_new(o, "backend", json_string(backend));
  json_t *tasks = json_array();
  for (size_t i = 0; i < g->n; i++) {
    const struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    json_t *t = json_object();
    json_object_set_new(t, "id", json_integer(nd->task->id));
    json_object_set_new(t, "name", json_string(nd->task->name));
    json_t *labels = json_array();
    for (size_t k = 0; k < nd->task->labels.n; k++)
      json_array_append_new(labels, json_string(nd->task->labels.v[k]));
    json_object_set_new(t, "labels", labels);
    json_t *deps = json_array();
    for (size_t k = 0; k < nd->ndeps; k++)
      if (g->nodes[nd->deps[k]].state != GRAPH_EXCLUDED)
        json_array_append_new(deps, json_integer(g->nodes[nd->deps[k]].task->id));
    json_object_set_new(t, "depends_on", deps);
    json_object_set_new(t, "allow_failures", json_boolean(nd->task->allow_failures));
    json_array_append_new(tasks, t);
  }
  json_object_set_new(o, "tasks", tasks);
  emit(j, o);
}

void
out_json_run_finished(struct out_json *j, int status, const char *failure, double seconds)
{
  json_t *o = event_new("run_finished");
  json_object_set_new(o, "status", json_integer(status));
  json_object_set_new(o, "seconds", seconds_value(seconds));
  json_object_set_new(o, "failure", failure ? json_string(failure) : json_null());
  emit(j, o);
}

static struct pending *
pending(struct out_json *j, size_t task, int stream)
{
  if (task >= j->npend) {
    j->pend = xreallocarray(j->pend, task + 1, sizeof(*j->pend));
    memset(j->pend + j->npend, 0, (task + 1 - j->npend) * sizeof(*j->pend));
    j->npend = task + 1;
  }
  return &j->pend[task][stream == 2 ? 1 : 0];
}

static void
output_event(struct out_json *j, const struct sched_event *ev, const char *s, size_t len,
             int stream)
{
  json_t *o = event_new("output");
  set_task(o, ev->task);
  json_object_set_new(o, "step", ev->scope ? json_string(ev->scope) : json_null());
  json_object_set_new(o, "stream", json_string(stream == 2 ? "stderr" : "stdout"));
  json_object_set_new(o, "text", text_value(s, len));
  emit(j, o);
}

/* Output held back because it ended inside a character goes out before the scope ends. */
static void
flush_pending(struct out_json *j, const struct sched_event *ev)
{
  for (int stream = 1; stream <= 2; stream++) {
    struct pending *p = pending(j, ev->task_index, stream);
    if (p->n) {
      output_event(j, ev, p->b, p->n, stream);
      p->n = 0;
    }
  }
}

void
out_json_event(struct out_json *j, const struct sched_event *ev)
{
  json_t *o = NULL;
  switch (ev->kind) {
  case SCHED_TASK_STARTED:
    o = event_new("task_started");
    set_task(o, ev->task);
    break;
  case SCHED_TASK_FINISHED:
    flush_pending(j, ev);
    o = event_new("task_finished");
    set_task(o, ev->task);
    json_object_set_new(o, "status", json_string(status_name(ev->status)));
    json_object_set_new(o, "allowed_failure",
                        json_boolean(ev->status == SCHED_FAILED && ev->task->allow_failures));
    json_object_set_new(o, "seconds", seconds_value(ev->seconds));
    json_object_set_new(o, "reason", ev->reason ? json_string(ev->reason) : json_null());
    break;
  case SCHED_SCOPE_STARTED:
    o = event_new("step_started");
    set_task(o, ev->task);
    json_object_set_new(o, "step", json_string(ev->scope ? ev->scope : ""));
    break;
  case SCHED_SCOPE_FINISHED:
    flush_pending(j, ev);
    o = event_new("step_finished");
    set_task(o, ev->task);
    json_object_set_new(o, "step", json_string(ev->scope ? ev->scope : ""));
    json_object_set_new(o, "status", json_string(status_name(ev->status)));
    json_object_set_new(o, "seconds", seconds_value(ev->seconds));
    break;
  case SCHED_OUTPUT: {
    struct pending *p = pending(j, ev->task_index, ev->stream);
    struct ci_buf b = CI_BUF_INIT;
    ci_buf_add(&b, p->b, p->n);
    ci_buf_add(&b, ev->text, ev->len);
    size_t tail = cli_text_utf8_tail(b.s ? b.s : "", b.len);
    p->n = tail;
    memcpy(p->b, b.s + b.len - tail, tail);
    if (b.len > tail)
      output_event(j, ev, b.s, b.len - tail, ev->stream);
    ci_buf_release(&b);
    return;
  }
  case SCHED_ANNOTATION: {
    const struct artifacts_annotation *a = ev->annotation;
    if (!a)
      return;
    o = event_new("annotation");
    set_task(o, ev->task);
    json_object_set_new(o, "level", json_string(a->level == ARTIFACTS_FAILURE   ? "failure"
                                                : a->level == ARTIFACTS_WARNING ? "warning"
                                                                                : "notice"));
    json_object_set_new(o, "message", json_string(a->message));
    json_object_set_new(o, "path", *a->path ? json_string(a->path) : json_null());
    json_object_set_new(o, "start_line", json_integer(a->start_line));
    json_object_set_new(o, "end_line", json_integer(a->end_line));
    break;
  }
  case SCHED_MESSAGE:
    if (ev->level >= CI_LOG_DEBUG && !j->verbose)
      return;
    o = event_new("message");
    set_task(o, ev->task);
    json_object_set_new(o, "step", ev->scope ? json_string(ev->scope) : json_null());
    json_object_set_new(o, "level", json_string(level_name(ev->level)));
    json_object_set_new(o, "text", text_value(ev->text, ev->len));
    break;
  }
  if (o)
    emit(j, o);
}
