#include "audit.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int interval_cmp(const void *a, const void *b)
{
    const struct bench_interval *x = a, *y = b;
    int c = strcmp(x->instructor, y->instructor);
    if (c != 0)
        return c;
    if (x->start_ms != y->start_ms)
        return x->start_ms < y->start_ms ? -1 : 1;
    return (x->end_ms > y->end_ms) - (x->end_ms < y->end_ms);
}

int64_t bench_audit_count_overlaps(struct bench_interval *rows, size_t n)
{
    if (n < 2)
        return 0;
    qsort(rows, n, sizeof(*rows), interval_cmp);
    int64_t overlaps = 0;
    /* Sorted by start within an instructor: a row overlaps an earlier one iff it starts before the furthest end so far.
     */
    int64_t reach = rows[0].end_ms;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(rows[i].instructor, rows[i - 1].instructor) != 0) {
            reach = rows[i].end_ms;
            continue;
        }
        if (rows[i].start_ms < reach)
            overlaps++;
        if (rows[i].end_ms > reach)
            reach = rows[i].end_ms;
    }
    return overlaps;
}

static void lower_uuid(char *dst, const char *src)
{
    for (int i = 0; i < BENCH_UUID_LEN; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[BENCH_UUID_LEN] = '\0';
}

static int uuid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, BENCH_UUID_LEN);
}

int64_t bench_audit_count_missing(const char (*confirmed)[BENCH_UUID_LEN + 1], size_t n,
                                  char (*found)[BENCH_UUID_LEN + 1], size_t m)
{
    for (size_t i = 0; i < m; i++)
        lower_uuid(found[i], found[i]);
    if (m > 1)
        qsort(found, m, sizeof(*found), uuid_cmp);
    int64_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        char key[BENCH_UUID_LEN + 1];
        lower_uuid(key, confirmed[i]);
        if (m == 0 || bsearch(key, found, m, sizeof(*found), uuid_cmp) == NULL)
            missing++;
    }
    return missing;
}

int bench_audit_unit_leaked(const char *value, size_t len, const char *uuid, int64_t fence)
{
    if (value == NULL)
        return 0;
    if (len == 2 + BENCH_UUID_LEN && value[0] == 'H' && value[1] == ':')
        return strncasecmp(value + 2, uuid, BENCH_UUID_LEN) == 0;
    char token[24];
    int n = snprintf(token, sizeof(token), "%" PRId64, fence);
    return fence > 0 && (size_t)n == len && memcmp(value, token, len) == 0;
}

static void fail_once(struct bench_audit *a, const char *why)
{
    if (a->passed) {
        a->passed = false;
        snprintf(a->failure, sizeof(a->failure), "%s", why);
    }
}

void bench_audit_decide(struct bench_audit *a, int64_t winners_expected)
{
    char why[sizeof(a->failure)];
    a->passed = true;
    a->failure[0] = '\0';
    if (a->double_bookings != 0) {
        snprintf(why, sizeof(why), "%lld double booking(s) in Postgres", (long long)a->double_bookings);
        fail_once(a, why);
    }
    if (a->confirmed_missing != 0) {
        snprintf(why, sizeof(why), "%lld confirmed repl%s missing from Postgres", (long long)a->confirmed_missing,
                 a->confirmed_missing == 1 ? "y" : "ies");
        fail_once(a, why);
    }
    if (a->winners_checked) {
        int slots = a->hot_slots < BENCH_MAX_HOT_SLOTS ? a->hot_slots : BENCH_MAX_HOT_SLOTS;
        for (int i = 0; i < slots; i++) {
            if (a->winners[i] != winners_expected) {
                snprintf(why, sizeof(why), "hot slot %d has %lld winner(s), expected %lld", i, (long long)a->winners[i],
                         (long long)winners_expected);
                fail_once(a, why);
                break;
            }
        }
    }
    if (a->leaked_holds != 0) {
        snprintf(why, sizeof(why), "%lld hold(s) still in Redis after their expiry", (long long)a->leaked_holds);
        fail_once(a, why);
    }
}
