/*
 * Availability replies kept for a moment (R-AVAIL under UI-shaped load).
 *
 * A reply is served again only while nothing of its instructor changed:
 * every instructor has a generation number (in a process-wide table of
 * hashed slots, so a collision only costs extra reads) that is bumped when
 * this process sends a script that changes the instructor's units, and when
 * a change made elsewhere is announced on the Redis events channel or a unit
 * key expires. Each bump also records which units it touched, in a short
 * journal per slot: a kept reply whose instructor changed is brought up to
 * date by reading only the units the journal names (a hold changes a handful
 * of a week's hundreds), and is served as it was when none of them changed.
 *
 * A kept reply remembers the generation seen when its Redis read was sent.
 * Two changes are not announced: a hold that lapses (Redis tells of an
 * expired key only once it finds it, which with millions of keys can take
 * minutes unless something reads the key), and a hold extended. So the
 * units a kept reply shows held are read again SLK_AVAIL_HELD_CHECK_MS after
 * they were last read (by the first request that finds them due; the ones
 * behind it get the reply as kept meanwhile). Everything is read again
 * SLK_AVAIL_FULL_READ_MS after the last full read whatever happens, which
 * bounds what a change announced nowhere costs (units refilled after Redis
 * restarted empty; an announcement lost on its way): a unit shown in a state
 * it left, for that long. Holds, releases, bookings and blocks are all
 * announced (blocks by handlers/blocks.c once taken). Announcements missed
 * while the events connection was down count as changes of every instructor
 * (slk_avail_gen_bump_all). A reply is read in full as soon as its first
 * candidate start is no longer ahead.
 *
 * Reading everything every second instead cost, for a week of 15-minute
 * units, an MGET of 673 keys (~500 us of Redis) per instructor per second:
 * the largest single cost of availability traffic in Redis.
 */
#ifndef SLK_AVAIL_CACHE_H
#define SLK_AVAIL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/availability.h"

#define SLK_AVAIL_HELD_CHECK_MS 1000 /* held units read again after this */
#define SLK_AVAIL_FULL_READ_MS 10000 /* every unit read again after this */
#define SLK_AVAIL_JOURNAL 16         /* changes remembered per generation slot */

/* Generations: thread-safe. tag is the instructor id (a key's hash tag). */
void slk_avail_gen_bump(const char *tag, size_t len); /* units unknown: every one counts as changed */
void slk_avail_gen_bump_units(const char *tag, size_t len, struct slk_unit_range units);
/*
 * A script's keys ("slk:{i}:…"): bumps the hash tag of the first, with the
 * span of the unit keys ("slk:{i}:u:<minute>") among them; no-op without a
 * hash tag.
 */
void slk_avail_gen_bump_keys(int n, const char *const *keys, const size_t *lens);
/* Every instructor changed, units unknown: when announcements may have been missed. */
void slk_avail_gen_bump_all(void);
uint32_t slk_avail_gen(const char *instructor);
/*
 * The unit ranges changed since generation `since`, at most
 * SLK_AVAIL_JOURNAL, and the generation they lead to. False when the journal
 * no longer holds all of them.
 */
bool slk_avail_changes_since(const char *instructor, uint32_t since, struct slk_unit_range *out, size_t *n,
                             uint32_t *gen);

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

/* What a kept reply was computed from: its plan and every planned unit's state. */
struct slk_avail_basis {
    struct slk_avail_plan plan;
    unsigned char *states; /* per plan minute (enum slk_unit_state) */
    int64_t *expires;      /* per plan minute: a held unit's expiry, unix ms (include_held), else 0 */
    int64_t from_ms, to_ms;
    int64_t read_ms;      /* when every unit was last read */
    int64_t held_read_ms; /* when the units shown held were last read (a full read reads them too) */
};
void slk_avail_basis_clear(struct slk_avail_basis *b);

/* One worker's replies (not thread-safe; one per loop). */
struct slk_avail_cache;
struct slk_avail_cache *slk_avail_cache_create(void);
void slk_avail_cache_free(struct slk_avail_cache *c);

enum slk_avail_lookup {
    SLK_AVAIL_MISS,    /* nothing kept (or too old): read everything */
    SLK_AVAIL_HIT,     /* serve body as it is */
    SLK_AVAIL_CHANGED, /* read the units in changes (the instructor changed since), and those held if held_due */
};

struct slk_avail_hit {
    const char *body; /* these stay valid until the next put or get on the cache */
    size_t len;
    const char *etag;
    const struct slk_avail_basis *basis;
    uint64_t serial;                                  /* which kept reply this is (renew) */
    struct slk_unit_range changes[SLK_AVAIL_JOURNAL]; /* SLK_AVAIL_CHANGED */
    size_t num_changes;
    uint32_t gen;  /* the generation the changes lead to */
    bool held_due; /* SLK_AVAIL_CHANGED: the units shown held are to be read again */
};

/* key: anything that identifies the question (instructor, settings version, query). */
enum slk_avail_lookup slk_avail_cache_get(struct slk_avail_cache *c, const char *instructor, const char *key,
                                          size_t key_len, int64_t now_ms, struct slk_avail_hit *hit);
/*
 * Keeps a reply: takes body (malloc'd; it stays valid until the next put)
 * and basis' arrays (basis is left empty), copies etag. False when it is not
 * kept: body stays the caller's, basis is untouched. gen: slk_avail_gen()
 * read before the Redis read was sent; a change since then is read at the
 * next get.
 */
bool slk_avail_cache_put(struct slk_avail_cache *c, const char *instructor, const char *key, size_t key_len,
                         uint32_t gen, struct slk_avail_basis *basis, char *body, size_t len, const char *etag);
/* The kept reply `serial` of key, while it is kept and younger than the time bound at now_ms. */
bool slk_avail_cache_peek(struct slk_avail_cache *c, const char *key, size_t key_len, uint64_t serial, int64_t now_ms,
                          struct slk_avail_hit *hit);
/*
 * The kept reply `serial` of key is current as of gen (the changes since its
 * generation touched none of its units), and its held units as of
 * held_read_ms (0: as they were): true, with hit's body, etag and basis,
 * while it is still kept.
 */
bool slk_avail_cache_renew(struct slk_avail_cache *c, const char *key, size_t key_len, uint64_t serial, uint32_t gen,
                           int64_t held_read_ms, struct slk_avail_hit *hit);

#endif
