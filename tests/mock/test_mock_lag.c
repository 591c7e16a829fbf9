/*
 * test_mock_lag.c - `ballast lag` while the group coordinator answers
 * NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS (a coordinator that moved
 * or is still loading, as on a freshly started broker): it asks again and
 * reports every partition. It must neither crash (librdkafka 2.4 to at least
 * 2.14 dereference a missing group handle on NOT_COORDINATOR, librdkafka
 * issue 5040) nor give up with "unreachable". (The mock cluster answers a
 * request for all of a group's offsets with none, so the committed offsets
 * themselves are checked against the real broker, in tests/cli/test_lag.c.)
 */
#include "support.h"

#include <jansson.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define API_OFFSET_FETCH 9

static void test_lag_asks_again_after_coordinator_errors(void **state)
{
    const char *topic = bt_unique("mock-lag"), *group = bt_unique("mock-lag-g");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_mock_cluster_t *mc;
    char errstr[256], *save = NULL;
    const char *bootstrap;
    int seen = 0;
    rd_kafka_t *host;
    bt_captured_t c;

    (void)state;
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(host);
    mc = rd_kafka_mock_cluster_new(host, 1);
    assert_non_null(mc);
    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, topic, 2, 1), 0);
    bt_produce_seq(bootstrap, topic, 2, 0, 20, 0); /* 10 per partition */

    rd_kafka_mock_push_request_errors(mc, API_OFFSET_FETCH, 3,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    c = bt_run_captured(ARGV("lag", "-b", bootstrap, "-g", group, "-t", topic, "--json"),
                        60000);
    if (c.rc != 0)
        fail_msg("ballast lag: exit %d; stderr: %s", c.rc, c.err);
    for (char *line = strtok_r(c.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *row = json_loads(line, 0, &jerr);
        json_int_t p;
        if (!row)
            fail_msg("not JSON: %s", line);
        p = json_integer_value(json_object_get(row, "partition"));
        assert_true(p == 0 || p == 1);
        assert_int_equal(json_integer_value(json_object_get(row, "high_watermark")), 10);
        assert_null(json_object_get(row, "error"));
        json_decref(row);
        seen++;
    }
    assert_int_equal(seen, 2);
    bt_captured_free(&c);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lag_asks_again_after_coordinator_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
