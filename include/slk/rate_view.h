/*
 * One worker's view of its clients' token buckets (the rate limit gate,
 * rate_limit.c). The buckets are kept in Redis (lua/rate_limit.lua), but a
 * request does not wait for Redis to decide: the worker takes the token from
 * its own view, lets the request through, and charges the token to the
 * Redis bucket on the side; each answer tells the view how far the bucket
 * really is in debt, tokens taken through other workers and processes
 * included. A client served by one worker is limited exactly; across
 * workers and processes, each may let one burst through before it hears
 * from Redis, and the bucket's debt makes the client wait it off afterwards.
 *
 * A client's first token in view is not charged at once: it rides with the
 * client's second if that comes while the token still counts (before the
 * bucket is full again, one interval later); after that it changes nothing
 * and is dropped. Most callers of a booking page ask once per worker, and a
 * single request then costs Redis nothing (the charge is the largest part
 * of what an availability query costs Redis). Until it is charged, other
 * workers see the bucket one token fuller, for less than one interval.
 *
 * The view is GCRA (as the script): per client the theoretical arrival time
 * (TAT) of its next request on the monotonic clock, in ns. Fixed size,
 * 4-way sets; a client whose bucket is full again costs nothing and is the
 * first to make room. Not thread-safe: one per loop.
 */
#ifndef SLK_RATE_VIEW_H
#define SLK_RATE_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLK_RATE_CLIENT_MAX 112 /* the bucket's Redis key: "slk:rl:{" role ":" sub "}" */

struct slk_rate_view;

struct slk_rate_limits {
    int64_t interval_ns; /* one token every interval (1 s / rate) */
    int64_t window_ns;   /* interval × bucket size */
};

struct slk_rate_view *slk_rate_view_create(void);
void slk_rate_view_free(struct slk_rate_view *v);

/*
 * Takes a token from the client's bucket: true, or false with *wait_ns until one is back. *charge is how many
 * tokens to charge to Redis now: 0 for the client's first token in view, 2 with its second if the first still
 * counts, else 1.
 */
bool slk_rate_view_take(struct slk_rate_view *v, const char *client, size_t len, int64_t now_ns,
                        const struct slk_rate_limits *lim, int64_t *wait_ns, uint32_t *charge);
/*
 * Redis charged tokens taken here: after them, the bucket's TAT was debt_ns
 * ahead of Redis' clock. Tokens taken here and not charged or not answered
 * yet come on top.
 */
void slk_rate_view_charged(struct slk_rate_view *v, const char *client, size_t len, int64_t now_ns, int64_t debt_ns,
                           uint32_t tokens, const struct slk_rate_limits *lim);
/* A charge of tokens that got no answer (Redis away): they are no longer awaited. */
void slk_rate_view_uncharged(struct slk_rate_view *v, const char *client, size_t len, uint32_t tokens);

#endif
