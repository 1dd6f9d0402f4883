#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slk/byte_cache.h"

struct entry {
    char *key;     /* an exact copy; NULL until the entry is first used */
    uint64_t used; /* the cache's clock at the last get or put: the least recent goes first */
    uint32_t hash;
    uint32_t len; /* 0: empty */
    uint32_t cap; /* bytes allocated at key, reused by the next key that fits */
};

struct slk_byte_cache {
    struct entry *entries;
    unsigned char *values;
    size_t value_size, stride, max_key_len;
    size_t set_mask;
    uint64_t clock;
};

struct slk_byte_cache *slk_byte_cache_create(size_t entries, size_t value_size, size_t max_key_len)
{
    if (max_key_len == 0 || max_key_len > UINT32_MAX)
        return NULL;
    size_t sets = 1;
    while (sets * SLK_BYTE_CACHE_WAYS < entries)
        sets *= 2;
    struct slk_byte_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->value_size = value_size;
    c->stride = (value_size + 15) & ~(size_t)15; /* each value aligned for any member type */
    c->max_key_len = max_key_len;
    c->set_mask = sets - 1;
    c->entries = calloc(sets * SLK_BYTE_CACHE_WAYS, sizeof(struct entry));
    c->values = calloc(sets * SLK_BYTE_CACHE_WAYS, c->stride > 0 ? c->stride : 1);
    if (c->entries == NULL || c->values == NULL) {
        slk_byte_cache_free(c);
        return NULL;
    }
    return c;
}

void slk_byte_cache_free(struct slk_byte_cache *c)
{
    if (c == NULL)
        return;
    if (c->entries != NULL) {
        for (size_t i = 0; i < (c->set_mask + 1) * SLK_BYTE_CACHE_WAYS; i++)
            free(c->entries[i].key);
    }
    free(c->entries);
    free(c->values);
    free(c);
}

/*
 * The whole key, eight bytes at a time (a byte-wise FNV-1a cost ~860
 * instructions a lookup over a token), finished with MurmurHash3's 64-bit
 * mixer so that every bit reaches the set index. Hashing only the ends
 * would put the bodies of a thousand students that differ only in the
 * middle (where a client puts the student's id) into one set.
 */
static uint32_t hash_of(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = len * 0x9e3779b97f4a7c15ULL, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    if (len > 0) {
        w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

static struct entry *set_of(struct slk_byte_cache *c, uint32_t hash)
{
    return &c->entries[(hash & c->set_mask) * SLK_BYTE_CACHE_WAYS];
}

static struct entry *find(struct entry *set, uint32_t hash, const void *key, size_t len)
{
    for (int i = 0; i < SLK_BYTE_CACHE_WAYS; i++) {
        struct entry *e = &set[i];
        if (e->len == len && e->hash == hash && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static unsigned char *value_of(struct slk_byte_cache *c, const struct entry *e)
{
    return c->values + (size_t)(e - c->entries) * c->stride;
}

const void *slk_byte_cache_get(struct slk_byte_cache *c, const void *key, size_t len)
{
    if (len == 0 || len > c->max_key_len)
        return NULL;
    uint32_t hash = hash_of(key, len);
    struct entry *e = find(set_of(c, hash), hash, key, len);
    if (e == NULL)
        return NULL;
    e->used = ++c->clock;
    return value_of(c, e);
}

/* Where a new key goes: an empty entry, else the one used least recently. */
static struct entry *victim(struct entry *set)
{
    struct entry *v = &set[0];
    for (int i = 0; i < SLK_BYTE_CACHE_WAYS; i++) {
        if (set[i].len == 0)
            return &set[i];
        if (set[i].used < v->used)
            v = &set[i];
    }
    return v;
}

void slk_byte_cache_put(struct slk_byte_cache *c, const void *key, size_t len, const void *value)
{
    if (len == 0 || len > c->max_key_len)
        return;
    uint32_t hash = hash_of(key, len);
    struct entry *set = set_of(c, hash);
    struct entry *e = find(set, hash, key, len);
    if (e == NULL) {
        e = victim(set);
        if (e->cap < len) {
            char *grown = realloc(e->key, len);
            if (grown == NULL)
                return; /* the entry keeps what it had */
            e->key = grown;
            e->cap = (uint32_t)len;
        }
        memcpy(e->key, key, len);
        e->len = (uint32_t)len;
        e->hash = hash;
    }
    e->used = ++c->clock;
    if (c->value_size > 0)
        memcpy(value_of(c, e), value, c->value_size);
}
