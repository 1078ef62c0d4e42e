/* config/expr.h - module-internal: boolevator and Java-style globs. */
#ifndef CFG_EXPR_H
#define CFG_EXPR_H

#include "config.h"

/* Evaluate an only_if/skip/... expression.  Returns 0 and *out, or -1 and an owned *errmsg. */
int cfg__bool_eval(const char *expr, const struct cfg_env *env,
                   const struct ci_strv *affected_files, bool *out, char **errmsg);

/* Whole-path match of a Java-style glob (go-java-glob). */
bool cfg__glob_match(const char *pattern, const char *path);

#endif
