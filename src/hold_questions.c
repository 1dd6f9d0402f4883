#include <stdlib.h>
#include <string.h>

#include "slk/hold_questions.h"

#define SLOTS 1024 /* direct-mapped: a collision only costs a parse */

struct entry {
    size_t len; /* 0: free */
    char body[SLK_HOLD_QUESTION_BODY_MAX];
    struct slk_hold_question question;
};

struct slk_hold_questions {
    struct entry slots[SLOTS];
};

struct slk_hold_questions *slk_hold_questions_create(void)
{
    return calloc(1, sizeof(struct slk_hold_questions));
}

void slk_hold_questions_free(struct slk_hold_questions *q)
{
    free(q);
}

static struct entry *slot_of(struct slk_hold_questions *q, const char *body, size_t len)
{
    return &q->slots[slk_fnv1a(SLK_FNV1A_INIT, body, len) % SLOTS];
}

bool slk_hold_questions_get(struct slk_hold_questions *q, const char *body, size_t len, struct slk_hold_question *out)
{
    if (len == 0 || len > SLK_HOLD_QUESTION_BODY_MAX)
        return false;
    const struct entry *e = slot_of(q, body, len);
    if (e->len != len || memcmp(e->body, body, len) != 0)
        return false;
    *out = e->question;
    return true;
}

void slk_hold_questions_put(struct slk_hold_questions *q, const char *body, size_t len,
                            const struct slk_hold_question *question)
{
    if (len == 0 || len > SLK_HOLD_QUESTION_BODY_MAX)
        return;
    struct entry *e = slot_of(q, body, len);
    memcpy(e->body, body, len);
    e->len = len;
    e->question = *question;
}
