/*
 * test_lag.c - `ballast lag` against the real broker: its --json agrees
 * exactly with the broker's committed offsets and watermarks; time lag is
 * 0 when caught up and null when nothing is committed; statuses follow the
 * rules over --watch evaluations (a dead consumer's frozen lag becomes STOP,
 * an idle caught-up partition stays OK) and --on-change runs its command
 * without a shell; it never joins the group it watches; exit codes.
 */
#include "support.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* Commits @p offsets (-1: none) for partitions 0..n-1 of @p topic as a
 * plain librdkafka client that never joins the group (a "simple" commit,
 * which the broker accepts for a group without members). */
static void commit_offsets(const char *group, const char *topic, const int64_t *offsets,
                           int n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    for (int i = 0; i < n; i++)
        if (offsets[i] >= 0)
            rd_kafka_topic_partition_list_add(list, topic, i)->offset = offsets[i];
    if (list->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, 0);
        if (err)
            fail_msg("commit for %s: %s", group, rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
}

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

static void test_json_agrees_with_broker(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-json"), *group = bt_unique("lag-json-g");
    int64_t want_committed[4] = {10, 4, 0, -1}, committed[4], hwm[4];
    json_t *rows[4];

    bt_create_topic(bt_bootstrap(), topic, 4);
    bt_produce_seq(bt_bootstrap(), topic, 4, 0, 40, 0); /* 10 per partition */
    commit_offsets(group, topic, want_committed, 4);
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
            /* One evaluation: OK only without lag. */
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
    commit_offsets(group, topic, offsets, 2);

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
        /* Wait for at least 4 evaluations (they show in the output). */
        int64_t deadline = bt_now_ms() + 30000;
        for (;;) {
            char *out = bt_read_file(out_path);
            bool enough = out && strstr(out, "\"evaluation\":4");
            free(out);
            if (enough)
                break;
            if (bt_now_ms() > deadline)
                fail_msg("ballast lag --watch made fewer than 4 evaluations");
            usleep(50 * 1000);
        }
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
            snprintf(needle, sizeof(needle), "\"evaluation\":%d}", e);
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
    if (bt_bootstrap())
        expect_rc(ARGV("lag", "-b", bt_bootstrap(), "-g", "g", "-t",
                       bt_unique("no-such-topic")),
                  1, "does not exist");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_json_agrees_with_broker),
        cmocka_unit_test(test_watch_statuses_and_on_change),
        cmocka_unit_test(test_never_joins_the_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
