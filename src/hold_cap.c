/*
 * The per-student cap on live holds: lua/hold_cap.lua admits or refuses in
 * one step against the student's live holds by expiry, and lists an admitted
 * hold for its student in the same step; both kinds of entry share the
 * student's one key (slk:stu:{s}:holds, the cap's scored by minus the
 * expiry). Earlier versions kept the cap's entries in a key of their own
 * (slk:stu:{s}:live): it is still counted, forgotten and extended until its
 * entries lapse.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/booking.h"
#include "slk/hold_cap.h"
#include "slk/log.h"
#include "slk/redis.h"
#include "slk/scripts.h"
#include "slk/timeutil.h"
#include "slk/worker.h"

#define CAP_UUID_MAX (SLK_MAX_ID_LEN + 1)

struct cap_admit {
    struct slk_worker *w;
    slk_hold_cap_cb cb;
    void *data;
    int64_t now_ms;
    char student[SLK_MAX_ID_LEN + 1];
    char uuid[CAP_UUID_MAX];
};

/* The student's key, and the one earlier versions counted live holds in. */
static int cap_keys(char key[SLK_KEY_MAX], char old[SLK_KEY_MAX], const char *student)
{
    int n = slk_key_student_holds(key, student), m = slk_key_student_live(old, student);
    return n < 0 || n >= SLK_KEY_MAX || m < 0 || m >= SLK_KEY_MAX ? SLK_EINVAL : 0;
}

#define CAP_NOT_UPDATED "hold cap not updated; the entry lapses with its hold"
static const struct slk_redis_note forget_note = {CAP_NOT_UPDATED, "forget"};
static const struct slk_redis_note extend_note = {CAP_NOT_UPDATED, "extend"};
static const struct slk_redis_note list_note = {"hold not listed for its student", "list"};

static void on_admitted(void *data, redisReply *r, const char *err)
{
    struct cap_admit *a = data;
    int rc = SLK_EUNAVAILABLE;
    int64_t retry_ms = 0;
    if (err != NULL) {
        /* The script may still run once Redis answers: undo it behind it, so a 503 never costs the student a place. */
        if (err == slk_redis_err_timeout || err == slk_redis_err_disconnected)
            slk_hold_cap_forget(a->w, a->student, a->uuid);
    } else if (r->type == REDIS_REPLY_ERROR) {
        slk_log(SLK_LOG_ERROR, "hold cap not checked", "error", r->str, NULL);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_INTEGER &&
               r->element[0]->integer == 1) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER) {
        rc = SLK_EFULL;
        retry_ms = r->element[1]->integer - a->now_ms;
        if (retry_ms < 1)
            retry_ms = 1;
    } else {
        slk_log(SLK_LOG_ERROR, "hold cap not checked", "error", "unexpected reply", NULL);
    }
    slk_hold_cap_cb cb = a->cb;
    void *cb_data = a->data;
    free(a);
    cb(cb_data, rc, retry_ms);
}

int slk_hold_cap_admit(struct slk_worker *w, const struct slk_booking *b, slk_hold_cap_cb cb, void *data)
{
    char key[SLK_KEY_MAX], old[SLK_KEY_MAX], start[24], member[SLK_LISTING_MEMBER_MAX];
    if (cap_keys(key, old, b->student) < 0 || slk_hold_member(member, b->instructor, b->uuid) < 0)
        return SLK_EINVAL;
    slk_format_i64(start, b->start_ms);
    int cap = w->cfg->max_holds_per_student;
    if (cap <= 0) {
        /* With no cap there is no script to carry the student's listing: it goes on its own. A key the cap
         * gave an expiry (the latest start among its holds) keeps one that covers this hold too. */
        const char *zadd[4] = {"ZADD", key, start, member};
        slk_redis_fire(w->redis, &list_note, 4, zadd);
        const char *expire[4] = {"PEXPIREAT", key, start, "GT"};
        slk_redis_fire(w->redis, &list_note, 4, expire);
        cb(data, 0, 0);
        return 0;
    }
    struct cap_admit *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return SLK_ENOMEM;
    a->w = w;
    a->cb = cb;
    a->data = data;
    a->now_ms = slk_clock_now_ms();
    snprintf(a->student, sizeof(a->student), "%s", b->student);
    snprintf(a->uuid, sizeof(a->uuid), "%s", b->uuid);
    char now[24], limit[24], expires[24];
    slk_format_i64(now, a->now_ms);
    slk_format_i64(limit, cap);
    slk_format_i64(expires, b->hold_expires_ms);
    const char *keys[2] = {key, old};
    const char *args[6] = {now, limit, b->uuid, expires, start, member};
    int rc = slk_script_eval(w->redis, SLK_SCRIPT_HOLD_CAP, on_admitted, a, 2, keys, NULL, 6, args, NULL);
    if (rc != 0)
        free(a);
    return rc;
}

void slk_hold_cap_forget(struct slk_worker *w, const char *student, const char *uuid)
{
    char key[SLK_KEY_MAX], old[SLK_KEY_MAX];
    if (w->cfg->max_holds_per_student <= 0 || cap_keys(key, old, student) < 0)
        return;
    const char *zrem[3] = {"ZREM", key, uuid};
    slk_redis_fire(w->redis, &forget_note, 3, zrem);
    zrem[1] = old;
    slk_redis_fire(w->redis, &forget_note, 3, zrem);
}

/* The hold's cap entry counts until its new expiry. The student's key already lives until the latest start among
 * its holds, which no extension passes; the earlier versions' key lived until the latest expiry (GT never shortens
 * it). */
void slk_hold_cap_extend(struct slk_worker *w, const char *student, const char *uuid, int64_t expires_ms)
{
    char key[SLK_KEY_MAX], old[SLK_KEY_MAX], expires[24], negative[24];
    if (w->cfg->max_holds_per_student <= 0 || cap_keys(key, old, student) < 0)
        return;
    snprintf(expires, sizeof(expires), "%" PRId64, expires_ms);
    snprintf(negative, sizeof(negative), "-%" PRId64, expires_ms);
    const char *zadd[5] = {"ZADD", key, "XX", negative, uuid};
    slk_redis_fire(w->redis, &extend_note, 5, zadd);
    zadd[1] = old;
    zadd[3] = expires;
    slk_redis_fire(w->redis, &extend_note, 5, zadd);
    const char *expire[4] = {"PEXPIREAT", old, expires, "GT"};
    slk_redis_fire(w->redis, &extend_note, 4, expire);
}
