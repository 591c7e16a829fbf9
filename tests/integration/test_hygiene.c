/*
 * test_hygiene.c - resources stay flat under churn: a `ballast run` daemon's
 * file descriptors, threads, memory and child processes, read from /proc,
 * are the same after many rebalances and handler restarts as after a
 * warm-up, and no message is lost on the way.
 *
 *   - Rebalances: a second member of the daemon's group joins and leaves
 *     over and over while messages keep arriving; each join and each leave
 *     is one rebalance in which the daemon revokes and is assigned again
 *     (its ballast_rebalances_total grows by two). The daemon writes every
 *     value to SQLite; at the end every produced value is there once and
 *     the group's committed offsets equal the high watermarks.
 *   - Handler restarts: `handler = exec` with a child that answers two
 *     requests and dies on the third (every other life exits 1, the others
 *     are killed by SIGSEGV). The unanswered message is retried on the next
 *     child, so each life ends in exactly one retry and one restart. Lives
 *     are counted by the children themselves (each appends its pid to a
 *     file); no zombie may remain and exactly one child may be alive.
 *
 * Why the real broker and not the mock cluster: the mock cluster takes
 * about session.timeout.ms - 1 s (at least 3 s) per rebalance phase, so
 * 1,000 rebalances would take more than an hour. The real broker with a
 * 100 ms heartbeat finishes one in well under a second.
 *
 * Counts: BALLAST_HYGIENE_REBALANCES (default 50, `make soak`: 1000) and
 * BALLAST_HYGIENE_RESTARTS (default 50, `make soak`: 100): the short form
 * keeps `make test` within its budget, the long one is `make soak`'s. Samples are taken when the
 * pipeline is idle (everything produced is committed) and the process's
 * descriptor, thread and child counts have been steady for 200 ms, so that
 * a transient (a connection being set up) is not mistaken for a leak.
 *
 * The memory bound, RSS_GROWTH_MAX_KIB: the allocator keeps freed memory
 * in per-thread caches and arenas and librdkafka sizes buffers to the
 * traffic it has seen, so RSS moves by up to a few hundred KiB between idle
 * samples with no leak at all (measured with glibc's malloc: +60 KiB over
 * 1,000 rebalances, +100 KiB over 100 restarts; with jemalloc, the
 * command's: +276 KiB over 100 rebalances, +132 KiB over 100 restarts).
 * 4 MiB over 1,000 rebalances still catches a leak of 4 KiB per rebalance
 * (one lost partition list or message batch each time); smaller leaks are
 * LeakSanitizer's job (`make leakcheck`).
 */
#include "support.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define PARTS 4
#define MSGS_PER_CYCLE 5
#define RSS_GROWTH_MAX_KIB 4096
/* AddressSanitizer keeps freed memory in quarantine (256 MiB by default),
 * so on the sanitizer build (`make leakcheck`, where the daemon is built
 * the same way) RSS says nothing about leaks: LeakSanitizer checks them. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang's way of saying it */
#define BT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(BT_ASAN)
#define RSS_MEANINGFUL 0
#else
#define RSS_MEANINGFUL 1
#endif
#define STEADY_POLLS 10 /* 10 polls of bt_wait_for: 200 ms */

static int env_count(const char *name, int dflt)
{
    const char *v = getenv(name);
    long n = v && *v ? strtol(v, NULL, 10) : dflt;

    return n > 0 ? (int)n : dflt;
}

/* ---- the daemon under test and its resources ------------------------------ */

typedef struct daemon_under_test {
    pid_t pid;
    char addr[64];
    char err_path[300];
} daemon_t;

static void daemon_start(daemon_t *d, const char *dir, const char *conf_text)
{
    char conf_path[300];

    snprintf(conf_path, sizeof(conf_path), "%s/ballast.conf", dir);
    snprintf(d->err_path, sizeof(d->err_path), "%s/stderr", dir);
    bt_write_file(conf_path, "%s", conf_text);
    d->pid = bt_spawn_ballast(ARGV("run", conf_path), d->err_path);
    bt_wait_listening(d->err_path, d->pid, d->addr, sizeof(d->addr));
}

