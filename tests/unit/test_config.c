#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "slk/config.h"
#include "slk/log.h"

#define JWT "0123456789abcdef-jwt"
#define HOOK "0123456789abcdef-hook"

static const char *const all_env[] = {
    "LISTEN",
    "REDIS_URL",
    "DATABASE_URL",
    "JWT_SECRET",
    "PAYMENT_WEBHOOK_SECRET",
    "HOLD_TTL_SECONDS",
    "WORKERS",
    "LOG_LEVEL",
    "AUTH_DISABLED",
    "MAX_HEADER_BYTES",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_MS",
    "IDLE_TIMEOUT_MS",
    "MAX_CONNECTIONS",
    "REDIS_TIMEOUT_MS",
    "PG_TIMEOUT_MS",
    "PG_POOL_SIZE",
    "DRAIN_TIMEOUT_MS",
    "MIGRATE",
};

struct run {
    struct slk_config cfg;
    bool help, version;
    char err[256];
};

/* Every test starts from a clean environment that holds just the two required secrets. */
static int reset_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_env) / sizeof(all_env[0]); i++)
        unsetenv(all_env[i]);
    setenv("JWT_SECRET", JWT, 1);
    setenv("PAYMENT_WEBHOOK_SECRET", HOOK, 1);
    return 0;
}

/* argv is NULL-terminated; argv[0] is the program name, parsing starts at 1. */
static int load(struct run *r, const char **argv)
{
    int argc = 0;

    while (argv != NULL && argv[argc] != NULL)
        argc++;
    memset(r, 0, sizeof(*r));
    return slk_config_load(&r->cfg, argc, (char **)argv, 1, &r->help, &r->version, r->err, sizeof(r->err));
}

#define ARGS(...) ((const char *[]){"slotlockd", __VA_ARGS__, NULL})
#define NO_ARGS ((const char *[]){"slotlockd", NULL})

