/*
 * slotbench: the load generator and correctness audit of issue 5 (SPEC
 * R-BENCH). See usage() for the command line; exit status 0 when the run
 * completed and its audit passed, 1 when the audit failed or the run could
 * not be done, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "baseline_pg.h"
#include "report.h"
#include "scenario.h"

#define EXIT_AUDIT 1
#define EXIT_USAGE 2

struct cli {
    struct bench_options o;
    const char *url;
    const char *json_path, *plot_dir, *baseline, *prefix, *confirmed_in;
    int pg_connections;
    bool audit_only;
    /* which options were given, so the scenario's defaults fill the rest */
    bool has_connections, has_requests, has_seconds, has_slots, has_instructors, has_users;
};

static void usage(FILE *out)
{
    fputs("usage: slotbench SCENARIO [options]\n"
          "       slotbench audit --instructor-prefix PREFIX [--confirmed FILE] [--database-url URL] [--json FILE]\n"
          "\n"
          "HTTP/1.1 keep-alive load generator for slotlockd, with a correctness audit.\n"
          "\n"
          "Scenarios (defaults: connections, requests, seconds):\n"
          "  burst       all connections connect, then fire at once: hold attempts on random hot\n"
          "              slots of one instructor (1000, 10000, 60; --slots 10). Every winner (201)\n"
          "              then pays (signed callback, counted as follow-up). Audit: exactly 1 winner\n"
          "              per hot slot, every confirmation in Postgres, no double booking.\n"
          "  steady      holds spread over many instructors and free slots (64, 200000, 30;\n"
          "              --instructors 200). After the run --confirm-pct are paid, --cancel-pct\n"
          "              cancelled; --expire-pct are on instructors whose hold_seconds is\n"
          "              --expire-hold-seconds and are left to expire; the audit waits past their\n"
          "              expiry and checks Redis no longer holds them. successes = 201s.\n"
          "  mixed       UI-shaped: 90% availability GETs (7-day window), 8% holds, 1% confirms and\n"
          "              1% cancels of earlier holds (64, 200000, 30; --instructors 200).\n"
          "              successes = 2xx replies.\n"
          "  hot-reject  --slots (default 4) slots are held and paid in setup, then hammered with hold\n"
          "              attempts: every reply must be 409 (64, 200000, 30). successes = 409s; a 201\n"
          "              fails the audit.\n"
          "  livez       GET /livez (64, 200000, 30): the HTTP ceiling. No audit.\n"
          "  availability  mixed's availability GETs alone, nothing changing (64, 200000, 30;\n"
          "              --instructors 200): what mixed's 90% cost at best. No audit.\n"
          "\n",
          out);
    fputs("Load:\n"
          "  --url URL                 server, numeric address (default http://127.0.0.1:8080)\n"
          "  -c, --connections N       concurrent keep-alive connections\n"
          "  -n, --requests N          stop issuing after N requests\n"
          "  -d, --duration S          stop issuing after S seconds (whichever comes first)\n"
          "  --rate R                  target rate in requests/s over all connections; latency is then\n"
          "                            counted from each request's intended send time (default: closed loop)\n"
          "  --drain S                 wait at most S s for replies in flight at the end (default 5);\n"
          "                            unanswered ones count as errors\n"
          "  --connect-timeout S       start after S s even if not all connections are up (default 10)\n"
          "\n"
          "Shape:\n"
          "  --slots K                 hot slots (burst 10, hot-reject 4; at most 1024)\n"
          "  --users N                 burst, hot-reject: the students the attempts come from, each clicking\n"
          "                            again and again (default: as many as connections, each connection\n"
          "                            always the same student: \"C clients fire\"); more than connections\n"
          "                            take turns; 0 = a new student for every attempt\n"
          "  --instructors N           instructors for steady, mixed and availability (default 200)\n"
          "  --hold-seconds S          hold_seconds of the bench's instructors (default 60)\n"
          "  --expire-hold-seconds S   hold_seconds of the instructors whose holds are left to expire (default 3)\n"
          "  --slot-minutes M          booking length, a multiple of 15 (default 60)\n"
          "  --confirm-pct P           steady: share paid after the run (default 20)\n"
          "  --cancel-pct P            steady: share cancelled after the run (default 10)\n"
          "  --expire-pct P            steady: share left to expire (default 10)\n"
          "  --seed N                  random seed (default: from the clock)\n"
          "  --run-id ID               ids are uuids <ID>-<kind>-4000-8000-<n> (default: 8 random hex digits)\n"
          "\n",
          out);
    fputs("Credentials and services (flags win over the environment):\n"
          "  --jwt-secret S            env JWT_SECRET: slotbench mints its own HS256 tokens: an admin per\n"
          "                            instructor, a fresh student per steady or mixed hold, and --users\n"
          "                            students for burst and hot-reject (run the server with its hold cap\n"
          "                            and rate limit raised, or they decide results)\n"
          "  --webhook-secret S        env PAYMENT_WEBHOOK_SECRET: signs payment callbacks\n"
          "  --database-url URL        env DATABASE_URL: Postgres for the audit\n"
          "  --redis-url URL           env REDIS_URL: Redis for the audit (redis://[:pw@]host:port[/db])\n"
          "\n"
          "Output:\n"
          "  --json FILE               the report as JSON too (\"-\": stdout)\n"
          "  --plot DIR                DIR/<scenario>-latency.png: p50/p90/p99 per second (needs gnuplot on\n"
          "                            PATH, else the .dat only)\n"
          "  --confirmed-out FILE      the confirmed booking uuids, one per line (for `slotbench audit`)\n"
          "  -q, --quiet               no progress lines on stderr\n"
          "\n"
          "Baseline:\n"
          "  --baseline pg-rowlock     burst only: instead of HTTP, the same clients, requests, slots and\n"
          "                            seed against a Postgres slots table with SELECT ... FOR UPDATE\n"
          "  --pg-connections N        libpq connections the baseline opens at most (default 50)\n"
          "\n"
          "Audit only:\n"
          "  slotbench audit checks Postgres again for the instructors whose ids start with\n"
          "  --instructor-prefix (e.g. <run id>-): no double booking, and every uuid in\n"
          "  --confirmed FILE present as paid/confirmed.\n"
          "\n"
          "Exit status: 0 run completed and audit passed; 1 audit failed or the run could not be done;\n"
          "2 usage error.\n",
          out);
}

