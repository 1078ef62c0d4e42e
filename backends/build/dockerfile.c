/* backends/build/dockerfile.c - Dockerfile parsing and word expansion. */
#include "build.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
  const char *name;
  enum bld_kind kind;
} keywords[] = {
    {"FROM", BLD_FROM},       {"RUN", BLD_RUN},
    {"COPY", BLD_COPY},       {"ADD", BLD_ADD},
    {"ENV", BLD_ENV},         {"ARG", BLD_ARG},
    {"WORKDIR", BLD_WORKDIR}, {"USER", BLD_USER},
    {"LABEL", BLD_LABEL},     {"ENTRYPOINT", BLD_ENTRYPOINT},
    {"CMD", BLD_CMD},         {"EXPOSE", BLD_EXPOSE},
};

static const char *const unsupported[] = {"VOLUME",  "SHELL",      "HEALTHCHECK",
                                          "ONBUILD", "STOPSIGNAL", "MAINTAINER"};

void
bld_dockerfile_release(struct bld_dockerfile *df)
{
  for (size_t i = 0; i < df->n; i++) {
    free(df->v[i].text);
    free(df->v[i].rest);
    ci_strv_release(&df->v[i].argv);
    ci_strv_release(&df->v[i].flags);
  }
  free(df->v);
  free(df->file);
  memset(df, 0, sizeof *df);
}

/* ---------------------------------------------------------------- words */

static int
expand_var(const char **ps, bld_lookup_fn lookup, void *data, struct ci_buf *w,
           struct ci_error **err)
{
  const char *s = *ps; /* at '$' */
  s++;
  if (*s == '{') {
    const char *end = strchr(s, '}');
    if (!end)
      return ci_error_make(err, CI_EUSAGE, "missing '}' in '%s'", *ps);
    cleanup_free char *inner = xstrndup(s + 1, (size_t)(end - s - 1));
    char *op = strchr(inner, ':');
    const char *word = NULL;
    char mode = 0;
    if (op) {
      if (op[1] != '-' && op[1] != '+')
        return ci_error_make(err, CI_EUSAGE, "unsupported modifier in '${%s}'", inner);
      mode = op[1];
      word = op + 2;
      *op = '\0';
    }
    if (!*inner)
      return ci_error_make(err, CI_EUSAGE, "empty variable name in '${...}'");
    const char *v = lookup ? lookup(inner, data) : NULL;
    if (mode == '-')
      ci_buf_adds(w, v && *v ? v : word);
    else if (mode == '+')
      ci_buf_adds(w, v && *v ? word : "");
    else if (v)
      ci_buf_adds(w, v);
    *ps = end + 1;
    return 0;
  }
  const char *start = s;
  while (*s == '_' || isalnum((unsigned char)*s))
    s++;
  if (s == start) {
    ci_buf_addc(w, '$'); /* a lone '$' stays */
    *ps = start;
    return 0;
  }
  cleanup_free char *name = xstrndup(start, (size_t)(s - start));
  const char *v = lookup ? lookup(name, data) : NULL;
  if (v)
    ci_buf_adds(w, v);
  *ps = s;
  return 0;
}

