/* test_exec_handler.c - `handler = exec` against real python3 children. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handlers/handlers.h"
#include "message.h"

/* The children live in a directory whose name has a space, so every
 * command line below also exercises quoting. */
static char g_dir[] = "/tmp/ballast exec test XXXXXX";

/* Answers by the "do" header: ok (default), retry:<why>, fail:<why>, emit,
 * echo (emits the request line and its key/value members), garbage, wrongid
 * (replies with the next request's id), id (with its own id), extra
 * (a second, unrequested line), exit (status 3, no reply), bye (replies,
 * then exits with status 4), kill (SIGKILL), sleep (5 s), fds (fails with
 * its open descriptors as the error), closein (closes stdin, exits with
 * status 5 0.3 s later). */
static const char child_py[] =
    "import base64, json, os, signal, sys, time\n"
    "while True:\n"
    "    line = sys.stdin.readline()\n"
    "    if not line:\n"
    "        break\n"
    "    req = json.loads(line)\n"
    "    do = req['headers'].get('do', 'ok')\n"
    "    out = {'status': 'ok'}\n"
    "    extra = ''\n"
    "    if do.startswith('retry:'):\n"
    "        out = {'status': 'retry', 'error': do[6:]}\n"
    "    elif do.startswith('fail:'):\n"
    "        out = {'status': 'fail', 'error': do[5:]}\n"
    "    elif do == 'emit':\n"
    "        out['emit'] = [{'topic': 'out', 'key': req['key'], 'value': 'copy',\n"
    "                        'headers': {'h': '1'}}, {'value_b64': 'AAE='}]\n"
    "    elif do == 'echo':\n"
    "        kv = {k: req[k] for k in ('key', 'key_b64', 'value', 'value_b64')\n"
    "              if k in req}\n"
    "        out['emit'] = [{'value': line.rstrip('\\n')}, kv]\n"
    "    elif do == 'garbage':\n"
    "        out = 'this is not json'\n"
    "    elif do == 'wrongid':\n"
    "        out['id'] = req['id'] + 1\n"
    "    elif do == 'id':\n"
    "        out['id'] = req['id']\n"
    "    elif do == 'extra':\n"
    "        extra = json.dumps({'status': 'fail', 'error': 'stray'}) + '\\n'\n"
    "    elif do == 'exit':\n"
    "        sys.exit(3)\n"
    "    elif do == 'kill':\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    elif do == 'closein':\n"
    "        os.close(0)\n"
    "        time.sleep(0.3)\n"
    "        sys.exit(5)\n"
    "    elif do == 'fds':\n"
    "        out = {'status': 'fail', 'error': ' '.join(os.listdir('/proc/self/fd'))}\n"
    "    elif do == 'sleep':\n"
    "        time.sleep(5)\n"
    "    text = out if isinstance(out, str) else json.dumps(out)\n"
    "    sys.stdout.write(text + '\\n' + extra)\n"
    "    sys.stdout.flush()\n"
    "    if do == 'bye':\n"
    "        sys.exit(4)\n";

/* Replies ok twice, then dies on the third request. */
static const char crash2_py[] =
    "#!/usr/bin/env python3\n"
    "import sys\n"
    "n = 0\n"
    "for line in iter(sys.stdin.readline, ''):\n"
    "    n += 1\n"
    "    if n == 3:\n"
    "        sys.exit(3)\n"
    "    sys.stdout.write('{\"status\":\"ok\"}\\n')\n"
    "    sys.stdout.flush()\n";

/* ---- helpers ------------------------------------------------------------ */

static char *path_in_dir(const char *name)
{
    size_t n = strlen(g_dir) + strlen(name) + 2;
    char *p = malloc(n);

    assert_non_null(p);
    snprintf(p, n, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char *path = path_in_dir(name);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
    free(path);
}

static int group_setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir))
        return -1;
    write_file("child.py", child_py, 0644);
    write_file("crash2.py", crash2_py, 0755);
    write_file("notexec.txt", "not a program\n", 0644);
    return 0;
}

/* Empties and removes the test directory, whatever a failed test left. */
static int group_teardown(void **state)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;

    (void)state;
    if (chdir("/") || !d)
        return -1;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char *p = path_in_dir(e->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    return rmdir(g_dir);
}

