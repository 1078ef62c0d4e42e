/* test/unit/test_image_extract.c - layer extraction: functions, whiteouts, and the hostile
 * layer corpus (every tarball is generated here with libarchive).  The corpus runs twice: with
 * openat2 and with the component-walk fallback used on kernels without it. */
#include "test_image_lib.c"

#include <sys/xattr.h>

/* A sandbox: BASE/layer is extracted into, BASE/outside holds what must never change. */
struct sandbox {
  char *base;
  char *layer;
  char *outside;
  char *outside_tree; /* snapshot */
  int fd;
};

static void
sb_init(struct sandbox *sb)
{
  sb->base = tl_mkdtemp("extract");
  sb->layer = xasprintf("%s/layer", sb->base);
  sb->outside = xasprintf("%s/outside", sb->base);
  assert_int_equal(mkdir(sb->layer, 0755), 0);
  assert_int_equal(mkdir(sb->outside, 0755), 0);
  cleanup_free char *victim = xasprintf("%s/victim", sb->outside);
  tl_write(victim, "original\n", 9);
  cleanup_free char *dir = xasprintf("%s/dir", sb->outside);
  assert_int_equal(mkdir(dir, 0755), 0);
  sb->outside_tree = tl_tree(sb->outside);
  sb->fd = open(sb->layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(sb->fd >= 0);
}

/* Nothing outside the layer changed: same tree, same victim content, no xattr on the dir, and
 * nothing new next to layer/ and outside/. */
static void
sb_assert_intact(struct sandbox *sb)
{
  cleanup_free char *now = tl_tree(sb->outside);
  assert_string_equal(now, sb->outside_tree);
  cleanup_free char *victim = xasprintf("%s/victim", sb->outside);
  cleanup_free char *content = tl_read(victim);
  assert_non_null(content);
  assert_string_equal(content, "original\n");
  cleanup_free char *dir = xasprintf("%s/dir", sb->outside);
  char v[8];
  assert_true(getxattr(dir, "user.overlay.opaque", v, sizeof(v)) < 0);
  assert_true(getxattr(sb->outside, "user.overlay.opaque", v, sizeof(v)) < 0);
  assert_int_equal(tl_mode("%s", dir) & 07777, 0755);
  struct ci_strv names = CI_STRV_INIT;
  DIR *d = opendir(sb->base);
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      ci_strv_push(&names, de->d_name);
  closedir(d);
  assert_int_equal(names.n, 2);
  assert_true(ci_strv_contains(&names, "layer"));
  assert_true(ci_strv_contains(&names, "outside"));
  ci_strv_release(&names);
}

static void
sb_release(struct sandbox *sb)
{
  close(sb->fd);
  tl_rm_rf(sb->base);
  free(sb->base);
  free(sb->layer);
  free(sb->outside);
  free(sb->outside_tree);
}

static int
sb_extract(struct sandbox *sb, const char *data, size_t len, enum img_opaque_xattr opaque,
           struct img__extract_result *res, struct ci_error **err)
{
  struct memrd m = {data, len, 0, 0};
  struct img__extract_opts o = {opaque, geteuid() == 0, NULL, 0};
  struct img__extract_result local;
  return img__extract(sb->fd, memrd_read, &m, &o, res ? res : &local, err);
}

/* Whether trusted.* xattrs can be set under DIR: root of the initial user namespace can, root
 * of another one (a container of the built-in backend, where the project's own CI runs) cannot. */
static bool
can_set_trusted_xattr(const char *dir)
{
  cleanup_free char *probe = xasprintf("%s/trusted-probe", dir);
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return false;
  close(fd);
  bool ok = setxattr(probe, "trusted.overlay.opaque", "y", 1, 0) == 0;
  unlink(probe);
  return ok;
}

/* ------------------------------------------------------------ ordinary layers */

static void
test_extract_basic(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_dir(&t, "./", 0755);
  tb_dir(&t, "./etc/", 0755);
  tb_file(&t, "./etc/passwd", 0644, "root:x:0:0::/root:/bin/sh\n");
  tb_file(&t, "./etc/shadow", 0600, "root:*::0:::::\n");
  tb_dir(&t, "bin", 0755);
  tb_file(&t, "bin/busybox", 0755,
          "\x7f"
          "ELF fake");
  tb_symlink(&t, "bin/sh", "busybox");
  tb_symlink(&t, "bin/abs", "/bin/busybox");
  tb_hardlink(&t, "bin/ls", "bin/busybox");
  tb_node(&t, "run/fifo", AE_IFIFO, 0, 0);
  tb_file(&t, "implicit/parent/file", 0640, "x"); /* parents not in the tar */
  tb_dir(&t, "ro", 0555);
  tb_file(&t, "ro/inside", 0444, "ro");
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);

  struct ci_error *err = NULL;
  struct img__extract_result res;
  tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_USER, &res, &err), &err);
  char want[IMG__DIGEST_LEN + 1];
  img__digest_bytes(tar, len, want);
  assert_string_equal(res.diff_id, want);
  assert_int_equal(res.entries, 13);

  cleanup_free char *passwd = xasprintf("%s/etc/passwd", sb.layer);
  cleanup_free char *content = tl_read(passwd);
  assert_string_equal(content, "root:x:0:0::/root:/bin/sh\n");
  assert_int_equal(tl_mode("%s/etc/shadow", sb.layer) & 07777, 0600);
  assert_int_equal(tl_mode("%s/bin/busybox", sb.layer) & 07777, 0755);
  assert_true(S_ISLNK(tl_mode("%s/bin/sh", sb.layer)));
  char target[64];
  cleanup_free char *sh = xasprintf("%s/bin/abs", sb.layer);
  ssize_t n = readlink(sh, target, sizeof(target) - 1);
  assert_true(n > 0);
  target[n] = '\0';
  assert_string_equal(target, "/bin/busybox"); /* kept as written, resolved in the container */
  struct stat a, b;
  cleanup_free char *bb = xasprintf("%s/bin/busybox", sb.layer);
  cleanup_free char *ls = xasprintf("%s/bin/ls", sb.layer);
  assert_int_equal(stat(bb, &a), 0);
  assert_int_equal(stat(ls, &b), 0);
  assert_int_equal(a.st_ino, b.st_ino);
  assert_int_equal(a.st_mtime, 1700000000);
  assert_true(S_ISFIFO(tl_mode("%s/run/fifo", sb.layer)));
  assert_true(S_ISDIR(tl_mode("%s/implicit/parent", sb.layer)));
  assert_int_equal(tl_mode("%s/implicit/parent", sb.layer) & 07777, 0755);
  assert_int_equal(tl_mode("%s/ro", sb.layer) & 07777, 0555); /* applied after its content */
  assert_int_equal(tl_mode("%s/ro/inside", sb.layer) & 07777, 0444);
  cleanup_free char *etc = xasprintf("%s/etc", sb.layer);
  assert_int_equal(stat(etc, &a), 0);
  assert_int_equal(a.st_mtime, 1700000000); /* directory times survive their entries */
  sb_assert_intact(&sb);
  sb_release(&sb);
}

