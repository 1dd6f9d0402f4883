/*
 * Delivers booking_events to WEBHOOK_URL: at least once, and per booking
 * strictly in id order. A claim takes, in one statement, the oldest
 * undelivered event of each booking that is due and leases it (pushes its
 * next_attempt_at past the delivery deadline), so a booking's later events
 * wait until the earlier one is delivered, and several servers sharing the
 * database never send one event at the same time. Bookings go in parallel,
 * up to SLK_OUTBOX_MAX_DELIVERIES.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox_internal.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/worker.h"

#define MAX_ERROR_BYTES 200

struct slk_outbox_delivery {
    struct slk_outbox *o;
    struct slk_outbox_delivery *prev, *next;
    struct slk_webhook_request *req;
    char id[24];
    char error[MAX_ERROR_BYTES];
};

static const char claim_sql[] =
    "WITH heads AS ("
    " SELECT e.id FROM booking_events e"
    " WHERE e.delivered_at IS NULL AND e.next_attempt_at <= now()"
    " AND NOT EXISTS (SELECT 1 FROM booking_events p"
    " WHERE p.booking_uuid = e.booking_uuid AND p.delivered_at IS NULL AND p.id < e.id)"
    " ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED) "
    "UPDATE booking_events e SET next_attempt_at = now() + $1::bigint * interval '1 millisecond' "
    "FROM heads WHERE e.id = heads.id "
    "RETURNING e.id, json_build_object('id', e.id, 'type', e.type, 'booking_uuid', e.booking_uuid, "
    "'instructor_uuid', e.instructor_id, 'student_uuid', e.student_id, 'status', e.status, "
    "'actor', json_build_object('id', e.actor_id, 'role', e.actor_role), "
    "'occurred_at', slk_rfc3339(e.occurred_at), 'data', e.data)::text";

static const char delivered_sql[] =
    "UPDATE booking_events SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1";

/* Exponential backoff from the attempts made before this one: base, 2 base, 4 base, … capped at max. */
static const char failed_sql[] =
    "UPDATE booking_events SET attempts = attempts + 1, last_error = $2, "
    "next_attempt_at = now() + least($3::float8 * power(2::float8, least(attempts, 40)), $4::float8) "
    "* interval '1 millisecond' WHERE id = $1";

static void list_remove(struct slk_outbox_delivery *d)
{
    struct slk_outbox *o = d->o;
    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        o->deliveries = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

static void delivery_free(struct slk_outbox_delivery *d)
{
    struct slk_outbox *o = d->o;
    free(d);
    o->deliveries_inflight--;
    slk__outbox_unref(o);
}

static void on_result_saved(void *data, PGresult *res, const char *err)
{
    struct slk_outbox_delivery *d = data;
    struct slk_outbox *o = d->o;
    if (err != NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        slk_log(SLK_LOG_WARN, "webhook result not saved (event is sent again)", "event", d->id, "error",
                err != NULL ? err : PQresultErrorMessage(res), NULL);
    /* The booking's next event may be due now: look at once rather than at the next tick. */
    if (!o->stopping)
        uv_timer_start(&o->dispatch_timer, slk__outbox_dispatch_tick, 0, SLK_OUTBOX_DISPATCH_MS);
    delivery_free(d);
}

static void on_delivered(void *data, int status, const char *err)
{
    struct slk_outbox_delivery *d = data;
    struct slk_outbox *o = d->o;
    d->req = NULL;
    list_remove(d);
    const struct slk_config *cfg = o->w->cfg;
    int rc;
    if (status >= 200 && status < 300) {
        const char *params[1] = {d->id};
        rc = slk_pg_query(o->w->pg, delivered_sql, 1, params, on_result_saved, d);
    } else {
        char base[24], max[24];
        if (err != NULL)
            snprintf(d->error, sizeof(d->error), "%s", err);
        else
            snprintf(d->error, sizeof(d->error), "HTTP %d", status);
        snprintf(base, sizeof(base), "%" PRIu64, cfg->webhook_retry_base_ms);
        snprintf(max, sizeof(max), "%" PRIu64, cfg->webhook_retry_max_ms);
        slk_log(SLK_LOG_INFO, "webhook delivery failed (retried)", "event", d->id, "error", d->error, NULL);
        const char *params[4] = {d->id, d->error, base, max};
        rc = slk_pg_query(o->w->pg, failed_sql, 4, params, on_result_saved, d);
    }
    if (rc != 0)
        delivery_free(d); /* the lease runs out and the event is sent again */
}

static void deliver(struct slk_outbox *o, const char *id, const char *body, size_t body_len)
{
    struct slk_outbox_delivery *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    d->o = o;
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->req = slk_webhook_post(&o->w->loop, &o->target, d->id, body, body_len, o->secret, o->secret_len,
                              o->w->cfg->webhook_timeout_ms, on_delivered, d);
    if (d->req == NULL) {
        free(d);
        return;
    }
    d->next = o->deliveries;
    if (d->next != NULL)
        d->next->prev = d;
    o->deliveries = d;
    o->deliveries_inflight++;
    slk__outbox_ref(o);
}

static void on_claimed(void *data, PGresult *res, const char *err)
{
    struct slk_outbox *o = data;
    o->claiming = false;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (err != slk_pg_err_unavailable && err != slk_pg_err_shutdown)
            slk_log(SLK_LOG_WARN, "webhook events not claimed", "error", err != NULL ? err : PQresultErrorMessage(res),
                    NULL);
    } else if (!o->stopping) {
        for (int i = 0; i < PQntuples(res); i++)
            deliver(o, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    }
    slk__outbox_unref(o);
}

void slk__outbox_dispatch_tick(uv_timer_t *t)
{
    struct slk_outbox *o = t->data;
    if (o->stopping || o->claiming || o->deliveries_inflight >= SLK_OUTBOX_MAX_DELIVERIES)
        return;
    char lease[24], limit[16];
    snprintf(lease, sizeof(lease), "%" PRIu64, o->w->cfg->webhook_timeout_ms + SLK_OUTBOX_LEASE_EXTRA_MS);
    snprintf(limit, sizeof(limit), "%d", SLK_OUTBOX_MAX_DELIVERIES - o->deliveries_inflight);
    const char *params[2] = {lease, limit};
    if (slk_pg_query(o->w->pg, claim_sql, 2, params, on_claimed, o) != 0)
        return;
    o->claiming = true;
    slk__outbox_ref(o);
}

void slk__outbox_dispatch_abort(struct slk_outbox *o)
{
    while (o->deliveries != NULL) {
        struct slk_outbox_delivery *d = o->deliveries;
        list_remove(d);
        slk_webhook_cancel(d->req);
        delivery_free(d);
    }
}
