#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double per_second(uint64_t n, double seconds)
{
    return seconds > 0 ? (double)n / seconds : 0.0;
}

static void print_latency(FILE *out, const struct bench_histogram *h)
{
    fprintf(out, "  latency (ms)     p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
            (double)bench_histogram_percentile(h, 50) / 1000.0, (double)bench_histogram_percentile(h, 90) / 1000.0,
            (double)bench_histogram_percentile(h, 99) / 1000.0, (double)bench_histogram_percentile(h, 99.9) / 1000.0,
            (double)h->max_us / 1000.0, bench_histogram_mean(h) / 1000.0);
}

static void print_audit(FILE *out, const struct bench_audit *a)
{
    if (!a->ran) {
        fprintf(out, "  audit            not applicable\n");
        return;
    }
    fprintf(out, "  audit            %s%s%s\n", a->passed ? "PASSED" : "FAILED: ", a->passed ? "" : a->failure, "");
    fprintf(out, "    double bookings      %lld\n", (long long)a->double_bookings);
    fprintf(out, "    confirmed missing    %lld (of %lld confirmed replies)\n", (long long)a->confirmed_missing,
            (long long)a->confirmed_checked);
    fprintf(out, "    leaked holds         %lld (of %lld holds left to expire)\n", (long long)a->leaked_holds,
            (long long)a->expire_checked);
    if (a->winners_checked) {
        int slots = a->hot_slots < BENCH_MAX_HOT_SLOTS ? a->hot_slots : BENCH_MAX_HOT_SLOTS;
        fprintf(out, "    winners per hot slot");
        for (int i = 0; i < slots; i++)
            fprintf(out, "%s%lld", i == 0 ? " " : ",", (long long)a->winners[i]);
        fprintf(out, "\n");
    }
}

void bench_report_print(FILE *out, const struct bench_result *r)
{
    fprintf(out, "== %s (%s) ==\n", r->scenario, r->target);
    if (strcmp(r->scenario, "audit") == 0) {
        print_audit(out, &r->audit);
        return;
    }
    fprintf(out, "  connections      %d\n", r->connections);
    if (r->users > 0)
        fprintf(out, "  users            %d, each clicking again and again\n", r->users);
    else if (r->users == 0)
        fprintf(out, "  users            a new one for every attempt\n");
    if (r->rate > 0)
        fprintf(out, "  target rate      %.0f req/s (latency from intended send time)\n", r->rate);
    else
        fprintf(out, "  target rate      closed loop\n");
    fprintf(out, "  seconds          %.3f\n", r->seconds);
    fprintf(out, "  requests         %llu  (%.0f/s)\n", (unsigned long long)r->requests,
            per_second(r->requests, r->seconds));
    fprintf(out, "  successes        %llu  (%.0f/s)\n", (unsigned long long)r->successes,
            per_second(r->successes, r->seconds));
    fprintf(out, "  errors           %llu\n", (unsigned long long)r->errors);
    print_latency(out, &r->latency);
    fprintf(out, "  replies          ");
    int shown = 0;
    for (int s = 0; s < 600; s++) {
        if (r->status_counts[s] != 0)
            fprintf(out, "%s%d: %llu", shown++ ? ", " : "", s, (unsigned long long)r->status_counts[s]);
    }
    fprintf(out, "%s\n", shown ? "" : "none");
    if (r->followup_requests != 0)
        fprintf(out, "  follow-up        %llu requests (payments/confirms/cancels): %llu ok, %llu failed\n",
                (unsigned long long)r->followup_requests, (unsigned long long)r->followup_ok,
                (unsigned long long)r->followup_failed);
    print_audit(out, &r->audit);
}

static json_t *latency_json(const struct bench_histogram *h)
{
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:f}", "p50", (json_int_t)bench_histogram_percentile(h, 50), "p90",
        (json_int_t)bench_histogram_percentile(h, 90), "p99", (json_int_t)bench_histogram_percentile(h, 99), "p999",
        (json_int_t)bench_histogram_percentile(h, 99.9), "max", (json_int_t)h->max_us, "mean", bench_histogram_mean(h));
}

static json_t *audit_json(const struct bench_audit *a)
{
    json_t *winners = json_array();
    int slots = a->hot_slots < BENCH_MAX_HOT_SLOTS ? a->hot_slots : BENCH_MAX_HOT_SLOTS;
    for (int i = 0; i < slots; i++)
        json_array_append_new(winners, json_integer(a->winners[i]));
    return json_pack("{s:b, s:I, s:I, s:I, s:i, s:o, s:b, s:I, s:I, s:b, s:s}", "ran", a->ran, "double_bookings",
                     (json_int_t)a->double_bookings, "confirmed_missing", (json_int_t)a->confirmed_missing,
                     "leaked_holds", (json_int_t)a->leaked_holds, "hot_slots", a->hot_slots, "winners", winners,
                     "winners_checked", a->winners_checked, "confirmed_checked", (json_int_t)a->confirmed_checked,
                     "expire_checked", (json_int_t)a->expire_checked, "passed", a->passed, "failure", a->failure);
}

