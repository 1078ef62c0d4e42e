/* cmd/complete.c - `cirrus __complete`: what the shell completions (completions/) offer.
 *
 *   cirrus __complete commands [--describe]   command names (--describe: NAME<TAB>SUMMARY)
 *   cirrus __complete flags [COMMAND]         the options of COMMAND (none: cirrus's own),
 *                                             read from its --help text
 *   cirrus __complete tasks [-f FILE]         task names and aliases of the configuration,
 *                                             one per line, in id order, no duplicates
 * Errors are silent (exit 1): a completion must never print into the user's prompt.
 */
#include "cli.h"
#include "help.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Print the option words ("-f", "--file") of a help text: on lines that start with
 * spaces and a '-' (continuation lines are indented much further and start with text). */
static void
print_flags(const char *help)
{
  for (const char *line = help; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    size_t i = 0;
    while (i < len && line[i] == ' ')
      i++;
    if (i >= 2 && i <= 6 && i < len && line[i] == '-') {
      /* "-f, --file FILE   description": words up to the first double space. */
      while (i < len && !(line[i] == ' ' && i + 1 < len && line[i + 1] == ' ')) {
        size_t w = i;
        while (i < len && line[i] != ' ' && line[i] != ',')
          i++;
        if (line[w] == '-')
          printf("%.*s\n", (int)(i - w), line + w);
        while (i < len && line[i] == ',')
          i++;
        if (i < len && line[i] == ' ' && !(i + 1 < len && line[i + 1] == ' '))
          i++;
      }
    }
    line += len + (end ? 1 : 0);
  }
}

static int
complete_tasks(int argc, char **argv)
{
  struct cli_config_opts o = {0};
  for (int i = 0; i < argc; i++)
    if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc)
      o.file = argv[++i];
    else if (!strncmp(argv[i], "--file=", 7))
      o.file = argv[i] + 7;
  /* Diagnostics would land in the user's prompt. */
  int saved = dup(STDERR_FILENO);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, STDERR_FILENO);
    close(null);
  }
  struct cfg_file *f = NULL;
  int r = cli_load_config(&o, &f);
  if (saved >= 0) {
    dup2(saved, STDERR_FILENO);
    close(saved);
  }
  if (r < 0)
    return CLI_EXIT_FAILURE;
  struct ci_strv seen = CI_STRV_INIT;
  for (size_t i = 0; i < f->ntasks; i++) {
    const char *names[2] = {f->tasks[i].name, f->tasks[i].alias};
    for (int k = 0; k < 2; k++)
      if (names[k] && *names[k] && !ci_strv_contains(&seen, names[k])) {
        ci_strv_push(&seen, names[k]);
        puts(names[k]);
      }
  }
  ci_strv_release(&seen);
  cfg_file_free(f);
  return CLI_EXIT_OK;
}

int
cli_cmd_complete(int argc, char **argv)
{
  if (argc < 2)
    return CLI_EXIT_USAGE;
  const char *what = argv[1];
  if (!strcmp(what, "commands")) {
    bool describe = argc > 2 && !strcmp(argv[2], "--describe");
    for (const struct cli_command *c = cli_commands; c->name; c++)
      if (describe)
        printf("%s\t%s\n", c->name, c->summary);
      else
        puts(c->name);
    puts(describe ? "help\tshow help for a command" : "help");
  } else if (!strcmp(what, "flags")) {
    if (argc < 3 || !*argv[2]) {
      print_flags(cli_main_options);
    } else {
      const struct cli_command *c = cli_find_command(argv[2]);
      if (!c)
        return CLI_EXIT_FAILURE;
      print_flags(c->help);
      puts("-h");
      puts("--help");
    }
  } else if (!strcmp(what, "tasks")) {
    return complete_tasks(argc - 2, argv + 2);
  } else {
    return CLI_EXIT_USAGE;
  }
  return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