static int bad(const char *opt, const char *val)
{
    fprintf(stderr, "slotbench: bad value for %s: '%s' (see --help)\n", opt, val);
    return -1;
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return bad(opt, s);
    *out = v;
    return 0;
}

static int parse_int(const char *opt, const char *s, int min, int max, int *out)
{
    uint64_t v;
    if (parse_u64(opt, s, (uint64_t)min, (uint64_t)max, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
        return bad(opt, s);
    *out = v;
    return 0;
}

/* http://host[:port][/]: a numeric address ("localhost" means 127.0.0.1); IPv6 in brackets. */
static int parse_url(const char *url, struct bench_options *o)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        return bad("--url", url);
    p += 7;
    const char *host = p;
    size_t hlen;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL)
            return bad("--url", url);
        host = p + 1;
        hlen = (size_t)(close - host);
        p = close + 1;
    } else {
        hlen = strcspn(p, ":/");
        p += hlen;
    }
    if (hlen == 0 || hlen >= sizeof(o->host))
        return bad("--url", url);
    o->port = 80;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return bad("--url", url);
        o->port = (int)port;
        p = end;
    }
    if (*p != '\0' && strcmp(p, "/") != 0)
        return bad("--url", url);
    snprintf(o->host, sizeof(o->host), "%.*s", (int)hlen, host);
    if (strcmp(o->host, "localhost") == 0)
        snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->host_header, sizeof(o->host_header), "%s%.*s%s:%d", host[-1] == '[' ? "[" : "", (int)hlen, host,
             host[-1] == '[' ? "]" : "", o->port);
    return 0;
}

