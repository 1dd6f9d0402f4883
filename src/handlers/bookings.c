/*
 * POST /api/v1/bookings: validate, take the hold with one call of
 * lua/hold.lua, then write its uuid index and count it under the student's
 * cap (hold_cap.h). Postgres is never touched here (R-HOLD), except to load
 * an instructor Redis does not know yet.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/avail_cache.h"
#include "slk/booking.h"
#include "slk/hold_cap.h"
#include "slk/hold_flights.h"
#include "slk/hold_questions.h"
#include "slk/instructor_store.h"
#include "slk/json_text.h"
#include "slk/log.h"
#include "slk/metrics.h"
#include "slk/outbox.h"
#include "slk/redis.h"
#include "slk/refusal_cache.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"

#define MAX_PURPOSE_BYTES 500
#define MAX_PRICE_CENTS (1000000000000LL * 100)

struct create_op {
    struct slk_request *req;
    struct slk_booking b; /* the record being created */
    struct slk__time_input start_in, end_in;
    int attempts;
    char **unit_keys;
    int64_t ins_version; /* the settings the request was validated against */
    uint32_t freed_gen;  /* slk_freed_gen() before the hold was sent: whether a refusal may be kept */
    int64_t sent_ms;     /* loop time when it was sent: the base of the lapse its reply reports */
    bool capped;         /* counted against the student's cap (hold_cap.h) until granted or given back */
    int grant_pending;   /* steps awaited after the hold was granted: index, cap, settle_grant itself */
    int index_rc, cap_rc;
    int64_t retry_ms; /* cap refusal: when the student's earliest hold lapses */
};

/* A hold that ends here without being granted must not keep its place under the student's cap. */
static void create_op_free(struct create_op *op)
{
    if (op->capped)
        slk_hold_cap_forget(op->req->worker, op->b.student, op->b.uuid);
    slk_booking_clear(&op->b);
    free(op->unit_keys);
    free(op);
}

static void fail_invalid(struct create_op *op, const char *field, const char *why)
{
    struct slk_request *req = op->req;
    create_op_free(op);
    slk_metrics_hold(SLK_HOLD_REJECTED);
    slk_reply_invalid(req, field, why);
}

static void fail_backend(struct create_op *op, int err, const char *what)
{
    struct slk_request *req = op->req;
    create_op_free(op);
    if (err != SLK_ENOTFOUND)
        slk_metrics_hold(SLK_HOLD_ERROR);
    slk__reply_backend_error(req, err, what);
}

/* Body parsing: each returns NULL on success or the name of the bad field. */

static const char *take_id(const json_t *body, const char *field, char *out)
{
    const json_t *v = json_object_get(body, field);
    const char *s = json_string_value(v);
    if (s == NULL || !slk_id_valid(s, json_string_length(v)))
        return field;
    memcpy(out, s, json_string_length(v) + 1);
    return NULL;
}

static const char *take_time(const json_t *body, const char *field, struct slk__time_input *out)
{
    return slk__time_parse(json_object_get(body, field), out) != 0 ? field : NULL;
}

static const char *take_price(const json_t *body, struct slk_booking *b)
{
    const json_t *v = json_object_get(body, "price_amount");
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_number(v))
        return "price_amount";
    double amount = json_number_value(v);
    double cents = round(amount * 100.0);
    if (!(amount >= 0) || cents > (double)MAX_PRICE_CENTS || fabs(amount * 100.0 - cents) > 1e-6)
        return "price_amount";
    b->price_cents = (int64_t)cents;
    return NULL;
}

static const char *take_currency(const json_t *body, struct slk_booking *b)
{
    const json_t *v = json_object_get(body, "currency");
    if (v == NULL || json_is_null(v))
        return NULL;
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) != 3)
        return "currency";
    for (int i = 0; i < 3; i++) {
        if (s[i] < 'A' || s[i] > 'Z')
            return "currency";
    }
    memcpy(b->currency, s, 4);
    return NULL;
}

