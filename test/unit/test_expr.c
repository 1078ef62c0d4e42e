/* Unit tests for config/'s expression layer: cfg_expand, the boolevator, Go regexps
 * on PCRE2 and Java globs.  Expected values follow upstream (cirrus-cli's expander,
 * boolevator and bfunc tests, go-java-glob's tests, Go's regexp package). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/expr.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ---- */

static void
env_from(struct cfg_env *env, const char *const *kv)
{
  for (size_t i = 0; kv && kv[i]; i += 2)
    cfg_env_set(env, kv[i], kv[i + 1]);
}

static void
check_expand(const char *const *kv, const char *in, const char *want)
{
  struct cfg_env env = CFG_ENV_INIT;
  env_from(&env, kv);
  char *got = cfg_expand(in, &env);
  if (strcmp(got, want) != 0)
    print_error("cfg_expand(\"%s\") = \"%s\", want \"%s\"\n", in, got, want);
  assert_string_equal(got, want);
  free(got);
  cfg_env_release(&env);
}

/* Evaluate expr; returns 1/0, or -1 with *errp (owned) set. */
static int
eval_with(const char *expr, const char *const *kv, const char *const *files, char **errp)
{
  struct cfg_env env = CFG_ENV_INIT;
  struct ci_strv fv = CI_STRV_INIT;
  env_from(&env, kv);
  for (size_t i = 0; files && files[i]; i++)
    ci_strv_push(&fv, files[i]);
  bool out = false;
  char *err = NULL;
  int ret = cfg__bool_eval(expr, &env, &fv, &out, &err);
  cfg_env_release(&env);
  ci_strv_release(&fv);
  if (ret < 0) {
    assert_non_null(err);
    if (errp)
      *errp = err;
    else
      free(err);
    return -1;
  }
  assert_null(err);
  return out ? 1 : 0;
}

static void
check_bool(const char *expr, const char *const *kv, const char *const *files, int want)
{
  char *err = NULL;
  int got = eval_with(expr, kv, files, &err);
  if (got != want)
    print_error("eval(%s) = %d (%s), want %d\n", expr, got, err ? err : "", want);
  free(err);
  assert_int_equal(got, want);
}

#define T(expr) check_bool(expr, NULL, NULL, 1)
#define F(expr) check_bool(expr, NULL, NULL, 0)

/* expr must fail with a message containing each of the NULL-terminated fragments. */
static void
check_error(const char *expr, const char *const *kv, ...)
{
  char *err = NULL;
  int got = eval_with(expr, kv, NULL, &err);
  if (got != -1)
    print_error("eval(%s) = %d, want an error\n", expr, got);
  assert_int_equal(got, -1);
  assert_true(ci_str_has_prefix(err, "internal boolevator error: "));
  va_list ap;
  va_start(ap, kv);
  for (const char *frag; (frag = va_arg(ap, const char *));) {
    if (!strstr(err, frag))
      print_error("eval(%s): error \"%s\" lacks \"%s\"\n", expr, err, frag);
    assert_non_null(strstr(err, frag));
  }
  va_end(ap);
  free(err);
}

/* Go regexp pattern against subjects: want[i] is 1 (match) or 0. */
static void
check_regex(const char *pattern, const char *const *subjects, const int *want)
{
  struct cfg_regex *re = NULL;
  char *err = NULL;
  if (cfg__regex_compile(pattern, &re, &err) < 0)
    print_error("regexp `%s`: %s\n", pattern, err);
  assert_non_null(re);
  for (size_t i = 0; subjects[i]; i++) {
    int m = cfg__regex_match(re, subjects[i], strlen(subjects[i]), &err);
    if (m != want[i])
      print_error("regexp `%s` on \"%s\": %d, want %d\n", pattern, subjects[i], m, want[i]);
    assert_int_equal(m, want[i]);
  }
  cfg__regex_free(re);
}

static void
check_regex_error(const char *pattern, const char *frag)
{
  struct cfg_regex *re = NULL;
  char *err = NULL;
  int ret = cfg__regex_compile(pattern, &re, &err);
  if (ret == 0)
    print_error("regexp `%s` compiled, want an error with \"%s\"\n", pattern, frag);
  assert_int_equal(ret, -1);
  assert_null(re);
  if (!strstr(err, frag))
    print_error("regexp `%s`: error \"%s\" lacks \"%s\"\n", pattern, err, frag);
  assert_non_null(strstr(err, frag));
  free(err);
}

struct glob_case {
  const char *pattern;
  const char *match[4];
  const char *nomatch[4];
};

static void
check_glob(const struct glob_case *c)
{
  struct cfg_regex *g = NULL;
  char *err = NULL;
  if (cfg__glob_compile(c->pattern, &g, &err) < 0)
    print_error("glob '%s': %s\n", c->pattern, err);
  assert_non_null(g);
  for (size_t i = 0; i < 4 && c->match[i]; i++) {
    if (cfg__glob_match_compiled(g, c->match[i], &err) != 1)
      print_error("glob '%s' should match '%s'\n", c->pattern, c->match[i]);
    assert_int_equal(cfg__glob_match_compiled(g, c->match[i], &err), 1);
    assert_true(cfg__glob_match(c->pattern, c->match[i]));
  }
  for (size_t i = 0; i < 4 && c->nomatch[i]; i++) {
    if (cfg__glob_match_compiled(g, c->nomatch[i], &err) != 0)
      print_error("glob '%s' should not match '%s'\n", c->pattern, c->nomatch[i]);
    assert_int_equal(cfg__glob_match_compiled(g, c->nomatch[i], &err), 0);
    assert_false(cfg__glob_match(c->pattern, c->nomatch[i]));
  }
  cfg__regex_free(g);
}

