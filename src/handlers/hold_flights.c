#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/avail_cache.h"
#include "slk/hold_flights.h"
#include "slk/metrics.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/worker.h"

#define BUCKETS 256

struct flight {
    struct flight *next; /* in its bucket */
    struct slk_hold_flights *owner;
    size_t bucket;
    char instructor[SLK_MAX_ID_LEN + 1];
    int64_t version, units_first_min;
    int unit_count, unit_minutes;
    uint32_t gen; /* slk_freed_gen() at take-off: a unit freed since makes the asker's answer stale for waiters */
    struct slk_request **waiting;
    size_t n_waiting, cap_waiting;
};

struct slk_hold_flights {
    struct flight *buckets[BUCKETS];
};

struct slk_hold_flights *slk_hold_flights_create(void)
{
    return calloc(1, sizeof(struct slk_hold_flights));
}

void slk_hold_flights_free(struct slk_hold_flights *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        while (f->buckets[i] != NULL) {
            struct flight *fl = f->buckets[i];
            f->buckets[i] = fl->next;
            free(fl->waiting);
            free(fl);
        }
    }
    free(f);
}

static size_t bucket_of(const struct slk_refusal_key *k)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)k->instructor; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ (uint32_t)k->units_first_min) * 16777619u;
    h = (h ^ (uint32_t)k->unit_count) * 16777619u;
    return h % BUCKETS;
}

static struct flight *find(struct slk_hold_flights *f, const struct slk_refusal_key *k)
{
    for (struct flight *fl = f->buckets[bucket_of(k)]; fl != NULL; fl = fl->next) {
        if (fl->version == k->version && fl->units_first_min == k->units_first_min && fl->unit_count == k->unit_count &&
            strcmp(fl->instructor, k->instructor) == 0)
            return fl;
    }
    return NULL;
}

bool slk_hold_flights_wait(struct slk_hold_flights *f, const struct slk_refusal_key *k, struct slk_request *req)
{
    struct flight *fl = find(f, k);
    if (fl == NULL)
        return false;
    if (fl->n_waiting == fl->cap_waiting) {
        size_t cap = fl->cap_waiting != 0 ? 2 * fl->cap_waiting : 16;
        struct slk_request **w = realloc(fl->waiting, cap * sizeof(*w));
        if (w == NULL)
            return false; /* it asks Redis itself */
        fl->waiting = w;
        fl->cap_waiting = cap;
    }
    fl->waiting[fl->n_waiting++] = req;
    return true;
}

static void unlink_flight(struct flight *fl)
{
    struct flight **p = &fl->owner->buckets[fl->bucket];
    while (*p != fl)
        p = &(*p)->next;
    *p = fl->next;
}

/* The asker's reply, just before it goes out: the waiters get theirs. */
static void on_landed(struct slk_request *req, int status, const char *body, size_t len)
{
    struct flight *fl = req->gate_data;
    req->gate_data = NULL;
    unlink_flight(fl);
    char *taken = NULL;
    if (status == 201) {
        /* Granted: every unit of the question is now held, which is what Redis would tell the waiters. */
        int64_t from = fl->units_first_min * 60000;
        taken = slk__slot_unavailable_body(from, from + (int64_t)fl->unit_count * fl->unit_minutes * 60000);
        if (taken != NULL) {
            body = taken;
            len = strlen(taken);
        }
    }
    /* Something freed since take-off (here or, announced, elsewhere): a waiter may have asked after it. */
    bool fresh = fl->gen == slk_freed_gen(fl->instructor);
    bool answered = fresh && (status == 409 || (status == 201 && taken != NULL));
    for (size_t i = 0; i < fl->n_waiting; i++) {
        struct slk_request *w = fl->waiting[i];
        if (answered) {
            slk_metrics_hold(SLK_HOLD_TAKEN);
            slk_reply_rendered(w, 409, body, len);
        } else if (w->worker->draining) {
            slk_reply_unavailable(w, "redis"); /* stopping: its Redis client may already be gone */
        } else {
            slk_routes_resume(w);
        }
    }
    free(taken);
    free(fl->waiting);
    free(fl);
}

void slk_hold_flights_take_off(struct slk_hold_flights *f, const struct slk_refusal_key *k, int unit_minutes,
                               struct slk_request *req)
{
    size_t len = strlen(k->instructor);
    if (req->on_reply != NULL || len > SLK_MAX_ID_LEN)
        return;
    struct flight *fl = calloc(1, sizeof(*fl));
    if (fl == NULL)
        return; /* nobody waits for it: later askers ask Redis too */
    fl->owner = f;
    fl->bucket = bucket_of(k);
    memcpy(fl->instructor, k->instructor, len + 1);
    fl->version = k->version;
    fl->units_first_min = k->units_first_min;
    fl->unit_count = k->unit_count;
    fl->unit_minutes = unit_minutes;
    fl->gen = slk_freed_gen(k->instructor);
    fl->next = f->buckets[fl->bucket];
    f->buckets[fl->bucket] = fl;
    req->on_reply = on_landed;
    req->gate_data = fl;
}
