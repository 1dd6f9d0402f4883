/* bench/audit.c: the audit's decisions over synthetic data (no services). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"

#define H (3600 * 1000LL)

static void test_no_overlap_when_disjoint_or_touching(void **state)
{
    (void)state;
    struct bench_interval rows[] = {
        {"ins-a", 10 * H, 11 * H},
        {"ins-a", 11 * H, 12 * H}, /* touches the previous one: not an overlap */
        {"ins-b", 10 * H, 11 * H}, /* same time, other instructor */
        {"ins-a", 8 * H, 9 * H},
    };
    assert_int_equal(bench_audit_count_overlaps(rows, 4), 0);
    assert_int_equal(bench_audit_count_overlaps(rows, 0), 0);
    assert_int_equal(bench_audit_count_overlaps(rows, 1), 0);
}

static void test_overlaps_counted(void **state)
{
    (void)state;
    struct bench_interval rows[] = {
        {"ins-a", 10 * H, 11 * H},
        {"ins-b", 9 * H, 12 * H},
        {"ins-a", 10 * H + 15 * 60000, 10 * H + 30 * 60000}, /* inside the first */
        {"ins-b", 11 * H, 13 * H},                           /* overlaps the long one */
        {"ins-a", 9 * H, 10 * H},                            /* touches only */
        {"ins-c", 1 * H, 2 * H},
    };
    assert_int_equal(bench_audit_count_overlaps(rows, 6), 2);
}

static void test_overlap_after_long_interval(void **state)
{
    (void)state;
    /* The third row overlaps the first (long) one though not the second: the sweep must remember the reach. */
    struct bench_interval rows[] = {
        {"x", 0, 10 * H},
        {"x", 1 * H, 2 * H},
        {"x", 5 * H, 6 * H},
    };
    assert_int_equal(bench_audit_count_overlaps(rows, 3), 2);
    struct bench_interval same[] = {{"x", 0, H}, {"x", 0, H}};
    assert_int_equal(bench_audit_count_overlaps(same, 2), 1);
}

static void test_missing_confirmations(void **state)
{
    (void)state;
    const char confirmed[3][BENCH_UUID_LEN + 1] = {
        "0b7c2d4e-1111-4aaa-8bbb-000000000001",
        "0B7C2D4E-1111-4AAA-8BBB-000000000002", /* upper case in the reply still matches */
        "0b7c2d4e-1111-4aaa-8bbb-000000000003",
    };
    char found[3][BENCH_UUID_LEN + 1] = {
        "0b7c2d4e-1111-4aaa-8bbb-000000000009",
        "0b7c2d4e-1111-4aaa-8bbb-000000000002",
        "0b7c2d4e-1111-4aaa-8bbb-000000000001",
    };
    assert_int_equal(bench_audit_count_missing(confirmed, 3, found, 3), 1);
    assert_int_equal(bench_audit_count_missing(confirmed, 2, found, 3), 0);
    assert_int_equal(bench_audit_count_missing(confirmed, 3, found, 0), 3);
    assert_int_equal(bench_audit_count_missing(confirmed, 0, found, 3), 0);
}

static void test_unit_leak(void **state)
{
    (void)state;
    const char *uuid = "0b7c2d4e-1111-4aaa-8bbb-000000000001";
    /* A held unit carries its hold's fencing token; servers before it wrote "H:<uuid>". */
    assert_true(bench_audit_unit_leaked("4711", 4, uuid, 4711));
    assert_true(bench_audit_unit_leaked("H:0b7c2d4e-1111-4aaa-8bbb-000000000001", 38, uuid, 4711));
    /* Booked (or another hold's) units are not this hold's leak. */
    assert_false(bench_audit_unit_leaked("B:0b7c2d4e-1111-4aaa-8bbb-000000000001", 38, uuid, 4711));
    assert_false(bench_audit_unit_leaked("H:0b7c2d4e-1111-4aaa-8bbb-000000000002", 38, uuid, 4711));
    assert_false(bench_audit_unit_leaked("4712", 4, uuid, 4711));
    assert_false(bench_audit_unit_leaked("47110", 5, uuid, 4711));
    assert_false(bench_audit_unit_leaked("471", 3, uuid, 4711));
    assert_false(bench_audit_unit_leaked(NULL, 0, uuid, 4711));
    assert_false(bench_audit_unit_leaked("H:", 2, uuid, 4711));
    /* A hold whose reply had no token matches only its "H:<uuid>". */
    assert_false(bench_audit_unit_leaked("-1", 2, uuid, -1));
}

static struct bench_audit clean(void)
{
    struct bench_audit a;
    memset(&a, 0, sizeof(a));
    a.ran = true;
    return a;
}

static void test_decide_winners(void **state)
{
    (void)state;
    struct bench_audit a = clean();
    a.hot_slots = 3;
    a.winners_checked = true;
    a.winners[0] = a.winners[1] = a.winners[2] = 1;
    bench_audit_decide(&a, 1);
    assert_true(a.passed);
    assert_string_equal(a.failure, "");

    a.winners[1] = 2; /* a double win */
    bench_audit_decide(&a, 1);
    assert_false(a.passed);
    assert_non_null(strstr(a.failure, "hot slot 1"));

    a.winners[1] = 0; /* nobody won a slot */
    bench_audit_decide(&a, 1);
    assert_false(a.passed);

    /* hot-reject: no new winner expected */
    a.winners[0] = a.winners[1] = a.winners[2] = 0;
    bench_audit_decide(&a, 0);
    assert_true(a.passed);
    a.winners[2] = 1;
    bench_audit_decide(&a, 0);
    assert_false(a.passed);

    /* Not part of the verdict when not checked. */
    a.winners_checked = false;
    bench_audit_decide(&a, 0);
    assert_true(a.passed);
}

static void test_decide_counters(void **state)
{
    (void)state;
    struct bench_audit a = clean();
    bench_audit_decide(&a, 0);
    assert_true(a.passed);

    a.double_bookings = 1;
    bench_audit_decide(&a, 0);
    assert_false(a.passed);
    assert_non_null(strstr(a.failure, "double booking"));

    a = clean();
    a.confirmed_missing = 2;
    bench_audit_decide(&a, 0);
    assert_false(a.passed);
    assert_non_null(strstr(a.failure, "missing"));

    a = clean();
    a.leaked_holds = 1;
    bench_audit_decide(&a, 0);
    assert_false(a.passed);
    assert_non_null(strstr(a.failure, "expiry"));

    /* A later clean decision clears an earlier failure. */
    a.leaked_holds = 0;
    bench_audit_decide(&a, 0);
    assert_true(a.passed);
    assert_string_equal(a.failure, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_overlap_when_disjoint_or_touching),
        cmocka_unit_test(test_overlaps_counted),
        cmocka_unit_test(test_overlap_after_long_interval),
        cmocka_unit_test(test_missing_confirmations),
        cmocka_unit_test(test_unit_leak),
        cmocka_unit_test(test_decide_winners),
        cmocka_unit_test(test_decide_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
