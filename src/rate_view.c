#include <stdlib.h>
#include <string.h>

#include "slk/common.h"
#include "slk/rate_view.h"

#define SETS 2048
#define WAYS 4

struct client {
    int64_t tat_ns;     /* 0: the slot is free */
    uint32_t in_flight; /* tokens charged from here whose charge Redis has not answered yet */
    uint32_t owed;      /* tokens taken here, not charged yet: a client's first rides with its second (owed_counts) */
    uint8_t len;
    char id[SLK_RATE_CLIENT_MAX];
};

struct slk_rate_view {
    struct client slots[SETS * WAYS];
};

struct slk_rate_view *slk_rate_view_create(void)
{
    return calloc(1, sizeof(struct slk_rate_view));
}

void slk_rate_view_free(struct slk_rate_view *v)
{
    free(v);
}

static struct client *set_of(struct slk_rate_view *v, const char *id, size_t len)
{
    return &v->slots[slk_fnv1a(SLK_FNV1A_INIT, id, len) % SETS * WAYS];
}

static bool is(const struct client *c, const char *id, size_t len)
{
    return c->tat_ns != 0 && c->len == len && memcmp(c->id, id, len) == 0;
}

/* Ids are at most 64 bytes, so this never cuts one; it only makes sure nothing overflows. */
static size_t id_len(size_t len)
{
    return len > SLK_RATE_CLIENT_MAX ? SLK_RATE_CLIENT_MAX : len;
}

static struct client *find(struct slk_rate_view *v, const char *id, size_t len)
{
    len = id_len(len);
    struct client *set = set_of(v, id, len);
    for (int i = 0; i < WAYS; i++) {
        if (is(&set[i], id, len))
            return &set[i];
    }
    return NULL;
}

/*
 * Room for a client not in view: a free slot, else the one whose bucket is
 * fullest. Forgetting a client only lets it start from a full bucket here;
 * Redis still charges what it takes from then on. A token it owes (see
 * owed_counts) is forgotten with it: nothing lost once its bucket is full
 * again, as the fullest bucket of a set almost always is; at worst one
 * token, for less than one interval.
 */
static struct client *make_room(struct slk_rate_view *v, const char *id, size_t len)
{
    struct client *set = set_of(v, id, len), *pick = &set[0];
    for (int i = 0; i < WAYS; i++) {
        if (set[i].tat_ns == 0)
            return &set[i];
        if (set[i].tat_ns < pick->tat_ns)
            pick = &set[i];
    }
    return pick;
}

static struct client *add(struct slk_rate_view *v, const char *id, size_t len, int64_t now_ns)
{
    len = id_len(len);
    struct client *c = make_room(v, id, len);
    c->tat_ns = now_ns > 0 ? now_ns : 1;
    c->in_flight = 0;
    c->owed = 0;
    c->len = (uint8_t)len;
    memcpy(c->id, id, len);
    return c;
}

static struct client *find_or_add(struct slk_rate_view *v, const char *id, size_t len, int64_t now_ns)
{
    struct client *c = find(v, id, len);
    return c != NULL ? c : add(v, id, len, now_ns);
}

/*
 * An unsent token counts only until the client's bucket is full again (its
 * TAT no later than now): from then on charging it would put the client in
 * debt for a token whose time has passed, so it is dropped instead.
 */
static uint32_t owed_counts(struct client *c, int64_t now_ns)
{
    if (c->tat_ns <= now_ns)
        c->owed = 0;
    return c->owed;
}

bool slk_rate_view_take(struct slk_rate_view *v, const char *client, size_t len, int64_t now_ns,
                        const struct slk_rate_limits *lim, int64_t *wait_ns, uint32_t *charge)
{
    struct client *c = find(v, client, len);
    bool first = c == NULL;
    if (first)
        c = add(v, client, len, now_ns);
    uint32_t owed = owed_counts(c, now_ns);
    int64_t tat = c->tat_ns > now_ns ? c->tat_ns : now_ns;
    int64_t next = tat + lim->interval_ns;
    *charge = 0;
    if (next - now_ns > lim->window_ns) {
        *wait_ns = next - now_ns - lim->window_ns;
        return false;
    }
    c->tat_ns = next;
    *wait_ns = 0;
    if (first) {
        c->owed = 1;
        return true;
    }
    *charge = owed + 1;
    c->owed = 0;
    c->in_flight += *charge;
    return true;
}

void slk_rate_view_charged(struct slk_rate_view *v, const char *client, size_t len, int64_t now_ns, int64_t debt_ns,
                           uint32_t tokens, const struct slk_rate_limits *lim)
{
    struct client *c = find_or_add(v, client, len, now_ns);
    c->in_flight -= tokens < c->in_flight ? tokens : c->in_flight;
    /* Redis counted everyone's tokens up to these; ours on the way or not sent yet come on top. */
    int64_t mine = (int64_t)c->in_flight + (int64_t)owed_counts(c, now_ns);
    int64_t seen = now_ns + (debt_ns > 0 ? debt_ns : 0) + mine * lim->interval_ns;
    if (seen > c->tat_ns)
        c->tat_ns = seen;
}

void slk_rate_view_uncharged(struct slk_rate_view *v, const char *client, size_t len, uint32_t tokens)
{
    struct client *c = find(v, client, len);
    if (c != NULL)
        c->in_flight -= tokens < c->in_flight ? tokens : c->in_flight;
}
