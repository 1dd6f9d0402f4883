#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slk/config.h"
#include "slk/log.h"

#define SECRET_MIN_BYTES 16
#define DAY_MS (24LL * 3600 * 1000)

enum opt_kind {
    OPT_LISTEN,
    OPT_URL,    /* may carry a password: never echoed */
    OPT_SECRET, /* never echoed */
    OPT_INT,
    OPT_SIZE,
    OPT_U64,
    OPT_LEVEL,
    OPT_FLAG, /* env takes a boolean; the flag takes no value and sets flag_value */
    OPT_STR,  /* optional text, echoed in messages */
};

struct opt {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum opt_kind kind;
    size_t offset;
    long long min, max;
    bool flag_value;
    const char *metavar;
    const char *def; /* shown in the usage text; numbers are printed from the real defaults */
    const char *help;
};

#define FIELD(name) offsetof(struct slk_config, name)

/* One table drives parsing, validation messages and the usage text, so they cannot drift apart. */
static const struct opt opts[] = {
    {"listen", "LISTEN", OPT_LISTEN, 0, 1, 65535, false, "HOST:PORT", "127.0.0.1:8080",
     "address to listen on ([::1]:8080 for IPv6)"},
    {"redis-url", "REDIS_URL", OPT_URL, FIELD(redis_url), 0, 0, false, "URL", "redis://127.0.0.1:6379", "Redis server"},
    {"database-url", "DATABASE_URL", OPT_URL, FIELD(database_url), 0, 0, false, "URL",
     "postgresql://postgres@127.0.0.1:5432/slotlock", "PostgreSQL connection URI"},
    {"jwt-secret", "JWT_SECRET", OPT_SECRET, FIELD(jwt_secret), 0, 0, false, "SECRET",
     "(required unless auth is disabled)", "HS256 key for bearer tokens, at least 16 bytes"},
    {"payment-webhook-secret", "PAYMENT_WEBHOOK_SECRET", OPT_SECRET, FIELD(webhook_secret), 0, 0, false, "SECRET",
     "(required)", "HMAC key of payment callbacks, at least 16 bytes"},
    {"hold-ttl-seconds", "HOLD_TTL_SECONDS", OPT_INT, FIELD(hold_ttl_seconds), 1, 86400, false, "N", NULL,
     "hold length for instructors that set none"},
    {"workers", "WORKERS", OPT_INT, FIELD(workers), 1, 64, false, "N", NULL, "event-loop threads sharing the port"},
    {"log-level", "LOG_LEVEL", OPT_LEVEL, FIELD(log_level), 0, 0, false, "LEVEL", "info", "debug|info|warn|error"},
    {"auth-disabled", "AUTH_DISABLED", OPT_FLAG, FIELD(auth_disabled), 0, 0, true, NULL, "0",
     "accept requests without a token (local testing only)"},
    {"max-header-bytes", "MAX_HEADER_BYTES", OPT_SIZE, FIELD(max_header_bytes), 1024, 1048576, false, "N", NULL,
     "cap on a request's header block"},
    {"max-body-bytes", "MAX_BODY_BYTES", OPT_SIZE, FIELD(max_body_bytes), 1024, 16777216, false, "N", NULL,
     "cap on a request body"},
    {"request-timeout-ms", "REQUEST_TIMEOUT_MS", OPT_U64, FIELD(request_timeout_ms), 1, DAY_MS, false, "MS", NULL,
     "time for a whole request to arrive"},
    {"idle-timeout-ms", "IDLE_TIMEOUT_MS", OPT_U64, FIELD(idle_timeout_ms), 1, DAY_MS, false, "MS", NULL,
     "idle keep-alive connection lifetime"},
    {"max-connections", "MAX_CONNECTIONS", OPT_SIZE, FIELD(max_connections), 1, 1000000, false, "N", NULL,
     "open connections per process"},
    {"redis-timeout-ms", "REDIS_TIMEOUT_MS", OPT_U64, FIELD(redis_timeout_ms), 1, DAY_MS, false, "MS", NULL,
     "Redis command timeout"},
    {"pg-timeout-ms", "PG_TIMEOUT_MS", OPT_U64, FIELD(pg_timeout_ms), 1, DAY_MS, false, "MS", NULL,
     "PostgreSQL query timeout"},
    {"pg-pool-size", "PG_POOL_SIZE", OPT_INT, FIELD(pg_pool_size), 1, 64, false, "N", NULL,
     "PostgreSQL connections per worker"},
    {"drain-timeout-ms", "DRAIN_TIMEOUT_MS", OPT_U64, FIELD(drain_timeout_ms), 0, DAY_MS, false, "MS", NULL,
     "wait for in-flight requests on SIGTERM"},
    {"no-migrate", "MIGRATE", OPT_FLAG, FIELD(migrate), 0, 0, false, NULL, "1",
     "do not apply schema migrations at start (env MIGRATE=0)"},
    {"cancel-refund-hours", "CANCEL_REFUND_HOURS", OPT_INT, FIELD(cancel_refund_hours), 0, 8760, false, "H", NULL,
     "a cancellation this long before the start is refund_eligible"},
    {"reschedule-notice-hours", "RESCHEDULE_NOTICE_HOURS", OPT_INT, FIELD(reschedule_notice_hours), 0, 8760, false, "H",
     NULL, "a booking may be moved until this long before its start"},
    {"reschedule-max-days", "RESCHEDULE_MAX_DAYS", OPT_INT, FIELD(reschedule_max_days), 1, 3660, false, "D", NULL,
     "how far ahead a booking may be moved"},
    {"no-show-after-minutes", "NO_SHOW_AFTER_MINUTES", OPT_INT, FIELD(no_show_after_minutes), 0, 1440, false, "M", NULL,
     "a no-show may be reported this long after the start"},
    {"no-show-window-hours", "NO_SHOW_WINDOW_HOURS", OPT_INT, FIELD(no_show_window_hours), 1, 8760, false, "H", NULL,
     "... and until this long after the start"},
    {"max-holds-per-student", "MAX_HOLDS_PER_STUDENT", OPT_INT, FIELD(max_holds_per_student), 0, 1000000, false, "N",
     NULL, "live holds one student may have (0: no cap)"},
    {"rate-limit-per-second", "RATE_LIMIT_PER_SECOND", OPT_INT, FIELD(rate_limit_per_second), 0, 1000000, false, "N",
     NULL, "API requests per second per client, token bucket in Redis (0: off)"},
    {"rate-limit-burst", "RATE_LIMIT_BURST", OPT_INT, FIELD(rate_limit_burst), 1, 1000000, false, "N", NULL,
     "requests a client may send at once"},
    {"idempotency-ttl-hours", "IDEMPOTENCY_TTL_HOURS", OPT_INT, FIELD(idempotency_ttl_hours), 1, 720, false, "H", NULL,
     "how long an Idempotency-Key's reply is kept"},
    {"idempotency-wait-ms", "IDEMPOTENCY_WAIT_MS", OPT_U64, FIELD(idempotency_wait_ms), 0, 60000, false, "MS", NULL,
     "a duplicate waits this long for the first request's reply, then gets 409"},
    {"webhook-url", "WEBHOOK_URL", OPT_STR, FIELD(webhook_url), 0, 0, false, "URL", "(none: events are only recorded)",
     "http:// endpoint that receives booking events"},
    {"webhook-secret", "WEBHOOK_SECRET", OPT_SECRET, FIELD(events_secret), 0, 0, false, "SECRET",
     "(the payment webhook secret)", "HMAC key that signs outgoing events"},
    {"webhook-timeout-ms", "WEBHOOK_TIMEOUT_MS", OPT_U64, FIELD(webhook_timeout_ms), 1, DAY_MS, false, "MS", NULL,
     "one delivery attempt's deadline"},
    {"webhook-retry-base-ms", "WEBHOOK_RETRY_BASE_MS", OPT_U64, FIELD(webhook_retry_base_ms), 1, DAY_MS, false, "MS",
     NULL, "first retry delay; doubles per attempt"},
    {"webhook-retry-max-ms", "WEBHOOK_RETRY_MAX_MS", OPT_U64, FIELD(webhook_retry_max_ms), 1, DAY_MS, false, "MS", NULL,
     "longest retry delay"},
    {"test-clock", "TEST_CLOCK", OPT_FLAG, FIELD(test_clock), 0, 0, true, NULL, "0",
     "tests only: POST /internal/clock may shift the server's clock"},
};

