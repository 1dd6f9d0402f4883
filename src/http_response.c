/*
 * Everything a handler touches on a request: header and query lookups,
 * reply headers and the reply itself, plus the HTTP layer's own error
 * replies. The bytes go out through http_server.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <strings.h>
#include <time.h>

#include "http_internal.h"
#include "slk/metrics.h"
#include "slk/routes.h"

#define RESP_HEADERS_MAX (16 * 1024)
#define STATUS_LINE_AND_FIXED_HEADERS 256

const char *slk_method_name(enum slk_method m)
{
    switch (m) {
    case SLK_METHOD_GET:
        return "GET";
    case SLK_METHOD_HEAD:
        return "HEAD";
    case SLK_METHOD_POST:
        return "POST";
    case SLK_METHOD_PUT:
        return "PUT";
    case SLK_METHOD_DELETE:
        return "DELETE";
    case SLK_METHOD_PATCH:
        return "PATCH";
    case SLK_METHOD_OPTIONS:
        return "OPTIONS";
    case SLK_METHOD_OTHER:
        break;
    }
    return "OTHER";
}

#define SLK_HTTP_STATUS_MAP(XX)                                                                                        \
    XX(100, "Continue")                                                                                                \
    XX(200, "OK")                                                                                                      \
    XX(201, "Created")                                                                                                 \
    XX(202, "Accepted")                                                                                                \
    XX(204, "No Content")                                                                                              \
    XX(301, "Moved Permanently")                                                                                       \
    XX(302, "Found")                                                                                                   \
    XX(304, "Not Modified")                                                                                            \
    XX(400, "Bad Request")                                                                                             \
    XX(401, "Unauthorized")                                                                                            \
    XX(403, "Forbidden")                                                                                               \
    XX(404, "Not Found")                                                                                               \
    XX(405, "Method Not Allowed")                                                                                      \
    XX(406, "Not Acceptable")                                                                                          \
    XX(408, "Request Timeout")                                                                                         \
    XX(409, "Conflict")                                                                                                \
    XX(410, "Gone")                                                                                                    \
    XX(411, "Length Required")                                                                                         \
    XX(412, "Precondition Failed")                                                                                     \
    XX(413, "Payload Too Large")                                                                                       \
    XX(414, "URI Too Long")                                                                                            \
    XX(415, "Unsupported Media Type")                                                                                  \
    XX(417, "Expectation Failed")                                                                                      \
    XX(422, "Unprocessable Entity")                                                                                    \
    XX(423, "Locked")                                                                                                  \
    XX(428, "Precondition Required")                                                                                   \
    XX(429, "Too Many Requests")                                                                                       \
    XX(431, "Request Header Fields Too Large")                                                                         \
    XX(500, "Internal Server Error")                                                                                   \
    XX(501, "Not Implemented")                                                                                         \
    XX(502, "Bad Gateway")                                                                                             \
    XX(503, "Service Unavailable")                                                                                     \
    XX(504, "Gateway Timeout")                                                                                         \
    XX(505, "HTTP Version Not Supported")

const char *slk_http_status_text(int status)
{
    switch (status) {
#define SLK__STATUS_CASE(code, text)                                                                                   \
    case code:                                                                                                         \
        return text;
        SLK_HTTP_STATUS_MAP(SLK__STATUS_CASE)
#undef SLK__STATUS_CASE
    default:
        return "Unknown";
    }
}

const struct slk_str *slk_request_header(const struct slk_request *req, const char *lower_name)
{
    size_t n = strlen(lower_name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct slk_header *h = &req->headers[i];
        if (h->name.len == n && strncasecmp(h->name.ptr, lower_name, n) == 0)
            return &h->value;
    }
    return NULL;
}

/*
 * application/x-www-form-urlencoded decoding into dst (room for len + 1).
 * Malformed escapes, and "%00" which would silently cut a C string short,
 * are kept literally so that validation downstream sees and refuses them.
 */
