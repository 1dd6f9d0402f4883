/*
 * Internals of the PostgreSQL module shared between its files and its tests.
 */
#ifndef SLK_PG_INTERNAL_H
#define SLK_PG_INTERNAL_H

#include <stddef.h>

#include "slk/common.h"
#include "slk/embedded.h"

/*
 * slk_pg_migrate() with an explicit list of migrations, so that tests can
 * apply files that are not embedded (e.g. a failing one). files must be in
 * the order to apply them; each name ends in ".sql".
 */
int slk__pg_migrate_files(const char *conninfo, const struct slk_embedded_file *files, size_t nfiles, char *errbuf,
                          size_t errlen) SLK_MUST_CHECK;

/* Advisory lock key shared by every slotlockd that migrates the same database. */
#define SLK__PG_MIGRATE_LOCK_KEY 0x736c6b6d6967LL /* "slkmig" */

#endif
