/* cmd/runtime_main.c - cirrus-runtime, the helper of the built-in rootless runtime.
 *
 * A separate small executable (it links ci_runtime, ci_common, libc and libarchive only): it is
 * exec'd for every step, so its start-up must stay well under a millisecond.  The protocol is in
 * backends/runtime/README.md; backends/rootless.c is its caller.
 */
#include "backends/runtime/runtime.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PREFIX "cirrus-runtime: "

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CI_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(CI_ASAN)
/* LeakSanitizer stops the world through /proc/self and ptrace, which a process inside a
 * container's namespaces and root cannot use (it hangs at exit).  Those exits skip the check;
 * every other subcommand keeps it. */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
  return rt_joined_container();
}
#endif

static int
usage(void)
{
  fputs("usage: cirrus-runtime create --run-dir DIR --layer DIR... [--hostname H]\n"
        "                             [--mount HOST:CT[:ro]]... [--volume HOSTDIR:CT]...\n"
        "                             [--tmpfs CT]... [--memory-mb N] [--cpus X]\n"
        "                             [--network host|none|private [--netns-of PID]]\n"
        "                             [--image-tmp] [--ppid PID]\n"
        "                             [--rootfs auto|overlay|fuse-overlayfs|copy]\n"
        "                             [--seccomp default|unconfined]\n"
        "       cirrus-runtime exec --run-dir DIR [--pid PID] [--cwd DIR] [--user USER]\n"
        "                           [--env K=V]... [--ppid PID] -- ARGV...\n"
        "       cirrus-runtime cp-in --pid PID [--ppid PID] TARFILE\n"
        "       cirrus-runtime cp-out --pid PID [--ppid PID] PATH TARFILE\n"
        "       cirrus-runtime cat --pid PID [--max N] [--ppid PID] PATH\n"
        "       cirrus-runtime diff --pid PID [--ppid PID] UPPERDIR TARFILE\n"
        "       cirrus-runtime gc --runs DIR\n"
        "       cirrus-runtime check\n",
        stderr);
  return 1;
}

static int
fail(struct ci_error **err, int code)
{
  fprintf(stderr, PREFIX "%s\n", (*err)->msg);
  ci_error_free(err);
  return code;
}

/* Die with the runner, and not at all if it is already gone. */
static void
tie_to_parent(pid_t ppid)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (ppid && getppid() != ppid) {
    fprintf(stderr, PREFIX "the runner (pid %d) is gone\n", (int)ppid);
    exit(1);
  }
}

/* Find --ppid before parsing, so that the check comes first. */
static pid_t
find_ppid(int argc, char **argv)
{
  for (int i = 0; i + 1 < argc; i++) {
    if (!strcmp(argv[i], "--"))
      break;
    if (!strcmp(argv[i], "--ppid"))
      return (pid_t)atol(argv[i + 1]);
  }
  return 0;
}

static void
on_warn(const char *msg, void *data)
{
  (void)data;
  fprintf(stderr, PREFIX "%s\n", msg);
}

static void
on_removed(const char *dir, void *data)
{
  (void)data;
  printf("removed %s\n", dir);
}

static void __attribute__((noreturn))
mirror_status(int st)
{
  if (WIFEXITED(st))
    exit(WEXITSTATUS(st));
  int sig = WTERMSIG(st);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  sigprocmask(SIG_UNBLOCK, &s, NULL);
  prctl(PR_SET_PDEATHSIG, 0);
  kill(getpid(), sig);
  exit(128 + sig);
}

int
main(int argc, char **argv)
{
  if (argc < 2)
    return usage();
  const char *cmd = argv[1];
  int ac = argc - 2;
  char **av = argv + 2;
  struct ci_error *err = NULL;
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
    usage();
    return 0;
  }
  tie_to_parent(find_ppid(ac, av));
  rt_set_argv_area(argv[0], (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]));
  if (!strcmp(cmd, "exec")) {
    struct rt_exec_opts o;
    if (rt_exec_opts_parse(ac, av, &o, &err) < 0)
      return fail(&err, 1);
    int st = 0, code = 1;
    int r = rt_exec(&o, &st, &code, &err);
    rt_exec_opts_release(&o);
    if (r < 0)
      return fail(&err, code);
    fflush(stdout);
    mirror_status(st);
  }
  if (!strcmp(cmd, "create")) {
    struct rt_create_opts o;
    if (rt_create_opts_parse(ac, av, &o, &err) < 0)
      return fail(&err, 1);
    o.warn = on_warn;
    int r = rt_create(&o, 1, 0, &err);
    rt_create_opts_release(&o);
    if (r < 0)
      return fail(&err, 1);
    return 0;
  }
  if (!strcmp(cmd, "cp-in") || !strcmp(cmd, "cp-out") || !strcmp(cmd, "cat") ||
      !strcmp(cmd, "diff")) {
    struct rt_file_opts o;
    if (rt_file_opts_parse(cmd, ac, av, &o, &err) < 0)
      return fail(&err, 1);
    int r = !strcmp(cmd, "cp-in")    ? rt_copy_in(&o, &err)
            : !strcmp(cmd, "cp-out") ? rt_copy_out(&o, &err)
            : !strcmp(cmd, "diff")   ? rt_diff(&o, &err)
                                     : rt_cat(&o, 1, &err);
    rt_file_opts_release(&o);
    if (r < 0)
      return fail(&err, err->code == -ENOENT && strcmp(cmd, "cp-in") ? 2 : 1);
    return 0;
  }
  if (!strcmp(cmd, "gc")) {
    /* gc --runs DIR [--ppid PID] (the backend passes --ppid to every command) */
    const char *runs = NULL;
    for (int i = 0; i < ac; i += 2) {
      if (i + 1 < ac && !strcmp(av[i], "--runs") && !runs)
        runs = av[i + 1];
      else if (i + 1 >= ac || strcmp(av[i], "--ppid"))
        runs = "";
    }
    if (!runs || runs[0] != '/') {
      fprintf(stderr, PREFIX "gc: expected --runs DIR (absolute) [--ppid PID]\n");
      return 1;
    }
    int r = rt_gc(runs, on_removed, NULL, &err);
    fflush(stdout);
    return r < 0 ? fail(&err, 1) : 0;
  }
  if (!strcmp(cmd, "check")) {
    fflush(stdout);
    int r = rt_check(1, &err);
    return r < 0 ? fail(&err, 1) : 0;
  }
  fprintf(stderr, PREFIX "unknown command '%s'\n", cmd);
  return usage();
}
