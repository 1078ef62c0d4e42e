/* runner/artifacts.c - artifact paths and globs, storing artifacts from a container tar, and
 * annotations (report parsers and the GitHub Actions formatter).  See artifacts.h. */
#include "artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wctype.h>

#define IO_BUF (64 * 1024)

/* ------------------------------------------------------------------ UTF-8 */

/* Decode one code point at s (n bytes available).  Returns its length (>= 1) and *cp, or 0
 * for an invalid sequence (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
  if (n == 0)
    return 0;
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xe0) == 0xc0) {
    len = 2, v = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, v = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

static void
utf8_encode(struct ci_buf *b, uint32_t cp)
{
  char o[4];
  size_t n;
  if (cp < 0x80) {
    o[0] = (char)cp, n = 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
  } else {
    o[0] = (char)(0xf0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
  }
  ci_buf_add(b, o, n);
}

/* Length of the UTF-8 sequence starting at s (1 for invalid bytes, so that scanning moves on). */
static size_t
utf8_len(const char *s, size_t n)
{
  uint32_t cp;
  size_t l = utf8_decode((const unsigned char *)s, n, &cp);
  return l ? l : 1;
}

/* ------------------------------------------------------------------ names */

static locale_t utf8_locale = (locale_t)0;
static pthread_once_t utf8_locale_once = PTHREAD_ONCE_INIT;

static void
utf8_locale_init(void)
{
  utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

bool
artifacts_name_is_safe(const char *name)
{
  if (!name || !*name)
    return false;
  pthread_once(&utf8_locale_once, utf8_locale_init);
  size_t n = strlen(name);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = utf8_decode((const unsigned char *)name + i, n - i, &cp);
    if (l == 0)
      return false;
    i += l;
    if (cp < 0x80) {
      if (isalnum((int)cp) || cp == '_' || cp == '-' || cp == ' ' || cp == ':')
        continue;
      return false;
    }
    /* glibc's C.UTF-8 classifies Unicode letters and numbers as alnum (Go: IsLetter ||
     * IsNumber); without that locale only ASCII is accepted. */
    if (utf8_locale == (locale_t)0 || !iswalnum_l((wint_t)cp, utf8_locale))
      return false;
  }
  return true;
}

/* ------------------------------------------------------------------ paths */

char *
artifacts_path_clean(const char *path)
{
  size_t n = strlen(path);
  char *out = xmalloc(n + 2);
  bool rooted = n > 0 && path[0] == '/';
  size_t w = 0, dotdot = 0, r = 0;
  if (rooted) {
    out[w++] = '/';
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    if (path[r] == '/') {
      r++;
    } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
      r++;
    } else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
      r += 2;
      if (w > dotdot) {
        w--;
        while (w > dotdot && out[w] != '/')
          w--;
      } else if (!rooted) {
        if (w > 0)
          out[w++] = '/';
        out[w++] = '.';
        out[w++] = '.';
        dotdot = w;
      }
    } else {
      if ((rooted && w != 1) || (!rooted && w != 0))
        out[w++] = '/';
      while (r < n && path[r] != '/')
        out[w++] = path[r++];
    }
  }
  if (w == 0)
    out[w++] = '.';
  out[w] = '\0';
  return out;
}

const char *
artifacts_path_rel(const char *path, const char *dir)
{
  size_t dl = strlen(dir);
  if (dl == 1 && dir[0] == '/')
    return path[0] == '/' ? path + 1 : NULL;
  if (strncmp(path, dir, dl) != 0)
    return NULL;
  if (path[dl] == '\0')
    return path + dl;
  if (path[dl] == '/')
    return path + dl + 1;
  return NULL;
}

bool
artifacts_path_is_within(const char *path, const char *dir)
{
  return artifacts_path_rel(path, dir) != NULL;
}

static bool
path_is_abs(const char *p)
{
  return p[0] == '/';
}

/* dir + "/" + rel, cleaned. */
static char *
path_join_clean(const char *dir, const char *rel)
{
  cleanup_free char *j = xasprintf("%s/%s", dir, rel);
  return artifacts_path_clean(j);
}

/* True when a '/'-separated path has a ".." component. */
static bool
has_dotdot(const char *p)
{
  for (const char *s = p; *s;) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.')
      return true;
    if (!e)
      break;
    s = e + 1;
  }
  return false;
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
strv_sort_unique(struct ci_strv *sv)
{
  if (sv->n < 2)
    return;
  qsort(sv->v, sv->n, sizeof(*sv->v), cmp_str);
  size_t w = 1;
  for (size_t r = 1; r < sv->n; r++) {
    if (strcmp(sv->v[r], sv->v[w - 1]) == 0)
      free(sv->v[r]);
    else
      sv->v[w++] = sv->v[r];
  }
  sv->n = w;
}

/* ------------------------------------------------------------------ globs */

#define GLOB_MAX_ALTERNATIVES 1024

bool
artifacts_glob_has_meta(const char *pattern)
{
  return strpbrk(pattern, "*?[{\\") != NULL;
}

static int
bad_pattern(struct ci_error **err, const char *pattern, const char *why)
{
  return ci_error_make(err, -EINVAL, "invalid glob pattern '%s': %s", pattern, why);
}

/* Expand the first {a,b} group of pat (recursively) into out.  orig is for messages. */
static int
brace_expand(const char *pat, const char *orig, struct ci_strv *out, struct ci_error **err)
{
  const char *open = NULL;
  for (const char *s = pat; *s; s++) {
    if (*s == '\\') {
      if (!s[1])
        break;
      s++;
    } else if (*s == '{') {
      open = s;
      break;
    }
  }
  if (!open) {
    if (out->n >= GLOB_MAX_ALTERNATIVES)
      return bad_pattern(err, orig, "too many alternatives");
    ci_strv_push(out, pat);
    return 0;
  }
  /* find the matching '}' and the top-level commas */
  int depth = 1;
  const char *s = open + 1;
  struct {
    const char *p;
    size_t n;
  } alts[GLOB_MAX_ALTERNATIVES];
  size_t nalts = 0;
  const char *start = s;
  for (; *s && depth > 0; s++) {
    if (*s == '\\') {
      if (!s[1])
        break;
      s++;
    } else if (*s == '{') {
      depth++;
    } else if (*s == '}') {
      if (--depth == 0)
        break;
    } else if (*s == ',' && depth == 1) {
      if (nalts + 1 >= GLOB_MAX_ALTERNATIVES)
        return bad_pattern(err, orig, "too many alternatives");
      alts[nalts].p = start, alts[nalts].n = (size_t)(s - start), nalts++;
      start = s + 1;
    }
  }
  if (depth != 0 || *s != '}')
    return bad_pattern(err, orig, "unbalanced '{'");
  alts[nalts].p = start, alts[nalts].n = (size_t)(s - start), nalts++;
  const char *rest = s + 1;
  for (size_t i = 0; i < nalts; i++) {
    cleanup_free char *cand =
        xasprintf("%.*s%.*s%s", (int)(open - pat), pat, (int)alts[i].n, alts[i].p, rest);
    int ret = brace_expand(cand, orig, out, err);
    if (ret < 0)
      return ret;
  }
  return 0;
}

/* Check one pattern component's syntax (classes closed and non-empty, no trailing '\'). */
static bool
comp_valid(const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\\') {
      if (++i >= n)
        return false;
    } else if (p[i] == '[') {
      size_t j = i + 1;
      if (j < n && p[j] == '^')
        j++;
      size_t items = 0;
      while (j < n && p[j] != ']') {
        /* lo */
        if (p[j] == '-')
          return false;
        if (p[j] == '\\' && ++j >= n)
          return false;
        j += utf8_len(p + j, n - j);
        if (j < n && p[j] == '-') {
          j++;
          if (j >= n || p[j] == '-' || p[j] == ']')
            return false;
          if (p[j] == '\\' && ++j >= n)
            return false;
          j += utf8_len(p + j, n - j);
        }
        items++;
      }
      if (j >= n || items == 0)
        return false;
      i = j;
    }
  }
  return true;
}

static uint32_t
rune_at(const char *s, size_t n, size_t *len)
{
  uint32_t cp;
  size_t l = utf8_decode((const unsigned char *)s, n, &cp);
  if (l == 0) {
    *len = 1;
    return 0xfffd;
  }
  *len = l;
  return cp;
}

/* Does the class starting after '[' at p[*i] match cp?  Moves *i past the closing ']'. */
static bool
class_match(const char *p, size_t n, size_t *i, uint32_t cp)
{
  size_t j = *i, l;
  bool neg = false, hit = false;
  if (j < n && p[j] == '^')
    neg = true, j++;
  while (j < n && p[j] != ']') {
    if (p[j] == '\\')
      j++;
    uint32_t lo = rune_at(p + j, n - j, &l), hi = lo;
    j += l;
    if (j < n && p[j] == '-') {
      j++;
      if (p[j] == '\\')
        j++;
      hi = rune_at(p + j, n - j, &l);
      j += l;
    }
    if (lo <= cp && cp <= hi)
      hit = true;
  }
  *i = j + 1;
  return hit != neg;
}

/* Match one (valid) component pattern against one name component. */
static bool
comp_match(const char *p, size_t pn, const char *s, size_t sn)
{
  size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0, l;
  while (si < sn) {
    if (pi < pn) {
      char c = p[pi];
      if (c == '*') {
        while (pi < pn && p[pi] == '*')
          pi++;
        star_p = pi, star_s = si;
        continue;
      }
      if (c == '?') {
        pi++;
        si += utf8_len(s + si, sn - si);
        continue;
      }
      if (c == '[') {
        size_t j = pi + 1;
        uint32_t cp = rune_at(s + si, sn - si, &l);
        if (class_match(p, pn, &j, cp)) {
          pi = j;
          si += l;
          continue;
        }
      } else {
        if (c == '\\')
          pi++;
        if (p[pi] == s[si]) {
          pi++, si++;
          continue;
        }
      }
    }
    if (star_p == SIZE_MAX)
      return false;
    star_s += utf8_len(s + star_s, sn - star_s);
    si = star_s;
    pi = star_p;
  }
  while (pi < pn && p[pi] == '*')
    pi++;
  return pi == pn;
}