static void expect_error(const char **argv, const char *needle)
{
    struct run r;

    assert_int_equal(load(&r, argv), SLK_EINVAL);
    if (strstr(r.err, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", r.err, needle);
    /* A failed load leaves nothing to free, and freeing again is harmless. */
    assert_null(r.cfg.listen_host);
    assert_null(r.cfg.jwt_secret);
    slk_config_free(&r.cfg);
}

static void test_defaults(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, NO_ARGS), SLK_OK);
    assert_false(r.help);
    assert_false(r.version);
    assert_string_equal(r.cfg.listen_host, "127.0.0.1");
    assert_int_equal(r.cfg.listen_port, 8080);
    assert_string_equal(r.cfg.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(r.cfg.database_url, "postgresql://postgres@127.0.0.1:5432/slotlock");
    assert_string_equal(r.cfg.jwt_secret, JWT);
    assert_string_equal(r.cfg.webhook_secret, HOOK);
    assert_int_equal(r.cfg.hold_ttl_seconds, 1800);
    assert_int_equal(r.cfg.workers, 1);
    assert_int_equal(r.cfg.log_level, SLK_LOG_INFO);
    assert_false(r.cfg.auth_disabled);
    assert_int_equal(r.cfg.max_header_bytes, SLK_DEFAULT_MAX_HEADER_BYTES);
    assert_int_equal(r.cfg.max_body_bytes, SLK_DEFAULT_MAX_BODY_BYTES);
    assert_int_equal(r.cfg.request_timeout_ms, SLK_DEFAULT_REQUEST_TIMEOUT_MS);
    assert_int_equal(r.cfg.idle_timeout_ms, SLK_DEFAULT_IDLE_TIMEOUT_MS);
    assert_int_equal(r.cfg.max_connections, SLK_DEFAULT_MAX_CONNECTIONS);
    assert_int_equal(r.cfg.redis_timeout_ms, SLK_DEFAULT_REDIS_TIMEOUT_MS);
    assert_int_equal(r.cfg.pg_timeout_ms, SLK_DEFAULT_PG_TIMEOUT_MS);
    assert_int_equal(r.cfg.pg_pool_size, SLK_DEFAULT_PG_POOL_SIZE);
    assert_int_equal(r.cfg.drain_timeout_ms, SLK_DEFAULT_DRAIN_TIMEOUT_MS);
    assert_true(r.cfg.migrate);
    slk_config_free(&r.cfg);
    assert_null(r.cfg.listen_host);
    assert_null(r.cfg.jwt_secret);
    slk_config_free(&r.cfg);
}

static void test_env_values(void **state)
{
    struct run r;

    (void)state;
    setenv("LISTEN", "0.0.0.0:9000", 1);
    setenv("REDIS_URL", "redis://10.0.0.2:6380", 1);
    setenv("DATABASE_URL", "postgresql://u:p@db/x", 1);
    setenv("HOLD_TTL_SECONDS", "600", 1);
    setenv("WORKERS", "8", 1);
    setenv("LOG_LEVEL", "debug", 1);
    setenv("MAX_HEADER_BYTES", "16384", 1);
    setenv("MAX_BODY_BYTES", "1024", 1);
    setenv("REQUEST_TIMEOUT_MS", "2500", 1);
    setenv("IDLE_TIMEOUT_MS", "30000", 1);
    setenv("MAX_CONNECTIONS", "500", 1);
    setenv("REDIS_TIMEOUT_MS", "200", 1);
    setenv("PG_TIMEOUT_MS", "3000", 1);
    setenv("PG_POOL_SIZE", "16", 1);
    setenv("DRAIN_TIMEOUT_MS", "0", 1);
    setenv("MIGRATE", "false", 1);
    assert_int_equal(load(&r, NO_ARGS), SLK_OK);
    assert_string_equal(r.cfg.listen_host, "0.0.0.0");
    assert_int_equal(r.cfg.listen_port, 9000);
    assert_string_equal(r.cfg.redis_url, "redis://10.0.0.2:6380");
    assert_string_equal(r.cfg.database_url, "postgresql://u:p@db/x");
    assert_int_equal(r.cfg.hold_ttl_seconds, 600);
    assert_int_equal(r.cfg.workers, 8);
    assert_int_equal(r.cfg.log_level, SLK_LOG_DEBUG);
    assert_int_equal(r.cfg.max_header_bytes, 16384);
    assert_int_equal(r.cfg.max_body_bytes, 1024);
    assert_int_equal(r.cfg.request_timeout_ms, 2500);
    assert_int_equal(r.cfg.idle_timeout_ms, 30000);
    assert_int_equal(r.cfg.max_connections, 500);
    assert_int_equal(r.cfg.redis_timeout_ms, 200);
    assert_int_equal(r.cfg.pg_timeout_ms, 3000);
    assert_int_equal(r.cfg.pg_pool_size, 16);
    assert_int_equal(r.cfg.drain_timeout_ms, 0);
    assert_false(r.cfg.migrate);
    slk_config_free(&r.cfg);
}

static void test_flags_override_env(void **state)
{
    struct run r;

    (void)state;
    setenv("WORKERS", "8", 1);
    setenv("LISTEN", "0.0.0.0:9000", 1);
    setenv("LOG_LEVEL", "error", 1);
    setenv("REDIS_URL", "redis://env:1", 1);
    assert_int_equal(load(&r, ARGS("--workers", "3", "--listen", "127.0.0.2:7000", "--log-level", "warn", "--redis-url",
                                   "redis://flag:2", "--jwt-secret", "flag-secret-0123456789", "--no-migrate",
                                   "--hold-ttl-seconds", "60")),
                     SLK_OK);
    assert_int_equal(r.cfg.workers, 3);
    assert_string_equal(r.cfg.listen_host, "127.0.0.2");
    assert_int_equal(r.cfg.listen_port, 7000);
    assert_int_equal(r.cfg.log_level, SLK_LOG_WARN);
    assert_string_equal(r.cfg.redis_url, "redis://flag:2");
    assert_string_equal(r.cfg.jwt_secret, "flag-secret-0123456789");
    assert_false(r.cfg.migrate);
    assert_int_equal(r.cfg.hold_ttl_seconds, 60);
    slk_config_free(&r.cfg);
}

static void test_flag_equals_form(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, ARGS("--workers=5", "--listen=[::1]:8443", "--database-url=postgresql://a=b@h/d",
                                   "--max-body-bytes=2048", "--pg-pool-size=2", "--payment-webhook-secret=" HOOK "x")),
                     SLK_OK);
    assert_int_equal(r.cfg.workers, 5);
    assert_string_equal(r.cfg.listen_host, "::1");
    assert_int_equal(r.cfg.listen_port, 8443);
    /* Only the first '=' separates the flag from its value. */
    assert_string_equal(r.cfg.database_url, "postgresql://a=b@h/d");
    assert_int_equal(r.cfg.max_body_bytes, 2048);
    assert_int_equal(r.cfg.pg_pool_size, 2);
    assert_string_equal(r.cfg.webhook_secret, HOOK "x");
    slk_config_free(&r.cfg);
}

