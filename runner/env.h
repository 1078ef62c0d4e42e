/* runner/env.h - the environment a step sees, and run-time expansion (the agent's rules).
 *
 * Precedence, low to high: CIRRUS_WORKING_DIR default < base (static variables, build id,
 * git facts) < task info (CI_NODE_INDEX/TOTAL, CIRRUS_TASK_NAME/ID) < the task's env <
 * the user's -e/--env-file < what steps wrote to $CIRRUS_ENV.  Values are then expanded
 * recursively (10 passes, self-references left alone), looking names up in the image's
 * environment first (upstream's expandTextOSFirst), with Go's os.Expand syntax: $NAME,
 * ${NAME}, ${NAME:default}, %NAME%; unknown names expand to "" (or the default).
 */
#ifndef RUN_ENV_H
#define RUN_ENV_H

#include "config/config.h"

/* Look a name up; return the value or NULL. */
typedef const char *(*run_env_lookup)(const char *name, void *data);

/* Expand text with Go's os.Expand rules plus %NAME%.  Returns an owned string. */
char *run_env_expand_text(const char *text, run_env_lookup lookup, void *data);

/* Expand every value of env in place, looking names up in os_env first, then env itself
 * (upstream's ExpandEnvironmentRecursively). */
void run_env_expand_recursively(struct cfg_env *env, const struct cfg_env *os_env);

/* Expand text for paths of file/cache/artifact instructions: env first, then os_env. */
char *run_env_expand_with(const char *text, const struct cfg_env *env,
                          const struct cfg_env *os_env);

/* The static variables (CI=true, ...) plus CIRRUS_BUILD_ID=CLI-<uuid v4>. */
void run_env_base(struct cfg_env *env, const char *build_uuid);

/* A random UUID v4 string (36 characters + NUL) from getrandom(2). */
void run_uuid(char out[37]);

#endif
