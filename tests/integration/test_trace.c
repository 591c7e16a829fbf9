/*
 * test_trace.c - W3C Trace Context from input to everything ballast
 * produces, against the real broker. An exec handler (a Python child)
 * answers by the message's value:
 *   ok-N     ok, emitting one record whose value says which traceparent and
 *            tracestate the request's top-level members held, with a copy of
 *            the message's headers (a handler that forwards them);
 *   fail-N   fail: dead-lettered;
 *   retry-N  retry on the input topic (retry.max.attempts = 1: on to the
 *            retry tier), fail on the tier: dead-lettered from there.
 * The inputs: valid contexts (one with a tracestate and flags 01, one
 * with flags 00 and none), none at all, and a malformed one with a
 * tracestate. Then every output, tier copy and dead letter is read back:
 *   - for a valid input context: a valid traceparent with the input's
 *     trace-id and flags and a span of its own (the tier copy's and the
 *     dead letter's differ too), its tracestate copied, and the exec child
 *     saw the input's traceparent and tracestate;
 *   - without one, or with a malformed one: no traceparent and no
 *     tracestate with tracing = off, a valid fresh context with tracing =
 *     on (the one the child saw, continued), and the malformed value never
 *     goes out, nor its tracestate;
 *   - the retry's log line names the trace id.
 * At-least-once and exactly-once (Kafka transactions), tracing off and on.
 * And a plugin (tests/cli/plugins/test_plugin.c, echo_trace) reads the
 * same context through ballast_message_traceparent() and
 * ballast_message_tracestate().
 */
#include "support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP_A "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TS_A "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
#define TP_B "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
#define TP_C "00-11111111111111112222222222222222-3333333333333333-01"
#define TS_C "vendor=c"
#define TP_BAD "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
#define TS_BAD "left=behind"

static const char child_py[] =
    "import json, sys\n"
    "tier = sys.argv[1]\n"
    "for line in sys.stdin:\n"
    "    req = json.loads(line)\n"
    "    v = req['value']\n"
    "    if v.startswith('ok-'):\n"
    "        seen = '%s|%s|%s' % (v, req.get('traceparent', '-'), req.get('tracestate', '-'))\n"
    "        r = {'status': 'ok', 'emit': [{'value': seen, 'headers': req['headers']}]}\n"
    "    elif v.startswith('fail-') or req['topic'] == tier:\n"
    "        r = {'status': 'fail', 'error': 'boom'}\n"
    "    else:\n"
    "        r = {'status': 'retry', 'error': 'later'}\n"
    "    r['id'] = req['id']\n"
    "    sys.stdout.write(json.dumps(r) + '\\n')\n"
    "    sys.stdout.flush()\n";

/* ---- the log ----------------------------------------------------------------- */

static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 16];

static void collect_log(ballast_log_level_t level, const char *line, void *opaque)
{
    size_t used;

    (void)level;
    (void)opaque;
    pthread_mutex_lock(&log_mtx);
    used = strlen(log_text);
    snprintf(log_text + used, sizeof(log_text) - used, "%s\n", line);
    pthread_mutex_unlock(&log_mtx);
}

/* ---- producing and reading records with headers ------------------------------ */

typedef struct input {
    const char *value, *tp, *ts; /* tp, ts: NULL for none */
} input_t;

static const input_t inputs[] = {
    {"ok-1", TP_A, TS_A},     {"fail-2", TP_B, NULL}, {"retry-3", TP_C, TS_C},
    {"ok-4", NULL, NULL},     {"ok-5", TP_BAD, TS_BAD}, {"fail-6", TP_BAD, TS_BAD},
};
#define NINPUTS (sizeof(inputs) / sizeof(inputs[0]))

