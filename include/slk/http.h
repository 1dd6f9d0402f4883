/*
 * HTTP/1.1 server on a libuv loop: one struct slk_http_server per worker
 * loop, accepting on a listening socket that may be shared with other
 * workers (SO_REUSEPORT).
 *
 * Request life: the server parses a request (llhttp, strict mode, with the
 * limits of struct slk_http_limits), then calls the dispatch callback once
 * with a struct slk_request. The handler answers exactly once, now or later,
 * with slk_response_send() (or a helper from response.h). Until then the
 * connection reads no further request (pipelined bytes wait in a bounded
 * buffer), and the request stays valid even if the peer goes away: a reply
 * to a closed connection is dropped and the request freed. After the reply
 * is queued the request and everything it owns are freed; handler state
 * must not be touched afterwards.
 */
#ifndef SLK_HTTP_H
#define SLK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slk/common.h"

struct slk_worker;
struct slk_http_server;
struct slk_conn;

enum slk_method {
    SLK_METHOD_OTHER = 0,
    SLK_METHOD_GET,
    SLK_METHOD_HEAD,
    SLK_METHOD_POST,
    SLK_METHOD_PUT,
    SLK_METHOD_DELETE,
    SLK_METHOD_PATCH,
    SLK_METHOD_OPTIONS,
};

const char *slk_method_name(enum slk_method m);

struct slk_str {
    const char *ptr;
    size_t len;
};

struct slk_header {
    struct slk_str name; /* lower-cased */
    struct slk_str value;
};

struct slk_request {
    struct slk_worker *worker; /* the loop this request runs on */
    struct slk_conn *conn;     /* private to http_server.c */
    enum slk_method method;
    struct slk_str path;  /* raw path without query (not percent-decoded), NUL-terminated */
    struct slk_str query; /* raw query string without '?', NUL-terminated, may be empty */
    struct slk_header headers[SLK_MAX_HEADERS];
    size_t num_headers;
    char *body; /* NUL-terminated copy of the body (len bytes before the NUL) */
    size_t body_len;
    struct slk_str params[SLK_MAX_ROUTE_PARAMS]; /* path parameters filled by the router */
    size_t num_params;
    int route_id;      /* set by the router, for metrics; -1 when no route matched */
    uint64_t start_ns; /* uv_hrtime() when the first byte of the request arrived */
    bool keep_alive;   /* as negotiated; the server may still close */

    /* Reply headers collected by slk_response_header() before sending. */
    char *resp_headers;
    size_t resp_headers_len, resp_headers_cap;

    /* Streamed replies (slk_response_stream_start): called once if the peer goes away first. */
    void (*on_abort)(struct slk_request *req);

    /* Who is calling, set by the dispatcher after JWT verification (routes.c); empty/0 when unauthenticated. */
    char user_sub[SLK_MAX_ID_LEN + 1];
    int user_role; /* enum slk_role */

    void *handler_data; /* free for the handler */
    /* The body as parsed by the first who needed it (handlers/util.c), released with the request. */
    void *parsed_body;
    void (*parsed_body_free)(void *parsed);

    /* The route's handler, run by slk_routes_resume() once the gates (rate limit, idempotency) let it through. */
    void (*handler)(struct slk_request *req);
    /*
     * Called once by slk_response_send() before the reply is written, with
     * the reply as it will go out (headers collected so far in resp_headers):
     * lets the idempotency gate keep a copy. NULL when nobody listens.
     */
    void (*on_reply)(struct slk_request *req, int status, const char *body, size_t len);
    void *gate_data; /* owned by the gate that set on_reply */
};

/* Case-insensitive header lookup; NULL when absent. Valid for the request's life. */
const struct slk_str *slk_request_header(const struct slk_request *req, const char *lower_name);

/* Query parameter lookup (percent-decoded into a fresh malloc'd string the caller frees); NULL when absent. */
char *slk_request_query_param(const struct slk_request *req, const char *name) SLK_MUST_CHECK;

/* Adds one reply header ("Name", "value"); CR/LF in value are refused. */
int slk_response_header(struct slk_request *req, const char *name, const char *value) SLK_MUST_CHECK;

/*
 * Sends the reply and releases the request. Content-Length, Date, Connection
 * are added by the server; content_type may be NULL for an empty body.
 * Takes no ownership of body. After this call req is gone.
 */
void slk_response_send(struct slk_request *req, int status, const char *content_type, const char *body, size_t len);

/*
 * Streamed replies (Server-Sent Events). stream_start sends the status line
 * and headers (no Content-Length; the connection closes when the stream
 * ends); stream_write queues bytes (copied); stream_end finishes and
 * releases the request. If the peer leaves first, on_abort is called once
 * and the handler must still call stream_end. No request timeout applies
 * while streaming. stream_write returns SLK_ECLOSED once the connection is
 * gone and SLK_EBUSY when the peer reads too slowly (the handler should end
 * the stream).
 */
int slk_response_stream_start(struct slk_request *req, const char *content_type,
                              void (*on_abort)(struct slk_request *req)) SLK_MUST_CHECK;
int slk_response_stream_write(struct slk_request *req, const char *data, size_t len);
void slk_response_stream_end(struct slk_request *req);

typedef void (*slk_http_dispatch_cb)(struct slk_request *req);

struct slk_http_limits {
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint64_t request_timeout_ms; /* whole request must arrive within this */
    uint64_t idle_timeout_ms;    /* keep-alive idle (before its first request, a connection gets request_timeout_ms) */
    size_t max_connections;      /* per server (per worker) */
};

/*
 * Opens a TCP listener on host:port with SO_REUSEPORT (and SO_REUSEADDR); returns fd or negative errno-style SLK_E*
 * (SLK_EINVAL: host does not resolve; SLK_EIO: socket/bind/listen failed, logged with the reason). Call it once per
 * worker: each call binds its own socket to the same port, and the kernel spreads connections across them. host
 * NULL, "" or "*" means every address.
 */
int slk_listen_socket(const char *host, int port, int backlog) SLK_MUST_CHECK;

struct slk_http_server *slk_http_server_create(uv_loop_t *loop, struct slk_worker *worker,
                                               const struct slk_http_limits *limits, slk_http_dispatch_cb dispatch);
/* Starts accepting on fd (the server takes a dup of it). */
int slk_http_server_listen(struct slk_http_server *srv, int fd) SLK_MUST_CHECK;
/* Stops accepting; keeps serving in-flight requests; closes idle keep-alive connections. */
void slk_http_server_stop_accepting(struct slk_http_server *srv);
size_t slk_http_server_open_connections(const struct slk_http_server *srv);
size_t slk_http_server_inflight_requests(const struct slk_http_server *srv);
/* Closes everything; in-flight requests are answered by their handlers into the void. The server is freed once
 * all its handles are closed; done_cb (may be NULL) is called then, always from a later loop iteration. A request
 * still at its handler keeps only its own connection's memory alive, not the server. */
void slk_http_server_close(struct slk_http_server *srv, void (*done_cb)(void *), void *done_data);

/*
 * Each thread keeps the requests it freed for its next ones (http_parser.c);
 * a thread that served requests frees them with this before it ends.
 */
void slk_http_requests_release(void);

/* Reason phrase for a status code ("Not Found"); "Unknown" for others. */
const char *slk_http_status_text(int status);

#endif
