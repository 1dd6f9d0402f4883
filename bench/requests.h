/*
 * The request bytes slotbench sends, written straight into a connection's
 * buffer (cap BENCH_REQ_MAX): no allocation. Each returns the length
 * written, or -1 when it does not fit. host is the Host header value;
 * token a bearer token (NULL: none).
 */
#ifndef SLOTBENCH_REQUESTS_H
#define SLOTBENCH_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "sign.h"

/* "YYYY-MM-DDTHH:MM:00Z" of an epoch minute into out[21]. */
void bench_format_minute(int64_t minute, char out[21]);

int bench_req_hold(char *buf, const char *host, const char *token, const char *student, const char *course,
                   const char *instructor, int64_t start_min, int minutes);
/* A signed "succeeded" payment callback for booking uuid (X-Signature at time t). */
int bench_req_pay(char *buf, const char *host, struct bench_signer *hook, const char *uuid, int64_t t);
int bench_req_cancel(char *buf, const char *host, const char *token, const char *uuid);
int bench_req_availability(char *buf, const char *host, const char *token, const char *instructor, int64_t from_min,
                           int64_t to_min);
/* PUT of an instructor with 24/7 UTC windows on a 15-minute grid. */
int bench_req_put_instructor(char *buf, const char *host, const char *token, const char *instructor, int hold_seconds);
int bench_req_get(char *buf, const char *host, const char *path);

#endif
