#define _GNU_SOURCE /* memmem */
#include "scenario.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "audit.h"
#include "loadgen.h"
#include "requests.h"
#include "sign.h"

#define SETUP_CONNECTIONS 32
#define SETUP_SECONDS 60.0
/* Every hold leaves at least this long before its start: the hold's life is min(hold_seconds, time to start). */
#define LEAD_MINUTES (24 * 60)
#define UNIT_MINUTES 15
#define MIXED_WINDOW_MINUTES (7 * 24 * 60)

enum kind { K_PUT = 1, K_HOLD, K_PAY, K_CANCEL, K_AVAIL, K_LIVEZ };
enum fate { F_KEEP = 0, F_PAY, F_CANCEL, F_EXPIRE };

struct hold {
    char uuid[BENCH_UUID_LEN + 1];
    int64_t fence;
    uint32_t ins;
    uint8_t fate;
    uint64_t student; /* the student's number: sub "<prefix>s<n>" */
    int64_t start_min;
};

/* Attempts kept whole (click_index), at most (~600 bytes each): a burst's default 1,000 students × 10 slots fit. */
#define CLICK_CACHE_MAX (1u << 16)

struct ctx {
    const struct bench_options *o;
    struct bench_result *res; /* the measured result */
    struct bench_result *aux; /* setup and follow-up phases */
    struct bench_signer *jwt, *hook;
    char prefix[48];
    char course[64];
    int64_t exp, base_min;
    uint64_t rng, seq, mixed_holds;
    uint64_t clicks; /* attempts on hot slots so far (next_clicker) */
    /* The bytes of each clicker's attempt on each hot slot, built once (click_index): --users × --slots. */
    char **click_req;
    size_t *click_len;
    size_t n_click;
    int instructors, expire_instructors;
    struct hold *holds;
    size_t n_holds, cap_holds;
    size_t *pending; /* mixed: holds not yet confirmed or cancelled (a stack: newest first) */
    size_t n_pending, cap_pending;
    char (*confirmed)[BENCH_UUID_LEN + 1];
    size_t n_confirmed, cap_confirmed;
    size_t cursor;           /* follow-up: next hold to look at */
    uint64_t last_expire_ns; /* when the last hold left to expire was granted */
    bool setup_failed;
};

static uint64_t next_rand(struct ctx *x)
{
    /* xorshift64*: reproducible with --seed, and cheap. */
    x->rng ^= x->rng >> 12;
    x->rng ^= x->rng << 25;
    x->rng ^= x->rng >> 27;
    return x->rng * 2685821657736338717ULL;
}

/*
 * Ids are uuids, "<run id>-<kind>-4000-8000-<n, 12 digits>", as the API names instructors, students and courses:
 * every Redis key carries its instructor's id and the server keeps a uuid as its 16 bytes, so with ids of another
 * shape the bench would show Redis smaller or larger than it is in use. (A --run-id other than 8 hex digits
 * makes ids of another shape; they work all the same.)
 */
enum id_kind { ID_INSTRUCTOR, ID_STUDENT, ID_COURSE, ID_ADMIN };

static void bench_id(const struct ctx *x, enum id_kind kind, uint64_t n, char out[64])
{
    if (snprintf(out, 64, "%s%04x-4000-8000-%012" PRIu64, x->prefix, (unsigned)kind, n % 1000000000000u) >= 64)
        fprintf(stderr, "slotbench: id %s… cut at 63 characters (a shorter --run-id keeps them apart)\n", out);
}

static void instructor_id(const struct ctx *x, uint32_t i, char out[64])
{
    bench_id(x, ID_INSTRUCTOR, i, out);
}

static void student_id(const struct ctx *x, uint64_t n, char out[64])
{
    bench_id(x, ID_STUDENT, n, out);
}

