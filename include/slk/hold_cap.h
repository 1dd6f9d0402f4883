/*
 * The per-student cap on live holds (R-HOLD, MAX_HOLDS_PER_STUDENT): a
 * sorted set per student (its own hash slot) of live hold uuids scored by
 * their expiry, so entries of abandoned holds drop out by themselves. The
 * student's listing of holds (slk_key_student_holds) shares that hash slot
 * and is written in the same step.
 */
#ifndef SLK_HOLD_CAP_H
#define SLK_HOLD_CAP_H

#include <stdint.h>

#include "slk/common.h"

struct slk_booking;
struct slk_worker;

/*
 * rc 0: admitted (the uuid now counts against the cap until expires_ms or
 * slk_hold_cap_forget); SLK_EFULL: refused, retry_after_ms says when the
 * earliest live hold lapses; SLK_EUNAVAILABLE: Redis failed.
 */
typedef void (*slk_hold_cap_cb)(void *data, int rc, int64_t retry_after_ms);

/*
 * Admits b's hold (its student, uuid, hold expiry) and lists it for the student by its start; a refused hold is
 * not listed. Calls cb exactly once (also when the cap is 0: listed and admitted at once). Returns nonzero only if
 * cb will not be called.
 */
int slk_hold_cap_admit(struct slk_worker *w, const struct slk_booking *b, slk_hold_cap_cb cb,
                       void *data) SLK_MUST_CHECK;
/* The hold is no longer live (paid, failed, cancelled, refused): fire and forget. */
void slk_hold_cap_forget(struct slk_worker *w, const char *student, const char *uuid);
/* The hold now lives until expires_ms: fire and forget. */
void slk_hold_cap_extend(struct slk_worker *w, const char *student, const char *uuid, int64_t expires_ms);

#endif
