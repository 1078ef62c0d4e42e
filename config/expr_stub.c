/* TEMPORARY until the expression layer lands: minimal expansion and booleans. */
#include "expr.h"

#include <stdlib.h>
#include <string.h>

char *
cfg_expand(const char *s, const struct cfg_env *env)
{
  char *cur = xstrdup(s);
  for (int pass = 0; pass < 10; pass++) {
    char *before = xstrdup(cur);
    for (size_t k = env ? env->n : 0; k-- > 0;) {
      const char *key = env->v[k].key, *val = env->v[k].value;
      char *pats[3] = {xasprintf("$%s", key), xasprintf("${%s}", key), xasprintf("%%%s%%", key)};
      for (int p = 0; p < 3; p++) {
        struct ci_buf b = CI_BUF_INIT;
        const char *q = cur, *hit;
        size_t pl = strlen(pats[p]);
        while ((hit = strstr(q, pats[p]))) {
          ci_buf_add(&b, q, (size_t)(hit - q));
          ci_buf_adds(&b, val);
          q = hit + pl;
        }
        ci_buf_adds(&b, q);
        free(cur);
        cur = ci_buf_take(&b);
        free(pats[p]);
      }
    }
    bool same = strcmp(before, cur) == 0;
    free(before);
    if (same)
      break;
  }
  return cur;
}

int
cfg__bool_eval(const char *expr, const struct cfg_env *env, const struct ci_strv *affected,
               bool *out, char **errmsg)
{
  (void)env;
  (void)affected;
  if (!strcmp(expr, "true")) {
    *out = true;
    return 0;
  }
  if (!strcmp(expr, "false")) {
    *out = false;
    return 0;
  }
  *errmsg = xasprintf("expressions are not implemented yet: '%s'", expr);
  return -1;
}

bool
cfg__glob_match(const char *pattern, const char *path)
{
  return strcmp(pattern, path) == 0;
}
