/* test_dlq_track.c - unit tests of the bookkeeping of `ballast dlq`
 * (tools/dlq_track.c): the index of distinct strings; the originals a DLQ
 * holds copies of (the newest selected copy is the one replayed, counted
 * past the highest x-replay-count of all); and the commit position of a
 * replay, which never passes a record that is not settled, however its
 * delivery reports arrive. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dlq_track.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_index(void **state)
{
    dlq_index_t *ix = dlq_index_new();
    char key[32];
    bool added;
    size_t len;
    (void)state;

    assert_non_null(ix);
    assert_int_equal(dlq_index_find(ix, "a", 1), SIZE_MAX);
    assert_int_equal(dlq_index_add(ix, "a", 1, &added), 0);
    assert_true(added);
    assert_int_equal(dlq_index_add(ix, "b\0c", 3, &added), 1);
    assert_true(added);
    assert_int_equal(dlq_index_add(ix, "a", 1, &added), 0);
    assert_false(added);
    /* Bytes, not C strings: "b" is not "b\0c". */
    assert_int_equal(dlq_index_find(ix, "b", 1), SIZE_MAX);
    assert_int_equal(dlq_index_find(ix, "b\0c", 3), 1);
    assert_memory_equal(dlq_index_key(ix, 1, &len), "b\0c", 3);
    assert_int_equal(len, 3);
    /* Many keys: numbers stay in first-seen order across growth. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(dlq_index_add(ix, key, strlen(key), &added), (size_t)i + 2);
        assert_true(added);
    }
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(dlq_index_find(ix, key, strlen(key)), (size_t)i + 2);
        assert_string_equal(dlq_index_key(ix, (size_t)i + 2, &len), key);
    }
    assert_int_equal(dlq_index_count(ix), 5002);
    dlq_index_free(ix);
    dlq_index_free(NULL);
}

static dlq_copy_t copy(int32_t partition, int64_t offset, int64_t replays, int64_t failed_at)
{
    dlq_copy_t c = {partition, offset, replays, failed_at};
    return c;
}

static void test_origins(void **state)
{
    dlq_origins_t *o = dlq_origins_new();
    const dlq_origin_t *e;
    dlq_copy_t c;
    (void)state;

    assert_non_null(o);
    /* orders[1]@42: dead-lettered (0 replays), replayed and failed again
     * (1), and an unselected copy that says 3. */
    c = copy(0, 5, 0, 1000);
    assert_true(dlq_origins_add(o, "orders", 1, 42, &c, true));
    c = copy(0, 9, 1, 2000);
    assert_true(dlq_origins_add(o, "orders", 1, 42, &c, true));
    c = copy(1, 2, 3, 3000);
    assert_true(dlq_origins_add(o, "orders", 1, 42, &c, false));
    e = dlq_origins_find(o, "orders", 1, 42);
    assert_non_null(e);
    assert_int_equal(e->copies, 3);
    assert_int_equal(e->max_replays, 3); /* over all copies, selected or not */
    assert_true(e->chosen_set);
    assert_int_equal(e->chosen.partition, 0); /* the newest selected copy */
    assert_int_equal(e->chosen.offset, 9);

    /* Newest: more replays first, then the later failure, then position. */
    c = copy(1, 7, 2, 100);
    assert_true(dlq_origins_add(o, "orders", 0, 7, &c, true));
    c = copy(0, 3, 1, 900);
    assert_true(dlq_origins_add(o, "orders", 0, 7, &c, true));
    e = dlq_origins_find(o, "orders", 0, 7);
    assert_int_equal(e->chosen.offset, 7);
    c = copy(0, 1, 0, 500);
    assert_true(dlq_origins_add(o, "pay", 0, 1, &c, true));
    c = copy(0, 2, 0, 400);
    assert_true(dlq_origins_add(o, "pay", 0, 1, &c, true));
    e = dlq_origins_find(o, "pay", 0, 1);
    assert_int_equal(e->chosen.offset, 1);
    c = copy(1, 0, 0, 500);
    assert_true(dlq_origins_add(o, "pay", 0, 1, &c, true));
    e = dlq_origins_find(o, "pay", 0, 1);
    assert_int_equal(e->chosen.partition, 1);

    /* Only unselected copies: nothing to replay, but the count is known. */
    c = copy(0, 11, 2, 100);
    assert_true(dlq_origins_add(o, "orders", 2, 1, &c, false));
    e = dlq_origins_find(o, "orders", 2, 1);
    assert_false(e->chosen_set);
    assert_int_equal(e->max_replays, 2);

    /* Originals are told apart by topic, partition and offset. */
    assert_null(dlq_origins_find(o, "orders", 1, 43));
    assert_null(dlq_origins_find(o, "orders", 2, 42));
    assert_null(dlq_origins_find(o, "order", 1, 42));
    dlq_origins_free(o);
}

