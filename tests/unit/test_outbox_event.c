/* Booking events on the outbox stream: packed as the server writes them, named as earlier servers did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "outbox_internal.h"
#include "slk/common.h"

#define UUID "82e6fabc-6019-49a5-8d51-ef74ee966540"

/* A stream entry's field array, as hiredis hands it over. */
struct fields {
    redisReply top;
    redisReply items[32];
    redisReply *ptrs[32];
};

static void fields_init(struct fields *f)
{
    memset(f, 0, sizeof(*f));
    f->top.type = REDIS_REPLY_ARRAY;
    f->top.element = f->ptrs;
}

static void fields_add(struct fields *f, const char *s, size_t len)
{
    redisReply *r = &f->items[f->top.elements];
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = len;
    f->ptrs[f->top.elements++] = r;
}

static void fields_pair(struct fields *f, const char *name, const char *value)
{
    fields_add(f, name, strlen(name));
    fields_add(f, value, strlen(value));
}

static struct slk__outbox_event sample(void)
{
    struct slk__outbox_event e = {.at_ms = 1795368402723,
                                  .start_ms = 1795456800000,
                                  .end_ms = 1795460400000,
                                  .expires_ms = 1795372002723,
                                  .has_expires = true};
    snprintf(e.uuid, sizeof(e.uuid), UUID);
    snprintf(e.instructor, sizeof(e.instructor), "ins-1");
    snprintf(e.student, sizeof(e.student), "stu:2");
    snprintf(e.type, sizeof(e.type), "held");
    snprintf(e.status, sizeof(e.status), "payment_required");
    snprintf(e.actor, sizeof(e.actor), "12:ab:3"); /* digits and colons, like the packing's own */
    snprintf(e.role, sizeof(e.role), "student");
    return e;
}

static void assert_same(const struct slk__outbox_event *a, const struct slk__outbox_event *b)
{
    assert_string_equal(a->uuid, b->uuid);
    assert_string_equal(a->instructor, b->instructor);
    assert_string_equal(a->student, b->student);
    assert_string_equal(a->type, b->type);
    assert_string_equal(a->status, b->status);
    assert_string_equal(a->actor, b->actor);
    assert_string_equal(a->role, b->role);
    assert_int_equal(a->at_ms, b->at_ms);
    assert_int_equal(a->start_ms, b->start_ms);
    assert_int_equal(a->end_ms, b->end_ms);
    assert_int_equal(a->expires_ms, b->expires_ms);
    assert_int_equal(a->has_expires, b->has_expires);
}

static bool read_packed(const char *packed, size_t len, struct slk__outbox_event *out)
{
    struct fields f;
    fields_init(&f);
    fields_add(&f, SLK_OUTBOX_EVENT_FIELD, strlen(SLK_OUTBOX_EVENT_FIELD));
    fields_add(&f, packed, len);
    return slk__outbox_event_read(&f.top, out);
}

static void test_packed_events_read_back_whole(void **state)
{
    (void)state;
    struct slk__outbox_event e = sample(), back;
    char packed[SLK_OUTBOX_EVENT_MAX];
    int n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    assert_true(n > 0);
    assert_int_equal(strlen(packed), n);
    assert_true(read_packed(packed, (size_t)n, &back));
    assert_same(&e, &back);
    /* Empty texts (no actor, no role) stay empty. */
    e.actor[0] = e.role[0] = '\0';
    n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    assert_true(read_packed(packed, (size_t)n, &back));
    assert_same(&e, &back);
    /* The longest ids fit the room the header names. */
    memset(e.instructor, 'i', SLK_MAX_ID_LEN);
    memset(e.student, 's', SLK_MAX_ID_LEN);
    memset(e.actor, 'a', SLK_MAX_ID_LEN);
    e.instructor[SLK_MAX_ID_LEN] = e.student[SLK_MAX_ID_LEN] = e.actor[SLK_MAX_ID_LEN] = '\0';
    n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    assert_true(n > 0);
    assert_true(read_packed(packed, (size_t)n, &back));
    assert_same(&e, &back);
    /* Too little room is refused, not overrun. */
    assert_int_equal(slk__outbox_event_pack(&e, packed, 40), SLK_EINVAL);
}

static void test_damaged_packed_events_are_refused(void **state)
{
    (void)state;
    struct slk__outbox_event e = sample(), back;
    char packed[SLK_OUTBOX_EVENT_MAX], bad[SLK_OUTBOX_EVENT_MAX + 8];
    int n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    /* Cut anywhere, or with a byte more: never read. */
    for (int cut = 0; cut < n; cut++)
        assert_false(read_packed(packed, (size_t)cut, &back));
    memcpy(bad, packed, (size_t)n);
    bad[n] = 'x';
    assert_false(read_packed(bad, (size_t)n + 1, &back));
    /* A length that runs past the end. */
    assert_false(read_packed("99:abc", 6, &back));
    /* Not a uuid. */
    snprintf(e.uuid, sizeof(e.uuid), "not-a-uuid");
    n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    assert_false(read_packed(packed, (size_t)n, &back));
    /* A time that is no number. */
    e = sample();
    n = slk__outbox_event_pack(&e, packed, sizeof(packed));
    char *at = strstr(packed, "13:1795368402723");
    assert_non_null(at);
    at[3] = 'x';
    assert_false(read_packed(packed, (size_t)n, &back));
}

/* The named form of sample(), as servers before the packing wrote it; "skip" leaves one field out. */
static void named_sample(struct fields *f, const char *skip)
{
    static const char *const pairs[][2] = {
        {"uuid", UUID},           {"instructor", "ins-1"},        {"student", "stu:2"},
        {"type", "held"},         {"status", "payment_required"}, {"actor", "12:ab:3"},
        {"role", "student"},      {"at", "1795368402723"},        {"start", "1795456800000"},
        {"end", "1795460400000"}, {"expires", "1795372002723"},
    };
    fields_init(f);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (skip == NULL || strcmp(pairs[i][0], skip) != 0)
            fields_pair(f, pairs[i][0], pairs[i][1]);
    }
}

/* Entries of servers before the packing: named fields, times optional. */
static void test_named_events_are_read_too(void **state)
{
    (void)state;
    struct slk__outbox_event want = sample(), back;
    struct fields f;
    named_sample(&f, NULL);
    assert_true(slk__outbox_event_read(&f.top, &back));
    assert_same(&want, &back);
    /* Without times: 0, and no expiry to check. */
    f.top.elements = 14;
    assert_true(slk__outbox_event_read(&f.top, &back));
    assert_int_equal(back.at_ms, 0);
    assert_int_equal(back.start_ms, 0);
    assert_false(back.has_expires);
    /* Without an actor: never read. */
    named_sample(&f, "actor");
    assert_false(slk__outbox_event_read(&f.top, &back));
    /* A type longer than any the server writes. */
    named_sample(&f, NULL);
    f.items[7].str = "a-type-of-event-far-longer-than-32-bytes";
    f.items[7].len = strlen(f.items[7].str);
    assert_false(slk__outbox_event_read(&f.top, &back));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_events_read_back_whole),
        cmocka_unit_test(test_damaged_packed_events_are_refused),
        cmocka_unit_test(test_named_events_are_read_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