static const char *take_purpose(const json_t *body, struct slk_booking *b)
{
    const json_t *v = json_object_get(body, "purpose");
    if (v == NULL || json_is_null(v))
        return NULL;
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) > MAX_PURPOSE_BYTES || memchr(s, '\0', json_string_length(v)) != NULL)
        return "purpose";
    b->purpose = strdup(s);
    return b->purpose == NULL ? "purpose" : NULL;
}

static const char *parse_body(const json_t *body, struct create_op *op)
{
    const char *bad = NULL;
    if (bad == NULL)
        bad = take_id(body, "student_uuid", op->b.student);
    if (bad == NULL)
        bad = take_id(body, "course_uuid", op->b.course);
    if (bad == NULL)
        bad = take_id(body, "instructor_uuid", op->b.instructor);
    if (bad == NULL)
        bad = take_time(body, "start_time", &op->start_in);
    if (bad == NULL)
        bad = take_time(body, "end_time", &op->end_in);
    if (bad == NULL)
        bad = take_price(body, &op->b);
    if (bad == NULL)
        bad = take_currency(body, &op->b);
    if (bad == NULL)
        bad = take_purpose(body, &op->b);
    return bad;
}

/* Validation against the instructor's settings (R-HOLD). */

/* Returns NULL when the request fits; else sets *why and returns the field. */
static const char *validate_times(struct create_op *op, const struct slk_instructor_entry *e, int64_t now,
                                  const char **why)
{
    struct slk_booking *b = &op->b;
    if (slk__time_resolve(&op->start_in, e->tz, &b->start_ms) != 0) {
        *why = "start_time does not exist in the instructor's time zone";
        return "start_time";
    }
    if (slk__time_resolve(&op->end_in, e->tz, &b->end_ms) != 0) {
        *why = "end_time does not exist in the instructor's time zone";
        return "end_time";
    }
    *why = "end_time must be after start_time";
    if (b->end_ms <= b->start_ms)
        return "end_time";
    *why = "a booking may last at most 24 hours";
    if (b->end_ms - b->start_ms > (int64_t)SLK_MAX_BOOKING_MINUTES * 60000)
        return "end_time";
    *why = "start_time must be on the instructor's grid";
    if (!slk__on_grid(e, b->start_ms))
        return "start_time";
    *why = "end_time must be on the instructor's grid";
    if (!slk__on_grid(e, b->end_ms))
        return "end_time";
    *why = "the booking must last a whole number of grid units";
    if ((b->end_ms - b->start_ms) % ((int64_t)e->ins.granularity_minutes * 60000) != 0)
        return "end_time";
    *why = "start_time must be in the future";
    if (b->start_ms <= now)
        return "start_time";
    *why = "the booking must lie inside the instructor's working hours";
    if (!slk_instructor_covers(&e->ins, e->tz, b->start_ms, b->end_ms))
        return "start_time";
    return NULL;
}

static void plan_units(struct create_op *op, const struct slk_instructor *ins, int64_t now)
{
    struct slk_booking *b = &op->b;
    int64_t hold_ms = (int64_t)ins->hold_seconds * 1000;
    slk_booking_cover(b, ins);
    b->hold_expires_ms = now + (b->start_ms - now < hold_ms ? b->start_ms - now : hold_ms);
    b->requires_acceptance = ins->requires_acceptance;
    b->created_ms = b->updated_ms = now;
}

/* The hold call. */

static void on_hold(void *data, redisReply *r, const char *err);
static void take_hold(struct create_op *op, struct slk_instructor_entry *e);

static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct create_op *op = data;
    if (err != 0) {
        fail_backend(op, err, err == SLK_ENOTFOUND ? "instructor" : "redis");
        return;
    }
    take_hold(op, e);
}

/*
 * The uuid → instructor index, written once the hold is granted and before
 * the client hears of the uuid (the reply waits for it), with the record's
 * retention. A refused hold costs no index at all.
 */
static void on_index_set(void *data, redisReply *r, const char *err);

