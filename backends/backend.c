/* backends/backend.c - the registry of backends and shared helpers. */
#include "backend.h"
#include "docker.h"
#include "rootless.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
backend_image_info_release(struct backend_image_info *info)
{
  cfg_env_release(&info->env);
  free(info->user);
  free(info->workdir);
  free(info->id);
  info->user = info->workdir = info->id = NULL;
}

/* Backends in the order "auto" tries them. */
const struct backend_factory *const backend_factories[] = {
    &docker_factory,
    &podman_factory,
    &rootless_factory,
    NULL,
};

int
backend_open(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
             struct ci_error **err)
{
  const char *name = opts && opts->name ? opts->name : "auto";
  if (!strcmp(name, "auto")) {
    const char *env = getenv("CIRRUS_CONTAINER_BACKEND");
    if (env && *env)
      name = env;
  }
  if (strcmp(name, "auto") != 0) {
    for (size_t i = 0; backend_factories[i]; i++)
      if (!strcmp(backend_factories[i]->name, name)) {
        int r = backend_factories[i]->open(loop, opts, out, err);
        if (r == 0 && opts)
          (*out)->network = opts->network;
        return r;
      }
    return ci_error_make(err, CI_EUSAGE,
                         "unknown container backend name \"%s\" (use auto, docker, podman or "
                         "builtin)",
                         name);
  }
  struct ci_buf why = CI_BUF_INIT;
  for (size_t i = 0; backend_factories[i]; i++) {
    struct ci_error *e = NULL;
    if (backend_factories[i]->open(loop, opts, out, &e) == 0) {
      if (opts)
        (*out)->network = opts->network;
      ci_buf_release(&why);
      return 0;
    }
    ci_buf_addf(&why, "\n  %s: %s", backend_factories[i]->name, e->msg);
    ci_error_free(&e);
  }
  int ret = ci_error_make(err, -ENODEV,
                          "failed to instantiate all supported container backends:%s",
                          why.len ? ci_buf_str(&why) : " none is built in");
  ci_buf_release(&why);
  return ret;
}

const char *
backend_owner_host(void)
{
  static char host[256];
  if (!host[0] && (gethostname(host, sizeof host - 1) < 0 || !host[0]))
    snprintf(host, sizeof host, "unknown");
  return host;
}

const char *
backend_owner_pid(void)
{
  static char pid[24];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  return pid;
}

bool
backend_owner_alive(const char *host, const char *pid)
{
  if (!host || !pid || strcmp(host, backend_owner_host()) != 0)
    return false;
  char *end;
  long n = strtol(pid, &end, 10);
  if (end == pid || *end || n <= 1 || n == (long)getpid())
    return false;
  char path[64], comm[32] = "";
  snprintf(path, sizeof path, "/proc/%ld/comm", n);
  FILE *f = fopen(path, "re");
  if (!f)
    return false;
  bool alive = fgets(comm, sizeof comm, f) && !strcmp(comm, "cirrus\n");
  fclose(f);
  return alive;
}
