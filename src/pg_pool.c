/*
 * Non-blocking libpq connection pool for one event loop. See slk/pg.h.
 *
 * Every query owns a uv_timer: it carries the deadline while the query is
 * queued or running, and it is re-armed with a zero timeout to deliver a
 * failure on the next loop iteration, so that no user callback ever runs
 * from inside slk_pg_query() or slk_pg_pool_close().
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/log.h"
#include "slk/metrics.h"
#include "slk/pg.h"

const char slk_pg_err_timeout[] = "postgres query timed out";
const char slk_pg_err_unavailable[] = "postgres unavailable";
const char slk_pg_err_busy[] = "postgres queue full";
const char slk_pg_err_shutdown[] = "postgres pool shutting down";

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
/* A connection that lived at least this long is retried at once when lost. */
#define STABLE_UPTIME_MS 1000
#define MIN_CONNECT_TIMEOUT_MS 1000
#define MAX_POOL_SIZE 1024
#define MAX_PARAMS 65535 /* the protocol counts parameters in 16 bits */
#define SQLSTATE_QUERY_CANCELED "57014"

enum conn_state {
    CONN_DOWN,       /* no PGconn; maybe a reconnect timer runs */
    CONN_CONNECTING, /* PQconnectPoll in progress; timer is the connect deadline */
    CONN_IDLE,
    CONN_BUSY,
};

enum query_state {
    QUERY_QUEUED,
    QUERY_RUNNING,
    QUERY_FAILING, /* err is delivered when the timer fires */
    QUERY_DONE,
};

struct pg_conn;

/* A uv_poll_t for one socket of one connection; freed in its close callback. */
struct pg_watch {
    uv_poll_t handle;
    struct slk_pg_pool *pool;
    struct pg_conn *conn; /* NULL once closing */
};

struct pg_query {
    uv_timer_t timer;
    struct slk_pg_pool *pool;
    struct pg_query *prev, *next; /* queue links while QUERY_QUEUED */
    struct pg_conn *conn;         /* while QUERY_RUNNING */
    enum query_state state;
    const char *err;
    slk_pg_cb cb;
    void *data;
    uint64_t start_ns;
    int nparams;
    const char **values;
    char *sql;
};

struct pg_conn {
    struct slk_pg_pool *pool;
    PGconn *pg;
    struct pg_watch *watch;
    uv_timer_t timer; /* reconnect delay or connect deadline */
    enum conn_state state;
    struct pg_query *query;
    PGresult *result; /* kept while the rest of the query's results arrive */
    bool flushing;
    int events;
    unsigned failures; /* consecutive failed attempts, for the backoff */
    uint64_t up_since_ms;
};

struct slk_pg_pool {
    uv_loop_t *loop;
    uint64_t timeout_ms;
    PQconninfoOption *parsed;
    char *options;
    const char **keywords;
    const char **values;
    struct pg_query *head, *tail;
    size_t queued;
    unsigned handles; /* open uv handles; the pool is freed when they are all closed */
    bool started;
    bool closing;
    int size;
    struct pg_conn conns[];
};

static void conn_connect(struct pg_conn *c);
static void on_poll(uv_poll_t *handle, int status, int events);

static void log_pg_error(enum slk_log_level level, const char *msg, const char *detail)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", detail != NULL ? detail : "");
    /* libpq's messages span lines ("FATAL: ...\nserver closed...\n\tThis..."): keep one. */
    for (char *s = buf; *s != '\0'; s++) {
        if (*s == '\n' || *s == '\t')
            *s = ' ';
    }
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == ' ')
        buf[--n] = '\0';
    slk_log(level, msg, "error", buf, NULL);
}

static void on_notice(void *arg, const char *message)
{
    SLK_UNUSED(arg);
    log_pg_error(SLK_LOG_DEBUG, "pg notice", message);
}

static void pool_free(struct slk_pg_pool *p)
{
    PQconninfoFree(p->parsed);
    free(p->options);
    free(p->keywords);
    free(p->values);
    free(p);
}

static void pool_handle_closed(struct slk_pg_pool *p)
{
    p->handles--;
    if (p->handles == 0 && p->closing)
        pool_free(p);
}

/* ---- queue ---- */

static void queue_push(struct slk_pg_pool *p, struct pg_query *q)
{
    q->prev = p->tail;
    q->next = NULL;
    if (p->tail != NULL)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    p->queued++;
}

