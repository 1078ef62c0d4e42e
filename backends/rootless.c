/* backends/rootless.c - the "builtin" backend: containers of the rootless runtime, driven from
 * the libuv loop.
 *
 * Nothing here touches namespaces: a multithreaded process (libuv's pool, libcurl) cannot
 * create or join a user namespace.  Each container is a `cirrus-runtime create` process that
 * sets the container up, prints "ready PID" and then stays as its monitor until its stdin
 * reaches EOF (container_remove closes it); each exec, copy and file read is a short-lived
 * `cirrus-runtime` process that joins the container's namespaces.  Helpers are spawned in
 * their own session (a Ctrl-C at the terminal reaches cirrus only, which then removes the
 * containers in order) and die with cirrus (PR_SET_PDEATHSIG, checked against --ppid).
 *
 * Images are pulled into the store of backends/image on libuv's thread pool, one pull at a
 * time per backend (a store handle is not shared between threads); a prepared image is held
 * (its layers locked against `cirrus images prune`) until the backend closes.
 */
#include "rootless.h"
#include "backends/build/build.h"
#include "backends/image/image.h"
#include "backends/runtime/runtime.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define HELPER_PREFIX "cirrus-runtime: "

extern char **environ;

struct rl_image {
  char *ref;
  struct img_image *img;
};

struct rootless {
  struct backend base;
  char *helper;
  char *store_dir;
  char *runs_dir;
  char *volumes_dir;
  struct img_store *store;
  uv_mutex_t store_lock; /* the store is used by one pull at a time */
  struct rl_image **images; /* each allocated: containers point at them */
  size_t nimages, aimages;
  struct rl_container *containers;
  unsigned seq;
  unsigned active; /* processes, pulls and deferred callbacks not yet finished */
  bool closing;
  volatile sig_atomic_t cancel_builds; /* set on close or SIGINT/SIGTERM: builds stop */
  unsigned nbuilds;                    /* running builds; the signal watchers run while > 0 */
  uv_signal_t sigint, sigterm;
  void (*on_closed)(void *data);
  void *closed_data;
  char ppid[24];
  const char *rootfs;     /* $CIRRUS_ROOTFS for create's --rootfs (static), NULL = auto */
  const char *seccomp;    /* $CIRRUS_SECCOMP for create's --seccomp (static), NULL = default */
  struct rl_clean *bg_gc; /* the gc open started, while it runs (a clean takes it over) */
};

static struct rootless *
R(struct backend *b)
{
  return container_of(b, struct rootless, base);
}

static void maybe_closed(struct rootless *r);

/* ---- helper processes ---- */

struct rl_proc;
typedef void (*rl_proc_end_cb)(struct rl_proc *p);

struct rl_proc {
  struct rootless *r;
  uv_process_t proc;
  uv_pipe_t in, out, err;
  bool has_in, in_closed;
  unsigned open; /* handles not yet closed */
  bool spawned;
  int64_t status;
  int signal;
  /* stdout: streamed to on_output, else captured (at most cap bytes, then truncated) */
  backend_output_cb on_output;
  void *out_data;
  bool stream_err; /* stderr streamed to on_output too */
  struct ci_buf obuf, ebuf;
  size_t cap;
  bool truncated;
  void (*on_out_line)(struct rl_proc *p); /* called after each chunk of stdout when capturing */
  rl_proc_end_cb on_end;
  void *ctx;
};

static void
proc_handle_closed(uv_handle_t *h)
{
  struct rl_proc *p = h->data;
  if (--p->open)
    return;
  struct rootless *r = p->r;
  if (p->spawned && p->on_end)
    p->on_end(p);
  ci_buf_release(&p->obuf);
  ci_buf_release(&p->ebuf);
  free(p);
  r->active--;
  maybe_closed(r);
}

static void
proc_close(uv_handle_t *h)
{
  if (!uv_is_closing(h))
    uv_close(h, proc_handle_closed);
}

static void
proc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  (void)h;
  (void)hint;
  static char chunk[65536]; /* the loop thread only; consumed before the next read */
  buf->base = chunk;
  buf->len = sizeof chunk;
}

static void
proc_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct rl_proc *p = s->data;
  int stream = (uv_pipe_t *)s == &p->out ? 1 : 2;
  if (n < 0) {
    proc_close((uv_handle_t *)s);
    return;
  }
  if (n == 0)
    return;
  if (p->on_output && (stream == 1 || p->stream_err)) {
    p->on_output(p->out_data, stream, buf->base, (size_t)n);
    return;
  }
  struct ci_buf *b = stream == 1 ? &p->obuf : &p->ebuf;
  size_t cap = stream == 1 ? p->cap : 16384;
  size_t take = (size_t)n;
  if (b->len + take > cap) {
    take = cap > b->len ? cap - b->len : 0;
    if (stream == 1)
      p->truncated = true;
  }
  ci_buf_add(b, buf->base, take);
  if (stream == 1 && p->on_out_line)
    p->on_out_line(p);
}

static void
proc_on_exit(uv_process_t *h, int64_t status, int sig)
{
  struct rl_proc *p = h->data;
  p->status = status;
  p->signal = sig;
  if (p->has_in && !p->in_closed) {
    p->in_closed = true;
    proc_close((uv_handle_t *)&p->in);
  }
  proc_close((uv_handle_t *)h);
}

/* Spawn the helper with argv (argv[0] is only its name).  On failure the handles are closed and
 * p is freed later without on_end; the caller must not touch it again. */
static int
proc_spawn(struct rootless *r, struct rl_proc *p, char **argv, struct ci_error **err)
{
  p->r = r;
  uv_pipe_init(r->base.loop, &p->out, 0);
  uv_pipe_init(r->base.loop, &p->err, 0);
  p->out.data = p->err.data = p->proc.data = p;
  p->open = 3;
  uv_stdio_container_t stdio[3];
  if (p->has_in) {
    uv_pipe_init(r->base.loop, &p->in, 0);
    p->in.data = p;
    p->open++;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
  } else {
    stdio[0].flags = UV_IGNORE;
  }
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&p->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&p->err;
  uv_process_options_t o = {
      .exit_cb = proc_on_exit,
      .file = r->helper,
      .args = argv,
      .stdio_count = 3,
      .stdio = stdio,
      .flags = UV_PROCESS_DETACHED, /* own session: terminal signals reach cirrus only */
  };
  r->active++;
  int rc = uv_spawn(r->base.loop, &p->proc, &o);
  if (rc < 0) {
    ci_error_make(err, rc == UV_ENOENT ? -ENOENT : -EIO, "cannot run %s: %s", r->helper,
                  uv_strerror(rc));
    if (p->has_in)
      proc_close((uv_handle_t *)&p->in);
    proc_close((uv_handle_t *)&p->out);
    proc_close((uv_handle_t *)&p->err);
    proc_close((uv_handle_t *)&p->proc);
    return -1;
  }
  p->spawned = true;
  uv_read_start((uv_stream_t *)&p->out, proc_alloc, proc_on_read);
  uv_read_start((uv_stream_t *)&p->err, proc_alloc, proc_on_read);
  return 0;
}

/* The helper's last message (without its prefix), or a description of how it ended. */
static char *
proc_reason(const struct rl_proc *p)
{
  const char *e = ci_buf_str(&p->ebuf);
  size_t len = p->ebuf.len;
  while (len && (e[len - 1] == '\n' || e[len - 1] == ' '))
    len--;
  if (len) {
    const char *start = e;
    for (const char *q = e; q < e + len; q++)
      if (*q == '\n')
        start = q + 1;
    if (ci_str_has_prefix(start, HELPER_PREFIX))
      start += strlen(HELPER_PREFIX);
    return xstrndup(start, (size_t)(e + len - start));
  }
  if (p->signal)
    return xasprintf("the runtime helper was killed by signal %d", p->signal);
  return xasprintf("the runtime helper failed (exit status %lld)", (long long)p->status);
}

