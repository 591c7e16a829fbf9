/*
 * tracker.h - per-partition offset tracker: which received offsets are
 * finished, and so which offset may be committed. Pure policy: no Kafka.
 *
 * Offsets are added in the order they were received (increasing); they may
 * finish in any order. The committable offset is the lowest offset not yet
 * finished, or one past the highest offset received when all are finished,
 * so a commit never skips unfinished work. Gaps in offsets (compaction,
 * transaction markers) need no special care.
 *
 * Not thread-safe: the consumer touches a tracker only on its poll thread.
 */
#ifndef BALLAST_TRACKER_H
#define BALLAST_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bl_tracker {
    int64_t *offsets; /* ring of received, unfinished-or-not-yet-retired */
    int64_t *timestamps; /* message timestamps, -1 when unknown */
    uint8_t *done;
    size_t cap, head, count;
    uint64_t head_seq;    /* sequence number of offsets[head] */
    int64_t last_offset;  /* highest offset added, -1 before any */
    uint64_t finished;    /* offsets marked finished since init (each once):
                             the partition's processed count */
} bl_tracker_t;

void bl_tracker_init(bl_tracker_t *t);
void bl_tracker_free(bl_tracker_t *t);
/** Adds a received offset. @returns 0, or -1 when out of memory or when
 *  @p offset is not above the last one. *seqp identifies it for _done(). */
int bl_tracker_add(bl_tracker_t *t, int64_t offset, uint64_t *seqp);
/** As bl_tracker_add(), recording the message's timestamp (ms) too. */
int bl_tracker_add_ts(bl_tracker_t *t, int64_t offset, int64_t timestamp,
                      uint64_t *seqp);
/** @returns the timestamp of the lowest unfinished offset, -1 when none. */
int64_t bl_tracker_head_timestamp(const bl_tracker_t *t);
/** Marks the offset with sequence number @p seq finished. */
void bl_tracker_done(bl_tracker_t *t, uint64_t seq);
/** @returns the offset to commit (the next one to consume), or -1 when
 *  nothing has been received. Retires the finished prefix. */
int64_t bl_tracker_committable(bl_tracker_t *t);
/** @returns how many offsets are received and not retired. */
size_t bl_tracker_pending(const bl_tracker_t *t);

#endif
