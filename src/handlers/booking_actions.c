/*
 * Everything that happens to an existing booking: GET, the payment callback
 * (R-PAY), cancel (R-CANCEL), accept and reject. Each action first fetches
 * the booking from wherever it lives (fetch_*), then runs its own step.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define MAX_REFERENCE_BYTES 128
#define MAX_REASON_BYTES 500

struct booking_op;
typedef void (*booking_step_cb)(struct booking_op *op);

struct booking_op {
    struct slk_request *req;
    char uuid[37];
    struct slk_booking b;
    booking_step_cb next; /* runs once b is fetched */
    int restarts;
    /* Action inputs. */
    bool succeeded;
    char reference[MAX_REFERENCE_BYTES + 1];
    char engine[SLK_MAX_ID_LEN + 1];
    char *reason;
    json_t *payment_body;   /* checked against the booking once it is fetched */
    const char *new_status; /* what release_hold() moves the booking to */
    bool repeat_ok;
    const char *actor; /* cancelled_by */
    const char *target_status;
};

static void op_free(struct booking_op *op)
{
    slk_booking_clear(&op->b);
    free(op->reason);
    json_decref(op->payment_body);
    free(op);
}

static void finish_error(struct booking_op *op, int status, const char *code, const char *message, json_t *details)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk_reply_error(req, status, code, message, details);
}

static void finish_backend(struct booking_op *op, int err, const char *what)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk__reply_backend_error(req, err, what);
}

static void finish_booking(struct booking_op *op, const char *message)
{
    struct slk_request *req = op->req;
    json_t *data = slk_booking_to_json(&op->b, slk_clock_now_ms());
    op_free(op);
    if (data == NULL) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_ok(req, 200, message, data);
}

static void finish_invalid_transition(struct booking_op *op)
{
    const char *status = slk_booking_status(&op->b, slk_clock_now_ms());
    finish_error(op, 409, "invalid_transition", "The booking cannot make this transition from its current status",
                 json_pack("{s:s}", "status", status));
}

static bool status_is(const struct booking_op *op, const char *status)
{
    return strcmp(slk_booking_status(&op->b, slk_clock_now_ms()), status) == 0;
}

/* Fetch: uuid → instructor (index) → Redis record, or the Postgres row once it exists. */

static void on_pg_booking(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        finish_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    slk_booking_clear(&op->b);
    if (slk_booking_from_pg(&op->b, res, 0) != 0) {
        finish_backend(op, SLK_EPROTO, "postgres");
        return;
    }
    op->next(op);
}

