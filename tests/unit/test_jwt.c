#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "slk/auth.h"
#include "slk/timeutil.h"

#define SECRET "slotlock-test-secret"
#define NOW 1700000000LL
#define FAR_EXP 4102444800LL /* 2100-01-01 */

/*
 * Computed independently with the openssl CLI:
 *   b64u() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
 *   H=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64u)
 *   P=$(printf '%s' '{"sub":"user-42","role":"instructor","exp":4102444800,"iat":1700000000}' | b64u)
 *   printf '%s' "$H.$P" | openssl dgst -sha256 -mac HMAC -macopt key:slotlock-test-secret -binary | b64u
 */
static const char vector[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c2VyLTQyIiwicm9sZSI6Imluc3RydWN0b3IiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0."
    "iqJylyXdj6URLn7IxIX0wPnAIwlffLVgcDLQsZUBGTM";

static const unsigned char *secret = (const unsigned char *)SECRET;
static const size_t secret_len = sizeof(SECRET) - 1;

/* base64url without padding, done the OpenSSL way to stay independent of jwt.c's encoder. */
static size_t b64u(const void *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[n] = '\0';
    return (size_t)n;
}

/* Builds header.payload.signature from raw JSON texts, signed with HS256 under key. */
static char *craft_with(const char *header, const char *payload, const char *key)
{
    size_t cap = 4 * (strlen(header) + strlen(payload)) / 3 + 128;
    char *tok = malloc(cap);
    assert_non_null(tok);
    size_t n = b64u(header, strlen(header), tok);
    tok[n++] = '.';
    n += b64u(payload, strlen(payload), tok + n);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)tok, n, mac, &mac_len));
    assert_int_equal(mac_len, 32);
    tok[n++] = '.';
    b64u(mac, mac_len, tok + n);
    return tok;
}

static char *craft(const char *header, const char *payload)
{
    return craft_with(header, payload, SECRET);
}

static const char hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static int verify_str(const char *tok, struct slk_identity *id)
{
    return slk_jwt_verify(tok, strlen(tok), secret, secret_len, NOW, id);
}

static int verify_crafted(const char *header, const char *payload)
{
    struct slk_identity id;
    char *tok = craft(header, payload);
    int rc = verify_str(tok, &id);
    free(tok);
    return rc;
}

static int verify_claims(const char *payload)
{
    return verify_crafted(hs256, payload);
}

static void test_known_vector_verifies(void **state)
{
    (void)state;
    struct slk_identity id;
    assert_int_equal(verify_str(vector, &id), 0);
    assert_string_equal(id.sub, "user-42");
    assert_int_equal(id.role, SLK_ROLE_INSTRUCTOR);
    assert_int_equal(id.exp, FAR_EXP);

    /* Our crafting helper agrees with the CLI, so crafted tokens below are well-formed. */
    char *tok = craft(hs256, "{\"sub\":\"user-42\",\"role\":\"instructor\",\"exp\":4102444800,\"iat\":1700000000}");
    assert_string_equal(tok, vector);
    free(tok);
}

static void test_sign_matches_known_vector(void **state)
{
    (void)state;
    /* Pin iat: shift the clock so that "now" is mid-second at NOW. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t real = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    slk_clock_set_offset_ms(NOW * 1000 + 500 - real);
    char *tok = slk_jwt_sign("user-42", SLK_ROLE_INSTRUCTOR, FAR_EXP, secret, secret_len);
    slk_clock_set_offset_ms(0);
    assert_non_null(tok);
    assert_string_equal(tok, vector);
    free(tok);
}

static void test_sign_verify_round_trip(void **state)
{
    (void)state;
    static const enum slk_role roles[] = {SLK_ROLE_STUDENT, SLK_ROLE_INSTRUCTOR, SLK_ROLE_ADMIN};
    for (size_t i = 0; i < SLK_ARRAY_SIZE(roles); i++) {
        char *tok = slk_jwt_sign("stu.dent_1:x-y", roles[i], NOW + 60, secret, secret_len);
        assert_non_null(tok);
        struct slk_identity id;
        memset(&id, 0, sizeof(id));
        assert_int_equal(verify_str(tok, &id), 0);
        assert_string_equal(id.sub, "stu.dent_1:x-y");
        assert_int_equal(id.role, roles[i]);
        assert_int_equal(id.exp, NOW + 60);
        free(tok);
    }

    char sub64[65];
    memset(sub64, 'a', 64);
    sub64[64] = '\0';
    char *tok = slk_jwt_sign(sub64, SLK_ROLE_ADMIN, NOW + 1, secret, secret_len);
    assert_non_null(tok);
    struct slk_identity id;
    assert_int_equal(verify_str(tok, &id), 0);
    assert_string_equal(id.sub, sub64);
    free(tok);
}

static void test_sign_refuses_bad_input(void **state)
{
    (void)state;
    assert_null(slk_jwt_sign("a/b", SLK_ROLE_STUDENT, FAR_EXP, secret, secret_len));
    assert_null(slk_jwt_sign("", SLK_ROLE_STUDENT, FAR_EXP, secret, secret_len));
    assert_null(slk_jwt_sign(NULL, SLK_ROLE_STUDENT, FAR_EXP, secret, secret_len));
    assert_null(slk_jwt_sign("u", SLK_ROLE_NONE, FAR_EXP, secret, secret_len));
    assert_null(slk_jwt_sign("u", (enum slk_role)42, FAR_EXP, secret, secret_len));
    assert_null(slk_jwt_sign("u", SLK_ROLE_STUDENT, FAR_EXP, secret, 0));
}

static void test_wrong_secret(void **state)
{
    (void)state;
    static const unsigned char other[] = "slotlock-test-secreT";
    assert_int_equal(slk_jwt_verify(vector, strlen(vector), other, sizeof(other) - 1, NOW, NULL), SLK_EAUTH);
    /* A prefix of the right key is a different key. */
    assert_int_equal(slk_jwt_verify(vector, strlen(vector), secret, secret_len - 1, NOW, NULL), SLK_EAUTH);
    assert_int_equal(slk_jwt_verify(vector, strlen(vector), secret, 0, NOW, NULL), SLK_EAUTH);

    char *tok = craft_with(hs256, "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800}", "attacker");
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    free(tok);
}

