/*
 * The Postgres-only row-lock design, driven the way an application behind an
 * ORM drives it: every statement is its own round trip (BEGIN; SELECT … FOR
 * UPDATE; UPDATE; COMMIT), through the extended protocol with an unnamed
 * statement (PQsendQueryParams), which is what drivers without a statement
 * cache send.
 *
 * The clients are the HTTP burst's: o->clients of them click at once and
 * each clicks again as soon as its previous attempt was answered (closed
 * loop). They share a pool of min(clients, max_connections) connections,
 * one attempt in flight on each, as an application server's users share its
 * pool; an attempt waits in line for a connection, and its latency runs from
 * the click, so both designs are measured at the same concurrency. The time
 * on the connection alone is reported on stderr.
 *
 * Everything here is single-threaded: one poll() loop over non-blocking
 * libpq connections.
 */
#include "baseline_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define PG_CONNECT_TIMEOUT "10"             /* seconds, per connection */
#define PG_DRAIN_GRACE_US (10 * 1000000ull) /* in-flight attempts may finish this long after max_seconds */
#define PG_POLL_MS 100
#define PG_HOLDER_MAX 48
#define PG_STATUS_MAX 16

static const char SQL_RESET[] = "DROP TABLE IF EXISTS slotbench_slots;"
                                "CREATE TABLE slotbench_slots ("
                                " id integer PRIMARY KEY,"
                                " instructor text NOT NULL,"
                                " start_at timestamptz NOT NULL,"
                                " status text NOT NULL DEFAULT 'free' CHECK (status IN ('free', 'held', 'confirmed')),"
                                " holder text,"
                                " held_until timestamptz)";
static const char SQL_FILL[] = "INSERT INTO slotbench_slots (id, instructor, start_at)"
                               " SELECT i, 'bench-instructor',"
                               " date_trunc('hour', now()) + interval '1 day' + (i - 1) * interval '1 hour'"
                               " FROM generate_series(1, $1::integer) AS i";
static const char SQL_SELECT[] = "SELECT status FROM slotbench_slots WHERE id = $1 FOR UPDATE";
static const char SQL_HOLD[] = "UPDATE slotbench_slots SET status = 'held', holder = $2,"
                               " held_until = now() + interval '10 minutes' WHERE id = $1";
static const char SQL_CONFIRM[] = "UPDATE slotbench_slots SET status = 'confirmed' WHERE id = $1 AND holder = $2";
static const char SQL_AUDIT[] = "SELECT id, status, coalesce(holder, '') FROM slotbench_slots ORDER BY id";

enum pg_step {
    STEP_IDLE,
    STEP_BEGIN,
    STEP_SELECT,
    STEP_HOLD,
    STEP_COMMIT,
    STEP_ROLLBACK,
    STEP_CONFIRM,
    STEP_DEAD,
};

/* One pooled connection and the attempt it is running. */
struct pg_session {
    PGconn *conn;
    int index;
    enum pg_step step;
    int slot;            /* 0-based */
    uint64_t clicked_us; /* when the client asked: the latency's start */
    uint64_t started_us; /* when this connection took the attempt */
    uint64_t confirm_started_us;
    bool saw_free;  /* SELECT … FOR UPDATE read 'free' */
    bool took;      /* the UPDATE changed the row */
    bool committed; /* COMMIT answered COMMIT */
    bool confirmed; /* the confirming UPDATE changed the row */
    bool failed;    /* a statement of this attempt failed */
    bool want_write;
    char holder[PG_HOLDER_MAX];
};

/* What the replies said about one hot slot, and what the table says. */
struct pg_slot {
    int64_t attempts;
    int64_t winners;
    bool confirmed; /* its winner's confirm changed the row */
    char winner[PG_HOLDER_MAX];
    bool in_table;
    char status[PG_STATUS_MAX];
    char holder[PG_HOLDER_MAX];
};