/* argv under construction */
struct argv {
  struct ci_strv v;
};

static void
argv_add(struct argv *a, const char *s)
{
  ci_strv_push(&a->v, s);
}

static void
argv_addf(struct argv *a, const char *fmt, ...) CI_PRINTF(2, 3);
static void
argv_addf(struct argv *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ci_strv_push_take(&a->v, xvasprintf(fmt, ap));
  va_end(ap);
}

static char **
argv_end(struct argv *a)
{
  ci_strv_push_take(&a->v, NULL);
  return a->v.v;
}

static void
argv_begin(struct argv *a, struct rootless *r, const char *cmd)
{
  a->v = (struct ci_strv)CI_STRV_INIT;
  argv_add(a, "cirrus-runtime");
  argv_add(a, cmd);
  argv_add(a, "--ppid");
  argv_add(a, r->ppid);
}

/* ---- deferred callbacks (the vtable promises callbacks never run inside the call) ---- */

struct rl_defer {
  uv_timer_t t;
  struct rootless *r;
  backend_done_cb cb;
  void *data;
  struct ci_error *err;
};

static void
defer_closed(uv_handle_t *h)
{
  struct rl_defer *d = h->data;
  struct rootless *r = d->r;
  ci_error_free(&d->err);
  free(d);
  r->active--;
  maybe_closed(r);
}

static void
defer_fire(uv_timer_t *t)
{
  struct rl_defer *d = t->data;
  d->cb(d->data, d->err);
  uv_close((uv_handle_t *)t, defer_closed);
}

/* Call cb(data, err) from the loop soon; takes err. */
static int
defer_done(struct rootless *r, backend_done_cb cb, void *data, struct ci_error *err)
{
  struct rl_defer *d = xcalloc(1, sizeof *d);
  d->r = r;
  d->cb = cb;
  d->data = data;
  d->err = err;
  uv_timer_init(r->base.loop, &d->t);
  d->t.data = d;
  r->active++;
  uv_timer_start(&d->t, defer_fire, 0, 0);
  return 0;
}

/* ---- images ---- */

/* Progress lines from a job on libuv's thread pool to the loop: the job pushes them from its
 * thread, the loop hands them to on_progress when the async fires and once more after the job.
 * The async's data is the job's owner, for its close callback. */
struct rl_relay {
  uv_async_t async;
  uv_mutex_t mu;
  struct ci_strv lines; /* under mu */
  backend_progress_cb on_progress;
  void *data;
};

static void
relay_flush(struct rl_relay *rl)
{
  uv_mutex_lock(&rl->mu);
  struct ci_strv lines = rl->lines;
  rl->lines = (struct ci_strv)CI_STRV_INIT;
  uv_mutex_unlock(&rl->mu);
  for (size_t i = 0; i < lines.n; i++)
    if (rl->on_progress)
      rl->on_progress(rl->data, lines.v[i]);
  ci_strv_release(&lines);
}

static void
relay_on_async(uv_async_t *a)
{
  relay_flush(container_of(a, struct rl_relay, async));
}

static void
relay_init(struct rl_relay *rl, uv_loop_t *loop, backend_progress_cb on_progress, void *data,
           void *owner)
{
  rl->on_progress = on_progress;
  rl->data = data;
  uv_mutex_init(&rl->mu);
  uv_async_init(loop, &rl->async, relay_on_async);
  rl->async.data = owner;
}

/* From the job's thread; takes line. */
static void
relay_push(struct rl_relay *rl, char *line)
{
  uv_mutex_lock(&rl->mu);
  ci_strv_push_take(&rl->lines, line);
  uv_mutex_unlock(&rl->mu);
  uv_async_send(&rl->async);
}

/* After the async is closed. */
static void
relay_release(struct rl_relay *rl)
{
  uv_mutex_destroy(&rl->mu);
  ci_strv_release(&rl->lines);
}

struct rl_pull {
  uv_work_t work;
  uv_async_t async;
  struct rootless *r;
  char *ref;
  enum img_pull_policy policy;
  backend_image_cb cb;
  void *data;
  struct img_image *img;
  struct ci_error *err;
  struct rl_relay relay; /* progress from the pulling thread */
};

static void
pull_progress(const struct img_progress *pr, void *data)
{
  struct rl_pull *pl = data;
  char *line = NULL;
  switch (pr->phase) {
  case IMG_PROGRESS_RESOLVE:
    line = xasprintf("Pulling %s", pl->ref);
    break;
  case IMG_PROGRESS_WAIT:
    line = xasprintf("Waiting for another pull of layer %.19s", pr->digest ? pr->digest : "");
    break;
  case IMG_PROGRESS_LAYER_DONE:
    line = xasprintf("Layer %u/%u %.19s: %s", pr->index + 1, pr->count,
                     pr->digest ? pr->digest : "", pr->reused ? "already present" : "extracted");
    break;
  default:
    return; /* byte counts: too many to show line by line */
  }
  relay_push(&pl->relay, line);
}

static void
pull_work(uv_work_t *w)
{
  struct rl_pull *pl = container_of(w, struct rl_pull, work);
  struct img_pull_opts po = IMG_PULL_OPTS_INIT;
  po.policy = pl->policy;
  po.on_progress = pull_progress;
  po.progress_data = pl;
  uv_mutex_lock(&pl->r->store_lock);
  img_pull(pl->r->store, pl->ref, &po, &pl->img, &pl->err);
  uv_mutex_unlock(&pl->r->store_lock);
}

static void
pull_closed(uv_handle_t *h)
{
  struct rl_pull *pl = h->data;
  struct rootless *r = pl->r;
  relay_release(&pl->relay);
  ci_error_free(&pl->err);
  img_image_free(pl->img);
  free(pl->ref);
  free(pl);
  r->active--;
  maybe_closed(r);
}

static void
image_info_from(const struct img_image *img, struct backend_image_info *info)
{
  *info = (struct backend_image_info){CFG_ENV_INIT, NULL, NULL, NULL};
  for (size_t i = 0; i < img->config.env.n; i++) {
    const char *kv = img->config.env.v[i];
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
      continue;
    char *k = xstrndup(kv, (size_t)(eq - kv));
    cfg_env_set(&info->env, k, eq + 1);
    free(k);
  }
  info->user = xstrdup(img->config.user ? img->config.user : "");
  info->workdir = xstrdup(img->config.working_dir ? img->config.working_dir : "");
  info->id = xstrdup(img->id);
}

static void
pull_after(uv_work_t *w, int status)
{
  struct rl_pull *pl = container_of(w, struct rl_pull, work);
  struct rootless *r = pl->r;
  relay_flush(&pl->relay);
  if (status == UV_ECANCELED && !pl->err)
    ci_error_make(&pl->err, CI_ECANCELED, "pull of %s canceled", pl->ref);
  if (pl->err) {
    if (pl->policy != IMG_PULL_NEVER) /* nothing was pulled: the message says why */
      ci_error_prefix(&pl->err, "pulling image %s", pl->ref);
    pl->cb(pl->data, NULL, pl->err);
  } else {
    ci_grow(&r->images, &r->aimages, r->nimages + 1, sizeof *r->images);
    struct rl_image *im = xcalloc(1, sizeof *im);
    r->images[r->nimages++] = im;
    im->ref = xstrdup(pl->ref);
    im->img = steal_pointer(&pl->img);
    struct backend_image_info info;
    image_info_from(im->img, &info);
    pl->cb(pl->data, &info, NULL);
    backend_image_info_release(&info);
  }
  uv_close((uv_handle_t *)&pl->relay.async, pull_closed);
}