static void test_tampered_token(void **state)
{
    (void)state;
    /* Splice an admin payload between the vector's header and signature. */
    char payload[128];
    const char *claims = "{\"sub\":\"user-42\",\"role\":\"admin\",\"exp\":4102444800,\"iat\":1700000000}";
    b64u(claims, strlen(claims), payload);
    char tok[512];
    const char *dot1 = strchr(vector, '.');
    const char *dot2 = strchr(dot1 + 1, '.');
    snprintf(tok, sizeof(tok), "%.*s.%s%s", (int)(dot1 - vector), vector, payload, dot2);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);

    /* Flip every character of the vector in turn: none may still verify. */
    char copy[sizeof(vector)];
    for (size_t i = 0; i < sizeof(vector) - 1; i++) {
        memcpy(copy, vector, sizeof(vector));
        if (copy[i] == '.')
            continue;
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        if (verify_str(copy, NULL) != SLK_EAUTH)
            fail_msg("tampered at %zu still verifies", i);
    }
}

static void test_alg_none_and_others_refused(void **state)
{
    (void)state;
    const char *claims = "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800}";
    char tok[512];
    char h[128];
    char p[128];

    /* The classic: alg none with an empty signature. */
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    b64u(none, strlen(none), h);
    b64u(claims, strlen(claims), p);
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%s.%s", h, p);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);

    /* Even with a correct HMAC over the bytes, only alg HS256 is accepted. */
    assert_int_equal(verify_crafted(none, claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256 \"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"RS256\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":null}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":[\"HS256\"]}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"typ\":\"JWT\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\",\"typ\":1}", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("[\"HS256\"]", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("\"HS256\"", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\"", claims), SLK_EAUTH);
    assert_int_equal(verify_crafted("", claims), SLK_EAUTH);

    /* typ is optional, and unknown members such as kid are ignored. */
    assert_int_equal(verify_crafted("{\"alg\":\"HS256\"}", claims), 0);
    assert_int_equal(verify_crafted("{\"kid\":\"k1\",\"alg\":\"HS256\"}", claims), 0);
}

static void test_expiry(void **state)
{
    (void)state;
    char claims[128];
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"student\",\"exp\":%lld}", NOW);
    assert_int_equal(verify_claims(claims), SLK_EEXPIRED);
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"student\",\"exp\":%lld}", NOW - 3600);
    assert_int_equal(verify_claims(claims), SLK_EEXPIRED);
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"student\",\"exp\":%lld}", NOW + 1);
    assert_int_equal(verify_claims(claims), 0);

    /* The vector expires in 2100. */
    assert_int_equal(slk_jwt_verify(vector, strlen(vector), secret, secret_len, FAR_EXP, NULL), SLK_EEXPIRED);
    assert_int_equal(slk_jwt_verify(vector, strlen(vector), secret, secret_len, FAR_EXP - 1, NULL), 0);

    /* A signed token for which sign() was given a past exp is expired at once. */
    char *tok = slk_jwt_sign("u", SLK_ROLE_STUDENT, NOW - 1, secret, secret_len);
    assert_non_null(tok);
    assert_int_equal(verify_str(tok, NULL), SLK_EEXPIRED);
    free(tok);
}

