#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicode/ucal.h>
#include <unicode/ustring.h>

#include "slk/timeutil.h"

#define MS_PER_DAY 86400000LL
/* IANA ids are short ("America/Argentina/ComodRivadavia" is among the longest). */
#define TZ_ID_MAX 64
/* Wall times we accept; far beyond any booking, well inside ICU's range. */
#define YEAR_MIN 1
#define YEAR_MAX 9999

struct slk_tz {
    UCalendar *cal;
};

static _Atomic int64_t clock_offset_ms;
static _Atomic int64_t clock_frozen_ms; /* 0: the clock runs */

/* Howard Hinnant's days_from_civil: proleptic Gregorian date to days since 1970-01-01. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* 1970-01-01 was a Thursday. */
static int weekday_from_days(int64_t days)
{
    int64_t w = (days + 3) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static bool local_fields_valid(const struct slk_local_time *lt)
{
    return lt->year >= YEAR_MIN && lt->year <= YEAR_MAX && lt->month >= 1 && lt->month <= 12 && lt->day >= 1 &&
           lt->day <= days_in_month(lt->year, lt->month) && lt->hour >= 0 && lt->hour <= 23 && lt->minute >= 0 &&
           lt->minute <= 59 && lt->second >= 0 && lt->second <= 59;
}

/* Zone ids are ASCII; anything else cannot name an IANA zone. */
static int zone_to_uchars(const char *zone_id, UChar *out, int32_t cap)
{
    if (zone_id == NULL)
        return -1;
    size_t len = strlen(zone_id);
    if (len == 0 || len >= (size_t)cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)zone_id[i];
        if (c <= ' ' || c >= 0x7f)
            return -1;
    }
    u_charsToUChars(zone_id, out, (int32_t)len);
    out[len] = 0;
    return (int)len;
}

bool slk_tz_valid(const char *zone_id)
{
    UChar id[TZ_ID_MAX + 1];
    UChar canonical[TZ_ID_MAX + 1];
    UBool is_system = 0;
    UErrorCode status = U_ZERO_ERROR;

    int len = zone_to_uchars(zone_id, id, TZ_ID_MAX + 1);
    if (len < 0)
        return false;
    /*
     * ucal_open silently falls back to "Etc/Unknown" (GMT) for an unknown id,
     * so ask for the canonical id: it fails for unknown ids, and is_system is
     * false for custom ids such as "GMT+05:00" that are not IANA zones.
     */
    int32_t n = ucal_getCanonicalTimeZoneID(id, len, canonical, TZ_ID_MAX + 1, &is_system, &status);
    if (U_FAILURE(status) || !is_system || n <= 0)
        return false;
    static const UChar unknown[] = {'E', 't', 'c', '/', 'U', 'n', 'k', 'n', 'o', 'w', 'n', 0};
    return u_strcmp(canonical, unknown) != 0;
}

struct slk_tz *slk_tz_open(const char *zone_id)
{
    UChar id[TZ_ID_MAX + 1];
    UErrorCode status = U_ZERO_ERROR;

