/* Reschedule (R-RESCHED): placeholder while it is being built. */
#include "slk/response.h"
#include "slk/routes.h"

void slk_handle_booking_reschedule(struct slk_request *req)
{
    slk_reply_error(req, 404, "not_found", "No such resource", NULL);
}
