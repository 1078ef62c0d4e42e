/* cmd/output.c - renderers for `cirrus run` (see output.h). */
#include "output.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define YELLOW "\033[33m"
#define GREEN "\033[32m"
#define RED "\033[31m"
#define DIM "\033[2m"
#define RESET "\033[0m"

#define RUNNING_LINES 5  /* output lines shown under a running step (interactive) */
#define FAILED_LINES 100 /* output lines kept for a failed step (interactive) */

struct step_view {
  char *scope;
  bool finished;
  enum sched_status status;
  double secs;
  double t0;
  struct ci_strv lines; /* the last lines (ring of at most FAILED_LINES) */
};

struct task_view {
  const struct cfg_task *task;
  char *scope; /* "'main' task" */
  bool started, finished;
  enum sched_status status;
  double secs, t0;
  char *reason;
  struct ci_buf block;   /* simple output of this task while it runs (parallel > 1) */
  struct ci_buf partial; /* an unterminated output line */
  char *partial_scope;
  struct step_view *steps;
  size_t nsteps;
};

struct out {
  enum out_mode mode;
  FILE *f;
  unsigned parallel;
  bool color, verbose, utf8;
  struct task_view *tasks;
  size_t ntasks;
  uv_timer_t timer;
  bool timer_on;
  unsigned frame;
  size_t drawn; /* lines of the last interactive frame */
  size_t order_alloc;
  size_t *order; /* task indices in the order they started */
  size_t norder;
  struct out_json *json; /* json mode */
  double run_t0;
};

int
out_mode_parse(const char *s, enum out_mode *mode)
{
  if (!strcmp(s, "auto")) {
    const char *v;
    if ((v = getenv("TRAVIS")) && !strcmp(v, "true"))
      *mode = OUT_TRAVIS;
    else if ((v = getenv("GITHUB_ACTIONS")) && !strcmp(v, "true"))
      *mode = OUT_GITHUB;
    else if (getenv("TEAMCITY_VERSION"))
      *mode = OUT_TEAMCITY;
    else if (((v = getenv("CI")) && !strcmp(v, "true")) || !isatty(STDOUT_FILENO))
      *mode = OUT_SIMPLE;
    else
      *mode = OUT_INTERACTIVE;
    return 0;
  }
  static const struct {
    const char *name;
    enum out_mode mode;
  } names[] = {
      {"simple", OUT_SIMPLE},     {"github-actions", OUT_GITHUB},   {"travis", OUT_TRAVIS},
      {"teamcity", OUT_TEAMCITY}, {"interactive", OUT_INTERACTIVE}, {"noemoji", OUT_INTERACTIVE},
      {"json", OUT_JSON}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(names); i++)
    if (!strcmp(s, names[i].name)) {
      *mode = names[i].mode;
      return 0;
    }
  return -1;
}

const char *
out_mode_name(enum out_mode mode)
{
  static const char *const n[] = {"simple",   "github-actions", "travis",
                                  "teamcity", "interactive",    "json"};
  return n[mode];
}

