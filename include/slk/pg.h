/*
 * A small pool of non-blocking libpq connections on one event loop, each
 * driven by a uv_poll_t on PQsocket(); no call blocks the loop. Queries
 * are parameterised (PQsendQueryParams, text format) and queue when every
 * connection is busy (bounded by SLK_PG_MAX_QUEUE).
 *
 * Every callback runs exactly once: with res != NULL and err == NULL when
 * the server answered (res may still be an error result: check
 * PQresultStatus, and PQresultErrorField(res, PG_DIAG_SQLSTATE), e.g.
 * "23P01" for an exclusion violation), or res == NULL and err one of the
 * slk_pg_err_* strings. res is only valid during the callback; the pool
 * clears it.
 *
 * A query that passes its deadline gets slk_pg_err_timeout and its
 * connection is dropped and re-opened (that also rolls back server-side).
 */
#ifndef SLK_PG_H
#define SLK_PG_H

#include <libpq-fe.h>
#include <uv.h>

#include "slk/common.h"

extern const char slk_pg_err_timeout[];
extern const char slk_pg_err_unavailable[]; /* no connection could be made / connection lost */
extern const char slk_pg_err_busy[];        /* queue full */
extern const char slk_pg_err_shutdown[];

struct slk_pg_pool;

typedef void (*slk_pg_cb)(void *data, PGresult *res, const char *err);

struct slk_pg_options {
    const char *conninfo; /* DATABASE_URL, copied */
    int size;             /* connections */
    uint64_t query_timeout_ms;
};

struct slk_pg_pool *slk_pg_pool_create(uv_loop_t *loop, const struct slk_pg_options *opts);
/* Starts connecting all connections; reconnects on its own with backoff. */
void slk_pg_pool_start(struct slk_pg_pool *p);
/* Number of connections currently usable (for /readyz). */
int slk_pg_pool_ready(const struct slk_pg_pool *p);
/* Fails queued and running queries with slk_pg_err_shutdown; frees when handles are closed. */
void slk_pg_pool_close(struct slk_pg_pool *p);

/* values may contain NULL for SQL NULL. sql and values are copied before return. */
int slk_pg_query(struct slk_pg_pool *p, const char *sql, int nparams, const char *const *values, slk_pg_cb cb,
                 void *data) SLK_MUST_CHECK;

/*
 * Applies sql/NNN_*.sql migrations (embedded at build time) in order, each in
 * its own transaction, under pg_advisory_lock, recording them in
 * schema_migrations. Blocking: call before the loops start. Safe to run
 * twice and from several processes. Returns 0 or SLK_E*; message in errbuf.
 */
int slk_pg_migrate(const char *conninfo, char *errbuf, size_t errlen) SLK_MUST_CHECK;

#endif
