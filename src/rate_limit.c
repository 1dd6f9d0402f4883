/*
 * The rate limit gate (R-HOLD abuse caps): one token bucket per client in
 * Redis, refilled and drawn from by lua/rate_limit.lua in one round trip.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/auth.h"
#include "slk/gates.h"
#include "slk/log.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/scripts.h"
#include "slk/worker.h"

/* "slk:rl:{" role ":" sub "}" */
#define RATE_KEY_MAX (16 + 16 + SLK_MAX_ID_LEN)

struct rate_check {
    struct slk_request *req;
    slk_gate_next next;
};

/*
 * The limiter is a guard, not a dependency: when Redis cannot answer, the
 * request goes on and meets Redis in its handler, which reports the outage
 * properly (503) or serves what does not need Redis.
 */
static void pass_open(struct slk_request *req, slk_gate_next next, const char *why)
{
    slk_log(SLK_LOG_WARN, "rate limit not checked; request let through", "error", why, NULL);
    next(req);
}

static void reply_limited(struct slk_request *req, long long wait_ms)
{
    if (wait_ms < 1)
        wait_ms = 1;
    char seconds[24];
    snprintf(seconds, sizeof(seconds), "%lld", (wait_ms + 999) / 1000);
    if (slk_response_header(req, "Retry-After", seconds) != 0) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_error(req, 429, "rate_limited", "Too many requests; retry after the time in Retry-After",
                    json_pack("{s:I}", "retry_after_ms", (json_int_t)wait_ms));
}

static void on_checked(void *data, redisReply *r, const char *err)
{
    struct rate_check *rc = data;
    struct slk_request *req = rc->req;
    slk_gate_next next = rc->next;
    free(rc);
    if (err != NULL) {
        pass_open(req, next, err);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        pass_open(req, next, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        pass_open(req, next, "unexpected reply");
        return;
    }
    if (r->element[0]->integer == 1) {
        next(req);
        return;
    }
    reply_limited(req, r->element[1]->integer);
}

void slk_rate_limit_check(struct slk_request *req, slk_gate_next next)
{
    const struct slk_config *cfg = req->worker->cfg;
    if (cfg->rate_limit_per_second <= 0) {
        next(req);
        return;
    }
    /* The role is part of the client: one id used under two roles (tests, admin tools) gets two buckets. */
    char key[RATE_KEY_MAX], rate[16], burst[16];
    int klen = snprintf(key, sizeof(key), "slk:rl:{%s:%s}", slk_role_name((enum slk_role)req->user_role),
                        req->user_sub[0] != '\0' ? req->user_sub : "-");
    snprintf(rate, sizeof(rate), "%d", cfg->rate_limit_per_second);
    snprintf(burst, sizeof(burst), "%d", cfg->rate_limit_burst > 0 ? cfg->rate_limit_burst : 1);
    if (klen < 0 || (size_t)klen >= sizeof(key)) {
        pass_open(req, next, "client id too long");
        return;
    }
    struct rate_check *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        pass_open(req, next, "out of memory");
        return;
    }
    rc->req = req;
    rc->next = next;
    const char *keys[1] = {key};
    const char *args[2] = {rate, burst};
    int err = slk_script_eval(req->worker->redis, SLK_SCRIPT_RATE_LIMIT, on_checked, rc, 1, keys, NULL, 2, args, NULL);
    if (err != 0) {
        free(rc);
        pass_open(req, next, slk_strerror(err));
    }
}
