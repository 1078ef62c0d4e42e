/* cmd/clean.c - `cirrus clean`: remove what killed runs left behind.
 *
 * Every container and volume cirrus creates carries the label dev.cirrus.run-id; a run that
 * was SIGKILLed (or lost its engine) cannot remove them itself.  clean asks each backend to
 * remove everything with that label (backend_ops.clean), or only one run's with --run-id,
 * and prints each thing removed.  A backend whose ops->clean is NULL has nothing to clean
 * yet: that is the hook for the built-in backend's stale run directories.
 */
#include "cli.h"
#include "help.h"
#include "backends/backend.h"
#include "common/log.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_BACKEND = 1000, OPT_RUN_ID, OPT_HELP };

static const struct option longopts[] = {
    {"container-backend", required_argument, NULL, OPT_BACKEND},
    {"run-id", required_argument, NULL, OPT_RUN_ID},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct clean_state {
  const char *backend;
  unsigned removed;
  bool done;
  struct ci_error *err; /* owned */
};

static void
on_removed(void *data, const char *what)
{
  struct clean_state *st = data;
  st->removed++;
  printf("%s: removed %s\n", st->backend, what);
  fflush(stdout);
}

static void
on_cleaned(void *data, const struct ci_error *err)
{
  struct clean_state *st = data;
  if (err)
    ci_error_make(&st->err, err->code, "%s", err->msg);
  st->done = true;
}

static void
on_closed(void *data)
{
  *(bool *)data = true;
}

/* Clean one backend.  Returns the number removed, or < 0 (reported). */
static int
clean_backend(uv_loop_t *loop, const struct backend_factory *fac, const char *run_id, bool explicit,
              bool verbose)
{
  struct backend_options bo = {.name = fac->name, .verbose = verbose};
  struct backend *b = NULL;
  struct ci_error *err = NULL;
  if (fac->open(loop, &bo, &b, &err) < 0) {
    if (explicit) {
      ci_error_prefix(&err, "clean: cannot use the %s backend", fac->name);
      cli_report(&err);
      return -1;
    }
    if (verbose)
      fprintf(stderr, "cirrus: clean: %s: not available (%s)\n", fac->name, err->msg);
    ci_error_free(&err);
    return 0;
  }
  struct clean_state st = {.backend = fac->name};
  int ret = 0;
  if (!b->ops->clean) {
    /* Nothing this backend knows how to find yet (see the file comment). */
    if (verbose || explicit)
      fprintf(stderr, "cirrus: clean: the %s backend leaves nothing to clean\n", fac->name);
  } else if (b->ops->clean(b, run_id, on_removed, on_cleaned, &st) < 0) {
    cli_error("clean: %s: cannot start cleaning", fac->name);
    ret = -1;
  } else {
    while (!st.done && uv_run(loop, UV_RUN_ONCE))
      ;
    if (st.err) {
      ci_error_prefix(&st.err, "clean: %s", fac->name);
      cli_report(&st.err);
      ret = -1;
    }
  }
  bool closed = false;
  b->ops->close(b, on_closed, &closed);
  while (!closed && uv_run(loop, UV_RUN_ONCE))
    ;
  return ret < 0 ? ret : (int)st.removed;
}

int
cli_cmd_clean(int argc, char **argv)
{
  const char *backend = "auto", *run_id = NULL;
  bool verbose = false;
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":vh", longopts, NULL)) != -1) {
    switch (opt) {
    case OPT_BACKEND:
      backend = optarg;
      break;
    case OPT_RUN_ID:
      run_id = optarg;
      break;
    case 'v':
      verbose = true;
      break;
    case 'h':
    case OPT_HELP:
      cli_help_command("clean", stdout);
      return CLI_EXIT_OK;
    case ':':
      cli_error("clean: option '%s' needs a value", argv[optind - 1]);
      return CLI_EXIT_USAGE;
    default:
      cli_error("clean: unknown option '%s' (see `cirrus clean --help`)", argv[optind - 1]);
      return CLI_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    cli_error("clean: unexpected argument '%s' (see `cirrus clean --help`)", argv[optind]);
    return CLI_EXIT_USAGE;
  }
  if (run_id) {
    bool ok = *run_id && strlen(run_id) < 40;
    for (const char *q = run_id; ok && *q; q++)
      ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
           *q == '-' || *q == '_';
    if (!ok) {
      cli_error("clean: --run-id wants the id of a run (letters, digits, '-' and '_'), not '%s'",
                run_id);
      return CLI_EXIT_USAGE;
    }
  }
  const struct backend_factory *only = NULL;
  if (strcmp(backend, "auto") != 0) {
    for (size_t i = 0; backend_factories[i]; i++)
      if (!strcmp(backend_factories[i]->name, backend))
        only = backend_factories[i];
    if (!only) {
      cli_error("clean: unknown container backend '%s' (use auto, docker, podman or builtin)",
                backend);
      return CLI_EXIT_USAGE;
    }
  }
  uv_loop_t loop;
  if (uv_loop_init(&loop) < 0) {
    cli_error("clean: cannot create the event loop");
    return CLI_EXIT_FAILURE;
  }
  int status = CLI_EXIT_OK;
  unsigned removed = 0;
  for (size_t i = 0; backend_factories[i]; i++) {
    if (only && backend_factories[i] != only)
      continue;
    int n = clean_backend(&loop, backend_factories[i], run_id, only != NULL, verbose);
    if (n < 0)
      status = CLI_EXIT_FAILURE;
    else
      removed += (unsigned)n;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    ci_log_debug("event loop closed with handles still open");
  if (status == CLI_EXIT_OK && removed == 0) {
    if (run_id)
      printf("nothing to remove for run %s\n", run_id);
    else
      printf("nothing to remove\n");
  }
  return fflush(stdout) == 0 ? status : CLI_EXIT_FAILURE;
}
