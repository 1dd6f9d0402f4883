/*
 * GET /api/v1/bookings/{uuid}/events: a booking's audit trail (who did
 * what, when) from booking_events, visible to whoever may see the booking
 * (R-SEC; anyone else gets 404 as for the booking itself).
 */
#include <stdlib.h>
#include <string.h>

#include "handlers/booking_op.h"
#include "slk/pg.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/worker.h"

/* A booking has a handful of events; the cap only guards the reply's size. */
#define MAX_EVENTS "1000"

static const char events_sql[] =
    "SELECT COALESCE(json_agg(json_build_object('id', id, 'type', type, 'status', status, "
    "'actor', json_build_object('id', actor_id, 'role', actor_role), 'occurred_at', slk_rfc3339(occurred_at), "
    "'data', data, 'delivered_at', slk_rfc3339(delivered_at)) ORDER BY id), '[]')::text "
    "FROM (SELECT * FROM booking_events WHERE booking_uuid = $1 ORDER BY id LIMIT " MAX_EVENTS ") ev";

static void on_events(void *data, PGresult *res, const char *err)
{
    struct bop *op = data;
    if (!bop_pg_rows(res, err, op))
        return;
    json_t *events = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (!json_is_array(events)) {
        json_decref(events);
        bop_backend(op, SLK_EPROTO, "postgres");
        return;
    }
    struct slk_request *req = op->req;
    bop_free(op);
    slk_reply_ok(req, 200, "Booking events", json_pack("{s:o}", "events", events));
}

static void events_step(struct bop *op)
{
    if (!bop_can_see(op)) {
        bop_error(op, 404, "not_found", "No such booking", NULL);
        return;
    }
    const char *params[1] = {op->uuid};
    if (slk_pg_query(op->req->worker->pg, events_sql, 1, params, on_events, op) != 0)
        bop_backend(op, SLK_EUNAVAILABLE, "postgres");
}

void slk_handle_booking_events(struct slk_request *req)
{
    struct bop *op = bop_start(req, events_step);
    if (op != NULL)
        bop_fetch(op);
}
