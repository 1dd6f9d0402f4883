/*
 * Method + path matching: literals, {params}, 404 versus 405 with Allow,
 * trailing slashes, HEAD served by GET, literal precedence.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "slk/router.h"

enum { R_LIVEZ = 1, R_INSTR_PUT, R_INSTR_GET, R_BOOK_CREATE, R_BOOK_GET, R_BOOK_CANCEL, R_BOOK_NEW, R_ROOT };

static void h_a(struct slk_request *req)
{
    (void)req;
}

static void h_b(struct slk_request *req)
{
    (void)req;
}

static int setup(void **state)
{
    struct slk_router *r = slk_router_create();
    assert_non_null(r);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/livez", h_a, R_LIVEZ), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_PUT, "/api/v1/instructors/{id}", h_b, R_INSTR_PUT), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/api/v1/instructors/{id}", h_a, R_INSTR_GET), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_POST, "/api/v1/bookings", h_b, R_BOOK_CREATE), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/api/v1/bookings/{uuid}", h_a, R_BOOK_GET), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_POST, "/api/v1/bookings/{uuid}/cancel", h_b, R_BOOK_CANCEL), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/api/v1/bookings/new", h_b, R_BOOK_NEW), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/", h_b, R_ROOT), 0);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    slk_router_free(*state);
    return 0;
}

static enum slk_route_result match(void **state, enum slk_method m, const char *path, struct slk_route_match *out)
{
    return slk_router_match(*state, m, path, strlen(path), out);
}

static void assert_param(const struct slk_route_match *mt, size_t i, const char *expected)
{
    assert_true(i < mt->num_params);
    assert_int_equal(mt->params[i].len, strlen(expected));
    assert_memory_equal(mt->params[i].ptr, expected, mt->params[i].len);
}

static void test_literal_match(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_GET, "/livez", &mt), SLK_ROUTE_FOUND);
    assert_ptr_equal(mt.handler, h_a);
    assert_int_equal(mt.route_id, R_LIVEZ);
    assert_int_equal(mt.num_params, 0);
    assert_int_equal(match(state, SLK_METHOD_POST, "/api/v1/bookings", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_BOOK_CREATE);
    assert_int_equal(match(state, SLK_METHOD_GET, "/", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_ROOT);
    /* Literal comparison is exact: no prefix, no case folding. */
    assert_int_equal(match(state, SLK_METHOD_GET, "/live", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_GET, "/livezz", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_GET, "/LIVEZ", &mt), SLK_ROUTE_NOT_FOUND);
}

static void test_params(void **state)
{
    struct slk_route_match mt;
    const char *path = "/api/v1/bookings/0b4c9a3e-1111-4222-8333-944455556666/cancel";
    assert_int_equal(match(state, SLK_METHOD_POST, path, &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_BOOK_CANCEL);
    assert_int_equal(mt.num_params, 1);
    assert_param(&mt, 0, "0b4c9a3e-1111-4222-8333-944455556666");
    /* Params point into the caller's path. */
    assert_ptr_equal(mt.params[0].ptr, path + strlen("/api/v1/bookings/"));
    assert_int_equal(match(state, SLK_METHOD_PUT, "/api/v1/instructors/inst.42", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_INSTR_PUT);
    assert_param(&mt, 0, "inst.42");
    /* A parameter never spans segments. */
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/instructors/a/b", &mt), SLK_ROUTE_NOT_FOUND);
}

static void test_param_must_be_non_empty(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/instructors/", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_POST, "/api/v1/bookings//cancel", &mt), SLK_ROUTE_NOT_FOUND);
}

static void test_not_found(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_GET, "/nope", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(mt.route_id, -1);
    assert_null(mt.handler);
    assert_int_equal(match(state, SLK_METHOD_GET, "", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_GET, "livez", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1", &mt), SLK_ROUTE_NOT_FOUND);
}

static void test_method_not_allowed_lists_allow(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_DELETE, "/api/v1/instructors/x", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(mt.allow, "GET, PUT");
    assert_null(mt.handler);
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/bookings", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(mt.allow, "POST");
    assert_int_equal(match(state, SLK_METHOD_POST, "/livez", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(mt.allow, "GET");
    assert_int_equal(match(state, SLK_METHOD_OTHER, "/livez", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
    /* A literal route and a parameter route both matching contribute their methods. */
    assert_int_equal(match(state, SLK_METHOD_PUT, "/api/v1/bookings/new", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(mt.allow, "GET");
}

static void test_trailing_slash_is_another_path(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_GET, "/livez/", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_POST, "/api/v1/bookings/", &mt), SLK_ROUTE_NOT_FOUND);
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/bookings/abc/", &mt), SLK_ROUTE_NOT_FOUND);
}

static void test_head_uses_get(void **state)
{
    struct slk_route_match mt;
    assert_int_equal(match(state, SLK_METHOD_HEAD, "/livez", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_LIVEZ);
    assert_int_equal(match(state, SLK_METHOD_HEAD, "/api/v1/bookings/b1", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_BOOK_GET);
    assert_param(&mt, 0, "b1");
    /* No GET, no HEAD. */
    assert_int_equal(match(state, SLK_METHOD_HEAD, "/api/v1/bookings", &mt), SLK_ROUTE_METHOD_NOT_ALLOWED);
}

static void test_explicit_head_wins(void **state)
{
    (void)state;
    struct slk_router *r = slk_router_create();
    struct slk_route_match mt;
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/x", h_a, 1), 0);
    assert_int_equal(slk_router_add(r, SLK_METHOD_HEAD, "/x", h_b, 2), 0);
    assert_int_equal(slk_router_match(r, SLK_METHOD_HEAD, "/x", 2, &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, 2);
    assert_int_equal(slk_router_match(r, SLK_METHOD_GET, "/x", 2, &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, 1);
    slk_router_free(r);
}

static void test_literal_beats_param(void **state)
{
    struct slk_route_match mt;
    /* "/bookings/new" was registered after "/bookings/{uuid}" and still wins. */
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/bookings/new", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_BOOK_NEW);
    assert_int_equal(mt.num_params, 0);
    assert_int_equal(match(state, SLK_METHOD_GET, "/api/v1/bookings/old", &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_BOOK_GET);
}

static void test_path_length_is_respected(void **state)
{
    struct slk_route_match mt;
    /* Only path_len bytes count: a query left in the buffer does not change the match. */
    const char *buf = "/livez?x=1";
    assert_int_equal(slk_router_match(*state, SLK_METHOD_GET, buf, 6, &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.route_id, R_LIVEZ);
}

static void test_bad_patterns_are_refused(void **state)
{
    (void)state;
    struct slk_router *r = slk_router_create();
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "no-slash", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/a/{}", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/a/x{id}", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/a/{i{d}", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/{a}/{b}/{c}/{d}/{e}", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_OTHER, "/a", h_a, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/a", NULL, 1), SLK_EINVAL);
    assert_int_equal(slk_router_add(r, SLK_METHOD_GET, "/{a}/{b}/{c}/{d}", h_a, 1), 0);
    struct slk_route_match mt;
    assert_int_equal(slk_router_match(r, SLK_METHOD_GET, "/1/2/3/4", 8, &mt), SLK_ROUTE_FOUND);
    assert_int_equal(mt.num_params, 4);
    assert_param(&mt, 3, "4");
    slk_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_literal_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_param_must_be_non_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed_lists_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash_is_another_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_uses_get, setup, teardown),
        cmocka_unit_test(test_explicit_head_wins),
        cmocka_unit_test_setup_teardown(test_literal_beats_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_length_is_respected, setup, teardown),
        cmocka_unit_test(test_bad_patterns_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
