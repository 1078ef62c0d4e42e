/* runner/sched.c - the scheduler: a state machine per task, driven by backend callbacks on
 * one libuv loop.
 *
 * A task goes: pull the image -> create the container (idle process) -> copy the project in
 * -> instructions in order -> kill background scripts -> remove the container.  At most one
 * backend operation per task is in flight for the main line (`op_pending`), plus any number
 * of background script execs and kill execs; a task is freed only when all of them have
 * called back and its timer handle is closed.
 *
 * Script steps run through a launcher (sched_step_argv) that writes the script to a file in
 * the container (so `set -o verbose` echoes each line as bash/sh reads it, like upstream),
 * starts it in its own session when `setsid` exists, records the process group in a pid file
 * (so a step can be killed on timeout or Ctrl-C through another exec), waits, and kills what
 * the step left running unless CIRRUS_ESCAPING_PROCESSES is set.
 */
#include "sched.h"
#include "env.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER_DIR "/tmp/cirrus-ci"
#define GRACE_SECONDS 300 /* on_timeout / always steps after a timeout (upstream: 5 min) */
#define CIRRUS_ENV_MAX (1 << 20)

/* ---- the shell side ---- */

static const char launcher[] =
    "exec 2>&1\n" /* one stream, in order, as upstream's agent gives a step one pipe */
    "d=" CONTAINER_DIR "; mkdir -p \"$d\" 2>/dev/null; f=\"$d/step-$2\"\n"
    "printf '%s\\n' \"$1\" > \"$f.sh\" || { echo \"cannot write $f.sh\" >&2; exit 125; }\n"
    ": > \"$CIRRUS_ENV\" 2>/dev/null\n"
    "if [ -n \"${CIRRUS_SHELL:-}\" ]; then s=\"$CIRRUS_SHELL\"\n"
    "elif command -v bash >/dev/null 2>&1; then s=bash; else s=/bin/sh; fi\n"
    "if [ ! -d \"$3\" ]; then mkdir -p \"$3\" || exit 125; fi\n"
    "cd \"$3\" || exit 125\n"
    "if command -v setsid >/dev/null 2>&1; then setsid \"$s\" \"$f.sh\" & else \"$s\" \"$f.sh\" & fi\n"
    "c=$!; echo \"$c\" > \"$f.pid\"\n"
    "wait \"$c\"; rc=$?\n"
    "[ -n \"${CIRRUS_ESCAPING_PROCESSES:-}\" ] || kill -KILL -\"$c\" 2>/dev/null\n"
    "rm -f \"$f.sh\" \"$f.pid\"\n"
    "exit $rc\n";

static const char killer[] =
    "p=$(cat \"$1\" 2>/dev/null) || exit 0\n"
    "kill -KILL -\"$p\" 2>/dev/null || kill -KILL \"$p\" 2>/dev/null\n"
    "exit 0\n";

static const char file_writer[] = "mkdir -p \"$(dirname \"$1\")\" && printf '%s' \"$2\" > \"$1\"\n";

char **
sched_step_argv(const struct ci_strv *lines, unsigned step_no, const char *cwd)
{
  struct ci_buf script = CI_BUF_INIT;
  ci_buf_adds(&script, "set -e\nset -o pipefail 2>/dev/null || true\nset -o verbose\n");
  for (size_t i = 0; i < lines->n; i++) {
    ci_buf_adds(&script, lines->v[i]);
    if (i + 1 < lines->n)
      ci_buf_addc(&script, '\n');
  }
  char **argv = xcalloc(7, sizeof(char *));
  argv[0] = xstrdup("/bin/sh");
  argv[1] = xstrdup("-c");
  argv[2] = xstrdup(launcher);
  argv[3] = ci_buf_take(&script);
  argv[4] = xasprintf("%u", step_no);
  argv[5] = xstrdup(cwd);
  /* sh -c CMD NAME ARG1 ARG2: $0 is NAME; shift so that $1..$3 are ours. */
  char *name = argv[3];
  argv[3] = xstrdup("cirrus-step");
  char **out = xcalloc(8, sizeof(char *));
  out[0] = argv[0];
  out[1] = argv[1];
  out[2] = argv[2];
  out[3] = argv[3];
  out[4] = name;
  out[5] = argv[4];
  out[6] = argv[5];
  free(argv);
  return out;
}

void
sched_argv_free(char **argv)
{
  if (!argv)
    return;
  for (char **p = argv; *p; p++)
    free(*p);
  free(argv);
}

int
sched_parse_cirrus_env(const char *content, size_t len, struct cfg_env *env, char **errmsg)
{
  const char *p = content, *end = content + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    size_t ll = (size_t)(le - p);
    if (ll && p[ll - 1] == '\r')
      ll--;
    if (ll) {
      const char *eq = memchr(p, '=', ll);
      if (!eq) {
        *errmsg = xasprintf("CIRRUS_ENV file should contain lines in KEY=VALUE format, got "
                            "'%.*s'",
                            (int)(ll > 80 ? 80 : ll), p);
        return -1;
      }
      char *k = xstrndup(p, (size_t)(eq - p));
      char *v = xstrndup(eq + 1, ll - (size_t)(eq - p) - 1);
      cfg_env_set(env, k, v);
      free(k);
      free(v);
    }
    p = nl ? nl + 1 : end;
  }
  return 0;
}

