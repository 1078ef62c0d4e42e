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
#include "bundle.h"
#include "env.h"
#include "sched_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONTAINER_DIR "/tmp/cirrus-ci"
#define GRACE_SECONDS 300 /* on_timeout / always steps after a timeout (upstream: 5 min) */
#define CIRRUS_ENV_MAX (1 << 20)
#define LISTING_MAX ((size_t)64 << 20) /* output of the working-directory listing */
#define PORT_WAIT_SECONDS 60           /* additional containers' ports (upstream: 60 s) */
#define ARTIFACTS_PER_FILE_MAX 64      /* more files: copy the whole working dir out once */
#define PREPARE_SCOPE "Preparing execution environment..."

/* ---- the shell side ---- */

static const char launcher[] =
    "exec 2>&1\n" /* one stream, in order, as upstream's agent gives a step one pipe */
    "d=" CONTAINER_DIR "; [ -d \"$d\" ] || mkdir -p \"$d\" 2>/dev/null; f=\"$d/step-$2\"\n"
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

/* Every path below the working directory $1: directories, an empty name, the rest; each name
 * NUL-terminated (sched__parse_listing).  A missing working directory lists nothing. */
static const char lister[] = "cd \"$1\" 2>/dev/null || exit 0\n"
                             "find . -mindepth 1 -type d -print0; printf '\\000'\n"
                             "find . -mindepth 1 ! -type d -print0\n";

/* Wait until every port ($3...: 4 upper-case hex digits) is listening in the container's
 * network namespace, which additional containers share: read /proc/net/tcp{,6} (needs
 * nothing but sh).  $1: the pid file (so the wait can be killed), $2: seconds.  Prints the
 * ports that never opened and exits 1 then. */
static const char port_waiter[] =
    "mkdir -p \"${1%/*}\" 2>/dev/null; echo $$ > \"$1\"; end=$(( $(date +%s) + $2 )); shift 2\n"
    "while :; do\n"
    "  missing=\n"
    "  for p in \"$@\"; do\n"
    "    found=\n"
    "    for f in /proc/net/tcp /proc/net/tcp6; do\n"
    "      [ -r \"$f\" ] || continue\n"
    "      while read -r _ l _ st _; do\n"
    "        case \"$l:$st\" in *:$p:0A) found=1; break;; esac\n"
    "      done < \"$f\"\n"
    "      [ -n \"$found\" ] && break\n"
    "    done\n"
    "    [ -n \"$found\" ] || missing=\"$missing $p\"\n"
    "  done\n"
    "  [ -z \"$missing\" ] && exit 0\n"
    "  if [ \"$(date +%s)\" -ge \"$end\" ]; then echo \"$missing\"; exit 1; fi\n"
    "  sleep 0.2 2>/dev/null || sleep 1\n"
    "done\n";

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

/* What a cache step learnt, for its upload step. */
struct tcache {
  char *name; /* owned */
  char *key;  /* owned; NULL until the key is known */
  struct cache_plan plan;
  bool available;             /* a blob was restored (exact or optimistic) */
  bool skip_upload;           /* available && !reupload_on_changes */
  struct cache_digest digest; /* of the restored blob */
};

struct stask;
typedef void (*task_cont)(struct stask *t, const struct ci_error *err);
typedef void (*exec_cont)(struct stask *t, int exit_code, const struct ci_error *err);

/* A blocking job on libuv's thread pool (cache restore/save, artifact storing). */
struct twork {
  uv_work_t req;
  struct stask *t;
  void (*run)(struct twork *w);
  void (*after)(struct stask *t, struct twork *w);
  struct sched__restore restore;
  struct sched__save save;
  struct sched__artifacts art;
  struct bundle_spec bundle; /* strings owned by the job (bundle_own) */
  struct cfg_env bundle_env, bundle_image_env;
  struct ci_error *bundle_err;
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
  bool exported;          /* --export-bundle: done or given up */
  unsigned kills_pending; /* kill execs in flight */
  char *cirrus_env_path; /* the current step's, owned */
  char **argv;           /* the current exec's, owned */
  struct cfg_env exec_env;
  bool exec_running; /* a script step is executing (can be killed) */

  /* The current container. */
  const char *image; /* borrowed from the task */
  bool no_pull;      /* an image built from a Dockerfile: never pulled */
  int pipe_cur;      /* pipes: the step whose container runs, -1 before the first */
  char *volume;      /* owned: the pipe's working-directory volume, once created */
  bool copied;       /* the project is in the working directory */
  /* Additional containers, started after the task's container, removed before it. */
  char **svc_ids; /* owned */
  size_t nsvc, svc_next;

  /* Internal execs (listing, port wait) and auxiliary scripts (fingerprint, populate). */
  exec_cont on_exec_done;
  struct ci_buf capture; /* stdout of an internal exec */
  bool capture_cut;
  struct cache_fingerprint *fp; /* the fingerprint script's output feeds it */
  /* The working-directory listing (artifacts, cache globs); paths point into listing_buf. */
  char *listing_buf;
  struct artifacts_path *listing;
  size_t nlisting;
  /* Copying container paths out to tars. */
  struct ci_strv out_paths, out_tars, out_done, out_roots;
  size_t out_next;
  task_cont on_copied_out;
  /* Caches and artifacts. */
  struct tcache *caches;
  size_t ncaches;
  size_t cur_cache;
  const struct cfg_instr *cur_in;
  struct ci_strv patterns;
  struct ci_strv art_files;
  char *tmp_tar; /* owned: a restored cache's tar */
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
  char *tmpdir; /* owned: tars moving in and out of containers */
  unsigned tmp_seq;
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
static void step_end(struct stask *t, enum sched_status st);
static void pipe_switch(struct stask *t, int step);
static void on_progress(void *data, const char *line);
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
  free(t->volume);
  for (size_t i = 0; i < t->nsvc; i++)
    free(t->svc_ids[i]);
  free(t->svc_ids);
  ci_buf_release(&t->capture);
  if (t->fp)
    cache_fingerprint_free(t->fp);
  free(t->listing_buf);
  free(t->listing);
  ci_strv_release(&t->out_paths);
  for (size_t i = 0; i < t->out_tars.n; i++)
    unlink(t->out_tars.v[i]);
  ci_strv_release(&t->out_tars);
  ci_strv_release(&t->out_done);
  ci_strv_release(&t->out_roots);
  for (size_t i = 0; i < t->ncaches; i++) {
    free(t->caches[i].name);
    free(t->caches[i].key);
    cache_plan_release(&t->caches[i].plan);
    cache_digest_release(&t->caches[i].digest);
  }
  free(t->caches);
  ci_strv_release(&t->patterns);
  ci_strv_release(&t->art_files);
  if (t->tmp_tar)
    unlink(t->tmp_tar);
  free(t->tmp_tar);
  free(t);
  schedule(s);
}

/* ---- cleanup ---- */

static void cleanup_next(struct stask *t);

static void
on_removed(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err)
    message(t, NULL, CI_LOG_WARN, "failed to remove container %.12s: %s", t->id, err->msg);
  free(t->id);
  t->id = NULL;
  cleanup_next(t);
}

static void
on_svc_removed(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  char *id = t->svc_ids[--t->nsvc];
  if (err)
    message(t, NULL, CI_LOG_WARN, "failed to remove additional container %.12s: %s", id, err->msg);
  free(id);
  cleanup_next(t);
}

static void
on_volume_removed(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err)
    message(t, NULL, CI_LOG_WARN, "failed to remove volume %s: %s", t->volume, err->msg);
  free(t->volume);
  t->volume = NULL;
  cleanup_next(t);
}

/* Remove what the task created, one at a time: additional containers (newest first), the
 * task's container, the pipe's volume; then the task is done. */
