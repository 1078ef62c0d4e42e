/* cmd/text.c - UTF-8 and XML-safe copies of output (see text.h). */
#include "text.h"

#include <string.h>

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* Length of the valid UTF-8 sequence at s (1-4), its code point in *cp, or 0 if invalid
 * (incomplete sequences included). */
static size_t
utf8_seq(const unsigned char *s, size_t len, unsigned *cp)
{
  unsigned c = s[0];
  size_t n;
  unsigned min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    n = 2, min = 0x80, c &= 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, min = 0x800, c &= 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, min = 0x10000, c &= 0x07;
  } else {
    return 0;
  }
  if (len < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  *cp = c;
  return n;
}

void
cli_text_add_utf8(struct ci_buf *b, const char *s, size_t len, bool xml)
{
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  while (p < end) {
    unsigned cp = 0;
    size_t n = utf8_seq(p, (size_t)(end - p), &cp);
    if (n == 0 || cp == 0) {
      ci_buf_adds(b, REPLACEMENT);
      p++;
      continue;
    }
    if (xml) {
      bool bad =
          (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0xFFFE || cp == 0xFFFF;
      const char *ent = NULL;
      switch (cp) {
      case '&':
        ent = "&amp;";
        break;
      case '<':
        ent = "&lt;";
        break;
      case '>':
        ent = "&gt;";
        break;
      case '"':
        ent = "&quot;";
        break;
      case '\'':
        ent = "&apos;";
        break;
      }
      if (bad) {
        ci_buf_adds(b, REPLACEMENT);
        p += n;
        continue;
      }
      if (ent) {
        ci_buf_adds(b, ent);
        p += n;
        continue;
      }
    }
    ci_buf_add(b, p, n);
    p += n;
  }
}

size_t
cli_text_utf8_tail(const char *s, size_t len)
{
  const unsigned char *u = (const unsigned char *)s;
  /* Walk back over at most 3 continuation bytes to a lead byte. */
  for (size_t back = 1; back <= 3 && back <= len; back++) {
    unsigned c = u[len - back];
    if ((c & 0xC0) == 0x80)
      continue;
    size_t need = c >= 0xF0 && c <= 0xF4   ? 4
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xC2 && c <= 0xDF ? 2
                                           : 1;
    return need > back ? back : 0;
  }
  return 0;
}