static void queue_remove(struct slk_pg_pool *p, struct pg_query *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        p->head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        p->tail = q->prev;
    q->prev = q->next = NULL;
    p->queued--;
}

/* ---- queries ---- */

static void on_query_closed(uv_handle_t *handle)
{
    struct pg_query *q = (struct pg_query *)handle;
    struct slk_pg_pool *p = q->pool;
    free(q);
    pool_handle_closed(p);
}

/* Last thing a caller does with q: the callback may close the pool or query again. */
static void query_deliver(struct pg_query *q, PGresult *res, const char *err)
{
    q->state = QUERY_DONE;
    uv_timer_stop(&q->timer);
    slk_metrics_backend_call(SLK_BACKEND_PG, uv_hrtime() - q->start_ns, err != NULL);
    q->cb(q->data, res, err);
    uv_close((uv_handle_t *)&q->timer, on_query_closed);
}

static void on_query_timer(uv_timer_t *timer);

/* q must already be detached from its connection, if it had one. */
static void query_fail_later(struct pg_query *q, const char *err)
{
    if (q->state == QUERY_QUEUED)
        queue_remove(q->pool, q);
    q->conn = NULL;
    q->state = QUERY_FAILING;
    q->err = err;
    uv_timer_start(&q->timer, on_query_timer, 0, 0);
}

static struct pg_query *query_new(struct slk_pg_pool *p, const char *sql, int nparams, const char *const *values)
{
    size_t sql_len = strlen(sql) + 1;
    size_t size = sizeof(struct pg_query) + (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++) {
        if (values[i] != NULL)
            size += strlen(values[i]) + 1;
    }
    struct pg_query *q = calloc(1, size);
    if (q == NULL)
        return NULL;
    /* One block: the struct, the values array, then the strings it points to. */
    q->values = (const char **)(q + 1);
    char *s = (char *)(q->values + nparams);
    q->sql = s;
    memcpy(s, sql, sql_len);
    s += sql_len;
    for (int i = 0; i < nparams; i++) {
        if (values[i] == NULL)
            continue;
        size_t n = strlen(values[i]) + 1;
        memcpy(s, values[i], n);
        q->values[i] = s;
        s += n;
    }
    q->nparams = nparams;
    q->pool = p;
    return q;
}

/* ---- connections ---- */

static void on_watch_closed(uv_handle_t *handle)
{
    struct pg_watch *w = (struct pg_watch *)handle;
    struct slk_pg_pool *p = w->pool;
    free(w);
    pool_handle_closed(p);
}

static void conn_unwatch(struct pg_conn *c)
{
    if (c->watch == NULL)
        return;
    c->watch->conn = NULL;
    uv_close((uv_handle_t *)&c->watch->handle, on_watch_closed);
    c->watch = NULL;
    c->events = 0;
}

/*
 * libpq may replace its socket while connecting (another host or address,
 * SSL refused), possibly under the same descriptor number, so a fresh poll
 * handle is made whenever fresh is set rather than trusting the number.
 */
static int conn_watch(struct pg_conn *c, int events, bool fresh)
{
    if (fresh)
        conn_unwatch(c);
    if (c->watch == NULL) {
        int fd = PQsocket(c->pg);
        if (fd < 0)
            return SLK_EIO;
        struct pg_watch *w = calloc(1, sizeof(*w));
        if (w == NULL)
            return SLK_ENOMEM;
        if (uv_poll_init_socket(c->pool->loop, &w->handle, fd) != 0) {
            free(w);
            return SLK_EIO;
        }
        w->pool = c->pool;
        w->conn = c;
        c->watch = w;
        c->pool->handles++;
        c->events = 0;
    }
    if (events == c->events)
        return 0;
    if (uv_poll_start(&c->watch->handle, events, on_poll) != 0)
        return SLK_EIO;
    c->events = events;
    return 0;
}

/* Frees the connection's libpq state; the query, if any, must be detached. */
static void conn_drop(struct pg_conn *c)
{
    conn_unwatch(c);
    if (c->result != NULL)
        PQclear(c->result);
    c->result = NULL;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    c->flushing = false;
    c->state = CONN_DOWN;
    uv_timer_stop(&c->timer);
}

static struct pg_query *conn_detach(struct pg_conn *c)
{
    struct pg_query *q = c->query;
    c->query = NULL;
    if (q != NULL)
        q->conn = NULL;
    return q;
}

static bool pool_can_serve(const struct slk_pg_pool *p)
{
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i].state != CONN_DOWN)
            return true;
    }
    return false;
}

