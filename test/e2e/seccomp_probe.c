/* test/e2e/seccomp_probe.c - what the built-in runtime's seccomp filter lets a step do, for
 * test/e2e/runtime.sh (built there with `cc -static`, bound into the container).  Prints one
 * "NAME=RESULT" line per probe: RESULT is "ok" or the errno's name.  Each probe is harmless
 * when allowed: a keyring lookup, personality changes that are undone, a reboot() with a
 * wrong magic number (EINVAL once the filter lets it through). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void
report(const char *name, long r, int e)
{
  if (r >= 0) {
    printf("%s=ok\n", name);
    return;
  }
  const char *n = e == EPERM    ? "EPERM"
                  : e == EINVAL ? "EINVAL"
                  : e == ENOSYS ? "ENOSYS"
                  : e == ENOKEY ? "ENOKEY"
                  : e == EACCES ? "EACCES"
                                : NULL;
  if (n)
    printf("%s=%s\n", name, n);
  else
    printf("%s=errno%d\n", name, e);
}

#define PROBE(name, ...)                                                                           \
  do {                                                                                             \
    errno = 0;                                                                                     \
    long r_ = syscall(__VA_ARGS__);                                                                \
    report(name, r_, errno);                                                                       \
  } while (0)

#if defined(__x86_64__)
/* The i386 ABI from a 64-bit process: `int $0x80` takes i386 syscall numbers, and seccomp sees
 * AUDIT_ARCH_I386. */
static long
int80(long nr, long a, long b, long c)
{
  long ret;
  __asm__ volatile("int $0x80"
                   : "=a"(ret)
                   : "a"(nr), "b"(a), "c"(b), "d"(c)
                   : "memory", "cc", "r8", "r9", "r10", "r11");
  return (int)ret;
}
#endif

int
main(void)
{
  /* keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) */
  PROBE("keyctl", SYS_keyctl, 0L, -3L, 0L);
  PROBE("personality_query", SYS_personality, 0xffffffffUL);
  PROBE("personality_linux32", SYS_personality, 0x0008UL);
  PROBE("personality_no_randomize", SYS_personality, 0x0040000UL);
  syscall(SYS_personality, 0UL);
  PROBE("reboot", SYS_reboot, 0L, 0L, 0L, 0L);
#if defined(__x86_64__)
  long r = int80(288 /* i386 keyctl */, 0, -3, 0);
  report("keyctl_i386", r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
  r = int80(88 /* i386 reboot */, 0, 0, 0);
  report("reboot_i386", r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
#endif
  return 0;
}
