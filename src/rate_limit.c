/*
 * The rate limit gate (R-HOLD abuse caps): one token bucket per client,
 * kept in Redis (lua/rate_limit.lua) and decided on the worker's view of it
 * (rate_view.h), so a request never waits for the limiter.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/auth.h"
#include "slk/gates.h"
#include "slk/log.h"
#include "slk/rate_view.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/scripts.h"
#include "slk/worker.h"

/* The bucket's Redis key, "slk:rl:{" role ":" sub "}", names the client in the view too. */
#define RATE_KEY_MAX SLK_RATE_CLIENT_MAX

struct charge {
    struct slk_worker *w;
    uint32_t tokens;
    size_t len;
    char key[RATE_KEY_MAX];
};

static int burst_of(const struct slk_config *cfg)
{
    return cfg->rate_limit_burst > 0 ? cfg->rate_limit_burst : 1;
}

static struct slk_rate_limits limits_of(const struct slk_config *cfg)
{
    int64_t interval_ns = 1000000000LL / cfg->rate_limit_per_second;
    return (struct slk_rate_limits){.interval_ns = interval_ns, .window_ns = interval_ns * burst_of(cfg)};
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

/*
 * The limiter is a guard, not a dependency: when Redis cannot answer, the
 * worker goes on limiting on its own view, and the request meets Redis in its
 * handler, which reports an outage properly (503) or serves what does not
 * need Redis.
 */
static void on_charged(void *data, redisReply *r, const char *err)
{
    struct charge *ch = data;
    if (err == NULL && r->type == REDIS_REPLY_INTEGER) {
        struct slk_rate_limits lim = limits_of(ch->w->cfg);
        slk_rate_view_charged(ch->w->rate_view, ch->key, ch->len, (int64_t)uv_hrtime(), (int64_t)r->integer * 1000,
                              ch->tokens, &lim);
    } else {
        slk_log(SLK_LOG_WARN, "rate limit not charged in redis", "error",
                err != NULL                    ? err
                : r->type == REDIS_REPLY_ERROR ? r->str
                                               : "unexpected reply",
                NULL);
        slk_rate_view_uncharged(ch->w->rate_view, ch->key, ch->len, ch->tokens);
    }
    free(ch);
}

static void send_charge(struct slk_worker *w, const char *key, size_t len, uint32_t tokens)
{
    struct charge *ch = malloc(sizeof(*ch));
    if (ch == NULL) {
        slk_rate_view_uncharged(w->rate_view, key, len, tokens);
        return;
    }
    *ch = (struct charge){.w = w, .tokens = tokens, .len = len};
    memcpy(ch->key, key, len);
    char rate[16], burst[16], count[16];
    snprintf(rate, sizeof(rate), "%d", w->cfg->rate_limit_per_second);
    snprintf(burst, sizeof(burst), "%d", burst_of(w->cfg));
    snprintf(count, sizeof(count), "%" PRIu32, tokens);
    const char *keys[1] = {ch->key};
    const size_t key_lens[1] = {len};
    const char *args[3] = {rate, burst, count};
    int err = slk_script_eval(w->redis, SLK_SCRIPT_RATE_LIMIT, on_charged, ch, 1, keys, key_lens, 3, args, NULL);
    if (err != 0)
        on_charged(ch, NULL, slk_strerror(err));
}

void slk_rate_limit_check(struct slk_request *req, slk_gate_next next)
{
    const struct slk_config *cfg = req->worker->cfg;
    if (cfg->rate_limit_per_second <= 0) {
        next(req);
        return;
    }
    /* The role is part of the client: one id used under two roles (tests, admin tools) gets two buckets. */
    char key[RATE_KEY_MAX];
    int klen = snprintf(key, sizeof(key), "slk:rl:{%s:%s}", slk_role_name((enum slk_role)req->user_role),
                        req->user_sub[0] != '\0' ? req->user_sub : "-");
    if (klen < 0 || (size_t)klen >= sizeof(key)) {
        slk_log(SLK_LOG_WARN, "rate limit not checked; request let through", "error", "client id too long", NULL);
        next(req);
        return;
    }
    struct slk_rate_limits lim = limits_of(cfg);
    int64_t wait_ns;
    uint32_t charge;
    if (!slk_rate_view_take(req->worker->rate_view, key, (size_t)klen, (int64_t)uv_hrtime(), &lim, &wait_ns, &charge)) {
        reply_limited(req, (long long)((wait_ns + 999999) / 1000000));
        return;
    }
    if (charge > 0)
        send_charge(req->worker, key, (size_t)klen, charge);
    next(req);
}