/* ---- cfg_expand ---- */

static void
test_expand_longest_key_first(void **state)
{
  /* Every prefix of CIRRUS_BRANCH is a key too: only descending order is deterministic. */
  static const char *const kv[] = {"C",
                                   "x",
                                   "CI",
                                   "x",
                                   "CIR",
                                   "x",
                                   "CIRR",
                                   "x",
                                   "CIRRU",
                                   "x",
                                   "CIRRUS",
                                   "true",
                                   "CIRRUS_BRANCH",
                                   "main",
                                   "CIRRUS_",
                                   "x",
                                   "CIRRUS_B",
                                   "x",
                                   "CIRRUS_BR",
                                   "x",
                                   "CIRRUS_BRA",
                                   "x",
                                   "CIRRUS_BRAN",
                                   "x",
                                   "CIRRUS_BRANC",
                                   "x",
                                   NULL};
  check_expand(kv, "$CIRRUS_BRANCH", "main");
  check_expand(kv, "$CIRRUS $CIRRUS_BRANCH", "true main");
  check_expand(kv, "$CIRRUS_BRANCH $CIRRUS", "main true");
  check_expand(kv, "${CIRRUS_BRANCH}/%CIRRUS%", "main/true");
}

static void
test_expand_forms(void **state)
{
  static const char *const kv[] = {"A", "1", "B", "two", "DIR", "/src", NULL};
  check_expand(kv, "$A ${A} %A%", "1 1 1");
  check_expand(kv, "${DIR}/x-$B-%B%.tar", "/src/x-two-two.tar");
  /* unknown references stay as written, known ones still expand around them */
  check_expand(kv, "$NOPE ${NOPE} %NOPE% $A", "$NOPE ${NOPE} %NOPE% 1");
  /* a key is replaced wherever it is spelled: $AB is $A followed by B */
  check_expand(kv, "$AB", "1B");
  check_expand(kv, "100% of $A%", "100% of 1%");
  check_expand(kv, "no markers", "no markers");
  check_expand(kv, "", "");
  check_expand(NULL, "$A", "$A");
  char *s = cfg_expand("$A", NULL);
  assert_string_equal(s, "$A");
  free(s);
}

static void
test_expand_passes(void **state)
{
  /* values are expanded again in later passes */
  static const char *const chain[] = {"A", "$B", "B", "${C}", "C", "%D%", "D", "end", NULL};
  check_expand(chain, "[$A]", "[end]");
  /* a self-reference stops when a pass changes nothing */
  static const char *const self[] = {"A", "$A", NULL};
  check_expand(self, "x$A", "x$A");
  /* a growing value stops after 10 passes: 2^10 copies */
  static const char *const grow[] = {"A", "$A$A", NULL};
  struct cfg_env env = CFG_ENV_INIT;
  env_from(&env, grow);
  char *got = cfg_expand("$A", &env);
  assert_int_equal(strlen(got), 2 * 1024);
  for (size_t i = 0; i < 2048; i += 2)
    assert_memory_equal(got + i, "$A", 2);
  free(got);
  cfg_env_release(&env);
  /* the three spellings are replaced one after the other, per key */
  static const char *const order[] = {"K", "${K}", NULL};
  check_expand(order, "$K", "${K}");
  /* an empty key replaces every '$', "${}" and "%%" (as ReplaceAll does) */
  static const char *const empty[] = {"", "E", NULL};
  check_expand(empty, "a$b%%c", "aEbEc");
}

static void
test_expand_speed(void **state)
{
  /* 5,000 tasks x a few fields each with a ~10-key environment. */
  struct cfg_env env = CFG_ENV_INIT;
  char key[32], val[32];
  for (int i = 0; i < 10; i++) {
    snprintf(key, sizeof(key), "CIRRUS_VAR_%d", i);
    snprintf(val, sizeof(val), "value-%d", i);
    cfg_env_set(&env, key, val);
  }
  clock_t t0 = clock();
  size_t total = 0;
  for (int i = 0; i < 50000; i++) {
    char *a = cfg_expand(i % 2 ? "debian:bookworm" : "build-$CIRRUS_VAR_3-${CIRRUS_VAR_7}", &env);
    total += strlen(a);
    free(a);
  }
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  assert_int_equal(total,
                   25000 * strlen("debian:bookworm") + 25000 * strlen("build-value-3-value-7"));
  assert_true(secs < 5.0); /* typically ~0.03 s; generous for sanitizer builds */
  cfg_env_release(&env);
}

/* ---- boolevator: upstream's cases ---- */

static void
test_bool_upstream(void **state)
{
  T("'Foo' == 'Foo'");
  F("'Foo' == 'Bar'");
  T("$FOO == ''");
  static const char *const collab[] = {"CIRRUS_USER_COLLABORATOR", "true", NULL};
  check_bool("($CIRRUS_PR == '' || $CIRRUS_TAG != '') && $CIRRUS_USER_COLLABORATOR == 'true'",
             collab, NULL, 1);
  static const char *const foobar[] = {"FOO", "Foo", "BAR", "Bar", NULL};
  check_bool("'Foo' == $FOO", foobar, NULL, 1);
  check_bool("'Foo' == $BAR", foobar, NULL, 0);
  static const char *const footrue[] = {"FOO", "true", NULL};
  check_bool("$FOO", footrue, NULL, 1);
  F("!('Foo' == 'Foo')");
  T("'Foo' == 'Bar' || 'Foo' != 'Bar'");
  static const char *const long_env[] = {"CIRRUS_USER_COLLABORATOR", "false", "CIRRUS_BRANCH",
                                         "trying", NULL};
  check_bool("$CIRRUS_USER_COLLABORATOR == 'true' || $CIRRUS_BRANCH == 'master' || "
             "$CIRRUS_BRANCH == 'staging' || $CIRRUS_BRANCH == 'trying'",
             long_env, NULL, 1);
  static const char *const master[] = {"CIRRUS_BRANCH", "master", NULL};
  check_bool("$CIRRUS_BASE_BRANCH == 'dev' || $CIRRUS_BRANCH == 'dev' || "
             "$CIRRUS_BASE_BRANCH == 'beta' || $CIRRUS_BRANCH == 'beta' || "
             "$CIRRUS_BASE_BRANCH == 'stable' || $CIRRUS_BRANCH == 'stable'",
             master, NULL, 0);
  T("'pull' in 'pull/123'");
  F("'pull' in 'pr/123'");
  static const char *const integ[] = {"CIRRUS_BRANCH", "integration", NULL};
  check_bool("$CIRRUS_BRANCH == 'integration'", integ, NULL, 1);
}

