/* Request validation of POST /api/v1/bookings: types, grid, past, windows (R-HOLD). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../src/handlers/bookings.c"

static struct create_op *new_op(void)
{
    struct create_op *op = calloc(1, sizeof(*op));
    assert_non_null(op);
    slk_booking_init(&op->b);
    return op;
}

static const char *parse_text(const char *text, struct create_op *op)
{
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    const char *bad = parse_body(body, op);
    json_decref(body);
    return bad;
}

#define VALID_BODY                                                                                                     \
    "\"student_uuid\":\"s-1\",\"course_uuid\":\"c-1\",\"instructor_uuid\":\"i-1\","                                    \
    "\"start_time\":\"2030-01-07T09:00:00Z\",\"end_time\":\"2030-01-07T10:00:00Z\""

static void expect_field(const char *text, const char *field)
{
    struct create_op *op = new_op();
    const char *bad = parse_text(text, op);
    if (field == NULL)
        assert_null(bad);
    else
        assert_string_equal(bad, field);
    create_op_free(op);
}

static void test_body_types(void **state)
{
    (void)state;
    expect_field("{" VALID_BODY "}", NULL);
    expect_field("{" VALID_BODY ",\"price_amount\":50.25,\"currency\":\"USD\",\"purpose\":\"1:1\"}", NULL);
    expect_field("{\"course_uuid\":\"c\",\"instructor_uuid\":\"i\",\"start_time\":\"2030-01-07T09:00:00Z\","
                 "\"end_time\":\"2030-01-07T10:00:00Z\"}",
                 "student_uuid");
    expect_field("{" VALID_BODY ",\"student_uuid\":7}", "student_uuid");
    expect_field("{\"student_uuid\":\"a/b\",\"course_uuid\":\"c\",\"instructor_uuid\":\"i\"}", "student_uuid");
    expect_field("{\"student_uuid\":\"s\",\"course_uuid\":\"c\",\"instructor_uuid\":\"i\",\"start_time\":"
                 "\"tomorrow\",\"end_time\":\"2030-01-07T10:00:00Z\"}",
                 "start_time");
    expect_field("{" VALID_BODY ",\"price_amount\":50.005}", "price_amount");
    expect_field("{" VALID_BODY ",\"price_amount\":-1}", "price_amount");
    expect_field("{" VALID_BODY ",\"price_amount\":\"50\"}", "price_amount");
    expect_field("{" VALID_BODY ",\"currency\":\"usd\"}", "currency");
    expect_field("{" VALID_BODY ",\"currency\":\"EURO\"}", "currency");
    expect_field("{" VALID_BODY ",\"purpose\":5}", "purpose");
}

static void test_price_in_cents(void **state)
{
    (void)state;
    struct create_op *op = new_op();
    assert_null(parse_text("{" VALID_BODY ",\"price_amount\":50.1}", op));
    assert_int_equal(op->b.price_cents, 5010);
    create_op_free(op);
}

/* An instructor in Berlin with 15-minute grid, working Monday 09:00-17:00 local. */
static struct slk_instructor_entry *berlin(struct slk_instructor_cache *c)
{
    json_t *cfg = json_loads("{\"timezone\":\"Europe/Berlin\",\"buffer_minutes\":15,\"hold_seconds\":600,"
                             "\"weekly\":[{\"day\":\"mon\",\"start\":\"09:00\",\"end\":\"17:00\"}]}",
                             0, NULL);
    struct slk_instructor ins;
    const char *field, *why;
    assert_int_equal(slk_instructor_parse(&ins, "i-1", cfg, 1800, &field, &why), 0);
    json_decref(cfg);
    return slk_instructor_cache_put(c, &ins);
}