static void daemon_stop(daemon_t *d)
{
    bt_term(d->pid);
    int rc = bt_wait(d->pid, 60000);
    if (rc != 0) {
        char *log = bt_read_file(d->err_path);
        fail_msg("ballast exited %d: %s", rc, log ? log : "");
    }
}

static double daemon_metric(const daemon_t *d, const char *name)
{
    double v = bt_metric(d->addr, name);

    if (v < 0)
        fail_msg("no %s on %s/metrics", name, d->addr);
    return v;
}

typedef struct steady_arg {
    pid_t pid;
    bt_proc_usage_t last;
    int same; /* consecutive polls with the same counts */
} steady_arg_t;

static bool counts_steady(void *opaque)
{
    steady_arg_t *a = opaque;
    bt_proc_usage_t u = bt_proc_usage(a->pid);
    bool same = u.fds == a->last.fds && u.threads == a->last.threads &&
                u.children == a->last.children && u.zombies == a->last.zombies;

    a->same = same ? a->same + 1 : 0;
    a->last = u;
    return a->same >= STEADY_POLLS;
}

/* The daemon's resources once its counts hold still. */
static bt_proc_usage_t steady_usage(const daemon_t *d, const char *when)
{
    steady_arg_t a = {d->pid, bt_proc_usage(d->pid), 0};

    if (!bt_wait_for(counts_steady, &a, 30000))
        fail_msg("%s: the daemon's fd/thread counts did not settle", when);
    print_message("%-9s fds %d, threads %d, RSS %ld KiB, children %d, zombies %d\n",
                  when, a.last.fds, a.last.threads, a.last.rss_kib, a.last.children,
                  a.last.zombies);
    return a.last;
}

static void assert_flat(bt_proc_usage_t warm, bt_proc_usage_t end)
{
    assert_int_equal(end.fds, warm.fds);
    assert_int_equal(end.threads, warm.threads);
    assert_int_equal(end.children, warm.children);
    assert_int_equal(end.zombies, 0);
    if (!RSS_MEANINGFUL)
        return;
    if (end.rss_kib - warm.rss_kib > RSS_GROWTH_MAX_KIB)
        fail_msg("RSS grew by %ld KiB (bound %d KiB)", end.rss_kib - warm.rss_kib,
                 RSS_GROWTH_MAX_KIB);
}

/* ---- a producer that keeps messages flowing ---------------------------------- */

typedef struct flow {
    rd_kafka_t *rk;
    const char *topic;
    int produced;
} flow_t;

static void flow_open(flow_t *f, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!f->rk)
        fail_msg("producer: %s", errstr);
    f->topic = topic;
    f->produced = 0;
}

/* Produces values "<n>" for the next @p count n, round-robin over PARTS. */
static void flow_send(flow_t *f, int count)
{
    for (int i = 0; i < count; i++, f->produced++) {
        char value[32];
        snprintf(value, sizeof(value), "%d", f->produced);
        assert_int_equal(rd_kafka_producev(f->rk, RD_KAFKA_V_TOPIC(f->topic),
                                           RD_KAFKA_V_PARTITION(f->produced % PARTS),
                                           RD_KAFKA_V_VALUE(value, strlen(value)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    rd_kafka_poll(f->rk, 0);
}

/* Waits until every message sent is acknowledged and committed by @p group. */
static void flow_drain(flow_t *f, const char *group, int timeout_ms)
{
    assert_int_equal(rd_kafka_flush(f->rk, 30000), 0);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), f->topic, PARTS), f->produced);
    if (!bt_wait_committed_to_end(bt_bootstrap(), group, f->topic, PARTS, timeout_ms))
        fail_msg("group %s did not commit all %d messages within %d ms", group,
                 f->produced, timeout_ms);
}

/* ---- 1. rebalances ------------------------------------------------------------- */

/* The member that joins and leaves: a plain librdkafka consumer that never
 * commits, so whatever it is handed goes back to the daemon uncommitted. */
static rd_kafka_t *churner_new(const char *group)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "session.timeout.ms", "6000", NULL, 0);
    rd_kafka_conf_set(conf, "heartbeat.interval.ms", "100", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))))
        fail_msg("churner: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int assigned_count(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    int n;

    assert_int_equal(rd_kafka_assignment(rk, &list), 0);
    n = list->cnt;
    rd_kafka_topic_partition_list_destroy(list);
    return n;
}

