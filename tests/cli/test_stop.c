/*
 * test_stop.c - `ballast run` when what it depends on is not there:
 *   - a SIGTERM while start-up waits for an unreachable broker ends the
 *     run at once (exit 0), after start-up said what it waits for; so does
 *     one while it waits for a PostgreSQL server that does not answer;
 *   - a handler that cannot run (its script is missing, so every child
 *     exits at once) is unavailable, not failing: nothing is
 *     dead-lettered and nothing committed, /readyz fails naming the cause,
 *     one line says so, and a SIGTERM ends the run within
 *     shutdown.timeout.ms without restarting children;
 *   - exec children that ignore the end of their stdin and SIGTERM are
 *     waited for together, not one after another: the stop of four of
 *     them ends within the grace of one.
 */
#include "support.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_sigterm_while_waiting_for_the_broker(void **state)
{
    const char *dir = bt_tmpdir();
    char conf[300], err[300];
    pid_t pid;
    int64_t t0;

    (void)state;
    snprintf(conf, sizeof(conf), "%s/unreachable.conf", dir);
    snprintf(err, sizeof(err), "%s/unreachable.err", dir);
    bt_write_file(conf, "kafka.bootstrap.servers = 127.0.0.1:1\n"
                        "kafka.group.id = g\n"
                        "topics = t\n"
                        "handler = forward\n"
                        "output.topic = o\n"
                        "startup.timeout.ms = 30000\n");
    pid = bt_spawn_ballast(ARGV("run", conf), err);
    /* Start-up says what it waits for, every 5 s. */
    if (!bt_wait_file_has(err, "waiting for 127.0.0.1:1 (", 15000))
        fail_msg("no 'waiting for' line within 15 s");
    assert_true(bt_file_has(err, "s of 30"));
    t0 = bt_now_ms();
    kill(pid, SIGTERM);
    assert_int_equal(bt_wait(pid, 5000), 0);
    print_message("SIGTERM during start-up: exited after %lld ms\n",
                  (long long)(bt_now_ms() - t0));
    assert_true(bt_now_ms() - t0 < 2000);
}

/* A "PostgreSQL server" that accepts the connection and never answers:
 * start-up waits for it until startup.timeout.ms. design.md: "The stop flag
 * is read during start-up as well"; README: "A stop during start-up ends it
 * at once". Today the SIGTERM is ignored until the timeout (30 s), and the
 * run exits 69. */
static void test_sigterm_while_waiting_for_postgres(void **state)
{
    const char *bs = bt_bootstrap(), *dir = bt_tmpdir();
    const char *topic = bt_unique("pgwait");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    char conf[300], err[300];
    struct pollfd pfd;
    int lfd, cfd, rc;
    pid_t pid;
    int64_t t0;

    (void)state;
    BT_REQUIRE_ENV();
    bt_create_topic(bs, topic, 1);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    snprintf(conf, sizeof(conf), "%s/pgwait.conf", dir);
    snprintf(err, sizeof(err), "%s/pgwait.err", dir);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "topics = %s\n"
                  "handler = postgres\n"
                  "handler.postgres.dsn = host=127.0.0.1 port=%d dbname=d user=u\n"
                  "handler.postgres.sql = INSERT INTO t(k) VALUES (:key)\n"
                  "startup.timeout.ms = 30000\n",
                  bs, bt_unique("pgwait-g"), topic, (int)ntohs(sa.sin_port));
    pid = bt_spawn_ballast(ARGV("run", conf), err);
    /* Start-up has reached the database once it connects to us. */
    pfd = (struct pollfd){lfd, POLLIN, 0};
    if (poll(&pfd, 1, 20000) != 1)
        fail_msg("ballast did not connect to the database within 20 s");
    cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    t0 = bt_now_ms();
    bt_term(pid);
    rc = bt_wait(pid, 45000);
    print_message("SIGTERM while waiting for PostgreSQL: exit %d after %lld ms\n", rc,
                  (long long)(bt_now_ms() - t0));
    close(cfd);
    close(lfd);
    assert_int_equal(rc, 0);
    assert_true(bt_now_ms() - t0 < 2000);
}

