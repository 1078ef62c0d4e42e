/* backends/docker.h - Docker Engine API and Podman (compatible API) backends. */
#ifndef BACKEND_DOCKER_H
#define BACKEND_DOCKER_H

#include "backend.h"

/* A `podman system service` that podman.c started; stopped when the backend closes. */
struct docker_service;
void docker_service_stop(struct docker_service *s); /* NULL is accepted */

/* Open the engine API at url ("unix:///..." or "tcp://..."): ping it and read /info, running
 * the loop until they answer.  name is "docker" or "podman".  service (may be NULL) is owned
 * by the backend from then on, also on failure. */
int docker_backend_open_at(uv_loop_t *loop, const char *name, const char *url,
                           struct docker_service *service, struct backend **out,
                           struct ci_error **err);

extern const struct backend_factory docker_factory;
extern const struct backend_factory podman_factory;

#endif
