#include <stdlib.h>
#include <string.h>

#include "slk/availability.h"
#include "slk/timeutil.h"

#define MINUTE_MS 60000

struct i64_array {
    int64_t *v;
    size_t len, cap;
};

static int push(struct i64_array *a, int64_t x)
{
    if (a->len == a->cap) {
        size_t cap = a->cap == 0 ? 256 : a->cap * 2;
        int64_t *v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL)
            return SLK_ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->len++] = x;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static size_t sort_unique(int64_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t out = 1;
    for (size_t i = 1; i < n; i++) {
        if (v[i] != v[out - 1])
            v[out++] = v[i];
    }
    return out;
}

/* Minute of the local day, or -1 when the instant is not on a whole local minute. */
static int local_minute(struct slk_tz *tz, int64_t t, int *weekday)
{
    struct slk_local_time lt;
    if (t % MINUTE_MS != 0 || slk_tz_to_local(tz, t, &lt) != 0 || lt.second != 0)
        return -1;
    *weekday = lt.weekday;
    return lt.hour * 60 + lt.minute;
}

static bool in_window(const struct slk_instructor *ins, int weekday, int minute)
{
    for (int i = 0; i < ins->num_weekly; i++) {
        const struct slk_window *w = &ins->weekly[i];
        if (w->day == weekday && minute >= w->start_min && minute + ins->granularity_minutes <= w->end_min)
            return true;
    }
    return false;
}

/* Every unit of [s, s + duration) inside a window, in local time. */
static bool slot_in_windows(const struct slk_instructor *ins, struct slk_tz *tz, int64_t s, int units)
{
    for (int i = 0; i < units; i++) {
        int weekday, minute = local_minute(tz, s + (int64_t)i * ins->granularity_minutes * MINUTE_MS, &weekday);
        if (minute < 0 || !in_window(ins, weekday, minute))
            return false;
    }
    return true;
}

static int add_unit_minutes(struct i64_array *minutes, const struct slk_instructor *ins, int64_t s, int units)
{
    int g = ins->granularity_minutes;
    int64_t first = s / MINUTE_MS - ins->buffer_minutes;
    int total = units + 2 * (ins->buffer_minutes / g);
    for (int i = 0; i < total; i++) {
        if (push(minutes, first + (int64_t)i * g) != 0)
            return SLK_ENOMEM;
    }
    return 0;
}

int slk_avail_plan(struct slk_avail_plan *p, const struct slk_instructor *ins, struct slk_tz *tz, int64_t from_ms,
                   int64_t to_ms, int duration_minutes, int64_t now_ms)
{
    memset(p, 0, sizeof(*p));
    p->duration_minutes = duration_minutes;
    struct i64_array starts = {0}, minutes = {0};
    int g = ins->granularity_minutes, units = duration_minutes / g;
    int64_t step = (int64_t)g * MINUTE_MS;
    int64_t s = (from_ms + MINUTE_MS - 1) / MINUTE_MS * MINUTE_MS;
    if (s <= now_ms)
        s = (now_ms / MINUTE_MS + 1) * MINUTE_MS;
    while (s < to_ms) {
        int weekday, minute = local_minute(tz, s, &weekday);
        /* Off the local grid (at the start, or after an offset change that is not a multiple of the grid):
         * walk minute by minute back into phase. */
        if (minute < 0 || minute % g != 0) {
            s += MINUTE_MS;
            continue;
        }
        if (slot_in_windows(ins, tz, s, units)) {
            if (push(&starts, s) != 0 || add_unit_minutes(&minutes, ins, s, units) != 0)
                goto fail;
        }
        s += step;
    }
    p->starts = starts.v;
    p->num_starts = starts.len;
    p->minutes = minutes.v;
    p->num_minutes = sort_unique(minutes.v, minutes.len);
    return 0;
fail:
    free(starts.v);
    free(minutes.v);
    return SLK_ENOMEM;
}

