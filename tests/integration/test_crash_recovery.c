/*
 * test_crash_recovery.c - `kill -9` of `ballast run` mid-stream, twice, then
 * a restart: no gaps, and duplicates only at offsets that were not yet
 * committed when the process died. And the crash window of the default
 * commit cadence: a kill -9 while draining a backlog at full speed redoes
 * about 10,000 messages' work (the message bound, plus what finishes while
 * commits are on their way), a fraction of what a commit every 5 s redoes.
 */
#include "support.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 4
#define TOTAL 20000

typedef struct db_arg {
    const char *path;
    long want;
    bool distinct;
} db_arg_t;

static long count_rows(const char *path, bool distinct)
{
    return bt_sqlite_long(path, distinct
                                    ? "SELECT count(*) FROM (SELECT DISTINCT part, off FROM seen)"
                                    : "SELECT count(*) FROM seen");
}

static bool rows_reached(void *arg)
{
    db_arg_t *a = arg;
    return count_rows(a->path, a->distinct) >= a->want;
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    char *err = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sqlite: %s", err);
    sqlite3_close(db);
}

/* Checks every offset is present and every duplicate lies at or above the
 * offset committed when the process was killed. */
static void check_rows(const char *path, const int64_t *hwm,
                       int64_t killed_at[][PARTS], int kills, long *dups)
{
    sqlite3 *db;
    sqlite3_stmt *st;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    for (int p = 0; p < PARTS; p++) {
        int *hits = calloc((size_t)hwm[p] + 1, sizeof(int));
        assert_non_null(hits);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT off FROM seen WHERE part = ?1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_int(st, 1, p);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t off = sqlite3_column_int64(st, 0);
            assert_true(off >= 0 && off < hwm[p]);
            hits[off]++;
        }
        sqlite3_finalize(st);
        for (int64_t o = 0; o < hwm[p]; o++) {
            if (!hits[o])
                fail_msg("partition %d offset %lld lost", p, (long long)o);
            if (hits[o] > 1) {
                bool uncommitted = false;
                for (int k = 0; k < kills; k++)
                    if (o >= killed_at[k][p] || killed_at[k][p] < 0)
                        uncommitted = true;
                if (!uncommitted)
                    fail_msg("partition %d offset %lld handled twice though it "
                             "was committed before every kill",
                             p, (long long)o);
                *dups += hits[o] - 1;
            }
        }
        free(hits);
    }
    sqlite3_close(db);
}

static void test_kill9_twice_then_restart(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("crash");
    const char *group = bt_unique("crash-g");
    const char *dir = bt_tmpdir();
    char conf_path[256], db_path[256], err_path[256];
    const char *const argv[] = {"ballast", "run", conf_path, NULL};
    int64_t killed_at[2][PARTS], hwm[PARTS], committed[PARTS];
    long dups = 0;
    pid_t pid;

    snprintf(conf_path, sizeof(conf_path), "%s/crash.conf", dir);
    snprintf(db_path, sizeof(db_path), "%s/seen.db", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    exec_sql(db_path, "PRAGMA journal_mode=WAL;"
                      "CREATE TABLE seen(part INTEGER, off INTEGER, value TEXT)");
    bt_create_topic(bs, topic, PARTS);
    bt_produce_seq(bs, topic, PARTS, 0, TOTAL, 0);
    bt_write_file(conf_path,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "kafka.auto.commit.interval.ms = 100\n"
                  "%s"
                  "topics = %s\n"
                  "handler = sqlite\n"
                  "handler.sqlite.path = %s\n"
                  "handler.sqlite.sql = INSERT INTO seen(part, off, value) "
                  "VALUES (:partition, :offset, :value)\n"
                  "log.level = warn\n",
                  bs, group, bt_group_lines(), topic, db_path);

    for (int k = 0; k < 2; k++) {
        db_arg_t progress = {db_path, (long)TOTAL * (k + 1) / 4, false};
        pid = bt_spawn_ballast(argv, err_path);
        if (!bt_wait_for(rows_reached, &progress, 120000))
            fail_msg("no progress before kill %d: %ld rows; stderr: %s", k + 1,
                     count_rows(db_path, false), bt_read_file(err_path));
        kill(pid, SIGKILL);
        assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
        bt_committed(bs, group, topic, PARTS, killed_at[k]);
    }

    pid = bt_spawn_ballast(argv, err_path);
    db_arg_t all = {db_path, TOTAL, true};
    if (!bt_wait_for(rows_reached, &all, 180000))
        fail_msg("only %ld distinct rows after restart", count_rows(db_path, true));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);

    bt_high_watermarks(bs, topic, PARTS, hwm);
    check_rows(db_path, hwm, killed_at, 2, &dups);
    bt_committed(bs, group, topic, PARTS, committed);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(committed[p], hwm[p]);
    print_message("kill -9 x2: %d messages, %ld redelivered (all uncommitted at a kill)\n",
                  TOTAL, dups);
}

/* ---- the crash window ------------------------------------------------------ */

#define WINDOW_PARTS 4
#define WINDOW_TOTAL 150000
#define WINDOW_KILL_AT 60000 /* rows handled when the member is killed */
/* The default cadence's message bound (src/cadence.h) */
#define WINDOW_BOUND 10000
/* What may finish past the bound at the kill: one asynchronous commit is in
 * flight at a time, so the one due at the bound waits for the one before it
 * to land, and messages keep finishing meanwhile (the one before may not
 * have landed at the kill either). How many depends on the broker's round
 * trip against the drain's speed: on a loaded machine 6,066 to 21,364 were
 * redone, against 74,645 to 95,759 with a commit every 5 s. So the test
 * allows three bounds' worth past the bound, and asks for less than half
 * of what the 5 s cadence redoes in the same run. */
