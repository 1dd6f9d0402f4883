/*
 * The Redis client against a real Redis: REDIS_URL must name a disposable
 * server (e.g. redis://127.0.0.1:17379); the test fails when it is unset.
 * Every wait is bounded by a guard timer; every test ends by closing the
 * client and checking that the loop has no handle left (ASan checks memory).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "slk/redis.h"
#include "slk/scripts.h"

static char *env_host;
static int env_port;
static char *env_password;
static int env_db;

/* --- helpers ------------------------------------------------------------- */

struct result {
    int calls;
    const char *err;
    int type;
    long long integer;
    char str[512];
    uint64_t at_ms;
};

struct env {
    uv_loop_t loop;
    struct slk_redis *r;
    int connects;
    int closes;
};

static void record(void *data, redisReply *reply, const char *err)
{
    struct result *res = data;
    res->calls++;
    res->err = err;
    res->type = reply != NULL ? reply->type : -1;
    res->str[0] = '\0';
    if (reply != NULL &&
        (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_ERROR))
        snprintf(res->str, sizeof(res->str), "%.*s", (int)reply->len, reply->str);
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        res->integer = reply->integer;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER)
        res->integer = reply->element[0]->integer;
}

static void count_connect(struct slk_redis *r, void *data)
{
    (void)r;
    ((struct env *)data)->connects++;
}

static void count_close(struct slk_redis *r, void *data)
{
    (void)r;
    ((struct env *)data)->closes++;
}

static struct slk_redis_options base_options(struct env *e)
{
    return (struct slk_redis_options){
        .host = env_host,
        .port = env_port,
        .password = env_password,
        .db = env_db,
        .command_timeout_ms = 5000,
        .connect_timeout_ms = 2000,
        .on_connect = count_connect,
        .on_close = count_close,
        .cb_data = e,
    };
}

static void on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

typedef bool (*pred_fn)(void *arg);

