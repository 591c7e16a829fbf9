/* test_sql_txn.c - exactly-once on the database handlers: the consumer's transaction driven by hand (begin, batch, commit/rollback, load_offset). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "handlers/handlers.h"
#include "message.h"
#include "sql_fixture.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GROUP "g-txn"

/* Asserts the outcomes: FAIL exactly for @p bad, OK for the rest. */
static void check_outcomes(const bt_batch_t *b, const size_t *bad, size_t nbad)
{
    for (size_t i = 0; i < b->n; i++) {
        bool is_bad = false;
        for (size_t j = 0; j < nbad; j++)
            is_bad |= bad[j] == i;
        if (b->out[i] != (is_bad ? BALLAST_OUTCOME_FAIL : BALLAST_OUTCOME_OK))
            fail_msg("message %zu: outcome %d, expected %d: %s", i, b->out[i],
                     is_bad ? BALLAST_OUTCOME_FAIL : BALLAST_OUTCOME_OK,
                     b->r[i].error ? b->r[i].error : "");
        if (is_bad) {
            assert_non_null(b->r[i].error);
            assert_null(strchr(b->r[i].error, '\n'));
        }
    }
}

static void check_all_retry(const bt_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->out[i] != BALLAST_OUTCOME_RETRY)
            fail_msg("message %zu: outcome %d, expected RETRY", i, b->out[i]);
        assert_non_null(b->r[i].error);
    }
}

static void *open_handler(const ballast_handler_t *h, const char *const *kv, int worker)
{
    char err[512];
    void *state = NULL;

    if (bt_handler_init(h, kv, worker, &state, err, sizeof(err)))
        fail_msg("%s init: %s", h->name, err);
    return state;
}

/* The stored next offset of orders/2 for GROUP via @p loader, or -1 if none. */
static int64_t stored_offset(const bl_dbtxn_ops_t *ops, void *loader)
{
    char err[512] = "";
    int64_t next = -12345;
    int rc = ops->load_offset(loader, GROUP, "orders", 2, &next, err, sizeof(err));

    if (rc < 0)
        fail_msg("load_offset: %s", err);
    return rc ? next : -1;
}

/* Commits orders/2 and audit/0, each as the range [first, next). */
static void commit_ok(const bl_dbtxn_ops_t *ops, void *st, int64_t first, int64_t next)
{
    bl_dbtxn_offset_t off[2] = {{"orders", 2, first, next}, {"audit", 0, first, next}};
    char err[512] = "";

    if (ops->commit(st, GROUP, off, 2, err, sizeof(err)) != BALLAST_OUTCOME_OK)
        fail_msg("commit: %s", err);
}

static void begin_ok(const bl_dbtxn_ops_t *ops, void *st)
{
    char err[512] = "";

    if (ops->begin(st, err, sizeof(err)) != BALLAST_OUTCOME_OK)
        fail_msg("begin: %s", err);
}

/* A zombie's commit of orders/2 over [first, next): refused, and named. */
static void commit_stale(const bl_dbtxn_ops_t *ops, void *st, int64_t first, int64_t next)
{
    bl_dbtxn_offset_t off = {"orders", 2, first, next};
    char err[512] = "", want[128];

    assert_int_equal(ops->commit(st, GROUP, &off, 1, err, sizeof(err)),
                     BALLAST_OUTCOME_FAIL);
    snprintf(want, sizeof(want),
             "orders [2] was committed past offset %lld by another member",
             (long long)first);
    if (!strstr(err, want))
        fail_msg("commit error \"%s\", expected \"%s\"", err, want);
}

/* Fencing, the same for both dialects: two handler states of the same
 * database play the member that took a partition over and the zombie. */
typedef struct fence_case {
    const ballast_handler_t *h;
    const bl_dbtxn_ops_t *ops;
    void *winner, *zombie, *loader;
    long (*rows)(const struct fence_case *fc); /* rows in the output table */
    const char *path; /* sqlite: the file */
} fence_case_t;

