/*
 * test_mock_txn.c - the transaction error matrix of exactly-once with Kafka
 * outputs, on librdkafka's mock cluster with injected errors:
 *
 *   - retriable coordinator errors (COORDINATOR_NOT_AVAILABLE,
 *     NOT_COORDINATOR, CONCURRENT_TRANSACTIONS, ...) on every transactional
 *     request are retried: every message is handled exactly once, nothing
 *     is aborted, no producer is re-created, the run ends cleanly;
 *   - abortable errors (what librdkafka 2.14's rdkafka_txnmgr.c classifies
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

#include <jansson.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
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
    BALLAST_HANDLER_ABI_VERSION, "txn-tally", bt_opaque_init, tally_handle, NULL, NULL};

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

/* With BT_TXN_DEBUG set: where the time goes. */
static void trace(const char *what, size_t i)
{
    static int64_t t0;
    if (!getenv("BT_TXN_DEBUG"))
        return;
    if (!t0)
        t0 = bt_now_ms();
    fprintf(stderr, "    [%6lld ms] %s %zu\n", (long long)(bt_now_ms() - t0), what, i);
}

/* ---- one case: a mock cluster, its input, a consumer -------------------- */

#define IN_LEADER 1
#define OUT_LEADER 2
#define MAX_ERRS 4

typedef enum expect {
    EXPECT_RETRIED,  /* handled exactly once, no abort, no new producer */
    EXPECT_ABORTED,  /* aborted and rewound, same producer */
    EXPECT_RECREATED /* aborted, producer re-created, rewound */,
    EXPECT_FATAL     /* the run ends by itself with `code` */
} expect_t;

typedef struct inject {
    int16_t api;
    rd_kafka_resp_err_t err;
} inject_t;

typedef struct txn_case {
    /* what the case is */
    const char *name;
    inject_t at_start[MAX_ERRS]; /* pushed before ballast starts */
    inject_t errs[MAX_ERRS];     /* pushed before the second half */
    expect_t expect;
    ballast_err_code_t code; /* EXPECT_FATAL */
    const char *needle;      /* EXPECT_FATAL: in the error message */
    /* while it runs */
    rd_kafka_t *host, *producer;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    tally_t tally;
    logbook_t log;
    ballast_conf_t *conf;
    bt_runner_t *run;
    char group[160], txn_id[160];
    char setup_error[256];
} txn_case_t;

static const char *const IN = "txn-in", *const OUT = "txn-out";

/* Queues values [first, first+count) for the input topic: key
 * "k<v % 10>", partition v % PARTS. */
