/*
 * Outgoing booking events. Status changes of bookings in Postgres are
 * written to booking_events by a trigger, in the same transaction
 * (sql/004_outbox.sql). Changes that live only in Redis (held, extended,
 * payment_failed and cancelled holds, expired) are recorded here on a Redis
 * stream and moved to booking_events in batches. A dispatcher delivers
 * booking_events to WEBHOOK_URL, signed like R-PAY, at least once and in
 * order per booking.
 */
#ifndef SLK_OUTBOX_H
#define SLK_OUTBOX_H

#include "slk/common.h"

struct slk_worker;
struct slk_booking;

/*
 * Records a Redis-side event of booking b (type: "held", "extended",
 * "payment_failed", "cancelled", "expired"): fire and forget, logged when it
 * fails. A "held" event also schedules the check that records "expired"
 * once the hold lapses unpaid.
 */
void slk_outbox_record(struct slk_worker *w, const char *type, const struct slk_booking *b, const char *actor_id,
                       const char *actor_role);

/* Background work of one worker (mover, expiry sweeper, dispatcher); started on worker 0 only. */
int slk_outbox_start(struct slk_worker *w) SLK_MUST_CHECK;
void slk_outbox_stop(struct slk_worker *w);

#endif
