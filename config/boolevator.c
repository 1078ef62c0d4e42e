/* config/boolevator.c - only_if / skip expressions (upstream's boolevator on gval).
 *
 * Tokens are read as Go's text/scanner reads them (gval's scanner settings), and the
 * grammar is gval's: a primary, then operators and primaries until a token that is not
 * an operator; precedence is resolved on a stack, left-associatively.  Every operand in
 * this language is known when it is parsed, so values are computed while parsing (gval
 * folds constants the same way): there is no syntax tree, and recursion only happens
 * for nesting, which is capped.
 */
#include "expr.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ERR_PREFIX "internal boolevator error: "

enum {
  TK_EOF = -1,
  TK_IDENT = -2,
  TK_INT = -3,
  TK_FLOAT = -4,
  TK_CHAR = -5,
  TK_STRING = -6,
  TK_RAWSTRING = -7,
};

/* A token: kind is a TK_* or the Unicode character of a one-character token. */
struct tok {
  int kind;
  size_t start, end; /* byte offsets in the expression */
};

enum op {
  OP_NONE,
  OP_IN,
  OP_EQ,
  OP_NE,
  OP_RE,
  OP_NRE,
  OP_AND,
  OP_OR,
};

static const struct {
  const char *text;
  int prec;
} ops[] = {
    [OP_NONE] = {"", 0}, [OP_IN] = {"in", 10},  [OP_EQ] = {"==", 8},  [OP_NE] = {"!=", 8},
    [OP_RE] = {"=~", 8}, [OP_NRE] = {"!=~", 8}, [OP_AND] = {"&&", 4}, [OP_OR] = {"||", 3},
};

struct bev {
  const char *s;
  size_t n, pos;      /* pos: next byte the scanner reads */
  struct tok pending; /* a token given back (gval's Camouflage) */
  bool have_pending;
  bool any_token; /* a token other than EOF was read */
  unsigned depth;
  const struct cfg_env *env;
  const struct ci_strv *files;
  struct cfg_env local; /* env with expanded values, for function arguments */
  bool local_ready;
  pcre2_code *uniclass; /* (\p{L})|\p{Nd}, compiled on first non-ASCII identifier */
  char *err;            /* owned; without ERR_PREFIX */
};

static int fail(struct bev *b, const char *fmt, ...) CI_PRINTF(2, 3);

static int
fail(struct bev *b, const char *fmt, ...)
{
  if (!b->err) {
    va_list ap;
    va_start(ap, fmt);
    b->err = xvasprintf(fmt, ap);
    va_end(ap);
  }
  return -1;
}

