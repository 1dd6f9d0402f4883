/*
 * POST /api/v1/bookings/{uuid}/extend: the student lengthens a live hold
 * once, by the instructor's hold_seconds, never past the session start nor
 * beyond twice the hold as first granted (as hold-token APIs do).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "handlers/booking_op.h"
#include "handlers/handlers_internal.h"
#include "slk/booking.h"
#include "slk/hold_cap.h"
#include "slk/instructor_store.h"
#include "slk/outbox.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

static void on_extended(void *data, redisReply *r, const char *err)
{
    struct bop *op = data;
    if (bop_redis_failed(r, err)) {
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const char *tag = bop_script_tag(r);
    if (strcmp(tag, "OK") == 0) {
        struct slk_worker *w = op->req->worker;
        op->b.hold_expires_ms = op->until_ms;
        op->b.updated_ms = slk_clock_now_ms();
        slk_hold_cap_extend(w, op->b.student, op->b.uuid, op->b.hold_expires_ms);
        slk_outbox_record(w, "extended", &op->b, op->req->user_sub, bop_actor_role(op));
        bop_reply(op, "Hold extended");
        return;
    }
    if (strcmp(tag, "EXTENDED") == 0) {
        bop_error(op, 400, "policy_violation", "A hold can be extended only once",
                  json_pack("{s:s}", "rule", "extend_once"));
        return;
    }
    if (strcmp(tag, "CHANGED") == 0 && op->restarts++ < 2) {
        bop_fetch(op);
        return;
    }
    if (strcmp(tag, "STATUS") == 0) {
        snprintf(op->b.status, sizeof(op->b.status), "%s", bop_script_status(r));
        bop_invalid_transition(op);
        return;
    }
    bop_backend(op, strcmp(tag, "NOTFOUND") == 0 ? SLK_ENOTFOUND : SLK_EPROTO, "redis");
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct bop *op = data;
    if (err != 0) {
        bop_backend(op, err == SLK_ENOTFOUND ? SLK_EPROTO : err, "redis");
        return;
    }
    const struct slk_booking *b = &op->b;
    int64_t granted = b->hold_expires_ms - b->created_ms;
    int64_t until = min64(b->hold_expires_ms + (int64_t)e->ins.hold_seconds * 1000,
                          min64(b->start_ms, b->created_ms + 2 * granted));
    if (until <= b->hold_expires_ms) {
        bop_policy_violation(op, "extend_limit", "The hold already runs as long as it may", "hold_expires_at",
                             b->hold_expires_ms);
        return;
    }
    char now[24], seen[24], next[24], record[24];
    snprintf(now, sizeof(now), "%" PRId64, slk_clock_now_ms());
    snprintf(seen, sizeof(seen), "%" PRId64, b->hold_expires_ms);
    snprintf(next, sizeof(next), "%" PRId64, until);
    snprintf(record, sizeof(record), "%" PRId64, until + SLK_RETENTION_MS);
    op->until_ms = until;
    const char *args[5] = {b->uuid, now, seen, next, record};
    if (bop_eval(op, SLK_SCRIPT_EXTEND, on_extended, 5, args) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "redis");
}

static void extend_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    if (!slk__is_admin(op->req) && !slk__is_student(op->req, op->b.student)) {
        bop_error(op, 403, "forbidden", "Only the student may extend a hold", NULL);
        return;
    }
    if (op->b.in_pg || !bop_status_is(op, "payment_required")) {
        bop_invalid_transition(op);
        return;
    }
    slk_instructor_get(op->req->worker, op->b.instructor, on_instructor, op);
}

void slk_handle_booking_extend(struct slk_request *req)
{
    struct bop *op = bop_start(req, extend_step);
    if (op != NULL)
        bop_fetch(op);
}
