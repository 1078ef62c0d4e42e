/* backends/build/context.c - the build context tar: reading the Dockerfile, COPY/ADD layers.
 *
 * The context is a tar of the project (the scheduler makes it).  A COPY layer is a new tar whose
 * entries are the matched context entries renamed to their destination, owned by 0:0 (or
 * --chown), with their modes and times: the same sources give the same layer, byte for byte,
 * and so the same diff id (the store keeps one copy).  ADD also extracts local tar archives
 * (plain or compressed) into the destination. */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "./a/b/" -> "a/b"; "." and "/" -> "". */
static char *
norm(const char *p)
{
  while (p[0] == '.' && p[1] == '/')
    p += 2;
  while (*p == '/')
    p++;
  if (!strcmp(p, "."))
    p = "";
  char *s = xstrdup(p);
  size_t n = strlen(s);
  while (n && s[n - 1] == '/')
    s[--n] = '\0';
  while (n >= 2 && s[n - 1] == '.' && s[n - 2] == '/')
    s[n -= 2] = '\0';
  return s;
}

static struct archive *
open_tar(const char *path, struct ci_error **err)
{
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
    ci_error_make(err, CI_EFAIL, "cannot read the build context %s: %s", path,
                  archive_error_string(a));
    archive_read_free(a);
    return NULL;
  }
  return a;
}

int
bld__context_read(const char *context_tar, const char *path, size_t max, char **out,
                  struct ci_error **err)
{
  struct archive *a = open_tar(context_tar, err);
  if (!a)
    return -1;
  cleanup_free char *want = norm(path);
  struct archive_entry *e;
  int ret = -ENOENT;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    cleanup_free char *name = norm(archive_entry_pathname(e));
    if (strcmp(name, want) || archive_entry_filetype(e) != AE_IFREG)
      continue;
    struct ci_buf b = CI_BUF_INIT;
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0 && b.len <= max)
      ci_buf_add(&b, buf, (size_t)n);
    if (n < 0) {
      ret = ci_error_make(err, CI_EFAIL, "cannot read %s from the build context: %s", path,
                          archive_error_string(a));
    } else if (b.len > max) {
      ret = ci_error_make(err, -EFBIG, "%s is larger than %zu bytes", path, max);
    } else {
      *out = ci_buf_take(&b);
      ret = 0;
    }
    ci_buf_release(&b);
    break;
  }
  archive_read_free(a);
  if (ret == -ENOENT)
    ci_error_make(err, -ENOENT, "%s is not in the build context", path);
  return ret;
}

struct match {
  char *root; /* normalized context path ("" = the whole context) */
  bool dir;
};

struct copy_ctx {
  const struct bld__copy *c;
  struct match *m;
  size_t n;
  char *dest;    /* normalized, without the leading '/' */
  bool dest_dir; /* files go below it */
  uid_t uid;
  gid_t gid;
  struct archive *w;
};

static bool
has_glob(const char *s)
{
  return strpbrk(s, "*?[") != NULL;
}

static char *
join(const char *a, const char *b)
{
  if (!*a)
    return xstrdup(b);
  if (!*b)
    return xstrdup(a);
  return xasprintf("%s/%s", a, b);
}

/* Where a context entry goes, or NULL; *m_out is the match. */
static char *
map_name(struct copy_ctx *x, const char *name, const struct match **m_out)
{
  for (size_t i = 0; i < x->n; i++) {
    const struct match *m = &x->m[i];
    size_t rl = strlen(m->root);
    *m_out = m;
    if (m->dir) {
      if (!strcmp(name, m->root))
        return NULL; /* the directory itself: its contents go to dest */
      if (!rl)
        return join(x->dest, name);
      if (!strncmp(name, m->root, rl) && name[rl] == '/')
        return join(x->dest, name + rl + 1);
    } else if (!strcmp(name, m->root)) {
      if (!x->dest_dir)
        return xstrdup(x->dest);
      const char *base = strrchr(name, '/');
      return join(x->dest, base ? base + 1 : name);
    }
  }
  return NULL;
}

