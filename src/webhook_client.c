/*
 * A minimal HTTP/1.1 client for outgoing webhooks: one POST per connection
 * (Connection: close), resolved with uv_getaddrinfo so the loop never
 * blocks, the response's status line read with llhttp, the whole exchange
 * under one deadline. Only the status matters: the body is never read.
 */
#include <ctype.h>
#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outbox_internal.h"
#include "slk/auth.h"

#define SIGNATURE_BYTES 128

struct slk_webhook_request {
    const struct slk_webhook_target *t;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    llhttp_t parser;
    char *out;
    size_t out_len;
    char in[4096];
    size_t head_bytes;
    int status; /* set once the response head is parsed */
    bool done;  /* the outcome is decided (callback ran or was cancelled) */
    bool cancelled;
    bool tcp_open;
    bool resolving; /* the resolver request has not called back */
    int alive;      /* open handles and the resolver request: freed when none is left */
    slk_webhook_cb cb;
    void *data;
};

/* URL */

void slk_webhook_target_clear(struct slk_webhook_target *t)
{
    free(t->host);
    free(t->host_header);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

static bool port_valid(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* Splits the authority into host (brackets of an IPv6 literal removed) and port. */
static int parse_authority(struct slk_webhook_target *t, const char *a, size_t len)
{
    const char *host = a, *port = NULL;
    size_t host_len = len;
    if (len > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (close == NULL)
            return SLK_EINVAL;
        host = a + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < a + len) {
            if (close[1] != ':')
                return SLK_EINVAL;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', len);
        if (colon != NULL) {
            host_len = (size_t)(colon - a);
            port = colon + 1;
        }
    }
    size_t port_len = port != NULL ? (size_t)(a + len - port) : 0;
    if (host_len == 0 || memchr(host, '@', host_len) != NULL || (port != NULL && !port_valid(port, port_len)))
        return SLK_EINVAL;
    t->host = strndup(host, host_len);
    t->host_header = strndup(a, len);
    snprintf(t->port, sizeof(t->port), "%.*s", port != NULL ? (int)port_len : 2, port != NULL ? port : "80");
    return t->host != NULL && t->host_header != NULL ? 0 : SLK_ENOMEM;
}

int slk_webhook_target_parse(struct slk_webhook_target *t, const char *url)
{
    memset(t, 0, sizeof(*t));
    if (url == NULL || strncmp(url, "http://", 7) != 0)
        return SLK_EINVAL;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
            return SLK_EINVAL; /* nothing may break the request line */
    int rc = parse_authority(t, a, alen);
    if (rc == 0) {
        const char *rest = a + alen;
        t->path = rest[0] == '/' ? strdup(rest) : malloc(strlen(rest) + 2);
        if (t->path != NULL && rest[0] != '/')
            sprintf(t->path, "/%s", rest); /* "http://h?q" → "/?q" */
        rc = t->path != NULL ? 0 : SLK_ENOMEM;
    }
    if (rc != 0)
        slk_webhook_target_clear(t);
    return rc;
}

/* Lifetime */

static void release(struct slk_webhook_request *r)
{
    if (--r->alive > 0)
        return;
    free(r->out);
    free(r);
}

static void on_closed(uv_handle_t *h)
{
    release(h->data);
}

/*
 * Decides the outcome once: reports it (unless cancelled) and closes
 * everything. Callbacks of requests still queued on the handles (connect,
 * write) run before the close callbacks and see done.
 */
static void finish(struct slk_webhook_request *r, int status, const char *err)
{
    if (r->done)
        return;
    r->done = true;
    if (!r->cancelled)
        r->cb(r->data, status, err);
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_closed);
    if (r->tcp_open) {
        r->tcp_open = false;
        uv_close((uv_handle_t *)&r->tcp, on_closed);
    }
    /* A resolver request still running is cancelled; its callback releases it either way. */
    if (r->resolving)
        uv_cancel((uv_req_t *)&r->gai);
}

void slk_webhook_cancel(struct slk_webhook_request *r)
{
    r->cancelled = true;
    finish(r, 0, "cancelled");
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, 0, "timeout");
}

/* Response */

static int on_headers_complete(llhttp_t *p)
{
    struct slk_webhook_request *r = p->data;
    r->status = p->status_code;
    return HPE_PAUSED; /* the status is all we wait for */
}

