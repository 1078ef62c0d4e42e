#include "../src/count.h"

#include <stdio.h>
#include <string.h>

static int failures;

static void
expect(const char *text, size_t lines, size_t words)
{
  struct counts c = { 0, 0 };
  int in_word = 0;
  count_update(&c, text, strlen(text), &in_word);
  if (c.lines != lines || c.words != words) {
    fprintf(stderr, "FAIL: '%s': %zu %zu, want %zu %zu\n", text, c.lines, c.words, lines, words);
    failures++;
  }
}

int
main(void)
{
  expect("", 0, 0);
  expect("one", 0, 1);
  expect("one two\n", 1, 2);
  expect("  a\tb \n\nc\n", 3, 3);
  if (failures)
    return 1;
  puts("all count tests passed");
  return 0;
}
