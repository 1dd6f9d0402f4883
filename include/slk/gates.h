/*
 * Gates: asynchronous steps between authentication and a route's handler.
 * Each either calls next(req) once, or replies itself (and then never calls
 * next). Order (routes.c): rate limit, then Idempotency-Key on POSTs.
 */
#ifndef SLK_GATES_H
#define SLK_GATES_H

#include "slk/http.h"

typedef void (*slk_gate_next)(struct slk_request *req);

/*
 * R-HOLD abuse caps: a per-client token bucket kept in Redis
 * (lua/rate_limit.lua), decided on the worker's view of it (rate_view.h);
 * 429 rate_limited + Retry-After.
 */
void slk_rate_limit_check(struct slk_request *req, slk_gate_next next);

/*
 * Idempotency-Key (R-HOLD): a POST carrying the header runs at most once per
 * (user, key) within IDEMPOTENCY_TTL_HOURS; repeats replay the first reply.
 */
void slk_idempotency_begin(struct slk_request *req, slk_gate_next next);

#endif
