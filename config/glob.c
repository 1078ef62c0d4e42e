/* config/glob.c - Go (RE2) regular expressions on PCRE2, and Java-style globs.
 *
 * Upstream compiles only_if regexps and changesInclude() globs with Go's regexp
 * package.  PCRE2 speaks a different dialect, so a Go pattern is first parsed the
 * way Go's regexp/syntax parses it (same errors), and re-emitted as an equivalent
 * PCRE2 pattern: literals become \x{...} or plain alphanumerics, Go-only meanings
 * (\s, \v, octal escapes, literal '{', $) are spelled out, and constructs PCRE2 cannot
 * repeat (^*, a(?i)*) are wrapped in parentheses (never capturing: the pattern is
 * compiled with PCRE2_NO_AUTO_CAPTURE).  Matching uses pcre2_dfa_match(), so
 * the time is bounded like RE2's.
 */
#include "expr.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define RX_MAX_REPEAT 1000 /* Go: largest {n,m} and nested repeat product */
#define RX_MAX_DEPTH 1000  /* Go: maxHeight */
#define RX_MAX_RUNE 0x10FFFF
#define DFA_WS_START 256
#define DFA_WS_MAX (1 << 22)

struct cfg_regex {
  pcre2_code *code;
};

/* ---- UTF-8 as Go decodes it ---- */

/* Decode one rune at s (n > 0 bytes left).  Invalid or truncated sequences, overlongs,
 * surrogates and values over U+10FFFF decode as U+FFFD of width 1 with *ok = false,
 * as utf8.DecodeRuneInString does. */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *r, bool *ok)
{
  *ok = true;
  unsigned char c = s[0];
  if (c < 0x80) {
    *r = c;
    return 1;
  }
  size_t w;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) {
    w = 2, v = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    w = 3, v = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    w = 4, v = c & 0x07, min = 0x10000;
  } else {
    goto bad;
  }
  if (n < w)
    goto bad;
  for (size_t k = 1; k < w; k++) {
    if ((s[k] & 0xC0) != 0x80)
      goto bad;
    v = (v << 6) | (s[k] & 0x3F);
  }
  if (v < min || v > RX_MAX_RUNE || (v >= 0xD800 && v <= 0xDFFF))
    goto bad;
  *r = v;
  return w;
bad:
  *ok = false;
  *r = 0xFFFD;
  return 1;
}

static void
utf8_encode(struct ci_buf *b, uint32_t r)
{
  char tmp[4];
  size_t n;
  if (r < 0x80) {
    tmp[0] = (char)r, n = 1;
  } else if (r < 0x800) {
    tmp[0] = (char)(0xC0 | (r >> 6));
    tmp[1] = (char)(0x80 | (r & 0x3F)), n = 2;
  } else if (r < 0x10000) {
    tmp[0] = (char)(0xE0 | (r >> 12));
    tmp[1] = (char)(0x80 | ((r >> 6) & 0x3F));
    tmp[2] = (char)(0x80 | (r & 0x3F)), n = 3;
  } else {
    tmp[0] = (char)(0xF0 | (r >> 18));
    tmp[1] = (char)(0x80 | ((r >> 12) & 0x3F));
    tmp[2] = (char)(0x80 | ((r >> 6) & 0x3F));
    tmp[3] = (char)(0x80 | (r & 0x3F)), n = 4;
  }
  ci_buf_add(b, tmp, n);
}

static bool
utf8_valid(const char *s, size_t n, size_t *bad_at)
{
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t r;
    bool ok;
    size_t w = utf8_decode(p + i, n - i, &r, &ok);
    if (!ok) {
      if (bad_at)
        *bad_at = i;
      return false;
    }
    i += w;
  }
  return true;
}

/* ---- Go regexp syntax -> PCRE2 ---- */

struct rx_frame {
  ssize_t last_atom; /* the enclosing level's state, restored at ')' */
  unsigned done_max;
  bool multiline;
};

struct rx {
  const char *s; /* the whole Go pattern */
  size_t n, i;
  struct ci_buf out;
  struct ci_buf pending; /* flag groups "(?i)" not yet emitted */
  struct rx_frame *frames;
  size_t nframes, frames_alloc;
  ssize_t last_atom;   /* output offset of the last atom at this level; -1: none */
  bool last_quant;     /* it carries a quantifier already */
  bool last_assert;    /* it is an assertion, which PCRE2 will not repeat */
  bool prev_repeat;    /* the previous token was a repetition (Go's lastRepeat) */
  size_t repeat_start; /* where that repetition started */
  unsigned last_prod;  /* product of nested {n,m} counts inside the last atom */
  unsigned done_max;   /* max of that over the finished atoms at this level */
  bool multiline;      /* Go's (?m) is in effect: $ is end of line, else end of text */
  char *err;
};

static int
rx_fail(struct rx *x, const char *code, const char *expr, size_t len)
{
  if (!x->err)
    x->err = xasprintf("error parsing regexp: %s: `%.*s`", code, (int)len, expr);
  return -1;
}

