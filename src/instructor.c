#include <stdlib.h>
#include <string.h>

#include "slk/auth.h"
#include "slk/instructor.h"

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static int parse_day(const char *s)
{
    for (int d = 0; d < 7; d++) {
        if (strcmp(s, day_names[d]) == 0)
            return d;
    }
    return -1;
}

/* "HH:MM" with 00:00 <= t <= 24:00; minutes after midnight or -1. */
static int parse_clock(const char *s)
{
    if (strlen(s) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++) {
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    }
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

static int get_int(const json_t *obj, const char *key, int def, int min, int max, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return SLK_EINVAL;
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return SLK_EINVAL;
    *out = (int)n;
    return 0;
}

static int parse_window(const json_t *item, int granularity, struct slk_window *w)
{
    const char *day = json_string_value(json_object_get(item, "day"));
    const char *start = json_string_value(json_object_get(item, "start"));
    const char *end = json_string_value(json_object_get(item, "end"));
    if (!json_is_object(item) || day == NULL || start == NULL || end == NULL)
        return SLK_EINVAL;
    w->day = parse_day(day);
    w->start_min = parse_clock(start);
    w->end_min = parse_clock(end);
    if (w->day < 0 || w->start_min < 0 || w->end_min < 0 || w->start_min >= w->end_min)
        return SLK_EINVAL;
    if (w->start_min % granularity != 0 || w->end_min % granularity != 0)
        return SLK_EINVAL;
    return 0;
}

static int parse_weekly(struct slk_instructor *ins, const json_t *weekly)
{
    if (weekly == NULL || json_is_null(weekly))
        return 0;
    if (!json_is_array(weekly) || json_array_size(weekly) > SLK_MAX_WINDOWS)
        return SLK_EINVAL;
    size_t i;
    const json_t *item;
    json_array_foreach(weekly, i, item)
    {
        if (parse_window(item, ins->granularity_minutes, &ins->weekly[i]) != 0)
            return SLK_EINVAL;
    }
    ins->num_weekly = (int)json_array_size(weekly);
    return 0;
}

#define FAIL_FIELD(field, sentence)                                                                                    \
    do {                                                                                                               \
        *bad_field = (field);                                                                                          \
        *why = (sentence);                                                                                             \
        return SLK_EINVAL;                                                                                             \
    } while (0)

int slk_instructor_parse(struct slk_instructor *ins, const char *id, const json_t *obj, int default_hold_seconds,
                         const char **bad_field, const char **why)
{
    memset(ins, 0, sizeof(*ins));
    if (!json_is_object(obj))
        FAIL_FIELD("body", "settings must be a JSON object");
    if (!slk_id_valid(id, strlen(id)))
        FAIL_FIELD("id", "instructor id must match ^[A-Za-z0-9._:-]{1,64}$");
    memcpy(ins->id, id, strlen(id) + 1);

    const json_t *tz = json_object_get(obj, "timezone");
    const char *zone = tz == NULL || json_is_null(tz) ? "UTC" : json_string_value(tz);
    if (zone == NULL || strlen(zone) > SLK_MAX_TZ_LEN || !slk_tz_valid(zone))
        FAIL_FIELD("timezone", "timezone must be an IANA time zone such as Europe/Berlin");
    memcpy(ins->timezone, zone, strlen(zone) + 1);

    /* A grid that divides an hour stays in phase across DST changes (whole hours in every zone but a few),
     * so holds, blocks and availability always agree on which unit keys a time covers. */
    if (get_int(obj, "granularity_minutes", 15, 1, 60, &ins->granularity_minutes) != 0 ||
        60 % ins->granularity_minutes != 0)
        FAIL_FIELD("granularity_minutes",
                   "granularity_minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)");
    if (get_int(obj, "hold_seconds", default_hold_seconds, 1, 86400, &ins->hold_seconds) != 0)
        FAIL_FIELD("hold_seconds", "hold_seconds must be an integer from 1 to 86400");
    if (get_int(obj, "buffer_minutes", 0, 0, 1440, &ins->buffer_minutes) != 0 ||
        ins->buffer_minutes % ins->granularity_minutes != 0)
        FAIL_FIELD("buffer_minutes", "buffer_minutes must be a multiple of granularity_minutes from 0 to 1440");

    const json_t *ra = json_object_get(obj, "requires_acceptance");
    if (ra != NULL && !json_is_null(ra) && !json_is_boolean(ra))
        FAIL_FIELD("requires_acceptance", "requires_acceptance must be true or false");
    ins->requires_acceptance = json_is_true(ra);

    if (parse_weekly(ins, json_object_get(obj, "weekly")) != 0)
        FAIL_FIELD("weekly", "weekly must be a list of {day: mon..sun, start: HH:MM, end: HH:MM} on the grid, "
                             "start before end");

    const json_t *ver = json_object_get(obj, "version");
    ins->version = json_is_integer(ver) ? json_integer_value(ver) : 0;
    return 0;
}

json_t *slk_instructor_weekly_json(const struct slk_instructor *ins)
{
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < ins->num_weekly; i++) {
        const struct slk_window *w = &ins->weekly[i];
        char start[16], end[16];
        snprintf(start, sizeof(start), "%02d:%02d", w->start_min / 60, w->start_min % 60);
        snprintf(end, sizeof(end), "%02d:%02d", w->end_min / 60, w->end_min % 60);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "day", day_names[w->day], "start", start, "end", end));
    }
    return arr;
}

