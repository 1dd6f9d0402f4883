#include <stdlib.h>
#include <string.h>

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
    struct slk_refusal_key key;
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

static struct flight *find(struct slk_hold_flights *f, const struct slk_refusal_key *k)
{
    struct flight *fl = f->buckets[slk_refusal_key_hash(k) % BUCKETS];
    while (fl != NULL && !slk_refusal_key_equal(&fl->key, k))
        fl = fl->next;
    return fl;
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

/*
 * The asker's reply, just before it goes out: the waiters get theirs. A 201
 * means every unit of the question is now held; the refusal the handler kept
 * for it (refusal_cache.h) is what Redis would tell the waiters.
 */
static void on_landed(struct slk_request *req, int status, const char *body, size_t len)
{
    struct flight *fl = req->gate_data;
    req->gate_data = NULL;
    unlink_flight(fl);
    struct slk_refusal kept;
    bool answered =
        status == 409 || (status == 201 && slk_refusal_cache_get(req->worker->refusals, &fl->key,
                                                                 (int64_t)uv_now(&req->worker->loop), &kept));
    if (status == 201 && answered) {
        body = kept.body;
        len = kept.len;
    }
    /* Something freed since take-off (here or, announced, elsewhere): a waiter may have asked after it. */
    answered = answered && fl->gen == slk_freed_gen(fl->key.instructor);
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
    free(fl->waiting);
    free(fl);
}

void slk_hold_flights_take_off(struct slk_hold_flights *f, const struct slk_refusal_key *k, struct slk_request *req)
{
    if (req->on_reply != NULL)
        return;
    struct flight *fl = calloc(1, sizeof(*fl));
    if (fl == NULL)
        return; /* nobody waits for it: later askers ask Redis too */
    fl->owner = f;
    fl->bucket = slk_refusal_key_hash(k) % BUCKETS;
    fl->key = *k;
    fl->gen = slk_freed_gen(k->instructor);
    fl->next = f->buckets[fl->bucket];
    f->buckets[fl->bucket] = fl;
    req->on_reply = on_landed;
    req->gate_data = fl;
}
