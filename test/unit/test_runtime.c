/* test/unit/test_runtime.c - the pure parts of ci_runtime: subordinate id ranges, user
 * resolution, the helper's option parsing and run-dir removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "backends/runtime/runtime.h"
#include "backends/runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_subid_find(void **state)
{
  (void)state;
  const char *text = "# comment\n"
                     "alice:100000:65536\n"
                     "1002:200000:1000\n"
                     "bob:300000:0\n"
                     "bob:400000:70000\n";
  uint32_t start = 0, count = 0;
  struct ci_error *err = NULL;
  assert_int_equal(rt_subid_find(text, "alice", 1001, &start, &count, &err), 1);
  assert_int_equal(start, 100000);
  assert_int_equal(count, 65536);
  /* by uid */
  assert_int_equal(rt_subid_find(text, "carol", 1002, &start, &count, &err), 1);
  assert_int_equal(start, 200000);
  assert_int_equal(count, 1000);
  /* an empty range is skipped, the next line for the same user counts */
  assert_int_equal(rt_subid_find(text, "bob", 1003, &start, &count, &err), 1);
  assert_int_equal(start, 400000);
  assert_int_equal(count, 70000);
  /* absent: 0, outputs untouched */
  start = 7;
  assert_int_equal(rt_subid_find(text, "dave", 1004, &start, &count, &err), 0);
  assert_int_equal(start, 7);
  /* a prefix of a name does not match */
  assert_int_equal(rt_subid_find(text, "ali", 1005, &start, &count, &err), 0);
  assert_int_equal(rt_subid_find("", "alice", 1, &start, &count, &err), 0);
  assert_null(err);
  /* malformed matching line */
  assert_true(rt_subid_find("alice:x:10\n", "alice", 1, &start, &count, &err) < 0);
  assert_non_null(err);
  assert_non_null(strstr(err->msg, "line 1"));
  ci_error_free(&err);
  assert_true(rt_subid_find("alice:1\n", "alice", 1, &start, &count, &err) < 0);
  ci_error_free(&err);
  /* a malformed line of someone else does not matter */
  assert_int_equal(rt_subid_find("zed:?:?\nalice:5:6\n", "alice", 1, &start, &count, &err), 1);
  assert_int_equal(start, 5);
}

