/* runner/bundle.c - a task's container as an OCI runtime bundle.  See bundle.h. */
#include "bundle.h"

#include "backends/runtime/runtime.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *
bundle_dir_name(const char *task_name)
{
  char *s = xstrdup(task_name && *task_name ? task_name : "task");
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      *p = '-';
  if (s[0] == '.')
    s[0] = '-'; /* never "." or ".." */
  return s;
}

/* The entry's name relative to "/": without leading "/" and "./"; "" for the root. */
static const char *
relative(const char *name)
{
  for (;;) {
    if (name[0] == '/')
      name++;
    else if (name[0] == '.' && (name[1] == '/' || name[1] == '\0'))
      name += 1;
    else
      return name;
  }
}

/* Kept empty: the runtime mounts them. */
static bool
under_pseudo_fs(const char *rel)
{
  static const char *const dirs[] = {"proc/", "sys/", "dev/"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
    if (!strncmp(rel, dirs[i], strlen(dirs[i])) && rel[strlen(dirs[i])])
      return true;
  return false;
}

static int
extract(const char *tar, const char *rootfs, struct ci_error **err)
{
  struct archive *a = archive_read_new();
  struct archive *w = archive_write_disk_new();
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  archive_read_support_filter_none(a);
  int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
              ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_UNLINK;
  if (geteuid() == 0)
    flags |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(w, flags);
  archive_write_disk_set_standard_lookup(w);
  int ret = 0;
  if (archive_read_open_filename(a, tar, 65536) != ARCHIVE_OK) {
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", tar, archive_error_string(a));
    goto out;
  }
  struct archive_entry *e;
  for (;;) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", tar, archive_error_string(a));
      goto out;
    }
    /* a copy: setting the pathname below frees the entry's */
    cleanup_free char *rel = xstrdup(relative(archive_entry_pathname(e)));
    mode_t type = archive_entry_filetype(e);
    if (!*rel || under_pseudo_fs(rel) || type == AE_IFCHR || type == AE_IFBLK)
      continue;
    /* Absolute names below rootfs, built here from checked relative ones. */
    char *path = xasprintf("%s/%s", rootfs, rel);
    archive_entry_set_pathname(e, path);
    free(path);
    const char *hl = archive_entry_hardlink(e);
    if (hl) {
      char *target = xasprintf("%s/%s", rootfs, relative(hl));
      archive_entry_set_hardlink(e, target);
      free(target);
    }
    r = archive_write_header(w, e);
    if (r < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", rel, archive_error_string(w));
      goto out;
    }
    if (archive_entry_size(e) > 0 && r >= ARCHIVE_WARN) {
      const void *buf;
      size_t size;
      la_int64_t off;
      while ((r = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
        if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
          break;
      if (r < ARCHIVE_WARN) {
        ret = ci_error_make(err, CI_EFAIL, "%s: %s", rel, archive_error_string(a));
        goto out;
      }
    }
    if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
      ret = ci_error_make(err, CI_EFAIL, "%s: %s", rel, archive_error_string(w));
      goto out;
    }
  }
  if (archive_write_close(w) != ARCHIVE_OK)
    ret = ci_error_make(err, CI_EFAIL, "%s: %s", rootfs, archive_error_string(w));
out:
  archive_read_free(a);
  archive_write_free(w);
  return ret;
}

static json_t *
strings(const char *const *v)
{
  json_t *a = json_array();
  for (; *v; v++)
    json_array_append_new(a, json_string(*v));
  return a;
}

static json_t *
mnt(const char *dst, const char *type, const char *src, const char *const *opts)
{
  return json_pack("{s:s, s:s, s:s, s:o}", "destination", dst, "type", type, "source", src,
                   "options", strings(opts));
}

static json_t *
id_map(unsigned host)
{
  return json_pack("[{s:i, s:I, s:i}]", "containerID", 0, "hostID", (json_int_t)host, "size", 1);
}

/* config.json: what `runc spec` writes, with the task's process, and for an unprivileged
 * caller what `runc spec --rootless` changes (a user namespace, no gid=5 on devpts, /sys bound). */
