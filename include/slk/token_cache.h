/*
 * A per-worker cache of verified bearer tokens. Clients send the same token
 * on every request; verifying it once (HMAC and two JSON parses) and then
 * recognising the exact same bytes saves most of the cost of authentication.
 * A hit still checks "exp" against the clock. Not thread-safe: one per loop.
 * Kept in a slk_byte_cache (byte_cache.h).
 */
#ifndef SLK_TOKEN_CACHE_H
#define SLK_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/auth.h"

#define SLK_TOKEN_CACHE_ENTRIES 32768 /* clients verified once per worker (byte_cache.h) */
#define SLK_TOKEN_CACHE_MAX_LEN 1024  /* longer tokens are verified every time */

struct slk_token_cache;

struct slk_token_cache *slk_token_cache_create(void);
void slk_token_cache_free(struct slk_token_cache *c);

/* True and *out filled when this exact token was verified before and has not expired at now (unix seconds). */
bool slk_token_cache_get(struct slk_token_cache *c, const char *token, size_t len, int64_t now,
                         struct slk_identity *out);
/* Remembers a token that slk_jwt_verify() accepted. */
void slk_token_cache_put(struct slk_token_cache *c, const char *token, size_t len, const struct slk_identity *id);

#endif
