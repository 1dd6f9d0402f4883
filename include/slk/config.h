/*
 * Settings from flags and environment (flags win), validated once at start.
 */
#ifndef SLK_CONFIG_H
#define SLK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/common.h"

struct slk_config {
    char *listen_host;
    int listen_port;
    char *redis_url;
    char *database_url;
    char *jwt_secret;
    char *webhook_secret;
    int hold_ttl_seconds; /* default hold_seconds for instructors that set none */
    int workers;
    int log_level; /* SLK_LOG_* */
    bool auth_disabled;
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint64_t request_timeout_ms;
    uint64_t idle_timeout_ms;
    size_t max_connections;
    uint64_t redis_timeout_ms;
    uint64_t pg_timeout_ms;
    int pg_pool_size;
    uint64_t drain_timeout_ms;
    bool migrate; /* apply migrations at start */

    /* Policies (R-CANCEL, R-RESCHED, R-NOSHOW). */
    int cancel_refund_hours;     /* cancelled at least this long before the start: refund_eligible */
    int reschedule_notice_hours; /* the original start must be at least this far away */
    int reschedule_max_days;     /* the new start at most this far ahead */
    int no_show_after_minutes;   /* a no-show may be reported from start + this */
    int no_show_window_hours;    /* ... until start + this */
    /* Abuse caps (R-HOLD). 0 disables. */
    int max_holds_per_student;
    int rate_limit_per_second; /* token bucket refill per client */
    int rate_limit_burst;      /* bucket size */
    /* Idempotency-Key (R-HOLD). */
    int idempotency_ttl_hours;
    uint64_t idempotency_wait_ms; /* a duplicate waits this long for the first reply before 409 */
    /* Outgoing events. */
    char *webhook_url;   /* NULL: events are recorded, not delivered */
    char *events_secret; /* HMAC key of outgoing webhooks; NULL: the payment webhook secret */
    uint64_t webhook_timeout_ms;
    uint64_t webhook_retry_base_ms;
    uint64_t webhook_retry_max_ms;
    /* Tests only: POST /internal/clock shifts the server's clock. */
    bool test_clock;
};

/*
 * Fills cfg from environment then argv (argv[first..argc)). On a bad value
 * or unknown flag writes a message to errbuf and returns SLK_EINVAL (the
 * caller exits 2). Sets *want_help / *want_version for --help / --version.
 *
 * --help/-h and --version/-V anywhere in argv win: the call then returns 0
 * with defaults only, without reading the environment or requiring secrets.
 * After a failure cfg holds nothing to free; after success release it with
 * slk_config_free (which is safe to call twice). errbuf never contains a
 * secret or URL value.
 */
int slk_config_load(struct slk_config *cfg, int argc, char **argv, int first, bool *want_help, bool *want_version,
                    char *errbuf, size_t errlen) SLK_MUST_CHECK;
void slk_config_free(struct slk_config *cfg);
void slk_config_print_usage(void); /* to stdout */

#endif
