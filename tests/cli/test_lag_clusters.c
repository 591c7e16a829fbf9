/*
 * test_lag_clusters.c - `ballast lag --all-groups` of several clusters in
 * one process (lag.cluster.NAME.* in the --config file), against the real
 * broker registered twice under two names (east, west: the same groups,
 * which must read the same in both) beside one that cannot be reached
 * (down): one /metrics with each family declared once and every sample
 * labelled with its cluster; ballast_lag_up 1, 1 and 0, the reachable
 * clusters evaluated on while the other is down and logged once; /groups
 * lists the group under both clusters with the clusters' headers;
 * /groups/CLUSTER/NAME; the page lists the rows of /groups in its order
 * and shows a group's partitions from its link; without --watch, the
 * reachable clusters are printed and the unreachable one is exit 69 with
 * one line; bad sections exit 78. And two real clusters (a second broker
 * of its own, started for the test): the same group name reads each
 * cluster's own lag, and a group of one cluster is never shown under the
 * other.
 */
#include "support.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

static char *get_body(const char *addr, const char *path, int want_status)
{
    bt_http_reply_t r = bt_http_get(addr, path);
    char *body;

    if (r.status != want_status)
        fail_msg("%s answered %d, expected %d: %s", path, r.status, want_status,
                 r.body ? r.body : "");
    body = r.body;
    r.body = NULL;
    bt_http_reply_free(&r);
    return body;
}

/* The value of the sample that starts with @p prefix ("NAME{labels} "),
 * or -1 when none. */
static double value_of(const char *text, const char *prefix)
{
    char line[1024];
    const char *at;

    snprintf(line, sizeof(line), "\n%s", prefix);
    at = strstr(text, line);
    return at ? strtod(at + strlen(line), NULL) : -1;
}

static double lag_of(const char *text, const char *cluster, const char *group,
                     const char *topic, int partition)
{
    char prefix[512];

    snprintf(prefix, sizeof(prefix),
             "kafka_consumergroup_lag{cluster=\"%s\",consumergroup=\"%s\",topic=\"%s\","
             "partition=\"%d\"} ",
             cluster, group, topic, partition);
    return value_of(text, prefix);
}

static double scalar(const char *text, const char *name, const char *cluster)
{
    char prefix[256];

    snprintf(prefix, sizeof(prefix), "%s{cluster=\"%s\"} ", name, cluster);
    return value_of(text, prefix);
}

/* Waits until /groups lists @p group under both reachable clusters. */
static json_t *wait_both(const char *addr, const char *group)
{
    int64_t deadline = bt_now_ms() + 60000;

    for (;;) {
        bt_http_reply_t r = bt_http_get(addr, "/groups");
        json_t *doc = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL, *g;
        int seen = 0;
        size_t i;
        bt_http_reply_free(&r);
        json_array_foreach(json_object_get(doc, "groups"), i, g)
            seen += !strcmp(json_string_value(json_object_get(g, "group")), group);
        if (seen == 2)
            return doc;
        json_decref(doc);
        if (bt_now_ms() > deadline)
            fail_msg("/groups did not list %s under east and west within 60 s", group);
        usleep(100 * 1000);
    }
}

/* Every family declared once; every sample of one of the three clusters. */
static void check_text(const char *text)
{
    for (const char *at = text; (at = strstr(at, "# TYPE ")); at++) {
        char name[128], again[140];
        assert_int_equal(sscanf(at, "# TYPE %127s", name), 1);
        snprintf(again, sizeof(again), "# TYPE %s ", name);
        if (strstr(at + 1, again))
            fail_msg("family %s declared twice", name);
    }
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (*line && *line != '#' && !strstr(line, "{cluster=\"east\"") &&
            !strstr(line, "{cluster=\"west\"") && !strstr(line, "{cluster=\"down\""))
            fail_msg("a sample of no cluster: %.200s", line);
    }
}

/* The rows of the page, "CLUSTER/GROUP" a line, in order; and those of
 * /groups. */
static void page_rows(const char *dom, char *out, size_t size)
{
    const char *at = strstr(dom, "<tbody id=\"groups\""), *end;
    size_t len = 0;

    out[0] = '\0';
    if (!at || !(end = strstr(at, "</tbody>")))
        fail_msg("the page has no table of groups; DOM:\n%s", dom);
    while ((at = strstr(at, "data-group=\"")) && at < end) {
        const char *g = at + 12, *gq = strchr(g, '"'), *c = strstr(gq, "data-cluster=\"");
        const char *cq = c ? strchr(c + 14, '"') : NULL;
        assert_non_null(cq);
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%.*s/%.*s\n",
                                (int)(cq - c - 14), c + 14, (int)(gq - g), g);
        at = cq;
    }
}