static void
test_bool_regex(void **state)
{
  T("'release-2018.1' =~ 'release-.*'");
  F("'release-2018.1' !=~ 'release-.*'");
  T("'release-.*' !=~ 'foo'");
  T("'1.2.34' =~ '\\d+\\.\\d+\\.\\d+'");
  T("'pull/123' =~ 'pull/.*'");
  T("'branch-foo' =~ 'branch-.*'");
  T("'v2.0' =~ 'v\\d+\\.\\d+.*'");
  F("'not a regexp :)' =~ '.*actual regexp.*'");
  T("'not a regexp :)' !=~ '.*actual regexp.*'");
  static const char *const tag[] = {"CIRRUS_TAG", "v1.2.3-rc1", NULL};
  check_bool("$CIRRUS_TAG =~ 'v\\d+(\\.\\d+){2}(-.*)?'", tag, NULL, 1);
  /* multi-line values: DOTALL */
  static const char *const log[] = {
      "CHANGELOG", "[tests] added tests\n[documentation] documented API\n[fixes] fixed bugs\n",
      NULL};
  check_bool("$CHANGELOG =~ '.*\\[documentation\\].*'", log, NULL, 1);
  /* quotes inside values and literals */
  static const char *const msg[] = {"CIRRUS_CHANGE_MESSAGE", "test 'foo'", NULL};
  check_bool("$CIRRUS_CHANGE_MESSAGE == \"test 'foo'\"", msg, NULL, 1);
  check_bool("$CIRRUS_CHANGE_MESSAGE =~ \".*test 'foo'.*\"", msg, NULL, 1);
  /* anchored at both ends: 's' does not match 'something' */
  F("'something' =~ 's'");
  /* case-insensitive */
  T("'MAIN' =~ 'main'");
  /* $ is the very end, not before a final newline */
  static const char *const nl[] = {"M", "abc\n", NULL};
  check_bool("$M =~ 'abc'", nl, NULL, 0);
  check_bool("$M =~ 'abc\\n'", nl, NULL, 1);
  /* upstream does not group the pattern: 'a|b' is ^a|b$, so 'xb' matches */
  T("'xb' =~ 'a|b'");
  /* Go syntax: \s is not VT, {,2} is literal, possessive is an error */
  T("'a{,2}' =~ 'a{,2}'");
  check_error("'aa' =~ 'a++'", NULL, "invalid nested repetition operator", NULL);
  /* an invalid regexp: an error for =~, "" for !=~ (upstream swallows it) */
  check_error("'a' =~ '('", NULL, "invalid regular expression", "missing closing )", "at offset 4",
              NULL);
  T("('a' !=~ '(') == ''");
  check_error("'a' !=~ '('", NULL, "evaluates to \"\"", NULL);
}

static void
test_bool_operators(void **state)
{
  /* in binds tighter than ==: 'a' == ('a' in 'xa') */
  F("'a' == 'a' in 'xa'");
  T("'true' == 'a' in 'xa'");
  /* && binds tighter than || */
  T("true || false && false");
  T("false && false || true");
  F("false && (false || true)");
  /* left-associative: ('a' in 'b') in 'false' */
  T("'a' in 'b' in 'false'");
  /* ! binds to the next operand only */
  T("!'false' == 'true'");
  T("!!true");
  F("!!!true");
  T("!changesInclude('x')");
  /* ParseBool spellings */
  T("'1'");
  T("'t'");
  T("'T'");
  T("'TRUE'");
  T("'True'");
  F("'0'");
  F("'f'");
  F("'F'");
  F("'FALSE'");
  F("'False'");
  T("'1' && 'T'");
  bool b;
  assert_int_equal(cfg__parse_bool("yes", &b), -1);
  assert_int_equal(cfg__parse_bool("True", &b), 0);
  assert_true(b);
  /* quotes trimmed again and again; backslashes kept */
  T("'\"true\"'");
  T("\"'x'\" == 'x'");
  T("'' == \"\"");
  T("'a\\b' in 'xa\\by'");
  T("'it\\'s' == \"it\\'s\"");
  /* operators without spaces, == followed by a prefix ! */
  T("'a'=='a'&&'b'!='c'");
  F("'a'==!'true'");
  /* whitespace, newlines and Go comments */
  static const char *const kv[] = {"A", "a", "B", "true", NULL};
  check_bool("$A == 'a'\n  && $B == 'true' // comment\n  /* and\n more */ && true\n", kv, NULL, 1);
  check_bool("\xEF\xBB\xBFtrue", NULL, NULL, 1);
  /* an open quote runs to the end and keeps its text, as upstream */
  static const char *const win[] = {"X", "C:\\", NULL};
  check_bool("$X == 'C:\\'", win, NULL, 1);
}

