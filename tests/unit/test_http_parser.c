/*
 * The request parser driven without sockets: limits, smuggling defences,
 * pipelining, byte-by-byte arrival, keep-alive rules, plus the request
 * helpers handlers use (header and query lookup, reply headers).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* Included to reach value_bytes_ok(); before cmocka.h, whose fail() macro would rename its fail(). */
#include "../../src/http_parser.c"

#include <cmocka.h>

#include "slk/routes.h"

static const struct slk_http_limits small_limits = {
    .max_header_bytes = 1024,
    .max_body_bytes = 64,
    .request_timeout_ms = 1000,
    .idle_timeout_ms = 1000,
    .max_connections = 10,
};

static const struct slk_http_limits default_limits = {
    .max_header_bytes = SLK_DEFAULT_MAX_HEADER_BYTES,
    .max_body_bytes = SLK_DEFAULT_MAX_BODY_BYTES,
    .request_timeout_ms = 1000,
    .idle_timeout_ms = 1000,
    .max_connections = 10,
};

/* Feeds all of text at once; returns the final event and leaves the parser ready for inspection. */
static enum slk__http_event feed_all(struct slk__http_parser *p, const char *text, size_t len, size_t *consumed)
{
    size_t used = 0;
    enum slk__http_event ev = slk__http_parser_feed(p, text, len, &used);
    while (ev == SLK__HTTP_CONTINUE) {
        size_t more = 0;
        ev = slk__http_parser_feed(p, text + used, len - used, &more);
        used += more;
    }
    if (consumed != NULL)
        *consumed = used;
    return ev;
}

/* Parses exactly one complete request from text with the given limits, asserting success. */
static struct slk_request *parse_ok(struct slk__http_parser *p, const struct slk_http_limits *lim, const char *text)
{
    slk__http_parser_init(p, lim);
    size_t used = 0;
    enum slk__http_event ev = feed_all(p, text, strlen(text), &used);
    assert_int_equal(ev, SLK__HTTP_REQUEST);
    assert_int_equal(used, strlen(text));
    struct slk_request *req = slk__http_parser_take(p);
    assert_non_null(req);
    return req;
}

/* Parses text expecting a refusal; returns the HTTP status the server must reply with. */
static int parse_status(const struct slk_http_limits *lim, const char *text, size_t len)
{
    struct slk__http_parser p;
    slk__http_parser_init(&p, lim);
    enum slk__http_event ev = feed_all(&p, text, len, NULL);
    int status = ev == SLK__HTTP_ERROR ? p.error_status : (ev == SLK__HTTP_REQUEST ? 200 : 0);
    slk__http_parser_cleanup(&p);
    return status;
}

static int parse_status_str(const struct slk_http_limits *lim, const char *text)
{
    return parse_status(lim, text, strlen(text));
}

/* Same, one byte per feed, so that no check can rely on seeing its context in one buffer. */
static int parse_status_bytewise(const struct slk_http_limits *lim, const char *text)
{
    struct slk__http_parser p;
    slk__http_parser_init(&p, lim);
    enum slk__http_event ev = SLK__HTTP_NEED_MORE;
    size_t n = strlen(text);
    for (size_t i = 0; i < n && (ev == SLK__HTTP_NEED_MORE || ev == SLK__HTTP_CONTINUE); i++) {
        size_t used = 0;
        ev = slk__http_parser_feed(&p, text + i, 1, &used);
    }
    int status = ev == SLK__HTTP_ERROR ? p.error_status : (ev == SLK__HTTP_REQUEST ? 200 : 0);
    slk__http_parser_cleanup(&p);
    return status;
}

static void assert_str_eq(struct slk_str s, const char *expected)
{
    assert_int_equal(s.len, strlen(expected));
    assert_memory_equal(s.ptr, expected, s.len);
    assert_int_equal(s.ptr[s.len], '\0');
}

