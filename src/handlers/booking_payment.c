/* The payment callback (R-PAY): pin, insert into Postgres, mark booked; or release on failure. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/booking_op.h"
#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/hold_cap.h"
#include "slk/log.h"
#include "slk/outbox.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

static void on_confirmed_in_redis(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "booked units not written to redis", "booking", op->uuid, "error",
                err != NULL ? err : r->str, NULL);
    bop_reply(op, op->target_status);
}

/* Postgres has the booking: make Redis show its units as booked (idempotent), then reply. */
static void mark_booked(struct bop *op, const char *message)
{
    op->target_status = message;
    char expire[24], now[24];
    int64_t units_end = (op->b.units_first_min + (int64_t)op->b.unit_count * op->b.unit_minutes) * 60000;
    snprintf(expire, sizeof(expire), "%" PRId64, units_end + SLK_BOOKED_UNIT_GRACE_MS);
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *ref = op->b.payment_reference != NULL ? op->b.payment_reference : "";
    const char *args[6] = {op->b.uuid, op->b.status, expire, now, "payref", ref};
    if (bop_eval(op, SLK_SCRIPT_CONFIRM, on_confirmed_in_redis, 6, args) != 0)
        on_confirmed_in_redis(op, NULL, slk_redis_err_disconnected);
}

static void on_overlap_released(void *data, redisReply *r, const char *err)
{
    (void)r;
    (void)err;
    struct bop *op = data;
    bop_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
}

/* The booking's own row: confirm it in Redis if it is paid/confirmed, else report where it stands. */
static void apply_pg_row(struct bop *op, const PGresult *res)
{
    if (!bop_take_row(op, res))
        return;
    if (strcmp(op->b.status, "confirmed") != 0 && strcmp(op->b.status, "paid") != 0) {
        bop_invalid_transition(op);
        return;
    }
    /* Paid: no longer a live hold counted against the student's cap. */
    slk_hold_cap_forget(op->req->worker, op->b.student, op->b.uuid);
    mark_booked(op, "Payment applied");
}

/* 23P01 may be our own row inserted by a concurrent delivery (ON CONFLICT only arbitrates the uuid). */
static void on_overlap_checked(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (!bop_pg_rows(res, err, op))
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
    if (bop_eval(op, SLK_SCRIPT_RELEASE, on_overlap_released, 4, args) != 0)
        on_overlap_released(op, NULL, slk_redis_err_disconnected);
}

static void on_inserted(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (err != NULL) {
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && state != NULL && strcmp(state, "23P01") == 0) {
        bop_select(op, on_overlap_checked);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        slk_log(SLK_LOG_ERROR, "booking insert failed", "booking", op->uuid, "error", PQresultErrorMessage(res), NULL);
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0 && op->restarts++ < 2) {
        /* Already inserted by a concurrent or earlier delivery of this callback. */
        bop_select(op, on_inserted);
        return;
    }
    apply_pg_row(op, res);
}

/* pin.lua saw foreign units: unless Postgres already has this booking, the hold is lost. */
static void on_expired_checked(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (!bop_pg_rows(res, err, op))
        return;
    if (PQntuples(res) > 0) {
        apply_pg_row(op, res);
        return;
    }
    bop_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
}

static const char insert_sql[] =
    "INSERT INTO bookings (uuid, status, student_id, course_id, instructor_id, start_at, end_at, units_start_at, "
    "unit_minutes, unit_count, price_amount, currency, purpose, payment_session_id, payment_reference, "
    "payment_engine, hold_expires_at, fence_token, created_at, actor_id, actor_role) VALUES ($1, $2, $3, $4, $5, "
    "'epoch'::timestamptz + $6::bigint * interval '1 millisecond', "
    "'epoch'::timestamptz + $7::bigint * interval '1 millisecond', "
    "'epoch'::timestamptz + $8::bigint * interval '1 minute', $9, $10, $11::numeric / 100, $12, $13, $14, $15, $16, "
    "'epoch'::timestamptz + $17::bigint * interval '1 millisecond', $18, "
    "'epoch'::timestamptz + $19::bigint * interval '1 millisecond', coalesce($16, 'payment'), 'payment') "
    "ON CONFLICT (uuid) DO NOTHING RETURNING " SLK_BOOKING_PG_COLUMNS;

static void insert_booking(struct bop *op)
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
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
}

static void payment_step(struct bop *op);

static void on_pinned(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (bop_redis_failed(r, err)) {
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const char *tag = bop_script_tag(r);
    if (strcmp(tag, "PINNED") == 0) {
        insert_booking(op);
        return;
    }
    if (strcmp(tag, "BOOKED") == 0) {
        bop_select(op, on_inserted);
        return;
    }
    if (strcmp(tag, "EXPIRED") == 0) {
        bop_select(op, on_expired_checked);
        return;
    }
    if ((strcmp(tag, "STATUS") == 0 || strcmp(tag, "NOTFOUND") == 0) && op->restarts++ < 2) {
        /* Another delivery moved the booking meanwhile: look again. */
        bop_fetch(op);
        return;
    }
    bop_backend(op, SLK_EPROTO, "redis");
}

static void pin(struct bop *op)
{
    char until[24], now[24];
    int64_t t = slk_clock_now_ms();
    /* The grace outlasts the Postgres statement timeout, so the units cannot lapse mid-insert. */
    snprintf(until, sizeof(until), "%" PRId64, t + 2 * (int64_t)op->req->worker->cfg->pg_timeout_ms + 5000);
    snprintf(now, sizeof(now), "%" PRId64, t);
    const char *args[3] = {op->b.uuid, until, now};
    if (bop_eval(op, SLK_SCRIPT_PIN, on_pinned, 3, args) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
}

static void release_failed_payment(struct bop *op)
{
    free(op->b.payment_reference);
    op->b.payment_reference = strdup(op->reference);
    const char *extra[2] = {"payref", op->reference};
    bop_release_hold(op, "payment_failed", "Payment failed; the slot is released", true, 2, extra);
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

static void payment_step(struct bop *op)
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
            bop_error(op, 409, "hold_expired", "The hold expired and its time was taken by another booking", NULL);
            return;
        }
        bop_invalid_transition(op);
        return;
    }
    if (strcmp(stored, "payment_failed") == 0) {
        bop_reply(op, "Payment failed; the slot is released");
        return;
    }
    if (strcmp(stored, "payment_required") == 0) {
        release_failed_payment(op);
        return;
    }
    bop_invalid_transition(op);
}

static void payment_check_step(struct bop *op);

static bool parse_payment(struct slk_request *req, struct bop *op, json_t *body)
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

void slk_handle_booking_payment(struct slk_request *req)
{
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return;
    struct bop *op = bop_start(req, payment_check_step);
    if (op == NULL || !parse_payment(req, op, body)) {
        if (op != NULL)
            bop_free(op);
        json_decref(body);
        return;
    }
    op->payment_body = body;
    bop_fetch(op);
}

static void payment_check_step(struct bop *op)
{
    const char *field = NULL;
    if (!amount_matches(op->payment_body, &op->b, &field)) {
        struct slk_request *req = op->req;
        bop_free(op);
        slk_reply_invalid(req, field != NULL ? field : "amount", "amount/currency differ from the booking's");
        return;
    }
    op->next = payment_step;
    payment_step(op);
}
