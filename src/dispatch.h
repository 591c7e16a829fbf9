/*
 * dispatch.h - the poll thread's traffic with the workers (dispatch.c):
 * polled messages out to them, finished ones back, and the backpressure
 * and pauses that keep it within bounds. Internal; poll thread.
 */
#ifndef BALLAST_DISPATCH_H
#define BALLAST_DISPATCH_H

#include "runtime.h"

#define STAGE_CHUNK 256 /* messages polled before handing them over */
#define POLL_IDLE_MS 20 /* also the stop latency when idle */
#define POLL_BUSY_MS 10

/** Sets up the staging queues and the in-flight limits. @returns -1 when
 *  out of memory. */
int bl_dispatch_init(ballast_consumer_t *c, size_t max_messages, uint64_t max_bytes);
/** Frees what is still staged (destruction). */
void bl_dispatch_free(ballast_consumer_t *c);

/** Polls up to a chunk of messages and hands them to the workers; the
 *  loop's bookkeeping then runs once per chunk, not per message. Serves
 *  rebalances (rebalance.c) on the way. */
void bl_dispatch_poll(ballast_consumer_t *c);
/** Hands the staged messages over to their workers. */
void bl_dispatch_flush(ballast_consumer_t *c);
/** Takes back the messages workers finished: retires them, or holds them
 *  for a Kafka transaction, and produces the dead letters left to this
 *  thread. */
void bl_dispatch_take_back(ballast_consumer_t *c);
/** Publishes the in-flight counts, applies the pause rule, and holds back
 *  at the high-water mark (see pause.h). @returns true when this iteration
 *  held back (waiting for completions) instead of polling. */
bool bl_dispatch_hold_back(ballast_consumer_t *c, int64_t now);
/** Pauses and resumes partitions to match the pause rule (pause.h): only
 *  the partitions whose state changes, so a pause, which throws away what
 *  librdkafka prefetched for the partition, happens once per change. */
void bl_dispatch_sync_pause(ballast_consumer_t *c);
/** A stop: pauses every partition for good. */
void bl_dispatch_stop_fetching(ballast_consumer_t *c);
/** Waits until no message of @p parts (NULLs skipped) is in flight, or
 *  @p deadline (bl_now_ms(); 0: only what is back already) passes; takes
 *  back completions and serves delivery reports meanwhile. */
void bl_dispatch_drain(ballast_consumer_t *c, bl_part_t **parts, size_t n, int64_t deadline);

#endif