/* Runs the loop until pred holds or timeout_ms pass; returns pred. */
static bool run_until(uv_loop_t *loop, pred_fn pred, void *arg, uint64_t timeout_ms)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, timeout_ms, 0);
    while (!pred(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    run_until(loop, never, NULL, ms);
}

static bool result_done(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

static bool is_connected(void *arg)
{
    return slk_redis_state(((struct env *)arg)->r) == SLK_REDIS_CONNECTED;
}

static void env_start(struct env *e, const struct slk_redis_options *opts, bool wait_connected)
{
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->r = slk_redis_create(&e->loop, opts);
    assert_non_null(e->r);
    slk_redis_connect(e->r);
    if (wait_connected)
        assert_true(run_until(&e->loop, is_connected, e, 5000));
}

static bool loop_drained(void *arg)
{
    return !uv_loop_alive(arg);
}

/* Closes the client and asserts nothing is left on the loop. */
static void env_finish(struct env *e)
{
    if (e->r != NULL)
        slk_redis_close(e->r);
    e->r = NULL;
    for (int i = 0; i < 1000 && uv_run(&e->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    assert_true(loop_drained(&e->loop));
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void send_cmd(struct slk_redis *r, struct result *res, int argc, const char **argv)
{
    assert_int_equal(slk_redis_command_argv(r, record, res, argc, argv, NULL), 0);
}

/* Sends one command and waits for its callback. */
static void roundtrip(struct env *e, struct result *res, int argc, const char **argv)
{
    memset(res, 0, sizeof(*res));
    send_cmd(e->r, res, argc, argv);
    assert_true(run_until(&e->loop, result_done, res, 5000));
    assert_int_equal(res->calls, 1);
}

static void assert_pong(struct env *e)
{
    struct result res;
    const char *ping[] = {"PING"};
    roundtrip(e, &res, 1, ping);
    assert_null(res.err);
    assert_int_equal(res.type, REDIS_REPLY_STATUS);
    assert_string_equal(res.str, "PONG");
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* never listened: connecting is refused */
    return ntohs(sa.sin_port);
}

/* --- URL parsing --------------------------------------------------------- */

static void test_parse_url_good(void **state)
{
    (void)state;
    char *host, *password, *user;
    int port, db;

    assert_int_equal(slk_redis_parse_url("redis://127.0.0.1", &host, &port, &password, &db), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_null(password);
    assert_int_equal(db, 0);
    free(host);

    assert_int_equal(slk_redis_parse_url("redis://:s3cret@redis.internal:6380/2", &host, &port, &password, &db), 0);
    assert_string_equal(host, "redis.internal");
    assert_int_equal(port, 6380);
    assert_string_equal(password, "s3cret");
    assert_int_equal(db, 2);
    free(host);
    free(password);

    assert_int_equal(slk_redis_parse_url("REDIS://localhost:1/", &host, &port, &password, &db), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 1);
    assert_int_equal(db, 0);
    free(host);

    /* "default" is the user that AUTH <password> means anyway. */
    assert_int_equal(slk_redis_parse_url("redis://default:pw@h", &host, &port, &password, &db), 0);
    assert_string_equal(password, "pw");
    free(host);
    free(password);

    assert_int_equal(
        slk_redis_parse_url_user("redis://alice:p%40ss%3Aw@[::1]:65535/15", &user, &host, &port, &password, &db), 0);
    assert_string_equal(user, "alice");
    assert_string_equal(password, "p@ss:w");
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(db, 15);
    free(user);
    free(host);
    free(password);

    assert_int_equal(slk_redis_parse_url_user("redis://:pw@h", &user, &host, &port, &password, &db), 0);
    assert_null(user);
    assert_string_equal(password, "pw");
    free(host);
    free(password);
}

static void test_parse_url_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "http://127.0.0.1",
        "rediss://127.0.0.1", /* TLS: not supported by hiredis 0.14 */
        "redis:/127.0.0.1",
        "redis://",
        "redis://:6379",
        "redis://host:",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:123456",
        "redis://host:-1",
        "redis://host:12a",
        "redis://host:1:2",
        "redis://ho st",
        "redis://host/abc",
        "redis://host/-1",
        "redis://host/1/2",
        "redis://host/99999999999",
        "redis://host?db=1",
        "redis://host#x",
        "redis://pw@host", /* no ':': is it a user or a password? */
        "redis://:@host",  /* empty password */
        "redis://u:p@h@x", /* a raw '@' must be percent-encoded */
        "redis://:p%zz@h", /* bad escape */
        "redis://:p%4@h",  /* truncated escape */
        "redis://:p%00@h", /* NUL in a C string */
        "redis://[::1",
        "redis://[::1]x",
        "redis://[zz]:1",
        "redis://alice:pw@h", /* a non-default user needs slk_redis_parse_url_user */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *host = NULL, *password = NULL;
        int port = -7, db = -7;
        int ret = slk_redis_parse_url(bad[i], &host, &port, &password, &db);
        if (ret != SLK_EINVAL)
            fail_msg("accepted bad URL \"%s\" (ret %d)", bad[i], ret);
        assert_null(host); /* nothing written on failure */
        assert_null(password);
        assert_int_equal(port, -7);
    }
}

/* --- commands ------------------------------------------------------------ */

static void test_ping_and_fail_fast_before_connect(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, false);

    /* Not connected yet: the failure comes from the loop, not from inside the call. */
    struct result early = {0};
    const char *ping[] = {"PING"};
    send_cmd(e.r, &early, 1, ping);
    assert_int_equal(early.calls, 0);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    assert_int_equal(early.calls, 1);
    assert_ptr_equal(early.err, slk_redis_err_disconnected);

    assert_true(run_until(&e.loop, is_connected, &e, 5000));
    assert_int_equal(e.connects, 1);
    assert_pong(&e);

    /* An error reply is a reply: err stays NULL. */
    struct result res;
    const char *bogus[] = {"NO-SUCH-COMMAND", "x"};
    roundtrip(&e, &res, 2, bogus);
    assert_null(res.err);
    assert_int_equal(res.type, REDIS_REPLY_ERROR);

    /* Binary-safe arguments with explicit lengths. */
    char key[64];
    snprintf(key, sizeof(key), "slk-test:bin:%d", (int)getpid());
    const char *set[] = {"SET", key, "a\0b", "PX", "10000"};
    size_t setlens[] = {3, strlen(key), 3, 2, 5};
    memset(&res, 0, sizeof(res));
    assert_int_equal(slk_redis_command_argv(e.r, record, &res, 5, set, setlens), 0);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    assert_string_equal(res.str, "OK");
    const char *strlen_cmd[] = {"STRLEN", key};
    roundtrip(&e, &res, 2, strlen_cmd);
    assert_int_equal(res.integer, 3);

    env_finish(&e);
}

static void test_rejected_commands(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, false);
    struct result res = {0};
    const char *sub[] = {"subscribe", "ch"};
    const char *mon[] = {"MONITOR"};
    assert_int_equal(slk_redis_command_argv(e.r, record, &res, 2, sub, NULL), SLK_EINVAL);
    assert_int_equal(slk_redis_command_argv(e.r, record, &res, 1, mon, NULL), SLK_EINVAL);
    assert_int_equal(slk_redis_command_argv(e.r, record, &res, 0, mon, NULL), SLK_EINVAL);
    run_for(&e.loop, 20);
    assert_int_equal(res.calls, 0); /* refused calls never call back */
    env_finish(&e);
}

static bool one_close(void *arg)
{
    return ((struct env *)arg)->closes >= 1;
}

static bool two_closes(void *arg)
{
    return ((struct env *)arg)->closes >= 2;
}

static void test_auth_user_and_select(void **state)
{
    (void)state;
    struct env admin = {0};
    struct slk_redis_options opts = base_options(&admin);
    env_start(&admin, &opts, true);

    struct result res;
    const char *setuser[] = {"ACL", "SETUSER", "slk-test-user", "reset", "on", ">pw-42", "~*", "&*", "+@all"};
    roundtrip(&admin, &res, 9, setuser);
    assert_string_equal(res.str, "OK");

    struct env e = {0};
    struct slk_redis_options uopts = base_options(&e);
    uopts.username = "slk-test-user";
    uopts.password = "pw-42";
    uopts.db = 3;
    env_start(&e, &uopts, true);
    const char *whoami[] = {"ACL", "WHOAMI"};
    roundtrip(&e, &res, 2, whoami);
    assert_null(res.err);
    assert_string_equal(res.str, "slk-test-user");
    const char *info[] = {"CLIENT", "INFO"};
    roundtrip(&e, &res, 2, info);
    assert_non_null(strstr(res.str, " db=3 "));
    env_finish(&e);

    /* A wrong password: the connection is dropped after AUTH fails and retried. */
    struct env bad = {0};
    struct slk_redis_options bopts = base_options(&bad);
    bopts.username = "slk-test-user";
    bopts.password = "wrong";
    env_start(&bad, &bopts, false);
    assert_true(run_until(&bad.loop, two_closes, &bad, 5000));
    assert_true(bad.connects >= 2);
    env_finish(&bad);

    const char *deluser[] = {"ACL", "DELUSER", "slk-test-user"};
    roundtrip(&admin, &res, 3, deluser);
    assert_int_equal(res.integer, 1);
    env_finish(&admin);
}

static void test_script_eval_survives_script_flush(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    opts.on_connect = slk_scripts_load_all;
    opts.on_close = NULL;
    opts.cb_data = NULL;
    slk_scripts_init();
    const struct slk_script *s = slk_script_get(SLK_SCRIPT_HOLD);
    assert_non_null(s);
    assert_int_equal(strlen(s->sha1), 40);
    assert_int_equal(strspn(s->sha1, "0123456789abcdef"), 40);
    env_start(&e, &opts, true);

    /* The script's own reply to empty keys/args is not asserted (lua/ is
     * written in parallel); only that EVALSHA reached it. */
    struct result res = {0};
    assert_int_equal(slk_script_eval(e.r, SLK_SCRIPT_HOLD, record, &res, 0, NULL, NULL, 0, NULL, NULL), 0);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    assert_null(res.err);
    assert_false(res.type == REDIS_REPLY_ERROR && strncmp(res.str, "NOSCRIPT", 8) == 0);
    struct result first = res;

    const char *flush[] = {"SCRIPT", "FLUSH"};
    roundtrip(&e, &res, 2, flush);
    assert_string_equal(res.str, "OK");
    const char *raw[] = {"EVALSHA", s->sha1, "0"};
    roundtrip(&e, &res, 3, raw);
    assert_int_equal(res.type, REDIS_REPLY_ERROR); /* the flush really took the script */
    assert_memory_equal(res.str, "NOSCRIPT", 8);

    memset(&res, 0, sizeof(res));
    assert_int_equal(slk_script_eval(e.r, SLK_SCRIPT_HOLD, record, &res, 0, NULL, NULL, 0, NULL, NULL), 0);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    run_for(&e.loop, 50);
    assert_int_equal(res.calls, 1); /* only the final result reaches the caller */
    assert_null(res.err);
    assert_int_equal(res.type, first.type);
    assert_false(res.type == REDIS_REPLY_ERROR && strncmp(res.str, "NOSCRIPT", 8) == 0);

    const char *exists[] = {"SCRIPT", "EXISTS", s->sha1};
    memset(&res, 0, sizeof(res));
    send_cmd(e.r, &res, 3, exists);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    assert_int_equal(res.type, REDIS_REPLY_ARRAY);
    assert_int_equal(res.integer, 1); /* loaded again by the NOSCRIPT recovery */

    /* Too many keys + args is refused up front. */
    static const char *many[SLK_SCRIPT_MAX_ARGS + 1];
    for (size_t i = 0; i < SLK_SCRIPT_MAX_ARGS + 1; i++)
        many[i] = "k";
    assert_int_equal(
        slk_script_eval(e.r, SLK_SCRIPT_HOLD, record, &res, SLK_SCRIPT_MAX_ARGS + 1, many, NULL, 0, NULL, NULL),
        SLK_EINVAL);
    assert_int_equal(slk_script_eval(e.r, SLK_SCRIPT_HOLD, record, &res, SLK_SCRIPT_MAX_ARGS / 2, many, NULL,
                                     SLK_SCRIPT_MAX_ARGS / 2 + 1, many, NULL),
                     SLK_EINVAL);
    env_finish(&e);
}

static void test_script_args_are_copied(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    slk_scripts_init();
    env_start(&e, &opts, true);
    /* After a flush the call goes through NOSCRIPT and is re-sent later
     * from the client's own copy: the caller's buffers are freed at once
     * (ASan reports any later read of them). */
    struct result res;
    const char *flush[] = {"SCRIPT", "FLUSH"};
    roundtrip(&e, &res, 2, flush);
    char *key = strdup("slk-test:copied");
    char *arg = strdup("1");
    assert_non_null(key);
    assert_non_null(arg);
    const char *keys[] = {key};
    const char *args[] = {arg};
    memset(&res, 0, sizeof(res));
    assert_int_equal(slk_script_eval(e.r, SLK_SCRIPT_RELEASE, record, &res, 1, keys, NULL, 1, args, NULL), 0);
    free(key);
    free(arg);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    assert_null(res.err);
    assert_false(res.type == REDIS_REPLY_ERROR && strncmp(res.str, "NOSCRIPT", 8) == 0);
    env_finish(&e);
}

struct timed_send {
    struct slk_redis *r;
    struct result *res;
};

static void send_ping_from_timer(uv_timer_t *t)
{
    struct timed_send *ts = t->data;
    const char *ping[] = {"PING"};
    send_cmd(ts->r, ts->res, 1, ping);
}

/*
 * A round trip costs one loop iteration: a command goes out before the loop
 * next waits for I/O, whether it was sent between iterations or from a timer.
 * Waiting for the socket to be reported writable first cost an iteration more,
 * and under load every iteration carries every client's work.
 */
static void test_a_reply_comes_in_the_iteration_that_sent_it(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, true);
    assert_pong(&e); /* the connection set-up is done */

    struct result res = {0};
    const char *ping[] = {"PING"};
    send_cmd(e.r, &res, 1, ping);
    uv_run(&e.loop, UV_RUN_ONCE);
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.str, "PONG");

    memset(&res, 0, sizeof(res));
    struct timed_send ts = {e.r, &res};
    uv_timer_t timer;
    uv_timer_init(&e.loop, &timer);
    timer.data = &ts;
    uv_timer_start(&timer, send_ping_from_timer, 0, 0);
    uv_run(&e.loop, UV_RUN_ONCE); /* the timer fires and its command is answered in this iteration */
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.str, "PONG");
    uv_close((uv_handle_t *)&timer, NULL);
    env_finish(&e);
}

