/* Values kept by the exact bytes of their key: exact matches only, the least recently used goes first, and a
 * stampede's worth of keys stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "slk/byte_cache.h"

static bool has(struct slk_byte_cache *c, const char *key, int value)
{
    const int *v = slk_byte_cache_get(c, key, strlen(key));
    return v != NULL && *v == value;
}

static void put(struct slk_byte_cache *c, const char *key, int value)
{
    slk_byte_cache_put(c, key, strlen(key), &value);
}

static void test_only_the_same_bytes_hit(void **state)
{
    (void)state;
    struct slk_byte_cache *c = slk_byte_cache_create(64, sizeof(int), 32);
    assert_non_null(c);
    char key[] = "aaa.bbb.signature-one";
    put(c, key, 1);
    memset(key, 'x', sizeof(key) - 1); /* the cache keeps its own copy of the bytes */
    assert_true(has(c, "aaa.bbb.signature-one", 1));
    assert_null(slk_byte_cache_get(c, "aaa.bbb.signature-on", 20));  /* a prefix */
    assert_null(slk_byte_cache_get(c, "aaa.bbX.signature-one", 21)); /* one byte off */
    assert_null(slk_byte_cache_get(c, "aaa.bbb.signature-one", 0));  /* nothing */
    put(c, "aaa.bbb.signature-one", 2); /* the same bytes again: a new value, not a second entry */
    assert_true(has(c, "aaa.bbb.signature-one", 2));
    slk_byte_cache_free(c);
}

static void test_overlong_and_empty_keys_are_not_kept(void **state)
{
    (void)state;
    struct slk_byte_cache *c = slk_byte_cache_create(64, sizeof(int), 8);
    put(c, "123456789", 1);
    assert_null(slk_byte_cache_get(c, "123456789", 9));
    put(c, "12345678", 2); /* exactly the limit is kept */
    assert_true(has(c, "12345678", 2));
    int v = 3;
    slk_byte_cache_put(c, "", 0, &v);
    assert_null(slk_byte_cache_get(c, "", 0));
    slk_byte_cache_free(c);
}

/* A cache of one set: every key competes for its SLK_BYTE_CACHE_WAYS entries. */
static void test_the_least_recently_used_goes_first(void **state)
{
    (void)state;
    struct slk_byte_cache *c = slk_byte_cache_create(SLK_BYTE_CACHE_WAYS, sizeof(int), 32);
    char key[8];
    for (int i = 0; i < SLK_BYTE_CACHE_WAYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(c, key, i);
    }
    assert_true(has(c, "k0", 0)); /* k0 used again: k1 is now the least recent */
    put(c, "a-longer-key", 100);  /* takes k1's place; the copy there grows */
    assert_null(slk_byte_cache_get(c, "k1", 2));
    assert_true(has(c, "a-longer-key", 100));
    for (int i = 2; i < SLK_BYTE_CACHE_WAYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(has(c, key, i));
    }
    put(c, "another", 101); /* now k0: every other key was read after it */
    assert_null(slk_byte_cache_get(c, "k0", 2));
    assert_true(has(c, "another", 101) && has(c, "a-longer-key", 100));
    slk_byte_cache_free(c);
}

enum { STUDENTS = 1000, SLOTS = 10 };

/*
 * A thousand students, each clicking ten slots: a body per (student, slot),
 * written by format from the student and the slot. Puts them all into a
 * table of 32,768 entries, then reads them back; returns how many stayed,
 * and fails if a key is ever answered with another key's value.
 */
static int kept_of_stampede(const char *format)
{
    struct slk_byte_cache *c = slk_byte_cache_create(32768, sizeof(int), 512);
    assert_non_null(c);
    char key[512];
    int kept = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < STUDENTS; s++)
            for (int k = 0; k < SLOTS; k++) {
                int n = snprintf(key, sizeof(key), format, s, k);
                int v = s * SLOTS + k;
                if (pass == 0) {
                    slk_byte_cache_put(c, key, (size_t)n, &v);
                    continue;
                }
                const int *got = slk_byte_cache_get(c, key, (size_t)n);
                if (got != NULL) {
                    assert_int_equal(*got, v);
                    kept++;
                }
            }
    slk_byte_cache_free(c);
    return kept;
}

/*
 * Bodies alike but for the student and the slot: nearly all ten thousand
 * stay (a direct-mapped table of the same size lost one in seven to
 * collisions).
 */
static void test_a_stampede_stays(void **state)
{
    (void)state;
    int kept = kept_of_stampede("{\"student_uuid\":\"00000000-0000-4000-8000-%012d\",\"course_uuid\":\"c\","
                                "\"instructor_uuid\":\"i\",\"start\":\"2026-12-01T%02d:00:00Z\"}");
    assert_true(kept >= STUDENTS * SLOTS * 995 / 1000);
}

/* Long keys (a hold body of 200-500 bytes) that differ only in the middle spread over the table like any others. */
static void test_long_keys_differing_in_the_middle_stay(void **state)
{
    (void)state;
    int kept = kept_of_stampede("{\"instructor_uuid\":\"00000000-0000-4000-8000-000000000001\",\"course_uuid\":"
                                "\"00000000-0000-4000-8000-000000000002\",\"student_uuid\":\"00000000-0000-4000-"
                                "8000-%012d\",\"purpose\":\"a lesson of the usual kind\",\"price\":50.00,"
                                "\"currency\":\"USD\",\"start_time\":\"2026-12-01T%02d:00:00Z\"}");
    assert_true(kept >= STUDENTS * SLOTS * 995 / 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_the_same_bytes_hit),
        cmocka_unit_test(test_overlong_and_empty_keys_are_not_kept),
        cmocka_unit_test(test_the_least_recently_used_goes_first),
        cmocka_unit_test(test_a_stampede_stays),
        cmocka_unit_test(test_long_keys_differing_in_the_middle_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
