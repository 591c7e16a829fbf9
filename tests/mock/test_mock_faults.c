/*
 * test_mock_faults.c - at-least-once on librdkafka's mock cluster with
 * injected faults: failing commits, failing produce requests, a broker
 * outage mid-stream, a dead-letter copy the broker keeps refusing for a
 * while. Nothing may be lost and the final commit must equal what was
 * processed. (The mock cannot prove exactly-once; see tests/integration
 * for that.)
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define API_PRODUCE 0
#define API_OFFSET_COMMIT 8
#define WAIT_MS 60000
/* Produce errors the dead letter meets: with librdkafka's back-off (0.1 s
 * doubling to 1 s) a stall of about 12 s, many offset commits long. */
#define REFUSALS 15


/* Every offset below hwm handled at least once. */
static void assert_no_loss(bt_recorder_t *rec, const int64_t *hwm, int parts)
{
    for (int p = 0; p < parts; p++) {
        char *hit = calloc((size_t)hwm[p] + 1, 1);
        assert_non_null(hit);
        for (size_t i = 0; i < rec->count; i++)
            if (rec->seen[i].partition == p && rec->seen[i].offset < hwm[p])
                hit[rec->seen[i].offset] = 1;
        for (int64_t o = 0; o < hwm[p]; o++)
            if (!hit[o])
                fail_msg("partition %d offset %lld lost", p, (long long)o);
        free(hit);
    }
}

