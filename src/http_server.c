/*
 * Connections of one worker loop: accept, read, one request at a time,
 * keep-alive, timeouts, and an orderly close.
 *
 * A connection is freed only when nothing refers to it any more: its two
 * handles (closed together), the request in flight at a handler, each
 * queued write and the pending shutdown all hold a reference. So a handler
 * may answer long after the peer vanished: the reply is dropped, nothing is
 * touched after free.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"
#include "slk/log.h"
#include "slk/metrics.h"
#include "slk/routes.h"

#define READ_BUF_SIZE (64 * 1024)
/* After our last reply, how long we keep reading (and discarding) so that closing does not reset the reply. */
#define LINGER_MS 2000
/* Replies queued to a peer that does not read them: stop taking its pipelined requests beyond this. */
#define MAX_WRITE_BACKLOG (1024 * 1024)

static const char continue_reply[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum conn_state {
    CONN_OPEN,      /* reading and answering requests */
    CONN_FINISHING, /* last reply queued, waiting for the write side to shut down */
    CONN_LINGER,    /* write side shut; discarding input until EOF or LINGER_MS */
    CONN_CLOSING,   /* handles closing */
};

struct slk_http_server {
    uv_loop_t *loop;
    struct slk_worker *worker;
    struct slk_http_limits limits;
    slk_http_dispatch_cb dispatch;
    uv_tcp_t listener;
    bool listener_closed;
    bool listening;
    bool draining;
    bool closing;
    size_t open_conns;
    size_t inflight;
    struct slk_conn *conns;
    void (*done_cb)(void *);
    void *done_data;
    char rbuf[READ_BUF_SIZE];
};

struct slk_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct slk_http_server *srv; /* NULL once the handles are closed */
    struct slk_conn *prev, *next;
    struct slk__http_parser parser;
    char *in; /* received bytes not parsed yet (pipelined behind the request in flight) */
    size_t in_off, in_len, in_cap;
    struct slk_request *inflight;
    uv_shutdown_t shutdown_req;
    unsigned refs;
    int open_handles;
    enum conn_state state;
    bool reading;
    bool processing;
    bool peer_eof;
    bool served_any;     /* at least one request dispatched */
    bool streaming;      /* the request in flight is answering with a stream */
    bool in_stream_call; /* inside stream_start/stream_write: report a failure by return value, not on_abort */
};

struct conn_write {
    uv_write_t req;
    struct slk_conn *conn;
    char *owned; /* freed once written; NULL for static bytes */
};

static void conn_process(struct slk_conn *c);

static void conn_unref(struct slk_conn *c)
{
    if (--c->refs > 0)
        return;
    slk__http_parser_cleanup(&c->parser);
    free(c->in);
    free(c);
}

static void server_maybe_done(struct slk_http_server *srv)
{
    if (!srv->closing || !srv->listener_closed || srv->open_conns > 0)
        return;
    void (*done_cb)(void *) = srv->done_cb;
    void *done_data = srv->done_data;
    free(srv);
    if (done_cb != NULL)
        done_cb(done_data);
}

static void conn_unlink(struct slk_conn *c)
{
    struct slk_http_server *srv = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct slk_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct slk_http_server *srv = c->srv;
    if (srv != NULL) {
        conn_unlink(c);
        srv->open_conns--;
        /* A request still at its handler no longer counts: its reply will be dropped. */
        if (c->inflight != NULL)
            srv->inflight--;
        c->srv = NULL;
        slk_metrics_connections_add(-1);
        server_maybe_done(srv);
    }
    conn_unref(c);
}

/* A stream's peer went away: tell its handler once. */
static void conn_abort_stream(struct slk_conn *c)
{
    struct slk_request *req = c->inflight;
    if (!c->streaming || req == NULL || req->on_abort == NULL || c->in_stream_call)
        return;
    void (*on_abort)(struct slk_request *) = req->on_abort;
    req->on_abort = NULL;
    on_abort(req);
}

