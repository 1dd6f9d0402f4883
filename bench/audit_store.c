/* The audit's data: Postgres rows over libpq, Redis unit keys over hiredis (both synchronous, after the run). */
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

#define REDIS_BATCH 1024

static const char ACTIVE_SQL[] = "SELECT uuid::text, instructor_id, (extract(epoch FROM start_at) * 1000)::bigint, "
                                 "(extract(epoch FROM end_at) * 1000)::bigint FROM bookings "
                                 "WHERE starts_with(instructor_id, $1) AND status IN ('paid', 'confirmed')";

int bench_audit_pg(const char *conninfo, const char *prefix, const char (*confirmed)[BENCH_UUID_LEN + 1], size_t n,
                   struct bench_audit *a)
{
    int rc = -1;
    PGresult *res = NULL;
    struct bench_interval *rows = NULL;
    char(*found)[BENCH_UUID_LEN + 1] = NULL;
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "slotbench: audit: cannot connect to Postgres: %s", PQerrorMessage(pg));
        goto fail;
    }
    const char *params[1] = {prefix};
    res = PQexecParams(pg, ACTIVE_SQL, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "slotbench: audit query failed: %s", PQerrorMessage(pg));
        goto fail;
    }
    size_t m = (size_t)PQntuples(res);
    rows = calloc(m + 1, sizeof(*rows));
    found = calloc(m + 1, sizeof(*found));
    if (rows == NULL || found == NULL)
        goto fail;
    for (size_t i = 0; i < m; i++) {
        snprintf(found[i], sizeof(found[i]), "%s", PQgetvalue(res, (int)i, 0));
        rows[i].instructor = PQgetvalue(res, (int)i, 1);
        rows[i].start_ms = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
        rows[i].end_ms = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
    }
    a->double_bookings = bench_audit_count_overlaps(rows, m);
    a->confirmed_missing = bench_audit_count_missing(confirmed, n, found, m);
    a->confirmed_checked = (int64_t)n;
    rc = 0;
fail:
    free(rows);
    free(found);
    PQclear(res);
    PQfinish(pg);
    return rc;
}

struct redis_addr {
    char host[256];
    int port;
    char password[256];
    int db;
};

/* redis://[[user]:password@]host[:port][/db]; hiredis 0.14 parses no URLs. */
static int parse_redis_url(const char *url, struct redis_addr *out)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return -1;
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon != NULL ? colon + 1 : p;
        snprintf(out->password, sizeof(out->password), "%.*s", (int)(at - pw), pw);
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof(out->host))
        return -1;
    memcpy(out->host, p, hlen);
    p += hlen;
    if (*p == ':') {
        out->port = (int)strtol(p + 1, (char **)&p, 10);
        if (out->port <= 0 || out->port > 65535)
            return -1;
    }
    if (*p == '/' && p[1] != '\0')
        out->db = (int)strtol(p + 1, NULL, 10);
    return 0;
}

static int redis_simple(redisContext *r, const char *cmd, const char *arg)
{
    redisReply *rep = redisCommand(r, cmd, arg);
    int ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (rep != NULL)
        freeReplyObject(rep);
    return ok ? 0 : -1;
}

static redisContext *redis_open(const char *url)
{
    struct redis_addr addr;
    if (parse_redis_url(url, &addr) != 0) {
        fprintf(stderr, "slotbench: bad Redis URL %s\n", url);
        return NULL;
    }
    struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout(addr.host, addr.port, tv);
    if (r == NULL || r->err) {
        fprintf(stderr, "slotbench: audit: cannot connect to Redis: %s\n", r != NULL ? r->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(r, tv);
    if (addr.password[0] != '\0' && redis_simple(r, "AUTH %s", addr.password) != 0)
        goto fail;
    char db[16];
    snprintf(db, sizeof(db), "%d", addr.db);
    if (addr.db != 0 && redis_simple(r, "SELECT %s", db) != 0)
        goto fail;
    return r;
fail:
    if (r != NULL)
        redisFree(r);
    return NULL;
}

/* Sends GETs for holds[from, to) and reads them back; counts each hold once however many of its units leaked. */
static int check_batch(redisContext *r, const struct bench_unit_hold *holds, size_t from, size_t to, int64_t *leaked)
{
    for (size_t i = from; i < to; i++) {
        for (int u = 0; u < holds[i].units; u++) {
            long long minute = (long long)(holds[i].first_minute + (int64_t)u * holds[i].unit_minutes);
            char key[128];
            snprintf(key, sizeof(key), "slk:{%s}:u:%lld", holds[i].instructor, minute);
            if (redisAppendCommand(r, "GET %s", key) != REDIS_OK)
                return -1;
        }
    }
    for (size_t i = from; i < to; i++) {
        bool hit = false;
        for (int u = 0; u < holds[i].units; u++) {
            void *v = NULL;
            if (redisGetReply(r, &v) != REDIS_OK || v == NULL) {
                fprintf(stderr, "slotbench: audit: Redis: %s\n", r->errstr);
                return -1;
            }
            redisReply *rep = v;
            if (rep->type == REDIS_REPLY_STRING &&
                bench_audit_unit_leaked(rep->str, rep->len, holds[i].uuid, holds[i].fence))
                hit = true;
            freeReplyObject(rep);
        }
        if (hit)
            (*leaked)++;
    }
    return 0;
}

int bench_audit_redis_leaks(const char *redis_url, const struct bench_unit_hold *holds, size_t n, struct bench_audit *a)
{
    redisContext *r = redis_open(redis_url);
    if (r == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += REDIS_BATCH) {
        size_t to = i + REDIS_BATCH < n ? i + REDIS_BATCH : n;
        rc = check_batch(r, holds, i, to, &a->leaked_holds);
    }
    if (rc == 0)
        a->expire_checked += (int64_t)n;
    redisFree(r);
    return rc;
}
