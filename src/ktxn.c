/*
 * ktxn.c - exactly-once with Kafka outputs: every record a handler emits,
 * every dead-letter record and the consumed offsets go into one Kafka
 * transaction, committed every `transaction.interval.ms`. (Exactly-once
 * into a database is dbtxn.c; the two engines have one shape: the
 * transaction is this file's, an abort flags the partitions to rewind, and
 * the poll loop performs every rewind, rebalance.c's bl_rewind().)
 *
 * Only the poll thread calls these functions and only it uses the
 * transactional producer: workers leave their records on the message, and
 * the poll thread holds the message (bl_ktxn_hold) until every earlier
 * offset of its partition finished, then produces its records (in offset
 * order), so a transaction holds exactly the records of messages whose
 * offsets it commits.
 *
 * Failure handling follows librdkafka's transaction state machine, with
 * its pitfall in mind (2.14 too: a transaction the broker aborted for
 * outliving transaction.timeout.ms makes the producer fatally fenced):
 *   - abortable error: abort, then flag every partition to be rewound to
 *     its committed offset, dropping what was in flight; until the poll
 *     loop has rewound them, nothing of theirs is held, produced or
 *     committed;
 *   - retriable error or timeout (outcome unknown): throw the producer
 *     away, make a new one with the same transactional.id (whose
 *     init_transactions settles the old transaction), then rewind;
 *   - fatal error (fenced by a newer instance): stop the pipeline;
 *   - a record refused for good (too large, no such topic,
 *     invalid), when produced or in its delivery report: abort the
 *     transaction and commit nothing more (txn_halt), so that no offset at
 *     or past the message that emitted it commits; the pipeline stops.
 *
 * A transactional record's delivery-report opaque is NULL, or the log
 * note of a dead letter or retry-tier move (bl_failure_note), which is
 * logged once the broker acknowledged the record.
 */
#include "ktxn.h"

#include "clients.h"
#include "emit.h"
#include "parts.h"
#include "txnwatch.h"

#include <stdio.h>
#include <stdlib.h>

void bl_ktxn_setup(ballast_consumer_t *c)
{
    c->ktxn.timeout_ms = BL_TXN_TIMEOUT_MS;
}

/* The blocking transaction calls, recorded for the watchdog (txnwatch.c)
 * while the poll thread is inside them. init, commit and abort share one
 * signature; WATCHED() names the call it makes. */
typedef rd_kafka_error_t *bl_txn_call_fn(rd_kafka_t *rk, int timeout_ms);

static rd_kafka_error_t *watched(ballast_consumer_t *c, const char *name,
                                 bl_txn_call_fn *call, int timeout_ms)
{
    rd_kafka_error_t *error;

    bl_txnwatch_enter(c, name, timeout_ms);
    error = call(c->producer, timeout_ms);
    bl_txnwatch_leave(c);
    return error;
}

#define WATCHED(c, call, timeout_ms) watched((c), #call, call, (timeout_ms))

static rd_kafka_error_t *watched_send_offsets(ballast_consumer_t *c,
                                              const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(c->rk);
    rd_kafka_error_t *error;

    bl_txnwatch_enter(c, "rd_kafka_send_offsets_to_transaction", c->ktxn.timeout_ms);
    error = rd_kafka_send_offsets_to_transaction(c->producer, list, cgmd, (int)c->ktxn.timeout_ms);
    bl_txnwatch_leave(c);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    return error;
}

static rd_kafka_error_t *watched_abort(ballast_consumer_t *c)
{
    return WATCHED(c, rd_kafka_abort_transaction, (int)c->ktxn.timeout_ms);
}

/* A newer producer with our transactional.id exists: we are the zombie. */
static bool is_fenced(const rd_kafka_error_t *error)
{
    return bl_kafka_fenced(rd_kafka_error_code(error));
}

static ballast_error_t *txn_error(rd_kafka_error_t *error, const char *what)
{
    bool fenced = is_fenced(error);
    ballast_error_t *err = bl_error_new(
        fenced ? BALLAST_ERR_FENCED : BALLAST_ERR_KAFKA, false, true,
        "%s: %s%s", what, rd_kafka_error_string(error),
        fenced ? BL_FENCED_NOTE : "");
    rd_kafka_error_destroy(error);
    return err;
}

