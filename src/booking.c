#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/instructor.h"
#include "slk/json_text.h"
#include "slk/timeutil.h"

void slk_booking_init(struct slk_booking *b)
{
    memset(b, 0, sizeof(*b));
    b->price_cents = -1;
    b->refund_eligible = -1;
}

void slk_booking_clear(struct slk_booking *b)
{
    free(b->purpose);
    free(b->payment_reference);
    free(b->cancel_reason);
    slk_booking_init(b);
}

static int copy_fixed(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return SLK_EPROTO;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

static int64_t to_i64(const char *s)
{
    return s == NULL ? 0 : strtoll(s, NULL, 10);
}

static char *dup_or_null(const char *s, size_t len)
{
    if (s == NULL || len == 0)
        return NULL;
    return strndup(s, len);
}

#define SESSION_PREFIX "sess_"
#define SESSION_PREFIX_LEN (sizeof(SESSION_PREFIX) - 1)

int slk_session_pack(const char *session, unsigned char out[SLK_SESSION_BYTES])
{
    if (strlen(session) != SESSION_PREFIX_LEN + 2 * SLK_SESSION_BYTES ||
        memcmp(session, SESSION_PREFIX, SESSION_PREFIX_LEN) != 0)
        return SLK_EINVAL;
    return slk_hex_decode_lower(out, session + SESSION_PREFIX_LEN, SLK_SESSION_BYTES);
}

/* A damaged 'sid' leaves the session empty rather than the whole hold unreadable (its expiry, cancel, listing). */
static int session_unpack(char *dst, size_t cap, const char *v, size_t vlen)
{
    if (vlen != SLK_SESSION_BYTES || cap < SESSION_PREFIX_LEN + 2 * SLK_SESSION_BYTES + 1) {
        dst[0] = '\0';
        return 0;
    }
    memcpy(dst, SESSION_PREFIX, SESSION_PREFIX_LEN);
    slk_hex_encode(dst + SESSION_PREFIX_LEN, (const unsigned char *)v, vlen);
    dst[SESSION_PREFIX_LEN + 2 * vlen] = '\0';
    return 0;
}

/* A student's or course's uuid kept as its 16 bytes ('stub', 'crsb'). A damaged one leaves the id empty rather than
 * the whole hold unreadable (its expiry, cancel, listing): an empty student is nobody's, so only admins act on it. */
static int uuid_unpack(char *dst, size_t cap, const char *v, size_t vlen)
{
    if (vlen != 16 || cap < 37)
        dst[0] = '\0';
    else
        slk_uuid_format((const unsigned char *)v, dst);
    return 0;
}

static int set_hash_field(struct slk_booking *b, const char *k, const char *v, size_t vlen)
{
    if (strcmp(k, "uuid") == 0)
        return copy_fixed(b->uuid, sizeof(b->uuid), v, vlen);
    if (strcmp(k, "status") == 0)
        return copy_fixed(b->status, sizeof(b->status), v, vlen);
    if (strcmp(k, "student") == 0)
        return copy_fixed(b->student, sizeof(b->student), v, vlen);
    if (strcmp(k, "course") == 0)
        return copy_fixed(b->course, sizeof(b->course), v, vlen);
    if (strcmp(k, "stub") == 0)
        return uuid_unpack(b->student, sizeof(b->student), v, vlen);
    if (strcmp(k, "crsb") == 0)
        return uuid_unpack(b->course, sizeof(b->course), v, vlen);
    if (strcmp(k, "instructor") == 0)
        return copy_fixed(b->instructor, sizeof(b->instructor), v, vlen);
    if (strcmp(k, "currency") == 0)
        return copy_fixed(b->currency, sizeof(b->currency), v, vlen);
    if (strcmp(k, "sid") == 0)
        return session_unpack(b->session, sizeof(b->session), v, vlen);
    if (strcmp(k, "session") == 0) /* earlier versions, or an id of another shape */
        return copy_fixed(b->session, sizeof(b->session), v, vlen);
    if (strcmp(k, "cancelled_by") == 0)
        return copy_fixed(b->cancelled_by, sizeof(b->cancelled_by), v, vlen);
    if (strcmp(k, "purpose") == 0)
        b->purpose = dup_or_null(v, vlen);
    else if (strcmp(k, "payref") == 0)
        b->payment_reference = dup_or_null(v, vlen);
    else if (strcmp(k, "cancel_reason") == 0)
        b->cancel_reason = dup_or_null(v, vlen);
    else if (strcmp(k, "start") == 0)
        b->start_ms = to_i64(v);
    else if (strcmp(k, "end") == 0)
        b->end_ms = to_i64(v);
    else if (strcmp(k, "expires") == 0)
        b->hold_expires_ms = to_i64(v);
    else if (strcmp(k, "created") == 0)
        b->created_ms = to_i64(v);
    else if (strcmp(k, "updated") == 0)
        b->updated_ms = to_i64(v);
    else if (strcmp(k, "cancelled") == 0)
        b->cancelled_ms = to_i64(v);
    else if (strcmp(k, "price") == 0)
        b->price_cents = vlen == 0 ? -1 : to_i64(v);
    else if (strcmp(k, "fence") == 0)
        b->fence = to_i64(v);
    else if (strcmp(k, "ufirst") == 0)
        b->units_first_min = to_i64(v);
    else if (strcmp(k, "umin") == 0)
        b->unit_minutes = (int)to_i64(v);
    else if (strcmp(k, "ucount") == 0)
        b->unit_count = (int)to_i64(v);
    else if (strcmp(k, "refund") == 0)
        b->refund_eligible = (int)to_i64(v);
    else if (strcmp(k, "accept") == 0)
        b->requires_acceptance = vlen == 1 && v[0] == '1';
    else if (strcmp(k, "pg") == 0)
        b->in_pg = vlen == 1 && v[0] == '1';
    return 0;
}

int slk_booking_from_hash(struct slk_booking *b, const redisReply *r, const char *instructor, const char *uuid)
{
    slk_booking_init(b);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return SLK_ENOTFOUND;
    if (copy_fixed(b->instructor, sizeof(b->instructor), instructor, strlen(instructor)) != 0 ||
        copy_fixed(b->uuid, sizeof(b->uuid), uuid, strlen(uuid)) != 0)
        return SLK_EPROTO;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return SLK_EPROTO;
        if (set_hash_field(b, k->str, v->str, v->len) != 0) {
            slk_booking_clear(b);
            return SLK_EPROTO;
        }
    }
    if (b->uuid[0] == '\0' || b->status[0] == '\0' || b->unit_count <= 0 || b->unit_minutes <= 0) {
        slk_booking_clear(b);
        return SLK_EPROTO;
    }
    if (b->updated_ms == 0)
        b->updated_ms = b->created_ms; /* a hold is written without it: never updated yet */
    return 0;
}

