#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "slk/auth.h"
#include "slk/timeutil.h"

/* Bearer tokens we mint are ~200 bytes; anything near this cap is an attack or a mistake. */
#define JWT_MAX_LEN 4096

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const struct {
    enum slk_role role;
    const char *name;
} role_names[] = {
    {SLK_ROLE_STUDENT, "student"},
    {SLK_ROLE_INSTRUCTOR, "instructor"},
    {SLK_ROLE_ADMIN, "admin"},
};

const char *slk_role_name(enum slk_role role)
{
    for (size_t i = 0; i < SLK_ARRAY_SIZE(role_names); i++) {
        if (role_names[i].role == role)
            return role_names[i].name;
    }
    return "none";
}

enum slk_role slk_role_parse(const char *s)
{
    if (s == NULL)
        return SLK_ROLE_NONE;
    for (size_t i = 0; i < SLK_ARRAY_SIZE(role_names); i++) {
        if (strcmp(role_names[i].name, s) == 0)
            return role_names[i].role;
    }
    return SLK_ROLE_NONE;
}

/* Base64url digit values plus one; 0 marks a byte outside the alphabet. */
static const unsigned char b64url_values[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

static int b64url_value(char c)
{
    return (int)b64url_values[(unsigned char)c] - 1;
}

/*
 * Strict base64url without padding (RFC 7515 section 2). out needs len * 3 / 4
 * bytes. Non-canonical input (a length of 1 mod 4, or set bits left over in
 * the last character) is refused so that one signature has one encoding.
 */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;

    if (len % 4 == 1)
        return SLK_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return SLK_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return SLK_EINVAL;
    *outlen = n;
    return 0;
}

size_t slk_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t n = 0;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = b64url_alphabet[(v >> 18) & 63];
        out[n++] = b64url_alphabet[(v >> 12) & 63];
        out[n++] = b64url_alphabet[(v >> 6) & 63];
        out[n++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = b64url_alphabet[(v >> 18) & 63];
        out[n++] = b64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = b64url_alphabet[(v >> 18) & 63];
        out[n++] = b64url_alphabet[(v >> 12) & 63];
        out[n++] = b64url_alphabet[(v >> 6) & 63];
    }
    out[n] = '\0';
    return n;
}

/*
 * Decodes one base64url segment and parses it as a JSON object. Duplicate
 * keys are refused (two "alg" or "role" members could be read differently by
 * another parser), and so is \u0000, which keeps strcmp on members exact.
 */
static json_t *segment_json(const char *seg, size_t len)
{
    unsigned char buf[JWT_MAX_LEN];
    size_t n = 0;

    if (b64url_decode(seg, len, buf, &n) != 0)
        return NULL;
    json_t *obj = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    if (obj != NULL && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static bool header_ok(const char *seg, size_t len)
{
    /* The common header byte for byte: no need to decode it. */
    if (len == sizeof(SLK_JWT_HS256_HEADER) - 1 && memcmp(seg, SLK_JWT_HS256_HEADER, len) == 0)
        return true;
    json_t *hdr = segment_json(seg, len);
    if (hdr == NULL)
        return false;

    /*
     * alg is pinned: "none" and every other algorithm are refused, whatever
     * the token asks for (RFC 8725 section 3.1). A "crit" header names
     * extensions we do not understand, so it must be refused (RFC 7515 4.1.11).
     */
    json_t *alg = json_object_get(hdr, "alg");
    json_t *typ = json_object_get(hdr, "typ");
    bool ok = json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
              json_object_get(hdr, "crit") == NULL &&
              (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0));
    json_decref(hdr);
    return ok;
}

static bool signature_ok(struct slk_hmac *key, const char *token, size_t signed_len, const char *sig, size_t sig_len)
{
    unsigned char given[JWT_MAX_LEN];
    unsigned char want[SLK_HMAC_LEN];
    size_t given_len = 0;

    if (b64url_decode(sig, sig_len, given, &given_len) != 0 || given_len != SLK_HMAC_LEN)
        return false;
    if (slk_hmac_sha256(key, token, signed_len, NULL, 0, want) != 0)
        return false;
    return CRYPTO_memcmp(given, want, SLK_HMAC_LEN) == 0;
}

static int claims_check(json_t *claims, int64_t now, struct slk_identity *out)
{
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    json_t *sub = json_object_get(claims, "sub");
    json_t *role = json_object_get(claims, "role");

    if (!json_is_integer(exp) || !json_is_string(sub) || !json_is_string(role))
        return SLK_EAUTH;
    if (!slk_id_valid(json_string_value(sub), json_string_length(sub)))
        return SLK_EAUTH;
    enum slk_role r = slk_role_parse(json_string_value(role));
    if (r == SLK_ROLE_NONE)
        return SLK_EAUTH;
    if (nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) > now))
        return SLK_EAUTH;
    /* Expiry last, so that SLK_EEXPIRED means "was valid, now stale". */
    if (json_integer_value(exp) <= now)
        return SLK_EEXPIRED;

    if (out != NULL) {
        memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
        out->role = r;
        out->exp = json_integer_value(exp);
    }
    return 0;
}