static void produce_values(txn_case_t *tc, int first, int count)
{
    for (int v = first; v < first + count; v++) {
        char key[16], value[16];
        snprintf(key, sizeof(key), "k%d", v % 10);
        snprintf(value, sizeof(value), "%d", v);
        assert_int_equal(rd_kafka_producev(tc->producer, RD_KAFKA_V_TOPIC(IN),
                                           RD_KAFKA_V_PARTITION(v % PARTS),
                                           RD_KAFKA_V_KEY(key, strlen(key)),
                                           RD_KAFKA_V_VALUE(value, strlen(value)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
}

static void produce_flush(txn_case_t *tc)
{
    assert_int_equal(rd_kafka_flush(tc->producer, 10000), 0);
}

/* Errors go on the cluster's stack for their API, except Produce errors:
 * those go on the output's leader only, so that they hit ballast's
 * records and not the test's own input. */
static void push(txn_case_t *tc, const inject_t *errs)
{
    for (size_t i = 0; i < MAX_ERRS && errs[i].err; i++) {
        if (errs[i].api == API_PRODUCE)
            assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                 tc->mc, OUT_LEADER, API_PRODUCE, 1, errs[i].err, 0),
                             0);
        else
            rd_kafka_mock_push_request_errors(tc->mc, errs[i].api, 1, errs[i].err);
    }
}

/* ballast_conf_set for a thread that may not use cmocka's asserts. */
static void conf_set(txn_case_t *tc, const char *key, const char *value)
{
    ballast_error_t *err = ballast_conf_set(tc->conf, key, value);
    if (err) {
        if (!tc->setup_error[0])
            snprintf(tc->setup_error, sizeof(tc->setup_error), "conf %s=%s: %s", key,
                     value, ballast_error_message(err));
        ballast_error_destroy(err);
    }
}

/* A mock cluster of two brokers (the input's partitions led by one, the
 * output's by the other), a producer for the input, and a configuration.
 * The input is written by a plain (non-idempotent) producer, which sends
 * no InitProducerId request. Runs on a thread of its own (the mock's
 * commands sometimes take a second to be served, and the cases' can
 * overlap), so failures go to tc->setup_error. */
static void *case_setup(void *arg)
{
    txn_case_t *tc = arg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    bool ok = true;

    pthread_mutex_init(&tc->tally.mtx, NULL);
    pthread_mutex_init(&tc->log.mtx, NULL);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    tc->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    tc->mc = tc->host ? rd_kafka_mock_cluster_new(tc->host, 2) : NULL;
    if (!tc->mc) {
        snprintf(tc->setup_error, sizeof(tc->setup_error), "no mock cluster");
        return NULL;
    }
    tc->bootstrap = rd_kafka_mock_cluster_bootstraps(tc->mc);
    ok = !rd_kafka_mock_topic_create(tc->mc, IN, PARTS, 1) &&
         !rd_kafka_mock_topic_create(tc->mc, OUT, PARTS, 1);
    for (int p = 0; ok && p < PARTS; p++)
        ok = !rd_kafka_mock_partition_set_leader(tc->mc, IN, p, IN_LEADER) &&
             !rd_kafka_mock_partition_set_leader(tc->mc, OUT, p, OUT_LEADER);
    if (!ok) {
        snprintf(tc->setup_error, sizeof(tc->setup_error), "mock topics");
        return NULL;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", tc->bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "enable.idempotence", "false", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    tc->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!tc->producer) {
        snprintf(tc->setup_error, sizeof(tc->setup_error), "producer: %s", errstr);
        return NULL;
    }

    tc->conf = ballast_conf_new();
    conf_set(tc, "kafka.bootstrap.servers", tc->bootstrap);
    conf_set(tc, "kafka.group.id", tc->group);
    conf_set(tc, "kafka.transactional.id", tc->txn_id);
    conf_set(tc, "kafka.session.timeout.ms", "6000");
    conf_set(tc, "kafka.heartbeat.interval.ms", "500");
    conf_set(tc, "topics", IN);
    conf_set(tc, "output.topic", OUT);
    conf_set(tc, "semantics", "exactly-once");
    conf_set(tc, "transaction.interval.ms", "100");
    conf_set(tc, "startup.timeout.ms", "15000");
    conf_set(tc, "shutdown.timeout.ms", "10000");
    conf_set(tc, "log.level", getenv("BT_TXN_DEBUG") ? "debug" : "warn");
    ballast_conf_set_handler(tc->conf, &tally_handler, &tc->tally);
    ballast_conf_set_log_cb(tc->conf, log_cb, &tc->log);
    return NULL;
}

/* Sets up @p n cases side by side, then queues the first half of each
 * one's input. */
static void setup_cases(txn_case_t *cases, size_t n)
{
    pthread_t *threads = calloc(n, sizeof(*threads));

    assert_non_null(threads);
    for (size_t i = 0; i < n; i++) {
        snprintf(cases[i].group, sizeof(cases[i].group), "%s", bt_unique("mock-txn-g"));
        snprintf(cases[i].txn_id, sizeof(cases[i].txn_id), "%s",
                 bt_unique("mock-txn-id"));
        assert_int_equal(pthread_create(&threads[i], NULL, case_setup, &cases[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    for (size_t i = 0; i < n; i++) {
        if (cases[i].setup_error[0])
            fail_msg("%s: set-up: %s", cases[i].name, cases[i].setup_error);
        produce_values(&cases[i], 0, HALF);
    }
}

/* Releases a case (on a thread of its own: librdkafka's destroy calls take
 * about a second each, and the cases' can overlap). */
static void *case_teardown(void *arg)
{
    txn_case_t *tc = arg;

    ballast_conf_destroy(tc->conf);
    rd_kafka_destroy(tc->producer);
    rd_kafka_mock_cluster_destroy(tc->mc);
    rd_kafka_destroy(tc->host);
    pthread_mutex_destroy(&tc->tally.mtx);
    pthread_mutex_destroy(&tc->log.mtx);
    return NULL;
}

static ballast_stats_t case_stats(txn_case_t *tc)
{
    ballast_stats_t st;
    ballast_consumer_stats(bt_runner_consumer(tc->run), &st, sizeof(st));
    return st;
}

/* The offset the last committed transaction moved each input partition
 * to, as the status document says (-1: none yet). The poll thread
 * refreshes the document once a second. */
static void committed_offsets(txn_case_t *tc, int64_t *out)
{
    char *text = ballast_consumer_status_json(bt_runner_consumer(tc->run));
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    json_t *parts = root ? json_object_get(root, "partitions") : NULL;
    size_t i;
    json_t *p;

    for (int k = 0; k < PARTS; k++)
        out[k] = -1;
    json_array_foreach(parts, i, p)
    {
        json_int_t n = json_integer_value(json_object_get(p, "partition"));
        json_t *c = json_object_get(p, "committed");
        if (n >= 0 && n < PARTS && json_is_integer(c))
            out[n] = json_integer_value(c);
    }
    json_decref(root);
    ballast_free(text);
}

/* Waits until the pipeline settled: every value below @p upto handled at
 * least @p at_least[v] times (NULL: once), nothing in flight, and a
 * transaction committed every input partition up to its end. */
static void wait_settled(txn_case_t *tc, int upto, const int *at_least)
{
    int64_t deadline = bt_now_ms() + WAIT_MS;

    for (;;) {
        int d[TOTAL], missing = -1;
        int64_t committed[PARTS];
        bool done = true;
        ballast_stats_t st = case_stats(tc);

        tally_snapshot(&tc->tally, d);
        for (int v = 0; v < upto && missing < 0; v++)
            if (d[v] < (at_least ? at_least[v] : 1))
                missing = v;
        committed_offsets(tc, committed);
        for (int k = 0; k < PARTS; k++)
            done = done && committed[k] == upto / PARTS;
        if (done && missing < 0 && st.inflight == 0)
            return;
        if (bt_now_ms() > deadline)
            fail_msg("%s: the pipeline did not settle: value %d handled %d time(s); "
                     "committed %lld and %lld of %d; %llu in flight, %llu commits%s",
                     tc->name, missing, missing >= 0 ? d[missing] : -1,
                     (long long)committed[0], (long long)committed[1], upto / PARTS,
                     (unsigned long long)st.inflight, (unsigned long long)st.commits,
                     logbook_tail(&tc->log));
        usleep(100 * 1000);
    }
}

static void wait_aborted(txn_case_t *tc)
{
    for (int64_t deadline = bt_now_ms() + WAIT_MS;
         logbook_get(&tc->log, &tc->log.aborted) == 0;) {
        if (bt_now_ms() > deadline)
            fail_msg("%s: no abort and rewind after an abortable error%s", tc->name,
                     logbook_tail(&tc->log));
        usleep(50 * 1000);
    }
}

/* Stops a run that must end without an error. */
static void stop_clean(txn_case_t *tc)
{
    ballast_error_t *err = bt_runner_stop(tc->run);

    tc->run = NULL;
    if (err)
        fail_msg("%s: the run ended with an error: %s%s", tc->name,
                 ballast_error_message(err), logbook_tail(&tc->log));
}

/* A run that must end by itself, promptly, with the case's error. */
static void expect_fatal(txn_case_t *tc)
{
    ballast_error_t *err = bt_runner_join(tc->run, WAIT_MS);

    tc->run = NULL;
    if (!err)
        fail_msg("%s: the run ended without an error%s", tc->name, logbook_tail(&tc->log));
    print_message("    %s: [%d] %s\n", tc->name, (int)ballast_error_code(err),
                  ballast_error_message(err));
    if (ballast_error_code(err) != tc->code)
        fail_msg("%s: expected error code %d, got %d: %s%s", tc->name, (int)tc->code,
                 (int)ballast_error_code(err), ballast_error_message(err),
                 logbook_tail(&tc->log));
    if (tc->needle && !strstr(ballast_error_message(err), tc->needle))
        fail_msg("%s: the error does not say \"%s\": %s", tc->name, tc->needle,
                 ballast_error_message(err));
    assert_int_equal(ballast_error_is_fatal(err), 1);
    ballast_error_destroy(err);
}

/* What a case must show once its errors hit the second half. */
static void check_case(txn_case_t *tc)
{
    int d[TOTAL], want[TOTAL], redone = 0;

    switch (tc->expect) {
    case EXPECT_FATAL:
        expect_fatal(tc);
        return;
    case EXPECT_RETRIED:
        wait_settled(tc, TOTAL, NULL);
        /* A transaction committed after the errors were pushed: the mock
         * answers a request with the head of its API's error stack first,
         * so every pushed error was consumed on the way. */
        stop_clean(tc);
        tally_snapshot(&tc->tally, d);
        for (int v = 0; v < TOTAL; v++)
            if (d[v] != 1)
                fail_msg("%s: value %d handled %d times: a retriable error must "
                         "not abort or rewind%s", tc->name, v, d[v],
                         logbook_tail(&tc->log));
        if (tc->log.aborted || tc->log.reinit)
            fail_msg("%s: %d abort(s), %d new producer(s) after retriable errors%s",
                     tc->name, tc->log.aborted, tc->log.reinit, logbook_tail(&tc->log));
        return;
    case EXPECT_ABORTED:
    case EXPECT_RECREATED:
        /* Abort, then rewind. The mock stores no transactional offsets, so
         * the group has none and every partition goes back to its
         * beginning: the first half is handled a second time too. */
        wait_aborted(tc);
        for (int v = 0; v < TOTAL; v++)
            want[v] = v < HALF ? 2 : 1;
        wait_settled(tc, TOTAL, want);
        stop_clean(tc);
        /* The messages of the aborted transaction were handled again. */
        tally_snapshot(&tc->tally, d);
        for (int v = HALF; v < TOTAL; v++)
            redone += d[v] >= 2;
        if (!redone)
            fail_msg("%s: no message of the aborted transaction was handled again%s",
                     tc->name, logbook_tail(&tc->log));
        print_message("    %s: %d abort(s), %d new producer(s), %d second-half "
                      "values handled again\n",
                      tc->name, tc->log.aborted, tc->log.reinit, redone);
        if (tc->expect == EXPECT_RECREATED && !tc->log.reinit)
            fail_msg("%s: the producer was not re-created%s", tc->name,
                     logbook_tail(&tc->log));
        if (tc->expect == EXPECT_ABORTED && tc->log.reinit)
            fail_msg("%s: the producer was re-created, an abort should have "
                     "sufficed%s", tc->name, logbook_tail(&tc->log));
        return;
    }
}

/*
 * Runs @p n cases side by side (each has its own mock cluster and
 * consumer, so the mock's 3-second first group join is paid once):
 * the first half is handled and committed, then each case's errors are
 * pushed and the second half is produced, then each case is checked.
 */
static void run_cases(txn_case_t *cases, size_t n)
{
    pthread_t *threads = calloc(n, sizeof(*threads));

    assert_non_null(threads);
    trace("setup", n);
    setup_cases(cases, n);
    for (size_t i = 0; i < n; i++) {
        trace("start", i);
        produce_flush(&cases[i]);
        push(&cases[i], cases[i].at_start);
        cases[i].run = bt_runner_start(cases[i].conf);
    }
    for (size_t i = 0; i < n; i++) {
        int d[TOTAL];
        trace("first half", i);
        wait_settled(&cases[i], HALF, NULL);
        tally_snapshot(&cases[i].tally, d);
        for (int v = 0; v < HALF; v++)
            if (d[v] != 1)
                fail_msg("%s: value %d handled %d times before any injected error",
                         cases[i].name, v, d[v]);
    }
    for (size_t i = 0; i < n; i++) {
        trace("push", i);
        push(&cases[i], cases[i].errs);
        produce_values(&cases[i], HALF, TOTAL - HALF);
    }
    for (size_t i = 0; i < n; i++)
        produce_flush(&cases[i]);
    for (size_t i = 0; i < n; i++) {
        trace("check", i);
        check_case(&cases[i]);
    }
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, case_teardown, &cases[i]), 0);
    for (size_t i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    trace("done", n);
}

/* ---- the matrix -------------------------------------------------------- */

static void test_retriable_errors_are_retried(void **state)
{
    (void)state;
    /* Coordinator errors, a few on each transactional request (and on
     * InitProducerId at start-up), and a retriable Produce error. */
    txn_case_t cases[] = {
        {.name = "InitProducerId at start-up",
         .at_start = {{API_INIT_PRODUCER_ID, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
                      {API_INIT_PRODUCER_ID, RD_KAFKA_RESP_ERR_NOT_COORDINATOR},
                      {API_INIT_PRODUCER_ID,
                       RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS}},
         .expect = EXPECT_RETRIED},
        {.name = "AddPartitionsToTxn",
         .errs = {{API_ADD_PARTITIONS_TO_TXN, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
                  {API_ADD_PARTITIONS_TO_TXN, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
                  {API_ADD_PARTITIONS_TO_TXN, RD_KAFKA_RESP_ERR_NOT_COORDINATOR}},
         .expect = EXPECT_RETRIED},
        {.name = "AddOffsetsToTxn",
         .errs = {{API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
                  {API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
                  {API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_NOT_COORDINATOR}},
         .expect = EXPECT_RETRIED},
        {.name = "TxnOffsetCommit",
         .errs = {{API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
                  {API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_NOT_COORDINATOR},
                  {API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS}},
         .expect = EXPECT_RETRIED},
        {.name = "EndTxn",
         .errs = {{API_END_TXN, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
                  {API_END_TXN, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
                  {API_END_TXN, RD_KAFKA_RESP_ERR_NOT_COORDINATOR}},
         .expect = EXPECT_RETRIED},
        {.name = "Produce",
         .errs = {{API_PRODUCE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS},
                  {API_PRODUCE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS}},
         .expect = EXPECT_RETRIED},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_abortable_errors_abort_and_rewind(void **state)
{
    (void)state;
    /* What librdkafka 2.14 classifies as abortable (PERMANENT, not
     * FATAL) in rdkafka_txnmgr.c and rd_kafka_handle_Produce_error(). */
    txn_case_t cases[] = {
        {.name = "TxnOffsetCommit UNKNOWN_MEMBER_ID",
         .errs = {{API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID}},
         .expect = EXPECT_ABORTED},
        {.name = "TxnOffsetCommit ILLEGAL_GENERATION",
         .errs = {{API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION}},
         .expect = EXPECT_ABORTED},
        {.name = "Produce TOPIC_AUTHORIZATION_FAILED",
         .errs = {{API_PRODUCE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED}},
         .expect = EXPECT_ABORTED},
        {.name = "AddPartitionsToTxn TOPIC_AUTHORIZATION_FAILED",
         .errs = {{API_ADD_PARTITIONS_TO_TXN, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED}},
         .expect = EXPECT_ABORTED},
        {.name = "AddOffsetsToTxn GROUP_AUTHORIZATION_FAILED",
         .errs = {{API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED}},
         .expect = EXPECT_ABORTED},
        /* KIP-360: the commit fails with UNKNOWN_PRODUCER_ID; the abort
         * bumps the producer's epoch (InitProducerId with the current id). */
        {.name = "EndTxn UNKNOWN_PRODUCER_ID",
         .errs = {{API_END_TXN, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID}},
         .expect = EXPECT_ABORTED},
        /* The offsets are refused, then the abort's EndTxn fails too: the
         * outcome is unknown, so a new producer with the same
         * transactional.id settles it, and the partitions are rewound. */
        {.name = "TxnOffsetCommit UNKNOWN_MEMBER_ID, then the abort fails",
         .errs = {{API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID},
                  {API_END_TXN, RD_KAFKA_RESP_ERR_INVALID_REQUEST}},
         .expect = EXPECT_RECREATED},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_fatal_errors_stop_the_run(void **state)
{
    (void)state;
    txn_case_t cases[] = {
        {.name = "EndTxn PRODUCER_FENCED",
         .errs = {{API_END_TXN, RD_KAFKA_RESP_ERR_PRODUCER_FENCED}},
         .expect = EXPECT_FATAL, .code = BALLAST_ERR_FENCED,
         .needle = "transactional.id"},
        {.name = "AddOffsetsToTxn INVALID_PRODUCER_EPOCH",
         .errs = {{API_ADD_OFFSETS_TO_TXN, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH}},
         .expect = EXPECT_FATAL, .code = BALLAST_ERR_FENCED,
         .needle = "transactional.id"},
        {.name = "AddPartitionsToTxn INVALID_TXN_STATE",
         .errs = {{API_ADD_PARTITIONS_TO_TXN, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE}},
         .expect = EXPECT_FATAL, .code = BALLAST_ERR_KAFKA},
        {.name = "TxnOffsetCommit TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
         .errs = {{API_TXN_OFFSET_COMMIT,
                   RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED}},
         .expect = EXPECT_FATAL, .code = BALLAST_ERR_KAFKA},
        /* A failed abort makes ballast re-create the producer, and its
         * InitProducerId is refused for good: the run must end, not loop. */
        {.name = "InitProducerId refused while re-creating the producer",
         .errs = {{API_TXN_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID},
                  {API_END_TXN, RD_KAFKA_RESP_ERR_INVALID_REQUEST},
                  {API_INIT_PRODUCER_ID,
                   RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED}},
         .expect = EXPECT_FATAL, .code = BALLAST_ERR_KAFKA,
         .needle = "initialise transactions"},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
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
        txn_case_t tc = {.name = "InitProducerId at start-up"};
        ballast_consumer_t *cons = NULL;
        ballast_error_t *err;
        int64_t start;

        setup_cases(&tc, 1);
        produce_flush(&tc);
        rd_kafka_mock_push_request_errors(tc.mc, API_INIT_PRODUCER_ID, 1, cases[i].err);
        start = bt_now_ms();
        err = ballast_consumer_new(tc.conf, &cons);
        if (!err)
            fail_msg("ballast_consumer_new succeeded although InitProducerId "
                     "failed with %s", rd_kafka_err2name(cases[i].err));
        print_message("    %s at start-up: [%d] %s\n", rd_kafka_err2name(cases[i].err),
                      (int)ballast_error_code(err), ballast_error_message(err));
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
        cmocka_unit_test(test_retriable_errors_are_retried),
        cmocka_unit_test(test_abortable_errors_abort_and_rewind),
        cmocka_unit_test(test_fatal_errors_stop_the_run),
        cmocka_unit_test(test_fatal_init_producer_id_at_startup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
