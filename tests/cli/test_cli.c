/*
 * test_cli.c - the `ballast` command as a user runs it: exit codes, one-line
 * errors that name the culprit, redaction, a graceful SIGTERM, and a second
 * SIGTERM that exits at once while a handler is stuck. The handler plugin
 * of tests/cli/plugins/test_plugin.c provides failures on demand: an init
 * that fails with a given code, a message that fails or returns an outcome
 * outside the enum, a message that never finishes.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

static const char *write_conf(const char *body)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/test.conf", bt_tmpdir());
    bt_write_file(path, "%s", body);
    return path;
}

static void expect_exit(const char *const *argv, int code, const char *fragment)
{
    char *err = NULL;
    int rc = bt_run_ballast(argv, 60000, &err);
    if (rc != code)
        fail_msg("exit code %d, expected %d; stderr: %s", rc, code, err ? err : "");
    if (fragment)
        bt_assert_one_line(err, fragment);
    free(err);
}

static void test_help_version_usage(void **state)
{
    (void)state;
    expect_exit(ARGV("--version"), 0, NULL);
    expect_exit(ARGV("--help"), 0, NULL);
    expect_exit(ARGV("run", "--help"), 0, NULL);
    expect_exit(ARGV("check", "--help"), 0, NULL);
    expect_exit(ARGV("frobnicate"), 64, "frobnicate");
    expect_exit(ARGV("run", "a.conf", "-X"), 64, "-X");
    expect_exit(ARGV("run", "--bogus"), 64, NULL);
}

/* --version names the librdkafka the command runs on (the one this test
 * links: the build uses one), at least the 2.12 floor, with the features
 * users expect of it: TLS, every SASL mechanism and every codec. */
static void test_version_names_librdkafka_and_features(void **state)
{
    static const char *const expected[] = {"ssl",        "sasl_plain",  "sasl_scram",
                                           "sasl_gssapi", "sasl_oauthbearer",
                                           "gzip",       "snappy",      "lz4",
                                           "zstd"};
    char want[64], features[512];
    bt_captured_t c = bt_run_captured(ARGV("--version"), 60000);
    const char *line;

    (void)state;
    assert_int_equal(c.rc, 0);
    assert_true(rd_kafka_version() >= 0x020c0000);
    snprintf(want, sizeof(want), "\nlibrdkafka %s\n", rd_kafka_version_str());
    if (!strstr(c.out, want))
        fail_msg("--version does not say \"%s\": %s", want + 1, c.out);
    line = strstr(c.out, "\nlibrdkafka builtin.features: ");
    assert_non_null(line);
    snprintf(features, sizeof(features), ",%s", strchr(line, ':') + 2);
    *strchr(features, '\n') = ',';
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        char item[64];
        snprintf(item, sizeof(item), ",%s,", expected[i]);
        if (!strstr(features, item))
            fail_msg("librdkafka lacks %s: %s", expected[i], c.out);
    }
    bt_captured_free(&c);
}

static const char base_conf[] = "kafka.bootstrap.servers = 127.0.0.1:1\n"
                                "kafka.group.id = g\n"
                                "topics = t\n"
                                "handler = forward\n"
                                "output.topic = out\n";

/* The system's librdkafka.so.1 per the loader's cache, if it has one. */
static bool system_librdkafka(char *path, size_t size)
{
    FILE *p = popen("ldconfig -p 2>/dev/null", "r");
    char line[1024];
    bool found = false;

    if (!p)
        return false;
    while (!found && fgets(line, sizeof(line), p)) {
        const char *arrow = strstr(line, " => ");
        if (strstr(line, "\tlibrdkafka.so.1 ") == line && arrow) {
            snprintf(path, size, "%s", arrow + 4);
            path[strcspn(path, "\n")] = '\0';
            found = true;
        }
    }
    pclose(p);
    return found;
}

/* A process that loaded an older librdkafka.so.1 before libballast (here
 * through LD_PRELOAD: the loader then satisfies libballast's librdkafka
 * with it) gets a one-line error and exit 78, not ballast running on it.
 * Skipped where the system has no librdkafka older than the floor. */
static void test_older_librdkafka_loaded_first_is_refused(void **state)
{
    char lib[512], *version;
    bt_captured_t c;

    (void)state;
    if (!system_librdkafka(lib, sizeof(lib)))
        skip();
    setenv("LD_PRELOAD", lib, 1);
    c = bt_run_captured(ARGV("--version"), 60000);
    version = strstr(c.out, "\nlibrdkafka ");
    assert_non_null(version);
    version += strlen("\nlibrdkafka ");
    version[strcspn(version, "\n")] = '\0';
    if (strverscmp(version, "2.12") >= 0) {
        bt_captured_free(&c);
        skip();
    }
    expect_exit(ARGV("run", write_conf(base_conf)), 78, "librdkafka");
    expect_exit(ARGV("run", write_conf(base_conf)), 78, version);
    bt_captured_free(&c);
}