int
bld_words(const char *s, bld_lookup_fn lookup, void *data, struct ci_strv *out,
          struct ci_error **err)
{
  struct ci_strv words = CI_STRV_INIT;
  struct ci_buf w = CI_BUF_INIT;
  bool in_word = false;
  int ret = 0;
  while (*s && ret == 0) {
    char ch = *s;
    if (isspace((unsigned char)ch)) {
      if (in_word)
        ci_strv_push_take(&words, ci_buf_take(&w));
      in_word = false;
      s++;
      continue;
    }
    in_word = true;
    if (ch == '\\') {
      if (s[1]) {
        ci_buf_addc(&w, s[1]);
        s += 2;
      } else {
        s++;
      }
    } else if (ch == '\'') {
      const char *end = strchr(s + 1, '\'');
      if (!end) {
        ret = ci_error_make(err, CI_EUSAGE, "unterminated single quote");
        break;
      }
      ci_buf_add(&w, s + 1, (size_t)(end - s - 1));
      s = end + 1;
    } else if (ch == '"') {
      s++;
      while (*s && *s != '"' && ret == 0) {
        if (*s == '\\' && (s[1] == '"' || s[1] == '\\' || s[1] == '$')) {
          ci_buf_addc(&w, s[1]);
          s += 2;
        } else if (*s == '$') {
          ret = expand_var(&s, lookup, data, &w, err);
        } else {
          ci_buf_addc(&w, *s++);
        }
      }
      if (ret == 0 && *s != '"')
        ret = ci_error_make(err, CI_EUSAGE, "unterminated double quote");
      else
        s++;
    } else if (ch == '$') {
      ret = expand_var(&s, lookup, data, &w, err);
    } else {
      ci_buf_addc(&w, ch);
      s++;
    }
  }
  if (ret == 0 && in_word)
    ci_strv_push_take(&words, ci_buf_take(&w));
  ci_buf_release(&w);
  if (ret < 0) {
    ci_strv_release(&words);
    return ret;
  }
  for (size_t i = 0; i < words.n; i++)
    ci_strv_push_take(out, steal_pointer(&words.v[i]));
  ci_strv_release(&words);
  return 0;
}

/* ---------------------------------------------------------------- instructions */

static int
parse_json_array(const char *s, struct ci_strv *out)
{
  json_error_t je;
  json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &je);
  if (!j || !json_is_array(j)) {
    json_decref(j);
    return -1;
  }
  size_t i;
  json_t *v;
  json_array_foreach(j, i, v)
  {
    if (!json_is_string(v)) {
      json_decref(j);
      ci_strv_release(out);
      return -1;
    }
    ci_strv_push(out, json_string_value(v));
  }
  json_decref(j);
  return 0;
}

static int fail_at(struct ci_error **err, const char *file, unsigned line, const char *fmt, ...)
    CI_PRINTF(4, 5);
static int
fail_at(struct ci_error **err, const char *file, unsigned line, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  /* In the message itself: the error travels up through the backend, past this file's life. */
  return ci_error_make(err, CI_ECONFIG, "%s:%u: %s", file, line, msg);
}

