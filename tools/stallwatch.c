/*
 * stallwatch.c - `ballast run`'s transaction watchdog.
 *
 * With exactly-once into Kafka, librdkafka 2.14 can stay inside a
 * transaction call far past its timeout after a transaction coordinator
 * died (docs/reliability.md, "Findings"); the poll loop stops with it, and
 * without a supervisor watching /healthz or the systemd watchdog the
 * process would hang for good. The library reports such a call
 * (ballast_consumer_stalled(): past its timeout plus 30 s, logged once);
 * this thread asks every second and ends the process with exit code 1
 * (the spec's "any other runtime failure"; the error line says which), so
 * that any supervisor restarts it. It is the command's, not the library's: a program that
 * embeds libballast decides for itself whether to end its process. (It
 * uses nothing of cli.h, so that tests/mock can build it in.)
 *
 * A thread of its own rather than sdnotify.c's: that one runs only under
 * systemd, and this one must bound the hang without any supervisor's help.
 */
#include "stallwatch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

struct stallwatch {
    const ballast_consumer_t *cons;
    int every_ms;
    stallwatch_fn on_stall;
    void *opaque;
    pthread_t thread;
    pthread_mutex_t mtx;
    pthread_cond_t cond;
    bool quit; /* under mtx */
};

static void *watch_main(void *opaque)
{
    stallwatch_t *w = opaque;

    pthread_mutex_lock(&w->mtx);
    while (!w->quit) {
        struct timespec until;
        ballast_error_t *err;

        pthread_mutex_unlock(&w->mtx);
        if ((err = ballast_consumer_stalled(w->cons))) {
            w->on_stall(err, w->opaque);
            return NULL; /* an action that did not exit: once is enough */
        }
        until = bl_deadline(w->every_ms);
        pthread_mutex_lock(&w->mtx);
        if (!w->quit)
            pthread_cond_timedwait(&w->cond, &w->mtx, &until);
    }
    pthread_mutex_unlock(&w->mtx);
    return NULL;
}

stallwatch_t *stallwatch_start(const ballast_consumer_t *cons, int every_ms,
                               stallwatch_fn on_stall, void *opaque)
{
    stallwatch_t *w = calloc(1, sizeof(*w));

    if (!w) {
        fputs("ballast: out of memory; the transaction watchdog is off\n", stderr);
        return NULL;
    }
    w->cons = cons;
    w->every_ms = every_ms;
    w->on_stall = on_stall;
    w->opaque = opaque;
    pthread_mutex_init(&w->mtx, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, watch_main, w)) {
        fputs("ballast: cannot start a thread; the transaction watchdog is off\n", stderr);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mtx);
        free(w);
        return NULL;
    }
    return w;
}

void stallwatch_stop(stallwatch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mtx);
    w->quit = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mtx);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mtx);
    free(w);
}

void stallwatch_exit(ballast_error_t *err, void *opaque)
{
    (void)opaque;
    /* The library logged the error; this line says what follows. */
    fprintf(stderr, "ballast: exiting with 1 so that a supervisor restarts it: %s\n",
            ballast_error_message(err));
    ballast_error_destroy(err);
    fflush(NULL);
    _exit(1);
}
