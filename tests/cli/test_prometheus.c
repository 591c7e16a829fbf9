/*
 * test_prometheus.c - the Grafana dashboard and the Prometheus alert rules of
 * contrib/ against what ballast really exports, on the real broker: a live
 * `ballast run` (metrics.listen) and a live `ballast lag --listen` on the
 * same group are scraped, and
 *   - `promtool check metrics` reports nothing on either scrape;
 *   - every metric that a dashboard query, a template variable, an alert
 *     rule or the KEDA Prometheus trigger names is in one of the scrapes, with every label the query
 *     selects, groups or prints (tests/cli/promql_check.py), and promtool
 *     parses each dashboard query;
 *   - the same check fails, naming each fault, on queries with a metric
 *     ballast does not export, a label a metric lacks, and a legend label
 *     the result lacks (so that the check above can fail).
 * The rules' own unit tests (`promtool test rules`) are ctest entries of
 * their own (tests/CMakeLists.txt).
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
/* Debian's python3, where python3-prometheus-client and python3-yaml are. */
#define PYTHON "/usr/bin/python3"
#define PARTITIONS 2

typedef struct scrape_arg {
    const char *addr;
    const char *const *want; /* samples that must be there, NULL-terminated */
    char *text;
} scrape_arg_t;

/* True once /metrics serves every wanted sample; keeps the text. */
static bool scrape_has_all(void *opaque)
{
    scrape_arg_t *a = opaque;
    bt_http_reply_t r = bt_http_get(a->addr, "/metrics");
    bool all = r.status == 200;

    for (size_t i = 0; all && a->want[i]; i++)
        all = strstr(r.body, a->want[i]) != NULL;
    free(a->text);
    a->text = r.body;
    r.body = NULL;
    bt_http_reply_free(&r);
    return all;
}

/* Scrapes @p addr until every sample of @p want is there (60 s), writes the
 * text to @p name in the test directory and returns its path. */
static const char *scrape_to_file(const char *addr, const char *const *want, const char *name)
{
    static char paths[2][400];
    static int next;
    scrape_arg_t a = {addr, want, NULL};
    char *path = paths[next++ % 2];

    if (!bt_wait_for(scrape_has_all, &a, 60000))
        fail_msg("%s never served all of its metrics; last scrape:\n%s", addr,
                 a.text ? a.text : "(none)");
    snprintf(path, 400, "%s/%s", bt_tmpdir(), name);
    bt_write_file(path, "%s", a.text);
    free(a.text);
    return path;
}

static int check_queries(char **out, const char *run, const char *lag, const char *dashboard,
                         const char *rules)
{
    return bt_sh(out, NULL,
                 PYTHON " '%s/tests/cli/promql_check.py' --promtool promtool --metrics '%s' "
                        "--metrics '%s' --dashboard '%s' %s%s%s%s",
                 BALLAST_SRC_DIR, run, lag, dashboard, rules ? "--rules '" : "",
                 rules ? rules : "", rules ? "'" : "",
                 rules ? " --keda '" BALLAST_SRC_DIR
                         "/contrib/kubernetes/scaledobject-prometheus.yaml'"
                       : "");
}

