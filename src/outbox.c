/*
 * Booking events that happen in Redis only (holds, their extensions,
 * failures, cancellations and expiries) and their way into Postgres.
 *
 * Any worker records such an event with one XADD onto one Redis stream.
 * Worker 0 moves the stream into booking_events in batches (the mover),
 * scheduling the expiry check of every hold it moves, and finds holds that
 * lapsed unpaid (the expiry sweeper): nothing
 * else notices an expiry, since a hold just stops existing when its keys
 * time out. The dispatcher (outbox_dispatch.c) then delivers the rows.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox_internal.h"
#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/log.h"
#include "slk/outbox.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

/* A payment in progress (record 'confirming') normally ends within the pin grace; check again until then. */
#define CONFIRMING_RECHECK_MS 5000
#define CONFIRMING_GRACE_MS 60000

/* Recording */

static bool is_redis_error(const redisReply *r, const char *err)
{
    return err != NULL || r == NULL || r->type == REDIS_REPLY_ERROR;
}

static const char *redis_error_text(const redisReply *r, const char *err)
{
    if (err != NULL)
        return err;
    return r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
}

static void on_recorded(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (is_redis_error(r, err))
        slk_log(SLK_LOG_ERROR, "booking event not recorded", "error", redis_error_text(r, err), NULL);
}

/* A hold taken or extended: the booking still waits for payment, and its expiry is checked when it lapses. */
static bool is_hold_type(const char *type)
{
    return strcmp(type, "held") == 0 || strcmp(type, "extended") == 0;
}

/* The booking's status once the event happened. */
static const char *status_after(const char *type)
{
    return is_hold_type(type) ? "payment_required" : type;
}

/* Ids are checked where they enter (at most SLK_MAX_ID_LEN), so they fit; cut rather than overflow all the same. */
static void copy_id(char *dst, size_t cap, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s != NULL ? s : "", n);
    dst[n] = '\0';
}

static int record_eval(struct slk_redis *redis, const char *type, const struct slk_booking *b, const char *actor_id,
                       const char *actor_role, slk_redis_cb cb, void *data)
{
    struct slk__outbox_event e = {
        .at_ms = slk_clock_now_ms(),
        .start_ms = b->start_ms,
        .end_ms = b->end_ms,
        .expires_ms = b->hold_expires_ms,
        .has_expires = true,
    };
    copy_id(e.uuid, sizeof(e.uuid), b->uuid);
    copy_id(e.instructor, sizeof(e.instructor), b->instructor);
    copy_id(e.student, sizeof(e.student), b->student);
    copy_id(e.type, sizeof(e.type), type);
    copy_id(e.status, sizeof(e.status), status_after(type));
    copy_id(e.actor, sizeof(e.actor), actor_id);
    copy_id(e.role, sizeof(e.role), actor_role != NULL ? actor_role : "system");
    char packed[SLK_OUTBOX_EVENT_MAX];
    if (slk__outbox_event_pack(&e, packed, sizeof(packed)) < 0)
        return SLK_EINVAL;
    const char *argv[8] = {
        "XADD", SLK_OUTBOX_STREAM_KEY, "MAXLEN", "~", SLK_OUTBOX_STREAM_MAXLEN, "*", SLK_OUTBOX_EVENT_FIELD, packed,
    };
    return slk_redis_command_argv(redis, cb, data, (int)SLK_ARRAY_SIZE(argv), argv, NULL);
}

void slk_outbox_record(struct slk_worker *w, const char *type, const struct slk_booking *b, const char *actor_id,
                       const char *actor_role)
{
    int rc = record_eval(w->redis, type, b, actor_id, actor_role, on_recorded, NULL);
    if (rc != 0)
        slk_log(SLK_LOG_ERROR, "booking event not recorded", "booking", b->uuid, "type", type, "error",
                slk_strerror(rc), NULL);
}

/* Lifetime of worker 0's state */

void slk__outbox_ref(struct slk_outbox *o)
{
    o->refs++;
}

void slk__outbox_unref(struct slk_outbox *o)
{
    if (--o->refs > 0)
        return;
    slk_webhook_target_clear(&o->target);
    free(o);
}

static void on_timer_closed(uv_handle_t *h)
{
    slk__outbox_unref(h->data);
}

/* Mover: stream → booking_events, at least once (XDEL only after the INSERT committed; dedupe_key absorbs repeats). */

#define MOVE_COLUMNS 10

/* One row: the event read from its stream entry, and the values formatted for Postgres. */
struct move_row {
    struct slk__outbox_event ev;
    char at[32];
    char data[160];
    char key[128];
};

