#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "idempotency_internal.h"

static void test_key_is_1_to_255_printable_bytes(void **state)
{
    (void)state;
    char key[SLK_IDEM_KEY_MAX + 2];
    memset(key, 'a', sizeof(key));
    assert_false(slk__idem_key_valid(key, 0));
    assert_true(slk__idem_key_valid(key, 1));
    assert_true(slk__idem_key_valid(key, SLK_IDEM_KEY_MAX));
    assert_false(slk__idem_key_valid(key, SLK_IDEM_KEY_MAX + 1));
    assert_true(slk__idem_key_valid("!~{}:", 5));
    assert_false(slk__idem_key_valid("a b", 3));
    assert_false(slk__idem_key_valid("a\tb", 3));
    assert_false(slk__idem_key_valid("a\x7f", 2));
    assert_false(slk__idem_key_valid("caf\xc3\xa9", 5));
    /* A NUL inside the given length is a control byte too, not an early end. */
    assert_false(slk__idem_key_valid("ab\0c", 4));
}

static void test_location_found_case_insensitively(void **state)
{
    (void)state;
    const char *v = NULL;
    size_t n = 0;
    const char *h = "ETag: \"x\"\r\nlOcAtIoN: /api/v1/bookings/42\r\nX-Other: y\r\n";
    assert_true(slk__idem_find_location(h, strlen(h), &v, &n));
    assert_int_equal(n, strlen("/api/v1/bookings/42"));
    assert_memory_equal(v, "/api/v1/bookings/42", n);
    const char *unterminated = "Location:/x";
    assert_true(slk__idem_find_location(unterminated, strlen(unterminated), &v, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(v, "/x", 2);
}

static void test_location_absent(void **state)
{
    (void)state;
    const char *v = NULL;
    size_t n = 0;
    assert_false(slk__idem_find_location(NULL, 0, &v, &n));
    const char *h = "X-Location: /no\r\nContent-Location: /no\r\nLocationX: /no\r\n";
    assert_false(slk__idem_find_location(h, strlen(h), &v, &n));
    /* Only the first len bytes count. */
    const char *cut = "Retry-After: 1\r\nLocation: /late\r\n";
    assert_false(slk__idem_find_location(cut, strlen("Retry-After: 1\r\n"), &v, &n));
}

static void request(struct slk_request *req, enum slk_method m, const char *path, const char *query, char *body)
{
    memset(req, 0, sizeof(*req));
    req->method = m;
    req->path = (struct slk_str){path, strlen(path)};
    req->query = (struct slk_str){query, strlen(query)};
    req->body = body;
    req->body_len = strlen(body);
}

static void test_fingerprint_covers_method_path_query_body(void **state)
{
    (void)state;
    char body[] = "{\"a\":1}", other[] = "{\"a\":2}";
    struct slk_request req;
    char fp[SLK_IDEM_FP_HEX], fp2[SLK_IDEM_FP_HEX];
    request(&req, SLK_METHOD_POST, "/api/v1/bookings", "", body);
    assert_int_equal(slk__idem_fingerprint(&req, fp), 0);
    assert_string_equal(fp, "23d330c7450da6fa4926f15273e5cc84c03929159feb0a051769e85c80cff6ed");
    request(&req, SLK_METHOD_POST, "/api/v1/bookings", "", other);
    assert_int_equal(slk__idem_fingerprint(&req, fp2), 0);
    assert_string_not_equal(fp, fp2);
    request(&req, SLK_METHOD_POST, "/api/v1/bookings/x/cancel", "", body);
    assert_int_equal(slk__idem_fingerprint(&req, fp2), 0);
    assert_string_not_equal(fp, fp2);
    request(&req, SLK_METHOD_PUT, "/api/v1/bookings", "", body);
    assert_int_equal(slk__idem_fingerprint(&req, fp2), 0);
    assert_string_not_equal(fp, fp2);
    request(&req, SLK_METHOD_POST, "/api/v1/bookings", "a=1", body);
    assert_int_equal(slk__idem_fingerprint(&req, fp2), 0);
    assert_string_not_equal(fp, fp2);
}

static void test_lease_outlives_the_slowest_handler(void **state)
{
    (void)state;
    struct slk_config cfg = {.request_timeout_ms = 10000, .pg_timeout_ms = 5000, .redis_timeout_ms = 1000};
    assert_int_equal(slk__idem_lease_ms(&cfg), SLK_IDEM_MIN_LEASE_MS);
    cfg.pg_timeout_ms = 20000; /* a reschedule: up to 4 queries and 6 Redis calls in a row */
    assert_int_equal(slk__idem_lease_ms(&cfg), 4 * 20000 + 6 * 1000);
    cfg.request_timeout_ms = 100000;
    assert_int_equal(slk__idem_lease_ms(&cfg), 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_1_to_255_printable_bytes),
        cmocka_unit_test(test_location_found_case_insensitively),
        cmocka_unit_test(test_location_absent),
        cmocka_unit_test(test_fingerprint_covers_method_path_query_body),
        cmocka_unit_test(test_lease_outlives_the_slowest_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