ballast_error_t *bl_ktxn_init(ballast_consumer_t *c, int64_t timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    rd_kafka_error_t *error;

    /* In rounds of a second, so that a stop during start-up is prompt; a
     * call that timed out, or ended on a retriable error (a coordinator
     * still loading), may be repeated. */
    while ((error = WATCHED(c, rd_kafka_init_transactions, 1000)) &&
           (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT ||
            rd_kafka_error_is_retriable(error)) &&
           bl_now_ms() < deadline && !bl_conf_stop_requested(c->conf))
        rd_kafka_error_destroy(error);
    if (!error)
        return NULL;
    if (bl_conf_stop_requested(c->conf)) {
        rd_kafka_error_destroy(error);
        return bl_error_new(BALLAST_ERR_STOPPED, false, false,
                            "stopped while initialising transactions");
    }
    if (rd_kafka_error_is_retriable(error) ||
        rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        ballast_error_t *err = bl_error_new(
            BALLAST_ERR_UNREACHABLE, true, false,
            "kafka: cannot initialise transactions within %lld ms: %s",
            (long long)timeout_ms, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return err;
    }
    return txn_error(error, "kafka: cannot initialise transactions");
}

/* True when the producer is in a fatal state; records the fatal error as
 * the pipeline's (a fenced one says so). */
static bool producer_dead(ballast_consumer_t *c)
{
    char reason[512];
    rd_kafka_resp_err_t code = rd_kafka_fatal_error(c->producer, reason, sizeof(reason));
    bool fenced = bl_kafka_fenced(code);

    if (!code)
        return false;
    bl_set_fatal(c, bl_error_new(fenced ? BALLAST_ERR_FENCED : BALLAST_ERR_KAFKA, false,
                                 true, "kafka: transactional producer failed: %s%s",
                                 reason, fenced ? BL_FENCED_NOTE : ""));
    return true;
}

/* Replaces the producer: used when a transaction's outcome is unknown.
 * Never when the producer was fenced: re-initialising would fence the
 * newer, rightful instance in turn. */
static bool txn_reinit(ballast_consumer_t *c)
{
    ballast_error_t *err;

    if (producer_dead(c))
        return false;
    bl_log(&c->log, BALLAST_LOG_WARN,
           "transaction outcome unknown: re-initialising the producer");
    rd_kafka_purge(c->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(c->producer, 0);
    rd_kafka_destroy(c->producer);
    c->producer = NULL;
    if ((err = bl_make_client(c, true, &c->producer)) ||
        (err = bl_ktxn_init(c, c->ktxn.timeout_ms))) {
        bl_set_fatal(c, err);
        return false;
    }
    bl_emit_warm(c, WARM_TIMEOUT_MS);
    return true;
}

/* The transaction was aborted: every partition goes back to its committed
 * offset, and what was in flight is dropped. The poll loop does it
 * (rebalance.c's bl_rewind()); until then nothing of the partitions is
 * held, produced or committed. */
static void txn_rewind(ballast_consumer_t *c)
{
    bl_parts_flag_all(c);
}

/* A record of the open transaction was refused for good: aborts the
 * transaction, so that none of its offsets commit, and commits nothing
 * more. The pipeline is stopping (its fatal error is recorded). */
static void txn_halt(ballast_consumer_t *c)
{
    rd_kafka_error_t *error;

    if (c->ktxn.halted || !c->ktxn.open) {
        c->ktxn.halted = true;
        return;
    }
    c->ktxn.halted = true;
    c->ktxn.open = false;
    if ((error = watched_abort(c))) {
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: abort transaction failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

void bl_ktxn_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    ballast_consumer_t *c = opaque;
    bl_failure_note_t *note = rkm->_private;
    const char *topic = rd_kafka_topic_name(rkm->rkt);

    (void)rk;
    if (rkm->err && bl_record_refused(rkm->err) && !c->ktxn.doomed) {
        /* Not served inside a transactional call: txn_halt() runs when the
         * commit or the next record sees the flag. */
        c->ktxn.doomed = true;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                     "topic %s: the broker refused a record of the "
                                     "transaction: %s; the transaction is aborted and "
                                     "its offsets stay uncommitted",
                                     topic, rd_kafka_err2str(rkm->err)));
    } else if (rkm->err) {
        bl_log(&c->log, BALLAST_LOG_WARN, "topic %s: transactional record failed: %s",
               topic, rd_kafka_err2str(rkm->err));
    } else if (c->set.dlq_topic && !strcmp(topic, c->set.dlq_topic)) {
        atomic_fetch_add(&c->stats.dead_lettered, 1);
    } else {
        atomic_fetch_add(&c->stats.emitted, 1);
    }
    if (note && !rkm->err)
        bl_failure_note_log(c, note);
    free(note);
}

/* Settles a failed transactional call. @returns false (always: the
 * transaction did not commit). */
static bool txn_fail(ballast_consumer_t *c, rd_kafka_error_t *error, const char *what)
{
    bool rewind = true;

    if (c->ktxn.doomed) {
        /* A record was refused for good: redoing the transaction would
         * meet it again. */
        rd_kafka_error_destroy(error);
        txn_halt(c);
        return false;
    }
    c->ktxn.open = false;
    bl_log(&c->log, BALLAST_LOG_WARN, "%s: %s", what, rd_kafka_error_string(error));
    /* Never re-initialise when fenced: that would fence the newer, rightful
     * instance in turn, and the two would take turns doubling work. */
    if (rd_kafka_error_is_fatal(error) || is_fenced(error)) {
        bl_set_fatal(c, txn_error(error, what));
        return false;
    }
    if (producer_dead(c)) {
        rd_kafka_error_destroy(error);
        return false;
    }
    if (rd_kafka_error_txn_requires_abort(error)) {
        rd_kafka_error_t *aborted = watched_abort(c);
        if (aborted) {
            rd_kafka_error_destroy(aborted);
            rewind = txn_reinit(c);
        }
    } else {
        rewind = txn_reinit(c);
    }
    rd_kafka_error_destroy(error);
    if (rewind)
        txn_rewind(c);
    return false;
}

static bool txn_begin(ballast_consumer_t *c)
{
    rd_kafka_error_t *error;

    if (c->ktxn.open)
        return true;
    if ((error = rd_kafka_begin_transaction(c->producer)))
        return txn_fail(c, error, "kafka: begin transaction failed");
    c->ktxn.open = true;
    c->ktxn.deadline_ms = bl_now_ms() + c->set.txn_interval_ms;
    return true;
}

/* Produces a finished message's records in the open transaction (opening
 * one if needed). @returns false when the transaction was aborted (its
 * partitions flagged for a rewind) or halted. */
static bool txn_add(ballast_consumer_t *c, bl_msg_t *m)
{
    if (c->ktxn.doomed)
        txn_halt(c);
    if (c->ktxn.halted || !txn_begin(c))
        return false;
    for (size_t i = 0; i < m->result.record_count; i++) {
        /* A dead letter's or tier move's log line waits for its
         * acknowledgement (it is the message's only record). */
        bl_failure_note_t *note = m->failed_over ? bl_failure_note(c, m) : NULL;
        rd_kafka_resp_err_t err;
        char tag[BL_TRACE_TAG_SIZE];
        while ((err = bl_produce_record(c->producer, &m->result.records[i],
                                        c->set.output_topic, bl_message_trace(m), note)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(c->producer, 10);
        if (err)
            free(note);
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            producer_dead(c);
            txn_halt(c);
            return false;
        }
        if (bl_record_refused(err)) {
            /* Permanent for this record: aborting and rewinding would only
             * meet it again. Nothing of this transaction may commit, for
             * it holds offsets up to this message. */
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                         "%s [%d] offset %lld%s: cannot produce its "
                                         "record to topic %s in the transaction: %s; "
                                         "the transaction is aborted and the offset "
                                         "stays uncommitted",
                                         m->topic, (int)m->partition,
                                         (long long)m->offset,
                                         bl_trace_log_tag(bl_message_trace(m), tag),
                                         m->result.records[i].topic
                                             ? m->result.records[i].topic
                                             : c->set.output_topic,
                                         rd_kafka_err2str(err)));
            txn_halt(c);
            return false;
        }
        if (err) {
            /* Anything else dooms the transaction: abort it rather than
             * commit offsets past a missing output. */
            bl_log(&c->log, BALLAST_LOG_WARN,
                   "%s [%d] offset %lld%s: cannot produce in the transaction: %s",
                   m->topic, (int)m->partition, (long long)m->offset,
                   bl_trace_log_tag(bl_message_trace(m), tag), rd_kafka_err2str(err));
            bl_ktxn_abort(c);
            return false;
        }
    }
    return true;
}

