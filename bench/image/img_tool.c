/* bench/image/img_tool.c - drive ci_image from the command line: pull, lookup, list, prune.
 * Used by bench/image/pull.sh and by the two-process store test.
 *
 *   img_tool [--id-shift N] STORE pull [--always] [--platform P] [--quiet] REF
 *   img_tool STORE lookup REF | list | prune | rm REF
 *
 * pull prints "layers_extracted=N layers_reused=N bytes=N" and the layer directories. */
#include "backends/image/image.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t canceled;

static void
on_signal(int sig)
{
  (void)sig;
  canceled = 1;
}

static void
on_progress(const struct img_progress *p, void *data)
{
  static const char *const names[] = {"resolve", "wait", "download", "extract", "layer", "done"};
  static struct timespec last;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  bool final = p->phase != IMG_PROGRESS_DOWNLOAD && p->phase != IMG_PROGRESS_EXTRACT;
  if (!final &&
      (now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) < 200000000L)
    return;
  last = now;
  fprintf(stderr, "%s %u/%u %s %llu/%llu%s\n", names[p->phase], p->index + 1, p->count,
          p->digest ? p->digest : "", (unsigned long long)p->done, (unsigned long long)p->total,
          p->reused ? " (reused)" : "");
  (void)data;
}

static int
usage(void)
{
  fprintf(stderr, "usage: img_tool STORE pull [--always] [--platform P] [--quiet] REF\n"
                  "       img_tool STORE lookup REF | list | prune | rm REF\n"
                  "       img_tool STORE add-layer TAR   (prints layer=DIR)\n");
  return 2;
}

int
main(int argc, char **argv)
{
  /* img_tool --id-shift N STORE ...: a root store for the built-in runtime (ids shifted by N). */
  struct img_store_opts so = {IMG_OPAQUE_DEFAULT, 0};
  if (argc > 2 && !strcmp(argv[1], "--id-shift")) {
    so.id_shift = (uint32_t)strtoul(argv[2], NULL, 10);
    argv += 2;
    argc -= 2;
  }
  if (argc < 3)
    return usage();
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  struct ci_error *err = NULL;
  struct img_store *s = NULL;
  if (img_store_open(argv[1], &so, &s, &err) < 0) {
    fprintf(stderr, "error: %s\n", err->msg);
    ci_error_free(&err);
    return 1;
  }
  const char *cmd = argv[2];
  int rc = 0;
  if (!strcmp(cmd, "pull") || !strcmp(cmd, "lookup")) {
    struct img_pull_opts po = IMG_PULL_OPTS_INIT;
    struct img_pull_stats st = {0};
    bool quiet = false;
    const char *ref = NULL;
    for (int i = 3; i < argc; i++) {
      if (!strcmp(argv[i], "--always"))
        po.policy = IMG_PULL_ALWAYS;
      else if (!strcmp(argv[i], "--quiet"))
        quiet = true;
      else if (!strcmp(argv[i], "--platform") && i + 1 < argc)
        po.platform = argv[++i];
      else
        ref = argv[i];
    }
    if (!ref)
      return usage();
    po.cancel = &canceled;
    po.stats = &st;
    if (!quiet)
      po.on_progress = on_progress;
    struct img_image *img = NULL;
    int ret =
        !strcmp(cmd, "pull") ? img_pull(s, ref, &po, &img, &err) : img_lookup(s, ref, &img, &err);
    if (ret < 0) {
      fprintf(stderr, "error: %s\n", err->msg);
      ci_error_free(&err);
      rc = ret == CI_ECANCELED ? 130 : 1;
    } else {
      printf("layers_extracted=%u layers_reused=%u bytes=%llu\n", st.layers_extracted,
             st.layers_reused, (unsigned long long)st.bytes_downloaded);
      printf("name=%s\nid=%s\n", img->name, img->id);
      for (size_t i = 0; i < img->layers.n; i++)
        printf("layer=%s\n", img->layers.v[i]);
      for (size_t i = 0; i < img->config.cmd.n; i++)
        printf("cmd=%s\n", img->config.cmd.v[i]);
      img_image_free(img);
    }
  } else if (!strcmp(cmd, "list")) {
    struct img_list_entry *v = NULL;
    size_t n = 0;
    if (img_store_list(s, &v, &n, &err) < 0) {
      fprintf(stderr, "error: %s\n", err->msg);
      ci_error_free(&err);
      rc = 1;
    }
    for (size_t i = 0; i < n; i++)
      printf("%s %.19s %llu\n", v[i].name, v[i].id, (unsigned long long)v[i].size);
    img_list_free(v, n);
  } else if (!strcmp(cmd, "prune")) {
    struct img_prune_stats st;
    if (img_store_prune(s, &st, &err) < 0) {
      fprintf(stderr, "error: %s\n", err->msg);
      ci_error_free(&err);
      rc = 1;
    } else {
      printf("images=%u layers=%u blobs=%u busy=%u bytes=%llu\n", st.images, st.layers, st.blobs,
             st.busy, (unsigned long long)st.bytes);
    }
  } else if (!strcmp(cmd, "add-layer") && argc > 3) {
    /* A layer made by a test (whiteouts, owners): its directory, as pull prints them. */
    char *diff_id = NULL;
    if (img_store_add_layer(s, argv[3], &diff_id, &err) < 0) {
      fprintf(stderr, "error: %s\n", err->msg);
      ci_error_free(&err);
      rc = 1;
    } else {
      printf("layer=%s/layers/%s/diff\n", img_store_get_root(s), diff_id + 7);
      free(diff_id);
    }
  } else if (!strcmp(cmd, "rm") && argc > 3) {
    if (img_store_remove(s, argv[3], &err) < 0) {
      fprintf(stderr, "error: %s\n", err->msg);
      ci_error_free(&err);
      rc = 1;
    }
  } else {
    rc = usage();
  }
  img_store_free(s);
  return rc;
}
