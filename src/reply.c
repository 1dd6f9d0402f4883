/*
 * The R-API JSON envelope. Any failure to build it (OOM, a message that is
 * not UTF-8) degrades to a fixed 500 envelope that needs no allocation.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/json_text.h"
#include "slk/response.h"

#define JSON_TYPE "application/json; charset=utf-8"

static const char internal_error_body[] =
    "{\"success\":false,\"message\":\"Internal server error\",\"error\":{\"code\":\"internal_error\",\"details\":{}}}";

static void send_internal_error(struct slk_request *req)
{
    slk_response_send(req, 500, JSON_TYPE, internal_error_body, sizeof(internal_error_body) - 1);
}

static const char *message_or_default(const char *message, int status)
{
    return message != NULL ? message : slk_http_status_text(status);
}

/* Takes v: its text, or *text NULL when v is NULL; false when v could not be written. */
static bool dump_owned(json_t *v, char **text)
{
    *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    bool ok = v == NULL || *text != NULL;
    json_decref(v);
    return ok;
}

/* A value already written as JSON text; an empty object for NULL. */
static void put_raw_or_empty(struct slk_json_text *t, const char *text)
{
    if (text != NULL)
        slk_json_text_raw(t, text, strlen(text));
    else
        slk_json_text_raw(t, "{}", 2);
}

/* {"success":…,"message":…, then the key of what follows. */
static void open_envelope(struct slk_json_text *t, bool success, const char *message, int status, const char *next)
{
    slk_json_text_init(t);
    slk_json_text_open(t, '{');
    slk_json_text_key(t, "success");
    slk_json_text_bool(t, success);
    slk_json_text_key(t, "message");
    slk_json_text_string(t, message_or_default(message, status));
    slk_json_text_key(t, next);
}

void slk_reply_ok(struct slk_request *req, int status, const char *message, json_t *data)
{
    char *text;
    if (!dump_owned(data, &text)) {
        send_internal_error(req);
        return;
    }
    struct slk_json_text t;
    slk_reply_text_begin(&t, status, message);
    put_raw_or_empty(&t, text);
    free(text);
    slk_reply_text_end(req, status, &t);
}

void slk_reply_text_begin(struct slk_json_text *t, int status, const char *message)
{
    open_envelope(t, true, message, status, "data");
}

void slk_reply_text_end(struct slk_request *req, int status, struct slk_json_text *t)
{
    slk_json_text_close(t, '}');
    size_t len;
    char *text = slk_json_text_take(t, &len);
    if (text == NULL) {
        send_internal_error(req);
        return;
    }
    slk_response_send(req, status, JSON_TYPE, text, len);
    free(text);
}

char *slk_error_body_raw(int status, const char *code, const char *message, const char *details)
{
    struct slk_json_text t;
    open_envelope(&t, false, message, status, "error");
    slk_json_text_open(&t, '{');
    slk_json_text_key(&t, "code");
    slk_json_text_string(&t, code);
    slk_json_text_key(&t, "details");
    put_raw_or_empty(&t, details);
    slk_json_text_close(&t, '}');
    slk_json_text_close(&t, '}');
    return slk_json_text_take(&t, NULL);
}

char *slk_error_body(int status, const char *code, const char *message, json_t *details)
{
    char *text;
    if (!dump_owned(details, &text))
        return NULL;
    char *body = slk_error_body_raw(status, code, message, text);
    free(text);
    return body;
}

void slk_reply_error(struct slk_request *req, int status, const char *code, const char *message, json_t *details)
{
    char *text = slk_error_body(status, code, message, details);
    if (text == NULL) {
        send_internal_error(req);
        return;
    }
    slk_reply_rendered(req, status, text, strlen(text));
    free(text);
}

void slk_reply_rendered(struct slk_request *req, int status, const char *body, size_t len)
{
    slk_response_send(req, status, JSON_TYPE, body, len);
}

void slk_reply_invalid(struct slk_request *req, const char *field, const char *message)
{
    json_t *details = json_object();
    if (details != NULL && field != NULL && json_object_set_new(details, "field", json_string(field)) != 0) {
        json_decref(details);
        send_internal_error(req);
        return;
    }
    slk_reply_error(req, 422, "validation_failed", message != NULL ? message : "Validation failed", details);
}

void slk_reply_unavailable(struct slk_request *req, const char *what)
{
    char message[160];
    if (what != NULL)
        snprintf(message, sizeof(message), "%s is temporarily unavailable, retry shortly", what);
    else
        snprintf(message, sizeof(message), "Service temporarily unavailable, retry shortly");
    if (slk_response_header(req, "Retry-After", "1") != 0) {
        /* Only OOM gets here; the 503 itself still tells the client to come back. */
    }
    slk_reply_error(req, 503, "unavailable", message, NULL);
}
