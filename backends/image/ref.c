/* backends/image/ref.c - image references, named like containers-image transports. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
img_ref_release(struct img_ref *r)
{
  if (!r)
    return;
  free(r->domain);
  free(r->path);
  free(r->tag);
  free(r->digest);
  free(r->file);
  free(r->subname);
  free(r->canonical);
  memset(r, 0, sizeof(*r));
}

static bool
is_lower_alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool
valid_path_component(const char *s, size_t n)
{
  if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
    return false;
  for (size_t i = 0; i < n;) {
    if (is_lower_alnum(s[i])) {
      i++;
      continue;
    }
    /* a separator run, followed by alnum (the last char is alnum, checked above) */
    size_t j = i;
    while (j < n && !is_lower_alnum(s[j]))
      j++;
    size_t len = j - i;
    const char *sep = s + i;
    bool ok = (len == 1 && (sep[0] == '.' || sep[0] == '_' || sep[0] == '-')) ||
              (len == 2 && sep[0] == '_' && sep[1] == '_');
    if (!ok) {
      ok = true;
      for (size_t k = 0; k < len; k++)
        ok = ok && sep[k] == '-';
    }
    if (!ok)
      return false;
    i = j;
  }
  return true;
}

/* host[:port] with DNS-ish labels, or [ipv6][:port]. */
static bool
valid_domain(const char *s, size_t n)
{
  if (n == 0)
    return false;
  size_t i = 0;
  if (s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close || close == s + 1)
      return false;
    for (const char *p = s + 1; p < close; p++)
      if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
        return false;
    i = (size_t)(close - s) + 1;
  } else {
    size_t label = 0;
    for (; i < n && s[i] != ':'; i++) {
      char c = s[i];
      if (c == '.') {
        if (label == 0 || s[i - 1] == '-')
          return false;
        label = 0;
        continue;
      }
      if (!isalnum((unsigned char)c) && c != '-')
        return false;
      if (label == 0 && c == '-')
        return false;
      label++;
    }
    if (label == 0 || s[i - 1] == '-')
      return false;
  }
  if (i == n)
    return true;
  if (s[i] != ':' || i + 1 == n)
    return false;
  for (i++; i < n; i++)
    if (!isdigit((unsigned char)s[i]))
      return false;
  return true;
}

/* tag: [\w][\w.-]{0,127} */
static bool
valid_tag(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > 128)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool w = isalnum((unsigned char)c) || c == '_';
    if (!w && (i == 0 || (c != '.' && c != '-')))
      return false;
  }
  return true;
}

/* Parse a docker reference (no transport prefix) into r's docker fields and canonical. */
static int
parse_docker(const char *s, struct img_ref *r, struct ci_error **err)
{
  if (!*s)
    return ci_error_make(err, CI_EUSAGE, "empty image reference");
  cleanup_free char *name = xstrdup(s);
  cleanup_free char *digest = NULL, *tag = NULL;
  char *at = strchr(name, '@');
  if (at) {
    *at = '\0';
    digest = xstrdup(at + 1);
    if (!img__digest_valid(digest)) {
      if (strncmp(digest, "sha256:", 7) != 0 && strchr(digest, ':'))
        return ci_error_make(err, CI_EUSAGE,
                             "invalid image reference '%s': only sha256 digests are supported", s);
      return ci_error_make(
          err, CI_EUSAGE, "invalid image reference '%s': digest must be sha256:<64 hex digits>", s);
    }
  }
  char *slash = strrchr(name, '/');
  char *colon = strrchr(slash ? slash : name, ':');
  if (colon) {
    *colon = '\0';
    tag = xstrdup(colon + 1);
    if (!valid_tag(tag))
      return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': invalid tag '%s'", s,
                           tag);
  }
  if (!*name)
    return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': empty name", s);
  if (strlen(name) > 255)
    return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': name longer than 255", s);

  const char *first_slash = strchr(name, '/');
  cleanup_free char *domain = NULL;
  const char *path = name;
  if (first_slash) {
    size_t dlen = (size_t)(first_slash - name);
    bool has_upper = false;
    for (size_t i = 0; i < dlen; i++)
      has_upper = has_upper || isupper((unsigned char)name[i]);
    if (memchr(name, '.', dlen) || memchr(name, ':', dlen) ||
        (dlen == 9 && !strncmp(name, "localhost", 9)) || has_upper) {
      if (!valid_domain(name, dlen))
        return ci_error_make(err, CI_EUSAGE,
                             "invalid image reference '%s': invalid registry '%.*s'", s, (int)dlen,
                             name);
      domain = xstrndup(name, dlen);
      path = first_slash + 1;
    }
  }
  if (!domain || !strcmp(domain, "index.docker.io") || !strcmp(domain, "registry-1.docker.io")) {
    free(domain);
    domain = xstrdup("docker.io");
  }
  cleanup_free char *full_path = NULL;
  if (!strcmp(domain, "docker.io") && !strchr(path, '/'))
    full_path = xasprintf("library/%s", path);
  else
    full_path = xstrdup(path);
  /* validate every component */
  for (const char *p = full_path;;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (!valid_path_component(p, n)) {
      for (size_t i = 0; i < n; i++)
        if (isupper((unsigned char)p[i]))
          return ci_error_make(
              err, CI_EUSAGE, "invalid image reference '%s': repository name must be lowercase", s);
      return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': invalid name '%.*s'", s,
                           (int)n, p);
    }
    if (!e)
      break;
    p = e + 1;
  }
  if (!tag && !digest)
    tag = xstrdup("latest");
  r->transport = IMG_TRANSPORT_DOCKER;
  if (digest)
    r->canonical = xasprintf("%s/%s@%s", domain, full_path, digest);
  else
    r->canonical = xasprintf("%s/%s:%s", domain, full_path, tag);
  r->domain = steal_pointer(&domain);
  r->path = steal_pointer(&full_path);
  r->tag = steal_pointer(&tag);
  r->digest = steal_pointer(&digest);
  return 0;
}

