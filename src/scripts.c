/*
 * EVALSHA with a transparent NOSCRIPT recovery. The keys and args of a call
 * are copied into one allocation, since the retry after SCRIPT LOAD sends
 * them again long after the caller's buffers may be gone.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "slk/embedded.h"
#include "slk/log.h"
#include "slk/avail_cache.h"
#include "slk/scripts.h"

#define EVAL_MAX_ARG_BYTES ((size_t)1 << 20) /* total bytes of the keys and args of one call */
#define EVAL_FIXED_ARGS 3                    /* EVALSHA sha1 nkeys */

static struct slk_script scripts[SLK_SCRIPT__COUNT] = {
    [SLK_SCRIPT_HOLD] = {.name = "hold"},
    [SLK_SCRIPT_PIN] = {.name = "pin"},
    [SLK_SCRIPT_CONFIRM] = {.name = "confirm"},
    [SLK_SCRIPT_RELEASE] = {.name = "release"},
    [SLK_SCRIPT_RESTORE] = {.name = "restore"},
    [SLK_SCRIPT_AVAILABILITY] = {.name = "availability"},
    [SLK_SCRIPT_BLOCK] = {.name = "block"},
    [SLK_SCRIPT_UNBLOCK] = {.name = "unblock"},
    [SLK_SCRIPT_MOVE] = {.name = "move"},
    [SLK_SCRIPT_EXTEND] = {.name = "extend"},
    [SLK_SCRIPT_HOLD_CAP] = {.name = "hold_cap"},
    [SLK_SCRIPT_RATE_LIMIT] = {.name = "rate_limit"},
    [SLK_SCRIPT_IDEMPOTENCY] = {.name = "idempotency"},
    [SLK_SCRIPT_OUTBOX_DUE] = {.name = "outbox_due"},
    [SLK_SCRIPT_OUTBOX_SCHEDULE] = {.name = "outbox_schedule"},
};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static const struct slk_embedded_file *find_lua_file(const char *name)
{
    char file[64];
    snprintf(file, sizeof(file), "%s.lua", name);
    for (size_t i = 0; i < slk_lua_files_count; i++) {
        if (strcmp(slk_lua_files[i].name, file) == 0)
            return &slk_lua_files[i];
    }
    return NULL;
}

static void sha1_hex(const char *data, size_t len, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20) {
        fprintf(stderr, "slotlock: SHA1 of the Lua scripts failed (OpenSSL)\n");
        abort();
    }
    for (unsigned int i = 0; i < md_len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void init_once(void)
{
    for (size_t id = 0; id < SLK_SCRIPT__COUNT; id++) {
        struct slk_script *s = &scripts[id];
        const struct slk_embedded_file *f = find_lua_file(s->name);
        if (f == NULL) {
            /* A build that lost a script cannot serve bookings at all. */
            fprintf(stderr, "slotlock: embedded Lua script %s.lua is missing (check lua_files in meson.build)\n",
                    s->name);
            abort();
        }
        s->source = f->data;
        s->source_len = f->len;
        sha1_hex(f->data, f->len, s->sha1);
    }
}

void slk_scripts_init(void)
{
    pthread_once(&scripts_once, init_once);
}

const struct slk_script *slk_script_get(enum slk_script_id id)
{
    if ((unsigned)id >= SLK_SCRIPT__COUNT)
        return NULL;
    return &scripts[id];
}

/* --- SCRIPT LOAD -------------------------------------------------------- */

static int send_script_load(struct slk_redis *r, const struct slk_script *s, slk_redis_cb cb, void *data)
{
    const char *argv[3] = {"SCRIPT", "LOAD", s->source};
    size_t lens[3] = {6, 4, s->source_len};
    return slk_redis_command_argv(r, cb, data, 3, argv, lens);
}

static void on_load_all_reply(void *data, redisReply *reply, const char *err)
{
    const struct slk_script *s = data;
    if (err == slk_redis_err_shutdown)
        return;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR) {
        slk_log(SLK_LOG_ERROR, "redis SCRIPT LOAD failed", "script", s->name, "error", err != NULL ? err : reply->str,
                NULL);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, s->sha1) != 0)
        slk_log(SLK_LOG_ERROR, "redis SCRIPT LOAD returned an unexpected SHA1", "script", s->name, "sha1", s->sha1,
                NULL);
}

void slk_scripts_load_all(struct slk_redis *r, void *unused)
{
    SLK_UNUSED(unused);
    for (size_t id = 0; id < SLK_SCRIPT__COUNT; id++) {
        const struct slk_script *s = &scripts[id];
        if (send_script_load(r, s, on_load_all_reply, (void *)s) != 0)
            slk_log(SLK_LOG_ERROR, "redis SCRIPT LOAD not sent", "script", s->name, NULL);
    }
}

/* --- EVALSHA ------------------------------------------------------------ */

struct eval_call {
    struct slk_redis *r;
    const struct slk_script *script;
    enum slk_script_id id;
    slk_redis_cb cb;
    void *data;
    bool retried;
    int argc, num_keys;
    const char **argv; /* these three point into the same allocation */
    size_t *lens;
    char nkeys[12];
};

static void on_eval_reply(void *data, redisReply *reply, const char *err);

static bool changes_units(enum slk_script_id id);

/* A hold only ever takes units; anything else that changes them may also free some (refusal_cache.h). */
static void bump_generations(enum slk_script_id id, int nkeys, const char *const *keys, const size_t *lens)
{
    slk_avail_gen_bump_keys(nkeys, keys, lens);
    if (id != SLK_SCRIPT_HOLD)
        slk_freed_gen_bump_key(keys[0], lens[0]);
}

