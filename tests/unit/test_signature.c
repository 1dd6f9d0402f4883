#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "slk/auth.h"

#define SECRET "whsec-test"
#define T 1739610000LL
#define BODY "{\"event\":\"payment.succeeded\",\"booking_id\":\"b-1\"}"

/*
 * Computed independently with the openssl CLI:
 *   printf '%s' '1739610000.{"event":"payment.succeeded","booking_id":"b-1"}' |
 *     openssl dgst -sha256 -mac HMAC -macopt key:whsec-test -hex
 */
#define MAC "0ef642743d6081d3ca3b127f7bc0028f7332ec5d1fac163a8ae99ef38a66ed35"
#define MAC_UPPER "0EF642743D6081D3CA3B127F7BC0028F7332EC5D1FAC163A8AE99EF38A66ED35"
#define WRONG "1ef642743d6081d3ca3b127f7bc0028f7332ec5d1fac163a8ae99ef38a66ed35"

static const unsigned char *secret = (const unsigned char *)SECRET;
static const size_t secret_len = sizeof(SECRET) - 1;

static int verify_at(const char *header, const char *body, int64_t now)
{
    return slk_signature_verify(header, strlen(header), body, strlen(body), secret, secret_len, now);
}

static int verify(const char *header)
{
    return verify_at(header, BODY, T);
}

static void test_known_vector(void **state)
{
    (void)state;
    assert_int_equal(verify("t=1739610000,v1=" MAC), 0);

    char out[96];
    assert_int_equal(slk_signature_make(out, sizeof(out), BODY, strlen(BODY), secret, secret_len, T), 0);
    assert_string_equal(out, "t=1739610000,v1=" MAC);
}

static void test_make_verify_round_trip(void **state)
{
    (void)state;
    char out[96];
    static const char body[] = "binary\0body\xff with a NUL";

    assert_int_equal(slk_signature_make(out, sizeof(out), body, sizeof(body), secret, secret_len, 5), 0);
    assert_int_equal(slk_signature_verify(out, strlen(out), body, sizeof(body), secret, secret_len, 5), 0);
    /* The NUL and what follows it are signed too. */
    assert_int_equal(slk_signature_verify(out, strlen(out), body, 6, secret, secret_len, 5), SLK_EAUTH);

    assert_int_equal(slk_signature_make(out, sizeof(out), "", 0, secret, secret_len, T), 0);
    assert_int_equal(slk_signature_verify(out, strlen(out), "", 0, secret, secret_len, T), 0);
    assert_int_equal(slk_signature_verify(out, strlen(out), NULL, 0, secret, secret_len, T), 0);
}

static void test_make_checks_its_buffer(void **state)
{
    (void)state;
    char out[96];
    size_t need = strlen("t=1739610000,v1=" MAC) + 1;
    assert_int_not_equal(slk_signature_make(out, need - 1, BODY, strlen(BODY), secret, secret_len, T), 0);
    assert_int_equal(slk_signature_make(out, need, BODY, strlen(BODY), secret, secret_len, T), 0);
    assert_int_not_equal(slk_signature_make(out, sizeof(out), BODY, strlen(BODY), secret, secret_len, -1), 0);
    assert_int_not_equal(slk_signature_make(out, sizeof(out), BODY, strlen(BODY), secret, 0, T), 0);
}

static void test_wrong_secret_body_or_t(void **state)
{
    (void)state;
    static const unsigned char other[] = "whsec-tesT";
    const char *h = "t=1739610000,v1=" MAC;
    assert_int_equal(slk_signature_verify(h, strlen(h), BODY, strlen(BODY), other, sizeof(other) - 1, T), SLK_EAUTH);
    assert_int_equal(slk_signature_verify(h, strlen(h), BODY, strlen(BODY), secret, 0, T), SLK_EAUTH);
    assert_int_equal(verify_at(h, BODY " ", T), SLK_EAUTH);
    assert_int_equal(verify_at(h, "{\"event\":\"payment.succeeded\",\"booking_id\":\"b-2\"}", T), SLK_EAUTH);
    /* t is signed: moving it (to dodge the replay window) breaks the MAC. */
    assert_int_equal(verify("t=1739610001,v1=" MAC), SLK_EAUTH);
    /* t is signed as written, so a reformatted t is a different message. */
    assert_int_equal(verify("t=01739610000,v1=" MAC), SLK_EAUTH);
    assert_int_equal(verify("t=1739610000,v1=" WRONG), SLK_EAUTH);
}

static void test_replay_window(void **state)
{
    (void)state;
    const char *h = "t=1739610000,v1=" MAC;
    assert_int_equal(verify_at(h, BODY, T + 300), 0);
    assert_int_equal(verify_at(h, BODY, T - 300), 0);
    assert_int_equal(verify_at(h, BODY, T + 301), SLK_EEXPIRED);
    assert_int_equal(verify_at(h, BODY, T - 301), SLK_EEARLY);
    assert_int_equal(verify_at(h, BODY, T + 86400 * 365), SLK_EEXPIRED);
    assert_int_equal(verify_at(h, BODY, INT64_MAX), SLK_EEXPIRED);
    assert_int_equal(verify_at(h, BODY, INT64_MIN), SLK_EEARLY);

    /* A forged signature is an authentication failure whatever its age. */
    assert_int_equal(verify_at("t=1739610000,v1=" WRONG, BODY, T + 301), SLK_EAUTH);
    assert_int_equal(verify_at("t=1739610000,v1=" WRONG, BODY, T - 301), SLK_EAUTH);
}

