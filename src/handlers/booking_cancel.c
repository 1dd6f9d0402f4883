/* Cancel (R-CANCEL): an unpaid hold in Redis, or a paid/confirmed booking in Postgres. */
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

#define MAX_REASON_BYTES 500

/* Times come from the server's clock ($5), the one every policy is judged by. */
static const char cancel_sql[] =
    "UPDATE bookings SET status = 'cancelled', cancelled_at = 'epoch'::timestamptz + $5::bigint * interval "
    "'1 millisecond', updated_at = 'epoch'::timestamptz + $5::bigint * interval '1 millisecond', cancel_reason = $2, "
    "cancelled_by = $3, refund_eligible = $4::boolean, actor_id = $6, actor_role = $7 "
    "WHERE uuid = $1 AND status IN ('paid', 'confirmed') RETURNING " SLK_BOOKING_PG_COLUMNS;

/* R-CANCEL: refundable when cancelled at least CANCEL_REFUND_HOURS before the start (the edge included). */
static bool refund_eligible(const struct bop *op, int64_t now)
{
    return op->b.start_ms - now >= (int64_t)op->req->worker->cfg->cancel_refund_hours * 3600000;
}

static void cancel_hold(struct bop *op)
{
    int64_t now = slk_clock_now_ms();
    struct slk_booking *b = &op->b;
    b->cancelled_ms = b->updated_ms = now;
    b->refund_eligible = refund_eligible(op, now);
    snprintf(b->cancelled_by, sizeof(b->cancelled_by), "%s", op->actor);
    b->cancel_reason = op->reason != NULL ? strdup(op->reason) : NULL;
    char now_s[24];
    snprintf(now_s, sizeof(now_s), "%" PRId64, now);
    const char *extra[8] = {"cancelled",     now_s,
                            "cancelled_by",  op->actor,
                            "refund",        b->refund_eligible ? "1" : "0",
                            "cancel_reason", op->reason != NULL ? op->reason : ""};
    bop_release_hold(op, "cancelled", "Booking cancelled", false, 8, extra);
}

static void cancel_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    op->actor = slk__is_admin(op->req) ? "system" : slk__is_student(op->req, op->b.student) ? "student" : "instructor";
    if (!op->b.in_pg) {
        if (!bop_status_is(op, "payment_required")) {
            bop_invalid_transition(op);
            return;
        }
        cancel_hold(op);
        return;
    }
    if (!bop_status_is(op, "paid") && !bop_status_is(op, "confirmed")) {
        bop_invalid_transition(op);
        return;
    }
    int64_t now = slk_clock_now_ms();
    char now_s[24];
    snprintf(now_s, sizeof(now_s), "%" PRId64, now);
    const char *params[7] = {
        op->uuid, op->reason,        op->actor,         refund_eligible(op, now) ? "true" : "false",
        now_s,    op->req->user_sub, bop_actor_role(op)};
    op->target_status = "Booking cancelled";
    if (slk_pg_query(op->req->worker->pg, cancel_sql, 7, params, bop_on_pg_transition, op) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
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
    struct bop *op = bop_start(req, cancel_step);
    if (op != NULL && json_is_string(reason))
        op->reason = strdup(json_string_value(reason));
    json_decref(body);
    if (op != NULL)
        bop_fetch(op);
}
