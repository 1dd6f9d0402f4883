/*
 * GET /api/v1/instructors/{id}/availability?from=…&to=…[&duration_minutes=N][&include_held=true]
 *
 * Settings come from the worker's cache; the state of every unit involved
 * comes from one call of lua/availability.lua, which also checks that the
 * cached settings are current. Postgres is not touched on this path.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/availability.h"
#include "slk/booking.h"
#include "slk/instructor_store.h"
#include "slk/log.h"
#include "slk/redis.h"
#include "slk/avail_cache.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define DAY_MS ((int64_t)24 * 3600 * 1000)
#define DEFAULT_RANGE_MS (7 * DAY_MS)

struct avail_op {
    struct slk_request *req;
    char instructor[SLK_MAX_ID_LEN + 1];
    char *from, *to;      /* query values as given; NULL when absent */
    int asked_minutes;    /* duration_minutes as asked; 0: the instructor's default */
    int duration_minutes; /* what the plan uses */
    bool include_held;
    int attempts;
    int64_t from_ms, to_ms;
    struct slk_avail_basis basis; /* the plan, and the unit states once read (kept with the reply) */
    struct slk_instructor ins;    /* a copy: the cache entry may change before Redis answers */
    char cache_key[640];          /* instructor, settings version, query: "" when the reply is not to be kept */
    size_t cache_key_len;
    uint32_t gen;   /* the instructor's generation when the Redis read was sent (avail_cache.h) */
    size_t *reread; /* bringing a kept reply up to date: the plan minutes to read again; NULL: read all */
    size_t num_reread;
    uint64_t serial; /* ... and which kept reply it started from */
};

static void op_free(struct avail_op *op)
{
    free(op->from);
    free(op->to);
    slk_avail_basis_clear(&op->basis);
    free(op->reread);
    free(op);
}

static void fail_invalid(struct avail_op *op, const char *field, const char *why)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk_reply_invalid(req, field, why);
}

static void fail_backend(struct avail_op *op, int err, const char *what)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk__reply_backend_error(req, err, what);
}

/* A Redis read that could not be sent. */
static void fail_query(struct avail_op *op, int rc)
{
    fail_backend(op, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE, "redis");
}

/*
 * A date ("2025-03-30") is the instructor's local midnight; as "to" it means
 * the end of that day. A timestamp without offset is local time too.
 */
static int resolve_bound(const char *s, struct slk_tz *tz, bool end_of_day, int64_t *out)
{
    char buf[40];
    bool date = strlen(s) == 10;
    if (date && end_of_day) {
        int64_t day;
        bool naive;
        struct slk_local_time lt;
        snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
        if (slk_time_parse_rfc3339(buf, strlen(buf), &day, &naive, &lt) != 0)
            return SLK_EINVAL;
        slk_time_format_rfc3339(day + DAY_MS, buf);
        buf[10] = '\0';
        s = buf;
    }
    char text[40];
    snprintf(text, sizeof(text), date ? "%sT00:00:00" : "%s", s);
    bool naive;
    struct slk_local_time lt;
    if (slk_time_parse_rfc3339(text, strlen(text), out, &naive, &lt) != 0)
        return SLK_EINVAL;
    if (!naive)
        return 0;
    if (slk_tz_from_local(tz, &lt, out) == 0)
        return 0;
    /* A midnight that does not exist (a DST change at 00:00): the day starts an hour later. */
    lt.hour += 1;
    return date ? slk_tz_from_local(tz, &lt, out) : SLK_EINVAL;
}