static void doc_rows(json_t *doc, char *out, size_t size)
{
    json_t *g;
    size_t i, len = 0;

    out[0] = '\0';
    json_array_foreach(json_object_get(doc, "groups"), i, g)
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s/%s\n",
                                json_string_value(json_object_get(g, "cluster")),
                                json_string_value(json_object_get(g, "group")));
}

static void test_three_clusters(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *prefix = bt_unique("lagmany");
    char topic[128], group[160], include[200], conf[512], err_path[512], addr[64], path[300];
    char url[300], shown[4096], listed[4096], *text, *dom, *log;
    const int64_t off[2] = {1, 2};
    json_t *doc, *h;
    double east_evals;
    pid_t pid;

    snprintf(topic, sizeof(topic), "%s-t", prefix);
    snprintf(group, sizeof(group), "%s-g", prefix);
    snprintf(include, sizeof(include), "^%s-", prefix);
    snprintf(conf, sizeof(conf), "%s/lag-clusters.conf", bt_tmpdir());
    snprintf(err_path, sizeof(err_path), "%s/lag-clusters.err", bt_tmpdir());
    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 10, 0); /* 5 per partition */
    bt_commit(bt_bootstrap(), group, topic, off, 2);
    bt_write_file(conf,
                  "lag.cluster.east.bootstrap.servers = %s\n"
                  "lag.cluster.west.bootstrap.servers = %s\n"
                  "lag.cluster.west.client.id = lag-west\n"
                  "lag.cluster.down.bootstrap.servers = 127.0.0.1:1\n",
                  bt_bootstrap(), bt_bootstrap());
    pid = bt_spawn_ballast(ARGV("lag", "--config", conf, "--all-groups", "--include", include,
                                "--listen", "127.0.0.1:0", "--watch", "0.5", "--timeout", "1"),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));
    json_decref(wait_both(addr, group));

    /* One text: the same group read alike in east and west, down at 0. */
    text = get_body(addr, "/metrics", 200);
    check_text(text);
    assert_true(scalar(text, "ballast_lag_up", "east") == 1);
    assert_true(scalar(text, "ballast_lag_up", "west") == 1);
    assert_true(scalar(text, "ballast_lag_up", "down") == 0);
    assert_true(scalar(text, "ballast_lag_groups", "down") == 0);
    assert_true(lag_of(text, "east", group, topic, 0) == 4);
    assert_true(lag_of(text, "west", group, topic, 0) == 4);
    assert_true(lag_of(text, "east", group, topic, 1) == 3);
    assert_true(lag_of(text, "west", group, topic, 1) == 3);
    east_evals = scalar(text, "ballast_lag_evaluations_total", "east");
    free(text);

    /* The others go on while down does not answer. */
    for (int64_t deadline = bt_now_ms() + 30000;;) {
        text = get_body(addr, "/metrics", 200);
        if (scalar(text, "ballast_lag_evaluations_total", "east") >= east_evals + 2) {
            assert_true(scalar(text, "ballast_lag_up", "down") == 0);
            assert_true(value_of(text, "ballast_lag_errors_total{cluster=\"down\","
                                       "kind=\"unreachable\"} ") >= 1);
            free(text);
            break;
        }
        free(text);
        if (bt_now_ms() > deadline)
            fail_msg("east was not evaluated on while down was unreachable");
        usleep(100 * 1000);
    }

    /* The JSON API. */
    doc = wait_both(addr, group);
    assert_int_equal(json_array_size(json_object_get(doc, "clusters")), 3);
    {
        size_t i;
        json_array_foreach(json_object_get(doc, "clusters"), i, h)
            assert_true(json_is_true(json_object_get(h, "up")) ==
                        !!strcmp(json_string_value(json_object_get(h, "cluster")), "down"));
    }
    json_decref(doc);
    snprintf(path, sizeof(path), "/groups/west/%s", group);
    doc = json_loads(text = get_body(addr, path, 200), 0, NULL);
    free(text);
    assert_int_equal(json_array_size(json_object_get(doc, "partitions")), 2);
    assert_string_equal(json_string_value(json_object_get(doc, "cluster")), "west");
    json_decref(doc);
    snprintf(path, sizeof(path), "/groups/nowhere/%s", group);
    free(get_body(addr, path, 404));

    /* The page: the rows of /groups, in its order; west's partitions. */
    snprintf(url, sizeof(url), "http://%s/#group=west/%s", addr, group);
    dom = bt_chromium_dom(url, 2000);
    page_rows(dom, shown, sizeof(shown));
    doc = json_loads(text = get_body(addr, "/groups", 200), 0, NULL);
    free(text);
    doc_rows(doc, listed, sizeof(listed));
    json_decref(doc);
    if (strcmp(shown, listed))
        fail_msg("the page lists\n%s/groups lists\n%s", shown, listed);
    if (!strstr(dom, "class=\"multi\"") || !strstr(strstr(dom, "<tbody id=\"parts\""), topic))
        fail_msg("the page does not show west's partitions of %s; DOM:\n%s", group, dom);
    free(dom);

    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    log = bt_read_file(err_path);
    {
        const char *first = strstr(log, "cluster down: ");
        if (!first || strstr(first + 1, "cluster down: ") || strstr(log, "cluster east") ||
            strstr(log, "cluster west"))
            fail_msg("expected one line about down, none about east or west:\n%s", log);
    }
    free(log);

    /* One evaluation: the others printed, the unreachable one the exit code. */
    {
        bt_captured_t c = bt_run_captured(ARGV("lag", "--config", conf, "--all-groups",
                                               "--include", include, "--json", "--timeout", "1"),
                                          60000);
        char east[300], west[300];
        snprintf(east, sizeof(east), "\"cluster\":\"east\",\"group\":\"%s\"", group);
        snprintf(west, sizeof(west), "\"cluster\":\"west\",\"group\":\"%s\"", group);
        if (c.rc != 69 || !strstr(c.out, east) || !strstr(c.out, west))
            fail_msg("exit %d (expected 69) with east's and west's lines; stdout:\n%s", c.rc,
                     c.out);
        bt_assert_one_line(c.err, "cluster down: ");
        bt_captured_free(&c);
    }
}

