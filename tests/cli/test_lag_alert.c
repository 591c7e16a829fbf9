/*
 * test_lag_alert.c - `ballast lag`'s alerts against the real broker and a
 * webhook receiver (tests/cli/webhook_receiver.py):
 *
 *   one group (JSON bodies, three webhooks): the alert fires only once its
 *   condition held for --alert-for, and resolves when it clears; a receiver
 *   that answers 500 twice gets the same body a third time and accepts it;
 *   a receiver that never answers does not hold up the evaluations
 *   (/metrics keeps counting them while it holds a request), its timeouts
 *   are counted in ballast_lag_alert_failures_total{reason="timeout"} and
 *   logged once;
 *
 *   every group (--all-groups, Slack bodies, rules per group pattern from
 *   the config file): a flapping group is notified at most once per rate
 *   limit interval, a later notification counts the ones held back, and the
 *   last one notified is its current state; a group flapping faster than
 *   its rule's `for` never fires, and fires once its condition holds; every
 *   body is Slack's {"text": "<one line>"};
 *
 *   several clusters (the broker under two names, east and west, in
 *   lag.cluster.NAME.* sections): a lagging group fires one alert per
 *   cluster, each body naming its cluster and the rule for that cluster
 *   (one rule has cluster = ^west$), both resolve, each cluster counts its
 *   own, and /metrics has each alert family once with a sample per
 *   cluster, which promtool passes;
 *
 *   bad URLs and rules exit 78 with one line.
 */
#include "support.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define PYTHON "/usr/bin/python3"
#define LAG 10 /* messages produced: a committed offset of 0 is a lag of 10 */

/* ---- the receiver --------------------------------------------------------- */

static pid_t g_receiver;
static char g_url[128]; /* http://127.0.0.1:PORT */
static char g_log[512];

static void receiver_kill(void)
{
    if (g_receiver > 0) {
        kill(g_receiver, SIGKILL);
        waitpid(g_receiver, NULL, 0);
        g_receiver = 0;
    }
}

static void receiver_start(void)
{
    char port_file[512], *port = NULL, script[512];
    int64_t deadline = bt_now_ms() + 15000;

    snprintf(port_file, sizeof(port_file), "%s/webhook-port-%d", bt_tmpdir(), getpid());
    snprintf(g_log, sizeof(g_log), "%s/webhook-log-%d", bt_tmpdir(), getpid());
    snprintf(script, sizeof(script), "%s/tests/cli/webhook_receiver.py", BALLAST_SRC_DIR);
    unlink(port_file);
    if (!(g_receiver = fork())) {
        execl(PYTHON, PYTHON, script, "--port-file", port_file, "--log", g_log, (char *)NULL);
        _exit(127);
    }
    atexit(receiver_kill);
    while (!(port = bt_read_file(port_file))) {
        if (bt_now_ms() > deadline || waitpid(g_receiver, NULL, WNOHANG))
            fail_msg("the webhook receiver did not start");
        usleep(20000);
    }
    snprintf(g_url, sizeof(g_url), "http://127.0.0.1:%ld", strtol(port, NULL, 10));
    free(port);
}

/* The requests received on @p path, oldest first (a JSON array). */
static json_t *received(const char *path)
{
    char *text = bt_read_file(g_log), *save = NULL;
    json_t *all = json_array();

    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            fail_msg("the receiver's log has a bad line: %s", line);
        if (!strcmp(json_string_value(json_object_get(o, "path")), path))
            json_array_append(all, o);
        json_decref(o);
    }
    free(text);
    return all;
}

/* Waits until @p path has received @p n requests; @returns them. */
static json_t *wait_received(const char *path, size_t n, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;

    for (;;) {
        json_t *all = received(path);
        if (json_array_size(all) >= n)
            return all;
        json_decref(all);
        if (bt_now_ms() > deadline)
            fail_msg("%s received fewer than %zu requests within %d ms", path, n, timeout_ms);
        usleep(20000);
    }
}

static double wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- helpers ------------------------------------------------------------------ */

static double metric(const char *addr, const char *name)
{
    return bt_metric(addr, name);
}

