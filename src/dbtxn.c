/*
 * dbtxn.c - exactly-once into a database: each batch (or message) runs in
 * one of the database's transactions, which also advances its partitions'
 * next offsets in the table ballast_offsets, so that writes and offsets
 * commit together. The worker drives begin -> handle (each message in a
 * savepoint) -> dead-letter the failures and wait for the broker's
 * acknowledgements -> commit with the offsets; the handler's operations
 * are bl_dbtxn_ops_t (handlers.h). On assignment the poll thread reads the
 * stored offsets on a handler state of its own (bl_dbtxn_load_offsets).
 *
 * Fencing. The offsets' upsert is a compare-and-set on each partition's
 * first offset in the batch. A refused batch is another member's range:
 * it is dropped, never redone, and its partitions are flagged for the poll
 * loop to rewind to the database's offsets (rebalance.c's bl_rewind(), the
 * same place that rewinds after an aborted Kafka transaction, ktxn.c).
 */
#include "dbtxn.h"

#include "outcome.h"
#include "parts.h"

#include <stdlib.h>

/* Dead-letters the FAIL messages of a database transaction and waits until
 * the broker acknowledged each record, so that the transaction that moves
 * the offsets past them commits only after their copies are safe.
 * @returns false when that failed (the pipeline is stopping, or the DLQ
 * breaker tripped on one of them): the transaction then rolls back. */
static bool txn_dead_letter(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    bool ok = true;

    for (size_t i = 0; i < n; i++) {
        bl_msg_t *m = msgs[i];
        if (m->outcome != BALLAST_OUTCOME_FAIL)
            continue;
        m->waiter = &w->sig;
        bl_outcome_finish(w, m); /* builds and produces the DLQ record, or stops */
        /* A stop, or a tripped breaker (the message is not dead-lettered):
         * the transaction must not commit past it. */
        if (atomic_load(&c->run.failed) || m->fate == BL_FATE_FAILED)
            ok = false;
    }
    pthread_mutex_lock(&w->sig.mtx);
    for (size_t i = 0; i < n; i++) {
        bl_msg_t *m = msgs[i];
        if (m->outcome != BALLAST_OUTCOME_FAIL)
            continue;
        while (atomic_load(&m->pending_emits) > 1 && !atomic_load(&c->run.failed) &&
               !atomic_load(&c->run.abandon))
            pthread_cond_wait(&w->sig.cond, &w->sig.mtx);
        m->waiter = NULL;
    }
    pthread_mutex_unlock(&w->sig.mtx);
    return ok && !atomic_load(&c->run.failed);
}

/* The first and next offset of each partition in @p msgs (all settled). */
static size_t txn_offsets(bl_msg_t **msgs, size_t n, bl_dbtxn_offset_t *out)
{
    size_t count = 0;

    for (size_t i = 0; i < n; i++) {
        const bl_msg_t *m = msgs[i];
        size_t j = 0;
        while (j < count && !(out[j].partition == m->partition &&
                              !strcmp(out[j].topic, m->topic)))
            j++;
        if (j == count) {
            out[count].topic = m->topic;
            out[count].partition = m->partition;
            out[count].first_offset = m->offset;
            out[count++].next_offset = m->offset + 1;
        } else {
            if (m->offset < out[j].first_offset)
                out[j].first_offset = m->offset;
            if (m->offset + 1 > out[j].next_offset)
                out[j].next_offset = m->offset + 1;
        }
    }
    return count;
}

/* What one partition's stored offset says about a transaction over
 * @p off whose COMMIT's outcome is unknown: _RETRY, it did not land (had
 * it, the row would be past the batch's start; a redo is fenced like any
 * commit); _OK, it landed (the row is where it would have put it); _FAIL,
 * another member committed past the batch's start, whether or not this
 * one landed: never redo it. */
static ballast_outcome_t stored_says(int found, int64_t stored, const bl_dbtxn_offset_t *off)
{
    if (!found || stored <= off->first_offset)
        return BALLAST_OUTCOME_RETRY;
    return stored == off->next_offset ? BALLAST_OUTCOME_OK : BALLAST_OUTCOME_FAIL;
}

