/*
 * commit.c - at-least-once commits: the committable offset of each
 * partition (the lowest one not finished, from its tracker) with the
 * offsets finished beyond it as metadata (donemeta.c), asynchronously as
 * the cadence says (cadence.h), and synchronously on revoke and at
 * shutdown. Exactly-once into a database commits the same way, as advice
 * to lag tools (the database holds the truth); Kafka transactions commit in
 * ktxn.c. Poll thread.
 */
#include "commit.h"

#include "parts.h"

#include <stdlib.h>

void bl_commit_init(ballast_consumer_t *c, int64_t interval_ms)
{
    /* The message bound limits what a crash redoes; exactly-once into a
     * database resumes from the database's offsets whatever Kafka holds,
     * so its commits (advice to lag tools) need only the interval. */
    c->commit.cadence = bl_cadence_init(interval_ms, c->set.semantics == BL_AT_LEAST_ONCE);
    c->commit.q = rd_kafka_queue_new(c->rk);
}

void bl_commit_free(ballast_consumer_t *c)
{
    if (c->commit.q)
        rd_kafka_queue_destroy(c->commit.q);
}

/* Adds a partition's committable offset to @p list, with the offsets
 * finished beyond it as metadata. @returns false when nothing changed
 * since the last commit (unless @p always). */
static bool add_commit(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                       bl_part_t *p, bool always)
{
    int64_t next = bl_tracker_committable(&p->tracker);
    bool truncated = false;
    char *meta;
    rd_kafka_topic_partition_t *tp;

    if (next < 0)
        return false;
    meta = bl_donemeta_encode(&p->tracker, next, &truncated);
    if (!always && next == p->stored &&
        ((!meta && !p->stored_meta) ||
         (meta && p->stored_meta && !strcmp(meta, p->stored_meta)))) {
        free(meta);
        return false;
    }
    if (truncated)
        atomic_fetch_add(&c->stats.metadata_truncated, 1);
    tp = rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
    tp->offset = next;
    if (meta) {
        /* The list frees it; stored_meta keeps a copy to compare with. */
        tp->metadata = meta;
        tp->metadata_size = strlen(meta);
    }
    free(p->stored_meta);
    p->stored_meta = meta ? bl_strdup(meta) : NULL;
    p->stored = next;
    return true;
}

/* Result of an asynchronous commit (poll thread, from serve_commits()):
 * counted as every commit is; a partition whose offset did not make it is
 * committed again at the next chance. */
static void on_async_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    ballast_consumer_t *c = opaque;

    c->commit.pending--;
    bl_commit_result(rk, err, offsets, c);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if ((err || tp->err) && err != RD_KAFKA_RESP_ERR__NO_OFFSET && p &&
            p->stored == tp->offset) {
            p->stored = -1;
            bl_parts_set_dirty(c, true);
        }
    }
}

/* One asynchronous commit is in flight at a time: librdkafka retries a
 * failed OffsetCommit by itself, and a retried older commit landing after a
 * newer one would move the group's offset back. */
void bl_commit_async(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk, list, c->commit.q,
                                                    on_async_commit, c);
    if (err)
        bl_log(&c->log, BALLAST_LOG_WARN, "commit failed: %s", rd_kafka_err2str(err));
    else
        c->commit.pending++;
}

void bl_commit_serve(ballast_consumer_t *c, int timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;

    while (c->commit.pending) {
        int64_t left = deadline - bl_now_ms();
        if (!rd_kafka_queue_poll_callback(c->commit.q, left > 0 ? (int)left : 0) &&
            left <= 0)
            break;
    }
}

/* Explicit commits rather than librdkafka's auto-commit: ballast commits at
 * once when nothing is in flight any more (so lag reads 0 when the work is
 * done), keeps one commit in flight, and commits on revoke only after the
 * drain. */
void bl_commit_due(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    int64_t now = bl_now_ms();

    if (c->set.semantics == BL_EXACTLY_ONCE_KAFKA || !bl_parts_dirty(c) || c->commit.pending ||
        !bl_cadence_due(&c->commit.cadence, now, bl_parts_inflight(c) == 0,
                        bl_parts_finished(c)))
        return;
    bl_parts_set_dirty(c, false);
    bl_cadence_sent(&c->commit.cadence, now);
    list = rd_kafka_topic_partition_list_new(8);
    BL_PARTS_EACH(c, p)
        add_commit(c, list, p, false);
    if (list->cnt)
        bl_commit_async(c, list);
    rd_kafka_topic_partition_list_destroy(list);
}

void bl_commit_parts(ballast_consumer_t *c, bl_part_t **parts, size_t n)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_resp_err_t err;

    bl_commit_serve(c, COMMIT_WAIT_MS); /* this one must land last */
    for (size_t i = 0; i < n; i++)
        if (parts[i])
            add_commit(c, list, parts[i], true);
    if (list->cnt) {
        /* Counted in bl_commit_result(), which librdkafka calls for every
         * commit. */
        err = rd_kafka_commit(c->rk, list, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            bl_log(&c->log, BALLAST_LOG_WARN, "commit failed: %s",
                   rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

void bl_commit_result(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    ballast_consumer_t *c = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return; /* nothing was stored: not a commit */
    if (err) {
        atomic_fetch_add(&c->stats.commit_errors, 1);
        bl_log(&c->log, BALLAST_LOG_WARN, "offset commit failed: %s",
               rd_kafka_err2str(err));
        return;
    }
    atomic_fetch_add(&c->stats.commits, 1);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if (p && !tp->err && tp->offset >= 0 && tp->offset > p->committed)
            p->committed = tp->offset;
        if (c->log.level >= BALLAST_LOG_DEBUG)
            bl_log(&c->log, BALLAST_LOG_DEBUG, "%s [%d]: committed offset %lld%s%s",
                   tp->topic, (int)tp->partition, (long long)tp->offset,
                   tp->err ? ": " : "", tp->err ? rd_kafka_err2str(tp->err) : "");
    }
}
