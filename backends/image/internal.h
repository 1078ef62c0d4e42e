/* backends/image/internal.h - cross-file internals of ci_image.  Never included from outside
 * backends/image/ (tests excepted). */
#ifndef CI_IMAGE_INTERNAL_H
#define CI_IMAGE_INTERNAL_H

#include "image.h"

#include <jansson.h>
#include <sys/types.h>

#include "common/log.h"

/* ci_error_prefix() insists on an error being there; callers of the public API may pass
 * err == NULL, in which case only the code travels up. */
#define IMG__PREFIX(err, ret, ...) (((err) && *(err)) ? ci_error_prefix((err), __VA_ARGS__) : (ret))

#define IMG__MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define IMG__MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define IMG__MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define IMG__MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define IMG__MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define IMG__MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define IMG__MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define IMG__MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

#define IMG__MAX_MANIFEST ((size_t)4 << 20) /* containers/image uses the same limit */
#define IMG__MAX_CONFIG ((size_t)8 << 20)
#define IMG__MAX_INDEX ((size_t)16 << 20) /* oci index.json, docker-archive manifest.json */

/* ------------------------------------------------------------ digest.c */

#define IMG__DIGEST_LEN 71 /* "sha256:" + 64 hex */

/* True when d is "sha256:" followed by 64 lower-case hex digits (the only algorithm we accept:
 * digests name files, so anything else is refused before it reaches a path). */
bool img__digest_valid(const char *d);
/* The hex part of a valid digest (borrowed, points into d). */
static inline const char *
img__digest_hex(const char *d)
{
  return d + 7;
}

struct img__hash {
  void *ctx; /* EVP_MD_CTX, owned */
};
void img__hash_init(struct img__hash *h);
void img__hash_update(struct img__hash *h, const void *p, size_t n);
/* Write "sha256:<hex>" into out and reset h for a new computation. */
void img__hash_final(struct img__hash *h, char out[IMG__DIGEST_LEN + 1]);
void img__hash_release(struct img__hash *h);
void img__digest_bytes(const void *p, size_t n, char out[IMG__DIGEST_LEN + 1]);
/* Verify that data has digest want; the error names what. */
int img__verify_bytes(const void *p, size_t n, const char *want, const char *what,
                      struct ci_error **err);

/* ------------------------------------------------------------ fs.c */

/* mkdir -p with mode for the directories it creates. */
int img__mkdirs(const char *path, mode_t mode, struct ci_error **err);
/* Remove name below dfd recursively without following symlinks, making directories writable
 * first (overlay work dirs and 0555 layer dirs).  A missing name is success. */
int img__rm_rf_at(int dfd, const char *name, struct ci_error **err);
int img__rm_rf(const char *path, struct ci_error **err);
/* Write data to path atomically: path.tmp-XXXXXX, fsync, rename. */
int img__write_atomic(const char *path, const void *data, size_t len, struct ci_error **err);
/* Open (creating) the lock file path and flock it with op (LOCK_SH or LOCK_EX, optionally
 * | LOCK_NB).  Waits while polling cancel every 50 ms; re-opens when the file was unlinked
 * meanwhile (prune deletes lock files while holding them).  *fd gets the locked descriptor.
 * With LOCK_NB, -EWOULDBLOCK is returned without setting *err. */
int img__lock(const char *path, int op, const volatile sig_atomic_t *cancel, int *fd,
              struct ci_error **err);

/* ------------------------------------------------------------ json.c */

/* Parse a JSON document (at most len bytes); the error names what. */
int img__json_parse(const char *buf, size_t len, const char *what, json_t **out,
                    struct ci_error **err);
/* Borrowed string value of key, NULL when missing or not a string. */
const char *img__json_str(const json_t *obj, const char *key);
/* Append the strings of a JSON array (NULL or null: nothing) to out; -EINVAL (with err) when it
 * is not an array of strings. */
int img__json_strv(const json_t *arr, const char *what, struct ci_strv *out, struct ci_error **err);
/* Serialise and write atomically. */
int img__json_write(const char *path, const json_t *j, struct ci_error **err);
/* Read and parse a JSON file of at most max bytes. */
int img__json_read(const char *path, size_t max, json_t **out, struct ci_error **err);

/* ------------------------------------------------------------ manifest.c */

/* An OCI content descriptor (or a docker-archive member). */
struct img__desc {
  char *media_type;          /* owned; may be NULL */
  char *digest;              /* owned; valid digest or NULL (docker-archive members) */
  int64_t size;              /* -1 when unknown */
  char *os, *arch, *variant; /* owned; platform of index entries, else NULL */
  char *ref_name;            /* owned; org.opencontainers.image.ref.name annotation */
  char *path;                /* owned; docker-archive member name */
  bool attestation;          /* an index entry that is not an image (buildkit attestations) */
};
void img__desc_release(struct img__desc *d);

