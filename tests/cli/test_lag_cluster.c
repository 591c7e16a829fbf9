/*
 * test_lag_cluster.c - `ballast lag --all-groups` against the real broker:
 * it finds every group the filters let through, classic ones and one on
 * the consumer protocol (KIP-848) with a live member; its committed
 * offsets, log-end offsets and lag agree exactly with Kafka's own
 * kafka-consumer-groups tool (ConsumerGroupCommand --describe) on the same
 * groups, after a producer wrote to their topics during the evaluations; a
 * group created later appears and a deleted one disappears; --include,
 * --exclude and --include-topic filter; every metric carries the cluster
 * label; the JSON API lists groups and their partitions; the page at /,
 * in headless Chromium, lists the groups /groups lists, in its order, and
 * a group's partitions from its link; an unreachable
 * cluster exits 69 with one line; usage errors exit 64. While it runs: a
 * broker that stops answering (restarted) turns ballast_lag_up to 0 with no
 * group sample, logged once, and back to 1 when it answers, the loop going
 * on; groups deleted between evaluations disappear, each counted and logged
 * at most once, and nothing stops.
 */
#include "support.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define CLUSTER "test-cluster"

/* ---- metrics and the JSON API ------------------------------------------- */

/* The value of NAME{cluster="test-cluster"LABELS} in @p text, or -1 when
 * there is no such sample. @p labels: ",consumergroup=\"g\"..." or "". */
static double sample(const char *text, const char *name, const char *labels)
{
    char prefix[1024];
    const char *at;

    snprintf(prefix, sizeof(prefix), "\n%s{cluster=\"" CLUSTER "\"%s} ", name, labels);
    at = strstr(text, prefix);
    return at ? strtod(at + strlen(prefix), NULL) : -1;
}

static double part_sample(const char *text, const char *name, const char *group,
                          const char *topic, int partition)
{
    char labels[512];

    if (group)
        snprintf(labels, sizeof(labels), ",consumergroup=\"%s\",topic=\"%s\",partition=\"%d\"",
                 group, topic, partition);
    else
        snprintf(labels, sizeof(labels), ",topic=\"%s\",partition=\"%d\"", topic, partition);
    return sample(text, name, labels);
}

static char *get_metrics(const char *addr)
{
    bt_http_reply_t r = bt_http_get(addr, "/metrics");
    char *body;

    if (r.status != 200)
        fail_msg("/metrics answered %d: %s", r.status, r.body ? r.body : "");
    body = r.body;
    r.body = NULL;
    bt_http_reply_free(&r);
    return body;
}

static json_t *get_json(const char *addr, const char *path, int want_status)
{
    bt_http_reply_t r = bt_http_get(addr, path);
    json_error_t jerr;
    json_t *doc;

    if (r.status != want_status)
        fail_msg("%s answered %d, expected %d: %s", path, r.status, want_status,
                 r.body ? r.body : "");
    if (!(doc = json_loads(r.body, 0, &jerr)))
        fail_msg("%s is not JSON (%s): %s", path, jerr.text, r.body);
    bt_http_reply_free(&r);
    return doc;
}

/* The entry of @p group in /groups, or NULL. */
static json_t *listed(json_t *doc, const char *group)
{
    json_t *g;
    size_t i;

    json_array_foreach(json_object_get(doc, "groups"), i, g)
        if (!strcmp(json_string_value(json_object_get(g, "group")), group))
            return g;
    return NULL;
}

static double evaluations(const char *addr)
{
    char *text = get_metrics(addr);
    double v = sample(text, "ballast_lag_evaluations_total", "");

    free(text);
    return v;
}

/* Waits until an evaluation that started after this call has ended. */
static void wait_fresh_evaluation(const char *addr)
{
    double start = evaluations(addr);
    int64_t deadline = bt_now_ms() + 60000;

    while (evaluations(addr) < start + 2) {
        if (bt_now_ms() > deadline)
            fail_msg("no new evaluation within 60 s");
        usleep(100 * 1000);
    }
}

