/*
 * test_security.c - TLS and SASL/SCRAM to the real broker, and secrets kept
 * out of everything an operator sees. Against scripts/testenv's SSL and
 * SASL_SSL listeners (a throwaway CA; a SCRAM user with a random password):
 *   - `ballast run` forwards every message over SSL (the CA from
 *     kafka.ssl.ca.location, hostname verification on);
 *   - the same over SASL_SSL with SCRAM-SHA-512, user and password given as
 *     ${ENV} in the config file; over the whole run the debug log
 *     (log.level = debug, kafka.debug = all), /status.json, /metrics and the
 *     dashboard never show the password, and `ballast check` redacts it;
 *   - `ballast lag` reads the group's lag over SASL_SSL with SCRAM-SHA-256;
 *   - a wrong password ends start-up with exit 78 (the credentials are
 *     configuration: retrying does not help) and one line that says
 *     authentication failed, without the password, well before
 *     startup.timeout.ms; the debug log of such a run holds no password either;
 *   - a broker certificate that is not trusted ends start-up with exit 78
 *     and one line that says so, naming kafka.ssl.* (not "no broker
 *     reachable", 69);
 *   - a fatal stop over SASL_SSL (a handler failing with no DLQ) exits 1 and
 *     leaves no secret in its final error or its log;
 *   - metrics.listen with a port and no host binds loopback only;
 *   - the SCRAM password read from a file (${file:PATH}) logs in, and appears
 *     neither in the process's command line nor in its environment (what
 *     `ps` and /proc show); a secret file that cannot be read ends start-up
 *     with exit 78 and one line naming the key and the file;
 *   - mutual TLS: a client certificate signed by the broker's CA
 *     (kafka.ssl.certificate.location, kafka.ssl.key.location) forwards every
 *     message through the listener that requires one; a certificate of
 *     another CA, or none, ends start-up with exit 78 and one line naming
 *     kafka.ssl.* (known bugs: the broker's refusal reaches librdkafka as a
 *     transport error, and ballast waits out startup.timeout.ms to exit 69,
 *     "no broker reachable");
 *   - `ballast lag` and `ballast dlq` take their client settings from the
 *     run's config file (--config), password read from a file, and leave
 *     its other keys alone; a file the parser refuses is exit 78;
 *   - an ACL in front of `ballast lag` (the broker's authorizer, the SCRAM
 *     user denied Describe on a group and on a topic): the refused group or
 *     topic named with -g or -t is exit 78 and one line; with --all-groups
 *     the refused group is logged and counted as refused, never reported as
 *     an empty or healthy group.
 * (A relative handler.plugin.path is refused in tests/cli/test_cli.c.)
 *
 * Needs the exports of `scripts/testenv up`: BALLAST_TEST_BOOTSTRAP,
 * BALLAST_TEST_BOOTSTRAP_SSL, BALLAST_TEST_BOOTSTRAP_SASL, BALLAST_TEST_CA,
 * BALLAST_TEST_SCRAM_USER, BALLAST_TEST_SCRAM_PASSWORD, and for mutual TLS
 * BALLAST_TEST_BOOTSTRAP_MTLS, BALLAST_TEST_CLIENT_CERT, BALLAST_TEST_CLIENT_KEY,
 * BALLAST_TEST_CLIENT_CERT_UNTRUSTED, BALLAST_TEST_CLIENT_KEY_UNTRUSTED; fails
 * without them.
 */
/* (strcasestr: the build defines _GNU_SOURCE) */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define MESSAGES 300
#define PARTITIONS 2

/* ---- the environment ---------------------------------------------------- */

typedef struct sec_env {
    const char *plain, *ssl, *sasl, *ca, *user, *password;
} sec_env_t;

static sec_env_t env;

/* Fails the test unless every security export of scripts/testenv is set:
 * a security test that skipped would prove nothing. */
static void require_env(void)
{
    static const char *const names[] = {
        "BALLAST_TEST_BOOTSTRAP", "BALLAST_TEST_BOOTSTRAP_SSL", "BALLAST_TEST_BOOTSTRAP_SASL",
        "BALLAST_TEST_CA",        "BALLAST_TEST_SCRAM_USER",    "BALLAST_TEST_SCRAM_PASSWORD"};
    const char **slots[] = {&env.plain, &env.ssl, &env.sasl, &env.ca, &env.user, &env.password};
    char missing[512] = "";

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        *slots[i] = v && *v ? v : NULL;
        if (!*slots[i])
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s",
                     names[i]);
    }
    if (*missing)
        fail_msg("unset:%s; run the suite via `make test` (scripts/testenv up exports "
                 "them; an older test environment needs scripts/testenv restart-kafka)",
                 missing);
    if (strlen(env.password) < 8)
        fail_msg("BALLAST_TEST_SCRAM_PASSWORD is too short to search logs for");
    if (access(env.ca, R_OK))
        fail_msg("BALLAST_TEST_CA=%s: %s", env.ca, strerror(errno));
}

/* Fails naming @p what if @p text contains the SCRAM password (or @p other,
 * another secret of the test, when given), or if there is no text to look
 * at: a missing log or reply proves nothing. */
static void assert_no_secret(const char *what, const char *text, const char *other)
{
    const char *hit = NULL, *which = NULL;

    if (!text)
        fail_msg("%s: nothing to search for secrets (no output captured)", what);
    if ((hit = strstr(text, env.password)))
        which = "BALLAST_TEST_SCRAM_PASSWORD";
    else if (other && (hit = strstr(text, other)))
        which = "the wrong password";
    if (hit) {
        const char *from = hit - (hit - text > 120 ? 120 : hit - text);
        fail_msg("%s contains %s: ...%.240s...", what, which, from);
    }
}

/* One line exactly (the error line of a failed start-up). */
static bool one_line(const char *text)
{
    const char *nl = text ? strchr(text, '\n') : NULL;
    return nl && nl[1] == '\0';
}

/* ---- processes and files ------------------------------------------------ */

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Runs `ballast` @p argv to completion with stdout and stderr in files;
 * @returns the exit code. */
static int run_capture(const char *const *argv, const char *out_path, const char *err_path,
                       int timeout_ms)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || in < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(BALLAST_BIN, (char *const *)argv);
        _exit(127);
    }
    return bt_wait(pid, timeout_ms);
}

