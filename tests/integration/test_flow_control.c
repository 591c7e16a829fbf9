/*
 * test_flow_control.c - flow control against the real broker: key-ordered
 * parallelism beyond the partition count, a handler call longer than
 * max.poll.interval.ms, backpressure bounds (messages and bytes, resuming
 * at half), and a rebalance storm.
 */
#include "support.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 120000

static void wait_count(bt_recorder_t *rec, size_t want)
{
    bt_recorder_wait_count(rec, want, WAIT_MS);
}

/* Values of one key handled in increasing order (first deliveries). */
static void assert_key_order(const bt_recorder_t *rec, int keys)
{
    long *last = malloc((size_t)keys * sizeof(*last));
    assert_non_null(last);
    for (int k = 0; k < keys; k++)
        last[k] = -1;
    for (size_t i = 0; i < rec->count; i++) {
        long k = strtol(rec->seen[i].key + 1, NULL, 10), v = strtol(rec->seen[i].value, NULL, 10);
        assert_true(k >= 0 && k < keys);
        if (v < last[k])
            fail_msg("key k%ld: %ld handled after %ld", k, v, last[k]);
        last[k] = v;
    }
    free(last);
}

/* Handles 400 messages of 100 keys on one partition with @p workers and
 * @p ordering; @returns the recorder (caller frees) after checking that
 * every message was handled once, each key in order and never two calls of
 * one key at a time. */
static bt_recorder_t *parallel_run(const char *bs, const char *topic, const char *ordering,
                                   const char *workers, int rendezvous)
{
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, bt_unique("keypar-g"), topic, rec);
    bt_runner_t *run;

    bt_set(conf, "ordering", ordering);
    bt_set(conf, "concurrency", workers);
    rec->sleep_ms = 2;
    rec->rendezvous = rendezvous;
    run = bt_runner_start(conf);
    wait_count(rec, 400);
    assert_null(bt_runner_stop(run));
    assert_int_equal(rec->count, 400);
    assert_key_order(rec, 100);
    assert_int_equal(rec->key_overlaps, 0);
    ballast_conf_destroy(conf);
    return rec;
}

/* ordering = key runs different keys of one partition at the same time:
 * the first handler calls wait in the handler until eight run at once
 * (they can only be of eight different keys), which never happens if the
 * partition's messages run one at a time. Measured by the handler itself,
 * not by the clock; the speed-up is a benchmark (bench/run key-parallel). */
static void test_key_parallelism_on_one_partition(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("keypar");
    bt_recorder_t *rec;

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 400, 100); /* one partition, 100 keys */
    rec = parallel_run(bs, topic, "key", "32", 8);
    print_message("ordering = key, 32 workers, one partition: up to %d calls at once\n",
                  rec->max_active);
    if (!rec->rendezvous_met)
        fail_msg("eight keys of one partition never ran at once (at most %d)",
                 rec->max_active);
    bt_recorder_free(rec);
    /* The same measure sees no parallelism where none is allowed. */
    rec = parallel_run(bs, topic, "partition", "32", 0);
    assert_int_equal(rec->max_active, 1);
    bt_recorder_free(rec);
}

static void test_handler_longer_than_max_poll_interval(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("slowcall");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, bt_unique("slowcall-g"), topic, rec);
    bt_runner_t *run;
    ballast_stats_t st;

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 2, 0);
    bt_set(conf, "kafka.max.poll.interval.ms", "6000");
    rec->sleep_ms = 12500; /* each call lasts twice max.poll.interval.ms */
    run = bt_runner_start(conf);
    wait_count(rec, 2);
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    assert_null(bt_runner_stop(run));
    assert_int_equal(st.rebalances, 1); /* no eviction */
    assert_int_equal(rec->count, 2);    /* no redelivery */
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

typedef struct sampler {
    bt_runner_t *run;
    volatile int stop;
    uint64_t max_inflight, paused_seen;
} sampler_t;

static void *sample(void *arg)
{
    sampler_t *s = arg;
    while (!s->stop) {
        ballast_stats_t st;
        ballast_consumer_stats(bt_runner_consumer(s->run), &st, sizeof(st));
        if (st.inflight > s->max_inflight)
            s->max_inflight = st.inflight;
        if (st.paused_partitions)
            s->paused_seen++;
        usleep(2000);
    }
    return NULL;
}

/* At the in-flight mark the poll loop first holds back (librdkafka's own
 * prefetch fills and stops); a backlog lasting longer than a quarter of
 * max.poll.interval.ms pauses the partitions, and they resume at half. */