static void test_bad_integers(void **state)
{
    (void)state;
    expect_error(ARGS("--workers", "12abc"), "--workers");
    expect_error(ARGS("--workers="), "--workers");
    expect_error(ARGS("--workers", " 4"), "--workers");
    expect_error(ARGS("--workers", "+4"), "--workers");
    expect_error(ARGS("--hold-ttl-seconds", "-1"), "--hold-ttl-seconds");
    expect_error(ARGS("--pg-pool-size", "99999999999999999999"), "--pg-pool-size");
    expect_error(ARGS("--request-timeout-ms", "1.5"), "--request-timeout-ms");
    setenv("MAX_CONNECTIONS", "lots", 1);
    expect_error(NO_ARGS, "MAX_CONNECTIONS");
}

static void test_out_of_range_names_the_range(void **state)
{
    (void)state;
    expect_error(ARGS("--workers", "0"), "1..64");
    expect_error(ARGS("--workers", "65"), "--workers");
    expect_error(ARGS("--hold-ttl-seconds", "86401"), "1..86400");
    expect_error(ARGS("--max-header-bytes", "1023"), "1024..1048576");
    expect_error(ARGS("--max-body-bytes", "16777217"), "--max-body-bytes");
    expect_error(ARGS("--pg-pool-size", "65"), "--pg-pool-size");
    setenv("WORKERS", "100", 1);
    expect_error(NO_ARGS, "WORKERS");
}

static void test_range_edges_accepted(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, ARGS("--workers", "64", "--hold-ttl-seconds", "86400", "--max-header-bytes", "1048576",
                                   "--max-body-bytes", "16777216", "--listen", "h:65535")),
                     SLK_OK);
    assert_int_equal(r.cfg.workers, 64);
    assert_int_equal(r.cfg.hold_ttl_seconds, 86400);
    assert_int_equal(r.cfg.max_header_bytes, 1048576);
    assert_int_equal(r.cfg.max_body_bytes, 16777216);
    assert_int_equal(r.cfg.listen_port, 65535);
    slk_config_free(&r.cfg);
}

static void test_unknown_flag_and_missing_value(void **state)
{
    (void)state;
    expect_error(ARGS("--wrokers", "3"), "--wrokers");
    expect_error(ARGS("--workers-extra=3"), "--workers-extra");
    expect_error(ARGS("-w"), "-w");
    expect_error(ARGS("stray"), "stray");
    expect_error(ARGS("--workers"), "--workers");
    expect_error(ARGS("--auth-disabled=yes"), "--auth-disabled");
}

static void test_secrets_required(void **state)
{
    (void)state;
    unsetenv("JWT_SECRET");
    expect_error(NO_ARGS, "JWT_SECRET");
    setenv("JWT_SECRET", "short", 1);
    expect_error(NO_ARGS, "too short");
    expect_error(ARGS("--jwt-secret", "0123456789abcde"), "at least 16 bytes");
    setenv("JWT_SECRET", JWT, 1);
    unsetenv("PAYMENT_WEBHOOK_SECRET");
    expect_error(NO_ARGS, "PAYMENT_WEBHOOK_SECRET");
    setenv("PAYMENT_WEBHOOK_SECRET", "tiny", 1);
    expect_error(NO_ARGS, "PAYMENT_WEBHOOK_SECRET) is too short");
}

