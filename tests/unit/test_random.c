#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Included to see the thread's block of random bytes (pool, pool_left). */
#include "../../src/random.c"

#define N_UUIDS 1000

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not what we emit */
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_uuid_format_version_variant(void **state)
{
    (void)state;
    static char ids[N_UUIDS][37];
    unsigned seen_variant = 0;

    for (int i = 0; i < N_UUIDS; i++) {
        char *u = ids[i];
        memset(u, 'X', 37);
        assert_int_equal(slk_uuid_v4(u), 0);
        assert_int_equal(strlen(u), 36);
        assert_true(slk_uuid_valid(u, 36));
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(u[k], '-');
            else
                assert_true(hex_nibble(u[k]) >= 0);
        }
        assert_int_equal(u[14], '4');    /* version 4 */
        int variant = hex_nibble(u[19]); /* 10xx: 8, 9, a or b */
        assert_int_equal(variant & 0xc, 0x8);
        seen_variant |= 1u << (variant & 3);
    }
    /* The two low variant bits stay random. */
    assert_int_equal(seen_variant, 0xf);

    qsort(ids, N_UUIDS, sizeof(ids[0]), cmp_str);
    for (int i = 1; i < N_UUIDS; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

/* Booking ids: the millisecond in the first 48 bits (they sort by it), version 7, variant 10, the rest random. */
static void test_uuid_v7_time_ordered(void **state)
{
    (void)state;
    static char ids[N_UUIDS][37];
    const int64_t base = 1795393225683; /* 2026-11-23T00:20:25.683Z = 0x01a2 05c6 83d3 */
    unsigned seen_variant = 0;
    for (int i = 0; i < N_UUIDS; i++) {
        char *u = ids[i];
        assert_int_equal(slk_uuid_v7(u, base + i / 4), 0); /* four ids per millisecond */
        assert_int_equal(strlen(u), 36);
        assert_true(slk_uuid_valid(u, 36));
        unsigned char b[16];
        assert_int_equal(slk_uuid_bytes(u, b), 0);
        int64_t ms = 0;
        for (int k = 0; k < 6; k++)
            ms = ms << 8 | b[k];
        assert_int_equal(ms, base + i / 4);
        assert_int_equal(u[14], '7');
        int variant = hex_nibble(u[19]);
        assert_int_equal(variant & 0xc, 0x8);
        seen_variant |= 1u << (variant & 3);
        if (i > 0 && i % 4 == 0)
            assert_true(strcmp(ids[i - 1], u) < 0); /* a later millisecond sorts after */
    }
    assert_memory_equal(ids[0], "01a205c6-83d3-7", 15);
    assert_int_equal(seen_variant, 0xf);
    qsort(ids, N_UUIDS, sizeof(ids[0]), cmp_str);
    for (int i = 1; i < N_UUIDS; i++)
        assert_string_not_equal(ids[i - 1], ids[i]); /* ids of one millisecond differ in their random bits */
}

/* A booking uuid goes to its 16 bytes and back unchanged; only lower-case canonical text has bytes. */
static void test_uuid_bytes_round_trip(void **state)
{
    (void)state;
    unsigned char b[16];
    char text[37], back[37];
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(slk_uuid_v4(text), 0);
        assert_int_equal(slk_uuid_bytes(text, b), 0);
        slk_uuid_format(b, back);
        assert_string_equal(back, text);
    }
    assert_int_equal(slk_uuid_bytes("123e4567-e89b-12d3-a456-426614174000", b), 0);
    assert_int_equal(b[0], 0x12);
    assert_int_equal(b[15], 0x00);
    assert_int_equal(b[10], 0x42);
    assert_int_equal(slk_uuid_bytes("123E4567-e89b-12d3-a456-426614174000", b), SLK_EINVAL);  /* upper case */
    assert_int_equal(slk_uuid_bytes("123e4567-e89b-12d3-a456-42661417400", b), SLK_EINVAL);   /* short */
    assert_int_equal(slk_uuid_bytes("123e4567-e89b-12d3-a456-4266141740000", b), SLK_EINVAL); /* long */
    assert_int_equal(slk_uuid_bytes("123e4567e-89b-12d3-a456-426614174000", b), SLK_EINVAL);  /* dash moved */
    assert_int_equal(slk_uuid_bytes("123e4567-e89b-12d3-a456-42661417400g", b), SLK_EINVAL);
    assert_int_equal(slk_uuid_bytes("", b), SLK_EINVAL);
}

