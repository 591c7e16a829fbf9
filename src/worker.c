/*
 * worker.c - handler workers: each takes messages from its queue, runs the
 * handler with blocking retries and back-off (never in the poll loop),
 * decides what each outcome means (done, dead-letter, or stop), and hands
 * the messages back on the completion list.
 */
#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- workers ------------------------------------------------------------ */

/* Takes the next messages for a worker; blocks while there are none.
 * @returns false when the worker should exit. */
static bool worker_take(bl_worker_t *w, bl_queue_t *out)
{
    ballast_consumer_t *c = w->cons;
    size_t want = c->batch_mode ? c->batch_max : WORKER_TAKE_MAX;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->mtx);
    while (!w->queue.len && !w->quit)
        pthread_cond_wait(&w->cond, &w->mtx);
    if (c->batch_mode && w->queue.len < want && !w->quit && c->batch_ms > 0) {
        /* Let the batch fill for up to batch.max.ms. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += c->batch_ms / 1000;
        deadline.tv_nsec += (c->batch_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (w->queue.len < want && !w->quit && !bl_stopping(c) &&
               pthread_cond_timedwait(&w->cond, &w->mtx, &deadline) != ETIMEDOUT)
            ;
    }
    if (w->queue.len <= want) {
        /* All of it: no walk over the list while holding the lock (each
         * step is a cache miss on a message the poll thread wrote). */
        *out = w->queue;
        memset(&w->queue, 0, sizeof(w->queue));
    }
    while (w->queue.head && out->len < want) {
        bl_msg_t *m = w->queue.head;
        w->queue.head = m->next;
        if (!w->queue.head)
            w->queue.tail = NULL;
        w->queue.len--;
        bl_queue_push(out, m);
    }
    pthread_mutex_unlock(&w->mtx);
    return out->len > 0 || !w->quit;
}

/* Waits @p ms unless the drain's end comes first (a message waiting for
 * its retry has not started again: it stays uncommitted).
 * @returns false when the wait was cut short so. */
static bool worker_sleep(bl_worker_t *w, int64_t ms)
{
    int64_t until = bl_now_ms() + ms;
    ballast_consumer_t *c = w->cons;

    pthread_mutex_lock(&w->mtx);
    while (!atomic_load(&c->abandon) && !w->quit) {
        int64_t left = until - bl_now_ms();
        struct timespec ts;
        if (left <= 0)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->mtx, &ts);
    }
    pthread_mutex_unlock(&w->mtx);
    return !atomic_load(&c->abandon);
}

static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n);

/* How long to wait before calling the handler again for @p group: the
 * retry back-off of its first message's attempt, or, when the handler was
 * unavailable, of how long it has been (capped, so that a dependency coming
 * back is noticed soon). */
static int64_t retry_delay(bl_worker_t *w, bl_msg_t **group, bool down)
{
    ballast_consumer_t *c = w->cons;
    double r = rand_r(&w->rnd) / (RAND_MAX + 1.0);
    int64_t ms;

    if (!down)
        return bl_backoff_delay(&c->backoff, group[0]->attempt, r);
    ms = bl_backoff_delay(&c->backoff, ++w->down_tries, r);
    return ms < UNAVAILABLE_RETRY_MAX_MS ? ms : UNAVAILABLE_RETRY_MAX_MS;
}

/* Notes whether this worker's handler could run at all (see
 * BALLAST_OUTCOME_UNAVAILABLE). While any worker's cannot, consumption
 * pauses and readiness fails with @p why; the first worker to go down and
 * the last to come back say so, one line each. */
static void note_available(bl_worker_t *w, bool down, const char *why)
{
    ballast_consumer_t *c = w->cons;

    if (down) {
        pthread_mutex_lock(&c->obs_mtx);
        bl_fmt(c->unavailable_reason, sizeof(c->unavailable_reason), "%s",
               why ? why : "no reason given");
        pthread_mutex_unlock(&c->obs_mtx);
    }
    if (down == atomic_load(&w->unavailable))
        return;
    atomic_store(&w->unavailable, down);
    w->down_tries = 0;
    /* At a stop, a handler cancelled or gone is no news. */
    if (down && atomic_fetch_add(&c->unavailable_workers, 1) == 0 && !bl_stopping(c)) {
        atomic_store(&c->unavailable_since_ms, bl_now_ms());
        bl_log(&c->log, BALLAST_LOG_WARN,
               "handler unavailable: %s; consumption is paused, and its messages are "
               "retried without counting attempts until it answers",
               why ? why : "no reason given");
    } else if (!down && atomic_fetch_sub(&c->unavailable_workers, 1) == 1 && !bl_stopping(c)) {
        bl_log(&c->log, BALLAST_LOG_INFO, "handler available again after %.1f s",
               (double)(bl_now_ms() - atomic_load(&c->unavailable_since_ms)) / 1000.0);
    }
}