static void
cleanup_next(struct stask *t)
{
  struct sched *s = t->s;
  int r = 0;
  if (t->nsvc) {
    r = s->b->ops->container_remove(s->b, t->svc_ids[t->nsvc - 1], on_svc_removed, t);
    if (r < 0) {
      message(t, NULL, CI_LOG_WARN, "failed to remove additional container %.12s",
              t->svc_ids[t->nsvc - 1]);
      free(t->svc_ids[--t->nsvc]);
      cleanup_next(t);
      return;
    }
  } else if (t->id) {
    r = s->b->ops->container_remove(s->b, t->id, on_removed, t);
    if (r < 0) {
      message(t, NULL, CI_LOG_WARN, "failed to remove container %.12s", t->id);
      free(t->id);
      t->id = NULL;
      cleanup_next(t);
      return;
    }
  } else if (t->volume) {
    r = s->b->ops->volume_remove ? s->b->ops->volume_remove(s->b, t->volume, on_volume_removed, t)
                                 : -ENOSYS;
    if (r < 0) {
      message(t, NULL, CI_LOG_WARN, "failed to remove volume %s", t->volume);
      free(t->volume);
      t->volume = NULL;
      cleanup_next(t);
      return;
    }
  } else {
    task_done(t);
    return;
  }
  t->op_pending = true;
  t->pending++;
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

/* ---- --export-bundle ---- */

static int queue_work(struct stask *t, struct twork *w);
static void twork_free(struct twork *w);
static char *tmp_path(struct sched *s, const char *what);

static bool
export_wanted(const struct stask *t)
{
  const struct sched *s = t->s;
  return s->o->export_bundle_dir && t->id && !t->exported && (t->failed || t->timed_out) &&
         !s->canceling && !s->forced;
}

static void
bundle_run(struct twork *w)
{
  bundle_write(&w->bundle, &w->bundle_err);
}

static void
bundle_after(struct stask *t, struct twork *w)
{
  unlink(w->bundle.tar);
  if (w->bundle_err)
    message(t, NULL, CI_LOG_WARN, "cannot export the container as a bundle: %s",
            w->bundle_err->msg);
  else
    message(t, NULL, CI_LOG_INFO,
            "container exported as an OCI bundle: %s (run a shell in it with `runc%s run "
            "--bundle %s NAME`)",
            w->bundle.dir, geteuid() ? " --root DIR" : "", w->bundle.dir);
  task_cleanup(t);
}

static void
on_bundle_copied(void *data, const struct ci_error *err)
{
  struct twork *w = data;
  struct stask *t = w->t;
  t->pending--;
  t->op_pending = false;
  if (err) {
    message(t, NULL, CI_LOG_WARN, "cannot export the container as a bundle: %s", err->msg);
  } else {
    w->run = bundle_run;
    w->after = bundle_after;
    if (queue_work(t, w) == 0)
      return;
    message(t, NULL, CI_LOG_WARN, "cannot export the container as a bundle: no worker");
  }
  unlink(w->bundle.tar);
  twork_free(w);
  task_cleanup(t);
}

/* Copy the container's "/" out, then write the bundle on the thread pool. */
static void
export_start(struct stask *t)
{
  struct sched *s = t->s;
  t->exported = true;
  char *name = bundle_dir_name(t->t->name);
  char *dir = xasprintf("%s/%s", s->o->export_bundle_dir, name);
  if (access(dir, F_OK) == 0) {
    free(dir);
    dir = xasprintf("%s/%s-%u", s->o->export_bundle_dir, name, t->t->id);
  }
  free(name);
  if (!s->b->ops->copy_out || access(dir, F_OK) == 0) {
    message(t, NULL, CI_LOG_WARN, "cannot export the container as a bundle: %s",
            s->b->ops->copy_out ? "the directory exists" : "the backend cannot copy files out");
    free(dir);
    task_cleanup(t);
    return;
  }
  struct twork *w = xcalloc(1, sizeof *w);
  w->t = t;
  w->bundle.dir = dir;
  w->bundle.tar = tmp_path(s, "bundle");
  task_env(t, &w->bundle_env);
  w->bundle.env = &w->bundle_env;
  if (t->have_img) {
    cfg_env_copy(&w->bundle_image_env, &t->img.env);
    w->bundle.image_env = &w->bundle_image_env;
  }
  const char *wd = cfg_env_get(&w->bundle_env, "CIRRUS_WORKING_DIR");
  w->bundle.cwd = xstrdup(wd ? wd : "/");
  int r = s->b->ops->copy_out(s->b, t->id, "/", w->bundle.tar, on_bundle_copied, w);
  if (r < 0) {
    message(t, NULL, CI_LOG_WARN, "cannot export the container as a bundle: %s", strerror(-r));
    unlink(w->bundle.tar);
    twork_free(w);
    task_cleanup(t);
    return;
  }
  t->pending++;
  t->op_pending = true;
}

/* After the last step: kill background scripts, then remove the containers and volume. */
static void
task_cleanup(struct stask *t)
{
  struct sched *s = t->s;
  t->cleaning = true;
  if (t->op_pending || t->finished)
    return; /* resumes when the pending operation calls back */
  if (!t->id && !t->volume) {
    task_done(t);
    return;
  }
  if (s->o->debug_no_cleanup) {
    for (size_t i = 0; i < t->nsvc; i++)
      message(t, NULL, CI_LOG_WARN,
              "not cleaning up additional container %s, don't forget to remove it with \"%s rm "
              "-f %s\"",
              t->svc_ids[i], s->b->ops->name, t->svc_ids[i]);
    if (t->id)
      message(t, NULL, CI_LOG_WARN,
              "not cleaning up container %s, don't forget to remove it with \"%s rm -f %s\"", t->id,
              s->b->ops->name, t->id);
    if (t->volume)
      message(t, NULL, CI_LOG_WARN,
              "not cleaning up working volume %s, don't forget to remove it with \"%s volume "
              "rm %s\"",
              t->volume, s->b->ops->name, t->volume);
    task_done(t);
    return;
  }
  /* Background scripts are killed first (their output ends with them); the container is
   * removed once the kill commands have run, whatever the scripts do. */
  for (size_t i = 0; i < t->nbg && !s->forced && t->id; i++) {
    struct bgstep *bg = t->bg[i];
    if (!bg->exited && !bg->kill_sent) {
      bg->kill_sent = true;
      kill_step(t, bg->step_no);
    }
  }
  if (t->kills_pending && !s->forced)
    return; /* on_killed resumes */
  if (export_wanted(t)) {
    export_start(t);
    return;
  }
  cleanup_next(t);
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
  case CFG_INSTR_UPLOAD_CACHE:
    return xstrdup(in->name); /* "Upload 'NAME' cache" */
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
  if (t->fp)
    cache_fingerprint_update(t->fp, buf, len);
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

/* ---- internal execs, auxiliary scripts, thread-pool jobs ---- */

static const char *
workdir(struct stask *t)
{
  const char *wd = cfg_env_get(&t->exec_env, "CIRRUS_WORKING_DIR");
  return wd ? wd : CONTAINER_DIR "/working-dir";
}

static char *
expand(struct stask *t, const char *text)
{
  return run_env_expand_with(text, &t->exec_env, t->have_img ? &t->img.env : NULL);
}

static char *
tmp_path(struct sched *s, const char *what)
{
  return xasprintf("%s/%s-%u.tar", s->tmpdir, what, ++s->tmp_seq);
}

static char *
dir_of(const char *path)
{
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return xstrdup("/");
  return xstrndup(path, (size_t)(slash - path));
}

static void fail_step(struct stask *t, const char *fmt, ...) CI_PRINTF(2, 3);

/* End the current step as failed, with an error line in its log. */
static void
fail_step(struct stask *t, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *m = xvasprintf(fmt, ap);
  va_end(ap);
  message(t, t->scope, CI_LOG_ERROR, "%s", m);
  set_reason(t, "%s: %s", t->scope, m);
  free(m);
  step_end(t, SCHED_FAILED);
}

static void
on_internal_output(void *data, int stream, const char *buf, size_t len)
{
  struct stask *t = data;
  if (stream != 1) {
    message(t, t->scope, CI_LOG_DEBUG, "%.*s", (int)len, buf);
    return;
  }
  if (t->capture.len + len > LISTING_MAX)
    t->capture_cut = true;
  else
    ci_buf_add(&t->capture, buf, len);
}

static int
exit_code_of(const struct backend_exit *ex, const struct ci_error *err)
{
  if (err || !ex)
    return -1;
  return ex->signal ? 128 + ex->signal : ex->exit_code;
}

static void
on_internal_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  t->exec_running = false;
  exec_cont k = t->on_exec_done;
  t->on_exec_done = NULL;
  k(t, exit_code_of(ex, err), err);
}

/* Run `sh -c script cirrus-internal args...` in the task's container, its stdout collected in
 * t->capture; k runs when it has exited (unless this returns < 0). */
static int
internal_exec(struct stask *t, const char *script, const char *const *args, size_t nargs,
              exec_cont k)
{
  struct sched *s = t->s;
  sched_argv_free(t->argv);
  t->argv = xcalloc(nargs + 5, sizeof(char *));
  t->argv[0] = xstrdup("/bin/sh");
  t->argv[1] = xstrdup("-c");
  t->argv[2] = xstrdup(script);
  t->argv[3] = xstrdup("cirrus-internal");
  for (size_t i = 0; i < nargs; i++)
    t->argv[4 + i] = xstrdup(args[i]);
  ci_buf_reset(&t->capture);
  t->capture_cut = false;
  struct backend_exec_spec spec = {.argv = (const char *const *)t->argv};
  int r = s->b->ops->exec(s->b, t->id, &spec, on_internal_output, on_internal_exit, t);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
    t->on_exec_done = k;
  }
  return r;
}