struct pg_run {
    const struct bench_pg_options *o;
    struct bench_result *out;
    struct pg_session *sessions;
    int nsessions;
    int in_flight; /* sessions with an attempt or a confirm outstanding */
    int *idle;     /* stack of idle session indexes */
    int nidle;
    uint64_t *line; /* ring of click times of attempts waiting for a connection */
    size_t line_cap, line_head, line_len;
    struct pg_slot *slots;
    uint64_t requests; /* attempts to make */
    uint64_t clicked;  /* attempts asked for by clients */
    uint64_t started;  /* attempts taken by a connection */
    uint64_t rng;
    struct bench_histogram *on_connection; /* latency without the wait for a connection */
    uint64_t t0_us, deadline_us, last_done_us;
    bool reported_error;
    uint64_t confirms;
    uint64_t confirm_max_us, confirm_sum_us;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* splitmix64: small, seedable, and good enough to spread attempts over slots. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

/* Keeps the first reason only: later ones are usually consequences of it. */
static void audit_fail(struct bench_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void audit_fail(struct bench_audit *a, const char *fmt, ...)
{
    a->passed = false;
    if (a->failure[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->failure, sizeof(a->failure), fmt, ap);
    va_end(ap);
}

/*
 * The verdict, from the replies (winners per slot) and the table read after
 * the run. Pure, so the unit test can feed it any outcome: a slot that was
 * tried must have exactly one winner, the table must show that winner's
 * confirmed row, and an untried slot must still be free.
 */
static void judge(struct bench_audit *a, const struct pg_slot *slots, int k)
{
    a->ran = true;
    a->passed = true;
    a->failure[0] = '\0';
    a->hot_slots = k;
    a->winners_checked = true;
    a->double_bookings = 0;
    a->confirmed_missing = 0;
    a->leaked_holds = 0;
    a->confirmed_checked = 0;
    for (int i = 0; i < k && i < BENCH_MAX_HOT_SLOTS; i++) {
        const struct pg_slot *s = &slots[i];
        a->winners[i] = s->winners;
        a->confirmed_checked += s->winners;
        if (s->winners > 1) {
            a->double_bookings += s->winners - 1;
            audit_fail(a, "slot %d: %" PRId64 " winners", i + 1, s->winners);
        } else if (s->winners == 0 && s->attempts > 0) {
            audit_fail(a, "slot %d: no winner out of %" PRId64 " attempts", i + 1, s->attempts);
        }
        if (strcmp(s->status, "held") == 0)
            a->leaked_holds++;
        if (!s->in_table) {
            if (s->winners > 0)
                a->confirmed_missing++;
            audit_fail(a, "slot %d: missing from slotbench_slots", i + 1);
        } else if (s->winners == 0) {
            if (strcmp(s->status, "free") != 0)
                audit_fail(a, "slot %d: no winner replied, yet the table says %s", i + 1, s->status);
        } else if (!s->confirmed || strcmp(s->status, "confirmed") != 0 || strcmp(s->holder, s->winner) != 0) {
            a->confirmed_missing++;
            audit_fail(a, "slot %d: the table says %s by '%s', not confirmed by its winner '%s'", i + 1, s->status,
                       s->holder, s->winner);
        }
    }
}

/* ---- setup and audit: blocking, outside the measured phase ---- */

static PGconn *open_connection(const char *conninfo)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {conninfo, PG_CONNECT_TIMEOUT, "slotbench-pg-rowlock", NULL};
    return PQconnectdbParams(keys, values, 1);
}

static bool exec_ok(PGconn *conn, PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "pg-rowlock: %s: %s", what, PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

static bool reset_table(PGconn *admin, int slots)
{
    if (!exec_ok(admin, PQexec(admin, "SET client_min_messages = warning"), "setup"))
        return false;
    if (!exec_ok(admin, PQexec(admin, SQL_RESET), "creating slotbench_slots"))
        return false;
    char k[16];
    snprintf(k, sizeof(k), "%d", slots);
    const char *params[] = {k};
    return exec_ok(admin, PQexecParams(admin, SQL_FILL, 1, NULL, params, NULL, NULL, 0), "filling slotbench_slots");
}

static bool read_table(PGconn *admin, struct pg_slot *slots, int k)
{
    PGresult *res = PQexec(admin, SQL_AUDIT);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "pg-rowlock: audit query: %s", PQerrorMessage(admin));
        PQclear(res);
        return false;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int id = atoi(PQgetvalue(res, row, 0));
        if (id < 1 || id > k)
            continue;
        struct pg_slot *s = &slots[id - 1];
        s->in_table = true;
        copy_text(s->status, sizeof(s->status), PQgetvalue(res, row, 1));
        copy_text(s->holder, sizeof(s->holder), PQgetvalue(res, row, 2));
    }
    PQclear(res);
    return true;
}

/*
 * Opens up to n connections one after the other. The server may refuse some
 * (max_connections); the run then goes on with those it got, and the result
 * says how many that was.
 */
static int open_sessions(struct pg_run *run, int n)
{
    for (int i = 0; i < n; i++) {
        PGconn *conn = open_connection(run->o->conninfo);
        if (PQstatus(conn) != CONNECTION_OK || PQsetnonblocking(conn, 1) != 0) {
            fprintf(stderr, "pg-rowlock: connection %d of %d: %s", i + 1, n, PQerrorMessage(conn));
            PQfinish(conn);
            break;
        }
        struct pg_session *c = &run->sessions[run->nsessions];
        c->conn = conn;
        c->index = run->nsessions;
        c->step = STEP_IDLE;
        run->nsessions++;
    }
    if (run->nsessions < n && run->nsessions > 0)
        fprintf(stderr, "pg-rowlock: going on with %d connections instead of %d\n", run->nsessions, n);
    return run->nsessions > 0 ? 0 : -1;
}

/* ---- the measured phase ---- */

static void record_reply(struct pg_run *run, struct pg_session *c, int status, uint64_t t)
{
    struct bench_result *out = run->out;
    uint64_t us = t - c->clicked_us;
    bench_histogram_record(run->on_connection, t - c->started_us);
    out->requests++;
    out->status_counts[status]++;
    if (status == 201)
        out->successes++;
    bench_histogram_record(&out->latency, us);
    if (out->series != NULL) {
        uint64_t second = (t - run->t0_us) / 1000000u;
        if (second < BENCH_MAX_SECONDS) {
            while ((uint64_t)out->series_len <= second)
                bench_histogram_init(&out->series[out->series_len++]);
            bench_histogram_record(&out->series[second], us);
        }
    }
    run->last_done_us = t;
}

/*
 * Closes a connection for good. What it had outstanding is lost: an attempt
 * counts as a transport error, a confirm as a failed follow-up.
 */
static void drop_session(struct pg_run *run, struct pg_session *c)
{
    if (c->step == STEP_CONFIRM) {
        run->out->followup_requests++;
        run->out->followup_failed++;
    } else if (c->step != STEP_IDLE && c->step != STEP_DEAD) {
        run->out->errors++;
    }
    if (c->step != STEP_IDLE && c->step != STEP_DEAD)
        run->in_flight--;
    PQfinish(c->conn);
    c->conn = NULL;
    c->step = STEP_DEAD;
}

static void session_lost(struct pg_run *run, struct pg_session *c)
{
    if (!run->reported_error) {
        fprintf(stderr, "pg-rowlock: connection %d lost: %s", c->index + 1, PQerrorMessage(c->conn));
        run->reported_error = true;
    }
    drop_session(run, c);
}

/* Sends one statement; a send that fails means the connection is gone. */
static bool send_statement(struct pg_run *run, struct pg_session *c, enum pg_step step, const char *sql, int nparams,
                           const char *const *params)
{
    c->step = step;
    if (PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0) != 1) {
        session_lost(run, c);
        return false;
    }
    int rc = PQflush(c->conn);
    if (rc < 0) {
        session_lost(run, c);
        return false;
    }
    c->want_write = rc == 1;
    return true;
}