static int student_token(struct ctx *x, uint64_t n, char out[BENCH_JWT_MAX])
{
    char sub[64];
    student_id(x, n, sub);
    return bench_jwt_mint(x->jwt, sub, "student", x->exp, out, BENCH_JWT_MAX);
}

static int64_t hot_start(const struct ctx *x, int k)
{
    return x->base_min + (int64_t)k * 2 * x->o->slot_minutes;
}

/* Spread slots: the j-th slot of an instructor, with a free gap after each. */
static int64_t spread_start(const struct ctx *x, uint64_t j)
{
    return x->base_min + (int64_t)j * 2 * x->o->slot_minutes;
}

static int hold_request(struct ctx *x, struct bench_request *r, uint32_t ins, int64_t start, uint64_t student)
{
    char token[BENCH_JWT_MAX], sid[64], iid[64];
    if (student_token(x, student, token) < 0)
        return -1;
    student_id(x, student, sid);
    instructor_id(x, ins, iid);
    int n = bench_req_hold(r->buf, x->o->host_header, token, sid, x->course, iid, start, x->o->slot_minutes);
    if (n < 0)
        return -1;
    r->len = (size_t)n;
    r->kind = K_HOLD;
    r->want_body = true;
    return 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 1024;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* The booking uuid of a 201 reply: the first "uuid" of its data object. */
static int reply_uuid(const char *body, size_t len, char out[BENCH_UUID_LEN + 1])
{
    static const char key[] = "\"uuid\":\"";
    if (body == NULL)
        return -1;
    const char *p = memmem(body, len, key, sizeof(key) - 1);
    if (p == NULL || (size_t)(body + len - p) < sizeof(key) - 1 + BENCH_UUID_LEN)
        return -1;
    memcpy(out, p + sizeof(key) - 1, BENCH_UUID_LEN);
    out[BENCH_UUID_LEN] = '\0';
    return 0;
}

/* The fence_token of a 201 reply, or -1. */
static int64_t reply_fence(const char *body, size_t len)
{
    static const char key[] = "\"fence_token\":";
    const char *p = body != NULL ? memmem(body, len, key, sizeof(key) - 1) : NULL;
    if (p == NULL)
        return -1;
    int64_t v = 0;
    const char *end = body + len;
    for (p += sizeof(key) - 1; p < end && *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v > 0 ? v : -1;
}

/* Remembers a granted hold; returns its index or -1. */
static long add_hold(struct ctx *x, const char *body, size_t len, uint32_t ins, uint64_t student, int64_t start,
                     int fate)
{
    if (grow((void **)&x->holds, &x->cap_holds, x->n_holds + 1, sizeof(*x->holds)) != 0)
        return -1;
    struct hold *h = &x->holds[x->n_holds];
    if (reply_uuid(body, len, h->uuid) != 0)
        return -1;
    h->fence = reply_fence(body, len);
    h->ins = ins;
    h->student = student;
    h->start_min = start;
    h->fate = (uint8_t)fate;
    return (long)x->n_holds++;
}

static void add_confirmed(struct ctx *x, const char *uuid)
{
    if (grow((void **)&x->confirmed, &x->cap_confirmed, x->n_confirmed + 1, sizeof(*x->confirmed)) != 0)
        return;
    memcpy(x->confirmed[x->n_confirmed++], uuid, BENCH_UUID_LEN + 1);
}

static int run_phase(struct ctx *x, struct bench_result *res, int connections, uint64_t requests, double seconds,
                     double rate, bench_prepare_cb prepare, bench_reply_cb reply)
{
    struct bench_loadgen_config cfg = {
        .host = x->o->host,
        .port = x->o->port,
        .connections = connections > 0 ? connections : 1,
        .rate = rate,
        .requests = requests,
        .seconds = seconds,
        .drain_seconds = x->o->drain_seconds,
        .connect_seconds = x->o->connect_seconds,
        .prepare = prepare,
        .reply = reply,
        .ud = x,
    };
    if ((uint64_t)cfg.connections > requests && requests > 0)
        cfg.connections = (int)requests;
    return bench_loadgen_run(&cfg, res);
}

/* ---- setup: instructors ---- */

static int put_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    if (x->seq >= (uint64_t)x->instructors)
        return 1;
    uint32_t i = (uint32_t)x->seq++;
    char iid[64];
    instructor_id(x, i, iid);
    int hold_s = (int)i < x->expire_instructors ? x->o->expire_hold_seconds : x->o->hold_seconds;
    /* One admin identity per instructor, like one student per hold: the server's rate limit is per user. */
    char sub[64], admin[BENCH_JWT_MAX];
    bench_id(x, ID_ADMIN, i, sub);
    if (bench_jwt_mint(x->jwt, sub, "admin", x->exp, admin, sizeof(admin)) < 0)
        return -1;
    int n = bench_req_put_instructor(r->buf, x->o->host_header, admin, iid, hold_s);
    if (n < 0)
        return -1;
    r->len = (size_t)n;
    r->kind = K_PUT;
    r->a = i;
    return 0;
}

static void setup_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    (void)body;
    (void)len;
    if (status != 200 && status != 201) {
        if (!x->setup_failed)
            fprintf(stderr, "slotbench: setup request (kind %d) got HTTP %d\n", r->kind, status);
        x->setup_failed = true;
    }
}