static void run_and_check(bt_mock_t *m, const char *topic, int parts, int count,
                          void (*during)(bt_mock_t *))
{
    const char *group = bt_unique("mock-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(m->bootstrap, group, topic, rec);
    int64_t hwm[8], committed[8];
    bt_runner_t *run;

    bt_set(conf, "kafka.auto.commit.interval.ms", "200");
    run = bt_runner_start(conf);
    if (during)
        during(m);
    bt_recorder_wait_count(rec, (size_t)count, WAIT_MS);
    assert_null(bt_runner_stop(run));
    bt_high_watermarks(m->bootstrap, topic, parts, hwm);
    assert_no_loss(rec, hwm, parts);
    bt_committed(m->bootstrap, group, topic, parts, committed);
    for (int p = 0; p < parts; p++)
        assert_int_equal(committed[p], hwm[p]);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_mock_drain_commits_everything(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *topic = "mock-drain";

    bt_mock_start(&m, topic, 4);
    bt_produce_seq(m.bootstrap, topic, 4, 0, 2000, 0);
    run_and_check(&m, topic, 4, 2000, NULL);
    bt_mock_stop(&m);
}

static void fail_commits(bt_mock_t *m)
{
    /* The next commits fail with a retriable coordinator error. */
    rd_kafka_mock_push_request_errors(m->mc, API_OFFSET_COMMIT, 4,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
}

static void test_mock_failing_commits_are_retried(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *topic = "mock-commit";

    bt_mock_start(&m, topic, 2);
    bt_produce_seq(m.bootstrap, topic, 2, 0, 1000, 0);
    run_and_check(&m, topic, 2, 1000, fail_commits);
    bt_mock_stop(&m);
}

static void broker_outage(bt_mock_t *m)
{
    usleep(300 * 1000);
    rd_kafka_mock_broker_set_down(m->mc, 1);
    usleep(1500 * 1000);
    rd_kafka_mock_broker_set_up(m->mc, 1);
}

static void test_mock_broker_outage_loses_nothing(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *topic = "mock-outage";

    bt_mock_start(&m, topic, 2);
    bt_produce_seq(m.bootstrap, topic, 2, 0, 3000, 0);
    run_and_check(&m, topic, 2, 3000, broker_outage);
    bt_mock_stop(&m);
}

static void test_mock_forward_survives_produce_errors(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *in = "mock-fwd-in", *out = "mock-fwd-out";
    const char *group = bt_unique("mock-fwd-g");
    ballast_conf_t *conf = ballast_conf_new();
    ballast_consumer_t *cons;
    bt_runner_t *run;
    bt_record_t *recs;
    size_t n;
    int64_t hwm[2], committed[2];
    char *seen;

    bt_mock_start(&m, in, 2);
    assert_int_equal(rd_kafka_mock_topic_create(m.mc, out, 2, 1), 0);
    bt_produce_seq(m.bootstrap, in, 2, 0, 1000, 0);
    bt_set(conf, "kafka.bootstrap.servers", m.bootstrap);
    bt_set(conf, "kafka.group.id", group);
    bt_set(conf, "kafka.session.timeout.ms", "6000");
    bt_set(conf, "topics", in);
    bt_set(conf, "handler", "forward");
    bt_set(conf, "output.topic", out);
    bt_set(conf, "log.level", "error");
    /* Retriable produce errors: the idempotent producer retries without
     * duplicating. */
    rd_kafka_mock_push_request_errors(m.mc, API_PRODUCE, 3,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    run = bt_runner_start(conf);
    cons = bt_runner_consumer(run);
    (void)cons;
    recs = bt_consume_all(m.bootstrap, out, 1000, WAIT_MS, &n);
    assert_null(bt_runner_stop(run));
    assert_int_equal(n, 1000);
    seen = calloc(1000, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++) {
        long v = strtol(recs[i].value, NULL, 10);
        assert_true(v >= 0 && v < 1000);
        assert_int_equal(seen[v], 0); /* no duplicate copies */
        seen[v] = 1;
    }
    free(seen);
    bt_records_free(recs, n);
    bt_high_watermarks(m.bootstrap, in, 2, hwm);
    bt_committed(m.bootstrap, group, in, 2, committed);
    assert_int_equal(committed[0], hwm[0]);
    assert_int_equal(committed[1], hwm[1]);
    ballast_conf_destroy(conf);
    bt_mock_stop(&m);
}

typedef struct stall {
    bt_mock_t *m;
    const char *topic, *group;
    bt_runner_t *run;
    bt_recorder_t *rec;
    int seen_stalled; /* checks made with everything else done and committed */
} stall_t;

/* One look while the copy may still be refused: the commit must not pass
 * offset 5 unless the broker's error stack is empty (the copy may then have
 * been acknowledged). @returns true once the stack is empty. */
static bool stall_over(void *arg)
{
    stall_t *s = arg;
    int64_t committed[1];
    ballast_stats_t st;
    size_t left = 0;

    /* In this order: a non-empty stack read after the other two proves that
     * no produce had succeeded when they were read. */
    bt_committed(s->m->bootstrap, s->group, s->topic, 1, committed);
    ballast_consumer_stats(bt_runner_consumer(s->run), &st, sizeof(st));
    assert_int_equal(
        rd_kafka_mock_broker_error_stack_cnt(s->m->mc, 1, API_PRODUCE, &left), 0);
    if (!left)
        return true;
    if (committed[0] > 5 || st.dead_lettered)
        fail_msg("committed %lld, %llu dead letters acknowledged, while the broker "
                 "still refuses the copy (%zu refusals to go)",
                 (long long)committed[0], (unsigned long long)st.dead_lettered, left);
    s->seen_stalled += committed[0] == 5 && bt_recorder_count(s->rec) == 19;
    return false;
}

static bool stall_cleared(void *arg)
{
    stall_t *s = arg;
    ballast_stats_t st;
    int64_t committed[1];

    ballast_consumer_stats(bt_runner_consumer(s->run), &st, sizeof(st));
    bt_committed(s->m->bootstrap, s->group, s->topic, 1, committed);
    return st.dead_lettered == 1 && committed[0] == 20;
}

/* The dead-letter copy of offset 5 meets REFUSALS retriable produce errors
 * (NOT_ENOUGH_REPLICAS, which the producer retries): every other message
 * is handled and offsets 0-4 committed, but the commit does not pass 5
 * until the broker has acknowledged the copy. */
static void test_mock_dlq_stall_keeps_the_offset_uncommitted(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *topic = "mock-dlq-stall", *dlq = "mock-dlq-stall-dlq";
    bt_recorder_t *rec = bt_recorder_new();
    stall_t s = {&m, topic, bt_unique("mock-dlq-stall-g"), NULL, rec, 0};
    ballast_conf_t *conf;
    bt_record_t *recs;
    size_t n;

    bt_mock_start(&m, topic, 1);
    assert_int_equal(rd_kafka_mock_topic_create(m.mc, dlq, 1, 1), 0);
    bt_produce_seq(m.bootstrap, topic, 1, 0, 20, 0);
    /* From now on only ballast produces: the dead letter is the only record. */
    for (int i = 0; i < REFUSALS; i++)
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                             m.mc, 1, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0),
                         0);
    conf = bt_conf_recording(m.bootstrap, s.group, topic, rec);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "kafka.auto.commit.interval.ms", "200");
    rec->fail_value = "5";
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    s.run = bt_runner_start(conf);
    if (!bt_wait_for(stall_over, &s, WAIT_MS))
        fail_msg("the producer did not retry the dead letter %d times", REFUSALS);
    print_message("%d looks with offsets 0-4 committed and the rest handled while the "
                  "dead letter was refused\n",
                  s.seen_stalled);
    if (!s.seen_stalled)
        fail_msg("never saw the other messages done and committed during the stall");
    if (!bt_wait_for(stall_cleared, &s, WAIT_MS))
        fail_msg("the commit did not move on once the dead letter was acknowledged");
    assert_null(bt_runner_stop(s.run));
    recs = bt_consume_all(m.bootstrap, dlq, 1, WAIT_MS, &n);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].value, "5");
    bt_records_free(recs, n);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
    bt_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mock_drain_commits_everything),
        cmocka_unit_test(test_mock_failing_commits_are_retried),
        cmocka_unit_test(test_mock_broker_outage_loses_nothing),
        cmocka_unit_test(test_mock_forward_survives_produce_errors),
        cmocka_unit_test(test_mock_dlq_stall_keeps_the_offset_uncommitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
