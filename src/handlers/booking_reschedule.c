/*
 * POST /api/v1/bookings/{uuid}/reschedule (R-RESCHED).
 *
 * The move is three steps around the one that makes it real:
 *
 *   1. claim the new units in Redis (lua/move.lua take), all or none; the
 *      old units stay booked;
 *   2. UPDATE the row in Postgres, guarded by its status and old start (the
 *      exclusion constraint still has the last word on overlaps);
 *   3. free the old units and book the new ones in one script (commit), and
 *      only then reply.
 *
 * A failure at 2 drops the claims (abort) and leaves the old booking as it
 * was. At no moment can another client take the old slot while the move
 * may still fail, and once the reply is sent the booking owns one range.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/booking_op.h"
#include "handlers/handlers_internal.h"
#include "slk/booking.h"
#include "slk/instructor_store.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

struct move {
    struct slk__time_input start_in;
    bool has_end;
    struct slk__time_input end_in;
    int attempts;
    struct slk_booking old; /* the booking as fetched: its range and units */
    struct slk_booking to;  /* the new range and units */
    char **new_keys;
    bool claimed; /* the take step succeeded: an abort is owed on failure */
};

static void move_free(void *ext)
{
    struct move *m = ext;
    if (m == NULL)
        return;
    slk_booking_clear(&m->old);
    slk_booking_clear(&m->to);
    free(m->new_keys);
    free(m);
}

static struct move *move_of(struct bop *op)
{
    return op->ext;
}

static void ms_arg(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
}

/* Abort: drop the claims on the new units. Logged only; they expire by themselves. */

static void on_aborted(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "reschedule claims not dropped; they expire by themselves", "error",
                err != NULL ? err : r->str, NULL);
}

static void abort_claims(struct bop *op)
{
    struct move *m = move_of(op);
    if (!m->claimed)
        return;
    m->claimed = false;
    const char *args[2] = {"abort", op->uuid};
    if (slk_script_eval(op->req->worker->redis, SLK_SCRIPT_MOVE, on_aborted, NULL, m->to.unit_count,
                        (const char **)m->new_keys, NULL, 2, args, NULL) != 0)
        on_aborted(NULL, NULL, "not queued");
}

/* Step 3: commit in Redis, then reply with the row Postgres returned. */

static void on_committed(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        /* Postgres has the move and is the system of record; the claims lapse and the old units expire after
         * the old end. Nothing can be double-booked, only over-blocked for a while. */
        slk_log(SLK_LOG_WARN, "reschedule not committed in redis", "booking", op->uuid, "error",
                err != NULL ? err : r->str, NULL);
    bop_reply(op, "Booking rescheduled");
}

static int commit_units(struct bop *op)
{
    struct move *m = move_of(op);
    char **old_keys =
        slk_booking_unit_keys(m->old.instructor, m->old.units_first_min, m->old.unit_minutes, m->old.unit_count);
    size_t nkeys = 1 + (size_t)m->old.unit_count + (size_t)m->to.unit_count;
    const char **keys = old_keys != NULL ? malloc(nkeys * sizeof(char *)) : NULL;
    if (keys == NULL) {
        free(old_keys);
        return SLK_ENOMEM;
    }
    char record[SLK_KEY_MAX], n_old[16], expire[24], old_start[24], old_end[24], start[24], end[24], ufirst[24],
        umin[16], ucount[16], updated[24];
    slk_key_booking(record, op->b.instructor, op->uuid);
    keys[0] = record;
    memcpy(&keys[1], old_keys, (size_t)m->old.unit_count * sizeof(char *));
    memcpy(&keys[1 + m->old.unit_count], m->new_keys, (size_t)m->to.unit_count * sizeof(char *));
    snprintf(n_old, sizeof(n_old), "%d", m->old.unit_count);
    int64_t units_end = (m->to.units_first_min + (int64_t)m->to.unit_count * m->to.unit_minutes) * 60000;
    ms_arg(expire, units_end + SLK_BOOKED_UNIT_GRACE_MS);
    ms_arg(old_start, m->old.start_ms);
    ms_arg(old_end, m->old.end_ms);
    ms_arg(start, op->b.start_ms);
    ms_arg(end, op->b.end_ms);
    ms_arg(ufirst, op->b.units_first_min);
    snprintf(umin, sizeof(umin), "%d", op->b.unit_minutes);
    snprintf(ucount, sizeof(ucount), "%d", op->b.unit_count);
    ms_arg(updated, op->b.updated_ms);
    const char *args[] = {"commit", op->uuid, n_old,    expire, old_start, old_end,  start,
                          end,      "start",  start,    "end",  end,       "ufirst", ufirst,
                          "umin",   umin,     "ucount", ucount, "updated", updated};
    int rc = slk_script_eval(op->req->worker->redis, SLK_SCRIPT_MOVE, on_committed, op, (int)nkeys, keys, NULL,
                             (int)SLK_ARRAY_SIZE(args), args, NULL);
    free(keys);
    free(old_keys);
    return rc;
}

