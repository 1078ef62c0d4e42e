/* cmd/config_opts.c - environment arguments and configuration loading for commands. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
cli_split_commas(const char *s, struct ci_strv *out)
{
  const char *p = s;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n)
      ci_strv_push_take(out, xstrndup(p, n));
    if (!comma)
      break;
    p = comma + 1;
  }
}

/* NAME=VALUE sets; a bare NAME passes the host's value through (nothing if unset). */
static int
apply_assignment(const char *arg, struct cfg_env *out, const char *where, struct ci_error **err)
{
  const char *eq = strchr(arg, '=');
  size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
  if (nl == 0)
    return ci_error_make(err, CI_EUSAGE, "%s: '%s' has no variable name", where, arg);
  char *name = xstrndup(arg, nl);
  if (eq) {
    cfg_env_set(out, name, eq + 1);
  } else {
    const char *v = getenv(name);
    if (v)
      cfg_env_set(out, name, v);
  }
  free(name);
  return 0;
}

int
cli_env_args_resolve(const struct cli_env_args *a, struct cfg_env *out, struct ci_error **err)
{
  if (a->env_file) {
    char *text = NULL;
    if (ci_read_file(a->env_file, 16 << 20, &text, NULL, err) < 0)
      return ci_error_prefix(err, "--env-file");
    char *save = NULL;
    int ret = 0;
    for (char *line = strtok_r(text, "\n", &save); line && ret == 0;
         line = strtok_r(NULL, "\n", &save)) {
      size_t l = strlen(line);
      if (l && line[l - 1] == '\r')
        line[--l] = '\0';
      if (!l || line[0] == '#')
        continue;
      ret = apply_assignment(line, out, a->env_file, err);
    }
    free(text);
    if (ret < 0)
      return ret;
  }
  for (size_t i = 0; i < a->env.n; i++)
    if (apply_assignment(a->env.v[i], out, "-e", err) < 0)
      return -1;
  return 0;
}

void
cli_env_args_release(struct cli_env_args *a)
{
  ci_strv_release(&a->env);
  free(a->env_file);
  a->env_file = NULL;
}

int
cli_load_config(const struct cli_config_opts *o, struct cfg_file **out)
{
  struct ci_error *err = NULL;
  char *path = NULL;
  if (o->file)
    path = xstrdup(o->file);
  else if (cfg_discover(".", &path, &err) < 0) {
    cli_report(&err);
    return -1;
  }
  struct cfg_env penv = CFG_ENV_INIT;
  cfg_env_add_static(&penv);
  if (cli_env_args_resolve(&o->env, &penv, &err) < 0) {
    cli_report(&err);
    cfg_env_release(&penv);
    free(path);
    return -1;
  }
  struct cfg_options opts = {
      .env = &penv,
      .affected_files = &o->affected_files,
      .project_dir = ".",
      .dockerfile_image_template = o->dockerfile_image_template,
  };
  struct cfg_file *f = NULL;
  int ret = cfg_load(path, &opts, &f, &err);
  cfg_env_release(&penv);
  free(path);
  if (ret < 0) {
    cli_report(&err);
    return -1;
  }
  if (cli_print_diags(f, stderr)) {
    cfg_file_free(f);
    return -1;
  }
  *out = f;
  return 0;
}
