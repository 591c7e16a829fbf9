/*
 * commit.h - at-least-once commits of the consumed offsets (commit.c).
 * Internal; poll thread.
 */
#ifndef BALLAST_COMMIT_H
#define BALLAST_COMMIT_H

#include "runtime.h"

#define COMMIT_WAIT_MS 5000 /* a sync commit waits this long for an async one */

/** Makes the queue on which asynchronous commits report (the consumer
 *  handle exists) and sets the cadence: @p interval_ms is
 *  kafka.auto.commit.interval.ms, or -1 when unset (cadence.h's defaults). */
void bl_commit_init(ballast_consumer_t *c, int64_t interval_ms);
void bl_commit_free(ballast_consumer_t *c);

/** Commits @p list asynchronously; its result arrives in
 *  bl_commit_serve(). One such commit is in flight at a time. */
void bl_commit_async(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list);
/** Serves the results of asynchronous commits, waiting up to @p timeout_ms
 *  for the one in flight (0: only what has arrived). */
void bl_commit_serve(ballast_consumer_t *c, int timeout_ms);
/** Commits, asynchronously, each partition whose committable offset (or
 *  what finished beyond it) changed, when the cadence says a commit is due
 *  (cadence.h). At-least-once and exactly-once into a database (there as
 *  advice to lag tools); Kafka transactions commit their own. */
void bl_commit_due(ballast_consumer_t *c);
/** Commits the committable offsets of @p parts (NULLs skipped)
 *  synchronously, after the asynchronous one in flight: on revoke and at
 *  shutdown. */
void bl_commit_parts(ballast_consumer_t *c, bl_part_t **parts, size_t n);

/** The result of every commit, automatic or explicit: counted, and each
 *  partition's committed offset noted (librdkafka's offset_commit_cb). */
void bl_commit_result(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);

#endif
