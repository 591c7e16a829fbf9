/*
 * test_lag_time.c - `ballast lag`'s time lag stays true where the timestamp
 * of the message at the committed offset would not, against the real
 * broker, in both modes (-g GROUP and --all-groups) at once:
 *   partition 0: the message at the committed offset was deleted
 *                (DeleteRecords), and the first one left is much younger;
 *   partition 1: the producer stamped the messages 30 days in the past;
 *   partition 2: the producer stamped them 30 minutes in the future.
 * Each watcher sees the log end before and after the messages are written;
 * its lag_seconds must then be the true age of the message at the committed
 * offset, measured by the test's clock around the write, within
 * TOLERANCE_S, with lag_seconds_method "interpolated". (By the timestamp,
 * partition 0 would read at least GAP_MS too young, partition 1 30 days too
 * old, partition 2 0 s.)
 */
#include "support.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* How far lag_seconds may be from the true age: the history's samples are
 * an evaluation apart (--watch 0.3, plus the evaluation itself) around the
 * write, and the interpolated time lies between them. */
#define TOLERANCE_S 2.0
/* How long after the first write the test looks: the age a wrong method
 * misses by at least (partitions 0 and 2). */
#define GAP_MS 6000
#define PARTITIONS 3
#define COMMITTED 2 /* of the 5 messages 0..4 of each partition */

/* Milliseconds since the epoch (bt_now_ms() is monotonic). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Produces @p count messages to @p topic [@p partition], stamped with
 * @p timestamp_ms (0: the producer's clock). */
static void produce(const char *topic, int32_t partition, int count, int64_t timestamp_ms)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), errstr,
                                       sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    for (int i = 0; i < count; i++)
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                           RD_KAFKA_V_PARTITION(partition),
                                           RD_KAFKA_V_VALUE("m", 1),
                                           RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END),
                         0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* Deletes the records of @p topic [@p partition] below @p before. */
static void delete_records(const char *topic, int32_t partition, int64_t before)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_DeleteRecords_t *del;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    rd_kafka_t *rk;
    const rd_kafka_topic_partition_list_t *res;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), errstr, sizeof(errstr));
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    q = rd_kafka_queue_new(rk);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = before;
    del = rd_kafka_DeleteRecords_new(list);
    rd_kafka_DeleteRecords(rk, &del, 1, NULL, q);
    assert_non_null(ev = rd_kafka_queue_poll(q, 30000));
    assert_int_equal(rd_kafka_event_error(ev), 0);
    res = rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    assert_int_equal(res->cnt, 1);
    assert_int_equal(res->elems[0].err, 0);
    assert_int_equal(res->elems[0].offset, before);
    rd_kafka_event_destroy(ev);
    rd_kafka_DeleteRecords_destroy(del);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* Milliseconds since the epoch of an evaluation's "time"
 * (2026-12-07T21:31:09.123Z). */
static int64_t parse_time(const char *iso)
{
    struct tm tm;
    const char *rest;
    int ms = 0;

    memset(&tm, 0, sizeof(tm));
    assert_non_null(rest = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm));
    if (*rest == '.')
        ms = (int)strtol(rest + 1, NULL, 10);
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The newest line of @p path for each partition that shows the final state
 * (committed offset COMMITTED; partition 0's low watermark 5), or false
 * while some partition has none. Caller frees the lines it got. */
static bool final_lines(const char *path, json_t **line)
{
    char *text = bt_read_file(path), *save = NULL;
    bool all = true;

    for (int p = 0; p < PARTITIONS; p++)
        line[p] = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(l, 0, NULL);
        json_int_t p = o ? json_integer_value(json_object_get(o, "partition")) : -1;
        if (p >= 0 && p < PARTITIONS &&
            json_integer_value(json_object_get(o, "committed")) == COMMITTED &&
            (p || json_integer_value(json_object_get(o, "low_watermark")) == 5)) {
            json_decref(line[p]);
            line[p] = o;
        } else {
            json_decref(o);
        }
    }
    free(text);
    for (int p = 0; p < PARTITIONS; p++)
        all = all && line[p];
    return all;
}