static int setup_instructors(struct ctx *x)
{
    memset(x->aux, 0, sizeof(*x->aux));
    x->seq = 0;
    int rc =
        run_phase(x, x->aux, SETUP_CONNECTIONS, (uint64_t)x->instructors, SETUP_SECONDS, 0, put_prepare, setup_reply);
    x->seq = 0;
    if (rc != 0 || x->setup_failed || x->aux->requests != (uint64_t)x->instructors) {
        fprintf(stderr, "slotbench: could not create the %d instructor(s) (is the admin token accepted?)\n",
                x->instructors);
        return -1;
    }
    return 0;
}

/* ---- follow-up: pay, confirm, cancel the holds whose fate says so ---- */

static int followup_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    while (x->cursor < x->n_holds) {
        size_t i = x->cursor++;
        const struct hold *h = &x->holds[i];
        int n;
        if (h->fate == F_PAY) {
            n = bench_req_pay(r->buf, x->o->host_header, x->hook, h->uuid, (int64_t)time(NULL));
            r->kind = K_PAY;
        } else if (h->fate == F_CANCEL) {
            char token[BENCH_JWT_MAX];
            if (student_token(x, h->student, token) < 0)
                return -1;
            n = bench_req_cancel(r->buf, x->o->host_header, token, h->uuid);
            r->kind = K_CANCEL;
        } else {
            continue;
        }
        if (n < 0)
            return -1;
        r->len = (size_t)n;
        r->a = i;
        return 0;
    }
    return 1;
}

static void followup_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    (void)body;
    (void)len;
    x->res->followup_requests++;
    if (status == 200) {
        x->res->followup_ok++;
        if (r->kind == K_PAY)
            add_confirmed(x, x->holds[r->a].uuid);
    } else {
        x->res->followup_failed++;
    }
}

static int followup(struct ctx *x, int connections)
{
    memset(x->aux, 0, sizeof(*x->aux));
    x->cursor = 0;
    int rc = run_phase(x, x->aux, connections, UINT64_MAX, SETUP_SECONDS, 0, followup_prepare, followup_reply);
    x->res->followup_requests += x->aux->errors;
    x->res->followup_failed += x->aux->errors;
    return rc;
}

/* ---- burst ---- */

/*
 * Where a clicker's attempt on hot slot k is kept (false: nowhere): a student
 * who clicks again sends the same bytes every time (same token, same body),
 * so they are built once and the load generator's CPU goes to sending them.
 * Hot-reject's setup holders and --users 0 (a new student each time) are
 * built every time.
 */
