/*
 * POST /api/v1/instructors/{id}/availability/block  {"blocks":[{start_time, end_time, reason}]}
 * DELETE /api/v1/instructors/{id}/availability/block/{block_uuid}
 *
 * Redis decides, all or nothing (lua/block.lua): a block over a held,
 * booked or blocked unit is refused with the range named. Postgres then
 * records the blocks, so that a Redis restarted empty gets them back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/availability.h"
#include "slk/booking.h"
#include "slk/instructor_store.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define MAX_BLOCKS 100
#define MAX_BLOCK_UNITS ((SLK_SCRIPT_MAX_ARGS - 2) / 3) /* per request: key + value + expiry each, one call */
#define MAX_REASON_BYTES 500

struct block {
    char uuid[37];
    int64_t start_ms, end_ms;
    bool start_naive, end_naive;
    struct slk_local_time start_local, end_local;
    char *reason;
    size_t first_unit, num_units; /* slice of block_op.units */
};

struct block_op {
    struct slk_request *req;
    char instructor[SLK_MAX_ID_LEN + 1];
    struct block *blocks;
    size_t num_blocks;
    int64_t *units; /* unit minutes of every block, in order */
    size_t num_units, units_cap;
    struct slk_instructor ins; /* a copy: the cache entry may change before Redis answers */
    int attempts;
};

static void op_free(struct block_op *op)
{
    for (size_t i = 0; i < op->num_blocks; i++)
        free(op->blocks[i].reason);
    free(op->blocks);
    free(op->units);
    free(op);
}

static void fail_invalid(struct block_op *op, const char *field, const char *why)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk_reply_invalid(req, field, why);
}

static void fail_backend(struct block_op *op, int err, const char *what)
{
    struct slk_request *req = op->req;
    op_free(op);
    slk__reply_backend_error(req, err, what);
}

static bool may_manage(const struct slk_request *req, const char *instructor)
{
    return slk__is_admin(req) || slk__is_instructor(req, instructor);
}

/* Body: each block needs start_time < end_time (RFC 3339, naive = instructor-local) and may carry a reason. */
static const char *parse_blocks(struct block_op *op, const json_t *body)
{
    const json_t *arr = json_object_get(body, "blocks");
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > MAX_BLOCKS)
        return "blocks";
    op->blocks = calloc(n, sizeof(*op->blocks));
    if (op->blocks == NULL)
        return "blocks";
    op->num_blocks = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(arr, i);
        struct block *b = &op->blocks[i];
        const json_t *st = json_object_get(item, "start_time"), *en = json_object_get(item, "end_time");
        const json_t *reason = json_object_get(item, "reason");
        if (!json_is_string(st) || slk_time_parse_rfc3339(json_string_value(st), json_string_length(st), &b->start_ms,
                                                          &b->start_naive, &b->start_local) != 0)
            return "start_time";
        if (!json_is_string(en) || slk_time_parse_rfc3339(json_string_value(en), json_string_length(en), &b->end_ms,
                                                          &b->end_naive, &b->end_local) != 0)
            return "end_time";
        if (reason != NULL && !json_is_null(reason)) {
            if (!json_is_string(reason) || json_string_length(reason) > MAX_REASON_BYTES)
                return "reason";
            b->reason = strdup(json_string_value(reason));
        }
        if (slk_uuid_v4(b->uuid) != 0)
            return "blocks";
    }
    return NULL;
}

static void on_blocked(void *data, redisReply *r, const char *err);

