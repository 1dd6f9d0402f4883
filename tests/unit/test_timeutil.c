#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "slk/timeutil.h"

/* Reference instants computed independently with `date -u -d <time> +%s`. */
#define T_2025_02_15_0900Z 1739610000000LL
#define T_2025_01_15_0900Z 1736931600000LL
#define T_2025_07_15_0800Z 1752566400000LL
#define T_2025_10_26_0030Z 1761438600000LL
#define T_2024_02_29_1200Z 1709208000000LL
#define T_2025_03_01_0430Z 1740803400000LL
#define T_2025_03_01_1800Z 1740852000000LL
#define T_2025_02_15_0300Z 1739588400000LL
#define T_9999_12_31_235959Z 253402300799000LL
#define T_0001_01_01Z (-62135596800000LL)

static int parse(const char *s, int64_t *ms, bool *naive, struct slk_local_time *lt)
{
    return slk_time_parse_rfc3339(s, strlen(s), ms, naive, lt);
}

static int64_t parse_utc(const char *s)
{
    int64_t ms = -1;
    bool naive = true;
    struct slk_local_time lt;
    assert_int_equal(parse(s, &ms, &naive, &lt), 0);
    assert_false(naive);
    return ms;
}

static void assert_invalid(const char *s)
{
    int64_t ms;
    bool naive;
    struct slk_local_time lt;
    if (parse(s, &ms, &naive, &lt) != SLK_EINVAL)
        fail_msg("accepted invalid time \"%s\"", s);
}