int
cfg__parse_bool(const char *s, bool *out)
{
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(t); i++) {
    if (strcmp(s, t[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(s, f[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* ---- scanner (Go's text/scanner with gval's settings) ---- */

/* Decode the rune at s[i] as Go does (invalid: U+FFFD, width 1). */
static size_t
rune_at(const struct bev *b, size_t i, uint32_t *r)
{
  const unsigned char *p = (const unsigned char *)b->s + i;
  size_t left = b->n - i;
  unsigned char c = p[0];
  if (c < 0x80) {
    *r = c;
    return 1;
  }
  size_t w;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF)
    w = 2, v = c & 0x1F, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF)
    w = 3, v = c & 0x0F, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4)
    w = 4, v = c & 0x07, min = 0x10000;
  else
    goto bad;
  if (left < w)
    goto bad;
  for (size_t k = 1; k < w; k++) {
    if ((p[k] & 0xC0) != 0x80)
      goto bad;
    v = (v << 6) | (p[k] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    goto bad;
  *r = v;
  return w;
bad:
  *r = 0xFFFD;
  return 1;
}

/* 1: Unicode letter, 2: Unicode decimal digit, 0: neither (Go's unicode.IsLetter and
 * unicode.IsDigit), for non-ASCII runes; PCRE2 carries the Unicode tables. */
static int
unicode_class(struct bev *b, size_t i, size_t w)
{
  if (!b->uniclass) {
    int code;
    PCRE2_SIZE off;
    b->uniclass = pcre2_compile((PCRE2_SPTR) "(\\p{L})|\\p{Nd}", PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_ANCHORED, &code, &off, NULL);
    if (!b->uniclass)
      CI_BUG("cannot compile the identifier class pattern");
  }
  pcre2_match_data *md = pcre2_match_data_create(2, NULL);
  if (!md)
    CI_BUG("pcre2_match_data_create failed");
  int rc = pcre2_match(b->uniclass, (PCRE2_SPTR)b->s + i, w, 0, 0, md, NULL);
  int ret = 0;
  if (rc > 0)
    ret = pcre2_get_ovector_pointer(md)[2] != PCRE2_UNSET ? 1 : 2;
  pcre2_match_data_free(md);
  return ret;
}

static bool
is_ident_rune(struct bev *b, size_t i, size_t w, uint32_t r, bool first)
{
  if (r < 0x80)
    return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || r == '_' ||
           (!first && r >= '0' && r <= '9');
  if (r == 0xFFFD && w == 1)
    return false;
  int c = unicode_class(b, i, w);
  return c == 1 || (!first && c == 2);
}

static bool
is_decimal(int c)
{
  return c >= '0' && c <= '9';
}

static bool
is_hex(int c)
{
  return is_decimal(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int
peek_byte(const struct bev *b, size_t i)
{
  return i < b->n ? (unsigned char)b->s[i] : -1;
}

/* Go's scanNumber: only the extent matters (numbers are not values here). */
static size_t
scan_number(const struct bev *b, size_t i, bool seen_dot)
{
  int base = 10;
  if (!seen_dot) {
    if (peek_byte(b, i) == '0') {
      i++;
      int c = peek_byte(b, i) | 0x20;
      if (c == 'x')
        base = 16, i++;
      else if (c == 'o' || c == 'b')
        i++;
    }
    while (base == 16 ? (is_hex(peek_byte(b, i)) || peek_byte(b, i) == '_')
                      : (is_decimal(peek_byte(b, i)) || peek_byte(b, i) == '_'))
      i++;
    if (peek_byte(b, i) == '.') {
      i++;
      seen_dot = true;
    }
  }
  if (seen_dot)
    while (base == 16 ? (is_hex(peek_byte(b, i)) || peek_byte(b, i) == '_')
                      : (is_decimal(peek_byte(b, i)) || peek_byte(b, i) == '_'))
      i++;
  int e = peek_byte(b, i);
  if (e >= 0 && ((e | 0x20) == 'e' || (e | 0x20) == 'p')) {
    i++;
    if (peek_byte(b, i) == '+' || peek_byte(b, i) == '-')
      i++;
    while (is_decimal(peek_byte(b, i)) || peek_byte(b, i) == '_')
      i++;
  }
  return i;
}

/* Go's scanString/scanChar: b->s[start] is the quote; the end offset of the literal.
 * As in Go (whose scanner errors gval ignores), a literal that is not closed ends after
 * the newline or at the end of the expression, and keeps its text: 'C:\' is C:\. */
static size_t
scan_quoted(struct bev *b, size_t start)
{
  char q = b->s[start];
  size_t i = start + 1;
  for (;;) {
    if (i >= b->n)
      return b->n;
    char c = b->s[i];
    if (c == '\n')
      return i + 1;
    if (c == q)
      return i + 1;
    if (c != '\\') {
      uint32_t r;
      i += rune_at(b, i, &r);
      continue;
    }
    i++; /* the escape: skipped as Go's scanEscape does, never interpreted */
    if (i >= b->n)
      continue;
    char e = b->s[i];
    int ndig = 0, base = 16;
    switch (e) {
    case 'a':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
    case 'v':
    case '\\':
      i++;
      break;
    case 'x':
      i++, ndig = 2;
      break;
    case 'u':
      i++, ndig = 4;
      break;
    case 'U':
      i++, ndig = 8;
      break;
    default:
      if (e == q)
        i++;
      else if (e >= '0' && e <= '7')
        ndig = 3, base = 8;
      /* else: an invalid escape; the character is read normally */
      break;
    }
    for (; ndig > 0 && i < b->n; ndig--, i++) {
      int c2 = (unsigned char)b->s[i];
      if (base == 8 ? !(c2 >= '0' && c2 <= '7') : !is_hex(c2))
        break;
    }
  }
}

static int
lex(struct bev *b, struct tok *t)
{
redo:
  while (b->pos < b->n && strchr(" \t\n\r", b->s[b->pos]) && b->s[b->pos])
    b->pos++;
  size_t i = b->pos;
  t->start = i;
  if (i >= b->n) {
    t->kind = TK_EOF;
    t->end = i;
    return 0;
  }
  uint32_t r;
  size_t w = rune_at(b, i, &r);
  if (is_ident_rune(b, i, w, r, true)) {
    size_t j = i + w;
    while (j < b->n) {
      uint32_t r2;
      size_t w2 = rune_at(b, j, &r2);
      if (!is_ident_rune(b, j, w2, r2, false))
        break;
      j += w2;
    }
    t->kind = TK_IDENT;
    t->end = j;
  } else if (is_decimal((int)r)) {
    size_t j = scan_number(b, i, false);
    t->kind = TK_INT; /* Int or Float: both are just "a number" here */
    t->end = j;
  } else if (r == '"' || r == '\'') {
    t->end = scan_quoted(b, i);
    t->kind = r == '"' ? TK_STRING : TK_CHAR;
  } else if (r == '`') {
    const char *close = memchr(b->s + i + 1, '`', b->n - i - 1);
    t->kind = TK_RAWSTRING; /* never a value here: an error wherever it appears */
    t->end = close ? (size_t)(close - b->s) + 1 : b->n;
  } else if (r == '.' && is_decimal(peek_byte(b, i + 1))) {
    t->kind = TK_FLOAT;
    t->end = scan_number(b, i + 1, true);
  } else if (r == '/' && (peek_byte(b, i + 1) == '/' || peek_byte(b, i + 1) == '*')) {
    if (b->s[i + 1] == '/') {
      const char *nl = memchr(b->s + i, '\n', b->n - i);
      b->pos = nl ? (size_t)(nl - b->s) : b->n;
    } else {
      const char *close = b->n - i >= 4 ? memmem(b->s + i + 2, b->n - i - 2, "*/", 2) : NULL;
      b->pos = close ? (size_t)(close - b->s) + 2 : b->n; /* unclosed: to the end, as Go */
    }
    goto redo;
  } else {
    t->kind = (int)r;
    t->end = i + w;
  }
  b->pos = t->end;
  b->any_token = true;
  return 0;
}

static int
scan(struct bev *b, struct tok *t)
{
  if (b->have_pending) {
    b->have_pending = false;
    *t = b->pending;
    return 0;
  }
  return lex(b, t);
}

static void
unscan(struct bev *b, const struct tok *t)
{
  b->pending = *t;
  b->have_pending = true;
}

/* A description of a token for messages: "')'", "identifier 'foo'", ... */
static char *
tok_desc(const struct bev *b, const struct tok *t)
{
  int len = (int)(t->end - t->start > 40 ? 40 : t->end - t->start);
  const char *txt = b->s + t->start;
  const char *more = t->end - t->start > 40 ? "..." : "";
  switch (t->kind) {
  case TK_EOF:
    return xstrdup("end of expression");
  case TK_IDENT:
    return xasprintf("identifier '%.*s%s'", len, txt, more);
  case TK_INT:
  case TK_FLOAT:
    return xasprintf("number %.*s%s", len, txt, more);
  case TK_CHAR:
  case TK_STRING:
    return xasprintf("string %.*s%s", len, txt, more);
  case TK_RAWSTRING:
    return xasprintf("raw string %.*s%s", len, txt, more);
  default:
    if (t->kind == '\'')
      return xstrdup("\"'\"");
    return xasprintf("'%.*s'", len, txt);
  }
}

static int
fail_tok(struct bev *b, const struct tok *t, const char *what)
{
  cleanup_free char *d = tok_desc(b, t);
  return fail(b, "%s%s at offset %zu", what, d, t->start);
}

/* ---- values and operators ---- */

static char *
bool_str(bool v)
{
  return xstrdup(v ? "true" : "false");
}

/* trimAllQuotes: strip matching outer quotes again and again. */
static char *
trim_all_quotes(const char *s, size_t len)
{
  while (len >= 2 && s[0] == s[len - 1] && (s[0] == '"' || s[0] == '\''))
    s++, len -= 2;
  return xstrndup(s, len);
}

static const char *
op_text(enum op op)
{
  return ops[op].text;
}

static int
need_bool(struct bev *b, const char *v, enum op op, const char *side, size_t off, bool *out)
{
  if (cfg__parse_bool(v, out) == 0)
    return 0;
  return fail(b, "%s operand of '%s' at offset %zu is \"%s\", not a boolean", side, op_text(op),
              off, v);
}

/* Match a against the Go regexp "(?s)(?i)^" + re + "$": 1/0, -1 with *bad_syntax when
 * the regexp is invalid, -1 alone when matching itself failed (errors set). */
static int
regex_equals(struct bev *b, const char *a, const char *re, size_t off, bool *bad_syntax)
{
  cleanup_free char *full = xasprintf("(?s)(?i)^%s$", re);
  struct cfg_regex *rx = NULL;
  char *msg = NULL;
  *bad_syntax = false;
  if (cfg__regex_compile(full, &rx, &msg) < 0) {
    *bad_syntax = true;
    fail(b, "invalid regular expression \"%s\" for '=~' at offset %zu: %s", re, off, msg);
    free(msg);
    return -1;
  }
  int m = cfg__regex_match(rx, a, strlen(a), &msg);
  cfg__regex_free(rx);
  if (m < 0) {
    fail(b, "regular expression \"%s\" at offset %zu: %s", re, off, msg);
    free(msg);
  }
  return m;
}

/* Apply an infix operator; consumes nothing, returns an owned value or NULL (error). */
static char *
apply(struct bev *b, enum op op, const char *a, const char *c, size_t off)
{
  bool x, y;
  switch (op) {
  case OP_IN:
    return bool_str(strstr(c, a) != NULL);
  case OP_EQ:
    return bool_str(strcmp(a, c) == 0);
  case OP_NE:
    return bool_str(strcmp(a, c) != 0);
  case OP_RE:
  case OP_NRE: {
    bool bad_syntax;
    int m = regex_equals(b, a, c, off, &bad_syntax);
    if (m < 0) {
      if (op == OP_NRE && bad_syntax) {
        /* upstream's opRegexNotEquals turns the error into "" */
        free(b->err);
        b->err = NULL;
        return xstrdup("");
      }
      return NULL;
    }
    return bool_str(op == OP_RE ? m == 1 : m == 0);
  }
  case OP_AND:
  case OP_OR:
    if (need_bool(b, a, op, "left", off, &x) < 0 || need_bool(b, c, op, "right", off, &y) < 0)
      return NULL;
    return bool_str(op == OP_AND ? (x && y) : (x || y));
  case OP_NONE:
    break;
  }
  CI_BUG("apply: no operator");
}

/* ---- functions ---- */

static const struct cfg_env *
local_env(struct bev *b)
{
  if (!b->local_ready) {
    b->local_ready = true;
    if (b->env) {
      for (size_t i = 0; i < b->env->n; i++) {
        cleanup_free char *v = cfg_expand(b->env->v[i].value, b->env);
        cfg_env_set(&b->local, b->env->v[i].key, v);
      }
    }
  }
  return &b->local;
}

/* changesInclude / changesIncludeOnly over evaluated arguments. */
static char *
call_changes(struct bev *b, const struct tok *name, bool only, struct ci_strv *args)
{
  size_t nfiles = b->files ? b->files->n : 0;
  bool *matched = nfiles ? xcalloc(nfiles, sizeof(bool)) : NULL;
  size_t count = 0;
  char *ret = NULL;
  for (size_t p = 0; p < args->n; p++) {
    cleanup_free char *pattern = cfg_expand(args->v[p], local_env(b));
    struct cfg_regex *g = NULL;
    char *msg = NULL;
    if (cfg__glob_compile(pattern, &g, &msg) < 0) {
      fail(b, "%.*s() at offset %zu: %s", (int)(name->end - name->start), b->s + name->start,
           name->start, msg);
      free(msg);
      goto out;
    }
    for (size_t f = 0; f < nfiles; f++) {
      if (matched[f])
        continue;
      int m = cfg__glob_match_compiled(g, b->files->v[f], &msg);
      if (m < 0) {
        fail(b, "%.*s() at offset %zu: %s", (int)(name->end - name->start), b->s + name->start,
             name->start, msg);
        free(msg);
        cfg__regex_free(g);
        goto out;
      }
      if (m) {
        matched[f] = true;
        count++;
      }
    }
    cfg__regex_free(g);
  }
  ret = bool_str(only ? (count > 0 && count == nfiles) : count > 0);
out:
  free(matched);
  return ret;
}

/* ---- parser ---- */

static int parse_expression(struct bev *b, char **out);

/* After a function name: optional "(arg, ...)" (gval's Function and parseArguments). */
static int
parse_call(struct bev *b, const struct tok *name, bool only, char **out)
{
  struct ci_strv args = CI_STRV_INIT;
  struct tok t;
  int ret = -1;
  if (scan(b, &t) < 0)
    goto out;
  if (t.kind == '(') {
    struct tok open = t;
    if (scan(b, &t) < 0)
      goto out;
    if (t.kind != ')') {
      unscan(b, &t);
      for (;;) {
        char *arg = NULL;
        if (parse_expression(b, &arg) < 0)
          goto out;
        ci_strv_push_take(&args, arg);
        if (scan(b, &t) < 0)
          goto out;
        if (t.kind == ')')
          break;
        if (t.kind != ',') {
          cleanup_free char *d = tok_desc(b, &t);
          fail(b,
               "expected ',' or ')' after argument %zu of the call at offset %zu, got %s at "
               "offset %zu",
               args.n, open.start, d, t.start);
          goto out;
        }
      }
    }
  } else {
    unscan(b, &t);
  }
  if (args.n == 0) {
    fail(b, "%.*s() at offset %zu needs at least one pattern", (int)(name->end - name->start),
         b->s + name->start, name->start);
    goto out;
  }
  *out = call_changes(b, name, only, &args);
  ret = *out ? 0 : -1;
out:
  ci_strv_release(&args);
  return ret;
}

/* $NAME or ${NAME}: the expanded value, "" if unset. */
static int
parse_variable(struct bev *b, const struct tok *dollar, char **out)
{
  struct tok t, name;
  if (scan(b, &t) < 0)
    return -1;
  bool braced = t.kind == '{';
  name = t;
  if (braced && scan(b, &name) < 0)
    return -1;
  if (name.kind != TK_IDENT && name.kind != TK_INT && name.kind != TK_FLOAT)
    return fail_tok(b, &name,
                    braced ? "expected a variable name after '${', got "
                           : "expected a variable name after '$', got ");
  if (braced) {
    if (scan(b, &t) < 0)
      return -1;
    if (t.kind != '}') {
      cleanup_free char *d = tok_desc(b, &t);
      return fail(b, "missing '}' for '${' at offset %zu, got %s at offset %zu", dollar->start, d,
                  t.start);
    }
  }
  cleanup_free char *key = xstrndup(b->s + name.start, name.end - name.start);
  const char *v = b->env ? cfg_env_get(b->env, key) : NULL;
  *out = v ? cfg_expand(v, b->env) : xstrdup("");
  return 0;
}

static int
parse_primary(struct bev *b, char **out)
{
  struct tok t;
  int ret = -1;
  if (++b->depth > CFG_BOOL_MAX_DEPTH) {
    fail(b, "expression nests too deeply (more than %d levels) at offset %zu", CFG_BOOL_MAX_DEPTH,
         b->pos);
    goto out;
  }
  if (scan(b, &t) < 0)
    goto out;
  switch (t.kind) {
  case TK_IDENT: {
    const char *txt = b->s + t.start;
    size_t len = t.end - t.start;
    if ((len == 4 && memcmp(txt, "true", 4) == 0) || (len == 5 && memcmp(txt, "false", 5) == 0)) {
      *out = xstrndup(txt, len);
      ret = 0;
    } else if (len == 14 && memcmp(txt, "changesInclude", 14) == 0) {
      ret = parse_call(b, &t, false, out);
    } else if (len == 18 && memcmp(txt, "changesIncludeOnly", 18) == 0) {
      ret = parse_call(b, &t, true, out);
    } else {
      struct tok next;
      if (scan(b, &next) < 0)
        goto out;
      if (next.kind == '(')
        fail(b, "unknown function '%.*s' at offset %zu", (int)len, txt, t.start);
      else
        fail(b, "unknown name '%.*s' at offset %zu (quote strings; write $%.*s for a variable)",
             (int)len, txt, t.start, (int)len, txt);
    }
    break;
  }
  case TK_CHAR:
  case TK_STRING:
    *out = trim_all_quotes(b->s + t.start, t.end - t.start);
    ret = 0;
    break;
  case '(': {
    char *v = NULL;
    struct tok close;
    if (parse_expression(b, &v) < 0)
      goto out;
    if (scan(b, &close) < 0) {
      free(v);
      goto out;
    }
    if (close.kind != ')') {
      cleanup_free char *d = tok_desc(b, &close);
      fail(b, "missing ')' for '(' at offset %zu: unexpected %s at offset %zu", t.start, d,
           close.start);
      free(v);
      goto out;
    }
    *out = v;
    ret = 0;
    break;
  }
  case '$':
    ret = parse_variable(b, &t, out);
    break;
  case '!': {
    char *v = NULL;
    bool x;
    if (parse_primary(b, &v) < 0)
      goto out;
    if (cfg__parse_bool(v, &x) < 0) {
      fail(b, "operand of '!' at offset %zu is \"%s\", not a boolean", t.start, v);
      free(v);
      goto out;
    }
    free(v);
    *out = bool_str(!x);
    ret = 0;
    break;
  }
  default:
    if (t.kind == TK_EOF && !b->any_token)
      fail(b, "empty expression");
    else
      fail_tok(b, &t, "unexpected ");
    break;
  }
out:
  b->depth--;
  return ret;
}

static bool
is_op_symbol(int c)
{
  return c == '&' || c == '|' || c == '=' || c == '!' || c == '~';
}

/* Is s (len bytes) a prefix of some operator name (gval's isOperatorPrefix)? */
static bool
is_op_prefix(const char *s, size_t len)
{
  static const char *const names[] = {"in", "&&", "||", "==", "!=", "=~", "!=~", "!"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(names); i++)
    if (strlen(names[i]) >= len && memcmp(names[i], s, len) == 0)
      return true;
  return false;
}

/* gval's parseOperator: the next infix operator, or OP_NONE with the token given back. */
static int
parse_operator(struct bev *b, enum op *op, size_t *off)
{
  struct tok t;
  if (scan(b, &t) < 0)
    return -1;
  *off = t.start;
  *op = OP_NONE;
  if (t.kind >= 0 && is_op_symbol(t.kind)) {
    /* symbols join while they still spell the start of an operator (no spaces) */
    size_t end = t.end;
    while (end < b->n && is_op_symbol((unsigned char)b->s[end]) &&
           is_op_prefix(b->s + t.start, end + 1 - t.start))
      end++;
    size_t len = end - t.start;
    for (enum op o = OP_IN; o <= OP_OR; o++) {
      if (strlen(ops[o].text) == len && memcmp(ops[o].text, b->s + t.start, len) == 0)
        *op = o;
    }
    if (*op != OP_NONE) {
      b->pos = end;
      return 0;
    }
    if (end != t.end)
      return fail(b, "unknown operator '%.*s' at offset %zu", (int)len, b->s + t.start, t.start);
  } else if (t.kind == TK_IDENT && t.end - t.start == 2 && memcmp(b->s + t.start, "in", 2) == 0) {
    *op = OP_IN;
    return 0;
  }
  unscan(b, &t);
  return 0;
}

struct stage {
  char *val;
  enum op op;
  size_t off;
};

/* gval's ParseExpression with the stage stack: equal precedence is left-associative. */
static int
parse_expression(struct bev *b, char **out)
{
  struct stage *st = NULL;
  size_t n = 0, alloc = 0;
  int ret = -1;
  for (;;) {
    struct stage cur = {NULL, OP_NONE, 0};
    if (parse_primary(b, &cur.val) < 0)
      goto out;
    if (parse_operator(b, &cur.op, &cur.off) < 0) {
      free(cur.val);
      goto out;
    }
    while (n > 0 && ops[st[n - 1].op].prec >= ops[cur.op].prec) {
      struct stage a = st[--n];
      char *v = apply(b, a.op, a.val, cur.val, a.off);
      free(a.val);
      free(cur.val);
      cur.val = v;
      if (!v)
        goto out;
    }
    if (cur.op == OP_NONE) {
      *out = cur.val;
      ret = 0;
      goto out;
    }
    CI_GROW(st, alloc, n + 1);
    st[n++] = cur;
  }
out:
  for (size_t i = 0; i < n; i++)
    free(st[i].val);
  free(st);
  return ret;
}

int
cfg__bool_eval(const char *expr, const struct cfg_env *env, const struct ci_strv *affected_files,
               bool *out, char **errmsg)
{
  struct bev b = {
      .s = expr,
      .n = strlen(expr),
      .env = env,
      .files = affected_files,
      .local = CFG_ENV_INIT,
  };
  /* Go's scanner skips a byte order mark at the very start. */
  if (b.n >= 3 && memcmp(expr, "\xEF\xBB\xBF", 3) == 0)
    b.pos = 3;
  char *v = NULL;
  int ret = parse_expression(&b, &v);
  if (ret == 0) {
    struct tok t;
    if (scan(&b, &t) < 0) {
      ret = -1;
    } else if (t.kind != TK_EOF) {
      fail_tok(&b, &t, "unexpected ");
      ret = -1;
    } else if (cfg__parse_bool(v, out) < 0) {
      fail(&b, "expression evaluates to \"%s\", not a boolean", v);
      ret = -1;
    }
  }
  free(v);
  if (ret < 0)
    *errmsg = xasprintf(ERR_PREFIX "%s", b.err ? b.err : "cannot evaluate expression");
  free(b.err);
  cfg_env_release(&b.local);
  pcre2_code_free(b.uniclass);
  return ret < 0 ? -1 : 0;
}
