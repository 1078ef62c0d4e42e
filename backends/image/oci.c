/* backends/image/oci.c - the oci: source: an OCI image layout directory. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct oci_src {
  struct img__source base;
  char *dir;  /* owned */
  char *tag;  /* owned; NULL = the only image */
  char *what; /* owned; "oci:DIR" for messages */
};

static char *
blob_path(const struct oci_src *o, const char *digest)
{
  return xasprintf("%s/blobs/sha256/%s", o->dir, img__digest_hex(digest));
}

static int
oci_read_blob(struct img__source *src, const struct img__desc *d, size_t max, char **buf,
              size_t *len, struct ci_error **err)
{
  struct oci_src *o = (struct oci_src *)src;
  if (!d->digest || !img__digest_valid(d->digest))
    return ci_error_make(err, CI_EPROTO, "%s: descriptor without a valid digest", o->what);
  cleanup_free char *path = blob_path(o, d->digest);
  int ret = ci_read_file(path, max, buf, len, err);
  if (ret < 0)
    return IMG__PREFIX(err, ret, "%s", o->what);
  if (d->size >= 0 && *len != (size_t)d->size) {
    free(*buf);
    *buf = NULL;
    return ci_error_make(err, CI_EPROTO, "%s: blob %s has %zu bytes, expected %lld", o->what,
                         d->digest, *len, (long long)d->size);
  }
  return 0;
}

static int
oci_open_blob(struct img__source *src, const struct img__desc *d, struct img__stream **out,
              struct ci_error **err)
{
  struct oci_src *o = (struct oci_src *)src;
  if (!d->digest || !img__digest_valid(d->digest))
    return ci_error_make(err, CI_EPROTO, "%s: layer without a valid digest", o->what);
  cleanup_free char *path = blob_path(o, d->digest);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "%s: cannot open layer '%s': %s", o->what, path,
                         strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return ci_error_make(err, CI_EPROTO, "%s: layer '%s' is not a regular file", o->what, path);
  }
  *out = img__stream_fd(fd, (uint64_t)st.st_size);
  return 0;
}

/* Read, verify and parse the document d points at. */
static int
fetch_doc(struct oci_src *o, const struct img__desc *d, char **buf, size_t *len,
          struct img__manifest *m, struct ci_error **err)
{
  int ret = oci_read_blob(&o->base, d, IMG__MAX_MANIFEST, buf, len, err);
  if (ret == 0)
    ret = img__verify_bytes(*buf, *len, d->digest, "manifest", err);
  if (ret == 0)
    ret = img__manifest_parse(*buf, *len, d->media_type, m, err);
  if (ret < 0) {
    free(*buf);
    *buf = NULL;
    return IMG__PREFIX(err, ret, "%s", o->what);
  }
  return 0;
}

static int
oci_resolve(struct img__source *src, const struct img__platform *want, struct img__resolved *out,
            struct ci_error **err)
{
  struct oci_src *o = (struct oci_src *)src;
  cleanup_free char *layout = xasprintf("%s/oci-layout", o->dir);
  json_t *lj = NULL;
  int ret = img__json_read(layout, 1 << 16, &lj, err);
  if (ret < 0)
    return IMG__PREFIX(err, ret, "'%s' is not an OCI image layout", o->dir);
  const char *ver = img__json_str(lj, "imageLayoutVersion");
  if (!ver || strncmp(ver, "1.", 2) != 0) {
    ret = ci_error_make(err, CI_EPROTO, "%s: unsupported imageLayoutVersion '%s'", o->what,
                        ver ? ver : "(none)");
    json_decref(lj);
    return ret;
  }
  json_decref(lj);

  cleanup_free char *ipath = xasprintf("%s/index.json", o->dir);
  cleanup_free char *ibuf = NULL;
  size_t ilen = 0;
  struct img__manifest idx = {0};
  ret = ci_read_file(ipath, IMG__MAX_INDEX, &ibuf, &ilen, err);
  if (ret == 0)
    ret = img__index_parse(ibuf, ilen, &idx, err);
  if (ret < 0)
    return IMG__PREFIX(err, ret, "%s", o->what);

