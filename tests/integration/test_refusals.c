/*
 * test_refusals.c - a record the producer refuses must never be committed
 * past, in either delivery mode. A handler emits one record per message
 * and, for the sixth message, a record the producer cannot take: one over
 * message.max.bytes, one with no topic (and no output.topic), one to a
 * topic that does not exist (the test broker does not create topics), or
 * a dead-letter copy of a poison value too large to produce. The pipeline
 * must stop with an error naming the offset (and the topic, where one is at
 * fault), and then:
 *   - the group's committed offset is at most the refused message's;
 *   - a read_committed reader sees every output record of the committed
 *     offsets, and under exactly-once nothing else (no output of the
 *     refused message or of any message after it).
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define COUNT 10
#define BAD 5 /* the message whose record is refused */
#define BIG (1100 * 1000)

typedef enum { REFUSE_SIZE, REFUSE_NO_TOPIC, REFUSE_UNKNOWN_TOPIC, REFUSE_DLQ_SIZE } refusal_t;

typedef struct emitter {
    refusal_t refusal;
    const char *out_topic;
} emitter_t;

/* Emits "<value>" keyed "k<value>" to the output topic; the bad message
 * emits what the producer refuses, or (REFUSE_DLQ_SIZE) fails so that its
 * large value is dead-lettered. */
static ballast_outcome_t emitter_handle(void *state, const ballast_message_t *msg,
                                        ballast_result_t *res)
{
    const emitter_t *e = state;
    size_t len;
    const char *value = ballast_message_value(msg, &len);
    char key[32];
    static char big[BIG];

    if (len > 32) { /* the poison value */
        ballast_result_set_error(res, "poison");
        return BALLAST_OUTCOME_FAIL;
    }
    snprintf(key, sizeof(key), "k%.*s", (int)len, value);
    if (ballast_message_offset(msg) == BAD) {
        switch (e->refusal) {
        case REFUSE_SIZE:
            memset(big, 'x', sizeof(big));
            return ballast_result_emit(res, e->out_topic, key, strlen(key), big, sizeof(big))
                       ? BALLAST_OUTCOME_RETRY
                       : BALLAST_OUTCOME_OK;
        case REFUSE_NO_TOPIC:
            return ballast_result_emit(res, NULL, key, strlen(key), value, len)
                       ? BALLAST_OUTCOME_RETRY
                       : BALLAST_OUTCOME_OK;
        case REFUSE_UNKNOWN_TOPIC:
            return ballast_result_emit(res, "no-such-topic-here", key, strlen(key), value, len)
                       ? BALLAST_OUTCOME_RETRY
                       : BALLAST_OUTCOME_OK;
        case REFUSE_DLQ_SIZE:
            break;
        }
    }
    return ballast_result_emit(res, e->out_topic, key, strlen(key), value, len)
               ? BALLAST_OUTCOME_RETRY
               : BALLAST_OUTCOME_OK;
}

static const ballast_handler_t emitter = {BALLAST_HANDLER_ABI_VERSION, "emitter",
                                          bt_opaque_init, emitter_handle, NULL, NULL};

/* Input: values "0".."9" on one partition; with REFUSE_DLQ_SIZE the sixth
 * is a value just under the broker's limit (it fits the topic; its dead-letter copy
 * with headers does not fit the producer's message.max.bytes). */
