#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slk/booking.h"
#include "slk/events.h"
#include "slk/instructor.h"
#include "slk/log.h"
#include "slk/avail_cache.h"
#include "slk/pubsub.h"
#include "slk/redis.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define RECONNECT_MS 1000

struct slk_pubsub {
    struct slk_worker *w;
    redisAsyncContext *ctx;
    uv_timer_t retry;
    char *host, *user, *password;
    int port, db;
    bool closing;
    bool connected;
    int alive; /* the retry timer and the hiredis context: freed when both are gone */
};

static void release(struct slk_pubsub *ps)
{
    if (--ps->alive > 0)
        return;
    free(ps->host);
    free(ps->user);
    free(ps->password);
    free(ps);
}

static void connect_now(struct slk_pubsub *ps);

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

/* The context is gone (hiredis frees it after its callback returns). */
static void context_gone(struct slk_pubsub *ps)
{
    ps->ctx = NULL;
    ps->connected = false;
    if (ps->closing)
        release(ps);
    else
        uv_timer_start(&ps->retry, on_retry, RECONNECT_MS, 0);
}

/* "slk:{<instructor>}:…" → instructor; false when the name is not ours. */
static bool instructor_of(const char *name, size_t len, char out[SLK_MAX_ID_LEN + 1])
{
    const char *open = memchr(name, '{', len),
               *close = open != NULL ? memchr(open, '}', len - (size_t)(open - name)) : NULL;
    if (open == NULL || close == NULL || close - open - 1 > SLK_MAX_ID_LEN || close == open + 1)
        return false;
    memcpy(out, open + 1, (size_t)(close - open - 1));
    out[close - open - 1] = '\0';
    return true;
}

/*
 * Every worker listens, each for its own SSE clients; the generation tables
 * are the process's, so one of them tells those. (Were each to, a worker
 * count's worth of journal entries per change would crowd the journal.)
 */
static bool bumps_generations(const struct slk_pubsub *ps)
{
    return ps->w->id == 0;
}

/* An expired unit key: "slk:{i}:u:<minute>". Only holds still ahead are worth telling (booked units expire after
 * their booking ended). */
static void on_expired_key(struct slk_pubsub *ps, const char *key, size_t len)
{
    char instructor[SLK_MAX_ID_LEN + 1];
    const char *unit = strstr(key, "}:u:");
    if (unit == NULL || !instructor_of(key, len, instructor))
        return;
    long long minute = strtoll(unit + 4, NULL, 10);
    if (minute < 0 || minute > INT32_MAX)
        return; /* not a unit key of ours */
    int64_t start = (int64_t)minute * 60000;
    if (bumps_generations(ps)) {
        slk_avail_gen_bump_units(instructor, strlen(instructor), (struct slk_unit_range){minute, minute + 1});
        slk_freed_gen_bump(instructor, strlen(instructor));
    }
    struct slk_instructor_entry *e = slk_instructor_cache_get(ps->w->instructors, instructor);
    if (e == NULL || start <= slk_clock_now_ms())
        return;
    slk_events_publish(ps->w->events, instructor, "expired", start,
                       start + (int64_t)e->ins.granularity_minutes * 60000);
}

/* A script's event: "<type> <start ms> <end ms>". */
static void on_script_event(struct slk_pubsub *ps, const char *channel, size_t channel_len, const char *payload)
{
    char instructor[SLK_MAX_ID_LEN + 1], type[16];
    long long start, end;
    if (!instructor_of(channel, channel_len, instructor))
        return;
    bool parsed = sscanf(payload, "%15s %lld %lld", type, &start, &end) == 3;
    if (bumps_generations(ps)) {
        /* The booking's own range: readers widen it by the buffer and a unit (avail_cache.h). */
        if (parsed && 0 <= start && start <= end && end <= INT64_MAX - 60000)
            slk_avail_gen_bump_units(instructor, strlen(instructor),
                                     (struct slk_unit_range){start / 60000, (end + 59999) / 60000});
        else
            slk_avail_gen_bump(instructor, strlen(instructor));
        if (!parsed || (strcmp(type, "held") != 0 && strcmp(type, "blocked") != 0))
            slk_freed_gen_bump(instructor, strlen(instructor));
    }
    if (!parsed)
        return;
    slk_events_publish(ps->w->events, instructor, type, start, end);
}

