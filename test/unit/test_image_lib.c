/* test/unit/test_image_lib.c - helpers shared by the ci_image tests; #included (not linked) by
 * each test_image*.c so every test executable stays one translation unit.
 *
 * Layer tarballs are generated here with libarchive, so no binary fixture is committed. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/image/internal.h"

#define TL_UNUSED __attribute__((unused))

/* ------------------------------------------------------------ tar builder */

struct tb {
  struct archive *a;
  struct ci_buf out;
  time_t mtime;
};

static la_ssize_t
tb_write_cb(struct archive *a, void *data, const void *buf, size_t len)
{
  (void)a;
  ci_buf_add(&((struct tb *)data)->out, buf, len);
  return (la_ssize_t)len;
}

static TL_UNUSED void
tb_init(struct tb *t)
{
  memset(t, 0, sizeof(*t));
  ci_buf_init(&t->out);
  t->mtime = 1700000000;
  t->a = archive_write_new();
  assert_non_null(t->a);
  assert_int_equal(archive_write_set_format_pax_restricted(t->a), ARCHIVE_OK);
  archive_write_set_bytes_in_last_block(t->a, 1);
  assert_int_equal(archive_write_open(t->a, t, NULL, tb_write_cb, NULL), ARCHIVE_OK);
}

static struct archive_entry *
tb_entry(struct tb *t, const char *path, mode_t type, mode_t perm)
{
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, path);
  archive_entry_set_filetype(e, type);
  archive_entry_set_perm(e, perm);
  archive_entry_set_mtime(e, t->mtime, 0);
  archive_entry_set_uid(e, 0);
  archive_entry_set_gid(e, 0);
  return e;
}

static void
tb_put(struct tb *t, struct archive_entry *e, const void *data, size_t len)
{
  int r = archive_write_header(t->a, e);
  if (r != ARCHIVE_OK)
    fail_msg("archive_write_header(%s): %s", archive_entry_pathname(e), archive_error_string(t->a));
  if (len)
    assert_int_equal(archive_write_data(t->a, data, len), (la_ssize_t)len);
  archive_entry_free(e);
}

static TL_UNUSED void
tb_file(struct tb *t, const char *path, mode_t perm, const char *content)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFREG, perm);
  archive_entry_set_size(e, (la_int64_t)strlen(content));
  tb_put(t, e, content, strlen(content));
}

static TL_UNUSED void
tb_file_xattr(struct tb *t, const char *path, const char *content, const char *xname,
              const char *xval)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFREG, 0644);
  archive_entry_set_size(e, (la_int64_t)strlen(content));
  archive_entry_xattr_add_entry(e, xname, xval, strlen(xval));
  tb_put(t, e, content, strlen(content));
}

static TL_UNUSED void
tb_file_owned(struct tb *t, const char *path, mode_t perm, const char *content, int uid, int gid)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFREG, perm);
  archive_entry_set_size(e, (la_int64_t)strlen(content));
  archive_entry_set_uid(e, uid);
  archive_entry_set_gid(e, gid);
  tb_put(t, e, content, strlen(content));
}

static TL_UNUSED void
tb_big_file(struct tb *t, const char *path, size_t size, unsigned seed)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFREG, 0644);
  archive_entry_set_size(e, (la_int64_t)size);
  assert_int_equal(archive_write_header(t->a, e), ARCHIVE_OK);
  char buf[65536];
  uint32_t x = seed * 2654435761u + 1;
  for (size_t done = 0; done < size;) {
    size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      buf[i] = (char)(x & 0xff);
    }
    assert_int_equal(archive_write_data(t->a, buf, n), (la_ssize_t)n);
    done += n;
  }
  archive_entry_free(e);
}

static TL_UNUSED void
tb_dir(struct tb *t, const char *path, mode_t perm)
{
  tb_put(t, tb_entry(t, path, AE_IFDIR, perm), NULL, 0);
}

