/*
 * runtime.c - the run's flags and fatal error, and the completion list on
 * which workers hand finished messages back to the poll thread (see
 * runtime.h).
 */
#include "runtime.h"

#include <stdlib.h>

void bl_set_fatal(ballast_consumer_t *c, ballast_error_t *err)
{
    pthread_mutex_lock(&c->run.err_mtx);
    if (!c->run.fatal) {
        c->run.fatal = err;
        err = NULL;
    }
    pthread_mutex_unlock(&c->run.err_mtx);
    if (err) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "%s", ballast_error_message(err));
        ballast_error_destroy(err);
    }
    atomic_store(&c->run.failed, true);
}

bool bl_stopping(const ballast_consumer_t *c)
{
    return c->run.stop_requested || bl_conf_stop_requested(c->conf) ||
           atomic_load(&c->run.failed);
}

ballast_error_t *bl_take_fatal(ballast_consumer_t *c)
{
    ballast_error_t *err;

    pthread_mutex_lock(&c->run.err_mtx);
    err = c->run.fatal;
    c->run.fatal = NULL;
    pthread_mutex_unlock(&c->run.err_mtx);
    return err;
}

void bl_queue_free(bl_queue_t *q)
{
    bl_msg_t *m;

    while ((m = bl_queue_pop(q))) {
        bl_message_clear(m);
        free(m);
    }
}

void bl_done_put(ballast_consumer_t *c, bl_queue_t *q)
{
    pthread_mutex_lock(&c->done.sig.mtx);
    bl_queue_append(&c->done.q, q);
    atomic_store(&c->done.ready, true);
    pthread_cond_broadcast(&c->done.sig.cond);
    pthread_mutex_unlock(&c->done.sig.mtx);
}

void bl_done_take(ballast_consumer_t *c, bl_queue_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!atomic_load(&c->done.ready))
        return;
    pthread_mutex_lock(&c->done.sig.mtx);
    bl_queue_append(out, &c->done.q);
    atomic_store(&c->done.ready, false);
    pthread_mutex_unlock(&c->done.sig.mtx);
}

void bl_done_wait(ballast_consumer_t *c, int ms)
{
    struct timespec deadline = bl_deadline(ms);

    pthread_mutex_lock(&c->done.sig.mtx);
    if (!atomic_load(&c->done.ready))
        pthread_cond_timedwait(&c->done.sig.cond, &c->done.sig.mtx, &deadline);
    pthread_mutex_unlock(&c->done.sig.mtx);
}