/* Runs @p argv with @p conf_text in @p conf. */
static void expect_rc(const char *conf, const char *conf_text, const char *const *argv,
                      int want, const char *fragment)
{
    bt_captured_t c;

    bt_write_file(conf, "%s", conf_text);
    c = bt_run_captured(argv, 60000);
    if (c.rc != want)
        fail_msg("exit %d, expected %d; stderr: %s", c.rc, want, c.err);
    bt_assert_one_line(c.err, fragment);
    bt_captured_free(&c);
}

static void test_bad_sections(void **state)
{
    char conf[512];

    (void)state;
    snprintf(conf, sizeof(conf), "%s/lag-bad.conf", bt_tmpdir());
    expect_rc(conf, "lag.cluster.a.client.id = x\n", ARGV("lag", "--config", conf, "--all-groups"),
              78, "lag.cluster.a.bootstrap.servers is missing");
    expect_rc(conf, "lag.cluster.bootstrap = x\n", ARGV("lag", "--config", conf, "--all-groups"),
              78, "lag.cluster.NAME.PROPERTY");
    expect_rc(conf, "lag.cluster.a.bootstrap.servers = x\n",
              ARGV("lag", "--config", conf, "-g", "g"), 64, "--all-groups");
    expect_rc(conf, "lag.cluster.a.bootstrap.servers = x\n",
              ARGV("lag", "--config", conf, "--all-groups", "--cluster-name", "n"), 64,
              "--cluster-name");
}

/* ---- a second, real cluster -------------------------------------------------- */

/* The second broker's scripts/testenv settings ("VAR=value ..."), kept for
 * the teardown, which stops it whether the test passed or not. */
static char second_env[512], second_dir[64];

/* True when nothing listens on, or holds, 127.0.0.1:@p port. */
static bool port_free(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

/* A base port with it and the five after it free, below the ephemeral
 * range (scripts/testenv says why) and above the test environments' own. */
static int free_ports(void)
{
    for (int tries = 0; tries < 200; tries++) {
        int base = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)tries * 104729u +
                                  (unsigned)bt_now_ms()) % 12000u);
        bool ok = true;
        for (int i = 0; i < 6 && ok; i++)
            ok = port_free(base + i);
        if (ok)
            return base;
    }
    fail_msg("no six free ports in a row between 20000 and 32000");
    return -1;
}

