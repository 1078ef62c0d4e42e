/* common/log.c - levelled logging through one sink. */
#include "log.h"

#include <stdlib.h>

static enum ci_log_level log_level = CI_LOG_INFO;
static ci_log_sink log_sink;
static void *log_sink_data;

static void
default_sink(enum ci_log_level level, const char *msg, void *data)
{
  static const char *const names[] = {"error", "warning", "info", "debug", "trace"};
  (void)data;
  fprintf(stderr, "%s: %s\n", names[level], msg);
}

void
ci_log_set_sink(ci_log_sink sink, void *data)
{
  log_sink = sink;
  log_sink_data = data;
}

void
ci_log_set_level(enum ci_log_level level)
{
  log_level = level;
}

enum ci_log_level
ci_log_get_level(void)
{
  return log_level;
}

void
ci_log(enum ci_log_level level, const char *fmt, ...)
{
  if (level > log_level)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  if (log_sink)
    log_sink(level, msg, log_sink_data);
  else
    default_sink(level, msg, NULL);
  free(msg);
}
