/*
 * JSON text written straight into a growing buffer, for the replies on hot
 * paths (a granted hold, a refusal kept for the stampede behind it, a booking
 * read). jansson's json_dumps walks every character through its UTF-8
 * iterator and costs ~10 µs for one booking; this writes the same bytes in
 * about a tenth of that. A string that is not plain printable ASCII (quotes,
 * backslashes, control or non-ASCII characters) is still encoded by jansson,
 * which also refuses invalid UTF-8, so the text is exactly what json_dumps
 * with JSON_COMPACT would write, amounts of money aside (slk_json_text_cents).
 *
 * Commas are placed by the writer: open/close, key and value calls in the
 * order the text reads. Any failure (out of memory, over
 * SLK_MAX_JSON_TEXT_BYTES, a string jansson refuses) sticks: later calls do
 * nothing and slk_json_text_take() returns NULL.
 */
#ifndef SLK_JSON_TEXT_H
#define SLK_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/common.h"

struct slk_json_text {
    char *buf;
    size_t len, cap;
    bool failed;
    bool need_comma; /* a value was written at this level */
    bool after_key;  /* a key was written, its value comes next */
};

void slk_json_text_init(struct slk_json_text *t);
/* The text, NUL-terminated (length in *len when len is not NULL), now the caller's to free(); NULL after a
 * failure or when nothing was written. Leaves t empty either way. */
char *slk_json_text_take(struct slk_json_text *t, size_t *len) SLK_MUST_CHECK;
void slk_json_text_free(struct slk_json_text *t);

/* '{' '[' and their closers. */
void slk_json_text_open(struct slk_json_text *t, char bracket);
void slk_json_text_close(struct slk_json_text *t, char bracket);
void slk_json_text_key(struct slk_json_text *t, const char *key);

void slk_json_text_string(struct slk_json_text *t, const char *s);
/* null for NULL or "", as the API shows absent text. */
void slk_json_text_string_or_null(struct slk_json_text *t, const char *s);
void slk_json_text_int(struct slk_json_text *t, int64_t v);
void slk_json_text_bool(struct slk_json_text *t, bool v);
void slk_json_text_null(struct slk_json_text *t);
/* An amount of money in cents as a JSON number in units: 1999 → 19.99, 5000 → 50.0 (the shortest text that reads
 * back as the same double, so every JSON reader sees the amount exactly). */
void slk_json_text_cents(struct slk_json_text *t, int64_t cents);
/* An RFC 3339 UTC timestamp as the API writes times (slk_time_format_rfc3339); null for 0. */
void slk_json_text_time_or_null(struct slk_json_text *t, int64_t utc_ms);
/* A value that is already JSON text. */
void slk_json_text_raw(struct slk_json_text *t, const char *json, size_t len);

#endif