/* A command line running a script of the test directory with python3. */
static char *python_command(const char *script)
{
    char *path = path_in_dir(script);
    size_t n = strlen(path) + 32;
    char *cmd = malloc(n);

    assert_non_null(cmd);
    snprintf(cmd, n, "python3 -u '%s'", path);
    free(path);
    return cmd;
}

/* Runs the exec handler's init; @returns its code, *statep the state. */
static int exec_start(const char *command, const char *timeout_ms, void **statep,
                      char *errbuf, size_t errsize)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    ballast_handler_params_t params = {0};
    int rc;

    assert_non_null(conf);
    err = ballast_conf_set(conf, "handler.exec.command", command);
    assert_null(err);
    if (timeout_ms && (err = ballast_conf_set(conf, "handler.timeout.ms", timeout_ms)))
        fail_msg("handler.timeout.ms=%s: %s", timeout_ms, ballast_error_message(err));
    params.conf = conf;
    params.workers = 1;
    errbuf[0] = '\0';
    rc = bl_handler_exec.init(statep, &params, errbuf, errsize);
    ballast_conf_destroy(conf); /* the state must not depend on it */
    return rc;
}

static void *exec_start_ok(const char *script)
{
    char *cmd = python_command(script), errbuf[512];
    void *st = NULL;

    if (exec_start(cmd, NULL, &st, errbuf, sizeof(errbuf)))
        fail_msg("init failed: %s", errbuf);
    free(cmd);
    assert_non_null(st);
    return st;
}