static void test_simple_get(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits,
                                       "GET /api/v1/bookings?student_uuid=s1&x=2 HTTP/1.1\r\nHost: example\r\n"
                                       "X-Request-ID:  \t abc def \t \r\nAccept: */*\r\n\r\n");
    assert_int_equal(req->method, SLK_METHOD_GET);
    assert_str_eq(req->path, "/api/v1/bookings");
    assert_str_eq(req->query, "student_uuid=s1&x=2");
    assert_int_equal(req->num_headers, 3);
    assert_str_eq(req->headers[1].name, "x-request-id");
    assert_str_eq(req->headers[1].value, "abc def");
    const struct slk_str *v = slk_request_header(req, "accept");
    assert_non_null(v);
    assert_str_eq(*v, "*/*");
    assert_non_null(slk_request_header(req, "X-REQUEST-ID"));
    assert_null(slk_request_header(req, "content-type"));
    assert_int_equal(req->body_len, 0);
    assert_string_equal(req->body, "");
    assert_true(req->keep_alive);
    assert_true(req->start_ns > 0);
    assert_int_equal(req->route_id, SLK_ROUTE_NONE);
    assert_false(slk__http_parser_in_request(&p));
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

/* A freed request is kept for the next one on its thread (http_parser.c): the next starts with nothing of it. */
static void test_a_request_after_a_freed_one_starts_empty(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits,
                                       "POST /api/v1/bookings?a=1 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nX-Two: 2\r\n"
                                       "Content-Length: 5\r\n\r\nhello");
    assert_int_equal(req->num_headers, 4);
    req->route_id = 7;
    req->num_params = 1;
    strcpy(req->user_sub, "someone");
    assert_int_equal(slk_response_header(req, "X-Reply", "yes"), 0);
    slk__http_request_free(req);
    req = parse_ok(&p, &default_limits, "GET /livez HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req->method, SLK_METHOD_GET);
    assert_str_eq(req->path, "/livez");
    assert_str_eq(req->query, "");
    assert_int_equal(req->num_headers, 1);
    assert_str_eq(req->headers[0].name, "host");
    assert_null(slk_request_header(req, "x-one"));
    assert_int_equal(req->body_len, 0);
    assert_string_equal(req->body, "");
    assert_int_equal(req->route_id, SLK_ROUTE_NONE);
    assert_int_equal(req->num_params, 0);
    assert_string_equal(req->user_sub, "");
    assert_int_equal(req->resp_headers_len, 0);
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
    slk_http_requests_release();
}

