/*
 * fuzz_donemeta.c - the commit metadata of offsets finished out of order
 * (src/donemeta.c): what a restart may skip without running the handler.
 *
 * The first byte picks one of two checks (even: parse, odd: round trip):
 *  - parse: bytes 1..8 are the committed offset (big-endian), the rest is
 *    metadata as the broker returned it. bl_donemeta_decode() must accept
 *    exactly what the encoder writes for that offset - "bl1:", the offset
 *    in canonical decimal, ':', canonical padded base64 (checked with an
 *    independent decoder) of a bitmap whose last byte is not zero, at most
 *    BL_DONEMETA_MAX bytes - and decode it bit for bit; anything else
 *    (foreign or garbled) is refused with an empty set: skip nothing.
 *  - round trip: the rest of the input builds a tracker (offsets with gaps,
 *    runs of up to 20,000 offsets so that the size bound is reached, done
 *    or not); decode(encode(tracker)) must never mark an offset that is not
 *    finished, must keep every finished offset up to the highest it keeps
 *    (all of them unless the encoder said it truncated), fits the bound,
 *    and is refused for any other committed offset.
 */
#include "donemeta.h"
#include "internal.h"

#include "fuzz_base64_ref.h"
#include "fuzz_common.h"

#include <inttypes.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- parse ----------------------------------------------------------------- */

/* The independent reading: is @p meta exactly what the encoder writes for
 * @p committed? Then *bytesp is its bitmap (caller frees). */
static bool ref_accepts(const char *meta, size_t len, int64_t committed,
                        unsigned char **bytesp, size_t *nbytesp)
{
    char prefix[48];
    size_t plen, blen;
    const char *b64;
    unsigned char *bytes;
    size_t nbytes;
    int last;

    *bytesp = NULL;
    if (committed < 0 || len > BL_DONEMETA_MAX)
        return false;
    plen = (size_t)snprintf(prefix, sizeof(prefix), "bl1:%" PRId64 ":", committed);
    if (len < plen || memcmp(meta, prefix, plen))
        return false;
    b64 = meta + plen;
    blen = len - plen;
    if (!blen || blen % 4 || !ref_b64_decode(b64, blen, &bytes, &nbytes))
        return false;
    /* Canonical: the unused low bits of the last sextet are zero. */
    last = nbytes % 3 == 1 ? ref_b64_digit((unsigned char)b64[blen - 3]) & 0x0f
           : nbytes % 3 == 2 ? ref_b64_digit((unsigned char)b64[blen - 2]) & 0x03
                             : 0;
    if (!nbytes || last || !bytes[nbytes - 1]) {
        free(bytes);
        return false;
    }
    *bytesp = bytes;
    *nbytesp = nbytes;
    return true;
}

static void check_parse(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    int64_t committed = (int64_t)fr_uint(&r, 8);
    const char *meta = (const char *)r.p;
    unsigned char *want;
    size_t nwant = 0;
    bool ref = ref_accepts(meta, r.left, committed, &want, &nwant);
    bl_skipset_t skip;
    bool ok = bl_donemeta_decode(meta, r.left, committed, &skip);

    FUZZ_CHECK(ok == ref, "decode says %d, the reference %d, for offset %" PRId64, ok, ref,
               committed);
    if (!ok) {
        FUZZ_CHECK(!skip.bits && !skip.nbits, "refused, yet a set");
        FUZZ_CHECK(!bl_skipset_has(&skip, committed), "refused, yet skips");
        return;
    }
    FUZZ_CHECK(skip.base == committed && skip.nbits == nwant * 8 &&
                   !memcmp(skip.bits, want, nwant),
               "decoded bitmap differs from the reference");
    FUZZ_CHECK(!bl_skipset_has(&skip, committed) && !bl_skipset_has(&skip, committed - 1),
               "skips the committed offset or below");
    for (size_t bit = 0; bit < nwant * 8 + 16; bit++) {
        bool set = bit < nwant * 8 && (want[bit / 8] >> (bit % 8) & 1);
        if ((uint64_t)committed + 1 + bit > (uint64_t)INT64_MAX)
            break;
        FUZZ_CHECK(bl_skipset_has(&skip, committed + 1 + (int64_t)bit) == set,
                   "offset %" PRId64 ": skip %d, bitmap %d", committed + 1 + (int64_t)bit,
                   !set, set);
    }
    bl_skipset_free(&skip);
    free(want);
}

/* ---- round trip --------------------------------------------------------------- */

#define MAX_OFFSETS 40000 /* twice the bound and more */

typedef struct built {
    int64_t *offsets;
    bool *done;
    size_t n, cap;
    bl_tracker_t t;
    int64_t committed;
} built_t;

