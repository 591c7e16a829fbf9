/* test_sql_handlers.c - drives the sqlite and postgres handlers directly with hand-built messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "handlers/handlers.h"
#include "message.h"

#include <ftw.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXMSG 256

/* A batch of hand-built messages and their results. */
typedef struct batch {
    struct ballast_message_s m[MAXMSG];
    struct ballast_result_s r[MAXMSG];
    const ballast_message_t *mp[MAXMSG];
    ballast_result_t *rp[MAXMSG];
    ballast_outcome_t out[MAXMSG];
    char keys[MAXMSG][32], values[MAXMSG][64];
    size_t n;
} batch_t;

/* Message i: key "k<i>", value {"n":<i>}, header x-trace-id "t<i>". */
static void batch_fill(batch_t *b, size_t n, const char *topic)
{
    memset(b, 0, sizeof(*b));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        struct ballast_message_s *m = &b->m[i];
        snprintf(b->keys[i], sizeof(b->keys[i]), "k%zu", i);
        snprintf(b->values[i], sizeof(b->values[i]), "{\"n\": %zu}", i);
        m->topic = topic;
        m->partition = 2;
        m->offset = 100 + (int64_t)i;
        m->timestamp = 1700000000000LL + (int64_t)i;
        m->key = b->keys[i];
        m->key_len = strlen(b->keys[i]);
        m->value = b->values[i];
        m->value_len = strlen(b->values[i]);
        m->hdrs = rd_kafka_headers_new(2);
        m->hdrs_loaded = true;
        m->attempt = 1;
        {
            char trace[32];
            snprintf(trace, sizeof(trace), "t%zu", i);
            rd_kafka_header_add(m->hdrs, "x-trace-id", -1, trace, (ssize_t)strlen(trace));
        }
        b->mp[i] = m;
        b->rp[i] = &b->r[i];
    }
}

static void batch_set_value(batch_t *b, size_t i, const char *v)
{
    b->m[i].value = v;
    b->m[i].value_len = v ? strlen(v) : 0;
}

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->m[i].hdrs)
            rd_kafka_headers_destroy(b->m[i].hdrs);
        bl_result_reset(&b->r[i]);
    }
}

static ballast_conf_t *conf_new(const char *const *kv)
{
    ballast_conf_t *conf = ballast_conf_new();

    assert_non_null(conf);
    for (; kv[0]; kv += 2) {
        ballast_error_t *err = ballast_conf_set(conf, kv[0], kv[1]);
        if (err)
            fail_msg("conf %s: %s", kv[0], ballast_error_message(err));
    }
    return conf;
}

/* Runs a handler's init; returns its code, state in *statep. */
static int handler_init(const ballast_handler_t *h, const char *const *kv,
                        void **statep, char *err, size_t errsize)
{
    ballast_conf_t *conf = conf_new(kv);
    ballast_handler_params_t p = {conf, 0, 1, NULL};
    int rc;

    err[0] = '\0';
    rc = h->init(statep, &p, err, errsize);
    ballast_conf_destroy(conf);
    return rc;
}

/* ======================================================================= */
/* SQLite                                                                  */
/* ======================================================================= */

static char sqlite_dir[256];

static void sqlite_path(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", sqlite_dir, name);
}

static void sqlite_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sqlite: %s: %s", sql, msg);
    sqlite3_close(db);
}

