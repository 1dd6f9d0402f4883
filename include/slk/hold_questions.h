/*
 * Hold questions remembered by their exact bytes: the hot-slot stampede,
 * once more.
 *
 * A client told that a slot is taken clicks again and sends the very same
 * body. Parsing it (jansson: more than half of a refused hold's CPU) and
 * laying its times on the instructor's grid gives the same question every
 * time, as long as the instructor's settings stay as they were. Each worker
 * remembers, per body of at most SLK_HOLD_QUESTION_BODY_MAX bytes, the
 * question it was found to ask, and the early refusal path (bookings.c) looks
 * a body up here before parsing it. A question answers only for the settings
 * version it was laid out under; it carries the student the body names, so
 * who may ask is checked as before, and its start, so whether it is still
 * ahead is checked on every use. Only bodies that passed every check are
 * kept: anything else is parsed, and judged, every time.
 */
#ifndef SLK_HOLD_QUESTIONS_H
#define SLK_HOLD_QUESTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/common.h"
#include "slk/refusal_cache.h"

#define SLK_HOLD_QUESTION_BODY_MAX 512
#define SLK_HOLD_QUESTION_ENTRIES 32768 /* (student, slot) bodies per worker (byte_cache.h) */

struct slk_hold_question {
    struct slk_refusal_key key; /* instructor, settings version, units */
    int64_t start_ms;
    char student[SLK_MAX_ID_LEN + 1];
};

/* One worker's questions (not thread-safe; one per loop). */
struct slk_hold_questions;
struct slk_hold_questions *slk_hold_questions_create(void);
void slk_hold_questions_free(struct slk_hold_questions *q);

/* The question last kept for exactly these body bytes. */
bool slk_hold_questions_get(struct slk_hold_questions *q, const char *body, size_t len, struct slk_hold_question *out);

/* Keeps question for these body bytes (in place of the least recently used of its set); longer bodies are not kept. */
void slk_hold_questions_put(struct slk_hold_questions *q, const char *body, size_t len,
                            const struct slk_hold_question *question);

#endif
