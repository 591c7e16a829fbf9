/* test_sql_handlers.c - drives the sqlite and postgres handlers directly with hand-built messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "handlers/handlers.h"
#include "message.h"
#include "sql_fixture.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================= */
/* SQLite                                                                  */
/* ======================================================================= */

static void *sqlite_open_handler(const char *path, const char *sql)
{
    const char *kv[] = {"handler.sqlite.path", path, "handler.sqlite.sql", sql, NULL};
    char err[512];
    void *state = NULL;

    if (bt_handler_init(&bl_handler_sqlite, kv, 0, &state, err, sizeof(err)))
        fail_msg("sqlite init: %s", err);
    return state;
}

static void test_sqlite_rows(void **unused)
{
    char path[300];
    bt_batch_t b;
    void *st;
    static const unsigned char binary[] = {0xff, 0x00, 0xfe};

    (void)unused;
    bt_sqlite_path("rows.db", path, sizeof(path));
    bt_sqlite_exec(path, "CREATE TABLE ev (topic TEXT, part INTEGER, off INTEGER, "
                         "k, v, ts INTEGER, trace TEXT)");
    st = sqlite_open_handler(
        path, "INSERT INTO ev VALUES (:topic, :partition, :offset, :key, :value, "
              ":timestamp, :header.x-trace-id); -- one row per message");
    bt_batch_fill(&b, 4, "orders", 100);
    b.m[1].key = NULL; /* no key: NULL */
    b.m[1].key_len = 0;
    rd_kafka_headers_destroy(b.m[2].hdrs); /* no header: NULL */
    b.m[2].hdrs = NULL;
    b.m[2].timestamp = -1;
    b.m[3].value = binary; /* not UTF-8: a BLOB */
    b.m[3].value_len = sizeof(binary);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(bl_handler_sqlite.handle(st, b.mp[i], b.rp[i]),
                         BALLAST_OUTCOME_OK);
    bl_handler_sqlite.destroy(st);

    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM ev"), 4);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM ev WHERE topic='orders' "
                                          "AND part=2 AND off BETWEEN 100 AND 103"),
                     4);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM ev WHERE k IS NULL"), 1);
    assert_int_equal(bt_sqlite_long(path, "SELECT off FROM ev WHERE k IS NULL"), 101);
    assert_int_equal(bt_sqlite_long(path, "SELECT off FROM ev WHERE trace IS NULL"), 102);
    assert_int_equal(bt_sqlite_long(path, "SELECT off FROM ev WHERE ts IS NULL"), 102);
    assert_int_equal(bt_sqlite_long(path, "SELECT ts FROM ev WHERE off = 100"),
                     1700000000000LL);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM ev WHERE trace='t3' "
                                          "AND typeof(v)='blob' AND v = x'ff00fe'"),
                     1);
    assert_int_equal(bt_sqlite_long(path, "SELECT json_extract(v, '$.n') FROM ev "
                                          "WHERE off = 100 AND typeof(v)='text'"),
                     0);
    assert_int_equal(bt_sqlite_long(path, "SELECT typeof(part) = 'integer' FROM ev LIMIT 1"), 1);
    bt_batch_free(&b);
}

/* One poison message in a batch: exactly it fails, every other row lands
 * once. @p table_sql decides how SQLite reacts (statement abort, or the
 * whole transaction rolled back, which takes the one-by-one path). */
