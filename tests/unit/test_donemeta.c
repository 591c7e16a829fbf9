/* test_donemeta.c - unit tests of the commit metadata that records offsets
 * finished out of order (src/donemeta.c): what a restart may skip.
 *
 * The one property that matters: a decode never marks an offset that was
 * not finished, whatever the metadata says (foreign, garbled, written for
 * another offset, cut at the size bound). Skipping too little only redoes
 * work; skipping too much loses a message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "donemeta.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tracker holding offsets first, first+1, ... (or the given list), with
 * the ones done[] says marked finished. */
typedef struct tracked {
    bl_tracker_t t;
    int64_t committed; /* bl_tracker_committable() after marking */
} tracked_t;

static void track(tracked_t *tr, const int64_t *offsets, const bool *done, size_t n)
{
    uint64_t *seqs = malloc((n ? n : 1) * sizeof(*seqs));

    assert_non_null(seqs);
    bl_tracker_init(&tr->t);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bl_tracker_add(&tr->t, offsets[i], &seqs[i]), 0);
    for (size_t i = 0; i < n; i++)
        if (done[i])
            bl_tracker_done(&tr->t, seqs[i]);
    tr->committed = bl_tracker_committable(&tr->t);
    free(seqs);
}

/* The offsets first .. first+n-1. */
static int64_t *consecutive(int64_t first, size_t n)
{
    int64_t *o = malloc(n * sizeof(*o));

    assert_non_null(o);
    for (size_t i = 0; i < n; i++)
        o[i] = first + (int64_t)i;
    return o;
}

/* Encodes @p tr, decodes the result for the same committed offset and
 * checks the one property: nothing unfinished is in the set. Also: the
 * text fits the bound, and without truncation the set is exactly the
 * finished offsets above the committed one; with it, a prefix of them.
 * @returns the highest offset in the set (committed when empty). */
static int64_t roundtrip(const tracked_t *tr, const int64_t *offsets, const bool *done,
                         size_t n, bool *truncatedp)
{
    char *meta = bl_donemeta_encode(&tr->t, tr->committed, truncatedp);
    bl_skipset_t skip;
    int64_t highest = tr->committed, last = n ? offsets[n - 1] : tr->committed;
    bool any_above = false, missing = false;

    for (size_t i = 0; i < n; i++)
        any_above = any_above || (done[i] && offsets[i] > tr->committed);
    if (!meta) {
        /* Nothing to record, or the first finished offset is past the bound. */
        assert_int_equal(*truncatedp, any_above);
        return highest;
    }
    assert_true(strlen(meta) <= BL_DONEMETA_MAX);
    assert_true(bl_donemeta_decode(meta, strlen(meta), tr->committed, &skip));
    /* Only for the offset it was written for. */
    {
        bl_skipset_t other;
        assert_false(bl_donemeta_decode(meta, strlen(meta), tr->committed + 1, &other));
        assert_null(other.bits);
        if (tr->committed > 0)
            assert_false(
                bl_donemeta_decode(meta, strlen(meta), tr->committed - 1, &other));
    }
    for (size_t i = 0; i < n; i++) {
        bool has = bl_skipset_has(&skip, offsets[i]);
        if (has && !done[i])
            fail_msg("offset %lld is unfinished, yet the metadata says skip it (%s)",
                     (long long)offsets[i], *truncatedp ? "truncated" : "complete");
        if (has)
            highest = offsets[i];
    }
    /* Offsets never received (gaps) and the ones past the end: not in it. */
    for (int64_t o = tr->committed - 2, i = 0; o <= last + 20; o++) {
        while ((size_t)i < n && offsets[i] < o)
            i++;
        if (bl_skipset_has(&skip, o) && !((size_t)i < n && offsets[i] == o && done[i]))
            fail_msg("offset %lld was not finished, yet the metadata says skip it",
                     (long long)o);
    }
    /* Completeness: every finished offset up to the highest one kept. */
    for (size_t i = 0; i < n; i++)
        if (done[i] && offsets[i] > tr->committed && offsets[i] <= highest &&
            !bl_skipset_has(&skip, offsets[i]))
            missing = true;
    assert_false(missing);
    if (!*truncatedp)
        for (size_t i = 0; i < n; i++)
            if (done[i] && offsets[i] > tr->committed)
                assert_true(bl_skipset_has(&skip, offsets[i]));
    bl_skipset_free(&skip);
    free(meta);
    return highest;
}

