/* backends/image/regconf.c - registries.conf (a documented TOML subset, see image.h), the auth
 * file, WWW-Authenticate challenges, and which endpoints serve a repository. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
img__regconf_release(struct img__regconf *rc)
{
  for (size_t i = 0; i < rc->n; i++) {
    struct img__regconf_entry *e = &rc->v[i];
    free(e->prefix);
    free(e->location);
    for (size_t k = 0; k < e->n_mirrors; k++)
      free(e->mirrors[k].location);
    free(e->mirrors);
  }
  free(rc->v);
  ci_strv_release(&rc->insecure);
  ci_strv_release(&rc->blocked);
  memset(rc, 0, sizeof(*rc));
}

/* ------------------------------------------------------------ a small TOML reader */

enum val_type { VAL_NONE, VAL_STRING, VAL_BOOL, VAL_ARRAY, VAL_OTHER };

struct val {
  enum val_type type;
  char *s;              /* VAL_STRING, owned */
  bool b;               /* VAL_BOOL */
  struct ci_strv items; /* VAL_ARRAY: the string items (others are dropped) */
};

static void
val_release(struct val *v)
{
  free(v->s);
  ci_strv_release(&v->items);
  memset(v, 0, sizeof(*v));
}

struct toml {
  const char *p;
  const char *file;
  unsigned line;
};

static int
toml_err(struct toml *t, struct ci_error **err, const char *what)
{
  return ci_error_make(err, CI_ECONFIG, "%s:%u: %s", t->file, t->line, what);
}

/* Skip blanks, comments and (when nl) newlines. */
static void
skip_ws(struct toml *t, bool nl)
{
  for (;;) {
    char c = *t->p;
    if (c == ' ' || c == '\t' || c == '\r')
      t->p++;
    else if (c == '#')
      while (*t->p && *t->p != '\n')
        t->p++;
    else if (c == '\n' && nl) {
      t->line++;
      t->p++;
    } else
      return;
  }
}

static int
parse_string(struct toml *t, char **out, struct ci_error **err)
{
  char q = *t->p++;
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  while (*t->p && *t->p != q && *t->p != '\n') {
    char c = *t->p++;
    if (q == '"' && c == '\\') {
      if (!*t->p)
        break;
      char e = *t->p++;
      switch (e) {
      case '"':
      case '\\':
        ci_buf_addc(&b, e);
        break;
      case 'n':
        ci_buf_addc(&b, '\n');
        break;
      case 't':
        ci_buf_addc(&b, '\t');
        break;
      default:
        ci_buf_release(&b);
        return toml_err(t, err, "unsupported escape in string");
      }
      continue;
    }
    ci_buf_addc(&b, c);
  }
  if (*t->p != q) {
    ci_buf_release(&b);
    return toml_err(t, err, "unterminated string");
  }
  t->p++;
  *out = ci_buf_take(&b);
  return 0;
}

static int parse_value(struct toml *t, struct val *v, struct ci_error **err);

static int
parse_array(struct toml *t, struct val *v, struct ci_error **err)
{
  t->p++; /* [ */
  v->type = VAL_ARRAY;
  for (;;) {
    skip_ws(t, true);
    if (*t->p == ']') {
      t->p++;
      return 0;
    }
    struct val item = {0};
    int ret = parse_value(t, &item, err);
    if (ret < 0)
      return ret;
    if (item.type == VAL_STRING)
      ci_strv_push_take(&v->items, steal_pointer(&item.s));
    val_release(&item);
    skip_ws(t, true);
    if (*t->p == ',') {
      t->p++;
      continue;
    }
    if (*t->p != ']')
      return toml_err(t, err, "expected ',' or ']' in array");
  }
}

