/*
 * Hold questions in flight: the first wave of a stampede (R-HOLD under
 * contention).
 *
 * Kept refusals (refusal_cache.h) answer a slot's stampede once Redis has
 * refused one hold for it; until then every click of the first wave would
 * still go to Redis. So the first request for a question (these units of
 * this instructor) takes off, and the same question asked on this worker
 * while it is in flight waits for its reply instead: a 409 is copied to the
 * waiters, a 201 means the units are now taken (409 for the whole range),
 * and any other reply (422, 429, 5xx) lets each waiter go its own way as if
 * it had never waited. Like a kept refusal, a waiter skips the rate limit.
 * Requests with an Idempotency-Key never wait (their reply must be stored).
 */
#ifndef SLK_HOLD_FLIGHTS_H
#define SLK_HOLD_FLIGHTS_H

#include <stdbool.h>

#include "slk/http.h"
#include "slk/refusal_cache.h"

struct slk_hold_flights;

struct slk_hold_flights *slk_hold_flights_create(void);
/* Flights end with their requests, which a worker answers before it stops. */
void slk_hold_flights_free(struct slk_hold_flights *f);

/* Parks req behind the same question in flight; true when it did (req is then answered or resumed later). */
bool slk_hold_flights_wait(struct slk_hold_flights *f, const struct slk_refusal_key *k, struct slk_request *req);

/* req goes on to ask the question itself: later askers wait for its reply (seen through req->on_reply). */
void slk_hold_flights_take_off(struct slk_hold_flights *f, const struct slk_refusal_key *k, struct slk_request *req);

#endif
