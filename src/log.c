#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "slk/log.h"

/*
 * A line of at most PIPE_BUF bytes reaches a pipe in one piece even when
 * several threads write at once; longer values are cut.
 */
#define LINE_MAX_BYTES 4096
/* Room always kept for closing the current string, ',"truncated":true' and "}\n". */
#define LINE_TAIL_BYTES 24

struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool truncated;
};

static atomic_int log_level = SLK_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void slk_log_set_level(enum slk_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int slk_log_parse_level(const char *s)
{
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0)
            return (int)i;
    }
    if (strcasecmp(s, "warning") == 0)
        return SLK_LOG_WARN;
    return -1;
}

/* Appends only if the bytes fit before the reserved tail; never a partial piece. */
static bool put(struct line *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > LINE_MAX_BYTES - LINE_TAIL_BYTES) {
        l->truncated = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

/* For the closing bytes, which the reserved tail always has room for. */
static void put_tail(struct line *l, const char *s)
{
    size_t n = strlen(s);

    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Length of the well-formed UTF-8 sequence at s, or 0 when it is malformed. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * Writes s as the inside of a JSON string. Malformed UTF-8 becomes U+FFFD so
 * that a log shipper never rejects the line.
 */
static void put_escaped(struct line *l, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    char esc[8];

    while (*s != '\0') {
        size_t n = utf8_len(s);
        bool ok;

        if (n == 0) {
            ok = put(l, "\\ufffd", 6);
            n = 1;
        } else if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*s;
            ok = put(l, esc, 2);
        } else if (*s == '\n') {
            ok = put(l, "\\n", 2);
        } else if (*s == '\r') {
            ok = put(l, "\\r", 2);
        } else if (*s == '\t') {
            ok = put(l, "\\t", 2);
        } else if (*s < 0x20 || *s == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *s);
            ok = put(l, esc, 6);
        } else {
            ok = put(l, (const char *)s, n);
        }
        if (!ok)
            return;
        s += n;
    }
}

static void put_timestamp(struct line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    put(l, buf, (size_t)n);
}

/* A key must fit whole; the value may be cut. */
static void put_field(struct line *l, const char *key, const char *value)
{
    size_t mark = l->len;

    put(l, ",\"", 2);
    put_escaped(l, key);
    put(l, "\":", 2);
    if (l->truncated) {
        l->len = mark;
        return;
    }
    if (!put(l, value == NULL ? "null" : "\"", value == NULL ? 4 : 1)) {
        l->len = mark;
        return;
    }
    if (value == NULL)
        return;
    put_escaped(l, value);
    put_tail(l, "\"");
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

void slk_log(enum slk_log_level level, const char *msg, ...)
{
    struct line l;
    va_list ap;
    int lv = (int)level;

    if (lv < SLK_LOG_DEBUG || lv > SLK_LOG_ERROR)
        lv = SLK_LOG_ERROR;
    if (lv < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    l.len = 0;
    l.truncated = false;
    put_timestamp(&l);
    put_field(&l, "level", level_names[lv]);
    put_field(&l, "msg", msg != NULL ? msg : "");
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        const char *value;

        if (key == NULL)
            break;
        value = va_arg(ap, const char *);
        put_field(&l, key, value);
        /* A NULL value is also the list's end: reading on would run past the sentinel. */
        if (value == NULL)
            break;
    }
    va_end(ap);
    if (l.truncated)
        put_tail(&l, ",\"truncated\":true");
    put_tail(&l, "}\n");
    write_all(l.buf, l.len);
}
