/*
 * Hold refusals kept for a moment: the hot-slot stampede (R-HOLD under
 * contention).
 *
 * When thousands of clients click a slot that is already taken, every one of
 * them would cost a rate-limit call and a hold script in Redis only to hear
 * 409. Each worker remembers the refusals it got from lua/hold.lua (and that
 * a hold it was just granted took every unit asked for), keyed by the exact
 * units asked for, and answers the same question again without
 * Redis while nothing can have freed those units: a refusal is dropped when
 * the instructor's freed-units generation moves (avail_cache.h: bumped by
 * every unit-changing script other than a hold, by released/booked/expired
 * announcements on the events channel, and for everyone when the events
 * connection is re-established), when the first of the taken units lapses,
 * and after SLK_REFUSAL_CACHE_TTL_MS whatever happens. A hold is only ever
 * granted by Redis: the worst a late notification can cost is a 409 for a
 * slot freed a moment ago, never a double booking.
 */
#ifndef SLK_REFUSAL_CACHE_H
#define SLK_REFUSAL_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "slk/common.h"

#define SLK_REFUSAL_CACHE_TTL_MS 1000

/* The question: these units of this instructor, as the given settings version lays them out. */
struct slk_refusal_key {
    char instructor[SLK_MAX_ID_LEN + 1];
    int64_t version;
    int64_t units_first_min;
    int unit_count;
};

/* Shared with hold_flights.c, which files questions in flight the same way. */
uint32_t slk_refusal_key_hash(const struct slk_refusal_key *k);
bool slk_refusal_key_equal(const struct slk_refusal_key *a, const struct slk_refusal_key *b);

/* Longest reply kept (a 409 envelope with two timestamps is about 200 bytes). */
#define SLK_REFUSAL_BODY_MAX 320

/* The answer: the 409 reply as sent, byte for byte. */
struct slk_refusal {
    const char *body; /* get: valid until the next put into the cache */
    size_t len;
};

/* One worker's refusals (not thread-safe; one per loop). */
struct slk_refusal_cache;
struct slk_refusal_cache *slk_refusal_cache_create(void);
void slk_refusal_cache_free(struct slk_refusal_cache *c);

/* now_ms: a monotonic clock (the application clock may be stopped or moved by tests). */
bool slk_refusal_cache_get(struct slk_refusal_cache *c, const struct slk_refusal_key *k, int64_t now_ms,
                           struct slk_refusal *out);

/*
 * gen: slk_freed_gen() read before the hold script was sent; now_ms: no
 * later than when it ran (the lapse is measured there); lapse_ms: how long
 * until the first taken unit expires by itself (< 0: none does; 0: it is
 * expiring, nothing is kept).
 */
void slk_refusal_cache_put(struct slk_refusal_cache *c, const struct slk_refusal_key *k, uint32_t gen, int64_t now_ms,
                           int64_t lapse_ms, const struct slk_refusal *r);

#endif
