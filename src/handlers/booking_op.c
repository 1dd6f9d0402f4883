/*
 * Fetching a booking from wherever it lives, and the steps every action
 * shares: replies, release scripts, Postgres transitions. GET lives here too.
 */
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
#include "slk/json_text.h"
#include "slk/log.h"
#include "slk/outbox.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

void bop_free(struct bop *op)
{
    slk_booking_clear(&op->b);
    free(op->reason);
    json_decref(op->payment_body);
    if (op->ext_free != NULL)
        op->ext_free(op->ext);
    free(op);
}

void bop_error(struct bop *op, int status, const char *code, const char *message, json_t *details)
{
    struct slk_request *req = op->req;
    bop_free(op);
    slk_reply_error(req, status, code, message, details);
}

void bop_backend(struct bop *op, int err, const char *what)
{
    struct slk_request *req = op->req;
    bop_free(op);
    slk__reply_backend_error(req, err, what);
}

void bop_reply(struct bop *op, const char *message)
{
    struct slk_request *req = op->req;
    struct slk_json_text data;
    slk_reply_text_begin(&data, 200, message);
    slk_booking_write_json(&data, &op->b, slk_clock_now_ms());
    bop_free(op);
    slk_reply_text_end(req, 200, &data);
}

void bop_invalid_transition(struct bop *op)
{
    const char *status = slk_booking_status(&op->b, slk_clock_now_ms());
    bop_error(op, 409, "invalid_transition", "The booking cannot make this transition from its current status",
              json_pack("{s:s}", "status", status));
}

bool bop_take_row(struct bop *op, const PGresult *res)
{
    slk_booking_clear(&op->b);
    if (slk_booking_from_pg(&op->b, res, 0) != 0) {
        bop_backend(op, SLK_EPROTO, "postgres");
        return false;
    }
    return true;
}

void bop_policy_violation(struct bop *op, const char *rule, const char *message, const char *time_field, int64_t at_ms)
{
    char at[32];
    slk_time_format_rfc3339(at_ms, at);
    bop_error(op, 400, "policy_violation", message, json_pack("{s:s, s:s}", "rule", rule, time_field, at));
}

const char *bop_actor_role(const struct bop *op)
{
    return slk_role_name((enum slk_role)op->req->user_role);
}

bool bop_status_is(const struct bop *op, const char *status)
{
    return strcmp(slk_booking_status(&op->b, slk_clock_now_ms()), status) == 0;
}

/* Fetch: uuid → instructor (index) → Redis record, or the Postgres row once it exists. */

static void on_pg_booking(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!bop_take_row(op, res))
        return;
    op->next(op);
}