static int
parse_value(struct toml *t, struct val *v, struct ci_error **err)
{
  char c = *t->p;
  if (c == '"' || c == '\'') {
    v->type = VAL_STRING;
    return parse_string(t, &v->s, err);
  }
  if (c == '[')
    return parse_array(t, v, err);
  if (c == '{') { /* inline table: skip it, strings aware */
    int depth = 0;
    do {
      if (*t->p == '"' || *t->p == '\'') {
        char *junk = NULL;
        int ret = parse_string(t, &junk, err);
        free(junk);
        if (ret < 0)
          return ret;
        continue;
      }
      if (*t->p == '{')
        depth++;
      else if (*t->p == '}')
        depth--;
      else if (*t->p == '\n')
        return toml_err(t, err, "unterminated inline table");
      else if (!*t->p)
        return toml_err(t, err, "unterminated inline table");
      t->p++;
    } while (depth > 0);
    v->type = VAL_OTHER;
    return 0;
  }
  if (!strncmp(t->p, "true", 4) && !isalnum((unsigned char)t->p[4])) {
    t->p += 4;
    v->type = VAL_BOOL;
    v->b = true;
    return 0;
  }
  if (!strncmp(t->p, "false", 5) && !isalnum((unsigned char)t->p[5])) {
    t->p += 5;
    v->type = VAL_BOOL;
    v->b = false;
    return 0;
  }
  /* numbers, dates: not used by the keys we read */
  const char *start = t->p;
  while (*t->p && (isalnum((unsigned char)*t->p) || strchr("+-_.:", *t->p)))
    t->p++;
  if (t->p == start)
    return toml_err(t, err, "invalid value");
  v->type = VAL_OTHER;
  return 0;
}

static int
parse_key(struct toml *t, char **out, struct ci_error **err)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  for (;;) {
    if (*t->p == '"' || *t->p == '\'') {
      char *s = NULL;
      int ret = parse_string(t, &s, err);
      if (ret < 0) {
        ci_buf_release(&b);
        return ret;
      }
      ci_buf_adds(&b, s);
      free(s);
    } else {
      const char *start = t->p;
      while (isalnum((unsigned char)*t->p) || *t->p == '_' || *t->p == '-')
        t->p++;
      if (t->p == start) {
        ci_buf_release(&b);
        return toml_err(t, err, "expected a key");
      }
      ci_buf_add(&b, start, (size_t)(t->p - start));
    }
    skip_ws(t, false);
    if (*t->p != '.')
      break;
    t->p++;
    ci_buf_addc(&b, '.');
    skip_ws(t, false);
  }
  *out = ci_buf_take(&b);
  return 0;
}

enum table {
  T_ROOT,
  T_REGISTRY,
  T_MIRROR,
  T_V1_INSECURE,
  T_V1_BLOCK,
  T_OTHER,
};

static int
apply_key(struct toml *t, struct img__regconf *rc, enum table tb, const char *key, struct val *v,
          struct ci_error **err)
{
  struct img__regconf_entry *e = rc->n ? &rc->v[rc->n - 1] : NULL;
  switch (tb) {
  case T_REGISTRY:
    if (!strcmp(key, "prefix") || !strcmp(key, "location")) {
      if (v->type != VAL_STRING)
        return toml_err(t, err, "registry prefix and location must be strings");
      char **dst = key[0] == 'p' ? &e->prefix : &e->location;
      free(*dst);
      *dst = steal_pointer(&v->s);
    } else if (!strcmp(key, "insecure") || !strcmp(key, "blocked")) {
      if (v->type != VAL_BOOL)
        return toml_err(t, err, "registry insecure and blocked must be true or false");
      if (key[0] == 'i')
        e->insecure = v->b;
      else
        e->blocked = v->b;
    }
    return 0;
  case T_MIRROR: {
    struct img__mirror *m = &e->mirrors[e->n_mirrors - 1];
    if (!strcmp(key, "location")) {
      if (v->type != VAL_STRING)
        return toml_err(t, err, "mirror location must be a string");
      free(m->location);
      m->location = steal_pointer(&v->s);
    } else if (!strcmp(key, "insecure")) {
      if (v->type != VAL_BOOL)
        return toml_err(t, err, "mirror insecure must be true or false");
      m->insecure = v->b;
    }
    return 0;
  }
  case T_V1_INSECURE:
  case T_V1_BLOCK:
    if (!strcmp(key, "registries")) {
      if (v->type != VAL_ARRAY)
        return toml_err(t, err, "registries must be an array of strings");
      struct ci_strv *dst = tb == T_V1_INSECURE ? &rc->insecure : &rc->blocked;
      for (size_t i = 0; i < v->items.n; i++)
        ci_strv_push(dst, v->items.v[i]);
    }
    return 0;
  default:
    return 0;
  }
}

