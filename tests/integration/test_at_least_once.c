/*
 * test_at_least_once.c - at-least-once against the real broker: nothing
 * lost, order per key kept, committed offsets equal to what was processed,
 * failures leave offsets uncommitted, partitions move between members
 * without loss.
 */
#include "support.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 90000

static void wait_count(bt_recorder_t *rec, size_t want)
{
    bt_recorder_wait_count(rec, want, WAIT_MS);
}

/* Asserts that @p rec saw each offset below hwm[p] of each partition
 * exactly once (dups_allowed false) or at least once. */
static void assert_complete(bt_recorder_t *rec, const int64_t *hwm, int parts,
                            bool dups_allowed)
{
    for (int p = 0; p < parts; p++) {
        int *hits = calloc((size_t)hwm[p] + 1, sizeof(int));
        assert_non_null(hits);
        for (size_t i = 0; i < rec->count; i++)
            if (rec->seen[i].partition == p && rec->seen[i].offset < hwm[p])
                hits[rec->seen[i].offset]++;
        for (int64_t o = 0; o < hwm[p]; o++) {
            if (hits[o] == 0)
                fail_msg("partition %d offset %lld was never handled (lost)", p,
                         (long long)o);
            if (!dups_allowed && hits[o] > 1)
                fail_msg("partition %d offset %lld handled %d times", p,
                         (long long)o, hits[o]);
        }
        free(hits);
    }
}

/* Values are produced in increasing order; per key they must be handled in
 * increasing order too (first deliveries only). */
static void assert_key_order(bt_recorder_t *rec)
{
    long last[1024];
    for (int i = 0; i < 1024; i++)
        last[i] = -1;
    for (size_t i = 0; i < rec->count; i++) {
        int k = (int)(strtol(rec->seen[i].key + 1, NULL, 10) % 1024);
        long v = strtol(rec->seen[i].value, NULL, 10);
        if (v <= last[k])
            fail_msg("key %s: value %ld handled after %ld", rec->seen[i].key, v,
                     last[k]);
        last[k] = v;
    }
}