/* ---- HTTP ---------------------------------------------------------------- */

/* GETs @p path, expects 200 and no secret in the response's headers or body. */
static void get_without_secret(const char *addr, const char *path, const char *must_contain)
{
    char what[128];
    bt_http_reply_t r = bt_http_get(addr, path);

    if (r.status != 200)
        fail_msg("GET %s: status %d: %.200s", path, r.status, r.body ? r.body : "(no answer)");
    if (must_contain && !strstr(r.body, must_contain))
        fail_msg("GET %s does not mention %s: %.300s", path, must_contain, r.body);
    snprintf(what, sizeof(what), "GET %s (headers)", path);
    assert_no_secret(what, r.headers, NULL);
    snprintf(what, sizeof(what), "GET %s", path);
    assert_no_secret(what, r.body, NULL);
    bt_http_reply_free(&r);
}

/* ---- the daemon ------------------------------------------------------------ */

typedef struct daemon {
    pid_t pid;
    char *conf_path, *err_path;
    char addr[64]; /* metrics address, when it listens */
} daemon_t;

/* Starts `ballast run` on @p conf_text, stderr to a file. */
static void daemon_start(daemon_t *d, const char *conf_text)
{
    const char *dir = bt_tmpdir();

    memset(d, 0, sizeof(*d));
    d->conf_path = path_in(dir, "ballast.conf");
    d->err_path = path_in(dir, "stderr");
    bt_write_file(d->conf_path, "%s", conf_text);
    d->pid = bt_spawn_ballast(ARGV("run", d->conf_path), d->err_path);
}

/* Waits for "metrics listening on ADDR" in the daemon's log. */
static void daemon_wait_listening(daemon_t *d)
{
    bt_wait_listening(d->err_path, d->pid, d->addr, sizeof(d->addr));
}

/* SIGTERM, exit 0; @returns the whole log (caller frees). */
static char *daemon_stop(daemon_t *d)
{
    char *log;
    int rc;

    bt_term(d->pid);
    rc = bt_wait(d->pid, 60000);
    d->pid = 0;
    log = bt_read_file(d->err_path);
    if (rc != 0)
        fail_msg("ballast run exited %d after SIGTERM; log tail: %s", rc,
                 log ? log + (strlen(log) > 2000 ? strlen(log) - 2000 : 0) : "");
    return log;
}

static void daemon_free(daemon_t *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        bt_wait(d->pid, 10000);
    }
    free(d->conf_path);
    free(d->err_path);
}

/* ---- a forwarding pipeline --------------------------------------------------- */

typedef struct pipeline {
    const char *in, *out, *group;
} pipeline_t;

static pipeline_t pipeline_new(const char *prefix)
{
    char name[64];
    pipeline_t p;

    snprintf(name, sizeof(name), "%s-in", prefix);
    p.in = strdup(bt_unique(name));
    snprintf(name, sizeof(name), "%s-out", prefix);
    p.out = strdup(bt_unique(name));
    snprintf(name, sizeof(name), "%s-g", prefix);
    p.group = strdup(bt_unique(name));
    bt_create_topic(env.plain, p.in, PARTITIONS);
    bt_create_topic(env.plain, p.out, PARTITIONS);
    bt_produce_seq(env.plain, p.in, PARTITIONS, 0, MESSAGES, 0);
    return p;
}

static void pipeline_free(pipeline_t *p)
{
    free((void *)p->in);
    free((void *)p->out);
    free((void *)p->group);
}

/* Every input value arrived in the output topic, once. */
static void expect_all_forwarded(const pipeline_t *p)
{
    size_t n;
    bt_record_t *recs = bt_consume_all(env.plain, p->out, MESSAGES, 90000, &n);
    char *seen = calloc(MESSAGES, 1);

    assert_non_null(seen);
    if (n != MESSAGES)
        fail_msg("%zu of %d messages arrived in %s", n, MESSAGES, p->out);
    for (size_t i = 0; i < n; i++) {
        int v = recs[i].value ? atoi(recs[i].value) : -1;
        if (v < 0 || v >= MESSAGES || seen[v])
            fail_msg("unexpected or repeated value \"%s\" in %s", recs[i].value, p->out);
        seen[v] = 1;
    }
    free(seen);
    bt_records_free(recs, n);
}

/* After a clean stop the group's commits reach the end of the input. */
static void expect_committed_to_end(const pipeline_t *p)
{
    int64_t hwm[PARTITIONS], committed[PARTITIONS];

    bt_high_watermarks(env.plain, p->in, PARTITIONS, hwm);
    bt_committed(env.plain, p->group, p->in, PARTITIONS, committed);
    for (int i = 0; i < PARTITIONS; i++)
        if (committed[i] != hwm[i])
            fail_msg("%s [%d]: committed %lld, end %lld", p->in, i, (long long)committed[i],
                     (long long)hwm[i]);
    assert_int_equal(bt_total_watermark(env.plain, p->out, PARTITIONS), MESSAGES);
}

/* The kafka.* lines that connect to the SASL_SSL listener as the SCRAM user;
 * the password is left to ${@p password_var}. */
static void sasl_conf(char *buf, size_t size, const char *mechanism, const char *password_var)
{
    snprintf(buf, size,
             "kafka.bootstrap.servers = %s\n"
             "kafka.security.protocol = sasl_ssl\n"
             "kafka.ssl.ca.location = %s\n"
             "kafka.sasl.mechanism = %s\n"
             "kafka.sasl.username = ${BALLAST_TEST_SCRAM_USER}\n"
             "kafka.sasl.password = ${%s}\n",
             env.sasl, env.ca, mechanism, password_var);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_forward_over_ssl(void **state)
{
    (void)state;
    require_env();
    pipeline_t p = pipeline_new("sec-ssl");
    daemon_t d;
    char conf[2048], *log;

    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\n"
             "kafka.security.protocol = ssl\n"
             "kafka.ssl.ca.location = %s\n"
             "kafka.group.id = %s\ntopics = %s\n"
             "handler = forward\noutput.topic = %s\n"
             "log.level = debug\nkafka.debug = security\n"
             "metrics.listen = 127.0.0.1:0\n",
             env.ssl, env.ca, p.group, p.in, p.out);
    daemon_start(&d, conf);
    daemon_wait_listening(&d);
    expect_all_forwarded(&p);
    get_without_secret(d.addr, "/status.json", p.in);
    log = daemon_stop(&d);
    expect_committed_to_end(&p);
    /* Only TLS clients get through that listener; and the broker's
     * certificate was checked (librdkafka's security debug says so). */
    if (!strstr(log, "SSL certificate verified"))
        fail_msg("librdkafka never reported \"Broker SSL certificate verified\"");
    free(log);
    daemon_free(&d);
    pipeline_free(&p);
}

