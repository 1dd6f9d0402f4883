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

static const char decide_sql[] = "UPDATE bookings SET status = $2, updated_at = now() WHERE uuid = $1 "
                                 "AND status = 'paid' RETURNING " SLK_BOOKING_PG_COLUMNS;

static void decide_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!slk__is_admin(op->req) && !slk__is_instructor(op->req, op->b.instructor)) {
        bop_error(op, 403, "forbidden", "Only the instructor may accept or reject a booking", NULL);
        return;
    }
    if (!op->b.in_pg || !bop_status_is(op, "paid")) {
        bop_invalid_transition(op);
        return;
    }
    const char *params[2] = {op->uuid, op->target_status};
    op->target_status = strcmp(op->target_status, "confirmed") == 0 ? "Booking accepted" : "Booking rejected";
    if (slk_pg_query(op->req->worker->pg, decide_sql, 2, params, bop_on_pg_transition, op) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
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

void slk_handle_booking_complete(struct slk_request *req)
{
    slk_reply_error(req, 404, "not_found", "No such resource", NULL);
}

void slk_handle_booking_no_show(struct slk_request *req)
{
    slk_reply_error(req, 404, "not_found", "No such resource", NULL);
}
