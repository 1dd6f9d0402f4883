#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "slk/metrics.h"
#include "slk/routes.h"

#define MS 1000000ULL
#define THREADS 4
#define PER_THREAD 100000

/* Metrics are process-wide, so each test uses series no other test touches. */

static char *render(void)
{
    size_t len = 0;
    char *text = slk_metrics_render(&len);

    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* The exact line, start to end. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
        p += n;
    }
    fail_msg("missing line: %s", line);
}

/* The value of the series whose line starts with "series ", or -1 when absent. */
static long long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;

    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p += n;
    }
    return -1;
}

static void test_request_counter_and_histogram(void **state)
{
    char *text;

    (void)state;
    slk_metrics_request(SLK_ROUTE_BOOKING_CREATE, 201, 50000);
    slk_metrics_request(SLK_ROUTE_BOOKING_CREATE, 201, 1 * MS); /* on a bound: le is inclusive */
    slk_metrics_request(SLK_ROUTE_BOOKING_CREATE, 409, 3 * MS);
    slk_metrics_request(SLK_ROUTE_BOOKING_CREATE, 599, 20000 * MS);
    text = render();

    assert_line(text, "# HELP slotlock_http_requests_total HTTP requests answered, by route and status.");
    assert_line(text, "# TYPE slotlock_http_requests_total counter");
    assert_line(text, "# TYPE slotlock_http_request_duration_seconds histogram");
    assert_line(text, "slotlock_http_requests_total{route=\"booking_create\",status=\"201\"} 2");
    assert_line(text, "slotlock_http_requests_total{route=\"booking_create\",status=\"409\"} 1");
    assert_line(text, "slotlock_http_requests_total{route=\"booking_create\",status=\"other\"} 1");

    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"0.0001\"} 1");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"0.0005\"} 1");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"0.001\"} 2");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"0.0025\"} 2");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"0.005\"} 3");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"10\"} 3");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_create\",le=\"+Inf\"} 4");
    assert_line(text, "slotlock_http_request_duration_seconds_sum{route=\"booking_create\"} 20.004050000");
    assert_line(text, "slotlock_http_request_duration_seconds_count{route=\"booking_create\"} 4");

    /* Series never recorded stay out of the output. */
    assert_null(strstr(text, "route=\"livez\""));
    assert_null(strstr(text, "route=\"booking_create\",status=\"200\""));
    free(text);
}

static void test_unknown_route_counts_as_none(void **state)
{
    char *text;

    (void)state;
    slk_metrics_request(SLK_ROUTE_NONE, 404, MS);
    slk_metrics_request(-7, 404, MS);
    slk_metrics_request(SLK_ROUTE_NONE + 5, 400, MS);
    text = render();
    assert_line(text, "slotlock_http_requests_total{route=\"none\",status=\"404\"} 2");
    assert_line(text, "slotlock_http_requests_total{route=\"none\",status=\"400\"} 1");
    assert_line(text, "slotlock_http_request_duration_seconds_count{route=\"none\"} 3");
    free(text);
}

static void test_holds_backends_and_connections(void **state)
{
    char *text;

    (void)state;
    slk_metrics_hold(SLK_HOLD_TAKEN);
    slk_metrics_hold(SLK_HOLD_TAKEN);
    slk_metrics_hold(SLK_HOLD_REJECTED);
    slk_metrics_hold((enum slk_hold_outcome)99);
    slk_metrics_backend_call(SLK_BACKEND_PG, 2 * MS, 0);
    slk_metrics_backend_call(SLK_BACKEND_PG, 6000 * MS, 1);
    slk_metrics_backend_call((enum slk_backend)7, MS, 1);
    slk_metrics_connections_add(3);
    slk_metrics_connections_add(-1);
    text = render();

    assert_line(text, "# TYPE slotlock_holds_total counter");
    assert_line(text, "slotlock_holds_total{outcome=\"taken\"} 2");
    assert_line(text, "slotlock_holds_total{outcome=\"rejected\"} 1");
    assert_line(text, "slotlock_holds_total{outcome=\"error\"} 0");

    assert_line(text, "# TYPE slotlock_backend_call_duration_seconds histogram");
    assert_line(text, "slotlock_backend_call_duration_seconds_bucket{backend=\"postgres\",le=\"0.001\"} 0");
    assert_line(text, "slotlock_backend_call_duration_seconds_bucket{backend=\"postgres\",le=\"0.0025\"} 1");
    assert_line(text, "slotlock_backend_call_duration_seconds_bucket{backend=\"postgres\",le=\"5\"} 1");
    assert_line(text, "slotlock_backend_call_duration_seconds_bucket{backend=\"postgres\",le=\"10\"} 2");
    assert_line(text, "slotlock_backend_call_duration_seconds_sum{backend=\"postgres\"} 6.002000000");
    assert_line(text, "slotlock_backend_call_duration_seconds_count{backend=\"postgres\"} 2");
    assert_line(text, "# TYPE slotlock_backend_errors_total counter");
    assert_line(text, "slotlock_backend_errors_total{backend=\"postgres\"} 1");

    assert_line(text, "# TYPE slotlock_open_connections gauge");
    assert_line(text, "slotlock_open_connections 2");
    free(text);
    slk_metrics_connections_add(-2);
}

