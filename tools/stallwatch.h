/*
 * stallwatch.h - `ballast run`'s transaction watchdog: a thread that asks
 * ballast_consumer_stalled() every second and, when a Kafka transaction
 * call of the poll thread hangs inside librdkafka, ends the process with
 * exit code 1 so that its supervisor restarts it (see stallwatch.c).
 */
#ifndef BALLAST_STALLWATCH_H
#define BALLAST_STALLWATCH_H

#include <ballast/ballast.h>

typedef struct stallwatch stallwatch_t;

/** What to do with the stall (takes @p err); exits in `ballast run`. */
typedef void (*stallwatch_fn)(ballast_error_t *err, void *opaque);

/** Starts watching @p cons every @p every_ms. @returns NULL (after a line
 *  on stderr) when the thread cannot start: the run goes on unwatched. */
stallwatch_t *stallwatch_start(const ballast_consumer_t *cons, int every_ms,
                               stallwatch_fn on_stall, void *opaque);

/** Stops and frees the watch (NULL: nothing). */
void stallwatch_stop(stallwatch_t *w);

/** The default action: exits the process with code 1 at once,
 *  without running exit handlers or destructors (the poll thread is stuck
 *  inside librdkafka; a destroy would wait for it forever). */
void stallwatch_exit(ballast_error_t *err, void *opaque);

#endif