static bool click_index(const struct ctx *x, int k, uint64_t student, size_t *i)
{
    uint64_t slots = (uint64_t)x->o->slots, c = student - slots;
    if (x->click_req == NULL || student < slots || c >= (uint64_t)x->o->users)
        return false;
    *i = (size_t)(c * slots + (uint64_t)k);
    return true;
}

/* A hold on hot slot k by a student; r->a is the slot, r->b the student. */
static int hot_hold_request(struct ctx *x, struct bench_request *r, int k, uint64_t student)
{
    size_t i = 0;
    bool kept = click_index(x, k, student, &i);
    if (kept && x->click_req[i] != NULL) {
        memcpy(r->buf, x->click_req[i], x->click_len[i]);
        r->len = x->click_len[i];
        r->kind = K_HOLD;
        r->want_body = true;
    } else {
        if (hold_request(x, r, 0, hot_start(x, k), student) != 0)
            return -1;
        char *copy = kept ? malloc(r->len) : NULL;
        if (copy != NULL) {
            memcpy(copy, r->buf, r->len);
            x->click_req[i] = copy;
            x->click_len[i] = r->len;
        }
    }
    r->a = (uint64_t)k;
    r->b = student;
    return 0;
}

/*
 * The student behind the next attempt on a hot slot, sent on connection
 * conn: one of --users students who click again and again, as a stampede's
 * clients do (with no more students than connections, a connection is
 * always the same student; with more, they take turns), or a new one every
 * time (--users 0). Numbered from --slots up: hot-reject's setup holders
 * come first.
 */
static uint64_t next_clicker(struct ctx *x, int conn)
{
    uint64_t n = x->clicks++, users = (uint64_t)x->o->users;
    uint64_t k = users == 0 ? n : users <= (uint64_t)x->o->connections ? (uint64_t)conn % users : n % users;
    return (uint64_t)x->o->slots + k;
}

static int burst_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    return hot_hold_request(x, r, (int)(next_rand(x) % (uint64_t)x->o->slots), next_clicker(x, r->conn));
}

static void burst_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    if (status != 201)
        return;
    x->res->successes++;
    x->res->audit.winners[r->a]++;
    if (add_hold(x, body, len, 0, r->b, hot_start(x, (int)r->a), F_PAY) < 0)
        fprintf(stderr, "slotbench: a 201 without a booking uuid\n");
}

/* ---- hot-reject ---- */

static int hot_setup_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    if (x->seq >= (uint64_t)x->o->slots)
        return 1;
    uint64_t k = x->seq++;
    return hot_hold_request(x, r, (int)k, k);
}

static void hot_setup_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    if (status != 201 || add_hold(x, body, len, 0, r->b, hot_start(x, (int)r->a), F_PAY) < 0) {
        fprintf(stderr, "slotbench: hot-reject setup: taking hot slot %d got HTTP %d\n", (int)r->a, status);
        x->setup_failed = true;
    }
}

static int hot_prepare(void *ud, struct bench_request *r)
{
    if (burst_prepare(ud, r) != 0)
        return -1;
    r->want_body = false;
    return 0;
}

static void hot_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    (void)body;
    (void)len;
    if (status == 409)
        x->res->successes++;
    else if (status == 201)
        x->res->audit.winners[r->a]++;
}

static int hot_setup(struct ctx *x)
{
    memset(x->aux, 0, sizeof(*x->aux));
    int rc =
        run_phase(x, x->aux, x->o->slots, (uint64_t)x->o->slots, SETUP_SECONDS, 0, hot_setup_prepare, hot_setup_reply);
    if (rc != 0 || x->setup_failed || x->n_holds != (size_t)x->o->slots)
        return -1;
    rc = followup(x, x->o->slots);
    if (rc != 0 || x->n_confirmed != (size_t)x->o->slots) {
        fprintf(stderr, "slotbench: hot-reject setup: only %zu of %d hot slots could be paid\n", x->n_confirmed,
                x->o->slots);
        return -1;
    }
    /* The setup's replies are not part of the report. */
    x->res->followup_requests = x->res->followup_ok = x->res->followup_failed = 0;
    return 0;
}

