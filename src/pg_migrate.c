/*
 * Schema migrations with blocking libpq, run once before the event loops
 * start. A session-level advisory lock serialises concurrent migrators:
 * the second one waits (take_lock), then finds every version recorded and
 * does nothing.
 * Migration files must not contain their own BEGIN/COMMIT: each runs inside
 * the transaction that also records its version, so it applies entirely or
 * not at all.
 *
 * A file whose first line is CONCURRENT_MARK runs outside any transaction
 * instead, one statement at a time (a statement ends with ';' at the end of a
 * line), for CREATE INDEX CONCURRENTLY, which PostgreSQL refuses inside one:
 * an index built in a transaction holds off every write to its table until
 * the build ends (minutes on a large table). Its version is recorded after its
 * last statement, so a failure or a crash runs it again from the start: each
 * statement must be safe to repeat.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "pg_internal.h"
#include "slk/log.h"
#include "slk/pg.h"

#define MAX_VERSION_LEN 128
#define CONCURRENT_MARK "-- slotlock: concurrently\n"
#define LOCK_POLL_NS 50000000L /* 50 ms between tries for the migration lock */

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    size_t n = strlen(errbuf);
    while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
        errbuf[--n] = '\0';
}

static void on_notice(void *arg, const char *message)
{
    /* "relation already exists, skipping" and the like: not worth stderr. */
    SLK_UNUSED(arg);
    SLK_UNUSED(message);
}

/* Runs sql (one or more statements); 0 when it succeeded. */
static int exec_ok(PGconn *pg, const char *sql, const char *what, char *errbuf, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
        PQclear(res);
        return 0;
    }
    set_error(errbuf, errlen, "%s: %s", what, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(pg));
    PQclear(res);
    return SLK_EIO;
}

/* 1 when version is recorded, 0 when not, SLK_EIO on error. */
static int is_applied(PGconn *pg, const char *version, char *errbuf, size_t errlen)
{
    const char *values[1] = {version};
    PGresult *res =
        PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_error(errbuf, errlen, "schema_migrations: %s", PQresultErrorMessage(res));
        PQclear(res);
        return SLK_EIO;
    }
    int n = PQntuples(res);
    PQclear(res);
    return n > 0 ? 1 : 0;
}

static int record_version(PGconn *pg, const char *version, char *errbuf, size_t errlen)
{
    const char *values[1] = {version};
    PGresult *res =
        PQexecParams(pg, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_error(errbuf, errlen, "%s: recording: %s", version, PQresultErrorMessage(res));
        PQclear(res);
        return SLK_EIO;
    }
    PQclear(res);
    return 0;
}

static int version_of(const char *name, char *version, size_t size)
{
    size_t n = strlen(name);
    if (n <= 4 || strcmp(name + n - 4, ".sql") != 0 || n - 4 >= size)
        return SLK_EINVAL;
    memcpy(version, name, n - 4);
    version[n - 4] = '\0';
    return 0;
}

static bool runs_concurrently(const struct slk_embedded_file *f)
{
    size_t n = strlen(CONCURRENT_MARK);
    return f->len >= n && memcmp(f->data, CONCURRENT_MARK, n) == 0;
}

/* The length of the statement at p: through the first ';' that ends a line, or to the end. */
static size_t statement_len(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (*q == ';' && (q + 1 == end || q[1] == '\n'))
            return (size_t)(q + 1 - p);
    }
    return (size_t)(end - p);
}

static int apply_concurrently(PGconn *pg, const struct slk_embedded_file *f, const char *version, char *errbuf,
                              size_t errlen)
{
    const char *p = f->data, *end = f->data + f->len;
    while (p < end) {
        size_t len = statement_len(p, end);
        char *sql = strndup(p, len);
        if (sql == NULL) {
            set_error(errbuf, errlen, "%s: out of memory", version);
            return SLK_ENOMEM;
        }
        int rc = exec_ok(pg, sql, version, errbuf, errlen); /* comments alone are an empty query: fine */
        free(sql);
        if (rc != 0)
            return rc;
        p += len;
    }
    return record_version(pg, version, errbuf, errlen);
}

