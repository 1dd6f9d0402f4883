/*
 * Kept availability replies: served only while the instructor's generation and the time bounds allow; after a
 * change, the journal says which units to read again; the units shown held are read again every
 * SLK_AVAIL_HELD_CHECK_MS, everything every SLK_AVAIL_FULL_READ_MS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slk/avail_cache.h"

static const char body[] = "{\"success\":true}";

/* A basis as a full read leaves it: two planned minutes, read at read_ms. */
static struct slk_avail_basis basis_read_at(int64_t read_ms)
{
    struct slk_avail_basis b = {.read_ms = read_ms, .held_read_ms = read_ms};
    b.plan.minutes = calloc(2, sizeof(int64_t));
    b.plan.num_minutes = 2;
    b.states = calloc(2, 1);
    b.expires = calloc(2, sizeof(int64_t));
    assert_non_null(b.plan.minutes);
    assert_non_null(b.states);
    assert_non_null(b.expires);
    return b;
}

static void put_gen(struct slk_avail_cache *c, const char *ins, const char *key, uint32_t gen, int64_t read_ms)
{
    struct slk_avail_basis b = basis_read_at(read_ms);
    char *text = malloc(sizeof(body));
    assert_non_null(text);
    memcpy(text, body, sizeof(body));
    assert_true(slk_avail_cache_put(c, ins, key, strlen(key), gen, &b, text, sizeof(body) - 1, "\"e1\""));
    assert_null(b.states); /* taken by the cache, like the body */
}

static void put(struct slk_avail_cache *c, const char *ins, const char *key, int64_t read_ms)
{
    put_gen(c, ins, key, slk_avail_gen(ins), read_ms);
}

static enum slk_avail_lookup get(struct slk_avail_cache *c, const char *ins, const char *key, int64_t now,
                                 struct slk_avail_hit *hit)
{
    return slk_avail_cache_get(c, ins, key, strlen(key), now, hit);
}

static void bump_unit_keys(const char *k1, const char *k2)
{
    const char *keys[2] = {k1, k2};
    size_t lens[2] = {strlen(k1), k2 != NULL ? strlen(k2) : 0};
    slk_avail_gen_bump_keys(k2 != NULL ? 2 : 1, keys, lens);
}

static void test_held_units_are_due_each_second_everything_after_the_full_bound(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    const char *k = "ins-a\n1\nfrom=x";
    put(c, "ins-a", k, 1000);
    assert_int_equal(get(c, "ins-a", k, 1000 + SLK_AVAIL_HELD_CHECK_MS - 1, &hit), SLK_AVAIL_HIT);
    assert_int_equal(hit.len, sizeof(body) - 1);
    assert_memory_equal(hit.body, body, hit.len);
    assert_string_equal(hit.etag, "\"e1\"");
    /* Nothing changed, but a hold it shows may have lapsed unannounced: its held units are to be read. */
    assert_int_equal(get(c, "ins-a", k, 1000 + SLK_AVAIL_HELD_CHECK_MS, &hit), SLK_AVAIL_CHANGED);
    assert_true(hit.held_due);
    assert_int_equal(hit.num_changes, 0);
    /* One re-read at a time: whoever asks while it is out gets the reply as kept. */
    struct slk_avail_hit behind;
    assert_int_equal(get(c, "ins-a", k, 1000 + SLK_AVAIL_HELD_CHECK_MS + 1, &behind), SLK_AVAIL_HIT);
    assert_false(behind.held_due);
    int64_t checked = 1000 + SLK_AVAIL_HELD_CHECK_MS;
    assert_true(slk_avail_cache_renew(c, k, strlen(k), hit.serial, hit.gen, checked, &hit));
    assert_int_equal(get(c, "ins-a", k, checked + SLK_AVAIL_HELD_CHECK_MS - 1, &hit), SLK_AVAIL_HIT);
    assert_false(hit.held_due);
    /* However often its held units were read, everything is read again after the full bound. */
    for (int64_t t = checked; t < 1000 + SLK_AVAIL_FULL_READ_MS; t += SLK_AVAIL_HELD_CHECK_MS) {
        assert_int_equal(get(c, "ins-a", k, t, &hit), t == checked ? SLK_AVAIL_HIT : SLK_AVAIL_CHANGED);
        assert_true(slk_avail_cache_renew(c, k, strlen(k), hit.serial, hit.gen, t, &hit));
    }
    assert_int_equal(get(c, "ins-a", k, 1000 + SLK_AVAIL_FULL_READ_MS, &hit), SLK_AVAIL_MISS);
    slk_avail_cache_free(c);
}

