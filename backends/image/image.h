/* backends/image/image.h - the OCI image store and its image sources (module ci_image).
 *
 * What it is for: the built-in rootless runtime needs, for an image reference, the ordered list
 * of extracted layer directories (overlay lowerdirs) and the image config (Env, WorkingDir, User,
 * Entrypoint, Cmd).  This module pulls images from registries (registry v2 protocol), OCI image
 * layouts and `docker save` archives into a content-addressed store on disk, and hands those out.
 *
 * Everything here is SYNCHRONOUS and blocking (libcurl easy handles, plain file I/O).  Call it
 * from the runtime helper process or a command, never from the runner's libuv loop thread.  One
 * struct img_store may be used by one thread at a time; several processes may share one store
 * directory at the same time (see "Concurrency" below).
 *
 * The caller's steps:
 *
 *   cleanup_free char *dir = NULL;
 *   struct img_store *store = NULL;
 *   struct img_image *img = NULL;
 *   struct img_pull_opts po = IMG_PULL_OPTS_INIT;
 *   po.on_progress = show_progress;          // optional
 *   po.cancel = &got_sigint;                 // optional: set to non-zero to cancel
 *   if (img_store_default_dir(&dir, err) < 0 ||
 *       img_store_open(dir, NULL, &store, err) < 0 ||
 *       img_pull(store, "busybox", &po, &img, err) < 0)
 *     ...;                                   // *err says what failed
 *   // img->layers.v[0] is the bottom layer: lowerdir=<layers.v[n-1]>:...:<layers.v[0]>
 *   // img->config.env, .working_dir, .user, .entrypoint, .cmd describe the process.
 *   img_image_free(img);                     // releases the layers' use locks
 *   img_store_free(store);
 *
 * Image references (img_ref_parse), named like containers-image transports:
 *   busybox, docker://busybox       -> docker.io/library/busybox:latest (registry v2 protocol)
 *   127.0.0.1:5000/cirrus-test/busybox:latest, quay.io/x/y@sha256:<hex>, name:tag@sha256:<hex>
 *   oci:DIR[:TAG]                   -> OCI image layout (index.json; TAG matches the annotation
 *                                      org.opencontainers.image.ref.name; without TAG the layout
 *                                      must hold exactly one image).  DIR cannot contain ':'.
 *   docker-archive:FILE[:NAME:TAG]  -> what `docker save` / `podman save` write (manifest.json
 *                                      and layer tars, plain or compressed).  Without NAME:TAG the
 *                                      archive must hold exactly one image.
 *
 * Registries (docker://): HTTPS with certificate verification.  Loopback registries (localhost,
 * 127.0.0.0/8, ::1) and registries marked insecure in registries.conf are tried over HTTPS
 * without verification first and over plain HTTP when they do not speak TLS, as Docker does.
 * Bearer-token (WWW-Authenticate: Bearer realm/service/scope) and Basic auth are supported; the
 * credentials come from an auth file (see img_pull_opts.auth_file).  Manifest lists and OCI
 * indexes are resolved for the host's platform (or img_pull_opts.platform).  Docker schema 2 and
 * OCI manifests are accepted; schema 1 is refused.  Every manifest, config and layer is verified
 * against its sha256 digest, and every layer's uncompressed content against the config's
 * rootfs.diff_ids.  Layer compressions: gzip, zstd, bzip2, xz and uncompressed tar.
 *
 * registries.conf (the subset of containers-registries.conf(5) accepted; everything else in the
 * file, including other tables and keys, is ignored so the system file can be shared):
 *
 *   [[registry]]
 *   prefix = "docker.io"            # optional; the reference prefix this entry applies to;
 *                                   # defaults to location.  Longest matching prefix wins.
 *   location = "registry.local:5000"# where to pull from (may carry a path: "host/ns")
 *   insecure = true                 # HTTPS without verification, then plain HTTP
 *   blocked = true                  # refuse to pull from this prefix
 *   [[registry.mirror]]             # tried in order before location; the first that serves
 *   location = "mirror.local:5000"  # the manifest is used for the whole image
 *   insecure = true
 *
 *   [registries.insecure]           # version 1 format: hosts treated as insecure
 *   registries = ["a.local:5000"]
 *   [registries.block]              # version 1 format: hosts refused
 *   registries = ["b.local"]
 *
 * Values are TOML basic strings ("..." with \" and \\ escapes), literal strings ('...'),
 * true/false and arrays of strings; '#' starts a comment.  unqualified-search-registries is
 * ignored: a short name always means docker.io, as with Docker.
 *
 * Store layout under the root directory (the store owns these names and nothing else there):
 *   store.json                 {"version":1,"opaque_xattr":"user"|"trusted"|"both"}
 *   store.lock                 flock: LOCK_SH while a pull/lookup runs, LOCK_EX by prune
 *   index.lock, index.json     the names (tags) -> image id table; rewritten atomically
 *   images/<hex>.json          one record per image: manifest, config digest, layers, sizes
 *   blobs/sha256/<hex>         manifests and configs (verified); layer blobs only transiently
 *   blobs/partial/<hex>        interrupted downloads, resumed with Range and re-verified
 *   layers/<diffid-hex>/diff   an extracted layer (the overlay lowerdir), shared by all images
 *   layers/<diffid-hex>/meta.json
 *   locks/<hex>.lock           per-layer lock: LOCK_EX while extracting, LOCK_SH while in use
 *   staging/                   extractions in progress, renamed into layers/ when complete
 *   build-cache/, runs/, volumes/  not this module's: the builder's layer cache and the
 *                              built-in runtime's containers and volumes
 * The image id is the config digest (as with Docker and Podman).
 *
 * Concurrency: files are written under a temporary name and renamed; index.json changes under
 * index.lock; a layer is extracted once, under its lock, by whichever process gets there first
 * (the others wait, then reuse it).  A struct img_image holds a shared lock on each of its
 * layers until img_image_free(), so img_store_prune() never removes a layer a running task uses.
 *
 * Layer extraction and security (the layer tar is hostile until proven otherwise):
 *   - every path is resolved below the layer directory with openat2(RESOLVE_BENEATH |
 *     RESOLVE_NO_MAGICLINKS) relative to directory fds (without openat2, a component walk
 *     with O_NOFOLLOW that refuses symlinks in parent paths); nothing is written by path string.
 *   - REFUSED (the whole layer fails, its partial directory is removed, nothing is kept):
 *     absolute paths, `..` components, entries whose parent path leads out of the layer
 *     through a symlink (including a symlink then a write through it), hardlinks whose target
 *     is absolute, has `..`, leads out through a symlink or does not exist in the layer,
 *     invalid whiteout names, and layers whose content does not match the diff id.
 *   - NEUTRALISED (the entry is kept in a harmless form and logged at debug level):
 *     setuid/setgid bits are cleared on files (setgid is kept on directories, where it only
 *     selects the group of new files); character and block devices and sockets are skipped
 *     (a task that needs /dev nodes gets them from the runtime); extended attributes other than
 *     user.* are dropped, and user.overlay.* is always dropped (a layer cannot forge overlay
 *     metadata); file ownership is kept only when the store runs as root.
 *   - Symlinks are created with their target as written (they are resolved inside the
 *     container's root, never during extraction).  FIFOs are created.  The layer root's own
 *     entry ("./") is ignored.
 *   - OCI whiteouts: `.wh.NAME` becomes the overlay whiteout NAME (a 0:0 character device,
 *     which mknod allows unprivileged), unless NAME is present in the same layer (OCI: a
 *     whiteout only hides lower layers); `.wh..wh..opq` marks its directory opaque with the
 *     xattr chosen by img_store_opts.opaque_xattr; other `.wh..wh.*` names are ignored.
 */
