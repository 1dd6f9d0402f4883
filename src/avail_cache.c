#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "slk/avail_cache.h"
#include "slk/common.h"

#define GEN_SLOTS 4096   /* instructors per process before two share a generation (a shared one only costs reads) */
#define CACHE_SLOTS 1024 /* replies per worker */
/* A question may sit in any of the slots of its set: a few busy ones do not evict each other. */
#define CACHE_WAYS 4

/* Minutes since the epoch fit 32 bits until the year 6053; a journal entry is 12 bytes. */
struct change {
    uint32_t gen; /* the generation this change made */
    int32_t lo, hi;
};

/* One slot's changes, newest at journal[gen % SLK_AVAIL_JOURNAL]; busy guards them and the bump. */
struct journal {
    atomic_int busy;
    struct change ring[SLK_AVAIL_JOURNAL];
};

static _Atomic uint32_t generations[GEN_SLOTS];
static struct journal journals[GEN_SLOTS];
static _Atomic uint32_t freed_generations[GEN_SLOTS];
static _Atomic uint32_t freed_epoch;

static uint32_t hash_bytes(const char *s, size_t len)
{
    return slk_fnv1a(SLK_FNV1A_INIT, s, len);
}

static void journal_lock(struct journal *j)
{
    while (atomic_exchange_explicit(&j->busy, 1, memory_order_acquire) != 0)
        ;
}

static void journal_unlock(struct journal *j)
{
    atomic_store_explicit(&j->busy, 0, memory_order_release);
}

static int32_t clamp_minute(int64_t m)
{
    return m < INT32_MIN ? INT32_MIN : m > INT32_MAX ? INT32_MAX : (int32_t)m;
}

void slk_avail_gen_bump_units(const char *tag, size_t len, struct slk_unit_range units)
{
    size_t i = hash_bytes(tag, len) % GEN_SLOTS;
    struct journal *j = &journals[i];
    journal_lock(j);
    uint32_t gen = atomic_load_explicit(&generations[i], memory_order_relaxed) + 1;
    j->ring[gen % SLK_AVAIL_JOURNAL] = (struct change){gen, clamp_minute(units.lo), clamp_minute(units.hi)};
    /* Readers of the generation alone do not take the lock: they see it move only once the journal has it. */
    atomic_store_explicit(&generations[i], gen, memory_order_release);
    journal_unlock(j);
}

void slk_avail_gen_bump(const char *tag, size_t len)
{
    slk_avail_gen_bump_units(tag, len, (struct slk_unit_range){INT64_MIN, INT64_MAX});
}

/* The hash tag of "slk:{i}:…", or NULL. */
static const char *hash_tag(const char *key, size_t len, size_t *tag_len)
{
    const char *open = memchr(key, '{', len);
    const char *close = open != NULL ? memchr(open + 1, '}', len - (size_t)(open + 1 - key)) : NULL;
    if (close == NULL || close == open + 1)
        return NULL;
    *tag_len = (size_t)(close - open - 1);
    return open + 1;
}

/* The minute of a unit key "slk:{i}:u:<minute>"; false for any other key. */
static bool unit_minute(const char *key, size_t len, int64_t *minute)
{
    size_t tag_len;
    const char *tag = hash_tag(key, len, &tag_len);
    const char *p = tag != NULL ? tag + tag_len + 1 : NULL, *end = key + len;
    if (p == NULL || end - p < 4 || memcmp(p, ":u:", 3) != 0)
        return false;
    int64_t m = 0;
    for (p += 3; p < end; p++) {
        if (*p < '0' || *p > '9' || m > INT64_MAX / 10 - 9)
            return false;
        m = m * 10 + (*p - '0');
    }
    *minute = m;
    return true;
}

void slk_avail_gen_bump_keys(int n, const char *const *keys, const size_t *lens)
{
    size_t tag_len;
    const char *tag = n > 0 ? hash_tag(keys[0], lens[0], &tag_len) : NULL;
    if (tag == NULL)
        return;
    struct slk_unit_range span = {INT64_MAX, INT64_MIN};
    for (int i = 0; i < n; i++) {
        int64_t m;
        if (unit_minute(keys[i], lens[i], &m)) {
            span.lo = m < span.lo ? m : span.lo;
            span.hi = m + 1 > span.hi ? m + 1 : span.hi;
        }
    }
    if (span.lo > span.hi)
        span = (struct slk_unit_range){INT64_MIN, INT64_MAX}; /* no unit key: what changed is not known */
    slk_avail_gen_bump_units(tag, tag_len, span);
}

