/*
 * What one scenario run produced: the numbers of the report (table, JSON,
 * plot) and the audit. Filled by the HTTP load generator or by a baseline
 * driver, printed by report.c.
 */
#ifndef SLOTBENCH_RESULT_H
#define SLOTBENCH_RESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "histogram.h"

#define BENCH_MAX_SECONDS 600 /* per-second latency series (for --plot) */
#define BENCH_MAX_HOT_SLOTS 1024

struct bench_audit {
    bool ran;
    int64_t double_bookings;   /* overlapping active (paid/confirmed) rows per instructor in Postgres */
    int64_t confirmed_missing; /* confirmed replies whose booking Postgres does not have (as confirmed/paid) */
    int64_t leaked_holds;      /* unit keys of holds left to expire still in Redis after their expiry */
    int hot_slots;             /* burst / hot-reject: how many hot slots */
    int64_t winners[BENCH_MAX_HOT_SLOTS]; /* 201 replies per hot slot (burst: must be exactly 1 each) */
    bool winners_checked;                 /* whether winners[] is part of the verdict */
    bool passed;
    char failure[256]; /* the first reason it failed, "" when passed */
    /* Added by slotbench: how much the audit looked at. */
    int64_t confirmed_checked; /* confirmed replies looked up in Postgres */
    int64_t expire_checked;    /* holds left to expire whose unit keys were read back from Redis */
};

struct bench_result {
    char scenario[32]; /* "burst", "steady", "mixed", "hot-reject", "livez" */
    char target[32];   /* "slotlock" or "pg-rowlock" */
    int connections;
    int users;          /* burst, hot-reject: students clicking again and again; 0 = one per attempt; -1 = n/a */
    double rate;        /* requested rate, 0 = closed loop */
    uint64_t requests;  /* replies received (any status) */
    uint64_t successes; /* the scenario's idea of success (holds: 201) */
    uint64_t errors;    /* transport errors, timeouts */
    double seconds;     /* wall time of the measured phase */
    uint64_t status_counts[600];
    struct bench_histogram latency; /* all replies */
    int series_len;                 /* seconds recorded in series[] */
    struct bench_histogram *series; /* one per second of the measured phase (may be NULL) */
    struct bench_audit audit;
    /* Added by slotbench: the follow-up phase (winners paying, confirms, cancels after a run), outside the
     * measured numbers above. */
    uint64_t followup_requests;
    uint64_t followup_ok;     /* replies with the expected status */
    uint64_t followup_failed; /* other statuses and transport errors */
};

#endif
