#include "loadgen.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

/* Reconnections allowed per connection after the server closed it or it broke; bounds a loop against a dead server. */
#define RECONNECTS_PER_CONN 4
#define READ_BUF_BYTES 65536

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING, C_DEAD };

struct lg;

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    llhttp_t parser;
    struct lg *lg;
    enum conn_state state;
    int reconnects;
    bool prepared;   /* req holds a prepared request in wbuf[cur] */
    bool replied;    /* a whole reply was parsed in the current read */
    bool keep_alive; /* of the last reply */
    bool in_ready;   /* on the ready stack (rate mode) */
    int cur;
    struct bench_request req;  /* the prepared request */
    struct bench_request sent; /* the request in flight */
    uint64_t intended_ns;
    size_t body_len;
    char wbuf[2][BENCH_REQ_MAX];
    char body[BENCH_BODY_MAX];
};

struct lg {
    const struct bench_loadgen_config *cfg;
    struct bench_result *res;
    uv_loop_t loop;
    uv_timer_t end, drain, connect_timer;
    /* Rate mode: libuv timers have 1 ms resolution, too coarse for a schedule of intended send times; a timerfd
     * armed at the next intended time (CLOCK_MONOTONIC, as uv_hrtime) wakes the loop to the microsecond. */
    uv_poll_t sched;
    int sched_fd;
    struct sockaddr_storage addr;
    struct conn *conns;
    struct conn **ready; /* rate mode: idle connections with a prepared request */
    int n_ready;
    int connected, settled; /* connect phase */
    bool released, stopping, finished, failed;
    uint64_t t0, t_last, next_intended, interval_ns;
    uint64_t issued, in_flight;
    llhttp_settings_t settings;
};

static char read_buf[READ_BUF_BYTES];

static void conn_start(struct conn *c);
static void lg_maybe_finish(struct lg *lg);
static void lg_stop(struct lg *lg);
static void lg_release(struct lg *lg);

static bool may_issue(const struct lg *lg)
{
    return lg->released && !lg->stopping && !lg->failed && lg->issued < lg->cfg->requests;
}

static void close_handle(uv_handle_t *h, uv_close_cb cb)
{
    if (!uv_is_closing(h))
        uv_close(h, cb);
}

static void conn_prepare(struct conn *c)
{
    struct lg *lg = c->lg;
    if (c->prepared || lg->failed)
        return;
    memset(&c->req, 0, sizeof(c->req));
    c->req.buf = c->wbuf[c->cur];
    c->req.conn = (int)(c - lg->conns);
    int rc = lg->cfg->prepare(lg->cfg->ud, &c->req);
    if (rc < 0) {
        fprintf(stderr, "slotbench: could not build a request\n");
        lg->failed = true;
        lg_stop(lg);
        return;
    }
    c->prepared = rc == 0;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct lg *lg = c->lg;
    if (!lg->released || lg->stopping || c->reconnects >= RECONNECTS_PER_CONN) {
        c->state = C_DEAD;
        if (!lg->released)
            lg->settled++;
        if (!lg->released && lg->settled == lg->cfg->connections)
            lg_release(lg);
        lg_maybe_finish(lg);
        return;
    }
    c->reconnects++;
    conn_start(c);
}

/*
 * Takes a closing connection off the rate schedule's ready stack. A
 * reconnected connection is pushed again once it is up, so leaving its old
 * entry there would let the stack grow past its room (one entry per
 * connection): the server closes connections that sat unused (the
 * schedule keeps picking the same few) once its request timeout passes.
 */
static void ready_remove(struct lg *lg, struct conn *c)
{
    if (!c->in_ready)
        return;
    for (int i = 0; i < lg->n_ready; i++) {
        if (lg->ready[i] == c) {
            memmove(&lg->ready[i], &lg->ready[i + 1], (size_t)(lg->n_ready - i - 1) * sizeof(*lg->ready));
            lg->n_ready--;
            break;
        }
    }
    c->in_ready = false;
}