/* Waits until the metric @p name on @p addr reaches @p want. */
static void wait_metric(const char *addr, const char *name, double want, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;

    while (metric(addr, name) < want) {
        if (bt_now_ms() > deadline)
            fail_msg("%s stayed below %g for %d ms (%g)", name, want, timeout_ms,
                     metric(addr, name));
        usleep(20000);
    }
}

static void commit(const char *group, const char *topic, int64_t offset)
{
    bt_commit(bt_bootstrap(), group, topic, &offset, 1);
}

static const char *body_str(json_t *req, const char *key)
{
    return json_string_value(json_object_get(json_object_get(req, "body"), key));
}

/* ---- one group ---------------------------------------------------------------- */

static void test_one_group(void **state)
{
    const char *topic = bt_unique("alert-one"), *group = bt_unique("alert-one-g");
    char ok[200], fail2[200], hang[200], err_path[512], addr[64], evals[256];
    double start, e0;
    json_t *r, *first;
    char *err;
    pid_t pid;

    (void)state;
    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, LAG, 0);
    commit(group, topic, 0);
    snprintf(ok, sizeof(ok), "%s/ok", g_url);
    snprintf(fail2, sizeof(fail2), "%s/fail2", g_url);
    snprintf(hang, sizeof(hang), "%s/hang", g_url);
    snprintf(err_path, sizeof(err_path), "%s/alert-one-%d.err", bt_tmpdir(), getpid());
    start = wall_s();
    pid = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--watch", "0.2",
                                "--listen", "127.0.0.1:0", "--webhook", hang, "--webhook",
                                ok, "--webhook", fail2, "--alert-lag", "5", "--alert-for",
                                "1.5", "--alert-rate-limit", "0", "--webhook-timeout", "1",
                                "--webhook-retry-for", "3"),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));

    /* While /hang holds a request (the firing, first of the three
     * webhooks), evaluations go on. */
    json_decref(wait_received("/hang", 1, 30000));
    snprintf(evals, sizeof(evals), "ballast_lag_evaluations_total");
    e0 = metric(addr, evals);
    wait_metric(addr, evals, e0 + 3, 3000); /* a delivery in the loop would stall it 4 s */

    /* Fires, but only once the condition held for 1.5 s. */
    r = wait_received("/ok", 1, 15000);
    first = json_array_get(r, 0);
    assert_string_equal(body_str(first, "status"), "firing");
    assert_string_equal(body_str(first, "group"), group);
    assert_string_equal(body_str(first, "rule"), "default");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(first, "body"),
                                                        "total_lag")), LAG);
    assert_string_equal(json_string_value(json_object_get(first, "content_type")),
                        "application/json");
    if (json_real_value(json_object_get(first, "t")) - start < 1.5)
        fail_msg("fired %.3f s after the start, before --alert-for 1.5 s",
                 json_real_value(json_object_get(first, "t")) - start);
    if (json_real_value(json_object_get(json_object_get(first, "body"), "duration_seconds")) <
        1.5)
        fail_msg("fired after its condition held %.3f s, less than --alert-for",
                 json_real_value(json_object_get(json_object_get(first, "body"),
                                                 "duration_seconds")));

    /* 500, 500, then 200: the same body three times. */
    json_t *f = wait_received("/fail2", 3, 15000);
    for (int i = 0; i < 3; i++) {
        json_t *req = json_array_get(f, (size_t)i);
        assert_int_equal(json_integer_value(json_object_get(req, "answered")), i < 2 ? 500 : 200);
        assert_true(json_equal(json_object_get(req, "body"), json_object_get(first, "body")));
    }
    json_decref(f);
    wait_metric(addr, "ballast_lag_alerts_sent_total", 2, 10000);
    wait_metric(addr, "ballast_lag_alert_failures_total{reason=\"timeout\"}", 1, 15000);

    /* Resolves. */
    commit(group, topic, LAG);
    json_decref(r);
    r = wait_received("/ok", 2, 15000);
    assert_string_equal(body_str(json_array_get(r, 1), "status"), "resolved");
    assert_int_equal(json_array_size(r), 2);
    json_decref(r);
    wait_metric(addr, "ballast_lag_alert_failures_total{reason=\"timeout\"}", 2, 15000);
    assert_true(metric(addr, "ballast_lag_alert_attempts_total") >= 2 + 4 + 4);
    assert_int_equal((int)metric(addr, "ballast_lag_alert_notifications_total{kind=\"firing\"}"),
                     1);

    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    /* Two failed notifications to /hang, one line. */
    err = bt_read_file(err_path);
    {
        int lines = 0;
        for (const char *p = err; (p = strstr(p, "a notification failed")); p++)
            lines++;
        if (lines != 1)
            fail_msg("%d lines about failed notifications, expected 1: %s", lines, err);
    }
    free(err);
}