static void test_secrets_never_in_errors(void **state)
{
    struct run r;

    (void)state;
    setenv("JWT_SECRET", "hunter2", 1);
    assert_int_equal(load(&r, NO_ARGS), SLK_EINVAL);
    assert_null(strstr(r.err, "hunter2"));
    setenv("JWT_SECRET", JWT, 1);
    setenv("DATABASE_URL", "", 1);
    assert_int_equal(load(&r, NO_ARGS), SLK_EINVAL);
    assert_non_null(strstr(r.err, "DATABASE_URL"));
}

static void test_sixteen_byte_secret_is_enough(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, ARGS("--jwt-secret", "0123456789abcdef")), SLK_OK);
    assert_string_equal(r.cfg.jwt_secret, "0123456789abcdef");
    slk_config_free(&r.cfg);
}

static void test_auth_disabled_allows_missing_jwt(void **state)
{
    struct run r;

    (void)state;
    unsetenv("JWT_SECRET");
    assert_int_equal(load(&r, ARGS("--auth-disabled")), SLK_OK);
    assert_true(r.cfg.auth_disabled);
    assert_null(r.cfg.jwt_secret);
    slk_config_free(&r.cfg);

    setenv("AUTH_DISABLED", "yes", 1);
    assert_int_equal(load(&r, NO_ARGS), SLK_OK);
    assert_true(r.cfg.auth_disabled);
    slk_config_free(&r.cfg);

    setenv("AUTH_DISABLED", "0", 1);
    expect_error(NO_ARGS, "JWT_SECRET");
    setenv("AUTH_DISABLED", "maybe", 1);
    expect_error(NO_ARGS, "AUTH_DISABLED");
    /* The webhook secret is still required. */
    setenv("AUTH_DISABLED", "true", 1);
    unsetenv("PAYMENT_WEBHOOK_SECRET");
    expect_error(NO_ARGS, "PAYMENT_WEBHOOK_SECRET");
}

static void test_help_and_version(void **state)
{
    struct run r;

    (void)state;
    /* They work before any secret is configured, and win over bad flags. */
    unsetenv("JWT_SECRET");
    unsetenv("PAYMENT_WEBHOOK_SECRET");
    assert_int_equal(load(&r, ARGS("--help")), SLK_OK);
    assert_true(r.help);
    assert_false(r.version);
    slk_config_free(&r.cfg);
    assert_int_equal(load(&r, ARGS("--bogus", "-h")), SLK_OK);
    assert_true(r.help);
    slk_config_free(&r.cfg);
    assert_int_equal(load(&r, ARGS("--version")), SLK_OK);
    assert_true(r.version);
    assert_false(r.help);
    slk_config_free(&r.cfg);
    assert_int_equal(load(&r, ARGS("-V")), SLK_OK);
    assert_true(r.version);
    slk_config_free(&r.cfg);
}

static void test_listen_parsing(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, ARGS("--listen", "localhost:1")), SLK_OK);
    assert_string_equal(r.cfg.listen_host, "localhost");
    assert_int_equal(r.cfg.listen_port, 1);
    slk_config_free(&r.cfg);
    assert_int_equal(load(&r, ARGS("--listen", "[fe80::1%lo]:8080")), SLK_OK);
    assert_string_equal(r.cfg.listen_host, "fe80::1%lo");
    slk_config_free(&r.cfg);

    expect_error(ARGS("--listen", "127.0.0.1:0"), "1..65535");
    expect_error(ARGS("--listen", "127.0.0.1:65536"), "--listen");
    expect_error(ARGS("--listen", "127.0.0.1:80x"), "--listen");
    expect_error(ARGS("--listen", "127.0.0.1:"), "--listen");
    expect_error(ARGS("--listen", "127.0.0.1"), "--listen");
    expect_error(ARGS("--listen", ":8080"), "--listen");
    expect_error(ARGS("--listen", "[]:8080"), "--listen");
    expect_error(ARGS("--listen", "::1:8080"), "--listen");
    expect_error(ARGS("--listen", "[::1]8080"), "--listen");
    setenv("LISTEN", "nope", 1);
    expect_error(NO_ARGS, "LISTEN");
}

