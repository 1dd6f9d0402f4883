#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "slk/availability.h"
#include "slk/timeutil.h"

static int64_t at(const char *s)
{
    int64_t ms;
    bool naive;
    struct slk_local_time lt;
    assert_int_equal(slk_time_parse_rfc3339(s, strlen(s), &ms, &naive, &lt), 0);
    return ms;
}

static void settings(struct slk_instructor *ins, const char *text)
{
    json_t *obj = json_loads(text, 0, NULL);
    assert_non_null(obj);
    const char *field, *why;
    assert_int_equal(slk_instructor_parse(ins, "i-1", obj, 1800, &field, &why), 0);
    json_decref(obj);
}

/* The slots JSON text, parsed back (it must be valid JSON). */
static json_t *slots_of(const struct slk_avail_plan *p, const struct slk_instructor *ins, const unsigned char *states,
                        const int64_t *expires, bool include_held)
{
    size_t len = 0;
    char *text = slk_avail_slots_json(p, ins, states, expires, include_held, "", "", &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_t *arr = json_loadb(text, len, 0, NULL);
    free(text);
    assert_non_null(arr);
    assert_true(json_is_array(arr));
    return arr;
}

static void test_plan_lists_grid_starts_inside_windows(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"buffer_minutes\":15,\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"10:30\"}]}");
    struct slk_tz *tz = slk_tz_open("UTC");
    struct slk_avail_plan p;
    /* 2030-01-07 is a Monday. */
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-08T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    assert_int_equal(p.num_starts, 3); /* 09:00, 09:15, 09:30 */
    assert_int_equal(p.starts[0], at("2030-01-07T09:00:00Z"));
    assert_int_equal(p.starts[2], at("2030-01-07T09:30:00Z"));
    /* Units 08:45 .. 10:30 (buffer included), each once. */
    assert_int_equal(p.num_minutes, 8);
    assert_int_equal(p.minutes[0] * 60000, at("2030-01-07T08:45:00Z"));
    assert_int_equal(p.minutes[7] * 60000, at("2030-01-07T10:30:00Z"));

    unsigned char states[8] = {0};
    int64_t expires[8] = {0};
    states[7] = SLK_UNIT_HELD; /* 10:30: only the last slot's trailing buffer */
    expires[7] = at("2030-01-07T08:00:00Z");
    json_t *free_only = slots_of(&p, &ins, states, expires, false);
    assert_int_equal(json_array_size(free_only), 2);
    json_decref(free_only);
    json_t *all = slots_of(&p, &ins, states, expires, true);
    assert_int_equal(json_array_size(all), 3);
    json_t *last = json_array_get(all, 2);
    assert_string_equal(json_string_value(json_object_get(last, "state")), "held");
    assert_string_equal(json_string_value(json_object_get(last, "hold_expires_at")), "2030-01-07T08:00:00Z");
    json_decref(all);
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

static void test_plan_never_offers_the_past(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"11:00\"}]}");
    struct slk_tz *tz = slk_tz_open("UTC");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-08T00:00:00Z"), 60,
                                    at("2030-01-07T09:20:00Z")),
                     0);
    assert_int_equal(p.num_starts, 3); /* 09:30, 09:45, 10:00 */
    assert_int_equal(p.starts[0], at("2030-01-07T09:30:00Z"));
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

/* Berlin springs forward on 2030-03-31 at 02:00 local: 02:00-03:00 does not exist. */
static void test_plan_skips_the_spring_forward_gap(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"timezone\":\"Europe/Berlin\",\"granularity_minutes\":60,"
                   "\"weekly\":[{\"day\":\"sun\",\"start\":\"01:00\",\"end\":\"04:00\"}]}");
    struct slk_tz *tz = slk_tz_open("Europe/Berlin");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-03-30T00:00:00Z"), at("2030-04-01T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    assert_int_equal(p.num_starts, 2);
    assert_int_equal(p.starts[0], at("2030-03-31T00:00:00Z")); /* 01:00 CET */
    assert_int_equal(p.starts[1], at("2030-03-31T01:00:00Z")); /* 03:00 CEST */
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

/* India is UTC+05:30: an hourly local grid is at :30 UTC. */
static void test_plan_follows_the_local_grid_phase(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"timezone\":\"Asia/Kolkata\",\"granularity_minutes\":60,"
                   "\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"11:00\"}]}");
    struct slk_tz *tz = slk_tz_open("Asia/Kolkata");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-08T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    assert_int_equal(p.num_starts, 2);
    assert_int_equal(p.starts[0], at("2030-01-07T03:30:00Z"));
    assert_int_equal(p.starts[1], at("2030-01-07T04:30:00Z"));
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