/* After a COMMIT whose outcome is unknown: did it happen? The stored
 * offsets tell (see stored_says; one partition that did not land decides
 * for the whole transaction), so they are read until the database
 * answers: guessing "no" while it is still down would redo a batch that
 * did commit. _FAIL sets @p err. */
static ballast_outcome_t txn_landed(bl_worker_t *w, const bl_dbtxn_offset_t *offs, size_t count,
                                    char *err, size_t errsize)
{
    ballast_consumer_t *c = w->cons;

    for (int tries = 1;; tries++) {
        const bl_dbtxn_offset_t *past = NULL;
        bool answered = true, missing = false;
        for (size_t i = 0; i < count && answered && !missing; i++) {
            int64_t stored = -1;
            int rc = c->dbtxn.ops->load_offset(w->state, c->set.group, offs[i].topic,
                                             offs[i].partition, &stored, err, errsize);
            ballast_outcome_t says = stored_says(rc, stored, &offs[i]);
            answered = rc >= 0;
            missing = answered && says == BALLAST_OUTCOME_RETRY;
            if (answered && says == BALLAST_OUTCOME_FAIL)
                past = &offs[i];
        }
        if (answered && !missing && past)
            bl_dbtxn_stale_error(err, errsize, past);
        if (answered)
            return missing ? BALLAST_OUTCOME_RETRY
                   : past  ? BALLAST_OUTCOME_FAIL
                           : BALLAST_OUTCOME_OK;
        /* Stopping: the batch is dropped, and a restart reads the truth
         * from the database anyway. */
        if (!bl_outcome_sleep(w, bl_outcome_backoff(w, tries)))
            return BALLAST_OUTCOME_RETRY;
    }
}

/* A batch another member committed past (see handlers.h, Fencing): this
 * instance lost its partitions without knowing yet. The batch is dropped,
 * never redone; its partitions take no more work here until the poll
 * thread has rewound them to the database's offsets (a later batch of
 * theirs committing first would skip this one's messages). */
static void txn_stale(bl_worker_t *w, bl_msg_t **msgs, size_t n, const char *err)
{
    ballast_consumer_t *c = w->cons;

    bl_log(&c->log, BALLAST_LOG_WARN,
           "%s: this instance lost the partition; batch dropped", err);
    atomic_fetch_add(&c->stats.fenced, 1);
    for (size_t i = 0; i < n; i++) {
        msgs[i]->fate = BL_FATE_DROPPED;
        bl_part_flag_rewind(c, msgs[i]->part);
    }
}

/* The handler over @p msgs in the open transaction: a batch in one call;
 * in message mode a call per message (each in a savepoint of its own, the
 * handler's statements in a transaction), up to the first that must be
 * redone (the rest are not run: the transaction is redone whole) and, on
 * the @p first attempt, until settings.group_ms passed (the rest wait for
 * the next transaction). @returns how many messages take part. */
static size_t txn_call(bl_worker_t *w, bl_msg_t **msgs, size_t n, bool first)
{
    ballast_consumer_t *c = w->cons;
    int64_t until = bl_now_ms() + c->set.group_ms;

    if (c->set.batch_mode) {
        bl_outcome_call(w, msgs, n);
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (first && i && bl_now_ms() >= until)
            return i;
        bl_outcome_call(w, msgs + i, 1);
        if (msgs[i]->outcome != BALLAST_OUTCOME_RETRY &&
            msgs[i]->outcome != BALLAST_OUTCOME_UNAVAILABLE)
            continue;
        for (size_t j = i + 1; j < n; j++)
            msgs[j]->outcome = BALLAST_OUTCOME_RETRY;
        break;
    }
    return n;
}

/* A transient failure anywhere voids the attempt, which is redone after a
 * back-off for as long as it takes (the database being down pauses
 * consumption; nothing is dead-lettered for it). A fenced commit drops the
 * batch (txn_stale). */