static void fail_msg(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail_msg(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Digits only, optionally negative: strtoll alone would accept " 12", "+12" and "12abc". */
static int parse_int(const char *s, long long min, long long max, long long *out)
{
    const char *p = s[0] == '-' ? s + 1 : s;
    char *end;
    long long v;

    if (*p < '0' || *p > '9')
        return SLK_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return SLK_EINVAL;
    *out = v;
    return SLK_OK;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};

    for (size_t i = 0; i < SLK_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return SLK_OK;
        }
    }
    for (size_t i = 0; i < SLK_ARRAY_SIZE(no); i++) {
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return SLK_OK;
        }
    }
    return SLK_EINVAL;
}

static int replace_str(char **slot, const char *value, size_t len)
{
    char *copy = strndup(value, len);

    if (copy == NULL)
        return SLK_ENOMEM;
    free(*slot);
    *slot = copy;
    return SLK_OK;
}

/*
 * "host:port" or "[v6-host]:port". An unbracketed host may not contain ':' so
 * that "::1:8080" is refused instead of being split at a guess.
 */
static int set_listen(struct slk_config *cfg, const char *name, const char *v, char *errbuf, size_t errlen)
{
    const char *host = v, *host_end, *port;
    long long p;

    if (v[0] == '[') {
        host = v + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':')
            goto bad;
        port = host_end + 2;
    } else {
        host_end = strrchr(v, ':');
        if (host_end == NULL || memchr(v, ':', (size_t)(host_end - v)) != NULL)
            goto bad;
        port = host_end + 1;
    }
    if (host_end == host)
        goto bad;
    if (parse_int(port, 1, 65535, &p) != SLK_OK) {
        fail_msg(errbuf, errlen, "%s: port must be an integer in 1..65535, got \"%.64s\"", name, port);
        return SLK_EINVAL;
    }
    cfg->listen_port = (int)p;
    return replace_str(&cfg->listen_host, host, (size_t)(host_end - host));
