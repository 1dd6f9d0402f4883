/*
 * Time: RFC 3339 in and out, and local wall time in an IANA zone through
 * ICU's ucal (thread-safe as long as each struct slk_tz is used by one
 * thread at a time; the process-global TZ is never touched).
 *
 * All instants are int64 milliseconds since the Unix epoch, UTC.
 */
#ifndef SLK_TIMEUTIL_H
#define SLK_TIMEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slk/common.h"

struct slk_tz;

/* NULL when the zone id is not a known IANA zone ("Europe/Berlin", "UTC"). */
struct slk_tz *slk_tz_open(const char *zone_id);
void slk_tz_close(struct slk_tz *tz);
/* True for a zone ICU knows (canonical or alias), not ICU's "Etc/Unknown" fallback. */
bool slk_tz_valid(const char *zone_id);

struct slk_local_time {
    int year, month, day; /* month 1..12 */
    int hour, minute, second;
    int weekday; /* 0 = Monday .. 6 = Sunday */
};

int slk_tz_to_local(struct slk_tz *tz, int64_t utc_ms, struct slk_local_time *out) SLK_MUST_CHECK;
/*
 * The zone's offset from UTC (ms, DST included) at utc_ms, and the instant
 * of its next change (exclusive end of validity; INT64_MAX when none
 * follows). Lets callers convert many instants with plain arithmetic.
 */
int slk_tz_offset(struct slk_tz *tz, int64_t utc_ms, int64_t *offset_ms, int64_t *until_ms) SLK_MUST_CHECK;

/*
 * Local wall time to UTC. A time that does not exist (spring-forward gap)
 * returns SLK_EINVAL; an ambiguous one (fall-back) resolves to the earlier
 * instant.
 */
int slk_tz_from_local(struct slk_tz *tz, const struct slk_local_time *lt, int64_t *utc_ms) SLK_MUST_CHECK;

/*
 * Parses "YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]" (also 't'/' ' separator, 'z').
 * *naive is set when there is no zone designator; then the fields are
 * returned in *local (and *utc_ms is not set) for the caller to resolve in
 * the right zone. Returns 0 or SLK_EINVAL.
 */
int slk_time_parse_rfc3339(const char *s, size_t len, int64_t *utc_ms, bool *naive,
                           struct slk_local_time *local) SLK_MUST_CHECK;

/* "2025-02-15T09:00:00Z" (milliseconds shown only when non-zero: ".250Z"); out needs 32 bytes. */
void slk_time_format_rfc3339(int64_t utc_ms, char out[32]);

/* Wall clock in ms; tests may shift it (slk_clock_set_offset_ms) or stop it at an instant (slk_clock_freeze_ms;
 * 0 lets it run again) to stand exactly at a policy's edge without sleeping. */
int64_t slk_clock_now_ms(void);
void slk_clock_set_offset_ms(int64_t offset);
void slk_clock_freeze_ms(int64_t at_ms);

#endif
