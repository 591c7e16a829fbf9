/* test_pause.c - unit tests of the pause policy (src/pause.c):
 * backpressure's two steps (hold back at the marks, pause once the backlog
 * lasts, resume at half the marks) and the one rule that pauses a
 * partition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "pause.h"

/* Limits of 100 messages and 1000 bytes; a backlog pauses after 500 ms. */
static bl_backpressure_t limits(void)
{
    bl_backpressure_t bp = {100, 1000, 500, 0, false};
    return bp;
}

/* At the marks the loop holds back at once (over), but partitions pause
 * only once the backlog lasted soft_limit_ms. */
static void test_hold_back_then_pause(void **state)
{
    bl_backpressure_t bp = limits();
    (void)state;

    assert_false(bl_backpressure_update(&bp, 99, 10, 1000));
    assert_false(bp.on);
    assert_true(bl_backpressure_update(&bp, 100, 10, 1000)); /* the backlog starts */
    assert_false(bp.on);
    assert_true(bl_backpressure_update(&bp, 120, 10, 1499));
    assert_false(bp.on);
    assert_true(bl_backpressure_update(&bp, 120, 10, 1500)); /* it lasted 500 ms */
    assert_true(bp.on);
}

/* Bytes count as much as messages. */
static void test_bytes(void **state)
{
    bl_backpressure_t bp = limits();
    (void)state;

    assert_true(bl_backpressure_over(&bp, 1, 1000));
    assert_false(bl_backpressure_over(&bp, 1, 999));
    assert_true(bl_backpressure_update(&bp, 1, 5000, 0 + 1));
    assert_true(bl_backpressure_update(&bp, 1, 5000, 501));
    assert_true(bp.on);
}

/* Hovering between half and the marks is still the backlog: the clock is
 * not reset until in flight falls to half of both marks. */
static void test_hovering_is_a_backlog(void **state)
{
    bl_backpressure_t bp = limits();
    (void)state;

    assert_true(bl_backpressure_update(&bp, 100, 0, 1000));
    assert_false(bl_backpressure_update(&bp, 60, 0, 1200)); /* below, above half */
    assert_true(bl_backpressure_update(&bp, 100, 0, 1500));
    assert_true(bp.on); /* 500 ms since it started, despite the dip */

    bp = limits();
    assert_true(bl_backpressure_update(&bp, 100, 0, 1000));
    assert_false(bl_backpressure_update(&bp, 50, 0, 1200)); /* half: it ended */
    assert_true(bl_backpressure_update(&bp, 100, 0, 1500)); /* a new one */
    assert_false(bp.on);
}

/* Paused, partitions resume only at half of both marks. */
static void test_resume_at_half(void **state)
{
    bl_backpressure_t bp = limits();
    (void)state;

    bl_backpressure_update(&bp, 100, 0, 1000);
    bl_backpressure_update(&bp, 100, 0, 2000);
    assert_true(bp.on);
    assert_false(bl_backpressure_update(&bp, 51, 0, 2100));
    assert_true(bp.on);
    assert_false(bl_backpressure_update(&bp, 50, 600, 2200)); /* bytes above half */
    assert_true(bp.on);
    assert_false(bl_backpressure_update(&bp, 50, 500, 2300));
    assert_false(bp.on);
}

/* soft_limit_ms 0: the first update at the marks pauses. */
static void test_no_soft_limit(void **state)
{
    bl_backpressure_t bp = {10, 100, 0, 0, false};
    (void)state;

    assert_true(bl_backpressure_update(&bp, 10, 0, 7));
    assert_true(bp.on);
}

/* Any reason pauses every partition; a retry tier's head pauses its own
 * partition until it is due. */
static void test_want_paused(void **state)
{
    const bl_pause_why_t none = {false, false, false, false};
    const bl_pause_why_t each[] = {
        {true, false, false, false},
        {false, true, false, false},
        {false, false, true, false},
        {false, false, false, true},
    };
    (void)state;

    assert_false(bl_want_paused(&none, 0, 1000));
    for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) {
        assert_true(bl_want_paused(&each[i], 0, 1000));
        assert_true(bl_want_paused(&each[i], 500, 1000));
    }
    assert_true(bl_want_paused(&none, 1001, 1000));  /* not due yet */
    assert_false(bl_want_paused(&none, 1000, 1000)); /* due */
    assert_false(bl_want_paused(&none, 999, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_back_then_pause),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_hovering_is_a_backlog),
        cmocka_unit_test(test_resume_at_half),
        cmocka_unit_test(test_no_soft_limit),
        cmocka_unit_test(test_want_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
