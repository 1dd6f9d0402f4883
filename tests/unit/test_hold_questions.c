/* Hold questions kept by body bytes: only the exact bytes get the kept question back, and only short bodies are kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "slk/hold_questions.h"

static struct slk_hold_question question(const char *student, int64_t first_min)
{
    struct slk_hold_question q = {.key = {.version = 7, .units_first_min = first_min, .unit_count = 4},
                                  .start_ms = first_min * 60000};
    snprintf(q.key.instructor, sizeof(q.key.instructor), "ins-a");
    snprintf(q.student, sizeof(q.student), "%s", student);
    return q;
}

static void assert_same_question(const struct slk_hold_question *a, const struct slk_hold_question *b)
{
    assert_string_equal(a->key.instructor, b->key.instructor);
    assert_int_equal(a->key.version, b->key.version);
    assert_int_equal(a->key.units_first_min, b->key.units_first_min);
    assert_int_equal(a->key.unit_count, b->key.unit_count);
    assert_int_equal(a->start_ms, b->start_ms);
    assert_string_equal(a->student, b->student);
}

static void test_the_same_bytes_get_their_question_back(void **state)
{
    (void)state;
    struct slk_hold_questions *c = slk_hold_questions_create();
    char body[] = "{\"student_uuid\":\"stu-1\",\"start_time\":\"2026-12-01T10:00:00Z\"}";
    struct slk_hold_question out, kept = question("stu-1", 600);
    assert_false(slk_hold_questions_get(c, body, strlen(body), &out));
    slk_hold_questions_put(c, body, strlen(body), &kept);
    char again[sizeof(body)];
    memcpy(again, body, sizeof(body));
    memset(body, 'x', sizeof(body) - 1); /* the table keeps its own copy of the bytes */
    assert_true(slk_hold_questions_get(c, again, strlen(again), &out));
    assert_same_question(&out, &kept);
    slk_hold_questions_free(c);
}

static void test_other_bytes_are_a_miss(void **state)
{
    (void)state;
    struct slk_hold_questions *c = slk_hold_questions_create();
    const char body[] = "{\"student_uuid\":\"stu-1\",\"start_time\":\"2026-12-01T10:00:00Z\"}";
    struct slk_hold_question out, kept = question("stu-1", 600);
    slk_hold_questions_put(c, body, strlen(body), &kept);
    const char other[] = "{\"student_uuid\":\"stu-2\",\"start_time\":\"2026-12-01T10:00:00Z\"}";
    assert_false(slk_hold_questions_get(c, other, strlen(other), &out));
    assert_false(slk_hold_questions_get(c, body, strlen(body) - 1, &out)); /* a prefix is another body */
    assert_false(slk_hold_questions_get(c, body, 0, &out));
    slk_hold_questions_free(c);
}

/* The table holds a fixed number of bodies: twice as many push some out, and never mix. */
static void test_a_crowded_table_forgets_but_never_confuses(void **state)
{
    (void)state;
    struct slk_hold_questions *c = slk_hold_questions_create();
    char body[64];
    for (int i = 0; i < 2 * SLK_HOLD_QUESTION_ENTRIES; i++) {
        int n = snprintf(body, sizeof(body), "{\"student_uuid\":\"stu-%d\"}", i);
        struct slk_hold_question q = question(body + 17, i);
        slk_hold_questions_put(c, body, (size_t)n, &q);
    }
    int kept = 0;
    for (int i = 0; i < 2 * SLK_HOLD_QUESTION_ENTRIES; i++) {
        int n = snprintf(body, sizeof(body), "{\"student_uuid\":\"stu-%d\"}", i);
        struct slk_hold_question out;
        if (slk_hold_questions_get(c, body, (size_t)n, &out)) {
            kept++;
            assert_int_equal(out.key.units_first_min, i);
            assert_string_equal(out.student, body + 17);
        }
    }
    assert_true(kept >= SLK_HOLD_QUESTION_ENTRIES / 2 && kept <= SLK_HOLD_QUESTION_ENTRIES);
    slk_hold_questions_free(c);
}

static void test_long_bodies_are_not_kept(void **state)
{
    (void)state;
    struct slk_hold_questions *c = slk_hold_questions_create();
    char body[SLK_HOLD_QUESTION_BODY_MAX + 1];
    memset(body, ' ', sizeof(body));
    struct slk_hold_question out, kept = question("stu-1", 600);
    slk_hold_questions_put(c, body, sizeof(body), &kept);
    assert_false(slk_hold_questions_get(c, body, sizeof(body), &out));
    slk_hold_questions_put(c, body, SLK_HOLD_QUESTION_BODY_MAX, &kept); /* exactly the limit is kept */
    assert_true(slk_hold_questions_get(c, body, SLK_HOLD_QUESTION_BODY_MAX, &out));
    slk_hold_questions_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_same_bytes_get_their_question_back),
        cmocka_unit_test(test_other_bytes_are_a_miss),
        cmocka_unit_test(test_a_crowded_table_forgets_but_never_confuses),
        cmocka_unit_test(test_long_bodies_are_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