static void test_progress_waits_for_acknowledgements(void **state)
{
    dlq_progress_t *p = dlq_progress_new(2);
    (void)state;

    assert_non_null(p);
    assert_int_equal(dlq_progress_position(p, 0), -1); /* not started */
    dlq_progress_start(p, 0, 10);
    assert_int_equal(dlq_progress_position(p, 0), 10);
    dlq_progress_settled(p, 0, 10); /* filtered out */
    assert_int_equal(dlq_progress_position(p, 0), 11);
    assert_true(dlq_progress_sent(p, 0, 11));
    dlq_progress_settled(p, 0, 12); /* a duplicate */
    assert_true(dlq_progress_sent(p, 0, 13));
    /* Nothing past the first record not yet acknowledged. */
    assert_int_equal(dlq_progress_position(p, 0), 11);
    dlq_progress_acked(p, 0, 13, true); /* out of order */
    assert_int_equal(dlq_progress_position(p, 0), 11);
    dlq_progress_acked(p, 0, 11, true);
    assert_int_equal(dlq_progress_position(p, 0), 14);
    /* A report for a record never sent changes nothing. */
    dlq_progress_acked(p, 0, 99, true);
    assert_int_equal(dlq_progress_position(p, 0), 14);
    /* Markers after the last record: the end of what was read settles. */
    dlq_progress_end(p, 0, 16);
    assert_int_equal(dlq_progress_position(p, 0), 16);
    assert_int_equal(dlq_progress_held_at(p, 0), -1);
    /* The other partition is its own. */
    assert_int_equal(dlq_progress_position(p, 1), -1);
    dlq_progress_start(p, 1, 0);
    dlq_progress_end(p, 1, 0);
    assert_int_equal(dlq_progress_position(p, 1), 0);
    dlq_progress_free(p);
    dlq_progress_free(NULL);
}

static void test_progress_held_by_a_failure(void **state)
{
    dlq_progress_t *p = dlq_progress_new(1);
    (void)state;

    dlq_progress_start(p, 0, 0);
    assert_true(dlq_progress_sent(p, 0, 0));
    assert_true(dlq_progress_sent(p, 0, 1));
    assert_true(dlq_progress_sent(p, 0, 2));
    dlq_progress_acked(p, 0, 0, true);
    dlq_progress_acked(p, 0, 1, false); /* the delivery failed */
    dlq_progress_acked(p, 0, 2, true);
    /* For good: the next run starts with the failed record. */
    assert_int_equal(dlq_progress_position(p, 0), 1);
    assert_int_equal(dlq_progress_held_at(p, 0), 1);
    dlq_progress_settled(p, 0, 3);
    dlq_progress_end(p, 0, 10);
    assert_int_equal(dlq_progress_position(p, 0), 1);
    /* A held record (nowhere to send it) holds the same way. */
    dlq_progress_free(p);
    p = dlq_progress_new(1);
    dlq_progress_start(p, 0, 5);
    dlq_progress_settled(p, 0, 5);
    assert_true(dlq_progress_hold(p, 0, 6));
    dlq_progress_settled(p, 0, 7);
    assert_int_equal(dlq_progress_position(p, 0), 6);
    assert_int_equal(dlq_progress_held_at(p, 0), 6);
    dlq_progress_free(p);
}

/* Many records, acknowledged in an order unlike the sending one: the
 * position is always the lowest offset not yet acknowledged. */
static void test_progress_many_out_of_order(void **state)
{
    enum { N = 20000 };
    dlq_progress_t *p = dlq_progress_new(1);
    static bool acked[N];
    int64_t lowest = 0;
    (void)state;

    dlq_progress_start(p, 0, 0);
    for (int64_t i = 0; i < N; i++) {
        assert_true(dlq_progress_sent(p, 0, i));
        /* Acknowledge every earlier record whose turn came: a few at a
         * time and out of order, as from several target partitions. */
        if (i % 3 == 2) {
            int64_t a = i - 1, b = i - 2;
            dlq_progress_acked(p, 0, a, true);
            acked[a] = true;
            dlq_progress_acked(p, 0, b, true);
            acked[b] = true;
        }
        while (lowest < N && acked[lowest])
            lowest++;
        assert_int_equal(dlq_progress_position(p, 0), lowest <= i ? lowest : i + 1);
    }
    for (int64_t i = N - 1; i >= 0; i--)
        if (!acked[i])
            dlq_progress_acked(p, 0, i, true);
    assert_int_equal(dlq_progress_position(p, 0), N);
    dlq_progress_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_progress_waits_for_acknowledgements),
        cmocka_unit_test(test_progress_held_by_a_failure),
        cmocka_unit_test(test_progress_many_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
