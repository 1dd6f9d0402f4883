/*
 * The PostgreSQL pool and migrations against a real server: DATABASE_URL
 * must name a database where the test may create and drop databases.
 */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "pg_internal.h"
#include "slk/pg.h"

#define NQUERIES 50
#define MAX_RESULTS (SLK_PG_MAX_QUEUE + 8)

struct result {
    int called;
    const char *err;
    ExecStatusType status;
    char sqlstate[6];
    char v[3][64];
    int seq;
    uint64_t elapsed_ms;
    uint64_t start_ns;
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick;
    struct slk_pg_pool *pool;
};

static const char *database_url;
static PGconn *admin;
static int inside_api; /* set while a pool function runs: callbacks must not */
static int next_seq;
static struct result results[MAX_RESULTS];

static void on_result(void *data, PGresult *res, const char *err)
{
    struct result *r = data;
    assert_int_equal(inside_api, 0);
    r->called++;
    r->err = err;
    r->seq = next_seq++;
    r->elapsed_ms = (uv_hrtime() - r->start_ns) / 1000000;
    if (res == NULL)
        return;
    r->status = PQresultStatus(res);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", state != NULL ? state : "");
    for (int i = 0; i < 3 && i < PQnfields(res) && PQntuples(res) > 0; i++)
        snprintf(r->v[i], sizeof(r->v[i]), "%s", PQgetisnull(res, 0, i) ? "(null)" : PQgetvalue(res, 0, i));
}

static void query(struct fixture *f, struct result *r, const char *sql, int n, const char *const *values)
{
    memset(r, 0, sizeof(*r));
    r->start_ns = uv_hrtime();
    inside_api = 1;
    int err = slk_pg_query(f->pool, sql, n, values, on_result, r);
    inside_api = 0;
    assert_int_equal(err, 0);
}

static void on_tick(uv_timer_t *t)
{
    SLK_UNUSED(t);
}

/* Runs the loop until pred holds or ms pass; a ticking timer keeps it from blocking for long. */
static int run_until(struct fixture *f, int (*pred)(struct fixture *, void *), void *arg, uint64_t ms)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    uint64_t deadline = uv_hrtime() + ms * 1000000;
    int ok;
    while (!(ok = pred(f, arg)) && uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    return ok;
}

static int never(struct fixture *f, void *arg)
{
    SLK_UNUSED(f);
    SLK_UNUSED(arg);
    return 0;
}

static int ready_is(struct fixture *f, void *arg)
{
    return slk_pg_pool_ready(f->pool) == *(int *)arg;
}

static int called(struct fixture *f, void *arg)
{
    SLK_UNUSED(f);
    return ((struct result *)arg)->called > 0;
}

struct range {
    int from, to;
};

static int all_called(struct fixture *f, void *arg)
{
    SLK_UNUSED(f);
    struct range *r = arg;
    for (int i = r->from; i < r->to; i++) {
        if (results[i].called == 0)
            return 0;
    }
    return 1;
}

static void wait_result(struct fixture *f, struct result *r, uint64_t ms)
{
    assert_true(run_until(f, called, r, ms));
    assert_int_equal(r->called, 1);
}

static void open_pool(struct fixture *f, const char *conninfo, int size, uint64_t timeout_ms, int start)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    struct slk_pg_options opts = {.conninfo = conninfo, .size = size, .query_timeout_ms = timeout_ms};
    f->pool = slk_pg_pool_create(&f->loop, &opts);
    assert_non_null(f->pool);
    if (start)
        slk_pg_pool_start(f->pool);
}

static void open_ready_pool(struct fixture *f, const char *conninfo, int size, uint64_t timeout_ms)
{
    open_pool(f, conninfo, size, timeout_ms, 1);
    assert_true(run_until(f, ready_is, &size, 5000));
}

