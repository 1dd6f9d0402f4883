/*
 * Values remembered by the exact bytes of a key, for one worker: the
 * verified bearer tokens (token_cache.h) and the hold questions
 * (hold_questions.h) of a stampede's thousands of clients.
 *
 * Set-associative, SLK_BYTE_CACHE_WAYS entries per set, the least recently
 * used one replaced: a thousand students clicking at once all stay, where a
 * direct-mapped table of the same size lost a third of them to collisions
 * and had them verified and parsed again on every click. The key is kept as
 * an exact copy and compared in full, so a hash collision costs a miss,
 * never a wrong answer. Key copies are kept at their largest size, so a full
 * table holds at most entries × max_key_len bytes of them (tokens: 32 MiB,
 * bodies: 16 MiB per worker; only verified tokens and checked bodies are
 * kept). Not thread-safe: one per loop.
 */
#ifndef SLK_BYTE_CACHE_H
#define SLK_BYTE_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "slk/common.h"

#define SLK_BYTE_CACHE_WAYS 8

struct slk_byte_cache;

/*
 * Room for `entries` keys (rounded up to whole sets, a power of two) of at
 * most max_key_len bytes each, with a value of value_size bytes per key.
 * Key copies are allocated as keys arrive, so an idle cache costs little.
 */
struct slk_byte_cache *slk_byte_cache_create(size_t entries, size_t value_size, size_t max_key_len);
void slk_byte_cache_free(struct slk_byte_cache *c);

/* The value kept for exactly these bytes, or NULL. It stays valid until the next put. */
const void *slk_byte_cache_get(struct slk_byte_cache *c, const void *key, size_t len);

/*
 * Keeps a copy of value for these bytes, in place of what they had, or of
 * the least recently used entry of their set. Nothing is kept for an empty
 * or overlong key, or when a key's copy cannot be allocated.
 */
void slk_byte_cache_put(struct slk_byte_cache *c, const void *key, size_t len, const void *value);

#endif