static void
test_extract_compressions(void **state)
{
  (void)state;
  static const char *const filters[] = {"gzip", "zstd", "bzip2", "xz"};
  struct tb t;
  tb_init(&t);
  tb_file(&t, "hello", 0644, "hello world\n");
  tb_big_file(&t, "big", 300000, 7);
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  char want[IMG__DIGEST_LEN + 1];
  img__digest_bytes(tar, len, want);
  for (size_t i = 0; i < CI_ARRAY_SIZE(filters); i++) {
    struct sandbox sb;
    sb_init(&sb);
    size_t clen;
    cleanup_free char *c = tl_compress(tar, len, filters[i], &clen);
    assert_true(clen < len);
    struct ci_error *err = NULL;
    struct img__extract_result res;
    tl_ok(sb_extract(&sb, c, clen, IMG_OPAQUE_USER, &res, &err), &err);
    assert_string_equal(res.diff_id, want);
    assert_int_equal(res.bytes, 300000 + 12);
    struct stat st;
    cleanup_free char *big = xasprintf("%s/big", sb.layer);
    assert_int_equal(stat(big, &st), 0);
    assert_int_equal(st.st_size, 300000);
    sb_release(&sb);
  }
}

static void
test_extract_whiteouts(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_file(&t, ".wh.gone", 0644, "");
  tb_dir(&t, "etc", 0755);
  tb_file(&t, "etc/.wh.passwd", 0644, "");
  tb_file(&t, "keep", 0644, "same layer");
  tb_file(&t, ".wh.keep", 0644, ""); /* OCI: hides only lower layers */
  tb_file(&t, ".wh.later", 0644, "");
  tb_file(&t, "later", 0644, "recreated"); /* replaces the whiteout */
  tb_dir(&t, "opq", 0755);
  tb_file(&t, "opq/.wh..wh..opq", 0644, "");
  tb_file(&t, "opq/new", 0644, "n");
  tb_file(&t, "fresh/.wh..wh..opq", 0644, ""); /* opaque dir whose header is missing */
  tb_dir(&t, ".wh..wh.plnk", 0700);            /* aufs bookkeeping: ignored */
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  struct ci_error *err = NULL;
  tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_USER, NULL, &err), &err);

  struct stat st;
  cleanup_free char *gone = xasprintf("%s/gone", sb.layer);
  assert_int_equal(lstat(gone, &st), 0);
  assert_true(S_ISCHR(st.st_mode));
  assert_int_equal(st.st_rdev, makedev(0, 0));
  cleanup_free char *pw = xasprintf("%s/etc/passwd", sb.layer);
  assert_int_equal(lstat(pw, &st), 0);
  assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
  assert_true(S_ISREG(tl_mode("%s/keep", sb.layer)));
  assert_true(S_ISREG(tl_mode("%s/later", sb.layer)));
  assert_false(tl_exists("%s/.wh.gone", sb.layer));
  assert_false(tl_exists("%s/.wh..wh.plnk", sb.layer));
  assert_false(tl_exists("%s/opq/.wh..wh..opq", sb.layer));
  char v[8];
  cleanup_free char *opq = xasprintf("%s/opq", sb.layer);
  cleanup_free char *fresh = xasprintf("%s/fresh", sb.layer);
  assert_int_equal(getxattr(opq, "user.overlay.opaque", v, sizeof(v)), 1);
  assert_int_equal(v[0], 'y');
  assert_int_equal(getxattr(fresh, "user.overlay.opaque", v, sizeof(v)), 1);
  assert_true(getxattr(opq, "trusted.overlay.opaque", v, sizeof(v)) < 0);
  assert_true(tl_exists("%s/opq/new", sb.layer));
  bool trusted = geteuid() == 0 && can_set_trusted_xattr(sb.base);
  sb_release(&sb);

  if (trusted) { /* the rootful formats */
    sb_init(&sb);
    tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_BOTH, NULL, &err), &err);
    cleanup_free char *o2 = xasprintf("%s/opq", sb.layer);
    assert_int_equal(getxattr(o2, "trusted.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(getxattr(o2, "user.overlay.opaque", v, sizeof(v)), 1);
    sb_release(&sb);
    sb_init(&sb);
    tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_TRUSTED, NULL, &err), &err);
    cleanup_free char *o3 = xasprintf("%s/opq", sb.layer);
    assert_int_equal(getxattr(o3, "trusted.overlay.opaque", v, sizeof(v)), 1);
    assert_true(getxattr(o3, "user.overlay.opaque", v, sizeof(v)) < 0);
    sb_release(&sb);
  }
}