static void test_exp_must_be_an_integer(void **state)
{
    (void)state;
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\"}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":\"4102444800\"}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":4102444800.0}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":4.1e9}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":null}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":true}"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":99999999999999999999999}"), SLK_EAUTH);
    /* Expired and malformed: malformed wins, so SLK_EEXPIRED always means "was valid". */
    assert_int_equal(verify_claims("{\"sub\":\"a/b\",\"role\":\"student\",\"exp\":1}"), SLK_EAUTH);
}

static void test_nbf(void **state)
{
    (void)state;
    char claims[160];
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"student\",\"exp\":%lld,\"nbf\":%lld}", FAR_EXP, NOW);
    assert_int_equal(verify_claims(claims), 0);
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"student\",\"exp\":%lld,\"nbf\":%lld}", FAR_EXP,
             NOW + 1);
    assert_int_equal(verify_claims(claims), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"student\",\"exp\":4102444800,\"nbf\":\"0\"}"), SLK_EAUTH);
}

static void test_bad_role(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"sub\":\"u\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"superuser\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"Admin\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"admin \",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"none\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":3,\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":[\"admin\"],\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"admin\\u0000x\",\"exp\":4102444800}",
        "{\"sub\":\"u\",\"role\":\"student\",\"role\":\"admin\",\"exp\":4102444800}",
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(bad); i++) {
        if (verify_claims(bad[i]) != SLK_EAUTH)
            fail_msg("accepted %s", bad[i]);
    }
}

static void test_bad_sub(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"a/b\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"a b\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"caf\\u00e9\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"u\\u0000\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":42,\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":null,\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"role\":\"admin\","
        "\"exp\":4102444800}", /* 65 */
    };
    for (size_t i = 0; i < SLK_ARRAY_SIZE(bad); i++) {
        if (verify_claims(bad[i]) != SLK_EAUTH)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(verify_claims("{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                                   "\"role\":\"admin\",\"exp\":4102444800}"),
                     0);
}

