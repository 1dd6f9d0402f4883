/*
 * How a bench_result is shown: a table on a stream, the same numbers as
 * JSON (every field of struct bench_result except the per-second series),
 * and a PNG of p50/p90/p99 per second drawn by gnuplot when it is on PATH.
 * Works for any target (the HTTP scenarios and the pg-rowlock baseline).
 */
#ifndef SLOTBENCH_REPORT_H
#define SLOTBENCH_REPORT_H

#include <stdio.h>

#include "result.h"

void bench_report_print(FILE *out, const struct bench_result *r);

/* Writes the JSON document to path ("-" for stdout). Returns 0 or -1 (message on stderr). */
int bench_report_json(const char *path, const struct bench_result *r);

/*
 * Writes dir/<scenario>-latency.png (and the .dat it plots). When gnuplot
 * is not on PATH, prints a note on stderr and returns 0 without a PNG.
 * Returns -1 when the files cannot be written or gnuplot fails.
 */
int bench_report_plot(const char *dir, const struct bench_result *r);

#endif