bad:
    fail_msg(errbuf, errlen, "%s: expected HOST:PORT or [IPV6]:PORT with a non-empty host, got \"%.64s\"", name, v);
    return SLK_EINVAL;
}

static int set_number(struct slk_config *cfg, const struct opt *o, const char *name, const char *v, char *errbuf,
                      size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    long long n;

    if (parse_int(v, o->min, o->max, &n) != SLK_OK) {
        fail_msg(errbuf, errlen, "%s: expected an integer in %lld..%lld, got \"%.64s\"", name, o->min, o->max, v);
        return SLK_EINVAL;
    }
    if (o->kind == OPT_INT)
        *(int *)(void *)field = (int)n;
    else if (o->kind == OPT_SIZE)
        *(size_t *)(void *)field = (size_t)n;
    else
        *(uint64_t *)(void *)field = (uint64_t)n;
    return SLK_OK;
}

/* name is the flag or env var being applied; it leads every message. */
static int set_value(struct slk_config *cfg, const struct opt *o, const char *name, const char *v, char *errbuf,
                     size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    int level;

    switch (o->kind) {
    case OPT_LISTEN:
        return set_listen(cfg, name, v, errbuf, errlen);
    case OPT_URL:
        if (v[0] == '\0') {
            fail_msg(errbuf, errlen, "%s: must not be empty", name);
            return SLK_EINVAL;
        }
        return replace_str((char **)(void *)field, v, strlen(v));
    case OPT_STR:
        if (v[0] == '\0') {
            free(*(char **)(void *)field);
            *(char **)(void *)field = NULL;
            return SLK_OK;
        }
        return replace_str((char **)(void *)field, v, strlen(v));
    case OPT_SECRET:
        /* The length check comes later, once we know which secrets are required. */
        return replace_str((char **)(void *)field, v, strlen(v));
    case OPT_INT:
    case OPT_SIZE:
    case OPT_U64:
        return set_number(cfg, o, name, v, errbuf, errlen);
    case OPT_LEVEL:
        level = slk_log_parse_level(v);
        if (level < 0) {
            fail_msg(errbuf, errlen, "%s: expected one of debug, info, warn, error, got \"%.64s\"", name, v);
            return SLK_EINVAL;
        }
        *(int *)(void *)field = level;
        return SLK_OK;
    case OPT_FLAG:
        if (parse_bool(v, (bool *)(void *)field) != SLK_OK) {
            fail_msg(errbuf, errlen, "%s: expected a boolean (1/true/yes or 0/false/no), got \"%.64s\"", name, v);
            return SLK_EINVAL;
        }
        return SLK_OK;
    }
    return SLK_EINVAL;
}

