/* common/util.h - allocation, cleanup attributes, growable buffers and string vectors.
 *
 * Everything here is synchronous and depends on nothing else in the project.
 * xmalloc() and friends abort on out-of-memory (as crun, git and bubblewrap do);
 * every other failure is returned to the caller.
 */
#ifndef CI_UTIL_H
#define CI_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#ifdef CI_UNIT_TEST
#define CI_TESTABLE
#else
#define CI_TESTABLE static
#endif

#define CI_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CI_UNUSED __attribute__((unused))

/* Abort with a message naming the broken invariant (git's BUG()). */
#define CI_BUG(...) ci_bug(__FILE__, __LINE__, __VA_ARGS__)
void ci_bug(const char *file, int line, const char *fmt, ...) CI_PRINTF(3, 4)
    __attribute__((noreturn));

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* xreallocarray(p, nmemb, size): realloc with overflow check. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) CI_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap) CI_PRINTF(1, 0);

/* Grow *v (of *alloc elements of size elem) so that it can hold at least need elements. */
void ci_grow(void *v, size_t *alloc, size_t need, size_t elem);
#define CI_GROW(v, alloc, need) ci_grow(&(v), &(alloc), (need), sizeof(*(v)))

/* Cleanup attributes (crun utils.h, bubblewrap utils.h). */
void ci_freep(void *p);
void ci_closep(int *fd);
void ci_fclosep(FILE **f);
#define cleanup_free __attribute__((cleanup(ci_freep)))
#define cleanup_close __attribute__((cleanup(ci_closep)))
#define cleanup_file __attribute__((cleanup(ci_fclosep)))

static inline void *
ci_steal_pointer(void *pp)
{
  void **p = (void **)pp;
  void *ret = *p;
  *p = NULL;
  return ret;
}
#define steal_pointer(pp) ci_steal_pointer(pp)

static inline int
steal_fd(int *fd)
{
  int ret = *fd;
  *fd = -1;
  return ret;
}

/* A growable byte buffer, always NUL-terminated (git strbuf, curl dynbuf).
 * init -> add... -> (borrow .s | ci_buf_take) -> release. */
struct ci_buf {
  char *s;      /* owned; "" (static) until the first add */
  size_t len;   /* bytes used, excluding the terminating NUL */
  size_t alloc; /* bytes allocated (0 while s points at the static "") */
};
#define CI_BUF_INIT {NULL, 0, 0}
void ci_buf_init(struct ci_buf *b);
void ci_buf_release(struct ci_buf *b);
void ci_buf_reset(struct ci_buf *b);
void ci_buf_add(struct ci_buf *b, const void *data, size_t len);
void ci_buf_adds(struct ci_buf *b, const char *s);
void ci_buf_addc(struct ci_buf *b, char c);
void ci_buf_addf(struct ci_buf *b, const char *fmt, ...) CI_PRINTF(2, 3);
void ci_buf_vaddf(struct ci_buf *b, const char *fmt, va_list ap) CI_PRINTF(2, 0);
/* The string, never NULL; borrowed. */
const char *ci_buf_str(const struct ci_buf *b);
/* Hand the string to the caller (never NULL) and reset the buffer. */
char *ci_buf_take(struct ci_buf *b);

/* A vector of owned strings. */
struct ci_strv {
  char **v; /* owned, each element owned */
  size_t n;
  size_t alloc;
};
#define CI_STRV_INIT {NULL, 0, 0}
void ci_strv_push(struct ci_strv *sv, const char *s);
void ci_strv_push_take(struct ci_strv *sv, char *s);
void ci_strv_release(struct ci_strv *sv);
bool ci_strv_contains(const struct ci_strv *sv, const char *s);

/* Read a whole file (at most max bytes) into *out (NUL-terminated, owned) and *len. */
struct ci_error;
int ci_read_file(const char *path, size_t max, char **out, size_t *len, struct ci_error **err);

/* Create dir and its missing parents with mode (an existing path is fine). */
int ci_mkdirs(const char *dir, mode_t mode, struct ci_error **err);

bool ci_str_has_prefix(const char *s, const char *prefix);
bool ci_str_has_suffix(const char *s, const char *suffix);

#endif