/* ---- state ---- */

struct sched;

/* A background script: runs until the task's last step has finished. */
struct bgstep {
  struct stask *t;
  unsigned step_no;
  char *scope; /* owned */
  bool exited;
  bool kill_sent;
};

struct stask {
  struct sched *s;
  size_t idx;
  const struct cfg_task *t;
  char *id; /* container id, owned */
  struct backend_image_info img;
  bool have_img;
  struct cfg_env extra_env; /* from $CIRRUS_ENV */
  size_t ip;                /* next instruction */
  bool failed, timed_out, canceled, in_grace;
  char *reason; /* owned: the first failure, for the summary */
  uv_timer_t timer;
  bool timer_open;
  double t0, step_t0;
  char *scope; /* owned: scope of the main line's current step */
  bool op_pending;          /* the main line waits for a backend callback */
  unsigned pending;         /* outstanding callbacks of any kind */
  unsigned step_no;
  enum sched_status step_status;
  struct bgstep **bg;
  size_t nbg;
  bool cleaning, finished;
  unsigned kills_pending; /* kill execs in flight */
  char *cirrus_env_path; /* the current step's, owned */
  char **argv;           /* the current exec's, owned */
  struct cfg_env exec_env;
  bool exec_running; /* a script step is executing (can be killed) */
};

struct sched {
  uv_loop_t *loop;
  struct backend *b;
  struct graph *g;
  const struct sched_options *o;
  struct sched_result *res;
  unsigned running;
  bool canceling, forced, stopping;
  int signo;
  uv_signal_t sig[2];
  int sig_open;
  bool *reported; /* per graph node: TASK_FINISHED emitted */
  struct stask **tasks;
  size_t ntasks, tasks_alloc;
};

static double
now_s(struct sched *s)
{
  (void)s;
  return (double)uv_hrtime() / 1e9;
}

static void
emit(struct stask *t, enum sched_event_kind kind, const char *scope, enum sched_status st,
     double secs, const char *text, size_t len, int stream, enum ci_log_level level)
{
  struct sched *s = t->s;
  if (!s->o->on_event)
    return;
  struct sched_event ev = {
      .kind = kind,
      .task = t->t,
      .task_index = t->idx,
      .scope = scope,
      .status = st,
      .seconds = secs,
      .reason = t->reason,
      .text = text,
      .len = len,
      .stream = stream,
      .level = level,
  };
  s->o->on_event(&ev, s->o->event_data);
}

static void message(struct stask *t, const char *scope, enum ci_log_level level, const char *fmt,
                    ...) CI_PRINTF(4, 5);

static void
message(struct stask *t, const char *scope, enum ci_log_level level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *m = xvasprintf(fmt, ap);
  va_end(ap);
  emit(t, SCHED_MESSAGE, scope, SCHED_SUCCEEDED, 0, m, strlen(m), 0, level);
  free(m);
}

static void set_reason(struct stask *t, const char *fmt, ...) CI_PRINTF(2, 3);

static void
set_reason(struct stask *t, const char *fmt, ...)
{
  if (t->reason)
    return;
  va_list ap;
  va_start(ap, fmt);
  t->reason = xvasprintf(fmt, ap);
  va_end(ap);
}

static void schedule(struct sched *s);
static void task_next(struct stask *t);
static void task_cleanup(struct stask *t);
static void task_maybe_free(struct stask *t);

/* ---- the step environment ---- */

static void
task_env(struct stask *t, struct cfg_env *out)
{
  struct sched *s = t->s;
  struct cfg_env env = CFG_ENV_INIT;
  cfg_env_set(&env, "CIRRUS_WORKING_DIR",
              s->o->working_dir ? s->o->working_dir : CONTAINER_DIR "/working-dir");
  cfg_env_merge(&env, s->o->base_env);
  char buf[32];
  snprintf(buf, sizeof(buf), "%u", t->t->id);
  cfg_env_set(&env, "CI_NODE_INDEX", buf);
  cfg_env_set(&env, "CIRRUS_TASK_ID", buf);
  snprintf(buf, sizeof(buf), "%zu", s->g->selected);
  cfg_env_set(&env, "CI_NODE_TOTAL", buf);
  cfg_env_set(&env, "CIRRUS_TASK_NAME", t->t->name);
  cfg_env_merge(&env, &t->t->env);
  cfg_env_merge(&env, s->o->user_env);
  /* What upstream's agent adds (getScriptEnvironment). */
  if (!cfg_env_get(&env, "OS") && !(t->have_img && cfg_env_get(&t->img.env, "OS")))
    cfg_env_set(&env, "OS", "linux");
  cfg_env_set(&env, "CIRRUS_OS", "linux");
  cfg_env_set(&env, "CIRRUS_ARCH", t->t->container.arch ? t->t->container.arch : "amd64");
  cfg_env_merge(&env, &t->extra_env);
  if (t->cirrus_env_path)
    cfg_env_set(&env, "CIRRUS_ENV", t->cirrus_env_path);
  run_env_expand_recursively(&env, t->have_img ? &t->img.env : NULL);
  cfg_env_release(out);
  *out = env;
}