static int
rl_image_prepare(struct backend *b, const char *ref, enum backend_pull_policy policy,
                 backend_progress_cb on_progress, backend_image_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct rl_pull *pl = xcalloc(1, sizeof *pl);
  pl->r = r;
  pl->ref = xstrdup(ref);
  pl->policy = policy == BACKEND_PULL_ALWAYS  ? IMG_PULL_ALWAYS
               : policy == BACKEND_PULL_NEVER ? IMG_PULL_NEVER
                                              : IMG_PULL_MISSING;
  pl->cb = cb;
  pl->data = data;
  relay_init(&pl->relay, b->loop, on_progress, data, pl);
  r->active++;
  int rc = uv_queue_work(b->loop, &pl->work, pull_work, pull_after);
  if (rc < 0) {
    uv_close((uv_handle_t *)&pl->relay.async, pull_closed); /* frees pl, no callback */
    return -1;
  }
  return 0;
}

/* ---- image builds (backends/build, on libuv's thread pool) ---- */

struct rl_build {
  uv_work_t work;
  uv_async_t async;
  struct rootless *r;
  char *context_tar, *dockerfile, *tag;
  struct ci_strv args; /* "K=V" */
  bool pull;
  backend_done_cb cb;
  void *data;
  struct ci_error *err;
  struct rl_relay relay; /* progress from the building thread */
};

static void
build_progress(const char *line, void *data)
{
  struct rl_build *bd = data;
  relay_push(&bd->relay, xstrdup(line));
}

static void
build_work(uv_work_t *w)
{
  struct rl_build *bd = container_of(w, struct rl_build, work);
  struct rootless *r = bd->r;
  /* A store handle of its own: a build is long, and pulls must not wait for it. */
  struct img_store *store = NULL;
  if (rootless_store_open(&store, NULL, &bd->err) < 0)
    return;
  struct bld_opts o = {
      .helper = r->helper,
      .runs_dir = r->runs_dir,
      .context_tar = bd->context_tar,
      .dockerfile = bd->dockerfile,
      .tag = bd->tag,
      .args = &bd->args,
      .pull = bd->pull,
      .on_progress = build_progress,
      .progress_data = bd,
      .cancel = &r->cancel_builds,
  };
  struct img_image *img = NULL;
  if (bld_build(store, &o, &img, &bd->err) == 0)
    img_image_free(img);
  img_store_free(store);
}

static void
build_closed(uv_handle_t *h)
{
  struct rl_build *bd = h->data;
  struct rootless *r = bd->r;
  relay_release(&bd->relay);
  ci_strv_release(&bd->args);
  ci_error_free(&bd->err);
  free(bd->context_tar);
  free(bd->dockerfile);
  free(bd->tag);
  free(bd);
  r->active--;
  maybe_closed(r);
}

/* A Ctrl-C (or SIGTERM) stops running builds at once: the scheduler waits for their callbacks,
 * and a RUN step may run for minutes.  The scheduler's own watchers see the signal too. */
static void
build_on_signal(uv_signal_t *h, int sig)
{
  struct rootless *r = h->data;
  (void)sig;
  r->cancel_builds = 1;
}

static void
build_signal_closed(uv_handle_t *h)
{
  struct rootless *r = h->data;
  r->active--;
  maybe_closed(r);
}

static void
build_watch(struct rootless *r, bool on)
{
  uv_signal_t *hs[2] = {&r->sigint, &r->sigterm};
  int sigs[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    if (on) {
      uv_signal_init(r->base.loop, hs[i]);
      hs[i]->data = r;
      uv_signal_start(hs[i], build_on_signal, sigs[i]);
      uv_unref((uv_handle_t *)hs[i]);
      r->active++;
    } else {
      uv_close((uv_handle_t *)hs[i], build_signal_closed);
    }
  }
}

static void
build_after(uv_work_t *w, int status)
{
  struct rl_build *bd = container_of(w, struct rl_build, work);
  relay_flush(&bd->relay);
  if (status == UV_ECANCELED && !bd->err)
    ci_error_make(&bd->err, CI_ECANCELED, "build of %s canceled", bd->tag);
  if (bd->err)
    ci_error_prefix(&bd->err, "building %s", bd->tag);
  if (--bd->r->nbuilds == 0)
    build_watch(bd->r, false);
  bd->cb(bd->data, bd->err);
  uv_close((uv_handle_t *)&bd->relay.async, build_closed);
}

static int
rl_image_build(struct backend *b, const struct backend_build_spec *spec,
               backend_progress_cb on_progress, backend_done_cb cb, void *data)
{
  struct rootless *r = R(b);
  if (!spec->context_tar || !spec->dockerfile || !spec->tag)
    return -EINVAL;
  struct rl_build *bd = xcalloc(1, sizeof *bd);
  bd->r = r;
  bd->context_tar = xstrdup(spec->context_tar);
  bd->dockerfile = xstrdup(spec->dockerfile);
  bd->tag = xstrdup(spec->tag);
  bd->pull = spec->pull;
  for (size_t i = 0; spec->args && i < spec->args->n; i++)
    ci_strv_push_take(&bd->args,
                      xasprintf("%s=%s", spec->args->v[i].key, spec->args->v[i].value));
  bd->cb = cb;
  bd->data = data;
  relay_init(&bd->relay, b->loop, on_progress, data, bd);
  r->active++;
  int rc = uv_queue_work(b->loop, &bd->work, build_work, build_after);
  if (rc < 0) {
    uv_close((uv_handle_t *)&bd->relay.async, build_closed); /* frees bd, no callback */
    return -EIO;
  }
  if (r->nbuilds++ == 0) {
    r->cancel_builds = 0;
    build_watch(r, true);
  }
  return 0;
}

static struct rl_image *
find_image(struct rootless *r, const char *ref)
{
  for (size_t i = r->nimages; i-- > 0;)
    if (!strcmp(r->images[i]->ref, ref))
      return r->images[i];
  return NULL;
}

/* ---- containers ---- */

struct rl_container {
  struct rootless *r;
  struct rl_container *next;
  char *id;
  char *run_dir;
  char *hostname;
  pid_t pid; /* the container's init, as the host sees it */
  struct rl_image *image;
  struct rl_proc *monitor; /* NULL once it ended */
  bool ready;
  bool removing;
  struct ci_error *monitor_err; /* how the monitor failed, if it did */
  backend_id_cb create_cb;
  void *create_data;
  backend_done_cb remove_cb;
  void *remove_data;
  /* a service's main process (additional containers), if any */
  char **service_argv;
  struct cfg_env service_env;
};

/* argv of a helper command that works in container c */
static void
argv_begin_in(struct argv *a, struct rootless *r, const char *cmd, const struct rl_container *c)
{
  argv_begin(a, r, cmd);
  argv_add(a, "--pid");
  argv_addf(a, "%ld", (long)c->pid);
}

static struct rl_container *
find_container(struct rootless *r, const char *id)
{
  for (struct rl_container *c = r->containers; c; c = c->next)
    if (!strcmp(c->id, id))
      return c;
  return NULL;
}

/* A container that can take execs and copies: ready and not being removed. */
static struct rl_container *
live_container(struct rootless *r, const char *id)
{
  struct rl_container *c = find_container(r, id);
  return c && c->ready && !c->removing ? c : NULL;
}