static void
test_extract_replacements(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_dir(&t, "a", 0755);
  tb_file(&t, "a/x", 0644, "x");
  tb_file(&t, "a", 0644, "now a file"); /* a directory replaced by a file */
  tb_file(&t, "f", 0644, "first");
  tb_hardlink(&t, "h", "f");
  tb_file(&t, "h", 0644, "second"); /* replaces the link: f must keep its content */
  tb_file(&t, "d", 0644, "file first");
  tb_dir(&t, "d", 0700); /* a file replaced by a directory */
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  struct ci_error *err = NULL;
  tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_USER, NULL, &err), &err);
  cleanup_free char *a = xasprintf("%s/a", sb.layer);
  cleanup_free char *ac = tl_read(a);
  assert_string_equal(ac, "now a file");
  cleanup_free char *f = xasprintf("%s/f", sb.layer);
  cleanup_free char *fc = tl_read(f);
  assert_string_equal(fc, "first");
  cleanup_free char *h = xasprintf("%s/h", sb.layer);
  cleanup_free char *hc = tl_read(h);
  assert_string_equal(hc, "second");
  assert_true(S_ISDIR(tl_mode("%s/d", sb.layer)));
  assert_int_equal(tl_mode("%s/d", sb.layer) & 07777, 0700);
  sb_release(&sb);
}