/* A command larger than the socket takes at once is sent in parts as the
 * socket drains, and the commands behind it follow. */
static void test_a_command_larger_than_the_socket_buffer(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, true);
    size_t len = 32u << 20;
    char *value = malloc(len);
    assert_non_null(value);
    memset(value, 'v', len);
    char key[64];
    snprintf(key, sizeof(key), "slk-test:large:%d", (int)getpid());
    const char *set[] = {"SET", key, value, "PX", "10000"};
    size_t setlens[] = {3, strlen(key), len, 2, 5};
    struct result res = {0}, after = {0};
    assert_int_equal(slk_redis_command_argv(e.r, record, &res, 5, set, setlens), 0);
    free(value);
    const char *strlen_cmd[] = {"STRLEN", key};
    send_cmd(e.r, &after, 2, strlen_cmd);
    assert_true(run_until(&e.loop, result_done, &after, 4000));
    assert_int_equal(res.calls, 1);
    assert_null(res.err);
    assert_string_equal(res.str, "OK");
    assert_null(after.err);
    assert_int_equal(after.integer, (long long)len);
    const char *del[] = {"DEL", key};
    roundtrip(&e, &res, 2, del);
    env_finish(&e);
}

static void test_command_timeout_and_late_reply(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    opts.command_timeout_ms = 100;
    env_start(&e, &opts, true);

    char key[64];
    snprintf(key, sizeof(key), "slk-test:empty:%d", (int)getpid());
    const char *blpop[] = {"BLPOP", key, "0.5"}; /* the server answers after 500 ms */
    struct result res = {0};
    uint64_t t0 = uv_now(&e.loop);
    send_cmd(e.r, &res, 3, blpop);
    assert_true(run_until(&e.loop, result_done, &res, 5000));
    uv_update_time(&e.loop);
    assert_ptr_equal(res.err, slk_redis_err_timeout);
    assert_true(uv_now(&e.loop) - t0 >= 100);
    assert_true(uv_now(&e.loop) - t0 < 480); /* well before the server's answer */

    /* Let the late nil reply arrive; it must be dropped, and the reply
     * stream stay in step: the next PING gets PONG, not the BLPOP's nil. */
    run_for(&e.loop, 700);
    assert_int_equal(res.calls, 1);
    assert_pong(&e);
    assert_int_equal(e.closes, 0);
    env_finish(&e);
}

