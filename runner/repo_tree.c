/* runner/repo_tree.c - the project copy: one walker, two sinks (a tar stream through
 * libarchive, and a directory built with *at() calls).
 *
 * The walker opens every directory and file relative to its parent's descriptor with
 * O_NOFOLLOW, so a symbolic link is never followed, and a path swapped for a link
 * meanwhile is refused rather than followed.  The directory sink creates everything
 * relative to descriptors of the destination with O_EXCL / O_NOFOLLOW for the same
 * reason on the writing side.
 */
#include "runner/repo.h"
#include "runner/repo_internal.h"

#include "common/log.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20) /* content is moved, and cancellation checked, per MiB */

/* One open directory of the walk: the source, and (directory sink) its copy. */
struct level {
  int src; /* source directory; owned by the walker */
  int dst; /* destination directory (directory sink), else -1; owned by the sink */
  dev_t dev;
  ino_t ino;
  struct level *up; /* the parent, NULL at the root */
};

struct walker;

/* What a sink does with each entry.  rel is project-relative ("" for the root), name the
 * last component (NULL for the root).  Each returns >= 0 or < 0 with *err set. */
struct sink_ops {
  int (*dir)(struct walker *w, struct level *parent, struct level *child, const char *rel,
             const char *name, const struct stat *st, struct ci_error **err);
  int (*dir_done)(struct walker *w, struct level *lvl, const char *rel, const struct stat *st,
                  struct ci_error **err);
  int (*file)(struct walker *w, struct level *parent, const char *rel, const char *name, int fd,
              const struct stat *st, struct ci_error **err);
  int (*symlink)(struct walker *w, struct level *parent, const char *rel, const char *name,
                 const char *target, const struct stat *st, struct ci_error **err);
  /* Release whatever dir() put in child (called whether or not dir_done ran). */
  void (*dir_close)(struct walker *w, struct level *lvl);
};

struct walker {
  struct repo__ignore ig;
  const struct sink_ops *ops;
  void *sink;
  const atomic_bool *cancel;
  struct ci_buf rel; /* the current project-relative path */
  struct repo_copy_stats st;
  bool have_skip; /* leave out the inode skip_dev:skip_ino (the output) */
  dev_t skip_dev;
  ino_t skip_ino;
  char *buf; /* CHUNK bytes of scratch for content */
};

static const char *
show(const char *rel)
{
  return *rel ? rel : ".";
}

static int
check_cancel(struct walker *w, struct ci_error **err)
{
  if (w->cancel && atomic_load(w->cancel))
    return ci_error_make(err, CI_ECANCELED, "copy canceled");
  return 0;
}

/* 0777 and the sticky bit: setuid and setgid are dropped, as rsync without --perms. */
static mode_t
copy_mode(mode_t m)
{
  return m & 01777;
}

/* ---- the walk ---- */

/* How the entries of a directory are chosen. */
enum walk_mode {
  WALK_ALL,     /* by the ignore rules, and tracked files are kept */
  WALK_TRACKED, /* below an ignored directory: only tracked entries */
  WALK_GIT,     /* inside .git: everything */
};

static int walk_dir(struct walker *w, struct level *lvl, enum walk_mode mode,
                    struct ci_error **err);

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory fd, sorted bytewise. */
static int
list_dir(int fd, const char *rel, struct ci_strv *out, struct ci_error **err)
{
  int dfd = dup(fd);
  if (dfd < 0)
    return ci_error_make(err, -errno, "cannot read directory '%s': %s", show(rel), strerror(errno));
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return ci_error_make(err, -e, "cannot read directory '%s': %s", show(rel), strerror(e));
  }
  rewinddir(d);
  struct dirent *de;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de)
      break;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    ci_strv_push(out, de->d_name);
  }
  int e = errno;
  closedir(d);
  if (e)
    return ci_error_make(err, -e, "cannot read directory '%s': %s", show(rel), strerror(e));
  if (out->n > 1)
    qsort(out->v, out->n, sizeof(*out->v), cmp_str);
  return 0;
}