enum img__kind {
  IMG__KIND_MANIFEST = 1, /* an image manifest: config + layers */
  IMG__KIND_INDEX,        /* a manifest list / image index: manifests */
};

struct img__manifest {
  enum img__kind kind;
  char *media_type; /* owned */
  struct img__desc config;
  struct img__desc *layers; /* owned array */
  size_t n_layers;
  struct img__desc *manifests; /* owned array */
  size_t n_manifests;
};
/* Parse a manifest or index.  content_type (from HTTP, or NULL) is used when the document has
 * no mediaType.  Schema 1 and unknown documents are refused.  *m must be zeroed. */
int img__manifest_parse(const char *buf, size_t len, const char *content_type,
                        struct img__manifest *m, struct ci_error **err);
void img__manifest_release(struct img__manifest *m);
/* Parse an OCI image layout index.json (an index whose entries may be manifests or indexes). */
int img__index_parse(const char *buf, size_t len, struct img__manifest *m, struct ci_error **err);

struct img__platform {
  char os[32];
  char arch[32];
  char variant[16];
};
/* "os/arch[/variant]"; CI_EUSAGE on anything else. */
int img__platform_parse(const char *s, struct img__platform *p, struct ci_error **err);
/* The host's platform in OCI terms (linux/amd64, linux/arm64/v8, linux/arm/v7, ...). */
void img__platform_host(struct img__platform *p);
/* Format as "os/arch[/variant]". */
void img__platform_format(const char *os, const char *arch, const char *variant, char *out,
                          size_t n);
/* Pick the entry of index idx that best fits want: same os and architecture; the exact
 * variant first, then the closest lower compatible arm variant, then an entry without variant
 * (arm64: "" and "v8" are the same).  Attestations are never picked.  *out borrows from idx. */
int img__index_select(const struct img__manifest *idx, const struct img__platform *want,
                      const struct img__desc **out, struct ci_error **err);
/* Parse an image config into *cfg (zeroed by the caller) and its rootfs.diff_ids. */
int img__config_parse(const char *buf, size_t len, struct img_config *cfg, struct ci_strv *diff_ids,
                      struct ci_error **err);
void img__config_release(struct img_config *c);

/* ------------------------------------------------------------ extract.c */

/* Read up to n bytes into buf: > 0 bytes read, 0 at the end, < 0 failure (with *err). */
typedef ssize_t (*img__read_fn)(void *ctx, void *buf, size_t n, struct ci_error **err);

struct img__extract_opts {
  enum img_opaque_xattr opaque; /* USER, TRUSTED or BOTH */
  bool preserve_owner;          /* chown to the tar's uid/gid (root only) */
  const volatile sig_atomic_t *cancel;
  uint32_t id_shift; /* added to owners when preserve_owner (see img_store_opts) */
};

struct img__extract_result {
  char diff_id[IMG__DIGEST_LEN + 1]; /* sha256 of the uncompressed tar stream */
  uint64_t bytes;                    /* file content bytes written */
  uint64_t entries;                  /* archive entries seen */
};

/* Extract the layer read through rd (tar, optionally gzip/zstd/bzip2/xz compressed) into the
 * directory dirfd, which must be empty and private to the caller.  See image.h for what is
 * refused and what is neutralised.  On failure the directory holds a partial tree the caller
 * must remove. */
int img__extract(int dirfd, img__read_fn rd, void *rctx, const struct img__extract_opts *o,
                 struct img__extract_result *res, struct ci_error **err);
#ifdef CI_UNIT_TEST
extern bool img__test_no_openat2; /* force the component-walk fallback */
#endif

/* ------------------------------------------------------------ store.c */

struct img_store {
  char *root;                   /* owned, absolute */
  enum img_opaque_xattr opaque; /* never DEFAULT */
  bool preserve_owner;          /* euid == 0 */
  uint32_t id_shift;            /* see img_store_opts; recorded in store.json */
};
/* root/<fmt...>, a new string. */
char *img__store_path(const struct img_store *s, const char *fmt, ...) CI_PRINTF(2, 3);

/* The index: names -> image ids. */
struct img__index_entry {
  char *name;
  char *id;
  char *manifest;
  int64_t pulled;
};
struct img__index {
  struct img__index_entry *v;
  size_t n, alloc;
};
void img__index_release(struct img__index *ix);
int img__index_load(struct img_store *s, struct img__index *ix, struct ci_error **err);
int img__index_save(struct img_store *s, const struct img__index *ix, struct ci_error **err);
struct img__index_entry *img__index_find(struct img__index *ix, const char *name);
/* Set name -> id under index.lock (read-modify-write). */
int img__index_set(struct img_store *s, const char *name, const char *id, const char *manifest,
                   struct ci_error **err);

/* ------------------------------------------------------------ pull.c / sources */

