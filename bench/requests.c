#include "requests.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "loadgen.h"

void bench_format_minute(int64_t minute, char out[21])
{
    time_t t = (time_t)(minute * 60);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, 21, "%Y-%m-%dT%H:%M:00Z", &tm) == 0)
        out[0] = '\0';
}

/* Head and body in one buffer; the body is copied after the head, so it may not live in buf. */
static int compose(char *buf, const char *method, const char *path, const char *host, const char *token,
                   const char *signature, const char *body, int body_len)
{
    int n = snprintf(buf, BENCH_REQ_MAX, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s", method, path, host,
                     token != NULL ? "Authorization: Bearer " : "", token != NULL ? token : "",
                     token != NULL ? "\r\n" : "", signature != NULL ? "X-Signature: " : "",
                     signature != NULL ? signature : "", signature != NULL ? "\r\n" : "");
    if (n < 0 || n >= BENCH_REQ_MAX)
        return -1;
    int m;
    if (body != NULL)
        m = snprintf(buf + n, (size_t)(BENCH_REQ_MAX - n),
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", body_len);
    else
        m = snprintf(buf + n, (size_t)(BENCH_REQ_MAX - n), "\r\n");
    if (m < 0 || n + m + (body != NULL ? body_len : 0) > BENCH_REQ_MAX)
        return -1;
    n += m;
    if (body != NULL) {
        memcpy(buf + n, body, (size_t)body_len);
        n += body_len;
    }
    return n;
}

int bench_req_hold(char *buf, const char *host, const char *token, const char *student, const char *course,
                   const char *instructor, int64_t start_min, int minutes)
{
    char start[21], end[21], body[512];
    bench_format_minute(start_min, start);
    bench_format_minute(start_min + minutes, end);
    int len = snprintf(body, sizeof(body),
                       "{\"student_uuid\":\"%s\",\"course_uuid\":\"%s\",\"instructor_uuid\":\"%s\","
                       "\"start_time\":\"%s\",\"end_time\":\"%s\",\"price_amount\":50.00,\"currency\":\"USD\"}",
                       student, course, instructor, start, end);
    if (len < 0 || (size_t)len >= sizeof(body))
        return -1;
    return compose(buf, "POST", "/api/v1/bookings", host, token, NULL, body, len);
}

int bench_req_pay(char *buf, const char *host, struct bench_signer *hook, const char *uuid, int64_t t)
{
    char body[256], path[128], sig[BENCH_SIGNATURE_MAX];
    /* The payment reference is derived from the booking so a retried callback is the same callback. */
    int len = snprintf(body, sizeof(body),
                       "{\"payment_reference\":\"pi_sb_%.8s%.4s\",\"payment_status\":\"succeeded\","
                       "\"payment_engine\":\"slotbench\"}",
                       uuid, uuid + 9);
    if (len < 0 || (size_t)len >= sizeof(body))
        return -1;
    if (bench_signature_make(hook, body, (size_t)len, t, sig, sizeof(sig)) < 0)
        return -1;
    snprintf(path, sizeof(path), "/api/v1/bookings/%s/payment-callback", uuid);
    return compose(buf, "POST", path, host, NULL, sig, body, len);
}

int bench_req_cancel(char *buf, const char *host, const char *token, const char *uuid)
{
    char path[128];
    static const char body[] = "{\"reason\":\"slotbench\"}";
    snprintf(path, sizeof(path), "/api/v1/bookings/%s/cancel", uuid);
    return compose(buf, "POST", path, host, token, NULL, body, (int)sizeof(body) - 1);
}

int bench_req_availability(char *buf, const char *host, const char *token, const char *instructor, int64_t from_min,
                           int64_t to_min)
{
    char from[21], to[21], path[256];
    bench_format_minute(from_min, from);
    bench_format_minute(to_min, to);
    int n = snprintf(path, sizeof(path), "/api/v1/instructors/%s/availability?from=%s&to=%s", instructor, from, to);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    return compose(buf, "GET", path, host, token, NULL, NULL, 0);
}

int bench_req_put_instructor(char *buf, const char *host, const char *token, const char *instructor, int hold_seconds)
{
    char path[128], body[768];
    static const char *days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    int len =
        snprintf(body, sizeof(body),
                 "{\"timezone\":\"UTC\",\"granularity_minutes\":15,\"hold_seconds\":%d,\"weekly\":[", hold_seconds);
    for (int d = 0; d < 7; d++)
        len += snprintf(body + len, sizeof(body) - (size_t)len,
                        "%s{\"day\":\"%s\",\"start\":\"00:00\",\"end\":\"24:00\"}", d ? "," : "", days[d]);
    len += snprintf(body + len, sizeof(body) - (size_t)len, "]}");
    if ((size_t)len >= sizeof(body))
        return -1;
    snprintf(path, sizeof(path), "/api/v1/instructors/%s", instructor);
    return compose(buf, "PUT", path, host, token, NULL, body, len);
}

int bench_req_get(char *buf, const char *host, const char *path)
{
    return compose(buf, "GET", path, host, NULL, NULL, NULL, 0);
}