/* A slot that has begun is not offered: a reply whose first candidate start is no longer ahead is read anew. */
static void test_a_reply_whose_first_start_has_begun_is_read_anew(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    struct slk_avail_basis b = basis_read_at(1000);
    b.plan.starts = calloc(1, sizeof(int64_t));
    assert_non_null(b.plan.starts);
    b.plan.starts[0] = 1500;
    b.plan.num_starts = 1;
    char *text = malloc(sizeof(body));
    assert_non_null(text);
    memcpy(text, body, sizeof(body));
    assert_true(slk_avail_cache_put(c, "ins-s", "k", 1, slk_avail_gen("ins-s"), &b, text, sizeof(body) - 1, "\"e\""));
    assert_int_equal(get(c, "ins-s", "k", 1499, &hit), SLK_AVAIL_HIT);
    assert_int_equal(get(c, "ins-s", "k", 1500, &hit), SLK_AVAIL_MISS);
    slk_avail_cache_free(c);
}

/* Announcements missed (the events connection was down): every instructor counts as changed everywhere. */
static void test_bump_all_changes_every_instructor(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-x", "kx", 1000);
    put(c, "ins-y", "ky", 1000);
    slk_avail_gen_bump_all();
    const char *ins[] = {"ins-x", "ins-y"}, *keys[] = {"kx", "ky"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(get(c, ins[i], keys[i], 1001, &hit), SLK_AVAIL_CHANGED);
        assert_int_equal(hit.num_changes, 1);
        assert_true(hit.changes[0].lo == INT64_MIN && hit.changes[0].hi == INT64_MAX);
    }
    slk_avail_cache_free(c);
}

static void test_a_change_names_the_units_it_touched(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-b", "ins-b\n1\n", 1000);
    put(c, "ins-c", "ins-c\n1\n", 1000);
    /* A hold script for ins-b: its meta key first, then its unit keys. */
    const char *keys[4] = {"slk:{ins-b}:meta", "slk:{ins-b}:u:29000000", "slk:{ins-b}:u:29000030",
                           "slk:{ins-b}:u:29000015"};
    size_t lens[4] = {strlen(keys[0]), strlen(keys[1]), strlen(keys[2]), strlen(keys[3])};
    slk_avail_gen_bump_keys(4, keys, lens);
    assert_int_equal(get(c, "ins-b", "ins-b\n1\n", 1001, &hit), SLK_AVAIL_CHANGED);
    assert_int_equal(hit.num_changes, 1);
    assert_int_equal(hit.changes[0].lo, 29000000);
    assert_int_equal(hit.changes[0].hi, 29000031);
    assert_int_equal(hit.gen, slk_avail_gen("ins-b"));
    assert_memory_equal(hit.body, body, hit.len); /* what the caller brings up to date */
    assert_int_equal(get(c, "ins-c", "ins-c\n1\n", 1001, &hit), SLK_AVAIL_HIT);
    slk_avail_cache_free(c);
}

static void test_a_change_of_unknown_extent_covers_everything(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-u", "ins-u\n1\n", 1000);
    bump_unit_keys("slk:{ins-u}:b:some-booking", NULL); /* a script without unit keys */
    slk_avail_gen_bump("ins-u", 5);                     /* an announcement that could not be read */
    assert_int_equal(get(c, "ins-u", "ins-u\n1\n", 1001, &hit), SLK_AVAIL_CHANGED);
    assert_int_equal(hit.num_changes, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(hit.changes[i].lo == INT64_MIN);
        assert_true(hit.changes[i].hi == INT64_MAX);
    }
    slk_avail_cache_free(c);
}

static void test_a_reply_read_before_a_change_is_brought_up_to_date(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    uint32_t seen = slk_avail_gen("ins-d");
    /* A hold's expiry announced while the read was in flight. */
    slk_avail_gen_bump_units("ins-d", 5, (struct slk_unit_range){500, 501});
    put_gen(c, "ins-d", "k", seen, 1000);
    assert_int_equal(get(c, "ins-d", "k", 1001, &hit), SLK_AVAIL_CHANGED);
    assert_int_equal(hit.num_changes, 1);
    assert_int_equal(hit.changes[0].lo, 500);
    assert_int_equal(hit.changes[0].hi, 501);
    slk_avail_cache_free(c);
}