/* Serves @p rk until the daemon's rebalance counter reaches @p want and, when
 * @p churner_assigned, the churner holds partitions. */
static void churn_until(rd_kafka_t *rk, const daemon_t *d, double want,
                        bool churner_assigned, const char *what)
{
    int64_t deadline = bt_now_ms() + 30000;

    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 20);
        if (m)
            rd_kafka_message_destroy(m);
        if ((!churner_assigned || assigned_count(rk) > 0) &&
            daemon_metric(d, "ballast_rebalances_total") >= want)
            return;
        if (bt_now_ms() > deadline)
            fail_msg("%s: no rebalance within 30 s (daemon's counter %.0f, want %.0f)",
                     what, daemon_metric(d, "ballast_rebalances_total"), want);
    }
}

/* One join and one leave of the churner: two rebalances, in each of which
 * the daemon revokes and is assigned again. */
static void churn_cycle(rd_kafka_t *rk, const daemon_t *d, const char *topic)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    double base = daemon_metric(d, "ballast_rebalances_total");

    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    churn_until(rk, d, base + 2, true, "join");
    assert_int_equal(rd_kafka_unsubscribe(rk), 0);
    churn_until(rk, d, base + 4, false, "leave");
}

static long count_rows(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long n = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(DISTINCT v) FROM seen", -1, &st,
                                        NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void create_seen_table(const char *path)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE seen (v TEXT PRIMARY KEY)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static void start_sqlite_daemon(daemon_t *d, const char *dir, const char *topic,
                                const char *group, const char *db)
{
    char conf[2048];

    create_seen_table(db);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\n"
             "kafka.group.id = %s\n"
             "kafka.session.timeout.ms = 6000\n"
             "kafka.heartbeat.interval.ms = 100\n"
             /* Eager, as the churner (librdkafka's default): every churn
              * cycle revokes and assigns every partition, the most work a
              * rebalance can make, and a group must not mix the two kinds
              * of assignor. */
             "kafka.partition.assignment.strategy = range,roundrobin\n"
             "kafka.auto.commit.interval.ms = 200\n"
             "topics = %s\n"
             "handler = sqlite\n"
             "handler.sqlite.path = %s\n"
             "handler.sqlite.sql = INSERT INTO seen(v) VALUES (:value) "
             "ON CONFLICT(v) DO NOTHING\n"
             "metrics.listen = 127.0.0.1:0\n",
             bt_bootstrap(), group, topic, db);
    daemon_start(d, dir, conf);
}

static void run_cycles(rd_kafka_t *churner, const daemon_t *d, flow_t *f, int cycles)
{
    for (int i = 0; i < cycles; i++) {
        flow_send(f, MSGS_PER_CYCLE);
        churn_cycle(churner, d, f->topic);
    }
}

static void test_flat_across_rebalances(void **state)
{
    BT_REQUIRE_ENV();
    int cycles = (env_count("BALLAST_HYGIENE_REBALANCES", 50) + 1) / 2;
    int warm_cycles = cycles / 10 > 5 ? cycles / 10 : 5;
    const char *dir = bt_tmpdir(), *topic = bt_unique("hyg-reb"),
               *group = bt_unique("hyg-reb-g");
    char db[300];
    daemon_t d;
    flow_t f;
    rd_kafka_t *churner = churner_new(group);
    bt_proc_usage_t warm, end;
    double start_count, rebalances;
    int64_t t0;

    (void)state;
    snprintf(db, sizeof(db), "%s/seen.db", dir);
    bt_create_topic(bt_bootstrap(), topic, PARTS);
    flow_open(&f, topic);
    start_sqlite_daemon(&d, dir, topic, group, db);
    flow_send(&f, 100);
    flow_drain(&f, group, 60000);
    start_count = daemon_metric(&d, "ballast_rebalances_total");
    run_cycles(churner, &d, &f, warm_cycles);
    flow_drain(&f, group, 60000);
    warm = steady_usage(&d, "warm-up");
    t0 = bt_now_ms();
    run_cycles(churner, &d, &f, cycles);
    print_message("%d rebalances in %.1f s\n", cycles * 2, (bt_now_ms() - t0) / 1000.0);
    flow_drain(&f, group, 60000);
    end = steady_usage(&d, "end");
    /* Each rebalance is a revoke and an assignment at the daemon. */
    rebalances = (daemon_metric(&d, "ballast_rebalances_total") - start_count) / 2;
    print_message("rebalances counted by the daemon: %.0f\n", rebalances);
    assert_true(rebalances >= 2.0 * (warm_cycles + cycles));
    assert_flat(warm, end);
    daemon_stop(&d);
    assert_int_equal(count_rows(db), f.produced);
    rd_kafka_destroy(churner);
    rd_kafka_destroy(f.rk);
}

