/*
 * backoff.c - exponential back-off with jitter (see backoff.h).
 */
#include "backoff.h"

int64_t bl_backoff_delay(const bl_backoff_t *b, int retry, double rnd)
{
    double delay = (double)b->initial_ms;

    for (int i = 1; i < retry && delay < (double)b->max_ms; i++)
        delay *= b->multiplier;
    if (delay > (double)b->max_ms)
        delay = (double)b->max_ms;
    delay *= 1.0 + b->jitter * (2.0 * rnd - 1.0);
    if (delay > (double)b->max_ms)
        delay = (double)b->max_ms;
    return delay < 0 ? 0 : (int64_t)delay;
}
