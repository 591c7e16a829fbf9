/* test_backoff.c - unit tests of exponential back-off with jitter
 * (src/backoff.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

#include <limits.h>
#include <math.h>

typedef struct delay_case {
    bl_backoff_t b; /* initial, max, multiplier, jitter */
    int retry;
    double rnd;
    int64_t want;
} delay_case_t;

#define MID 0.5 /* rnd that makes the jitter factor exactly 1 */

static const delay_case_t cases[] = {
    /* exponential growth, no jitter */
    {{100, 30000, 2, 0}, 1, 0.0, 100},
    {{100, 30000, 2, 0}, 2, 0.0, 200},
    {{100, 30000, 2, 0}, 3, 0.0, 400},
    {{100, 30000, 2, 0}, 4, 0.7, 800},
    {{100, 30000, 2, 0}, 9, 0.3, 25600},
    {{100, 30000, 3, 0}, 3, 0.0, 900},
    {{1000, 60000, 1.5, 0}, 3, 0.0, 2250},
    {{100, 30000, 1, 0}, 50, 0.9, 100},   /* multiplier 1: constant */
    /* cap at max */
    {{100, 30000, 2, 0}, 10, 0.0, 30000}, /* 51200 capped */
    {{100, 30000, 2, 0}, 11, 0.0, 30000},
    {{100, 30000, 2, 0}, 1000, 0.0, 30000},
    {{100, 30000, 2, 0}, INT_MAX, 0.0, 30000},
    {{100, 30000, 1000, 0}, 3, 0.0, 30000},
    {{100, 100, 2, 0}, 5, 0.0, 100},
    {{500, 100, 2, 0}, 1, 0.0, 100},       /* initial above max: max */
    /* retry 0 or negative: no growth */
    {{100, 30000, 2, 0}, 0, 0.0, 100},
    {{100, 30000, 2, 0}, -3, 0.0, 100},
    /* zero initial: always zero */
    {{0, 30000, 2, 0.5}, 5, 0.99, 0},
    {{0, 0, 2, 0}, 1, 0.0, 0},
    /* jitter at the ends of rnd */
    {{100, 30000, 2, 0.2}, 1, 0.0, 80},   /* factor 1 - jitter */
    {{100, 30000, 2, 0.2}, 1, MID, 100},  /* factor 1 */
    {{1000, 30000, 2, 0.5}, 1, 0.0, 500},
    {{1000, 30000, 2, 0.5}, 1, MID, 1000},
    {{1000, 30000, 2, 1.0}, 1, 0.0, 0},   /* full jitter can reach zero */
    {{1000, 30000, 2, 0.2}, 2, 0.25, 1800},
    {{1000, 30000, 2, 0.2}, 2, 0.75, 2200},
    /* jitter at max: never above it */
    {{100, 30000, 2, 0.2}, 20, 0.0, 24000},
    {{100, 30000, 2, 0.2}, 20, 0.999999, 30000},
    {{100, 30000, 2, 0.2}, 20, MID, 30000},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const delay_case_t *c = &cases[i];
        int64_t got = bl_backoff_delay(&c->b, c->retry, c->rnd);
        if (got != c->want)
            fail_msg("case %zu (initial %lld max %lld mult %g jitter %g retry %d "
                     "rnd %g): %lld, expected %lld",
                     i, (long long)c->b.initial_ms, (long long)c->b.max_ms,
                     c->b.multiplier, c->b.jitter, c->retry, c->rnd,
                     (long long)got, (long long)c->want);
    }
}

/* Zero jitter: the delay is exact whatever rnd is. */
static void test_zero_jitter_exact(void **state)
{
    const bl_backoff_t b = {100, 30000, 2, 0};
    (void)state;

    for (int retry = 1; retry <= 12; retry++) {
        int64_t want = 100LL << (retry - 1);
        if (want > 30000)
            want = 30000;
        for (double rnd = 0; rnd < 1; rnd += 0.0625)
            assert_int_equal(bl_backoff_delay(&b, retry, rnd), want);
        assert_int_equal(bl_backoff_delay(&b, retry, 0.999999999), want);
    }
}

/* With jitter j, the delay lies in [base*(1-j), min(max, base*(1+j))], is
 * at the low end for rnd = 0 and near the high end as rnd -> 1, and grows
 * with rnd. */
static void test_jitter_bounds(void **state)
{
    static const bl_backoff_t policies[] = {
        {100, 30000, 2, 0.2}, {1000, 86400000, 1.5, 0.5}, {250, 2000, 3, 0.1},
        {100, 30000, 2, 1.0}, {7, 1000, 2.5, 0.33},
    };
    (void)state;

    for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
        const bl_backoff_t *b = &policies[p];
        for (int retry = 1; retry <= 15; retry++) {
            double base = (double)b->initial_ms * pow(b->multiplier, retry - 1);
            double lo, hi;
            int64_t prev = -1, d0, d1;

            if (base > (double)b->max_ms)
                base = (double)b->max_ms;
            lo = floor(base * (1 - b->jitter));
            hi = fmin((double)b->max_ms, base * (1 + b->jitter));
            for (int k = 0; k < 1000; k++) {
                double rnd = k / 1000.0;
                int64_t d = bl_backoff_delay(b, retry, rnd);
                if ((double)d < lo - 1 || (double)d > hi)
                    fail_msg("policy %zu retry %d rnd %g: %lld outside [%g, %g]", p,
                             retry, rnd, (long long)d, lo, hi);
                assert_true(d >= prev); /* monotonic in rnd */
                prev = d;
            }
            d0 = bl_backoff_delay(b, retry, 0.0);
            d1 = bl_backoff_delay(b, retry, nextafter(1.0, 0.0));
            assert_true(fabs((double)d0 - base * (1 - b->jitter)) <= 1.0);
            assert_true((double)d1 >= floor(hi) - 1 && (double)d1 <= hi);
            assert_true(d1 <= b->max_ms);
        }
    }
}

/* The delay never decreases from one retry to the next (same rnd). */
static void test_monotonic_in_retry(void **state)
{
    const bl_backoff_t b = {100, 30000, 2, 0.2};
    (void)state;

    for (double rnd = 0; rnd < 1; rnd += 0.1) {
        int64_t prev = 0;
        for (int retry = 1; retry < 40; retry++) {
            int64_t d = bl_backoff_delay(&b, retry, rnd);
            assert_true(d >= prev);
            prev = d;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_zero_jitter_exact),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_monotonic_in_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
