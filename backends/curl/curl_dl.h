/* backends/curl/curl_dl.h - libcurl, loaded with dlopen() on first use.
 *
 * Linked, libcurl pulls ~25 libraries (gnutls, krb5, ldap, nghttp2, ssh2, ...) into every
 * start of cirrus: ~5 ms and ~450 page faults before main(), even for `cirrus --version` or a
 * run on the built-in backend, which never speaks HTTP.  Only the Docker and Podman clients
 * (engine_http.c) and the registry source (image/registry.c) need it, so they load it here:
 *
 *   if (curl_dl_load(err) < 0)        once per client, before any other curl call
 *     return -1;
 *   CURL *c = curl_dl.curl_easy_init();
 *   curl_dl.curl_easy_setopt(c, CURLOPT_URL, url);
 *
 * Include this header instead of <curl/curl.h>, which it includes for the types and
 * constants: only the functions come through the table.  Calls through it bypass curl's gcc
 * type checks of curl_easy_setopt/getinfo arguments (curl/typecheck-gcc.h wraps the macros of
 * those names, which would also turn `curl_dl.curl_easy_setopt(...)` into a statement
 * expression, so they are disabled here): pass longs as 1L, curl_off_t values as curl_off_t
 * and callbacks of the documented types, as curl's documentation says.
 */
#ifndef CI_CURL_DL_H
#define CI_CURL_DL_H

#include "common/error.h"

#ifdef CURLINC_TYPECHECK_GCC_H
#error "include backends/curl/curl_dl.h instead of <curl/curl.h>"
#endif
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

/* Every libcurl function cirrus calls.  Add one here before calling it. */
#define CURL_DL_FUNCS                                                                              \
  X(curl_global_init)                                                                              \
  X(curl_easy_init)                                                                                \
  X(curl_easy_cleanup)                                                                             \
  X(curl_easy_reset)                                                                               \
  X(curl_easy_setopt)                                                                              \
  X(curl_easy_getinfo)                                                                             \
  X(curl_easy_perform)                                                                             \
  X(curl_easy_pause)                                                                               \
  X(curl_easy_strerror)                                                                            \
  X(curl_easy_escape)                                                                              \
  X(curl_free)                                                                                     \
  X(curl_slist_append)                                                                             \
  X(curl_slist_free_all)                                                                           \
  X(curl_multi_init)                                                                               \
  X(curl_multi_cleanup)                                                                            \
  X(curl_multi_setopt)                                                                             \
  X(curl_multi_add_handle)                                                                         \
  X(curl_multi_remove_handle)                                                                      \
  X(curl_multi_assign)                                                                             \
  X(curl_multi_socket_action)                                                                      \
  X(curl_multi_info_read)                                                                          \
  X(curl_multi_strerror)

/* The functions, filled by curl_dl_load().  Read-only once it has returned 0; use them only
 * after a successful curl_dl_load() on the calling thread (or one that happened before). */
struct curl_dl_funcs {
#define X(f) __typeof__(&f) f;
  CURL_DL_FUNCS
#undef X
};
extern struct curl_dl_funcs curl_dl;

/* Load libcurl (CI_LIBCURL_SONAME, "libcurl.so.4" by default) and run curl_global_init() the
 * first time it is called in the process; later calls return the first outcome.  Any thread
 * may call it, concurrently (pthread_once).  Returns 0, or < 0 with *err set, for instance
 * "cannot load libcurl.so.4 (needed to talk to docker/podman and to registries): <dlerror>".
 * The library stays loaded until the process exits.  Unit-test builds (CI_UNIT_TEST) load
 * $CIRRUS_TEST_LIBCURL instead when it is set, to test the failure. */
int curl_dl_load(struct ci_error **err);

#endif
