/*
 * Redis client on hiredis 0.14's async API and libuv adapter. The lifetime
 * rules that shape this file:
 *
 * - hiredis owns a redisAsyncContext from redisAsyncConnect until it frees
 *   it itself (after a failed connect, or after the disconnect callback) or
 *   until we call redisAsyncFree. We only call redisAsyncFree from our own
 *   timer/idle callbacks, never from inside a hiredis callback: from a
 *   reply callback hiredis would defer it, but from the connect callback it
 *   would free the context under hiredis's feet.
 * - A command object is shared by hiredis (until its reply callback runs,
 *   with a reply or with NULL when the context is freed) and by its deadline
 *   timer (until the timer's close callback). It is freed when both let go;
 *   the user callback runs exactly once, whichever comes first.
 * - The client itself is freed only from a libuv close callback, once its
 *   handles are closed, no command object is alive and no context is left,
 *   so no code of ours ever runs on a freed client.
 */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "slk/log.h"
#include "slk/metrics.h"
#include "slk/redis.h"

const char slk_redis_err_timeout[] = "redis command timed out";
const char slk_redis_err_disconnected[] = "redis disconnected";
const char slk_redis_err_shutdown[] = "redis client shutting down";
const char slk_redis_err_protocol[] = "redis protocol error";

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
#define URL_MAX_HOST_LEN 253 /* longest DNS name */

enum cmd_state {
    CMD_INFLIGHT, /* handed to hiredis, deadline running */
    CMD_FAILING,  /* waits in r->failing for the next loop iteration */
    CMD_DONE,     /* user callback has run */
};

struct cmd {
    struct slk_redis *r;
    struct cmd *prev, *next;
    enum cmd_state state;
    bool held_by_hiredis;
    const char *err; /* for CMD_FAILING */
    uint64_t started_ns;
    uint64_t deadline; /* loop time (ms) at which an in-flight command times out */
    slk_redis_cb cb;
    void *data;
};

struct cmd_list {
    struct cmd *head, *tail;
    size_t count;
};

struct slk_redis {
    uv_loop_t *loop;
    struct slk_redis_options opts; /* strings point at our copies below */
    char *host, *password, *username;
    redisAsyncContext *ac; /* NULL while disconnected */
    enum slk_redis_state state;
    uint64_t conn_gen; /* bumped per connection, so a late reset request cannot hit a newer one */
    uint64_t reset_gen;
    bool reset_pending;
    bool started;
    bool closing;
    bool handles_closing;
    int setup_pending; /* AUTH / SELECT replies still expected on this connection */
    uint64_t backoff_ms;
    struct cmd_list inflight;
    struct cmd_list failing;
    size_t alive; /* command objects not yet freed; bounded by SLK_REDIS_MAX_PENDING */
    int handles_open;
    bool flushing;              /* inside on_flush: a write hiredis could not finish must wait for the socket */
    uv_idle_t tick;             /* runs deferred failures and teardowns outside any hiredis callback */
    uv_prepare_t flush;         /* active while commands wait in hiredis' buffer: sends them before the loop waits */
    uv_timer_t connect_timer;   /* connect deadline */
    uv_timer_t reconnect_timer; /* backoff */
    /* One timer for all in-flight commands: they share one timeout and are answered in order, so the oldest
     * one's deadline is always the next to come (a timer per command cost a handle per command). */
    uv_timer_t deadline_timer;
};

static void on_reconnect_timer(uv_timer_t *t);
static void on_tick(uv_idle_t *idle);
static void on_deadline(uv_timer_t *t);
static void on_flush(uv_prepare_t *prepare);

/* --- command lists ------------------------------------------------------ */

static void list_push(struct cmd_list *l, struct cmd *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
}

static void list_remove(struct cmd_list *l, struct cmd *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->count--;
}

static struct cmd_list *list_of(struct slk_redis *r, struct cmd *c)
{
    return c->state == CMD_INFLIGHT ? &r->inflight : &r->failing;
}

