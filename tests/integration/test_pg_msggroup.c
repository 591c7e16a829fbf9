/*
 * test_pg_msggroup.c - processing = message into PostgreSQL with messages
 * grouped in transactions (handler.postgres.group.*, on by default), run as
 * `ballast run`:
 *  - kill -9 while a group is open loses nothing: the group's rows and its
 *    offsets are lost together (no committed offset covers a row that is not
 *    in the table), and the restart finishes the topic; nor do a rebalance
 *    and a stop that find a group open;
 *  - a message that fails for good fails alone (dead-lettered) and the rest
 *    of its group commits; the session terminated in the middle of a group
 *    marks nothing of it done: everything is run again;
 *  - per-key order holds with many keys, four workers and transient failures
 *    that roll groups back, and without a rebalance no row is written twice;
 *  - a slow stream (one message at a time) commits each at once, whatever
 *    handler.postgres.group.ms says;
 *  - exactly-once (offsets in the database) groups too: kill -9 with a group
 *    open leaves rows exactly matching the stored offsets, and the restart
 *    writes each row once.
 * Where grouping must have happened, the rows' txid_current() (one per
 * transaction) says so.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 4

typedef struct run {
    const char *bs, *topic, *group;
    int parts;
    char table[64], conf[256], errp[256];
} run_t;

static const char *run_argv[] = {"ballast", "run", NULL, NULL};

/* A fresh topic, group and table name; the table is made by @p ddl (with
 * %1$s the table's name). */
static void run_init(run_t *r, const char *prefix, const char *ddl)
{
    const char *dir = bt_tmpdir();
    char sql[2048];

    r->bs = bt_bootstrap();
    r->parts = PARTS;
    r->topic = bt_unique(prefix);
    r->group = bt_unique("mg-g");
    snprintf(r->table, sizeof(r->table), "mg_%d_%lld", (int)getpid(),
             (long long)bt_now_ms() % 100000000);
    snprintf(r->conf, sizeof(r->conf), "%s/%s.conf", dir, prefix);
    snprintf(r->errp, sizeof(r->errp), "%s/%s.stderr", dir, prefix);
    snprintf(sql, sizeof(sql), ddl, r->table);
    bt_pg_exec(sql);
}

/* Writes the configuration: the statement @p sql (%1$s the table) and
 * @p extra lines. */
static void run_conf(run_t *r, const char *sql, const char *extra)
{
    char stmt[512];

    snprintf(stmt, sizeof(stmt), sql, r->table);
    bt_write_file(r->conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "topics = %s\n"
                  "handler = postgres\n"
                  "handler.postgres.dsn = %s\n"
                  "handler.postgres.sql = %s\n"
                  "kafka.auto.commit.interval.ms = 200\n"
                  "log.level = warn\n"
                  "%s",
                  r->bs, r->group, bt_group_lines(), r->topic, bt_pg(), stmt, extra);
}

static pid_t run_start(run_t *r)
{
    run_argv[2] = r->conf;
    return bt_spawn_ballast(run_argv, r->errp);
}

static long table_long(const run_t *r, const char *fmt)
{
    char sql[512];

    snprintf(sql, sizeof(sql), fmt, r->table);
    return bt_pg_long(sql);
}

/* Finishes the topic and stops cleanly. */
static void run_finish(run_t *r, pid_t pid)
{
    if (!bt_wait_committed_to_end(r->bs, r->group, r->topic, r->parts, 120000))
        fail_msg("not committed to the end: %s", bt_read_file(r->errp));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
}

static void run_drop(const run_t *r)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP TABLE %1$s; DROP SEQUENCE IF EXISTS %1$s_gate; "
             "DROP FUNCTION IF EXISTS %1$s_gate(); DROP FUNCTION IF EXISTS %1$s_flake()",
             r->table);
    bt_pg_exec(sql);
}