static const char *resolve_range(struct avail_op *op, const struct slk_instructor_entry *e, int64_t now,
                                 const char **why)
{
    *why = "from must be a date (YYYY-MM-DD) or an RFC 3339 timestamp";
    if (op->from == NULL)
        op->from_ms = now / 60000 * 60000; /* whole minutes: the same question within a minute keeps its ETag */
    else if (resolve_bound(op->from, e->tz, false, &op->from_ms) != 0)
        return "from";
    *why = "to must be a date (YYYY-MM-DD) or an RFC 3339 timestamp";
    if (op->to == NULL)
        op->to_ms = op->from_ms + DEFAULT_RANGE_MS;
    else if (resolve_bound(op->to, e->tz, true, &op->to_ms) != 0)
        return "to";
    *why = "to must be after from";
    if (op->to_ms <= op->from_ms)
        return "to";
    *why = "at most 62 days per query";
    if (op->to_ms - op->from_ms > SLK_AVAIL_MAX_DAYS * DAY_MS + 3600 * 1000) /* a DST day may add an hour */
        return "to";
    int g = e->ins.granularity_minutes;
    /* Each plan afresh: a retry after the settings changed takes the new instructor's default. */
    op->duration_minutes = op->asked_minutes;
    if (op->duration_minutes == 0)
        op->duration_minutes = g * 4 <= SLK_MAX_BOOKING_MINUTES ? g * 4 : g;
    *why = "duration_minutes must be a multiple of the instructor's grid, at most 1440";
    if (op->duration_minutes % g != 0 || op->duration_minutes > SLK_MAX_BOOKING_MINUTES)
        return "duration_minutes";
    return NULL;
}

static void on_units(void *data, redisReply *r, const char *err);
static void on_mget(void *data, redisReply *r, const char *err);
static void on_instructor(void *data, struct slk_instructor_entry *e, int err);

/* The plan minutes this read asks for: all, or those a kept reply needs again. */
static size_t read_count(const struct avail_op *op)
{
    return op->reread != NULL ? op->num_reread : op->basis.plan.num_minutes;
}

static size_t read_index(const struct avail_op *op, size_t i)
{
    return op->reread != NULL ? op->reread[i] : i;
}

/* Unit keys into one allocation: keys[first..] for every minute read, after `first` fixed keys set by the caller. */
static const char **unit_keys(const struct avail_op *op, size_t first, char **storage)
{
    size_t count = read_count(op), nkeys = first + count;
    const char **keys = malloc(nkeys * sizeof(char *));
    *storage = malloc(nkeys * SLK_KEY_MAX);
    if (keys == NULL || *storage == NULL) {
        free(keys);
        free(*storage);
        *storage = NULL;
        return NULL;
    }
    for (size_t i = 0; i < nkeys; i++)
        keys[i] = *storage + i * SLK_KEY_MAX;
    for (size_t i = 0; i < count; i++)
        slk_key_unit(*storage + (first + i) * SLK_KEY_MAX, op->instructor, op->basis.plan.minutes[read_index(op, i)]);
    return keys;
}

/*
 * Free slots only: one MGET of the version key and every unit, a plain
 * command Redis serves far faster than a script. With include_held the
 * script also reads each hold's expiry.
 */
static int query_units(struct avail_op *op)
{
    bool plain = !op->include_held;
    size_t fixed = plain ? 2 : 1; /* MGET + version key, or the meta key */
    char *storage;
    const char **keys = unit_keys(op, fixed, &storage);
    if (keys == NULL)
        return SLK_ENOMEM;
    int n = (int)(fixed + read_count(op)), rc;
    if (op->reread == NULL) {
        op->gen = slk_avail_gen(op->instructor);
        op->basis.read_ms = op->basis.held_read_ms = slk_clock_now_ms();
    }
    if (plain) {
        keys[0] = "MGET";
        slk_key_version(storage + SLK_KEY_MAX, op->instructor);
        rc = slk_redis_command_argv(op->req->worker->redis, on_mget, op, n, keys, NULL);
    } else {
        slk_key_meta(storage, op->instructor);
        char ver[24];
        snprintf(ver, sizeof(ver), "%" PRId64, op->ins.version);
        const char *args[1] = {ver};
        rc = slk_script_eval(op->req->worker->redis, SLK_SCRIPT_AVAILABILITY, on_units, op, n, keys, NULL, 1, args,
                             NULL);
    }
    free(keys);
    free(storage);
    return rc;
}