/* ---- foreign and garbled metadata ----------------------------------------- */

static void expect_refused(const char *meta, size_t len, int64_t committed)
{
    bl_skipset_t skip;

    skip.bits = (uint8_t *)&skip; /* must be cleared */
    skip.nbits = 99;
    if (bl_donemeta_decode(meta, len, committed, &skip))
        fail_msg("accepted \"%.*s\" for offset %lld", (int)(len > 80 ? 80 : len), meta,
                 (long long)committed);
    assert_null(skip.bits);
    assert_int_equal(skip.nbits, 0);
    /* committed - 1 up to 64 above it, stopping at INT64_MAX. */
    for (int64_t o = committed - 1;; o++) {
        assert_false(bl_skipset_has(&skip, o));
        if (o == INT64_MAX || o - committed >= 64)
            break;
    }
}

static void test_foreign_or_garbled_skips_nothing(void **state)
{
    /* "AQ==" is the bitmap 0x01: offset committed+1. */
    static const char *const refused[] = {
        "",
        "bl1",
        "bl1:",
        "bl1:5",
        "bl1:5:",
        "bl1::AQ==",
        "bl1:5x:AQ==",           /* trailing garbage in the number */
        "bl1:5x:",
        "bl1: 5:AQ==",           /* space */
        "bl1:5 :AQ==",
        "bl1:+5:AQ==",           /* sign */
        "bl1:-5:AQ==",
        "bl1:05:AQ==",           /* leading zero */
        "bl1:0x5:AQ==",
        "bl1:4:AQ==",            /* written for another offset */
        "bl1:6:AQ==",
        "bl2:5:AQ==",            /* another version */
        "BL1:5:AQ==",
        "bl1:5:AQ",              /* unpadded */
        "bl1:5:AQ=",
        "bl1:5:AR==",            /* non-canonical trailing bits */
        "bl1:5:A=Q=",
        "bl1:5:AQ==\n",
        "bl1:5:AQ== ",
        "bl1:5:AQ==AQ==",        /* padding inside */
        "bl1:5:AA==",            /* a bitmap that marks nothing: never written */
        "bl1:5:AQA=",            /* ... or ends in a zero byte */
        "bl1:5:!!!!",
        "bl1:5:AQ==:",
        "{\"ts\":1700000000000}", /* someone else's metadata */
        "5:AQ==",
    };
    char big[BL_DONEMETA_MAX + 64];
    (void)state;

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        expect_refused(refused[i], strlen(refused[i]), 5);
    /* A NUL inside, and a length that stops short of the padding. */
    expect_refused("bl1:5:A\0==", 10, 5);
    expect_refused("bl1:5:AQ==", 9, 5);
    /* Offsets that overflow int64_t must not pass for INT64_MAX. */
    expect_refused("bl1:9223372036854775808:AQ==", 28, INT64_MAX);
    expect_refused("bl1:99999999999999999999:AQ==", 29, INT64_MAX);
    /* A negative committed offset (none yet) has no metadata. */
    expect_refused("bl1:5:AQ==", 10, -1);
    expect_refused(NULL, 0, 5);
    /* Well formed but longer than the encoder ever writes: not ours. */
    {
        size_t n = snprintf(big, sizeof(big), "bl1:5:");
        while (n + 4 <= BL_DONEMETA_MAX + 8)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "////");
        assert_true(n > BL_DONEMETA_MAX);
        expect_refused(big, n, 5);
    }
}