static void select_by_uuid(struct booking_op *op, slk_pg_cb cb)
{
    const char *params[1] = {op->uuid};
    if (slk_pg_query(op->req->worker->pg, "SELECT " SLK_BOOKING_PG_COLUMNS " FROM bookings WHERE uuid = $1", 1, params,
                     cb, op) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
}

static void fetch_from_pg(struct booking_op *op)
{
    select_by_uuid(op, on_pg_booking);
}

/* A record left "confirming" may belong to a booking Postgres committed while Redis missed the news. */
static void on_pg_confirming(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (err == NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0) {
        op->next(op);
        return;
    }
    on_pg_booking(data, res, err);
}

static bool redis_failed(const redisReply *r, const char *err)
{
    if (err == NULL && r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_ERROR, "redis error reply", "error", r->str, NULL);
    return err != NULL || r->type == REDIS_REPLY_ERROR;
}

static void on_record(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (redis_failed(r, err)) {
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    slk_booking_clear(&op->b);
    int rc = slk_booking_from_hash(&op->b, r);
    if (rc == SLK_ENOTFOUND || (rc == 0 && op->b.in_pg)) {
        fetch_from_pg(op);
        return;
    }
    if (rc != 0) {
        finish_backend(op, rc, "redis");
        return;
    }
    if (strcmp(op->b.status, "confirming") == 0) {
        select_by_uuid(op, on_pg_confirming);
        return;
    }
    op->next(op);
}

static void on_index(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (redis_failed(r, err)) {
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len > SLK_MAX_ID_LEN) {
        fetch_from_pg(op);
        return;
    }
    char instructor[SLK_MAX_ID_LEN + 1], key[SLK_KEY_MAX];
    memcpy(instructor, r->str, r->len);
    instructor[r->len] = '\0';
    const char *argv[2] = {"HGETALL", key};
    size_t lens[2] = {7, (size_t)slk_key_booking(key, instructor, op->uuid)};
    if (slk_redis_command_argv(op->req->worker->redis, on_record, op, 2, argv, lens) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
}

static void fetch(struct booking_op *op)
{
    char key[SLK_KEY_MAX];
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, (size_t)slk_key_index(key, op->uuid)};
    if (slk_redis_command_argv(op->req->worker->redis, on_index, op, 2, argv, lens) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
}

static struct booking_op *op_start(struct slk_request *req, booking_step_cb next)
{
    char uuid[64];
    if (!slk__param(req, 0, uuid, sizeof(uuid)) || !slk_uuid_valid(uuid, strlen(uuid))) {
        slk_reply_error(req, 404, "not_found", "No such booking", NULL);
        return NULL;
    }
    struct booking_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return NULL;
    }
    op->req = req;
    op->next = next;
    slk_booking_init(&op->b);
    slk_uuid_canonical(uuid, op->uuid);
    return op;
}

/* Who may see a booking (R-SEC): its student, its instructor, admins. Others get 404. */
static bool can_see(const struct booking_op *op)
{
    return slk__is_admin(op->req) || slk__is_student(op->req, op->b.student) ||
           slk__is_instructor(op->req, op->b.instructor);
}

/* Runs one of the record scripts (pin, confirm, release): KEYS = record + units. */
static int eval_on_units(struct booking_op *op, enum slk_script_id script, slk_redis_cb cb, int nargs,
                         const char **args)
{
    return slk_booking_eval(op->req->worker->redis, &op->b, script, cb, op, nargs, args);
}

static const char *script_tag(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING)
        return "";
    return r->element[0]->str;
}

static const char *script_status(const redisReply *r)
{
    if (r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING)
        return "";
    return r->element[1]->str;
}

/* GET /api/v1/bookings/{uuid} */

static void get_step(struct booking_op *op)
{
    if (!can_see(op)) {
        finish_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    finish_booking(op, "Booking details");
}

void slk_handle_booking_get(struct slk_request *req)
{
    struct booking_op *op = op_start(req, get_step);
    if (op != NULL)
        fetch(op);
}

/* After Postgres changed a booking: free its units in Redis too. Failure leaves them blocked until they
 * expire (never double-booked), so it is logged, not reported to the client. */

static void on_released_after_pg(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "units not released in redis", "booking", op->uuid, "error", err != NULL ? err : r->str,
                NULL);
    finish_booking(op, op->target_status);
}

static void release_after_pg(struct booking_op *op, const char *status, const char *message)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4] = {op->b.uuid, "force", status, now};
    op->target_status = message;
    if (eval_on_units(op, SLK_SCRIPT_RELEASE, on_released_after_pg, 4, args) != 0)
        on_released_after_pg(op, NULL, slk_redis_err_disconnected);
}

/* Payment callback (R-PAY). */

static void on_confirmed_in_redis(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "booked units not written to redis", "booking", op->uuid, "error",
                err != NULL ? err : r->str, NULL);
    finish_booking(op, op->target_status);
}

/* Postgres has the booking: make Redis show its units as booked (idempotent), then reply. */
static void mark_booked(struct booking_op *op, const char *message)
{
    op->target_status = message;
    char expire[24], now[24];
    int64_t units_end = (op->b.units_first_min + (int64_t)op->b.unit_count * op->b.unit_minutes) * 60000;
    snprintf(expire, sizeof(expire), "%" PRId64, units_end + SLK_BOOKED_UNIT_GRACE_MS);
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *ref = op->b.payment_reference != NULL ? op->b.payment_reference : "";
    const char *args[6] = {op->b.uuid, op->b.status, expire, now, "payref", ref};
    if (eval_on_units(op, SLK_SCRIPT_CONFIRM, on_confirmed_in_redis, 6, args) != 0)
        on_confirmed_in_redis(op, NULL, slk_redis_err_disconnected);
}

static void on_overlap_released(void *data, redisReply *r, const char *err)
{
    (void)r;
    (void)err;
    struct booking_op *op = data;
    finish_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
}