static void test_killed_connection_reconnects(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, true);
    struct env killer = {0};
    struct slk_redis_options kopts = base_options(&killer);
    env_start(&killer, &kopts, true);

    struct result id;
    const char *client_id[] = {"CLIENT", "ID"};
    roundtrip(&e, &id, 2, client_id);
    assert_int_equal(id.type, REDIS_REPLY_INTEGER);

    char key[64], idstr[32];
    snprintf(key, sizeof(key), "slk-test:empty:%d", (int)getpid());
    snprintf(idstr, sizeof(idstr), "%lld", id.integer);
    const char *blpop[] = {"BLPOP", key, "3"};
    struct result pending = {0};
    send_cmd(e.r, &pending, 3, blpop);
    run_for(&e.loop, 50); /* BLPOP is on the wire */

    struct result killed;
    const char *kill[] = {"CLIENT", "KILL", "ID", idstr};
    roundtrip(&killer, &killed, 4, kill);
    assert_int_equal(killed.integer, 1); /* the new-style CLIENT KILL counts killed clients */

    assert_true(run_until(&e.loop, result_done, &pending, 2000));
    assert_ptr_equal(pending.err, slk_redis_err_disconnected);
    assert_int_equal(e.closes, 1);
    assert_true(slk_redis_state(e.r) != SLK_REDIS_CONNECTED);

    /* Right after the loss, commands fail fast... */
    struct result during = {0};
    const char *ping[] = {"PING"};
    send_cmd(e.r, &during, 1, ping);
    assert_true(run_until(&e.loop, result_done, &during, 1000));
    assert_ptr_equal(during.err, slk_redis_err_disconnected);

    /* ...and the client comes back on its own. */
    assert_true(run_until(&e.loop, is_connected, &e, 5000));
    assert_int_equal(e.connects, 2);
    assert_pong(&e);
    assert_int_equal(pending.calls, 1);

    env_finish(&killer);
    env_finish(&e);
}

