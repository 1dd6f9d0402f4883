/*
 * The HTTP/1.1 keep-alive load generator: one libuv loop, N connections,
 * one request in flight per connection (no pipelining), replies parsed with
 * llhttp. The caller supplies the request bytes through a prepare callback
 * and learns each outcome through a reply callback.
 *
 * All connections are connected first and then released together, so the
 * first requests of every connection leave in the same loop iteration (the
 * burst). Closed loop by default: a connection sends its next request as
 * soon as the previous reply arrived. With a rate, requests are scheduled
 * at fixed intended times t0 + i/rate and latency is counted from the
 * intended time, so a server that stalls is charged for the requests it
 * delayed (no coordinated omission).
 *
 * A connection prepares its next request right after sending the current
 * one, while it waits for the reply, so building request bytes (and minting
 * tokens) stays off the measured path.
 */
#ifndef SLOTBENCH_LOADGEN_H
#define SLOTBENCH_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "result.h"

/* The largest request slotbench builds (a hold with its token is about 800 bytes). */
#define BENCH_REQ_MAX 2048
/* Bodies kept for the reply callback when a request asks for it; longer ones are cut. */
#define BENCH_BODY_MAX 2048

struct bench_request {
    char *buf; /* where prepare writes the request bytes (cap BENCH_REQ_MAX) */
    size_t len;
    int kind;       /* caller's tag */
    uint64_t a, b;  /* caller's data */
    bool want_body; /* keep the reply body for the reply callback */
    int conn;       /* the connection it goes out on, 0 .. connections - 1 (set before prepare) */
};

/*
 * Fills r->buf/len (and the tags). Returns 0 when a request was prepared,
 * 1 when there is nothing to send (the connection retries when it becomes
 * idle again), -1 on a bug-level failure (stops the run).
 */
typedef int (*bench_prepare_cb)(void *ud, struct bench_request *r);
/* A reply arrived. body is NULL unless want_body; valid during the call only. */
typedef void (*bench_reply_cb)(void *ud, const struct bench_request *r, int status, const char *body, size_t len);
/* The request was sent but no reply came (connection error, timeout at the drain bound). May be NULL. */
typedef void (*bench_fail_cb)(void *ud, const struct bench_request *r);

struct bench_loadgen_config {
    const char *host; /* numeric IPv4 or IPv6 address */
    int port;
    int connections;
    double rate;            /* requests/s over all connections; 0 = closed loop */
    uint64_t requests;      /* stop issuing after this many requests */
    double seconds;         /* stop issuing after this long (from the release) */
    double drain_seconds;   /* then wait at most this long for replies in flight */
    double connect_seconds; /* release when all connected or after this long */
    bench_prepare_cb prepare;
    bench_reply_cb reply;
    bench_fail_cb fail;
    void *ud;
};

/*
 * Runs one phase to its end. Adds into res: requests (replies), errors,
 * status_counts, latency (and series[] when res->series is non-NULL, one
 * histogram per second, at most BENCH_MAX_SECONDS), and sets seconds.
 * Returns 0, or -1 when no connection could be established or prepare
 * failed (message on stderr).
 */
int bench_loadgen_run(const struct bench_loadgen_config *cfg, struct bench_result *res);

#endif