#ifndef CI_IMAGE_H
#define CI_IMAGE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

/* ---------------------------------------------------------------- references */

enum img_transport {
  IMG_TRANSPORT_DOCKER = 1,    /* docker://[DOMAIN/]PATH[:TAG][@DIGEST] or a plain reference */
  IMG_TRANSPORT_OCI,           /* oci:DIR[:TAG] */
  IMG_TRANSPORT_DOCKER_ARCHIVE /* docker-archive:FILE[:NAME:TAG] */
};

/* A parsed image reference.  All strings are owned; fields that do not apply are NULL. */
struct img_ref {
  enum img_transport transport;
  /* docker: */
  char *domain; /* "docker.io", "127.0.0.1:5000" */
  char *path;   /* "library/busybox", "cirrus-test/busybox" */
  char *tag;    /* "latest" when neither tag nor digest was given; NULL with only a digest */
  char *digest; /* "sha256:<64 hex>" or NULL */
  /* oci: and docker-archive: */
  char *file;    /* DIR or FILE, made absolute */
  char *subname; /* TAG (oci:) or NAME:TAG (docker-archive:), NULL if none */
  /* all: */
  char *canonical; /* the name stored in the index: "docker.io/library/busybox:latest",
                      "host/p@sha256:...", "oci:/abs/dir:tag", "docker-archive:/abs/f.tar" */
};

