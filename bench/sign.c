#include "sign.h"

#include "slk/auth.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_signer {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx; /* keyed once: a token per request costs two SHA-256 passes and no allocation */
    char *secret;     /* for callback signatures (slk_signature_make), which are few */
};

/* base64url of {"alg":"HS256","typ":"JWT"}: constant, so precomputed. */
static const char JWT_HEADER[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

struct bench_signer *bench_signer_new(const char *secret)
{
    struct bench_signer *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    s->secret = strdup(secret);
    s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (s->secret == NULL || s->mac == NULL)
        goto fail;
    s->ctx = EVP_MAC_CTX_new(s->mac);
    if (s->ctx == NULL)
        goto fail;
    if (!EVP_MAC_init(s->ctx, (const unsigned char *)secret, strlen(secret), params))
        goto fail;
    return s;
fail:
    bench_signer_free(s);
    return NULL;
}

void bench_signer_free(struct bench_signer *s)
{
    if (s == NULL)
        return;
    EVP_MAC_CTX_free(s->ctx);
    EVP_MAC_free(s->mac);
    free(s->secret);
    free(s);
}

/* HMAC over two pieces; re-init with a NULL key keeps the key set in bench_signer_new. */
static int hmac2(struct bench_signer *s, const void *a, size_t alen, const void *b, size_t blen, unsigned char out[32])
{
    size_t outlen = 0;
    if (!EVP_MAC_init(s->ctx, NULL, 0, NULL) || !EVP_MAC_update(s->ctx, a, alen) || !EVP_MAC_update(s->ctx, b, blen) ||
        !EVP_MAC_final(s->ctx, out, &outlen, 32) || outlen != 32)
        return -1;
    return 0;
}

int bench_jwt_mint(struct bench_signer *s, const char *sub, const char *role, int64_t exp, char *out, size_t cap)
{
    char payload[160];
    int plen =
        snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"role\":\"%s\",\"exp\":%lld}", sub, role, (long long)exp);
    if (plen < 0 || (size_t)plen >= sizeof(payload))
        return -1;
    size_t hlen = sizeof(JWT_HEADER) - 1;
    size_t need = hlen + 1 + ((size_t)plen * 4 + 2) / 3 + 1 + 43 + 1;
    if (need > cap)
        return -1;
    memcpy(out, JWT_HEADER, hlen);
    size_t o = hlen;
    out[o++] = '.';
    o += slk_b64url_encode((const unsigned char *)payload, (size_t)plen, out + o);
    unsigned char mac[32];
    if (hmac2(s, out, o, "", 0, mac) != 0)
        return -1;
    out[o++] = '.';
    o += slk_b64url_encode(mac, sizeof(mac), out + o);
    out[o] = '\0';
    return (int)o;
}

int bench_signature_make(struct bench_signer *s, const char *body, size_t body_len, int64_t t, char *out, size_t cap)
{
    if (cap < BENCH_SIGNATURE_MAX ||
        slk_signature_make(out, cap, body, body_len, (const unsigned char *)s->secret, strlen(s->secret), t) != 0)
        return -1;
    return (int)strlen(out);
}
