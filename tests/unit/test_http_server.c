/*
 * http_server.c end to end over loopback: a server on its own loop thread
 * with an echoing dispatch callback, and this thread as a plain blocking
 * socket client. Every receive has a timeout, so a bug fails, never hangs.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <arpa/inet.h>

#include "slk/http.h"
#include "slk/response.h"

enum fixture_cmd { CMD_NONE = 0, CMD_STOP_ACCEPTING, CMD_STATS, CMD_CLOSE };

struct fixture {
    uv_loop_t loop;
    uv_async_t wake;
    uv_thread_t thread;
    uv_sem_t sem;
    struct slk_http_server *srv;
    int port;
    atomic_int cmd;
    atomic_size_t open_conns, inflight, late_replies;
};

static struct fixture *fx; /* the dispatch callback has no user pointer */

struct delayed {
    uv_timer_t timer;
    struct slk_request *req;
    const char *body;
};

static void on_delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_delay(uv_timer_t *t)
{
    struct delayed *d = t->data;
    slk_response_send(d->req, 200, "text/plain", d->body, strlen(d->body));
    atomic_fetch_add(&fx->late_replies, 1);
    uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void reply_later(struct slk_request *req, const char *body, uint64_t ms)
{
    struct delayed *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->req = req;
    d->body = body;
    uv_timer_init(&fx->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_delay, ms, 0);
}

static bool path_is(const struct slk_request *req, const char *p)
{
    return req->path.len == strlen(p) && memcmp(req->path.ptr, p, req->path.len) == 0;
}

static void dispatch(struct slk_request *req)
{
    if (path_is(req, "/slow")) {
        reply_later(req, "slow", 100);
        return;
    }
    if (path_is(req, "/late")) {
        reply_later(req, "late", 300);
        return;
    }
    if (path_is(req, "/unavailable")) {
        slk_reply_unavailable(req, "redis");
        return;
    }
    if (path_is(req, "/json")) {
        json_t *data = json_pack("{s:s}", "k", "v");
        slk_reply_ok(req, 201, "created", data);
        return;
    }
    char body[2048];
    int n = snprintf(body, sizeof(body), "%s %s%s%s %s", slk_method_name(req->method), req->path.ptr,
                     req->query.len ? "?" : "", req->query.ptr, req->body);
    if (slk_response_header(req, "X-Echo", "yes") != 0)
        n = 0;
    slk_response_send(req, 200, "text/plain", body, (size_t)n);
}

static void on_server_closed(void *data)
{
    struct fixture *f = data;
    uv_close((uv_handle_t *)&f->wake, NULL);
}

static void on_wake(uv_async_t *a)
{
    struct fixture *f = a->data;
    int cmd = atomic_exchange(&f->cmd, CMD_NONE);
    if (cmd == CMD_STOP_ACCEPTING) {
        slk_http_server_stop_accepting(f->srv);
    } else if (cmd == CMD_STATS) {
        atomic_store(&f->open_conns, slk_http_server_open_connections(f->srv));
        atomic_store(&f->inflight, slk_http_server_inflight_requests(f->srv));
    } else if (cmd == CMD_CLOSE) {
        slk_http_server_close(f->srv, on_server_closed, f);
    }
    uv_sem_post(&f->sem);
}

static void run_loop(void *arg)
{
    struct fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void send_cmd(enum fixture_cmd cmd)
{
    atomic_store(&fx->cmd, cmd);
    uv_async_send(&fx->wake);
    uv_sem_wait(&fx->sem);
}

static void start_server(const struct slk_http_limits *lim)
{
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_sem_init(&fx->sem, 0), 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->wake, on_wake), 0);
    fx->wake.data = fx;
    int fd = slk_listen_socket("127.0.0.1", 0, 64);
    assert_true(fd >= 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    fx->port = ntohs(sin.sin_port);
    fx->srv = slk_http_server_create(&fx->loop, NULL, lim, dispatch);
    assert_non_null(fx->srv);
    assert_int_equal(slk_http_server_listen(fx->srv, fd), 0);
    /* The server holds its own dup; keeping ours would queue connections after the server stops accepting. */
    close(fd);
    assert_int_equal(uv_thread_create(&fx->thread, run_loop, fx), 0);
}

static void stop_server(void)
{
    send_cmd(CMD_CLOSE);
    uv_thread_join(&fx->thread);
    /* Every handle the server opened must be closed by now. */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    uv_sem_destroy(&fx->sem);
    free(fx);
    fx = NULL;
}

static const struct slk_http_limits test_limits = {
    .max_header_bytes = 8192,
    .max_body_bytes = 1024,
    .request_timeout_ms = 5000,
    .idle_timeout_ms = 5000,
    .max_connections = 100,
};

/* ---- client side ---- */

struct client {
    int fd;
    char buf[256 * 1024];
    size_t len;
};

struct reply {
    int status;
    char head[4096];
    char body[8192];
    size_t body_len;
};

static struct client *client_open(void)
{
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return c;
}

static void client_close(struct client *c)
{
    close(c->fd);
    free(c);
}

static void client_send(struct client *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

static void client_send_str(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Receives more bytes; 0 on EOF or reset, -1 on timeout. */
static int client_fill(struct client *c)
{
    assert_true(c->len < sizeof(c->buf));
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
        return 1;
    }
    if (n == 0 || errno == ECONNRESET)
        return 0;
    return -1;
}

static const char *find_header(const struct reply *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':')
            return l + 2 + n + 2;
    }
    return NULL;
}