static void test_parse_utc_designators(void **state)
{
    (void)state;
    assert_int_equal(parse_utc("2025-02-15T09:00:00Z"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("2025-02-15t09:00:00z"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("2025-02-15 09:00:00Z"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("2025-02-15T09:00:00+00:00"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("2025-02-15T09:00:00-00:00"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_utc("1969-12-31T23:59:59Z"), -1000);
    assert_int_equal(parse_utc("9999-12-31T23:59:59Z"), T_9999_12_31_235959Z);
    assert_int_equal(parse_utc("0001-01-01T00:00:00Z"), T_0001_01_01Z);
}

static void test_parse_offsets(void **state)
{
    (void)state;
    /* 10:00 at +05:30 is 04:30Z; 10:00 at -08:00 is 18:00Z, both on 2025-03-01. */
    assert_int_equal(parse_utc("2025-03-01T10:00:00+05:30"), T_2025_03_01_0430Z);
    assert_int_equal(parse_utc("2025-03-01T10:00:00-08:00"), T_2025_03_01_1800Z);
    /* An offset that moves the instant across a day (and month) boundary. */
    assert_int_equal(parse_utc("2025-03-01T02:00:00+03:00"), T_2025_03_01_0430Z - (5 * 3600 + 1800) * 1000LL);
    assert_int_equal(parse_utc("2025-02-28T23:00:00-23:59"), T_2025_03_01_0430Z + (18 * 3600 + 29 * 60) * 1000LL);
}

static void test_parse_fractions(void **state)
{
    (void)state;
    assert_int_equal(parse_utc("2025-02-15T09:00:00.5Z"), T_2025_02_15_0900Z + 500);
    assert_int_equal(parse_utc("2025-02-15T09:00:00.25Z"), T_2025_02_15_0900Z + 250);
    assert_int_equal(parse_utc("2025-02-15T09:00:00.123Z"), T_2025_02_15_0900Z + 123);
    /* Sub-millisecond digits are truncated, not rounded. */
    assert_int_equal(parse_utc("2025-02-15T09:00:00.999999999Z"), T_2025_02_15_0900Z + 999);
    assert_int_equal(parse_utc("2025-02-15T09:00:00.0001+00:00"), T_2025_02_15_0900Z);
    assert_int_equal(parse_utc("1969-12-31T23:59:59.5Z"), -500);
}

static void test_parse_naive_returns_fields(void **state)
{
    (void)state;
    int64_t ms = 42;
    bool naive = false;
    struct slk_local_time lt;
    memset(&lt, 0xff, sizeof(lt));

    assert_int_equal(parse("2025-02-15T09:30:45", &ms, &naive, &lt), 0);
    assert_true(naive);
    assert_int_equal(ms, 42); /* untouched: the caller resolves it in a zone */
    assert_int_equal(lt.year, 2025);
    assert_int_equal(lt.month, 2);
    assert_int_equal(lt.day, 15);
    assert_int_equal(lt.hour, 9);
    assert_int_equal(lt.minute, 30);
    assert_int_equal(lt.second, 45);
    assert_int_equal(lt.weekday, 5); /* Saturday */

    assert_int_equal(parse("2025-02-17 00:00:00.750", &ms, &naive, &lt), 0);
    assert_true(naive);
    assert_int_equal(lt.day, 17);
    assert_int_equal(lt.weekday, 0); /* Monday */
}

static void test_parse_leap_years(void **state)
{
    (void)state;
    assert_int_equal(parse_utc("2024-02-29T12:00:00Z"), T_2024_02_29_1200Z);
    (void)parse_utc("2000-02-29T00:00:00Z");
    assert_invalid("2025-02-29T00:00:00Z");
    assert_invalid("1900-02-29T00:00:00Z");
    assert_invalid("2100-02-29T00:00:00Z");
}

static void test_parse_rejects_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2025-02-15",
        "2025-02-15T09:00Z",               /* seconds are required */
        "2025-02-15T09:00",                /* also without designator */
        "2025-02-30T09:00:00Z",            /* no such day */
        "2025-04-31T09:00:00Z",            /* April has 30 days */
        "2025-00-10T09:00:00Z",            /* month 0 */
        "2025-13-10T09:00:00Z",            /* month 13 */
        "2025-01-00T09:00:00Z",            /* day 0 */
        "2025-02-15T24:00:00Z",            /* hour 24 */
        "2025-02-15T09:60:00Z",            /* minute 60 */
        "2025-02-15T09:00:60Z",            /* leap second not accepted */
        "0000-01-01T00:00:00Z",            /* year 0 not accepted */
        "25-02-15T09:00:00Z",              /* 2-digit year */
        "02025-02-15T09:00:00Z",           /* 5-digit year */
        "2025-2-15T09:00:00Z",             /* 1-digit month */
        "2025-02-15T9:00:00Z",             /* 1-digit hour */
        "2025-02-15X09:00:00Z",            /* bad separator */
        "2025/02/15T09:00:00Z",            /* bad date separator */
        "2025-02-15T09:00:00ZZ",           /* trailing junk */
        "2025-02-15T09:00:00Z ",           /* trailing space */
        "2025-02-15T09:00:00 ",            /* trailing space, naive */
        "2025-02-15T09:00:00.Z",           /* empty fraction */
        "2025-02-15T09:00:00.1234567890Z", /* 10 fraction digits */
        "2025-02-15T09:00:00,5Z",          /* comma fraction */
        "2025-02-15T09:00:00+0530",        /* offset without colon */
        "2025-02-15T09:00:00+05",          /* offset without minutes */
        "2025-02-15T09:00:00+24:00",       /* offset hours > 23 */
        "2025-02-15T09:00:00+05:60",       /* offset minutes > 59 */
        "2025-02-15T09:00:00UTC",          /* named zone */
        "+2025-02-15T09:00:00Z",
        "2025-02-15T09:00:00+05:30:00",
        "2025-02-15T09:00:-1Z",
        "2025-02-15T0a:00:00Z",
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(bad); i++)
        assert_invalid(bad[i]);

    /* len is honoured: no NUL terminator needed, and a NUL inside is junk. */
    int64_t ms = 0;
    bool naive;
    struct slk_local_time lt;
    assert_int_equal(slk_time_parse_rfc3339("2025-02-15T09:00:00Zjunk", 20, &ms, &naive, &lt), 0);
    assert_int_equal(ms, T_2025_02_15_0900Z);
    assert_int_equal(slk_time_parse_rfc3339("2025-02-15T09:00:00Z\0", 21, &ms, &naive, &lt), SLK_EINVAL);
}

static void assert_format(int64_t ms, const char *want)
{
    char out[32];
    slk_time_format_rfc3339(ms, out);
    assert_string_equal(out, want);
}

static void test_format(void **state)
{
    (void)state;
    assert_format(T_2025_02_15_0900Z, "2025-02-15T09:00:00Z");
    assert_format(T_2025_02_15_0900Z + 250, "2025-02-15T09:00:00.250Z");
    assert_format(T_2025_02_15_0900Z + 1, "2025-02-15T09:00:00.001Z");
    assert_format(T_2024_02_29_1200Z, "2024-02-29T12:00:00Z");
    assert_format(0, "1970-01-01T00:00:00Z");
    assert_format(-1, "1969-12-31T23:59:59.999Z");
    assert_format(T_9999_12_31_235959Z, "9999-12-31T23:59:59Z");
    assert_format(T_0001_01_01Z, "0001-01-01T00:00:00Z");

    char out[32];
    slk_time_format_rfc3339(INT64_MAX, out); /* must not overflow or crash */
    assert_true(strlen(out) < 32);
    slk_time_format_rfc3339(INT64_MIN, out);
    assert_true(strlen(out) < 32);
}

static void test_format_parse_round_trip(void **state)
{
    (void)state;
    static const int64_t instants[] = {
        0,
        -1,
        1,
        T_2025_02_15_0900Z + 250,
        T_2024_02_29_1200Z + 999,
        T_2025_10_26_0030Z,
        T_9999_12_31_235959Z,
        T_0001_01_01Z,
        951782400000LL /* 2000-02-29 */,
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(instants); i++) {
        char out[32];
        slk_time_format_rfc3339(instants[i], out);
        assert_int_equal(parse_utc(out), instants[i]);
    }
    /* Every day across a leap-year boundary. */
    for (int64_t ms = T_2024_02_29_1200Z - 400LL * 86400000; ms < T_2024_02_29_1200Z + 400LL * 86400000;
         ms += 86400000 + 1234) {
        char out[32];
        slk_time_format_rfc3339(ms, out);
        assert_int_equal(parse_utc(out), ms);
    }
}

static struct slk_local_time local(int y, int mo, int d, int h, int mi, int s)
{
    struct slk_local_time lt = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi, .second = s};
    return lt;
}

static void assert_local(const struct slk_local_time *lt, int y, int mo, int d, int h, int mi, int s, int wd)
{
    assert_int_equal(lt->year, y);
    assert_int_equal(lt->month, mo);
    assert_int_equal(lt->day, d);
    assert_int_equal(lt->hour, h);
    assert_int_equal(lt->minute, mi);
    assert_int_equal(lt->second, s);
    assert_int_equal(lt->weekday, wd);
}

static void test_tz_berlin_winter_and_summer(void **state)
{
    (void)state;
    struct slk_tz *tz = slk_tz_open("Europe/Berlin");
    assert_non_null(tz);
    struct slk_local_time lt;
    int64_t ms = 0;

    /* Winter: CET, UTC+1. 2025-01-15 is a Wednesday. */
    assert_int_equal(slk_tz_to_local(tz, T_2025_01_15_0900Z, &lt), 0);
    assert_local(&lt, 2025, 1, 15, 10, 0, 0, 2);
    lt = local(2025, 1, 15, 10, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_01_15_0900Z);

    /* Summer: CEST, UTC+2. 2025-07-15 is a Tuesday. */
    assert_int_equal(slk_tz_to_local(tz, T_2025_07_15_0800Z, &lt), 0);
    assert_local(&lt, 2025, 7, 15, 10, 0, 0, 1);
    lt = local(2025, 7, 15, 10, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_07_15_0800Z);

    /* Milliseconds are dropped by to_local and seconds kept. */
    assert_int_equal(slk_tz_to_local(tz, T_2025_07_15_0800Z + 59999, &lt), 0);
    assert_local(&lt, 2025, 7, 15, 10, 0, 59, 1);

    slk_tz_close(tz);
}

static void test_tz_spring_forward_gap_is_invalid(void **state)
{
    (void)state;
    struct slk_tz *tz = slk_tz_open("Europe/Berlin");
    assert_non_null(tz);
    int64_t ms = 12345;
    struct slk_local_time lt;

    /* 2025-03-30: clocks jump from 02:00 to 03:00 local. */
    lt = local(2025, 3, 30, 2, 30, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), SLK_EINVAL);
    lt = local(2025, 3, 30, 2, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), SLK_EINVAL);
    lt = local(2025, 3, 30, 2, 59, 59);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), SLK_EINVAL);
    assert_int_equal(ms, 12345);

    /* Either side of the gap exists: 01:59:59 CET and 03:00 CEST are one second apart. */
    int64_t before = 0;
    int64_t after = 0;
    lt = local(2025, 3, 30, 1, 59, 59);
    assert_int_equal(slk_tz_from_local(tz, &lt, &before), 0);
    lt = local(2025, 3, 30, 3, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &after), 0);
    assert_int_equal(after - before, 1000);
    assert_int_equal(after, 1743296400000LL); /* 01:00Z */

    /* The calendar is still usable after an error. */
    lt = local(2025, 7, 15, 10, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_07_15_0800Z);

    slk_tz_close(tz);
}