static void test_forward_over_sasl_scram512_keeps_the_password_out(void **state)
{
    (void)state;
    require_env();
    pipeline_t p = pipeline_new("sec-sasl");
    daemon_t d;
    char conf[4096], kafka[1024], *log;
    const char *pages[] = {"/status.json", "/metrics", "/"};

    sasl_conf(kafka, sizeof(kafka), "SCRAM-SHA-512", "BALLAST_TEST_SCRAM_PASSWORD");
    snprintf(conf, sizeof(conf),
             "%s"
             "kafka.group.id = %s\ntopics = %s\n"
             "handler = forward\noutput.topic = %s\n"
             "log.level = debug\n"
             "kafka.debug = all\n" /* what an operator turns on to debug TLS/SASL */
             "metrics.listen = 127.0.0.1:0\n",
             kafka, p.group, p.in, p.out);
    daemon_start(&d, conf);
    daemon_wait_listening(&d);
    get_without_secret(d.addr, "/status.json", NULL); /* while starting */
    expect_all_forwarded(&p);
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        get_without_secret(d.addr, pages[i], NULL);
    get_without_secret(d.addr, "/status.json", p.in);
    log = daemon_stop(&d);
    expect_committed_to_end(&p);
    assert_no_secret("the daemon's debug log", log, NULL);
    /* The log is the deep one, and authentication went through SCRAM-SHA-512. */
    if (!strstr(log, "sasl_ssl://") || !strstr(log, "SCRAM-SHA-512"))
        fail_msg("the debug log shows no SASL_SSL connection with SCRAM-SHA-512");

    /* `ballast check` on the same file redacts the password, not the user. */
    {
        const char *dir = bt_tmpdir();
        char *out = path_in(dir, "out"), *err = path_in(dir, "err"), *text, *errs;
        char opt[256];
        int rc = run_capture(ARGV("check", d.conf_path), out, err, 60000);
        text = bt_read_file(out);
        errs = bt_read_file(err);
        if (rc != 0)
            fail_msg("ballast check exited %d: %s", rc, errs ? errs : "");
        assert_no_secret("ballast check's output", text, NULL);
        assert_no_secret("ballast check's stderr", errs, NULL);
        if (!strstr(text, "kafka.sasl.password = [redacted]"))
            fail_msg("ballast check does not show kafka.sasl.password as [redacted]: %s", text);
        snprintf(opt, sizeof(opt), "kafka.sasl.username = %s", env.user);
        if (!strstr(text, opt))
            fail_msg("ballast check hides kafka.sasl.username (not a secret): %s", text);
        free(text);
        free(errs);
        /* Also when the secret comes from -X, and for the TLS key's. */
        snprintf(opt, sizeof(opt), "kafka.ssl.key.password=%s", env.password);
        rc = run_capture(ARGV("check", d.conf_path, "-X", opt), out, err, 60000);
        text = bt_read_file(out);
        errs = bt_read_file(err);
        if (rc != 0)
            fail_msg("ballast check -X %s exited %d: %s", "kafka.ssl.key.password=...", rc,
                     errs ? errs : "");
        assert_no_secret("ballast check -X kafka.ssl.key.password", text, NULL);
        assert_no_secret("ballast check -X kafka.ssl.key.password (stderr)", errs, NULL);
        free(text);
        free(errs);
        free(out);
        free(err);
    }
    free(log);
    daemon_free(&d);
    pipeline_free(&p);
}

static void test_lag_over_sasl_scram256(void **state)
{
    (void)state;
    require_env();
    const char *topic = bt_unique("sec-lag"), *group = bt_unique("sec-lag-g");
    const char *dir = bt_tmpdir();
    char *out = path_in(dir, "out"), *err = path_in(dir, "err"), *text, *errs;
    char ca[512], user[256], password[256], wrong[64], line[128];
    int rc;

    bt_create_topic(env.plain, topic, 1);
    bt_produce_seq(env.plain, topic, 1, 0, 5, 0);
    /* The group must exist: `ballast lag` refuses a group the broker does
     * not know. */
    bt_commit(env.plain, group, topic, (int64_t[]){2}, 1);
    snprintf(ca, sizeof(ca), "ssl.ca.location=%s", env.ca);
    snprintf(user, sizeof(user), "sasl.username=%s", env.user);
    snprintf(password, sizeof(password), "sasl.password=%s", env.password);
    rc = run_capture(ARGV("lag", "-b", env.sasl, "-g", group, "-t", topic, "--json", "-X",
                          "security.protocol=sasl_ssl", "-X", ca, "-X",
                          "sasl.mechanism=SCRAM-SHA-256", "-X", user, "-X", password),
                     out, err, 60000);
    text = bt_read_file(out);
    errs = bt_read_file(err);
    if (rc != 0)
        fail_msg("ballast lag over SASL_SSL exited %d: %s", rc, errs ? errs : "");
    snprintf(line, sizeof(line), "\"topic\":\"%s\"", topic);
    if (!text || !strstr(text, line) || !strstr(text, "\"high_watermark\":5"))
        fail_msg("ballast lag over SASL_SSL: %s", text ? text : "(nothing)");
    assert_no_secret("ballast lag's output", text, NULL);
    assert_no_secret("ballast lag's stderr", errs, NULL);
    free(text);
    free(errs);

    /* A wrong password: an error without it. */
    snprintf(wrong, sizeof(wrong), "sasl.password=nope-%d", (int)getpid());
    rc = run_capture(ARGV("lag", "-b", env.sasl, "-g", group, "-t", topic, "--json",
                          "--timeout", "3", "-X", "security.protocol=sasl_ssl", "-X", ca, "-X",
                          "sasl.mechanism=SCRAM-SHA-256", "-X", user, "-X", wrong),
                     out, err, 60000);
    errs = bt_read_file(err);
    print_message("ballast lag, wrong password: exit %d: %s", rc, errs ? errs : "");
    assert_no_secret("ballast lag's error", errs, wrong + strlen("sasl.password="));
    /* As for `ballast run`: a configuration error (a bad -X property) that
     * says authentication failed, not "cannot reach the broker". */
    if (rc != 78 || !one_line(errs) || !strcasestr(errs, "authenticat"))
        fail_msg("ballast lag with a wrong password: exit %d (expected 78 and one line "
                 "saying authentication failed): %s",
                 rc, errs ? errs : "");
    free(errs);
    free(out);
    free(err);
}

