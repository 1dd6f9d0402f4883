/*
 * The Lua scripts of lua/, embedded at build time. Each is loaded with
 * SCRIPT LOAD when a Redis connection comes up and run with EVALSHA; a
 * NOSCRIPT reply (Redis restarted, SCRIPT FLUSH) re-loads the script and
 * retries once, transparently to the caller.
 */
#ifndef SLK_SCRIPTS_H
#define SLK_SCRIPTS_H

#include "slk/redis.h"

enum slk_script_id {
    SLK_SCRIPT_HOLD = 0,
    SLK_SCRIPT_PIN,
    SLK_SCRIPT_CONFIRM,
    SLK_SCRIPT_RELEASE,
    SLK_SCRIPT_RESTORE,
    SLK_SCRIPT_AVAILABILITY,
    SLK_SCRIPT_BLOCK,
    SLK_SCRIPT_UNBLOCK,
    SLK_SCRIPT_MOVE,
    SLK_SCRIPT_EXTEND,
    SLK_SCRIPT_HOLD_CAP,
    SLK_SCRIPT_RATE_LIMIT,
    SLK_SCRIPT_IDEMPOTENCY,
    SLK_SCRIPT_OUTBOX_DUE,
    SLK_SCRIPT_OUTBOX_SCHEDULE,
    SLK_SCRIPT__COUNT,
};

struct slk_script {
    const char *name;   /* "hold" */
    const char *source; /* the .lua file */
    size_t source_len;
    char sha1[41]; /* hex, computed at start */
};

/* Keys + args of one call: a hold takes a key per unit (at most SLK_MAX_UNITS); restores are batched below it. */
#define SLK_SCRIPT_MAX_ARGS 16384

/* Computes SHA1s (OpenSSL). Call once before any slk_script_eval. */
void slk_scripts_init(void);
const struct slk_script *slk_script_get(enum slk_script_id id);

/* Suits slk_redis_options.on_connect: SCRIPT LOAD every script. */
void slk_scripts_load_all(struct slk_redis *r, void *unused);

/*
 * EVALSHA with keys and args (lengths given; NULL lens means strlen).
 * Callback contract as slk_redis_command_argv.
 */
int slk_script_eval(struct slk_redis *r, enum slk_script_id id, slk_redis_cb cb, void *data, int nkeys,
                    const char **keys, const size_t *keylens, int nargs, const char **args,
                    const size_t *arglens) SLK_MUST_CHECK;

#endif