void
out_format_duration(double s, char *buf, size_t size)
{
  if (s < 0)
    s = 0;
  if (s < 10)
    snprintf(buf, size, "%.1fs", s);
  else if (s < 60)
    snprintf(buf, size, "%ds", (int)s);
  else if (s < 3600)
    snprintf(buf, size, "%02d:%02d", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, size, "%02d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
}

char *
out_task_scope(const struct cfg_task *t)
{
  bool upper = t->name[0] >= 'A' && t->name[0] <= 'Z';
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_addf(&b, "'%s' %s", t->name, upper ? "Task" : "task");
  for (size_t i = 0; i < t->labels.n; i++)
    ci_buf_addf(&b, "%s%s", i ? " " : " (", t->labels.v[i]);
  if (t->labels.n)
    ci_buf_addc(&b, ')');
  return ci_buf_take(&b);
}

struct out *
out_new(enum out_mode mode, FILE *f, unsigned parallel, bool color, bool verbose)
{
  struct out *o = xcalloc(1, sizeof(*o));
  o->mode = mode;
  o->f = f;
  o->parallel = parallel ? parallel : 1;
  o->color = color;
  o->verbose = verbose;
  const char *lang = getenv("LC_ALL");
  if (!lang || !*lang)
    lang = getenv("LC_CTYPE");
  if (!lang || !*lang)
    lang = getenv("LANG");
  o->utf8 = lang && (strstr(lang, "UTF-8") || strstr(lang, "utf8") || strstr(lang, "UTF8"));
  if (mode == OUT_JSON)
    o->json = out_json_new(f, verbose);
  o->run_t0 = (double)uv_hrtime() / 1e9;
  return o;
}

static struct task_view *
view(struct out *o, const struct sched_event *ev)
{
  if (ev->task_index >= o->ntasks) {
    size_t n = ev->task_index + 1;
    o->tasks = xreallocarray(o->tasks, n, sizeof(*o->tasks));
    memset(o->tasks + o->ntasks, 0, (n - o->ntasks) * sizeof(*o->tasks));
    o->ntasks = n;
  }
  struct task_view *tv = &o->tasks[ev->task_index];
  if (!tv->task) {
    tv->task = ev->task;
    tv->scope = out_task_scope(ev->task);
    ci_buf_init(&tv->block);
    ci_buf_init(&tv->partial);
    CI_GROW(o->order, o->order_alloc, o->norder + 1);
    o->order[o->norder++] = ev->task_index;
  }
  return tv;
}

/* ---- simple and the CI flavours ---- */

/* Where simple output of a task goes: its block (parallel) or straight out. */
static void
emitf(struct out *o, struct task_view *tv, const char *fmt, ...) CI_PRINTF(3, 4);

static void
emitf(struct out *o, struct task_view *tv, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  if (o->parallel > 1 && tv)
    ci_buf_vaddf(&tv->block, fmt, ap);
  else
    vfprintf(o->f, fmt, ap);
  va_end(ap);
}

static const char *
quoted(const char *scope, char *buf, size_t size)
{
  if (strchr(scope, '\''))
    return scope;
  snprintf(buf, size, "'%s'", scope);
  return buf;
}

static void
teamcity_escape(struct ci_buf *b, const char *s)
{
  for (; *s; s++) {
    switch (*s) {
    case '\'':
      ci_buf_adds(b, "|'");
      break;
    case '[':
      ci_buf_adds(b, "|[");
      break;
    case ']':
      ci_buf_adds(b, "|]");
      break;
    case '|':
      ci_buf_adds(b, "||");
      break;
    case '\n':
      ci_buf_adds(b, "|n");
      break;
    default:
      ci_buf_addc(b, *s);
    }
  }
}

static void
fold(struct out *o, struct task_view *tv, const char *scope, bool open)
{
  switch (o->mode) {
  case OUT_GITHUB:
    if (open)
      emitf(o, tv, "##[group]%s\n", scope);
    else
      emitf(o, tv, "##[endgroup]\n");
    break;
  case OUT_TRAVIS:
    emitf(o, tv, "travis_fold:%s:%s\n", open ? "start" : "end", scope);
    break;
  case OUT_TEAMCITY: {
    struct ci_buf b = CI_BUF_INIT;
    teamcity_escape(&b, scope);
    emitf(o, tv, "##teamcity[%s name='%s']\n", open ? "blockOpened" : "blockClosed",
          ci_buf_str(&b));
    ci_buf_release(&b);
    break;
  }
  default:
    break;
  }
}

static void
flush_partial(struct out *o, struct task_view *tv)
{
  if (tv->partial.len) {
    emitf(o, tv, "%s\n", ci_buf_str(&tv->partial));
    ci_buf_reset(&tv->partial);
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
  return "?";
}

static const char *
status_color(enum sched_status st)
{
  return st == SCHED_SUCCEEDED ? GREEN : st == SCHED_SKIPPED ? YELLOW : RED;
}

static void
simple_event(struct out *o, const struct sched_event *ev)
{
  struct task_view *tv = view(o, ev);
  char qbuf[512], dur[32];
  switch (ev->kind) {
  case SCHED_TASK_STARTED:
    emitf(o, tv, "%sStarted %s%s\n", o->color ? YELLOW : "", tv->scope, o->color ? RESET : "");
    break;
  case SCHED_SCOPE_STARTED:
    flush_partial(o, tv);
    fold(o, tv, ev->scope, true);
    emitf(o, tv, "%sStarted %s%s\n", o->color ? YELLOW : "",
          quoted(ev->scope, qbuf, sizeof(qbuf)), o->color ? RESET : "");
    break;
  case SCHED_OUTPUT: {
    /* Whole lines only; a partial line waits for the rest (or the scope's end). */
    const char *p = ev->text, *end = ev->text + ev->len;
    while (p < end) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl) {
        ci_buf_add(&tv->partial, p, (size_t)(end - p));
        break;
      }
      ci_buf_add(&tv->partial, p, (size_t)(nl - p));
      emitf(o, tv, "%s\n", ci_buf_str(&tv->partial));
      ci_buf_reset(&tv->partial);
      p = nl + 1;
    }
    break;
  }
  case SCHED_MESSAGE:
    if (ev->level >= CI_LOG_DEBUG && !o->verbose)
      break;
    flush_partial(o, tv);
    emitf(o, tv, "%.*s\n", (int)ev->len, ev->text);
    break;
  case SCHED_ANNOTATION:
    /* Annotations (junit, ...) become workflow commands under GitHub Actions only. */
    if (o->mode == OUT_GITHUB) {
      char *cmd = artifacts_annotation_github(ev->annotation);
      flush_partial(o, tv);
      emitf(o, tv, "%s\n", cmd);
      free(cmd);
    }
    break;
  case SCHED_SCOPE_FINISHED:
    flush_partial(o, tv);
    out_format_duration(ev->seconds, dur, sizeof(dur));
    emitf(o, tv, "%s%s %s in %s!%s\n", o->color ? status_color(ev->status) : "",
          quoted(ev->scope, qbuf, sizeof(qbuf)), status_word(ev->status), dur,
          o->color ? RESET : "");
    fold(o, tv, ev->scope, false);
    break;
  case SCHED_TASK_FINISHED:
    flush_partial(o, tv);
    out_format_duration(ev->seconds, dur, sizeof(dur));
    if (ev->status == SCHED_SKIPPED || (ev->status == SCHED_CANCELED && !tv->block.len &&
                                        ev->seconds == 0))
      emitf(o, tv, "%s%s %s%s%s%s\n", o->color ? status_color(ev->status) : "", tv->scope,
            status_word(ev->status), ev->reason ? ": " : "", ev->reason ? ev->reason : "",
            o->color ? RESET : "");
    else if (ev->status != SCHED_SUCCEEDED && ev->reason)
      emitf(o, tv, "%s%s %s in %s!%s (%s)\n", o->color ? status_color(ev->status) : "",
            tv->scope, status_word(ev->status), dur, o->color ? RESET : "", ev->reason);
    else
      emitf(o, tv, "%s%s %s in %s!%s\n", o->color ? status_color(ev->status) : "", tv->scope,
            status_word(ev->status), dur, o->color ? RESET : "");
    if (o->parallel > 1) {
      fwrite(tv->block.s ? tv->block.s : "", 1, tv->block.len, o->f);
      ci_buf_release(&tv->block);
    }
    fflush(o->f);
    break;
  }
  if (o->parallel <= 1)
    fflush(o->f);
}