int slk_grid_units(const struct slk_instructor *ins, struct slk_tz *tz, int64_t start_ms, int64_t end_ms,
                   size_t max_units, int64_t **out, size_t *len, size_t *cap)
{
    struct i64_array a = {*out, *len, *cap};
    int g = ins->granularity_minutes, rc = 0;
    int64_t step = (int64_t)g * MINUTE_MS;
    int64_t s = start_ms / MINUTE_MS * MINUTE_MS - (int64_t)(g - 1) * MINUTE_MS;
    while (s < end_ms && rc == 0) {
        int weekday, minute = local_minute(tz, s, &weekday);
        if (minute < 0 || minute % g != 0) {
            s += MINUTE_MS;
            continue;
        }
        if (s + step > start_ms)
            rc = a.len >= max_units ? SLK_ETOOBIG : push(&a, s / MINUTE_MS);
        s += step;
    }
    *out = a.v;
    *len = a.len;
    *cap = a.cap;
    return rc;
}

void slk_avail_plan_clear(struct slk_avail_plan *p)
{
    free(p->starts);
    free(p->minutes);
    memset(p, 0, sizeof(*p));
}

static size_t minute_index(const struct slk_avail_plan *p, int64_t minute)
{
    const int64_t *hit = bsearch(&minute, p->minutes, p->num_minutes, sizeof(int64_t), cmp_i64);
    return hit != NULL ? (size_t)(hit - p->minutes) : p->num_minutes;
}

/* The slot's combined state: booked beats held beats free; held expires with its last hold. */
static enum slk_unit_state slot_state(const struct slk_avail_plan *p, const struct slk_instructor *ins, int64_t s,
                                      const unsigned char *states, const int64_t *expires_ms, int64_t *expires)
{
    int g = ins->granularity_minutes;
    int total = p->duration_minutes / g + 2 * (ins->buffer_minutes / g);
    int64_t first = s / MINUTE_MS - ins->buffer_minutes;
    enum slk_unit_state state = SLK_UNIT_FREE;
    *expires = 0;
    for (int i = 0; i < total; i++) {
        size_t k = minute_index(p, first + (int64_t)i * g);
        if (k == p->num_minutes)
            return SLK_UNIT_BOOKED;
        if (states[k] == SLK_UNIT_BOOKED || states[k] == SLK_UNIT_BLOCKED)
            return states[k];
        if (states[k] == SLK_UNIT_HELD) {
            state = SLK_UNIT_HELD;
            if (expires_ms[k] > *expires)
                *expires = expires_ms[k];
        }
    }
    return state;
}

static json_t *slot_json(int64_t s, int duration_minutes)
{
    char start[32], end[32];
    slk_time_format_rfc3339(s, start);
    slk_time_format_rfc3339(s + (int64_t)duration_minutes * MINUTE_MS, end);
    return json_pack("{s:s, s:s}", "start_time", start, "end_time", end);
}

json_t *slk_avail_slots(const struct slk_avail_plan *p, const struct slk_instructor *ins, const unsigned char *states,
                        const int64_t *expires_ms, bool include_held)
{
    json_t *slots = json_array();
    for (size_t i = 0; slots != NULL && i < p->num_starts; i++) {
        int64_t expires;
        enum slk_unit_state st = slot_state(p, ins, p->starts[i], states, expires_ms, &expires);
        if (st != SLK_UNIT_FREE && !include_held)
            continue;
        json_t *slot = slot_json(p->starts[i], p->duration_minutes);
        if (slot == NULL) {
            json_decref(slots);
            return NULL;
        }
        if (include_held) {
            static const char *const names[] = {"free", "held", "booked", "blocked"};
            json_object_set_new(slot, "state", json_string(names[st]));
            if (st == SLK_UNIT_HELD) {
                char exp[32];
                slk_time_format_rfc3339(expires, exp);
                json_object_set_new(slot, "hold_expires_at", json_string(exp));
            }
        }
        json_array_append_new(slots, slot);
    }
    return slots;
}