static void plan(struct avail_op *op, const struct slk_instructor_entry *e)
{
    int64_t now = slk_clock_now_ms();
    const char *why;
    const char *bad = resolve_range(op, e, now, &why);
    if (bad != NULL) {
        fail_invalid(op, bad, why);
        return;
    }
    op->ins = e->ins;
    slk_avail_basis_clear(&op->basis);
    free(op->reread);
    op->reread = NULL;
    struct slk_avail_plan *p = &op->basis.plan;
    int rc = slk_avail_plan(p, &e->ins, e->tz, op->from_ms, op->to_ms, op->duration_minutes, now);
    if (rc == 0 && op->include_held && p->num_minutes + 2 > SLK_SCRIPT_MAX_ARGS) {
        fail_invalid(op, "to", "too many grid units for include_held in one query: ask for fewer days");
        return;
    }
    if (rc == 0) {
        op->basis.states = calloc(p->num_minutes + 1, 1);
        op->basis.expires = calloc(p->num_minutes + 1, sizeof(int64_t));
        rc = op->basis.states != NULL && op->basis.expires != NULL ? query_units(op) : SLK_ENOMEM;
    }
    if (rc != 0)
        fail_query(op, rc);
}

static void send_reply(struct slk_request *req, const char *body, size_t len, const char *etag);

static void reply_kept(struct avail_op *op, const struct slk_avail_hit *hit)
{
    struct slk_request *req = op->req;
    op_free(op);
    send_reply(req, hit->body, hit->len, hit->etag);
}

static int copy_basis(struct slk_avail_basis *to, const struct slk_avail_basis *from)
{
    const struct slk_avail_plan *p = &from->plan;
    *to = *from;
    to->plan.starts = malloc((p->num_starts + 1) * sizeof(int64_t));
    to->plan.minutes = malloc((p->num_minutes + 1) * sizeof(int64_t));
    to->states = malloc(p->num_minutes + 1);
    to->expires = malloc((p->num_minutes + 1) * sizeof(int64_t));
    if (to->plan.starts == NULL || to->plan.minutes == NULL || to->states == NULL || to->expires == NULL) {
        slk_avail_basis_clear(to);
        return SLK_ENOMEM;
    }
    if (p->num_starts > 0)
        memcpy(to->plan.starts, p->starts, p->num_starts * sizeof(int64_t));
    if (p->num_minutes > 0) {
        memcpy(to->plan.minutes, p->minutes, p->num_minutes * sizeof(int64_t));
        memcpy(to->states, from->states, p->num_minutes);
        memcpy(to->expires, from->expires, p->num_minutes * sizeof(int64_t));
    }
    return 0;
}

/*
 * The instructor changed since the reply was kept, or the units it shows
 * held are due to be read again (avail_cache.h): read again only those
 * units. False when everything must be read (the caller plans afresh).
 */
static bool bring_up_to_date(struct avail_op *op, const struct slk_instructor_entry *e, struct slk_avail_hit *hit)
{
    const struct slk_avail_basis *b = hit->basis;
    size_t n = b->plan.num_minutes;
    size_t *touched = malloc((n + 1) * sizeof(size_t));
    if (touched == NULL)
        return false;
    int64_t now = slk_clock_now_ms();
    size_t k = slk_avail_plan_touched(&b->plan, &e->ins, hit->changes, hit->num_changes,
                                      hit->held_due ? b->states : NULL, touched);
    if (k == 0) {
        /* Nothing it shows moved (and nothing is held): the reply get() just found is current. */
        free(touched);
        slk_avail_cache_renew(op->req->worker->avail_cache, op->cache_key, op->cache_key_len, hit->serial, hit->gen,
                              hit->held_due ? now : 0, hit);
        reply_kept(op, hit);
        return true;
    }
    if (k == n || copy_basis(&op->basis, b) != 0) {
        free(touched);
        return false;
    }
    if (hit->held_due)
        op->basis.held_read_ms = now;
    op->ins = e->ins;
    op->from_ms = b->from_ms;
    op->to_ms = b->to_ms;
    op->duration_minutes = b->plan.duration_minutes;
    op->reread = touched;
    op->num_reread = k;
    op->serial = hit->serial;
    op->gen = hit->gen;
    int rc = query_units(op);
    if (rc != 0)
        fail_query(op, rc);
    return true;
}