static void
test_extract_bad_input(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct ci_error *err = NULL;
  static const char junk[] = "this is not a tar archive at all, just some text that goes on and "
                             "on for a while so that the tar reader has something to look at";
  tl_fails(sb_extract(&sb, junk, sizeof(junk), IMG_OPAQUE_USER, NULL, &err), &err, "tar");
  tl_fails(sb_extract(&sb, "", 0, IMG_OPAQUE_USER, NULL, &err), &err, "layer");

  struct tb t;
  tb_init(&t);
  tb_big_file(&t, "big", 200000, 3);
  size_t len, clen;
  cleanup_free char *tar = tb_finish(&t, &len);
  cleanup_free char *gz = tl_compress(tar, len, "gzip", &clen);
  tl_fails(sb_extract(&sb, gz, clen / 2, IMG_OPAQUE_USER, NULL, &err), &err, "");
  tl_fails(sb_extract(&sb, tar, len / 2, IMG_OPAQUE_USER, NULL, &err), &err, "");
  /* A flipped byte in stored gzip data is not caught by libarchive (it does not check the CRC),
   * but the diff id changes, and the puller compares it with the config's. */
  gz[clen / 2] ^= 0x55;
  struct img__extract_result res;
  int ret = sb_extract(&sb, gz, clen, IMG_OPAQUE_USER, &res, &err);
  if (ret == 0) {
    char want[IMG__DIGEST_LEN + 1];
    img__digest_bytes(tar, len, want);
    assert_string_not_equal(res.diff_id, want);
  }
  ci_error_free(&err);
  sb_release(&sb);
}

/* Builders emit layers with nothing in them ("throwaway" steps): 1024 zero bytes, gzipped.
 * Their diff id is the well-known sha256 of those zeros. */
static void
test_extract_empty_layer(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  char zeros[1024];
  memset(zeros, 0, sizeof(zeros));
  size_t clen;
  cleanup_free char *gz = tl_compress(zeros, sizeof(zeros), "gzip", &clen);
  struct ci_error *err = NULL;
  struct img__extract_result res;
  tl_ok(sb_extract(&sb, gz, clen, IMG_OPAQUE_USER, &res, &err), &err);
  assert_string_equal(res.diff_id,
                      "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
  assert_int_equal(res.entries, 0);
  cleanup_free char *tree = tl_tree(sb.layer);
  assert_string_equal(tree, "");
  sb_release(&sb);
}

static void
test_extract_cancel(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_file(&t, "a", 0644, "a");
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  volatile sig_atomic_t cancel = 1;
  struct memrd m = {tar, len, 0, 0};
  struct img__extract_opts o = {IMG_OPAQUE_USER, false, &cancel, 0};
  struct img__extract_result res;
  struct ci_error *err = NULL;
  int ret = img__extract(sb.fd, memrd_read, &m, &o, &res, &err);
  assert_int_equal(ret, CI_ECANCELED);
  ci_error_free(&err);
  /* err == NULL is allowed too */
  m.off = 0;
  assert_int_equal(img__extract(sb.fd, memrd_read, &m, &o, &res, NULL), CI_ECANCELED);
  sb_release(&sb);
}

static void
test_extract_owner(void **state)
{
  (void)state;
  if (geteuid() != 0)
    skip();
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_file_owned(&t, "owned", 0640, "o", 1234, 5678);
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  struct ci_error *err = NULL;
  tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_USER, NULL, &err), &err);
  struct stat st;
  cleanup_free char *p = xasprintf("%s/owned", sb.layer);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_uid, 1234);
  assert_int_equal(st.st_gid, 5678);
  sb_release(&sb);
}

/* ------------------------------------------------------------ the hostile corpus */

enum expect { REFUSED, NEUTRALISED };

struct hostile {
  const char *name;
  void (*build)(struct tb *t, const struct sandbox *sb);
  enum expect expect;
  const char *msg;                         /* REFUSED: part of the error */
  void (*check)(const struct sandbox *sb); /* NEUTRALISED: what the layer must look like */
  bool fallback_refuses;                   /* without openat2 every symlinked parent is refused */
};

static void
h_dotdot(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, "../outside/evil", 0644, "pwned");
}