static void
on_aux_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  t->exec_running = false;
  if (err)
    message(t, t->scope, CI_LOG_ERROR, "%s", err->msg);
  else if (ex->signal || ex->exit_code > 1) {
    char *m = ex->signal ? xasprintf("\nSignaled to exit (signal %d)!", ex->signal)
                         : xasprintf("\nExit status: %d", ex->exit_code);
    emit(t, SCHED_OUTPUT, t->scope, SCHED_SUCCEEDED, 0, m, strlen(m), 1, CI_LOG_INFO);
    free(m);
  }
  exec_cont k = t->on_exec_done;
  t->on_exec_done = NULL;
  k(t, exit_code_of(ex, err), err);
}

static char *new_cirrus_env_path(struct stask *t);

/* A script that belongs to another instruction (fingerprint_script, populate_script): run like
 * a script step, its output in the current scope. */
static int
start_aux_script(struct stask *t, const struct ci_strv *lines, exec_cont k)
{
  struct sched *s = t->s;
  free(t->cirrus_env_path);
  t->cirrus_env_path = new_cirrus_env_path(t);
  task_env(t, &t->exec_env);
  sched_argv_free(t->argv);
  t->argv = sched_step_argv(lines, t->step_no, workdir(t));
  struct backend_exec_spec spec = {.argv = (const char *const *)t->argv, .env = &t->exec_env};
  int r = s->b->ops->exec(s->b, t->id, &spec, on_output, on_aux_exit, t);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
    t->exec_running = true;
    t->on_exec_done = k;
  }
  return r;
}

static void
work_run(uv_work_t *req)
{
  struct twork *w = req->data;
  w->run(w);
}

static void
twork_free(struct twork *w)
{
  sched__restore_release(&w->restore);
  sched__save_release(&w->save);
  sched__artifacts_release(&w->art);
  free((char *)w->bundle.tar);
  free((char *)w->bundle.dir);
  free((char *)w->bundle.cwd);
  free((char *)w->bundle.hostname);
  cfg_env_release(&w->bundle_env);
  cfg_env_release(&w->bundle_image_env);
  ci_error_free(&w->bundle_err);
  free(w);
}

static void
work_after(uv_work_t *req, int status)
{
  struct twork *w = req->data;
  struct stask *t = w->t;
  (void)status; /* never canceled */
  t->pending--;
  t->op_pending = false;
  w->after(t, w);
  twork_free(w);
}

static int
queue_work(struct stask *t, struct twork *w)
{
  w->t = t;
  w->req.data = w;
  int r = uv_queue_work(t->s->loop, &w->req, work_run, work_after);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
  }
  return r;
}

static void
strv_pop(struct ci_strv *v)
{
  if (v->n)
    free(v->v[--v->n]);
}

static void
drop_out_tars(struct stask *t)
{
  for (size_t i = 0; i < t->out_tars.n; i++)
    unlink(t->out_tars.v[i]);
  ci_strv_release(&t->out_tars);
  ci_strv_release(&t->out_done);
}

/* ---- listing the working directory ---- */

static void
on_listed(struct stask *t, int code, const struct ci_error *err)
{
  task_cont k = t->on_copied_out;
  t->on_copied_out = NULL;
  if (err || code != 0 || t->capture_cut) {
    struct ci_error e = {.code = CI_EFAIL, .msg = NULL};
    e.msg = err              ? xasprintf("cannot list %s: %s", workdir(t), err->msg)
            : t->capture_cut ? xasprintf("cannot list %s: more than %zu MiB of names", workdir(t),
                                         LISTING_MAX >> 20)
                             : xasprintf("cannot list %s: exit status %d", workdir(t), code);
    k(t, &e);
    free(e.msg);
    return;
  }
  size_t len = t->capture.len;
  free(t->listing_buf);
  free(t->listing);
  t->listing_buf = ci_buf_take(&t->capture);
  sched__parse_listing(t->listing_buf, len, &t->listing, &t->nlisting);
  k(t, NULL);
}

/* Every path below the working directory, into t->listing; then k. */
static int
list_workdir(struct stask *t, task_cont k)
{
  const char *args[] = {workdir(t)};
  int r = internal_exec(t, lister, args, 1, on_listed);
  if (r == 0)
    t->on_copied_out = k;
  return r;
}

/* ---- copying paths out of the container ---- */

static void copy_out_next(struct stask *t);

static void
on_copy_out(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    unlink(t->out_tars.v[t->out_tars.n - 1]);
    strv_pop(&t->out_tars);
    if (err->code != -ENOENT) { /* a missing folder is no error: nothing to take */
      task_cont k = t->on_copied_out;
      t->on_copied_out = NULL;
      k(t, err);
      return;
    }
  } else {
    ci_strv_push(&t->out_done, t->out_paths.v[t->out_next]);
  }
  t->out_next++;
  copy_out_next(t);
}

static void
copy_out_next(struct stask *t)
{
  struct sched *s = t->s;
  if (t->out_next >= t->out_paths.n) {
    task_cont k = t->on_copied_out;
    t->on_copied_out = NULL;
    k(t, NULL);
    return;
  }
  ci_strv_push_take(&t->out_tars, tmp_path(s, "out"));
  int r = s->b->ops->copy_out(s->b, t->id, t->out_paths.v[t->out_next],
                              t->out_tars.v[t->out_tars.n - 1], on_copy_out, t);
  if (r < 0) {
    strv_pop(&t->out_tars);
    struct ci_error e = {.code = r, .msg = NULL};
    e.msg = xasprintf("cannot copy %s out of the container: %s", t->out_paths.v[t->out_next],
                      strerror(-r));
    task_cont k = t->on_copied_out;
    t->on_copied_out = NULL;
    k(t, &e);
    free(e.msg);
    return;
  }
  t->pending++;
  t->op_pending = true;
}