static void sqlite_poison(const char *file, const char *table_sql)
{
    char path[300];
    bt_batch_t b;
    void *st;

    bt_sqlite_path(file, path, sizeof(path));
    bt_sqlite_exec(path, table_sql);
    st = sqlite_open_handler(path, "INSERT INTO p (off, v) VALUES (:offset, :value)");
    bt_batch_fill(&b, 10, "orders", 100);
    bt_batch_set_value(&b, 4, "{not json");
    bt_batch_set_value(&b, 7, NULL);
    bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
    for (size_t i = 0; i < b.n; i++) {
        if (i == 4 || i == 7) {
            assert_int_equal(b.out[i], BALLAST_OUTCOME_FAIL);
            assert_non_null(b.r[i].error);
            assert_non_null(strstr(b.r[i].error, "sqlite: "));
            assert_null(strchr(b.r[i].error, '\n'));
        } else {
            assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
        }
    }
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM p"), 8);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(DISTINCT off) FROM p"), 8);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM p WHERE off IN (104, 107)"), 0);

    /* A clean batch afterwards commits normally. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 3, "orders", 100);
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 200 + (int64_t)i;
    bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM p"), 11);
    bl_handler_sqlite.destroy(st);
    bt_batch_free(&b);
}

static void test_sqlite_batch_poison(void **unused)
{
    (void)unused;
    sqlite_poison("poison.db", "CREATE TABLE p (off INTEGER PRIMARY KEY, "
                               "v TEXT NOT NULL CHECK (json_valid(v)))");
}

static void test_sqlite_batch_poison_rollback(void **unused)
{
    (void)unused;
    sqlite_poison("poison-rb.db",
                  "CREATE TABLE p (off INTEGER PRIMARY KEY, "
                  "v TEXT NOT NULL ON CONFLICT ROLLBACK CHECK (json_valid(v)))");
}

/* A write lock held elsewhere past the busy timeout: RETRY, not FAIL. */
static void test_sqlite_busy(void **unused)
{
    char path[300];
    sqlite3 *db;
    bt_batch_t b;
    void *st;

    (void)unused;
    bt_sqlite_path("busy.db", path, sizeof(path));
    bt_sqlite_exec(path, "CREATE TABLE t (v)");
    st = sqlite_open_handler(path, "INSERT INTO t VALUES (:value)");
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    bt_batch_fill(&b, 3, "orders", 100);
    bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.out[i], BALLAST_OUTCOME_RETRY);
        assert_non_null(strstr(b.r[i].error, "locked"));
    }
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM t"), 3);
    bl_handler_sqlite.destroy(st);
    bt_batch_free(&b);
}