static void test_tz_fall_back_resolves_to_earlier(void **state)
{
    (void)state;
    struct slk_tz *tz = slk_tz_open("Europe/Berlin");
    assert_non_null(tz);
    int64_t ms = 0;
    struct slk_local_time lt = local(2025, 10, 26, 2, 30, 0);

    /* 02:30 happens twice on 2025-10-26: first in CEST (00:30Z), then in CET (01:30Z). */
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_10_26_0030Z);

    /* Both instants read back as 02:30 local; 2025-10-26 is a Sunday. */
    assert_int_equal(slk_tz_to_local(tz, T_2025_10_26_0030Z, &lt), 0);
    assert_local(&lt, 2025, 10, 26, 2, 30, 0, 6);
    assert_int_equal(slk_tz_to_local(tz, T_2025_10_26_0030Z + 3600000, &lt), 0);
    assert_local(&lt, 2025, 10, 26, 2, 30, 0, 6);

    slk_tz_close(tz);
}

static void test_tz_new_york_weekday_is_local(void **state)
{
    (void)state;
    struct slk_tz *tz = slk_tz_open("America/New_York");
    assert_non_null(tz);
    struct slk_local_time lt;

    /* Saturday 03:00Z is still Friday 22:00 in New York (EST, UTC-5). */
    assert_int_equal(slk_tz_to_local(tz, T_2025_02_15_0300Z, &lt), 0);
    assert_local(&lt, 2025, 2, 14, 22, 0, 0, 4);
    assert_int_equal(slk_tz_to_local(tz, T_2025_02_15_0900Z, &lt), 0);
    assert_local(&lt, 2025, 2, 15, 4, 0, 0, 5);
    /* Sunday maps to 6. */
    assert_int_equal(slk_tz_to_local(tz, T_2025_02_15_0900Z + 86400000, &lt), 0);
    assert_int_equal(lt.weekday, 6);

    int64_t ms = 0;
    lt = local(2025, 2, 14, 22, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_02_15_0300Z);

    /* Non-existent dates are refused rather than normalised. */
    lt = local(2025, 2, 29, 10, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), SLK_EINVAL);
    lt = local(2025, 2, 14, 24, 0, 0);
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), SLK_EINVAL);

    slk_tz_close(tz);
}