static void test_wrong_password_fails_startup_clearly(void **state)
{
    (void)state;
    require_env();
    const char *topic = bt_unique("sec-wrong"), *group = bt_unique("sec-wrong-g");
    const char *out_topic = bt_unique("sec-wrong-out");
    const char *dir = bt_tmpdir();
    char wrong[64], kafka[1024], problems[2048] = "", *conf, *err = NULL;
    int64_t start, elapsed;
    int rc;

    /* Both topics exist: only the credentials can be at fault. */
    bt_create_topic(env.plain, topic, 1);
    bt_create_topic(env.plain, out_topic, 1);
    snprintf(wrong, sizeof(wrong), "wrong-%d-%lld", (int)getpid(), (long long)bt_now_ms());
    setenv("BT_SEC_WRONG_PASSWORD", wrong, 1);
    sasl_conf(kafka, sizeof(kafka), "SCRAM-SHA-512", "BT_SEC_WRONG_PASSWORD");
    conf = path_in(dir, "wrong.conf");
    bt_write_file(conf,
                  "%skafka.group.id = %s\ntopics = %s\nhandler = forward\n"
                  "output.topic = %s\nstartup.timeout.ms = 20000\n",
                  kafka, group, topic, out_topic);

    start = bt_now_ms();
    rc = bt_run_ballast(ARGV("run", conf), 90000, &err);
    elapsed = bt_now_ms() - start;
    print_message("wrong password: exit %d after %lld ms: %s", rc, (long long)elapsed,
                  err ? err : "");
    assert_no_secret("the start-up error", err, wrong);
#define PROBLEM(...)                                                                 \
    snprintf(problems + strlen(problems), sizeof(problems) - strlen(problems), "; " \
             __VA_ARGS__)
    if (rc != 78)
        PROBLEM("exit %d, expected 78 (the credentials are configuration)", rc);
    if (!one_line(err))
        PROBLEM("not exactly one line on stderr");
    if (!err || !strcasestr(err, "authenticat"))
        PROBLEM("the error does not say that authentication failed");
    if (!err || !strstr(err, "kafka.sasl"))
        PROBLEM("the error does not name the kafka.sasl.* settings at fault");
    if (elapsed >= 15000)
        PROBLEM("took %lld ms: it waited out startup.timeout.ms (20000) although the "
                "broker had answered that the credentials are wrong",
                (long long)elapsed);
    free(err);
    err = NULL;

    /* The whole debug log of such a start-up holds no password either. */
    {
        char *log_path = path_in(dir, "debug.log"), *log;
        pid_t pid = bt_spawn_ballast(ARGV("run", conf, "-X", "log.level=debug", "-X",
                                          "kafka.debug=all", "-X", "startup.timeout.ms=3000"),
                                     log_path);
        rc = bt_wait(pid, 60000);
        log = bt_read_file(log_path);
        if (rc == 0 || rc == -1)
            fail_msg("ballast run with a wrong password (debug) exited %d", rc);
        assert_no_secret("the debug log of a failed SASL start-up", log, wrong);
        free(log);
        free(log_path);
    }
    free(conf);
    unsetenv("BT_SEC_WRONG_PASSWORD");
    if (*problems)
        fail_msg("a wrong SASL password at start-up%s", problems);
#undef PROBLEM
}

static void test_untrusted_broker_certificate_fails_clearly(void **state)
{
    (void)state;
    require_env();
    const char *topic = bt_unique("sec-untrusted"), *group = bt_unique("sec-untrusted-g");
    const char *out_topic = bt_unique("sec-untrusted-out");
    char *conf = path_in(bt_tmpdir(), "untrusted.conf"), *err = NULL;
    int rc;

    bt_create_topic(env.plain, topic, 1);
    bt_create_topic(env.plain, out_topic, 1);
    /* No kafka.ssl.ca.location: the system's CAs do not know the test CA. */
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\nkafka.security.protocol = ssl\n"
                  "kafka.group.id = %s\ntopics = %s\nhandler = forward\n"
                  "output.topic = %s\nstartup.timeout.ms = 5000\n",
                  env.ssl, group, topic, out_topic);
    rc = bt_run_ballast(ARGV("run", conf), 60000, &err);
    print_message("untrusted certificate: exit %d: %s", rc, err ? err : "");
    /* A certificate no retry can fix is configuration (78), as a refused
     * password is: not "unreachable" (69) after startup.timeout.ms. */
    if (rc != 78 || !one_line(err))
        fail_msg("expected exit 78 and one line, got exit %d: %s", rc, err ? err : "");
    if (!strstr(err, "kafka.ssl"))
        fail_msg("the error does not name the kafka.ssl.* settings at fault: %s", err);
    if (!strcasestr(err, "certificate"))
        fail_msg("the error does not say that the broker's certificate was not trusted "
                 "(librdkafka reports \"certificate verify failed\"): %s",
                 err);
    free(err);
    free(conf);
}

