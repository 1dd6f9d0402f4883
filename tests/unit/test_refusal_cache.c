/* Kept hold refusals: answered again only while nothing may have freed the units, and never past their lapse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "slk/avail_cache.h"
#include "slk/refusal_cache.h"

static struct slk_refusal_key key(const char *ins, int64_t first_min, int count)
{
    struct slk_refusal_key k = {.version = 3, .units_first_min = first_min, .unit_count = count};
    snprintf(k.instructor, sizeof(k.instructor), "%s", ins);
    return k;
}

static const char reply[] = "{\"success\":false,\"error\":{\"code\":\"slot_unavailable\"}}";

static void put(struct slk_refusal_cache *c, const char *ins, int64_t now, int64_t lapse)
{
    struct slk_refusal_key k = key(ins, 600, 4);
    char body[sizeof(reply)];
    memcpy(body, reply, sizeof(reply));
    struct slk_refusal r = {.body = body, .len = sizeof(reply) - 1};
    slk_refusal_cache_put(c, &k, slk_freed_gen(ins), now, lapse, &r);
    memset(body, 'x', sizeof(body)); /* the cache keeps its own copy */
}

static bool get(struct slk_refusal_cache *c, const char *ins, int64_t now)
{
    struct slk_refusal_key k = key(ins, 600, 4);
    struct slk_refusal r = {0};
    bool hit = slk_refusal_cache_get(c, &k, now, &r);
    if (hit) {
        assert_int_equal(r.len, sizeof(reply) - 1);
        assert_memory_equal(r.body, reply, r.len);
    }
    return hit;
}

static void test_hit_until_the_time_bound(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    assert_false(get(c, "ins-a", 1000));
    put(c, "ins-a", 1000, -1);
    assert_true(get(c, "ins-a", 1000 + SLK_REFUSAL_CACHE_TTL_MS - 1));
    assert_false(get(c, "ins-a", 1000 + SLK_REFUSAL_CACHE_TTL_MS));
    assert_false(get(c, "ins-a", 1000)); /* dropped, not just hidden */
    slk_refusal_cache_free(c);
}

static void test_never_past_the_first_lapse(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    put(c, "ins-b", 1000, 250);
    assert_true(get(c, "ins-b", 1249));
    assert_false(get(c, "ins-b", 1250));
    put(c, "ins-b", 2000, 0); /* expiring as Redis looked: not kept at all */
    assert_false(get(c, "ins-b", 2000));
    slk_refusal_cache_free(c);
}

static void test_freed_units_drop_it_but_holds_do_not(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    put(c, "ins-c", 1000, -1);
    put(c, "ins-d", 1000, -1);
    slk_avail_gen_bump("ins-c", 5); /* a hold elsewhere: availability changes, nothing was freed */
    assert_true(get(c, "ins-c", 1001));
    slk_freed_gen_bump_key("slk:{ins-c}:b:x", 15);
    assert_false(get(c, "ins-c", 1001));
    assert_true(get(c, "ins-d", 1001));
    slk_freed_gen_bump_all(); /* announcements may have been missed */
    assert_false(get(c, "ins-d", 1001));
    slk_refusal_cache_free(c);
}

static void test_a_refusal_read_before_a_release_is_not_kept(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    struct slk_refusal_key k = key("ins-e", 600, 4);
    struct slk_refusal r = {.body = reply, .len = sizeof(reply) - 1};
    uint32_t gen = slk_freed_gen("ins-e");
    slk_freed_gen_bump("ins-e", 5); /* released while the hold script ran */
    slk_refusal_cache_put(c, &k, gen, 1000, -1, &r);
    assert_false(slk_refusal_cache_get(c, &k, 1001, &r));
    slk_refusal_cache_free(c);
}

static void test_other_questions_miss(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    struct slk_refusal r;
    put(c, "ins-f", 1000, -1);
    struct slk_refusal_key longer = key("ins-f", 600, 8), later = key("ins-f", 615, 4), other = key("ins-g", 600, 4);
    struct slk_refusal_key resettled = key("ins-f", 600, 4);
    resettled.version = 4;
    assert_false(slk_refusal_cache_get(c, &longer, 1001, &r));
    assert_false(slk_refusal_cache_get(c, &later, 1001, &r));
    assert_false(slk_refusal_cache_get(c, &other, 1001, &r));
    assert_false(slk_refusal_cache_get(c, &resettled, 1001, &r));
    assert_true(get(c, "ins-f", 1001));
    slk_refusal_cache_free(c);
}

static void test_an_oversized_reply_is_not_kept(void **state)
{
    (void)state;
    struct slk_refusal_cache *c = slk_refusal_cache_create();
    static char big[SLK_REFUSAL_BODY_MAX + 1];
    memset(big, 'b', sizeof(big));
    struct slk_refusal_key k = key("ins-h", 600, 4);
    struct slk_refusal r = {.body = big, .len = sizeof(big)};
    slk_refusal_cache_put(c, &k, slk_freed_gen("ins-h"), 1000, -1, &r);
    assert_false(slk_refusal_cache_get(c, &k, 1001, &r));
    r.len = SLK_REFUSAL_BODY_MAX;
    slk_refusal_cache_put(c, &k, slk_freed_gen("ins-h"), 1000, -1, &r);
    assert_true(slk_refusal_cache_get(c, &k, 1001, &r));
    assert_int_equal(r.len, SLK_REFUSAL_BODY_MAX);
    slk_refusal_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_until_the_time_bound),
        cmocka_unit_test(test_never_past_the_first_lapse),
        cmocka_unit_test(test_freed_units_drop_it_but_holds_do_not),
        cmocka_unit_test(test_a_refusal_read_before_a_release_is_not_kept),
        cmocka_unit_test(test_other_questions_miss),
        cmocka_unit_test(test_an_oversized_reply_is_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