/* ---- steady ---- */

static int steady_fate(const struct ctx *x, uint64_t i, uint32_t ins)
{
    if ((int)ins < x->expire_instructors)
        return F_EXPIRE;
    int rest = 100 - x->o->expire_pct;
    if (rest <= 0)
        return F_KEEP;
    /* A multiplicative hash of the sequence number: spreads the shares over instructors and time. */
    int v = (int)(((i + 1) * 11400714819323198485ULL >> 40) % (uint64_t)rest);
    if (v < x->o->confirm_pct)
        return F_PAY;
    if (v < x->o->confirm_pct + x->o->cancel_pct)
        return F_CANCEL;
    return F_KEEP;
}

static int steady_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    uint64_t i = x->seq++;
    uint32_t ins = (uint32_t)(i % (uint64_t)x->instructors);
    if (hold_request(x, r, ins, spread_start(x, i / (uint64_t)x->instructors), i) != 0)
        return -1;
    r->a = i;
    return 0;
}

static void steady_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    if (status != 201)
        return;
    x->res->successes++;
    uint32_t ins = (uint32_t)(r->a % (uint64_t)x->instructors);
    int fate = steady_fate(x, r->a, ins);
    if (add_hold(x, body, len, ins, r->a, spread_start(x, r->a / (uint64_t)x->instructors), fate) < 0)
        fprintf(stderr, "slotbench: a 201 without a booking uuid\n");
    if (fate == F_EXPIRE)
        x->last_expire_ns = uv_hrtime();
}

/* ---- mixed, availability ---- */

/* A week of a random instructor's availability, asked by a fresh viewer each time. */
static int availability_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    char token[BENCH_JWT_MAX], iid[64];
    if (student_token(x, x->seq++, token) < 0)
        return -1;
    instructor_id(x, (uint32_t)(next_rand(x) % (uint64_t)x->instructors), iid);
    int n =
        bench_req_availability(r->buf, x->o->host_header, token, iid, x->base_min, x->base_min + MIXED_WINDOW_MINUTES);
    if (n < 0)
        return -1;
    r->len = (size_t)n;
    r->kind = K_AVAIL;
    return 0;
}

/* availability, livez: successes are the 200s. */
static void count_ok(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    (void)r;
    (void)body;
    (void)len;
    if (status == 200)
        x->res->successes++;
}

static int mixed_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    int dice = (int)(next_rand(x) % 100);
    if (dice >= 90 && dice < 98) {
        uint64_t h = x->mixed_holds++;
        uint32_t ins = (uint32_t)(h % (uint64_t)x->instructors);
        if (hold_request(x, r, ins, spread_start(x, h / (uint64_t)x->instructors), x->seq++) != 0)
            return -1;
        r->a = h;
        r->b = x->seq - 1;
        return 0;
    }
    if (dice >= 98 && x->n_pending > 0) {
        size_t i = x->pending[--x->n_pending];
        const struct hold *h = &x->holds[i];
        int n;
        if (dice == 98) {
            n = bench_req_pay(r->buf, x->o->host_header, x->hook, h->uuid, (int64_t)time(NULL));
            r->kind = K_PAY;
        } else {
            char token[BENCH_JWT_MAX];
            if (student_token(x, h->student, token) < 0)
                return -1;
            n = bench_req_cancel(r->buf, x->o->host_header, token, h->uuid);
            r->kind = K_CANCEL;
        }
        if (n < 0)
            return -1;
        r->len = (size_t)n;
        r->a = i;
        return 0;
    }
    /* Availability (also when there is no hold to confirm or cancel yet). */
    return availability_prepare(x, r);
}

