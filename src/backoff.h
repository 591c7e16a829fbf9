/*
 * backoff.h - exponential back-off with jitter for blocking retries.
 * Pure policy: no I/O.
 */
#ifndef BALLAST_BACKOFF_H
#define BALLAST_BACKOFF_H

#include <stdint.h>

typedef struct bl_backoff {
    int64_t initial_ms, max_ms;
    double multiplier, jitter;
} bl_backoff_t;

/**
 * @returns the wait before retry number @p retry (1 = first retry):
 *          initial * multiplier^(retry-1), capped at max, then scaled by a
 *          factor drawn uniformly from [1-jitter, 1+jitter] using @p rnd in
 *          [0,1), and capped at max again.
 */
int64_t bl_backoff_delay(const bl_backoff_t *b, int retry, double rnd);

#endif
