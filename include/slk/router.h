/*
 * Method + path to handler. Patterns are literal segments and {name}
 * parameters ("/api/v1/bookings/{uuid}/cancel"); a parameter matches one
 * non-empty segment. A path that matches a pattern with another method
 * yields 405 with the Allow list; no match at all yields 404.
 */
#ifndef SLK_ROUTER_H
#define SLK_ROUTER_H

#include "slk/http.h"

struct slk_router;

typedef void (*slk_handler_cb)(struct slk_request *req);

enum slk_route_result {
    SLK_ROUTE_FOUND = 0,
    SLK_ROUTE_NOT_FOUND,
    SLK_ROUTE_METHOD_NOT_ALLOWED,
};

struct slk_route_match {
    slk_handler_cb handler;
    int route_id;
    struct slk_str params[SLK_MAX_ROUTE_PARAMS]; /* point into the matched path */
    size_t num_params;
    char allow[128]; /* "GET, PUT" when SLK_ROUTE_METHOD_NOT_ALLOWED */
};

struct slk_router *slk_router_create(void);
void slk_router_free(struct slk_router *r);
/* route_id is the caller's (metrics label index). Patterns must outlive the router. */
int slk_router_add(struct slk_router *r, enum slk_method m, const char *pattern, slk_handler_cb handler,
                   int route_id) SLK_MUST_CHECK;
enum slk_route_result slk_router_match(const struct slk_router *r, enum slk_method m, const char *path, size_t path_len,
                                       struct slk_route_match *out);

#endif