/* Closing must release every handle: uv_loop_close fails otherwise, ASan reports memory. */
static void close_pool(struct fixture *f)
{
    inside_api = 1;
    slk_pg_pool_close(f->pool);
    inside_api = 0;
    uv_close((uv_handle_t *)&f->tick, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static PGresult *admin_exec(const char *sql, int n, const char *const *values)
{
    PGresult *res = PQexecParams(admin, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(res));
    return res;
}

static void admin_terminate(const char *pid)
{
    const char *values[1] = {pid};
    PGresult *res = admin_exec("SELECT pg_terminate_backend($1::int)", 1, values);
    assert_string_equal(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
}

/* A conninfo string for DATABASE_URL with another dbname (and maybe options). */
static char *conninfo_with(const char *dbname, const char *options)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(database_url, &errmsg);
    assert_non_null(opts);
    size_t cap = 4096, len = 0;
    char *s = calloc(1, cap);
    assert_non_null(s);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = o->val;
        if (dbname != NULL && strcmp(o->keyword, "dbname") == 0)
            continue;
        if (options != NULL && strcmp(o->keyword, "options") == 0)
            continue;
        if (v == NULL)
            continue;
        len += (size_t)snprintf(s + len, cap - len, "%s='", o->keyword);
        for (; *v != '\0' && len + 4 < cap; v++) {
            if (*v == '\'' || *v == '\\')
                s[len++] = '\\';
            s[len++] = *v;
        }
        len += (size_t)snprintf(s + len, cap - len, "' ");
    }
    if (dbname != NULL)
        len += (size_t)snprintf(s + len, cap - len, "dbname='%s' ", dbname);
    if (options != NULL)
        len += (size_t)snprintf(s + len, cap - len, "options='%s' ", options);
    assert_true(len < cap - 1);
    PQconninfoFree(opts);
    return s;
}

/* ---- pool ---- */

static void test_roundtrip_with_null_param(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    /* The user's own options must survive the merge with statement_timeout. */
    char *conninfo = conninfo_with(NULL, "-c work_mem=4242kB");
    open_ready_pool(&f, conninfo, 1, 5000);
    const char *values[2] = {"hello", NULL};
    struct result *r = &results[0];
    query(&f, r, "SELECT $1::text, $2::text IS NULL, current_setting('work_mem')", 2, values);
    wait_result(&f, r, 5000);
    assert_null(r->err);
    assert_int_equal(r->status, PGRES_TUPLES_OK);
    assert_string_equal(r->v[0], "hello");
    assert_string_equal(r->v[1], "t");
    assert_string_equal(r->v[2], "4242kB");

    query(&f, r, "SELECT current_setting('statement_timeout'), current_setting('application_name')", 0, NULL);
    wait_result(&f, r, 5000);
    assert_null(r->err);
    assert_string_equal(r->v[0], "4750ms"); /* 250 ms before our own deadline */
    assert_string_equal(r->v[1], "slotlockd");

    /* Far more than a socket buffer: PQflush has to wait for writability. */
    size_t big_len = 8 * 1024 * 1024;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    const char *big_values[1] = {big};
    query(&f, r, "SELECT length($1)", 1, big_values);
    free(big); /* copied by slk_pg_query */
    wait_result(&f, r, 10000);
    assert_null(r->err);
    assert_string_equal(r->v[0], "8388608");
    close_pool(&f);
    free(conninfo);
}

static void test_queue_fifo_per_connection(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_ready_pool(&f, database_url, 2, 5000);
    char num[NQUERIES][16];
    for (int i = 0; i < NQUERIES; i++) {
        snprintf(num[i], sizeof(num[i]), "%d", i);
        const char *values[1] = {num[i]};
        query(&f, &results[i], "SELECT $1::int, pg_backend_pid()", 1, values);
    }
    struct range all = {0, NQUERIES};
    assert_true(run_until(&f, all_called, &all, 10000));
    char pids[2][64] = {"", ""};
    int last_seq[2] = {-1, -1};
    for (int i = 0; i < NQUERIES; i++) {
        struct result *r = &results[i];
        assert_int_equal(r->called, 1);
        assert_null(r->err);
        assert_string_equal(r->v[0], num[i]);
        int c = strcmp(r->v[1], pids[0]) == 0 ? 0 : strcmp(r->v[1], pids[1]) == 0 ? 1 : pids[0][0] == '\0' ? 0 : 1;
        if (pids[c][0] == '\0')
            snprintf(pids[c], sizeof(pids[c]), "%s", r->v[1]);
        assert_string_equal(r->v[1], pids[c]); /* never a third backend */
        assert_true(r->seq > last_seq[c]);     /* each connection completes in submission order */
        last_seq[c] = r->seq;
    }
    /* Both connections were idle: the first two queries went to different ones. */
    assert_string_not_equal(pids[0], "");
    assert_string_not_equal(pids[1], "");
    close_pool(&f);
}

static void test_error_result_has_sqlstate(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_ready_pool(&f, database_url, 1, 5000);
    const char *values[1] = {"7"};
    query(&f, &results[0], "CREATE TEMP TABLE t (id int PRIMARY KEY)", 0, NULL);
    query(&f, &results[1], "INSERT INTO t VALUES ($1::int)", 1, values);
    query(&f, &results[2], "INSERT INTO t VALUES ($1::int)", 1, values);
    query(&f, &results[3], "SELECT count(*) FROM t", 0, NULL);
    struct range all = {0, 4};
    assert_true(run_until(&f, all_called, &all, 5000));
    assert_int_equal(results[0].status, PGRES_COMMAND_OK);
    assert_int_equal(results[1].status, PGRES_COMMAND_OK);
    assert_null(results[2].err);
    assert_int_equal(results[2].status, PGRES_FATAL_ERROR);
    assert_string_equal(results[2].sqlstate, "23505");
    /* The session survives an error result. */
    assert_null(results[3].err);
    assert_string_equal(results[3].v[0], "1");
    close_pool(&f);
}

static void test_timeout_then_recovers(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_ready_pool(&f, database_url, 1, 300);
    struct result *pid1 = &results[0], *sleeper = &results[1], *pid2 = &results[2], *pid3 = &results[3];
    query(&f, pid1, "SELECT pg_backend_pid()", 0, NULL);
    /* Leave the client deadline alone to fire: it drops and re-opens the connection. */
    query(&f, &results[4], "SET statement_timeout = 0", 0, NULL);
    query(&f, sleeper, "SELECT pg_sleep(2)", 0, NULL);
    wait_result(&f, sleeper, 5000);
    assert_null(pid1->err);
    assert_null(results[4].err);
    assert_ptr_equal(sleeper->err, slk_pg_err_timeout);
    assert_true(sleeper->elapsed_ms < 2000);

    query(&f, pid2, "SELECT pg_backend_pid(), current_setting('statement_timeout')", 0, NULL);
    wait_result(&f, pid2, 5000);
    assert_null(pid2->err);
    assert_string_not_equal(pid2->v[0], pid1->v[0]);
    assert_string_equal(pid2->v[1], "270ms"); /* a fresh session, with our timeout (less a tenth) again */

    /* The server's statement_timeout firing first is a timeout too, and keeps the session. */
    query(&f, &results[4], "SET statement_timeout = 50", 0, NULL);
    query(&f, sleeper, "SELECT pg_sleep(2)", 0, NULL);
    query(&f, pid3, "SELECT pg_backend_pid()", 0, NULL);
    wait_result(&f, pid3, 5000);
    assert_ptr_equal(sleeper->err, slk_pg_err_timeout);
    assert_null(pid3->err);
    assert_string_equal(pid3->v[0], pid2->v[0]);
    close_pool(&f);
}

static int loopback_socket(int do_listen, char *conninfo, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 8), 0);
    socklen_t slen = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
    snprintf(conninfo, len, "postgresql://postgres@127.0.0.1:%d/postgres", ntohs(sa.sin_port));
    return fd;
}

