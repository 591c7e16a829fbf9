/*
 * test_startup.c - what `ballast run` refuses at start-up, and `ballast
 * check` telling it beforehand: a refused PostgreSQL login is a
 * configuration error at once (78, with the server's own message), a
 * server that does not answer is 69 after startup.timeout.ms; `check`
 * catches placeholder typos and a missing exec program without a network,
 * and `check --connect` lists every item, ok or failed, against the real
 * broker and databases, changing nothing.
 */
#include "sql_fixture.h"
#include "support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* Long enough that a run which waited for it would be killed by the
 * tests' own deadline (RUN_DEADLINE_MS) and fail. */
#define NEVER_MS "600000"
#define RUN_DEADLINE_MS 30000

/* A config file of the suite's own, from a format string. */
static const char *write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *write_conf(const char *fmt, ...)
{
    static char path[300];
    char body[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s.conf", bt_tmpdir(), bt_unique("conf"));
    bt_write_file(path, "%s", body);
    return path;
}

/* Runs ballast; fails unless it exits with @p code and one line on stderr
 * holding every fragment given (NULL-terminated). @returns the elapsed ms. */
static int64_t expect_exit(const char *const *argv, int code, ...)
{
    int64_t start = bt_now_ms();
    char *err = NULL;
    int rc = bt_run_ballast(argv, RUN_DEADLINE_MS, &err);
    int64_t elapsed = bt_now_ms() - start;
    va_list ap;

    if (rc != code)
        fail_msg("exit %d, expected %d; stderr: %s", rc, code, err ? err : "");
    va_start(ap, code);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        bt_assert_one_line(err, frag);
    va_end(ap);
    free(err);
    return elapsed;
}

/* A `ballast run` of handler postgres on a fresh topic with @p dsn. */
static const char *pg_run_conf(const char *dsn, const char *timeout_ms)
{
    const char *in = bt_unique("st-in");

    bt_create_topic(bt_bootstrap(), in, 1);
    return write_conf("kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
                      "handler = postgres\nhandler.postgres.dsn = %s\n"
                      "handler.postgres.sql = SELECT :value::text\n"
                      "startup.timeout.ms = %s\n",
                      bt_bootstrap(), bt_unique("st-g"), in, dsn, timeout_ms);
}

/* ---- ballast run: PostgreSQL refuses, or does not answer ----------------- */

static void test_run_wrong_pg_password_exits_78_at_once(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char dsn[1024];
    char *err = NULL;
    int rc;

    snprintf(dsn, sizeof(dsn), "%s password=wrong-pw-secret", bt_pg_pw_dsn());
    rc = bt_run_ballast(ARGV("run", pg_run_conf(dsn, NEVER_MS)), RUN_DEADLINE_MS, &err);
    if (rc != 78)
        fail_msg("exit %d, expected 78 (-1: still waiting at the deadline); stderr: %s", rc,
                 err ? err : "");
    bt_assert_one_line(err, "handler.postgres.dsn");
    bt_assert_one_line(err, "password authentication failed for user \"ballast_pw\"");
    bt_assert_one_line(err, "SQLSTATE 28P01");
    assert_null(strstr(err, "wrong-pw-secret"));
    free(err);
}

static void test_run_unknown_database_exits_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char dsn[1024];

    snprintf(dsn, sizeof(dsn), "%s dbname=nosuch_%d", bt_pg(), (int)getpid());
    expect_exit(ARGV("run", pg_run_conf(dsn, NEVER_MS)), 78, "does not exist",
                "SQLSTATE 3D000", (char *)NULL);
}

static void test_run_unknown_role_exits_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char dsn[1024];

    snprintf(dsn, sizeof(dsn), "%s user=nosuch_%d", bt_pg(), (int)getpid());
    expect_exit(ARGV("run", pg_run_conf(dsn, NEVER_MS)), 78, "does not exist",
                "SQLSTATE 28000", (char *)NULL);
}

/* Nothing listens: retried until startup.timeout.ms, then 69 with the
 * cause of the attempts (not merely "timed out"). */