static void produce_inputs(const char *bs, const char *topic)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(kc, "bootstrap.servers", bs, NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    for (size_t i = 0; i < NINPUTS; i++) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(3);
        rd_kafka_header_add(h, "x-app", -1, "kept", -1);
        if (inputs[i].tp)
            rd_kafka_header_add(h, "traceparent", -1, inputs[i].tp, -1);
        if (inputs[i].ts)
            rd_kafka_header_add(h, "tracestate", -1, inputs[i].ts, -1);
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                           RD_KAFKA_V_VALUE((void *)inputs[i].value,
                                                            strlen(inputs[i].value)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* A record read back: its value and trace headers ("" when absent). */
typedef struct traced {
    char value[256], tp[128], ts[128];
    int tp_count; /* how many traceparent headers it has */
} traced_t;

/* Reads @p want records of one-partition @p topic (read_committed). */
static traced_t *read_traced(const char *bs, const char *topic, size_t want)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    traced_t *recs = calloc(want + 1, sizeof(*recs));
    int64_t deadline = bt_now_ms() + 60000;
    size_t got = 0;
    char errstr[256];
    rd_kafka_t *rk;

    assert_non_null(recs);
    rd_kafka_conf_set(kc, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(kc, "group.id", bt_unique("trace-reader"), NULL, 0);
    rd_kafka_conf_set(kc, "isolation.level", "read_committed", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    while (got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t len;
        if (bt_now_ms() > deadline)
            fail_msg("%s: read %zu of %zu records", topic, got, want);
        if (!m)
            continue;
        assert_int_equal(m->err, 0);
        snprintf(recs[got].value, sizeof(recs[got].value), "%.*s", (int)m->len,
                 (const char *)m->payload);
        if (rd_kafka_message_headers(m, &h))
            h = NULL;
        bt_header_text(h, "traceparent", recs[got].tp, sizeof(recs[got].tp));
        bt_header_text(h, "tracestate", recs[got].ts, sizeof(recs[got].ts));
        for (size_t i = 0; h && !rd_kafka_header_get(h, i, "traceparent", &v, &len); i++)
            recs[got].tp_count++;
        got++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return recs;
}

/* The record whose value is @p value, or starts with @p value and '|'. */
static const traced_t *find(const traced_t *recs, size_t n, const char *value)
{
    size_t len = strlen(value);

    for (size_t i = 0; i < n; i++)
        if (!strncmp(recs[i].value, value, len) &&
            (recs[i].value[len] == '\0' || recs[i].value[len] == '|'))
            return &recs[i];
    fail_msg("no record for %s", value);
    return recs; /* not reached: fail_msg() ends the test */
}

/* ---- what a traceparent must be ----------------------------------------------- */

/* Whether @p tp is a valid version-00 traceparent (lowercase hex, ids not
 * all zero), as the specification says. */
static bool valid_tp(const char *tp)
{
    static const int field[] = {2, 32, 16, 2};
    const char *p = tp;

    if (strlen(tp) != 55)
        return false;
    for (int f = 0; f < 4; f++) {
        bool nonzero = false;
        for (int i = 0; i < field[f]; i++, p++) {
            if (!strchr("0123456789abcdef", *p) || !*p)
                return false;
            nonzero = nonzero || *p != '0';
        }
        if ((f == 1 || f == 2) && !nonzero)
            return false;
        if (f < 3 && *p++ != '-')
            return false;
    }
    return !strncmp(tp, "00", 2);
}

/* @p tp continues @p parent: valid, the same trace-id and flags, another
 * span. */
static void assert_child(const char *tp, const char *parent, const char *what)
{
    if (!valid_tp(tp))
        fail_msg("%s: traceparent '%s' is not valid", what, tp);
    if (strncmp(tp + 3, parent + 3, 32) || strcmp(tp + 52, parent + 52))
        fail_msg("%s: traceparent '%s' does not continue '%s' (trace-id, flags)", what, tp,
                 parent);
    if (!strncmp(tp + 36, parent + 36, 16))
        fail_msg("%s: traceparent '%s' has its parent's span", what, tp);
}

/* What the child saw: "<value>|<traceparent or ->|<tracestate or ->". */
static void seen_by_child(const traced_t *r, char *tp, char *ts)
{
    const char *a = strchr(r->value, '|'), *b = a ? strchr(a + 1, '|') : NULL;

    assert_non_null(b);
    snprintf(tp, 128, "%.*s", (int)(b - a - 1), a + 1);
    snprintf(ts, 128, "%s", b + 1);
}

/* A record for an input without a valid context: none with tracing off;
 * with it on, a fresh valid one (continuing @p child_tp, what the child
 * saw, when given) and never the malformed value, nor a tracestate. */
static void assert_fresh_or_none(const traced_t *r, bool tracing, const char *child_tp,
                                 const char *what)
{
    assert_string_equal(r->ts, "");
    assert_true(r->tp_count <= 1);
    if (!tracing) {
        if (r->tp_count)
            fail_msg("%s: tracing = off, yet a traceparent '%s' went out", what, r->tp);
        if (child_tp)
            assert_string_equal(child_tp, "-");
        return;
    }
    if (!valid_tp(r->tp))
        fail_msg("%s: tracing = on, but traceparent '%s' is not a fresh valid one", what,
                 r->tp);
    if (child_tp)
        assert_child(r->tp, child_tp, what);
}

/* ---- the pipeline ------------------------------------------------------------- */

/* How many records @p topic holds (read_committed: transaction markers
 * and aborted records are not records). */
static size_t count_records(const char *bs, const char *topic)
{
    size_t n;
    bt_record_t *recs = bt_consume_to_end(bs, topic, 60000, &n);

    bt_records_free(recs, n);
    return n;
}

static void run_case(bool exactly_once, bool tracing)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("tr-in"), *out = bt_unique("tr-out"), *tier = bt_unique("tr-tier");
    const char *dlq = bt_unique("tr-dlq"), *group = bt_unique("tr-g");
    char script[512], cmd[1024], tiers[300], tp[128], ts[128];
    traced_t *outs, *tiered, *dead;
    const traced_t *r, *tier_c;
    ballast_conf_t *conf;
    bt_runner_t *run;
    bool named;

    snprintf(script, sizeof(script), "%s/trace-child.py", bt_tmpdir());
    bt_write_file(script, "%s", child_py);
    snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", script, tier);
    snprintf(tiers, sizeof(tiers), "%s:100", tier);
    bt_create_topic(bs, in, 1);
    bt_create_topic(bs, out, 1);
    bt_create_topic(bs, tier, 1);
    bt_create_topic(bs, dlq, 1);
    produce_inputs(bs, in);
    log_text[0] = '\0';

    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, NULL, NULL);
    ballast_conf_set_log_cb(conf, collect_log, NULL);
    bt_set(conf, "log.level", "info");
    bt_set(conf, "handler", "exec");
    bt_set(conf, "handler.exec.command", cmd);
    bt_set(conf, "output.topic", out);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "retry.topics", tiers);
    bt_set(conf, "retry.max.attempts", "2");
    bt_set(conf, "tracing", tracing ? "on" : "off");
    if (exactly_once) {
        bt_set(conf, "semantics", "exactly-once");
        bt_set(conf, "kafka.transactional.id", bt_unique("tr-txn"));
    }
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    /* Every input handled, then the last dead letter (after the tier). */
    assert_true(bt_wait_committed_to_end(bs, group, in, 1, 120000));
    dead = read_traced(bs, dlq, 3);
    outs = read_traced(bs, out, 3);
    tiered = read_traced(bs, tier, 1);
    assert_null(bt_runner_stop(run));
    /* Nothing more than that went out. */
    assert_int_equal(count_records(bs, out), 3);
    assert_int_equal(count_records(bs, tier), 1);
    assert_int_equal(count_records(bs, dlq), 3);

    /* A valid context with a tracestate: the child saw both; the output,
     * which copied the message's headers, carries a child instead. */
    r = find(outs, 3, "ok-1");
    seen_by_child(r, tp, ts);
    assert_string_equal(tp, TP_A);
    assert_string_equal(ts, TS_A);
    assert_child(r->tp, TP_A, "output of ok-1");
    assert_int_equal(r->tp_count, 1);
    assert_string_equal(r->ts, TS_A);

    /* Flags 00 kept; no tracestate to copy. */
    r = find(dead, 3, "fail-2");
    assert_child(r->tp, TP_B, "dead letter of fail-2");
    assert_int_equal(r->tp_count, 1);
    assert_string_equal(r->ts, "");

    /* Input, tier, DLQ: one trace, three spans. */
    tier_c = find(tiered, 1, "retry-3");
    assert_child(tier_c->tp, TP_C, "tier copy of retry-3");
    assert_string_equal(tier_c->ts, TS_C);
    r = find(dead, 3, "retry-3");
    assert_child(r->tp, tier_c->tp, "dead letter of retry-3 (after the tier)");
    assert_true(strncmp(r->tp + 36, &TP_C[36], 16) != 0);
    assert_string_equal(r->ts, TS_C);
    assert_int_equal(r->tp_count, 1);

    /* No context, and a malformed one: none, or a fresh one. */
    r = find(outs, 3, "ok-4");
    seen_by_child(r, tp, ts);
    assert_string_equal(ts, "-");
    assert_fresh_or_none(r, tracing, tp, "output of ok-4");
    r = find(outs, 3, "ok-5");
    seen_by_child(r, tp, ts);
    assert_string_equal(ts, "-");
    assert_fresh_or_none(r, tracing, tp, "output of ok-5 (malformed input)");
    assert_fresh_or_none(find(dead, 3, "fail-6"), tracing, NULL,
                         "dead letter of fail-6 (malformed input)");
    if (tracing) /* two fresh contexts are two traces */
        assert_true(strncmp(find(outs, 3, "ok-4")->tp + 3, find(outs, 3, "ok-5")->tp + 3, 32));

    /* The retry's log line names the trace. */
    pthread_mutex_lock(&log_mtx);
    named = strstr(log_text, "trace=11111111111111112222222222222222: retry") != NULL;
    pthread_mutex_unlock(&log_mtx);
    if (!named)
        fail_msg("no retry line names trace 1111...2222; the log:\n%s", log_text);
    free(outs);
    free(tiered);
    free(dead);
}

/* Runs the inputs through a pipeline of handler @p settings (key, value,
 * ..., NULL) into an output topic, to the end; @returns the NINPUTS
 * records it wrote, read back. */
static traced_t *run_to_output(const char *const *settings)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("tro-in"), *out = bt_unique("tro-out");
    const char *group = bt_unique("tro-g");
    traced_t *outs;
    ballast_conf_t *conf;
    bt_runner_t *run;

    bt_create_topic(bs, in, 1);
    bt_create_topic(bs, out, 1);
    produce_inputs(bs, in);
    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, NULL, NULL);
    for (size_t i = 0; settings[i]; i += 2)
        bt_set(conf, settings[i], settings[i + 1]);
    bt_set(conf, "output.topic", out);
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    assert_true(bt_wait_committed_to_end(bs, group, in, 1, 120000));
    outs = read_traced(bs, out, NINPUTS);
    assert_null(bt_runner_stop(run));
    assert_int_equal(count_records(bs, out), NINPUTS);
    return outs;
}