static const char *validate(const char *start, const char *end, int64_t now, struct create_op **out)
{
    struct slk_instructor_cache *cache = slk_instructor_cache_create();
    assert_non_null(cache);
    struct slk_instructor_entry *e = berlin(cache);
    char text[512];
    snprintf(text, sizeof(text),
             "{\"student_uuid\":\"s\",\"course_uuid\":\"c\",\"instructor_uuid\":\"i-1\",\"start_time\":\"%s\","
             "\"end_time\":\"%s\"}",
             start, end);
    struct create_op *op = new_op();
    assert_null(parse_text(text, op));
    const char *why = NULL;
    const char *bad = validate_times(op, e, now, &why);
    if (bad != NULL)
        assert_non_null(why);
    else
        plan_units(op, &e->ins, now);
    slk_instructor_cache_free(cache);
    if (out != NULL)
        *out = op;
    else
        create_op_free(op);
    return bad;
}

static int64_t at(const char *s)
{
    int64_t ms;
    bool naive;
    struct slk_local_time lt;
    assert_int_equal(slk_time_parse_rfc3339(s, strlen(s), &ms, &naive, &lt), 0);
    return ms;
}

static void test_times_against_settings(void **state)
{
    (void)state;
    int64_t now = at("2030-01-01T00:00:00Z");
    /* 2030-01-07 is a Monday; Berlin is UTC+1 in January. */
    assert_null(validate("2030-01-07T08:00:00Z", "2030-01-07T09:00:00Z", now, NULL));
    assert_null(validate("2030-01-07T09:00:00", "2030-01-07T10:00:00", now, NULL)); /* naive = Berlin time */
    assert_null(validate("2030-01-07T10:00:00+01:00", "2030-01-07T11:00:00+01:00", now, NULL));
    assert_string_equal(validate("2030-01-07T09:00:00Z", "2030-01-07T09:00:00Z", now, NULL), "end_time");
    assert_string_equal(validate("2030-01-07T10:00:00Z", "2030-01-07T09:00:00Z", now, NULL), "end_time");
    assert_string_equal(validate("2030-01-07T08:07:00Z", "2030-01-07T09:00:00Z", now, NULL), "start_time");
    assert_string_equal(validate("2030-01-07T08:00:30Z", "2030-01-07T09:00:00Z", now, NULL), "start_time");
    assert_string_equal(validate("2030-01-07T08:00:00Z", "2030-01-07T09:10:00Z", now, NULL), "end_time");
    assert_string_equal(validate("2030-01-07T07:45:00Z", "2030-01-07T08:45:00Z", now, NULL), "start_time");
    assert_string_equal(validate("2030-01-08T08:00:00Z", "2030-01-08T09:00:00Z", now, NULL), "start_time");
    assert_string_equal(validate("2030-01-07T08:00:00Z", "2030-01-08T08:15:00Z", now, NULL), "end_time");
    int64_t later = at("2030-01-07T08:00:00Z");
    assert_string_equal(validate("2030-01-07T08:00:00Z", "2030-01-07T09:00:00Z", later, NULL), "start_time");
}

static void test_units_and_hold_expiry(void **state)
{
    (void)state;
    int64_t now = at("2030-01-07T07:55:00Z");
    struct create_op *op = NULL;
    assert_null(validate("2030-01-07T08:00:00Z", "2030-01-07T09:00:00Z", now, &op));
    /* One hour on a 15-minute grid plus a 15-minute buffer on each side. */
    assert_int_equal(op->b.unit_count, 6);
    assert_int_equal(op->b.unit_minutes, 15);
    assert_int_equal(op->b.units_first_min * 60000, at("2030-01-07T07:45:00Z"));
    /* hold_seconds is 600 but the start is 5 minutes away: the hold ends at the start. */
    assert_int_equal(op->b.hold_expires_ms, at("2030-01-07T08:00:00Z"));
    create_op_free(op);

    now = at("2030-01-01T00:00:00Z");
    assert_null(validate("2030-01-07T08:00:00Z", "2030-01-07T09:00:00Z", now, &op));
    assert_int_equal(op->b.hold_expires_ms, now + 600 * 1000);
    create_op_free(op);
}