/* ---- every group -------------------------------------------------------------- */

/* Whether @p req's body is Slack's: {"text": one line}. */
static void assert_slack(json_t *req)
{
    json_t *body = json_object_get(req, "body");
    const char *text = json_string_value(json_object_get(body, "text"));

    if (!json_is_object(body) || json_object_size(body) != 1 || !text || strchr(text, '\n'))
        fail_msg("not a Slack body: %s", json_dumps(body, 0));
}

/* The notifications about @p group among @p all (Slack bodies). */
static json_t *about(json_t *all, const char *group)
{
    json_t *out = json_array(), *req;
    char needle[256];
    size_t i;

    snprintf(needle, sizeof(needle), "consumer group %s ", group);
    json_array_foreach(all, i, req) {
        assert_slack(req);
        if (strstr(json_string_value(json_object_get(json_object_get(req, "body"), "text")),
                   needle))
            json_array_append(out, req);
    }
    return out;
}

static const char *text_of(json_t *req)
{
    return json_string_value(json_object_get(json_object_get(req, "body"), "text"));
}

/* Sample @p name of an --all-groups watcher (its samples carry the cluster
 * label), or -1. */
static double cluster_metric(const char *addr, const char *name)
{
    bt_http_reply_t m = bt_http_get(addr, "/metrics");
    char key[128];
    const char *at;
    double v;

    snprintf(key, sizeof(key), "\n%s{", name);
    at = m.body ? strstr(m.body, key) : NULL;
    v = at ? strtod(strchr(at, '}') + 1, NULL) : -1;
    bt_http_reply_free(&m);
    return v;
}

static double cluster_evaluations(const char *addr)
{
    return cluster_metric(addr, "ballast_lag_evaluations_total");
}

