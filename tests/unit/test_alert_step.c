/* test_alert_step.c - unit tests of when `ballast lag`'s alert of a group
 * fires, resolves and notifies (tools/alert_step.c), as tables of
 * evaluations: the condition must hold at every evaluation for `for`, one
 * evaluation without it starts the count again; a firing alert resolves
 * when the condition goes; within the rate limit changes are held back and
 * counted in the next notification; a state left unnotified at the end of
 * the interval is sent then, and one that equals the last notified is not;
 * nothing resolves what was never announced. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alert.h"

#include <string.h>

#define T0 1000000 /* a clock that is not 0 (0 means "not holding") */

/* One evaluation: at T0 + at_ms, the condition holds or not; what is due. */
typedef struct step {
    int64_t at_ms;
    bool cond;
    alert_kind_t want;
    unsigned long suppressed; /* with want */
} step_t;

static void run(double for_s, double rate_limit_s, const step_t *steps, size_t n)
{
    alert_rule_t rule;
    alert_state_t st;

    memset(&rule, 0, sizeof(rule));
    rule.name = "r";
    rule.for_s = for_s;
    rule.rate_limit_s = rate_limit_s;
    memset(&st, 0, sizeof(st));
    st.rule = &rule;
    for (size_t i = 0; i < n; i++) {
        unsigned long suppressed = 99;
        alert_kind_t got = alert_step(&st, steps[i].cond, T0 + steps[i].at_ms, &suppressed);
        if (got != steps[i].want || (got && suppressed != steps[i].suppressed))
            fail_msg("step %zu (at %lld ms, condition %s): got %d with %lu suppressed, "
                     "expected %d with %lu", i, (long long)steps[i].at_ms,
                     steps[i].cond ? "holds" : "does not hold", (int)got, suppressed,
                     (int)steps[i].want, steps[i].suppressed);
    }
}

static void test_for(void **state)
{
    static const step_t steps[] = {
        {0, true, ALERT_NONE, 0},       {500, true, ALERT_NONE, 0},
        {999, true, ALERT_NONE, 0},     {1000, true, ALERT_FIRING, 0},
        {1500, true, ALERT_NONE, 0},    /* fired once, not again */
        {2000, false, ALERT_RESOLVED, 0}, {2500, false, ALERT_NONE, 0},
    };
    (void)state;
    run(1, 0, steps, sizeof(steps) / sizeof(steps[0]));
}

static void test_for_must_hold_all_along(void **state)
{
    static const step_t steps[] = {
        /* 900 ms, a gap, 900 ms: 1.8 s of condition, never 1 s at a stretch. */
        {0, true, ALERT_NONE, 0},    {900, true, ALERT_NONE, 0},
        {1000, false, ALERT_NONE, 0}, /* nothing announced: nothing resolves */
        {1100, true, ALERT_NONE, 0}, {2000, true, ALERT_NONE, 0},
        {2100, true, ALERT_FIRING, 0},
    };
    (void)state;
    run(1, 0, steps, sizeof(steps) / sizeof(steps[0]));
}

static void test_rate_limit_counts_and_sends_the_state_left(void **state)
{
    static const step_t steps[] = {
        {0, true, ALERT_FIRING, 0},      {1000, false, ALERT_NONE, 0},
        {2000, true, ALERT_NONE, 0},     {3000, false, ALERT_NONE, 0},
        /* The interval ends on "resolved", which was held back: it is sent,
         * counting the two changes before it that were not. */
        {10000, false, ALERT_RESOLVED, 2}, {10500, true, ALERT_NONE, 0},
        {11000, false, ALERT_NONE, 0},   {20000, false, ALERT_NONE, 0},
        /* The interval ended on the state last notified: nothing, and the
         * two held back are counted in the next notification. */
        {21000, true, ALERT_FIRING, 2},
    };
    (void)state;
    run(0, 10, steps, sizeof(steps) / sizeof(steps[0]));
}

static void test_rate_limit_with_for(void **state)
{
    static const step_t steps[] = {
        {0, true, ALERT_NONE, 0},       {1000, true, ALERT_FIRING, 0},
        {1500, false, ALERT_NONE, 0},   {1600, true, ALERT_NONE, 0},
        /* fires again at 2600, held back; still firing when the interval
         * ends, as last notified: nothing. */
        {2600, true, ALERT_NONE, 0},    {11000, true, ALERT_NONE, 0},
        {12000, false, ALERT_RESOLVED, 2},
    };
    (void)state;
    run(1, 10, steps, sizeof(steps) / sizeof(steps[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for),
        cmocka_unit_test(test_for_must_hold_all_along),
        cmocka_unit_test(test_rate_limit_counts_and_sends_the_state_left),
        cmocka_unit_test(test_rate_limit_with_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
