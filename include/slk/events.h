/*
 * Live events of instructors (held, released, booked, expired) for
 * Server-Sent Events clients. The Lua scripts PUBLISH every change on
 * slk:{instructor}:events and Redis reports expired unit keys (keyspace
 * notifications); each worker subscribes once (pubsub.c) and fans the events
 * out to its own SSE clients. Every worker numbers the events it delivers
 * and keeps the last SLK_EVENTS_REPLAY per instructor, so a client that
 * reconnects to the same worker with Last-Event-ID gets what it missed.
 */
#ifndef SLK_EVENTS_H
#define SLK_EVENTS_H

#include <stdint.h>

#include "slk/http.h"

#define SLK_EVENTS_REPLAY 256
#define SLK_EVENTS_HEARTBEAT_MS 15000

struct slk_events;
struct slk_worker;

struct slk_events *slk_events_create(struct slk_worker *w);
/* Ends every stream (draining) and frees everything once the heartbeat timer is closed. */
void slk_events_close(struct slk_events *ev);
/* Ends every stream, keeps the registry (used when the worker drains). */
void slk_events_end_streams(struct slk_events *ev);

/* Starts an SSE stream for req on instructor; last_id 0 when the client did not send Last-Event-ID. */
int slk_events_subscribe(struct slk_events *ev, struct slk_request *req, const char *instructor,
                         uint64_t last_id) SLK_MUST_CHECK;

/* One change, as received from Redis: type "held"… and the affected range. */
void slk_events_publish(struct slk_events *ev, const char *instructor, const char *type, int64_t start_ms,
                        int64_t end_ms);

#endif