/* An expiry check to schedule: the hold, and the first ms of the list it waits in. */
struct due_entry {
    int64_t list_ms;
    char member[SLK_LISTING_MEMBER_MAX];
};

struct move_batch {
    struct slk_outbox *o;
    size_t n;   /* stream entries read */
    bool full;  /* a whole batch: more may be waiting */
    char **ids; /* their stream ids, for XDEL */
    struct move_row *rows;
    const char **params; /* MOVE_COLUMNS per row */
    size_t n_rows;
    struct due_entry *due; /* the expiry checks of the batch's held/extended events */
    size_t due_n;
    int scheduling;       /* schedule scripts not answered yet */
    bool schedule_failed; /* one was refused: the batch stays in the stream, to be moved and scheduled again */
};

static void move_start(struct slk_outbox *o);

static void move_done(struct move_batch *m)
{
    struct slk_outbox *o = m->o;
    bool again = m->full && !o->stopping;
    for (size_t i = 0; i < m->n; i++)
        free(m->ids[i]);
    free(m->ids);
    free(m->due);
    free(m->rows);
    free(m->params);
    free(m);
    o->moving = false;
    if (again)
        move_start(o);
    slk__outbox_unref(o);
}

static void on_moved_deleted(void *data, redisReply *r, const char *err)
{
    struct move_batch *m = data;
    if (is_redis_error(r, err))
        slk_log(SLK_LOG_WARN, "outbox stream entries not deleted (moved again later)", "error",
                redis_error_text(r, err), NULL);
    move_done(m);
}

/*
 * The mover always reads the oldest entries, so what it moved is exactly
 * everything below the successor of its last id: one XTRIM MINID frees them
 * (XDEL of each id costs Redis far more).
 */
static void delete_moved(struct move_batch *m)
{
    unsigned long long ms = 0, seq = 0;
    char minid[48];
    if (m->n == 0 || sscanf(m->ids[m->n - 1], "%llu-%llu", &ms, &seq) != 2) {
        move_done(m);
        return;
    }
    snprintf(minid, sizeof(minid), "%llu-%llu", ms, seq + 1);
    const char *argv[4] = {"XTRIM", SLK_OUTBOX_STREAM_KEY, "MINID", minid};
    if (slk_redis_command_argv(m->o->w->redis, on_moved_deleted, m, 4, argv, NULL) != 0)
        move_done(m);
}

/*
 * One INSERT of the whole batch with a parameter per column, each an array
 * literal: Postgres parses ten parameters instead of ten per row (its CPU
 * per moved hold went from 64-70 to 54-60 µs against a VALUES row each,
 * steady at 4,000 holds/s). WITH ORDINALITY keeps
 * the stream's order, so ids (and with them the order of delivery per
 * booking) follow it.
 */
static const char move_sql[] =
    "INSERT INTO booking_events (booking_uuid, instructor_id, student_id, type, status, actor_id, actor_role, "
    "occurred_at, data, dedupe_key) "
    "SELECT u.booking_uuid, u.instructor_id, u.student_id, u.type, u.status, u.actor_id, u.actor_role, "
    "u.occurred_at, u.data, u.dedupe_key "
    "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::timestamptz[], $9::jsonb[], $10::text[]) WITH ORDINALITY "
    "AS u(booking_uuid, instructor_id, student_id, type, status, actor_id, actor_role, occurred_at, data, "
    "dedupe_key, n) ORDER BY u.n ON CONFLICT (booking_uuid, dedupe_key) DO NOTHING";

/*
 * Column col of the batch's rows as a Postgres array literal: every element
 * double-quoted with its quotes and backslashes escaped, NULL bare (a quoted
 * "NULL" is the text). NULL when out of memory.
 */
