/*
 * test_exec_protocol.c - an exec handler that misbehaves on stdout must
 * never get a reply paired with the wrong message. A Python child emits one
 * record per message it answers "ok" (the output topic is the sink), and by
 * the message's offset it also, on the first attempt only unless said:
 *   1  prints a stray debug line before its reply;
 *   2  writes its reply in three pieces, split inside the JSON;
 *   3  answers with a line that is not JSON;
 *   4  answers with the id of another request;
 *   5  stays silent past handler.timeout.ms, then replies (too late);
 *   6  answers "fail" (every attempt): dead-lettered;
 *   7  answers junk on every attempt: dead-lettered after
 *      retry.max.attempts protocol errors, with a reason that says so;
 *   8  writes half its reply, waits, then the rest.
 * In batch mode it also writes two replies in one write when two requests
 * are waiting. Replies carry the request's id on even offsets only (v1
 * children need not echo it).
 * Then, in message and batch mode: every input offset is in the sink
 * exactly once or in the DLQ exactly once, never both, offsets ending in 6
 * and 7 are in the DLQ, and the committed offsets reach the end.
 *
 * Two children that keep the rules, in ways the codec or the loss
 * detection must not mistake for breaking them (nothing may be
 * dead-lettered):
 *   - one that starts a helper process, which inherits its stdout, and
 *     then dies before answering offset 3 three times: a child that exits
 *     is unavailable, whoever else still holds the pipe;
 *   - one whose reply for offset 2 emits a value with a NUL byte, written
 *     as the valid JSON escape \u0000.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define PARTS 2
#define TOTAL 20 /* per partition: each of the ten behaviours twice on each */

static const char child_py[] =
    "import json, os, select, sys, time\n"
    "buf = b''\n"
    "def read_line(block):\n"
    "    global buf\n"
    "    while b'\\n' not in buf:\n"
    "        if not block and not select.select([0], [], [], 0.005)[0]:\n"
    "            return None\n"
    "        chunk = os.read(0, 65536)\n"
    "        if not chunk:\n"
    "            return ''\n"
    "        buf += chunk\n"
    "    line, buf = buf.split(b'\\n', 1)\n"
    "    return line.decode()\n"
    "def out(data):\n"
    "    os.write(1, data.encode())\n"
    "def reply(req):\n"
    "    off, attempt = req['offset'], req['attempt']\n"
    "    kind = off % 10\n"
    "    first = attempt == 1\n"
    "    r = {'status': 'ok', 'emit': [{'value': '%d:%d' % (req['partition'], off)}]}\n"
    "    if off % 2 == 0:\n"
    "        r['id'] = req['id']\n"
    "    if kind == 6:\n"
    "        r = {'status': 'fail', 'error': 'six'}\n"
    "    text = json.dumps(r) + '\\n'\n"
    "    if kind == 1 and first:\n"
    "        out('debug: handling %d\\n' % off)\n"
    "    if kind == 3 and first:\n"
    "        return 'this is not json\\n'\n"
    "    if kind == 4 and first:\n"
    "        r['id'] = req['id'] + 1\n"
    "        return json.dumps(r) + '\\n'\n"
    "    if kind == 5 and first:\n"
    "        time.sleep(3)\n"
    "    if kind == 7:\n"
    "        return '{\"status\": \"ok\", \"emit\": [{\"value\": \"never\"}]\\n'\n"
    "    if kind == 2:\n"
    "        n = len(text)\n"
    "        for piece in (text[:n // 3], text[n // 3:2 * n // 3], text[2 * n // 3:]):\n"
    "            out(piece)\n"
    "            time.sleep(0.01)\n"
    "        return ''\n"
    "    if kind == 8:\n"
    "        out(text[:len(text) // 2])\n"
    "        time.sleep(0.05)\n"
    "        return text[len(text) // 2:]\n"
    "    return text\n"
    "while True:\n"
    "    line = read_line(True)\n"
    "    if not line:\n"
    "        break\n"
    "    data = reply(json.loads(line))\n"
    "    more = read_line(False)\n"
    "    if more:\n"
    "        data += reply(json.loads(more))\n"
    "    if data:\n"
    "        out(data)\n"
    "    if more == '':\n"
    "        break\n";

typedef struct progress {
    const char *bs, *group, *topic;
} progress_t;

static bool all_committed(void *arg)
{
    progress_t *p = arg;
    int64_t committed[PARTS], hwm[PARTS];

    bt_committed(p->bs, p->group, p->topic, PARTS, committed);
    bt_high_watermarks(p->bs, p->topic, PARTS, hwm);
    for (int i = 0; i < PARTS; i++)
        if (committed[i] != hwm[i])
            return false;
    return true;
}