struct comps {
  const char **p;
  size_t *n;
  size_t count;
};

static void
comps_release(struct comps *c)
{
  free(c->p);
  free(c->n);
  c->p = NULL, c->n = NULL, c->count = 0;
}

/* Split s on '/' (unescaped when escapes is set), ignoring empty components (a leading '/'). */
static void
comps_split(const char *s, bool escapes, struct comps *c)
{
  size_t cap = 1;
  for (const char *t = s; *t; t++)
    cap += *t == '/';
  c->p = xcalloc(cap, sizeof(*c->p));
  c->n = xcalloc(cap, sizeof(*c->n));
  c->count = 0;
  const char *start = s;
  for (const char *t = s;; t++) {
    if (escapes && *t == '\\' && t[1]) {
      t++;
      continue;
    }
    if (*t == '/' || *t == '\0') {
      if (t > start) {
        c->p[c->count] = start;
        c->n[c->count++] = (size_t)(t - start);
      }
      if (*t == '\0')
        break;
      start = t + 1;
    }
  }
}

static bool
path_match(const struct comps *p, size_t pi, const struct comps *s, size_t si)
{
  for (;;) {
    if (pi == p->count)
      return si == s->count;
    if (p->n[pi] == 2 && p->p[pi][0] == '*' && p->p[pi][1] == '*') {
      /* consecutive "**" components mean what one does; skipping them keeps this polynomial */
      while (pi + 1 < p->count && p->n[pi + 1] == 2 && p->p[pi + 1][0] == '*' &&
             p->p[pi + 1][1] == '*')
        pi++;
      if (pi + 1 == p->count)
        return si < s->count; /* trailing "**": one or more components */
      for (size_t k = si; k < s->count; k++)
        if (path_match(p, pi + 1, s, k))
          return true;
      return false;
    }
    if (si == s->count)
      return false;
    if (!comp_match(p->p[pi], p->n[pi], s->p[si], s->n[si]))
      return false;
    pi++, si++;
  }
}

/* A compiled pattern: its alternatives, each split into components. */
struct glob {
  struct ci_strv alts;
  struct comps *c;
  bool abs;
};

static void
glob_release(struct glob *g)
{
  for (size_t i = 0; g->c && i < g->alts.n; i++)
    comps_release(&g->c[i]);
  free(g->c);
  ci_strv_release(&g->alts);
  g->c = NULL;
}

/* Compile pattern; with clean set, each alternative is cleaned (artifacts_expand). */
static int
glob_compile(struct glob *g, const char *pattern, bool clean, struct ci_error **err)
{
  memset(g, 0, sizeof(*g));
  struct ci_strv raw = CI_STRV_INIT;
  int ret = brace_expand(pattern, pattern, &raw, err);
  if (ret < 0) {
    ci_strv_release(&raw);
    return ret;
  }
  for (size_t i = 0; i < raw.n; i++) {
    if (clean)
      ci_strv_push_take(&g->alts, artifacts_path_clean(raw.v[i]));
    else
      ci_strv_push(&g->alts, raw.v[i]);
  }
  ci_strv_release(&raw);
  g->abs = path_is_abs(pattern);
  g->c = xcalloc(g->alts.n, sizeof(*g->c));
  for (size_t i = 0; i < g->alts.n; i++) {
    comps_split(g->alts.v[i], true, &g->c[i]);
    for (size_t k = 0; k < g->c[i].count; k++) {
      if (!comp_valid(g->c[i].p[k], g->c[i].n[k])) {
        glob_release(g);
        return bad_pattern(err, pattern, "malformed character class or escape");
      }
    }
  }
  return 0;
}

static bool
glob_match_comps(const struct glob *g, const struct comps *s)
{
  for (size_t i = 0; i < g->alts.n; i++)
    if (path_match(&g->c[i], 0, s, 0))
      return true;
  return false;
}

int
artifacts_glob_match(const char *pattern, const char *path, struct ci_error **err)
{
  struct glob g;
  int ret = glob_compile(&g, pattern, false, err);
  if (ret < 0)
    return ret;
  struct comps s;
  comps_split(path, false, &s);
  bool m = path_is_abs(pattern) == path_is_abs(path) && glob_match_comps(&g, &s);
  comps_release(&s);
  glob_release(&g);
  return m ? 1 : 0;
}

/* The literal leading part of a clean absolute pattern: the components before the first one
 * with a metacharacter. */
static char *
glob_literal_prefix(const char *pat)
{
  struct ci_buf b = CI_BUF_INIT;
  struct comps c;
  comps_split(pat, true, &c);
  for (size_t i = 0; i < c.count; i++) {
    cleanup_free char *comp = xstrndup(c.p[i], c.n[i]);
    if (artifacts_glob_has_meta(comp))
      break;
    ci_buf_addc(&b, '/');
    ci_buf_adds(&b, comp);
  }
  comps_release(&c);
  if (b.len == 0)
    ci_buf_addc(&b, '/');
  return ci_buf_take(&b);
}

void
artifacts_matches_release(struct artifacts_matches *m)
{
  for (size_t i = 0; i < m->n; i++) {
    free(m->v[i].pattern);
    ci_strv_release(&m->v[i].files);
    ci_strv_release(&m->v[i].dirs);
  }
  free(m->v);
  m->v = NULL;
  m->n = 0;
}

/* A listing made absolute and split once. */
struct listing {
  char **full;      /* owned, NULL for ignored entries */
  const char **rel; /* borrowed from full */
  struct comps *c;
  size_t n;
};

static void
listing_release(struct listing *l)
{
  for (size_t i = 0; i < l->n; i++) {
    free(l->full[i]);
    comps_release(&l->c[i]);
  }
  free(l->full);
  free(l->rel);
  free(l->c);
}

static void
listing_init(struct listing *l, const char *wd, const struct artifacts_path *paths, size_t n)
{
  l->n = n;
  l->full = xcalloc(n ? n : 1, sizeof(*l->full));
  l->rel = xcalloc(n ? n : 1, sizeof(*l->rel));
  l->c = xcalloc(n ? n : 1, sizeof(*l->c));
  for (size_t i = 0; i < n; i++) {
    if (!paths[i].path || path_is_abs(paths[i].path) || has_dotdot(paths[i].path))
      continue;
    char *full = path_join_clean(wd, paths[i].path);
    const char *rel = artifacts_path_rel(full, wd);
    if (!rel || !*rel) {
      free(full);
      continue;
    }
    l->full[i] = full;
    l->rel[i] = rel;
    comps_split(full, false, &l->c[i]);
  }
}

int
artifacts_expand(const char *const *patterns, size_t npatterns, const char *working_dir,
                 const struct artifacts_path *listing, size_t n, struct artifacts_matches *out,
                 struct ci_error **err)
{
  artifacts_matches_release(out);
  cleanup_free char *wd = artifacts_path_clean(working_dir);
  if (!path_is_abs(wd))
    return ci_error_make(err, -EINVAL, "working directory '%s' is not absolute", working_dir);
  struct artifacts_matches res = {xcalloc(npatterns ? npatterns : 1, sizeof(*res.v)), 0};
  struct listing l;
  listing_init(&l, wd, listing, n);
  int ret = 0;
  for (size_t i = 0; i < npatterns && ret >= 0; i++) {
    struct artifacts_match *m = &res.v[res.n++];
    m->pattern = path_is_abs(patterns[i]) ? artifacts_path_clean(patterns[i])
                                          : path_join_clean(wd, patterns[i]);
    struct glob g;
    ret = glob_compile(&g, m->pattern, true, err);
    if (ret < 0)
      break;
    for (size_t a = 0; a < g.alts.n; a++) {
      cleanup_free char *lit = glob_literal_prefix(g.alts.v[a]);
      if (!artifacts_path_is_within(lit, wd)) {
        ret = ci_error_make(err, -EPERM,
                            "path is outside of CIRRUS_WORKING_DIR: path %s should be relative "
                            "to %s",
                            g.alts.v[a], wd);
        break;
      }
    }
    for (size_t k = 0; ret >= 0 && k < l.n; k++) {
      if (!l.full[k] || !glob_match_comps(&g, &l.c[k]))
        continue;
      ci_strv_push(listing[k].is_dir ? &m->dirs : &m->files, l.rel[k]);
    }
    glob_release(&g);
    strv_sort_unique(&m->files);
    strv_sort_unique(&m->dirs);
  }
  listing_release(&l);
  if (ret < 0) {
    artifacts_matches_release(&res);
    return ret;
  }
  *out = res;
  return 0;
}

/* ------------------------------------------------------------------ a small XML reader
 *
 * Enough XML for machine-written reports: elements, attributes, character data (entities
 * decoded, CDATA included, CR LF folded to LF), comments, processing instructions and a DOCTYPE
 * (skipped; entity declarations are refused, nothing external is ever loaded).  The whole
 * document becomes a tree under a nameless root that may hold several elements, or none, as
 * go-junit's "fake root" allows. */

#define XML_MAX_DEPTH 256

struct xml_attr {
  char *name;  /* owned, local name */
  char *value; /* owned, decoded */
};

struct xml_node {
  char *name;             /* owned, local name (after any "prefix:"); NULL for the document root */
  struct xml_attr *attrs; /* owned */
  size_t nattrs;
  struct ci_buf text;        /* direct character data */
  struct xml_node *children; /* owned */
  size_t nchildren, alloc;
};

static void
xml_node_release(struct xml_node *n)
{
  free(n->name);
  for (size_t i = 0; i < n->nattrs; i++) {
    free(n->attrs[i].name);
    free(n->attrs[i].value);
  }
  free(n->attrs);
  ci_buf_release(&n->text);
  for (size_t i = 0; i < n->nchildren; i++)
    xml_node_release(&n->children[i]);
  free(n->children);
  memset(n, 0, sizeof(*n));
}

/* The attribute's value, or "" (borrowed). */
static const char *
xml_attr(const struct xml_node *n, const char *name)
{
  const char *v = "";
  for (size_t i = 0; i < n->nattrs; i++)
    if (strcmp(n->attrs[i].name, name) == 0)
      v = n->attrs[i].value; /* the last one wins, like go-junit's map */
  return v;
}