/* Opens a transaction on @p st and handles messages [first, first+n). */
static void handle_range(const ballast_handler_t *h, const bl_dbtxn_ops_t *ops, void *st,
                         size_t n, int64_t first)
{
    bt_batch_t b;

    bt_batch_fill(&b, n, "orders", first);
    begin_ok(ops, st);
    h->handle_batch(st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    bt_batch_free(&b);
}

/* One batch of @p who over [first, next): committed (@p ok) or refused as
 * stale; then the output table holds @p rows and the stored offset is
 * @p stored. */
static void fence_step(const fence_case_t *fc, void *who, int64_t first, int64_t next,
                       bool ok, long rows, int64_t stored)
{
    handle_range(fc->h, fc->ops, who, (size_t)(next - first), first);
    if (ok)
        commit_ok(fc->ops, who, first, next);
    else
        commit_stale(fc->ops, who, first, next);
    assert_int_equal(fc->rows(fc), rows);
    assert_int_equal(stored_offset(fc->ops, fc->loader), stored);
}

static void fence_scenario(const fence_case_t *fc)
{
    /* The member that took the partition over commits [0, 10). */
    fence_step(fc, fc->winner, 0, 10, true, 10, 10);
    /* The zombie's batch over the same range: nothing of it lands. */
    fence_step(fc, fc->zombie, 0, 10, false, 10, 10);
    /* Overlapping only the tail of what was committed: the same. */
    fence_step(fc, fc->zombie, 5, 12, false, 10, 10);
    /* After a gap (compaction, transaction markers): [12, 15) follows 10;
     * and the zombie's session is fine after its refusal. */
    fence_step(fc, fc->zombie, 12, 15, true, 13, 15);
    /* Exactly where the last batch ended: the ordinary case. */
    fence_step(fc, fc->winner, 15, 17, true, 15, 17);
}

static void test_ops_lookup(void **unused)
{
    (void)unused;
    assert_non_null(bl_handler_dbtxn_ops(&bl_handler_sqlite));
    assert_non_null(bl_handler_dbtxn_ops(&bl_handler_postgres));
    assert_ptr_not_equal(bl_handler_dbtxn_ops(&bl_handler_sqlite),
                         bl_handler_dbtxn_ops(&bl_handler_postgres));
    assert_null(bl_handler_dbtxn_ops(&bl_handler_exec));
    assert_null(bl_handler_dbtxn_ops(&bl_handler_plugin));
    assert_null(bl_handler_dbtxn_ops(&bl_handler_forward));
    assert_null(bl_handler_dbtxn_ops(NULL));
}

/* ======================================================================= */
/* SQLite                                                                  */
/* ======================================================================= */

typedef struct sq {
    char path[300];
    const bl_dbtxn_ops_t *ops;
    void *st, *loader;
} sq_t;

static void sq_open(sq_t *s, const char *file, const char *table_sql, const char *sql)
{
    const char *kv[] = {"handler.sqlite.path", s->path, "handler.sqlite.sql", sql,
                        "semantics", "exactly-once", NULL};

    bt_sqlite_path(file, s->path, sizeof(s->path));
    bt_sqlite_exec(s->path, table_sql);
    s->ops = bl_handler_dbtxn_ops(&bl_handler_sqlite);
    assert_non_null(s->ops);
    s->st = open_handler(&bl_handler_sqlite, kv, 0);
    s->loader = open_handler(&bl_handler_sqlite, kv, -1);
}

static void sq_close(sq_t *s)
{
    bl_handler_sqlite.destroy(s->st);
    bl_handler_sqlite.destroy(s->loader);
}

static const char sq_table[] = "CREATE TABLE p (off INTEGER PRIMARY KEY, "
                               "v TEXT NOT NULL CHECK (json_valid(v)))";
static const char sq_insert[] = "INSERT INTO p (off, v) VALUES (:offset, :value)";

/* Poison in a batch: only the OK rows and the offsets commit, atomically. */
static void test_sqlite_txn_poison(void **unused)
{
    static const size_t bad[] = {4, 7};
    sq_t s;
    bt_batch_t b;

    (void)unused;
    sq_open(&s, "poison.db", sq_table, sq_insert);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM ballast_offsets"), 0);
    assert_int_equal(stored_offset(s.ops, s.loader), -1);

    bt_batch_fill(&b, 10, "orders", 100);
    bt_batch_set_value(&b, 4, "{not json");
    bt_batch_set_value(&b, 7, NULL);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, bad, 2);
    assert_non_null(strstr(b.r[4].error, "sqlite: "));
    /* Nothing is visible before COMMIT (WAL: readers see the last commit). */
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 0);
    assert_int_equal(stored_offset(s.ops, s.loader), -1);
    commit_ok(s.ops, s.st, 100, 110);

    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 8);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p WHERE off IN (104, 107)"), 0);
    assert_int_equal(stored_offset(s.ops, s.loader), 110);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT next_offset FROM ballast_offsets WHERE "
                                            "group_id = 'g-txn' AND topic = 'audit' AND "
                                            "partition = 0"),
                     110);

    /* The next batch moves the offset (an update, not a second row). */
    bt_batch_free(&b);
    bt_batch_fill(&b, 3, "orders", 110);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(s.ops, s.st, 110, 113);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 11);
    assert_int_equal(stored_offset(s.ops, s.loader), 113);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM ballast_offsets"), 2);

    /* Outside a transaction the handler still works on its own. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 2, "orders", 500);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 13);
    bt_batch_free(&b);
    sq_close(&s);
}

static void test_sqlite_txn_rollback(void **unused)
{
    sq_t s;
    bt_batch_t b;

    (void)unused;
    sq_open(&s, "rollback.db", sq_table, sq_insert);
    bt_batch_fill(&b, 5, "orders", 0);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    s.ops->rollback(s.st);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 0);
    assert_int_equal(stored_offset(s.ops, s.loader), -1);
    s.ops->rollback(s.st); /* twice: harmless */

    /* A commit without begin refuses; the redo then lands once. */
    {
        char err[256] = "";
        assert_int_equal(s.ops->commit(s.st, GROUP, NULL, 0, err, sizeof(err)),
                         BALLAST_OUTCOME_RETRY);
        assert_non_null(strstr(err, "without an open transaction"));
    }
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(s.ops, s.st, 0, 5);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 5);
    assert_int_equal(stored_offset(s.ops, s.loader), 5);

    /* begin while a transaction is open gives the old one up. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 2, "orders", 5);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    begin_ok(s.ops, s.st);
    commit_ok(s.ops, s.st, 5, 7);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 5);
    bt_batch_free(&b);
    sq_close(&s);
}

/* A statement that rolls back the whole transaction (ON CONFLICT
 * ROLLBACK): a batch starts again inside the handler; messages handled one
 * at a time make the consumer redo the batch, which then succeeds. */
