/*
 * Credentials slotbench mints for itself: HS256 JWTs (as slotlockd checks
 * them: header {"alg":"HS256","typ":"JWT"}, claims sub, role, exp) and the
 * payment webhook signature "t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
 * A signer keeps its HMAC keyed once, so minting costs two SHA-256 passes
 * and no allocation: cheap enough to do per request.
 */
#ifndef SLOTBENCH_SIGN_H
#define SLOTBENCH_SIGN_H

#include <stddef.h>
#include <stdint.h>

struct bench_signer;

/* NULL on failure (OpenSSL unusable). */
struct bench_signer *bench_signer_new(const char *secret);
void bench_signer_free(struct bench_signer *s);

/* Longest token bench_jwt_mint writes for a sub of up to 64 bytes. */
#define BENCH_JWT_MAX 320
/* Longest X-Signature value. */
#define BENCH_SIGNATURE_MAX 96

/*
 * Writes a compact JWS for sub/role expiring at exp (unix seconds) into
 * out (cap bytes, NUL-terminated). Returns its length, or -1 when it does
 * not fit or HMAC failed.
 */
int bench_jwt_mint(struct bench_signer *s, const char *sub, const char *role, int64_t exp, char *out, size_t cap);

/* Writes the X-Signature value for body at unix time t into out. Returns its length or -1. */
int bench_signature_make(struct bench_signer *s, const char *body, size_t body_len, int64_t t, char *out, size_t cap);

#endif
