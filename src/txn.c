/*
 * txn.c - exactly-once with Kafka outputs: every record a handler emits,
 * every dead-letter record and the consumed offsets go into one Kafka
 * transaction, committed every `transaction.interval.ms`.
 *
 * Only the poll thread calls these functions and only it uses the
 * transactional producer: workers leave their records on the message, and
 * the poll thread produces them when it takes the message back, so a
 * transaction holds exactly the records of messages whose offsets it
 * commits.
 *
 * Failure handling follows librdkafka's transaction state machine, with
 * the 2.0.2 pitfall in mind (a producer may turn fatal after a timeout):
 *   - abortable error: abort, then rewind every partition to its
 *     committed offset and drop what was in flight;
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
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TXN_TIMEOUT_MS 30000

/* A newer producer with our transactional.id exists: we are the zombie. */
static bool is_fenced(const rd_kafka_error_t *error)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    return code == RD_KAFKA_RESP_ERR__FENCED ||
           code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

static ballast_error_t *txn_error(rd_kafka_error_t *error, const char *what)
{
    bool fenced = is_fenced(error);
    ballast_error_t *err = bl_error_new(
        fenced ? BALLAST_ERR_FENCED : BALLAST_ERR_KAFKA, false, true,
        "%s: %s%s", what, rd_kafka_error_string(error),
        fenced ? " (another instance with the same transactional.id took over)"
               : "");
    rd_kafka_error_destroy(error);
    return err;
}

ballast_error_t *bl_txn_init(ballast_consumer_t *c, int64_t timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    rd_kafka_error_t *error;

    /* In rounds of a second, so that a stop during start-up is prompt; a
     * call that timed out, or ended on a retriable error (a coordinator
     * still loading), may be repeated. */
    while ((error = rd_kafka_init_transactions(c->producer, 1000)) &&
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
    bool fenced = code == RD_KAFKA_RESP_ERR__FENCED ||
                  code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                  code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;

    if (!code)
        return false;
    bl_set_fatal(c, bl_error_new(fenced ? BALLAST_ERR_FENCED : BALLAST_ERR_KAFKA, false,
                                 true, "kafka: transactional producer failed: %s%s",
                                 reason,
                                 fenced ? " (another instance with the same "
                                          "transactional.id took over)"
                                        : ""));
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
        (err = bl_txn_init(c, TXN_TIMEOUT_MS))) {
        bl_set_fatal(c, err);
        return false;
    }
    bl_producer_warm(c, WARM_TIMEOUT_MS);
    return true;
}

/* Drops everything in flight and seeks every assigned partition back to
 * the offset the group has committed. */
static void txn_rewind(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;

    bl_flush_staged(c);
    list = bl_reset_parts(c, false);
    err = bl_committed(c->rk, list, TXN_TIMEOUT_MS);
    if (err) {
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                     "kafka: cannot read committed offsets to "
                                     "rewind after an aborted transaction: %s",
                                     rd_kafka_err2str(err)));
        rd_kafka_topic_partition_list_destroy(list);
        return;
    }
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if (p && tp->offset >= 0)
            p->committed = tp->offset;
    }
    bl_seek_parts(c, list);
    bl_log(&c->log, BALLAST_LOG_WARN,
           "transaction aborted: %d partition(s) rewound to their committed "
           "offsets", list->cnt);
    rd_kafka_topic_partition_list_destroy(list);
}

/* A record of the open transaction was refused for good: aborts the
 * transaction, so that none of its offsets commit, and commits nothing
 * more. The pipeline is stopping (its fatal error is recorded). */
static void txn_halt(ballast_consumer_t *c)
{
    rd_kafka_error_t *error;

    if (c->txn_halted || !c->txn_open) {
        c->txn_halted = true;
        return;
    }
    c->txn_halted = true;
    c->txn_open = false;
    if ((error = rd_kafka_abort_transaction(c->producer, TXN_TIMEOUT_MS))) {
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: abort transaction failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

void bl_txn_delivered(ballast_consumer_t *c, const rd_kafka_message_t *rkm)
{
    bl_failure_note_t *note = rkm->_private;
    const char *topic = rd_kafka_topic_name(rkm->rkt);

    if (rkm->err && bl_record_refused(rkm->err) && !c->txn_doomed) {
        /* Not served inside a transactional call: txn_halt() runs when the
         * commit or the next record sees the flag. */
        c->txn_doomed = true;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                     "topic %s: the broker refused a record of the "
                                     "transaction: %s; the transaction is aborted and "
                                     "its offsets stay uncommitted",
                                     topic, rd_kafka_err2str(rkm->err)));
    } else if (rkm->err) {
        bl_log(&c->log, BALLAST_LOG_WARN, "topic %s: transactional record failed: %s",
               topic, rd_kafka_err2str(rkm->err));
    } else if (c->dlq_topic && !strcmp(topic, c->dlq_topic)) {
        atomic_fetch_add(&c->stats.dead_lettered, 1);
    } else {
        atomic_fetch_add(&c->stats.emitted, 1);
    }
    if (note && !rkm->err)
        bl_log_failure_note(c, note);
    free(note);
}