/* ---- interactive ---- */

static void
step_push_line(struct step_view *sv, const char *line, size_t len)
{
  if (sv->lines.n >= FAILED_LINES) {
    free(sv->lines.v[0]);
    memmove(sv->lines.v, sv->lines.v + 1, (sv->lines.n - 1) * sizeof(char *));
    sv->lines.n--;
  }
  ci_strv_push_take(&sv->lines, xstrndup(line, len));
}

static struct step_view *
current_step(struct task_view *tv)
{
  return tv->nsteps ? &tv->steps[tv->nsteps - 1] : NULL;
}

static const char *
mark(struct out *o, enum sched_status st, bool done)
{
  static const char *const spin_utf8[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
  static const char *const spin_ascii[] = {"|", "/", "-", "\\"};
  if (!done)
    return o->utf8 ? spin_utf8[o->frame % 10] : spin_ascii[o->frame % 4];
  switch (st) {
  case SCHED_SUCCEEDED:
    return o->utf8 ? "✅" : "+";
  case SCHED_SKIPPED:
    return o->utf8 ? "⏩" : "!";
  case SCHED_TIMED_OUT:
    return o->utf8 ? "⏱️" : "-";
  default:
    return o->utf8 ? "❌" : "-";
  }
}

static double
wall(void)
{
  return (double)uv_hrtime() / 1e9;
}

static void
draw(struct out *o, bool final)
{
  struct ci_buf b = CI_BUF_INIT;
  if (o->drawn)
    ci_buf_addf(&b, "\033[%zuA\r\033[J", o->drawn);
  size_t lines = 0;
  char dur[32];
  for (size_t k = 0; k < o->norder; k++) {
    struct task_view *tv = &o->tasks[o->order[k]];
    double secs = tv->finished ? tv->secs : wall() - tv->t0;
    out_format_duration(secs, dur, sizeof(dur));
    ci_buf_addf(&b, "%s %s %s%s%s", mark(o, tv->status, tv->finished), tv->scope,
                o->color ? DIM : "", tv->finished && tv->status == SCHED_SKIPPED ? "" : dur,
                o->color ? RESET : "");
    if (tv->finished && tv->reason && tv->status != SCHED_SUCCEEDED)
      ci_buf_addf(&b, " (%s)", tv->reason);
    ci_buf_addc(&b, '\n');
    lines++;
    if (tv->finished && tv->status == SCHED_SUCCEEDED)
      continue; /* succeeded tasks collapse */
    if (tv->finished && tv->status == SCHED_SKIPPED)
      continue;
    for (size_t s = 0; s < tv->nsteps; s++) {
      struct step_view *sv = &tv->steps[s];
      double ss = sv->finished ? sv->secs : wall() - sv->t0;
      out_format_duration(ss, dur, sizeof(dur));
      char q[512];
      ci_buf_addf(&b, "   %s %s %s%s%s\n", mark(o, sv->status, sv->finished),
                  quoted(sv->scope, q, sizeof(q)), o->color ? DIM : "", dur,
                  o->color ? RESET : "");
      lines++;
      bool show = !sv->finished || sv->status == SCHED_FAILED || sv->status == SCHED_TIMED_OUT;
      if (!show)
        continue;
      size_t keep = sv->finished ? FAILED_LINES : RUNNING_LINES;
      size_t from = sv->lines.n > keep ? sv->lines.n - keep : 0;
      for (size_t l = from; l < sv->lines.n; l++) {
        ci_buf_addf(&b, "      %s\n", sv->lines.v[l]);
        lines++;
      }
    }
  }
  fwrite(b.s ? b.s : "", 1, b.len, o->f);
  fflush(o->f);
  ci_buf_release(&b);
  o->drawn = final ? 0 : lines;
}

static void
on_tick(uv_timer_t *t)
{
  struct out *o = t->data;
  o->frame++;
  draw(o, false);
}

static void
interactive_event(struct out *o, const struct sched_event *ev)
{
  struct task_view *tv = view(o, ev);
  switch (ev->kind) {
  case SCHED_TASK_STARTED:
    tv->started = true;
    tv->t0 = wall();
    break;
  case SCHED_SCOPE_STARTED: {
    tv->steps = xreallocarray(tv->steps, tv->nsteps + 1, sizeof(*tv->steps));
    struct step_view *sv = &tv->steps[tv->nsteps++];
    memset(sv, 0, sizeof(*sv));
    sv->scope = xstrdup(ev->scope);
    sv->t0 = wall();
    break;
  }
  case SCHED_ANNOTATION:
    break;
  case SCHED_OUTPUT:
  case SCHED_MESSAGE: {
    if (ev->kind == SCHED_MESSAGE && ev->level >= CI_LOG_DEBUG && !o->verbose)
      break;
    struct step_view *sv = current_step(tv);
    if (!sv)
      break;
    const char *p = ev->text, *end = ev->text + ev->len;
    while (p < end) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      const char *le = nl ? nl : end;
      if (le > p || nl)
        step_push_line(sv, p, (size_t)(le - p));
      p = nl ? nl + 1 : end;
    }
    break;
  }
  case SCHED_SCOPE_FINISHED:
    for (size_t s = tv->nsteps; s-- > 0;)
      if (!tv->steps[s].finished && !strcmp(tv->steps[s].scope, ev->scope)) {
        tv->steps[s].finished = true;
        tv->steps[s].status = ev->status;
        tv->steps[s].secs = ev->seconds;
        break;
      }
    break;
  case SCHED_TASK_FINISHED:
    tv->finished = true;
    tv->status = ev->status;
    tv->secs = ev->seconds;
    free(tv->reason);
    tv->reason = ev->reason ? xstrdup(ev->reason) : NULL;
    break;
  }
}

