/* cmd/diag.c - printing errors and configuration diagnostics. */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_progname = "cirrus";

bool
cli_color(FILE *f)
{
  const char *nc = getenv("NO_COLOR");
  if (nc && *nc)
    return false;
  const char *term = getenv("TERM");
  if (term && !strcmp(term, "dumb"))
    return false;
  return isatty(fileno(f));
}

void
cli_error(const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s: ", cli_progname);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void
cli_report(struct ci_error **err)
{
  if (!err || !*err)
    return;
  if ((*err)->pos.file && (*err)->pos.line)
    fprintf(stderr, "%s:%u:%u: error: %s\n", (*err)->pos.file, (*err)->pos.line,
            (*err)->pos.col, (*err)->msg);
  else
    cli_error("%s", (*err)->msg);
  ci_error_free(err);
}

/* Print the source line and a caret under column col (1-based, in characters). */
static void
print_source(const struct cfg_file *f, unsigned line, unsigned col, FILE *out, bool color)
{
  size_t len;
  const char *src = cfg_file_get_line(f, line, &len);
  if (!src)
    return;
  fprintf(out, "%5u | %.*s\n", line, (int)len, src);
  fputs("      | ", out);
  unsigned chars = 0;
  for (size_t i = 0; i < len && chars + 1 < col; i++) {
    unsigned char ch = (unsigned char)src[i];
    if ((ch & 0xc0) == 0x80)
      continue; /* UTF-8 continuation byte */
    fputc(ch == '\t' ? '\t' : ' ', out);
    chars++;
  }
  fputs(color ? "\033[1;32m^\033[0m\n" : "^\n", out);
}

unsigned
cli_print_diags(const struct cfg_file *f, FILE *out)
{
  bool color = cli_color(out);
  unsigned nerr = 0;
  for (size_t i = 0; i < f->ndiags; i++) {
    const struct cfg_diag *d = &f->diags[i];
    bool err = d->level == CFG_DIAG_ERROR;
    nerr += err;
    const char *lvl = err ? "error" : "warning";
    const char *lc = err ? "\033[1;31m" : "\033[1;35m";
    if (color)
      fputs("\033[1m", out);
    if (d->pos.line)
      fprintf(out, "%s:%u:%u:", d->pos.file, d->pos.line, d->pos.col);
    else
      fprintf(out, "%s:", d->pos.file);
    if (color)
      fprintf(out, " %s%s:\033[0m\033[1m %s\033[0m\n", lc, lvl, d->msg);
    else
      fprintf(out, " %s: %s\n", lvl, d->msg);
    if (d->pos.line)
      print_source(f, d->pos.line, d->pos.col, out, color);
  }
  if (nerr)
    fprintf(out, "%s: %u error%s in %s\n", cli_progname, nerr, nerr == 1 ? "" : "s", f->path);
  return nerr;
}