static int
walk_subdir(struct walker *w, struct level *parent, const char *name, enum walk_mode mode,
            struct ci_error **err)
{
  const char *rel = ci_buf_str(&w->rel);
  int fd = openat(parent->src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      ci_log_debug("'%s' vanished while being copied", rel);
      return 0;
    }
    return ci_error_make(err, -errno, "cannot open directory '%s': %s", rel, strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    return ci_error_make(err, -e, "cannot stat '%s': %s", rel, strerror(e));
  }
  if (w->have_skip && st.st_dev == w->skip_dev && st.st_ino == w->skip_ino) {
    close(fd);
    return 0;
  }
  for (struct level *l = parent; l; l = l->up)
    if (l->dev == st.st_dev && l->ino == st.st_ino) {
      close(fd);
      return ci_error_make(err, -ELOOP, "directory '%s' contains itself (a bind mount loop?)", rel);
    }
  struct level child = {.src = fd, .dst = -1, .dev = st.st_dev, .ino = st.st_ino, .up = parent};
  int ret = w->ops->dir(w, parent, &child, rel, name, &st, err);
  if (ret >= 0) {
    w->st.dirs++;
    ret = walk_dir(w, &child, mode, err);
  }
  if (ret >= 0)
    ret = w->ops->dir_done(w, &child, ci_buf_str(&w->rel), &st, err);
  w->ops->dir_close(w, &child);
  close(fd);
  return ret;
}

static int
walk_file(struct walker *w, struct level *parent, const char *name, struct ci_error **err)
{
  const char *rel = ci_buf_str(&w->rel);
  /* O_NONBLOCK: a FIFO swapped in meanwhile must not block the open. */
  int fd = openat(parent->src, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      ci_log_debug("'%s' vanished while being copied", rel);
      return 0;
    }
    return ci_error_make(err, -errno, "cannot open '%s': %s", rel, strerror(errno));
  }
  struct stat st;
  int ret = 0;
  if (fstat(fd, &st) < 0) {
    ret = ci_error_make(err, -errno, "cannot stat '%s': %s", rel, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    w->st.skipped++;
  } else if (w->have_skip && st.st_dev == w->skip_dev && st.st_ino == w->skip_ino) {
    /* the archive being written */
  } else {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
      fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    ret = w->ops->file(w, parent, rel, name, fd, &st, err);
    if (ret >= 0)
      w->st.files++;
  }
  close(fd);
  return ret;
}

static int
walk_symlink(struct walker *w, struct level *parent, const char *name, const struct stat *st,
             struct ci_error **err)
{
  const char *rel = ci_buf_str(&w->rel);
  size_t size = st->st_size > 0 && st->st_size < PATH_MAX ? (size_t)st->st_size + 1 : PATH_MAX;
  for (;;) {
    cleanup_free char *target = xmalloc(size);
    ssize_t n = readlinkat(parent->src, name, target, size);
    if (n < 0) {
      if (errno == ENOENT)
        return 0;
      return ci_error_make(err, -errno, "cannot read link '%s': %s", rel, strerror(errno));
    }
    if ((size_t)n < size) {
      target[n] = '\0';
      int ret = w->ops->symlink(w, parent, rel, name, target, st, err);
      if (ret >= 0)
        w->st.symlinks++;
      return ret;
    }
    size *= 2;
  }
}

static int
walk_dir(struct walker *w, struct level *lvl, enum walk_mode mode, struct ci_error **err)
{
  struct ci_strv names = CI_STRV_INIT;
  int ret = list_dir(lvl->src, ci_buf_str(&w->rel), &names, err);
  size_t base = w->rel.len;
  for (size_t i = 0; ret >= 0 && i < names.n; i++) {
    const char *name = names.v[i];
    ret = check_cancel(w, err);
    if (ret < 0)
      break;
    if (base)
      ci_buf_addc(&w->rel, '/');
    ci_buf_adds(&w->rel, name);
    const char *rel = ci_buf_str(&w->rel);

    struct stat st;
    if (fstatat(lvl->src, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT)
        ret = ci_error_make(err, -errno, "cannot stat '%s': %s", rel, strerror(errno));
      goto next;
    }
    /* .git is copied whole, as upstream's rsync does; git itself never ignores it. */
    bool git = mode == WALK_GIT || (mode == WALK_ALL && strcmp(name, ".git") == 0);
    enum walk_mode sub = git ? WALK_GIT : mode;
    if (!git) {
      enum repo__verdict v = REPO__KEEP;
      ret = repo__ignore_check(&w->ig, rel, S_ISDIR(st.st_mode), mode == WALK_TRACKED, &v, err);
      if (ret < 0)
        goto next;
      if (v == REPO__SKIP) {
        ci_log_trace("copy: '%s' is ignored", rel);
        w->st.ignored++;
        goto next;
      }
      if (v == REPO__TRACKED_ONLY)
        sub = WALK_TRACKED;
    }
    if (S_ISDIR(st.st_mode))
      ret = walk_subdir(w, lvl, name, sub, err);
    else if (S_ISREG(st.st_mode))
      ret = walk_file(w, lvl, name, err);
    else if (S_ISLNK(st.st_mode))
      ret = walk_symlink(w, lvl, name, &st, err);
    else
      w->st.skipped++; /* socket, FIFO, device */
  next:
    w->rel.len = base; /* back to this directory's path */
    w->rel.s[base] = '\0';
  }
  ci_strv_release(&names);
  return ret;
}