struct xp {
  const char *s;
  size_t n, i;
  const char *doc; /* report name for messages */
  struct ci_error **err;
};

static unsigned
xp_line(const struct xp *x)
{
  unsigned line = 1;
  for (size_t k = 0; k < x->i && k < x->n; k++)
    line += x->s[k] == '\n';
  return line;
}

static int
xp_fail(struct xp *x, const char *what)
{
  return ci_error_make(x->err, CI_EPROTO, "%s:%u: invalid XML: %s", x->doc, xp_line(x), what);
}

static bool
xp_starts(const struct xp *x, const char *lit)
{
  size_t l = strlen(lit);
  return x->n - x->i >= l && memcmp(x->s + x->i, lit, l) == 0;
}

/* Move past the next occurrence of end; false when there is none. */
static bool
xp_skip_past(struct xp *x, const char *end)
{
  size_t l = strlen(end);
  for (; x->i + l <= x->n; x->i++) {
    if (memcmp(x->s + x->i, end, l) == 0) {
      x->i += l;
      return true;
    }
  }
  x->i = x->n;
  return false;
}

static void
xp_skip_ws(struct xp *x)
{
  while (x->i < x->n && strchr(" \t\r\n", x->s[x->i]) && x->s[x->i])
    x->i++;
}

static bool
xml_name_char(unsigned char c, bool first)
{
  if (isalpha(c) || c == '_' || c == ':' || c >= 0x80)
    return true;
  return !first && (isdigit(c) || c == '-' || c == '.');
}

/* Parse a name at x->i into *raw (owned, as written). */
static int
xp_name(struct xp *x, char **raw)
{
  size_t st = x->i;
  while (x->i < x->n && xml_name_char((unsigned char)x->s[x->i], x->i == st))
    x->i++;
  if (x->i == st)
    return xp_fail(x, "expected a name");
  *raw = xstrndup(x->s + st, x->i - st);
  return 0;
}

static char *
local_name(const char *raw)
{
  const char *c = strrchr(raw, ':');
  return xstrdup(c ? c + 1 : raw);
}

/* Decode the reference at x->i ('&') into b. */
static int
xp_entity(struct xp *x, struct ci_buf *b)
{
  size_t st = ++x->i;
  while (x->i < x->n && x->s[x->i] != ';' && x->i - st < 16)
    x->i++;
  if (x->i >= x->n || x->s[x->i] != ';')
    return xp_fail(x, "unterminated entity reference");
  const char *e = x->s + st;
  size_t l = x->i - st;
  x->i++;
  static const struct {
    const char *name;
    char c;
  } named[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"apos", '\''}, {"quot", '"'}};
  for (size_t k = 0; k < CI_ARRAY_SIZE(named); k++) {
    if (strlen(named[k].name) == l && memcmp(named[k].name, e, l) == 0) {
      ci_buf_addc(b, named[k].c);
      return 0;
    }
  }
  if (l >= 2 && e[0] == '#') {
    uint32_t cp = 0;
    bool hex = e[1] == 'x';
    size_t k = hex ? 2 : 1;
    if (k == l)
      return xp_fail(x, "empty character reference");
    for (; k < l; k++) {
      int d;
      char c = e[k];
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (hex && c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (hex && c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        return xp_fail(x, "invalid character reference");
      cp = cp * (hex ? 16 : 10) + (uint32_t)d;
      if (cp > 0x10ffff)
        return xp_fail(x, "character reference out of range");
    }
    if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
      return xp_fail(x, "invalid character reference");
    utf8_encode(b, cp);
    return 0;
  }
  return xp_fail(x, "unknown entity (only the five predefined ones are supported)");
}

/* Add character data, folding CR LF and lone CR into LF. */
static void
text_add(struct ci_buf *b, const char *s, size_t n)
{
  for (size_t k = 0; k < n; k++) {
    if (s[k] == '\r') {
      ci_buf_addc(b, '\n');
      if (k + 1 < n && s[k + 1] == '\n')
        k++;
    } else {
      ci_buf_addc(b, s[k]);
    }
  }
}

static int
xp_attrs(struct xp *x, struct xml_node *n, bool *empty)
{
  size_t alloc = 0;
  for (;;) {
    size_t before = x->i;
    xp_skip_ws(x);
    if (x->i >= x->n)
      return xp_fail(x, "unterminated start tag");
    if (x->s[x->i] == '>') {
      x->i++;
      *empty = false;
      return 0;
    }
    if (xp_starts(x, "/>")) {
      x->i += 2;
      *empty = true;
      return 0;
    }
    if (x->i == before)
      return xp_fail(x, "expected whitespace between attributes");
    cleanup_free char *raw = NULL;
    int ret = xp_name(x, &raw);
    if (ret < 0)
      return ret;
    xp_skip_ws(x);
    if (x->i >= x->n || x->s[x->i] != '=')
      return xp_fail(x, "expected '=' after attribute name");
    x->i++;
    xp_skip_ws(x);
    if (x->i >= x->n || (x->s[x->i] != '"' && x->s[x->i] != '\''))
      return xp_fail(x, "expected a quoted attribute value");
    char q = x->s[x->i++];
    struct ci_buf v = CI_BUF_INIT;
    while (x->i < x->n && x->s[x->i] != q) {
      if (x->s[x->i] == '&') {
        ret = xp_entity(x, &v);
        if (ret < 0) {
          ci_buf_release(&v);
          return ret;
        }
      } else if (x->s[x->i] == '<') {
        ci_buf_release(&v);
        return xp_fail(x, "unescaped '<' in an attribute value");
      } else {
        size_t st = x->i;
        while (x->i < x->n && x->s[x->i] != q && x->s[x->i] != '&' && x->s[x->i] != '<')
          x->i++;
        text_add(&v, x->s + st, x->i - st);
      }
    }
    if (x->i >= x->n) {
      ci_buf_release(&v);
      return xp_fail(x, "unterminated attribute value");
    }
    x->i++;
    CI_GROW(n->attrs, alloc, n->nattrs + 1);
    n->attrs[n->nattrs].name = local_name(raw);
    n->attrs[n->nattrs].value = ci_buf_take(&v);
    n->nattrs++;
  }
}

/* Skip a DOCTYPE declaration (x->i just past "<!DOCTYPE"). */
static int
xp_doctype(struct xp *x)
{
  int brackets = 0;
  while (x->i < x->n) {
    char c = x->s[x->i];
    if (c == '"' || c == '\'') {
      x->i++;
      while (x->i < x->n && x->s[x->i] != c)
        x->i++;
      if (x->i >= x->n)
        break;
    } else if (c == '[') {
      brackets++;
    } else if (c == ']') {
      brackets--;
    } else if (c == '<' && xp_starts(x, "<!ENTITY")) {
      return xp_fail(x, "entity declarations are not supported");
    } else if (c == '>' && brackets <= 0) {
      x->i++;
      return 0;
    }
    x->i++;
  }
  return xp_fail(x, "unterminated DOCTYPE");
}

static int xp_content(struct xp *x, struct xml_node *parent, const char *raw_name, int depth);

static int
xp_element(struct xp *x, struct xml_node *parent, int depth)
{
  if (depth >= XML_MAX_DEPTH)
    return xp_fail(x, "elements nested too deeply");
  x->i++; /* '<' */
  cleanup_free char *raw = NULL;
  int ret = xp_name(x, &raw);
  if (ret < 0)
    return ret;
  CI_GROW(parent->children, parent->alloc, parent->nchildren + 1);
  struct xml_node *n = &parent->children[parent->nchildren++];
  memset(n, 0, sizeof(*n));
  n->name = local_name(raw);
  bool empty = false;
  ret = xp_attrs(x, n, &empty);
  if (ret < 0 || empty)
    return ret;
  return xp_content(x, n, raw, depth + 1);
}

/* Parse content into parent until its end tag (raw_name), or to the end of the document when
 * raw_name is NULL. */
static int
xp_content(struct xp *x, struct xml_node *parent, const char *raw_name, int depth)
{
  int ret;
  while (x->i < x->n) {
    char c = x->s[x->i];
    if (c == '&') {
      if ((ret = xp_entity(x, &parent->text)) < 0)
        return ret;
    } else if (c != '<') {
      size_t st = x->i;
      while (x->i < x->n && x->s[x->i] != '<' && x->s[x->i] != '&')
        x->i++;
      text_add(&parent->text, x->s + st, x->i - st);
    } else if (xp_starts(x, "<!--")) {
      if (!xp_skip_past(x, "-->"))
        return xp_fail(x, "unterminated comment");
    } else if (xp_starts(x, "<![CDATA[")) {
      x->i += 9;
      size_t st = x->i;
      if (!xp_skip_past(x, "]]>"))
        return xp_fail(x, "unterminated CDATA section");
      text_add(&parent->text, x->s + st, x->i - 3 - st);
    } else if (xp_starts(x, "<!DOCTYPE")) {
      if (raw_name)
        return xp_fail(x, "DOCTYPE inside an element");
      x->i += 9;
      if ((ret = xp_doctype(x)) < 0)
        return ret;
    } else if (xp_starts(x, "<?")) {
      if (!xp_skip_past(x, "?>"))
        return xp_fail(x, "unterminated processing instruction");
    } else if (xp_starts(x, "</")) {
      if (!raw_name)
        return xp_fail(x, "end tag without a start tag");
      x->i += 2;
      cleanup_free char *end = NULL;
      if ((ret = xp_name(x, &end)) < 0)
        return ret;
      if (strcmp(end, raw_name) != 0)
        return xp_fail(x, "end tag does not match its start tag");
      xp_skip_ws(x);
      if (x->i >= x->n || x->s[x->i] != '>')
        return xp_fail(x, "expected '>' at the end of an end tag");
      x->i++;
      return 0;
    } else {
      if ((ret = xp_element(x, parent, depth)) < 0)
        return ret;
    }
  }
  if (raw_name)
    return xp_fail(x, "unexpected end of document (an element is not closed)");
  return 0;
}

/* Windows-1252's 0x80..0x9f (0 = undefined). */
static const uint16_t cp1252_high[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178};

/* The encoding named by an XML declaration at the start of s, in enc (lower case), or "". */
static void
xml_declared_encoding(const char *s, size_t n, char *enc, size_t encsz)
{
  enc[0] = '\0';
  if (n < 5 || memcmp(s, "<?xml", 5) != 0)
    return;
  const char *end = memmem(s, n, "?>", 2);
  if (!end)
    return;
  const char *e = memmem(s, (size_t)(end - s), "encoding", 8);
  if (!e)
    return;
  e += 8;
  while (e < end && strchr(" \t\r\n=", *e))
    e++;
  if (e >= end || (*e != '"' && *e != '\''))
    return;
  char q = *e++;
  size_t k = 0;
  while (e < end && *e != q && k + 1 < encsz)
    enc[k++] = (char)tolower((unsigned char)*e++);
  enc[k] = '\0';
}

/* Parse a document into *root (released by the caller with xml_node_release). */
static int
xml_parse(const char *doc, const char *data, size_t len, struct xml_node *root,
          struct ci_error **err)
{
  memset(root, 0, sizeof(*root));
  const unsigned char *u = (const unsigned char *)data;
  if (len >= 2 && ((u[0] == 0xfe && u[1] == 0xff) || (u[0] == 0xff && u[1] == 0xfe)))
    return ci_error_make(err, CI_EPROTO, "%s: UTF-16 reports are not supported", doc);
  if (len >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf)
    data += 3, len -= 3;
  char enc[32];
  xml_declared_encoding(data, len, enc, sizeof(enc));
  struct ci_buf conv = CI_BUF_INIT;
  bool latin1 = !strcmp(enc, "iso-8859-1") || !strcmp(enc, "latin1") || !strcmp(enc, "latin-1") ||
                !strcmp(enc, "iso8859-1");
  bool cp1252 = !strcmp(enc, "windows-1252") || !strcmp(enc, "cp1252");
  if (latin1 || cp1252) {
    for (size_t k = 0; k < len; k++) {
      unsigned char c = (unsigned char)data[k];
      if (c < 0x80)
        ci_buf_addc(&conv, (char)c);
      else if (cp1252 && c < 0xa0 && cp1252_high[c - 0x80])
        utf8_encode(&conv, cp1252_high[c - 0x80]);
      else
        utf8_encode(&conv, c);
    }
    data = conv.s, len = conv.len;
  } else if (enc[0] && strcmp(enc, "utf-8") && strcmp(enc, "utf8") && strcmp(enc, "us-ascii") &&
             strcmp(enc, "ascii")) {
    return ci_error_make(err, CI_EPROTO, "%s: unsupported XML encoding '%s'", doc, enc);
  }
  for (size_t k = 0; k < len;) {
    uint32_t cp;
    size_t l = utf8_decode((const unsigned char *)data + k, len - k, &cp);
    if (l == 0 || cp == 0) {
      ci_buf_release(&conv);
      return ci_error_make(err, CI_EPROTO, "%s: invalid UTF-8 at byte %zu", doc, k);
    }
    k += l;
  }
  struct xp x = {data, len, 0, doc, err};
  int ret = xp_content(&x, root, NULL, 0);
  ci_buf_release(&conv);
  if (ret < 0)
    xml_node_release(root);
  return ret;
}

/* ------------------------------------------------------------------ annotations */

void
artifacts_annotations_release(struct artifacts_annotations *a)
{
  for (size_t i = 0; i < a->n; i++) {
    free(a->v[i].message);
    free(a->v[i].raw_details);
    free(a->v[i].path);
  }
  free(a->v);
  a->v = NULL;
  a->n = a->alloc = 0;
}

/* Append an annotation; strings are copied (NULL = ""). */
static struct artifacts_annotation *
annot_add(struct artifacts_annotations *a, enum artifacts_level level, const char *message,
          const char *details, const char *path, int64_t line, int64_t end_line)
{
  CI_GROW(a->v, a->alloc, a->n + 1);
  struct artifacts_annotation *r = &a->v[a->n++];
  memset(r, 0, sizeof(*r));
  r->level = level;
  r->message = xstrdup(message ? message : "");
  r->raw_details = xstrdup(details ? details : "");
  r->path = xstrdup(path ? path : "");
  r->start_line = line;
  r->end_line = end_line;
  return r;
}

static bool
blank(const char *s)
{
  for (; *s; s++)
    if (!isspace((unsigned char)*s))
      return false;
  return true;
}

/* Go's strconv.Atoi: optional sign and decimal digits only; anything else (or overflow) is 0,
 * as upstream ignores the error. */
static int64_t
atoi_go(const char *s)
{
  const char *p = s;
  bool neg = false;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (!*p)
    return 0;
  int64_t v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    if (v > (INT64_MAX - (*p - '0')) / 10)
      return 0;
    v = v * 10 + (*p - '0');
  }
  return neg ? -v : v;
}