/* A plugin reads the checked context with the public accessors, and its
 * records, which carry no headers of their own, get the child context. */
static void test_plugin_sees_and_continues_the_context(void **state)
{
    static const char *const plugin[] = {"handler", "plugin", "handler.plugin.path",
                                         BALLAST_TEST_PLUGIN,
                                         "handler.plugin.param.echo_trace", "1", NULL};
    traced_t *outs;
    const traced_t *r;
    char tp[128], ts[128];

    (void)state;
    BT_REQUIRE_ENV();
    outs = run_to_output(plugin);
    r = find(outs, NINPUTS, "ok-1");
    seen_by_child(r, tp, ts);
    assert_string_equal(tp, TP_A);
    assert_string_equal(ts, TS_A);
    assert_child(r->tp, TP_A, "plugin output of ok-1");
    assert_string_equal(r->ts, TS_A);
    r = find(outs, NINPUTS, "fail-2");
    seen_by_child(r, tp, ts);
    assert_string_equal(tp, TP_B);
    assert_string_equal(ts, "-");
    assert_child(r->tp, TP_B, "plugin output of fail-2");
    r = find(outs, NINPUTS, "ok-5");
    seen_by_child(r, tp, ts);
    assert_string_equal(ts, "-");
    assert_fresh_or_none(r, false, tp, "plugin output of ok-5 (malformed input)");
    free(outs);
}