/* The gate: a trigger that does @p action, the first @p times, on a row of
 * partition 0 at or past offset @p at whose transaction wrote before it (so
 * the row is in a group, not its first: pg_current_xact_id_if_assigned). */
static void gate(const run_t *r, int at, int times, const char *action)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "CREATE SEQUENCE %1$s_gate; "
             "CREATE FUNCTION %1$s_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "IF NEW.part = 0 AND NEW.off >= %2$d AND pg_current_xact_id_if_assigned() IS "
             "NOT NULL AND nextval('%1$s_gate') <= %4$d THEN PERFORM %3$s; END IF; "
             "RETURN NEW; END $$; "
             "CREATE TRIGGER %1$s_gate BEFORE INSERT ON %1$s FOR EACH ROW EXECUTE "
             "FUNCTION %1$s_gate()",
             r->table, at, action, times);
    bt_pg_exec(sql);
}

static bool gate_used(const run_t *r)
{
    return table_long(r, "SELECT is_called::int FROM %s_gate") == 1;
}

/* The sessions of @p r's statement asleep in the gate: counted, or ended. */
static long sleepers(const run_t *r, const char *what)
{
    char sql[512];

    snprintf(sql, sizeof(sql), "SELECT %s FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
             "AND application_name = 'ballast' AND query LIKE '%%%s%%'", what, r->table);
    return bt_pg_long(sql);
}

static bool sleeping(void *arg)
{
    return sleepers(arg, "count(*)") > 0;
}

/* Whether some committed offset covers a row that is not in the table. */
static bool offsets_past_rows(void *arg)
{
    const run_t *r = arg;
    int64_t committed[PARTS];
    char sql[256];

    bt_committed(r->bs, r->group, r->topic, PARTS, committed);
    for (int p = 0; p < PARTS; p++) {
        if (committed[p] <= 0)
            continue;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE part = %d AND off < %lld",
                 r->table, p, (long long)committed[p]);
        if (bt_pg_long(sql) != committed[p]) {
            print_message("partition %d: committed %lld, rows below it %ld\n", p,
                          (long long)committed[p], bt_pg_long(sql));
            return true;
        }
    }
    return false;
}

/* Ends the session asleep in the gate. @returns how many it ended. */
static long terminate_sleeper(const run_t *r)
{
    return sleepers(r, "count(pg_terminate_backend(pid))");
}

static void test_kill9_with_a_group_open(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    run_t r;
    pid_t pid;

    run_init(&r, "mg-kill", "CREATE TABLE %s (part int, off bigint, v text, "
                            "PRIMARY KEY (part, off))");
    gate(&r, 300, 1, "pg_sleep(600)");
    bt_create_topic(r.bs, r.topic, PARTS);
    bt_produce_seq(r.bs, r.topic, PARTS, 0, 2000, 0);
    /* No group ends for its age: the sleeping one stays open. */
    run_conf(&r, "INSERT INTO %s VALUES (:partition, :offset, :value) ON CONFLICT DO NOTHING",
             "handler.postgres.group.ms = 600000\n");
    pid = run_start(&r);
    if (!bt_wait_for(sleeping, &r, 60000))
        fail_msg("no group reached the gate: %s", bt_read_file(r.errp));
    /* Commits go out every 200 ms: had the group's rows been released
     * before its COMMIT, their offsets would be committed within this. */
    if (bt_wait_for(offsets_past_rows, &r, 3000))
        fail_msg("a committed offset covers rows of a group not committed");
    kill(pid, SIGKILL);
    assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
    assert_true(terminate_sleeper(&r) > 0);
    assert_false(offsets_past_rows(&r));
    pid = run_start(&r);
    run_finish(&r, pid);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM %s"), 2000);
    assert_false(offsets_past_rows(&r));
    run_drop(&r);
}

/* A member stops (SIGTERM) while it holds a group open, its statement
 * asleep; the session is terminated under the drain. Then, with a group
 * open again, a second member joins: a rebalance around the group, whose
 * session is terminated too. Never is an offset committed past the rows,
 * and the two members finish the topic. */