static int64_t sqlite_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -999;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("sqlite: %s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void *sqlite_open_handler(const char *path, const char *sql)
{
    const char *kv[] = {"handler.sqlite.path", path, "handler.sqlite.sql", sql, NULL};
    char err[512];
    void *state = NULL;

    if (handler_init(&bl_handler_sqlite, kv, &state, err, sizeof(err)))
        fail_msg("sqlite init: %s", err);
    return state;
}

static void test_sqlite_rows(void **unused)
{
    char path[300];
    batch_t b;
    void *st;
    static const unsigned char binary[] = {0xff, 0x00, 0xfe};

    (void)unused;
    sqlite_path("rows.db", path, sizeof(path));
    sqlite_exec(path, "CREATE TABLE ev (topic TEXT, part INTEGER, off INTEGER, "
                      "k, v, ts INTEGER, trace TEXT)");
    st = sqlite_open_handler(
        path, "INSERT INTO ev VALUES (:topic, :partition, :offset, :key, :value, "
              ":timestamp, :header.x-trace-id); -- one row per message");
    batch_fill(&b, 4, "orders");
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

    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM ev"), 4);
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM ev WHERE topic='orders' "
                                      "AND part=2 AND off BETWEEN 100 AND 103"),
                     4);
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM ev WHERE k IS NULL"), 1);
    assert_int_equal(sqlite_int(path, "SELECT off FROM ev WHERE k IS NULL"), 101);
    assert_int_equal(sqlite_int(path, "SELECT off FROM ev WHERE trace IS NULL"), 102);
    assert_int_equal(sqlite_int(path, "SELECT off FROM ev WHERE ts IS NULL"), 102);
    assert_int_equal(sqlite_int(path, "SELECT ts FROM ev WHERE off = 100"),
                     1700000000000LL);
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM ev WHERE trace='t3' "
                                      "AND typeof(v)='blob' AND v = x'ff00fe'"),
                     1);
    assert_int_equal(sqlite_int(path, "SELECT json_extract(v, '$.n') FROM ev "
                                      "WHERE off = 100 AND typeof(v)='text'"),
                     0);
    assert_int_equal(sqlite_int(path, "SELECT typeof(part) = 'integer' FROM ev LIMIT 1"), 1);
    batch_free(&b);
}

/* One poison message in a batch: exactly it fails, every other row lands
 * once. @p table_sql decides how SQLite reacts (statement abort, or the
 * whole transaction rolled back, which takes the one-by-one path). */