static const char *pg_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static void pg_copy(char *dst, size_t cap, const PGresult *res, int row, int col)
{
    const char *s = pg_text(res, row, col);
    snprintf(dst, cap, "%s", s == NULL ? "" : s);
}

static char *pg_dup(const PGresult *res, int row, int col)
{
    const char *s = pg_text(res, row, col);
    return s == NULL ? NULL : strdup(s);
}

int slk_booking_from_pg(struct slk_booking *b, const PGresult *res, int row)
{
    slk_booking_init(b);
    if (PQnfields(res) < 23 || row >= PQntuples(res))
        return SLK_EPROTO;
    pg_copy(b->uuid, sizeof(b->uuid), res, row, 0);
    pg_copy(b->status, sizeof(b->status), res, row, 1);
    pg_copy(b->student, sizeof(b->student), res, row, 2);
    pg_copy(b->course, sizeof(b->course), res, row, 3);
    pg_copy(b->instructor, sizeof(b->instructor), res, row, 4);
    b->start_ms = to_i64(pg_text(res, row, 5));
    b->end_ms = to_i64(pg_text(res, row, 6));
    b->hold_expires_ms = to_i64(pg_text(res, row, 7));
    b->created_ms = to_i64(pg_text(res, row, 8));
    b->updated_ms = to_i64(pg_text(res, row, 9));
    b->cancelled_ms = to_i64(pg_text(res, row, 10));
    b->price_cents = pg_text(res, row, 11) == NULL ? -1 : to_i64(pg_text(res, row, 11));
    pg_copy(b->currency, sizeof(b->currency), res, row, 12);
    b->purpose = pg_dup(res, row, 13);
    pg_copy(b->session, sizeof(b->session), res, row, 14);
    b->payment_reference = pg_dup(res, row, 15);
    b->fence = to_i64(pg_text(res, row, 16));
    b->units_first_min = to_i64(pg_text(res, row, 17));
    b->unit_minutes = (int)to_i64(pg_text(res, row, 18));
    b->unit_count = (int)to_i64(pg_text(res, row, 19));
    b->cancel_reason = pg_dup(res, row, 20);
    pg_copy(b->cancelled_by, sizeof(b->cancelled_by), res, row, 21);
    const char *refund = pg_text(res, row, 22);
    b->refund_eligible = refund == NULL ? -1 : refund[0] == 't';
    b->in_pg = true;
    return 0;
}

