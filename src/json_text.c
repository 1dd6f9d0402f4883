/*
 * JSON text for hot replies (json_text.h). Only what jansson would write
 * without escaping is written here; everything else goes through jansson.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "slk/json_text.h"
#include "slk/timeutil.h"

#define FIRST_CAP 1024

void slk_json_text_init(struct slk_json_text *t)
{
    memset(t, 0, sizeof(*t));
}

void slk_json_text_free(struct slk_json_text *t)
{
    free(t->buf);
    slk_json_text_init(t);
}

char *slk_json_text_take(struct slk_json_text *t, size_t *len)
{
    char *text = t->failed || t->buf == NULL ? NULL : t->buf;
    if (text == NULL)
        free(t->buf);
    else if (len != NULL)
        *len = t->len;
    slk_json_text_init(t);
    return text;
}

/* Room for n more bytes and the NUL; false (and the failure noted) when there is none. */
static bool reserve(struct slk_json_text *t, size_t n)
{
    if (t->failed)
        return false;
    if (n > SLK_MAX_JSON_TEXT_BYTES - t->len) {
        t->failed = true;
        return false;
    }
    if (t->len + n + 1 <= t->cap)
        return true;
    size_t cap = t->cap != 0 ? t->cap : FIRST_CAP;
    while (cap < t->len + n + 1)
        cap *= 2;
    char *buf = realloc(t->buf, cap);
    if (buf == NULL) {
        t->failed = true;
        return false;
    }
    t->buf = buf;
    t->cap = cap;
    return true;
}

static void put(struct slk_json_text *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* What every value and key starts with: the comma after the previous value at this level. */
static void separate(struct slk_json_text *t)
{
    if (t->need_comma && !t->after_key)
        put(t, ",", 1);
    t->after_key = false;
}

static void value_done(struct slk_json_text *t)
{
    t->need_comma = true;
}

void slk_json_text_open(struct slk_json_text *t, char bracket)
{
    separate(t);
    put(t, &bracket, 1);
    t->need_comma = false;
}

void slk_json_text_close(struct slk_json_text *t, char bracket)
{
    put(t, &bracket, 1);
    value_done(t);
}

/* Bytes jansson writes as they are, with no escape: printable ASCII but the quote and the backslash. */
static bool plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static void put_quoted(struct slk_json_text *t, const char *s)
{
    size_t n = strlen(s);
    if (plain(s, n)) {
        put(t, "\"", 1);
        put(t, s, n);
        put(t, "\"", 1);
        return;
    }
    json_t *js = json_string(s);
    char *text = js != NULL ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(js);
    if (text == NULL) {
        t->failed = true;
        return;
    }
    put(t, text, strlen(text));
    free(text);
}

void slk_json_text_key(struct slk_json_text *t, const char *key)
{
    separate(t);
    put_quoted(t, key);
    put(t, ":", 1);
    t->after_key = true;
}

void slk_json_text_string(struct slk_json_text *t, const char *s)
{
    separate(t);
    put_quoted(t, s);
    value_done(t);
}

void slk_json_text_string_or_null(struct slk_json_text *t, const char *s)
{
    if (s == NULL || s[0] == '\0')
        slk_json_text_null(t);
    else
        slk_json_text_string(t, s);
}

void slk_json_text_int(struct slk_json_text *t, int64_t v)
{
    char digits[24];
    int n = slk_format_i64(digits, v);
    separate(t);
    put(t, digits, (size_t)n);
    value_done(t);
}

void slk_json_text_bool(struct slk_json_text *t, bool v)
{
    separate(t);
    put(t, v ? "true" : "false", v ? 4 : 5);
    value_done(t);
}

void slk_json_text_null(struct slk_json_text *t)
{
    separate(t);
    put(t, "null", 4);
    value_done(t);
}

void slk_json_text_cents(struct slk_json_text *t, int64_t cents)
{
    char digits[32];
    size_t n = 0;
    uint64_t magnitude = cents < 0 ? 0 - (uint64_t)cents : (uint64_t)cents;
    if (cents < 0)
        digits[n++] = '-';
    n += slk_format_u64(digits + n, magnitude / 100);
    digits[n++] = '.';
    digits[n++] = (char)('0' + magnitude % 100 / 10);
    if (magnitude % 10 != 0)
        digits[n++] = (char)('0' + magnitude % 10);
    separate(t);
    put(t, digits, n);
    value_done(t);
}

void slk_json_text_time_or_null(struct slk_json_text *t, int64_t utc_ms)
{
    if (utc_ms == 0) {
        slk_json_text_null(t);
        return;
    }
    char stamp[32];
    slk_time_format_rfc3339(utc_ms, stamp);
    slk_json_text_string(t, stamp);
}

void slk_json_text_raw(struct slk_json_text *t, const char *json, size_t len)
{
    separate(t);
    put(t, json, len);
    value_done(t);
}
