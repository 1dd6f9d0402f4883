/*
 * GET /api/v1/bookings?student_uuid=…|instructor_uuid=…[&status=…][&from=…&to=…][&limit=…&cursor=…]
 *
 * Newest start first, keyset-paginated on (start, uuid): a page never
 * repeats or skips a booking that existed on both sides of it, whatever
 * arrives in between. Postgres has every booking that got past payment;
 * live holds exist only in Redis and are merged in from the per-student or
 * per-instructor listing index (slk:…:holds), whose dead entries are
 * dropped on the way.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "handlers/handlers_internal.h"
#include "slk/auth.h"
#include "slk/booking.h"
#include "slk/json_text.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/response.h"
#include "slk/routes.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define DEFAULT_LIMIT 20
#define MAX_LIMIT 100
#define NO_CURSOR INT64_MAX

struct list_op {
    struct slk_request *req;
    bool by_student;
    char who[SLK_MAX_ID_LEN + 1];
    char status[24]; /* "" for any */
    int64_t from_ms, to_ms;
    int limit;
    int64_t cursor_start; /* NO_CURSOR: first page */
    char cursor_uuid[37];

    struct slk_booking *items; /* collected from both stores */
    size_t num_items, cap_items;
    int64_t horizon_start; /* Redis was read only down to here: nothing below may be returned this page */
    char horizon_uuid[37];
    bool horizon;
    bool pg_more;
    size_t pending;   /* Redis record reads in flight */
    bool read_failed; /* a record could not be read: the page would skip it */
    int64_t now;
};

static void op_free(struct list_op *op)
{
    for (size_t i = 0; i < op->num_items; i++)
        slk_booking_clear(&op->items[i]);
    free(op->items);
    free(op);
}

static struct slk_booking *add_item(struct list_op *op)
{
    if (op->num_items == op->cap_items) {
        size_t cap = op->cap_items == 0 ? 32 : op->cap_items * 2;
        struct slk_booking *v = realloc(op->items, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        op->items = v;
        op->cap_items = cap;
    }
    struct slk_booking *b = &op->items[op->num_items++];
    slk_booking_init(b);
    return b;
}

/* (start, uuid) descending. */
static int key_cmp(int64_t start_a, const char *uuid_a, int64_t start_b, const char *uuid_b)
{
    if (start_a != start_b)
        return start_a > start_b ? -1 : 1;
    return -strcmp(uuid_a, uuid_b);
}

static bool before_cursor(const struct list_op *op, int64_t start, const char *uuid)
{
    return op->cursor_start == NO_CURSOR || key_cmp(start, uuid, op->cursor_start, op->cursor_uuid) > 0;
}

static int item_cmp(const void *a, const void *b)
{
    const struct slk_booking *x = a, *y = b;
    return key_cmp(x->start_ms, x->uuid, y->start_ms, y->uuid);
}

/* The cursor is opaque to clients: hex of "<start ms>:<uuid>". */
static void cursor_encode(int64_t start, const char *uuid, char out[160])
{
    char plain[64];
    int n = snprintf(plain, sizeof(plain), "%" PRId64 ":%s", start, uuid);
    for (int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)plain[i]);
}

static bool cursor_decode(const char *s, struct list_op *op)
{
    size_t n = strlen(s);
    char plain[64];
    if (n == 0 || n % 2 != 0 || n / 2 >= sizeof(plain))
        return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]), lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        plain[i] = (char)(hi * 16 + lo);
    }
    plain[n / 2] = '\0';
    char *colon = strchr(plain, ':'), *end;
    if (colon == NULL || !slk_uuid_valid(colon + 1, strlen(colon + 1)))
        return false;
    *colon = '\0';
    errno = 0;
    op->cursor_start = strtoll(plain, &end, 10);
    /* Years 0001-9999 only: anything else is not a cursor this server made (and would overflow in SQL). */
    if (*end != '\0' || end == plain || errno != 0 || op->cursor_start < -62135596800000LL ||
        op->cursor_start > 253402300799999LL)
        return false;
    slk_uuid_canonical(colon + 1, op->cursor_uuid);
    return true;
}

