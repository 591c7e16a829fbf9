/*
 * test_failures.c - failure handling against the real broker: retries,
 * dead-letter records with their headers, retry tiers with their delays,
 * back-offs longer than max.poll.interval.ms, the DLQ breaker (in a row and
 * by ratio), and a dead-letter copy that the broker refuses: the pipeline
 * stops and does not commit past it. (A copy whose acknowledgement is
 * delayed is in tests/mock/test_mock_faults.c: the fault needs injecting.)
 * A blocking retry in processing = batch keeps the order of what the batch
 * emits.
 */
#include "support.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 90000

static void wait_count(bt_recorder_t *rec, size_t want)
{
    bt_recorder_wait_count(rec, want, WAIT_MS);
}

typedef struct stat_arg {
    bt_runner_t *run;
    uint64_t want;
} stat_arg_t;

static bool dead_lettered(void *arg)
{
    stat_arg_t *a = arg;
    ballast_stats_t st;
    ballast_consumer_stats(bt_runner_consumer(a->run), &st, sizeof(st));
    return st.dead_lettered >= a->want;
}

/* Reads every record of a topic with its headers (read_committed). */
typedef struct dlq_rec {
    char value[64];
    char orig_topic[160], orig_part[16], orig_off[32], retry_count[16], error[128],
        group[160], failed_at[40];
} dlq_rec_t;

