/*
 * The worker's Redis subscriber: a second hiredis connection in subscribe
 * mode that receives every instructor's events (PSUBSCRIBE
 * slk:*:events) and expired unit keys (keyspace notifications, which it
 * switches on with CONFIG SET notify-keyspace-events Ex where Redis allows
 * it) and hands them to events.c. Reconnects by itself.
 */
#ifndef SLK_PUBSUB_H
#define SLK_PUBSUB_H

struct slk_pubsub;
struct slk_worker;

struct slk_pubsub *slk_pubsub_create(struct slk_worker *w);
void slk_pubsub_start(struct slk_pubsub *ps);
/* Disconnects and frees once every handle is closed. */
void slk_pubsub_close(struct slk_pubsub *ps);

#endif
