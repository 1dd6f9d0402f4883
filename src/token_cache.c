#include <stdlib.h>
#include <string.h>

#include "slk/token_cache.h"

struct token_slot {
    size_t len; /* 0: empty */
    char token[SLK_TOKEN_CACHE_MAX_LEN];
    struct slk_identity id;
};

struct slk_token_cache {
    struct token_slot slots[SLK_TOKEN_CACHE_SLOTS];
};

/* FNV-1a over the signature end of the token, which differs between tokens. */
static size_t slot_of(const char *token, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    size_t from = len > 32 ? len - 32 : 0;
    for (size_t i = from; i < len; i++) {
        h ^= (unsigned char)token[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h % SLK_TOKEN_CACHE_SLOTS);
}

struct slk_token_cache *slk_token_cache_create(void)
{
    return calloc(1, sizeof(struct slk_token_cache));
}

void slk_token_cache_free(struct slk_token_cache *c)
{
    free(c);
}

bool slk_token_cache_get(struct slk_token_cache *c, const char *token, size_t len, int64_t now,
                         struct slk_identity *out)
{
    if (len == 0 || len > SLK_TOKEN_CACHE_MAX_LEN)
        return false;
    const struct token_slot *s = &c->slots[slot_of(token, len)];
    if (s->len != len || memcmp(s->token, token, len) != 0 || s->id.exp <= now)
        return false;
    *out = s->id;
    return true;
}

void slk_token_cache_put(struct slk_token_cache *c, const char *token, size_t len, const struct slk_identity *id)
{
    if (len == 0 || len > SLK_TOKEN_CACHE_MAX_LEN)
        return;
    struct token_slot *s = &c->slots[slot_of(token, len)];
    memcpy(s->token, token, len);
    s->len = len;
    s->id = *id;
}