static void
container_free(struct rl_container *c)
{
  struct rl_container **pp = &c->r->containers;
  while (*pp && *pp != c)
    pp = &(*pp)->next;
  if (*pp)
    *pp = c->next;
  ci_error_free(&c->monitor_err);
  if (c->service_argv) {
    for (char **a = c->service_argv; *a; a++)
      free(*a);
    free(c->service_argv);
  }
  cfg_env_release(&c->service_env);
  free(c->id);
  free(c->run_dir);
  free(c->hostname);
  free(c);
}

static void start_service(struct rl_container *c);
static void log_helper_lines(const struct ci_buf *b, enum ci_log_level level);

static void
monitor_on_out(struct rl_proc *p)
{
  struct rl_container *c = p->ctx;
  if (c->ready)
    return;
  const char *s = ci_buf_str(&p->obuf);
  const char *nl = strchr(s, '\n');
  if (!nl)
    return;
  long pid = 0;
  char *end = NULL;
  if (ci_str_has_prefix(s, "ready ")) {
    pid = strtol(s + 6, &end, 10);
  }
  if (pid <= 0 || end != nl) {
    ci_error_make(&c->monitor_err, -EPROTO, "unexpected answer from %s: %.*s", c->r->helper,
                  (int)(nl - s), s);
    /* Ends the monitor; monitor_on_end reports the failure. */
    if (!p->in_closed) {
      p->in_closed = true;
      proc_close((uv_handle_t *)&p->in);
    }
    return;
  }
  c->pid = (pid_t)pid;
  c->ready = true;
  /* What the helper could not apply (limits, id mapping) is for the user to see. */
  if (p->ebuf.len) {
    log_helper_lines(&p->ebuf, CI_LOG_WARN);
    ci_buf_reset(&p->ebuf);
  }
  if (c->service_argv)
    start_service(c);
  c->create_cb(c->create_data, c->id, NULL);
}

static void
log_helper_lines(const struct ci_buf *b, enum ci_log_level level)
{
  const char *s = ci_buf_str(b);
  while (*s) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (ci_str_has_prefix(s, HELPER_PREFIX)) {
      s += strlen(HELPER_PREFIX);
      len -= strlen(HELPER_PREFIX);
    }
    /* The log says "warning: " itself. */
    if (level == CI_LOG_WARN && len >= 9 && ci_str_has_prefix(s, "warning: ")) {
      s += 9;
      len -= 9;
    }
    if (len)
      ci_log(level, "%.*s", (int)len, s);
    s += len + (nl ? 1 : 0);
  }
}

static void rmtree(const char *path);

static void
monitor_on_end(struct rl_proc *p)
{
  struct rl_container *c = p->ctx;
  c->monitor = NULL;
  if (!c->ready) {
    if (!c->monitor_err) {
      char *why = proc_reason(p);
      ci_error_make(&c->monitor_err, -EIO, "%s", why);
      free(why);
    }
    rmtree(c->run_dir); /* in case the helper died before it could */
    c->create_cb(c->create_data, NULL, c->monitor_err);
    container_free(c);
    return;
  }
  if (p->ebuf.len)
    log_helper_lines(&p->ebuf, c->removing ? CI_LOG_DEBUG : CI_LOG_WARN);
  if (!c->removing) {
    /* Died on its own: the container is gone; remove reports it. */
    char *why = proc_reason(p);
    ci_log(CI_LOG_WARN, "container %s ended unexpectedly: %s", c->id, why);
    free(why);
    return;
  }
  struct ci_error *err = NULL;
  if (p->signal || p->status)
    ci_error_make(&err, -EIO, "removing container %s: the runtime helper %s %d", c->id,
                  p->signal ? "was killed by signal" : "exited with status",
                  p->signal ? p->signal : (int)p->status);
  c->remove_cb(c->remove_data, err);
  ci_error_free(&err);
  container_free(c);
}

static char *
sanitize_hostname(const char *s)
{
  struct ci_buf b = CI_BUF_INIT;
  for (; *s && b.len < 63; s++) {
    char ch = *s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
      ci_buf_addc(&b, ch);
    else if (ch >= 'A' && ch <= 'Z')
      ci_buf_addc(&b, (char)(ch - 'A' + 'a'));
    else if (b.len && b.s[b.len - 1] != '-')
      ci_buf_addc(&b, '-');
  }
  while (b.len && b.s[b.len - 1] == '-')
    b.s[--b.len] = '\0';
  if (!b.len)
    ci_buf_adds(&b, "cirrus");
  return ci_buf_take(&b);
}

/* --network for the helper: the host's by default; with private or none, a task's additional
 * containers join its main container's namespaces (--netns-of its init). */
static int
rl_network_args(struct rootless *r, const struct backend_container_spec *spec, struct argv *a)
{
  enum backend_network net = r->base.network;
  if (net == BACKEND_NET_DEFAULT || net == BACKEND_NET_HOST)
    return 0;
  argv_add(a, "--network");
  argv_add(a, net == BACKEND_NET_NONE ? "none" : "private");
  if (!spec->network_of)
    return 0;
  struct rl_container *main = live_container(r, spec->network_of);
  if (!main) {
    ci_log(CI_LOG_ERROR, "no running container %s to share the network of", spec->network_of);
    return -1;
  }
  argv_add(a, "--netns-of");
  argv_addf(a, "%ld", (long)main->pid);
  return 0;
}

static int
rl_container_create(struct backend *b, const struct backend_container_spec *spec,
                    backend_id_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct rl_image *im = find_image(r, spec->image);
  if (!im)
    return -1; /* image_prepare first: a caller bug */
  struct rl_container *c = xcalloc(1, sizeof *c);
  c->r = r;
  c->image = im;
  c->create_cb = cb;
  c->create_data = data;
  c->id = xasprintf("%.12s-%u", spec->run_id ? spec->run_id : "run", ++r->seq);
  c->hostname = sanitize_hostname(spec->name ? spec->name : c->id);
  c->run_dir = xasprintf("%s/%s-%ld", r->runs_dir, c->id, (long)getpid());
  if (mkdir(c->run_dir, 0700) < 0) {
    ci_log(CI_LOG_ERROR, "cannot create %s: %s", c->run_dir, strerror(errno));
    container_free(c);
    return -1;
  }
  struct argv a;
  argv_begin(&a, r, "create");
  argv_add(&a, "--run-dir");
  argv_add(&a, c->run_dir);
  for (size_t i = 0; i < im->img->layers.n; i++) {
    argv_add(&a, "--layer");
    argv_add(&a, im->img->layers.v[i]);
  }
  argv_add(&a, "--hostname");
  argv_add(&a, c->hostname);
  if (r->rootfs) {
    argv_add(&a, "--rootfs");
    argv_add(&a, r->rootfs);
  }
  if (r->seccomp) {
    argv_add(&a, "--seccomp");
    argv_add(&a, r->seccomp);
  }
  for (size_t i = 0; i < spec->nmounts; i++) {
    argv_add(&a, "--mount");
    argv_addf(&a, "%s:%s%s", spec->mounts[i].host_path, spec->mounts[i].container_path,
              spec->mounts[i].read_only ? ":ro" : "");
  }
  for (size_t i = 0; i < spec->nvolumes; i++) {
    argv_add(&a, "--volume");
    argv_addf(&a, "%s/%s:%s", r->volumes_dir, spec->volumes[i].name,
              spec->volumes[i].container_path);
  }
  /* A limit at or above what the host has limits nothing: no cgroup for it (creating and
   * removing cgroups is most of a container's set-up time on cgroup v1). */
  if (spec->memory_mb && (!b->host_mem_mb || spec->memory_mb < b->host_mem_mb)) {
    argv_add(&a, "--memory-mb");
    argv_addf(&a, "%u", spec->memory_mb);
  }
  if (spec->cpu > 0 && (!b->host_cpus || spec->cpu < (double)b->host_cpus)) {
    argv_add(&a, "--cpus");
    argv_addf(&a, "%g", spec->cpu);
  }
  if (rl_network_args(r, spec, &a) < 0) {
    ci_strv_release(&a.v);
    rmdir(c->run_dir);
    container_free(c);
    return -1;
  }
  char **argv = argv_end(&a);
  if (spec->argv) {
    size_t n = 0;
    while (spec->argv[n])
      n++;
    c->service_argv = xcalloc(n + 1, sizeof *c->service_argv);
    for (size_t i = 0; i < n; i++)
      c->service_argv[i] = xstrdup(spec->argv[i]);
    if (spec->env)
      cfg_env_copy(&c->service_env, spec->env);
  }
  struct rl_proc *p = xcalloc(1, sizeof *p);
  p->has_in = true;
  p->cap = 4096;
  p->on_out_line = monitor_on_out;
  p->on_end = monitor_on_end;
  p->ctx = c;
  struct ci_error *err = NULL;
  int rc = proc_spawn(r, p, argv, &err);
  ci_strv_release(&a.v);
  if (rc < 0) {
    ci_log(CI_LOG_ERROR, "%s", err->msg);
    ci_error_free(&err);
    rmdir(c->run_dir);
    container_free(c);
    return -1;
  }
  c->monitor = p;
  c->next = r->containers;
  r->containers = c;
  return 0;
}

