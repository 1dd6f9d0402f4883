/*
 * One event-loop thread and everything it owns: its loop, HTTP server,
 * Redis connection, Postgres pool and caches. Handlers reach all of it
 * through req->worker; nothing here is shared between workers.
 */
#ifndef SLK_WORKER_H
#define SLK_WORKER_H

#include <stdbool.h>
#include <uv.h>

#include "slk/config.h"

struct slk_http_server;
struct slk_redis;
struct slk_pg_pool;
struct slk_router;
struct slk_instructor_cache;
struct slk_token_cache;
struct slk_rate_view;
struct slk_events;
struct slk_pubsub;
struct slk_avail_cache;
struct slk_refusal_cache;
struct slk_hold_flights;
struct slk_hold_questions;
struct slk_hmac;
struct slk_outbox;

struct slk_worker {
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async; /* wakes the loop to begin draining */
    uv_timer_t drain_timer;
    const struct slk_config *cfg;
    struct slk_router *router; /* shared, read-only after start */
    struct slk_http_server *http;
    struct slk_redis *redis;
    struct slk_pg_pool *pg;
    struct slk_instructor_cache *instructors;
    struct slk_token_cache *tokens;
    struct slk_hmac *jwt_key;             /* JWT_SECRET, set up once for this thread */
    struct slk_avail_cache *avail_cache;  /* recent availability replies (avail_cache.h) */
    struct slk_refusal_cache *refusals;   /* recent hold refusals (refusal_cache.h) */
    struct slk_rate_view *rate_view;      /* clients' token buckets as this worker sees them (rate_view.h) */
    struct slk_hold_questions *questions; /* recent hold bodies, parsed (hold_questions.h) */
    struct slk_hold_flights *flights;     /* hold questions in flight (hold_flights.h) */
    struct slk_events *events;            /* SSE clients of this loop */
    struct slk_pubsub *pubsub;            /* their feed from Redis */
    struct slk_outbox *outbox;            /* worker 0 only: moves, checks and delivers booking events; NULL elsewhere */
    int listen_fd;
    uint64_t drain_deadline; /* loop time (ms) after which a drain stops waiting */
    bool draining;
    bool started;
    bool handles_ready; /* stop_async and drain_timer are initialised and not yet closed */
};

int slk_worker_init(struct slk_worker *w, int id, const struct slk_config *cfg, struct slk_router *router,
                    int listen_fd) SLK_MUST_CHECK;
/* Connects to Redis and Postgres and runs the loop on a new thread. */
int slk_worker_start(struct slk_worker *w) SLK_MUST_CHECK;
/* Thread-safe: asks the worker to drain (stop accepting, finish in-flight, close). */
void slk_worker_stop(struct slk_worker *w);
void slk_worker_join(struct slk_worker *w);
void slk_worker_free(struct slk_worker *w);

#endif