/* Queries must not wait for a deadline when no connection is even being tried. */
static void pool_fail_queue_if_down(struct slk_pg_pool *p)
{
    if (pool_can_serve(p))
        return;
    while (p->head != NULL)
        query_fail_later(p->head, slk_pg_err_unavailable);
}

static void on_conn_timer(uv_timer_t *timer);

static void conn_schedule_retry(struct pg_conn *c)
{
    unsigned shift = c->failures < 5 ? c->failures : 5;
    uint64_t delay = (uint64_t)BACKOFF_FIRST_MS << shift;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    c->failures++;
    uv_timer_start(&c->timer, on_conn_timer, delay, 0);
}

static void conn_connect_failed(struct pg_conn *c, const char *why)
{
    log_pg_error(c->failures == 0 ? SLK_LOG_WARN : SLK_LOG_DEBUG, "pg connect failed", why);
    conn_drop(c);
    conn_schedule_retry(c);
    pool_fail_queue_if_down(c->pool);
}

static void conn_lost(struct pg_conn *c)
{
    struct slk_pg_pool *p = c->pool;
    log_pg_error(SLK_LOG_WARN, "pg disconnected", c->pg != NULL ? PQerrorMessage(c->pg) : NULL);
    struct pg_query *q = conn_detach(c);
    bool stable = uv_now(p->loop) - c->up_since_ms >= STABLE_UPTIME_MS;
    conn_drop(c);
    if (q != NULL)
        query_fail_later(q, slk_pg_err_unavailable);
    if (stable)
        conn_connect(c);
    else
        conn_schedule_retry(c);
    pool_fail_queue_if_down(p);
}

static void pool_dispatch(struct slk_pg_pool *p);

static void conn_connected(struct pg_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (conn_watch(c, UV_READABLE, false) != 0) {
        conn_connect_failed(c, "cannot poll the connection");
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = CONN_IDLE;
    c->failures = 0;
    c->up_since_ms = uv_now(c->pool->loop);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", PQbackendPID(c->pg));
    slk_log(SLK_LOG_INFO, "pg connected", "backend_pid", pid, NULL);
    pool_dispatch(c->pool);
}

static void conn_connect_step(struct pg_conn *c)
{
    int events;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_connected(c);
        return;
    case PGRES_POLLING_FAILED:
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_READING:
        events = UV_READABLE;
        break;
    default:
        events = UV_WRITABLE;
        break;
    }
    if (conn_watch(c, events, true) != 0)
        conn_connect_failed(c, "cannot poll the connection");
}

static void conn_connect(struct pg_conn *c)
{
    struct slk_pg_pool *p = c->pool;
    c->pg = PQconnectStartParams(p->keywords, p->values, 0);
    if (c->pg == NULL) {
        conn_connect_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    c->state = CONN_CONNECTING;
    uint64_t deadline = p->timeout_ms > MIN_CONNECT_TIMEOUT_MS ? p->timeout_ms : MIN_CONNECT_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_conn_timer, deadline, 0);
    /* libpq's protocol: before the first PQconnectPoll, wait for writability. */
    if (conn_watch(c, UV_WRITABLE, true) != 0)
        conn_connect_failed(c, "cannot poll the connection");
}

static void on_conn_timer(uv_timer_t *timer)
{
    struct pg_conn *c = timer->data;
    if (c->pool->closing)
        return;
    if (c->state == CONN_DOWN)
        conn_connect(c);
    else if (c->state == CONN_CONNECTING)
        conn_connect_failed(c, "connect timed out");
}

static void conn_flush(struct pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c);
        return;
    }
    c->flushing = r == 1;
    if (conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE, false) != 0)
        conn_lost(c);
}

static void conn_start(struct pg_conn *c, struct pg_query *q)
{
    c->query = q;
    c->state = CONN_BUSY;
    q->conn = c;
    q->state = QUERY_RUNNING;
    if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->values, NULL, NULL, 0)) {
        conn_lost(c);
        return;
    }
    conn_flush(c);
}

static struct pg_conn *pool_idle_conn(struct slk_pg_pool *p)
{
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i].state == CONN_IDLE)
            return &p->conns[i];
    }
    return NULL;
}

static void pool_dispatch(struct slk_pg_pool *p)
{
    while (p->head != NULL && !p->closing) {
        struct pg_conn *c = pool_idle_conn(p);
        if (c == NULL)
            return;
        struct pg_query *q = p->head;
        queue_remove(p, q);
        conn_start(c, q);
    }
}