static void test_sqlite_init_errors(void **unused)
{
    char path[300], err[512];
    void *st = NULL;
    const char *bad_name[] = {"handler.sqlite.path", path, "handler.sqlite.sql",
                              "INSERT INTO t VALUES (:valu)", NULL};
    const char *no_table[] = {"handler.sqlite.path", path, "handler.sqlite.sql",
                              "INSERT INTO nope VALUES (:value)", NULL};
    const char *two[] = {"handler.sqlite.path", path, "handler.sqlite.sql",
                         "INSERT INTO t VALUES (:value); DELETE FROM t", NULL};
    const char *no_dir[] = {"handler.sqlite.path", "/nonexistent-dir/x.db",
                            "handler.sqlite.sql", "SELECT :value", NULL};

    (void)unused;
    bt_sqlite_path("init.db", path, sizeof(path));
    assert_int_equal(bt_handler_init(&bl_handler_sqlite, bad_name, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_null(st);
    assert_non_null(strstr(err, "handler.sqlite.sql: unknown placeholder \":valu\""));
    assert_int_equal(bt_handler_init(&bl_handler_sqlite, no_table, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.sqlite.sql: no such table: nope"));
    assert_int_equal(bt_handler_init(&bl_handler_sqlite, two, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "one statement per message"));
    /* A local path that cannot be opened is the configuration's fault. */
    assert_int_equal(bt_handler_init(&bl_handler_sqlite, no_dir, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.sqlite.path: cannot open /nonexistent-dir/x.db: "));
}

/* ======================================================================= */
/* PostgreSQL                                                              */
/* ======================================================================= */

static void *pg_open_handler(const char *sql)
{
    const char *kv[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql", sql,
                        "startup.timeout.ms", "5000", NULL};
    char err[512];
    void *state = NULL;

    if (bt_handler_init(&bl_handler_postgres, kv, 0, &state, err, sizeof(err)))
        fail_msg("postgres init: %s", err);
    return state;
}

static int pg_setup(void **unused)
{
    (void)unused;
    if (bt_pg_schema_setup("ballast_sqlh"))
        return -1;
    if (!bt_pg_ready())
        return 0; /* BALLAST_TEST_PG unset: each test fails saying so */
    bt_pg_admin_exec("CREATE TABLE sqlh_ev (topic text, part int, off bigint PRIMARY KEY, "
                     "k text, doc jsonb, ts bigint, trace text)");
    bt_pg_admin_exec("CREATE TABLE sqlh_p (off bigint PRIMARY KEY, doc jsonb NOT NULL, "
                     "CHECK ((doc->>'n')::int <> 6))");
    bt_pg_admin_exec("CREATE TABLE sqlh_b (off bigint PRIMARY KEY, raw bytea, v2 bytea)");
    return 0;
}

static int pg_teardown(void **unused)
{
    (void)unused;
    bt_pg_schema_teardown();
    return 0;
}

static void test_pg_rows(void **unused)
{
    bt_batch_t b;
    void *st;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE sqlh_ev");
    st = pg_open_handler("INSERT INTO sqlh_ev VALUES (:topic, :partition, :offset, "
                         ":key, :value::jsonb, :timestamp, :header.x-trace-id);");
    bt_batch_fill(&b, 3, "orders", 100);
    b.m[1].key = NULL;
    b.m[1].key_len = 0;
    rd_kafka_headers_destroy(b.m[2].hdrs);
    b.m[2].hdrs = NULL;
    b.m[2].timestamp = -1;
    for (size_t i = 0; i < b.n; i++) {
        ballast_outcome_t o = bl_handler_postgres.handle(st, b.mp[i], b.rp[i]);
        if (o != BALLAST_OUTCOME_OK)
            fail_msg("message %zu: %s", i, b.r[i].error);
    }
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_ev WHERE topic = 'orders' "
                                      "AND part = 2"),
                     3);
    assert_int_equal(bt_pg_admin_long("SELECT off FROM sqlh_ev WHERE k IS NULL"), 101);
    assert_int_equal(bt_pg_admin_long("SELECT off FROM sqlh_ev WHERE trace IS NULL"), 102);
    assert_int_equal(bt_pg_admin_long("SELECT off FROM sqlh_ev WHERE ts IS NULL"), 102);
    assert_int_equal(bt_pg_admin_long("SELECT (doc->>'n')::int FROM sqlh_ev WHERE off = 100 "
                                      "AND jsonb_typeof(doc) = 'object' AND k = 'k0' "
                                      "AND trace = 't0' AND ts = 1700000000000"),
                     0);

    /* Duplicate primary key: permanent. Not UTF-8: permanent, clear error. */
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_FAIL);
    assert_non_null(strstr(b.r[0].error, "SQLSTATE 23505"));
    b.m[0].offset = 999;
    b.m[0].value = "\xff\xfe";
    b.m[0].value_len = 2;
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_FAIL);
    assert_non_null(strstr(b.r[0].error, ":value is not valid UTF-8"));
    bl_handler_postgres.destroy(st);
    bt_batch_free(&b);
}

static void check_pg_poison(const bt_batch_t *b, const size_t *bad, size_t nbad)
{
    for (size_t i = 0; i < b->n; i++) {
        bool is_bad = false;
        for (size_t j = 0; j < nbad; j++)
            is_bad |= bad[j] == i;
        if (is_bad) {
            assert_int_equal(b->out[i], BALLAST_OUTCOME_FAIL);
            assert_non_null(b->r[i].error);
            assert_null(strchr(b->r[i].error, '\n'));
        } else {
            if (b->out[i] != BALLAST_OUTCOME_OK)
                fail_msg("message %zu: outcome %d: %s", i, b->out[i],
                         b->r[i].error ? b->r[i].error : "");
        }
    }
}

static void test_pg_batch_poison(void **unused)
{
    bt_batch_t b;
    void *st;
    static const size_t one[] = {3};
    static const size_t many[] = {1, 3, 6, 8, 9};

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE sqlh_p");
    st = pg_open_handler("INSERT INTO sqlh_p (off, doc) VALUES (:offset, :value::jsonb)");

    /* One poison message (invalid JSON for the ::jsonb cast). */
    bt_batch_fill(&b, 10, "orders", 100);
    bt_batch_set_value(&b, 3, "{not json");
    bt_batch_set_value(&b, 6, "{\"n\": 5}"); /* n=6 would break the CHECK */
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, one, 1);
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 22P02"));
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_p"), 9);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_p WHERE off = 103"), 0);
    bt_batch_free(&b);

    /* Many kinds of poison (more than the pipeline rounds): invalid JSON,
     * NULL into NOT NULL, a CHECK violation, not UTF-8, a duplicate key. */
    bt_pg_admin_exec("TRUNCATE sqlh_p");
    bt_batch_fill(&b, 12, "orders", 100);
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 200 + (int64_t)i;
    bt_batch_set_value(&b, 1, "[1,");
    bt_batch_set_value(&b, 3, NULL);
    bt_batch_set_value(&b, 8, "\xc3\x28");
    b.m[9].offset = b.m[2].offset; /* same key as an earlier message */
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, many, sizeof(many) / sizeof(many[0]));
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 23502"));
    assert_non_null(strstr(b.r[6].error, "SQLSTATE 23514"));
    assert_non_null(strstr(b.r[8].error, "not valid UTF-8"));
    assert_non_null(strstr(b.r[9].error, "SQLSTATE 23505"));
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_p"), 7);
    assert_int_equal(bt_pg_admin_long("SELECT count(DISTINCT off) FROM sqlh_p"), 7);
    assert_int_equal(bt_pg_admin_long("SELECT (doc->>'n')::int FROM sqlh_p WHERE off = 202"), 2);
    bt_batch_free(&b);

    /* A clean batch. */
    bt_batch_fill(&b, 5, "orders", 100);
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 300 + (int64_t)i;
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, NULL, 0);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_p WHERE off >= 300"), 5);
    bl_handler_postgres.destroy(st);
    bt_batch_free(&b);
}

