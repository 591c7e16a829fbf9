/* test_lag_history.c - unit tests of a partition's log-end history and the
 * time lag it gives (src/shared/lag_history.c): interpolation between
 * samples of a steadily and of an unevenly growing log, the bound and the
 * thinning (older history coarser, the oldest and newest samples kept,
 * the error a bounded fraction of the lag), extrapolation below the oldest
 * sample, a log end that goes back when a topic is made again, clock
 * steps, and the choice between the history and the message's timestamp. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "shared/lag_history.h"

#include <math.h>
#include <string.h>

#define assert_near(a, b, tol)                                                               \
    do {                                                                                      \
        double a_ = (a), b_ = (b);                                                            \
        if (fabs(a_ - b_) > (tol))                                                            \
            fail_msg("%s = %.6f, expected %.6f (+/- %g)", #a, a_, b_, (double)(tol));        \
    } while (0)

static void test_interpolates_between_samples(void **state)
{
    bl_lag_history_t h;
    double s;

    (void)state;
    memset(&h, 0, sizeof(h));
    /* 100 messages a second, the log end seen every second. */
    for (int i = 1; i <= 10; i++)
        assert_true(bl_lag_history_observe(&h, i * 100, i * 1000));
    /* The same log end again is no new sample: its first sight stays. */
    assert_false(bl_lag_history_observe(&h, 1000, 10500));
    assert_int_equal(h.n, 10);
    /* Message 449 was written when the log end reached 450, at 4.5 s. */
    assert_int_equal(bl_lag_history_estimate(&h, 449, 10000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 5.5, 1e-9);
    /* Exactly on a sample: message 299 made the log end 300, at 3 s. */
    assert_int_equal(bl_lag_history_estimate(&h, 299, 12000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 9.0, 1e-9);
    /* At the log end, or past it: no message the history saw written
     * (lag 0 is the caller's to tell). */
    assert_int_equal(bl_lag_history_estimate(&h, 1000, 12000, &s), BL_LAG_TIME_NONE);
    assert_true(s < 0);
    assert_int_equal(bl_lag_history_estimate(&h, 999, 12000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 2.0, 1e-9);
    /* Nothing committed. */
    assert_int_equal(bl_lag_history_estimate(&h, -1, 12000, &s), BL_LAG_TIME_NONE);
    assert_true(s < 0);
}

static void test_extrapolates_below_the_oldest_sample(void **state)
{
    bl_lag_history_t h;
    double s;

    (void)state;
    memset(&h, 0, sizeof(h));
    /* One sample: no rate, no estimate. */
    bl_lag_history_observe(&h, 100, 1000);
    assert_int_equal(bl_lag_history_estimate(&h, 49, 3000, &s), BL_LAG_TIME_NONE);
    /* 0.1 message a millisecond: the log end reached 50 at 0.5 s. */
    bl_lag_history_observe(&h, 200, 2000);
    assert_int_equal(bl_lag_history_estimate(&h, 49, 3000, &s), BL_LAG_TIME_EXTRAPOLATED);
    assert_near(s, 2.5, 1e-9);
    /* Message 99 made the log end 100, the oldest sample: older than the
     * history, so extrapolated too (and never younger than that sample). */
    assert_int_equal(bl_lag_history_estimate(&h, 99, 3000, &s), BL_LAG_TIME_EXTRAPOLATED);
    assert_near(s, 2.0, 1e-9);
    assert_int_equal(bl_lag_history_estimate(&h, 100, 3000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 1.99, 1e-9);
}

/* The true time (ms) at which a log that grows by rate(t) messages a
 * second reaches each offset, for the uneven log below. */
static int64_t uneven_rate(int64_t second)
{
    return (second / 600) % 2 ? 2 : 50; /* ten quiet minutes, ten busy ones */
}

static void test_thinning_keeps_older_history_coarser(void **state)
{
    static int64_t reached_at[20000 * 50 + 1]; /* offset -> second it was reached */
    bl_lag_history_t h;
    int64_t high = 0, seconds = 20000;
    double worst = 0;

    (void)state;
    memset(&h, 0, sizeof(h));
    for (int64_t t = 1; t <= seconds; t++) {
        for (int64_t k = 0; k < uneven_rate(t); k++)
            reached_at[++high] = t;
        bl_lag_history_observe(&h, high, t * 1000);
        assert_true(h.n <= BL_LAG_HISTORY_SAMPLES);
    }
    assert_int_equal(h.n, BL_LAG_HISTORY_SAMPLES);
    /* The oldest and the newest sample stay. */
    assert_int_equal(h.s[0].offset, uneven_rate(1));
    assert_int_equal(h.s[h.n - 1].offset, high);
    for (uint32_t i = 1; i < h.n; i++) {
        assert_true(h.s[i].offset > h.s[i - 1].offset);
        assert_true(h.s[i].ms >= h.s[i - 1].ms);
    }
    /* Older history is coarser: the oldest gap is wider than the newest. */
    assert_true(h.s[1].ms - h.s[0].ms > 20 * (h.s[h.n - 1].ms - h.s[h.n - 2].ms));
    /* And the error stays a bounded fraction of the lag, at every offset
     * the history covers: messages older than a minute within 20 % (10.6 %
     * measured), younger ones within 2 s. */
    for (int64_t committed = h.s[0].offset; committed < high; committed += 7) {
        double s, truth = (double)(seconds - reached_at[committed + 1]);
        assert_int_equal(bl_lag_history_estimate(&h, committed, seconds * 1000, &s),
                         BL_LAG_TIME_INTERPOLATED);
        if (truth >= 60 && fabs(s - truth) / truth > worst)
            worst = fabs(s - truth) / truth;
        if (truth < 60)
            assert_true(fabs(s - truth) <= 2);
    }
    assert_true(worst < 0.2);
}

static void test_log_end_going_back_starts_afresh(void **state)
{
    bl_lag_history_t h;
    double s;

    (void)state;
    memset(&h, 0, sizeof(h));
    bl_lag_history_observe(&h, 1000, 1000);
    bl_lag_history_observe(&h, 2000, 2000);
    /* The topic was deleted and made again: its offsets start over. */
    assert_true(bl_lag_history_observe(&h, 50, 3000));
    assert_int_equal(h.n, 1);
    assert_int_equal(h.s[0].offset, 50);
    assert_int_equal(bl_lag_history_estimate(&h, 10, 3500, &s), BL_LAG_TIME_NONE);
    bl_lag_history_observe(&h, 150, 4000);
    assert_int_equal(bl_lag_history_estimate(&h, 99, 5000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 1.5, 1e-9);
}

static void test_clock_steps(void **state)
{
    bl_lag_history_t h;
    double s;

    (void)state;
    memset(&h, 0, sizeof(h));
    bl_lag_history_observe(&h, 100, 10000);
    /* A clock that stepped back: the sample is taken at the newest time,
     * so times never go back and nothing divides by a negative span. */
    assert_true(bl_lag_history_observe(&h, 200, 5000));
    assert_int_equal(h.s[1].ms, 10000);
    assert_int_equal(bl_lag_history_estimate(&h, 149, 12000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 2.0, 1e-9);
    /* "Now" before the samples: an age of 0, never negative. */
    assert_int_equal(bl_lag_history_estimate(&h, 149, 4000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 0, 0);
    /* No span to take a rate from: no extrapolation. */
    assert_int_equal(bl_lag_history_estimate(&h, 50, 12000, &s), BL_LAG_TIME_NONE);
    /* A step forward reads as time that passed: finite, and later samples
     * interpolate as before. */
    bl_lag_history_observe(&h, 300, 3600000);
    bl_lag_history_observe(&h, 400, 3601000);
    assert_int_equal(bl_lag_history_estimate(&h, 349, 3602000, &s), BL_LAG_TIME_INTERPOLATED);
    assert_near(s, 1.5, 1e-9);
}

static void test_choice_of_method(void **state)
{
    bl_lag_history_t h;
    bl_lag_time_t t;

    (void)state;
    memset(&h, 0, sizeof(h));
    /* No history: the timestamp, when it can be read. */
    assert_true(bl_lag_time_wants_timestamp(&h, 10, false));
    t = bl_lag_time_choose(&h, 10, 5000, 7.25, false);
    assert_int_equal(t.method, BL_LAG_TIME_TIMESTAMP);
    assert_near(t.seconds, 7.25, 0);
    t = bl_lag_time_choose(&h, 10, 5000, -1, false);
    assert_int_equal(t.method, BL_LAG_TIME_NONE);
    assert_true(t.seconds < 0);
    /* One sample, no timestamp: at least as old as that sample. */
    bl_lag_history_observe(&h, 100, 1000);
    t = bl_lag_time_choose(&h, 10, 5000, -1, false);
    assert_int_equal(t.method, BL_LAG_TIME_EXTRAPOLATED);
    assert_near(t.seconds, 4.0, 1e-9);
    /* A history that covers the offset wins over a wrong timestamp... */
    bl_lag_history_observe(&h, 200, 2000);
    assert_false(bl_lag_time_wants_timestamp(&h, 149, false));
    t = bl_lag_time_choose(&h, 149, 5000, 86400.0 * 365, false);
    assert_int_equal(t.method, BL_LAG_TIME_INTERPOLATED);
    assert_near(t.seconds, 3.5, 1e-9);
    /* ...unless timestamps are preferred, and then only when read. */
    assert_true(bl_lag_time_wants_timestamp(&h, 149, true));
    t = bl_lag_time_choose(&h, 149, 5000, 9.0, true);
    assert_int_equal(t.method, BL_LAG_TIME_TIMESTAMP);
    t = bl_lag_time_choose(&h, 149, 5000, -1, true);
    assert_int_equal(t.method, BL_LAG_TIME_INTERPOLATED);
    /* Nothing committed: never a figure. */
    assert_false(bl_lag_time_wants_timestamp(&h, -1, true));
    assert_int_equal(bl_lag_time_choose(&h, -1, 5000, 3.0, true).method, BL_LAG_TIME_NONE);
    assert_string_equal(bl_lag_time_method_name(BL_LAG_TIME_NONE), "none");
    assert_string_equal(bl_lag_time_method_name(BL_LAG_TIME_CAUGHT_UP), "caught_up");
    assert_string_equal(bl_lag_time_method_name(BL_LAG_TIME_TIMESTAMP), "timestamp");
    assert_string_equal(bl_lag_time_method_name(BL_LAG_TIME_INTERPOLATED), "interpolated");
    assert_string_equal(bl_lag_time_method_name(BL_LAG_TIME_EXTRAPOLATED), "extrapolated");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interpolates_between_samples),
        cmocka_unit_test(test_extrapolates_below_the_oldest_sample),
        cmocka_unit_test(test_thinning_keeps_older_history_coarser),
        cmocka_unit_test(test_log_end_going_back_starts_afresh),
        cmocka_unit_test(test_clock_steps),
        cmocka_unit_test(test_choice_of_method),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
