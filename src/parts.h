/*
 * parts.h - the partitions of a consumer and the message pool (parts.c).
 * Internal; poll thread unless said otherwise.
 */
#ifndef BALLAST_PARTS_H
#define BALLAST_PARTS_H

#include "runtime.h"

#include <stdlib.h>

#define FREE_MSGS_MAX 4096       /* message structs kept for reuse */
#define REWIND_TIMEOUT_MS 30000 /* each blocking call of a rewind */

/** The assigned partition @p topic [@p partition], or NULL. */
bl_part_t *bl_part_find(ballast_consumer_t *c, const char *topic, int32_t partition);
/** Adds an assigned partition. @returns it, or NULL when out of memory. */
bl_part_t *bl_parts_add(ballast_consumer_t *c, const char *topic, int32_t partition);
/** Takes @p p out of the assignment: it becomes an orphan, whose messages
 *  workers drop unless they have started, and which bl_parts_sweep() frees
 *  once nothing refers to it. */
void bl_part_retire(ballast_consumer_t *c, bl_part_t *p);
/** Frees the orphans nothing refers to any more. Only at the top of the
 *  poll loop, so that no drain or commit in progress holds a pointer to
 *  one. */
void bl_parts_sweep(ballast_consumer_t *c);
/** Messages in flight of partitions no longer assigned (revoked or
 *  rewound), until they finish. */
uint64_t bl_parts_orphaned(const ballast_consumer_t *c);
/** The number of assigned partitions. */
size_t bl_parts_count(const ballast_consumer_t *c);
/** Frees every partition state and pooled message (destruction). */
void bl_parts_free(ballast_consumer_t *c);

/** Drops the finished messages @p p holds for a Kafka transaction. */
void bl_part_drop_held(ballast_consumer_t *c, bl_part_t *p);

/** Flags @p p for the poll loop to rewind (rebalance.c's bl_rewind()).
 *  Any thread. */
void bl_part_flag_rewind(ballast_consumer_t *c, bl_part_t *p);
/** Flags every assigned partition for a rewind. */
void bl_parts_flag_all(ballast_consumer_t *c);
/** Replaces the state of each partition flagged for a rewind with a fresh
 *  one, dropping what was in flight (the old state becomes an orphan); the
 *  first step of a rewind. @returns the partitions replaced, for the caller
 *  to seek and destroy. */
rd_kafka_topic_partition_list_t *bl_parts_reset_flagged(ballast_consumer_t *c);
/** Seeks each partition of @p list, blocking, to its offset (none: the
 *  beginning); the last step of a rewind. */
void bl_parts_seek(ballast_consumer_t *c, const rd_kafka_topic_partition_list_t *list);

/** Names the partitions of @p list, topic by topic, for a log line:
 *  "orders [0, 1], payments [3]"; cut with "..." when it does not fit.
 *  @returns @p buf. */
const char *bl_parts_name(const rd_kafka_topic_partition_list_t *list, char *buf,
                          size_t size);

/* ---- inline: they run for every message ------------------------------------ */

/** Walks the assigned partitions as @p p (to read: partitions are added and
 *  retired through the functions above). */
#define BL_PARTS_EACH(c, p) for (bl_part_t *p = (c)->parts.list; p; p = p->next)

/** Messages received and not retired, and their key+value bytes. */
static inline size_t bl_parts_inflight(const ballast_consumer_t *c)
{
    return c->parts.inflight;
}

static inline uint64_t bl_parts_inflight_bytes(const ballast_consumer_t *c)
{
    return c->parts.inflight_bytes;
}

/** Whether some partition waits for the poll loop to rewind it. */
static inline bool bl_parts_rewind_wanted(const ballast_consumer_t *c)
{
    return atomic_load(&c->parts.rewind_wanted);
}

/** bl_parts_rewind_wanted(), clearing it: the rewind is under way. */
static inline bool bl_parts_take_rewind(ballast_consumer_t *c)
{
    return atomic_exchange(&c->parts.rewind_wanted, false);
}

/** The assigned partition of a consumed message, or NULL. Messages come in
 *  runs per partition: the last one found is compared first, by topic
 *  handle, not by name. */
static inline bl_part_t *bl_part_of(ballast_consumer_t *c, const rd_kafka_message_t *rkm)
{
    bl_part_t *p = c->parts.last;

    if (!p || p->rkt != rkm->rkt || p->partition != rkm->partition) {
        if ((p = bl_part_find(c, rd_kafka_topic_name(rkm->rkt), rkm->partition)))
            p->rkt = rkm->rkt;
    }
    return p;
}

/** Counts @p m (of partition m->part) in flight until it retires. */
static inline void bl_parts_admit(ballast_consumer_t *c, bl_msg_t *m)
{
    m->part->inflight++;
    c->parts.inflight++;
    c->parts.inflight_bytes += m->bytes;
}

/** Whether a tracker advanced since the last commit. */
static inline bool bl_parts_dirty(const ballast_consumer_t *c)
{
    return c->parts.finished > 0;
}

/** Offsets finished since the last commit. */
static inline uint64_t bl_parts_finished(const ballast_consumer_t *c)
{
    return c->parts.finished;
}

/** A commit took (@p dirty false) or lost (true) the trackers' progress. */
static inline void bl_parts_set_dirty(ballast_consumer_t *c, bool dirty)
{
    if (!dirty)
        c->parts.finished = 0;
    else if (!c->parts.finished)
        c->parts.finished = 1;
}

/** Marks offset @p seq of @p p finished in its tracker. */
static inline void bl_part_done(ballast_consumer_t *c, bl_part_t *p, uint64_t seq)
{
    bl_tracker_done(&p->tracker, seq);
    c->parts.finished++;
}

/** A message struct, reused: one malloc and free per message showed up as
 *  the largest single cost in the drain benchmark. NULL: out of memory. */
static inline bl_msg_t *bl_msg_alloc(ballast_consumer_t *c)
{
    bl_msg_t *m = c->parts.free_msgs;

    if (!m)
        return malloc(sizeof(*m));
    c->parts.free_msgs = m->next;
    c->parts.free_count--;
    return m;
}

static inline void bl_msg_free(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_message_clear(m);
    if (c->parts.free_count >= FREE_MSGS_MAX) {
        free(m);
        return;
    }
    m->next = c->parts.free_msgs;
    c->parts.free_msgs = m;
    c->parts.free_count++;
}

/** Retires @p m: its handler finished and every record it produced was
 *  acknowledged; only now may its offset count as done. */
static inline void bl_msg_retire(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_part_t *p = m->part;

    if (m->fate == BL_FATE_DONE && !p->orphan)
        bl_part_done(c, p, m->seq);
    p->inflight--;
    c->parts.inflight--;
    c->parts.inflight_bytes -= m->bytes;
    bl_msg_free(c, m);
}

/** Lets go of one of @p m's references (the worker's, or a record's); the
 *  last one retires it. */
static inline void bl_msg_release(ballast_consumer_t *c, bl_msg_t *m)
{
    if (atomic_fetch_sub(&m->pending_emits, 1) == 1)
        bl_msg_retire(c, m);
}

#endif
