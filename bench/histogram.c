/*
 * Log-linear histogram (see histogram.h). Values below 2^BH_SUB_BITS get a
 * bucket each; above, every power of two [2^e, 2^(e+1)) is cut into
 * 2^BH_SUB_BITS equal buckets of width 2^(e - BH_SUB_BITS), so a bucket is
 * never wider than 1/128 of the values it holds.
 */
#include "histogram.h"

#include <string.h>

#define SUB_COUNT ((uint64_t)1 << BH_SUB_BITS)

void bench_histogram_init(struct bench_histogram *h)
{
    memset(h, 0, sizeof(*h));
}

int bench_histogram_bucket(uint64_t us)
{
    if (us >= BH_MAX_US)
        return BH_BUCKETS - 1;
    if (us < SUB_COUNT)
        return (int)us;
    int e = 63 - __builtin_clzll(us);
    int shift = e - BH_SUB_BITS;
    uint64_t sub = (us >> shift) - SUB_COUNT;
    return (int)((uint64_t)(shift + 1) * SUB_COUNT + sub);
}

uint64_t bench_histogram_bucket_upper(int bucket)
{
    if (bucket < (int)SUB_COUNT)
        return (uint64_t)(bucket < 0 ? 0 : bucket);
    if (bucket >= BH_BUCKETS)
        bucket = BH_BUCKETS - 1;
    int shift = bucket / (int)SUB_COUNT - 1;
    uint64_t sub = (uint64_t)bucket % SUB_COUNT;
    uint64_t lower = (SUB_COUNT + sub) << shift;
    return lower + ((uint64_t)1 << shift) - 1;
}

void bench_histogram_record(struct bench_histogram *h, uint64_t us)
{
    if (us == 0)
        us = 1;
    if (us > BH_MAX_US)
        us = BH_MAX_US;
    h->counts[bench_histogram_bucket(us)]++;
    if (h->total == 0 || us < h->min_us)
        h->min_us = us;
    if (us > h->max_us)
        h->max_us = us;
    h->total++;
    h->sum_us += (long double)us;
}

void bench_histogram_merge(struct bench_histogram *into, const struct bench_histogram *from)
{
    if (from->total == 0)
        return;
    for (int i = 0; i < BH_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    if (into->total == 0 || from->min_us < into->min_us)
        into->min_us = from->min_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
    into->total += from->total;
    into->sum_us += from->sum_us;
}

uint64_t bench_histogram_percentile(const struct bench_histogram *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p > 100.0)
        p = 100.0;
    /* The rank of the value at p: ceil(p% of total), at least the first value. */
    long double exact = (long double)p / 100.0L * (long double)h->total;
    uint64_t rank = (uint64_t)exact;
    if ((long double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < BH_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t upper = bench_histogram_bucket_upper(i);
            return upper < h->max_us ? upper : h->max_us;
        }
    }
    return h->max_us;
}

double bench_histogram_mean(const struct bench_histogram *h)
{
    if (h->total == 0)
        return 0.0;
    return (double)(h->sum_us / (long double)h->total);
}