static void test_run_pg_not_listening_exits_69_after_timeout(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char dsn[256];
    int64_t elapsed;

    snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d dbname=x user=x password=topsecret",
             bt_free_port());
    elapsed = expect_exit(ARGV("run", pg_run_conf(dsn, "2000")), 69,
                          "handler.postgres.dsn: cannot connect within 2000 ms",
                          "Connection refused", (char *)NULL);
    assert_true(elapsed >= 2000);
}

/* ---- ballast check, no network ------------------------------------------ */

/* Handler settings on a broker nobody listens on: check must not need it. */
static const char *offline_conf(const char *handler_lines)
{
    return write_conf("kafka.bootstrap.servers = 127.0.0.1:1\nkafka.group.id = g\n"
                      "topics = t\n%s",
                      handler_lines);
}

static void test_check_catches_placeholder_typos(void **state)
{
    (void)state;
    char db[300], lines[600];
    const char *pg = offline_conf("handler = postgres\n"
                                  "handler.postgres.dsn = host=127.0.0.1 port=1 dbname=x\n"
                                  "handler.postgres.sql = INSERT INTO t VALUES (:value)\n");

    expect_exit(ARGV("check", pg), 0, (char *)NULL);
    expect_exit(ARGV("check", pg, "-X", "handler.postgres.sql=INSERT INTO t VALUES (:vlaue)"),
                78, "handler.postgres.sql", ":vlaue", (char *)NULL);
    expect_exit(ARGV("check", pg, "-X", "handler.postgres.sql=INSERT INTO t VALUES (:header.)"),
                78, "handler.postgres.sql", ":header", (char *)NULL);
    expect_exit(ARGV("check", pg, "-X", "handler.postgres.dsn=host='unterminated"), 78,
                "handler.postgres.dsn", (char *)NULL);

    snprintf(db, sizeof(db), "%s/%s.db", bt_tmpdir(), bt_unique("typo"));
    snprintf(lines, sizeof(lines),
             "handler = sqlite\nhandler.sqlite.path = %s\n"
             "handler.sqlite.sql = INSERT INTO t VALUES (:offest)\n",
             db);
    expect_exit(ARGV("check", offline_conf(lines)), 78, "handler.sqlite.sql", ":offest",
                (char *)NULL);
    assert_int_equal(access(db, F_OK), -1); /* not opened, not created */
}

static void test_check_catches_a_missing_exec_program(void **state)
{
    (void)state;
    char script[300], plain[300], cmd[700];
    const char *conf = offline_conf("handler = exec\nhandler.exec.command = sh\n");

    snprintf(script, sizeof(script), "%s/handler.sh", bt_tmpdir());
    bt_write_file(script, "exit 0\n");
    snprintf(plain, sizeof(plain), "%s/not-executable", bt_tmpdir());
    bt_write_file(plain, "#!/bin/sh\n");
    chmod(plain, 0644);

    expect_exit(ARGV("check", conf, "-X", "handler.exec.command=ballast-no-such-program -v"),
                78, "handler.exec.command", "'ballast-no-such-program'", "not found in PATH",
                (char *)NULL);
    expect_exit(ARGV("check", conf, "-X", "handler.exec.command=/nonexistent/handler"), 78,
                "handler.exec.command", "/nonexistent/handler", (char *)NULL);
    expect_exit(ARGV("check", conf, "-X", "handler.exec.command=sh /nonexistent/handler.sh"),
                78, "handler.exec.command", "/nonexistent/handler.sh", (char *)NULL);
    snprintf(cmd, sizeof(cmd), "handler.exec.command=%s", plain);
    expect_exit(ARGV("check", conf, "-X", cmd), 78, "not an executable file", (char *)NULL);
    /* What exists passes, and inline code is not mistaken for a file. */
    snprintf(cmd, sizeof(cmd), "handler.exec.command=sh %s", script);
    expect_exit(ARGV("check", conf, "-X", cmd), 0, (char *)NULL);
    expect_exit(ARGV("check", conf, "-X", "handler.exec.command=sh -c 'exec cat x.sh'"), 0,
                (char *)NULL);
}

/* ---- ballast check --connect -------------------------------------------- */