/* Step 2: Postgres. */

static const char move_sql[] =
    "UPDATE bookings SET start_at = 'epoch'::timestamptz + $2::bigint * interval '1 millisecond', "
    "end_at = 'epoch'::timestamptz + $3::bigint * interval '1 millisecond', "
    "units_start_at = 'epoch'::timestamptz + $4::bigint * interval '1 minute', unit_minutes = $5, unit_count = $6, "
    "updated_at = 'epoch'::timestamptz + $7::bigint * interval '1 millisecond', actor_id = $8, actor_role = $9 "
    "WHERE uuid = $1 AND status = 'confirmed' "
    "AND start_at = 'epoch'::timestamptz + $10::bigint * interval '1 millisecond' RETURNING " SLK_BOOKING_PG_COLUMNS;

static void reply_taken(struct bop *op, int64_t from, int64_t to)
{
    struct slk_request *req = op->req;
    bop_free(op);
    slk__reply_slot_unavailable(req, from, to);
}

static void changed_meanwhile(struct bop *op)
{
    if (!bop_status_is(op, "confirmed")) {
        bop_invalid_transition(op);
        return;
    }
    bop_error(op, 409, "conflict", "The booking changed while it was being moved; fetch it and try again", NULL);
}

/*
 * The UPDATE's answer was lost (timeout, connection): it may still commit.
 * FOR UPDATE waits for it if it is still running, so the row then says
 * which way it went, and Redis follows: commit or abort. If even that read
 * fails, the claims are left to lapse rather than free time Postgres may
 * have given to this booking.
 */