static char *
write_tmp(const char *text)
{
  char *path = xstrdup("/tmp/test_runtime.XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static void
test_root_id_base(void **state)
{
  (void)state;
  char *p = write_tmp("alice:100000:65536\nroot:500000:65536\n");
  assert_int_equal(rt_root_id_base(p), 500000);
  unlink(p);
  free(p);
  /* a range too small for 0..65535 is not used */
  p = write_tmp("root:500000:1000\n");
  assert_int_equal(rt_root_id_base(p), RT_ROOT_ID_BASE);
  unlink(p);
  free(p);
  assert_int_equal(rt_root_id_base("/nonexistent/subuid"), RT_ROOT_ID_BASE);
}

static void
test_idmap_detect_files(void **state)
{
  (void)state;
  if (geteuid() == 0) {
    /* root: always the root mode on the range of the file */
    char *p = write_tmp("root:600000:65536\n");
    struct rt_idmap m;
    struct ci_error *err = NULL;
    assert_int_equal(rt_idmap_detect(&m, p, p, &err), 0);
    assert_int_equal(m.mode, RT_IDMAP_ROOT);
    assert_int_equal(m.n_uid, 1);
    assert_int_equal(m.uid[0].inside, 0);
    assert_int_equal(m.uid[0].outside, 600000);
    assert_int_equal(m.uid[0].count, 65536);
    assert_int_equal(rt_idmap_root_uid(&m), 600000);
    assert_null(m.warning);
    rt_idmap_release(&m);
    unlink(p);
    free(p);
    return;
  }
  /* unprivileged without a range: single mapping and the warning line */
  char *p = write_tmp("someone-else:100000:65536\n");
  struct rt_idmap m;
  struct ci_error *err = NULL;
  assert_int_equal(rt_idmap_detect(&m, p, p, &err), 0);
  assert_int_equal(m.mode, RT_IDMAP_SINGLE);
  assert_int_equal(m.uid[0].outside, geteuid());
  assert_non_null(strstr(m.warning, "no subordinate ids for"));
  assert_non_null(strstr(m.warning, "steps run as root only (chown, apt-get may fail)"));
  rt_idmap_release(&m);
  unlink(p);
  free(p);
}

static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n"
                             "daemon:x:1:1::/:/bin/false\n"
                             "broken line\n"
                             "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
                             "nobody:x:65534:65534::/nonexistent:/bin/false\n";
static const char group[] = "root:x:0:\n"
                            "wheel:x:10:alice,bob\n"
                            "alice:x:1000:\n"
                            "docker:x:999:carol,alice\n"
                            "nogroup:x:65534:\n";

static void
test_user_resolve(void **state)
{
  (void)state;
  struct rt_user u;
  struct ci_error *err = NULL;
  assert_int_equal(rt_user_resolve("alice", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 1000);
  assert_int_equal(u.gid, 1000);
  assert_int_equal(u.n_groups, 2);
  assert_int_equal(u.groups[0], 10);
  assert_int_equal(u.groups[1], 999);
  rt_user_release(&u);
  /* a uid in passwd takes its group */
  assert_int_equal(rt_user_resolve("1000", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 1000);
  assert_int_equal(u.gid, 1000);
  rt_user_release(&u);
  /* a uid not in passwd: gid 0, like Docker */
  assert_int_equal(rt_user_resolve("4242", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 4242);
  assert_int_equal(u.gid, 0);
  assert_int_equal(u.n_groups, 0);
  rt_user_release(&u);
  /* uid:gid, name:group, uid:group; an explicit group drops supplementary groups */
  assert_int_equal(rt_user_resolve("1000:5", passwd, group, &u, &err), 0);
  assert_int_equal(u.gid, 5);
  assert_int_equal(u.n_groups, 0);
  rt_user_release(&u);
  assert_int_equal(rt_user_resolve("alice:docker", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 1000);
  assert_int_equal(u.gid, 999);
  rt_user_release(&u);
  assert_int_equal(rt_user_resolve("7:wheel", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 7);
  assert_int_equal(u.gid, 10);
  rt_user_release(&u);
  assert_int_equal(rt_user_resolve("nobody", passwd, group, &u, &err), 0);
  assert_int_equal(u.uid, 65534);
  rt_user_release(&u);
  /* root without files */
  assert_int_equal(rt_user_resolve("0", NULL, NULL, &u, &err), 0);
  assert_int_equal(u.uid, 0);
  rt_user_release(&u);
  assert_null(err);
  /* errors name what is missing */
  assert_true(rt_user_resolve("mallory", passwd, group, &u, &err) < 0);
  assert_non_null(strstr(err->msg, "mallory"));
  ci_error_free(&err);
  assert_true(rt_user_resolve("alice:nogroupx", passwd, group, &u, &err) < 0);
  assert_non_null(strstr(err->msg, "nogroupx"));
  ci_error_free(&err);
  assert_true(rt_user_resolve("alice:", passwd, group, &u, &err) < 0);
  ci_error_free(&err);
  assert_true(rt_user_resolve(":1", passwd, group, &u, &err) < 0);
  ci_error_free(&err);
  assert_true(rt_user_resolve("alice", NULL, NULL, &u, &err) < 0);
  ci_error_free(&err);
}

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)))
#define PARSE(fn, o, err, ...) fn(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), o, err)
#define FPARSE(which, o, err, ...) rt_file_opts_parse(which, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), o, err)

/* The default filter's personality rules deny exactly what Docker's profile does not allow:
 * every persona but 0, PER_LINUX32, UNAME26, both, and the query 0xffffffff. */
static void
test_seccomp_personality(void **state)
{
  (void)state;
  static const uint64_t allowed[] = {0, 0x8, 0x20000, 0x20008, 0xffffffff};
  for (size_t i = 0; i < CI_ARRAY_SIZE(allowed); i++)
    assert_false(rt_seccomp_persona_denied(allowed[i]));
  /* ADDR_NO_RANDOMIZE 0x40000, READ_IMPLIES_EXEC 0x400000, MMAP_PAGE_ZERO 0x100000 */
  static const uint64_t denied[] = {1,          7,          9,          0x10,        0x40000,
                                    0x400000,   0x100000,   0x40008,    0x20001,     0x20007,
                                    0x20009,    0x1ffff,    0x7fffffff, 0x80000000,  0xfffffff7,
                                    0xfffdffff, 0xfffdfff7, 0xfffffffe, 0x100000000, UINT64_MAX};
  for (size_t i = 0; i < CI_ARRAY_SIZE(denied); i++)
    assert_true(rt_seccomp_persona_denied(denied[i]));
  /* Every single bit and every pair of bits below 2^32. */
  for (unsigned a = 0; a < 32; a++) {
    for (unsigned b = a; b < 32; b++) {
      uint64_t v = (UINT64_C(1) << a) | (UINT64_C(1) << b);
      bool ok = v == 0x8 || v == 0x20000 || v == 0x20008;
      assert_int_equal(rt_seccomp_persona_denied(v), !ok);
      assert_int_equal(rt_seccomp_persona_denied(~v & 0xffffffff), (~v & 0xffffffff) != 0);
    }
  }
  /* The names the filter and the bundle use: no duplicates, none of what stays allowed. */
  size_t n = 0;
  for (const char *const *p = rt_seccomp_denied; *p; p++, n++) {
    for (const char *const *q = p + 1; *q; q++)
      assert_string_not_equal(*p, *q);
    static const char *const kept[] = {"clone",   "clone3",     "unshare",     "setns", "mount",
                                       "umount2", "pivot_root", "personality", "ptrace"};
    for (size_t k = 0; k < CI_ARRAY_SIZE(kept); k++)
      assert_string_not_equal(*p, kept[k]);
  }
  assert_true(n > 30);
}

/* The compiled filter (libseccomp, dlopen'ed), loaded in a child: the deny-list and the
 * personas fail with EPERM, the rest goes through (NO_NEW_PRIVS here: no user namespace). */
static void
test_seccomp_filter(void **state)
{
  (void)state;
  struct sock_fprog prog = {0, NULL};
  struct ci_error *err = NULL;
  if (rt__seccomp_build(&prog, &err) < 0)
    fail_msg("rt__seccomp_build: %s", err->msg);
  assert_true(prog.len > 0);
  pid_t p = fork();
  assert_true(p >= 0);
  if (p == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || rt__seccomp_apply(&prog) < 0)
      _exit(10);
    errno = 0;
    if (syscall(SYS_keyctl, 0L, -3L, 0L) != -1 || errno != EPERM)
      _exit(11);
    if (syscall(SYS_personality, 0x40000UL) != -1 || errno != EPERM)
      _exit(12);
    if (syscall(SYS_personality, 0xffffffffUL) < 0)
      _exit(13);
    if (syscall(SYS_reboot, 0L, 0L, 0L, 0L) != -1 || errno != EPERM)
      _exit(14);
    if (getppid() <= 0 || syscall(SYS_getpid) != getpid())
      _exit(15);
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(p, &st, 0), p);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  free(prog.filter);
}

static void
test_create_opts(void **state)
{
  (void)state;
  struct rt_create_opts o;
  struct ci_error *err = NULL;
  assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                         "--layer", "/l1", "--hostname", "h", "--mount", "/a:/b", "--mount",
                         "/c:/d:ro", "--volume", "/v:/data", "--tmpfs", "/scratch",
                         "--memory-mb", "512", "--cpus", "1.5", "--network", "none", "--ppid",
                         "42"),
                   0);
  assert_string_equal(o.run_dir, "/r");
  assert_int_equal(o.layers.n, 2);
  assert_string_equal(o.layers.v[0], "/l0"); /* bottom first, as given */
  assert_string_equal(o.hostname, "h");
  assert_int_equal(o.n_mounts, 4);
  assert_int_equal(o.mounts[0].kind, RT_MOUNT_BIND);
  assert_string_equal(o.mounts[0].src, "/a");
  assert_string_equal(o.mounts[0].dst, "/b");
  assert_false(o.mounts[0].ro);
  assert_true(o.mounts[1].ro);
  assert_int_equal(o.mounts[2].kind, RT_MOUNT_VOLUME);
  assert_int_equal(o.mounts[3].kind, RT_MOUNT_TMPFS);
  assert_null(o.mounts[3].src);
  assert_int_equal(o.memory_mb, 512);
  assert_true(o.cpus > 1.49 && o.cpus < 1.51);
  assert_int_equal(o.network, RT_NET_NONE);
  assert_int_equal(o.ppid, 42);
  assert_false(o.image_tmp); /* /tmp is a tmpfs unless asked */
  rt_create_opts_release(&o);
  assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--image-tmp", "--run-dir", "/r",
                         "--layer", "/l0"),
                   0);
  assert_true(o.image_tmp);
  assert_int_equal(o.rootfs, RT_ROOTFS_AUTO); /* the default */
  rt_create_opts_release(&o);
  static const struct {
    const char *v;
    enum rt_rootfs d;
  } drivers[] = {{"auto", RT_ROOTFS_AUTO},
                 {"overlay", RT_ROOTFS_OVERLAY},
                 {"fuse-overlayfs", RT_ROOTFS_FUSE},
                 {"copy", RT_ROOTFS_COPY}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(drivers); i++) {
    assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                           "--rootfs", (char *)drivers[i].v),
                     0);
    assert_int_equal(o.rootfs, drivers[i].d);
    assert_string_equal(rt_rootfs_name(o.rootfs), drivers[i].v); /* what rootless.c passes */
    rt_create_opts_release(&o);
  }
  /* --seccomp: the default filter unless asked; a bad value names the allowed ones. */
  assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0"), 0);
  assert_int_equal(o.seccomp, RT_SECCOMP_DEFAULT);
  rt_create_opts_release(&o);
  static const char *const profiles[] = {"default", "unconfined"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(profiles); i++) {
    assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                           "--seccomp", (char *)profiles[i]),
                     0);
    assert_int_equal(o.seccomp, i == 0 ? RT_SECCOMP_DEFAULT : RT_SECCOMP_UNCONFINED);
    assert_string_equal(rt_seccomp_name(o.seccomp), profiles[i]); /* what rootless.c passes */
    rt_create_opts_release(&o);
  }
  assert_true(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                    "--seccomp", "none") < 0);
  assert_string_equal(err->msg, "--seccomp: expected default or unconfined, not 'none'");
  ci_error_free(&err);
  assert_true(
      PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0", "--seccomp") < 0);
  assert_string_equal(err->msg, "--seccomp needs a value");
  ci_error_free(&err);
  /* An image build diffs the upper layer, which a copy does not have. */
  assert_true(PARSE(rt_create_opts_parse, &o, &err, "--image-tmp", "--run-dir", "/r", "--layer",
                    "/l0", "--rootfs", "copy") < 0);
  assert_int_equal(err->code, CI_EUSAGE);
  assert_non_null(strstr(err->msg, "--rootfs copy"));
  ci_error_free(&err);
  assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0"),
                   0);
  assert_int_equal(o.network, RT_NET_HOST); /* the default */
  assert_int_equal(o.netns_of, 0);
  rt_create_opts_release(&o);
  assert_int_equal(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                         "--network", "private", "--netns-of", "77"),
                   0);
  assert_int_equal(o.network, RT_NET_PRIVATE);
  assert_int_equal(o.netns_of, 77);
  rt_create_opts_release(&o);
  /* Joining another container's network needs a namespace to share. */
  assert_true(PARSE(rt_create_opts_parse, &o, &err, "--run-dir", "/r", "--layer", "/l0",
                    "--netns-of", "77") < 0);
  assert_non_null(strstr(err->msg, "--netns-of"));
  ci_error_free(&err);

  static const char *const bad[][4] = {
      {"--layer", "/l", NULL},                   /* no run dir */
      {"--run-dir", "/r", NULL},                 /* no layer */
      {"--run-dir", "rel", "--layer", "/l"},     /* relative run dir */
      {"--run-dir", "/r", "--layer", "/a,b"},    /* overlay separators */
  };
  for (size_t i = 0; i < 4; i++) {
    int n = 0;
    while (n < 4 && bad[i][n])
      n++;
    assert_true(rt_create_opts_parse(n, (char **)bad[i], &o, &err) < 0);
    assert_int_equal(err->code, CI_EUSAGE);
    ci_error_free(&err);
  }
  const char *bad_opts[][2] = {
      {"--mount", "/a"},        {"--mount", "rel:/b"},     {"--mount", "/a:rel"},
      {"--mount", "/a:/b:rx"},  {"--mount", "/a:/../etc"}, {"--mount", "/a:/"},
      {"--volume", "/a:/b:ro"}, {"--tmpfs", "x"},          {"--memory-mb", "-1"},
      {"--cpus", "abc"},        {"--network", "bridge"},   {"--ppid", "0"},
      {"--hostname", ""},       {"--bogus", "1"},          {"--rootfs", "fuse"},
      {"--rootfs", ""},         {"--netns-of", "x"}};
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad_opts); i++) {
    char *argv[] = {"--run-dir", "/r", "--layer", "/l", (char *)bad_opts[i][0],
                    (char *)bad_opts[i][1], NULL};
    assert_true(rt_create_opts_parse(6, argv, &o, &err) < 0);
    assert_int_equal(err->code, CI_EUSAGE);
    /* the message names the option */
    assert_non_null(strstr(err->msg, bad_opts[i][0]));
    ci_error_free(&err);
  }
  char *last[] = {"--run-dir", "/r", "--layer", NULL};
  assert_true(rt_create_opts_parse(3, last, &o, &err) < 0);
  assert_non_null(strstr(err->msg, "needs a value"));
  ci_error_free(&err);
}