static int set_index(struct create_op *op)
{
    char key[SLK_KEY_MAX], expire[24];
    slk_format_i64(expire, op->b.hold_expires_ms + SLK_RETENTION_MS);
    const char *argv[5] = {"SET", key, op->b.instructor, "PXAT", expire};
    size_t lens[5] = {3, (size_t)slk_key_index(key, op->b.uuid), strlen(op->b.instructor), 4, strlen(expire)};
    return slk_redis_command_argv(op->req->worker->redis, on_index_set, op, 5, argv, lens);
}

#define HOLD_FIXED_KEYS 4
#define HOLD_FIXED_ARGS 5
#define HOLD_FIELDS 18

struct hold_args {
    char meta[SLK_KEY_MAX], fence[SLK_KEY_MAX], record[SLK_KEY_MAX], holds[SLK_KEY_MAX];
    char ver[24], expires[24], record_expires[24];
    char start[24], end[24], created[24], price[24], ufirst[24], umin[24], ucount[24];
    unsigned char sid[SLK_SESSION_BYTES], student[16], course[16];
    const char *argv[HOLD_FIXED_ARGS + 2 * HOLD_FIELDS];
    size_t lens[HOLD_FIXED_ARGS + 2 * HOLD_FIELDS];
    int n;
};

static void hold_arg(struct hold_args *a, const void *value, size_t len)
{
    a->argv[a->n] = value;
    a->lens[a->n++] = len;
}

static void hold_field(struct hold_args *a, const char *name, const char *value)
{
    hold_arg(a, name, strlen(name));
    hold_arg(a, value, strlen(value));
}

static void hold_numbers(struct hold_args *a, const struct slk_booking *b, int64_t version)
{
    slk_format_i64(a->ver, version);
    slk_format_i64(a->expires, b->hold_expires_ms);
    slk_format_i64(a->record_expires, b->hold_expires_ms + SLK_RETENTION_MS);
    slk_format_i64(a->start, b->start_ms);
    slk_format_i64(a->end, b->end_ms);
    slk_format_i64(a->created, b->created_ms);
    slk_format_i64(a->price, b->price_cents);
    slk_format_i64(a->ufirst, b->units_first_min);
    slk_format_i64(a->umin, b->unit_minutes);
    slk_format_i64(a->ucount, b->unit_count);
}

/* A uuid as its 16 bytes under the short name, any other id as text under the long one. */
static void hold_id(struct hold_args *a, const char *packed_name, const char *name, const char *id,
                    unsigned char bytes[16])
{
    if (slk_uuid_bytes(id, bytes) == 0) {
        hold_arg(a, packed_name, 4);
        hold_arg(a, bytes, 16);
    } else {
        hold_field(a, name, id);
    }
}

/*
 * The record's fields. Those at their default are left out (slk_booking_from_hash fills them in), and so are the
 * uuid and the instructor, which the record's key carries; the payment session keeps its 16 random bytes
 * ("sid"), not their 37-byte text, and so do the student's and the course's uuids ("stub", "crsb"): with their
 * text the record of a hold by uuid-named people was 64 bytes larger (jemalloc's 320-byte class, not 256).
 * Every byte costs Redis a scan of the record while it is written, and memory for as long as the hold lives.
 */
static void hold_fields(struct hold_args *a, const struct slk_booking *b)
{
    hold_field(a, "status", "payment_required");
    hold_id(a, "stub", "student", b->student, a->student);
    hold_id(a, "crsb", "course", b->course, a->course);
    hold_field(a, "start", a->start);
    hold_field(a, "end", a->end);
    hold_field(a, "expires", a->expires);
    hold_field(a, "created", a->created);
    if (slk_session_pack(b->session, a->sid) == 0) {
        hold_arg(a, "sid", 3);
        hold_arg(a, a->sid, sizeof(a->sid));
    } else {
        hold_field(a, "session", b->session);
    }
    hold_field(a, "ufirst", a->ufirst);
    hold_field(a, "umin", a->umin);
    hold_field(a, "ucount", a->ucount);
    if (b->price_cents >= 0)
        hold_field(a, "price", a->price);
    if (b->currency[0] != '\0')
        hold_field(a, "currency", b->currency);
    if (b->purpose != NULL && b->purpose[0] != '\0')
        hold_field(a, "purpose", b->purpose);
    if (b->requires_acceptance)
        hold_field(a, "accept", "1");
}

