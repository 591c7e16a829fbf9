/*
 * worker.c - the handler workers' threads: each takes messages from its
 * queue, drops those it may not run (revoked, awaiting a rewind, or the
 * pipeline stopping), has them handled (outcome.c; dbtxn.c for exactly-once
 * into a database) and hands them back on the completion list. Also the
 * workers' start and stop: a handler call that does not return within the
 * stop's grace is left running, and its thread then owns the consumer.
 */
#include "worker.h"

#include "dbtxn.h"
#include "msggroup.h"
#include "outcome.h"
#include "pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int bl_workers_init(ballast_consumer_t *c, void (*free_consumer)(ballast_consumer_t *c))
{
    pthread_mutex_init(&c->workers.life_mtx, NULL);
    c->workers.free_consumer = free_consumer;
    if (!(c->workers.w = calloc((size_t)c->set.nworkers, sizeof(*c->workers.w))))
        return -1;
    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        w->cons = c;
        w->rnd = (unsigned)(bl_wall_ms() ^ (i * 7919));
        pthread_mutex_init(&w->sig.mtx, NULL);
        pthread_cond_init(&w->sig.cond, NULL);
    }
    return 0;
}

void bl_workers_give(ballast_consumer_t *c, int i, bl_queue_t *q)
{
    bl_worker_t *w = &c->workers.w[i];

    pthread_mutex_lock(&w->sig.mtx);
    bl_queue_append(&w->queue, q);
    pthread_cond_signal(&w->sig.cond);
    pthread_mutex_unlock(&w->sig.mtx);
    if (w->pipelined)
        bl_exec_wake(w->state); /* it may be waiting on its child, not on sig */
}

bool bl_workers_keep_consumer(ballast_consumer_t *c)
{
    bool pending;
    int left;

    pthread_mutex_lock(&c->workers.life_mtx);
    pending = c->workers.destroy_pending = c->workers.left_running > 0;
    left = c->workers.left_running;
    pthread_mutex_unlock(&c->workers.life_mtx);
    if (pending)
        /* A handler call that has not returned still uses the consumer, its
         * messages (which hold librdkafka's fetch buffers, so that its
         * destroy would wait for them forever) and its producer. */
        bl_log(&c->log, BALLAST_LOG_WARN, "%d handler call(s) still running: the "
               "consumer is freed when they return", left);
    return pending;
}

/* ---- taking and handing back --------------------------------------------------- */

/* Takes the next messages for a worker; blocks while there are none.
 * @returns false when the worker should exit. */
static bool worker_take(bl_worker_t *w, bl_queue_t *out)
{
    ballast_consumer_t *c = w->cons;
    size_t want = c->set.batch_mode ? c->set.batch_max : WORKER_TAKE_MAX;

    pthread_mutex_lock(&w->sig.mtx);
    while (!w->queue.len && !w->quit)
        pthread_cond_wait(&w->sig.cond, &w->sig.mtx);
    if (c->set.batch_mode && w->queue.len < want && !w->quit && c->set.batch_ms > 0) {
        /* Let the batch fill for up to batch.max.ms. */
        struct timespec deadline = bl_deadline(c->set.batch_ms);
        while (w->queue.len < want && !w->quit && !bl_stopping(c) &&
               pthread_cond_timedwait(&w->sig.cond, &w->sig.mtx, &deadline) != ETIMEDOUT)
            ;
    }
    bl_queue_take(&w->queue, out, want);
    pthread_mutex_unlock(&w->sig.mtx);
    return out->len > 0 || !w->quit;
}

/* Exactly-once into a database, message mode: a transaction over each run
 * of consecutive messages that may run, up to settings.group_max of them
 * (one without grouping). Whether a message may run is asked again after
 * each transaction, which may have flagged its partition for a rewind. */