/* ---- completion ---- */

static enum graph_outcome
task_outcome(struct stask *t)
{
  if (t->canceled)
    return GRAPH_CANCELED;
  if (t->timed_out)
    return GRAPH_TIMED_OUT;
  if (t->failed)
    return t->t->allow_failures ? GRAPH_ALLOWED_FAILURE : GRAPH_FAILED;
  return GRAPH_OK;
}

static enum sched_status
status_of(enum graph_outcome o)
{
  switch (o) {
  case GRAPH_OK:
    return SCHED_SUCCEEDED;
  case GRAPH_FAILED:
  case GRAPH_ALLOWED_FAILURE:
    return SCHED_FAILED;
  case GRAPH_TIMED_OUT:
    return SCHED_TIMED_OUT;
  case GRAPH_SKIPPED:
  case GRAPH_DEP_FAILED:
    return SCHED_SKIPPED;
  case GRAPH_CANCELED:
    return SCHED_CANCELED;
  }
  return SCHED_FAILED;
}

static void
note_failure(struct sched *s, const struct cfg_task *t, enum graph_outcome o)
{
  if (!graph_outcome_fails(o) || s->res->first_failure)
    return;
  const char *what = o == GRAPH_TIMED_OUT    ? "timed out"
                     : o == GRAPH_CANCELED   ? "was canceled"
                     : o == GRAPH_DEP_FAILED ? "did not run"
                                             : "failed";
  s->res->first_failure = xasprintf("task %s (%u) %s", t->name, t->id, what);
}

/* Tasks the graph finished on its own: skipped (skip:, no container, failed dependency) or
 * canceled before they started. */
static void
report_finished_nodes(struct sched *s)
{
  for (size_t i = 0; i < s->g->n; i++) {
    struct graph_node *nd = &s->g->nodes[i];
    if (nd->state != GRAPH_DONE || s->reported[i])
      continue;
    s->reported[i] = true;
    if (s->o->on_event) {
      struct sched_event ev = {
          .kind = SCHED_TASK_FINISHED,
          .task = nd->task,
          .task_index = i,
          .status = status_of(nd->outcome),
          .reason = nd->reason,
      };
      s->o->on_event(&ev, s->o->event_data);
    }
    note_failure(s, nd->task, nd->outcome);
  }
}

static void
task_done(struct stask *t)
{
  struct sched *s = t->s;
  if (t->finished)
    return;
  t->finished = true;
  enum graph_outcome o = task_outcome(t);
  s->reported[t->idx] = true;
  graph_finish(s->g, t->idx, o);
  s->running--;
  if (!s->g->nodes[t->idx].reason && t->reason)
    s->g->nodes[t->idx].reason = xstrdup(t->reason);
  emit(t, SCHED_TASK_FINISHED, NULL, status_of(o), now_s(s) - t->t0, NULL, 0, 0, CI_LOG_INFO);
  note_failure(s, t->t, o);
  report_finished_nodes(s);
  if (t->timer_open)
    uv_timer_stop(&t->timer);
  task_maybe_free(t);
  schedule(s);
}

static void
on_timer_closed(uv_handle_t *h)
{
  struct stask *t = h->data;
  t->timer_open = false;
  task_maybe_free(t);
}

static void
task_maybe_free(struct stask *t)
{
  if (!t->finished || t->pending)
    return;
  if (t->timer_open) {
    if (!uv_is_closing((uv_handle_t *)&t->timer))
      uv_close((uv_handle_t *)&t->timer, on_timer_closed);
    return;
  }
  struct sched *s = t->s;
  for (size_t i = 0; i < s->ntasks; i++)
    if (s->tasks[i] == t) {
      s->tasks[i] = s->tasks[--s->ntasks];
      break;
    }
  free(t->id);
  if (t->have_img)
    backend_image_info_release(&t->img);
  cfg_env_release(&t->extra_env);
  cfg_env_release(&t->exec_env);
  free(t->reason);
  free(t->scope);
  for (size_t i = 0; i < t->nbg; i++) {
    free(t->bg[i]->scope);
    free(t->bg[i]);
  }
  free(t->bg);
  free(t->cirrus_env_path);
  sched_argv_free(t->argv);
  free(t);
  schedule(s);
}

/* ---- cleanup ---- */

static void
on_removed(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err)
    message(t, NULL, CI_LOG_WARN, "failed to remove container %.12s: %s", t->id, err->msg);
  task_done(t);
}

static void
on_killed(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct stask *t = data;
  (void)ex;
  (void)err;
  t->pending--;
  t->kills_pending--;
  if (t->finished) {
    task_maybe_free(t);
    return;
  }
  if (t->cleaning && !t->op_pending)
    task_cleanup(t);
}