static void test_tz_utc_and_validity(void **state)
{
    (void)state;
    assert_true(slk_tz_valid("UTC"));
    assert_true(slk_tz_valid("Europe/Berlin"));
    assert_true(slk_tz_valid("America/New_York"));
    assert_true(slk_tz_valid("Asia/Kolkata"));
    assert_true(slk_tz_valid("Asia/Calcutta")); /* alias */

    assert_false(slk_tz_valid("Mars/Base"));
    assert_false(slk_tz_valid("Etc/Unknown"));
    assert_false(slk_tz_valid("GMT+05:00")); /* ICU custom id, not IANA */
    assert_false(slk_tz_valid(""));
    assert_false(slk_tz_valid(NULL));
    assert_false(slk_tz_valid("Europe/Berlin "));
    assert_false(slk_tz_valid("europe/berlin_x"));
    assert_false(slk_tz_valid("Europe/Berlin/Europe/Berlin/Europe/Berlin/Europe/Berlin/Europe/Berlin/"));
    assert_false(slk_tz_valid("Europe/B\xc3\xa9rlin"));

    assert_null(slk_tz_open("Mars/Base"));
    assert_null(slk_tz_open(""));
    slk_tz_close(NULL);

    struct slk_tz *tz = slk_tz_open("UTC");
    assert_non_null(tz);
    struct slk_local_time lt;
    assert_int_equal(slk_tz_to_local(tz, T_2025_02_15_0900Z, &lt), 0);
    assert_local(&lt, 2025, 2, 15, 9, 0, 0, 5);
    int64_t ms = 0;
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, T_2025_02_15_0900Z);
    /* Dates before 1582 use the proleptic Gregorian calendar, like RFC 3339. */
    assert_int_equal(slk_tz_to_local(tz, T_0001_01_01Z, &lt), 0);
    assert_local(&lt, 1, 1, 1, 0, 0, 0, 0);
    slk_tz_close(tz);
}

