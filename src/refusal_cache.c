#include <stdlib.h>
#include <string.h>

#include "slk/avail_cache.h"
#include "slk/common.h"
#include "slk/refusal_cache.h"

#define CACHE_SLOTS 1024 /* direct-mapped: a collision only costs a Redis call */

struct entry {
    char instructor[SLK_MAX_ID_LEN + 1]; /* "" when the slot is free */
    int64_t version, units_first_min;
    int unit_count;
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

/* FNV-1a over the instructor id and the unit range. */
static uint32_t hash_key(const struct slk_refusal_key *k)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)k->instructor; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    int64_t nums[3] = {k->version, k->units_first_min, k->unit_count};
    const unsigned char *b = (const unsigned char *)nums;
    for (size_t i = 0; i < sizeof(nums); i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

static bool entry_matches(const struct entry *e, const struct slk_refusal_key *k)
{
    return e->version == k->version && e->units_first_min == k->units_first_min && e->unit_count == k->unit_count &&
           strcmp(e->instructor, k->instructor) == 0;
}

static void entry_drop(struct entry *e)
{
    e->instructor[0] = '\0';
}

bool slk_refusal_cache_get(struct slk_refusal_cache *c, const struct slk_refusal_key *k, int64_t now_ms,
                           struct slk_refusal *out)
{
    struct entry *e = &c->slots[hash_key(k) % CACHE_SLOTS];
    if (e->instructor[0] == '\0' || !entry_matches(e, k))
        return false;
    if (now_ms >= e->until_ms || e->gen != slk_freed_gen(k->instructor)) {
        entry_drop(e);
        return false;
    }
    out->body = e->body;
    out->len = e->len;
    return true;
}

void slk_refusal_cache_put(struct slk_refusal_cache *c, const struct slk_refusal_key *k, uint32_t gen, int64_t now_ms,
                           int64_t lapse_ms, const struct slk_refusal *r)
{
    size_t len = strlen(k->instructor);
    if (len == 0 || len > SLK_MAX_ID_LEN || r->len > SLK_REFUSAL_BODY_MAX || lapse_ms == 0)
        return;
    if (gen != slk_freed_gen(k->instructor))
        return; /* something may have been freed while the script ran: the refusal may already be wrong */
    struct entry *e = &c->slots[hash_key(k) % CACHE_SLOTS];
    entry_drop(e);
    memcpy(e->instructor, k->instructor, len + 1);
    e->version = k->version;
    e->units_first_min = k->units_first_min;
    e->unit_count = k->unit_count;
    e->gen = gen;
    e->until_ms = now_ms + (lapse_ms > 0 && lapse_ms < SLK_REFUSAL_CACHE_TTL_MS ? lapse_ms : SLK_REFUSAL_CACHE_TTL_MS);
    memcpy(e->body, r->body, r->len);
    e->len = r->len;
}
