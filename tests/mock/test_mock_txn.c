/*
 * test_mock_txn.c - the transaction error matrix of exactly-once with Kafka
 * outputs, on librdkafka's mock cluster with injected errors (issue 3):
 *
 *   - retriable coordinator errors (COORDINATOR_NOT_AVAILABLE,
 *     NOT_COORDINATOR, CONCURRENT_TRANSACTIONS, ...) on every transactional
 *     request are retried: every message is handled exactly once, nothing
 *     is aborted, no producer is re-created, the run ends cleanly;
 *   - abortable errors (what librdkafka 2.0.2's rdkafka_txnmgr.c classifies
 *     as PERMANENT: TOPIC_AUTHORIZATION_FAILED on Produce or
 *     AddPartitionsToTxn, GROUP_AUTHORIZATION_FAILED on AddOffsetsToTxn,
 *     UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION on TxnOffsetCommit,
 *     UNKNOWN_PRODUCER_ID on EndTxn) abort the transaction and rewind: the
 *     handler sees the messages of the aborted transaction again, and the
 *     run goes on without a fatal error;
 *   - an abort that itself fails makes ballast re-create the producer
 *     (init_transactions settles the old transaction), then rewind;
 *   - fatal errors (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH,
 *     TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE) end
 *     ballast_consumer_run() with BALLAST_ERR_FENCED or BALLAST_ERR_KAFKA,
 *     promptly and without a crash, whether they happen at start-up, in a
 *     transaction, or while re-creating the producer.
 *
 * The mock neither filters aborted records nor stores TxnOffsetCommit
 * offsets (a rewind therefore goes back to the beginning of each
 * partition), so these tests assert behaviour: handler deliveries, the
 * library's log lines, statistics and the run's result. What is committed
 * is proven against the real broker (tests/integration).
 *
 * How a case runs: HALF messages are produced before ballast starts. Once
 * they are handled and their transactions committed (the pipeline is
 * quiet), the case pushes its errors and produces the second half, so the
 * errors hit the transactions of the second half. The input is written by
 * a plain (non-idempotent) producer, so that it sends no InitProducerId,
 * and the input and output partitions have different leaders, so that
 * Produce errors pushed on the output's broker hit ballast's records only.
 */
#include "support.h"

#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* librdkafka's ApiKeys */
#define API_PRODUCE 0
#define API_INIT_PRODUCER_ID 22
#define API_ADD_PARTITIONS_TO_TXN 24
#define API_ADD_OFFSETS_TO_TXN 25
#define API_END_TXN 26
#define API_TXN_OFFSET_COMMIT 28

#define PARTS 2
#define HALF 100
#define TOTAL (2 * HALF)
#define WAIT_MS 20000

/* ---- the handler: counts deliveries per value, emits one record each --- */

typedef struct tally {
    pthread_mutex_t mtx;
    int deliveries[TOTAL];
} tally_t;

static int tally_init(void **statep, const ballast_handler_params_t *params,
                      char *errbuf, size_t errsize)
{
    (void)errbuf;
    (void)errsize;
    *statep = params->opaque;
    return 0;
}