static void test_more_changes_than_the_journal_holds_miss(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-j", "k", 1000);
    for (int i = 0; i < SLK_AVAIL_JOURNAL; i++)
        slk_avail_gen_bump_units("ins-j", 5, (struct slk_unit_range){i, i + 1});
    assert_int_equal(get(c, "ins-j", "k", 1001, &hit), SLK_AVAIL_CHANGED);
    assert_int_equal(hit.num_changes, SLK_AVAIL_JOURNAL);
    for (int i = 0; i < SLK_AVAIL_JOURNAL; i++)
        assert_int_equal(hit.changes[i].lo, i); /* oldest first */
    slk_avail_gen_bump_units("ins-j", 5, (struct slk_unit_range){99, 100});
    assert_int_equal(get(c, "ins-j", "k", 1001, &hit), SLK_AVAIL_MISS);
    slk_avail_cache_free(c);
}

static void test_renew_only_the_reply_it_started_from(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit, renewed;
    put(c, "ins-r", "k", 1000);
    slk_avail_gen_bump_units("ins-r", 5, (struct slk_unit_range){7, 8});
    assert_int_equal(get(c, "ins-r", "k", 1001, &hit), SLK_AVAIL_CHANGED);
    assert_true(slk_avail_cache_renew(c, "k", 1, hit.serial, hit.gen, 0, &renewed));
    assert_memory_equal(renewed.body, body, renewed.len);
    assert_int_equal(get(c, "ins-r", "k", 1002, &hit), SLK_AVAIL_HIT);
    /* Renewing without reading the held units keeps the time they were read: they are due as before. */
    assert_int_equal(get(c, "ins-r", "k", 1000 + SLK_AVAIL_HELD_CHECK_MS, &hit), SLK_AVAIL_CHANGED);
    assert_true(hit.held_due);
    /* Renewing keeps the time of the last full read: the bound still holds. */
    assert_int_equal(get(c, "ins-r", "k", 1000 + SLK_AVAIL_FULL_READ_MS, &hit), SLK_AVAIL_MISS);

    put(c, "ins-r", "k", 2000);
    assert_int_equal(get(c, "ins-r", "k", 2001, &hit), SLK_AVAIL_HIT);
    uint64_t first = hit.serial;
    slk_avail_gen_bump_units("ins-r", 5, (struct slk_unit_range){7, 8});
    put(c, "ins-r", "k", 2002); /* another request kept a newer reply meanwhile */
    assert_false(slk_avail_cache_renew(c, "k", 1, first, slk_avail_gen("ins-r"), 0, &renewed));
    slk_avail_cache_free(c);
}

static void test_other_questions_miss(void **state)
{
    (void)state;
    struct slk_avail_cache *c = slk_avail_cache_create();
    struct slk_avail_hit hit;
    put(c, "ins-e", "ins-e\n1\nfrom=a", 1000);
    assert_int_equal(get(c, "ins-e", "ins-e\n1\nfrom=b", 1001, &hit), SLK_AVAIL_MISS);
    assert_int_equal(get(c, "ins-e", "ins-e\n2\nfrom=a", 1001, &hit), SLK_AVAIL_MISS);
    /* Keys without a hash tag change nothing. */
    bump_unit_keys("slk:bi:x", NULL);
    assert_int_equal(get(c, "ins-e", "ins-e\n1\nfrom=a", 1001, &hit), SLK_AVAIL_HIT);
    slk_avail_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_units_are_due_each_second_everything_after_the_full_bound),
        cmocka_unit_test(test_a_reply_whose_first_start_has_begun_is_read_anew),
        cmocka_unit_test(test_bump_all_changes_every_instructor),
        cmocka_unit_test(test_a_change_names_the_units_it_touched),
        cmocka_unit_test(test_a_change_of_unknown_extent_covers_everything),
        cmocka_unit_test(test_a_reply_read_before_a_change_is_brought_up_to_date),
        cmocka_unit_test(test_more_changes_than_the_journal_holds_miss),
        cmocka_unit_test(test_renew_only_the_reply_it_started_from),
        cmocka_unit_test(test_other_questions_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