static void
test_bool_variables(void **state)
{
  /* values are expanded over the environment; literals are not */
  static const char *const kv[] = {"A", "a", "C", "$A", "D", "%A%/${A}", "_x1", "u", NULL};
  check_bool("$C == 'a'", kv, NULL, 1);
  check_bool("${D} == 'a/a'", kv, NULL, 1);
  check_bool("'$A' != $A", kv, NULL, 1);
  check_bool("$_x1 == 'u'", kv, NULL, 1);
  check_bool("$ A == 'a'", kv, NULL, 1);
  check_bool("$UNSET == ''", kv, NULL, 1);
  static const char *const num[] = {"1", "one", NULL};
  check_bool("$1 == 'one'", num, NULL, 1);
  static const char *const uni[] = {"ÄBC", "x", NULL};
  check_bool("$ÄBC == 'x'", uni, NULL, 1);
  check_bool("$A1 == ''", kv, NULL, 1);
}

/* ---- boolevator: functions ---- */

static void
test_bool_changes_include(void **state)
{
  static const char *const files[] = {"note.txt", "drawing.svg", "go.mod", "dir/file.go", NULL};
  check_bool("changesInclude('*.txt')", NULL, files, 1);
  check_bool("changesInclude('document.pdf', '**.{png,bmp,svg}')", NULL, files, 1);
  check_bool("!changesInclude('*.go')", NULL, files, 1);
  check_bool("!changesInclude('**.go')", NULL, files, 0);
  check_bool("changesInclude('dir/*')", NULL, files, 1);
  check_bool("changesInclude('*.pdf', 'nope/**')", NULL, files, 0);

  static const char *const go[] = {"main.go", "go.mod", "dir/file.go", NULL};
  check_bool("changesIncludeOnly('**.go', '**/*.go', '**.mod')", NULL, go, 1);
  check_bool("changesIncludeOnly('**.go')", NULL, go, 0);
  check_bool("changesIncludeOnly('*')", NULL, go, 0);
  check_bool("changesIncludeOnly('**')", NULL, go, 1);

  /* no affected files: both false, but patterns are still checked */
  check_bool("changesInclude('**')", NULL, NULL, 0);
  check_bool("changesIncludeOnly('**')", NULL, NULL, 0);
  char *err = NULL;
  assert_int_equal(eval_with("changesInclude('*[a')", NULL, NULL, &err), -1);
  assert_non_null(strstr(err, "changesInclude() at offset 0"));
  assert_non_null(strstr(err, "missing ']"));
  free(err);
  assert_int_equal(cfg__bool_eval("changesInclude('**')", NULL, NULL, &(bool){true}, &err), 0);

  /* arguments: expanded over the expanded environment; any expression works */
  static const char *const kv[] = {"DIR", "src", "PAT", "$DIR/**", "EXT", "c", NULL};
  static const char *const src[] = {"src/a/b.c", "README", NULL};
  check_bool("changesInclude('$PAT')", kv, src, 1);
  check_bool("changesInclude($PAT)", kv, src, 1);
  check_bool("changesInclude('**.%EXT%')", kv, src, 1);
  check_bool("changesIncludeOnly('${DIR}/**', 'README')", kv, src, 1);
  check_bool("changesInclude('lib/**', 'doc/**') || changesInclude('**.h')", kv, src, 0);
  check_bool("changesInclude(('src/**'))", kv, src, 1);
}

/* ---- boolevator: errors ---- */

static void
test_bool_errors(void **state)
{
  check_error("", NULL, "empty expression", NULL);
  check_error("  \n // only a comment\n", NULL, "empty expression", NULL);
  check_error("(true", NULL, "missing ')'", "offset 0", "end of expression", NULL);
  check_error("((true)", NULL, "missing ')'", NULL);
  check_error("true)", NULL, "unexpected ')' at offset 4", NULL);
  check_error("true && (false))", NULL, "unexpected ')' at offset 15", NULL);
  check_error("()", NULL, "unexpected ')' at offset 1", NULL);
  check_error("'a' 'b'", NULL, "unexpected string 'b' at offset 4", NULL);
  check_error("true false", NULL, "unexpected identifier 'false' at offset 5", NULL);
  check_error("'a' ==", NULL, "unexpected end of expression at offset 6", NULL);
  check_error("== 'a'", NULL, "unexpected '=' at offset 0", NULL);
  check_error("'a' = 'a'", NULL, "unexpected '='", NULL);
  check_error("'a' & 'b'", NULL, "unexpected '&'", NULL);
  check_error("'a' ! 'b'", NULL, "unexpected '!'", NULL);
  check_error("'a' === 'a'", NULL, "unexpected '='", NULL);
  check_error("foo", NULL, "unknown name 'foo' at offset 0", NULL);
  check_error("TRUE", NULL, "unknown name 'TRUE'", NULL);
  check_error("foo('x')", NULL, "unknown function 'foo'", NULL);
  check_error("changesincludes('x')", NULL, "unknown function 'changesincludes'", NULL);
  check_error("in", NULL, "unknown name 'in'", NULL);
  check_error("1 == 1", NULL, "unexpected number 1", NULL);
  check_error("`x` == 'x'", NULL, "unexpected raw string", NULL);
  check_error("'yes'", NULL, "evaluates to \"yes\", not a boolean", NULL);
  check_error("('a')", NULL, "evaluates to \"a\"", NULL);
  check_error("true || 'x'", NULL, "right operand of '||' at offset 5 is \"x\"", NULL);
  check_error("'x' && true", NULL, "left operand of '&&'", NULL);
  check_error("!'x'", NULL, "operand of '!' at offset 0 is \"x\"", NULL);
  check_error("changesInclude()", NULL, "changesInclude() at offset 0 needs at least one", NULL);
  check_error("changesIncludeOnly", NULL, "needs at least one pattern", NULL);
  check_error("changesInclude('a',)", NULL, "unexpected ')'", NULL);
  check_error("changesInclude('a' 'b')", NULL, "expected ',' or ')'", NULL);
  check_error("changesInclude('a'", NULL, "expected ',' or ')'", "end of expression", NULL);
  check_error("changesInclude('{a,{b}}')", NULL, "cannot nest groups", NULL);
  check_error("$", NULL, "variable name after '$'", NULL);
  check_error("$'x' == ''", NULL, "variable name after '$'", NULL);
  check_error("${A == 'x'", NULL, "missing '}'", NULL);
  check_error("${} == 'x'", NULL, "variable name after '${'", NULL);
  check_error("'a' =~ '\\1'", NULL, "invalid escape sequence", NULL);
}