/* Kill step step_no (its process group) through another exec. */
static void
kill_step(struct stask *t, unsigned step_no)
{
  if (!t->id)
    return;
  char *pidfile = xasprintf(CONTAINER_DIR "/step-%u.pid", step_no);
  const char *argv[] = {"/bin/sh", "-c", killer, "cirrus-kill", pidfile, NULL};
  struct backend_exec_spec spec = {.argv = argv};
  if (t->s->b->ops->exec(t->s->b, t->id, &spec, NULL, on_killed, t) == 0) {
    t->pending++;
    t->kills_pending++;
  }
  free(pidfile);
}

/* After the last step: kill background scripts, then remove the container. */
static void
task_cleanup(struct stask *t)
{
  struct sched *s = t->s;
  t->cleaning = true;
  if (t->op_pending || t->finished)
    return; /* resumes when the pending operation calls back */
  if (!t->id) {
    task_done(t);
    return;
  }
  if (s->o->debug_no_cleanup) {
    message(t, NULL, CI_LOG_WARN,
            "not cleaning up container %s, don't forget to remove it with \"%s rm -f %s\"",
            t->id, s->b->ops->name, t->id);
    task_done(t);
    return;
  }
  /* Background scripts are killed first (their output ends with them); the container is
   * removed once the kill commands have run, whatever the scripts do. */
  for (size_t i = 0; i < t->nbg && !s->forced; i++) {
    struct bgstep *bg = t->bg[i];
    if (!bg->exited && !bg->kill_sent) {
      bg->kill_sent = true;
      kill_step(t, bg->step_no);
    }
  }
  if (t->kills_pending && !s->forced)
    return; /* on_killed resumes */
  t->op_pending = true;
  if (s->b->ops->container_remove(s->b, t->id, on_removed, t) == 0) {
    t->pending++;
  } else {
    t->op_pending = false;
    message(t, NULL, CI_LOG_WARN, "failed to remove container %.12s", t->id);
    task_done(t);
  }
}

/* ---- steps ---- */

static bool
should_run(struct stask *t, const struct cfg_instr *in)
{
  if (t->canceled)
    return false;
  switch (in->when) {
  case CFG_WHEN_ON_SUCCESS:
    return !t->failed && !t->timed_out;
  case CFG_WHEN_ON_FAILURE:
    return t->failed || t->timed_out;
  case CFG_WHEN_ALWAYS:
    return true;
  case CFG_WHEN_ON_TIMEOUT:
    return t->timed_out;
  }
  return false;
}

static char *
scope_name(const struct cfg_instr *in)
{
  switch (in->kind) {
  case CFG_INSTR_SCRIPT:
    return xasprintf("'%s' script", in->name);
  case CFG_INSTR_BACKGROUND_SCRIPT:
    return xasprintf("'%s' background script", in->name);
  case CFG_INSTR_CACHE:
    return xasprintf("'%s' cache", in->name);
  case CFG_INSTR_ARTIFACTS:
    return xasprintf("'%s' artifacts", in->name);
  default:
    return xasprintf("'%s'", in->name);
  }
}

static void
step_begin(struct stask *t, const struct cfg_instr *in)
{
  free(t->scope);
  t->scope = scope_name(in);
  t->step_t0 = now_s(t->s);
  t->step_no++;
  t->step_status = SCHED_SUCCEEDED;
  emit(t, SCHED_SCOPE_STARTED, t->scope, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
}

static void
step_end(struct stask *t, enum sched_status st)
{
  if (st == SCHED_FAILED)
    t->failed = true;
  emit(t, SCHED_SCOPE_FINISHED, t->scope, st, now_s(t->s) - t->step_t0, NULL, 0, 0,
       CI_LOG_INFO);
  free(t->scope);
  t->scope = NULL;
  task_next(t);
}

static void
on_output(void *data, int stream, const char *buf, size_t len)
{
  struct stask *t = data;
  emit(t, SCHED_OUTPUT, t->scope, SCHED_SUCCEEDED, 0, buf, len, stream, CI_LOG_INFO);
}

static void
on_env_read(void *data, const char *content, size_t len, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    message(t, t->scope, CI_LOG_WARN, "cannot read $CIRRUS_ENV: %s", err->msg);
  } else if (content) {
    char *msg = NULL;
    if (sched_parse_cirrus_env(content, len, &t->extra_env, &msg) < 0) {
      message(t, t->scope, CI_LOG_ERROR, "%s", msg);
      free(msg);
      t->step_status = SCHED_FAILED;
    }
  }
  step_end(t, t->step_status);
}

