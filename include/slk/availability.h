/*
 * Free slots of an instructor (R-AVAIL), computed in two steps around one
 * Redis call: slk_avail_plan() lists the candidate starts (on the local
 * grid, inside the weekly windows, in the future) and the unit keys they
 * need; after Redis reports each unit's state, slk_avail_slots() keeps the
 * candidates whose units (buffer included) are all free.
 *
 * Candidates are real instants: a local time that does not exist (spring
 * forward) is never offered, and both occurrences of a repeated local time
 * (fall back) are.
 */
#ifndef SLK_AVAILABILITY_H
#define SLK_AVAILABILITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "slk/instructor.h"

#define SLK_AVAIL_MAX_DAYS 62

enum slk_unit_state {
    SLK_UNIT_FREE = 0,
    SLK_UNIT_HELD,    /* a live hold: expires by itself */
    SLK_UNIT_BOOKED,  /* paid/confirmed booking */
    SLK_UNIT_BLOCKED, /* blocked by the instructor */
};

/*
 * The grid units that overlap [start_ms, end_ms): every instant u on the
 * instructor's local grid with u < end and u + grid > start, as minutes
 * since the epoch (the unit key), ascending, appended to *out (realloc'd;
 * *len and *cap track it). At most max_units in total, else SLK_ETOOBIG.
 */
int slk_grid_units(const struct slk_instructor *ins, struct slk_tz *tz, int64_t start_ms, int64_t end_ms,
                   size_t max_units, int64_t **out, size_t *len, size_t *cap) SLK_MUST_CHECK;

struct slk_avail_plan {
    int64_t *starts; /* candidate starts, ascending */
    size_t num_starts;
    int64_t *minutes; /* unit keys needed (minutes since the epoch), ascending, unique */
    size_t num_minutes;
    int duration_minutes;
};

/*
 * Plans [from_ms, to_ms) for slots of duration_minutes. Returns 0, or
 * SLK_ENOMEM. The plan owns its arrays: slk_avail_plan_clear().
 */
int slk_avail_plan(struct slk_avail_plan *p, const struct slk_instructor *ins, struct slk_tz *tz, int64_t from_ms,
                   int64_t to_ms, int duration_minutes, int64_t now_ms) SLK_MUST_CHECK;
void slk_avail_plan_clear(struct slk_avail_plan *p);

/* Unit keys' minutes since the epoch, [lo, hi). A change of unknown extent covers every minute. */
struct slk_unit_range {
    int64_t lo, hi;
};

/*
 * The plan minutes whose state the changes may have altered, as ascending
 * indexes into p->minutes (out: room for p->num_minutes); returns how many.
 * A change is a unit range or a booking's own range (without its buffer),
 * so each is widened by the buffer and one unit on either side. With
 * held_of (the plan minutes' states), the minutes held count as altered too:
 * a hold may have lapsed without a word.
 */
size_t slk_avail_plan_touched(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                              const struct slk_unit_range *changes, size_t n, const unsigned char *held_of,
                              size_t *out);

/*
 * The reply body: head, the slots array as JSON, tail, in one malloc'd text
 * (NULL on OOM). The array holds [{"start_time","end_time"}] for free slots;
 * with include_held also the taken ones, each with "state" ("free", "held"
 * with "hold_expires_at", "booked", "blocked"). states/expires are per plan
 * minute. Written by hand rather than through jansson: a 62-day answer has
 * thousands of slots and nothing in it needs escaping.
 */
char *slk_avail_slots_json(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                           const unsigned char *states, const int64_t *expires_ms, bool include_held, const char *head,
                           const char *tail, size_t *len);

/*
 * The free-slots body (include_held false) after a few units changed:
 * old_body, rendered by slk_avail_slots_json() for the same plan, head and
 * tail from old_states, with the slots whose state the touched plan minutes
 * changed added or taken out. The same bytes slk_avail_slots_json() gives
 * for states, at the cost of the changes rather than of the whole window.
 * NULL when old_body is not in the shape expected (render it afresh then).
 */
char *slk_avail_slots_json_patch(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                                 const unsigned char *old_states, const unsigned char *states, const size_t *touched,
                                 size_t n_touched, const char *old_body, size_t old_len, const char *head,
                                 const char *tail, size_t *len);

#endif