static void on_message(redisAsyncContext *ctx, void *r, void *data)
{
    (void)ctx;
    struct slk_pubsub *ps = data;
    redisReply *reply = r;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING && strcmp(reply->element[0]->str, "psubscribe") == 0) {
        /* Listening (again): whatever was freed, or changed, while we were not is unknown. */
        slk_freed_gen_bump_all();
        if (bumps_generations(ps))
            slk_avail_gen_bump_all();
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 ||
        strcmp(reply->element[0]->str, "pmessage") != 0)
        return;
    const redisReply *channel = reply->element[2], *payload = reply->element[3];
    if (channel->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return;
    if (strncmp(channel->str, "__keyspace@", 11) == 0) {
        /* "__keyspace@<db>__:<key>", told "expired" */
        const char *key = strstr(channel->str + 11, "__:");
        if (key != NULL && strcmp(payload->str, "expired") == 0)
            on_expired_key(ps, key + 3, channel->len - (size_t)(key + 3 - channel->str));
    } else
        on_script_event(ps, channel->str, channel->len, payload->str);
}

static void on_config(redisAsyncContext *ctx, void *r, void *data)
{
    (void)ctx;
    (void)data;
    redisReply *reply = r;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "redis refuses keyspace notifications: no 'expired' events", "error", reply->str, NULL);
}

static void on_connect(const redisAsyncContext *ctx, int status)
{
    struct slk_pubsub *ps = ctx->data;
    if (status != REDIS_OK) {
        context_gone(ps);
        return;
    }
    redisAsyncContext *c = ps->ctx;
    ps->connected = true;
    if (ps->password != NULL && ps->user != NULL)
        redisAsyncCommand(c, NULL, NULL, "AUTH %s %s", ps->user, ps->password);
    else if (ps->password != NULL)
        redisAsyncCommand(c, NULL, NULL, "AUTH %s", ps->password);
    /* Per-key channels, so that only unit keys' expiries reach us: every rate-limit bucket, kept reply and
     * idempotency record expires too, and Redis drops what no pattern matches before it is sent. The per-event
     * channel stays on for servers of an earlier version sharing this Redis (a rolling upgrade). */
    redisAsyncCommand(c, on_config, NULL, "CONFIG SET notify-keyspace-events KEx");
    redisAsyncCommand(c, on_message, ps, "PSUBSCRIBE slk:*:events __keyspace@%d__:slk:{*}:u:*", ps->db);
}

static void on_disconnect(const redisAsyncContext *ctx, int status)
{
    struct slk_pubsub *ps = ctx->data;
    (void)status;
    context_gone(ps);
}

static void connect_now(struct slk_pubsub *ps)
{
    if (ps->closing || ps->ctx != NULL)
        return;
    redisAsyncContext *c = redisAsyncConnect(ps->host, ps->port);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisAsyncFree(c);
        uv_timer_start(&ps->retry, on_retry, RECONNECT_MS, 0);
        return;
    }
    c->data = ps;
    ps->ctx = c;
    redisLibuvAttach(c, &ps->w->loop);
    redisAsyncSetConnectCallback(c, on_connect);
    redisAsyncSetDisconnectCallback(c, on_disconnect);
}

struct slk_pubsub *slk_pubsub_create(struct slk_worker *w)
{
    struct slk_pubsub *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->w = w;
    if (slk_redis_parse_url_user(w->cfg->redis_url, &ps->user, &ps->host, &ps->port, &ps->password, &ps->db) != 0) {
        free(ps);
        return NULL;
    }
    uv_timer_init(&w->loop, &ps->retry);
    ps->retry.data = ps;
    ps->alive = 2;
    return ps;
}

void slk_pubsub_start(struct slk_pubsub *ps)
{
    connect_now(ps);
}

static void on_retry_closed(uv_handle_t *h)
{
    release(h->data);
}

void slk_pubsub_close(struct slk_pubsub *ps)
{
    if (ps == NULL)
        return;
    ps->closing = true;
    uv_timer_stop(&ps->retry);
    uv_close((uv_handle_t *)&ps->retry, on_retry_closed);
    /* Freed at once, not after pending replies: a stalled Redis must not hold up shutdown. A connected context
     * reports through on_disconnect (which releases); one still connecting does not. */
    redisAsyncContext *c = ps->ctx;
    bool connected = ps->connected;
    if (c != NULL)
        redisAsyncFree(c);
    if (c == NULL || !connected)
        release(ps);
}