static void test_queued_query_times_out_while_connecting(void **state)
{
    SLK_UNUSED(state);
    /* The kernel completes the handshake but nobody ever answers the startup packet. */
    char conninfo[128];
    int fd = loopback_socket(1, conninfo, sizeof(conninfo));
    struct fixture f;
    open_pool(&f, conninfo, 1, 200, 1);
    query(&f, &results[0], "SELECT 1", 0, NULL);
    wait_result(&f, &results[0], 5000);
    assert_ptr_equal(results[0].err, slk_pg_err_timeout);
    assert_int_equal(slk_pg_pool_ready(f.pool), 0);
    close_pool(&f);
    close(fd);
}

static void test_unreachable_fails_fast(void **state)
{
    SLK_UNUSED(state);
    /* A bound socket that does not listen: connections to it are refused. */
    char conninfo[128];
    int fd = loopback_socket(0, conninfo, sizeof(conninfo));

    struct fixture f;
    open_pool(&f, conninfo, 2, 5000, 0);
    query(&f, &results[0], "SELECT 1", 0, NULL); /* not started yet */
    wait_result(&f, &results[0], 1000);
    assert_ptr_equal(results[0].err, slk_pg_err_unavailable);

    slk_pg_pool_start(f.pool);
    query(&f, &results[1], "SELECT 1", 0, NULL); /* while the first attempts run */
    wait_result(&f, &results[1], 5000);
    assert_ptr_equal(results[1].err, slk_pg_err_unavailable);
    assert_true(results[1].elapsed_ms < 2500); /* well before the 5 s deadline */

    run_until(&f, never, NULL, 300); /* now between retries */
    assert_int_equal(slk_pg_pool_ready(f.pool), 0);
    query(&f, &results[2], "SELECT 1", 0, NULL);
    wait_result(&f, &results[2], 5000);
    assert_ptr_equal(results[2].err, slk_pg_err_unavailable);
    assert_true(results[2].elapsed_ms < 2500);
    close_pool(&f);
    close(fd);
}

