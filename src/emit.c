/*
 * emit.c - everything a consumer produces: the records its handler emits,
 * the copies of messages sent to a retry tier or the DLQ, and the delivery
 * reports of both (outside Kafka transactions; ktxn.c serves those in a
 * transaction). producer.c holds the record formats; this file decides
 * what goes out, from which thread, and what an acknowledgement means.
 *
 * At-least-once: a worker produces what its handler emitted; a dead letter
 * or tier move is produced by the poll thread once the message is handed
 * back (see bl_emit_pending()), unless a worker waits for it (exactly-once
 * into a database). A message counts as finished only once every record
 * of it was acknowledged (pending_emits).
 */
#include "emit.h"

#include "parts.h"

#include <stdio.h>
#include <stdlib.h>

void bl_emit_init(ballast_consumer_t *c)
{
    pthread_mutex_init(&c->emit.topics_mtx, NULL);
}

void bl_emit_free(ballast_consumer_t *c)
{
    for (size_t i = 0; i < c->emit.nknown; i++)
        free(c->emit.known[i]);
    free(c->emit.known);
    pthread_mutex_destroy(&c->emit.topics_mtx);
}

/* ---- topics ------------------------------------------------------------------- */

/* Asks the producer's cluster about one topic, which leaves it in the
 * producer's metadata cache. */
static void warm_topic(ballast_consumer_t *c, const char *name, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;

    if (!name || !*name || !(rkt = rd_kafka_topic_new(c->producer, name, NULL)))
        return;
    err = rd_kafka_metadata(c->producer, 0, rkt, &md, timeout_ms);
    if (err)
        bl_log(&c->log, BALLAST_LOG_DEBUG, "producer: no metadata for %s yet: %s",
               name, rd_kafka_err2str(err));
    else
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
}

void bl_emit_warm(ballast_consumer_t *c, int timeout_ms)
{
    if (!c->producer)
        return;
    warm_topic(c, c->set.output_topic, timeout_ms);
    warm_topic(c, c->set.dlq_topic, timeout_ms);
    for (size_t i = 0; i < c->set.tiers.count; i++)
        warm_topic(c, c->set.tiers.tiers[i].topic, timeout_ms);
}

/* Asks the cluster about @p topic. @returns false only when it answered
 * that there is no such topic. */
static bool lookup_topic(ballast_consumer_t *c, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->producer, topic, NULL);
    rd_kafka_resp_err_t err;
    bool exists = true;

    if (!rkt)
        return true;
    err = rd_kafka_metadata(c->producer, 0, rkt, &md, WARM_TIMEOUT_MS);
    if (!err) {
        for (int i = 0; i < md->topic_cnt; i++)
            if (!strcmp(md->topics[i].topic, topic))
                exists = md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                         md->topics[i].err != RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return exists;
}

/* Whether the cluster has @p topic, a topic an emitted record names.
 * output.topic was checked at start-up; any other name is asked about once
 * and remembered. When the cluster cannot answer, says yes (the record then
 * waits in the producer as usual). Any thread. */
static bool topic_exists(ballast_consumer_t *c, const char *topic)
{
    bool known = c->set.output_topic && !strcmp(topic, c->set.output_topic);
    char **grown;

    pthread_mutex_lock(&c->emit.topics_mtx);
    for (size_t i = 0; !known && i < c->emit.nknown; i++)
        known = !strcmp(c->emit.known[i], topic);
    pthread_mutex_unlock(&c->emit.topics_mtx);
    if (known)
        return true;
    if (!lookup_topic(c, topic))
        return false;
    pthread_mutex_lock(&c->emit.topics_mtx);
    if ((grown = realloc(c->emit.known, (c->emit.nknown + 1) * sizeof(*grown)))) {
        c->emit.known = grown;
        if ((grown[c->emit.nknown] = bl_strdup(topic)))
            c->emit.nknown++;
    }
    pthread_mutex_unlock(&c->emit.topics_mtx);
    return true;
}