static ballast_outcome_t tally_handle(void *state, const ballast_message_t *msg,
                                      ballast_result_t *res)
{
    tally_t *t = state;
    size_t klen, vlen;
    const void *key = ballast_message_key(msg, &klen);
    const char *value = ballast_message_value(msg, &vlen);
    char buf[16];
    long v;

    if (!value || vlen == 0 || vlen >= sizeof(buf)) {
        ballast_result_set_error(res, "unexpected value");
        return BALLAST_OUTCOME_FAIL;
    }
    memcpy(buf, value, vlen);
    buf[vlen] = '\0';
    v = strtol(buf, NULL, 10);
    if (v < 0 || v >= TOTAL) {
        ballast_result_set_error(res, "value out of range");
        return BALLAST_OUTCOME_FAIL;
    }
    pthread_mutex_lock(&t->mtx);
    t->deliveries[v]++;
    pthread_mutex_unlock(&t->mtx);
    if (ballast_result_emit(res, NULL, key, klen, value, vlen))
        return BALLAST_OUTCOME_RETRY;
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t tally_handler = {
    BALLAST_HANDLER_ABI_VERSION, "txn-tally", tally_init, tally_handle, NULL, NULL};

/* Copies the per-value delivery counts. */
static void tally_snapshot(tally_t *t, int *out)
{
    pthread_mutex_lock(&t->mtx);
    memcpy(out, t->deliveries, sizeof(t->deliveries));
    pthread_mutex_unlock(&t->mtx);
}

/* ---- the library's log lines ------------------------------------------ */

#define KEEP_LINES 24

typedef struct logbook {
    pthread_mutex_t mtx;
    int aborted;  /* "transaction aborted: ... rewound" */
    int reinit;   /* "re-initialising the producer" */
    int errors;   /* lines at level error */
    char lines[KEEP_LINES][256]; /* the last warnings and errors */
    int next;
} logbook_t;

static void log_cb(ballast_log_level_t level, const char *line, void *opaque)
{
    logbook_t *lb = opaque;

    if (getenv("BT_TXN_DEBUG"))
        fprintf(stderr, "    [log %d] %s\n", (int)level, line);
    pthread_mutex_lock(&lb->mtx);
    if (strstr(line, "transaction aborted"))
        lb->aborted++;
    if (strstr(line, "re-initialising the producer"))
        lb->reinit++;
    if (level == BALLAST_LOG_ERROR)
        lb->errors++;
    snprintf(lb->lines[lb->next++ % KEEP_LINES], sizeof(lb->lines[0]), "%s", line);
    pthread_mutex_unlock(&lb->mtx);
}

static int logbook_get(logbook_t *lb, const int *field)
{
    int v;
    pthread_mutex_lock(&lb->mtx);
    v = *field;
    pthread_mutex_unlock(&lb->mtx);
    return v;
}

/* The last log lines, for failure messages (static buffer). */
static const char *logbook_tail(logbook_t *lb)
{
    static char out[KEEP_LINES * 260];
    size_t n = 0;

    out[0] = '\0';
    pthread_mutex_lock(&lb->mtx);
    for (int i = lb->next > KEEP_LINES ? lb->next - KEEP_LINES : 0; i < lb->next; i++)
        n += (size_t)snprintf(out + n, sizeof(out) - n, "\n  | %s",
                              lb->lines[i % KEEP_LINES]);
    pthread_mutex_unlock(&lb->mtx);
    return out;
}

/* ---- one case: a mock cluster, its input, a consumer -------------------- */

typedef struct txn_case {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    tally_t tally;
    logbook_t log;
    ballast_conf_t *conf;
    bt_runner_t *run;
    const char *in, *out;
} txn_case_t;

#define IN_LEADER 1
#define OUT_LEADER 2

/* Produces values [first, first+count) to the input topic: key
 * "k<v % 10>", partition v % PARTS, with a plain producer. */
static void produce_values(txn_case_t *tc, int first, int count)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", tc->bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "enable.idempotence", "false", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    for (int v = first; v < first + count; v++) {
        char key[16], value[16];
        snprintf(key, sizeof(key), "k%d", v % 10);
        snprintf(value, sizeof(value), "%d", v);
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(tc->in),
                                           RD_KAFKA_V_PARTITION(v % PARTS),
                                           RD_KAFKA_V_KEY(key, strlen(key)),
                                           RD_KAFKA_V_VALUE(value, strlen(value)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

static void case_setup(txn_case_t *tc)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    memset(tc, 0, sizeof(*tc));
    pthread_mutex_init(&tc->tally.mtx, NULL);
    pthread_mutex_init(&tc->log.mtx, NULL);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    tc->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(tc->host);
    tc->mc = rd_kafka_mock_cluster_new(tc->host, 2);
    assert_non_null(tc->mc);
    tc->bootstrap = rd_kafka_mock_cluster_bootstraps(tc->mc);
    tc->in = "txn-in";
    tc->out = "txn-out";
    assert_int_equal(rd_kafka_mock_topic_create(tc->mc, tc->in, PARTS, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(tc->mc, tc->out, PARTS, 1), 0);
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(rd_kafka_mock_partition_set_leader(tc->mc, tc->in, p, IN_LEADER), 0);
        assert_int_equal(rd_kafka_mock_partition_set_leader(tc->mc, tc->out, p, OUT_LEADER),
                         0);
    }
    produce_values(tc, 0, HALF);

    tc->conf = ballast_conf_new();
    bt_set(tc->conf, "kafka.bootstrap.servers", tc->bootstrap);
    bt_set(tc->conf, "kafka.group.id", bt_unique("mock-txn-g"));
    bt_set(tc->conf, "kafka.transactional.id", bt_unique("mock-txn-id"));
    bt_set(tc->conf, "kafka.session.timeout.ms", "6000");
    bt_set(tc->conf, "kafka.heartbeat.interval.ms", "500");
    bt_set(tc->conf, "topics", tc->in);
    bt_set(tc->conf, "output.topic", tc->out);
    bt_set(tc->conf, "semantics", "exactly-once");
    bt_set(tc->conf, "transaction.interval.ms", "100");
    bt_set(tc->conf, "startup.timeout.ms", "15000");
    bt_set(tc->conf, "shutdown.timeout.ms", "10000");
    bt_set(tc->conf, "log.level", getenv("BT_TXN_DEBUG") ? "debug" : "warn");
    ballast_conf_set_handler(tc->conf, &tally_handler, &tc->tally);
    ballast_conf_set_log_cb(tc->conf, log_cb, &tc->log);
}

/* Produce errors for ballast's records only: on the output's leader. */
static void push_produce_errors(txn_case_t *tc, size_t n, const rd_kafka_resp_err_t *errs)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                             tc->mc, OUT_LEADER, API_PRODUCE, 1, errs[i], 0),
                         0);
}