static void free_lines(json_t **line)
{
    for (int p = 0; p < PARTITIONS; p++)
        json_decref(line[p]);
}

/* Waits for the final state in @p path and checks each partition's time lag
 * against the age of its messages, written between @p written_from and
 * @p written_to (wall clock). */
static void check_watcher(const char *mode, const char *path, int64_t written_from,
                          int64_t written_to)
{
    int64_t deadline = bt_now_ms() + 30000;
    json_t *line[PARTITIONS];
    int wrong = 0;

    while (!final_lines(path, line)) {
        free_lines(line);
        if (bt_now_ms() > deadline)
            fail_msg("%s: no evaluation of the final state in %s", mode, path);
        usleep(100 * 1000);
    }
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t at = parse_time(json_string_value(json_object_get(line[p], "time")));
        double got = json_number_value(json_object_get(line[p], "lag_seconds"));
        const char *method = json_string_value(json_object_get(line[p], "lag_seconds_method"));
        double oldest = (double)(at - written_from) / 1000;
        double youngest = (double)(at - written_to) / 1000;
        bool right = method && !strcmp(method, "interpolated") &&
                     got >= youngest - TOLERANCE_S && got <= oldest + TOLERANCE_S;
        /* Every partition is told before failing, so that each case shows. */
        printf("%s %s, partition %d: lag_seconds %.3f (%s), the message's true age "
               "%.3f..%.3f s (tolerance %.1f s)\n",
               right ? "ok:" : "WRONG:", mode, p, got, method ? method : "(none)", youngest,
               oldest, TOLERANCE_S);
        wrong += !right;
    }
    if (wrong)
        fail_msg("%s: %d partitions with a wrong time lag", mode, wrong);
    free_lines(line);
}

static void test_time_lag_without_the_message_or_its_timestamp(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("lag-time"), *group = bt_unique("lag-time-g");
    const char *dir = bt_tmpdir();
    char one_path[300], all_path[300], include[300];
    int64_t zero[PARTITIONS] = {0, 0, 0}, committed[PARTITIONS], from, to;
    pid_t one, all;

    for (int p = 0; p < PARTITIONS; p++)
        committed[p] = COMMITTED;
    bt_create_topic(bt_bootstrap(), topic, PARTITIONS);
    bt_commit(bt_bootstrap(), group, topic, zero, PARTITIONS);
    snprintf(one_path, sizeof(one_path), "%s/one", dir);
    snprintf(all_path, sizeof(all_path), "%s/all", dir);
    snprintf(include, sizeof(include), "^%s$", group);
    one = bt_spawn_ballast_io(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "-t", topic,
                                   "--json", "--watch", "0.3"),
                              one_path, NULL);
    all = bt_spawn_ballast_io(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                   include, "--json", "--watch", "0.3"),
                              all_path, NULL);
    /* Both have seen the empty log before anything is written. */
    assert_true(bt_wait_file_has(one_path, "\"evaluation\":1", 30000));
    assert_true(bt_wait_file_has(all_path, "\"evaluation\":1", 30000));
    from = wall_ms();
    produce(topic, 0, 5, 0);
    produce(topic, 1, 5, from - 30LL * 86400 * 1000);
    produce(topic, 2, 5, from + 30LL * 60 * 1000);
    to = wall_ms();
    bt_commit(bt_bootstrap(), group, topic, committed, PARTITIONS);
    /* Later, younger messages; the ones at the committed offset of
     * partition 0 deleted. The wait is the age under test, not a stand-in
     * for a condition. */
    while (wall_ms() < from + GAP_MS)
        usleep(100 * 1000);
    produce(topic, 0, 5, 0);
    delete_records(topic, 0, 5);
    check_watcher("-g", one_path, from, to);
    check_watcher("--all-groups", all_path, from, to);
    bt_term(one);
    bt_term(all);
    assert_int_equal(bt_wait(one, 15000), 0);
    assert_int_equal(bt_wait(all, 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_lag_without_the_message_or_its_timestamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
