#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/common.h"
#include "slk/metrics.h"
#include "slk/routes.h"

/*
 * Every series lives in a fixed array of counters indexed by small integers,
 * so recording is one or two relaxed atomic increments and never allocates.
 * Histogram buckets are stored non-cumulative (one increment per
 * observation) and summed up only when rendering.
 */

#define NROUTES (SLK_ROUTE__COUNT + 1) /* + SLK_ROUTE_NONE */

static const int status_codes[] = {200, 201, 204, 304, 400, 401, 403, 404, 405,
                                   408, 409, 413, 414, 422, 429, 431, 500, 503};
#define NSTATUS (SLK_ARRAY_SIZE(status_codes) + 1) /* last one: "other" */

/* Upper bounds in ns; the label strings below must match them one for one. */
static const uint64_t bucket_ns[] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bucket_labels[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                            "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10"};
#define NBUCKETS (SLK_ARRAY_SIZE(bucket_ns) + 1) /* last one: +Inf */

struct histogram {
    atomic_uint_fast64_t buckets[NBUCKETS];
    atomic_uint_fast64_t sum_ns;
};

static atomic_uint_fast64_t requests[NROUTES][NSTATUS];
static struct histogram request_durations[NROUTES];
static atomic_uint_fast64_t holds[SLK_HOLD__COUNT];
static struct histogram backend_durations[SLK_BACKEND__COUNT];
static atomic_uint_fast64_t backend_errors[SLK_BACKEND__COUNT];
static atomic_int_fast64_t open_connections;

static const char *const hold_labels[SLK_HOLD__COUNT] = {"granted", "taken", "rejected", "error"};
static const char *const backend_labels[SLK_BACKEND__COUNT] = {"redis", "postgres"};

static void inc(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < SLK_ARRAY_SIZE(status_codes); i++) {
        if (status_codes[i] == status)
            return i;
    }
    return NSTATUS - 1;
}

static void observe(struct histogram *h, uint64_t ns)
{
    size_t i = 0;

    while (i < SLK_ARRAY_SIZE(bucket_ns) && ns > bucket_ns[i])
        i++;
    inc(&h->buckets[i], 1);
    inc(&h->sum_ns, ns);
}

void slk_metrics_request(int route_id, int status, uint64_t duration_ns)
{
    if (route_id < 0 || route_id > SLK_ROUTE_NONE)
        route_id = SLK_ROUTE_NONE;
    inc(&requests[route_id][status_index(status)], 1);
    observe(&request_durations[route_id], duration_ns);
}

void slk_metrics_hold(enum slk_hold_outcome outcome)
{
    if ((unsigned)outcome >= SLK_HOLD__COUNT)
        return;
    inc(&holds[outcome], 1);
}

void slk_metrics_backend_call(enum slk_backend b, uint64_t duration_ns, int err)
{
    if ((unsigned)b >= SLK_BACKEND__COUNT)
        return;
    observe(&backend_durations[b], duration_ns);
    if (err != 0)
        inc(&backend_errors[b], 1);
}

void slk_metrics_connections_add(int delta)
{
    atomic_fetch_add_explicit(&open_connections, delta, memory_order_relaxed);
}

/* Growable output; after the first allocation failure every append is a no-op. */
struct out {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len)
            break;
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->buf, cap);
        if (p == NULL) {
            o->failed = true;
            return;
        }
        o->buf = p;
        o->cap = cap;
    }
    o->len += (size_t)n;
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * Renders one histogram series; labels is the "key=\"value\"," prefix shared
 * by every line. The bucket counts are read once, so _count always equals the
 * +Inf bucket even while other threads keep recording.
 */
static void render_histogram(struct out *o, const char *name, const char *labels, struct histogram *h)
{
    uint64_t total = 0;

    for (size_t i = 0; i < NBUCKETS; i++) {
        total += get(&h->buckets[i]);
        out_printf(o, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels,
                   i < SLK_ARRAY_SIZE(bucket_labels) ? bucket_labels[i] : "+Inf", (unsigned long long)total);
    }
    uint64_t sum = get(&h->sum_ns);
    out_printf(o, "%s_sum{%s} %llu.%09llu\n", name, labels, (unsigned long long)(sum / 1000000000),
               (unsigned long long)(sum % 1000000000));
    out_printf(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)total);
}

static bool histogram_empty(struct histogram *h)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (get(&h->buckets[i]) != 0)
            return false;
    }
    return true;
}

static void render_requests(struct out *o)
{
    char labels[128];

    header(o, "slotlock_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int r = 0; r < NROUTES; r++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t n = get(&requests[r][s]);

            if (n == 0)
                continue;
            if (s < SLK_ARRAY_SIZE(status_codes))
                out_printf(o, "slotlock_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", slk_route_label(r),
                           status_codes[s], (unsigned long long)n);
            else
                out_printf(o, "slotlock_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", slk_route_label(r),
                           (unsigned long long)n);
        }
    }
    header(o, "slotlock_http_request_duration_seconds", "histogram",
           "Time from a request's first byte to its response being queued.");
    for (int r = 0; r < NROUTES; r++) {
        if (histogram_empty(&request_durations[r]))
            continue;
        snprintf(labels, sizeof(labels), "route=\"%s\"", slk_route_label(r));
        render_histogram(o, "slotlock_http_request_duration_seconds", labels, &request_durations[r]);
    }
}

static void render_backends(struct out *o)
{
    char labels[64];

    header(o, "slotlock_backend_call_duration_seconds", "histogram",
           "Redis command and PostgreSQL query latency, errors and timeouts included.");
    for (int b = 0; b < SLK_BACKEND__COUNT; b++) {
        snprintf(labels, sizeof(labels), "backend=\"%s\"", backend_labels[b]);
        render_histogram(o, "slotlock_backend_call_duration_seconds", labels, &backend_durations[b]);
    }
    header(o, "slotlock_backend_errors_total", "counter", "Redis and PostgreSQL calls that failed or timed out.");
    for (int b = 0; b < SLK_BACKEND__COUNT; b++)
        out_printf(o, "slotlock_backend_errors_total{backend=\"%s\"} %llu\n", backend_labels[b],
                   (unsigned long long)get(&backend_errors[b]));
}

char *slk_metrics_render(size_t *len)
{
    struct out o = {.cap = 16 * 1024};

    o.buf = malloc(o.cap);
    if (o.buf == NULL)
        return NULL;
    render_requests(&o);
    header(&o, "slotlock_holds_total", "counter", "Hold attempts, by outcome.");
    for (int h = 0; h < SLK_HOLD__COUNT; h++)
        out_printf(&o, "slotlock_holds_total{outcome=\"%s\"} %llu\n", hold_labels[h],
                   (unsigned long long)get(&holds[h]));
    render_backends(&o);
    header(&o, "slotlock_open_connections", "gauge", "Client connections currently open.");
    out_printf(&o, "slotlock_open_connections %lld\n",
               (long long)atomic_load_explicit(&open_connections, memory_order_relaxed));
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    if (len != NULL)
        *len = o.len;
    return o.buf;
}
