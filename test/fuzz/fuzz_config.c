/* libFuzzer target for the configuration parser: any byte string must parse to a model or
 * to diagnostics, never crash, hang, leak or trip a sanitizer. */
#include "config/config.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct cfg_env env = CFG_ENV_INIT;
  static struct ci_strv affected = CI_STRV_INIT;
  if (!env.n) {
    cfg_env_add_static(&env);
    cfg_env_set(&env, "CIRRUS_BRANCH", "main");
    ci_strv_push(&affected, "src/main.c");
    ci_strv_push(&affected, "docs/README.md");
  }
  struct cfg_options opts = {.env = &env, .affected_files = &affected, .project_dir = "/nonexistent"};
  struct cfg_file *f = cfg_parse("fuzz.yml", (const char *)data, size, &opts);
  json_t *j = cfg_file_to_json(f);
  char *s = json_dumps(j, 0);
  free(s);
  json_decref(j);
  for (size_t i = 0; i < f->ndiags; i++) {
    size_t len;
    (void)cfg_file_get_line(f, f->diags[i].pos.line, &len);
  }
  cfg_file_free(f);
  return 0;
}
