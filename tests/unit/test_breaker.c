/* test_breaker.c - unit tests of the DLQ breaker (src/breaker.c): when it
 * trips (in a row, by ratio over a full window), what it says then, that
 * it stays tripped, and that it is off when both limits are. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

#include <string.h>

/* Notes @p n outcomes (@p dead: dead letters) and asserts each passes. */
static void note_passing(bl_breaker_t *b, int n, bool dead)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(bl_breaker_note(b, dead, "bad value"), BL_BREAKER_PASS);
}

/* dlq.max.consecutive = 3: the fourth dead letter in a row trips it; a
 * handled message in between starts the count again. */
static void test_consecutive(void **state)
{
    bl_breaker_t b;
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 3, 0, 100), 0);
    note_passing(&b, 3, true);
    note_passing(&b, 1, false);
    note_passing(&b, 3, true);
    assert_false(bl_breaker_tripped(&b));
    assert_int_equal(bl_breaker_note(&b, true, "bad value"), BL_BREAKER_TRIPPED);
    assert_true(bl_breaker_tripped(&b));
    assert_non_null(strstr(bl_breaker_reason(&b), "more than 3 messages in a row"));
    assert_non_null(strstr(bl_breaker_reason(&b), "last error: bad value"));
    bl_breaker_free(&b);
}

/* dlq.max.ratio = 0.5 of 10: it judges only a full window, and trips on
 * the dead letter that takes the window past half. */
static void test_ratio(void **state)
{
    bl_breaker_t b;
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 0, 0.5, 10), 0);
    note_passing(&b, 9, true); /* 9 of 9: the window is not full yet */
    assert_int_equal(bl_breaker_note(&b, true, "boom"), BL_BREAKER_TRIPPED);
    assert_non_null(strstr(bl_breaker_reason(&b), "10 of the last 10 messages failed"));
    bl_breaker_free(&b);

    assert_int_equal(bl_breaker_init(&b, 0, 0.5, 10), 0);
    note_passing(&b, 10, false);
    note_passing(&b, 5, true); /* 5 of the last 10: not over half */
    assert_false(bl_breaker_tripped(&b));
    assert_int_equal(bl_breaker_note(&b, true, "boom"), BL_BREAKER_TRIPPED); /* 6 of 10 */
    assert_non_null(strstr(bl_breaker_reason(&b), "6 of the last 10 messages failed"));
    assert_non_null(strstr(bl_breaker_reason(&b), "dlq.max.ratio = 0.5"));
    bl_breaker_free(&b);
}

/* Handled messages push dead letters out of the window: an old burst does
 * not count against the last messages. */
static void test_window_slides(void **state)
{
    bl_breaker_t b;
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 0, 0.5, 10), 0);
    note_passing(&b, 5, true);
    note_passing(&b, 5, false); /* 5 of 10 */
    note_passing(&b, 5, false); /* the burst is gone: 0 of 10 */
    note_passing(&b, 5, true);  /* 5 of 10 again */
    assert_false(bl_breaker_tripped(&b));
    bl_breaker_free(&b);
}

/* Tripped, it holds back every later dead letter and lets handled messages
 * through; the reason stays the first one. */
static void test_stays_tripped(void **state)
{
    bl_breaker_t b;
    char first[512];
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 1, 0, 10), 0);
    note_passing(&b, 1, true);
    assert_int_equal(bl_breaker_note(&b, true, "first"), BL_BREAKER_TRIPPED);
    strcpy(first, bl_breaker_reason(&b));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(bl_breaker_note(&b, true, "later"), BL_BREAKER_OPEN);
        assert_int_equal(bl_breaker_note(&b, false, NULL), BL_BREAKER_PASS);
    }
    assert_true(bl_breaker_tripped(&b));
    assert_string_equal(bl_breaker_reason(&b), first);
    bl_breaker_free(&b);
}

/* Both limits off (0 and 0): nothing trips it. */
static void test_off(void **state)
{
    bl_breaker_t b;
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 0, 0, 100), 0);
    note_passing(&b, 10000, true);
    assert_false(bl_breaker_tripped(&b));
    bl_breaker_free(&b);
}

/* With both limits, whichever is reached first trips it. */
static void test_both_limits(void **state)
{
    bl_breaker_t b;
    (void)state;

    assert_int_equal(bl_breaker_init(&b, 2, 0.9, 4), 0);
    note_passing(&b, 2, true);
    assert_int_equal(bl_breaker_note(&b, true, "x"), BL_BREAKER_TRIPPED);
    assert_non_null(strstr(bl_breaker_reason(&b), "dlq.max.consecutive"));
    bl_breaker_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive),
        cmocka_unit_test(test_ratio),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_stays_tripped),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_both_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