static void
h_dotdot_mid(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "a", 0755);
  tb_file(t, "a/../../outside/evil", 0644, "pwned");
}

static void
h_dotdot_dir(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "../outside/newdir", 0777);
}

static void
h_absolute(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *p = xasprintf("%s/evil", sb->outside);
  tb_file(t, p, 0644, "pwned");
}

static void
h_absolute_root(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, "/etc/cirrus-image-test-evil", 0644, "pwned");
}

static void
h_symlink_abs_write(struct tb *t, const struct sandbox *sb)
{
  tb_symlink(t, "lnk", sb->outside);
  tb_file(t, "lnk/evil", 0644, "pwned");
}

static void
h_symlink_rel_write(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "lnk", "../outside");
  tb_file(t, "lnk/evil", 0644, "pwned");
}

static void
h_symlink_rel_overwrite(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "lnk", "../outside");
  tb_file(t, "lnk/victim", 0644, "pwned");
}

static void
h_symlink_chain(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "d", 0755);
  tb_symlink(t, "d/up", "..");
  tb_symlink(t, "d/upup", "up/..");
  tb_file(t, "d/upup/outside/evil", 0644, "pwned");
}

static void
h_symlink_two_step(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "a", "b");
  tb_symlink(t, "b", "../outside");
  tb_file(t, "a/evil", 0644, "pwned");
}

static void
h_symlink_dir_entry_below(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *d = xasprintf("%s/dir", sb->outside);
  tb_symlink(t, "lnk", d);
  tb_dir(t, "lnk/sub", 0777);
}

static void
h_symlink_magic(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "p", "/proc/self/cwd");
  tb_file(t, "p/evil", 0644, "pwned");
}

static void
h_symlink_loop(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "loop", "loop");
  tb_file(t, "loop/x", 0644, "x");
}

static void
h_symlink_then_file(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *v = xasprintf("%s/victim", sb->outside);
  tb_symlink(t, "x", v);
  tb_file(t, "x", 0644, "pwned");
}

static void
c_symlink_then_file(const struct sandbox *sb)
{
  cleanup_free char *p = xasprintf("%s/x", sb->layer);
  cleanup_free char *c = tl_read(p);
  assert_true(S_ISREG(tl_mode("%s", p)));
  assert_string_equal(c, "pwned"); /* landed in the layer, replacing the symlink */
}

static void
h_symlink_then_dir(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *d = xasprintf("%s/dir", sb->outside);
  tb_symlink(t, "y", d);
  tb_dir(t, "y", 0777);
}

static void
c_symlink_then_dir(const struct sandbox *sb)
{
  assert_true(S_ISDIR(tl_mode("%s/y", sb->layer)));
  assert_int_equal(tl_mode("%s/y", sb->layer) & 07777, 0777);
}

static void
h_symlink_then_hardlink_name(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *v = xasprintf("%s/victim", sb->outside);
  tb_file(t, "f", 0644, "f");
  tb_symlink(t, "x", v);
  tb_hardlink(t, "x", "f"); /* replaces the symlink, never links through it */
}

static void
c_symlink_then_hardlink_name(const struct sandbox *sb)
{
  assert_true(S_ISREG(tl_mode("%s/x", sb->layer)));
}

static void
h_hardlink_abs(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *v = xasprintf("%s/victim", sb->outside);
  tb_hardlink(t, "h", v);
}

static void
h_hardlink_dotdot(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_hardlink(t, "h", "../outside/victim");
}

static void
h_hardlink_via_symlink(struct tb *t, const struct sandbox *sb)
{
  tb_symlink(t, "lnk", sb->outside);
  tb_hardlink(t, "h", "lnk/victim");
}

static void
h_hardlink_via_rel_symlink(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_symlink(t, "lnk", "../outside");
  tb_hardlink(t, "h", "lnk/victim");
}

static void
h_hardlink_missing(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_hardlink(t, "h", "etc/passwd");
}

static void
h_hardlink_to_symlink_out(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *v = xasprintf("%s/victim", sb->outside);
  tb_symlink(t, "s", v);
  tb_hardlink(t, "h", "s"); /* links the symlink itself */
  tb_file(t, "h", 0644, "pwned");
}

static void
c_hardlink_to_symlink_out(const struct sandbox *sb)
{
  assert_true(S_ISLNK(tl_mode("%s/s", sb->layer)));
  assert_true(S_ISREG(tl_mode("%s/h", sb->layer)));
}

