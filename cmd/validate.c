/* cmd/validate.c - `cirrus validate` and `cirrus tasks`. */
#include "cli.h"
#include "help.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
  OPT_ENV_FILE = 1000,
  OPT_AFFECTED,
  OPT_TEMPLATE,
  OPT_JSON,
  OPT_HELP,
};

/* Options common to validate and tasks.  Returns 1 if the option was one of them, 0 if not,
 * -1 on error (reported). */
static int
config_option(int opt, struct cli_config_opts *o)
{
  switch (opt) {
  case 'f':
    o->file = optarg;
    return 1;
  case 'e':
    ci_strv_push(&o->env.env, optarg);
    return 1;
  case OPT_ENV_FILE:
    free(o->env.env_file);
    o->env.env_file = xstrdup(optarg);
    return 1;
  case OPT_AFFECTED:
    cli_split_commas(optarg, &o->affected_files);
    return 1;
  case OPT_TEMPLATE:
    if (!strstr(optarg, "%s")) {
      cli_error("--dockerfile-image-template must contain %%s (replaced by the content hash)");
      return -1;
    }
    o->dockerfile_image_template = optarg;
    return 1;
  default:
    return 0;
  }
}

static const struct option config_longopts[] = {
    {"file", required_argument, NULL, 'f'},
    {"env", required_argument, NULL, 'e'},
    {"environment", required_argument, NULL, 'e'},
    {"env-file", required_argument, NULL, OPT_ENV_FILE},
    {"affected-files", required_argument, NULL, OPT_AFFECTED},
    {"dockerfile-image-template", required_argument, NULL, OPT_TEMPLATE},
    {"json", no_argument, NULL, OPT_JSON},
    {"print", no_argument, NULL, 'p'},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void
config_opts_release(struct cli_config_opts *o)
{
  cli_env_args_release(&o->env);
  ci_strv_release(&o->affected_files);
}

struct parsed {
  struct cli_config_opts o;
  bool json, print;
};

/* Returns -1 to exit with the usage status, 1 for --help, 0 to go on. */
static int
parse_args(const char *cmd, int argc, char **argv, struct parsed *p)
{
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":f:e:ph", config_longopts, NULL)) != -1) {
    int r = config_option(opt, &p->o);
    if (r < 0)
      return -1;
    if (r)
      continue;
    switch (opt) {
    case OPT_JSON:
      p->json = true;
      break;
    case 'p':
      p->print = true;
      break;
    case 'h':
    case OPT_HELP:
      cli_help_command(cmd, stdout);
      return 1;
    case ':':
      cli_error("%s: option '%s' needs a value", cmd, argv[optind - 1]);
      return -1;
    default:
      cli_error("%s: unknown option '%s' (see `cirrus %s --help`)", cmd, argv[optind - 1], cmd);
      return -1;
    }
  }
  if (optind < argc) {
    cli_error("%s: unexpected argument '%s' (see `cirrus %s --help`)", cmd, argv[optind], cmd);
    return -1;
  }
  return 0;
}

int
cli_cmd_validate(int argc, char **argv)
{
  struct parsed p = {0};
  int r = parse_args("validate", argc, argv, &p);
  if (r != 0) {
    config_opts_release(&p.o);
    return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
  }
  struct cfg_file *f = NULL;
  int ret = cli_load_config(&p.o, &f);
  config_opts_release(&p.o);
  if (ret < 0)
    return CLI_EXIT_FAILURE;
  if (p.print)
    fwrite(f->text, 1, f->len, stdout);
  if (p.json) {
    json_t *j = cfg_file_to_json(f);
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(j);
  }
  cfg_file_free(f);
  return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static void
print_row(const char *id, const char *name, const char *labels, const char *deps,
          const char *note, int wid, int wname, int wlabels)
{
  printf("%-*s  %-*s  %-*s  %s%s%s\n", wid, id, wname, name, wlabels, labels, deps,
         *note ? "  " : "", note);
}

int
cli_cmd_tasks(int argc, char **argv)
{
  struct parsed p = {0};
  int r = parse_args("tasks", argc, argv, &p);
  if (r != 0) {
    config_opts_release(&p.o);
    return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
  }
  struct cfg_file *f = NULL;
  int ret = cli_load_config(&p.o, &f);
  config_opts_release(&p.o);
  if (ret < 0)
    return CLI_EXIT_FAILURE;
  if (p.json) {
    json_t *j = cfg_file_to_json(f);
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(j);
    cfg_file_free(f);
    return CLI_EXIT_OK;
  }
  size_t n = f->ntasks;
  char **ids = xcalloc(n + 1, sizeof(char *)), **labels = xcalloc(n + 1, sizeof(char *));
  char **deps = xcalloc(n + 1, sizeof(char *)), **notes = xcalloc(n + 1, sizeof(char *));
  int wid = 2, wname = 4, wlabels = 6;
  for (size_t i = 0; i < n; i++) {
    const struct cfg_task *t = &f->tasks[i];
    ids[i] = xasprintf("%u", t->id);
    struct ci_buf b = CI_BUF_INIT;
    for (size_t k = 0; k < t->labels.n; k++)
      ci_buf_addf(&b, "%s%s", k ? " " : "", t->labels.v[k]);
    labels[i] = ci_buf_take(&b);
    for (size_t k = 0; k < t->ndepends_on; k++) {
      const char *dn = "?";
      for (size_t j = 0; j < n; j++)
        if (f->tasks[j].id == t->depends_on[k])
          dn = f->tasks[j].name;
      ci_buf_addf(&b, "%s%s (%u)", k ? ", " : "", dn, t->depends_on[k]);
    }
    deps[i] = ci_buf_take(&b);
    if (t->skip)
      ci_buf_adds(&b, "[skip]");
    if (t->allow_failures)
      ci_buf_addf(&b, "%s[allow_failures]", b.len ? " " : "");
    if (t->instance == CFG_INSTANCE_NONE || t->instance == CFG_INSTANCE_UNSUPPORTED)
      ci_buf_addf(&b, "%s[cannot run here: %s]", b.len ? " " : "",
                  t->instance_key ? t->instance_key : "no container");
    notes[i] = ci_buf_take(&b);
    if ((int)strlen(ids[i]) > wid)
      wid = (int)strlen(ids[i]);
    if ((int)strlen(t->name) > wname)
      wname = (int)strlen(t->name);
    if ((int)strlen(labels[i]) > wlabels)
      wlabels = (int)strlen(labels[i]);
  }
  print_row("ID", "NAME", "LABELS", "DEPENDS ON", "", wid, wname, wlabels);
  for (size_t i = 0; i < n; i++)
    print_row(ids[i], f->tasks[i].name, labels[i], deps[i], notes[i], wid, wname, wlabels);
  for (size_t i = 0; i < n; i++) {
    free(ids[i]);
    free(labels[i]);
    free(deps[i]);
    free(notes[i]);
  }
  free(ids);
  free(labels);
  free(deps);
  free(notes);
  cfg_file_free(f);
  return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
