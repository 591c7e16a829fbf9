/*
 * breaker.c - the DLQ breaker (see breaker.h).
 */
#include "breaker.h"

#include "shared/util.h"

#include <stdlib.h>

int bl_breaker_init(bl_breaker_t *b, int64_t max_consecutive, double max_ratio,
                    size_t window)
{
    pthread_mutex_init(&b->mtx, NULL);
    atomic_init(&b->tripped, false);
    b->max_consecutive = max_consecutive;
    b->max_ratio = max_ratio;
    b->size = window;
    b->consecutive = 0;
    b->pos = b->fill = b->dead = 0;
    b->reason[0] = '\0';
    b->window = NULL;
    if (max_ratio > 0 && !(b->window = calloc(window, 1)))
        return -1;
    return 0;
}

void bl_breaker_free(bl_breaker_t *b)
{
    free(b->window);
    b->window = NULL;
    pthread_mutex_destroy(&b->mtx);
}

/* Adds one outcome to the window of the last ones. */
static void window_add(bl_breaker_t *b, bool dead_letter)
{
    if (b->fill == b->size)
        b->dead -= b->window[b->pos];
    else
        b->fill++;
    b->window[b->pos] = dead_letter;
    b->dead += dead_letter;
    b->pos = (b->pos + 1) % b->size;
}

bl_breaker_verdict_t bl_breaker_note(bl_breaker_t *b, bool dead_letter, const char *why)
{
    bool trip = false;

    if (!b->max_consecutive && b->max_ratio <= 0)
        return BL_BREAKER_PASS;
    pthread_mutex_lock(&b->mtx);
    if (atomic_load(&b->tripped)) {
        pthread_mutex_unlock(&b->mtx);
        return dead_letter ? BL_BREAKER_OPEN : BL_BREAKER_PASS;
    }
    b->consecutive = dead_letter ? b->consecutive + 1 : 0;
    if (b->window)
        window_add(b, dead_letter);
    if (dead_letter && b->max_consecutive && b->consecutive > b->max_consecutive) {
        trip = true;
        bl_fmt(b->reason, sizeof(b->reason),
               "DLQ breaker tripped: more than %lld messages in a row failed "
               "(dlq.max.consecutive); consumption is paused; last error: %s",
               (long long)b->max_consecutive, why);
    } else if (dead_letter && b->window && b->fill == b->size &&
               (double)b->dead / (double)b->size > b->max_ratio) {
        trip = true;
        bl_fmt(b->reason, sizeof(b->reason),
               "DLQ breaker tripped: %zu of the last %zu messages failed "
               "(dlq.max.ratio = %g); consumption is paused; last error: %s",
               b->dead, b->size, b->max_ratio, why);
    }
    if (trip)
        atomic_store(&b->tripped, true);
    pthread_mutex_unlock(&b->mtx);
    return trip ? BL_BREAKER_TRIPPED : BL_BREAKER_PASS;
}