static void start_second_cluster(char *bootstrap)
{
    char cmd[1024], line[512], dir[] = "/tmp/ballast-second-XXXXXX";
    int base = free_ports();
    FILE *fp;

    /* Not under the test's own directory: PostgreSQL runs as its own user,
     * which must reach its data directory. */
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    snprintf(second_dir, sizeof(second_dir), "%s", dir);
    snprintf(second_env, sizeof(second_env),
             "BALLAST_TESTENV_DIR='%s/env' BALLAST_TESTENV_KAFKA_PORT=%d "
             "BALLAST_TESTENV_CONTROLLER_PORT=%d BALLAST_TESTENV_SSL_PORT=%d "
             "BALLAST_TESTENV_SASL_PORT=%d BALLAST_TESTENV_MTLS_PORT=%d "
             "BALLAST_TESTENV_PG_PORT=%d",
             dir, base, base + 1, base + 2, base + 3, base + 4, base + 5);
    snprintf(cmd, sizeof(cmd), "%s '%s/scripts/testenv' up", second_env, BALLAST_SRC_DIR);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    bootstrap[0] = '\0';
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "export BALLAST_TEST_BOOTSTRAP=%255s", bootstrap) == 1)
            continue;
    if (pclose(fp) != 0 || !bootstrap[0])
        fail_msg("a second broker (scripts/testenv up with %s) did not start", second_env);
}

static int stop_second_cluster(void **state)
{
    char cmd[1024];

    (void)state;
    if (second_env[0]) {
        snprintf(cmd, sizeof(cmd), "%s '%s/scripts/testenv' down >/dev/null 2>&1 && rm -rf '%s'",
                 second_env, BALLAST_SRC_DIR, second_dir);
        if (system(cmd) != 0)
            print_message("the second broker's scripts/testenv down failed\n");
        second_env[0] = '\0';
    }
    return 0;
}

/* The JSON line of @p cluster, @p group, @p topic in `ballast lag --json`
 * output, or NULL. */
static const char *row_of(const char *out, const char *cluster, const char *group,
                          const char *topic)
{
    char needle[512];

    snprintf(needle, sizeof(needle), "\"cluster\":\"%s\",\"group\":\"%s\",\"topic\":\"%s\"",
             cluster, group, topic);
    return out ? strstr(out, needle) : NULL;
}

static long row_lag(const char *out, const char *cluster, const char *group, const char *topic)
{
    const char *row = row_of(out, cluster, group, topic), *lag = NULL;
    const char *end = row ? strchr(row, '\n') : NULL;

    if (!row || !(lag = strstr(row, "\"lag\":")) || (end && lag > end))
        fail_msg("no row for %s/%s/%s in:\n%s", cluster, group, topic, out ? out : "");
    return strtol(lag + 6, NULL, 10);
}

/* Two real clusters, one process: the same topic and group name in both
 * with different lag, and a group in each that the other does not have.
 * Each cluster's rows come from that cluster alone. */
static void test_two_real_clusters(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *prefix = bt_unique("lagtwo");
    char second[256], topic[128], both[160], only1[160], only2[160], include[200], conf[512];
    bt_captured_t run;

    start_second_cluster(second);
    snprintf(topic, sizeof(topic), "%s-t", prefix);
    snprintf(both, sizeof(both), "%s-both", prefix);
    snprintf(only1, sizeof(only1), "%s-only-one", prefix);
    snprintf(only2, sizeof(only2), "%s-only-two", prefix);
    snprintf(include, sizeof(include), "^%s-", prefix);
    snprintf(conf, sizeof(conf), "%s/lag-two.conf", bt_tmpdir());
    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_create_topic(second, topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, 10, 0);
    bt_produce_seq(second, topic, 1, 0, 4, 0);
    bt_commit(bt_bootstrap(), both, topic, (int64_t[]){2}, 1);
    bt_commit(second, both, topic, (int64_t[]){1}, 1);
    bt_commit(bt_bootstrap(), only1, topic, (int64_t[]){5}, 1);
    bt_commit(second, only2, topic, (int64_t[]){4}, 1);
    bt_write_file(conf,
                  "lag.cluster.one.bootstrap.servers = %s\n"
                  "lag.cluster.two.bootstrap.servers = %s\n",
                  bt_bootstrap(), second);
    run = bt_run_captured(ARGV("lag", "--config", conf, "--all-groups", "--include", include,
                               "--json"),
                          60000);
    if (run.rc != 0)
        fail_msg("ballast lag on two clusters exited %d: %s", run.rc, run.err ? run.err : "");
    assert_int_equal(row_lag(run.out, "one", both, topic), 8);
    assert_int_equal(row_lag(run.out, "two", both, topic), 3);
    assert_int_equal(row_lag(run.out, "one", only1, topic), 5);
    assert_int_equal(row_lag(run.out, "two", only2, topic), 0);
    if (row_of(run.out, "two", only1, topic) || row_of(run.out, "one", only2, topic))
        fail_msg("a group reported under a cluster that does not have it:\n%s", run.out);
    bt_captured_free(&run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_sections),
        cmocka_unit_test(test_three_clusters),
        cmocka_unit_test_teardown(test_two_real_clusters, stop_second_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
