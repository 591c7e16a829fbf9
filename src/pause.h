/*
 * pause.h - when the poll loop holds back, and when a partition is paused.
 * Pure: no Kafka, no clock of its own (the caller says what time it is).
 *
 * Backpressure comes in two steps. At the high-water mark (in flight
 * reaches max.inflight.messages or max.inflight.bytes) the poll loop first
 * stops polling and waits for completions: librdkafka's prefetch queue
 * fills and its fetcher stops by itself, and no fetched data is lost.
 * Pausing partitions is the second step, only when the backlog lasts
 * (soft_limit_ms), because a pause discards what was prefetched for the
 * partition and its resume refetches after a back-off: pausing on every
 * short burst cut throughput by 4x. The backlog lasts from reaching the
 * marks until in flight falls to half of them (hovering at the mark is a
 * backlog too), and partitions resume at half the marks.
 *
 * One rule then decides whether a partition is paused: backpressure, a
 * stop draining, a tripped DLQ breaker, an unavailable handler, or a retry
 * tier whose head message is not due yet.
 */
#ifndef BALLAST_PAUSE_H
#define BALLAST_PAUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bl_backpressure {
    size_t max_messages;   /* max.inflight.messages */
    uint64_t max_bytes;    /* max.inflight.bytes */
    int64_t soft_limit_ms; /* how long a backlog lasts before partitions pause */
    int64_t over_since;    /* when the marks were reached (the backlog's start), 0: none */
    bool on;               /* the backlog lasted: partitions are to pause */
} bl_backpressure_t;

/** Whether in flight reached the marks: poll no more for now. */
static inline bool bl_backpressure_over(const bl_backpressure_t *bp, size_t messages,
                                        uint64_t bytes)
{
    return messages >= bp->max_messages || bytes >= bp->max_bytes;
}

/** Updates @p bp with what is in flight at @p now (ms, any clock that only
 *  goes forward). @returns bl_backpressure_over(). */
bool bl_backpressure_update(bl_backpressure_t *bp, size_t messages, uint64_t bytes,
                            int64_t now);

/** Why every partition is to pause. */
typedef struct bl_pause_why {
    bool backpressure; /* bl_backpressure_t.on */
    bool draining;     /* a stop is draining what is in flight */
    bool breaker;      /* the DLQ breaker tripped */
    bool unavailable;  /* some worker's handler is unavailable */
} bl_pause_why_t;

/** Whether a partition is to be paused at @p now_wall (epoch ms): for any
 *  reason of @p why, or while the head of its retry tier is not due
 *  (@p tier_due: when it is, epoch ms; 0: not waiting). */
bool bl_want_paused(const bl_pause_why_t *why, int64_t tier_due, int64_t now_wall);

#endif