static void test_unreachable_server(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    opts.host = "127.0.0.1";
    opts.port = closed_port();
    opts.password = NULL;
    opts.db = 0;
    env_start(&e, &opts, false);

    struct result res = {0};
    const char *ping[] = {"PING"};
    send_cmd(e.r, &res, 1, ping);
    assert_int_equal(res.calls, 0);
    assert_true(run_until(&e.loop, result_done, &res, 1000));
    assert_ptr_equal(res.err, slk_redis_err_disconnected);

    /* The refusal itself is noticed, well before the 2 s connect deadline... */
    assert_true(run_until(&e.loop, one_close, &e, 1000));
    /* ...and it keeps trying (100 ms, then 200 ms backoff) without ever connecting. */
    assert_true(run_until(&e.loop, two_closes, &e, 1000));
    assert_int_equal(e.connects, 0);
    env_finish(&e);
}

static void test_close_with_pending_commands(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, true);

    char key[64];
    snprintf(key, sizeof(key), "slk-test:empty:%d", (int)getpid());
    const char *blpop[] = {"BLPOP", key, "5"};
    const char *ping[] = {"PING"};
    struct result res[4] = {{0}};
    send_cmd(e.r, &res[0], 3, blpop);
    send_cmd(e.r, &res[1], 1, ping);
    run_for(&e.loop, 30); /* on the wire, BLPOP blocking the PING behind it */
    send_cmd(e.r, &res[2], 1, ping);

    struct slk_redis *r = e.r;
    slk_redis_close(r);
    e.r = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].calls, 0); /* not from inside close */
    env_finish(&e);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_ptr_equal(res[i].err, slk_redis_err_shutdown);
    }
    assert_int_equal(e.closes, 0); /* closing is not a lost connection */
}

