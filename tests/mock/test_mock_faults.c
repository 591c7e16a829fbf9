/*
 * test_mock_faults.c - at-least-once on librdkafka's mock cluster with
 * injected faults: failing commits, failing produce requests, a broker
 * outage mid-stream. Nothing may be lost and the final commit must equal
 * what was processed. (The mock cannot prove exactly-once; see
 * tests/integration for that.)
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define API_PRODUCE 0
#define API_OFFSET_COMMIT 8
#define WAIT_MS 60000


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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mock_drain_commits_everything),
        cmocka_unit_test(test_mock_failing_commits_are_retried),
        cmocka_unit_test(test_mock_broker_outage_loses_nothing),
        cmocka_unit_test(test_mock_forward_survives_produce_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