/* The second half: after the errors were pushed. */
static void produce_second_half(txn_case_t *tc)
{
    produce_values(tc, HALF, TOTAL - HALF);
}

static void case_teardown(txn_case_t *tc)
{
    ballast_conf_destroy(tc->conf);
    rd_kafka_mock_cluster_destroy(tc->mc);
    rd_kafka_destroy(tc->host);
    pthread_mutex_destroy(&tc->tally.mtx);
    pthread_mutex_destroy(&tc->log.mtx);
}

static ballast_stats_t case_stats(txn_case_t *tc)
{
    ballast_stats_t st;
    ballast_consumer_stats(bt_runner_consumer(tc->run), &st, sizeof(st));
    return st;
}

/* Waits until the first half was handled, its records acknowledged and its
 * transactions committed, with nothing left to commit: the next
 * transactional request belongs to the second half. */
static void wait_first_half_committed(txn_case_t *tc)
{
    int64_t deadline = bt_now_ms() + WAIT_MS;
    uint64_t last = 0;

    for (;;) {
        ballast_stats_t st = case_stats(tc);
        if (st.emitted >= HALF && st.commits > 0 && st.commits == last)
            break; /* no commit for a while: nothing more to commit */
        last = st.emitted >= HALF ? st.commits : 0;
        if (bt_now_ms() > deadline)
            fail_msg("first half not committed: consumed %llu, emitted %llu, "
                     "commits %llu%s",
                     (unsigned long long)st.consumed, (unsigned long long)st.emitted,
                     (unsigned long long)st.commits,
                     logbook_tail(&tc->log));
        usleep(400 * 1000); /* four transaction intervals */
    }
    {
        int d[TOTAL];
        tally_snapshot(&tc->tally, d);
        for (int v = 0; v < HALF; v++)
            assert_int_equal(d[v], 1);
    }
}

/* Starts the consumer and lets the first half through. */
static void case_start(txn_case_t *tc)
{
    tc->run = bt_runner_start(tc->conf);
    wait_first_half_committed(tc);
}

/* Waits until the pipeline is idle: every value handled at least
 * @p at_least times (per value, or NULL: once), nothing in flight, and no
 * transaction committed for a while. */
static void wait_settled(txn_case_t *tc, const int *at_least)
{
    int64_t deadline = bt_now_ms() + WAIT_MS;
    uint64_t last_commits = UINT64_MAX;

    for (;;) {
        int d[TOTAL], missing = -1;
        ballast_stats_t st = case_stats(tc);
        tally_snapshot(&tc->tally, d);
        for (int v = 0; v < TOTAL && missing < 0; v++)
            if (d[v] < (at_least ? at_least[v] : 1))
                missing = v;
        if (missing < 0 && st.inflight == 0 && st.commits == last_commits)
            return;
        last_commits = missing < 0 && st.inflight == 0 ? st.commits : UINT64_MAX;
        if (bt_now_ms() > deadline)
            fail_msg("pipeline did not settle: value %d handled %d time(s), "
                     "%llu in flight, %llu commits%s",
                     missing, missing >= 0 ? d[missing] : -1,
                     (unsigned long long)st.inflight, (unsigned long long)st.commits,
                     logbook_tail(&tc->log));
        usleep(300 * 1000);
    }
}