static void test_sqlite_txn_rollback_clause(void **unused)
{
    static const size_t bad[] = {1, 3};
    sq_t s;
    bt_batch_t b;
    char err[512] = "";

    (void)unused;
    sq_open(&s, "onconflict.db",
            "CREATE TABLE p (off INTEGER PRIMARY KEY, "
            "v TEXT NOT NULL ON CONFLICT ROLLBACK CHECK (json_valid(v)))",
            sq_insert);
    bt_batch_fill(&b, 6, "orders", 0);
    bt_batch_set_value(&b, 1, NULL);
    bt_batch_set_value(&b, 3, NULL);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, bad, 2);
    assert_non_null(strstr(b.r[1].error, "NOT NULL"));
    commit_ok(s.ops, s.st, 0, 6);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 4);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT sum(off) FROM p"), 0 + 2 + 4 + 5);

    /* One at a time: the first message's effects go with the killer. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 3, "orders", 10);
    bt_batch_set_value(&b, 1, NULL);
    begin_ok(s.ops, s.st);
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[1], b.rp[1]),
                     BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(b.r[1].error, "rolled back the whole transaction"));
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[2], b.rp[2]),
                     BALLAST_OUTCOME_RETRY);
    assert_int_equal(s.ops->commit(s.st, GROUP, NULL, 0, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    s.ops->rollback(s.st);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 4);
    /* The redo: the killer fails without running, the rest commits. */
    begin_ok(s.ops, s.st);
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[1], b.rp[1]), BALLAST_OUTCOME_FAIL);
    assert_non_null(strstr(b.r[1].error, "NOT NULL"));
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[2], b.rp[2]), BALLAST_OUTCOME_OK);
    commit_ok(s.ops, s.st, 10, 13);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p WHERE off >= 10"), 2);
    assert_int_equal(stored_offset(s.ops, s.loader), 13);

    /* The first message of a transaction: nothing else lost, just FAIL. */
    begin_ok(s.ops, s.st);
    b.m[1].offset = 20;
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[1], b.rp[1]), BALLAST_OUTCOME_FAIL);
    b.m[0].offset = 21;
    assert_int_equal(bl_handler_sqlite.handle(s.st, b.mp[0], b.rp[0]), BALLAST_OUTCOME_OK);
    commit_ok(s.ops, s.st, 20, 22);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p WHERE off >= 20"), 1);
    bt_batch_free(&b);
    sq_close(&s);
}

/* COMMIT's side fails (here a trigger on ballast_offsets): RETRY, nothing
 * visible, and a redo succeeds. Another writer's lock: begin is RETRY. */