static void mixed_reply(void *ud, const struct bench_request *r, int status, const char *body, size_t len)
{
    struct ctx *x = ud;
    if (status >= 200 && status < 300)
        x->res->successes++;
    if (r->kind == K_HOLD && status == 201) {
        uint32_t ins = (uint32_t)(r->a % (uint64_t)x->instructors);
        long i = add_hold(x, body, len, ins, r->b, spread_start(x, r->a / (uint64_t)x->instructors), F_KEEP);
        if (i >= 0 && grow((void **)&x->pending, &x->cap_pending, x->n_pending + 1, sizeof(size_t)) == 0)
            x->pending[x->n_pending++] = (size_t)i;
    } else if (r->kind == K_PAY && status == 200) {
        add_confirmed(x, x->holds[r->a].uuid);
    }
}

/* ---- livez ---- */

static int livez_prepare(void *ud, struct bench_request *r)
{
    struct ctx *x = ud;
    int n = bench_req_get(r->buf, x->o->host_header, "/livez");
    if (n < 0)
        return -1;
    r->len = (size_t)n;
    r->kind = K_LIVEZ;
    return 0;
}

/* ---- audit ---- */

static void sleep_seconds(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Holds left to expire: wait (bounded) until the last one is past its expiry, then read their unit keys back. */
static int audit_expired(struct ctx *x, struct bench_audit *a)
{
    size_t n = 0;
    for (size_t i = 0; i < x->n_holds; i++)
        n += x->holds[i].fate == F_EXPIRE;
    if (n == 0)
        return 0;
    struct bench_unit_hold *units = calloc(n, sizeof(*units));
    if (units == NULL)
        return -1;
    size_t j = 0;
    for (size_t i = 0; i < x->n_holds; i++) {
        const struct hold *h = &x->holds[i];
        if (h->fate != F_EXPIRE)
            continue;
        instructor_id(x, h->ins, units[j].instructor);
        memcpy(units[j].uuid, h->uuid, sizeof(units[j].uuid));
        units[j].fence = h->fence;
        units[j].first_minute = h->start_min;
        units[j].units = x->o->slot_minutes / UNIT_MINUTES;
        units[j].unit_minutes = UNIT_MINUTES;
        j++;
    }
    double since = (double)(uv_hrtime() - x->last_expire_ns) / 1e9;
    double wait = (double)x->o->expire_hold_seconds + 1.0 - since;
    if (!x->o->quiet && wait > 0)
        fprintf(stderr, "slotbench: waiting %.1f s for the holds left to expire\n", wait);
    sleep_seconds(wait);
    int rc = bench_audit_redis_leaks(x->o->redis_url, units, n, a);
    free(units);
    return rc;
}

static void audit_fail(struct bench_audit *a, const char *why)
{
    a->passed = false;
    snprintf(a->failure, sizeof(a->failure), "%s", why);
}

static void audit_run(struct ctx *x, int64_t winners_expected, bool check_winners)
{
    struct bench_audit *a = &x->res->audit;
    a->ran = true;
    a->winners_checked = check_winners;
    if (bench_audit_pg(x->o->database_url, x->prefix, (const char(*)[BENCH_UUID_LEN + 1]) x->confirmed, x->n_confirmed,
                       a) != 0) {
        audit_fail(a, "could not read Postgres");
        return;
    }
    if (audit_expired(x, a) != 0) {
        audit_fail(a, "could not read Redis");
        return;
    }
    bench_audit_decide(a, winners_expected);
}

static int write_confirmed(const struct ctx *x, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "slotbench: cannot write %s\n", path);
        return -1;
    }
    for (size_t i = 0; i < x->n_confirmed; i++)
        fprintf(f, "%s\n", x->confirmed[i]);
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- the scenarios ---- */