/* f and its version in one transaction: all or nothing. */
static int apply_in_transaction(PGconn *pg, const struct slk_embedded_file *f, const char *version, char *errbuf,
                                size_t errlen)
{
    if (exec_ok(pg, "BEGIN", version, errbuf, errlen) != 0)
        return SLK_EIO;
    if (exec_ok(pg, f->data, version, errbuf, errlen) != 0 || record_version(pg, version, errbuf, errlen) != 0 ||
        exec_ok(pg, "COMMIT", version, errbuf, errlen) != 0) {
        PQclear(PQexec(pg, "ROLLBACK"));
        return SLK_EIO;
    }
    return 0;
}

static int apply_one(PGconn *pg, const struct slk_embedded_file *f, char *errbuf, size_t errlen)
{
    char version[MAX_VERSION_LEN];
    if (version_of(f->name, version, sizeof(version)) != 0) {
        set_error(errbuf, errlen, "%s: migration names must end in .sql", f->name);
        return SLK_EINVAL;
    }
    int applied = is_applied(pg, version, errbuf, errlen);
    if (applied != 0)
        return applied < 0 ? applied : 0;
    int rc = runs_concurrently(f) ? apply_concurrently(pg, f, version, errbuf, errlen)
                                  : apply_in_transaction(pg, f, version, errbuf, errlen);
    if (rc == 0)
        slk_log(SLK_LOG_INFO, "migration applied", "version", version, NULL);
    return rc;
}

/*
 * Polled with pg_try_advisory_lock, not waited for in pg_advisory_lock: a
 * migrator waiting inside a statement holds a snapshot, and CREATE INDEX
 * CONCURRENTLY in the one holding the lock waits for every older snapshot to
 * go: the two would deadlock. Between polls a waiting session holds nothing.
 */
static int take_lock(PGconn *pg, char *errbuf, size_t errlen)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%lld)", SLK__PG_MIGRATE_LOCK_KEY);
    bool said = false;
    for (;;) {
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            set_error(errbuf, errlen, "advisory lock: %s",
                      res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(pg));
            PQclear(res);
            return SLK_EIO;
        }
        bool taken = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (taken)
            return 0;
        if (!said)
            slk_log(SLK_LOG_INFO, "waiting for another process's migrations", NULL);
        said = true;
        nanosleep(&(struct timespec){.tv_nsec = LOCK_POLL_NS}, NULL);
    }
}

static int lock_and_apply(PGconn *pg, const struct slk_embedded_file *files, size_t nfiles, char *errbuf, size_t errlen)
{
    char sql[96];
    if (take_lock(pg, errbuf, errlen) != 0)
        return SLK_EIO;
    int err = exec_ok(pg,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                      "schema_migrations", errbuf, errlen);
    for (size_t i = 0; err == 0 && i < nfiles; i++)
        err = apply_one(pg, &files[i], errbuf, errlen);
    /* Closing the session would release the lock too; unlocking says we are done. */
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%lld)", SLK__PG_MIGRATE_LOCK_KEY);
    PQclear(PQexec(pg, sql));
    return err;
}

int slk__pg_migrate_files(const char *conninfo, const struct slk_embedded_file *files, size_t nfiles, char *errbuf,
                          size_t errlen)
{
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (conninfo == NULL || (files == NULL && nfiles > 0)) {
        set_error(errbuf, errlen, "no database conninfo");
        return SLK_EINVAL;
    }
    /* expand_dbname: conninfo is a URL or key=value string; it may override the fallback name. */
    const char *keywords[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {conninfo, "slotlockd-migrate", NULL};
    PGconn *pg = PQconnectdbParams(keywords, values, 1);
    if (pg == NULL) {
        set_error(errbuf, errlen, "out of memory");
        return SLK_ENOMEM;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        set_error(errbuf, errlen, "connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return SLK_EUNAVAILABLE;
    }
    PQsetNoticeProcessor(pg, on_notice, NULL);
    int err = lock_and_apply(pg, files, nfiles, errbuf, errlen);
    PQfinish(pg);
    return err;
}

int slk_pg_migrate(const char *conninfo, char *errbuf, size_t errlen)
{
    return slk__pg_migrate_files(conninfo, slk_sql_files, slk_sql_files_count, errbuf, errlen);
}
