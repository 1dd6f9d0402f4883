/*
 * What outbox.c (recording, mover, expiry sweeper), outbox_dispatch.c
 * (webhook delivery) and webhook_client.c share. Everything here runs on
 * worker 0's loop only.
 */
#ifndef SLK_OUTBOX_INTERNAL_H
#define SLK_OUTBOX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "slk/common.h"

/* Redis keys: one hash tag, so all live on one Cluster node. */
#define SLK_OUTBOX_STREAM_KEY "{slk:outbox}:stream"
/* Expiry checks claimed at the moment, by their lease's end (lua/outbox_due.lua); earlier versions kept every check
 * here, by its hold's expiry. */
#define SLK_OUTBOX_DUE_KEY "{slk:outbox}:due"
/* Expiry checks waiting: a list per quarter second, named by its first ms, and the names of those that exist. */
#define SLK_OUTBOX_DUE_LIST_PREFIX "{slk:outbox}:due:"
#define SLK_OUTBOX_DUE_LISTS_KEY "{slk:outbox}:due:lists"

/* Limits. */
#define SLK_OUTBOX_STREAM_MAXLEN "1000000" /* events waiting for Postgres; beyond, the oldest are trimmed */
#define SLK_OUTBOX_MOVE_BATCH 256          /* stream entries per INSERT */
#define SLK_OUTBOX_MOVE_MS 200
#define SLK_OUTBOX_SWEEP_MS 1000
#define SLK_OUTBOX_SWEEP_BATCH 256    /* expiry checks per sweep (a full one is followed by the next at once) */
#define SLK_OUTBOX_DUE_LEASE_MS 30000 /* a claimed expiry check comes due again after this */
#define SLK_OUTBOX_DUE_LIST_MS 250    /* the time one list of waiting expiry checks covers */
#define SLK_OUTBOX_SWEEP_LISTS 16     /* lists drained per sweep */
#define SLK_OUTBOX_DISPATCH_MS 250
#define SLK_OUTBOX_MAX_DELIVERIES 8     /* webhook requests in flight (different bookings) */
#define SLK_OUTBOX_LEASE_EXTRA_MS 10000 /* a claimed event waits webhook_timeout_ms + this before a re-claim */
#define SLK_WEBHOOK_MAX_RESPONSE_HEAD 16384

/*
 * A booking event on its way through the stream (outbox_event.c). Texts are
 * NUL-terminated; times are unix ms, 0 when absent.
 */
struct slk__outbox_event {
    char uuid[37];
    char instructor[SLK_MAX_ID_LEN + 1];
    char student[SLK_MAX_ID_LEN + 1];
    char type[33];
    char status[33];
    char actor[SLK_MAX_ID_LEN + 1]; /* "" when nobody in particular acted */
    char role[33];                  /* "" for the system */
    int64_t at_ms, start_ms, end_ms, expires_ms;
    bool has_expires; /* the entry carried an expiry (older entries of other types may not) */
};

/* The stream field whose value is a packed event; the digit is the format's version. */
#define SLK_OUTBOX_EVENT_FIELD "e1"
/* Room for a packed event: seven texts of at most 64 bytes, four numbers, eleven length prefixes. */
#define SLK_OUTBOX_EVENT_MAX 640

/* e packed for SLK_OUTBOX_EVENT_FIELD into out (cap bytes, NUL-terminated); its length, or SLK_EINVAL if it does
 * not fit. */
int slk__outbox_event_pack(const struct slk__outbox_event *e, char *out, size_t cap) SLK_MUST_CHECK;
/* A stream entry's fields (an array of names and values, packed or named), read into e: false for an entry that
 * can never be moved (a text missing, too long, a uuid that is none, a time that is no number). */
bool slk__outbox_event_read(const redisReply *fields, struct slk__outbox_event *e) SLK_MUST_CHECK;

struct slk_worker;
struct slk_outbox_delivery;
struct slk_webhook_request;

/* Where WEBHOOK_URL points, parsed once. */
struct slk_webhook_target {
    char *host;        /* without brackets */
    char port[8];      /* service for getaddrinfo */
    char *host_header; /* host[:port] as written in the URL */
    char *path;        /* "/" when the URL has none */
};

/*
 * Parses http://host[:port][/path] (no userinfo, query kept in path, no
 * fragment). Returns 0 or SLK_EINVAL / SLK_ENOMEM; free with
 * slk_webhook_target_clear.
 */
int slk_webhook_target_parse(struct slk_webhook_target *t, const char *url) SLK_MUST_CHECK;
void slk_webhook_target_clear(struct slk_webhook_target *t);

/*
 * Called exactly once unless the request is cancelled: with the HTTP status
 * (err NULL) once the response's head arrived, or status 0 and a short
 * static description in err. Never called from inside slk_webhook_post.
 */
typedef void (*slk_webhook_cb)(void *data, int status, const char *err);

/*
 * POSTs body (copied) as application/json to t, signed with secret like
 * R-PAY (X-Signature over "<unix seconds>.<body>") and carrying
 * X-Slotlock-Event-Id. The whole exchange is bounded by timeout_ms. t must
 * outlive the request. NULL when out of memory (cb never runs).
 */
struct slk_webhook_request *slk_webhook_post(uv_loop_t *loop, const struct slk_webhook_target *t, const char *event_id,
                                             const char *body, size_t body_len, const unsigned char *secret,
                                             size_t secret_len, uint64_t timeout_ms, slk_webhook_cb cb, void *data);
/* Abandons a request whose callback has not run: the callback never runs; memory goes once handles close. */
void slk_webhook_cancel(struct slk_webhook_request *r);

/* The background state of worker 0; freed when the last reference goes. */
struct slk_outbox {
    struct slk_worker *w;
    uv_timer_t mover_timer, sweep_timer, dispatch_timer;
    int refs; /* the owner, each open timer, each operation in flight */
    bool stopping;
    bool moving;
    int sweeping;    /* expiry checks in flight */
    bool sweep_more; /* the last sweep claimed a full batch: more may be due */
    bool claiming;
    int deliveries_inflight;
    struct slk_outbox_delivery *deliveries; /* in flight, for cancelling on stop */
    bool dispatch_enabled;
    struct slk_webhook_target target;
    const unsigned char *secret;
    size_t secret_len;
};

void slk__outbox_ref(struct slk_outbox *o);
void slk__outbox_unref(struct slk_outbox *o);

/* The dispatcher's timer callback. */
void slk__outbox_dispatch_tick(uv_timer_t *t);
/* On stop: abandons deliveries in flight (their events stay leased and are delivered again later). */
void slk__outbox_dispatch_abort(struct slk_outbox *o);

#endif
