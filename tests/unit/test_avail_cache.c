/* Kept availability replies: served only while the instructor's generation and the time bound allow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "slk/avail_cache.h"

static const char body[] = "{\"success\":true}";

static void put(struct slk_avail_cache *c, const char *ins, const char *key, int64_t now)
{
    slk_avail_cache_put(c, ins, key, strlen(key), slk_avail_gen(ins), now, body, sizeof(body) - 1, "\"e1\"");
}

static void test_hit_until_the_time_bound(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-a", "ins-a\n1\nfrom=x", 1000);
    assert_int_equal(slk_avail_cache_get(c, "ins-a", "ins-a\n1\nfrom=x", 14, 1000 + SLK_AVAIL_CACHE_TTL_MS - 1, &hit),
                     0);
    assert_int_equal(hit.len, sizeof(body) - 1);
    assert_memory_equal(hit.body, body, hit.len);
    assert_string_equal(hit.etag, "\"e1\"");
    assert_int_not_equal(slk_avail_cache_get(c, "ins-a", "ins-a\n1\nfrom=x", 14, 1000 + SLK_AVAIL_CACHE_TTL_MS, &hit),
                         0);
    slk_avail_cache_free(c);
}

static void test_a_change_of_the_instructor_drops_it(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-b", "ins-b\n1\n", 1000);
    put(c, "ins-c", "ins-c\n1\n", 1000);
    /* A script sent for ins-b: keys carry the hash tag. */
    slk_avail_gen_bump_key("slk:{ins-b}:u:123", 17);
    assert_int_not_equal(slk_avail_cache_get(c, "ins-b", "ins-b\n1\n", 8, 1001, &hit), 0);
    assert_int_equal(slk_avail_cache_get(c, "ins-c", "ins-c\n1\n", 8, 1001, &hit), 0);
    slk_avail_cache_free(c);
}

static void test_a_reply_read_before_a_change_is_not_kept(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    uint32_t seen = slk_avail_gen("ins-d");
    slk_avail_gen_bump("ins-d", 5); /* a hold sent while the read was in flight */
    slk_avail_cache_put(c, "ins-d", "k", 1, seen, 1000, body, sizeof(body) - 1, "\"e\"");
    assert_int_not_equal(slk_avail_cache_get(c, "ins-d", "k", 1, 1001, &hit), 0);
    slk_avail_cache_free(c);
}

static void test_other_questions_miss(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-e", "ins-e\n1\nfrom=a", 1000);
    assert_int_not_equal(slk_avail_cache_get(c, "ins-e", "ins-e\n1\nfrom=b", 14, 1001, &hit), 0);
    assert_int_not_equal(slk_avail_cache_get(c, "ins-e", "ins-e\n2\nfrom=a", 14, 1001, &hit), 0);
    /* Keys without a hash tag change nothing. */
    slk_avail_gen_bump_key("slk:bi:x", 8);
    assert_int_equal(slk_avail_cache_get(c, "ins-e", "ins-e\n1\nfrom=a", 14, 1001, &hit), 0);
    slk_avail_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_until_the_time_bound),
        cmocka_unit_test(test_a_change_of_the_instructor_drops_it),
        cmocka_unit_test(test_a_reply_read_before_a_change_is_not_kept),
        cmocka_unit_test(test_other_questions_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
