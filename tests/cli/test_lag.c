/*
 * test_lag.c - `ballast lag` against the real broker: its --json agrees
 * exactly with the broker's committed offsets and watermarks; time lag is
 * 0 when caught up and null when nothing is committed; statuses follow the
 * rules over --watch evaluations (a dead consumer's frozen lag becomes STOP,
 * an idle caught-up partition stays OK) and --on-change runs its command
 * without a shell; a watcher started on a busy, healthy group reports no
 * WARN; the group's state, protocol and members, and who holds each
 * partition, as the broker describes them (for a consumer-protocol group
 * too, which DescribeGroups alone shows as Dead: tests/CMakeLists.txt runs
 * the suite again with BALLAST_TEST_GROUP_PROTOCOL=consumer); a group the
 * broker does not know is an error, a group whose members have committed
 * nothing yet is not; it never joins the group it watches; exit codes;
 * every option of --help is documented.
 */
#include "support.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* The JSON lines of one run, indexed by partition (the last line wins). */
static void parse_lines(const char *text, json_t **by_partition, int n)
{
    char *copy = strdup(text), *save = NULL;

    assert_non_null(copy);
    for (int i = 0; i < n; i++)
        by_partition[i] = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        json_int_t p;
        if (!o)
            fail_msg("not a JSON line: %s (%s)", line, jerr.text);
        p = json_integer_value(json_object_get(o, "partition"));
        assert_true(p >= 0 && p < n);
        json_decref(by_partition[p]);
        by_partition[p] = o;
    }
    free(copy);
}

/* Waits for evaluation @p n in a --json output file. */
static void wait_evaluation(const char *out_path, int n)
{
    char needle[64];
    int64_t deadline = bt_now_ms() + 60000;

    snprintf(needle, sizeof(needle), "\"evaluation\":%d,", n);
    for (;;) {
        char *out = bt_read_file(out_path);
        bool seen = out && strstr(out, needle);
        free(out);
        if (seen)
            return;
        if (bt_now_ms() > deadline)
            fail_msg("ballast lag --watch made fewer than %d evaluations", n);
        usleep(50 * 1000);
    }
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (memmem(line, len, needle, strlen(needle)))
            n++;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static void expect_rc(const char *const *argv, int want, const char *fragment)
{
    bt_captured_t c = bt_run_captured(argv, 60000);
    if (c.rc != want)
        fail_msg("exit %d, expected %d; stderr: %s", c.rc, want, c.err);
    if (fragment && !strstr(c.err, fragment))
        fail_msg("stderr does not mention \"%s\": %s", fragment, c.err);
    if (fragment && strchr(c.err, '\n') != c.err + strlen(c.err) - 1)
        fail_msg("expected one line on stderr: %s", c.err);
    bt_captured_free(&c);
}

static void test_json_agrees_with_broker(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-json"), *group = bt_unique("lag-json-g");
    int64_t want_committed[4] = {10, 4, 0, -1}, committed[4], hwm[4];
    json_t *rows[4];

    bt_create_topic(bt_bootstrap(), topic, 4);
    bt_produce_seq(bt_bootstrap(), topic, 4, 0, 40, 0); /* 10 per partition */
    bt_commit(bt_bootstrap(), group, topic, want_committed, 4);
    bt_committed(bt_bootstrap(), group, topic, 4, committed);
    bt_high_watermarks(bt_bootstrap(), topic, 4, hwm);

    for (int with_topic = 0; with_topic < 2; with_topic++) {
        bt_captured_t c = with_topic
                           ? bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group,
                                               "-t", topic, "--json"),
                                          60000)
                           : bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group,
                                               "--json"),
                                          60000);
        if (c.rc != 0)
            fail_msg("ballast lag exited %d: %s", c.rc, c.err);
        parse_lines(c.out, rows, 4);
        for (int p = 0; p < 4; p++) {
            json_t *r = rows[p], *jc, *jls;
            if (!r)
                fail_msg("no line for partition %d in: %s", p, c.out);
            assert_string_equal(json_string_value(json_object_get(r, "topic")), topic);
            assert_string_equal(json_string_value(json_object_get(r, "group")), group);
            jc = json_object_get(r, "committed");
            jls = json_object_get(r, "lag_seconds");
            /* Exactly the broker's numbers. */
            assert_int_equal(json_integer_value(json_object_get(r, "high_watermark")), hwm[p]);
            if (committed[p] < 0) {
                assert_true(json_is_null(jc));
                /* Nothing committed: every retained message is lag, and
                 * there is no honest time lag to give. */
                assert_int_equal(json_integer_value(json_object_get(r, "lag")), hwm[p]);
                assert_true(json_is_null(jls));
            } else {
                assert_true(json_is_integer(jc));
                assert_int_equal(json_integer_value(jc), committed[p]);
                assert_int_equal(json_integer_value(json_object_get(r, "lag")),
                                 hwm[p] - committed[p]);
                assert_true(json_is_number(jls));
                if (hwm[p] == committed[p])
                    assert_true(json_number_value(jls) == 0.0);
                else /* the oldest unconsumed message was produced just now */
                    assert_true(json_number_value(jls) > 0.0 &&
                                json_number_value(jls) < 120.0);
            }
            /* Offsets committed without joining: an Empty group that no
             * member consumes, so one evaluation is OK only without lag. */
            assert_string_equal(json_string_value(json_object_get(r, "group_state")), "Empty");
            assert_string_equal(json_string_value(json_object_get(r, "group_protocol")),
                                "classic");
            assert_true(json_is_integer(json_object_get(r, "group_members")));
            assert_int_equal(json_integer_value(json_object_get(r, "group_members")), 0);
            assert_true(json_is_null(json_object_get(r, "consumer_id")));
            assert_true(json_is_null(json_object_get(r, "client_id")));
            assert_true(json_is_null(json_object_get(r, "host")));
            assert_string_equal(json_string_value(json_object_get(r, "status")),
                                hwm[p] == committed[p] ? "OK" : "WARN");
            assert_string_equal(json_string_value(json_object_get(r, "group_status")), "WARN");
            json_decref(r);
        }
        bt_captured_free(&c);
    }
}