/* A plugin may return anything: an outcome outside the enum is a bug in
 * it, which must neither pass for success nor be retried forever. */
static void check_outcome(bl_msg_t *m)
{
    char why[128];

    if (m->outcome >= BALLAST_OUTCOME_OK && m->outcome <= BALLAST_OUTCOME_UNAVAILABLE)
        return;
    bl_fmt(why, sizeof(why), "the handler returned outcome %d, which is not ok, retry, "
           "fail or unavailable", (int)m->outcome);
    ballast_result_set_error(&m->result, why);
    m->outcome = BALLAST_OUTCOME_FAIL;
}

static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n);

/* Runs the handler once over @p msgs, timing it for the latency histogram
 * and the stuck-handler watchdog, and noting transient failures and an
 * unavailable handler for readiness. */
static void call_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    struct timespec t0, t1;
    int64_t start, micros;
    bool transient = false;
    const char *down = NULL;

    /* One clock read for both: bl_now_ms() reads the same clock. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    start = (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000;
    atomic_store(&w->busy_since, start ? start : 1);
    run_handler(w, msgs, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_store(&w->busy_since, 0);
    micros = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
             (t1.tv_nsec - t0.tv_nsec) / 1000;
    for (size_t i = 0; i < n; i++) {
        check_outcome(msgs[i]);
        bl_histogram_observe(&c->latency, micros / (int64_t)n);
        if (msgs[i]->outcome == BALLAST_OUTCOME_UNAVAILABLE && !down)
            down = msgs[i]->result.error ? msgs[i]->result.error : "unavailable";
        if (msgs[i]->outcome == BALLAST_OUTCOME_RETRY && !transient) {
            transient = true;
            pthread_mutex_lock(&c->obs_mtx);
            bl_fmt(c->last_transient, sizeof(c->last_transient), "%s",
                   msgs[i]->result.error ? msgs[i]->result.error : "retry");
            pthread_mutex_unlock(&c->obs_mtx);
        }
    }
    atomic_store(&w->transient, transient);
    note_available(w, down != NULL, down);
}

/* Runs the handler once over @p msgs (one message, or a batch). */
static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    const ballast_handler_t *h = w->cons->handler;

    for (size_t i = 0; i < n; i++) {
        bl_result_reset(&msgs[i]->result);
        msgs[i]->outcome = BALLAST_OUTCOME_RETRY;
    }
    if (n > 1 && h->handle_batch) {
        ballast_outcome_t stack_out[64], *outcomes = stack_out;
        ballast_result_t *stack_res[64], **results = stack_res;
        if (n > 64) {
            outcomes = malloc(n * sizeof(*outcomes));
            results = malloc(n * sizeof(*results));
        }
        if (!outcomes || !results) {
            if (outcomes != stack_out)
                free(outcomes);
            if (results != stack_res)
                free(results);
            for (size_t i = 0; i < n; i++)
                ballast_result_set_error(&msgs[i]->result, "out of memory");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            results[i] = &msgs[i]->result;
            outcomes[i] = BALLAST_OUTCOME_RETRY;
        }
        h->handle_batch(w->state, (const ballast_message_t *const *)msgs,
                        results, n, outcomes);
        for (size_t i = 0; i < n; i++)
            msgs[i]->outcome = outcomes[i];
        if (outcomes != stack_out) {
            free(outcomes);
            free(results);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        msgs[i]->outcome = h->handle(w->state, msgs[i], &msgs[i]->result);
}

/* Produces @p rec, or else the failure record @p f, for @p m, waiting while
 * the producer's queue is full (on the @p poll_thread by serving delivery
 * reports, elsewhere by sleeping while the poll thread serves them).
 * @returns false when the producer refused it for good: the message then
 * fails and the pipeline stops. */
static bool produce_for(ballast_consumer_t *c, bl_msg_t *m, const bl_record_t *rec,
                        const bl_failure_t *f, bool poll_thread)
{
    rd_kafka_resp_err_t err;

    while ((err = rec ? bl_produce_record(c->producer, rec, c->output_topic, m)
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
                                 "offset %lld: %s; the offset stays uncommitted",
                                 !rec ? f->topic : rec->topic ? rec->topic : c->output_topic,
                                 m->topic, (int)m->partition, (long long)m->offset,
                                 rd_kafka_err2str(err)));
    return false;
}

/* Where and why @p m failed to, from what send_failure() recorded. */
static bl_failure_t failure_of(const ballast_consumer_t *c, const bl_msg_t *m)
{
    bl_failure_t f = {m->failure_tier >= 0 ? c->tiers.tiers[m->failure_tier].topic
                                           : c->dlq_topic,
                      c->group, m->result.error, m->attempt, m->failure_due_ms,
                      m->failure_tier};
    return f;
}

/* Produces the records of a finished message. @returns false when the
 * producer refused one for good (the message then fails).
 *
 * The records are copies and the producer copies them again, so the
 * message keeps neither while it waits for the acknowledgements: holding
 * the consumed message would keep librdkafka's whole fetch buffer alive
 * for it. (Exactly-once into a database may run the handler again, so it
 * keeps the message.) */
static bool produce_records(ballast_consumer_t *c, bl_msg_t *m)
{
    size_t n = m->result.record_count;

    if (!c->txn_ops)
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

void bl_produce_failure_of(ballast_consumer_t *c, bl_msg_t *m, bool poll_thread)
{
    bl_failure_t f = failure_of(c, m);

    atomic_fetch_add(&m->pending_emits, 1);
    if (!produce_for(c, m, NULL, &f, poll_thread))
        atomic_fetch_sub(&m->pending_emits, 1);
}

/* Records a final outcome for the DLQ breaker. @returns true when this
 * dead letter trips it (or it had tripped): the message must then not be
 * dead-lettered, and consumption stops. Any worker thread. */
static bool breaker_note(ballast_consumer_t *c, bool dead_letter, const char *why)
{
    bool trip = false;

    if (!c->breaker_max_consecutive && c->breaker_max_ratio <= 0)
        return false;
    pthread_mutex_lock(&c->breaker_mtx);
    if (atomic_load(&c->breaker)) {
        pthread_mutex_unlock(&c->breaker_mtx);
        return dead_letter;
    }
    c->breaker_consecutive = dead_letter ? c->breaker_consecutive + 1 : 0;
    if (c->breaker_window) {
        if (c->breaker_fill == c->breaker_window_size)
            c->breaker_dead -= c->breaker_window[c->breaker_pos];
        else
            c->breaker_fill++;
        c->breaker_window[c->breaker_pos] = dead_letter;
        c->breaker_dead += dead_letter;
        c->breaker_pos = (c->breaker_pos + 1) % c->breaker_window_size;
    }
    if (dead_letter && c->breaker_max_consecutive &&
        c->breaker_consecutive > c->breaker_max_consecutive) {
        trip = true;
        bl_fmt(c->breaker_reason, sizeof(c->breaker_reason),
               "DLQ breaker tripped: more than %lld messages in a row failed "
               "(dlq.max.consecutive); consumption is paused; last error: %s",
               (long long)c->breaker_max_consecutive, why);
    } else if (dead_letter && c->breaker_window &&
               c->breaker_fill == c->breaker_window_size &&
               (double)c->breaker_dead / (double)c->breaker_window_size >
                   c->breaker_max_ratio) {
        trip = true;
        bl_fmt(c->breaker_reason, sizeof(c->breaker_reason),
               "DLQ breaker tripped: %zu of the last %zu messages failed "
               "(dlq.max.ratio = %g); consumption is paused; last error: %s",
               c->breaker_dead, c->breaker_window_size, c->breaker_max_ratio, why);
    }
    if (trip) {
        atomic_store(&c->breaker, true);
        bl_log(&c->log, BALLAST_LOG_ERROR, "%s", c->breaker_reason);
    }
    pthread_mutex_unlock(&c->breaker_mtx);
    return trip;
}

/* The retry tier a transiently failing message moves to next, or -1. */
static int next_tier(const ballast_consumer_t *c, const bl_msg_t *m)
{
    int next;

    if (m->outcome != BALLAST_OUTCOME_RETRY || !c->tiers.count)
        return -1;
    next = bl_tiers_index(&c->tiers, m->topic) + 1; /* an input topic: 0 */
    return next < (int)c->tiers.count ? next : -1;
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
    char tail[64] = "", line[1024];

    if (now - last < 1000 || !atomic_compare_exchange_strong(&failure_logged_ms, &last, now)) {
        atomic_fetch_add(&failure_suppressed, 1);
        return NULL;
    }
    if ((more = atomic_exchange(&failure_suppressed, 0)))
        bl_fmt(tail, sizeof(tail), " (%llu more since the last such line)",
               (unsigned long long)more);
    bl_fmt(line, sizeof(line), "%s [%d] offset %lld: %s %s after %d attempt(s): %s%s", m->topic,
           (int)m->partition, (long long)m->offset,
           m->failure_tier >= 0 ? "moved to retry tier" : "dead-lettered to", f.topic,
           m->attempt, f.error ? f.error : "no reason given", tail);
    if ((note = malloc(sizeof(*note) + strlen(line) + 1))) {
        note->tier = m->failure_tier >= 0;
        memcpy(note->line, line, strlen(line) + 1);
    }
    return note;
}

void bl_log_failure_note(ballast_consumer_t *c, const bl_failure_note_t *note)
{
    bl_log(&c->log, note->tier ? BALLAST_LOG_INFO : BALLAST_LOG_WARN, "%s", note->line);
}

/* Sends the message to retry tier @p tier (-1: the DLQ) in place of what
 * its handler emitted. In Kafka exactly-once mode it becomes the message's
 * one record, which the poll thread produces in the transaction; in
 * at-least-once the poll thread produces it straight from the message once
 * it is handed back, unless a worker waits for it. */
static void send_failure(bl_worker_t *w, bl_msg_t *m, int tier)
{
    ballast_consumer_t *c = w->cons;
    char *error;
    bl_failure_t f;

    /* The handler's error text stays, as the record's x-error-message;
     * what it emitted goes. */
    if (!m->result.error)
        m->result.error = bl_strdup("no reason given");
    error = m->result.error;
    bl_result_free_records(&m->result);
    m->failure_tier = tier;
    m->failure_due_ms = tier >= 0 ? bl_wall_ms() + c->tiers.tiers[tier].delay_ms : -1;
    m->failed_over = true;
    f = failure_of(c, m);
    if (!error || (c->eos && bl_failure_record(m, &f, &m->result))) {
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                     "out of memory building a record for %s", f.topic));
        return;
    }
    if (c->eos)
        return;
    if (m->waiter)
        bl_produce_failure_of(c, m, false);
    else
        m->failure_pending = true;
}