static void on_settled(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    struct move *m = move_of(op);
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
        m->claimed = false;
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (!bop_take_row(op, res))
        return;
    if (op->b.start_ms != m->to.start_ms || strcmp(op->b.status, "confirmed") != 0) {
        abort_claims(op);
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    m->claimed = false;
    if (commit_units(op) != 0)
        on_committed(op, NULL, slk_redis_err_disconnected);
}

static void settle_unknown(struct bop *op)
{
    const char *params[1] = {op->uuid};
    if (slk_pg_query(op->req->worker->pg, "SELECT " SLK_BOOKING_PG_COLUMNS " FROM bookings WHERE uuid = $1 FOR UPDATE",
                     1, params, on_settled, op) != 0) {
        move_of(op)->claimed = false;
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
    }
}

static void on_moved(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    struct move *m = move_of(op);
    if (err != NULL) {
        settle_unknown(op);
        return;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        abort_claims(op);
        if (state != NULL && strcmp(state, "23P01") == 0) {
            reply_taken(op, m->to.start_ms, m->to.end_ms);
            return;
        }
        slk_log(SLK_LOG_ERROR, "reschedule update failed", "booking", op->uuid, "error", PQresultErrorMessage(res),
                NULL);
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        abort_claims(op);
        op->next = changed_meanwhile;
        bop_fetch_pg(op);
        return;
    }
    if (!bop_take_row(op, res))
        return;
    m->claimed = false;
    if (commit_units(op) != 0)
        on_committed(op, NULL, slk_redis_err_disconnected);
}

static void update_row(struct bop *op)
{
    struct move *m = move_of(op);
    char start[24], end[24], first[24], umin[16], ucount[16], now[24], old_start[24];
    ms_arg(start, m->to.start_ms);
    ms_arg(end, m->to.end_ms);
    ms_arg(first, m->to.units_first_min);
    snprintf(umin, sizeof(umin), "%d", m->to.unit_minutes);
    snprintf(ucount, sizeof(ucount), "%d", m->to.unit_count);
    ms_arg(now, slk_clock_now_ms());
    ms_arg(old_start, m->old.start_ms);
    const char *params[10] = {op->uuid,           start,    end, first, umin, ucount, now, op->req->user_sub,
                              bop_actor_role(op), old_start};
    if (slk_pg_query(op->req->worker->pg, move_sql, 10, params, on_moved, op) != 0) {
        abort_claims(op);
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
    }
}

/* Step 1: claim the new units. */

static void on_instructor(void *data, struct slk_instructor_entry *e, int err);

static void on_taken(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    struct move *m = move_of(op);
    if (err != NULL) {
        /* The claim may have been made: queue its removal behind it. */
        m->claimed = true;
        abort_claims(op);
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    if (slk__script_reply_is(r, "OK")) {
        m->claimed = true;
        update_row(op);
        return;
    }
    if (slk__script_reply_is(r, "TAKEN") && r->elements == 3) {
        int64_t from, to;
        slk_booking_units_range(&m->to, r->element[1]->integer, r->element[2]->integer, &from, &to);
        reply_taken(op, from, to);
        return;
    }
    bool stale = slk__script_reply_is(r, "STALE"), noload = slk__script_reply_is(r, "NOLOAD");
    if ((stale || noload) && m->attempts++ < SLK_INSTRUCTOR_RESYNCS) {
        slk_instructor_resync(op->req->worker, op->b.instructor, noload, r, on_instructor, op);
        return;
    }
    bop_backend(op, r->type == REDIS_REPLY_ERROR || stale || noload ? SLK_EUNAVAILABLE : SLK_EPROTO, "redis");
}

static int take_units(struct bop *op, const struct slk_instructor *ins)
{
    struct move *m = move_of(op);
    free(m->new_keys);
    m->new_keys = slk_booking_unit_keys(op->b.instructor, m->to.units_first_min, m->to.unit_minutes, m->to.unit_count);
    size_t nkeys = 1 + (size_t)m->to.unit_count;
    const char **keys = m->new_keys != NULL ? malloc(nkeys * sizeof(char *)) : NULL;
    if (keys == NULL)
        return SLK_ENOMEM;
    char meta[SLK_KEY_MAX], ver[24], until[24];
    slk_key_meta(meta, op->b.instructor);
    keys[0] = meta;
    memcpy(&keys[1], m->new_keys, (size_t)m->to.unit_count * sizeof(char *));
    ms_arg(ver, ins->version);
    /* The claim outlives the Postgres statement, so it cannot lapse while the UPDATE may still commit. */
    ms_arg(until, slk_clock_now_ms() + 2 * (int64_t)op->req->worker->cfg->pg_timeout_ms + 5000);
    const char *args[4] = {"take", ver, op->uuid, until};
    int rc =
        slk_script_eval(op->req->worker->redis, SLK_SCRIPT_MOVE, on_taken, op, (int)nkeys, keys, NULL, 4, args, NULL);
    free(keys);
    return rc;
}

/* Validation of the new time against the instructor and the policy. */

/* Replies itself and returns false when the new time is not acceptable. */
static bool check_new_time(struct bop *op, const struct slk_instructor_entry *e, int64_t now)
{
    struct move *m = move_of(op);
    const struct slk_config *cfg = op->req->worker->cfg;
    int64_t start;
    if (slk__time_resolve(&m->start_in, e->tz, &start) != 0) {
        bop_error(op, 422, "validation_failed", "new_start_time does not exist in the instructor's time zone",
                  json_pack("{s:s}", "field", "new_start_time"));
        return false;
    }
    int64_t duration = m->old.end_ms - m->old.start_ms, end = start + duration, asked_end;
    if (m->has_end && (slk__time_resolve(&m->end_in, e->tz, &asked_end) != 0 || asked_end != end)) {
        bop_policy_violation(op, "same_duration", "A rescheduled booking keeps its duration", "end_time", end);
        return false;
    }
    if (start <= now) {
        bop_policy_violation(op, "new_start_in_future", "The new start must be in the future", "not_before", now);
        return false;
    }
    int64_t horizon = now + (int64_t)cfg->reschedule_max_days * 86400000;
    if (start > horizon) {
        bop_policy_violation(op, "reschedule_horizon", "The new start is too far ahead", "not_after", horizon);
        return false;
    }
    const char *why = NULL;
    if (start == m->old.start_ms)
        why = "new_start_time is the booking's current start";
    else if (!slk__on_grid(e, start) || !slk__on_grid(e, end))
        why = "new_start_time must be on the instructor's grid";
    else if (!slk_instructor_covers(&e->ins, e->tz, start, end))
        why = "the booking must lie inside the instructor's working hours";
    if (why != NULL) {
        bop_error(op, 422, "validation_failed", why, json_pack("{s:s, s:s}", "field", "new_start_time", "reason", why));
        return false;
    }
    m->to.start_ms = start;
    m->to.end_ms = end;
    return true;
}

static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct bop *op = data;
    if (err != 0) {
        bop_backend(op, err == SLK_ENOTFOUND ? SLK_EPROTO : err, "redis");
        return;
    }
    if (!check_new_time(op, e, slk_clock_now_ms()))
        return;
    slk_booking_cover(&move_of(op)->to, &e->ins);
    int rc = take_units(op, &e->ins);
    if (rc != 0)
        bop_backend(op, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE, "redis");
}

static void remember_old(struct move *m, const struct slk_booking *b)
{
    snprintf(m->old.instructor, sizeof(m->old.instructor), "%s", b->instructor);
    m->old.start_ms = b->start_ms;
    m->old.end_ms = b->end_ms;
    m->old.units_first_min = b->units_first_min;
    m->old.unit_minutes = b->unit_minutes;
    m->old.unit_count = b->unit_count;
}

static void reschedule_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!slk__is_admin(op->req) && !slk__is_student(op->req, op->b.student)) {
        bop_error(op, 403, "forbidden", "Only the student may reschedule a booking", NULL);
        return;
    }
    if (!op->b.in_pg || !bop_status_is(op, "confirmed")) {
        bop_invalid_transition(op);
        return;
    }
    int64_t cutoff = op->b.start_ms - (int64_t)op->req->worker->cfg->reschedule_notice_hours * 3600000;
    if (slk_clock_now_ms() > cutoff) {
        bop_policy_violation(op, "reschedule_notice", "It is too late to reschedule this booking", "not_after", cutoff);
        return;
    }
    remember_old(move_of(op), &op->b);
    slk_instructor_get(op->req->worker, op->b.instructor, on_instructor, op);
}