static int pg_group_setup(void **state)
{
    (void)state;
    return bt_pg_schema_setup("cli_check");
}

static int pg_group_teardown(void **state)
{
    (void)state;
    bt_pg_schema_teardown();
    return 0;
}

/* Runs `check --connect`; fails unless it exits with @p code and prints
 * exactly @p expect_out on stdout. */
static void expect_connect(const char *conf, int code, const char *expect_out)
{
    bt_captured_t c = bt_run_captured(ARGV("check", "--connect", conf), RUN_DEADLINE_MS);

    if (c.rc != code || strcmp(c.out, expect_out))
        fail_msg("exit %d (expected %d)\nstdout:\n%s\nexpected:\n%s\nstderr: %s", c.rc, code,
                 c.out, expect_out, c.err);
    if (code)
        bt_assert_one_line(c.err, "checks failed");
    else
        assert_string_equal(c.err, "");
    bt_captured_free(&c);
}

/* Every item listed as ok; exactly-once made check create ballast_offsets
 * to prepare against, and roll it back. */
static void test_check_connect_lists_every_item_ok(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap(), *in = bt_unique("chk-in"), *tier = bt_unique("chk-tier");
    const char *dlq = bt_unique("chk-dlq");
    char expect[2048];

    assert_true(bt_pg_ready());
    bt_create_topic(bs, in, 2);
    bt_create_topic(bs, tier, 1);
    bt_create_topic(bs, dlq, 1);
    bt_pg_admin_exec("CREATE TABLE chk (v text)");
    const char *conf = write_conf(
        "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
        "retry.topics = %s:1000\ndlq.topic = %s\nsemantics = exactly-once\n"
        "handler = postgres\nhandler.postgres.dsn = %s\n"
        "handler.postgres.sql = INSERT INTO chk VALUES (:value)\n",
        bs, bt_unique("chk-g"), in, tier, dlq, bt_pg_dsn);
    snprintf(expect, sizeof(expect),
             "configuration: ok\nbroker %s: ok\ntopic %s: ok\ntopic %s: ok\ntopic %s: ok\n"
             "database: ok\nSQL statement: ok\n",
             bs, in, tier, dlq);
    expect_connect(conf, 0, expect);
    assert_int_equal(bt_pg_admin_long("SELECT count(*) FROM pg_tables WHERE tablename = "
                                      "'ballast_offsets' AND schemaname = current_schema()"),
                     0);
}

static void test_check_connect_names_a_missing_topic(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap(), *in = bt_unique("chk-in"), *out = bt_unique("chk-out");
    const char *missing = bt_unique("chk-missing");
    char expect[2048];

    bt_create_topic(bs, in, 1);
    bt_create_topic(bs, out, 1);
    const char *conf = write_conf("kafka.bootstrap.servers = %s\nkafka.group.id = g\n"
                                  "topics = %s\nhandler = forward\noutput.topic = %s\n"
                                  "dlq.topic = %s\n",
                                  bs, in, out, missing);
    snprintf(expect, sizeof(expect),
             "configuration: ok\nbroker %s: ok\ntopic %s: ok\ntopic %s: ok\n"
             "topic %s: failed: dlq.topic: topic \"%s\" does not exist on the cluster\n",
             bs, in, out, missing, missing);
    expect_connect(conf, 78, expect);
}

static void test_check_connect_wrong_pg_password_is_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap(), *in = bt_unique("chk-in");
    bt_captured_t c;

    bt_create_topic(bs, in, 1);
    const char *conf = write_conf("kafka.bootstrap.servers = %s\nkafka.group.id = g\n"
                                  "topics = %s\nhandler = postgres\n"
                                  "handler.postgres.dsn = %s password=wrong-pw-secret\n"
                                  "handler.postgres.sql = SELECT :value::text\n"
                                  "startup.timeout.ms = " NEVER_MS "\n",
                                  bs, in, bt_pg_pw_dsn());
    c = bt_run_captured(ARGV("check", "--connect", conf), RUN_DEADLINE_MS);
    if (c.rc != 78 || !strstr(c.out, "database: failed: handler.postgres.dsn: ") ||
        !strstr(c.out, "password authentication failed") || !strstr(c.out, "28P01") ||
        strstr(c.out, "wrong-pw-secret"))
        fail_msg("exit %d, expected 78 and a refused login\nstdout:\n%s\nstderr: %s", c.rc,
                 c.out, c.err);
    bt_captured_free(&c);
}