struct close_in_cb {
    struct slk_redis *r;
    struct result own;
    int second_send;
};

static void close_from_callback(void *data, redisReply *reply, const char *err)
{
    struct close_in_cb *c = data;
    record(&c->own, reply, err);
    slk_redis_close(c->r);
    const char *ping[] = {"PING"};
    c->second_send = slk_redis_command_argv(c->r, record, &c->own, 1, ping, NULL);
}

static void test_close_from_callback(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    env_start(&e, &opts, true);

    char key[64];
    snprintf(key, sizeof(key), "slk-test:empty:%d", (int)getpid());
    const char *blpop[] = {"BLPOP", key, "5"};
    const char *ping[] = {"PING"};
    struct close_in_cb c = {.r = e.r};
    struct result blocked = {0}, after = {0};
    assert_int_equal(slk_redis_command_argv(e.r, close_from_callback, &c, 1, ping, NULL), 0);
    send_cmd(e.r, &blocked, 3, blpop);
    send_cmd(e.r, &after, 1, ping);
    assert_true(run_until(&e.loop, result_done, &c.own, 5000));
    e.r = NULL;
    assert_int_equal(c.second_send, SLK_ECLOSED);
    assert_null(c.own.err);
    assert_string_equal(c.own.str, "PONG");
    env_finish(&e);
    assert_int_equal(c.own.calls, 1);
    assert_ptr_equal(blocked.err, slk_redis_err_shutdown);
    assert_ptr_equal(after.err, slk_redis_err_shutdown);
    assert_int_equal(blocked.calls, 1);
    assert_int_equal(after.calls, 1);
}