/* Stops a run that must end without an error. */
static void case_stop_clean(txn_case_t *tc)
{
    ballast_error_t *err = bt_runner_stop(tc->run);
    tc->run = NULL;
    if (err)
        fail_msg("the run ended with an error: %s%s", ballast_error_message(err),
                 logbook_tail(&tc->log));
}

/* Waits for a run to end by itself with @p code (either of two). */
static void case_expect_fatal(txn_case_t *tc, ballast_err_code_t code,
                              const char *needle)
{
    int64_t start = bt_now_ms();
    ballast_error_t *err = bt_runner_join(tc->run, WAIT_MS);
    int64_t took = bt_now_ms() - start;

    tc->run = NULL;
    if (!err)
        fail_msg("the run ended without an error after a fatal transactional "
                 "error%s", logbook_tail(&tc->log));
    print_message("    run ended after %lld ms: [%d] %s\n", (long long)took,
                  (int)ballast_error_code(err), ballast_error_message(err));
    if (ballast_error_code(err) != code)
        fail_msg("expected error code %d, got %d: %s%s", (int)code,
                 (int)ballast_error_code(err), ballast_error_message(err),
                 logbook_tail(&tc->log));
    if (needle && !strstr(ballast_error_message(err), needle))
        fail_msg("error message lacks \"%s\": %s", needle, ballast_error_message(err));
    assert_int_equal(ballast_error_is_fatal(err), 1);
    ballast_error_destroy(err);
}

/* ---- retriable --------------------------------------------------------- */

