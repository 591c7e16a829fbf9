/*
 * outcome.c - a handler call and what its outcome means, on a worker's
 * thread: the call (timed for the latency histogram and the stuck-handler
 * watchdog), retries with back-off (blocking the worker, never the poll
 * loop), and each final outcome: done, the next retry tier, the DLQ
 * (unless the DLQ breaker holds it back), or a stop. An UNAVAILABLE handler
 * is no verdict on the message: it is tried again, without counting an
 * attempt, for as long as it takes, and consumption pauses meanwhile.
 */
#include "outcome.h"

#include "emit.h"

#include <stdio.h>
#include <stdlib.h>

void bl_outcome_init(ballast_consumer_t *c)
{
    pthread_mutex_init(&c->workers.why_mtx, NULL);
}

void bl_outcome_free(ballast_consumer_t *c)
{
    pthread_mutex_destroy(&c->workers.why_mtx);
}

bool bl_handler_down(ballast_consumer_t *c, char *buf, size_t size)
{
    bool down;

    pthread_mutex_lock(&c->workers.why_mtx);
    down = bl_handler_unavailable(c);
    if (down)
        bl_fmt(buf, size, "%s", c->workers.unavailable_reason);
    pthread_mutex_unlock(&c->workers.why_mtx);
    return down;
}

bool bl_handler_transient(ballast_consumer_t *c, char *buf, size_t size)
{
    bool transient = false;

    for (int i = 0; i < c->set.nworkers; i++)
        transient = transient || atomic_load(&c->workers.w[i].transient);
    if (transient) {
        pthread_mutex_lock(&c->workers.why_mtx);
        bl_fmt(buf, size, "%s", c->workers.last_transient);
        pthread_mutex_unlock(&c->workers.why_mtx);
    }
    return transient;
}

/* ---- waiting ------------------------------------------------------------------ */

bool bl_outcome_sleep(bl_worker_t *w, int64_t ms)
{
    int64_t until = bl_now_ms() + ms;
    ballast_consumer_t *c = w->cons;

    pthread_mutex_lock(&w->sig.mtx);
    while (!atomic_load(&c->run.abandon) && !w->quit) {
        int64_t left = until - bl_now_ms();
        struct timespec deadline;
        if (left <= 0)
            break;
        deadline = bl_deadline(left);
        pthread_cond_timedwait(&w->sig.cond, &w->sig.mtx, &deadline);
    }
    pthread_mutex_unlock(&w->sig.mtx);
    return !atomic_load(&c->run.abandon);
}

int64_t bl_outcome_backoff(bl_worker_t *w, int retry)
{
    return bl_backoff_delay(&w->cons->set.backoff, retry, rand_r(&w->rnd) / (RAND_MAX + 1.0));
}

int64_t bl_outcome_down_delay(bl_worker_t *w)
{
    int64_t ms = bl_outcome_backoff(w, ++w->down_tries);

    return ms < UNAVAILABLE_RETRY_MAX_MS ? ms : UNAVAILABLE_RETRY_MAX_MS;
}

/* How long to wait before calling the handler again for @p group: the
 * retry back-off of its first message's attempt, or, when the handler was
 * unavailable, bl_outcome_down_delay(). */
static int64_t retry_delay(bl_worker_t *w, bl_msg_t **group, bool down)
{
    return down ? bl_outcome_down_delay(w) : bl_outcome_backoff(w, group[0]->attempt);
}