static void test_all_groups(void **state)
{
    const char *prefix = bt_unique("alertall"), *topic = bt_unique("alert-all");
    char flap[128], slow[128], conf[512], include[160], ok[200], err_path[512], addr[64];
    const double rate = 3, slow_for = 4;
    double longest = 0, last_change = 0;
    json_t *all, *f, *s;
    size_t i;
    json_t *req;
    pid_t pid;

    (void)state;
    snprintf(flap, sizeof(flap), "%s-flap", prefix);
    snprintf(slow, sizeof(slow), "%s-slow", prefix);
    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, LAG, 0);
    commit(flap, topic, LAG);
    commit(slow, topic, LAG);
    snprintf(ok, sizeof(ok), "%s/ok-slack", g_url);
    snprintf(conf, sizeof(conf), "%s/alert-all-%d.conf", bt_tmpdir(), getpid());
    bt_write_file(conf,
                  "lag.webhook.url = %s\n"
                  "lag.webhook.format = slack\n"
                  "lag.alert.a.match = -flap$\n"
                  "lag.alert.a.lag = 5\n"
                  "lag.alert.a.for = 0\n"
                  "lag.alert.a.rate-limit = %gs\n"
                  "lag.alert.b.match = -slow$\n"
                  "lag.alert.b.lag = 5\n"
                  "lag.alert.b.for = %g\n"
                  "lag.alert.rate-limit = 0\n",
                  ok, rate, slow_for);
    snprintf(include, sizeof(include), "^%s-", prefix);
    snprintf(err_path, sizeof(err_path), "%s/alert-all-%d.err", bt_tmpdir(), getpid());
    pid = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                include, "--watch", "0.2", "--listen", "127.0.0.1:0",
                                "--config", conf),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));

    /* Both groups flap: lag 10, 0, 10, ..., 0, each state seen by two
     * evaluations; then the slow one has lag for good. */
    for (int k = 0; k < 11; k++) {
        int64_t t0 = bt_now_ms();
        double e = cluster_evaluations(addr);
        if (k < 10)
            commit(flap, topic, k % 2 ? LAG : 0);
        commit(slow, topic, k % 2 && k < 10 ? LAG : 0);
        last_change = wall_s();
        while (cluster_evaluations(addr) < e + 2) {
            if (bt_now_ms() - t0 > 30000)
                fail_msg("no evaluations within 30 s");
            usleep(20000);
        }
        if ((double)(bt_now_ms() - t0) / 1000 > longest)
            longest = (double)(bt_now_ms() - t0) / 1000;
    }
    if (longest >= slow_for)
        fail_msg("a state of the flapping lasted %.1f s, not less than the rule's for (%g s): "
                 "the machine is too slow for this test", longest, slow_for);

    /* The slow rule fires once its condition held for its `for`, and the
     * flapping group ends notified as resolved (its state when the
     * flapping stopped), however the changes fell in the intervals. */
    for (int64_t deadline = bt_now_ms() + 20000;; usleep(50000)) {
        all = received("/ok-slack");
        f = about(all, flap);
        s = about(all, slow);
        if (json_array_size(s) >= 1 && json_array_size(f) >= 1 &&
            strstr(text_of(json_array_get(f, json_array_size(f) - 1)), "RESOLVED"))
            break;
        if (bt_now_ms() > deadline)
            fail_msg("within 20 s: %zu notifications about %s, the last %s; %zu about %s",
                     json_array_size(f), flap,
                     json_array_size(f) ? text_of(json_array_get(f, json_array_size(f) - 1))
                                        : "-",
                     json_array_size(s), slow);
        json_decref(all);
        json_decref(f);
        json_decref(s);
    }
    /* Never while it flapped: it fired after the last change, `for` later
     * (the condition must hold all along, not add up). */
    assert_int_equal(json_array_size(s), 1);
    assert_non_null(strstr(text_of(json_array_get(s, 0)), "FIRING"));
    if (json_real_value(json_object_get(json_array_get(s, 0), "t")) < last_change + slow_for)
        fail_msg("%s fired %.2f s after its condition last began to hold, before its for (%g s)",
                 slow, json_real_value(json_object_get(json_array_get(s, 0), "t")) - last_change,
                 slow_for);
    /* The flapping group: 10 changes, at most one notification per
     * interval, and the ones held back counted. */
    {
        bool counted = false;
        json_array_foreach(f, i, req) {
            if (i && json_real_value(json_object_get(req, "t")) -
                             json_real_value(json_object_get(json_array_get(f, i - 1), "t")) <
                         rate - 0.3)
                fail_msg("two notifications about %s within %.2f s (rate limit %g s): %s",
                         flap,
                         json_real_value(json_object_get(req, "t")) -
                             json_real_value(json_object_get(json_array_get(f, i - 1), "t")),
                         rate, text_of(req));
            counted |= strstr(text_of(req), "suppressed by the rate limit") != NULL;
        }
        if (!counted || json_array_size(f) < 2)
            fail_msg("%zu notifications about %s, none counting those held back",
                     json_array_size(f), flap);
    }
    assert_non_null(strstr(text_of(json_array_get(f, 0)), "FIRING"));
    /* /metrics counts what the receiver got (its samples labelled cluster). */
    for (int64_t deadline = bt_now_ms() + 5000;
         cluster_metric(addr, "ballast_lag_alerts_sent_total") < (double)json_array_size(all);
         usleep(20000))
        if (bt_now_ms() > deadline)
            fail_msg("ballast_lag_alerts_sent_total is %g, the receiver got %zu",
                     cluster_metric(addr, "ballast_lag_alerts_sent_total"),
                     json_array_size(all));
    json_decref(all);
    json_decref(f);
    json_decref(s);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
}

