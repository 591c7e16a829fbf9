/*
 * test_mock_txnwatch.c - the transaction watchdog (exactly-once into
 * Kafka), on librdkafka's mock cluster. librdkafka 2.14 can stay inside a
 * transaction call far past its timeout after a coordinator died; here a
 * test hook (bl_txnwatch_t.hook) makes rd_kafka_send_offsets_to_transaction
 * block instead, with the calls' timeout and the watchdog's margin lowered
 * to 500 ms each (in production 30 s and 30 s):
 *
 *   - ballast_consumer_stalled() says nothing while the call is within its
 *     timeout plus the margin; past it, a BALLAST_ERR_STALLED error naming
 *     the call, logged once at error level however often it is asked; once
 *     the call returns, nothing again, and the run stops cleanly;
 *   - `ballast run`'s watchdog thread (tools/stallwatch.c, built in) ends
 *     the process with exit code 1 within a few seconds, while the call
 *     still blocks (in a child process).
 */
#include "support.h"

#include "stallwatch.h"
#include "txnwatch.h"

#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 500
#define MARGIN_MS 500
#define BLOCK_MS 20000 /* the hook's own bound: a broken watchdog fails, never hangs */
#define WAIT_MS 10000

static const char *const IN = "txnwatch-in", *const OUT = "txnwatch-out";

/* ---- the hook: blocks the first send_offsets_to_transaction ------------- */

static struct gate {
    pthread_mutex_t mtx;
    pthread_cond_t cond;
    bool entered, released;
    int64_t entered_ms;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};

static void block_hook(ballast_consumer_t *c, const char *call)
{
    struct timespec until = bl_deadline(BLOCK_MS);

    (void)c;
    if (strcmp(call, "rd_kafka_send_offsets_to_transaction"))
        return;
    pthread_mutex_lock(&gate.mtx);
    if (!gate.entered) {
        gate.entered = true;
        gate.entered_ms = bt_now_ms();
        pthread_cond_broadcast(&gate.cond);
        while (!gate.released &&
               pthread_cond_timedwait(&gate.cond, &gate.mtx, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&gate.mtx);
}

static bool gate_entered(void *arg)
{
    bool entered;

    (void)arg;
    pthread_mutex_lock(&gate.mtx);
    entered = gate.entered;
    pthread_mutex_unlock(&gate.mtx);
    return entered;
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate.mtx);
    gate.released = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.mtx);
}

/* ---- a handler that emits each value, and the error lines logged ------- */

static int ok_init(void **statep, const ballast_handler_params_t *params, char *errbuf,
                   size_t errsize)
{
    (void)params;
    (void)errbuf;
    (void)errsize;
    *statep = NULL;
    return 0;
}

static ballast_outcome_t ok_handle(void *state, const ballast_message_t *msg,
                                   ballast_result_t *res)
{
    size_t len;
    const void *value = ballast_message_value(msg, &len);

    (void)state;
    /* A record opens the transaction whose offsets the hook blocks. */
    return ballast_result_emit(res, NULL, NULL, 0, value, len) ? BALLAST_OUTCOME_RETRY
                                                               : BALLAST_OUTCOME_OK;
}

static const ballast_handler_t ok_handler = {BALLAST_HANDLER_ABI_VERSION, "ok", ok_init,
                                             ok_handle, NULL, NULL};

static atomic_int stall_lines;

static void log_cb(ballast_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (getenv("BT_TXNWATCH_DEBUG"))
        fprintf(stderr, "    [log %d] %s\n", (int)level, line);
    if (level == BALLAST_LOG_ERROR && strstr(line, "rd_kafka_send_offsets_to_transaction") &&
        strstr(line, "has not returned"))
        atomic_fetch_add(&stall_lines, 1);
}

/* ---- a consumer on a mock cluster, its calls watched -------------------- */

typedef struct scene {
    bt_mock_t mock;
    ballast_conf_t *conf;
    ballast_consumer_t *cons;
    pthread_t thread;
    ballast_error_t *run_err;
} scene_t;

static void *run_main(void *arg)
{
    scene_t *s = arg;

    s->run_err = ballast_consumer_run(s->cons);
    return NULL;
}

/* Starts the scene. @returns NULL, or what failed (for a child process,
 * which may not use cmocka's asserts). */