static int
rl_container_remove(struct backend *b, const char *id, backend_done_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct rl_container *c = find_container(r, id);
  if (!c || c->removing || !c->ready)
    return -1;
  c->removing = true;
  c->remove_cb = cb;
  c->remove_data = data;
  if (!c->monitor) {
    /* It ended by itself: whatever it left is collected by gc. */
    container_free(c);
    return defer_done(r, cb, data, NULL);
  }
  struct rl_proc *p = c->monitor;
  if (!p->in_closed) {
    p->in_closed = true;
    proc_close((uv_handle_t *)&p->in); /* EOF: the monitor tears the container down */
  }
  return 0;
}

/* ---- exec ---- */

struct rl_exec {
  backend_output_cb on_output;
  backend_exit_cb on_exit;
  void *data;
};

static void
exec_on_end(struct rl_proc *p)
{
  struct rl_exec *x = p->ctx;
  struct backend_exit ex = {0, 0};
  if (p->signal) {
    ex.signal = p->signal;
    ex.exit_code = 128 + p->signal;
  } else {
    ex.exit_code = (int)p->status;
  }
  x->on_exit(x->data, &ex, NULL);
  free(x);
}

static void
exec_output(void *data, int stream, const char *buf, size_t len)
{
  struct rl_exec *x = data;
  if (x->on_output)
    x->on_output(x->data, stream, buf, len);
}

/* The environment of a step: the image's, then the step's, plus what Docker adds. */
static void
exec_env(const struct rl_container *c, const struct cfg_env *env, const char *user,
         struct cfg_env *out)
{
  const struct img_config *ic = &c->image->img->config;
  for (size_t i = 0; i < ic->env.n; i++) {
    const char *eq = strchr(ic->env.v[i], '=');
    if (!eq || eq == ic->env.v[i])
      continue;
    char *k = xstrndup(ic->env.v[i], (size_t)(eq - ic->env.v[i]));
    cfg_env_set(out, k, eq + 1);
    free(k);
  }
  if (env)
    cfg_env_merge(out, env);
  if (!cfg_env_get(out, "PATH"))
    cfg_env_set(out, "PATH", DEFAULT_PATH);
  if (!cfg_env_get(out, "HOSTNAME"))
    cfg_env_set(out, "HOSTNAME", c->hostname);
  if (!cfg_env_get(out, "HOME") && (!user || !*user || !strcmp(user, "root") ||
                                    !strcmp(user, "0") || ci_str_has_prefix(user, "0:")))
    cfg_env_set(out, "HOME", "/root");
}

static int
exec_start(struct rootless *r, struct rl_container *c, const struct backend_exec_spec *spec,
           backend_output_cb on_output, backend_exit_cb on_exit, void *data)
{
  const struct img_config *ic = &c->image->img->config;
  const char *user = spec->user ? spec->user : ic->user;
  const char *cwd = spec->cwd ? spec->cwd : ic->working_dir;
  struct argv a;
  argv_begin_in(&a, r, "exec", c);
  argv_add(&a, "--run-dir");
  argv_add(&a, c->run_dir);
  if (cwd && *cwd) {
    argv_add(&a, "--cwd");
    argv_add(&a, cwd);
  }
  if (user && *user) {
    argv_add(&a, "--user");
    argv_add(&a, user);
  }
  struct cfg_env env = CFG_ENV_INIT;
  exec_env(c, spec->env, user, &env);
  for (size_t i = 0; i < env.n; i++) {
    argv_add(&a, "--env");
    argv_addf(&a, "%s=%s", env.v[i].key, env.v[i].value);
  }
  cfg_env_release(&env);
  argv_add(&a, "--");
  for (size_t i = 0; spec->argv[i]; i++)
    argv_add(&a, spec->argv[i]);
  char **argv = argv_end(&a);
  struct rl_exec *x = xcalloc(1, sizeof *x);
  x->on_output = on_output;
  x->on_exit = on_exit;
  x->data = data;
  struct rl_proc *p = xcalloc(1, sizeof *p);
  p->on_output = exec_output;
  p->out_data = x;
  p->stream_err = true;
  p->on_end = exec_on_end;
  p->ctx = x;
  struct ci_error *err = NULL;
  int rc = proc_spawn(r, p, argv, &err);
  ci_strv_release(&a.v);
  if (rc < 0) {
    ci_log(CI_LOG_ERROR, "%s", err->msg);
    ci_error_free(&err);
    free(x);
    return -1;
  }
  return 0;
}

static int
rl_exec(struct backend *b, const char *id, const struct backend_exec_spec *spec,
        backend_output_cb on_output, backend_exit_cb on_exit, void *data)
{
  struct rootless *r = R(b);
  struct rl_container *c = live_container(r, id);
  if (!c || !spec->argv || !spec->argv[0])
    return -1;
  return exec_start(r, c, spec, on_output, on_exit, data);
}

/* A service container's main process: its output goes to the debug log.  Its callbacks own a
 * copy of the name: the exec may end after its container was removed and freed. */
static void
service_output(void *data, int stream, const char *buf, size_t len)
{
  const char *hostname = data;
  (void)stream;
  if (ci_log_enabled(CI_LOG_DEBUG))
    ci_log(CI_LOG_DEBUG, "%s: %.*s", hostname, (int)len, buf);
}

static void
service_exit(void *data, const struct backend_exit *ex, const struct ci_error *err)
{
  char *hostname = data;
  if (err)
    ci_log(CI_LOG_WARN, "service %s: %s", hostname, err->msg);
  else if (ex->signal != SIGKILL)
    ci_log(CI_LOG_INFO, "service %s exited with status %d", hostname, ex->exit_code);
  free(hostname);
}

static void
start_service(struct rl_container *c)
{
  struct backend_exec_spec spec = {.argv = (const char *const *)c->service_argv,
                                   .env = &c->service_env};
  char *hostname = xstrdup(c->hostname);
  if (exec_start(c->r, c, &spec, service_output, service_exit, hostname) < 0) {
    ci_log(CI_LOG_WARN, "cannot start the service of %s", c->hostname);
    free(hostname);
  }
}

/* ---- files ---- */

struct rl_file {
  backend_file_cb file_cb;
  backend_done_cb done_cb;
  void *data;
  size_t max;
  const char *what;
};