static int unset_preload(void **state)
{
    (void)state;
    return unsetenv("LD_PRELOAD");
}

static void test_config_errors_exit_78_and_name_the_key(void **state)
{
    (void)state;
    const char *path = write_conf(base_conf);
    char buf[1024];

    expect_exit(ARGV("check", path), 0, NULL);
    expect_exit(ARGV("check", path, "-X", "no.such.key=1"), 78, "no.such.key");
    expect_exit(ARGV("check", path, "-X", "kafka.no.such.prop=1"), 78,
                "kafka.no.such.prop");
    expect_exit(ARGV("check", path, "-X", "concurrency=many"), 78, "concurrency");
    expect_exit(ARGV("check", path, "-X", "semantics=sometimes"), 78, "semantics");
    expect_exit(ARGV("check", path, "-X", "kafka.enable.auto.commit=false"), 78,
                "enable.auto.commit");
    expect_exit(ARGV("check", path, "-X", "output.topic=t"), 78, "output.topic");
    expect_exit(ARGV("check", "/nonexistent/ballast.conf"), 78,
                "/nonexistent/ballast.conf");
    snprintf(buf, sizeof(buf), "%shandler.plugin.path = relative.so\n", base_conf);
    expect_exit(ARGV("check", write_conf(buf), "-X", "handler=plugin"), 78,
                "handler.plugin.path");
    snprintf(buf, sizeof(buf), "%sretry.max.attempts = ${BALLAST_TEST_UNSET_VAR}\n",
             base_conf);
    expect_exit(ARGV("check", write_conf(buf)), 78, "BALLAST_TEST_UNSET_VAR");
    expect_exit(ARGV("run", write_conf("topics = t\nbad line\n")), 78, ":2:");
}

static void test_check_redacts_secrets(void **state)
{
    (void)state;
    char buf[1024], *out_path, *text;
    const char *dir = bt_tmpdir();

    snprintf(buf, sizeof(buf),
             "%skafka.sasl.password = hunter2\n"
             "handler.postgres.dsn = host=db password=s3cret user=u\n",
             base_conf);
    const char *path = write_conf(buf);
    /* stdout of the child goes to /dev/null in bt_spawn_ballast, so run the
     * check through a shell redirect into a file instead. */
    out_path = malloc(300);
    assert_non_null(out_path);
    snprintf(out_path, 300, "%s/out.txt", dir);
    snprintf(buf, sizeof(buf), "'%s' check '%s' > '%s'", BALLAST_BIN, path, out_path);
    assert_int_equal(system(buf), 0);
    text = bt_read_file(out_path);
    assert_non_null(text);
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "s3cret"));
    assert_non_null(strstr(text, "kafka.sasl.password = [redacted]"));
    assert_non_null(strstr(text, "user=u password=[redacted] host=db"));
    free(text);
    free(out_path);
}

static void test_unreachable_broker_exits_69(void **state)
{
    (void)state;
    const char *path = write_conf(base_conf);
    int64_t start = bt_now_ms();

    expect_exit(ARGV("run", path, "-X", "startup.timeout.ms=1500"), 69,
                "kafka.bootstrap.servers");
    assert_true(bt_now_ms() - start < 20000);
}

static void test_missing_topic_exits_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char buf[1024];
    const char *topic = bt_unique("cli-missing");

    snprintf(buf, sizeof(buf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = g\ntopics = %s\n"
             "handler = forward\noutput.topic = out\nstartup.timeout.ms = 10000\n",
             bt_bootstrap(), topic);
    expect_exit(ARGV("run", write_conf(buf)), 78, topic);
}

