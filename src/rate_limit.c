/* Placeholder until the rate limiter lands: every request passes. */
#include "slk/gates.h"

void slk_rate_limit_check(struct slk_request *req, slk_gate_next next)
{
    next(req);
}
