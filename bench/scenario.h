/*
 * The scenarios of slotbench (burst, steady, mixed, hot-reject, livez):
 * setup over the API, the measured phase on the load generator, the
 * follow-up (winners pay, a share confirmed or cancelled), and the audit.
 */
#ifndef SLOTBENCH_SCENARIO_H
#define SLOTBENCH_SCENARIO_H

#include <stdint.h>

#include "result.h"

struct bench_options {
    const char *scenario;
    char host[64]; /* numeric address from --url */
    int port;
    char host_header[96]; /* as sent in Host: */
    int connections;
    double rate; /* 0 = closed loop */
    uint64_t requests;
    double seconds;
    double drain_seconds;
    double connect_seconds;
    int slots;       /* hot slots (burst, hot-reject) */
    int users;       /* burst, hot-reject: students clicking again and again; 0 = a new one per attempt */
    int instructors; /* steady, mixed */
    int hold_seconds;
    int expire_hold_seconds;
    int slot_minutes; /* booking length, a multiple of 15 */
    int confirm_pct, cancel_pct, expire_pct;
    const char *jwt_secret, *webhook_secret, *database_url, *redis_url;
    const char *confirmed_out; /* write the confirmed booking uuids here (for `slotbench audit`) */
    uint64_t seed;
    char run_id[24];
    int quiet;
};

/*
 * Runs o->scenario against the server and fills res (including the audit).
 * Returns 0 when the run completed (whatever the audit says), -1 when it
 * could not (server unreachable, setup refused; message on stderr).
 */
int bench_scenario_run(const struct bench_options *o, struct bench_result *res);

/*
 * `slotbench audit`: the Postgres part of the audit alone, for the
 * instructors whose ids start with prefix and the confirmed uuids listed
 * one per line in confirmed_path (may be NULL). Fills res->audit.
 */
int bench_scenario_audit_only(const char *database_url, const char *prefix, const char *confirmed_path,
                              struct bench_result *res);

#endif
