/*
 * test_mock_group_protocol.c - the consumer group protocol (KIP-848,
 * kafka.group.protocol = consumer) on librdkafka's mock cluster: a member
 * consumes and commits everything; a broker that lacks the protocol's API
 * (as Kafka before 4.0 does for the version librdkafka speaks), or refuses
 * its version, ends the run at once with the unreachable error (exit 69 in
 * the command) naming kafka.group.protocol. librdkafka itself would look
 * for a coordinator again every second, forever, and report nothing.
 * (tests/cli/test_group_protocol.c meets the real Kafka 3.9 broker.)
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

#define API_CONSUMER_GROUP_HEARTBEAT 68
#define WAIT_MS 60000

/* A consumer-protocol member of a fresh group on @p m, recording. */
static ballast_conf_t *member_conf(bt_mock_t *m, const char *topic, bt_recorder_t *rec)
{
    ballast_conf_t *conf = bt_conf_recording(m->bootstrap, bt_unique("mock-kip848-g"), topic, rec);

    bt_set(conf, "kafka.auto.commit.interval.ms", "200");
    return conf;
}

static void test_member_consumes_and_commits(void **state)
{
    (void)state;
    bt_mock_t m;
    const char *topic = "kip848-drain";
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    int64_t hwm[2], committed[2];
    bt_runner_t *run;

    bt_mock_start(&m, topic, 2);
    rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(m.mc, 500);
    bt_produce_seq(m.bootstrap, topic, 2, 0, 1000, 0);
    conf = member_conf(&m, topic, rec);
    run = bt_runner_start(conf);
    bt_recorder_wait_count(rec, 1000, WAIT_MS);
    assert_null(bt_runner_stop(run));
    bt_high_watermarks(m.bootstrap, topic, 2, hwm);
    bt_committed(m.bootstrap, ballast_conf_get(conf, "kafka.group.id"), topic, 2, committed);
    for (int p = 0; p < 2; p++)
        assert_int_equal(committed[p], hwm[p]);
    assert_int_equal(bt_recorder_count(rec), 1000);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
    bt_mock_stop(&m);
}

/* Runs a member against @p m and expects the run to end by itself with
 * the unreachable error naming kafka.group.protocol, well before the
 * start-up timeout. */
static void expect_refused(bt_mock_t *m, const char *topic)
{
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = member_conf(m, topic, rec);
    int64_t start = bt_now_ms();
    ballast_error_t *err;
    bt_runner_t *run;

    run = bt_runner_start(conf);
    err = bt_runner_join(run, 20000);
    if (!err)
        fail_msg("the run did not end with an error");
    print_message("refused after %lld ms: %s\n", (long long)(bt_now_ms() - start),
                  ballast_error_message(err));
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_UNREACHABLE);
    if (strncmp(ballast_error_message(err), "kafka.group.protocol: ", 22) ||
        !strstr(ballast_error_message(err), "consumer group protocol"))
        fail_msg("the error does not name kafka.group.protocol: %s",
                 ballast_error_message(err));
    assert_int_equal(bt_recorder_count(rec), 0);
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_broker_without_the_protocol(void **state)
{
    (void)state;
    bt_mock_t m;

    bt_mock_start(&m, "kip848-absent", 1);
    assert_int_equal(rd_kafka_mock_set_apiversion(m.mc, API_CONSUMER_GROUP_HEARTBEAT, -1, -1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    expect_refused(&m, "kip848-absent");
    bt_mock_stop(&m);
}

static void test_broker_refusing_its_version(void **state)
{
    (void)state;
    bt_mock_t m;

    bt_mock_start(&m, "kip848-refused", 1);
    rd_kafka_mock_push_request_errors(m.mc, API_CONSUMER_GROUP_HEARTBEAT, 1,
                                      RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION);
    expect_refused(&m, "kip848-refused");
    bt_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_consumes_and_commits),
        cmocka_unit_test(test_broker_without_the_protocol),
        cmocka_unit_test(test_broker_refusing_its_version),
    };
    /* Every member here speaks the consumer protocol (bt_conf_recording). */
    setenv("BALLAST_TEST_GROUP_PROTOCOL", "consumer", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
