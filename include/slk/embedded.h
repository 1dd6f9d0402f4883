/*
 * Files embedded at build time by src/tools/embed.c: the Lua scripts of
 * lua/ and the migrations of sql/, in the order meson.build lists them.
 */
#ifndef SLK_EMBEDDED_H
#define SLK_EMBEDDED_H

#include <stddef.h>

struct slk_embedded_file {
    const char *name; /* base name: "hold.lua", "001_init.sql" */
    const char *data; /* NUL-terminated */
    size_t len;
};

extern const struct slk_embedded_file slk_lua_files[];
extern const size_t slk_lua_files_count;
extern const struct slk_embedded_file slk_sql_files[];
extern const size_t slk_sql_files_count;

#endif