static bool
is_alnum(uint32_t c)
{
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
unhex(uint32_t c)
{
  if (c >= '0' && c <= '9')
    return (int)(c - '0');
  if (c >= 'a' && c <= 'f')
    return (int)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F')
    return (int)(c - 'A' + 10);
  return -1;
}

/* The rune at x->s[i]; the pattern was checked to be valid UTF-8 up front. */
static size_t
rx_rune(const struct rx *x, size_t i, uint32_t *r)
{
  bool ok;
  if (i >= x->n) {
    *r = 0xFFFD; /* like DecodeRuneInString(""): RuneError, never a valid digit */
    return 0;
  }
  return utf8_decode((const unsigned char *)x->s + i, x->n - i, r, &ok);
}

/* Emit one character as a PCRE2 literal (inside or outside a class). */
static void
emit_char(struct ci_buf *b, uint32_t r)
{
  if (r < 0x80 && is_alnum(r))
    ci_buf_addc(b, (char)r);
  else if (r >= 0x80)
    utf8_encode(b, r);
  else
    ci_buf_addf(b, "\\x{%x}", (unsigned)r);
}

static void
emit_range(struct ci_buf *b, uint32_t lo, uint32_t hi, unsigned *nelems)
{
  /* PCRE2 in UTF mode refuses surrogate code points; they never match valid UTF-8 (and
   * Go's decoder never yields them), so leave them out. */
  if (lo >= 0xD800 && hi <= 0xDFFF)
    return;
  if (lo < 0xD800 && hi >= 0xD800 && hi <= 0xDFFF)
    hi = 0xD7FF;
  else if (lo >= 0xD800 && lo <= 0xDFFF)
    lo = 0xE000;
  else if (lo < 0xD800 && hi > 0xDFFF) {
    emit_range(b, lo, 0xD7FF, nelems);
    emit_range(b, 0xE000, hi, nelems);
    return;
  }
  emit_char(b, lo);
  if (hi != lo) {
    ci_buf_addc(b, '-');
    emit_char(b, hi);
  }
  (*nelems)++;
}

/* Go's parseEscape: s[i] is '\\'; on success *r is the character, *end past it. */
static int
rx_escape(struct rx *x, size_t i, uint32_t *r, size_t *end)
{
  size_t start = i;
  i++;
  if (i >= x->n)
    return rx_fail(x, "trailing backslash at end of expression", "", 0);
  uint32_t c;
  i += rx_rune(x, i, &c);
  switch (c) {
  case '1':
  case '2':
  case '3':
  case '4':
  case '5':
  case '6':
  case '7':
    /* a single non-zero digit is a backreference: not supported */
    if (i >= x->n || x->s[i] < '0' || x->s[i] > '7')
      break;
    /* fallthrough */
  case '0': {
    uint32_t v = c - '0';
    for (int k = 1; k < 3; k++) {
      if (i >= x->n || x->s[i] < '0' || x->s[i] > '7')
        break;
      v = v * 8 + (uint32_t)(x->s[i] - '0');
      i++;
    }
    *r = v;
    *end = i;
    return 0;
  }
  case 'x': {
    if (i >= x->n)
      break;
    uint32_t d;
    i += rx_rune(x, i, &d);
    if (d == '{') {
      uint32_t v = 0;
      int nhex = 0;
      for (;;) {
        if (i >= x->n)
          goto bad;
        i += rx_rune(x, i, &d);
        if (d == '}')
          break;
        int h = unhex(d);
        if (h < 0)
          goto bad;
        v = v * 16 + (uint32_t)h;
        if (v > RX_MAX_RUNE)
          goto bad;
        nhex++;
      }
      if (nhex == 0)
        goto bad;
      *r = v;
      *end = i;
      return 0;
    }
    int hx = unhex(d);
    i += rx_rune(x, i, &d);
    int hy = unhex(d);
    if (hx < 0 || hy < 0)
      break;
    *r = (uint32_t)(hx * 16 + hy);
    *end = i;
    return 0;
  }
  case 'a':
    *r = '\a';
    goto one;
  case 'f':
    *r = '\f';
    goto one;
  case 'n':
    *r = '\n';
    goto one;
  case 'r':
    *r = '\r';
    goto one;
  case 't':
    *r = '\t';
    goto one;
  case 'v':
    *r = '\v';
    goto one;
  default:
    if (c < 0x80 && !is_alnum(c)) { /* escaped punctuation is itself */
      *r = c;
      goto one;
    }
    break;
  }
bad:
  return rx_fail(x, "invalid escape sequence", x->s + start, (i > x->n ? x->n : i) - start);
one:
  *end = i;
  return 0;
}

/* \d \D \s \S \w \W at s[i] (Go's perlGroup): emit class content (no brackets) for use
 * inside a class, or a whole atom outside one.  Returns false if s[i] is not one. */
static bool
rx_perl_class(struct rx *x, size_t i, struct ci_buf *b, bool in_class, unsigned *nelems)
{
  if (i + 1 >= x->n || x->s[i] != '\\')
    return false;
  switch (x->s[i + 1]) {
  case 'd':
  case 'D':
  case 'w':
  case 'W':
    ci_buf_add(b, x->s + i, 2); /* ASCII in PCRE2 without UCP, as in Go */
    break;
  case 's':
    /* Go: [\t\n\f\r ]; PCRE2's \s would add VT */
    ci_buf_adds(b,
                in_class ? "\\x{9}\\x{a}\\x{c}\\x{d}\\x{20}" : "[\\x{9}\\x{a}\\x{c}\\x{d}\\x{20}]");
    break;
  case 'S':
    ci_buf_adds(b, in_class
                       ? "\\x{0}-\\x{8}\\x{b}\\x{e}-\\x{1f}\\x{21}-\\x{d7ff}\\x{e000}-\\x{10ffff}"
                       : "[^\\x{9}\\x{a}\\x{c}\\x{d}\\x{20}]");
    break;
  default:
    return false;
  }
  if (nelems)
    (*nelems)++;
  return true;
}

/* \pN, \p{Name}, \p{^Name}, \PN ... at s[i]: 0 and *end (emitted to b), 1 if not one,
 * -1 on error. */
static int
rx_unicode_class(struct rx *x, size_t i, struct ci_buf *b, size_t *end, unsigned *nelems)
{
  if (i + 1 >= x->n || x->s[i] != '\\' || (x->s[i + 1] != 'p' && x->s[i + 1] != 'P'))
    return 1;
  bool neg = x->s[i + 1] == 'P';
  size_t j = i + 2;
  if (j >= x->n)
    return rx_fail(x, "invalid character class range", x->s + i, x->n - i);
  const char *name;
  size_t nlen;
  if (x->s[j] != '{') {
    uint32_t c;
    size_t w = rx_rune(x, j, &c);
    name = x->s + j;
    nlen = w;
    *end = j + w;
  } else {
    const char *close = memchr(x->s + j, '}', x->n - j);
    if (!close)
      return rx_fail(x, "invalid character class range", x->s + i, x->n - i);
    name = x->s + j + 1;
    nlen = (size_t)(close - name);
    *end = (size_t)(close - x->s) + 1;
  }
  if (nlen > 0 && name[0] == '^') {
    neg = !neg;
    name++, nlen--;
  }
  /* Go accepts categories and scripts by their exact names; all are made of letters,
   * digits and '_'.  Anything else cannot be a Go name. */
  bool ok = nlen > 0;
  for (size_t k = 0; k < nlen; k++)
    if (!is_alnum((unsigned char)name[k]) && name[k] != '_')
      ok = false;
  if (!ok)
    return rx_fail(x, "invalid character class range", x->s + i, *end - i);
  ci_buf_addf(b, "\\%c{%.*s}", neg ? 'P' : 'p', (int)nlen, name);
  if (nelems)
    (*nelems)++;
  return 0;
}

static const char *const posix_classes[] = {
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph",
    "lower", "print", "punct", "space", "upper", "word",  "xdigit",
};

/* Go's parseClass: s[i] is '['.  Emits a PCRE2 class. */
static int
rx_class(struct rx *x, size_t *pi)
{
  size_t start = *pi, i = start + 1;
  bool neg = false;
  if (i < x->n && x->s[i] == '^') {
    neg = true;
    i++;
  }
  struct ci_buf body = CI_BUF_INIT;
  unsigned nelems = 0;
  bool first = true;
  int ret = 0;
  while (i >= x->n || x->s[i] != ']' || first) {
    first = false;
    /* POSIX [:alnum:] */
    if (x->n - i > 2 && x->s[i] == '[' && x->s[i + 1] == ':') {
      const char *close = memmem(x->s + i + 2, x->n - i - 2, ":]", 2);
      if (close) {
        const char *name = x->s + i + 2;
        size_t nlen = (size_t)(close - name);
        bool pneg = nlen > 0 && name[0] == '^';
        bool known = false;
        for (size_t k = 0; k < CI_ARRAY_SIZE(posix_classes); k++) {
          const char *p = posix_classes[k];
          if (strlen(p) == nlen - pneg && memcmp(p, name + pneg, nlen - pneg) == 0)
            known = true;
        }
        size_t next = (size_t)(close - x->s) + 2;
        if (!known) {
          ret = rx_fail(x, "invalid character class range", x->s + i, next - i);
          goto out;
        }
        ci_buf_add(&body, x->s + i, next - i); /* same spelling and meaning in PCRE2 */
        nelems++;
        i = next;
        continue;
      }
    }
    size_t end;
    int u = rx_unicode_class(x, i, &body, &end, &nelems);
    if (u < 0) {
      ret = -1;
      goto out;
    }
    if (u == 0) {
      i = end;
      continue;
    }
    if (rx_perl_class(x, i, &body, true, &nelems)) {
      i += 2;
      continue;
    }
    /* a character or a range */
    size_t rng = i;
    uint32_t lo, hi;
    if (i >= x->n) {
      ret = rx_fail(x, "missing closing ]", x->s + start, x->n - start);
      goto out;
    }
    if (x->s[i] == '\\') {
      if (rx_escape(x, i, &lo, &i) < 0) {
        ret = -1;
        goto out;
      }
    } else {
      i += rx_rune(x, i, &lo);
    }
    hi = lo;
    if (x->n - i >= 2 && x->s[i] == '-' && x->s[i + 1] != ']') {
      i++;
      if (i >= x->n) {
        ret = rx_fail(x, "missing closing ]", x->s + start, x->n - start);
        goto out;
      }
      if (x->s[i] == '\\') {
        if (rx_escape(x, i, &hi, &i) < 0) {
          ret = -1;
          goto out;
        }
      } else {
        i += rx_rune(x, i, &hi);
      }
      if (hi < lo) {
        ret = rx_fail(x, "invalid character class range", x->s + rng, i - rng);
        goto out;
      }
    }
    emit_range(&body, lo, hi, &nelems);
  }
  i++;             /* ']' */
  if (nelems == 0) /* only surrogates: nothing (or, negated, everything) */
    ci_buf_adds(&x->out, neg ? "[\\x{0}-\\x{10ffff}]" : "[^\\x{0}-\\x{10ffff}]");
  else {
    ci_buf_adds(&x->out, neg ? "[^" : "[");
    ci_buf_add(&x->out, body.s, body.len);
    ci_buf_addc(&x->out, ']');
  }
  *pi = i;
out:
  ci_buf_release(&body);
  return ret;
}

/* A new atom starts: emit pending flags, finish the previous atom. */
static void
rx_atom(struct rx *x, bool is_assert)
{
  if (x->pending.len) {
    ci_buf_add(&x->out, x->pending.s, x->pending.len);
    ci_buf_reset(&x->pending);
  }
  if (x->last_prod > x->done_max)
    x->done_max = x->last_prod;
  x->last_atom = (ssize_t)x->out.len;
  x->last_quant = false;
  x->last_assert = is_assert;
  x->last_prod = 0;
}

static void
rx_literal(struct rx *x, uint32_t r)
{
  rx_atom(x, false);
  if (r >= 0xD800 && r <= 0xDFFF)
    ci_buf_adds(&x->out, "[^\\x{0}-\\x{10ffff}]"); /* never matches, as in Go */
  else
    emit_char(&x->out, r);
}

/* Go's parseInt: decimal without leading zeros; *v = -1 if too big. */
static bool
rx_int(struct rx *x, size_t *pi, long *v)
{
  size_t i = *pi;
  if (i >= x->n || x->s[i] < '0' || x->s[i] > '9')
    return false;
  if (x->n - i >= 2 && x->s[i] == '0' && x->s[i + 1] >= '0' && x->s[i + 1] <= '9')
    return false;
  long n = 0;
  for (; i < x->n && x->s[i] >= '0' && x->s[i] <= '9'; i++) {
    if (n >= 100000000)
      n = -1;
    if (n >= 0)
      n = n * 10 + (x->s[i] - '0');
  }
  *v = n;
  *pi = i;
  return true;
}

/* Go's parseRepeat at s[i] == '{': {n}, {n,}, {n,m}. */
static bool
rx_parse_repeat(struct rx *x, size_t i, long *min, long *max, size_t *end)
{
  i++;
  if (!rx_int(x, &i, min))
    return false;
  if (i >= x->n)
    return false;
  if (x->s[i] != ',') {
    *max = *min;
  } else {
    i++;
    if (i >= x->n)
      return false;
    if (x->s[i] == '}')
      *max = -1;
    else if (!rx_int(x, &i, max))
      return false;
    else if (*max < 0)
      *min = -1;
  }
  if (i >= x->n || x->s[i] != '}')
    return false;
  *end = i + 1;
  return true;
}

/* Put the last atom in parentheses (not capturing: PCRE2_NO_AUTO_CAPTURE), so that a
 * quantifier can follow. */
static void
rx_wrap_last(struct rx *x)
{
  size_t at = (size_t)x->last_atom;
  ci_buf_addc(&x->out, '(');
  memmove(x->out.s + at + 1, x->out.s + at, x->out.len - 1 - at);
  x->out.s[at] = '(';
  ci_buf_addc(&x->out, ')');
}

/* A repetition from s[start] to s[after] (the operator text, lazy '?' not included). */
static int
rx_repeat(struct rx *x, size_t start, size_t *after, long min, long max, bool counted)
{
  bool lazy = false;
  if (*after < x->n && x->s[*after] == '?') {
    lazy = true;
    (*after)++;
  }
  if (x->prev_repeat)
    return rx_fail(x, "invalid nested repetition operator", x->s + x->repeat_start,
                   *after - x->repeat_start);
  if (x->last_atom < 0)
    return rx_fail(x, "missing argument to repetition operator", x->s + start, *after - start);
  if (x->last_quant || x->last_assert)
    rx_wrap_last(x);
  if (counted) {
    if (max < 0)
      ci_buf_addf(&x->out, "{%ld,}", min);
    else if (max == min)
      ci_buf_addf(&x->out, "{%ld}", min);
    else
      ci_buf_addf(&x->out, "{%ld,%ld}", min, max);
    /* Go's repeatIsValid: the product of nested counts must stay <= 1000. */
    long m = max < 0 ? min : max;
    if (max == 0)
      x->last_prod = 0;
    else {
      unsigned mult = m > 0 ? (unsigned)m : 1;
      unsigned inner = x->last_prod ? x->last_prod : 1;
      x->last_prod = mult * inner;
      if ((min >= 2 || max >= 2) && x->last_prod > RX_MAX_REPEAT)
        return rx_fail(x, "invalid repeat count", x->s + start, *after - start);
    }
  } else {
    ci_buf_addc(&x->out, x->s[start]);
  }
  if (lazy)
    ci_buf_addc(&x->out, '?');
  x->last_quant = true;
  x->last_assert = false;
  x->repeat_start = start;
  return 0;
}

/* Go's parsePerlFlags: s[i..] starts with "(?". */
static int
rx_perl_group(struct rx *x, size_t *pi, bool *new_multiline)
{
  size_t i = *pi, t = i + 2;
  /* named captures: (?P<name>...) and (?<name>...) (Go 1.22+) */
  if ((x->n - i > 4 && x->s[i + 2] == 'P' && x->s[i + 3] == '<') ||
      (x->n - i > 3 && x->s[i + 2] == '<')) {
    size_t begin = x->s[i + 2] == 'P' ? i + 4 : i + 3;
    const char *gt = memchr(x->s + i, '>', x->n - i);
    if (!gt)
      return rx_fail(x, "invalid named capture", x->s + i, x->n - i);
    size_t close = (size_t)(gt - x->s);
    bool ok = close > begin;
    for (size_t k = begin; k < close; k++)
      if (!is_alnum((unsigned char)x->s[k]) && x->s[k] != '_')
        ok = false;
    if (!ok)
      return rx_fail(x, "invalid named capture", x->s + i, close + 1 - i);
    *pi = close + 1;
    return 1; /* a capturing group opens */
  }
  int sign = 1;
  bool saw_flag = false, multiline = x->multiline;
  while (t < x->n) {
    char c = x->s[t++];
    switch (c) {
    case 'm':
      multiline = sign > 0;
      /* fallthrough */
    case 'i':
    case 's':
    case 'U':
      saw_flag = true;
      continue;
    case '-':
      if (sign < 0)
        goto bad;
      sign = -1;
      saw_flag = false;
      continue;
    case ':':
    case ')':
      if (sign < 0 && !saw_flag)
        goto bad;
      if (c == ':') {
        *pi = t;
        *new_multiline = multiline;
        return 2; /* a non-capturing group with flags opens: the caller emits it */
      }
      /* a flag change: takes effect at the next atom, until the group ends */
      ci_buf_add(&x->pending, x->s + i, t - i);
      x->multiline = multiline;
      *pi = t;
      return 0;
    default:
      goto bad;
    }
  }
bad:;
  /* Go reports the text up to and including the offending rune */
  size_t end = t;
  if (end > i && end <= x->n && ((unsigned char)x->s[end - 1] & 0x80)) {
    uint32_t r;
    end = end - 1 + rx_rune(x, end - 1, &r);
  }
  return rx_fail(x, "invalid or unsupported Perl syntax", x->s + i, end - i);
}

static int
rx_open(struct rx *x, const char *text, size_t len)
{
  if (x->nframes >= RX_MAX_DEPTH)
    return rx_fail(x, "expression nests too deeply", x->s, x->n);
  rx_atom(x, false);
  ci_buf_add(&x->out, text, len);
  CI_GROW(x->frames, x->frames_alloc, x->nframes + 1);
  x->frames[x->nframes++] = (struct rx_frame){x->last_atom, x->done_max, x->multiline};
  x->last_atom = -1;
  x->last_prod = 0;
  x->done_max = 0;
  return 0;
}

static int
rx_translate(struct rx *x)
{
  size_t bad;
  if (!utf8_valid(x->s, x->n, &bad))
    return rx_fail(x, "invalid UTF-8", x->s + bad, x->n - bad);
  while (x->i < x->n) {
    bool repeat = false;
    size_t i = x->i;
    unsigned char c = (unsigned char)x->s[i];
    switch (c) {
    case '(':
      if (x->n - i >= 2 && x->s[i + 1] == '?') {
        size_t j = i;
        bool multiline = x->multiline;
        int kind = rx_perl_group(x, &j, &multiline);
        if (kind < 0)
          return -1;
        if (kind == 1 && rx_open(x, "(", 1) < 0)
          return -1;
        if (kind == 2) {
          /* "(?:" as "(": PCRE2_NO_AUTO_CAPTURE makes it non-capturing, and PCRE2
           * nests plain parentheses deeper than "(?" groups (about 500) */
          struct ci_buf g = CI_BUF_INIT;
          if (j - i > 3)
            ci_buf_add(&g, x->s + i, j - i);
          else
            ci_buf_addc(&g, '(');
          int r = rx_open(x, g.s, g.len);
          ci_buf_release(&g);
          if (r < 0)
            return -1;
          x->multiline = multiline; /* inside the group only */
        }
        x->i = j;
        break;
      }
      if (rx_open(x, "(", 1) < 0)
        return -1;
      x->i = i + 1;
      break;
    case '|':
      if (x->last_prod > x->done_max)
        x->done_max = x->last_prod;
      x->last_prod = 0;
      x->last_atom = -1;
      ci_buf_addc(&x->out, '|');
      x->i = i + 1;
      break;
    case ')': {
      if (x->nframes == 0)
        return rx_fail(x, "unexpected )", x->s, x->n);
      unsigned inner = x->done_max > x->last_prod ? x->done_max : x->last_prod;
      struct rx_frame f = x->frames[--x->nframes];
      ci_buf_reset(&x->pending); /* flags end with their group */
      ci_buf_addc(&x->out, ')');
      x->last_atom = f.last_atom;
      x->done_max = f.done_max;
      x->multiline = f.multiline;
      x->last_prod = inner;
      x->last_quant = false;
      x->last_assert = false;
      x->i = i + 1;
      break;
    }
    case '^': /* PCRE2's ^ means what Go's does (with PCRE2_ALT_CIRCUMFLEX) */
      rx_atom(x, true);
      ci_buf_addc(&x->out, '^');
      x->i = i + 1;
      break;
    case '$': /* Go: end of text, or with (?m) end of line (before any \n) */
      rx_atom(x, true);
      ci_buf_adds(&x->out, x->multiline ? "$" : "\\z");
      x->i = i + 1;
      break;
    case '.':
      rx_atom(x, false);
      ci_buf_addc(&x->out, '.');
      x->i = i + 1;
      break;
    case '[': {
      rx_atom(x, false);
      size_t j = i;
      if (rx_class(x, &j) < 0)
        return -1;
      x->i = j;
      break;
    }
    case '*':
    case '+':
    case '?': {
      size_t after = i + 1;
      if (rx_repeat(x, i, &after, 0, 0, false) < 0)
        return -1;
      repeat = true;
      x->i = after;
      break;
    }
    case '{': {
      long min, max;
      size_t after;
      if (!rx_parse_repeat(x, i, &min, &max, &after)) {
        rx_literal(x, '{');
        x->i = i + 1;
        break;
      }
      if (min < 0 || min > RX_MAX_REPEAT || max > RX_MAX_REPEAT || (max >= 0 && min > max))
        return rx_fail(x, "invalid repeat count", x->s + i, after - i);
      if (rx_repeat(x, i, &after, min, max, true) < 0)
        return -1;
      repeat = true;
      x->i = after;
      break;
    }
    case '\\': {
      if (x->n - i >= 2) {
        char e = x->s[i + 1];
        if (e == 'A' || e == 'b' || e == 'B' || e == 'z') {
          rx_atom(x, true);
          ci_buf_add(&x->out, x->s + i, 2);
          x->i = i + 2;
          break;
        }
        if (e == 'C')
          return rx_fail(x, "invalid escape sequence", x->s + i, 2);
        if (e == 'Q') {
          /* \Q...\E: literals up to \E or the end */
          size_t j = i + 2;
          const char *q = memmem(x->s + j, x->n - j, "\\E", 2);
          size_t stop = q ? (size_t)(q - x->s) : x->n;
          while (j < stop) {
            uint32_t r;
            j += rx_rune(x, j, &r);
            rx_literal(x, r);
          }
          x->i = q ? stop + 2 : x->n;
          break;
        }
      }
      size_t end;
      struct ci_buf atom = CI_BUF_INIT;
      int u = rx_unicode_class(x, i, &atom, &end, NULL);
      if (u == 0) {
        rx_atom(x, false);
        ci_buf_add(&x->out, atom.s, atom.len);
        ci_buf_release(&atom);
        x->i = end;
        break;
      }
      ci_buf_release(&atom);
      if (u < 0)
        return -1;
      if (x->n - i >= 2 && x->s[i + 1] && strchr("dDsSwW", x->s[i + 1])) {
        rx_atom(x, false);
        rx_perl_class(x, i, &x->out, false, NULL);
        x->i = i + 2;
        break;
      }
      uint32_t r;
      if (rx_escape(x, i, &r, &end) < 0)
        return -1;
      rx_literal(x, r);
      x->i = end;
      break;
    }
    default: {
      uint32_t r;
      size_t w = rx_rune(x, i, &r);
      rx_literal(x, r);
      x->i = i + w;
      break;
    }
    }
    x->prev_repeat = repeat;
  }
  if (x->nframes > 0)
    return rx_fail(x, "missing closing )", x->s, x->n);
  return 0;
}

int
cfg__regex_translate(const char *pattern, char **out, char **errmsg)
{
  struct rx x = {.s = pattern, .n = strlen(pattern), .last_atom = -1};
  ci_buf_init(&x.out);
  ci_buf_init(&x.pending);
  int ret = rx_translate(&x);
  free(x.frames);
  ci_buf_release(&x.pending);
  if (ret < 0) {
    ci_buf_release(&x.out);
    *errmsg = x.err ? x.err : xstrdup("error parsing regexp");
    return -1;
  }
  *out = ci_buf_take(&x.out);
  return 0;
}

int
cfg__regex_compile(const char *pattern, struct cfg_regex **out, char **errmsg)
{
  cleanup_free char *body = NULL;
  if (cfg__regex_translate(pattern, &body, errmsg) < 0)
    return -1;
  /* Searching is one anchored pass over a pattern that starts with any prefix: the DFA
   * then tracks every start position at once, linear time like RE2, instead of one
   * pass per start position (quadratic for 'x|.*b' on a long subject). */
  cleanup_free char *pcre = xasprintf("(?s:.*?)(%s)", body);
  pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
  if (!cctx)
    CI_BUG("pcre2_compile_context_create failed");
  pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
  pcre2_set_parens_nest_limit(cctx, RX_MAX_DEPTH + 10);
  int code;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ALT_CIRCUMFLEX |
                                     PCRE2_NEVER_BACKSLASH_C | PCRE2_NO_AUTO_CAPTURE,
                                 &code, &off, cctx);
  pcre2_compile_context_free(cctx);
  if (!re) {
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
      snprintf((char *)msg, sizeof(msg), "error %d", code);
    *errmsg = xasprintf("error parsing regexp: %s: `%s`", (const char *)msg, pattern);
    return -1;
  }
  struct cfg_regex *r = xcalloc(1, sizeof(*r));
  r->code = re;
  *out = r;
  return 0;
}

