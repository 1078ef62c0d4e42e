/* backends/runtime/idmap.c - which ids a container gets, and writing its uid/gid maps. */
#include "runtime.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int
parse_u32(const char *s, size_t len, uint32_t *out)
{
  if (len == 0 || len > 10)
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > UINT32_MAX)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

int
rt_subid_find(const char *text, const char *user, uid_t uid, uint32_t *start, uint32_t *count,
              struct ci_error **err)
{
  char uidstr[16];
  snprintf(uidstr, sizeof uidstr, "%u", (unsigned)uid);
  unsigned lineno = 0;
  for (const char *line = text; line && *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    lineno++;
    const char *c1 = memchr(line, ':', len);
    if (len && line[0] != '#' && c1) {
      size_t nlen = (size_t)(c1 - line);
      bool match = (user && strlen(user) == nlen && !memcmp(line, user, nlen)) ||
                   (strlen(uidstr) == nlen && !memcmp(line, uidstr, nlen));
      if (match) {
        const char *rest = c1 + 1;
        size_t rlen = len - nlen - 1;
        const char *c2 = memchr(rest, ':', rlen);
        uint32_t s, n;
        if (!c2 || parse_u32(rest, (size_t)(c2 - rest), &s) < 0 ||
            parse_u32(c2 + 1, rlen - (size_t)(c2 - rest) - 1, &n) < 0)
          return ci_error_make(err, CI_EFAIL, "line %u: malformed subordinate id range '%.*s'",
                               lineno, (int)len, line);
        if (n > 0) {
          *start = s;
          *count = n;
          return 1;
        }
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  return 0;
}

/* Find the range for user/uid in the file at path: 1 found, 0 not (or no file). */
static int
subid_lookup(const char *path, const char *user, uid_t uid, uint32_t *start, uint32_t *count,
             struct ci_error **err)
{
  cleanup_free char *text = NULL;
  size_t len;
  struct ci_error *e = NULL;
  if (ci_read_file(path, 1 << 20, &text, &len, &e) < 0) {
    int code = e->code;
    ci_error_free(&e);
    if (code == -ENOENT)
      return 0;
    return ci_error_make(err, code, "cannot read %s", path);
  }
  int r = rt_subid_find(text, user, uid, start, count, err);
  if (r < 0)
    return ci_error_prefix(err, "%s", path);
  return r;
}

uint32_t
rt_root_id_base(const char *subuid_path)
{
  uint32_t start, count;
  struct ci_error *e = NULL;
  int r = subid_lookup(subuid_path ? subuid_path : "/etc/subuid", "root", 0, &start, &count, &e);
  ci_error_free(&e);
  if (r > 0 && count >= RT_ID_COUNT)
    return start;
  return RT_ROOT_ID_BASE;
}

static bool
have_exe(const char *path)
{
  return access(path, X_OK) == 0;
}

int
rt_idmap_detect(struct rt_idmap *m, const char *subuid_path, const char *subgid_path,
                struct ci_error **err)
{
  memset(m, 0, sizeof *m);
  uid_t uid = geteuid();
  gid_t gid = getegid();
  struct passwd *pw = getpwuid(uid);
  m->user = pw ? xstrdup(pw->pw_name) : xasprintf("%u", (unsigned)uid);
  if (!subuid_path)
    subuid_path = "/etc/subuid";
  if (!subgid_path)
    subgid_path = "/etc/subgid";
  if (uid == 0) {
    uint32_t ubase = rt_root_id_base(subuid_path), gbase = rt_root_id_base(subgid_path);
    m->mode = RT_IDMAP_ROOT;
    m->uid[0] = (struct rt_idmap_range){0, ubase, RT_ID_COUNT};
    m->gid[0] = (struct rt_idmap_range){0, gbase, RT_ID_COUNT};
    m->n_uid = m->n_gid = 1;
    return 0;
  }
  uint32_t us = 0, uc = 0, gs = 0, gc = 0;
  int ru = subid_lookup(subuid_path, m->user, uid, &us, &uc, err);
  if (ru < 0)
    goto fail;
  int rg = subid_lookup(subgid_path, m->user, uid, &gs, &gc, err);
  if (rg < 0)
    goto fail;
  m->uid[0] = (struct rt_idmap_range){0, uid, 1};
  m->gid[0] = (struct rt_idmap_range){0, gid, 1};
  m->n_uid = m->n_gid = 1;
  if (ru > 0 && rg > 0 && have_exe("/usr/bin/newuidmap") && have_exe("/usr/bin/newgidmap")) {
    m->mode = RT_IDMAP_SUBID;
    m->uid[1] = (struct rt_idmap_range){1, us, uc < RT_ID_COUNT - 1 ? uc : RT_ID_COUNT - 1};
    m->gid[1] = (struct rt_idmap_range){1, gs, gc < RT_ID_COUNT - 1 ? gc : RT_ID_COUNT - 1};
    m->n_uid = m->n_gid = 2;
    return 0;
  }
  m->mode = RT_IDMAP_SINGLE;
  if (ru > 0 && rg > 0)
    m->warning = xasprintf("newuidmap/newgidmap not found (package uidmap): steps run as root "
                           "only (chown, apt-get may fail)");
  else
    m->warning = xasprintf("no subordinate ids for %s in %s: steps run as root only (chown, "
                           "apt-get may fail)",
                           m->user, ru > 0 ? subgid_path : subuid_path);
  return 0;
fail:
  rt_idmap_release(m);
  return -1;
}

void
rt_idmap_release(struct rt_idmap *m)
{
  free(m->user);
  free(m->warning);
  memset(m, 0, sizeof *m);
}

uid_t
rt_idmap_root_uid(const struct rt_idmap *m)
{
  return m->uid[0].outside;
}

gid_t
rt_idmap_root_gid(const struct rt_idmap *m)
{
  return m->gid[0].outside;
}

static int
write_file(const char *path, const char *text, struct ci_error **err)
{
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open %s: %s", path, strerror(errno));
  size_t len = strlen(text);
  ssize_t n = write(fd, text, len);
  int e = errno;
  close(fd);
  if (n != (ssize_t)len)
    return ci_error_make(err, -e, "cannot write %s: %s", path, strerror(e));
  return 0;
}

/* Run newuidmap or newgidmap for pid with the ranges; returns the child pid. */
static pid_t
spawn_newidmap(const char *prog, pid_t pid, const struct rt_idmap_range *r, unsigned n)
{
  char args[2 + 3 * 2][16];
  char *argv[2 + 3 * 2 + 1];
  unsigned k = 0;
  argv[k++] = (char *)prog;
  snprintf(args[0], sizeof args[0], "%d", (int)pid);
  argv[k++] = args[0];
  for (unsigned i = 0; i < n && i < 2; i++) {
    snprintf(args[1 + 3 * i], 16, "%u", r[i].inside);
    snprintf(args[2 + 3 * i], 16, "%u", r[i].outside);
    snprintf(args[3 + 3 * i], 16, "%u", r[i].count);
    argv[k++] = args[1 + 3 * i];
    argv[k++] = args[2 + 3 * i];
    argv[k++] = args[3 + 3 * i];
  }
  argv[k] = NULL;
  pid_t c = fork();
  if (c == 0) {
    char *envp[] = {NULL};
    execve(prog, argv, envp);
    _exit(127);
  }
  return c;
}

static int
wait_newidmap(const char *prog, pid_t c, struct ci_error **err)
{
  int st;
  while (waitpid(c, &st, 0) < 0)
    if (errno != EINTR)
      return ci_error_make(err, -errno, "waiting for %s: %s", prog, strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return ci_error_make(err, CI_EFAIL, "%s failed (status %d): check /etc/subuid and /etc/subgid",
                         prog, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 0;
}

int
rt_idmap_apply(const struct rt_idmap *m, pid_t pid, struct ci_error **err)
{
  char path[64], buf[256];
  if (m->mode == RT_IDMAP_SUBID) {
    /* Both helpers at once: each is a setuid fork+exec (~1 ms). */
    pid_t a = spawn_newidmap("/usr/bin/newuidmap", pid, m->uid, m->n_uid);
    if (a < 0)
      return ci_error_make(err, -errno, "cannot fork: %s", strerror(errno));
    pid_t b = spawn_newidmap("/usr/bin/newgidmap", pid, m->gid, m->n_gid);
    if (b < 0) {
      int e = errno;
      waitpid(a, NULL, 0);
      return ci_error_make(err, -e, "cannot fork: %s", strerror(e));
    }
    int ra = wait_newidmap("newuidmap", a, err);
    struct ci_error *e2 = NULL;
    int rb = wait_newidmap("newgidmap", b, ra < 0 ? &e2 : err);
    ci_error_free(&e2);
    return ra < 0 ? ra : rb;
  }
  if (m->mode == RT_IDMAP_SINGLE) {
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    if (write_file(path, "deny", err) < 0)
      return -1;
  }
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
  size_t off = 0;
  for (unsigned i = 0; i < m->n_uid; i++)
    off += (size_t)snprintf(buf + off, sizeof buf - off, "%u %u %u\n", m->uid[i].inside,
                            m->uid[i].outside, m->uid[i].count);
  if (write_file(path, buf, err) < 0)
    return -1;
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
  off = 0;
  for (unsigned i = 0; i < m->n_gid; i++)
    off += (size_t)snprintf(buf + off, sizeof buf - off, "%u %u %u\n", m->gid[i].inside,
                            m->gid[i].outside, m->gid[i].count);
  return write_file(path, buf, err);
}
