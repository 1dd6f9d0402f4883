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
    /* Redis 6+ ACL user (copied); NULL sends AUTH password alone, i.e. as the "default" user. */
    const char *username;
};

/*
 * Parses redis://[[user]:password@]host[:port][/db] (default port 6379, db 0;
 * host may be an [IPv6] literal; user and password are percent-decoded).
 * Anything else (query, fragment, rediss://, port 0, empty password, ...) is
 * SLK_EINVAL. Strings written to out are malloc'd; *password is NULL when
 * none is given. Outputs are only written on success.
 * This form has no user output: it accepts the user "default" (what AUTH
 * with a password alone means) and rejects any other with SLK_EINVAL.
 */
int slk_redis_parse_url(const char *url, char **host, int *port, char **password, int *db) SLK_MUST_CHECK;
/* As slk_redis_parse_url, also returning the ACL user (malloc'd, NULL when none) for slk_redis_options.username. */
int slk_redis_parse_url_user(const char *url, char **user, char **host, int *port, char **password,
                             int *db) SLK_MUST_CHECK;

/*
 * NULL on allocation failure or bad options (no host, port outside 1..65535).
 * A command_timeout_ms or connect_timeout_ms of 0 means SLK_DEFAULT_REDIS_TIMEOUT_MS:
 * nothing waits without a deadline.
 */
struct slk_redis *slk_redis_create(uv_loop_t *loop, const struct slk_redis_options *opts);
/* Starts connecting; reconnects on its own after any loss (100 ms doubling up to 2 s). */
void slk_redis_connect(struct slk_redis *r);
enum slk_redis_state slk_redis_state(const struct slk_redis *r);
/*
 * Fails every pending command with slk_redis_err_shutdown (on the next loop
 * iteration, not from inside this call), closes, frees once handles are
 * closed. Safe to call from any callback of this client. Afterwards r may
 * only be used by those callbacks, where slk_redis_command_argv returns
 * SLK_ECLOSED; the on_close hook is not called for this.
 */
void slk_redis_close(struct slk_redis *r);

/*
 * Sends one command. While not connected (also while connecting) the
 * callback is called with slk_redis_err_disconnected on the next loop
 * iteration (never re-entrantly). argv/argvlen are copied before return
 * (argvlen NULL means strlen).
 * Returns 0, or when it could not even queue (callback then never runs):
 * SLK_ENOMEM; SLK_EBUSY when SLK_REDIS_MAX_PENDING commands are alive;
 * SLK_ECLOSED after slk_redis_close; SLK_EINVAL for argc < 1 and for
 * (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE and MONITOR, whose replies do not pair
 * one-to-one with commands in hiredis 0.14.
 */
int slk_redis_command_argv(struct slk_redis *r, slk_redis_cb cb, void *data, int argc, const char **argv,
                           const size_t *argvlen) SLK_MUST_CHECK;

/*
 * A command whose answer nobody waits for (an index trimmed, an
 * announcement): a failure, to queue or from Redis, is logged at WARN as
 * note->message with note->op and the error. note must outlive the command
 * (a static).
 */
struct slk_redis_note {
    const char *message;
    const char *op;
};
void slk_redis_fire(struct slk_redis *r, const struct slk_redis_note *note, int argc, const char **argv);

/* Latency/error accounting hooks are in metrics.h; the wrapper reports every call there. */

#endif
