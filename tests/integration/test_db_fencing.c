/*
 * test_db_fencing.c - exactly-once into PostgreSQL when another member
 * commits past a batch that is still open: the offsets' compare-and-set
 * must refuse the late batch. The output table has NO unique constraint,
 * so every (partition, offset) must be there exactly once at the end.
 *
 *   - A zombie: instance A holds a batch open and is SIGSTOPped; the group
 *     hands its partitions to instance B, which commits everything; then A
 *     resumes and tries to COMMIT.
 *   - An owner that does not know yet: while A's batch is open, the
 *     database's offset moves past it (what a member that took the
 *     partition over would do); A, still assigned, must drop the batch,
 *     rewind to the database's offsets and carry on from there, with its
 *     advisory Kafka commits following.
 *
 * The timing is made deterministic by the handler's statement: the first
 * row for the value "0" (partition 0, offset 0) waits on an advisory lock
 * the test holds, so A is known to be inside its batch; whoever sees that
 * value later never waits.
 */
#include "support.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 2
#define TOTAL 2000
#define SKIP 600 /* test_fenced_owner_rewinds: partition 0's offsets another member commits */

typedef struct fence {
    char app_a[64], app_b[64];
    char table[64], gate[64], seq[64], conf[256], err_a[256], err_b[256];
    char x_a[1300], x_b[1300];
    const char *topic, *group;
    long lock_key;
    PGconn *lock; /* holds the gate's advisory lock */
} fence_t;

/* The connection string of BALLAST_TEST_PG with an application_name, so
 * that the test can tell the instances' sessions apart, as a -X value. */
static void dsn_override(const char *app, char *out, size_t size)
{
    const char *base = bt_pg();

    if (!strncmp(base, "postgres", 8))
        snprintf(out, size, "handler.postgres.dsn=%s%capplication_name=%s", base,
                 strchr(base, '?') ? '&' : '?', app);
    else
        snprintf(out, size, "handler.postgres.dsn=%s application_name=%s", base, app);
}

static long count_sessions(const char *app, const char *where)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' "
             "AND %s",
             app, where);
    return bt_pg_long(sql);
}

/* A's worker waits on the test's advisory lock, inside its batch. */
static bool a_waits_on_gate(void *arg)
{
    const fence_t *f = arg;
    return count_sessions(f->app_a, "wait_event_type = 'Lock' AND "
                                    "wait_event = 'advisory'") == 1;
}

/* The database holds every offset of the topic. */
static bool db_committed_all(void *arg)
{
    const fence_t *f = arg;
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT sum(next_offset) FROM ballast_offsets WHERE group_id = '%s'",
             f->group);
    return bt_pg_long(sql) == TOTAL;
}

/* A's transaction ended: committed or rolled back. */
static bool a_txn_over(void *arg)
{
    const fence_t *f = arg;
    return count_sessions(f->app_a, "state IN ('idle in transaction', 'active', "
                                    "'idle in transaction (aborted)')") == 0;
}