/* --- freeing ------------------------------------------------------------ */

static void client_free_if_done(struct slk_redis *r)
{
    if (!r->closing || r->handles_open > 0 || r->alive > 0 || r->ac != NULL)
        return;
    free(r->host);
    free(r->password);
    free(r->username);
    free(r);
}

static void cmd_release(struct cmd *c)
{
    if (c->held_by_hiredis || c->state != CMD_DONE)
        return;
    struct slk_redis *r = c->r;
    free(c);
    r->alive--;
    client_free_if_done(r);
}

/* --- completing commands ------------------------------------------------ */

static void cmd_complete(struct cmd *c, redisReply *reply, const char *err)
{
    struct slk_redis *r = c->r;
    list_remove(list_of(r, c), c);
    c->state = CMD_DONE;
    slk_metrics_backend_call(SLK_BACKEND_REDIS, uv_hrtime() - c->started_ns, err != NULL ? 1 : 0);
    c->cb(c->data, reply, err);
    cmd_release(c);
}

static void cmd_fail_later(struct cmd *c, const char *err)
{
    struct slk_redis *r = c->r;
    if (c->state == CMD_INFLIGHT)
        list_remove(&r->inflight, c);
    c->state = CMD_FAILING;
    c->err = err;
    list_push(&r->failing, c);
    uv_idle_start(&r->tick, on_tick);
}

static void arm_deadline(struct slk_redis *r)
{
    if (r->inflight.head == NULL || r->handles_closing || uv_is_active((uv_handle_t *)&r->deadline_timer))
        return;
    uint64_t now = uv_now(r->loop), at = r->inflight.head->deadline;
    uv_timer_start(&r->deadline_timer, on_deadline, at > now ? at - now : 0, 0);
}

/* Times out every in-flight command whose deadline passed (oldest first), then waits for the next one. A
 * callback may send new commands (queued behind, with later deadlines) or close the client. */