static void test_grid_units_cover_every_overlapping_unit(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"granularity_minutes\":30}");
    struct slk_tz *tz = slk_tz_open("UTC");
    int64_t *minutes = NULL;
    size_t n = 0, cap = 0;
    /* 09:10-10:05 touches the units of 09:00, 09:30 and 10:00. */
    assert_int_equal(
        slk_grid_units(&ins, tz, at("2030-01-07T09:10:00Z"), at("2030-01-07T10:05:00Z"), 100, &minutes, &n, &cap), 0);
    assert_int_equal(n, 3);
    assert_int_equal(minutes[0] * 60000, at("2030-01-07T09:00:00Z"));
    assert_int_equal(minutes[2] * 60000, at("2030-01-07T10:00:00Z"));
    /* Appends, and refuses to grow past the cap. */
    assert_int_equal(
        slk_grid_units(&ins, tz, at("2030-01-08T00:00:00Z"), at("2030-01-09T00:00:00Z"), 20, &minutes, &n, &cap),
        SLK_ETOOBIG);
    assert_int_equal(n, 20);
    free(minutes);
    slk_tz_close(tz);
}

/* A slot may run past midnight into the next day's window, and no further than it goes. */
static void test_plan_follows_windows_across_midnight(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"weekly\":[{\"day\":\"mon\",\"start\":\"22:00\",\"end\":\"24:00\"},"
                   "{\"day\":\"tue\",\"start\":\"00:00\",\"end\":\"00:30\"}]}");
    struct slk_tz *tz = slk_tz_open("UTC");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-09T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    /* 22:00 .. 23:30 on Monday; 23:45 would need Tuesday 00:30-00:45. */
    assert_int_equal(p.num_starts, 7);
    assert_int_equal(p.starts[0], at("2030-01-07T22:00:00Z"));
    assert_int_equal(p.starts[6], at("2030-01-07T23:30:00Z"));
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