const char *slk_booking_status(const struct slk_booking *b, int64_t now_ms)
{
    bool unpaid = strcmp(b->status, "payment_required") == 0 || strcmp(b->status, "confirming") == 0;
    if (unpaid && now_ms >= b->hold_expires_ms)
        return "expired";
    if (unpaid)
        return "payment_required";
    return b->status;
}

void slk_booking_write_json(struct slk_json_text *t, const struct slk_booking *b, int64_t now_ms)
{
    slk_json_text_open(t, '{');
    slk_json_text_key(t, "uuid");
    slk_json_text_string(t, b->uuid);
    slk_json_text_key(t, "status");
    slk_json_text_string(t, slk_booking_status(b, now_ms));
    slk_json_text_key(t, "student_uuid");
    slk_json_text_string(t, b->student);
    slk_json_text_key(t, "course_uuid");
    slk_json_text_string(t, b->course);
    slk_json_text_key(t, "instructor_uuid");
    slk_json_text_string(t, b->instructor);
    slk_json_text_key(t, "start_time");
    slk_json_text_time_or_null(t, b->start_ms);
    slk_json_text_key(t, "end_time");
    slk_json_text_time_or_null(t, b->end_ms);
    slk_json_text_key(t, "price_amount");
    if (b->price_cents < 0)
        slk_json_text_null(t);
    else
        slk_json_text_cents(t, b->price_cents);
    slk_json_text_key(t, "currency");
    slk_json_text_string_or_null(t, b->currency);
    slk_json_text_key(t, "purpose");
    slk_json_text_string_or_null(t, b->purpose);
    slk_json_text_key(t, "payment_session_id");
    slk_json_text_string(t, b->session);
    slk_json_text_key(t, "payment_reference");
    slk_json_text_string_or_null(t, b->payment_reference);
    slk_json_text_key(t, "hold_expires_at");
    slk_json_text_time_or_null(t, b->hold_expires_ms);
    slk_json_text_key(t, "created_at");
    slk_json_text_time_or_null(t, b->created_ms);
    slk_json_text_key(t, "updated_at");
    slk_json_text_time_or_null(t, b->updated_ms);
    slk_json_text_key(t, "fence_token");
    slk_json_text_int(t, b->fence);
    slk_json_text_key(t, "availability_block_uuid");
    slk_json_text_string(t, b->uuid);
    if (b->cancelled_ms != 0) {
        slk_json_text_key(t, "cancelled_at");
        slk_json_text_time_or_null(t, b->cancelled_ms);
        slk_json_text_key(t, "cancel_reason");
        slk_json_text_string_or_null(t, b->cancel_reason);
        slk_json_text_key(t, "cancelled_by");
        slk_json_text_string_or_null(t, b->cancelled_by);
        slk_json_text_key(t, "refund_eligible");
        if (b->refund_eligible < 0)
            slk_json_text_null(t);
        else
            slk_json_text_bool(t, b->refund_eligible != 0);
    }
    slk_json_text_close(t, '}');
}