/* A batch runs as statements of many rows when the statement is a plain
 * INSERT ... VALUES: a statement-level trigger counts them (250 messages:
 * two of 100 rows, five of 10). A poison message in a many-row statement is
 * still pinned on that message alone; ON CONFLICT DO NOTHING skips a
 * duplicate of an earlier message of the same batch, as one by one would. */
static void test_pg_batch_multirow(void **unused)
{
    static const size_t bad[] = {150};
    bt_batch_t *b = malloc(sizeof(*b));
    void *st;

    (void)unused;
    BT_NEED_PG();
    assert_non_null(b);
    bt_pg_admin_exec("CREATE TABLE sqlh_m (off bigint PRIMARY KEY, doc jsonb NOT NULL); "
                     "CREATE TABLE sqlh_m_stmts (n int); INSERT INTO sqlh_m_stmts VALUES (0); "
                     "CREATE FUNCTION sqlh_m_count() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN UPDATE sqlh_m_stmts SET n = n + 1; RETURN NULL; END $$; "
                     "CREATE TRIGGER sqlh_m_t AFTER INSERT ON sqlh_m "
                     "FOR EACH STATEMENT EXECUTE FUNCTION sqlh_m_count()");
    st = pg_open_handler("INSERT INTO sqlh_m (off, doc) VALUES (:offset, :value::jsonb) "
                         "ON CONFLICT (off) DO NOTHING");
    bt_batch_fill(b, 250, "orders", 100);
    bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
    check_pg_poison(b, NULL, 0);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_m"), 250);
    assert_int_equal(bt_pg_admin_long("SELECT n FROM sqlh_m_stmts"), 7);
    bt_batch_free(b);

    /* Poison at 150, and 20 duplicates of earlier offsets of the batch. */
    bt_pg_admin_exec("TRUNCATE sqlh_m");
    bt_batch_fill(b, 250, "orders", 100);
    for (size_t i = 0; i < b->n; i++)
        b->m[i].offset = 1000 + (int64_t)(i < 230 ? i : i - 230);
    bt_batch_set_value(b, 150, "{not json");
    bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
    check_pg_poison(b, bad, 1);
    assert_non_null(strstr(b->r[150].error, "SQLSTATE 22P02"));
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_m"), 229);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_m WHERE off = 1150"), 0);
    /* The first of each duplicated offset won (value n = its index). */
    assert_int_equal(bt_pg_admin_long("SELECT (doc->>'n')::int FROM sqlh_m WHERE off = 1010"), 10);
    bl_handler_postgres.destroy(st);
    bt_batch_free(b);
    free(b);
}