static int cmp_minute(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Two blocks sharing a unit would leave it to whichever is deleted first. */
static bool units_overlap(const struct block_op *op)
{
    if (op->num_units < 2)
        return false;
    int64_t *copy = malloc(op->num_units * sizeof(int64_t));
    if (copy == NULL)
        return true;
    memcpy(copy, op->units, op->num_units * sizeof(int64_t));
    qsort(copy, op->num_units, sizeof(int64_t), cmp_minute);
    bool dup = false;
    for (size_t i = 1; i < op->num_units && !dup; i++)
        dup = copy[i] == copy[i - 1];
    free(copy);
    return dup;
}

/* Times in the instructor's zone, then the grid units each block covers. */
static const char *plan_units(struct block_op *op, struct slk_tz *tz, const char **why)
{
    int64_t now = slk_clock_now_ms();
    op->num_units = 0;
    for (size_t i = 0; i < op->num_blocks; i++) {
        struct block *b = &op->blocks[i];
        *why = "the time does not exist in the instructor's time zone";
        if (b->start_naive && slk_tz_from_local(tz, &b->start_local, &b->start_ms) != 0)
            return "start_time";
        if (b->end_naive && slk_tz_from_local(tz, &b->end_local, &b->end_ms) != 0)
            return "end_time";
        *why = "end_time must be after start_time, and in the future";
        if (b->end_ms <= b->start_ms || b->end_ms <= now)
            return "end_time";
        b->first_unit = op->num_units;
        *why = "too much time blocked in one request";
        if (slk_grid_units(&op->ins, tz, b->start_ms, b->end_ms, MAX_BLOCK_UNITS, &op->units, &op->num_units,
                           &op->units_cap) != 0)
            return "blocks";
        b->num_units = op->num_units - b->first_unit;
    }
    *why = "blocks of one request must not overlap";
    return units_overlap(op) ? "blocks" : NULL;
}

static int eval_block(struct block_op *op)
{
    size_t n = op->num_units;
    const char **keys = malloc((n + 1) * sizeof(char *));
    const char **args = malloc((2 * n + 1) * sizeof(char *));
    char *storage = malloc((n + 1) * (SLK_KEY_MAX + 40 + 24));
    int rc = SLK_ENOMEM;
    if (keys != NULL && args != NULL && storage != NULL) {
        char ver[24];
        snprintf(ver, sizeof(ver), "%" PRId64, op->ins.version);
        keys[0] = storage;
        slk_key_meta(storage, op->instructor);
        args[0] = ver;
        char *p = storage + SLK_KEY_MAX + 40 + 24;
        for (size_t i = 0; i < op->num_blocks; i++) {
            const struct block *b = &op->blocks[i];
            for (size_t k = b->first_unit; k < b->first_unit + b->num_units; k++, p += SLK_KEY_MAX + 40 + 24) {
                char *value = p + SLK_KEY_MAX, *expire = value + 40;
                slk_key_unit(p, op->instructor, op->units[k]);
                snprintf(value, 40, "X:%s", b->uuid);
                snprintf(expire, 24, "%" PRId64, b->end_ms + SLK_BOOKED_UNIT_GRACE_MS);
                keys[1 + k] = p;
                args[1 + 2 * k] = value;
                args[2 + 2 * k] = expire;
            }
        }
        rc = slk_script_eval(op->req->worker->redis, SLK_SCRIPT_BLOCK, on_blocked, op, (int)n + 1, keys, NULL,
                             (int)(2 * n + 1), args, NULL);
    }
    free(keys);
    free(args);
    free(storage);
    return rc;
}

static void take_blocks(struct block_op *op, struct slk_instructor_entry *e)
{
    op->ins = e->ins;
    const char *why;
    const char *bad = plan_units(op, e->tz, &why);
    if (bad != NULL) {
        fail_invalid(op, bad, why);
        return;
    }
    int rc = eval_block(op);
    if (rc != 0)
        fail_backend(op, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE, "redis");
}

static void on_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct block_op *op = data;
    if (err != 0) {
        fail_backend(op, err, err == SLK_ENOTFOUND ? "instructor" : "redis");
        return;
    }
    take_blocks(op, e);
}

/* Postgres refused: take the units back (best effort: they expire with the block anyway). */
static void on_undone(void *data, redisReply *r, const char *err)
{
    (void)data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        slk_log(SLK_LOG_WARN, "block units not released", "error", err != NULL ? err : r->str, NULL);
}

static void release_block_units(struct slk_worker *w, const char *instructor, const char *uuid, int64_t start_ms,
                                int64_t end_ms, const int64_t *minutes, size_t n, slk_redis_cb cb, void *data)
{
    const char **keys = malloc(n * sizeof(char *));
    char *storage = malloc(n * SLK_KEY_MAX);
    char value[40], start[24], end[24];
    snprintf(value, sizeof(value), "X:%s", uuid);
    snprintf(start, sizeof(start), "%" PRId64, start_ms);
    snprintf(end, sizeof(end), "%" PRId64, end_ms);
    const char *args[3] = {value, start, end};
    if (keys != NULL && storage != NULL) {
        for (size_t k = 0; k < n; k++) {
            keys[k] = storage + k * SLK_KEY_MAX;
            slk_key_unit(storage + k * SLK_KEY_MAX, instructor, minutes[k]);
        }
        if (slk_script_eval(w->redis, SLK_SCRIPT_UNBLOCK, cb, data, (int)n, keys, NULL, 3, args, NULL) != 0)
            cb(data, NULL, "not queued");
    } else {
        cb(data, NULL, "out of memory");
    }
    free(keys);
    free(storage);
}

static json_t *block_json(const struct block *b)
{
    char start[32], end[32];
    slk_time_format_rfc3339(b->start_ms, start);
    slk_time_format_rfc3339(b->end_ms, end);
    return json_pack("{s:s, s:s, s:s, s:s?}", "uuid", b->uuid, "start_time", start, "end_time", end, "reason",
                     b->reason);
}