/* Unit keys are built by hand (availability asks for hundreds): byte for byte what the Lua scripts expect. */
static void test_unit_keys(void **state)
{
    (void)state;
    char buf[SLK_KEY_MAX], want[SLK_KEY_MAX];
    const int64_t minutes[] = {0, 7, 29923000, 9223372036854775807LL};
    for (size_t i = 0; i < sizeof(minutes) / sizeof(minutes[0]); i++) {
        int n = snprintf(want, sizeof(want), "slk:{ins-1}:u:%" PRId64, minutes[i]);
        assert_int_equal(slk_key_unit(buf, "ins-1", minutes[i]), n);
        assert_string_equal(buf, want);
    }
    char id[SLK_MAX_ID_LEN + 1];
    memset(id, 'x', SLK_MAX_ID_LEN);
    id[SLK_MAX_ID_LEN] = '\0';
    int n = slk_key_unit(buf, id, 29923000);
    assert_int_equal(n, 5 + SLK_MAX_ID_LEN + 4 + 8);
    assert_memory_equal(buf + 5, id, SLK_MAX_ID_LEN);
    assert_string_equal(buf + 5 + SLK_MAX_ID_LEN, "}:u:29923000");
    char **keys = slk_booking_unit_keys("ins-2", 600, 15, 3);
    assert_non_null(keys);
    assert_string_equal(keys[0], "slk:{ins-2}:u:600");
    assert_string_equal(keys[2], "slk:{ins-2}:u:630");
    free(keys);
}

/* The other keys are joined by hand too: the names the scripts and older servers use, and snprintf's answer (cut,
 * full length returned) for an id too long to fit. */
static void test_named_keys(void **state)
{
    (void)state;
    char buf[SLK_KEY_MAX];
    const char *uuid = "82e6fabc-6019-49a5-8d51-ef74ee966540";
    assert_int_equal(slk_key_meta(buf, "ins-1"), 16);
    assert_string_equal(buf, "slk:{ins-1}:meta");
    slk_key_version(buf, "ins-1");
    assert_string_equal(buf, "slk:{ins-1}:ver");
    slk_key_fence(buf, "ins-1");
    assert_string_equal(buf, "slk:{ins-1}:fence");
    assert_int_equal(slk_key_booking(buf, "ins-1", uuid), 14 + 36);
    assert_string_equal(buf, "slk:{ins-1}:b:82e6fabc-6019-49a5-8d51-ef74ee966540");
    slk_key_index(buf, uuid);
    assert_string_equal(buf, "slk:bi:82e6fabc-6019-49a5-8d51-ef74ee966540");
    slk_key_instructor_holds(buf, "ins-1");
    assert_string_equal(buf, "slk:{ins-1}:holds");
    slk_key_student_holds(buf, "stu-1");
    assert_string_equal(buf, "slk:stu:{stu-1}:holds");
    assert_int_equal(slk_key_student_live(buf, "stu-1"), 20);
    assert_string_equal(buf, "slk:stu:{stu-1}:live");
    char id[2 * SLK_KEY_MAX];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    char want[SLK_KEY_MAX];
    int n = snprintf(want, sizeof(want), "slk:{%s}:b:%s", id, uuid);
    assert_int_equal(slk_key_booking(buf, id, uuid), n);
    assert_string_equal(buf, want);
}

/* A fake HGETALL reply of the fields hold_fields() wrote. */
struct fake_hash {
    redisReply top;
    redisReply items[2 * HOLD_FIELDS];
    redisReply *ptrs[2 * HOLD_FIELDS];
};

