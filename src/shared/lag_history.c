/*
 * lag_history.c - a partition's log-end history and the time lag it gives
 * (the rules are in lag_history.h).
 */
#include "lag_history.h"

#include <string.h>

const char *bl_lag_time_method_name(bl_lag_time_method_t method)
{
    switch (method) {
    case BL_LAG_TIME_CAUGHT_UP:
        return "caught_up";
    case BL_LAG_TIME_TIMESTAMP:
        return "timestamp";
    case BL_LAG_TIME_INTERPOLATED:
        return "interpolated";
    case BL_LAG_TIME_EXTRAPOLATED:
        return "extrapolated";
    default:
        return "none";
    }
}

void bl_lag_history_reset(bl_lag_history_t *h)
{
    h->n = 0;
}

/* The sample after @p i: the next one held, or @p incoming past the
 * newest. */
static const bl_lag_history_sample_t *after(const bl_lag_history_t *h, uint32_t i,
                                            const bl_lag_history_sample_t *incoming)
{
    return i + 1 < h->n ? &h->s[i + 1] : incoming;
}

/* What removing sample @p i (an interior one, once @p incoming is added)
 * loses: the gap it leaves, relative to its age at incoming's time. */
static double removal_cost(const bl_lag_history_t *h, uint32_t i,
                           const bl_lag_history_sample_t *incoming)
{
    double gap = (double)(after(h, i, incoming)->ms - h->s[i - 1].ms);
    double age = (double)(incoming->ms - h->s[i].ms);

    return gap / (age > 1 ? age : 1);
}

/* Makes room for @p incoming in a full history: drops the sample whose
 * removal loses least (the older one of a tie), never the oldest; the
 * newest so far can go, since it is interior once @p incoming is in. */
static void thin(bl_lag_history_t *h, const bl_lag_history_sample_t *incoming)
{
    uint32_t drop = 1;
    double best = removal_cost(h, 1, incoming);

    for (uint32_t i = 2; i < h->n; i++) {
        double cost = removal_cost(h, i, incoming);
        if (cost < best) {
            best = cost;
            drop = i;
        }
    }
    memmove(&h->s[drop], &h->s[drop + 1], (h->n - drop - 1) * sizeof(h->s[0]));
    h->n--;
}

bool bl_lag_history_observe(bl_lag_history_t *h, int64_t high, int64_t now_ms)
{
    bl_lag_history_sample_t incoming = {high, now_ms};
    const bl_lag_history_sample_t *newest = h->n ? &h->s[h->n - 1] : NULL;

    if (high < 0 || (newest && high == newest->offset))
        return false;
    if (newest && high < newest->offset)
        h->n = 0; /* the topic was made again: its past says nothing */
    else if (newest && now_ms < newest->ms)
        incoming.ms = newest->ms; /* times never go back */
    if (h->n == BL_LAG_HISTORY_SAMPLES)
        thin(h, &incoming);
    h->s[h->n++] = incoming;
    return true;
}

/* The time at which the log end reached @p target (> the oldest sample's
 * offset, <= the newest's), between the two samples around it. */
static double interpolate(const bl_lag_history_t *h, int64_t target)
{
    uint32_t lo = 0, hi = h->n - 1;

    /* The first sample at or past target: s[hi]; s[lo] is the one before. */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->s[mid].offset >= target)
            hi = mid;
        else
            lo = mid;
    }
    return (double)h->s[lo].ms + (double)(h->s[hi].ms - h->s[lo].ms) *
                                     (double)(target - h->s[lo].offset) /
                                     (double)(h->s[hi].offset - h->s[lo].offset);
}

/* Seconds from @p at_ms to @p now_ms, never negative. */
static double age_seconds(double at_ms, int64_t now_ms)
{
    double age = ((double)now_ms - at_ms) / 1000.0;
    return age > 0 ? age : 0;
}

bl_lag_time_method_t bl_lag_history_estimate(const bl_lag_history_t *h, int64_t committed,
                                             int64_t now_ms, double *seconds)
{
    /* The message at `committed` was written when the log end reached
     * committed + 1. */
    int64_t target = committed + 1;
    const bl_lag_history_sample_t *oldest = &h->s[0], *newest = &h->s[h->n ? h->n - 1 : 0];

    *seconds = -1;
    if (committed < 0 || !h->n)
        return BL_LAG_TIME_NONE;
    if (target > newest->offset)
        return BL_LAG_TIME_NONE; /* not seen written yet: the history is behind */
    if (target > oldest->offset) {
        *seconds = age_seconds(interpolate(h, target), now_ms);
        return BL_LAG_TIME_INTERPOLATED;
    }
    if (h->n < 2 || newest->ms <= oldest->ms)
        return BL_LAG_TIME_NONE;
    {
        double per_ms = (double)(newest->offset - oldest->offset) /
                        (double)(newest->ms - oldest->ms);
        *seconds = age_seconds((double)oldest->ms - (double)(oldest->offset - target) / per_ms,
                               now_ms);
    }
    return BL_LAG_TIME_EXTRAPOLATED;
}

bool bl_lag_time_wants_timestamp(const bl_lag_history_t *h, int64_t committed,
                                 bool prefer_timestamp)
{
    double seconds;

    if (committed < 0)
        return false;
    return prefer_timestamp || bl_lag_history_estimate(h, committed, 0, &seconds) ==
                                   BL_LAG_TIME_NONE;
}

bl_lag_time_t bl_lag_time_choose(const bl_lag_history_t *h, int64_t committed, int64_t now_ms,
                                 double timestamp_age, bool prefer_timestamp)
{
    bl_lag_time_t t = {-1, BL_LAG_TIME_NONE};

    if (committed < 0)
        return t;
    if (prefer_timestamp && timestamp_age >= 0)
        return (bl_lag_time_t){timestamp_age, BL_LAG_TIME_TIMESTAMP};
    if ((t.method = bl_lag_history_estimate(h, committed, now_ms, &t.seconds)))
        return t;
    if (timestamp_age >= 0)
        return (bl_lag_time_t){timestamp_age, BL_LAG_TIME_TIMESTAMP};
    if (h->n)
        return (bl_lag_time_t){age_seconds((double)h->s[0].ms, now_ms), BL_LAG_TIME_EXTRAPOLATED};
    return t;
}