static void test_sigterm_drains_commits_and_exits_0(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("cli-term-in");
    const char *out = bt_unique("cli-term-out");
    const char *group = bt_unique("cli-term-g");
    char buf[1024], errpath[300];
    int64_t hwm[2], committed[2];
    size_t n;
    bt_record_t *recs;
    pid_t pid;

    bt_create_topic(bs, in, 2);
    bt_create_topic(bs, out, 2);
    bt_produce_seq(bs, in, 2, 0, 2000, 0);
    snprintf(buf, sizeof(buf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
             "handler = forward\noutput.topic = %s\nlog.level = warn\n",
             bs, group, in, out);
    snprintf(errpath, sizeof(errpath), "%s/stderr", bt_tmpdir());
    pid = bt_spawn_ballast(ARGV("run", write_conf(buf)), errpath);
    recs = bt_consume_all(bs, out, 2000, 60000, &n);
    bt_records_free(recs, n);
    assert_int_equal(n, 2000);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    bt_high_watermarks(bs, in, 2, hwm);
    bt_committed(bs, group, in, 2, committed);
    assert_int_equal(committed[0], hwm[0]);
    assert_int_equal(committed[1], hwm[1]);
}

/* ---- the test plugin ------------------------------------------------------ */

/* A `ballast run` config on a new one-partition topic holding @p messages
 * ("0", "1", ...): the test plugin with @p params (config lines). */
static const char *plugin_conf(const char *prefix, int messages, const char *params,
                               const char **topicp, const char **groupp)
{
    char name[64], buf[2048];

    snprintf(name, sizeof(name), "%s", prefix);
    *topicp = bt_unique(name);
    snprintf(name, sizeof(name), "%s-g", prefix);
    *groupp = bt_unique(name);
    bt_create_topic(bt_bootstrap(), *topicp, 1);
    if (messages)
        bt_produce_seq(bt_bootstrap(), *topicp, 1, 0, messages, 0);
    snprintf(buf, sizeof(buf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
             "handler = plugin\nhandler.plugin.path = %s\nlog.level = warn\n"
             /* a member that exits at once is replaced after 6 s */
             "kafka.session.timeout.ms = 6000\n%s",
             bt_bootstrap(), *groupp, *topicp, BALLAST_TEST_PLUGIN, params);
    return write_conf(buf);
}

static int64_t committed_of(const char *topic, const char *group)
{
    int64_t committed[1];

    bt_committed(bt_bootstrap(), group, topic, 1, committed);
    return committed[0];
}

/* A handler whose init fails with a code makes start-up exit with the
 * matching code: 70 for an internal error, 78 configuration, 69
 * unreachable, and 1 for any other code (a handler failure). */
static void test_handler_init_codes_are_exit_codes(void **state)
{
    static const struct {
        int code, exit;
    } cases[] = {{BALLAST_ERR_INTERNAL, 70},
                 {BALLAST_ERR_CONFIG, 78},
                 {BALLAST_ERR_UNREACHABLE, 69},
                 {BALLAST_ERR_HANDLER, 1},
                 {4242, 1}};
    (void)state;
    BT_REQUIRE_ENV();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char params[128];
        const char *topic, *group;
        snprintf(params, sizeof(params), "handler.plugin.param.init_error = %d\n",
                 cases[i].code);
        expect_exit(ARGV("run", plugin_conf("cli-init", 0, params, &topic, &group)),
                    cases[i].exit, "init fails with code");
    }
}

/* A permanent failure with no dlq.topic stops the pipeline with exit 1 and
 * one line naming the message; its offset stays uncommitted. */
static void test_fatal_stop_without_dlq_exits_1(void **state)
{
    const char *topic, *group, *conf;
    (void)state;
    BT_REQUIRE_ENV();
    conf = plugin_conf("cli-fatal", 6,
                       "handler.plugin.param.on_value = 3\n"
                       "handler.plugin.param.outcome = 2\n", /* BALLAST_OUTCOME_FAIL */
                       &topic, &group);
    expect_exit(ARGV("run", conf), 1, "offset 3");
    assert_int_equal(committed_of(topic, group), 3);
}

/* An outcome outside the enum is a permanent failure that says so: with no
 * DLQ a stop (exit 1) naming it, and with one a dead letter carrying it as
 * its error, committed past only once the copy is acknowledged. */
static void test_plugin_outcome_outside_the_enum(void **state)
{
    const char *topic, *group, *conf, *dlq = bt_unique("cli-odd-dlq");
    const char *odd = "handler.plugin.param.on_value = 3\nhandler.plugin.param.outcome = 7\n";
    char extra[512], errpath[300];
    bt_captured_t c;
    pid_t pid;
    (void)state;
    BT_REQUIRE_ENV();

    conf = plugin_conf("cli-odd", 6, odd, &topic, &group);
    expect_exit(ARGV("run", conf), 1, "returned outcome 7");
    assert_int_equal(committed_of(topic, group), 3);

    bt_create_topic(bt_bootstrap(), dlq, 1);
    snprintf(extra, sizeof(extra), "%sdlq.topic = %s\n", odd, dlq);
    conf = plugin_conf("cli-odd", 6, extra, &topic, &group);
    snprintf(errpath, sizeof(errpath), "%s/stderr", bt_tmpdir());
    pid = bt_spawn_ballast(ARGV("run", conf), errpath);
    if (!bt_wait_committed_to_end(bt_bootstrap(), group, topic, 1, 60000))
        fail_msg("the run with a DLQ did not commit to the end");
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq, "--json"),
                        60000);
    assert_int_equal(c.rc, 0);
    if (!strstr(c.out, "\"original_offset\":3") || !strstr(c.out, "returned outcome 7") ||
        !strstr(c.out, "\"records\":1"))
        fail_msg("the DLQ does not hold exactly offset 3 with its reason: %s", c.out);
    bt_captured_free(&c);
}