void
cfg__regex_free(struct cfg_regex *re)
{
  if (!re)
    return;
  pcre2_code_free(re->code);
  free(re);
}

int
cfg__regex_match(const struct cfg_regex *re, const char *subject, size_t len, char **errmsg)
{
  /* Go reads invalid UTF-8 as one U+FFFD per bad byte; PCRE2 wants valid UTF-8. */
  struct ci_buf clean = CI_BUF_INIT;
  if (!utf8_valid(subject, len, NULL)) {
    const unsigned char *p = (const unsigned char *)subject;
    for (size_t i = 0; i < len;) {
      uint32_t r;
      bool ok;
      size_t w = utf8_decode(p + i, len - i, &r, &ok);
      if (ok)
        ci_buf_add(&clean, p + i, w);
      else
        utf8_encode(&clean, 0xFFFD);
      i += w;
    }
    subject = clean.s;
    len = clean.len;
  }
  if (!subject)
    subject = "";
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md)
    CI_BUG("pcre2_match_data_create failed");
  size_t wscount = DFA_WS_START;
  int *ws = xmalloc(wscount * sizeof(int));
  int rc;
  for (;;) {
    rc = pcre2_dfa_match(re->code, (PCRE2_SPTR)subject, len, 0, PCRE2_DFA_SHORTEST, md, NULL, ws,
                         wscount);
    if (rc != PCRE2_ERROR_DFA_WSSIZE || wscount >= DFA_WS_MAX)
      break;
    wscount *= 4;
    free(ws);
    ws = xmalloc(wscount * sizeof(int));
  }
  free(ws);
  pcre2_match_data_free(md);
  ci_buf_release(&clean);
  if (rc >= 0) /* 0: matched, but the (1-pair) ovector was too small to hold all matches */
    return 1;
  if (rc == PCRE2_ERROR_NOMATCH)
    return 0;
  PCRE2_UCHAR msg[256];
  if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
    snprintf((char *)msg, sizeof(msg), "error %d", rc);
  *errmsg = xasprintf("cannot match regexp: %s", (const char *)msg);
  return -1;
}