/* Whether the producer can take every record @p m emitted: each names a
 * topic (or output.topic is set) that the cluster has. If not, the
 * message fails and the pipeline stops with a line that names the message
 * and the topic, before anything at or past its offset can commit. */
static bool records_routable(ballast_consumer_t *c, bl_msg_t *m)
{
    for (size_t i = 0; i < m->result.record_count; i++) {
        const char *topic = m->result.records[i].topic;
        char why[300];
        if (!c->producer)
            bl_fmt(why, sizeof(why), "records, but no producer is configured");
        else if (!topic && !c->output_topic)
            bl_fmt(why, sizeof(why), "a record with no topic, and output.topic is not set");
        else if (topic && !bl_topic_exists(c, topic))
            bl_fmt(why, sizeof(why), "a record for topic \"%s\", which does not exist "
                   "on the cluster", topic);
        else
            continue;
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_HANDLER, false, false,
                                     "%s [%d] offset %lld: the handler emitted %s; the "
                                     "pipeline stops and the offset stays uncommitted",
                                     m->topic, (int)m->partition, (long long)m->offset, why));
        return false;
    }
    return true;
}

/* Decides what a final outcome means: done, a retry tier, the DLQ, or a
 * stop. */
static void finish_outcome(bl_worker_t *w, bl_msg_t *m)
{
    ballast_consumer_t *c = w->cons;
    const char *why = m->result.error ? m->result.error : "no reason given";
    int tier;

    if (m->outcome == BALLAST_OUTCOME_OK) {
        atomic_fetch_add(&c->stats.processed_ok, 1);
        breaker_note(c, false, NULL);
        if (m->result.record_count && !records_routable(c, m))
            return;
        if (m->result.record_count && !c->eos)
            produce_records(c, m); /* exactly-once: the poll thread does */
        return;
    }
    if ((tier = next_tier(c, m)) >= 0) {
        send_failure(w, m, tier);
        return;
    }
    atomic_fetch_add(&c->stats.failed, 1);
    if (c->dlq_topic) {
        if (breaker_note(c, true, why)) {
            m->fate = BL_FATE_FAILED; /* not dead-lettered: it comes back */
            return;
        }
        send_failure(w, m, -1);
        return;
    }
    m->fate = BL_FATE_FAILED;
    bl_set_fatal(c, bl_error_new(BALLAST_ERR_HANDLER, false, false,
                              "%s [%d] offset %lld: handler failed %s after %d "
                              "attempt(s): %s; no dlq.topic is configured, so "
                              "the pipeline stops here and the offset stays "
                              "uncommitted",
                              m->topic, (int)m->partition, (long long)m->offset,
                              m->outcome == BALLAST_OUTCOME_FAIL ? "permanently"
                                                                  : "repeatedly",
                              m->attempt, why));
}