/* cirrus-ci-annotations' GuessLocationIgnored: the first `[\w\\.]+:(\d+)` on a line that
 * contains none of the ignored words.  Returns true with *path (owned) and *line. */
static bool
guess_location(const char *text, char **path, int64_t *line)
{
  static const char *const ignored[] = {"junit", "kotlin"};
  const char *s = text;
  for (;;) {
    const char *eol = strchr(s, '\n');
    size_t n = eol ? (size_t)(eol - s) : strlen(s);
    size_t k = 0;
    while (k < n) {
      /* the next maximal run of [A-Za-z0-9_\\.] */
      while (k < n && !(isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '\\' || s[k] == '.'))
        k++;
      size_t st = k;
      while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '\\' || s[k] == '.'))
        k++;
      if (k == st)
        break;
      if (k + 1 < n && s[k] == ':' && s[k + 1] >= '0' && s[k + 1] <= '9') {
        bool skip = false;
        for (size_t w = 0; w < CI_ARRAY_SIZE(ignored); w++)
          skip |= memmem(s, n, ignored[w], strlen(ignored[w])) != NULL;
        if (skip)
          break;
        size_t d = k + 1;
        int64_t v = 0;
        bool overflow = false;
        while (d < n && s[d] >= '0' && s[d] <= '9') {
          if (v > (INT64_MAX - (s[d] - '0')) / 10)
            overflow = true;
          else
            v = v * 10 + (s[d] - '0');
          d++;
        }
        if (overflow)
          break; /* ParseInt fails: upstream moves to the next line */
        *path = xstrndup(s + st, k - st);
        *line = v;
        return true;
      }
    }
    if (!eol)
      return false;
    s = eol + 1;
  }
}

static void
junit_testcase(const struct xml_node *tc, struct artifacts_annotations *out)
{
  enum { PASSED, SKIPPED, FAILED } status = PASSED;
  const struct xml_node *fail = NULL;
  for (size_t i = 0; i < tc->nchildren; i++) {
    const struct xml_node *c = &tc->children[i];
    if (!strcmp(c->name, "skipped")) {
      status = SKIPPED;
    } else if (!strcmp(c->name, "failure") || !strcmp(c->name, "error")) {
      status = FAILED;
      fail = c;
    }
  }
  if (status == SKIPPED)
    return;
  cleanup_free char *fqn = xasprintf("%s.%s", xml_attr(tc, "classname"), xml_attr(tc, "name"));
  struct artifacts_annotation *a;
  if (status == PASSED) {
    a = annot_add(out, ARTIFACTS_NOTICE, fqn, NULL, NULL, 0, 0);
  } else {
    const char *details = ci_buf_str(&fail->text);
    if (blank(details))
      details = xml_attr(fail, "message");
    if (blank(details))
      details = xml_attr(fail, "type");
    cleanup_free char *path = NULL;
    int64_t line = 0;
    guess_location(details, &path, &line);
    a = annot_add(out, ARTIFACTS_FAILURE, fqn, details, path, line, line);
  }
  const char *file = xml_attr(tc, "file");
  if (*file) {
    free(a->path);
    a->path = xstrdup(file);
    a->start_line = a->end_line = atoi_go(xml_attr(tc, "line"));
  }
}

static void
junit_suite(const struct xml_node *suite, struct artifacts_annotations *out)
{
  for (size_t i = 0; i < suite->nchildren; i++) {
    const struct xml_node *c = &suite->children[i];
    if (!strcmp(c->name, "testcase"))
      junit_testcase(c, out);
    else if (!strcmp(c->name, "testsuite"))
      junit_suite(c, out);
  }
}

static void
junit_find_suites(const struct xml_node *n, struct artifacts_annotations *out)
{
  for (size_t i = 0; i < n->nchildren; i++) {
    const struct xml_node *c = &n->children[i];
    if (!strcmp(c->name, "testsuite"))
      junit_suite(c, out);
    else
      junit_find_suites(c, out);
  }
}

static int
parse_junit(const char *doc, const char *data, size_t len, struct artifacts_annotations *out,
            struct ci_error **err)
{
  struct xml_node root;
  int ret = xml_parse(doc, data, len, &root, err);
  if (ret < 0)
    return ret;
  junit_find_suites(&root, out);
  xml_node_release(&root);
  return 0;
}

/* Go's xml decoding of an int attribute: trimmed; "" is 0; anything else must parse. */
static int
xml_int_attr(const struct xml_node *n, const char *name, const char *doc, int64_t *v,
             struct ci_error **err)
{
  const char *s = xml_attr(n, name);
  while (isspace((unsigned char)*s))
    s++;
  size_t l = strlen(s);
  while (l > 0 && isspace((unsigned char)s[l - 1]))
    l--;
  *v = 0;
  if (l == 0)
    return 0;
  cleanup_free char *t = xstrndup(s, l);
  char *end;
  errno = 0;
  long long r = strtoll(t, &end, 10);
  if (errno || *end || !(isdigit((unsigned char)t[0]) || t[0] == '-' || t[0] == '+'))
    return ci_error_make(err, CI_EPROTO, "%s: attribute %s=\"%s\" of <%s> is not an integer", doc,
                         name, t, n->name);
  *v = r;
  return 0;
}

/* The first element of the document, which must be named want. */
static int
xml_root(const struct xml_node *doc_root, const char *want, const char *doc,
         const struct xml_node **out, struct ci_error **err)
{
  if (doc_root->nchildren == 0)
    return ci_error_make(err, CI_EPROTO, "%s: empty XML document", doc);
  const struct xml_node *r = &doc_root->children[0];
  if (strcmp(r->name, want) != 0)
    return ci_error_make(err, CI_EPROTO, "%s: expected element type <%s> but have <%s>", doc, want,
                         r->name);
  *out = r;
  return 0;
}

