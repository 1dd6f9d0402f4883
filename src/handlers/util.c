#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/instructor.h"
#include "slk/log.h"
#include "slk/response.h"

static void release_json(void *parsed)
{
    json_decref(parsed);
}

void slk__body_keep(struct slk_request *req, json_t *obj)
{
    if (req->parsed_body != NULL || !json_is_object(obj))
        return;
    req->parsed_body = json_incref(obj);
    req->parsed_body_free = release_json;
}

json_t *slk__body_object(struct slk_request *req, bool empty_ok)
{
    if (req->parsed_body != NULL)
        return json_incref(req->parsed_body);
    if (req->body_len == 0 && empty_ok)
        return json_object();
    json_error_t error;
    json_t *obj = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &error);
    if (obj == NULL) {
        slk_reply_error(req, 400, "malformed_json", "The body is not valid JSON",
                        json_pack("{s:s, s:i}", "reason", error.text, "position", error.position));
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        slk_reply_error(req, 400, "bad_request", "The body must be a JSON object", NULL);
        return NULL;
    }
    return obj;
}

bool slk__param(const struct slk_request *req, size_t i, char *out, size_t cap)
{
    if (i >= req->num_params || req->params[i].len >= cap)
        return false;
    memcpy(out, req->params[i].ptr, req->params[i].len);
    out[req->params[i].len] = '\0';
    return true;
}

bool slk__instructor_param(const struct slk_request *req, char out[SLK_MAX_ID_LEN + 1])
{
    return slk__param(req, 0, out, SLK_MAX_ID_LEN + 1) && slk_id_valid(out, strlen(out));
}

int slk__time_parse(const json_t *v, struct slk__time_input *out)
{
    const char *s = json_string_value(v);
    if (s == NULL || slk_time_parse_rfc3339(s, json_string_length(v), &out->utc_ms, &out->naive, &out->local) != 0)
        return -1;
    return 0;
}

int slk__time_resolve(const struct slk__time_input *in, struct slk_tz *tz, int64_t *out)
{
    if (!in->naive) {
        *out = in->utc_ms;
        return 0;
    }
    return slk_tz_from_local(tz, &in->local, out);
}

bool slk__on_grid(const struct slk_instructor_entry *e, int64_t t)
{
    struct slk_local_time lt;
    if (t % 60000 != 0 || slk_tz_to_local(e->tz, t, &lt) != 0)
        return false;
    return lt.second == 0 && (lt.hour * 60 + lt.minute) % e->ins.granularity_minutes == 0;
}

#define SLOT_UNAVAILABLE_CODE "slot_unavailable"
#define SLOT_UNAVAILABLE_MESSAGE "The requested time is already held or booked"

/* {"start_time":…,"end_time":…}: two stamps of at most 31 characters and the keys. */
#define SLOT_DETAILS_MAX 128

static void slot_unavailable_details(int64_t from_ms, int64_t to_ms, char details[SLOT_DETAILS_MAX])
{
    char from[32], to[32];
    slk_time_format_rfc3339(from_ms, from);
    slk_time_format_rfc3339(to_ms, to);
    snprintf(details, SLOT_DETAILS_MAX, "{\"start_time\":\"%s\",\"end_time\":\"%s\"}", from, to);
}

char *slk__slot_unavailable_body(int64_t from_ms, int64_t to_ms)
{
    char details[SLOT_DETAILS_MAX];
    slot_unavailable_details(from_ms, to_ms, details);
    return slk_error_body_raw(409, SLOT_UNAVAILABLE_CODE, SLOT_UNAVAILABLE_MESSAGE, details);
}

void slk__reply_slot_unavailable(struct slk_request *req, int64_t from_ms, int64_t to_ms)
{
    char *body = slk__slot_unavailable_body(from_ms, to_ms);
    if (body == NULL) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_rendered(req, 409, body, strlen(body));
    free(body);
}

bool slk__is_admin(const struct slk_request *req)
{
    return req->user_role == SLK_ROLE_ADMIN;
}

bool slk__is_instructor(const struct slk_request *req, const char *instructor_id)
{
    return req->user_role == SLK_ROLE_INSTRUCTOR && strcmp(req->user_sub, instructor_id) == 0;
}

bool slk__is_student(const struct slk_request *req, const char *student_id)
{
    return req->user_role == SLK_ROLE_STUDENT && strcmp(req->user_sub, student_id) == 0;
}

void slk__reply_backend_error(struct slk_request *req, int err, const char *what)
{
    switch (err) {
    case SLK_ENOTFOUND:
        slk_reply_error(req, 404, "not_found", "Not found", NULL);
        return;
    case SLK_EUNAVAILABLE:
    case SLK_ETIMEDOUT:
    case SLK_EBUSY:
        slk_reply_unavailable(req, what);
        return;
    default:
        slk_log(SLK_LOG_ERROR, "request failed", "what", what, "error", slk_strerror(err), NULL);
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
    }
}

bool slk__script_reply_is(const redisReply *r, const char *tag)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(r->element[0]->str, tag) == 0;
}
