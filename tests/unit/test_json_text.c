/*
 * JSON text written without jansson's dump: the same bytes json_dumps would
 * write, jansson's refusals kept, money written exactly.
 */
#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slk/booking.h"
#include "slk/json_text.h"
#include "slk/response.h"
#include "slk/timeutil.h"

static char *dump(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    assert_non_null(text);
    return text;
}

/* The writer's text for one string value; NULL when it refused. */
static char *written_string(const char *s)
{
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_string(&t, s);
    return slk_json_text_take(&t, NULL);
}

static void assert_string_as_jansson(const char *s)
{
    char *ours = written_string(s);
    json_t *js = json_string(s);
    if (js == NULL) {
        assert_null(ours); /* invalid UTF-8: refused by both */
        return;
    }
    char *theirs = dump(js);
    assert_non_null(ours);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
}

static void test_strings_are_written_as_jansson_writes_them(void **state)
{
    (void)state;
    const char *cases[] = {
        "",
        "plain",
        "sb-6730d217-s0",
        "with \"quotes\"",
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "\x01\x1f",
        "del \x7f",
        "slash /",
        "caf\xc3\xa9",
        "\xe2\x82\xac 5",
        "\xf0\x9f\x8e\xb8",
        "bad \xc3(",
        "cut \xe2\x82",
        "\xff",
        "\xed\xa0\x80",
        "{}[],:",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_as_jansson(cases[i]);
    /* Random bytes: mostly printable, some of everything else. */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        char s[24];
        int n = rand() % (int)sizeof(s);
        for (int k = 0; k < n; k++) {
            int r = rand() % 10;
            s[k] = (char)(r < 7 ? 0x20 + rand() % 95 : 1 + rand() % 255);
        }
        s[n] = '\0';
        assert_string_as_jansson(s);
    }
}

static void test_commas_and_nesting_read_as_jansson_writes_them(void **state)
{
    (void)state;
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_open(&t, '{');
    slk_json_text_key(&t, "a");
    slk_json_text_int(&t, 1);
    slk_json_text_key(&t, "list");
    slk_json_text_open(&t, '[');
    slk_json_text_open(&t, '{');
    slk_json_text_close(&t, '}');
    slk_json_text_null(&t);
    slk_json_text_bool(&t, false);
    slk_json_text_open(&t, '[');
    slk_json_text_close(&t, ']');
    slk_json_text_string(&t, "x\"y");
    slk_json_text_close(&t, ']');
    slk_json_text_key(&t, "inner");
    slk_json_text_open(&t, '{');
    slk_json_text_key(&t, "t");
    slk_json_text_bool(&t, true);
    slk_json_text_key(&t, "raw");
    slk_json_text_raw(&t, "[1,2]", 5);
    slk_json_text_close(&t, '}');
    slk_json_text_key(&t, "last");
    slk_json_text_int(&t, -5);
    slk_json_text_close(&t, '}');
    size_t len = 0;
    char *ours = slk_json_text_take(&t, &len);
    char *theirs = dump(json_pack("{s:i, s:[{}, n, b, [], s], s:{s:b, s:[i, i]}, s:i}", "a", 1, "list", 0, "x\"y",
                                  "inner", "t", 1, "raw", 1, 2, "last", -5));
    assert_non_null(ours);
    assert_string_equal(ours, theirs);
    assert_int_equal(len, strlen(theirs));
    free(ours);
    free(theirs);
}

static char *written_int(int64_t v)
{
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_int(&t, v);
    return slk_json_text_take(&t, NULL);
}

static void test_integers_at_their_limits(void **state)
{
    (void)state;
    const int64_t cases[] = {0, 1, -1, 9, 10, -10, 1234567890123, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "%" PRId64, cases[i]);
        char *got = written_int(cases[i]);
        assert_string_equal(got, want);
        free(got);
    }
}

static char *written_cents(int64_t cents)
{
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_cents(&t, cents);
    return slk_json_text_take(&t, NULL);
}

/* The amount reads back as cents / 100 and is written as briefly as that allows: 19.99, not 19.989999999999998. */
static void test_money_is_written_exactly_and_briefly(void **state)
{
    (void)state;
    struct {
        int64_t cents;
        const char *text;
    } known[] = {{0, "0.0"},     {5, "0.05"},      {7, "0.07"},
                 {10, "0.1"},    {1999, "19.99"},  {1990, "19.9"},
                 {5000, "50.0"}, {10010, "100.1"}, {123456789, "1234567.89"},
                 {-250, "-2.5"}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        char *got = written_cents(known[i].cents);
        assert_string_equal(got, known[i].text);
        free(got);
    }
    for (int64_t cents = 0; cents <= 200000; cents++) {
        char *got = written_cents(cents);
        assert_true(strtod(got, NULL) == (double)cents / 100.0);
        const char *dot = strchr(got, '.');
        assert_non_null(dot);
        size_t decimals = strlen(dot + 1);
        assert_true(decimals == 1 || decimals == 2);
        if (decimals == 2 || strcmp(dot, ".0") != 0)
            assert_true(got[strlen(got) - 1] != '0');
        free(got);
    }
}

static void test_times_and_absent_values(void **state)
{
    (void)state;
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_open(&t, '[');
    slk_json_text_time_or_null(&t, 0);
    slk_json_text_time_or_null(&t, 1795456800000);
    slk_json_text_time_or_null(&t, 1795456800123);
    slk_json_text_string_or_null(&t, NULL);
    slk_json_text_string_or_null(&t, "");
    slk_json_text_string_or_null(&t, "x");
    slk_json_text_close(&t, ']');
    char *got = slk_json_text_take(&t, NULL);
    assert_string_equal(got, "[null,\"2026-11-23T18:00:00Z\",\"2026-11-23T18:00:00.123Z\",null,null,\"x\"]");
    free(got);
}

