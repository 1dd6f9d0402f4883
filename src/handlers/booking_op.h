/* A booking action in flight: fetch the booking, then run the action's step. Shared by the booking_*.c handlers. */
#ifndef SLK_HANDLERS_BOOKING_OP_H
#define SLK_HANDLERS_BOOKING_OP_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "slk/booking.h"
#include "slk/http.h"
#include "slk/pg.h"
#include "slk/scripts.h"

#define MAX_REFERENCE_BYTES 128

struct bop;
typedef void (*bop_step_cb)(struct bop *op);

struct bop {
    struct slk_request *req;
    char uuid[37];
    char instructor[SLK_MAX_ID_LEN + 1]; /* from the uuid index, once fetched */
    struct slk_booking b;
    bop_step_cb next; /* runs once b is fetched */
    int restarts;
    /* Action inputs. */
    bool succeeded;
    char reference[MAX_REFERENCE_BYTES + 1];
    char engine[SLK_MAX_ID_LEN + 1];
    char *reason;
    json_t *payment_body;   /* checked against the booking once it is fetched */
    const char *new_status; /* what bop_release_hold() moves the booking to */
    bool repeat_ok;
    const char *actor; /* cancelled_by */
    const char *target_status;
    int64_t until_ms; /* an action's target time (extend: the new hold expiry) */
    void *ext;        /* an action's own state, freed with ext_free by bop_free */
    void (*ext_free)(void *ext);
};

/* Allocates an op for the {uuid} path parameter; NULL after replying 404/500 itself. */
struct bop *bop_start(struct slk_request *req, bop_step_cb next);
/* uuid → instructor (index) → Redis record, or the Postgres row; then op->next(op). */
void bop_fetch(struct bop *op);
void bop_fetch_pg(struct bop *op);
void bop_select(struct bop *op, slk_pg_cb cb);
void bop_free(struct bop *op);

/* Each reply frees op. */
void bop_error(struct bop *op, int status, const char *code, const char *message, json_t *details);
void bop_backend(struct bop *op, int err, const char *what);
void bop_reply(struct bop *op, const char *message);
void bop_invalid_transition(struct bop *op);

/* 400 policy_violation with details {rule, <time_field>: RFC 3339 of at_ms}. */
void bop_policy_violation(struct bop *op, const char *rule, const char *message, const char *time_field, int64_t at_ms);
/* The caller's role name, for actor_role and cancelled_by-style fields. */
const char *bop_actor_role(const struct bop *op);

bool bop_status_is(const struct bop *op, const char *status);
/* R-SEC: its student, its instructor, admins. */
bool bop_can_see(const struct bop *op);
bool bop_redis_failed(const redisReply *r, const char *err);
bool bop_pg_rows(const PGresult *res, const char *err, struct bop *op);
/* op->b becomes row 0 of res; false after replying 500 when the row is damaged. */
bool bop_take_row(struct bop *op, const PGresult *res);
const char *bop_script_tag(const redisReply *r);
const char *bop_script_status(const redisReply *r);

/* A record script (pin, confirm, release) on the booking: KEYS = record + units. */
int bop_eval(struct bop *op, enum slk_script_id script, slk_redis_cb cb, int nargs, const char **args);
/* Postgres changed the booking to status: free its units in Redis, then reply message. */
void bop_release_after_pg(struct bop *op, const char *status, const char *message);
/* release.lua in 'hold' mode on an unpaid hold; extra = field/value pairs for the record (at most 8). */
void bop_release_hold(struct bop *op, const char *status, const char *message, bool repeat_ok, int nextra,
                      const char **extra);
/* Callback for a Postgres UPDATE … RETURNING booking: reply, releasing units unless the booking is confirmed. */
void bop_on_pg_transition(void *data, PGresult *res, const char *err);

#endif