/* ---- several clusters -------------------------------------------------------- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The JSON bodies of @p all about @p group with status @p status, by
 * cluster and rule: "east:default,west:w" (sorted). */
static void clusters_of(json_t *all, const char *group, const char *status, char *out,
                        size_t size)
{
    char seen[8][128];
    size_t n = 0, i, len = 0;
    json_t *req;

    json_array_foreach(all, i, req) {
        if (strcmp(body_str(req, "group"), group) || strcmp(body_str(req, "status"), status))
            continue;
        if (n == 8)
            fail_msg("more than 8 %s notifications about %s", status, group);
        const char *cluster = body_str(req, "cluster") ? body_str(req, "cluster") : "(none)";
        char on[160];
        /* The summary (Slack's text) names it too. */
        snprintf(on, sizeof(on), " on %s ", cluster);
        snprintf(seen[n++], sizeof(seen[0]), "%s:%s%s", cluster,
                 body_str(req, "rule") ? body_str(req, "rule") : "(none)",
                 strstr(body_str(req, "summary"), on) ? "" : "(not in the summary)");
    }
    qsort(seen, n, sizeof(seen[0]), str_cmp);
    out[0] = '\0';
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s", i ? "," : "",
                                seen[i]);
}

/* Waits until the notifications on @p path about @p group with @p status
 * come from east (rule default) and west (rule w), one each. */
static void wait_both_clusters(const char *path, const char *group, const char *status)
{
    static const char want[] = "east:default,west:w";
    char got[1200] = "";

    for (int64_t deadline = bt_now_ms() + 20000;; usleep(20000)) {
        json_t *all = received(path);
        clusters_of(all, group, status, got, sizeof(got));
        json_decref(all);
        if (!strcmp(got, want))
            return;
        if (bt_now_ms() > deadline || strlen(got) > strlen(want))
            fail_msg("%s notifications about %s came from \"%s\" (cluster:rule), expected "
                     "\"%s\" (one each) within 20 s", status, group, got, want);
    }
}

/* The value of the sample of @p addr's /metrics that starts with @p prefix
 * ("NAME{labels} "), or -1. */
static double sample_of(const char *addr, const char *prefix)
{
    bt_http_reply_t m = bt_http_get(addr, "/metrics");
    char key[256];
    const char *at;
    double v;

    snprintf(key, sizeof(key), "\n%s", prefix);
    at = m.body ? strstr(m.body, key) : NULL;
    v = at ? strtod(at + strlen(key), NULL) : -1;
    bt_http_reply_free(&m);
    return v;
}