/* The built-in runtime's default seccomp filter (backends/runtime/seccomp.c) as an OCI
 * linux.seccomp: everything allowed but the deny-list and the personas, EPERM. */
static json_t *
seccomp_json(void)
{
#if defined(__x86_64__)
  static const char *const arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                       NULL};
#elif defined(__aarch64__)
  static const char *const arches[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", NULL};
#else
  static const char *const arches[] = {NULL}; /* the native one only */
#endif
  json_t *calls = json_array();
  json_array_append_new(calls, json_pack("{s:o, s:s, s:i}", "names", strings(rt_seccomp_denied),
                                         "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM));
  json_t *gt = json_pack("{s:i, s:I, s:s}", "index", 0, "value",
                         (json_int_t)RT_SECCOMP_PERSONA_MAX, "op", "SCMP_CMP_GT");
  json_array_append_new(calls, json_pack("{s:[s], s:s, s:i, s:[o]}", "names", "personality",
                                         "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM, "args",
                                         gt));
  struct rt_seccomp_masked m[RT_SECCOMP_PERSONA_RULES];
  size_t n = rt_seccomp_persona_rules(m);
  for (size_t i = 0; i < n; i++) {
    /* SCMP_CMP_MASKED_EQ: value is the mask, valueTwo what the masked argument must be */
    json_t *arg = json_pack("{s:i, s:I, s:I, s:s}", "index", 0, "value", (json_int_t)m[i].mask,
                            "valueTwo", (json_int_t)m[i].value, "op", "SCMP_CMP_MASKED_EQ");
    json_array_append_new(calls, json_pack("{s:[s], s:s, s:i, s:[o]}", "names", "personality",
                                           "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM,
                                           "args", arg));
  }
  return json_pack("{s:s, s:o, s:o}", "defaultAction", "SCMP_ACT_ALLOW", "architectures",
                   strings(arches), "syscalls", calls);
}

static json_t *
config_json(const struct bundle_spec *b)
{
  bool root = geteuid() == 0;
  static const char *const caps[] = {
      "CAP_CHOWN",  "CAP_DAC_OVERRIDE",     "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",  "CAP_NET_RAW",          "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",         "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",   "CAP_AUDIT_WRITE",      NULL};
  struct cfg_env env = CFG_ENV_INIT;
  if (b->image_env)
    cfg_env_merge(&env, b->image_env);
  cfg_env_merge(&env, b->env);
  if (!cfg_env_get(&env, "PATH"))
    cfg_env_set(&env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!cfg_env_get(&env, "TERM"))
    cfg_env_set(&env, "TERM", "xterm");
  json_t *envv = json_array();
  for (size_t i = 0; i < env.n; i++) {
    char *kv = xasprintf("%s=%s", env.v[i].key, env.v[i].value);
    json_array_append_new(envv, json_string(kv));
    free(kv);
  }
  cfg_env_release(&env);
  json_t *c = json_object();
  json_t *capset = json_pack("{s:o, s:o, s:o}", "bounding", strings(caps), "effective",
                             strings(caps), "permitted", strings(caps));
  static const char *const shell[] = {"/bin/sh", NULL};
  json_object_set_new(c, "ociVersion", json_string("1.0.2"));
  json_object_set_new(c, "process",
                      json_pack("{s:b, s:{s:i, s:i}, s:o, s:o, s:s, s:o, s:b}", "terminal", 1,
                                "user", "uid", 0, "gid", 0, "args", strings(shell), "env", envv,
                                "cwd", b->cwd && *b->cwd ? b->cwd : "/", "capabilities", capset,
                                "noNewPrivileges", 1));
  json_object_set_new(c, "root", json_pack("{s:s, s:b}", "path", "rootfs", "readonly", 0));
  json_object_set_new(c, "hostname", json_string(b->hostname ? b->hostname : "cirrus"));
  static const char *const o_proc[] = {"nosuid", "noexec", "nodev", NULL};
  static const char *const o_dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
  static const char *const o_pts[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                      "mode=0620", "gid=5", NULL};
  static const char *const o_pts_user[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                           "mode=0620", NULL};
  static const char *const o_shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
                                      NULL};
  static const char *const o_mq[] = {"nosuid", "noexec", "nodev", NULL};
  static const char *const o_sys[] = {"rbind", "nosuid", "noexec", "nodev", "ro", NULL};
  json_t *mounts = json_array();
  json_array_append_new(mounts, mnt("/proc", "proc", "proc", o_proc));
  json_array_append_new(mounts, mnt("/dev", "tmpfs", "tmpfs", o_dev));
  json_array_append_new(mounts, mnt("/dev/pts", "devpts", "devpts", root ? o_pts : o_pts_user));
  json_array_append_new(mounts, mnt("/dev/shm", "tmpfs", "shm", o_shm));
  json_array_append_new(mounts, mnt("/dev/mqueue", "mqueue", "mqueue", o_mq));
  /* the host's network: a fresh sysfs would need a network namespace */
  json_array_append_new(mounts, mnt("/sys", "none", "/sys", o_sys));
  json_object_set_new(c, "mounts", mounts);
  json_t *ns = json_pack("[{s:s}, {s:s}, {s:s}, {s:s}]", "type", "pid", "type", "ipc", "type",
                         "uts", "type", "mount");
  json_t *lx = json_object();
  if (!root) {
    json_array_append_new(ns, json_pack("{s:s}", "type", "user"));
    json_object_set_new(lx, "uidMappings", id_map(getuid()));
    json_object_set_new(lx, "gidMappings", id_map(getgid()));
  }
  json_object_set_new(lx, "namespaces", ns);
  static const char *const masked[] = {
      "/proc/acpi",          "/proc/asound",        "/proc/kcore",         "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list",    "/proc/timer_stats",   "/proc/sched_debug",
      "/proc/scsi",          "/sys/firmware",       NULL};
  static const char *const ro[] = {"/proc/bus",       "/proc/fs",           "/proc/irq",
                                   "/proc/sys",       "/proc/sysrq-trigger", NULL};
  json_object_set_new(lx, "maskedPaths", strings(masked));
  json_object_set_new(lx, "readonlyPaths", strings(ro));
  const char *sc = getenv("CIRRUS_SECCOMP");
  if (!sc || strcmp(sc, "unconfined"))
    json_object_set_new(lx, "seccomp", seccomp_json());
  json_object_set_new(c, "linux", lx);
  return c;
}

int
bundle_write(const struct bundle_spec *b, struct ci_error **err)
{
  if (mkdir(b->dir, 0755) < 0)
    return ci_error_make(err, -errno, "cannot create the bundle %s: %s", b->dir,
                         strerror(errno));
  char *rootfs = xasprintf("%s/rootfs", b->dir);
  int ret = 0;
  /* 0755 like an image's "/": the tar's own root entry is not applied */
  if (mkdir(rootfs, 0755) < 0)
    ret = ci_error_make(err, -errno, "cannot create %s: %s", rootfs, strerror(errno));
  else
    ret = extract(b->tar, rootfs, err);
  /* mount points the runtime needs (an engine's archive may leave them out) */
  static const char *const points[] = {"proc", "sys", "dev", "tmp"};
  for (size_t i = 0; ret == 0 && i < sizeof points / sizeof *points; i++) {
    char *p = xasprintf("%s/%s", rootfs, points[i]);
    if (mkdir(p, strcmp(points[i], "tmp") ? 0755 : 01777) < 0 && errno != EEXIST)
      ret = ci_error_make(err, -errno, "cannot create %s: %s", p, strerror(errno));
    free(p);
  }
  free(rootfs);
  if (ret < 0)
    return ret;
  json_t *c = config_json(b);
  char *path = xasprintf("%s/config.json", b->dir);
  if (json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
    ret = ci_error_make(err, CI_EFAIL, "cannot write %s", path);
  free(path);
  json_decref(c);
  return ret;
}