bool bl_emit_routable(ballast_consumer_t *c, bl_msg_t *m)
{
    for (size_t i = 0; i < m->result.record_count; i++) {
        const char *topic = m->result.records[i].topic;
        char why[300], tag[BL_TRACE_TAG_SIZE];
        if (!c->producer)
            bl_fmt(why, sizeof(why), "records, but no producer is configured");
        else if (!topic && !c->set.output_topic)
            bl_fmt(why, sizeof(why), "a record with no topic, and output.topic is not set");
        else if (topic && !topic_exists(c, topic))
            bl_fmt(why, sizeof(why), "a record for topic \"%s\", which does not exist "
                   "on the cluster", topic);
        else
            continue;
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_HANDLER, false, false,
                                     "%s [%d] offset %lld%s: the handler emitted %s; the "
                                     "pipeline stops and the offset stays uncommitted",
                                     m->topic, (int)m->partition, (long long)m->offset,
                                     bl_trace_log_tag(bl_message_trace(m), tag), why));
        return false;
    }
    return true;
}

/* ---- producing ---------------------------------------------------------------- */

/* Produces @p rec, or else the failure record @p f, for @p m, waiting while
 * the producer's queue is full (on the @p poll_thread by serving delivery
 * reports, elsewhere by sleeping while the poll thread serves them).
 * @returns false when the producer refused it for good: the message then
 * fails and the pipeline stops. */
static bool produce_for(ballast_consumer_t *c, bl_msg_t *m, const bl_record_t *rec,
                        const bl_failure_t *f, bool poll_thread)
{
    rd_kafka_resp_err_t err;
    char tag[BL_TRACE_TAG_SIZE];

    while ((err = rec ? bl_produce_record(c->producer, rec, c->set.output_topic, bl_message_trace(m), m)
                      : bl_produce_failure(c->producer, m, f, m)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        if (poll_thread)
            rd_kafka_poll(c->producer, 5);
        else
            bl_sleep_ms(5);
    }
    if (!err)
        return true;
    m->fate = BL_FATE_FAILED;
    bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                 "topic %s: cannot produce a record for %s [%d] "
                                 "offset %lld%s: %s; the offset stays uncommitted",
                                 !rec         ? f->topic
                                 : rec->topic ? rec->topic
                                              : c->set.output_topic,
                                 m->topic, (int)m->partition, (long long)m->offset,
                                 bl_trace_log_tag(bl_message_trace(m), tag), rd_kafka_err2str(err)));
    return false;
}

/* Where and why @p m failed to, from what bl_emit_fail_over() recorded. */
static bl_failure_t failure_of(const ballast_consumer_t *c, const bl_msg_t *m)
{
    bl_failure_t f = {m->failure_tier >= 0 ? c->set.tiers.tiers[m->failure_tier].topic
                                           : c->set.dlq_topic,
                      c->set.group, m->result.error, m->attempt, m->failure_due_ms,
                      m->failure_tier};
    return f;
}

/* The records are copies and the producer copies them again, so the
 * message keeps neither while it waits for the acknowledgements: holding
 * the consumed message would keep librdkafka's whole fetch buffer alive
 * for it. (Exactly-once into a database may run the handler again, so it
 * keeps the message.) */
bool bl_emit_records(ballast_consumer_t *c, bl_msg_t *m)
{
    size_t n = m->result.record_count;

    /* The records carry the message's child context, read from its
     * headers: before they go with the payload. */
    if (n)
        (void)bl_message_trace(m);
    if (c->set.semantics != BL_EXACTLY_ONCE_DB)
        bl_message_release_payload(m, m->part->topic);
    atomic_store(&m->pending_emits, (int)n + 1);
    for (size_t i = 0; i < n; i++) {
        if (!produce_for(c, m, &m->result.records[i], NULL, false)) {
            atomic_fetch_sub(&m->pending_emits, (int)(n - i));
            return false;
        }
    }
    bl_result_free_records(&m->result);
    return true;
}

/* Produces the retry-tier or dead-letter copy bl_emit_fail_over() decided
 * for @p m, straight from the message, counting it in pending_emits: on the
 * @p poll_thread, or on a worker that waits for the acknowledgement. A
 * refusal fails the message and stops the pipeline. */
static void produce_failure(ballast_consumer_t *c, bl_msg_t *m, bool poll_thread)
{
    bl_failure_t f = failure_of(c, m);

    atomic_fetch_add(&m->pending_emits, 1);
    if (!produce_for(c, m, NULL, &f, poll_thread))
        atomic_fetch_sub(&m->pending_emits, 1);
}