static void
h_whiteout_via_symlink(struct tb *t, const struct sandbox *sb)
{
  tb_symlink(t, "lnk", sb->outside);
  tb_file(t, "lnk/.wh.victim", 0644, "");
}

static void
h_whiteout_dotdot(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, ".wh...", 0644, "");
}

static void
h_whiteout_empty(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, "etc/.wh.", 0644, "");
}

static void
h_opaque_via_symlink(struct tb *t, const struct sandbox *sb)
{
  cleanup_free char *d = xasprintf("%s/dir", sb->outside);
  tb_symlink(t, "lnk", d);
  tb_file(t, "lnk/.wh..wh..opq", 0644, "");
}

static void
h_devices(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "dev", 0755);
  tb_node(t, "dev/mem", AE_IFCHR, 1, 1);
  tb_node(t, "dev/sda", AE_IFBLK, 8, 0);
  tb_node(t, "dev/null", AE_IFCHR, 1, 3);
  tb_node(t, "dev/zero-whiteout-lookalike", AE_IFCHR, 0, 0);
}

static void
c_devices(const struct sandbox *sb)
{
  assert_true(S_ISDIR(tl_mode("%s/dev", sb->layer)));
  assert_false(tl_exists("%s/dev/mem", sb->layer));
  assert_false(tl_exists("%s/dev/sda", sb->layer));
  assert_false(tl_exists("%s/dev/null", sb->layer));
  assert_false(tl_exists("%s/dev/zero-whiteout-lookalike", sb->layer));
}

static void
h_setuid(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, "bin/su", 04755, "su");
  tb_file(t, "bin/sg", 02755, "sg");
  tb_file(t, "bin/both", 06711, "both");
  tb_dir(t, "shared", 02775);
  tb_dir(t, "weird", 04755);
  tb_node(t, "fifo", AE_IFIFO, 0, 0);
}

static void
c_setuid(const struct sandbox *sb)
{
  assert_int_equal(tl_mode("%s/bin/su", sb->layer) & 07777, 0755);
  assert_int_equal(tl_mode("%s/bin/sg", sb->layer) & 07777, 0755);
  assert_int_equal(tl_mode("%s/bin/both", sb->layer) & 07777, 0711);
  assert_int_equal(tl_mode("%s/shared", sb->layer) & 07777, 02775); /* setgid dir: harmless */
  assert_int_equal(tl_mode("%s/weird", sb->layer) & 07777, 0755);
}

static void
h_xattrs(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file_xattr(t, "forged-opaque", "x", "user.overlay.opaque", "y");
  tb_file_xattr(t, "forged-redirect", "x", "trusted.overlay.redirect", "/etc");
  tb_file_xattr(t, "caps", "x", "security.capability", "0123456789");
  tb_file_xattr(t, "plain", "x", "user.comment", "hello");
}

static void
c_xattrs(const struct sandbox *sb)
{
  char v[64];
  cleanup_free char *a = xasprintf("%s/forged-opaque", sb->layer);
  cleanup_free char *b = xasprintf("%s/forged-redirect", sb->layer);
  cleanup_free char *c = xasprintf("%s/caps", sb->layer);
  cleanup_free char *d = xasprintf("%s/plain", sb->layer);
  assert_true(getxattr(a, "user.overlay.opaque", v, sizeof(v)) < 0);
  assert_true(getxattr(b, "trusted.overlay.redirect", v, sizeof(v)) < 0);
  assert_true(getxattr(c, "security.capability", v, sizeof(v)) < 0);
  assert_int_equal(getxattr(d, "user.comment", v, sizeof(v)), 5);
}

static void
h_parent_is_file(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_file(t, "f", 0644, "file");
  tb_file(t, "f/x", 0644, "x");
}

static void
h_inside_symlink(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "usr", 0755);
  tb_dir(t, "usr/lib", 0755);
  tb_symlink(t, "lib", "usr/lib");
  tb_file(t, "lib/libc.so", 0644, "libc"); /* stays inside: allowed */
}

static void
c_inside_symlink(const struct sandbox *sb)
{
  assert_true(S_ISREG(tl_mode("%s/usr/lib/libc.so", sb->layer)));
}