/* The connection broke or the server closed it: a request in flight failed; close (and maybe reconnect). */
static void conn_fail(struct conn *c)
{
    struct lg *lg = c->lg;
    ready_remove(lg, c);
    if (c->state == C_BUSY) {
        lg->res->errors++;
        lg->in_flight--;
        if (lg->cfg->fail != NULL)
            lg->cfg->fail(lg->cfg->ud, &c->sent);
    }
    if (c->state == C_CLOSING || c->state == C_DEAD)
        return;
    c->state = C_CLOSING;
    close_handle((uv_handle_t *)&c->tcp, on_conn_closed);
    lg_maybe_finish(lg);
}

static void on_write(uv_write_t *w, int status)
{
    if (status < 0)
        conn_fail(w->data);
}

static void conn_send(struct conn *c, uint64_t intended_ns)
{
    struct lg *lg = c->lg;
    c->sent = c->req;
    c->prepared = false;
    c->state = C_BUSY;
    c->intended_ns = intended_ns;
    c->body_len = 0;
    lg->issued++;
    lg->in_flight++;
    uv_buf_t buf = uv_buf_init(c->sent.buf, (unsigned int)c->sent.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        conn_fail(c);
        return;
    }
    if ((size_t)n < c->sent.len) {
        buf = uv_buf_init(c->sent.buf + n, (unsigned int)(c->sent.len - (size_t)n));
        c->write_req.data = c;
        if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
            conn_fail(c);
            return;
        }
    }
    if (lg->issued >= lg->cfg->requests) {
        lg_stop(lg);
        return;
    }
    /* The other buffer is free: the request that used it got its reply a whole round ago. */
    c->cur ^= 1;
    conn_prepare(c);
}

