/*
 * Redis client for one event loop, after h2o's lib/common/redis.c: hiredis
 * async on its libuv adapter, one command object per call with its own
 * deadline timer (hiredis 0.14 has none), automatic reconnect with backoff.
 *
 * Every callback runs exactly once: with a reply and err == NULL, or with
 * reply == NULL and err one of the slk_redis_err_* strings (compare by
 * pointer). A reply that arrives after its command timed out is dropped
 * safely. The reply is only valid for the duration of the callback.
 */
#ifndef SLK_REDIS_H
#define SLK_REDIS_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "slk/common.h"

extern const char slk_redis_err_timeout[];      /* deadline passed */
extern const char slk_redis_err_disconnected[]; /* not connected, or connection lost mid-command */
extern const char slk_redis_err_shutdown[];     /* client is being closed */
extern const char slk_redis_err_protocol[];     /* hiredis reported a protocol error */

enum slk_redis_state {
    SLK_REDIS_DISCONNECTED = 0,
    SLK_REDIS_CONNECTING,
    SLK_REDIS_CONNECTED,
};

struct slk_redis;

typedef void (*slk_redis_cb)(void *data, redisReply *reply, const char *err);
typedef void (*slk_redis_event_cb)(struct slk_redis *r, void *data);

struct slk_redis_options {
    const char *host; /* copied */
    int port;
    const char *password; /* copied; NULL for none */
    int db;
    uint64_t command_timeout_ms;
    uint64_t connect_timeout_ms;
    /* Called after every successful (re)connect, before queued commands run; e.g. to SCRIPT LOAD. May be NULL. */
    slk_redis_event_cb on_connect;
    slk_redis_event_cb on_close; /* connection lost or failed; may be NULL */
    void *cb_data;
};

/* Parses redis://[:password@]host[:port][/db] (default port 6379, db 0). Strings written to out are malloc'd. */
int slk_redis_parse_url(const char *url, char **host, int *port, char **password, int *db) SLK_MUST_CHECK;

struct slk_redis *slk_redis_create(uv_loop_t *loop, const struct slk_redis_options *opts);
/* Starts connecting; reconnects on its own after any loss (100 ms doubling up to 2 s). */
void slk_redis_connect(struct slk_redis *r);
enum slk_redis_state slk_redis_state(const struct slk_redis *r);
/* Fails every pending command with slk_redis_err_shutdown, closes, frees once handles are closed. */
void slk_redis_close(struct slk_redis *r);

/*
 * Sends one command. While not connected the callback is called with
 * slk_redis_err_disconnected on the next loop iteration (never re-entrantly).
 * Returns 0, or SLK_ENOMEM / SLK_EBUSY when it could not even queue (callback then never runs).
 */
int slk_redis_command_argv(struct slk_redis *r, slk_redis_cb cb, void *data, int argc, const char **argv,
                           const size_t *argvlen) SLK_MUST_CHECK;

/* Latency/error accounting hooks are in metrics.h; the wrapper reports every call there. */

#endif