static void test_log_level(void **state)
{
    struct run r;

    (void)state;
    assert_int_equal(load(&r, ARGS("--log-level", "ERROR")), SLK_OK);
    assert_int_equal(r.cfg.log_level, SLK_LOG_ERROR);
    slk_config_free(&r.cfg);
    expect_error(ARGS("--log-level", "verbose"), "--log-level");
    setenv("LOG_LEVEL", "loud", 1);
    expect_error(NO_ARGS, "LOG_LEVEL");
    assert_int_equal(slk_log_parse_level("debug"), SLK_LOG_DEBUG);
    assert_int_equal(slk_log_parse_level("info"), SLK_LOG_INFO);
    assert_int_equal(slk_log_parse_level("warn"), SLK_LOG_WARN);
    assert_int_equal(slk_log_parse_level("error"), SLK_LOG_ERROR);
    assert_int_equal(slk_log_parse_level(""), -1);
    assert_int_equal(slk_log_parse_level(NULL), -1);
}

static void test_first_skips_subcommand(void **state)
{
    struct run r;
    const char *argv[] = {"slotlockd", "serve", "--workers", "2", NULL};

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(slk_config_load(&r.cfg, 4, (char **)argv, 2, &r.help, &r.version, r.err, sizeof(r.err)), SLK_OK);
    assert_int_equal(r.cfg.workers, 2);
    slk_config_free(&r.cfg);
}

/* The usage text lists every flag with its env var, and shows no secret. */
static void test_usage_lists_every_setting(void **state)
{
    char path[] = "/tmp/slk-usage-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDOUT_FILENO);
    char text[8192];
    ssize_t n;

    (void)state;
    assert_true(fd >= 0);
    fflush(stdout);
    dup2(fd, STDOUT_FILENO);
    slk_config_print_usage();
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = '\0';
    for (size_t i = 0; i < sizeof(all_env) / sizeof(all_env[0]); i++) {
        if (strstr(text, all_env[i]) == NULL)
            fail_msg("usage does not mention %s", all_env[i]);
    }
    assert_non_null(strstr(text, "--listen HOST:PORT"));
    assert_non_null(strstr(text, "--no-migrate"));
    assert_non_null(strstr(text, "--auth-disabled"));
    assert_non_null(strstr(text, "slotlockd migrate"));
    assert_non_null(strstr(text, "slotlockd token --sub ID --role student|instructor|admin"));
    assert_non_null(strstr(text, "127.0.0.1:8080"));
    assert_non_null(strstr(text, "env MAX_HEADER_BYTES, default 8192 (1024..1048576)"));
    assert_null(strstr(text, JWT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, reset_env),
        cmocka_unit_test_setup(test_env_values, reset_env),
        cmocka_unit_test_setup(test_flags_override_env, reset_env),
        cmocka_unit_test_setup(test_flag_equals_form, reset_env),
        cmocka_unit_test_setup(test_bad_integers, reset_env),
        cmocka_unit_test_setup(test_out_of_range_names_the_range, reset_env),
        cmocka_unit_test_setup(test_range_edges_accepted, reset_env),
        cmocka_unit_test_setup(test_unknown_flag_and_missing_value, reset_env),
        cmocka_unit_test_setup(test_secrets_required, reset_env),
        cmocka_unit_test_setup(test_secrets_never_in_errors, reset_env),
        cmocka_unit_test_setup(test_sixteen_byte_secret_is_enough, reset_env),
        cmocka_unit_test_setup(test_auth_disabled_allows_missing_jwt, reset_env),
        cmocka_unit_test_setup(test_help_and_version, reset_env),
        cmocka_unit_test_setup(test_listen_parsing, reset_env),
        cmocka_unit_test_setup(test_log_level, reset_env),
        cmocka_unit_test_setup(test_first_skips_subcommand, reset_env),
        cmocka_unit_test_setup(test_usage_lists_every_setting, reset_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