/* After a change, only the plan minutes it may have altered are read again: the range widened by buffer and unit. */
static void test_touched_minutes_cover_a_change_and_its_buffer(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"buffer_minutes\":15,\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"12:00\"}]}");
    struct slk_tz *tz = slk_tz_open("UTC");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-08T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    /* Units 08:45 .. 12:00, every 15 minutes: 14 of them. */
    assert_int_equal(p.num_minutes, 14);
    size_t out[14];
    int64_t ten = at("2030-01-07T10:00:00Z") / 60000;

    /* A booking's own range [10:00, 11:00) as announced: its units with their buffer are 09:45 .. 11:00; one more
     * unit on either side is read too (the widening does not depend on the range being on the grid). */
    struct slk_unit_range booking = {ten, ten + 60};
    size_t n = slk_avail_plan_touched(&p, &ins, &booking, 1, NULL, out);
    assert_int_equal(n, 8); /* 09:30 .. 11:15 */
    assert_int_equal(p.minutes[out[0]], ten - 30);
    assert_int_equal(p.minutes[out[7]], ten + 75);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(out[i], out[i - 1] + 1);

    /* Two changes far apart, and one outside the plan entirely. */
    struct slk_unit_range two[3] = {{ten - 75, ten - 74}, {ten + 120, ten + 121}, {ten + 24 * 60, ten + 24 * 60 + 1}};
    n = slk_avail_plan_touched(&p, &ins, two, 3, NULL, out);
    assert_int_equal(n, 6); /* 08:45 (the first unit) .. 09:15, and 11:30 .. 12:00 (the last) */
    int64_t expected[6] = {ten - 75, ten - 60, ten - 45, ten + 90, ten + 105, ten + 120};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p.minutes[out[i]], expected[i]);

    struct slk_unit_range elsewhere = {ten + 24 * 60, ten + 24 * 60 + 15};
    assert_int_equal(slk_avail_plan_touched(&p, &ins, &elsewhere, 1, NULL, out), 0);
    struct slk_unit_range everything = {INT64_MIN, INT64_MAX};
    assert_int_equal(slk_avail_plan_touched(&p, &ins, &everything, 1, NULL, out), 14);

    /* With the states: the held units count too (a hold may have lapsed unannounced), booked and blocked do not. */
    unsigned char states[14] = {0};
    states[2] = SLK_UNIT_HELD;
    states[3] = SLK_UNIT_BOOKED;
    states[12] = SLK_UNIT_HELD;
    states[13] = SLK_UNIT_BLOCKED;
    n = slk_avail_plan_touched(&p, &ins, NULL, 0, states, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 12);
    /* ... merged with a change's units, each once and in order. */
    struct slk_unit_range first = {ten - 75, ten - 74}; /* touches indexes 0 .. 2 */
    n = slk_avail_plan_touched(&p, &ins, &first, 1, states, out);
    assert_int_equal(n, 4);
    size_t merged[4] = {0, 1, 2, 12};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i], merged[i]);
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Editing the old body where units changed gives the very bytes a full render gives, whatever changed. */
static void test_patched_body_equals_a_fresh_render(void **state)
{
    (void)state;
    struct slk_instructor ins;
    settings(&ins, "{\"buffer_minutes\":30,\"weekly\":[{\"day\":\"mon\",\"start\":\"08:00\",\"end\":\"20:00\"},"
                   "{\"day\":\"tue\",\"start\":\"00:00\",\"end\":\"24:00\"},"
                   "{\"day\":\"wed\",\"start\":\"00:00\",\"end\":\"02:00\"}]}");
    struct slk_tz *tz = slk_tz_open("UTC");
    struct slk_avail_plan p;
    assert_int_equal(slk_avail_plan(&p, &ins, tz, at("2030-01-07T00:00:00Z"), at("2030-01-14T00:00:00Z"), 60,
                                    at("2029-01-01T00:00:00Z")),
                     0);
    assert_true(p.num_starts > 100);
    size_t n = p.num_minutes, *touched = calloc(n, sizeof(size_t));
    unsigned char *before = calloc(n, 1), *after = calloc(n, 1);
    assert_non_null(touched);
    assert_non_null(before);
    assert_non_null(after);
    const char *head = "{\"data\":{\"slots\":", *tail = "}}";
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 300; round++) {
        /* Anything from all free to mostly taken, then a few units change either way (some touched ones do not). */
        int density = (int)(rng_next(&seed) % 4);
        for (size_t i = 0; i < n; i++)
            before[i] = rng_next(&seed) % 8 < (uint64_t)density ? (unsigned char)(1 + rng_next(&seed) % 3) : 0;
        memcpy(after, before, n);
        size_t k = 0, changes = 1 + rng_next(&seed) % 6;
        for (size_t c = 0; c < changes; c++) {
            size_t i = rng_next(&seed) % n;
            after[i] = after[i] == SLK_UNIT_FREE ? (unsigned char)(1 + rng_next(&seed) % 3) : SLK_UNIT_FREE;
        }
        for (size_t i = 0; i < n; i++) {
            if (after[i] != before[i] || rng_next(&seed) % 64 == 0)
                touched[k++] = i;
        }
        size_t old_len, fresh_len, patched_len;
        char *old = slk_avail_slots_json(&p, &ins, before, NULL, false, head, tail, &old_len);
        char *fresh = slk_avail_slots_json(&p, &ins, after, NULL, false, head, tail, &fresh_len);
        char *patched =
            slk_avail_slots_json_patch(&p, &ins, before, after, touched, k, old, old_len, head, tail, &patched_len);
        assert_non_null(patched);
        assert_int_equal(patched_len, fresh_len);
        assert_memory_equal(patched, fresh, fresh_len);
        free(old);
        free(fresh);
        free(patched);
    }
    /* A body that is not what the old states say is refused, not edited. */
    memset(before, 0, n);
    memset(after, 0, n);
    after[n / 2] = SLK_UNIT_HELD;
    touched[0] = n / 2;
    size_t len;
    char *all_free = slk_avail_slots_json(&p, &ins, before, NULL, false, head, tail, &len);
    char *taken = slk_avail_slots_json(&p, &ins, after, NULL, false, head, tail, &len);
    assert_null(slk_avail_slots_json_patch(&p, &ins, before, after, touched, 1, taken, len, head, tail, &len));
    assert_null(slk_avail_slots_json_patch(&p, &ins, before, after, touched, 1, all_free, 10, head, tail, &len));
    free(all_free);
    free(taken);
    free(touched);
    free(before);
    free(after);
    slk_avail_plan_clear(&p);
    slk_tz_close(tz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_lists_grid_starts_inside_windows),
        cmocka_unit_test(test_plan_never_offers_the_past),
        cmocka_unit_test(test_plan_skips_the_spring_forward_gap),
        cmocka_unit_test(test_plan_follows_the_local_grid_phase),
        cmocka_unit_test(test_grid_units_cover_every_overlapping_unit),
        cmocka_unit_test(test_plan_follows_windows_across_midnight),
        cmocka_unit_test(test_touched_minutes_cover_a_change_and_its_buffer),
        cmocka_unit_test(test_patched_body_equals_a_fresh_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