static char *array_literal(const char **params, size_t rows, size_t col)
{
    size_t cap = 3;
    for (size_t r = 0; r < rows; r++) {
        const char *v = params[r * MOVE_COLUMNS + col];
        cap += 1 + (v != NULL ? 2 + 2 * strlen(v) : 4);
    }
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    char *p = out;
    *p++ = '{';
    for (size_t r = 0; r < rows; r++) {
        const char *v = params[r * MOVE_COLUMNS + col];
        if (r > 0)
            *p++ = ',';
        if (v == NULL) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        *p++ = '"';
        for (; *v != '\0'; v++) {
            if (*v == '"' || *v == '\\')
                *p++ = '\\';
            *p++ = *v;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* The batch's rows as move_sql's ten parameters; SLK_ENOMEM leaves none behind. */
static int move_arrays(const struct move_batch *m, char *arrays[MOVE_COLUMNS])
{
    for (size_t c = 0; c < MOVE_COLUMNS; c++) {
        arrays[c] = array_literal(m->params, m->n_rows, c);
        if (arrays[c] == NULL) {
            for (size_t k = 0; k < c; k++)
                free(arrays[k]);
            return SLK_ENOMEM;
        }
    }
    return 0;
}

/* The first ms of the list whose checks are due from at on. */
static int64_t due_list_ms(int64_t at)
{
    return at > 0 ? at - at % SLK_OUTBOX_DUE_LIST_MS : 0;
}

/* A list's key from its name in SLK_OUTBOX_DUE_LISTS_KEY (its first ms, in decimal). */
static void due_list_key(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, SLK_OUTBOX_DUE_LIST_PREFIX "%s", name);
}

/* Appends n expiry checks to the list of list_ms and ends the claim named (NULL: none) in the same step
 * (lua/outbox_schedule.lua). */
static int schedule_checks(struct slk_redis *redis, int64_t list_ms, const char *claim, const char **members, size_t n,
                           slk_redis_cb cb, void *data)
{
    char key[64], from[24];
    slk_format_i64(from, list_ms);
    due_list_key(key, sizeof(key), from);
    const char **args = malloc((n + 2) * sizeof(*args));
    if (args == NULL)
        return SLK_ENOMEM;
    args[0] = from;
    args[1] = claim != NULL ? claim : "";
    memcpy(&args[2], members, n * sizeof(*args));
    const char *keys[3] = {SLK_OUTBOX_DUE_LISTS_KEY, key, SLK_OUTBOX_DUE_KEY};
    int rc = slk_script_eval(redis, SLK_SCRIPT_OUTBOX_SCHEDULE, cb, data, 3, keys, NULL, (int)n + 2, args, NULL);
    free(args);
    return rc;
}

static int due_entry_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct due_entry *)a)->list_ms, y = ((const struct due_entry *)b)->list_ms;
    return (x > y) - (x < y);
}

/* The batch's entries leave the stream only once every check of theirs is scheduled. */
static void schedule_step_done(struct move_batch *m)
{
    if (--m->scheduling > 0)
        return;
    if (m->schedule_failed) {
        m->full = false; /* again at the next tick, not at once */
        move_done(m);
        return;
    }
    delete_moved(m);
}

static void on_due_scheduled(void *data, redisReply *r, const char *err)
{
    struct move_batch *m = data;
    if (is_redis_error(r, err)) {
        slk_log(SLK_LOG_WARN, "expiry checks not scheduled (the batch is moved again)", "error",
                redis_error_text(r, err), NULL);
        m->schedule_failed = true;
    }
    schedule_step_done(m);
}

/*
 * A moved hold (or extension) gets its expiry check here, and its stream
 * entry is deleted once the check is scheduled: a batch that fails in
 * between is moved and scheduled again; the dedupe key absorbs the repeated
 * rows, and a check listed twice runs twice to the same end. One script per
 * list the batch's checks fall in (holds taken together mostly share one).
 */
static void schedule_due(struct move_batch *m)
{
    const char **members = malloc(m->due_n * sizeof(*members));
    if (members == NULL) {
        slk_log(SLK_LOG_WARN, "expiry checks not scheduled (the batch is moved again)", "error", "out of memory", NULL);
        m->full = false;
        move_done(m);
        return;
    }
    qsort(m->due, m->due_n, sizeof(*m->due), due_entry_cmp);
    for (size_t i = 0; i < m->due_n; i++)
        members[i] = m->due[i].member;
    m->scheduling = 1; /* held until every script is sent */
    for (size_t first = 0, i = 1; i <= m->due_n; i++) {
        if (i < m->due_n && m->due[i].list_ms == m->due[first].list_ms)
            continue;
        m->scheduling++;
        if (schedule_checks(m->o->w->redis, m->due[first].list_ms, NULL, &members[first], i - first, on_due_scheduled,
                            m) != 0) {
            m->schedule_failed = true;
            m->scheduling--;
        }
        first = i;
    }
    free(members);
    schedule_step_done(m);
}

static void on_moved(void *data, PGresult *res, const char *err)
{
    struct move_batch *m = data;
    if (err != NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (err != slk_pg_err_shutdown)
            slk_log(SLK_LOG_WARN, "outbox events not moved to postgres (retried)", "error",
                    err != NULL ? err : PQresultErrorMessage(res), NULL);
        move_done(m);
        return;
    }
    if (m->due_n > 0)
        schedule_due(m);
    else
        delete_moved(m);
}