/* A status change written by the --on-change command. */
static void test_watch_statuses_and_on_change(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-watch"), *group = bt_unique("lag-watch-g");
    const char *dir = bt_tmpdir();
    char script[300], log[300], cmd[700];
    int64_t offsets[2] = {6, 10};
    bt_captured_t c;
    char *alerts;
    json_t *last[2];

    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 20, 0); /* 10 per partition */
    /* Partition 0: a dead consumer's last commit, 4 behind, frozen.
     * Partition 1: caught up and idle: no traffic, no commits. */
    bt_commit(bt_bootstrap(), group, topic, offsets, 2);

    snprintf(script, sizeof(script), "%s/alert.sh", dir);
    snprintf(log, sizeof(log), "%s/alerts.log", dir);
    bt_write_file(script,
                  "#!/bin/sh\n"
                  "printf '%%s %%s>%%s %%s %%s [%%s] [%%s]\\n' \"$BALLAST_LAG_GROUP\" "
                  "\"$BALLAST_LAG_PREVIOUS_STATUS\" \"$BALLAST_LAG_STATUS\" "
                  "\"$BALLAST_LAG_PARTITIONS\" \"$BALLAST_LAG_TOTAL_LAG\" \"$1\" \"$2\" "
                  ">> '%s'\n",
                  log);
    assert_int_equal(chmod(script, 0755), 0);
    /* Quoted words arrive as one argument each; no shell interprets $HOME. */
    snprintf(cmd, sizeof(cmd), "%s 'two words' $HOME", script);
    {
        char out_path[300], err_path[300];
        snprintf(out_path, sizeof(out_path), "%s/out", dir);
        snprintf(err_path, sizeof(err_path), "%s/err", dir);
        pid_t pid = bt_spawn_ballast_io(
            ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic, "--json", "--watch",
                 "0.2", "--window", "3", "--on-change", cmd),
            out_path, err_path);
        wait_evaluation(out_path, 4);
        bt_term(pid);
        assert_int_equal(bt_wait(pid, 15000), 0); /* a clean stop */
        c.out = bt_read_file(out_path);
        c.err = bt_read_file(err_path);
    }
    /* Evaluation by evaluation: WARN (one sample, lag), STALL (no commit
     * progress yet for a full window), then STOP; the idle caught-up
     * partition is OK throughout. */
    {
        const char *want0[] = {"WARN", "STALL", "STOP", "STOP"};
        for (int e = 1; e <= 4; e++) {
            char needle[64], *copy = strdup(c.out), *save = NULL;
            int seen = 0;
            snprintf(needle, sizeof(needle), "\"evaluation\":%d,", e);
            for (char *line = strtok_r(copy, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save)) {
                json_t *o;
                if (!strstr(line, needle))
                    continue;
                o = json_loads(line, 0, NULL);
                assert_non_null(o);
                json_int_t p = json_integer_value(json_object_get(o, "partition"));
                const char *st = json_string_value(json_object_get(o, "status"));
                if (strcmp(st, p == 0 ? want0[e - 1] : "OK"))
                    fail_msg("evaluation %d, partition %d: status %s, expected %s", e,
                             (int)p, st, p == 0 ? want0[e - 1] : "OK");
                seen++;
                json_decref(o);
            }
            free(copy);
            assert_int_equal(seen, 2);
        }
    }
    parse_lines(c.out, last, 2);
    assert_int_equal(json_integer_value(json_object_get(last[0], "lag")), 4);
    assert_true(json_number_value(json_object_get(last[0], "lag_seconds")) > 0);
    json_decref(last[0]);
    json_decref(last[1]);
    /* The command ran on each change of the group's status, without a
     * shell, with the environment describing the change. */
    alerts = bt_read_file(log);
    assert_non_null(alerts);
    {
        char want[1024];
        snprintf(want, sizeof(want),
                 "%s >WARN %s:0 4 [two words] [$HOME]\n"
                 "%s WARN>STALL %s:0 4 [two words] [$HOME]\n"
                 "%s STALL>STOP %s:0 4 [two words] [$HOME]\n",
                 group, topic, group, topic, group, topic);
        if (strcmp(alerts, want))
            fail_msg("--on-change log:\n%s\nexpected:\n%s", alerts, want);
    }
    free(alerts);
    bt_captured_free(&c);
}

