/* common/error.h - the one error type, created where a failure happens and
 * carried up with context (crun's libcrun_error_t).
 *
 * A fallible function returns int (>= 0 ok, < 0 failed), takes struct ci_error **err
 * last and writes out-parameters only on success:
 *
 *   if (fd < 0)
 *     return ci_error_make(err, -errno, "cannot open '%s'", path);
 *   ...
 *   if (ret < 0)
 *     return ci_error_prefix(err, "pulling '%s'", ref);
 *
 * Library code never prints an error; cmd/ decides how to show it.
 */
#ifndef CI_ERROR_H
#define CI_ERROR_H

#include "util.h"

/* A position in a source file; 1-based, 0 = unknown.  file is borrowed from whoever
 * owns the source (a struct cfg_file for configuration positions). */
struct ci_pos {
  const char *file;
  unsigned line, col;
};

/* Codes beyond errno. */
enum {
  CI_EFAIL = -10000, /* generic failure with a message */
  CI_ECONFIG,        /* invalid configuration */
  CI_EUSAGE,         /* bad command line */
  CI_ECANCELED,      /* interrupted by the user */
  CI_ETIMEDOUT,      /* a deadline passed */
  CI_EPROTO,         /* a peer answered something we do not understand */
};

struct ci_error {
  int code;          /* negative errno or CI_E* */
  char *msg;         /* owned */
  struct ci_pos pos; /* where in a configuration file, if anywhere */
};

/* Set *err (which must be NULL or err itself NULL) and return code (< 0).
 * err may be NULL: the failure is then only returned. */
int ci_error_make(struct ci_error **err, int code, const char *fmt, ...) CI_PRINTF(3, 4);
/* Like ci_error_make with code CI_ECONFIG and a position. */
int ci_error_at(struct ci_error **err, const struct ci_pos *pos, const char *fmt, ...)
    CI_PRINTF(3, 4);
/* Prepend context: "ctx: old message". Returns the error's code. */
int ci_error_prefix(struct ci_error **err, const char *fmt, ...) CI_PRINTF(2, 3);
void ci_error_free(struct ci_error **err);
/* An errno-style description of code: strerror for errno values, a word for CI_E*. */
const char *ci_error_code_str(int code);

#define cleanup_error __attribute__((cleanup(ci_error_free)))

#endif