/* Rate mode: send every request whose intended time has come, as far as idle connections allow. */
static void lg_pump(struct lg *lg)
{
    uint64_t now = uv_hrtime();
    while (may_issue(lg) && lg->next_intended <= now && lg->n_ready > 0) {
        struct conn *c = lg->ready[--lg->n_ready];
        c->in_ready = false;
        if (c->state != C_IDLE || !c->prepared)
            continue;
        conn_send(c, lg->next_intended);
        lg->next_intended += lg->interval_ns;
    }
    if (may_issue(lg) && lg->n_ready > 0 && lg->sched_fd >= 0) {
        struct itimerspec its = {{0, 0},
                                 {(time_t)(lg->next_intended / 1000000000u), (long)(lg->next_intended % 1000000000u)}};
        if (timerfd_settime(lg->sched_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
            fprintf(stderr, "slotbench: timerfd_settime failed\n");
    }
}

/* An idle connection: send now (closed loop), or queue it for the schedule (rate). */
static void conn_dispatch(struct conn *c)
{
    struct lg *lg = c->lg;
    if (c->state != C_IDLE)
        return;
    if (!c->prepared)
        conn_prepare(c);
    if (!c->prepared || !may_issue(lg)) {
        lg_maybe_finish(lg);
        return;
    }
    if (lg->cfg->rate <= 0) {
        conn_send(c, uv_hrtime());
        return;
    }
    if (!c->in_ready) {
        c->in_ready = true;
        lg->ready[lg->n_ready++] = c;
    }
    lg_pump(lg);
}

static void lg_finish(struct lg *lg)
{
    if (lg->finished)
        return;
    lg->finished = true;
    lg->stopping = true;
    if (lg->sched_fd >= 0)
        close_handle((uv_handle_t *)&lg->sched, NULL);
    close_handle((uv_handle_t *)&lg->end, NULL);
    close_handle((uv_handle_t *)&lg->drain, NULL);
    close_handle((uv_handle_t *)&lg->connect_timer, NULL);
    for (int i = 0; i < lg->cfg->connections; i++) {
        struct conn *c = &lg->conns[i];
        if (c->state == C_BUSY) {
            /* Still unanswered at the drain bound: counted as an error (a timeout). */
            lg->res->errors++;
            lg->in_flight--;
            if (lg->cfg->fail != NULL)
                lg->cfg->fail(lg->cfg->ud, &c->sent);
        }
        if (c->state == C_IDLE || c->state == C_BUSY || c->state == C_CONNECTING) {
            c->state = C_CLOSING;
            close_handle((uv_handle_t *)&c->tcp, on_conn_closed);
        }
    }
}

static void lg_maybe_finish(struct lg *lg)
{
    if (!lg->released || lg->finished || lg->in_flight > 0)
        return;
    if (lg->failed || lg->stopping || lg->issued >= lg->cfg->requests) {
        lg_finish(lg);
        return;
    }
    /* Nothing in flight and no connection has anything to send: the phase is over. */
    for (int i = 0; i < lg->cfg->connections; i++) {
        const struct conn *c = &lg->conns[i];
        if (c->state == C_CONNECTING || c->state == C_CLOSING || (c->state == C_IDLE && c->prepared))
            return;
    }
    lg_finish(lg);
}

static void on_drain_timeout(uv_timer_t *t)
{
    lg_finish(t->data);
}

static void lg_stop(struct lg *lg)
{
    if (lg->stopping)
        return;
    lg->stopping = true;
    if (!lg->released || lg->in_flight == 0) {
        lg_finish(lg);
        return;
    }
    uv_timer_start(&lg->drain, on_drain_timeout, (uint64_t)(lg->cfg->drain_seconds * 1000.0), 0);
}

static void on_end(uv_timer_t *t)
{
    lg_stop(t->data);
}

static void on_sched(uv_poll_t *p, int status, int events)
{
    struct lg *lg = p->data;
    (void)events;
    uint64_t expirations;
    if (status == 0 && read(lg->sched_fd, &expirations, sizeof(expirations)) < 0) {
        /* EAGAIN: woken for nothing; the pump below re-arms anyway. */
    }
    lg_pump(lg);
}

static void record_reply(struct conn *c, int status)
{
    struct lg *lg = c->lg;
    struct bench_result *res = lg->res;
    uint64_t now = uv_hrtime();
    uint64_t us = now > c->intended_ns ? (now - c->intended_ns) / 1000 : 0;
    bench_histogram_record(&res->latency, us);
    if (res->series != NULL && now >= lg->t0) {
        uint64_t sec = (now - lg->t0) / 1000000000u;
        if (sec < BENCH_MAX_SECONDS) {
            bench_histogram_record(&res->series[sec], us);
            if ((int)sec + 1 > res->series_len)
                res->series_len = (int)sec + 1;
        }
    }
    res->requests++;
    if (status >= 0 && status < 600)
        res->status_counts[status]++;
    lg->t_last = now;
    lg->in_flight--;
    lg->cfg->reply(lg->cfg->ud, &c->sent, status, c->sent.want_body ? c->body : NULL, c->body_len);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!c->sent.want_body)
        return 0;
    size_t room = BENCH_BODY_MAX - c->body_len;
    size_t n = len < room ? len : room;
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->state != C_BUSY)
        return -1; /* a reply nobody asked for */
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    c->state = C_IDLE;
    c->replied = true;
    record_reply(c, (int)llhttp_get_status_code(p));
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* One buffer for all connections: a read callback consumes all it was given before returning. */
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0 || c->state == C_CLOSING || c->state == C_DEAD)
        return;
    if (nread < 0) {
        conn_fail(c);
        return;
    }
    c->replied = false;
    if (llhttp_execute(&c->parser, buf->base, (size_t)nread) != HPE_OK) {
        conn_fail(c);
        return;
    }
    if (!c->replied)
        return;
    if (!c->keep_alive) {
        conn_fail(c);
        return;
    }
    conn_dispatch(c);
}

static void lg_release(struct lg *lg)
{
    if (lg->released || lg->finished)
        return;
    lg->released = true;
    if (lg->connected == 0) {
        lg->failed = true;
        lg_finish(lg);
        return;
    }
    uv_update_time(&lg->loop);
    lg->t0 = uv_hrtime();
    lg->t_last = lg->t0;
    lg->next_intended = lg->t0;
    uint64_t ms = (uint64_t)(lg->cfg->seconds * 1000.0);
    uv_timer_start(&lg->end, on_end, ms > 0 ? ms : 1, 0);
    if (lg->sched_fd >= 0)
        uv_poll_start(&lg->sched, UV_READABLE, on_sched);
    for (int i = 0; i < lg->cfg->connections && !lg->finished; i++)
        conn_dispatch(&lg->conns[i]);
    lg_maybe_finish(lg);
}