/*
 * One-off events keep one row per booking whichever way they arrive (the
 * 'held' of the bookings trigger included); repeatable ones (extended) are
 * told apart by their stream entry.
 */
static void dedupe_key(char *out, size_t cap, const char *uuid, const char *type, const char *entry_id)
{
    if (strcmp(type, "extended") == 0)
        snprintf(out, cap, "%s:%s:%s", uuid, type, entry_id);
    else
        snprintf(out, cap, "%s:%s", uuid, type);
}

/* {start, end[, hold_expires_at]} as the API writes times; absent values are left out. Only our own RFC 3339
 * timestamps go in, so nothing needs escaping. */
static void entry_data(const struct slk__outbox_event *ev, char *out, size_t cap)
{
    const int64_t times[] = {ev->start_ms, ev->end_ms, is_hold_type(ev->type) ? ev->expires_ms : 0};
    const char *keys[] = {"start", "end", "hold_expires_at"};
    size_t len = 0;
    out[len++] = '{';
    for (size_t i = 0; i < SLK_ARRAY_SIZE(times); i++) {
        if (times[i] == 0)
            continue;
        char ts[32];
        slk_time_format_rfc3339(times[i], ts);
        len += (size_t)snprintf(out + len, cap - len, "%s\"%s\":\"%s\"", len > 1 ? "," : "", keys[i], ts);
    }
    snprintf(out + len, cap - len, "}");
}

/* The row's values, as move_sql's columns take them. */
static void entry_row(const char *entry_id, struct move_row *row, const char **params)
{
    const struct slk__outbox_event *ev = &row->ev;
    slk_time_format_rfc3339(ev->at_ms, row->at);
    entry_data(ev, row->data, sizeof(row->data));
    dedupe_key(row->key, sizeof(row->key), ev->uuid, ev->type, entry_id);
    const char *values[MOVE_COLUMNS] = {
        ev->uuid,
        ev->instructor,
        ev->student,
        ev->type,
        ev->status,
        ev->actor[0] != '\0' ? ev->actor : NULL,
        ev->role[0] != '\0' ? ev->role : "system",
        row->at,
        row->data,
        row->key,
    };
    memcpy(params, values, sizeof(values));
}

static bool entry_ok(const redisReply *e)
{
    return e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[0]->type == REDIS_REPLY_STRING &&
           e->element[1]->type == REDIS_REPLY_ARRAY;
}

/* A hold or an extension: its expiry check is due when it lapses. */
static void collect_due(struct move_batch *m, const struct slk__outbox_event *ev)
{
    if (!ev->has_expires || !is_hold_type(ev->type))
        return;
    struct due_entry *d = &m->due[m->due_n];
    if (slk_hold_member(d->member, ev->instructor, ev->uuid) < 0) {
        slk_log(SLK_LOG_WARN, "expiry check not scheduled", "booking", ev->uuid, "error", "id too long", NULL);
        return;
    }
    d->list_ms = due_list_ms(ev->expires_ms);
    m->due_n++;
}

static int collect_entries(struct move_batch *m, const redisReply *r)
{
    m->ids = calloc(r->elements, sizeof(*m->ids));
    m->due = calloc(r->elements, sizeof(*m->due));
    m->rows = calloc(r->elements, sizeof(*m->rows));
    m->params = calloc(r->elements * MOVE_COLUMNS, sizeof(*m->params));
    if (m->ids == NULL || m->due == NULL || m->rows == NULL || m->params == NULL)
        return SLK_ENOMEM;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (!entry_ok(e))
            return SLK_EPROTO;
        m->ids[m->n] = strdup(e->element[0]->str);
        if (m->ids[m->n] == NULL)
            return SLK_ENOMEM;
        m->n++;
        struct move_row *row = &m->rows[m->n_rows];
        if (!slk__outbox_event_read(e->element[1], &row->ev)) {
            slk_log(SLK_LOG_ERROR, "damaged outbox stream entry dropped", "id", e->element[0]->str, NULL);
            continue;
        }
        entry_row(e->element[0]->str, row, &m->params[m->n_rows * MOVE_COLUMNS]);
        collect_due(m, &row->ev);
        m->n_rows++;
    }
    return 0;
}