static void test_accepts_exactly_what_is_written(void **state)
{
    bl_skipset_t skip;
    (void)state;

    assert_true(bl_donemeta_decode("bl1:5:AQ==", 10, 5, &skip));
    assert_false(bl_skipset_has(&skip, 5)); /* the committed offset itself: redo */
    assert_true(bl_skipset_has(&skip, 6));
    assert_false(bl_skipset_has(&skip, 7));
    assert_false(bl_skipset_has(&skip, 14));
    bl_skipset_free(&skip);
    assert_true(bl_donemeta_decode("bl1:0:gA==", 10, 0, &skip)); /* bit 7: offset 8 */
    for (int64_t o = 0; o < 20; o++)
        assert_int_equal(bl_skipset_has(&skip, o), o == 8);
    bl_skipset_free(&skip);
    assert_true(bl_donemeta_decode("bl1:9223372036854775806:AQ==", 28,
                                   INT64_MAX - 1, &skip));
    assert_true(bl_skipset_has(&skip, INT64_MAX));
    bl_skipset_free(&skip);
}

/* ---- what was encoded --------------------------------------------------------- */

static void test_roundtrip_out_of_order(void **state)
{
    /* 100 unfinished; 101, 103, 107 done; 102 and 104..106 not. */
    int64_t *offsets = consecutive(100, 8);
    bool done[8] = {false, true, false, true, false, false, false, true};
    bool truncated;
    tracked_t tr;
    (void)state;

    track(&tr, offsets, done, 8);
    assert_int_equal(tr.committed, 100);
    assert_int_equal(roundtrip(&tr, offsets, done, 8, &truncated), 107);
    assert_false(truncated);
    bl_tracker_free(&tr.t);
    free(offsets);
}

static void test_roundtrip_with_gaps(void **state)
{
    /* Compaction or transaction markers leave gaps: 3, 4 and 6..9 never
     * arrive, and must not be marked either. */
    int64_t offsets[] = {0, 1, 2, 5, 10, 11, 40};
    bool done[] = {true, false, true, true, false, true, true};
    bool truncated;
    tracked_t tr;
    (void)state;

    track(&tr, offsets, done, 7);
    assert_int_equal(tr.committed, 1);
    assert_int_equal(roundtrip(&tr, offsets, done, 7, &truncated), 40);
    assert_false(truncated);
    bl_tracker_free(&tr.t);
}

static void test_nothing_beyond_committed_writes_nothing(void **state)
{
    int64_t *offsets = consecutive(7, 4);
    bool all[4] = {true, true, true, true}, none[4] = {false};
    bool truncated = true;
    tracked_t tr;
    (void)state;

    track(&tr, offsets, all, 4);
    assert_int_equal(tr.committed, 11);
    assert_null(bl_donemeta_encode(&tr.t, tr.committed, &truncated));
    assert_false(truncated);
    bl_tracker_free(&tr.t);
    track(&tr, offsets, none, 4);
    assert_null(bl_donemeta_encode(&tr.t, tr.committed, &truncated));
    bl_tracker_free(&tr.t);
    free(offsets);
}

/* The number of offsets above the committed one that fit, found by
 * encoding a run far longer than the bound: it must truncate. */
static int64_t capacity(int64_t committed)
{
    size_t n = 40000;
    int64_t *offsets = consecutive(committed, n);
    bool *done = malloc(n * sizeof(*done)), truncated;
    tracked_t tr;
    int64_t highest;

    assert_non_null(done);
    for (size_t i = 0; i < n; i++)
        done[i] = i > 0;
    track(&tr, offsets, done, n);
    assert_int_equal(tr.committed, committed);
    highest = roundtrip(&tr, offsets, done, n, &truncated);
    assert_true(truncated); /* the bound is really reached */
    assert_true(highest < committed + (int64_t)n - 1);
    bl_tracker_free(&tr.t);
    free(offsets);
    free(done);
    return highest - committed;
}

/* At the bound: the last offset that fits is kept, the first that does not
 * is dropped (and redone), and an unfinished offset right there is never
 * marked. With a 19-digit committed offset the text is at its longest. */