static void test_all_processed_in_key_order_and_committed(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-basic");
    const char *group = bt_unique("alo-basic-g");
    int64_t hwm[4], committed[4];
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;

    bt_create_topic(bs, topic, 4);
    bt_produce_seq(bs, topic, 0, 0, 4000, 40);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "concurrency", "4");
    bt_set(conf, "ordering", "key");
    run = bt_runner_start(conf);
    wait_count(rec, 4000);
    assert_null(bt_runner_stop(run));

    bt_high_watermarks(bs, topic, 4, hwm);
    assert_int_equal(hwm[0] + hwm[1] + hwm[2] + hwm[3], 4000);
    assert_int_equal(rec->count, 4000);
    assert_complete(rec, hwm, 4, false);
    assert_key_order(rec);
    bt_committed(bs, group, topic, 4, committed);
    for (int p = 0; p < 4; p++)
        assert_int_equal(committed[p], hwm[p]);

    /* A restart redelivers nothing: the first message each partition hands
     * out is the one produced after the stop. */
    rec->count = 0;
    run = bt_runner_start(conf);
    bt_produce_seq(bs, topic, 4, 4000, 4, 4);
    wait_count(rec, 4);
    assert_null(bt_runner_stop(run));
    assert_int_equal(rec->count, 4);
    for (size_t i = 0; i < rec->count; i++)
        assert_int_equal(rec->seen[i].offset, hwm[rec->seen[i].partition]);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_permanent_failure_leaves_offset_uncommitted(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-fail");
    const char *group = bt_unique("alo-fail-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    ballast_error_t *err;
    int64_t committed[1];

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 10, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    rec->fail_value = "5";
    rec->fail_outcome = BALLAST_OUTCOME_FAIL;
    err = bt_runner_join(bt_runner_start(conf), WAIT_MS);
    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_HANDLER);
    assert_non_null(strstr(ballast_error_message(err), "offset 5"));
    ballast_error_destroy(err);
    assert_int_equal(rec->count, 5); /* 0..4 handled, 5 failed, 6.. never */
    bt_committed(bs, group, topic, 1, committed);
    assert_int_equal(committed[0], 5);

    /* The message comes back after a restart. */
    rec->count = 0;
    rec->fail_value = NULL;
    bt_runner_t *run = bt_runner_start(conf);
    wait_count(rec, 5);
    assert_null(bt_runner_stop(run));
    assert_int_equal(rec->seen[0].offset, 5);
    assert_string_equal(rec->seen[0].value, "5");
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_transient_failure_retried_then_processed_once(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-retry");
    const char *group = bt_unique("alo-retry-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    ballast_stats_t st;
    int64_t hwm[1];

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 10, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    rec->fail_value = "3";
    rec->fail_outcome = BALLAST_OUTCOME_RETRY;
    rec->fail_times = 2; /* fails twice, then succeeds */
    run = bt_runner_start(conf);
    wait_count(rec, 10);
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    assert_null(bt_runner_stop(run));
    bt_high_watermarks(bs, topic, 1, hwm);
    assert_complete(rec, hwm, 1, false);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.failed, 0);
    for (size_t i = 0; i < rec->count; i++)
        if (!strcmp(rec->seen[i].value, "3"))
            assert_int_equal(rec->seen[i].attempt, 3);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* ---- two members -------------------------------------------------------- */

typedef struct member {
    pthread_mutex_t mtx;
    int assigned[8]; /* 1 when partition i is currently assigned */
    int events;
} member_t;

static void on_rebalance(ballast_rebalance_event_t ev, const ballast_partition_t *parts,
                         size_t n, void *opaque)
{
    member_t *m = opaque;
    pthread_mutex_lock(&m->mtx);
    for (size_t i = 0; i < n; i++)
        if (parts[i].partition < 8)
            m->assigned[parts[i].partition] = ev == BALLAST_PARTITIONS_ASSIGNED;
    m->events++;
    pthread_mutex_unlock(&m->mtx);
}

static int assigned_count(member_t *m)
{
    int n = 0;
    pthread_mutex_lock(&m->mtx);
    for (int i = 0; i < 8; i++)
        n += m->assigned[i];
    pthread_mutex_unlock(&m->mtx);
    return n;
}

typedef struct split_arg {
    member_t *a, *b;
    int total;
} split_arg_t;

static bool split_done(void *arg)
{
    split_arg_t *s = arg;
    int na = assigned_count(s->a), nb = assigned_count(s->b);
    return na > 0 && nb > 0 && na + nb == s->total;
}

static bool all_to_b(void *arg)
{
    split_arg_t *s = arg;
    return assigned_count(s->b) == s->total && assigned_count(s->a) == 0;
}

static void test_two_members_split_and_hand_over(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-split");
    const char *group = bt_unique("alo-split-g");
    bt_recorder_t *rec = bt_recorder_new();
    member_t ma = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    member_t mb = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    split_arg_t split = {&ma, &mb, 4};
    ballast_conf_t *ca, *cb;
    bt_runner_t *ra, *rb;
    int64_t hwm[4];

    bt_create_topic(bs, topic, 4);
    ca = bt_conf_recording(bs, group, topic, rec);
    cb = bt_conf_recording(bs, group, topic, rec);
    ballast_conf_set_rebalance_cb(ca, on_rebalance, &ma);
    ballast_conf_set_rebalance_cb(cb, on_rebalance, &mb);
    bt_set_cooperative(ca);
    bt_set_cooperative(cb);
    ra = bt_runner_start(ca);
    rb = bt_runner_start(cb);
    if (!bt_wait_for(split_done, &split, WAIT_MS))
        fail_msg("the two members did not split the partitions (%d + %d)",
                 assigned_count(&ma), assigned_count(&mb));
    /* Produce while both run, stop one in the middle, produce more. */
    bt_produce_seq(bs, topic, 4, 0, 2000, 0);
    wait_count(rec, 1000);
    assert_null(bt_runner_stop(ra));
    if (!bt_wait_for(all_to_b, &split, WAIT_MS))
        fail_msg("the remaining member did not take over every partition");
    bt_produce_seq(bs, topic, 4, 2000, 2000, 0);
    bt_high_watermarks(bs, topic, 4, hwm);
    {
        /* Wait until every offset was handled at least once. */
        size_t want = 4000;
        wait_count(rec, want);
    }
    assert_null(bt_runner_stop(rb));
    /* Both stops were clean: what A finished it committed, so B redid
     * nothing (tests/integration/test_stop_revoke.c holds the stricter
     * forms, with a slow handler and each row tagged with its process). */
    assert_complete(rec, hwm, 4, false);
    ballast_conf_destroy(ca);
    ballast_conf_destroy(cb);
    bt_recorder_free(rec);
}

/* ---- start and commit timing -------------------------------------------- */

/* A group that never committed starts where auto.offset.reset says:
 * ballast looks the position up itself on assignment (librdkafka would
 * only after a back-off), so `latest` must skip what was there before. */
static void test_fresh_group_latest_skips_the_backlog(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-latest");
    const char *group = bt_unique("alo-latest-g");
    bt_recorder_t *rec = bt_recorder_new();
    int64_t before[2], hwm[2], committed[2];
    ballast_conf_t *conf;
    bt_runner_t *run;

    bt_create_topic(bs, topic, 2);
    bt_produce_seq(bs, topic, 2, 0, 100, 0);
    bt_high_watermarks(bs, topic, 2, before);
    conf = bt_conf_recording(bs, group, topic, rec);
    bt_set(conf, "kafka.auto.offset.reset", "latest");
    run = bt_runner_start(conf);
    if (!bt_wait_for(bt_runner_assigned, run, WAIT_MS))
        fail_msg("no assignment before the deadline");
    bt_produce_seq(bs, topic, 2, 100, 10, 0);
    wait_count(rec, 10);
    assert_null(bt_runner_stop(run));
    assert_int_equal(rec->count, 10);
    for (size_t i = 0; i < rec->count; i++)
        if (rec->seen[i].offset < before[rec->seen[i].partition])
            fail_msg("partition %d offset %lld was there before the start",
                     rec->seen[i].partition, (long long)rec->seen[i].offset);
    bt_high_watermarks(bs, topic, 2, hwm);
    bt_committed(bs, group, topic, 2, committed);
    for (int p = 0; p < 2; p++)
        assert_int_equal(committed[p], hwm[p]);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* Once nothing is in flight, what finished is committed without waiting
 * for the commit interval (at most ten times an interval). */
static void test_idle_consumer_commits_before_the_interval(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("alo-idle");
    const char *group = bt_unique("alo-idle-g");
    bt_recorder_t *rec = bt_recorder_new();
    const int interval_ms = 30000;
    char interval[16];
    ballast_conf_t *conf;
    bt_runner_t *run;
    int64_t first;
    bool caught_up;

    bt_create_topic(bs, topic, 2);
    bt_produce_seq(bs, topic, 2, 0, 200, 0);
    conf = bt_conf_recording(bs, group, topic, rec);
    snprintf(interval, sizeof(interval), "%d", interval_ms);
    bt_set(conf, "kafka.auto.commit.interval.ms", interval);
    run = bt_runner_start(conf);
    wait_count(rec, 200);
    /* The first commit of a run is due at once anyway: the second round is
     * the one that shows, and must be committed before the interval since
     * the first commit has passed. */
    caught_up = bt_wait_committed_to_end(bs, group, topic, 2, WAIT_MS);
    first = bt_now_ms();
    if (caught_up) {
        bt_produce_seq(bs, topic, 2, 200, 200, 0);
        wait_count(rec, 400);
        caught_up = bt_wait_committed_to_end(
            bs, group, topic, 2, (int)(first + interval_ms - 1000 - bt_now_ms()));
    }
    assert_null(bt_runner_stop(run));
    if (!caught_up)
        fail_msg("the idle consumer did not commit within the commit interval");
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_processed_in_key_order_and_committed),
        cmocka_unit_test(test_permanent_failure_leaves_offset_uncommitted),
        cmocka_unit_test(test_transient_failure_retried_then_processed_once),
        cmocka_unit_test(test_two_members_split_and_hand_over),
        cmocka_unit_test(test_fresh_group_latest_skips_the_backlog),
        cmocka_unit_test(test_idle_consumer_commits_before_the_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