int slk_jwt_verify(const char *token, size_t len, const unsigned char *secret, size_t secret_len, int64_t now,
                   struct slk_identity *out)
{
    struct slk_hmac *key = slk_hmac_new(secret, secret_len);
    if (key == NULL)
        return SLK_EAUTH;
    int rc = slk_jwt_verify_keyed(key, token, len, now, out);
    slk_hmac_free(key);
    return rc;
}

int slk_jwt_verify_keyed(struct slk_hmac *key, const char *token, size_t len, int64_t now, struct slk_identity *out)
{
    if (key == NULL || token == NULL || len == 0 || len > JWT_MAX_LEN)
        return SLK_EAUTH;

    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return SLK_EAUTH;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return SLK_EAUTH;

    size_t hdr_len = (size_t)(dot1 - token);
    const char *payload = dot1 + 1;
    size_t payload_len = (size_t)(dot2 - payload);
    const char *sig = dot2 + 1;
    size_t sig_len = len - (size_t)(sig - token);

    if (!header_ok(token, hdr_len))
        return SLK_EAUTH;
    if (!signature_ok(key, token, (size_t)(dot2 - token), sig, sig_len))
        return SLK_EAUTH;

    json_t *claims = segment_json(payload, payload_len);
    if (claims == NULL)
        return SLK_EAUTH;
    int rc = claims_check(claims, now, out);
    json_decref(claims);
    return rc;
}

/* Appends the base64url form of a JSON document to buf at *n. */
static int append_segment(char *buf, size_t cap, size_t *n, const char *json, size_t json_len)
{
    if (json_len > (cap - *n - 1) / 4 * 3)
        return SLK_ETOOBIG;
    *n += slk_b64url_encode((const unsigned char *)json, json_len, buf + *n);
    return 0;
}

char *slk_jwt_sign(const char *sub, enum slk_role role, int64_t exp, const unsigned char *secret, size_t secret_len)
{
    unsigned char mac[SLK_HMAC_LEN];
    json_t *claims = NULL;
    char *payload = NULL;
    char *token = NULL;
    size_t n = 0;

    if (sub == NULL || !slk_id_valid(sub, strlen(sub)) || role == SLK_ROLE_NONE ||
        slk_role_parse(slk_role_name(role)) != role || secret == NULL || secret_len == 0)
        return NULL;

    claims = json_pack("{s:s, s:s, s:I, s:I}", "sub", sub, "role", slk_role_name(role), "exp", (json_int_t)exp, "iat",
                       (json_int_t)(slk_clock_now_ms() / 1000));
    if (claims == NULL)
        goto fail;
    payload = json_dumps(claims, JSON_COMPACT);
    if (payload == NULL)
        goto fail;
    token = malloc(JWT_MAX_LEN + 1);
    if (token == NULL)
        goto fail;
    memcpy(token, SLK_JWT_HS256_HEADER, sizeof(SLK_JWT_HS256_HEADER) - 1);
    n = sizeof(SLK_JWT_HS256_HEADER) - 1;
    token[n++] = '.';
    if (append_segment(token, JWT_MAX_LEN + 1, &n, payload, strlen(payload)) != 0)
        goto fail;
    struct slk_hmac *key = slk_hmac_new(secret, secret_len);
    int rc = key != NULL ? slk_hmac_sha256(key, token, n, NULL, 0, mac) : SLK_EAUTH;
    slk_hmac_free(key);
    if (rc != 0)
        goto fail;
    if (n + 1 + 43 + 1 > JWT_MAX_LEN + 1)
        goto fail;
    token[n++] = '.';
    slk_b64url_encode(mac, sizeof(mac), token + n);

    free(payload);
    json_decref(claims);
    return token;

fail:
    free(token);
    free(payload);
    json_decref(claims);
    return NULL;
}