/*
 * head, id, tail[, id2] joined into buf as snprintf would (cut to SLK_KEY_MAX,
 * the full length returned): a hold builds seven keys, and printf's format
 * parsing cost more than the copies.
 */
static int key_join(char *buf, const char *head, const char *id, const char *tail, const char *id2)
{
    size_t lens[4] = {strlen(head), strlen(id), strlen(tail), id2 != NULL ? strlen(id2) : 0};
    size_t total = lens[0] + lens[1] + lens[2] + lens[3];
    if (total >= SLK_KEY_MAX)
        return snprintf(buf, SLK_KEY_MAX, "%s%s%s%s", head, id, tail, id2 != NULL ? id2 : "");
    const char *parts[4] = {head, id, tail, id2};
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        memcpy(p, parts[i] != NULL ? parts[i] : "", lens[i]);
        p += lens[i];
    }
    *p = '\0';
    return (int)total;
}

int slk_key_meta(char *buf, const char *instructor)
{
    return key_join(buf, "slk:{", instructor, "}:meta", NULL);
}

int slk_key_version(char *buf, const char *instructor)
{
    return key_join(buf, "slk:{", instructor, "}:ver", NULL);
}

int slk_key_fence(char *buf, const char *instructor)
{
    return key_join(buf, "slk:{", instructor, "}:fence", NULL);
}

int slk_key_booking(char *buf, const char *instructor, const char *uuid)
{
    return key_join(buf, "slk:{", instructor, "}:b:", uuid);
}

/* An availability query asks for hundreds of these (a week of 15-minute units: 672): digits by hand, no printf. */
int slk_key_unit(char *buf, const char *instructor, int64_t minute)
{
    size_t id_len = strlen(instructor);
    if (id_len > SLK_MAX_ID_LEN || minute < 0)
        return snprintf(buf, SLK_KEY_MAX, "slk:{%s}:u:%" PRId64, instructor, minute);
    char *p = buf;
    memcpy(p, "slk:{", 5);
    p += 5;
    memcpy(p, instructor, id_len);
    p += id_len;
    memcpy(p, "}:u:", 4);
    p += 4;
    p += slk_format_u64(p, (uint64_t)minute);
    *p = '\0';
    return (int)(p - buf);
}

int slk_key_index(char *buf, const char *uuid)
{
    return key_join(buf, "slk:bi:", uuid, "", NULL);
}

int slk_key_instructor_holds(char *buf, const char *instructor)
{
    return key_join(buf, "slk:{", instructor, "}:holds", NULL);
}

int slk_key_student_holds(char *buf, const char *student)
{
    return key_join(buf, "slk:stu:{", student, "}:holds", NULL);
}

#define PACKED_UUID_LEN 24 /* base64 of 16 bytes, padded */

int slk_hold_member(char *buf, const char *instructor, const char *uuid)
{
    size_t ilen = strlen(instructor);
    unsigned char bytes[16];
    if (ilen == 0 || ilen > SLK_MAX_ID_LEN || strlen(uuid) != 36)
        return SLK_EINVAL;
    memcpy(buf, instructor, ilen);
    buf[ilen] = '/';
    if (slk_uuid_bytes(uuid, bytes) != 0) {
        memcpy(buf + ilen + 1, uuid, 37);
        return (int)(ilen + 1 + 36);
    }
    return (int)(ilen + 1) + EVP_EncodeBlock((unsigned char *)buf + ilen + 1, bytes, sizeof(bytes));
}

