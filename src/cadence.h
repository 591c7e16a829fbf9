/*
 * cadence.h - when an at-least-once commit is due (commit.c). Pure: the
 * caller says what time it is.
 *
 * Every commit interval (kafka.auto.commit.interval.ms). When nothing is in
 * flight any more, at once rather than at the interval, so that lag reads 0
 * as soon as the work is done; but such idle commits come at most ten times
 * an interval, so that a trickle of messages does not commit each one.
 */
#ifndef BALLAST_CADENCE_H
#define BALLAST_CADENCE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct bl_cadence {
    int64_t interval_ms;
    int64_t next_ms; /* the interval's next commit (0: at once) */
    int64_t last_ms; /* the last commit (0: none yet) */
} bl_cadence_t;

/** Whether a commit is due at @p now (ms, a clock that only goes forward);
 *  @p idle: nothing is in flight. */
bool bl_cadence_due(const bl_cadence_t *c, int64_t now, bool idle);

/** A commit was sent at @p now: the next one is due an interval later. */
void bl_cadence_sent(bl_cadence_t *c, int64_t now);

#endif
