/*
 * test_exactly_once.c - Kafka-to-Kafka exactly-once against the real
 * broker, the way Kafka's own transaction system test does it: sequenced
 * messages are copied by `ballast run` (forward, semantics = exactly-once)
 * while it is kill -9'd after 20%, 40% and 60% of the work, SIGTERM'd once,
 * and the broker is hard-restarted; a read_committed reader must finally see
 * every input exactly once, in order per key. Also: a second instance with
 * the same transactional.id fences the first, and the read_committed reader
 * the checks use waits for a transaction left open instead of stopping at it.
 */
#include "support.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 4
#define TOTAL 100000
#define KEYS 100

typedef struct progress {
    const char *bootstrap, *topic;
    int64_t want;
} progress_t;

/* Output records written (committed or not): a progress gauge only. */
static bool output_reached(void *arg)
{
    progress_t *p = arg;
    return bt_total_watermark(p->bootstrap, p->topic, PARTS) >= p->want;
}

/* Every input value exactly once, and per key in increasing order. */
static void verify_output(const char *bs, const char *out)
{
    size_t n;
    bt_record_t *recs = bt_consume_to_end(bs, out, 180000, &n);
    char *seen = calloc(TOTAL, 1);
    long last[KEYS];
    size_t dups = 0, missing = 0;

    assert_non_null(seen);
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    for (size_t i = 0; i < n; i++) {
        long v = strtol(recs[i].value, NULL, 10);
        long k = strtol(recs[i].key + 1, NULL, 10);
        assert_true(v >= 0 && v < TOTAL && k >= 0 && k < KEYS);
        if (seen[v] && dups++ < 5)
            print_message("duplicate value %ld at output partition %d offset %lld\n",
                          v, (int)recs[i].partition, (long long)recs[i].offset);
        seen[v] = 1;
        if (v <= last[k] && !dups)
            fail_msg("key k%ld: value %ld after %ld (order per key broken)", k, v,
                     last[k]);
        last[k] = v;
    }
    for (long v = 0; v < TOTAL; v++)
        missing += !seen[v];
    print_message("read_committed output: %zu records, %zu duplicates, %zu missing\n",
                  n, dups, missing);
    assert_int_equal(dups, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(n, TOTAL);
    free(seen);
    bt_records_free(recs, n);
}

/* The last part of a log file: the end says why it stopped. */
static const char *log_tail(const char *path)
{
    static char tail[3000];
    char *text = bt_read_file(path);
    size_t n = text ? strlen(text) : 0;

    snprintf(tail, sizeof(tail), "%s", text ? text + (n > 2900 ? n - 2900 : 0) : "");
    free(text);
    return tail;
}

static void write_conf(const char *path, const char *bs, const char *group,
                       const char *in, const char *out, const char *txn_id)
{
    bt_write_file(path,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "kafka.transactional.id = %s\n"
                  "kafka.transaction.timeout.ms = 20000\n"
                  "topics = %s\n"
                  "handler = forward\n"
                  "output.topic = %s\n"
                  "semantics = exactly-once\n"
                  "transaction.interval.ms = 100\n"
                  "ordering = key\n"
                  "concurrency = 4\n"
                  "log.level = warn\n",
                  bs, group, bt_group_lines(), txn_id, in, out);
}

static void test_copy_exactly_once_through_kills_and_restarts(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("eos-in"), *out = bt_unique("eos-out");
    const char *group = bt_unique("eos-g"), *txn_id = bt_unique("eos-txn");
    const char *dir = bt_tmpdir();
    char conf[256], errp[256];
    const char *const argv[] = {"ballast", "run", conf, NULL};
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/eos.conf", dir);
    snprintf(errp, sizeof(errp), "%s/stderr", dir);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, out, PARTS);
    bt_produce_seq(bs, in, 0, 0, TOTAL, KEYS);
    write_conf(conf, bs, group, in, out, txn_id);

    /* Three hard kills after 20%, 40% and 60% of the output was written. */
    for (int k = 1; k <= 3; k++) {
        progress_t p = {bs, out, (int64_t)TOTAL * k / 5};
        pid = bt_spawn_ballast(argv, errp);
        if (!bt_wait_for(output_reached, &p, 120000))
            fail_msg("no progress before kill %d: %s", k, bt_read_file(errp));
        kill(pid, SIGKILL);
        assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
    }
    /* A graceful stop at 80%. */
    {
        progress_t p = {bs, out, (int64_t)TOTAL * 4 / 5};
        pid = bt_spawn_ballast(argv, errp);
        if (!bt_wait_for(output_reached, &p, 120000))
            fail_msg("no progress before SIGTERM: %s", bt_read_file(errp));
        bt_term(pid);
        assert_int_equal(bt_wait(pid, 60000), 0);
    }
    /* The rest, then a clean stop once the input is fully committed. */
    pid = bt_spawn_ballast(argv, errp);
    if (!bt_wait_committed_to_end(bs, group, in, PARTS, 180000))
        fail_msg("input not fully committed: %s", bt_read_file(errp));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    verify_output(bs, out);
}