static int
write_entry(struct copy_ctx *x, struct archive_entry *e, const char *name, struct archive *src,
            struct ci_error **err)
{
  struct archive_entry *o = archive_entry_clone(e);
  archive_entry_set_pathname(o, name);
  archive_entry_set_uid(o, x->uid);
  archive_entry_set_gid(o, x->gid);
  archive_entry_set_uname(o, NULL);
  archive_entry_set_gname(o, NULL);
  archive_entry_set_hardlink(o, NULL);
  archive_entry_xattr_clear(o);
  int ret = 0;
  if (archive_write_header(x->w, o) < ARCHIVE_WARN)
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(x->w));
  if (ret == 0 && archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(src, buf, sizeof buf)) > 0)
      if (archive_write_data(x->w, buf, (size_t)n) < 0) {
        ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(x->w));
        break;
      }
    if (ret == 0 && n < 0)
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(src));
  }
  archive_entry_free(o);
  return ret;
}

/* ADD: the entry's data, if it is a tar archive, extracted below dest.  Returns 1 when it was. */
static int
add_archive(struct copy_ctx *x, struct archive *src, struct archive_entry *e, struct ci_error **err)
{
  la_int64_t size = archive_entry_size(e);
  if (size <= 0 || size > ((la_int64_t)1 << 30))
    return 0;
  char *data = xmalloc((size_t)size);
  la_ssize_t got = 0, n;
  while (got < size && (n = archive_read_data(src, data + got, (size_t)(size - got))) > 0)
    got += n;
  int ret = 0;
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  struct archive_entry *ie;
  if (got == size && archive_read_open_memory(a, data, (size_t)size) == ARCHIVE_OK &&
      archive_read_next_header(a, &ie) == ARCHIVE_OK) {
    ret = 1;
    do {
      cleanup_free char *in = norm(archive_entry_pathname(ie));
      if (!*in || strstr(in, "..") == in || strstr(in, "/../"))
        continue;
      cleanup_free char *name = join(x->dest, in);
      struct archive_entry *o = archive_entry_clone(ie);
      archive_entry_set_pathname(o, name);
      archive_entry_set_uname(o, NULL);
      archive_entry_set_gname(o, NULL);
      const char *hl = archive_entry_hardlink(ie);
      cleanup_free char *hlname = NULL;
      if (hl) {
        cleanup_free char *h = norm(hl);
        hlname = join(x->dest, h);
        archive_entry_set_hardlink(o, hlname);
      }
      int r = archive_write_header(x->w, o);
      archive_entry_free(o);
      if (r < ARCHIVE_WARN) {
        ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(x->w));
        break;
      }
      char buf[65536];
      while (!hl && (n = archive_read_data(a, buf, sizeof buf)) > 0)
        archive_write_data(x->w, buf, (size_t)n);
    } while (archive_read_next_header(a, &ie) == ARCHIVE_OK);
  } else {
    ret = -2; /* not an archive: the caller copies it as a file (data is read already) */
  }
  archive_read_free(a);
  if (ret == -2) {
    /* Plain file: write it from the buffer. */
    ret = 0;
    const struct match *m;
    cleanup_free char *nm = norm(archive_entry_pathname(e));
    cleanup_free char *name = map_name(x, nm, &m);
    if (name) {
      struct archive_entry *o = archive_entry_clone(e);
      archive_entry_set_pathname(o, name);
      archive_entry_set_uid(o, x->uid);
      archive_entry_set_gid(o, x->gid);
      archive_entry_set_uname(o, NULL);
      archive_entry_set_gname(o, NULL);
      if (archive_write_header(x->w, o) < ARCHIVE_WARN ||
          archive_write_data(x->w, data, (size_t)size) < 0)
        ret = ci_error_make(err, CI_EFAIL, "%s: %s", name, archive_error_string(x->w));
      archive_entry_free(o);
    }
    ret = ret < 0 ? ret : 1;
  }
  free(data);
  return ret;
}

static int
parse_chown(const char *s, uid_t *uid, gid_t *gid, struct ci_error **err)
{
  char *end;
  unsigned long u = strtoul(s, &end, 10);
  unsigned long g = u;
  if (end != s && *end == ':') {
    const char *gs = end + 1;
    g = strtoul(gs, &end, 10);
    if (end == gs)
      end = (char *)s;
  }
  if (end == s || *end)
    return ci_error_make(err, CI_EUSAGE, "--chown=%s: only numeric ids are supported", s);
  *uid = (uid_t)u;
  *gid = (gid_t)g;
  return 0;
}

