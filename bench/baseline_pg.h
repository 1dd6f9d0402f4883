/*
 * The design slotlock replaces, for `slotbench burst --baseline pg-rowlock`:
 * booking guides that keep a slots table in PostgreSQL and take a slot with
 * SELECT … FOR UPDATE inside a transaction. Driven over libpq (async, one
 * connection per client up to a cap) with the same clients, requests and
 * hot slots as the HTTP burst, and measured into the same bench_result.
 */
#ifndef SLOTBENCH_BASELINE_PG_H
#define SLOTBENCH_BASELINE_PG_H

#include <stdint.h>

#include "result.h"

struct bench_pg_options {
    const char *conninfo; /* DATABASE_URL */
    int clients;          /* concurrent clients (requested) */
    int max_connections;  /* libpq connections actually opened: min(clients, this) */
    uint64_t requests;    /* total attempts */
    int slots;            /* hot slots */
    double max_seconds;   /* bound on the measured phase */
    uint64_t seed;
};

/*
 * Creates (or resets) its own table slotbench_slots, runs the burst: each
 * attempt is BEGIN; SELECT … FOR UPDATE on a random hot slot; if free,
 * UPDATE it held; COMMIT (success = 201, taken = 409), and every winner then
 * pays (a second transaction marks it confirmed), as the HTTP burst does.
 * Fills out (scenario "burst", target "pg-rowlock") including the audit:
 * winners per slot must be exactly 1 and the table must agree.
 * Returns 0, or -1 with a message on stderr when PostgreSQL is unusable.
 */
int bench_baseline_pg_rowlock(const struct bench_pg_options *o, struct bench_result *out);

#endif
