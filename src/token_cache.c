#include <stdlib.h>

#include "slk/byte_cache.h"
#include "slk/token_cache.h"

struct slk_token_cache {
    struct slk_byte_cache *tokens; /* token bytes -> struct slk_identity */
};

struct slk_token_cache *slk_token_cache_create(void)
{
    struct slk_token_cache *c = malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    c->tokens = slk_byte_cache_create(SLK_TOKEN_CACHE_ENTRIES, sizeof(struct slk_identity), SLK_TOKEN_CACHE_MAX_LEN);
    if (c->tokens == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void slk_token_cache_free(struct slk_token_cache *c)
{
    if (c == NULL)
        return;
    slk_byte_cache_free(c->tokens);
    free(c);
}

bool slk_token_cache_get(struct slk_token_cache *c, const char *token, size_t len, int64_t now,
                         struct slk_identity *out)
{
    const struct slk_identity *id = slk_byte_cache_get(c->tokens, token, len);
    if (id == NULL || id->exp <= now)
        return false;
    *out = *id;
    return true;
}

void slk_token_cache_put(struct slk_token_cache *c, const char *token, size_t len, const struct slk_identity *id)
{
    slk_byte_cache_put(c->tokens, token, len, id);
}