static void
h_deep_dotdot_symlink_inside(struct tb *t, const struct sandbox *sb)
{
  (void)sb;
  tb_dir(t, "a/b/c", 0755);
  tb_symlink(t, "a/b/c/up", "../../..");
  tb_file(t, "a/b/c/up/top", 0644, "top"); /* resolves to the layer root: inside */
}

static void
c_deep_dotdot_symlink_inside(const struct sandbox *sb)
{
  assert_true(S_ISREG(tl_mode("%s/top", sb->layer)));
}

static const struct hostile corpus[] = {
    {"dotdot", h_dotdot, REFUSED, "contains '..'", NULL, false},
    {"dotdot-mid", h_dotdot_mid, REFUSED, "contains '..'", NULL, false},
    {"dotdot-dir", h_dotdot_dir, REFUSED, "contains '..'", NULL, false},
    {"absolute", h_absolute, REFUSED, "absolute path", NULL, false},
    {"absolute-root", h_absolute_root, REFUSED, "absolute path", NULL, false},
    {"symlink-abs-write", h_symlink_abs_write, REFUSED, "outside the layer", NULL, false},
    {"symlink-rel-write", h_symlink_rel_write, REFUSED, "outside the layer", NULL, false},
    {"symlink-rel-overwrite", h_symlink_rel_overwrite, REFUSED, "outside the layer", NULL, false},
    {"symlink-chain", h_symlink_chain, REFUSED, "outside the layer", NULL, false},
    {"symlink-two-step", h_symlink_two_step, REFUSED, "outside the layer", NULL, false},
    {"symlink-dir-below", h_symlink_dir_entry_below, REFUSED, "outside the layer", NULL, false},
    {"symlink-magic", h_symlink_magic, REFUSED, "outside the layer", NULL, false},
    {"symlink-loop", h_symlink_loop, REFUSED, "symlink", NULL, false},
    {"symlink-then-file", h_symlink_then_file, NEUTRALISED, NULL, c_symlink_then_file, false},
    {"symlink-then-dir", h_symlink_then_dir, NEUTRALISED, NULL, c_symlink_then_dir, false},
    {"symlink-then-hardlink", h_symlink_then_hardlink_name, NEUTRALISED, NULL,
     c_symlink_then_hardlink_name, false},
    {"hardlink-abs", h_hardlink_abs, REFUSED, "absolute path", NULL, false},
    {"hardlink-dotdot", h_hardlink_dotdot, REFUSED, "contains '..'", NULL, false},
    {"hardlink-via-symlink", h_hardlink_via_symlink, REFUSED, "outside the layer", NULL, false},
    {"hardlink-via-rel-symlink", h_hardlink_via_rel_symlink, REFUSED, "outside the layer", NULL,
     false},
    {"hardlink-missing", h_hardlink_missing, REFUSED, "not in the layer", NULL, false},
    {"hardlink-to-symlink-out", h_hardlink_to_symlink_out, NEUTRALISED, NULL,
     c_hardlink_to_symlink_out, false},
    {"whiteout-via-symlink", h_whiteout_via_symlink, REFUSED, "outside the layer", NULL, false},
    {"whiteout-dotdot", h_whiteout_dotdot, REFUSED, "invalid whiteout", NULL, false},
    {"whiteout-empty", h_whiteout_empty, REFUSED, "invalid whiteout", NULL, false},
    {"opaque-via-symlink", h_opaque_via_symlink, REFUSED, "outside the layer", NULL, false},
    {"devices", h_devices, NEUTRALISED, NULL, c_devices, false},
    {"setuid", h_setuid, NEUTRALISED, NULL, c_setuid, false},
    {"xattrs", h_xattrs, NEUTRALISED, NULL, c_xattrs, false},
    {"parent-is-file", h_parent_is_file, REFUSED, "not a directory", NULL, false},
    {"inside-symlink", h_inside_symlink, NEUTRALISED, NULL, c_inside_symlink, true},
    {"inside-dotdot-symlink", h_deep_dotdot_symlink_inside, NEUTRALISED, NULL,
     c_deep_dotdot_symlink_inside, true},
};