static void sqlite_poison(const char *file, const char *table_sql)
{
    char path[300];
    batch_t b;
    void *st;

    sqlite_path(file, path, sizeof(path));
    sqlite_exec(path, table_sql);
    st = sqlite_open_handler(path, "INSERT INTO p (off, v) VALUES (:offset, :value)");
    batch_fill(&b, 10, "orders");
    batch_set_value(&b, 4, "{not json");
    batch_set_value(&b, 7, NULL);
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
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM p"), 8);
    assert_int_equal(sqlite_int(path, "SELECT count(DISTINCT off) FROM p"), 8);
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM p WHERE off IN (104, 107)"), 0);

    /* A clean batch afterwards commits normally. */
    batch_free(&b);
    batch_fill(&b, 3, "orders");
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 200 + (int64_t)i;
    bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM p"), 11);
    bl_handler_sqlite.destroy(st);
    batch_free(&b);
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
    batch_t b;
    void *st;

    (void)unused;
    sqlite_path("busy.db", path, sizeof(path));
    sqlite_exec(path, "CREATE TABLE t (v)");
    st = sqlite_open_handler(path, "INSERT INTO t VALUES (:value)");
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    batch_fill(&b, 3, "orders");
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
    assert_int_equal(sqlite_int(path, "SELECT count(*) FROM t"), 3);
    bl_handler_sqlite.destroy(st);
    batch_free(&b);
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
    sqlite_path("init.db", path, sizeof(path));
    assert_int_equal(handler_init(&bl_handler_sqlite, bad_name, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_null(st);
    assert_non_null(strstr(err, "handler.sqlite.sql: unknown placeholder \":valu\""));
    assert_int_equal(handler_init(&bl_handler_sqlite, no_table, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.sqlite.sql: no such table: nope"));
    assert_int_equal(handler_init(&bl_handler_sqlite, two, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "one statement per message"));
    assert_int_equal(handler_init(&bl_handler_sqlite, no_dir, &st, err, sizeof(err)),
                     BALLAST_ERR_UNREACHABLE);
    assert_non_null(strstr(err, "handler.sqlite.path: cannot open /nonexistent-dir/x.db: "));
}

static int sqlite_setup(void **unused)
{
    (void)unused;
    snprintf(sqlite_dir, sizeof(sqlite_dir), "%s/ballast-sqlh-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(sqlite_dir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int sqlite_teardown(void **unused)
{
    (void)unused;
    return nftw(sqlite_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ======================================================================= */
/* PostgreSQL                                                              */
/* ======================================================================= */

static char pg_dsn[1024];  /* BALLAST_TEST_PG + our application_name */
static char pg_app[64];    /* identifies the handler's sessions, and names
                              the schema of this run's tables, so that
                              concurrent runs on one database do not clash */
static PGconn *pg_admin;   /* the test's own connection */

static void pg_exec(const char *sql)
{
    PGresult *res = PQexec(pg_admin, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("postgres: %s: %s", sql, PQerrorMessage(pg_admin));
    PQclear(res);
}

static char *pg_text(const char *sql)
{
    PGresult *res = PQexec(pg_admin, sql);
    char *v = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("postgres: %s: %s", sql, PQerrorMessage(pg_admin));
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static long pg_long(const char *sql)
{
    char *v = pg_text(sql);
    long n = v ? strtol(v, NULL, 10) : -999;

    free(v);
    return n;
}

static void *pg_open_handler(const char *sql)
{
    const char *kv[] = {"handler.postgres.dsn", pg_dsn, "handler.postgres.sql", sql,
                        "startup.timeout.ms", "5000", NULL};
    char err[512];
    void *state = NULL;

    if (handler_init(&bl_handler_postgres, kv, &state, err, sizeof(err)))
        fail_msg("postgres init: %s", err);
    return state;
}

static int pg_setup(void **unused)
{
    const char *base = getenv("BALLAST_TEST_PG");

    (void)unused;
    if (!base || !*base)
        return 0;
    snprintf(pg_app, sizeof(pg_app), "ballast_sqlh_%ld", (long)getpid());
    if (!strncmp(base, "postgres", 8))
        snprintf(pg_dsn, sizeof(pg_dsn),
                 "%s%capplication_name=%s&options=-csearch_path%%3D%s", base,
                 strchr(base, '?') ? '&' : '?', pg_app, pg_app);
    else
        snprintf(pg_dsn, sizeof(pg_dsn),
                 "%s application_name=%s options='-csearch_path=%s'", base,
                 pg_app, pg_app);
    pg_admin = PQconnectdb(base);
    if (PQstatus(pg_admin) != CONNECTION_OK) {
        fprintf(stderr, "BALLAST_TEST_PG: %s", PQerrorMessage(pg_admin));
        return -1;
    }
    {
        char sql[256];
        pg_exec("SET client_min_messages = warning");
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; "
                                   "CREATE SCHEMA %s; SET search_path = %s",
                 pg_app, pg_app, pg_app);
        pg_exec(sql);
    }
    pg_exec("CREATE TABLE sqlh_ev (topic text, part int, off bigint PRIMARY KEY, "
            "k text, doc jsonb, ts bigint, trace text)");
    pg_exec("CREATE TABLE sqlh_p (off bigint PRIMARY KEY, doc jsonb NOT NULL, "
            "CHECK ((doc->>'n')::int <> 6))");
    pg_exec("CREATE TABLE sqlh_b (off bigint PRIMARY KEY, raw bytea, v2 bytea)");
    return 0;
}

static int pg_teardown(void **unused)
{
    (void)unused;
    if (pg_admin) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", pg_app);
        pg_exec(sql);
        PQfinish(pg_admin);
    }
    return 0;
}

#define NEED_PG()                                                                 \
    do {                                                                          \
        if (!pg_admin)                                                            \
            fail_msg("BALLAST_TEST_PG unset or unreachable: run via make test");  \
    } while (0)

static void test_pg_rows(void **unused)
{
    batch_t b;
    void *st;

    (void)unused;
    NEED_PG();
    pg_exec("TRUNCATE sqlh_ev");
    st = pg_open_handler("INSERT INTO sqlh_ev VALUES (:topic, :partition, :offset, "
                         ":key, :value::jsonb, :timestamp, :header.x-trace-id);");
    batch_fill(&b, 3, "orders");
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
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_ev WHERE topic = 'orders' "
                             "AND part = 2"),
                     3);
    assert_int_equal(pg_long("SELECT off FROM sqlh_ev WHERE k IS NULL"), 101);
    assert_int_equal(pg_long("SELECT off FROM sqlh_ev WHERE trace IS NULL"), 102);
    assert_int_equal(pg_long("SELECT off FROM sqlh_ev WHERE ts IS NULL"), 102);
    assert_int_equal(pg_long("SELECT (doc->>'n')::int FROM sqlh_ev WHERE off = 100 "
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
    batch_free(&b);
}

static void check_pg_poison(const batch_t *b, const size_t *bad, size_t nbad)
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
    batch_t b;
    void *st;
    static const size_t one[] = {3};
    static const size_t many[] = {1, 3, 6, 8, 9};

    (void)unused;
    NEED_PG();
    pg_exec("TRUNCATE sqlh_p");
    st = pg_open_handler("INSERT INTO sqlh_p (off, doc) VALUES (:offset, :value::jsonb)");

    /* One poison message (invalid JSON for the ::jsonb cast). */
    batch_fill(&b, 10, "orders");
    batch_set_value(&b, 3, "{not json");
    batch_set_value(&b, 6, "{\"n\": 5}"); /* n=6 would break the CHECK */
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, one, 1);
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 22P02"));
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_p"), 9);
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_p WHERE off = 103"), 0);
    batch_free(&b);

    /* Many kinds of poison (more than the pipeline rounds): invalid JSON,
     * NULL into NOT NULL, a CHECK violation, not UTF-8, a duplicate key. */
    pg_exec("TRUNCATE sqlh_p");
    batch_fill(&b, 12, "orders");
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 200 + (int64_t)i;
    batch_set_value(&b, 1, "[1,");
    batch_set_value(&b, 3, NULL);
    batch_set_value(&b, 8, "\xc3\x28");
    b.m[9].offset = b.m[2].offset; /* same key as an earlier message */
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, many, sizeof(many) / sizeof(many[0]));
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 23502"));
    assert_non_null(strstr(b.r[6].error, "SQLSTATE 23514"));
    assert_non_null(strstr(b.r[8].error, "not valid UTF-8"));
    assert_non_null(strstr(b.r[9].error, "SQLSTATE 23505"));
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_p"), 7);
    assert_int_equal(pg_long("SELECT count(DISTINCT off) FROM sqlh_p"), 7);
    assert_int_equal(pg_long("SELECT (doc->>'n')::int FROM sqlh_p WHERE off = 202"), 2);
    batch_free(&b);

    /* A clean batch. */
    batch_fill(&b, 5, "orders");
    for (size_t i = 0; i < b.n; i++)
        b.m[i].offset = 300 + (int64_t)i;
    bl_handler_postgres.handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_pg_poison(&b, NULL, 0);
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_p WHERE off >= 300"), 5);
    bl_handler_postgres.destroy(st);
    batch_free(&b);
}

/* A batch runs as statements of many rows when the statement is a plain
 * INSERT ... VALUES: a statement-level trigger counts them (250 messages:
 * two of 100 rows, five of 10). A poison message in a many-row statement is
 * still pinned on that message alone; ON CONFLICT DO NOTHING skips a
 * duplicate of an earlier message of the same batch, as one by one would. */
static void test_pg_batch_multirow(void **unused)
{
    static const size_t bad[] = {150};
    batch_t *b = malloc(sizeof(*b));
    void *st;

    (void)unused;
    NEED_PG();
    assert_non_null(b);
    pg_exec("CREATE TABLE sqlh_m (off bigint PRIMARY KEY, doc jsonb NOT NULL); "
            "CREATE TABLE sqlh_m_stmts (n int); INSERT INTO sqlh_m_stmts VALUES (0); "
            "CREATE FUNCTION sqlh_m_count() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN UPDATE sqlh_m_stmts SET n = n + 1; RETURN NULL; END $$; "
            "CREATE TRIGGER sqlh_m_t AFTER INSERT ON sqlh_m "
            "FOR EACH STATEMENT EXECUTE FUNCTION sqlh_m_count()");
    st = pg_open_handler("INSERT INTO sqlh_m (off, doc) VALUES (:offset, :value::jsonb) "
                         "ON CONFLICT (off) DO NOTHING");
    batch_fill(b, 250, "orders");
    bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
    check_pg_poison(b, NULL, 0);
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_m"), 250);
    assert_int_equal(pg_long("SELECT n FROM sqlh_m_stmts"), 7);
    batch_free(b);

    /* Poison at 150, and 20 duplicates of earlier offsets of the batch. */
    pg_exec("TRUNCATE sqlh_m");
    batch_fill(b, 250, "orders");
    for (size_t i = 0; i < b->n; i++)
        b->m[i].offset = 1000 + (int64_t)(i < 230 ? i : i - 230);
    batch_set_value(b, 150, "{not json");
    bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
    check_pg_poison(b, bad, 1);
    assert_non_null(strstr(b->r[150].error, "SQLSTATE 22P02"));
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_m"), 229);
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_m WHERE off = 1150"), 0);
    /* The first of each duplicated offset won (value n = its index). */
    assert_int_equal(pg_long("SELECT (doc->>'n')::int FROM sqlh_m WHERE off = 1010"), 10);
    bl_handler_postgres.destroy(st);
    batch_free(b);
    free(b);
}

static void test_pg_bytea(void **unused)
{
    static const unsigned char binary[] = {0x00, 0xff, 0x41, 0x0a};
    batch_t b;
    void *st;
    char *hex;

    (void)unused;
    NEED_PG();
    pg_exec("TRUNCATE sqlh_b");
    st = pg_open_handler("INSERT INTO sqlh_b VALUES (:offset, :value, :key::bytea)");
    batch_fill(&b, 1, "orders");
    b.m[0].value = binary;
    b.m[0].value_len = sizeof(binary);
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);
    hex = pg_text("SELECT encode(raw, 'hex') || '/' || convert_from(v2, 'UTF8') FROM sqlh_b");
    assert_string_equal(hex, "00ff410a/k0");
    free(hex);
    bl_handler_postgres.destroy(st);
    batch_free(&b);
}

/* The server ends the session (as at a restart): RETRY, then reconnect. */
static void test_pg_reconnect(void **unused)
{
    char sql[256];
    batch_t b;
    void *st;

    (void)unused;
    NEED_PG();
    pg_exec("TRUNCATE sqlh_p");
    st = pg_open_handler("INSERT INTO sqlh_p (off, doc) VALUES (:offset, :value::jsonb)");
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = '%s'",
             pg_app);
    batch_fill(&b, 4, "orders");

    pg_exec(sql);
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_RETRY);
    assert_non_null(b.r[0].error);
    assert_int_equal(bl_handler_postgres.handle(st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);

    pg_exec(sql);
    bl_handler_postgres.handle_batch(st, b.mp + 1, b.rp + 1, 3, b.out + 1);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_RETRY);
    bl_handler_postgres.handle_batch(st, b.mp + 1, b.rp + 1, 3, b.out + 1);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
    assert_int_equal(pg_long("SELECT count(*) FROM sqlh_p"), 4);
    bl_handler_postgres.destroy(st);
    batch_free(&b);
}

static void test_pg_init_errors(void **unused)
{
    char err[512];
    void *st = NULL;
    const char *syntax[] = {"handler.postgres.dsn", pg_dsn, "handler.postgres.sql",
                            "INSERT INTO sqlh_p VALUES (:offset,, :value)", NULL};
    const char *no_table[] = {"handler.postgres.dsn", pg_dsn, "handler.postgres.sql",
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
    assert_int_equal(handler_init(&bl_handler_postgres, bad_dsn, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.postgres.dsn: invalid connection option"));
    t0 = bl_now_ms();
    assert_int_equal(handler_init(&bl_handler_postgres, down, &st, err, sizeof(err)),
                     BALLAST_ERR_UNREACHABLE);
    assert_in_range(bl_now_ms() - t0, 1000, 4000);
    assert_non_null(strstr(err, "handler.postgres.dsn: cannot connect within 1200 ms"));
    assert_null(strstr(err, "s3cr3t"));
    assert_null(strchr(err, '\n'));

    NEED_PG();
    assert_int_equal(handler_init(&bl_handler_postgres, syntax, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_non_null(strstr(err, "handler.postgres.sql: syntax error"));
    assert_int_equal(handler_init(&bl_handler_postgres, no_table, &st, err, sizeof(err)),
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
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, sqlite_setup,
                                             sqlite_teardown);

    failed += cmocka_run_group_tests_name("postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