/* Keeps the first error result, else the latest one: that is the query's outcome. */
static void conn_keep_result(struct pg_conn *c, PGresult *r)
{
    if (c->result != NULL && PQresultStatus(c->result) == PGRES_FATAL_ERROR) {
        PQclear(r);
        return;
    }
    if (c->result != NULL)
        PQclear(c->result);
    c->result = r;
}

static bool is_copy(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

static void conn_reset(struct pg_conn *c)
{
    slk_log(SLK_LOG_INFO, "pg connection reset", NULL);
    conn_detach(c);
    conn_drop(c);
    conn_connect(c);
}

static void conn_read_results(struct pg_conn *c)
{
    bool complete = false;
    while (!complete && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            complete = true;
        } else if (is_copy(r)) {
            /* COPY is not supported; libpq would return this result forever. */
            PQclear(r);
            struct pg_query *q = c->query;
            conn_reset(c);
            query_fail_later(q, slk_pg_err_unavailable);
            return;
        } else {
            conn_keep_result(c, r);
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c);
        return;
    }
    if (!complete)
        return;

    struct pg_query *q = conn_detach(c);
    PGresult *res = c->result;
    c->result = NULL;
    c->state = CONN_IDLE;
    /* Earlier queries go first: the callback may queue more. */
    pool_dispatch(c->pool);
    const char *sqlstate = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* We never send cancel requests: a cancel is our statement_timeout firing. */
    if (sqlstate != NULL && strcmp(sqlstate, SQLSTATE_QUERY_CANCELED) == 0)
        query_deliver(q, NULL, slk_pg_err_timeout);
    else if (res == NULL)
        query_deliver(q, NULL, slk_pg_err_unavailable);
    else
        query_deliver(q, res, NULL);
    PQclear(res);
}

static void conn_drain_idle(struct pg_conn *c)
{
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
    if (PQstatus(c->pg) == CONNECTION_BAD)
        conn_lost(c);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct pg_watch *w = (struct pg_watch *)handle;
    struct pg_conn *c = w->conn;
    if (c == NULL)
        return;
    /* On a socket error too: libpq reads the cause from the socket and may try another address. */
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    /* libuv stops a poll handle that reports an error: the socket is done for. */
    if (status < 0 || ((events & UV_READABLE) && !PQconsumeInput(c->pg))) {
        conn_lost(c);
        return;
    }
    if (c->flushing) {
        conn_flush(c);
        if (c->state == CONN_DOWN || c->state == CONN_CONNECTING)
            return;
    }
    if (c->state == CONN_BUSY)
        conn_read_results(c);
    else
        conn_drain_idle(c);
}

/* ---- pool ---- */

static int pool_build_params(struct slk_pg_pool *p, const char *conninfo)
{
    char *errmsg = NULL;
    p->parsed = PQconninfoParse(conninfo, &errmsg);
    if (p->parsed == NULL) {
        log_pg_error(SLK_LOG_ERROR, "invalid postgres conninfo", errmsg != NULL ? errmsg : "out of memory");
        PQfreemem(errmsg);
        return SLK_EINVAL;
    }
    size_t n = 0;
    const char *user_options = NULL;
    bool has_app_name = false;
    for (PQconninfoOption *o = p->parsed; o->keyword != NULL; o++) {
        n++;
        if (o->val != NULL && strcmp(o->keyword, "options") == 0)
            user_options = o->val;
        if (o->val != NULL && strcmp(o->keyword, "application_name") == 0)
            has_app_name = true;
    }
    /*
     * The server enforces our deadline too, so a dropped query stops holding
     * locks, and a little earlier (a tenth, at most 250 ms): a statement that
     * started at once is stopped by Postgres before we stop waiting, so it
     * can never commit after its caller was told 503.
     */
    uint64_t margin = p->timeout_ms / 10 < 250 ? p->timeout_ms / 10 : 250;
    size_t len = (user_options != NULL ? strlen(user_options) : 0) + 64;
    p->options = malloc(len);
    p->keywords = calloc(n + 3, sizeof(char *));
    p->values = calloc(n + 3, sizeof(char *));
    if (p->options == NULL || p->keywords == NULL || p->values == NULL)
        return SLK_ENOMEM;
    snprintf(p->options, len, "%s%s-c statement_timeout=%llu", user_options != NULL ? user_options : "",
             user_options != NULL ? " " : "", (unsigned long long)(p->timeout_ms - margin));
    size_t k = 0;
    for (PQconninfoOption *o = p->parsed; o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "options") == 0)
            continue;
        p->keywords[k] = o->keyword;
        p->values[k++] = o->val;
    }
    p->keywords[k] = "options";
    p->values[k++] = p->options;
    if (!has_app_name) {
        p->keywords[k] = "application_name";
        p->values[k++] = "slotlockd";
    }
    return 0;
}