/* ---- exactly-once into a database --------------------------------------- */

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
        m->waiter = w;
        finish_outcome(w, m); /* builds and produces the DLQ record, or stops */
        /* A stop, or a tripped breaker (the message is not dead-lettered):
         * the transaction must not commit past it. */
        if (atomic_load(&c->failed) || m->fate == BL_FATE_FAILED)
            ok = false;
    }
    pthread_mutex_lock(&w->mtx);
    for (size_t i = 0; i < n; i++) {
        bl_msg_t *m = msgs[i];
        if (m->outcome != BALLAST_OUTCOME_FAIL)
            continue;
        while (atomic_load(&m->pending_emits) > 1 && !atomic_load(&c->failed) &&
               !atomic_load(&c->abandon))
            pthread_cond_wait(&w->cond, &w->mtx);
        m->waiter = NULL;
    }
    pthread_mutex_unlock(&w->mtx);
    return ok && !atomic_load(&c->failed);
}

/* The first and next offset of each partition in @p msgs (all settled). */
static size_t txn_offsets(bl_msg_t **msgs, size_t n, bl_offset_t *out)
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
static ballast_outcome_t stored_says(int found, int64_t stored, const bl_offset_t *off)
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
static ballast_outcome_t txn_landed(bl_worker_t *w, const bl_offset_t *offs, size_t count,
                                    char *err, size_t errsize)
{
    ballast_consumer_t *c = w->cons;

    for (int tries = 1;; tries++) {
        const bl_offset_t *past = NULL;
        bool answered = true, missing = false;
        for (size_t i = 0; i < count && answered && !missing; i++) {
            int64_t stored = -1;
            int rc = c->txn_ops->load_offset(w->state, c->group, offs[i].topic,
                                             offs[i].partition, &stored, err, errsize);
            ballast_outcome_t says = stored_says(rc, stored, &offs[i]);
            answered = rc >= 0;
            missing = answered && says == BALLAST_OUTCOME_RETRY;
            if (answered && says == BALLAST_OUTCOME_FAIL)
                past = &offs[i];
        }
        if (answered && !missing && past)
            bl_txn_stale_error(err, errsize, past);
        if (answered)
            return missing ? BALLAST_OUTCOME_RETRY
                   : past  ? BALLAST_OUTCOME_FAIL
                           : BALLAST_OUTCOME_OK;
        /* Stopping: the batch is dropped, and a restart reads the truth
         * from the database anyway. */
        if (!worker_sleep(w, bl_backoff_delay(&c->backoff, tries,
                                              rand_r(&w->rnd) / (RAND_MAX + 1.0))))
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
        atomic_store(&msgs[i]->part->rewind, true);
    }
    atomic_store(&c->rewind_wanted, true);
}