/* Parse s into *out (caller memory, released with img_ref_release).  Docker rules: the first
 * component is a registry when it contains '.' or ':' or is "localhost"; otherwise the registry
 * is docker.io and a one-component path gets "library/"; index.docker.io means docker.io;
 * names must be lower case.  Relative oci:/docker-archive: paths are made absolute against the
 * current directory.  On failure *out is untouched and *err says why (CI_EUSAGE). */
int img_ref_parse(const char *s, struct img_ref *out, struct ci_error **err);
void img_ref_release(struct img_ref *r);

/* ---------------------------------------------------------------- images */

/* The parts of the image config a runtime needs (OCI image-spec config.config). */
struct img_config {
  struct ci_strv env;        /* "KEY=VALUE" in image order (may be empty; no PATH is invented) */
  char *working_dir;         /* owned; NULL when unset */
  char *user;                /* owned; NULL when unset ("uid", "name", "uid:gid", ...) */
  struct ci_strv entrypoint; /* empty when unset */
  struct ci_strv cmd;        /* empty when unset */
  char *os;                  /* owned; "linux" */
  char *architecture;        /* owned; "amd64", "arm64", ... */
  char *variant;             /* owned; NULL when unset */
};

/* An image in the store, as handed out by img_pull() and img_lookup().  Holding it keeps a
 * shared lock on each layer (img_store_prune() skips them); img_image_free() releases them.
 * Do not use it after its store is freed. */
struct img_image {
  char *name;              /* owned; the canonical reference it was found under */
  char *id;                /* owned; "sha256:<config digest hex>" */
  char *manifest_digest;   /* owned; NULL for docker-archive images (they carry no manifest) */
  struct ci_strv diff_ids; /* "sha256:..." per layer, bottom first */
  struct ci_strv layers;   /* absolute layer directories, bottom first (lowerdir is top first) */
  uint64_t size;           /* bytes of file content in all layers */
  struct img_config config;
  int *lock_fds; /* owned; one per layer */
  size_t n_lock_fds;
};
void img_image_free(struct img_image *img);
#define cleanup_img_image __attribute__((cleanup(img_image_freep)))
void img_image_freep(struct img_image **img);

/* ---------------------------------------------------------------- the store */

/* Which xattr marks an opaque directory (`.wh..wh..opq`).  The runtime mounts overlay with
 * `userxattr` inside a user namespace, where the kernel reads only user.overlay.*: use USER
 * (the default, and the only choice without CAP_SYS_ADMIN).  A root runtime that mounts
 * overlay WITHOUT userxattr reads trusted.overlay.*: use TRUSTED, or BOTH to serve either kind
 * of mount from one store.  The choice is recorded in store.json when the store is created;
 * opening it later with another choice fails (CI_ECONFIG) instead of mixing layer formats. */
enum img_opaque_xattr {
  IMG_OPAQUE_DEFAULT = 0, /* USER, or what store.json says for an existing store */
  IMG_OPAQUE_USER,        /* user.overlay.opaque=y */
  IMG_OPAQUE_TRUSTED,     /* trusted.overlay.opaque=y (needs root) */
  IMG_OPAQUE_BOTH,        /* both (needs root) */
};

