#include "../src/greet.h"

#include <stdio.h>
#include <string.h>

int
main(void)
{
  char buf[64];
  greet(buf, sizeof(buf), "cirrus");
  if (strcmp(buf, "hello, cirrus") != 0) {
    fprintf(stderr, "FAIL: got '%s'\n", buf);
    return 1;
  }
  greet(buf, sizeof(buf), NULL);
  if (strcmp(buf, "hello, world") != 0) {
    fprintf(stderr, "FAIL: got '%s'\n", buf);
    return 1;
  }
  puts("ok");
  return 0;
}