/* Check the arguments of one instruction (words expanded with nothing set). */
static int
check_instr(struct bld_instr *in, const char *kw, const char *file, struct ci_error **err)
{
  struct ci_strv w = CI_STRV_INIT;
  struct ci_error *e = NULL;
  int ret = 0;
  bool needs_words = in->kind != BLD_RUN && in->kind != BLD_CMD && in->kind != BLD_ENTRYPOINT;
  if (needs_words && !in->json && bld_words(in->rest, NULL, NULL, &w, &e) < 0) {
    ret = fail_at(err, file, in->line, "%s: %s", kw, e->msg);
    ci_error_free(&e);
    return ret;
  }
  size_t n = in->json ? in->argv.n : w.n;
  switch (in->kind) {
  case BLD_FROM:
    if (n != 1 && !(n == 3 && !strcasecmp(w.v[1], "AS")))
      ret = fail_at(err, file, in->line, "FROM needs an image (FROM image [AS name])");
    break;
  case BLD_RUN:
  case BLD_CMD:
  case BLD_ENTRYPOINT:
    if (in->kind == BLD_RUN && in->argv.n == 0)
      ret = fail_at(err, file, in->line, "RUN needs a command");
    break;
  case BLD_COPY:
  case BLD_ADD:
    if (n < 2)
      ret = fail_at(err, file, in->line, "%s needs at least one source and a destination", kw);
    for (size_t i = 0; ret == 0 && i < in->flags.n; i++) {
      const char *f = in->flags.v[i];
      if (!ci_str_has_prefix(f, "--chown="))
        ret = fail_at(err, file, in->line, "%s: unsupported flag '%s'", kw, f);
    }
    for (size_t i = 0; ret == 0 && in->kind == BLD_ADD && !in->json && i + 1 < n; i++)
      if (strstr(w.v[i], "://"))
        ret = fail_at(err, file, in->line, "ADD: remote sources are not supported ('%s')", w.v[i]);
    break;
  case BLD_ENV:
  case BLD_LABEL:
    if (n == 0)
      ret = fail_at(err, file, in->line, "%s needs KEY=VALUE", kw);
    else if (!strchr(w.v[0], '=') && (in->kind == BLD_LABEL || n < 2))
      ret = fail_at(err, file, in->line, "%s needs KEY=VALUE%s", kw,
                    in->kind == BLD_ENV ? " (or KEY VALUE)" : "");
    for (size_t i = 0; ret == 0 && strchr(w.v[0], '=') && i < n; i++)
      if (!strchr(w.v[i], '=') || w.v[i][0] == '=')
        ret = fail_at(err, file, in->line, "%s: '%s' is not KEY=VALUE", kw, w.v[i]);
    break;
  case BLD_ARG:
    if (n == 0)
      ret = fail_at(err, file, in->line, "ARG needs a name");
    for (size_t i = 0; ret == 0 && i < n; i++)
      if (w.v[i][0] == '=' || !w.v[i][0])
        ret = fail_at(err, file, in->line, "ARG: '%s' has no name", w.v[i]);
    break;
  case BLD_WORKDIR:
  case BLD_USER:
    if (n != 1)
      ret = fail_at(err, file, in->line, "%s needs exactly one argument", kw);
    break;
  case BLD_EXPOSE:
    if (n == 0)
      ret = fail_at(err, file, in->line, "EXPOSE needs a port");
    break;
  }
  if (ret == 0 && in->flags.n && in->kind != BLD_COPY && in->kind != BLD_ADD)
    ret = fail_at(err, file, in->line, "%s: unsupported flag '%s'", kw, in->flags.v[0]);
  ci_strv_release(&w);
  return ret;
}

