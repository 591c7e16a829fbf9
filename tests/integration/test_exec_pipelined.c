/*
 * test_exec_pipelined.c - exec protocol version 2 (pipelined) against the real broker:
 * `handler.exec.max.inflight` above 1, ordering = key.
 *
 *   - The Node and the Python SDK, each with a handler that awaits a few ms per message and
 *     writes a line to a log when it starts a message and when it ends one. From the log:
 *     every message was handled exactly once (none lost, none twice: the run is clean), the
 *     messages of each key were handled in the order they were produced and never two of
 *     one key at once, and more than one message was in the child at once (it did pipeline).
 *     The committed offsets reach the end.
 *   - A hand-written version 2 child that answers in reverse order and breaks the protocol
 *     once on chosen messages (the first time it sees each): a reply for an id never sent,
 *     a second reply for an id, a line that is not JSON, a version 1 reply (no id) after its
 *     hello, and silence until handler.timeout.ms. Each costs a restart of the child, and its
 *     open messages are sent again: every message must be emitted to the sink exactly once
 *     (no message lost, no reply applied twice), none dead-lettered, every offset committed.
 *     Its hello says max_inflight 8 (ballast's is 16): it records it if it ever has more
 *     than 8 requests open, and must not.
 *   - The Python SDK's batch form (processing = batch): every message once, each key's
 *     in order and never two of one key at once, from the child's first batch on.
 *   - tracing = on: every request to a version 2 child carries a fresh, valid traceparent.
 *   - A version 1 child (no hello) under max.inflight 16: it gets one request at a time (it
 *     looks for a second request before answering each, and records any it sees), and every
 *     message is handled; the one before which it writes a hello (a version 2 line from a
 *     version 1 child) is handled twice (the child is restarted and it is sent again), every
 *     other one once.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PARTS 4
#define KEYS 40
#define TOTAL 400

/* Runs an exec child over TOTAL messages of KEYS keys until every offset is committed;
 * @p extra: more keys and values, NULL-terminated (or NULL). */
static void run_child(const char *name, const char *cmd, const char *sink, const char *dlq,
                      const char *inflight, const char *const *extra)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("xv2-in"), *group = bt_unique("xv2-g");
    ballast_conf_t *conf;
    bt_runner_t *run;

    bt_create_topic(bs, in, PARTS);
    bt_produce_seq(bs, in, 0, 0, TOTAL, KEYS);
    conf = bt_conf_recording(bs, group, in, NULL);
    ballast_conf_set_handler(conf, NULL, NULL);
    bt_set(conf, "handler", "exec");
    bt_set(conf, "handler.exec.command", cmd);
    bt_set(conf, "handler.exec.max.inflight", inflight);
    bt_set(conf, "ordering", "key");
    bt_set(conf, "handler.timeout.ms", "2000");
    bt_set(conf, "retry.max.attempts", "3");
    if (sink)
        bt_set(conf, "output.topic", sink);
    if (dlq)
        bt_set(conf, "dlq.topic", dlq);
    for (size_t i = 0; extra && extra[i]; i += 2)
        bt_set(conf, extra[i], extra[i + 1]);
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    if (!bt_wait_committed_to_end(bs, group, in, PARTS, 240000))
        fail_msg("%s: the committed offsets did not reach the end", name);
    assert_null(bt_runner_stop(run));
}

/* Checks a handler's log: lines "B <key> <i> <open>" when it starts message i (with
 * <open> messages in the child then, this one included) and "E <key> <i>" when it ends;
 * @p pipelined: more than one message must have been in the child at once. */
static void check_log(const char *name, const char *path, bool pipelined)
{
    char *text = bt_read_file(path), *line, *save = NULL;
    int last[KEYS], open_of[KEYS], ended[TOTAL] = {0}, most = 0;

    assert_non_null(text);
    for (int k = 0; k < KEYS; k++)
        last[k] = open_of[k] = -1;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char what;
        int key, i, open = 0;
        if (sscanf(line, "%c k%d %d %d", &what, &key, &i, &open) < 3 || key < 0 ||
            key >= KEYS || i < 0 || i >= TOTAL || i % KEYS != key)
            fail_msg("%s: a log line no message explains: '%s'", name, line);
        if (what == 'B') {
            if (open_of[key] >= 0)
                fail_msg("%s: k%d: message %d started while %d was open", name, key, i,
                         open_of[key]);
            if (i <= last[key])
                fail_msg("%s: k%d: message %d started after %d", name, key, i, last[key]);
            open_of[key] = last[key] = i;
            most = open > most ? open : most;
        } else {
            if (open_of[key] != i)
                fail_msg("%s: k%d: message %d ended, but %d was open", name, key, i,
                         open_of[key]);
            open_of[key] = -1;
            ended[i]++;
        }
    }
    for (int i = 0; i < TOTAL; i++)
        if (ended[i] != 1)
            fail_msg("%s: message %d was handled %d times", name, i, ended[i]);
    if (pipelined && most < 2)
        fail_msg("%s: never more than %d message in the child at once", name, most);
    free(text);
}

