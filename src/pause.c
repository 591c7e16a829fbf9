/*
 * pause.c - when the poll loop holds back, and when a partition is paused
 * (see pause.h).
 */
#include "pause.h"

bool bl_backpressure_update(bl_backpressure_t *bp, size_t messages, uint64_t bytes,
                            int64_t now)
{
    bool over = bl_backpressure_over(bp, messages, bytes);
    bool under = messages <= bp->max_messages / 2 && bytes <= bp->max_bytes / 2;

    if (under)
        bp->over_since = 0;
    else if (over && !bp->over_since)
        bp->over_since = now;
    if (!bp->on && over && now - bp->over_since >= bp->soft_limit_ms)
        bp->on = true;
    else if (bp->on && under)
        bp->on = false;
    return over;
}

bool bl_want_paused(const bl_pause_why_t *why, int64_t tier_due, int64_t now_wall)
{
    return why->backpressure || why->draining || why->breaker || why->unavailable ||
           tier_due > now_wall;
}