static void
test_bool_nesting(void **state)
{
  struct ci_buf b = CI_BUF_INIT;
  /* 150 levels are fine */
  for (int i = 0; i < 150; i++)
    ci_buf_addc(&b, '(');
  ci_buf_adds(&b, "true");
  for (int i = 0; i < 150; i++)
    ci_buf_addc(&b, ')');
  T(b.s);
  ci_buf_reset(&b);
  /* 100,000 levels: an error, not a stack overflow */
  for (int i = 0; i < 100000; i++)
    ci_buf_addc(&b, '(');
  ci_buf_adds(&b, "true");
  check_error(b.s, NULL, "nests too deeply", NULL);
  ci_buf_reset(&b);
  for (int i = 0; i < 100000; i++)
    ci_buf_addc(&b, '!');
  ci_buf_adds(&b, "true");
  check_error(b.s, NULL, "nests too deeply", NULL);
  ci_buf_reset(&b);
  for (int i = 0; i < 100000; i++)
    ci_buf_adds(&b, "changesInclude(");
  check_error(b.s, NULL, "nests too deeply", NULL);
  ci_buf_reset(&b);
  /* long flat chains need no recursion */
  ci_buf_adds(&b, "false");
  for (int i = 0; i < 20000; i++)
    ci_buf_adds(&b, i % 2 ? " || false" : " && true");
  ci_buf_adds(&b, " || 'a' in 'abc'");
  T(b.s);
  ci_buf_release(&b);
}

/* Random token soup and random bytes: must never crash, leak or hang. */
static void
test_bool_random(void **state)
{
  static const char *const vocab[] = {"true",
                                      "false",
                                      "'a'",
                                      "\"b\"",
                                      "''",
                                      "$A",
                                      "${A}",
                                      "$",
                                      "(",
                                      ")",
                                      "!",
                                      "==",
                                      "!=",
                                      "=~",
                                      "!=~",
                                      "&&",
                                      "||",
                                      "in",
                                      " ",
                                      ",",
                                      "{",
                                      "}",
                                      "'",
                                      "\"",
                                      "`",
                                      "\\",
                                      "//",
                                      "/*",
                                      "*/",
                                      "\n",
                                      "foo",
                                      "1",
                                      "1.5e",
                                      "0x",
                                      "=",
                                      "&",
                                      "|",
                                      "~",
                                      "é",
                                      "\xff",
                                      "'*'",
                                      "'(a'",
                                      "'**.go'",
                                      "changesInclude(",
                                      "changesIncludeOnly(",
                                      "'[!a'",
                                      "'.*'",
                                      "'\\d+'",
                                      "'a|'",
                                      "'{a,b}'"};
  static const char *const kv[] = {"A", "true", "B", "$A", NULL};
  static const char *const files[] = {"a.go", "dir/b.c", NULL};
  srand(12345);
  struct ci_buf b = CI_BUF_INIT;
  int nok = 0, nerr = 0;
  for (int iter = 0; iter < 20000; iter++) {
    ci_buf_reset(&b);
    int ntok = rand() % 12;
    for (int i = 0; i < ntok; i++) {
      if (rand() % 10 == 0) {
        char c = (char)(1 + rand() % 255);
        ci_buf_addc(&b, c);
      } else {
        ci_buf_adds(&b, vocab[(size_t)rand() % CI_ARRAY_SIZE(vocab)]);
      }
    }
    char *err = NULL;
    int r = eval_with(ci_buf_str(&b), kv, files, &err);
    if (r < 0) {
      nerr++;
      assert_true(ci_str_has_prefix(err, "internal boolevator error: "));
      free(err);
    } else {
      nok++;
    }
  }
  ci_buf_release(&b);
  assert_true(nok > 100); /* the soup is not all errors */
  assert_true(nerr > 100);
}

/* ---- Go regular expressions ---- */

