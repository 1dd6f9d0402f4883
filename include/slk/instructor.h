/*
 * Instructor settings: parsing and validation of the PUT body, their JSON
 * form (the same object is the API reply and the copy cached in Redis),
 * the weekly-window test, and a per-worker cache.
 */
#ifndef SLK_INSTRUCTOR_H
#define SLK_INSTRUCTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "slk/common.h"
#include "slk/timeutil.h"

#define SLK_MAX_WINDOWS 64
#define SLK_MAX_TZ_LEN 64

struct slk_window {
    int day;       /* 0 = Monday .. 6 = Sunday */
    int start_min; /* minutes after local midnight */
    int end_min;   /* exclusive; 1440 for "24:00" */
};

struct slk_instructor {
    char id[SLK_MAX_ID_LEN + 1];
    char timezone[SLK_MAX_TZ_LEN + 1];
    int granularity_minutes;
    int hold_seconds;
    int buffer_minutes;
    bool requires_acceptance;
    struct slk_window weekly[SLK_MAX_WINDOWS];
    int num_weekly;
    int64_t version;
    int64_t updated_ms;
};

/*
 * Fills ins from a settings object, defaults for absent fields. On invalid
 * input returns SLK_EINVAL with *bad_field naming the field and *why a
 * sentence (both static strings).
 */
int slk_instructor_parse(struct slk_instructor *ins, const char *id, const json_t *obj, int default_hold_seconds,
                         const char **bad_field, const char **why) SLK_MUST_CHECK;

/* The settings object (API reply, Redis cache): id, timezone, …, weekly, version, updated_at. New reference. */
json_t *slk_instructor_to_json(const struct slk_instructor *ins);

/* weekly as a JSON array (new reference), for the Postgres jsonb column. */
json_t *slk_instructor_weekly_json(const struct slk_instructor *ins);

/* True when the grid unit starting at this local weekday (0 = Monday) and minute of the day lies inside a window. */
bool slk_instructor_in_window(const struct slk_instructor *ins, int weekday, int minute);

/*
 * True when every grid unit of [start_ms, end_ms) lies inside one of the
 * weekly windows in the instructor's local time.
 */
bool slk_instructor_covers(const struct slk_instructor *ins, struct slk_tz *tz, int64_t start_ms, int64_t end_ms);

/* Per-worker cache: id → settings with an open time zone. Not thread-safe. */
struct slk_instructor_cache;

struct slk_instructor_entry {
    struct slk_instructor ins;
    struct slk_tz *tz;
};

struct slk_instructor_cache *slk_instructor_cache_create(void);
void slk_instructor_cache_free(struct slk_instructor_cache *c);
/* Valid until the next put/remove on this cache. */
struct slk_instructor_entry *slk_instructor_cache_get(struct slk_instructor_cache *c, const char *id);
/* Copies ins in (opening its zone); returns the entry or NULL on failure. */
struct slk_instructor_entry *slk_instructor_cache_put(struct slk_instructor_cache *c, const struct slk_instructor *ins);

#endif