struct slk_pg_pool *slk_pg_pool_create(uv_loop_t *loop, const struct slk_pg_options *opts)
{
    if (loop == NULL || opts == NULL || opts->conninfo == NULL || opts->size < 1 || opts->size > MAX_POOL_SIZE)
        return NULL;
    struct slk_pg_pool *p = calloc(1, sizeof(*p) + (size_t)opts->size * sizeof(struct pg_conn));
    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->size = opts->size;
    p->timeout_ms = opts->query_timeout_ms != 0 ? opts->query_timeout_ms : SLK_DEFAULT_PG_TIMEOUT_MS;
    if (pool_build_params(p, opts->conninfo) != 0)
        goto fail;
    for (int i = 0; i < p->size; i++) {
        struct pg_conn *c = &p->conns[i];
        c->pool = p;
        c->state = CONN_DOWN;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        p->handles++;
    }
    return p;
fail:
    pool_free(p);
    return NULL;
}

void slk_pg_pool_start(struct slk_pg_pool *p)
{
    if (p->started || p->closing)
        return;
    p->started = true;
    for (int i = 0; i < p->size; i++)
        conn_connect(&p->conns[i]);
}

int slk_pg_pool_ready(const struct slk_pg_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i].state == CONN_IDLE || p->conns[i].state == CONN_BUSY)
            n++;
    }
    return n;
}

static void on_conn_timer_closed(uv_handle_t *handle)
{
    struct pg_conn *c = handle->data;
    pool_handle_closed(c->pool);
}

void slk_pg_pool_close(struct slk_pg_pool *p)
{
    if (p->closing)
        return;
    p->closing = true;
    while (p->head != NULL)
        query_fail_later(p->head, slk_pg_err_shutdown);
    for (int i = 0; i < p->size; i++) {
        struct pg_conn *c = &p->conns[i];
        struct pg_query *q = conn_detach(c);
        if (q != NULL)
            query_fail_later(q, slk_pg_err_shutdown);
        if (c->state != CONN_DOWN)
            slk_log(SLK_LOG_INFO, "pg disconnecting", NULL);
        conn_drop(c);
        uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
    }
}

int slk_pg_query(struct slk_pg_pool *p, const char *sql, int nparams, const char *const *values, slk_pg_cb cb,
                 void *data)
{
    if (p == NULL || sql == NULL || cb == NULL || nparams < 0 || nparams > MAX_PARAMS ||
        (nparams > 0 && values == NULL))
        return SLK_EINVAL;
    if (p->closing)
        return SLK_ECLOSED;
    struct pg_query *q = query_new(p, sql, nparams, values);
    if (q == NULL)
        return SLK_ENOMEM;
    q->cb = cb;
    q->data = data;
    q->start_ns = uv_hrtime();
    uv_timer_init(p->loop, &q->timer);
    p->handles++;
    if (!pool_can_serve(p)) {
        q->state = QUERY_FAILING;
        query_fail_later(q, slk_pg_err_unavailable);
        return 0;
    }
    if (p->queued >= SLK_PG_MAX_QUEUE) {
        q->state = QUERY_FAILING;
        query_fail_later(q, slk_pg_err_busy);
        return 0;
    }
    q->state = QUERY_QUEUED;
    queue_push(p, q);
    uv_timer_start(&q->timer, on_query_timer, p->timeout_ms, 0);
    pool_dispatch(p);
    return 0;
}

static void on_query_timer(uv_timer_t *timer)
{
    struct pg_query *q = (struct pg_query *)timer;
    struct pg_conn *c;
    switch (q->state) {
    case QUERY_FAILING:
        query_deliver(q, NULL, q->err);
        return;
    case QUERY_QUEUED:
        queue_remove(q->pool, q);
        query_deliver(q, NULL, slk_pg_err_timeout);
        return;
    case QUERY_RUNNING:
        /* Dropping the connection is the only non-blocking way to abandon the query. */
        c = q->conn;
        conn_reset(c);
        query_deliver(q, NULL, slk_pg_err_timeout);
        return;
    case QUERY_DONE:
        return;
    }
}