enum {
    OPT_URL = 256,
    OPT_RATE,
    OPT_DRAIN,
    OPT_CONNECT,
    OPT_SLOTS,
    OPT_INSTRUCTORS,
    OPT_USERS,
    OPT_HOLD,
    OPT_EXPIRE_HOLD,
    OPT_SLOT_MINUTES,
    OPT_CONFIRM,
    OPT_CANCEL,
    OPT_EXPIRE,
    OPT_SEED,
    OPT_RUN_ID,
    OPT_JWT,
    OPT_HOOK,
    OPT_DB,
    OPT_REDIS,
    OPT_JSON,
    OPT_PLOT,
    OPT_CONFIRMED_OUT,
    OPT_BASELINE,
    OPT_PG_CONNECTIONS,
    OPT_PREFIX,
    OPT_CONFIRMED,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"connections", required_argument, NULL, 'c'},
    {"requests", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'd'},
    {"rate", required_argument, NULL, OPT_RATE},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT},
    {"slots", required_argument, NULL, OPT_SLOTS},
    {"instructors", required_argument, NULL, OPT_INSTRUCTORS},
    {"users", required_argument, NULL, OPT_USERS},
    {"hold-seconds", required_argument, NULL, OPT_HOLD},
    {"expire-hold-seconds", required_argument, NULL, OPT_EXPIRE_HOLD},
    {"slot-minutes", required_argument, NULL, OPT_SLOT_MINUTES},
    {"confirm-pct", required_argument, NULL, OPT_CONFIRM},
    {"cancel-pct", required_argument, NULL, OPT_CANCEL},
    {"expire-pct", required_argument, NULL, OPT_EXPIRE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"run-id", required_argument, NULL, OPT_RUN_ID},
    {"jwt-secret", required_argument, NULL, OPT_JWT},
    {"webhook-secret", required_argument, NULL, OPT_HOOK},
    {"database-url", required_argument, NULL, OPT_DB},
    {"redis-url", required_argument, NULL, OPT_REDIS},
    {"json", required_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"confirmed-out", required_argument, NULL, OPT_CONFIRMED_OUT},
    {"baseline", required_argument, NULL, OPT_BASELINE},
    {"pg-connections", required_argument, NULL, OPT_PG_CONNECTIONS},
    {"instructor-prefix", required_argument, NULL, OPT_PREFIX},
    {"confirmed", required_argument, NULL, OPT_CONFIRMED},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_option(struct cli *c, int opt, const char *arg)
{
    struct bench_options *o = &c->o;
    switch (opt) {
    case OPT_URL:
        c->url = arg;
        return 0;
    case 'c':
        c->has_connections = true;
        return parse_int("--connections", arg, 1, 100000, &o->connections);
    case 'n':
        c->has_requests = true;
        return parse_u64("--requests", arg, 1, UINT64_MAX / 2, &o->requests);
    case 'd':
        c->has_seconds = true;
        return parse_double("--duration", arg, 0.001, 86400, &o->seconds);
    case OPT_RATE:
        return parse_double("--rate", arg, 0, 1e8, &o->rate);
    case OPT_DRAIN:
        return parse_double("--drain", arg, 0, 3600, &o->drain_seconds);
    case OPT_CONNECT:
        return parse_double("--connect-timeout", arg, 0.001, 3600, &o->connect_seconds);
    case OPT_SLOTS:
        c->has_slots = true;
        return parse_int("--slots", arg, 1, BENCH_MAX_HOT_SLOTS, &o->slots);
    case OPT_INSTRUCTORS:
        c->has_instructors = true;
        return parse_int("--instructors", arg, 1, 1000000, &o->instructors);
    case OPT_USERS:
        c->has_users = true;
        return parse_int("--users", arg, 0, 10000000, &o->users);
    case OPT_HOLD:
        return parse_int("--hold-seconds", arg, 1, 86400, &o->hold_seconds);
    case OPT_EXPIRE_HOLD:
        return parse_int("--expire-hold-seconds", arg, 1, 600, &o->expire_hold_seconds);
    case OPT_SLOT_MINUTES:
        return parse_int("--slot-minutes", arg, 15, 24 * 60, &o->slot_minutes);
    case OPT_CONFIRM:
        return parse_int("--confirm-pct", arg, 0, 100, &o->confirm_pct);
    case OPT_CANCEL:
        return parse_int("--cancel-pct", arg, 0, 100, &o->cancel_pct);
    case OPT_EXPIRE:
        return parse_int("--expire-pct", arg, 0, 100, &o->expire_pct);
    case OPT_SEED:
        return parse_u64("--seed", arg, 0, UINT64_MAX, &o->seed);
    case OPT_RUN_ID:
        if (strlen(arg) == 0 || strlen(arg) > 16 || strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(arg))
            return bad("--run-id (1-16 of [a-z0-9])", arg);
        snprintf(o->run_id, sizeof(o->run_id), "%s", arg);
        return 0;
    case OPT_JWT:
        o->jwt_secret = arg;
        return 0;
    case OPT_HOOK:
        o->webhook_secret = arg;
        return 0;
    case OPT_DB:
        o->database_url = arg;
        return 0;
    case OPT_REDIS:
        o->redis_url = arg;
        return 0;
    case OPT_JSON:
        c->json_path = arg;
        return 0;
    case OPT_PLOT:
        c->plot_dir = arg;
        return 0;
    case OPT_CONFIRMED_OUT:
        o->confirmed_out = arg;
        return 0;
    case OPT_BASELINE:
        if (strcmp(arg, "pg-rowlock") != 0)
            return bad("--baseline (only pg-rowlock)", arg);
        c->baseline = arg;
        return 0;
    case OPT_PG_CONNECTIONS:
        return parse_int("--pg-connections", arg, 1, 10000, &c->pg_connections);
    case OPT_PREFIX:
        c->prefix = arg;
        return 0;
    case OPT_CONFIRMED:
        c->confirmed_in = arg;
        return 0;
    case 'q':
        o->quiet = 1;
        return 0;
    default:
        return -1;
    }
}