static void test_empty_query_and_fragment(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits, "GET /livez HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_str_eq(req->path, "/livez");
    assert_str_eq(req->query, "");
    slk__http_request_free(req);
    req = parse_ok(&p, &default_limits, "GET /a?q=1#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_str_eq(req->path, "/a");
    assert_str_eq(req->query, "q=1");
    slk__http_request_free(req);
    req = parse_ok(&p, &default_limits, "GET http://example.com/b/c?d HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_str_eq(req->path, "/b/c");
    assert_str_eq(req->query, "d");
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

static void test_post_with_body(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits,
                                       "POST /api/v1/bookings HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                                       "Content-Length: 13\r\n\r\n{\"a\": \"b c\"}\n");
    assert_int_equal(req->method, SLK_METHOD_POST);
    assert_int_equal(req->body_len, 13);
    assert_string_equal(req->body, "{\"a\": \"b c\"}\n");
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

static void test_chunked_body(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits,
                                       "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                                       "3;name=value\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n");
    assert_int_equal(req->method, SLK_METHOD_PUT);
    assert_int_equal(req->body_len, 7);
    assert_string_equal(req->body, "abcdefg");
    /* Trailers are not merged into the headers a handler sees. */
    assert_null(slk_request_header(req, "x-trailer"));
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

static void test_pipelined_requests_one_at_a_time(void **state)
{
    (void)state;
    const char first[] = "POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    const char second[] = "GET /two HTTP/1.1\r\nHost: h\r\n\r\n";
    char both[sizeof(first) + sizeof(second)];
    snprintf(both, sizeof(both), "%s%s", first, second);
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    size_t used = 0;
    assert_int_equal(slk__http_parser_feed(&p, both, strlen(both), &used), SLK__HTTP_REQUEST);
    assert_int_equal(used, strlen(first));
    /* A second feed before taking the request consumes nothing. */
    size_t none = 99;
    assert_int_equal(slk__http_parser_feed(&p, both + used, strlen(both) - used, &none), SLK__HTTP_REQUEST);
    assert_int_equal(none, 0);
    struct slk_request *a = slk__http_parser_take(&p);
    assert_str_eq(a->path, "/one");
    assert_string_equal(a->body, "hello");
    size_t used2 = 0;
    assert_int_equal(slk__http_parser_feed(&p, both + used, strlen(both) - used, &used2), SLK__HTTP_REQUEST);
    assert_int_equal(used2, strlen(second));
    struct slk_request *b = slk__http_parser_take(&p);
    assert_str_eq(b->path, "/two");
    /* The first request stays intact while the second is parsed. */
    assert_str_eq(a->path, "/one");
    slk__http_request_free(a);
    slk__http_request_free(b);
    slk__http_parser_cleanup(&p);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    const char text[] = "POST /api/v1/bookings/123/cancel?reason=a%20b HTTP/1.1\r\nHost: h\r\n"
                        "X-Long: 0123456789abcdef0123456789\r\nX-Spaced:  a  b \r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        size_t used = 0;
        enum slk__http_event ev = slk__http_parser_feed(&p, text + i, 1, &used);
        assert_int_equal(used, 1);
        assert_int_equal(ev, i + 1 == n ? SLK__HTTP_REQUEST : SLK__HTTP_NEED_MORE);
        assert_true(slk__http_parser_in_request(&p) == (i + 1 < n));
    }
    struct slk_request *req = slk__http_parser_take(&p);
    assert_str_eq(req->path, "/api/v1/bookings/123/cancel");
    assert_str_eq(req->query, "reason=a%20b");
    assert_str_eq(*slk_request_header(req, "x-long"), "0123456789abcdef0123456789");
    assert_str_eq(*slk_request_header(req, "x-spaced"), "a  b");
    assert_string_equal(req->body, "hello world");
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_header_block_over_limit_is_431(void **state)
{
    (void)state;
    char *big = repeat('a', 1100);
    char text[1400];
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", big);
    assert_int_equal(parse_status_str(&small_limits, text), 431);
    /* Same head, arriving in small pieces, and never completed. */
    struct slk__http_parser p;
    slk__http_parser_init(&p, &small_limits);
    size_t off = 0, used = 0;
    enum slk__http_event ev = SLK__HTTP_NEED_MORE;
    while (ev == SLK__HTTP_NEED_MORE && off < 1100) {
        ev = slk__http_parser_feed(&p, text + off, 7, &used);
        off += 7;
    }
    assert_int_equal(ev, SLK__HTTP_ERROR);
    assert_int_equal(p.error_status, 431);
    slk__http_parser_cleanup(&p);
    /* Many small headers adding up past the limit. */
    char many[2048];
    size_t o = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "X-H%02d: %s\r\n", i, "0123456789012345678");
    snprintf(many + o, sizeof(many) - o, "\r\n");
    assert_int_equal(parse_status_str(&small_limits, many), 431);
    free(big);
}

static void test_header_block_just_under_limit_is_accepted(void **state)
{
    (void)state;
    /* "GET / HTTP/1.1\r\nHost: h\r\nX: " is 28 bytes, the final CRLFs 4: fill to exactly 1024. */
    char *fill = repeat('v', 1024 - 28 - 4);
    char text[1200];
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\nX: %s\r\n\r\n", fill);
    assert_int_equal(strlen(text), 1024);
    assert_int_equal(parse_status_str(&small_limits, text), 200);
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\nX: %sv\r\n\r\n", fill);
    assert_int_equal(parse_status_str(&small_limits, text), 431);
    free(fill);
}

static void test_body_over_limit_by_content_length_is_413(void **state)
{
    (void)state;
    /* Refused on the head alone, before any body byte, and without inviting it with 100 Continue. */
    struct slk__http_parser p;
    slk__http_parser_init(&p, &small_limits);
    const char head[] = "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n";
    size_t used = 0;
    assert_int_equal(slk__http_parser_feed(&p, head, strlen(head), &used), SLK__HTTP_ERROR);
    assert_int_equal(p.error_status, 413);
    slk__http_parser_cleanup(&p);
    char ok[256];
    char *body = repeat('b', 64);
    snprintf(ok, sizeof(ok), "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 64\r\n\r\n%s", body);
    assert_int_equal(parse_status_str(&small_limits, ok), 200);
    free(body);
}

static void test_body_over_limit_by_chunks_is_413(void **state)
{
    (void)state;
    char text[512];
    char *a = repeat('a', 40), *b = repeat('b', 25);
    snprintf(text, sizeof(text),
             "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n%s\r\n19\r\n%s\r\n0\r\n\r\n", a,
             b);
    assert_int_equal(parse_status_str(&small_limits, text), 413);
    free(a);
    free(b);
}

static void test_smuggling_defences(void **state)
{
    (void)state;
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                                                       "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                     400);
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                                       "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                     400);
    assert_int_equal(
        parse_status_str(&default_limits,
                         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        400);
    /* Identical duplicates are refused too (llhttp strict does, and nobody legitimate sends them). */
    assert_int_equal(
        parse_status_str(&default_limits,
                         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        400);
    assert_int_equal(
        parse_status_str(&default_limits,
                         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        400);
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
                     400);
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                     400);
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
                     400);
    assert_int_equal(parse_status_str(&default_limits, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"),
                     400);
}

static void test_bad_header_bytes(void **state)
{
    (void)state;
    /* CVE-2023-30589: a bare CR must not end a header line. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n"), 400);
    /* Bare LF line endings: strict parsing refuses rather than guessing. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\nHost: h\n\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n"), 400);
    /* obs-fold continuation lines. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\tb\r\n\r\n"), 400);
    assert_int_equal(parse_status_bytewise(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400);
    assert_int_equal(parse_status_bytewise(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n \t b\r\n\r\n"), 400);
    assert_int_equal(parse_status_bytewise(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a \t b\r\nY:  c\r\n\r\n"),
                     200);
    /* Empty values are legal (RFC 9110 5.5) and are not folds. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX:\r\nY: \r\n\r\n"), 200);
    assert_int_equal(parse_status_bytewise(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX:\r\nY: \t\r\n\r\n"), 200);
    assert_int_equal(parse_status_bytewise(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
    /* Control characters in a value, NUL included. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n"), 400);
    static const char with_nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n";
    assert_int_equal(parse_status(&default_limits, with_nul, sizeof(with_nul) - 1), 400);
    /* Whitespace before the colon. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: h\r\nX : 1\r\n\r\n"), 400);
    /* Control character in the target, and a target that is not a path. */
    assert_int_equal(parse_status_str(&default_limits, "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "garbage\r\n\r\n"), 400);
}

/*
 * Values are checked eight bytes at a time (llhttp refuses most of these bytes too; this check must stand on its
 * own): every byte value at every position of a long value gets the byte-by-byte answer.
 */
static void test_value_bytes_checked_at_every_position(void **state)
{
    (void)state;
    char value[40];
    for (size_t k = 0; k < sizeof(value); k++) {
        for (int c = 0; c < 256; c++) {
            memset(value, 'v', sizeof(value));
            value[k] = (char)c;
            bool expected = (c >= 0x20 || c == '\t') && c != 0x7f;
            if (value_bytes_ok(value, sizeof(value)) != expected)
                fail_msg("byte 0x%02x at %zu of the value", c, k);
            if (value_bytes_ok(value, k + 1) != expected) /* the bad byte last, in the tail */
                fail_msg("byte 0x%02x at the end of %zu bytes", c, k + 1);
        }
    }
}

static void test_chunk_extension_cap(void **state)
{
    (void)state;
    char *ext = repeat('e', SLK_MAX_CHUNK_EXT_BYTES + 1);
    char text[1024];
    snprintf(text, sizeof(text),
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;%s\r\nabc\r\n0\r\n\r\n", ext);
    assert_int_equal(parse_status_str(&default_limits, text), 400);
    /* Split over name and value, and delivered byte by byte. */
    snprintf(text, sizeof(text),
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;n=%s\r\nabc\r\n0\r\n\r\n", ext + 1);
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    enum slk__http_event ev = SLK__HTTP_NEED_MORE;
    size_t used = 0;
    for (size_t i = 0; i < strlen(text) && ev == SLK__HTTP_NEED_MORE; i++)
        ev = slk__http_parser_feed(&p, text + i, 1, &used);
    assert_int_equal(ev, SLK__HTTP_ERROR);
    assert_int_equal(p.error_status, 400);
    slk__http_parser_cleanup(&p);
    /* The cap is per chunk-size line: many chunks with modest extensions are fine. */
    ext[SLK_MAX_CHUNK_EXT_BYTES] = '\0';
    snprintf(text, sizeof(text),
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;%s\r\na\r\n1;%s\r\nb\r\n0\r\n\r\n", ext,
             ext);
    assert_int_equal(parse_status_str(&default_limits, text), 200);
    free(ext);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    char text[4096];
    size_t o = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < SLK_MAX_HEADERS; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "X-%d: v\r\n", i);
    snprintf(text + o, sizeof(text) - o, "\r\n");
    assert_int_equal(parse_status_str(&default_limits, text), 200);
    snprintf(text + o, sizeof(text) - o, "X-Extra: v\r\n\r\n");
    assert_int_equal(parse_status_str(&default_limits, text), 431);
}

static void test_url_too_long_is_414(void **state)
{
    (void)state;
    char *path = repeat('p', SLK_MAX_URL_BYTES - 1);
    char text[SLK_MAX_URL_BYTES + 64];
    snprintf(text, sizeof(text), "GET /%s HTTP/1.1\r\nHost: h\r\n\r\n", path);
    assert_int_equal(parse_status_str(&default_limits, text), 200);
    snprintf(text, sizeof(text), "GET /%sp HTTP/1.1\r\nHost: h\r\n\r\n", path);
    assert_int_equal(parse_status_str(&default_limits, text), 414);
    free(path);
}

static bool keep_alive_of(const char *text)
{
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits, text);
    bool ka = req->keep_alive;
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
    return ka;
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    assert_true(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n"));
    /* HTTP/1.1 requires Host; 1.0 does not. */
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_int_equal(parse_status_str(&default_limits, "GET / HTTP/1.0\r\n\r\n"), 200);
}

static void test_upgrade_is_ignored(void **state)
{
    (void)state;
    const char text[] = "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    size_t used = 0;
    assert_int_equal(slk__http_parser_feed(&p, text, strlen(text), &used), SLK__HTTP_REQUEST);
    struct slk_request *a = slk__http_parser_take(&p);
    assert_str_eq(a->path, "/a");
    size_t used2 = 0;
    assert_int_equal(slk__http_parser_feed(&p, text + used, strlen(text) - used, &used2), SLK__HTTP_REQUEST);
    struct slk_request *b = slk__http_parser_take(&p);
    assert_str_eq(b->path, "/b");
    slk__http_request_free(a);
    slk__http_request_free(b);
    slk__http_parser_cleanup(&p);
}

static void test_expect_continue(void **state)
{
    (void)state;
    const char head[] = "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    size_t used = 0;
    assert_int_equal(slk__http_parser_feed(&p, head, strlen(head), &used), SLK__HTTP_CONTINUE);
    assert_int_equal(used, strlen(head));
    assert_int_equal(slk__http_parser_feed(&p, "ab", 2, &used), SLK__HTTP_NEED_MORE);
    assert_int_equal(slk__http_parser_feed(&p, "cd", 2, &used), SLK__HTTP_REQUEST);
    struct slk_request *req = slk__http_parser_take(&p);
    assert_string_equal(req->body, "abcd");
    slk__http_request_free(req);
    /* No body, nothing to invite. */
    const char nobody[] = "GET /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n";
    assert_int_equal(slk__http_parser_feed(&p, nobody, strlen(nobody), &used), SLK__HTTP_REQUEST);
    slk__http_request_free(slk__http_parser_take(&p));
    slk__http_parser_cleanup(&p);
}

static void test_error_is_sticky(void **state)
{
    (void)state;
    struct slk__http_parser p;
    slk__http_parser_init(&p, &default_limits);
    size_t used = 0;
    const char bad[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n";
    assert_int_equal(slk__http_parser_feed(&p, bad, strlen(bad), &used), SLK__HTTP_ERROR);
    const char good[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(slk__http_parser_feed(&p, good, strlen(good), &used), SLK__HTTP_ERROR);
    assert_int_equal(used, 0);
    slk__http_parser_cleanup(&p);
}

static void test_methods(void **state)
{
    (void)state;
    struct slk__http_parser p;
    static const struct {
        const char *text;
        enum slk_method m;
    } cases[] = {
        {"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", SLK_METHOD_HEAD},
        {"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", SLK_METHOD_DELETE},
        {"PATCH / HTTP/1.1\r\nHost: h\r\n\r\n", SLK_METHOD_PATCH},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n", SLK_METHOD_OPTIONS},
        {"PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n", SLK_METHOD_OTHER},
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(cases); i++) {
        struct slk_request *req = parse_ok(&p, &default_limits, cases[i].text);
        assert_int_equal(req->method, cases[i].m);
        slk__http_request_free(req);
        slk__http_parser_cleanup(&p);
    }
    assert_string_equal(slk_method_name(SLK_METHOD_GET), "GET");
    assert_string_equal(slk_method_name(SLK_METHOD_OPTIONS), "OPTIONS");
    assert_string_equal(slk_http_status_text(404), "Not Found");
    assert_string_equal(slk_http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(slk_http_status_text(299), "Unknown");
}

static void assert_param(const struct slk_request *req, const char *name, const char *expected)
{
    char *v = slk_request_query_param(req, name);
    if (expected == NULL) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, expected);
    free(v);
}

static void test_query_param_decoding(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req =
        parse_ok(&p, &default_limits,
                 "GET /q?a=1&msg=hello+world%21&pct=100%25&bad=%zz%4&nul=x%00y&empty=&flag&sp%20ace=ok&a=2&u=%C3%A9 "
                 "HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_param(req, "a", "1"); /* first occurrence wins */
    assert_param(req, "msg", "hello world!");
    assert_param(req, "pct", "100%");
    assert_param(req, "bad", "%zz%4");
    assert_param(req, "nul", "x%00y");
    assert_param(req, "empty", "");
    assert_param(req, "flag", "");
    assert_param(req, "sp ace", "ok");
    assert_param(req, "u", "\xC3\xA9");
    assert_param(req, "missing", NULL);
    assert_param(req, "fla", NULL);
    slk__http_request_free(req);
    slk__http_parser_cleanup(&p);
}

static void test_response_header_refuses_injection(void **state)
{
    (void)state;
    struct slk__http_parser p;
    struct slk_request *req = parse_ok(&p, &default_limits, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(slk_response_header(req, "X-Ok", "fine value"), 0);
    assert_int_equal(slk_response_header(req, "X-Bad", "a\r\nSet-Cookie: x=1"), SLK_EINVAL);
    assert_int_equal(slk_response_header(req, "X-Bad", "a\nb"), SLK_EINVAL);
    assert_int_equal(slk_response_header(req, "X-Bad", "a\rb"), SLK_EINVAL);
    assert_int_equal(slk_response_header(req, "Bad Name", "v"), SLK_EINVAL);
    assert_int_equal(slk_response_header(req, "Bad:Name", "v"), SLK_EINVAL);
    assert_int_equal(slk_response_header(req, "", "v"), SLK_EINVAL);
    assert_int_equal(req->resp_headers_len, strlen("X-Ok: fine value\r\n"));
    assert_memory_equal(req->resp_headers, "X-Ok: fine value\r\n", req->resp_headers_len);
    /* Without a connection the reply is dropped and the request freed (ASan checks the latter). */
    slk_response_send(req, 200, "text/plain", "x", 1);
    slk__http_parser_cleanup(&p);
}

static void test_error_reply_envelope(void **state)
{
    (void)state;
    size_t len = 0;
    char *r = slk__http_error_reply(431, NULL, &len);
    assert_non_null(r);
    assert_int_equal(strlen(r), len);
    assert_true(strncmp(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
    assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(r, "\r\nContent-Type: application/json; charset=utf-8\r\n"));
    const char *body = strstr(r, "\r\n\r\n") + 4;
    assert_string_equal(body, "{\"success\":false,\"message\":\"Request headers too large\","
                              "\"error\":{\"code\":\"headers_too_large\",\"details\":{}}}");
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(r, cl));
    free(r);
    r = slk__http_error_reply(503, NULL, &len);
    assert_non_null(strstr(r, "\r\nRetry-After: 1\r\n"));
    assert_non_null(strstr(r, "\"code\":\"unavailable\""));
    free(r);
    static const struct {
        int status;
        const char *code;
    } codes[] = {{400, "bad_request"}, {408, "request_timeout"}, {413, "payload_too_large"}, {414, "uri_too_long"}};
    for (size_t i = 0; i < SLK_ARRAY_SIZE(codes); i++) {
        const char *code, *message;
        slk__http_error_describe(codes[i].status, &code, &message);
        assert_string_equal(code, codes[i].code);
    }
}

struct outcome {
    int status; /* 200 for a complete request */
    size_t consumed;
    char summary[256];
};

/* Feeds text in pieces of the given sizes (cycled; 0 means all at once) and records what came out. */
static void run_split(const char *text, size_t len, const size_t *sizes, size_t nsizes, struct outcome *out)
{
    struct slk__http_parser p;
    slk__http_parser_init(&p, &small_limits);
    memset(out, 0, sizeof(*out));
    size_t off = 0, k = 0;
    enum slk__http_event ev = SLK__HTTP_NEED_MORE;
    while (off < len) {
        size_t piece = sizes[k++ % nsizes];
        if (piece == 0 || piece > len - off)
            piece = len - off;
        size_t used = 0;
        ev = slk__http_parser_feed(&p, text + off, piece, &used);
        off += used;
        if (ev == SLK__HTTP_CONTINUE)
            continue;
        if (ev != SLK__HTTP_NEED_MORE)
            break;
        assert_int_equal(used, piece);
    }
    out->consumed = off;
    if (ev == SLK__HTTP_ERROR) {
        out->status = p.error_status;
    } else if (ev == SLK__HTTP_REQUEST) {
        struct slk_request *req = slk__http_parser_take(&p);
        out->status = 200;
        snprintf(out->summary, sizeof(out->summary), "%d|%s|%s|%zu|%s|%d", (int)req->method, req->path.ptr,
                 req->query.ptr, req->num_headers, req->body, (int)req->keep_alive);
        slk__http_request_free(req);
    }
    slk__http_parser_cleanup(&p);
}

/* However the bytes are split, the parser reaches the same verdict: its accounting must not depend on read sizes. */
static void test_split_invariance(void **state)
{
    (void)state;
    static const char *samples[] = {
        "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX:  v  w \r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
        "POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n1\r\nc\r\n0\r\nT: 1\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    };
    static const size_t splits[][4] = {{0}, {1}, {2, 3}, {7, 1, 13}, {5, 64}, {31, 2, 1, 9}};
    for (size_t i = 0; i < SLK_ARRAY_SIZE(samples); i++) {
        struct outcome whole, split;
        size_t len = strlen(samples[i]);
        run_split(samples[i], len, splits[0], 1, &whole);
        assert_true(whole.status != 0 || i == 6);
        for (size_t j = 1; j < SLK_ARRAY_SIZE(splits); j++) {
            size_t n = 0;
            while (n < 4 && splits[j][n] != 0)
                n++;
            run_split(samples[i], len, splits[j], n, &split);
            assert_int_equal(split.status, whole.status);
            if (whole.status == 200) /* after an error, how much was consumed is meaningless */
                assert_int_equal(split.consumed, whole.consumed);
            assert_string_equal(split.summary, whole.summary);
        }
    }
    /* The header limit is exact whatever the split: 1024 bytes pass, 1025 do not. */
    char *fill = repeat('v', 1024 - 28 - 4);
    char text[1200];
    for (int extra = 0; extra <= 1; extra++) {
        snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\nX: %s%s\r\n\r\n", fill, extra ? "v" : "");
        for (size_t j = 0; j < SLK_ARRAY_SIZE(splits); j++) {
            size_t n = 0;
            while (n < 4 && splits[j][n] != 0)
                n++;
            struct outcome o;
            run_split(text, strlen(text), splits[j], n ? n : 1, &o);
            assert_int_equal(o.status, extra ? 431 : 200);
        }
    }
    free(fill);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_a_request_after_a_freed_one_starts_empty),
        cmocka_unit_test(test_empty_query_and_fragment),
        cmocka_unit_test(test_post_with_body),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_pipelined_requests_one_at_a_time),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_header_block_over_limit_is_431),
        cmocka_unit_test(test_header_block_just_under_limit_is_accepted),
        cmocka_unit_test(test_body_over_limit_by_content_length_is_413),
        cmocka_unit_test(test_body_over_limit_by_chunks_is_413),
        cmocka_unit_test(test_smuggling_defences),
        cmocka_unit_test(test_bad_header_bytes),
        cmocka_unit_test(test_value_bytes_checked_at_every_position),
        cmocka_unit_test(test_chunk_extension_cap),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_url_too_long_is_414),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_upgrade_is_ignored),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_query_param_decoding),
        cmocka_unit_test(test_response_header_refuses_injection),
        cmocka_unit_test(test_error_reply_envelope),
        cmocka_unit_test(test_split_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