void bop_select(struct bop *op, slk_pg_cb cb)
{
    const char *params[1] = {op->uuid};
    if (slk_pg_query(op->req->worker->pg, "SELECT " SLK_BOOKING_PG_COLUMNS " FROM bookings WHERE uuid = $1", 1, params,
                     cb, op) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
}

void bop_fetch_pg(struct bop *op)
{
    bop_select(op, on_pg_booking);
}

/* A record left "confirming" may belong to a booking Postgres committed while Redis missed the news. */
static void on_pg_confirming(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (err == NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0) {
        op->next(op);
        return;
    }
    on_pg_booking(data, res, err);
}

bool bop_redis_failed(const redisReply *r, const char *err)
{
    if (err == NULL && r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_ERROR, "redis error reply", "error", r->str, NULL);
    return err != NULL || r->type == REDIS_REPLY_ERROR;
}

static void on_record(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (bop_redis_failed(r, err)) {
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    slk_booking_clear(&op->b);
    int rc = slk_booking_from_hash(&op->b, r, op->instructor, op->uuid);
    if (rc == SLK_ENOTFOUND || (rc == 0 && op->b.in_pg)) {
        bop_fetch_pg(op);
        return;
    }
    if (rc != 0) {
        bop_backend(op, rc, "redis");
        return;
    }
    if (strcmp(op->b.status, "confirming") == 0) {
        bop_select(op, on_pg_confirming);
        return;
    }
    op->next(op);
}

static void on_index(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (bop_redis_failed(r, err)) {
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len > SLK_MAX_ID_LEN) {
        bop_fetch_pg(op);
        return;
    }
    memcpy(op->instructor, r->str, r->len);
    op->instructor[r->len] = '\0';
    char key[SLK_KEY_MAX];
    const char *argv[2] = {"HGETALL", key};
    size_t lens[2] = {7, (size_t)slk_key_booking(key, op->instructor, op->uuid)};
    if (slk_redis_command_argv(op->req->worker->redis, on_record, op, 2, argv, lens) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
}

void bop_fetch(struct bop *op)
{
    char key[SLK_KEY_MAX];
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, (size_t)slk_key_index(key, op->uuid)};
    if (slk_redis_command_argv(op->req->worker->redis, on_index, op, 2, argv, lens) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
}

struct bop *bop_start(struct slk_request *req, bop_step_cb next)
{
    char uuid[64];
    if (!slk__param(req, 0, uuid, sizeof(uuid)) || !slk_uuid_valid(uuid, strlen(uuid))) {
        slk_reply_error(req, 404, "not_found", "No such booking", NULL);
        return NULL;
    }
    struct bop *op = calloc(1, sizeof(*op));
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
bool bop_can_see(const struct bop *op)
{
    return slk__is_admin(op->req) || slk__is_student(op->req, op->b.student) ||
           slk__is_instructor(op->req, op->b.instructor);
}

/* Runs one of the record scripts (pin, confirm, release): KEYS = record + units. */
int bop_eval(struct bop *op, enum slk_script_id script, slk_redis_cb cb, int nargs, const char **args)
{
    return slk_booking_eval(op->req->worker->redis, &op->b, script, cb, op, nargs, args);
}

const char *bop_script_tag(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING)
        return "";
    return r->element[0]->str;
}

const char *bop_script_status(const redisReply *r)
{
    if (r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING)
        return "";
    return r->element[1]->str;
}

/* GET /api/v1/bookings/{uuid} */

static void get_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    bop_reply(op, "Booking details");
}

void slk_handle_booking_get(struct slk_request *req)
{
    struct bop *op = bop_start(req, get_step);
    if (op != NULL)
        bop_fetch(op);
}

/* After Postgres changed a booking: free its units in Redis too. Failure leaves them blocked until they
 * expire (never double-booked), so it is logged, not reported to the client. */

static void on_released_after_pg(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "units not released in redis", "booking", op->uuid, "error", err != NULL ? err : r->str,
                NULL);
    bop_reply(op, op->target_status);
}

void bop_release_after_pg(struct bop *op, const char *status, const char *message)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4] = {op->b.uuid, "force", status, now};
    op->target_status = message;
    if (bop_eval(op, SLK_SCRIPT_RELEASE, on_released_after_pg, 4, args) != 0)
        on_released_after_pg(op, NULL, slk_redis_err_disconnected);
}

bool bop_pg_rows(const PGresult *res, const char *err, struct bop *op)
{
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return false;
    }
    return true;
}

/*
 * The reply of release.lua in 'hold' mode. OK: the unpaid hold is gone and
 * the booking has op->new_status. STATUS: it had already moved on; a repeat
 * of the same outcome is answered like the first when op->repeat_ok (an
 * at-least-once callback), else it is an invalid transition.
 */
static void on_hold_released(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (bop_redis_failed(r, err)) {
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const char *tag = bop_script_tag(r);
    bool released = strcmp(tag, "OK") == 0;
    if (!released && strcmp(tag, "STATUS") != 0) {
        bop_backend(op, SLK_EPROTO, "redis");
        return;
    }
    snprintf(op->b.status, sizeof(op->b.status), "%s", released ? op->new_status : bop_script_status(r));
    if (released) {
        /* The hold lived only in Redis, so its end is recorded here rather than by the Postgres trigger. */
        struct slk_worker *w = op->req->worker;
        slk_outbox_record(w, op->new_status, &op->b, op->req->user_sub, bop_actor_role(op));
        slk_hold_cap_forget(w, op->b.student, op->b.uuid);
    }
    if (released || (op->repeat_ok && strcmp(op->b.status, op->new_status) == 0)) {
        bop_reply(op, op->target_status);
        return;
    }
    bop_invalid_transition(op);
}

void bop_release_hold(struct bop *op, const char *status, const char *message, bool repeat_ok, int nextra,
                      const char **extra)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *args[4 + 8] = {op->b.uuid, "hold", status, now};
    memcpy(&args[4], extra, (size_t)nextra * sizeof(char *));
    op->new_status = status;
    op->target_status = message;
    op->repeat_ok = repeat_ok;
    if (bop_eval(op, SLK_SCRIPT_RELEASE, on_hold_released, 4 + nextra, args) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
}

void bop_on_pg_transition(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        /* Changed by someone else since the bop_fetch: report where it is now. */
        op->next = bop_invalid_transition;
        bop_fetch_pg(op);
        return;
    }
    if (!bop_take_row(op, res))
        return;
    if (strcmp(op->b.status, "confirmed") == 0) {
        bop_reply(op, op->target_status);
        return;
    }
    bop_release_after_pg(op, op->b.status, op->target_status);
}
