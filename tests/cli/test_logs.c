/*
 * test_logs.c - what `ballast run` logs tells an operator the truth:
 * assignments name their partitions, a progress line comes every
 * log.progress.interval.ms with the processed count, the run ends with a
 * summary line, a clean stop says so, and log.level = debug adds each
 * partition's commits and pauses.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

static void test_run_logs(void **state)
{
    const char *bs = bt_bootstrap(), *dir = bt_tmpdir();
    const char *topic = bt_unique("logs"), *out = bt_unique("logs-out");
    char conf[300], err[300], assigned[300], *text;
    pid_t pid;

    (void)state;
    BT_REQUIRE_ENV();
    bt_create_topic(bs, topic, 2);
    bt_create_topic(bs, out, 1);
    bt_produce_seq(bs, topic, 2, 0, 40, 0);
    snprintf(conf, sizeof(conf), "%s/logs.conf", dir);
    snprintf(err, sizeof(err), "%s/logs.err", dir);
    snprintf(assigned, sizeof(assigned), "assigned 2 partition(s): %s [", topic);
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "topics = %s\n"
                  "handler = forward\n"
                  "output.topic = %s\n"
                  "log.level = debug\n"
                  "log.progress.interval.ms = 1000\n",
                  bs, bt_unique("logs-g"), topic, out);
    pid = bt_spawn_ballast(ARGV("run", conf), err);
    if (!bt_wait_file_has(err, assigned, 30000))
        fail_msg("no assignment line naming the partitions");
    if (!bt_wait_file_has(err, "progress: 40 processed", 30000))
        fail_msg("no progress line counting 40 processed messages");
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    text = bt_read_file(err);
    assert_non_null(text);
    /* Both partitions named, in one line. */
    assert_true(strstr(strstr(text, assigned), "0") != NULL);
    assert_non_null(strstr(text, "summary: ran "));
    assert_non_null(strstr(text, "40 consumed, 40 processed"));
    assert_non_null(strstr(text, "stopped: "));
    assert_non_null(strstr(text, "committed offset 20"));
    assert_non_null(strstr(text, "paused "));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