static size_t form_decode(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '+') {
            dst[o++] = ' ';
            continue;
        }
        if (c == '%' && i + 2 < len) {
            int hi = OPENSSL_hexchar2int((unsigned char)src[i + 1]);
            int lo = OPENSSL_hexchar2int((unsigned char)src[i + 2]);
            if (hi >= 0 && lo >= 0 && (hi | lo) != 0) {
                dst[o++] = (char)(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    return o;
}

static bool key_matches(const char *key, size_t key_len, const char *name)
{
    char buf[128];
    if (key_len >= sizeof(buf))
        return false;
    size_t n = form_decode(buf, key, key_len);
    return n == strlen(name) && memcmp(buf, name, n) == 0;
}

char *slk_request_query_param(const struct slk_request *req, const char *name)
{
    const char *q = req->query.ptr;
    const char *end = q + req->query.len;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pair_end - q));
        const char *key_end = eq != NULL ? eq : pair_end;
        if (key_matches(q, (size_t)(key_end - q), name)) {
            const char *v = eq != NULL ? eq + 1 : pair_end;
            size_t vlen = (size_t)(pair_end - v);
            char *out = malloc(vlen + 1);
            if (out == NULL)
                return NULL;
            form_decode(out, v, vlen);
            return out;
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return NULL;
}

static bool is_token_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int slk_response_header(struct slk_request *req, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (nlen == 0)
        return SLK_EINVAL;
    for (size_t i = 0; i < nlen; i++) {
        if (!is_token_char(name[i]))
            return SLK_EINVAL;
    }
    /* A CR or LF in a value would let whoever controls it write their own headers (response splitting). */
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return SLK_EINVAL;
    }
    size_t need = req->resp_headers_len + nlen + vlen + 4;
    if (need > RESP_HEADERS_MAX)
        return SLK_ETOOBIG;
    if (need > req->resp_headers_cap) {
        size_t cap = req->resp_headers_cap ? req->resp_headers_cap : 256;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(req->resp_headers, cap);
        if (nb == NULL)
            return SLK_ENOMEM;
        req->resp_headers = nb;
        req->resp_headers_cap = cap;
    }
    char *d = req->resp_headers + req->resp_headers_len;
    memcpy(d, name, nlen);
    memcpy(d + nlen, ": ", 2);
    memcpy(d + nlen + 2, value, vlen);
    memcpy(d + nlen + 2 + vlen, "\r\n", 2);
    req->resp_headers_len += nlen + vlen + 4;
    return 0;
}

/* IMF-fixdate by hand: strftime's names follow the locale. */
static size_t format_date(char out[64], time_t at)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&at, &tm);
    int n = snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
                     months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n > 0 ? (size_t)n : 0;
}

/* The Date header changes once a second: each thread formats it then, not for every reply. */
static const char *current_date(size_t *len)
{
    static _Thread_local time_t formatted_at = -1;
    static _Thread_local char text[64];
    static _Thread_local size_t text_len;
    time_t now = time(NULL);
    if (now != formatted_at) {
        text_len = format_date(text, now);
        formatted_at = now;
    }
    *len = text_len;
    return text;
}

static char *put(char *p, const char *s, size_t n)
{
    if (n > 0) /* s may be NULL then: no body, no extra headers */
        memcpy(p, s, n);
    return p + n;
}

#define PUT_LITERAL(p, s) put((p), (s), sizeof(s) - 1)

/* RFC 9110 6.4.1 and 8.6: no body for 1xx, 204 and 304; no Content-Length for 1xx and 204, and on a 304 only
 * the length the 200 would have had (the caller passes that body), never a made-up 0. */
static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Bodies from this size on are written from where they are rather than copied behind the head. */
#define LEND_BODY_MIN 4096

static bool body_sent(const struct slk_request *req, int status)
{
    return status_has_body(status) && req->method != SLK_METHOD_HEAD;
}

