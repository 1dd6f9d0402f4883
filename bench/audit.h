/*
 * The correctness audit run after every scenario. The decisions (what
 * counts as a double booking, a missing confirmation, a wrong number of
 * winners) are pure functions over plain arrays, unit-tested without
 * services; bench_audit_pg / bench_audit_redis_leaks only fetch the data.
 */
#ifndef SLOTBENCH_AUDIT_H
#define SLOTBENCH_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "result.h"

#define BENCH_UUID_LEN 36

struct bench_interval {
    const char *instructor;
    int64_t start_ms, end_ms; /* [start, end) */
};

/*
 * Double bookings among active rows: sorts rows (by instructor, start) and
 * returns how many rows overlap an earlier row of the same instructor
 * (0 when no two intervals of one instructor intersect; touching ends do
 * not overlap).
 */
int64_t bench_audit_count_overlaps(struct bench_interval *rows, size_t n);

/*
 * Confirmed replies missing from Postgres: how many of confirmed[] (uuids,
 * any case) are not in found[] (the uuids Postgres has as paid/confirmed).
 * Sorts found[] (lower-cases it).
 */
int64_t bench_audit_count_missing(const char (*confirmed)[BENCH_UUID_LEN + 1], size_t n,
                                  char (*found)[BENCH_UUID_LEN + 1], size_t m);

/*
 * True when a unit key's value still names the hold (its fencing token, or
 * "H:<uuid>" as servers before the token wrote it): the hold leaked past its
 * expiry.
 */
int bench_audit_unit_leaked(const char *value, size_t len, const char *uuid, int64_t fence);

/*
 * Sets a->passed and a->failure from the counters: any double booking,
 * missing confirmation or leaked hold fails; when a->winners_checked, every
 * hot slot must have exactly winners_expected winners.
 */
void bench_audit_decide(struct bench_audit *a, int64_t winners_expected);

/*
 * From Postgres: double bookings among the instructors whose id starts with
 * prefix, and which of confirmed[] are missing. Fills a->double_bookings,
 * a->confirmed_missing, a->confirmed_checked. Returns 0 or -1 (message on
 * stderr).
 */
int bench_audit_pg(const char *conninfo, const char *prefix, const char (*confirmed)[BENCH_UUID_LEN + 1], size_t n,
                   struct bench_audit *a);

struct bench_unit_hold {
    char instructor[65];
    char uuid[BENCH_UUID_LEN + 1];
    int64_t fence;        /* its fence_token */
    int64_t first_minute; /* epoch minute of its first unit */
    int units;            /* unit count (granularity 15 → one key per 15 minutes) */
    int unit_minutes;
};

/*
 * From Redis: how many of holds[] still have a unit key
 * slk:{instructor}:u:<minute> naming them. Pipelined. Adds to
 * a->leaked_holds and a->expire_checked. Returns 0 or -1.
 */
int bench_audit_redis_leaks(const char *redis_url, const struct bench_unit_hold *holds, size_t n,
                            struct bench_audit *a);

#endif