static int eval_hold(struct create_op *op)
{
    const struct slk_booking *b = &op->b;
    struct hold_args a;
    a.n = 0;
    hold_numbers(&a, b, op->ins_version);
    hold_arg(&a, a.ver, strlen(a.ver));
    hold_arg(&a, a.expires, strlen(a.expires));
    hold_arg(&a, a.record_expires, strlen(a.record_expires));
    hold_arg(&a, a.start, strlen(a.start));
    hold_arg(&a, b->uuid, strlen(b->uuid)); /* the instructor's own listing: the key names the instructor */
    hold_fields(&a, b);

    size_t nkeys = HOLD_FIXED_KEYS + (size_t)b->unit_count;
    const char **keys = malloc(nkeys * sizeof(char *));
    if (keys == NULL)
        return SLK_ENOMEM;
    slk_key_meta(a.meta, b->instructor);
    slk_key_fence(a.fence, b->instructor);
    slk_key_booking(a.record, b->instructor, b->uuid);
    keys[0] = a.meta;
    keys[1] = a.fence;
    keys[2] = a.record;
    slk_key_instructor_holds(a.holds, b->instructor);
    keys[3] = a.holds;
    for (int i = 0; i < b->unit_count; i++)
        keys[HOLD_FIXED_KEYS + i] = op->unit_keys[i];
    int rc = slk_script_eval(op->req->worker->redis, SLK_SCRIPT_HOLD, on_hold, op, (int)nkeys, keys, NULL, a.n, a.argv,
                             a.lens);
    free(keys);
    return rc;
}

static void reply_capped(struct create_op *op, int64_t retry_ms)
{
    struct slk_request *req = op->req;
    int cap = req->worker->cfg->max_holds_per_student;
    char seconds[24], message[128];
    snprintf(seconds, sizeof(seconds), "%" PRId64, (retry_ms + 999) / 1000);
    snprintf(message, sizeof(message), "The student already has %d live holds; pay for or cancel one first", cap);
    create_op_free(op);
    slk_metrics_hold(SLK_HOLD_REJECTED);
    if (slk_response_header(req, "Retry-After", seconds) != 0) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_error(req, 429, "rate_limited", message,
                    json_pack("{s:i, s:I}", "limit", cap, "retry_after_ms", (json_int_t)retry_ms));
}

static void take_hold(struct create_op *op, struct slk_instructor_entry *e)
{
    int64_t now = slk_clock_now_ms();
    const char *why;
    const char *bad = validate_times(op, e, now, &why);
    if (bad != NULL) {
        fail_invalid(op, bad, why);
        return;
    }
    plan_units(op, &e->ins, now);
    free(op->unit_keys);
    op->unit_keys =
        slk_booking_unit_keys(op->b.instructor, op->b.units_first_min, op->b.unit_minutes, op->b.unit_count);
    if (op->unit_keys == NULL) {
        fail_backend(op, SLK_ENOMEM, "hold");
        return;
    }
    op->ins_version = e->ins.version;
    op->freed_gen = slk_freed_gen(op->b.instructor);
    op->sent_ms = (int64_t)uv_now(&op->req->worker->loop);
    int rc = eval_hold(op);
    if (rc != 0)
        fail_backend(op, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE, "redis");
}

static void refusal_key(struct slk_refusal_key *k, const struct slk_booking *b, int64_t version)
{
    _Static_assert(sizeof(k->instructor) == sizeof(b->instructor), "both hold one instructor id");
    memcpy(k->instructor, b->instructor, sizeof(k->instructor));
    k->version = version;
    k->units_first_min = b->units_first_min;
    k->unit_count = b->unit_count;
}

/* The answer to this question, kept for the stampede behind it (refusal_cache.h); lapse from since_ms. */
static void keep_refusal(const struct create_op *op, const char *body, int64_t since_ms, int64_t lapse_ms)
{
    struct slk_refusal refusal = {.body = body, .len = strlen(body)};
    struct slk_refusal_key k;
    refusal_key(&k, &op->b, op->ins_version);
    slk_refusal_cache_put(op->req->worker->refusals, &k, op->freed_gen, since_ms, lapse_ms, &refusal);
}

