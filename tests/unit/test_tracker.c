/* test_tracker.c - unit tests of the per-partition offset tracker
 * (src/tracker.c): committable = lowest unfinished offset, or last+1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tracker.h"

#include <stdlib.h>
#include <string.h>

static uint64_t add(bl_tracker_t *t, int64_t offset)
{
    uint64_t seq = UINT64_MAX;
    assert_int_equal(bl_tracker_add(t, offset, &seq), 0);
    return seq;
}

static void test_empty(void **state)
{
    bl_tracker_t t;
    (void)state;

    bl_tracker_init(&t);
    assert_int_equal(bl_tracker_committable(&t), -1);
    assert_int_equal(bl_tracker_pending(&t), 0);
    bl_tracker_done(&t, 0); /* nothing to mark: ignored */
    bl_tracker_done(&t, 12345);
    assert_int_equal(bl_tracker_committable(&t), -1);
    bl_tracker_free(&t);
    bl_tracker_free(&t); /* free leaves an empty tracker: freeing again is fine */
    assert_int_equal(bl_tracker_committable(&t), -1);
}

static void test_in_order(void **state)
{
    bl_tracker_t t;
    uint64_t seq[5];
    (void)state;

    bl_tracker_init(&t);
    for (int i = 0; i < 5; i++)
        seq[i] = add(&t, 100 + i);
    assert_int_equal(bl_tracker_pending(&t), 5);
    assert_int_equal(bl_tracker_committable(&t), 100);
    for (int i = 0; i < 5; i++) {
        bl_tracker_done(&t, seq[i]);
        assert_int_equal(bl_tracker_committable(&t), 100 + i + 1);
        assert_int_equal(bl_tracker_pending(&t), (size_t)(4 - i));
    }
    /* all done: stays at last+1 */
    assert_int_equal(bl_tracker_committable(&t), 105);
    /* sequence numbers are distinct and increasing */
    for (int i = 1; i < 5; i++)
        assert_true(seq[i] > seq[i - 1]);
    bl_tracker_free(&t);
}

static void test_out_of_order(void **state)
{
    bl_tracker_t t;
    uint64_t s0, s1, s2, s3;
    (void)state;

    bl_tracker_init(&t);
    s0 = add(&t, 0);
    s1 = add(&t, 1);
    s2 = add(&t, 2);
    s3 = add(&t, 3);
    bl_tracker_done(&t, s2);
    assert_int_equal(bl_tracker_committable(&t), 0);
    bl_tracker_done(&t, s3);
    assert_int_equal(bl_tracker_committable(&t), 0);
    assert_int_equal(bl_tracker_pending(&t), 4);
    bl_tracker_done(&t, s0);
    assert_int_equal(bl_tracker_committable(&t), 1); /* 1 is still running */
    assert_int_equal(bl_tracker_pending(&t), 3);
    bl_tracker_done(&t, s1);
    assert_int_equal(bl_tracker_committable(&t), 4);
    assert_int_equal(bl_tracker_pending(&t), 0);
    bl_tracker_free(&t);
}

static void test_gaps(void **state)
{
    bl_tracker_t t;
    uint64_t s10, s12, s15;
    (void)state;

    bl_tracker_init(&t);
    s10 = add(&t, 10);
    s12 = add(&t, 12);
    s15 = add(&t, 15);
    assert_int_equal(bl_tracker_committable(&t), 10);
    bl_tracker_done(&t, s10);
    assert_int_equal(bl_tracker_committable(&t), 12);
    bl_tracker_done(&t, s15);
    assert_int_equal(bl_tracker_committable(&t), 12);
    bl_tracker_done(&t, s12);
    assert_int_equal(bl_tracker_committable(&t), 16);
    /* more after a gap */
    s10 = add(&t, 1000);
    assert_int_equal(bl_tracker_committable(&t), 1000);
    bl_tracker_done(&t, s10);
    assert_int_equal(bl_tracker_committable(&t), 1001);
    bl_tracker_free(&t);
}

static void test_first_offset_zero(void **state)
{
    bl_tracker_t t;
    uint64_t s;
    (void)state;

    bl_tracker_init(&t);
    s = add(&t, 0);
    assert_int_equal(bl_tracker_committable(&t), 0);
    bl_tracker_done(&t, s);
    assert_int_equal(bl_tracker_committable(&t), 1);
    bl_tracker_free(&t);
}