static void set_defaults(struct cli *c)
{
    struct bench_options *o = &c->o;
    memset(c, 0, sizeof(*c));
    c->url = "http://127.0.0.1:8080";
    c->pg_connections = 50;
    o->drain_seconds = 5;
    o->connect_seconds = 10;
    o->hold_seconds = 60;
    o->expire_hold_seconds = 3;
    o->slot_minutes = 60;
    o->confirm_pct = 20;
    o->cancel_pct = 10;
    o->expire_pct = 10;
    o->instructors = 200;
    o->seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
}

/* What the scenario implies where the command line said nothing. */
static int scenario_defaults(struct cli *c)
{
    struct bench_options *o = &c->o;
    static const char *known[] = {"burst", "steady", "mixed", "hot-reject", "livez", "availability"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok = ok || strcmp(o->scenario, known[i]) == 0;
    if (!ok) {
        fprintf(stderr,
                "slotbench: unknown scenario '%s' (burst, steady, mixed, hot-reject, livez, availability, audit)\n",
                o->scenario);
        return -1;
    }
    bool burst = strcmp(o->scenario, "burst") == 0;
    if (!c->has_connections)
        o->connections = burst ? 1000 : 64;
    if (!c->has_requests)
        o->requests = burst ? 10000 : 200000;
    if (!c->has_seconds)
        o->seconds = burst ? 60 : 30;
    if (!c->has_slots)
        o->slots = burst ? 10 : 4;
    if (!c->has_users)
        o->users = o->connections;
    if (o->slot_minutes % 15 != 0)
        return bad("--slot-minutes (a multiple of 15)", "");
    if (o->confirm_pct + o->cancel_pct + o->expire_pct > 100) {
        fprintf(stderr, "slotbench: --confirm-pct + --cancel-pct + --expire-pct must not exceed 100\n");
        return -1;
    }
    if (c->baseline != NULL && !burst) {
        fprintf(stderr, "slotbench: --baseline pg-rowlock works with burst only\n");
        return -1;
    }
    bool hot = burst || strcmp(o->scenario, "hot-reject") == 0;
    if (c->has_users && (!hot || c->baseline != NULL)) {
        fprintf(stderr, "slotbench: --users works with burst and hot-reject against slotlockd only\n");
        return -1;
    }
    return 0;
}

static int need(const char *what, const char *flag, const char *env)
{
    fprintf(stderr, "slotbench: %s missing: give %s or set %s\n", what, flag, env);
    return -1;
}

/* Secrets and service URLs from the environment where no flag gave them. */
static int credentials(struct cli *c)
{
    struct bench_options *o = &c->o;
    if (o->jwt_secret == NULL)
        o->jwt_secret = getenv("JWT_SECRET");
    if (o->webhook_secret == NULL)
        o->webhook_secret = getenv("PAYMENT_WEBHOOK_SECRET");
    if (o->database_url == NULL)
        o->database_url = getenv("DATABASE_URL");
    if (o->redis_url == NULL)
        o->redis_url = getenv("REDIS_URL");
    if (c->audit_only)
        return o->database_url == NULL ? need("Postgres URL", "--database-url", "DATABASE_URL") : 0;
    bool audited = strcmp(o->scenario, "livez") != 0 && strcmp(o->scenario, "availability") != 0;
    if (o->database_url == NULL && (c->baseline != NULL || audited))
        return need("Postgres URL", "--database-url", "DATABASE_URL");
    if (c->baseline != NULL || strcmp(o->scenario, "livez") == 0)
        return 0;
    if (o->jwt_secret == NULL || o->jwt_secret[0] == '\0')
        return need("JWT secret", "--jwt-secret", "JWT_SECRET");
    if (o->webhook_secret == NULL || o->webhook_secret[0] == '\0')
        return need("webhook secret", "--webhook-secret", "PAYMENT_WEBHOOK_SECRET");
    if (o->redis_url == NULL && audited)
        return need("Redis URL", "--redis-url", "REDIS_URL");
    return 0;
}

static int parse_cli(struct cli *c, int argc, char **argv)
{
    set_defaults(c);
    if (argc >= 2 && strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0 && argv[1][0] != '-') {
        c->o.scenario = argv[1];
        argv++;
        argc--;
    }
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:n:d:qh", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (opt == '?' || parse_option(c, opt, optarg) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "slotbench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (c->o.scenario == NULL) {
        fprintf(stderr,
                "slotbench: no scenario given (burst, steady, mixed, hot-reject, livez, availability; --help)\n");
        return -1;
    }
    if (strcmp(c->o.scenario, "audit") == 0) {
        c->audit_only = true;
        if (c->prefix == NULL) {
            fprintf(stderr, "slotbench: audit needs --instructor-prefix\n");
            return -1;
        }
        return credentials(c);
    }
    if (parse_url(c->url, &c->o) != 0 || scenario_defaults(c) != 0)
        return -1;
    return credentials(c);
}

static void make_run_id(struct bench_options *o)
{
    if (o->run_id[0] != '\0')
        return;
    unsigned char raw[4];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        uint64_t t = (uint64_t)time(NULL) ^ o->seed;
        memcpy(raw, &t, sizeof(raw));
    }
    snprintf(o->run_id, sizeof(o->run_id), "%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3]);
}

/* A thousand connections need a thousand descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run(const struct cli *c, struct bench_result *res)
{
    if (c->audit_only)
        return bench_scenario_audit_only(c->o.database_url, c->prefix, c->confirmed_in, res);
    if (c->baseline != NULL) {
        struct bench_pg_options po = {
            .conninfo = c->o.database_url,
            .clients = c->o.connections,
            .max_connections = c->pg_connections,
            .requests = c->o.requests,
            .slots = c->o.slots,
            .max_seconds = c->o.seconds,
            .seed = c->o.seed,
        };
        return bench_baseline_pg_rowlock(&po, res);
    }
    return bench_scenario_run(&c->o, res);
}

int main(int argc, char **argv)
{
    struct cli c;
    if (parse_cli(&c, argc, argv) != 0)
        return EXIT_USAGE;
    make_run_id(&c.o);
    raise_fd_limit();
    struct bench_result *res = calloc(1, sizeof(*res));
    if (res == NULL)
        return EXIT_AUDIT;
    if (c.plot_dir != NULL)
        res->series = calloc(BENCH_MAX_SECONDS, sizeof(*res->series));
    if (!c.o.quiet && !c.audit_only)
        fprintf(stderr, "slotbench: run id %s (instructors %s-0000-4000-8000-<n>), seed %" PRIu64 "\n", c.o.run_id,
                c.o.run_id, c.o.seed);
    int rc = run(&c, res);
    int status = 0;
    if (rc != 0) {
        fprintf(stderr, "slotbench: the run could not be completed\n");
        status = EXIT_AUDIT;
    }
    bench_report_print(stdout, res);
    fflush(stdout);
    if (c.json_path != NULL && bench_report_json(c.json_path, res) != 0)
        status = EXIT_AUDIT;
    if (c.plot_dir != NULL && res->series != NULL && bench_report_plot(c.plot_dir, res) != 0)
        status = EXIT_AUDIT;
    if (res->audit.ran && !res->audit.passed)
        status = EXIT_AUDIT;
    free(res->series);
    free(res);
    return status;
}