/* The booking's own row: confirm it in Redis if it is paid/confirmed, else report where it stands. */
static void apply_pg_row(struct booking_op *op, const PGresult *res)
{
    slk_booking_clear(&op->b);
    if (slk_booking_from_pg(&op->b, res, 0) != 0) {
        finish_backend(op, SLK_EPROTO, "postgres");
        return;
    }
    if (strcmp(op->b.status, "confirmed") != 0 && strcmp(op->b.status, "paid") != 0) {
        finish_invalid_transition(op);
        return;
    }
    mark_booked(op, "Payment applied");
}

static bool pg_rows(const PGresult *res, const char *err, struct booking_op *op)
{
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
        return false;
    }
    return true;
}

/* 23P01 may be our own row inserted by a concurrent delivery (ON CONFLICT only arbitrates the uuid). */
static void on_overlap_checked(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (!pg_rows(res, err, op))
        return;
    if (PQntuples(res) > 0) {
        apply_pg_row(op, res);
        return;
    }
    /* The exclusion constraint caught an overlap Redis did not: the last line of defence held. */
    slk_log(SLK_LOG_WARN, "postgres refused an overlapping booking", "booking", op->uuid, NULL);
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4] = {op->b.uuid, "force", "expired", now};
    if (eval_on_units(op, SLK_SCRIPT_RELEASE, on_overlap_released, 4, args) != 0)
        on_overlap_released(op, NULL, slk_redis_err_disconnected);
}

static void on_inserted(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (err != NULL) {
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && state != NULL && strcmp(state, "23P01") == 0) {
        select_by_uuid(op, on_overlap_checked);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        slk_log(SLK_LOG_ERROR, "booking insert failed", "booking", op->uuid, "error", PQresultErrorMessage(res), NULL);
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0 && op->restarts++ < 2) {
        /* Already inserted by a concurrent or earlier delivery of this callback. */
        select_by_uuid(op, on_inserted);
        return;
    }
    apply_pg_row(op, res);
}

/* pin.lua saw foreign units: unless Postgres already has this booking, the hold is lost. */
static void on_expired_checked(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (!pg_rows(res, err, op))
        return;
    if (PQntuples(res) > 0) {
        apply_pg_row(op, res);
        return;
    }
    finish_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
}

static const char insert_sql[] =
    "INSERT INTO bookings (uuid, status, student_id, course_id, instructor_id, start_at, end_at, units_start_at, "
    "unit_minutes, unit_count, price_amount, currency, purpose, payment_session_id, payment_reference, "
    "payment_engine, hold_expires_at, fence_token, created_at) VALUES ($1, $2, $3, $4, $5, "
    "'epoch'::timestamptz + $6::bigint * interval '1 millisecond', "
    "'epoch'::timestamptz + $7::bigint * interval '1 millisecond', "
    "'epoch'::timestamptz + $8::bigint * interval '1 minute', $9, $10, $11::numeric / 100, $12, $13, $14, $15, $16, "
    "'epoch'::timestamptz + $17::bigint * interval '1 millisecond', $18, "
    "'epoch'::timestamptz + $19::bigint * interval '1 millisecond') "
    "ON CONFLICT (uuid) DO NOTHING RETURNING " SLK_BOOKING_PG_COLUMNS;

