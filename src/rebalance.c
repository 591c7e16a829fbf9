/*
 * rebalance.c - partitions coming and going (librdkafka's rebalance
 * callback, served inside rd_kafka_consumer_poll on the poll thread), where
 * each starts, and every rewind.
 *
 * Assign: a state per partition, its start offset (the database's under
 * exactly-once into a database, else the group's committed one, else the
 * position auto.offset.reset names, given to assign at once), and the pauses in
 * force. Revoke: workers drop what has not started; what runs gets up to
 * shutdown.timeout.ms; what finished is committed (or its transaction
 * committed); only then are the partitions given up. Lost: nothing is
 * committed, another member may own them already.
 *
 * Rewind: both exactly-once engines flag the partitions to rewind (ktxn.c
 * after an aborted transaction, dbtxn.c after a fenced batch) and the poll
 * loop calls bl_rewind(), which replaces their states (dropping what was
 * in flight) and seeks them, blocking, to where they start again.
 */
#include "rebalance.h"

#include "clients.h"
#include "commit.h"
#include "dbtxn.h"
#include "dispatch.h"
#include "ktxn.h"
#include "parts.h"

#include <stdio.h>
#include <stdlib.h>

static void notify_rebalance(ballast_consumer_t *c, ballast_rebalance_event_t ev,
                             const rd_kafka_topic_partition_list_t *list)
{
    ballast_partition_t *parts;

    if (!c->set.rebalance_cb)
        return;
    parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    if (!parts)
        return;
    for (int i = 0; i < list->cnt; i++) {
        parts[i].topic = list->elems[i].topic;
        parts[i].partition = list->elems[i].partition;
    }
    c->set.rebalance_cb(ev, parts, (size_t)list->cnt, c->set.rebalance_opaque);
    free(parts);
}

static bool cooperative(ballast_consumer_t *c)
{
    const char *proto = rd_kafka_rebalance_protocol(c->rk);
    return proto && !strcmp(proto, "COOPERATIVE");
}

/* The logical offset auto.offset.reset names, or 0 (`error`: librdkafka
 * reports it). */
static int64_t reset_offset(const ballast_consumer_t *c)
{
    const char *v = bl_conf_str(c->conf, "kafka.auto.offset.reset");

    if (!*v || !strcmp(v, "earliest") || !strcmp(v, "smallest") || !strcmp(v, "beginning"))
        return RD_KAFKA_OFFSET_BEGINNING; /* -2: the log start */
    if (!strcmp(v, "latest") || !strcmp(v, "largest") || !strcmp(v, "end"))
        return RD_KAFKA_OFFSET_END; /* -1: the end (the LSO under read_committed) */
    return 0;
}

/* Starts the partitions of @p list that the group never committed (per
 * @p committed, rd_kafka_committed's answer for the same list) and nothing
 * else placed at the logical offset auto.offset.reset names. Left unset,
 * librdkafka (2.14 too) asks for the committed offset again, treats "none"
 * as an error and resets only after a 100 ms back-off. */
static void start_fresh(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                        const rd_kafka_topic_partition_list_t *committed)
{
    int64_t logical = reset_offset(c);

    if (!logical)
        return;
    for (int i = 0; i < list->cnt; i++)
        if (committed->elems[i].offset < 0 && !committed->elems[i].err &&
            list->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
            list->elems[i].offset = logical;
}

/* Learns the group's committed offsets of newly assigned partitions, so
 * that lag is known even before ballast commits anything, and starts the
 * ones the group never committed at once (start_fresh). The query asks for
 * stable offsets under read_committed, as librdkafka's own does, so a
 * transaction still committing offsets is waited for. */
static void load_committed(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(list);

    if (!bl_committed(c->rk, copy, 5000)) {
        for (int i = 0; i < copy->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &copy->elems[i];
            bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
            if (!p || tp->offset < 0)
                continue;
            p->committed = tp->offset;
            /* At-least-once: what finished beyond the committed offset
             * before a restart is not handled again. */
            if (c->set.semantics == BL_AT_LEAST_ONCE && tp->metadata)
                bl_donemeta_decode(tp->metadata, tp->metadata_size, tp->offset, &p->skip);
        }
        start_fresh(c, list, copy);
    }
    rd_kafka_topic_partition_list_destroy(copy);
}

/* Exactly-once into a database: a partition whose database offset is ahead
 * of Kafka's committed one may get no new message to carry the advisory
 * commit forward, and lag tools would report lag for a group that caught
 * up; so commit the database's offsets to Kafka now. */
static void advise_db_offsets(ballast_consumer_t *c,
                              const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *ahead = rd_kafka_topic_partition_list_new(list->cnt);

    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if (p && tp->offset >= 0 && tp->offset > p->committed) {
            rd_kafka_topic_partition_list_add(ahead, tp->topic, tp->partition)->offset =
                tp->offset;
            p->stored = tp->offset;
        }
    }
    if (ahead->cnt)
        bl_commit_async(c, ahead);
    rd_kafka_topic_partition_list_destroy(ahead);
}

/* The log level of a rebalance: @p level, or debug for one served only by
 * the close of a consumer that never ran (its start failed after the group
 * join), which is not news. */
static ballast_log_level_t rebalance_level(const ballast_consumer_t *c,
                                           ballast_log_level_t level)
{
    return c->run.ran ? level : BALLAST_LOG_DEBUG;
}