typedef struct metric_arg {
    const char *addr, *name;
    double want;
} metric_arg_t;

static bool metric_is(void *arg)
{
    metric_arg_t *a = arg;
    return bt_metric(a->addr, a->name) == a->want;
}

static bool rows_at_least_2(void *arg)
{
    size_t n;

    free(bt_plugin_rows(arg, &n));
    return n >= 2;
}

/* How many rows of the test plugin's log @p path say that process @p pid
 * handled @p offset. */
static int rows_of(const char *path, pid_t pid, long long offset)
{
    size_t n;
    bt_row_t *rows = bt_plugin_rows(path, &n);
    int hits = 0;

    for (size_t i = 0; i < n; i++)
        hits += rows[i].pid == pid && rows[i].offset == offset;
    free(rows);
    return hits;
}

/* The first SIGTERM drains: with a handler stuck for ten minutes and
 * shutdown.timeout.ms as long, the process waits. The second exits at once
 * (exit 1), and the stuck message, never committed, comes back. */
static void test_second_sigterm_exits_at_once(void **state)
{
    const char *topic, *group, *conf;
    char params[512], rows[300], errpath[300], addr[64], *err;
    metric_arg_t draining;
    int64_t sent;
    pid_t pid;
    int rc;
    (void)state;
    BT_REQUIRE_ENV();

    snprintf(rows, sizeof(rows), "%s/rows", bt_tmpdir());
    snprintf(params, sizeof(params),
             "handler.plugin.param.sleep_value = 2\n"
             "handler.plugin.param.sleep_ms = 600000\n"
             "handler.plugin.param.log = %s\n"
             "handler.timeout.ms = 600000\n"
             "shutdown.timeout.ms = 600000\n"
             "metrics.listen = 127.0.0.1:0\n"
             "log.level = info\n",
             rows);
    conf = plugin_conf("cli-second", 5, params, &topic, &group);
    snprintf(errpath, sizeof(errpath), "%s/stderr", bt_tmpdir());
    pid = bt_spawn_ballast(ARGV("run", conf), errpath);
    bt_wait_listening(errpath, pid, addr, sizeof(addr));
    /* Offsets 0 and 1 done: the handler is on offset 2, for ten minutes. */
    if (!bt_wait_for(rows_at_least_2, rows, 60000))
        fail_msg("the handler never reached the stuck message");
    bt_term(pid);
    /* Draining: every partition paused, the process still there. */
    draining = (metric_arg_t){addr, "ballast_paused_partitions", 1};
    if (!bt_wait_for(metric_is, &draining, 30000))
        fail_msg("no drain after the first SIGTERM");
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
    sent = bt_now_ms();
    kill(pid, SIGTERM);
    rc = bt_wait(pid, 5000);
    print_message("second SIGTERM: exit %d after %lld ms\n", rc,
                  (long long)(bt_now_ms() - sent));
    err = bt_read_file(errpath);
    if (rc != 1)
        fail_msg("exit %d within 5 s of the second SIGTERM, expected 1 at once: %s", rc,
                 err ? err : "");
    if (!err || !strstr(err, "second signal"))
        fail_msg("the second signal is not reported: %s", err ? err : "");
    free(err);
    /* Never committed past the stuck message: a restart handles it. */
    assert_true(committed_of(topic, group) <= 2);
    pid = bt_spawn_ballast(ARGV("run", conf, "-X", "handler.plugin.param.sleep_ms=0"),
                           errpath);
    if (!bt_wait_committed_to_end(bt_bootstrap(), group, topic, 1, 60000))
        fail_msg("the restart did not commit to the end");
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 60000), 0);
    assert_int_equal(rows_of(rows, pid, 2), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_version_usage),
        cmocka_unit_test(test_version_names_librdkafka_and_features),
        cmocka_unit_test_teardown(test_older_librdkafka_loaded_first_is_refused,
                                  unset_preload),
        cmocka_unit_test(test_config_errors_exit_78_and_name_the_key),
        cmocka_unit_test(test_check_redacts_secrets),
        cmocka_unit_test(test_unreachable_broker_exits_69),
        cmocka_unit_test(test_missing_topic_exits_78),
        cmocka_unit_test(test_sigterm_drains_commits_and_exits_0),
        cmocka_unit_test(test_handler_init_codes_are_exit_codes),
        cmocka_unit_test(test_fatal_stop_without_dlq_exits_1),
        cmocka_unit_test(test_plugin_outcome_outside_the_enum),
        cmocka_unit_test(test_second_sigterm_exits_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
