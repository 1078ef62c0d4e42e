/* backends/image/digest.c - sha256 digests (OpenSSL libcrypto EVP). */
#include "internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

bool
img__digest_valid(const char *d)
{
  if (!d || strncmp(d, "sha256:", 7) != 0)
    return false;
  const char *h = d + 7;
  size_t i = 0;
  for (; h[i]; i++) {
    char c = h[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return i == 64;
}

void
img__hash_init(struct img__hash *h)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
    CI_BUG("cannot initialise sha256");
  h->ctx = ctx;
}

void
img__hash_update(struct img__hash *h, const void *p, size_t n)
{
  if (n && EVP_DigestUpdate(h->ctx, p, n) != 1)
    CI_BUG("sha256 update failed");
}

void
img__hash_final(struct img__hash *h, char out[IMG__DIGEST_LEN + 1])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != 32)
    CI_BUG("sha256 final failed");
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "sha256:", 7);
  for (unsigned i = 0; i < 32; i++) {
    out[7 + 2 * i] = hex[md[i] >> 4];
    out[8 + 2 * i] = hex[md[i] & 15];
  }
  out[IMG__DIGEST_LEN] = '\0';
  if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    CI_BUG("cannot reset sha256");
}

void
img__hash_release(struct img__hash *h)
{
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
}

void
img__digest_bytes(const void *p, size_t n, char out[IMG__DIGEST_LEN + 1])
{
  struct img__hash h;
  img__hash_init(&h);
  img__hash_update(&h, p, n);
  img__hash_final(&h, out);
  img__hash_release(&h);
}

int
img__verify_bytes(const void *p, size_t n, const char *want, const char *what,
                  struct ci_error **err)
{
  char got[IMG__DIGEST_LEN + 1];
  img__digest_bytes(p, n, got);
  if (strcmp(got, want) != 0)
    return ci_error_make(err, CI_EPROTO, "%s has digest %s, expected %s", what, got, want);
  return 0;
}
