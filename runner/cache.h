/* runner/cache.h - the host side of task caches: keys, the blob store, blobs <-> tars, change
 * detection and the messages a cache step prints.
 *
 * A `*_cache` instruction (struct cfg_instr, CFG_INSTR_CACHE) keeps folders of a task's
 * container between tasks and runs.  The blobs live on the host, one file per key, in
 *
 *   $XDG_CACHE_HOME/cirrus/projects/<basename of the project dir>/   (else ~/.cache/...)
 *
 * exactly where upstream's Cirrus CLI keeps them, in the same format (tar.gz of the folders
 * relative to their base folder), so both programs can share a store.  The scheduler moves
 * files in and out of containers as tar archives; this module turns those tars into blobs and
 * back.  Everything here is synchronous and blocking (file I/O, gzip): call it from a worker
 * thread (uv_queue_work) or a helper process, never on the loop thread.  Functions that take a
 * struct cache_store must not be called concurrently on the same store object; separate
 * objects (and separate processes) may share one directory.
 *
 * The cache step (before the task's scripts), as upstream's agent does it:
 *
 *   1. key:   fingerprint_key verbatim, else run fingerprint_script in the container feeding
 *             its output to a struct cache_fingerprint, else cache_key_default();
 *             a failing fingerprint script fails the step (CACHE_MSG_FINGERPRINT_FAILED).
 *   2. plan:  cache_plan_init() with the folders (env-expanded) and CIRRUS_WORKING_DIR: the
 *             base folder and the absolute folder patterns, or the upstream error for folders
 *             that must be inside the working directory (the step fails with it).
 *   3. look:  cache_store_get(key); on a miss with optimistically_restore_on_miss,
 *             cache_store_find_latest(cache name) (CACHE_MSG_OPTIMISTIC_*).
 *   4. hit:   log CACHE_MSG_HIT, cache_restore() the blob into a tar (keep the digest it
 *             computes: it is what "unchanged" is measured against), copy the tar into the
 *             container.
 *      miss:  CACHE_MSG_MISS_POPULATING and run populate_script (failure fails the step with
 *             CACHE_MSG_POPULATE_FAILED), or CACHE_MSG_MISS_NO_SCRIPT.
 *   5. remember for the upload step: key, plan, whether a blob was available (exact or
 *             optimistic), the restored digest (empty on a miss), and
 *             skip_upload = available && !reupload_on_changes.  (Upstream counts an optimistic
 *             restore as available: with a fingerprint, whose reupload_on_changes defaults to
 *             false, the new key is then not uploaded by that task.)
 *
 * The upload step (`Upload '<name>' cache`, after the task's scripts):
 *
 *   1. skip_upload -> CACHE_MSG_SKIP_CHANGE_DETECTION, done (success).
 *   2. cache_plan_expand() with a listing of the working directory (globs need it) gives the
 *      folders to cache.
 *   3. cache_save_begin(), then for each folder that exists in the container take a tar of it
 *      and cache_save_add_tar() it; cache_save_finish().
 *   4. cache_save_is_empty() -> CACHE_MSG_ALL_EMPTY (with cache_folders_join()), done.
 *      CACHE_MSG_SHA; same digest sha as the restored one -> CACHE_MSG_UNCHANGED, done;
 *      otherwise, if the restored digest has entries, CACHE_MSG_CHANGED and the
 *      cache_digest_diff() list.
 *   5. if no blob was available at restore time and cache_store_get() now hits, another task
 *      uploaded it meanwhile: CACHE_MSG_ALREADY_UPLOADED, done.
 *   6. cache_save_commit().  Upload failures are logged (CACHE_MSG_UPLOAD_FAILED) and ignored:
 *      the step still succeeds, as upstream.
 *   7. cache_save_free() in every outcome (an uncommitted save leaves nothing behind).
 *
 * Tars: every function that reads or writes a tar says which container directory its entry
 * names are relative to.  Docker's and Podman's GET /containers/{id}/archive?path=P yields names
 * relative to dirname(P) ("node_modules/x" for P=/w/node_modules); PUT .../archive?path=/
 * wants names relative to "/".  Blobs hold names relative to the base folder ("x", "a/b"; the
 * base folder itself is "./"; upstream's "/x" and "" are read too).
 *
 * Robustness: no blob is ever read into memory; entries are streamed through libarchive.
 * Entry names with ".." or outside the base folder are refused; sizes and entry counts are
 * bounded by struct cache_limits.  A blob is written to ".temporary-blob-XXXXXX" in the store
 * and renamed over its final name only when complete and fsynced, so a killed run never leaves
 * a broken blob and two writers of one key simply race to a complete blob.
 */
