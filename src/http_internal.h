/*
 * Private API between the HTTP modules: the request parser (http_parser.c),
 * the connection machinery (http_server.c) and the reply formatter
 * (http_response.c).
 *
 * The parser is socket-free so that unit tests can drive it byte by byte:
 * feed it bytes, and it reports one event at a time. It stops after each
 * complete request, so a connection handles one request at a time and
 * keeps pipelined bytes for later.
 */
#ifndef SLK_HTTP_INTERNAL_H
#define SLK_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "slk/http.h"

/*
 * A request as the parser builds it. The public part is handed to handlers;
 * the rest is the storage behind its pointers: path, query and headers live
 * in one buffer (head), the body in its own allocation.
 */
struct slk__http_request {
    struct slk_request pub;
    char *head;
    size_t head_len, head_cap;
    size_t path_off, path_len, query_off, query_len;
    uint32_t name_off[SLK_MAX_HEADERS], name_len[SLK_MAX_HEADERS];
    uint32_t value_off[SLK_MAX_HEADERS], value_len[SLK_MAX_HEADERS];
    size_t body_cap;
    char empty_body[1];
};

enum slk__http_event {
    SLK__HTTP_NEED_MORE = 0, /* every byte consumed; the request is not complete yet */
    SLK__HTTP_REQUEST,       /* a request is complete: take it with slk__http_parser_take() */
    SLK__HTTP_CONTINUE,      /* headers carry "Expect: 100-continue" and a body is due: send 100 Continue */
    SLK__HTTP_ERROR,         /* error_status is set; reply with it and close the connection */
};

struct slk__http_parser {
    llhttp_t ll;
    struct slk_http_limits limits;
    struct slk__http_request *cur;  /* request being built, NULL between requests */
    struct slk__http_request *done; /* complete request waiting for slk__http_parser_take() */

    size_t head_bytes; /* request line + headers seen so far (exact once headers are complete) */
    size_t url_len;
    size_t trailer_bytes;
    size_t chunk_ext_bytes; /* extension bytes of the current chunk-size line */
    bool headers_done;
    bool in_field; /* a header name is being received */
    bool saw_host, saw_cl, saw_te, expect_continue;
    bool want_continue; /* report SLK__HTTP_CONTINUE once the head has been accounted for */
    bool paused_head;   /* llhttp paused at the end of the head */
    bool paused_done;   /* llhttp paused at the end of the message */

    /* Where the bytes being fed begin, and the last non-blank byte before them, to recognise obs-fold. */
    const char *chunk_begin;
    char prev_solid_byte;

    int error_status;          /* HTTP status to reply with after SLK__HTTP_ERROR */
    const char *error_message; /* static, JSON-safe text for the envelope */
};

void slk__http_parser_init(struct slk__http_parser *p, const struct slk_http_limits *limits);
/* Frees a request under construction or not yet taken. The parser may be re-inited afterwards. */
void slk__http_parser_cleanup(struct slk__http_parser *p);

/*
 * Parses up to len bytes; *consumed tells how many were used (always all of
 * them for SLK__HTTP_NEED_MORE). Call again with the rest after handling the
 * event. After SLK__HTTP_ERROR the parser is dead: only cleanup is allowed.
 */
enum slk__http_event slk__http_parser_feed(struct slk__http_parser *p, const char *data, size_t len, size_t *consumed);
/* True once the first byte of a request has been parsed and until that request is complete. */
bool slk__http_parser_in_request(const struct slk__http_parser *p);
/* Start time of the request in progress (uv_hrtime at its first byte), 0 when none. */
uint64_t slk__http_parser_start_ns(const struct slk__http_parser *p);
/* Hands over the completed request; the caller frees it with slk__http_request_free() or slk_response_send(). */
struct slk_request *slk__http_parser_take(struct slk__http_parser *p);

void slk__http_request_free(struct slk_request *req);

/* Envelope code ("bad_request", ...) and default message of an error the HTTP layer replies itself. */
void slk__http_error_describe(int status, const char **code, const char **message);

/*
 * Formats a complete JSON error reply of the HTTP layer itself (400, 408,
 * 413, 414, 431, 503...) with "Connection: close". message (NULL: the
 * default for the status) must be static text without '"' or '\\'.
 * Returns malloc'd bytes or NULL on OOM.
 */
char *slk__http_error_reply(int status, const char *message, size_t *len);

/*
 * Server side of slk_response_send(): takes ownership of the formatted reply
 * (freed with free(); a NULL buf means "nothing to send") and releases req.
 */
bool slk__conn_keep_alive(const struct slk_conn *c, const struct slk_request *req);
/* Status line and headers of a streamed reply (malloc'd). */
char *slk__format_stream_head(const struct slk_request *req, const char *content_type, size_t *out_len);
/* buf: the reply (owned); lent: a body that follows it, read only during the call (NULL: none). */
void slk__conn_reply(struct slk_conn *c, struct slk_request *req, char *buf, size_t len, const char *lent,
                     size_t lent_len, bool keep_alive);

#endif