static void on_range(void *data, redisReply *r, const char *err)
{
    struct move_batch *m = data;
    if (is_redis_error(r, err) || r->type != REDIS_REPLY_ARRAY) {
        if (err != slk_redis_err_disconnected && err != slk_redis_err_shutdown)
            slk_log(SLK_LOG_WARN, "outbox stream not read", "error", redis_error_text(r, err), NULL);
        move_done(m);
        return;
    }
    if (r->elements == 0 || m->o->stopping) {
        move_done(m);
        return;
    }
    m->full = r->elements >= SLK_OUTBOX_MOVE_BATCH;
    int rc = collect_entries(m, r);
    if (rc != 0) {
        slk_log(SLK_LOG_ERROR, "outbox stream not moved", "error", slk_strerror(rc), NULL);
        m->full = false;
        move_done(m);
        return;
    }
    if (m->n_rows == 0) {
        delete_moved(m);
        return;
    }
    char *arrays[MOVE_COLUMNS];
    rc = move_arrays(m, arrays);
    if (rc == 0) {
        rc = slk_pg_query(m->o->w->pg, move_sql, MOVE_COLUMNS, (const char *const *)arrays, on_moved, m);
        for (size_t c = 0; c < MOVE_COLUMNS; c++)
            free(arrays[c]);
    }
    if (rc != 0)
        move_done(m);
}

static void move_start(struct slk_outbox *o)
{
    struct move_batch *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return;
    m->o = o;
    o->moving = true;
    slk__outbox_ref(o);
    char count[16];
    snprintf(count, sizeof(count), "%d", SLK_OUTBOX_MOVE_BATCH);
    const char *argv[6] = {"XRANGE", SLK_OUTBOX_STREAM_KEY, "-", "+", "COUNT", count};
    if (slk_redis_command_argv(o->w->redis, on_range, m, 6, argv, NULL) != 0)
        move_done(m);
}

static void on_move_tick(uv_timer_t *t)
{
    struct slk_outbox *o = t->data;
    if (!o->moving && !o->stopping)
        move_start(o);
}

/*
 * Expiry sweeper: a hold that lapses unpaid just stops existing in Redis,
 * so its 'expired' event comes from a check scheduled at its expiry. The
 * check reads the record again, since the hold may have been paid,
 * cancelled or extended since.
 */

struct due_check {
    struct slk_outbox *o;
    char member[SLK_MAX_ID_LEN + 1 + 37];
    char instructor[SLK_MAX_ID_LEN + 1];
    char uuid[37];
    struct slk_booking b;
    int64_t now;
};

static void sweep_start(struct slk_outbox *o);

/* One sweep step finished; when the last one of a full batch ends, the next batch starts at once (a backlog of
 * lapsed holds is worked off as fast as Redis answers, not one batch per tick). */
static void sweep_step_done(struct slk_outbox *o)
{
    if (--o->sweeping == 0 && o->sweep_more && !o->stopping)
        sweep_start(o);
    slk__outbox_unref(o);
}

static void check_done(struct due_check *c)
{
    struct slk_outbox *o = c->o;
    slk_booking_clear(&c->b);
    free(c);
    sweep_step_done(o);
}

static void on_due_updated(void *data, redisReply *r, const char *err)
{
    if (is_redis_error(r, err))
        slk_log(SLK_LOG_WARN, "expiry check not updated (runs again)", "error", redis_error_text(r, err), NULL);
    check_done(data);
}

static void on_unlisted(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (is_redis_error(r, err))
        slk_log(SLK_LOG_DEBUG, "ended hold not unlisted (a listing trims it)", "error", redis_error_text(r, err), NULL);
}

/*
 * A hold whose check is finished is no longer live, and only live holds are
 * listed from Redis: its entries leave the instructor's and the student's
 * listing indexes now, so they hold live holds only and a student's index
 * goes away with the last one (a listing request trims too, but many never
 * come).
 */
static void unlist(struct due_check *c)
{
    char key[SLK_KEY_MAX], text[SLK_LISTING_MEMBER_MAX];
    snprintf(text, sizeof(text), "%s/%s", c->instructor, c->uuid); /* as earlier versions named a hold */
    const char *argv[4] = {"ZREM", key, text, c->uuid};            /* the instructor's index names it by uuid */
    slk_key_instructor_holds(key, c->instructor);
    if (slk_redis_command_argv(c->o->w->redis, on_unlisted, NULL, 4, argv, NULL) != 0)
        return;
    if (c->b.student[0] == '\0')
        return; /* the record is gone: its student is unknown */
    /* The student's key: the listing's member as this server writes it and as earlier versions did (the uuid's
     * text), and the cap's entry, whose hold no longer counts (so the key goes with its last hold, expiry or not). */
    char member[SLK_LISTING_MEMBER_MAX];
    const char *zrem[5] = {"ZREM", key, member, text, c->uuid};
    slk_key_student_holds(key, c->b.student);
    if (slk_hold_member(member, c->instructor, c->uuid) < 0 ||
        slk_redis_command_argv(c->o->w->redis, on_unlisted, NULL, 5, zrem, NULL) != 0)
        slk_log(SLK_LOG_DEBUG, "ended hold not unlisted for its student", "booking", c->uuid, NULL);
}

