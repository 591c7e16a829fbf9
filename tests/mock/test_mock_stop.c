/*
 * test_mock_stop.c - a stop ends, whatever the handler does (librdkafka's
 * mock cluster; this suite also runs under AddressSanitizer):
 *   - a plugin-style handler call that outlives shutdown.timeout.ms: the
 *     run returns BALLAST_ERR_INCOMPLETE within the timeout plus the
 *     grace, destroy returns at once, and when the call finally returns,
 *     its worker frees the consumer without touching freed memory;
 *   - an exec child stuck on a message: its call is cancelled, the child
 *     killed, and the run ends within the timeout plus a little;
 *   - a stop with nothing stuck ends cleanly (NULL) and promptly.
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHUTDOWN_MS 1000
#define STUCK_MS 8000


/* A mock cluster with ten messages on one partition of @p topic. */
static void start_mock(bt_mock_t *m, const char *topic)
{
    bt_mock_start(m, topic, 1);
    bt_produce_seq(m->bootstrap, topic, 1, 0, 10, 0);
}

/* A handler stuck for STUCK_MS on its first message. */
typedef struct stuck {
    atomic_int started, returned;
} stuck_t;

static ballast_outcome_t stuck_handle(void *state, const ballast_message_t *msg,
                                      ballast_result_t *res)
{
    stuck_t *s = state;

    (void)msg;
    (void)res;
    if (atomic_fetch_add(&s->started, 1) == 0) {
        usleep(STUCK_MS * 1000);
        atomic_store(&s->returned, 1);
    }
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t stuck_handler = {BALLAST_HANDLER_ABI_VERSION, "stuck",
                                                bt_opaque_init, stuck_handle, NULL, NULL};

static ballast_conf_t *mock_conf(const bt_mock_t *m, const char *topic)
{
    ballast_conf_t *conf = bt_conf_recording(m->bootstrap, bt_unique("stop-g"), topic, NULL);
    char ms[16];

    snprintf(ms, sizeof(ms), "%d", SHUTDOWN_MS);
    bt_set(conf, "kafka.session.timeout.ms", "6000");
    bt_set(conf, "shutdown.timeout.ms", ms);
    bt_set(conf, "handler.timeout.ms", "60000");
    return conf;
}

static bool started(void *arg)
{
    return atomic_load(&((stuck_t *)arg)->started) > 0;
}

static void test_stuck_call_is_left_and_frees_later(void **state)
{
    const char *topic = bt_unique("stop-stuck");
    stuck_t s = {0, 0};
    ballast_conf_t *conf;
    ballast_error_t *err;
    bt_runner_t *run;
    int64_t t0, took;
    bt_mock_t m;

    (void)state;
    start_mock(&m, topic);
    conf = mock_conf(&m, topic);
    ballast_conf_set_handler(conf, &stuck_handler, &s);
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    assert_true(bt_wait_for(started, &s, 30000));
    t0 = bt_now_ms();
    err = bt_runner_stop(run); /* joins and destroys */
    took = bt_now_ms() - t0;
    print_message("stop with a stuck call took %lld ms: %s\n", (long long)took,
                  err ? ballast_error_message(err) : "(clean)");
    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_INCOMPLETE);
    ballast_error_destroy(err);
    /* The drain, then the grace for the call, then destroy returns at once. */
    assert_true(took < SHUTDOWN_MS + 5000 + 3000);
    assert_int_equal(atomic_load(&s.returned), 0);
    /* When the call returns, its worker frees the consumer; under ASan a
     * use of freed memory or a leak fails this suite. */
    while (!atomic_load(&s.returned))
        usleep(50 * 1000);
    usleep(1000 * 1000);
    bt_mock_stop(&m);
}

static void test_stuck_exec_child_is_cancelled(void **state)
{
    const char *topic = bt_unique("stop-exec");
    const char *dir = bt_tmpdir();
    char script[512], cmd[600], marker[512];
    ballast_conf_t *conf;
    ballast_error_t *err;
    bt_runner_t *run;
    int64_t t0, took, deadline;
    bt_mock_t m;

    (void)state;
    snprintf(marker, sizeof(marker), "%s/got-request", dir);
    snprintf(script, sizeof(script), "%s/stuck.sh", dir);
    bt_write_file(script, "read line; touch '%s'; sleep 40; echo '{\"status\":\"ok\"}'\n",
                  marker);
    snprintf(cmd, sizeof(cmd), "sh '%s'", script);
    start_mock(&m, topic);
    conf = mock_conf(&m, topic);
    ballast_conf_set_handler(conf, NULL, NULL);
    bt_set(conf, "handler", "exec");
    bt_set(conf, "handler.exec.command", cmd);
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    deadline = bt_now_ms() + 30000;
    while (access(marker, F_OK)) {
        if (bt_now_ms() > deadline)
            fail_msg("the exec child never got a request");
        usleep(20 * 1000);
    }
    t0 = bt_now_ms();
    err = bt_runner_stop(run);
    took = bt_now_ms() - t0;
    print_message("stop with a stuck exec child took %lld ms: %s\n", (long long)took,
                  err ? ballast_error_message(err) : "(clean)");
    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_INCOMPLETE);
    ballast_error_destroy(err);
    /* Cancelled at the drain's end: no grace needed. */
    assert_true(took < SHUTDOWN_MS + 3000);
    bt_mock_stop(&m);
}

static void test_stop_with_nothing_stuck_is_clean(void **state)
{
    const char *topic = bt_unique("stop-clean");
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *run;
    int64_t t0;
    bt_mock_t m;

    (void)state;
    start_mock(&m, topic);
    conf = mock_conf(&m, topic);
    ballast_conf_set_handler(conf, &bt_recording_handler, rec);
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    bt_recorder_wait_count(rec, 10, 30000);
    t0 = bt_now_ms();
    assert_null(bt_runner_stop(run));
    assert_true(bt_now_ms() - t0 < SHUTDOWN_MS + 3000);
    bt_recorder_free(rec);
    bt_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_call_is_left_and_frees_later),
        cmocka_unit_test(test_stuck_exec_child_is_cancelled),
        cmocka_unit_test(test_stop_with_nothing_stuck_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
