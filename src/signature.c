#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "slk/auth.h"

#define SIG_MAX_HEADER 1024
#define SIG_HEX_LEN (2 * SLK_HMAC_LEN)
/* 12 digits reach the year 33658; longer timestamps are garbage, not clock skew. */
#define SIG_MAX_T_DIGITS 12
/* Several v1 values let the sender rotate secrets; more than a few is abuse. */
#define SIG_MAX_V1 8
#define SIG_MAX_OTHER_VALUE 128

struct sig_header {
    const char *t;
    size_t t_len;
    int64_t t_value;
    unsigned char v1[SIG_MAX_V1][SLK_HMAC_LEN];
    size_t n_v1;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static int parse_t(struct sig_header *h, const char *v, size_t len)
{
    if (h->t != NULL || len == 0 || len > SIG_MAX_T_DIGITS)
        return SLK_EAUTH;
    int64_t t = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return SLK_EAUTH;
        t = t * 10 + (v[i] - '0');
    }
    h->t = v;
    h->t_len = len;
    h->t_value = t;
    return 0;
}

static int parse_v1(struct sig_header *h, const char *v, size_t len)
{
    if (h->n_v1 == SIG_MAX_V1 || len != SIG_HEX_LEN)
        return SLK_EAUTH;
    unsigned char *mac = h->v1[h->n_v1];
    for (size_t i = 0; i < SLK_HMAC_LEN; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)v[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return SLK_EAUTH;
        mac[i] = (unsigned char)(hi << 4 | lo);
    }
    h->n_v1++;
    return 0;
}

/*
 * Other schemes (a sender may add e.g. "v0=") are skipped as long as they
 * look like key=value, so that a future scheme does not break verification.
 */
static int parse_other(const char *k, size_t k_len, const char *v, size_t v_len)
{
    if (k_len == 0 || v_len == 0 || v_len > SIG_MAX_OTHER_VALUE)
        return SLK_EAUTH;
    for (size_t i = 0; i < k_len; i++) {
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9')))
            return SLK_EAUTH;
    }
    for (size_t i = 0; i < v_len; i++) {
        if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f || v[i] == '=')
            return SLK_EAUTH;
    }
    return 0;
}

static int parse_item(struct sig_header *h, const char *s, size_t len)
{
    while (len > 0 && is_space(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_space(s[len - 1]))
        len--;
    const char *eq = memchr(s, '=', len);
    if (eq == NULL)
        return SLK_EAUTH;
    size_t k_len = (size_t)(eq - s);
    const char *v = eq + 1;
    size_t v_len = len - k_len - 1;

    if (k_len == 1 && s[0] == 't')
        return parse_t(h, v, v_len);
    if (k_len == 2 && memcmp(s, "v1", 2) == 0)
        return parse_v1(h, v, v_len);
    return parse_other(s, k_len, v, v_len);
}

static int parse_header(struct sig_header *h, const char *s, size_t len)
{
    memset(h, 0, sizeof(*h));
    if (s == NULL || len == 0 || len > SIG_MAX_HEADER)
        return SLK_EAUTH;
    while (len > 0) {
        const char *comma = memchr(s, ',', len);
        size_t item_len = comma != NULL ? (size_t)(comma - s) : len;
        int rc = parse_item(h, s, item_len);
        if (rc != 0)
            return rc;
        if (comma == NULL)
            break;
        s = comma + 1;
        len -= item_len + 1;
        /* A trailing comma would leave an empty item: refuse it like any other junk. */
        if (len == 0)
            return SLK_EAUTH;
    }
    if (h->t == NULL || h->n_v1 == 0)
        return SLK_EAUTH;
    return 0;
}

/* HMAC-SHA256(secret, "<t>.<body>"), with t exactly as the sender wrote it (at most SIG_MAX_T_DIGITS digits). */
static int compute_mac(const unsigned char *secret, size_t secret_len, const char *t, size_t t_len, const char *body,
                       size_t body_len, unsigned char mac[SLK_HMAC_LEN])
{
    char prefix[SIG_MAX_T_DIGITS + 2];
    if (t_len > SIG_MAX_T_DIGITS)
        return SLK_EAUTH;
    memcpy(prefix, t, t_len);
    prefix[t_len] = '.';
    struct slk_hmac *key = slk_hmac_new(secret, secret_len);
    int rc = key != NULL ? slk_hmac_sha256(key, prefix, t_len + 1, body, body_len, mac) : SLK_EAUTH;
    slk_hmac_free(key);
    return rc;
}

int slk_signature_verify(const char *header, size_t header_len, const char *body, size_t body_len,
                         const unsigned char *secret, size_t secret_len, int64_t now)
{
    struct sig_header h;
    unsigned char want[SLK_HMAC_LEN];
    int match = 0;

    if (secret == NULL || secret_len == 0 || (body == NULL && body_len > 0))
        return SLK_EAUTH;
    if (parse_header(&h, header, header_len) != 0)
        return SLK_EAUTH;
    if (compute_mac(secret, secret_len, h.t, h.t_len, body, body_len, want) != 0)
        return SLK_EAUTH;
    /* Check every candidate, not just up to the first hit, so timing does not reveal which one matched. */
    for (size_t i = 0; i < h.n_v1; i++)
        match |= CRYPTO_memcmp(h.v1[i], want, SLK_HMAC_LEN) == 0;
    if (!match)
        return SLK_EAUTH;

    /* Freshness after authenticity: SLK_EEXPIRED/SLK_EEARLY mean a genuine but replayed or skewed request. */
    int64_t age;
    if (__builtin_sub_overflow(now, h.t_value, &age))
        return now < 0 ? SLK_EEARLY : SLK_EEXPIRED;
    if (age > SLK_SIGNATURE_TOLERANCE_S)
        return SLK_EEXPIRED;
    if (age < -SLK_SIGNATURE_TOLERANCE_S)
        return SLK_EEARLY;
    return 0;
}

int slk_signature_make(char *out, size_t outlen, const char *body, size_t body_len, const unsigned char *secret,
                       size_t secret_len, int64_t now)
{
    char t[24];
    unsigned char mac[SLK_HMAC_LEN];

    if (out == NULL || now < 0 || secret == NULL || secret_len == 0 || (body == NULL && body_len > 0))
        return SLK_EINVAL;
    int t_len = snprintf(t, sizeof(t), "%lld", (long long)now);
    if (t_len > SIG_MAX_T_DIGITS)
        return SLK_EINVAL;
    /* "t=" + digits + ",v1=" + 64 hex + NUL */
    if (outlen < (size_t)t_len + 2 + 4 + SIG_HEX_LEN + 1)
        return SLK_ETOOBIG;
    int rc = compute_mac(secret, secret_len, t, (size_t)t_len, body, body_len, mac);
    if (rc != 0)
        return SLK_EINVAL;

    char *p = out + snprintf(out, outlen, "t=%s,v1=", t);
    slk_hex_encode(p, mac, sizeof(mac));
    p[SIG_HEX_LEN] = '\0';
    return 0;
}
