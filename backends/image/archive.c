/* backends/image/archive.c - the docker-archive: source (what `docker save` and `podman save`
 * write): a tar holding manifest.json, the config JSON and one tar per layer, members being
 * found by name (symlinked members such as "<id>/layer.tar" are followed inside the archive). */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ARCH_MAX_HOPS 8

struct arch_src {
  struct img__source base;
  char *file;                              /* owned */
  char *subname;                           /* owned; canonical NAME:TAG or NULL */
  char *what;                              /* owned; "docker-archive:FILE" */
  struct ci_strv link_names, link_targets; /* symlink members, already resolved to full names */
};

/* Clean a member name: drop "./" and empty components, resolve "..": returns a new string or
 * NULL when it climbs out of the archive root. */
static char *
member_clean(const char *name)
{
  struct ci_strv parts = CI_STRV_INIT;
  cleanup_free char *copy = xstrdup(name);
  char *save = NULL;
  for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (!strcmp(c, "."))
      continue;
    if (!strcmp(c, "..")) {
      if (parts.n == 0) {
        ci_strv_release(&parts);
        return NULL;
      }
      free(parts.v[--parts.n]);
      continue;
    }
    ci_strv_push(&parts, c);
  }
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  for (size_t i = 0; i < parts.n; i++)
    ci_buf_addf(&b, "%s%s", i ? "/" : "", parts.v[i]);
  ci_strv_release(&parts);
  return ci_buf_take(&b);
}

static int
arch_open_archive(struct arch_src *a, struct archive **out, struct ci_error **err)
{
  struct archive *ar = archive_read_new();
  if (!ar)
    CI_BUG("archive_read_new failed");
  archive_read_support_filter_gzip(ar);
  archive_read_support_filter_zstd(ar);
  archive_read_support_filter_bzip2(ar);
  archive_read_support_filter_xz(ar);
  archive_read_support_format_tar(ar);
  if (archive_read_open_filename(ar, a->file, 64 * 1024) != ARCHIVE_OK) {
    int ret =
        ci_error_make(err, -ENOENT, "cannot open '%s': %s", a->file, archive_error_string(ar));
    archive_read_free(ar);
    return ret;
  }
  *out = ar;
  return 0;
}

/* Follow symlink members to the real member name (a new string). */
static int
arch_resolve_name(struct arch_src *a, const char *name, char **out, struct ci_error **err)
{
  char *cur = member_clean(name);
  if (!cur)
    return ci_error_make(err, CI_EPROTO, "%s: member '%s' is outside the archive", a->what, name);
  for (int hop = 0; hop < ARCH_MAX_HOPS; hop++) {
    size_t i = 0;
    for (; i < a->link_names.n; i++)
      if (!strcmp(a->link_names.v[i], cur))
        break;
    if (i == a->link_names.n) {
      *out = cur;
      return 0;
    }
    free(cur);
    cur = xstrdup(a->link_targets.v[i]);
  }
  free(cur);
  return ci_error_make(err, CI_EPROTO, "%s: too many symlinks for member '%s'", a->what, name);
}

/* Position ar at the data of member name; -ENOENT when it is not there. */
static int
arch_seek(struct arch_src *a, struct archive *ar, const char *name, int64_t *size,
          struct ci_error **err)
{
  struct archive_entry *e;
  int r;
  while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    cleanup_free char *n = member_clean(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
    if (n && !strcmp(n, name)) {
      if (archive_entry_filetype(e) != AE_IFREG)
        return ci_error_make(err, CI_EPROTO, "%s: member '%s' is not a regular file", a->what,
                             name);
      *size = archive_entry_size(e);
      return 0;
    }
  }
  if (r != ARCHIVE_EOF)
    return ci_error_make(err, CI_EPROTO, "%s: %s", a->what, archive_error_string(ar));
  return ci_error_make(err, -ENOENT, "%s: no member '%s'", a->what, name);
}

