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
/* The pieces of `cirrus --help` that the man page (cirrus __man) shows too. */
extern const char cli_summary[];
extern const char cli_main_options[];
extern const char cli_exit_statuses[];
const struct cli_command *cli_find_command(const char *name);
void cli_help_main(FILE *out);
/* Help of one command; returns -1 if it does not exist. */
int cli_help_command(const char *name, FILE *out);

/* Hidden commands: `cirrus __complete` (for the shell completions in completions/) and
 * `cirrus __man [-o FILE]` (the man page cirrus(1) in roff, generated from these texts at
 * build time). */
int cli_cmd_complete(int argc, char **argv);
int cli_cmd_man(int argc, char **argv);
/* The man page text (owned by the caller). */
char *cli_man_page(void);

#endif
