/* cmd/run.c - `cirrus run [options] [TASK...]`. */
#include "cli.h"
#include "help.h"
#include "junit.h"
#include "output.h"
#include "backends/backend.h"
#include "common/log.h"
#include "runner/env.h"
#include "runner/graph.h"
#include "runner/repo.h"
#include "runner/sched.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
  OPT_ENV_FILE = 1000,
  OPT_AFFECTED,
  OPT_AFFECTED_GIT,
  OPT_AFFECTED_GIT_CACHED,
  OPT_TEMPLATE,
  OPT_DIRTY,
  OPT_BACKEND,
  OPT_PULL,
  OPT_LAZY_PULL,
  OPT_NO_CLEANUP,
  OPT_ARTIFACTS_DIR,
  OPT_EXPORT_BUNDLE,
  OPT_HEARTBEAT,
  OPT_DEBUG,
  OPT_PUSH,
  OPT_JUNIT,
  OPT_NETWORK,
  OPT_HELP,
};

static const struct option longopts[] = {
    {"file", required_argument, NULL, 'f'},
    {"env", required_argument, NULL, 'e'},
    {"environment", required_argument, NULL, 'e'},
    {"env-file", required_argument, NULL, OPT_ENV_FILE},
    {"affected-files", required_argument, NULL, OPT_AFFECTED},
    {"affected-files-git", required_argument, NULL, OPT_AFFECTED_GIT},
    {"affected-files-git-cached", required_argument, NULL, OPT_AFFECTED_GIT_CACHED},
    {"dockerfile-image-template", required_argument, NULL, OPT_TEMPLATE},
    {"dockerfile-image-push", no_argument, NULL, OPT_PUSH},
    {"parallel", required_argument, NULL, 'p'},
    {"output", required_argument, NULL, 'o'},
    {"verbose", no_argument, NULL, 'v'},
    {"debug", no_argument, NULL, OPT_DEBUG},
    {"dirty", no_argument, NULL, OPT_DIRTY},
    {"container-backend", required_argument, NULL, OPT_BACKEND},
    {"container-network", required_argument, NULL, OPT_NETWORK},
    {"pull", required_argument, NULL, OPT_PULL},
    {"lazy-pull", no_argument, NULL, OPT_LAZY_PULL},
    {"container-lazy-pull", no_argument, NULL, OPT_LAZY_PULL},
    {"debug-no-cleanup", no_argument, NULL, OPT_NO_CLEANUP},
    {"artifacts-dir", required_argument, NULL, OPT_ARTIFACTS_DIR},
    {"export-bundle", required_argument, NULL, OPT_EXPORT_BUNDLE},
    {"heartbeat-timeout", required_argument, NULL, OPT_HEARTBEAT},
    {"junit", required_argument, NULL, OPT_JUNIT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct run_args {
  struct cli_config_opts cfg;
  struct ci_strv filters;
  char *git_rev, *git_rev_cached;
  unsigned parallel;
  const char *output;
  bool verbose, dirty, no_cleanup;
  const char *backend;
  enum backend_pull_policy pull;
  enum backend_network network;
  const char *artifacts_dir;
  char *export_bundle;       /* --export-bundle DIR made absolute (owned), or NULL */
  const char *junit;         /* --junit FILE, or NULL */
};

static int
parse_args(int argc, char **argv, struct run_args *a)
{
  optind = 1;
  opterr = 0;
  int opt;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  a->parallel = ncpu > 0 ? (unsigned)ncpu : 1;
  a->output = "auto";
  a->backend = "auto";
  a->pull = BACKEND_PULL_MISSING;
  while ((opt = getopt_long(argc, argv, ":f:e:p:o:vh", longopts, NULL)) != -1) {
    switch (opt) {
    case 'f':
      a->cfg.file = optarg;
      break;
    case 'e':
      ci_strv_push(&a->cfg.env.env, optarg);
      break;
    case OPT_ENV_FILE:
      free(a->cfg.env.env_file);
      a->cfg.env.env_file = xstrdup(optarg);
      break;
    case OPT_AFFECTED:
      cli_split_commas(optarg, &a->cfg.affected_files);
      break;
    case OPT_AFFECTED_GIT:
      free(a->git_rev);
      a->git_rev = xstrdup(optarg);
      break;
    case OPT_AFFECTED_GIT_CACHED:
      free(a->git_rev_cached);
      a->git_rev_cached = xstrdup(optarg);
      break;
    case OPT_TEMPLATE:
      if (!strstr(optarg, "%s")) {
        cli_error("--dockerfile-image-template must contain %%s (replaced by the content hash)");
        return -1;
      }
      a->cfg.dockerfile_image_template = optarg;
      break;
    case OPT_PUSH:
      break; /* accepted; images built from a Dockerfile are local */
    case 'p': {
      char *end = NULL;
      errno = 0;
      long n = strtol(optarg, &end, 10);
      if (errno || !*optarg || *end || n < 1 || n > 1024) {
        cli_error("run: -p/--parallel wants a number from 1 to 1024, not '%s'", optarg);
        return -1;
      }
      a->parallel = (unsigned)n;
      break;
    }
    case 'o':
      a->output = optarg;
      break;
    case 'v':
      a->verbose = true;
      if (!ci_log_enabled(CI_LOG_DEBUG))
        ci_log_set_level(CI_LOG_DEBUG); /* API calls with their timings */
      break;
    case OPT_DEBUG:
      a->verbose = true;
      ci_log_set_level(CI_LOG_TRACE);
      break;
    case OPT_DIRTY:
      a->dirty = true;
      break;
    case OPT_BACKEND:
      a->backend = optarg;
      break;
    case OPT_PULL:
      if (!strcmp(optarg, "missing"))
        a->pull = BACKEND_PULL_MISSING;
      else if (!strcmp(optarg, "always"))
        a->pull = BACKEND_PULL_ALWAYS;
      else if (!strcmp(optarg, "never"))
        a->pull = BACKEND_PULL_NEVER;
      else {
        cli_error("run: --pull wants missing, always or never, not '%s'", optarg);
        return -1;
      }
      break;
    case OPT_LAZY_PULL:
      a->pull = BACKEND_PULL_MISSING;
      break;
    case OPT_NETWORK:
      if (!strcmp(optarg, "host"))
        a->network = BACKEND_NET_HOST;
      else if (!strcmp(optarg, "private"))
        a->network = BACKEND_NET_PRIVATE;
      else if (!strcmp(optarg, "none"))
        a->network = BACKEND_NET_NONE;
      else {
        cli_error("run: --container-network wants host, private or none, not '%s'", optarg);
        return -1;
      }
      break;
    case OPT_NO_CLEANUP:
      a->no_cleanup = true;
      break;
    case OPT_JUNIT: {
      /* Fail now rather than after the run when the report cannot be written there. */
      char *copy = xstrdup(optarg);
      const char *dir = dirname(copy);
      bool ok = *optarg && access(dir, W_OK) == 0;
      int e = errno;
      if (!ok)
        cli_error("run: --junit %s: cannot write in '%s': %s", optarg, dir,
                  *optarg ? strerror(e) : "empty file name");
      free(copy);
      if (!ok)
        return -1;
      a->junit = optarg;
      break;
    }
    case OPT_ARTIFACTS_DIR:
      if (!*optarg) {
        cli_error("run: --artifacts-dir needs a directory");
        return -1;
      }
      a->artifacts_dir = optarg;
      break;
    case OPT_EXPORT_BUNDLE: {
      struct stat st;
      if (!*optarg || stat(optarg, &st) < 0 || !S_ISDIR(st.st_mode)) {
        cli_error("run: --export-bundle: '%s' is not a directory", optarg);
        return -1;
      }
      free(a->export_bundle);
      a->export_bundle = realpath(optarg, NULL); /* messages name it; the cwd may change */
      if (!a->export_bundle) {
        cli_error("run: --export-bundle: %s: %s", optarg, strerror(errno));
        return -1;
      }
      break;
    }
    case OPT_HEARTBEAT:
      break; /* accepted for compatibility; see `cirrus run --help` */
    case 'h':
    case OPT_HELP:
      cli_help_command("run", stdout);
      return 1;
    case ':':
      cli_error("run: option '%s' needs a value", argv[optind - 1]);
      return -1;
    default:
      cli_error("run: unknown option '%s' (see `cirrus run --help`)", argv[optind - 1]);
      return -1;
    }
  }
  for (int i = optind; i < argc; i++)
    ci_strv_push(&a->filters, argv[i]);
  return 0;
}

static void
args_release(struct run_args *a)
{
  cli_env_args_release(&a->cfg.env);
  ci_strv_release(&a->cfg.affected_files);
  ci_strv_release(&a->filters);
  free(a->git_rev);
  free(a->git_rev_cached);
  free(a->export_bundle);
}

/* One tar of the project per distinct working directory of the selected tasks. */
struct tars {
  struct sched_tar *v;
  size_t n;
  char *dir; /* temp dir holding them */
};

static int
build_tars(const struct graph *g, const char *project, const struct cfg_env *base,
           const struct cfg_env *user, bool dirty, struct tars *out, struct ci_error **err)
{
  const char *tmp = getenv("TMPDIR");
  char *dir = xasprintf("%s/cirrus-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    int e = errno;
    int r = ci_error_make(err, -e, "cannot create a temporary directory in %s: %s",
                          tmp && *tmp ? tmp : "/tmp", strerror(e));
    free(dir);
    return r;
  }
  out->dir = dir;
  for (size_t i = 0; i < g->n && !dirty; i++) {
    const struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED ||
        (nd->task->instance != CFG_INSTANCE_CONTAINER && nd->task->instance != CFG_INSTANCE_PIPE))
      continue;
    /* The working directory as the task will see it (image variables aside). */
    struct cfg_env env = CFG_ENV_INIT;
    cfg_env_set(&env, "CIRRUS_WORKING_DIR", "/tmp/cirrus-ci/working-dir");
    cfg_env_merge(&env, base);
    cfg_env_merge(&env, &nd->task->env);
    cfg_env_merge(&env, user);
    run_env_expand_recursively(&env, NULL);
    const char *wd = cfg_env_get(&env, "CIRRUS_WORKING_DIR");
    bool have = false;
    for (size_t k = 0; k < out->n && !have; k++)
      have = !strcmp(out->v[k].workdir, wd);
    if (!have) {
      if (wd[0] != '/') {
        int r = ci_error_make(err, CI_ECONFIG,
                              "task '%s': CIRRUS_WORKING_DIR must be an absolute path, not '%s'",
                              nd->task->name, wd);
        cfg_env_release(&env);
        return r;
      }
      char *path = xasprintf("%s/project-%zu.tar", dir, out->n);
      struct repo_copy_stats stats = {0};
      struct repo_copy_opts copts = REPO_COPY_OPTS_INIT;
      copts.prefix = wd + 1;
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) {
        int e = errno;
        int r = ci_error_make(err, -e, "cannot create '%s': %s", path, strerror(e));
        free(path);
        cfg_env_release(&env);
        return r;
      }
      int r = repo_tar_fd(project, &copts, fd, &stats, err);
      if (close(fd) < 0 && r >= 0)
        r = ci_error_make(err, -errno, "cannot write '%s': %s", path, strerror(errno));
      if (r < 0) {
        unlink(path);
        free(path);
        cfg_env_release(&env);
        return ci_error_prefix(err, "cannot copy the project");
      }
      out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
      out->v[out->n].workdir = xstrdup(wd);
      out->v[out->n].path = path;
      out->n++;
      ci_log_debug("project archive for %s: %s (%llu files, %llu bytes)", wd, path,
                   (unsigned long long)stats.files, (unsigned long long)stats.bytes);
    }
    cfg_env_release(&env);
  }
  return 0;
}