/* One database transaction over @p msgs: begin, handle, dead-letter the
 * failures, commit the writes with the next offsets. A transient failure
 * anywhere voids the attempt, which is redone after a back-off for as long
 * as it takes (the database being down pauses consumption; nothing is
 * dead-lettered for it). A fenced commit drops the batch (txn_stale). */
static void txn_process(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    const bl_txn_ops_t *ops = c->txn_ops;
    bl_offset_t stack[64], *offs = n > 64 ? malloc(n * sizeof(*offs)) : stack;
    char err[512];
    size_t count;
    int tries = 0;

    if (!offs) {
        for (size_t i = 0; i < n; i++)
            msgs[i]->fate = BL_FATE_DROPPED;
        return;
    }
    count = txn_offsets(msgs, n, offs);
    for (;; tries++) {
        ballast_outcome_t out = BALLAST_OUTCOME_RETRY;
        bool redo = false, down = atomic_load(&w->unavailable);

        if (down && bl_stopping(c))
            break;
        if (tries && !worker_sleep(w, down ? retry_delay(w, msgs, true)
                                           : bl_backoff_delay(&c->backoff, tries,
                                                              rand_r(&w->rnd) /
                                                                  (RAND_MAX + 1.0))))
            break;
        if (atomic_load(&c->failed) || atomic_load(&c->breaker))
            break;
        err[0] = '\0';
        if (ops->begin(w->state, err, sizeof(err)) != BALLAST_OUTCOME_OK) {
            /* The database is down: nothing could be tried. */
            note_available(w, true, err);
            continue;
        }
        call_handler(w, msgs, n);
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
        out = ops->commit(w->state, c->group, offs, count, err, sizeof(err));
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
            return;
        }
    }
    /* Stopping, or the breaker tripped: nothing committed, everything
     * comes back. */
    for (size_t i = 0; i < n; i++)
        msgs[i]->fate = BL_FATE_DROPPED;
    if (offs != stack)
        free(offs);
}