static void test_unavailable_handler_dead_letters_nothing(void **state)
{
    const char *bs = bt_bootstrap(), *dir = bt_tmpdir();
    const char *topic = bt_unique("unavail"), *dlq = bt_unique("unavail-dlq");
    const char *group = bt_unique("unavail-g");
    char conf[300], err[300], addr[64], *text;
    bt_http_reply_t r;
    int64_t committed, t0, deadline;
    long at_term;
    pid_t pid;

    (void)state;
    BT_REQUIRE_ENV();
    bt_create_topic(bs, topic, 2);
    bt_create_topic(bs, dlq, 1);
    bt_produce_seq(bs, topic, 2, 0, 20, 0);
    snprintf(conf, sizeof(conf), "%s/missing.conf", dir);
    snprintf(err, sizeof(err), "%s/missing.err", dir);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "topics = %s\n"
                  "handler = exec\n"
                  "handler.exec.command = python3 %s/no-such-handler.py\n"
                  "dlq.topic = %s\n"
                  "retry.max.attempts = 2\n"
                  "retry.backoff.initial.ms = 10\n"
                  "shutdown.timeout.ms = 5000\n"
                  "metrics.listen = 127.0.0.1:0\n",
                  bs, group, topic, dir, dlq);
    pid = bt_spawn_ballast(ARGV("run", conf), err);
    bt_wait_listening(err, pid, addr, sizeof(addr));
    if (!bt_wait_file_has(err, "handler unavailable: ", 30000))
        fail_msg("no 'handler unavailable' line within 30 s");
    /* /readyz fails and names the cause. */
    r = bt_http_get(addr, "/readyz");
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "unavailable"));
    assert_non_null(strstr(r.body, "exited with status 2"));
    bt_http_reply_free(&r);
    /* For several restart back-offs, nothing is dead-lettered (the old
     * behaviour sent the messages to the DLQ one by one). */
    deadline = bt_now_ms() + 8000;
    while (bt_now_ms() < deadline) {
        assert_int_equal(bt_total_watermark(bs, dlq, 1), 0);
        usleep(500 * 1000);
    }
    text = bt_read_file(err);
    at_term = text ? (long)strlen(text) : 0;
    assert_int_equal(count_lines_with(text, "handler unavailable: "), 1);
    free(text);
    t0 = bt_now_ms();
    kill(pid, SIGTERM);
    assert_int_equal(bt_wait(pid, 15000), 0);
    print_message("stop with an unavailable handler: %lld ms\n", (long long)(bt_now_ms() - t0));
    assert_true(bt_now_ms() - t0 < 5000);
    /* Nothing restarted after the SIGTERM, nothing dead-lettered, nothing
     * committed. */
    text = bt_read_file(err);
    assert_null(strstr(text + at_term, "restart"));
    free(text);
    assert_int_equal(bt_total_watermark(bs, dlq, 1), 0);
    bt_committed(bs, group, topic, 1, &committed);
    assert_true(committed <= 0); /* none, or the start: nothing past it */
}

/* An idle child that neither exits at the end of its stdin nor on SIGTERM
 * gets 5 s, then 2 s after SIGTERM, then SIGKILL (docs/exec-protocol.md).
 * With concurrency = 4 the four children are today waited for one after
 * another: the stop takes 4 x 7 s = 28 s with shutdown.timeout.ms = 2000
 * (with concurrency = 16, about two minutes, past any orchestrator's grace
 * period). It must take the grace of one child. */
static void test_lingering_children_are_waited_for_together(void **state)
{
    const char *bs = bt_bootstrap(), *dir = bt_tmpdir();
    const char *topic = bt_unique("linger"), *group = bt_unique("linger-g");
    char conf[300], err[300], script[300];
    int64_t t0, took;
    pid_t pid;

    (void)state;
    BT_REQUIRE_ENV();
    bt_create_topic(bs, topic, 4);
    bt_produce_seq(bs, topic, 4, 0, 20, 0);
    snprintf(script, sizeof(script), "%s/deaf.py", dir);
    bt_write_file(script, "import json, signal, sys, time\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                          "for line in sys.stdin:\n"
                          "    req = json.loads(line)\n"
                          "    sys.stdout.write(json.dumps({'id': req['id'], "
                          "'status': 'ok'}) + '\\n')\n"
                          "    sys.stdout.flush()\n"
                          "while True:\n"
                          "    time.sleep(1)\n");
    snprintf(conf, sizeof(conf), "%s/linger.conf", dir);
    snprintf(err, sizeof(err), "%s/linger.err", dir);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "topics = %s\n"
                  "handler = exec\n"
                  "handler.exec.command = python3 %s\n"
                  "concurrency = 4\n"
                  "shutdown.timeout.ms = 2000\n",
                  bs, group, topic, script);
    pid = bt_spawn_ballast(ARGV("run", conf), err);
    if (!bt_wait_committed_to_end(bs, group, topic, 4, 60000))
        fail_msg("the committed offsets did not reach the end");
    t0 = bt_now_ms();
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 120000), 0);
    took = bt_now_ms() - t0;
    print_message("stop with 4 lingering children: %lld ms\n", (long long)took);
    if (took > 2000 + 5000 + 2000 + 3000)
        fail_msg("the stop took %lld ms: the children were waited for one after another",
                 (long long)took);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_while_waiting_for_the_broker),
        cmocka_unit_test(test_unavailable_handler_dead_letters_nothing),
        cmocka_unit_test(test_lingering_children_are_waited_for_together),
        cmocka_unit_test(test_sigterm_while_waiting_for_postgres),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