static void
on_step_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  t->exec_running = false;
  struct sched *s = t->s;
  if (err) {
    message(t, t->scope, CI_LOG_ERROR, "%s", err->msg);
    t->step_status = SCHED_FAILED;
    set_reason(t, "%s: %s", t->scope, err->msg);
  } else if (ex->exit_code != 0 || ex->signal) {
    t->step_status = SCHED_FAILED;
    char *m = ex->signal ? xasprintf("\nSignaled to exit (signal %d)!", ex->signal)
              : ex->exit_code > 1 ? xasprintf("\nExit status: %d", ex->exit_code)
                                  : NULL;
    if (m) {
      emit(t, SCHED_OUTPUT, t->scope, SCHED_SUCCEEDED, 0, m, strlen(m), 1, CI_LOG_INFO);
      free(m);
    }
    set_reason(t, "%s failed with exit status %d", t->scope, ex->exit_code);
  }
  if (t->finished)
    return;
  /* No $CIRRUS_ENV to read when the step could not run (engine gone, container removed). */
  if (err || t->canceled || s->forced || !t->id) {
    step_end(t, t->step_status);
    return;
  }
  t->op_pending = true;
  if (s->b->ops->read_file(s->b, t->id, t->cirrus_env_path, CIRRUS_ENV_MAX, on_env_read, t) == 0) {
    t->pending++;
  } else {
    t->op_pending = false;
    step_end(t, t->step_status);
  }
}

static void
on_bg_output(void *data, int stream, const char *buf, size_t len)
{
  struct bgstep *bg = data;
  emit(bg->t, SCHED_OUTPUT, bg->scope, SCHED_SUCCEEDED, 0, buf, len, stream, CI_LOG_INFO);
}

static void
on_bg_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct bgstep *bg = data;
  struct stask *t = bg->t;
  bg->exited = true;
  t->pending--;
  if (err && !bg->kill_sent)
    message(t, bg->scope, CI_LOG_WARN, "%s", err->msg);
  else if (!bg->kill_sent && ex && (ex->exit_code || ex->signal))
    message(t, bg->scope, CI_LOG_INFO, "background script exited with status %d",
            ex->exit_code);
  if (t->finished)
    task_maybe_free(t);
}

static char *
new_cirrus_env_path(struct stask *t)
{
  char uuid[37];
  run_uuid(uuid);
  return xasprintf("/tmp/cirrus-env-task-%u-%s", t->t->id, uuid);
}

static int
start_script(struct stask *t, const struct cfg_instr *in, bool background)
{
  struct sched *s = t->s;
  free(t->cirrus_env_path);
  t->cirrus_env_path = new_cirrus_env_path(t);
  task_env(t, &t->exec_env);
  const char *wd = cfg_env_get(&t->exec_env, "CIRRUS_WORKING_DIR");
  sched_argv_free(t->argv);
  t->argv = sched_step_argv(&in->script, t->step_no, wd ? wd : CONTAINER_DIR "/working-dir");
  struct backend_exec_spec spec = {.argv = (const char *const *)t->argv, .env = &t->exec_env};
  if (!background) {
    int r = s->b->ops->exec(s->b, t->id, &spec, on_output, on_step_exit, t);
    if (r == 0) {
      t->pending++;
      t->op_pending = true;
      t->exec_running = true;
    }
    return r;
  }
  struct bgstep *bg = xcalloc(1, sizeof(*bg));
  bg->t = t;
  bg->step_no = t->step_no;
  bg->scope = xstrdup(t->scope);
  int r = s->b->ops->exec(s->b, t->id, &spec, on_bg_output, on_bg_exit, bg);
  if (r < 0) {
    free(bg->scope);
    free(bg);
    return r;
  }
  t->pending++;
  t->bg = xreallocarray(t->bg, t->nbg + 1, sizeof(*t->bg));
  t->bg[t->nbg++] = bg;
  return 0;
}

static void
on_file_written(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  const char *path = t->argv && t->argv[4] ? t->argv[4] : "?";
  if (err || ex->exit_code != 0) {
    message(t, t->scope, CI_LOG_ERROR, "Failed to write file %s: %s!", path,
            err ? err->msg : "exit status non-zero");
    set_reason(t, "%s: failed to write %s", t->scope, path);
    step_end(t, SCHED_FAILED);
    return;
  }
  message(t, t->scope, CI_LOG_INFO, "Created file %s!", path);
  step_end(t, SCHED_SUCCEEDED);
}

static int
start_file(struct stask *t, const struct cfg_instr *in)
{
  struct sched *s = t->s;
  task_env(t, &t->exec_env);
  const char *content = in->from_contents;
  if (in->variable_name) {
    content = cfg_env_get(&t->exec_env, in->variable_name);
    if (!content) {
      message(t, t->scope, CI_LOG_INFO,
              "Environment variable %s is not set! Skipping file creation...", in->variable_name);
      return 1;
    }
    if (ci_str_has_prefix(content, "ENCRYPTED")) {
      message(t, t->scope, CI_LOG_INFO,
              "Environment variable %s wasn't decrypted! Skipping file creation...",
              in->variable_name);
      return 1;
    }
  }
  char *path = run_env_expand_with(in->path, &t->exec_env, t->have_img ? &t->img.env : NULL);
  if (path[0] != '/') {
    const char *wd = cfg_env_get(&t->exec_env, "CIRRUS_WORKING_DIR");
    char *abs = xasprintf("%s/%s", wd ? wd : CONTAINER_DIR "/working-dir", path);
    free(path);
    path = abs;
  }
  sched_argv_free(t->argv);
  t->argv = xcalloc(7, sizeof(char *));
  t->argv[0] = xstrdup("/bin/sh");
  t->argv[1] = xstrdup("-c");
  t->argv[2] = xstrdup(file_writer);
  t->argv[3] = xstrdup("cirrus-file");
  t->argv[4] = path;
  t->argv[5] = xstrdup(content ? content : "");
  struct backend_exec_spec spec = {.argv = (const char *const *)t->argv, .env = &t->exec_env};
  int r = s->b->ops->exec(s->b, t->id, &spec, on_output, on_file_written, t);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
  }
  return r;
}