static void reply_page(struct list_op *op)
{
    if (op->num_items > 1)
        qsort(op->items, op->num_items, sizeof(*op->items), item_cmp);
    struct slk_json_text t;
    slk_reply_text_begin(&t, 200, "Bookings");
    slk_json_text_open(&t, '{');
    slk_json_text_key(&t, "items");
    slk_json_text_open(&t, '[');
    size_t shown = 0, last = 0; /* last: index of the last item shown */
    bool more = op->pg_more;
    for (size_t i = 0; i < op->num_items; i++) {
        const struct slk_booking *b = &op->items[i];
        /* A hold confirmed between the Redis and the Postgres read is in both: list it once, as Postgres has it. */
        bool twin = (i + 1 < op->num_items && strcmp(b->uuid, op->items[i + 1].uuid) == 0) ||
                    (i > 0 && strcmp(b->uuid, op->items[i - 1].uuid) == 0);
        if (twin && !b->in_pg)
            continue;
        if (shown == (size_t)op->limit ||
            (op->horizon && key_cmp(b->start_ms, b->uuid, op->horizon_start, op->horizon_uuid) > 0)) {
            more = true;
            break;
        }
        slk_booking_write_json(&t, b, op->now);
        shown++;
        last = i;
    }
    slk_json_text_close(&t, ']');
    if (op->horizon)
        more = true;
    slk_json_text_key(&t, "next_cursor");
    if (more && (shown > 0 || op->horizon)) {
        /* An empty page that stopped at the Redis horizon goes on from there. */
        char cursor[160];
        if (shown > 0)
            cursor_encode(op->items[last].start_ms, op->items[last].uuid, cursor);
        else
            cursor_encode(op->horizon_start, op->horizon_uuid, cursor);
        slk_json_text_string(&t, cursor);
    } else {
        slk_json_text_null(&t);
    }
    slk_json_text_close(&t, '}');
    struct slk_request *req = op->req;
    op_free(op);
    slk_reply_text_end(req, 200, &t);
}

/* Postgres: one keyset query, one row more than a page to know whether more follow. */

static void on_rows(void *data, PGresult *res, const char *err)
{
    struct list_op *op = data;
    if (err != NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        struct slk_request *req = op->req;
        op_free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
        return;
    }
    int rows = PQntuples(res);
    op->pg_more = rows > op->limit;
    for (int i = 0; i < rows && i < op->limit; i++) {
        struct slk_booking *b = add_item(op);
        if (b == NULL || slk_booking_from_pg(b, res, i) != 0) {
            struct slk_request *req = op->req;
            op_free(op);
            slk__reply_backend_error(req, SLK_ENOMEM, "list");
            return;
        }
    }
    reply_page(op);
}

#define LIST_WHERE                                                                                                     \
    " AND ($2::text = '' OR status = $2) "                                                                             \
    "AND ($3::bigint IS NULL OR start_at >= 'epoch'::timestamptz + $3::bigint * interval '1 millisecond') "            \
    "AND ($4::bigint IS NULL OR start_at < 'epoch'::timestamptz + $4::bigint * interval '1 millisecond') "             \
    "AND ($5::bigint IS NULL OR (start_at, uuid) < ('epoch'::timestamptz + $5::bigint * interval '1 millisecond', "    \
    "$6::uuid)) ORDER BY start_at DESC, uuid DESC LIMIT $7"

static const char student_sql[] = "SELECT " SLK_BOOKING_PG_COLUMNS " FROM bookings WHERE student_id = $1" LIST_WHERE;
static const char instructor_sql[] =
    "SELECT " SLK_BOOKING_PG_COLUMNS " FROM bookings WHERE instructor_id = $1" LIST_WHERE;

static void query_pg(struct list_op *op)
{
    char from[24], to[24], cursor[24], limit[16];
    snprintf(from, sizeof(from), "%" PRId64, op->from_ms);
    snprintf(to, sizeof(to), "%" PRId64, op->to_ms);
    snprintf(cursor, sizeof(cursor), "%" PRId64, op->cursor_start);
    snprintf(limit, sizeof(limit), "%d", op->limit + 1);
    bool first_page = op->cursor_start == NO_CURSOR;
    const char *params[7] = {op->who,
                             op->status,
                             op->from_ms > 0 ? from : NULL,
                             op->to_ms != NO_CURSOR ? to : NULL,
                             first_page ? NULL : cursor,
                             first_page ? NULL : op->cursor_uuid,
                             limit};
    if (slk_pg_query(op->req->worker->pg, op->by_student ? student_sql : instructor_sql, 7, params, on_rows, op) != 0) {
        struct slk_request *req = op->req;
        op_free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "postgres");
    }
}