/* Waits until /groups does (@p present) or does not list @p group. */
static void wait_listed(const char *addr, const char *group, bool present)
{
    int64_t deadline = bt_now_ms() + 60000;

    for (;;) {
        bt_http_reply_t r = bt_http_get(addr, "/groups");
        json_t *doc = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
        bool seen = doc && listed(doc, group);
        json_decref(doc);
        bt_http_reply_free(&r);
        if (seen == present)
            return;
        if (bt_now_ms() > deadline)
            fail_msg("group %s %s /groups within 60 s", group,
                     present ? "never appeared in" : "never left");
        usleep(200 * 1000);
    }
}

/* ---- the page ------------------------------------------------------------ */

/* The groups' names in the order of @p doc (/groups), one a line. */
static void doc_order(json_t *doc, char *out, size_t size)
{
    json_t *g;
    size_t i, len = 0;

    out[0] = '\0';
    json_array_foreach(json_object_get(doc, "groups"), i, g)
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s\n",
                                json_string_value(json_object_get(g, "group")));
}

/* The groups' names in the order the page's rows show them, one a line. */
static void page_order(const char *dom, char *out, size_t size)
{
    const char *at = strstr(dom, "<tbody id=\"groups\""), *end;
    size_t len = 0;

    out[0] = '\0';
    if (!at || !(end = strstr(at, "</tbody>")))
        fail_msg("the page has no table of groups; DOM:\n%s", dom);
    while ((at = strstr(at, "data-group=\"")) && at < end) {
        const char *q = strchr(at += 12, '"');
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%.*s\n",
                                (int)(q - at), at);
    }
}

/* The page at /, opened on @p group's link: its rows are the groups of
 * /groups (fetched just before and just after), in the same order, and it
 * shows the group's partitions, held by @p client_id. */
static void check_page(const char *addr, const char *group, const char *client_id)
{
    char url[256], before[4096], after[4096], shown[4096];
    json_t *doc = get_json(addr, "/groups", 200);
    const char *parts;
    char *dom;

    doc_order(doc, before, sizeof(before));
    json_decref(doc);
    snprintf(url, sizeof(url), "http://%s/#group=%s", addr, group);
    dom = bt_chromium_dom(url, 2000);
    doc = get_json(addr, "/groups", 200);
    doc_order(doc, after, sizeof(after));
    json_decref(doc);
    page_order(dom, shown, sizeof(shown));
    if (!*shown || (strcmp(shown, before) && strcmp(shown, after)))
        fail_msg("the page lists\n%s/groups listed\n%sbefore and\n%safter", shown, before,
                 after);
    if (!(parts = strstr(dom, "<tbody id=\"parts\"")) || !strstr(parts, client_id))
        fail_msg("the page does not show the partitions of %s; DOM:\n%s", group, dom);
    free(dom);
}

/* ---- groups -------------------------------------------------------------- */

/* A member of a consumer-protocol (KIP-848) group, subscribed to @p topic,
 * that commits @p offsets once it holds all @p n partitions. */