static void on_deadline(uv_timer_t *t)
{
    struct slk_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    while (r->inflight.head != NULL && r->inflight.head->deadline <= now)
        cmd_complete(r->inflight.head, NULL, slk_redis_err_timeout);
    arm_deadline(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *c = privdata;
    struct slk_redis *r = c->r;

    if (c->state == CMD_INFLIGHT) {
        if (reply != NULL) {
            cmd_complete(c, reply, NULL);
        } else {
            /* hiredis is freeing the context: the connection is gone, so
             * anything the user sends from this callback must not reach it. */
            if (ac == r->ac)
                r->state = SLK_REDIS_DISCONNECTED;
            cmd_complete(c, NULL, ac->err == REDIS_ERR_PROTOCOL ? slk_redis_err_protocol : slk_redis_err_disconnected);
        }
    }
    c->held_by_hiredis = false;
    cmd_release(c);
}

/* Runs at most the failures queued before this iteration, so a caller that
 * retries from its error callback cannot keep the loop here forever. */
static void run_failures(struct slk_redis *r)
{
    size_t n = r->failing.count;
    while (n-- > 0 && r->failing.head != NULL) {
        struct cmd *c = r->failing.head;
        cmd_complete(c, NULL, c->err);
    }
}

/* --- event hooks ------------------------------------------------------- */

/*
 * hiredis 0.14's libuv adapter ignores a non-zero poll status, but libuv
 * reports POLLERR exactly that way (UV_EBADF, handle stopped): a refused
 * connect would then only end at the connect deadline, and a reset
 * connection would never be noticed. We keep the adapter's attach and
 * cleanup and route its hooks through this callback, which on an error lets
 * hiredis read/write and so find the socket error itself (as later hiredis
 * releases do).
 */
static void on_poll(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    if (status < 0)
        events = p->events;
    /* context becomes NULL once hiredis has freed it (the adapter's cleanup). */
    if (p->context != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

/*
 * hiredis asks for write events once per command and for read events after
 * every write. uv_poll_start() always stops the handle first (an epoll_ctl
 * DEL, then an ADD at the next poll), so a request that changes nothing is
 * not passed on: two system calls per Redis command otherwise. A handle
 * libuv stopped after a socket error is started again whatever is asked.
 */
static void poll_update(redisLibuvEvents *p, int add, int del)
{
    int events = (p->events | add) & ~del;
    if (events == p->events && (events == 0) == !uv_is_active((uv_handle_t *)&p->handle))
        return;
    p->events = events;
    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *data)
{
    poll_update(data, UV_READABLE, 0);
}

static void ev_del_read(void *data)
{
    poll_update(data, 0, UV_READABLE);
}

/*
 * A command does not wait for the socket to be reported writable: under load
 * that report comes in the next loop iteration, among the clients' requests,
 * and the reply one iteration later still, so each round trip cost two or three
 * iterations of everyone's work (3.5 ms per Redis call in mixed at 64
 * connections). The commands of one iteration go out together just before the
 * loop next waits for I/O (on_flush, a prepare handle: also right after the
 * timer that sent them); only a write the socket could not take, or one
 * before the connection is up, waits for the writable event.
 */
static void ev_add_write(void *data)
{
    redisLibuvEvents *p = data;
    redisAsyncContext *ac = p->context;
    struct slk_redis *r = ac != NULL ? ac->data : NULL;
    if (r != NULL && r->ac == ac && !r->flushing && (ac->c.flags & REDIS_CONNECTED)) {
        uv_prepare_start(&r->flush, on_flush);
        return;
    }
    poll_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *data)
{
    poll_update(data, 0, UV_WRITABLE);
}

static int attach_loop(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (redisLibuvAttach(ac, loop) != REDIS_OK)
        return -1;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    return 0;
}

/* --- connection --------------------------------------------------------- */

static void schedule_reconnect(struct slk_redis *r)
{
    if (r->closing)
        return;
    uv_timer_start(&r->reconnect_timer, on_reconnect_timer, r->backoff_ms, 0);
    r->backoff_ms *= 2;
    if (r->backoff_ms > RECONNECT_MAX_MS)
        r->backoff_ms = RECONNECT_MAX_MS;
}

static void log_event(enum slk_log_level level, const char *msg, const struct slk_redis *r, const char *error)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", r->opts.port);
    if (error != NULL)
        slk_log(level, msg, "host", r->host, "port", port, "error", error, NULL);
    else
        slk_log(level, msg, "host", r->host, "port", port, NULL);
}

/* Common tail of every way a connection ends or fails to start. */
static void connection_lost(struct slk_redis *r, const char *why)
{
    r->state = SLK_REDIS_DISCONNECTED;
    uv_timer_stop(&r->connect_timer);
    if (r->closing)
        return;
    log_event(SLK_LOG_WARN, "redis disconnected", r, why);
    schedule_reconnect(r);
    if (r->opts.on_close != NULL)
        r->opts.on_close(r, r->opts.cb_data);
}

/* Frees the context ourselves; only from our own libuv callbacks. Pending
 * hiredis callbacks run with NULL replies from inside redisAsyncFree. */
static void teardown_connection(struct slk_redis *r)
{
    redisAsyncContext *ac = r->ac;
    ac->data = NULL; /* its connect/disconnect callbacks must not reach r any more */
    r->ac = NULL;
    r->state = SLK_REDIS_DISCONNECTED;
    redisAsyncFree(ac);
}

static void request_reset(struct slk_redis *r)
{
    if (r->closing)
        return;
    r->reset_pending = true;
    r->reset_gen = r->conn_gen;
    uv_idle_start(&r->tick, on_tick);
}

static void setup_step_done(struct slk_redis *r, const char *what, redisReply *reply, const char *err)
{
    if (err == slk_redis_err_shutdown || err == slk_redis_err_disconnected)
        return; /* the connection is gone anyway */
    if (err != NULL || reply->type == REDIS_REPLY_ERROR) {
        /* Unauthenticated or on the wrong db, every command would fail or
         * worse; drop the connection and let the backoff retry. */
        slk_log(SLK_LOG_ERROR, "redis connection setup failed", "command", what, "error",
                err != NULL ? err : reply->str, NULL);
        request_reset(r);
        return;
    }
    if (--r->setup_pending == 0)
        r->backoff_ms = RECONNECT_MIN_MS;
}

static void on_auth_reply(void *data, redisReply *reply, const char *err)
{
    setup_step_done(data, "AUTH", reply, err);
}

static void on_select_reply(void *data, redisReply *reply, const char *err)
{
    setup_step_done(data, "SELECT", reply, err);
}

/* AUTH and SELECT go out first on the connection, so every user command
 * pipelined after them runs authenticated and on the right db. */
static void send_setup(struct slk_redis *r)
{
    r->setup_pending = 0;
    if (r->password != NULL) {
        const char *with_user[3] = {"AUTH", r->username, r->password};
        const char *without_user[2] = {"AUTH", r->password};
        int ret = r->username != NULL ? slk_redis_command_argv(r, on_auth_reply, r, 3, with_user, NULL)
                                      : slk_redis_command_argv(r, on_auth_reply, r, 2, without_user, NULL);
        if (ret == 0)
            r->setup_pending++;
        else
            request_reset(r);
    }
    if (r->opts.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->opts.db);
        const char *argv[2] = {"SELECT", db};
        if (slk_redis_command_argv(r, on_select_reply, r, 2, argv, NULL) == 0)
            r->setup_pending++;
        else
            request_reset(r);
    }
    if (r->setup_pending == 0)
        r->backoff_ms = RECONNECT_MIN_MS;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct slk_redis *r = ac->data;
    if (r == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this callback returns, and
         * calls no disconnect callback for a connection that never was. */
        r->ac = NULL;
        connection_lost(r, ac->errstr);
        return;
    }
    uv_timer_stop(&r->connect_timer);
    r->state = SLK_REDIS_CONNECTED;
    log_event(SLK_LOG_INFO, "redis connected", r, NULL);
    send_setup(r);
    if (r->opts.on_connect != NULL && !r->closing)
        r->opts.on_connect(r, r->opts.cb_data);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct slk_redis *r = ac->data;
    SLK_UNUSED(status);
    if (r == NULL)
        return;
    /* hiredis frees the context right after this callback returns. */
    r->ac = NULL;
    connection_lost(r, ac->errstr[0] != '\0' ? ac->errstr : "closed by server");
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct slk_redis *r = t->data;
    if (r->ac == NULL || r->state != SLK_REDIS_CONNECTING)
        return;
    teardown_connection(r);
    connection_lost(r, "connect timeout");
}

static void on_reconnect_timer(uv_timer_t *t)
{
    struct slk_redis *r = t->data;
    if (r->closing || r->ac != NULL)
        return;
    /* Note: hiredis resolves a host name with a blocking getaddrinfo here. */
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->opts.port);
    if (ac == NULL) {
        connection_lost(r, "out of memory");
        return;
    }
    if (ac->err != 0) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        connection_lost(r, why);
        return;
    }
    if (attach_loop(ac, r->loop) != 0) {
        redisAsyncFree(ac);
        connection_lost(r, "cannot attach to the event loop");
        return;
    }
    /* Without keepalive a peer that vanished (host down, partition) would
     * leave us "connected", every command timing out, forever. */
    redisEnableKeepAlive(&ac->c);
    ac->data = r;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->conn_gen++;
    r->state = SLK_REDIS_CONNECTING;
    uv_timer_start(&r->connect_timer, on_connect_timeout, r->opts.connect_timeout_ms, 0);
}

