/* common/log.h - levelled logging through one installable sink (crun's
 * crun_set_output_handler).  Library code logs through these functions only;
 * cmd/ installs the sink that writes text (colour on a TTY) or JSON lines.
 */
#ifndef CI_LOG_H
#define CI_LOG_H

#include "util.h"

enum ci_log_level {
  CI_LOG_ERROR,
  CI_LOG_WARN,
  CI_LOG_INFO,
  CI_LOG_DEBUG,
  CI_LOG_TRACE,
};

typedef void (*ci_log_sink)(enum ci_log_level level, const char *msg, void *data);

/* Install a sink (NULL restores the default, which writes "level: msg" to stderr). */
void ci_log_set_sink(ci_log_sink sink, void *data);
void ci_log_set_level(enum ci_log_level level);
enum ci_log_level ci_log_get_level(void);
static inline bool
ci_log_enabled(enum ci_log_level level)
{
  return level <= ci_log_get_level();
}

void ci_log(enum ci_log_level level, const char *fmt, ...) CI_PRINTF(2, 3);
#define ci_log_error(...) ci_log(CI_LOG_ERROR, __VA_ARGS__)
#define ci_log_warn(...) ci_log(CI_LOG_WARN, __VA_ARGS__)
#define ci_log_info(...) ci_log(CI_LOG_INFO, __VA_ARGS__)
#define ci_log_debug(...)                                                                          \
  do {                                                                                             \
    if (ci_log_enabled(CI_LOG_DEBUG))                                                              \
      ci_log(CI_LOG_DEBUG, __VA_ARGS__);                                                           \
  } while (0)
#define ci_log_trace(...)                                                                          \
  do {                                                                                             \
    if (ci_log_enabled(CI_LOG_TRACE))                                                              \
      ci_log(CI_LOG_TRACE, __VA_ARGS__);                                                           \
  } while (0)

#endif