static void
file_on_end(struct rl_proc *p)
{
  struct rl_file *f = p->ctx;
  struct ci_error *err = NULL;
  if (!p->signal && p->status == 0) {
    if (p->truncated)
      ci_error_make(&err, -EFBIG, "%s is larger than %zu bytes", f->what, f->max);
    f->file_cb(f->data, err ? NULL : ci_buf_str(&p->obuf), err ? 0 : p->obuf.len, err);
  } else if (!p->signal && p->status == 2) {
    f->file_cb(f->data, NULL, 0, NULL);
  } else {
    char *why = proc_reason(p);
    ci_error_make(&err, -EIO, "reading %s: %s", f->what, why);
    free(why);
    f->file_cb(f->data, NULL, 0, err);
  }
  ci_error_free(&err);
  free(f);
}

static void
done_on_end(struct rl_proc *p)
{
  struct rl_file *f = p->ctx;
  struct ci_error *err = NULL;
  if (p->signal || p->status) {
    char *why = proc_reason(p);
    ci_error_make(&err, !p->signal && p->status == 2 ? -ENOENT : -EIO, "%s: %s", f->what, why);
    free(why);
  }
  f->done_cb(f->data, err);
  ci_error_free(&err);
  free(f);
}

static int
file_op(struct rootless *r, char **argv, struct rl_file *f, rl_proc_end_cb on_end)
{
  struct rl_proc *p = xcalloc(1, sizeof *p);
  p->cap = f->max ? f->max : 4096;
  p->on_end = on_end;
  p->ctx = f;
  struct ci_error *err = NULL;
  if (proc_spawn(r, p, argv, &err) < 0) {
    ci_log(CI_LOG_ERROR, "%s", err->msg);
    ci_error_free(&err);
    free(f);
    return -1;
  }
  return 0;
}

/* Read a small regular file of the container straight through /proc/PID/root, resolving
 * the path inside that root (openat2 RESOLVE_IN_ROOT: symlinks cannot lead out of it).
 * 0 with *out, -ENOENT when the file is missing, another negative errno when this way is not
 * possible (no openat2, no access to that /proc entry): then the helper reads it. */
static int
read_in_root(pid_t pid, const char *path, size_t max, struct ci_buf *out, bool *too_big)
{
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/%ld/root", (long)pid);
  cleanup_close int root = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    return -errno;
  struct open_how how = {
      .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  cleanup_close int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -errno;
  if (!S_ISREG(st.st_mode))
    return -EINVAL; /* a FIFO or a device: let the helper say what it is */
  char buf[16384];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (out->len + (size_t)n > max) {
      *too_big = true;
      return 0;
    }
    ci_buf_add(out, buf, (size_t)n);
  }
  return 0;
}

struct rl_read_done {
  uv_timer_t t;
  struct rootless *r;
  backend_file_cb cb;
  void *data;
  struct ci_buf content;
  bool missing;
  struct ci_error *err;
};

static void
read_done_closed(uv_handle_t *h)
{
  struct rl_read_done *d = h->data;
  struct rootless *r = d->r;
  ci_buf_release(&d->content);
  ci_error_free(&d->err);
  free(d);
  r->active--;
  maybe_closed(r);
}

static void
read_done_fire(uv_timer_t *t)
{
  struct rl_read_done *d = t->data;
  if (d->err || d->missing)
    d->cb(d->data, NULL, 0, d->err);
  else
    d->cb(d->data, ci_buf_str(&d->content), d->content.len, NULL);
  uv_close((uv_handle_t *)t, read_done_closed);
}

static int
rl_read_file(struct backend *b, const char *id, const char *path, size_t max,
             backend_file_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct rl_container *c = live_container(r, id);
  if (!c)
    return -1;
  struct ci_buf content = CI_BUF_INIT;
  bool too_big = false;
  int rc = read_in_root(c->pid, path, max, &content, &too_big);
  if (rc == 0 || rc == -ENOENT) {
    struct rl_read_done *d = xcalloc(1, sizeof *d);
    d->r = r;
    d->cb = cb;
    d->data = data;
    d->content = content;
    d->missing = rc == -ENOENT;
    if (too_big)
      ci_error_make(&d->err, -EFBIG, "%s in the container is larger than %zu bytes", path, max);
    uv_timer_init(b->loop, &d->t);
    d->t.data = d;
    r->active++;
    uv_timer_start(&d->t, read_done_fire, 0, 0);
    return 0;
  }
  ci_buf_release(&content);
  ci_log_debug("reading %s through /proc/%ld/root: %s; asking the helper", path, (long)c->pid,
               strerror(-rc));
  struct argv a;
  argv_begin_in(&a, r, "cat", c);
  argv_add(&a, "--max");
  argv_addf(&a, "%zu", max);
  argv_add(&a, path);
  struct rl_file *f = xcalloc(1, sizeof *f);
  f->file_cb = cb;
  f->data = data;
  f->max = max;
  f->what = "a file of the container";
  rc = file_op(r, argv_end(&a), f, file_on_end);
  ci_strv_release(&a.v);
  return rc;
}

static int
rl_copy_in(struct backend *b, const char *id, const char *tar_path, backend_done_cb cb,
           void *data)
{
  struct rootless *r = R(b);
  struct rl_container *c = live_container(r, id);
  if (!c)
    return -1;
  struct argv a;
  argv_begin_in(&a, r, "cp-in", c);
  argv_add(&a, tar_path);
  struct rl_file *f = xcalloc(1, sizeof *f);
  f->done_cb = cb;
  f->data = data;
  f->what = "copying into the container";
  int rc = file_op(r, argv_end(&a), f, done_on_end);
  ci_strv_release(&a.v);
  return rc;
}

static int
rl_copy_out(struct backend *b, const char *id, const char *path, const char *tar_path,
            backend_done_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct rl_container *c = live_container(r, id);
  if (!c)
    return -1;
  struct argv a;
  argv_begin_in(&a, r, "cp-out", c);
  argv_add(&a, path);
  argv_add(&a, tar_path);
  struct rl_file *f = xcalloc(1, sizeof *f);
  f->done_cb = cb;
  f->data = data;
  f->what = "copying out of the container";
  int rc = file_op(r, argv_end(&a), f, done_on_end);
  ci_strv_release(&a.v);
  return rc;
}

/* ---- volumes ---- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D)
    rmdir(path);
  else
    unlink(path);
  return 0; /* best effort: keep going */
}

static int
chmod_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)ftw;
  if (flag == FTW_D && (st->st_mode & 0700) != 0700)
    chmod(path, (st->st_mode & 07777) | 0700);
  return 0;
}

/* Best effort: a directory tree we created (overlay leaves work/work mode 000). */
static void
rmtree(const char *path)
{
  nftw(path, chmod_entry, 16, FTW_PHYS);
  nftw(path, rm_entry, 16, FTW_PHYS | FTW_DEPTH);
}

static bool
volume_name_ok(const char *name)
{
  if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
    return false;
  for (const char *s = name; *s; s++)
    if (*s == '/')
      return false;
  return true;
}

static int
rl_volume_create(struct backend *b, const char *name, const char *run_id, backend_done_cb cb,
                 void *data)
{
  struct rootless *r = R(b);
  (void)run_id;
  struct ci_error *err = NULL;
  if (!volume_name_ok(name)) {
    ci_error_make(&err, CI_EUSAGE, "invalid volume name \"%s\"", name);
  } else {
    cleanup_free char *dir = xasprintf("%s/%s", r->volumes_dir, name);
    if (mkdir(r->volumes_dir, 0711) < 0 && errno != EEXIST)
      ci_error_make(&err, -errno, "cannot create %s: %s", r->volumes_dir, strerror(errno));
    else if (mkdir(dir, 0755) < 0)
      ci_error_make(&err, -errno, "cannot create volume %s: %s", dir, strerror(errno));
  }
  return defer_done(r, cb, data, err);
}