/* True when @p m may not run: its partition is revoked or awaits a rewind
 * (txn_stale), or the pipeline is stopping. */
static bool must_drop(const ballast_consumer_t *c, const bl_msg_t *m)
{
    return atomic_load(&m->part->revoked) || atomic_load(&m->part->rewind) ||
           atomic_load(&c->abandon) ||
           atomic_load(&c->failed) || atomic_load(&c->breaker);
}

/* Whether @p a and @p b must be handled in order (ordering = partition:
 * one partition; key: one key, or one partition for messages without a
 * key; none: never). */
static bool ordered_together(const ballast_consumer_t *c, const bl_msg_t *a, const bl_msg_t *b)
{
    if (c->ordering == ORDER_NONE)
        return false;
    if (a->part != b->part && (c->ordering == ORDER_PARTITION || !a->key || !b->key))
        return false;
    if (c->ordering == ORDER_PARTITION || !a->key || !b->key)
        return true;
    return a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len);
}

/* Whether @p m, in a batch, comes after one of the @p n messages of
 * @p waiting (which run again) that it must follow. */
static bool behind_a_retry(const ballast_consumer_t *c, bl_msg_t *const *waiting, size_t n,
                           const bl_msg_t *m)
{
    for (size_t i = 0; i < n; i++)
        if (ordered_together(c, waiting[i], m))
            return true;
    return false;
}

/* Counts the @p retried RETRY messages among @p group's first @p left and
 * logs the first of them. */
static void log_retry(ballast_consumer_t *c, bl_msg_t **group, size_t left, size_t retried)
{
    bl_msg_t *m = group[0];

    for (size_t i = 0; i < left && m->outcome != BALLAST_OUTCOME_RETRY; i++)
        m = group[i];
    atomic_fetch_add(&c->stats.retried, retried);
    bl_log(&c->log, BALLAST_LOG_INFO, "%s [%d] offset %lld: retry %d of %d: %s", m->topic,
           (int)m->partition, (long long)m->offset, m->attempt, c->max_attempts - 1,
           m->result.error ? m->result.error : "retry");
}

/* Runs the handler over @p group (one message, or a batch) until each
 * message has a final outcome: RETRY again after a back-off while attempts
 * remain, UNAVAILABLE again for as long as it takes (without counting an
 * attempt) unless the pipeline stops. */
static void run_with_retries(bl_worker_t *w, bl_msg_t **group, size_t count)
{
    ballast_consumer_t *c = w->cons;

    for (;;) {
        size_t left = 0, retried = 0;
        bool down = false;

        call_handler(w, group, count);
        for (size_t i = 0; i < count; i++) {
            bl_msg_t *m = group[i];
            if (m->outcome == BALLAST_OUTCOME_UNAVAILABLE) {
                down = true;
                group[left++] = m;
            } else if (m->outcome == BALLAST_OUTCOME_RETRY && m->attempt < c->max_attempts) {
                retried++;
                group[left++] = m; /* retry these, in order */
            } else if (behind_a_retry(c, group, left, m)) {
                /* Its key (or partition) waits for an earlier message:
                 * its result is dropped, and it runs again after that one,
                 * without counting an attempt. */
                group[left++] = m;
            } else {
                finish_outcome(w, m);
            }
        }
        if (!left)
            return;
        if (retried)
            log_retry(c, group, left, retried);
        if ((down && bl_stopping(c)) || !worker_sleep(w, retry_delay(w, group, down))) {
            for (size_t i = 0; i < left; i++)
                group[i]->fate = BL_FATE_DROPPED;
            return;
        }
        for (size_t i = 0; i < left; i++)
            if (group[i]->outcome == BALLAST_OUTCOME_RETRY &&
                group[i]->attempt < c->max_attempts)
                group[i]->attempt++;
        count = left;
    }
}

