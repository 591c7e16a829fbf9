/*
 * breaker.h - the DLQ breaker: stops dead-lettering when too many messages
 * fail, in a row (dlq.max.consecutive) or among the last messages
 * (dlq.max.ratio of dlq.window.messages), so that a deploy that fails every
 * message cannot empty a topic into the DLQ. Once tripped it stays tripped:
 * the message that tripped it and every later one are not dead-lettered,
 * and the consumer pauses (see outcome.c, dispatch.c).
 *
 * Pure: no Kafka, no I/O. Thread-safe: every worker notes its messages'
 * final outcomes (under the breaker's own mutex); anyone may ask whether it
 * tripped.
 */
#ifndef BALLAST_BREAKER_H
#define BALLAST_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bl_breaker {
    pthread_mutex_t mtx;
    int64_t max_consecutive; /* 0: no limit on failures in a row */
    int64_t consecutive;     /* dead letters in a row so far */
    double max_ratio;        /* <= 0: no limit on the ratio */
    uint8_t *window;         /* the last outcomes: 1 dead-lettered, 0 handled */
    size_t size, pos, fill, dead;
    atomic_bool tripped;
    char reason[512]; /* why it tripped, written once before `tripped` */
} bl_breaker_t;

/** Sets the limits (@p max_consecutive 0 and @p max_ratio <= 0: off).
 *  @returns 0, or -1 when out of memory; bl_breaker_free() either way. */
int bl_breaker_init(bl_breaker_t *b, int64_t max_consecutive, double max_ratio,
                    size_t window);
void bl_breaker_free(bl_breaker_t *b);

/** What becomes of a message whose final outcome was noted. */
typedef enum bl_breaker_verdict {
    BL_BREAKER_PASS,    /**< go on: dead-letter it (or it was handled) */
    BL_BREAKER_TRIPPED, /**< this one tripped the breaker: not dead-lettered
                             (bl_breaker_reason() says why) */
    BL_BREAKER_OPEN     /**< tripped before: not dead-lettered */
} bl_breaker_verdict_t;

/** Notes a final outcome: @p dead_letter for a message about to be
 *  dead-lettered (@p why: its error), else one that was handled. Any
 *  thread. */
bl_breaker_verdict_t bl_breaker_note(bl_breaker_t *b, bool dead_letter, const char *why);

/** Whether it tripped. Any thread. */
static inline bool bl_breaker_tripped(const bl_breaker_t *b)
{
    return atomic_load(&b->tripped);
}

/** Why it tripped; valid once bl_breaker_tripped(). */
static inline const char *bl_breaker_reason(const bl_breaker_t *b)
{
    return b->reason;
}

#endif
