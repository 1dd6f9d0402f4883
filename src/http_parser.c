/*
 * Request parsing on top of llhttp (strict mode, no lenient flags) with our
 * own limits and request-smuggling checks. llhttp is paused at the end of
 * every head (to account its exact size before the body starts) and at the
 * end of every message (so that a connection takes one request at a time).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "slk/routes.h"

#define HEAD_INITIAL_CAP 512

static struct slk__http_parser *parser_of(llhttp_t *ll)
{
    return ll->data;
}

/* Records why the request is refused; llhttp then stops with HPE_USER. */
static int fail(struct slk__http_parser *p, int status, const char *message)
{
    if (p->error_status == 0) {
        p->error_status = status;
        p->error_message = message;
    }
    llhttp_set_error_reason(&p->ll, message);
    return HPE_USER;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool value_byte_ok(unsigned char c)
{
    return (c >= 0x20 || c == '\t') && c != 0x7f;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * Field values may hold HTAB and visible octets only; CR, LF and NUL are how
 * smuggling starts (CVE-2023-30589). Eight bytes are looked at together (a
 * bearer token alone is hundreds) up to the first word with a control byte
 * or DEL; from there on, byte by byte (a tab is fine).
 */
static bool value_bytes_ok(const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t below_space = (w - 0x20 * ONES) & ~w & HIGHS; /* a byte < 0x20 (bytes >= 0x80 excluded) */
        uint64_t del = w ^ (0x7f * ONES);
        del = (del - ONES) & ~del & HIGHS; /* a byte == 0x7f */
        if ((below_space | del) != 0)
            break;
    }
    for (; i < len; i++) {
        if (!value_byte_ok((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool url_bytes_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/*
 * Requests freed on a thread are kept there for the next ones, with their
 * head buffer: a request is ~3.5 KB, past glibc's per-thread cache, and
 * every calloc of one went through the arena's large-chunk path and merged
 * its fast bins first (malloc_consolidate): ~3 % of a worker's CPU under
 * load. Under AddressSanitizer every request is really freed, so a use
 * after free is still caught.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SPARE_REQUESTS 0
#else
#define SPARE_REQUESTS 64
#endif
#define SPARE_HEAD_MAX 4096 /* a larger head buffer is not kept */

static _Thread_local struct slk__http_request *spare[SPARE_REQUESTS > 0 ? SPARE_REQUESTS : 1];
static _Thread_local int n_spare;

static struct slk__http_request *request_new(void)
{
    if (n_spare == 0)
        return calloc(1, sizeof(struct slk__http_request));
    struct slk__http_request *r = spare[--n_spare];
    char *head = r->head;
    size_t head_cap = r->head_cap;
    memset(r, 0, sizeof(*r));
    r->head = head;
    r->head_cap = head_cap;
    return r;
}

static void request_free(struct slk__http_request *r)
{
    if (r == NULL)
        return;
    if (r->pub.parsed_body_free != NULL)
        r->pub.parsed_body_free(r->pub.parsed_body);
    if (r->pub.body != r->empty_body)
        free(r->pub.body);
    free(r->pub.resp_headers);
    if (n_spare < SPARE_REQUESTS && r->head_cap <= SPARE_HEAD_MAX) {
        spare[n_spare++] = r;
        return;
    }
    free(r->head);
    free(r);
}

void slk_http_requests_release(void)
{
    while (n_spare > 0) {
        struct slk__http_request *r = spare[--n_spare];
        free(r->head);
        free(r);
    }
}

void slk__http_request_free(struct slk_request *req)
{
    if (req == NULL)
        return;
    request_free((struct slk__http_request *)((char *)req - offsetof(struct slk__http_request, pub)));
}

/*
 * Appends to the head buffer. Its size is bounded by the header limit (plus
 * the NULs we add), so a head too big for it is a head too big, full stop.
 */
static int head_append(struct slk__http_parser *p, const char *data, size_t len, bool lower)
{
    struct slk__http_request *r = p->cur;
    size_t cap_limit = p->limits.max_header_bytes + 2 * SLK_MAX_HEADERS + 8;
    if (r->head_len + len + 1 > cap_limit)
        return fail(p, 431, "Request headers too large");
    if (r->head_len + len + 1 > r->head_cap) {
        size_t cap = r->head_cap ? r->head_cap : HEAD_INITIAL_CAP;
        while (cap < r->head_len + len + 1)
            cap *= 2;
        if (cap > cap_limit)
            cap = cap_limit;
        char *nh = realloc(r->head, cap);
        if (nh == NULL)
            return fail(p, 500, "Out of memory");
        r->head = nh;
        r->head_cap = cap;
    }
    char *dst = r->head + r->head_len;
    if (lower) {
        for (size_t i = 0; i < len; i++) {
            char c = data[i];
            dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
        }
    } else if (len > 0) {
        memcpy(dst, data, len);
    }
    r->head_len += len;
    return 0;
}

static int on_message_begin(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = request_new();
    if (r == NULL) {
        fail(p, 500, "Out of memory");
        return -1;
    }
    r->pub.route_id = SLK_ROUTE_NONE;
    r->pub.start_ns = uv_hrtime();
    r->pub.body = r->empty_body;
    p->cur = r;
    p->head_bytes = 0;
    p->url_len = 0;
    p->trailer_bytes = 0;
    p->chunk_ext_bytes = 0;
    p->headers_done = false;
    p->in_field = false;
    p->saw_host = p->saw_cl = p->saw_te = p->expect_continue = false;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct slk__http_parser *p = parser_of(ll);
    p->url_len += len;
    if (p->url_len > SLK_MAX_URL_BYTES)
        return fail(p, 414, "Request URI too long");
    if (!url_bytes_ok(at, len))
        return fail(p, 400, "Invalid character in request target");
    return head_append(p, at, len, false);
}

/* Origin-form ("/path?q") is what clients send; absolute-form must be accepted too (RFC 9112 3.2.2). */
static size_t skip_scheme_authority(const char *u, size_t n)
{
    size_t skip = 0;
    if (n >= 7 && strncasecmp(u, "http://", 7) == 0)
        skip = 7;
    else if (n >= 8 && strncasecmp(u, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    while (skip < n && u[skip] != '/')
        skip++;
    return skip;
}

static int on_url_complete(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    size_t n = r->head_len;
    if (head_append(p, "", 0, false) != 0)
        return -1;
    char *u = r->head;
    u[n] = '\0';
    r->head_len = n + 1;
    size_t start = skip_scheme_authority(u, n);
    if (start >= n || u[start] != '/') {
        fail(p, 400, "Request target must be an absolute path");
        return -1;
    }
    size_t i = start;
    while (i < n && u[i] != '?' && u[i] != '#')
        i++;
    r->path_off = start;
    r->path_len = i - start;
    r->query_off = n;
    r->query_len = 0;
    if (i < n && u[i] == '?') {
        size_t j = i + 1;
        while (j < n && u[j] != '#')
            j++;
        r->query_off = i + 1;
        r->query_len = j - (i + 1);
        u[j] = '\0';
    }
    u[i] = '\0';
    return 0;
}

static int count_trailer(struct slk__http_parser *p, size_t len)
{
    p->trailer_bytes += len;
    if (p->head_bytes + p->trailer_bytes > p->limits.max_header_bytes)
        return fail(p, 431, "Request trailers too large");
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    if (p->headers_done)
        return count_trailer(p, len);
    if (!p->in_field) {
        if (r->pub.num_headers >= SLK_MAX_HEADERS)
            return fail(p, 431, "Too many request headers");
        r->name_off[r->pub.num_headers] = (uint32_t)r->head_len;
        p->in_field = true;
    }
    return head_append(p, at, len, true);
}

static int on_header_field_complete(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    if (p->headers_done)
        return 0;
    size_t i = r->pub.num_headers;
    r->name_len[i] = (uint32_t)(r->head_len - r->name_off[i]);
    if (head_append(p, "", 0, false) != 0)
        return -1;
    r->head[r->head_len++] = '\0';
    r->value_off[i] = (uint32_t)r->head_len;
    p->in_field = false;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct slk__http_parser *p = parser_of(ll);
    /*
     * llhttp accepts obs-fold: a line break followed by whitespace continues
     * the value. RFC 9112 5.2 lets a server reject it, and we do: folded
     * values are a classic way to disagree with a proxy about headers.
     */
    const char *b = at;
    while (b > p->chunk_begin && is_ows(b[-1]))
        b--;
    char before = b > p->chunk_begin ? b[-1] : p->prev_solid_byte;
    /* An empty value ("X:" or "X: ") is reported as an empty span after the line break: nothing folds there. */
    if (len > 0 && before == '\n')
        return fail(p, 400, "Folded header lines are not allowed");
    if (!value_bytes_ok(at, len))
        return fail(p, 400, "Invalid character in header value");
    if (p->headers_done)
        return count_trailer(p, len);
    return head_append(p, at, len, false);
}

static bool value_is(const struct slk__http_request *r, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    return r->value_len[i] == n && strncasecmp(r->head + r->value_off[i], lit, n) == 0;
}

static bool name_is(const struct slk__http_request *r, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    return r->name_len[i] == n && memcmp(r->head + r->name_off[i], lit, n) == 0;
}

/* Header rules that keep us in agreement with any proxy in front (RFC 9112 6.3). */
static int check_header(struct slk__http_parser *p, size_t i)
{
    struct slk__http_request *r = p->cur;
    if (name_is(r, i, "content-length")) {
        if (p->saw_cl)
            return fail(p, 400, "Duplicate Content-Length");
        p->saw_cl = true;
    } else if (name_is(r, i, "transfer-encoding")) {
        if (p->saw_te || !value_is(r, i, "chunked"))
            return fail(p, 400, "Only Transfer-Encoding: chunked is supported");
        p->saw_te = true;
    } else if (name_is(r, i, "host")) {
        if (p->saw_host)
            return fail(p, 400, "Duplicate Host header");
        p->saw_host = true;
    } else if (name_is(r, i, "expect")) {
        p->expect_continue = value_is(r, i, "100-continue");
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    if (p->headers_done)
        return 0;
    size_t i = r->pub.num_headers;
    size_t start = r->value_off[i], end = r->head_len;
    while (start < end && is_ows(r->head[start]))
        start++;
    while (end > start && is_ows(r->head[end - 1]))
        end--;
    if (head_append(p, "", 0, false) != 0)
        return -1;
    r->head[r->head_len++] = '\0';
    r->head[end] = '\0';
    r->value_off[i] = (uint32_t)start;
    r->value_len[i] = (uint32_t)(end - start);
    r->pub.num_headers++;
    if (check_header(p, i) != 0)
        return -1;
    return 0;
}

static enum slk_method method_from_llhttp(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
        return SLK_METHOD_GET;
    case HTTP_HEAD:
        return SLK_METHOD_HEAD;
    case HTTP_POST:
        return SLK_METHOD_POST;
    case HTTP_PUT:
        return SLK_METHOD_PUT;
    case HTTP_DELETE:
        return SLK_METHOD_DELETE;
    case HTTP_PATCH:
        return SLK_METHOD_PATCH;
    case HTTP_OPTIONS:
        return SLK_METHOD_OPTIONS;
    default:
        return SLK_METHOD_OTHER;
    }
}

static int on_headers_complete(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    p->headers_done = true;
    p->paused_head = true;
    /* We never switch protocols; ignoring Upgrade (e.g. curl's h2c offer) is allowed (RFC 9110 7.8). */
    if (ll->method != HTTP_CONNECT)
        ll->upgrade = 0;
    return HPE_PAUSED;
}

static void fix_pointers(struct slk__http_request *r)
{
    r->pub.path.ptr = r->head + r->path_off;
    r->pub.path.len = r->path_len;
    r->pub.query.ptr = r->head + r->query_off;
    r->pub.query.len = r->query_len;
    for (size_t i = 0; i < r->pub.num_headers; i++) {
        r->pub.headers[i].name.ptr = r->head + r->name_off[i];
        r->pub.headers[i].name.len = r->name_len[i];
        r->pub.headers[i].value.ptr = r->head + r->value_off[i];
        r->pub.headers[i].value.len = r->value_len[i];
    }
}

static int refuse(struct slk__http_parser *p, int status, const char *message)
{
    fail(p, status, message);
    return p->error_status;
}

/*
 * Runs once the head is complete and its size known. Returns an HTTP status
 * to refuse the request with, or 0.
 */
static int head_finish(struct slk__http_parser *p)
{
    struct slk__http_request *r = p->cur;
    llhttp_t *ll = &p->ll;
    if (p->head_bytes > p->limits.max_header_bytes)
        return refuse(p, 431, "Request headers too large");
    if (ll->http_major != 1)
        return refuse(p, 400, "Unsupported HTTP version");
    if (ll->method == HTTP_CONNECT)
        return refuse(p, 400, "CONNECT is not supported");
    if (p->saw_cl && p->saw_te)
        return refuse(p, 400, "Content-Length and Transfer-Encoding together");
    if (ll->http_minor >= 1 && !p->saw_host)
        return refuse(p, 400, "Missing Host header");
    bool has_body = (ll->flags & F_CHUNKED) || ll->content_length > 0;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->limits.max_body_bytes)
        return refuse(p, 413, "Request body too large");
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0) {
        r->pub.body = malloc((size_t)ll->content_length + 1);
        if (r->pub.body == NULL) {
            r->pub.body = r->empty_body;
            return refuse(p, 500, "Out of memory");
        }
        r->body_cap = (size_t)ll->content_length + 1;
    }
    r->pub.method = method_from_llhttp(ll->method);
    r->pub.keep_alive = llhttp_should_keep_alive(ll) != 0;
    fix_pointers(r);
    p->want_continue = p->expect_continue && ll->http_minor >= 1 && has_body;
    p->chunk_ext_bytes = 0;
    return 0;
}

static int body_reserve(struct slk__http_parser *p, size_t need)
{
    struct slk__http_request *r = p->cur;
    if (need <= r->body_cap)
        return 0;
    size_t cap = r->body_cap ? r->body_cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > p->limits.max_body_bytes + 1)
        cap = p->limits.max_body_bytes + 1;
    char *nb = realloc(r->pub.body == r->empty_body ? NULL : r->pub.body, cap);
    if (nb == NULL)
        return fail(p, 500, "Out of memory");
    r->pub.body = nb;
    r->body_cap = cap;
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    size_t total = r->pub.body_len + len;
    if (total > p->limits.max_body_bytes)
        return fail(p, 413, "Request body too large");
    if (body_reserve(p, total + 1) != 0)
        return HPE_USER;
    memcpy(r->pub.body + r->pub.body_len, at, len);
    r->pub.body_len = total;
    return 0;
}

/* llhttp 8.1 reads chunk extensions without bound (CVE-2024-22019): cap them per chunk-size line. */
static int on_chunk_extension(llhttp_t *ll, const char *at, size_t len)
{
    struct slk__http_parser *p = parser_of(ll);
    SLK_UNUSED(at);
    p->chunk_ext_bytes += len;
    if (p->chunk_ext_bytes > SLK_MAX_CHUNK_EXT_BYTES)
        return fail(p, 400, "Chunk extensions too long");
    return 0;
}

static int on_chunk_header(llhttp_t *ll)
{
    parser_of(ll)->chunk_ext_bytes = 0;
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct slk__http_parser *p = parser_of(ll);
    struct slk__http_request *r = p->cur;
    r->pub.body[r->pub.body_len] = '\0';
    /* Trailers may have carried "Connection: close"; llhttp's verdict is final only now. */
    r->pub.keep_alive = r->pub.keep_alive && llhttp_should_keep_alive(ll);
    p->done = r;
    p->cur = NULL;
    p->headers_done = false;
    p->paused_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

void slk__http_parser_init(struct slk__http_parser *p, const struct slk_http_limits *limits)
{
    memset(p, 0, sizeof(*p));
    p->limits = *limits;
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->ll.data = p;
}

void slk__http_parser_cleanup(struct slk__http_parser *p)
{
    request_free(p->cur);
    request_free(p->done);
    p->cur = NULL;
    p->done = NULL;
}

bool slk__http_parser_in_request(const struct slk__http_parser *p)
{
    return p->cur != NULL;
}

uint64_t slk__http_parser_start_ns(const struct slk__http_parser *p)
{
    return p->cur != NULL ? p->cur->pub.start_ns : 0;
}

struct slk_request *slk__http_parser_take(struct slk__http_parser *p)
{
    struct slk__http_request *r = p->done;
    p->done = NULL;
    return r != NULL ? &r->pub : NULL;
}

/* Keeps the last byte that was not a space or tab, for the obs-fold check across feeds. */
static void remember_solid_byte(struct slk__http_parser *p, const char *s, size_t len)
{
    while (len > 0 && is_ows(s[len - 1]))
        len--;
    if (len > 0)
        p->prev_solid_byte = s[len - 1];
}

static enum slk__http_event parse_error(struct slk__http_parser *p, llhttp_errno_t e)
{
    if (p->error_status == 0) {
        p->error_status = 400;
        p->error_message = "Malformed HTTP request";
        if (e == HPE_CLOSED_CONNECTION)
            p->error_message = "Data after Connection: close";
    }
    return SLK__HTTP_ERROR;
}

enum slk__http_event slk__http_parser_feed(struct slk__http_parser *p, const char *data, size_t len, size_t *consumed)
{
    size_t off = 0;
    *consumed = 0;
    if (p->error_status != 0)
        return SLK__HTTP_ERROR;
    if (p->done != NULL)
        return SLK__HTTP_REQUEST;
    for (;;) {
        const char *start = data + off;
        p->chunk_begin = start;
        /* Runs even with no bytes left: a message without body completes right after its head. */
        llhttp_errno_t e = llhttp_execute(&p->ll, start, len - off);
        size_t used = len - off;
        if (e == HPE_PAUSED)
            used = (size_t)(llhttp_get_error_pos(&p->ll) - start);
        else if (e != HPE_OK)
            return parse_error(p, e);
        remember_solid_byte(p, start, used);
        off += used;
        *consumed = off;
        if (p->paused_head) {
            p->paused_head = false;
            p->head_bytes += used;
            llhttp_resume(&p->ll);
            if (head_finish(p) != 0)
                return SLK__HTTP_ERROR;
            if (p->want_continue) {
                p->want_continue = false;
                return SLK__HTTP_CONTINUE;
            }
            continue;
        }
        if (p->paused_done) {
            p->paused_done = false;
            llhttp_resume(&p->ll);
            return SLK__HTTP_REQUEST;
        }
        if (p->cur != NULL && !p->headers_done) {
            p->head_bytes += used;
            if (p->head_bytes > p->limits.max_header_bytes) {
                fail(p, 431, "Request headers too large");
                return SLK__HTTP_ERROR;
            }
        }
        return SLK__HTTP_NEED_MORE;
    }
    return SLK__HTTP_NEED_MORE;
}
