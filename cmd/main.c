/* cmd/main.c - `cirrus`: argument dispatch and exit statuses.  The only place that exits. */
#include "cli.h"
#include "help.h"
#include "common/log.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

#ifndef CIRRUS_VERSION
#define CIRRUS_VERSION "0.0.0"
#endif
#ifndef CIRRUS_COMMIT
#define CIRRUS_COMMIT "unknown"
#endif

int
main(int argc, char **argv)
{
  setlocale(LC_CTYPE, "C");
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--version")) {
      printf("cirrus version %s-%s\n", CIRRUS_VERSION, CIRRUS_COMMIT);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cli_help_main(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--debug")) {
      ci_log_set_level(CI_LOG_DEBUG);
    } else {
      cli_error("unknown option '%s' (see `cirrus --help`)", a);
      return CLI_EXIT_USAGE;
    }
  }
  if (i >= argc) {
    cli_help_main(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *cmd = argv[i];
  if (!strcmp(cmd, "help")) {
    if (i + 1 >= argc) {
      cli_help_main(stdout);
      return CLI_EXIT_OK;
    }
    if (cli_help_command(argv[i + 1], stdout) < 0) {
      cli_error("unknown command '%s' (see `cirrus help`)", argv[i + 1]);
      return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
  }
  if (!strcmp(cmd, "__complete"))
    return cli_cmd_complete(argc - i, argv + i);
  if (!strcmp(cmd, "__man"))
    return cli_cmd_man(argc - i, argv + i);
  const struct cli_command *c = cli_find_command(cmd);
  if (!c) {
    cli_error("unknown command '%s' (see `cirrus help`)", cmd);
    return CLI_EXIT_USAGE;
  }
  return c->fn(argc - i, argv + i);
}
