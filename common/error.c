/* common/error.c - the error object. */
#include "error.h"

#include <stdlib.h>
#include <string.h>

static int
error_vmake(struct ci_error **err, int code, const struct ci_pos *pos, const char *fmt, va_list ap)
{
  if (code >= 0)
    CI_BUG("error code must be negative (got %d)", code);
  if (!err)
    return code;
  if (*err)
    CI_BUG("error overwritten: '%s'", (*err)->msg);
  struct ci_error *e = xcalloc(1, sizeof(*e));
  e->code = code;
  e->msg = xvasprintf(fmt, ap);
  if (pos)
    e->pos = *pos;
  *err = e;
  return code;
}

int
ci_error_make(struct ci_error **err, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int ret = error_vmake(err, code, NULL, fmt, ap);
  va_end(ap);
  return ret;
}

int
ci_error_at(struct ci_error **err, const struct ci_pos *pos, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int ret = error_vmake(err, CI_ECONFIG, pos, fmt, ap);
  va_end(ap);
  return ret;
}

int
ci_error_prefix(struct ci_error **err, const char *fmt, ...)
{
  if (!err || !*err)
    CI_BUG("ci_error_prefix without an error");
  va_list ap;
  va_start(ap, fmt);
  char *ctx = xvasprintf(fmt, ap);
  va_end(ap);
  char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
  free(ctx);
  free((*err)->msg);
  (*err)->msg = msg;
  return (*err)->code;
}

void
ci_error_free(struct ci_error **err)
{
  if (!err || !*err)
    return;
  free((*err)->msg);
  free(*err);
  *err = NULL;
}

const char *
ci_error_code_str(int code)
{
  switch (code) {
  case CI_EFAIL:
    return "failed";
  case CI_ECONFIG:
    return "invalid configuration";
  case CI_EUSAGE:
    return "usage error";
  case CI_ECANCELED:
    return "interrupted";
  case CI_ETIMEDOUT:
    return "timed out";
  case CI_EPROTO:
    return "protocol error";
  default:
    return code < 0 && code > -4096 ? strerror(-code) : "unknown error";
  }
}
