/* config/expand.c - parse-time environment expansion (upstream's
 * expander.ExpandEnvironmentVariables). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#define EXPAND_MAX_PASSES 10

/* Replace every non-overlapping occurrence of needle (nlen > 0 bytes) in *cur, left to
 * right, with value, as Go's strings.ReplaceAll does.  The result goes to *cur (tmp is
 * scratch space and is swapped with it).  Returns true if anything was replaced. */
static bool
replace_all(struct ci_buf *cur, struct ci_buf *tmp, const char *needle, size_t nlen,
            const char *value, size_t vlen)
{
  const char *s = cur->s;
  const char *hit = memmem(s, cur->len, needle, nlen);
  if (!hit)
    return false;
  const char *end = s + cur->len;
  ci_buf_reset(tmp);
  while (hit) {
    ci_buf_add(tmp, s, (size_t)(hit - s));
    ci_buf_add(tmp, value, vlen);
    s = hit + nlen;
    hit = memmem(s, (size_t)(end - s), needle, nlen);
  }
  ci_buf_add(tmp, s, (size_t)(end - s));
  struct ci_buf swap = *cur;
  *cur = *tmp;
  *tmp = swap;
  return true;
}

static bool
has_marker(const struct ci_buf *b)
{
  return memchr(b->s, '$', b->len) || memchr(b->s, '%', b->len);
}

char *
cfg_expand(const char *s, const struct cfg_env *env)
{
  /* Fast path: nothing can be replaced without a '$' or a '%'. */
  if (!env || env->n == 0 || !strpbrk(s, "$%"))
    return xstrdup(s);

  struct ci_buf cur = CI_BUF_INIT, tmp = CI_BUF_INIT, before = CI_BUF_INIT, needle = CI_BUF_INIT;
  ci_buf_adds(&cur, s);
  for (int pass = 0; pass < EXPAND_MAX_PASSES; pass++) {
    bool replaced = false;
    ci_buf_reset(&before);
    ci_buf_add(&before, cur.s, cur.len);
    /* Longest key first: env is sorted ascending by strcmp, Go sorts descending. */
    for (size_t k = env->n; k-- > 0;) {
      if (!has_marker(&cur))
        goto done; /* no later key (nor pass) can match anything any more */
      const char *key = env->v[k].key, *val = env->v[k].value;
      size_t klen = strlen(key), vlen = strlen(val);
      ci_buf_reset(&needle);
      ci_buf_addc(&needle, '$');
      ci_buf_add(&needle, key, klen);
      replaced |= replace_all(&cur, &tmp, needle.s, needle.len, val, vlen);
      if (memchr(cur.s, '$', cur.len)) {
        ci_buf_reset(&needle);
        ci_buf_adds(&needle, "${");
        ci_buf_add(&needle, key, klen);
        ci_buf_addc(&needle, '}');
        replaced |= replace_all(&cur, &tmp, needle.s, needle.len, val, vlen);
      }
      if (memchr(cur.s, '%', cur.len)) {
        ci_buf_reset(&needle);
        ci_buf_addc(&needle, '%');
        ci_buf_add(&needle, key, klen);
        ci_buf_addc(&needle, '%');
        replaced |= replace_all(&cur, &tmp, needle.s, needle.len, val, vlen);
      }
    }
    /* Don't go on when a pass changed nothing (upstream compares the strings). */
    if (!replaced || (cur.len == before.len && memcmp(cur.s, before.s, cur.len) == 0))
      break;
  }
done:
  ci_buf_release(&tmp);
  ci_buf_release(&before);
  ci_buf_release(&needle);
  return ci_buf_take(&cur);
}