static void test_killed_connection_reconnects(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    int one = 1;
    open_ready_pool(&f, database_url, 1, 5000);
    query(&f, &results[0], "SELECT pg_backend_pid()", 0, NULL);
    wait_result(&f, &results[0], 5000);
    assert_null(results[0].err);

    /* Killed while running a query: that query fails, the pool reconnects. */
    query(&f, &results[1], "SELECT pg_sleep(10)", 0, NULL);
    run_until(&f, never, NULL, 200);
    assert_int_equal(results[1].called, 0);
    admin_terminate(results[0].v[0]);
    wait_result(&f, &results[1], 5000);
    assert_ptr_equal(results[1].err, slk_pg_err_unavailable);
    assert_true(run_until(&f, ready_is, &one, 5000));
    query(&f, &results[2], "SELECT pg_backend_pid()", 0, NULL);
    wait_result(&f, &results[2], 5000);
    assert_null(results[2].err);
    assert_string_not_equal(results[2].v[0], results[0].v[0]);

    /* Killed while idle: noticed without a query, so the next one just works. */
    admin_terminate(results[2].v[0]);
    run_until(&f, never, NULL, 500);
    query(&f, &results[3], "SELECT pg_backend_pid()", 0, NULL);
    wait_result(&f, &results[3], 5000);
    assert_null(results[3].err);
    assert_string_not_equal(results[3].v[0], results[2].v[0]);
    close_pool(&f);
}

static void test_queue_full_is_busy(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_ready_pool(&f, database_url, 1, 10000);
    int n = SLK_PG_MAX_QUEUE + 2; /* one running, a full queue, one too many */
    for (int i = 0; i < n; i++)
        query(&f, &results[i], "SELECT 1", 0, NULL);
    struct range all = {0, n};
    assert_true(run_until(&f, all_called, &all, 20000));
    for (int i = 0; i < n - 1; i++)
        assert_null(results[i].err);
    assert_ptr_equal(results[n - 1].err, slk_pg_err_busy);
    close_pool(&f);
}

static void test_close_fails_queued_with_shutdown(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_ready_pool(&f, database_url, 1, 5000);
    query(&f, &results[0], "SELECT pg_sleep(5)", 0, NULL);
    for (int i = 1; i < 6; i++)
        query(&f, &results[i], "SELECT 1", 0, NULL);
    run_until(&f, never, NULL, 50);
    inside_api = 1;
    slk_pg_pool_close(f.pool);
    assert_int_equal(slk_pg_query(f.pool, "SELECT 1", 0, NULL, on_result, &results[6]), SLK_ECLOSED);
    inside_api = 0;
    uv_close((uv_handle_t *)&f.tick, NULL);
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(results[i].called, 1);
        assert_ptr_equal(results[i].err, slk_pg_err_shutdown);
    }
}