#ifndef RUNNER_CACHE_H
#define RUNNER_CACHE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct artifacts_path;

/* ------------------------------------------------------------------ messages */

/* Upstream's log lines, as printf formats (each "%s" is named in the comment).  They carry no
 * leading or trailing newline; the caller frames lines. */
#define CACHE_MSG_HIT "Cache hit for %s!"                                           /* key */
#define CACHE_MSG_MISS_POPULATING "Cache miss for %s! Populating..."                /* key */
#define CACHE_MSG_MISS_NO_SCRIPT "Cache miss for %s! No script to populate with."   /* key */
#define CACHE_MSG_POPULATE_FAILED "Failed to execute populate script for %s cache!" /* name */
#define CACHE_MSG_FINGERPRINT_FAILED "Failed to execute fingerprint script for %s cache!"
#define CACHE_MSG_OPTIMISTIC_LOOKING                                                               \
  "Wasn't able to find the exact cache! Requesting the last available one..."
#define CACHE_MSG_OPTIMISTIC_FOUND "Found cache entry %s!"                             /* key */
#define CACHE_MSG_OPTIMISTIC_NONE "There is no other cache entry available for %s"     /* name */
#define CACHE_MSG_SKIP_CHANGE_DETECTION "Skipping change detection for %s cache!"      /* name */
#define CACHE_MSG_ALL_EMPTY "All cache folders (%s) are empty! Skipping uploading ..." /* list */
#define CACHE_MSG_SHA "SHA for cache folders (%s) is '%s'"                   /* list, sha */
#define CACHE_MSG_UNCHANGED "Cache %s hasn't changed! Skipping uploading..." /* name */
#define CACHE_MSG_CHANGED "Cache %s has changed!"                            /* name */
#define CACHE_MSG_CHANGES "List of changes for cache folders (%s):"          /* list */
#define CACHE_MSG_CHANGE "%s: %s" /* cache_change_str(kind), path */
#define CACHE_MSG_ALREADY_UPLOADED                                                                 \
  "Some other task has already uploaded cache entry %s! Skipping upload..." /* key */
#define CACHE_MSG_UPLOADING "Uploading cache %s..."                         /* name */
#define CACHE_MSG_UPLOAD_FAILED "Failed to upload cache '%s': %s!"          /* name, error */
#define CACHE_MSG_IGNORING "Ignoring the error..."
#define CACHE_MSG_RESTORE_FAILED "Failed to unarchive %s cache because of %s!" /* name, error */

/* "a, b, c": the folder list of CACHE_MSG_ALL_EMPTY, CACHE_MSG_SHA, CACHE_MSG_CHANGES.
 * Returns an owned string. */
char *cache_folders_join(const char *const *folders, size_t n);
/* "<name> cache size is N bytes." / "...Kb." / "...Mb." as upstream prints the blob size.
 * Returns an owned string. */
char *cache_size_message(const char *cache_name, uint64_t bytes);

/* ------------------------------------------------------------------ keys */

/* sha256 of a fingerprint script's output, fed as it arrives.  Upstream hashes every byte the
 * script printed (stdout and stderr as they come, including the shell's `set -o verbose` echo
 * of the script lines): feed exactly what the step's log shows. */
struct cache_fingerprint;
struct cache_fingerprint *cache_fingerprint_new(void);
void cache_fingerprint_update(struct cache_fingerprint *f, const void *data, size_t len);
/* "<cache name>-<sha256hex(all bytes fed)>".  Returns an owned string; f stays usable only
 * for cache_fingerprint_free(). */
char *cache_fingerprint_key(struct cache_fingerprint *f, const char *cache_name);
void cache_fingerprint_free(struct cache_fingerprint *f);