static void test_tz_agrees_with_rfc3339_offsets(void **state)
{
    (void)state;
    struct slk_tz *tz = slk_tz_open("Asia/Kolkata");
    assert_non_null(tz);
    struct slk_local_time lt = local(2025, 3, 1, 10, 0, 0);
    int64_t ms = 0;
    assert_int_equal(slk_tz_from_local(tz, &lt, &ms), 0);
    assert_int_equal(ms, parse_utc("2025-03-01T10:00:00+05:30"));
    slk_tz_close(tz);
}

static void test_clock_offset(void **state)
{
    (void)state;
    int64_t a = slk_clock_now_ms();
    /* A sanity bound, not a performance assertion: the clock reads after 2020. */
    assert_true(a > 1577836800000LL);
    slk_clock_set_offset_ms(3600000);
    int64_t b = slk_clock_now_ms();
    slk_clock_set_offset_ms(0);
    int64_t c = slk_clock_now_ms();
    assert_true(b - a >= 3600000);
    assert_true(c < b);
    assert_true(c >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_utc_designators),
        cmocka_unit_test(test_parse_offsets),
        cmocka_unit_test(test_parse_fractions),
        cmocka_unit_test(test_parse_naive_returns_fields),
        cmocka_unit_test(test_parse_leap_years),
        cmocka_unit_test(test_parse_rejects_invalid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_tz_berlin_winter_and_summer),
        cmocka_unit_test(test_tz_spring_forward_gap_is_invalid),
        cmocka_unit_test(test_tz_fall_back_resolves_to_earlier),
        cmocka_unit_test(test_tz_new_york_weekday_is_local),
        cmocka_unit_test(test_tz_utc_and_validity),
        cmocka_unit_test(test_tz_agrees_with_rfc3339_offsets),
        cmocka_unit_test(test_clock_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