/* Messages finish out of order (ordering = key, none), so a finished
 * message's records wait, in offset order, until every earlier offset of
 * its partition finished too. */
void bl_ktxn_hold(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_part_t *p = m->part;
    bl_msg_t **pp = &p->held.head;

    if (p->orphan || atomic_load(&p->revoked) || atomic_load(&p->rewind)) {
        m->fate = BL_FATE_DROPPED;
        bl_msg_release(c, m);
        return;
    }
    bl_part_done(c, p, m->seq);
    /* Usually the newest: walk from the head only when out of order. */
    if (p->held.tail && p->held.tail->offset < m->offset)
        pp = &p->held.tail->next;
    else
        while (*pp && (*pp)->offset < m->offset)
            pp = &(*pp)->next;
    m->next = *pp;
    *pp = m;
    if (!m->next)
        p->held.tail = m;
    p->held.len++;
}

void bl_ktxn_flush(ballast_consumer_t *c)
{
    BL_PARTS_EACH(c, p) {
        int64_t next;
        if (c->ktxn.halted) {
            /* Nothing commits any more: nothing waits for a transaction. */
            bl_part_drop_held(c, p);
            continue;
        }
        if (atomic_load(&p->rewind))
            continue; /* its held messages go with the rewind */
        next = bl_tracker_committable(&p->tracker);
        while (p->held.head && p->held.head->offset < next) {
            bl_msg_t *m = bl_queue_pop(&p->held);
            if (!txn_add(c, m)) {
                /* Aborted: every partition is flagged for a rewind, so
                 * nothing more goes out. Or halted: drop the rest. */
                m->fate = BL_FATE_DROPPED;
                bl_msg_release(c, m);
                if (c->ktxn.halted)
                    bl_ktxn_flush(c);
                return;
            }
            bl_msg_release(c, m);
        }
    }
}


