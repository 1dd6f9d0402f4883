/* Helpers shared by the API handlers. */
#ifndef SLK_HANDLERS_INTERNAL_H
#define SLK_HANDLERS_INTERNAL_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>

#include "slk/http.h"
#include "slk/timeutil.h"

struct slk_instructor_entry;

/*
 * The request body as a JSON object. On failure replies itself (400
 * malformed_json / bad_request) and returns NULL. empty_ok: an empty body
 * yields an empty object.
 */
json_t *slk__body_object(struct slk_request *req, bool empty_ok);
/* Keeps a body object parsed (with JSON_REJECT_DUPLICATES) before the handler runs: slk__body_object() returns it. */
void slk__body_keep(struct slk_request *req, json_t *obj);

/* A path parameter as a NUL-terminated copy; false when longer than cap - 1. */
bool slk__param(const struct slk_request *req, size_t i, char *out, size_t cap);

/* R-SEC: may the caller act for this instructor / on this booking's parties? */
bool slk__is_admin(const struct slk_request *req);
bool slk__is_instructor(const struct slk_request *req, const char *instructor_id);
bool slk__is_student(const struct slk_request *req, const char *student_id);

/* Maps an SLK_E* from a backend step to a reply: 503 for unavailability, 404, else 500. */
void slk__reply_backend_error(struct slk_request *req, int err, const char *what);

/* A time as a request gave it: RFC 3339 with an offset, or naive (read in the instructor's zone). */
struct slk__time_input {
    bool naive;
    int64_t utc_ms;
    struct slk_local_time local;
};

/* 0, or -1 when v is not an RFC 3339 string. */
int slk__time_parse(const json_t *v, struct slk__time_input *out);
/* The instant in UTC ms; -1 when a naive time does not exist in the zone (DST gap). */
int slk__time_resolve(const struct slk__time_input *in, struct slk_tz *tz, int64_t *out);
/* On the instructor's grid: a whole minute whose local time is a multiple of granularity_minutes. */
bool slk__on_grid(const struct slk_instructor_entry *e, int64_t t);
/* Path parameter 0 as a valid instructor id (^[A-Za-z0-9._:-]{1,64}$). */
bool slk__instructor_param(const struct slk_request *req, char out[SLK_MAX_ID_LEN + 1]);

/* 409 slot_unavailable naming the taken range [from_ms, to_ms) (R-HOLD). */
void slk__reply_slot_unavailable(struct slk_request *req, int64_t from_ms, int64_t to_ms);
/* Its body (malloc'd), for a refusal kept to be sent again; NULL on OOM. */
char *slk__slot_unavailable_body(int64_t from_ms, int64_t to_ms);

/* True when a script replied an array whose first element is the string tag ("OK", "TAKEN", "STALE", …). */
bool slk__script_reply_is(const redisReply *r, const char *tag);

#endif