static void start_attempt(struct pg_run *run, struct pg_session *c, uint64_t clicked, uint64_t t)
{
    c->slot = (int)(next_random(&run->rng) % (uint64_t)run->o->slots);
    c->saw_free = c->took = c->committed = c->confirmed = c->failed = false;
    snprintf(c->holder, sizeof(c->holder), "c%d-a%" PRIu64, c->index + 1, run->started + 1);
    c->clicked_us = clicked;
    c->started_us = t;
    run->started++;
    run->in_flight++;
    run->slots[c->slot].attempts++;
    send_statement(run, c, STEP_BEGIN, "BEGIN", 0, NULL);
}

/* Idle connections take waiting attempts, oldest first. */
static void dispatch(struct pg_run *run, uint64_t t)
{
    while (run->line_len > 0 && run->nidle > 0) {
        struct pg_session *c = &run->sessions[run->idle[--run->nidle]];
        uint64_t clicked = run->line[run->line_head];
        run->line_head = (run->line_head + 1) % run->line_cap;
        run->line_len--;
        start_attempt(run, c, clicked, t);
    }
}

/* A client clicks (again): its attempt joins the line for a connection. */
static void click(struct pg_run *run, uint64_t t)
{
    if (run->clicked >= run->requests || t >= run->deadline_us || run->line_len == run->line_cap)
        return;
    run->line[(run->line_head + run->line_len) % run->line_cap] = t;
    run->line_len++;
    run->clicked++;
}

