/* cmd/graph.c - `cirrus graph`: the task graph as Graphviz DOT or as a text tree.
 *
 * The tasks are those `cirrus run` with the same filters would run (graph_filter), and the
 * edges the dependencies among them.  tree prints each task that nothing depends on, with
 * its dependencies indented below it; a task reached a second time is marked (*) and not
 * expanded again.
 */
#include "cli.h"
#include "help.h"
#include "runner/graph.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_ENV_FILE = 1000, OPT_AFFECTED, OPT_TEMPLATE, OPT_FORMAT, OPT_HELP };

static const struct option longopts[] = {
    {"file", required_argument, NULL, 'f'},
    {"env", required_argument, NULL, 'e'},
    {"environment", required_argument, NULL, 'e'},
    {"env-file", required_argument, NULL, OPT_ENV_FILE},
    {"affected-files", required_argument, NULL, OPT_AFFECTED},
    {"dockerfile-image-template", required_argument, NULL, OPT_TEMPLATE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* "name (LABEL LABEL)" */
static char *
display_name(const struct cfg_task *t)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_adds(&b, t->name);
  for (size_t k = 0; k < t->labels.n; k++)
    ci_buf_addf(&b, "%s%s", k ? " " : " (", t->labels.v[k]);
  if (t->labels.n)
    ci_buf_addc(&b, ')');
  return ci_buf_take(&b);
}

static void
dot_quoted(struct ci_buf *b, const char *s)
{
  ci_buf_addc(b, '"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      ci_buf_addc(b, '\\');
    if (*s == '\n') {
      ci_buf_adds(b, "\\n");
      continue;
    }
    ci_buf_addc(b, *s);
  }
  ci_buf_addc(b, '"');
}

static void
print_dot(const struct graph *g)
{
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_adds(&b, "digraph cirrus {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
  for (size_t i = 0; i < g->n; i++) {
    const struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    const struct cfg_task *t = nd->task;
    struct ci_buf label = CI_BUF_INIT;
    ci_buf_adds(&label, t->name);
    for (size_t k = 0; k < t->labels.n; k++)
      ci_buf_addf(&label, "%s%s", k ? " " : "\n", t->labels.v[k]);
    if (t->allow_failures)
      ci_buf_adds(&label, "\n(may fail)");
    ci_buf_addf(&b, "  t%u [label=", t->id);
    dot_quoted(&b, ci_buf_str(&label));
    if (t->skip)
      ci_buf_adds(&b, ", style=\"rounded,dashed\"");
    ci_buf_adds(&b, "];\n");
    ci_buf_release(&label);
  }
  for (size_t i = 0; i < g->n; i++) {
    const struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    for (size_t k = 0; k < nd->ndeps; k++)
      if (g->nodes[nd->deps[k]].state != GRAPH_EXCLUDED)
        ci_buf_addf(&b, "  t%u -> t%u;\n", g->nodes[nd->deps[k]].task->id, nd->task->id);
  }
  ci_buf_adds(&b, "}\n");
  fwrite(ci_buf_str(&b), 1, b.len, stdout);
  ci_buf_release(&b);
}

struct tree {
  const struct graph *g;
  bool *shown;
  bool utf8;
  struct ci_buf prefix;
};

static void
tree_node(struct tree *tr, size_t i, bool last, bool root)
{
  const struct graph_node *nd = &tr->g->nodes[i];
  cleanup_free char *name = display_name(nd->task);
  const char *branch = tr->utf8 ? (last ? "└── " : "├── ") : (last ? "`-- " : "|-- ");
  printf("%s%s%s%s%s%s\n", ci_buf_str(&tr->prefix), root ? "" : branch, name,
         nd->task->skip ? " [skip]" : "", nd->task->allow_failures ? " [may fail]" : "",
         tr->shown[i] && nd->ndeps ? " (*)" : "");
  if (tr->shown[i])
    return;
  tr->shown[i] = true;
  size_t n = 0, seen = 0;
  for (size_t k = 0; k < nd->ndeps; k++)
    n += tr->g->nodes[nd->deps[k]].state != GRAPH_EXCLUDED;
  size_t keep = tr->prefix.len;
  if (!root)
    ci_buf_adds(&tr->prefix, last ? "    " : tr->utf8 ? "│   " : "|   ");
  for (size_t k = 0; k < nd->ndeps; k++) {
    if (tr->g->nodes[nd->deps[k]].state == GRAPH_EXCLUDED)
      continue;
    seen++;
    tree_node(tr, nd->deps[k], seen == n, false);
  }
  tr->prefix.len = keep;
  if (tr->prefix.s)
    tr->prefix.s[keep] = '\0';
}

static void
print_tree(const struct graph *g)
{
  const char *lang = getenv("LC_ALL");
  if (!lang || !*lang)
    lang = getenv("LC_CTYPE");
  if (!lang || !*lang)
    lang = getenv("LANG");
  struct tree tr = {.g = g, .shown = xcalloc(g->n + 1, sizeof(bool))};
  tr.utf8 = lang && (strstr(lang, "UTF-8") || strstr(lang, "utf8") || strstr(lang, "UTF8"));
  ci_buf_init(&tr.prefix);
  for (size_t i = 0; i < g->n; i++) {
    const struct graph_node *nd = &g->nodes[i];
    if (nd->state == GRAPH_EXCLUDED)
      continue;
    bool needed = false;
    for (size_t k = 0; k < nd->ndependents && !needed; k++)
      needed = g->nodes[nd->dependents[k]].state != GRAPH_EXCLUDED;
    if (!needed)
      tree_node(&tr, i, true, true);
  }
  ci_buf_release(&tr.prefix);
  free(tr.shown);
}

int
cli_cmd_graph(int argc, char **argv)
{
  struct cli_config_opts o = {0};
  const char *format = "tree";
  int status = CLI_EXIT_USAGE;
  struct ci_strv filters = CI_STRV_INIT;
  struct cfg_file *f = NULL;
  struct graph g = {0};
  bool have_graph = false;
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":f:e:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'f':
      o.file = optarg;
      break;
    case 'e':
      ci_strv_push(&o.env.env, optarg);
      break;
    case OPT_ENV_FILE:
      free(o.env.env_file);
      o.env.env_file = xstrdup(optarg);
      break;
    case OPT_AFFECTED:
      cli_split_commas(optarg, &o.affected_files);
      break;
    case OPT_TEMPLATE:
      if (!strstr(optarg, "%s")) {
        cli_error("--dockerfile-image-template must contain %%s (replaced by the content hash)");
        goto out;
      }
      o.dockerfile_image_template = optarg;
      break;
    case OPT_FORMAT:
      if (strcmp(optarg, "dot") != 0 && strcmp(optarg, "tree") != 0) {
        cli_error("graph: --format wants dot or tree, not '%s'", optarg);
        goto out;
      }
      format = optarg;
      break;
    case 'h':
    case OPT_HELP:
      cli_help_command("graph", stdout);
      status = CLI_EXIT_OK;
      goto out;
    case ':':
      cli_error("graph: option '%s' needs a value", argv[optind - 1]);
      goto out;
    default:
      cli_error("graph: unknown option '%s' (see `cirrus graph --help`)", argv[optind - 1]);
      goto out;
    }
  }
  for (int i = optind; i < argc; i++)
    ci_strv_push(&filters, argv[i]);
  status = CLI_EXIT_FAILURE;
  if (cli_load_config(&o, &f) < 0)
    goto out;
  graph_init(&g, f->tasks, f->ntasks);
  have_graph = true;
  struct ci_error *err = NULL;
  if (graph_filter(&g, (const char *const *)filters.v, filters.n, &err) < 0) {
    cli_report(&err);
    goto out;
  }
  if (!strcmp(format, "dot"))
    print_dot(&g);
  else
    print_tree(&g);
  status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
out:
  if (have_graph)
    graph_release(&g);
  cfg_file_free(f);
  ci_strv_release(&filters);
  cli_env_args_release(&o.env);
  ci_strv_release(&o.affected_files);
  return status;
}