/* Every child was reaped: this test process has none left. */
static void assert_no_children(void)
{
    int status;

    assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* A test message; @p action becomes the "do" header when not NULL. */
typedef struct tmsg {
    struct ballast_message_s m;
    struct ballast_result_s res;
} tmsg_t;

static void tmsg_init(tmsg_t *t, const void *value, size_t vlen, const char *action)
{
    memset(t, 0, sizeof(*t));
    t->m.topic = "in";
    t->m.partition = 1;
    t->m.offset = 7;
    t->m.timestamp = 1700000000000;
    t->m.key = "k";
    t->m.key_len = 1;
    t->m.value = value;
    t->m.value_len = value ? vlen : 0;
    t->m.attempt = 1;
    t->m.hdrs = rd_kafka_headers_new(2);
    assert_non_null(t->m.hdrs);
    if (action)
        rd_kafka_header_add(t->m.hdrs, "do", -1, action, -1);
    t->m.hdrs_loaded = true;
}

static void tmsg_clear(tmsg_t *t)
{
    bl_result_reset(&t->res);
    rd_kafka_headers_destroy(t->m.hdrs);
    t->m.hdrs = NULL;
}

/* Handles one message with @p action; the result stays in *t. */
static ballast_outcome_t handle(void *st, tmsg_t *t, const char *action)
{
    tmsg_init(t, "v", 1, action);
    return bl_handler_exec.handle(st, &t->m, &t->res);
}

/* Checks a handled message's outcome and error text. */
static void check(tmsg_t *t, const char *action, ballast_outcome_t got,
                  ballast_outcome_t outcome, const char *error_prefix)
{
    if (got != outcome)
        fail_msg("action '%s': outcome %d, want %d (error: %s)",
                 action ? action : "ok", (int)got, (int)outcome,
                 t->res.error ? t->res.error : "-");
    if (error_prefix) {
        assert_non_null(t->res.error);
        if (strncmp(t->res.error, error_prefix, strlen(error_prefix)))
            fail_msg("action '%s': error '%s', want prefix '%s'", action,
                     t->res.error, error_prefix);
    } else {
        assert_null(t->res.error);
    }
    tmsg_clear(t);
}

static void expect(void *st, const char *action, ballast_outcome_t outcome,
                   const char *error_prefix)
{
    tmsg_t t;
    ballast_outcome_t got = handle(st, &t, action);

    check(&t, action, got, outcome, error_prefix);
}

/* Like expect(), once the child is back: while its restart back-off runs,
 * a call answers UNAVAILABLE at once, and the caller waits (up to 10 s). */
static void expect_after_restart(void *st, const char *action, ballast_outcome_t outcome,
                                 const char *error_prefix)
{
    int64_t deadline = bl_now_ms() + 10000;
    ballast_outcome_t got;
    tmsg_t t;

    while ((got = handle(st, &t, action)) == BALLAST_OUTCOME_UNAVAILABLE) {
        tmsg_clear(&t);
        if (bl_now_ms() > deadline)
            fail_msg("action '%s': the child did not come back within 10 s",
                     action ? action : "ok");
        usleep(10 * 1000);
    }
    check(&t, action, got, outcome, error_prefix);
}

/* ---- tests -------------------------------------------------------------- */

static void test_outcomes(void **state)
{
    void *st = exec_start_ok("child.py");

    (void)state;
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    expect(st, "retry:db is down", BALLAST_OUTCOME_RETRY, "db is down");
    expect(st, "fail:bad record", BALLAST_OUTCOME_FAIL, "bad record");
    expect(st, "ok", BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

static void test_emits(void **state)
{
    void *st = exec_start_ok("child.py");
    tmsg_t t;
    bl_record_t *r;

    (void)state;
    assert_int_equal(handle(st, &t, "emit"), BALLAST_OUTCOME_OK);
    assert_int_equal(t.res.record_count, 2);
    r = &t.res.records[0];
    assert_string_equal(r->topic, "out");
    assert_true(r->has_key && r->key_len == 1 && !memcmp(r->key, "k", 1));
    assert_true(r->value_len == 4 && !memcmp(r->value, "copy", 4));
    assert_int_equal(r->header_count, 1);
    assert_string_equal(r->headers[0].name, "h");
    r = &t.res.records[1];
    assert_null(r->topic);
    assert_false(r->has_key);
    assert_true(r->value_len == 2 && !memcmp(r->value, "\x00\x01", 2));
    tmsg_clear(&t);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* A value that is not UTF-8 reaches the child as value_b64, and comes back
 * byte for byte when the child emits it. */
static void test_binary_value_reaches_child_as_b64(void **state)
{
    static const unsigned char value[] = {0xff, 0xfe, 0x00, 'x'};
    void *st = exec_start_ok("child.py");
    json_error_t jerr;
    json_t *seen;
    tmsg_t t;
    bl_record_t *r;

    (void)state;
    tmsg_init(&t, value, sizeof(value), "echo");
    assert_int_equal(bl_handler_exec.handle(st, &t.m, &t.res), BALLAST_OUTCOME_OK);
    assert_int_equal(t.res.record_count, 2);
    /* What the child read. */
    r = &t.res.records[0];
    seen = json_loadb(r->value, r->value_len, 0, &jerr);
    assert_non_null(seen);
    assert_string_equal(json_string_value(json_object_get(seen, "value_b64")), "//4AeA==");
    assert_null(json_object_get(seen, "value"));
    assert_string_equal(json_string_value(json_object_get(seen, "key")), "k");
    assert_int_equal(json_integer_value(json_object_get(seen, "offset")), 7);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(seen, "headers"), "do")),
                        "echo");
    json_decref(seen);
    /* What it sent back. */
    r = &t.res.records[1];
    assert_int_equal(r->value_len, sizeof(value));
    assert_memory_equal(r->value, value, sizeof(value));
    assert_true(r->key_len == 1 && !memcmp(r->key, "k", 1));
    tmsg_clear(&t);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* A reply that is no reply leaves the child's state unknown: it is killed,
 * and the message is retried (an attempt) in a fresh one; never failed for
 * the child's protocol error alone. */
static void test_garbage_reply_retries_in_fresh_child(void **state)
{
    void *st = exec_start_ok("child.py");

    (void)state;
    expect(st, "garbage", BALLAST_OUTCOME_RETRY,
           "exec: handler protocol error: malformed reply to request 1 (offset 7): not JSON");
    expect_after_restart(st, "fail:next", BALLAST_OUTCOME_FAIL, "next");
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* An unrequested line would shift every later reply onto the wrong
 * message; the child is restarted instead and pairing stays right. */
static void test_stray_output_restarts_child(void **state)
{
    void *st = exec_start_ok("child.py");

    (void)state;
    expect(st, "extra", BALLAST_OUTCOME_OK, NULL);
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL); /* not the stray "fail" */
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* A reply naming another request's id answers nothing: protocol error. */
static void test_wrong_id_is_a_protocol_error(void **state)
{
    void *st = exec_start_ok("child.py");

    (void)state;
    expect(st, "wrongid", BALLAST_OUTCOME_RETRY,
           "exec: handler protocol error: malformed reply to request 1 (offset 7): a reply "
           "for id 2");
    expect_after_restart(st, "id", BALLAST_OUTCOME_OK, NULL); /* the right id is fine */
    bl_handler_exec.destroy(st);
    assert_no_children();
}

static void test_crash_after_two_then_restart(void **state)
{
    void *st = exec_start_ok("crash2.py");
    int64_t t0;

    (void)state;
    expect(st, "1", BALLAST_OUTCOME_OK, NULL);
    expect(st, "2", BALLAST_OUTCOME_OK, NULL);
    /* A child that dies says nothing about the message: unavailable. */
    expect(st, "3", BALLAST_OUTCOME_UNAVAILABLE, "exec: child exited with status 3");
    assert_no_children(); /* reaped at once: no zombie */
    t0 = bl_now_ms();
    /* No sleep inside the call: the back-off is the caller's to wait. */
    expect(st, "4", BALLAST_OUTCOME_UNAVAILABLE, "exec: child exited with status 3");
    assert_true(bl_now_ms() - t0 < 90);
    expect_after_restart(st, "4", BALLAST_OUTCOME_OK, NULL); /* after the back-off */
    assert_true(bl_now_ms() - t0 >= 90);
    expect(st, "5", BALLAST_OUTCOME_OK, NULL);
    expect(st, "6", BALLAST_OUTCOME_UNAVAILABLE, "exec: child exited with status 3");
    bl_handler_exec.destroy(st);
    assert_no_children();
}

static void test_killed_by_signal(void **state)
{
    void *st = exec_start_ok("child.py");

    (void)state;
    expect(st, "kill", BALLAST_OUTCOME_UNAVAILABLE,
           "exec: child killed by signal 9 (SIGKILL)");
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL);
    /* Dying while holding a message retries it; dying between calls
     * ("bye") is noticed, and repaired, by the next call. */
    expect(st, "exit", BALLAST_OUTCOME_UNAVAILABLE, "exec: child exited with status 3");
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL);
    expect(st, "bye", BALLAST_OUTCOME_OK, NULL);
    usleep(300 * 1000); /* let it die before the next call, not during it */
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* The command run directly (shebang script); when it cannot be run any
 * more, a restart fails (unavailable), and succeeds once it can again. */
static void test_failed_restart_is_unavailable(void **state)
{
    char *path = path_in_dir("crash2.py"), *cmd, errbuf[512];
    size_t n = strlen(path) + 4;
    void *st = NULL;

    (void)state;
    cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n, "\"%s\"", path);
    if (exec_start(cmd, NULL, &st, errbuf, sizeof(errbuf)))
        fail_msg("init: %s", errbuf);
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    expect(st, NULL, BALLAST_OUTCOME_UNAVAILABLE, "exec: child exited with status 3");
    assert_int_equal(chmod(path, 0644), 0);
    usleep(150 * 1000); /* past the first back-off: the next call tries */
    expect(st, NULL, BALLAST_OUTCOME_UNAVAILABLE, "exec: cannot restart '");
    assert_int_equal(chmod(path, 0755), 0);
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
    free(cmd);
    free(path);
}

static void test_init_errors(void **state)
{
    static const struct {
        const char *command;
        int rc;
        const char *error;
    } cases[] = {
        {"no-such-command-ballast-test --flag", BALLAST_ERR_CONFIG,
         "handler.exec.command: cannot run 'no-such-command-ballast-test': No "
         "such file or directory"},
        {"/nonexistent/dir/child", BALLAST_ERR_CONFIG,
         "handler.exec.command: cannot run '/nonexistent/dir/child': No such file "
         "or directory"},
        {"./notexec.txt", BALLAST_ERR_CONFIG,
         "handler.exec.command: cannot run './notexec.txt': Permission denied"},
        {"python3 'unterminated", BALLAST_ERR_CONFIG,
         "handler.exec.command: unterminated single quote"},
        {"python3 \"x", BALLAST_ERR_CONFIG,
         "handler.exec.command: unterminated double quote"},
        {"   ", BALLAST_ERR_CONFIG, "handler.exec.command: no command given"},
    };
    (void)state;
    assert_int_equal(chdir(g_dir), 0); /* for ./notexec.txt */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char errbuf[512];
        void *st = (void *)1;
        int rc = exec_start(cases[i].command, NULL, &st, errbuf, sizeof(errbuf));

        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(errbuf, cases[i].error);
        assert_null(st);
    }
    assert_no_children();
}

