/*
 * test_stop_revoke.c - stopping and revoking while a slow handler holds
 * messages, against the real broker, with `ballast run` processes.
 *
 * The handler (tests/cli/plugins/test_plugin.c) takes a while per message
 * and writes a row per finished message tagged with the pid of the process
 * that ran it. The promise checked, exactly, per partition: the rows of the
 * first owner are the offsets [0, c) and the rows of the next owner are
 * [c, end), where c is what the first owner committed - what finished was
 * committed, what did not finish came back exactly once to the next owner,
 * nothing was lost and nothing was redelivered.
 *   - SIGTERM while work is queued and running, the drain finishing within
 *     shutdown.timeout.ms;
 *   - SIGTERM where shutdown.timeout.ms ends while handlers are running;
 *   - a cooperative revoke: a second member joins with cooperative-sticky
 *     and takes partitions that the first is working on.
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define PARTS 4
#define WAIT_MS 120000

/* ---- rows ---------------------------------------------------------------- */

static size_t count_rows(const char *path)
{
    size_t n;
    free(bt_plugin_rows(path, &n));
    return n;
}

typedef struct rows_arg {
    const char *path;
    size_t want;
} rows_arg_t;

static bool rows_reached(void *arg)
{
    rows_arg_t *a = arg;
    return count_rows(a->path) >= a->want;
}

static void wait_rows(const char *path, size_t want)
{
    rows_arg_t a = {path, want};

    if (!bt_wait_for(rows_reached, &a, WAIT_MS))
        fail_msg("%zu of %zu rows before the deadline", count_rows(path), want);
}

/* Checks the hand-over from @p first to @p next, partition by partition:
 * every offset below hwm has exactly one row; @p first's rows are a prefix
 * [0, c) and @p next's the rest [c, hwm), where c is committed[p] when
 * given. @returns the partitions both processes wrote rows for. */
static int check_handover(const char *path, int first, int next, const int64_t *hwm,
                          const int64_t *committed)
{
    size_t n;
    bt_row_t *rows = bt_plugin_rows(path, &n);
    int shared = 0;

    for (int p = 0; p < PARTS; p++) {
        int *who = calloc((size_t)hwm[p] + 1, sizeof(*who));
        int64_t first_end = 0;
        bool next_seen = false;

        assert_non_null(who);
        for (size_t i = 0; i < n; i++) {
            if (rows[i].partition != p)
                continue;
            if (rows[i].offset < 0 || rows[i].offset >= hwm[p])
                fail_msg("partition %d: a row for offset %lld, beyond the input", p,
                         rows[i].offset);
            if (rows[i].pid != first && rows[i].pid != next)
                fail_msg("partition %d offset %lld: a row by pid %d, neither %d nor %d", p,
                         rows[i].offset, rows[i].pid, first, next);
            if (who[rows[i].offset])
                fail_msg("partition %d offset %lld handled twice: by %d, then by %d "
                         "(a redelivery)",
                         p, rows[i].offset, who[rows[i].offset], rows[i].pid);
            who[rows[i].offset] = rows[i].pid;
        }
        for (int64_t o = 0; o < hwm[p]; o++) {
            if (!who[o])
                fail_msg("partition %d offset %lld was never handled (lost)", p,
                         (long long)o);
            if (who[o] == first && next_seen)
                fail_msg("partition %d: offset %lld handled by the first owner after "
                         "offsets of the next one",
                         p, (long long)o);
            if (who[o] == first)
                first_end = o + 1;
            else
                next_seen = true;
        }
        /* -1001: nothing committed, i.e. from the start */
        if (committed && first_end != (committed[p] < 0 ? 0 : committed[p]))
            fail_msg("partition %d: the first owner handled offsets below %lld but "
                     "committed %lld",
                     p, (long long)first_end, (long long)committed[p]);
        shared += first_end > 0 && next_seen;
        free(who);
    }
    free(rows);
    return shared;
}

/* ---- processes ------------------------------------------------------------- */

typedef struct pipeline {
    const char *bs, *topic, *group;
    char dir[256], rows[300];
} pipeline_t;

static void pipeline_new(pipeline_t *pl, const char *prefix, int per_partition)
{
    char name[64];

    pl->bs = bt_bootstrap();
    snprintf(name, sizeof(name), "%s", prefix);
    pl->topic = strdup(bt_unique(name));
    snprintf(name, sizeof(name), "%s-g", prefix);
    pl->group = strdup(bt_unique(name));
    snprintf(pl->dir, sizeof(pl->dir), "%s", bt_tmpdir());
    snprintf(pl->rows, sizeof(pl->rows), "%s/rows", pl->dir);
    bt_create_topic(pl->bs, pl->topic, PARTS);
    bt_produce_seq(pl->bs, pl->topic, PARTS, 0, PARTS * per_partition, 0);
}

static void pipeline_free(pipeline_t *pl)
{
    free((void *)pl->topic);
    free((void *)pl->group);
}

/* Starts `ballast run` with the slow plugin and @p extra config lines;
 * stderr goes to <dir>/<name>.log. */
static pid_t start(const pipeline_t *pl, const char *name, int every_ms, const char *extra,
                   char *log_path, size_t log_size)
{
    char conf_path[320];

    snprintf(conf_path, sizeof(conf_path), "%s/%s.conf", pl->dir, name);
    snprintf(log_path, log_size, "%s/%s.log", pl->dir, name);
    bt_write_file(conf_path,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "topics = %s\n"
                  "handler = plugin\n"
                  "handler.plugin.path = %s\n"
                  "handler.plugin.param.every_ms = %d\n"
                  "handler.plugin.param.log = %s\n"
                  "concurrency = %d\n"
                  "log.level = info\n"
                  "%s",
                  pl->bs, pl->group, bt_group_lines(), pl->topic, BALLAST_TEST_PLUGIN,
                  every_ms, pl->rows, PARTS, extra);
    return bt_spawn_ballast(ARGV("run", conf_path), log_path);
}