static const char node_child[] =
    "import { appendFileSync } from 'node:fs';\n"
    "import { handle } from '%s/sdk/node/src/index.js';\n"
    "const log = process.argv[2];\n"
    "let open = 0;\n"
    "handle(async (msg) => {\n"
    "  open++;\n"
    "  appendFileSync(log, `B ${msg.key} ${msg.value} ${open}\\n`);\n"
    "  await new Promise((resolve) => setTimeout(resolve, 1 + (Number(msg.value) %% 5)));\n"
    "  appendFileSync(log, `E ${msg.key} ${msg.value}\\n`);\n"
    "  open--;\n"
    "}, { maxInflight: 32 });\n";

static const char python_child[] =
    "import asyncio, sys\n"
    "sys.path.insert(0, '%s/sdk/python/src')\n"
    "from ballast_handler import run_async\n"
    "log = open(sys.argv[1], 'a', buffering=1)\n"
    "open_now = 0\n"
    "async def handle(msg):\n"
    "    global open_now\n"
    "    open_now += 1\n"
    "    log.write('B %%s %%s %%d\\n' %% (msg.key, msg.value, open_now))\n"
    "    await asyncio.sleep((1 + int(msg.value) %% 5) / 1000)\n"
    "    log.write('E %%s %%s\\n' %% (msg.key, msg.value))\n"
    "    open_now -= 1\n"
    "run_async(handle, max_inflight=32)\n";

static void run_sdk(const char *lang, const char *source, const char *runner,
                    const char *const *extra, bool pipelined)
{
    const char *dir = bt_tmpdir();
    char script[512], logf[512], cmd[1200];

    BT_REQUIRE_ENV();
    snprintf(script, sizeof(script), "%s/%s-child.%s", dir, lang,
             strcmp(lang, "node") ? "py" : "mjs");
    snprintf(logf, sizeof(logf), "%s/%s.log", dir, lang);
    bt_write_file(script, source, BALLAST_SRC_DIR);
    bt_write_file(logf, "%s", "");
    snprintf(cmd, sizeof(cmd), "%s '%s' '%s'", runner, script, logf);
    run_child(lang, cmd, NULL, NULL, "16", extra);
    check_log(lang, logf, pipelined);
}

static void test_node_sdk(void **state)
{
    (void)state;
    run_sdk("node", node_child, "node", NULL, true);
}

static void test_python_sdk(void **state)
{
    (void)state;
    run_sdk("python", python_child, "python3", NULL, true);
}

/* The Python SDK's batch form: each batch's messages handled in turn, a random few ms
 * each. Before a child has said which protocol it speaks, ballast may not pipeline a
 * batch's messages to it as separate requests: a version 2 child runs open requests at
 * once, and messages of one key would overlap and reorder. */
static const char python_batch_child[] =
    "import asyncio, random, sys\n"
    "sys.path.insert(0, '%s/sdk/python/src')\n"
    "from ballast_handler import run_batch_async\n"
    "log = open(sys.argv[1], 'a', buffering=1)\n"
    "open_now = 0\n"
    "async def handle(msgs):\n"
    "    global open_now\n"
    "    for msg in msgs:\n"
    "        open_now += 1\n"
    "        log.write('B %%s %%s %%d\\n' %% (msg.key, msg.value, open_now))\n"
    "        await asyncio.sleep(random.random() * 0.003)\n"
    "        log.write('E %%s %%s\\n' %% (msg.key, msg.value))\n"
    "        open_now -= 1\n"
    "run_batch_async(handle, max_inflight=8)\n";

static void test_python_sdk_batches_keep_key_order(void **state)
{
    static const char *const batch[] = {"processing", "batch", "batch.max.messages", "20",
                                        "concurrency", "1", NULL};
    (void)state;
    run_sdk("python-batch", python_batch_child, "python3", batch, false);
}

/* tracing = on: every request to a version 2 child carries a fresh trace context. */
static const char python_trace_child[] =
    "import sys\n"
    "sys.path.insert(0, '%s/sdk/python/src')\n"
    "from ballast_handler import run_async\n"
    "log = open(sys.argv[1], 'a', buffering=1)\n"
    "async def handle(msg):\n"
    "    log.write('T %%s %%s\\n' %% (msg.value, msg.traceparent))\n"
    "run_async(handle, max_inflight=8)\n";