static void test_fatal_stop_over_sasl_keeps_the_password_out(void **state)
{
    (void)state;
    require_env();
    const char *dir = bt_tmpdir();
    const char *topic = bt_unique("sec-fatal"), *group = bt_unique("sec-fatal-g");
    char *script = path_in(dir, "refuse.sh"), *conf = path_in(dir, "fatal.conf");
    char *log_path = path_in(dir, "stderr"), *log, kafka[1024];
    char *tail;
    pid_t pid;
    int rc;

    bt_create_topic(env.plain, topic, 1);
    bt_produce_seq(env.plain, topic, 1, 0, 3, 0);
    bt_write_file(script, "#!/bin/sh\n"
                          "while IFS= read -r line; do\n"
                          "  printf '%%s\\n' '{\"status\":\"fail\",\"error\":\"refused by "
                          "the test\"}'\n"
                          "done\n");
    assert_int_equal(chmod(script, 0755), 0);
    sasl_conf(kafka, sizeof(kafka), "SCRAM-SHA-512", "BALLAST_TEST_SCRAM_PASSWORD");
    bt_write_file(conf,
                  "%skafka.group.id = %s\ntopics = %s\nhandler = exec\n"
                  "handler.exec.command = %s\nlog.level = debug\nkafka.debug = all\n",
                  kafka, group, topic, script);
    pid = bt_spawn_ballast(ARGV("run", conf), log_path);
    rc = bt_wait(pid, 90000);
    log = bt_read_file(log_path);
    tail = log ? log + (strlen(log) > 600 ? strlen(log) - 600 : 0) : NULL;
    if (rc != 1)
        fail_msg("a handler failing with no DLQ should stop ballast with exit 1 (a "
                 "runtime failure); exit %d: %s",
                 rc, tail ? tail : "");
    print_message("fatal stop: exit %d; log tail: %s", rc, tail ? tail : "");
    assert_no_secret("the log of a fatal stop", log, NULL);
    free(log);
    free(log_path);
    free(conf);
    free(script);
}

/* True if any TCP listener on @p port is bound to an address other than
 * 127.0.0.1 (IPv4 or IPv6 tables of this network namespace). */
static bool non_loopback_listener(int port, char *found, size_t size)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    bool any = false;

    for (size_t t = 0; t < 2; t++) {
        FILE *fp = fopen(tables[t], "r");
        char line[512];
        if (!fp)
            continue;
        while (fgets(line, sizeof(line), fp)) {
            char local[64];
            unsigned lport, st;
            if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &lport,
                       &st) != 3)
                continue;
            if ((int)lport != port || st != 0x0A) /* LISTEN */
                continue;
            if (strcmp(local, "0100007F")) {
                snprintf(found, size, "%s %s", tables[t], local);
                any = true;
            }
        }
        fclose(fp);
    }
    return any;
}

/* A non-loopback IPv4 address of this host, if it has one. */
static bool other_ipv4(struct in_addr *out)
{
    struct ifaddrs *ifs, *i;
    bool found = false;

    if (getifaddrs(&ifs))
        return false;
    for (i = ifs; i && !found; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
            struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            if ((ntohl(a.s_addr) >> 24) != 127) {
                *out = a;
                found = true;
            }
        }
    freeifaddrs(ifs);
    return found;
}

static void test_metrics_listen_without_host_binds_loopback(void **state)
{
    (void)state;
    require_env();
    const char *topic = bt_unique("sec-listen"), *out_topic = bt_unique("sec-listen-out");
    const char *forms[] = {"0", ":0"};

    bt_create_topic(env.plain, topic, 1);
    bt_create_topic(env.plain, out_topic, 1);
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
        daemon_t d;
        char conf[1024], found[128], *log;
        struct in_addr other;
        int port;

        snprintf(conf, sizeof(conf),
                 "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
                 "handler = forward\noutput.topic = %s\nmetrics.listen = %s\n",
                 env.plain, bt_unique("sec-listen-g"), topic, out_topic, forms[f]);
        daemon_start(&d, conf);
        daemon_wait_listening(&d);
        if (strncmp(d.addr, "127.0.0.1:", 10))
            fail_msg("metrics.listen = %s listens on %s, expected 127.0.0.1:PORT", forms[f],
                     d.addr);
        port = atoi(d.addr + 10);
        assert_true(port > 0);
        if (non_loopback_listener(port, found, sizeof(found)))
            fail_msg("metrics.listen = %s: port %d also listens on %s", forms[f], port, found);
        if (other_ipv4(&other)) {
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                     .sin_addr = other};
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            char ip[INET_ADDRSTRLEN];
            assert_true(fd >= 0);
            inet_ntop(AF_INET, &other, ip, sizeof(ip));
            if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
                fail_msg("metrics.listen = %s: %s:%d accepts connections", forms[f], ip, port);
            close(fd);
        }
        get_without_secret(d.addr, "/healthz", NULL);
        log = daemon_stop(&d);
        free(log);
        daemon_free(&d);
    }
}

/* ---- secrets in files, mutual TLS ------------------------------------------- */

/* Fails naming @p what if the file /proc/PID/@p entry (NUL-separated strings:
 * cmdline, environ) holds the SCRAM password. */
static void assert_proc_without_secret(pid_t pid, const char *entry)
{
    char path[64], what[96], *text;
    FILE *fp;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, entry);
    snprintf(what, sizeof(what), "%s of the running ballast", path);
    text = malloc(1 << 20);
    assert_non_null(text);
    if (!(fp = fopen(path, "rb")))
        fail_msg("cannot read %s: %s", path, strerror(errno));
    n = fread(text, 1, (1 << 20) - 1, fp);
    fclose(fp);
    for (size_t i = 0; i < n; i++)
        if (!text[i])
            text[i] = ' ';
    text[n] = '\0';
    assert_no_secret(what, text, NULL);
    free(text);
}

static void test_password_from_a_file_stays_out_of_ps(void **state)
{
    (void)state;
    require_env();
    pipeline_t p = pipeline_new("sec-file");
    char *secret = path_in(bt_tmpdir(), "scram-password"), *saved = strdup(env.password);
    char conf[4096], *log;
    daemon_t d;

    assert_non_null(saved);
    bt_write_file(secret, "%s\n", env.password); /* as `echo pw > file` writes it */
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\nkafka.security.protocol = sasl_ssl\n"
             "kafka.ssl.ca.location = %s\nkafka.sasl.mechanism = SCRAM-SHA-512\n"
             "kafka.sasl.username = %s\nkafka.sasl.password = ${file:%s}\n"
             "kafka.group.id = %s\ntopics = %s\nhandler = forward\noutput.topic = %s\n",
             env.sasl, env.ca, env.user, secret, p.group, p.in, p.out);
    /* The daemon gets no copy of the password in its environment. */
    unsetenv("BALLAST_TEST_SCRAM_PASSWORD");
    daemon_start(&d, conf);
    setenv("BALLAST_TEST_SCRAM_PASSWORD", saved, 1);
    env.password = getenv("BALLAST_TEST_SCRAM_PASSWORD");
    expect_all_forwarded(&p);
    assert_proc_without_secret(d.pid, "cmdline");
    assert_proc_without_secret(d.pid, "environ");
    log = daemon_stop(&d);
    expect_committed_to_end(&p);
    assert_no_secret("the daemon's log", log, NULL);
    free(log);
    daemon_free(&d);
    pipeline_free(&p);
    free(secret);
    free(saved);
}

