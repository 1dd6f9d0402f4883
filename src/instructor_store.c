#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/availability.h"
#include "slk/booking.h"
#include "slk/instructor_store.h"
#include "slk/log.h"
#include "slk/pg.h"
#include "slk/redis.h"
#include "slk/scripts.h"

struct restore_args {
    const char **keys;
    size_t *keylens;
    const char **args;
    char *storage;
    int nkeys, nargs;
};

/*
 * Units are restored in batches (one script call each, in order), so that no
 * single call grows with an instructor's bookings; the settings go in with
 * the last batch, as the signal that the instructor is complete in Redis.
 */
#define RESTORE_BATCH_UNITS 2000

struct load_op {
    struct slk_worker *w;
    char id[SLK_MAX_ID_LEN + 1];
    slk_instructor_cb cb;
    void *data;
    struct slk_instructor ins;
    struct restore_args restore; /* keys[0] = meta, then every unit; args = ver, cfg, then pairs */
    char *cfg;
    int units_sent;
};

static struct load_op *load_op_new(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data)
{
    struct load_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->w = w;
    snprintf(op->id, sizeof(op->id), "%s", id);
    op->cb = cb;
    op->data = data;
    return op;
}

static void restore_args_free(struct restore_args *a);

static void load_op_finish(struct load_op *op, struct slk_instructor_entry *entry, int err)
{
    op->cb(op->data, entry, err);
    restore_args_free(&op->restore);
    free(op->cfg);
    free(op);
}

struct slk_instructor_entry *slk_instructor_apply_cfg(struct slk_worker *w, const char *id, const char *cfg,
                                                      size_t cfg_len)
{
    json_t *obj = json_loadb(cfg, cfg_len, 0, NULL);
    struct slk_instructor ins;
    const char *field, *why;
    int rc = slk_instructor_parse(&ins, id, obj, w->cfg->hold_ttl_seconds, &field, &why);
    const json_t *updated = json_object_get(obj, "updated_ms");
    ins.updated_ms = json_is_integer(updated) ? json_integer_value(updated) : 0;
    json_decref(obj);
    if (rc != 0 || ins.version <= 0) {
        slk_log(SLK_LOG_ERROR, "bad instructor settings in redis", "instructor", id, NULL);
        return NULL;
    }
    return slk_instructor_cache_put(w->instructors, &ins);
}

static int meta_error(const redisReply *r, const char *err)
{
    if (err != NULL || r->type == REDIS_REPLY_ERROR)
        return SLK_EUNAVAILABLE;
    return r->type == REDIS_REPLY_ARRAY ? 0 : SLK_EPROTO;
}

/* Restore: confirmed bookings' units plus the settings, in one script call. */

static void restore_args_free(struct restore_args *a)
{
    free(a->keys);
    free(a->keylens);
    free(a->args);
    free(a->storage);
}

/* What restore.lua writes: one entry per unit key. */
struct restore_unit {
    int64_t minute;
    int64_t expire_ms;
    char value[40]; /* "B:<booking uuid>" or "X:<block uuid>" */
};

struct restore_units {
    struct restore_unit *v;
    size_t len, cap;
};

#define RESTORE_MAX_UNITS 1000000