static int
regconf_parse(struct toml *t, struct img__regconf *rc, struct ci_error **err)
{
  enum table tb = T_ROOT;
  for (;;) {
    skip_ws(t, true);
    if (!*t->p)
      break;
    if (*t->p == '[') {
      bool array = t->p[1] == '[';
      t->p += array ? 2 : 1;
      skip_ws(t, false);
      cleanup_free char *name = NULL;
      int ret = parse_key(t, &name, err);
      if (ret < 0)
        return ret;
      if (*t->p != ']' || (array && t->p[1] != ']'))
        return toml_err(t, err, "expected ']' after table name");
      t->p += array ? 2 : 1;
      if (array && !strcmp(name, "registry")) {
        CI_GROW(rc->v, rc->alloc, rc->n + 1);
        memset(&rc->v[rc->n++], 0, sizeof(*rc->v));
        tb = T_REGISTRY;
      } else if (array && !strcmp(name, "registry.mirror")) {
        if (!rc->n)
          return toml_err(t, err, "[[registry.mirror]] before any [[registry]]");
        struct img__regconf_entry *e = &rc->v[rc->n - 1];
        CI_GROW(e->mirrors, e->alloc_mirrors, e->n_mirrors + 1);
        memset(&e->mirrors[e->n_mirrors++], 0, sizeof(*e->mirrors));
        tb = T_MIRROR;
      } else if (!array && !strcmp(name, "registries.insecure")) {
        tb = T_V1_INSECURE;
      } else if (!array && !strcmp(name, "registries.block")) {
        tb = T_V1_BLOCK;
      } else {
        tb = T_OTHER;
      }
    } else {
      cleanup_free char *key = NULL;
      int ret = parse_key(t, &key, err);
      if (ret < 0)
        return ret;
      skip_ws(t, false);
      if (*t->p != '=')
        return toml_err(t, err, "expected '=' after key");
      t->p++;
      skip_ws(t, false);
      struct val v = {0};
      ret = parse_value(t, &v, err);
      if (ret == 0)
        ret = apply_key(t, rc, tb, key, &v, err);
      val_release(&v);
      if (ret < 0)
        return ret;
    }
    skip_ws(t, false);
    if (*t->p && *t->p != '\n')
      return toml_err(t, err, "unexpected text after value");
  }
  for (size_t i = 0; i < rc->n; i++) {
    struct img__regconf_entry *e = &rc->v[i];
    if (!e->prefix && !e->location)
      return ci_error_make(err, CI_ECONFIG, "%s: a [[registry]] has neither prefix nor location",
                           t->file);
    if (!e->prefix)
      e->prefix = xstrdup(e->location);
    for (size_t k = 0; k < e->n_mirrors; k++)
      if (!e->mirrors[k].location || !*e->mirrors[k].location)
        return ci_error_make(err, CI_ECONFIG, "%s: a mirror of '%s' has no location", t->file,
                             e->prefix);
  }
  return 0;
}

int
img__regconf_parse(const char *text, const char *file, struct img__regconf *rc,
                   struct ci_error **err)
{
  struct toml t = {text, file, 1};
  int ret = regconf_parse(&t, rc, err);
  if (ret < 0)
    img__regconf_release(rc);
  return ret;
}

int
img__regconf_load(const char *path, struct img__regconf *rc, struct ci_error **err)
{
  cleanup_free char *chosen = NULL;
  if (path) {
    chosen = xstrdup(path);
  } else if (getenv("CIRRUS_REGISTRIES_CONF") && *getenv("CIRRUS_REGISTRIES_CONF")) {
    chosen = xstrdup(getenv("CIRRUS_REGISTRIES_CONF"));
  } else {
    if (geteuid() != 0) {
      const char *xdg = getenv("XDG_CONFIG_HOME");
      const char *home = getenv("HOME");
      char *user = NULL;
      if (xdg && xdg[0] == '/')
        user = xasprintf("%s/containers/registries.conf", xdg);
      else if (home && home[0] == '/')
        user = xasprintf("%s/.config/containers/registries.conf", home);
      if (user && access(user, F_OK) == 0)
        chosen = user;
      else
        free(user);
    }
    if (!chosen)
      chosen = xstrdup("/etc/containers/registries.conf");
  }
  cleanup_free char *text = NULL;
  int ret = ci_read_file(chosen, 4 << 20, &text, NULL, err);
  if (ret == -ENOENT) {
    if (err)
      ci_error_free(err);
    return 0;
  }
  if (ret < 0)
    return ret;
  return img__regconf_parse(text, chosen, rc, err);
}

/* ------------------------------------------------------------ endpoints */

void
img__endpoints_release(struct img__endpoints *e)
{
  for (size_t i = 0; i < e->n; i++) {
    free(e->v[i].host);
    free(e->v[i].repo);
  }
  free(e->v);
  memset(e, 0, sizeof(*e));
}