static void on_saved(void *data, PGresult *res, const char *err)
{
    struct block_op *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        slk_log(SLK_LOG_ERROR, "blocks not saved", "error", err != NULL ? err : PQresultErrorMessage(res), NULL);
        for (size_t i = 0; i < op->num_blocks; i++)
            release_block_units(op->req->worker, op->instructor, op->blocks[i].uuid, op->blocks[i].start_ms,
                                op->blocks[i].end_ms, op->units + op->blocks[i].first_unit, op->blocks[i].num_units,
                                on_undone, NULL);
        fail_backend(op, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < op->num_blocks; i++)
        json_array_append_new(list, block_json(&op->blocks[i]));
    struct slk_request *req = op->req;
    op_free(op);
    if (list == NULL) {
        slk_reply_error(req, 500, "internal_error", "Internal error", NULL);
        return;
    }
    slk_reply_ok(req, 201, "Time blocked", json_pack("{s:o}", "blocks", list));
}

static const char insert_sql[] = "INSERT INTO availability_blocks (uuid, instructor_id, start_at, end_at, reason) "
                                 "SELECT t.uuid, $1, 'epoch'::timestamptz + t.s * interval '1 millisecond', "
                                 "'epoch'::timestamptz + t.e * interval '1 millisecond', t.reason "
                                 "FROM json_to_recordset($2::json) AS t(uuid uuid, s bigint, e bigint, reason text)";

static void save(struct block_op *op)
{
    json_t *rows = json_array();
    for (size_t i = 0; rows != NULL && i < op->num_blocks; i++) {
        const struct block *b = &op->blocks[i];
        json_array_append_new(rows, json_pack("{s:s, s:I, s:I, s:s?}", "uuid", b->uuid, "s", (json_int_t)b->start_ms,
                                              "e", (json_int_t)b->end_ms, "reason", b->reason));
    }
    char *text = rows != NULL ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    const char *params[2] = {op->instructor, text};
    int rc = text == NULL ? SLK_ENOMEM : slk_pg_query(op->req->worker->pg, insert_sql, 2, params, on_saved, op);
    free(text);
    if (rc != 0) {
        on_saved(op, NULL, slk_pg_err_unavailable);
    }
}

static void reply_taken(struct block_op *op, size_t first, size_t last)
{
    size_t block = 0;
    while (block + 1 < op->num_blocks && op->blocks[block + 1].first_unit <= first)
        block++;
    size_t block_last = op->blocks[block].first_unit + op->blocks[block].num_units - 1;
    if (last > block_last)
        last = block_last; /* the script's run may continue into the next block's keys */
    int64_t step = (int64_t)op->ins.granularity_minutes * 60000;
    char from[32], to[32];
    slk_time_format_rfc3339(op->units[first] * 60000, from);
    slk_time_format_rfc3339(op->units[last] * 60000 + step, to);
    struct slk_request *req = op->req;
    op_free(op);
    slk_reply_error(req, 409, "slot_unavailable", "Part of the time to block is held or booked",
                    json_pack("{s:I, s:s, s:s}", "block_index", (json_int_t)block, "start_time", from, "end_time", to));
}

static const struct slk_redis_note announce_note = {
    "block not announced; other servers' kept replies see it within their full read", "announce"};

/*
 * Tells every server's kept availability replies (and its event streams)
 * which time each block took, as the hold and release scripts do: without
 * it, another process would show the time free until its next full read.
 */
static void announce(struct block_op *op)
{
    char channel[SLK_KEY_MAX], message[64];
    if (slk_key_events(channel, op->instructor) >= SLK_KEY_MAX)
        return;
    for (size_t i = 0; i < op->num_blocks; i++) {
        snprintf(message, sizeof(message), "blocked %" PRId64 " %" PRId64, op->blocks[i].start_ms,
                 op->blocks[i].end_ms);
        const char *argv[3] = {"PUBLISH", channel, message};
        slk_redis_fire(op->req->worker->redis, &announce_note, 3, argv);
    }
}

static void on_blocked(void *data, redisReply *r, const char *err)
{
    struct block_op *op = data;
    if (err != NULL || r->type == REDIS_REPLY_ERROR) {
        fail_backend(op, SLK_EUNAVAILABLE, "redis");
        return;
    }
    if (slk__script_reply_is(r, "OK")) {
        announce(op);
        save(op);
        return;
    }
    if (slk__script_reply_is(r, "TAKEN") && r->elements == 3 && r->element[1]->integer >= 0 &&
        (size_t)r->element[2]->integer < op->num_units) {
        reply_taken(op, (size_t)r->element[1]->integer, (size_t)r->element[2]->integer);
        return;
    }
    bool stale = slk__script_reply_is(r, "STALE"), noload = slk__script_reply_is(r, "NOLOAD");
    if ((stale || noload) && op->attempts++ < SLK_INSTRUCTOR_RESYNCS) {
        slk_instructor_resync(op->req->worker, op->instructor, noload, r, on_instructor, op);
        return;
    }
    fail_backend(op, stale || noload ? SLK_EUNAVAILABLE : SLK_EPROTO, "redis");
}