/* Walk project into the sink.  stats written only on success. */
static int
walk(const char *project, struct walker *w, struct repo_copy_stats *stats, struct ci_error **err)
{
  char abs[PATH_MAX];
  if (!realpath(project, abs))
    return ci_error_make(err, -errno, "cannot open project directory '%s': %s", project,
                         strerror(errno));
  int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return ci_error_make(err, -errno, "cannot open project directory '%s': %s", project,
                         strerror(errno));
  struct stat st;
  int ret = 0;
  if (fstat(fd, &st) < 0)
    ret = ci_error_make(err, -errno, "cannot stat '%s': %s", project, strerror(errno));
  if (ret >= 0)
    ret = repo__ignore_init(&w->ig, abs, err);
  if (ret < 0) {
    close(fd);
    return ret;
  }
  w->buf = xmalloc(CHUNK);
  ci_buf_init(&w->rel);
  struct level root = {.src = fd, .dst = -1, .dev = st.st_dev, .ino = st.st_ino, .up = NULL};
  ret = w->ops->dir(w, NULL, &root, "", NULL, &st, err);
  if (ret >= 0) {
    w->st.dirs++;
    ret = walk_dir(w, &root, WALK_ALL, err);
  }
  if (ret >= 0)
    ret = w->ops->dir_done(w, &root, "", &st, err);
  w->ops->dir_close(w, &root);
  close(fd);
  free(w->buf);
  w->buf = NULL;
  ci_buf_release(&w->rel);
  repo__ignore_release(&w->ig);
  if (ret < 0)
    return ci_error_prefix(err, "copying '%s'", project);
  if (stats)
    *stats = w->st;
  return 0;
}

/* Read up to want bytes of fd into w->buf; *got = 0 at end of file. */
static int
read_chunk(struct walker *w, int fd, const char *rel, size_t want, size_t *got,
           struct ci_error **err)
{
  for (;;) {
    ssize_t n = read(fd, w->buf, want < CHUNK ? want : CHUNK);
    if (n >= 0) {
      *got = (size_t)n;
      return 0;
    }
    if (errno != EINTR)
      return ci_error_make(err, -errno, "cannot read '%s': %s", rel, strerror(errno));
  }
}

/* ---- tar sink ---- */

struct tar_sink {
  struct archive *a;
  struct archive_entry *e;
  char *prefix; /* owned: "" or "a/b/" */
  struct ci_buf name;
  repo_write_fn fn;
  void *data;
  struct ci_error *werr; /* the writer's failure */
  bool failed;           /* write nothing more (not even the trailer) */
  uint64_t out_bytes;
};

static la_ssize_t
tar_on_write(struct archive *a, void *data, const void *buf, size_t len)
{
  struct tar_sink *t = data;
  if (t->werr || t->failed) {
    archive_set_error(a, ECANCELED, "archive abandoned");
    return -1;
  }
  if (t->fn(buf, len, t->data, &t->werr) < 0) {
    if (!t->werr)
      ci_error_make(&t->werr, CI_EFAIL, "cannot write the archive");
    archive_set_error(a, EIO, "%s", t->werr->msg);
    return -1;
  }
  t->out_bytes += len;
  return (la_ssize_t)len;
}

/* The failure of an archive call on entry rel. */
static int
tar_fail(struct tar_sink *t, const char *rel, struct ci_error **err)
{
  if (t->werr) {
    struct ci_error *e = steal_pointer(&t->werr);
    *err = e;
    return ci_error_prefix(err, "cannot archive '%s'", show(rel));
  }
  const char *msg = archive_error_string(t->a);
  int no = archive_errno(t->a);
  return ci_error_make(err, no > 0 ? -no : CI_EFAIL, "cannot archive '%s': %s", show(rel),
                       msg ? msg : "libarchive error");
}