static char *
make_absolute(const char *p)
{
  char *abs;
  if (p[0] == '/') {
    abs = xstrdup(p);
  } else {
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
      CI_BUG("getcwd failed");
    abs = xasprintf("%s/%s", cwd, p);
    free(cwd);
  }
  size_t n = strlen(abs);
  while (n > 1 && abs[n - 1] == '/')
    abs[--n] = '\0';
  return abs;
}

/* "FILE[:REST]" for the file transports.  DIR/FILE cannot contain ':' (as in containers-image). */
static int
parse_file_transport(const char *tname, const char *s, const char *whole, struct img_ref *r,
                     struct ci_error **err)
{
  const char *colon = strchr(s, ':');
  cleanup_free char *file = colon ? xstrndup(s, (size_t)(colon - s)) : xstrdup(s);
  if (!*file)
    return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': %s needs a path", whole,
                         tname);
  cleanup_free char *sub = NULL;
  if (colon) {
    const char *rest = colon + 1;
    if (!*rest)
      return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': empty name after ':'",
                           whole);
    if (r->transport == IMG_TRANSPORT_OCI) {
      /* An OCI ref.name is free-form, but we use it in our index: keep it printable. */
      for (const char *p = rest; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
          return ci_error_make(err, CI_EUSAGE, "invalid image reference '%s': invalid tag", whole);
      sub = xstrdup(rest);
    } else {
      struct img_ref d = {0};
      int ret = parse_docker(rest, &d, err);
      if (ret < 0)
        return IMG__PREFIX(err, ret, "in '%s'", whole);
      if (d.digest) {
        img_ref_release(&d);
        return ci_error_make(err, CI_EUSAGE,
                             "invalid image reference '%s': docker-archive names cannot have a "
                             "digest",
                             whole);
      }
      sub = steal_pointer(&d.canonical);
      img_ref_release(&d);
    }
  }
  r->file = make_absolute(file);
  r->subname = steal_pointer(&sub);
  if (r->subname)
    r->canonical = xasprintf("%s:%s:%s", tname, r->file, r->subname);
  else
    r->canonical = xasprintf("%s:%s", tname, r->file);
  return 0;
}

int
img_ref_parse(const char *s, struct img_ref *out, struct ci_error **err)
{
  struct img_ref r = {0};
  int ret;
  if (!s)
    return ci_error_make(err, CI_EUSAGE, "empty image reference");
  if (ci_str_has_prefix(s, "docker://")) {
    ret = parse_docker(s + 9, &r, err);
  } else if (ci_str_has_prefix(s, "oci:")) {
    r.transport = IMG_TRANSPORT_OCI;
    ret = parse_file_transport("oci", s + 4, s, &r, err);
  } else if (ci_str_has_prefix(s, "docker-archive:")) {
    r.transport = IMG_TRANSPORT_DOCKER_ARCHIVE;
    ret = parse_file_transport("docker-archive", s + 15, s, &r, err);
  } else {
    static const char *const others[] = {"dir",           "oci-archive", "containers-storage",
                                         "docker-daemon", "ostree",      "sif",
                                         "tarball",       "docker"};
    const char *colon = strchr(s, ':');
    for (size_t i = 0; colon && i < CI_ARRAY_SIZE(others); i++) {
      size_t n = strlen(others[i]);
      if ((size_t)(colon - s) == n && !strncmp(s, others[i], n))
        return ci_error_make(err, CI_EUSAGE,
                             "unsupported image transport '%s' in '%s' (use docker://, oci: or "
                             "docker-archive:)",
                             others[i], s);
    }
    ret = parse_docker(s, &r, err);
  }
  if (ret < 0) {
    img_ref_release(&r);
    return ret;
  }
  *out = r;
  return 0;
}
