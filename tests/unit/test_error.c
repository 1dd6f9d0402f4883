#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "slk/common.h"

static void test_every_code_has_its_own_message(void **state)
{
    (void)state;
    assert_string_equal(slk_strerror(SLK_OK), "success");
    assert_string_equal(slk_strerror(SLK_ETIMEDOUT), "timed out");
    assert_string_equal(slk_strerror(SLK_ENOMEM), "out of memory");
    for (int e = SLK__ERR_FIRST + 1; e < SLK__ERR_LAST; e++) {
        assert_true(e < 0);
        assert_string_not_equal(slk_strerror(e), "unknown error");
    }
    assert_string_equal(slk_strerror(SLK__ERR_LAST), "unknown error");
    assert_string_equal(slk_strerror(42), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_its_own_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
