/*
 * emit.h - everything a consumer produces (emit.c): the records handlers
 * emit, dead letters and retry-tier moves, and their delivery reports.
 * Internal.
 */
#ifndef BALLAST_EMIT_H
#define BALLAST_EMIT_H

#include "producer.h"
#include "runtime.h"

#define WARM_TIMEOUT_MS 5000 /* each topic lookup of bl_emit_warm() */

void bl_emit_init(ballast_consumer_t *c);
void bl_emit_free(ballast_consumer_t *c);

/** Looks up the output, dead-letter and retry-tier topics with the
 *  producer, so that its first record to each does not wait for the
 *  topic's metadata: librdkafka 2.14 asks for it at once, yet the first
 *  record waited about 0.5 s in one run of six (docs/design.md, Known
 *  limits). Best effort: a topic still unknown after @p timeout_ms is
 *  looked up when its first record is produced. */
void bl_emit_warm(ballast_consumer_t *c, int timeout_ms);

/** Whether the producer can take every record @p m's handler emitted: each
 *  names a topic (or output.topic is set) that the cluster has. If not, the
 *  message fails and the pipeline stops with a line that names the message
 *  and the topic, before anything at or past its offset can commit. Any
 *  thread. */
bool bl_emit_routable(ballast_consumer_t *c, bl_msg_t *m);

/** Produces the records of a finished message (at-least-once, on its
 *  worker). @returns false when the producer refused one for good: the
 *  message then fails and the pipeline stops. */
bool bl_emit_records(ballast_consumer_t *c, bl_msg_t *m);

/** Sends @p m to retry tier @p tier (-1: the DLQ) in place of what its
 *  handler emitted. With Kafka transactions the copy becomes the message's
 *  one record, which the poll thread produces in the transaction; else the
 *  copy is produced straight from the message: by the worker when it waits
 *  for the acknowledgement (m->waiter, exactly-once into a database), else
 *  by the poll thread once the message is handed back (bl_emit_pending()).
 *  Any worker. */
void bl_emit_fail_over(ballast_consumer_t *c, bl_msg_t *m, int tier);

/** Produces the retry-tier or dead-letter copy bl_emit_fail_over() left to
 *  the poll thread, then lets the consumed message go. Produced here, the
 *  record is allocated by the thread that frees it in its delivery report,
 *  which allocators serve from per-thread caches: with glibc's, the
 *  dead-letter benchmark spent about 0.1 s less CPU per 20,000 than when a
 *  worker produced it. Poll thread. */
void bl_emit_pending(ballast_consumer_t *c, bl_msg_t *m);

/** Serves the producer's delivery reports (poll thread). */
void bl_emit_serve(ballast_consumer_t *c);

/** The delivery report of a record produced outside a transaction: the
 *  message counts as finished once every record of it was acknowledged; a
 *  record that could not be delivered stops the pipeline. Poll thread. */
void bl_emit_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);

/** A dead letter's or retry-tier move's log line, kept until the broker
 *  acknowledged its record. */
typedef struct bl_failure_note {
    bool tier; /* a tier move (info), else a dead letter (warning) */
    char line[];
} bl_failure_note_t;
/** The note of @p m's dead letter or tier move, or NULL when the rate limit
 *  (one full line a second) counts it instead. Caller frees. Any thread. */
bl_failure_note_t *bl_failure_note(ballast_consumer_t *c, const bl_msg_t *m);
/** Logs a note of bl_failure_note(). */
void bl_failure_note_log(ballast_consumer_t *c, const bl_failure_note_t *note);

#endif
