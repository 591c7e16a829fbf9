/* test_lag_rules.c - unit tests of the lag status rules of `ballast lag`
 * (src/shared/lag.c): scripted sequences of samples, with the status
 * expected after each one, for every status, for both of Burrow's false
 * alarms (idle partitions; lag frozen at a dead consumer's last commit), and
 * for a watcher that starts on a busy, healthy group (no WARN from lag in
 * flight while a member consumes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "shared/lag.h"

#include <stdio.h>
#include <string.h>

#define MAX_STEPS 12

#define SAMPLE(ok_, c, h, l, secs, own)                                                      \
    {.committed = (c), .high_watermark = (h), .lag = (l), .lag_seconds = (secs), .ok = (ok_),   \
     .owner = (own)}
/* A readable sample: committed offset c, high watermark h, lag h - c. */
#define S(c, h) SAMPLE(1, (c), (h), (h) - (c), -1, BL_LAG_OWNER_UNKNOWN)
/* With a time lag. */
#define ST(c, h, secs) SAMPLE(1, (c), (h), (h) - (c), (secs), BL_LAG_OWNER_UNKNOWN)
/* Nothing committed: lag is every retained message (low watermark 0). */
#define N(h) SAMPLE(1, -1, (h), (h), -1, BL_LAG_OWNER_UNKNOWN)
/* Held by a member of the group, and held by none. */
#define SM(c, h) SAMPLE(1, (c), (h), (h) - (c), -1, BL_LAG_OWNER_MEMBER)
#define SN(c, h) SAMPLE(1, (c), (h), (h) - (c), -1, BL_LAG_OWNER_NONE)
/* The offsets could not be read. */
#define E SAMPLE(0, -1, -1, 0, -1, BL_LAG_OWNER_UNKNOWN)

typedef struct script {
    const char *name;
    size_t window;
    bl_lag_thresholds_t th;
    bl_lag_sample_t samples[MAX_STEPS];
    const char *expect[MAX_STEPS]; /* status after each sample; NULL ends */
} script_t;

#define NO_TH {-1, -1}

