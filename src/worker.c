#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slk/auth.h"
#include "slk/events.h"
#include "slk/http.h"
#include "slk/instructor.h"
#include "slk/log.h"
#include "slk/outbox.h"
#include "slk/pg.h"
#include "slk/pubsub.h"
#include "slk/redis.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/token_cache.h"
#include "slk/avail_cache.h"
#include "slk/rate_view.h"
#include "slk/hold_flights.h"
#include "slk/hold_questions.h"
#include "slk/refusal_cache.h"
#include "slk/worker.h"

#define DRAIN_POLL_MS 20

static int create_redis(struct slk_worker *w)
{
    char *user = NULL, *host = NULL, *password = NULL;
    int port, db;
    if (slk_redis_parse_url_user(w->cfg->redis_url, &user, &host, &port, &password, &db) != 0)
        return SLK_EINVAL;
    struct slk_redis_options opts = {
        .host = host,
        .port = port,
        .password = password,
        .username = user,
        .db = db,
        .command_timeout_ms = w->cfg->redis_timeout_ms,
        .connect_timeout_ms = w->cfg->redis_timeout_ms,
        .on_connect = slk_scripts_load_all,
    };
    w->redis = slk_redis_create(&w->loop, &opts);
    free(user);
    free(host);
    free(password);
    return w->redis != NULL ? 0 : SLK_ENOMEM;
}

int slk_worker_init(struct slk_worker *w, int id, const struct slk_config *cfg, struct slk_router *router,
                    int listen_fd)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cfg = cfg;
    w->router = router;
    w->listen_fd = listen_fd;
    if (uv_loop_init(&w->loop) != 0)
        return SLK_ENOMEM;
    int rc = create_redis(w);
    if (rc != 0)
        goto fail;
    struct slk_pg_options pg = {
        .conninfo = cfg->database_url, .size = cfg->pg_pool_size, .query_timeout_ms = cfg->pg_timeout_ms};
    w->pg = slk_pg_pool_create(&w->loop, &pg);
    w->instructors = slk_instructor_cache_create();
    w->tokens = slk_token_cache_create();
    w->avail_cache = slk_avail_cache_create();
    w->refusals = slk_refusal_cache_create();
    w->rate_view = slk_rate_view_create();
    w->questions = slk_hold_questions_create();
    bool has_secret = cfg->jwt_secret != NULL && cfg->jwt_secret[0] != '\0'; /* none when auth is off */
    w->jwt_key = has_secret ? slk_hmac_new((const unsigned char *)cfg->jwt_secret, strlen(cfg->jwt_secret)) : NULL;
    w->flights = slk_hold_flights_create();
    w->events = slk_events_create(w);
    w->pubsub = slk_pubsub_create(w);
    struct slk_http_limits limits = {
        .max_header_bytes = cfg->max_header_bytes,
        .max_body_bytes = cfg->max_body_bytes,
        .request_timeout_ms = cfg->request_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .max_connections = (cfg->max_connections + (size_t)cfg->workers - 1) / (size_t)cfg->workers,
    };
    w->http = slk_http_server_create(&w->loop, w, &limits, slk_routes_dispatch);
    rc = SLK_ENOMEM;
    if (w->pg == NULL || w->instructors == NULL || w->tokens == NULL || w->avail_cache == NULL || w->refusals == NULL ||
        w->rate_view == NULL || w->questions == NULL || (has_secret && w->jwt_key == NULL) || w->flights == NULL ||
        w->http == NULL || w->events == NULL || w->pubsub == NULL)
        goto fail;
    rc = slk_http_server_listen(w->http, listen_fd);
    if (rc != 0)
        goto fail;
    return 0;
fail:
    slk_worker_free(w);
    return rc;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Draining (R-OPS): stop accepting, let in-flight requests finish (bounded), then close everything. */
static void close_handles(struct slk_worker *w)
{
    if (!w->handles_ready)
        return;
    w->handles_ready = false;
    uv_timer_stop(&w->drain_timer);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&w->stop_async, on_handle_closed);
}