static rd_kafka_t *start_kip848_member(const char *group, const char *topic, int n,
                                       const int64_t *offsets)
{
    rd_kafka_t *rk = bt_member_start(group, topic, "consumer", "lag-cluster-member", n);
    rd_kafka_topic_partition_list_t *assigned;
    rd_kafka_resp_err_t err;

    assigned = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(assigned, topic, p)->offset = offsets[p];
    if ((err = rd_kafka_commit(rk, assigned, 0)))
        fail_msg("commit of the consumer-protocol member: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(assigned);
    return rk;
}

static void delete_group(const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_DeleteGroup_t *del = rd_kafka_DeleteGroup_new(group);
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    const rd_kafka_group_result_t **res;
    size_t n = 0;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteGroups(rk, &del, 1, NULL, q);
    rd_kafka_DeleteGroup_destroy(del);
    assert_non_null(ev = rd_kafka_queue_poll(q, 30000));
    if (rd_kafka_event_error(ev))
        fail_msg("DeleteGroups: %s", rd_kafka_event_error_string(ev));
    res = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &n);
    assert_int_equal(n, 1);
    if (rd_kafka_group_result_error(res[0]))
        fail_msg("DeleteGroups %s: %s", group,
                 rd_kafka_error_string(rd_kafka_group_result_error(res[0])));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* A producer writing to a topic until told to stop. */
typedef struct traffic {
    const char *topic;
    int partitions;
    volatile int stop;
    int sent;
} traffic_t;

static void *traffic_main(void *arg)
{
    traffic_t *t = arg;

    while (!t->stop) {
        bt_produce_seq(bt_bootstrap(), t->topic, t->partitions, t->sent, 20, 0);
        t->sent += 20;
        usleep(100 * 1000);
    }
    return NULL;
}

/* ---- Kafka's own tool ---------------------------------------------------- */

/* One row of `kafka-consumer-groups --describe`. */
typedef struct describe_row {
    char group[128], topic[128];
    int partition;
    long long current, log_end, lag; /* -1: "-" */
} describe_row_t;

static long long dash_or_number(const char *s)
{
    return strcmp(s, "-") ? atoll(s) : -1;
}

/* Runs Kafka's ConsumerGroupCommand --describe on @p groups (n of them)
 * and parses its GROUP, TOPIC, PARTITION, CURRENT-OFFSET, LOG-END-OFFSET
 * and LAG columns. */
static describe_row_t *kafka_describe(const char *const *groups, int n, size_t *countp)
{
    char args[2048] = "", *out = NULL, *err = NULL, *save = NULL;
    describe_row_t *rows = calloc(256, sizeof(*rows));
    size_t count = 0;
    int rc;

    for (int i = 0; i < n; i++) {
        strcat(args, " --group ");
        strcat(args, groups[i]);
    }
    rc = bt_sh(&out, &err,
               "java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp \"$(%s/scripts/testenv "
               "tools-classpath)\" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
               "--bootstrap-server %s --describe%s",
               BALLAST_SRC_DIR, bt_bootstrap(), args);
    if (rc)
        fail_msg("kafka-consumer-groups exited %d: %s%s", rc, out, err);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        describe_row_t r;
        char cur[32], end[32], lag[32];
        if (sscanf(line, "%127s %127s %d %31s %31s %31s", r.group, r.topic, &r.partition, cur,
                   end, lag) != 6)
            continue; /* headers, blank lines, "has no active members" */
        r.current = dash_or_number(cur);
        r.log_end = dash_or_number(end);
        r.lag = dash_or_number(lag);
        assert_true(count < 256);
        rows[count++] = r;
    }
    free(out);
    free(err);
    *countp = count;
    return rows;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_all_groups(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *prefix = bt_unique("lagall");
    char t1[128], t2[128], ga[160], gb[160], gc[160], gk[160], gd[160], include[200];
    char err_path[512], addr[64];
    const int64_t a_off[4] = {10, 4, 0, 7}, b_off[2] = {3, 5}, c_off1[4] = {1, 1, -1, 1},
                  c_off2[2] = {20, 0}, k_off[2] = {2, 4}, d_off[2] = {1, 1};
    traffic_t traffic;
    pthread_t producer;
    rd_kafka_t *member;
    pid_t pid;

    snprintf(t1, sizeof(t1), "%s-t1", prefix);
    snprintf(t2, sizeof(t2), "%s-t2", prefix);
    snprintf(ga, sizeof(ga), "%s-a", prefix);
    snprintf(gb, sizeof(gb), "%s-b", prefix);
    snprintf(gc, sizeof(gc), "%s-c", prefix);
    snprintf(gk, sizeof(gk), "%s-k", prefix);
    snprintf(gd, sizeof(gd), "%s-d", prefix);
    snprintf(include, sizeof(include), "^%s-", prefix);
    snprintf(err_path, sizeof(err_path), "%s/lag-cluster.err", bt_tmpdir());
    bt_create_topic(bt_bootstrap(), t1, 4);
    bt_create_topic(bt_bootstrap(), t2, 2);
    bt_produce_seq(bt_bootstrap(), t1, 4, 0, 80, 0); /* 20 per partition */
    bt_produce_seq(bt_bootstrap(), t2, 2, 0, 40, 0);
    bt_commit(bt_bootstrap(), ga, t1, a_off, 4);
    bt_commit(bt_bootstrap(), gb, t2, b_off, 2);
    bt_commit(bt_bootstrap(), gc, t1, c_off1, 4);
    bt_commit(bt_bootstrap(), gc, t2, c_off2, 2);
    member = start_kip848_member(gk, t2, 2, k_off);

    pid = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                include, "--cluster-name", CLUSTER, "--listen",
                                "127.0.0.1:0", "--watch", "1", "--window", "1000"),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));
    traffic.topic = t1;
    traffic.partitions = 4;
    traffic.stop = 0;
    traffic.sent = 80;
    assert_int_equal(pthread_create(&producer, NULL, traffic_main, &traffic), 0);
    wait_listed(addr, ga, true);
    wait_listed(addr, gb, true);
    wait_listed(addr, gc, true);
    wait_listed(addr, gk, true);
    wait_fresh_evaluation(addr); /* evaluations made while the producer writes */
    traffic.stop = 1;
    pthread_join(producer, NULL);
    assert_true(traffic.sent > 80);

    /* The agreement: after the producer stopped, an evaluation that began
     * later and Kafka's own tool see the same offsets. */
    wait_fresh_evaluation(addr);
    {
        const char *const groups[] = {ga, gb, gc, gk};
        size_t nrows, compared = 0;
        describe_row_t *rows = kafka_describe(groups, 4, &nrows);
        char *text = get_metrics(addr);
        for (size_t i = 0; i < nrows; i++) {
            const describe_row_t *r = &rows[i];
            double cur = part_sample(text, "kafka_consumergroup_current_offset", r->group,
                                     r->topic, r->partition);
            double lag = part_sample(text, "kafka_consumergroup_lag", r->group, r->topic,
                                     r->partition);
            double end = part_sample(text, "kafka_topic_partition_current_offset", NULL,
                                     r->topic, r->partition);
            if (r->current < 0)
                continue; /* nothing committed: kafka-consumer-groups shows no lag */
            if (cur != (double)r->current || lag != (double)r->lag ||
                end != (double)r->log_end)
                fail_msg("%s %s[%d]: kafka-consumer-groups says current %lld, log end %lld, "
                         "lag %lld; ballast lag says %.0f, %.0f, %.0f; /metrics:\n%s",
                         r->group, r->topic, r->partition, r->current, r->log_end, r->lag,
                         cur, end, lag, text);
            compared++;
        }
        /* Every committed partition of the four groups: 4 + 2 + 5 + 2. */
        assert_int_equal(compared, 13);
        /* And nothing more: each committed row of ours is one of theirs. */
        for (const char *at = text; (at = strstr(at, "\nkafka_consumergroup_current_offset{"));
             at++) {
            bool found = false;
            for (size_t i = 0; i < nrows && !found; i++) {
                char labels[512];
                snprintf(labels, sizeof(labels),
                         "consumergroup=\"%s\",topic=\"%s\",partition=\"%d\"}", rows[i].group,
                         rows[i].topic, rows[i].partition);
                found = rows[i].current >= 0 && !strncmp(strchr(at, ',') + 1, labels,
                                                          strlen(labels));
            }
            if (!found)
                fail_msg("ballast reports a committed offset kafka-consumer-groups does not: "
                         "%.200s", at + 1);
        }
        /* Sums, members, and the cluster label on every sample. */
        {
            char labels[512];
            snprintf(labels, sizeof(labels), ",consumergroup=\"%s\",topic=\"%s\"", ga, t1);
            assert_true(sample(text, "kafka_consumergroup_lag_sum", labels) ==
                        part_sample(text, "kafka_consumergroup_lag", ga, t1, 0) +
                            part_sample(text, "kafka_consumergroup_lag", ga, t1, 1) +
                            part_sample(text, "kafka_consumergroup_lag", ga, t1, 2) +
                            part_sample(text, "kafka_consumergroup_lag", ga, t1, 3));
            snprintf(labels, sizeof(labels), ",consumergroup=\"%s\"", gk);
            assert_true(sample(text, "kafka_consumergroup_members", labels) == 1);
            snprintf(labels, sizeof(labels), ",consumergroup=\"%s\"", ga);
            assert_true(sample(text, "kafka_consumergroup_members", labels) == 0);
            assert_true(sample(text, "ballast_lag_up", "") == 1);
            assert_true(sample(text, "ballast_lag_groups", "") == 4);
            /* Caught up on t2 partition 0 of gc: no lag, no age. */
            assert_true(part_sample(text, "kafka_consumergroup_lag_seconds", gc, t2, 0) == 0);
            assert_true(part_sample(text, "kafka_consumergroup_lag_seconds", ga, t1, 0) > 0);
            assert_true(part_sample(text, "ballast_lag_partition_status", ga, t1, 0) >= 0);
        }
        for (const char *line = text; line && *line; line = strchr(line, '\n')) {
            if (*line == '\n')
                line++;
            if (*line && *line != '#' && !strstr(line, "{cluster=\"" CLUSTER "\""))
                fail_msg("a sample without the cluster label: %.200s", line);
        }
        free(text);
        free(rows);
    }

    /* The JSON API: the groups, and one group's partitions with its member. */
    {
        json_t *doc = get_json(addr, "/groups", 200), *k, *parts, *p;
        char path[256];
        size_t i;
        assert_string_equal(json_string_value(json_object_get(doc, "cluster")), CLUSTER);
        assert_int_equal(json_array_size(json_object_get(doc, "groups")), 4);
        assert_non_null(k = listed(doc, gk));
        assert_string_equal(json_string_value(json_object_get(k, "protocol")), "consumer");
        assert_int_equal(json_integer_value(json_object_get(k, "members")), 1);
        assert_int_equal(json_integer_value(json_object_get(k, "total_lag")), (20 - 2) + (20 - 4));
        assert_string_equal(json_string_value(json_object_get(listed(doc, gb), "protocol")),
                            "classic");
        json_decref(doc);
        snprintf(path, sizeof(path), "/groups/%s", gk);
        doc = get_json(addr, path, 200);
        parts = json_object_get(doc, "partitions");
        assert_int_equal(json_array_size(parts), 2);
        json_array_foreach(parts, i, p) {
            assert_string_equal(json_string_value(json_object_get(p, "topic")), t2);
            assert_int_equal(json_integer_value(json_object_get(p, "committed")),
                             k_off[json_integer_value(json_object_get(p, "partition"))]);
            assert_string_equal(json_string_value(json_object_get(p, "client_id")),
                                "lag-cluster-member");
            /* A member holds it: lag at the first look is no warning. */
            assert_string_equal(json_string_value(json_object_get(p, "status")), "OK");
        }
        json_decref(doc);
        json_decref(get_json(addr, "/groups/no-such-group", 404));
    }
    check_page(addr, gk, "lag-cluster-member");

    /* A group made later appears; a deleted one disappears. */
    bt_commit(bt_bootstrap(), gd, t2, d_off, 2);
    wait_listed(addr, gd, true);
    delete_group(gb);
    wait_listed(addr, gb, false);
    {
        char *text = get_metrics(addr), needle[200];
        snprintf(needle, sizeof(needle), "consumergroup=\"%s\"", gb);
        assert_null(strstr(text, needle));
        free(text);
    }
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    /* Nothing went wrong that it had to log (a group deleted while an
     * evaluation read it would be logged, rightly). */
    {
        char *log = bt_read_file(err_path);
        if (log && (strstr(log, "cannot be read") || strstr(log, "try again")))
            fail_msg("ballast lag logged trouble: %s", log);
        free(log);
    }

    /* The filters, on one evaluation printed as JSON lines. */
    {
        char exclude[200];
        bt_captured_t c;
        snprintf(exclude, sizeof(exclude), "-(c|d)$");
        c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                 include, "--exclude", exclude, "--json"),
                            60000);
        if (c.rc)
            fail_msg("exit %d: %s", c.rc, c.err);
        assert_non_null(strstr(c.out, ga));
        assert_non_null(strstr(c.out, gk));
        assert_null(strstr(c.out, gc));
        assert_null(strstr(c.out, gd));
        bt_captured_free(&c);
        c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                 include, "--include-topic", "-t2$", "--json"),
                            60000);
        if (c.rc)
            fail_msg("exit %d: %s", c.rc, c.err);
        assert_null(strstr(c.out, t1));
        assert_non_null(strstr(c.out, t2));
        assert_null(strstr(c.out, ga)); /* it reads t1 only */
        assert_non_null(strstr(c.out, gc));
        bt_captured_free(&c);
    }
    rd_kafka_consumer_close(member);
    rd_kafka_destroy(member);
}