static void test_uuid_valid(void **state)
{
    (void)state;
    assert_true(slk_uuid_valid("123e4567-e89b-12d3-a456-426614174000", 36)); /* v1 */
    assert_true(slk_uuid_valid("123E4567-E89B-42D3-A456-426614174000", 36)); /* upper case */
    assert_true(slk_uuid_valid("00000000-0000-0000-0000-000000000000", 36));

    assert_false(slk_uuid_valid("123e4567-e89b-12d3-a456-42661417400", 35));
    assert_false(slk_uuid_valid("123e4567-e89b-12d3-a456-4266141740000", 37));
    assert_false(slk_uuid_valid("123e4567e89b12d3a456426614174000", 32));
    assert_false(slk_uuid_valid("123e4567-e89b-12d3-a456-42661417400g", 36));
    assert_false(slk_uuid_valid("123e4567-e89b-12d3-a456_426614174000", 36));
    assert_false(slk_uuid_valid("123e456-7e89b-12d3-a456-426614174000", 36));
    assert_false(slk_uuid_valid("{23e4567-e89b-12d3-a456-42661417400}", 36));
    assert_false(slk_uuid_valid("123e4567-e89b-12d3-a456-42661417400\0", 36));
    assert_false(slk_uuid_valid("", 0));
    assert_false(slk_uuid_valid(NULL, 36));
    /* len is honoured. */
    assert_true(slk_uuid_valid("123e4567-e89b-12d3-a456-426614174000xyz", 36));
}

static void test_random_token(void **state)
{
    (void)state;
    char a[64];
    char b[64];

    assert_int_equal(slk_random_token(a, sizeof(a), "hold_"), 0);
    assert_int_equal(slk_random_token(b, sizeof(b), "hold_"), 0);
    assert_int_equal(strlen(a), 5 + 32);
    assert_memory_equal(a, "hold_", 5);
    for (size_t i = 5; i < strlen(a); i++)
        assert_true(hex_nibble(a[i]) >= 0);
    assert_string_not_equal(a, b);
    /* Tokens are usable as ids. */
    assert_true(slk_id_valid(a, strlen(a)));

    /* Exactly enough room, and one byte short. */
    char exact[5 + 33];
    assert_int_equal(slk_random_token(exact, sizeof(exact), "hold_"), 0);
    assert_int_equal(strlen(exact), sizeof(exact) - 1);
    assert_int_not_equal(slk_random_token(exact, sizeof(exact) - 1, "hold_"), 0);

    assert_int_equal(slk_random_token(a, 33, ""), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(slk_random_token(a, 33, NULL), 0);
    assert_int_equal(strlen(a), 32);
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned char a[64];
    unsigned char b[64];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(slk_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(slk_random_bytes(b, sizeof(b)), 0);
    /* 512 random bits colliding would mean the generator is broken. */
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(slk_random_bytes(a, 0), 0);
}

static bool all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* Small requests come out of the thread's block, and what was handed out is wiped from it at once. */
static void test_small_requests_come_from_a_block_that_forgets_them(void **state)
{
    (void)state;
    unsigned char v[16];
    pool_left = 0; /* start from a fresh block */
    assert_int_equal(slk_random_bytes(v, sizeof(v)), 0);
    assert_int_equal(pool_left, POOL_BYTES - sizeof(v));
    assert_false(all_zero(v, sizeof(v)));
    assert_true(all_zero(pool, sizeof(v)));
    assert_false(all_zero(pool + sizeof(v), 64)); /* the rest is still to be handed out */
    unsigned char big[POOLED_MAX + 1];
    assert_int_equal(slk_random_bytes(big, sizeof(big)), 0); /* straight from OpenSSL: the block is untouched */
    assert_int_equal(pool_left, POOL_BYTES - sizeof(v));
}

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Values drawn across several blocks (odd sizes leave tails that are skipped) never repeat. */
static void test_values_across_blocks_never_repeat(void **state)
{
    (void)state;
    enum { N = 3 * POOL_BYTES / 16 };
    unsigned char(*v)[16] = calloc(N, 16);
    assert_non_null(v);
    unsigned char odd[61];
    for (int i = 0; i < N; i++) {
        assert_int_equal(slk_random_bytes(v[i], 16), 0);
        if (i % 50 == 0)
            assert_int_equal(slk_random_bytes(odd, sizeof(odd)), 0);
    }
    qsort(v, N, 16, cmp16);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(v[i - 1], v[i], 16);
    free(v);
}

static void test_id_valid(void **state)
{
    (void)state;
    char id[66];
    memset(id, 'a', sizeof(id));

    assert_true(slk_id_valid(id, 1));
    assert_true(slk_id_valid(id, 64));
    assert_false(slk_id_valid(id, 65));
    assert_false(slk_id_valid(id, 0));
    assert_false(slk_id_valid(NULL, 3));
    assert_true(slk_id_valid("Az09._:-", 8));
    assert_true(slk_id_valid("user:42.x_y-z", 13));

    static const char *const bad[] = {"a/b",  "a b",         "a\tb", "a\\b", "a@b",
                                      "a%2F", "caf\xc3\xa9", "a\nb", "../x", "a+b"};
    for (size_t i = 0; i < SLK_ARRAY_SIZE(bad); i++) {
        if (slk_id_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(slk_id_valid("ab\0c", 4));
    /* len is honoured. */
    assert_true(slk_id_valid("ab/c", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_format_version_variant),
        cmocka_unit_test(test_uuid_v7_time_ordered),
        cmocka_unit_test(test_uuid_bytes_round_trip),
        cmocka_unit_test(test_uuid_valid),
        cmocka_unit_test(test_random_token),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_small_requests_come_from_a_block_that_forgets_them),
        cmocka_unit_test(test_values_across_blocks_never_repeat),
        cmocka_unit_test(test_id_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
