/* Placeholder until Idempotency-Key lands: every request runs. */
#include "slk/gates.h"

void slk_idempotency_begin(struct slk_request *req, slk_gate_next next)
{
    next(req);
}