/* The group's state and member count, from the broker. */
static void describe_group(const char *group, char *state, size_t size, int *members)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    const rd_kafka_ConsumerGroupDescription_t **groups;
    size_t n;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConsumerGroups(rk, &group, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 20000);
    assert_non_null(ev);
    if (rd_kafka_event_error(ev))
        fail_msg("DescribeConsumerGroups: %s", rd_kafka_event_error_string(ev));
    groups = rd_kafka_DescribeConsumerGroups_result_groups(
        rd_kafka_event_DescribeConsumerGroups_result(ev), &n);
    assert_int_equal(n, 1);
    assert_null(rd_kafka_ConsumerGroupDescription_error(groups[0]));
    snprintf(state, size, "%s",
             rd_kafka_consumer_group_state_name(
                 rd_kafka_ConsumerGroupDescription_state(groups[0])));
    *members = (int)rd_kafka_ConsumerGroupDescription_member_count(groups[0]);
    for (int i = 0; i < *members; i++) {
        const char *client = rd_kafka_MemberDescription_client_id(
            rd_kafka_ConsumerGroupDescription_member(groups[0], (size_t)i));
        if (client && !strncmp(client, "ballast-lag", 11))
            fail_msg("ballast lag is a member of group %s", group);
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

typedef struct consumed_arg {
    bt_runner_t *runner;
    uint64_t want;
} consumed_arg_t;

static bool consumed_all(void *arg)
{
    consumed_arg_t *a = arg;
    ballast_stats_t st;
    ballast_consumer_stats(bt_runner_consumer(a->runner), &st, sizeof(st));
    return st.processed_ok >= a->want;
}

static void test_never_joins_the_group(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-member"), *group = bt_unique("lag-member-g");
    const char *dir = bt_tmpdir();
    char out_path[300], err_path[300], gstate[64];
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    bt_runner_t *runner;
    ballast_stats_t before, after;
    consumed_arg_t arg;
    int members;
    pid_t pid;

    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 20, 0);
    conf = bt_conf_recording(bt_bootstrap(), group, topic, rec);
    runner = bt_runner_start(conf);
    arg.runner = runner;
    arg.want = 20;
    assert_true(bt_wait_for(consumed_all, &arg, 60000));
    ballast_consumer_stats(bt_runner_consumer(runner), &before, sizeof(before));
    describe_group(group, gstate, sizeof(gstate), &members);
    assert_string_equal(gstate, "Stable");
    assert_int_equal(members, 1);

    /* Watch the group while it is being consumed: a joining monitor would
     * show as a second member or put the group into a rebalance. */
    snprintf(out_path, sizeof(out_path), "%s/out", dir);
    snprintf(err_path, sizeof(err_path), "%s/err", dir);
    pid = bt_spawn_ballast_io(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic,
                                   "--json", "--watch", "0.2"),
                              out_path, err_path);
    for (int i = 0; i < 6; i++) {
        usleep(300 * 1000);
        describe_group(group, gstate, sizeof(gstate), &members);
        assert_string_equal(gstate, "Stable");
        assert_int_equal(members, 1);
    }
    bt_produce_seq(bt_bootstrap(), topic, 2, 20, 10, 0);
    arg.want = 30;
    assert_true(bt_wait_for(consumed_all, &arg, 60000));
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 15000), 0);
    {
        char *out = bt_read_file(out_path);
        assert_non_null(out);
        if (!strstr(out, "\"evaluation\":3")) /* it did watch */
            fail_msg("fewer than 3 evaluations: %s", out);
        free(out);
    }
    ballast_consumer_stats(bt_runner_consumer(runner), &after, sizeof(after));
    assert_int_equal(after.rebalances, before.rebalances);
    assert_null(bt_runner_stop(runner));
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* ---- a busy, healthy group ------------------------------------------------ */