static bool header_is(const struct reply *r, const char *name, const char *value)
{
    const char *v = find_header(r, name);
    return v != NULL && strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == '\r';
}

/* Reads one reply; false when the connection ended first. */
static bool client_read_reply(struct client *c, struct reply *r, bool head_request)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    while (end == NULL) {
        if (client_fill(c) <= 0)
            return false;
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    assert_true(head_len < sizeof(r->head));
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    const char *cl = find_header(r, "Content-Length");
    size_t body_len = cl != NULL && !head_request ? strtoul(cl, NULL, 10) : 0;
    assert_true(body_len < sizeof(r->body));
    while (c->len < head_len + body_len) {
        if (client_fill(c) <= 0)
            return false;
    }
    memcpy(r->body, c->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return true;
}

static void assert_eof(struct client *c)
{
    assert_int_equal(c->len, 0);
    assert_int_equal(client_fill(c), 0);
}

static struct reply *reply_new(void)
{
    struct reply *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    return r;
}

/* ---- tests ---- */

static void test_pipelined_replies_keep_order(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    /* The first is answered 100 ms later, the others at once: replies must still come in request order. */
    client_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /fast?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "slow");
    assert_true(header_is(r, "Connection", "keep-alive"));
    assert_true(header_is(r, "Content-Type", "text/plain"));
    assert_true(header_is(r, "Content-Length", "4"));
    assert_non_null(find_header(r, "Date"));
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /fast?x=1 ");
    assert_true(header_is(r, "X-Echo", "yes"));
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "POST /echo hello");
    /* And the connection is still usable. */
    client_send_str(c, "GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /again ");
    free(r);
    client_close(c);
    stop_server();
}

struct bulk_sender {
    struct client *c;
    char *data;
    size_t len;
};

static void *bulk_send(void *arg)
{
    struct bulk_sender *s = arg;
    size_t off = 0;
    while (off < s->len) {
        ssize_t n = send(s->c->fd, s->data + off, s->len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    return NULL;
}

static void test_pipelining_beyond_the_buffer_cap(void **state)
{
    (void)state;
    enum { N = 1200 };
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    /* About 300 KiB of pipelined requests behind a slow one: more than SLK_MAX_PIPELINED_BYTES. */
    char pad[200];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    size_t cap = (size_t)N * 300 + 64;
    char *data = malloc(cap);
    assert_non_null(data);
    size_t o = (size_t)snprintf(data, cap, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(data + o, cap - o, "GET /n?i=%d HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n", i, pad);
    assert_true(o > SLK_MAX_PIPELINED_BYTES * 2);
    struct bulk_sender s = {c, data, o};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bulk_send, &s), 0);
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "slow");
    for (int i = 0; i < N; i++) {
        char expected[64];
        snprintf(expected, sizeof(expected), "GET /n?i=%d ", i);
        assert_true(client_read_reply(c, r, false));
        assert_string_equal(r->body, expected);
    }
    pthread_join(t, NULL);
    free(data);
    free(r);
    client_close(c);
    stop_server();
}