    if (!slk_tz_valid(zone_id))
        return NULL;
    int len = zone_to_uchars(zone_id, id, TZ_ID_MAX + 1);
    struct slk_tz *tz = calloc(1, sizeof(*tz));
    if (tz == NULL)
        return NULL;
    tz->cal = ucal_open(id, len, "en_US_POSIX", UCAL_GREGORIAN, &status);
    if (U_FAILURE(status))
        goto fail;
    /* Proleptic Gregorian, like RFC 3339 and our own day arithmetic. */
    ucal_setGregorianChange(tz->cal, -8.64e15, &status);
    if (U_FAILURE(status))
        goto fail;
    /*
     * Non-lenient: a wall time inside a spring-forward gap is an error rather
     * than being shifted. A repeated wall time resolves to its first
     * (earlier) occurrence.
     */
    ucal_setAttribute(tz->cal, UCAL_LENIENT, 0);
    ucal_setAttribute(tz->cal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);
    ucal_setAttribute(tz->cal, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
    return tz;

fail:
    if (tz->cal != NULL)
        ucal_close(tz->cal);
    free(tz);
    return NULL;
}

void slk_tz_close(struct slk_tz *tz)
{
    if (tz == NULL)
        return;
    ucal_close(tz->cal);
    free(tz);
}

static int read_fields(UCalendar *cal, struct slk_local_time *out)
{
    UErrorCode status = U_ZERO_ERROR;
    struct slk_local_time lt;

    lt.year = ucal_get(cal, UCAL_EXTENDED_YEAR, &status);
    lt.month = ucal_get(cal, UCAL_MONTH, &status) + 1;
    lt.day = ucal_get(cal, UCAL_DATE, &status);
    lt.hour = ucal_get(cal, UCAL_HOUR_OF_DAY, &status);
    lt.minute = ucal_get(cal, UCAL_MINUTE, &status);
    lt.second = ucal_get(cal, UCAL_SECOND, &status);
    /* ICU counts UCAL_SUNDAY = 1 .. UCAL_SATURDAY = 7; we want Monday = 0. */
    lt.weekday = (ucal_get(cal, UCAL_DAY_OF_WEEK, &status) + 5) % 7;
    if (U_FAILURE(status))
        return SLK_EINVAL;
    *out = lt;
    return 0;
}

int slk_tz_to_local(struct slk_tz *tz, int64_t utc_ms, struct slk_local_time *out)
{
    UErrorCode status = U_ZERO_ERROR;

    if (tz == NULL || out == NULL)
        return SLK_EINVAL;
    /* Keep the instant exactly representable as a double and inside ICU's range. */
    if (utc_ms < -62135596800000LL - MS_PER_DAY || utc_ms > 253402300800000LL + MS_PER_DAY)
        return SLK_EINVAL;
    ucal_setMillis(tz->cal, (UDate)utc_ms, &status);
    if (U_FAILURE(status))
        return SLK_EINVAL;
    return read_fields(tz->cal, out);
}

int slk_tz_offset(struct slk_tz *tz, int64_t utc_ms, int64_t *offset_ms, int64_t *until_ms)
{
    UErrorCode status = U_ZERO_ERROR;
    if (tz == NULL || utc_ms < -62135596800000LL - MS_PER_DAY || utc_ms > 253402300800000LL + MS_PER_DAY)
        return SLK_EINVAL;
    ucal_setMillis(tz->cal, (UDate)utc_ms, &status);
    int32_t zone = ucal_get(tz->cal, UCAL_ZONE_OFFSET, &status);
    int32_t dst = ucal_get(tz->cal, UCAL_DST_OFFSET, &status);
    UDate next = 0;
    UBool found = ucal_getTimeZoneTransitionDate(tz->cal, UCAL_TZ_TRANSITION_NEXT, &next, &status);
    if (U_FAILURE(status))
        return SLK_EINVAL;
    *offset_ms = (int64_t)zone + dst;
    *until_ms = found ? (int64_t)next : INT64_MAX;
    return 0;
}

int slk_tz_from_local(struct slk_tz *tz, const struct slk_local_time *lt, int64_t *utc_ms)
{
    UErrorCode status = U_ZERO_ERROR;
    struct slk_local_time back;

    if (tz == NULL || lt == NULL || utc_ms == NULL || !local_fields_valid(lt))
        return SLK_EINVAL;
    ucal_clear(tz->cal);
    ucal_setDateTime(tz->cal, lt->year, lt->month - 1, lt->day, lt->hour, lt->minute, lt->second, &status);
    ucal_set(tz->cal, UCAL_MILLISECOND, 0);
    UDate ms = ucal_getMillis(tz->cal, &status);
    if (U_FAILURE(status))
        return SLK_EINVAL;
    /*
     * Non-lenient ICU already refuses gap times; the round trip makes sure of
     * it whatever the ICU version, since a shifted time reads back different.
     */
    status = U_ZERO_ERROR;
    ucal_setMillis(tz->cal, ms, &status);
    if (U_FAILURE(status) || read_fields(tz->cal, &back) != 0)
        return SLK_EINVAL;
    if (back.year != lt->year || back.month != lt->month || back.day != lt->day || back.hour != lt->hour ||
        back.minute != lt->minute || back.second != lt->second)
        return SLK_EINVAL;
    *utc_ms = (int64_t)ms;
    return 0;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY-MM-DD?HH:MM:SS": 19 characters at the start of s. */
static int parse_date_time(const char *s, struct slk_local_time *lt)
{
    if (s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':')
        return SLK_EINVAL;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return SLK_EINVAL;
    if (!digits(s, 4, &lt->year) || !digits(s + 5, 2, &lt->month) || !digits(s + 8, 2, &lt->day) ||
        !digits(s + 11, 2, &lt->hour) || !digits(s + 14, 2, &lt->minute) || !digits(s + 17, 2, &lt->second))
        return SLK_EINVAL;
    /* RFC 3339 allows year 0000 and leap second 60; we accept neither (ICU and bookings have no use for them). */
    if (!local_fields_valid(lt))
        return SLK_EINVAL;
    lt->weekday = weekday_from_days(days_from_civil(lt->year, lt->month, lt->day));
    return 0;
}

/* Parses ".d{1,9}" at s; returns the characters used (0 if none) or -1. */
static int parse_fraction(const char *s, size_t len, int *ms)
{
    *ms = 0;
    if (len == 0 || s[0] != '.')
        return 0;
    size_t n = 1;
    int scale = 100;
    while (n < len && s[n] >= '0' && s[n] <= '9') {
        if (n > 9)
            return -1;
        /* Truncate below the millisecond. */
        *ms += (s[n] - '0') * scale;
        scale /= 10;
        n++;
    }
    return n == 1 ? -1 : (int)n;
}

/* Parses "Z", "z" or "±HH:MM" exactly filling s[0..len); offset in minutes east of UTC. */
static int parse_offset(const char *s, size_t len, int *offset_min)
{
    int hh;
    int mm;

    if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
        *offset_min = 0;
        return 0;
    }
    if (len != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return SLK_EINVAL;
    if (!digits(s + 1, 2, &hh) || !digits(s + 4, 2, &mm) || hh > 23 || mm > 59)
        return SLK_EINVAL;
    *offset_min = (s[0] == '-' ? -1 : 1) * (hh * 60 + mm);
    return 0;
}

int slk_time_parse_rfc3339(const char *s, size_t len, int64_t *utc_ms, bool *naive, struct slk_local_time *local)
{
    struct slk_local_time lt;
    int ms;
    int offset_min;

    if (s == NULL || len < 19 || len > 64)
        return SLK_EINVAL;
    if (parse_date_time(s, &lt) != 0)
        return SLK_EINVAL;
    int n = parse_fraction(s + 19, len - 19, &ms);
    if (n < 0)
        return SLK_EINVAL;
    size_t rest = 19 + (size_t)n;

    if (rest == len) {
        if (naive != NULL)
            *naive = true;
        if (local != NULL)
            *local = lt;
        return 0;
    }
    if (parse_offset(s + rest, len - rest, &offset_min) != 0)
        return SLK_EINVAL;
    int64_t days = days_from_civil(lt.year, lt.month, lt.day);
    int64_t secs = days * 86400 + lt.hour * 3600 + lt.minute * 60 + lt.second - (int64_t)offset_min * 60;
    if (utc_ms != NULL)
        *utc_ms = secs * 1000 + ms;
    if (naive != NULL)
        *naive = false;
    if (local != NULL)
        *local = lt;
    return 0;
}

void slk_time_format_rfc3339(int64_t utc_ms, char out[32])
{
    int64_t days = floor_div(utc_ms, MS_PER_DAY);
    int64_t ms_of_day = utc_ms % MS_PER_DAY;
    int64_t year;
    int month;
    int day;

    if (ms_of_day < 0)
        ms_of_day += MS_PER_DAY;
    civil_from_days(days, &year, &month, &day);
    int secs = (int)(ms_of_day / 1000);
    int ms = (int)(ms_of_day % 1000);
    if (year >= 0 && year <= 9999) {
        /* Hot path (availability lists hundreds of these): digits by hand, no printf. */
        int fields[6] = {(int)year, month, day, secs / 3600, secs / 60 % 60, secs % 60};
        char *p = out;
        *p++ = (char)('0' + fields[0] / 1000);
        *p++ = (char)('0' + fields[0] / 100 % 10);
        *p++ = (char)('0' + fields[0] / 10 % 10);
        *p++ = (char)('0' + fields[0] % 10);
        for (int i = 1; i < 6; i++) {
            *p++ = "--T::"[i - 1];
            *p++ = (char)('0' + fields[i] / 10);
            *p++ = (char)('0' + fields[i] % 10);
        }
        if (ms != 0) {
            *p++ = '.';
            *p++ = (char)('0' + ms / 100);
            *p++ = (char)('0' + ms / 10 % 10);
            *p++ = (char)('0' + ms % 10);
        }
        *p++ = 'Z';
        *p = '\0';
        return;
    }
    if (ms != 0)
        snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)year, month, day, secs / 3600,
                 secs / 60 % 60, secs % 60, ms);
    else
        snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)year, month, day, secs / 3600, secs / 60 % 60,
                 secs % 60);
}

int64_t slk_clock_now_ms(void)
{
    struct timespec ts;
    int64_t frozen = atomic_load(&clock_frozen_ms);

    if (frozen != 0)
        return frozen;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&clock_offset_ms);
}

void slk_clock_set_offset_ms(int64_t offset)
{
    atomic_store(&clock_offset_ms, offset);
}

void slk_clock_freeze_ms(int64_t at_ms)
{
    atomic_store(&clock_frozen_ms, at_ms);
}
