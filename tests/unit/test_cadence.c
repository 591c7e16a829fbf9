/* test_cadence.c - unit tests of the at-least-once commit cadence
 * (src/cadence.c): every interval while busy, at once when idle, but idle
 * commits at most ten times an interval. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cadence.h"

/* The first commit is due at once, busy or not. */
static void test_first(void **state)
{
    bl_cadence_t c = {5000, 0, 0};
    (void)state;

    assert_true(bl_cadence_due(&c, 1, false));
    assert_true(bl_cadence_due(&c, 1, true));
}

/* Busy (messages in flight): one commit per interval. */
static void test_busy(void **state)
{
    bl_cadence_t c = {5000, 0, 0};
    (void)state;

    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10001, false));
    assert_false(bl_cadence_due(&c, 14999, false));
    assert_true(bl_cadence_due(&c, 15000, false));
}

/* Idle (nothing in flight): at once, so that lag reads 0 as soon as the
 * work is done, but not within a tenth of the interval of the last one. */
static void test_idle(void **state)
{
    bl_cadence_t c = {5000, 0, 0};
    (void)state;

    bl_cadence_sent(&c, 10000);
    assert_false(bl_cadence_due(&c, 10499, true));
    assert_true(bl_cadence_due(&c, 10500, true));
    assert_false(bl_cadence_due(&c, 10500, false));
}

/* A trickle of messages, each finishing before the next arrives, commits
 * at most ten times an interval. */
static void test_trickle(void **state)
{
    bl_cadence_t c = {1000, 0, 0};
    int commits = 0;
    (void)state;

    for (int64_t now = 1; now <= 10000; now++) {
        if (bl_cadence_due(&c, now, true)) {
            bl_cadence_sent(&c, now);
            commits++;
        }
    }
    assert_in_range(commits, 99, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_idle),
        cmocka_unit_test(test_trickle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