static void test_sqlite_txn_commit_fails(void **unused)
{
    sq_t s;
    bt_batch_t b;
    sqlite3 *db;
    char err[512] = "";
    bl_dbtxn_offset_t off = {"orders", 2, 0, 999};

    (void)unused;
    sq_open(&s, "commitfail.db", sq_table, sq_insert);
    bt_sqlite_exec(s.path, "CREATE TRIGGER no999 BEFORE INSERT ON ballast_offsets "
                           "WHEN new.next_offset = 999 BEGIN "
                           "SELECT RAISE(ABORT, 'no 999'); END");
    bt_batch_fill(&b, 4, "orders", 0);
    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    assert_int_equal(s.ops->commit(s.st, GROUP, &off, 1, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(err, "no 999"));
    s.ops->rollback(s.st);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 0);
    assert_int_equal(stored_offset(s.ops, s.loader), -1);

    begin_ok(s.ops, s.st);
    bl_handler_sqlite.handle_batch(s.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(s.ops, s.st, 0, 4);
    assert_int_equal(bt_sqlite_long(s.path, "SELECT count(*) FROM p"), 4);

    /* Another writer holds the lock past the busy timeout. */
    assert_int_equal(sqlite3_open(s.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(s.ops->begin(s.st, err, sizeof(err)), BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(err, "locked"));
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    bt_batch_free(&b);
    sq_close(&s);
}

/* A ballast_offsets of another shape (no key to upsert on): a
 * configuration error that names the table. Without exactly-once the
 * table is neither made nor needed, and begin refuses. */
static void test_sqlite_txn_init_errors(void **unused)
{
    char path[300], err[512];
    void *st = NULL;
    const char *eo[] = {"handler.sqlite.path", path, "handler.sqlite.sql", sq_insert,
                        "semantics", "exactly-once", NULL};
    const char *alo[] = {"handler.sqlite.path", path, "handler.sqlite.sql", sq_insert,
                         NULL};
    const bl_dbtxn_ops_t *ops = bl_handler_dbtxn_ops(&bl_handler_sqlite);

    (void)unused;
    bt_sqlite_path("plain.db", path, sizeof(path));
    bt_sqlite_exec(path, sq_table);
    st = open_handler(&bl_handler_sqlite, alo, 0);
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM sqlite_master WHERE "
                                          "name = 'ballast_offsets'"),
                     0);
    assert_int_equal(ops->begin(st, err, sizeof(err)), BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(err, "exactly-once"));
    bl_handler_sqlite.destroy(st);
    st = NULL;

    bt_sqlite_path("badshape.db", path, sizeof(path));
    bt_sqlite_exec(path, sq_table);
    bt_sqlite_exec(path, "CREATE TABLE ballast_offsets (group_id TEXT, topic TEXT, "
                         "partition INTEGER, next_offset BIGINT)");
    assert_int_equal(bt_handler_init(&bl_handler_sqlite, eo, 0, &st, err, sizeof(err)),
                     BALLAST_ERR_CONFIG);
    assert_null(st);
    assert_non_null(strstr(err, "semantics: exactly-once needs the table "
                                "ballast_offsets: "));
}

static long sqlite_fence_rows(const fence_case_t *fc)
{
    return (long)bt_sqlite_long(fc->path, "SELECT count(*) FROM f");
}

/* Fencing: a batch over a range another state committed is refused. The
 * output table has no key, so a duplicate would show. */
static void test_sqlite_txn_fence(void **unused)
{
    static const char table[] = "CREATE TABLE IF NOT EXISTS f (off INTEGER, v TEXT)";
    static const char insert[] = "INSERT INTO f (off, v) VALUES (:offset, :value)";
    sq_t winner, zombie;
    fence_case_t fc;

    (void)unused;
    sq_open(&winner, "fence.db", table, insert);
    sq_open(&zombie, "fence.db", table, insert);
    fc = (fence_case_t){&bl_handler_sqlite, winner.ops, winner.st, zombie.st,
                        winner.loader, sqlite_fence_rows, winner.path};
    fence_scenario(&fc);
    sq_close(&winner);
    sq_close(&zombie);
}

/* ======================================================================= */
/* PostgreSQL                                                              */
/* ======================================================================= */

typedef struct pgh {
    const bl_dbtxn_ops_t *ops;
    void *st, *loader;
} pgh_t;

static void pgh_open(pgh_t *h, const char *sql)
{
    const char *kv[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql", sql,
                        "startup.timeout.ms", "5000", "semantics", "exactly-once",
                        NULL};

    h->ops = bl_handler_dbtxn_ops(&bl_handler_postgres);
    assert_non_null(h->ops);
    h->st = open_handler(&bl_handler_postgres, kv, 0);
    h->loader = open_handler(&bl_handler_postgres, kv, -1);
}

static void pgh_close(pgh_t *h)
{
    bl_handler_postgres.destroy(h->st);
    bl_handler_postgres.destroy(h->loader);
}

static const char pg_insert[] = "INSERT INTO txn_p (off, doc) VALUES (:offset, :value::jsonb)";

static int pg_setup(void **unused)
{
    (void)unused;
    if (bt_pg_schema_setup("ballast_sqltxn"))
        return -1;
    if (!bt_pg_ready())
        return 0; /* BALLAST_TEST_PG unset: each test fails saying so */
    bt_pg_admin_exec("CREATE TABLE txn_p (off bigint PRIMARY KEY, doc jsonb NOT NULL, "
                     "CHECK ((doc->>'n')::int <> 6))");
    bt_pg_admin_exec("CREATE TABLE txn_f (off bigint, doc jsonb)"); /* no key: fencing */
    bt_pg_admin_exec("CREATE TABLE txn_parent (id int PRIMARY KEY)");
    bt_pg_admin_exec("INSERT INTO txn_parent SELECT g FROM generate_series(0, 9) g WHERE g <> 5");
    bt_pg_admin_exec("CREATE TABLE txn_child (off bigint PRIMARY KEY, parent int REFERENCES "
                     "txn_parent DEFERRABLE INITIALLY DEFERRED)");
    bt_pg_admin_exec("CREATE FUNCTION txn_flaky(n int) RETURNS int LANGUAGE plpgsql AS $$ "
                     "BEGIN IF n = 5 AND EXISTS (SELECT FROM txn_parent WHERE id = -1) THEN "
                     "RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END IF; "
                     "RETURN n; END $$");
    return 0;
}

static int pg_teardown(void **unused)
{
    (void)unused;
    bt_pg_schema_teardown();
    return 0;
}

static void test_pg_txn_poison(void **unused)
{
    static const size_t one[] = {3};
    static const size_t many[] = {1, 3, 6, 8, 9, 11};
    pgh_t h;
    bt_batch_t b;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_p");
    pgh_open(&h, pg_insert);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM ballast_offsets"), 0);
    assert_int_equal(stored_offset(h.ops, h.loader), -1);

    /* One poison message: the fast rounds. */
    bt_batch_fill(&b, 10, "orders", 100);
    bt_batch_set_value(&b, 3, "{not json");
    bt_batch_set_value(&b, 6, "{\"n\": 5}");
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, one, 1);
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 22P02"));
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 0); /* not yet */
    commit_ok(h.ops, h.st, 100, 110);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 9);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p WHERE off = 103"), 0);
    assert_int_equal(stored_offset(h.ops, h.loader), 110);
    assert_int_equal(bt_pg_admin_long("SELECT next_offset FROM ballast_offsets WHERE "
                                      "group_id = 'g-txn' AND topic = 'audit' AND partition = 0"),
                     110);
    bt_batch_free(&b);

    /* More poison than fast rounds (the careful rounds): invalid JSON, NULL
     * into NOT NULL, a CHECK violation, not UTF-8, duplicate keys. */
    bt_batch_fill(&b, 12, "orders", 200);
    bt_batch_set_value(&b, 1, "[1,");
    bt_batch_set_value(&b, 3, NULL);
    bt_batch_set_value(&b, 8, "\xc3\x28");
    b.m[9].offset = b.m[2].offset;
    b.m[11].offset = 100; /* committed by the previous batch */
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, many, sizeof(many) / sizeof(many[0]));
    assert_non_null(strstr(b.r[3].error, "SQLSTATE 23502"));
    assert_non_null(strstr(b.r[6].error, "SQLSTATE 23514"));
    assert_non_null(strstr(b.r[8].error, "not valid UTF-8"));
    assert_non_null(strstr(b.r[9].error, "SQLSTATE 23505"));
    assert_non_null(strstr(b.r[11].error, "SQLSTATE 23505"));
    commit_ok(h.ops, h.st, 200, 212);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p WHERE off >= 200"), 6);
    assert_int_equal(bt_pg_admin_long("SELECT (doc->>'n')::int FROM txn_p WHERE off = 202"), 2);
    assert_int_equal(stored_offset(h.ops, h.loader), 212);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM ballast_offsets"), 2);
    bt_batch_free(&b);

    /* Single messages in one transaction; and the handler still works on
     * its own outside one. */
    bt_batch_fill(&b, 3, "orders", 300);
    bt_batch_set_value(&b, 1, "nope");
    begin_ok(h.ops, h.st);
    for (size_t i = 0; i < b.n; i++)
        b.out[i] = bl_handler_postgres.handle(h.st, b.mp[i], b.rp[i]);
    {
        static const size_t second[] = {1};
        check_outcomes(&b, second, 1);
    }
    commit_ok(h.ops, h.st, 300, 303);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p WHERE off >= 300"), 2);
    b.m[0].offset = 400;
    assert_int_equal(bl_handler_postgres.handle(h.st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_OK);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p WHERE off = 400"), 1);
    assert_int_equal(stored_offset(h.ops, h.loader), 303);
    pgh_close(&h);
    bt_batch_free(&b);
}

