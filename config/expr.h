/* config/expr.h - the expression layer of config/ (module-internal): `only_if`/`skip`
 * expressions (upstream's "boolevator"), Go (RE2) regular expressions on PCRE2, and
 * Java-style globs for changesInclude()/changesIncludeOnly().
 *
 * Everything here is synchronous, keeps no global state and is safe on hostile input:
 * bad input gives an error message, never a crash, unbounded recursion or a hang.
 * Messages are owned by the caller (free()), lower case, and name the offending piece.
 *
 * cfg_expand() (the parse-time $VAR expansion) is declared in config/config.h and lives
 * in config/expand.c.
 */
#ifndef CFG_EXPR_H
#define CFG_EXPR_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- boolevator ----------------------------------------------------------------------
 *
 * Evaluate expr as upstream's boolevator (gval with cirrus' operators) does, store the
 * result in *out and return 0; or return -1 and set *errmsg (owned) to a message that
 * starts with "internal boolevator error: " (upstream's prefix) and says what is wrong
 * and where: "... unexpected ')' at offset 12".  Offsets are 0-based byte offsets in expr.
 *
 * Language (tokens as Go's text/scanner; whitespace is space, tab, CR, LF, and Go
 * comments // ... and / * ... * / are skipped, so expressions may span lines):
 *   - every value is a string;
 *   - true, false: the strings "true"/"false";
 *   - 'text' and "text": the text between the quotes, quotes trimmed again while the
 *     text still starts and ends with the same quote (trimAllQuotes: "'x'" is x);
 *     backslashes are kept as written ('\d' is the two characters \d), a backslash
 *     only stops the next quote from ending the literal; as upstream, a literal left
 *     open runs to the end of its line (newline included) or of the expression and
 *     keeps its text ('C:\' at the end is C:\);
 *   - $NAME and ${NAME}: env[NAME] expanded with cfg_expand(value, env), "" if unset;
 *     NAME is the next token ($1, $ FOO and ${FOO} work).  On purpose stricter than
 *     upstream, which takes any token as the name and any token as the closing brace:
 *     NAME must be an identifier or a number, and ${ must be closed by };
 *   - ! x: negation, x must be a Go ParseBool string (1 t T TRUE true True 0 f F FALSE
 *     false False), binds to the next operand only (!$A == 'true' is (!$A) == 'true');
 *   - infix, high to low precedence, all left-associative:
 *       in (10)              a in b: b contains a
 *       == != =~ !=~ (8)     =~ is the Go regexp "(?s)(?i)^" + b + "$" matched on a;
 *                            an invalid regexp is an error for =~ but makes !=~ yield ""
 *                            (upstream swallows that error);
 *       && (4)   || (3)      both sides must be ParseBool strings;
 *   - ( ... ) groups;
 *   - changesInclude(p, ...), changesIncludeOnly(p, ...): each argument is evaluated,
 *     then expanded with cfg_expand() over the env whose values are already expanded,
 *     and compiled as a Java glob (a malformed glob is an error, even with no affected
 *     files).  changesInclude is "true" iff some affected file matches some pattern;
 *     changesIncludeOnly iff at least one file matched and every file matched.  With
 *     affected_files NULL or empty both are "false".  No arguments is an error.
 * Everything is evaluated (no short-circuit, as upstream), so `true || 'x'` is an error.
 * The final value must be a ParseBool string.
 *
 * Errors: empty expression, unbalanced parentheses, trailing tokens, unknown names
 * (bare identifiers, unknown functions), non-boolean operands of ! && ||, invalid
 * regexps for =~, invalid globs, a function without arguments, numbers and `raw`
 * strings used as values, nesting deeper than CFG_BOOL_MAX_DEPTH (upstream has no
 * limit and overflows its stack).
 *
 * env and affected_files are borrowed and may be NULL (empty). */
#define CFG_BOOL_MAX_DEPTH 200
int cfg__bool_eval(const char *expr, const struct cfg_env *env,
                   const struct ci_strv *affected_files, bool *out, char **errmsg);

/* Go's strconv.ParseBool: 0 and *out, or -1 when s is none of its twelve spellings. */
int cfg__parse_bool(const char *s, bool *out);

/* ---- Go regular expressions --------------------------------------------------------
 *
 * A pattern in Go's regexp syntax (RE2, Perl flags as regexp.Compile uses them),
 * translated to PCRE2 so that it means what it means in Go:
 *   - syntax Go rejects is rejected with Go's wording: backreferences, lookaround,
 *     atomic/possessive/recursive constructs, \Z \C \h \K ..., stacked repetitions
 *     (a**, a{2}{3}), repeat counts over 1000 (also nested: (a{40}){30}), flags other
 *     than i m s U, missing/unexpected parentheses, bad classes and escapes, invalid
 *     UTF-8;
 *   - $ without (?m) matches only at the very end (Go's \z), \s is [\t\n\f\r ], \v is
 *     VT, a negated class matches \n, (?m)^ also matches after a final newline, octal
 *     \123 and \x{...} are characters, {n,m} that is not a valid repeat is literal text;
 *   - subjects are matched as Go does: invalid UTF-8 bytes count as U+FFFD each.
 * Matching uses PCRE2's DFA matcher in a single anchored pass over "(?s:.*?)(?:re)":
 * time is linear in the subject (times the pattern size), as with RE2; there is no
 * catastrophic backtracking and no quadratic search.
 * Known differences (all exotic): Unicode property names are PCRE2's (it accepts some
 * spellings Go rejects, and its wording for unknown ones); (?i) does not widen
 * \p{Lu}-style properties, nor narrow \W by the Kelvin sign; flag groups "(?i:" nest
 * only about 500 deep in PCRE2 (plain groups 1000, like Go). */
struct cfg_regex;

/* Compile pattern.  0 and *out (free with cfg__regex_free), or -1 and *errmsg. */
int cfg__regex_compile(const char *pattern, struct cfg_regex **out, char **errmsg);
/* 1 if subject (len bytes) matches anywhere (use ^...$ to anchor), 0 if not, -1 and
 * *errmsg if the matcher ran out of resources (huge patterns only). */
int cfg__regex_match(const struct cfg_regex *re, const char *subject, size_t len, char **errmsg);
void cfg__regex_free(struct cfg_regex *re);
/* The PCRE2 pattern a Go pattern translates to (for tests and diagnostics): 0 and
 * *out (owned), or -1 and *errmsg. */
int cfg__regex_translate(const char *pattern, char **out, char **errmsg);

/* ---- Java globs (go-java-glob's ToRegexPattern, non-DOS) ---------------------------
 *
 * Matching is against the whole path:
 *   *        any run of characters except '/'
 *   **       any run of characters, '/' included (".*", so no newline)
 *   ?        one character except '/'
 *   [abc] [a-z] [!a-z]   a class; '!' negates (never matching '/'); a leading '^' is a
 *            literal '^'; '-' first is literal; '/' inside a class is an error
 *   {a,b,c}  alternatives (each may use the other syntax); groups do not nest; outside
 *            a group ',' and '}' are literal
 *   \c       c literally; a trailing '\' is an error
 * Errors use go-java-glob's wording: "invalid pattern syntax: missing ']' in 'x[a' at 3".
 * Difference from upstream, on purpose: non-ASCII characters match themselves (upstream
 * turns each UTF-8 byte into a separate Latin-1 character, so they never match); a
 * pattern that is not valid UTF-8 is an error. */

/* The Go regexp text ToRegexPattern builds ("^...$"): 0 and *out, or -1 and *errmsg. */
int cfg__glob_to_regex(const char *pattern, char **out, char **errmsg);
/* Compile a glob: 0 and *out (free with cfg__regex_free), or -1 and *errmsg. */
int cfg__glob_compile(const char *pattern, struct cfg_regex **out, char **errmsg);
/* Match path against a compiled glob: 1 or 0 (or -1 and *errmsg, see above). */
int cfg__glob_match_compiled(const struct cfg_regex *glob, const char *path, char **errmsg);
/* One-shot: true iff pattern is a valid glob and matches path. */
bool cfg__glob_match(const char *pattern, const char *path);

#endif