static void test_backpressure_bounds_inflight(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("bp");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, bt_unique("bp-g"), topic, rec);
    sampler_t s = {0};
    pthread_t th;

    bt_create_topic(bs, topic, 2);
    bt_produce_seq(bs, topic, 2, 0, 300, 0);
    bt_set(conf, "max.inflight.messages", "100");
    bt_set(conf, "kafka.max.poll.interval.ms", "6000"); /* pause after 1.5 s */
    rec->sleep_ms = 20; /* 100 in flight = 2 s of work */
    s.run = bt_runner_start(conf);
    pthread_create(&th, NULL, sample, &s);
    wait_count(rec, 300);
    s.stop = 1;
    pthread_join(th, NULL);
    assert_null(bt_runner_stop(s.run));
    print_message("max.inflight.messages 100: highest in flight %llu, paused in %llu "
                  "samples\n",
                  (unsigned long long)s.max_inflight, (unsigned long long)s.paused_seen);
    assert_true(s.paused_seen > 0);
    assert_true(s.max_inflight <= 100);
    assert_int_equal(rec->count, 300);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

typedef struct gated {
    bt_runner_t *run;
    uint64_t paused;   /* paused_is(): paused_partitions == paused */
    uint64_t inflight; /* completed_or_resumed(): in flight below this */
} gated_t;

static ballast_stats_t stats_of(bt_runner_t *run)
{
    ballast_stats_t st;
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    return st;
}

static bool paused_is(void *arg)
{
    gated_t *g = arg;
    return stats_of(g->run).paused_partitions == g->paused;
}

/* The released message finished, or the partition resumed (which can only
 * follow that completion: nothing else leaves the gate). */
static bool completed_or_resumed(void *arg)
{
    gated_t *g = arg;
    ballast_stats_t st = stats_of(g->run);
    return st.inflight < g->inflight || !st.paused_partitions;
}

/* Backpressure, step by step: every handler call waits at a gate, so what
 * is in flight changes only when the test lets one message through. The
 * limit (@p key = 20 messages, or 20 x 1,000-byte values) is reached and
 * not passed, the partition pauses once the backlog lasts, stays paused
 * while more than half the limit is in flight, and resumes at half. */
static void pause_and_resume_at_half(const char *key, const char *limit, bool bytes)
{
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("bphalf");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, bt_unique("bphalf-g"), topic, rec);
    const uint64_t unit = bytes ? 1000 : 1, mark = 20 * unit;
    gated_t g = {NULL, 1, 0};
    ballast_stats_t st;
    uint64_t n;

    bt_create_topic(bs, topic, 1);
    bt_produce_seq_sized(bs, topic, 1, 0, 200, 0, bytes ? 1000 : 0);
    bt_set(conf, key, limit);
    bt_set(conf, "kafka.max.poll.interval.ms", "6000"); /* pause after 1.5 s */
    rec->gated = 1;
    g.run = bt_runner_start(conf);
    if (!bt_wait_for(paused_is, &g, WAIT_MS))
        fail_msg("%s: the partition did not pause at the limit", key);
    st = stats_of(g.run);
    n = st.inflight;
    print_message("%s = %s: paused with %llu messages, %llu bytes in flight\n", key, limit,
                  (unsigned long long)st.inflight, (unsigned long long)st.inflight_bytes);
    /* At the mark, and less than one message over it. */
    if (bytes)
        assert_int_equal(st.inflight_bytes, n * unit); /* no keys, 1,000-byte values */
    assert_true(n * unit >= mark && n * unit < mark + unit);
    /* One message at a time: paused while more than half is in flight,
     * resumed once no more than half is. */
    for (;;) {
        bt_recorder_release(rec, 1);
        g.inflight = n--;
        if (!bt_wait_for(completed_or_resumed, &g, WAIT_MS))
            fail_msg("%s: a released message did not finish", key);
        if (!stats_of(g.run).paused_partitions) {
            if (n * unit > mark / 2)
                fail_msg("%s: resumed with %llu in flight, above half of %llu", key,
                         (unsigned long long)(n * unit), (unsigned long long)mark);
            break;
        }
        if (n * unit <= mark / 2) {
            g.paused = 0;
            if (!bt_wait_for(paused_is, &g, WAIT_MS))
                fail_msg("%s: still paused with %llu in flight, half of %llu", key,
                         (unsigned long long)(n * unit), (unsigned long long)mark);
            break;
        }
    }
    bt_recorder_open(rec);
    wait_count(rec, 200);
    assert_null(bt_runner_stop(g.run));
    assert_int_equal(rec->count, 200);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_backpressure_messages_resume_at_half(void **state)
{
    (void)state;
    pause_and_resume_at_half("max.inflight.messages", "20", false);
}

static void test_backpressure_bytes_resume_at_half(void **state)
{
    (void)state;
    pause_and_resume_at_half("max.inflight.bytes", "20000", true);
}

