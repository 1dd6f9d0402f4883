/* A worker's view of its clients' token buckets: GCRA on the worker's clock, corrected by what Redis charged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "slk/rate_view.h"

#define MS 1000000LL
#define SEC (1000 * MS)

/* 5 per second, bucket of 5: a token every 200 ms, a full bucket is 1 s ahead. */
static const struct slk_rate_limits five = {.interval_ns = 200 * MS, .window_ns = 1000 * MS};

static uint32_t last_charge;

static bool take(struct slk_rate_view *v, const char *client, int64_t now, int64_t *wait)
{
    return slk_rate_view_take(v, client, strlen(client), now, &five, wait, &last_charge);
}

static void test_a_burst_then_one_token_per_interval(void **state)
{
    (void)state;
    struct slk_rate_view *v = slk_rate_view_create();
    int64_t now = 100 * SEC, wait;
    for (int i = 0; i < 5; i++)
        assert_true(take(v, "slk:rl:{student:a}", now, &wait));
    assert_false(take(v, "slk:rl:{student:a}", now, &wait));
    assert_int_equal(wait, 200 * MS);
    assert_false(take(v, "slk:rl:{student:a}", now + 199 * MS, &wait));
    assert_int_equal(wait, 1 * MS);
    assert_true(take(v, "slk:rl:{student:a}", now + 200 * MS, &wait));
    assert_false(take(v, "slk:rl:{student:a}", now + 200 * MS, &wait));
    /* Another client, and the same id under another role, have buckets of their own. */
    assert_true(take(v, "slk:rl:{student:b}", now, &wait));
    assert_true(take(v, "slk:rl:{instructor:a}", now, &wait));
    /* A full refill period later a whole burst passes again. */
    for (int i = 0; i < 5; i++)
        assert_true(take(v, "slk:rl:{student:a}", now + 1200 * MS, &wait));
    assert_false(take(v, "slk:rl:{student:a}", now + 1200 * MS, &wait));
    slk_rate_view_free(v);
}

static void test_a_first_token_rides_with_the_second(void **state)
{
    (void)state;
    struct slk_rate_view *v = slk_rate_view_create();
    const char *c = "slk:rl:{student:e}";
    int64_t now = 100 * SEC, wait;
    assert_true(take(v, c, now, &wait));
    assert_int_equal(last_charge, 0); /* a client seen once costs Redis nothing */
    assert_true(take(v, c, now, &wait));
    assert_int_equal(last_charge, 2); /* the first token goes with the second */
    assert_true(take(v, c, now, &wait));
    assert_int_equal(last_charge, 1);
    /* Refused requests charge nothing. */
    assert_true(take(v, c, now, &wait));
    assert_true(take(v, c, now, &wait));
    assert_false(take(v, c, now, &wait));
    assert_int_equal(last_charge, 0);
    /* A first token still unsent counts on top of what Redis reports, like one on the way. Here the view forgot a
     * client while two of its charges were on the way; it asks again (a first token, unsent), then Redis answers
     * the old charges: 1 s of debt, and the unsent token comes on top. */
    const char *d = "slk:rl:{student:f}";
    for (int i = 0; i < 3; i++)
        assert_true(take(v, d, now, &wait));
    char id[64];
    for (int i = 0; i < 20000; i++) { /* a crowd arriving later pushes d out: its bucket is the fullest (full again) */
        snprintf(id, sizeof(id), "slk:rl:{student:crowd%d}", i);
        assert_true(take(v, id, now + 1000 * MS, &wait));
    }
    assert_true(take(v, d, now + 1000 * MS, &wait));
    assert_int_equal(last_charge, 0); /* first in view again */
    slk_rate_view_charged(v, d, strlen(d), now + 1000 * MS, 1000 * MS, 2, &five);
    assert_false(take(v, d, now + 1000 * MS, &wait));
    assert_int_equal(wait, 400 * MS);
    slk_rate_view_free(v);
}

/* One token per interval, no burst: a client asking exactly at the rate is never refused, and a first token whose
 * time has passed is not charged late (that would put the client in debt for it). */
