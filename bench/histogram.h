/*
 * Log-linear latency histogram: values in microseconds from 1 µs to about
 * an hour; every bucket is at most 1/128 of its value wide, so any
 * percentile read from it is within 1 % of the recorded value. Fixed size,
 * no allocation while recording; histograms of the same shape merge by
 * adding counts.
 */
#ifndef SLOTBENCH_HISTOGRAM_H
#define SLOTBENCH_HISTOGRAM_H

#include <stdint.h>

#define BH_SUB_BITS 7 /* 128 linear sub-buckets per power of two */
#define BH_MAX_US ((uint64_t)1 << 32)
#define BH_BUCKETS ((32 - BH_SUB_BITS + 1) << BH_SUB_BITS)

struct bench_histogram {
    uint64_t counts[BH_BUCKETS];
    uint64_t total;
    uint64_t min_us, max_us; /* exact */
    long double sum_us;
};

void bench_histogram_init(struct bench_histogram *h);
/* Values above BH_MAX_US are clamped to it; 0 counts as 1 µs. */
void bench_histogram_record(struct bench_histogram *h, uint64_t us);
void bench_histogram_merge(struct bench_histogram *into, const struct bench_histogram *from);
/* The value at percentile p (0 < p <= 100): the upper edge of the bucket holding that rank, capped at max_us. 0 when
 * empty. */
uint64_t bench_histogram_percentile(const struct bench_histogram *h, double p);
double bench_histogram_mean(const struct bench_histogram *h);

/* Bucket mapping, exposed for tests. */
int bench_histogram_bucket(uint64_t us);
uint64_t bench_histogram_bucket_upper(int bucket);

#endif