/* Run the next instruction, or clean up after the last. */
static void
task_next(struct stask *t)
{
  while (!t->finished) {
    if (t->s->forced || t->ip >= t->t->ninstrs) {
      task_cleanup(t);
      return;
    }
    const struct cfg_instr *in = &t->t->instrs[t->ip++];
    if (!should_run(t, in)) {
      if (t->canceled)
        continue; /* nothing more is reported once the run is interrupted */
      char *scope = scope_name(in);
      emit(t, SCHED_SCOPE_STARTED, scope, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
      emit(t, SCHED_SCOPE_FINISHED, scope, SCHED_SKIPPED, 0, NULL, 0, 0, CI_LOG_INFO);
      free(scope);
      continue;
    }
    step_begin(t, in);
    int r = 0;
    switch (in->kind) {
    case CFG_INSTR_SCRIPT:
      r = start_script(t, in, false);
      if (r == 0)
        return;
      break;
    case CFG_INSTR_BACKGROUND_SCRIPT:
      r = start_script(t, in, true);
      if (r == 0) {
        /* Marked successful at once; its output keeps coming under its scope. */
        step_end(t, SCHED_SUCCEEDED);
        return;
      }
      break;
    case CFG_INSTR_FILE:
      r = start_file(t, in);
      if (r == 0)
        return;
      if (r > 0) {
        step_end(t, SCHED_SUCCEEDED);
        return;
      }
      break;
    case CFG_INSTR_CACHE:
    case CFG_INSTR_ARTIFACTS:
    case CFG_INSTR_UPLOAD_CACHE:
      message(t, t->scope, CI_LOG_WARN, "%s instructions are not supported yet; skipped",
              cfg_instr_kind_name(in->kind));
      emit(t, SCHED_SCOPE_FINISHED, t->scope, SCHED_SKIPPED, 0, NULL, 0, 0, CI_LOG_INFO);
      free(t->scope);
      t->scope = NULL;
      continue;
    }
    /* The backend refused to start the operation. */
    message(t, t->scope, CI_LOG_ERROR, "cannot start %s", t->scope);
    set_reason(t, "cannot start %s", t->scope);
    step_end(t, SCHED_FAILED);
    return;
  }
}

/* ---- preparing the container ---- */

static void
on_copied(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    message(t, "Preparing execution environment...", CI_LOG_ERROR,
            "cannot copy the project into the container: %s", err->msg);
    set_reason(t, "cannot copy the project into the container: %s", err->msg);
    t->failed = true;
    emit(t, SCHED_SCOPE_FINISHED, "Preparing execution environment...", SCHED_FAILED,
         now_s(t->s) - t->step_t0, NULL, 0, 0, CI_LOG_INFO);
    task_cleanup(t);
    return;
  }
  emit(t, SCHED_SCOPE_FINISHED, "Preparing execution environment...", SCHED_SUCCEEDED,
       now_s(t->s) - t->step_t0, NULL, 0, 0, CI_LOG_INFO);
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  task_next(t);
}

static void
on_created(void *data, const char *id, const struct ci_error *err)
{
  struct stask *t = data;
  struct sched *s = t->s;
  t->pending--;
  t->op_pending = false;
  const char *scope = "Preparing execution environment...";
  if (err) {
    message(t, scope, CI_LOG_ERROR, "cannot create the container: %s", err->msg);
    set_reason(t, "cannot create the container: %s", err->msg);
    t->failed = true;
    emit(t, SCHED_SCOPE_FINISHED, scope, SCHED_FAILED, now_s(s) - t->step_t0, NULL, 0, 0,
         CI_LOG_INFO);
    task_done(t);
    return;
  }
  t->id = xstrdup(id);
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  const char *tar = NULL;
  if (!s->o->dirty) {
    struct cfg_env env = CFG_ENV_INIT;
    task_env(t, &env);
    const char *wd = cfg_env_get(&env, "CIRRUS_WORKING_DIR");
    for (size_t i = 0; wd && i < s->o->ntars && !tar; i++)
      if (!strcmp(s->o->tars[i].workdir, wd))
        tar = s->o->tars[i].path;
    if (!tar && s->o->ntars) {
      struct ci_error e = {.code = CI_EFAIL, .msg = NULL};
      e.msg = xasprintf("no copy of the project was prepared for working directory '%s'",
                        wd ? wd : "");
      cfg_env_release(&env);
      t->pending++;
      on_copied(t, &e);
      free(e.msg);
      return;
    }
    cfg_env_release(&env);
  }
  if (!tar) {
    t->pending++; /* on_copied consumes one */
    on_copied(t, NULL);
    return;
  }
  message(t, scope, CI_LOG_DEBUG, "Copying the project into the container...");
  t->op_pending = true;
  if (s->b->ops->copy_in(s->b, t->id, tar, on_copied, t) == 0) {
    t->pending++;
  } else {
    t->op_pending = false;
    struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused the copy"};
    t->pending++;
    on_copied(t, &e);
  }
}