static void test_two_clusters(void **state)
{
    const char *topic = bt_unique("alert-mc"), *group = bt_unique("alert-mc-g");
    char conf[512], include[160], ok[200], err_path[512], addr[64], path[512];
    const char *clusters[] = {"east", "west"};
    bt_http_reply_t m;
    pid_t pid;

    (void)state;
    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, LAG, 0);
    commit(group, topic, 0);
    snprintf(ok, sizeof(ok), "%s/ok-clusters", g_url);
    snprintf(conf, sizeof(conf), "%s/alert-mc-%d.conf", bt_tmpdir(), getpid());
    bt_write_file(conf,
                  "lag.cluster.east.bootstrap.servers = %s\n"
                  "lag.cluster.west.bootstrap.servers = %s\n"
                  "lag.alert.lag = 5\n"
                  "lag.alert.for = 0\n"
                  "lag.alert.rate-limit = 0\n"
                  "lag.alert.w.match = .\n"
                  "lag.alert.w.cluster = ^west$\n"
                  "lag.alert.w.lag = 5\n",
                  bt_bootstrap(), bt_bootstrap());
    snprintf(include, sizeof(include), "^%s$", group);
    snprintf(err_path, sizeof(err_path), "%s/alert-mc-%d.err", bt_tmpdir(), getpid());
    pid = bt_spawn_ballast(ARGV("lag", "--config", conf, "--all-groups", "--include", include,
                                "--watch", "0.2", "--listen", "127.0.0.1:0", "--webhook", ok),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));

    /* One group, two clusters: two alerts, each naming its cluster. */
    wait_both_clusters("/ok-clusters", group, "firing");
    m = bt_http_get(addr, "/metrics");
    assert_int_equal(m.status, 200);
    for (size_t i = 0; i < 2; i++) {
        char sample[128];
        snprintf(sample, sizeof(sample), "\nballast_lag_alerts_firing{cluster=\"%s\"} 1\n",
                 clusters[i]);
        if (!strstr(m.body, sample))
            fail_msg("/metrics has no %s; it has:\n%s", sample + 1, m.body);
    }
    snprintf(path, sizeof(path), "%s/alert-mc-%d.prom", bt_tmpdir(), getpid());
    bt_write_file(path, "%s", m.body);
    bt_http_reply_free(&m);
    /* kafka_exporter's names (kafka_consumergroup_lag_sum, ...) are kept
     * on purpose: the only lint finding allowed. */
    bt_promtool_check_metrics(path, (const char *const[]){"should not have \"_sum\" suffix",
                                                          NULL});

    /* Both resolve; each cluster counts its own notifications and
     * deliveries: a firing and a resolved one each. */
    commit(group, topic, LAG);
    wait_both_clusters("/ok-clusters", group, "resolved");
    for (size_t i = 0; i < 2; i++) {
        char sent[128], resolved[128];
        snprintf(sent, sizeof(sent), "ballast_lag_alerts_sent_total{cluster=\"%s\"} ",
                 clusters[i]);
        snprintf(resolved, sizeof(resolved),
                 "ballast_lag_alert_notifications_total{cluster=\"%s\",kind=\"resolved\"} ",
                 clusters[i]);
        for (int64_t deadline = bt_now_ms() + 5000; sample_of(addr, sent) < 2; usleep(20000))
            if (bt_now_ms() > deadline)
                fail_msg("%sstayed at %g, expected 2", sent, sample_of(addr, sent));
        assert_true(sample_of(addr, resolved) == 1);
    }
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
}

/* ---- bad input -------------------------------------------------------------- */

static void expect_78(const char *const *argv, const char *fragment)
{
    bt_captured_t c = bt_run_captured(argv, 30000);

    if (c.rc != 78)
        fail_msg("exit %d, expected 78; stderr: %s", c.rc, c.err);
    bt_assert_one_line(c.err, fragment);
    bt_captured_free(&c);
}

static void test_bad_input(void **state)
{
    char conf[512];

    (void)state;
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--webhook", "ftp://h/x"), "--webhook");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--webhook", "http://"), "--webhook");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--alert-lag", "5"), "--webhook");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--webhook", "http://h/", "--alert-status",
                   "BAD"), "--alert-status");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--webhook", "http://h/", "--alert-for", "5x"),
              "--alert-for");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--webhook", "http://h/", "--webhook-format",
                   "teams"), "--webhook-format");
    snprintf(conf, sizeof(conf), "%s/alert-bad-%d.conf", bt_tmpdir(), getpid());
    bt_write_file(conf, "lag.webhook.url = http://h/\nlag.alert.x.match = a(\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.alert.x.match");
    bt_write_file(conf, "lag.webhook.url = http://h/\nlag.alert.x.lag = 5\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.alert.x.match");
    bt_write_file(conf, "lag.webhook.url = http://h/\nlag.alert.x.match = .\n"
                        "lag.alert.x.lags = 5\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.alert.x.lags");
    bt_write_file(conf, "lag.webhook.url = http://h/\nlag.alert.x.match = .\n"
                        "lag.alert.x.cluster = a(\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.alert.x.cluster");
    bt_write_file(conf, "lag.webhook.url = http://h/\nlag.alert.cluster = a\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.alert.cluster");
    bt_write_file(conf, "lag.webhook.url = http://h/ nope\n");
    expect_78(ARGV("lag", "-b", "x", "-g", "g", "--config", conf), "lag.webhook.url");
}

static int setup(void **state)
{
    (void)state;
    receiver_start();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_one_group),
        cmocka_unit_test(test_all_groups),
        cmocka_unit_test(test_two_clusters),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