/* A deferred foreign key that a message breaks: pinned on that message
 * (SET CONSTRAINTS ALL IMMEDIATE), not discovered at COMMIT. */
static void test_pg_txn_deferred(void **unused)
{
    static const size_t bad[] = {5};
    pgh_t h;
    bt_batch_t b;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_child; DELETE FROM ballast_offsets");
    pgh_open(&h, "INSERT INTO txn_child VALUES (:offset, (:value::jsonb->>'n')::int)");
    bt_batch_fill(&b, 8, "orders", 0);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, bad, 1);
    assert_non_null(strstr(b.r[5].error, "SQLSTATE 23503"));
    commit_ok(h.ops, h.st, 0, 8);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_child"), 7);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_child WHERE parent = 5"), 0);

    /* One at a time too. */
    b.m[5].offset = 50;
    begin_ok(h.ops, h.st);
    assert_int_equal(bl_handler_postgres.handle(h.st, b.mp[5], b.rp[5]),
                     BALLAST_OUTCOME_FAIL);
    b.m[4].offset = 40;
    assert_int_equal(bl_handler_postgres.handle(h.st, b.mp[4], b.rp[4]),
                     BALLAST_OUTCOME_OK);
    commit_ok(h.ops, h.st, 8, 9);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_child"), 8);
    pgh_close(&h);
    bt_batch_free(&b);
}