/* `ballast lag` and `ballast dlq` take their client settings from a config
 * file (the run's own, whose other keys they leave alone: a
 * transactional.id there would make the replay's producer transactional),
 * with the password read from a file: nothing secret on the command line
 * or in the environment. */
static void test_tools_take_client_settings_from_a_config_file(void **state)
{
    (void)state;
    require_env();
    const char *topic = bt_unique("sec-cfg"), *group = bt_unique("sec-cfg-g");
    const char *to = bt_unique("sec-cfg-to"), *dir = bt_tmpdir();
    char *out = path_in(dir, "out"), *err = path_in(dir, "err"), *text, *errs;
    char *secret = path_in(dir, "pw"), *conf = path_in(dir, "run.conf");
    char *bad = path_in(dir, "bad.conf"), *saved = strdup(env.password), line[128];
    int rc;

    assert_non_null(saved);
    bt_create_topic(env.plain, topic, 1);
    bt_create_topic(env.plain, to, 1);
    bt_produce_seq(env.plain, topic, 1, 0, 5, 0);
    bt_commit(env.plain, group, topic, (int64_t[]){2}, 1);
    bt_write_file(secret, "%s\n", env.password);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\nkafka.security.protocol = sasl_ssl\n"
                  "kafka.ssl.ca.location = %s\nkafka.sasl.mechanism = SCRAM-SHA-512\n"
                  "kafka.sasl.username = %s\nkafka.sasl.password = ${file:%s}\n"
                  "kafka.group.id = %s\nkafka.transactional.id = %s\n"
                  "semantics = exactly-once\ntopics = %s\nhandler = forward\n"
                  "output.topic = %s\n",
                  env.sasl, env.ca, env.user, secret, group, group, topic, to);
    unsetenv("BALLAST_TEST_SCRAM_PASSWORD");

    rc = run_capture(ARGV("lag", "--config", conf, "-g", group, "-t", topic, "--json"), out,
                     err, 60000);
    text = bt_read_file(out);
    errs = bt_read_file(err);
    if (rc != 0)
        fail_msg("ballast lag --config exited %d: %s", rc, errs ? errs : "");
    snprintf(line, sizeof(line), "\"topic\":\"%s\"", topic);
    if (!text || !strstr(text, line) || !strstr(text, "\"high_watermark\":5") ||
        !strstr(text, "\"committed\":2"))
        fail_msg("ballast lag --config: %s", text ? text : "(nothing)");
    free(text);
    free(errs);

    rc = run_capture(ARGV("dlq", "replay", "--config", conf, "--from", topic, "--to", to), out,
                     err, 60000);
    errs = bt_read_file(err);
    if (rc != 0)
        fail_msg("ballast dlq replay --config exited %d: %s", rc, errs ? errs : "");
    free(errs);
    assert_int_equal(bt_total_watermark(env.plain, to, 1), 5);

    /* A file the parser refuses: exit 78 and one line naming it. */
    bt_write_file(bad, "kafka.bootstrap.servers = %s\nno equals sign here\n", env.sasl);
    rc = run_capture(ARGV("dlq", "inspect", "--config", bad, "-t", topic), out, err, 60000);
    errs = bt_read_file(err);
    if (rc != 78 || !one_line(errs) || !strstr(errs, "bad.conf"))
        fail_msg("dlq inspect with a bad --config file: exit %d (expected 78 and one line "
                 "naming the file): %s",
                 rc, errs ? errs : "");
    free(errs);

    setenv("BALLAST_TEST_SCRAM_PASSWORD", saved, 1);
    env.password = getenv("BALLAST_TEST_SCRAM_PASSWORD");
    free(saved);
    free(bad);
    free(conf);
    free(secret);
    free(out);
    free(err);
}

static void test_unreadable_secret_file_fails_clearly(void **state)
{
    (void)state;
    require_env();
    char *conf = path_in(bt_tmpdir(), "missing-secret.conf"), *err = NULL;
    const char *missing = "/nonexistent/ballast-secret";
    int rc;

    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = t\n"
                  "handler = forward\noutput.topic = o\n"
                  "kafka.sasl.password = ${file:%s}\n",
                  env.plain, bt_unique("sec-missing-g"), missing);
    rc = bt_run_ballast(ARGV("run", conf), 60000, &err);
    if (rc != 78 || !one_line(err) || !strstr(err, "kafka.sasl.password") ||
        !strstr(err, missing))
        fail_msg("a missing secret file: exit %d (expected 78 and one line naming "
                 "kafka.sasl.password and %s): %s",
                 rc, missing, err ? err : "");
    free(err);
    free(conf);
}

/* The exports of the mutual-TLS listener and its client certificates. */
typedef struct mtls_env {
    const char *bootstrap, *cert, *key, *untrusted_cert, *untrusted_key;
} mtls_env_t;

static mtls_env_t require_mtls(void)
{
    mtls_env_t m = {getenv("BALLAST_TEST_BOOTSTRAP_MTLS"), getenv("BALLAST_TEST_CLIENT_CERT"),
                    getenv("BALLAST_TEST_CLIENT_KEY"),
                    getenv("BALLAST_TEST_CLIENT_CERT_UNTRUSTED"),
                    getenv("BALLAST_TEST_CLIENT_KEY_UNTRUSTED")};

    require_env();
    if (!m.bootstrap || !m.cert || !m.key || !m.untrusted_cert || !m.untrusted_key)
        fail_msg("the mutual-TLS exports are unset (BALLAST_TEST_BOOTSTRAP_MTLS, "
                 "BALLAST_TEST_CLIENT_*): a broker started by an older scripts/testenv has "
                 "no such listener; run scripts/testenv restart-kafka");
    return m;
}