static void
test_resolv_conf(void **state)
{
  (void)state;
  struct ci_buf b = CI_BUF_INIT;
  const char *lo = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
                   "search example.org\n";
  const char *mixed = "nameserver 127.0.0.1\nnameserver 192.0.2.53 # lab\n"
                      "nameserver fd00::53\nsearch lab";
  /* The host's network: the host's file as it is; none: nothing. */
  rt__net_resolv_conf(&b, lo, RT_NET_HOST);
  assert_string_equal(ci_buf_str(&b), lo);
  ci_buf_reset(&b);
  rt__net_resolv_conf(&b, lo, RT_NET_NONE);
  assert_string_equal(ci_buf_str(&b), "");
  /* private: a loopback resolver cannot be reached from the namespace: slirp's forwarder. */
  rt__net_resolv_conf(&b, lo, RT_NET_PRIVATE);
  assert_string_equal(ci_buf_str(&b), "# systemd-resolved\noptions edns0 trust-ad\n"
                                      "search example.org\nnameserver 10.0.2.3\n");
  ci_buf_reset(&b);
  /* Reachable IPv4 resolvers are kept (and then no forwarder); loopback and IPv6 go. */
  rt__net_resolv_conf(&b, mixed, RT_NET_PRIVATE);
  assert_string_equal(ci_buf_str(&b), "nameserver 192.0.2.53 # lab\nsearch lab\n");
  ci_buf_reset(&b);
  rt__net_resolv_conf(&b, "", RT_NET_PRIVATE);
  assert_string_equal(ci_buf_str(&b), "nameserver 10.0.2.3\n");
  ci_buf_release(&b);
}

