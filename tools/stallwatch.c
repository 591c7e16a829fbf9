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

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ticker.h"

struct stallwatch {
    const ballast_consumer_t *cons;
    int every_ms;
    stallwatch_fn on_stall;
    void *opaque;
    ticker_t tick;
};

static void *watch_main(void *opaque)
{
    stallwatch_t *w = opaque;
    ballast_error_t *err;

    pthread_mutex_lock(&w->tick.mtx);
    do {
        pthread_mutex_unlock(&w->tick.mtx);
        if ((err = ballast_consumer_stalled(w->cons))) {
            w->on_stall(err, w->opaque);
            return NULL; /* an action that did not exit: once is enough */
        }
        pthread_mutex_lock(&w->tick.mtx);
    } while (ticker_wait(&w->tick, w->every_ms));
    pthread_mutex_unlock(&w->tick.mtx);
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
    if (ticker_start(&w->tick, watch_main, w)) {
        fputs("ballast: cannot start a thread; the transaction watchdog is off\n", stderr);
        free(w);
        return NULL;
    }
    return w;
}

void stallwatch_stop(stallwatch_t *w)
{
    if (!w)
        return;
    ticker_stop(&w->tick);
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