static void
test_regex_semantics(void **state)
{
  check_regex("^a$", (const char *[]){"a", "a\n", "ba", NULL}, (int[]){1, 0, 0});
  check_regex("(?m)^b$", (const char *[]){"a\nb\nc", "b\n", "ab", NULL}, (int[]){1, 1, 0});
  check_regex("(?m)^$", (const char *[]){"a\n", "a", NULL}, (int[]){1, 0});
  check_regex("(?m:a$)\nb$", (const char *[]){"a\nb", "a\nb\n", NULL}, (int[]){1, 0});
  check_regex("((?m)a$)\nb$", (const char *[]){"a\nb", "a\nb\n", NULL}, (int[]){1, 0});
  check_regex("(?m)a$(?-m)\n$", (const char *[]){"a\n", NULL}, (int[]){1});
  check_regex("^.$", (const char *[]){"\n", "é", "ab", NULL}, (int[]){0, 1, 0});
  check_regex("(?s)^.$", (const char *[]){"\n", NULL}, (int[]){1});
  check_regex("^[^a]$", (const char *[]){"\n", "a", NULL}, (int[]){1, 0});
  check_regex("^\\s$", (const char *[]){" ", "\t", "\v", NULL}, (int[]){1, 1, 0});
  check_regex("^[\\s]$", (const char *[]){"\f", "\v", NULL}, (int[]){1, 0});
  check_regex("^\\S$", (const char *[]){"\v", "x", " ", NULL}, (int[]){1, 1, 0});
  check_regex("^[^\\S]$", (const char *[]){" ", "x", NULL}, (int[]){1, 0});
  check_regex("^\\v$", (const char *[]){"\v", "\n", NULL}, (int[]){1, 0});
  check_regex("^\\101\\x42\\x{43}\\0$", (const char *[]){"ABC", NULL}, (int[]){0});
  check_regex("^\\101\\x42\\x{43}$", (const char *[]){"ABC", NULL}, (int[]){1});
  check_regex("^a{,2}$", (const char *[]){"a{,2}", "aa", NULL}, (int[]){1, 0});
  check_regex("^a{01}$", (const char *[]){"a{01}", "a", NULL}, (int[]){1, 0});
  check_regex("^a{2,3}$", (const char *[]){"a", "aa", "aaa", "aaaa", NULL}, (int[]){0, 1, 1, 0});
  check_regex("^*$", (const char *[]){"", "a", NULL}, (int[]){1, 1});
  check_regex("^a(?i)*$", (const char *[]){"aaa", "AAA", NULL}, (int[]){1, 0});
  check_regex("^(?i)a(?-i)b$", (const char *[]){"Ab", "AB", NULL}, (int[]){1, 0});
  check_regex("^(?i:a)b$", (const char *[]){"Ab", "AB", NULL}, (int[]){1, 0});
  check_regex("^\\Qa.b\\E+$", (const char *[]){"a.b", "a.bb", "axb", NULL}, (int[]){1, 1, 0});
  check_regex("^\\Q(*)", (const char *[]){"(*)x", "(", NULL}, (int[]){1, 0});
  check_regex("^\\p{Greek}+\\pL$", (const char *[]){"αβx", "ab", NULL}, (int[]){1, 0});
  check_regex("^[[:alpha:]][[:^digit:]]$", (const char *[]){"ab", "a1", NULL}, (int[]){1, 0});
  check_regex("^[]a]+$", (const char *[]){"]a]", NULL}, (int[]){1});
  check_regex("^[a-]+$", (const char *[]){"-a", NULL}, (int[]){1});
  check_regex("^(?P<x>a)(?<y>b)$", (const char *[]){"ab", NULL}, (int[]){1});
  check_regex("\\bfoo\\b", (const char *[]){"a foo b", "afoo", NULL}, (int[]){1, 0});
  check_regex("\\x{D800}", (const char *[]){"", "\xed\xa0\x80", NULL}, (int[]){0, 0});
  check_regex("^[\\x{D000}-\\x{E000}]$", (const char *[]){"\xee\x80\x80", "\xed\x80\x80", NULL},
              (int[]){1, 1});
  /* invalid UTF-8 in subjects reads as one U+FFFD per byte, as in Go */
  check_regex("^.$", (const char *[]){"\xff", "\xc3", NULL}, (int[]){1, 1});
  check_regex("^..$", (const char *[]){"\xe2\x82", NULL}, (int[]){1});
  check_regex("^\\x{FFFD}a$",
              (const char *[]){"\xff"
                               "a",
                               NULL},
              (int[]){1});
  /* no catastrophic backtracking */
  struct ci_buf b = CI_BUF_INIT;
  for (int i = 0; i < 30000; i++)
    ci_buf_addc(&b, 'a');
  check_regex("^(a*)*b$", (const char *[]){b.s, NULL}, (int[]){0});
  check_regex("^(a|aa)+$", (const char *[]){b.s, NULL}, (int[]){1});
  /* an unanchored alternative is searched in one pass, not once per start position */
  for (int i = 0; i < 300000; i++)
    ci_buf_addc(&b, 'a');
  clock_t t0 = clock();
  check_regex("x|.*b", (const char *[]){b.s, NULL}, (int[]){0});
  check_regex("(?m)^b|\\bx|(a|b)*c", (const char *[]){b.s, NULL}, (int[]){0});
  assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 5.0); /* ~0.05 s; quadratic: hours */
  ci_buf_release(&b);
}

