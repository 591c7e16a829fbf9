/* test_route.c - unit tests of dispatch routing (src/route.h): which worker
 * handles a message under each `ordering`, and which messages must be
 * handled in order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "route.h"

#include <stdio.h>

#define WORKERS 4

/* ordering = partition: a partition's messages all go to its worker,
 * keyed or not; every worker number is in range. */
static void test_partition(void **state)
{
    unsigned rr = 0;
    (void)state;

    for (int32_t p = 0; p < 64; p++) {
        int w = bl_route_partition("orders", p, WORKERS);
        assert_true(w >= 0 && w < WORKERS);
        assert_int_equal(bl_route_partition("orders", p, WORKERS), w); /* stable */
        assert_int_equal(bl_route_message(BL_ORDER_PARTITION, WORKERS, w, "k", 1, &rr), w);
        assert_int_equal(bl_route_message(BL_ORDER_PARTITION, WORKERS, w, NULL, 0, &rr), w);
    }
    assert_int_equal(rr, 0);
}

/* Partitions are spread: 64 partitions use every one of 4 workers. */
static void test_partitions_spread(void **state)
{
    int used[WORKERS] = {0};
    (void)state;

    for (int32_t p = 0; p < 64; p++)
        used[bl_route_partition("payments", p, WORKERS)]++;
    for (int w = 0; w < WORKERS; w++)
        assert_true(used[w] > 0);
}

/* ordering = key: one key, one worker, whatever its partition; keys are
 * spread; a message without a key follows its partition. */
static void test_key(void **state)
{
    int used[WORKERS] = {0};
    unsigned rr = 0;
    char key[16];
    (void)state;

    for (int i = 0; i < 200; i++) {
        int w0, n = snprintf(key, sizeof(key), "cust-%d", i);
        w0 = bl_route_message(BL_ORDER_KEY, WORKERS, 0, key, (size_t)n, &rr);
        assert_true(w0 >= 0 && w0 < WORKERS);
        for (int part_worker = 0; part_worker < WORKERS; part_worker++)
            assert_int_equal(
                bl_route_message(BL_ORDER_KEY, WORKERS, part_worker, key, (size_t)n, &rr), w0);
        used[w0]++;
    }
    for (int w = 0; w < WORKERS; w++)
        assert_true(used[w] > 0);
    assert_int_equal(bl_route_message(BL_ORDER_KEY, WORKERS, 3, NULL, 0, &rr), 3);
    /* An empty key is a key, not a missing one. */
    assert_int_equal(bl_route_message(BL_ORDER_KEY, WORKERS, 3, "", 0, &rr),
                     bl_route_message(BL_ORDER_KEY, WORKERS, 1, "", 0, &rr));
}

/* ordering = none: round-robin, whatever the key or partition. */
static void test_none(void **state)
{
    unsigned rr = 0;
    (void)state;

    for (int i = 0; i < 12; i++)
        assert_int_equal(bl_route_message(BL_ORDER_NONE, WORKERS, 2, "same", 4, &rr),
                         i % WORKERS);
}

/* One worker takes everything, in every mode. */
static void test_one_worker(void **state)
{
    unsigned rr = 0;
    (void)state;

    assert_int_equal(bl_route_partition("t", 7, 1), 0);
    assert_int_equal(bl_route_message(BL_ORDER_KEY, 1, 0, "k", 1, &rr), 0);
    assert_int_equal(bl_route_message(BL_ORDER_NONE, 1, 0, NULL, 0, &rr), 0);
    assert_int_equal(bl_route_message(BL_ORDER_PARTITION, 1, 0, NULL, 0, &rr), 0);
}

/* Which messages must keep their order: a partition's under partition; a
 * key's under key (a partition's when either has no key); none under none. */
static void test_ordered(void **state)
{
    (void)state;

    assert_true(bl_route_ordered(BL_ORDER_PARTITION, true, "a", 1, "b", 1));
    assert_false(bl_route_ordered(BL_ORDER_PARTITION, false, "a", 1, "a", 1));
    assert_true(bl_route_ordered(BL_ORDER_KEY, false, "a", 1, "a", 1));
    assert_false(bl_route_ordered(BL_ORDER_KEY, true, "a", 1, "b", 1));
    assert_false(bl_route_ordered(BL_ORDER_KEY, true, "ab", 2, "a", 1));
    assert_true(bl_route_ordered(BL_ORDER_KEY, true, NULL, 0, "a", 1));
    assert_false(bl_route_ordered(BL_ORDER_KEY, false, NULL, 0, "a", 1));
    assert_true(bl_route_ordered(BL_ORDER_KEY, true, "a", 1, NULL, 0));
    assert_false(bl_route_ordered(BL_ORDER_NONE, true, "a", 1, "a", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition),  cmocka_unit_test(test_partitions_spread),
        cmocka_unit_test(test_key),        cmocka_unit_test(test_none),
        cmocka_unit_test(test_one_worker), cmocka_unit_test(test_ordered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