void slk_avail_gen_bump_all(void)
{
    for (size_t i = 0; i < GEN_SLOTS; i++) {
        struct journal *j = &journals[i];
        journal_lock(j);
        uint32_t gen = atomic_load_explicit(&generations[i], memory_order_relaxed) + 1;
        j->ring[gen % SLK_AVAIL_JOURNAL] = (struct change){gen, INT32_MIN, INT32_MAX};
        atomic_store_explicit(&generations[i], gen, memory_order_release);
        journal_unlock(j);
    }
}

uint32_t slk_avail_gen(const char *instructor)
{
    return atomic_load_explicit(&generations[hash_bytes(instructor, strlen(instructor)) % GEN_SLOTS],
                                memory_order_acquire);
}

bool slk_avail_changes_since(const char *instructor, uint32_t since, struct slk_unit_range *out, size_t *n,
                             uint32_t *gen)
{
    size_t i = hash_bytes(instructor, strlen(instructor)) % GEN_SLOTS;
    struct journal *j = &journals[i];
    bool known = true;
    journal_lock(j);
    uint32_t now = atomic_load_explicit(&generations[i], memory_order_relaxed);
    *n = 0;
    if (now - since > SLK_AVAIL_JOURNAL)
        known = false;
    for (uint32_t g = since + 1; known && g != now + 1; g++) {
        const struct change *c = &j->ring[g % SLK_AVAIL_JOURNAL];
        if (c->gen != g) {
            known = false;
            break;
        }
        bool unknown_extent = c->lo == INT32_MIN && c->hi == INT32_MAX;
        out[(*n)++] =
            unknown_extent ? (struct slk_unit_range){INT64_MIN, INT64_MAX} : (struct slk_unit_range){c->lo, c->hi};
    }
    journal_unlock(j);
    *gen = now;
    return known;
}

/* The freed-units table: generations only (refusals are kept for a second at most and re-asked whole). */

void slk_freed_gen_bump(const char *tag, size_t len)
{
    atomic_fetch_add_explicit(&freed_generations[hash_bytes(tag, len) % GEN_SLOTS], 1, memory_order_relaxed);
}

void slk_freed_gen_bump_key(const char *key, size_t len)
{
    size_t tag_len;
    const char *tag = hash_tag(key, len, &tag_len);
    if (tag != NULL)
        slk_freed_gen_bump(tag, tag_len);
}

void slk_freed_gen_bump_all(void)
{
    atomic_fetch_add_explicit(&freed_epoch, 1, memory_order_relaxed);
}

/* Both parts only grow, so their sum moves whenever either does. */
uint32_t slk_freed_gen(const char *instructor)
{
    return atomic_load_explicit(&freed_generations[hash_bytes(instructor, strlen(instructor)) % GEN_SLOTS],
                                memory_order_relaxed) +
           atomic_load_explicit(&freed_epoch, memory_order_relaxed);
}

void slk_avail_basis_clear(struct slk_avail_basis *b)
{
    slk_avail_plan_clear(&b->plan);
    free(b->states);
    free(b->expires);
    memset(b, 0, sizeof(*b));
}

struct entry {
    char *key;
    size_t key_len;
    char *body;
    size_t len;
    char etag[24];
    char instructor[SLK_MAX_ID_LEN + 1];
    uint32_t gen;
    uint64_t serial;
    struct slk_avail_basis basis;
};

struct slk_avail_cache {
    uint64_t serials;
    struct entry slots[CACHE_SLOTS];
};

struct slk_avail_cache *slk_avail_cache_create(void)
{
    return calloc(1, sizeof(struct slk_avail_cache));
}

static void entry_clear(struct entry *e)
{
    free(e->key);
    free(e->body);
    slk_avail_basis_clear(&e->basis);
    memset(e, 0, sizeof(*e));
}

void slk_avail_cache_free(struct slk_avail_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        entry_clear(&c->slots[i]);
    free(c);
}

static struct entry *set_of(struct slk_avail_cache *c, const char *key, size_t key_len)
{
    return &c->slots[hash_bytes(key, key_len) % (CACHE_SLOTS / CACHE_WAYS) * CACHE_WAYS];
}

static bool holds_key(const struct entry *e, const char *key, size_t key_len)
{
    return e->key != NULL && e->key_len == key_len && memcmp(e->key, key, key_len) == 0;
}

static struct entry *find(struct slk_avail_cache *c, const char *key, size_t key_len)
{
    struct entry *set = set_of(c, key, key_len);
    for (int i = 0; i < CACHE_WAYS; i++) {
        if (holds_key(&set[i], key, key_len))
            return &set[i];
    }
    return NULL;
}

