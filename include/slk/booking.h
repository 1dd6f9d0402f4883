/*
 * A booking as the API shows it, read from either home it can have: the
 * Redis record of a hold (slk:{i}:b:<uuid>, a hash) or the Postgres row of
 * a booking that got past payment. Also the Redis key names: every key of
 * one instructor carries the hash tag {instructor_id}.
 */
#ifndef SLK_BOOKING_H
#define SLK_BOOKING_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "slk/common.h"
#include "slk/scripts.h"

struct slk_json_text;

#define SLK_KEY_MAX 128
/* Booked units stay in Redis this long after the booking's last unit ends. */
#define SLK_BOOKED_UNIT_GRACE_MS ((int64_t)3600 * 1000)
#define SLK_MAX_UNITS (SLK_MAX_BOOKING_MINUTES + 2 * 1440) /* 1-minute grid, a day of buffer on each side */

struct slk_booking {
    char uuid[37];
    char status[24]; /* as stored; see slk_booking_status() for what the API shows */
    char student[SLK_MAX_ID_LEN + 1];
    char course[SLK_MAX_ID_LEN + 1];
    char instructor[SLK_MAX_ID_LEN + 1];
    int64_t start_ms, end_ms, hold_expires_ms, created_ms, updated_ms;
    int64_t cancelled_ms; /* 0 when not cancelled */
    int64_t price_cents;  /* -1 when no price */
    char currency[4];     /* "" when none */
    char *purpose;        /* NULL when none */
    char session[48];
    char *payment_reference; /* NULL when none */
    char *cancel_reason;     /* NULL when none */
    char cancelled_by[16];
    int refund_eligible; /* -1 unknown, 0, 1 */
    int64_t fence;
    int64_t units_first_min; /* first covered unit, minutes since the epoch */
    int unit_minutes;
    int unit_count;
    bool requires_acceptance; /* the instructor's setting when the hold was taken */
    bool in_pg;               /* Postgres owns the booking from here on */
};

void slk_booking_init(struct slk_booking *b);
void slk_booking_clear(struct slk_booking *b);

/*
 * From an HGETALL reply of the record slk:{instructor}:b:<uuid>. Records keep
 * the two out of their fields (earlier versions stored them too).
 * SLK_ENOTFOUND for an empty reply, SLK_EPROTO for a damaged record.
 */
int slk_booking_from_hash(struct slk_booking *b, const redisReply *r, const char *instructor,
                          const char *uuid) SLK_MUST_CHECK;
/* From one row selected with SLK_BOOKING_PG_COLUMNS. */
int slk_booking_from_pg(struct slk_booking *b, const PGresult *res, int row) SLK_MUST_CHECK;

#define SLK_BOOKING_PG_COLUMNS                                                                                         \
    "uuid::text, status, student_id, course_id, instructor_id, "                                                       \
    "(extract(epoch from start_at) * 1000)::bigint, (extract(epoch from end_at) * 1000)::bigint, "                     \
    "(extract(epoch from hold_expires_at) * 1000)::bigint, (extract(epoch from created_at) * 1000)::bigint, "          \
    "(extract(epoch from updated_at) * 1000)::bigint, (extract(epoch from cancelled_at) * 1000)::bigint, "             \
    "(price_amount * 100)::bigint, currency, purpose, payment_session_id, payment_reference, fence_token, "            \
    "(extract(epoch from units_start_at) / 60)::bigint, unit_minutes, unit_count, cancel_reason, cancelled_by, "       \
    "refund_eligible"

/* Payment session ids are "sess_" and 32 lower-case hex digits: SLK_SESSION_BYTES random bytes (slk_random_token). */
#define SLK_SESSION_BYTES 16
/* The random bytes of such an id, as a hold record keeps them. SLK_EINVAL for any other shape. */
int slk_session_pack(const char *session, unsigned char out[SLK_SESSION_BYTES]) SLK_MUST_CHECK;