static void restart_broker(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/testenv' restart-kafka --hard >/dev/null",
             BALLAST_SRC_DIR);
    assert_int_equal(system(cmd), 0);
}

static void test_copy_exactly_once_across_broker_hard_restart(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("eosb-in"), *out = bt_unique("eosb-out");
    const char *group = bt_unique("eosb-g"), *txn_id = bt_unique("eosb-txn");
    const char *dir = bt_tmpdir();
    char conf[256], errp[256];
    const char *const argv[] = {"ballast", "run", conf, NULL};
    progress_t p = {bs, NULL, TOTAL / 4};
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/eos.conf", dir);
    snprintf(errp, sizeof(errp), "%s/stderr", dir);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, out, PARTS);
    bt_produce_seq(bs, in, 0, 0, TOTAL, KEYS);
    write_conf(conf, bs, group, in, out, txn_id);
    p.topic = out;
    pid = bt_spawn_ballast(argv, errp);
    if (!bt_wait_for(output_reached, &p, 120000))
        fail_msg("no progress before the broker restart: %s", bt_read_file(errp));
    restart_broker();
    if (!bt_wait_committed_to_end(bs, group, in, PARTS, 240000))
        fail_msg("input not fully committed after the broker restart: ...%s",
                 log_tail(errp));
    bt_term(pid);
    /* The first instance may have died of an unrecoverable broker error;
     * then a restart must finish the job without duplicates. */
    if (bt_wait(pid, 60000) != 0) {
        pid = bt_spawn_ballast(argv, errp);
        bt_term(pid);
        assert_int_equal(bt_wait(pid, 60000), 0);
    }
    verify_output(bs, out);
}

static bool assigned(void *path)
{
    char *text = bt_read_file(path);
    bool yes = text && strstr(text, "assigned");
    free(text);
    return yes;
}