/* The kafka.* lines for the mutual-TLS listener with certificate @p cert and
 * key @p key (NULL: no client certificate). */
static void mtls_conf(char *buf, size_t size, const mtls_env_t *m, const char *cert,
                      const char *key)
{
    snprintf(buf, size,
             "kafka.bootstrap.servers = %s\nkafka.security.protocol = ssl\n"
             "kafka.ssl.ca.location = %s\n%s%s%s%s%s%s",
             m->bootstrap, env.ca, cert ? "kafka.ssl.certificate.location = " : "",
             cert ? cert : "", cert ? "\n" : "", key ? "kafka.ssl.key.location = " : "",
             key ? key : "", key ? "\n" : "");
}

static void test_forward_over_mutual_tls(void **state)
{
    (void)state;
    mtls_env_t m = require_mtls();
    pipeline_t p = pipeline_new("sec-mtls");
    char kafka[1024], conf[2048], *log;
    daemon_t d;

    mtls_conf(kafka, sizeof(kafka), &m, m.cert, m.key);
    snprintf(conf, sizeof(conf),
             "%skafka.group.id = %s\ntopics = %s\nhandler = forward\noutput.topic = %s\n",
             kafka, p.group, p.in, p.out);
    daemon_start(&d, conf);
    expect_all_forwarded(&p);
    log = daemon_stop(&d);
    expect_committed_to_end(&p);
    free(log);
    daemon_free(&d);
    pipeline_free(&p);
}

/* Start-up with client certificate @p cert and key @p key (NULL: none) on the
 * mutual-TLS listener must end with exit 78 and one line naming kafka.ssl.*:
 * a certificate the broker refuses is configuration, as a refused password
 * is, not "no broker reachable" (69) after startup.timeout.ms. */
static void expect_refused_certificate(const mtls_env_t *m, const char *cert, const char *key,
                                       const char *what)
{
    const char *topic = bt_unique("sec-mtls-bad"), *out_topic = bt_unique("sec-mtls-bad-out");
    char kafka[1024], *conf = path_in(bt_tmpdir(), "mtls-bad.conf"), *err = NULL;
    int rc;

    bt_create_topic(env.plain, topic, 1);
    bt_create_topic(env.plain, out_topic, 1);
    mtls_conf(kafka, sizeof(kafka), m, cert, key);
    bt_write_file(conf,
                  "%skafka.group.id = %s\ntopics = %s\nhandler = forward\n"
                  "output.topic = %s\nstartup.timeout.ms = 10000\n",
                  kafka, bt_unique("sec-mtls-bad-g"), topic, out_topic);
    rc = bt_run_ballast(ARGV("run", conf), 60000, &err);
    print_message("%s: exit %d: %s", what, rc, err ? err : "");
    if (rc != 78 || !one_line(err) || !strstr(err, "kafka.ssl"))
        fail_msg("%s: expected exit 78 and one line naming kafka.ssl.*, got exit %d: %s", what,
                 rc, err ? err : "");
    free(err);
    free(conf);
}

static void test_untrusted_client_certificate_fails_clearly(void **state)
{
    (void)state;
    mtls_env_t m = require_mtls();
    expect_refused_certificate(&m, m.untrusted_cert, m.untrusted_key,
                               "a client certificate of a CA the broker does not trust");
}

static void test_missing_client_certificate_fails_clearly(void **state)
{
    (void)state;
    mtls_env_t m = require_mtls();
    expect_refused_certificate(&m, NULL, NULL, "no client certificate");
}

static double metric(const char *text, const char *sample)
{
    const char *at = text ? strstr(text, sample) : NULL;
    return at ? strtod(at + strlen(sample), NULL) : -1;
}

/* `ballast lag --all-groups --watch` with a group an ACL refuses: it is
 * logged once, counted as group_denied at every evaluation, and the loop
 * goes on. */
static void watch_refused_group(const char *conf, const char *include, const char *group,
                                const char *err_path)
{
    static const char evals[] = "\nballast_lag_evaluations_total{cluster=\"acl\"} ";
    static const char denied[] =
        "\nballast_lag_errors_total{cluster=\"acl\",kind=\"group_denied\"} ";
    char addr[64], line[300], *text = NULL, *log;
    int64_t deadline = bt_now_ms() + 60000;
    pid_t pid = bt_spawn_ballast(ARGV("lag", "--config", conf, "--all-groups", "--include",
                                      include, "--cluster-name", "acl", "--listen",
                                      "127.0.0.1:0", "--watch", "0.2", "--timeout", "5"),
                                 err_path);

    bt_wait_listening(err_path, pid, addr, sizeof(addr));
    for (;;) {
        bt_http_reply_t r = bt_http_get(addr, "/metrics");
        free(text);
        text = r.status == 200 ? r.body : NULL;
        r.body = NULL;
        bt_http_reply_free(&r);
        if (metric(text, evals) >= 5)
            break;
        if (bt_now_ms() > deadline)
            fail_msg("fewer than 5 evaluations within 60 s: %s", text ? text : "");
        usleep(100 * 1000);
    }
    /* Counted at every evaluation but the one still being read. */
    if (metric(text, denied) < metric(text, evals) - 1)
        fail_msg("group_denied counts %.0f after %.0f evaluations", metric(text, denied),
                 metric(text, evals));
    free(text);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    log = bt_read_file(err_path);
    snprintf(line, sizeof(line), "group %s: its offsets cannot be read", group);
    if (!log || !strstr(log, line) || strstr(strstr(log, line) + 1, line))
        fail_msg("the refused group was not logged exactly once: %s", log ? log : "");
    free(log);
}

/* An ACL in front of `ballast lag`, as the SCRAM user: a group it may not
 * Describe and a topic it may not Describe. A group refused must never look
 * like a healthy or an empty one. */
