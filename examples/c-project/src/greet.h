#ifndef GREET_H
#define GREET_H
#include <stddef.h>
int
greet(char *buf, size_t size, const char *name);
#endif
