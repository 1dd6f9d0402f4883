/* GET /api/v1/bookings/{uuid}/events: placeholder. */
#include "slk/response.h"
#include "slk/routes.h"

void slk_handle_booking_events(struct slk_request *req)
{
    slk_reply_error(req, 404, "not_found", "No such booking", NULL);
}