static void count_call(void *data, redisReply *reply, const char *err)
{
    (void)reply;
    if (err == slk_redis_err_disconnected)
        (*(int *)data)++;
}

static void test_pending_cap(void **state)
{
    (void)state;
    struct env e = {0};
    struct slk_redis_options opts = base_options(&e);
    opts.host = "127.0.0.1";
    opts.port = closed_port();
    env_start(&e, &opts, false);
    int failed = 0;
    const char *ping[] = {"PING"};
    for (int i = 0; i < SLK_REDIS_MAX_PENDING; i++)
        assert_int_equal(slk_redis_command_argv(e.r, count_call, &failed, 1, ping, NULL), 0);
    assert_int_equal(slk_redis_command_argv(e.r, count_call, &failed, 1, ping, NULL), SLK_EBUSY);
    run_for(&e.loop, 50);
    assert_int_equal(failed, SLK_REDIS_MAX_PENDING);
    /* Room again once they are done. */
    assert_int_equal(slk_redis_command_argv(e.r, count_call, &failed, 1, ping, NULL), 0);
    run_for(&e.loop, 20);
    assert_int_equal(failed, SLK_REDIS_MAX_PENDING + 1);
    env_finish(&e);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *url = getenv("REDIS_URL");
    if (url == NULL || *url == '\0') {
        fprintf(stderr, "test_redis: REDIS_URL is not set; point it at a disposable Redis, e.g. "
                        "redis://127.0.0.1:17379\n");
        return 1;
    }
    char *user = NULL;
    if (slk_redis_parse_url_user(url, &user, &env_host, &env_port, &env_password, &env_db) != 0) {
        fprintf(stderr, "test_redis: cannot parse REDIS_URL %s\n", url);
        return 1;
    }
    if (user != NULL) {
        fprintf(stderr, "test_redis: REDIS_URL must not name an ACL user\n");
        return 1;
    }

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url_good),
        cmocka_unit_test(test_parse_url_bad),
        cmocka_unit_test(test_ping_and_fail_fast_before_connect),
        cmocka_unit_test(test_rejected_commands),
        cmocka_unit_test(test_auth_user_and_select),
        cmocka_unit_test(test_script_eval_survives_script_flush),
        cmocka_unit_test(test_script_args_are_copied),
        cmocka_unit_test(test_a_reply_comes_in_the_iteration_that_sent_it),
        cmocka_unit_test(test_a_command_larger_than_the_socket_buffer),
        cmocka_unit_test(test_command_timeout_and_late_reply),
        cmocka_unit_test(test_killed_connection_reconnects),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test(test_close_with_pending_commands),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_pending_cap),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(env_host);
    free(env_password);
    return failed;
}
