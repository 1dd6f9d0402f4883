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

/*
 * Local wall time by arithmetic: the zone's offset is looked up once per
 * stretch between two offset changes instead of once per instant.
 */
struct local_clock {
    struct slk_tz *tz;
    int64_t offset_ms;
    int64_t from_ms, until_ms; /* the offset holds in [from, until) */
    bool valid;
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Minute of the local day, or -1 when the instant is not on a whole local minute. */
static int local_minute(struct local_clock *c, int64_t t, int *weekday)
{
    if (!c->valid || t < c->from_ms || t >= c->until_ms) {
        if (slk_tz_offset(c->tz, t, &c->offset_ms, &c->until_ms) != 0)
            return -1;
        c->from_ms = t;
        c->valid = true;
    }
    int64_t local = t + c->offset_ms;
    int64_t day = floor_div(local, 86400000), ms = local - day * 86400000;
    if (ms % MINUTE_MS != 0)
        return -1;
    *weekday = (int)(((day + 3) % 7 + 7) % 7); /* 1970-01-01 was a Thursday; 0 = Monday */
    return (int)(ms / MINUTE_MS);
}

/* Every unit of [s, s + duration) inside a window, in local time. */
static bool slot_in_windows(const struct slk_instructor *ins, struct local_clock *clock, int64_t s, int units)
{
    int weekday, minute = local_minute(clock, s, &weekday), g = ins->granularity_minutes;
    int64_t end = s + (int64_t)units * g * MINUTE_MS;
    if (minute >= 0 && end <= clock->until_ms) {
        /* One offset for the whole slot: its units are the local minutes that follow, across midnight too. */
        for (int i = 0; i < units; i++, minute += g) {
            if (minute >= 1440) {
                minute -= 1440;
                weekday = (weekday + 1) % 7;
            }
            if (!slk_instructor_in_window(ins, weekday, minute))
                return false;
        }
        return true;
    }
    for (int i = 0; i < units; i++) {
        minute = local_minute(clock, s + (int64_t)i * g * MINUTE_MS, &weekday);
        if (minute < 0 || !slk_instructor_in_window(ins, weekday, minute))
            return false;
    }
    return true;
}

/*
 * Candidates come in ascending order and each one's units ascend, so the
 * list stays sorted by skipping the units that overlap the previous
 * candidate's. Only a grid whose phase shifted (an offset change that is not
 * a multiple of the grid) can bring an older unit out of order: *unsorted
 * then asks for a final sort.
 */
static int add_unit_minutes(struct i64_array *minutes, const struct slk_instructor *ins, int64_t s, int units,
                            bool *unsorted)
{
    int g = ins->granularity_minutes;
    int64_t first = s / MINUTE_MS - ins->buffer_minutes;
    int total = units + 2 * (ins->buffer_minutes / g);
    for (int i = 0; i < total; i++) {
        int64_t m = first + (int64_t)i * g;
        if (!*unsorted && minutes->len > 0 && m <= minutes->v[minutes->len - 1]) {
            /* The previous candidate's last units: a few steps back from the end, not a search. */
            size_t j = minutes->len;
            while (j > 0 && minutes->v[j - 1] > m)
                j--;
            if (j > 0 && minutes->v[j - 1] == m)
                continue;
            *unsorted = true; /* from here on the final sort_unique() removes duplicates */
        }
        if (push(minutes, m) != 0)
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
    struct local_clock clock = {.tz = tz};
    bool unsorted = false;
    int64_t s = (from_ms + MINUTE_MS - 1) / MINUTE_MS * MINUTE_MS;
    if (s <= now_ms)
        s = (now_ms / MINUTE_MS + 1) * MINUTE_MS;
    while (s < to_ms) {
        int weekday, minute = local_minute(&clock, s, &weekday);
        /* Off the local grid (at the start, or after an offset change that is not a multiple of the grid):
         * walk minute by minute back into phase. */
        if (minute < 0 || minute % g != 0) {
            s += MINUTE_MS;
            continue;
        }
        if (slot_in_windows(ins, &clock, s, units)) {
            if (push(&starts, s) != 0 || add_unit_minutes(&minutes, ins, s, units, &unsorted) != 0)
                goto fail;
        }
        s += step;
    }
    p->starts = starts.v;
    p->num_starts = starts.len;
    p->minutes = minutes.v;
    p->num_minutes = unsorted ? sort_unique(minutes.v, minutes.len) : minutes.len;
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
    struct local_clock clock = {.tz = tz};
    int g = ins->granularity_minutes, rc = 0;
    int64_t step = (int64_t)g * MINUTE_MS;
    /* Units that ended before now block nothing; never walk through them (or through centuries of old offsets). */
    int64_t earliest = slk_clock_now_ms() - 2 * step;
    if (start_ms < earliest)
        start_ms = earliest;
    int64_t s = start_ms / MINUTE_MS * MINUTE_MS - (int64_t)(g - 1) * MINUTE_MS;
    while (s < end_ms && rc == 0) {
        int weekday, minute = local_minute(&clock, s, &weekday);
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

/* The first index whose minute is >= minute. */
static size_t lower_bound(const int64_t *v, size_t n, int64_t minute)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < minute)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int64_t saturating_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

size_t slk_avail_plan_touched(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                              const struct slk_unit_range *changes, size_t n, const unsigned char *held_of, size_t *out)
{
    size_t count = 0;
    int64_t widen = (int64_t)ins->buffer_minutes + ins->granularity_minutes;
    unsigned char *marked = p->num_minutes > 0 ? calloc(p->num_minutes, 1) : NULL;
    if (marked == NULL) {
        /* Nothing to mark, or no memory to mark with: everything counts as touched. */
        for (size_t i = 0; i < p->num_minutes; i++)
            out[count++] = i;
        return count;
    }
    for (size_t c = 0; c < n; c++) {
        int64_t lo = saturating_add(changes[c].lo, -widen), hi = saturating_add(changes[c].hi, widen);
        for (size_t i = lower_bound(p->minutes, p->num_minutes, lo); i < p->num_minutes && p->minutes[i] < hi; i++)
            marked[i] = 1;
    }
    for (size_t i = 0; held_of != NULL && i < p->num_minutes; i++)
        marked[i] |= held_of[i] == SLK_UNIT_HELD;
    for (size_t i = 0; i < p->num_minutes; i++) {
        if (marked[i])
            out[count++] = i;
    }
    free(marked);
    return count;
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
    size_t k = p->num_minutes;
    for (int i = 0; i < total; i++) {
        int64_t m = first + (int64_t)i * g;
        /* Units are usually consecutive in the plan: look up only the first, then step. */
        if (k + 1 < p->num_minutes && p->minutes[k + 1] == m)
            k++;
        else
            k = minute_index(p, m);
        if (k == p->num_minutes)
            return SLK_UNIT_BOOKED;
        if (states[k] == SLK_UNIT_BOOKED || states[k] == SLK_UNIT_BLOCKED)
            return states[k];
        if (states[k] == SLK_UNIT_HELD) {
            state = SLK_UNIT_HELD;
            if (expires_ms != NULL && expires_ms[k] > *expires)
                *expires = expires_ms[k];
        }
    }
    return state;
}

/*
 * Instants as RFC 3339 text, 20 bytes each ("2030-01-07T09:00:00Z"): the
 * date part is formatted once per day, the starts coming in order.
 */
struct stamp_writer {
    int64_t day;
    char date[32];
};

#define DAY_MS ((int64_t)86400000)
#define STAMP_LEN 20

static bool stamp_fits(int64_t ms)
{
    /* Whole seconds within years 0000-9999; anything else takes the general formatter. */
    return ms % 1000 == 0 && ms >= -62167219200000LL && ms < 253402300800000LL;
}

static char *put_two(char *p, int v)
{
    *p++ = (char)('0' + v / 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

static char *put_text(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LITERAL(p, s) put_text((p), (s), sizeof(s) - 1)

static char *put_stamp(char *p, struct stamp_writer *w, int64_t ms)
{
    if (!stamp_fits(ms)) {
        char buf[32];
        slk_time_format_rfc3339(ms, buf);
        return put_text(p, buf, strlen(buf));
    }
    int64_t day = floor_div(ms, DAY_MS);
    if (day != w->day || w->date[0] == '\0') {
        slk_time_format_rfc3339(day * DAY_MS, w->date);
        w->day = day;
    }
    p = put_text(p, w->date, 11); /* "YYYY-MM-DDT" */
    int secs = (int)((ms - day * DAY_MS) / 1000);
    p = put_two(p, secs / 3600);
    *p++ = ':';
    p = put_two(p, secs / 60 % 60);
    *p++ = ':';
    p = put_two(p, secs % 60);
    *p++ = 'Z';
    return p;
}

/* A slot object's opening: {"start_time":"…","end_time":"…" (fixed width while stamp_fits()). */
static char *put_times(char *out, const struct slk_avail_plan *p, int64_t s, struct stamp_writer *starts,
                       struct stamp_writer *ends)
{
    out = PUT_LITERAL(out, "{\"start_time\":\"");
    out = put_stamp(out, starts, s);
    out = PUT_LITERAL(out, "\",\"end_time\":\"");
    out = put_stamp(out, ends, s + (int64_t)p->duration_minutes * MINUTE_MS);
    *out++ = '"';
    return out;
}

/* The longest slot object: both times, the longest state name, an expiry; each time at most 31 bytes. */
#define SLOT_MAX_LEN                                                                                                   \
    (sizeof("{\"start_time\":\"\",\"end_time\":\"\",\"state\":\"blocked\",\"hold_expires_at\":\"\"},") + 3 * 32)

char *slk_avail_slots_json(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                           const unsigned char *states, const int64_t *expires_ms, bool include_held, const char *head,
                           const char *tail, size_t *len)
{
    static const char *const names[] = {"free", "held", "booked", "blocked"};
    size_t head_len = strlen(head), tail_len = strlen(tail);
    char *buf = malloc(head_len + 2 + p->num_starts * SLOT_MAX_LEN + tail_len + 1);
    if (buf == NULL)
        return NULL;
    struct stamp_writer starts = {0}, ends = {0};
    char *out = put_text(buf, head, head_len);
    *out++ = '[';
    bool first = true;
    for (size_t i = 0; i < p->num_starts; i++) {
        int64_t expires, s = p->starts[i];
        enum slk_unit_state st = slot_state(p, ins, s, states, expires_ms, &expires);
        if (st != SLK_UNIT_FREE && !include_held)
            continue;
        if (!first)
            *out++ = ',';
        first = false;
        out = put_times(out, p, s, &starts, &ends);
        if (include_held) {
            out = PUT_LITERAL(out, ",\"state\":\"");
            out = put_text(out, names[st], strlen(names[st]));
            *out++ = '"';
            if (st == SLK_UNIT_HELD) {
                char stamp[32];
                slk_time_format_rfc3339(expires, stamp);
                out = PUT_LITERAL(out, ",\"hold_expires_at\":\"");
                out = put_text(out, stamp, strlen(stamp));
                *out++ = '"';
            }
        }
        *out++ = '}';
    }
    *out++ = ']';
    out = put_text(out, tail, tail_len);
    *out = '\0';
    *len = (size_t)(out - buf);
    return buf;
}

/* Free-only replies are fixed-width slot objects, so a few changed slots can be edited in place. */
#define FRAGMENT_LEN (sizeof("{\"start_time\":\"\",\"end_time\":\"\"}") - 1 + 2 * STAMP_LEN)
#define FRAGMENT_STRIDE (FRAGMENT_LEN + 1) /* and its comma */
#define START_TEXT_AT (sizeof("{\"start_time\":\"") - 1)

/* The first of the old fragments [from, n) whose start is not before text. */
static size_t fragment_at(const char *base, size_t from, size_t n, const char *text)
{
    size_t lo = from, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(base + mid * FRAGMENT_STRIDE + START_TEXT_AT, text, STAMP_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct patch_out {
    char *o;
    bool first;
};

static void emit_old(struct patch_out *po, const char *base, size_t from, size_t to)
{
    if (from >= to)
        return;
    if (!po->first)
        *po->o++ = ',';
    po->o = put_text(po->o, base + from * FRAGMENT_STRIDE, (to - from) * FRAGMENT_STRIDE - 1);
    po->first = false;
}

/* The starts whose units (buffer included) take in a touched minute, marked. */
static void mark_affected(const struct slk_avail_plan *p, const struct slk_instructor *ins, const size_t *touched,
                          size_t n_touched, unsigned char *marked)
{
    int64_t before = (int64_t)p->duration_minutes + ins->buffer_minutes, after = ins->buffer_minutes;
    for (size_t t = 0; t < n_touched; t++) {
        int64_t m = p->minutes[touched[t]];
        for (size_t i = lower_bound(p->starts, p->num_starts, (m - before) * MINUTE_MS);
             i < p->num_starts && p->starts[i] <= (m + after) * MINUTE_MS; i++)
            marked[i] = 1;
    }
}

char *slk_avail_slots_json_patch(const struct slk_avail_plan *p, const struct slk_instructor *ins,
                                 const unsigned char *old_states, const unsigned char *states, const size_t *touched,
                                 size_t n_touched, const char *old_body, size_t old_len, const char *head,
                                 const char *tail, size_t *len)
{
    size_t head_len = strlen(head), tail_len = strlen(tail);
    if (p->num_starts == 0 || !stamp_fits(p->starts[0]) ||
        !stamp_fits(p->starts[p->num_starts - 1] + (int64_t)p->duration_minutes * MINUTE_MS) ||
        old_len < head_len + 2 + tail_len || memcmp(old_body, head, head_len) != 0 || old_body[head_len] != '[' ||
        old_body[old_len - tail_len - 1] != ']' || memcmp(old_body + old_len - tail_len, tail, tail_len) != 0)
        return NULL;
    const char *base = old_body + head_len + 1;
    size_t array_len = old_len - head_len - 2 - tail_len;
    if (array_len > 0 && (array_len + 1) % FRAGMENT_STRIDE != 0)
        return NULL;
    size_t n_old = array_len > 0 ? (array_len + 1) / FRAGMENT_STRIDE : 0;
    unsigned char *marked = calloc(p->num_starts, 1);
    char *buf = marked != NULL ? malloc(old_len + p->num_starts * FRAGMENT_STRIDE + 1) : NULL;
    if (buf == NULL) {
        free(marked);
        return NULL;
    }
    mark_affected(p, ins, touched, n_touched, marked);
    struct patch_out po = {put_text(buf, head, head_len), true};
    *po.o++ = '[';
    size_t k = 0; /* old fragments before k are written */
    struct stamp_writer starts = {0}, ends = {0};
    for (size_t i = 0; i < p->num_starts; i++) {
        if (!marked[i])
            continue;
        int64_t ignored, s = p->starts[i];
        bool was_free = slot_state(p, ins, s, old_states, NULL, &ignored) == SLK_UNIT_FREE;
        bool is_free = slot_state(p, ins, s, states, NULL, &ignored) == SLK_UNIT_FREE;
        if (was_free == is_free)
            continue;
        char text[32];
        put_stamp(text, &starts, s);
        size_t at = fragment_at(base, k, n_old, text);
        bool listed = at < n_old && memcmp(base + at * FRAGMENT_STRIDE + START_TEXT_AT, text, STAMP_LEN) == 0;
        if (listed != was_free) { /* the old body does not say what the old states say: not ours to edit */
            free(marked);
            free(buf);
            return NULL;
        }
        emit_old(&po, base, k, at);
        if (is_free) {
            if (!po.first)
                *po.o++ = ',';
            po.o = put_times(po.o, p, s, &starts, &ends);
            *po.o++ = '}';
            po.first = false;
            k = at;
        } else {
            k = at + 1;
        }
    }
    emit_old(&po, base, k, n_old);
    *po.o++ = ']';
    po.o = put_text(po.o, tail, tail_len);
    *po.o = '\0';
    *len = (size_t)(po.o - buf);
    free(marked);
    return buf;
}
