/* backends/runtime/user.c - resolve "user[:group]" through the container's passwd and group. */
#include "runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool
parse_id(const char *s, size_t len, uint32_t *out)
{
  if (len == 0 || len > 10)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v >= UINT32_MAX)
    return false;
  *out = (uint32_t)v;
  return true;
}

/* Split line (len bytes) at ':' into at most n fields (pointers and lengths). */
static unsigned
split_fields(const char *line, size_t len, const char **f, size_t *fl, unsigned n)
{
  unsigned k = 0;
  const char *p = line, *end = line + len;
  while (k < n) {
    const char *c = memchr(p, ':', (size_t)(end - p));
    f[k] = p;
    fl[k] = c ? (size_t)(c - p) : (size_t)(end - p);
    k++;
    if (!c)
      break;
    p = c + 1;
  }
  return k;
}

static bool
field_eq(const char *f, size_t fl, const char *s, size_t sl)
{
  return fl == sl && !memcmp(f, s, sl);
}

/* Iterate the lines of text: for each, fields split on ':'.  Calls fn until it returns true. */
#define FOREACH_LINE(text, line, len)                                                              \
  for (const char *line = (text), *nl_ = NULL; line && *line;                                     \
       line = (nl_ = strchr(line, '\n')) ? nl_ + 1 : NULL)                                         \
    for (size_t len = (nl_ = strchr(line, '\n')) ? (size_t)(nl_ - line) : strlen(line), once_ = 1; \
         once_; once_ = 0)

/* passwd: name:x:uid:gid:... -> found by name (or uid when by_uid). */
static bool
passwd_find(const char *passwd, const char *name, size_t nlen, bool by_uid, uint32_t want_uid,
            uint32_t *uid, uint32_t *gid, char **pname)
{
  if (!passwd)
    return false;
  FOREACH_LINE(passwd, line, len)
  {
    const char *f[7];
    size_t fl[7];
    if (split_fields(line, len, f, fl, 7) < 4)
      continue;
    uint32_t u, g;
    if (!parse_id(f[2], fl[2], &u) || !parse_id(f[3], fl[3], &g))
      continue;
    if (by_uid ? u == want_uid : field_eq(f[0], fl[0], name, nlen)) {
      *uid = u;
      *gid = g;
      if (pname)
        *pname = xstrndup(f[0], fl[0]);
      return true;
    }
  }
  return false;
}

static bool
group_find(const char *group, const char *name, size_t nlen, uint32_t *gid)
{
  if (!group)
    return false;
  FOREACH_LINE(group, line, len)
  {
    const char *f[4];
    size_t fl[4];
    if (split_fields(line, len, f, fl, 4) < 3)
      continue;
    uint32_t g;
    if (field_eq(f[0], fl[0], name, nlen) && parse_id(f[2], fl[2], &g)) {
      *gid = g;
      return true;
    }
  }
  return false;
}

/* Supplementary groups: every group whose member list names the user. */
static void
group_members(const char *group, const char *user, struct rt_user *u)
{
  if (!group || !user)
    return;
  size_t ulen = strlen(user);
  size_t alloc = 0;
  FOREACH_LINE(group, line, len)
  {
    const char *f[4];
    size_t fl[4];
    if (split_fields(line, len, f, fl, 4) < 4)
      continue;
    uint32_t g;
    if (!parse_id(f[2], fl[2], &g))
      continue;
    const char *m = f[3], *end = f[3] + fl[3];
    while (m < end) {
      const char *c = memchr(m, ',', (size_t)(end - m));
      size_t ml = c ? (size_t)(c - m) : (size_t)(end - m);
      if (field_eq(m, ml, user, ulen)) {
        bool dup = g == u->gid;
        for (size_t i = 0; i < u->n_groups; i++)
          dup = dup || u->groups[i] == g;
        if (!dup) {
          CI_GROW(u->groups, alloc, u->n_groups + 1);
          u->groups[u->n_groups++] = g;
        }
        break;
      }
      m = c ? c + 1 : end;
    }
  }
}

int
rt_user_resolve(const char *spec, const char *passwd, const char *group, struct rt_user *out,
                struct ci_error **err)
{
  struct rt_user u = {0};
  if (!spec || !*spec)
    spec = "root";
  const char *colon = strchr(spec, ':');
  size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
  if (ulen == 0)
    return ci_error_make(err, CI_EUSAGE, "invalid user '%s'", spec);
  uint32_t uid = 0, gid = 0;
  cleanup_free char *pname = NULL;
  bool have_gid = false;
  if (parse_id(spec, ulen, &uid)) {
    uint32_t g;
    if (passwd_find(passwd, NULL, 0, true, uid, &uid, &g, &pname)) {
      gid = g;
      have_gid = true;
    }
  } else if (passwd_find(passwd, spec, ulen, false, 0, &uid, &gid, &pname)) {
    have_gid = true;
  } else {
    return ci_error_make(err, -ENOENT, "unable to find user %.*s: no matching entries in passwd file",
                         (int)ulen, spec);
  }
  if (colon) {
    const char *g = colon + 1;
    if (!*g)
      return ci_error_make(err, CI_EUSAGE, "invalid user '%s'", spec);
    if (!parse_id(g, strlen(g), &gid) && !group_find(group, g, strlen(g), &gid))
      return ci_error_make(err, -ENOENT,
                           "unable to find group %s: no matching entries in group file", g);
    have_gid = true;
  }
  if (!have_gid)
    gid = 0;
  u.uid = uid;
  u.gid = gid;
  if (!colon)
    group_members(group, pname, &u);
  *out = u;
  return 0;
}

void
rt_user_release(struct rt_user *u)
{
  free(u->groups);
  memset(u, 0, sizeof *u);
}