static const char *scene_start(scene_t *s)
{
    const char *const keys[][2] = {
        {"topics", IN}, {"output.topic", OUT}, {"semantics", "exactly-once"},
        {"transaction.interval.ms", "100"}, {"startup.timeout.ms", "15000"},
        {"shutdown.timeout.ms", "2000"},
        {"log.level", getenv("BT_TXNWATCH_DEBUG") ? "debug" : "warn"}};
    ballast_error_t *err;

    memset(s, 0, sizeof(*s));
    bt_mock_start(&s->mock, IN, 1);
    /* The group forms at once, not after the default 3 s. */
    rd_kafka_mock_group_initial_rebalance_delay_ms(s->mock.mc, 0);
    if (rd_kafka_mock_topic_create(s->mock.mc, OUT, 1, 1))
        return "cannot create the output topic";
    bt_produce_seq(s->mock.bootstrap, IN, 1, 0, 10, 0);
    s->conf = ballast_conf_new();
    if (!s->conf)
        return "out of memory";
    err = ballast_conf_set(s->conf, "kafka.bootstrap.servers", s->mock.bootstrap);
    if (!err)
        err = ballast_conf_set(s->conf, "kafka.group.id", bt_unique("txnwatch-g"));
    if (!err)
        err = ballast_conf_set(s->conf, "kafka.transactional.id", bt_unique("txnwatch-id"));
    for (size_t i = 0; !err && i < sizeof(keys) / sizeof(keys[0]); i++)
        err = ballast_conf_set(s->conf, keys[i][0], keys[i][1]);
    if (err)
        return ballast_error_message(err);
    ballast_conf_set_handler(s->conf, &ok_handler, NULL);
    ballast_conf_set_log_cb(s->conf, log_cb, NULL);
    if ((err = ballast_consumer_new(s->conf, &s->cons)))
        return ballast_error_message(err);
    /* Before the run: only the poll thread reads these afterwards. */
    s->cons->ktxn.timeout_ms = CALL_TIMEOUT_MS;
    s->cons->txnwatch.margin_ms = MARGIN_MS;
    s->cons->txnwatch.hook = block_hook;
    if (pthread_create(&s->thread, NULL, run_main, s))
        return "cannot start the run's thread";
    return NULL;
}

static ballast_error_t *scene_stop(scene_t *s)
{
    ballast_consumer_stop(s->cons);
    pthread_join(s->thread, NULL);
    ballast_consumer_destroy(s->cons);
    ballast_conf_destroy(s->conf);
    bt_mock_stop(&s->mock);
    return s->run_err;
}

/* ---- the cases ------------------------------------------------------------ */

static bool not_stalled(void *cons)
{
    ballast_error_t *err = ballast_consumer_stalled(cons);

    ballast_error_destroy(err);
    return !err;
}

static void test_stalled_call_reported(void **state)
{
    scene_t s;
    const char *why = scene_start(&s);
    ballast_error_t *err = NULL;
    int64_t entered, deadline;

    (void)state;
    if (why)
        fail_msg("set-up: %s", why);
    assert_true(bt_wait_for(gate_entered, NULL, WAIT_MS));
    pthread_mutex_lock(&gate.mtx);
    entered = gate.entered_ms;
    pthread_mutex_unlock(&gate.mtx);

    /* Within its timeout plus the margin: nothing to say (asserted only
     * while that is sure, whatever the scheduler did). */
    for (;;) {
        int64_t before = bt_now_ms() - entered;
        err = ballast_consumer_stalled(s.cons);
        if (before >= CALL_TIMEOUT_MS + MARGIN_MS - 100)
            break;
        if (err)
            fail_msg("reported %lld ms into the call, before its timeout (%d ms) plus the "
                     "margin (%d ms): %s", (long long)before, CALL_TIMEOUT_MS, MARGIN_MS,
                     ballast_error_message(err));
        usleep(50 * 1000);
    }
    ballast_error_destroy(err);

    /* Past it: the call is named, and logged once however often asked. */
    deadline = bt_now_ms() + WAIT_MS;
    while (!(err = ballast_consumer_stalled(s.cons)) && bt_now_ms() < deadline)
        usleep(20 * 1000);
    if (!err)
        fail_msg("no stall reported %d ms after the call was entered", WAIT_MS);
    assert_true(bt_now_ms() - entered >= CALL_TIMEOUT_MS + MARGIN_MS);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_STALLED);
    assert_non_null(strstr(ballast_error_message(err), "rd_kafka_send_offsets_to_transaction"));
    assert_non_null(strstr(ballast_error_message(err), "has not returned after"));
    ballast_error_destroy(err);
    ballast_error_destroy(ballast_consumer_stalled(s.cons));
    assert_int_equal(atomic_load(&stall_lines), 1);

    /* The call returns: nothing to report, and the run stops cleanly. */
    gate_release();
    assert_true(bt_wait_for(not_stalled, s.cons, WAIT_MS));
    err = scene_stop(&s);
    if (err)
        fail_msg("the run ended with: %s", ballast_error_message(err));
}

/* The child: the scene with `ballast run`'s watchdog; exits 1 through
 * stallwatch_exit(), else 0 once the hook gave up (a broken watchdog), or
 * 2 when the scene cannot start. */
static void child_main(void)
{
    scene_t s;
    const char *why;

    /* The first case's gate, as the fork copied it. */
    gate.entered = gate.released = false;
    why = scene_start(&s);
    if (why) {
        fprintf(stderr, "set-up: %s\n", why);
        _exit(2);
    }
    stallwatch_start(s.cons, 100, stallwatch_exit, NULL);
    while (!gate_entered(NULL))
        usleep(20 * 1000);
    usleep(BLOCK_MS * 1000); /* the hook's bound: the watchdog must act before */
    _exit(0);
}

static void test_run_exits_1(void **state)
{
    pid_t pid;
    int64_t started = bt_now_ms();
    int rc;

    (void)state;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_main();
    rc = bt_wait(pid, WAIT_MS + 5000);
    if (rc != 1)
        fail_msg("expected exit code 1, got %d after %lld ms", rc,
                 (long long)(bt_now_ms() - started));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stalled_call_reported),
        cmocka_unit_test(test_run_exits_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
