/* cmd/help.h - one source for every help text (also used to generate the man page). */
#ifndef CLI_HELP_H
#define CLI_HELP_H

#include <stdio.h>

struct cli_command {
  const char *name;
  const char *summary; /* one line */
  const char *usage;   /* "cirrus validate [options]" */
  const char *help;    /* option descriptions, one per line */
  int (*fn)(int argc, char **argv);
};

extern const struct cli_command cli_commands[];
const struct cli_command *cli_find_command(const char *name);
void cli_help_main(FILE *out);
/* Help of one command; returns -1 if it does not exist. */
int cli_help_command(const char *name, FILE *out);

#endif
