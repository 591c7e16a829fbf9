/*
 * test_mock_repause.c - a partition paused when it is revoked, and assigned
 * back, is consumed again (librdkafka's mock cluster, eager assignor).
 *
 * librdkafka keeps a partition's application pause across an unassign and
 * a new assign; a partition state made on assignment must not assume it
 * starts unpaused. The scenario: the handler is unavailable (consumption
 * pauses), a member joins (the eager assignor revokes everything), the
 * handler comes back while the partition is away, and the same partition
 * is assigned back: nothing then wants it paused, so nothing paused it
 * again, and nothing resumed it either.
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define WAIT_MS 30000
#define LATER 5 /* messages produced after the rebalance */
/* The mock waits the session timeout less a second for members to rejoin. */
#define SESSION_MS "2000"

/* The handler's phases: unavailable; holding its call until the partition
 * is revoked; available. */
enum { DOWN, HOLD, UP };

typedef struct repause {
    atomic_int phase, holding;
    atomic_llong last_offset; /* the highest offset handled OK */
    _Atomic(ballast_consumer_t *) cons;
} repause_t;

static bool is_up(void *arg)
{
    return atomic_load(&((repause_t *)arg)->phase) == UP;
}

static ballast_outcome_t repause_handle(void *state, const ballast_message_t *msg,
                                        ballast_result_t *res)
{
    repause_t *r = state;
    long long offset = (long long)ballast_message_offset(msg);

    (void)res;
    if (atomic_load(&r->phase) == DOWN)
        return BALLAST_OUTCOME_UNAVAILABLE;
    if (atomic_load(&r->phase) == HOLD) {
        /* Still in the call when the revoke drains: the handler comes back
         * only after the partition went. */
        atomic_store(&r->holding, 1);
        bt_wait_for(is_up, r, WAIT_MS);
    }
    if (offset > atomic_load(&r->last_offset))
        atomic_store(&r->last_offset, offset);
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t repause_handler = {BALLAST_HANDLER_ABI_VERSION, "repause",
                                                  bt_opaque_init, repause_handle, NULL, NULL};

static bool handler_back(void *arg)
{
    char why[256];

    ballast_consumer_ready(atomic_load(&((repause_t *)arg)->cons), why, sizeof(why));
    return !strstr(why, "handler is unavailable");
}

/* On the revoke (after the drain gave up on the held call): the handler
 * comes back, and this waits until the consumer knows, so that the
 * assignment that follows sees nothing wanting a pause. */
static void on_rebalance(ballast_rebalance_event_t ev, const ballast_partition_t *parts,
                         size_t count, void *opaque)
{
    repause_t *r = opaque;

    (void)parts;
    (void)count;
    if (ev != BALLAST_PARTITIONS_REVOKED || atomic_load(&r->phase) != HOLD)
        return;
    atomic_store(&r->phase, UP);
    if (!bt_wait_for(handler_back, r, WAIT_MS))
        fail_msg("the handler never counted as available again");
}

static bool paused(void *arg)
{
    ballast_stats_t s;

    ballast_consumer_stats(atomic_load(&((repause_t *)arg)->cons), &s, sizeof(s));
    return s.paused_partitions == 1;
}

static bool holding(void *arg)
{
    return atomic_load(&((repause_t *)arg)->holding);
}

static bool handled_later(void *arg)
{
    return atomic_load(&((repause_t *)arg)->last_offset) >= LATER;
}

/* A plain member of @p group on @p other, a topic the consumer does not
 * read: its join makes the eager assignor revoke everything, and give the
 * consumer's partition back to the consumer. Waits for its assignment. */
static rd_kafka_t *member_join(const char *bootstrap, const char *group, const char *other)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "partition.assignment.strategy", "range", NULL, 0);
    rd_kafka_conf_set(conf, "session.timeout.ms", SESSION_MS, NULL, 0);
    rd_kafka_conf_set(conf, "heartbeat.interval.ms", "200", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    return bt_member_join(conf, other, 0, WAIT_MS);
}

static void test_partition_paused_at_revoke_resumes_when_assigned_back(void **state)
{
    const char *topic = bt_unique("repause"), *other = bt_unique("repause-other"),
               *group = bt_unique("repause-g");
    ballast_stats_t stats;
    ballast_conf_t *conf;
    bt_runner_t *run;
    rd_kafka_t *member;
    repause_t r;
    bt_mock_t m;

    (void)state;
    atomic_init(&r.phase, DOWN);
    atomic_init(&r.holding, 0);
    atomic_init(&r.last_offset, -1);
    atomic_init(&r.cons, NULL);
    bt_mock_start(&m, topic, 1);
    rd_kafka_mock_group_initial_rebalance_delay_ms(m.mc, 0);
    assert_int_equal(rd_kafka_mock_topic_create(m.mc, other, 1, 1), 0);
    bt_produce_seq(m.bootstrap, topic, 1, 0, 1, 0);
    conf = bt_conf_recording(m.bootstrap, group, topic, NULL);
    ballast_conf_set_handler(conf, &repause_handler, &r);
    ballast_conf_set_rebalance_cb(conf, on_rebalance, &r);
    bt_set(conf, "kafka.group.protocol", "classic");
    bt_set(conf, "kafka.partition.assignment.strategy", "range");
    bt_set(conf, "kafka.session.timeout.ms", SESSION_MS);
    bt_set(conf, "kafka.heartbeat.interval.ms", "200");
    bt_set(conf, "shutdown.timeout.ms", "1000"); /* the revoke's drain */
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    atomic_store(&r.cons, bt_runner_consumer(run));
    /* Unavailable: the partition pauses. Then the retry is held in the
     * call, so that the pause is still in force at the revoke. */
    assert_true(bt_wait_for(paused, &r, WAIT_MS));
    atomic_store(&r.phase, HOLD);
    assert_true(bt_wait_for(holding, &r, WAIT_MS));
    member = member_join(m.bootstrap, group, other);
    assert_int_equal(atomic_load(&r.phase), UP);
    /* Assigned back, with the handler available: what comes now is
     * handled. */
    bt_produce_seq(m.bootstrap, topic, 1, 1, LATER, 0);
    if (!bt_wait_for(handled_later, &r, WAIT_MS)) {
        ballast_consumer_stats(bt_runner_consumer(run), &stats, sizeof(stats));
        fail_msg("the partition assigned back was never consumed again: last offset "
                 "handled %lld of %d, %llu partition(s) paused by ballast",
                 (long long)atomic_load(&r.last_offset), LATER,
                 (unsigned long long)stats.paused_partitions);
    }
    assert_null(bt_runner_stop(run));
    rd_kafka_consumer_close(member);
    rd_kafka_destroy(member);
    bt_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_paused_at_revoke_resumes_when_assigned_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
