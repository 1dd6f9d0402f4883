#include <stdlib.h>

#include "slk/byte_cache.h"
#include "slk/hold_questions.h"

struct slk_hold_questions {
    struct slk_byte_cache *bodies; /* body bytes -> struct slk_hold_question */
};

struct slk_hold_questions *slk_hold_questions_create(void)
{
    struct slk_hold_questions *q = malloc(sizeof(*q));
    if (q == NULL)
        return NULL;
    q->bodies =
        slk_byte_cache_create(SLK_HOLD_QUESTION_ENTRIES, sizeof(struct slk_hold_question), SLK_HOLD_QUESTION_BODY_MAX);
    if (q->bodies == NULL) {
        free(q);
        return NULL;
    }
    return q;
}

void slk_hold_questions_free(struct slk_hold_questions *q)
{
    if (q == NULL)
        return;
    slk_byte_cache_free(q->bodies);
    free(q);
}

bool slk_hold_questions_get(struct slk_hold_questions *q, const char *body, size_t len, struct slk_hold_question *out)
{
    const struct slk_hold_question *kept = slk_byte_cache_get(q->bodies, body, len);
    if (kept == NULL)
        return false;
    *out = *kept;
    return true;
}

void slk_hold_questions_put(struct slk_hold_questions *q, const char *body, size_t len,
                            const struct slk_hold_question *question)
{
    slk_byte_cache_put(q->bodies, body, len, question);
}