static const script_t scripts[] = {
    {"caught up: committed follows the high watermark",
     5, NO_TH,
     {S(100, 100), S(150, 150), S(200, 200), S(260, 260)},
     {"OK", "OK", "OK", "OK"}},
    {"catching up: lag shrinks",
     5, NO_TH,
     {S(0, 100), S(50, 120), S(100, 130), S(130, 135), S(135, 135)},
     {"WARN", "OK", "OK", "OK", "OK"}},
    {"keeping up: constant lag with jitter is OK, not WARN",
     5, NO_TH,
     {S(0, 10), S(10, 22), S(25, 34), S(40, 51), S(60, 70)},
     {"WARN", "WARN", "OK", "OK", "OK"}},
    {"growing lag: offsets advance but lag grows across the window",
     4, NO_TH,
     {S(0, 10), S(5, 20), S(10, 30), S(15, 40), S(20, 50)},
     {"WARN", "WARN", "WARN", "WARN", "WARN"}},
    {"growing lag that then shrinks once is no longer WARN",
     4, NO_TH,
     {S(0, 10), S(5, 20), S(10, 30), S(40, 45)},
     {"WARN", "WARN", "WARN", "OK"}},
    {"stalled: committed offset stuck while new data arrives",
     5, NO_TH,
     {S(50, 60), S(50, 70), S(50, 80), S(50, 90)},
     {"WARN", "STALL", "STALL", "STALL"}},
    {"stopped: no commit progress for longer than the window",
     3, NO_TH,
     {S(50, 60), S(50, 70), S(50, 80), S(50, 90), S(50, 100)},
     {"WARN", "STALL", "STOP", "STOP", "STOP"}},
    {"stopped consumer recovers: progress brings it back",
     3, NO_TH,
     {S(50, 60), S(50, 70), S(50, 80), S(75, 82), S(82, 82)},
     {"WARN", "STALL", "STOP", "OK", "OK"}},
    {"dead consumer: lag frozen at its last commit becomes STOP, not OK",
     3, NO_TH,
     {S(500, 520), S(500, 520), S(500, 520), S(500, 520), S(500, 520)},
     {"WARN", "STALL", "STOP", "STOP", "STOP"}},
    {"idle partition: no traffic, nothing to commit, lag 0 stays OK",
     3, NO_TH,
     {S(500, 500), S(500, 500), S(500, 500), S(500, 500), S(500, 500),
      S(500, 500), S(500, 500)},
     {"OK", "OK", "OK", "OK", "OK", "OK", "OK"}},
    {"low-traffic partition: lag touching zero in the window is OK",
     3, NO_TH,
     {S(10, 11), S(11, 11), S(11, 12), S(11, 12), S(12, 13), S(13, 13)},
     {"WARN", "OK", "OK", "OK", "OK", "OK"}},
    {"rewound: the committed offset went backwards (REWIND while in the window)",
     3, NO_TH,
     {S(100, 200), S(150, 210), S(20, 220), S(60, 230), S(100, 240), S(140, 250)},
     {"WARN", "OK", "REWIND", "REWIND", "OK", "OK"}},
    {"rewind beats zero lag",
     3, NO_TH,
     {S(100, 100), S(40, 100)},
     {"OK", "REWIND"}},
    {"error: offsets unreadable, then readable again",
     3, NO_TH,
     {S(10, 10), E, S(12, 12), E},
     {"OK", "ERR", "OK", "ERR"}},
    {"an unreadable sample leaves the window partial: STALL, not STOP",
     3, NO_TH,
     {S(50, 60), E, S(50, 60), S(50, 60), S(50, 60)},
     {"WARN", "ERR", "STALL", "STALL", "STOP"}},
    {"nothing committed: lag is every retained message, never consumed",
     3, NO_TH,
     {N(40), N(40), N(45), N(45)},
     {"WARN", "STALL", "STOP", "STOP"}},
    {"nothing committed on an empty partition is OK",
     3, NO_TH,
     {N(0), N(0), N(0), N(0)},
     {"OK", "OK", "OK", "OK"}},
    {"one sample: lag within --warn-lag is OK, above it WARN",
     1, {100, -1},
     {S(0, 50), S(0, 150), S(140, 150), S(150, 150)},
     {"OK", "WARN", "OK", "OK"}},
    {"--warn-lag raises a keeping-up consumer to WARN",
     5, {100, -1},
     {S(0, 50), S(50, 80), S(80, 300), S(300, 350)},
     {"OK", "OK", "WARN", "OK"}},
    {"--warn-lag-seconds raises a consumer with old messages to WARN",
     5, {-1, 30},
     {ST(0, 50, 10), ST(50, 80, 12), ST(80, 90, 45), ST(90, 90, 0)},
     {"OK", "OK", "WARN", "OK"}},
    /* A member holds the partition. */
    {"busy healthy group watched from its start: lag in flight is OK at once",
     5, NO_TH,
     {SM(0, 10), SM(10, 22), SM(10, 30), SM(30, 41), SM(41, 50), SM(50, 61),
      SM(61, 70), SM(70, 79)},
     {"OK", "OK", "OK", "OK", "OK", "OK", "OK", "OK"}},
    {"a member that stops committing: STOP once the window is full, no STALL before",
     3, NO_TH,
     {SM(50, 60), SM(50, 70), SM(50, 80), SM(50, 90)},
     {"OK", "OK", "STOP", "STOP"}},
    {"a member falling behind: WARN once lag grew across the full window",
     3, NO_TH,
     {SM(0, 10), SM(5, 20), SM(10, 30), SM(15, 40), SM(40, 45)},
     {"OK", "OK", "WARN", "WARN", "OK"}},
    {"a member's lag above --warn-lag warns from the first evaluation",
     5, {100, -1},
     {SM(0, 500), SM(450, 520)},
     {"WARN", "OK"}},
    {"a window of one never holds a trend: a member's lag is OK",
     1, NO_TH,
     {SM(0, 50), SM(0, 60), SM(10, 70)},
     {"OK", "OK", "OK"}},
    {"the member leaves: the rules for an unconsumed partition apply at once",
     5, NO_TH,
     {SM(50, 60), SM(50, 70), SN(50, 80), SN(50, 90)},
     {"OK", "OK", "STALL", "STALL"}},
    {"nobody holds the partition: lag at the first look is WARN",
     5, NO_TH,
     {SN(0, 10), SN(10, 10)},
     {"WARN", "OK"}},
};