static int
parse_android_lint(const char *doc, const char *data, size_t len, struct artifacts_annotations *out,
                   struct ci_error **err)
{
  struct xml_node root;
  int ret = xml_parse(doc, data, len, &root, err);
  if (ret < 0)
    return ret;
  const struct xml_node *issues = NULL;
  int64_t format = 0;
  ret = xml_root(&root, "issues", doc, &issues, err);
  if (ret >= 0)
    ret = xml_int_attr(issues, "format", doc, &format, err);
  if (ret >= 0 && format > 6)
    ret = ci_error_make(err, CI_EPROTO,
                        "%s: Unsupported report version %lld. Maximum supported version is 6", doc,
                        (long long)format);
  static const struct {
    const char *severity;
    enum artifacts_level level;
  } map[] = {{"Fatal", ARTIFACTS_FAILURE},
             {"Error", ARTIFACTS_FAILURE},
             {"Warning", ARTIFACTS_WARNING},
             {"Information", ARTIFACTS_NOTICE}};
  for (size_t i = 0; ret >= 0 && i < issues->nchildren; i++) {
    const struct xml_node *is = &issues->children[i];
    if (strcmp(is->name, "issue") != 0)
      continue;
    const char *sev = xml_attr(is, "severity");
    int lv = -1;
    for (size_t k = 0; k < CI_ARRAY_SIZE(map); k++)
      if (!strcmp(sev, map[k].severity))
        lv = (int)map[k].level;
    for (size_t k = 0; ret >= 0 && k < is->nchildren; k++) {
      const struct xml_node *loc = &is->children[k];
      if (strcmp(loc->name, "location") != 0)
        continue;
      int64_t line = 0, col = 0;
      ret = xml_int_attr(loc, "line", doc, &line, err);
      if (ret >= 0)
        ret = xml_int_attr(loc, "column", doc, &col, err);
      if (ret < 0 || lv < 0)
        continue;
      struct artifacts_annotation *a =
          annot_add(out, (enum artifacts_level)lv, xml_attr(is, "message"),
                    xml_attr(is, "explanation"), xml_attr(loc, "file"), line, line);
      a->start_column = a->end_column = col;
    }
  }
  xml_node_release(&root);
  return ret;
}

static int
boost_suite(const struct xml_node *suite, const char *doc, struct artifacts_annotations *out,
            struct ci_error **err)
{
  int ret = 0;
  for (size_t i = 0; ret >= 0 && i < suite->nchildren; i++)
    if (!strcmp(suite->children[i].name, "TestSuite"))
      ret = boost_suite(&suite->children[i], doc, out, err);
  for (size_t i = 0; ret >= 0 && i < suite->nchildren; i++) {
    const struct xml_node *tc = &suite->children[i];
    if (strcmp(tc->name, "TestCase") != 0)
      continue;
    for (size_t k = 0; ret >= 0 && k < tc->nchildren; k++) {
      const struct xml_node *e = &tc->children[k];
      if (strcmp(e->name, "Error") != 0)
        continue;
      int64_t line = 0;
      ret = xml_int_attr(e, "line", doc, &line, err);
      if (ret >= 0)
        annot_add(out, ARTIFACTS_FAILURE, ci_buf_str(&e->text), NULL, xml_attr(e, "file"), line,
                  line);
    }
  }
  return ret;
}

static int
parse_boost(const char *doc, const char *data, size_t len, struct artifacts_annotations *out,
            struct ci_error **err)
{
  struct xml_node root;
  int ret = xml_parse(doc, data, len, &root, err);
  if (ret < 0)
    return ret;
  const struct xml_node *log = NULL;
  ret = xml_root(&root, "TestLog", doc, &log, err);
  for (size_t i = 0; ret >= 0 && i < log->nchildren; i++)
    if (!strcmp(log->children[i].name, "TestSuite"))
      ret = boost_suite(&log->children[i], doc, out, err);
  xml_node_release(&root);
  return ret;
}

/* ------------------------------------------------------------------ JSON reports
 *
 * Go's encoding/json rules: object keys match struct fields exactly or else
 * case-insensitively; a missing or null field is the zero value; a field of the wrong type is
 * an error. */

struct jctx {
  const char *doc;
  struct ci_error **err;
  int ret;
};

static json_t *
jget(json_t *obj, const char *key)
{
  if (!json_is_object(obj))
    return NULL;
  json_t *v = json_object_get(obj, key);
  if (v)
    return v;
  const char *k;
  json_object_foreach(obj, k, v)
  {
    if (strcasecmp(k, key) == 0)
      return v;
  }
  return NULL;
}

static void
jtype_error(struct jctx *c, const char *key, const char *want)
{
  if (c->ret >= 0)
    c->ret = ci_error_make(c->err, CI_EPROTO, "%s: field '%s' is not %s", c->doc, key, want);
}

static const char *
jstr(struct jctx *c, json_t *obj, const char *key)
{
  json_t *v = jget(obj, key);
  if (!v || json_is_null(v))
    return "";
  if (!json_is_string(v)) {
    jtype_error(c, key, "a string");
    return "";
  }
  return json_string_value(v);
}

static int64_t
jint(struct jctx *c, json_t *obj, const char *key)
{
  json_t *v = jget(obj, key);
  if (!v || json_is_null(v))
    return 0;
  if (json_is_integer(v))
    return (int64_t)json_integer_value(v);
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d == (double)(int64_t)d)
      return (int64_t)d;
  }
  jtype_error(c, key, "an integer");
  return 0;
}

static bool
jbool(struct jctx *c, json_t *obj, const char *key)
{
  json_t *v = jget(obj, key);
  if (!v || json_is_null(v))
    return false;
  if (!json_is_boolean(v)) {
    jtype_error(c, key, "a boolean");
    return false;
  }
  return json_is_true(v);
}

/* An array field (NULL when missing or null; a type error otherwise). */
static json_t *
jarr(struct jctx *c, json_t *obj, const char *key)
{
  json_t *v = jget(obj, key);
  if (!v || json_is_null(v))
    return NULL;
  if (!json_is_array(v)) {
    jtype_error(c, key, "an array");
    return NULL;
  }
  return v;
}

static json_t *
jobj(struct jctx *c, json_t *obj, const char *key)
{
  json_t *v = jget(obj, key);
  if (!v || json_is_null(v))
    return NULL;
  if (!json_is_object(v)) {
    jtype_error(c, key, "an object");
    return NULL;
  }
  return v;
}

static int
json_fail(const char *doc, const json_error_t *je, struct ci_error **err)
{
  return ci_error_make(err, CI_EPROTO, "%s:%d:%d: invalid JSON: %s", doc, je->line, je->column,
                       je->text);
}

/* Parse one JSON document. */
static int
json_doc(const char *doc, const char *data, size_t len, json_t **out, struct ci_error **err)
{
  json_error_t je;
  json_t *j = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (!j)
    return json_fail(doc, &je, err);
  *out = j;
  return 0;
}

/* Go's json.Decoder loop: consecutive JSON values separated by whitespace.  cb gets each. */
typedef void (*json_value_cb)(struct jctx *c, json_t *v, void *data);
static int
json_stream(const char *doc, const char *data, size_t len, json_value_cb cb, void *cbdata,
            struct ci_error **err)
{
  struct jctx c = {doc, err, 0};
  size_t off = 0;
  for (;;) {
    while (off < len && strchr(" \t\r\n", data[off]) && data[off])
      off++;
    if (off >= len)
      break;
    json_error_t je;
    json_t *v = json_loadb(data + off, len - off,
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &je);
    if (!v)
      return json_fail(doc, &je, err);
    if (je.position <= 0) {
      json_decref(v);
      return ci_error_make(err, CI_EPROTO, "%s: invalid JSON stream", doc);
    }
    off += (size_t)je.position;
    cb(&c, v, cbdata);
    json_decref(v);
    if (c.ret < 0)
      return c.ret;
  }
  return 0;
}

static void
json_cirrus_one(struct jctx *c, json_t *v, void *data)
{
  struct artifacts_annotations *out = data;
  if (json_is_null(v))
    return;
  if (!json_is_object(v)) {
    if (c->ret >= 0)
      c->ret = ci_error_make(c->err, CI_EPROTO, "%s: an annotation is not a JSON object", c->doc);
    return;
  }
  const char *level = jstr(c, v, "level");
  enum artifacts_level lv = ARTIFACTS_NOTICE;
  if (!strcmp(level, "warning"))
    lv = ARTIFACTS_WARNING;
  else if (!strcmp(level, "failure"))
    lv = ARTIFACTS_FAILURE;
  else if (*level && strcmp(level, "notice") != 0 && c->ret >= 0)
    c->ret =
        ci_error_make(c->err, CI_EPROTO, "%s: unsupported annotation level: \"%s\"", c->doc, level);
  if (c->ret < 0)
    return;
  struct artifacts_annotation *a =
      annot_add(out, lv, jstr(c, v, "message"), jstr(c, v, "raw_details"), jstr(c, v, "path"),
                jint(c, v, "start_line"), jint(c, v, "end_line"));
  a->start_column = jint(c, v, "start_column");
  a->end_column = jint(c, v, "end_column");
}

static void
json_buf_one(struct jctx *c, json_t *v, void *data)
{
  struct artifacts_annotations *out = data;
  if (json_is_null(v))
    return;
  struct artifacts_annotation *a =
      annot_add(out, ARTIFACTS_WARNING, jstr(c, v, "message"), NULL, jstr(c, v, "path"),
                jint(c, v, "start_line"), jint(c, v, "end_line"));
  a->start_column = jint(c, v, "start_column");
  a->end_column = jint(c, v, "end_column");
}