static void test_dashboard_and_rules_match_live_metrics(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("prom"), *group = bt_unique("prom-g");
    const char *run_path, *lag_path;
    char conf[300], err[300], lag_err[300], addr[64], lag_addr[64], dash[400], rules[400];
    char lag_sample[300], *out;
    pid_t run, lag;
    int rc;

    bt_require_promtool();
    if (access(PYTHON, X_OK))
        fail_msg(PYTHON " is missing: run scripts/install-deps --test");
    bt_create_topic(bt_bootstrap(), topic, PARTITIONS);
    bt_produce_seq(bt_bootstrap(), topic, PARTITIONS, 0, 20, 0);
    snprintf(conf, sizeof(conf), "%s/run.conf", bt_tmpdir());
    snprintf(err, sizeof(err), "%s/run.err", bt_tmpdir());
    snprintf(lag_err, sizeof(lag_err), "%s/lag.err", bt_tmpdir());
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
                  "handler = plugin\nhandler.plugin.path = %s\n"
                  "metrics.listen = 127.0.0.1:0\n",
                  bt_bootstrap(), group, topic, BALLAST_TEST_PLUGIN);
    run = bt_spawn_ballast(ARGV("run", conf), err);
    bt_wait_listening(err, run, addr, sizeof(addr));
    lag = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--prometheus",
                                "--listen", "127.0.0.1:0", "--watch", "0.5"),
                           lag_err);
    bt_wait_listening(lag_err, lag, lag_addr, sizeof(lag_addr));

    /* Both serve a lag and a time lag for every partition once the group
     * has committed; the lag monitor also the group's members. */
    snprintf(lag_sample, sizeof(lag_sample), "kafka_consumergroup_lag_seconds{consumergroup=\"%s\","
             "topic=\"%s\",partition=\"%d\"}", group, topic, PARTITIONS - 1);
    run_path = scrape_to_file(addr, (const char *const[]){lag_sample, NULL}, "run.metrics");
    lag_path = scrape_to_file(lag_addr, (const char *const[]){lag_sample, "ballast_lag_group_members{", NULL},
                              "lag.metrics");
    bt_promtool_check_metrics(run_path, NULL);
    bt_promtool_check_metrics(lag_path, NULL);

    snprintf(dash, sizeof(dash), "%s/contrib/grafana/ballast.json", BALLAST_SRC_DIR);
    snprintf(rules, sizeof(rules), "%s/contrib/prometheus/ballast-alerts.yml", BALLAST_SRC_DIR);
    rc = check_queries(&out, run_path, lag_path, dash, rules);
    if (rc != 0)
        fail_msg("the dashboard or the rules name what ballast does not export:\n%s", out);
    print_message("%s", out);
    free(out);

    bt_term(lag);
    assert_int_equal(bt_wait(lag, 15000), 0);
    bt_term(run);
    assert_int_equal(bt_wait(run, 60000), 0);
}

/* The check is not one that always passes. */
static void test_query_check_finds_each_fault(void **state)
{
    static const char *const faults[] = {
        "ballast_messages_total is not exported",
        "ballast_dlq_records_total (by) has no label outcome",
        "kafka_consumergroup_lag has no label group",
        "prints {{partition}}, which the result (consumergroup) lacks",
        "ballast_ready (on) has no label topic",
    };
    char run[300], lag[300], dash[300], *out;
    int rc;

    (void)state;
    bt_require_promtool();
    snprintf(run, sizeof(run), "%s/run.metrics", bt_tmpdir());
    snprintf(lag, sizeof(lag), "%s/lag.metrics", bt_tmpdir());
    snprintf(dash, sizeof(dash), "%s/bad.json", bt_tmpdir());
    bt_write_file(run, "# TYPE ballast_dlq_records_total counter\n"
                       "ballast_dlq_records_total{consumergroup=\"g\"} 1\n"
                       "# TYPE ballast_ready gauge\nballast_ready{consumergroup=\"g\"} 1\n");
    bt_write_file(lag, "# TYPE kafka_consumergroup_lag gauge\n"
                       "kafka_consumergroup_lag{consumergroup=\"g\",topic=\"t\",partition=\"0\"} 5\n");
    bt_write_file(dash,
                  "{\"panels\": [{\"title\": \"faults\", \"targets\": ["
                  "{\"refId\": \"A\", \"expr\": \"rate(ballast_messages_total[5m])\"},"
                  "{\"refId\": \"B\", \"expr\": \"sum by (outcome) "
                  "(rate(ballast_dlq_records_total[$__rate_interval]))\"},"
                  "{\"refId\": \"C\", \"expr\": \"kafka_consumergroup_lag{group=~\\\"$group\\\"}\"},"
                  "{\"refId\": \"D\", \"expr\": \"sum by (consumergroup) (kafka_consumergroup_lag)\","
                  " \"legendFormat\": \"{{partition}}\"},"
                  "{\"refId\": \"E\", \"expr\": \"kafka_consumergroup_lag and on (topic) "
                  "ballast_ready\"}]}]}\n");
    rc = check_queries(&out, run, lag, dash, NULL);
    assert_int_equal(rc, 1);
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
        if (!strstr(out, faults[i]))
            fail_msg("the check did not report \"%s\":\n%s", faults[i], out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dashboard_and_rules_match_live_metrics),
        cmocka_unit_test(test_query_check_finds_each_fault),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
