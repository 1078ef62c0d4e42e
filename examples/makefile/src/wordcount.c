/* wordcount: prints "LINES WORDS" of its standard input. */
#include "count.h"

#include <stdio.h>

int
main(void)
{
  struct counts c = { 0, 0 };
  char buf[4096];
  int in_word = 0;
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
    count_update(&c, buf, n, &in_word);
  if (ferror(stdin)) {
    perror("wordcount");
    return 1;
  }
  printf("%zu %zu\n", c.lines, c.words);
  return 0;
}