static void fake_hash_from(struct fake_hash *h, const struct hold_args *a, int from)
{
    memset(h, 0, sizeof(*h));
    h->top.type = REDIS_REPLY_ARRAY;
    h->top.element = h->ptrs;
    for (int i = from; i < a->n; i++) {
        redisReply *r = &h->items[h->top.elements];
        r->type = REDIS_REPLY_STRING;
        r->str = (char *)a->argv[i];
        r->len = a->lens[i];
        h->ptrs[h->top.elements++] = r;
    }
}

/* What a hold writes into its record is what every reader gets back, though the record leaves out what its key
 * names and keeps the payment session as bytes. */
static void test_hold_record_round_trip(void **state)
{
    (void)state;
    struct slk_booking b;
    slk_booking_init(&b);
    strcpy(b.uuid, "0b7c2d4e-1111-4aaa-8bbb-000000000001");
    strcpy(b.instructor, "ins-1");
    strcpy(b.student, "stu-1");
    strcpy(b.course, "course-1");
    strcpy(b.session, "sess_00ff10a0b1c2d3e4f5a6b7c8d9e0f1a2");
    strcpy(b.currency, "EUR");
    b.start_ms = 1893488400000;
    b.end_ms = 1893492000000;
    b.hold_expires_ms = 1893400000000;
    b.created_ms = 1893398200000;
    b.price_cents = 4000;
    b.units_first_min = 31558140;
    b.unit_minutes = 15;
    b.unit_count = 4;
    b.requires_acceptance = true;

    struct hold_args a = {.n = 0};
    hold_numbers(&a, &b, 1);
    hold_fields(&a, &b);
    for (int i = 0; i < a.n; i += 2) {
        assert_string_not_equal(a.argv[i], "uuid");
        assert_string_not_equal(a.argv[i], "instructor");
    }
    struct fake_hash h;
    fake_hash_from(&h, &a, 0);
    struct slk_booking got;
    assert_int_equal(slk_booking_from_hash(&got, &h.top, "ins-1", b.uuid), 0);
    assert_string_equal(got.uuid, b.uuid);
    assert_string_equal(got.instructor, "ins-1");
    assert_string_equal(got.status, "payment_required");
    assert_string_equal(got.student, "stu-1");
    assert_string_equal(got.course, "course-1");
    assert_string_equal(got.session, b.session);
    assert_string_equal(got.currency, "EUR");
    assert_true(got.start_ms == b.start_ms && got.end_ms == b.end_ms && got.hold_expires_ms == b.hold_expires_ms);
    assert_true(got.created_ms == b.created_ms && got.updated_ms == b.created_ms);
    assert_true(got.price_cents == 4000 && got.units_first_min == b.units_first_min);
    assert_true(got.unit_minutes == 15 && got.unit_count == 4 && got.requires_acceptance);
    slk_booking_clear(&got);
    slk_booking_clear(&b);
}

