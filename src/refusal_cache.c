#include <stdlib.h>
#include <string.h>

#include "slk/avail_cache.h"
#include "slk/common.h"
#include "slk/refusal_cache.h"

#define CACHE_SLOTS 1024 /* direct-mapped: a collision only costs a Redis call */

struct entry {
    struct slk_refusal_key key; /* key.instructor "" when the slot is free */
    uint32_t gen;
    int64_t until_ms;
    size_t len;
    char body[SLK_REFUSAL_BODY_MAX];
};

struct slk_refusal_cache {
    struct entry slots[CACHE_SLOTS];
};

struct slk_refusal_cache *slk_refusal_cache_create(void)
{
    return calloc(1, sizeof(struct slk_refusal_cache));
}

void slk_refusal_cache_free(struct slk_refusal_cache *c)
{
    free(c);
}

uint32_t slk_refusal_key_hash(const struct slk_refusal_key *k)
{
    int64_t nums[3] = {k->version, k->units_first_min, k->unit_count};
    return slk_fnv1a(slk_fnv1a(SLK_FNV1A_INIT, k->instructor, strlen(k->instructor)), nums, sizeof(nums));
}

bool slk_refusal_key_equal(const struct slk_refusal_key *a, const struct slk_refusal_key *b)
{
    return a->version == b->version && a->units_first_min == b->units_first_min && a->unit_count == b->unit_count &&
           strcmp(a->instructor, b->instructor) == 0;
}

bool slk_refusal_cache_get(struct slk_refusal_cache *c, const struct slk_refusal_key *k, int64_t now_ms,
                           struct slk_refusal *out)
{
    struct entry *e = &c->slots[slk_refusal_key_hash(k) % CACHE_SLOTS];
    if (e->key.instructor[0] == '\0' || !slk_refusal_key_equal(&e->key, k))
        return false;
    if (now_ms >= e->until_ms || e->gen != slk_freed_gen(k->instructor)) {
        e->key.instructor[0] = '\0';
        return false;
    }
    out->body = e->body;
    out->len = e->len;
    return true;
}

void slk_refusal_cache_put(struct slk_refusal_cache *c, const struct slk_refusal_key *k, uint32_t gen, int64_t now_ms,
                           int64_t lapse_ms, const struct slk_refusal *r)
{
    if (k->instructor[0] == '\0' || r->len > SLK_REFUSAL_BODY_MAX || lapse_ms == 0)
        return;
    if (gen != slk_freed_gen(k->instructor))
        return; /* something may have been freed while the script ran: the refusal may already be wrong */
    struct entry *e = &c->slots[slk_refusal_key_hash(k) % CACHE_SLOTS];
    e->key = *k;
    e->gen = gen;
    e->until_ms = now_ms + (lapse_ms > 0 && lapse_ms < SLK_REFUSAL_CACHE_TTL_MS ? lapse_ms : SLK_REFUSAL_CACHE_TTL_MS);
    memcpy(e->body, r->body, r->len);
    e->len = r->len;
}