static int
tar_header(struct walker *w, const char *rel, const struct stat *st, mode_t type, mode_t perm,
           const char *link, struct ci_error **err)
{
  struct tar_sink *t = w->sink;
  ci_buf_reset(&t->name);
  ci_buf_adds(&t->name, t->prefix);
  ci_buf_adds(&t->name, rel);
  if (type == AE_IFDIR) {
    if (t->name.len == 0)
      ci_buf_adds(&t->name, "./");
    else if (*rel)
      ci_buf_addc(&t->name, '/');
  }
  archive_entry_clear(t->e);
  archive_entry_copy_pathname(t->e, ci_buf_str(&t->name));
  archive_entry_set_filetype(t->e, type);
  archive_entry_set_perm(t->e, perm);
  archive_entry_set_uid(t->e, 0);
  archive_entry_set_gid(t->e, 0);
  archive_entry_set_mtime(t->e, st->st_mtim.tv_sec, 0);
  archive_entry_set_size(t->e, type == AE_IFREG ? st->st_size : 0);
  if (link)
    archive_entry_copy_symlink(t->e, link);
  int r = archive_write_header(t->a, t->e);
  if (r == ARCHIVE_WARN)
    ci_log_debug("archiving '%s': %s", show(rel), archive_error_string(t->a));
  else if (r != ARCHIVE_OK)
    return tar_fail(t, rel, err);
  return 0;
}

static int
tar_dir(struct walker *w, struct level *parent, struct level *child, const char *rel,
        const char *name, const struct stat *st, struct ci_error **err)
{
  return tar_header(w, rel, st, AE_IFDIR, parent ? copy_mode(st->st_mode) : 0755, NULL, err);
}

static int
tar_dir_done(struct walker *w, struct level *lvl, const char *rel, const struct stat *st,
             struct ci_error **err)
{
  return 0;
}

static void
tar_dir_close(struct walker *w, struct level *lvl)
{
}

static int
tar_file(struct walker *w, struct level *parent, const char *rel, const char *name, int fd,
         const struct stat *st, struct ci_error **err)
{
  struct tar_sink *t = w->sink;
  int ret = tar_header(w, rel, st, AE_IFREG, copy_mode(st->st_mode), NULL, err);
  uint64_t left = (uint64_t)st->st_size;
  while (ret >= 0 && left > 0) {
    size_t got = 0;
    ret = check_cancel(w, err);
    if (ret >= 0)
      ret = read_chunk(w, fd, rel, left < CHUNK ? (size_t)left : CHUNK, &got, err);
    if (ret < 0)
      break;
    if (got == 0) {
      ci_log_warn("'%s' shrank while being archived: padded with %llu zero bytes", rel,
                  (unsigned long long)left);
      break; /* archive_write_finish_entry() pads the entry to its declared size */
    }
    if (archive_write_data(t->a, w->buf, got) < 0)
      return tar_fail(t, rel, err);
    left -= got;
    w->st.bytes += got;
  }
  if (ret >= 0 && archive_write_finish_entry(t->a) < ARCHIVE_WARN)
    return tar_fail(t, rel, err);
  return ret;
}

static int
tar_symlink(struct walker *w, struct level *parent, const char *rel, const char *name,
            const char *target, const struct stat *st, struct ci_error **err)
{
  return tar_header(w, rel, st, AE_IFLNK, 0777, target, err);
}

static const struct sink_ops tar_ops = {
    .dir = tar_dir,
    .dir_done = tar_dir_done,
    .file = tar_file,
    .symlink = tar_symlink,
    .dir_close = tar_dir_close,
};

/* "", or the prefix without leading or trailing slashes plus one "/". */
static int
normalise_prefix(const char *prefix, char **out, struct ci_error **err)
{
  struct ci_buf b = CI_BUF_INIT;
  const char *p = prefix ? prefix : "";
  while (*p) {
    while (*p == '/')
      p++;
    const char *end = strchrnul(p, '/');
    size_t n = (size_t)(end - p);
    if (n == 0)
      break;
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
      ci_buf_release(&b);
      return ci_error_make(err, -EINVAL, "archive prefix '%s' must not contain '.' or '..'",
                           prefix);
    }
    ci_buf_add(&b, p, n);
    ci_buf_addc(&b, '/');
    p = end;
  }
  *out = ci_buf_take(&b);
  return 0;
}