/* Handles a group of messages: drops revoked ones, runs the handler with
 * blocking retries, and settles each message. */
static void worker_process(bl_worker_t *w, bl_queue_t *batch)
{
    ballast_consumer_t *c = w->cons;
    bl_msg_t *stack[WORKER_TAKE_MAX], **todo = stack;
    size_t n = 0;

    if (batch->len > WORKER_TAKE_MAX && !(todo = malloc(batch->len * sizeof(*todo)))) {
        for (bl_msg_t *m = batch->head; m; m = m->next)
            m->fate = BL_FATE_DROPPED;
        return;
    }
    for (bl_msg_t *m = batch->head; m; m = m->next) {
        if (must_drop(c, m))
            m->fate = BL_FATE_DROPPED;
        else
            todo[n++] = m;
    }
    if (c->txn_ops && n) {
        /* Exactly-once into a database: one transaction per batch. */
        if (c->batch_mode)
            txn_process(w, todo, n);
        else
            for (size_t i = 0; i < n; i++)
                if (must_drop(c, todo[i]))
                    todo[i]->fate = BL_FATE_DROPPED;
                else
                    txn_process(w, todo + i, 1);
        n = 0;
    }
    /* In message mode each message runs alone; in batch mode together. */
    for (size_t start = 0; start < n;) {
        size_t count = c->batch_mode ? n - start : 1;

        if (atomic_load(&c->failed) || atomic_load(&c->abandon) ||
            atomic_load(&c->breaker) || (atomic_load(&w->unavailable) && bl_stopping(c))) {
            /* Nothing after a stopping failure may run: order matters.
             * Nor after the drain's deadline, and a stop does not wait for
             * a handler that is down. */
            for (size_t i = start; i < n; i++)
                todo[i]->fate = BL_FATE_DROPPED;
            break;
        }
        run_with_retries(w, todo + start, count);
        start += count;
    }
    if (todo != stack)
        free(todo);
}

static void hand_back(ballast_consumer_t *c, bl_queue_t *done)
{
    pthread_mutex_lock(&c->done_mtx);
    bl_queue_append(&c->done, done);
    atomic_store(&c->done_ready, true);
    pthread_cond_broadcast(&c->done_cond);
    pthread_mutex_unlock(&c->done_mtx);
}

/* Moves the first @p n messages of @p from to @p to. */
static void take_slice(bl_queue_t *from, bl_queue_t *to, size_t n)
{
    memset(to, 0, sizeof(*to));
    while (from->head && to->len < n) {
        bl_msg_t *m = from->head;
        from->head = m->next;
        if (!from->head)
            from->tail = NULL;
        from->len--;
        bl_queue_push(to, m);
    }
}

void *bl_worker_main(void *arg)
{
    bl_worker_t *w = arg;
    ballast_consumer_t *c = w->cons;
    bl_queue_t batch, slice;
    size_t per = 1;

    while (worker_take(w, &batch)) {
        if (c->batch_mode || c->txn_ops) {
            if (batch.len) {
                worker_process(w, &batch);
                hand_back(c, &batch);
            }
            continue;
        }
        /* Message mode: hand messages back in slices that take about a
         * millisecond, so that offsets advance and in-flight counts drop
         * while a slow handler works through its queue, yet a fast handler
         * takes one lock per slice, not per message. */
        while (batch.len) {
            int64_t start = bl_now_ms();
            take_slice(&batch, &slice, per);
            worker_process(w, &slice);
            hand_back(c, &slice);
            if (bl_now_ms() - start < 1)
                per = per * 2 > WORKER_TAKE_MAX ? WORKER_TAKE_MAX : per * 2;
            else
                per = 1;
        }
    }
    bl_worker_exited(w);
    return NULL;
}