static void insert_booking(struct booking_op *op)
{
    const struct slk_booking *b = &op->b;
    char start[24], end[24], first[24], umin[16], ucount[16], price[24], expires[24], fence[24], created[24];
    snprintf(start, sizeof(start), "%" PRId64, b->start_ms);
    snprintf(end, sizeof(end), "%" PRId64, b->end_ms);
    snprintf(first, sizeof(first), "%" PRId64, b->units_first_min);
    snprintf(umin, sizeof(umin), "%d", b->unit_minutes);
    snprintf(ucount, sizeof(ucount), "%d", b->unit_count);
    snprintf(price, sizeof(price), "%" PRId64, b->price_cents);
    snprintf(expires, sizeof(expires), "%" PRId64, b->hold_expires_ms);
    snprintf(fence, sizeof(fence), "%" PRId64, b->fence);
    snprintf(created, sizeof(created), "%" PRId64, b->created_ms);
    const char *params[19] = {
        b->uuid,
        b->requires_acceptance ? "paid" : "confirmed",
        b->student,
        b->course,
        b->instructor,
        start,
        end,
        first,
        umin,
        ucount,
        b->price_cents >= 0 ? price : NULL,
        b->currency[0] != '\0' ? b->currency : NULL,
        b->purpose,
        b->session,
        op->reference,
        op->engine[0] != '\0' ? op->engine : NULL,
        expires,
        fence,
        created,
    };
    if (slk_pg_query(op->req->worker->pg, insert_sql, 19, params, on_inserted, op) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
}

static void payment_step(struct booking_op *op);

static void on_pinned(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (redis_failed(r, err)) {
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const char *tag = script_tag(r);
    if (strcmp(tag, "PINNED") == 0) {
        insert_booking(op);
        return;
    }
    if (strcmp(tag, "BOOKED") == 0) {
        select_by_uuid(op, on_inserted);
        return;
    }
    if (strcmp(tag, "EXPIRED") == 0) {
        select_by_uuid(op, on_expired_checked);
        return;
    }
    if ((strcmp(tag, "STATUS") == 0 || strcmp(tag, "NOTFOUND") == 0) && op->restarts++ < 2) {
        /* Another delivery moved the booking meanwhile: look again. */
        fetch(op);
        return;
    }
    finish_backend(op, SLK_EPROTO, "redis");
}

static void pin(struct booking_op *op)
{
    char until[24], now[24];
    int64_t t = slk_clock_now_ms();
    /* The grace outlasts the Postgres statement timeout, so the units cannot lapse mid-insert. */
    snprintf(until, sizeof(until), "%" PRId64, t + 2 * (int64_t)op->req->worker->cfg->pg_timeout_ms + 5000);
    snprintf(now, sizeof(now), "%" PRId64, t);
    const char *args[3] = {op->b.uuid, until, now};
    if (eval_on_units(op, SLK_SCRIPT_PIN, on_pinned, 3, args) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
}

/*
 * The reply of release.lua in 'hold' mode. OK: the unpaid hold is gone and
 * the booking has op->new_status. STATUS: it had already moved on; a repeat
 * of the same outcome is answered like the first when op->repeat_ok (an
 * at-least-once callback), else it is an invalid transition.
 */
static void on_hold_released(void *data, redisReply *r, const char *err)
{
    struct booking_op *op = data;
    if (redis_failed(r, err)) {
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const char *tag = script_tag(r);
    bool released = strcmp(tag, "OK") == 0;
    if (!released && strcmp(tag, "STATUS") != 0) {
        finish_backend(op, SLK_EPROTO, "redis");
        return;
    }
    snprintf(op->b.status, sizeof(op->b.status), "%s", released ? op->new_status : script_status(r));
    if (released || (op->repeat_ok && strcmp(op->b.status, op->new_status) == 0)) {
        finish_booking(op, op->target_status);
        return;
    }
    finish_invalid_transition(op);
}

static void release_hold(struct booking_op *op, const char *status, const char *message, bool repeat_ok, int nextra,
                         const char **extra)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4 + 8] = {op->b.uuid, "hold", status, now};
    memcpy(&args[4], extra, (size_t)nextra * sizeof(char *));
    op->new_status = status;
    op->target_status = message;
    op->repeat_ok = repeat_ok;
    if (eval_on_units(op, SLK_SCRIPT_RELEASE, on_hold_released, 4 + nextra, args) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "redis");
}

static void release_failed_payment(struct booking_op *op)
{
    free(op->b.payment_reference);
    op->b.payment_reference = strdup(op->reference);
    const char *extra[2] = {"payref", op->reference};
    release_hold(op, "payment_failed", "Payment failed; the slot is released", true, 2, extra);
}

static bool amount_matches(const json_t *body, const struct slk_booking *b, const char **field)
{
    const json_t *amount = json_object_get(body, "amount");
    if (amount != NULL && !json_is_null(amount)) {
        *field = "amount";
        if (!json_is_number(amount) || b->price_cents < 0)
            return false;
        double cents = json_number_value(amount) * 100.0;
        if (fabs(cents - (double)b->price_cents) > 1e-6)
            return false;
    }
    const json_t *currency = json_object_get(body, "currency");
    if (currency != NULL && !json_is_null(currency)) {
        *field = "currency";
        if (!json_is_string(currency) || strcmp(json_string_value(currency), b->currency) != 0)
            return false;
    }
    return true;
}

static void payment_step(struct booking_op *op)
{
    const char *stored = op->b.status;
    bool unpaid = strcmp(stored, "payment_required") == 0 || strcmp(stored, "confirming") == 0;
    if (op->succeeded) {
        if (unpaid) {
            pin(op);
            return;
        }
        if (strcmp(stored, "confirmed") == 0 || strcmp(stored, "paid") == 0) {
            mark_booked(op, "Payment already applied");
            return;
        }
        if (strcmp(stored, "expired") == 0) {
            finish_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
            return;
        }
        finish_invalid_transition(op);
        return;
    }
    if (strcmp(stored, "payment_failed") == 0) {
        finish_booking(op, "Payment failed; the slot is released");
        return;
    }
    if (strcmp(stored, "payment_required") == 0) {
        release_failed_payment(op);
        return;
    }
    finish_invalid_transition(op);
}

static void payment_check_step(struct booking_op *op);

static bool parse_payment(struct slk_request *req, struct booking_op *op, json_t *body)
{
    const char *status = json_string_value(json_object_get(body, "payment_status"));
    const json_t *ref = json_object_get(body, "payment_reference");
    const json_t *engine = json_object_get(body, "payment_engine");
    if (status == NULL || (strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0)) {
        slk_reply_invalid(req, "payment_status", "payment_status must be \"succeeded\" or \"failed\"");
        return false;
    }
    if (!json_is_string(ref) || json_string_length(ref) == 0 || json_string_length(ref) > MAX_REFERENCE_BYTES) {
        slk_reply_invalid(req, "payment_reference", "payment_reference must be a non-empty string");
        return false;
    }
    if (engine != NULL && !json_is_null(engine) &&
        (!json_is_string(engine) || json_string_length(engine) > SLK_MAX_ID_LEN)) {
        slk_reply_invalid(req, "payment_engine", "payment_engine must be a short string");
        return false;
    }
    op->succeeded = strcmp(status, "succeeded") == 0;
    snprintf(op->reference, sizeof(op->reference), "%s", json_string_value(ref));
    snprintf(op->engine, sizeof(op->engine), "%s", json_is_string(engine) ? json_string_value(engine) : "");
    return true;
}

static int verify_signature(struct slk_request *req)
{
    const struct slk_str *sig = slk_request_header(req, "x-signature");
    const char *secret = req->worker->cfg->webhook_secret;
    if (sig == NULL)
        return SLK_EAUTH;
    return slk_signature_verify(sig->ptr, sig->len, req->body, req->body_len, (const unsigned char *)secret,
                                strlen(secret), slk_clock_now_ms() / 1000);
}

void slk_handle_booking_payment(struct slk_request *req)
{
    int rc = verify_signature(req);
    if (rc != 0) {
        slk_reply_error(req, 401, "bad_signature",
                        rc == SLK_EAUTH ? "Missing or invalid X-Signature" : "X-Signature timestamp out of tolerance",
                        NULL);
        return;
    }
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return;
    struct booking_op *op = op_start(req, payment_check_step);
    if (op == NULL || !parse_payment(req, op, body)) {
        if (op != NULL)
            op_free(op);
        json_decref(body);
        return;
    }
    op->payment_body = body;
    fetch(op);
}

static void payment_check_step(struct booking_op *op)
{
    const char *field = NULL;
    if (!amount_matches(op->payment_body, &op->b, &field)) {
        struct slk_request *req = op->req;
        op_free(op);
        slk_reply_invalid(req, field != NULL ? field : "amount", "amount/currency differ from the booking's");
        return;
    }
    op->next = payment_step;
    payment_step(op);
}

/* Cancel (R-CANCEL). */

static const char cancel_sql[] =
    "UPDATE bookings SET status = 'cancelled', cancelled_at = now(), updated_at = now(), cancel_reason = $2, "
    "cancelled_by = $3, refund_eligible = (start_at - now() >= $4::bigint * interval '1 millisecond') "
    "WHERE uuid = $1 AND status IN ('paid', 'confirmed') RETURNING " SLK_BOOKING_PG_COLUMNS;

static void on_pg_transition(void *data, PGresult *res, const char *err)
{
    struct booking_op *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        /* Changed by someone else since the fetch: report where it is now. */
        op->next = finish_invalid_transition;
        fetch_from_pg(op);
        return;
    }
    slk_booking_clear(&op->b);
    if (slk_booking_from_pg(&op->b, res, 0) != 0) {
        finish_backend(op, SLK_EPROTO, "postgres");
        return;
    }
    if (strcmp(op->b.status, "confirmed") == 0) {
        finish_booking(op, op->target_status);
        return;
    }
    release_after_pg(op, op->b.status, op->target_status);
}

static void cancel_hold(struct booking_op *op)
{
    int64_t now = slk_clock_now_ms();
    struct slk_booking *b = &op->b;
    b->cancelled_ms = b->updated_ms = now;
    b->refund_eligible = b->start_ms - now >= SLK_REFUND_CUTOFF_MS;
    snprintf(b->cancelled_by, sizeof(b->cancelled_by), "%s", op->actor);
    b->cancel_reason = op->reason != NULL ? strdup(op->reason) : NULL;
    char now_s[24];
    snprintf(now_s, sizeof(now_s), "%" PRId64, now);
    const char *extra[8] = {"cancelled",     now_s,
                            "cancelled_by",  op->actor,
                            "refund",        b->refund_eligible ? "1" : "0",
                            "cancel_reason", op->reason != NULL ? op->reason : ""};
    release_hold(op, "cancelled", "Booking cancelled", false, 8, extra);
}

static void cancel_step(struct booking_op *op)
{
    if (!can_see(op)) {
        finish_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    op->actor = slk__is_admin(op->req) ? "system" : slk__is_student(op->req, op->b.student) ? "student" : "instructor";
    if (!op->b.in_pg) {
        if (!status_is(op, "payment_required")) {
            finish_invalid_transition(op);
            return;
        }
        cancel_hold(op);
        return;
    }
    if (!status_is(op, "paid") && !status_is(op, "confirmed")) {
        finish_invalid_transition(op);
        return;
    }
    char cutoff[24];
    snprintf(cutoff, sizeof(cutoff), "%" PRId64, SLK_REFUND_CUTOFF_MS);
    const char *params[4] = {op->uuid, op->reason, op->actor, cutoff};
    op->target_status = "Booking cancelled";
    if (slk_pg_query(op->req->worker->pg, cancel_sql, 4, params, on_pg_transition, op) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
}

void slk_handle_booking_cancel(struct slk_request *req)
{
    json_t *body = slk__body_object(req, true);
    if (body == NULL)
        return;
    const json_t *reason = json_object_get(body, "reason");
    if (reason != NULL && !json_is_null(reason) &&
        (!json_is_string(reason) || json_string_length(reason) > MAX_REASON_BYTES)) {
        json_decref(body);
        slk_reply_invalid(req, "reason", "reason must be a string of at most 500 bytes");
        return;
    }
    struct booking_op *op = op_start(req, cancel_step);
    if (op != NULL && json_is_string(reason))
        op->reason = strdup(json_string_value(reason));
    json_decref(body);
    if (op != NULL)
        fetch(op);
}

/* Accept / reject: the instructor's decision on a paid booking. */

static const char decide_sql[] = "UPDATE bookings SET status = $2, updated_at = now() WHERE uuid = $1 "
                                 "AND status = 'paid' RETURNING " SLK_BOOKING_PG_COLUMNS;

static void decide_step(struct booking_op *op)
{
    if (!can_see(op)) {
        finish_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!slk__is_admin(op->req) && !slk__is_instructor(op->req, op->b.instructor)) {
        finish_error(op, 403, "forbidden", "Only the instructor may accept or reject a booking", NULL);
        return;
    }
    if (!op->b.in_pg || !status_is(op, "paid")) {
        finish_invalid_transition(op);
        return;
    }
    const char *params[2] = {op->uuid, op->target_status};
    op->target_status = strcmp(op->target_status, "confirmed") == 0 ? "Booking accepted" : "Booking rejected";
    if (slk_pg_query(op->req->worker->pg, decide_sql, 2, params, on_pg_transition, op) != 0)
        finish_backend(op, SLK_EUNAVAILABLE, "postgres");
}

static void start_decision(struct slk_request *req, const char *status)
{
    struct booking_op *op = op_start(req, decide_step);
    if (op == NULL)
        return;
    op->target_status = status;
    fetch(op);
}

void slk_handle_booking_accept(struct slk_request *req)
{
    start_decision(req, "confirmed");
}

void slk_handle_booking_reject(struct slk_request *req)
{
    start_decision(req, "rejected");
}
