#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "slk/token_cache.h"

static struct slk_identity identity(const char *sub, int64_t exp)
{
    struct slk_identity id = {.role = SLK_ROLE_STUDENT, .exp = exp};
    strcpy(id.sub, sub);
    return id;
}

static void test_hit_only_for_the_same_bytes(void **state)
{
    (void)state;
    struct slk_token_cache *c = slk_token_cache_create();
    assert_non_null(c);
    const char *tok = "aaa.bbb.signature-one";
    struct slk_identity id = identity("s-1", 2000), out;
    assert_false(slk_token_cache_get(c, tok, strlen(tok), 1000, &out));
    slk_token_cache_put(c, tok, strlen(tok), &id);
    assert_true(slk_token_cache_get(c, tok, strlen(tok), 1000, &out));
    assert_string_equal(out.sub, "s-1");
    assert_int_equal(out.role, SLK_ROLE_STUDENT);
    /* A prefix, or the same length with another byte, is not the verified token. */
    assert_false(slk_token_cache_get(c, tok, strlen(tok) - 1, 1000, &out));
    const char *forged = "aaa.bbX.signature-one";
    assert_false(slk_token_cache_get(c, forged, strlen(forged), 1000, &out));
    slk_token_cache_free(c);
}

static void test_expiry_is_checked_on_every_hit(void **state)
{
    (void)state;
    struct slk_token_cache *c = slk_token_cache_create();
    const char *tok = "aaa.bbb.ccc";
    struct slk_identity id = identity("s-2", 2000), out;
    slk_token_cache_put(c, tok, strlen(tok), &id);
    assert_true(slk_token_cache_get(c, tok, strlen(tok), 1999, &out));
    assert_false(slk_token_cache_get(c, tok, strlen(tok), 2000, &out));
    slk_token_cache_free(c);
}

static void test_overlong_tokens_are_not_cached(void **state)
{
    (void)state;
    struct slk_token_cache *c = slk_token_cache_create();
    static char tok[SLK_TOKEN_CACHE_MAX_LEN + 1];
    memset(tok, 'x', sizeof(tok));
    struct slk_identity id = identity("s-3", 2000), out;
    slk_token_cache_put(c, tok, sizeof(tok), &id);
    assert_false(slk_token_cache_get(c, tok, sizeof(tok), 1000, &out));
    slk_token_cache_free(c);
}

/* A stampede's thousands of students are each verified once: every token stays, none answers for another. */
static void test_thousands_of_tokens_stay(void **state)
{
    (void)state;
    enum { STUDENTS = 4000 };
    struct slk_token_cache *c = slk_token_cache_create();
    char tok[160], sub[32];
    for (int i = 0; i < STUDENTS; i++) {
        snprintf(tok, sizeof(tok), SLK_JWT_HS256_HEADER ".eyJzdWIiOiJzLSVkIn0.sig-%08x-%d", (unsigned)i * 2654435761u,
                 i);
        snprintf(sub, sizeof(sub), "s-%d", i);
        struct slk_identity id = identity(sub, 2000);
        slk_token_cache_put(c, tok, strlen(tok), &id);
    }
    for (int i = 0; i < STUDENTS; i++) {
        snprintf(tok, sizeof(tok), SLK_JWT_HS256_HEADER ".eyJzdWIiOiJzLSVkIn0.sig-%08x-%d", (unsigned)i * 2654435761u,
                 i);
        snprintf(sub, sizeof(sub), "s-%d", i);
        struct slk_identity out;
        assert_true(slk_token_cache_get(c, tok, strlen(tok), 1000, &out));
        assert_string_equal(out.sub, sub);
    }
    slk_token_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_only_for_the_same_bytes),
        cmocka_unit_test(test_expiry_is_checked_on_every_hit),
        cmocka_unit_test(test_overlong_tokens_are_not_cached),
        cmocka_unit_test(test_thousands_of_tokens_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