/* Copy every path of t->out_paths that exists into a tar (t->out_tars, and the path in
 * t->out_done); then k. */
static void
copy_out_all(struct stask *t, task_cont k)
{
  drop_out_tars(t);
  t->out_next = 0;
  t->on_copied_out = k;
  if (!t->s->b->ops->copy_out) {
    struct ci_error e = {.code = -ENOSYS, .msg = NULL};
    e.msg = xasprintf("the %s backend cannot copy files out of containers", t->s->b->ops->name);
    t->on_copied_out = NULL;
    k(t, &e);
    free(e.msg);
    return;
  }
  copy_out_next(t);
}

/* ---- caches ---- */

static struct tcache *
cache_cur(struct stask *t)
{
  return &t->caches[t->cur_cache];
}

static void
cache_finish(struct stask *t)
{
  struct tcache *c = cache_cur(t);
  c->skip_upload = c->available && !t->cur_in->reupload_on_changes;
  step_end(t, SCHED_SUCCEEDED);
}

static void
on_populated(struct stask *t, int code, const struct ci_error *err)
{
  (void)err;
  if (code != 0) {
    message(t, t->scope, CI_LOG_ERROR, CACHE_MSG_POPULATE_FAILED, cache_cur(t)->name);
    set_reason(t, "%s: populate script failed", t->scope);
    step_end(t, SCHED_FAILED);
    return;
  }
  cache_finish(t);
}

static void
cache_populate(struct stask *t)
{
  struct tcache *c = cache_cur(t);
  if (!t->cur_in->populate_script.n) {
    message(t, t->scope, CI_LOG_INFO, CACHE_MSG_MISS_NO_SCRIPT, c->key);
    cache_finish(t);
    return;
  }
  message(t, t->scope, CI_LOG_INFO, CACHE_MSG_MISS_POPULATING, c->key);
  if (start_aux_script(t, &t->cur_in->populate_script, on_populated) < 0)
    fail_step(t, "cannot start the populate script");
}

static void
on_cache_copied(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  unlink(t->tmp_tar);
  free(t->tmp_tar);
  t->tmp_tar = NULL;
  message(t, t->scope, CI_LOG_DEBUG, "cache copied into the container after %.2fs",
          now_s(t->s) - t->step_t0);
  if (err) {
    fail_step(t, CACHE_MSG_RESTORE_FAILED, cache_cur(t)->name, err->msg);
    return;
  }
  cache_finish(t);
}