static size_t read_dlq(const char *bs, const char *topic, dlq_rec_t *out, size_t max)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    size_t n = 0;
    int64_t deadline = bt_now_ms() + 30000;
    bool ended = false;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "bt-dlq-reader", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, NULL, 0);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(list, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    while (!ended && bt_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *h;
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            ended = true;
        if (!m->err && n < max && !rd_kafka_message_headers(m, &h)) {
            static const char *names[] = {"x-original-topic", "x-original-partition",
                                          "x-original-offset", "x-retry-count",
                                          "x-error-message", "x-consumer-group",
                                          "x-failed-at"};
            char *dst[] = {out[n].orig_topic, out[n].orig_part, out[n].orig_off,
                           out[n].retry_count, out[n].error, out[n].group,
                           out[n].failed_at};
            size_t sizes[] = {160, 16, 32, 16, 128, 160, 40};
            memset(&out[n], 0, sizeof(out[n]));
            snprintf(out[n].value, sizeof(out[n].value), "%.*s", (int)m->len,
                     (const char *)m->payload);
            for (size_t i = 0; i < 7; i++) {
                const void *v;
                size_t len;
                if (!rd_kafka_header_get_last(h, names[i], &v, &len))
                    snprintf(dst[i], sizes[i], "%.*s", (int)len, (const char *)v);
            }
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    assert_true(ended);
    return n;
}

static void test_one_percent_poison_reaches_the_dlq_exactly(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("poison"), *dlq = bt_unique("poison-dlq");
    const char *group = bt_unique("poison-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    dlq_rec_t *recs = calloc(100, sizeof(*recs));
    stat_arg_t st = {NULL, 40};
    long last[4] = {-1, -1, -1, -1};
    size_t n;

    assert_non_null(recs);
    bt_create_topic(bs, topic, 4);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, topic, 4, 0, 4000, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    rec->fail_modulo = 100; /* 40 poison messages: values 0, 100, ... */
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    run = bt_runner_start(conf);
    st.run = run;
    wait_count(rec, 3960);
    if (!bt_wait_for(dead_lettered, &st, WAIT_MS))
        fail_msg("not every poison message was dead-lettered");
    assert_null(bt_runner_stop(run));

    /* The sink holds exactly the rest, in order per partition. */
    assert_int_equal(rec->count, 3960);
    for (size_t i = 0; i < rec->count; i++) {
        long v = strtol(rec->seen[i].value, NULL, 10);
        int p = rec->seen[i].partition;
        assert_true(v % 100 != 0);
        assert_true(v > last[p]);
        last[p] = v;
    }
    /* The DLQ holds exactly the poison set, each once, with its origin. */
    n = read_dlq(bs, dlq, recs, 100);
    assert_int_equal(n, 40);
    for (size_t i = 0; i < n; i++) {
        long v = strtol(recs[i].value, NULL, 10);
        assert_int_equal(v % 100, 0);
        assert_string_equal(recs[i].orig_topic, topic);
        assert_int_equal(strtol(recs[i].orig_part, NULL, 10), v % 4);
        assert_int_equal(strtol(recs[i].orig_off, NULL, 10), v / 4);
        assert_string_equal(recs[i].retry_count, "0");
        assert_string_equal(recs[i].error, "injected failure");
        assert_string_equal(recs[i].group, group);
        assert_int_equal(strlen(recs[i].failed_at), 24); /* 2026-11-26T20:35:01.123Z */
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(recs[i].value, recs[j].value);
    }
    free(recs);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_fails_twice_then_succeeds_leaves_dlq_empty(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("twice"), *dlq = bt_unique("twice-dlq");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    dlq_rec_t recs[4];
    ballast_stats_t st;

    bt_create_topic(bs, topic, 1);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, topic, 1, 0, 10, 0);
    conf = bt_conf_recording(bs, bt_unique("twice-g"), topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    rec->fail_value = "4";
    rec->fail_outcome = BALLAST_OUTCOME_RETRY;
    rec->fail_times = 2;
    run = bt_runner_start(conf);
    wait_count(rec, 10);
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    assert_null(bt_runner_stop(run));
    assert_int_equal(rec->count, 10); /* processed once each */
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.dead_lettered, 0);
    assert_int_equal(read_dlq(bs, dlq, recs, 4), 0);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_backoff_longer_than_max_poll_interval(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("longwait");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    ballast_stats_t st;
    int64_t start;

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 5, 0);
    conf = bt_conf_recording(bs, bt_unique("longwait-g"), topic, rec);
    bt_set(conf, "kafka.max.poll.interval.ms", "6000");
    bt_set(conf, "retry.backoff.initial.ms", "9000");
    bt_set(conf, "retry.backoff.max.ms", "9000");
    bt_set(conf, "retry.backoff.jitter", "0");
    rec->fail_value = "2";
    rec->fail_outcome = BALLAST_OUTCOME_RETRY;
    rec->fail_times = 1;
    start = bt_now_ms();
    run = bt_runner_start(conf);
    wait_count(rec, 5);
    assert_true(bt_now_ms() - start >= 9000); /* the back-off really waited */
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    assert_null(bt_runner_stop(run));
    assert_int_equal(st.rebalances, 1); /* the first assignment only */
    assert_int_equal(rec->count, 5);    /* no duplicate */
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_retry_tiers_delay_then_dlq(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("tiers"), *dlq = bt_unique("tiers-dlq");
    const char *t1 = bt_unique("tiers-r1"), *t2 = bt_unique("tiers-r2");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    stat_arg_t st = {NULL, 1};
    char tiers[512];
    dlq_rec_t recs[4];
    int64_t start;
    int handled[10] = {0};

    bt_create_topic(bs, topic, 1);
    bt_create_topic(bs, dlq, 1);
    bt_create_topic(bs, t1, 1);
    bt_create_topic(bs, t2, 1);
    bt_produce_seq(bs, topic, 1, 0, 10, 0);
    conf = bt_conf_recording(bs, bt_unique("tiers-g"), topic, rec);
    snprintf(tiers, sizeof(tiers), "%s:700,%s:1500", t1, t2);
    bt_set(conf, "retry.topics", tiers);
    bt_set(conf, "retry.max.attempts", "1");
    bt_set(conf, "dlq.topic", dlq);
    rec->fail_value = "7"; /* always transient: walks both tiers, then the DLQ */
    rec->fail_outcome = BALLAST_OUTCOME_RETRY;
    start = bt_now_ms();
    run = bt_runner_start(conf);
    st.run = run;
    wait_count(rec, 9);
    if (!bt_wait_for(dead_lettered, &st, WAIT_MS))
        fail_msg("the message never reached the DLQ");
    /* Three attempts (input, tier 1, tier 2) separated by the tier delays. */
    assert_true(bt_now_ms() - start >= 2200);
    assert_int_equal(rec->failed, 3);
    assert_null(bt_runner_stop(run));
    assert_int_equal(read_dlq(bs, dlq, recs, 4), 1);
    assert_string_equal(recs[0].value, "7");
    assert_string_equal(recs[0].orig_topic, topic); /* the first origin kept */
    assert_string_equal(recs[0].orig_off, "7");
    assert_string_equal(recs[0].retry_count, "2");
    /* Every other value succeeded exactly once; 7 never did. */
    for (size_t i = 0; i < rec->count; i++) {
        long v = strtol(rec->seen[i].value, NULL, 10);
        assert_true(v >= 0 && v < 10);
        handled[v]++;
    }
    for (int v = 0; v < 10; v++)
        if (handled[v] != (v == 7 ? 0 : 1))
            fail_msg("value %d succeeded %d time(s), expected %d", v, handled[v], v != 7);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_breaker_trips_on_a_failing_handler(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("breaker"), *dlq = bt_unique("breaker-dlq");
    const char *group = bt_unique("breaker-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    stat_arg_t st = {NULL, 5};
    ballast_error_t *err;
    char reason[512];
    dlq_rec_t recs[16];
    int64_t committed[1];

    bt_create_topic(bs, topic, 1);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, topic, 1, 0, 100, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "dlq.max.consecutive", "5");
    rec->fail_modulo = 1; /* everything fails: a bad deploy */
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    run = bt_runner_start(conf);
    st.run = run;
    if (!bt_wait_for(dead_lettered, &st, WAIT_MS))
        fail_msg("nothing was dead-lettered");
    for (int64_t deadline = bt_now_ms() + 10000;
         ballast_consumer_healthy(bt_runner_consumer(run), reason, sizeof(reason));) {
        if (bt_now_ms() > deadline)
            fail_msg("/healthz did not fail after the breaker tripped");
        usleep(20 * 1000);
    }
    assert_non_null(strstr(reason, "breaker"));
    err = bt_runner_stop(run);
    assert_non_null(err);
    assert_non_null(strstr(ballast_error_message(err), "dlq.max.consecutive"));
    ballast_error_destroy(err);
    assert_int_equal(read_dlq(bs, dlq, recs, 16), 5);
    bt_committed(bs, group, topic, 1, committed);
    assert_int_equal(committed[0], 5); /* the sixth comes back */
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* dlq.max.ratio: with a window of 10 and every second message failing,
 * more than 0.3 of the window is dead once it is full, at value 10: that
 * message is not dead-lettered and nothing after it is committed. At 0.5
 * exactly the breaker never trips. */
static void test_breaker_trips_on_the_failure_ratio(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("ratio"), *dlq = bt_unique("ratio-dlq");
    const char *group = bt_unique("ratio-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    stat_arg_t st = {NULL, 50};
    ballast_error_t *err;
    char reason[512];
    dlq_rec_t *recs = calloc(64, sizeof(*recs));
    int64_t committed[1];

    assert_non_null(recs);
    bt_create_topic(bs, topic, 1);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, topic, 1, 0, 100, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "dlq.window.messages", "10");
    bt_set(conf, "dlq.max.ratio", "0.3");
    rec->fail_modulo = 2; /* 0, 2, 4, ... fail */
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    run = bt_runner_start(conf);
    /* /healthz fails for the breaker (not merely while starting). */
    for (int64_t deadline = bt_now_ms() + WAIT_MS;
         ballast_consumer_healthy(bt_runner_consumer(run), reason, sizeof(reason)) ||
         !strstr(reason, "breaker");) {
        if (bt_now_ms() > deadline)
            fail_msg("the breaker did not trip on the ratio");
        usleep(20 * 1000);
    }
    err = bt_runner_stop(run);
    assert_non_null(err);
    if (!strstr(ballast_error_message(err), "dlq.max.ratio"))
        fail_msg("the stop does not name dlq.max.ratio: %s", ballast_error_message(err));
    ballast_error_destroy(err);
    assert_int_equal(read_dlq(bs, dlq, recs, 64), 5); /* 0, 2, 4, 6, 8 */
    for (int i = 0; i < 5; i++)
        assert_int_equal(strtol(recs[i].value, NULL, 10), 2 * i);
    bt_committed(bs, group, topic, 1, committed);
    assert_int_equal(committed[0], 10); /* the tripping message comes back */

    /* Half the window failing is not more than 0.5: no trip, to the end. */
    dlq = bt_unique("ratio-half-dlq");
    group = bt_unique("ratio-half-g");
    bt_create_topic(bs, dlq, 1);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "kafka.group.id", group);
    bt_set(conf, "dlq.max.ratio", "0.5");
    run = bt_runner_start(conf);
    st.run = run;
    if (!bt_wait_for(dead_lettered, &st, WAIT_MS))
        fail_msg("not every failure was dead-lettered");
    if (!bt_wait_committed_to_end(bs, group, topic, 1, WAIT_MS))
        fail_msg("the run at ratio 0.5 did not commit to the end");
    assert_true(ballast_consumer_healthy(bt_runner_consumer(run), reason, sizeof(reason)));
    assert_null(bt_runner_stop(run));
    assert_int_equal(read_dlq(bs, dlq, recs, 64), 50);
    free(recs);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* The broker refuses the dead-letter copy for good (the DLQ topic's
 * max.message.bytes is smaller than the record): the pipeline stops with an
 * error naming the DLQ topic and the message, and does not commit past it.
 * After the topic is fixed, a restart dead-letters it and goes on. */
static void test_dlq_refused_stops_without_commit(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("dlqrefused"), *dlq = bt_unique("dlqrefused-dlq");
    const char *group = bt_unique("dlqrefused-g");
    const char *const refuse[] = {"max.message.bytes", "100", NULL};
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    ballast_error_t *err;
    bt_runner_t *run;
    dlq_rec_t recs[4];
    int64_t committed[1];

    bt_create_topic(bs, topic, 1);
    bt_create_topic_conf(bs, dlq, 1, refuse);
    bt_produce_seq(bs, topic, 1, 0, 20, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    rec->fail_value = "5";
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    err = bt_runner_join(bt_runner_start(conf), WAIT_MS);
    if (!err)
        fail_msg("the run went on although its dead letter was refused");
    print_message("refused dead letter: %s\n", ballast_error_message(err));
    if (!strstr(ballast_error_message(err), dlq) ||
        !strstr(ballast_error_message(err), "offset 5"))
        fail_msg("the error names neither the DLQ topic nor the message: %s",
                 ballast_error_message(err));
    ballast_error_destroy(err);
    bt_committed(bs, group, topic, 1, committed);
    assert_int_equal(committed[0], 5);
    assert_int_equal(read_dlq(bs, dlq, recs, 4), 0);

    bt_alter_topic_conf(bs, dlq, NULL);
    run = bt_runner_start(conf);
    if (!bt_wait_committed_to_end(bs, group, topic, 1, WAIT_MS))
        fail_msg("the restart did not commit to the end");
    assert_null(bt_runner_stop(run));
    assert_int_equal(read_dlq(bs, dlq, recs, 4), 1);
    assert_string_equal(recs[0].value, "5");
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* A database handler with retry tiers and no DLQ still needs a producer:
 * a batch that meets a locked database (transient) moves to the tier, and
 * runs from there once the lock is gone. */
typedef struct tier_arg {
    const char *bs, *topic, *path;
} tier_arg_t;

static bool tier_has_one(void *arg)
{
    tier_arg_t *a = arg;
    return bt_total_watermark(a->bs, a->topic, 1) >= 1;
}

static bool row_landed(void *arg)
{
    return bt_sqlite_long(((tier_arg_t *)arg)->path, "SELECT count(*) FROM t") == 1;
}

static void test_sqlite_handler_moves_a_failure_to_a_tier(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("sqltier"), *t1 = bt_unique("sqltier-r1");
    ballast_conf_t *conf = ballast_conf_new();
    char path[512], tiers[256];
    tier_arg_t arg = {bs, t1, path};
    dlq_rec_t recs[4];
    bt_runner_t *run;
    sqlite3 *lock;

    snprintf(path, sizeof(path), "%s/sqltier-%d.db", bt_tmpdir(), (int)getpid());
    unlink(path);
    assert_int_equal(sqlite3_open(path, &lock), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lock, "CREATE TABLE t (off INTEGER, v TEXT)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    bt_create_topic(bs, topic, 1);
    bt_create_topic(bs, t1, 1);
    snprintf(tiers, sizeof(tiers), "%s:100", t1);
    bt_set(conf, "kafka.bootstrap.servers", bs);
    bt_set(conf, "kafka.group.id", bt_unique("sqltier-g"));
    bt_set_group(conf);
    bt_set(conf, "topics", topic);
    bt_set(conf, "log.level", "error");
    bt_set(conf, "handler", "sqlite");
    bt_set(conf, "handler.sqlite.path", path);
    bt_set(conf, "handler.sqlite.sql", "INSERT INTO t (off, v) VALUES (:offset, :value)");
    bt_set(conf, "retry.topics", tiers);
    bt_set(conf, "retry.max.attempts", "1");
    run = bt_runner_start(conf);
    if (!bt_wait_for(bt_runner_assigned, run, WAIT_MS))
        fail_msg("no assignment before the deadline");
    /* The handler opened the database; now lock it and send the message. */
    assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    bt_produce_seq(bs, topic, 1, 0, 1, 0);
    if (!bt_wait_for(tier_has_one, &arg, WAIT_MS))
        fail_msg("the locked-out message never reached the retry tier");
    assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(lock);
    if (!bt_wait_for(row_landed, &arg, WAIT_MS))
        fail_msg("the message never landed from the retry tier");
    assert_null(bt_runner_stop(run));
    assert_int_equal(bt_sqlite_long(path, "SELECT count(*) FROM t"), 1);
    assert_int_equal(read_dlq(bs, t1, recs, 4), 1);
    assert_string_equal(recs[0].value, "0");
    assert_string_equal(recs[0].orig_topic, topic);
    assert_string_equal(recs[0].orig_off, "0");
    unlink(path);
    ballast_conf_destroy(conf);
}

/* A batch handler that emits "<offset>" keyed "k" for each message, and
 * answers RETRY for offset 3 on its first attempt. */
static void order_batch(void *state, const ballast_message_t *const *msgs,
                        ballast_result_t *const *results, size_t count,
                        ballast_outcome_t *outcomes)
{
    (void)state;
    for (size_t i = 0; i < count; i++) {
        char v[32];
        int64_t off = ballast_message_offset(msgs[i]);
        if (off == 3 && ballast_message_attempt(msgs[i]) == 1) {
            ballast_result_set_error(results[i], "busy");
            outcomes[i] = BALLAST_OUTCOME_RETRY;
            continue;
        }
        snprintf(v, sizeof(v), "%lld", (long long)off);
        outcomes[i] = ballast_result_emit(results[i], NULL, "k", 1, v, strlen(v))
                          ? BALLAST_OUTCOME_RETRY
                          : BALLAST_OUTCOME_OK;
    }
}

static ballast_outcome_t order_one(void *state, const ballast_message_t *msg,
                                   ballast_result_t *res)
{
    ballast_outcome_t out;

    order_batch(state, &msg, &res, 1, &out);
    return out;
}

static const ballast_handler_t order_handler = {BALLAST_HANDLER_ABI_VERSION, "order", NULL,
                                                order_one, order_batch, NULL};

/* README: each key in order; design.md: blocking retries keep order. Ten
 * messages of one key in one batch, offset 3 retried once: the output must
 * read 0..9 in order. Today the batch's later messages finish (and their
 * records are produced) while offset 3 waits for its retry: 0 1 2 4 ... 9 3. */
static void test_batch_retry_keeps_order(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("bord-in"), *out = bt_unique("bord-out");
    const char *group = bt_unique("bord-g");
    ballast_conf_t *conf;
    bt_runner_t *run;
    bt_record_t *recs;
    size_t n;

    bt_create_topic(bs, in, 1);
    bt_create_topic(bs, out, 1);
    bt_produce_seq(bs, in, 1, 0, 10, 1);
    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, &order_handler, NULL);
    bt_set(conf, "output.topic", out);
    bt_set(conf, "processing", "batch");
    bt_set(conf, "batch.max.messages", "10");
    bt_set(conf, "batch.max.ms", "2000");
    bt_set(conf, "retry.backoff.initial.ms", "100");
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    if (!bt_wait_committed_to_end(bs, group, in, 1, WAIT_MS))
        fail_msg("the committed offset did not reach the end");
    assert_null(bt_runner_stop(run));
    recs = bt_consume_to_end(bs, out, 60000, &n);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        if (strtol(recs[i].value, NULL, 10) != (long)i)
            fail_msg("output record %zu of key k is offset %s's, want offset %zu's", i,
                     recs[i].value, i);
    bt_records_free(recs, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite_handler_moves_a_failure_to_a_tier),
        cmocka_unit_test(test_fails_twice_then_succeeds_leaves_dlq_empty),
        cmocka_unit_test(test_one_percent_poison_reaches_the_dlq_exactly),
        cmocka_unit_test(test_retry_tiers_delay_then_dlq),
        cmocka_unit_test(test_breaker_trips_on_a_failing_handler),
        cmocka_unit_test(test_breaker_trips_on_the_failure_ratio),
        cmocka_unit_test(test_dlq_refused_stops_without_commit),
        cmocka_unit_test(test_backoff_longer_than_max_poll_interval),
        cmocka_unit_test(test_batch_retry_keeps_order),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