static void test_connection_close_rules(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct reply *r = reply_new();

    struct client *c = client_open();
    client_send_str(c, "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 200);
    assert_true(header_is(r, "Connection", "close"));
    assert_eof(c);
    client_close(c);

    c = client_open();
    client_send_str(c, "GET /b HTTP/1.0\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_true(header_is(r, "Connection", "close"));
    assert_string_equal(r->body, "GET /b ");
    assert_eof(c);
    client_close(c);

    c = client_open();
    client_send_str(c, "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_true(header_is(r, "Connection", "keep-alive"));
    client_send_str(c, "GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /d ");
    client_close(c);

    free(r);
    stop_server();
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /g HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(c, r, true));
    assert_int_equal(r->status, 200);
    assert_true(header_is(r, "Content-Length", "8")); /* "HEAD /h " */
    /* If a body had been sent, this would read it instead of the next reply. */
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /g ");
    free(r);
    client_close(c);
    stop_server();
}

static void test_expect_100_continue(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 100);
    client_send_str(c, "12345");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "POST /up 12345");
    /* Too big: refused at once instead of invited. */
    client_send_str(c, "POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 413);
    assert_non_null(strstr(r->body, "\"code\":\"payload_too_large\""));
    assert_eof(c);
    free(r);
    client_close(c);
    stop_server();
}

static void test_request_timeout_is_408(void **state)
{
    (void)state;
    struct slk_http_limits lim = test_limits;
    lim.request_timeout_ms = 200;
    start_server(&lim);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "GET /never-finished HTTP/1.1\r\nHost: t\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 408);
    assert_true(header_is(r, "Content-Type", "application/json; charset=utf-8"));
    assert_true(header_is(r, "Connection", "close"));
    assert_string_equal(r->body, "{\"success\":false,\"message\":\"Request not received in time\","
                                 "\"error\":{\"code\":\"request_timeout\",\"details\":{}}}");
    assert_eof(c);
    client_close(c);

    /* Dribbling bytes does not extend the deadline: it counts from the first byte. */
    c = client_open();
    client_send_str(c, "GET /x HTTP/1.1\r\n");
    for (int i = 0; i < 5; i++) {
        usleep(60 * 1000);
        send(c->fd, "X", 1, MSG_NOSIGNAL);
    }
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 408);
    client_close(c);

    /* A connection that never sends anything is dropped on the request deadline, silently, not after idle_timeout. */
    c = client_open();
    assert_eof(c);
    client_close(c);
    free(r);
    stop_server();
}

static void test_idle_keep_alive_closes_silently(void **state)
{
    (void)state;
    struct slk_http_limits lim = test_limits;
    lim.idle_timeout_ms = 200;
    start_server(&lim);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 200);
    assert_eof(c); /* no 408 for a connection that owes us nothing */
    client_close(c);
    free(r);
    stop_server();
}

static void test_parse_errors_reply_and_close(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct reply *r = reply_new();

    struct client *c = client_open();
    client_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->body, "\"code\":\"bad_request\""));
    assert_eof(c);
    client_close(c);

    /* The body keeps coming after the 413: the reply must survive it rather than be reset away. */
    c = client_open();
    size_t big = 200 * 1024;
    char *data = malloc(big + 128);
    assert_non_null(data);
    int n = snprintf(data, 128, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", big);
    memset(data + n, 'b', big);
    struct bulk_sender s = {c, data, (size_t)n + big};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bulk_send, &s), 0);
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 413);
    pthread_join(t, NULL);
    free(data);
    client_close(c);

    /* A valid request before the bad one is still answered, in order. */
    c = client_open();
    client_send_str(c, "GET /ok HTTP/1.1\r\nHost: t\r\n\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /ok ");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 400);
    assert_eof(c);
    client_close(c);

    free(r);
    stop_server();
}

