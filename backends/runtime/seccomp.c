/* backends/runtime/seccomp.c - the default seccomp filter of a container's steps.
 *
 * A deny-list in the spirit of Docker's and Podman's default profile (README.md lists the
 * syscalls, and where and why we differ): everything is allowed but syscalls that reach what
 * a user namespace does not isolate (kernel modules, kexec, the keyring, the clock, swap,
 * accounting, the kernel log, perf, bpf, userfaultfd, raw I/O ports, obsolete interfaces) and
 * personality() with a persona other than Linux's own; those fail with EPERM.  Namespaces,
 * mounts and pivot_root stay allowed: a step may run containers of its own.
 *
 * The monitor builds the filter once per container with libseccomp (rt__seccomp_build, before
 * it clones the init, so the init inherits the compiled program), and each step's process
 * loads it right before it switches user and execs (rt__seccomp_apply): one prctl per step.
 * libseccomp is dlopen'ed there: linked, every exec of the helper (one per step) would load
 * it; and `cirrus`, which shares this library for option parsing, never touches it.
 *
 * Architectures: the native one and those the kernel runs beside it (x86_64: x86 and x32, so
 * that `int 0x80` is filtered too; aarch64: arm; s390x: s390).  A syscall of any other ABI
 * kills the process: nothing passes unfiltered.
 */
#include "runtime.h"
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names libseccomp resolves per architecture; a name an architecture lacks is skipped there,
 * one this libseccomp does not know is skipped altogether. */
const char *const rt_seccomp_denied[] = {
    /* kernel code: modules, kexec, the BPF verifier and JIT */
    "init_module", "finit_module", "delete_module", "create_module", "query_module",
    "get_kernel_syms", "kexec_load", "kexec_file_load", "bpf",
    /* the keyring is not namespaced */
    "add_key", "keyctl", "request_key",
    /* host-wide state: the clock, swap, accounting, quotas, the kernel log, reboot */
    "settimeofday", "stime", "clock_settime", "clock_settime64", "swapon", "swapoff", "acct",
    "quotactl", "quotactl_fd", "syslog", "reboot", "vhangup",
    /* information about, or access to, the host */
    "perf_event_open", "lookup_dcookie", "open_by_handle_at", "userfaultfd", "iopl", "ioperm",
    "move_pages", "migrate_pages",
    /* obsolete interfaces */
    "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", NULL};

int
rt_seccomp_parse(const char *s, enum rt_seccomp *out)
{
  if (!strcmp(s, "default"))
    *out = RT_SECCOMP_DEFAULT;
  else if (!strcmp(s, "unconfined"))
    *out = RT_SECCOMP_UNCONFINED;
  else
    return -1;
  return 0;
}

const char *
rt_seccomp_name(enum rt_seccomp s)
{
  return s == RT_SECCOMP_UNCONFINED ? "unconfined" : "default";
}

/*
 * personality(2) is allowed for PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), both
 * (0x20008) and the query 0xffffffff, as by Docker; anything else (ADDR_NO_RANDOMIZE,
 * READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, other personas) fails.  libseccomp compares an argument
 * once per rule and refuses an allowing rule under an allowing default, so the denied values
 * are a union of rules of one masked comparison each, (a0 & mask) == value:
 *   - for each pair of neighbours (o_i, o_i+1), cyclically, of the 30 bits other than 3 and
 *     17 ("other bits"): o_i set and o_i+1 clear.  A value with some other bit set and some
 *     clear has such a pair; the allowed ones have none (all clear, or all set);
 *   - every other bit set and bit 3 clear, or bit 17 clear: the rest but 0xffffffff;
 * and a0 > 0xffffffff (RT_SECCOMP_PERSONA_MAX).  Values with no other bit set are the four
 * allowed personas.
 */
size_t
rt_seccomp_persona_rules(struct rt_seccomp_masked out[RT_SECCOMP_PERSONA_RULES])
{
  const uint64_t keep = (1u << 3) | (1u << 17);
  unsigned bits[30], n = 0;
  for (unsigned b = 0; b < 32; b++)
    if (!(keep & (UINT64_C(1) << b)))
      bits[n++] = b;
  uint64_t others = UINT64_C(0xffffffff) & ~keep;
  size_t k = 0;
  for (unsigned i = 0; i < n; i++) {
    uint64_t set = UINT64_C(1) << bits[i], clear = UINT64_C(1) << bits[(i + 1) % n];
    out[k++] = (struct rt_seccomp_masked){set | clear, set};
  }
  out[k++] = (struct rt_seccomp_masked){others | (1u << 3), others};
  out[k++] = (struct rt_seccomp_masked){others | (1u << 17), others};
  return k;
}

bool
rt_seccomp_persona_denied(uint64_t a0)
{
  struct rt_seccomp_masked r[RT_SECCOMP_PERSONA_RULES];
  size_t n = rt_seccomp_persona_rules(r);
  if (a0 > RT_SECCOMP_PERSONA_MAX)
    return true;
  for (size_t i = 0; i < n; i++)
    if ((a0 & r[i].mask) == r[i].value)
      return true;
  return false;
}

/* ---------------------------------------------------------------- libseccomp, dlopen'ed */