static void conn_close(struct slk_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    conn_abort_stream(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct slk_conn *c = h->data;
    SLK_UNUSED(hint);
    buf->base = c->srv->rbuf;
    buf->len = sizeof(c->srv->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_set_reading(struct slk_conn *c, bool want)
{
    if (want == c->reading)
        return;
    if (want && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    if (!want)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = want;
}

static void on_write(uv_write_t *req, int status)
{
    struct conn_write *w = (struct conn_write *)req;
    struct slk_conn *c = w->conn;
    free(w->owned);
    free(w);
    if (status < 0)
        conn_close(c);
    else if (c->state == CONN_OPEN)
        conn_process(c);
    conn_unref(c);
}

/* Queues bytes the socket did not take; owned ones are freed once written or dropped. */
static void conn_queue(struct slk_conn *c, const char *data, size_t len, char *owned)
{
    struct conn_write *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(owned);
        conn_close(c);
        return;
    }
    w->conn = c;
    w->owned = owned;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(owned);
        free(w);
        conn_close(c);
        return;
    }
    c->refs++;
}

/*
 * Writes data (owned, or static bytes when owned is NULL) followed by lent
 * bytes, which are read only during the call; queues what the socket does
 * not take at once. Most replies fit the socket buffer: written here they
 * cost no write request, and libuv does not re-arm the socket's watcher (an
 * epoll_ctl per drained write queue). libuv refuses a direct write while
 * earlier ones are queued, so the order holds. Only lent bytes left over are
 * copied: a large kept reply is then never copied at all.
 */
static void conn_write(struct slk_conn *c, const char *data, size_t len, char *owned, const char *lent, size_t lent_len)
{
    if (c->state == CONN_CLOSING) {
        free(owned);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init((char *)data, (unsigned int)len),
                        uv_buf_init((char *)lent, (unsigned int)lent_len)};
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, lent_len > 0 ? 2 : 1);
    if (n < 0 && n != UV_EAGAIN) {
        free(owned);
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0, total = len + lent_len;
    if (done == total) {
        free(owned);
    } else if (lent_len == 0) {
        conn_queue(c, data + done, len - done, owned);
    } else {
        size_t data_left = done < len ? len - done : 0, lent_done = done > len ? done - len : 0;
        char *rest = malloc(total - done);
        if (rest != NULL) {
            memcpy(rest, data + (len - data_left), data_left);
            memcpy(rest + data_left, lent + lent_done, lent_len - lent_done);
        }
        free(owned);
        if (rest == NULL)
            conn_close(c);
        else
            conn_queue(c, rest, total - done, rest);
    }
}

static void on_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct slk_conn *c = req->data;
    if (c->state == CONN_FINISHING) {
        if (status < 0 || c->peer_eof) {
            conn_close(c);
        } else {
            c->state = CONN_LINGER;
            uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
            conn_set_reading(c, true);
        }
    }
    conn_unref(c);
}

/*
 * Ends the connection after what is queued has been written. Closing at
 * once could make the kernel answer unread input with a reset that destroys
 * our reply in flight (e.g. a 413 while the client still sends the body).
 */
static void conn_finish(struct slk_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_FINISHING;
    conn_set_reading(c, false);
    /* A peer that never reads our last reply must not pin the connection forever. */
    uv_timer_start(&c->timer, on_timer, c->srv->limits.idle_timeout_ms, 0);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    c->refs++;
}

/* The HTTP layer's own refusals: reply, count, close. */
static void conn_fail(struct slk_conn *c, int status, const char *message)
{
    uint64_t start = slk__http_parser_start_ns(&c->parser);
    slk_metrics_request(SLK_ROUTE_NONE, status, start != 0 ? uv_hrtime() - start : 0);
    size_t len = 0;
    char *reply = slk__http_error_reply(status, message, &len);
    if (reply != NULL)
        conn_write(c, reply, len, reply, NULL, 0);
    conn_finish(c);
}

static void conn_update_timer(struct slk_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (c->inflight != NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    const struct slk_http_limits *lim = &c->srv->limits;
    if (slk__http_parser_in_request(&c->parser)) {
        uint64_t elapsed_ms = (uv_hrtime() - slk__http_parser_start_ns(&c->parser)) / 1000000u;
        uint64_t left = elapsed_ms < lim->request_timeout_ms ? lim->request_timeout_ms - elapsed_ms : 0;
        uv_timer_start(&c->timer, on_timer, left, 0);
    } else {
        /* A connection that has not sent a single request yet gets no longer than a request would. */
        uint64_t idle = lim->idle_timeout_ms;
        if (!c->served_any && lim->request_timeout_ms < idle)
            idle = lim->request_timeout_ms;
        uv_timer_start(&c->timer, on_timer, idle, 0);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct slk_conn *c = t->data;
    if (c->state == CONN_LINGER || c->state == CONN_FINISHING) {
        conn_close(c);
    } else if (c->state == CONN_OPEN && c->inflight == NULL) {
        if (slk__http_parser_in_request(&c->parser))
            conn_fail(c, 408, NULL);
        else
            conn_close(c); /* idle keep-alive: nothing to say */
    }
}

static int conn_buffer(struct slk_conn *c, const char *data, size_t len)
{
    if (c->in_off > 0 && c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap * 2 > c->in_len + len ? c->in_cap * 2 : c->in_len + len;
        char *nb = realloc(c->in, cap);
        if (nb == NULL)
            return SLK_ENOMEM;
        c->in = nb;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    return 0;
}

/* Parsed bytes are dropped; an empty buffer is freed, so idle connections hold no input memory. */
static void conn_compact(struct slk_conn *c)
{
    if (c->in_off == c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_off = c->in_len = c->in_cap = 0;
    } else if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct slk_conn *c = s->data;
    if (nread == 0)
        return;
    if (c->state == CONN_LINGER) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->peer_eof = true;
        conn_set_reading(c, false);
        if (c->streaming) {
            conn_abort_stream(c);
            return;
        }
    } else if (conn_buffer(c, buf->base, (size_t)nread) != 0) {
        conn_close(c);
        return;
    }
    conn_process(c);
}

static void conn_dispatch(struct slk_conn *c)
{
    struct slk_http_server *srv = c->srv;
    struct slk_request *req = slk__http_parser_take(&c->parser);
    req->conn = c;
    req->worker = srv->worker;
    if (srv->draining)
        req->keep_alive = false;
    c->inflight = req;
    c->served_any = true;
    c->refs++;
    srv->inflight++;
    uv_timer_stop(&c->timer);
    srv->dispatch(req);
}

static bool write_backlogged(struct slk_conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > MAX_WRITE_BACKLOG;
}

static void conn_after_process(struct slk_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (c->peer_eof && c->inflight == NULL && c->in_len == 0) {
        /* A half-sent request will never complete; complete ones have been answered. */
        if (slk__http_parser_in_request(&c->parser))
            conn_close(c);
        else
            conn_finish(c);
        return;
    }
    conn_set_reading(c, !c->peer_eof && c->in_len < SLK_MAX_PIPELINED_BYTES);
    conn_update_timer(c);
}

/*
 * Parses buffered bytes until a request is handed to a handler or the
 * bytes run out. A handler answering synchronously re-enters through
 * slk__conn_reply(); the loop below then simply goes on.
 */
static void conn_process(struct slk_conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    c->refs++;
    while (c->state == CONN_OPEN && c->inflight == NULL && c->in_off < c->in_len && !write_backlogged(c)) {
        size_t used = 0;
        enum slk__http_event ev = slk__http_parser_feed(&c->parser, c->in + c->in_off, c->in_len - c->in_off, &used);
        c->in_off += used;
        if (ev == SLK__HTTP_CONTINUE) {
            /* RFC 9110 10.1.1: no need to invite a body that is already arriving. */
            if (c->in_off == c->in_len)
                conn_write(c, continue_reply, sizeof(continue_reply) - 1, NULL, NULL, 0);
        } else if (ev == SLK__HTTP_REQUEST) {
            conn_dispatch(c);
        } else if (ev == SLK__HTTP_ERROR) {
            conn_fail(c, c->parser.error_status, c->parser.error_message);
        }
    }
    conn_compact(c);
    c->processing = false;
    conn_after_process(c);
    conn_unref(c);
}

bool slk__conn_keep_alive(const struct slk_conn *c, const struct slk_request *req)
{
    if (c == NULL || c->state != CONN_OPEN || c->srv == NULL || c->srv->draining || !req->keep_alive)
        return false;
    /* A peer that half-closed still gets answers to the requests it pipelined before; the last one says close. */
    return !c->peer_eof || c->in_off < c->in_len;
}

void slk__conn_reply(struct slk_conn *c, struct slk_request *req, char *buf, size_t len, const char *lent,
                     size_t lent_len, bool keep_alive)
{
    if (c->inflight == req) {
        c->inflight = NULL;
        if (c->srv != NULL)
            c->srv->inflight--;
    }
    bool sent = c->state == CONN_OPEN && buf != NULL;
    if (sent)
        conn_write(c, buf, len, buf, lent, lent != NULL ? lent_len : 0);
    else
        free(buf);
    /* Only now: the lent body may live in the request. */
    slk__http_request_free(req);
    if (sent && keep_alive)
        conn_process(c);
    else if (sent)
        conn_finish(c);
    else if (c->state == CONN_OPEN)
        conn_close(c);
    conn_unref(c);
}

int slk_response_stream_start(struct slk_request *req, const char *content_type,
                              void (*on_abort)(struct slk_request *req))
{
    struct slk_conn *c = req->conn;
    if (c == NULL || c->state != CONN_OPEN || c->inflight != req)
        return SLK_ECLOSED;
    size_t len = 0;
    char *head = slk__format_stream_head(req, content_type, &len);
    if (head == NULL)
        return SLK_ENOMEM;
    c->in_stream_call = true;
    conn_write(c, head, len, head, NULL, 0);
    /* Keep reading: the only way to notice a peer that leaves is its EOF. */
    if (c->state == CONN_OPEN)
        conn_set_reading(c, !c->peer_eof);
    c->in_stream_call = false;
    if (c->state != CONN_OPEN)
        return SLK_ECLOSED; /* still an ordinary request: the caller replies (into the void) */
    slk_metrics_request(req->route_id, 200, uv_hrtime() - req->start_ns);
    req->on_abort = on_abort;
    c->streaming = true;
    return 0;
}

int slk_response_stream_write(struct slk_request *req, const char *data, size_t len)
{
    struct slk_conn *c = req->conn;
    if (c == NULL || c->state != CONN_OPEN || !c->streaming)
        return SLK_ECLOSED;
    if (write_backlogged(c))
        return SLK_EBUSY;
    char *copy = malloc(len);
    if (copy == NULL)
        return SLK_ENOMEM;
    memcpy(copy, data, len);
    c->in_stream_call = true;
    conn_write(c, copy, len, copy, NULL, 0);
    c->in_stream_call = false;
    return c->state == CONN_OPEN ? 0 : SLK_ECLOSED;
}

void slk_response_stream_end(struct slk_request *req)
{
    struct slk_conn *c = req->conn;
    c->streaming = false;
    if (c->inflight == req) {
        c->inflight = NULL;
        if (c->srv != NULL)
            c->srv->inflight--;
    }
    slk__http_request_free(req);
    if (c->state == CONN_OPEN)
        conn_finish(c);
    conn_unref(c);
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

/* Over max_connections: accept (or the backlog fills), say 503 if the socket takes it, close. */
static void server_reject(struct slk_http_server *srv)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return;
    uv_tcp_init(srv->loop, t);
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t) == 0) {
        size_t len = 0;
        char *reply = slk__http_error_reply(503, NULL, &len);
        if (reply != NULL) {
            uv_buf_t b = uv_buf_init(reply, (unsigned int)len);
            (void)uv_try_write((uv_stream_t *)t, &b, 1);
            free(reply);
        }
        slk_metrics_request(SLK_ROUTE_NONE, 503, 0);
    }
    uv_close((uv_handle_t *)t, on_reject_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct slk_http_server *srv = server->data;
    if (status < 0) {
        slk_log(SLK_LOG_WARN, "accept failed", "error", uv_strerror(status), NULL);
        return;
    }
    if (srv->open_conns >= srv->limits.max_connections) {
        server_reject(srv);
        return;
    }
    struct slk_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        server_reject(srv);
        return;
    }
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->srv = srv;
    c->refs = 1; /* the handles */
    c->open_handles = 2;
    c->state = CONN_OPEN;
    slk__http_parser_init(&c->parser, &srv->limits);
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->open_conns++;
    slk_metrics_connections_add(1);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_set_reading(c, true);
    conn_update_timer(c);
}

int slk_listen_socket(const char *host, int port, int backlog)
{
    char port_str[16];
    snprintf(port_str, sizeof(port_str), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
        host = NULL;
    if (getaddrinfo(host, port_str, &hints, &res) != 0 || res == NULL)
        return SLK_EINVAL;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
        goto fail;
    if (listen(fd, backlog) != 0)
        goto fail;
    freeaddrinfo(res);
    return fd;

fail:
    slk_log(SLK_LOG_ERROR, "cannot listen", "host", host != NULL ? host : "*", "port", port_str, "error",
            strerror(errno), NULL);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return SLK_EIO;
}

struct slk_http_server *slk_http_server_create(uv_loop_t *loop, struct slk_worker *worker,
                                               const struct slk_http_limits *limits, slk_http_dispatch_cb dispatch)
{
    struct slk_http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->worker = worker;
    srv->limits = *limits;
    srv->dispatch = dispatch;
    /* Initialised now so that closing always has one handle to wait for, and done_cb is never synchronous. */
    if (uv_tcp_init(loop, &srv->listener) != 0) {
        free(srv);
        return NULL;
    }
    srv->listener.data = srv;
    return srv;
}

int slk_http_server_listen(struct slk_http_server *srv, int fd)
{
    if (srv->listening || srv->draining)
        return SLK_EINVAL;
    int dfd = dup(fd);
    if (dfd < 0)
        return SLK_EIO;
    if (uv_tcp_open(&srv->listener, dfd) != 0) {
        close(dfd);
        return SLK_EIO;
    }
    /* The handle owns dfd now: uv_close will close it. */
    if (uv_listen((uv_stream_t *)&srv->listener, SOMAXCONN, on_connection) != 0)
        return SLK_EIO;
    srv->listening = true;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct slk_http_server *srv = h->data;
    srv->listener_closed = true;
    server_maybe_done(srv);
}

static void server_close_listener(struct slk_http_server *srv)
{
    if (uv_is_closing((uv_handle_t *)&srv->listener))
        return;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

static bool conn_idle(const struct slk_conn *c)
{
    return c->state == CONN_OPEN && c->inflight == NULL && c->in_len == 0 && !slk__http_parser_in_request(&c->parser);
}

void slk_http_server_stop_accepting(struct slk_http_server *srv)
{
    if (srv->draining)
        return;
    srv->draining = true;
    server_close_listener(srv);
    for (struct slk_conn *c = srv->conns; c != NULL; c = c->next) {
        if (conn_idle(c))
            conn_finish(c);
    }
}

size_t slk_http_server_open_connections(const struct slk_http_server *srv)
{
    return srv->open_conns;
}

size_t slk_http_server_inflight_requests(const struct slk_http_server *srv)
{
    return srv->inflight;
}

void slk_http_server_close(struct slk_http_server *srv, void (*done_cb)(void *), void *done_data)
{
    srv->done_cb = done_cb;
    srv->done_data = done_data;
    srv->draining = true;
    srv->closing = true;
    server_close_listener(srv);
    for (struct slk_conn *c = srv->conns; c != NULL; c = c->next)
        conn_close(c);
    /* After stop_accepting the listener may already be closed and no connection left: nothing else would
     * free the server then. */
    server_maybe_done(srv);
}