static void close_all(struct slk_worker *w)
{
    close_handles(w);
    slk_outbox_stop(w);
    slk_events_close(w->events);
    w->events = NULL;
    slk_pubsub_close(w->pubsub);
    w->pubsub = NULL;
    slk_http_server_close(w->http, NULL, NULL);
    w->http = NULL;
    slk_redis_close(w->redis);
    w->redis = NULL;
    slk_pg_pool_close(w->pg);
    w->pg = NULL;
}

static void on_drain_tick(uv_timer_t *t)
{
    struct slk_worker *w = t->data;
    bool idle = slk_http_server_inflight_requests(w->http) == 0;
    if (idle || uv_now(&w->loop) >= w->drain_deadline) {
        if (!idle)
            slk_log(SLK_LOG_WARN, "drain timeout: closing with requests in flight", NULL);
        close_all(w);
    }
}

static void on_stop(uv_async_t *a)
{
    struct slk_worker *w = a->data;
    if (w->draining)
        return;
    w->draining = true;
    slk_http_server_stop_accepting(w->http);
    /* Deliveries in flight are abandoned: their events stay leased and are sent again after a restart. */
    slk_outbox_stop(w);
    slk_events_end_streams(w->events); /* streams never finish by themselves */
    w->drain_deadline = uv_now(&w->loop) + w->cfg->drain_timeout_ms;
    uv_timer_start(&w->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
}

static void run(void *arg)
{
    struct slk_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    slk_http_requests_release();
}

int slk_worker_start(struct slk_worker *w)
{
    if (uv_async_init(&w->loop, &w->stop_async, on_stop) != 0)
        return SLK_ENOMEM;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->handles_ready = true;
    w->stop_async.data = w;
    w->drain_timer.data = w;
    slk_redis_connect(w->redis);
    slk_pg_pool_start(w->pg);
    slk_pubsub_start(w->pubsub);
    /* One loop is enough for the background work of the outbox; more would only contend for the same rows. */
    if (w->id == 0 && slk_outbox_start(w) != 0)
        return SLK_EINVAL;
    if (uv_thread_create(&w->thread, run, w) != 0)
        return SLK_ENOMEM;
    w->started = true;
    return 0;
}

void slk_worker_stop(struct slk_worker *w)
{
    uv_async_send(&w->stop_async);
}

void slk_worker_join(struct slk_worker *w)
{
    if (w->started)
        uv_thread_join(&w->thread);
    w->started = false;
}

void slk_worker_free(struct slk_worker *w)
{
    close_handles(w);
    slk_outbox_stop(w);
    slk_events_close(w->events);
    w->events = NULL;
    slk_pubsub_close(w->pubsub);
    w->pubsub = NULL;
    if (w->http != NULL)
        slk_http_server_close(w->http, NULL, NULL);
    if (w->redis != NULL)
        slk_redis_close(w->redis);
    if (w->pg != NULL)
        slk_pg_pool_close(w->pg);
    w->http = NULL;
    w->redis = NULL;
    w->pg = NULL;
    /* Let close callbacks run so every handle is released before the loop goes. */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        slk_log(SLK_LOG_WARN, "event loop closed with handles open", NULL);
    slk_instructor_cache_free(w->instructors);
    w->instructors = NULL;
    slk_token_cache_free(w->tokens);
    w->tokens = NULL;
    slk_avail_cache_free(w->avail_cache);
    w->avail_cache = NULL;
    slk_refusal_cache_free(w->refusals);
    w->refusals = NULL;
    slk_rate_view_free(w->rate_view);
    w->rate_view = NULL;
    slk_hold_questions_free(w->questions);
    w->questions = NULL;
    slk_hmac_free(w->jwt_key);
    w->jwt_key = NULL;
    slk_hold_flights_free(w->flights);
    w->flights = NULL;
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    w->listen_fd = -1;
}