static void
after_restore(struct stask *t, struct twork *w)
{
  struct sched *s = t->s;
  struct tcache *c = cache_cur(t);
  for (size_t i = 0; i < w->restore.msgs.n; i++)
    message(t, t->scope, CI_LOG_INFO, "%s", w->restore.msgs.v[i]);
  if (w->restore.err) {
    fail_step(t, "cannot read the cache store: %s", w->restore.err->msg);
    return;
  }
  if (!w->restore.restored) {
    unlink(t->tmp_tar);
    cache_populate(t);
    return;
  }
  c->available = true;
  cache_digest_move(&c->digest, &w->restore.digest);
  message(t, t->scope, CI_LOG_DEBUG, "cache blob unpacked in %.2fs; copying it into the container",
          now_s(s) - t->step_t0);
  if (s->b->ops->copy_in(s->b, t->id, t->tmp_tar, on_cache_copied, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  fail_step(t, CACHE_MSG_RESTORE_FAILED, c->name, "the backend refused the copy");
}

static void
run_restore(struct twork *w)
{
  sched__restore_run(&w->restore);
}

static void
cache_lookup(struct stask *t)
{
  struct sched *s = t->s;
  struct tcache *c = cache_cur(t);
  free(t->tmp_tar);
  t->tmp_tar = tmp_path(s, "cache");
  struct twork *w = xcalloc(1, sizeof(*w));
  w->restore.project_dir = s->o->project_dir;
  w->restore.cache_home = s->o->cache_home;
  w->restore.name = c->name;
  w->restore.key = c->key;
  w->restore.base = c->plan.base;
  w->restore.optimistic = t->cur_in->optimistically_restore_on_miss;
  w->restore.tar_path = t->tmp_tar;
  cache_digest_init(&w->restore.digest);
  w->run = run_restore;
  w->after = after_restore;
  if (queue_work(t, w) < 0) {
    free(w);
    fail_step(t, "cannot start restoring the cache");
  }
}

static void
on_fingerprinted(struct stask *t, int code, const struct ci_error *err)
{
  (void)err;
  struct tcache *c = cache_cur(t);
  if (code != 0) {
    cache_fingerprint_free(t->fp);
    t->fp = NULL;
    message(t, t->scope, CI_LOG_ERROR, CACHE_MSG_FINGERPRINT_FAILED, c->name);
    set_reason(t, "%s: fingerprint script failed", t->scope);
    step_end(t, SCHED_FAILED);
    return;
  }
  c->key = cache_fingerprint_key(t->fp, c->name);
  cache_fingerprint_free(t->fp);
  t->fp = NULL;
  cache_lookup(t);
}

static int
start_cache(struct stask *t, const struct cfg_instr *in)
{
  task_env(t, &t->exec_env);
  size_t i = 0;
  while (i < t->ncaches && strcmp(t->caches[i].name, in->name))
    i++;
  if (i == t->ncaches) {
    t->caches = xreallocarray(t->caches, t->ncaches + 1, sizeof(*t->caches));
    memset(&t->caches[i], 0, sizeof(t->caches[i]));
    t->caches[i].name = xstrdup(in->name);
    cache_digest_init(&t->caches[i].digest);
    t->ncaches++;
  } else {
    free(t->caches[i].key);
    t->caches[i].key = NULL;
    cache_plan_release(&t->caches[i].plan);
    cache_digest_release(&t->caches[i].digest);
    t->caches[i].available = t->caches[i].skip_upload = false;
  }
  struct tcache *c = &t->caches[i];
  t->cur_cache = i;
  t->cur_in = in;
  struct ci_strv folders = CI_STRV_INIT;
  for (size_t k = 0; k < in->folders.n; k++)
    ci_strv_push_take(&folders, expand(t, in->folders.v[k]));
  struct ci_error *e = NULL;
  int r = cache_plan_init(&c->plan, (const char *const *)folders.v, folders.n, workdir(t), &e);
  ci_strv_release(&folders);
  if (r < 0) {
    fail_step(t, "%s", e->msg);
    ci_error_free(&e);
    return 0;
  }
  if (in->fingerprint_key) {
    c->key = expand(t, in->fingerprint_key);
  } else if (in->fingerprint_script.n) {
    t->fp = cache_fingerprint_new();
    r = start_aux_script(t, &in->fingerprint_script, on_fingerprinted);
    if (r < 0) {
      cache_fingerprint_free(t->fp);
      t->fp = NULL;
    }
    return r;
  } else {
    const char *idx = cfg_env_get(&t->exec_env, "CI_NODE_INDEX");
    c->key = cache_key_default(c->name, t->t->name, idx ? idx : "0");
  }
  cache_lookup(t);
  return 0;
}

static void
after_save(struct stask *t, struct twork *w)
{
  for (size_t i = 0; i < w->save.msgs.n; i++)
    message(t, t->scope, CI_LOG_INFO, "%s", w->save.msgs.v[i]);
  drop_out_tars(t);
  step_end(t, SCHED_SUCCEEDED);
}

static void
run_save(struct twork *w)
{
  sched__save_run(&w->save);
}

static void
upload_failed(struct stask *t, const char *why)
{
  /* Upstream logs upload failures and carries on: the step succeeds. */
  message(t, t->scope, CI_LOG_WARN, CACHE_MSG_UPLOAD_FAILED, cache_cur(t)->name, why);
  message(t, t->scope, CI_LOG_WARN, CACHE_MSG_IGNORING);
  drop_out_tars(t);
  step_end(t, SCHED_SUCCEEDED);
}

static void
on_upload_copied(struct stask *t, const struct ci_error *err)
{
  struct sched *s = t->s;
  struct tcache *c = cache_cur(t);
  if (err) {
    upload_failed(t, err->msg);
    return;
  }
  struct twork *w = xcalloc(1, sizeof(*w));
  w->save.project_dir = s->o->project_dir;
  w->save.cache_home = s->o->cache_home;
  w->save.name = c->name;
  w->save.key = c->key;
  w->save.plan = &c->plan;
  w->save.folders = &t->out_done;
  w->save.tars = &t->out_tars;
  w->save.available = c->available;
  w->save.restored = &c->digest;
  w->run = run_save;
  w->after = after_save;
  if (queue_work(t, w) < 0) {
    free(w);
    upload_failed(t, "cannot start the upload");
  }
}

static void
upload_expand(struct stask *t)
{
  struct tcache *c = cache_cur(t);
  ci_strv_release(&t->out_paths);
  struct ci_error *e = NULL;
  if (cache_plan_expand(&c->plan, workdir(t), t->listing, t->nlisting, &t->out_paths, &e) < 0) {
    upload_failed(t, e->msg);
    ci_error_free(&e);
    return;
  }
  copy_out_all(t, on_upload_copied);
}

static void
on_upload_listed(struct stask *t, const struct ci_error *err)
{
  if (err) {
    upload_failed(t, err->msg);
    return;
  }
  upload_expand(t);
}

static int
start_upload(struct stask *t, const struct cfg_instr *in)
{
  task_env(t, &t->exec_env);
  size_t i = 0;
  while (i < t->ncaches && (strcmp(t->caches[i].name, in->cache_name) || !t->caches[i].key))
    i++;
  if (i == t->ncaches) { /* the cache step did not run (or failed before its key) */
    step_end(t, SCHED_SUCCEEDED);
    return 0;
  }
  t->cur_cache = i;
  t->cur_in = in;
  struct tcache *c = cache_cur(t);
  if (c->skip_upload) {
    message(t, t->scope, CI_LOG_INFO, CACHE_MSG_SKIP_CHANGE_DETECTION, c->name);
    step_end(t, SCHED_SUCCEEDED);
    return 0;
  }
  free(t->listing);
  t->listing = NULL;
  t->nlisting = 0;
  if (c->plan.has_globs)
    return list_workdir(t, on_upload_listed);
  upload_expand(t);
  return 0;
}

/* ---- artifacts ---- */

static void
emit_annotation(struct stask *t, const struct artifacts_annotation *a)
{
  struct sched *s = t->s;
  if (!s->o->on_event)
    return;
  struct sched_event ev = {
      .kind = SCHED_ANNOTATION,
      .task = t->t,
      .task_index = t->idx,
      .scope = t->scope,
      .level = a->level == ARTIFACTS_FAILURE   ? CI_LOG_ERROR
               : a->level == ARTIFACTS_WARNING ? CI_LOG_WARN
                                               : CI_LOG_INFO,
      .annotation = a,
  };
  s->o->on_event(&ev, s->o->event_data);
}

static void
after_artifacts(struct stask *t, struct twork *w)
{
  const char *wd = w->art.opts.working_dir;
  for (size_t i = 0; i < w->art.res.stored.n; i++)
    if (w->art.opts.artifacts_dir)
      message(t, t->scope, CI_LOG_DEBUG, ARTIFACTS_MSG_UPLOADED, w->art.res.stored.v[i]);
  for (size_t i = 0; i < w->art.res.skipped.n; i++)
    message(t, t->scope, CI_LOG_WARN, "Skipping '%s': only regular files are stored",
            w->art.res.skipped.v[i]);
  artifacts_annotations_normalize(&w->art.res.annotations, wd, t->listing, t->nlisting);
  for (size_t i = 0; i < w->art.res.annotations.n; i++)
    emit_annotation(t, &w->art.res.annotations.v[i]);
  drop_out_tars(t);
  free((char *)w->art.opts.working_dir);
  ci_strv_release((struct ci_strv *)w->art.tar_roots);
  free((struct ci_strv *)w->art.tar_roots);
  if (w->art.err) {
    fail_step(t, ARTIFACTS_MSG_FAILED, w->art.err->msg);
    return;
  }
  step_end(t, SCHED_SUCCEEDED);
}

static void
run_artifacts(struct twork *w)
{
  sched__artifacts_run(&w->art);
}

/* Where artifacts of this instruction go: NULL without --artifacts-dir or when a name cannot
 * be a directory name (upstream then silently stores nothing; this says so). */
static const char *
artifacts_dir_for(struct stask *t, const struct cfg_instr *in)
{
  const char *dir = t->s->o->artifacts_dir;
  if (!dir)
    return NULL;
  if (!artifacts_name_is_safe(t->t->name) || !artifacts_name_is_safe(in->name)) {
    message(t, t->scope, CI_LOG_WARN,
            "not storing artifacts '%s' of task '%s': names may only hold letters, digits, "
            "'_', '-', ' ' and ':'",
            in->name, t->t->name);
    return NULL;
  }
  return dir;
}

static void
on_artifacts_copied(struct stask *t, const struct ci_error *err)
{
  struct sched *s = t->s;
  const struct cfg_instr *in = t->cur_in;
  if (err) {
    drop_out_tars(t);
    fail_step(t, ARTIFACTS_MSG_FAILED, err->msg);
    return;
  }
  struct twork *w = xcalloc(1, sizeof(*w));
  w->art.opts.artifacts_dir = s->o->artifacts_dir ? artifacts_dir_for(t, in) : NULL;
  w->art.opts.task_name = t->t->name;
  w->art.opts.artifact_name = in->name;
  w->art.opts.working_dir = xstrdup(workdir(t));
  w->art.opts.only = &t->art_files;
  w->art.opts.format = in->format;
  w->art.tars = &t->out_tars;
  struct ci_strv *roots = xcalloc(1, sizeof(*roots));
  for (size_t i = 0; i < t->out_done.n; i++)
    ci_strv_push_take(roots, dir_of(t->out_done.v[i]));
  w->art.tar_roots = roots;
  struct artifacts_result init = ARTIFACTS_RESULT_INIT;
  w->art.res = init;
  w->run = run_artifacts;
  w->after = after_artifacts;
  if (queue_work(t, w) < 0) {
    free((char *)w->art.opts.working_dir);
    ci_strv_release(roots);
    free(roots);
    free(w);
    drop_out_tars(t);
    fail_step(t, ARTIFACTS_MSG_FAILED, "cannot start storing them");
  }
}

static void
on_artifacts_listed(struct stask *t, const struct ci_error *err)
{
  const struct cfg_instr *in = t->cur_in;
  if (err) {
    fail_step(t, ARTIFACTS_MSG_FAILED, err->msg);
    return;
  }
  const char *wd = workdir(t);
  struct artifacts_matches m = ARTIFACTS_MATCHES_INIT;
  struct ci_error *e = NULL;
  if (artifacts_expand((const char *const *)t->patterns.v, t->patterns.n, wd, t->listing,
                       t->nlisting, &m, &e) < 0) {
    fail_step(t, ARTIFACTS_MSG_FAILED, e->msg);
    ci_error_free(&e);
    return;
  }
  ci_strv_release(&t->art_files);
  for (size_t i = 0; i < m.n; i++) {
    message(t, t->scope, CI_LOG_INFO, ARTIFACTS_MSG_UPLOADING, m.v[i].files.n, m.v[i].pattern);
    for (size_t k = 0; k < m.v[i].dirs.n; k++)
      message(t, t->scope, CI_LOG_INFO, ARTIFACTS_MSG_SKIP_FOLDER, m.v[i].dirs.v[k]);
    for (size_t k = 0; k < m.v[i].files.n; k++)
      if (i == 0 || !ci_strv_contains(&t->art_files, m.v[i].files.v[k]))
        ci_strv_push(&t->art_files, m.v[i].files.v[k]);
  }
  artifacts_matches_release(&m);
  bool store = t->s->o->artifacts_dir && artifacts_dir_for(t, in);
  if (!t->art_files.n || (!store && !in->format)) {
    step_end(t, SCHED_SUCCEEDED);
    return;
  }
  ci_strv_release(&t->out_paths);
  if (t->art_files.n <= ARTIFACTS_PER_FILE_MAX) {
    for (size_t i = 0; i < t->art_files.n; i++) {
      const char *f = t->art_files.v[i];
      if (f[0] == '.' && f[1] == '/')
        f += 2;
      ci_strv_push_take(&t->out_paths, xasprintf("%s/%s", strcmp(wd, "/") ? wd : "", f));
    }
  } else {
    ci_strv_push(&t->out_paths, wd);
  }
  copy_out_all(t, on_artifacts_copied);
}

static int
start_artifacts(struct stask *t, const struct cfg_instr *in)
{
  t->cur_in = in;
  if (!in->paths.n) {
    message(t, t->scope, CI_LOG_INFO, ARTIFACTS_MSG_NO_PATHS);
    step_end(t, SCHED_SUCCEEDED);
    return 0;
  }
  task_env(t, &t->exec_env);
  ci_strv_release(&t->patterns);
  for (size_t i = 0; i < in->paths.n; i++)
    ci_strv_push_take(&t->patterns, expand(t, in->paths.v[i]));
  return list_workdir(t, on_artifacts_listed);
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
    const struct cfg_instr *in = &t->t->instrs[t->ip];
    if (t->t->instance == CFG_INSTANCE_PIPE && should_run(t, in) &&
        (in->pipe_step > t->pipe_cur || !t->id)) {
      /* The next step of a pipe runs in a container of its own image. */
      pipe_switch(t, in->pipe_step > t->pipe_cur ? in->pipe_step
                     : t->pipe_cur >= 0          ? t->pipe_cur
                                                 : 0);
      return;
    }
    t->ip++;
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
      r = start_cache(t, in);
      if (r == 0)
        return;
      break;
    case CFG_INSTR_UPLOAD_CACHE:
      r = start_upload(t, in);
      if (r == 0)
        return;
      break;
    case CFG_INSTR_ARTIFACTS:
      r = start_artifacts(t, in);
      if (r == 0)
        return;
      break;
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
prepare_done(struct stask *t, const struct ci_error *err)
{
  struct sched *s = t->s;
  if (err) {
    message(t, PREPARE_SCOPE, CI_LOG_ERROR, "%s", err->msg);
    set_reason(t, "%s", err->msg);
    t->failed = true;
    emit(t, SCHED_SCOPE_FINISHED, PREPARE_SCOPE, SCHED_FAILED, now_s(s) - t->step_t0, NULL, 0, 0,
         CI_LOG_INFO);
    task_cleanup(t);
    return;
  }
  emit(t, SCHED_SCOPE_FINISHED, PREPARE_SCOPE, SCHED_SUCCEEDED, now_s(s) - t->step_t0, NULL, 0, 0,
       CI_LOG_INFO);
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  task_next(t);
}

static void fail_prepare(struct stask *t, const char *fmt, ...) CI_PRINTF(2, 3);

static void
fail_prepare(struct stask *t, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  struct ci_error e = {.code = CI_EFAIL, .msg = xvasprintf(fmt, ap)};
  va_end(ap);
  prepare_done(t, &e);
  free(e.msg);
}

static void
on_ports(struct stask *t, int code, const struct ci_error *err)
{
  unsigned ports[64];
  int n;
  if (err) {
    message(t, PREPARE_SCOPE, CI_LOG_WARN, "Failed to wait for ports: %s", err->msg);
  } else if (code == 1 &&
             (n = sched__parse_ports(ci_buf_str(&t->capture), ports, CI_ARRAY_SIZE(ports))) > 0) {
    /* The script's answer: the ports that never opened. */
    for (int i = 0; i < n; i++)
      message(t, PREPARE_SCOPE, CI_LOG_WARN,
              "Failed to wait for port %u: nothing listens on it after %d seconds", ports[i],
              PORT_WAIT_SECONDS);
  } else if (code != 0) {
    /* Not the script's answer: the engine could not run it (its message, e.g. exit 126). */
    cleanup_free char *out = xstrdup(ci_buf_str(&t->capture));
    size_t len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
      out[--len] = '\0';
    message(t, PREPARE_SCOPE, CI_LOG_WARN, "Failed to wait for ports: exit status %d%s%s", code,
            *out ? ": " : "", out);
  }
  prepare_done(t, NULL);
}

/* Wait (up to PORT_WAIT_SECONDS) for the ports additional containers declare, as upstream's
 * agent does before the first step; a port that never opens is a warning, as upstream. */
static void
wait_ports(struct stask *t)
{
  const struct cfg_container *ct = &t->t->container;
  struct ci_strv args = CI_STRV_INIT;
  ci_strv_push_take(&args, xasprintf(CONTAINER_DIR "/step-%u.pid", t->step_no + 1));
  ci_strv_push_take(&args, xasprintf("%d", PORT_WAIT_SECONDS));
  for (size_t i = 0; t->t->instance == CFG_INSTANCE_CONTAINER && i < ct->nadditional; i++)
    for (size_t k = 0; k < ct->additional[i].nports; k++) {
      unsigned port = ct->additional[i].ports[k].container;
      message(t, PREPARE_SCOPE, CI_LOG_INFO, "Waiting on port %u...", port);
      ci_strv_push_take(&args, xasprintf("%04X", port));
    }
  if (args.n == 2) {
    ci_strv_release(&args);
    prepare_done(t, NULL);
    return;
  }
  t->step_no++; /* the wait has a pid file of its own, as a step */
  int r = internal_exec(t, port_waiter, (const char *const *)args.v, args.n, on_ports);
  ci_strv_release(&args);
  if (r < 0) {
    message(t, PREPARE_SCOPE, CI_LOG_WARN, "Failed to wait for ports: the backend refused");
    prepare_done(t, NULL);
    return;
  }
  t->exec_running = true; /* Ctrl-C and timeouts kill the wait through its pid file */
}

static void
on_copied(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    fail_prepare(t, "cannot copy the project into the container: %s", err->msg);
    return;
  }
  t->copied = true;
  if (t->canceled || t->cleaning) {
    prepare_done(t, NULL);
    return;
  }
  wait_ports(t);
}

static void
copy_project(struct stask *t)
{
  struct sched *s = t->s;
  const char *tar = NULL;
  if (!s->o->dirty && !t->copied) {
    task_env(t, &t->exec_env);
    const char *wd = workdir(t);
    for (size_t i = 0; i < s->o->ntars && !tar; i++)
      if (!strcmp(s->o->tars[i].workdir, wd))
        tar = s->o->tars[i].path;
    if (!tar && s->o->ntars) {
      fail_prepare(t,
                   "cannot copy the project into the container: no copy of the project was "
                   "prepared for working directory '%s'",
                   wd);
      return;
    }
  }
  if (!tar) {
    wait_ports(t);
    return;
  }
  message(t, PREPARE_SCOPE, CI_LOG_DEBUG, "Copying the project into the container...");
  if (s->b->ops->copy_in(s->b, t->id, tar, on_copied, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  fail_prepare(t, "cannot copy the project into the container: the backend refused the copy");
}

static void start_next_service(struct stask *t);

static void
on_svc_created(void *data, const char *id, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  const struct cfg_additional_container *ac = &t->t->container.additional[t->svc_next];
  if (err) {
    fail_prepare(t, "cannot start additional container '%s': %s", ac->name, err->msg);
    return;
  }
  t->svc_ids = xreallocarray(t->svc_ids, t->nsvc + 1, sizeof(*t->svc_ids));
  t->svc_ids[t->nsvc++] = xstrdup(id);
  t->svc_next++;
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  start_next_service(t);
}

static void
clamp_limits(struct stask *t, const char *what, double *cpu, unsigned *mem)
{
  struct backend *b = t->s->b;
  double want_cpu = *cpu;
  unsigned want_mem = *mem;
  if (b->host_cpus && *cpu > b->host_cpus)
    *cpu = b->host_cpus;
  if (b->host_mem_mb && *mem > b->host_mem_mb)
    *mem = (unsigned)b->host_mem_mb;
  message(t, PREPARE_SCOPE, CI_LOG_DEBUG, "%s: %g CPUs%s, %u MB of memory%s", what, *cpu,
          *cpu != want_cpu ? " (clamped to the host)" : "", *mem,
          *mem != want_mem ? " (clamped to the host)" : "");
}

static void
on_svc_image(void *data, const struct backend_image_info *info, const struct ci_error *err)
{
  struct stask *t = data;
  struct sched *s = t->s;
  (void)info;
  t->pending--;
  t->op_pending = false;
  const struct cfg_additional_container *ac = &t->t->container.additional[t->svc_next];
  if (err) {
    fail_prepare(t, "cannot pull image %s of additional container '%s': %s", ac->image, ac->name,
                 err->msg);
    return;
  }
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  char name[160];
  snprintf(name, sizeof(name), "cirrus-%s-%u-%s", s->o->run_id, t->t->id, ac->name);
  /* An empty argv: the image's own command. */
  const char **argv = xcalloc(ac->command.n + 1, sizeof(char *));
  for (size_t i = 0; i < ac->command.n; i++)
    argv[i] = ac->command.v[i];
  double cpu = ac->cpu;
  unsigned mem = ac->memory_mb;
  char *what = xasprintf("additional container '%s' (%s)", ac->name, ac->image);
  clamp_limits(t, what, &cpu, &mem);
  free(what);
  struct backend_container_spec spec = {
      .image = ac->image,
      .name = name,
      .run_id = s->o->run_id,
      .task_name = t->t->name,
      .cpu = cpu,
      .memory_mb = mem,
      .argv = argv,
      .env = &ac->env,
      .network_of = t->id,
      .privileged = ac->privileged,
  };
  int r = s->b->ops->container_create(s->b, &spec, on_svc_created, t);
  free(argv);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  fail_prepare(t, "cannot start additional container '%s': the backend refused to create it",
               ac->name);
}

/* Additional containers, one after the other, in the task container's network namespace;
 * then the project copy. */
static void
start_next_service(struct stask *t)
{
  struct sched *s = t->s;
  const struct cfg_container *ct = &t->t->container;
  if (t->t->instance != CFG_INSTANCE_CONTAINER || t->svc_next >= ct->nadditional) {
    copy_project(t);
    return;
  }
  const struct cfg_additional_container *ac = &ct->additional[t->svc_next];
  for (size_t k = 0; k < ac->nports; k++)
    if (ac->ports[k].host && ac->ports[k].host != ac->ports[k].container)
      message(t, PREPARE_SCOPE, CI_LOG_WARN,
              "port mappings are unsupported by the Cirrus CLI, please tell the application "
              "running in the additional container '%s' to use a different port",
              ac->name);
  message(t, PREPARE_SCOPE, CI_LOG_INFO, "Starting additional container '%s' (%s)...", ac->name,
          ac->image);
  if (s->b->ops->image_prepare(s->b, ac->image, s->o->pull, on_progress, on_svc_image, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  fail_prepare(t, "cannot pull image %s of additional container '%s': the backend refused",
               ac->image, ac->name);
}

static void
on_created(void *data, const char *id, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    fail_prepare(t, "cannot create the container: %s", err->msg);
    return;
  }
  t->id = xstrdup(id);
  if (t->canceled || t->cleaning) {
    task_cleanup(t);
    return;
  }
  start_next_service(t);
}

static void
start_create(struct stask *t)
{
  struct sched *s = t->s;
  t->step_t0 = now_s(s);
  emit(t, SCHED_SCOPE_STARTED, PREPARE_SCOPE, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
  /* The working directory: bind-mounted with --dirty, a volume shared by a pipe's steps. */
  task_env(t, &t->exec_env);
  const char *wd = workdir(t);
  struct backend_mount mount = {s->o->project_dir, wd, false};
  struct backend_volume_mount vol = {t->volume, wd};
  char name[96];
  if (t->pipe_cur >= 0)
    snprintf(name, sizeof(name), "cirrus-%s-%u-%d", s->o->run_id, t->t->id, t->pipe_cur);
  else
    snprintf(name, sizeof(name), "cirrus-%s-%u", s->o->run_id, t->t->id);
  double cpu = t->t->container.cpu;
  unsigned mem = t->t->container.memory_mb;
  char *what = xasprintf("container (%s)", t->image);
  clamp_limits(t, what, &cpu, &mem);
  free(what);
  struct backend_container_spec spec = {
      .image = t->image,
      .name = name,
      .run_id = s->o->run_id,
      .task_name = t->t->name,
      .cpu = cpu,
      .memory_mb = mem,
      .mounts = s->o->dirty ? &mount : NULL,
      .nmounts = s->o->dirty ? 1 : 0,
      .volumes = t->volume ? &vol : NULL,
      .nvolumes = t->volume ? 1 : 0,
  };
  if (s->b->ops->container_create(s->b, &spec, on_created, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  fail_prepare(t, "cannot create the container: the backend refused to create it");
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
    message(t, "image pull", CI_LOG_ERROR, "Failed to pull %s: %s", t->image, err->msg);
    set_reason(t, "image %s: %s", t->image, err->msg);
    t->failed = true;
    emit(t, SCHED_SCOPE_FINISHED, "image pull", SCHED_FAILED, now_s(s) - t->step_t0, NULL, 0, 0,
         CI_LOG_INFO);
    task_cleanup(t);
    return;
  }
  emit(t, SCHED_SCOPE_FINISHED, "image pull", SCHED_SUCCEEDED, now_s(s) - t->step_t0, NULL, 0, 0,
       CI_LOG_INFO);
  if (t->have_img)
    backend_image_info_release(&t->img);
  memset(&t->img, 0, sizeof(t->img));
  cfg_env_copy(&t->img.env, &info->env);
  t->img.user = xstrdup(info->user ? info->user : "");
  t->img.workdir = xstrdup(info->workdir ? info->workdir : "");
  t->img.id = xstrdup(info->id ? info->id : "");
  t->have_img = true;
  if (t->canceled) {
    task_cleanup(t);
    return;
  }
  start_create(t);
}

/* Make t->image available, then create its container. */
static void
enter_container(struct stask *t)
{
  struct sched *s = t->s;
  t->step_t0 = now_s(s);
  emit(t, SCHED_SCOPE_STARTED, "image pull", SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
  /* Images built from a Dockerfile are never pulled (upstream's NoPullImages). */
  enum backend_pull_policy pol = t->no_pull ? BACKEND_PULL_NEVER : s->o->pull;
  if (s->b->ops->image_prepare(s->b, t->image, pol, on_progress, on_image, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  t->pending++; /* on_image consumes one */
  struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused to pull it"};
  on_image(t, NULL, &e);
}

/* ---- pipes ---- */

static void
on_pipe_removed(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err)
    message(t, NULL, CI_LOG_WARN, "failed to remove container %.12s: %s", t->id, err->msg);
  free(t->id);
  t->id = NULL;
  if (t->canceled || t->cleaning || t->s->forced) {
    task_cleanup(t);
    return;
  }
  enter_container(t);
}

/* Move the pipe to step `step`: remove the current step's container; the working directory
 * stays in the pipe's volume. */
static void
pipe_switch(struct stask *t, int step)
{
  struct sched *s = t->s;
  t->pipe_cur = step;
  t->image = t->t->pipe_steps[step].image;
  if (!t->id) {
    enter_container(t);
    return;
  }
  if (s->b->ops->container_remove(s->b, t->id, on_pipe_removed, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  t->pending++; /* on_pipe_removed consumes one */
  struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused"};
  on_pipe_removed(t, &e);
}

static void
on_volume_created(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  if (err) {
    message(t, NULL, CI_LOG_ERROR, "cannot create the working volume %s: %s", t->volume, err->msg);
    set_reason(t, "cannot create the working volume: %s", err->msg);
    t->failed = true;
    free(t->volume);
    t->volume = NULL;
    task_cleanup(t);
    return;
  }
  if (t->canceled) {
    task_cleanup(t);
    return;
  }
  task_next(t);
}

static void
start_pipe(struct stask *t)
{
  struct sched *s = t->s;
  if (s->o->dirty) { /* the bind-mounted project is the shared working directory */
    task_next(t);
    return;
  }
  t->volume = xasprintf("cirrus-%s-%u-wd", s->o->run_id, t->t->id);
  int r = s->b->ops->volume_create
              ? s->b->ops->volume_create(s->b, t->volume, s->o->run_id, on_volume_created, t)
              : -ENOSYS;
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  t->pending++; /* on_volume_created consumes one */
  struct ci_error e = {.code = r, .msg = NULL};
  e.msg = xasprintf("the %s backend cannot create volumes", s->b->ops->name);
  on_volume_created(t, &e);
  free(e.msg);
}

/* ---- Dockerfile images (the Prebuild task) ---- */

#define BUILD_SCOPE "image build"

static void
prebuild_end(struct stask *t, const struct ci_error *err)
{
  if (err) {
    message(t, BUILD_SCOPE, CI_LOG_ERROR, "%s", err->msg);
    set_reason(t, "%s", err->msg);
    t->failed = true;
  }
  emit(t, SCHED_SCOPE_FINISHED, BUILD_SCOPE, err ? SCHED_FAILED : SCHED_SUCCEEDED,
       now_s(t->s) - t->step_t0, NULL, 0, 0, CI_LOG_INFO);
  task_done(t);
}

static void
on_built(void *data, const struct ci_error *err)
{
  struct stask *t = data;
  t->pending--;
  t->op_pending = false;
  prebuild_end(t, err);
}

static void
on_build_progress(void *data, const char *line)
{
  struct stask *t = data;
  message(t, BUILD_SCOPE, CI_LOG_INFO, "%s", line);
}

static void
on_prebuilt_image(void *data, const struct backend_image_info *info, const struct ci_error *err)
{
  struct stask *t = data;
  struct sched *s = t->s;
  (void)info;
  t->pending--;
  t->op_pending = false;
  const struct cfg_container *ct = &t->t->container;
  if (!err) {
    message(t, BUILD_SCOPE, CI_LOG_INFO, "Re-using local image %s...", ct->image);
    prebuild_end(t, NULL);
    return;
  }
  struct ci_error e = {.code = CI_EFAIL, .msg = NULL};
  if (err->code != -ENOENT) {
    e.msg = xasprintf("cannot inspect image %s: %s", ct->image, err->msg);
  } else if (t->canceled) {
    task_done(t);
    return;
  } else if (!s->b->ops->image_build) {
    e.msg = xasprintf("the %s backend cannot build images", s->b->ops->name);
  } else if (!s->o->build_context) {
    e.msg = xasprintf("no build context was prepared for %s", ct->dockerfile);
  }
  if (e.msg) {
    prebuild_end(t, &e);
    free(e.msg);
    return;
  }
  message(t, BUILD_SCOPE, CI_LOG_INFO, "Image %s is not available locally, building it...",
          ct->image);
  /* The Dockerfile's path inside the context (the project directory). */
  const char *df = ct->dockerfile;
  size_t pl = strlen(s->o->project_dir);
  if (df[0] == '/' && !strncmp(df, s->o->project_dir, pl) && df[pl] == '/')
    df += pl + 1;
  struct backend_build_spec spec = {
      .context_tar = s->o->build_context,
      .dockerfile = df,
      .args = &ct->docker_arguments,
      .tag = ct->image,
      .pull = s->o->pull == BACKEND_PULL_ALWAYS,
  };
  int r =
      df[0] == '/' ? -EINVAL : s->b->ops->image_build(s->b, &spec, on_build_progress, on_built, t);
  if (r == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  e.msg = df[0] == '/' ? xasprintf("the Dockerfile %s is outside the project directory %s",
                                   ct->dockerfile, s->o->project_dir)
                       : xasprintf("cannot build %s: %s", ct->image, strerror(-r));
  prebuild_end(t, &e);
  free(e.msg);
}

/* Build the image of a Dockerfile once, unless an image with its content hash exists. */
static void
start_prebuild(struct stask *t)
{
  struct sched *s = t->s;
  t->step_t0 = now_s(s);
  emit(t, SCHED_SCOPE_STARTED, BUILD_SCOPE, SCHED_SUCCEEDED, 0, NULL, 0, 0, CI_LOG_INFO);
  if (s->b->ops->image_prepare(s->b, t->t->container.image, BACKEND_PULL_NEVER, NULL,
                               on_prebuilt_image, t) == 0) {
    t->pending++;
    t->op_pending = true;
    return;
  }
  struct ci_error e = {.code = CI_EFAIL, .msg = (char *)"the backend refused to inspect it"};
  prebuild_end(t, &e);
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
  t->pipe_cur = -1;
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

  switch (t->t->instance) {
  case CFG_INSTANCE_PREBUILT:
    start_prebuild(t);
    break;
  case CFG_INSTANCE_PIPE:
    start_pipe(t);
    break;
  default:
    t->image = t->t->container.image;
    t->no_pull = t->t->container.dockerfile != NULL;
    enter_container(t);
    break;
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
  else if (t->instance == CFG_INSTANCE_PIPE && !t->npipe_steps)
    reason = "the pipe has no steps";
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
    if (t->finished)
      continue;
    for (size_t k = 0; k < t->nsvc; k++)
      if (s->b->ops->container_remove(s->b, t->svc_ids[k], on_removed_forced, t) == 0)
        t->pending++;
    if (t->id && s->b->ops->container_remove(s->b, t->id, on_removed_forced, t) == 0)
      t->pending++;
  }
}

/* Tars are removed as soon as they are used; whatever an interrupted run left goes here. */
static void
remove_tmpdir(const char *dir)
{
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
        unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
  }
  rmdir(dir);
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
  const char *tmp = getenv("TMPDIR");
  s.tmpdir = xasprintf("%s/cirrus-sched-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(s.tmpdir)) {
    int e = errno;
    int r = ci_error_make(err, -e, "cannot create a temporary directory in %s: %s",
                          tmp && *tmp ? tmp : "/tmp", strerror(e));
    free(s.tmpdir);
    free(s.reported);
    return r;
  }
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
  remove_tmpdir(s.tmpdir);
  free(s.tmpdir);
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
