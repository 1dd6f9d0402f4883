#include "sign.h"

#include "slk/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_signer {
    struct slk_hmac *key; /* keyed once: a token per request costs two SHA-256 passes and no allocation */
    char *secret;         /* for callback signatures (slk_signature_make), which are few */
};

struct bench_signer *bench_signer_new(const char *secret)
{
    struct bench_signer *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->secret = strdup(secret);
    s->key = slk_hmac_new((const unsigned char *)secret, strlen(secret));
    if (s->secret == NULL || s->key == NULL) {
        bench_signer_free(s);
        return NULL;
    }
    return s;
}

void bench_signer_free(struct bench_signer *s)
{
    if (s == NULL)
        return;
    slk_hmac_free(s->key);
    free(s->secret);
    free(s);
}

int bench_jwt_mint(struct bench_signer *s, const char *sub, const char *role, int64_t exp, char *out, size_t cap)
{
    char payload[160];
    int plen =
        snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"role\":\"%s\",\"exp\":%lld}", sub, role, (long long)exp);
    if (plen < 0 || (size_t)plen >= sizeof(payload))
        return -1;
    size_t hlen = sizeof(SLK_JWT_HS256_HEADER) - 1;
    size_t need = hlen + 1 + ((size_t)plen * 4 + 2) / 3 + 1 + 43 + 1;
    if (need > cap)
        return -1;
    memcpy(out, SLK_JWT_HS256_HEADER, hlen);
    size_t o = hlen;
    out[o++] = '.';
    o += slk_b64url_encode((const unsigned char *)payload, (size_t)plen, out + o);
    unsigned char mac[32];
    if (slk_hmac_sha256(s->key, out, o, NULL, 0, mac) != 0)
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