/* Quoting: the words reach the child intact, with no shell in between. */
static void test_command_quoting(void **state)
{
    static const char argv_py[] =
        "import json, sys\n"
        "for line in iter(sys.stdin.readline, ''):\n"
        "    print(json.dumps({'status': 'fail', 'error': json.dumps(sys.argv[1:])}),"
        " flush=True)\n";
    char *script, *cmd, errbuf[512];
    size_t n;
    void *st = NULL;

    (void)state;
    write_file("argv.py", argv_py, 0644);
    script = path_in_dir("argv.py");
    n = strlen(script) + 128;
    cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n,
             "python3 \"%s\" plain 'two words' \"dq \\\"x\\\" \\\\\" a\\ b '' $HOME",
             script);
    if (exec_start(cmd, NULL, &st, errbuf, sizeof(errbuf)))
        fail_msg("init: %s", errbuf);
    expect(st, NULL, BALLAST_OUTCOME_FAIL,
           "[\"plain\", \"two words\", \"dq \\\"x\\\" \\\\\", \"a b\", \"\", \"$HOME\"]");
    bl_handler_exec.destroy(st);
    unlink(script);
    free(script);
    free(cmd);
    assert_no_children();
}

/* 1000 messages of 4 KiB each, replies echoing them: both pipes fill up,
 * so this deadlocks unless writes and reads are interleaved. */
