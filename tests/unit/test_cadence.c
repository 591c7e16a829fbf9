/* test_cadence.c - unit tests of the at-least-once commit cadence
 * (src/cadence.c): every interval while busy, or every 10,000 finished
 * messages by default, whichever comes first; at once when idle, but idle
 * commits at most ten times an interval; an interval the user set applies
 * alone. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cadence.h"

/* The first commit is due at once, busy or not. */
static void test_first(void **state)
{
    bl_cadence_t c = bl_cadence_init(5000, true);
    (void)state;

    assert_true(bl_cadence_due(&c, 1, false, 1));
    assert_true(bl_cadence_due(&c, 1, true, 1));
}

/* Busy (messages in flight): one commit per interval. */
static void test_busy(void **state)
{
    bl_cadence_t c = bl_cadence_init(5000, true);
    (void)state;

    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10001, false, 1));
    assert_false(bl_cadence_due(&c, 14999, false, 1));
    assert_true(bl_cadence_due(&c, 15000, false, 1));
}

/* Idle (nothing in flight): at once, so that lag reads 0 as soon as the
 * work is done, but not within a tenth of the interval of the last one. */
static void test_idle(void **state)
{
    bl_cadence_t c = bl_cadence_init(5000, true);
    (void)state;

    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10499, true, 1));
    assert_true(bl_cadence_due(&c, 10500, true, 1));
    assert_false(bl_cadence_due(&c, 10500, false, 1));
}

/* A trickle of messages, each finishing before the next arrives, commits
 * at most ten times an interval. */
static void test_trickle(void **state)
{
    bl_cadence_t c = bl_cadence_init(1000, true);
    int commits = 0;
    (void)state;

    for (int64_t now = 1; now <= 10000; now++) {
        if (bl_cadence_due(&c, now, true, 1)) {
            bl_cadence_sent(&c, now);
            commits++;
        }
    }
    assert_in_range(commits, 99, 100);
}

/* Unset: a commit every second, or as soon as 10,000 messages finished
 * since the last one, whichever comes first. */
static void test_default(void **state)
{
    bl_cadence_t c = bl_cadence_init(-1, true);
    (void)state;

    assert_int_equal(c.interval_ms, BL_CADENCE_INTERVAL_MS);
    assert_int_equal(BL_CADENCE_INTERVAL_MS, 1000);
    assert_int_equal(BL_CADENCE_MAX_MESSAGES, 10000);
    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10999, false, 9999));
    assert_true(bl_cadence_due(&c, 10001, false, 10000));
    assert_true(bl_cadence_due(&c, 11000, false, 1));
}

/* Draining at 100,000 messages/s (100 per ms), busy all the time: a
 * commit every 10,000 messages, so never more than 10,000 finished and
 * uncommitted; at 5,000 messages/s, every second (5,000 messages). */
static void drain(int64_t per_ms, uint64_t most_expected, int commits_expected)
{
    bl_cadence_t c = bl_cadence_init(-1, true);
    uint64_t finished = 0, most = 0;
    int commits = 0;

    bl_cadence_sent(&c, 1);
    for (int64_t now = 2; now <= 10001; now++) {
        finished += (uint64_t)per_ms;
        if (finished > most)
            most = finished;
        if (bl_cadence_due(&c, now, false, finished)) {
            bl_cadence_sent(&c, now);
            finished = 0;
            commits++;
        }
    }
    assert_int_equal(most, most_expected);
    assert_int_equal(commits, commits_expected);
}

static void test_drain_bounds(void **state)
{
    (void)state;
    drain(100, 10000, 100); /* 1,000,000 messages in 10 s */
    drain(5, 5000, 10);     /* 50,000 messages in 10 s */
}

/* An interval the user set applies alone: no message bound. */
static void test_user_interval(void **state)
{
    bl_cadence_t c = bl_cadence_init(5000, true);
    (void)state;

    assert_int_equal(c.interval_ms, 5000);
    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10001, false, 1000000));
    assert_true(bl_cadence_due(&c, 15000, false, 1));
}

/* Without the message bound (exactly-once into a database, whose Kafka
 * commits are advice): the default interval alone. */
static void test_no_message_bound(void **state)
{
    bl_cadence_t c = bl_cadence_init(-1, false);
    (void)state;

    assert_int_equal(c.interval_ms, BL_CADENCE_INTERVAL_MS);
    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10001, false, 1000000));
    assert_true(bl_cadence_due(&c, 11000, false, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_idle),
        cmocka_unit_test(test_trickle),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_drain_bounds),
        cmocka_unit_test(test_user_interval),
        cmocka_unit_test(test_no_message_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