struct img_store_opts {
  enum img_opaque_xattr opaque_xattr;
  /* Root stores only: added to every entry's uid and gid at extraction, so that a runtime whose
   * user namespace maps 0..65535 to id_shift.. sees the image's owners (ids >= 65536, which
   * such a namespace cannot map, become id_shift + 65534, "nobody").  Layer roots are owned by
   * id_shift too.  0 = no shift.  Recorded in store.json like opaque_xattr: opening a store
   * with another shift fails (CI_ECONFIG).  The built-in runtime uses rt_root_id_base(). */
  uint32_t id_shift;
};

struct img_store;

/* The default store root for this user, as a new string in *out: /var/lib/cirrus for root,
 * else $XDG_DATA_HOME/cirrus when XDG_DATA_HOME is an absolute path, else
 * $HOME/.local/share/cirrus (HOME from the password database when unset).  Creates nothing. */
int img_store_default_dir(char **out, struct ci_error **err);

/* Open the store at root (an absolute path), creating it and its missing parents.  Store
 * directories are made 0755 (staging/ and blobs/partial/ 0700) so that a runtime whose user
 * namespace maps root to a subordinate id can still look up the layer directories; put the
 * store below a private directory if its images must not be readable by other users.  Layer
 * paths are root + "/layers/<64 hex>/diff": when root contains ':' or ',' an overlay
 * "lowerdir=" option must escape them (or use fsconfig's "lowerdir+").  opts may be NULL.
 * On success *out is a new store for img_store_free(); nothing is locked between calls. */
int img_store_open(const char *root, const struct img_store_opts *opts, struct img_store **out,
                   struct ci_error **err);
void img_store_free(struct img_store *s);
#define cleanup_img_store __attribute__((cleanup(img_store_freep)))
void img_store_freep(struct img_store **s);
/* Borrowed: the store's root directory. */
const char *img_store_get_root(const struct img_store *s);

/* ---------------------------------------------------------------- pulling */

enum img_pull_policy {
  IMG_PULL_MISSING = 0, /* use the stored image of that name if any, else pull (default) */
  IMG_PULL_ALWAYS,      /* always ask the source (layers already stored are not re-fetched) */
  IMG_PULL_NEVER,       /* only the store: img_pull behaves like img_lookup */
};

enum img_progress_phase {
  IMG_PROGRESS_RESOLVE,    /* fetching manifests and the config; digest = the reference */
  IMG_PROGRESS_WAIT,       /* waiting for another process that is fetching this layer */
  IMG_PROGRESS_DOWNLOAD,   /* layer bytes downloaded (done/total of the compressed blob) */
  IMG_PROGRESS_EXTRACT,    /* layer bytes extracted (done/total of the compressed blob) */
  IMG_PROGRESS_LAYER_DONE, /* the layer is in the store; reused = it already was */
  IMG_PROGRESS_DONE,       /* the image is in the store */
};

struct img_progress {
  enum img_progress_phase phase;
  const char *digest; /* borrowed: the layer's blob digest, or its diff id for archives */
  unsigned index;     /* layer index, bottom = 0 */
  unsigned count;     /* number of layers (0 while resolving) */
  uint64_t done;      /* bytes */
  uint64_t total;     /* bytes; 0 when unknown */
  bool reused;        /* LAYER_DONE only */
};
/* Called on the pulling thread, possibly many times per layer: keep it cheap (throttle the
 * display yourself).  The struct and its strings are valid during the call only. */
typedef void (*img_progress_cb)(const struct img_progress *p, void *data);

struct img_pull_stats {
  unsigned layers_extracted; /* by this call */
  unsigned layers_reused;    /* already in the store (or extracted by another process) */
  uint64_t bytes_downloaded; /* network bytes received for blobs by this call */
};

struct img_pull_opts {
  enum img_pull_policy policy;
  /* "os/arch[/variant]"; NULL = the host's (linux/amd64, linux/arm64/v8, ...). */
  const char *platform;
  img_progress_cb on_progress; /* may be NULL */
  void *progress_data;
  /* Checked between chunks of every download and extraction, and while waiting for locks:
   * when *cancel != 0 the pull stops with CI_ECANCELED, leaving resumable partial downloads
   * and no half-extracted layer.  Set it from a signal handler.  May be NULL. */
  const volatile sig_atomic_t *cancel;
  /* registries.conf to read; NULL = $CIRRUS_REGISTRIES_CONF, else
   * $XDG_CONFIG_HOME/containers/registries.conf (~/.config/... when unset) for non-root users,
   * else /etc/containers/registries.conf.  A missing file is not an error. */
  const char *registries_conf;
  /* Credentials ({"auths":{"host":{"auth":"base64(user:password)"}}}); NULL = $REGISTRY_AUTH_FILE,
   * else $XDG_RUNTIME_DIR/containers/auth.json, else $DOCKER_CONFIG/config.json or
   * ~/.docker/config.json.  Credential helpers are not supported. */
  const char *auth_file;
  const char *user_agent;       /* NULL = "cirrus" */
  struct img_pull_stats *stats; /* filled in when not NULL */
};
#define IMG_PULL_OPTS_INIT ((struct img_pull_opts){0})

