/*
 * tracker.c - per-partition offset tracker (see tracker.h).
 */
#include "tracker.h"

#include <stdlib.h>
#include <string.h>

void bl_tracker_init(bl_tracker_t *t)
{
    memset(t, 0, sizeof(*t));
    t->last_offset = -1;
}

void bl_tracker_free(bl_tracker_t *t)
{
    free(t->offsets);
    free(t->timestamps);
    free(t->done);
    bl_tracker_init(t);
}

/* Doubles the ring, unrolling it so that head is at index 0. */
static int grow(bl_tracker_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    int64_t *offsets = malloc(cap * sizeof(*offsets));
    int64_t *timestamps = malloc(cap * sizeof(*timestamps));
    uint8_t *done = malloc(cap);

    if (!offsets || !timestamps || !done) {
        free(offsets);
        free(timestamps);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < t->count; i++) {
        size_t from = (t->head + i) % t->cap;
        offsets[i] = t->offsets[from];
        timestamps[i] = t->timestamps[from];
        done[i] = t->done[from];
    }
    free(t->offsets);
    free(t->timestamps);
    free(t->done);
    t->offsets = offsets;
    t->timestamps = timestamps;
    t->done = done;
    t->cap = cap;
    t->head = 0;
    return 0;
}

int bl_tracker_add(bl_tracker_t *t, int64_t offset, uint64_t *seqp)
{
    return bl_tracker_add_ts(t, offset, -1, seqp);
}

int bl_tracker_add_ts(bl_tracker_t *t, int64_t offset, int64_t timestamp,
                      uint64_t *seqp)
{
    size_t slot;

    if (offset <= t->last_offset)
        return -1;
    if (t->count == t->cap && grow(t))
        return -1;
    slot = (t->head + t->count) % t->cap;
    t->offsets[slot] = offset;
    t->timestamps[slot] = timestamp;
    t->done[slot] = 0;
    *seqp = t->head_seq + t->count;
    t->count++;
    t->last_offset = offset;
    return 0;
}

void bl_tracker_done(bl_tracker_t *t, uint64_t seq)
{
    size_t slot;

    /* A sequence number below head was retired already: ignore it rather
     * than corrupt the ring. */
    if (seq < t->head_seq || seq - t->head_seq >= t->count)
        return;
    slot = (t->head + (size_t)(seq - t->head_seq)) % t->cap;
    t->finished += !t->done[slot];
    t->done[slot] = 1;
}

int64_t bl_tracker_committable(bl_tracker_t *t)
{
    while (t->count && t->done[t->head]) {
        t->head = (t->head + 1) % t->cap;
        t->head_seq++;
        t->count--;
    }
    if (t->count)
        return t->offsets[t->head];
    return t->last_offset < 0 ? -1 : t->last_offset + 1;
}

size_t bl_tracker_pending(const bl_tracker_t *t)
{
    return t->count;
}

int64_t bl_tracker_head_timestamp(const bl_tracker_t *t)
{
    size_t i = t->head;

    /* The head may be finished but not yet retired by committable(). */
    for (size_t n = 0; n < t->count; n++, i = (i + 1) % t->cap)
        if (!t->done[i])
            return t->timestamps[i];
    return -1;
}