/* ---- while it runs ------------------------------------------------------- */

/* The number of times @p needle occurs in @p text. */
static int occurrences(const char *text, const char *needle)
{
    int n = 0;

    for (const char *at = text; at && (at = strstr(at, needle)); at += strlen(needle))
        n++;
    return n;
}

/* Whether the lines of @p log about the cluster alternate between going
 * down and answering again, starting with down and ending answered. */
static bool logged_by_outage(const char *log)
{
    bool down = false;

    for (const char *line = log; line && *line; line = strchr(line, '\n')) {
        const char *end;
        line += *line == '\n';
        end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if (memmem(line, (size_t)(end - line), "will try again", 14)) {
            if (down)
                return false;
            down = true;
        } else if (memmem(line, (size_t)(end - line), "answers again", 13)) {
            if (!down)
                return false;
            down = false;
        }
    }
    return !down;
}

static void *restart_broker(void *done)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "'%s/scripts/testenv' restart-kafka >/dev/null", BALLAST_SRC_DIR);
    *(int *)done = system(cmd) == 0 ? 1 : -1;
    return NULL;
}

/* Starts `ballast lag --all-groups` on the groups named PREFIX-*, evaluating
 * every @p watch seconds; its address in @p addr. */
static pid_t start_watch(const char *prefix, const char *watch, const char *err_path,
                         char *addr, size_t size)
{
    char include[200];
    pid_t pid;

    snprintf(include, sizeof(include), "^%s-", prefix);
    pid = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                include, "--cluster-name", CLUSTER, "--listen", "127.0.0.1:0",
                                "--watch", watch, "--timeout", "1"),
                           err_path);
    bt_wait_listening(err_path, pid, addr, size);
    return pid;
}

