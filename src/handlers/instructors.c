/* PUT/GET /api/v1/instructors/{id}: settings live in Postgres, cached in Redis and per worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/log.h"
#include "slk/redis.h"
#include "slk/instructor_store.h"
#include "slk/pg.h"
#include "slk/response.h"
#include "slk/routes.h"

struct put_op {
    struct slk_request *req;
    struct slk_instructor ins;
    bool created;
};

static void reply_settings(struct slk_request *req, int status, const char *message, const struct slk_instructor *ins)
{
    json_t *data = slk_instructor_to_json(ins);
    if (data == NULL) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_ok(req, status, message, data);
}

static void on_meta_dropped(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_ERROR, "instructor settings in redis may be stale", "error", err != NULL ? err : r->str, NULL);
}

/*
 * Postgres has the new settings but Redis could not take them: drop Redis's
 * copy so the next hold reloads from Postgres instead of validating against
 * the old settings (best effort: Redis may be the thing that failed).
 */
static void drop_meta(struct slk_worker *w, const char *id)
{
    char meta[SLK_KEY_MAX], ver[SLK_KEY_MAX];
    const char *argv[3] = {"DEL", meta, ver};
    size_t lens[3] = {3, (size_t)slk_key_meta(meta, id), (size_t)slk_key_version(ver, id)};
    if (slk_redis_command_argv(w->redis, on_meta_dropped, NULL, 3, argv, lens) != 0)
        on_meta_dropped(NULL, NULL, "not queued");
}

static void on_put_restored(void *data, struct slk_instructor_entry *entry, int err)
{
    struct put_op *op = data;
    struct slk_request *req = op->req;
    if (err != 0 || entry == NULL) {
        drop_meta(req->worker, op->ins.id);
        free(op);
        slk__reply_backend_error(req, err != 0 ? err : SLK_EPROTO, "redis");
        return;
    }
    reply_settings(req, op->created ? 201 : 200, op->created ? "Instructor created" : "Instructor updated",
                   &entry->ins);
    free(op);
}

static void on_put_saved(void *data, PGresult *res, const char *err)
{
    struct put_op *op = data;
    struct slk_request *req = op->req;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    op->created = PQgetvalue(res, 0, 1)[0] == 't';
    /* Push the new settings (and the instructor's confirmed bookings) to Redis before replying,
     * so the next hold on any worker sees them. */
    slk_instructor_reload(req->worker, op->ins.id, on_put_restored, op);
}

static const char upsert_sql[] =
    "INSERT INTO instructors (id, timezone, granularity_minutes, hold_seconds, buffer_minutes, "
    "requires_acceptance, weekly) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) "
    "ON CONFLICT (id) DO UPDATE SET timezone = EXCLUDED.timezone, "
    "granularity_minutes = EXCLUDED.granularity_minutes, hold_seconds = EXCLUDED.hold_seconds, "
    "buffer_minutes = EXCLUDED.buffer_minutes, requires_acceptance = EXCLUDED.requires_acceptance, "
    "weekly = EXCLUDED.weekly, version = instructors.version + 1, updated_at = now() "
    "RETURNING version, (xmax = 0)";

static int save(struct put_op *op)
{
    const struct slk_instructor *ins = &op->ins;
    char gran[16], hold[16], buffer[16];
    snprintf(gran, sizeof(gran), "%d", ins->granularity_minutes);
    snprintf(hold, sizeof(hold), "%d", ins->hold_seconds);
    snprintf(buffer, sizeof(buffer), "%d", ins->buffer_minutes);
    json_t *weekly_json = slk_instructor_weekly_json(ins);
    char *weekly = weekly_json != NULL ? json_dumps(weekly_json, JSON_COMPACT) : NULL;
    json_decref(weekly_json);
    if (weekly == NULL)
        return SLK_ENOMEM;
    const char *params[7] = {ins->id, ins->timezone, gran, hold, buffer, ins->requires_acceptance ? "t" : "f", weekly};
    int rc = slk_pg_query(op->req->worker->pg, upsert_sql, 7, params, on_put_saved, op);
    free(weekly);
    return rc;
}