static void test_format_variants_accepted(void **state)
{
    (void)state;
    assert_int_equal(verify("v1=" MAC ",t=1739610000"), 0);
    assert_int_equal(verify("t=1739610000, v1=" MAC), 0);
    assert_int_equal(verify(" t=1739610000 ,\tv1=" MAC " "), 0);
    assert_int_equal(verify("t=1739610000,v1=" MAC_UPPER), 0);
    /* Several v1 values (secret rotation): any one matching is enough. */
    assert_int_equal(verify("t=1739610000,v1=" WRONG ",v1=" MAC), 0);
    assert_int_equal(verify("t=1739610000,v1=" MAC ",v1=" WRONG), 0);
    assert_int_equal(verify("v1=" WRONG ",t=1739610000,v1=" MAC), 0);
    assert_int_equal(verify("t=1739610000,v1=" WRONG ",v1=" WRONG), SLK_EAUTH);
    /* Other schemes are skipped. */
    assert_int_equal(verify("t=1739610000,v0=abcdef,v1=" MAC), 0);

    char h[1024];
    int n = snprintf(h, sizeof(h), "t=1739610000");
    for (int i = 0; i < 7; i++)
        n += snprintf(h + n, sizeof(h) - (size_t)n, ",v1=" WRONG);
    snprintf(h + n, sizeof(h) - (size_t)n, ",v1=" MAC);
    assert_int_equal(verify(h), 0); /* 8 values */
    snprintf(h, sizeof(h),
             "t=1739610000,v1=" WRONG ",v1=" WRONG ",v1=" WRONG ",v1=" WRONG ",v1=" WRONG ",v1=" WRONG ",v1=" WRONG
             ",v1=" WRONG ",v1=" MAC);
    assert_int_equal(verify(h), SLK_EAUTH); /* 9 values: too many */
}

static void test_malformed_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "garbage",
        "t=1739610000",                                                                     /* missing v1 */
        "v1=" MAC,                                                                          /* missing t */
        "t=,v1=" MAC,                                                                       /* empty t */
        "t=17396100x0,v1=" MAC,                                                             /* non-digit t */
        "t=-1739610000,v1=" MAC,                                                            /* negative t */
        "t=+1739610000,v1=" MAC,                                                            /* signed t */
        "t= 1739610000,v1=" MAC,                                                            /* space inside the item */
        "t=1739610000000,v1=" MAC,                                                          /* 13 digits */
        "t=1739610000,t=1739610000,v1=" MAC,                                                /* duplicate t */
        "t=1739610000,v1=" MAC "0",                                                         /* 65 hex */
        "t=1739610000,v1=0ef642743d6081d3ca3b127f7bc0028f7332ec5d1fac163a8ae99ef38a66ed3",  /* 63 */
        "t=1739610000,v1=0ef642743d6081d3ca3b127f7bc0028f7332ec5d1fac163a8ae99ef38a66ed3g", /* non-hex */
        "t=1739610000,v1=",                                                                 /* empty v1 */
        "t=1739610000,v1=" MAC ",",                                                         /* trailing comma */
        "t=1739610000,,v1=" MAC,                                                            /* empty item */
        ",t=1739610000,v1=" MAC,                                                            /* leading comma */
        "t=1739610000;v1=" MAC,                                                             /* wrong separator */
        "t:1739610000,v1=" MAC,                                                             /* no '=' */
        "T=1739610000,v1=" MAC,                                                             /* keys are lower case */
        "t=1739610000,V1=" MAC,
        "t=1739610000,v1=" MAC ",x y=1", /* junk item */
        "t=1739610000,v1=" MAC ",v0=",   /* junk item */
        "t=1739610000,v1 =" MAC,
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(bad); i++) {
        if (verify(bad[i]) != SLK_EAUTH)
            fail_msg("accepted \"%s\"", bad[i]);
    }

    /* An embedded NUL is junk, not the end of the header. */
    static const char nul[] = "t=1739610000,v1=" MAC "\0";
    assert_int_equal(slk_signature_verify(nul, sizeof(nul), BODY, strlen(BODY), secret, secret_len, T), SLK_EAUTH);
    /* header_len is honoured. */
    static const char longer[] = "t=1739610000,v1=" MAC ",junk";
    assert_int_equal(slk_signature_verify(longer, strlen(longer) - 5, BODY, strlen(BODY), secret, secret_len, T), 0);
    assert_int_equal(slk_signature_verify(NULL, 0, BODY, strlen(BODY), secret, secret_len, T), SLK_EAUTH);

    /* An overlong header is refused outright even if it contains a valid signature. */
    char big[2048];
    int n = snprintf(big, sizeof(big), "t=1739610000,v1=" MAC);
    while (n < 1100)
        n += snprintf(big + n, sizeof(big) - (size_t)n, ",v0=abcdef0123456789");
    assert_int_equal(verify(big), SLK_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vector),           cmocka_unit_test(test_make_verify_round_trip),
        cmocka_unit_test(test_make_checks_its_buffer), cmocka_unit_test(test_wrong_secret_body_or_t),
        cmocka_unit_test(test_replay_window),          cmocka_unit_test(test_format_variants_accepted),
        cmocka_unit_test(test_malformed_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