static int measured(struct ctx *x, bench_prepare_cb prepare, bench_reply_cb reply)
{
    const struct bench_options *o = x->o;
    if (!o->quiet)
        fprintf(stderr, "slotbench: %s: %d connections, up to %" PRIu64 " requests or %.0f s\n", o->scenario,
                o->connections, o->requests, o->seconds);
    return run_phase(x, x->res, o->connections, o->requests, o->seconds, o->rate, prepare, reply);
}

static int scenario_burst(struct ctx *x)
{
    x->instructors = 1;
    x->res->audit.hot_slots = x->o->slots;
    if (setup_instructors(x) != 0 || measured(x, burst_prepare, burst_reply) != 0)
        return -1;
    /* Every winner pays: counted as follow-up, not in the burst's numbers. */
    if (followup(x, x->o->connections < 64 ? x->o->connections : 64) != 0)
        return -1;
    audit_run(x, 1, true);
    return 0;
}

static int scenario_hot_reject(struct ctx *x)
{
    x->instructors = 1;
    x->res->audit.hot_slots = x->o->slots;
    if (setup_instructors(x) != 0 || hot_setup(x) != 0 || measured(x, hot_prepare, hot_reply) != 0)
        return -1;
    audit_run(x, 0, true);
    return 0;
}

static int scenario_steady(struct ctx *x)
{
    x->instructors = x->o->instructors;
    if (x->o->expire_pct > 0) {
        x->expire_instructors = (x->instructors * x->o->expire_pct + 50) / 100;
        if (x->expire_instructors == 0)
            x->expire_instructors = 1;
    }
    if (setup_instructors(x) != 0 || measured(x, steady_prepare, steady_reply) != 0)
        return -1;
    if (followup(x, x->o->connections) != 0)
        return -1;
    audit_run(x, 0, false);
    return 0;
}

static int scenario_mixed(struct ctx *x)
{
    x->instructors = x->o->instructors;
    if (setup_instructors(x) != 0 || measured(x, mixed_prepare, mixed_reply) != 0)
        return -1;
    audit_run(x, 0, false);
    return 0;
}

/* Mixed's availability queries alone, nothing changing: what its 90 % cost at best. Nothing to audit. */
static int scenario_availability(struct ctx *x)
{
    x->instructors = x->o->instructors;
    if (setup_instructors(x) != 0)
        return -1;
    x->res->audit.passed = true;
    return measured(x, availability_prepare, count_ok);
}

static int scenario_livez(struct ctx *x)
{
    x->res->audit.passed = true; /* nothing to audit: ran stays false */
    return measured(x, livez_prepare, count_ok);
}

static int ctx_init(struct ctx *x, const struct bench_options *o, struct bench_result *res)
{
    memset(x, 0, sizeof(*x));
    x->o = o;
    x->res = res;
    x->rng = o->seed != 0 ? o->seed : 0x9e3779b97f4a7c15ULL;
    snprintf(x->prefix, sizeof(x->prefix), "%s-", o->run_id);
    bench_id(x, ID_COURSE, 0, x->course);
    int64_t now = (int64_t)time(NULL);
    x->exp = now + (int64_t)o->seconds + 3600;
    /* Slots start on the hour at least a day ahead, so no hold is cut short by its start. */
    x->base_min = (now / 3600 + 1) * 60 + LEAD_MINUTES;
    x->aux = calloc(1, sizeof(*x->aux));
    /* livez needs no credentials: sign with a placeholder then (OpenSSL refuses an empty HMAC key); nothing signed
     * with it is sent. */
    x->jwt = bench_signer_new(o->jwt_secret != NULL && o->jwt_secret[0] != '\0' ? o->jwt_secret : "unused");
    x->hook =
        bench_signer_new(o->webhook_secret != NULL && o->webhook_secret[0] != '\0' ? o->webhook_secret : "unused");
    if (x->aux == NULL || x->jwt == NULL || x->hook == NULL)
        return -1;
    bool clicks = strcmp(o->scenario, "burst") == 0 || strcmp(o->scenario, "hot-reject") == 0;
    if (clicks && o->users > 0 && (uint64_t)o->users * (uint64_t)o->slots <= CLICK_CACHE_MAX) {
        size_t n = (size_t)o->users * (size_t)o->slots;
        x->click_req = calloc(n, sizeof(*x->click_req));
        x->click_len = calloc(n, sizeof(*x->click_len));
        x->n_click = n;
        if (x->click_req == NULL || x->click_len == NULL) { /* then every attempt is built anew */
            free(x->click_req);
            free(x->click_len);
            x->click_req = NULL;
            x->click_len = NULL;
            x->n_click = 0;
        }
    }
    return 0;
}