static void test_retriable_coordinator_errors_are_retried(void **state)
{
    (void)state;
    txn_case_t tc;
    int d[TOTAL];

    case_setup(&tc);
    /* At start-up: init_transactions retries InitProducerId. */
    rd_kafka_mock_push_request_errors(tc.mc, API_INIT_PRODUCER_ID, 3,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    case_start(&tc);
    /* Then every request of a transaction fails a few times first. */
    rd_kafka_mock_push_request_errors(tc.mc, API_ADD_PARTITIONS_TO_TXN, 3,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    rd_kafka_mock_push_request_errors(tc.mc, API_ADD_OFFSETS_TO_TXN, 3,
                                      RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    rd_kafka_mock_push_request_errors(tc.mc, API_TXN_OFFSET_COMMIT, 3,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                      RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS);
    rd_kafka_mock_push_request_errors(tc.mc, API_END_TXN, 3,
                                      RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    {
        const rd_kafka_resp_err_t produce[] = {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                               RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS};
        push_produce_errors(&tc, 2, produce);
    }
    produce_second_half(&tc);
    wait_settled(&tc, NULL);
    {
        ballast_stats_t st = case_stats(&tc);
        /* A commit succeeded after the errors were pushed, so every error
         * was consumed (the mock answers a request with the head of its
         * API's error stack first). */
        if (st.emitted < TOTAL)
            fail_msg("emitted %llu, commits %llu, consumed %llu%s",
                     (unsigned long long)st.emitted, (unsigned long long)st.commits,
                     (unsigned long long)st.consumed, logbook_tail(&tc.log));
    }
    case_stop_clean(&tc);
    tally_snapshot(&tc.tally, d);
    for (int v = 0; v < TOTAL; v++)
        if (d[v] != 1)
            fail_msg("value %d handled %d times: a retriable error must not "
                     "abort or rewind%s", v, d[v], logbook_tail(&tc.log));
    assert_int_equal(tc.log.aborted, 0);
    assert_int_equal(tc.log.reinit, 0);
    case_teardown(&tc);
}

/* ---- abortable --------------------------------------------------------- */

static void push_errors(txn_case_t *tc, int16_t api, size_t n,
                        const rd_kafka_resp_err_t *errs)
{
    if (api == API_PRODUCE)
        push_produce_errors(tc, n, errs);
    else
        rd_kafka_mock_push_request_errors_array(tc->mc, api, n, errs);
}

/* Pushes @p n errors of @p api (and @p n2 of @p api2 when n2 > 0),
 * produces the second half, and checks that ballast aborted, rewound and went on. */
static void run_abortable(int16_t api, size_t n, const rd_kafka_resp_err_t *errs,
                          int16_t api2, size_t n2, const rd_kafka_resp_err_t *errs2,
                          bool expect_reinit)
{
    txn_case_t tc;
    int d[TOTAL], want[TOTAL], redone = 0;

    case_setup(&tc);
    case_start(&tc);
    push_errors(&tc, api, n, errs);
    if (n2)
        push_errors(&tc, api2, n2, errs2);
    produce_second_half(&tc);

    /* The abort, then the rewind: on the mock the group has no committed
     * offsets (it does not store transactional ones), so every partition
     * goes back to its beginning and the first half is handled again. */
    for (int64_t deadline = bt_now_ms() + WAIT_MS;
         logbook_get(&tc.log, &tc.log.aborted) == 0;) {
        if (bt_now_ms() > deadline)
            fail_msg("no abort and rewind after an abortable error%s",
                     logbook_tail(&tc.log));
        usleep(50 * 1000);
    }
    for (int v = 0; v < TOTAL; v++)
        want[v] = v < HALF ? 2 : 1;
    wait_settled(&tc, want);
    case_stop_clean(&tc);

    /* The messages of the aborted transaction (second half) were handled
     * again. */
    tally_snapshot(&tc.tally, d);
    for (int v = HALF; v < TOTAL; v++)
        redone += d[v] >= 2;
    if (!redone)
        fail_msg("no message of the aborted transaction was handled again%s",
                 logbook_tail(&tc.log));
    print_message("    aborted %d time(s), producer re-created %d time(s), "
                  "%d second-half values handled again\n",
                  tc.log.aborted, tc.log.reinit, redone);
    if (expect_reinit)
        assert_true(tc.log.reinit >= 1);
    else if (tc.log.reinit)
        fail_msg("an abortable error re-created the producer (abort should "
                 "have sufficed)%s", logbook_tail(&tc.log));
    case_teardown(&tc);
}

static void test_abortable_txn_offset_commit(void **state)
{
    (void)state;
    /* The group's generation moved on: the offsets cannot be committed. */
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID};
    run_abortable(API_TXN_OFFSET_COMMIT, 1, errs, 0, 0, NULL, false);
}

static void test_abortable_txn_offset_commit_illegal_generation(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION};
    run_abortable(API_TXN_OFFSET_COMMIT, 1, errs, 0, 0, NULL, false);
}

static void test_abortable_produce(void **state)
{
    (void)state;
    /* A record fails for good: the transaction cannot be completed. */
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED};
    run_abortable(API_PRODUCE, 1, errs, 0, 0, NULL, false);
}

static void test_abortable_add_partitions(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED};
    run_abortable(API_ADD_PARTITIONS_TO_TXN, 1, errs, 0, 0, NULL, false);
}

static void test_abortable_add_offsets(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED};
    run_abortable(API_ADD_OFFSETS_TO_TXN, 1, errs, 0, 0, NULL, false);
}

static void test_abortable_end_txn_epoch_bump(void **state)
{
    (void)state;
    /* KIP-360: the commit fails with UNKNOWN_PRODUCER_ID; the abort bumps
     * the producer epoch (InitProducerId with the current id). */
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID};
    run_abortable(API_END_TXN, 1, errs, 0, 0, NULL, false);
}

static void test_failed_abort_recreates_the_producer(void **state)
{
    (void)state;
    /* The offsets are refused (abortable), then the abort's EndTxn fails
     * too: the outcome is unknown, so ballast makes a new producer with the
     * same transactional.id, and rewinds. */
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID};
    const rd_kafka_resp_err_t end[] = {RD_KAFKA_RESP_ERR_INVALID_REQUEST};
    run_abortable(API_TXN_OFFSET_COMMIT, 1, errs, API_END_TXN, 1, end, true);
}

/* ---- fatal ------------------------------------------------------------- */

/* Pushes @p n errors on @p api, produces the second half, and expects the run to end
 * by itself with @p code. */
static void run_fatal(int16_t api, size_t n, const rd_kafka_resp_err_t *errs,
                      ballast_err_code_t code, const char *needle)
{
    txn_case_t tc;

    case_setup(&tc);
    case_start(&tc);
    push_errors(&tc, api, n, errs);
    produce_second_half(&tc);
    case_expect_fatal(&tc, code, needle);
    case_teardown(&tc);
}