static bl_lag_status_t parse_status(const char *name)
{
    for (int s = 0; s < BL_LAG_STATUS_COUNT; s++)
        if (!strcmp(bl_lag_status_name((bl_lag_status_t)s), name))
            return (bl_lag_status_t)s;
    fail_msg("unknown status %s in a script", name);
    return BL_LAG_ERR;
}

static void test_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        const script_t *sc = &scripts[i];
        bl_lag_window_t w;
        assert_int_equal(bl_lag_window_init(&w, sc->window), 0);
        for (size_t step = 0; step < MAX_STEPS && sc->expect[step]; step++) {
            bl_lag_status_t got, want = parse_status(sc->expect[step]);
            bl_lag_window_push(&w, &sc->samples[step]);
            got = bl_lag_evaluate(&w, &sc->th);
            if (got != want)
                fail_msg("%s: after sample %zu: got %s, expected %s", sc->name,
                         step + 1, bl_lag_status_name(got), bl_lag_status_name(want));
        }
        bl_lag_window_free(&w);
    }
}

static void test_window_ring(void **state)
{
    bl_lag_window_t w;
    (void)state;

    assert_int_equal(bl_lag_window_init(&w, 3), 0);
    for (int64_t i = 0; i < 7; i++) {
        bl_lag_sample_t s = S(i, 10);
        bl_lag_window_push(&w, &s);
    }
    assert_int_equal(w.count, 3);
    assert_int_equal(bl_lag_window_at(&w, 0)->committed, 4);
    assert_int_equal(bl_lag_window_at(&w, 1)->committed, 5);
    assert_int_equal(bl_lag_window_at(&w, 2)->committed, 6);
    bl_lag_window_free(&w);
    /* An empty window has nothing to judge. */
    assert_int_equal(bl_lag_window_init(&w, 2), 0);
    assert_int_equal(bl_lag_evaluate(&w, NULL), BL_LAG_ERR);
    bl_lag_window_free(&w);
}

static void test_severity_and_names(void **state)
{
    (void)state;
    assert_string_equal(bl_lag_status_name(BL_LAG_OK), "OK");
    assert_string_equal(bl_lag_status_name(BL_LAG_WARN), "WARN");
    assert_string_equal(bl_lag_status_name(BL_LAG_REWIND), "REWIND");
    assert_string_equal(bl_lag_status_name(BL_LAG_STALL), "STALL");
    assert_string_equal(bl_lag_status_name(BL_LAG_STOP), "STOP");
    assert_string_equal(bl_lag_status_name(BL_LAG_ERR), "ERR");
    /* The group's status is its worst partition's. */
    assert_int_equal(bl_lag_status_worst(BL_LAG_OK, BL_LAG_WARN), BL_LAG_WARN);
    assert_int_equal(bl_lag_status_worst(BL_LAG_STOP, BL_LAG_STALL), BL_LAG_STOP);
    assert_int_equal(bl_lag_status_worst(BL_LAG_REWIND, BL_LAG_WARN), BL_LAG_REWIND);
    assert_int_equal(bl_lag_status_worst(BL_LAG_ERR, BL_LAG_STOP), BL_LAG_ERR);
    assert_int_equal(bl_lag_status_worst(BL_LAG_OK, BL_LAG_OK), BL_LAG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_window_ring),
        cmocka_unit_test(test_severity_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