static void push(built_t *b, int64_t offset, bool done)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->offsets = realloc(b->offsets, b->cap * sizeof(*b->offsets));
        b->done = realloc(b->done, b->cap * sizeof(*b->done));
        if (!b->offsets || !b->done)
            abort();
    }
    b->offsets[b->n] = offset;
    b->done[b->n++] = done;
}

/* Offsets from the input: a single offset after a gap of 0..15 (done or
 * not), or a run of 1..20,000 consecutive offsets with a done pattern. */
static void build(fuzz_reader_t *r, built_t *b)
{
    int64_t next = (int64_t)(fr_uint(r, 8) & (((uint64_t)1 << 62) - 1));
    uint64_t *seqs;

    memset(b, 0, sizeof(*b));
    while (r->left && b->n < MAX_OFFSETS) {
        uint8_t op = fr_u8(r);
        if (op & 0x80) {
            size_t run = (size_t)(fr_uint(r, 2) % 20000) + 1;
            for (size_t i = 0; i < run && b->n < MAX_OFFSETS; i++)
                push(b, next++,
                     (op & 3) == 1   ? true
                     : (op & 3) == 2 ? i % 2 == 0
                     : (op & 3) == 3 ? i + 1 < run
                                     : false);
        } else {
            next += op & 0x0f;
            push(b, next++, op & 0x10);
        }
    }
    if (!(seqs = malloc((b->n ? b->n : 1) * sizeof(*seqs))))
        abort();
    bl_tracker_init(&b->t);
    for (size_t i = 0; i < b->n; i++)
        FUZZ_CHECK(!bl_tracker_add(&b->t, b->offsets[i], &seqs[i]), "tracker add");
    for (size_t i = 0; i < b->n; i++)
        if (b->done[i])
            bl_tracker_done(&b->t, seqs[i]);
    b->committed = bl_tracker_committable(&b->t);
    free(seqs);
}

static void check_roundtrip(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    built_t b;
    bool truncated = false, any_above = false, missing = false;
    char *meta;
    bl_skipset_t skip, other;
    int64_t highest;

    build(&r, &b);
    meta = b.committed >= 0 ? bl_donemeta_encode(&b.t, b.committed, &truncated) : NULL;
    for (size_t i = 0; i < b.n; i++)
        any_above = any_above || (b.done[i] && b.offsets[i] > b.committed);
    if (!meta) {
        /* Nothing to record, or the first finished offset is past the bound. */
        FUZZ_CHECK(truncated == any_above, "no metadata, truncated %d, finished above %d",
                   truncated, any_above);
        goto out;
    }
    FUZZ_CHECK(strlen(meta) <= BL_DONEMETA_MAX, "%zu bytes", strlen(meta));
    FUZZ_CHECK(bl_donemeta_decode(meta, strlen(meta), b.committed, &skip),
               "refused its own metadata: %.80s", meta);
    FUZZ_CHECK(!bl_donemeta_decode(meta, strlen(meta), b.committed + 1, &other) &&
                   (b.committed == 0 ||
                    !bl_donemeta_decode(meta, strlen(meta), b.committed - 1, &other)),
               "accepted for another offset");
    /* Never an unfinished or unreceived offset, from below the committed
     * one to past the last. */
    highest = b.committed;
    for (int64_t o = b.committed > 0 ? b.committed - 1 : 0, i = 0;
         o <= b.offsets[b.n - 1] + 2; o++) {
        bool has = bl_skipset_has(&skip, o);
        while ((size_t)i < b.n && b.offsets[i] < o)
            i++;
        FUZZ_CHECK(!has || ((size_t)i < b.n && b.offsets[i] == o && b.done[i]),
                   "offset %" PRId64 " is not finished, yet skipped (committed %" PRId64
                   ", %s)",
                   o, b.committed, truncated ? "truncated" : "complete");
        if (has)
            highest = o;
    }
    for (size_t i = 0; i < b.n; i++)
        if (b.done[i] && b.offsets[i] > b.committed &&
            (b.offsets[i] <= highest || !truncated) && !bl_skipset_has(&skip, b.offsets[i]))
            missing = true;
    FUZZ_CHECK(!missing, "a finished offset %s is not recorded",
               truncated ? "below the highest recorded" : "(not truncated)");
    bl_skipset_free(&skip);
    free(meta);
out:
    bl_tracker_free(&b.t);
    free(b.offsets);
    free(b.done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    if (data[0] % 2 == 0)
        check_parse(data + 1, size - 1);
    else
        check_roundtrip(data + 1, size - 1);
    return 0;
}