/* The forward handler never asks for the trace context: its outputs carry
 * the child context all the same (the context must be read before the
 * message's payload, its headers with it, is let go). */
static void test_forward_continues_the_context(void **state)
{
    static const char *const forward[] = {"handler", "forward", NULL};
    traced_t *outs;
    const traced_t *r;

    (void)state;
    BT_REQUIRE_ENV();
    outs = run_to_output(forward);
    r = find(outs, NINPUTS, "ok-1");
    assert_child(r->tp, TP_A, "forwarded ok-1");
    assert_string_equal(r->ts, TS_A);
    assert_int_equal(r->tp_count, 1);
    r = find(outs, NINPUTS, "fail-2");
    assert_child(r->tp, TP_B, "forwarded fail-2");
    assert_fresh_or_none(find(outs, NINPUTS, "ok-4"), false, NULL, "forwarded ok-4");
    free(outs);
}

static void test_at_least_once_tracing_off(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    run_case(false, false);
}

static void test_at_least_once_tracing_on(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    run_case(false, true);
}

static void test_exactly_once_tracing_off(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    run_case(true, false);
}

static void test_exactly_once_tracing_on(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    run_case(true, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_least_once_tracing_off),
        cmocka_unit_test(test_at_least_once_tracing_on),
        cmocka_unit_test(test_exactly_once_tracing_off),
        cmocka_unit_test(test_exactly_once_tracing_on),
        cmocka_unit_test(test_plugin_sees_and_continues_the_context),
        cmocka_unit_test(test_forward_continues_the_context),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