/* --- the per-iteration tick --------------------------------------------- */

static void on_flush(uv_prepare_t *prepare)
{
    struct slk_redis *r = prepare->data;
    uv_prepare_stop(prepare);
    /* hiredis would take a connect still in progress for done (0.14 reads only SO_ERROR). */
    if (r->ac == NULL || !(r->ac->c.flags & REDIS_CONNECTED))
        return;
    r->flushing = true;
    redisAsyncHandleWrite(r->ac);
    r->flushing = false;
}

static void on_handle_close(uv_handle_t *h)
{
    struct slk_redis *r = h->data;
    r->handles_open--;
    client_free_if_done(r);
}

static void close_handles(struct slk_redis *r)
{
    if (r->handles_closing)
        return;
    r->handles_closing = true;
    uv_close((uv_handle_t *)&r->tick, on_handle_close);
    uv_close((uv_handle_t *)&r->flush, on_handle_close);
    uv_close((uv_handle_t *)&r->connect_timer, on_handle_close);
    uv_close((uv_handle_t *)&r->reconnect_timer, on_handle_close);
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_close);
}

static void on_tick(uv_idle_t *idle)
{
    struct slk_redis *r = idle->data;

    if (r->ac != NULL && (r->closing || (r->reset_pending && r->reset_gen == r->conn_gen))) {
        teardown_connection(r);
        connection_lost(r, "connection setup failed");
    }
    r->reset_pending = false;
    run_failures(r);
    if (r->failing.head != NULL)
        return;
    if (r->closing)
        close_handles(r);
    else
        uv_idle_stop(idle);
}