static void
start_create(struct stask *t)
{
  struct sched *s = t->s;
  const char *scope = "Preparing execution environment...";
  t->step_t0 = now_s(s);
  emit(t, SCHED_SCOPE_STARTED, scope, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
  /* The working directory: bind-mounted with --dirty. */
  struct cfg_env env = CFG_ENV_INIT;
  task_env(t, &env);
  const char *wd = cfg_env_get(&env, "CIRRUS_WORKING_DIR");
  struct backend_mount mount = {s->o->project_dir, wd ? wd : CONTAINER_DIR "/working-dir", false};
  char name[96];
  snprintf(name, sizeof(name), "cirrus-%s-%u", s->o->run_id, t->t->id);
  double cpu = t->t->container.cpu;
  unsigned mem = t->t->container.memory_mb;
  if (s->b->host_cpus && cpu > s->b->host_cpus)
    cpu = s->b->host_cpus;
  if (s->b->host_mem_mb && mem > s->b->host_mem_mb)
    mem = (unsigned)s->b->host_mem_mb;
  struct backend_container_spec spec = {
      .image = t->t->container.image,
      .name = name,
      .run_id = s->o->run_id,
      .task_name = t->t->name,
      .cpu = cpu,
      .memory_mb = mem,
      .mounts = s->o->dirty ? &mount : NULL,
      .nmounts = s->o->dirty ? 1 : 0,
  };
  t->op_pending = true;
  int r = s->b->ops->container_create(s->b, &spec, on_created, t);
  cfg_env_release(&env);
  if (r == 0) {
    t->pending++;
  } else {
    t->op_pending = false;
    struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused to create it"};
    t->pending++;
    on_created(t, NULL, &e);
  }
}

static void
on_progress(void *data, const char *line)
{
  struct stask *t = data;
  message(t, "image pull", CI_LOG_INFO, "%s", line);
}

static void
on_image(void *data, const struct backend_image_info *info, const struct ci_error *err)
{
  struct stask *t = data;
  struct sched *s = t->s;
  t->pending--;
  t->op_pending = false;
  if (err) {
    message(t, "image pull", CI_LOG_ERROR, "Failed to pull %s: %s", t->t->container.image,
            err->msg);
    set_reason(t, "image %s: %s", t->t->container.image, err->msg);
    t->failed = true;
    emit(t, SCHED_SCOPE_FINISHED, "image pull", SCHED_FAILED, now_s(s) - t->step_t0, NULL, 0, 0,
         CI_LOG_INFO);
    task_done(t);
    return;
  }
  emit(t, SCHED_SCOPE_FINISHED, "image pull", SCHED_SUCCEEDED, now_s(s) - t->step_t0, NULL, 0,
       0, CI_LOG_INFO);
  cfg_env_copy(&t->img.env, &info->env);
  t->img.user = xstrdup(info->user ? info->user : "");
  t->img.workdir = xstrdup(info->workdir ? info->workdir : "");
  t->img.id = xstrdup(info->id ? info->id : "");
  t->have_img = true;
  if (t->canceled) {
    task_done(t);
    return;
  }
  start_create(t);
}

static void
on_timeout(uv_timer_t *timer)
{
  struct stask *t = timer->data;
  if (t->finished)
    return;
  if (!t->in_grace) {
    t->timed_out = true;
    t->in_grace = true;
    message(t, t->scope, CI_LOG_ERROR, "Timed out!");
    set_reason(t, "timed out after %u seconds", t->t->timeout_seconds);
    if (t->exec_running)
      kill_step(t, t->step_no);
    uv_timer_start(&t->timer, on_timeout, (uint64_t)GRACE_SECONDS * 1000, 0);
    return;
  }
  /* The grace period for on_timeout/always steps is over too. */
  t->canceled = true;
  if (t->exec_running)
    kill_step(t, t->step_no);
}

static void
task_start(struct sched *s, size_t idx)
{
  struct stask *t = xcalloc(1, sizeof(*t));
  t->s = s;
  t->idx = idx;
  t->t = s->g->nodes[idx].task;
  t->t0 = now_s(s);
  graph_start(s->g, idx);
  s->running++;
  CI_GROW(s->tasks, s->tasks_alloc, s->ntasks + 1);
  s->tasks[s->ntasks++] = t;
  emit(t, SCHED_TASK_STARTED, NULL, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);

  uv_timer_init(s->loop, &t->timer);
  t->timer.data = t;
  t->timer_open = true;
  if (t->t->timeout_seconds)
    uv_timer_start(&t->timer, on_timeout, (uint64_t)t->t->timeout_seconds * 1000, 0);

  t->step_t0 = now_s(s);
  emit(t, SCHED_SCOPE_STARTED, "image pull", SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
  t->op_pending = true;
  if (s->b->ops->image_prepare(s->b, t->t->container.image, s->o->pull, on_progress, on_image,
                               t) == 0) {
    t->pending++;
  } else {
    t->op_pending = false;
    struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused to pull it"};
    t->pending++;
    on_image(t, NULL, &e);
  }
}

/* Tasks that finish without a container. */
static bool
finish_without_container(struct sched *s, size_t idx)
{
  struct graph_node *nd = &s->g->nodes[idx];
  const struct cfg_task *t = nd->task;
  const char *reason = NULL;
  char *buf = NULL;
  if (t->skip)
    reason = "skip: is true";
  else if (t->instance == CFG_INSTANCE_NONE)
    reason = "it has no container";
  else if (t->instance == CFG_INSTANCE_UNSUPPORTED)
    reason = buf = xasprintf("%s tasks cannot run here", t->instance_key);
  else if (t->instance == CFG_INSTANCE_PIPE)
    reason = "pipes are not supported yet";
  else if (t->instance == CFG_INSTANCE_PREBUILT)
    reason = "building images from a Dockerfile is not supported yet";
  if (!reason)
    return false;
  graph_start(s->g, idx);
  free(nd->reason);
  nd->reason = xstrdup(reason);
  free(buf);
  graph_finish(s->g, idx, GRAPH_SKIPPED);
  report_finished_nodes(s);
  return true;
}

static void
on_signal_closed(uv_handle_t *h)
{
  struct sched *s = h->data;
  s->sig_open--;
}

static void
schedule(struct sched *s)
{
  if (s->stopping)
    return;
  while (!s->canceling && s->running < s->o->parallel) {
    long i = graph_next_ready(s->g);
    if (i < 0)
      break;
    if (finish_without_container(s, (size_t)i))
      continue;
    task_start(s, (size_t)i);
  }
  if (s->running == 0 && s->ntasks == 0 && (graph_all_done(s->g) || s->canceling)) {
    if (s->canceling) {
      graph_cancel_pending(s->g, "the run was interrupted");
      report_finished_nodes(s);
    }
    s->stopping = true;
    for (int k = 0; k < 2; k++)
      if (!uv_is_closing((uv_handle_t *)&s->sig[k]))
        uv_close((uv_handle_t *)&s->sig[k], on_signal_closed);
    /* The backend may keep handles (idle connections): stop the loop; the caller closes
     * the backend and runs the loop again. */
    uv_stop(s->loop);
  }
}

static void
on_removed_forced(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  (void)err;
  t->pending--;
  task_maybe_free(t);
}

static void
on_signal(uv_signal_t *h, int signo)
{
  struct sched *s = h->data;
  if (!s->canceling) {
    s->canceling = true;
    s->signo = signo;
    graph_cancel_pending(s->g, "the run was interrupted");
    report_finished_nodes(s);
    for (size_t i = 0; i < s->ntasks; i++) {
      struct stask *t = s->tasks[i];
      if (t->finished)
        continue;
      t->canceled = true;
      set_reason(t, "interrupted");
      if (t->exec_running)
        kill_step(t, t->step_no);
    }
    schedule(s);
    return;
  }
  /* A second signal: remove every container now; callbacks then finish the tasks. */
  s->forced = true;
  for (size_t i = 0; i < s->ntasks; i++) {
    struct stask *t = s->tasks[i];
    if (t->finished || !t->id)
      continue;
    if (s->b->ops->container_remove(s->b, t->id, on_removed_forced, t) == 0)
      t->pending++;
  }
}

int
sched_run(uv_loop_t *loop, struct backend *b, struct graph *g, const struct sched_options *opts,
          struct sched_result *result, struct ci_error **err)
{
  memset(result, 0, sizeof(*result));
  if (opts->parallel < 1)
    return ci_error_make(err, CI_EUSAGE, "parallelism must be at least 1");
  struct sched s = {
      .loop = loop,
      .b = b,
      .g = g,
      .o = opts,
      .res = result,
  };
  s.reported = xcalloc(g->n ? g->n : 1, sizeof(bool));
  for (size_t i = 0; i < g->n; i++)
    if (g->nodes[i].state == GRAPH_EXCLUDED)
      s.reported[i] = true;
  int sigs[2] = {SIGINT, SIGTERM};
  for (int k = 0; k < 2; k++) {
    uv_signal_init(loop, &s.sig[k]);
    s.sig[k].data = &s;
    uv_signal_start(&s.sig[k], on_signal, sigs[k]);
    s.sig_open++;
  }
  schedule(&s);
  if (!s.stopping)
    uv_run(loop, UV_RUN_DEFAULT);
  while (s.sig_open)
    uv_run(loop, UV_RUN_NOWAIT); /* the signal handles' close callbacks point at s */
  free(s.reported);
  free(s.tasks);
  if (s.canceling)
    result->status = s.signo == SIGTERM ? 143 : 130;
  else
    result->status = result->first_failure ? 1 : 0;
  return 0;
}

void
sched_result_release(struct sched_result *r)
{
  free(r->first_failure);
  r->first_failure = NULL;
}
