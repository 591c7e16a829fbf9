/*
 * dispatch.c - the poll thread's traffic with the workers. It polls, wraps
 * each message, records its offset in its partition's tracker, and stages
 * it for the worker route.h picks; staged messages are handed over in
 * chunks, so that a fast pipeline takes one lock per chunk, not one per
 * message. Finished messages come back on the completion list, where they
 * retire (parts.c), or wait for a Kafka transaction (ktxn.c). The poll
 * thread never blocks on a handler: long handlers, retries and backlogs
 * only pause partitions (pause.h), and polling goes on, so the member is
 * never evicted for exceeding max.poll.interval.ms.
 */
#include "dispatch.h"

#include "clients.h"
#include "emit.h"
#include "ktxn.h"
#include "outcome.h"
#include "parts.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>

int bl_dispatch_init(ballast_consumer_t *c, size_t max_messages, uint64_t max_bytes)
{
    c->dispatch.bp.max_messages = max_messages;
    c->dispatch.bp.max_bytes = max_bytes;
    /* Hold back first; pause only when the backlog lasts a quarter of
     * max.poll.interval.ms, at most 5 s. */
    c->dispatch.bp.soft_limit_ms =
        c->set.max_poll_interval_ms / 4 < 5000 ? c->set.max_poll_interval_ms / 4 : 5000;
    c->dispatch.staged = calloc((size_t)c->set.nworkers, sizeof(*c->dispatch.staged));
    return c->dispatch.staged ? 0 : -1;
}

void bl_dispatch_free(ballast_consumer_t *c)
{
    for (int i = 0; c->dispatch.staged && i < c->set.nworkers; i++)
        bl_queue_free(&c->dispatch.staged[i]);
    free(c->dispatch.staged);
}

static bool over_limit(const ballast_consumer_t *c)
{
    return bl_backpressure_over(&c->dispatch.bp, bl_parts_inflight(c),
                                bl_parts_inflight_bytes(c));
}

/* ---- out to the workers --------------------------------------------------------- */

void bl_dispatch_flush(ballast_consumer_t *c)
{
    if (!c->dispatch.nstaged)
        return;
    for (int i = 0; i < c->set.nworkers; i++)
        if (c->dispatch.staged[i].len)
            bl_workers_give(c, i, &c->dispatch.staged[i]);
    c->dispatch.nstaged = 0;
}

/* A retry tier's message runs only when due. When its head is early, the
 * partition pauses, seeks back to it, and resumes at the due time; tiers
 * have one delay each, so later messages are due later still. */
static bool tier_not_due(ballast_consumer_t *c, bl_part_t *p, bl_msg_t *m,
                         rd_kafka_message_t *rkm)
{
    int64_t due;
    rd_kafka_resp_err_t err;

    if (bl_tiers_index(&c->set.tiers, m->topic) < 0 ||
        !bl_message_header_int(m, BALLAST_HEADER_RETRY_DUE, &due) || due <= bl_wall_ms())
        return false;
    p->tier_wait_until = due;
    bl_dispatch_sync_pause(c);
    if ((err = rd_kafka_seek(rkm->rkt, m->partition, m->offset, 5000)))
        bl_log(&c->log, BALLAST_LOG_WARN, "%s [%d]: seek back to %lld failed: %s",
               m->topic, (int)m->partition, (long long)m->offset,
               rd_kafka_err2str(err));
    return true;
}