json_t *slk_instructor_to_json(const struct slk_instructor *ins)
{
    char updated[32];
    slk_time_format_rfc3339(ins->updated_ms, updated);
    return json_pack("{s:s, s:s, s:i, s:i, s:i, s:b, s:o, s:I, s:s}", "id", ins->id, "timezone", ins->timezone,
                     "granularity_minutes", ins->granularity_minutes, "hold_seconds", ins->hold_seconds,
                     "buffer_minutes", ins->buffer_minutes, "requires_acceptance", ins->requires_acceptance, "weekly",
                     slk_instructor_weekly_json(ins), "version", (json_int_t)ins->version, "updated_at", updated);
}

bool slk_instructor_in_window(const struct slk_instructor *ins, int weekday, int minute)
{
    for (int i = 0; i < ins->num_weekly; i++) {
        const struct slk_window *w = &ins->weekly[i];
        if (w->day == weekday && minute >= w->start_min && minute + ins->granularity_minutes <= w->end_min)
            return true;
    }
    return false;
}

bool slk_instructor_covers(const struct slk_instructor *ins, struct slk_tz *tz, int64_t start_ms, int64_t end_ms)
{
    int64_t step = (int64_t)ins->granularity_minutes * 60000;
    for (int64_t t = start_ms; t < end_ms; t += step) {
        struct slk_local_time lt;
        if (slk_tz_to_local(tz, t, &lt) != 0 || !slk_instructor_in_window(ins, lt.weekday, lt.hour * 60 + lt.minute))
            return false;
    }
    return true;
}

/* The cache: chained hash table; cleared wholesale if it ever grows past its cap. */
#define CACHE_BUCKETS 1024
#define CACHE_MAX_ENTRIES 100000

struct cache_node {
    struct cache_node *next;
    struct slk_instructor_entry entry;
};

struct slk_instructor_cache {
    struct cache_node *buckets[CACHE_BUCKETS];
    size_t count;
};

static size_t hash_id(const char *id)
{
    size_t h = 5381;
    for (; *id != '\0'; id++)
        h = h * 33 + (unsigned char)*id;
    return h % CACHE_BUCKETS;
}

struct slk_instructor_cache *slk_instructor_cache_create(void)
{
    return calloc(1, sizeof(struct slk_instructor_cache));
}

static void free_node(struct cache_node *n)
{
    slk_tz_close(n->entry.tz);
    free(n);
}

static void cache_clear(struct slk_instructor_cache *c)
{
    for (size_t b = 0; b < CACHE_BUCKETS; b++) {
        while (c->buckets[b] != NULL) {
            struct cache_node *n = c->buckets[b];
            c->buckets[b] = n->next;
            free_node(n);
        }
    }
    c->count = 0;
}

void slk_instructor_cache_free(struct slk_instructor_cache *c)
{
    if (c == NULL)
        return;
    cache_clear(c);
    free(c);
}

struct slk_instructor_entry *slk_instructor_cache_get(struct slk_instructor_cache *c, const char *id)
{
    for (struct cache_node *n = c->buckets[hash_id(id)]; n != NULL; n = n->next) {
        if (strcmp(n->entry.ins.id, id) == 0)
            return &n->entry;
    }
    return NULL;
}

struct slk_instructor_entry *slk_instructor_cache_put(struct slk_instructor_cache *c, const struct slk_instructor *ins)
{
    struct slk_tz *tz = slk_tz_open(ins->timezone);
    if (tz == NULL)
        return NULL;
    struct slk_instructor_entry *e = slk_instructor_cache_get(c, ins->id);
    if (e != NULL) {
        slk_tz_close(e->tz);
        e->ins = *ins;
        e->tz = tz;
        return e;
    }
    if (c->count >= CACHE_MAX_ENTRIES)
        cache_clear(c);
    struct cache_node *n = malloc(sizeof(*n));
    if (n == NULL) {
        slk_tz_close(tz);
        return NULL;
    }
    size_t b = hash_id(ins->id);
    n->entry.ins = *ins;
    n->entry.tz = tz;
    n->next = c->buckets[b];
    c->buckets[b] = n;
    c->count++;
    return &n->entry;
}