/* The check is over: nothing that happens to the hold from now on is the check's to record. */
static void check_finished(struct due_check *c)
{
    unlist(c);
    const char *zrem[3] = {"ZREM", SLK_OUTBOX_DUE_KEY, c->member};
    if (slk_redis_command_argv(c->o->w->redis, on_due_updated, c, 3, zrem, NULL) != 0)
        check_done(c);
}

/* The hold lives on (extended, or a payment in progress): checked again at at, and the claim ends in the same
 * step. When that fails, the claim stays and its lease brings the check back. */
static void due_again_at(struct due_check *c, int64_t at)
{
    char member[SLK_LISTING_MEMBER_MAX];
    const char *members[1] = {member};
    if (slk_hold_member(member, c->instructor, c->uuid) < 0 ||
        schedule_checks(c->o->w->redis, due_list_ms(at), c->member, members, 1, on_due_updated, c) != 0)
        check_done(c);
}

static void on_expired_recorded(void *data, redisReply *r, const char *err)
{
    struct due_check *c = data;
    if (is_redis_error(r, err)) {
        slk_log(SLK_LOG_WARN, "expired event not recorded (retried)", "booking", c->uuid, "error",
                redis_error_text(r, err), NULL);
        check_done(c); /* the member's lease brings it back */
        return;
    }
    check_finished(c);
}

static void on_units_touched(void *data, redisReply *r, const char *err)
{
    (void)data;
    (void)r;
    (void)err;
}

/*
 * Reading a key whose TTL passed makes Redis expire it at once (and send the
 * keyspace notification SSE clients wait for). Redis' own sampling may take
 * many seconds to find one lapsed key among thousands of live holds.
 */
static void touch_units(struct due_check *c)
{
    char **units = slk_booking_unit_keys(c->b.instructor, c->b.units_first_min, c->b.unit_minutes, c->b.unit_count);
    const char **argv = units != NULL ? malloc((1 + (size_t)c->b.unit_count) * sizeof(char *)) : NULL;
    if (argv != NULL) {
        argv[0] = "EXISTS";
        memcpy(&argv[1], units, (size_t)c->b.unit_count * sizeof(char *));
        if (slk_redis_command_argv(c->o->w->redis, on_units_touched, NULL, 1 + c->b.unit_count, argv, NULL) != 0)
            slk_log(SLK_LOG_DEBUG, "lapsed hold units not touched", "booking", c->uuid, NULL);
    }
    free(argv);
    free(units);
}

static void record_expired(struct due_check *c)
{
    touch_units(c);
    if (record_eval(c->o->w->redis, "expired", &c->b, "system", "system", on_expired_recorded, c) != 0)
        check_done(c);
}

/* A record still 'confirming' long after its expiry: expired unless Postgres has the booking. */
static void on_confirming_checked(void *data, PGresult *res, const char *err)
{
    struct due_check *c = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        check_done(c);
        return;
    }
    if (PQntuples(res) > 0)
        check_finished(c);
    else
        record_expired(c);
}

static void check_confirming(struct due_check *c)
{
    if (c->now < c->b.hold_expires_ms + CONFIRMING_GRACE_MS) {
        due_again_at(c, c->now + CONFIRMING_RECHECK_MS);
        return;
    }
    const char *params[1] = {c->uuid};
    if (slk_pg_query(c->o->w->pg, "SELECT 1 FROM bookings WHERE uuid = $1", 1, params, on_confirming_checked, c) != 0)
        check_done(c);
}