static json_t *result_json(const struct bench_result *r)
{
    json_t *status = json_object();
    for (int s = 0; s < 600; s++) {
        if (r->status_counts[s] != 0) {
            char key[8];
            snprintf(key, sizeof(key), "%d", s);
            json_object_set_new(status, key, json_integer((json_int_t)r->status_counts[s]));
        }
    }
    json_t *followup = json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)r->followup_requests, "ok",
                                 (json_int_t)r->followup_ok, "failed", (json_int_t)r->followup_failed);
    return json_pack("{s:s, s:s, s:i, s:o, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:o, s:o, s:o}", "scenario",
                     r->scenario, "target", r->target, "connections", r->connections, "users",
                     r->users >= 0 ? json_integer(r->users) : json_null(), "rate", r->rate, "requests",
                     (json_int_t)r->requests, "successes", (json_int_t)r->successes, "errors", (json_int_t)r->errors,
                     "seconds", r->seconds, "requests_per_s", per_second(r->requests, r->seconds), "successes_per_s",
                     per_second(r->successes, r->seconds), "latency_us", latency_json(&r->latency), "status", status,
                     "audit", audit_json(&r->audit), "followup", followup);
}

int bench_report_json(const char *path, const struct bench_result *r)
{
    json_t *doc = result_json(r);
    if (doc == NULL) {
        fprintf(stderr, "slotbench: could not build the JSON report\n");
        return -1;
    }
    int rc;
    if (strcmp(path, "-") == 0) {
        rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        fputc('\n', stdout);
    } else {
        rc = json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    }
    json_decref(doc);
    if (rc != 0)
        fprintf(stderr, "slotbench: cannot write %s\n", path);
    return rc == 0 ? 0 : -1;
}

static int on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return 0;
    while (*path != '\0') {
        size_t len = strcspn(path, ":");
        char full[4096];
        int n = snprintf(full, sizeof(full), "%.*s/%s", (int)len, len == 0 ? "." : path, prog);
        if (n > 0 && (size_t)n < sizeof(full) && access(full, X_OK) == 0)
            return 1;
        path += len;
        if (*path == ':')
            path++;
    }
    return 0;
}

static int write_series(const char *dat, const struct bench_result *r)
{
    FILE *f = fopen(dat, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "# second p50_ms p90_ms p99_ms replies\n");
    for (int s = 0; s < r->series_len && r->series != NULL; s++) {
        const struct bench_histogram *h = &r->series[s];
        if (h->total == 0)
            continue;
        fprintf(f, "%d %.3f %.3f %.3f %llu\n", s, (double)bench_histogram_percentile(h, 50) / 1000.0,
                (double)bench_histogram_percentile(h, 90) / 1000.0, (double)bench_histogram_percentile(h, 99) / 1000.0,
                (unsigned long long)h->total);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int bench_report_plot(const char *dir, const struct bench_result *r)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "slotbench: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char dat[4096], png[4096];
    snprintf(dat, sizeof(dat), "%s/%s-latency.dat", dir, r->scenario);
    snprintf(png, sizeof(png), "%s/%s-latency.png", dir, r->scenario);
    if (write_series(dat, r) != 0) {
        fprintf(stderr, "slotbench: cannot write %s\n", dat);
        return -1;
    }
    if (!on_path("gnuplot")) {
        fprintf(stderr, "slotbench: note: gnuplot is not on PATH (apt-get install gnuplot-nox); wrote %s, no PNG\n",
                dat);
        return 0;
    }
    /* File names go into the gnuplot script between single quotes; refuse ones that would break out of them. */
    if (strchr(dat, '\'') != NULL) {
        fprintf(stderr, "slotbench: --plot directory must not contain a quote\n");
        return -1;
    }
    FILE *gp = popen("gnuplot", "w");
    if (gp == NULL) {
        fprintf(stderr, "slotbench: cannot run gnuplot\n");
        return -1;
    }
    fprintf(gp,
            "set terminal png size 1000,500\nset output '%s'\n"
            "set title 'slotbench %s (%s): latency percentiles per second'\n"
            "set xlabel 'second'\nset ylabel 'ms'\nset grid\nset key left top\n"
            "plot '%s' using 1:2 with lines title 'p50', '' using 1:3 with lines title 'p90', "
            "'' using 1:4 with lines title 'p99'\n",
            png, r->scenario, r->target, dat);
    if (pclose(gp) != 0) {
        fprintf(stderr, "slotbench: gnuplot failed\n");
        return -1;
    }
    fprintf(stderr, "slotbench: wrote %s\n", png);
    return 0;
}