static void accept_message(ballast_consumer_t *c, rd_kafka_message_t *rkm)
{
    bl_part_t *p = bl_part_of(c, rkm);
    bl_msg_t *m;

    if (!p || atomic_load(&p->revoked) || atomic_load(&p->rewind)) {
        /* Not ours (any more): the next owner reads it from its offset. Or
         * its partition waits for a rewind, which fetches it again. */
        rd_kafka_message_destroy(rkm);
        return;
    }
    m = bl_msg_alloc(c);
    if (!m) {
        rd_kafka_message_destroy(rkm);
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                  "out of memory receiving a message"));
        return;
    }
    bl_message_from_rkm(m, rkm);
    if (c->set.tiers.count && tier_not_due(c, p, m, rkm)) {
        bl_msg_free(c, m);
        return;
    }
    if (bl_tracker_add_ts(&p->tracker, m->offset, m->timestamp, &m->seq)) {
        /* An offset at or below one already received: a rewind we did not
         * ask for. Handling it again would break per-partition order. */
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%s [%d]: offset %lld received again; ignored", p->topic,
               (int)rkm->partition, (long long)m->offset);
        bl_msg_free(c, m);
        return;
    }
    m->part = p;
    p->last_ts = m->timestamp;
    atomic_init(&m->pending_emits, 1);
    if (p->skip.bits && bl_skipset_has(&p->skip, m->offset)) {
        /* Finished before a restart (commit metadata): done already. */
        bl_part_done(c, p, m->seq);
        atomic_fetch_add(&c->stats.skipped_done, 1);
        bl_msg_free(c, m);
        return;
    }
    bl_parts_admit(c, m);
    /* The poll thread is its only writer: no locked add per message. */
    atomic_store_explicit(&c->stats.consumed,
                          atomic_load_explicit(&c->stats.consumed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    bl_queue_push(&c->dispatch.staged[bl_route_message(c->set.ordering, c->set.nworkers,
                                                        p->worker, m->key, m->key_len,
                                                        &c->dispatch.round_robin)],
                  m);
    c->dispatch.nstaged++;
}

static void handle_consumer_error(ballast_consumer_t *c, rd_kafka_message_t *rkm)
{
    const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "-";

    switch (rkm->err) {
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        break;
    case RD_KAFKA_RESP_ERR__FATAL:
        /* The consumer is of no more use (a consumer group protocol
         * heartbeat refused for good, say): librdkafka reports it here,
         * not to the error callback. */
        bl_on_fatal(c, c->rk);
        break;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                  "topic %s: %s", topic,
                                  rd_kafka_message_errstr(rkm)));
        break;
    default:
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: %s: %s", topic,
               rd_kafka_message_errstr(rkm));
        break;
    }
    rd_kafka_message_destroy(rkm);
}

void bl_dispatch_poll(ballast_consumer_t *c)
{
    int timeout = c->dispatch.bp.on ? POLL_BUSY_MS : POLL_IDLE_MS;

    /* A rewind wanted (a rebalance aborted a Kafka transaction) is the poll
     * loop's next step. */
    for (int n = 0; n < STAGE_CHUNK && !over_limit(c) && !bl_parts_rewind_wanted(c); n++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, 0);
        if (!rkm && !n)
            rkm = rd_kafka_consumer_poll(c->rk, timeout);
        if (!rkm)
            break;
        if (rkm->err)
            handle_consumer_error(c, rkm);
        else
            accept_message(c, rkm);
    }
    bl_dispatch_flush(c);
}

/* ---- back from the workers ---------------------------------------------------- */

void bl_dispatch_take_back(ballast_consumer_t *c)
{
    bool in_txn = c->set.semantics == BL_EXACTLY_ONCE_KAFKA;
    bl_queue_t done;

    bl_done_take(c, &done);
    if (!done.head)
        return;
    for (bl_msg_t *m = done.head, *next; m; m = next) {
        next = m->next;
        if (in_txn && m->fate == BL_FATE_DONE && m->result.record_count) {
            bl_ktxn_hold(c, m);
            continue;
        }
        if (m->failure_pending)
            bl_emit_pending(c, m);
        bl_msg_release(c, m);
    }
    if (in_txn)
        bl_ktxn_flush(c);
}