static void go_idle(struct pg_run *run, struct pg_session *c, uint64_t t)
{
    c->step = STEP_IDLE;
    run->in_flight--;
    run->idle[run->nidle++] = c->index;
    dispatch(run, t);
}

/* The attempt's last reply arrived: count it, then let a winner pay. */
static void finish_attempt(struct pg_run *run, struct pg_session *c, uint64_t t)
{
    bool won = c->took && c->committed && !c->failed;
    int status = c->failed ? 500 : won ? 201 : 409;
    record_reply(run, c, status, t);
    click(run, t);
    if (!won) {
        go_idle(run, c, t);
        return;
    }
    struct pg_slot *s = &run->slots[c->slot];
    if (s->winners++ == 0)
        copy_text(s->winner, sizeof(s->winner), c->holder);
    char id[16];
    snprintf(id, sizeof(id), "%d", c->slot + 1);
    const char *params[] = {id, c->holder};
    c->confirm_started_us = t;
    send_statement(run, c, STEP_CONFIRM, SQL_CONFIRM, 2, params);
}

static void finish_confirm(struct pg_run *run, struct pg_session *c, uint64_t t)
{
    uint64_t us = t - c->confirm_started_us;
    struct pg_slot *s = &run->slots[c->slot];
    if (c->confirmed && strcmp(s->winner, c->holder) == 0)
        s->confirmed = true;
    run->out->followup_requests++;
    if (c->confirmed)
        run->out->followup_ok++;
    else
        run->out->followup_failed++;
    run->confirms++;
    run->confirm_sum_us += us;
    if (us > run->confirm_max_us)
        run->confirm_max_us = us;
    go_idle(run, c, t);
}

/* Every result of the current statement has been read: take the next step. */
static void advance(struct pg_run *run, struct pg_session *c)
{
    uint64_t t = now_us();
    char id[16];
    snprintf(id, sizeof(id), "%d", c->slot + 1);
    const char *params[] = {id, c->holder};
    switch (c->step) {
    case STEP_BEGIN:
        if (c->failed)
            send_statement(run, c, STEP_ROLLBACK, "ROLLBACK", 0, NULL);
        else
            send_statement(run, c, STEP_SELECT, SQL_SELECT, 1, params);
        break;
    case STEP_SELECT:
        if (!c->failed && c->saw_free)
            send_statement(run, c, STEP_HOLD, SQL_HOLD, 2, params);
        else
            send_statement(run, c, STEP_ROLLBACK, "ROLLBACK", 0, NULL);
        break;
    case STEP_HOLD:
        if (!c->failed && c->took)
            send_statement(run, c, STEP_COMMIT, "COMMIT", 0, NULL);
        else
            send_statement(run, c, STEP_ROLLBACK, "ROLLBACK", 0, NULL);
        break;
    case STEP_COMMIT:
    case STEP_ROLLBACK:
        finish_attempt(run, c, t);
        break;
    case STEP_CONFIRM:
        finish_confirm(run, c, t);
        break;
    case STEP_IDLE:
    case STEP_DEAD:
        break;
    }
}