static void pg_run(PGconn *db, const char *fmt, long arg)
{
    char sql[256];
    PGresult *r;

    snprintf(sql, sizeof(sql), fmt, arg);
    r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("postgres: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* Names, the table (no unique constraint), the gate its statement calls
 * (closed), the topic with its messages, and the configuration. */
static void fence_setup(fence_t *f)
{
    const char *bs = bt_bootstrap();
    const char *dir = bt_tmpdir();
    int pid = (int)getpid();
    char sql[1024];

    memset(f, 0, sizeof(*f));
    f->topic = bt_unique("fence");
    f->group = bt_unique("fence-g");
    f->lock_key = 7000000000L + (long)pid * 10 + (long)(bt_now_ms() % 10);
    snprintf(f->app_a, sizeof(f->app_a), "fence_a_%d_%ld", pid, f->lock_key % 10);
    snprintf(f->app_b, sizeof(f->app_b), "fence_b_%d_%ld", pid, f->lock_key % 10);
    snprintf(f->table, sizeof(f->table), "fence_rows_%d_%ld", pid, f->lock_key % 10);
    snprintf(f->gate, sizeof(f->gate), "fence_gate_%d_%ld", pid, f->lock_key % 10);
    snprintf(f->seq, sizeof(f->seq), "fence_seq_%d_%ld", pid, f->lock_key % 10);
    dsn_override(f->app_a, f->x_a, sizeof(f->x_a));
    dsn_override(f->app_b, f->x_b, sizeof(f->x_b));
    snprintf(f->conf, sizeof(f->conf), "%s/fence.conf", dir);
    snprintf(f->err_a, sizeof(f->err_a), "%s/a.stderr", dir);
    snprintf(f->err_b, sizeof(f->err_b), "%s/b.stderr", dir);

    snprintf(sql, sizeof(sql), "CREATE TABLE %s (part integer, off bigint, value text)",
             f->table);
    bt_pg_exec(sql);
    snprintf(sql, sizeof(sql), "CREATE SEQUENCE %s", f->seq);
    bt_pg_exec(sql);
    /* Nested IFs: SQL does not promise to evaluate AND left to right, and
     * the sequence must count only the rows for "0". */
    snprintf(sql, sizeof(sql),
             "CREATE FUNCTION %s(v text) RETURNS text LANGUAGE plpgsql AS $$ "
             "BEGIN IF v = '0' THEN IF nextval('%s') = 1 THEN "
             "PERFORM pg_advisory_xact_lock_shared(%ld); END IF; END IF; "
             "RETURN v; END $$",
             f->gate, f->seq, f->lock_key);
    bt_pg_exec(sql);
    f->lock = PQconnectdb(bt_pg());
    if (PQstatus(f->lock) != CONNECTION_OK)
        fail_msg("postgres: %s", PQerrorMessage(f->lock));
    pg_run(f->lock, "SELECT pg_advisory_lock(%ld)", f->lock_key);

    bt_create_topic(bs, f->topic, PARTS);
    bt_produce_seq(bs, f->topic, PARTS, 0, TOTAL, 0);
    bt_write_file(f->conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "kafka.auto.commit.interval.ms = 200\n"
                  "topics = %s\n"
                  "semantics = exactly-once\n"
                  "processing = batch\n"
                  "batch.max.messages = 500\n"
                  "batch.max.ms = 50\n"
                  "handler = postgres\n"
                  "handler.postgres.sql = INSERT INTO %s (part, off, value) "
                  "VALUES (:partition, :offset, %s(:value))\n"
                  "retry.backoff.max.ms = 500\n"
                  "log.level = warn\n",
                  bs, f->group, bt_group_lines(), f->topic, f->table, f->gate);
}

/* Opens the gate: A's statements go on (on the server). */
static void gate_open(fence_t *f)
{
    pg_run(f->lock, "SELECT pg_advisory_unlock(%ld)", f->lock_key);
    PQfinish(f->lock);
    f->lock = NULL;
}

/* Every (partition, offset) once; A's log says it dropped a batch. */
static void fence_check(fence_t *f)
{
    char sql[512], *log_a = bt_read_file(f->err_a);
    long rows, distinct;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", f->table);
    rows = bt_pg_long(sql);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM (SELECT DISTINCT part, off FROM %s) d", f->table);
    distinct = bt_pg_long(sql);
    print_message("fencing: %ld rows, %ld distinct; A's log:\n%s\n", rows, distinct,
                  log_a ? log_a : "");
    assert_int_equal(rows, TOTAL);
    assert_int_equal(distinct, TOTAL);
    assert_true(db_committed_all(f)); /* and no offset went backwards */
    assert_non_null(log_a);
    assert_non_null(strstr(log_a, "by another member: this instance lost the partition; "
                                  "batch dropped"));
    free(log_a);
    snprintf(sql, sizeof(sql), "DROP TABLE %s; DROP FUNCTION %s(text); DROP SEQUENCE %s",
             f->table, f->gate, f->seq);
    bt_pg_exec(sql);
}

static void test_zombie_batch_is_fenced(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    fence_t f;
    fence_setup(&f);
    const char *const argv_a[] = {"ballast", "run", f.conf, "-X", f.x_a, NULL};
    const char *const argv_b[] = {"ballast", "run", f.conf, "-X", f.x_b, NULL};
    pid_t a, b;

    /* A takes every partition and blocks inside its first batch. */
    a = bt_spawn_ballast(argv_a, f.err_a);
    if (!bt_wait_for(a_waits_on_gate, &f, 60000))
        fail_msg("A never reached the gate: %s", bt_read_file(f.err_a));
    kill(a, SIGSTOP);
    gate_open(&f); /* A's statements finish on the server; A cannot COMMIT */

    /* A's session times out; B takes over and commits every offset. */
    b = bt_spawn_ballast(argv_b, f.err_b);
    if (!bt_wait_for(db_committed_all, &f, 120000))
        fail_msg("B did not commit everything: %s", bt_read_file(f.err_b));
    /* A's transaction is still open: idle in it, or, when A was stopped
     * before it sent its pipeline's sync, still active in the server's
     * eyes (the state changes only at a sync). */
    assert_int_equal(count_sessions(f.app_a, "xact_start IS NOT NULL"), 1);

    /* The zombie wakes up with its batch still open. */
    kill(a, SIGCONT);
    if (!bt_wait_for(a_txn_over, &f, 60000))
        fail_msg("A's transaction never ended: %s", bt_read_file(f.err_a));
    bt_term(a);
    bt_term(b);
    assert_int_equal(bt_wait(a, 60000), 0);
    assert_int_equal(bt_wait(b, 60000), 0);
    fence_check(&f);
}

static void test_fenced_owner_rewinds(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    fence_t f;
    fence_setup(&f);
    const char *const argv_a[] = {"ballast", "run", f.conf, "-X", f.x_a,
                                  "-X", "metrics.listen=127.0.0.1:0",
                                  "-X", "log.level=info", NULL};
    char sql[1024], addr[64];
    double fenced;
    pid_t a;

    a = bt_spawn_ballast(argv_a, f.err_a);
    bt_wait_listening(f.err_a, a, addr, sizeof(addr));
    if (!bt_wait_for(a_waits_on_gate, &f, 60000))
        fail_msg("A never reached the gate: %s", bt_read_file(f.err_a));
    /* Meanwhile "another member" commits partition 0's offsets [0, SKIP),
     * rows and offset in one transaction, as ballast would. (Message i is
     * at partition i % PARTS, offset i / PARTS, value i.) */
    snprintf(sql, sizeof(sql),
             "BEGIN; INSERT INTO %s SELECT 0, g, (g * %d)::text FROM "
             "generate_series(0, %d) g; INSERT INTO ballast_offsets VALUES "
             "('%s', '%s', 0, %d); COMMIT",
             f.table, PARTS, SKIP - 1, f.group, f.topic, SKIP);
    bt_pg_exec(sql);
    gate_open(&f);

    /* A finds its batch fenced, rewinds and finishes from the database's
     * offsets; its advisory Kafka commits reach the end. */
    if (!bt_wait_for(db_committed_all, &f, 120000))
        fail_msg("A did not finish: %s", bt_read_file(f.err_a));
    if (!bt_wait_committed_to_end(bt_bootstrap(), f.group, f.topic, PARTS, 60000))
        fail_msg("Kafka's committed offsets did not reach the end: %s",
                 bt_read_file(f.err_a));
    fenced = bt_metric(addr, "ballast_db_batches_fenced_total");
    bt_term(a);
    assert_int_equal(bt_wait(a, 60000), 0);
    fence_check(&f);
    assert_true(fenced == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zombie_batch_is_fenced),
        cmocka_unit_test(test_fenced_owner_rewinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