static const llhttp_settings_t response_settings = {
    .on_headers_complete = on_headers_complete,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct slk_webhook_request *r = h->data;
    *buf = uv_buf_init(r->in, sizeof(r->in));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct slk_webhook_request *r = s->data;
    if (r->done)
        return;
    if (n == UV_EOF) {
        finish(r, 0, "connection closed before a response");
        return;
    }
    if (n < 0) {
        finish(r, 0, uv_strerror((int)n));
        return;
    }
    r->head_bytes += (size_t)n;
    llhttp_errno_t e = llhttp_execute(&r->parser, buf->base, (size_t)n);
    if (r->status > 0) {
        finish(r, r->status, NULL);
        return;
    }
    if (e != HPE_OK)
        finish(r, 0, "malformed response");
    else if (r->head_bytes > SLK_WEBHOOK_MAX_RESPONSE_HEAD)
        finish(r, 0, "response head too large");
}

/* Request */

static void on_written(uv_write_t *wr, int status)
{
    struct slk_webhook_request *r = wr->data;
    if (status < 0)
        finish(r, 0, uv_strerror(status));
}

static void on_connected(uv_connect_t *c, int status)
{
    struct slk_webhook_request *r = c->data;
    if (r->done)
        return;
    if (status < 0) {
        finish(r, 0, uv_strerror(status));
        return;
    }
    uv_buf_t buf = uv_buf_init(r->out, (unsigned int)r->out_len);
    r->write.data = r;
    int rc = uv_write(&r->write, (uv_stream_t *)&r->tcp, &buf, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (rc != 0)
        finish(r, 0, uv_strerror(rc));
}

/* An IPv4 address first: "localhost" often resolves to ::1 before 127.0.0.1, where receivers usually listen. */
static const struct addrinfo *pick_address(const struct addrinfo *list)
{
    for (const struct addrinfo *a = list; a != NULL; a = a->ai_next)
        if (a->ai_family == AF_INET)
            return a;
    return list;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct slk_webhook_request *r = req->data;
    r->resolving = false;
    if (r->done) {
        uv_freeaddrinfo(res);
        release(r);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        finish(r, 0, status < 0 ? uv_strerror(status) : "host not found");
        release(r);
        return;
    }
    int rc = uv_tcp_init(r->timer.loop, &r->tcp);
    if (rc == 0) {
        r->tcp.data = r;
        r->tcp_open = true;
        r->alive++;
        r->connect.data = r;
        rc = uv_tcp_connect(&r->connect, &r->tcp, pick_address(res)->ai_addr, on_connected);
    }
    uv_freeaddrinfo(res);
    if (rc != 0)
        finish(r, 0, uv_strerror(rc));
    release(r); /* the resolver request is over */
}

static char *format_request(const struct slk_webhook_target *t, const char *event_id, const char *body, size_t body_len,
                            const char *signature, size_t *out_len)
{
    static const char fmt[] = "POST %s HTTP/1.1\r\n"
                              "Host: %s\r\n"
                              "User-Agent: slotlock\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: %zu\r\n"
                              "Connection: close\r\n"
                              "X-Signature: %s\r\n"
                              "X-Slotlock-Event-Id: %s\r\n"
                              "\r\n";
    int head = snprintf(NULL, 0, fmt, t->path, t->host_header, body_len, signature, event_id);
    if (head < 0)
        return NULL;
    char *out = malloc((size_t)head + 1 + body_len);
    if (out == NULL)
        return NULL;
    snprintf(out, (size_t)head + 1, fmt, t->path, t->host_header, body_len, signature, event_id);
    memcpy(out + head, body, body_len);
    *out_len = (size_t)head + body_len;
    return out;
}

struct slk_webhook_request *slk_webhook_post(uv_loop_t *loop, const struct slk_webhook_target *t, const char *event_id,
                                             const char *body, size_t body_len, const unsigned char *secret,
                                             size_t secret_len, uint64_t timeout_ms, slk_webhook_cb cb, void *data)
{
    char signature[SIGNATURE_BYTES];
    /* Signed with the real time, not the shiftable test clock: the receiver checks t against its own clock. */
    if (slk_signature_make(signature, sizeof(signature), body, body_len, secret, secret_len, (int64_t)time(NULL)) != 0)
        return NULL;
    struct slk_webhook_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->out = format_request(t, event_id, body, body_len, signature, &r->out_len);
    if (r->out == NULL)
        goto fail;
    r->t = t;
    r->cb = cb;
    r->data = data;
    llhttp_init(&r->parser, HTTP_RESPONSE, &response_settings);
    r->parser.data = r;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->gai.data = r;
    if (uv_getaddrinfo(loop, &r->gai, on_resolved, t->host, t->port, &hints) != 0)
        goto fail;
    r->resolving = true;
    r->alive = 2; /* the resolver request and the timer */
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
    return r;
fail:
    free(r->out);
    free(r);
    return NULL;
}