/* --- public API --------------------------------------------------------- */

struct slk_redis *slk_redis_create(uv_loop_t *loop, const struct slk_redis_options *opts)
{
    if (opts->host == NULL || opts->port < 1 || opts->port > 65535)
        return NULL;
    struct slk_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->opts = *opts;
    r->host = strdup(opts->host);
    r->password = opts->password != NULL ? strdup(opts->password) : NULL;
    r->username = opts->username != NULL ? strdup(opts->username) : NULL;
    if (r->host == NULL || (opts->password != NULL && r->password == NULL) ||
        (opts->username != NULL && r->username == NULL))
        goto fail;
    r->opts.host = r->host;
    r->opts.password = r->password;
    r->opts.username = r->username;
    if (r->opts.command_timeout_ms == 0)
        r->opts.command_timeout_ms = SLK_DEFAULT_REDIS_TIMEOUT_MS;
    if (r->opts.connect_timeout_ms == 0)
        r->opts.connect_timeout_ms = SLK_DEFAULT_REDIS_TIMEOUT_MS;
    r->state = SLK_REDIS_DISCONNECTED;
    r->backoff_ms = RECONNECT_MIN_MS;

    uv_idle_init(loop, &r->tick);
    uv_prepare_init(loop, &r->flush);
    uv_timer_init(loop, &r->connect_timer);
    uv_timer_init(loop, &r->reconnect_timer);
    uv_timer_init(loop, &r->deadline_timer);
    r->tick.data = r;
    r->flush.data = r;
    r->connect_timer.data = r;
    r->reconnect_timer.data = r;
    r->deadline_timer.data = r;
    r->handles_open = 5;
    return r;

fail:
    free(r->host);
    free(r->password);
    free(r->username);
    free(r);
    return NULL;
}

void slk_redis_connect(struct slk_redis *r)
{
    if (r->started || r->closing)
        return;
    r->started = true;
    /* From the loop rather than from here, so that a connect failing at once
     * does not run the on_close hook inside this call. */
    uv_timer_start(&r->reconnect_timer, on_reconnect_timer, 0, 0);
}

enum slk_redis_state slk_redis_state(const struct slk_redis *r)
{
    return r->state;
}