static void
json_swiftformat_one(struct jctx *c, json_t *v, void *data)
{
  struct artifacts_annotations *out = data;
  if (json_is_null(v))
    return;
  if (!json_is_array(v)) {
    jtype_error(c, "(top level)", "an array");
    return;
  }
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e)
  {
    cleanup_free char *msg = xasprintf("%s: %s", jstr(c, e, "rule_id"), jstr(c, e, "reason"));
    int64_t line = jint(c, e, "line");
    annot_add(out, ARTIFACTS_WARNING, msg, NULL, jstr(c, e, "file"), line, line);
  }
}

struct flutter_state {
  struct artifacts_annotations *out;
  struct artifacts_annotations running; /* message/path/lines of started tests */
  int64_t *ids;
  size_t alloc_ids;
};

static void
json_flutter_one(struct jctx *c, json_t *v, void *data)
{
  struct flutter_state *st = data;
  if (!json_is_object(v))
    return; /* upstream skips values that are not objects */
  const char *type = jstr(c, v, "type");
  if (!strcmp(type, "testStart")) {
    json_t *t = jobj(c, v, "test");
    const char *url = jstr(c, t, "url");
    if (ci_str_has_prefix(url, "file://"))
      url += 7;
    int64_t line = jint(c, t, "line");
    int64_t id = jint(c, t, "id");
    size_t k;
    for (k = 0; k < st->running.n && st->ids[k] != id; k++)
      ;
    if (k < st->running.n) { /* a restarted id replaces the old entry */
      free(st->running.v[k].message);
      free(st->running.v[k].raw_details);
      free(st->running.v[k].path);
      st->running.v[k] = st->running.v[--st->running.n];
      st->ids[k] = st->ids[st->running.n];
    }
    CI_GROW(st->ids, st->alloc_ids, st->running.n + 1);
    st->ids[st->running.n] = id;
    struct artifacts_annotation *a =
        annot_add(&st->running, ARTIFACTS_NOTICE, jstr(c, t, "name"), NULL, url, line, line);
    a->start_column = a->end_column = jint(c, t, "column");
    return;
  }
  bool err_ev = !strcmp(type, "error");
  bool done_ev = !strcmp(type, "testDone");
  if (!err_ev && !done_ev)
    return;
  int64_t id = jint(c, v, "testID");
  size_t k;
  for (k = 0; k < st->running.n && st->ids[k] != id; k++)
    ;
  if (k == st->running.n)
    return;
  struct artifacts_annotation *a = &st->running.v[k];
  if (err_ev) {
    free(a->raw_details);
    a->raw_details = xstrdup(jstr(c, v, "error"));
    return;
  }
  if (!strcmp(jstr(c, v, "result"), "success"))
    return;
  a->level = ARTIFACTS_FAILURE;
  CI_GROW(st->out->v, st->out->alloc, st->out->n + 1);
  st->out->v[st->out->n++] = *a; /* ownership moves */
  st->running.v[k] = st->running.v[--st->running.n];
  st->ids[k] = st->ids[st->running.n];
}

static int
parse_json_report(const char *format, const char *doc, const char *data, size_t len,
                  struct artifacts_annotations *out, struct ci_error **err)
{
  json_t *j = NULL;
  int ret = json_doc(doc, data, len, &j, err);
  if (ret < 0)
    return ret;
  struct jctx c = {doc, err, 0};
  size_t i, k, m;
  json_t *e, *f, *g;
  if (!strcmp(format, "golangci")) {
    json_t *issues = jarr(&c, j, "Issues");
    json_array_foreach(issues, i, e)
    {
      json_t *pos = jobj(&c, e, "Pos");
      cleanup_free char *msg = xasprintf("%s (%s)", jstr(&c, e, "Text"), jstr(&c, e, "FromLinter"));
      int64_t line = jint(&c, pos, "Line");
      struct artifacts_annotation *a =
          annot_add(out, ARTIFACTS_FAILURE, msg, NULL, jstr(&c, pos, "Filename"), line, line);
      a->start_column = jint(&c, pos, "Column");
    }
  } else if (!strcmp(format, "eslint")) {
    if (!json_is_array(j) && !json_is_null(j))
      jtype_error(&c, "(top level)", "an array");
    json_array_foreach(j, i, e)
    {
      const char *file = jstr(&c, e, "filePath");
      json_t *msgs = jarr(&c, e, "messages");
      json_array_foreach(msgs, k, f)
      {
        int64_t sev = jint(&c, f, "severity");
        enum artifacts_level lv = sev == 1   ? ARTIFACTS_WARNING
                                  : sev == 2 ? ARTIFACTS_FAILURE
                                             : ARTIFACTS_NOTICE;
        cleanup_free char *msg = xasprintf("%s: %s", jstr(&c, f, "ruleId"), jstr(&c, f, "message"));
        int64_t line = jint(&c, f, "line");
        struct artifacts_annotation *a = annot_add(out, lv, msg, NULL, file, line, line);
        a->start_column = a->end_column = jint(&c, f, "column");
      }
    }
  } else if (!strcmp(format, "rubocop")) {
    static const struct {
      const char *sev;
      enum artifacts_level lv;
    } map[] = {{"refactor", ARTIFACTS_NOTICE},
               {"convention", ARTIFACTS_NOTICE},
               {"warning", ARTIFACTS_WARNING},
               {"error", ARTIFACTS_FAILURE},
               {"fatal", ARTIFACTS_FAILURE}};
    json_t *files = jarr(&c, j, "files");
    json_array_foreach(files, i, e)
    {
      const char *file = jstr(&c, e, "path");
      json_t *offenses = jarr(&c, e, "offenses");
      json_array_foreach(offenses, k, f)
      {
        const char *sev = jstr(&c, f, "severity");
        int lv = -1;
        for (m = 0; m < CI_ARRAY_SIZE(map); m++)
          if (!strcmp(sev, map[m].sev))
            lv = (int)map[m].lv;
        if (lv < 0)
          continue;
        if (jbool(&c, f, "corrected"))
          lv = ARTIFACTS_NOTICE;
        json_t *loc = jobj(&c, f, "location");
        cleanup_free char *msg =
            xasprintf("%s: %s", jstr(&c, f, "cop_name"), jstr(&c, f, "message"));
        int64_t line = jint(&c, loc, "line");
        struct artifacts_annotation *a =
            annot_add(out, (enum artifacts_level)lv, msg, NULL, file, line, line);
        a->start_column = a->end_column = jint(&c, loc, "column");
      }
    }
  } else if (!strcmp(format, "rspec")) {
    json_t *examples = jarr(&c, j, "examples");
    json_array_foreach(examples, i, e)
    {
      const char *status = jstr(&c, e, "status");
      enum artifacts_level lv;
      const char *details;
      if (!strcmp(status, "pending")) {
        lv = ARTIFACTS_NOTICE;
        details = jstr(&c, e, "pending_message");
      } else if (!strcmp(status, "failed")) {
        lv = ARTIFACTS_FAILURE;
        details = jstr(&c, jobj(&c, e, "exception"), "message");
      } else {
        continue;
      }
      cleanup_free char *path = artifacts_path_clean(jstr(&c, e, "file_path"));
      int64_t line = jint(&c, e, "line_number");
      annot_add(out, lv, jstr(&c, e, "full_description"), details, path, line, line);
    }
  } else if (!strcmp(format, "qodana")) {
    json_t *problems = jarr(&c, j, "listProblem");
    json_array_foreach(problems, i, e)
    {
      const char *sev = jstr(&c, e, "severity");
      enum artifacts_level lv = ARTIFACTS_NOTICE;
      if (!strcasecmp(sev, "critical"))
        lv = ARTIFACTS_FAILURE;
      else if (!strcasecmp(sev, "high") || !strcasecmp(sev, "moderate"))
        lv = ARTIFACTS_WARNING;
      json_t *sources = jarr(&c, e, "sources");
      json_array_foreach(sources, k, f)
      {
        int64_t line = jint(&c, f, "line");
        struct artifacts_annotation *a =
            annot_add(out, lv, jstr(&c, e, "comment"), jstr(&c, e, "detailsInfo"),
                      jstr(&c, f, "path"), line, line);
        a->start_column = a->end_column = jint(&c, f, "offset");
      }
    }
  } else if (!strcmp(format, "xclogparser")) {
    static const struct {
      const char *key;
      enum artifacts_level lv;
    } kinds[] = {{"errors", ARTIFACTS_FAILURE},
                 {"warnings", ARTIFACTS_WARNING},
                 {"notes", ARTIFACTS_NOTICE}};
    if (!json_is_array(j) && !json_is_null(j))
      jtype_error(&c, "(top level)", "an array");
    json_array_foreach(j, i, e)
    {
      for (m = 0; m < CI_ARRAY_SIZE(kinds); m++) {
        json_t *list = jarr(&c, e, kinds[m].key);
        json_array_foreach(list, k, g)
        {
          const char *url = jstr(&c, g, "documentURL");
          if (!*url)
            continue;
          if (ci_str_has_prefix(url, "file://"))
            url += 7;
          struct artifacts_annotation *a =
              annot_add(out, kinds[m].lv, jstr(&c, g, "title"), jstr(&c, g, "detail"), url,
                        jint(&c, g, "startingLineNumber"), jint(&c, g, "endingLineNumber"));
          a->start_column = jint(&c, g, "startingColumnNumber");
          a->end_column = jint(&c, g, "endingColumnNumber");
        }
      }
    }
  }
  json_decref(j);
  return c.ret;
}

static const char *const known_formats[] = {
    "junit",        "cirrus", "golangci", "eslint",      "rubocop", "rspec",      "qodana",
    "android-lint", "boost",  "buf",      "swiftformat", "flutter", "xclogparser"};

bool
artifacts_format_is_known(const char *format)
{
  for (size_t i = 0; format && i < CI_ARRAY_SIZE(known_formats); i++)
    if (!strcasecmp(format, known_formats[i]))
      return true;
  return false;
}