static TL_UNUSED void
tb_symlink(struct tb *t, const char *path, const char *target)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFLNK, 0777);
  archive_entry_set_symlink(e, target);
  tb_put(t, e, NULL, 0);
}

static TL_UNUSED void
tb_hardlink(struct tb *t, const char *path, const char *target)
{
  struct archive_entry *e = tb_entry(t, path, AE_IFREG, 0644);
  archive_entry_set_hardlink(e, target);
  archive_entry_set_size(e, 0);
  tb_put(t, e, NULL, 0);
}

static TL_UNUSED void
tb_node(struct tb *t, const char *path, mode_t type, unsigned maj, unsigned min)
{
  struct archive_entry *e = tb_entry(t, path, type, 0666);
  archive_entry_set_rdev(e, makedev(maj, min));
  tb_put(t, e, NULL, 0);
}

/* The uncompressed tar; *len gets its size.  Owned by the caller. */
static TL_UNUSED char *
tb_finish(struct tb *t, size_t *len)
{
  assert_int_equal(archive_write_close(t->a), ARCHIVE_OK);
  archive_write_free(t->a);
  *len = t->out.len;
  return ci_buf_take(&t->out);
}

struct cbuf {
  struct ci_buf b;
};

static la_ssize_t
cbuf_write(struct archive *a, void *data, const void *buf, size_t len)
{
  (void)a;
  ci_buf_add(&((struct cbuf *)data)->b, buf, len);
  return (la_ssize_t)len;
}

/* Compress data with filter ("gzip", "zstd", "bzip2", "xz"). */
static TL_UNUSED char *
tl_compress(const char *data, size_t len, const char *filter, size_t *outlen)
{
  struct cbuf c;
  ci_buf_init(&c.b);
  struct archive *a = archive_write_new();
  assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
  assert_int_equal(archive_write_add_filter_by_name(a, filter), ARCHIVE_OK);
  archive_write_set_bytes_in_last_block(a, 1);
  assert_int_equal(archive_write_open(a, &c, NULL, cbuf_write, NULL), ARCHIVE_OK);
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, (la_int64_t)len);
  assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
  assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
  archive_entry_free(e);
  assert_int_equal(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  *outlen = c.b.len;
  return ci_buf_take(&c.b);
}

/* ------------------------------------------------------------ reading memory */

struct memrd {
  const char *p;
  size_t len, off;
  size_t chunk; /* max bytes per read (0 = any) */
};

static TL_UNUSED ssize_t
memrd_read(void *ctx, void *buf, size_t n, struct ci_error **err)
{
  (void)err;
  struct memrd *m = ctx;
  size_t left = m->len - m->off;
  if (m->chunk && n > m->chunk)
    n = m->chunk;
  if (n > left)
    n = left;
  memcpy(buf, m->p + m->off, n);
  m->off += n;
  return (ssize_t)n;
}

/* ------------------------------------------------------------ files and dirs */

static TL_UNUSED char *
tl_mkdtemp(const char *tag)
{
  const char *base = getenv("TMPDIR");
  char *p = xasprintf("%s/ci-image-%s-XXXXXX", base && *base ? base : "/tmp", tag);
  assert_non_null(mkdtemp(p));
  return p;
}