static void test_close_while_connecting_and_unstarted(void **state)
{
    SLK_UNUSED(state);
    struct fixture f;
    open_pool(&f, database_url, 3, 5000, 1);
    query(&f, &results[0], "SELECT 1", 0, NULL);
    close_pool(&f);
    assert_ptr_equal(results[0].err, slk_pg_err_shutdown);

    open_pool(&f, database_url, 1, 5000, 0);
    close_pool(&f);

    struct slk_pg_options bad = {.conninfo = "host=127.0.0.1 nonsense=1", .size = 1, .query_timeout_ms = 100};
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_null(slk_pg_pool_create(&loop, &bad));
    bad.conninfo = database_url;
    bad.size = 0;
    assert_null(slk_pg_pool_create(&loop, &bad));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- migrations ---- */

static char *create_database(const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(admin_exec(sql, 0, NULL));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PQclear(admin_exec(sql, 0, NULL));
    return conninfo_with(name, NULL);
}

static void drop_database(const char *name, char *conninfo)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", name);
    PQclear(admin_exec(sql, 0, NULL));
    free(conninfo);
}

/* The first column of the first row of sql on conninfo, e.g. a count. */
static void scalar(const char *conninfo, const char *sql, char *out, size_t len)
{
    PGconn *pg = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(res));
    snprintf(out, len, "%s", PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
}

static void test_migrate_twice_is_noop(void **state)
{
    SLK_UNUSED(state);
    char *conninfo = create_database("slk_test_migrate_twice");
    char err[256], before[1024], after[1024], count[16], sql[256];
    assert_true(slk_sql_files_count > 0);
    assert_int_equal(slk_pg_migrate(conninfo, err, sizeof(err)), 0);
    const char *q = "SELECT string_agg(version || '@' || applied_at, ',' ORDER BY version) FROM schema_migrations";
    scalar(conninfo, q, before, sizeof(before));
    assert_int_equal(slk_pg_migrate(conninfo, err, sizeof(err)), 0);
    scalar(conninfo, q, after, sizeof(after));
    assert_string_equal(before, after);
    /* The version is the file name without ".sql". */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM schema_migrations WHERE version || '.sql' = '%s'",
             slk_sql_files[0].name);
    scalar(conninfo, sql, count, sizeof(count));
    assert_string_equal(count, "1");
    scalar(conninfo, "SELECT count(*) FROM schema_migrations", count, sizeof(count));
    assert_int_equal(atoi(count), (int)slk_sql_files_count);
    drop_database("slk_test_migrate_twice", conninfo);
}

struct migrator {
    const char *conninfo;
    const struct slk_embedded_file *files;
    size_t nfiles;
    int ret;
    char err[256];
};

static void *migrate_thread(void *arg)
{
    struct migrator *m = arg;
    if (m->files == NULL)
        m->ret = slk_pg_migrate(m->conninfo, m->err, sizeof(m->err));
    else
        m->ret = slk__pg_migrate_files(m->conninfo, m->files, m->nfiles, m->err, sizeof(m->err));
    return NULL;
}