/* SQLite: a missing file is not created, and exactly-once's table is only
 * made inside the check's rolled-back transaction. */
static void test_check_connect_sqlite_changes_nothing(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap(), *in = bt_unique("chk-in");
    char db[300], expect[2048];

    bt_create_topic(bs, in, 1);
    snprintf(db, sizeof(db), "%s/%s.db", bt_tmpdir(), bt_unique("chk"));
    const char *conf = write_conf("kafka.bootstrap.servers = %s\nkafka.group.id = g\n"
                                  "topics = %s\nhandler = sqlite\nhandler.sqlite.path = %s\n"
                                  "handler.sqlite.sql = INSERT INTO t VALUES (:value)\n"
                                  "semantics = exactly-once\n",
                                  bs, in, db);
    snprintf(expect, sizeof(expect),
             "configuration: ok\nbroker %s: ok\ntopic %s: ok\n"
             "database file %s (not there yet: run creates it): ok\n"
             "SQL statement: failed: handler.sqlite.sql: no such table: t\n",
             bs, in, db);
    expect_connect(conf, 78, expect);
    assert_int_equal(access(db, F_OK), -1);

    bt_sqlite_exec(db, "CREATE TABLE t (v TEXT)");
    snprintf(expect, sizeof(expect),
             "configuration: ok\nbroker %s: ok\ntopic %s: ok\ndatabase file %s: ok\n"
             "SQL statement: ok\n",
             bs, in, db);
    expect_connect(conf, 0, expect);
    assert_int_equal(bt_sqlite_long(db, "SELECT count(*) FROM sqlite_master WHERE name = "
                                        "'ballast_offsets'"),
                     0);
}

static void test_check_connect_unreachable_broker_is_69(void **state)
{
    (void)state;
    char expect[1024];
    int port = bt_free_port();
    const char *conf = write_conf("kafka.bootstrap.servers = 127.0.0.1:%d\n"
                                  "kafka.group.id = g\ntopics = t\nhandler = forward\n"
                                  "output.topic = out\nstartup.timeout.ms = 1000\n",
                                  port);
    bt_captured_t c = bt_run_captured(ARGV("check", "--connect", conf), RUN_DEADLINE_MS);

    snprintf(expect, sizeof(expect),
             "configuration: ok\nbroker 127.0.0.1:%d: failed: kafka.bootstrap.servers: no "
             "broker reachable at \"127.0.0.1:%d\" within 1000 ms",
             port, port);
    if (c.rc != 69 || strncmp(c.out, expect, strlen(expect)) ||
        !strstr(c.out, "topic t: failed: topics: topic \"t\" not checked") ||
        !strstr(c.out, "topic out: failed: output.topic: topic \"out\" not checked"))
        fail_msg("exit %d, expected 69\nstdout:\n%s\nstderr: %s", c.rc, c.out, c.err);
    bt_captured_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_wrong_pg_password_exits_78_at_once),
        cmocka_unit_test(test_run_unknown_database_exits_78),
        cmocka_unit_test(test_run_unknown_role_exits_78),
        cmocka_unit_test(test_run_pg_not_listening_exits_69_after_timeout),
        cmocka_unit_test(test_check_catches_placeholder_typos),
        cmocka_unit_test(test_check_catches_a_missing_exec_program),
        cmocka_unit_test(test_check_connect_lists_every_item_ok),
        cmocka_unit_test(test_check_connect_names_a_missing_topic),
        cmocka_unit_test(test_check_connect_wrong_pg_password_is_78),
        cmocka_unit_test(test_check_connect_sqlite_changes_nothing),
        cmocka_unit_test(test_check_connect_unreachable_broker_is_69),
    };
    return cmocka_run_group_tests(tests, pg_group_setup, pg_group_teardown);
}
