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
 * The deadline (query_timeout_ms) runs from slk_pg_query(), queueing
 * included; the server enforces it too as the session's statement_timeout,
 * whose cancellation (SQLSTATE 57014) is reported as slk_pg_err_timeout.
 *
 * Failures decided at once (queue full: slk_pg_err_busy; no connection up
 * and none being attempted: slk_pg_err_unavailable; slk_pg_pool_close():
 * slk_pg_err_shutdown) are delivered on a later loop iteration, never from
 * inside slk_pg_query() or slk_pg_pool_close(). While a connection attempt
 * is in progress, queries wait in the queue for it, up to their deadline.
 * A lost connection fails its query with slk_pg_err_unavailable and is
 * re-opened with backoff (100 ms doubling to 2 s).
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

/*
 * NULL when opts are invalid (size < 1, conninfo unparsable). query_timeout_ms
 * 0 means SLK_DEFAULT_PG_TIMEOUT_MS. Only slk_pg_pool_close() frees the pool.
 * libpq resolves host names with blocking getaddrinfo(): prefer an address
 * or a name in /etc/hosts for the pool's conninfo.
 */
struct slk_pg_pool *slk_pg_pool_create(uv_loop_t *loop, const struct slk_pg_options *opts);
/* Starts connecting all connections; reconnects on its own with backoff. */
void slk_pg_pool_start(struct slk_pg_pool *p);
/* Number of connections currently usable (for /readyz). */
int slk_pg_pool_ready(const struct slk_pg_pool *p);
/* Fails queued and running queries with slk_pg_err_shutdown; frees when handles are closed. */
void slk_pg_pool_close(struct slk_pg_pool *p);

/*
 * values may contain NULL for SQL NULL. sql and values are copied before
 * return. Returns 0 and cb runs exactly once later, or SLK_EINVAL,
 * SLK_ENOMEM, or SLK_ECLOSED (after slk_pg_pool_close()) and cb never runs.
 */
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