bool
img__host_is_loopback(const char *host)
{
  char h[256];
  size_t n = strlen(host);
  if (n >= sizeof(h))
    return false;
  memcpy(h, host, n + 1);
  if (h[0] == '[') {
    char *close = strchr(h, ']');
    if (!close)
      return false;
    *close = '\0';
    return !strcmp(h + 1, "::1");
  }
  char *colon = strchr(h, ':');
  if (colon)
    *colon = '\0';
  if (!strcmp(h, "localhost"))
    return true;
  if (strncmp(h, "127.", 4) != 0)
    return false;
  int dots = 0;
  for (const char *p = h + 4; *p; p++) {
    if (*p == '.')
      dots++;
    else if (!isdigit((unsigned char)*p))
      return false;
  }
  return dots == 2;
}

/* Does prefix match name ("host/path")?  Returns the matched length or 0. */
static size_t
prefix_match(const char *prefix, const char *name)
{
  if (prefix[0] == '*' && prefix[1] == '.') {
    /* *.example.com matches any subdomain host (only the host part) */
    const char *slash = strchr(name, '/');
    size_t hostlen = slash ? (size_t)(slash - name) : strlen(name);
    size_t pl = strlen(prefix + 1);
    if (hostlen > pl && !strncmp(name + hostlen - pl, prefix + 1, pl))
      return hostlen;
    return 0;
  }
  size_t n = strlen(prefix);
  while (n > 0 && prefix[n - 1] == '/')
    n--;
  if (strncmp(prefix, name, n) != 0)
    return 0;
  if (name[n] != '\0' && name[n] != '/')
    return 0;
  return n;
}

static void
add_endpoint(struct img__endpoints *out, const char *full, bool insecure,
             const struct img__regconf *rc)
{
  const char *slash = strchr(full, '/');
  cleanup_free char *host = slash ? xstrndup(full, (size_t)(slash - full)) : xstrdup(full);
  const char *repo = slash ? slash + 1 : "";
  if (!strcmp(host, "docker.io") || !strcmp(host, "index.docker.io")) {
    free(host);
    host = xstrdup("registry-1.docker.io");
  }
  if (img__host_is_loopback(host))
    insecure = true;
  if (rc && ci_strv_contains(&rc->insecure, host))
    insecure = true;
  CI_GROW(out->v, out->alloc, out->n + 1);
  struct img__endpoint *e = &out->v[out->n++];
  e->host = steal_pointer(&host);
  e->repo = xstrdup(repo);
  e->insecure = insecure;
}

int
img__regconf_endpoints(const struct img__regconf *rc, const char *domain, const char *path,
                       struct img__endpoints *out, struct ci_error **err)
{
  cleanup_free char *full = xasprintf("%s/%s", domain, path);
  memset(out, 0, sizeof(*out));
  if (rc && ci_strv_contains(&rc->blocked, domain))
    return ci_error_make(err, -EACCES, "registry '%s' is blocked in registries.conf", domain);
  const struct img__regconf_entry *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; rc && i < rc->n; i++) {
    size_t l = prefix_match(rc->v[i].prefix, full);
    if (l > best_len) {
      best = &rc->v[i];
      best_len = l;
    }
  }
  if (!best) {
    add_endpoint(out, full, false, rc);
    return 0;
  }
  if (best->blocked)
    return ci_error_make(err, -EACCES, "'%s' is blocked in registries.conf (prefix '%s')", full,
                         best->prefix);
  bool wildcard = best->prefix[0] == '*';
  const char *rest = full + best_len; /* "" or "/..." */
  for (size_t k = 0; k < best->n_mirrors; k++) {
    cleanup_free char *m = xasprintf("%s%s", best->mirrors[k].location, wildcard ? "" : rest);
    if (wildcard) {
      free(m);
      m = xasprintf("%s/%s", best->mirrors[k].location, path);
    }
    add_endpoint(out, m, best->mirrors[k].insecure, rc);
  }
  cleanup_free char *loc = NULL;
  if (wildcard || !best->location)
    loc = xstrdup(full);
  else
    loc = xasprintf("%s%s", best->location, rest);
  add_endpoint(out, loc, best->insecure, rc);
  return 0;
}

/* ------------------------------------------------------------ auth file */

static char *
b64_decode(const char *in)
{
  size_t n = strlen(in);
  if (n == 0 || n % 4 != 0)
    return NULL;
  unsigned char *out = xmalloc(n / 4 * 3 + 1);
  int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
  if (len < 0) {
    free(out);
    return NULL;
  }
  if (in[n - 1] == '=')
    len--;
  if (in[n - 2] == '=')
    len--;
  out[len] = '\0';
  if (memchr(out, '\0', (size_t)len)) {
    free(out);
    return NULL;
  }
  return (char *)out;
}

