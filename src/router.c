/*
 * A flat list of routes, matched segment by segment without allocating.
 * The API has a few dozen routes; a route whose segment count differs from
 * the path's is skipped without a look at its pattern, so a match costs a
 * few hundred instructions, and a trie would buy nothing measurable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slk/router.h"

#define MAX_SEGMENTS 32

struct route {
    enum slk_method method;
    const char *pattern;
    size_t pattern_len;
    size_t segments; /* a path with another count cannot match: skipped without a look at the pattern */
    slk_handler_cb handler;
    int route_id;
};

struct slk_router {
    struct route *routes;
    size_t count, cap;
};

struct slk_router *slk_router_create(void)
{
    return calloc(1, sizeof(struct slk_router));
}

void slk_router_free(struct slk_router *r)
{
    if (r == NULL)
        return;
    free(r->routes);
    free(r);
}

static size_t segment_len(const char *s, const char *end)
{
    const char *slash = memchr(s, '/', (size_t)(end - s));
    return (size_t)((slash != NULL ? slash : end) - s);
}

/* Segments of "/a/b" (2); "/" has one, empty. */
static size_t count_segments(const char *s, size_t len)
{
    size_t n = 0;
    for (const char *p = s, *end = s + len; p != NULL && p < end; p = memchr(p + 1, '/', (size_t)(end - p - 1)))
        n++;
    return n;
}

static bool is_param(const char *seg, size_t len)
{
    return len >= 2 && seg[0] == '{' && seg[len - 1] == '}';
}

/* A pattern is "/" followed by segments; a {param} is a whole, named segment. */
static bool pattern_valid(const char *pattern)
{
    size_t n = strlen(pattern);
    if (n == 0 || pattern[0] != '/')
        return false;
    const char *s = pattern + 1, *end = pattern + n;
    size_t params = 0, segments = 0;
    for (;;) {
        size_t len = segment_len(s, end);
        bool has_brace = memchr(s, '{', len) != NULL || memchr(s, '}', len) != NULL;
        if (is_param(s, len)) {
            if (len == 2 || memchr(s + 1, '{', len - 2) != NULL || memchr(s + 1, '}', len - 2) != NULL)
                return false;
            params++;
        } else if (has_brace) {
            return false;
        }
        segments++;
        if (s + len == end)
            break;
        s += len + 1;
    }
    return params <= SLK_MAX_ROUTE_PARAMS && segments <= MAX_SEGMENTS;
}

int slk_router_add(struct slk_router *r, enum slk_method m, const char *pattern, slk_handler_cb handler, int route_id)
{
    if (r == NULL || pattern == NULL || handler == NULL || m == SLK_METHOD_OTHER || !pattern_valid(pattern))
        return SLK_EINVAL;
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct route *nr = realloc(r->routes, cap * sizeof(*nr));
        if (nr == NULL)
            return SLK_ENOMEM;
        r->routes = nr;
        r->cap = cap;
    }
    size_t len = strlen(pattern);
    r->routes[r->count++] = (struct route){m, pattern, len, count_segments(pattern, len), handler, route_id};
    return 0;
}

/*
 * Matches path against pattern, filling params. *rank orders competing
 * matches: one bit per segment, set for a literal, most significant first,
 * so "/a/new" beats "/a/{id}" whatever the registration order.
 */
static bool pattern_match(const struct route *rt, const char *path, size_t path_len, struct slk_str *params,
                          size_t *num_params, uint32_t *rank)
{
    const char *p = rt->pattern + 1, *pend = rt->pattern + rt->pattern_len;
    const char *s = path, *send = path + path_len;
    if (path_len == 0 || path[0] != '/')
        return false;
    s++;
    *num_params = 0;
    *rank = 0;
    for (size_t seg = 0;; seg++) {
        size_t plen = segment_len(p, pend);
        size_t slen = segment_len(s, send);
        if (is_param(p, plen)) {
            if (slen == 0)
                return false;
            params[(*num_params)++] = (struct slk_str){s, slen};
        } else {
            if (plen != slen || memcmp(p, s, plen) != 0)
                return false;
            if (seg < 32)
                *rank |= 1u << (31 - seg);
        }
        bool p_last = p + plen == pend, s_last = s + slen == send;
        if (p_last || s_last)
            return p_last && s_last;
        p += plen + 1;
        s += slen + 1;
    }
}

/* Allow lists methods in enum order so the text is stable ("GET, PUT"). */
static void build_allow(char *out, size_t cap, unsigned methods)
{
    size_t o = 0;
    out[0] = '\0';
    for (int m = SLK_METHOD_GET; m <= SLK_METHOD_OPTIONS; m++) {
        if (!(methods & (1u << m)))
            continue;
        int n = snprintf(out + o, cap - o, "%s%s", o > 0 ? ", " : "", slk_method_name((enum slk_method)m));
        if (n < 0 || (size_t)n >= cap - o)
            return;
        o += (size_t)n;
    }
}

enum slk_route_result slk_router_match(const struct slk_router *r, enum slk_method m, const char *path, size_t path_len,
                                       struct slk_route_match *out)
{
    struct slk_str params[SLK_MAX_ROUTE_PARAMS];
    size_t num_params;
    uint32_t rank;
    const struct route *best = NULL;
    uint32_t best_rank = 0;
    int best_exact = 0;
    unsigned methods = 0;

    memset(out, 0, sizeof(*out));
    out->route_id = -1;
    size_t segments = count_segments(path, path_len);
    for (size_t i = 0; i < r->count; i++) {
        const struct route *rt = &r->routes[i];
        if (rt->segments != segments || !pattern_match(rt, path, path_len, params, &num_params, &rank))
            continue;
        methods |= 1u << rt->method;
        /* HEAD is served by the GET handler (the server drops the body) unless HEAD has its own route. */
        int exact = rt->method == m ? 2 : (m == SLK_METHOD_HEAD && rt->method == SLK_METHOD_GET) ? 1 : 0;
        if (exact == 0)
            continue;
        if (best == NULL || rank > best_rank || (rank == best_rank && exact > best_exact)) {
            best = rt;
            best_rank = rank;
            best_exact = exact;
            memcpy(out->params, params, num_params * sizeof(params[0]));
            out->num_params = num_params;
        }
    }
    if (best != NULL) {
        out->handler = best->handler;
        out->route_id = best->route_id;
        return SLK_ROUTE_FOUND;
    }
    out->num_params = 0;
    if (methods == 0)
        return SLK_ROUTE_NOT_FOUND;
    build_allow(out->allow, sizeof(out->allow), methods);
    return SLK_ROUTE_METHOD_NOT_ALLOWED;
}