static void on_due_record(void *data, redisReply *r, const char *err)
{
    struct due_check *c = data;
    if (is_redis_error(r, err) || c->o->stopping) {
        check_done(c);
        return;
    }
    int rc = slk_booking_from_hash(&c->b, r, c->instructor, c->uuid);
    if (rc != 0 || c->b.in_pg) {
        check_finished(c); /* gone (retention), damaged, or Postgres owns it and its trigger tells */
        return;
    }
    if (strcmp(c->b.status, "payment_required") == 0) {
        if (c->b.hold_expires_ms <= c->now)
            record_expired(c);
        else
            due_again_at(c, c->b.hold_expires_ms); /* extended */
        return;
    }
    if (strcmp(c->b.status, "confirming") == 0) {
        check_confirming(c);
        return;
    }
    if (strcmp(c->b.status, "expired") == 0) {
        record_expired(c); /* a late payment found its time taken (pin.lua) */
        return;
    }
    check_finished(c); /* paid, cancelled or failed: someone else recorded it */
}

static void on_damaged_dropped(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (is_redis_error(r, err))
        slk_log(SLK_LOG_DEBUG, "damaged expiry entry not removed (found again later)", "error",
                redis_error_text(r, err), NULL);
}

/*
 * A member of the claims' set no check can read would come back with every
 * lease, and a name in the lists' index that names no list would stand at the
 * head of every sweep (only this file writes either): it goes.
 */
static void drop_damaged(struct slk_outbox *o, const char *key, const char *member, size_t len)
{
    const char *argv[3] = {"ZREM", key, member};
    const size_t lens[3] = {4, strlen(key), len};
    slk_log(SLK_LOG_WARN, "damaged expiry entry dropped", "key", key, NULL);
    if (slk_redis_command_argv(o->w->redis, on_damaged_dropped, NULL, 3, argv, lens) != 0)
        slk_log(SLK_LOG_DEBUG, "damaged expiry entry not removed (found again later)", "key", key, NULL);
}

static void check_start(struct slk_outbox *o, const char *member, size_t len, int64_t now)
{
    struct due_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    if (len >= sizeof(c->member) || slk_hold_member_parse(member, len, c->instructor, c->uuid) != 0) {
        free(c);
        drop_damaged(o, SLK_OUTBOX_DUE_KEY, member, len);
        return;
    }
    c->o = o;
    c->now = now;
    memcpy(c->member, member, len);
    slk_booking_init(&c->b);
    o->sweeping++;
    slk__outbox_ref(o);
    char key[SLK_KEY_MAX];
    const char *argv[2] = {"HGETALL", key};
    slk_key_booking(key, c->instructor, c->uuid);
    if (slk_redis_command_argv(o->w->redis, on_due_record, c, 2, argv, NULL) != 0)
        check_done(c);
}

/* One sweep: find the lists whose time has passed, then claim checks from them and from the claims' set. */
struct sweep {
    struct slk_outbox *o;
    int64_t now;
    bool lists_full; /* as many lists found as one sweep drains: more may be due */
};

static void on_due(void *data, redisReply *r, const char *err)
{
    struct sweep *s = data;
    struct slk_outbox *o = s->o;
    if (is_redis_error(r, err) || r->type != REDIS_REPLY_ARRAY) {
        if (err != slk_redis_err_disconnected && err != slk_redis_err_shutdown)
            slk_log(SLK_LOG_WARN, "expiry checks not read", "error", redis_error_text(r, err), NULL);
    } else if (!o->stopping) {
        o->sweep_more = r->elements >= SLK_OUTBOX_SWEEP_BATCH || s->lists_full;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                check_start(o, r->element[i]->str, r->element[i]->len, s->now);
    }
    free(s);
    sweep_step_done(o);
}

static void on_sweep_tick(uv_timer_t *t)
{
    struct slk_outbox *o = t->data;
    if (o->sweeping == 0 && !o->stopping)
        sweep_start(o);
}

static void sweep_abandon(struct sweep *s)
{
    struct slk_outbox *o = s->o;
    free(s);
    sweep_step_done(o);
}

/* A list's name in SLK_OUTBOX_DUE_LISTS_KEY: its first ms, as our own decimal text. */
static bool due_list_name_ok(const redisReply *e)
{
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 19)
        return false;
    for (size_t i = 0; i < e->len; i++)
        if (e->str[i] < '0' || e->str[i] > '9')
            return false;
    return true;
}

