/*
 * Availability replies kept for a moment (R-AVAIL under UI-shaped load).
 *
 * A reply is served again only while nothing of its instructor changed:
 * every instructor has a generation number (in a process-wide table of
 * hashed slots, so a collision only costs a miss) that is bumped when this
 * process sends a script that changes the instructor's units, and when a
 * change made elsewhere is announced on the Redis events channel or a unit
 * key expires. A reply remembers the generation seen when its Redis read was
 * sent, and is dropped after SLK_AVAIL_CACHE_TTL_MS whatever happens, which
 * bounds what a lost notification can cost (an expired hold shown taken,
 * never a taken slot shown free, for that long).
 */
#ifndef SLK_AVAIL_CACHE_H
#define SLK_AVAIL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define SLK_AVAIL_CACHE_TTL_MS 1000

/* Generations: thread-safe. tag is the instructor id (a key's hash tag). */
void slk_avail_gen_bump(const char *tag, size_t len);
/* Bumps the generation of the hash tag found in a Redis key ("slk:{i}:…"); no-op without one. */
void slk_avail_gen_bump_key(const char *key, size_t len);
uint32_t slk_avail_gen(const char *instructor);

/*
 * Freed-units generations (refusal_cache.h), same table shape: bumped only by
 * changes that may free units (every unit-changing script but a hold, any
 * announcement but "held"), so a stampede of hold attempts does not wipe the
 * refusals it relies on. bump_all: for everyone, when announcements may have
 * been missed (the events connection was lost).
 */
void slk_freed_gen_bump(const char *tag, size_t len);
void slk_freed_gen_bump_key(const char *key, size_t len);
void slk_freed_gen_bump_all(void);
uint32_t slk_freed_gen(const char *instructor);

/* One worker's replies (not thread-safe; one per loop). */
struct slk_avail_cache;
struct slk_avail_cache *slk_avail_cache_create(void);
void slk_avail_cache_free(struct slk_avail_cache *c);

struct slk_avail_hit {
    const char *body; /* valid until the next store into the cache */
    size_t len;
    const char *etag;
};

/* key: anything that identifies the question (instructor, settings version, query). */
int slk_avail_cache_get(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                        int64_t now_ms, struct slk_avail_hit *hit);
/* Copies body and etag. gen: slk_avail_gen() read before the Redis read was sent. */
void slk_avail_cache_put(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                         uint32_t gen, int64_t now_ms, const char *body, size_t len, const char *etag);

#endif