/* Make the image named by ref (see img_ref_parse) available in the store and return it in
 * *out (free with img_image_free), holding its layers.  opts may be NULL (IMG_PULL_MISSING, host
 * platform, no progress, no cancel).  Blocking; may take minutes on a slow network.  On failure
 * nothing half-done is visible: the name is not (re)tagged, layers not completely extracted
 * are removed, interrupted downloads are kept under blobs/partial for the next attempt. */
int img_pull(struct img_store *s, const char *ref, const struct img_pull_opts *opts,
             struct img_image **out, struct ci_error **err);

/* Find an image in the store only (no source is contacted): ref is any reference that
 * img_ref_parse accepts, or an image id "sha256:<hex>".  -ENOENT when absent. */
int img_lookup(struct img_store *s, const char *ref, struct img_image **out, struct ci_error **err);

/* ---------------------------------------------------------------- listing and pruning */

struct img_list_entry {
  char *name;            /* owned; canonical reference */
  char *id;              /* owned; config digest */
  char *manifest_digest; /* owned; may be NULL */
  uint64_t size;         /* bytes of file content of its layers */
  int64_t pulled;        /* unix time of the last pull */
};
/* All names in the store, sorted by name.  *out is a new array of *n entries
 * (img_list_free); on failure nothing is returned. */
int img_store_list(struct img_store *s, struct img_list_entry **out, size_t *n,
                   struct ci_error **err);
void img_list_free(struct img_list_entry *v, size_t n);

/* Forget a name (a reference or an image id: then every name of that image).  The data stays
 * until img_store_prune().  -ENOENT when nothing matched. */
int img_store_remove(struct img_store *s, const char *ref, struct ci_error **err);

/* Give the image that src names (a reference or an image id) the name `name` too (a registry
 * reference with a tag, like `docker tag`); an existing name is moved.  -ENOENT when src is
 * not in the store. */
int img_store_tag(struct img_store *s, const char *src, const char *name, struct ci_error **err);

/* Images made here (the Dockerfile builder of backends/build):
 * img_store_add_layer: put the uncompressed layer tar at tar_path (OCI whiteouts as in pulled
 * layers) into the store, if a layer with its content is not there yet; *diff_id is a new
 * "sha256:<hex>" string.  The tar's owners are shifted like a pulled layer's.
 * img_store_add_image: store config (an OCI image config JSON whose rootfs.diff_ids name layers
 * already in the store) and name the image `name` (a registry name with a tag, as for
 * img_store_tag); *out is the image, holding its layers.  The image id is the config digest, so
 * the same config gives the same image. */
int img_store_add_layer(struct img_store *s, const char *tar_path, char **diff_id,
                        struct ci_error **err);
int img_store_add_image(struct img_store *s, const char *name, const char *config, size_t len,
                        struct img_image **out, struct ci_error **err);

struct img_prune_stats {
  unsigned images; /* image records removed */
  unsigned layers; /* layer directories removed */
  unsigned blobs;  /* blobs and partial downloads removed */
  unsigned busy;   /* unreferenced layers skipped because a process still uses them */
  uint64_t bytes;  /* approximate bytes freed */
};
/* Remove everything no name references: image records, manifests, configs, layers, partial
 * downloads and leftovers of crashed pulls.  Waits until running pulls finish (and blocks new
 * ones meanwhile); layers held by a live struct img_image are skipped and counted as busy.
 * st may be NULL. */
int img_store_prune(struct img_store *s, struct img_prune_stats *st, struct ci_error **err);

#endif
