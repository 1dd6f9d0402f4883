#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/events.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define EVENT_TEXT_MAX 256

struct subscriber {
    struct subscriber *next;
    struct slk_request *req;
    struct topic *topic;
};

struct stored_event {
    uint64_t id;
    char text[EVENT_TEXT_MAX]; /* "id: …\nevent: …\ndata: …\n\n" */
    size_t len;
};

/* One instructor on this worker: its SSE clients and its recent events. */
struct topic {
    struct topic *next;
    char instructor[SLK_MAX_ID_LEN + 1];
    struct subscriber *subs;
    struct stored_event ring[SLK_EVENTS_REPLAY];
    uint64_t next_id;
};

struct slk_events {
    struct slk_worker *w;
    struct topic *topics;
    uv_timer_t heartbeat;
    size_t num_subs;
};

static void on_heartbeat(uv_timer_t *t);

struct slk_events *slk_events_create(struct slk_worker *w)
{
    struct slk_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return NULL;
    ev->w = w;
    uv_timer_init(&w->loop, &ev->heartbeat);
    ev->heartbeat.data = ev;
    uv_timer_start(&ev->heartbeat, on_heartbeat, SLK_EVENTS_HEARTBEAT_MS, SLK_EVENTS_HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&ev->heartbeat); /* never keeps the loop alive by itself */
    return ev;
}

static struct topic *find_topic(struct slk_events *ev, const char *instructor)
{
    for (struct topic *t = ev->topics; t != NULL; t = t->next) {
        if (strcmp(t->instructor, instructor) == 0)
            return t;
    }
    return NULL;
}

static void remove_subscriber(struct slk_events *ev, struct subscriber *s)
{
    for (struct subscriber **p = &s->topic->subs; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    ev->num_subs--;
    free(s);
}

/* Ends one stream: unlinks the subscriber and releases the request. */
static void end_stream(struct slk_events *ev, struct subscriber *s)
{
    struct slk_request *req = s->req;
    remove_subscriber(ev, s);
    slk_response_stream_end(req);
}

static void on_abort(struct slk_request *req)
{
    struct subscriber *s = req->handler_data;
    end_stream(req->worker->events, s);
}

static void send_to_all(struct slk_events *ev, struct topic *t, const char *text, size_t len)
{
    struct subscriber *s = t->subs;
    while (s != NULL) {
        struct subscriber *next = s->next;
        if (slk_response_stream_write(s->req, text, len) != 0)
            end_stream(ev, s); /* gone or too slow: it can reconnect with Last-Event-ID */
        s = next;
    }
}

void slk_events_publish(struct slk_events *ev, const char *instructor, const char *type, int64_t start_ms,
                        int64_t end_ms)
{
    struct topic *t = find_topic(ev, instructor);
    if (t == NULL)
        return; /* nobody here listens to this instructor */
    uint64_t id = ++t->next_id;
    struct stored_event *e = &t->ring[id % SLK_EVENTS_REPLAY];
    char start[32], end[32];
    slk_time_format_rfc3339(start_ms, start);
    slk_time_format_rfc3339(end_ms, end);
    e->id = id;
    int n = snprintf(e->text, sizeof(e->text),
                     "id: %" PRIu64 "\nevent: %s\ndata: {\"type\":\"%s\",\"instructor_uuid\":\"%s\","
                     "\"start_time\":\"%s\",\"end_time\":\"%s\"}\n\n",
                     e->id, type, type, instructor, start, end);
    e->len = n > 0 && (size_t)n < sizeof(e->text) ? (size_t)n : 0;
    if (e->len > 0)
        send_to_all(ev, t, e->text, e->len);
}

static void replay(struct subscriber *s, uint64_t last_id)
{
    struct topic *t = s->topic;
    uint64_t first = t->next_id > SLK_EVENTS_REPLAY ? t->next_id - SLK_EVENTS_REPLAY + 1 : 1;
    if (last_id + 1 > first)
        first = last_id + 1;
    for (uint64_t id = first; id <= t->next_id; id++) {
        const struct stored_event *e = &t->ring[id % SLK_EVENTS_REPLAY];
        if (e->id == id && e->len > 0 && slk_response_stream_write(s->req, e->text, e->len) != 0)
            return;
    }
}

int slk_events_subscribe(struct slk_events *ev, struct slk_request *req, const char *instructor, uint64_t last_id)
{
    struct topic *t = find_topic(ev, instructor);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL)
            return SLK_ENOMEM;
        snprintf(t->instructor, sizeof(t->instructor), "%s", instructor);
        t->next = ev->topics;
        ev->topics = t;
    }
    struct subscriber *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SLK_ENOMEM;
    int rc = slk_response_stream_start(req, "text/event-stream; charset=utf-8", on_abort);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->req = req;
    s->topic = t;
    s->next = t->subs;
    t->subs = s;
    req->handler_data = s;
    ev->num_subs++;
    static const char hello[] = "retry: 1000\n\n";
    if (slk_response_stream_write(req, hello, sizeof(hello) - 1) == 0 && last_id > 0)
        replay(s, last_id);
    return 0;
}

static void on_heartbeat(uv_timer_t *timer)
{
    struct slk_events *ev = timer->data;
    static const char ping[] = ": ping\n\n";
    for (struct topic *t = ev->topics; t != NULL; t = t->next)
        send_to_all(ev, t, ping, sizeof(ping) - 1);
}

void slk_events_end_streams(struct slk_events *ev)
{
    for (struct topic *t = ev->topics; t != NULL; t = t->next) {
        while (t->subs != NULL)
            end_stream(ev, t->subs);
    }
}

static void on_heartbeat_closed(uv_handle_t *h)
{
    struct slk_events *ev = h->data;
    while (ev->topics != NULL) {
        struct topic *t = ev->topics;
        ev->topics = t->next;
        free(t);
    }
    free(ev);
}

void slk_events_close(struct slk_events *ev)
{
    if (ev == NULL)
        return;
    slk_events_end_streams(ev);
    uv_timer_stop(&ev->heartbeat);
    uv_close((uv_handle_t *)&ev->heartbeat, on_heartbeat_closed);
}