static void
test_regex_errors(void **state)
{
  check_regex_error("a**", "invalid nested repetition operator: `**`");
  check_regex_error("a*+", "invalid nested repetition operator");
  check_regex_error("a{2}{3}", "invalid nested repetition operator");
  check_regex_error("*a", "missing argument to repetition operator: `*`");
  check_regex_error("(*)", "missing argument to repetition operator");
  check_regex_error("a|*", "missing argument to repetition operator");
  check_regex_error("a{1001}", "invalid repeat count: `{1001}`");
  check_regex_error("a{2,1}", "invalid repeat count");
  check_regex_error("(a{40}){30}", "invalid repeat count");
  check_regex_error("((a{10}){10}){11}", "invalid repeat count");
  check_regex_error("(", "missing closing )");
  check_regex_error(")", "unexpected )");
  check_regex_error("[a", "missing closing ]");
  check_regex_error("[z-a]", "invalid character class range: `z-a`");
  check_regex_error("[[:foo:]]", "invalid character class range: `[:foo:]`");
  check_regex_error("\\pX", "`\\pX`"); /* PCRE2's wording: property names are its own */
  check_regex_error("\\p{", "invalid character class range");
  check_regex_error("a\\", "trailing backslash");
  check_regex_error("\\1", "invalid escape sequence: `\\1`");
  check_regex_error("\\8", "invalid escape sequence");
  check_regex_error("\\Z", "invalid escape sequence");
  check_regex_error("\\C", "invalid escape sequence");
  check_regex_error("\\h", "invalid escape sequence");
  check_regex_error("\\x{110000}", "invalid escape sequence");
  check_regex_error("\\x{}", "invalid escape sequence");
  check_regex_error("\\xZ", "invalid escape sequence");
  check_regex_error("[\\b]", "invalid escape sequence");
  check_regex_error("(?=a)", "invalid or unsupported Perl syntax: `(?=`");
  check_regex_error("(?!a)", "invalid or unsupported Perl syntax");
  check_regex_error("(?>a)", "invalid or unsupported Perl syntax");
  check_regex_error("(?x)a", "invalid or unsupported Perl syntax");
  check_regex_error("(?i-)a", "invalid or unsupported Perl syntax");
  check_regex_error("(?<=a)b", "invalid named capture");
  check_regex_error("(?P<>a)", "invalid named capture");
  check_regex_error("(?P=n)", "invalid or unsupported Perl syntax");
  check_regex_error("a\xff", "invalid UTF-8");
  struct ci_buf b = CI_BUF_INIT;
  for (int i = 0; i < 5000; i++)
    ci_buf_addc(&b, '(');
  check_regex_error(b.s, "expression nests too deeply");
  ci_buf_release(&b);
}

static void
test_regex_translate(void **state)
{
  char *out = NULL, *err = NULL;
  assert_int_equal(cfg__regex_translate("(?s)(?i)^a.b$", &out, &err), 0);
  assert_string_equal(out, "(?s)(?i)^a.b\\z");
  free(out);
  assert_int_equal(cfg__regex_translate("^*a{,2}\\s", &out, &err), 0);
  assert_string_equal(out, "(^)*a\\x{7b}\\x{2c}2\\x{7d}[\\x{9}\\x{a}\\x{c}\\x{d}\\x{20}]");
  free(out);
  assert_int_equal(cfg__regex_translate("a(?i)*", &out, &err), 0);
  assert_string_equal(out, "a*");
  free(out);
}

/* ---- Java globs ---- */

static void
test_glob_upstream(void **state)
{
  static const struct glob_case cases[] = {
      {"*.txt", {"file.txt"}, {"file.py"}},
      {"*.{html,htm}", {"new.html", "old.htm"}, {"file.py"}},
      {"?.txt", {"1.txt"}, {"22.txt"}},
      {"*.*", {"README.md"}, {"vmlinuz"}},
      {"/etc/*", {"/etc/passwd"}, {"/boot/vmlinuz", "/etc/ssh/sshd_config"}},
      {"/home/**", {"/home/user1", "/home/user2/www"}, {"/"}},
      {"**.go", {"dir/file.go", "dir/subdir/file.go"}, {"dir/file.py"}},
      {"[ab].txt", {"a.txt"}, {"c.txt"}},
      {"[a-c].txt", {"b.txt"}, {"d.txt"}},
      {"[!a].txt", {"b.txt"}, {"a.txt"}},
      {"[!a]", {"b"}, {"/"}},
      {"foo.html", {"foo.html"}, {"foo.htm", "bar.html"}},
      {"f*", {"foo.html"}, {0}},
      {"*.html", {"foo.html"}, {0}},
      {"foo.html*", {"foo.html"}, {0}},
      {"*foo.html", {"foo.html"}, {0}},
      {"*foo.html*", {"foo.html"}, {0}},
      {"*.htm", {0}, {"foo.html"}},
      {"f.*", {0}, {"foo.html"}},
      {"?oo.html", {"foo.html"}, {0}},
      {"??o.html", {"foo.html"}, {0}},
      {"???.html", {"foo.html"}, {0}},
      {"???.htm?", {"foo.html"}, {0}},
      {"foo.???", {0}, {"foo.html"}},
      {"foo{.html,.class}", {"foo.html"}, {0}},
      {"foo.{class,html}", {"foo.html"}, {0}},
      {"foo{.htm,.class}", {0}, {"foo.html"}},
      {"[f]oo.html", {"foo.html"}, {0}},
      {"[e-g]oo.html", {"foo.html"}, {0}},
      {"[abcde-g]oo.html", {"foo.html"}, {0}},
      {"[abcdefx-z]oo.html", {"foo.html"}, {0}},
      {"[!a]oo.html", {"foo.html"}, {0}},
      {"[!a-e]oo.html", {"foo.html"}, {0}},
      {"foo[-a-z]bar", {"foo-bar"}, {0}},
      {"foo[!-]html", {"foo.html"}, {0}},
      {"[f]oo.{[h]tml,class}", {"foo.html"}, {0}},
      {"foo.{[a-z]tml,class}", {"foo.html"}, {0}},
      {"foo.{[!a-e]tml,.class}", {"foo.html"}, {0}},
      {"\\{foo*", {"{foo}.html"}, {0}},
      {"*\\}.html", {"{foo}.html"}, {0}},
      {"\\[foo*", {"[foo].html"}, {0}},
      {"*\\].html", {"[foo].html"}, {0}},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++)
    check_glob(&cases[i]);
}