static void dbtxn_groups(bl_worker_t *w, bl_msg_t **todo, size_t n)
{
    ballast_consumer_t *c = w->cons;
    size_t max = c->set.group_max ? c->set.group_max : 1;

    for (size_t i = 0; i < n;) {
        size_t k = 0;
        while (i + k < n && k < max && !bl_outcome_must_drop(c, todo[i + k]))
            k++;
        if (k)
            i += bl_dbtxn_process(w, todo + i, k);
        else
            todo[i++]->fate = BL_FATE_DROPPED;
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
        if (bl_outcome_must_drop(c, m))
            m->fate = BL_FATE_DROPPED;
        else
            todo[n++] = m;
    }
    if (c->set.semantics == BL_EXACTLY_ONCE_DB && n) {
        /* Exactly-once into a database: one transaction per batch. */
        if (c->set.batch_mode)
            bl_dbtxn_process(w, todo, n);
        else
            dbtxn_groups(w, todo, n);
        n = 0;
    }
    if (c->set.group_max && n) {
        /* Message mode into PostgreSQL: a transaction a group. */
        bl_msggroup_process(w, todo, n);
        n = 0;
    }
    /* In message mode each message runs alone; in batch mode together. */
    for (size_t start = 0; start < n;) {
        size_t count = c->set.batch_mode ? n - start : 1;

        if (bl_outcome_halted(w)) {
            for (size_t i = start; i < n; i++)
                todo[i]->fate = BL_FATE_DROPPED;
            break;
        }
        bl_outcome_run(w, todo + start, count);
        start += count;
    }
    if (todo != stack)
        free(todo);
}

/* The worker thread's final call: the last of those a stop left running
 * frees a consumer destroyed meanwhile. */
static void worker_exited(bl_worker_t *w)
{
    ballast_consumer_t *c = w->cons;
    bool last;

    pthread_mutex_lock(&c->workers.life_mtx);
    w->exited = true;
    last = w->left && --c->workers.left_running == 0 && c->workers.destroy_pending;
    pthread_mutex_unlock(&c->workers.life_mtx);
    if (last)
        c->workers.free_consumer(c);
}

static void *worker_main(void *arg)
{
    bl_worker_t *w = arg;
    ballast_consumer_t *c = w->cons;
    bl_queue_t batch, slice;
    size_t per = 1;

    if (w->pipelined && bl_pipeline_run(w) == 0) {
        worker_exited(w);
        return NULL;
    }
    while (worker_take(w, &batch)) {
        if (c->set.batch_mode || c->set.semantics == BL_EXACTLY_ONCE_DB) {
            if (batch.len) {
                worker_process(w, &batch);
                bl_done_put(c, &batch);
            }
            continue;
        }
        /* Message mode: hand messages back in slices that take about a
         * millisecond, so that offsets advance and in-flight counts drop
         * while a slow handler works through its queue, yet a fast handler
         * takes one lock per slice, not per message. Grouped (msggroup.c),
         * a slice is a group's worth, handed back once it is committed. */
        while (batch.len) {
            int64_t start = bl_now_ms();
            bl_queue_take(&batch, &slice, c->set.group_max ? c->set.group_max : per);
            worker_process(w, &slice);
            bl_done_put(c, &slice);
            if (bl_now_ms() - start < 1)
                per = per * 2 > WORKER_TAKE_MAX ? WORKER_TAKE_MAX : per * 2;
            else
                per = 1;
        }
    }
    worker_exited(w);
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------- */

ballast_error_t *bl_handler_state_new(ballast_consumer_t *c, int worker, void **statep)
{
    const ballast_handler_t *h = c->set.handler;
    ballast_handler_params_t params = {c->conf, worker, c->set.nworkers, c->set.handler_opaque};
    char errbuf[512] = "";
    int rc = 0;
    ballast_err_code_t code;

    *statep = NULL;
    if (h->init)
        rc = h->init(statep, &params, errbuf, sizeof(errbuf));
    if (!rc)
        return NULL;
    /* A stop during start-up (a database wait cut short) is one too. */
    code = (rc >= BALLAST_ERR_CONFIG && rc <= BALLAST_ERR_INTERNAL) || rc == BALLAST_ERR_STOPPED
               ? (ballast_err_code_t)rc
               : BALLAST_ERR_HANDLER;
    return bl_error_new(code, code == BALLAST_ERR_UNREACHABLE, false, "handler %s: %s",
                        h->name, *errbuf ? errbuf : "init failed");
}

ballast_error_t *bl_workers_start(ballast_consumer_t *c)
{
    ballast_error_t *err;

    for (int i = 0; i < c->set.nworkers; i++) {
        if ((err = bl_handler_state_new(c, i, &c->workers.w[i].state)))
            return err;
        c->workers.w[i].state_ok = true;
        c->workers.w[i].pipelined = bl_pipeline_wanted(c, c->workers.w[i].state);
    }
    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        char name[16];
        if (pthread_create(&w->thread, NULL, worker_main, w))
            return bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                "cannot start worker thread %d", i);
        w->started = true;
        /* Best effort: names it in top -H, ps -L and perf. */
        bl_fmt(name, sizeof(name), "ballast-w%d", i);
        pthread_setname_np(w->thread, name);
    }
    return NULL;
}

