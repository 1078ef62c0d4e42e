/* test/unit/fake_backend.h - a scripted backend for scheduler tests (no engine).
 *
 * Containers are records; exec interprets the launcher's script line by line:
 *   echo TEXT        output "TEXT\n" (with $NAME expanded from the exec env)
 *   echo K=V >> $CIRRUS_ENV   record K=V in the step's $CIRRUS_ENV file
 *   exit N / false / true
 *   sleep MS         wait MS milliseconds (a kill exec interrupts it)
 * Internal execs (listing, port wait) print nothing and succeed, but for the port wait
 * port_wait_output and port_wait_code when set.  copy_out writes a tar holding
 * "<basename>/f.txt" ("fake\n"); volumes and builds are logged ("volume NAME", "rmvolume NAME",
 * "build TAG").
 * Every callback is delivered asynchronously through a zero-delay timer.
 */
#ifndef FAKE_BACKEND_H
#define FAKE_BACKEND_H

#include "backends/backend.h"

struct fake_backend {
  struct backend base;
  unsigned created, removed, execs, pulls;
  unsigned max_concurrent, concurrent; /* containers alive at once */
  const char *fail_pull_image;         /* image whose pull fails */
  struct ci_strv log;                  /* "create NAME", "exec ...", "remove ID" ... */
  struct fake_op *ops;                 /* pending timers */
  unsigned open_handles;
  void *files;                         /* CIRRUS_ENV contents by path */
  /* Images that are absent (image_prepare fails with -ENOENT) until image_build makes them;
   * "*" = every image that was not built. */
  struct ci_strv absent, built;
  unsigned builds, volumes_alive;
  /* What the port wait (an internal exec) prints on stdout, and its exit status. */
  const char *port_wait_output;
  int port_wait_code;
};

struct backend *fake_backend_new(uv_loop_t *loop);
struct fake_backend *fake_backend_get(struct backend *b);
void fake_backend_free(struct backend *b);

#endif