static void *record_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        slk_metrics_request(SLK_ROUTE_BOOKING_GET, i % 2 == 0 ? 200 : 404, MS);
        slk_metrics_hold(SLK_HOLD_GRANTED);
        slk_metrics_backend_call(SLK_BACKEND_REDIS, MS / 2, i % 4 == 0);
        slk_metrics_connections_add(1);
        slk_metrics_connections_add(-1);
    }
    return NULL;
}

/* While writers run, every snapshot is still a well-formed cumulative histogram. */
static void check_snapshot(const char *text)
{
    const char *prefix = "slotlock_http_request_duration_seconds_bucket{route=\"booking_get\",le=\"";
    long long prev = 0, inf = -1, count;
    const char *p = text;

    while ((p = strstr(p, prefix)) != NULL) {
        const char *sp = strchr(p, ' ');
        long long v = strtoll(sp + 1, NULL, 10);

        assert_true(v >= prev);
        prev = v;
        if (strncmp(p + strlen(prefix), "+Inf", 4) == 0)
            inf = v;
        p = sp;
    }
    count = value_of(text, "slotlock_http_request_duration_seconds_count{route=\"booking_get\"}");
    assert_int_equal(count, inf);
}

static void test_concurrent_updates_are_exact(void **state)
{
    pthread_t threads[THREADS];
    char *before = render(), *text;
    long long granted0 = value_of(before, "slotlock_holds_total{outcome=\"granted\"}");
    long long redis_err0 = value_of(before, "slotlock_backend_errors_total{backend=\"redis\"}");

    (void)state;
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, record_many, NULL), 0);
    for (int i = 0; i < 20; i++) {
        text = render();
        check_snapshot(text);
        free(text);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    text = render();

    assert_line(text, "slotlock_http_requests_total{route=\"booking_get\",status=\"200\"} 200000");
    assert_line(text, "slotlock_http_requests_total{route=\"booking_get\",status=\"404\"} 200000");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_get\",le=\"0.0005\"} 0");
    assert_line(text, "slotlock_http_request_duration_seconds_bucket{route=\"booking_get\",le=\"0.001\"} 400000");
    assert_line(text, "slotlock_http_request_duration_seconds_sum{route=\"booking_get\"} 400.000000000");
    assert_line(text, "slotlock_http_request_duration_seconds_count{route=\"booking_get\"} 400000");
    assert_line(text, "slotlock_backend_call_duration_seconds_count{backend=\"redis\"} 400000");
    assert_line(text, "slotlock_backend_call_duration_seconds_sum{backend=\"redis\"} 200.000000000");
    assert_int_equal(value_of(text, "slotlock_holds_total{outcome=\"granted\"}") - granted0, THREADS * PER_THREAD);
    assert_int_equal(value_of(text, "slotlock_backend_errors_total{backend=\"redis\"}") - redis_err0,
                     THREADS * PER_THREAD / 4);
    assert_line(text, "slotlock_open_connections 0");
    free(before);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_counter_and_histogram),
        cmocka_unit_test(test_unknown_route_counts_as_none),
        cmocka_unit_test(test_holds_backends_and_connections),
        cmocka_unit_test(test_concurrent_updates_are_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