/* Counts, per input (partition, offset), sink records and dead letters. */
static void tally_sink(const char *bs, const char *topic, int sink[PARTS][TOTAL])
{
    size_t n;
    bt_record_t *recs = bt_consume_to_end(bs, topic, 60000, &n);

    for (size_t i = 0; i < n; i++) {
        int p, o;
        if (sscanf(recs[i].value, "%d:%d", &p, &o) != 2 || p < 0 || p >= PARTS || o < 0 ||
            o >= TOTAL)
            fail_msg("sink holds a record no request asked for: '%s'", recs[i].value);
        sink[p][o]++;
    }
    bt_records_free(recs, n);
}

static void tally_dlq(const char *bs, const char *topic, int dead[PARTS][TOTAL],
                      bool protocol_reason[PARTS][TOTAL])
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    int64_t want = bt_total_watermark(bs, topic, 1), got = 0;
    int64_t deadline = bt_now_ms() + 60000;
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(kc, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(kc, "group.id", bt_unique("exec-dlq-reader"), NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    while (got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h;
        const void *v;
        size_t len;
        char part[16], off[24], why[512];
        int p, o;
        if (bt_now_ms() > deadline)
            fail_msg("read %lld of %lld dead letters", (long long)got, (long long)want);
        if (!m)
            continue;
        assert_int_equal(m->err, 0);
        got++;
        assert_int_equal(rd_kafka_message_headers(m, &h), 0);
        assert_int_equal(rd_kafka_header_get_last(h, "x-original-partition", &v, &len), 0);
        snprintf(part, sizeof(part), "%.*s", (int)len, (const char *)v);
        assert_int_equal(rd_kafka_header_get_last(h, "x-original-offset", &v, &len), 0);
        snprintf(off, sizeof(off), "%.*s", (int)len, (const char *)v);
        assert_int_equal(rd_kafka_header_get_last(h, "x-error-message", &v, &len), 0);
        snprintf(why, sizeof(why), "%.*s", (int)len, (const char *)v);
        p = atoi(part);
        o = atoi(off);
        assert_true(p >= 0 && p < PARTS && o >= 0 && o < TOTAL);
        dead[p][o]++;
        protocol_reason[p][o] = strstr(why, "protocol error") != NULL;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Runs the Python child @p script_text (written as @p name.py, given its
 * temporary directory as argv[1]) over @p count messages per partition,
 * at-least-once with a sink, a DLQ and 3 attempts (@p processing: NULL, or
 * its value with batches of 5), until every offset is committed; then adds
 * up each offset's sink records and dead letters. */
static void run_exec_child(const char *name, const char *script_text, const char *processing,
                           int count, int sink[PARTS][TOTAL], int dead[PARTS][TOTAL],
                           bool protocol_reason[PARTS][TOTAL])
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("xp-in"), *sink_topic = bt_unique("xp-sink");
    const char *dlq = bt_unique("xp-dlq"), *group = bt_unique("xp-g");
    const char *dir = bt_tmpdir();
    char script[512], cmd[1100];
    progress_t prog = {bs, group, in};
    ballast_conf_t *conf;
    bt_runner_t *run;

    BT_REQUIRE_ENV();
    snprintf(script, sizeof(script), "%s/%s.py", dir, name);
    bt_write_file(script, "%s", script_text);
    snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", script, dir);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, sink_topic, 1);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, in, PARTS, 0, count * PARTS, 0);

    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, NULL, NULL);
    bt_set(conf, "handler", "exec");
    bt_set(conf, "handler.exec.command", cmd);
    /* Long enough for a fresh child to start on a loaded machine. */
    bt_set(conf, "handler.timeout.ms", "2000");
    if (processing) {
        bt_set(conf, "processing", processing);
        bt_set(conf, "batch.max.messages", "5");
        bt_set(conf, "batch.max.ms", "20");
    }
    bt_set(conf, "output.topic", sink_topic);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "retry.max.attempts", "3");
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    if (!bt_wait_for(all_committed, &prog, 240000))
        fail_msg("%s: the committed offsets did not reach the end", name);
    assert_null(bt_runner_stop(run));
    tally_sink(bs, sink_topic, sink);
    tally_dlq(bs, dlq, dead, protocol_reason);
}

