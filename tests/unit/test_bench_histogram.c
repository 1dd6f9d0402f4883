/* bench/histogram.c: exact below 128 µs, within 1 % above, merge, clamp, empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <math.h>

#include "histogram.h"

static struct bench_histogram *fresh(void)
{
    struct bench_histogram *h = malloc(sizeof(*h));
    assert_non_null(h);
    bench_histogram_init(h);
    return h;
}

static void test_empty(void **state)
{
    (void)state;
    struct bench_histogram *h = fresh();
    assert_int_equal(bench_histogram_percentile(h, 50), 0);
    assert_int_equal(bench_histogram_percentile(h, 100), 0);
    assert_true(bench_histogram_mean(h) == 0.0);
    assert_int_equal(h->total, 0);
    free(h);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    struct bench_histogram *h = fresh();
    for (uint64_t v = 1; v <= 100; v++)
        bench_histogram_record(h, v);
    /* 100 values 1..100: the p-th percentile is exactly p. */
    assert_int_equal(bench_histogram_percentile(h, 1), 1);
    assert_int_equal(bench_histogram_percentile(h, 50), 50);
    assert_int_equal(bench_histogram_percentile(h, 90), 90);
    assert_int_equal(bench_histogram_percentile(h, 99), 99);
    assert_int_equal(bench_histogram_percentile(h, 100), 100);
    assert_int_equal(h->min_us, 1);
    assert_int_equal(h->max_us, 100);
    assert_true(bench_histogram_mean(h) > 50.49 && bench_histogram_mean(h) < 50.51);
    for (uint64_t v = 0; v < 128; v++)
        assert_int_equal(bench_histogram_bucket_upper(bench_histogram_bucket(v)), v);
    free(h);
}

static void test_zero_counts_as_one(void **state)
{
    (void)state;
    struct bench_histogram *h = fresh();
    bench_histogram_record(h, 0);
    assert_int_equal(h->min_us, 1);
    assert_int_equal(bench_histogram_percentile(h, 50), 1);
    free(h);
}

static void test_bucket_bounds(void **state)
{
    (void)state;
    /* Every value lies in its bucket, the bucket is at most 1/128 of it wide, and buckets are monotonic. */
    int prev = -1;
    for (uint64_t v = 1; v < ((uint64_t)1 << 32); v = v < 4096 ? v + 1 : v + v / 97 + 1) {
        int b = bench_histogram_bucket(v);
        assert_true(b >= prev);
        assert_true(b >= 0 && b < BH_BUCKETS);
        uint64_t upper = bench_histogram_bucket_upper(b);
        assert_true(upper >= v);
        assert_true((double)(upper - v) <= (double)v / 128.0);
        prev = b;
    }
    assert_int_equal(bench_histogram_bucket(BH_MAX_US - 1), BH_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n);
    if ((double)rank < (p / 100.0) * (double)n)
        rank++;
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void check_range(uint64_t lo, uint64_t hi, unsigned seed)
{
    enum { N = 100000 };
    uint64_t *vals = malloc(N * sizeof(*vals));
    assert_non_null(vals);
    struct bench_histogram *h = fresh();
    srand(seed);
    for (size_t i = 0; i < N; i++) {
        /* Log-uniform in [lo, hi): every magnitude of the range gets values. */
        double f = (double)rand() / RAND_MAX;
        uint64_t v = (uint64_t)((double)lo * pow((double)hi / (double)lo, f));
        if (v < lo)
            v = lo;
        vals[i] = v;
        bench_histogram_record(h, v);
    }
    qsort(vals, N, sizeof(*vals), cmp_u64);
    const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        uint64_t exact = exact_percentile(vals, N, ps[i]);
        uint64_t got = bench_histogram_percentile(h, ps[i]);
        double err = ((double)got - (double)exact) / (double)exact;
        if (err < 0)
            err = -err;
        if (err > 0.01)
            fail_msg("p%.2f in [%llu, %llu): histogram %llu, exact %llu (%.3f%%)", ps[i], (unsigned long long)lo,
                     (unsigned long long)hi, (unsigned long long)got, (unsigned long long)exact, err * 100);
    }
    assert_int_equal(h->max_us, vals[N - 1]);
    assert_int_equal(h->min_us, vals[0]);
    free(vals);
    free(h);
}

static void test_error_within_one_percent(void **state)
{
    (void)state;
    check_range(1, 1000, 1);
    check_range(100, 100000, 2);
    check_range(1000, 10000000, 3);
    check_range(1, (uint64_t)1 << 31, 4);
}

static void test_merge(void **state)
{
    (void)state;
    struct bench_histogram *a = fresh(), *b = fresh(), *all = fresh();
    for (uint64_t v = 1; v <= 5000; v++) {
        bench_histogram_record(v % 2 ? a : b, v * 7);
        bench_histogram_record(all, v * 7);
    }
    bench_histogram_merge(a, b);
    assert_int_equal(a->total, all->total);
    assert_int_equal(a->min_us, all->min_us);
    assert_int_equal(a->max_us, all->max_us);
    assert_memory_equal(a->counts, all->counts, sizeof(a->counts));
    assert_int_equal(bench_histogram_percentile(a, 99), bench_histogram_percentile(all, 99));
    assert_true(bench_histogram_mean(a) == bench_histogram_mean(all));
    /* Merging into an empty histogram copies min as well. */
    struct bench_histogram *e = fresh();
    bench_histogram_merge(e, b);
    assert_int_equal(e->min_us, b->min_us);
    /* Merging an empty histogram changes nothing. */
    struct bench_histogram *none = fresh();
    bench_histogram_merge(e, none);
    assert_int_equal(e->total, b->total);
    assert_int_equal(e->min_us, b->min_us);
    free(none);
    free(a);
    free(b);
    free(all);
    free(e);
}

static void test_clamp(void **state)
{
    (void)state;
    struct bench_histogram *h = fresh();
    bench_histogram_record(h, BH_MAX_US * 4);
    bench_histogram_record(h, UINT64_MAX);
    assert_int_equal(h->max_us, BH_MAX_US);
    assert_int_equal(h->total, 2);
    assert_int_equal(h->counts[BH_BUCKETS - 1], 2);
    uint64_t p = bench_histogram_percentile(h, 100);
    assert_true(p <= BH_MAX_US && p >= BH_MAX_US - BH_MAX_US / 128);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_zero_counts_as_one),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_error_within_one_percent),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