static void test_add_rejects_not_increasing(void **state)
{
    bl_tracker_t t;
    uint64_t seq = 77, s;
    (void)state;

    bl_tracker_init(&t);
    assert_int_equal(bl_tracker_add(&t, -1, &seq), -1); /* not above "none" */
    assert_int_equal(bl_tracker_add(&t, -5, &seq), -1);
    s = add(&t, 5);
    assert_int_equal(bl_tracker_add(&t, 5, &seq), -1); /* duplicate */
    assert_int_equal(bl_tracker_add(&t, 4, &seq), -1); /* lower */
    assert_int_equal(bl_tracker_add(&t, 0, &seq), -1);
    assert_int_equal(bl_tracker_pending(&t), 1);
    /* rejected adds changed nothing */
    assert_int_equal(bl_tracker_committable(&t), 5);
    bl_tracker_done(&t, s);
    assert_int_equal(bl_tracker_committable(&t), 6);
    /* still refused after the ring emptied: last offset is remembered */
    assert_int_equal(bl_tracker_add(&t, 5, &seq), -1);
    assert_int_equal(bl_tracker_committable(&t), 6);
    add(&t, 6);
    assert_int_equal(bl_tracker_committable(&t), 6);
    bl_tracker_free(&t);
}

static void test_stale_and_bogus_seq_ignored(void **state)
{
    bl_tracker_t t;
    uint64_t s0, s1, s2, s3;
    (void)state;

    bl_tracker_init(&t);
    s0 = add(&t, 0);
    s1 = add(&t, 1);
    bl_tracker_done(&t, s0);
    bl_tracker_done(&t, s1);
    assert_int_equal(bl_tracker_committable(&t), 2); /* s0, s1 retired */
    s2 = add(&t, 2);
    s3 = add(&t, 3);
    /* done() again with retired sequence numbers: ignored, 2 stays pending */
    bl_tracker_done(&t, s0);
    bl_tracker_done(&t, s1);
    assert_int_equal(bl_tracker_committable(&t), 2);
    assert_int_equal(bl_tracker_pending(&t), 2);
    /* a sequence number never handed out: ignored */
    bl_tracker_done(&t, s3 + 1);
    bl_tracker_done(&t, s3 + 1000);
    bl_tracker_done(&t, UINT64_MAX);
    assert_int_equal(bl_tracker_committable(&t), 2);
    /* done twice is the same as once */
    bl_tracker_done(&t, s3);
    bl_tracker_done(&t, s3);
    assert_int_equal(bl_tracker_committable(&t), 2);
    bl_tracker_done(&t, s2);
    assert_int_equal(bl_tracker_committable(&t), 4);
    /* the processed count saw each offset once, whatever was repeated */
    assert_int_equal(t.finished, 4);
    bl_tracker_free(&t);
}

/* The ring wraps (head moves), then grows while wrapped: order is kept. */
static void test_grow_while_wrapped(void **state)
{
    bl_tracker_t t;
    uint64_t seq[300];
    int64_t off = 0;
    (void)state;

    bl_tracker_init(&t);
    for (int i = 0; i < 64; i++)
        seq[i] = add(&t, off++);
    for (int i = 0; i < 40; i++)
        bl_tracker_done(&t, seq[i]);
    assert_int_equal(bl_tracker_committable(&t), 40);
    /* 24 pending, 40 free slots at the front: these wrap */
    for (int i = 64; i < 104; i++)
        seq[i] = add(&t, off++);
    /* now full and wrapped: the next one grows the ring */
    for (int i = 104; i < 300; i++)
        seq[i] = add(&t, off++);
    assert_int_equal(bl_tracker_pending(&t), 260);
    assert_int_equal(bl_tracker_committable(&t), 40);
    /* finish all but 150, in reverse */
    for (int i = 299; i >= 40; i--)
        if (i != 150)
            bl_tracker_done(&t, seq[i]);
    assert_int_equal(bl_tracker_committable(&t), 150);
    assert_int_equal(bl_tracker_pending(&t), 150);
    bl_tracker_done(&t, seq[150]);
    assert_int_equal(bl_tracker_committable(&t), 300);
    bl_tracker_free(&t);
}

/* ---- randomised against a reference model ------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

typedef struct model {
    int64_t *offset;
    uint64_t *seq;
    unsigned char *done;
    size_t count;
} model_t;

/* The lowest unfinished offset, or last+1, or -1. */
static int64_t model_committable(const model_t *m)
{
    for (size_t i = 0; i < m->count; i++)
        if (!m->done[i])
            return m->offset[i];
    return m->count ? m->offset[m->count - 1] + 1 : -1;
}