static void
run_corpus(bool fallback, const char *filter)
{
  img__test_no_openat2 = fallback;
  for (size_t i = 0; i < CI_ARRAY_SIZE(corpus); i++) {
    const struct hostile *h = &corpus[i];
    struct sandbox sb;
    sb_init(&sb);
    struct tb t;
    tb_init(&t);
    h->build(&t, &sb);
    size_t len;
    cleanup_free char *tar = tb_finish(&t, &len);
    size_t blen = len;
    cleanup_free char *blob = filter ? tl_compress(tar, len, filter, &blen) : NULL;
    struct ci_error *err = NULL;
    int ret = sb_extract(&sb, blob ? blob : tar, blen, IMG_OPAQUE_USER, NULL, &err);
    bool refused = h->expect == REFUSED || (fallback && h->fallback_refuses);
    if (refused) {
      if (ret >= 0)
        fail_msg("hostile layer '%s'%s was accepted", h->name, fallback ? " (fallback)" : "");
      if (h->msg && !(fallback && h->fallback_refuses) && !strstr(err->msg, h->msg))
        fail_msg("hostile layer '%s': error '%s' lacks '%s'", h->name, err->msg, h->msg);
      ci_error_free(&err);
    } else {
      if (ret < 0)
        fail_msg("layer '%s'%s was refused: %s", h->name, fallback ? " (fallback)" : "",
                 err ? err->msg : "?");
      h->check(&sb);
    }
    sb_assert_intact(&sb);
    sb_release(&sb);
  }
  img__test_no_openat2 = false;
}

static void
test_hostile_corpus(void **state)
{
  (void)state;
  run_corpus(false, NULL);
}

static void
test_hostile_corpus_gzip(void **state)
{
  (void)state;
  run_corpus(false, "gzip");
}

static void
test_hostile_corpus_fallback(void **state)
{
  (void)state;
  run_corpus(true, NULL);
}

/* The root entry "/" alone and "./" are the layer root: no error, nothing changes. */
static void
test_extract_root_entries(void **state)
{
  (void)state;
  struct sandbox sb;
  sb_init(&sb);
  struct tb t;
  tb_init(&t);
  tb_dir(&t, ".", 0700);
  tb_dir(&t, "./", 0700);
  tb_file(&t, "./a/./b", 0644, "b");
  size_t len;
  cleanup_free char *tar = tb_finish(&t, &len);
  struct ci_error *err = NULL;
  tl_ok(sb_extract(&sb, tar, len, IMG_OPAQUE_USER, NULL, &err), &err);
  assert_int_equal(tl_mode("%s", sb.layer) & 07777, 0755);
  assert_true(S_ISREG(tl_mode("%s/a/b", sb.layer)));
  sb_release(&sb);
}

/* A tree deeper than PATH_MAX (built through a symlinked parent) is removed by img__rm_rf. */
static void
test_rm_rf_deep(void **state)
{
  (void)state;
  cleanup_free char *base = tl_mkdtemp("deep");
  int fd = open(base, O_RDONLY | O_DIRECTORY);
  assert_true(fd >= 0);
  for (int i = 0; i < 3000; i++) {
    assert_int_equal(mkdirat(fd, "dd", 0700), 0);
    int nfd = openat(fd, "dd", O_RDONLY | O_DIRECTORY);
    assert_true(nfd >= 0);
    if (i % 100 == 0) {
      int f = openat(nfd, "file", O_CREAT | O_WRONLY, 0000);
      close(f);
      if (i % 200 == 0)
        fchmod(fd, 0500); /* unwritable (but complete) directories too */
    }
    close(fd);
    fd = nfd;
  }
  close(fd);
  struct ci_error *err = NULL;
  tl_ok(img__rm_rf(base, &err), &err);
  assert_false(tl_exists("%s", base));
  tl_ok(img__rm_rf(base, &err), &err); /* missing: fine */
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_extract_basic),           cmocka_unit_test(test_extract_compressions),
      cmocka_unit_test(test_extract_whiteouts),       cmocka_unit_test(test_extract_replacements),
      cmocka_unit_test(test_extract_bad_input),       cmocka_unit_test(test_extract_empty_layer),
      cmocka_unit_test(test_extract_cancel),
      cmocka_unit_test(test_extract_owner),           cmocka_unit_test(test_extract_root_entries),
      cmocka_unit_test(test_hostile_corpus),          cmocka_unit_test(test_hostile_corpus_gzip),
      cmocka_unit_test(test_hostile_corpus_fallback), cmocka_unit_test(test_rm_rf_deep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