static void test_pg_txn_rollback(void **unused)
{
    pgh_t h;
    bt_batch_t b;
    char err[256] = "";

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_p; DELETE FROM ballast_offsets");
    pgh_open(&h, pg_insert);
    bt_batch_fill(&b, 5, "orders", 0);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    h.ops->rollback(h.st);
    h.ops->rollback(h.st); /* twice: harmless */
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 0);
    assert_int_equal(stored_offset(h.ops, h.loader), -1);
    assert_int_equal(h.ops->commit(h.st, GROUP, NULL, 0, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(err, "without an open transaction"));

    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(h.ops, h.st, 0, 5);
    assert_int_equal(stored_offset(h.ops, h.loader), 5);

    /* A later batch rolled back leaves the stored offset where it was. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 3, "orders", 5);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    h.ops->rollback(h.st);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 5);
    assert_int_equal(stored_offset(h.ops, h.loader), 5);
    pgh_close(&h);
    bt_batch_free(&b);
}

/* The server ends the session between the batch and COMMIT: RETRY,
 * nothing visible; the redo (begin reconnects) lands once. */
static void test_pg_txn_commit_terminated(void **unused)
{
    pgh_t h;
    bt_batch_t b;
    char err[512] = "";
    bl_dbtxn_offset_t off = {"orders", 2, 0, 6};

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_p; DELETE FROM ballast_offsets");
    pgh_open(&h, pg_insert);
    bt_batch_fill(&b, 6, "orders", 0);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    bt_pg_kill_sessions();
    assert_int_equal(h.ops->commit(h.st, GROUP, &off, 1, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    assert_true(err[0] != '\0');
    assert_null(strchr(err, '\n'));
    h.ops->rollback(h.st);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 0);
    /* the loader's session was ended too: it reconnects by itself */
    assert_int_equal(stored_offset(h.ops, h.loader), -1);

    begin_ok(h.ops, h.st); /* reconnects */
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(h.ops, h.st, 0, 6);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 6);
    assert_int_equal(stored_offset(h.ops, h.loader), 6);

    /* Ended while idle between transactions: begin just reconnects. */
    bt_pg_kill_sessions();
    bt_batch_free(&b);
    bt_batch_fill(&b, 2, "orders", 6);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(h.ops, h.st, 6, 8);

    /* Ended inside the transaction before the batch: every message RETRY,
     * and so is commit; the redo lands. */
    bt_batch_free(&b);
    bt_batch_fill(&b, 4, "orders", 8);
    begin_ok(h.ops, h.st);
    bt_pg_kill_sessions();
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_all_retry(&b);
    assert_int_equal(bl_handler_postgres.handle(h.st, b.mp[0], b.rp[0]),
                     BALLAST_OUTCOME_RETRY);
    assert_int_equal(h.ops->commit(h.st, GROUP, &off, 1, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    h.ops->rollback(h.st);
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, NULL, 0);
    commit_ok(h.ops, h.st, 8, 12);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 12);
    assert_int_equal(stored_offset(h.ops, h.loader), 12);
    pgh_close(&h);
    bt_batch_free(&b);
}

/* A transient error (serialization failure) for one message dooms the
 * whole batch, FAIL verdicts included; the redo lands. */
static void test_pg_txn_transient(void **unused)
{
    static const size_t bad[] = {2, 6}; /* bad JSON; the CHECK on n = 6 */
    pgh_t h;
    bt_batch_t b;
    char err[512] = "";

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_p; DELETE FROM ballast_offsets");
    pgh_open(&h, "INSERT INTO txn_p (off, doc) VALUES (:offset, "
                 "jsonb_build_object('n', txn_flaky((:value::jsonb->>'n')::int)))");
    bt_batch_fill(&b, 8, "orders", 0);
    bt_batch_set_value(&b, 2, "{bad");
    bt_pg_admin_exec("INSERT INTO txn_parent VALUES (-1)"); /* txn_flaky(5) now fails */
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_all_retry(&b);
    assert_non_null(strstr(b.r[0].error, "SQLSTATE 40001"));
    assert_int_equal(h.ops->commit(h.st, GROUP, NULL, 0, err, sizeof(err)),
                     BALLAST_OUTCOME_RETRY);
    assert_non_null(strstr(err, "SQLSTATE 40001"));
    h.ops->rollback(h.st);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 0);

    bt_pg_admin_exec("DELETE FROM txn_parent WHERE id = -1");
    begin_ok(h.ops, h.st);
    bl_handler_postgres.handle_batch(h.st, b.mp, b.rp, b.n, b.out);
    check_outcomes(&b, bad, 2);
    commit_ok(h.ops, h.st, 0, 8);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_p"), 6);
    pgh_close(&h);
    bt_batch_free(&b);
}