static size_t model_pending(const model_t *m)
{
    for (size_t i = 0; i < m->count; i++)
        if (!m->done[i])
            return m->count - i;
    return 0;
}

/* @p n offsets with random gaps; adds and completions interleaved (a random
 * window of received-not-finished work), completion order random. */
static void run_random(size_t n, size_t window)
{
    model_t m = {calloc(n, sizeof(int64_t)), calloc(n, sizeof(uint64_t)),
                 calloc(n, 1), 0};
    size_t *open = calloc(n, sizeof(size_t)), nopen = 0;
    bl_tracker_t t;
    int64_t next = (int64_t)(rng() % 100);
    size_t steps = 0;

    assert_non_null(m.offset);
    assert_non_null(open);
    bl_tracker_init(&t);
    while (m.count < n || nopen) {
        bool do_add = m.count < n && (nopen < window ? rng() % 3 != 0 : false);
        if (!nopen && m.count < n)
            do_add = true;
        if (do_add) {
            m.offset[m.count] = next;
            m.seq[m.count] = add(&t, next);
            open[nopen++] = m.count;
            m.count++;
            next += 1 + (int64_t)(rng() % 4 == 0 ? rng() % 10 : 0);
        } else {
            size_t k = (size_t)(rng() % nopen);
            size_t idx = open[k];
            open[k] = open[--nopen];
            m.done[idx] = 1;
            bl_tracker_done(&t, m.seq[idx]);
            if (rng() % 8 == 0) /* a stale repeat changes nothing */
                bl_tracker_done(&t, m.seq[idx]);
        }
        steps++;
        /* not every step: committable() also retires, so calling it at
         * varied moments exercises both paths */
        if (rng() % 2 == 0 || !nopen) {
            int64_t want = model_committable(&m), got = bl_tracker_committable(&t);
            if (want != got)
                fail_msg("step %zu: committable %lld, model %lld", steps,
                         (long long)got, (long long)want);
            assert_int_equal(bl_tracker_pending(&t), model_pending(&m));
            assert_int_equal(t.finished, m.count - nopen);
        }
    }
    assert_int_equal(t.finished, n);
    assert_int_equal(bl_tracker_committable(&t), m.offset[n - 1] + 1);
    assert_int_equal(bl_tracker_pending(&t), 0);
    bl_tracker_free(&t);
    free(m.offset);
    free(m.seq);
    free(m.done);
    free(open);
}

static void test_random_small_window(void **state)
{
    (void)state;
    run_random(10000, 5);
}

static void test_random_large_window(void **state)
{
    (void)state;
    run_random(10000, 3000); /* grows the ring well past 64 */
}

/* All 10,000 added first (ring grows to 16384), finished in random order,
 * committable checked after every completion. */
static void test_random_all_added_first(void **state)
{
    enum { N = 10000 };
    bl_tracker_t t;
    uint64_t *seq = calloc(N, sizeof(uint64_t));
    size_t *order = calloc(N, sizeof(size_t));
    unsigned char *done = calloc(N, 1);
    size_t low = 0;
    (void)state;

    assert_non_null(seq);
    assert_non_null(order);
    assert_non_null(done);
    bl_tracker_init(&t);
    for (size_t i = 0; i < N; i++) {
        seq[i] = add(&t, (int64_t)(i * 3)); /* gaps of 2 */
        order[i] = i;
    }
    for (size_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng() % (i + 1)), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (size_t k = 0; k < N; k++) {
        int64_t want;
        done[order[k]] = 1;
        bl_tracker_done(&t, seq[order[k]]);
        while (low < N && done[low])
            low++;
        want = low < N ? (int64_t)(low * 3) : (int64_t)((N - 1) * 3 + 1);
        if (bl_tracker_committable(&t) != want)
            fail_msg("after %zu completions: committable %lld, expected %lld", k + 1,
                     (long long)bl_tracker_committable(&t), (long long)want);
        assert_int_equal(bl_tracker_pending(&t), N - low);
    }
    bl_tracker_free(&t);
    free(seq);
    free(order);
    free(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_first_offset_zero),
        cmocka_unit_test(test_add_rejects_not_increasing),
        cmocka_unit_test(test_stale_and_bogus_seq_ignored),
        cmocka_unit_test(test_grow_while_wrapped),
        cmocka_unit_test(test_random_small_window),
        cmocka_unit_test(test_random_large_window),
        cmocka_unit_test(test_random_all_added_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