static void ctx_free(struct ctx *x)
{
    for (size_t i = 0; i < x->n_click; i++)
        free(x->click_req[i]);
    free(x->click_req);
    free(x->click_len);
    free(x->aux);
    free(x->holds);
    free(x->pending);
    free(x->confirmed);
    bench_signer_free(x->jwt);
    bench_signer_free(x->hook);
}

int bench_scenario_run(const struct bench_options *o, struct bench_result *res)
{
    struct ctx x;
    snprintf(res->scenario, sizeof(res->scenario), "%s", o->scenario);
    snprintf(res->target, sizeof(res->target), "slotlock");
    res->connections = o->connections;
    res->users = strcmp(o->scenario, "burst") == 0 || strcmp(o->scenario, "hot-reject") == 0 ? o->users : -1;
    res->rate = o->rate;
    int rc = -1;
    if (ctx_init(&x, o, res) != 0) {
        fprintf(stderr, "slotbench: cannot set up HMAC (OpenSSL)\n");
        goto done;
    }
    if (strcmp(o->scenario, "burst") == 0)
        rc = scenario_burst(&x);
    else if (strcmp(o->scenario, "steady") == 0)
        rc = scenario_steady(&x);
    else if (strcmp(o->scenario, "mixed") == 0)
        rc = scenario_mixed(&x);
    else if (strcmp(o->scenario, "hot-reject") == 0)
        rc = scenario_hot_reject(&x);
    else if (strcmp(o->scenario, "livez") == 0)
        rc = scenario_livez(&x);
    else if (strcmp(o->scenario, "availability") == 0)
        rc = scenario_availability(&x);
    if (rc == 0 && o->confirmed_out != NULL)
        rc = write_confirmed(&x, o->confirmed_out);
done:
    ctx_free(&x);
    return rc;
}

int bench_scenario_audit_only(const char *database_url, const char *prefix, const char *confirmed_path,
                              struct bench_result *res)
{
    char(*confirmed)[BENCH_UUID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;
    snprintf(res->scenario, sizeof(res->scenario), "audit");
    snprintf(res->target, sizeof(res->target), "slotlock");
    res->users = -1;
    if (confirmed_path != NULL) {
        FILE *f = fopen(confirmed_path, "r");
        if (f == NULL) {
            fprintf(stderr, "slotbench: cannot read %s\n", confirmed_path);
            return -1;
        }
        char line[128];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strlen(line) < BENCH_UUID_LEN)
                continue;
            if (grow((void **)&confirmed, &cap, n + 1, sizeof(*confirmed)) != 0)
                break;
            memcpy(confirmed[n], line, BENCH_UUID_LEN);
            confirmed[n++][BENCH_UUID_LEN] = '\0';
        }
        fclose(f);
    }
    struct bench_audit *a = &res->audit;
    a->ran = true;
    int rc = bench_audit_pg(database_url, prefix, (const char(*)[BENCH_UUID_LEN + 1]) confirmed, n, a);
    if (rc == 0)
        bench_audit_decide(a, 0);
    else
        audit_fail(a, "could not read Postgres");
    free(confirmed);
    return rc;
}
