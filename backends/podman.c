/* backends/podman.c - find Podman's API socket, or start `podman system service` on a private
 * socket when none answers (as upstream does), then talk to it with docker.c's client.
 *
 * Order: CONTAINER_HOST; the rootful socket /run/podman/podman.sock (root);
 * $XDG_RUNTIME_DIR/podman/podman.sock (rootless); else a service of our own on
 * <tmp>/cirrus-podman-XXXXXX/podman.sock, in its own process group, killed (TERM, then KILL
 * after a second) and its directory removed when the backend closes.  Works the same as root
 * and as an unprivileged user.
 */
#include "docker.h"
#include "backends/curl/curl_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct docker_service {
  pid_t pid;
  char *dir;
  char *sock;
};

static void
sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

void
docker_service_stop(struct docker_service *s)
{
  if (!s)
    return;
  if (s->pid > 0) {
    kill(-s->pid, SIGTERM);
    for (int i = 0; i < 20; i++) {
      if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
        s->pid = 0;
        break;
      }
      sleep_ms(50);
    }
    if (s->pid > 0) {
      kill(-s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
    }
  }
  if (s->sock)
    unlink(s->sock);
  if (s->dir)
    rmdir(s->dir);
  free(s->sock);
  free(s->dir);
  free(s);
}

static bool
socket_exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static char *
find_podman(void)
{
  const char *path = getenv("PATH");
  char *dup = xstrdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
  char *save = NULL, *found = NULL;
  for (char *dir = strtok_r(dup, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
    char *p = xasprintf("%s/podman", dir);
    if (access(p, X_OK) == 0)
      found = p;
    else
      free(p);
  }
  free(dup);
  return found;
}

/* Start `podman system service --time=0 unix://SOCK` and wait for the socket to appear. */
static int
start_service(struct docker_service **out, struct ci_error **err)
{
  char *podman = find_podman();
  if (!podman)
    return ci_error_make(err, -ENOENT, "no podman socket answers and the podman command is not "
                                       "installed (install podman, or start its API service)");
  const char *tmp = getenv("TMPDIR");
  struct docker_service *s = xcalloc(1, sizeof(*s));
  s->dir = xasprintf("%s/cirrus-podman-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(s->dir)) {
    int e = errno;
    free(s->dir);
    s->dir = NULL;
    docker_service_stop(s);
    free(podman);
    return ci_error_make(err, -e, "cannot create a directory for podman's socket: %s",
                         strerror(e));
  }
  s->sock = xasprintf("%s/podman.sock", s->dir);
  char *url = xasprintf("unix://%s", s->sock);
  char *argv[] = {podman, "system", "service", "--time=0", url, NULL};
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  char *log = xasprintf("%s/service.log", s->dir);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int r = posix_spawn(&s->pid, podman, &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  free(url);
  free(podman);
  if (r != 0) {
    s->pid = 0;
    unlink(log);
    free(log);
    docker_service_stop(s);
    return ci_error_make(err, -r, "cannot start `podman system service`: %s", strerror(r));
  }
  /* Up to ~10 s: 100 ms, doubling, capped at 2 s (upstream retries 10 times from 100 ms). */
  long delay = 100;
  for (int i = 0; i < 12 && !socket_exists(s->sock); i++) {
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
      s->pid = 0;
      break;
    }
    sleep_ms(delay);
    delay = delay * 2 > 2000 ? 2000 : delay * 2;
  }
  if (!socket_exists(s->sock)) {
    char *text = NULL;
    struct ci_error *e = NULL;
    ci_read_file(log, 4096, &text, NULL, &e);
    ci_error_free(&e);
    int ret = ci_error_make(err, -ETIMEDOUT, "`podman system service` did not open %s%s%s",
                            s->sock, text && *text ? ": " : "", text ? text : "");
    free(text);
    unlink(log);
    free(log);
    docker_service_stop(s);
    return ret;
  }
  unlink(log);
  free(log);
  *out = s;
  return 0;
}

static int
podman_open(uv_loop_t *loop, const struct backend_options *opts, struct backend **out,
            struct ci_error **err)
{
  const char *host = getenv("CONTAINER_HOST");
  if (host && *host) {
    int r = docker_backend_open_at(loop, "podman", host, NULL, out, err);
    if (r < 0)
      ci_error_prefix(err, "podman at CONTAINER_HOST=%s", host);
    return r;
  }
  struct ci_buf tried = CI_BUF_INIT;
  char *candidates[2] = {NULL, NULL};
  if (geteuid() == 0)
    candidates[0] = xstrdup("/run/podman/podman.sock");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg)
    candidates[1] = xasprintf("%s/podman/podman.sock", xdg);
  else if (geteuid() != 0)
    candidates[1] = xasprintf("/run/user/%u/podman/podman.sock", (unsigned)geteuid());
  for (int i = 0; i < 2; i++) {
    if (!candidates[i] || !socket_exists(candidates[i]))
      continue;
    char *url = xasprintf("unix://%s", candidates[i]);
    struct ci_error *e = NULL;
    int r = docker_backend_open_at(loop, "podman", url, NULL, out, &e);
    free(url);
    if (r == 0) {
      free(candidates[0]);
      free(candidates[1]);
      ci_buf_release(&tried);
      return 0;
    }
    ci_buf_addf(&tried, "%s: %s; ", candidates[i], e->msg);
    ci_error_free(&e);
  }
  free(candidates[0]);
  free(candidates[1]);
  /* No service of our own when we could not talk to it anyway. */
  if (curl_dl_load(err) < 0) {
    ci_error_prefix(err, "podman");
    ci_buf_release(&tried);
    return -1;
  }
  struct docker_service *s = NULL;
  if (start_service(&s, err) < 0) {
    if (tried.len)
      ci_error_prefix(err, "%s", ci_buf_str(&tried));
    ci_buf_release(&tried);
    return -1;
  }
  ci_buf_release(&tried);
  char *url = xasprintf("unix://%s", s->sock);
  int r = docker_backend_open_at(loop, "podman", url, s, out, err);
  free(url);
  return r;
}

const struct backend_factory podman_factory = {"podman", podman_open};