static int set_defaults(struct slk_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_port = 8080;
    cfg->hold_ttl_seconds = 1800;
    cfg->workers = 1;
    cfg->log_level = SLK_LOG_INFO;
    cfg->max_header_bytes = SLK_DEFAULT_MAX_HEADER_BYTES;
    cfg->max_body_bytes = SLK_DEFAULT_MAX_BODY_BYTES;
    cfg->request_timeout_ms = SLK_DEFAULT_REQUEST_TIMEOUT_MS;
    cfg->idle_timeout_ms = SLK_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->max_connections = SLK_DEFAULT_MAX_CONNECTIONS;
    cfg->redis_timeout_ms = SLK_DEFAULT_REDIS_TIMEOUT_MS;
    cfg->pg_timeout_ms = SLK_DEFAULT_PG_TIMEOUT_MS;
    cfg->pg_pool_size = SLK_DEFAULT_PG_POOL_SIZE;
    cfg->drain_timeout_ms = SLK_DEFAULT_DRAIN_TIMEOUT_MS;
    cfg->migrate = true;
    cfg->cancel_refund_hours = 12;
    cfg->reschedule_notice_hours = 12;
    cfg->reschedule_max_days = 30;
    cfg->no_show_after_minutes = 10;
    cfg->no_show_window_hours = 24;
    cfg->max_holds_per_student = 5;
    cfg->rate_limit_per_second = 20;
    cfg->rate_limit_burst = 40;
    cfg->idempotency_ttl_hours = 24;
    cfg->idempotency_wait_ms = 2000;
    cfg->webhook_timeout_ms = 5000;
    cfg->webhook_retry_base_ms = 1000;
    cfg->webhook_retry_max_ms = 300000;
    cfg->listen_host = strdup("127.0.0.1");
    cfg->redis_url = strdup("redis://127.0.0.1:6379");
    cfg->database_url = strdup("postgresql://postgres@127.0.0.1:5432/slotlock");
    if (cfg->listen_host == NULL || cfg->redis_url == NULL || cfg->database_url == NULL)
        return SLK_ENOMEM;
    return SLK_OK;
}

static int load_env(struct slk_config *cfg, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < SLK_ARRAY_SIZE(opts); i++) {
        const char *v = getenv(opts[i].env);
        int rc;

        if (v == NULL)
            continue;
        rc = set_value(cfg, &opts[i], opts[i].env, v, errbuf, errlen);
        if (rc != SLK_OK)
            return rc;
    }
    return SLK_OK;
}