static void test_batch_1000(void **state)
{
    enum { N = 1000, VLEN = 4096 };
    void *st = exec_start_ok("child.py");
    tmsg_t *t = calloc(N, sizeof(*t));
    const ballast_message_t **msgs = calloc(N, sizeof(*msgs));
    ballast_result_t **results = calloc(N, sizeof(*results));
    ballast_outcome_t *outcomes = calloc(N, sizeof(*outcomes));
    char(*values)[VLEN] = calloc(N, VLEN);

    (void)state;
    assert_true(t && msgs && results && outcomes && values);
    for (int i = 0; i < N; i++) {
        memset(values[i], 'a' + i % 26, VLEN);
        snprintf(values[i], 16, "%d;", i);
        values[i][strlen(values[i])] = '-';
        tmsg_init(&t[i], values[i], VLEN, i % 100 == 99 ? "fail:hundred" : "echo");
        t[i].m.offset = i;
        msgs[i] = &t[i].m;
        results[i] = &t[i].res;
        outcomes[i] = (ballast_outcome_t)-1;
    }
    bl_handler_exec.handle_batch(st, msgs, results, N, outcomes);
    for (int i = 0; i < N; i++) {
        if (i % 100 == 99) {
            assert_int_equal(outcomes[i], BALLAST_OUTCOME_FAIL);
            assert_string_equal(t[i].res.error, "hundred");
            continue;
        }
        if (outcomes[i] != BALLAST_OUTCOME_OK)
            fail_msg("message %d: outcome %d (%s)", i, (int)outcomes[i],
                     t[i].res.error ? t[i].res.error : "-");
        assert_int_equal(t[i].res.record_count, 2);
        assert_int_equal(t[i].res.records[1].value_len, VLEN);
        assert_memory_equal(t[i].res.records[1].value, values[i], VLEN);
    }
    /* The child is still in step after the batch. */
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    for (int i = 0; i < N; i++)
        tmsg_clear(&t[i]);
    bl_handler_exec.destroy(st);
    assert_no_children();
    free(values);
    free(outcomes);
    free(results);
    free(msgs);
    free(t);
}

/* A crash in the middle of a batch: replies already written count, the
 * rest is retried (unavailable: no verdict on them). */