int bl_workers_busy(const ballast_consumer_t *c)
{
    int n = 0;

    for (int i = 0; i < c->set.nworkers; i++)
        n += atomic_load(&c->workers.w[i].busy_since) != 0;
    return n;
}

bool bl_workers_stuck(const ballast_consumer_t *c, int64_t now, int *worker, int64_t *since)
{
    for (int i = 0; i < c->set.nworkers; i++) {
        int64_t t = atomic_load(&c->workers.w[i].busy_since);
        if (t && now - t > c->set.handler_timeout_ms) {
            *worker = i;
            *since = t;
            return true;
        }
    }
    return false;
}

int bl_workers_cancel(ballast_consumer_t *c)
{
    int cancelled = 0;

    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        if (w->started && w->state_ok && atomic_load(&w->busy_since) &&
            c->set.handler == &bl_handler_exec) {
            bl_exec_cancel(w->state);
            cancelled++;
        }
    }
    return cancelled;
}

void bl_workers_wake(ballast_consumer_t *c)
{
    for (int i = 0; i < c->set.nworkers; i++)
        bl_signal_wake(&c->workers.w[i].sig);
}

void bl_workers_stop(ballast_consumer_t *c, int grace_ms)
{
    struct timespec deadline;

    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        pthread_mutex_lock(&w->sig.mtx);
        w->quit = true;
        pthread_cond_broadcast(&w->sig.cond);
        pthread_mutex_unlock(&w->sig.mtx);
    }
    deadline = bl_deadline(grace_ms);
    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        if (!w->started)
            continue;
        w->started = false;
        if (!pthread_timedjoin_np(w->thread, NULL, &deadline))
            continue;
        pthread_mutex_lock(&c->workers.life_mtx);
        if (!w->exited) {
            w->left = true;
            c->workers.left_running++;
        }
        pthread_mutex_unlock(&c->workers.life_mtx);
        pthread_detach(w->thread);
        if (w->left)
            bl_log(&c->log, BALLAST_LOG_ERROR,
                   "worker %d: its handler call has not returned after the stop's drain "
                   "and grace; it is left running, and its messages stay uncommitted", i);
    }
}

void bl_workers_free(ballast_consumer_t *c)
{
    const ballast_handler_t *h = c->set.handler;

    if (!c->workers.w)
        return;
    if (h == &bl_handler_exec) {
        /* Their children end together, not one grace after another. */
        void **states = calloc((size_t)c->set.nworkers, sizeof(*states));
        for (int i = 0; states && i < c->set.nworkers; i++)
            states[i] = c->workers.w[i].state_ok ? c->workers.w[i].state : NULL;
        if (states)
            bl_exec_close(states, (size_t)c->set.nworkers);
        free(states);
    }
    for (int i = 0; i < c->set.nworkers; i++) {
        bl_worker_t *w = &c->workers.w[i];
        if (w->state_ok && h->destroy)
            h->destroy(w->state);
        bl_queue_free(&w->queue);
        pthread_mutex_destroy(&w->sig.mtx);
        pthread_cond_destroy(&w->sig.cond);
    }
    free(c->workers.w);
    c->workers.w = NULL;
    pthread_mutex_destroy(&c->workers.life_mtx);
}
