/*
 * slotlockd: serve (default), migrate, token. See README.md for settings.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slk/auth.h"
#include "slk/config.h"
#include "slk/http.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/routes.h"
#include "slk/router.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define SLK_VERSION "0.1.0"
#define MIGRATE_RETRY_S 30
#define MAX_TOKEN_TTL_S (365LL * 24 * 3600)

static int usage_error(const char *msg)
{
    fprintf(stderr, "slotlockd: %s (try --help)\n", msg);
    return 2;
}

/* slotlockd token --sub ID --role R [--ttl S]: mints a JWT with JWT_SECRET. */
static int cmd_token(int argc, char **argv)
{
    const char *sub = NULL, *role_name = NULL, *secret = getenv("JWT_SECRET");
    long long ttl = 3600;
    for (int i = 2; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            return usage_error("token: every flag needs a value");
        if (strcmp(argv[i], "--sub") == 0)
            sub = value;
        else if (strcmp(argv[i], "--role") == 0)
            role_name = value;
        else if (strcmp(argv[i], "--jwt-secret") == 0)
            secret = value;
        else if (strcmp(argv[i], "--ttl") == 0) {
            char *end;
            errno = 0;
            ttl = strtoll(value, &end, 10);
            if (errno != 0 || *end != '\0' || ttl <= 0 || ttl > MAX_TOKEN_TTL_S)
                return usage_error("token: --ttl must be 1..31536000 seconds");
        } else
            return usage_error("token: unknown flag");
        i++;
    }
    enum slk_role role = role_name != NULL ? slk_role_parse(role_name) : SLK_ROLE_NONE;
    if (sub == NULL || !slk_id_valid(sub, strlen(sub)) || role == SLK_ROLE_NONE)
        return usage_error("token: needs --sub ID --role student|instructor|admin");
    if (secret == NULL || strlen(secret) < 16)
        return usage_error("token: JWT_SECRET (or --jwt-secret) of at least 16 bytes is required");
    char *token =
        slk_jwt_sign(sub, role, slk_clock_now_ms() / 1000 + ttl, (const unsigned char *)secret, strlen(secret));
    if (token == NULL) {
        fprintf(stderr, "slotlockd: could not sign the token\n");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return 0;
}

/* Postgres may still be starting (scripts/run starts it just before us): retry for a while. */
static int migrate(const struct slk_config *cfg)
{
    char err[512];
    for (int attempt = 0; attempt < MIGRATE_RETRY_S; attempt++) {
        if (slk_pg_migrate(cfg->database_url, err, sizeof(err)) == 0) {
            slk_log(SLK_LOG_INFO, "migrations applied", NULL);
            return 0;
        }
        slk_log(SLK_LOG_WARN, "migration failed; retrying", "error", err, NULL);
        sleep(1);
    }
    slk_log(SLK_LOG_ERROR, "giving up on migrations", "error", err, NULL);
    return -1;
}

static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

static int serve(const struct slk_config *cfg)
{
    if (cfg->migrate && migrate(cfg) != 0)
        return 1;
    struct slk_router *router = slk_routes_create();
    struct slk_worker *workers = calloc((size_t)cfg->workers, sizeof(*workers));
    int rc = 1, started = 0;
    if (router == NULL || workers == NULL)
        goto out;
    for (; started < cfg->workers; started++) {
        /* One socket per worker, all bound with SO_REUSEPORT: the kernel spreads connections over them. */
        int fd = slk_listen_socket(cfg->listen_host, cfg->listen_port, 1024);
        if (fd < 0) {
            slk_log(SLK_LOG_ERROR, "cannot listen", "host", cfg->listen_host, "error", slk_strerror(fd), NULL);
            goto stop;
        }
        if (slk_worker_init(&workers[started], started, cfg, router, fd) != 0) {
            slk_log(SLK_LOG_ERROR, "cannot start worker", NULL);
            goto stop;
        }
        if (slk_worker_start(&workers[started]) != 0) {
            slk_log(SLK_LOG_ERROR, "cannot start worker", NULL);
            slk_worker_free(&workers[started]);
            goto stop;
        }
    }
    char addr[300], nworkers[16];
    snprintf(addr, sizeof(addr), "%s:%d", cfg->listen_host, cfg->listen_port);
    snprintf(nworkers, sizeof(nworkers), "%d", cfg->workers);
    slk_log(SLK_LOG_INFO, "listening", "addr", addr, "workers", nworkers, "version", SLK_VERSION, NULL);
    int sig = wait_for_signal();
    slk_log(SLK_LOG_INFO, "draining", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    rc = 0;
stop:
    for (int i = 0; i < started; i++)
        slk_worker_stop(&workers[i]);
    for (int i = 0; i < started; i++) {
        slk_worker_join(&workers[i]);
        slk_worker_free(&workers[i]);
    }
    slk_http_requests_release(); /* what freeing the workers' loops handed to this thread */
    slk_log(SLK_LOG_INFO, "stopped", NULL);
out:
    free(workers);
    slk_router_free(router);
    return rc;
}

int main(int argc, char **argv)
{
    /* Signals are taken by sigwait() in the main thread only; workers inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : "serve";
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc, argv);
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0)
        return usage_error("unknown command");
    int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;

    struct slk_config cfg;
    bool help = false, version = false;
    char err[512];
    if (slk_config_load(&cfg, argc, argv, first, &help, &version, err, sizeof(err)) != 0) {
        fprintf(stderr, "slotlockd: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (help) {
        slk_config_print_usage();
    } else if (version) {
        printf("slotlockd %s\n", SLK_VERSION);
    } else {
        slk_log_set_level(cfg.log_level);
        slk_scripts_init();
        if (cfg.auth_disabled)
            slk_log(SLK_LOG_WARN, "AUTHENTICATION IS DISABLED: every caller is treated as admin", NULL);
        if (cfg.test_clock)
            slk_log(SLK_LOG_WARN, "TEST CLOCK IS ENABLED: anyone can shift this server's clock (tests only)", NULL);
        rc = strcmp(cmd, "migrate") == 0 ? (migrate(&cfg) == 0 ? 0 : 1) : serve(&cfg);
    }
    slk_config_free(&cfg);
    return rc;
}
