/*
 * cadence.h - when an at-least-once commit is due (commit.c). Pure: the
 * caller says what time it is and how many offsets finished since the last
 * commit.
 *
 * Every commit interval, and, with a message bound, as soon as that many
 * offsets have finished since the last commit, whichever comes first: a
 * `kill -9` then redoes at most about an interval's or a bound's worth of
 * work. By default the interval is 1 s and the bound 10,000 messages; an
 * interval the user set (kafka.auto.commit.interval.ms) applies alone
 * (bl_cadence_init). When nothing is in flight any more, at once rather
 * than at the interval, so that lag reads 0 as soon as the work is done;
 * but such idle commits come at most ten times an interval, so that a
 * trickle of messages does not commit each one.
 */
#ifndef BALLAST_CADENCE_H
#define BALLAST_CADENCE_H

#include <stdbool.h>
#include <stdint.h>

/* The default cadence: a commit every second or every 10,000 finished
 * messages, whichever comes first. */
#define BL_CADENCE_INTERVAL_MS 1000
#define BL_CADENCE_MAX_MESSAGES 10000

typedef struct bl_cadence {
    int64_t interval_ms;
    uint64_t max_messages; /* 0: no message bound */
    int64_t next_ms;       /* the interval's next commit (0: at once) */
    int64_t last_ms;       /* the last commit (0: none yet) */
} bl_cadence_t;

/** The cadence for a commit interval the user set (@p set_ms >= 0: that
 *  interval alone) or not (@p set_ms < 0: the defaults above, both bounds);
 *  @p message_bound false leaves the message bound out in any case. */
bl_cadence_t bl_cadence_init(int64_t set_ms, bool message_bound);

/** Whether a commit is due at @p now (ms, a clock that only goes forward);
 *  @p idle: nothing is in flight; @p finished: offsets finished since the
 *  last commit. */
bool bl_cadence_due(const bl_cadence_t *c, int64_t now, bool idle, uint64_t finished);

/** A commit was sent at @p now: the next one is due an interval later. */
void bl_cadence_sent(bl_cadence_t *c, int64_t now);

#endif