static long pg_fence_rows(const fence_case_t *fc)
{
    (void)fc;
    return bt_pg_admin_long("SELECT count(*) FROM txn_f");
}

static const char pg_fence_insert[] =
    "INSERT INTO txn_f (off, doc) VALUES (:offset, :value::jsonb)";

/* Fencing: a batch over a range another session committed is refused. */
static void test_pg_txn_fence(void **unused)
{
    pgh_t winner, zombie;
    fence_case_t fc;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_f; DELETE FROM ballast_offsets");
    pgh_open(&winner, pg_fence_insert);
    pgh_open(&zombie, pg_fence_insert);
    fc = (fence_case_t){&bl_handler_postgres, winner.ops, winner.st, zombie.st,
                        winner.loader, pg_fence_rows, NULL};
    fence_scenario(&fc);
    pgh_close(&winner);
    pgh_close(&zombie);
}

/* A commit with no batch before it, on a connection idle since its last
 * command: the BEGIN that begin left for the batch goes with the offsets;
 * a fenced one is refused and named (the BEGIN does not shift the blame). */
static void test_pg_txn_commit_alone(void **unused)
{
    pgh_t h;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_p; DELETE FROM ballast_offsets");
    pgh_open(&h, pg_insert);
    begin_ok(h.ops, h.st);
    commit_ok(h.ops, h.st, 0, 5);
    assert_int_equal(stored_offset(h.ops, h.loader), 5);
    begin_ok(h.ops, h.st);
    commit_stale(h.ops, h.st, 0, 7);
    assert_int_equal(stored_offset(h.ops, h.loader), 5);
    begin_ok(h.ops, h.st);
    commit_ok(h.ops, h.st, 5, 9);
    assert_int_equal(stored_offset(h.ops, h.loader), 9);
    pgh_close(&h);
}

typedef struct racer {
    const bl_dbtxn_ops_t *ops;
    void *st;
    bl_dbtxn_offset_t off;
    ballast_outcome_t out;
    char err[512];
} racer_t;

static void *race_commit(void *arg)
{
    racer_t *r = arg;

    r->out = r->ops->commit(r->st, GROUP, &r->off, 1, r->err, sizeof(r->err));
    return NULL;
}

/* Another session runs @p other (a transaction on the offsets' row, left
 * open); our commit of @p off then waits for its row lock; the other
 * transaction ends with @p end. @returns our commit's outcome. */
static ballast_outcome_t commit_racing(pgh_t *h, const char *other, const char *end,
                                       bl_dbtxn_offset_t off)
{
    PGconn *conn = PQconnectdb(bt_pg_dsn);
    racer_t r = {h->ops, h->st, off, BALLAST_OUTCOME_OK, ""};
    char sql[256];
    pthread_t thread;
    int waited = 0;

    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    PQclear(PQexec(conn, "BEGIN"));
    {
        PGresult *res = PQexec(conn, other);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            fail_msg("postgres: %s: %s", other, PQerrorMessage(conn));
        PQclear(res);
    }
    handle_range(&bl_handler_postgres, h->ops, h->st, 3, off.first_offset);
    assert_int_equal(pthread_create(&thread, NULL, race_commit, &r), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' "
             "AND wait_event_type = 'Lock'",
             bt_pg_app);
    while (bt_pg_admin_long(sql) != 1 && waited++ < 1500) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(bt_pg_admin_long(sql), 1); /* our commit waits for the row */
    PQclear(PQexec(conn, end));
    assert_int_equal(pthread_join(thread, NULL), 0);
    PQfinish(conn);
    if (r.out != BALLAST_OUTCOME_OK)
        print_message("racing commit: %s\n", r.err);
    return r.out;
}