static void test_truncation_boundary(void **state)
{
    const int64_t committed = INT64_MAX - 100000;
    int64_t cap = capacity(committed);
    size_t n = (size_t)cap + 3;
    int64_t *offsets = consecutive(committed, n);
    bool *done = calloc(n, sizeof(*done)), truncated;
    char *meta;
    tracked_t tr;
    (void)state;

    assert_non_null(done);
    assert_int_equal(capacity(0), cap); /* the bound is in bytes of bitmap */
    print_message("metadata bound: %lld offsets above the committed one\n",
                  (long long)cap);
    assert_true(cap > 16000); /* "about 17,000 offsets" (docs/design.md) */

    /* Only the last offset that fits is finished: kept, not truncated, and
     * the text is at (not over) the 3,000-byte bound. */
    done[cap] = true;
    track(&tr, offsets, done, n);
    meta = bl_donemeta_encode(&tr.t, tr.committed, &truncated);
    assert_non_null(meta);
    assert_false(truncated);
    assert_true(strlen(meta) <= BL_DONEMETA_MAX && strlen(meta) > BL_DONEMETA_MAX - 64);
    free(meta);
    assert_int_equal(roundtrip(&tr, offsets, done, n, &truncated), committed + cap);
    bl_tracker_free(&tr.t);

    /* One past it finished too: dropped, and the encoder says so. */
    done[cap + 1] = true;
    track(&tr, offsets, done, n);
    assert_int_equal(roundtrip(&tr, offsets, done, n, &truncated), committed + cap);
    assert_true(truncated);
    bl_tracker_free(&tr.t);

    /* Everything finished except the offset at the bound and the committed
     * one: the one at the bound is never marked; the rest up to it are. */
    for (size_t i = 1; i < n; i++)
        done[i] = (int64_t)i != cap;
    track(&tr, offsets, done, n);
    assert_int_equal(roundtrip(&tr, offsets, done, n, &truncated), committed + cap - 1);
    assert_true(truncated);
    bl_tracker_free(&tr.t);

    /* ... and the one just below it. */
    for (size_t i = 1; i < n; i++)
        done[i] = (int64_t)i != cap - 1;
    track(&tr, offsets, done, n);
    assert_int_equal(roundtrip(&tr, offsets, done, n, &truncated), committed + cap);
    assert_true(truncated);
    bl_tracker_free(&tr.t);
    free(offsets);
    free(done);
}

/* Random trackers: gaps, done patterns of every density, sizes on both
 * sides of the bound. */
static void test_random_roundtrips(void **state)
{
    unsigned seed = 12345;
    (void)state;

    for (int round = 0; round < 300; round++) {
        size_t n = (size_t)(rand_r(&seed) % (round % 10 == 0 ? 30000 : 300)) + 1;
        int64_t *offsets = malloc(n * sizeof(*offsets)), next;
        bool *done = malloc(n * sizeof(*done)), truncated;
        int density = rand_r(&seed) % 101, gaps = rand_r(&seed) % 4;
        tracked_t tr;

        assert_non_null(offsets);
        assert_non_null(done);
        next = rand_r(&seed) % 2 ? rand_r(&seed) : INT64_MAX - 200000;
        for (size_t i = 0; i < n; i++) {
            offsets[i] = next;
            next += 1 + (gaps ? rand_r(&seed) % (gaps * 2) : 0);
            done[i] = rand_r(&seed) % 100 < density;
        }
        track(&tr, offsets, done, n);
        roundtrip(&tr, offsets, done, n, &truncated);
        bl_tracker_free(&tr.t);
        free(offsets);
        free(done);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_foreign_or_garbled_skips_nothing),
        cmocka_unit_test(test_accepts_exactly_what_is_written),
        cmocka_unit_test(test_roundtrip_out_of_order),
        cmocka_unit_test(test_roundtrip_with_gaps),
        cmocka_unit_test(test_nothing_beyond_committed_writes_nothing),
        cmocka_unit_test(test_truncation_boundary),
        cmocka_unit_test(test_random_roundtrips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
