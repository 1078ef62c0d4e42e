/* cmd/help.c - the help texts. */
#include "help.h"
#include "cli.h"

#include <string.h>

#define CONFIG_OPTIONS                                                                             \
  "  -f, --file FILE             read FILE instead of .cirrus.yaml / .cirrus.yml\n"                \
  "  -e, --env NAME[=VALUE]      set NAME for expansion and only_if/skip; a bare NAME passes\n"    \
  "                              the host's value through (repeatable; --environment too)\n"      \
  "      --env-file FILE         read NAME=VALUE / NAME lines (# comments); -e wins\n"            \
  "      --affected-files A,B    files that changesInclude()/changesIncludeOnly() see\n"           \
  "      --dockerfile-image-template T\n"                                                          \
  "                              name of images built from a dockerfile: (%s = content hash;\n"    \
  "                              default gcr.io/cirrus-ci-community/%s:latest)\n"

const struct cli_command cli_commands[] = {
    {"run", "run tasks of the configuration in containers", "cirrus run [options] [TASK...]",
     CONFIG_OPTIONS
     "      --affected-files-git REV          add the files changed since REV (worktree)\n"
     "      --affected-files-git-cached REV   add the files changed since REV (index)\n"
     "  -p, --parallel N            run up to N independent tasks at once (default: CPUs;\n"
     "                              -p 1 runs them one by one, lowest id first)\n"
     "  -o, --output MODE           auto, interactive, simple, github-actions, travis,\n"
     "                              teamcity, json (auto: from the CI environment and the\n"
     "                              terminal; json: one event per line, see docs/json-output.md)\n"
     "  -v, --verbose               more messages: container ids, every engine API call with\n"
     "                              its HTTP status and duration (on stderr)\n"
     "      --debug                 as -v, plus internal diagnostics (what the project copy\n"
     "                              leaves out)\n"
     "      --dirty                 bind-mount the project read-write instead of copying it\n"
     "      --container-backend B   auto, docker, podman or builtin (default auto, or\n"
     "                              $CIRRUS_CONTAINER_BACKEND); auto tries them in that order\n"
     "      --container-network MODE\n"
     "                              host (the host's network), private (an isolated one with\n"
     "                              outbound access: builtin through slirp4netns, docker and\n"
     "                              podman their default bridge) or none (only lo); default:\n"
     "                              host on builtin, the engine's default network otherwise.\n"
     "                              A task's additional containers share its network.\n"
     "      --pull POLICY           missing (default), always or never\n"
     "      --lazy-pull             the same as --pull=missing (upstream's flag)\n"
     "      --debug-no-cleanup      keep the containers and print how to remove them\n"
     "      --artifacts-dir DIR     store artifacts at DIR/<task>/<artifact>/<path>\n"
     "      --export-bundle DIR     write each failed task's container to DIR/<task> as an OCI\n"
     "                              runtime bundle (rootfs/ + config.json: a shell with the\n"
     "                              task's environment): runc run --bundle DIR/<task> NAME\n"
     "      --junit FILE            write a JUnit XML report to FILE (one testcase per task,\n"
     "                              failures with the end of their log)\n"
     "\n"
     "TASK selects tasks whose name or alias, case-insensitively, starts the argument; the\n"
     "rest of the argument is labels that must match (\"test VERSION:1.14\").  Selected tasks\n"
     "run without their dependencies.  Exit status: 0 when every task succeeded or was\n"
     "skipped or allowed to fail, 1 otherwise, 130 or 143 when interrupted.\n"
     "\n"
     "On the builtin backend $CIRRUS_ROOTFS says how a container's root file system is made:\n"
     "auto (the default: kernel overlayfs, else fuse-overlayfs, else a copy of the image, with\n"
     "a warning), overlay, fuse-overlayfs or copy.  $CIRRUS_SECCOMP=unconfined runs its steps\n"
     "without the default seccomp filter (default: syscalls a user namespace does not isolate,\n"
     "such as keyctl, reboot, swapon, kexec_load, bpf, fail with EPERM).\n",
     cli_cmd_run},
    {"validate", "check a configuration and show what its tasks resolve to",
     "cirrus validate [options]",
     CONFIG_OPTIONS
     "      --json                  print the resolved tasks as a JSON array\n"
     "  -p, --print                 print the configuration text\n"
     "\n"
     "Exits 0 when the configuration is valid (warnings go to stderr), 1 when it is not:\n"
     "every error is printed as FILE:LINE:COLUMN: error: MESSAGE with the source line.\n",
     cli_cmd_validate},
    {"tasks", "list the tasks of a configuration", "cirrus tasks [options]",
     CONFIG_OPTIONS "      --json                  print the resolved tasks as JSON\n",
     cli_cmd_tasks},
    {"graph", "print the task graph as a tree or in Graphviz DOT",
     "cirrus graph [options] [TASK...]",
     CONFIG_OPTIONS
     "      --format F              tree (default): each task that nothing depends on, with\n"
     "                              its dependencies indented below it; dot: a Graphviz\n"
     "                              digraph, edges from a dependency to its dependent\n"
     "                              (`cirrus graph --format dot | dot -Tsvg >graph.svg`)\n"
     "\n"
     "TASK filters the tasks as `cirrus run` does: the graph shows what that run would run.\n",
     cli_cmd_graph},
    {"clean", "remove the containers and volumes that killed runs left behind",
     "cirrus clean [options]",
     "      --container-backend B   clean only B: docker, podman or builtin (default auto:\n"
     "                              every backend that is available)\n"
     "      --run-id ID             only what the run ID left (the id `-o json` reports and\n"
     "                              containers carry as the label dev.cirrus.run-id)\n"
     "  -v, --verbose               say which backends were looked at\n"
     "\n"
     "Every container and volume of a run is labelled dev.cirrus.run-id; a run that was\n"
     "killed (SIGKILL, a crash) cannot remove them itself.  clean removes them and prints\n"
     "each one, or \"nothing to remove\".  Without --run-id, what a run still going on this\n"
     "host owns is kept (labels dev.cirrus.host and dev.cirrus.pid name its cirrus process;\n"
     "built-in: its run directory is locked) and a warning names it; --run-id removes a\n"
     "run's containers whatever their owner.\n",
     cli_cmd_clean},
    {"images", "list and manage the built-in backend's images",
     "cirrus images [ls | pull REF... | tag SOURCE NAME | rm REF... | prune]",
     "  -v, --verbose               more messages\n"
     "\n"
     "The built-in backend keeps images in $CIRRUS_STORE, else /var/lib/cirrus (root) or\n"
     "$XDG_DATA_HOME/cirrus (~/.local/share/cirrus).  REF is a registry reference\n"
     "(busybox, 127.0.0.1:5000/x/y:tag, docker://...), oci:DIR[:TAG] or\n"
     "docker-archive:FILE[:NAME:TAG].  rm forgets a name; prune removes what no name uses.\n",
     cli_cmd_images},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct cli_command *
cli_find_command(const char *name)
{
  for (const struct cli_command *c = cli_commands; c->name; c++)
    if (!strcmp(c->name, name))
      return c;
  return NULL;
}

const char cli_summary[] = "run the CI tasks of a .cirrus.yml locally, in containers";
const char cli_main_options[] = "      --version   print the version\n"
                                "      --debug     verbose diagnostics\n"
                                "  -h, --help      show this help\n";
const char cli_exit_statuses[] =
    "  0  success: every task succeeded, was skipped or was allowed to fail\n"
    "  1  invalid configuration, or a task failed, or another runtime error\n"
    "  2  bad command line\n"
    "  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM\n";

void
cli_help_main(FILE *out)
{
  fprintf(out, "cirrus - %s\n\nUsage: cirrus [--debug] COMMAND [options]\n\nCommands:\n",
          cli_summary);
  for (const struct cli_command *c = cli_commands; c->name; c++)
    fprintf(out, "  %-10s %s\n", c->name, c->summary);
  fprintf(out, "  %-10s %s\n", "help", "show help for a command");
  fprintf(out, "\nOptions:\n%s\nExit status:\n%s", cli_main_options, cli_exit_statuses);
  fprintf(out, "\nRun `cirrus help COMMAND` for the options of a command.\n");
}

int
cli_help_command(const char *name, FILE *out)
{
  const struct cli_command *c = cli_find_command(name);
  if (!c)
    return -1;
  fprintf(out, "%s - %s\n\nUsage: %s\n\nOptions:\n%s", c->name, c->summary, c->usage, c->help);
  fprintf(out, "  -h, --help                  show this help\n");
  return 0;
}