int slk_hold_member_parse(const char *member, size_t len, char instructor[SLK_MAX_ID_LEN + 1], char uuid[37])
{
    const char *slash = memchr(member, '/', len);
    size_t ilen = slash != NULL ? (size_t)(slash - member) : 0;
    if (ilen == 0 || ilen > SLK_MAX_ID_LEN)
        return SLK_EINVAL;
    const char *rest = slash + 1;
    size_t rlen = len - ilen - 1;
    if (rlen == 36 && slk_uuid_valid(rest, rlen)) {
        memcpy(uuid, rest, 36);
        uuid[36] = '\0';
    } else if (rlen == PACKED_UUID_LEN) {
        unsigned char bytes[PACKED_UUID_LEN];
        /* 24 characters decode to 18 bytes, the last two from the padding. */
        if (memcmp(rest + PACKED_UUID_LEN - 2, "==", 2) != 0 ||
            EVP_DecodeBlock(bytes, (const unsigned char *)rest, PACKED_UUID_LEN) != 18)
            return SLK_EINVAL;
        slk_uuid_format(bytes, uuid);
    } else {
        return SLK_EINVAL;
    }
    memcpy(instructor, member, ilen);
    instructor[ilen] = '\0';
    return 0;
}

int slk_key_student_live(char *buf, const char *student)
{
    return key_join(buf, "slk:stu:{", student, "}:live", NULL);
}

int slk_key_events(char *buf, const char *instructor)
{
    return key_join(buf, "slk:{", instructor, "}:events", NULL);
}

char **slk_booking_unit_keys(const char *instructor, int64_t first_min, int unit_minutes, int unit_count)
{
    if (unit_count <= 0 || unit_count > SLK_MAX_UNITS || unit_minutes <= 0)
        return NULL;
    size_t n = (size_t)unit_count;
    char **keys = malloc(n * sizeof(char *) + n * SLK_KEY_MAX);
    if (keys == NULL)
        return NULL;
    char *storage = (char *)(keys + n);
    for (size_t i = 0; i < n; i++) {
        keys[i] = storage + i * SLK_KEY_MAX;
        slk_key_unit(keys[i], instructor, first_min + (int64_t)i * unit_minutes);
    }
    return keys;
}

int slk_booking_eval(struct slk_redis *r, const struct slk_booking *b, enum slk_script_id script, slk_redis_cb cb,
                     void *data, int nargs, const char **args)
{
    char **units = slk_booking_unit_keys(b->instructor, b->units_first_min, b->unit_minutes, b->unit_count);
    size_t nkeys = 1 + (size_t)b->unit_count;
    const char **keys = units != NULL ? malloc(nkeys * sizeof(char *)) : NULL;
    int rc = SLK_ENOMEM;
    if (keys != NULL) {
        char record[SLK_KEY_MAX];
        slk_key_booking(record, b->instructor, b->uuid);
        keys[0] = record;
        memcpy(&keys[1], units, (size_t)b->unit_count * sizeof(char *));
        rc = slk_script_eval(r, script, cb, data, (int)nkeys, keys, NULL, nargs, args, NULL);
    }
    free(keys);
    free(units);
    return rc;
}

void slk_booking_cover(struct slk_booking *b, const struct slk_instructor *ins)
{
    b->unit_minutes = ins->granularity_minutes;
    b->units_first_min = b->start_ms / 60000 - ins->buffer_minutes;
    b->unit_count = (int)((b->end_ms - b->start_ms) / 60000 / b->unit_minutes) +
                    2 * (ins->buffer_minutes / ins->granularity_minutes);
}

void slk_booking_units_range(const struct slk_booking *b, int64_t first, int64_t last, int64_t *from_ms, int64_t *to_ms)
{
    int64_t step = (int64_t)b->unit_minutes * 60000, base = b->units_first_min * 60000;
    *from_ms = base + first * step;
    *to_ms = base + (last + 1) * step;
}

void slk_price_format(int64_t cents, char out[32])
{
    snprintf(out, 32, "%" PRId64 ".%02" PRId64, cents / 100, cents % 100);
}