static int
tar_run(const char *project, const struct repo_copy_opts *opts, repo_write_fn fn, void *data,
        const struct stat *skip, struct repo_copy_stats *stats, struct ci_error **err)
{
  struct tar_sink t = {.fn = fn, .data = data};
  int ret = normalise_prefix(opts ? opts->prefix : NULL, &t.prefix, err);
  if (ret < 0)
    return ret;
  /* Names are bytes, mostly UTF-8.  libarchive reads them in the thread's locale: make
   * that UTF-8 for this thread only, so that long names get plain UTF-8 pax records
   * (others go as they are, marked hdrcharset=BINARY). */
  locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  locale_t old_locale = utf8 ? uselocale(utf8) : (locale_t)0;
  t.a = archive_write_new();
  t.e = archive_entry_new();
  if (!t.a || !t.e)
    CI_BUG("out of memory");
  ci_buf_init(&t.name);
  if (archive_write_set_format_pax_restricted(t.a) != ARCHIVE_OK ||
      archive_write_open(t.a, &t, NULL, tar_on_write, NULL) != ARCHIVE_OK) {
    ret = tar_fail(&t, "", err);
  } else {
    struct walker w = {.ops = &tar_ops, .sink = &t, .cancel = opts ? opts->cancel : NULL};
    if (skip) {
      w.have_skip = true;
      w.skip_dev = skip->st_dev;
      w.skip_ino = skip->st_ino;
    }
    struct repo_copy_stats st;
    ret = walk(project, &w, &st, err);
    if (ret >= 0 && archive_write_close(t.a) != ARCHIVE_OK)
      ret = tar_fail(&t, "", err);
    if (ret >= 0 && stats) {
      st.out_bytes = t.out_bytes;
      *stats = st;
    }
  }
  /* After a failure the stream must stay truncated: no end-of-archive marker that would
   * make a partial copy look complete. */
  t.failed = ret < 0;
  archive_entry_free(t.e);
  archive_write_free(t.a);
  ci_error_free(&t.werr);
  ci_buf_release(&t.name);
  free(t.prefix);
  if (utf8) {
    uselocale(old_locale);
    freelocale(utf8);
  }
  return ret;
}

int
repo_tar_write(const char *project, const struct repo_copy_opts *opts, repo_write_fn fn, void *data,
               struct repo_copy_stats *stats, struct ci_error **err)
{
  return tar_run(project, opts, fn, data, NULL, stats, err);
}

static int
write_fd(const void *buf, size_t len, void *data, struct ci_error **err)
{
  int fd = *(int *)data;
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
          return ci_error_make(err, -errno, "cannot wait to write the archive: %s",
                               strerror(errno));
        continue;
      }
      return ci_error_make(err, -errno, "cannot write the archive: %s", strerror(errno));
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int
repo_tar_fd(const char *project, const struct repo_copy_opts *opts, int fd,
            struct repo_copy_stats *stats, struct ci_error **err)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return ci_error_make(err, -errno, "cannot write the archive: %s", strerror(errno));
  return tar_run(project, opts, write_fd, &fd, S_ISREG(st.st_mode) ? &st : NULL, stats, err);
}

/* ---- directory sink ---- */

struct dir_sink {
  const char *dest; /* borrowed, for messages */
  bool created;     /* dest was made by us */
  int root_fd;      /* owned */
};

static int
dir_fail(struct dir_sink *d, const char *rel, int e, struct ci_error **err)
{
  return ci_error_make(err, -e, "cannot copy '%s' to '%s%s%s': %s", show(rel), d->dest,
                       *rel ? "/" : "", rel, strerror(e));
}

/* Give fd (name == NULL) or name in dirfd (a link: not followed) st's modification time. */
static int
set_mtime(int fd, const char *name, const struct stat *st)
{
  struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, st->st_mtim};
  return name ? utimensat(fd, name, ts, AT_SYMLINK_NOFOLLOW) : futimens(fd, ts);
}