static void test_same_transactional_id_fences_the_older_instance(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("fence-in"), *out = bt_unique("fence-out");
    const char *group = bt_unique("fence-g"), *txn_id = bt_unique("fence-txn");
    const char *dir = bt_tmpdir();
    char conf[256], err_a[256], err_b[256], *text;
    const char *const argv[] = {"ballast", "run", conf, NULL};
    progress_t p = {bs, NULL, 1000};
    pid_t a, b;
    int rc;

    snprintf(conf, sizeof(conf), "%s/eos.conf", dir);
    snprintf(err_a, sizeof(err_a), "%s/a.stderr", dir);
    snprintf(err_b, sizeof(err_b), "%s/b.stderr", dir);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, out, PARTS);
    bt_produce_seq(bs, in, 0, 0, TOTAL / 10, KEYS);
    write_conf(conf, bs, group, in, out, txn_id);
    p.topic = out;
    a = bt_spawn_ballast(argv, err_a);
    if (!bt_wait_for(output_reached, &p, 120000))
        fail_msg("first instance made no progress: %s", bt_read_file(err_a));
    {
        /* B's start-up (init_transactions with the same id) fences A; A
         * learns it at its next transaction, so keep data coming. */
        char conf_b[300];
        const char *const argv_b[] = {"ballast", "run", conf_b, "-X", "log.level=info", NULL};
        snprintf(conf_b, sizeof(conf_b), "%s", conf);
        b = bt_spawn_ballast(argv_b, err_b);
        if (!bt_wait_for(assigned, err_b, 60000))
            fail_msg("second instance did not join: %s", bt_read_file(err_b));
        bt_produce_seq(bs, in, 0, TOTAL / 10, TOTAL / 10, KEYS);
    }
    rc = bt_wait(a, 120000);
    text = bt_read_file(err_a);
    if (rc != 1 || !strstr(text, "transactional.id"))
        fail_msg("the older instance was not fenced (exit %d): %s", rc, text);
    free(text);
    /* The newer instance finishes the work; nothing is doubled. */
    if (!bt_wait_committed_to_end(bs, group, in, PARTS, 120000))
        fail_msg("the newer instance did not finish: %s\n--- older: %s",
                 bt_read_file(err_b), bt_read_file(err_a));
    bt_term(b);
    assert_int_equal(bt_wait(b, 60000), 0);
    {
        size_t n;
        bt_record_t *recs = bt_consume_to_end(bs, out, 60000, &n);
        char *seen = calloc(2 * TOTAL / 10, 1);
        assert_non_null(seen);
        assert_int_equal(n, 2 * TOTAL / 10);
        for (size_t i = 0; i < n; i++) {
            long v = strtol(recs[i].value, NULL, 10);
            assert_int_equal(seen[v], 0);
            seen[v] = 1;
        }
        free(seen);
        bt_records_free(recs, n);
    }
}

/* A transactional producer that has written @p value to partition 0 of
 * @p topic and flushed it, its transaction left open. */
static rd_kafka_t *open_txn_with(const char *bs, const char *topic, const char *id,
                                 const char *value)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "transactional.id", id, NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_null(rd_kafka_init_transactions(rk, 30000));
    assert_null(rd_kafka_begin_transaction(rk));
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                       RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    return rk;
}

typedef struct reading {
    const char *bs, *topic;
    bt_record_t *recs;
    size_t n;
} reading_t;

static void *read_to_end(void *arg)
{
    reading_t *r = arg;
    r->recs = bt_consume_to_end(r->bs, r->topic, 60000, &r->n);
    return NULL;
}

static bool reader_waiting(void *arg)
{
    return bt_reader_open_txn_waits() > *(int *)arg;
}

/* The checkers read output read_committed "to the end"; that end is the
 * last stable offset, so a transaction left open hides every committed
 * record written after its first one. The reader must wait for the open
 * transaction to end rather than report those records lost. */
static void test_reader_waits_for_an_open_transaction(void **state)
{
    BT_REQUIRE_ENV();
    (void)state;
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("eo-lso"), *id_a = bt_unique("eo-lso-a"),
               *id_b = bt_unique("eo-lso-b");
    int waits = bt_reader_open_txn_waits();
    reading_t r = {.bs = bs, .topic = topic};
    rd_kafka_t *a, *b;
    pthread_t reader;

    bt_create_topic(bs, topic, 1);
    a = open_txn_with(bs, topic, id_a, "first, left open");
    b = open_txn_with(bs, topic, id_b, "second, committed");
    assert_null(rd_kafka_commit_transaction(b, 30000));
    assert_int_equal(pthread_create(&reader, NULL, read_to_end, &r), 0);
    assert_true(bt_wait_for(reader_waiting, &waits, 30000));
    assert_null(rd_kafka_commit_transaction(a, 30000));
    assert_int_equal(pthread_join(reader, NULL), 0);
    assert_int_equal(r.n, 2);
    bt_records_free(r.recs, r.n);
    rd_kafka_destroy(a);
    rd_kafka_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_exactly_once_through_kills_and_restarts),
        cmocka_unit_test(test_same_transactional_id_fences_the_older_instance),
        cmocka_unit_test(test_copy_exactly_once_across_broker_hard_restart),
        cmocka_unit_test(test_reader_waits_for_an_open_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