/* The key of a cache that has neither fingerprint_key nor fingerprint_script:
 * "<cache name>-<sha256hex(task_name + node_index)>" (CIRRUS_TASK_NAME and CI_NODE_INDEX, the
 * task's id as decimal).  Returns an owned string. */
char *cache_key_default(const char *cache_name, const char *task_name, const char *node_index);

/* All three rules in one call: fingerprint_key verbatim when non-NULL; else, when
 * fingerprint_output is non-NULL (the script ran; len may be 0), the fingerprint key of those
 * bytes; else cache_key_default().  Returns an owned string. */
char *cache_key_compute(const char *cache_name, const char *fingerprint_key,
                        const void *fingerprint_output, size_t fingerprint_output_len,
                        const char *task_name, const char *node_index);

/* The file name of a key's blob: the key itself when it is non-empty and only has
 * [0-9A-Za-z_-], else sha256hex(key).  Returns an owned string. */
char *cache_blob_name(const char *key);

/* ------------------------------------------------------------------ limits */

struct cache_limits {
  uint64_t max_bytes; /* file content in one blob (uncompressed) */
  size_t max_entries; /* archive entries in one blob */
};
#define CACHE_DEFAULT_MAX_BYTES ((uint64_t)64 << 30) /* 64 GiB */
#define CACHE_DEFAULT_MAX_ENTRIES ((size_t)4000000)

/* ------------------------------------------------------------------ the store */

struct cache_store;

/* Open (creating it, mode 0700) the store of the project at project_dir (made absolute
 * against the current directory, not resolved through symlinks, as upstream).  cache_home is
 * the directory that holds "cirrus/" (tests pass a temporary one); NULL means $XDG_CACHE_HOME,
 * else $HOME/.cache, else the passwd entry's home + "/.cache".  A relative $XDG_CACHE_HOME is
 * an error, as in Go's os.UserCacheDir.  Temporary blobs older than an hour (left by killed
 * runs) are removed.  *out is owned by the caller (cache_store_free). */
int cache_store_open(const char *project_dir, const char *cache_home, struct cache_store **out,
                     struct ci_error **err);
void cache_store_free(struct cache_store *s);
static inline void
cache_store_freep(struct cache_store **s)
{
  cache_store_free(*s);
}
#define cleanup_cache_store __attribute__((cleanup(cache_store_freep)))

/* The store directory (borrowed, valid as long as s). */
const char *cache_store_get_dir(const struct cache_store *s);
/* Replace the limits used by every save and restore made through s (NULL: defaults). */
void cache_store_set_limits(struct cache_store *s, const struct cache_limits *lim);
const struct cache_limits *cache_store_get_limits(const struct cache_store *s);

/* Look a key up.  Returns 1 on a hit with *fd (owned, read-only, O_CLOEXEC) open on the
 * complete blob, 0 on a miss (*fd untouched), < 0 on an I/O error.  fd may be NULL to only
 * test for presence.  The blob stays readable through *fd even if a writer replaces it. */
int cache_store_get(struct cache_store *s, const char *key, int *fd, struct ci_error **err);

/* Optimistic restore: the newest (by modification time; ties broken by the greater name)
 * regular blob whose file name starts with "<cache_name>-".  Returns 1 with *key (owned: the
 * blob's file name, which is its key) and *fd (owned, read-only), 0 when there is none, < 0 on
 * an I/O error.  Upstream sorts the wrong way round and picks the oldest; this picks the newest,
 * as upstream's comment intends.  Like upstream, a cache name with characters outside
 * [0-9A-Za-z_-] never matches (its keys are stored hashed). */
int cache_store_find_latest(struct cache_store *s, const char *cache_name, char **key, int *fd,
                            struct ci_error **err);

/* Remove temporary blobs (".temporary-blob-*") last modified more than older_than seconds
 * ago.  A live writer keeps touching its file, so an hour is a safe age.  Returns the number
 * removed, or < 0 on an I/O error. */
int cache_store_prune_temporary(struct cache_store *s, time_t older_than, struct ci_error **err);

/* ------------------------------------------------------------------ folders */

