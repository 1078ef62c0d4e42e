#ifndef COUNT_H
#define COUNT_H
#include <stddef.h>

struct counts
{
  size_t lines;
  size_t words;
};

/* Adds the lines and words of buf[0..len) to c; in_word carries a word across calls. */
void
count_update(struct counts *c, const char *buf, size_t len, int *in_word);
#endif