static const struct opt *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < SLK_ARRAY_SIZE(opts); i++) {
        if (strlen(opts[i].flag) == len && memcmp(opts[i].flag, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Applies argv[*i] (and its separate value, advancing *i). */
static int load_flag(struct slk_config *cfg, int argc, char **argv, int *i, char *errbuf, size_t errlen)
{
    const char *arg = argv[*i], *eq = NULL, *value;
    const struct opt *o = NULL;
    char name[64];
    size_t len;

    if (strncmp(arg, "--", 2) == 0) {
        eq = strchr(arg + 2, '=');
        len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        o = find_flag(arg + 2, len);
    }
    if (o == NULL) {
        fail_msg(errbuf, errlen, "unknown %s \"%.64s\" (see --help)", arg[0] == '-' ? "flag" : "argument", arg);
        return SLK_EINVAL;
    }
    snprintf(name, sizeof(name), "--%s", o->flag);
    if (o->kind == OPT_FLAG) {
        if (eq != NULL) {
            fail_msg(errbuf, errlen, "%s: takes no value", name);
            return SLK_EINVAL;
        }
        *(bool *)(void *)((char *)cfg + o->offset) = o->flag_value;
        return SLK_OK;
    }
    if (eq != NULL) {
        value = eq + 1;
    } else if (*i + 1 < argc) {
        value = argv[++*i];
    } else {
        fail_msg(errbuf, errlen, "%s: requires a value (%s)", name, o->metavar);
        return SLK_EINVAL;
    }
    return set_value(cfg, o, name, value, errbuf, errlen);
}

static int check_secret(const char *secret, bool required, const char *what, char *errbuf, size_t errlen)
{
    if (secret == NULL && !required)
        return SLK_OK;
    if (secret == NULL) {
        fail_msg(errbuf, errlen, "%s is required (at least %d bytes)", what, SECRET_MIN_BYTES);
        return SLK_EINVAL;
    }
    if (strlen(secret) < SECRET_MIN_BYTES) {
        fail_msg(errbuf, errlen, "%s is too short: at least %d bytes are required", what, SECRET_MIN_BYTES);
        return SLK_EINVAL;
    }
    return SLK_OK;
}

static int validate(const struct slk_config *cfg, char *errbuf, size_t errlen)
{
    int rc = check_secret(cfg->jwt_secret, !cfg->auth_disabled,
                          "JWT secret (--jwt-secret / JWT_SECRET; or set AUTH_DISABLED=1 for local testing)", errbuf,
                          errlen);

    if (rc != SLK_OK)
        return rc;
    rc = check_secret(cfg->events_secret, false, "outgoing webhook secret (--webhook-secret / WEBHOOK_SECRET)", errbuf,
                      errlen);
    if (rc != SLK_OK)
        return rc;
    if (cfg->webhook_url != NULL && strncmp(cfg->webhook_url, "http://", 7) != 0) {
        fail_msg(errbuf, errlen, "WEBHOOK_URL: only http:// endpoints are supported, got \"%.64s\"", cfg->webhook_url);
        return SLK_EINVAL;
    }
    return check_secret(cfg->webhook_secret, true,
                        "payment webhook secret (--payment-webhook-secret / "
                        "PAYMENT_WEBHOOK_SECRET)",
                        errbuf, errlen);
}

/*
 * --help and --version win over everything else on the line, so that they
 * work before the required secrets are set up.
 */
static bool scan_info_flags(int argc, char **argv, int first, bool *want_help, bool *want_version)
{
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            *want_help = true;
        else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0)
            *want_version = true;
    }
    return *want_help || *want_version;
}

int slk_config_load(struct slk_config *cfg, int argc, char **argv, int first, bool *want_help, bool *want_version,
                    char *errbuf, size_t errlen)
{
    int rc;

    *want_help = false;
    *want_version = false;
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    rc = set_defaults(cfg);
    if (rc != SLK_OK)
        goto fail;
    if (scan_info_flags(argc, argv, first, want_help, want_version))
        return SLK_OK;
    rc = load_env(cfg, errbuf, errlen);
    if (rc != SLK_OK)
        goto fail;
    for (int i = first; i < argc; i++) {
        rc = load_flag(cfg, argc, argv, &i, errbuf, errlen);
        if (rc != SLK_OK)
            goto fail;
    }
    rc = validate(cfg, errbuf, errlen);
    if (rc != SLK_OK)
        goto fail;
    return SLK_OK;
fail:
    if (rc == SLK_ENOMEM)
        fail_msg(errbuf, errlen, "out of memory while reading settings");
    slk_config_free(cfg);
    return rc;
}

static void free_secret(char **slot)
{
    if (*slot != NULL)
        explicit_bzero(*slot, strlen(*slot));
    free(*slot);
    *slot = NULL;
}

void slk_config_free(struct slk_config *cfg)
{
    free(cfg->listen_host);
    free(cfg->redis_url);
    free(cfg->database_url);
    cfg->listen_host = NULL;
    cfg->redis_url = NULL;
    cfg->database_url = NULL;
    free(cfg->webhook_url);
    cfg->webhook_url = NULL;
    free_secret(&cfg->events_secret);
    free_secret(&cfg->jwt_secret);
    free_secret(&cfg->webhook_secret);
}

static void print_default(const struct slk_config *defaults, const struct opt *o)
{
    const char *field = (const char *)defaults + o->offset;

    if (o->def != NULL)
        printf("%s", o->def);
    else if (o->kind == OPT_INT)
        printf("%d", *(const int *)(const void *)field);
    else if (o->kind == OPT_SIZE)
        printf("%zu", *(const size_t *)(const void *)field);
    else
        printf("%llu", (unsigned long long)*(const uint64_t *)(const void *)field);
}

void slk_config_print_usage(void)
{
    struct slk_config defaults;

    /* Only the numbers are read, so a failed string allocation does not matter here. */
    (void)set_defaults(&defaults);
    printf("Usage: slotlockd [serve] [flags]     run the server\n"
           "       slotlockd migrate [flags]     apply schema migrations and exit\n"
           "       slotlockd token --sub ID --role student|instructor|admin [--ttl S]\n"
           "                                     print a signed bearer token (uses JWT_SECRET)\n"
           "       slotlockd --help | -h         this text\n"
           "       slotlockd --version | -V      print the version\n"
           "\n"
           "Flags (each also read from the environment variable shown; flags win):\n");
    for (size_t i = 0; i < SLK_ARRAY_SIZE(opts); i++) {
        const struct opt *o = &opts[i];
        char left[64];

        snprintf(left, sizeof(left), "--%s%s%s", o->flag, o->metavar != NULL ? " " : "",
                 o->metavar != NULL ? o->metavar : "");
        printf("  %-34s %s\n", left, o->help);
        printf("  %-34s env %s, default ", "", o->env);
        print_default(&defaults, o);
        if (o->kind == OPT_INT || o->kind == OPT_SIZE || o->kind == OPT_U64)
            printf(" (%lld..%lld)", o->min, o->max);
        printf("\n");
    }
    slk_config_free(&defaults);
}
