/*
 * A booking event as the outbox stream carries it: one field "e1" whose
 * value is the event's eleven values, each as <length>:<bytes>. One field
 * instead of eleven named ones is twenty arguments fewer for hiredis to
 * format per hold, and twenty reply objects fewer for the mover to read;
 * lengths instead of a separator keep any byte a value may hold. Entries of
 * the named form (servers before this one, or anyone else writing the
 * stream) are read too.
 */
#include <stdlib.h>
#include <string.h>

#include "outbox_internal.h"
#include "slk/auth.h"

#define PACKED_VALUES 11

struct value {
    const char *s;
    size_t len;
};

/* The event's values in the order both forms list them. */
static void values_of(const struct slk__outbox_event *e, char numbers[4][24], struct value v[PACKED_VALUES])
{
    const char *texts[7] = {e->uuid, e->instructor, e->student, e->type, e->status, e->actor, e->role};
    const int64_t nums[4] = {e->at_ms, e->start_ms, e->end_ms, e->expires_ms};
    for (int i = 0; i < 7; i++)
        v[i] = (struct value){texts[i], strlen(texts[i])};
    for (int i = 0; i < 4; i++)
        v[7 + i] = (struct value){numbers[i], (size_t)slk_format_i64(numbers[i], nums[i])};
}

int slk__outbox_event_pack(const struct slk__outbox_event *e, char *out, size_t cap)
{
    char numbers[4][24];
    struct value v[PACKED_VALUES];
    values_of(e, numbers, v);
    size_t n = 0;
    for (int i = 0; i < PACKED_VALUES; i++) {
        char len[24];
        size_t digits = (size_t)slk_format_i64(len, (int64_t)v[i].len);
        if (n + digits + 1 + v[i].len >= cap)
            return SLK_EINVAL;
        memcpy(out + n, len, digits);
        out[n + digits] = ':';
        memcpy(out + n + digits + 1, v[i].s, v[i].len);
        n += digits + 1 + v[i].len;
    }
    out[n] = '\0';
    return (int)n;
}

/* Copies s[0..len) into a buffer of cap bytes; false when it does not fit. */
static bool copy_text(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* A whole decimal number of at most 19 digits; false for anything else. */
static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (len == i || len - i > 18)
        return false;
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* Fills e from its values, both forms alike; false when one does not fit or is not what it should be. */
static bool event_from(struct slk__outbox_event *e, const struct value v[PACKED_VALUES], const bool present[4])
{
    char *texts[7] = {e->uuid, e->instructor, e->student, e->type, e->status, e->actor, e->role};
    const size_t caps[7] = {sizeof(e->uuid),   sizeof(e->instructor), sizeof(e->student), sizeof(e->type),
                            sizeof(e->status), sizeof(e->actor),      sizeof(e->role)};
    int64_t *nums[4] = {&e->at_ms, &e->start_ms, &e->end_ms, &e->expires_ms};
    for (int i = 0; i < 7; i++) {
        if (!copy_text(texts[i], caps[i], v[i].s, v[i].len))
            return false;
    }
    for (int i = 0; i < 4; i++) {
        *nums[i] = 0;
        if (present[i] && !parse_i64(v[7 + i].s, v[7 + i].len, nums[i]))
            return false;
    }
    e->has_expires = present[3];
    return slk_uuid_valid(e->uuid, strlen(e->uuid));
}

static bool read_packed(const char *s, size_t len, struct slk__outbox_event *e)
{
    struct value v[PACKED_VALUES];
    size_t at = 0;
    for (int i = 0; i < PACKED_VALUES; i++) {
        size_t n = 0, digits = 0;
        while (at < len && s[at] >= '0' && s[at] <= '9' && digits < 6) {
            n = n * 10 + (size_t)(s[at++] - '0');
            digits++;
        }
        if (digits == 0 || at >= len || s[at] != ':' || n > len - at - 1)
            return false;
        v[i] = (struct value){s + at + 1, n};
        at += 1 + n;
    }
    const bool present[4] = {true, true, true, true};
    return at == len && event_from(e, v, present);
}

static const redisReply *named(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return v;
    }
    return NULL;
}

/* The named form: the seven texts must be there; times absent count as 0. */
static bool read_named(const redisReply *fields, struct slk__outbox_event *e)
{
    static const char *const names[PACKED_VALUES] = {"uuid", "instructor", "student", "type", "status", "actor",
                                                     "role", "at",         "start",   "end",  "expires"};
    struct value v[PACKED_VALUES];
    bool present[4];
    for (int i = 0; i < PACKED_VALUES; i++) {
        const redisReply *r = named(fields, names[i]);
        if (r == NULL && i < 7)
            return false;
        v[i] = r != NULL ? (struct value){r->str, r->len} : (struct value){"", 0};
        if (i >= 7)
            present[i - 7] = r != NULL;
    }
    return event_from(e, v, present);
}

bool slk__outbox_event_read(const redisReply *fields, struct slk__outbox_event *e)
{
    memset(e, 0, sizeof(*e));
    if (fields->type != REDIS_REPLY_ARRAY)
        return false;
    const redisReply *packed = named(fields, SLK_OUTBOX_EVENT_FIELD);
    if (packed != NULL)
        return read_packed(packed->str, packed->len, e);
    return read_named(fields, e);
}