/* Redis: the listing index, then each hold's record. */

static void on_index_trimmed(void *data, redisReply *r, const char *err)
{
    (void)data;
    (void)r;
    (void)err;
}

/* The listing index this request reads: the student's or the instructor's. Returns the key's length. */
static int index_key(const struct list_op *op, char key[SLK_KEY_MAX])
{
    return op->by_student ? slk_key_student_holds(key, op->who) : slk_key_instructor_holds(key, op->who);
}

static void drop_entry(struct list_op *op, const char *member)
{
    char key[SLK_KEY_MAX];
    int len = index_key(op, key);
    const char *argv[3] = {"ZREM", key, member};
    size_t lens[3] = {4, (size_t)len, strlen(member)};
    if (slk_redis_command_argv(op->req->worker->redis, on_index_trimmed, NULL, 3, argv, lens) != 0)
        slk_log(SLK_LOG_DEBUG, "listing entry not dropped", NULL);
}

#define MEMBER_MAX (2 * SLK_MAX_ID_LEN + 2)
/* A cursor or horizon at a start with this uuid stands below every booking of that start (no v4 or v7 uuid is all
 * zeros): a page that ends there goes on with the earlier starts. */
#define BELOW_EVERY_UUID "00000000-0000-0000-0000-000000000000"

struct record_read {
    struct list_op *op;
    char member[MEMBER_MAX]; /* as the index has it */
    char instructor[SLK_MAX_ID_LEN + 1];
    char uuid[37];
};

static void record_done(struct list_op *op)
{
    if (--op->pending > 0)
        return;
    if (op->read_failed) {
        struct slk_request *req = op->req;
        op_free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "redis");
        return;
    }
    query_pg(op);
}

/* Only live, unpaid holds come from Redis; everything else is Postgres's to list. */
static bool listable_hold(const struct list_op *op, const struct slk_booking *b)
{
    if (b->in_pg || strcmp(slk_booking_status(b, op->now), "payment_required") != 0)
        return false;
    if (op->status[0] != '\0' && strcmp(op->status, "payment_required") != 0)
        return false;
    const char *owner = op->by_student ? b->student : b->instructor;
    return strcmp(owner, op->who) == 0 && b->start_ms >= op->from_ms && b->start_ms < op->to_ms &&
           before_cursor(op, b->start_ms, b->uuid);
}

static void on_record(void *data, redisReply *r, const char *err)
{
    struct record_read *rr = data;
    struct list_op *op = rr->op;
    if (err != NULL || r->type != REDIS_REPLY_ARRAY)
        op->read_failed = true;
    else {
        struct slk_booking b;
        if (slk_booking_from_hash(&b, r, rr->instructor, rr->uuid) == 0 && listable_hold(op, &b)) {
            struct slk_booking *slot = add_item(op);
            if (slot != NULL)
                *slot = b;
            else
                slk_booking_clear(&b);
        } else {
            if (r->elements == 0 || strcmp(slk_booking_status(&b, op->now), "payment_required") != 0)
                drop_entry(op, rr->member);
            slk_booking_clear(&b);
        }
    }
    free(rr);
    record_done(op);
}

/*
 * A student's index names its holds '<instructor>/<uuid>' (booking.h); an
 * instructor's own index just '<uuid>' (earlier versions wrote the long form
 * there too). False when the member is damaged.
 */
static bool member_hold(const struct list_op *op, const char *member, size_t len, char instructor[SLK_MAX_ID_LEN + 1],
                        char uuid[37])
{
    if (memchr(member, '/', len) != NULL)
        return slk_hold_member_parse(member, len, instructor, uuid) == 0;
    if (op->by_student || !slk_uuid_valid(member, len))
        return false;
    memcpy(uuid, member, 36);
    uuid[36] = '\0';
    snprintf(instructor, SLK_MAX_ID_LEN + 1, "%s", op->who);
    return true;
}

