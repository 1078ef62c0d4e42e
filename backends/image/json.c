/* backends/image/json.c - small jansson helpers. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
img__json_parse(const char *buf, size_t len, const char *what, json_t **out, struct ci_error **err)
{
  json_error_t je;
  json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (!j)
    return ci_error_make(err, CI_EPROTO, "invalid JSON in %s at line %d: %s", what, je.line,
                         je.text);
  if (!json_is_object(j)) {
    json_decref(j);
    return ci_error_make(err, CI_EPROTO, "invalid JSON in %s: not an object", what);
  }
  *out = j;
  return 0;
}

const char *
img__json_str(const json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

int
img__json_strv(const json_t *arr, const char *what, struct ci_strv *out, struct ci_error **err)
{
  if (!arr || json_is_null(arr))
    return 0;
  if (!json_is_array(arr))
    return ci_error_make(err, -EINVAL, "%s is not an array", what);
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v)
  {
    if (!json_is_string(v))
      return ci_error_make(err, -EINVAL, "%s[%zu] is not a string", what, i);
  }
  json_array_foreach(arr, i, v) ci_strv_push(out, json_string_value(v));
  return 0;
}

int
img__json_write(const char *path, const json_t *j, struct ci_error **err)
{
  cleanup_free char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  if (!s)
    return ci_error_make(err, -ENOMEM, "cannot serialise '%s'", path);
  size_t n = strlen(s);
  s[n] = '\n';
  int ret = img__write_atomic(path, s, n + 1, err);
  s[n] = '\0';
  return ret;
}

int
img__json_read(const char *path, size_t max, json_t **out, struct ci_error **err)
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  int ret = ci_read_file(path, max, &buf, &len, err);
  if (ret < 0)
    return ret;
  return img__json_parse(buf, len, path, out, err);
}