static int
arch_read_member(struct arch_src *a, const char *name, size_t max, char **buf, size_t *len,
                 struct ci_error **err)
{
  cleanup_free char *real = NULL;
  int ret = arch_resolve_name(a, name, &real, err);
  if (ret < 0)
    return ret;
  struct archive *ar = NULL;
  if ((ret = arch_open_archive(a, &ar, err)) < 0)
    return ret;
  int64_t size = 0;
  ret = arch_seek(a, ar, real, &size, err);
  if (ret == 0 && (size < 0 || (uint64_t)size > max))
    ret =
        ci_error_make(err, -EFBIG, "%s: member '%s' is larger than %zu bytes", a->what, name, max);
  if (ret == 0) {
    char *b = xmalloc((size_t)size + 1);
    size_t got = 0;
    while (got < (size_t)size) {
      la_ssize_t n = archive_read_data(ar, b + got, (size_t)size - got);
      if (n <= 0) {
        ret = ci_error_make(err, CI_EPROTO, "%s: cannot read '%s': %s", a->what, name,
                            n < 0 ? archive_error_string(ar) : "truncated");
        break;
      }
      got += (size_t)n;
    }
    if (ret == 0) {
      b[got] = '\0';
      *buf = b;
      *len = got;
    } else {
      free(b);
    }
  }
  archive_read_free(ar);
  return ret;
}

static int
arch_read_blob(struct img__source *src, const struct img__desc *d, size_t max, char **buf,
               size_t *len, struct ci_error **err)
{
  return arch_read_member((struct arch_src *)src, d->path, max, buf, len, err);
}

struct arch_stream {
  struct img__stream base;
  struct archive *ar;
  struct arch_src *a;
};

static ssize_t
arch_stream_read(struct img__stream *st, void *buf, size_t n, struct ci_error **err)
{
  struct arch_stream *s = (struct arch_stream *)st;
  la_ssize_t r = archive_read_data(s->ar, buf, n);
  if (r < 0)
    return ci_error_make(err, CI_EPROTO, "%s: %s", s->a->what, archive_error_string(s->ar));
  return r;
}

static void
arch_stream_close(struct img__stream *st)
{
  struct arch_stream *s = (struct arch_stream *)st;
  archive_read_free(s->ar);
  free(st->unlink_after);
  free(s);
}

static int
arch_open_blob(struct img__source *src, const struct img__desc *d, struct img__stream **out,
               struct ci_error **err)
{
  struct arch_src *a = (struct arch_src *)src;
  cleanup_free char *real = NULL;
  int ret = arch_resolve_name(a, d->path, &real, err);
  if (ret < 0)
    return ret;
  struct archive *ar = NULL;
  if ((ret = arch_open_archive(a, &ar, err)) < 0)
    return ret;
  int64_t size = 0;
  if ((ret = arch_seek(a, ar, real, &size, err)) < 0) {
    archive_read_free(ar);
    return ret;
  }
  struct arch_stream *s = xcalloc(1, sizeof(*s));
  s->base.read = arch_stream_read;
  s->base.close = arch_stream_close;
  s->base.total = size > 0 ? (uint64_t)size : 0;
  s->ar = ar;
  s->a = a;
  *out = &s->base;
  return 0;
}

/* Scan the archive once for its symlink members. */
static int
arch_scan_links(struct arch_src *a, struct ci_error **err)
{
  struct archive *ar = NULL;
  int ret = arch_open_archive(a, &ar, err);
  if (ret < 0)
    return ret;
  struct archive_entry *e;
  int r;
  while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    if (archive_entry_filetype(e) != AE_IFLNK || !archive_entry_pathname(e) ||
        !archive_entry_symlink(e))
      continue;
    cleanup_free char *name = member_clean(archive_entry_pathname(e));
    if (!name)
      continue;
    const char *target = archive_entry_symlink(e);
    cleanup_free char *joined = NULL;
    const char *slash = strrchr(name, '/');
    if (target[0] == '/')
      joined = xstrdup(target);
    else if (slash)
      joined = xasprintf("%.*s/%s", (int)(slash - name), name, target);
    else
      joined = xstrdup(target);
    char *t = member_clean(joined);
    if (!t)
      continue;
    ci_strv_push(&a->link_names, name);
    ci_strv_push_take(&a->link_targets, t);
  }
  if (r != ARCHIVE_EOF)
    ret = ci_error_make(err, CI_EPROTO, "%s: %s", a->what, archive_error_string(ar));
  archive_read_free(ar);
  return ret;
}

static bool
repo_tags_match(const json_t *tags, const char *want)
{
  size_t i;
  json_t *t;
  json_array_foreach(tags, i, t)
  {
    if (!json_is_string(t))
      continue;
    struct img_ref r = {0};
    if (img_ref_parse(json_string_value(t), &r, NULL) < 0)
      continue;
    bool ok = r.transport == IMG_TRANSPORT_DOCKER && !strcmp(r.canonical, want);
    img_ref_release(&r);
    if (ok)
      return true;
  }
  return false;
}