static void read_record(struct list_op *op, const char *member, size_t len)
{
    char instructor[SLK_MAX_ID_LEN + 1], uuid[37];
    if (len >= MEMBER_MAX || !member_hold(op, member, len, instructor, uuid))
        return; /* damaged: skipped */
    struct record_read *rr = calloc(1, sizeof(*rr));
    if (rr == NULL) {
        op->read_failed = true;
        return;
    }
    memcpy(rr->member, member, len);
    rr->op = op;
    memcpy(rr->uuid, uuid, sizeof(uuid));
    memcpy(rr->instructor, instructor, sizeof(instructor));
    char key[SLK_KEY_MAX];
    const char *argv[2] = {"HGETALL", key};
    size_t lens[2] = {7, (size_t)slk_key_booking(key, rr->instructor, rr->uuid)};
    op->pending++;
    if (slk_redis_command_argv(op->req->worker->redis, on_record, rr, 2, argv, lens) != 0) {
        op->pending--;
        op->read_failed = true;
        free(rr);
    }
}

static void on_ties(void *data, redisReply *r, const char *err)
{
    struct list_op *op = data;
    if (err != NULL || r->type != REDIS_REPLY_ARRAY)
        op->read_failed = true;
    else {
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_STRING)
                read_record(op, r->element[i]->str, r->element[i]->len);
        }
    }
    record_done(op);
}

/*
 * A full batch may end inside a group of entries with one start, and Redis orders such a group by its members'
 * bytes ('<instructor>/…'), not by uuid: an entry left unread there could belong before the last one read, and
 * be skipped for good once a later page's cursor passed it. So the whole group is read, and the page shows
 * nothing that starts earlier (the horizon: that start, below every uuid).
 */
static void read_ties(struct list_op *op, const char *score, size_t score_len)
{
    char key[SLK_KEY_MAX];
    int len = index_key(op, key);
    const char *argv[4] = {"ZRANGEBYSCORE", key, score, score};
    size_t lens[4] = {13, (size_t)len, score_len, score_len};
    op->horizon = true;
    op->horizon_start = strtoll(score, NULL, 10);
    snprintf(op->horizon_uuid, sizeof(op->horizon_uuid), "%s", BELOW_EVERY_UUID);
    op->pending++;
    if (slk_redis_command_argv(op->req->worker->redis, on_ties, op, 4, argv, lens) != 0) {
        op->pending--;
        op->read_failed = true;
    }
}

static void on_index(void *data, redisReply *r, const char *err)
{
    struct list_op *op = data;
    if (err != NULL || r->type != REDIS_REPLY_ARRAY) {
        struct slk_request *req = op->req;
        op_free(op);
        slk__reply_backend_error(req, SLK_EUNAVAILABLE, "redis");
        return;
    }
    /* WITHSCORES: member, score, … The index was read only this far when the reply is a full batch. */
    size_t n = r->elements / 2;
    const redisReply *last = n > 0 && n == (size_t)(2 * op->limit + 2) ? r->element[2 * n - 1] : NULL;
    op->pending = 1; /* held until every read is sent */
    if (last != NULL)
        read_ties(op, last->str, last->len);
    for (size_t i = 0; i < n; i++) {
        const redisReply *m = r->element[2 * i], *score = r->element[2 * i + 1];
        if (last != NULL && score->len == last->len && memcmp(score->str, last->str, last->len) == 0)
            continue; /* the horizon's group: read whole by read_ties */
        if (m->type == REDIS_REPLY_STRING)
            read_record(op, m->str, m->len);
    }
    record_done(op);
}

/* Entries whose start has passed can no longer be live holds. A student's key also counts live holds for the
 * cap, below 0 (lua/hold_cap.lua): those stay. */
static void trim_index(struct list_op *op, const char *key, size_t len)
{
    char upto[24];
    snprintf(upto, sizeof(upto), "(%" PRId64, op->now);
    const char *argv[4] = {"ZREMRANGEBYSCORE", key, "0", upto};
    size_t lens[4] = {16, len, 1, strlen(upto)};
    if (slk_redis_command_argv(op->req->worker->redis, on_index_trimmed, NULL, 4, argv, lens) != 0)
        slk_log(SLK_LOG_DEBUG, "listing index not trimmed", NULL);
}