/*
 * Redis keys units by their start on the instructor's local grid. A new
 * grid or time zone would put new holds on other keys than the bookings and
 * blocks already there, so those two settings stay fixed while any future
 * booking or block exists.
 */
static const char grid_in_use_sql[] =
    "SELECT granularity_minutes, timezone, "
    "EXISTS (SELECT 1 FROM bookings WHERE instructor_id = $1 AND status IN ('paid', 'confirmed') "
    "AND end_at > now()) OR EXISTS (SELECT 1 FROM availability_blocks WHERE instructor_id = $1 AND end_at > now()) "
    "FROM instructors WHERE id = $1";

static void on_grid_checked(void *data, PGresult *res, const char *err)
{
    struct put_op *op = data;
    struct slk_request *req = op->req;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 2)[0] == 't') {
        const char *field = NULL;
        if (atoi(PQgetvalue(res, 0, 0)) != op->ins.granularity_minutes)
            field = "granularity_minutes";
        else if (strcmp(PQgetvalue(res, 0, 1), op->ins.timezone) != 0)
            field = "timezone";
        if (field != NULL) {
            free(op);
            slk_reply_error(req, 409, "settings_in_use",
                            "The grid and time zone cannot change while future bookings or blocks exist",
                            json_pack("{s:s}", "field", field));
            return;
        }
    }
    int rc = save(op);
    if (rc != 0) {
        free(op);
        slk__reply_backend_error(req, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE, "postgres");
    }
}

void slk_handle_instructor_put(struct slk_request *req)
{
    char id[SLK_MAX_ID_LEN + 1];
    if (!slk__instructor_param(req, id)) {
        slk_reply_invalid(req, "id", "Instructor ids match ^[A-Za-z0-9._:-]{1,64}$");
        return;
    }
    if (!slk__is_admin(req) && !slk__is_instructor(req, id)) {
        slk_reply_error(req, 403, "forbidden", "Only the instructor or an admin may change these settings", NULL);
        return;
    }
    json_t *body = slk__body_object(req, false);
    if (body == NULL)
        return;
    struct put_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        json_decref(body);
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    const char *field, *why;
    int rc = slk_instructor_parse(&op->ins, id, body, req->worker->cfg->hold_ttl_seconds, &field, &why);
    json_decref(body);
    if (rc != 0) {
        free(op);
        slk_reply_invalid(req, field, why);
        return;
    }
    const char *params[1] = {op->ins.id};
    if (slk_pg_query(req->worker->pg, grid_in_use_sql, 1, params, on_grid_checked, op) != 0) {
        free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
    }
}

static const char select_sql[] =
    "SELECT timezone, granularity_minutes, hold_seconds, buffer_minutes, requires_acceptance, weekly::text, "
    "version, (extract(epoch from updated_at) * 1000)::bigint FROM instructors WHERE id = $1";

static void on_get_loaded(void *data, PGresult *res, const char *err)
{
    struct slk_request *req = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        slk_reply_error(req, 404, "not_found", "No such instructor", NULL);
        return;
    }
    struct slk_instructor ins;
    char id[SLK_MAX_ID_LEN + 1];
    if (!slk__param(req, 0, id, sizeof(id)) ||
        slk_instructor_from_pg(&ins, id, res, req->worker->cfg->hold_ttl_seconds) != 0) {
        slk__reply_backend_error(req, SLK_EPROTO, "postgres");
        return;
    }
    reply_settings(req, 200, "Instructor settings", &ins);
}

void slk_handle_instructor_get(struct slk_request *req)
{
    char id[SLK_MAX_ID_LEN + 1];
    if (!slk__instructor_param(req, id)) {
        slk_reply_error(req, 404, "not_found", "No such instructor", NULL);
        return;
    }
    const char *params[1] = {id};
    if (slk_pg_query(req->worker->pg, select_sql, 1, params, on_get_loaded, req) != 0)
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
}