static void produce_input(const char *bs, const char *topic, refusal_t refusal)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *p;

    rd_kafka_conf_set(kc, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(kc, "message.max.bytes", "2000000", NULL, 0);
    p = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(p);
    for (int i = 0; i < COUNT; i++) {
        char v[16];
        static char poison[1048450];
        const void *value = v;
        size_t len = (size_t)snprintf(v, sizeof(v), "%d", i);
        if (refusal == REFUSE_DLQ_SIZE && i == BAD) {
            memset(poison, 'p', sizeof(poison));
            value = poison;
            len = sizeof(poison);
        }
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                           RD_KAFKA_V_VALUE((void *)value, len),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    rd_kafka_destroy(p);
}

/* Runs the pipeline until the refusal stops it and checks what committed;
 * @p out_copy (NULL, or 256 bytes) receives the output topic's name. */
static void run_refusal(refusal_t refusal, const char *semantics, const char *expect_text,
                        char *out_copy)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("refuse-in"), *out = bt_unique("refuse-out");
    const char *dlq = bt_unique("refuse-dlq"), *group = bt_unique("refuse-g");
    emitter_t e = {refusal, out};
    ballast_conf_t *conf;
    ballast_error_t *err;
    bt_runner_t *run;
    int64_t committed, start;
    bt_record_t *recs;
    size_t n;

    BT_REQUIRE_ENV();
    if (out_copy)
        snprintf(out_copy, 256, "%s", out);
    bt_create_topic(bs, in, 1);
    bt_create_topic(bs, out, 1);
    bt_create_topic(bs, dlq, 1);
    produce_input(bs, in, refusal);
    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, &emitter, &e);
    bt_set(conf, "semantics", semantics);
    bt_set(conf, "transaction.interval.ms", "100");
    if (refusal == REFUSE_DLQ_SIZE)
        bt_set(conf, "dlq.topic", dlq);
    else if (refusal != REFUSE_NO_TOPIC)
        bt_set(conf, "output.topic", out);
    start = bt_now_ms();
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    err = bt_runner_join(run, 60000);
    if (!err)
        fail_msg("%s: the run ended without an error", semantics);
    print_message("%s: stopped after %lld ms: %s\n", semantics,
                  (long long)(bt_now_ms() - start), ballast_error_message(err));
    /* The error names the message (and the topic at fault). */
    assert_non_null(strstr(ballast_error_message(err), "offset 5"));
    if (expect_text && !strstr(ballast_error_message(err), expect_text))
        fail_msg("error does not mention \"%s\": %s", expect_text,
                 ballast_error_message(err));
    ballast_error_destroy(err);

    bt_committed(bs, group, in, 1, &committed);
    print_message("%s: committed offset %lld\n", semantics, (long long)committed);
    if (committed > BAD)
        fail_msg("%s: committed offset %lld is past the refused message at offset %d",
                 semantics, (long long)committed, BAD);
    recs = bt_consume_to_end(bs, out, 60000, &n);
    if (!strcmp(semantics, "exactly-once")) {
        /* Exactly the outputs of the committed offsets: nothing of the
         * refused message or after it. */
        int64_t want = committed < 0 ? 0 : committed;
        assert_int_equal(n, (size_t)want);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(strtol(recs[i].value, NULL, 10), (long)i);
    } else {
        /* At-least-once: every committed offset's output is there. */
        assert_int_equal(committed, BAD);
        assert_true(n >= (size_t)BAD);
        for (int64_t i = 0; i < BAD; i++)
            assert_int_equal(strtol(recs[i].value, NULL, 10), (long)i);
    }
    bt_records_free(recs, n);
}

static void test_size_alo(void **state)
{
    (void)state;
    run_refusal(REFUSE_SIZE, "at-least-once", NULL, NULL);
}

static void test_size_eos(void **state)
{
    (void)state;
    run_refusal(REFUSE_SIZE, "exactly-once", NULL, NULL);
}

static void test_no_topic_alo(void **state)
{
    (void)state;
    run_refusal(REFUSE_NO_TOPIC, "at-least-once", "no topic", NULL);
}

static void test_no_topic_eos(void **state)
{
    (void)state;
    run_refusal(REFUSE_NO_TOPIC, "exactly-once", "no topic", NULL);
}

static void test_unknown_topic_alo(void **state)
{
    (void)state;
    run_refusal(REFUSE_UNKNOWN_TOPIC, "at-least-once", "no-such-topic-here", NULL);
}

static void test_unknown_topic_eos(void **state)
{
    (void)state;
    run_refusal(REFUSE_UNKNOWN_TOPIC, "exactly-once", "no-such-topic-here", NULL);
}

static void test_dlq_size_alo(void **state)
{
    (void)state;
    run_refusal(REFUSE_DLQ_SIZE, "at-least-once", NULL, NULL);
}

static void test_dlq_size_eos(void **state)
{
    (void)state;
    run_refusal(REFUSE_DLQ_SIZE, "exactly-once", NULL, NULL);
}

/* The refusal's error says the transaction is aborted. Left open instead,
 * it holds the output partition's last stable offset, so every
 * read_committed reader of the output stops at it, later records of other
 * producers included, until the broker times the transaction out
 * (transaction.timeout.ms, 60 s by default). A record produced after the
 * run must be readable at once. */
static void test_refused_transaction_is_aborted(void **state)
{
    const char *bs = bt_bootstrap();
    char out[256];
    bt_record_t *recs;
    size_t n;
    bool marker = false;

    (void)state;
    run_refusal(REFUSE_SIZE, "exactly-once", NULL, out);
    bt_produce_seq(bs, out, 1, 100, 1, 0); /* the value "100" */
    recs = bt_consume_to_end(bs, out, 60000, &n);
    for (size_t i = 0; i < n; i++)
        marker |= recs[i].value && !strcmp(recs[i].value, "100");
    bt_records_free(recs, n);
    if (!marker)
        fail_msg("a record produced after the run is not readable (read_committed): the "
                 "refused transaction is still open");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_eos), cmocka_unit_test(test_size_alo),
        cmocka_unit_test(test_no_topic_alo),     cmocka_unit_test(test_no_topic_eos),
        cmocka_unit_test(test_unknown_topic_alo), cmocka_unit_test(test_unknown_topic_eos),
        cmocka_unit_test(test_dlq_size_alo),     cmocka_unit_test(test_dlq_size_eos),
        cmocka_unit_test(test_refused_transaction_is_aborted),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