/* librdkafka keeps a partition's pause through an unassign and a new
 * assign: one paused when it was revoked would come back paused, while its
 * state here says it is not, so bl_dispatch_sync_pause() would never resume
 * it, and it would never be fetched again. So each assigned partition
 * starts unpaused (resuming one that is not paused does nothing), and the
 * pauses in force are applied after the assign. */
static void start_unpaused(ballast_consumer_t *c, const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(list);

    rd_kafka_resume_partitions(c->rk, copy); /* sets an error on a partition never seen */
    rd_kafka_topic_partition_list_destroy(copy);
    for (int i = 0; i < list->cnt; i++) {
        bl_part_t *p = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (p)
            p->paused = false;
    }
}

static void on_assign(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    bool db = c->set.semantics == BL_EXACTLY_ONCE_DB;
    char names[512];
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        if (!bl_part_find(c, tp->topic, tp->partition) &&
            !bl_parts_add(c, tp->topic, tp->partition)) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                      "out of memory on assignment"));
            return;
        }
    }
    if (db && !bl_dbtxn_load_offsets(c, list))
        return;
    load_committed(c, list);
    start_unpaused(c, list);
    if (cooperative(c))
        error = rd_kafka_incremental_assign(c->rk, list);
    else
        err = rd_kafka_assign(c->rk, list);
    if (error) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "incremental assign failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (err) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "assign failed: %s",
               rd_kafka_err2str(err));
    }
    if (db)
        advise_db_offsets(c, list);
    bl_dispatch_sync_pause(c); /* partitions assigned while paused for any reason */
    atomic_fetch_add(&c->stats.rebalances, 1);
    bl_log(&c->log, rebalance_level(c, BALLAST_LOG_INFO), "assigned %d partition(s): %s",
           list->cnt, bl_parts_name(list, names, sizeof(names)));
    notify_rebalance(c, BALLAST_PARTITIONS_ASSIGNED, list);
}

static void on_revoke(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                      bool lost)
{
    bool in_txn = c->set.semantics == BL_EXACTLY_ONCE_KAFKA;
    char names[512];
    bl_part_t **parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    rd_kafka_error_t *error = NULL;

    bl_dispatch_flush(c);
    for (int i = 0; parts && i < list->cnt; i++) {
        parts[i] = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (parts[i])
            atomic_store(&parts[i]->revoked, true);
    }
    if (parts && !lost) {
        /* At shutdown the drain already happened (and may have timed out). */
        bl_dispatch_drain(c, parts, (size_t)list->cnt,
                          atomic_load(&c->run.abandon)
                              ? 0
                              : bl_now_ms() + c->set.shutdown_timeout_ms);
        if (in_txn)
            bl_ktxn_commit(c); /* before the partitions go: they are in it */
        else
            bl_commit_parts(c, parts, (size_t)list->cnt);
    } else if (lost && in_txn) {
        bl_ktxn_abort(c); /* its offsets would be refused anyway */
    }
    free(parts);
    for (int i = 0; i < list->cnt; i++) {
        bl_part_t *p = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (p)
            bl_part_retire(c, p);
    }
    if (cooperative(c))
        error = rd_kafka_incremental_unassign(c->rk, list);
    else
        rd_kafka_assign(c->rk, NULL);
    if (error) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "incremental unassign failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    atomic_fetch_add(&c->stats.rebalances, 1);
    bl_log(&c->log, rebalance_level(c, lost ? BALLAST_LOG_WARN : BALLAST_LOG_INFO),
           "%s %d partition(s): %s", lost ? "lost" : "revoked", list->cnt,
           bl_parts_name(list, names, sizeof(names)));
    notify_rebalance(c, lost ? BALLAST_PARTITIONS_LOST : BALLAST_PARTITIONS_REVOKED,
                     list);
}

void bl_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *list, void *opaque)
{
    ballast_consumer_t *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(c, list);
    else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        on_revoke(c, list, rd_kafka_assignment_lost(rk));
    else {
        bl_log(&c->log, BALLAST_LOG_ERROR, "rebalance failed: %s",
               rd_kafka_err2str(err));
        on_revoke(c, list, true);
    }
}

/* ---- rewinds -------------------------------------------------------------------- */

void bl_rewind(ballast_consumer_t *c)
{
    bool db = c->set.semantics == BL_EXACTLY_ONCE_DB;
    const char *after = db ? "a fenced batch" : "an aborted transaction";
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;

    if (!bl_parts_take_rewind(c))
        return;
    bl_dispatch_flush(c);
    list = bl_parts_reset_flagged(c);
    if (list->cnt && (err = bl_committed(c->rk, list, REWIND_TIMEOUT_MS))) {
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                     "kafka: cannot read committed offsets to rewind "
                                     "after %s: %s",
                                     after, rd_kafka_err2str(err)));
    } else if (list->cnt) {
        /* Where the database has no offset (the fenced batch was its first),
         * the partition starts at the group's committed offset, as an
         * assignment would. */
        for (int i = 0; i < list->cnt; i++) {
            const rd_kafka_topic_partition_t *tp = &list->elems[i];
            bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
            if (p && tp->offset >= 0)
                p->committed = tp->offset;
        }
        if (!db || bl_dbtxn_load_offsets(c, list)) {
            bl_parts_seek(c, list);
            /* The advisory Kafka commit follows the database's offsets, so
             * that lag tools see no hole where the dropped batch was. */
            if (db)
                advise_db_offsets(c, list);
            bl_log(&c->log, BALLAST_LOG_WARN, "%s%d partition(s) rewound to %s",
                   db ? "" : "transaction aborted: ", list->cnt,
                   db ? "the database's offsets" : "their committed offsets");
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}