  /* The candidates: entries with the wanted ref.name, or all of them. */
  const struct img__desc *pick = NULL;
  size_t matches = 0;
  for (size_t i = 0; i < idx.n_manifests; i++) {
    const struct img__desc *d = &idx.manifests[i];
    if (o->tag ? (d->ref_name && !strcmp(d->ref_name, o->tag)) : !d->attestation) {
      if (!pick)
        pick = d;
      matches++;
    }
  }
  if (matches > 1) {
    /* Several images: a per-platform set under one name (or no names) is resolved like an
     * index; anything else is ambiguous. */
    struct img__manifest sub = {0};
    sub.kind = IMG__KIND_INDEX;
    sub.manifests = xcalloc(matches, sizeof(*sub.manifests));
    for (size_t i = 0; i < idx.n_manifests; i++) {
      const struct img__desc *d = &idx.manifests[i];
      if (o->tag ? (d->ref_name && !strcmp(d->ref_name, o->tag)) : !d->attestation)
        sub.manifests[sub.n_manifests++] = *d; /* shallow copy, not released */
    }
    const struct img__desc *sel = NULL;
    int r = img__index_select(&sub, want, &sel, NULL);
    size_t k = r == 0 ? (size_t)(sel - sub.manifests) : 0;
    free(sub.manifests);
    if (r < 0) {
      img__manifest_release(&idx);
      if (!o->tag)
        return ci_error_make(err, -EINVAL, "%s holds %zu images: name one with oci:%s:TAG", o->what,
                             matches, o->dir);
      return ci_error_make(err, -ENOENT, "%s: no image tagged '%s' for this platform", o->what,
                           o->tag);
    }
    for (size_t i = 0; i < idx.n_manifests; i++) {
      const struct img__desc *d = &idx.manifests[i];
      if (o->tag ? (d->ref_name && !strcmp(d->ref_name, o->tag)) : !d->attestation) {
        if (k-- == 0) {
          pick = d;
          break;
        }
      }
    }
  }
  if (!pick) {
    img__manifest_release(&idx);
    if (o->tag)
      return ci_error_make(err, -ENOENT, "%s: no image tagged '%s'", o->what, o->tag);
    return ci_error_make(err, -ENOENT, "%s: the layout holds no image", o->what);
  }

  struct img__desc cur = {0};
  cur.digest = xstrdup(pick->digest);
  cur.media_type = pick->media_type ? xstrdup(pick->media_type) : NULL;
  cur.size = pick->size;
  img__manifest_release(&idx);
  for (int depth = 0;; depth++) {
    char *buf = NULL;
    size_t len = 0;
    struct img__manifest m = {0};
    ret = fetch_doc(o, &cur, &buf, &len, &m, err);
    if (ret < 0)
      break;
    if (m.kind == IMG__KIND_MANIFEST) {
      out->manifest = buf;
      out->manifest_len = len;
      out->manifest_digest = steal_pointer(&cur.digest);
      out->m = m;
      break;
    }
    free(buf);
    const struct img__desc *sel = NULL;
    if (depth >= 3)
      ret = ci_error_make(err, CI_EPROTO, "%s: indexes nested too deeply", o->what);
    else
      ret = img__index_select(&m, want, &sel, err);
    if (ret == 0) {
      img__desc_release(&cur);
      cur.digest = xstrdup(sel->digest);
      cur.media_type = sel->media_type ? xstrdup(sel->media_type) : NULL;
      cur.size = sel->size;
    }
    img__manifest_release(&m);
    if (ret < 0) {
      ret = IMG__PREFIX(err, ret, "%s", o->what);
      break;
    }
  }
  img__desc_release(&cur);
  return ret;
}

static void
oci_free(struct img__source *src)
{
  struct oci_src *o = (struct oci_src *)src;
  free(o->dir);
  free(o->tag);
  free(o->what);
  free(o);
}

static const struct img__source_ops oci_ops = {
    "oci", oci_resolve, oci_read_blob, oci_open_blob, oci_free,
};

int
img__oci_open(const struct img_ref *ref, struct img__pull_ctx *ctx, struct img__source **out,
              struct ci_error **err)
{
  struct stat st;
  if (stat(ref->file, &st) < 0 || !S_ISDIR(st.st_mode))
    return ci_error_make(err, -ENOENT, "OCI layout '%s' is not a directory", ref->file);
  struct oci_src *o = xcalloc(1, sizeof(*o));
  o->base.ops = &oci_ops;
  o->base.ctx = ctx;
  o->dir = xstrdup(ref->file);
  o->tag = ref->subname ? xstrdup(ref->subname) : NULL;
  o->what = xasprintf("oci:%s", ref->file);
  *out = &o->base;
  return 0;
}
