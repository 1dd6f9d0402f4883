/*
 * Idempotency-Key gate (R-HOLD). A POST with the header runs at most once
 * per (user, key): lua/idempotency.lua takes a lease on the key before the
 * handler runs, and the handler's reply (seen through req->on_reply) is kept
 * for IDEMPOTENCY_TTL_HOURS so that repeats replay it. 5xx and 429 replies
 * drop the lease instead: a retry must be able to run again.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "handlers/handlers_internal.h"
#include "idempotency_internal.h"
#include "slk/auth.h"
#include "slk/config.h"
#include "slk/gates.h"
#include "slk/log.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/scripts.h"
#include "slk/worker.h"

#define JSON_TYPE "application/json; charset=utf-8"

struct idem {
    struct slk_request *req;
    slk_gate_next next;
    uv_timer_t timer;  /* polls while a duplicate waits for the first reply */
    bool timer_open;   /* timer initialised: the state is then freed in its close callback */
    bool waiting;      /* deadline is set */
    uint64_t deadline; /* loop time (ms) after which a waiting duplicate gets 409 */
    char key[SLK_IDEM_REDIS_KEY_MAX];
    char fp[SLK_IDEM_FP_HEX];
    char owner[SLK_IDEM_OWNER_HEX];
};

bool slk__idem_key_valid(const char *key, size_t len)
{
    if (len < 1 || len > SLK_IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The separators cannot occur in a method or a path, so two different requests never feed the same bytes. */
int slk__idem_fingerprint(const struct slk_request *req, char out[SLK_IDEM_FP_HEX])
{
    const char *method = slk_method_name(req->method);
    unsigned char md[32];
    unsigned int mdlen = 0;
    int rc = SLK_ENOMEM;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        goto fail;
    rc = SLK_EIO;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(ctx, method, strlen(method)) != 1 ||
        EVP_DigestUpdate(ctx, " ", 1) != 1 || EVP_DigestUpdate(ctx, req->path.ptr, req->path.len) != 1 ||
        EVP_DigestUpdate(ctx, "?", 1) != 1 || EVP_DigestUpdate(ctx, req->query.ptr, req->query.len) != 1 ||
        EVP_DigestUpdate(ctx, "\n", 1) != 1 || EVP_DigestUpdate(ctx, req->body, req->body_len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != sizeof(md))
        goto fail;
    to_hex(md, sizeof(md), out);
    rc = 0;
fail:
    EVP_MD_CTX_free(ctx);
    return rc;
}

bool slk__idem_find_location(const char *headers, size_t len, const char **value, size_t *vlen)
{
    static const char name[] = "location:";
    if (headers == NULL)
        return false;
    const char *p = headers, *end = headers + len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        size_t line = (size_t)(eol - p);
        if (line >= sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
            const char *v = p + sizeof(name) - 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *value = v;
            *vlen = (size_t)(eol - v);
            return true;
        }
        if ((size_t)(end - eol) < 2)
            break;
        p = eol + 2;
    }
    return false;
}

/* The lease must outlive the longest a handler can run, or a slow first request would let a duplicate in. */
uint64_t slk__idem_lease_ms(const struct slk_config *cfg)
{
    uint64_t lease = cfg->request_timeout_ms;
    /* The longest handler chain (a reschedule) makes up to four Postgres queries and six Redis calls in a row. */
    uint64_t backends = 4 * cfg->pg_timeout_ms + 6 * cfg->redis_timeout_ms;
    if (backends > lease)
        lease = backends;
    return lease > SLK_IDEM_MIN_LEASE_MS ? lease : SLK_IDEM_MIN_LEASE_MS;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void idem_release(struct idem *st)
{
    if (!st->timer_open) {
        free(st);
        return;
    }
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, on_timer_closed);
}

/* Releases the state, then answers; the request is gone afterwards. */
static void reply_error(struct idem *st, int status, const char *code, const char *message)
{
    struct slk_request *req = st->req;
    idem_release(st);
    if (status == 409 && slk_response_header(req, "Retry-After", "1") != 0) {
        /* Only OOM gets here; the 409 alone still says to come back. */
    }
    slk_reply_error(req, status, code, message, NULL);
}

static void reply_unavailable(struct idem *st)
{
    struct slk_request *req = st->req;
    idem_release(st);
    slk__reply_backend_error(req, SLK_EUNAVAILABLE, "redis");
}

static void reply_in_progress(struct idem *st)
{
    reply_error(st, 409, "idempotency_in_progress",
                "A request with this Idempotency-Key is still in progress; retry shortly");
}

static void reply_reused(struct idem *st)
{
    reply_error(st, 422, "idempotency_key_reused", "This Idempotency-Key was already used for a different request");
}

static bool is_bulk(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

/* {"DONE", fp, code, loc, body}: the first reply, byte for byte. */
static void replay(struct idem *st, const redisReply *r)
{
    struct slk_request *req = st->req;
    const redisReply *code = r->element[2], *loc = r->element[3], *body = r->element[4];
    long status = strtol(code->str, NULL, 10);
    idem_release(st);
    if (status < 200 || status > 599) {
        slk_log(SLK_LOG_ERROR, "idempotency: kept reply has a bad status", "status", code->str, NULL);
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    if ((loc->len > 0 && slk_response_header(req, "Location", loc->str) != 0) ||
        slk_response_header(req, "Idempotent-Replayed", "true") != 0) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_response_send(req, (int)status, body->len > 0 ? JSON_TYPE : NULL, body->str, body->len);
}

static void on_reply(struct slk_request *req, int status, const char *body, size_t len);
static int send_begin(struct idem *st);

static void on_poll(uv_timer_t *t)
{
    struct idem *st = t->data;
    /* A drain would otherwise wait for the whole wait; the client retries elsewhere. */
    if (st->req->worker->draining) {
        reply_in_progress(st);
        return;
    }
    if (send_begin(st) != 0)
        reply_unavailable(st);
}

/* The same request is running elsewhere: poll until its reply is kept, or give up at the deadline. */
static void wait_for_first(struct idem *st)
{
    struct slk_worker *w = st->req->worker;
    uint64_t now = uv_now(&w->loop);
    if (!st->waiting) {
        st->waiting = true;
        st->deadline = now + w->cfg->idempotency_wait_ms;
    }
    if (now >= st->deadline) {
        reply_in_progress(st);
        return;
    }
    if (!st->timer_open) {
        if (uv_timer_init(&w->loop, &st->timer) != 0) {
            reply_unavailable(st);
            return;
        }
        st->timer.data = st;
        st->timer_open = true;
    }
    uint64_t delay = st->deadline - now < SLK_IDEM_POLL_MS ? st->deadline - now : SLK_IDEM_POLL_MS;
    uv_timer_start(&st->timer, on_poll, delay, 0);
}

static void run_first(struct idem *st)
{
    struct slk_request *req = st->req;
    if (st->timer_open)
        uv_timer_stop(&st->timer);
    req->on_reply = on_reply;
    req->gate_data = st;
    st->next(req);
}

static void on_begin(void *data, redisReply *r, const char *err)
{
    struct idem *st = data;
    if (err != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !is_bulk(r->element[0])) {
        if (err == NULL)
            slk_log(SLK_LOG_ERROR, "idempotency: unexpected script reply", "error",
                    r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "shape", NULL);
        reply_unavailable(st);
        return;
    }
    const char *tag = r->element[0]->str;
    if (strcmp(tag, "NEW") == 0) {
        run_first(st);
        return;
    }
    bool done = strcmp(tag, "DONE") == 0 && r->elements == 5;
    bool running = strcmp(tag, "RUNNING") == 0 && r->elements == 2;
    for (size_t i = 1; i < r->elements; i++) {
        if (!is_bulk(r->element[i]))
            done = running = false;
    }
    if (!done && !running) {
        slk_log(SLK_LOG_ERROR, "idempotency: unexpected script reply", "tag", tag, NULL);
        reply_unavailable(st);
        return;
    }
    if (strcmp(r->element[1]->str, st->fp) != 0) {
        reply_reused(st);
        return;
    }
    if (done)
        replay(st, r);
    else
        wait_for_first(st);
}

static int send_begin(struct idem *st)
{
    struct slk_worker *w = st->req->worker;
    if (w->redis == NULL)
        return SLK_ECLOSED;
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRIu64, slk__idem_lease_ms(w->cfg));
    const char *keys[1] = {st->key};
    const char *args[4] = {"begin", st->fp, lease, st->owner};
    return slk_script_eval(w->redis, SLK_SCRIPT_IDEMPOTENCY, on_begin, st, 1, keys, NULL, 4, args, NULL);
}

static void on_kept(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err == slk_redis_err_shutdown)
        return;
    if (err != NULL || r == NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "idempotency: could not update the key; it expires with its lease", "error",
                err != NULL ? err
                : r != NULL ? r->str
                            : "no reply",
                NULL);
}

/* Fire and forget: the reply goes out whether or not Redis keeps it. */
static void keep_reply(struct idem *st, int status, const char *body, size_t len)
{
    struct slk_request *req = st->req;
    struct slk_worker *w = req->worker;
    if (w->redis == NULL)
        return;
    const char *keys[1] = {st->key};
    int rc;
    if (status >= 500 || status == 429) {
        const char *args[2] = {"abort", st->owner};
        rc = slk_script_eval(w->redis, SLK_SCRIPT_IDEMPOTENCY, on_kept, NULL, 1, keys, NULL, 2, args, NULL);
    } else {
        char ttl[24], code[16];
        snprintf(ttl, sizeof(ttl), "%" PRIu64, (uint64_t)w->cfg->idempotency_ttl_hours * 3600 * 1000);
        snprintf(code, sizeof(code), "%d", status);
        const char *loc = "";
        size_t loc_len = 0;
        if (!slk__idem_find_location(req->resp_headers, req->resp_headers_len, &loc, &loc_len))
            loc = "";
        const char *args[6] = {"finish", st->owner, ttl, code, loc, body != NULL ? body : ""};
        const size_t lens[6] = {6, strlen(st->owner), strlen(ttl), strlen(code), loc_len, body != NULL ? len : 0};
        rc = slk_script_eval(w->redis, SLK_SCRIPT_IDEMPOTENCY, on_kept, NULL, 1, keys, NULL, 6, args, lens);
    }
    if (rc != 0)
        slk_log(SLK_LOG_WARN, "idempotency: could not update the key; it expires with its lease", "error",
                slk_strerror(rc), NULL);
}

static void on_reply(struct slk_request *req, int status, const char *body, size_t len)
{
    struct idem *st = req->gate_data;
    req->gate_data = NULL;
    if (st == NULL)
        return;
    keep_reply(st, status, body, len);
    idem_release(st);
}

static int count_headers(const struct slk_request *req, const char *lower_name)
{
    size_t n = strlen(lower_name);
    int count = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct slk_header *h = &req->headers[i];
        if (h->name.len == n && strncasecmp(h->name.ptr, lower_name, n) == 0)
            count++;
    }
    return count;
}