/* The build context of Dockerfile images: the project (as copied into containers) at the top
 * of a tar, when a selected task builds one. */
static int
build_context(const struct graph *g, const char *project, struct tars *tars, char **out,
              struct ci_error **err)
{
  bool need = false;
  for (size_t i = 0; i < g->n && !need; i++)
    need =
        g->nodes[i].state != GRAPH_EXCLUDED && g->nodes[i].task->instance == CFG_INSTANCE_PREBUILT;
  if (!need)
    return 0;
  char *path = xasprintf("%s/context.tar", tars->dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    int r = ci_error_make(err, -e, "cannot create '%s': %s", path, strerror(e));
    free(path);
    return r;
  }
  int r = repo_tar_fd(project, NULL, fd, NULL, err);
  if (close(fd) < 0 && r >= 0)
    r = ci_error_make(err, -errno, "cannot write '%s': %s", path, strerror(errno));
  if (r < 0) {
    unlink(path);
    free(path);
    return ci_error_prefix(err, "cannot archive the build context");
  }
  *out = path;
  return 0;
}

static void
tars_release(struct tars *t)
{
  for (size_t i = 0; i < t->n; i++) {
    unlink(t->v[i].path);
    free((char *)t->v[i].workdir);
    free((char *)t->v[i].path);
  }
  free(t->v);
  if (t->dir) {
    rmdir(t->dir);
    free(t->dir);
  }
  memset(t, 0, sizeof(*t));
}