void slk_redis_close(struct slk_redis *r)
{
    if (r->closing)
        return;
    r->closing = true;
    uv_timer_stop(&r->connect_timer);
    uv_timer_stop(&r->reconnect_timer);
    while (r->inflight.head != NULL)
        cmd_fail_later(r->inflight.head, slk_redis_err_shutdown);
    for (struct cmd *c = r->failing.head; c != NULL; c = c->next)
        c->err = slk_redis_err_shutdown;
    /* The context is freed and the handles closed from the next tick, outside
     * whatever hiredis or user callback we may be called from. */
    uv_idle_start(&r->tick, on_tick);
}

static bool is_unpaired_command(const char *name, size_t len)
{
    static const char *const names[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "monitor"};
    for (size_t i = 0; i < SLK_ARRAY_SIZE(names); i++) {
        if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
            return true;
    }
    return false;
}

int slk_redis_command_argv(struct slk_redis *r, slk_redis_cb cb, void *data, int argc, const char **argv,
                           const size_t *argvlen)
{
    if (r == NULL || r->closing) /* NULL: the worker already handed its client back (shutdown) */
        return SLK_ECLOSED;
    if (argc < 1 || argv == NULL || argv[0] == NULL || cb == NULL)
        return SLK_EINVAL;
    if (is_unpaired_command(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0])))
        return SLK_EINVAL;
    if (r->alive >= SLK_REDIS_MAX_PENDING)
        return SLK_EBUSY;

    struct cmd *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SLK_ENOMEM;
    c->r = r;
    c->cb = cb;
    c->data = data;
    c->started_ns = uv_hrtime();
    c->deadline = uv_now(r->loop) + r->opts.command_timeout_ms;
    r->alive++;

    if (r->state != SLK_REDIS_CONNECTED || r->ac == NULL ||
        redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        c->state = CMD_DONE; /* in no list yet, which cmd_fail_later must know */
        cmd_fail_later(c, slk_redis_err_disconnected);
        return 0;
    }
    c->held_by_hiredis = true;
    c->state = CMD_INFLIGHT;
    list_push(&r->inflight, c);
    arm_deadline(r);
    return 0;
}

static void on_fired(void *data, redisReply *reply, const char *err)
{
    const struct slk_redis_note *note = data;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, note->message, "op", note->op, "error", err != NULL ? err : reply->str, NULL);
}

void slk_redis_fire(struct slk_redis *r, const struct slk_redis_note *note, int argc, const char **argv)
{
    int rc = slk_redis_command_argv(r, on_fired, (void *)note, argc, argv, NULL);
    if (rc != 0)
        slk_log(SLK_LOG_WARN, note->message, "op", note->op, "error", slk_strerror(rc), NULL);
}

/* --- URL parsing -------------------------------------------------------- */

static int hex_value(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s + len) into a new string; NUL bytes are refused. */
static int pct_decode(const char *s, size_t len, char **out)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return SLK_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hex_value((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(d);
                return SLK_EINVAL;
            }
            ch = hi * 16 + lo;
            i += 2;
        }
        d[n++] = (char)ch;
    }
    d[n] = '\0';
    *out = d;
    return 0;
}

/* Parses 1..max_digits decimal digits in [s, e) into a value <= max. */
static int parse_uint(const char *s, const char *e, int max_digits, long max, long *out)
{
    if (e <= s || e - s > max_digits)
        return SLK_EINVAL;
    long v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return SLK_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > max)
        return SLK_EINVAL;
    *out = v;
    return 0;
}