static void reply_bad_key(struct slk_request *req, const char *message)
{
    slk_reply_error(req, 400, "bad_request", message, json_pack("{s:s}", "field", "Idempotency-Key"));
}

static struct idem *idem_create(struct slk_request *req, slk_gate_next next, const struct slk_str *key)
{
    struct idem *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->req = req;
    st->next = next;
    unsigned char owner[SLK_IDEM_OWNER_BYTES];
    int n = snprintf(st->key, sizeof(st->key), "slk:idem:{%s:%s}:%.*s", slk_role_name(req->user_role), req->user_sub,
                     (int)key->len, key->ptr);
    if (n < 0 || (size_t)n >= sizeof(st->key) || slk__idem_fingerprint(req, st->fp) != 0 ||
        slk_random_bytes(owner, sizeof(owner)) != 0) {
        free(st);
        return NULL;
    }
    to_hex(owner, sizeof(owner), st->owner);
    return st;
}

void slk_idempotency_begin(struct slk_request *req, slk_gate_next next)
{
    const struct slk_str *key = slk_request_header(req, "idempotency-key");
    if (key == NULL) {
        next(req);
        return;
    }
    if (count_headers(req, "idempotency-key") > 1) {
        reply_bad_key(req, "Only one Idempotency-Key header is allowed");
        return;
    }
    if (!slk__idem_key_valid(key->ptr, key->len)) {
        reply_bad_key(req, "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces");
        return;
    }
    struct idem *st = idem_create(req, next, key);
    if (st == NULL) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    /* Never run the handler unprotected: without Redis the gate cannot promise at-most-once. */
    if (send_begin(st) != 0)
        reply_unavailable(st);
}