static void test_stop_and_rebalance_with_a_group_open(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    char errb[300];
    run_t r;
    pid_t a, b;

    run_init(&r, "mg-revoke", "CREATE TABLE %s (part int, off bigint, v text, "
                              "PRIMARY KEY (part, off))");
    gate(&r, 100, 2, "pg_sleep(600)");
    bt_create_topic(r.bs, r.topic, PARTS);
    bt_produce_seq(r.bs, r.topic, PARTS, 0, 2000, 0);
    run_conf(&r, "INSERT INTO %s VALUES (:partition, :offset, :value) ON CONFLICT DO NOTHING",
             "handler.postgres.group.ms = 600000\nshutdown.timeout.ms = 60000\n");
    a = run_start(&r);
    if (!bt_wait_for(sleeping, &r, 60000))
        fail_msg("no group reached the gate: %s", bt_read_file(r.errp));
    bt_term(a);
    assert_true(terminate_sleeper(&r) > 0);
    assert_int_equal(bt_wait(a, 60000), 0);
    assert_false(offsets_past_rows(&r));

    a = run_start(&r);
    if (!bt_wait_for(sleeping, &r, 60000))
        fail_msg("no group reached the gate again: %s", bt_read_file(r.errp));
    snprintf(errb, sizeof(errb), "%s.b", r.errp);
    b = bt_spawn_ballast(run_argv, errb);
    assert_true(terminate_sleeper(&r) > 0);
    if (bt_wait_for(offsets_past_rows, &r, 2000))
        fail_msg("a committed offset covers rows of a group not committed");
    if (!bt_wait_committed_to_end(r.bs, r.group, r.topic, PARTS, 120000))
        fail_msg("not committed to the end: %s", bt_read_file(errb));
    bt_term(a);
    bt_term(b);
    assert_int_equal(bt_wait(a, 60000), 0);
    assert_int_equal(bt_wait(b, 60000), 0);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM %s"), 2000);
    assert_false(offsets_past_rows(&r));
    run_drop(&r);
}

/* Exactly-once: whether each partition's rows are exactly those below its
 * next offset in ballast_offsets, each once. */
static bool rows_match_offsets(const run_t *r)
{
    char sql[512];

    for (int p = 0; p < PARTS; p++) {
        long stored, rows;
        snprintf(sql, sizeof(sql), "SELECT coalesce(max(next_offset), 0) FROM ballast_offsets "
                 "WHERE group_id = '%s' AND partition = %d", r->group, p);
        stored = bt_pg_long(sql);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE part = %d AND off < %ld",
                 r->table, p, stored);
        rows = bt_pg_long(sql);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE part = %d", r->table, p);
        if (rows != stored || bt_pg_long(sql) != stored) {
            print_message("partition %d: stored offset %ld, %ld rows below it, %ld in all\n",
                          p, stored, rows, bt_pg_long(sql));
            return false;
        }
    }
    return true;
}

static bool all_rows(void *arg)
{
    const run_t *r = arg;

    return table_long(r, "SELECT count(*) FROM %s") >= 2000 && rows_match_offsets(r);
}

