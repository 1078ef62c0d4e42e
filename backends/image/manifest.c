/* backends/image/manifest.c - manifests, indexes, platform selection and image configs. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

void
img__desc_release(struct img__desc *d)
{
  free(d->media_type);
  free(d->digest);
  free(d->os);
  free(d->arch);
  free(d->variant);
  free(d->ref_name);
  free(d->path);
  memset(d, 0, sizeof(*d));
}

void
img__manifest_release(struct img__manifest *m)
{
  free(m->media_type);
  img__desc_release(&m->config);
  for (size_t i = 0; i < m->n_layers; i++)
    img__desc_release(&m->layers[i]);
  free(m->layers);
  for (size_t i = 0; i < m->n_manifests; i++)
    img__desc_release(&m->manifests[i]);
  free(m->manifests);
  memset(m, 0, sizeof(*m));
}

static char *
dup_or_null(const char *s)
{
  return s ? xstrdup(s) : NULL;
}

static int
parse_desc(const json_t *j, const char *what, struct img__desc *d, struct ci_error **err)
{
  if (!json_is_object(j))
    return ci_error_make(err, CI_EPROTO, "%s is not an object", what);
  const char *digest = img__json_str(j, "digest");
  if (!digest)
    return ci_error_make(err, CI_EPROTO, "%s has no digest", what);
  if (!img__digest_valid(digest))
    return ci_error_make(err, CI_EPROTO, "%s has an unsupported digest '%s' (only sha256)", what,
                         digest);
  json_t *size = json_object_get(j, "size");
  if (size && !json_is_integer(size))
    return ci_error_make(err, CI_EPROTO, "%s has an invalid size", what);
  if (size && json_integer_value(size) < 0)
    return ci_error_make(err, CI_EPROTO, "%s has a negative size", what);
  d->digest = xstrdup(digest);
  d->size = size ? json_integer_value(size) : -1;
  d->media_type = dup_or_null(img__json_str(j, "mediaType"));
  json_t *plat = json_object_get(j, "platform");
  if (json_is_object(plat)) {
    d->os = dup_or_null(img__json_str(plat, "os"));
    d->arch = dup_or_null(img__json_str(plat, "architecture"));
    d->variant = dup_or_null(img__json_str(plat, "variant"));
  }
  json_t *ann = json_object_get(j, "annotations");
  if (json_is_object(ann)) {
    d->ref_name = dup_or_null(img__json_str(ann, "org.opencontainers.image.ref.name"));
    const char *rt = img__json_str(ann, "vnd.docker.reference.type");
    if (rt && !strcmp(rt, "attestation-manifest"))
      d->attestation = true;
  }
  if (d->os && !strcmp(d->os, "unknown") && d->arch && !strcmp(d->arch, "unknown"))
    d->attestation = true;
  return 0;
}

static int
parse_desc_array(const json_t *arr, const char *what, struct img__desc **out, size_t *n,
                 struct ci_error **err)
{
  if (!json_is_array(arr))
    return ci_error_make(err, CI_EPROTO, "%s is missing or not an array", what);
  size_t count = json_array_size(arr);
  struct img__desc *v = xcalloc(count ? count : 1, sizeof(*v));
  for (size_t i = 0; i < count; i++) {
    char label[64];
    snprintf(label, sizeof(label), "%s[%zu]", what, i);
    int ret = parse_desc(json_array_get(arr, i), label, &v[i], err);
    if (ret < 0) {
      for (size_t k = 0; k <= i; k++)
        img__desc_release(&v[k]);
      free(v);
      return ret;
    }
  }
  *out = v;
  *n = count;
  return 0;
}

static bool
is_index_type(const char *mt)
{
  return mt && (!strcmp(mt, IMG__MT_OCI_INDEX) || !strcmp(mt, IMG__MT_DOCKER_LIST));
}

static bool
is_manifest_type(const char *mt)
{
  return mt && (!strcmp(mt, IMG__MT_OCI_MANIFEST) || !strcmp(mt, IMG__MT_DOCKER_MANIFEST));
}

static int
parse_json_manifest(json_t *j, const char *content_type, bool layout_index, struct img__manifest *m,
                    struct ci_error **err)
{
  json_t *sv = json_object_get(j, "schemaVersion");
  const char *mt = img__json_str(j, "mediaType");
  if (json_is_integer(sv) && json_integer_value(sv) == 1)
    return ci_error_make(err, CI_EPROTO,
                         "manifest schema 1 is not supported (deprecated by Docker; push the "
                         "image again with a current tool)");
  if (!mt && content_type && *content_type && strcmp(content_type, "application/json") != 0 &&
      strcmp(content_type, "application/octet-stream") != 0)
    mt = content_type;
  if (mt && (!strcmp(mt, IMG__MT_DOCKER_V1) || !strcmp(mt, IMG__MT_DOCKER_V1_SIGNED)))
    return ci_error_make(err, CI_EPROTO, "manifest schema 1 is not supported");
  if (!json_is_integer(sv) || json_integer_value(sv) != 2)
    return ci_error_make(err, CI_EPROTO, "unsupported manifest: schemaVersion is not 2");
  bool has_manifests = json_object_get(j, "manifests") != NULL;
  bool has_layers = json_object_get(j, "layers") != NULL;
  enum img__kind kind;
  if (layout_index || is_index_type(mt) || (!mt && has_manifests && !has_layers))
    kind = IMG__KIND_INDEX;
  else if (is_manifest_type(mt) || (!mt && has_layers))
    kind = IMG__KIND_MANIFEST;
  else
    return ci_error_make(err, CI_EPROTO, "unsupported manifest media type '%s'",
                         mt ? mt : "(none)");
  m->kind = kind;
  m->media_type = xstrdup(mt                        ? mt
                          : kind == IMG__KIND_INDEX ? IMG__MT_OCI_INDEX
                                                    : IMG__MT_OCI_MANIFEST);
  int ret;
  if (kind == IMG__KIND_INDEX) {
    ret = parse_desc_array(json_object_get(j, "manifests"), "manifests", &m->manifests,
                           &m->n_manifests, err);
  } else {
    ret = parse_desc(json_object_get(j, "config"), "config", &m->config, err);
    if (ret >= 0)
      ret = parse_desc_array(json_object_get(j, "layers"), "layers", &m->layers, &m->n_layers, err);
  }
  if (ret < 0) {
    img__manifest_release(m);
    return ret;
  }
  return 0;
}

int
img__manifest_parse(const char *buf, size_t len, const char *content_type, struct img__manifest *m,
                    struct ci_error **err)
{
  json_t *j = NULL;
  int ret = img__json_parse(buf, len, "manifest", &j, err);
  if (ret < 0)
    return ret;
  ret = parse_json_manifest(j, content_type, false, m, err);
  json_decref(j);
  return ret;
}

int
img__index_parse(const char *buf, size_t len, struct img__manifest *m, struct ci_error **err)
{
  json_t *j = NULL;
  int ret = img__json_parse(buf, len, "index.json", &j, err);
  if (ret < 0)
    return ret;
  ret = parse_json_manifest(j, NULL, true, m, err);
  json_decref(j);
  return ret;
}

/* ------------------------------------------------------------ platforms */

