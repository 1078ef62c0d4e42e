/* cmd/images.c - `cirrus images`: the built-in backend's image store.
 *
 *   cirrus images [ls]            the names in the store, with id, size and age
 *   cirrus images pull REF...     pull (registry, oci:DIR[:TAG], docker-archive:FILE)
 *   cirrus images tag SRC NAME    give an image another name (e.g. one pulled from oci:)
 *   cirrus images rm REF...       forget names (the data stays until prune)
 *   cirrus images prune           remove everything no name references
 */
#include "backends/image/image.h"
#include "backends/rootless.h"
#include "cli.h"
#include "help.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
  interrupted = sig;
}

static void
human_size(uint64_t n, char *buf, size_t len)
{
  const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)n;
  unsigned u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    u++;
  }
  snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void
human_age(int64_t t, char *buf, size_t len)
{
  int64_t d = (int64_t)time(NULL) - t;
  if (t <= 0)
    snprintf(buf, len, "-");
  else if (d < 120)
    snprintf(buf, len, "%lld seconds ago", (long long)(d < 0 ? 0 : d));
  else if (d < 7200)
    snprintf(buf, len, "%lld minutes ago", (long long)(d / 60));
  else if (d < 172800)
    snprintf(buf, len, "%lld hours ago", (long long)(d / 3600));
  else
    snprintf(buf, len, "%lld days ago", (long long)(d / 86400));
}

static int
images_ls(struct img_store *s)
{
  struct img_list_entry *v = NULL;
  size_t n = 0;
  struct ci_error *err = NULL;
  if (img_store_list(s, &v, &n, &err) < 0) {
    cli_report(&err);
    return CLI_EXIT_FAILURE;
  }
  size_t w = 4;
  for (size_t i = 0; i < n; i++)
    if (strlen(v[i].name) > w)
      w = strlen(v[i].name);
  printf("%-*s  %-12s  %-10s  %s\n", (int)w, "NAME", "IMAGE ID", "SIZE", "PULLED");
  for (size_t i = 0; i < n; i++) {
    char size[32], age[32];
    human_size(v[i].size, size, sizeof size);
    human_age(v[i].pulled, age, sizeof age);
    const char *id = v[i].id ? v[i].id : "";
    if (!strncmp(id, "sha256:", 7))
      id += 7;
    printf("%-*s  %-12.12s  %-10s  %s\n", (int)w, v[i].name, id, size, age);
  }
  img_list_free(v, n);
  return CLI_EXIT_OK;
}

static void
show_progress(const struct img_progress *p, void *data)
{
  (void)data;
  if (p->phase == IMG_PROGRESS_LAYER_DONE)
    fprintf(stderr, "  layer %u/%u %.19s: %s\n", p->index + 1, p->count,
            p->digest ? p->digest : "", p->reused ? "already present" : "extracted");
}

static int
images_pull(struct img_store *s, int argc, char **argv)
{
  if (argc < 1) {
    cli_error("images pull: which image? (cirrus images pull REF...)");
    return CLI_EXIT_USAGE;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  for (int i = 0; i < argc; i++) {
    struct img_pull_opts po = IMG_PULL_OPTS_INIT;
    po.policy = IMG_PULL_ALWAYS;
    po.on_progress = show_progress;
    po.cancel = &interrupted;
    struct img_image *img = NULL;
    struct ci_error *err = NULL;
    fprintf(stderr, "Pulling %s\n", argv[i]);
    if (img_pull(s, argv[i], &po, &img, &err) < 0) {
      cli_report(&err);
      return interrupted ? 128 + interrupted : CLI_EXIT_FAILURE;
    }
    printf("%s %s\n", img->name, img->id);
    img_image_free(img);
  }
  return CLI_EXIT_OK;
}

static int
images_tag(struct img_store *s, int argc, char **argv)
{
  if (argc != 2) {
    cli_error("images tag: usage: cirrus images tag SOURCE NAME");
    return CLI_EXIT_USAGE;
  }
  struct ci_error *err = NULL;
  if (img_store_tag(s, argv[0], argv[1], &err) < 0) {
    cli_report(&err);
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

static int
images_rm(struct img_store *s, int argc, char **argv)
{
  if (argc < 1) {
    cli_error("images rm: which image? (cirrus images rm REF...)");
    return CLI_EXIT_USAGE;
  }
  int rc = CLI_EXIT_OK;
  for (int i = 0; i < argc; i++) {
    struct ci_error *err = NULL;
    if (img_store_remove(s, argv[i], &err) < 0) {
      cli_report(&err);
      rc = CLI_EXIT_FAILURE;
    } else {
      printf("Untagged: %s\n", argv[i]);
    }
  }
  return rc;
}

static int
images_prune(struct img_store *s)
{
  struct img_prune_stats st = {0};
  struct ci_error *err = NULL;
  if (img_store_prune(s, &st, &err) < 0) {
    cli_report(&err);
    return CLI_EXIT_FAILURE;
  }
  char size[32];
  human_size(st.bytes, size, sizeof size);
  printf("Removed %u image records, %u layers and %u blobs (%s)", st.images, st.layers,
         st.blobs, size);
  if (st.busy)
    printf("; %u unreferenced layers are still in use by a running task", st.busy);
  printf("\n");
  return CLI_EXIT_OK;
}

int
cli_cmd_images(int argc, char **argv)
{
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      cli_help_command("images", stdout);
      return CLI_EXIT_OK;
    }
    if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose") ||
        !strcmp(argv[i], "--debug")) {
      ci_log_set_level(CI_LOG_DEBUG);
      continue;
    }
    cli_error("images: unknown option '%s' (see `cirrus help images`)", argv[i]);
    return CLI_EXIT_USAGE;
  }
  const char *sub = i < argc ? argv[i++] : "ls";
  int (*fn)(struct img_store *, int, char **) = NULL;
  if (!strcmp(sub, "pull"))
    fn = images_pull;
  else if (!strcmp(sub, "tag"))
    fn = images_tag;
  else if (!strcmp(sub, "rm"))
    fn = images_rm;
  else if (strcmp(sub, "ls") && strcmp(sub, "list") && strcmp(sub, "prune")) {
    cli_error("images: unknown subcommand '%s' (ls, pull, tag, rm, prune)", sub);
    return CLI_EXIT_USAGE;
  }
  struct img_store *s = NULL;
  struct ci_error *err = NULL;
  if (rootless_store_open(&s, NULL, &err) < 0) {
    cli_report(&err);
    return CLI_EXIT_FAILURE;
  }
  int rc;
  if (fn)
    rc = fn(s, argc - i, argv + i);
  else if (!strcmp(sub, "prune"))
    rc = images_prune(s);
  else
    rc = images_ls(s);
  img_store_free(s);
  return rc;
}