static void test_max_connections(void **state)
{
    (void)state;
    struct slk_http_limits lim = test_limits;
    lim.max_connections = 2;
    start_server(&lim);
    struct reply *r = reply_new();
    struct client *a = client_open(), *b = client_open();
    client_send_str(a, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    client_send_str(b, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(a, r, false));
    assert_true(client_read_reply(b, r, false));
    struct client *c = client_open();
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 503);
    assert_true(header_is(r, "Retry-After", "1"));
    assert_non_null(strstr(r->body, "\"code\":\"unavailable\""));
    assert_eof(c);
    client_close(c);
    send_cmd(CMD_STATS);
    assert_int_equal(atomic_load(&fx->open_conns), 2);
    /* The first two still work. */
    client_send_str(a, "GET /a2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(a, r, false));
    assert_string_equal(r->body, "GET /a2 ");
    client_close(a);
    client_close(b);
    free(r);
    stop_server();
}

static void wait_for_stats(size_t open_conns, size_t inflight)
{
    for (int i = 0; i < 200; i++) {
        send_cmd(CMD_STATS);
        if (atomic_load(&fx->open_conns) == open_conns && atomic_load(&fx->inflight) == inflight)
            return;
        usleep(10 * 1000);
    }
    fail_msg("stats: open %zu inflight %zu", atomic_load(&fx->open_conns), atomic_load(&fx->inflight));
}

static void test_reply_after_peer_reset(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    client_send_str(c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for_stats(1, 1);
    /* A reset, not a FIN: the server closes the connection while its request is at the handler... */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    client_close(c);
    wait_for_stats(0, 0);
    assert_int_equal(atomic_load(&fx->late_replies), 0);
    /* ...which answers later into the void (ASan would catch a use after free). */
    for (int i = 0; i < 100 && atomic_load(&fx->late_replies) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&fx->late_replies), 1);
    stop_server();
}

static void test_half_closed_peer_still_gets_replies(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "slow");
    assert_true(client_read_reply(c, r, false));
    assert_string_equal(r->body, "GET /next ");
    assert_true(header_is(r, "Connection", "close"));
    assert_eof(c);
    client_close(c);
    free(r);
    stop_server();
}

static void test_close_with_request_in_flight(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    client_send_str(c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for_stats(1, 1);
    /* Closing the server while a handler still holds a request; its late reply is dropped. */
    stop_server();
    client_close(c);
}

static void test_drain(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct reply *r = reply_new();
    struct client *idle = client_open(), *busy = client_open();
    client_send_str(idle, "GET /i HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(idle, r, false));
    client_send_str(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for_stats(2, 1);
    send_cmd(CMD_STOP_ACCEPTING);
    /* The idle keep-alive connection is closed, the busy one gets its reply, then is closed. */
    assert_eof(idle);
    assert_true(client_read_reply(busy, r, false));
    assert_string_equal(r->body, "slow");
    assert_true(header_is(r, "Connection", "close"));
    assert_eof(busy);
    /* Nobody accepts any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    close(fd);
    client_close(idle);
    client_close(busy);
    free(r);
    stop_server();
}

static void test_json_replies(void **state)
{
    (void)state;
    start_server(&test_limits);
    struct client *c = client_open();
    struct reply *r = reply_new();
    client_send_str(c, "GET /json HTTP/1.1\r\nHost: t\r\n\r\nGET /unavailable HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 201);
    assert_true(header_is(r, "Content-Type", "application/json; charset=utf-8"));
    assert_string_equal(r->body, "{\"success\":true,\"message\":\"created\",\"data\":{\"k\":\"v\"}}");
    assert_true(client_read_reply(c, r, false));
    assert_int_equal(r->status, 503);
    assert_true(header_is(r, "Retry-After", "1"));
    assert_string_equal(r->body, "{\"success\":false,\"message\":\"redis is temporarily unavailable, retry shortly\","
                                 "\"error\":{\"code\":\"unavailable\",\"details\":{}}}");
    free(r);
    client_close(c);
    stop_server();
}

static void test_listen_socket_reuseport(void **state)
{
    (void)state;
    int a = slk_listen_socket("127.0.0.1", 0, 16);
    assert_true(a >= 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(a, (struct sockaddr *)&sin, &sl), 0);
    /* A second worker binds its own socket to the same port. */
    int b = slk_listen_socket("127.0.0.1", ntohs(sin.sin_port), 16);
    assert_true(b >= 0);
    close(a);
    close(b);
    assert_int_equal(slk_listen_socket("no.such.host.invalid", 0, 16), SLK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_replies_keep_order),
        cmocka_unit_test(test_pipelining_beyond_the_buffer_cap),
        cmocka_unit_test(test_connection_close_rules),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_expect_100_continue),
        cmocka_unit_test(test_request_timeout_is_408),
        cmocka_unit_test(test_idle_keep_alive_closes_silently),
        cmocka_unit_test(test_parse_errors_reply_and_close),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_reply_after_peer_reset),
        cmocka_unit_test(test_half_closed_peer_still_gets_replies),
        cmocka_unit_test(test_close_with_request_in_flight),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_json_replies),
        cmocka_unit_test(test_listen_socket_reuseport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