static TL_UNUSED void
tl_write(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    fail_msg("cannot create %s: %s", path, strerror(errno));
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static TL_UNUSED char *
tl_read(const char *path)
{
  char *buf = NULL;
  size_t len = 0;
  struct ci_error *err = NULL;
  if (ci_read_file(path, 1 << 26, &buf, &len, &err) < 0) {
    ci_error_free(&err);
    return NULL;
  }
  return buf;
}

static TL_UNUSED void
tl_rm_rf(const char *path)
{
  struct ci_error *err = NULL;
  if (img__rm_rf(path, &err) < 0) {
    fprintf(stderr, "cleanup of %s: %s\n", path, err->msg);
    ci_error_free(&err);
  }
}

/* A sorted listing of every path below dir (relative, with a type letter), as one string. */
static void
tl_walk(const char *dir, const char *rel, struct ci_strv *out)
{
  cleanup_free char *path = *rel ? xasprintf("%s/%s", dir, rel) : xstrdup(dir);
  DIR *d = opendir(path);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    cleanup_free char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
    cleanup_free char *full = xasprintf("%s/%s", dir, r);
    struct stat st;
    if (lstat(full, &st) < 0)
      continue;
    char kind = S_ISDIR(st.st_mode)   ? 'd'
                : S_ISLNK(st.st_mode) ? 'l'
                : S_ISREG(st.st_mode) ? 'f'
                                      : 'o';
    ci_strv_push_take(out, xasprintf("%c %s %lld %o", kind, r, (long long)st.st_size,
                                     (unsigned)(st.st_mode & 07777)));
    if (S_ISDIR(st.st_mode))
      tl_walk(dir, r, out);
  }
  closedir(d);
}

static int
tl_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static TL_UNUSED char *
tl_tree(const char *dir)
{
  struct ci_strv v = CI_STRV_INIT;
  tl_walk(dir, "", &v);
  if (v.n)
    qsort(v.v, v.n, sizeof(char *), tl_cmp);
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  for (size_t i = 0; i < v.n; i++)
    ci_buf_addf(&b, "%s\n", v.v[i]);
  ci_strv_release(&v);
  return ci_buf_take(&b);
}

static TL_UNUSED bool
tl_exists(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *p = xvasprintf(fmt, ap);
  va_end(ap);
  struct stat st;
  return lstat(p, &st) == 0;
}

static TL_UNUSED mode_t
tl_mode(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *p = xvasprintf(fmt, ap);
  va_end(ap);
  struct stat st;
  if (lstat(p, &st) < 0)
    return 0;
  return st.st_mode;
}

static TL_UNUSED char *
tl_digest_hex(const void *data, size_t len)
{
  char d[IMG__DIGEST_LEN + 1];
  img__digest_bytes(data, len, d);
  return xstrdup(d + 7);
}

/* ------------------------------------------------------------ image fixtures */

/* One generated layer: its uncompressed tar, diff id, the blob as stored and its digest. */
struct tl_layer {
  char *tar;
  size_t tar_len;
  char diff_id[IMG__DIGEST_LEN + 1];
  char *blob;
  size_t blob_len;
  char digest[IMG__DIGEST_LEN + 1];
};

static TL_UNUSED void
tl_layer_make(struct tl_layer *l, struct tb *t, const char *filter)
{
  memset(l, 0, sizeof(*l));
  l->tar = tb_finish(t, &l->tar_len);
  img__digest_bytes(l->tar, l->tar_len, l->diff_id);
  if (filter) {
    l->blob = tl_compress(l->tar, l->tar_len, filter, &l->blob_len);
  } else {
    l->blob = xmalloc(l->tar_len);
    memcpy(l->blob, l->tar, l->tar_len);
    l->blob_len = l->tar_len;
  }
  img__digest_bytes(l->blob, l->blob_len, l->digest);
}

static TL_UNUSED void
tl_layer_release(struct tl_layer *l)
{
  free(l->tar);
  free(l->blob);
  memset(l, 0, sizeof(*l));
}

/* An image config JSON for the layers (new string). */
static TL_UNUSED char *
tl_config(const struct tl_layer *layers, size_t n, const char *arch, const char *extra_config)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  ci_buf_addf(&b,
              "{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{%s},"
              "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
              arch, extra_config ? extra_config : "\"Cmd\":[\"/bin/sh\"]");
  for (size_t i = 0; i < n; i++)
    ci_buf_addf(&b, "%s\"%s\"", i ? "," : "", layers[i].diff_id);
  ci_buf_adds(&b, "]}}");
  return ci_buf_take(&b);
}

