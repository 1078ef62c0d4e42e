/* backends/runtime/opts.c - the helper's command lines (see README.md, "The helper protocol"). */
#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
parse_pid(const char *opt, const char *v, pid_t *out, struct ci_error **err)
{
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n <= 0 || n > 0x7fffffffL)
    return ci_error_make(err, CI_EUSAGE, "%s: invalid process id '%s'", opt, v);
  *out = (pid_t)n;
  return 0;
}

static int
parse_u64(const char *opt, const char *v, uint64_t *out, struct ci_error **err)
{
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-')
    return ci_error_make(err, CI_EUSAGE, "%s: invalid number '%s'", opt, v);
  *out = n;
  return 0;
}

/* The value of option argv[*i] (which must have one). */
static const char *
value(int argc, char **argv, int *i, struct ci_error **err)
{
  if (*i + 1 >= argc) {
    ci_error_make(err, CI_EUSAGE, "%s needs a value", argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

static bool
abs_clean(const char *p)
{
  if (p[0] != '/')
    return false;
  for (const char *s = p; *s;) {
    while (*s == '/')
      s++;
    const char *e = strchrnul(s, '/');
    if ((e - s == 2 && s[0] == '.' && s[1] == '.'))
      return false;
    s = e;
  }
  return true;
}

static void
add_mount(struct rt_create_opts *o, enum rt_mount_kind kind, char *src, char *dst, bool ro)
{
  o->mounts = xreallocarray(o->mounts, o->n_mounts + 1, sizeof *o->mounts);
  o->mounts[o->n_mounts++] = (struct rt_mount){kind, src, dst, ro};
}

/* HOST:CT[:ro] (bind) or HOSTDIR:CT (volume). */
static int
parse_mount(struct rt_create_opts *o, const char *opt, const char *v, enum rt_mount_kind kind,
            struct ci_error **err)
{
  const char *c1 = strchr(v, ':');
  if (!c1 || c1 == v)
    return ci_error_make(err, CI_EUSAGE, "%s: expected HOST:CONTAINER, not '%s'", opt, v);
  cleanup_free char *src = xstrndup(v, (size_t)(c1 - v));
  const char *dst = c1 + 1;
  const char *c2 = strchr(dst, ':');
  bool ro = false;
  cleanup_free char *d = NULL;
  if (c2) {
    if (kind != RT_MOUNT_BIND || (strcmp(c2 + 1, "ro") && strcmp(c2 + 1, "rw")))
      return ci_error_make(err, CI_EUSAGE, "%s: unknown mount option in '%s'", opt, v);
    ro = !strcmp(c2 + 1, "ro");
    d = xstrndup(dst, (size_t)(c2 - dst));
  } else {
    d = xstrdup(dst);
  }
  if (src[0] != '/')
    return ci_error_make(err, CI_EUSAGE, "%s: host path '%s' is not absolute", opt, src);
  if (!abs_clean(d) || !strcmp(d, "/"))
    return ci_error_make(err, CI_EUSAGE,
                         "%s: container path '%s' must be absolute, without '..', not /", opt, d);
  add_mount(o, kind, steal_pointer(&src), steal_pointer(&d), ro);
  return 0;
}

int
rt_create_opts_parse(int argc, char **argv, struct rt_create_opts *o, struct ci_error **err)
{
  memset(o, 0, sizeof *o);
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "--image-tmp")) {
      o->image_tmp = true;
      continue;
    }
    if (!strcmp(a, "--run-dir") || !strcmp(a, "--layer") || !strcmp(a, "--hostname") ||
        !strcmp(a, "--mount") || !strcmp(a, "--volume") || !strcmp(a, "--tmpfs") ||
        !strcmp(a, "--memory-mb") || !strcmp(a, "--cpus") || !strcmp(a, "--network") ||
        !strcmp(a, "--netns-of") || !strcmp(a, "--ppid") || !strcmp(a, "--rootfs") ||
        !strcmp(a, "--seccomp")) {
      if (!(v = value(argc, argv, &i, err)))
        goto fail;
    } else {
      ci_error_make(err, CI_EUSAGE, "create: unknown argument '%s'", a);
      goto fail;
    }
    if (!strcmp(a, "--run-dir")) {
      if (v[0] != '/') {
        ci_error_make(err, CI_EUSAGE, "--run-dir: '%s' is not absolute", v);
        goto fail;
      }
      free(o->run_dir);
      o->run_dir = xstrdup(v);
    } else if (!strcmp(a, "--layer")) {
      if (v[0] != '/' || strchr(v, ',') || strchr(v, ':')) {
        ci_error_make(err, CI_EUSAGE, "--layer: '%s' must be absolute, without ',' or ':'", v);
        goto fail;
      }
      ci_strv_push(&o->layers, v);
    } else if (!strcmp(a, "--hostname")) {
      size_t n = strlen(v);
      if (n == 0 || n > 64) {
        ci_error_make(err, CI_EUSAGE, "--hostname: '%s' must have 1 to 64 characters", v);
        goto fail;
      }
      free(o->hostname);
      o->hostname = xstrdup(v);
    } else if (!strcmp(a, "--mount")) {
      if (parse_mount(o, a, v, RT_MOUNT_BIND, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--volume")) {
      if (parse_mount(o, a, v, RT_MOUNT_VOLUME, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--tmpfs")) {
      if (!abs_clean(v) || !strcmp(v, "/")) {
        ci_error_make(err, CI_EUSAGE, "--tmpfs: '%s' must be absolute, without '..', not /", v);
        goto fail;
      }
      add_mount(o, RT_MOUNT_TMPFS, NULL, xstrdup(v), false);
    } else if (!strcmp(a, "--memory-mb")) {
      if (parse_u64(a, v, &o->memory_mb, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--cpus")) {
      char *end;
      errno = 0;
      double d = strtod(v, &end);
      if (errno || end == v || *end || !isfinite(d) || d < 0 || d > 4096) {
        ci_error_make(err, CI_EUSAGE, "--cpus: invalid number '%s'", v);
        goto fail;
      }
      o->cpus = d;
    } else if (!strcmp(a, "--network")) {
      if (!strcmp(v, "host"))
        o->network = RT_NET_HOST;
      else if (!strcmp(v, "none"))
        o->network = RT_NET_NONE;
      else if (!strcmp(v, "private"))
        o->network = RT_NET_PRIVATE;
      else {
        ci_error_make(err, CI_EUSAGE, "--network: expected host, none or private, not '%s'", v);
        goto fail;
      }
    } else if (!strcmp(a, "--netns-of")) {
      if (parse_pid(a, v, &o->netns_of, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--ppid")) {
      if (parse_pid(a, v, &o->ppid, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--seccomp")) {
      if (rt_seccomp_parse(v, &o->seccomp) < 0) {
        ci_error_make(err, CI_EUSAGE, "--seccomp: expected default or unconfined, not '%s'", v);
        goto fail;
      }
    } else if (!strcmp(a, "--rootfs")) {
      if (rt_rootfs_parse(v, &o->rootfs) < 0) {
        ci_error_make(err, CI_EUSAGE,
                      "--rootfs: expected auto, overlay, fuse-overlayfs or copy, not '%s'", v);
        goto fail;
      }
    }
  }
  if (o->rootfs == RT_ROOTFS_COPY && o->image_tmp) {
    ci_error_make(err, CI_EUSAGE,
                  "--rootfs copy: an image build (--image-tmp) needs an upper layer (overlay or "
                  "fuse-overlayfs)");
    goto fail;
  }
  if (!o->run_dir) {
    ci_error_make(err, CI_EUSAGE, "create: --run-dir is required");
    goto fail;
  }
  if (o->layers.n == 0) {
    ci_error_make(err, CI_EUSAGE, "create: at least one --layer is required");
    goto fail;
  }
  if (o->netns_of && o->network == RT_NET_HOST) {
    ci_error_make(err, CI_EUSAGE, "--netns-of: needs --network none or private (with the "
                                  "host's network there is no namespace to share)");
    goto fail;
  }
  return 0;
fail:
  rt_create_opts_release(o);
  return -1;
}

void
rt_create_opts_release(struct rt_create_opts *o)
{
  free(o->run_dir);
  ci_strv_release(&o->layers);
  free(o->hostname);
  for (size_t i = 0; i < o->n_mounts; i++) {
    free(o->mounts[i].src);
    free(o->mounts[i].dst);
  }
  free(o->mounts);
  memset(o, 0, sizeof *o);
}

int
rt_exec_opts_parse(int argc, char **argv, struct rt_exec_opts *o, struct ci_error **err)
{
  memset(o, 0, sizeof *o);
  int i = 0;
  for (; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (strcmp(a, "--pid") && strcmp(a, "--cwd") && strcmp(a, "--user") && strcmp(a, "--env") &&
        strcmp(a, "--ppid") && strcmp(a, "--run-dir")) {
      ci_error_make(err, CI_EUSAGE, "exec: unknown argument '%s' (the command follows --)", a);
      goto fail;
    }
    if (!(v = value(argc, argv, &i, err)))
      goto fail;
    if (!strcmp(a, "--pid")) {
      if (parse_pid(a, v, &o->pid, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--ppid")) {
      if (parse_pid(a, v, &o->ppid, err) < 0)
        goto fail;
    } else if (!strcmp(a, "--run-dir")) {
      if (v[0] != '/') {
        ci_error_make(err, CI_EUSAGE, "--run-dir: '%s' is not absolute", v);
        goto fail;
      }
      free(o->run_dir);
      o->run_dir = xstrdup(v);
    } else if (!strcmp(a, "--cwd")) {
      if (v[0] != '/') {
        ci_error_make(err, CI_EUSAGE, "--cwd: '%s' is not absolute", v);
        goto fail;
      }
      free(o->cwd);
      o->cwd = xstrdup(v);
    } else if (!strcmp(a, "--user")) {
      free(o->user);
      o->user = xstrdup(v);
    } else if (!strcmp(a, "--env")) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v) {
        ci_error_make(err, CI_EUSAGE, "--env: expected KEY=VALUE, not '%s'", v);
        goto fail;
      }
      ci_strv_push(&o->env, v);
    }
  }
  for (; i < argc; i++)
    ci_strv_push(&o->argv, argv[i]);
  /* NULL after the last element (not counted): argv.v can go to execve as it is. */
  CI_GROW(o->argv.v, o->argv.alloc, o->argv.n + 1);
  o->argv.v[o->argv.n] = NULL;
  if (!o->run_dir) {
    ci_error_make(err, CI_EUSAGE, "exec: --run-dir is required");
    goto fail;
  }
  if (o->argv.n == 0 || !o->argv.v[0][0]) {
    ci_error_make(err, CI_EUSAGE, "exec: no command after --");
    goto fail;
  }
  return 0;
fail:
  rt_exec_opts_release(o);
  return -1;
}

void
rt_exec_opts_release(struct rt_exec_opts *o)
{
  free(o->run_dir);
  free(o->cwd);
  free(o->user);
  ci_strv_release(&o->env);
  ci_strv_release(&o->argv);
  memset(o, 0, sizeof *o);
}

int
rt_file_opts_parse(const char *which, int argc, char **argv, struct rt_file_opts *o,
                   struct ci_error **err)
{
  memset(o, 0, sizeof *o);
  o->max = 1 << 20;
  const char *pos[2] = {NULL, NULL};
  bool is_diff = !strcmp(which, "diff"); /* UPPERDIR TARFILE */
  unsigned npos = 0, want = !strcmp(which, "cp-out") || is_diff ? 2 : 1;
  bool is_cat = !strcmp(which, "cat");
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "--pid") || !strcmp(a, "--ppid") || (is_cat && !strcmp(a, "--max"))) {
      if (!(v = value(argc, argv, &i, err)))
        goto fail;
      if (!strcmp(a, "--pid") ? parse_pid(a, v, &o->pid, err) < 0
          : !strcmp(a, "--ppid") ? parse_pid(a, v, &o->ppid, err) < 0
                                 : parse_u64(a, v, &o->max, err) < 0)
        goto fail;
    } else if (a[0] == '-' && a[1] == '-') {
      ci_error_make(err, CI_EUSAGE, "%s: unknown option '%s'", which, a);
      goto fail;
    } else if (npos < want) {
      pos[npos++] = a;
    } else {
      ci_error_make(err, CI_EUSAGE, "%s: unexpected argument '%s'", which, a);
      goto fail;
    }
  }
  if (!o->pid) {
    ci_error_make(err, CI_EUSAGE, "%s: --pid is required", which);
    goto fail;
  }
  if (npos != want) {
    ci_error_make(err, CI_EUSAGE, "%s: expected %s", which,
                  !strcmp(which, "cp-in")    ? "TARFILE"
                  : !strcmp(which, "cp-out") ? "PATH TARFILE"
                  : is_diff                  ? "UPPERDIR TARFILE"
                                             : "PATH");
    goto fail;
  }
  if (!strcmp(which, "cp-in")) {
    o->tar = xstrdup(pos[0]);
  } else {
    if (pos[0][0] != '/') {
      ci_error_make(err, CI_EUSAGE, "%s: %s path '%s' is not absolute", which,
                    is_diff ? "upper directory" : "container", pos[0]);
      goto fail;
    }
    o->path = xstrdup(pos[0]);
    if (want == 2)
      o->tar = xstrdup(pos[1]);
  }
  return 0;
fail:
  rt_file_opts_release(o);
  return -1;
}

void
rt_file_opts_release(struct rt_file_opts *o)
{
  free(o->path);
  free(o->tar);
  memset(o, 0, sizeof *o);
}
