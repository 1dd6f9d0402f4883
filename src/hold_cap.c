/* Placeholder until the hold cap lands: every hold is admitted. */
#include "slk/hold_cap.h"

int slk_hold_cap_admit(struct slk_worker *w, const char *student, const char *uuid, int64_t expires_ms,
                       slk_hold_cap_cb cb, void *data)
{
    (void)w;
    (void)student;
    (void)uuid;
    (void)expires_ms;
    cb(data, 0, 0);
    return 0;
}

void slk_hold_cap_forget(struct slk_worker *w, const char *student, const char *uuid)
{
    (void)w;
    (void)student;
    (void)uuid;
}

void slk_hold_cap_extend(struct slk_worker *w, const char *student, const char *uuid, int64_t expires_ms)
{
    (void)w;
    (void)student;
    (void)uuid;
    (void)expires_ms;
}