#define WINDOW_IN_FLIGHT (3 * WINDOW_BOUND)

typedef struct rows_arg {
    const char *path;
    size_t want;
    bool distinct;
} rows_arg_t;

/* Rows of the test plugin's log: all, or distinct (partition, offset). */
static size_t plugin_rows(const char *path, bool distinct)
{
    size_t n, count = 0;
    bt_row_t *rows = bt_plugin_rows(path, &n);
    char *seen[WINDOW_PARTS] = {0};

    if (!distinct) {
        free(rows);
        return n;
    }
    for (int p = 0; p < WINDOW_PARTS; p++)
        assert_non_null(seen[p] = calloc(WINDOW_TOTAL, 1));
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].partition >= 0 && rows[i].partition < WINDOW_PARTS);
        assert_true(rows[i].offset >= 0 && rows[i].offset < WINDOW_TOTAL);
        if (!seen[rows[i].partition][rows[i].offset]++)
            count++;
    }
    for (int p = 0; p < WINDOW_PARTS; p++)
        free(seen[p]);
    free(rows);
    return count;
}

static bool plugin_rows_reached(void *arg)
{
    rows_arg_t *a = arg;
    return plugin_rows(a->path, a->distinct) >= a->want;
}

/* A row the killed process was writing may be torn (a write cut short by
 * SIGKILL): it is not a row, and the next process's rows must not be glued
 * to it. */
static void cut_torn_row(const char *path)
{
    char *text = bt_read_file(path);
    char *end = text ? strrchr(text, '\n') : NULL;

    assert_non_null(text);
    assert_int_equal(truncate(path, end ? end - text + 1 : 0), 0);
    free(text);
}

/* A member with a fast handler (the test plugin, logging each message it
 * finishes) drains the backlog of @p topic in group @p group and is killed
 * -9 after WINDOW_KILL_AT messages; a second member drains the rest.
 * @returns the messages handled twice; fails on a lost one. */
static long kill9_redelivered(const char *topic, const char *group, const char *extra)
{
    const char *bs = bt_bootstrap();
    const char *dir = bt_tmpdir();
    char conf_path[256], log_path[256], err_path[256];
    const char *const argv[] = {"ballast", "run", conf_path, NULL};
    rows_arg_t kill_at, all;
    size_t rows;
    pid_t pid;

    snprintf(conf_path, sizeof(conf_path), "%s/%s.conf", dir, group);
    snprintf(log_path, sizeof(log_path), "%s/%s.rows", dir, group);
    snprintf(err_path, sizeof(err_path), "%s/%s.stderr", dir, group);
    bt_write_file(conf_path,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "topics = %s\n"
                  "handler = plugin\n"
                  "handler.plugin.path = %s\n"
                  "handler.plugin.param.log = %s\n"
                  "log.level = warn\n"
                  "%s",
                  bs, group, bt_group_lines(), topic, BALLAST_TEST_PLUGIN, log_path, extra);
    kill_at = (rows_arg_t){log_path, WINDOW_KILL_AT, false};
    pid = bt_spawn_ballast(argv, err_path);
    if (!bt_wait_for(plugin_rows_reached, &kill_at, 120000))
        fail_msg("%zu rows before the deadline; stderr: %s", plugin_rows(log_path, false),
                 bt_read_file(err_path));
    kill(pid, SIGKILL);
    assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
    cut_torn_row(log_path);
    rows = plugin_rows(log_path, false);

    pid = bt_spawn_ballast(argv, err_path);
    all = (rows_arg_t){log_path, WINDOW_TOTAL, true};
    if (!bt_wait_for(plugin_rows_reached, &all, 180000))
        fail_msg("only %zu distinct rows after the restart", plugin_rows(log_path, true));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    assert_true(bt_wait_committed_to_end(bs, group, topic, WINDOW_PARTS, 60000));
    print_message("%s: killed after %zu messages handled\n", group, rows);
    return (long)plugin_rows(log_path, false) - WINDOW_TOTAL;
}

/* The default cadence bounds what a kill -9 redoes to about 10,000 messages
 * (and what finished while commits were on their way): the same kill with
 * the old default (a commit every 5 s, set explicitly) runs beside it. */
static void test_kill9_redoes_at_most_the_message_bound(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("window");
    long now, before;

    bt_create_topic(bt_bootstrap(), topic, WINDOW_PARTS);
    bt_produce_seq(bt_bootstrap(), topic, WINDOW_PARTS, 0, WINDOW_TOTAL, 0);
    now = kill9_redelivered(topic, bt_unique("window-default"), "");
    before = kill9_redelivered(topic, bt_unique("window-5s"),
                               "kafka.auto.commit.interval.ms = 5000\n");
    print_message("kill -9 of a full-speed drain: %ld messages handled twice with the "
                  "default cadence, %ld with a commit every 5 s\n",
                  now, before);
    assert_in_range(now, 0, WINDOW_BOUND + WINDOW_IN_FLIGHT);
    if (now * 2 > before)
        fail_msg("the default cadence redid %ld messages, a commit every 5 s %ld: not a "
                 "fraction of it",
                 now, before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_twice_then_restart),
        cmocka_unit_test(test_kill9_redoes_at_most_the_message_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
