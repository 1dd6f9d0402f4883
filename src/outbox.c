/* Placeholder until the outbox lands. */
#include "slk/outbox.h"

void slk_outbox_record(struct slk_worker *w, const char *type, const struct slk_booking *b, const char *actor_id,
                       const char *actor_role)
{
    (void)w;
    (void)type;
    (void)b;
    (void)actor_id;
    (void)actor_role;
}

int slk_outbox_start(struct slk_worker *w)
{
    (void)w;
    return 0;
}

void slk_outbox_stop(struct slk_worker *w)
{
    (void)w;
}
