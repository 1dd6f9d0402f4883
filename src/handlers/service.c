/* Service endpoints: liveness, readiness (Redis and Postgres really answer), metrics. */
#include <stdlib.h>
#include <string.h>

#include "slk/metrics.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

void slk_handle_livez(struct slk_request *req)
{
    slk_reply_ok(req, 200, "alive", NULL);
}

static void reply_not_ready(struct slk_request *req, const char *what)
{
    if (slk_response_header(req, "Retry-After", "1") != 0) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_error(req, 503, "unavailable", "Not ready", json_pack("{s:s}", "waiting_for", what));
}

static void on_pg_ready(void *data, PGresult *res, const char *err)
{
    struct slk_request *req = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        reply_not_ready(req, "postgres");
        return;
    }
    slk_reply_ok(req, 200, "ready", NULL);
}

static void on_redis_ready(void *data, redisReply *reply, const char *err)
{
    struct slk_request *req = data;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR) {
        reply_not_ready(req, "redis");
        return;
    }
    if (slk_pg_query(req->worker->pg, "SELECT 1", 0, NULL, on_pg_ready, req) != 0)
        reply_not_ready(req, "postgres");
}

void slk_handle_readyz(struct slk_request *req)
{
    if (req->worker->draining) {
        reply_not_ready(req, "shutdown");
        return;
    }
    const char *argv[1] = {"PING"};
    if (slk_redis_command_argv(req->worker->redis, on_redis_ready, req, 1, argv, NULL) != 0)
        reply_not_ready(req, "redis");
}

void slk_handle_metrics(struct slk_request *req)
{
    size_t len;
    char *text = slk_metrics_render(&len);
    if (text == NULL) {
        slk_reply_error(req, 500, "internal_error", "Could not render metrics", NULL);
        return;
    }
    slk_response_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/*
 * POST /internal/clock {"offset_ms": N} shifts the server's clock;
 * {"freeze_at_ms": T} stops it at T (0 lets it run again). Tests stand
 * exactly at a policy's edge this way, without sleeping. Exists only with
 * TEST_CLOCK=1 (the server warns at start); otherwise the path is unknown.
 */
void slk_handle_test_clock(struct slk_request *req)
{
    if (!req->worker->cfg->test_clock) {
        slk_reply_error(req, 404, "not_found", "No such resource", NULL);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body != NULL ? req->body : "", req->body_len, 0, &jerr);
    json_t *offset = json_object_get(body, "offset_ms"), *freeze = json_object_get(body, "freeze_at_ms");
    if ((offset != NULL && !json_is_integer(offset)) || (freeze != NULL && !json_is_integer(freeze)) ||
        (offset == NULL && freeze == NULL)) {
        json_decref(body);
        slk_reply_invalid(req, "offset_ms", "offset_ms or freeze_at_ms must be an integer");
        return;
    }
    if (offset != NULL)
        slk_clock_set_offset_ms((int64_t)json_integer_value(offset));
    if (freeze != NULL)
        slk_clock_freeze_ms((int64_t)json_integer_value(freeze));
    json_decref(body);
    slk_reply_ok(req, 200, "Clock shifted", json_pack("{s:I}", "now_ms", (json_int_t)slk_clock_now_ms()));
}
