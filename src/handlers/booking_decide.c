/* The instructor's decisions: accept / reject a paid booking; complete; and no-show reports (R-NOSHOW). */
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

/* Every transition here is one guarded UPDATE: the WHERE clause re-checks the status (and the time rule) so a
 * concurrent change makes it match nothing instead of overwriting. The trigger of sql/004 records the event. */
static const char decide_sql[] =
    "UPDATE bookings SET status = $2, updated_at = 'epoch'::timestamptz + $3::bigint * interval '1 millisecond', "
    "actor_id = $4, actor_role = $5 WHERE uuid = $1 AND status = $6 RETURNING " SLK_BOOKING_PG_COLUMNS;

static void run_transition(struct bop *op, const char *from, const char *to, const char *message)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    const char *params[6] = {op->uuid, to, now, op->req->user_sub, bop_actor_role(op), from};
    op->target_status = message;
    if (slk_pg_query(op->req->worker->pg, decide_sql, 6, params, bop_on_pg_transition, op) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
}

static bool instructor_only(struct bop *op, const char *what)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return false;
    }
    if (!slk__is_admin(op->req) && !slk__is_instructor(op->req, op->b.instructor)) {
        char message[96];
        snprintf(message, sizeof(message), "Only the instructor may %s a booking", what);
        bop_error(op, 403, "forbidden", message, NULL);
        return false;
    }
    return true;
}

/* Accept / reject: the instructor's decision on a paid booking. */

static void decide_step(struct bop *op)
{
    bool accept = strcmp(op->target_status, "confirmed") == 0;
    if (!instructor_only(op, "accept or reject"))
        return;
    if (!op->b.in_pg || !bop_status_is(op, "paid")) {
        bop_invalid_transition(op);
        return;
    }
    run_transition(op, "paid", op->target_status, accept ? "Booking accepted" : "Booking rejected");
}

static void start_decision(struct slk_request *req, const char *status)
{
    struct bop *op = bop_start(req, decide_step);
    if (op == NULL)
        return;
    op->target_status = status;
    bop_fetch(op);
}

void slk_handle_booking_accept(struct slk_request *req)
{
    start_decision(req, "confirmed");
}

void slk_handle_booking_reject(struct slk_request *req)
{
    start_decision(req, "rejected");
}

/* Complete: the instructor, once the session has started. */

static void complete_step(struct bop *op)
{
    if (!instructor_only(op, "complete"))
        return;
    if (!op->b.in_pg || !bop_status_is(op, "confirmed")) {
        bop_invalid_transition(op);
        return;
    }
    if (slk_clock_now_ms() < op->b.start_ms) {
        bop_policy_violation(op, "complete_after_start", "A booking can be completed once its session has started",
                             "not_before", op->b.start_ms);
        return;
    }
    run_transition(op, "confirmed", "completed", "Booking completed");
}

void slk_handle_booking_complete(struct slk_request *req)
{
    struct bop *op = bop_start(req, complete_step);
    if (op != NULL)
        bop_fetch(op);
}

/*
 * No-show (R-NOSHOW): each side reports the other (admins either), on a
 * confirmed booking, from start + NO_SHOW_AFTER_MINUTES until start +
 * NO_SHOW_WINDOW_HOURS, both edges included.
 */

static bool may_report(const struct bop *op, bool party_is_student)
{
    if (slk__is_admin(op->req))
        return true;
    return party_is_student ? slk__is_instructor(op->req, op->b.instructor) : slk__is_student(op->req, op->b.student);
}

static void no_show_step(struct bop *op)
{
    bool party_is_student = strcmp(op->target_status, "no_show_student") == 0;
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!may_report(op, party_is_student)) {
        bop_error(op, 403, "forbidden",
                  party_is_student ? "Only the instructor may report the student's no-show"
                                   : "Only the student may report the instructor's no-show",
                  NULL);
        return;
    }
    if (!op->b.in_pg || !bop_status_is(op, "confirmed")) {
        bop_invalid_transition(op);
        return;
    }
    const struct slk_config *cfg = op->req->worker->cfg;
    int64_t now = slk_clock_now_ms();
    int64_t opens = op->b.start_ms + (int64_t)cfg->no_show_after_minutes * 60000;
    int64_t closes = op->b.start_ms + (int64_t)cfg->no_show_window_hours * 3600000;
    if (now < opens) {
        bop_policy_violation(op, "no_show_window", "A no-show can be reported only after the session started",
                             "not_before", opens);
        return;
    }
    if (now > closes) {
        bop_policy_violation(op, "no_show_window", "The time to report a no-show has passed", "not_after", closes);
        return;
    }
    run_transition(op, "confirmed", op->target_status, "No-show recorded");
}

void slk_handle_booking_no_show(struct slk_request *req)
{
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return;
    const char *party = json_string_value(json_object_get(body, "party"));
    const char *status = party == NULL                      ? NULL
                         : strcmp(party, "student") == 0    ? "no_show_student"
                         : strcmp(party, "instructor") == 0 ? "no_show_instructor"
                                                            : NULL;
    json_decref(body);
    if (status == NULL) {
        slk_reply_invalid(req, "party", "party must be \"student\" or \"instructor\"");
        return;
    }
    struct bop *op = bop_start(req, no_show_step);
    if (op == NULL)
        return;
    op->target_status = status;
    bop_fetch(op);
}