/* SIGTERM, then a clean exit (0) within a minute. */
static void stop_clean(pid_t pid, const char *log_path)
{
    int rc;

    bt_term(pid);
    if ((rc = bt_wait(pid, 60000)) != 0) {
        char *log = bt_read_file(log_path);
        fail_msg("ballast run exited %d after SIGTERM: %s", rc,
                 log ? log + (strlen(log) > 1500 ? strlen(log) - 1500 : 0) : "");
    }
}

/* ---- SIGTERM ------------------------------------------------------------------ */

/* Stops the first process while its handlers work through queued messages,
 * then lets a second one finish the input. */
static void stop_with_work_in_flight(const char *prefix, const char *extra)
{
    BT_REQUIRE_ENV();
    pipeline_t pl;
    char log_a[320], log_b[320];
    int64_t hwm[PARTS], committed[PARTS];
    size_t at_term, after_a, total = PARTS * 50;
    pid_t a, b;

    pipeline_new(&pl, prefix, 50);
    a = start(&pl, "a", 100, extra, log_a, sizeof(log_a));
    wait_rows(pl.rows, 4 * PARTS); /* under way */
    at_term = count_rows(pl.rows);
    stop_clean(a, log_a);
    after_a = count_rows(pl.rows);
    bt_committed(pl.bs, pl.group, pl.topic, PARTS, committed);
    print_message("%s: %zu rows at SIGTERM, %zu at exit; committed %lld %lld %lld %lld\n",
                  prefix, at_term, after_a, (long long)committed[0],
                  (long long)committed[1], (long long)committed[2],
                  (long long)committed[3]);
    /* The stop had work to finish, and left work for the next owner. */
    if (after_a <= at_term || after_a >= total)
        fail_msg("%s: %zu rows at SIGTERM, %zu at exit, of %zu: not a stop with work in "
                 "flight",
                 prefix, at_term, after_a, total);

    b = start(&pl, "b", 0, "", log_b, sizeof(log_b));
    wait_rows(pl.rows, total);
    stop_clean(b, log_b);
    bt_high_watermarks(pl.bs, pl.topic, PARTS, hwm);
    check_handover(pl.rows, a, b, hwm, committed);
    assert_int_equal(count_rows(pl.rows), total);
    assert_true(bt_wait_committed_to_end(pl.bs, pl.group, pl.topic, PARTS, 1));
    pipeline_free(&pl);
}

/* The drain finishes within shutdown.timeout.ms: max.inflight.messages
 * keeps the backlog in flight to one partition and part of the next, and
 * all of it finishes before the commit; the rest was never fetched. */
static void test_sigterm_drains_in_flight_then_redelivers_nothing(void **state)
{
    (void)state;
    stop_with_work_in_flight("term-drain", "max.inflight.messages = 60\n"
                                           "shutdown.timeout.ms = 30000\n");
}

/* shutdown.timeout.ms ends while every worker is inside a 100 ms handler
 * call, and more is queued: the queued messages are dropped and come back;
 * the calls already running get their grace, finish, and are committed
 * with the rest, so the next owner handles none of them again. */
static void test_sigterm_past_the_drain_timeout_redelivers_nothing(void **state)
{
    (void)state;
    stop_with_work_in_flight("term-timeout", "shutdown.timeout.ms = 30\n");
}

/* ---- cooperative revoke ----------------------------------------------------------- */

typedef struct log_arg {
    const char *path, *text;
} log_arg_t;

static bool log_has(void *arg)
{
    log_arg_t *a = arg;
    char *log = bt_read_file(a->path);
    bool yes = log && strstr(log, a->text);

    free(log);
    return yes;
}

static void test_cooperative_revoke_redelivers_nothing(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *coop = bt_cooperative_lines();
    pipeline_t pl;
    char log_a[320], log_b[320];
    int64_t hwm[PARTS];
    size_t total = PARTS * 100;
    log_arg_t regained;
    int moved;
    pid_t a, b;

    pipeline_new(&pl, "coop-revoke", 100);
    a = start(&pl, "a", 50, coop, log_a, sizeof(log_a));
    wait_rows(pl.rows, 4 * PARTS); /* every partition under way at A */
    b = start(&pl, "b", 50, coop, log_b, sizeof(log_b));
    wait_rows(pl.rows, total);
    /* The hand-over back: stop B, and A takes B's partitions back in an
     * incremental assignment; then stop A. */
    stop_clean(b, log_b);
    regained = (log_arg_t){log_a, "assigned 2 partition(s)"};
    if (!bt_wait_for(log_has, &regained, WAIT_MS))
        fail_msg("the first member did not take back the partitions of the second");
    stop_clean(a, log_a);
    bt_high_watermarks(pl.bs, pl.topic, PARTS, hwm);
    moved = check_handover(pl.rows, a, b, hwm, NULL);
    print_message("cooperative revoke: %d partition(s) moved with work under way\n", moved);
    if (!moved)
        fail_msg("no partition moved while the first member was working on it");
    assert_int_equal(count_rows(pl.rows), total);
    assert_true(bt_wait_committed_to_end(pl.bs, pl.group, pl.topic, PARTS, 1));
    pipeline_free(&pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_drains_in_flight_then_redelivers_nothing),
        cmocka_unit_test(test_sigterm_past_the_drain_timeout_redelivers_nothing),
        cmocka_unit_test(test_cooperative_revoke_redelivers_nothing),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