static void test_acls_in_front_of_lag(void **state)
{
    (void)state;
    require_env();
    const char *prefix = bt_unique("sec-acl"), *dir = bt_tmpdir();
    char open_t[128], hidden_t[128], g_open[160], g_refused[160], g_hidden_t[160];
    char principal[160], include[200], line[300];
    char *out = path_in(dir, "acl.out"), *err = path_in(dir, "acl.err");
    char *conf = path_in(dir, "acl.conf"), kafka[1024], *text, *errs;
    int rc;

    snprintf(open_t, sizeof(open_t), "%s-t", prefix);
    snprintf(hidden_t, sizeof(hidden_t), "%s-hidden-t", prefix);
    snprintf(g_open, sizeof(g_open), "%s-open", prefix);
    snprintf(g_refused, sizeof(g_refused), "%s-refused", prefix);
    snprintf(g_hidden_t, sizeof(g_hidden_t), "%s-on-hidden-topic", prefix);
    snprintf(principal, sizeof(principal), "User:%s", env.user);
    bt_create_topic(env.plain, open_t, 1);
    bt_create_topic(env.plain, hidden_t, 1);
    bt_produce_seq(env.plain, open_t, 1, 0, 5, 0);
    bt_produce_seq(env.plain, hidden_t, 1, 0, 5, 0);
    bt_commit(env.plain, g_open, open_t, (int64_t[]){2}, 1);
    bt_commit(env.plain, g_refused, open_t, (int64_t[]){2}, 1);
    bt_commit(env.plain, g_hidden_t, hidden_t, (int64_t[]){2}, 1);
    bt_deny(env.plain, RD_KAFKA_RESOURCE_GROUP, g_refused, principal,
            RD_KAFKA_ACL_OPERATION_DESCRIBE);
    bt_deny(env.plain, RD_KAFKA_RESOURCE_TOPIC, hidden_t, principal,
            RD_KAFKA_ACL_OPERATION_DESCRIBE);
    sasl_conf(kafka, sizeof(kafka), "SCRAM-SHA-512", "BALLAST_TEST_SCRAM_PASSWORD");
    bt_write_file(conf, "%s", kafka);

    /* One group, refused: exit 78 and one line saying why, as for a group
     * that does not exist. */
    rc = run_capture(ARGV("lag", "--config", conf, "-g", g_refused, "--json"), out, err, 60000);
    errs = bt_read_file(err);
    if (rc != 78 || !one_line(errs) || !strstr(errs, g_refused) ||
        !strstr(errs, "not authorized") || !strstr(errs, "Describe"))
        fail_msg("ballast lag -g on a group an ACL refuses: exit %d (expected 78 and one "
                 "line naming the group and the missing Describe): %s",
                 rc, errs ? errs : "");
    free(errs);

    /* One group whose only topic is hidden: the broker leaves the topic out
     * of the group's offsets, so there is nothing to report, and the note
     * says that it is what this principal may see; the topic asked for by
     * name is refused like one that does not exist. */
    rc = run_capture(ARGV("lag", "--config", conf, "-g", g_hidden_t, "--json"), out, err,
                     60000);
    errs = bt_read_file(err);
    if (rc != 0 || !errs || !strstr(errs, "this principal may see"))
        fail_msg("ballast lag -g on a group whose topic is hidden: exit %d: %s", rc,
                 errs ? errs : "");
    free(errs);
    rc = run_capture(ARGV("lag", "--config", conf, "-g", g_hidden_t, "-t", hidden_t, "--json"),
                     out, err, 60000);
    errs = bt_read_file(err);
    if (rc != 78 || !one_line(errs) || !strstr(errs, hidden_t) || !strstr(errs, "Describe"))
        fail_msg("ballast lag -t on a topic an ACL hides: exit %d (expected 78 and one line "
                 "naming the topic and the missing Describe): %s",
                 rc, errs ? errs : "");
    free(errs);

    /* The whole cluster: the readable group is reported, the refused one is
     * listed (the principal may Describe the cluster) and counted as
     * group_denied with one line, never as an empty or healthy group. */
    snprintf(include, sizeof(include), "^%s-", prefix);
    rc = run_capture(ARGV("lag", "--config", conf, "--all-groups", "--include", include,
                          "--json"),
                     out, err, 60000);
    text = bt_read_file(out);
    errs = bt_read_file(err);
    snprintf(line, sizeof(line), "\"group\":\"%s\",\"topic\":\"%s\"", g_open, open_t);
    if (rc != 0 || !text || !strstr(text, line) || !strstr(text, "\"lag\":3"))
        fail_msg("ballast lag --all-groups behind an ACL: exit %d, stdout: %s; stderr: %s", rc,
                 text ? text : "", errs ? errs : "");
    snprintf(line, sizeof(line), "group %s: its offsets cannot be read: group %s: not "
             "authorized", g_refused, g_refused);
    if (!errs || !strstr(errs, line))
        fail_msg("the refused group is not reported as refused: stderr: %s", errs ? errs : "");
    snprintf(line, sizeof(line), "\"group\":\"%s\"", g_refused);
    if (strstr(text, line) && !strstr(text, "\"status\":\"ERR\""))
        fail_msg("the refused group has rows that are not ERR: %s", text);
    free(text);
    free(errs);
    watch_refused_group(conf, include, g_refused, err);
    free(out);
    free(err);
    free(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acls_in_front_of_lag),
        cmocka_unit_test(test_forward_over_ssl),
        cmocka_unit_test(test_forward_over_sasl_scram512_keeps_the_password_out),
        cmocka_unit_test(test_lag_over_sasl_scram256),
        cmocka_unit_test(test_wrong_password_fails_startup_clearly),
        cmocka_unit_test(test_untrusted_broker_certificate_fails_clearly),
        cmocka_unit_test(test_fatal_stop_over_sasl_keeps_the_password_out),
        cmocka_unit_test(test_metrics_listen_without_host_binds_loopback),
        cmocka_unit_test(test_password_from_a_file_stays_out_of_ps),
        cmocka_unit_test(test_unreadable_secret_file_fails_clearly),
        cmocka_unit_test(test_tools_take_client_settings_from_a_config_file),
        cmocka_unit_test(test_forward_over_mutual_tls),
        cmocka_unit_test(test_untrusted_client_certificate_fails_clearly),
        cmocka_unit_test(test_missing_client_certificate_fails_clearly),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