static void
test_exec_opts(void **state)
{
  (void)state;
  struct rt_exec_opts o;
  struct ci_error *err = NULL;
  assert_int_equal(PARSE(rt_exec_opts_parse, &o, &err, "--pid", "12", "--run-dir", "/r/c1",
                         "--cwd", "/w", "--user", "1000:1000", "--env", "A=1", "--env", "B=x=y",
                         "--ppid", "3", "--", "sh", "-c", "--env"),
                   0);
  assert_int_equal(o.pid, 12);
  assert_string_equal(o.run_dir, "/r/c1");
  assert_string_equal(o.cwd, "/w");
  assert_string_equal(o.user, "1000:1000");
  assert_int_equal(o.env.n, 2);
  assert_string_equal(o.env.v[1], "B=x=y");
  assert_int_equal(o.argv.n, 3);
  assert_string_equal(o.argv.v[2], "--env"); /* after --, nothing is an option */
  rt_exec_opts_release(&o);
  /* --pid is optional (a check of the socket's listener); the run dir is not */
  assert_int_equal(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "/r/c1", "--", "true"), 0);
  assert_int_equal(o.pid, 0);
  rt_exec_opts_release(&o);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "/r", "--") < 0);
  assert_non_null(strstr(err->msg, "no command"));
  ci_error_free(&err);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--pid", "12", "--", "true") < 0);
  assert_non_null(strstr(err->msg, "--run-dir"));
  ci_error_free(&err);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "rel", "--", "true") < 0);
  assert_non_null(strstr(err->msg, "--run-dir"));
  ci_error_free(&err);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "/r", "--env", "NOEQUALS", "--",
                    "true") < 0);
  assert_non_null(strstr(err->msg, "--env"));
  ci_error_free(&err);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "/r", "--cwd", "rel", "--",
                    "true") < 0);
  ci_error_free(&err);
  assert_true(PARSE(rt_exec_opts_parse, &o, &err, "--run-dir", "/r", "true") < 0);
  assert_non_null(strstr(err->msg, "--"));
  ci_error_free(&err);
}