/* Uuid-named students and courses are kept as their 16 bytes, any other id as text; both read back as given. */
static void test_record_keeps_uuids_as_bytes(void **state)
{
    (void)state;
    static const char *const ids[][2] = {
        {"82e6fabc-6019-49a5-8d51-ef74ee966540", "0b7c2d4e-1111-4aaa-8bbb-00000000c0de"}, /* both packed */
        {"stu-1", "0b7c2d4e-1111-4aaa-8bbb-00000000c0de"},                                /* student as text */
        {"82E6FABC-6019-49A5-8D51-EF74EE966540", "course-1"}, /* upper case would not come back: text */
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(*ids); i++) {
        struct slk_booking b;
        slk_booking_init(&b);
        strcpy(b.uuid, "0b7c2d4e-1111-4aaa-8bbb-000000000001");
        strcpy(b.student, ids[i][0]);
        strcpy(b.course, ids[i][1]);
        b.unit_minutes = 15;
        b.unit_count = 4;
        struct hold_args a = {.n = 0};
        hold_numbers(&a, &b, 1);
        hold_fields(&a, &b);
        int packed = 0, text = 0;
        for (int j = 0; j < a.n; j += 2) {
            if (strcmp(a.argv[j], "stub") == 0 || strcmp(a.argv[j], "crsb") == 0) {
                assert_int_equal(a.lens[j + 1], 16);
                packed++;
            }
            if (strcmp(a.argv[j], "student") == 0 || strcmp(a.argv[j], "course") == 0)
                text++;
        }
        assert_int_equal(packed, 2 - (int)i); /* the cases above: two, one, none packed */
        assert_int_equal(text, (int)i);
        struct fake_hash h;
        fake_hash_from(&h, &a, 0);
        struct slk_booking got;
        assert_int_equal(slk_booking_from_hash(&got, &h.top, "ins-1", b.uuid), 0);
        assert_string_equal(got.student, ids[i][0]);
        assert_string_equal(got.course, ids[i][1]);
        slk_booking_clear(&got);
    }

    /* A damaged 'stub' costs the student, not the hold: it stays readable (expiry, cancel), nobody's but admins'. */
    struct slk_booking b;
    slk_booking_init(&b);
    strcpy(b.uuid, "0b7c2d4e-1111-4aaa-8bbb-000000000002");
    b.unit_minutes = 15;
    b.unit_count = 1;
    struct hold_args d = {.n = 0};
    hold_numbers(&d, &b, 1);
    hold_field(&d, "status", "payment_required");
    hold_field(&d, "stub", "short");
    hold_field(&d, "umin", "15");
    hold_field(&d, "ucount", "1");
    struct fake_hash h;
    fake_hash_from(&h, &d, 0);
    struct slk_booking got;
    assert_int_equal(slk_booking_from_hash(&got, &h.top, "ins-1", b.uuid), 0);
    assert_string_equal(got.student, "");
    assert_string_equal(got.status, "payment_required");
    slk_booking_clear(&got);
}

static void test_session_pack(void **state)
{
    (void)state;
    unsigned char raw[SLK_SESSION_BYTES];
    assert_int_equal(slk_session_pack("sess_00ff10a0b1c2d3e4f5a6b7c8d9e0f1a2", raw), 0);
    assert_int_equal(raw[0], 0x00);
    assert_int_equal(raw[1], 0xff);
    assert_int_equal(raw[15], 0xa2);
    /* Anything else stays text ("session"): upper case would not come back the same. */
    assert_int_equal(slk_session_pack("sess_00FF10a0b1c2d3e4f5a6b7c8d9e0f1a2", raw), SLK_EINVAL);
    assert_int_equal(slk_session_pack("sess_00ff10a0b1c2d3e4f5a6b7c8d9e0f1a", raw), SLK_EINVAL);
    assert_int_equal(slk_session_pack("sesx_00ff10a0b1c2d3e4f5a6b7c8d9e0f1a2", raw), SLK_EINVAL);
    assert_int_equal(slk_session_pack("sess_00ff10a0b1c2d3e4f5a6b7c8d9e0f1a2b", raw), SLK_EINVAL);

    struct slk_booking b;
    slk_booking_init(&b);
    strcpy(b.uuid, "0b7c2d4e-1111-4aaa-8bbb-000000000002");
    strcpy(b.session, "cs_test_other_shape");
    b.unit_minutes = 15;
    b.unit_count = 1;
    struct hold_args a = {.n = 0};
    hold_numbers(&a, &b, 1);
    hold_fields(&a, &b);
    struct fake_hash h;
    fake_hash_from(&h, &a, 0);
    struct slk_booking got;
    assert_int_equal(slk_booking_from_hash(&got, &h.top, "ins-1", b.uuid), 0);
    assert_string_equal(got.session, "cs_test_other_shape");
    slk_booking_clear(&got);

    /* A damaged 'sid' costs the session id, not the hold: it stays readable (expiry, cancel, listing). */
    struct hold_args d = {.n = 0};
    hold_numbers(&d, &b, 1);
    hold_field(&d, "status", "payment_required");
    hold_field(&d, "sid", "short");
    hold_field(&d, "umin", "15");
    hold_field(&d, "ucount", "1");
    fake_hash_from(&h, &d, 0);
    assert_int_equal(slk_booking_from_hash(&got, &h.top, "ins-1", b.uuid), 0);
    assert_string_equal(got.session, "");
    assert_string_equal(got.status, "payment_required");
    slk_booking_clear(&got);
}

