#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "slk/instructor.h"
#include "slk/timeutil.h"

static json_t *settings(const char *text)
{
    json_t *obj = json_loads(text, 0, NULL);
    assert_non_null(obj);
    return obj;
}

static int parse(const char *text, struct slk_instructor *ins, const char **field)
{
    json_t *obj = settings(text);
    const char *why = NULL;
    int rc = slk_instructor_parse(ins, "ins-1", obj, 1800, field, &why);
    if (rc != 0)
        assert_non_null(why);
    json_decref(obj);
    return rc;
}

static void test_defaults(void **state)
{
    (void)state;
    struct slk_instructor ins;
    const char *field = NULL;
    assert_int_equal(parse("{}", &ins, &field), 0);
    assert_string_equal(ins.id, "ins-1");
    assert_string_equal(ins.timezone, "UTC");
    assert_int_equal(ins.granularity_minutes, 15);
    assert_int_equal(ins.hold_seconds, 1800);
    assert_int_equal(ins.buffer_minutes, 0);
    assert_false(ins.requires_acceptance);
    assert_int_equal(ins.num_weekly, 0);
}

static void expect_bad(const char *text, const char *expected_field)
{
    struct slk_instructor ins;
    const char *field = NULL;
    assert_int_equal(parse(text, &ins, &field), SLK_EINVAL);
    assert_string_equal(field, expected_field);
}

static void test_rejects_each_bad_field(void **state)
{
    (void)state;
    expect_bad("{\"timezone\":\"Mars/Base\"}", "timezone");
    expect_bad("{\"timezone\":5}", "timezone");
    expect_bad("{\"granularity_minutes\":7}", "granularity_minutes");
    expect_bad("{\"granularity_minutes\":0}", "granularity_minutes");
    expect_bad("{\"granularity_minutes\":120}", "granularity_minutes"); /* must divide an hour: DST phase */
    expect_bad("{\"granularity_minutes\":\"15\"}", "granularity_minutes");
    expect_bad("{\"hold_seconds\":0}", "hold_seconds");
    expect_bad("{\"hold_seconds\":86401}", "hold_seconds");
    expect_bad("{\"buffer_minutes\":10}", "buffer_minutes"); /* not a multiple of 15 */
    expect_bad("{\"requires_acceptance\":\"yes\"}", "requires_acceptance");
    expect_bad("{\"weekly\":[{\"day\":\"monday\",\"start\":\"09:00\",\"end\":\"17:00\"}]}", "weekly");
    expect_bad("{\"weekly\":[{\"day\":\"mon\",\"start\":\"17:00\",\"end\":\"09:00\"}]}", "weekly");
    expect_bad("{\"weekly\":[{\"day\":\"mon\",\"start\":\"09:10\",\"end\":\"17:00\"}]}", "weekly");
    expect_bad("{\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"24:15\"}]}", "weekly");
    expect_bad("{\"weekly\":{}}", "weekly");
}

static void test_bad_id(void **state)
{
    (void)state;
    json_t *obj = settings("{}");
    struct slk_instructor ins;
    const char *field = NULL, *why = NULL;
    assert_int_equal(slk_instructor_parse(&ins, "bad/id", obj, 1800, &field, &why), SLK_EINVAL);
    assert_string_equal(field, "id");
    json_decref(obj);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    struct slk_instructor a, b;
    const char *field = NULL;
    assert_int_equal(parse("{\"timezone\":\"Europe/Berlin\",\"granularity_minutes\":30,\"buffer_minutes\":30,"
                           "\"requires_acceptance\":true,\"weekly\":[{\"day\":\"sun\",\"start\":\"09:00\","
                           "\"end\":\"24:00\"}]}",
                           &a, &field),
                     0);
    a.version = 7;
    json_t *out = slk_instructor_to_json(&a);
    assert_non_null(out);
    const char *why = NULL;
    assert_int_equal(slk_instructor_parse(&b, "ins-1", out, 1800, &field, &why), 0);
    json_decref(out);
    assert_string_equal(b.timezone, "Europe/Berlin");
    assert_int_equal(b.granularity_minutes, 30);
    assert_int_equal(b.buffer_minutes, 30);
    assert_true(b.requires_acceptance);
    assert_int_equal(b.version, 7);
    assert_int_equal(b.num_weekly, 1);
    assert_int_equal(b.weekly[0].day, 6);
    assert_int_equal(b.weekly[0].start_min, 9 * 60);
    assert_int_equal(b.weekly[0].end_min, 1440);
}

static int64_t utc(const char *s)
{
    int64_t ms = 0;
    bool naive = true;
    struct slk_local_time lt;
    assert_int_equal(slk_time_parse_rfc3339(s, strlen(s), &ms, &naive, &lt), 0);
    assert_false(naive);
    return ms;
}

/* Windows are local time: Berlin 09:00-17:00 on Monday is 08:00-16:00Z in winter, 07:00-15:00Z in summer. */
static void test_covers_uses_local_time(void **state)
{
    (void)state;
    struct slk_instructor ins;
    const char *field = NULL;
    assert_int_equal(parse("{\"timezone\":\"Europe/Berlin\",\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\","
                           "\"end\":\"17:00\"}]}",
                           &ins, &field),
                     0);
    struct slk_tz *tz = slk_tz_open("Europe/Berlin");
    assert_non_null(tz);
    /* 2025-01-06 is a Monday (winter, UTC+1). */
    assert_true(slk_instructor_covers(&ins, tz, utc("2025-01-06T08:00:00Z"), utc("2025-01-06T16:00:00Z")));
    assert_false(slk_instructor_covers(&ins, tz, utc("2025-01-06T07:45:00Z"), utc("2025-01-06T08:45:00Z")));
    assert_false(slk_instructor_covers(&ins, tz, utc("2025-01-06T15:30:00Z"), utc("2025-01-06T16:15:00Z")));
    /* 2025-07-07 is a Monday (summer, UTC+2). */
    assert_true(slk_instructor_covers(&ins, tz, utc("2025-07-07T07:00:00Z"), utc("2025-07-07T08:00:00Z")));
    assert_false(slk_instructor_covers(&ins, tz, utc("2025-07-07T15:00:00Z"), utc("2025-07-07T16:00:00Z")));
    /* Tuesday has no window. */
    assert_false(slk_instructor_covers(&ins, tz, utc("2025-01-07T09:00:00Z"), utc("2025-01-07T10:00:00Z")));
    slk_tz_close(tz);
}

static void test_cache(void **state)
{
    (void)state;
    struct slk_instructor_cache *c = slk_instructor_cache_create();
    assert_non_null(c);
    assert_null(slk_instructor_cache_get(c, "ins-1"));
    struct slk_instructor ins;
    const char *field = NULL;
    assert_int_equal(parse("{\"timezone\":\"America/New_York\"}", &ins, &field), 0);
    ins.version = 1;
    assert_non_null(slk_instructor_cache_put(c, &ins));
    ins.version = 2;
    assert_non_null(slk_instructor_cache_put(c, &ins));
    struct slk_instructor_entry *e = slk_instructor_cache_get(c, "ins-1");
    assert_non_null(e);
    assert_int_equal(e->ins.version, 2);
    assert_non_null(e->tz);
    slk_instructor_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_rejects_each_bad_field),
        cmocka_unit_test(test_bad_id),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_covers_uses_local_time),
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