static void test_batch_crash_midway(void **state)
{
    enum { N = 5 };
    void *st = exec_start_ok("crash2.py");
    tmsg_t t[N];
    const ballast_message_t *msgs[N];
    ballast_result_t *results[N];
    ballast_outcome_t outcomes[N];

    (void)state;
    for (int i = 0; i < N; i++) {
        tmsg_init(&t[i], "v", 1, NULL);
        msgs[i] = &t[i].m;
        results[i] = &t[i].res;
    }
    bl_handler_exec.handle_batch(st, msgs, results, N, outcomes);
    assert_int_equal(outcomes[0], BALLAST_OUTCOME_OK);
    assert_int_equal(outcomes[1], BALLAST_OUTCOME_OK);
    for (int i = 2; i < N; i++) {
        assert_int_equal(outcomes[i], BALLAST_OUTCOME_UNAVAILABLE);
        assert_string_equal(t[i].res.error, "exec: child exited with status 3");
    }
    for (int i = 0; i < N; i++)
        tmsg_clear(&t[i]);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

/* A child that closes its stdin while requests are still being written:
 * the write fails with EPIPE, and the SIGPIPE it raises (default action:
 * kill this process) is blocked and consumed, not delivered later. */
static void test_sigpipe_is_contained(void **state)
{
    enum { N = 200, VLEN = 8192 };
    void *st = exec_start_ok("child.py");
    tmsg_t *t = calloc(N, sizeof(*t));
    const ballast_message_t **msgs = calloc(N, sizeof(*msgs));
    ballast_result_t **results = calloc(N, sizeof(*results));
    ballast_outcome_t *outcomes = calloc(N, sizeof(*outcomes));
    char *value = malloc(VLEN);
    sigset_t pending;

    (void)state;
    assert_true(t && msgs && results && outcomes && value);
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    memset(value, 'x', VLEN);
    for (int i = 0; i < N; i++) {
        tmsg_init(&t[i], value, VLEN, i == 1 ? "closein" : NULL);
        msgs[i] = &t[i].m;
        results[i] = &t[i].res;
    }
    bl_handler_exec.handle_batch(st, msgs, results, N, outcomes);
    assert_int_equal(outcomes[0], BALLAST_OUTCOME_OK);
    for (int i = 1; i < N; i++) {
        assert_int_equal(outcomes[i], BALLAST_OUTCOME_UNAVAILABLE);
        assert_string_equal(t[i].res.error, "exec: child exited with status 5");
    }
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL); /* restarted */
    assert_int_equal(sigpending(&pending), 0);
    assert_int_equal(sigismember(&pending, SIGPIPE), 0);
    for (int i = 0; i < N; i++)
        tmsg_clear(&t[i]);
    bl_handler_exec.destroy(st);
    assert_no_children();
    free(value);
    free(outcomes);
    free(results);
    free(msgs);
    free(t);
}

/* concurrency=N: N states, each with its own child, each driven by its
 * own thread, none disturbing the others. */
enum { WORKERS = 4, PER_WORKER = 200 };

static void *worker_main(void *arg)
{
    void *st = arg;
    long bad = 0;

    for (int i = 0; i < PER_WORKER; i++) {
        tmsg_t t;
        const char *action = i % 50 == 49 ? "exit" : i % 7 == 0 ? "fail:seven" : NULL;
        ballast_outcome_t want = i % 50 == 49 ? BALLAST_OUTCOME_UNAVAILABLE
                                 : i % 7 == 0 ? BALLAST_OUTCOME_FAIL
                                              : BALLAST_OUTCOME_OK;
        ballast_outcome_t got;
        int64_t deadline = bl_now_ms() + 10000;
        /* After an exit, wait out the restart back-off as the runtime would. */
        while ((got = handle(st, &t, action)) == BALLAST_OUTCOME_UNAVAILABLE &&
               want != BALLAST_OUTCOME_UNAVAILABLE && bl_now_ms() < deadline) {
            tmsg_clear(&t);
            usleep(10 * 1000);
        }
        bad += got != want;
        tmsg_clear(&t);
    }
    return (void *)bad;
}