static void reply_created(struct create_op *op)
{
    struct slk_request *req = op->req;
    char location[64];
    snprintf(location, sizeof(location), "/api/v1/bookings/%s", op->b.uuid);
    struct slk_json_text data;
    slk_reply_text_begin(&data, 201, "Booking created");
    slk_booking_write_json(&data, &op->b, slk_clock_now_ms());
    slk_outbox_record(req->worker, "held", &op->b, req->user_sub, slk_role_name((enum slk_role)req->user_role));
    /* Every unit is now held: the same question asked again gets what Redis would say, until they are freed. */
    int64_t from, to;
    slk_booking_units_range(&op->b, 0, op->b.unit_count - 1, &from, &to);
    char *taken = slk__slot_unavailable_body(from, to);
    if (taken != NULL) {
        int64_t left = op->b.hold_expires_ms - slk_clock_now_ms();
        keep_refusal(op, taken, (int64_t)uv_now(&req->worker->loop), left > 0 ? left : 0);
        free(taken);
    }
    op->capped = false; /* granted: the place is taken until the hold ends (payment, cancel, expiry) */
    create_op_free(op);
    slk_metrics_hold(SLK_HOLD_GRANTED);
    if (slk_response_header(req, "Location", location) != 0) {
        slk_json_text_free(&data);
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_text_end(req, 201, &data);
}

static void reply_taken(struct create_op *op, const redisReply *r)
{
    struct slk_request *req = op->req;
    int64_t from, to;
    slk_booking_units_range(&op->b, r->element[1]->integer, r->element[2]->integer, &from, &to);
    char *body = slk__slot_unavailable_body(from, to);
    if (body == NULL) {
        fail_backend(op, SLK_ENOMEM, "hold");
        return;
    }
    keep_refusal(op, body, op->sent_ms, r->element[3]->integer);
    create_op_free(op);
    slk_metrics_hold(SLK_HOLD_TAKEN);
    slk_reply_rendered(req, 409, body, strlen(body));
    free(body);
}

static void on_abandoned(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "could not undo a hold of unknown outcome; its TTL will free it", "error",
                err != NULL ? err : r->str, NULL);
}

/*
 * Takes a hold back whole (lua/release.lua 'undo': its units and its
 * record): the client will never learn its uuid. Used for a hold whose
 * reply never came (it may still run once Redis answers again; the undo
 * queues behind it) and for one granted over the student's cap.
 */
static void undo_hold(struct create_op *op)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4] = {op->b.uuid, "undo", "expired", now};
    if (slk_booking_eval(op->req->worker->redis, &op->b, SLK_SCRIPT_RELEASE, on_abandoned, NULL, 4, args) != 0)
        on_abandoned(NULL, NULL, "not queued");
}

static void on_index_deleted(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err == NULL && r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_ERROR, "index of an undone hold not deleted", "error", r->str, NULL);
}

/*
 * A granted hold then needs two things, asked at once: its uuid index and a
 * place under the student's cap, which also lists the hold for its student
 * (the student's keys live in another Cluster slot, R-HOLD). Over the cap the hold is undone at once — the brief
 * over-admission R-HOLD allows — so a refused hold never costs a cap call.
 */
static void grant_settled(struct create_op *op)
{
    if (op->index_rc == 0 && op->cap_rc == 0) {
        reply_created(op);
        return;
    }
    undo_hold(op);
    if (op->index_rc == 0) {
        char key[SLK_KEY_MAX];
        const char *argv[2] = {"DEL", key};
        size_t lens[2] = {3, (size_t)slk_key_index(key, op->b.uuid)};
        if (slk_redis_command_argv(op->req->worker->redis, on_index_deleted, NULL, 2, argv, lens) != 0)
            slk_log(SLK_LOG_WARN, "index of an undone hold not deleted", "booking", op->b.uuid, NULL);
    }
    if (op->cap_rc == SLK_EFULL && op->index_rc == 0) {
        reply_capped(op, op->retry_ms);
        return;
    }
    fail_backend(op, SLK_EUNAVAILABLE, "redis");
}