static void test_a_first_token_is_dropped_once_its_time_has_passed(void **state)
{
    (void)state;
    const struct slk_rate_limits one = {.interval_ns = 200 * MS, .window_ns = 200 * MS};
    struct slk_rate_view *v = slk_rate_view_create();
    const char *c = "slk:rl:{student:g}";
    int64_t now = 100 * SEC, wait;
    uint32_t charge;
    assert_true(slk_rate_view_take(v, c, strlen(c), now, &one, &wait, &charge));
    assert_int_equal(charge, 0);
    for (int i = 1; i <= 5; i++) {
        assert_true(slk_rate_view_take(v, c, strlen(c), now + i * 200 * MS, &one, &wait, &charge));
        assert_int_equal(charge, 1);
        /* Redis saw exactly the tokens charged: one, just now; nothing is left over. */
        slk_rate_view_charged(v, c, strlen(c), now + i * 200 * MS, 200 * MS, 1, &one);
    }
    assert_false(slk_rate_view_take(v, c, strlen(c), now + 5 * 200 * MS, &one, &wait, &charge));
    assert_int_equal(wait, 200 * MS);
    slk_rate_view_free(v);
}

static void test_tokens_taken_elsewhere_count_once_redis_tells(void **state)
{
    (void)state;
    struct slk_rate_view *v = slk_rate_view_create();
    const char *c = "slk:rl:{student:c}";
    int64_t now = 100 * SEC, wait;
    assert_true(take(v, c, now, &wait));
    assert_true(take(v, c, now, &wait));
    assert_int_equal(last_charge, 2);
    /* Other servers took three more of this client's tokens: Redis answers our charge with a debt of 1 s. */
    slk_rate_view_charged(v, c, strlen(c), now, 1000 * MS, 2, &five);
    assert_false(take(v, c, now, &wait));
    assert_int_equal(wait, 200 * MS);
    /* Beyond the bucket (everyone let a burst through at once): the client waits the debt off. */
    slk_rate_view_charged(v, c, strlen(c), now, 3000 * MS, 1, &five);
    assert_false(take(v, c, now + 2000 * MS, &wait));
    assert_int_equal(wait, 200 * MS);
    assert_true(take(v, c, now + 2200 * MS, &wait));
    slk_rate_view_free(v);
}

static void test_own_tokens_still_on_the_way_are_not_forgotten(void **state)
{
    (void)state;
    struct slk_rate_view *v = slk_rate_view_create();
    const char *c = "slk:rl:{student:d}";
    int64_t now = 100 * SEC, wait;
    for (int i = 0; i < 5; i++)
        assert_true(take(v, c, now, &wait));
    /* The first charge (two tokens) comes back: 400 ms of debt in Redis; three tokens are still on the way. */
    slk_rate_view_charged(v, c, strlen(c), now, 400 * MS, 2, &five);
    assert_false(take(v, c, now, &wait));
    assert_int_equal(wait, 200 * MS);
    /* A charge that got no answer is no longer awaited, and takes nothing back. */
    slk_rate_view_uncharged(v, c, strlen(c), 1);
    assert_false(take(v, c, now, &wait));
    /* An older, smaller answer never gives tokens back. */
    slk_rate_view_charged(v, c, strlen(c), now, 0, 1, &five);
    assert_false(take(v, c, now, &wait));
    slk_rate_view_free(v);
}

static void test_a_crowd_of_clients_never_confuses_two(void **state)
{
    (void)state;
    struct slk_rate_view *v = slk_rate_view_create();
    int64_t now = 100 * SEC, wait;
    char id[64];
    /* Far more clients than the view holds, each with four tokens taken: every newcomer starts from a full bucket
     * of its own (sharing one with anybody would refuse it), and whoever is pushed out only starts afresh. */
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "slk:rl:{student:%d}", i);
        for (int k = 0; k < 4; k++)
            assert_true(take(v, id, now, &wait));
    }
    /* The latest newcomer is still in view: its fifth token passes, the sixth does not. */
    assert_true(take(v, id, now, &wait));
    assert_false(take(v, id, now, &wait));
    slk_rate_view_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_burst_then_one_token_per_interval),
        cmocka_unit_test(test_a_first_token_rides_with_the_second),
        cmocka_unit_test(test_a_first_token_is_dropped_once_its_time_has_passed),
        cmocka_unit_test(test_tokens_taken_elsewhere_count_once_redis_tells),
        cmocka_unit_test(test_own_tokens_still_on_the_way_are_not_forgotten),
        cmocka_unit_test(test_a_crowd_of_clients_never_confuses_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
