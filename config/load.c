/* config/load.c - finding, reading and parsing a configuration file. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE (64u << 20)

static bool
exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

int
cfg_discover(const char *dir, char **path, struct ci_error **err)
{
  static const char *const names[] = {".cirrus.yaml", ".cirrus.yml"};
  for (size_t i = 0; i < CI_ARRAY_SIZE(names); i++) {
    char *p = strcmp(dir, ".") ? xasprintf("%s/%s", dir, names[i]) : xstrdup(names[i]);
    if (exists(p)) {
      *path = p;
      return 0;
    }
    free(p);
  }
  char *star = strcmp(dir, ".") ? xasprintf("%s/.cirrus.star", dir) : xstrdup(".cirrus.star");
  bool have_star = exists(star);
  free(star);
  if (have_star)
    return ci_error_make(err, -ENOTSUP,
                         "Starlark configuration is not supported: found .cirrus.star but no "
                         ".cirrus.yml; convert it to YAML (`cirrus validate` checks the result)");
  return ci_error_make(err, -ENOENT,
                       "failed to read configuration: neither .cirrus.yml nor .cirrus.yaml "
                       "exists in %s (use -f FILE to name one)",
                       strcmp(dir, ".") ? dir : "the current directory");
}

static void
index_lines(struct cfg_file *f)
{
  size_t alloc = 0;
  CI_GROW(f->line_starts, alloc, 1);
  f->line_starts[f->nlines++] = 0;
  for (size_t i = 0; i < f->len; i++)
    if (f->text[i] == '\n') {
      CI_GROW(f->line_starts, alloc, f->nlines + 1);
      f->line_starts[f->nlines++] = i + 1;
    }
}

const char *
cfg_file_get_line(const struct cfg_file *f, unsigned line, size_t *len)
{
  if (line == 0 || line > f->nlines)
    return NULL;
  size_t start = f->line_starts[line - 1];
  size_t end = line < f->nlines ? f->line_starts[line] - 1 : f->len;
  if (end > start && f->text[end - 1] == '\r')
    end--;
  if (start > f->len)
    return NULL;
  *len = end >= start ? end - start : 0;
  return f->text + start;
}

struct cfg_file *
cfg_parse(const char *path, const char *text, size_t len, const struct cfg_options *opts)
{
  struct cfg_file *f = xcalloc(1, sizeof(*f));
  f->path = xstrdup(path);
  f->text = xstrndup(text, len);
  f->len = len;
  index_lines(f);

  struct cfg__ctx c = {.file = f, .opts = opts};
  c.mem = &c.arena;
  if (opts && opts->env)
    cfg_env_copy(&c.penv, opts->env);
  if (memchr(text, '\0', len)) {
    cfg__error(&c, 0, 0, "the file contains NUL bytes; it is not a YAML text file");
  } else {
    struct cfg__node *root = cfg__yaml_parse(&c);
    if (root) {
      c.root = root;
      if (cfg__matrix_expand(&c, root) >= 0 || !c.overflow)
        cfg__parse_tasks(&c, root);
    }
  }
  for (size_t i = 0; i < c.nrootcol; i++)
    free(c.rootcol[i].v);
  cfg_env_release(&c.penv);
  cfg__arena_release(&c.arena);
  cfg__arena_release(&c.scratch);
  return f;
}

int
cfg_load(const char *path, const struct cfg_options *opts, struct cfg_file **out,
         struct ci_error **err)
{
  if (!ci_str_has_suffix(path, ".yml") && !ci_str_has_suffix(path, ".yaml")) {
    if (ci_str_has_suffix(path, ".star"))
      return ci_error_make(err, -ENOTSUP, "cannot use '%s': Starlark configuration is not "
                                          "supported",
                           path);
    return ci_error_make(err, -EINVAL,
                         "cannot use '%s': a configuration file name must end in .yml or .yaml",
                         path);
  }
  char *text = NULL;
  size_t len = 0;
  if (ci_read_file(path, CFG_MAX_FILE, &text, &len, err) < 0)
    return ci_error_prefix(err, "failed to read configuration");
  *out = cfg_parse(path, text, len, opts);
  free(text);
  return 0;
}

void
cfg_file_free(struct cfg_file *f)
{
  if (!f)
    return;
  for (size_t i = 0; i < f->ntasks; i++)
    cfg__task_release(&f->tasks[i]);
  free(f->tasks);
  for (size_t i = 0; i < f->ndiags; i++)
    free(f->diags[i].msg);
  free(f->diags);
  free(f->line_starts);
  free(f->text);
  free(f->path);
  free(f);
}
