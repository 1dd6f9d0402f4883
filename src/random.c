#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "slk/auth.h"

static const char hex_digits[] = "0123456789abcdef";

/*
 * Each thread draws RAND_bytes in blocks and hands out small requests from
 * its block: one call to OpenSSL's DRBG (a lock, a reseed check, the
 * generation) costs ~1.6 us however few bytes it gives (4 KiB: ~2.8 us), and a hold needs two
 * 16-byte values. Bytes handed out are wiped from the block at once, so
 * none stays behind to be read later. slotlockd never forks, so no two
 * processes share a block.
 */
#define POOL_BYTES 4096
#define POOLED_MAX 64 /* larger requests go to OpenSSL directly */

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left; /* unused bytes, at the end of pool */

static int draw(unsigned char *p, size_t len)
{
    /* RAND_bytes takes an int length; feed large requests in slices. */
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, n) != 1)
            return SLK_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int slk_random_bytes(void *buf, size_t len)
{
    if (len > POOLED_MAX)
        return draw(buf, len);
    if (pool_left < len) {
        int rc = draw(pool, sizeof(pool));
        if (rc != 0) {
            pool_left = 0;
            return rc;
        }
        pool_left = sizeof(pool);
    }
    unsigned char *from = pool + sizeof(pool) - pool_left;
    memcpy(buf, from, len);
    OPENSSL_cleanse(from, len);
    pool_left -= len;
    return 0;
}

void slk_hex_encode(char *out, const unsigned char *in, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0f];
    }
}

/* RFC 9562 section 4: the version in the high nibble of byte 6, variant 10xx in byte 8; then the text. */
static void uuid_finish(unsigned char b[16], unsigned version, char out[37])
{
    b[6] = (unsigned char)((b[6] & 0x0f) | version << 4);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    slk_uuid_format(b, out);
}

int slk_uuid_v4(char out[37])
{
    unsigned char b[16];
    int rc = slk_random_bytes(b, sizeof(b));
    if (rc != 0)
        return rc;
    uuid_finish(b, 4, out);
    return 0;
}

/*
 * RFC 9562 section 5.7: the unix time in milliseconds, big-endian, in the
 * first 48 bits, then the version, the variant and 74 random bits. Ids made one
 * after another sort near each other, so the btrees that index them in
 * Postgres grow at their right edge instead of on random pages; the random
 * bits still make an id impossible to guess.
 */
int slk_uuid_v7(char out[37], int64_t unix_ms)
{
    unsigned char b[16];
    int rc = slk_random_bytes(b + 6, sizeof(b) - 6);
    if (rc != 0)
        return rc;
    uint64_t ms = unix_ms > 0 ? (uint64_t)unix_ms : 0;
    for (int i = 5; i >= 0; i--, ms >>= 8)
        b[i] = (unsigned char)(ms & 0xff);
    uuid_finish(b, 7, out);
    return 0;
}

static const size_t uuid_groups[] = {4, 2, 2, 2, 6}; /* bytes per dash-separated group */

void slk_uuid_format(const unsigned char bytes[16], char out[37])
{
    char *p = out;
    size_t off = 0;
    for (size_t g = 0; g < SLK_ARRAY_SIZE(uuid_groups); g++) {
        if (g > 0)
            *p++ = '-';
        slk_hex_encode(p, bytes + off, uuid_groups[g]);
        p += 2 * uuid_groups[g];
        off += uuid_groups[g];
    }
    *p = '\0';
}

static int lower_hex(char c)
{
    return isupper((unsigned char)c) ? -1 : OPENSSL_hexchar2int((unsigned char)c);
}

int slk_hex_decode_lower(unsigned char *out, const char *hex, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        /* A terminator stops at the first digit: the second is never read past it. */
        int hi = lower_hex(hex[2 * i]), lo = hi < 0 ? -1 : lower_hex(hex[2 * i + 1]);
        if (lo < 0)
            return SLK_EINVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int slk_uuid_bytes(const char *uuid, unsigned char out[16])
{
    const char *p = uuid;
    size_t off = 0;
    for (size_t g = 0; g < SLK_ARRAY_SIZE(uuid_groups); g++) {
        if (g > 0 && *p++ != '-')
            return SLK_EINVAL;
        if (slk_hex_decode_lower(out + off, p, uuid_groups[g]) != 0)
            return SLK_EINVAL;
        p += 2 * uuid_groups[g];
        off += uuid_groups[g];
    }
    return *p == '\0' ? 0 : SLK_EINVAL;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int slk_uuid_valid(const char *s, size_t len)
{
    if (s == NULL || len != 36)
        return 0;
    for (size_t i = 0; i < len; i++) {
        bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash_pos ? s[i] != '-' : !is_hex(s[i]))
            return 0;
    }
    return 1;
}

int slk_random_token(char *out, size_t outlen, const char *prefix)
{
    unsigned char b[16];
    size_t plen = prefix != NULL ? strlen(prefix) : 0;

    if (out == NULL || outlen < plen + 2 * sizeof(b) + 1)
        return SLK_EINVAL;
    int rc = slk_random_bytes(b, sizeof(b));
    if (rc != 0)
        return rc;
    if (plen > 0)
        memcpy(out, prefix, plen);
    slk_hex_encode(out + plen, b, sizeof(b));
    out[plen + 2 * sizeof(b)] = '\0';
    return 0;
}

static bool is_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
}

int slk_id_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > SLK_MAX_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_id_char(s[i]))
            return 0;
    }
    return 1;
}

void slk_uuid_canonical(const char *uuid, char out[37])
{
    for (size_t i = 0; i < 36; i++)
        out[i] = (char)(uuid[i] >= 'A' && uuid[i] <= 'F' ? uuid[i] + ('a' - 'A') : uuid[i]);
    out[36] = '\0';
}