static void query_redis(struct list_op *op)
{
    char key[SLK_KEY_MAX], max[24], min[24], count[16];
    int len = index_key(op, key);
    trim_index(op, key, (size_t)len);
    int64_t upper = op->cursor_start < op->to_ms ? op->cursor_start : op->to_ms;
    /* Past starts can no longer be live holds: never read them. */
    int64_t lower = op->from_ms > op->now ? op->from_ms : op->now;
    bool below = upper == op->cursor_start && strcmp(op->cursor_uuid, BELOW_EVERY_UUID) == 0;
    snprintf(max, sizeof(max), below ? "(%" PRId64 : "%" PRId64, upper);
    snprintf(min, sizeof(min), "%" PRId64, lower);
    snprintf(count, sizeof(count), "%d", 2 * op->limit + 2);
    const char *argv[8] = {"ZREVRANGEBYSCORE", key, max, min, "WITHSCORES", "LIMIT", "0", count};
    size_t lens[8] = {16, (size_t)len, strlen(max), strlen(min), 10, 5, 1, strlen(count)};
    if (slk_redis_command_argv(op->req->worker->redis, on_index, op, 8, argv, lens) != 0)
        on_index(op, NULL, slk_redis_err_disconnected);
}

/* Request parsing and R-SEC. */

static const char *const statuses[] = {
    "payment_required", "paid",     "confirmed", "payment_failed",  "expired",
    "cancelled",        "rejected", "completed", "no_show_student", "no_show_instructor"};

static const char *take_params(struct slk_request *req, struct list_op *op)
{
    char *student = slk_request_query_param(req, "student_uuid");
    char *instructor = slk_request_query_param(req, "instructor_uuid");
    char *status = slk_request_query_param(req, "status");
    char *from = slk_request_query_param(req, "from"), *to = slk_request_query_param(req, "to");
    char *limit = slk_request_query_param(req, "limit"), *cursor = slk_request_query_param(req, "cursor");
    const char *bad = NULL;
    const char *who = student != NULL ? student : instructor;
    if ((student == NULL) == (instructor == NULL) || !slk_id_valid(who, strlen(who)))
        bad = student != NULL ? "student_uuid" : "instructor_uuid";
    else {
        op->by_student = student != NULL;
        snprintf(op->who, sizeof(op->who), "%s", who);
    }
    if (bad == NULL && status != NULL) {
        bad = "status";
        for (size_t i = 0; i < SLK_ARRAY_SIZE(statuses); i++) {
            if (strcmp(status, statuses[i]) == 0)
                bad = NULL;
        }
        if (bad == NULL)
            snprintf(op->status, sizeof(op->status), "%s", status);
    }
    bool naive;
    struct slk_local_time lt;
    op->from_ms = 0;
    op->to_ms = NO_CURSOR;
    if (bad == NULL && from != NULL &&
        (slk_time_parse_rfc3339(from, strlen(from), &op->from_ms, &naive, &lt) != 0 || naive))
        bad = "from";
    if (bad == NULL && to != NULL && (slk_time_parse_rfc3339(to, strlen(to), &op->to_ms, &naive, &lt) != 0 || naive))
        bad = "to";
    op->limit = DEFAULT_LIMIT;
    if (bad == NULL && limit != NULL) {
        char *end;
        long v = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || v < 1 || v > MAX_LIMIT)
            bad = "limit";
        op->limit = (int)v;
    }
    op->cursor_start = NO_CURSOR;
    if (bad == NULL && cursor != NULL && !cursor_decode(cursor, op))
        bad = "cursor";
    free(student);
    free(instructor);
    free(status);
    free(from);
    free(to);
    free(limit);
    free(cursor);
    return bad;
}

void slk_handle_booking_list(struct slk_request *req)
{
    struct list_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        slk_reply_error(req, 500, "internal_error", "Out of memory", NULL);
        return;
    }
    op->req = req;
    op->now = slk_clock_now_ms();
    const char *bad = take_params(req, op);
    if (bad != NULL) {
        op_free(op);
        slk_reply_invalid(req, bad,
                          "give exactly one of student_uuid, instructor_uuid; status, from/to (RFC 3339 with offset), "
                          "limit 1..100 and cursor as documented");
        return;
    }
    bool allowed =
        slk__is_admin(req) || (op->by_student ? slk__is_student(req, op->who) : slk__is_instructor(req, op->who));
    if (!allowed) {
        op_free(op);
        slk_reply_error(req, 403, "forbidden", "You may only list your own bookings", NULL);
        return;
    }
    query_redis(op);
}