/* The same question asked a moment ago: the same answer while nothing of the instructor changed, else updated. */
static bool reply_from_cache(struct avail_op *op, const struct slk_instructor_entry *e)
{
    const struct slk_str *q = &op->req->query;
    int n = snprintf(op->cache_key, sizeof(op->cache_key), "%s\n%" PRId64 "\n%.*s", op->instructor, e->ins.version,
                     (int)q->len, q->ptr);
    if (n < 0 || (size_t)n >= sizeof(op->cache_key)) {
        op->cache_key_len = 0;
        return false;
    }
    op->cache_key_len = (size_t)n;
    struct slk_avail_hit hit;
    switch (slk_avail_cache_get(op->req->worker->avail_cache, op->instructor, op->cache_key, op->cache_key_len,
                                slk_clock_now_ms(), &hit)) {
    case SLK_AVAIL_HIT:
        reply_kept(op, &hit);
        return true;
    case SLK_AVAIL_CHANGED:
        return bring_up_to_date(op, e, &hit);
    case SLK_AVAIL_MISS:
        break;
    }
    return false;
}

static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct avail_op *op = data;
    if (err != 0) {
        fail_backend(op, err, err == SLK_ENOTFOUND ? "instructor" : "redis");
        return;
    }
    if (op->attempts == 0 && reply_from_cache(op, e))
        return;
    plan(op, e);
}

/*
 * Strong validator. The reply is a function of the request, the settings
 * version, the candidate starts and the unit states read from Redis (and,
 * with include_held, their expiries), so hashing those is hashing the reply,
 * at a fraction of the bytes.
 */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void etag_of(const struct avail_op *op, char out[24])
{
    const struct slk_avail_plan *p = &op->basis.plan;
    const unsigned char *states = op->basis.states;
    int64_t head[6] = {op->ins.version,      op->from_ms,      op->to_ms,
                       op->duration_minutes, op->include_held, (int64_t)p->num_starts};
    uint64_t h = fnv(1469598103934665603ULL, head, sizeof(head));
    h = fnv(h, op->ins.id, strlen(op->ins.id));
    if (p->num_starts > 0)
        h = fnv(h, &p->starts[0], sizeof(int64_t));
    if (op->include_held) {
        h = fnv(h, states, p->num_minutes);
        h = fnv(h, op->basis.expires, p->num_minutes * sizeof(int64_t));
    } else {
        /* Free slots depend only on free versus taken: a hold turning into a booking changes nothing. */
        for (size_t i = 0; i < p->num_minutes; i++) {
            unsigned char taken = states[i] != SLK_UNIT_FREE;
            h = fnv(h, &taken, 1);
        }
    }
    snprintf(out, 24, "\"%016" PRIx64 "\"", h);
}

static bool etag_matches(const struct slk_request *req, const char *etag)
{
    const struct slk_str *inm = slk_request_header(req, "if-none-match");
    if (inm == NULL)
        return false;
    size_t n = strlen(etag);
    for (size_t i = 0; i + n <= inm->len; i++) {
        if (memcmp(inm->ptr + i, etag, n) == 0)
            return true;
    }
    return inm->len == 1 && inm->ptr[0] == '*';
}