static void
test_glob_more(void **state)
{
  static const struct glob_case cases[] = {
      {"**", {"", "a", "a/b/c"}, {0}},
      {"*", {"", "abc"}, {"a/b"}},
      {"**/*.go", {"a/b.go", "a/b/c.go"}, {"b.go"}},
      {"src/**", {"src/a", "src/a/b"}, {"src", "lib/src/a"}},
      {"a.b", {"a.b"}, {"axb"}},
      {"a+b(c)|d$^", {"a+b(c)|d$^"}, {"aab(c)|d"}},
      {"a,b}", {"a,b}"}, {0}},
      {"\\*", {"*"}, {"a"}},
      {"\\a", {"a"}, {"\\a"}},
      {"[^a]", {"^", "a"}, {"b"}},
      {"[a-]", {"a", "-"}, {"b"}},
      {"[.]", {"."}, {"a"}},
      {"[a&&b]", {"&", "a"}, {"c"}},
      {"{a,b,}x", {"ax", "bx", "x"}, {"cx"}},
      {"{}", {""}, {"a"}},
      {"é*.txt", {"été.txt"}, {"ete.txt"}},
      {"[é]", {"é"}, {"e"}},
      {"?", {"é"}, {"/"}},
      {"**x", {"ab/x"}, {"a\nb/x"}},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(cases); i++)
    check_glob(&cases[i]);
  /* ** is ".*": no newline; * is [^/]*, which takes one */
  assert_false(cfg__glob_match("**", "a\nb"));
  assert_true(cfg__glob_match("*", "a\nb"));

  char *re = NULL, *err = NULL;
  static const char *const tr[][2] = {
      {"*.txt", "^[^/]*\\.txt$"}, {"**.go", "^.*\\.go$"},   {"{a,b}", "^(?:(?:a)|(?:b))$"},
      {"[!a-c]", "^[^/a-c]$"},    {"[^x]", "^[\\^x]$"},     {"?\\?", "^[^/]\\?$"},
      {"a}b,c", "^a}b,c$"},       {"[[\\]", "^[\\[\\\\]$"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(tr); i++) {
    assert_int_equal(cfg__glob_to_regex(tr[i][0], &re, &err), 0);
    assert_string_equal(re, tr[i][1]);
    free(re);
  }
}

static void
test_glob_errors(void **state)
{
  static const char *const bad[][2] = {
      {"*[a--z]", "invalid range"},
      {"*[a--]", "invalid range"},
      {"*[a-z", "missing ']"},
      {"*{class,java", "missing '}"},
      {"*.{class,{.java}}", "cannot nest groups"},
      {"*.html\\", "no character to escape"},
      {"[z-a]", "invalid range"},
      {"[a/b]", "explicit 'name separator' in class"},
      {"[", "missing ']"},
      {"[]", "missing closing ]"}, /* the generated regexp "[]$" is invalid in Go too */
      {"a\xff", "invalid UTF-8"},
  };
  for (size_t i = 0; i < CI_ARRAY_SIZE(bad); i++) {
    struct cfg_regex *g = NULL;
    char *err = NULL;
    assert_int_equal(cfg__glob_compile(bad[i][0], &g, &err), -1);
    assert_null(g);
    if (!strstr(err, bad[i][1]))
      print_error("glob '%s': error \"%s\" lacks \"%s\"\n", bad[i][0], err, bad[i][1]);
    assert_non_null(strstr(err, bad[i][1]));
    free(err);
    assert_false(cfg__glob_match(bad[i][0], "x"));
  }
  char *err = NULL, *re = NULL;
  assert_int_equal(cfg__glob_to_regex("*[a-z", &re, &err), -1);
  assert_string_equal(err, "invalid pattern syntax: missing ']' in '*[a-z' at 4");
  free(err);
  assert_int_equal(cfg__glob_to_regex("*.html\\", &re, &err), -1);
  assert_string_equal(err, "invalid pattern syntax: no character to escape in '*.html\\' at 6");
  free(err);
}

/* Random globs and regexps against random paths: never crash or leak. */
static void
test_glob_regex_random(void **state)
{
  static const char gl[] = "ab*?[]!-{},\\/.^$()+|&";
  static const char rx[] = "ab.*+?()[]|^${},\\dswpQE0-9:xi";
  srand(777);
  char pat[16], path[16];
  int ok = 0;
  for (int iter = 0; iter < 20000; iter++) {
    const char *alpha = iter % 2 ? gl : rx;
    size_t na = strlen(alpha);
    int n = rand() % 12;
    for (int i = 0; i < n; i++)
      pat[i] = alpha[(size_t)rand() % na];
    pat[n] = '\0';
    int m = rand() % 12;
    for (int i = 0; i < m; i++)
      path[i] = "ab/.x-\n"[rand() % 7];
    path[m] = '\0';
    struct cfg_regex *re = NULL;
    char *err = NULL;
    int r = iter % 2 ? cfg__glob_compile(pat, &re, &err) : cfg__regex_compile(pat, &re, &err);
    if (r < 0) {
      assert_non_null(err);
      free(err);
      continue;
    }
    ok++;
    int mm = cfg__regex_match(re, path, strlen(path), &err);
    assert_true(mm == 0 || mm == 1);
    cfg__regex_free(re);
  }
  assert_true(ok > 1000);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expand_longest_key_first),
      cmocka_unit_test(test_expand_forms),
      cmocka_unit_test(test_expand_passes),
      cmocka_unit_test(test_expand_speed),
      cmocka_unit_test(test_bool_upstream),
      cmocka_unit_test(test_bool_regex),
      cmocka_unit_test(test_bool_operators),
      cmocka_unit_test(test_bool_variables),
      cmocka_unit_test(test_bool_changes_include),
      cmocka_unit_test(test_bool_errors),
      cmocka_unit_test(test_bool_nesting),
      cmocka_unit_test(test_bool_random),
      cmocka_unit_test(test_regex_semantics),
      cmocka_unit_test(test_regex_errors),
      cmocka_unit_test(test_regex_translate),
      cmocka_unit_test(test_glob_upstream),
      cmocka_unit_test(test_glob_more),
      cmocka_unit_test(test_glob_errors),
      cmocka_unit_test(test_glob_regex_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