int
bld__copy_layer(const struct bld__copy *c, const char *tar_path, struct ci_error **err)
{
  struct copy_ctx x = {.c = c};
  int ret = 0;
  if (c->chown && (ret = parse_chown(c->chown, &x.uid, &x.gid, err)) < 0)
    return ret;
  /* Pass 1: what is in the context. */
  struct ci_strv names = CI_STRV_INIT;
  struct ci_strv dirs = CI_STRV_INIT;
  struct archive *a = open_tar(c->context_tar, err);
  if (!a)
    return -1;
  struct archive_entry *e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char *n = norm(archive_entry_pathname(e));
    if (archive_entry_filetype(e) == AE_IFDIR)
      ci_strv_push(&dirs, n);
    ci_strv_push_take(&names, n);
  }
  archive_read_free(a);
  size_t alloc = 0;
  for (size_t i = 0; ret == 0 && i < c->n_sources; i++) {
    cleanup_free char *src = norm(c->sources[i]);
    if (!strncmp(src, "..", 2) && (src[2] == '/' || !src[2])) {
      ret = ci_error_make(err, CI_EUSAGE, "'%s' is outside of the build context", c->sources[i]);
      break;
    }
    size_t before = x.n;
    bool glob = has_glob(src);
    bool implicit_dir = false;
    for (size_t k = 0; k < names.n; k++) {
      const char *nm = names.v[k];
      bool hit = glob ? fnmatch(src, nm, FNM_PATHNAME) == 0 : !strcmp(nm, src);
      if (!glob && !hit && (!*src || (!strncmp(nm, src, strlen(src)) && nm[strlen(src)] == '/')))
        implicit_dir = true;
      if (!hit)
        continue;
      ci_grow(&x.m, &alloc, x.n + 1, sizeof *x.m);
      x.m[x.n].root = xstrdup(nm);
      x.m[x.n].dir = ci_strv_contains(&dirs, nm);
      x.n++;
    }
    if (x.n == before && implicit_dir) {
      ci_grow(&x.m, &alloc, x.n + 1, sizeof *x.m);
      x.m[x.n].root = xstrdup(src);
      x.m[x.n].dir = true;
      x.n++;
    }
    if (x.n == before)
      ret = ci_error_make(err, -ENOENT, "'%s' is not in the build context", c->sources[i]);
  }
  ci_strv_release(&names);
  ci_strv_release(&dirs);
  size_t dl = strlen(c->dest);
  x.dest_dir = (dl && c->dest[dl - 1] == '/') || x.n > 1 || c->n_sources > 1;
  cleanup_free char *abs =
      c->dest[0] == '/' ? xstrdup(c->dest) : xasprintf("%s/%s", c->workdir, c->dest);
  x.dest = norm(abs);
  if (ret == 0 && !*x.dest && !x.dest_dir)
    x.dest_dir = true; /* "/" */
  /* Pass 2: the layer. */
  if (ret == 0) {
    a = open_tar(c->context_tar, err);
    if (!a)
      ret = -1;
  } else {
    a = NULL;
  }
  if (ret == 0) {
    x.w = archive_write_new();
    archive_write_set_format_pax_restricted(x.w);
    archive_write_set_bytes_in_last_block(x.w, 1);
    if (archive_write_open_filename(x.w, tar_path) != ARCHIVE_OK)
      ret =
          ci_error_make(err, CI_EFAIL, "cannot write %s: %s", tar_path, archive_error_string(x.w));
    while (ret == 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
      cleanup_free char *nm = norm(archive_entry_pathname(e));
      const struct match *m = NULL;
      cleanup_free char *out = map_name(&x, nm, &m);
      if (!out || !*out)
        continue;
      mode_t t = archive_entry_filetype(e);
      if (t != AE_IFREG && t != AE_IFDIR && t != AE_IFLNK)
        continue;
      if (archive_entry_hardlink(e) && t == AE_IFREG && archive_entry_size(e) == 0)
        continue; /* a hard link in the context: its data is in the first copy */
      if (c->extract_archives && t == AE_IFREG && !m->dir) {
        int r = add_archive(&x, a, e, err);
        if (r < 0)
          ret = r;
        if (r != 0)
          continue;
      }
      ret = write_entry(&x, e, out, a, err);
    }
    if (ret == 0 && archive_write_close(x.w) != ARCHIVE_OK)
      ret =
          ci_error_make(err, CI_EFAIL, "cannot write %s: %s", tar_path, archive_error_string(x.w));
    archive_write_free(x.w);
  }
  if (a)
    archive_read_free(a);
  for (size_t i = 0; i < x.n; i++)
    free(x.m[i].root);
  free(x.m);
  free(x.dest);
  return ret;
}
