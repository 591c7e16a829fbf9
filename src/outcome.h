/*
 * outcome.h - a handler call and what its outcome means (outcome.c): the
 * call itself, retries with back-off, retry tiers, the DLQ and its
 * breaker, a stop; and whether the handler can run at all. Internal; the
 * bl_outcome_* functions run on a worker's thread, for that worker.
 */
#ifndef BALLAST_OUTCOME_H
#define BALLAST_OUTCOME_H

#include "runtime.h"

#define UNAVAILABLE_RETRY_MAX_MS 5000 /* the longest wait for an unavailable handler */

void bl_outcome_init(ballast_consumer_t *c);
void bl_outcome_free(ballast_consumer_t *c);

/** Runs the handler once over @p msgs (one message, or a batch), timing it
 *  for the latency histogram and the stuck-handler watchdog, and noting
 *  transient failures and an unavailable handler for readiness. */
void bl_outcome_call(bl_worker_t *w, bl_msg_t **msgs, size_t n);
/** Notes the outcomes of @p msgs, handled in @p micros: checks each,
 *  observes the latency, and notes transient failures and an unavailable
 *  handler for readiness (bl_outcome_call() does, after its call). */
void bl_outcome_note(bl_worker_t *w, bl_msg_t **msgs, size_t n, int64_t micros);
/** Counts the @p retried RETRY messages among @p group's first @p left and
 *  logs the first of them. */
void bl_outcome_log_retry(ballast_consumer_t *c, bl_msg_t **group, size_t left,
                          size_t retried);
/** Whether the run starts no handler call any more: after a stopping
 *  failure (order matters), past the drain's deadline, or with the breaker
 *  tripped. */
static inline bool bl_outcome_run_halted(const ballast_consumer_t *c)
{
    return atomic_load(&c->run.failed) || atomic_load(&c->run.abandon) ||
           bl_breaker_tripped(&c->breaker);
}
/** Whether @p m may not run: its partition is revoked or awaits a rewind,
 *  or the run is halted. */
static inline bool bl_outcome_must_drop(const ballast_consumer_t *c, const bl_msg_t *m)
{
    return atomic_load(&m->part->revoked) || atomic_load(&m->part->rewind) ||
           bl_outcome_run_halted(c);
}
/** Readies @p m for a handler call: no result yet, RETRY unless the handler
 *  says otherwise, and tracing = on known before the handler may ask for
 *  its trace context (looked up at its first use, bl_message_trace()). */
static inline void bl_outcome_prepare(const ballast_consumer_t *c, bl_msg_t *m)
{
    bl_result_reset(&m->result);
    m->outcome = BALLAST_OUTCOME_RETRY;
    m->trace.start = c->set.tracing;
}
/** Whether worker @p w starts nothing more: the run is halted, or it is
 *  stopping while this worker's handler is down (a stop does not wait for
 *  it). */
static inline bool bl_outcome_halted(const bl_worker_t *w)
{
    return bl_outcome_run_halted(w->cons) ||
           (atomic_load(&w->unavailable) && bl_stopping(w->cons));
}
/** Runs the handler over @p group (one message, or a batch) until each
 *  message has a final outcome, settled by bl_outcome_finish(): RETRY again
 *  after a back-off while attempts remain, UNAVAILABLE again for as long as
 *  it takes (without counting an attempt) unless the pipeline stops. */
void bl_outcome_run(bl_worker_t *w, bl_msg_t **group, size_t count);
/** Decides what a final outcome means: done, a retry tier, the DLQ (unless
 *  the breaker holds it back), or a stop. */
void bl_outcome_finish(bl_worker_t *w, bl_msg_t *m);

/** Notes whether this worker's handler could run at all (see
 *  BALLAST_OUTCOME_UNAVAILABLE); @p why says why not. While any worker's
 *  cannot, consumption pauses and readiness fails; the first worker to go
 *  down and the last to come back say so, one line each. */
void bl_outcome_available(bl_worker_t *w, bool down, const char *why);
/** Waits @p ms unless the drain's end comes first (a message waiting for
 *  its retry has not started again: it stays uncommitted). @returns false
 *  when the wait was cut short so. */
bool bl_outcome_sleep(bl_worker_t *w, int64_t ms);
/** The retry back-off before attempt @p retry + 1, with this worker's
 *  jitter. */
int64_t bl_outcome_backoff(bl_worker_t *w, int retry);

/** The wait before trying an unavailable handler (or database) again: the
 *  back-off of how many tries in a row found it so, capped, so that one
 *  coming back is noticed soon. */
int64_t bl_outcome_down_delay(bl_worker_t *w);

/** Whether some worker's handler is unavailable. Any thread. */
static inline bool bl_handler_unavailable(const ballast_consumer_t *c)
{
    return atomic_load(&c->workers.unavailable) > 0;
}
/** Whether some worker's handler is unavailable, and why (into @p buf).
 *  Any thread. */
bool bl_handler_down(ballast_consumer_t *c, char *buf, size_t size);
/** Whether some worker's latest call failed transiently (its database is
 *  down, say), with the latest such reason (into @p buf). Any thread. */
bool bl_handler_transient(ballast_consumer_t *c, char *buf, size_t size);

#endif