static int add_unit(struct restore_units *l, int64_t minute, char kind, const char *uuid, int64_t expire_ms)
{
    if (l->len == l->cap) {
        if (l->len >= RESTORE_MAX_UNITS)
            return SLK_ETOOBIG;
        size_t cap = l->cap == 0 ? 256 : l->cap * 2;
        struct restore_unit *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return SLK_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    struct restore_unit *u = &l->v[l->len++];
    u->minute = minute;
    u->expire_ms = expire_ms;
    snprintf(u->value, sizeof(u->value), "%c:%s", kind, uuid);
    return 0;
}

/* bookings: [[uuid, first unit minute, unit minutes, unit count], …] as stored with each booking. */
static int add_booking_units(struct restore_units *l, const json_t *bookings)
{
    size_t i;
    const json_t *b;
    json_array_foreach(bookings, i, b)
    {
        const char *uuid = json_string_value(json_array_get(b, 0));
        int64_t first = json_integer_value(json_array_get(b, 1));
        int64_t umin = json_integer_value(json_array_get(b, 2));
        int64_t count = json_integer_value(json_array_get(b, 3));
        if (uuid == NULL || strlen(uuid) != 36 || umin <= 0 || count <= 0 || count > SLK_MAX_UNITS)
            return SLK_EPROTO;
        int64_t expire = (first + count * umin) * 60000 + SLK_BOOKED_UNIT_GRACE_MS;
        for (int64_t u = 0; u < count; u++) {
            int rc = add_unit(l, first + u * umin, 'B', uuid, expire);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* blocks: [[uuid, start ms, end ms], …]; their units follow the instructor's current grid. */
static int add_block_units(struct restore_units *l, const json_t *blocks, const struct slk_instructor *ins)
{
    if (json_array_size(blocks) == 0)
        return 0;
    struct slk_tz *tz = slk_tz_open(ins->timezone);
    if (tz == NULL)
        return SLK_EPROTO;
    int64_t *minutes = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    size_t i;
    const json_t *b;
    json_array_foreach(blocks, i, b)
    {
        const char *uuid = json_string_value(json_array_get(b, 0));
        int64_t start = json_integer_value(json_array_get(b, 1)), end = json_integer_value(json_array_get(b, 2));
        if (uuid == NULL || strlen(uuid) != 36) {
            rc = SLK_EPROTO;
            break;
        }
        n = 0;
        rc = slk_grid_units(ins, tz, start, end, RESTORE_MAX_UNITS, &minutes, &n, &cap);
        for (size_t k = 0; rc == 0 && k < n; k++)
            rc = add_unit(l, minutes[k], 'X', uuid, end + SLK_BOOKED_UNIT_GRACE_MS);
        if (rc != 0)
            break;
    }
    free(minutes);
    slk_tz_close(tz);
    return rc;
}

#define RESTORE_FIXED_KEYS 2 /* meta, version */

/* Per unit: key (SLK_KEY_MAX) + value (40) + expiry (24). */
#define UNIT_SLOT (SLK_KEY_MAX + 40 + 24)

static int restore_args_build(struct restore_args *a, const struct load_op *op, const struct restore_units *l,
                              const char *cfg)
{
    memset(a, 0, sizeof(*a));
    size_t units = l->len;
    a->nkeys = RESTORE_FIXED_KEYS + (int)units;
    a->nargs = 2 + 2 * (int)units;
    a->keys = calloc((size_t)a->nkeys, sizeof(char *));
    a->keylens = calloc((size_t)a->nkeys, sizeof(size_t));
    a->args = calloc((size_t)a->nargs, sizeof(char *));
    a->storage = malloc((units + RESTORE_FIXED_KEYS) * UNIT_SLOT);
    if (a->keys == NULL || a->keylens == NULL || a->args == NULL || a->storage == NULL)
        return SLK_ENOMEM;

    char *p = a->storage;
    a->keylens[0] = (size_t)slk_key_meta(p, op->id);
    a->keys[0] = p;
    char *ver = p + SLK_KEY_MAX;
    snprintf(ver, 24, "%lld", (long long)op->ins.version);
    p += UNIT_SLOT;
    a->keylens[1] = (size_t)slk_key_version(p, op->id);
    a->keys[1] = p;
    p += UNIT_SLOT;
    a->args[0] = ver;
    a->args[1] = cfg;
    for (size_t k = 0; k < units; k++, p += UNIT_SLOT) {
        const struct restore_unit *u = &l->v[k];
        a->keylens[RESTORE_FIXED_KEYS + k] = (size_t)slk_key_unit(p, op->id, u->minute);
        a->keys[RESTORE_FIXED_KEYS + k] = p;
        char *value = p + SLK_KEY_MAX, *exp = value + 40;
        memcpy(value, u->value, sizeof(u->value));
        snprintf(exp, 24, "%lld", (long long)u->expire_ms);
        a->args[2 + 2 * k] = value;
        a->args[3 + 2 * k] = exp;
    }
    return 0;
}

static int send_restore_batch(struct load_op *op);

static void on_restored(void *data, redisReply *r, const char *err)
{
    struct load_op *op = data;
    if (err != NULL) {
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        slk_log(SLK_LOG_ERROR, "restore script failed", "instructor", op->id, "error", r->str, NULL);
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
        return;
    }
    if (op->units_sent < op->restore.nkeys - RESTORE_FIXED_KEYS) {
        int rc = send_restore_batch(op);
        if (rc != 0)
            load_op_finish(op, NULL, rc == SLK_ENOMEM ? rc : SLK_EUNAVAILABLE);
        return;
    }
    struct slk_instructor_entry *e = slk_instructor_cache_put(op->w->instructors, &op->ins);
    load_op_finish(op, e, e == NULL ? SLK_ENOMEM : 0);
}

static int send_restore_batch(struct load_op *op)
{
    const struct restore_args *a = &op->restore;
    const int fixed = RESTORE_FIXED_KEYS;
    int total = a->nkeys - fixed, n = total - op->units_sent;
    if (n > RESTORE_BATCH_UNITS)
        n = RESTORE_BATCH_UNITS;
    bool last = op->units_sent + n == total;
    const char **keys = malloc((size_t)(fixed + n) * sizeof(char *));
    size_t *keylens = malloc((size_t)(fixed + n) * sizeof(size_t));
    const char **args = malloc((size_t)(2 + 2 * n) * sizeof(char *));
    int rc = SLK_ENOMEM;
    if (keys != NULL && keylens != NULL && args != NULL) {
        memcpy(keys, a->keys, (size_t)fixed * sizeof(char *));
        memcpy(keylens, a->keylens, (size_t)fixed * sizeof(size_t));
        memcpy(&keys[fixed], &a->keys[fixed + op->units_sent], (size_t)n * sizeof(char *));
        memcpy(&keylens[fixed], &a->keylens[fixed + op->units_sent], (size_t)n * sizeof(size_t));
        args[0] = last ? a->args[0] : "";
        args[1] = last ? a->args[1] : "";
        memcpy(&args[2], &a->args[2 + 2 * op->units_sent], (size_t)(2 * n) * sizeof(char *));
        rc = slk_script_eval(op->w->redis, SLK_SCRIPT_RESTORE, on_restored, op, fixed + n, keys, keylens, 2 + 2 * n,
                             args, NULL);
    }
    free(keys);
    free(keylens);
    free(args);
    if (rc == 0)
        op->units_sent += n;
    return rc;
}

int slk_instructor_from_pg(struct slk_instructor *ins, const char *id, const PGresult *res, int default_hold_seconds)
{
    json_t *weekly = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
    json_t *obj = json_pack(
        "{s:s, s:i, s:i, s:i, s:b, s:o, s:I}", "timezone", PQgetvalue(res, 0, 0), "granularity_minutes",
        atoi(PQgetvalue(res, 0, 1)), "hold_seconds", atoi(PQgetvalue(res, 0, 2)), "buffer_minutes",
        atoi(PQgetvalue(res, 0, 3)), "requires_acceptance", PQgetvalue(res, 0, 4)[0] == 't', "weekly",
        weekly != NULL ? weekly : json_array(), "version", (json_int_t)strtoll(PQgetvalue(res, 0, 6), NULL, 10));
    const char *field, *why;
    int rc = slk_instructor_parse(ins, id, obj, default_hold_seconds, &field, &why);
    json_decref(obj);
    ins->updated_ms = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
    return rc;
}

static char *cfg_dump(const struct slk_instructor *ins)
{
    json_t *o = slk_instructor_to_json(ins);
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "updated_ms", json_integer((json_int_t)ins->updated_ms));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void on_loaded(void *data, PGresult *res, const char *err)
{
    struct load_op *op = data;
    if (err != NULL) {
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        slk_log(SLK_LOG_ERROR, "instructor load failed", "instructor", op->id, "error", PQresultErrorMessage(res),
                NULL);
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
        return;
    }
    if (PQntuples(res) == 0) {
        load_op_finish(op, NULL, SLK_ENOTFOUND);
        return;
    }
    json_t *bookings = json_loads(PQgetvalue(res, 0, 8), 0, NULL);
    json_t *blocks = json_loads(PQgetvalue(res, 0, 9), 0, NULL);
    struct restore_units units = {0};
    int rc = slk_instructor_from_pg(&op->ins, op->id, res, op->w->cfg->hold_ttl_seconds);
    if (rc == 0)
        rc = bookings == NULL || blocks == NULL ? SLK_EPROTO : (op->cfg = cfg_dump(&op->ins)) == NULL ? SLK_ENOMEM : 0;
    if (rc == 0)
        rc = add_booking_units(&units, bookings);
    if (rc == 0)
        rc = add_block_units(&units, blocks, &op->ins);
    if (rc == 0)
        rc = restore_args_build(&op->restore, op, &units, op->cfg);
    free(units.v);
    json_decref(blocks);
    if (rc == 0)
        rc = send_restore_batch(op);
    if (rc != 0 && rc != SLK_EBUSY)
        slk_log(SLK_LOG_ERROR, "instructor restore failed", "instructor", op->id, "error", slk_strerror(rc), NULL);
    json_decref(bookings);
    if (rc != 0)
        load_op_finish(op, NULL, rc == SLK_EBUSY ? SLK_EUNAVAILABLE : rc);
}

static const char load_sql[] =
    "SELECT i.timezone, i.granularity_minutes, i.hold_seconds, i.buffer_minutes, i.requires_acceptance, "
    "i.weekly::text, i.version, (extract(epoch from i.updated_at) * 1000)::bigint, "
    "COALESCE((SELECT json_agg(json_build_array(b.uuid::text, (extract(epoch from b.units_start_at) / 60)::bigint, "
    "b.unit_minutes, b.unit_count)) FROM bookings b WHERE b.instructor_id = i.id "
    "AND b.status IN ('paid', 'confirmed') AND b.end_at > now())::text, '[]'), "
    "COALESCE((SELECT json_agg(json_build_array(k.uuid::text, (extract(epoch from k.start_at) * 1000)::bigint, "
    "(extract(epoch from k.end_at) * 1000)::bigint)) FROM availability_blocks k WHERE k.instructor_id = i.id "
    "AND k.end_at > now())::text, '[]') "
    "FROM instructors i WHERE i.id = $1";

static void reload(struct load_op *op)
{
    const char *params[1] = {op->id};
    if (slk_pg_query(op->w->pg, load_sql, 1, params, on_loaded, op) != 0)
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
}

void slk_instructor_reload(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data)
{
    struct load_op *op = load_op_new(w, id, cb, data);
    if (op == NULL) {
        cb(data, NULL, SLK_ENOMEM);
        return;
    }
    reload(op);
}

static void on_meta(void *data, redisReply *r, const char *err)
{
    struct load_op *op = data;
    int rc = meta_error(r, err);
    if (rc != 0) {
        load_op_finish(op, NULL, rc);
        return;
    }
    /* HMGET ver cfg: both nil means Redis has nothing for this instructor. */
    const redisReply *cfg = r->elements == 2 ? r->element[1] : NULL;
    if (cfg == NULL || cfg->type != REDIS_REPLY_STRING) {
        reload(op);
        return;
    }
    struct slk_instructor_entry *e = slk_instructor_apply_cfg(op->w, op->id, cfg->str, cfg->len);
    if (e == NULL) {
        reload(op);
        return;
    }
    load_op_finish(op, e, 0);
}

void slk_instructor_refresh(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data)
{
    struct load_op *op = load_op_new(w, id, cb, data);
    if (op == NULL) {
        cb(data, NULL, SLK_ENOMEM);
        return;
    }
    char key[SLK_KEY_MAX];
    const char *argv[4] = {"HMGET", key, "ver", "cfg"};
    size_t lens[4] = {5, (size_t)slk_key_meta(key, id), 3, 3};
    if (slk_redis_command_argv(w->redis, on_meta, op, 4, argv, lens) != 0)
        load_op_finish(op, NULL, SLK_EUNAVAILABLE);
}

void slk_instructor_resync(struct slk_worker *w, const char *id, bool noload, const redisReply *stale_reply,
                           slk_instructor_cb cb, void *data)
{
    if (noload) {
        slk_instructor_reload(w, id, cb, data);
        return;
    }
    const redisReply *cfg = stale_reply != NULL && stale_reply->elements == 3 ? stale_reply->element[2] : NULL;
    struct slk_instructor_entry *e = NULL;
    if (cfg != NULL && cfg->type == REDIS_REPLY_STRING)
        e = slk_instructor_apply_cfg(w, id, cfg->str, cfg->len);
    if (e != NULL)
        cb(data, e, 0);
    else
        slk_instructor_refresh(w, id, cb, data);
}

void slk_instructor_get(struct slk_worker *w, const char *id, slk_instructor_cb cb, void *data)
{
    struct slk_instructor_entry *e = slk_instructor_cache_get(w->instructors, id);
    if (e != NULL) {
        cb(data, e, 0);
        return;
    }
    slk_instructor_refresh(w, id, cb, data);
}