static void test_broker_unreachable_mid_run(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *prefix = bt_unique("lagdown");
    char topic[128], group[160], err_path[512], addr[64], *log;
    const int64_t off[2] = {1, 2};
    pthread_t restarter;
    volatile int done = 0;
    bool seen_down = false;
    int64_t deadline;
    pid_t pid;

    snprintf(topic, sizeof(topic), "%s-t", prefix);
    snprintf(group, sizeof(group), "%s-g", prefix);
    snprintf(err_path, sizeof(err_path), "%s/lag-down.err", bt_tmpdir());
    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 10, 0);
    bt_commit(bt_bootstrap(), group, topic, off, 2);
    pid = start_watch(prefix, "0.2", err_path, addr, sizeof(addr));
    wait_listed(addr, group, true);

    /* While the broker restarts, a scrape sees the cluster down and no
     * group's figures. */
    assert_int_equal(pthread_create(&restarter, NULL, restart_broker, (void *)&done), 0);
    deadline = bt_now_ms() + 120000;
    while (!seen_down && !done && bt_now_ms() < deadline) {
        char *text = get_metrics(addr);
        if (sample(text, "ballast_lag_up", "") == 0) {
            seen_down = true;
            assert_null(strstr(text, "\nkafka_consumergroup_lag{"));
            assert_true(sample(text, "ballast_lag_groups", "") == 0);
        }
        free(text);
        usleep(50 * 1000);
    }
    pthread_join(restarter, NULL);
    assert_int_equal(done, 1);
    if (!seen_down)
        fail_msg("ballast_lag_up never read 0 while the broker restarted");

    /* It answers again: up, the group back, the loop still going. */
    wait_listed(addr, group, true);
    wait_fresh_evaluation(addr);
    {
        char *text = get_metrics(addr);
        assert_true(sample(text, "ballast_lag_up", "") == 1);
        assert_true(sample(text, "ballast_lag_errors_total", ",kind=\"unreachable\"") >= 1);
        free(text);
    }
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    log = bt_read_file(err_path);
    /* A line when it went down, one when it came back: alternating (a
     * broker just started may refuse a listing once more while its
     * coordinator loads), never one per failed evaluation. */
    if (!occurrences(log, "; will try again") || !logged_by_outage(log))
        fail_msg("expected a line when down and one when back, alternating; stderr:\n%s", log);
    free(log);
}