/* The registry host an auths key names: strip a scheme and a path. */
static char *
auth_key_host(const char *key)
{
  const char *p = key;
  if (ci_str_has_prefix(p, "https://"))
    p += 8;
  else if (ci_str_has_prefix(p, "http://"))
    p += 7;
  const char *slash = strchr(p, '/');
  char *h = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup(p);
  if (!strcmp(h, "index.docker.io") || !strcmp(h, "registry-1.docker.io") ||
      !strcmp(h, "docker.io")) {
    free(h);
    h = xstrdup("docker.io");
  }
  return h;
}

static int
auth_from_file(const char *path, const char *host, char **out, struct ci_error **err)
{
  json_t *j = NULL;
  int ret = img__json_read(path, 4 << 20, &j, err);
  if (ret < 0)
    return ret;
  cleanup_free char *want = auth_key_host(host);
  json_t *auths = json_object_get(j, "auths");
  const char *key;
  json_t *v;
  json_object_foreach(auths, key, v)
  {
    cleanup_free char *h = auth_key_host(key);
    if (strcmp(h, want) != 0)
      continue;
    const char *a = img__json_str(v, "auth");
    if (!a || !*a)
      continue;
    char *dec = b64_decode(a);
    if (!dec || !strchr(dec, ':')) {
      free(dec);
      ret = ci_error_make(err, CI_ECONFIG, "%s: invalid credentials for '%s'", path, key);
      json_decref(j);
      return ret;
    }
    *out = dec;
    break;
  }
  json_decref(j);
  return 0;
}

int
img__auth_lookup(const char *auth_file, const char *host, char **out, struct ci_error **err)
{
  *out = NULL;
  struct ci_strv files = CI_STRV_INIT;
  if (auth_file) {
    ci_strv_push(&files, auth_file);
  } else {
    const char *e = getenv("REGISTRY_AUTH_FILE");
    if (e && *e)
      ci_strv_push(&files, e);
    const char *rt = getenv("XDG_RUNTIME_DIR");
    if (rt && *rt)
      ci_strv_push_take(&files, xasprintf("%s/containers/auth.json", rt));
    const char *dc = getenv("DOCKER_CONFIG");
    const char *home = getenv("HOME");
    if (dc && *dc)
      ci_strv_push_take(&files, xasprintf("%s/config.json", dc));
    else if (home && *home)
      ci_strv_push_take(&files, xasprintf("%s/.docker/config.json", home));
  }
  int ret = 0;
  for (size_t i = 0; i < files.n && !*out && ret == 0; i++) {
    if (access(files.v[i], F_OK) < 0 && !auth_file)
      continue;
    ret = auth_from_file(files.v[i], host, out, err);
  }
  ci_strv_release(&files);
  return ret;
}

/* ------------------------------------------------------------ WWW-Authenticate */

int
img__parse_challenge(const char *h, char **scheme, char **realm, char **service, char **scope)
{
  *scheme = *realm = *service = *scope = NULL;
  while (*h == ' ')
    h++;
  const char *sp = h;
  while (*sp && *sp != ' ')
    sp++;
  if (sp == h)
    return -1;
  char *sch = xstrndup(h, (size_t)(sp - h));
  for (char *c = sch; *c; c++)
    *c = (char)tolower((unsigned char)*c);
  *scheme = sch;
  const char *p = sp;
  for (;;) {
    while (*p == ' ' || *p == ',')
      p++;
    if (!*p)
      break;
    const char *k = p;
    while (*p && *p != '=' && *p != ' ' && *p != ',')
      p++;
    size_t klen = (size_t)(p - k);
    if (*p != '=') {
      continue;
    }
    p++;
    struct ci_buf v = CI_BUF_INIT;
    ci_buf_init(&v);
    if (*p == '"') {
      p++;
      while (*p && *p != '"') {
        if (*p == '\\' && p[1])
          p++;
        ci_buf_addc(&v, *p++);
      }
      if (*p == '"')
        p++;
    } else {
      while (*p && *p != ',' && *p != ' ')
        ci_buf_addc(&v, *p++);
    }
    char **dst = NULL;
    if (klen == 5 && !strncasecmp(k, "realm", 5))
      dst = realm;
    else if (klen == 7 && !strncasecmp(k, "service", 7))
      dst = service;
    else if (klen == 5 && !strncasecmp(k, "scope", 5))
      dst = scope;
    if (dst) {
      free(*dst);
      *dst = ci_buf_take(&v);
    }
    ci_buf_release(&v);
  }
  return 0;
}