static void test_concurrent_workers(void **state)
{
    void *st[WORKERS];
    pthread_t th[WORKERS];

    (void)state;
    for (int i = 0; i < WORKERS; i++)
        st[i] = exec_start_ok("child.py");
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, st[i]), 0);
    for (int i = 0; i < WORKERS; i++) {
        void *bad;
        assert_int_equal(pthread_join(th[i], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
    for (int i = 0; i < WORKERS; i++)
        bl_handler_exec.destroy(st[i]);
    assert_no_children();
}

/* examples/exec-handler.py, run as its comment says to. */
/* An example child, run as its comment says to (the exec protocol's
 * examples in Python and Node.js decide alike). */
static void run_example_child(const char *command)
{
    static const struct {
        const char *value;
        size_t len;
        ballast_outcome_t outcome;
        const char *error;
    } cases[] = {
        {"{\"amount\": 12}", 14, BALLAST_OUTCOME_OK, NULL},
        {"not json", 8, BALLAST_OUTCOME_FAIL, "value is not JSON: "},
        {"\xff\x00", 2, BALLAST_OUTCOME_FAIL, "value is binary, expected JSON"},
        {NULL, 0, BALLAST_OUTCOME_OK, NULL},
    };
    char errbuf[512];
    void *st = NULL;

    if (exec_start(command, NULL, &st, errbuf, sizeof(errbuf)))
        fail_msg("init: %s", errbuf);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tmsg_t t;

        tmsg_init(&t, cases[i].value, cases[i].len, NULL);
        assert_int_equal(bl_handler_exec.handle(st, &t.m, &t.res), cases[i].outcome);
        if (cases[i].error)
            assert_true(t.res.error &&
                        !strncmp(t.res.error, cases[i].error, strlen(cases[i].error)));
        else
            assert_null(t.res.error);
        assert_int_equal(t.res.record_count, 0);
        tmsg_clear(&t);
    }
    bl_handler_exec.destroy(st);
    assert_no_children();
}

static void test_example_child(void **state)
{
    char cmd[1024];

    (void)state;
    snprintf(cmd, sizeof(cmd), "\"%s/examples/exec-handler.py\"", BALLAST_SRC_DIR);
    run_example_child(cmd);
    snprintf(cmd, sizeof(cmd), "node \"%s/examples/exec-handler.js\"", BALLAST_SRC_DIR);
    run_example_child(cmd);
}

/* The child gets stdin, stdout and stderr, not the application's other
 * descriptors, even those opened without O_CLOEXEC. */
static void test_child_inherits_no_stray_fds(void **state)
{
    int fd = open("/dev/null", O_RDONLY);
    void *st;
    tmsg_t t;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 100), 100);
    close(fd);
    st = exec_start_ok("child.py");
    assert_int_equal(handle(st, &t, "fds"), BALLAST_OUTCOME_FAIL);
    assert_non_null(t.res.error);
    assert_non_null(strstr(t.res.error, "0"));
    assert_null(strstr(t.res.error, "100"));
    tmsg_clear(&t);
    bl_handler_exec.destroy(st);
    close(100);
    assert_no_children();
}

static void test_destroy_is_prompt(void **state)
{
    void *st = exec_start_ok("child.py");
    int64_t t0;

    (void)state;
    expect(st, NULL, BALLAST_OUTCOME_OK, NULL);
    t0 = bl_now_ms();
    bl_handler_exec.destroy(st); /* the child exits on EOF */
    assert_true(bl_now_ms() - t0 < 2000);
    assert_no_children();
}

/* A child that stops answering is killed after the reply deadline
 * (`handler.timeout.ms`; the "sleep" action takes 5 s, and the deadline
 * leaves a fresh child, started on a loaded machine, time to answer). */
static void test_timeout_kills_child(void **state)
{
    char *cmd = python_command("child.py"), errbuf[512];
    void *st = NULL;
    int rc = exec_start(cmd, "2500", &st, errbuf, sizeof(errbuf));

    (void)state;
    free(cmd);
    assert_int_equal(rc, 0);
    expect(st, "sleep", BALLAST_OUTCOME_RETRY, "exec: no reply within 2500 ms");
    expect_after_restart(st, NULL, BALLAST_OUTCOME_OK, NULL);
    bl_handler_exec.destroy(st);
    assert_no_children();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_emits),
        cmocka_unit_test(test_binary_value_reaches_child_as_b64),
        cmocka_unit_test(test_garbage_reply_retries_in_fresh_child),
        cmocka_unit_test(test_stray_output_restarts_child),
        cmocka_unit_test(test_wrong_id_is_a_protocol_error),
        cmocka_unit_test(test_crash_after_two_then_restart),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_failed_restart_is_unavailable),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_command_quoting),
        cmocka_unit_test(test_batch_1000),
        cmocka_unit_test(test_batch_crash_midway),
        cmocka_unit_test(test_sigpipe_is_contained),
        cmocka_unit_test(test_concurrent_workers),
        cmocka_unit_test(test_example_child),
        cmocka_unit_test(test_child_inherits_no_stray_fds),
        cmocka_unit_test(test_destroy_is_prompt),
        cmocka_unit_test(test_timeout_kills_child),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
