/* Idempotency-Key gate internals, shared with its unit test. */
#ifndef SLK_IDEMPOTENCY_INTERNAL_H
#define SLK_IDEMPOTENCY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/config.h"
#include "slk/http.h"

#define SLK_IDEM_KEY_MAX 255    /* Idempotency-Key bytes */
#define SLK_IDEM_FP_HEX 65      /* hex SHA-256 + NUL */
#define SLK_IDEM_OWNER_BYTES 16 /* random token of the execution holding the lease */
#define SLK_IDEM_OWNER_HEX (2 * SLK_IDEM_OWNER_BYTES + 1)
#define SLK_IDEM_MIN_LEASE_MS 30000 /* an in-flight marker never lapses sooner */
#define SLK_IDEM_POLL_MS 15         /* how often a waiting duplicate looks for the first reply */
/* "slk:idem:{" role ":" sub "}:" key */
#define SLK_IDEM_REDIS_KEY_MAX (16 + 16 + SLK_MAX_ID_LEN + 2 + SLK_IDEM_KEY_MAX + 1)

/* 1..255 bytes, each 0x21..0x7e. */
bool slk__idem_key_valid(const char *key, size_t len);

/* Hex SHA-256 over method, path, query and body. 0 or SLK_ENOMEM / SLK_EIO. */
int slk__idem_fingerprint(const struct slk_request *req, char out[SLK_IDEM_FP_HEX]) SLK_MUST_CHECK;

/*
 * Finds the Location header in a raw "Name: value\r\n" block (as in
 * req->resp_headers); *value points into headers. False when absent.
 */
bool slk__idem_find_location(const char *headers, size_t len, const char **value, size_t *vlen);

/* How long an in-flight marker lives: max(request timeout, 2 * PG timeout + Redis timeout, 30 s). */
uint64_t slk__idem_lease_ms(const struct slk_config *cfg);

#endif
