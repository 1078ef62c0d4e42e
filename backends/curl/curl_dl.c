/* backends/curl/curl_dl.c - dlopen() libcurl on first use (see curl_dl.h). */
#include "curl_dl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct curl_dl_funcs curl_dl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_code;       /* 0, or the code of the failure */
static char load_msg[1024]; /* the failure's message */

static const char *
soname(void)
{
#ifdef CI_UNIT_TEST
  const char *s = getenv("CIRRUS_TEST_LIBCURL");
  if (s && *s)
    return s;
#endif
  return CI_LIBCURL_SONAME;
}

static void
load(void)
{
  const char *so = soname();
  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    load_code = -ELIBACC;
    snprintf(load_msg, sizeof(load_msg),
             "cannot load %s (needed to talk to docker/podman and to registries): %s", so,
             dlerror());
    return;
  }
  struct curl_dl_funcs f;
#define X(name)                                                                                    \
  if (!(f.name = (__typeof__(&name))dlsym(h, #name))) {                                            \
    load_code = -ELIBBAD;                                                                          \
    snprintf(load_msg, sizeof(load_msg), "%s has no %s (libcurl 7.88 or later is needed)", so,     \
             #name);                                                                               \
    dlclose(h);                                                                                    \
    return;                                                                                        \
  }
  CURL_DL_FUNCS
#undef X
  CURLcode rc = f.curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    load_code = CI_EFAIL;
    snprintf(load_msg, sizeof(load_msg), "cannot initialise libcurl: %s", f.curl_easy_strerror(rc));
    return; /* a library that ran its initialisers stays loaded */
  }
  curl_dl = f;
}

int
curl_dl_load(struct ci_error **err)
{
  pthread_once(&load_once, load);
  if (load_code < 0)
    return ci_error_make(err, load_code, "%s", load_msg);
  return 0;
}