/* ---- Java globs: a port of go-java-glob's ToRegexPattern (isDos = false) ---- */

static bool
is_regex_meta(unsigned char c)
{
  return c && strchr(".^$+{[]|()", c);
}

static bool
is_glob_meta(unsigned char c)
{
  return c && strchr("\\*?[{", c);
}

static int
glob_fail(char **errmsg, const char *what, const char *glob, size_t at)
{
  *errmsg = xasprintf("invalid pattern syntax: %s in '%s' at %zu", what, glob, at);
  return -1;
}

int
cfg__glob_to_regex(const char *glob, char **out, char **errmsg)
{
  const unsigned char *g = (const unsigned char *)glob;
  size_t n = strlen(glob), i = 0;
  bool in_group = false;
  struct ci_buf re = CI_BUF_INIT;
  int ret = 0;
  ci_buf_addc(&re, '^');
  while (i < n) {
    unsigned char c = g[i++];
    switch (c) {
    case '\\': {
      if (i == n) {
        ret = glob_fail(errmsg, "no character to escape", glob, i - 1);
        goto out;
      }
      unsigned char next = g[i++];
      if (is_glob_meta(next) || is_regex_meta(next))
        ci_buf_addc(&re, '\\');
      ci_buf_addc(&re, (char)next);
      break;
    }
    case '/':
      ci_buf_addc(&re, '/');
      break;
    case '[': {
      ci_buf_addc(&re, '[');
      if (g[i] == '^') { /* a literal '^', not a negation */
        ci_buf_adds(&re, "\\^");
        i++;
      } else {
        bool negated = false;
        if (g[i] == '!') {
          ci_buf_addc(&re, '^');
          i++;
          negated = true;
        }
        if (g[i] == '-') { /* a hyphen is allowed first */
          ci_buf_addc(&re, '-');
          i++;
        }
        if (negated) /* never match the name separator */
          ci_buf_addc(&re, '/');
      }
      bool has_range_start = false;
      unsigned char last = 0;
      while (i < n) {
        c = g[i++];
        if (c == ']')
          break;
        if (c == '/') {
          ret = glob_fail(errmsg, "explicit 'name separator' in class", glob, i - 1);
          goto out;
        }
        if (c == '\\' || c == '[' || (c == '&' && g[i] == '&'))
          ci_buf_addc(&re, '\\');
        ci_buf_addc(&re, (char)c);
        if (c == '-') {
          if (!has_range_start) {
            ret = glob_fail(errmsg, "invalid range", glob, i - 1);
            goto out;
          }
          c = i < n ? g[i] : 0;
          i++;
          if (c == 0 || c == ']')
            break;
          if (c < last) {
            ret = glob_fail(errmsg, "invalid range", glob, i - 3);
            goto out;
          }
          ci_buf_addc(&re, (char)c);
          has_range_start = false;
        } else {
          has_range_start = true;
          last = c;
        }
      }
      if (c != ']') {
        ret = glob_fail(errmsg, "missing ']'", glob, i - 1);
        goto out;
      }
      ci_buf_addc(&re, ']');
      break;
    }
    case '{':
      if (in_group) {
        ret = glob_fail(errmsg, "cannot nest groups", glob, i - 1);
        goto out;
      }
      ci_buf_adds(&re, "(?:(?:");
      in_group = true;
      break;
    case '}':
      if (in_group) {
        ci_buf_adds(&re, "))");
        in_group = false;
      } else {
        ci_buf_addc(&re, '}');
      }
      break;
    case ',':
      ci_buf_adds(&re, in_group ? ")|(?:" : ",");
      break;
    case '*':
      if (g[i] == '*') { /* crosses directory boundaries */
        ci_buf_adds(&re, ".*");
        i++;
      } else {
        ci_buf_adds(&re, "[^/]*");
      }
      break;
    case '?':
      ci_buf_adds(&re, "[^/]");
      break;
    default:
      if (is_regex_meta(c))
        ci_buf_addc(&re, '\\');
      ci_buf_addc(&re, (char)c);
      break;
    }
  }
  if (in_group) {
    ret = glob_fail(errmsg, "missing '}'", glob, i - 1);
    goto out;
  }
  ci_buf_addc(&re, '$');
  *out = ci_buf_take(&re);
out:
  ci_buf_release(&re);
  return ret;
}

int
cfg__glob_compile(const char *pattern, struct cfg_regex **out, char **errmsg)
{
  cleanup_free char *re = NULL;
  if (cfg__glob_to_regex(pattern, &re, errmsg) < 0)
    return -1;
  if (cfg__regex_compile(re, out, errmsg) < 0) {
    char *m = *errmsg;
    *errmsg = xasprintf("invalid pattern '%s': %s", pattern, m);
    free(m);
    return -1;
  }
  return 0;
}

int
cfg__glob_match_compiled(const struct cfg_regex *glob, const char *path, char **errmsg)
{
  return cfg__regex_match(glob, path, strlen(path), errmsg);
}

bool
cfg__glob_match(const char *pattern, const char *path)
{
  struct cfg_regex *re = NULL;
  char *err = NULL;
  if (cfg__glob_compile(pattern, &re, &err) < 0) {
    free(err);
    return false;
  }
  int m = cfg__glob_match_compiled(re, path, &err);
  cfg__regex_free(re);
  free(err);
  return m == 1;
}
