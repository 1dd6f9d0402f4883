/*
 * JWT (HS256 only: "alg" is pinned, "none" and every other algorithm are
 * refused) and the payment webhook signature of R-PAY:
 * X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">.
 * All MAC comparisons are constant time (CRYPTO_memcmp).
 */
#ifndef SLK_AUTH_H
#define SLK_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "slk/common.h"

enum slk_role {
    SLK_ROLE_NONE = 0,
    SLK_ROLE_STUDENT,
    SLK_ROLE_INSTRUCTOR,
    SLK_ROLE_ADMIN,
};

const char *slk_role_name(enum slk_role role);
enum slk_role slk_role_parse(const char *s); /* SLK_ROLE_NONE when unknown */

struct slk_identity {
    char sub[SLK_MAX_ID_LEN + 1];
    enum slk_role role;
    int64_t exp;
};

/* HMAC-SHA256 with its key set up once (hmac.c). Not thread-safe: one per thread. */
#define SLK_HMAC_LEN 32
struct slk_hmac;
/* NULL for an empty key or when OpenSSL cannot set it up. */
struct slk_hmac *slk_hmac_new(const unsigned char *key, size_t key_len);
void slk_hmac_free(struct slk_hmac *h);
/* The MAC of a followed by b (blen may be 0). Returns 0 or SLK_EAUTH. */
int slk_hmac_sha256(struct slk_hmac *h, const void *a, size_t alen, const void *b, size_t blen,
                    unsigned char out[SLK_HMAC_LEN]) SLK_MUST_CHECK;

/*
 * Verifies a compact JWS (header.payload.signature, base64url without
 * padding). Requires header alg == "HS256", a valid signature, integer exp
 * > now, sub matching the id pattern, and a known role. now is unix seconds.
 * Returns 0, SLK_EAUTH (malformed, bad signature, bad claims) or
 * SLK_EEXPIRED. The _keyed form takes the secret already set up.
 */
int slk_jwt_verify(const char *token, size_t len, const unsigned char *secret, size_t secret_len, int64_t now,
                   struct slk_identity *out) SLK_MUST_CHECK;
int slk_jwt_verify_keyed(struct slk_hmac *key, const char *token, size_t len, int64_t now,
                         struct slk_identity *out) SLK_MUST_CHECK;

/* base64url of {"alg":"HS256","typ":"JWT"}: the header slotlock writes, and nearly every issuer. */
#define SLK_JWT_HS256_HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

/* Mints an HS256 token; returns malloc'd string or NULL. */
/* base64url without padding (RFC 7515 section 2); out needs (len * 4 + 2) / 3 + 1 bytes and is NUL-terminated.
 * Returns the length written. */
size_t slk_b64url_encode(const unsigned char *in, size_t len, char *out);

char *slk_jwt_sign(const char *sub, enum slk_role role, int64_t exp, const unsigned char *secret,
                   size_t secret_len) SLK_MUST_CHECK;

#define SLK_SIGNATURE_TOLERANCE_S 300

/*
 * Verifies an X-Signature header value over body. Returns 0, SLK_EAUTH
 * (missing/malformed/bad MAC), SLK_EEXPIRED (t older than tolerance) or
 * SLK_EEARLY (t further in the future than tolerance).
 */
int slk_signature_verify(const char *header, size_t header_len, const char *body, size_t body_len,
                         const unsigned char *secret, size_t secret_len, int64_t now) SLK_MUST_CHECK;

/* Writes "t=<now>,v1=<hex>" into out (at least 96 bytes). Used by tests, tools and outgoing webhooks. */
int slk_signature_make(char *out, size_t outlen, const char *body, size_t body_len, const unsigned char *secret,
                       size_t secret_len, int64_t now) SLK_MUST_CHECK;

/* Cryptographic randomness (OpenSSL RAND_bytes). */
int slk_random_bytes(void *buf, size_t len) SLK_MUST_CHECK;
/* Random UUID v4, lower-case, into out[37]. */
int slk_uuid_v4(char out[37]) SLK_MUST_CHECK;
/* UUID v7 for unix_ms (time-ordered, 74 random bits), lower-case, into out[37]: booking ids. */
int slk_uuid_v7(char out[37], int64_t unix_ms) SLK_MUST_CHECK;
/* The canonical (lower-case) text of 16 uuid bytes, into out[37]. */
void slk_uuid_format(const unsigned char bytes[16], char out[37]);
/* The 16 bytes of a lower-case canonical uuid; SLK_EINVAL for anything else (upper case would not come back). */
int slk_uuid_bytes(const char *uuid, unsigned char out[16]) SLK_MUST_CHECK;
/* True when s is a canonical UUID (any version, either case). */
int slk_uuid_valid(const char *s, size_t len);
/* The canonical (lower-case) form of a valid uuid, as bookings and blocks are stored under it. */
void slk_uuid_canonical(const char *uuid, char out[37]);
/* 2 * len lower-case hex digits of in at out (no terminator). */
void slk_hex_encode(char *out, const unsigned char *in, size_t len);
/* The len bytes of 2 * len lower-case hex digits at hex; SLK_EINVAL for any other character (upper case would not
 * come back the same from its bytes). */
int slk_hex_decode_lower(unsigned char *out, const char *hex, size_t len) SLK_MUST_CHECK;
/* prefix + 32 random hex chars, into out (needs strlen(prefix)+33). */
int slk_random_token(char *out, size_t outlen, const char *prefix) SLK_MUST_CHECK;
/* ^[A-Za-z0-9._:-]{1,64}$ */
int slk_id_valid(const char *s, size_t len);

#endif
