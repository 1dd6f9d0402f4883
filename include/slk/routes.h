/*
 * Every route of the API, once: method, pattern, handler and metrics label.
 */
#ifndef SLK_ROUTES_H
#define SLK_ROUTES_H

#include "slk/http.h"

#define SLK_ROUTE_MAP(XX)                                                                                              \
    XX(LIVEZ, GET, "/livez", slk_handle_livez)                                                                         \
    XX(HEALTHZ, GET, "/healthz", slk_handle_livez)                                                                     \
    XX(READYZ, GET, "/readyz", slk_handle_readyz)                                                                      \
    XX(METRICS, GET, "/metrics", slk_handle_metrics)                                                                   \
    XX(INSTRUCTOR_PUT, PUT, "/api/v1/instructors/{id}", slk_handle_instructor_put)                                     \
    XX(INSTRUCTOR_GET, GET, "/api/v1/instructors/{id}", slk_handle_instructor_get)                                     \
    XX(BOOKING_CREATE, POST, "/api/v1/bookings", slk_handle_booking_create)                                            \
    XX(BOOKING_GET, GET, "/api/v1/bookings/{uuid}", slk_handle_booking_get)                                            \
    XX(BOOKING_PAYMENT, POST, "/api/v1/bookings/{uuid}/payment-callback", slk_handle_booking_payment)                  \
    XX(BOOKING_CANCEL, POST, "/api/v1/bookings/{uuid}/cancel", slk_handle_booking_cancel)                              \
    XX(BOOKING_ACCEPT, POST, "/api/v1/bookings/{uuid}/accept", slk_handle_booking_accept)                              \
    XX(BOOKING_REJECT, POST, "/api/v1/bookings/{uuid}/reject", slk_handle_booking_reject)

enum slk_route_id {
#define SLK__ROUTE_ENUM(id, method, pattern, handler) SLK_ROUTE_##id,
    SLK_ROUTE_MAP(SLK__ROUTE_ENUM)
#undef SLK__ROUTE_ENUM
        SLK_ROUTE__COUNT,
    SLK_ROUTE_NONE = SLK_ROUTE__COUNT, /* 404s and parse errors */
};

const char *slk_route_label(int route_id);

#define SLK__ROUTE_DECL(id, method, pattern, handler) void handler(struct slk_request *req);
SLK_ROUTE_MAP(SLK__ROUTE_DECL)
#undef SLK__ROUTE_DECL

#endif