/* Where a new reply of key goes: its old slot, else an empty one, else the one kept longest ago. */
static struct entry *slot_for(struct slk_avail_cache *c, const char *key, size_t key_len)
{
    struct entry *old = find(c, key, key_len);
    if (old != NULL)
        return old;
    struct entry *set = set_of(c, key, key_len), *pick = &set[0];
    for (int i = 0; i < CACHE_WAYS; i++) {
        if (set[i].key == NULL)
            return &set[i];
        if (set[i].serial < pick->serial)
            pick = &set[i];
    }
    return pick;
}

static void fill_hit(const struct entry *e, struct slk_avail_hit *hit)
{
    hit->body = e->body;
    hit->len = e->len;
    hit->etag = e->etag;
    hit->basis = &e->basis;
    hit->serial = e->serial;
    hit->gen = e->gen;
    hit->num_changes = 0;
    hit->held_due = false;
}

/* Read in full too long ago, the clock went back, or its first candidate start has begun: read it all again. */
static bool too_old(const struct entry *e, int64_t now_ms)
{
    const struct slk_avail_basis *b = &e->basis;
    return now_ms - b->read_ms >= SLK_AVAIL_FULL_READ_MS || now_ms < b->read_ms ||
           (b->plan.num_starts > 0 && b->plan.starts[0] <= now_ms);
}

static bool held_due(const struct entry *e, int64_t now_ms)
{
    return now_ms - e->basis.held_read_ms >= SLK_AVAIL_HELD_CHECK_MS || now_ms < e->basis.held_read_ms;
}

/* The kept reply `serial` of key, if it is still kept. */
static struct entry *kept(struct slk_avail_cache *c, const char *key, size_t key_len, uint64_t serial)
{
    struct entry *e = find(c, key, key_len);
    return e != NULL && e->serial == serial ? e : NULL;
}

enum slk_avail_lookup slk_avail_cache_get(struct slk_avail_cache *c, const char *instructor, const char *key,
                                          size_t key_len, int64_t now_ms, struct slk_avail_hit *hit)
{
    struct entry *e = find(c, key, key_len);
    if (e == NULL)
        return SLK_AVAIL_MISS;
    if (too_old(e, now_ms) || strcmp(e->instructor, instructor) != 0) {
        entry_clear(e);
        return SLK_AVAIL_MISS;
    }
    fill_hit(e, hit);
    hit->held_due = held_due(e, now_ms);
    if (hit->held_due)
        e->basis.held_read_ms = now_ms; /* one re-read at a time: askers meanwhile get the reply as kept */
    if (e->gen == slk_avail_gen(instructor))
        return hit->held_due ? SLK_AVAIL_CHANGED : SLK_AVAIL_HIT;
    if (!slk_avail_changes_since(instructor, e->gen, hit->changes, &hit->num_changes, &hit->gen)) {
        entry_clear(e);
        return SLK_AVAIL_MISS;
    }
    return SLK_AVAIL_CHANGED;
}

bool slk_avail_cache_put(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                         uint32_t gen, struct slk_avail_basis *basis, char *body, size_t len, const char *etag)
{
    if (strlen(instructor) > SLK_MAX_ID_LEN || strlen(etag) >= sizeof(((struct entry *)0)->etag))
        return false;
    char *key_copy = malloc(key_len);
    if (key_copy == NULL)
        return false;
    memcpy(key_copy, key, key_len);
    struct entry *e = slot_for(c, key, key_len);
    entry_clear(e);
    e->key = key_copy;
    e->key_len = key_len;
    e->body = body;
    e->len = len;
    strcpy(e->etag, etag);
    strcpy(e->instructor, instructor);
    e->gen = gen;
    e->serial = ++c->serials;
    e->basis = *basis;
    memset(basis, 0, sizeof(*basis));
    return true;
}

bool slk_avail_cache_peek(struct slk_avail_cache *c, const char *key, size_t key_len, uint64_t serial, int64_t now_ms,
                          struct slk_avail_hit *hit)
{
    struct entry *e = kept(c, key, key_len, serial);
    if (e == NULL || too_old(e, now_ms))
        return false;
    fill_hit(e, hit);
    return true;
}

bool slk_avail_cache_renew(struct slk_avail_cache *c, const char *key, size_t key_len, uint64_t serial, uint32_t gen,
                           int64_t held_read_ms, struct slk_avail_hit *hit)
{
    struct entry *e = kept(c, key, key_len, serial);
    if (e == NULL)
        return false;
    e->gen = gen;
    if (held_read_ms > e->basis.held_read_ms)
        e->basis.held_read_ms = held_read_ms;
    fill_hit(e, hit);
    return true;
}
