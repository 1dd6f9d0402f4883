/*
 * Process-wide metrics, updated with relaxed atomics from every worker and
 * rendered in Prometheus text format. No locks on the hot path.
 */
#ifndef SLK_METRICS_H
#define SLK_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum slk_hold_outcome {
    SLK_HOLD_GRANTED = 0,
    SLK_HOLD_TAKEN,    /* 409 slot_unavailable */
    SLK_HOLD_REJECTED, /* validation */
    SLK_HOLD_ERROR,    /* Redis unavailable etc. */
    SLK_HOLD__COUNT,
};

enum slk_backend {
    SLK_BACKEND_REDIS = 0,
    SLK_BACKEND_PG,
    SLK_BACKEND__COUNT,
};

/* route_id from routes.h (SLK_ROUTE_NONE allowed); duration in ns. */
void slk_metrics_request(int route_id, int status, uint64_t duration_ns);
void slk_metrics_hold(enum slk_hold_outcome outcome);
/* err: 0 for a reply, non-zero for an error/timeout. */
void slk_metrics_backend_call(enum slk_backend b, uint64_t duration_ns, int err);
void slk_metrics_connections_add(int delta);

/* Renders everything; returns malloc'd text (caller frees) and its length. */
char *slk_metrics_render(size_t *len);

#endif