static void run_misbehaving_child(const char *processing)
{
    int sink[PARTS][TOTAL] = {{0}}, dead[PARTS][TOTAL] = {{0}};
    bool protocol_reason[PARTS][TOTAL] = {{false}};
    char name[64];

    snprintf(name, sizeof(name), "child-%s", processing);
    run_exec_child(name, child_py, processing, TOTAL, sink, dead, protocol_reason);
    for (int p = 0; p < PARTS; p++) {
        for (int o = 0; o < TOTAL; o++) {
            int kind = o % 10;
            if (sink[p][o] + dead[p][o] != 1)
                fail_msg("%s: [%d] offset %d: %d sink record(s) and %d dead letter(s), "
                         "want exactly one in all",
                         processing, p, o, sink[p][o], dead[p][o]);
            if ((kind == 6 || kind == 7) != (dead[p][o] == 1))
                fail_msg("%s: [%d] offset %d: %s", processing, p, o,
                         dead[p][o] ? "dead-lettered, but it was answered in the end"
                                    : "not dead-lettered");
            if (kind == 7 && !protocol_reason[p][o])
                fail_msg("%s: [%d] offset %d: the dead letter does not say it was the "
                         "handler's protocol error", processing, p, o);
        }
    }
}

/* A child that forks a helper (it keeps the stdout pipe open after the
 * child is gone) and exits without answering on its first three
 * deliveries of [0] offset 3; a file in @p dir counts them. */
static const char forking_child_py[] =
    "import json, os, sys, time\n"
    "if os.fork() == 0:\n"
    "    time.sleep(30)\n"
    "    os._exit(0)\n"
    "count = os.path.join(sys.argv[1], 'crashes')\n"
    "for line in sys.stdin:\n"
    "    req = json.loads(line)\n"
    "    p, off = req['partition'], req['offset']\n"
    "    if (p, off) == (0, 3):\n"
    "        n = int(open(count).read()) if os.path.exists(count) else 0\n"
    "        if n < 3:\n"
    "            open(count, 'w').write(str(n + 1))\n"
    "            os._exit(1)\n"
    "    r = {'id': req['id'], 'status': 'ok', 'emit': [{'value': '%d:%d' % (p, off)}]}\n"
    "    sys.stdout.write(json.dumps(r) + '\\n')\n"
    "    sys.stdout.flush()\n";

/* A child whose "ok" for [0] offset 2 emits "0:2", a NUL byte and "nul":
 * json.dumps writes the NUL as \u0000, which is valid JSON. */
static const char nul_child_py[] =
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    req = json.loads(line)\n"
    "    p, off = req['partition'], req['offset']\n"
    "    v = '%d:%d' % (p, off) + ('\\x00nul' if (p, off) == (0, 2) else '')\n"
    "    r = {'id': req['id'], 'status': 'ok', 'emit': [{'value': v}]}\n"
    "    sys.stdout.write(json.dumps(r) + '\\n')\n"
    "    sys.stdout.flush()\n";

/* Runs @p script_text (given its temporary directory as argv[1]) over 10
 * messages per partition, at-least-once with a DLQ and 3 attempts, until
 * every offset is committed; then every offset must be in the sink exactly
 * once and none in the DLQ. */
static void run_rule_keeping_child(const char *name, const char *script_text)
{
    int sink[PARTS][TOTAL] = {{0}}, dead[PARTS][TOTAL] = {{0}};
    bool protocol_reason[PARTS][TOTAL] = {{false}};

    run_exec_child(name, script_text, NULL, 10, sink, dead, protocol_reason);
    for (int p = 0; p < PARTS; p++)
        for (int o = 0; o < 10; o++)
            if (sink[p][o] != 1 || dead[p][o])
                fail_msg("%s: [%d] offset %d: %d sink record(s) and %d dead letter(s), "
                         "want one sink record and no dead letter%s",
                         name, p, o, sink[p][o], dead[p][o],
                         protocol_reason[p][o] ? " (dead-lettered as a protocol error)"
                                               : "");
}

/* The child exits before answering, but its helper still holds the pipe,
 * so no EOF comes: today each loss is taken for a reply timeout, which
 * counts an attempt, and offset 3 is dead-lettered after three. */
static void test_child_exits_while_its_helper_holds_stdout(void **state)
{
    (void)state;
    run_rule_keeping_child("forking-child", forking_child_py);
}

/* Today "\u0000" fails the whole reply as "not JSON", so a message the
 * child handled is retried as a protocol error and dead-lettered. */
static void test_reply_with_an_escaped_nul_is_a_reply(void **state)
{
    (void)state;
    run_rule_keeping_child("nul-child", nul_child_py);
}

static void test_message_mode(void **state)
{
    (void)state;
    run_misbehaving_child("message");
}

static void test_batch_mode(void **state)
{
    (void)state;
    run_misbehaving_child("batch");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_mode),
        cmocka_unit_test(test_batch_mode),
        cmocka_unit_test(test_child_exits_while_its_helper_holds_stdout),
        cmocka_unit_test(test_reply_with_an_escaped_nul_is_a_reply),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