/* Events go to the renderer and, with --junit, to the report. */
struct run_sinks {
  struct out *o;
  struct junit *junit;
};

static void
on_event(const struct sched_event *ev, void *data)
{
  struct run_sinks *k = data;
  out_event(ev, k->o);
  if (k->junit)
    junit_event(k->junit, ev);
}

static void
on_backend_closed(void *data)
{
  *(bool *)data = true;
}

int
cli_cmd_run(int argc, char **argv)
{
  struct run_args a = {0};
  int r = parse_args(argc, argv, &a);
  if (r != 0) {
    args_release(&a);
    return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
  }
  enum out_mode mode;
  if (out_mode_parse(a.output, &mode) < 0) {
    cli_error("run: unknown output '%s' (use auto, interactive, simple, github-actions, travis, "
              "teamcity or json)",
              a.output);
    args_release(&a);
    return CLI_EXIT_USAGE;
  }

  int status = CLI_EXIT_FAILURE;
  struct ci_error *err = NULL;
  struct cfg_file *f = NULL;
  struct graph g = {0};
  struct cfg_env base = CFG_ENV_INIT, user = CFG_ENV_INIT;
  struct tars tars = {0};
  char *context = NULL;
  struct backend *b = NULL;
  struct out *o = NULL;
  struct junit *junit = NULL;
  uv_loop_t loop;
  bool loop_ok = false;
  char project[PATH_MAX];
  char uuid[37];

  /* libgit2 parses the system's CA bundle when it starts (5-14 ms here): let that run on the
   * other core while the configuration is read and the backend opened. */
  repo_lib_prefetch();
  if (!getcwd(project, sizeof(project))) {
    cli_error("run: cannot get the current directory: %s", strerror(errno));
    goto out;
  }
  /* Affected files from git feed changesInclude(). */
  if (a.git_rev || a.git_rev_cached) {
    const char *revs[2] = {a.git_rev, a.git_rev_cached};
    for (int k = 0; k < 2; k++) {
      if (!revs[k])
        continue;
      struct ci_strv changed = CI_STRV_INIT;
      if (repo_changed_files(project, revs[k], k ? REPO_DIFF_INDEX : REPO_DIFF_WORKDIR,
                             &changed, &err) < 0)
        goto fail;
      for (size_t i = 0; i < changed.n; i++)
        ci_strv_push(&a.cfg.affected_files, changed.v[i]);
      ci_strv_release(&changed);
    }
  }
  if (cli_load_config(&a.cfg, &f) < 0)
    goto out;
  graph_init(&g, f->tasks, f->ntasks);
  if (graph_filter(&g, (const char *const *)a.filters.v, a.filters.n, &err) < 0)
    goto fail;
  if (cli_env_args_resolve(&a.cfg.env, &user, &err) < 0)
    goto fail;
  if (uv_loop_init(&loop) < 0) {
    cli_error("run: cannot create the event loop");
    goto out;
  }
  loop_ok = true;
  struct backend_options bo = {.name = a.backend, .verbose = a.verbose, .network = a.network};
  if (backend_open(&loop, &bo, &b, &err) < 0) {
    /* What to do next depends on what was asked for. */
    const char *hint =
        !strcmp(a.backend, "docker")
            ? "start dockerd, point DOCKER_HOST at it, or choose another backend with "
              "--container-backend"
        : !strcmp(a.backend, "podman")
            ? "start `podman system service`, point CONTAINER_HOST at it, or choose another "
              "backend with --container-backend"
        : !strcmp(a.backend, "auto") ? "install and start docker or podman, or set "
                                       "DOCKER_HOST / CONTAINER_HOST to a running engine"
                                     : NULL;
    if (hint && err) {
      char *m = xasprintf("%s\n  hint: %s", err->msg, hint);
      free(err->msg);
      err->msg = m;
    }
    goto fail;
  }
  run_uuid(uuid);
  run_env_base(&base, uuid);
  repo_lib_hold(); /* once for facts, ignore rules and the build context */
  int failed = repo_env_add(project, &base, &err) < 0 ||
              build_tars(&g, project, &base, &user, a.dirty, &tars, &err) < 0 ||
              build_context(&g, project, &tars, &context, &err) < 0;
  repo_lib_release();
  if (failed)
    goto fail;

  ci_log_debug("backend: %s", b->description);

  o = out_new(mode, stdout, a.parallel, cli_color(stdout), a.verbose);
  out_start(o, &loop);
  /* The run id labels every container (`cirrus clean` finds leftovers by it).  Scripts
   * that need to find a run's containers may choose it with CIRRUS_RUN_ID. */
  char run_id[40];
  const char *rid = getenv("CIRRUS_RUN_ID");
  bool rid_ok = rid && *rid && strlen(rid) < sizeof(run_id);
  for (const char *q = rid; rid_ok && *q; q++)
    rid_ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
             *q == '-' || *q == '_';
  if (rid && *rid && !rid_ok) {
    cli_error("run: CIRRUS_RUN_ID may only hold letters, digits, '-' and '_' (at most 39)");
    goto out;
  }
  if (rid_ok) {
    snprintf(run_id, sizeof(run_id), "%s", rid);
  } else {
    memcpy(run_id, uuid, 8);
    run_id[8] = '\0';
  }
  struct sched_options so = {
      .parallel = a.parallel,
      .pull = a.pull,
      .dirty = a.dirty,
      .project_dir = project,
      .tars = tars.v,
      .ntars = tars.n,
      .run_id = run_id,
      .base_env = &base,
      .user_env = &user,
      .debug_no_cleanup = a.no_cleanup,
      .artifacts_dir = a.artifacts_dir,
      .export_bundle_dir = a.export_bundle,
      .build_context = context,
      .on_event = on_event,
      .event_data = NULL,
  };
  if (a.junit) {
    char *copy = xstrdup(project);
    junit = junit_new(basename(copy));
    free(copy);
  }
  struct run_sinks sinks = {.o = o, .junit = junit};
  so.event_data = &sinks;
  struct sched_result res;
  out_run_started(o, run_id, b->ops->name, &g);
  if (sched_run(&loop, b, &g, &so, &res, &err) < 0) {
    out_stop(o);
    goto fail;
  }
  out_stop(o);
  status = res.status;
  out_run_finished(o, res.status, res.first_failure);
  if (junit && junit_write(junit, a.junit, &err) < 0) {
    sched_result_release(&res);
    if (status == CLI_EXIT_OK)
      status = CLI_EXIT_FAILURE;
    goto fail;
  }
  if (res.first_failure) {
    fflush(stdout);
    fprintf(stderr, "build failed: %s\n", res.first_failure);
  }
  sched_result_release(&res);
  goto out;

fail:
  cli_report(&err);
out:
  repo_lib_settle();
  if (b) {
    bool closed = false;
    b->ops->close(b, on_backend_closed, &closed);
    while (!closed && uv_run(&loop, UV_RUN_ONCE))
      ;
  }
  if (loop_ok) {
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
      ci_log_debug("event loop closed with handles still open");
  }
  out_free(o);
  if (context)
    unlink(context);
  free(context);
  junit_free(junit);
  tars_release(&tars);
  cfg_env_release(&base);
  cfg_env_release(&user);
  graph_release(&g);
  cfg_file_free(f);
  args_release(&a);
  return status;
}