int
artifacts_parse_annotations(const char *format, const char *name, const char *data, size_t len,
                            struct artifacts_annotations *out, struct ci_error **err)
{
  if (!artifacts_format_is_known(format))
    return 0;
  char f[16];
  size_t k;
  for (k = 0; format[k] && k + 1 < sizeof(f); k++)
    f[k] = (char)tolower((unsigned char)format[k]);
  f[k] = '\0';
  if (!data)
    data = "", len = 0;
  if (!strcmp(f, "junit"))
    return parse_junit(name, data, len, out, err);
  if (!strcmp(f, "android-lint"))
    return parse_android_lint(name, data, len, out, err);
  if (!strcmp(f, "boost"))
    return parse_boost(name, data, len, out, err);
  if (!strcmp(f, "cirrus"))
    return json_stream(name, data, len, json_cirrus_one, out, err);
  if (!strcmp(f, "buf"))
    return json_stream(name, data, len, json_buf_one, out, err);
  if (!strcmp(f, "swiftformat"))
    return json_stream(name, data, len, json_swiftformat_one, out, err);
  if (!strcmp(f, "flutter")) {
    struct flutter_state st = {out, ARTIFACTS_ANNOTATIONS_INIT, NULL, 0};
    int ret = json_stream(name, data, len, json_flutter_one, &st, err);
    artifacts_annotations_release(&st.running);
    free(st.ids);
    return ret;
  }
  return parse_json_report(f, name, data, len, out, err);
}

/* ------------------------------------------------------------------ normalizing */

/* filepath.Walk order: component by component, byte order within a directory. */
static int
cmp_walk(const void *a, const void *b)
{
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  for (;;) {
    size_t lx = strcspn(x, "/"), ly = strcspn(y, "/");
    size_t l = lx < ly ? lx : ly;
    int c = memcmp(x, y, l);
    if (c)
      return c;
    if (lx != ly)
      return lx < ly ? -1 : 1;
    if (!x[lx] || !y[ly])
      return (x[lx] != 0) - (y[ly] != 0);
    x += lx + 1, y += ly + 1;
  }
}

char *
artifacts_path_relative(const char *base, const char *target)
{
  struct comps b, t;
  comps_split(base, false, &b);
  comps_split(target, false, &t);
  size_t i = 0;
  while (i < b.count && i < t.count && b.n[i] == t.n[i] && !memcmp(b.p[i], t.p[i], b.n[i]))
    i++;
  struct ci_buf o = CI_BUF_INIT;
  for (size_t k = i; k < b.count; k++)
    ci_buf_adds(&o, o.len ? "/.." : "..");
  for (size_t k = i; k < t.count; k++) {
    if (o.len)
      ci_buf_addc(&o, '/');
    ci_buf_add(&o, t.p[k], t.n[k]);
  }
  comps_release(&b);
  comps_release(&t);
  if (o.len == 0)
    ci_buf_addc(&o, '.');
  return ci_buf_take(&o);
}

void
artifacts_annotations_normalize(struct artifacts_annotations *a, const char *working_dir,
                                const struct artifacts_path *listing, size_t n)
{
  cleanup_free char *wd = artifacts_path_clean(working_dir);
  struct listing l;
  listing_init(&l, wd, listing, n);
  /* every listed entry (for "exists") and the files in walk order (for the base-name index) */
  struct ci_strv all = CI_STRV_INIT, files = CI_STRV_INIT;
  for (size_t i = 0; i < l.n; i++) {
    if (!l.full[i])
      continue;
    ci_strv_push(&all, l.rel[i]);
    if (!listing[i].is_dir)
      ci_strv_push(&files, l.rel[i]);
  }
  qsort(all.v, all.n, sizeof(*all.v), cmp_str);
  qsort(files.v, files.n, sizeof(*files.v), cmp_walk);
  for (size_t i = 0; i < a->n; i++) {
    struct artifacts_annotation *an = &a->v[i];
    cleanup_free char *path = NULL;
    if (path_is_abs(an->path)) {
      cleanup_free char *c = artifacts_path_clean(an->path);
      path = artifacts_path_relative(wd, c);
    } else {
      path = xstrdup(an->path);
    }
    cleanup_free char *full = path_join_clean(wd, path);
    const char *rel = artifacts_path_rel(full, wd);
    bool exists = rel && (!*rel || bsearch(&rel, all.v, all.n, sizeof(*all.v), cmp_str));
    if (!exists) {
      /* filepath.Base */
      cleanup_free char *c = artifacts_path_clean(path);
      const char *base = strrchr(c, '/');
      base = base && base[1] ? base + 1 : c;
      free(path);
      path = NULL;
      for (size_t k = 0; k < files.n; k++) {
        const char *fb = strrchr(files.v[k], '/');
        fb = fb ? fb + 1 : files.v[k];
        if (!strcmp(fb, base)) {
          free(path);
          path = xstrdup(files.v[k]);
        }
      }
    }
    if (path && *path) {
      free(an->path);
      an->path = steal_pointer(&path);
    }
  }
  ci_strv_release(&all);
  ci_strv_release(&files);
  listing_release(&l);
}

/* ------------------------------------------------------------------ GitHub Actions */

static void
gh_escape(struct ci_buf *b, const char *s, bool property)
{
  for (; *s; s++) {
    switch (*s) {
    case '%':
      ci_buf_adds(b, "%25");
      break;
    case '\r':
      ci_buf_adds(b, "%0D");
      break;
    case '\n':
      ci_buf_adds(b, "%0A");
      break;
    case ':':
      ci_buf_adds(b, property ? "%3A" : ":");
      break;
    case ',':
      ci_buf_adds(b, property ? "%2C" : ",");
      break;
    default:
      ci_buf_addc(b, *s);
    }
  }
}

char *
artifacts_annotation_github(const struct artifacts_annotation *a)
{
  static const char *const levels[] = {"notice", "warning", "error"};
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_addf(&b, "::%s file=", levels[a->level <= ARTIFACTS_FAILURE ? a->level : 0]);
  gh_escape(&b, a->path, true);
  ci_buf_addf(&b, ",line=%lld,endLine=%lld,title=", (long long)a->start_line,
              (long long)a->end_line);
  gh_escape(&b, a->message, true);
  ci_buf_adds(&b, "::");
  gh_escape(&b, a->raw_details, false);
  return ci_buf_take(&b);
}

/* ------------------------------------------------------------------ storing */

void
artifacts_result_release(struct artifacts_result *r)
{
  ci_strv_release(&r->stored);
  ci_strv_release(&r->skipped);
  artifacts_annotations_release(&r->annotations);
  r->bytes = 0;
}

struct saver {
  const struct artifacts_save_opts *o;
  struct artifacts_result *res;
  char *wd;       /* owned, clean */
  char *tar_root; /* owned, clean */
  int root;       /* <dir>/<task>/<artifact>, or -1 when not storing */
  char *cur_dir;  /* owned: relative directory cur_fd is open on */
  int cur_fd;
  struct ci_strv only;   /* owned, sorted */
  struct ci_strv stored; /* owned: stored by this call (hard link targets) */
  struct ci_error *parse_err;
  unsigned char *buf;
};

static int
sys_error(struct ci_error **err, int e, const char *what, const char *path)
{
  return ci_error_make(err, -e, "cannot %s '%s': %s", what, path, strerror(e));
}

/* Open (creating with mode 0700) the directory name below dfd, never through a symlink. */
static int
open_subdir(int dfd, const char *name, const char *shown, int *out, struct ci_error **err)
{
  if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST)
    return sys_error(err, errno, "create directory", shown);
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP || e == ENOTDIR)
      return ci_error_make(err, -e,
                           "refusing to store artifacts through '%s': it is a symbolic link or "
                           "not a directory",
                           shown);
    return sys_error(err, e, "open directory", shown);
  }
  *out = fd;
  return 0;
}

/* A directory fd for rel_dir ("" = the artifact root) below the artifact root, created as
 * needed one component at a time.  Borrowed: valid until the next call. */
static int
saver_dir(struct saver *s, const char *rel_dir, int *out, struct ci_error **err)
{
  if (s->cur_dir && !strcmp(s->cur_dir, rel_dir)) {
    *out = s->cur_fd;
    return 0;
  }
  if (s->cur_fd >= 0)
    close(s->cur_fd);
  free(s->cur_dir);
  s->cur_dir = NULL;
  s->cur_fd = -1;
  int fd = fcntl(s->root, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return sys_error(err, errno, "duplicate", s->o->artifacts_dir);
  cleanup_free char *copy = xstrdup(rel_dir);
  char *save = NULL;
  for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    int next = -1;
    cleanup_free char *shown = xasprintf("%s/%s/%s/%.*s", s->o->artifacts_dir, s->o->task_name,
                                         s->o->artifact_name, (int)(c - copy + strlen(c)), rel_dir);
    int ret = open_subdir(fd, c, shown, &next, err);
    close(fd);
    if (ret < 0)
      return ret;
    fd = next;
  }
  s->cur_dir = xstrdup(rel_dir);
  s->cur_fd = fd;
  *out = fd;
  return 0;
}

/* Create or truncate name in dfd as a regular file with mode 0600, never following a symlink.
 * Something else than a regular file or a directory in the way is removed first. */
static int
create_file(int dfd, const char *name, const char *shown, int *out, struct ci_error **err)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode))
      return ci_error_make(err, -EISDIR, "cannot store artifact '%s': a directory is in the way",
                           shown);
    if (!S_ISREG(st.st_mode) && unlinkat(dfd, name, 0) < 0)
      return sys_error(err, errno, "remove", shown);
  }
  int fd =
      openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0)
    return sys_error(err, errno, "create", shown);
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return ci_error_make(err, -EEXIST, "cannot store artifact '%s': not a regular file", shown);
  }
  if (fchmod(fd, 0600) < 0 || fcntl(fd, F_SETFL, 0) < 0) {
    int e = errno;
    close(fd);
    return sys_error(err, e, "set up", shown);
  }
  *out = fd;
  return 0;
}

