#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "slk/avail_cache.h"
#include "slk/common.h"

#define GEN_SLOTS 4096   /* instructors per process before two share a generation (a shared one only costs misses) */
#define CACHE_SLOTS 1024 /* replies per worker, direct-mapped */

static _Atomic uint32_t generations[GEN_SLOTS];
static _Atomic uint32_t freed_generations[GEN_SLOTS];
static _Atomic uint32_t freed_epoch;

static uint32_t hash_bytes(const char *s, size_t len)
{
    return slk_fnv1a(SLK_FNV1A_INIT, s, len);
}

/* Two tables of the same shape: availability replies (any unit change) and kept refusals (units freed). */

static void table_bump(_Atomic uint32_t *table, const char *tag, size_t len)
{
    atomic_fetch_add_explicit(&table[hash_bytes(tag, len) % GEN_SLOTS], 1, memory_order_relaxed);
}

/* Bumps the entry of the hash tag of "slk:{i}:…"; a key without one bumps nothing. */
static void table_bump_key(_Atomic uint32_t *table, const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    const char *close = open != NULL ? memchr(open + 1, '}', len - (size_t)(open + 1 - key)) : NULL;
    if (close != NULL && close > open + 1)
        table_bump(table, open + 1, (size_t)(close - open - 1));
}

static uint32_t table_get(_Atomic uint32_t *table, const char *instructor)
{
    return atomic_load_explicit(&table[hash_bytes(instructor, strlen(instructor)) % GEN_SLOTS], memory_order_relaxed);
}

void slk_avail_gen_bump(const char *tag, size_t len)
{
    table_bump(generations, tag, len);
}

void slk_avail_gen_bump_key(const char *key, size_t len)
{
    table_bump_key(generations, key, len);
}

uint32_t slk_avail_gen(const char *instructor)
{
    return table_get(generations, instructor);
}

void slk_freed_gen_bump(const char *tag, size_t len)
{
    table_bump(freed_generations, tag, len);
}

void slk_freed_gen_bump_key(const char *key, size_t len)
{
    table_bump_key(freed_generations, key, len);
}

void slk_freed_gen_bump_all(void)
{
    atomic_fetch_add_explicit(&freed_epoch, 1, memory_order_relaxed);
}

/* Both parts only grow, so their sum moves whenever either does. */
uint32_t slk_freed_gen(const char *instructor)
{
    return table_get(freed_generations, instructor) + atomic_load_explicit(&freed_epoch, memory_order_relaxed);
}

struct entry {
    char *key;
    size_t key_len;
    char *body;
    size_t len;
    char etag[24];
    char instructor[SLK_MAX_ID_LEN + 1];
    uint32_t gen;
    int64_t stored_ms;
};

struct slk_avail_cache {
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

int slk_avail_cache_get(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                        int64_t now_ms, struct slk_avail_hit *hit)
{
    struct entry *e = &c->slots[hash_bytes(key, key_len) % CACHE_SLOTS];
    if (e->key == NULL || e->key_len != key_len || memcmp(e->key, key, key_len) != 0)
        return SLK_ENOTFOUND;
    if (now_ms - e->stored_ms >= SLK_AVAIL_CACHE_TTL_MS || now_ms < e->stored_ms ||
        e->gen != slk_avail_gen(instructor) || strcmp(e->instructor, instructor) != 0) {
        entry_clear(e);
        return SLK_ENOTFOUND;
    }
    hit->body = e->body;
    hit->len = e->len;
    hit->etag = e->etag;
    return 0;
}

void slk_avail_cache_put(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                         uint32_t gen, int64_t now_ms, const char *body, size_t len, const char *etag)
{
    if (gen != slk_avail_gen(instructor) || strlen(instructor) > SLK_MAX_ID_LEN || strlen(etag) >= 24)
        return; /* changed while we were reading: not worth keeping */
    struct entry *e = &c->slots[hash_bytes(key, key_len) % CACHE_SLOTS];
    entry_clear(e);
    e->key = malloc(key_len);
    e->body = malloc(len);
    if (e->key == NULL || e->body == NULL) {
        entry_clear(e);
        return;
    }
    memcpy(e->key, key, key_len);
    e->key_len = key_len;
    memcpy(e->body, body, len);
    e->len = len;
    strcpy(e->etag, etag);
    strcpy(e->instructor, instructor);
    e->gen = gen;
    e->stored_ms = now_ms;
}