static void on_connect_timer(uv_timer_t *t)
{
    lg_release(t->data);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct lg *lg = c->lg;
    if (c->state != C_CONNECTING)
        return;
    if (status < 0) {
        if (!lg->released && lg->connected == 0 && lg->settled + 1 == lg->cfg->connections)
            fprintf(stderr, "slotbench: cannot connect to %s:%d: %s\n", lg->cfg->host, lg->cfg->port,
                    uv_strerror(status));
        c->state = C_CLOSING;
        close_handle((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    c->state = C_IDLE;
    llhttp_init(&c->parser, HTTP_RESPONSE, &lg->settings);
    c->parser.data = c;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_fail(c);
        return;
    }
    if (lg->released) {
        conn_dispatch(c);
        return;
    }
    lg->connected++;
    lg->settled++;
    conn_prepare(c);
    if (lg->settled == lg->cfg->connections)
        lg_release(lg);
}

static void conn_start(struct conn *c)
{
    struct lg *lg = c->lg;
    c->state = C_CONNECTING;
    uv_tcp_init(&lg->loop, &c->tcp);
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    c->connect_req.data = c;
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&lg->addr, on_connect) != 0) {
        c->state = C_CLOSING;
        close_handle((uv_handle_t *)&c->tcp, on_conn_closed);
    }
}

static int resolve(struct lg *lg)
{
    const struct bench_loadgen_config *cfg = lg->cfg;
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&lg->addr) == 0)
        return 0;
    if (uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&lg->addr) == 0)
        return 0;
    fprintf(stderr, "slotbench: %s is not a numeric IP address\n", cfg->host);
    return -1;
}

int bench_loadgen_run(const struct bench_loadgen_config *cfg, struct bench_result *res)
{
    struct lg *lg = calloc(1, sizeof(*lg));
    if (lg == NULL)
        return -1;
    lg->cfg = cfg;
    lg->res = res;
    lg->sched_fd = -1;
    lg->interval_ns = cfg->rate > 0 ? (uint64_t)(1e9 / cfg->rate) : 0;
    if (lg->interval_ns == 0 && cfg->rate > 0)
        lg->interval_ns = 1;
    int rc = -1;
    if (resolve(lg) != 0 || uv_loop_init(&lg->loop) != 0) {
        free(lg);
        return -1;
    }
    lg->conns = calloc((size_t)cfg->connections, sizeof(*lg->conns));
    lg->ready = calloc((size_t)cfg->connections, sizeof(*lg->ready));
    if (lg->conns == NULL || lg->ready == NULL)
        goto done;
    llhttp_settings_init(&lg->settings);
    lg->settings.on_body = on_body;
    lg->settings.on_message_complete = on_message_complete;
    if (cfg->rate > 0) {
        lg->sched_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (lg->sched_fd < 0 || uv_poll_init(&lg->loop, &lg->sched, lg->sched_fd) != 0) {
            fprintf(stderr, "slotbench: cannot create the rate scheduler (timerfd)\n");
            if (lg->sched_fd >= 0)
                close(lg->sched_fd);
            lg->sched_fd = -1;
            goto done;
        }
        lg->sched.data = lg;
    }
    uv_timer_init(&lg->loop, &lg->end);
    uv_timer_init(&lg->loop, &lg->drain);
    uv_timer_init(&lg->loop, &lg->connect_timer);
    lg->end.data = lg->drain.data = lg->connect_timer.data = lg;
    uv_timer_start(&lg->connect_timer, on_connect_timer, (uint64_t)(cfg->connect_seconds * 1000.0), 0);
    for (int i = 0; i < cfg->connections; i++) {
        lg->conns[i].lg = lg;
        conn_start(&lg->conns[i]);
    }
    uv_run(&lg->loop, UV_RUN_DEFAULT);
    res->seconds = (double)(lg->t_last - lg->t0) / 1e9;
    rc = lg->failed ? -1 : 0;
done:
    if (lg->sched_fd >= 0)
        close(lg->sched_fd);
    if (uv_loop_close(&lg->loop) != 0)
        fprintf(stderr, "slotbench: event loop closed with handles open\n");
    free(lg->conns);
    free(lg->ready);
    free(lg);
    return rc;
}