bool bl_ktxn_commit(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_error_t *error = NULL;

    if (c->ktxn.doomed)
        txn_halt(c);
    if (c->ktxn.halted)
        return false;
    /* Records first, then the offsets that cover them. */
    bl_ktxn_flush(c);
    if (!c->ktxn.open && !bl_parts_dirty(c))
        return true;
    if (!txn_begin(c))
        return false;
    list = rd_kafka_topic_partition_list_new(8);
    BL_PARTS_EACH(c, p) {
        int64_t next = bl_tracker_committable(&p->tracker);
        /* A partition waiting for its rewind holds offsets of an aborted
         * transaction. */
        if (next > p->stored && !atomic_load(&p->rewind))
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = next;
    }
    bl_parts_set_dirty(c, false);
    if (list->cnt)
        error = watched_send_offsets(c, list);
    if (!error)
        error = WATCHED(c, rd_kafka_commit_transaction, (int)c->ktxn.timeout_ms);
    if (error) {
        rd_kafka_topic_partition_list_destroy(list);
        return txn_fail(c, error, "kafka: commit transaction failed");
    }
    c->ktxn.open = false;
    atomic_fetch_add(&c->stats.commits, 1);
    for (int i = 0; i < list->cnt; i++) {
        bl_part_t *p = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (p)
            p->stored = p->committed = list->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return true;
}

void bl_ktxn_abort(ballast_consumer_t *c)
{
    rd_kafka_error_t *error;

    if (!c->ktxn.open || c->ktxn.halted)
        return;
    c->ktxn.open = false;
    if ((error = watched_abort(c))) {
        if (rd_kafka_error_is_fatal(error) || is_fenced(error)) {
            bl_set_fatal(c, txn_error(error, "kafka: abort transaction failed"));
            return;
        }
        rd_kafka_error_destroy(error);
        if (txn_reinit(c))
            txn_rewind(c);
        return;
    }
    txn_rewind(c);
}

void bl_ktxn_tick(ballast_consumer_t *c)
{
    if (c->ktxn.open && bl_now_ms() >= c->ktxn.deadline_ms)
        bl_ktxn_commit(c);
}
