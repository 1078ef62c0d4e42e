/* config/env.c - sorted environments, the static CLI environment, units. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Index of key, or of the insertion point (with *found = false). */
static size_t
env_find(const struct cfg_env *env, const char *key, bool *found)
{
  size_t lo = 0, hi = env->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(env->v[mid].key, key);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = false;
  return lo;
}

const char *
cfg_env_get(const struct cfg_env *env, const char *key)
{
  bool found;
  size_t i = env_find(env, key, &found);
  return found ? env->v[i].value : NULL;
}

void
cfg_env_set(struct cfg_env *env, const char *key, const char *value)
{
  bool found;
  size_t i = env_find(env, key, &found);
  if (found) {
    if (strcmp(env->v[i].value, value) == 0)
      return;
    char *v = xstrdup(value);
    free(env->v[i].value);
    env->v[i].value = v;
    return;
  }
  CI_GROW(env->v, env->alloc, env->n + 1);
  memmove(env->v + i + 1, env->v + i, (env->n - i) * sizeof(*env->v));
  env->v[i].key = xstrdup(key);
  env->v[i].value = xstrdup(value);
  env->n++;
}

void
cfg_env_unset(struct cfg_env *env, const char *key)
{
  bool found;
  size_t i = env_find(env, key, &found);
  if (!found)
    return;
  free(env->v[i].key);
  free(env->v[i].value);
  memmove(env->v + i, env->v + i + 1, (env->n - i - 1) * sizeof(*env->v));
  env->n--;
}

void
cfg_env_merge(struct cfg_env *env, const struct cfg_env *from)
{
  if (!from)
    return;
  for (size_t i = 0; i < from->n; i++)
    cfg_env_set(env, from->v[i].key, from->v[i].value);
}

void
cfg_env_copy(struct cfg_env *dst, const struct cfg_env *src)
{
  struct cfg_env e = CFG_ENV_INIT;
  cfg_env_merge(&e, src);
  cfg_env_release(dst);
  *dst = e;
}

void
cfg_env_release(struct cfg_env *env)
{
  for (size_t i = 0; i < env->n; i++) {
    free(env->v[i].key);
    free(env->v[i].value);
  }
  free(env->v);
  env->v = NULL;
  env->n = env->alloc = 0;
}

void
cfg_env_add_static(struct cfg_env *env)
{
  cfg_env_set(env, "CI", "true");
  cfg_env_set(env, "CONTINUOUS_INTEGRATION", "true");
  cfg_env_set(env, "CIRRUS_CI", "true");
  cfg_env_set(env, "CIRRUS_ENVIRONMENT", "CLI");
  cfg_env_set(env, "CIRRUS_USER_COLLABORATOR", "true");
  cfg_env_set(env, "CIRRUS_USER_PERMISSION", "write");
}

/* Split "123abc" into digits (up to the last digit) and a lower-cased suffix, as
 * upstream's ParseSeconds/ParseMegaBytes do, and parse the digits as uint32. */
static int
split_number(const char *s, unsigned long *num, char *suffix, size_t suffix_size, char **errmsg)
{
  size_t len = strlen(s);
  ssize_t last_digit = -1;
  for (size_t i = 0; i < len; i++)
    if (isdigit((unsigned char)s[i]))
      last_digit = (ssize_t)i;
  size_t ndigits = (size_t)(last_digit + 1);
  if (ndigits == 0) {
    *errmsg = xasprintf("invalid number \"%s\"", s);
    return -1;
  }
  for (size_t i = 0; i < ndigits; i++) {
    if (!isdigit((unsigned char)s[i])) {
      *errmsg = xasprintf("invalid number \"%.*s\"", (int)ndigits, s);
      return -1;
    }
  }
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || v > 0xffffffffULL) {
    *errmsg = xasprintf("number \"%.*s\" is out of range", (int)ndigits, s);
    return -1;
  }
  size_t slen = len - ndigits;
  if (slen >= suffix_size)
    slen = suffix_size - 1; /* long suffixes are invalid anyway; report their start */
  for (size_t i = 0; i < slen; i++)
    suffix[i] = (char)tolower((unsigned char)s[ndigits + i]);
  suffix[slen] = '\0';
  *num = (unsigned long)v;
  return 0;
}

int
cfg_parse_seconds(const char *s, unsigned *out, char **errmsg)
{
  unsigned long n;
  char suffix[16];
  if (split_number(s, &n, suffix, sizeof(suffix), errmsg) < 0)
    return -1;
  unsigned long long secs;
  if (strcmp(suffix, "h") == 0)
    secs = (unsigned long long)n * 3600;
  else if (strcmp(suffix, "") == 0 || strcmp(suffix, "m") == 0)
    secs = (unsigned long long)n * 60;
  else if (strcmp(suffix, "s") == 0)
    secs = n;
  else {
    *errmsg = xasprintf("unsupported time unit suffix: \"%s\"", suffix);
    return -1;
  }
  if (secs > 0xffffffffULL) {
    *errmsg = xasprintf("duration \"%s\" is out of range", s);
    return -1;
  }
  *out = (unsigned)secs;
  return 0;
}

int
cfg_parse_megabytes(const char *s, unsigned *out, char **errmsg)
{
  unsigned long n;
  char suffix[16];
  if (split_number(s, &n, suffix, sizeof(suffix), errmsg) < 0)
    return -1;
  unsigned long long mb;
  if (strcmp(suffix, "") == 0)
    mb = n < 100 ? (unsigned long long)n * 1024 : n;
  else if (!strcmp(suffix, "m") || !strcmp(suffix, "mb") || !strcmp(suffix, "mi"))
    mb = n;
  else if (!strcmp(suffix, "g") || !strcmp(suffix, "gb") || !strcmp(suffix, "gi"))
    mb = (unsigned long long)n * 1024;
  else {
    *errmsg = xasprintf("unsupported digital information unit suffix: \"%s\"", suffix);
    return -1;
  }
  if (mb > 0xffffffffULL) {
    *errmsg = xasprintf("memory size \"%s\" is out of range", s);
    return -1;
  }
  *out = (unsigned)mb;
  return 0;
}