static bool host_chars_ok(const char *s, const char *e, bool ipv6)
{
    if (e <= s || e - s > URL_MAX_HOST_LEN)
        return false;
    for (const char *p = s; p < e; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ipv6 ? !(isxdigit(ch) || ch == ':' || ch == '.') : !(isalnum(ch) || ch == '.' || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

struct url_parts {
    const char *user, *user_end, *pass, *pass_end; /* NULL when absent */
    const char *host, *host_end;
    long port, db;
};

static int split_host_port(const char *s, const char *e, struct url_parts *u)
{
    const char *port = NULL;
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(e - s));
        if (close == NULL || !host_chars_ok(s + 1, close, true))
            return SLK_EINVAL;
        u->host = s + 1;
        u->host_end = close;
        if (close + 1 < e && close[1] != ':')
            return SLK_EINVAL;
        port = close + 1 < e ? close + 2 : NULL;
    } else {
        const char *colon = memchr(s, ':', (size_t)(e - s));
        u->host = s;
        u->host_end = colon != NULL ? colon : e;
        if (!host_chars_ok(u->host, u->host_end, false))
            return SLK_EINVAL;
        port = colon != NULL ? colon + 1 : NULL;
    }
    u->port = 6379;
    if (port != NULL && (parse_uint(port, e, 5, 65535, &u->port) != 0 || u->port == 0))
        return SLK_EINVAL;
    return 0;
}

static int split_url(const char *url, struct url_parts *u)
{
    static const char scheme[] = "redis://";
    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return SLK_EINVAL;
    /* A raw '?', '#', space or control byte is never valid here; inside a
     * password they must be percent-encoded. */
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f || ch == '?' || ch == '#')
            return SLK_EINVAL;
    }
    const char *auth = url + sizeof(scheme) - 1;
    const char *auth_end = auth + strcspn(auth, "/");
    const char *at = memchr(auth, '@', (size_t)(auth_end - auth));
    const char *hostport = auth;
    if (at != NULL) {
        if (memchr(at + 1, '@', (size_t)(auth_end - at - 1)) != NULL)
            return SLK_EINVAL;
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon == NULL || colon + 1 == at)
            return SLK_EINVAL; /* "user@" alone or an empty password */
        if (colon > auth) {
            u->user = auth;
            u->user_end = colon;
        }
        u->pass = colon + 1;
        u->pass_end = at;
        hostport = at + 1;
    }
    if (split_host_port(hostport, auth_end, u) != 0)
        return SLK_EINVAL;
    u->db = 0;
    if (*auth_end == '/' && auth_end[1] != '\0')
        return parse_uint(auth_end + 1, auth_end + strlen(auth_end), 10, INT_MAX, &u->db);
    return 0;
}

int slk_redis_parse_url_user(const char *url, char **user, char **host, int *port, char **password, int *db)
{
    struct url_parts u;
    char *user_s = NULL, *host_s = NULL, *pass_s = NULL;
    int ret;

    if (url == NULL)
        return SLK_EINVAL;
    ret = split_url(url, &u);
    if (ret != 0)
        return ret;
    if (u.user != NULL) {
        ret = pct_decode(u.user, (size_t)(u.user_end - u.user), &user_s);
        if (ret != 0)
            goto fail;
    }
    if (u.pass != NULL) {
        ret = pct_decode(u.pass, (size_t)(u.pass_end - u.pass), &pass_s);
        if (ret != 0)
            goto fail;
    }
    ret = SLK_ENOMEM;
    host_s = strndup(u.host, (size_t)(u.host_end - u.host));
    if (host_s == NULL)
        goto fail;
    *user = user_s;
    *host = host_s;
    *port = (int)u.port;
    *password = pass_s;
    *db = (int)u.db;
    return 0;

fail:
    free(user_s);
    free(pass_s);
    free(host_s);
    return ret;
}

int slk_redis_parse_url(const char *url, char **host, int *port, char **password, int *db)
{
    char *user = NULL, *h = NULL, *pw = NULL;
    int p = 0, d = 0;
    int ret = slk_redis_parse_url_user(url, &user, &h, &p, &pw, &d);
    if (ret != 0)
        return ret;
    if (user != NULL && strcmp(user, "default") != 0) {
        free(user);
        free(h);
        free(pw);
        return SLK_EINVAL;
    }
    free(user);
    *host = h;
    *port = p;
    *password = pw;
    *db = d;
    return 0;
}
