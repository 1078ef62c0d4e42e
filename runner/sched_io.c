/* runner/sched_io.c - the blocking halves of cache and artifact steps (see sched_internal.h). */
#include "sched_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void msg(struct ci_strv *msgs, const char *fmt, ...) CI_PRINTF(2, 3);

static void
msg(struct ci_strv *msgs, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ci_strv_push_take(msgs, xvasprintf(fmt, ap));
  va_end(ap);
}

/* ---- restore ---- */

static int
restore_blob(struct sched__restore *r, struct cache_store *s, int blob_fd, struct ci_error **err)
{
  int out = open(r->tar_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0)
    return ci_error_make(err, -errno, "cannot create '%s': %s", r->tar_path, strerror(errno));
  int ret = cache_restore(s, blob_fd, r->base, "/", out, &r->digest, err);
  if (close(out) < 0 && ret >= 0)
    ret = ci_error_make(err, -errno, "cannot write '%s': %s", r->tar_path, strerror(errno));
  if (ret < 0)
    unlink(r->tar_path);
  return ret;
}

void
sched__restore_run(struct sched__restore *r)
{
  cleanup_cache_store struct cache_store *s = NULL;
  if (cache_store_open(r->project_dir, r->cache_home, &s, &r->err) < 0)
    return;
  int fd = -1;
  char *found_key = NULL;
  int hit = cache_store_get(s, r->key, &fd, &r->err);
  if (hit < 0)
    return;
  if (hit) {
    msg(&r->msgs, CACHE_MSG_HIT, r->key);
  } else if (r->optimistic) {
    msg(&r->msgs, CACHE_MSG_OPTIMISTIC_LOOKING);
    hit = cache_store_find_latest(s, r->name, &found_key, &fd, &r->err);
    if (hit < 0)
      return;
    if (hit)
      msg(&r->msgs, CACHE_MSG_OPTIMISTIC_FOUND, found_key);
    else
      msg(&r->msgs, CACHE_MSG_OPTIMISTIC_NONE, r->name);
  }
  free(found_key);
  if (!hit)
    return;
  struct ci_error *e = NULL;
  if (restore_blob(r, s, fd, &e) < 0) {
    /* A broken blob is a miss, as upstream: the populate script rebuilds it. */
    msg(&r->msgs, CACHE_MSG_RESTORE_FAILED, r->name, e->msg);
    ci_error_free(&e);
    cache_digest_release(&r->digest);
  } else {
    r->restored = true;
  }
  close(fd);
}

void
sched__restore_release(struct sched__restore *r)
{
  cache_digest_release(&r->digest);
  ci_strv_release(&r->msgs);
  ci_error_free(&r->err);
}

/* ---- save ---- */

struct diff_ctx {
  struct ci_strv *msgs;
};

static void
on_diff(void *data, enum cache_change kind, const char *path)
{
  struct diff_ctx *d = data;
  msg(d->msgs, CACHE_MSG_CHANGE, cache_change_str(kind), path);
}

static char *
dir_of(const char *path)
{
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return xstrdup("/");
  return xstrndup(path, (size_t)(slash - path));
}