static void
test_file_opts(void **state)
{
  (void)state;
  struct rt_file_opts o;
  struct ci_error *err = NULL;
  assert_int_equal(FPARSE("cp-in", &o, &err, "--pid", "5", "/t.tar"), 0);
  assert_int_equal(o.pid, 5);
  assert_string_equal(o.tar, "/t.tar");
  assert_null(o.path);
  rt_file_opts_release(&o);
  assert_int_equal(
      FPARSE("cp-out", &o, &err, "--pid", "5", "--ppid", "9", "/p", "out.tar"),
      0);
  assert_string_equal(o.path, "/p");
  assert_string_equal(o.tar, "out.tar");
  assert_int_equal(o.ppid, 9);
  rt_file_opts_release(&o);
  assert_int_equal(FPARSE("cat", &o, &err, "--pid", "5", "/f"), 0);
  assert_int_equal(o.max, 1 << 20); /* default 1 MiB */
  rt_file_opts_release(&o);
  assert_int_equal(FPARSE("cat", &o, &err, "--max", "10", "--pid", "5", "/f"),
                   0);
  assert_int_equal(o.max, 10);
  rt_file_opts_release(&o);
  assert_null(err);
  /* --max is cat's only; paths in the container are absolute; counts of positionals */
  assert_true(FPARSE("cp-in", &o, &err, "--max", "1", "--pid", "5", "/t") < 0);
  ci_error_free(&err);
  assert_true(FPARSE("cat", &o, &err, "--pid", "5", "rel") < 0);
  ci_error_free(&err);
  assert_true(FPARSE("cp-out", &o, &err, "--pid", "5", "/p") < 0);
  assert_non_null(strstr(err->msg, "PATH TARFILE"));
  ci_error_free(&err);
  assert_true(FPARSE("cat", &o, &err, "--pid", "5", "/a", "/b") < 0);
  ci_error_free(&err);
  assert_true(FPARSE("cat", &o, &err, "/a") < 0);
  ci_error_free(&err);
}