static void migrate_concurrently(const char *conninfo, const struct slk_embedded_file *files, size_t nfiles)
{
    struct migrator m[2] = {{conninfo, files, nfiles, -1, ""}, {conninfo, files, nfiles, -1, ""}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &m[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        if (m[i].ret != 0)
            fail_msg("migrator %d: %d %s", i, m[i].ret, m[i].err);
    }
}

static void test_migrate_concurrently(void **state)
{
    SLK_UNUSED(state);
    char *conninfo = create_database("slk_test_migrate_concurrent");
    char count[16];
    migrate_concurrently(conninfo, NULL, 0);
    scalar(conninfo, "SELECT count(*) FROM schema_migrations", count, sizeof(count));
    assert_int_equal(atoi(count), (int)slk_sql_files_count);

    /* Without the lock both would try to create the table; the sleep widens the race. */
    static const char slow[] = "CREATE TABLE racing (x int); SELECT pg_sleep(0.3);";
    const struct slk_embedded_file files[] = {{"900_racing.sql", slow, sizeof(slow) - 1}};
    migrate_concurrently(conninfo, files, 1);
    scalar(conninfo, "SELECT count(*) FROM schema_migrations WHERE version = '900_racing'", count, sizeof(count));
    assert_string_equal(count, "1");
    drop_database("slk_test_migrate_concurrent", conninfo);
}

/* The versions recorded in schema_migrations, in order, comma-separated. */
static void assert_versions(const char *conninfo, const char *want)
{
    char v[128];
    scalar(conninfo, "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", v, sizeof(v));
    assert_string_equal(v, want);
}

static void test_migrate_failure_rolls_back(void **state)
{
    SLK_UNUSED(state);
    char *conninfo = create_database("slk_test_migrate_failure");
    static const char a[] = "CREATE TABLE a (x int);";
    static const char bad[] = "CREATE TABLE b (x int);\nSELECT no_such_function();";
    static const char good[] = "CREATE TABLE b (x int);";
    struct slk_embedded_file files[] = {{"001_a.sql", a, sizeof(a) - 1}, {"002_b.sql", bad, sizeof(bad) - 1}};
    char err[256], v[64];
    assert_int_equal(slk__pg_migrate_files(conninfo, files, 2, err, sizeof(err)), SLK_EIO);
    assert_non_null(strstr(err, "no_such_function"));
    assert_versions(conninfo, "001_a");
    scalar(conninfo, "SELECT to_regclass('b') IS NULL", v, sizeof(v));
    assert_string_equal(v, "t");

    files[1].data = good;
    files[1].len = sizeof(good) - 1;
    assert_int_equal(slk__pg_migrate_files(conninfo, files, 2, err, sizeof(err)), 0);
    assert_versions(conninfo, "001_a,002_b");
    scalar(conninfo, "SELECT to_regclass('b') IS NULL", v, sizeof(v));
    assert_string_equal(v, "f");

    assert_int_equal(slk_pg_migrate("postgresql://postgres@127.0.0.1:1/none", err, sizeof(err)), SLK_EUNAVAILABLE);
    assert_true(strlen(err) > 0);
    drop_database("slk_test_migrate_failure", conninfo);
}

/*
 * A file marked "-- slotlock: concurrently" runs statement by statement
 * outside a transaction (PostgreSQL refuses CREATE INDEX CONCURRENTLY inside
 * one), is recorded only once its last statement succeeded, and runs again
 * from its first statement after a failure.
 */
static void test_migrate_concurrently_marked_file(void **state)
{
    SLK_UNUSED(state);
    char *conninfo = create_database("slk_test_migrate_marked");
    static const char table[] = "CREATE TABLE t (x int, y int);\nINSERT INTO t VALUES (1, 2);";
    static const char bad[] = "-- slotlock: concurrently\n"
                              "-- a comment; not the statement's end\n"
                              "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);\n"
                              "CREATE INDEX CONCURRENTLY t_y ON t (no_such_column);\n";
    static const char good[] = "-- slotlock: concurrently\n"
                               "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);\n"
                               "DROP INDEX CONCURRENTLY IF EXISTS t_y;\n"
                               "CREATE UNIQUE INDEX CONCURRENTLY t_y ON t (y);\n";
    struct slk_embedded_file files[] = {{"001_t.sql", table, sizeof(table) - 1}, {"002_idx.sql", bad, sizeof(bad) - 1}};
    char err[256], v[128];
    assert_int_equal(slk__pg_migrate_files(conninfo, files, 2, err, sizeof(err)), SLK_EIO);
    assert_non_null(strstr(err, "no_such_column"));
    assert_versions(conninfo, "001_t");
    /* No transaction to roll back: the first index stays. */
    scalar(conninfo, "SELECT to_regclass('t_x') IS NOT NULL", v, sizeof(v));
    assert_string_equal(v, "t");

    files[1].data = good;
    files[1].len = sizeof(good) - 1;
    assert_int_equal(slk__pg_migrate_files(conninfo, files, 2, err, sizeof(err)), 0);
    assert_versions(conninfo, "001_t,002_idx");
    scalar(conninfo,
           "SELECT string_agg(c.relname || ':' || i.indisvalid || ':' || i.indisunique, ',' ORDER BY c.relname) "
           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 't'::regclass",
           v, sizeof(v));
    assert_string_equal(v, "t_x:true:false,t_y:true:true");
    /* Recorded: a third run changes nothing. */
    assert_int_equal(slk__pg_migrate_files(conninfo, files, 2, err, sizeof(err)), 0);
    drop_database("slk_test_migrate_marked", conninfo);
}

/* A database at 004 with events in booking_events reaches 006: one unique index, every row kept. */
static void test_migrate_upgrades_booking_events_with_rows(void **state)
{
    SLK_UNUSED(state);
    char *conninfo = create_database("slk_test_migrate_events");
    size_t before_005 = 0;
    while (before_005 < slk_sql_files_count && strncmp(slk_sql_files[before_005].name, "005_", 4) != 0)
        before_005++;
    assert_true(before_005 < slk_sql_files_count);
    char err[256], v[256];
    assert_int_equal(slk__pg_migrate_files(conninfo, slk_sql_files, before_005, err, sizeof(err)), 0);
    scalar(conninfo,
           "WITH ins AS (INSERT INTO booking_events (booking_uuid, instructor_id, student_id, type, status, "
           "actor_role, occurred_at, dedupe_key) SELECT u, 'i', 's', 'held', 'payment_required', 'student', now(), "
           "CASE WHEN g <= 400 THEN u || ':held' END FROM (SELECT g, gen_random_uuid() u FROM generate_series(1, "
           "500) g) x RETURNING 1) SELECT count(*) FROM ins",
           v, sizeof(v));
    assert_int_equal(slk_pg_migrate(conninfo, err, sizeof(err)), 0);
    scalar(conninfo,
           "SELECT string_agg(c.relname || ':' || i.indisvalid || ':' || i.indisunique, ',' ORDER BY c.relname) "
           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'booking_events'::regclass",
           v, sizeof(v));
    assert_string_equal(v, "booking_events_booking_dedupe:true:true,booking_events_pending:true:false,"
                           "booking_events_pkey:true:true");
    scalar(conninfo, "SELECT count(*) || '/' || count(dedupe_key) FROM booking_events", v, sizeof(v));
    assert_string_equal(v, "500/400");
    /* The mover's repeat of a recorded event adds nothing. */
    scalar(conninfo,
           "WITH again AS (INSERT INTO booking_events (booking_uuid, instructor_id, student_id, type, status, "
           "actor_role, occurred_at, dedupe_key) SELECT booking_uuid, 'i', 's', 'held', 'payment_required', "
           "'student', now(), dedupe_key FROM booking_events WHERE dedupe_key IS NOT NULL "
           "ON CONFLICT (booking_uuid, dedupe_key) DO NOTHING RETURNING 1) SELECT count(*) FROM again",
           v, sizeof(v));
    assert_string_equal(v, "0");
    drop_database("slk_test_migrate_events", conninfo);
}

static void ignore_notice(void *arg, const char *message)
{
    SLK_UNUSED(arg);
    SLK_UNUSED(message);
}

int main(void)
{
    database_url = getenv("DATABASE_URL");
    if (database_url == NULL || database_url[0] == '\0') {
        fprintf(stderr, "test_pg: DATABASE_URL must name a PostgreSQL database to test against\n");
        return 1;
    }
    admin = PQconnectdb(database_url);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "test_pg: cannot connect to DATABASE_URL: %s", PQerrorMessage(admin));
        PQfinish(admin);
        return 1;
    }
    PQsetNoticeProcessor(admin, ignore_notice, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_with_null_param),
        cmocka_unit_test(test_queue_fifo_per_connection),
        cmocka_unit_test(test_error_result_has_sqlstate),
        cmocka_unit_test(test_timeout_then_recovers),
        cmocka_unit_test(test_queued_query_times_out_while_connecting),
        cmocka_unit_test(test_unreachable_fails_fast),
        cmocka_unit_test(test_killed_connection_reconnects),
        cmocka_unit_test(test_queue_full_is_busy),
        cmocka_unit_test(test_close_fails_queued_with_shutdown),
        cmocka_unit_test(test_close_while_connecting_and_unstarted),
        cmocka_unit_test(test_migrate_twice_is_noop),
        cmocka_unit_test(test_migrate_concurrently),
        cmocka_unit_test(test_migrate_failure_rolls_back),
        cmocka_unit_test(test_migrate_concurrently_marked_file),
        cmocka_unit_test(test_migrate_upgrades_booking_events_with_rows),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    PQfinish(admin);
    return failed;
}