#define DELETED 6

static void test_groups_deleted_mid_run(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *prefix = bt_unique("lagdel");
    char topic[128], groups[DELETED + 1][160], err_path[512], addr[64], *log, *text;
    const int64_t off[4] = {1, 2, 3, 4};
    int logged = 0;
    pid_t pid;

    snprintf(topic, sizeof(topic), "%s-t", prefix);
    snprintf(err_path, sizeof(err_path), "%s/lag-deleted.err", bt_tmpdir());
    bt_create_topic(bt_bootstrap(), topic, 4);
    bt_produce_seq(bt_bootstrap(), topic, 4, 0, 40, 0);
    for (int i = 0; i <= DELETED; i++) {
        snprintf(groups[i], sizeof(groups[i]), "%s-g%d", prefix, i);
        bt_commit(bt_bootstrap(), groups[i], topic, off, 4);
    }
    /* Evaluations back to back, so that deletions fall between a listing
     * and a reading as well as between evaluations. */
    pid = start_watch(prefix, "0.1", err_path, addr, sizeof(addr));
    for (int i = 0; i <= DELETED; i++)
        wait_listed(addr, groups[i], true);
    for (int i = 0; i < DELETED; i++)
        delete_group(groups[i]);
    for (int i = 0; i < DELETED; i++)
        wait_listed(addr, groups[i], false);
    wait_fresh_evaluation(addr);

    /* The others are still watched; the deleted ones are nowhere. */
    text = get_metrics(addr);
    assert_true(sample(text, "ballast_lag_up", "") == 1);
    assert_true(sample(text, "ballast_lag_groups", "") == 1);
    for (int i = 0; i < DELETED; i++) {
        char needle[200];
        snprintf(needle, sizeof(needle), "consumergroup=\"%s\"", groups[i]);
        assert_null(strstr(text, needle));
    }
    assert_true(part_sample(text, "kafka_consumergroup_lag", groups[DELETED], topic, 0) == 9);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);

    /* Each caught between listing and reading is logged once and counted
     * once; none is taken for a group whose offsets cannot be read. */
    log = bt_read_file(err_path);
    for (int i = 0; i < DELETED; i++) {
        char needle[200];
        int n;
        snprintf(needle, sizeof(needle), "group %s was deleted", groups[i]);
        if ((n = occurrences(log, needle)) > 1)
            fail_msg("%s logged %d times; stderr:\n%s", groups[i], n, log);
        logged += n;
    }
    if (sample(text, "ballast_lag_errors_total", ",kind=\"group_vanished\"") != logged ||
        strstr(log, "cannot be read") || strstr(log, "will try again"))
        fail_msg("group_vanished counts %.0f, %d logged; stderr:\n%s",
                 sample(text, "ballast_lag_errors_total", ",kind=\"group_vanished\""), logged,
                 log);
    print_message("%d of %d deletions fell inside an evaluation\n", logged, DELETED);
    free(text);
    free(log);
}

