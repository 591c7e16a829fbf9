/*
 * ticker.h - a thread of the command that wakes every so often until it is
 * told to stop: its start, its timed wait and its stop, shared by the
 * transaction watchdog (stallwatch.c) and the systemd notifier
 * (sdnotify.c). Header only, so that each builds alone into its test.
 */
#ifndef BALLAST_TICKER_H
#define BALLAST_TICKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct ticker {
    pthread_t thread;
    pthread_mutex_t mtx; /* guards quit, and what the owner keeps under it */
    pthread_cond_t cond; /* signalled at a stop, or by the owner */
    bool quit;           /* under mtx */
} ticker_t;

/** Starts @p run(@p arg) on a thread of its own. @returns 0, or
 *  pthread_create()'s error, with nothing left to stop. */
static inline int ticker_start(ticker_t *t, void *(*run)(void *), void *arg)
{
    int err;

    t->quit = false;
    pthread_mutex_init(&t->mtx, NULL);
    pthread_cond_init(&t->cond, NULL);
    if ((err = pthread_create(&t->thread, NULL, run, arg))) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->mtx);
    }
    return err;
}

/** Waits up to @p ms, or until a stop or a signal on cond. The caller holds
 *  mtx (and holds it again on return). @returns false once stopped. */
static inline bool ticker_wait(ticker_t *t, int64_t ms)
{
    struct timespec until = bl_deadline(ms);

    if (!t->quit)
        pthread_cond_timedwait(&t->cond, &t->mtx, &until);
    return !t->quit;
}

/** Tells the thread to stop, joins it and frees the mutex and condition. */
static inline void ticker_stop(ticker_t *t)
{
    pthread_mutex_lock(&t->mtx);
    t->quit = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mtx);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mtx);
}

#endif