/* State shared by the sources during one pull. */
struct img__pull_ctx {
  struct img_store *store;
  struct img_pull_opts opts; /* copy, defaults filled in */
  struct img_pull_stats stats;
  unsigned index, count; /* current layer */
};
void img__progress(struct img__pull_ctx *c, enum img_progress_phase ph, const char *digest,
                   uint64_t done, uint64_t total, bool reused);
static inline bool
img__canceled(const volatile sig_atomic_t *cancel)
{
  return cancel && *cancel;
}
int img__err_canceled(struct ci_error **err);

/* A readable stream of a blob. */
struct img__stream {
  ssize_t (*read)(struct img__stream *st, void *buf, size_t n, struct ci_error **err);
  void (*close)(struct img__stream *st); /* frees st */
  uint64_t total;                        /* bytes; 0 when unknown */
  bool verified;                         /* already checked against its digest by the source */
  char *unlink_after; /* owned; a file the caller removes once the layer is extracted */
};
void img__stream_close(struct img__stream *st);
/* A stream over an open file descriptor (taken). */
struct img__stream *img__stream_fd(int fd, uint64_t total);

/* What a source resolves a reference to: one image manifest. */
struct img__resolved {
  char *manifest; /* owned raw bytes; NULL for docker-archive */
  size_t manifest_len;
  char *manifest_digest;  /* owned; NULL for docker-archive */
  struct img__manifest m; /* kind == IMG__KIND_MANIFEST */
};
void img__resolved_release(struct img__resolved *r);

struct img__source;
struct img__source_ops {
  const char *name;
  /* Resolve to one image manifest for platform want. */
  int (*resolve)(struct img__source *src, const struct img__platform *want,
                 struct img__resolved *out, struct ci_error **err);
  /* Read a small blob (config) into memory, at most max bytes.  Verification is the caller's. */
  int (*read_blob)(struct img__source *src, const struct img__desc *d, size_t max, char **buf,
                   size_t *len, struct ci_error **err);
  /* Open a layer blob. */
  int (*open_blob)(struct img__source *src, const struct img__desc *d, struct img__stream **out,
                   struct ci_error **err);
  void (*free)(struct img__source *src);
};
struct img__source {
  const struct img__source_ops *ops;
  struct img__pull_ctx *ctx; /* borrowed */
};

int img__oci_open(const struct img_ref *ref, struct img__pull_ctx *ctx, struct img__source **out,
                  struct ci_error **err);
int img__archive_open(const struct img_ref *ref, struct img__pull_ctx *ctx,
                      struct img__source **out, struct ci_error **err);
int img__registry_open(const struct img_ref *ref, struct img__pull_ctx *ctx,
                       struct img__source **out, struct ci_error **err);

/* ------------------------------------------------------------ regconf.c */

struct img__mirror {
  char *location;
  bool insecure;
};
struct img__regconf_entry {
  char *prefix;
  char *location;
  bool insecure, blocked;
  struct img__mirror *mirrors;
  size_t n_mirrors, alloc_mirrors;
};
struct img__regconf {
  struct img__regconf_entry *v;
  size_t n, alloc;
  struct ci_strv insecure; /* v1 [registries.insecure] */
  struct ci_strv blocked;  /* v1 [registries.block] */
};
/* Parse registries.conf text (see image.h for the accepted subset).  file names the source
 * in errors.  *rc must be zeroed. */
int img__regconf_parse(const char *text, const char *file, struct img__regconf *rc,
                       struct ci_error **err);
/* Load from path; NULL picks the default search described at img_pull_opts.registries_conf.
 * A missing file gives an empty configuration. */
int img__regconf_load(const char *path, struct img__regconf *rc, struct ci_error **err);
void img__regconf_release(struct img__regconf *rc);

/* Where to pull "domain/path" from, in order (mirrors, then the location itself). */
struct img__endpoint {
  char *host;    /* "registry-1.docker.io", "127.0.0.1:5000" */
  char *repo;    /* repository path on that host */
  bool insecure; /* TLS without verification, then plain HTTP */
};
struct img__endpoints {
  struct img__endpoint *v;
  size_t n, alloc;
};
/* Compute the endpoints for domain/path.  -EACCES (with err) when the configuration blocks it.
 * Loopback hosts are always insecure (Docker's rule). */
int img__regconf_endpoints(const struct img__regconf *rc, const char *domain, const char *path,
                           struct img__endpoints *out, struct ci_error **err);
void img__endpoints_release(struct img__endpoints *e);
bool img__host_is_loopback(const char *host);

/* Credentials "user:password" for host from the auth file (see img_pull_opts.auth_file), as a
 * new string in *out, or *out = NULL when there are none.  Errors only for unreadable files. */
int img__auth_lookup(const char *auth_file, const char *host, char **out, struct ci_error **err);

/* Parse a WWW-Authenticate header: *scheme ("bearer", "basic", lower case) and for Bearer
 * *realm, *service, *scope (each NULL when absent).  All new strings. */
int img__parse_challenge(const char *h, char **scheme, char **realm, char **service, char **scope);

#endif