static int
dir_dir(struct walker *w, struct level *parent, struct level *child, const char *rel,
        const char *name, const struct stat *st, struct ci_error **err)
{
  struct dir_sink *d = w->sink;
  if (!parent) {
    child->dst = d->root_fd;
    d->root_fd = -1;
    return 0;
  }
  if (mkdirat(parent->dst, name, 0700) < 0)
    return dir_fail(d, rel, errno, err);
  child->dst = openat(parent->dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (child->dst < 0)
    return dir_fail(d, rel, errno, err);
  return 0;
}

static int
dir_dir_done(struct walker *w, struct level *lvl, const char *rel, const struct stat *st,
             struct ci_error **err)
{
  struct dir_sink *d = w->sink;
  if (lvl->up || d->created) {
    mode_t mode = lvl->up ? copy_mode(st->st_mode) : 0755;
    if (fchmod(lvl->dst, mode) < 0 || set_mtime(lvl->dst, NULL, st) < 0)
      return dir_fail(d, rel, errno, err);
  }
  return 0;
}

static void
dir_dir_close(struct walker *w, struct level *lvl)
{
  if (lvl->dst >= 0)
    close(lvl->dst);
  lvl->dst = -1;
}

/* Copy at most size bytes from in to out: copy_file_range, else read and write. */
static int
copy_content(struct walker *w, struct dir_sink *d, const char *rel, int in, int out, uint64_t size,
             struct ci_error **err)
{
  bool use_cfr = true;
  uint64_t left = size;
  while (left > 0) {
    int ret = check_cancel(w, err);
    if (ret < 0)
      return ret;
    size_t want = left < CHUNK ? (size_t)left : CHUNK;
    if (use_cfr) {
      ssize_t n = copy_file_range(in, NULL, out, NULL, want, 0);
      if (n > 0) {
        left -= (uint64_t)n;
        w->st.bytes += (uint64_t)n;
        continue;
      }
      if (n == 0)
        return 0; /* shrank meanwhile */
      if (errno == EINTR)
        continue;
      if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP &&
          errno != EBADF && errno != EPERM && errno != ETXTBSY)
        return dir_fail(d, rel, errno, err);
      use_cfr = false; /* not between these two files: copy by hand from here */
    }
    size_t got = 0;
    ret = read_chunk(w, in, rel, want, &got, err);
    if (ret < 0)
      return ret;
    if (got == 0)
      return 0;
    for (size_t off = 0; off < got;) {
      ssize_t n = write(out, w->buf + off, got - off);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return dir_fail(d, rel, errno, err);
      }
      off += (size_t)n;
    }
    left -= got;
    w->st.bytes += got;
  }
  return 0;
}

static int
dir_file(struct walker *w, struct level *parent, const char *rel, const char *name, int fd,
         const struct stat *st, struct ci_error **err)
{
  struct dir_sink *d = w->sink;
  int out = openat(parent->dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0)
    return dir_fail(d, rel, errno, err);
  int ret = copy_content(w, d, rel, fd, out, (uint64_t)st->st_size, err);
  if (ret >= 0 && (fchmod(out, copy_mode(st->st_mode)) < 0 || set_mtime(out, NULL, st) < 0))
    ret = dir_fail(d, rel, errno, err);
  /* close() reports delayed write errors (NFS, some FUSE file systems). */
  if (close(out) < 0 && ret >= 0 && errno != EINTR)
    ret = dir_fail(d, rel, errno, err);
  return ret;
}

static int
dir_symlink(struct walker *w, struct level *parent, const char *rel, const char *name,
            const char *target, const struct stat *st, struct ci_error **err)
{
  struct dir_sink *d = w->sink;
  if (symlinkat(target, parent->dst, name) < 0)
    return dir_fail(d, rel, errno, err);
  if (set_mtime(parent->dst, name, st) < 0)
    return dir_fail(d, rel, errno, err);
  return 0;
}

static const struct sink_ops dir_ops = {
    .dir = dir_dir,
    .dir_done = dir_dir_done,
    .file = dir_file,
    .symlink = dir_symlink,
    .dir_close = dir_dir_close,
};

int
repo_copy_dir(const char *project, const char *dest, const struct repo_copy_opts *opts,
              struct repo_copy_stats *stats, struct ci_error **err)
{
  struct dir_sink d = {.dest = dest, .root_fd = -1};
  if (mkdir(dest, 0700) == 0)
    d.created = true;
  else if (errno != EEXIST)
    return ci_error_make(err, -errno, "cannot create '%s': %s", dest, strerror(errno));
  d.root_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.root_fd < 0)
    return ci_error_make(err, -errno, "cannot open '%s': %s", dest, strerror(errno));
  struct stat st;
  if (fstat(d.root_fd, &st) < 0) {
    int e = errno;
    close(d.root_fd);
    return ci_error_make(err, -e, "cannot stat '%s': %s", dest, strerror(e));
  }
  struct walker w = {.ops = &dir_ops,
                     .sink = &d,
                     .cancel = opts ? opts->cancel : NULL,
                     .have_skip = true,
                     .skip_dev = st.st_dev,
                     .skip_ino = st.st_ino};
  int ret = walk(project, &w, stats, err);
  if (d.root_fd >= 0) /* walk() failed before handing it to the root level */
    close(d.root_fd);
  return ret;
}