#define SC_FUNCS                                                                                   \
  X(seccomp_init)                                                                                  \
  X(seccomp_release)                                                                               \
  X(seccomp_arch_native)                                                                           \
  X(seccomp_arch_add)                                                                              \
  X(seccomp_attr_set)                                                                              \
  X(seccomp_syscall_resolve_name)                                                                  \
  X(seccomp_rule_add)                                                                              \
  X(seccomp_export_bpf)
static struct {
#define X(f) __typeof__(&f) f;
  SC_FUNCS
#undef X
} sc;

static int
sc_load(struct ci_error **err)
{
  static bool loaded;
  if (loaded)
    return 0;
  void *h = dlopen(CI_LIBSECCOMP_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return ci_error_make(err, CI_EFAIL,
                         "cannot load %s for the default seccomp filter (install libseccomp2, or "
                         "run with --seccomp unconfined): %s",
                         CI_LIBSECCOMP_SONAME, dlerror());
#define X(f)                                                                                       \
  if (!(sc.f = (__typeof__(&f))dlsym(h, #f)))                                                      \
    return ci_error_make(err, CI_EFAIL, "%s has no %s", CI_LIBSECCOMP_SONAME, #f);
  SC_FUNCS
#undef X
  loaded = true;
  return 0;
}

static void
ctx_release(scmp_filter_ctx *ctx)
{
  if (*ctx)
    sc.seccomp_release(*ctx);
}
#define cleanup_scmp __attribute__((cleanup(ctx_release)))

static int
add_arches(scmp_filter_ctx ctx, struct ci_error **err)
{
  uint32_t native = sc.seccomp_arch_native(), extra[2] = {0, 0};
  if (native == SCMP_ARCH_X86_64) {
    extra[0] = SCMP_ARCH_X86;
    extra[1] = SCMP_ARCH_X32;
  } else if (native == SCMP_ARCH_AARCH64) {
    extra[0] = SCMP_ARCH_ARM;
  } else if (native == SCMP_ARCH_S390X) {
    extra[0] = SCMP_ARCH_S390;
  }
  for (size_t i = 0; i < 2 && extra[i]; i++) {
    int r = sc.seccomp_arch_add(ctx, extra[i]);
    if (r < 0 && r != -EEXIST)
      return ci_error_make(err, r, "seccomp: cannot add architecture 0x%x: %s", extra[i],
                           strerror(-r));
  }
  return 0;
}

int
rt__seccomp_build(struct sock_fprog *out, struct ci_error **err)
{
  if (sc_load(err) < 0)
    return -1;
  cleanup_scmp scmp_filter_ctx ctx = sc.seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx)
    return ci_error_make(err, CI_EFAIL, "seccomp: cannot make a filter");
  int r;
  /* A syscall of an ABI the filter does not know would otherwise be neither allowed nor
   * denied by a rule: kill the process. */
  if ((r = sc.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
    return ci_error_make(err, r, "seccomp: cannot set the bad-architecture action: %s",
                         strerror(-r));
  /* A binary tree over syscall numbers instead of a list (best effort: libseccomp >= 2.5). */
  sc.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (add_arches(ctx, err) < 0)
    return -1;
  for (const char *const *p = rt_seccomp_denied; *p; p++) {
    int nr = sc.seccomp_syscall_resolve_name(*p);
    if (nr == __NR_SCMP_ERROR)
      continue;
    if ((r = sc.seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0)
      return ci_error_make(err, r, "seccomp: cannot add a rule for %s: %s", *p, strerror(-r));
  }
  int nr = sc.seccomp_syscall_resolve_name("personality");
  struct rt_seccomp_masked m[RT_SECCOMP_PERSONA_RULES];
  size_t n = rt_seccomp_persona_rules(m);
  r = sc.seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                          SCMP_A0(SCMP_CMP_GT, RT_SECCOMP_PERSONA_MAX, 0));
  for (size_t i = 0; r >= 0 && i < n; i++)
    r = sc.seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, m[i].mask, m[i].value));
  if (r < 0)
    return ci_error_make(err, r, "seccomp: cannot add the rules for personality: %s", strerror(-r));
  cleanup_close int fd = memfd_create("cirrus-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "seccomp: memfd_create: %s", strerror(errno));
  if ((r = sc.seccomp_export_bpf(ctx, fd)) < 0)
    return ci_error_make(err, r, "seccomp: cannot export the filter: %s", strerror(-r));
  struct stat st;
  if (fstat(fd, &st) < 0)
    return ci_error_make(err, -errno, "seccomp: fstat: %s", strerror(errno));
  size_t size = (size_t)st.st_size;
  if (size == 0 || size % sizeof(struct sock_filter) ||
      size / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return ci_error_make(err, CI_EFAIL, "seccomp: the exported filter has %zu bytes", size);
  cleanup_free struct sock_filter *prog = xmalloc(size);
  if (pread(fd, prog, size, 0) != (ssize_t)size)
    return ci_error_make(err, CI_EFAIL, "seccomp: cannot read the exported filter back");
  out->len = (unsigned short)(size / sizeof(struct sock_filter));
  out->filter = steal_pointer(&prog);
  return 0;
}

int
rt__seccomp_apply(const struct sock_fprog *prog)
{
  /* No NO_NEW_PRIVS: the caller is root in the container's user namespace (CAP_SYS_ADMIN
   * there), which lets it load a filter, and setuid programs of the image keep working. */
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0);
}
