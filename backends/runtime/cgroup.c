/* backends/runtime/cgroup.c - memory and cpu limits through cgroups (v1 or v2), root only. */
#include "runtime.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"
#define CGROUP2_MAGIC 0x63677270

static bool
is_v2(void)
{
  struct statfs s;
  return statfs(CG_ROOT, &s) == 0 && s.f_type == CGROUP2_MAGIC;
}

const char *
rt__cgroup_version(bool *writable)
{
  if (is_v2()) {
    *writable = access(CG_ROOT, W_OK) == 0;
    return "v2";
  }
  struct stat st;
  if (stat(CG_ROOT "/memory", &st) == 0 || stat(CG_ROOT "/cpu", &st) == 0) {
    *writable = access(CG_ROOT "/memory", W_OK) == 0 && access(CG_ROOT "/cpu", W_OK) == 0;
    return "v1";
  }
  *writable = false;
  return "none";
}

static int
write_str(const char *dir, const char *file, const char *val)
{
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  int fd = open(p, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = write(fd, val, strlen(val));
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(val) ? 0 : -1;
}

static int
mk(struct rt__cgroup *cg, const char *dir, struct ci_error **err)
{
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return ci_error_make(err, -errno, "cannot create cgroup %s: %s", dir, strerror(errno));
  cg->dirs[cg->n++] = xstrdup(dir);
  return 0;
}

int
rt__cgroup_setup(const char *name, uint64_t memory_mb, double cpus, struct rt__cgroup *cg,
                 struct ci_error **err)
{
  bool w;
  const char *v = rt__cgroup_version(&w);
  if (!w)
    return 0;
  char dir[512], val[64];
  unsigned long long bytes = (unsigned long long)memory_mb << 20;
  long period = 100000, quota = (long)(cpus * (double)period);
  if (quota > 0 && quota < 1000)
    quota = 1000;
  if (!strcmp(v, "v2")) {
    snprintf(dir, sizeof dir, CG_ROOT "/cirrus-rt-%s", name);
    if (mk(cg, dir, err) < 0)
      return -1;
    if (memory_mb) {
      snprintf(val, sizeof val, "%llu", bytes);
      if (write_str(dir, "memory.max", val) < 0)
        goto fail;
      write_str(dir, "memory.swap.max", "0");
    }
    if (cpus > 0) {
      snprintf(val, sizeof val, "%ld %ld", quota, period);
      if (write_str(dir, "cpu.max", val) < 0)
        goto fail;
    }
    return 1;
  }
  if (memory_mb) {
    snprintf(dir, sizeof dir, CG_ROOT "/memory/cirrus-rt-%s", name);
    if (mk(cg, dir, err) < 0)
      return -1;
    snprintf(val, sizeof val, "%llu", bytes);
    if (write_str(dir, "memory.limit_in_bytes", val) < 0)
      goto fail;
    char p[600];
    snprintf(p, sizeof p, "%s/memory.memsw.limit_in_bytes", dir);
    if (access(p, F_OK) == 0 && write_str(dir, "memory.memsw.limit_in_bytes", val) < 0)
      goto fail;
  }
  if (cpus > 0) {
    snprintf(dir, sizeof dir, CG_ROOT "/cpu/cirrus-rt-%s", name);
    if (mk(cg, dir, err) < 0)
      return -1;
    snprintf(val, sizeof val, "%ld", period);
    if (write_str(dir, "cpu.cfs_period_us", val) < 0)
      goto fail;
    snprintf(val, sizeof val, "%ld", quota);
    if (write_str(dir, "cpu.cfs_quota_us", val) < 0)
      goto fail;
  }
  return 1;
fail:
  ci_error_make(err, -errno, "cannot set the limits in %s: %s", dir, strerror(errno));
  rt__cgroup_remove(cg);
  return -1;
}

int
rt__cgroup_attach(const struct rt__cgroup *cg, pid_t pid, struct ci_error **err)
{
  char val[32];
  snprintf(val, sizeof val, "%d", (int)pid);
  for (unsigned i = 0; i < cg->n; i++)
    if (write_str(cg->dirs[i], "cgroup.procs", val) < 0)
      return ci_error_make(err, -errno, "cannot move the container into %s: %s", cg->dirs[i],
                           strerror(errno));
  return 0;
}

void
rt__cgroup_remove(struct rt__cgroup *cg)
{
  for (unsigned i = 0; i < cg->n; i++) {
    /* The last tasks may take a moment to leave after the pid namespace died. */
    for (int k = 0; k < 100 && rmdir(cg->dirs[i]) < 0 && errno == EBUSY; k++) {
      struct timespec ts = {0, 2000000};
      nanosleep(&ts, NULL);
    }
    free(cg->dirs[i]);
    cg->dirs[i] = NULL;
  }
  cg->n = 0;
}

void
rt__cgroup_remove_stale(const char *name)
{
  static const char *const fmts[] = {CG_ROOT "/cirrus-rt-%s", CG_ROOT "/memory/cirrus-rt-%s",
                                     CG_ROOT "/cpu/cirrus-rt-%s"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(fmts); i++) {
    char dir[512];
    snprintf(dir, sizeof dir, fmts[i], name);
    rmdir(dir);
  }
}

void
rt__cgroup_sweep(void)
{
  static const char *const parents[] = {CG_ROOT, CG_ROOT "/memory", CG_ROOT "/cpu"};
  time_t now = time(NULL);
  for (size_t i = 0; i < CI_ARRAY_SIZE(parents); i++) {
    DIR *d = opendir(parents[i]);
    if (!d)
      continue;
    struct dirent *de;
    while ((de = readdir(d))) {
      if (strncmp(de->d_name, "cirrus-rt-", 10) != 0)
        continue;
      char dir[600];
      snprintf(dir, sizeof dir, "%s/%s", parents[i], de->d_name);
      struct stat st;
      /* Young ones may belong to a container being created (made, not yet joined). */
      if (stat(dir, &st) == 0 && now - st.st_mtime >= 60)
        rmdir(dir); /* fails (EBUSY) while any process is in it */
    }
    closedir(d);
  }
}