static int
write_all(int fd, const void *buf, size_t n, const char *shown, struct ci_error **err)
{
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return sys_error(err, errno, "write", shown);
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Split rel into its directory ("" for none) and base name (both owned). */
static void
split_rel(const char *rel, char **dir, char **base)
{
  const char *sl = strrchr(rel, '/');
  *dir = sl ? xstrndup(rel, (size_t)(sl - rel)) : xstrdup("");
  *base = xstrdup(sl ? sl + 1 : rel);
}

/* Open the destination of rel for writing (s->root must be open). */
static int
saver_create(struct saver *s, const char *rel, int *fd, struct ci_error **err)
{
  cleanup_free char *dir = NULL, *base = NULL;
  split_rel(rel, &dir, &base);
  int dfd = -1;
  int ret = saver_dir(s, dir, &dfd, err);
  if (ret < 0)
    return ret;
  cleanup_free char *shown =
      xasprintf("%s/%s/%s/%s", s->o->artifacts_dir, s->o->task_name, s->o->artifact_name, rel);
  return create_file(dfd, base, shown, fd, err);
}

/* Hand a complete report to the parser, keeping the first failure. */
static void
saver_parse(struct saver *s, const char *rel, const struct ci_buf *content, bool too_big)
{
  if (!s->o->format || !artifacts_format_is_known(s->o->format))
    return;
  struct ci_error *perr = NULL;
  if (too_big)
    ci_error_make(&perr, -EFBIG, "report '%s' is larger than %zu bytes", rel, ARTIFACTS_MAX_REPORT);
  else
    artifacts_parse_annotations(s->o->format, rel, content->s ? content->s : "", content->len,
                                &s->res->annotations, &perr);
  if (perr && !s->parse_err)
    s->parse_err = perr;
  else
    ci_error_free(&perr);
}

static bool
want_report(const struct saver *s)
{
  return s->o->format && artifacts_format_is_known(s->o->format);
}

/* Store a regular file's data from the archive. */
static int
saver_file(struct saver *s, struct archive *a, const char *rel, struct ci_error **err)
{
  cleanup_close int fd = -1;
  if (s->root >= 0) {
    int ret = saver_create(s, rel, &fd, err);
    if (ret < 0)
      return ret;
  }
  struct ci_buf content = CI_BUF_INIT;
  bool too_big = false, report = want_report(s);
  for (;;) {
    la_ssize_t n = archive_read_data(a, s->buf, IO_BUF);
    if (n < 0) {
      ci_buf_release(&content);
      return ci_error_make(err, CI_EPROTO, "cannot read artifact '%s' from the archive: %s", rel,
                           archive_error_string(a));
    }
    if (n == 0)
      break;
    if (fd >= 0) {
      int ret = write_all(fd, s->buf, (size_t)n, rel, err);
      if (ret < 0) {
        ci_buf_release(&content);
        return ret;
      }
    }
    s->res->bytes += (uint64_t)n;
    if (report && !too_big) {
      if (content.len + (size_t)n > ARTIFACTS_MAX_REPORT) {
        too_big = true;
        ci_buf_release(&content);
      } else {
        ci_buf_add(&content, s->buf, (size_t)n);
      }
    }
  }
  ci_strv_push(&s->res->stored, rel);
  ci_strv_push(&s->stored, rel);
  saver_parse(s, rel, &content, too_big);
  ci_buf_release(&content);
  return 0;
}

/* Store a hard link to target (stored earlier by this call) as a copy. */
static int
saver_copy(struct saver *s, const char *target, const char *rel, struct ci_error **err)
{
  struct ci_buf content = CI_BUF_INIT;
  bool too_big = false, report = want_report(s);
  if (s->root >= 0) {
    cleanup_free char *tdir = NULL, *tbase = NULL;
    split_rel(target, &tdir, &tbase);
    int dfd = -1;
    int ret = saver_dir(s, tdir, &dfd, err);
    if (ret < 0)
      return ret;
    cleanup_close int in = openat(dfd, tbase, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
      return sys_error(err, errno, "open", target);
    cleanup_close int out = -1;
    ret = saver_create(s, rel, &out, err);
    if (ret < 0)
      return ret;
    for (;;) {
      ssize_t n = read(in, s->buf, IO_BUF);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        ci_buf_release(&content);
        return sys_error(err, errno, "read", target);
      }
      if (n == 0)
        break;
      if ((ret = write_all(out, s->buf, (size_t)n, rel, err)) < 0) {
        ci_buf_release(&content);
        return ret;
      }
      s->res->bytes += (uint64_t)n;
      if (report && !too_big) {
        if (content.len + (size_t)n > ARTIFACTS_MAX_REPORT) {
          too_big = true;
          ci_buf_release(&content);
        } else {
          ci_buf_add(&content, s->buf, (size_t)n);
        }
      }
    }
  }
  ci_strv_push(&s->res->stored, rel);
  ci_strv_push(&s->stored, rel);
  if (s->root >= 0)
    saver_parse(s, rel, &content, too_big);
  /* without a directory the target's content is gone: nothing to parse */
  ci_buf_release(&content);
  return 0;
}

/* Map an archive name to a path relative to the working directory.  *rel is owned; NULL
 * (with success) when the entry is the working directory itself. */
static int
saver_map(struct saver *s, const char *name, const char *what, char **rel, struct ci_error **err)
{
  if (!name || !*name)
    return ci_error_make(err, CI_EPROTO, "refusing an artifact archive entry without a %s", what);
  if (path_is_abs(name))
    return ci_error_make(err, CI_EPROTO, "refusing artifact archive entry %s '%s': absolute path",
                         what, name);
  if (has_dotdot(name))
    return ci_error_make(err, CI_EPROTO,
                         "refusing artifact archive entry %s '%s': it contains '..'", what, name);
  cleanup_free char *full = path_join_clean(s->tar_root, name);
  const char *r = artifacts_path_rel(full, s->wd);
  if (!r)
    return ci_error_make(err, CI_EPROTO,
                         "refusing artifact archive entry %s '%s': it is outside of the working "
                         "directory '%s'",
                         what, name, s->wd);
  *rel = *r ? xstrdup(r) : NULL;
  return 0;
}

static bool
strv_has(const struct ci_strv *sv, const char *s)
{
  for (size_t i = sv->n; i-- > 0;)
    if (!strcmp(sv->v[i], s))
      return true;
  return false;
}

static int
saver_entry(struct saver *s, struct archive *a, struct archive_entry *e, struct ci_error **err)
{
  cleanup_free char *rel = NULL;
  int ret = saver_map(s, archive_entry_pathname(e), "path", &rel, err);
  if (ret < 0 || !rel)
    return ret;
  if (s->o->only && !bsearch(&rel, s->only.v, s->only.n, sizeof(*s->only.v), cmp_str))
    return 0;
  const char *hl = archive_entry_hardlink(e);
  if (hl) {
    cleanup_free char *target = NULL;
    ret = saver_map(s, hl, "hard link target", &target, err);
    if (ret < 0)
      return ret;
    if (target && strv_has(&s->stored, target))
      return saver_copy(s, target, rel, err);
    ci_strv_push(&s->res->skipped, rel);
    return 0;
  }
  switch (archive_entry_filetype(e)) {
  case AE_IFDIR:
    return 0; /* upstream skips folders; files create what they need */
  case AE_IFREG:
    return saver_file(s, a, rel, err);
  default:
    ci_strv_push(&s->res->skipped, rel);
    return 0;
  }
}

static int
saver_open_root(struct saver *s, struct ci_error **err)
{
  const struct artifacts_save_opts *o = s->o;
  int ret = ci_mkdirs(o->artifacts_dir, 0700, err);
  if (ret < 0)
    return ret;
  cleanup_close int d = open(o->artifacts_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0)
    return sys_error(err, errno, "open directory", o->artifacts_dir);
  cleanup_free char *shown_t = xasprintf("%s/%s", o->artifacts_dir, o->task_name);
  cleanup_close int t = -1;
  ret = open_subdir(d, o->task_name, shown_t, &t, err);
  if (ret < 0)
    return ret;
  cleanup_free char *shown_a = xasprintf("%s/%s", shown_t, o->artifact_name);
  return open_subdir(t, o->artifact_name, shown_a, &s->root, err);
}

int
artifacts_save_tar(const struct artifacts_save_opts *o, int tar_fd, struct artifacts_result *res,
                   struct ci_error **err)
{
  if (!o->working_dir || !path_is_abs(o->working_dir) || !o->tar_root || !path_is_abs(o->tar_root))
    return ci_error_make(err, -EINVAL,
                         "artifacts: working directory and archive root must be "
                         "absolute");
  if (o->artifacts_dir) {
    if (!artifacts_name_is_safe(o->task_name))
      return ci_error_make(err, -EINVAL,
                           "task name '%s' cannot name a directory (only letters, digits, '_', "
                           "'-', ' ' and ':'): its artifacts are not stored",
                           o->task_name ? o->task_name : "");
    if (!artifacts_name_is_safe(o->artifact_name))
      return ci_error_make(err, -EINVAL,
                           "artifacts name '%s' cannot name a directory (only letters, digits, "
                           "'_', '-', ' ' and ':'): they are not stored",
                           o->artifact_name ? o->artifact_name : "");
  }
  struct saver s = {0};
  s.o = o;
  s.res = res;
  s.root = -1;
  s.cur_fd = -1;
  s.wd = artifacts_path_clean(o->working_dir);
  s.tar_root = artifacts_path_clean(o->tar_root);
  s.buf = xmalloc(IO_BUF);
  if (o->only) {
    for (size_t i = 0; i < o->only->n; i++)
      ci_strv_push_take(&s.only, artifacts_path_clean(o->only->v[i]));
    strv_sort_unique(&s.only);
  }
  int ret = 0;
  if (o->artifacts_dir)
    ret = saver_open_root(&s, err);
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_gzip(a);
  if (ret >= 0 && archive_read_open_fd(a, tar_fd, IO_BUF) != ARCHIVE_OK)
    ret = ci_error_make(err, CI_EPROTO, "cannot read the artifacts archive: %s",
                        archive_error_string(a));
  while (ret >= 0) {
    struct archive_entry *e;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EPROTO, "cannot read the artifacts archive: %s",
                          archive_error_string(a));
      break;
    }
    ret = saver_entry(&s, a, e, err);
  }
  archive_read_free(a);
  if (ret >= 0 && s.parse_err) {
    *err = steal_pointer(&s.parse_err);
    ret = (*err)->code;
  }
  ci_error_free(&s.parse_err);
  if (s.root >= 0)
    close(s.root);
  if (s.cur_fd >= 0)
    close(s.cur_fd);
  free(s.cur_dir);
  free(s.wd);
  free(s.tar_root);
  free(s.buf);
  ci_strv_release(&s.only);
  ci_strv_release(&s.stored);
  return ret;
}