/* Replies, and keeps the reply (body: malloc'd) with what it was computed from. */
static void reply_body(struct avail_op *op, char *body, size_t len, const char *etag)
{
    struct slk_request *req = op->req;
    char instructor[SLK_MAX_ID_LEN + 1], key[sizeof(op->cache_key)];
    size_t key_len = op->cache_key_len;
    uint32_t gen = op->gen;
    struct slk_avail_basis basis = op->basis;
    basis.from_ms = op->from_ms;
    basis.to_ms = op->to_ms;
    memset(&op->basis, 0, sizeof(op->basis));
    memcpy(instructor, op->instructor, sizeof(instructor));
    memcpy(key, op->cache_key, key_len);
    op_free(op);
    bool kept = key_len > 0 &&
                slk_avail_cache_put(req->worker->avail_cache, instructor, key, key_len, gen, &basis, body, len, etag);
    slk_avail_basis_clear(&basis);
    send_reply(req, body, len, etag);
    if (!kept)
        free(body);
}

static void send_reply(struct slk_request *req, const char *body, size_t len, const char *etag)
{
    if (slk_response_header(req, "ETag", etag) != 0 || slk_response_header(req, "Cache-Control", "no-cache") != 0) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    if (etag_matches(req, etag))
        slk_response_send(req, 304, NULL, body, len); /* headers only; Content-Length of the 200 */
    else
        slk_response_send(req, 200, "application/json; charset=utf-8", body, len);
}

/*
 * The states are read (all of them, or the ones a kept reply needed again,
 * `changed` saying whether any differs from what it had): reply.
 */
static void states_read(struct avail_op *op, bool changed)
{
    struct slk_avail_cache *cache = op->req->worker->avail_cache;
    struct slk_avail_hit kept;
    bool have_kept = op->reread != NULL && slk_avail_cache_peek(cache, op->cache_key, op->cache_key_len, op->serial,
                                                                slk_clock_now_ms(), &kept);
    if (have_kept && !changed) {
        slk_avail_cache_renew(cache, op->cache_key, op->cache_key_len, op->serial, op->gen, op->basis.held_read_ms,
                              &kept);
        reply_kept(op, &kept);
        return;
    }
    const struct slk_instructor *ins = &op->ins;
    char from[32], to[32], head[512], etag[24];
    slk_time_format_rfc3339(op->from_ms, from);
    slk_time_format_rfc3339(op->to_ms, to);
    /* Ids match ^[A-Za-z0-9._:-]+$ and zone ids are ICU-validated: nothing here needs escaping. */
    int n = snprintf(head, sizeof(head),
                     "{\"success\":true,\"message\":\"Availability\",\"data\":{\"instructor_uuid\":\"%s\","
                     "\"timezone\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"duration_minutes\":%d,\"slots\":",
                     ins->id, ins->timezone, from, to, op->duration_minutes);
    if (n <= 0 || (size_t)n >= sizeof(head)) {
        fail_backend(op, SLK_ENOMEM, "availability");
        return;
    }
    size_t len = 0;
    char *body = NULL;
    /* A few slots changed in a kept free-slots reply: edit it rather than write the whole window again. */
    if (have_kept && !op->include_held)
        body = slk_avail_slots_json_patch(&op->basis.plan, ins, kept.basis->states, op->basis.states, op->reread,
                                          op->num_reread, kept.body, kept.len, head, "}}", &len);
    if (body == NULL)
        body = slk_avail_slots_json(&op->basis.plan, ins, op->basis.states, op->basis.expires, op->include_held, head,
                                    "}}", &len);
    if (body == NULL) {
        fail_backend(op, SLK_ENOMEM, "availability");
        return;
    }
    etag_of(op, etag);
    reply_body(op, body, len, etag);
}

