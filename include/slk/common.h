/*
 * Shared basics: error codes, the must-check attribute and every hard limit
 * in one place, so that a reader can see at a glance what the server bounds.
 */
#ifndef SLK_COMMON_H
#define SLK_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define SLK_MUST_CHECK __attribute__((warn_unused_result))
#define SLK_UNUSED(x) ((void)(x))
#define SLK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* FNV-1a, 32 bits: the hash of the per-worker tables (short keys; a collision only costs a miss). */
#define SLK_FNV1A_INIT 2166136261u
static inline uint32_t slk_fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* v in decimal at out (no terminator); returns the length (at most 20). For paths too hot for printf. */
static inline size_t slk_format_u64(char *out, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

/* v in decimal, NUL-terminated, at out; returns the length (at most 20). The numbers of a hold's Redis commands. */
static inline int slk_format_i64(char out[24], int64_t v)
{
    size_t n = 0;
    if (v < 0)
        out[n++] = '-';
    /* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
    n += slk_format_u64(out + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    out[n] = '\0';
    return (int)n;
}

/* Errors are negative ints; 0 is success (libuv's UV_ERRNO_MAP style). */
#define SLK_ERRNO_MAP(XX)                                                                                              \
    XX(NOMEM, "out of memory")                                                                                         \
    XX(INVAL, "invalid argument")                                                                                      \
    XX(TIMEDOUT, "timed out")                                                                                          \
    XX(UNAVAILABLE, "service unavailable")                                                                             \
    XX(PROTO, "protocol error")                                                                                        \
    XX(NOTFOUND, "not found")                                                                                          \
    XX(TOOBIG, "too big")                                                                                              \
    XX(AUTH, "authentication failed")                                                                                  \
    XX(EXPIRED, "expired")                                                                                             \
    XX(EARLY, "not yet valid")                                                                                         \
    XX(CONFLICT, "conflict")                                                                                           \
    XX(BUSY, "too many queued requests")                                                                               \
    XX(CLOSED, "closed")                                                                                               \
    XX(IO, "i/o error")                                                                                                \
    XX(FULL, "limit reached")

enum slk_errno {
    SLK_OK = 0,
#define SLK__ERR_ENUM(name, msg) SLK_E##name,
    SLK__ERR_FIRST = -1000,
    SLK_ERRNO_MAP(SLK__ERR_ENUM) SLK__ERR_LAST
#undef SLK__ERR_ENUM
};

const char *slk_strerror(int err);

/* Hard limits. Configurable ones are defaults for struct slk_config. */
#define SLK_DEFAULT_MAX_HEADER_BYTES (8 * 1024)
#define SLK_DEFAULT_MAX_BODY_BYTES (64 * 1024)
#define SLK_DEFAULT_REQUEST_TIMEOUT_MS 10000
#define SLK_DEFAULT_IDLE_TIMEOUT_MS 60000
#define SLK_DEFAULT_MAX_CONNECTIONS 10000
#define SLK_DEFAULT_REDIS_TIMEOUT_MS 1000
#define SLK_DEFAULT_PG_TIMEOUT_MS 5000
#define SLK_DEFAULT_PG_POOL_SIZE 4
#define SLK_DEFAULT_DRAIN_TIMEOUT_MS 10000
#define SLK_MAX_HEADERS 64          /* header lines per request */
#define SLK_MAX_URL_BYTES 2048      /* request target */
#define SLK_MAX_CHUNK_EXT_BYTES 256 /* CVE-2024-22019: llhttp 8.1 does not cap these */
#define SLK_MAX_ROUTE_PARAMS 4
#define SLK_MAX_PIPELINED_BYTES (128 * 1024)             /* unparsed bytes buffered behind an in-flight request */
#define SLK_PG_MAX_QUEUE 1024                            /* queries waiting for a free connection, per pool */
#define SLK_REDIS_MAX_PENDING 65536                      /* commands in flight per connection */
#define SLK_MAX_JSON_TEXT_BYTES (8 * 1024 * 1024)        /* a reply body written by json_text.h */
#define SLK_MAX_ID_LEN 64                                /* ^[A-Za-z0-9._:-]{1,64}$ */
#define SLK_MAX_BOOKING_MINUTES (24 * 60)                /* one booking never spans more than a day */
#define SLK_RETENTION_MS ((int64_t)7 * 24 * 3600 * 1000) /* how long a hold's record outlives it in Redis */

#endif
