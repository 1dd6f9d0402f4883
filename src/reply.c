/*
 * The R-API JSON envelope. Any failure to build it (OOM, a message that is
 * not UTF-8) degrades to a fixed 500 envelope that needs no allocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/response.h"

#define JSON_TYPE "application/json; charset=utf-8"

static const char internal_error_body[] =
    "{\"success\":false,\"message\":\"Internal server error\",\"error\":{\"code\":\"internal_error\",\"details\":{}}}";

static void send_internal_error(struct slk_request *req)
{
    slk_response_send(req, 500, JSON_TYPE, internal_error_body, sizeof(internal_error_body) - 1);
}

/* Sends root as the reply; takes root. */
static void send_json(struct slk_request *req, int status, json_t *root)
{
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL) {
        send_internal_error(req);
        return;
    }
    slk_response_send(req, status, JSON_TYPE, text, strlen(text));
    free(text);
}

static const char *message_or_default(const char *message, int status)
{
    return message != NULL ? message : slk_http_status_text(status);
}

void slk_reply_ok(struct slk_request *req, int status, const char *message, json_t *data)
{
    if (data == NULL)
        data = json_object();
    json_t *root = json_object();
    if (root == NULL || data == NULL || json_object_set_new(root, "success", json_true()) != 0 ||
        json_object_set_new(root, "message", json_string(message_or_default(message, status))) != 0) {
        json_decref(data);
        json_decref(root);
        send_internal_error(req);
        return;
    }
    if (json_object_set_new(root, "data", data) != 0) {
        json_decref(root);
        send_internal_error(req);
        return;
    }
    send_json(req, status, root);
}

char *slk_error_body(int status, const char *code, const char *message, json_t *details)
{
    if (details == NULL)
        details = json_object();
    json_t *error = json_object();
    json_t *root = json_object();
    if (root == NULL || error == NULL || details == NULL ||
        json_object_set_new(error, "code", json_string(code)) != 0 ||
        json_object_set_new(root, "success", json_false()) != 0 ||
        json_object_set_new(root, "message", json_string(message_or_default(message, status))) != 0) {
        json_decref(details);
        json_decref(error);
        json_decref(root);
        return NULL;
    }
    /* set_new steals its value even when it fails, so each value below is freed exactly once. */
    if (json_object_set_new(error, "details", details) != 0) {
        json_decref(error);
        json_decref(root);
        return NULL;
    }
    if (json_object_set_new(root, "error", error) != 0) {
        json_decref(root);
        return NULL;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
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