/* Steady traffic on a topic from a thread of its own, until told to stop. */
typedef struct traffic {
    const char *topic;
    volatile int stop;
    long produced;
    pthread_t thread;
} traffic_t;

static void *traffic_main(void *arg)
{
    traffic_t *t = arg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "2", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        return NULL;
    while (!t->stop) {
        char value[32];
        snprintf(value, sizeof(value), "%ld", t->produced);
        if (!rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(t->topic),
                               RD_KAFKA_V_VALUE(value, strlen(value)),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
            t->produced++;
        rd_kafka_poll(rk, 5); /* about 200 messages a second */
    }
    rd_kafka_flush(rk, 10000);
    rd_kafka_destroy(rk);
    return NULL;
}

typedef struct recorded_arg {
    bt_recorder_t *rec;
    size_t want;
} recorded_arg_t;

static bool recorded_enough(void *arg)
{
    recorded_arg_t *a = arg;
    return bt_recorder_count(a->rec) >= a->want;
}

/* A watcher started on a group that is consuming steady traffic and keeping
 * up: lag is always in flight (commits every 200 ms), yet no evaluation is
 * WARN, from the first one on, and --on-change never runs. Each partition
 * is shown held by the group's one member. */
static void test_busy_healthy_group_has_no_warn(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-busy"), *group = bt_unique("lag-busy-g");
    const char *dir = bt_tmpdir();
    char out_path[300], err_path[300], script[300], log[300], *out, *copy, *save = NULL;
    bt_recorder_t *rec = bt_recorder_new();
    traffic_t traffic = {topic, 0, 0, 0};
    recorded_arg_t enough = {rec, 200};
    ballast_conf_t *conf;
    bt_runner_t *runner;
    int lines = 0, lagging = 0;
    pid_t pid;

    bt_create_topic(bt_bootstrap(), topic, 2);
    conf = bt_conf_recording(bt_bootstrap(), group, topic, rec);
    bt_set(conf, "kafka.auto.commit.interval.ms", "200");
    runner = bt_runner_start(conf);
    assert_int_equal(pthread_create(&traffic.thread, NULL, traffic_main, &traffic), 0);
    assert_true(bt_wait_for(recorded_enough, &enough, 60000));

    snprintf(script, sizeof(script), "%s/alert.sh", dir);
    snprintf(log, sizeof(log), "%s/alerts.log", dir);
    bt_write_file(script, "#!/bin/sh\necho \"$BALLAST_LAG_PREVIOUS_STATUS>$BALLAST_LAG_STATUS\" "
                          ">> '%s'\n", log);
    assert_int_equal(chmod(script, 0755), 0);
    snprintf(out_path, sizeof(out_path), "%s/out", dir);
    snprintf(err_path, sizeof(err_path), "%s/err", dir);
    /* A window of 3 s: many commit intervals long, as the help advises. */
    pid = bt_spawn_ballast_io(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic,
                                   "--json", "--watch", "0.3", "--window", "10",
                                   "--on-change", script),
                              out_path, err_path);
    wait_evaluation(out_path, 15);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 15000), 0);
    traffic.stop = 1;
    pthread_join(traffic.thread, NULL);
    assert_null(bt_runner_stop(runner));

    out = bt_read_file(out_path);
    assert_non_null(out);
    copy = strdup(out);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *status, *consumer;
        if (!o)
            fail_msg("not a JSON line: %s", line);
        status = json_string_value(json_object_get(o, "status"));
        consumer = json_string_value(json_object_get(o, "consumer_id"));
        if (strcmp(status, "OK"))
            fail_msg("a busy, healthy group reported %s: %s", status, line);
        assert_string_equal(json_string_value(json_object_get(o, "group_state")), "Stable");
        assert_string_equal(json_string_value(json_object_get(o, "group_protocol")),
                            bt_group_protocol());
        assert_int_equal(json_integer_value(json_object_get(o, "group_members")), 1);
        if (!consumer || !*consumer)
            fail_msg("no member holds the partition: %s", line);
        assert_non_null(json_string_value(json_object_get(o, "client_id")));
        assert_non_null(json_string_value(json_object_get(o, "host")));
        lagging += json_integer_value(json_object_get(o, "lag")) > 0;
        lines++;
        json_decref(o);
    }
    free(copy);
    /* Two partitions per evaluation, and the lag was really moving. */
    assert_true(lines >= 30);
    if (lagging < lines / 4)
        fail_msg("only %d of %d samples had lag in flight: not a busy group", lagging, lines);
    {
        char *alerts = bt_read_file(log);
        if (alerts)
            fail_msg("--on-change ran on a healthy group: %s", alerts);
    }
    free(out);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