void bl_outcome_available(bl_worker_t *w, bool down, const char *why)
{
    ballast_consumer_t *c = w->cons;

    if (down) {
        pthread_mutex_lock(&c->workers.why_mtx);
        bl_fmt(c->workers.unavailable_reason, sizeof(c->workers.unavailable_reason), "%s",
               why ? why : "no reason given");
        pthread_mutex_unlock(&c->workers.why_mtx);
    }
    if (down == atomic_load(&w->unavailable))
        return;
    atomic_store(&w->unavailable, down);
    w->down_tries = 0;
    /* At a stop, a handler cancelled or gone is no news. */
    if (down && atomic_fetch_add(&c->workers.unavailable, 1) == 0 && !bl_stopping(c)) {
        atomic_store(&c->workers.unavailable_since_ms, bl_now_ms());
        bl_log(&c->log, BALLAST_LOG_WARN,
               "handler unavailable: %s; consumption is paused, and its messages are "
               "retried without counting attempts until it answers",
               why ? why : "no reason given");
    } else if (!down && atomic_fetch_sub(&c->workers.unavailable, 1) == 1 && !bl_stopping(c)) {
        bl_log(&c->log, BALLAST_LOG_INFO, "handler available again after %.1f s",
               (double)(bl_now_ms() - atomic_load(&c->workers.unavailable_since_ms)) / 1000.0);
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

/* Runs the handler once over @p msgs (one message, or a batch). */
static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    const ballast_handler_t *h = w->cons->set.handler;

    for (size_t i = 0; i < n; i++)
        bl_outcome_prepare(w->cons, msgs[i]);
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

void bl_outcome_note(bl_worker_t *w, bl_msg_t **msgs, size_t n, int64_t micros)
{
    ballast_consumer_t *c = w->cons;
    bool transient = false;
    const char *down = NULL;

    if (n)
        bl_histogram_observe_n(&c->stats.latency, micros / (int64_t)n, n);
    for (size_t i = 0; i < n; i++) {
        check_outcome(msgs[i]);
        if (msgs[i]->outcome == BALLAST_OUTCOME_UNAVAILABLE && !down)
            down = msgs[i]->result.error ? msgs[i]->result.error : "unavailable";
        if (msgs[i]->outcome == BALLAST_OUTCOME_RETRY && !transient) {
            transient = true;
            pthread_mutex_lock(&c->workers.why_mtx);
            bl_fmt(c->workers.last_transient, sizeof(c->workers.last_transient), "%s",
                   msgs[i]->result.error ? msgs[i]->result.error : "retry");
            pthread_mutex_unlock(&c->workers.why_mtx);
        }
    }
    if (transient != atomic_load_explicit(&w->transient, memory_order_relaxed))
        atomic_store(&w->transient, transient);
    bl_outcome_available(w, down != NULL, down);
}

void bl_outcome_call(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    struct timespec t0, t1;
    int64_t start;

    /* One clock read for both: bl_now_ms() reads the same clock. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    start = (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000;
    /* Read by the status thread to spot a stuck call, which needs no
     * ordering: relaxed stores, not a locked instruction twice a message. */
    atomic_store_explicit(&w->busy_since, start ? start : 1, memory_order_relaxed);
    run_handler(w, msgs, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_store_explicit(&w->busy_since, 0, memory_order_relaxed);
    bl_outcome_note(w, msgs, n, (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
                                    (t1.tv_nsec - t0.tv_nsec) / 1000);
}

/* ---- outcomes ------------------------------------------------------------------- */

/* The retry tier a transiently failing message moves to next, or -1. */
static int next_tier(const ballast_consumer_t *c, const bl_msg_t *m)
{
    int next;

    if (m->outcome != BALLAST_OUTCOME_RETRY || !c->set.tiers.count)
        return -1;
    next = bl_tiers_index(&c->set.tiers, m->topic) + 1; /* an input topic: 0 */
    return next < (int)c->set.tiers.count ? next : -1;
}

/* Notes a message about to be dead-lettered with the DLQ breaker.
 * @returns false when the breaker holds it back (it tripped now, which is
 * logged, or before): the message must then not be dead-lettered. */
static bool breaker_passes(ballast_consumer_t *c, const char *why)
{
    bl_breaker_verdict_t v = bl_breaker_note(&c->breaker, true, why);

    if (v == BL_BREAKER_TRIPPED)
        bl_log(&c->log, BALLAST_LOG_ERROR, "%s", bl_breaker_reason(&c->breaker));
    return v == BL_BREAKER_PASS;
}

void bl_outcome_finish(bl_worker_t *w, bl_msg_t *m)
{
    ballast_consumer_t *c = w->cons;
    const char *why = m->result.error ? m->result.error : "no reason given";
    char tag[BL_TRACE_TAG_SIZE];
    int tier;

    if (m->outcome == BALLAST_OUTCOME_OK) {
        atomic_fetch_add(&c->stats.processed_ok, 1);
        bl_breaker_note(&c->breaker, false, NULL);
        if (m->result.record_count && !bl_emit_routable(c, m))
            return;
        if (m->result.record_count && c->set.semantics != BL_EXACTLY_ONCE_KAFKA)
            bl_emit_records(c, m); /* in a Kafka transaction the poll thread does */
        return;
    }
    if ((tier = next_tier(c, m)) >= 0) {
        bl_emit_fail_over(c, m, tier);
        return;
    }
    atomic_fetch_add(&c->stats.failed, 1);
    if (c->set.dlq_topic) {
        if (!breaker_passes(c, why)) {
            m->fate = BL_FATE_FAILED; /* not dead-lettered: it comes back */
            return;
        }
        bl_emit_fail_over(c, m, -1);
        return;
    }
    m->fate = BL_FATE_FAILED;
    bl_set_fatal(c, bl_error_new(BALLAST_ERR_HANDLER, false, false,
                              "%s [%d] offset %lld%s: handler failed %s after %d "
                              "attempt(s): %s; no dlq.topic is configured, so "
                              "the pipeline stops here and the offset stays "
                              "uncommitted",
                              m->topic, (int)m->partition, (long long)m->offset,
                              bl_trace_log_tag(bl_message_trace(m), tag),
                              m->outcome == BALLAST_OUTCOME_FAIL ? "permanently"
                                                                  : "repeatedly",
                              m->attempt, why));
}

/* ---- retries ---------------------------------------------------------------- */

/* Whether @p m, in a batch, comes after one of the @p n messages of
 * @p waiting (which run again) that it must follow. */
static bool behind_a_retry(const ballast_consumer_t *c, bl_msg_t *const *waiting, size_t n,
                           const bl_msg_t *m)
{
    for (size_t i = 0; i < n; i++)
        if (bl_route_ordered(c->set.ordering, waiting[i]->part == m->part, waiting[i]->key,
                             waiting[i]->key_len, m->key, m->key_len))
            return true;
    return false;
}

void bl_outcome_log_retry(ballast_consumer_t *c, bl_msg_t **group, size_t left, size_t retried)
{
    bl_msg_t *m = group[0];
    char tag[BL_TRACE_TAG_SIZE];

    for (size_t i = 0; i < left && m->outcome != BALLAST_OUTCOME_RETRY; i++)
        m = group[i];
    atomic_fetch_add(&c->stats.retried, retried);
    bl_log(&c->log, BALLAST_LOG_INFO, "%s [%d] offset %lld%s: retry %d of %d: %s", m->topic,
           (int)m->partition, (long long)m->offset, bl_trace_log_tag(bl_message_trace(m), tag),
           m->attempt, c->set.max_attempts - 1, m->result.error ? m->result.error : "retry");
}

void bl_outcome_run(bl_worker_t *w, bl_msg_t **group, size_t count)
{
    ballast_consumer_t *c = w->cons;

    for (;;) {
        size_t left = 0, retried = 0;
        bool down = false;

        bl_outcome_call(w, group, count);
        for (size_t i = 0; i < count; i++) {
            bl_msg_t *m = group[i];
            if (m->outcome == BALLAST_OUTCOME_UNAVAILABLE) {
                down = true;
                group[left++] = m;
            } else if (m->outcome == BALLAST_OUTCOME_RETRY &&
                       m->attempt < c->set.max_attempts) {
                retried++;
                group[left++] = m; /* retry these, in order */
            } else if (behind_a_retry(c, group, left, m)) {
                /* Its key (or partition) waits for an earlier message:
                 * its result is dropped, and it runs again after that one,
                 * without counting an attempt. */
                group[left++] = m;
            } else {
                bl_outcome_finish(w, m);
            }
        }
        if (!left)
            return;
        if (retried)
            bl_outcome_log_retry(c, group, left, retried);
        if ((down && bl_stopping(c)) || !bl_outcome_sleep(w, retry_delay(w, group, down))) {
            for (size_t i = 0; i < left; i++)
                group[i]->fate = BL_FATE_DROPPED;
            return;
        }
        for (size_t i = 0; i < left; i++)
            if (group[i]->outcome == BALLAST_OUTCOME_RETRY &&
                group[i]->attempt < c->set.max_attempts)
                group[i]->attempt++;
        count = left;
    }
}
