/*
 * Every route of the API, once: method, pattern, handler and metrics label.
 */
#ifndef SLK_ROUTES_H
#define SLK_ROUTES_H

#include <stdbool.h>

#include "slk/http.h"

#define SLK_ROUTE_MAP(XX)                                                                                              \
    XX(LIVEZ, "livez", GET, "/livez", slk_handle_livez)                                                                \
    XX(HEALTHZ, "healthz", GET, "/healthz", slk_handle_livez)                                                          \
    XX(READYZ, "readyz", GET, "/readyz", slk_handle_readyz)                                                            \
    XX(METRICS, "metrics", GET, "/metrics", slk_handle_metrics)                                                        \
    XX(INSTRUCTOR_PUT, "instructor_put", PUT, "/api/v1/instructors/{id}", slk_handle_instructor_put)                   \
    XX(INSTRUCTOR_GET, "instructor_get", GET, "/api/v1/instructors/{id}", slk_handle_instructor_get)                   \
    XX(AVAILABILITY, "availability", GET, "/api/v1/instructors/{id}/availability", slk_handle_availability)            \
    XX(EVENTS, "events", GET, "/api/v1/instructors/{id}/events", slk_handle_events)                                    \
    XX(BLOCK_CREATE, "block_create", POST, "/api/v1/instructors/{id}/availability/block", slk_handle_block_create)     \
    XX(BLOCK_DELETE, "block_delete", DELETE, "/api/v1/instructors/{id}/availability/block/{block_uuid}",               \
       slk_handle_block_delete)                                                                                        \
    XX(BOOKING_LIST, "booking_list", GET, "/api/v1/bookings", slk_handle_booking_list)                                 \
    XX(BOOKING_CREATE, "booking_create", POST, "/api/v1/bookings", slk_handle_booking_create)                          \
    XX(BOOKING_GET, "booking_get", GET, "/api/v1/bookings/{uuid}", slk_handle_booking_get)                             \
    XX(BOOKING_PAYMENT, "booking_payment", POST, "/api/v1/bookings/{uuid}/payment-callback",                           \
       slk_handle_booking_payment)                                                                                     \
    XX(BOOKING_CANCEL, "booking_cancel", POST, "/api/v1/bookings/{uuid}/cancel", slk_handle_booking_cancel)            \
    XX(BOOKING_ACCEPT, "booking_accept", POST, "/api/v1/bookings/{uuid}/accept", slk_handle_booking_accept)            \
    XX(BOOKING_REJECT, "booking_reject", POST, "/api/v1/bookings/{uuid}/reject", slk_handle_booking_reject)            \
    XX(BOOKING_COMPLETE, "booking_complete", POST, "/api/v1/bookings/{uuid}/complete", slk_handle_booking_complete)    \
    XX(BOOKING_NO_SHOW, "booking_no_show", POST, "/api/v1/bookings/{uuid}/no-show", slk_handle_booking_no_show)        \
    XX(BOOKING_RESCHEDULE, "booking_reschedule", POST, "/api/v1/bookings/{uuid}/reschedule",                           \
       slk_handle_booking_reschedule)                                                                                  \
    XX(BOOKING_EXTEND, "booking_extend", POST, "/api/v1/bookings/{uuid}/extend", slk_handle_booking_extend)            \
    XX(BOOKING_EVENTS, "booking_events", GET, "/api/v1/bookings/{uuid}/events", slk_handle_booking_events)             \
    XX(TEST_CLOCK, "test_clock", POST, "/internal/clock", slk_handle_test_clock)

enum slk_route_id {
#define SLK__ROUTE_ENUM(id, label, method, pattern, handler) SLK_ROUTE_##id,
    SLK_ROUTE_MAP(SLK__ROUTE_ENUM)
#undef SLK__ROUTE_ENUM
        SLK_ROUTE__COUNT,
    SLK_ROUTE_NONE = SLK_ROUTE__COUNT, /* 404s and parse errors */
};

const char *slk_route_label(int route_id);

struct slk_router;
/* A router with every route of SLK_ROUTE_MAP. */
struct slk_router *slk_routes_create(void);
/* The HTTP server's dispatch callback: route, authenticate (R-SEC), call the handler. */
void slk_routes_dispatch(struct slk_request *req);

#define SLK__ROUTE_DECL(id, label, method, pattern, handler) void handler(struct slk_request *req);
SLK_ROUTE_MAP(SLK__ROUTE_DECL)
#undef SLK__ROUTE_DECL

/* Before the rate limit: answers a hold this worker was just refused, without Redis (refusal_cache.h), or parks
 * it behind the same question in flight (hold_flights.h). True when req is taken care of. */
bool slk_booking_create_refused_early(struct slk_request *req);
/* The rest of an authenticated request's way: rate limit, Idempotency-Key gate, handler. */
void slk_routes_resume(struct slk_request *req);

#endif