/* ---- what the group is -------------------------------------------------- */

/* A group that does not exist is an error at the first look (a typo must
 * not report OK forever), with or without -t, once or watching. */
static void test_unknown_group_is_an_error(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-nogroup"), *group = bt_unique("lag-nogroup-g");
    bt_captured_t c;

    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, 5, 0);
    c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--json"), 60000);
    if (c.rc != 78 || !strstr(c.err, "not found") || !strstr(c.err, group) ||
        strchr(c.err, '\n') != c.err + strlen(c.err) - 1 || *c.out)
        fail_msg("exit %d (expected 78 and one line saying \"not found\"); stdout: %s; "
                 "stderr: %s", c.rc, c.out, c.err);
    bt_captured_free(&c);
    expect_rc(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic), 78, "not found");
    expect_rc(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic, "--watch", "0.2"),
              78, "not found");
    /* The group exists once it has committed offsets; -t naming a topic
     * that does not exist is the same kind of mistake. */
    bt_commit(bt_bootstrap(), group, topic, (int64_t[]){3}, 1);
    expect_rc(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", bt_unique("no-such-topic")),
              78, "does not exist");
    c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--json"), 60000);
    if (c.rc != 0 || !strstr(c.out, "\"committed\":3,"))
        fail_msg("exit %d: %s %s", c.rc, c.out, c.err);
    bt_captured_free(&c);
}