/* A student's listing member: compact for uuid-named instructors, and both forms read back. */
static void test_student_listing_member(void **state)
{
    (void)state;
    const char *ins = "3f2504e0-4f89-41d3-9a0c-0305e82c3301", *uuid = "82e6fabc-6019-49a5-8d51-ef74ee966540";
    char m[SLK_LISTING_MEMBER_MAX], got_ins[SLK_MAX_ID_LEN + 1], got_uuid[37];
    int n = slk_hold_member(m, ins, uuid);
    assert_int_equal(n, 36 + 1 + 24);
    assert_true(n <= 64); /* Redis keeps a sorted set of such members compact */
    assert_int_equal((int)strlen(m), n);
    assert_memory_equal(m, "3f2504e0-4f89-41d3-9a0c-0305e82c3301/", 37);
    assert_int_equal(slk_hold_member_parse(m, (size_t)n, got_ins, got_uuid), 0);
    assert_string_equal(got_ins, ins);
    assert_string_equal(got_uuid, uuid);

    /* The text form earlier versions wrote (in listings and the expiry schedule). */
    char old[128];
    n = snprintf(old, sizeof(old), "%s/%s", "ins-1", uuid);
    assert_int_equal(slk_hold_member_parse(old, (size_t)n, got_ins, got_uuid), 0);
    assert_string_equal(got_ins, "ins-1");
    assert_string_equal(got_uuid, uuid);

    /* A uuid its bytes would not give back (upper case) stays text. */
    const char *upper = "82E6FABC-6019-49A5-8D51-EF74EE966540";
    n = slk_hold_member(m, "ins-1", upper);
    assert_int_equal(n, 5 + 1 + 36);
    assert_int_equal(slk_hold_member_parse(m, (size_t)n, got_ins, got_uuid), 0);
    assert_string_equal(got_uuid, upper);

    /* Every uuid's bytes come back, whatever base64 characters they make ('/' and '+' included). */
    for (int i = 0; i < 2000; i++) {
        char u[37];
        assert_int_equal(slk_uuid_v4(u), 0);
        n = slk_hold_member(m, ins, u);
        assert_int_equal(n, 61);
        assert_int_equal(slk_hold_member_parse(m, (size_t)n, got_ins, got_uuid), 0);
        assert_string_equal(got_ins, ins);
        assert_string_equal(got_uuid, u);
    }

    /* Damaged members. */
    const char *bad[] = {"no-slash", "/82e6fabc-6019-49a5-8d51-ef74ee966540", "ins-1/short",
                         "ins-1/gub6/LxgSaWNUe90ZpZUQA", /* 24 characters, no padding */
                         "ins-1/82e6fabc-6019-49a5-8d51-ef74ee96654g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(slk_hold_member_parse(bad[i], strlen(bad[i]), got_ins, got_uuid), SLK_EINVAL);
    char longid[SLK_MAX_ID_LEN + 2];
    memset(longid, 'i', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(slk_hold_member(m, longid, uuid), SLK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_types),
        cmocka_unit_test(test_price_in_cents),
        cmocka_unit_test(test_times_against_settings),
        cmocka_unit_test(test_units_and_hold_expiry),
        cmocka_unit_test(test_unit_keys),
        cmocka_unit_test(test_named_keys),
        cmocka_unit_test(test_hold_record_round_trip),
        cmocka_unit_test(test_record_keeps_uuids_as_bytes),
        cmocka_unit_test(test_session_pack),
        cmocka_unit_test(test_student_listing_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