/* The status the API shows: an unpaid hold past its expiry is "expired". */
const char *slk_booking_status(const struct slk_booking *b, int64_t now_ms);
/* The booking object of R-API, written as the next value of t. */
void slk_booking_write_json(struct slk_json_text *t, const struct slk_booking *b, int64_t now_ms);

/* Redis keys. Each returns the length written (always < SLK_KEY_MAX for valid ids). */
int slk_key_meta(char *buf, const char *instructor);
/* The settings version alone, as a string: lets MGET read it with unit keys in one plain command. */
int slk_key_version(char *buf, const char *instructor);
int slk_key_fence(char *buf, const char *instructor);
int slk_key_booking(char *buf, const char *instructor, const char *uuid);
int slk_key_unit(char *buf, const char *instructor, int64_t minute);
int slk_key_index(char *buf, const char *uuid);
/* Live holds by start, for listings: an instructor's by uuid, a student's as below (the student's key also holds
 * the cap's entries, scored below 0: lua/hold_cap.lua). Entries outlive their holds until the expiry check removes
 * them, and the listing drops any it finds. */
int slk_key_instructor_holds(char *buf, const char *instructor);
int slk_key_student_holds(char *buf, const char *student);
/*
 * A hold named '<instructor>/<uuid>', with the uuid as the base64 of its 16 bytes (24 characters), as a
 * student's listing and the expiry schedule name it: a uuid-named instructor's member then stays within the 64
 * bytes up to which Redis keeps a sorted set compact (zset-max-listpack-value); with the uuid's text the
 * student's listing of a single hold took ~1 KB. Returns the length written into buf (SLK_LISTING_MEMBER_MAX),
 * or SLK_EINVAL for an id too long. A uuid not in lower-case canonical form is written as text.
 */
#define SLK_LISTING_MEMBER_MAX (SLK_MAX_ID_LEN + 1 + 36 + 1)
int slk_hold_member(char *buf, const char *instructor, const char *uuid) SLK_MUST_CHECK;
/* Either form of '<instructor>/<uuid>' (the uuid's text, as earlier versions wrote it, or its base64): the instructor
 * and the uuid's text. SLK_EINVAL for a damaged member. */
int slk_hold_member_parse(const char *member, size_t len, char instructor[SLK_MAX_ID_LEN + 1],
                          char uuid[37]) SLK_MUST_CHECK;
/* Where earlier versions counted a student's live holds (uuid by expiry); the cap's entries now share the
 * student's listing key (lua/hold_cap.lua). Still counted until its entries lapse. */
int slk_key_student_live(char *buf, const char *student);
/* The instructor's announcements: "<type> <start ms> <end ms>" (pubsub.c listens; the scripts publish). */
int slk_key_events(char *buf, const char *instructor);

/*
 * The unit keys of a booking, in one allocation: keys[i] points into it.
 * Returns NULL on OOM or when unit_count is out of range. Free with free(keys).
 */
char **slk_booking_unit_keys(const char *instructor, int64_t first_min, int unit_minutes, int unit_count);

/*
 * Runs one of the record scripts (pin, confirm, release) on a booking:
 * KEYS = its record, then every unit key. Callback contract as
 * slk_script_eval.
 */
int slk_booking_eval(struct slk_redis *r, const struct slk_booking *b, enum slk_script_id script, slk_redis_cb cb,
                     void *data, int nargs, const char **args) SLK_MUST_CHECK;

struct slk_instructor;
/* Sets unit_minutes, units_first_min and unit_count from start/end: the grid units of [start, end) plus the
 * instructor's buffer on each side (R-HOLD). */
void slk_booking_cover(struct slk_booking *b, const struct slk_instructor *ins);
/* The time [*from_ms, *to_ms) of covered units first..last (0-based, as the scripts report a taken range). */
void slk_booking_units_range(const struct slk_booking *b, int64_t first, int64_t last, int64_t *from_ms,
                             int64_t *to_ms);

/* Price helpers: "50.00" ⇄ 5000 cents. */
void slk_price_format(int64_t cents, char out[32]);

#endif