/* An image manifest (new string) for a config and layers. */
static TL_UNUSED char *
tl_manifest(const char *mt, const char *config, const struct tl_layer *layers, size_t n,
            const char *layer_mt)
{
  char cd[IMG__DIGEST_LEN + 1];
  img__digest_bytes(config, strlen(config), cd);
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  ci_buf_addf(&b,
              "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
              "\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
              mt, IMG__MT_OCI_CONFIG, cd, strlen(config));
  for (size_t i = 0; i < n; i++)
    ci_buf_addf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", i ? "," : "",
                layer_mt, layers[i].digest, layers[i].blob_len);
  ci_buf_adds(&b, "]}");
  return ci_buf_take(&b);
}

/* Put a blob into an OCI layout dir; returns its digest in out. */
static TL_UNUSED void
tl_oci_blob(const char *dir, const void *data, size_t len, char out[IMG__DIGEST_LEN + 1])
{
  img__digest_bytes(data, len, out);
  cleanup_free char *bdir = xasprintf("%s/blobs/sha256", dir);
  struct ci_error *err = NULL;
  assert_int_equal(img__mkdirs(bdir, 0755, &err), 0);
  cleanup_free char *p = xasprintf("%s/%s", bdir, out + 7);
  tl_write(p, data, len);
}

static TL_UNUSED void
tl_oci_finish(const char *dir, const char *index_json)
{
  cleanup_free char *l = xasprintf("%s/oci-layout", dir);
  tl_write(l, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
  cleanup_free char *i = xasprintf("%s/index.json", dir);
  tl_write(i, index_json, strlen(index_json));
}

/* A complete one-image OCI layout with ref.name tag; the manifest digest goes to mdigest. */
static TL_UNUSED void
tl_oci_image(const char *dir, const struct tl_layer *layers, size_t n, const char *tag,
             char mdigest[IMG__DIGEST_LEN + 1])
{
  char d[IMG__DIGEST_LEN + 1];
  cleanup_free char *cfg = tl_config(layers, n, "amd64", NULL);
  tl_oci_blob(dir, cfg, strlen(cfg), d);
  for (size_t i = 0; i < n; i++)
    tl_oci_blob(dir, layers[i].blob, layers[i].blob_len, d);
  cleanup_free char *man =
      tl_manifest(IMG__MT_OCI_MANIFEST, cfg, layers, n, "application/vnd.oci.image.layer.v1.tar");
  tl_oci_blob(dir, man, strlen(man), mdigest);
  cleanup_free char *idx = xasprintf(
      "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
      "\"annotations\":{\"org.opencontainers.image.ref.name\":\"%s\"}}]}",
      IMG__MT_OCI_MANIFEST, mdigest, strlen(man), tag);
  tl_oci_finish(dir, idx);
}

/* ------------------------------------------------------------ error assertions */

/* Assert success; on failure print the error. Frees *err. */
#define tl_ok(ret, err) tl_ok_at((ret), (err), __FILE__, __LINE__)
static TL_UNUSED void
tl_ok_at(int ret, struct ci_error **err, const char *file, int line)
{
  if (ret < 0)
    fail_msg("%s:%d: failed (%d): %s", file, line, ret, *err ? (*err)->msg : "(no message)");
  ci_error_free(err);
}

/* Assert failure with a message containing needle. Frees *err. */
#define tl_fails(ret, err, needle) tl_fails_at((ret), (err), (needle), __FILE__, __LINE__)
static TL_UNUSED void
tl_fails_at(int ret, struct ci_error **err, const char *needle, const char *file, int line)
{
  if (ret >= 0)
    fail_msg("%s:%d: succeeded, expected an error containing '%s'", file, line, needle);
  if (!*err)
    fail_msg("%s:%d: failed (%d) without an error message", file, line, ret);
  if (!strstr((*err)->msg, needle))
    fail_msg("%s:%d: error '%s' does not contain '%s'", file, line, (*err)->msg, needle);
  ci_error_free(err);
}