size_t bl_dbtxn_process(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    const bl_dbtxn_ops_t *ops = c->dbtxn.ops;
    bl_dbtxn_offset_t stack[64], *offs = n > 64 ? malloc(n * sizeof(*offs)) : stack;
    char err[512];
    size_t count;
    int tries = 0;
    bool ran = false;

    if (!offs) {
        for (size_t i = 0; i < n; i++)
            msgs[i]->fate = BL_FATE_DROPPED;
        return n;
    }
    for (;; tries++) {
        ballast_outcome_t out = BALLAST_OUTCOME_RETRY;
        bool redo = false, down = atomic_load(&w->unavailable);

        if (down && bl_stopping(c))
            break;
        if (tries && !bl_outcome_sleep(w, down ? bl_outcome_down_delay(w)
                                               : bl_outcome_backoff(w, tries)))
            break;
        if (atomic_load(&c->run.failed) || bl_breaker_tripped(&c->breaker))
            break;
        err[0] = '\0';
        if (ops->begin(w->state, err, sizeof(err)) != BALLAST_OUTCOME_OK) {
            /* The database is down: nothing could be tried. */
            bl_outcome_available(w, true, err);
            continue;
        }
        n = txn_call(w, msgs, n, !ran);
        ran = true;
        for (size_t i = 0; i < n; i++)
            if (msgs[i]->outcome == BALLAST_OUTCOME_RETRY ||
                msgs[i]->outcome == BALLAST_OUTCOME_UNAVAILABLE)
                redo = true;
        if (redo || !txn_dead_letter(w, msgs, n)) {
            ops->rollback(w->state);
            if (redo && !atomic_load(&w->unavailable))
                atomic_fetch_add(&c->stats.retried, n);
            continue;
        }
        count = txn_offsets(msgs, n, offs);
        out = ops->commit(w->state, c->set.group, offs, count, err, sizeof(err));
        if (out == BALLAST_OUTCOME_RETRY) {
            bl_log(&c->log, BALLAST_LOG_WARN, "database commit: %s", err);
            out = txn_landed(w, offs, count, err, sizeof(err));
        }
        if (out == BALLAST_OUTCOME_FAIL)
            txn_stale(w, msgs, n, err);
        else if (out == BALLAST_OUTCOME_OK)
            for (size_t i = 0; i < n; i++)
                if (msgs[i]->outcome == BALLAST_OUTCOME_OK)
                    atomic_fetch_add(&c->stats.processed_ok, 1);
        if (out != BALLAST_OUTCOME_RETRY) {
            if (offs != stack)
                free(offs);
            return n;
        }
    }
    /* Stopping, or the breaker tripped: nothing committed, everything
     * comes back. */
    for (size_t i = 0; i < n; i++)
        msgs[i]->fate = BL_FATE_DROPPED;
    if (offs != stack)
        free(offs);
    return n;
}

/* The database's offsets are the truth, so each assigned partition starts
 * where the database says. Kafka's own committed offsets may lag behind
 * them (they are advisory). Without the database's answer nothing may
 * start: retried until the drain timeout, then the pipeline stops. */
bool bl_dbtxn_load_offsets(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    int64_t deadline = bl_now_ms() + c->set.shutdown_timeout_ms;
    char err[512] = "";

    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t next = -1;
        int rc;
        while ((rc = c->dbtxn.ops->load_offset(c->dbtxn.loader, c->set.group, tp->topic,
                                             tp->partition, &next, err,
                                             sizeof(err))) < 0 &&
               bl_now_ms() < deadline && !bl_stopping(c))
            bl_sleep_ms(500);
        if (rc < 0) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_DATABASE, true, false,
                                         "%s [%d]: cannot read the stored offset "
                                         "from the database: %s",
                                         tp->topic, (int)tp->partition, err));
            return false;
        }
        if (rc == 1)
            tp->offset = next;
    }
    return true;
}
