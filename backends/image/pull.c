/* backends/image/pull.c - pulling an image from a source into the store, and looking images up.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
img__err_canceled(struct ci_error **err)
{
  return ci_error_make(err, CI_ECANCELED, "canceled");
}

void
img__progress(struct img__pull_ctx *c, enum img_progress_phase ph, const char *digest,
              uint64_t done, uint64_t total, bool reused)
{
  if (!c->opts.on_progress)
    return;
  struct img_progress p = {ph, digest, c->index, c->count, done, total, reused};
  c->opts.on_progress(&p, c->opts.progress_data);
}

/* ------------------------------------------------------------ streams */

void
img__stream_close(struct img__stream *st)
{
  if (st)
    st->close(st);
}

struct fd_stream {
  struct img__stream base;
  int fd;
};

static ssize_t
fd_stream_read(struct img__stream *st, void *buf, size_t n, struct ci_error **err)
{
  struct fd_stream *f = (struct fd_stream *)st;
  for (;;) {
    ssize_t r = read(f->fd, buf, n);
    if (r >= 0)
      return r;
    if (errno != EINTR)
      return ci_error_make(err, -errno, "cannot read blob: %s", strerror(errno));
  }
}

static void
fd_stream_close(struct img__stream *st)
{
  struct fd_stream *f = (struct fd_stream *)st;
  if (f->fd >= 0)
    close(f->fd);
  free(st->unlink_after);
  free(f);
}

struct img__stream *
img__stream_fd(int fd, uint64_t total)
{
  struct fd_stream *f = xcalloc(1, sizeof(*f));
  f->base.read = fd_stream_read;
  f->base.close = fd_stream_close;
  f->base.total = total;
  f->fd = fd;
  return &f->base;
}