/* One logical instruction (continuations joined) starting at line. */
static int
add_instr(struct bld_dockerfile *df, const char *logical, unsigned line, size_t *alloc,
          struct ci_error **err)
{
  const char *s = logical;
  while (isspace((unsigned char)*s))
    s++;
  const char *kw_end = s;
  while (*kw_end && !isspace((unsigned char)*kw_end))
    kw_end++;
  cleanup_free char *kw = xstrndup(s, (size_t)(kw_end - s));
  for (char *p = kw; *p; p++)
    *p = (char)toupper((unsigned char)*p);
  enum bld_kind kind = 0;
  for (size_t i = 0; i < CI_ARRAY_SIZE(keywords); i++)
    if (!strcmp(kw, keywords[i].name))
      kind = keywords[i].kind;
  if (!kind) {
    for (size_t i = 0; i < CI_ARRAY_SIZE(unsupported); i++)
      if (!strcmp(kw, unsupported[i]))
        return fail_at(err, df->file, line, "unsupported instruction '%s'", kw);
    return fail_at(err, df->file, line, "unknown instruction '%s'", kw);
  }
  if (kind == BLD_FROM && df->n)
    for (size_t i = 0; i < df->n; i++)
      if (df->v[i].kind == BLD_FROM)
        return fail_at(err, df->file, line, "multi-stage builds are not supported (a second FROM)");
  if (kind != BLD_FROM && kind != BLD_ARG && !df->n)
    return fail_at(err, df->file, line, "the first instruction must be FROM (or ARG), not %s", kw);
  if (kind != BLD_FROM && kind != BLD_ARG) {
    bool from = false;
    for (size_t i = 0; i < df->n; i++)
      from |= df->v[i].kind == BLD_FROM;
    if (!from)
      return fail_at(err, df->file, line, "%s before FROM", kw);
  }
  const char *rest = kw_end;
  while (isspace((unsigned char)*rest))
    rest++;
  struct bld_instr in = {.kind = kind, .line = line};
  /* Flags: --name=value words before the arguments. */
  while (ci_str_has_prefix(rest, "--") && kind != BLD_RUN && kind != BLD_CMD &&
         kind != BLD_ENTRYPOINT) {
    const char *e = rest;
    while (*e && !isspace((unsigned char)*e))
      e++;
    ci_strv_push_take(&in.flags, xstrndup(rest, (size_t)(e - rest)));
    rest = e;
    while (isspace((unsigned char)*rest))
      rest++;
  }
  if (kind == BLD_RUN && ci_str_has_prefix(rest, "--")) {
    ci_strv_release(&in.flags);
    return fail_at(err, df->file, line, "RUN: flags are not supported");
  }
  in.rest = xstrdup(rest);
  size_t rl = strlen(in.rest);
  while (rl && isspace((unsigned char)in.rest[rl - 1]))
    in.rest[--rl] = '\0';
  in.text = xasprintf("%s %s", kw, in.rest);
  int ret = 0;
  bool json_ok = kind == BLD_RUN || kind == BLD_CMD || kind == BLD_ENTRYPOINT || kind == BLD_COPY ||
                 kind == BLD_ADD;
  if (json_ok && in.rest[0] == '[') {
    if (parse_json_array(in.rest, &in.argv) < 0)
      ret = fail_at(err, df->file, line, "%s: invalid JSON array '%s'", kw, in.rest);
    else
      in.json = true;
  } else if (kind == BLD_RUN || kind == BLD_CMD || kind == BLD_ENTRYPOINT) {
    if (strstr(in.rest, "<<") && kind == BLD_RUN) {
      const char *h = strstr(in.rest, "<<");
      const char *t = h + 2;
      if (*t == '-')
        t++;
      if (*t == '"' || *t == '\'' || isupper((unsigned char)*t))
        ret = fail_at(err, df->file, line, "RUN: heredocs are not supported");
    }
    if (ret == 0 && in.rest[0])
      ci_strv_push(&in.argv, in.rest);
  }
  if (ret == 0)
    ret = check_instr(&in, kw, df->file, err);
  if (ret < 0) {
    free(in.text);
    free(in.rest);
    ci_strv_release(&in.argv);
    ci_strv_release(&in.flags);
    return ret;
  }
  ci_grow(&df->v, alloc, df->n + 1, sizeof *df->v);
  df->v[df->n++] = in;
  return 0;
}

int
bld_parse(const char *file, const char *text, struct bld_dockerfile *out, struct ci_error **err)
{
  struct bld_dockerfile df = {.file = xstrdup(file)};
  size_t alloc = 0;
  struct ci_buf logical = CI_BUF_INIT;
  unsigned start = 0, lineno = 0;
  int ret = 0;
  const char *s = text;
  while (*s && ret == 0) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    lineno++;
    cleanup_free char *line = xstrndup(s, len);
    s += len + (nl ? 1 : 0);
    size_t l = strlen(line);
    if (l && line[l - 1] == '\r')
      line[--l] = '\0';
    const char *t = line;
    while (isspace((unsigned char)*t))
      t++;
    /* Comments (also inside a continued instruction) and empty lines. */
    if (*t == '#' || (!*t && !start))
      continue;
    if (!*t)
      continue;
    if (!start)
      start = lineno;
    bool cont = l && line[l - 1] == '\\';
    if (cont)
      line[--l] = '\0';
    ci_buf_adds(&logical, line);
    if (cont) {
      continue;
    }
    ret = add_instr(&df, ci_buf_str(&logical), start, &alloc, err);
    ci_buf_reset(&logical);
    start = 0;
  }
  if (ret == 0 && start)
    ret = add_instr(&df, ci_buf_str(&logical), start, &alloc, err);
  ci_buf_release(&logical);
  if (ret == 0) {
    bool from = false;
    for (size_t i = 0; i < df.n; i++)
      from |= df.v[i].kind == BLD_FROM;
    if (!from)
      ret = fail_at(err, df.file, lineno ? lineno : 1, "no FROM instruction");
  }
  if (ret < 0) {
    bld_dockerfile_release(&df);
    return ret;
  }
  *out = df;
  return 0;
}
