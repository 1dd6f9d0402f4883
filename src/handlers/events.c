/* GET /api/v1/instructors/{id}/events: Server-Sent Events of one instructor (see include/slk/events.h). */
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/events.h"
#include "slk/instructor_store.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/worker.h"

struct events_op {
    struct slk_request *req;
    char instructor[SLK_MAX_ID_LEN + 1];
    uint64_t last_id;
};

/* The instructor must exist; loading it also puts its grid in the cache, which 'expired' events need. */
static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct events_op *op = data;
    struct slk_request *req = op->req;
    (void)e;
    if (err != 0) {
        free(op);
        slk__reply_backend_error(req, err, err == SLK_ENOTFOUND ? "instructor" : "redis");
        return;
    }
    int rc = slk_events_subscribe(req->worker->events, req, op->instructor, op->last_id);
    free(op);
    if (rc != 0)
        slk__reply_backend_error(req, rc == SLK_ECLOSED ? SLK_EUNAVAILABLE : rc, "events");
}

void slk_handle_events(struct slk_request *req)
{
    struct events_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    if (!slk__instructor_param(req, op->instructor)) {
        free(op);
        slk_reply_error(req, 404, "not_found", "No such instructor", NULL);
        return;
    }
    const struct slk_str *last = slk_request_header(req, "last-event-id");
    if (last != NULL && last->len > 0 && last->len < 20) {
        char buf[24];
        memcpy(buf, last->ptr, last->len);
        buf[last->len] = '\0';
        op->last_id = strtoull(buf, NULL, 10);
    }
    slk_instructor_get(req->worker, op->instructor, on_instructor, op);
}