/* Members join and leave every few seconds while messages flow. */
static void test_rebalance_storm_loses_nothing(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("storm");
    const char *group = bt_unique("storm-g");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, group, topic, rec);
    bt_runner_t *members[3] = {0};
    int64_t hwm[4];
    char *hit;
    int total = 0;

    bt_create_topic(bs, topic, 4);
    bt_set(conf, "ordering", "key");
    bt_set(conf, "concurrency", "8");
    bt_set_cooperative(conf);
    members[0] = bt_runner_start(conf);
    for (int round = 0; round < 8; round++) {
        int slot = 1 + round % 2;
        bt_produce_seq(bs, topic, 0, total, 500, 50);
        total += 500;
        if (members[slot])
            assert_null(bt_runner_stop(members[slot]));
        members[slot] = round % 4 == 3 ? NULL : bt_runner_start(conf);
        usleep(1500 * 1000); /* the storm's rhythm, not a wait for a result */
    }
    bt_high_watermarks(bs, topic, 4, hwm);
    {
        /* Everything eventually handled: every offset at least once. */
        size_t want = (size_t)total;
        wait_count(rec, want);
        for (int64_t deadline = bt_now_ms() + WAIT_MS;;) {
            bool all = true;
            pthread_mutex_lock(rec->mtx);
            for (int p = 0; p < 4 && all; p++) {
                hit = calloc((size_t)hwm[p] + 1, 1);
                for (size_t i = 0; i < rec->count; i++)
                    if (rec->seen[i].partition == p)
                        hit[rec->seen[i].offset] = 1;
                for (int64_t o = 0; o < hwm[p]; o++)
                    all = all && hit[o];
                free(hit);
            }
            pthread_mutex_unlock(rec->mtx);
            if (all)
                break;
            if (bt_now_ms() > deadline)
                fail_msg("messages lost in the rebalance storm");
            usleep(100 * 1000);
        }
    }
    for (int i = 0; i < 3; i++)
        if (members[i])
            assert_null(bt_runner_stop(members[i]));
    print_message("rebalance storm: %d messages, %zu deliveries (%zu redelivered "
                  "from uncommitted work)\n",
                  total, rec->count, rec->count - (size_t)total);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* Out-of-order completion, then a stop that cannot wait: the offsets that
 * finished beyond the committed one are recorded in the commit metadata
 * and not handled again after the restart. */
static void test_restart_skips_offsets_finished_out_of_order(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("ooo"), *group = bt_unique("ooo-g");
    bt_recorder_t *r1 = bt_recorder_new(), *r2 = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(bs, group, topic, r1);
    bt_runner_t *run;
    ballast_error_t *err;
    ballast_stats_t st;
    int64_t committed[1];
    char seen1[100] = {0}, seen2[100] = {0};
    size_t r1_count_at_stop;

    bt_create_topic(bs, topic, 1);
    bt_produce_seq(bs, topic, 1, 0, 100, 0);
    bt_set(conf, "ordering", "none");
    bt_set(conf, "concurrency", "8");
    bt_set(conf, "shutdown.timeout.ms", "0");
    /* Offset 0 takes longer than the stop's grace for a running call:
     * everything else finishes first, and offset 0 is left. */
    r1->slow_value = "0";
    r1->slow_ms = 8000;
    run = bt_runner_start(conf);
    wait_count(r1, 60);
    err = bt_runner_stop(run);
    r1_count_at_stop = bt_recorder_count(r1);
    /* The drain could not wait for offset 0: the run says so. */
    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_INCOMPLETE);
    ballast_error_destroy(err);
    bt_committed(bs, group, topic, 1, committed);
    assert_int_equal(committed[0], 0); /* offset 0 was not finished */
    /* The call left running on offset 0 still records into r1 later. */
    pthread_mutex_lock(r1->mtx);
    for (size_t i = 0; i < r1->count; i++)
        seen1[r1->seen[i].offset] = 1;
    pthread_mutex_unlock(r1->mtx);
    assert_false(seen1[0]);

    ballast_conf_set_handler(conf, &bt_recording_handler, r2);
    run = bt_runner_start(conf);
    {
        /* Everything not finished in the first run is handled now. */
        size_t left = 0;
        for (int o = 0; o < 100; o++)
            left += !seen1[o] || o == 0;
        wait_count(r2, left);
    }
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    assert_null(bt_runner_stop(run));
    for (size_t i = 0; i < r2->count; i++)
        seen2[r2->seen[i].offset] = 1;
    print_message("restart after out-of-order completion: %zu handled before, %zu after, "
                  "%llu skipped as already finished\n",
                  r1->count, r2->count, (unsigned long long)st.skipped_done);
    assert_true(st.skipped_done > 0);
    for (int o = 0; o < 100; o++) {
        assert_true(seen1[o] || seen2[o]); /* nothing lost */
        if (o > 0 && seen1[o] && seen2[o])
            fail_msg("offset %d finished before the restart and was redone", o);
    }
    ballast_conf_destroy(conf);
    /* The call left running returns (and frees its consumer) before r1 goes. */
    bt_recorder_wait_count(r1, r1_count_at_stop + 1, 30000);
    bt_recorder_free(r1);
    bt_recorder_free(r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_parallelism_on_one_partition),
        cmocka_unit_test(test_backpressure_bounds_inflight),
        cmocka_unit_test(test_backpressure_messages_resume_at_half),
        cmocka_unit_test(test_backpressure_bytes_resume_at_half),
        cmocka_unit_test(test_handler_longer_than_max_poll_interval),
        cmocka_unit_test(test_rebalance_storm_loses_nothing),
        cmocka_unit_test(test_restart_skips_offsets_finished_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
