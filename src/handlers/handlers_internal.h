/* Helpers shared by the API handlers. */
#ifndef SLK_HANDLERS_INTERNAL_H
#define SLK_HANDLERS_INTERNAL_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>

#include "slk/http.h"

/*
 * The request body as a JSON object. On failure replies itself (400
 * malformed_json / bad_request) and returns NULL. empty_ok: an empty body
 * yields an empty object.
 */
json_t *slk__body_object(struct slk_request *req, bool empty_ok);

/* A path parameter as a NUL-terminated copy; false when longer than cap - 1. */
bool slk__param(const struct slk_request *req, size_t i, char *out, size_t cap);

/* R-SEC: may the caller act for this instructor / on this booking's parties? */
bool slk__is_admin(const struct slk_request *req);
bool slk__is_instructor(const struct slk_request *req, const char *instructor_id);
bool slk__is_student(const struct slk_request *req, const char *student_id);

/* Maps an SLK_E* from a backend step to a reply: 503 for unavailability, 404, else 500. */
void slk__reply_backend_error(struct slk_request *req, int err, const char *what);

/* True when a script replied an array whose first element is the string tag ("OK", "TAKEN", "STALE", …). */
bool slk__script_reply_is(const redisReply *r, const char *tag);

#endif
