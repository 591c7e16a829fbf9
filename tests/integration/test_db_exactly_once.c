/*
 * test_db_exactly_once.c - exactly-once into PostgreSQL: each batch's rows
 * and the partitions' next offsets commit in one database transaction. The
 * table has NO unique constraint, so any redelivery would show as an extra
 * row. `ballast run` is kill -9'd twice and PostgreSQL is stopped in
 * immediate mode mid-run; finally row count == message count, every
 * (partition, offset) exactly once.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 4
#define TOTAL 50000

typedef struct rows_arg {
    const char *table;
    long want;
} rows_arg_t;

static bool rows_reached(void *arg)
{
    rows_arg_t *a = arg;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", a->table);
    return bt_pg_long(sql) >= a->want;
}

static void test_postgres_exactly_once_through_kills_and_db_restart(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("dbeos");
    const char *group = bt_unique("dbeos-g");
    const char *dir = bt_tmpdir();
    char table[128], conf[256], errp[256], sql[512], cmd[512];
    const char *const argv[] = {"ballast", "run", conf, NULL};
    rows_arg_t progress;
    pid_t pid;
    long rows, distinct;

    snprintf(table, sizeof(table), "eos_rows_%d_%lld", (int)getpid(),
             (long long)bt_now_ms() % 1000000);
    snprintf(conf, sizeof(conf), "%s/db.conf", dir);
    snprintf(errp, sizeof(errp), "%s/stderr", dir);
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s (part integer, off bigint, value text)", table);
    bt_pg_exec(sql);
    bt_create_topic(bs, topic, PARTS);
    bt_produce_seq(bs, topic, PARTS, 0, TOTAL, 0);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "topics = %s\n"
                  "semantics = exactly-once\n"
                  "processing = batch\n"
                  "batch.max.messages = 500\n"
                  "batch.max.ms = 50\n"
                  "concurrency = 2\n"
                  "handler = postgres\n"
                  "handler.postgres.dsn = %s\n"
                  "handler.postgres.sql = INSERT INTO %s (part, off, value) "
                  "VALUES (:partition, :offset, :value)\n"
                  "retry.backoff.max.ms = 500\n"
                  "log.level = warn\n",
                  bs, group, bt_group_lines(), topic, bt_pg(), table);
    progress.table = table;

    for (int k = 1; k <= 2; k++) {
        progress.want = (long)TOTAL * k / 5;
        pid = bt_spawn_ballast(argv, errp);
        if (!bt_wait_for(rows_reached, &progress, 120000))
            fail_msg("no progress before kill %d: %s", k, bt_read_file(errp));
        kill(pid, SIGKILL);
        assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
    }
    /* PostgreSQL stops in immediate mode under a running pipeline. */
    progress.want = (long)TOTAL * 3 / 5;
    pid = bt_spawn_ballast(argv, errp);
    if (!bt_wait_for(rows_reached, &progress, 120000))
        fail_msg("no progress before the database restart: %s", bt_read_file(errp));
    snprintf(cmd, sizeof(cmd), "'%s/scripts/testenv' restart-pg --hard >/dev/null",
             BALLAST_SRC_DIR);
    assert_int_equal(system(cmd), 0);
    progress.want = TOTAL;
    if (!bt_wait_for(rows_reached, &progress, 180000))
        fail_msg("not all rows after the database restart: %s", bt_read_file(errp));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    rows = bt_pg_long(sql);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT DISTINCT part, off FROM %s) d",
             table);
    distinct = bt_pg_long(sql);
    snprintf(sql, sizeof(sql),
             "SELECT sum(next_offset) FROM ballast_offsets WHERE group_id = '%s'", group);
    print_message("postgres exactly-once: %ld rows, %ld distinct, offsets sum %ld\n",
                  rows, distinct, bt_pg_long(sql));
    assert_int_equal(rows, TOTAL);
    assert_int_equal(distinct, TOTAL);
    assert_int_equal(bt_pg_long(sql), TOTAL);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    bt_pg_exec(sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postgres_exactly_once_through_kills_and_db_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
