/*
 * test_cli.c - the `ballast` command as a user runs it: exit codes, one-line
 * errors that name the culprit, redaction, and a graceful SIGTERM.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* Exactly one line on stderr, containing every given fragment. */
static void assert_one_line(const char *text, const char *fragment)
{
    assert_non_null(text);
    const char *nl = strchr(text, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("expected exactly one line on stderr, got: %s", text);
    if (!strstr(text, fragment))
        fail_msg("stderr does not mention \"%s\": %s", fragment, text);
}

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
        assert_one_line(err, fragment);
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

static void test_unreachable_database_exits_69(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char buf[1024];
    const char *topic = bt_unique("cli-db");

    bt_create_topic(bt_bootstrap(), topic, 1);
    snprintf(buf, sizeof(buf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = g\ntopics = %s\n"
             "handler = postgres\n"
             "handler.postgres.dsn = host=127.0.0.1 port=1 dbname=x user=x "
             "password=topsecret connect_timeout=1\n"
             "handler.postgres.sql = INSERT INTO t VALUES (:value)\n"
             "startup.timeout.ms = 1500\n",
             bt_bootstrap(), topic);
    char *err = NULL;
    int rc = bt_run_ballast(ARGV("run", write_conf(buf)), 60000, &err);
    if (rc != 69)
        fail_msg("exit %d, expected 69: %s", rc, err ? err : "");
    assert_one_line(err, "postgres");
    assert_null(strstr(err, "topsecret"));
    free(err);
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
        cmocka_unit_test(test_unreachable_database_exits_69),
        cmocka_unit_test(test_sigterm_drains_commits_and_exits_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