static void expect_rc(const char *const *argv, int want, const char *fragment)
{
    bt_captured_t c = bt_run_captured(argv, 60000);

    if (c.rc != want)
        fail_msg("exit %d, expected %d; stderr: %s", c.rc, want, c.err);
    bt_assert_one_line(c.err, fragment);
    bt_captured_free(&c);
}

static void test_bad_input(void **state)
{
    (void)state;
    expect_rc(ARGV("lag", "-b", "127.0.0.1:1", "--all-groups", "--timeout", "1"), 69,
              "127.0.0.1:1");
    expect_rc(ARGV("lag", "-b", "x", "--all-groups", "-g", "g"), 64, "-g");
    expect_rc(ARGV("lag", "-b", "x", "--all-groups", "-t", "t"), 64, "--include-topic");
    expect_rc(ARGV("lag", "-b", "x", "--all-groups", "--include", "a("), 64, "--include");
    expect_rc(ARGV("lag", "-b", "x", "--all-groups", "--exclude-topic", "[z-a]"), 64,
              "--exclude-topic");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--include", "a"), 64, "--all-groups");
    expect_rc(ARGV("lag", "-b", "x", "--all-groups", "--on-change", "true"), 64,
              "--on-change");
    expect_rc(ARGV("lag", "--all-groups"), 64, "-b BOOTSTRAP");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_all_groups),
        cmocka_unit_test(test_broker_unreachable_mid_run),
        cmocka_unit_test(test_groups_deleted_mid_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
