#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "slk/auth.h"
#include "slk/config.h"
#include "slk/gates.h"
#include "slk/response.h"
#include "slk/router.h"
#include "slk/routes.h"
#include "slk/timeutil.h"
#include "slk/token_cache.h"
#include "slk/worker.h"

static const char *const labels[SLK_ROUTE__COUNT + 1] = {
#define SLK__ROUTE_LABEL(id, label, method, pattern, handler) [SLK_ROUTE_##id] = label,
    SLK_ROUTE_MAP(SLK__ROUTE_LABEL)
#undef SLK__ROUTE_LABEL
        [SLK_ROUTE_NONE] = "none",
};

const char *slk_route_label(int route_id)
{
    if (route_id < 0 || route_id > SLK_ROUTE_NONE)
        route_id = SLK_ROUTE_NONE;
    return labels[route_id];
}

/* Registration and dispatch: route match, authentication, then the handler. */

struct route_def {
    enum slk_method method;
    const char *pattern;
    slk_handler_cb handler;
};

static const struct route_def route_defs[SLK_ROUTE__COUNT] = {
#define SLK__ROUTE_DEF(id, label, method, pattern, handler) [SLK_ROUTE_##id] = {SLK_METHOD_##method, pattern, handler},
    SLK_ROUTE_MAP(SLK__ROUTE_DEF)
#undef SLK__ROUTE_DEF
};

struct slk_router *slk_routes_create(void)
{
    struct slk_router *r = slk_router_create();
    if (r == NULL)
        return NULL;
    for (int i = 0; i < SLK_ROUTE__COUNT; i++) {
        if (slk_router_add(r, route_defs[i].method, route_defs[i].pattern, route_defs[i].handler, i) != 0) {
            slk_router_free(r);
            return NULL;
        }
    }
    return r;
}

static bool needs_auth(int route_id)
{
    return strncmp(route_defs[route_id].pattern, "/api/", 5) == 0 && route_id != SLK_ROUTE_BOOKING_PAYMENT;
}

/* R-SEC: Bearer JWT, HS256 only. Returns 0 or replies 401 itself. */
static int authenticate(struct slk_request *req)
{
    const struct slk_config *cfg = req->worker->cfg;
    if (cfg->auth_disabled) {
        snprintf(req->user_sub, sizeof(req->user_sub), "anonymous");
        req->user_role = SLK_ROLE_ADMIN;
        return 0;
    }
    const struct slk_str *h = slk_request_header(req, "authorization");
    static const char bearer[] = "Bearer ";
    if (h == NULL || h->len <= sizeof(bearer) - 1 || strncasecmp(h->ptr, bearer, sizeof(bearer) - 1) != 0) {
        slk_reply_error(req, 401, "unauthorized", "A bearer token is required", NULL);
        return -1;
    }
    struct slk_identity id;
    const char *token = h->ptr + sizeof(bearer) - 1;
    size_t len = h->len - (sizeof(bearer) - 1);
    int64_t now = slk_clock_now_ms() / 1000;
    int rc = 0;
    if (!slk_token_cache_get(req->worker->tokens, token, len, now, &id)) {
        rc = slk_jwt_verify_keyed(req->worker->jwt_key, token, len, now, &id);
        if (rc == 0)
            slk_token_cache_put(req->worker->tokens, token, len, &id);
    }
    if (rc != 0) {
        slk_reply_error(req, 401, "unauthorized",
                        rc == SLK_EEXPIRED ? "The token has expired" : "The token is not valid", NULL);
        return -1;
    }
    memcpy(req->user_sub, id.sub, sizeof(req->user_sub));
    req->user_role = id.role;
    return 0;
}

/* R-PAY: the payment engine proves itself with X-Signature; it is the caller "payment" from here on. */
static int verify_signature(struct slk_request *req)
{
    const struct slk_str *sig = slk_request_header(req, "x-signature");
    const char *secret = req->worker->cfg->webhook_secret;
    int rc = sig == NULL
                 ? SLK_EAUTH
                 : slk_signature_verify(sig->ptr, sig->len, req->body, req->body_len, (const unsigned char *)secret,
                                        strlen(secret), slk_clock_now_ms() / 1000);
    if (rc != 0) {
        slk_reply_error(req, 401, "bad_signature",
                        rc == SLK_EAUTH ? "Missing or invalid X-Signature" : "X-Signature timestamp out of tolerance",
                        NULL);
        return -1;
    }
    snprintf(req->user_sub, sizeof(req->user_sub), "payment");
    req->user_role = SLK_ROLE_NONE;
    return 0;
}

static void run_handler(struct slk_request *req)
{
    req->handler(req);
}

static void after_rate_limit(struct slk_request *req)
{
    if (req->method == SLK_METHOD_POST)
        slk_idempotency_begin(req, run_handler);
    else
        run_handler(req);
}

void slk_routes_dispatch(struct slk_request *req)
{
    struct slk_route_match m;
    enum slk_route_result res = slk_router_match(req->worker->router, req->method, req->path.ptr, req->path.len, &m);
    if (res == SLK_ROUTE_NOT_FOUND) {
        req->route_id = SLK_ROUTE_NONE;
        slk_reply_error(req, 404, "not_found", "No such resource", NULL);
        return;
    }
    if (res == SLK_ROUTE_METHOD_NOT_ALLOWED) {
        req->route_id = SLK_ROUTE_NONE;
        if (slk_response_header(req, "Allow", m.allow) != 0) {
            slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
            return;
        }
        slk_reply_error(req, 405, "method_not_allowed", "Method not allowed on this resource",
                        json_pack("{s:s}", "allow", m.allow));
        return;
    }
    req->route_id = m.route_id;
    memcpy(req->params, m.params, sizeof(m.params));
    req->num_params = m.num_params;
    req->handler = m.handler;
    if (m.route_id == SLK_ROUTE_BOOKING_PAYMENT) {
        /* Not rate limited: the payment engine retries on its own schedule and must always get through. */
        if (verify_signature(req) == 0)
            after_rate_limit(req);
        return;
    }
    if (!needs_auth(m.route_id)) {
        run_handler(req);
        return;
    }
    if (authenticate(req) != 0)
        return;
    /* A refusal answered from memory costs less than the rate-limit call itself, so it is not charged. */
    if (m.route_id == SLK_ROUTE_BOOKING_CREATE && slk_booking_create_refused_early(req))
        return;
    slk_routes_resume(req);
}

void slk_routes_resume(struct slk_request *req)
{
    slk_rate_limit_check(req, after_rate_limit);
}