/* The settings changed (STALE) or Redis has none (NOLOAD): fetch them again, then plan again. */
static void retry_with_fresh_settings(struct avail_op *op, bool noload, const redisReply *stale_reply)
{
    if (op->attempts++ >= SLK_INSTRUCTOR_RESYNCS) {
        fail_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    slk_instructor_resync(op->req->worker, op->instructor, noload, stale_reply, on_instructor, op);
}

/* lua/availability.lua's reply: {"OK", state, expiry, ...} per unit read. */
static void on_units(void *data, redisReply *r, const char *err)
{
    struct avail_op *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR) {
        fail_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    size_t count = read_count(op);
    if (slk__script_reply_is(r, "OK") && r->elements == 1 + 2 * count) {
        bool changed = false;
        for (size_t i = 0; i < count; i++) {
            const redisReply *st = r->element[1 + 2 * i], *ttl = r->element[2 + 2 * i];
            size_t k = read_index(op, i);
            unsigned char state = (unsigned char)(st->type == REDIS_REPLY_INTEGER ? st->integer : SLK_UNIT_BOOKED);
            int64_t expires = ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0 ? ttl->integer : 0;
            changed |= op->basis.states[k] != state || op->basis.expires[k] != expires;
            op->basis.states[k] = state;
            op->basis.expires[k] = expires;
        }
        states_read(op, changed);
        return;
    }
    bool stale = slk__script_reply_is(r, "STALE"), noload = slk__script_reply_is(r, "NOLOAD");
    if (stale || noload) {
        retry_with_fresh_settings(op, noload, r);
        return;
    }
    fail_backend(op, SLK_EPROTO, "redis");
}

static enum slk_unit_state unit_state_of(const redisReply *v)
{
    if (v->type != REDIS_REPLY_STRING)
        return SLK_UNIT_FREE;
    if (v->len == 0)
        return SLK_UNIT_BOOKED; /* as the hold script sees it: the key exists */
    /* A hold's fencing token ('H:<uuid>' from earlier versions), as lua/availability.lua reads it. */
    if ((v->str[0] >= '0' && v->str[0] <= '9') || v->str[0] == 'H')
        return SLK_UNIT_HELD;
    return v->str[0] == 'X' ? SLK_UNIT_BLOCKED : SLK_UNIT_BOOKED;
}

/* MGET's reply: the version key, then one value per unit read. */
static void on_mget(void *data, redisReply *r, const char *err)
{
    struct avail_op *op = data;
    size_t count = read_count(op);
    if (err != NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 1 + count) {
        fail_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    const redisReply *ver = r->element[0];
    char expected[24];
    int len = snprintf(expected, sizeof(expected), "%" PRId64, op->ins.version);
    if (ver->type != REDIS_REPLY_STRING || ver->len != (size_t)len || memcmp(ver->str, expected, (size_t)len) != 0) {
        retry_with_fresh_settings(op, ver->type != REDIS_REPLY_STRING, NULL);
        return;
    }
    bool changed = false;
    for (size_t i = 0; i < count; i++) {
        size_t k = read_index(op, i);
        unsigned char state = (unsigned char)unit_state_of(r->element[1 + i]);
        changed |= op->basis.states[k] != state;
        op->basis.states[k] = state;
    }
    states_read(op, changed);
}

static const char *parse_query(struct slk_request *req, struct avail_op *op)
{
    op->from = slk_request_query_param(req, "from");
    op->to = slk_request_query_param(req, "to");
    char *duration = slk_request_query_param(req, "duration_minutes");
    char *held = slk_request_query_param(req, "include_held");
    const char *bad = NULL;
    if (duration != NULL) {
        char *end;
        long v = strtol(duration, &end, 10);
        if (*duration == '\0' || *end != '\0' || v <= 0 || v > SLK_MAX_BOOKING_MINUTES)
            bad = "duration_minutes";
        else
            op->asked_minutes = (int)v;
    }
    if (held != NULL) {
        op->include_held = strcmp(held, "true") == 0 || strcmp(held, "1") == 0;
        if (!op->include_held && strcmp(held, "false") != 0 && strcmp(held, "0") != 0)
            bad = "include_held";
    }
    free(duration);
    free(held);
    return bad;
}

void slk_handle_availability(struct slk_request *req)
{
    struct avail_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    if (!slk__instructor_param(req, op->instructor)) {
        op_free(op);
        slk_reply_error(req, 404, "not_found", "No such instructor", NULL);
        return;
    }
    const char *bad = parse_query(req, op);
    if (bad != NULL) {
        fail_invalid(op, bad, "duration_minutes must be a positive integer; include_held true or false");
        return;
    }
    slk_instructor_get(req->worker, op->instructor, on_instructor, op);
}
