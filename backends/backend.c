/* backends/backend.c - the registry of backends and shared helpers. */
#include "backend.h"
#include "docker.h"
#include "rootless.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
