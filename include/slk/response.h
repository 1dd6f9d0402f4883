/*
 * The JSON envelope of R-API on top of slk_response_send():
 *   {"success": true, "message": "...", "data": {...}}
 *   {"success": false, "message": "...", "error": {"code": "...", "details": {...}}}
 * Content-Type: application/json; charset=utf-8.
 */
#ifndef SLK_RESPONSE_H
#define SLK_RESPONSE_H

#include <jansson.h>

#include "slk/common.h"
#include "slk/http.h"

struct slk_json_text;

/* Steals data (may be NULL: then {}). Releases req. */
void slk_reply_ok(struct slk_request *req, int status, const char *message, json_t *data);
/* Steals details (may be NULL: then {}). Releases req. */
void slk_reply_error(struct slk_request *req, int status, const char *code, const char *message, json_t *details);
/* The error envelope as JSON text (malloc'd), for replies kept and sent again; NULL when it cannot be built.
 * Steals details. */
char *slk_error_body(int status, const char *code, const char *message, json_t *details);
/* The same with details already JSON text (NULL: {}); the hot refusals' envelope, written without a json_t. */
char *slk_error_body_raw(int status, const char *code, const char *message, const char *details) SLK_MUST_CHECK;
/*
 * The success envelope written as text, for hot replies: begin initialises t and writes
 * {"success":true,"message":…,"data": — the caller then writes the data value into t — and end closes and sends
 * it (a 500 when writing failed), frees t's text and releases req.
 */
void slk_reply_text_begin(struct slk_json_text *t, int status, const char *message);
void slk_reply_text_end(struct slk_request *req, int status, struct slk_json_text *t);
/* Sends an envelope rendered earlier (slk_error_body). Releases req. */
void slk_reply_rendered(struct slk_request *req, int status, const char *body, size_t len);
/* 422 validation_failed with details.field. */
void slk_reply_invalid(struct slk_request *req, const char *field, const char *message);
/* 503 unavailable with Retry-After: 1. */
void slk_reply_unavailable(struct slk_request *req, const char *what);

#endif