static void test_fatal_end_txn_fenced(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_PRODUCER_FENCED};
    run_fatal(API_END_TXN, 1, errs, BALLAST_ERR_FENCED, "transactional.id");
}

static void test_fatal_add_offsets_invalid_epoch(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH};
    run_fatal(API_ADD_OFFSETS_TO_TXN, 1, errs, BALLAST_ERR_FENCED, "transactional.id");
}

static void test_fatal_txn_offset_commit_unauthorized(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
    run_fatal(API_TXN_OFFSET_COMMIT, 1, errs, BALLAST_ERR_KAFKA, NULL);
}

static void test_fatal_add_partitions_invalid_state(void **state)
{
    (void)state;
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_INVALID_TXN_STATE};
    run_fatal(API_ADD_PARTITIONS_TO_TXN, 1, errs, BALLAST_ERR_KAFKA, NULL);
}

static void test_fatal_init_producer_id_while_recreating(void **state)
{
    (void)state;
    txn_case_t tc;

    /* A failed abort makes ballast re-create the producer; its
     * InitProducerId is refused for good: the run must end, not loop. */
    case_setup(&tc);
    case_start(&tc);
    rd_kafka_mock_push_request_errors(tc.mc, API_TXN_OFFSET_COMMIT, 1,
                                      RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID);
    rd_kafka_mock_push_request_errors(tc.mc, API_END_TXN, 1,
                                      RD_KAFKA_RESP_ERR_INVALID_REQUEST);
    rd_kafka_mock_push_request_errors(
        tc.mc, API_INIT_PRODUCER_ID, 1,
        RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    produce_second_half(&tc);
    case_expect_fatal(&tc, BALLAST_ERR_KAFKA, "initialise transactions");
    assert_true(tc.log.reinit >= 1);
    case_teardown(&tc);
}

static void test_fatal_init_producer_id_at_startup(void **state)
{
    (void)state;
    static const struct {
        rd_kafka_resp_err_t err;
        ballast_err_code_t code;
    } cases[] = {
        {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, BALLAST_ERR_KAFKA},
        {RD_KAFKA_RESP_ERR_PRODUCER_FENCED, BALLAST_ERR_FENCED},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        txn_case_t tc;
        ballast_consumer_t *cons = NULL;
        ballast_error_t *err;
        int64_t start;

        case_setup(&tc);
        rd_kafka_mock_push_request_errors(tc.mc, API_INIT_PRODUCER_ID, 1, cases[i].err);
        start = bt_now_ms();
        err = ballast_consumer_new(tc.conf, &cons);
        if (!err)
            fail_msg("ballast_consumer_new succeeded although InitProducerId "
                     "failed with %s", rd_kafka_err2name(cases[i].err));
        print_message("    %s at start-up: [%d] %s (%lld ms)\n",
                      rd_kafka_err2name(cases[i].err), (int)ballast_error_code(err),
                      ballast_error_message(err), (long long)(bt_now_ms() - start));
        assert_null(cons);
        assert_int_equal(ballast_error_code(err), cases[i].code);
        assert_true(bt_now_ms() - start < 10000); /* not the start-up timeout */
        ballast_error_destroy(err);
        case_teardown(&tc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retriable_coordinator_errors_are_retried),
        cmocka_unit_test(test_abortable_txn_offset_commit),
        cmocka_unit_test(test_abortable_txn_offset_commit_illegal_generation),
        cmocka_unit_test(test_abortable_produce),
        cmocka_unit_test(test_abortable_add_partitions),
        cmocka_unit_test(test_abortable_add_offsets),
        cmocka_unit_test(test_abortable_end_txn_epoch_bump),
        cmocka_unit_test(test_failed_abort_recreates_the_producer),
        cmocka_unit_test(test_fatal_end_txn_fenced),
        cmocka_unit_test(test_fatal_add_offsets_invalid_epoch),
        cmocka_unit_test(test_fatal_txn_offset_commit_unauthorized),
        cmocka_unit_test(test_fatal_add_partitions_invalid_state),
        cmocka_unit_test(test_fatal_init_producer_id_while_recreating),
        cmocka_unit_test(test_fatal_init_producer_id_at_startup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