void
img__resolved_release(struct img__resolved *r)
{
  free(r->manifest);
  free(r->manifest_digest);
  img__manifest_release(&r->m);
  memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------ images */

void
img_image_free(struct img_image *img)
{
  if (!img)
    return;
  free(img->name);
  free(img->id);
  free(img->manifest_digest);
  ci_strv_release(&img->diff_ids);
  ci_strv_release(&img->layers);
  img__config_release(&img->config);
  for (size_t i = 0; i < img->n_lock_fds; i++)
    if (img->lock_fds[i] >= 0)
      close(img->lock_fds[i]);
  free(img->lock_fds);
  free(img);
}

void
img_image_freep(struct img_image **img)
{
  img_image_free(*img);
  *img = NULL;
}

static bool
layer_present(struct img_store *s, const char *hex)
{
  cleanup_free char *meta = img__store_path(s, "layers/%s/meta.json", hex);
  return access(meta, F_OK) == 0;
}

/* Build a struct img_image from the record of image id, taking a shared lock on each layer.
 * The caller holds store.lock (shared). */
static int
load_image(struct img_store *s, const char *name, const char *id, struct img_image **out,
           struct ci_error **err)
{
  const char *idhex = img__digest_hex(id);
  cleanup_free char *rec = img__store_path(s, "images/%s.json", idhex);
  cleanup_free char *cfgpath = img__store_path(s, "blobs/sha256/%s", idhex);
  json_t *j = NULL;
  int ret = img__json_read(rec, 16 << 20, &j, err);
  if (ret < 0)
    return ret;
  cleanup_free char *cfg = NULL;
  size_t cfglen = 0;
  struct img_image *img = xcalloc(1, sizeof(*img));
  img->name = xstrdup(name);
  img->id = xstrdup(id);
  const char *m = img__json_str(j, "manifest");
  img->manifest_digest = m ? xstrdup(m) : NULL;
  json_t *sz = json_object_get(j, "size");
  img->size = json_is_integer(sz) ? (uint64_t)json_integer_value(sz) : 0;
  ret = img__json_strv(json_object_get(j, "layers"), "image record layers", &img->diff_ids, err);
  json_decref(j);
  if (ret == 0)
    ret = ci_read_file(cfgpath, IMG__MAX_CONFIG, &cfg, &cfglen, err);
  if (ret == 0)
    ret = img__verify_bytes(cfg, cfglen, id, "stored image config", err);
  if (ret == 0) {
    struct ci_strv ids = CI_STRV_INIT;
    ret = img__config_parse(cfg, cfglen, &img->config, &ids, err);
    ci_strv_release(&ids);
  }
  img->lock_fds = xcalloc(img->diff_ids.n ? img->diff_ids.n : 1, sizeof(int));
  for (size_t i = 0; ret == 0 && i < img->diff_ids.n; i++) {
    const char *d = img->diff_ids.v[i];
    if (!img__digest_valid(d)) {
      ret = ci_error_make(err, CI_EPROTO, "image record has an invalid layer '%s'", d);
      break;
    }
    cleanup_free char *lock = img__store_path(s, "locks/%s.lock", img__digest_hex(d));
    int fd = -1;
    ret = img__lock(lock, LOCK_SH, NULL, &fd, err);
    if (ret < 0)
      break;
    img->lock_fds[img->n_lock_fds++] = fd;
    if (!layer_present(s, img__digest_hex(d))) {
      ret =
          ci_error_make(err, -ENOENT, "layer %s of image '%s' is missing from the store", d, name);
      break;
    }
    ci_strv_push_take(&img->layers, img__store_path(s, "layers/%s/diff", img__digest_hex(d)));
  }
  if (ret < 0) {
    img_image_free(img);
    return IMG__PREFIX(err, ret, "image '%s'", name);
  }
  *out = img;
  return 0;
}

static int
lock_store_shared(struct img_store *s, const volatile sig_atomic_t *cancel, int *fd,
                  struct ci_error **err)
{
  cleanup_free char *path = img__store_path(s, "store.lock");
  return img__lock(path, LOCK_SH, cancel, fd, err);
}

/* Find name (canonical) or id in the index; *id and *name get new strings. */
static int
find_in_index(struct img_store *s, const char *ref, char **name, char **id, struct ci_error **err)
{
  struct img__index ix;
  int ret = img__index_load(s, &ix, err);
  if (ret < 0)
    return ret;
  ret = -ENOENT;
  if (img__digest_valid(ref)) {
    cleanup_free char *rec = img__store_path(s, "images/%s.json", img__digest_hex(ref));
    if (access(rec, F_OK) == 0) {
      *id = xstrdup(ref);
      *name = xstrdup(ref);
      for (size_t i = 0; i < ix.n; i++)
        if (!strcmp(ix.v[i].id, ref)) {
          free(*name);
          *name = xstrdup(ix.v[i].name);
          break;
        }
      ret = 0;
    }
  } else {
    struct img__index_entry *e = img__index_find(&ix, ref);
    if (e) {
      *name = xstrdup(e->name);
      *id = xstrdup(e->id);
      ret = 0;
    }
  }
  img__index_release(&ix);
  return ret;
}

static int
lookup_locked(struct img_store *s, const char *key, const char *shown, struct img_image **out,
              struct ci_error **err)
{
  cleanup_free char *name = NULL, *id = NULL;
  int ret = find_in_index(s, key, &name, &id, err);
  if (ret == -ENOENT)
    return ci_error_make(err, -ENOENT, "image '%s' is not in the store", shown);
  if (ret < 0)
    return ret;
  return load_image(s, name, id, out, err);
}

int
img_lookup(struct img_store *s, const char *ref, struct img_image **out, struct ci_error **err)
{
  cleanup_free char *key = NULL;
  if (img__digest_valid(ref)) {
    key = xstrdup(ref);
  } else {
    struct img_ref r = {0};
    int ret = img_ref_parse(ref, &r, err);
    if (ret < 0)
      return ret;
    key = steal_pointer(&r.canonical);
    img_ref_release(&r);
  }
  cleanup_close int sfd = -1;
  int ret = lock_store_shared(s, NULL, &sfd, err);
  if (ret < 0)
    return ret;
  return lookup_locked(s, key, ref, out, err);
}

/* ------------------------------------------------------------ layers */

struct layer_reader {
  struct img__stream *st;
  struct img__pull_ctx *ctx;
  const char *label;
  struct img__hash hash;
  bool hashing;
  uint64_t done;
};

static ssize_t
layer_read(void *data, void *buf, size_t n, struct ci_error **err)
{
  struct layer_reader *lr = data;
  if (img__canceled(lr->ctx->opts.cancel))
    return img__err_canceled(err);
  ssize_t r = lr->st->read(lr->st, buf, n, err);
  if (r > 0) {
    if (lr->hashing)
      img__hash_update(&lr->hash, buf, (size_t)r);
    lr->done += (uint64_t)r;
    img__progress(lr->ctx, IMG_PROGRESS_EXTRACT, lr->label, lr->done, lr->st->total, false);
  }
  return r;
}

/* Extract one opened layer stream into staging, verify it, and move it into layers/. */
static int
extract_layer(struct img__pull_ctx *ctx, const struct img__desc *d, const char *diff_id,
              struct img__stream *st, struct ci_error **err)
{
  struct img_store *s = ctx->store;
  const char *hex = img__digest_hex(diff_id);
  cleanup_free char *stage = img__store_path(s, "staging/%s-XXXXXX", hex);
  if (!mkdtemp(stage))
    return ci_error_make(err, -errno, "cannot create '%s': %s", stage, strerror(errno));
  cleanup_free char *diffdir = xasprintf("%s/diff", stage);
  int ret = 0;
  cleanup_close int dfd = -1;
  if (mkdir(diffdir, 0755) < 0 || (dfd = open(diffdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    ret = ci_error_make(err, -errno, "cannot create '%s': %s", diffdir, strerror(errno));

  struct layer_reader lr = {st, ctx, d->digest ? d->digest : diff_id, {NULL}, false, 0};
  lr.hashing = d->digest && !st->verified;
  if (lr.hashing)
    img__hash_init(&lr.hash);
  struct img__extract_opts eo = {s->opaque, s->preserve_owner, ctx->opts.cancel, s->id_shift};
  /* A runtime's user namespace root must be able to reach the layer (mkdtemp made it 0700). */
  if (ret == 0 && chmod(stage, 0755) < 0)
    ret = ci_error_make(err, -errno, "cannot chmod '%s': %s", stage, strerror(errno));
  if (ret == 0 && s->preserve_owner && s->id_shift && chown(diffdir, s->id_shift, s->id_shift) < 0)
    ret = ci_error_make(err, -errno, "cannot chown '%s': %s", diffdir, strerror(errno));
  struct img__extract_result res;
  if (ret == 0)
    ret = img__extract(dfd, layer_read, &lr, &eo, &res, err);
  /* Hash any bytes after the end of the compressed stream too. */
  char tail[8192];
  for (ssize_t r = 1; ret == 0 && r > 0;) {
    r = layer_read(&lr, tail, sizeof(tail), err);
    if (r < 0)
      ret = (int)r;
  }
  if (ret == 0 && lr.hashing) {
    char got[IMG__DIGEST_LEN + 1];
    img__hash_final(&lr.hash, got);
    if (strcmp(got, d->digest) != 0)
      ret = ci_error_make(err, CI_EPROTO, "layer blob has digest %s, expected %s", got, d->digest);
    else if (d->size >= 0 && lr.done != (uint64_t)d->size)
      ret = ci_error_make(err, CI_EPROTO, "layer blob %s has %llu bytes, expected %lld", d->digest,
                          (unsigned long long)lr.done, (long long)d->size);
  }
  if (lr.hashing)
    img__hash_release(&lr.hash);
  if (ret == 0 && strcmp(res.diff_id, diff_id) != 0)
    ret =
        ci_error_make(err, CI_EPROTO, "layer content has diff id %s, but the image config says %s",
                      res.diff_id, diff_id);
  if (ret == 0) {
    json_t *meta = json_pack("{s:s, s:s?, s:I, s:I, s:I}", "diff_id", diff_id, "digest", d->digest,
                             "size", (json_int_t)res.bytes, "entries", (json_int_t)res.entries,
                             "extracted", (json_int_t)time(NULL));
    cleanup_free char *metapath = xasprintf("%s/meta.json", stage);
    ret = img__json_write(metapath, meta, err);
    json_decref(meta);
  }
  if (ret == 0) {
    cleanup_free char *final = img__store_path(s, "layers/%s", hex);
    if (rename(stage, final) < 0) {
      if (errno == EEXIST || errno == ENOTEMPTY)
        ret = 0; /* someone without our lock discipline got there: theirs is as good */
      else
        ret = ci_error_make(err, -errno, "cannot move layer into '%s': %s", final, strerror(errno));
      img__rm_rf(stage, NULL);
    }
  } else {
    img__rm_rf(stage, NULL);
  }
  return ret;
}

static int
ensure_layer(struct img__pull_ctx *ctx, struct img__source *src, const struct img__desc *d,
             const char *diff_id, struct ci_error **err)
{
  struct img_store *s = ctx->store;
  const char *hex = img__digest_hex(diff_id);
  const char *label = d->digest ? d->digest : diff_id;
  if (layer_present(s, hex)) {
    ctx->stats.layers_reused++;
    img__progress(ctx, IMG_PROGRESS_LAYER_DONE, label, 0, 0, true);
    return 0;
  }
  cleanup_free char *lock = img__store_path(s, "locks/%s.lock", hex);
  cleanup_close int lfd = -1;
  int ret = img__lock(lock, LOCK_EX | LOCK_NB, NULL, &lfd, err);
  if (ret == -EWOULDBLOCK) {
    img__progress(ctx, IMG_PROGRESS_WAIT, label, 0, 0, false);
    ret = img__lock(lock, LOCK_EX, ctx->opts.cancel, &lfd, err);
  }
  if (ret < 0)
    return ret;
  if (layer_present(s, hex)) {
    ctx->stats.layers_reused++;
    img__progress(ctx, IMG_PROGRESS_LAYER_DONE, label, 0, 0, true);
    return 0;
  }
  struct img__stream *st = NULL;
  ret = src->ops->open_blob(src, d, &st, err);
  if (ret < 0)
    return ret;
  ret = extract_layer(ctx, d, diff_id, st, err);
  if (st->unlink_after && (ret == 0 || (err && *err && (*err)->code == CI_EPROTO)))
    unlink(st->unlink_after); /* extracted, or proven bad: not needed either way */
  img__stream_close(st);
  if (ret < 0)
    return ret;
  ctx->stats.layers_extracted++;
  img__progress(ctx, IMG_PROGRESS_LAYER_DONE, label, 0, 0, false);
  return 0;
}

/* ------------------------------------------------------------ pull */

static int
store_blob(struct img_store *s, const char *digest, const void *data, size_t len,
           struct ci_error **err)
{
  cleanup_free char *path = img__store_path(s, "blobs/sha256/%s", img__digest_hex(digest));
  if (access(path, F_OK) == 0)
    return 0;
  return img__write_atomic(path, data, len, err);
}

static int
write_record(struct img_store *s, const char *id, const char *manifest_digest,
             const struct ci_strv *diff_ids, const struct img_config *cfg, struct ci_error **err)
{
  uint64_t size = 0;
  json_t *layers = json_array();
  for (size_t i = 0; i < diff_ids->n; i++) {
    json_array_append_new(layers, json_string(diff_ids->v[i]));
    cleanup_free char *meta =
        img__store_path(s, "layers/%s/meta.json", img__digest_hex(diff_ids->v[i]));
    json_t *m = NULL;
    if (img__json_read(meta, 1 << 20, &m, NULL) == 0) {
      json_t *sz = json_object_get(m, "size");
      size += json_is_integer(sz) ? (uint64_t)json_integer_value(sz) : 0;
      json_decref(m);
    }
  }
  json_t *j = json_pack("{s:i, s:s, s:s?, s:o, s:I, s:s?, s:s?}", "version", 1, "id", id,
                        "manifest", manifest_digest, "layers", layers, "size", (json_int_t)size,
                        "os", cfg->os, "architecture", cfg->architecture);
  cleanup_free char *path = img__store_path(s, "images/%s.json", img__digest_hex(id));
  int ret = img__json_write(path, j, err);
  json_decref(j);
  return ret;
}

static int
open_source(const struct img_ref *ref, struct img__pull_ctx *ctx, struct img__source **src,
            struct ci_error **err)
{
  switch (ref->transport) {
  case IMG_TRANSPORT_OCI:
    return img__oci_open(ref, ctx, src, err);
  case IMG_TRANSPORT_DOCKER_ARCHIVE:
    return img__archive_open(ref, ctx, src, err);
  case IMG_TRANSPORT_DOCKER:
    return img__registry_open(ref, ctx, src, err);
  }
  CI_BUG("unknown transport %d", (int)ref->transport);
}

/* The pull proper, with store.lock held shared. */
static int
pull_locked(struct img__pull_ctx *ctx, const struct img_ref *ref, struct img__source *src,
            const struct img__platform *want, struct img_image **out, struct ci_error **err)
{
  struct img_store *s = ctx->store;
  struct img__resolved res = {0};
  cleanup_free char *cfg = NULL;
  size_t cfglen = 0;
  struct img_config config = {0};
  struct ci_strv diff_ids = CI_STRV_INIT;
  char id[IMG__DIGEST_LEN + 1];

  img__progress(ctx, IMG_PROGRESS_RESOLVE, ref->canonical, 0, 0, false);
  int ret = src->ops->resolve(src, want, &res, err);
  if (ret == 0)
    ret = src->ops->read_blob(src, &res.m.config, IMG__MAX_CONFIG, &cfg, &cfglen, err);
  if (ret == 0 && res.m.config.digest)
    ret = img__verify_bytes(cfg, cfglen, res.m.config.digest, "image config", err);
  if (ret == 0) {
    img__digest_bytes(cfg, cfglen, id);
    ret = img__config_parse(cfg, cfglen, &config, &diff_ids, err);
  }
  if (ret == 0 && diff_ids.n != res.m.n_layers)
    ret = ci_error_make(err, CI_EPROTO, "the manifest has %zu layers but the config %zu diff ids",
                        res.m.n_layers, diff_ids.n);
  if (ret == 0 && ((config.os && strcmp(config.os, want->os) != 0) ||
                   (config.architecture && strcmp(config.architecture, want->arch) != 0))) {
    char have[96], w[96];
    img__platform_format(config.os, config.architecture, config.variant, have, sizeof(have));
    img__platform_format(want->os, want->arch, want->variant, w, sizeof(w));
    ci_log_warn("image '%s' is for platform %s, not %s", ref->canonical, have, w);
  }
  ctx->count = (unsigned)diff_ids.n;
  for (size_t i = 0; ret == 0 && i < diff_ids.n; i++) {
    ctx->index = (unsigned)i;
    ret = ensure_layer(ctx, src, &res.m.layers[i], diff_ids.v[i], err);
    if (ret < 0)
      ret = IMG__PREFIX(err, ret, "layer %zu/%zu (%s)", i + 1, diff_ids.n,
                        res.m.layers[i].digest ? res.m.layers[i].digest : diff_ids.v[i]);
  }
  if (ret == 0 && res.manifest)
    ret = store_blob(s, res.manifest_digest, res.manifest, res.manifest_len, err);
  if (ret == 0)
    ret = store_blob(s, id, cfg, cfglen, err);
  if (ret == 0)
    ret = write_record(s, id, res.manifest_digest, &diff_ids, &config, err);
  if (ret == 0)
    ret = img__index_set(s, ref->canonical, id, res.manifest_digest, err);
  if (ret == 0)
    ret = load_image(s, ref->canonical, id, out, err);
  if (ret == 0)
    img__progress(ctx, IMG_PROGRESS_DONE, ref->canonical, 0, 0, false);
  img__resolved_release(&res);
  img__config_release(&config);
  ci_strv_release(&diff_ids);
  return ret;
}

int
img_pull(struct img_store *s, const char *refstr, const struct img_pull_opts *opts,
         struct img_image **out, struct ci_error **err)
{
  struct img__pull_ctx ctx;
  memset(&ctx, 0, sizeof(ctx));
  ctx.store = s;
  if (opts)
    ctx.opts = *opts;
  struct img_ref ref = {0};
  int ret = img_ref_parse(refstr, &ref, err);
  if (ret < 0)
    return ret;
  struct img__platform want;
  if (ctx.opts.platform)
    ret = img__platform_parse(ctx.opts.platform, &want, err);
  else
    img__platform_host(&want);

  cleanup_close int sfd = -1;
  if (ret == 0)
    ret = lock_store_shared(s, ctx.opts.cancel, &sfd, err);
  if (ret == 0 && ctx.opts.policy != IMG_PULL_ALWAYS) {
    struct ci_error *lerr = NULL;
    ret = lookup_locked(s, ref.canonical, refstr, out, &lerr);
    if (ret == 0 || ctx.opts.policy == IMG_PULL_NEVER) {
      if (ret < 0) {
        ret = ci_error_make(err, lerr->code,
                            "%s and the pull policy is 'never': pull it first (`cirrus images "
                            "pull %s`) or run without --pull=never",
                            lerr->msg, refstr);
      } else if (ctx.opts.stats) {
        memset(ctx.opts.stats, 0, sizeof(*ctx.opts.stats));
        ctx.opts.stats->layers_reused = (unsigned)(*out)->layers.n;
      }
      ci_error_free(&lerr);
      img_ref_release(&ref);
      return ret;
    }
    if (lerr->code != -ENOENT)
      ci_log_debug("image '%s' will be pulled again: %s", ref.canonical, lerr->msg);
    ci_error_free(&lerr);
    ret = 0;
  }
  struct img__source *src = NULL;
  if (ret == 0)
    ret = open_source(&ref, &ctx, &src, err);
  if (ret == 0)
    ret = pull_locked(&ctx, &ref, src, &want, out, err);
  if (src)
    src->ops->free(src);
  if (ctx.opts.stats)
    *ctx.opts.stats = ctx.stats;
  if (ret < 0)
    ret = IMG__PREFIX(err, ret, "pulling '%s'", refstr);
  img_ref_release(&ref);
  return ret;
}

int
img_store_tag(struct img_store *s, const char *src, const char *name, struct ci_error **err)
{
  struct img_ref r = {0};
  int ret = img_ref_parse(name, &r, err);
  if (ret < 0)
    return ret;
  if (r.transport != IMG_TRANSPORT_DOCKER || r.digest) {
    ret = ci_error_make(err, CI_EUSAGE,
                        "cannot name an image '%s': use a registry name with a tag "
                        "(e.g. localhost/project/image:tag)",
                        name);
    img_ref_release(&r);
    return ret;
  }
  struct img_image *img = NULL;
  ret = img_lookup(s, src, &img, err);
  if (ret == 0)
    ret = img__index_set(s, r.canonical, img->id, img->manifest_digest, err);
  img_image_free(img);
  img_ref_release(&r);
  return ret;
}

/* ------------------------------------------------------------ images made here (builds) */

int
img_store_add_layer(struct img_store *s, const char *tar_path, char **diff_id,
                    struct ci_error **err)
{
  /* The diff id is the digest of the uncompressed tar: hash it first, extract only if new. */
  cleanup_close int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open layer '%s': %s", tar_path, strerror(errno));
  struct img__hash h;
  img__hash_init(&h);
  char buf[65536];
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      img__hash_release(&h);
      return ci_error_make(err, -errno, "cannot read layer '%s': %s", tar_path, strerror(errno));
    }
    if (n == 0)
      break;
    img__hash_update(&h, buf, (size_t)n);
    total += (uint64_t)n;
  }
  char id[IMG__DIGEST_LEN + 1];
  img__hash_final(&h, id);
  img__hash_release(&h);
  cleanup_close int sfd = -1;
  int ret = lock_store_shared(s, NULL, &sfd, err);
  if (ret < 0)
    return ret;
  const char *hex = img__digest_hex(id);
  if (!layer_present(s, hex)) {
    cleanup_free char *lock = img__store_path(s, "locks/%s.lock", hex);
    cleanup_close int lfd = -1;
    ret = img__lock(lock, LOCK_EX, NULL, &lfd, err);
    if (ret == 0 && !layer_present(s, hex)) {
      if (lseek(fd, 0, SEEK_SET) < 0)
        return ci_error_make(err, -errno, "cannot rewind '%s': %s", tar_path, strerror(errno));
      struct img__pull_ctx ctx;
      memset(&ctx, 0, sizeof ctx);
      ctx.store = s;
      struct img__desc d = {0};
      d.size = -1;
      struct img__stream *st = img__stream_fd(steal_fd(&fd), total);
      st->verified = true;
      ret = extract_layer(&ctx, &d, id, st, err);
      img__stream_close(st);
    }
    if (ret < 0)
      return IMG__PREFIX(err, ret, "adding layer '%s'", tar_path);
  }
  *diff_id = xstrdup(id);
  return 0;
}

int
img_store_add_image(struct img_store *s, const char *name, const char *config, size_t len,
                    struct img_image **out, struct ci_error **err)
{
  struct img_ref r = {0};
  int ret = img_ref_parse(name, &r, err);
  if (ret < 0)
    return ret;
  if (r.transport != IMG_TRANSPORT_DOCKER || r.digest) {
    ret = ci_error_make(err, CI_EUSAGE,
                        "cannot name an image '%s': use a registry name with a tag", name);
    img_ref_release(&r);
    return ret;
  }
  struct img_config cfg = {0};
  struct ci_strv diff_ids = CI_STRV_INIT;
  char id[IMG__DIGEST_LEN + 1];
  img__digest_bytes(config, len, id);
  cleanup_close int sfd = -1;
  ret = img__config_parse(config, len, &cfg, &diff_ids, err);
  if (ret == 0)
    ret = lock_store_shared(s, NULL, &sfd, err);
  for (size_t i = 0; ret == 0 && i < diff_ids.n; i++)
    if (!img__digest_valid(diff_ids.v[i]) || !layer_present(s, img__digest_hex(diff_ids.v[i])))
      ret = ci_error_make(err, -ENOENT, "layer %s is not in the store", diff_ids.v[i]);
  if (ret == 0)
    ret = store_blob(s, id, config, len, err);
  if (ret == 0)
    ret = write_record(s, id, NULL, &diff_ids, &cfg, err);
  if (ret == 0)
    ret = img__index_set(s, r.canonical, id, NULL, err);
  if (ret == 0)
    ret = load_image(s, r.canonical, id, out, err);
  img__config_release(&cfg);
  ci_strv_release(&diff_ids);
  img_ref_release(&r);
  return ret < 0 ? IMG__PREFIX(err, ret, "adding image '%s'", name) : 0;
}