static int
arch_resolve(struct img__source *src, const struct img__platform *want, struct img__resolved *out,
             struct ci_error **err)
{
  (void)want; /* an archive holds one platform per image; pull_locked warns on a mismatch */
  struct arch_src *a = (struct arch_src *)src;
  int ret = arch_scan_links(a, err);
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (ret == 0)
    ret = arch_read_member(a, "manifest.json", IMG__MAX_INDEX, &buf, &len, err);
  if (ret < 0)
    return ret;
  json_error_t je;
  json_t *j = json_loadb(buf, len, 0, &je);
  if (!json_is_array(j)) {
    json_decref(j);
    return ci_error_make(err, CI_EPROTO, "%s: manifest.json is not a JSON array", a->what);
  }
  const json_t *pick = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(j, i, v)
  {
    if (a->subname ? repo_tags_match(json_object_get(v, "RepoTags"), a->subname)
                   : json_array_size(j) == 1)
      pick = v;
    if (pick)
      break;
  }
  if (!pick) {
    if (a->subname)
      ret = ci_error_make(err, -ENOENT, "%s: no image named '%s'", a->what, a->subname);
    else
      ret = ci_error_make(err, -EINVAL, "%s holds %zu images: name one with %s:NAME:TAG", a->what,
                          json_array_size(j), a->what);
    json_decref(j);
    return ret;
  }
  const char *config = img__json_str(pick, "Config");
  const json_t *layers = json_object_get(pick, "Layers");
  if (!config || !json_is_array(layers)) {
    json_decref(j);
    return ci_error_make(err, CI_EPROTO, "%s: manifest.json entry without Config or Layers",
                         a->what);
  }
  struct img__manifest *m = &out->m;
  m->kind = IMG__KIND_MANIFEST;
  m->media_type = xstrdup("docker-archive");
  m->config.path = xstrdup(config);
  m->config.size = -1;
  /* docker names the config "<digest hex>.json" (newer versions "blobs/sha256/<hex>"):
   * verify it when it does. */
  const char *base = strrchr(config, '/') ? strrchr(config, '/') + 1 : config;
  cleanup_free char *cand = xasprintf("sha256:%.*s", 64, base);
  if (img__digest_valid(cand) && (!base[64] || !strcmp(base + 64, ".json")))
    m->config.digest = xstrdup(cand);
  m->n_layers = json_array_size(layers);
  m->layers = xcalloc(m->n_layers ? m->n_layers : 1, sizeof(*m->layers));
  json_array_foreach(layers, i, v)
  {
    if (!json_is_string(v)) {
      ret = ci_error_make(err, CI_EPROTO, "%s: Layers[%zu] is not a string", a->what, i);
      break;
    }
    const char *p = json_string_value(v);
    m->layers[i].path = xstrdup(p);
    m->layers[i].size = -1;
    /* OCI-style archives (docker 25+) store layers as blobs/sha256/<hex>: a digest to check */
    if (ci_str_has_prefix(p, "blobs/sha256/")) {
      cleanup_free char *dg = xasprintf("sha256:%s", p + 13);
      if (img__digest_valid(dg))
        m->layers[i].digest = xstrdup(dg);
    }
  }
  json_decref(j);
  if (ret < 0)
    img__resolved_release(out);
  return ret;
}

static void
arch_free(struct img__source *src)
{
  struct arch_src *a = (struct arch_src *)src;
  free(a->file);
  free(a->subname);
  free(a->what);
  ci_strv_release(&a->link_names);
  ci_strv_release(&a->link_targets);
  free(a);
}

static const struct img__source_ops arch_ops = {
    "docker-archive", arch_resolve, arch_read_blob, arch_open_blob, arch_free,
};

int
img__archive_open(const struct img_ref *ref, struct img__pull_ctx *ctx, struct img__source **out,
                  struct ci_error **err)
{
  struct arch_src *a = xcalloc(1, sizeof(*a));
  a->base.ops = &arch_ops;
  a->base.ctx = ctx;
  a->file = xstrdup(ref->file);
  a->subname = ref->subname ? xstrdup(ref->subname) : NULL;
  a->what = xasprintf("docker-archive:%s", ref->file);
  *out = &a->base;
  return 0;
}