/* A hold script's answer other than {"OK", fence}: it changed nothing (TAKEN, STALE, NOLOAD). */
static bool hold_refused(const redisReply *reply, const char *err)
{
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
        return false; /* it may or may not have run */
    const redisReply *status = reply->element[0];
    return (status->type == REDIS_REPLY_STRING || status->type == REDIS_REPLY_STATUS) &&
           !(status->len == 2 && memcmp(status->str, "OK", 2) == 0);
}

static void eval_finish(struct eval_call *call, redisReply *reply, const char *err)
{
    /* Again once it ran: a read another worker sent after the first bump may have reached Redis before it. */
    if (changes_units(call->id) && call->num_keys > 0 && !(call->id == SLK_SCRIPT_HOLD && hold_refused(reply, err)))
        bump_generations(call->id, call->num_keys, call->argv + EVAL_FIXED_ARGS, call->lens + EVAL_FIXED_ARGS);
    call->cb(call->data, reply, err);
    free(call);
}

static int eval_send(struct eval_call *call)
{
    return slk_redis_command_argv(call->r, on_eval_reply, call, call->argc, call->argv, call->lens);
}

/* The error string for a resend that could not even be queued. */
static const char *resend_error(int ret)
{
    return ret == SLK_ECLOSED ? slk_redis_err_shutdown : slk_redis_err_disconnected;
}

static void on_reload_reply(void *data, redisReply *reply, const char *err)
{
    struct eval_call *call = data;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR) {
        eval_finish(call, reply, err); /* e.g. the script does not compile: that is the final answer */
        return;
    }
    int ret = eval_send(call);
    if (ret != 0)
        eval_finish(call, NULL, resend_error(ret));
}

static bool is_noscript(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->len >= 8 && strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void on_eval_reply(void *data, redisReply *reply, const char *err)
{
    struct eval_call *call = data;
    if (err != NULL || call->retried || !is_noscript(reply)) {
        eval_finish(call, reply, err);
        return;
    }
    /* Redis lost the script (restart, failover, SCRIPT FLUSH): load it and
     * try once more. */
    call->retried = true;
    int ret = send_script_load(call->r, call->script, on_reload_reply, call);
    if (ret != 0)
        eval_finish(call, reply, NULL);
}

static size_t total_len(int n, const char **strs, const size_t *lens)
{
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += lens != NULL ? lens[i] : strlen(strs[i]);
    return sum;
}

static void copy_strings(struct eval_call *call, int *at, char **bytes, int n, const char **strs, const size_t *lens)
{
    for (int i = 0; i < n; i++) {
        size_t len = lens != NULL ? lens[i] : strlen(strs[i]);
        if (len > 0)
            memcpy(*bytes, strs[i], len);
        call->argv[*at] = *bytes;
        call->lens[*at] = len;
        *bytes += len;
        (*at)++;
    }
}

/* Scripts that change what availability shows: sending one makes cached replies of its instructor stale. */
static bool changes_units(enum slk_script_id id)
{
    switch (id) {
    case SLK_SCRIPT_HOLD:
    case SLK_SCRIPT_PIN:
    case SLK_SCRIPT_CONFIRM:
    case SLK_SCRIPT_RELEASE:
    case SLK_SCRIPT_RESTORE:
    case SLK_SCRIPT_BLOCK:
    case SLK_SCRIPT_UNBLOCK:
    case SLK_SCRIPT_MOVE:
    case SLK_SCRIPT_EXTEND:
        return true;
    default:
        return false;
    }
}

int slk_script_eval(struct slk_redis *r, enum slk_script_id id, slk_redis_cb cb, void *data, int nkeys,
                    const char **keys, const size_t *keylens, int nargs, const char **args, const size_t *arglens)
{
    const struct slk_script *script = slk_script_get(id);
    if (script == NULL || script->source == NULL || cb == NULL)
        return SLK_EINVAL;
    if (nkeys < 0 || nargs < 0 || nkeys + nargs > SLK_SCRIPT_MAX_ARGS || (nkeys > 0 && keys == NULL) ||
        (nargs > 0 && args == NULL))
        return SLK_EINVAL;
    size_t bytes_len = total_len(nkeys, keys, keylens) + total_len(nargs, args, arglens);
    if (bytes_len > EVAL_MAX_ARG_BYTES)
        return SLK_EINVAL;
    int argc = EVAL_FIXED_ARGS + nkeys + nargs;
    struct eval_call *call =
        malloc(sizeof(*call) + (size_t)argc * (sizeof(*call->argv) + sizeof(*call->lens)) + bytes_len);
    if (call == NULL)
        return SLK_ENOMEM;
    *call = (struct eval_call){.r = r, .script = script, .id = id, .cb = cb, .data = data, .argc = argc};
    call->lens = (size_t *)(call + 1);
    call->argv = (const char **)(call->lens + argc);
    char *bytes = (char *)(call->argv + argc);

    snprintf(call->nkeys, sizeof(call->nkeys), "%d", nkeys);
    call->argv[0] = "EVALSHA";
    call->lens[0] = 7;
    call->argv[1] = script->sha1;
    call->lens[1] = 40;
    call->argv[2] = call->nkeys;
    call->lens[2] = strlen(call->nkeys);
    int at = EVAL_FIXED_ARGS;
    copy_strings(call, &at, &bytes, nkeys, keys, keylens);
    copy_strings(call, &at, &bytes, nargs, args, arglens);
    call->num_keys = nkeys;
    /* One connection per worker keeps this worker's later reads behind the change; other workers and processes
     * hear of it on the events channel (pubsub.c). */
    if (changes_units(id) && nkeys > 0)
        bump_generations(id, nkeys, call->argv + EVAL_FIXED_ARGS, call->lens + EVAL_FIXED_ARGS);

    int ret = eval_send(call);
    if (ret != 0)
        free(call);
    return ret;
}