static int
save(struct sched__save *sv, struct ci_error **err)
{
  cleanup_cache_store struct cache_store *s = NULL;
  if (cache_store_open(sv->project_dir, sv->cache_home, &s, err) < 0)
    return -1;
  cleanup_cache_save struct cache_save *w = NULL;
  if (cache_save_begin(s, sv->key, sv->plan->base, &w, err) < 0)
    return -1;
  for (size_t i = 0; i < sv->tars->n; i++) {
    int fd = open(sv->tars->v[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return ci_error_make(err, -errno, "cannot open '%s': %s", sv->tars->v[i], strerror(errno));
    char *root = dir_of(sv->folders->v[i]);
    int r = cache_save_add_tar(w, fd, root, sv->folders->v[i], err);
    free(root);
    close(fd);
    if (r < 0)
      return -1;
  }
  if (cache_save_finish(w, err) < 0)
    return -1;
  char *list = cache_folders_join((const char *const *)sv->plan->folders.v, sv->plan->folders.n);
  if (cache_save_is_empty(w)) {
    msg(&sv->msgs, CACHE_MSG_ALL_EMPTY, list);
    free(list);
    return 0;
  }
  const struct cache_digest *d = cache_save_get_digest(w);
  msg(&sv->msgs, CACHE_MSG_SHA, list, d->sha);
  if (sv->available && !strcmp(d->sha, sv->restored->sha)) {
    msg(&sv->msgs, CACHE_MSG_UNCHANGED, sv->name);
    free(list);
    return 0;
  }
  if (sv->available && sv->restored->n) {
    msg(&sv->msgs, CACHE_MSG_CHANGED, sv->name);
    msg(&sv->msgs, CACHE_MSG_CHANGES, list);
    struct diff_ctx dc = {&sv->msgs};
    cache_digest_diff(sv->restored, d, on_diff, &dc);
  }
  free(list);
  if (!sv->available) {
    int hit = cache_store_get(s, sv->key, NULL, err);
    if (hit < 0)
      return -1;
    if (hit) {
      msg(&sv->msgs, CACHE_MSG_ALREADY_UPLOADED, sv->key);
      return 0;
    }
  }
  msg(&sv->msgs, CACHE_MSG_UPLOADING, sv->name);
  if (cache_save_commit(w, err) < 0)
    return -1;
  ci_strv_push_take(&sv->msgs, cache_size_message(sv->name, cache_save_get_size(w)));
  return 0;
}

void
sched__save_run(struct sched__save *sv)
{
  struct ci_error *err = NULL;
  if (save(sv, &err) < 0) {
    /* Upstream logs upload failures and carries on: the step still succeeds. */
    msg(&sv->msgs, CACHE_MSG_UPLOAD_FAILED, sv->name, err ? err->msg : "unknown error");
    msg(&sv->msgs, CACHE_MSG_IGNORING);
    ci_error_free(&err);
  }
}

void
sched__save_release(struct sched__save *sv)
{
  ci_strv_release(&sv->msgs);
}

/* ---- artifacts ---- */

void
sched__artifacts_run(struct sched__artifacts *a)
{
  struct ci_error *first = NULL;
  for (size_t i = 0; i < a->tars->n; i++) {
    int fd = open(a->tars->v[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      ci_error_make(&a->err, -errno, "cannot open '%s': %s", a->tars->v[i], strerror(errno));
      break;
    }
    struct artifacts_save_opts o = a->opts;
    o.tar_root = a->tar_roots->v[i];
    struct ci_error *e = NULL;
    int r = artifacts_save_tar(&o, fd, &a->res, &e);
    close(fd);
    if (r < 0) {
      /* A report that does not parse does not stop the others (CI_EPROTO from parsing is
       * returned after storing everything); anything else stops here. */
      if (!first)
        first = e;
      else
        ci_error_free(&e);
      if (r != CI_EPROTO)
        break;
    }
  }
  if (first && !a->err)
    a->err = first;
  else
    ci_error_free(&first);
}

void
sched__artifacts_release(struct sched__artifacts *a)
{
  artifacts_result_release(&a->res);
  ci_error_free(&a->err);
}

/* ---- port wait ---- */

int
sched__parse_ports(const char *out, unsigned *ports, size_t max)
{
  size_t n = 0;
  const char *p = out;
  for (;;) {
    while (*p == ' ' || *p == '\n')
      p++;
    if (!*p)
      break;
    size_t len = strspn(p, "0123456789ABCDEFabcdef");
    if (len != 4 || (p[len] && p[len] != ' ' && p[len] != '\n') || n == max)
      return -1;
    ports[n++] = (unsigned)strtoul(p, NULL, 16);
    p += len;
  }
  return n ? (int)n : -1;
}

/* ---- listing ---- */

void
sched__parse_listing(const char *buf, size_t len, struct artifacts_path **out, size_t *n)
{
  struct artifacts_path *v = NULL;
  size_t cnt = 0, alloc = 0;
  bool dirs = true;
  const char *p = buf, *end = buf + len;
  while (p < end) {
    const char *z = memchr(p, '\0', (size_t)(end - p));
    if (!z)
      break; /* a cut-off last name */
    if (z == p) {
      dirs = false;
    } else {
      CI_GROW(v, alloc, cnt + 1);
      v[cnt].path = p;
      v[cnt].is_dir = dirs;
      cnt++;
    }
    p = z + 1;
  }
  *out = v;
  *n = cnt;
}