/* Where a cache's folders are and what their archive is relative to (upstream's rules):
 * each folder is made absolute against the working directory and cleaned; a single folder
 * without '*' is its own base folder (it may be anywhere, e.g. $HOME/.npm); with several
 * folders or a glob, the base folder is the working directory and every folder must be below
 * it ("the working directory itself" is not below it), else the upstream error
 * "When using globs or multiple cache folders, all folders should be relative to the current
 * working directory, yet, folder '<f>' points above the current working directory '<w>/'".
 * (Upstream checks that only with several folders; a lone glob outside the working directory
 * would produce an unusable archive there, so it is refused too.) */
struct cache_plan {
  char *base;             /* owned: absolute, clean */
  struct ci_strv folders; /* owned: absolute, clean; may hold glob patterns */
  bool has_globs;
};
#define CACHE_PLAN_INIT                                                                            \
  {                                                                                                \
    NULL, CI_STRV_INIT, false                                                                      \
  }

/* Fill *p from folders (at least one; env-expanded, "~/" already "$HOME/") and working_dir
 * (absolute).  On failure *p is left empty (release is still safe). */
int cache_plan_init(struct cache_plan *p, const char *const *folders, size_t nfolders,
                    const char *working_dir, struct ci_error **err);
void cache_plan_release(struct cache_plan *p);

/* The folders to archive: each non-glob folder as is; each glob replaced by the listed paths
 * it matches (files and directories, as upstream's doublestar.Glob); then sorted and
 * deduplicated, dropping paths below another one kept (upstream's DeduplicatePaths).  listing
 * holds the paths below the working directory (relative to it, as `find .` prints them,
 * "./" prefixes allowed), n of them; it may be NULL when the plan has no globs.  out gets
 * owned absolute paths (appended).  Fails only on an invalid glob. */
int cache_plan_expand(const struct cache_plan *p, const char *working_dir,
                      const struct artifacts_path *listing, size_t n, struct ci_strv *out,
                      struct ci_error **err);

/* ------------------------------------------------------------------ digests */

/* What "the content of a cache" means for change detection: one record per regular file and
 * symbolic link below the base folder (directories, owners and times do not count), keyed by
 * its path relative to the base folder and made of its type, permission bits and the sha256
 * of its content (of its target, for a symlink; a hard link counts as the file it links to).
 * The sha is sha256 over the records sorted by path, so it does not depend on entry order;
 * with no records it is sha256 of nothing.  Upstream compares a sha over file contents only
 * (in walk order); this one also sees renames and mode changes.  Upstream hashes the restored
 * folders after extraction (so files that were there before count too); cache_restore()
 * hashes the blob, which is the same thing unless the folders already held other files
 * (struct cache_hasher digests the folders themselves). */
struct cache_digest_entry {
  char *path;            /* owned, relative to the base folder */
  char type;             /* 'f' file, 'l' symlink, 'h' hard link to a path not in the set */
  unsigned mode;         /* permission bits (07777) */
  unsigned char sum[32]; /* sha256 of the content, or of the link target */
};
struct cache_digest {
  struct cache_digest_entry *v; /* owned, sorted by path once final */
  size_t n, alloc;
  char sha[65]; /* hex, valid once final ("" before) */
};
#define CACHE_DIGEST_INIT                                                                          \
  {                                                                                                \
    NULL, 0, 0, ""                                                                                 \
  }
void cache_digest_init(struct cache_digest *d);
void cache_digest_release(struct cache_digest *d);
/* Move the contents of *from into *to (released first); *from is left empty. */
void cache_digest_move(struct cache_digest *to, struct cache_digest *from);

enum cache_change { CACHE_CREATED, CACHE_MODIFIED, CACHE_DELETED };
/* "created", "modified", "deleted" (upstream's words). */
const char *cache_change_str(enum cache_change c);
typedef void (*cache_diff_cb)(void *data, enum cache_change kind, const char *path);
/* Call cb for every path that differs between two final digests, in path order. */
void cache_digest_diff(const struct cache_digest *older, const struct cache_digest *newer,
                       cache_diff_cb cb, void *data);

/* ------------------------------------------------------------------ hashing only */