static void test_exactly_once_kill9_with_a_group_open(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    run_t r;
    pid_t pid;

    /* No unique constraint: a row written twice would show. */
    run_init(&r, "mg-eo", "CREATE TABLE %s (part int, off bigint, v text, tx bigint "
                          "DEFAULT txid_current())");
    gate(&r, 300, 1, "pg_sleep(600)");
    bt_create_topic(r.bs, r.topic, PARTS);
    bt_produce_seq(r.bs, r.topic, PARTS, 0, 2000, 0);
    run_conf(&r, "INSERT INTO %s VALUES (:partition, :offset, :value)",
             "semantics = exactly-once\nhandler.postgres.group.ms = 600000\n");
    pid = run_start(&r);
    if (!bt_wait_for(sleeping, &r, 60000))
        fail_msg("no group reached the gate: %s", bt_read_file(r.errp));
    kill(pid, SIGKILL);
    assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
    assert_true(terminate_sleeper(&r) > 0);
    assert_true(rows_match_offsets(&r));
    pid = run_start(&r);
    if (!bt_wait_for(all_rows, &r, 120000))
        fail_msg("not every row: %s", bt_read_file(r.errp));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM %s"), 2000);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM (SELECT DISTINCT part, off "
                                    "FROM %s) d"),
                     2000);
    assert_true(rows_match_offsets(&r));
    print_message("exactly-once: 2000 rows in %ld transactions\n",
                  table_long(&r, "SELECT count(DISTINCT tx) FROM %s"));
    assert_true(table_long(&r, "SELECT count(DISTINCT tx) FROM %s") < 2000 / 4);
    run_drop(&r);
}

/* Offsets 5, 102, 199... of each partition break the CHECK. */
#define BAD(off) ((off) % 97 == 5)

static void test_bad_rows_and_a_terminated_group(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("mg-dlq");
    size_t ndlq = 0;
    bt_record_t *recs;
    long bad = 0, rows;
    run_t r;
    pid_t pid;
    char extra[256];

    for (int off = 0; off < 500; off++)
        bad += BAD(off) ? PARTS : 0;
    run_init(&r, "mg-bad", "CREATE TABLE %s (part int, off bigint, v text, tx bigint "
                           "DEFAULT txid_current(), PRIMARY KEY (part, off), "
                           "CHECK (off %% 97 <> 5))");
    gate(&r, 250, 1, "pg_terminate_backend(pg_backend_pid())");
    bt_create_topic(r.bs, r.topic, PARTS);
    bt_create_topic(r.bs, dlq, 1);
    bt_produce_seq(r.bs, r.topic, PARTS, 0, 500 * PARTS, 0);
    snprintf(extra, sizeof(extra), "dlq.topic = %s\nretry.backoff.initial.ms = 10\n", dlq);
    run_conf(&r, "INSERT INTO %s VALUES (:partition, :offset, :value) ON CONFLICT DO NOTHING",
             extra);
    pid = run_start(&r);
    run_finish(&r, pid);
    rows = table_long(&r, "SELECT count(*) FROM %s");
    print_message("%ld rows in %ld transactions, %ld failed\n", rows,
                  table_long(&r, "SELECT count(DISTINCT tx) FROM %s"), bad);
    assert_true(gate_used(&r)); /* the session died with a group open */
    assert_int_equal(rows, 500 * PARTS - bad);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM %s WHERE off %% 97 = 5"), 0);
    assert_true(table_long(&r, "SELECT count(DISTINCT tx) FROM %s") < rows / 4);
    recs = bt_consume_to_end(r.bs, dlq, 60000, &ndlq);
    assert_int_equal((long)ndlq, bad);
    bt_records_free(recs, ndlq);
    run_drop(&r);
}

