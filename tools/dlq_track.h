/*
 * dlq_track.h - the bookkeeping of `ballast dlq`, pure (no Kafka, no I/O):
 *
 *   dlq_index_t     distinct byte strings, each numbered in the order first
 *                   seen: errors counted by text, originals by identity.
 *   dlq_origins_t   the copies a DLQ holds of each original record (by
 *                   x-original-topic, -partition and -offset), so that a
 *                   replay sends each original once: the newest selected
 *                   copy, counted past the highest x-replay-count of all.
 *   dlq_progress_t  how far a replay may commit its consumer group on the
 *                   DLQ: per partition, the lowest offset not yet settled.
 *                   A record is settled when it was skipped, or when its
 *                   replayed copy was acknowledged; one that failed holds
 *                   its partition there for good, so that the next run
 *                   starts with it.
 *
 * Not thread-safe: the replay uses them from its one thread (delivery
 * reports arrive inside rd_kafka_poll() on that thread).
 */
#ifndef BALLAST_DLQ_TRACK_H
#define BALLAST_DLQ_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- distinct byte strings ------------------------------------------------ */

typedef struct dlq_index dlq_index_t;

/** @returns an empty index, or NULL when out of memory. */
dlq_index_t *dlq_index_new(void);
/** Frees @p ix; NULL is a no-op. */
void dlq_index_free(dlq_index_t *ix);
/** The number of @p key (@p len bytes), adding it when new (*added then
 *  true). Numbers count from 0 in the order keys were first added.
 *  @returns SIZE_MAX when out of memory. */
size_t dlq_index_add(dlq_index_t *ix, const void *key, size_t len, bool *added);
/** The number of @p key, or SIZE_MAX when it was never added. */
size_t dlq_index_find(const dlq_index_t *ix, const void *key, size_t len);
/** The key numbered @p n (its bytes, then a NUL); *len its length. */
const char *dlq_index_key(const dlq_index_t *ix, size_t n, size_t *len);
/** How many distinct keys were added. */
size_t dlq_index_count(const dlq_index_t *ix);

/* ---- originals and their copies ------------------------------------------ */

/** Where a copy is in the DLQ, and what it says. */
typedef struct dlq_copy {
    int32_t partition;    /**< DLQ partition */
    int64_t offset;       /**< DLQ offset */
    int64_t replays;      /**< its x-replay-count (0 when absent) */
    int64_t failed_at_ms; /**< its x-failed-at; -1 when absent */
} dlq_copy_t;

/** What the DLQ holds of one original. */
typedef struct dlq_origin {
    int64_t max_replays; /**< the highest x-replay-count of all its copies */
    size_t copies;       /**< how many copies */
    bool chosen_set;     /**< some copy was selected (matched the filters) */
    dlq_copy_t chosen;   /**< the newest selected copy: the one to replay */
} dlq_origin_t;

typedef struct dlq_origins dlq_origins_t;

dlq_origins_t *dlq_origins_new(void);
void dlq_origins_free(dlq_origins_t *o);
/** Notes a copy of the original @p topic [@p partition] @ @p offset.
 *  @p selected: it matched the filters, so it may be the one replayed; the
 *  newest selected copy is (highest x-replay-count, then latest x-failed-at,
 *  then highest DLQ partition and offset). @returns false when out of
 *  memory. */
bool dlq_origins_add(dlq_origins_t *o, const char *topic, int32_t partition,
                     int64_t offset, const dlq_copy_t *copy, bool selected);
/** What is known of an original; NULL when no copy of it was added. */
const dlq_origin_t *dlq_origins_find(const dlq_origins_t *o, const char *topic,
                                     int32_t partition, int64_t offset);

/* ---- commit positions ----------------------------------------------------- */

typedef struct dlq_progress dlq_progress_t;

/** Tracks partitions 0 .. @p partitions - 1, none started. */
dlq_progress_t *dlq_progress_new(int32_t partitions);
void dlq_progress_free(dlq_progress_t *p);
/** This run reads @p partition from @p offset: its position until more is
 *  settled. */
void dlq_progress_start(dlq_progress_t *p, int32_t partition, int64_t offset);
/** The record at @p offset needs nothing more (skipped, filtered out, a
 *  duplicate). Records must be noted in offset order per partition. */
void dlq_progress_settled(dlq_progress_t *p, int32_t partition, int64_t offset);
/** The record at @p offset was sent; it settles once dlq_progress_acked()
 *  says it was delivered. @returns false when out of memory. */
bool dlq_progress_sent(dlq_progress_t *p, int32_t partition, int64_t offset);
/** The delivery report of the record sent from @p offset: @p ok delivered,
 *  else failed (it then holds the partition). */
void dlq_progress_acked(dlq_progress_t *p, int32_t partition, int64_t offset, bool ok);
/** The record at @p offset could not be replayed (nowhere to send it): it
 *  holds the partition. @returns false when out of memory. */
bool dlq_progress_hold(dlq_progress_t *p, int32_t partition, int64_t offset);
/** The run read @p partition up to @p end (its end offset at the start):
 *  offsets below it that held no record (transaction markers) settle. */
void dlq_progress_end(dlq_progress_t *p, int32_t partition, int64_t end);
/** The offset to commit for @p partition: the lowest one not settled, or
 *  the end of what was read; -1 when the partition was not started. */
int64_t dlq_progress_position(const dlq_progress_t *p, int32_t partition);
/** The offset of the failed or held record that holds @p partition; -1 when
 *  none does. */
int64_t dlq_progress_held_at(const dlq_progress_t *p, int32_t partition);

#endif