static void test_tracing_on_reaches_a_v2_child(void **state)
{
    static const char *const tracing[] = {"tracing", "on", NULL};
    const char *dir = bt_tmpdir();
    char script[512], logf[512], cmd[1200], *text, *line, *save = NULL;
    int traced[TOTAL] = {0};

    (void)state;
    BT_REQUIRE_ENV();
    snprintf(script, sizeof(script), "%s/trace.py", dir);
    snprintf(logf, sizeof(logf), "%s/trace.log", dir);
    bt_write_file(script, python_trace_child, BALLAST_SRC_DIR);
    bt_write_file(logf, "%s", "");
    snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", script, logf);
    run_child("trace", cmd, NULL, NULL, "8", tracing);
    text = bt_read_file(logf);
    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char tp[128] = "";
        int i;
        if (sscanf(line, "T %d %127s", &i, tp) != 2 || i < 0 || i >= TOTAL)
            fail_msg("trace: a log line no message explains: '%s'", line);
        if (strlen(tp) != 55 || strncmp(tp, "00-", 3) || tp[35] != '-' || tp[52] != '-')
            fail_msg("trace: message %d reached the child with traceparent '%s'", i, tp);
        traced[i]++;
    }
    for (int i = 0; i < TOTAL; i++)
        if (!traced[i])
            fail_msg("trace: message %d never reached the child", i);
    free(text);
}

/* Counts the sink's records per message ("<i>") and the dead letters. */
static void expect_sink_once(const char *name, const char *sink, const char *dlq)
{
    const char *bs = bt_bootstrap();
    int seen[TOTAL] = {0};
    size_t n;
    bt_record_t *recs = bt_consume_to_end(bs, sink, 60000, &n);

    for (size_t j = 0; j < n; j++) {
        int i = atoi(recs[j].value);
        if (i < 0 || i >= TOTAL)
            fail_msg("%s: the sink holds '%s'", name, recs[j].value);
        seen[i]++;
    }
    bt_records_free(recs, n);
    for (int i = 0; i < TOTAL; i++)
        if (seen[i] != 1)
            fail_msg("%s: message %d is in the sink %d times", name, i, seen[i]);
    if (bt_total_watermark(bs, dlq, 1))
        fail_msg("%s: %lld dead letters", name, (long long)bt_total_watermark(bs, dlq, 1));
}

/* A version 2 child that collects what requests are there, answers them in reverse
 * order, and on messages 5, 15, 25, 35 and 45 of each 50 breaks the protocol once (a
 * marker file in argv[1] remembers which it did). It creates argv[1]/overflow if it ever
 * has more requests open than the 8 its hello allows. */
static const char rogue_child_py[] =
    "import json, os, select, sys\n"
    "marks = sys.argv[1]\n"
    "def once(i):\n"
    "    path = os.path.join(marks, str(i))\n"
    "    if os.path.exists(path):\n"
    "        return False\n"
    "    open(path, 'w').close()\n"
    "    return True\n"
    "def out(text):\n"
    "    os.write(1, text.encode())\n"
    "out(json.dumps({'hello': {'protocol': 2, 'max_inflight': 8, 'sdk': 'rogue'}}) + '\\n')\n"
    "buf = b''\n"
    "silent = 0\n"
    "while True:\n"
    "    chunk = os.read(0, 65536)\n"
    "    if not chunk:\n"
    "        break\n"
    "    buf += chunk\n"
    "    while select.select([0], [], [], 0.003)[0]:\n"
    "        more = os.read(0, 65536)\n"
    "        if not more:\n"
    "            break\n"
    "        buf += more\n"
    "    *lines, buf = buf.split(b'\\n')\n"
    "    if len(lines) + silent > 8:\n"
    "        open(os.path.join(marks, 'overflow'), 'w').close()\n"
    "    for line in reversed(lines):\n"
    "        req = json.loads(line)\n"
    "        i = int(req['value'])\n"
    "        ok = {'id': req['id'], 'status': 'ok', 'emit': [{'value': str(i)}]}\n"
    "        kind = i % 50\n"
    "        if kind == 5 and once(i):\n"
    "            out(json.dumps(dict(ok, id=req['id'] + 100000)) + '\\n')\n"
    "        elif kind == 15 and once(i):\n"
    "            out(json.dumps(ok) + '\\n' + json.dumps(ok) + '\\n')\n"
    "        elif kind == 25 and once(i):\n"
    "            out('{\"id\": %d, \"status\": \\n' % req['id'])\n"
    "        elif kind == 35 and once(i):\n"
    "            out(json.dumps({'status': 'ok'}) + '\\n')\n"
    "        elif kind == 45 and once(i):\n"
    "            silent += 1\n"
    "        else:\n"
    "            out(json.dumps(ok) + '\\n')\n";