void bl_dispatch_drain(ballast_consumer_t *c, bl_part_t **parts, size_t n, int64_t deadline)
{
    for (;;) {
        bool busy = false;
        atomic_store(&c->run.last_poll_ms, bl_now_ms());
        bl_dispatch_take_back(c);
        bl_emit_serve(c);
        for (size_t i = 0; i < n; i++)
            if (parts[i] && parts[i]->inflight)
                busy = true;
        if (!busy || bl_now_ms() >= deadline)
            return;
        /* Records still wait in the producer: send them now rather than
         * after its linger (flushing serves their delivery reports too). */
        if (c->producer && c->set.semantics != BL_EXACTLY_ONCE_KAFKA &&
            rd_kafka_outq_len(c->producer) > 0)
            rd_kafka_flush(c->producer, 5);
        else
            bl_done_wait(c, 5);
    }
}

/* ---- backpressure and pauses ------------------------------------------------- */

/* Why every partition is to pause now. */
static bl_pause_why_t pause_why(const ballast_consumer_t *c)
{
    bl_pause_why_t why = {c->dispatch.bp.on, c->dispatch.draining,
                          bl_breaker_tripped(&c->breaker), bl_handler_unavailable(c)};
    return why;
}

/* At debug level: which partitions were paused or resumed, and why. */
static void log_pauses(ballast_consumer_t *c, const char *what,
                       const rd_kafka_topic_partition_list_t *list)
{
    const bl_pause_why_t *why = &c->dispatch.applied;
    char names[512];

    if (c->log.level < BALLAST_LOG_DEBUG)
        return;
    bl_log(&c->log, BALLAST_LOG_DEBUG, "%s %s (backpressure %s, stopping %s, breaker %s, "
           "handler unavailable %s, retry tier waiting %s)", what,
           bl_parts_name(list, names, sizeof(names)), why->backpressure ? "yes" : "no",
           why->draining ? "yes" : "no", why->breaker ? "yes" : "no",
           why->unavailable ? "yes" : "no", c->dispatch.tier_waiting ? "yes" : "no");
}

void bl_dispatch_sync_pause(ballast_consumer_t *c)
{
    int64_t now_wall = bl_wall_ms();
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    uint64_t paused = 0;
    size_t waiting = 0;

    c->dispatch.applied = pause_why(c);
    BL_PARTS_EACH(c, p) {
        bool want = bl_want_paused(&c->dispatch.applied, p->tier_wait_until, now_wall);
        if (want != p->paused) {
            rd_kafka_topic_partition_list_t **list = want ? &pause : &resume;
            if (!*list)
                *list = rd_kafka_topic_partition_list_new(8);
            rd_kafka_topic_partition_list_add(*list, p->topic, p->partition);
            p->paused = want;
            if (!want)
                p->tier_wait_until = 0;
        }
        paused += p->paused;
        waiting += p->tier_wait_until != 0;
    }
    /* Counted here, not kept up as partitions come and go: a retired or
     * rewound partition's wait goes with it. */
    c->dispatch.tier_waiting = waiting;
    if (pause) {
        rd_kafka_pause_partitions(c->rk, pause);
        log_pauses(c, "paused", pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(c->rk, resume);
        log_pauses(c, "resumed", resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
    atomic_store(&c->stats.paused_partitions, paused);
}

bool bl_dispatch_hold_back(ballast_consumer_t *c, int64_t now)
{
    size_t inflight = bl_parts_inflight(c);
    uint64_t bytes = bl_parts_inflight_bytes(c);
    bool over = bl_backpressure_update(&c->dispatch.bp, inflight, bytes, now);
    bl_pause_why_t why = pause_why(c);

    atomic_store(&c->stats.inflight, inflight);
    atomic_store(&c->stats.inflight_bytes, bytes);
    if (why.backpressure != c->dispatch.applied.backpressure ||
        why.breaker != c->dispatch.applied.breaker ||
        why.unavailable != c->dispatch.applied.unavailable || c->dispatch.tier_waiting)
        bl_dispatch_sync_pause(c);
    if (!over || c->dispatch.bp.on)
        return false;
    bl_dispatch_flush(c);
    bl_done_wait(c, POLL_BUSY_MS);
    return true;
}

void bl_dispatch_stop_fetching(ballast_consumer_t *c)
{
    bl_dispatch_flush(c);
    c->dispatch.draining = true;
    bl_dispatch_sync_pause(c);
}