/* Two transactions race on one ballast_offsets row: ours waits for the
 * other's row lock, then its WHERE sees the row as the other left it
 * (READ COMMITTED re-checks the newest version in ON CONFLICT DO UPDATE). */
static void test_pg_txn_fence_race(void **unused)
{
    static const char upd[] = "UPDATE ballast_offsets SET next_offset = %d WHERE "
                              "group_id = 'g-txn' AND topic = 'orders' AND partition = 2";
    pgh_t h;
    char sql[256];

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("TRUNCATE txn_f; DELETE FROM ballast_offsets");
    pgh_open(&h, pg_fence_insert);
    handle_range(&bl_handler_postgres, h.ops, h.st, 5, 0);
    commit_ok(h.ops, h.st, 0, 5);

    /* The other member commits past our batch while we wait: refused. */
    snprintf(sql, sizeof(sql), upd, 9);
    assert_int_equal(commit_racing(&h, sql, "COMMIT", (bl_dbtxn_offset_t){"orders", 2, 5, 8}),
                     BALLAST_OUTCOME_FAIL);
    assert_int_equal(stored_offset(h.ops, h.loader), 9);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_f"), 5);

    /* It rolls back instead: ours lands. */
    snprintf(sql, sizeof(sql), upd, 20);
    assert_int_equal(commit_racing(&h, sql, "ROLLBACK", (bl_dbtxn_offset_t){"orders", 2, 9, 12}),
                     BALLAST_OUTCOME_OK);
    assert_int_equal(stored_offset(h.ops, h.loader), 12);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_f"), 8);

    /* No row yet: both insert; ours waits for the other's, then finds it. */
    assert_int_equal(commit_racing(&h,
                                   "INSERT INTO ballast_offsets VALUES ('g-txn', "
                                   "'orders', 3, 7)",
                                   "COMMIT", (bl_dbtxn_offset_t){"orders", 3, 0, 3}),
                     BALLAST_OUTCOME_FAIL);
    assert_int_equal(bt_pg_admin_long("SELECT next_offset FROM ballast_offsets WHERE "
                                      "topic = 'orders' AND partition = 3"),
                     7);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM txn_f"), 8);
    pgh_close(&h);
}

/* init in exactly-once mode creates the table, with the spec's shape. */
static void test_pg_txn_table(void **unused)
{
    char sql[512];

    (void)unused;
    BT_NEED_PG();
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY "
             "ordinal_position) = 'group_id:text,topic:text,partition:integer,"
             "next_offset:bigint' FROM information_schema.columns WHERE "
             "table_schema = '%s' AND table_name = 'ballast_offsets'",
             bt_pg_app);
    {
        char *same = bt_pg_admin_text(sql);
        assert_non_null(same);
        assert_string_equal(same, "t");
        free(same);
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_constraint WHERE conrelid = '%s.ballast_offsets'"
             "::regclass AND contype = 'p' AND array_length(conkey, 1) = 3",
             bt_pg_app);
    assert_int_equal(bt_pg_admin_long(sql), 1);
}

int main(void)
{
    const struct CMUnitTest common_tests[] = {
        cmocka_unit_test(test_ops_lookup),
    };
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_sqlite_txn_poison),
        cmocka_unit_test(test_sqlite_txn_rollback),
        cmocka_unit_test(test_sqlite_txn_rollback_clause),
        cmocka_unit_test(test_sqlite_txn_commit_fails),
        cmocka_unit_test(test_sqlite_txn_init_errors),
        cmocka_unit_test(test_sqlite_txn_fence),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_pg_txn_poison),
        cmocka_unit_test(test_pg_txn_deferred),
        cmocka_unit_test(test_pg_txn_rollback),
        cmocka_unit_test(test_pg_txn_commit_terminated),
        cmocka_unit_test(test_pg_txn_commit_alone),
        cmocka_unit_test(test_pg_txn_transient),
        cmocka_unit_test(test_pg_txn_fence),
        cmocka_unit_test(test_pg_txn_fence_race),
        cmocka_unit_test(test_pg_txn_table),
    };
    int failed = cmocka_run_group_tests_name("txn", common_tests, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite-txn", sqlite_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("postgres-txn", pg_tests, pg_setup,
                                          pg_teardown);
    return failed ? 1 : 0;
}