static int
rl_volume_remove(struct backend *b, const char *name, backend_done_cb cb, void *data)
{
  struct rootless *r = R(b);
  struct ci_error *err = NULL;
  if (!volume_name_ok(name)) {
    ci_error_make(&err, CI_EUSAGE, "invalid volume name \"%s\"", name);
  } else {
    cleanup_free char *dir = xasprintf("%s/%s", r->volumes_dir, name);
    rmtree(dir);
    struct stat st;
    if (lstat(dir, &st) == 0)
      ci_error_make(&err, -EPERM, "could not remove all of volume %s", dir);
  }
  return defer_done(r, cb, data, err);
}

/* ---- clean ---- */

struct rl_clean {
  backend_progress_cb on_removed;
  backend_done_cb cb;
  void *data;
  struct rootless *r; /* set for the background gc of open */
};

static void
clean_on_end(struct rl_proc *p)
{
  struct rl_clean *k = p->ctx;
  const char *s = ci_buf_str(&p->obuf);
  while (*s) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (len && k->on_removed) {
      /* the helper says "removed DIR"; clean prints "builtin: removed run directory DIR" */
      static const char pfx[] = "removed ";
      bool plain = len > sizeof pfx - 1 && !strncmp(s, pfx, sizeof pfx - 1);
      char *line = plain ? xasprintf("run directory %.*s", (int)(len - (sizeof pfx - 1)),
                                     s + sizeof pfx - 1)
                         : xstrndup(s, len);
      k->on_removed(k->data, line);
      free(line);
    }
    s += len + (nl ? 1 : 0);
  }
  if (k->r && k->r->bg_gc == k)
    k->r->bg_gc = NULL;
  struct ci_error *err = NULL;
  if (p->signal || p->status) {
    char *why = proc_reason(p);
    ci_error_make(&err, -EIO, "removing stale run directories: %s", why);
    free(why);
  }
  k->cb(k->data, err);
  ci_error_free(&err);
  free(k);
}

static int
start_gc(struct rootless *r, struct rl_clean *k)
{
  struct argv a = {CI_STRV_INIT}; /* gc takes no --ppid: it is short and harmless */
  argv_add(&a, "cirrus-runtime");
  argv_add(&a, "gc");
  argv_add(&a, "--runs");
  argv_add(&a, r->runs_dir);
  struct rl_proc *p = xcalloc(1, sizeof *p);
  p->cap = 1 << 20;
  p->on_end = clean_on_end;
  p->ctx = k;
  struct ci_error *err = NULL;
  int rc = proc_spawn(r, p, argv_end(&a), &err);
  ci_strv_release(&a.v);
  if (rc < 0) {
    ci_log(CI_LOG_ERROR, "%s", err->msg);
    ci_error_free(&err);
    free(k);
  }
  return rc;
}

static int
rl_clean(struct backend *b, const char *run_id, backend_progress_cb on_removed,
         backend_done_cb cb, void *data)
{
  (void)run_id; /* live runs hold their run dir's lock: only stale ones go */
  struct rootless *r = R(b);
  if (r->bg_gc) {
    /* The gc that open started is removing the same directories: report what it removed
     * (its output is read when it ends) instead of racing it with a second one. */
    struct rl_clean *k = r->bg_gc;
    r->bg_gc = NULL;
    k->on_removed = on_removed;
    k->cb = cb;
    k->data = data;
    k->r = NULL;
    return 0;
  }
  struct rl_clean *k = xcalloc(1, sizeof *k);
  k->on_removed = on_removed;
  k->cb = cb;
  k->data = data;
  return start_gc(r, k);
}

static void
gc_quiet(void *data, const char *line)
{
  (void)data;
  ci_log(CI_LOG_DEBUG, "%s", line);
}

static void
gc_done(void *data, const struct ci_error *err)
{
  (void)data;
  if (err)
    ci_log(CI_LOG_DEBUG, "%s", err->msg);
}

/* ---- lifetime ---- */

static void
finish_close(struct rootless *r)
{
  void (*on_closed)(void *) = r->on_closed;
  void *closed_data = r->closed_data;
  for (size_t i = 0; i < r->nimages; i++) {
    free(r->images[i]->ref);
    img_image_free(r->images[i]->img);
    free(r->images[i]);
  }
  free(r->images);
  while (r->containers)
    container_free(r->containers);
  img_store_free(r->store);
  uv_mutex_destroy(&r->store_lock);
  free(r->helper);
  free(r->store_dir);
  free(r->runs_dir);
  free(r->volumes_dir);
  free(r->base.description);
  free(r);
  if (on_closed)
    on_closed(closed_data);
}

struct rl_close_timer {
  uv_timer_t t;
  struct rootless *r;
};

static void
close_timer_closed(uv_handle_t *h)
{
  struct rl_close_timer *ct = h->data;
  struct rootless *r = ct->r;
  free(ct);
  finish_close(r);
}

static void
maybe_closed(struct rootless *r)
{
  if (!r->closing || r->active)
    return;
  r->closing = false; /* once */
  struct rl_close_timer *ct = xcalloc(1, sizeof *ct);
  ct->r = r;
  uv_timer_init(r->base.loop, &ct->t);
  ct->t.data = ct;
  uv_close((uv_handle_t *)&ct->t, close_timer_closed);
}

static void
rl_close(struct backend *b, void (*on_closed)(void *data), void *data)
{
  struct rootless *r = R(b);
  r->on_closed = on_closed;
  r->closed_data = data;
  r->closing = true;
  r->cancel_builds = 1;
  /* Containers still there (a caller that skipped removal): end their monitors. */
  for (struct rl_container *c = r->containers; c; c = c->next)
    if (c->monitor && !c->monitor->in_closed) {
      c->removing = true;
      c->monitor->in_closed = true;
      proc_close((uv_handle_t *)&c->monitor->in);
    }
  maybe_closed(r);
}

static const struct backend_ops rootless_ops = {
    .name = "builtin",
    .image_prepare = rl_image_prepare,
    .container_create = rl_container_create,
    .copy_in = rl_copy_in,
    .exec = rl_exec,
    .read_file = rl_read_file,
    .container_remove = rl_container_remove,
    .image_build = rl_image_build,
    .volume_create = rl_volume_create,
    .volume_remove = rl_volume_remove,
    .clean = rl_clean,
    .copy_out = rl_copy_out,
    .close = rl_close,
};

/* ---- opening ---- */

static bool
executable(const char *path)
{
  return access(path, X_OK) == 0;
}

char *
rootless_helper_path(void)
{
  const char *env = getenv("CIRRUS_RUNTIME");
  if (env && *env)
    return executable(env) ? xstrdup(env) : NULL;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = '\0';
      char *p = xasprintf("%s/cirrus-runtime", self);
      if (executable(p))
        return p;
      free(p);
      /* installed: <prefix>/bin/cirrus -> <prefix>/libexec/cirrus/cirrus-runtime */
      char *up = strrchr(self, '/');
      if (up) {
        *up = '\0';
        p = xasprintf("%s/libexec/cirrus/cirrus-runtime", self);
        if (executable(p))
          return p;
        free(p);
      }
    }
  }
#ifdef CIRRUS_LIBEXECDIR
  if (executable(CIRRUS_LIBEXECDIR "/cirrus/cirrus-runtime"))
    return xstrdup(CIRRUS_LIBEXECDIR "/cirrus/cirrus-runtime");
#endif
  return NULL;
}

/*
 * As root the containers run as a subordinate uid that is "other" to every directory above the
 * store: each existing ancestor must let others search it, or the layers cannot be mounted.
 * Say which one, now, rather than "Permission denied" from inside a container.
 */