static void test_a_failure_sticks(void **state)
{
    (void)state;
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_json_text_open(&t, '[');
    slk_json_text_string(&t, "fine");
    slk_json_text_string(&t, "not utf-8 \xff");
    slk_json_text_string(&t, "fine again");
    slk_json_text_close(&t, ']');
    assert_null(slk_json_text_take(&t, NULL));
    /* Past the cap. */
    static char big[1024 * 1024 + 1];
    memset(big, 'a', sizeof(big) - 1);
    slk_json_text_init(&t);
    slk_json_text_open(&t, '[');
    for (int i = 0; i < SLK_MAX_JSON_TEXT_BYTES / (int)(sizeof(big) - 1) + 1; i++)
        slk_json_text_string(&t, big);
    slk_json_text_close(&t, ']');
    assert_true(t.failed);
    assert_true(t.len <= SLK_MAX_JSON_TEXT_BYTES);
    assert_null(slk_json_text_take(&t, NULL));
    slk_json_text_free(&t); /* after take: nothing left to free, and no double free */
}

static json_t *time_or_null(int64_t ms)
{
    if (ms == 0)
        return json_null();
    char buf[32];
    slk_time_format_rfc3339(ms, buf);
    return json_string(buf);
}

/* The R-API booking object as jansson builds it: what the API showed before the writer. */
static char *booking_by_jansson(const struct slk_booking *b, int64_t now)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:f, s:s, s:s?, s:s, s:n, s:o, s:o, s:o, s:I, s:s, s:o, s:s, s:s, s:b}",
        "uuid", b->uuid, "status", slk_booking_status(b, now), "student_uuid", b->student, "course_uuid", b->course,
        "instructor_uuid", b->instructor, "start_time", time_or_null(b->start_ms), "end_time", time_or_null(b->end_ms),
        "price_amount", (double)b->price_cents / 100.0, "currency", b->currency, "purpose", b->purpose,
        "payment_session_id", b->session, "payment_reference", "hold_expires_at", time_or_null(b->hold_expires_ms),
        "created_at", time_or_null(b->created_ms), "updated_at", time_or_null(b->updated_ms), "fence_token",
        (json_int_t)b->fence, "availability_block_uuid", b->uuid, "cancelled_at", time_or_null(b->cancelled_ms),
        "cancel_reason", b->cancel_reason, "cancelled_by", b->cancelled_by, "refund_eligible", b->refund_eligible);
    return dump(o);
}

static void test_a_booking_reads_as_jansson_wrote_it(void **state)
{
    (void)state;
    struct slk_booking b;
    slk_booking_init(&b);
    snprintf(b.uuid, sizeof(b.uuid), "82e6fabc-6019-49a5-8d51-ef74ee966540");
    snprintf(b.status, sizeof(b.status), "cancelled");
    snprintf(b.student, sizeof(b.student), "stu-1");
    snprintf(b.course, sizeof(b.course), "course.7");
    snprintf(b.instructor, sizeof(b.instructor), "ins:3");
    b.start_ms = 1795456800000;
    b.end_ms = 1795460400000;
    b.hold_expires_ms = 1795372002723;
    b.created_ms = 1795368402723;
    b.updated_ms = 1795368502000;
    b.cancelled_ms = 1795368502000;
    b.price_cents = 5000; /* 50.0 either way: jansson writes 19.99 as 19.989999999999998 */
    snprintf(b.currency, sizeof(b.currency), "EUR");
    b.purpose = strdup("Guitar \"intro\" \xe2\x80\x94 caf\xc3\xa9\n");
    snprintf(b.session, sizeof(b.session), "sess_0123456789abcdef0123456789abcdef");
    b.cancel_reason = strdup("ill\\sick");
    snprintf(b.cancelled_by, sizeof(b.cancelled_by), "student");
    b.refund_eligible = 1;
    b.fence = 4711;
    struct slk_json_text t;
    slk_json_text_init(&t);
    slk_booking_write_json(&t, &b, 1795368402723);
    char *ours = slk_json_text_take(&t, NULL);
    char *theirs = booking_by_jansson(&b, 1795368402723);
    assert_non_null(ours);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
    slk_booking_clear(&b);
}

static void test_envelopes(void **state)
{
    (void)state;
    char *body = slk_error_body_raw(409, "slot_unavailable", "Taken \"now\"", "{\"start_time\":\"x\"}");
    char *want = dump(json_pack("{s:b, s:s, s:{s:s, s:{s:s}}}", "success", 0, "message", "Taken \"now\"", "error",
                                "code", "slot_unavailable", "details", "start_time", "x"));
    assert_string_equal(body, want);
    free(body);
    free(want);
    body = slk_error_body(422, "validation_failed", NULL, json_pack("{s:s}", "field", "start_time"));
    want = dump(json_pack("{s:b, s:s, s:{s:s, s:{s:s}}}", "success", 0, "message", "Unprocessable Entity", "error",
                          "code", "validation_failed", "details", "field", "start_time"));
    assert_string_equal(body, want);
    free(body);
    free(want);
    assert_null(slk_error_body(400, "bad_request", "not utf-8 \xc3", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_are_written_as_jansson_writes_them),
        cmocka_unit_test(test_commas_and_nesting_read_as_jansson_writes_them),
        cmocka_unit_test(test_integers_at_their_limits),
        cmocka_unit_test(test_money_is_written_exactly_and_briefly),
        cmocka_unit_test(test_times_and_absent_values),
        cmocka_unit_test(test_a_failure_sticks),
        cmocka_unit_test(test_a_booking_reads_as_jansson_wrote_it),
        cmocka_unit_test(test_envelopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
