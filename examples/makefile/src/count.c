#include "count.h"

void
count_update(struct counts *c, const char *buf, size_t len, int *in_word)
{
  for (size_t i = 0; i < len; i++) {
    char ch = buf[i];
    int space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
    if (ch == '\n')
      c->lines++;
    if (!space && !*in_word)
      c->words++;
    *in_word = !space;
  }
}