/* ---- 2. handler restarts -------------------------------------------------------- */

static const char child_script[] =
    "# Answers two requests and dies on the third without answering it:\n"
    "# every other life exits 1, the others are killed by SIGSEGV.\n"
    "ulimit -c 0\n"
    "echo $$ >> \"$1\"\n"
    "life=$(wc -l < \"$1\")\n"
    "answered=0\n"
    "while IFS= read -r request; do\n"
    "    if [ \"$answered\" -eq 2 ]; then\n"
    "        [ $((life % 2)) -eq 0 ] && kill -SEGV $$\n"
    "        exit 1\n"
    "    fi\n"
    "    echo '{\"status\":\"ok\"}'\n"
    "    answered=$((answered + 1))\n"
    "done\n";

static long count_lines(const char *path)
{
    char *text = bt_read_file(path);
    long n = 0;

    assert_non_null(text);
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    free(text);
    return n;
}

static void start_exec_daemon(daemon_t *d, const char *dir, const char *topic,
                              const char *group, const char *lives)
{
    char conf[2048], script[300];

    snprintf(script, sizeof(script), "%s/child.sh", dir);
    bt_write_file(script, "%s", child_script);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\n"
             "kafka.group.id = %s\n"
             "kafka.auto.commit.interval.ms = 200\n"
             "topics = %s\n"
             "handler = exec\n"
             "handler.exec.command = sh %s %s\n"
             "retry.backoff.initial.ms = 10\n"
             "retry.backoff.max.ms = 10\n"
             "metrics.listen = 127.0.0.1:0\n",
             bt_bootstrap(), group, topic, script, lives);
    daemon_start(d, dir, conf);
}

static void test_flat_across_handler_restarts(void **state)
{
    BT_REQUIRE_ENV();
    int restarts = env_count("BALLAST_HYGIENE_RESTARTS", 50);
    const char *dir = bt_tmpdir(), *topic = bt_unique("hyg-exec"),
               *group = bt_unique("hyg-exec-g");
    char lives[300];
    daemon_t d;
    flow_t f;
    bt_proc_usage_t warm, end;
    long warm_lives, end_lives;
    int64_t t0;

    (void)state;
    snprintf(lives, sizeof(lives), "%s/lives", dir);
    bt_create_topic(bt_bootstrap(), topic, PARTS);
    flow_open(&f, topic);
    start_exec_daemon(&d, dir, topic, group, lives);
    flow_send(&f, 20); /* warm-up: about ten restarts */
    flow_drain(&f, group, 60000);
    warm = steady_usage(&d, "warm-up");
    warm_lives = count_lines(lives);
    t0 = bt_now_ms();
    /* Each life handles two fresh messages (and the one its predecessor
     * died on), so 2n + 2 messages take at least n more restarts. */
    flow_send(&f, 2 * restarts + 2);
    flow_drain(&f, group, 60000 + restarts * 1000);
    end = steady_usage(&d, "end");
    end_lives = count_lines(lives);
    print_message("%ld restarts in %.1f s; %ld lives in all\n", end_lives - warm_lives,
                  (bt_now_ms() - t0) / 1000.0, end_lives);
    assert_true(end_lives - warm_lives >= restarts);
    /* Every life but the current one died holding one message: no verdict
     * on it, so it was handed to the next life without counting a retry. */
    assert_int_equal((long)daemon_metric(&d, "ballast_retries_total"), 0);
    assert_int_equal((long)daemon_metric(&d, "ballast_messages_processed_total{outcome=\"ok\"}"),
                     f.produced);
    assert_int_equal(end.children, 1);
    assert_flat(warm, end);
    daemon_stop(&d);
    rd_kafka_destroy(f.rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_across_handler_restarts),
        cmocka_unit_test(test_flat_across_rebalances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