static void test_key_order_through_rollbacks(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    run_t r;
    pid_t pid;
    char sql[512];

    /* No unique constraint: a row written twice shows. */
    run_init(&r, "mg-order", "CREATE TABLE %s (id bigserial, k text, seq int, "
                             "tx bigint DEFAULT txid_current())");
    /* Every 211th statement fails transiently: its group is rolled back and
     * runs again one by one. */
    snprintf(sql, sizeof(sql),
             "CREATE SEQUENCE %1$s_gate; "
             "CREATE FUNCTION %1$s_flake() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "IF nextval('%1$s_gate') %% 211 = 0 THEN RAISE EXCEPTION 'flake' USING "
             "ERRCODE = '40001'; END IF; RETURN NEW; END $$; "
             "CREATE TRIGGER %1$s_flake BEFORE INSERT ON %1$s FOR EACH ROW EXECUTE "
             "FUNCTION %1$s_flake()",
             r.table);
    bt_pg_exec(sql);
    bt_create_topic(r.bs, r.topic, PARTS);
    bt_produce_seq(r.bs, r.topic, 0, 0, 4000, 97);
    run_conf(&r, "INSERT INTO %s (k, seq) VALUES (:key, :value::int)",
             "log.level = info\nordering = key\nconcurrency = 4\nretry.max.attempts = 20\n"
             "retry.backoff.initial.ms = 1\nretry.backoff.max.ms = 5\n");
    pid = run_start(&r);
    run_finish(&r, pid);
    if (table_long(&r, "SELECT count(DISTINCT seq) FROM %s") != 4000)
        fail_msg("%ld of the 4000 inputs in the table: %s",
                 table_long(&r, "SELECT count(DISTINCT seq) FROM %s"), bt_read_file(r.errp));
    /* One member that kept its partitions redelivers nothing: a rolled-back
     * group is not committed, and its rerun writes each row once. Only a
     * rebalance (a second assignment, under a loaded machine) may redeliver,
     * and the order is then checked on the first writes. */
    if (table_long(&r, "SELECT count(*) FROM %s") != 4000) {
        char *log = bt_read_file(r.errp);
        const char *second = log ? strstr(log, "assigned ") : NULL;
        if (!second || !strstr(second + 1, "assigned "))
            fail_msg("%ld rows written twice without a rebalance: %s",
                     table_long(&r, "SELECT count(*) - count(DISTINCT seq) FROM %s"),
                     log ? log : "");
        free(log);
    }
    assert_int_equal(table_long(&r, "SELECT count(*) FROM (SELECT seq, lag(seq) OVER "
                                    "(PARTITION BY k ORDER BY id) AS prev FROM (SELECT "
                                    "DISTINCT ON (seq) * FROM %s ORDER BY seq, id) first) x "
                                    "WHERE prev >= seq"),
                     0);
    print_message("4000 rows in %ld transactions, %ld statements\n",
                  table_long(&r, "SELECT count(DISTINCT tx) FROM %s"),
                  table_long(&r, "SELECT last_value FROM %s_gate"));
    assert_true(table_long(&r, "SELECT count(DISTINCT tx) FROM %s") < 4000 / 2);
    run_drop(&r);
}

typedef struct row_arg {
    const run_t *r;
    int off;
} row_arg_t;

static bool row_there(void *arg)
{
    const row_arg_t *a = arg;
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE off = %d", a->r->table,
             a->off);
    return bt_pg_long(sql) == 1;
}

static void test_slow_stream_commits_each_at_once(void **unused)
{
    (void)unused;
    BT_REQUIRE_ENV();
    run_t r;
    pid_t pid;

    run_init(&r, "mg-slow", "CREATE TABLE %s (part int, off bigint, v text)");
    r.parts = 1;
    bt_create_topic(r.bs, r.topic, 1);
    run_conf(&r, "INSERT INTO %s VALUES (:partition, :offset, :value)",
             "handler.postgres.group.ms = 600000\n");
    pid = run_start(&r);
    for (int i = 0; i < 5; i++) {
        row_arg_t a = {&r, i};
        /* all to partition 0, one at a time */
        bt_produce_seq(r.bs, r.topic, 1, i, 1, 0);
        if (!bt_wait_for(row_there, &a, 10000))
            fail_msg("message %d alone is not committed: %s", i, bt_read_file(r.errp));
    }
    run_finish(&r, pid);
    assert_int_equal(table_long(&r, "SELECT count(*) FROM %s"), 5);
    run_drop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_with_a_group_open),
        cmocka_unit_test(test_exactly_once_kill9_with_a_group_open),
        cmocka_unit_test(test_stop_and_rebalance_with_a_group_open),
        cmocka_unit_test(test_bad_rows_and_a_terminated_group),
        cmocka_unit_test(test_key_order_through_rollbacks),
        cmocka_unit_test(test_slow_stream_commits_each_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
