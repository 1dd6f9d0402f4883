/*
 * Where a worker gets instructor settings from, cheapest first: its own
 * cache, the copy in Redis (slk:{i}:meta), and Postgres. Loading from
 * Postgres also writes the instructor's confirmed future bookings into
 * Redis (restore.lua) before the settings, so that holds, which require the
 * settings to be in Redis, are never granted over a confirmed booking after
 * Redis restarted empty.
 */
#ifndef SLK_INSTRUCTOR_STORE_H
#define SLK_INSTRUCTOR_STORE_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "slk/instructor.h"
#include "slk/worker.h"

/*
 * err: 0 with entry set; SLK_ENOTFOUND (no such instructor); SLK_EUNAVAILABLE
 * (Redis or Postgres unreachable or too slow); SLK_EPROTO (bad data).
 * entry is valid until the worker's cache changes: use it before returning
 * to the loop.
 */
typedef void (*slk_instructor_cb)(void *data, struct slk_instructor_entry *entry, int err);

/* Cache, else Redis, else Postgres (+ restore). May call cb before returning. */
void slk_instructor_get(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data);
/* Redis, else Postgres (+ restore), bypassing the worker cache (its copy is known to be stale). */
void slk_instructor_refresh(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data);
/* Postgres + restore, always (Redis said NOLOAD, or the settings just changed). */
void slk_instructor_reload(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data);
/* How often one request re-reads settings that changed under it before answering 503. */
#define SLK_INSTRUCTOR_RESYNCS 2

/*
 * The worker's copy proved out of date while a script ran: NOLOAD (Redis has
 * no settings: reload from Postgres) or STALE (stale_reply, when given, is
 * the script's {"STALE", ver, cfg} reply, whose cfg is used when valid;
 * otherwise the settings are read from Redis again). Calls cb as
 * slk_instructor_get does.
 */
void slk_instructor_resync(struct slk_worker *w, const char *id, bool noload, const redisReply *stale_reply,
                           slk_instructor_cb cb, void *data);

/* Caches settings received from Redis (a STALE reply). NULL when cfg is not valid settings. */
struct slk_instructor_entry *slk_instructor_apply_cfg(struct slk_worker *w, const char *id, const char *cfg,
                                                      size_t cfg_len);

/*
 * Settings from the first row of a query whose first eight columns are
 * timezone, granularity_minutes, hold_seconds, buffer_minutes,
 * requires_acceptance, weekly::text, version, updated_at in epoch ms.
 */
int slk_instructor_from_pg(struct slk_instructor *ins, const char *id, const PGresult *res,
                           int default_hold_seconds) SLK_MUST_CHECK;

#endif
