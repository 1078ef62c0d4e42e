/* runner/env.c - run-time environment composition and expansion. */
#include "env.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static bool
is_alnum_(char c)
{
  return c == '_' || isalnum((unsigned char)c);
}

static bool
is_special(char c)
{
  return c == '*' || c == '#' || c == '$' || c == '@' || c == '!' || c == '?' || c == '-' ||
         (c >= '0' && c <= '9');
}

/* Go's getShellName: returns the name length in *nlen and the bytes consumed after '$'. */
static size_t
shell_name(const char *s, const char **name, size_t *nlen)
{
  if (s[0] == '{') {
    if (s[1] && is_special(s[1]) && s[2] == '}') {
      *name = s + 1;
      *nlen = 1;
      return 3;
    }
    for (size_t i = 1; s[i]; i++)
      if (s[i] == '}') {
        if (i == 1) {
          *nlen = 0;
          return 2; /* "${}": bad syntax, eaten */
        }
        *name = s + 1;
        *nlen = i - 1;
        return i + 1;
      }
    *nlen = 0;
    return 1; /* "${" without "}": eaten */
  }
  if (is_special(s[0])) {
    *name = s;
    *nlen = 1;
    return 1;
  }
  size_t i = 0;
  while (s[i] && is_alnum_(s[i]))
    i++;
  *name = s;
  *nlen = i;
  return i;
}

char *
run_env_expand_text(const char *text, run_env_lookup lookup, void *data)
{
  /* %NAME% -> ${NAME} first (regexp %(\w+)%). */
  struct ci_buf pre = CI_BUF_INIT;
  for (const char *p = text; *p;) {
    if (*p == '%') {
      const char *q = p + 1;
      while (*q && is_alnum_(*q))
        q++;
      if (*q == '%' && q > p + 1) {
        ci_buf_adds(&pre, "${");
        ci_buf_add(&pre, p + 1, (size_t)(q - p - 1));
        ci_buf_addc(&pre, '}');
        p = q + 1;
        continue;
      }
    }
    ci_buf_addc(&pre, *p++);
  }
  const char *s = ci_buf_str(&pre);
  struct ci_buf out = CI_BUF_INIT;
  size_t len = strlen(s);
  for (size_t j = 0; j < len; j++) {
    if (s[j] != '$' || j + 1 >= len) {
      ci_buf_addc(&out, s[j]);
      continue;
    }
    const char *name = NULL;
    size_t nlen = 0;
    size_t w = shell_name(s + j + 1, &name, &nlen);
    if (nlen == 0 && w > 0) {
      /* invalid syntax: eaten */
    } else if (nlen == 0) {
      ci_buf_addc(&out, '$');
    } else {
      char *full = xstrndup(name, nlen);
      char *colon = strchr(full, ':');
      const char *dflt = "";
      if (colon) {
        *colon = '\0';
        dflt = colon + 1;
      }
      const char *v = lookup(full, data);
      ci_buf_adds(&out, v ? v : dflt);
      free(full);
    }
    j += w;
  }
  ci_buf_release(&pre);
  return ci_buf_take(&out);
}

struct two_envs {
  const struct cfg_env *first, *second;
};

static const char *
lookup_two(const char *name, void *data)
{
  const struct two_envs *t = data;
  const char *v = t->first ? cfg_env_get(t->first, name) : NULL;
  if (!v && t->second)
    v = cfg_env_get(t->second, name);
  return v;
}

char *
run_env_expand_with(const char *text, const struct cfg_env *env, const struct cfg_env *os_env)
{
  struct two_envs t = {env, os_env};
  return run_env_expand_text(text, lookup_two, &t);
}

static bool
self_reference(const char *v, const char *key)
{
  size_t kl = strlen(key);
  for (const char *p = v; (p = strpbrk(p, "$%")); p++) {
    if (p[0] == '$' && !strncmp(p + 1, key, kl))
      return true;
    if (p[0] == '$' && p[1] == '{' && !strncmp(p + 2, key, kl))
      return true;
    if (p[0] == '%' && !strncmp(p + 1, key, kl))
      return true;
  }
  return false;
}

void
run_env_expand_recursively(struct cfg_env *env, const struct cfg_env *os_env)
{
  for (int step = 0; step < 10; step++) {
    bool changed = false;
    for (size_t i = 0; i < env->n; i++) {
      if (!strpbrk(env->v[i].value, "$%"))
        continue;
      struct two_envs t = {os_env, env};
      char *e = run_env_expand_text(env->v[i].value, lookup_two, &t);
      if (self_reference(e, env->v[i].key)) {
        free(e);
        continue;
      }
      if (strcmp(e, env->v[i].value) != 0) {
        changed = true;
        free(env->v[i].value);
        env->v[i].value = e;
      } else {
        free(e);
      }
    }
    if (!changed)
      break;
  }
}

void
run_uuid(char out[37])
{
  unsigned char b[16];
  if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
    /* getrandom cannot fail for 16 bytes once the pool is initialised; be safe anyway */
    for (size_t i = 0; i < sizeof(b); i++)
      b[i] = (unsigned char)rand();
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

void
run_env_base(struct cfg_env *env, const char *build_uuid)
{
  cfg_env_add_static(env);
  char *id = xasprintf("CLI-%s", build_uuid);
  cfg_env_set(env, "CIRRUS_BUILD_ID", id);
  free(id);
}