/* Counts down the index reply, the cap reply and settle_grant itself (which may see either answered at once). */
static void grant_step_done(struct create_op *op)
{
    if (--op->grant_pending == 0)
        grant_settled(op);
}

static void on_index_set(void *data, redisReply *r, const char *err)
{
    struct create_op *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_ERROR, "booking index write failed", "error", err != NULL ? err : r->str, NULL);
    op->index_rc = err != NULL || r->type == REDIS_REPLY_ERROR ? SLK_EUNAVAILABLE : 0;
    grant_step_done(op);
}

static void on_admitted(void *data, int rc, int64_t retry_ms)
{
    struct create_op *op = data;
    op->cap_rc = rc;
    op->retry_ms = retry_ms;
    op->capped = rc == 0;
    grant_step_done(op);
}

static void settle_grant(struct create_op *op)
{
    op->grant_pending = 3;
    if (set_index(op) != 0) {
        op->index_rc = SLK_EUNAVAILABLE;
        op->grant_pending--;
    }
    if (slk_hold_cap_admit(op->req->worker, &op->b, on_admitted, op) != 0) {
        op->cap_rc = SLK_EUNAVAILABLE;
        op->grant_pending--;
    }
    grant_step_done(op);
}

static void on_hold(void *data, redisReply *r, const char *err)
{
    struct create_op *op = data;
    if (err != NULL) {
        /* Timed out, lost mid-command or garbled: the script may have run. */
        if (err != slk_redis_err_shutdown)
            undo_hold(op);
        fail_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    if (slk__script_reply_is(r, "OK") && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER) {
        op->b.fence = r->element[1]->integer;
        settle_grant(op);
        return;
    }
    if (slk__script_reply_is(r, "TAKEN") && r->elements == 4) {
        reply_taken(op, r);
        return;
    }
    bool stale = slk__script_reply_is(r, "STALE"), noload = slk__script_reply_is(r, "NOLOAD");
    if ((stale || noload) && op->attempts++ < SLK_INSTRUCTOR_RESYNCS) {
        slk_instructor_resync(op->req->worker, op->b.instructor, noload, r, on_instructor, op);
        return;
    }
    /* Error replies (LOADING, BUSY, OOM) and settings that keep changing under us are passing conditions. */
    slk_log(SLK_LOG_ERROR, "hold not taken", "error",
            r->type == REDIS_REPLY_ERROR ? r->str
            : stale || noload            ? "settings kept changing"
                                         : "unexpected reply",
            NULL);
    fail_backend(op, r->type == REDIS_REPLY_ERROR || stale || noload ? SLK_EUNAVAILABLE : SLK_EPROTO, "redis");
}

static struct create_op *create_op_new(struct slk_request *req)
{
    struct create_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->req = req;
    slk_booking_init(&op->b);
    snprintf(op->b.status, sizeof(op->b.status), "payment_required");
    if (slk_uuid_v7(op->b.uuid, slk_clock_now_ms()) != 0 ||
        slk_random_token(op->b.session, sizeof(op->b.session), "sess_") != 0) {
        free(op);
        return NULL;
    }
    return op;
}

/* R-SEC before validation: a caller may only book for themselves, whatever else the body says. */
static bool may_book_as(const struct slk_request *req, const char *student)
{
    return slk__is_admin(req) || slk__is_student(req, student);
}

/* A body that names no student books for the caller, who must then be a student. */
static bool may_book(const struct slk_request *req, const json_t *body)
{
    const char *student = json_string_value(json_object_get(body, "student_uuid"));
    return student != NULL ? may_book_as(req, student) : slk__is_admin(req) || req->user_role == SLK_ROLE_STUDENT;
}

void slk_handle_booking_create(struct slk_request *req)
{
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return;
    if (!may_book(req, body)) {
        json_decref(body);
        slk_reply_error(req, 403, "forbidden", "Students may only book for themselves", NULL);
        return;
    }
    struct create_op *op = create_op_new(req);
    if (op == NULL) {
        json_decref(body);
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    const char *bad = parse_body(body, op);
    json_decref(body);
    if (bad != NULL) {
        fail_invalid(op, bad, "missing or invalid field");
        return;
    }
    slk_instructor_get(req->worker, op->b.instructor, on_instructor, op);
}

/*
 * Whether the request can be one whose refusal is kept: whole minutes, whole
 * grid units. A kept refusal's key then stands for exactly one start and end
 * under one settings version, which passed every other check (windows, grid
 * phase) when Redis refused it, so those need not run again. Whether it is
 * still ahead is for the caller to ask, every time.
 */
static bool same_question_shape(struct create_op *op, const struct slk_instructor_entry *e)
{
    struct slk_booking *b = &op->b;
    int64_t unit_ms = (int64_t)e->ins.granularity_minutes * 60000;
    return slk__time_resolve(&op->start_in, e->tz, &b->start_ms) == 0 &&
           slk__time_resolve(&op->end_in, e->tz, &b->end_ms) == 0 && b->start_ms % 60000 == 0 &&
           b->end_ms > b->start_ms && (b->end_ms - b->start_ms) % unit_ms == 0;
}

/* Parses the body into the question it asks and keeps that for the same bytes (hold_questions.h). */
static bool parse_question(struct slk_request *req, struct slk_hold_question *q)
{
    struct slk_worker *w = req->worker;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return false;
    }
    slk__body_keep(req, body); /* for the handler, should the request get that far */
    struct create_op op = {.req = req};
    slk_booking_init(&op.b);
    const char *bad = parse_body(body, &op);
    json_decref(body);
    const struct slk_instructor_entry *e =
        bad == NULL ? slk_instructor_cache_get(w->instructors, op.b.instructor) : NULL;
    bool asks = e != NULL && same_question_shape(&op, e);
    if (asks) {
        slk_booking_cover(&op.b, &e->ins);
        refusal_key(&q->key, &op.b, e->ins.version);
        q->start_ms = op.b.start_ms;
        memcpy(q->student, op.b.student, sizeof(q->student));
        slk_hold_questions_put(w->questions, req->body, req->body_len, q);
    }
    slk_booking_clear(&op.b);
    return asks;
}

/* The question of this body: kept for its bytes under the instructor's current settings, else parsed. */
static bool question_of(struct slk_request *req, struct slk_hold_question *q)
{
    struct slk_worker *w = req->worker;
    if (slk_hold_questions_get(w->questions, req->body, req->body_len, q)) {
        const struct slk_instructor_entry *e = slk_instructor_cache_get(w->instructors, q->key.instructor);
        if (e != NULL && e->ins.version == q->key.version)
            return true;
    }
    return parse_question(req, q);
}

/*
 * The hot-slot path, run after authentication and before the rate limit: a
 * hold for exactly the units this worker was just told are taken gets the
 * same 409 again without Redis (refusal_cache.h), and one asked while the
 * same question is in flight waits for that answer (hold_flights.h). A body
 * seen before is not parsed again (hold_questions.h). Anything else goes the
 * normal way: settings not cached here, a body the handler would refuse, a
 * start no longer ahead, or an Idempotency-Key (its reply must be stored by
 * the gate).
 */
bool slk_booking_create_refused_early(struct slk_request *req)
{
    struct slk_worker *w = req->worker;
    struct slk_hold_question q;
    if (slk_request_header(req, "idempotency-key") != NULL || !question_of(req, &q) || !may_book_as(req, q.student) ||
        q.start_ms <= slk_clock_now_ms())
        return false;
    struct slk_refusal refusal;
    bool refused = slk_refusal_cache_get(w->refusals, &q.key, (int64_t)uv_now(&w->loop), &refusal);
    bool parked = !refused && slk_hold_flights_wait(w->flights, &q.key, req);
    if (!refused && !parked)
        slk_hold_flights_take_off(w->flights, &q.key, req);
    if (refused) {
        slk_metrics_hold(SLK_HOLD_TAKEN);
        slk_reply_rendered(req, 409, refusal.body, refusal.len);
    }
    return refused || parked;
}