static void
test_rundir_remove(void **state)
{
  (void)state;
  char dir[] = "/tmp/test_runtime_rd.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p[256];
  /* What overlay leaves: work/work mode 000, plus read-only dirs and a symlink out. */
  snprintf(p, sizeof p, "%s/work", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/work/work", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/work/work/inner", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/work/work/inner/f", dir);
  int fd = open(p, O_CREAT | O_WRONLY, 0000);
  assert_true(fd >= 0);
  close(fd);
  snprintf(p, sizeof p, "%s/work/work/inner", dir);
  assert_int_equal(chmod(p, 0500), 0);
  snprintf(p, sizeof p, "%s/work/work", dir);
  assert_int_equal(chmod(p, 0000), 0);
  /* a symlink to a directory outside must be removed, not followed */
  char outside[] = "/tmp/test_runtime_out.XXXXXX";
  assert_non_null(mkdtemp(outside));
  snprintf(p, sizeof p, "%s/keep", outside);
  fd = open(p, O_CREAT | O_WRONLY, 0644);
  close(fd);
  snprintf(p, sizeof p, "%s/link", dir);
  assert_int_equal(symlink(outside, p), 0);
  snprintf(p, sizeof p, "%s/upper", dir);
  assert_int_equal(mkdir(p, 0555), 0);

  struct ci_error *err = NULL;
  assert_int_equal(rt_rundir_remove(dir, NULL, -1, &err), 0);
  assert_null(err);
  struct stat st;
  assert_int_equal(lstat(dir, &st), -1);
  assert_int_equal(errno, ENOENT);
  snprintf(p, sizeof p, "%s/keep", outside);
  assert_int_equal(lstat(p, &st), 0);
  unlink(p);
  rmdir(outside);
  /* removing what is not there is not an error */
  assert_int_equal(rt_rundir_remove(dir, NULL, -1, &err), 0);
}

static void
on_gc_removed(const char *dir, void *data)
{
  assert_non_null(strstr(dir, "/stale"));
  ++*(int *)data;
}

static void
test_gc(void **state)
{
  (void)state;
  char runs[] = "/tmp/test_runtime_gc.XXXXXX";
  assert_non_null(mkdtemp(runs));
  char p[256];
  /* stale: a free lock */
  snprintf(p, sizeof p, "%s/stale", runs);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/stale/lock", runs);
  int fd = open(p, O_CREAT | O_RDWR, 0600);
  close(fd);
  snprintf(p, sizeof p, "%s/stale/upper", runs);
  assert_int_equal(mkdir(p, 0000), 0);
  /* live: the lock is held */
  snprintf(p, sizeof p, "%s/live", runs);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/live/lock", runs);
  int held = open(p, O_CREAT | O_RDWR, 0600);
  assert_int_equal(flock(held, LOCK_EX), 0);
  /* new: no lock yet (its helper is starting) */
  snprintf(p, sizeof p, "%s/new", runs);
  assert_int_equal(mkdir(p, 0700), 0);
  struct ci_error *err = NULL;
  int removed = 0;
  assert_int_equal(rt_gc(runs, on_gc_removed, &removed, &err), 0);
  assert_int_equal(removed, 1);
  struct stat st;
  snprintf(p, sizeof p, "%s/stale", runs);
  assert_int_equal(lstat(p, &st), -1);
  snprintf(p, sizeof p, "%s/live", runs);
  assert_int_equal(lstat(p, &st), 0);
  snprintf(p, sizeof p, "%s/new", runs);
  assert_int_equal(lstat(p, &st), 0);
  close(held);
  /* the lock is free now, but "new" has none and is younger than a minute: kept */
  snprintf(p, sizeof p, "%s/live", runs);
  assert_int_equal(rename(p, (snprintf(p + 128, 128, "%s/stale2", runs), p + 128)), 0);
  assert_int_equal(rt_gc(runs, on_gc_removed, &removed, &err), 0);
  assert_int_equal(removed, 2);
  snprintf(p, sizeof p, "%s/new", runs);
  assert_int_equal(lstat(p, &st), 0);
  rt_rundir_remove(runs, NULL, -1, &err);
  /* a missing runs dir is fine */
  assert_int_equal(rt_gc("/nonexistent/runs", NULL, NULL, &err), 0);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_subid_find),
      cmocka_unit_test(test_root_id_base),
      cmocka_unit_test(test_idmap_detect_files),
      cmocka_unit_test(test_user_resolve),
      cmocka_unit_test(test_create_opts),
      cmocka_unit_test(test_seccomp_personality),
      cmocka_unit_test(test_seccomp_filter),
      cmocka_unit_test(test_resolv_conf),
      cmocka_unit_test(test_exec_opts),
      cmocka_unit_test(test_file_opts),
      cmocka_unit_test(test_rundir_remove),
      cmocka_unit_test(test_gc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
