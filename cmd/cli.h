/* cmd/cli.h - the command line: shared pieces of the subcommands. */
#ifndef CLI_H
#define CLI_H

#include "common/error.h"
#include "config/config.h"

#include <stdio.h>

/* Exit statuses (documented in README.md and `cirrus help`). */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILURE = 1, /* invalid configuration, a failed task, any runtime error */
  CLI_EXIT_USAGE = 2,   /* bad command line */
};

extern const char *cli_progname;

/* Print an error as "cirrus: message" on stderr. */
void cli_error(const char *fmt, ...) CI_PRINTF(1, 2);
/* Print a ci_error (with its position, if any) and free it. */
void cli_report(struct ci_error **err);
/* Print every diagnostic of a configuration like a compiler does, with the source line and a
 * caret under the column.  Returns the number of errors. */
unsigned cli_print_diags(const struct cfg_file *f, FILE *out);
bool cli_color(FILE *f);

/* -e/--env and --env-file values (upstream's EnvArgsToMap/EnvFileToMap, without its bug of
 * dropping later -e arguments after an unset pass-through name). */
struct cli_env_args {
  struct ci_strv env;  /* -e values in order */
  char *env_file;      /* --env-file, or NULL */
};
int cli_env_args_resolve(const struct cli_env_args *a, struct cfg_env *out, struct ci_error **err);
void cli_env_args_release(struct cli_env_args *a);
/* Split a comma-separated list into out (empty items dropped). */
void cli_split_commas(const char *s, struct ci_strv *out);

/* Options shared by the commands that read a configuration. */
struct cli_config_opts {
  const char *file;                      /* -f, or NULL to discover */
  struct cli_env_args env;
  struct ci_strv affected_files;
  const char *dockerfile_image_template; /* NULL = default */
};
/* Find, read and parse the configuration; print its diagnostics.  Returns 0 with *out set
 * when it is valid, else < 0 (already reported). */
int cli_load_config(const struct cli_config_opts *o, struct cfg_file **out);

int cli_cmd_run(int argc, char **argv);
int cli_cmd_validate(int argc, char **argv);
int cli_cmd_tasks(int argc, char **argv);
int cli_cmd_images(int argc, char **argv);
int cli_cmd_clean(int argc, char **argv);
int cli_cmd_graph(int argc, char **argv);

#endif