static void take_result(struct pg_run *run, struct pg_session *c, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (!c->failed && !run->reported_error) {
            fprintf(stderr, "pg-rowlock: statement failed: %s", PQresultErrorMessage(res));
            run->reported_error = true;
        }
        c->failed = true;
        return;
    }
    switch (c->step) {
    case STEP_SELECT:
        c->saw_free = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "free") == 0;
        break;
    case STEP_HOLD:
        c->took = strcmp(PQcmdTuples(res), "1") == 0;
        break;
    case STEP_COMMIT:
        /* COMMIT of a transaction that failed on the server answers ROLLBACK. */
        c->committed = strcmp(PQcmdStatus(res), "COMMIT") == 0;
        break;
    case STEP_CONFIRM:
        c->confirmed = strcmp(PQcmdTuples(res), "1") == 0;
        break;
    default:
        break;
    }
}

static void on_ready(struct pg_run *run, struct pg_session *c, short revents)
{
    if (c->want_write && (revents & POLLOUT)) {
        int rc = PQflush(c->conn);
        if (rc < 0) {
            session_lost(run, c);
            return;
        }
        c->want_write = rc == 1;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    if (PQconsumeInput(c->conn) != 1) {
        session_lost(run, c);
        return;
    }
    while (!PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        if (res == NULL) {
            advance(run, c);
            return;
        }
        take_result(run, c, res);
        PQclear(res);
    }
}

/* Attempts still unanswered when the grace period ends count as timeouts. */
static void abandon_in_flight(struct pg_run *run)
{
    fprintf(stderr, "pg-rowlock: %d attempts in flight and %zu waiting after the time bound; counted as errors\n",
            run->in_flight, run->line_len);
    for (int i = 0; i < run->nsessions; i++) {
        struct pg_session *c = &run->sessions[i];
        if (c->step != STEP_IDLE && c->step != STEP_DEAD)
            drop_session(run, c);
    }
}

static int drive(struct pg_run *run, struct pollfd *fds, int *owner)
{
    uint64_t t = now_us();
    for (int i = run->nsessions - 1; i >= 0; i--)
        run->idle[run->nidle++] = i;
    for (int i = 0; i < run->o->clients; i++)
        click(run, t);
    dispatch(run, t);
    while (run->in_flight > 0) {
        t = now_us();
        if (t >= run->deadline_us + PG_DRAIN_GRACE_US) {
            abandon_in_flight(run);
            break;
        }
        int n = 0;
        for (int i = 0; i < run->nsessions; i++) {
            struct pg_session *c = &run->sessions[i];
            if (c->step == STEP_IDLE || c->step == STEP_DEAD)
                continue;
            fds[n].fd = PQsocket(c->conn);
            fds[n].events = (short)(POLLIN | (c->want_write ? POLLOUT : 0));
            fds[n].revents = 0;
            owner[n++] = i;
        }
        int ready = poll(fds, (nfds_t)n, PG_POLL_MS);
        if (ready < 0 && errno != EINTR) {
            perror("pg-rowlock: poll");
            return -1;
        }
        for (int j = 0; j < n && ready > 0; j++) {
            if (fds[j].revents != 0)
                on_ready(run, &run->sessions[owner[j]], fds[j].revents);
        }
    }
    /* Attempts still waiting when no connection is left to take them. */
    run->out->errors += run->line_len;
    run->line_len = 0;
    return 0;
}

/* ---- entry point ---- */

/* What the report has no field for, on stderr: the pool's share of the latency, and what paying cost. */
static void report_extra(const struct pg_run *run)
{
    const struct bench_histogram *h = run->on_connection;
    if (h->total > 0)
        fprintf(stderr,
                "pg-rowlock: %d clients on %d connections; time on a connection alone: p50 %.3f ms, p99 %.3f ms"
                " (the burst figures add the wait for a connection)\n",
                run->o->clients, run->nsessions, (double)bench_histogram_percentile(h, 50) / 1000.0,
                (double)bench_histogram_percentile(h, 99) / 1000.0);
    if (run->confirms > 0)
        fprintf(
            stderr,
            "pg-rowlock: confirms (winners paying, not in the burst figures): mean %.3f ms, max %.3f ms over %" PRIu64
            "\n",
            (double)run->confirm_sum_us / (double)run->confirms / 1000.0, (double)run->confirm_max_us / 1000.0,
            run->confirms);
}

static int check_options(const struct bench_pg_options *o)
{
    if (o->conninfo == NULL || o->conninfo[0] == '\0') {
        fprintf(stderr, "pg-rowlock: no database URL (--database-url or DATABASE_URL)\n");
        return -1;
    }
    if (o->slots < 1 || o->slots > BENCH_MAX_HOT_SLOTS) {
        fprintf(stderr, "pg-rowlock: slots must be 1..%d\n", BENCH_MAX_HOT_SLOTS);
        return -1;
    }
    if (o->clients < 1) {
        fprintf(stderr, "pg-rowlock: clients must be at least 1\n");
        return -1;
    }
    return 0;
}

static void init_result(struct bench_result *out, struct bench_histogram *series)
{
    memset(out, 0, sizeof(*out));
    copy_text(out->scenario, sizeof(out->scenario), "burst");
    copy_text(out->target, sizeof(out->target), "pg-rowlock");
    bench_histogram_init(&out->latency);
    out->series = series;
}

int bench_baseline_pg_rowlock(const struct bench_pg_options *o, struct bench_result *out)
{
    if (check_options(o) != 0)
        return -1;
    int n = o->clients;
    if (o->max_connections > 0 && o->max_connections < n)
        n = o->max_connections;

    int rc = -1;
    struct pg_run run = {.o = o, .out = out, .requests = o->requests, .rng = o->seed};
    struct pollfd *fds = NULL;
    int *owner = NULL;
    PGconn *admin = open_connection(o->conninfo);
    init_result(out, calloc(BENCH_MAX_SECONDS, sizeof(struct bench_histogram)));
    run.sessions = calloc((size_t)n, sizeof(*run.sessions));
    run.slots = calloc((size_t)o->slots, sizeof(*run.slots));
    fds = calloc((size_t)n, sizeof(*fds));
    owner = calloc((size_t)n, sizeof(*owner));
    run.idle = calloc((size_t)n, sizeof(*run.idle));
    /* Each client has at most one attempt outstanding, so the line never holds more than clients. */
    run.line_cap = (uint64_t)o->clients < o->requests ? (size_t)o->clients : (size_t)o->requests + 1;
    run.line = calloc(run.line_cap, sizeof(*run.line));
    run.on_connection = malloc(sizeof(*run.on_connection));
    if (out->series == NULL || run.sessions == NULL || run.slots == NULL || fds == NULL || owner == NULL ||
        run.idle == NULL || run.line == NULL || run.on_connection == NULL) {
        fprintf(stderr, "pg-rowlock: out of memory\n");
        goto fail;
    }
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "pg-rowlock: cannot connect to PostgreSQL: %s", PQerrorMessage(admin));
        goto fail;
    }
    bench_histogram_init(run.on_connection);
    if (!reset_table(admin, o->slots) || open_sessions(&run, n) != 0)
        goto fail;
    out->connections = run.nsessions;
    out->users = -1;

    double bound = o->max_seconds > 0 && o->max_seconds < BENCH_MAX_SECONDS ? o->max_seconds : BENCH_MAX_SECONDS;
    run.t0_us = run.last_done_us = now_us();
    run.deadline_us = run.t0_us + (uint64_t)(bound * 1e6);
    if (drive(&run, fds, owner) != 0)
        goto fail;
    out->seconds = (double)(run.last_done_us - run.t0_us) / 1e6;
    report_extra(&run);

    if (!read_table(admin, run.slots, o->slots))
        goto fail;
    judge(&out->audit, run.slots, o->slots);
    rc = 0;
fail:
    if (rc != 0) {
        free(out->series);
        out->series = NULL;
        out->series_len = 0;
    }
    for (int i = 0; run.sessions != NULL && i < run.nsessions; i++)
        PQfinish(run.sessions[i].conn);
    PQfinish(admin);
    free(run.sessions);
    free(run.slots);
    free(fds);
    free(owner);
    free(run.idle);
    free(run.line);
    free(run.on_connection);
    return rc;
}