/* Claims up to a batch of checks: those whose time passed in the claims' set, then from the lists found. */
static void on_due_lists(void *data, redisReply *r, const char *err)
{
    struct sweep *s = data;
    if (is_redis_error(r, err) || r->type != REDIS_REPLY_ARRAY || s->o->stopping) {
        if (is_redis_error(r, err) && err != slk_redis_err_disconnected && err != slk_redis_err_shutdown)
            slk_log(SLK_LOG_WARN, "expiry checks not read", "error", redis_error_text(r, err), NULL);
        sweep_abandon(s);
        return;
    }
    char now[24], lease[24], limit[16], list_keys[SLK_OUTBOX_SWEEP_LISTS][64];
    const char *keys[2 + SLK_OUTBOX_SWEEP_LISTS] = {SLK_OUTBOX_DUE_KEY, SLK_OUTBOX_DUE_LISTS_KEY};
    const char *args[3 + SLK_OUTBOX_SWEEP_LISTS] = {now, lease, limit};
    int lists = 0;
    for (size_t i = 0; i < r->elements && lists < SLK_OUTBOX_SWEEP_LISTS; i++) {
        const redisReply *e = r->element[i];
        if (!due_list_name_ok(e)) {
            if (e->type == REDIS_REPLY_STRING)
                drop_damaged(s->o, SLK_OUTBOX_DUE_LISTS_KEY, e->str, e->len);
            continue;
        }
        due_list_key(list_keys[lists], sizeof(list_keys[lists]), e->str);
        keys[2 + lists] = list_keys[lists];
        args[3 + lists] = e->str;
        lists++;
    }
    s->lists_full = r->elements >= SLK_OUTBOX_SWEEP_LISTS;
    slk_format_i64(now, s->now);
    slk_format_i64(lease, s->now + SLK_OUTBOX_DUE_LEASE_MS);
    snprintf(limit, sizeof(limit), "%d", SLK_OUTBOX_SWEEP_BATCH);
    if (slk_script_eval(s->o->w->redis, SLK_SCRIPT_OUTBOX_DUE, on_due, s, 2 + lists, keys, NULL, 3 + lists, args,
                        NULL) != 0)
        sweep_abandon(s);
}

static void sweep_start(struct slk_outbox *o)
{
    o->sweep_more = false;
    struct sweep *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->o = o;
    s->now = slk_clock_now_ms();
    o->sweeping++;
    slk__outbox_ref(o);
    /* A list is due once its last ms passed. */
    char last_due[24], limit[16];
    slk_format_i64(last_due, s->now - SLK_OUTBOX_DUE_LIST_MS);
    snprintf(limit, sizeof(limit), "%d", SLK_OUTBOX_SWEEP_LISTS);
    const char *argv[7] = {"ZRANGEBYSCORE", SLK_OUTBOX_DUE_LISTS_KEY, "-inf", last_due, "LIMIT", "0", limit};
    if (slk_redis_command_argv(o->w->redis, on_due_lists, s, 7, argv, NULL) != 0)
        sweep_abandon(s);
}

/* Start and stop */

static void timer_start(struct slk_outbox *o, uv_timer_t *t, uv_timer_cb cb, uint64_t every_ms)
{
    uv_timer_init(&o->w->loop, t);
    t->data = o;
    slk__outbox_ref(o);
    uv_timer_start(t, cb, every_ms, every_ms);
}

int slk_outbox_start(struct slk_worker *w)
{
    struct slk_outbox *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return SLK_ENOMEM;
    o->w = w;
    o->refs = 1;
    const struct slk_config *cfg = w->cfg;
    if (cfg->webhook_url != NULL) {
        int rc = slk_webhook_target_parse(&o->target, cfg->webhook_url);
        if (rc != 0) {
            slk_log(SLK_LOG_ERROR, "WEBHOOK_URL not usable: events are only recorded", NULL);
            free(o);
            return rc;
        }
        const char *secret = cfg->events_secret != NULL ? cfg->events_secret : cfg->webhook_secret;
        o->secret = (const unsigned char *)secret;
        o->secret_len = strlen(secret);
        o->dispatch_enabled = true;
    }
    timer_start(o, &o->mover_timer, on_move_tick, SLK_OUTBOX_MOVE_MS);
    timer_start(o, &o->sweep_timer, on_sweep_tick, SLK_OUTBOX_SWEEP_MS);
    if (o->dispatch_enabled)
        timer_start(o, &o->dispatch_timer, slk__outbox_dispatch_tick, SLK_OUTBOX_DISPATCH_MS);
    w->outbox = o;
    return 0;
}

static void timer_close(uv_timer_t *t)
{
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_timer_closed);
}

void slk_outbox_stop(struct slk_worker *w)
{
    struct slk_outbox *o = w->outbox;
    if (o == NULL)
        return;
    w->outbox = NULL;
    o->stopping = true;
    timer_close(&o->mover_timer);
    timer_close(&o->sweep_timer);
    if (o->dispatch_enabled)
        timer_close(&o->dispatch_timer);
    slk__outbox_dispatch_abort(o);
    slk__outbox_unref(o);
}