/* Status line and headers, followed by the body unless lend_body. */
static char *format_reply(const struct slk_request *req, int status, const char *content_type, const char *body,
                          size_t len, bool keep_alive, bool lend_body, size_t *out_len)
{
    bool send_body = body_sent(req, status) && !lend_body;
    bool send_length = status >= 200 && status != 204 && !(status == 304 && body == NULL);
    size_t ct_len = content_type != NULL ? strlen(content_type) : 0;
    size_t cap = STATUS_LINE_AND_FIXED_HEADERS + ct_len + req->resp_headers_len + (send_body ? len : 0);
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    /* Every reply goes through here: built with memcpy, no printf (status < 1000, len < 2^64: 20 digits). */
    const char *reason = slk_http_status_text(status);
    size_t date_len;
    const char *date = current_date(&date_len);
    char *p = PUT_LITERAL(buf, "HTTP/1.1 ");
    p += slk_format_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUT_LITERAL(p, "\r\nDate: ");
    p = put(p, date, date_len);
    p = PUT_LITERAL(p, "\r\n");
    if (content_type != NULL) {
        p = PUT_LITERAL(p, "Content-Type: ");
        p = put(p, content_type, ct_len);
        p = PUT_LITERAL(p, "\r\n");
    }
    if (send_length) {
        p = PUT_LITERAL(p, "Content-Length: ");
        p += slk_format_u64(p, len);
        p = PUT_LITERAL(p, "\r\n");
    }
    p = keep_alive ? PUT_LITERAL(p, "Connection: keep-alive\r\n") : PUT_LITERAL(p, "Connection: close\r\n");
    p = put(p, req->resp_headers, req->resp_headers_len);
    p = PUT_LITERAL(p, "\r\n");
    if (send_body)
        p = put(p, body, len);
    *out_len = (size_t)(p - buf);
    return buf;
}

char *slk__format_stream_head(const struct slk_request *req, const char *content_type, size_t *out_len)
{
    size_t cap = STATUS_LINE_AND_FIXED_HEADERS + strlen(content_type) + req->resp_headers_len;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    size_t date_len;
    const char *date = current_date(&date_len);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 200 OK\r\nDate: %.*s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                     "Connection: close\r\n",
                     (int)date_len, date, content_type);
    size_t o = (size_t)n;
    if (req->resp_headers_len > 0) {
        memcpy(buf + o, req->resp_headers, req->resp_headers_len);
        o += req->resp_headers_len;
    }
    memcpy(buf + o, "\r\n", 2);
    *out_len = o + 2;
    return buf;
}

void slk_response_send(struct slk_request *req, int status, const char *content_type, const char *body, size_t len)
{
    if (req == NULL)
        return;
    slk_metrics_request(req->route_id, status, uv_hrtime() - req->start_ns);
    if (req->on_reply != NULL) {
        /* Even when the peer already left: a kept reply is what its retry will get. */
        void (*on_reply)(struct slk_request *, int, const char *, size_t) = req->on_reply;
        req->on_reply = NULL;
        on_reply(req, status, body, len);
    }
    struct slk_conn *c = req->conn;
    if (c == NULL) {
        slk__http_request_free(req);
        return;
    }
    bool keep_alive = slk__conn_keep_alive(c, req);
    bool lend = body != NULL && len >= LEND_BODY_MIN && body_sent(req, status);
    size_t n = 0;
    char *buf = format_reply(req, status, content_type, body, len, keep_alive, lend, &n);
    if (buf == NULL)
        keep_alive = false;
    slk__conn_reply(c, req, buf, n, lend ? body : NULL, len, keep_alive);
}

void slk__http_error_describe(int status, const char **code, const char **message)
{
    switch (status) {
    case 400:
        *code = "bad_request";
        *message = "Malformed HTTP request";
        break;
    case 408:
        *code = "request_timeout";
        *message = "Request not received in time";
        break;
    case 413:
        *code = "payload_too_large";
        *message = "Request body too large";
        break;
    case 414:
        *code = "uri_too_long";
        *message = "Request URI too long";
        break;
    case 431:
        *code = "headers_too_large";
        *message = "Request headers too large";
        break;
    case 503:
        *code = "unavailable";
        *message = "Server is at capacity, retry shortly";
        break;
    default:
        *code = "internal_error";
        *message = "Internal server error";
        break;
    }
}

char *slk__http_error_reply(int status, const char *message, size_t *len)
{
    const char *code, *default_message;
    slk__http_error_describe(status, &code, &default_message);
    if (message == NULL)
        message = default_message;
    char body[512];
    int blen =
        snprintf(body, sizeof(body),
                 "{\"success\":false,\"message\":\"%s\",\"error\":{\"code\":\"%s\",\"details\":{}}}", message, code);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return NULL;
    size_t date_len;
    const char *date = current_date(&date_len);
    size_t cap = (size_t)blen + 320;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nDate: %.*s\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n%s\r\n%s",
                     status, slk_http_status_text(status), (int)date_len, date, blen,
                     status == 503 ? "Retry-After: 1\r\n" : "", body);
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}