/* A member that has joined and committed nothing yet: the group exists,
 * its partitions show (found through the member's assignment, without -t),
 * with nothing committed and the member as their holder. */
static void test_members_without_commits(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-nocommit"), *group = bt_unique("lag-nocommit-g");
    char *member_id;
    json_t *rows[2];
    bt_captured_t c;
    rd_kafka_t *rk;

    bt_create_topic(bt_bootstrap(), topic, 2);
    bt_produce_seq(bt_bootstrap(), topic, 2, 0, 10, 0);
    rk = bt_member_start(group, topic, bt_group_protocol(), "lag-test-member", 2);
    member_id = rd_kafka_memberid(rk);
    assert_non_null(member_id);

    c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--json"), 60000);
    if (c.rc != 0)
        fail_msg("exit %d: %s", c.rc, c.err);
    parse_lines(c.out, rows, 2);
    for (int p = 0; p < 2; p++) {
        if (!rows[p])
            fail_msg("no line for partition %d: %s", p, c.out);
        assert_string_equal(json_string_value(json_object_get(rows[p], "topic")), topic);
        assert_true(json_is_null(json_object_get(rows[p], "committed")));
        assert_int_equal(json_integer_value(json_object_get(rows[p], "lag")), 5);
        assert_string_equal(json_string_value(json_object_get(rows[p], "group_state")),
                            "Stable");
        assert_string_equal(json_string_value(json_object_get(rows[p], "group_protocol")),
                            bt_group_protocol());
        assert_int_equal(json_integer_value(json_object_get(rows[p], "group_members")), 1);
        assert_string_equal(json_string_value(json_object_get(rows[p], "consumer_id")),
                            member_id);
        assert_string_equal(json_string_value(json_object_get(rows[p], "client_id")),
                            "lag-test-member");
        /* A member holds it: lag at the first look is no warning. */
        assert_string_equal(json_string_value(json_object_get(rows[p], "status")), "OK");
        json_decref(rows[p]);
    }
    bt_captured_free(&c);

    /* The table: the state and member count, the holder of each row, and
     * the members' list. */
    c = bt_run_captured(ARGV("lag", "-b", bt_bootstrap(), "-g", group), 60000);
    if (c.rc != 0)
        fail_msg("exit %d: %s", c.rc, c.err);
    if (!strstr(c.out, "state Stable  members 1") || !strstr(c.out, "CONSUMER-ID") ||
        !strstr(c.out, "CLIENT-ID") || count_lines_with(c.out, member_id) != 3)
        fail_msg("the table does not show the member: %s", c.out);
    bt_captured_free(&c);
    rd_kafka_mem_free(rk, member_id);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void test_exit_codes(void **state)
{
    (void)state;
    expect_rc(ARGV("lag", "--help"), 0, NULL);
    expect_rc(ARGV("lag", "-g", "g"), 64, "-b BOOTSTRAP");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--json", "--prometheus"), 64, "--json");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--watch", "soon"), 64, "--watch");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--window", "0"), 64, "--window");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--on-change", "a 'b"), 64, "--on-change");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "--frob"), 64, "--frob");
    expect_rc(ARGV("lag", "-b", "x", "-g", "g", "-X", "no.such.prop=1"), 78, "no.such.prop");
    expect_rc(ARGV("lag", "-b", "127.0.0.1:1", "-g", "g", "--timeout", "1"), 69,
              "127.0.0.1:1");
}

static void test_every_option_is_documented(void **state)
{
    (void)state;
    bt_assert_options_documented(ARGV("lag", "--help"), "docs/operations.md");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_json_agrees_with_broker),
        cmocka_unit_test(test_watch_statuses_and_on_change),
        cmocka_unit_test(test_never_joins_the_group),
        cmocka_unit_test(test_busy_healthy_group_has_no_warn),
        cmocka_unit_test(test_unknown_group_is_an_error),
        cmocka_unit_test(test_members_without_commits),
        cmocka_unit_test(test_every_option_is_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