static void test_misbehaving_v2_child(void **state)
{
    const char *bs = bt_bootstrap();
    const char *sink = bt_unique("xv2-sink"), *dlq = bt_unique("xv2-dlq");
    const char *dir = bt_tmpdir();
    char script[512], marks[512], cmd[1200];

    (void)state;
    BT_REQUIRE_ENV();
    snprintf(script, sizeof(script), "%s/rogue.py", dir);
    snprintf(marks, sizeof(marks), "%s/marks", dir);
    bt_write_file(script, "%s", rogue_child_py);
    assert_int_equal(mkdir(marks, 0700), 0);
    snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", script, marks);
    bt_create_topic(bs, sink, 1);
    bt_create_topic(bs, dlq, 1);
    run_child("rogue", cmd, sink, dlq, "16", NULL);
    expect_sink_once("rogue", sink, dlq);
    snprintf(marks, sizeof(marks), "%s/marks/overflow", dir);
    if (access(marks, F_OK) == 0)
        fail_msg("the child had more requests open than its hello's max_inflight");
}

/* A version 1 child: no hello; before answering a request it looks 20 ms for another one,
 * and writes "overlap" to its log if one came. Before its reply to one message (its
 * second, once: the message goes into the file <log>.hello) it writes a hello, which a
 * version 1 child, whose first line was a reply, may not. */
static const char v1_child_py[] =
    "import json, os, select, sys\n"
    "log = open(sys.argv[1], 'a', buffering=1)\n"
    "buf = b''\n"
    "answered = 0\n"
    "while True:\n"
    "    while b'\\n' not in buf:\n"
    "        chunk = os.read(0, 65536)\n"
    "        if not chunk:\n"
    "            sys.exit(0)\n"
    "        buf += chunk\n"
    "    line, buf = buf.split(b'\\n', 1)\n"
    "    if buf or select.select([0], [], [], 0.02)[0]:\n"
    "        log.write('overlap\\n')\n"
    "    req = json.loads(line)\n"
    "    log.write('E %s %s\\n' % (req['key'], req['value']))\n"
    "    mark = sys.argv[1] + '.hello'\n"
    "    answered += 1\n"
    "    if answered == 2 and not os.path.exists(mark):\n"
    "        open(mark, 'w').write(req['value'])\n"
    "        os.write(1, b'{\"hello\": {\"protocol\": 2, \"max_inflight\": 4}}\\n')\n"
    "    os.write(1, (json.dumps({'status': 'ok'}) + '\\n').encode())\n";

static void test_v1_child_gets_one_at_a_time(void **state)
{
    const char *dir = bt_tmpdir();
    char script[512], logf[512], mark[600], cmd[1200], *text, *line, *save = NULL, *twice;
    int ended[TOTAL] = {0}, redone;

    (void)state;
    BT_REQUIRE_ENV();
    snprintf(script, sizeof(script), "%s/v1.py", dir);
    snprintf(logf, sizeof(logf), "%s/v1.log", dir);
    bt_write_file(script, "%s", v1_child_py);
    bt_write_file(logf, "%s", "");
    snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", script, logf);
    run_child("v1", cmd, NULL, NULL, "16", NULL);
    text = bt_read_file(logf);
    assert_non_null(text);
    if (strstr(text, "overlap"))
        fail_msg("a version 1 child was sent a request while another was open");
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int key, i;
        if (sscanf(line, "E k%d %d", &key, &i) != 2 || i < 0 || i >= TOTAL)
            fail_msg("v1: a log line no message explains: '%s'", line);
        ended[i]++;
    }
    snprintf(mark, sizeof(mark), "%s.hello", logf);
    twice = bt_read_file(mark);
    if (!twice)
        fail_msg("v1: the child never wrote its late hello");
    redone = atoi(twice);
    for (int i = 0; i < TOTAL; i++)
        if (ended[i] != (i == redone ? 2 : 1))
            fail_msg("v1: message %d was handled %d times", i, ended[i]);
    free(twice);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_sdk),
        cmocka_unit_test(test_python_sdk),
        cmocka_unit_test(test_python_sdk_batches_keep_key_order),
        cmocka_unit_test(test_tracing_on_reaches_a_v2_child),
        cmocka_unit_test(test_misbehaving_v2_child),
        cmocka_unit_test(test_v1_child_gets_one_at_a_time),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