static void
copy_field(char *dst, size_t n, const char *src, size_t len)
{
  if (len >= n)
    len = n - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

int
img__platform_parse(const char *s, struct img__platform *p, struct ci_error **err)
{
  memset(p, 0, sizeof(*p));
  const char *a = strchr(s, '/');
  if (!a || a == s || !a[1])
    return ci_error_make(err, CI_EUSAGE, "invalid platform '%s': expected os/arch[/variant]", s);
  const char *b = strchr(a + 1, '/');
  size_t oslen = (size_t)(a - s);
  size_t archlen = b ? (size_t)(b - a - 1) : strlen(a + 1);
  if (oslen >= sizeof(p->os) || archlen == 0 || archlen >= sizeof(p->arch) ||
      (b && (!b[1] || strlen(b + 1) >= sizeof(p->variant) || strchr(b + 1, '/'))))
    return ci_error_make(err, CI_EUSAGE, "invalid platform '%s': expected os/arch[/variant]", s);
  copy_field(p->os, sizeof(p->os), s, oslen);
  copy_field(p->arch, sizeof(p->arch), a + 1, archlen);
  if (b)
    copy_field(p->variant, sizeof(p->variant), b + 1, strlen(b + 1));
  /* normalise as containerd does */
  if (!strcmp(p->arch, "x86_64") || !strcmp(p->arch, "x86-64"))
    strcpy(p->arch, "amd64");
  else if (!strcmp(p->arch, "aarch64"))
    strcpy(p->arch, "arm64");
  else if (!strcmp(p->arch, "armhf")) {
    strcpy(p->arch, "arm");
    strcpy(p->variant, "v7");
  } else if (!strcmp(p->arch, "armel")) {
    strcpy(p->arch, "arm");
    strcpy(p->variant, "v6");
  }
  if (!strcmp(p->arch, "arm64") && !p->variant[0])
    strcpy(p->variant, "v8");
  return 0;
}

void
img__platform_host(struct img__platform *p)
{
  memset(p, 0, sizeof(*p));
  strcpy(p->os, "linux");
  struct utsname u;
  const char *m = uname(&u) == 0 ? u.machine : "";
  if (!strcmp(m, "x86_64"))
    strcpy(p->arch, "amd64");
  else if (!strcmp(m, "aarch64") || !strcmp(m, "arm64")) {
    strcpy(p->arch, "arm64");
    strcpy(p->variant, "v8");
  } else if (!strncmp(m, "armv", 4)) {
    strcpy(p->arch, "arm");
    p->variant[0] = 'v';
    p->variant[1] = m[4] >= '5' && m[4] <= '8' ? m[4] : '7';
    p->variant[2] = '\0';
    if (p->variant[1] == '8')
      p->variant[1] = '7'; /* a 32-bit userland on armv8 runs v7 code */
  } else if (m[0] == 'i' && !strcmp(m + 2, "86"))
    strcpy(p->arch, "386");
  else if (!strcmp(m, "ppc64le"))
    strcpy(p->arch, "ppc64le");
  else if (!strcmp(m, "s390x"))
    strcpy(p->arch, "s390x");
  else if (!strcmp(m, "riscv64"))
    strcpy(p->arch, "riscv64");
  else if (!strncmp(m, "mips64", 6))
    strcpy(p->arch, "mips64le");
  else
    copy_field(p->arch, sizeof(p->arch), m, strlen(m));
}

void
img__platform_format(const char *os, const char *arch, const char *variant, char *out, size_t n)
{
  snprintf(out, n, "%s/%s%s%s", os ? os : "?", arch ? arch : "?", variant && *variant ? "/" : "",
           variant && *variant ? variant : "");
}

/* "v7" -> 7, anything else -> -1 */
static int
variant_level(const char *v)
{
  if (!v || v[0] != 'v' || v[1] < '0' || v[1] > '9')
    return -1;
  char *end;
  long n = strtol(v + 1, &end, 10);
  return *end ? -1 : (int)n;
}

/* Score how well entry variant ev fits want (higher is better, < 0 unusable). */
static int
variant_score(const char *arch, const char *want, const char *ev)
{
  const char *w = want ? want : "";
  const char *e = ev ? ev : "";
  if (!strcmp(arch, "arm64")) {
    if (!*w)
      w = "v8";
    if (!*e)
      e = "v8";
  }
  if (!strcmp(w, e))
    return 1000;
  if (!*e)
    return 1; /* no variant given: assume the baseline */
  if (!strcmp(arch, "arm")) {
    int wl = variant_level(*w ? w : "v7"), el = variant_level(e);
    if (wl >= 0 && el >= 0 && el <= wl)
      return 100 + el; /* a v7 host runs v6 and v5 code: prefer the closest */
  }
  return -1;
}

int
img__index_select(const struct img__manifest *idx, const struct img__platform *want,
                  const struct img__desc **out, struct ci_error **err)
{
  const struct img__desc *best = NULL;
  int best_score = -1;
  struct ci_buf avail = CI_BUF_INIT;
  ci_buf_init(&avail);
  for (size_t i = 0; i < idx->n_manifests; i++) {
    const struct img__desc *d = &idx->manifests[i];
    if (d->attestation)
      continue;
    if (d->os || d->arch) {
      char plat[96];
      img__platform_format(d->os, d->arch, d->variant, plat, sizeof(plat));
      ci_buf_addf(&avail, "%s%s", avail.len ? ", " : "", plat);
    }
    if (!d->os || !d->arch || strcmp(d->os, want->os) != 0 || strcmp(d->arch, want->arch) != 0)
      continue;
    int score = variant_score(want->arch, want->variant, d->variant);
    if (score > best_score) {
      best = d;
      best_score = score;
    }
  }
  if (!best) {
    char plat[96];
    img__platform_format(want->os, want->arch, want->variant, plat, sizeof(plat));
    int ret =
        ci_error_make(err, -ENOENT, "no image for platform %s in the manifest list%s%s%s", plat,
                      avail.len ? " (available: " : "", ci_buf_str(&avail), avail.len ? ")" : "");
    ci_buf_release(&avail);
    return ret;
  }
  ci_buf_release(&avail);
  *out = best;
  return 0;
}

/* ------------------------------------------------------------ configs */

void
img__config_release(struct img_config *c)
{
  ci_strv_release(&c->env);
  free(c->working_dir);
  free(c->user);
  ci_strv_release(&c->entrypoint);
  ci_strv_release(&c->cmd);
  free(c->os);
  free(c->architecture);
  free(c->variant);
  memset(c, 0, sizeof(*c));
}

static char *
nonempty_or_null(const char *s)
{
  return s && *s ? xstrdup(s) : NULL;
}

int
img__config_parse(const char *buf, size_t len, struct img_config *cfg, struct ci_strv *diff_ids,
                  struct ci_error **err)
{
  json_t *j = NULL;
  int ret = img__json_parse(buf, len, "image config", &j, err);
  if (ret < 0)
    return ret;
  struct img_config c = {0};
  struct ci_strv ids = CI_STRV_INIT;
  json_t *cc = json_object_get(j, "config");
  if (cc && !json_is_null(cc) && !json_is_object(cc)) {
    ret = ci_error_make(err, CI_EPROTO, "image config: 'config' is not an object");
    goto out;
  }
  if (json_is_object(cc)) {
    if ((ret = img__json_strv(json_object_get(cc, "Env"), "image config Env", &c.env, err)) < 0 ||
        (ret = img__json_strv(json_object_get(cc, "Entrypoint"), "image config Entrypoint",
                              &c.entrypoint, err)) < 0 ||
        (ret = img__json_strv(json_object_get(cc, "Cmd"), "image config Cmd", &c.cmd, err)) < 0)
      goto out;
    c.working_dir = nonempty_or_null(img__json_str(cc, "WorkingDir"));
    c.user = nonempty_or_null(img__json_str(cc, "User"));
  }
  c.os = nonempty_or_null(img__json_str(j, "os"));
  c.architecture = nonempty_or_null(img__json_str(j, "architecture"));
  c.variant = nonempty_or_null(img__json_str(j, "variant"));
  json_t *rootfs = json_object_get(j, "rootfs");
  if (!json_is_object(rootfs)) {
    ret = ci_error_make(err, CI_EPROTO, "image config has no rootfs");
    goto out;
  }
  const char *type = img__json_str(rootfs, "type");
  if (!type || strcmp(type, "layers") != 0) {
    ret = ci_error_make(err, CI_EPROTO, "image config: unsupported rootfs type '%s'",
                        type ? type : "(none)");
    goto out;
  }
  if ((ret = img__json_strv(json_object_get(rootfs, "diff_ids"), "image config rootfs.diff_ids",
                            &ids, err)) < 0)
    goto out;
  for (size_t i = 0; i < ids.n; i++) {
    if (!img__digest_valid(ids.v[i])) {
      ret = ci_error_make(err, CI_EPROTO, "image config: unsupported diff id '%s' (only sha256)",
                          ids.v[i]);
      goto out;
    }
  }
  *cfg = c;
  memset(&c, 0, sizeof(c));
  *diff_ids = ids;
  memset(&ids, 0, sizeof(ids));
  ret = 0;
out:
  img__config_release(&c);
  ci_strv_release(&ids);
  json_decref(j);
  return ret;
}