static void test_pg_bytea(void **unused)
{
    static const unsigned char binary[] = {0x00, 0xff, 0x41, 0x0a};
    bt_batch_t b;
    void *st;
    char *hex;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE sqlh_b");
    st = pg_open_handler("INSERT INTO sqlh_b VALUES (:offset, :value, :key::bytea)");
    bt_batch_fill(&b, 1, "orders", 100);
    b.m[0].value = binary;
    b.m[0].value_len = sizeof(binary);
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);
    hex = bt_pg_admin_text("SELECT encode(raw, 'hex') || '/' || convert_from(v2, 'UTF8') "
                           "FROM sqlh_b");
    assert_string_equal(hex, "00ff410a/k0");
    free(hex);
    bl_handler_postgres.destroy(st);
    bt_batch_free(&b);
}

/* The server ends the session (as at a restart): UNAVAILABLE (no verdict
 * on the messages), then reconnect. */
static void test_pg_reconnect(void **unused)
{
    bt_batch_t b;
    void *st;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE sqlh_p");
    st = pg_open_handler("INSERT INTO sqlh_p (off, doc) VALUES (:offset, :value::jsonb)");
    bt_batch_fill(&b, 4, "orders", 100);

    bt_pg_kill_sessions();
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_UNAVAILABLE);
    assert_non_null(b.r[0].error);
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);

    bt_pg_kill_sessions();
    bl_handler_postgres.handle_batch(st, b.mp + 1, b.rp + 1, 3, b.out + 1);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_UNAVAILABLE);
    bl_handler_postgres.handle_batch(st, b.mp + 1, b.rp + 1, 3, b.out + 1);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM sqlh_p"), 4);
    bl_handler_postgres.destroy(st);
    bt_batch_free(&b);
}

static void test_pg_init_errors(void **unused)
{
    char err[512];
    void *st = NULL;
    const char *syntax[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql",
                            "INSERT INTO sqlh_p VALUES (:offset,, :value)", NULL};
    const char *no_table[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql",
                              "INSERT INTO nope VALUES (:value)", NULL};
    const char *bad_dsn[] = {"handler.postgres.dsn", "hots=x", "handler.postgres.sql",
                             "SELECT :value", NULL};
    const char *down[] = {"handler.postgres.dsn",
                          "host=127.0.0.1 port=1 dbname=x user=u password=s3cr3t-pw",
                          "handler.postgres.sql", "SELECT :value",
                          "startup.timeout.ms", "1200", NULL};
    int64_t t0;

    (void)unused;
    /* Needs no server. */
    assert_int_equal(bt_handler_init(&bl_handler_postgres, bad_dsn, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.postgres.dsn: invalid connection option"));
    t0 = bl_now_ms();
    assert_int_equal(bt_handler_init(&bl_handler_postgres, down, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_UNREACHABLE);
    assert_in_range(bl_now_ms() - t0, 1000, 4000);
    assert_non_null(strstr(err, "handler.postgres.dsn: cannot connect within 1200 ms"));
    assert_null(strstr(err, "s3cr3t"));
    assert_null(strchr(err, '\n'));

    BT_NEED_PG();
    assert_int_equal(bt_handler_init(&bl_handler_postgres, syntax, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.postgres.sql: syntax error"));
    assert_int_equal(bt_handler_init(&bl_handler_postgres, no_table, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.postgres.sql: relation \"nope\" does not exist"));
    assert_null(st);
}

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_sqlite_rows),
        cmocka_unit_test(test_sqlite_batch_poison),
        cmocka_unit_test(test_sqlite_batch_poison_rollback),
        cmocka_unit_test(test_sqlite_busy),
        cmocka_unit_test(test_sqlite_init_errors),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_pg_rows),
        cmocka_unit_test(test_pg_batch_poison),
        cmocka_unit_test(test_pg_batch_multirow),
        cmocka_unit_test(test_pg_bytea),
        cmocka_unit_test(test_pg_reconnect),
        cmocka_unit_test(test_pg_init_errors),
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);

    failed += cmocka_run_group_tests_name("postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