static int
store_reachable(const char *dir, uint32_t id_shift, struct ci_error **err)
{
  cleanup_free char *p = xstrdup(dir);
  for (char *slash = strrchr(p, '/'); slash; slash = strrchr(p, '/')) {
    *slash = '\0';
    const char *anc = *p ? p : "/";
    struct stat st;
    if (stat(anc, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH))
      return ci_error_make(err, CI_EUSAGE,
                           "the image store %s is under %s (mode %04o), which containers cannot "
                           "enter: they run as uid %u and up, not as root; make it searchable "
                           "(chmod o+x %s) or set CIRRUS_STORE to another directory",
                           dir, anc, (unsigned)(st.st_mode & 07777), (unsigned)id_shift, anc);
    if (!*p)
      break;
  }
  return 0;
}

int
rootless_store_open(struct img_store **out, char **dir_out, struct ci_error **err)
{
  cleanup_free char *dir = NULL;
  const char *env = getenv("CIRRUS_STORE");
  if (env && *env) {
    if (env[0] != '/')
      return ci_error_make(err, CI_EUSAGE, "CIRRUS_STORE must be an absolute path, not '%s'",
                           env);
    dir = xstrdup(env);
  } else if (img_store_default_dir(&dir, err) < 0) {
    return -1;
  }
  /* Root: containers map 0..65535 to a subordinate range, and the layers are owned by it. */
  struct img_store_opts so = {0};
  if (geteuid() == 0) {
    so.id_shift = rt_root_id_base(NULL);
    if (store_reachable(dir, so.id_shift, err) < 0)
      return -1;
  }
  if (img_store_open(dir, &so, out, err) < 0)
    return ci_error_prefix(err, "opening the image store %s", dir);
  if (dir_out)
    *dir_out = steal_pointer(&dir);
  return 0;
}

/* Run `helper check` and wait: can this machine run containers at all? */
static int
check_machine(const char *helper, char **summary, struct ci_error **err)
{
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return ci_error_make(err, -errno, "pipe: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  char *argv[] = {(char *)"cirrus-runtime", (char *)"check", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, helper, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc) {
    close(fds[0]);
    return ci_error_make(err, -rc, "cannot run %s: %s", helper, strerror(rc));
  }
  struct ci_buf out = CI_BUF_INIT;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (out.len < 65536)
      ci_buf_add(&out, buf, (size_t)n);
  }
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    struct ci_buf why = CI_BUF_INIT;
    const char *s = ci_buf_str(&out);
    /* indent the helper's lines under the message */
    while (*s) {
      const char *nl = strchr(s, '\n');
      size_t len = nl ? (size_t)(nl - s) : strlen(s);
      if (len)
        ci_buf_addf(&why, "\n    %.*s", (int)len, s);
      s += len + (nl ? 1 : 0);
    }
    ci_error_make(err, -EPERM, "this machine cannot run rootless containers:%s",
                  why.len ? ci_buf_str(&why) : " (no details)");
    ci_buf_release(&why);
    ci_buf_release(&out);
    return -EPERM;
  }
  *summary = ci_buf_take(&out);
  return 0;
}

static bool
dir_has_entries(const char *path)
{
  DIR *d = opendir(path);
  if (!d)
    return false;
  struct dirent *e;
  bool any = false;
  while (!any && (e = readdir(d)))
    any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return any;
}

static int
mkdir_p(const char *path, mode_t mode)
{
  char *p = xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0755) < 0 && errno != EEXIST) {
      free(p);
      return -1;
    }
    *s = '/';
  }
  int rc = mkdir(p, mode) < 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return rc;
}

static int
rootless_open(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
              struct ci_error **err)
{
  (void)opts;
  /* The root file system's driver (backends/runtime/README.md): auto unless asked. */
  const char *rootfs = getenv("CIRRUS_ROOTFS");
  enum rt_rootfs driver = RT_ROOTFS_AUTO;
  if (rootfs && *rootfs && rt_rootfs_parse(rootfs, &driver) < 0)
    return ci_error_make(err, CI_EUSAGE,
                         "CIRRUS_ROOTFS must be auto, overlay, fuse-overlayfs or copy, not '%s'",
                         rootfs);
  /* The steps' seccomp filter: the default deny-list unless asked (like Docker's
   * --security-opt seccomp=unconfined). */
  const char *seccomp = getenv("CIRRUS_SECCOMP");
  enum rt_seccomp profile = RT_SECCOMP_DEFAULT;
  if (seccomp && *seccomp && rt_seccomp_parse(seccomp, &profile) < 0)
    return ci_error_make(err, CI_EUSAGE, "CIRRUS_SECCOMP must be default or unconfined, not '%s'",
                         seccomp);
  cleanup_free char *helper = rootless_helper_path();
  if (!helper)
    return ci_error_make(err, -ENOENT,
                         "the runtime helper cirrus-runtime was not found next to cirrus or in "
                         "libexec/cirrus (set CIRRUS_RUNTIME to its path)");
  /* Probing costs a few milliseconds: only when "auto" must know whether to offer us;
   * otherwise the first container says what is missing. */
  cleanup_free char *summary = NULL;
  bool automatic = !opts || !opts->name || !strcmp(opts->name, "auto");
  if (automatic && check_machine(helper, &summary, err) < 0)
    return -1;
  cleanup_free char *dir = NULL;
  struct img_store *store = NULL;
  if (rootless_store_open(&store, &dir, err) < 0)
    return -1;
  struct rootless *r = xcalloc(1, sizeof *r);
  r->base.ops = &rootless_ops;
  r->base.loop = loop;
  r->helper = steal_pointer(&helper);
  r->store = store;
  r->store_dir = steal_pointer(&dir);
  r->runs_dir = xasprintf("%s/runs", r->store_dir);
  r->volumes_dir = xasprintf("%s/volumes", r->store_dir);
  uv_mutex_init(&r->store_lock);
  snprintf(r->ppid, sizeof r->ppid, "%ld", (long)getpid());
  r->rootfs = driver == RT_ROOTFS_AUTO ? NULL : rt_rootfs_name(driver);
  r->seccomp = profile == RT_SECCOMP_DEFAULT ? NULL : rt_seccomp_name(profile);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  r->base.host_cpus = cpus > 0 ? (unsigned)cpus : 0;
  r->base.host_mem_mb =
      pages > 0 && page > 0 ? (unsigned long)((unsigned long long)pages * page >> 20) : 0;
  /* The mapped root of a container must be able to reach its run dir. */
  if (mkdir_p(r->runs_dir, 0711) < 0) {
    ci_error_make(err, -errno, "cannot create %s: %s", r->runs_dir, strerror(errno));
    img_store_free(r->store);
    uv_mutex_destroy(&r->store_lock);
    free(r->helper);
    free(r->store_dir);
    free(r->runs_dir);
    free(r->volumes_dir);
    free(r);
    return -1;
  }
  r->base.description = xasprintf("builtin (store %s, helper %s)", r->store_dir, r->helper);
  if (summary && ci_log_enabled(CI_LOG_DEBUG))
    ci_log(CI_LOG_DEBUG, "runtime check:\n%s", summary);
  /* Collect what killed runs left behind, in the background (run dirs of live runs are
   * locked and stay). */
  if (dir_has_entries(r->runs_dir)) {
    struct rl_clean *k = xcalloc(1, sizeof *k);
    k->on_removed = gc_quiet;
    k->cb = gc_done;
    k->r = r;
    if (start_gc(r, k) == 0)
      r->bg_gc = k;
  }
  *out = &r->base;
  return 0;
}

const struct backend_factory rootless_factory = {"builtin", rootless_open};