void slk_handle_block_create(struct slk_request *req)
{
    struct block_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    if (!slk__instructor_param(req, op->instructor)) {
        op_free(op);
        slk_reply_error(req, 404, "not_found", "No such instructor", NULL);
        return;
    }
    if (!may_manage(req, op->instructor)) {
        op_free(op);
        slk_reply_error(req, 403, "forbidden", "Only the instructor or an admin may block time", NULL);
        return;
    }
    json_t *body = slk__body_object(req, false);
    if (body == NULL) {
        op_free(op);
        return;
    }
    const char *bad = parse_blocks(op, body);
    json_decref(body);
    if (bad != NULL) {
        fail_invalid(op, bad, "blocks must be a list of 1 to 100 {start_time, end_time[, reason]}");
        return;
    }
    slk_instructor_get(req->worker, op->instructor, on_instructor, op);
}

/* DELETE: Postgres forgets the block, then its units are freed. */

struct unblock_op {
    struct slk_request *req;
    char instructor[SLK_MAX_ID_LEN + 1];
    char uuid[37];
    int64_t start_ms, end_ms;
};

static void finish_unblock(struct unblock_op *op, bool released)
{
    struct slk_request *req = op->req;
    json_t *data = json_pack("{s:s, s:b, s:b}", "uuid", op->uuid, "deleted", 1, "units_released", released);
    free(op);
    slk_reply_ok(req, 200, "Block removed", data);
}

/* Replies once Redis has freed the units, so that the next availability query on any worker sees the time free. */
static void on_unblocked(void *data, redisReply *r, const char *err)
{
    struct unblock_op *op = data;
    bool released = err == NULL && r->type != REDIS_REPLY_ERROR;
    if (!released)
        slk_log(SLK_LOG_WARN, "block deleted but its units stay until they expire", "block", op->uuid, "error",
                err != NULL ? err : r->str, NULL);
    finish_unblock(op, released);
}

static void on_unblock_instructor(void *data, struct slk_instructor_entry *e, int err)
{
    struct unblock_op *op = data;
    int64_t *minutes = NULL;
    size_t n = 0, cap = 0;
    if (err != 0 || slk_grid_units(&e->ins, e->tz, op->start_ms, op->end_ms, SIZE_MAX, &minutes, &n, &cap) != 0) {
        slk_log(SLK_LOG_WARN, "block deleted but its units stay until they expire", "block", op->uuid, NULL);
        finish_unblock(op, false);
    } else if (n == 0) {
        finish_unblock(op, true); /* the block lies in the past: nothing to free */
    } else {
        release_block_units(op->req->worker, op->instructor, op->uuid, op->start_ms, op->end_ms, minutes, n,
                            on_unblocked, op);
    }
    free(minutes);
}

static void on_deleted(void *data, PGresult *res, const char *err)
{
    struct unblock_op *op = data;
    struct slk_request *req = op->req;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    if (PQntuples(res) == 0) {
        free(op);
        slk_reply_error(req, 404, "not_found", "No such block", NULL);
        return;
    }
    op->start_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    op->end_ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    slk_instructor_get(req->worker, op->instructor, on_unblock_instructor, op);
}

void slk_handle_block_delete(struct slk_request *req)
{
    struct unblock_op *op = calloc(1, sizeof(*op));
    char uuid[64];
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    if (!slk__instructor_param(req, op->instructor) || !slk__param(req, 1, uuid, sizeof(uuid)) ||
        !slk_uuid_valid(uuid, strlen(uuid))) {
        free(op);
        slk_reply_error(req, 404, "not_found", "No such block", NULL);
        return;
    }
    if (!may_manage(req, op->instructor)) {
        free(op);
        slk_reply_error(req, 403, "forbidden", "Only the instructor or an admin may unblock time", NULL);
        return;
    }
    slk_uuid_canonical(uuid, op->uuid);
    const char *params[2] = {op->uuid, op->instructor};
    if (slk_pg_query(req->worker->pg,
                     "DELETE FROM availability_blocks WHERE uuid = $1 AND instructor_id = $2 RETURNING "
                     "(extract(epoch from start_at) * 1000)::bigint, (extract(epoch from end_at) * 1000)::bigint",
                     2, params, on_deleted, op) != 0) {
        free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
    }
}
