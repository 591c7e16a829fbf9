/*
 * test_group_protocol.c - kafka.group.protocol as a user meets it in the
 * command:
 *   - `check` and `run` refuse the classic protocol's keys that the
 *     consumer protocol (KIP-848) leaves to the broker, naming each one set,
 *     and a value that is no protocol: exit 78, one line;
 *   - on the test broker: Kafka 4.x serves the consumer protocol (a run
 *     consumes and commits everything, and an assignor the broker lacks is
 *     a configuration error naming kafka.group.remote.assignor), while Kafka
 *     3.9 (BALLAST_TESTENV_KAFKA=3.9, as scripts/run-tests sets for its
 *     compatibility subset) does not: `run` ends at once with exit 69 and
 *     the reason, instead of waiting for a coordinator forever.
 * tests/mock/test_mock_group_protocol.c holds the same refusals on the mock
 * cluster; the suites of the consumer-protocol label hold the delivery
 * guarantees.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* A configuration for @p group reading @p topic with the test plugin, plus
 * @p extra lines; returns its path (a static buffer). */
static const char *write_conf(const char *bootstrap, const char *group, const char *topic,
                              const char *extra)
{
    static char path[300];

    snprintf(path, sizeof(path), "%s/group-protocol.conf", bt_tmpdir());
    bt_write_file(path,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "topics = %s\n"
                  "handler = plugin\n"
                  "handler.plugin.path = %s\n"
                  "log.level = error\n"
                  "%s",
                  bootstrap, group, topic, BALLAST_TEST_PLUGIN, extra);
    return path;
}

static void expect_exit(const char *const *argv, int code, const char *fragment)
{
    bt_captured_t c = bt_run_captured(argv, 60000);

    if (c.rc != code)
        fail_msg("exit %d, expected %d; stderr: %s", c.rc, code, c.err);
    if (fragment)
        bt_assert_one_line(c.err, fragment);
    bt_captured_free(&c);
}

static void test_conflicting_keys_exit_78(void **state)
{
    (void)state;
    const char *path = write_conf("127.0.0.1:1", "g", "t", "kafka.group.protocol = consumer\n");

    expect_exit(ARGV("check", path), 0, NULL);
    expect_exit(ARGV("check", path, "-X", "kafka.session.timeout.ms=6000"), 78,
                "kafka.session.timeout.ms: not supported with kafka.group.protocol = consumer");
    expect_exit(ARGV("run", path, "-X", "kafka.heartbeat.interval.ms=500"), 78,
                "kafka.heartbeat.interval.ms: not supported with kafka.group.protocol");
    expect_exit(ARGV("check", path, "-X", "kafka.partition.assignment.strategy=range", "-X",
                     "kafka.session.timeout.ms=6000"),
                78,
                "kafka.partition.assignment.strategy, kafka.session.timeout.ms: not supported");
    /* The classic protocol takes them, and a value that is no protocol is
     * refused in both commands. */
    expect_exit(ARGV("check", path, "-X", "kafka.group.protocol=classic", "-X",
                     "kafka.session.timeout.ms=6000"),
                0, NULL);
    expect_exit(ARGV("check", path, "-X", "kafka.group.protocol=kip848"), 78,
                "kafka.group.protocol: invalid value \"kip848\"");
    expect_exit(ARGV("run", path, "-X", "kafka.group.protocol=kip848"), 78,
                "kafka.group.protocol");
}

/* Kafka 3.9: no member can join with the consumer protocol. */
static void expect_refused(const char *path)
{
    int64_t start = bt_now_ms();
    bt_captured_t c = bt_run_captured(ARGV("run", path), 60000);

    if (c.rc != 69)
        fail_msg("exit %d, expected 69; stderr: %s", c.rc, c.err);
    bt_assert_one_line(c.err, "kafka.group.protocol: the broker at");
    bt_assert_one_line(c.err, "ConsumerGroupHeartbeatRequest not supported by broker");
    print_message("refused in %lld ms: %s", (long long)(bt_now_ms() - start), c.err);
    /* At once, not after startup.timeout.ms (30 s). */
    assert_true(bt_now_ms() - start < 20000);
    bt_captured_free(&c);
}

/* Kafka 4.x: a consumer-protocol run consumes and commits everything and
 * stops cleanly; an assignor the broker lacks is the configuration's
 * fault. */
static void expect_served(const char *path, const char *group, const char *topic)
{
    const char *const argv[] = {"ballast", "run", path, NULL};
    pid_t pid = bt_spawn_ballast(argv, NULL);

    if (!bt_wait_committed_to_end(bt_bootstrap(), group, topic, 2, 60000))
        fail_msg("the consumer-protocol group did not commit to the end");
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    expect_exit(ARGV("run", path, "-X", "kafka.group.remote.assignor=no-such-assignor"), 78,
                "kafka.group.remote.assignor: the broker has no assignor \"no-such-assignor\"");
}

static void test_consumer_protocol_on_the_test_broker(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *line = getenv("BALLAST_TESTENV_KAFKA");
    const char *topic = bt_unique("kip848"), *group = bt_unique("kip848-g");
    const char *path;

    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 100, 0);
    path = write_conf(bt_bootstrap(), group, topic, "kafka.group.protocol = consumer\n");
    if (line && !strcmp(line, "3.9"))
        expect_refused(path);
    else
        expect_served(path, group, topic);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conflicting_keys_exit_78),
        cmocka_unit_test(test_consumer_protocol_on_the_test_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
