/*
 * sql_fixture.h - what the SQL handler tests share: SQLite files in a
 * directory of the suite's own, and a PostgreSQL schema of the run's own on
 * BALLAST_TEST_PG, so that concurrent runs on one database do not clash.
 */
#ifndef BALLAST_TEST_SQL_FIXTURE_H
#define BALLAST_TEST_SQL_FIXTURE_H

#include <ballast/ballast.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message.h"
#include "support.h" /* bt_sqlite_long, bt_tmpdir */

#define BT_BATCH_MAX 256

/** A batch of hand-built messages and their results, as a worker hands
 *  them to a handler. */
typedef struct bt_batch {
    struct ballast_message_s m[BT_BATCH_MAX];
    struct ballast_result_s r[BT_BATCH_MAX];
    const ballast_message_t *mp[BT_BATCH_MAX];
    ballast_result_t *rp[BT_BATCH_MAX];
    ballast_outcome_t out[BT_BATCH_MAX];
    char keys[BT_BATCH_MAX][32], values[BT_BATCH_MAX][64];
    size_t n;
} bt_batch_t;

/** Message i: @p topic, partition 2, offset first + i, key "k<i>", value
 *  {"n": <i>}, header x-trace-id "t<i>", timestamp 1700000000000 + i. */
void bt_batch_fill(bt_batch_t *b, size_t n, const char *topic, int64_t first);
/** Points message i's value at @p v (NULL: a tombstone). */
void bt_batch_set_value(bt_batch_t *b, size_t i, const char *v);
/** Frees the headers and results. */
void bt_batch_free(bt_batch_t *b);

/** A configuration from name/value pairs (NULL-terminated); fails the test
 *  on a refused setting. */
ballast_conf_t *bt_conf_from(const char *const *kv);
/** Runs @p h's init with the configuration @p kv for @p worker (-1: the
 *  offset loader's state). @returns its code, the state in *statep. */
int bt_handler_init(const ballast_handler_t *h, const char *const *kv, int worker,
                    void **statep, char *err, size_t errsize);

/** A path for file @p name in the suite's SQLite directory (made on first
 *  use, removed when the suite exits). */
void bt_sqlite_path(const char *name, char *buf, size_t size);
/** Runs @p sql on the SQLite database at @p path (waiting up to 5 s for a
 *  lock); fails the test if it fails. */
void bt_sqlite_exec(const char *path, const char *sql);

/** The DSN of the run's schema: BALLAST_TEST_PG with application_name and
 *  search_path set to bt_pg_app. */
extern char bt_pg_dsn[1024];
/** The run's schema, also the application_name of the handlers' sessions
 *  ("<prefix>_<pid>"). */
extern char bt_pg_app[64];

/** Connects to BALLAST_TEST_PG and makes an empty schema for the run.
 *  @returns 0 (also when BALLAST_TEST_PG is unset: then bt_pg_ready() is
 *  false), or -1 when the database cannot be reached. */
int bt_pg_schema_setup(const char *prefix);
/** Ends the handlers' sessions (a failed test may have left a transaction
 *  open), drops the schema and disconnects. */
void bt_pg_schema_teardown(void);
/** True after a bt_pg_schema_setup() that connected. */
bool bt_pg_ready(void);
/** Runs @p sql in the run's schema; fails the test if it fails. */
void bt_pg_admin_exec(const char *sql);
/** The first column of the first row of @p sql as text (caller frees), or
 *  NULL when there is no row or it is NULL; fails the test if it fails. */
char *bt_pg_admin_text(const char *sql);
/** The same as a number, or -999 when there is no row. */
long bt_pg_admin_long(const char *sql);
/** Ends every session of the handlers (as a server restart would) and
 *  waits until they are gone. */
void bt_pg_kill_sessions(void);

/* Not a skip: a database test that silently skipped proves nothing. */
#define BT_NEED_PG()                                                             \
    do {                                                                         \
        if (!bt_pg_ready())                                                      \
            fail_msg("BALLAST_TEST_PG unset or unreachable: run via make test"); \
    } while (0)

#endif