/* The digest of folders taken from the container, without writing a blob:
 *   new -> add_tar (once per folder, as for cache_save_add_tar) -> finish -> free.
 * Upstream hashes the cache folders right after restoring them, so files that were already
 * there count too; to match it exactly, take the folders' tars after the restore and digest
 * them here instead of keeping cache_restore()'s digest of the blob.  The rules for names and
 * the limits are cache_save_add_tar()'s. */
struct cache_hasher;
int cache_hasher_new(struct cache_store *s, const char *base, struct cache_hasher **out,
                     struct ci_error **err);
int cache_hasher_add_tar(struct cache_hasher *h, int tar_fd, const char *tar_root,
                         const char *folder, struct ci_error **err);
/* As cache_save_is_empty(). */
bool cache_hasher_is_empty(const struct cache_hasher *h);
/* Make the digest final into *out (released first).  Fails when an add_tar failed. */
int cache_hasher_finish(struct cache_hasher *h, struct cache_digest *out, struct ci_error **err);
void cache_hasher_free(struct cache_hasher *h);
static inline void
cache_hasher_freep(struct cache_hasher **h)
{
  cache_hasher_free(*h);
}
#define cleanup_cache_hasher __attribute__((cleanup(cache_hasher_freep)))

/* ------------------------------------------------------------------ restore */

/* Turn the blob open at blob_fd (read from its current offset; not closed) into an
 * uncompressed tar written to out_fd (not closed), with entry names relative to the container
 * directory put_at, which must be base or one of its ancestors ("/" for PUT ...?path=/).  The
 * tar holds the base folder's entries re-rooted under base; hard links are rewritten to
 * match.  digest (may be NULL) receives the final digest of the blob's content (released
 * first).  Fails on a corrupt blob, a name with "..", or a blob over s's limits; out_fd then
 * holds a partial tar the caller discards. */
int cache_restore(struct cache_store *s, int blob_fd, const char *base, const char *put_at,
                  int out_fd, struct cache_digest *digest, struct ci_error **err);

/* ------------------------------------------------------------------ save */

/* Building one blob from the tars of a cache's folders:
 *   begin -> add_tar (once per folder that exists) -> finish -> [commit] -> free.
 * The blob is written to a temporary file in the store as the tars stream in; commit renames
 * it to the key's blob name; free without commit removes it. */
struct cache_save;

/* Start a blob for key whose entries will be relative to base (the plan's base folder).
 * *out is owned by the caller (cache_save_free). */
int cache_save_begin(struct cache_store *s, const char *key, const char *base,
                     struct cache_save **out, struct ci_error **err);
/* Append the entries of the tar read from tar_fd (plain or gzip-compressed; read to its end,
 * not closed), taken from the container at folder.  Entry names are relative to the container
 * directory tar_root (dirname(folder) for Docker's archive API).  Every entry must lie at or
 * below base: names with "..", absolute names and entries outside base are refused.  Kept:
 * directories, regular files, symlinks (an absolute target inside base is made relative, as
 * upstream does), hard links (their targets rewritten); sockets, devices and FIFOs are
 * skipped.  Owners, modes and times are kept.  On failure the save is unusable (free it). */
int cache_save_add_tar(struct cache_save *w, int tar_fd, const char *tar_root, const char *folder,
                       struct ci_error **err);
/* Complete the archive and the digest.  After it, cache_save_get_digest() and
 * cache_save_is_empty() are valid. */
int cache_save_finish(struct cache_save *w, struct ci_error **err);
/* The final digest (borrowed, valid until free). */
const struct cache_digest *cache_save_get_digest(const struct cache_save *w);
/* True when no tar had anything but the folders' own directory entries (upstream: every
 * folder missing or an empty directory). */
bool cache_save_is_empty(const struct cache_save *w);
/* Size of the compressed blob in bytes (valid after finish). */
uint64_t cache_save_get_size(const struct cache_save *w);
/* fsync the blob and rename it over the key's blob name, atomically.  Requires finish. */
int cache_save_commit(struct cache_save *w, struct ci_error **err);
/* Free the save; an uncommitted temporary blob is removed. */
void cache_save_free(struct cache_save *w);
static inline void
cache_save_freep(struct cache_save **w)
{
  cache_save_free(*w);
}
#define cleanup_cache_save __attribute__((cleanup(cache_save_freep)))

#endif
