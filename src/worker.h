/*
 * worker.h - the handler workers' threads (worker.c). Internal.
 */
#ifndef BALLAST_WORKER_H
#define BALLAST_WORKER_H

#include "runtime.h"

#define WORKER_TAKE_MAX 256 /* messages a worker takes per lock in message mode */
#define STOP_GRACE_MS 5000  /* a handler call may outlive the drain by this much */

/** Makes the workers (not their threads); @p free_consumer is what the last
 *  worker a stop left running calls to free a consumer destroyed
 *  meanwhile. @returns -1 when out of memory. */
int bl_workers_init(ballast_consumer_t *c, void (*free_consumer)(ballast_consumer_t *c));
/** Makes one handler state (@p worker -1: the poll thread's own, for the
 *  database's offsets). */
ballast_error_t *bl_handler_state_new(ballast_consumer_t *c, int worker, void **statep);
/** Makes every worker's handler state, then starts the threads. */
ballast_error_t *bl_workers_start(ballast_consumer_t *c);

/** Hands @p q (the messages routed to worker @p i) over to it. Poll
 *  thread. */
void bl_workers_give(ballast_consumer_t *c, int i, bl_queue_t *q);
/** Wakes every worker to look at the stop flags. */
void bl_workers_wake(ballast_consumer_t *c);
/** The number of handler calls running now. Any thread. */
int bl_workers_busy(const ballast_consumer_t *c);
/** Whether a handler call has run longer than handler.timeout.ms at
 *  @p now: which worker's, since when. Any thread. */
bool bl_workers_stuck(const ballast_consumer_t *c, int64_t now, int *worker, int64_t *since);
/** Cancels the handler calls running that can be cancelled (exec kills its
 *  child: the call returns at once, its messages UNAVAILABLE). @returns how
 *  many. */
int bl_workers_cancel(ballast_consumer_t *c);
/** Ends the workers, waiting up to @p grace_ms for each; one that does not
 *  end (its handler call has not returned) is left running on its thread,
 *  which from then on owns the consumer's memory. */
void bl_workers_stop(ballast_consumer_t *c, int grace_ms);
/** At destruction: whether workers a stop left running still use the
 *  consumer. If so the last of them frees it (and this says so once). */
bool bl_workers_keep_consumer(ballast_consumer_t *c);
/** Frees the workers and their handler states; no worker runs any more. */
void bl_workers_free(ballast_consumer_t *c);

#endif