void
out_event(const struct sched_event *ev, void *data)
{
  struct out *o = data;
  if (o->json)
    out_json_event(o->json, ev);
  else if (o->mode == OUT_INTERACTIVE)
    interactive_event(o, ev);
  else
    simple_event(o, ev);
}

void
out_start(struct out *o, uv_loop_t *loop)
{
  if (o->mode != OUT_INTERACTIVE)
    return;
  uv_timer_init(loop, &o->timer);
  o->timer.data = o;
  uv_timer_start(&o->timer, on_tick, 100, 100);
  uv_unref((uv_handle_t *)&o->timer); /* never keeps the loop alive on its own */
  o->timer_on = true;
  fputs("\033[?7l", o->f); /* no auto-wrap while drawing */
}

void
out_stop(struct out *o)
{
  if (o->mode != OUT_INTERACTIVE)
    return;
  if (o->timer_on) {
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, NULL);
    o->timer_on = false;
  }
  draw(o, true);
  fputs("\033[?7h", o->f);
  fflush(o->f);
}

void
out_run_started(struct out *o, const char *run_id, const char *backend, const struct graph *g)
{
  o->run_t0 = (double)uv_hrtime() / 1e9;
  if (o->json)
    out_json_run_started(o->json, run_id, backend, g);
}

void
out_run_finished(struct out *o, int status, const char *failure)
{
  if (o->json)
    out_json_run_finished(o->json, status, failure, (double)uv_hrtime() / 1e9 - o->run_t0);
}

void
out_free(struct out *o)
{
  if (!o)
    return;
  out_json_free(o->json);
  for (size_t i = 0; i < o->ntasks; i++) {
    struct task_view *tv = &o->tasks[i];
    free(tv->scope);
    free(tv->reason);
    free(tv->partial_scope);
    ci_buf_release(&tv->block);
    ci_buf_release(&tv->partial);
    for (size_t s = 0; s < tv->nsteps; s++) {
      free(tv->steps[s].scope);
      ci_strv_release(&tv->steps[s].lines);
    }
    free(tv->steps);
  }
  free(o->tasks);
  free(o->order);
  free(o);
}
