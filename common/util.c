/* common/util.c - allocation, buffers, string vectors, small file helpers. */
#include "util.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
ci_bug(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "BUG: %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static void __attribute__((noreturn))
oom(size_t n)
{
  fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
  abort();
}

void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    oom(n);
  return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
  void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
  if (!p)
    oom(nmemb * size);
  return p;
}

void *
xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q)
    oom(n);
  return q;
}

void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
  if (size && nmemb > SIZE_MAX / size)
    oom(SIZE_MAX);
  return xrealloc(p, nmemb * size);
}

char *
xstrdup(const char *s)
{
  return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0)
    oom(0);
  return s;
}

char *
xasprintf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *s = xvasprintf(fmt, ap);
  va_end(ap);
  return s;
}

void
ci_grow(void *v, size_t *alloc, size_t need, size_t elem)
{
  void **pv = (void **)v;
  if (need <= *alloc)
    return;
  size_t n = *alloc ? *alloc : 4;
  while (n < need) {
    if (n > SIZE_MAX / 2)
      oom(SIZE_MAX);
    n *= 2;
  }
  *pv = xreallocarray(*pv, n, elem);
  *alloc = n;
}

void
ci_freep(void *p)
{
  free(*(void **)p);
}

void
ci_closep(int *fd)
{
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
}

void
ci_fclosep(FILE **f)
{
  if (*f)
    fclose(*f);
}

/* ---- ci_buf ---- */

static char ci_buf_empty[1];

void
ci_buf_init(struct ci_buf *b)
{
  b->s = ci_buf_empty;
  b->len = 0;
  b->alloc = 0;
}

void
ci_buf_release(struct ci_buf *b)
{
  if (b->alloc)
    free(b->s);
  ci_buf_init(b);
}

void
ci_buf_reset(struct ci_buf *b)
{
  b->len = 0;
  if (b->alloc)
    b->s[0] = '\0';
}

void
ci_buf_add(struct ci_buf *b, const void *data, size_t len)
{
  if (!b->alloc) {
    b->s = NULL;
    b->alloc = 0;
  }
  if (b->len + len + 1 < b->len)
    oom(SIZE_MAX);
  if (b->len + len + 1 > b->alloc) {
    size_t n = b->alloc ? b->alloc : 64;
    while (n < b->len + len + 1)
      n *= 2;
    b->s = xrealloc(b->s, n);
    b->alloc = n;
  }
  if (len)
    memcpy(b->s + b->len, data, len);
  b->len += len;
  b->s[b->len] = '\0';
}

void
ci_buf_adds(struct ci_buf *b, const char *s)
{
  ci_buf_add(b, s, strlen(s));
}

void
ci_buf_addc(struct ci_buf *b, char c)
{
  ci_buf_add(b, &c, 1);
}

void
ci_buf_vaddf(struct ci_buf *b, const char *fmt, va_list ap)
{
  char small[256];
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(small, sizeof(small), fmt, cp);
  va_end(cp);
  if (n < 0)
    return;
  if ((size_t)n < sizeof(small)) {
    ci_buf_add(b, small, (size_t)n);
    return;
  }
  char *big = xmalloc((size_t)n + 1);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  ci_buf_add(b, big, (size_t)n);
  free(big);
}

void
ci_buf_addf(struct ci_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ci_buf_vaddf(b, fmt, ap);
  va_end(ap);
}

const char *
ci_buf_str(const struct ci_buf *b)
{
  return b->s ? b->s : "";
}

char *
ci_buf_take(struct ci_buf *b)
{
  char *s = b->alloc ? b->s : xstrdup("");
  ci_buf_init(b);
  return s;
}

/* ---- ci_strv ---- */

void
ci_strv_push_take(struct ci_strv *sv, char *s)
{
  CI_GROW(sv->v, sv->alloc, sv->n + 1);
  sv->v[sv->n++] = s;
}

void
ci_strv_push(struct ci_strv *sv, const char *s)
{
  ci_strv_push_take(sv, xstrdup(s));
}

void
ci_strv_release(struct ci_strv *sv)
{
  for (size_t i = 0; i < sv->n; i++)
    free(sv->v[i]);
  free(sv->v);
  sv->v = NULL;
  sv->n = sv->alloc = 0;
}

bool
ci_strv_contains(const struct ci_strv *sv, const char *s)
{
  for (size_t i = 0; i < sv->n; i++)
    if (strcmp(sv->v[i], s) == 0)
      return true;
  return false;
}

/* ---- files and strings ---- */

int
ci_mkdirs(const char *dir, mode_t mode, struct ci_error **err)
{
  cleanup_free char *p = xstrdup(dir);
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, mode) < 0 && errno != EEXIST)
        return ci_error_make(err, -errno, "cannot create directory '%s': %s", p, strerror(errno));
      *s = c;
      if (c == '\0')
        break;
    }
  }
  return 0;
}

int
ci_read_file(const char *path, size_t max, char **out, size_t *len, struct ci_error **err)
{
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0)
    return ci_error_make(err, -errno, "cannot stat '%s': %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return ci_error_make(err, -EISDIR, "cannot read '%s': it is a directory", path);
  struct ci_buf b = CI_BUF_INIT;
  ci_buf_init(&b);
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      ci_buf_release(&b);
      return ci_error_make(err, -e, "cannot read '%s': %s", path, strerror(e));
    }
    if (n == 0)
      break;
    if (b.len + (size_t)n > max) {
      ci_buf_release(&b);
      return ci_error_make(err, -EFBIG, "cannot read '%s': larger than %zu bytes", path, max);
    }
    ci_buf_add(&b, chunk, (size_t)n);
  }
  if (len)
    *len = b.len;
  *out = ci_buf_take(&b);
  return 0;
}

bool
ci_str_has_prefix(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool
ci_str_has_suffix(const char *s, const char *suffix)
{
  size_t ls = strlen(s), lx = strlen(suffix);
  return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}