/* Settles a failed transactional call. @returns false (always: the
 * transaction did not commit). */
static bool txn_fail(ballast_consumer_t *c, rd_kafka_error_t *error, const char *what)
{
    bool rewind = true;

    if (c->txn_doomed) {
        /* A record was refused for good: redoing the transaction would
         * meet it again. */
        rd_kafka_error_destroy(error);
        txn_halt(c);
        return false;
    }
    c->txn_open = false;
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
        rd_kafka_error_t *aborted = rd_kafka_abort_transaction(c->producer, TXN_TIMEOUT_MS);
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

    if (c->txn_open)
        return true;
    if ((error = rd_kafka_begin_transaction(c->producer)))
        return txn_fail(c, error, "kafka: begin transaction failed");
    c->txn_open = true;
    c->txn_deadline_ms = bl_now_ms() + c->txn_interval_ms;
    return true;
}

bool bl_txn_add(ballast_consumer_t *c, bl_msg_t *m)
{
    if (c->txn_doomed)
        txn_halt(c);
    if (c->txn_halted || !txn_begin(c))
        return false;
    for (size_t i = 0; i < m->result.record_count; i++) {
        /* A dead letter's or tier move's log line waits for its
         * acknowledgement (it is the message's only record). */
        bl_failure_note_t *note = m->failed_over ? bl_failure_note(c, m) : NULL;
        rd_kafka_resp_err_t err;
        while ((err = bl_produce_record(c->producer, &m->result.records[i],
                                        c->output_topic, note)) ==
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
                                         "%s [%d] offset %lld: cannot produce its "
                                         "record to topic %s in the transaction: %s; "
                                         "the transaction is aborted and the offset "
                                         "stays uncommitted",
                                         m->topic, (int)m->partition,
                                         (long long)m->offset,
                                         m->result.records[i].topic
                                             ? m->result.records[i].topic
                                             : c->output_topic,
                                         rd_kafka_err2str(err)));
            txn_halt(c);
            return false;
        }
        if (err) {
            /* Anything else dooms the transaction: abort it rather than
             * commit offsets past a missing output. */
            bl_log(&c->log, BALLAST_LOG_WARN,
                   "%s [%d] offset %lld: cannot produce in the transaction: %s",
                   m->topic, (int)m->partition, (long long)m->offset,
                   rd_kafka_err2str(err));
            bl_txn_abort(c);
            return false;
        }
    }
    return true;
}

bool bl_txn_commit(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_consumer_group_metadata_t *cgmd;
    rd_kafka_error_t *error = NULL;

    if (c->txn_doomed)
        txn_halt(c);
    if (c->txn_halted)
        return false;
    /* Records first, then the offsets that cover them. */
    bl_flush_held(c);
    if (!c->txn_open && !c->offsets_dirty)
        return true;
    if (!txn_begin(c))
        return false;
    list = rd_kafka_topic_partition_list_new(8);
    for (bl_part_t *p = c->parts; p; p = p->next) {
        int64_t next = bl_tracker_committable(&p->tracker);
        if (next > p->stored)
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = next;
    }
    c->offsets_dirty = false;
    if (list->cnt) {
        cgmd = rd_kafka_consumer_group_metadata(c->rk);
        error = rd_kafka_send_offsets_to_transaction(c->producer, list, cgmd,
                                                     TXN_TIMEOUT_MS);
        rd_kafka_consumer_group_metadata_destroy(cgmd);
    }
    if (!error)
        error = rd_kafka_commit_transaction(c->producer, TXN_TIMEOUT_MS);
    if (error) {
        rd_kafka_topic_partition_list_destroy(list);
        return txn_fail(c, error, "kafka: commit transaction failed");
    }
    c->txn_open = false;
    atomic_fetch_add(&c->stats.commits, 1);
    for (int i = 0; i < list->cnt; i++) {
        bl_part_t *p = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (p)
            p->stored = p->committed = list->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return true;
}

void bl_txn_abort(ballast_consumer_t *c)
{
    rd_kafka_error_t *error;

    if (!c->txn_open || c->txn_halted)
        return;
    c->txn_open = false;
    if ((error = rd_kafka_abort_transaction(c->producer, TXN_TIMEOUT_MS))) {
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

void bl_txn_tick(ballast_consumer_t *c)
{
    if (c->txn_open && bl_now_ms() >= c->txn_deadline_ms)
        bl_txn_commit(c);
}