static void test_payload_must_be_an_object(void **state)
{
    (void)state;
    assert_int_equal(verify_claims("[]"), SLK_EAUTH);
    assert_int_equal(verify_claims("\"x\""), SLK_EAUTH);
    assert_int_equal(verify_claims(""), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800"), SLK_EAUTH);
    assert_int_equal(verify_claims("{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800} {}"), SLK_EAUTH);
}

static void test_segments(void **state)
{
    (void)state;
    char tok[512];
    const char *last_dot = strrchr(vector, '.');

    snprintf(tok, sizeof(tok), "%.*s", (int)(last_dot - vector), vector); /* two segments */
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%s.", vector); /* four segments, last empty */
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%s.eyJ9", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%.*s.%s", (int)(last_dot - vector), vector, vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    assert_int_equal(verify_str("", NULL), SLK_EAUTH);
    assert_int_equal(verify_str("..", NULL), SLK_EAUTH);
    assert_int_equal(verify_str("...", NULL), SLK_EAUTH);
    assert_int_equal(verify_str("abc", NULL), SLK_EAUTH);
    assert_int_equal(slk_jwt_verify(NULL, 0, secret, secret_len, NOW, NULL), SLK_EAUTH);

    /* len is honoured: bytes after len are not part of the token. */
    snprintf(tok, sizeof(tok), "%s.junk", vector);
    assert_int_equal(slk_jwt_verify(tok, strlen(vector), secret, secret_len, NOW, NULL), 0);
}

static void test_encoding_is_strict(void **state)
{
    (void)state;
    char tok[512];
    const char *dot1 = strchr(vector, '.');
    size_t hlen = (size_t)(dot1 - vector);

    /* Padding anywhere. */
    snprintf(tok, sizeof(tok), "%s=", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%.*s=%s", (int)hlen, vector, dot1);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);

    /* Trailing garbage or whitespace. */
    snprintf(tok, sizeof(tok), "%s ", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%s\n", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), " %s", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    assert_int_equal(slk_jwt_verify(vector, sizeof(vector), secret, secret_len, NOW, NULL), SLK_EAUTH); /* NUL */

    /* The signature must be 32 bytes: one char less or more changes its length. */
    snprintf(tok, sizeof(tok), "%.*s", (int)strlen(vector) - 1, vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    snprintf(tok, sizeof(tok), "%sAAAA", vector);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);

    /*
     * The last character of a 43-character signature carries two spare bits;
     * 'M' -> 'N' decodes to the same 32 bytes if those bits were ignored.
     */
    memcpy(tok, vector, sizeof(vector));
    assert_int_equal(tok[strlen(tok) - 1], 'M');
    tok[strlen(tok) - 1] = 'N';
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);

    /* Standard base64 characters are not base64url: find a token that has '-' or '_' and swap them. */
    char *good = NULL;
    for (int i = 0; good == NULL && i < 1000; i++) {
        char claims[96];
        snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800,\"n\":%d}", i);
        good = craft(hs256, claims);
        if (strpbrk(good, "-_") == NULL) {
            free(good);
            good = NULL;
        }
    }
    assert_non_null(good);
    assert_int_equal(verify_str(good, NULL), 0);
    for (char *c = good; *c != '\0'; c++) {
        if (*c == '-')
            *c = '+';
        else if (*c == '_')
            *c = '/';
    }
    assert_int_equal(verify_str(good, NULL), SLK_EAUTH);
    free(good);
}

static void test_length_cap(void **state)
{
    (void)state;
    char payload[4096];
    char filler[3200];

    /* A legitimately signed token just under the cap verifies... */
    memset(filler, 'x', 2900);
    filler[2900] = '\0';
    snprintf(payload, sizeof(payload), "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800,\"pad\":\"%s\"}", filler);
    char *tok = craft(hs256, payload);
    assert_true(strlen(tok) < 4096);
    assert_int_equal(verify_str(tok, NULL), 0);
    free(tok);

    /* ...and one over it is refused without further ado. */
    memset(filler, 'x', 3100);
    filler[3100] = '\0';
    snprintf(payload, sizeof(payload), "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":4102444800,\"pad\":\"%s\"}", filler);
    tok = craft(hs256, payload);
    assert_true(strlen(tok) > 4096);
    assert_int_equal(verify_str(tok, NULL), SLK_EAUTH);
    free(tok);
}

static void test_role_names(void **state)
{
    (void)state;
    assert_string_equal(slk_role_name(SLK_ROLE_STUDENT), "student");
    assert_string_equal(slk_role_name(SLK_ROLE_INSTRUCTOR), "instructor");
    assert_string_equal(slk_role_name(SLK_ROLE_ADMIN), "admin");
    assert_int_equal(slk_role_parse("student"), SLK_ROLE_STUDENT);
    assert_int_equal(slk_role_parse("instructor"), SLK_ROLE_INSTRUCTOR);
    assert_int_equal(slk_role_parse("admin"), SLK_ROLE_ADMIN);
    assert_int_equal(slk_role_parse("ADMIN"), SLK_ROLE_NONE);
    assert_int_equal(slk_role_parse(""), SLK_ROLE_NONE);
    assert_int_equal(slk_role_parse(NULL), SLK_ROLE_NONE);
    assert_int_equal(slk_role_parse(slk_role_name(SLK_ROLE_NONE)), SLK_ROLE_NONE);
}

/* RFC 4231 test case 1; the keyed context gives the same MAC every time and over split input. */
static void test_hmac_rfc4231_and_reuse(void **state)
{
    (void)state;
    static const unsigned char want[SLK_HMAC_LEN] = {0xb0, 0x34, 0x4c, 0x61, 0xd8, 0xdb, 0x38, 0x53, 0x5c, 0xa8, 0xaf,
                                                     0xce, 0xaf, 0x0b, 0xf1, 0x2b, 0x88, 0x1d, 0xc2, 0x00, 0xc9, 0x83,
                                                     0x3d, 0xa7, 0x26, 0xe9, 0x37, 0x6c, 0x2e, 0x32, 0xcf, 0xf7};
    unsigned char key[20], mac[SLK_HMAC_LEN];
    memset(key, 0x0b, sizeof(key));
    struct slk_hmac *h = slk_hmac_new(key, sizeof(key));
    assert_non_null(h);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(slk_hmac_sha256(h, "Hi There", 8, NULL, 0, mac), 0);
        assert_memory_equal(mac, want, sizeof(want));
    }
    assert_int_equal(slk_hmac_sha256(h, "Hi ", 3, "There", 5, mac), 0);
    assert_memory_equal(mac, want, sizeof(want));
    slk_hmac_free(h);
    assert_null(slk_hmac_new(key, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231_and_reuse),
        cmocka_unit_test(test_known_vector_verifies),
        cmocka_unit_test(test_sign_matches_known_vector),
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_sign_refuses_bad_input),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_tampered_token),
        cmocka_unit_test(test_alg_none_and_others_refused),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_exp_must_be_an_integer),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_bad_role),
        cmocka_unit_test(test_bad_sub),
        cmocka_unit_test(test_payload_must_be_an_object),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_encoding_is_strict),
        cmocka_unit_test(test_length_cap),
        cmocka_unit_test(test_role_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