void bl_emit_fail_over(ballast_consumer_t *c, bl_msg_t *m, int tier)
{
    bool in_txn = c->set.semantics == BL_EXACTLY_ONCE_KAFKA;
    char *error;
    bl_failure_t f;

    /* The handler's error text stays, as the record's x-error-message;
     * what it emitted goes. */
    if (!m->result.error)
        m->result.error = bl_strdup("no reason given");
    error = m->result.error;
    bl_result_free_records(&m->result);
    m->failure_tier = tier;
    m->failure_due_ms = tier >= 0 ? bl_wall_ms() + c->set.tiers.tiers[tier].delay_ms : -1;
    m->failed_over = true;
    f = failure_of(c, m);
    if (!error || (in_txn && bl_failure_record(m, &f, &m->result))) {
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                     "out of memory building a record for %s", f.topic));
        return;
    }
    if (in_txn)
        return;
    if (m->waiter)
        produce_failure(c, m, false);
    else
        m->failure_pending = true;
}

void bl_emit_pending(ballast_consumer_t *c, bl_msg_t *m)
{
    m->failure_pending = false;
    produce_failure(c, m, true);
    bl_message_release_payload(m, m->part->topic);
}

/* ---- delivery reports and their notes --------------------------------------- */

void bl_emit_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    ballast_consumer_t *c = opaque;
    bl_msg_t *m = rkm->_private;
    char tag[BL_TRACE_TAG_SIZE];

    (void)rk;

    if (!m)
        return;
    if (rkm->err) {
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                  "topic %s: delivery of a record for %s [%d] "
                                  "offset %lld%s failed: %s; the offset stays uncommitted",
                                  rd_kafka_topic_name(rkm->rkt), m->topic,
                                  (int)m->partition, (long long)m->offset,
                                  bl_trace_log_tag(bl_message_trace(m), tag),
                                  rd_kafka_err2str(rkm->err)));
    } else if (m->failed_over) {
        bl_failure_note_t *note = bl_failure_note(c, m);
        if (note)
            bl_failure_note_log(c, note);
        free(note);
        atomic_fetch_add(m->failure_tier < 0 ? &c->stats.dead_lettered : &c->stats.emitted, 1);
    } else {
        atomic_fetch_add(&c->stats.emitted, 1);
    }
    if (m->waiter) {
        /* A worker waits for this delivery (database exactly-once): it
         * still holds its own reference, so m stays valid. */
        bl_signal_t *waiter = m->waiter;
        bl_msg_release(c, m);
        bl_signal_wake(waiter);
        return;
    }
    bl_msg_release(c, m);
}

void bl_emit_serve(ballast_consumer_t *c)
{
    if (c->producer)
        rd_kafka_poll(c->producer, 0);
}

/* Dead letters and tier moves are logged when the broker acknowledged
 * their record: the first in a second in full, the rest of that second as a
 * count, so that a flood of poison messages does not turn into a flood of
 * log lines (the metrics count every one). */
static atomic_int_fast64_t failure_logged_ms;
static atomic_uint_fast64_t failure_suppressed;

bl_failure_note_t *bl_failure_note(ballast_consumer_t *c, const bl_msg_t *m)
{
    int64_t now = bl_now_ms(), last = atomic_load(&failure_logged_ms);
    bl_failure_t f = failure_of(c, m);
    bl_failure_note_t *note;
    uint64_t more;
    char tail[64] = "", line[1024], tag[BL_TRACE_TAG_SIZE];

    if (now - last < 1000 || !atomic_compare_exchange_strong(&failure_logged_ms, &last, now)) {
        atomic_fetch_add(&failure_suppressed, 1);
        return NULL;
    }
    if ((more = atomic_exchange(&failure_suppressed, 0)))
        bl_fmt(tail, sizeof(tail), " (%llu more since the last such line)",
               (unsigned long long)more);
    bl_fmt(line, sizeof(line), "%s [%d] offset %lld%s: %s %s after %d attempt(s): %s%s",
           m->topic, (int)m->partition, (long long)m->offset, bl_trace_log_tag(bl_message_trace(m), tag),
           m->failure_tier >= 0 ? "moved to retry tier" : "dead-lettered to", f.topic,
           m->attempt, f.error ? f.error : "no reason given", tail);
    if ((note = malloc(sizeof(*note) + strlen(line) + 1))) {
        note->tier = m->failure_tier >= 0;
        memcpy(note->line, line, strlen(line) + 1);
    }
    return note;
}

void bl_failure_note_log(ballast_consumer_t *c, const bl_failure_note_t *note)
{
    bl_log(&c->log, note->tier ? BALLAST_LOG_INFO : BALLAST_LOG_WARN, "%s", note->line);
}