/* Body: {"new_start_time": …[, "new_end_time": …]}. Replies itself and returns NULL when it is not usable. */
static struct move *parse_body(struct slk_request *req)
{
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return NULL;
    struct move *m = calloc(1, sizeof(*m));
    const json_t *start = json_object_get(body, "new_start_time"), *end = json_object_get(body, "new_end_time");
    const char *bad = NULL;
    if (m == NULL) {
        json_decref(body);
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return NULL;
    }
    slk_booking_init(&m->old);
    slk_booking_init(&m->to);
    if (slk__time_parse(start, &m->start_in) != 0)
        bad = "new_start_time";
    else if (end != NULL && !json_is_null(end)) {
        m->has_end = true;
        if (slk__time_parse(end, &m->end_in) != 0)
            bad = "new_end_time";
    }
    json_decref(body);
    if (bad != NULL) {
        move_free(m);
        slk_reply_invalid(req, bad, "must be an RFC 3339 timestamp");
        return NULL;
    }
    return m;
}

void slk_handle_booking_reschedule(struct slk_request *req)
{
    struct move *m = parse_body(req);
    if (m == NULL)
        return;
    struct bop *op = bop_start(req, reschedule_step);
    if (op == NULL) {
        move_free(m);
        return;
    }
    op->ext = m;
    op->ext_free = move_free;
    bop_fetch(op);
}
