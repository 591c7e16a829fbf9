/*
 * lag_rules.c - Burrow's lag rules over a sliding window, without its
 * false alarms (see lag_rules.h for the rules and why they are ordered so).
 */
#include "lag_rules.h"

#include <stdbool.h>
#include <stdlib.h>

static const char *const status_names[LAG_STATUS_COUNT] = {
    "OK", "WARN", "REWIND", "STALL", "STOP", "ERR"};

const char *lag_status_name(lag_status_t status)
{
    return status >= 0 && status < LAG_STATUS_COUNT ? status_names[status] : "ERR";
}

lag_status_t lag_status_worst(lag_status_t a, lag_status_t b)
{
    return a > b ? a : b;
}

int lag_window_init(lag_window_t *w, size_t capacity)
{
    w->capacity = capacity ? capacity : 1;
    w->count = w->next = 0;
    w->samples = calloc(w->capacity, sizeof(*w->samples));
    return w->samples ? 0 : -1;
}

void lag_window_free(lag_window_t *w)
{
    free(w->samples);
    w->samples = NULL;
    w->count = w->next = 0;
}

void lag_window_push(lag_window_t *w, const lag_sample_t *sample)
{
    w->samples[w->next] = *sample;
    w->next = (w->next + 1) % w->capacity;
    if (w->count < w->capacity)
        w->count++;
}

const lag_sample_t *lag_window_at(const lag_window_t *w, size_t i)
{
    size_t oldest = (w->next + w->capacity - w->count) % w->capacity;
    return &w->samples[(oldest + i) % w->capacity];
}

/* Puts the readable samples of the window in @p out, oldest first
 * (unreadable ones say nothing about progress and are skipped). */
static size_t collect(const lag_window_t *w, const lag_sample_t **out)
{
    size_t n = 0;
    for (size_t i = 0; i < w->count; i++) {
        const lag_sample_t *s = lag_window_at(w, i);
        if (s->ok)
            out[n++] = s;
    }
    return n;
}

static bool rewound(const lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i - 1]->committed >= 0 && s[i]->committed >= 0 &&
            s[i]->committed < s[i - 1]->committed)
            return true;
    return false;
}

static bool any_zero_lag(const lag_sample_t **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i]->lag <= 0)
            return true;
    return false;
}

/* "No commit" (-1) that stays "no commit" counts as not moving. */
static bool committed_unchanged(const lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i]->committed != s[0]->committed)
            return false;
    return true;
}

static bool lag_grew_throughout(const lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i]->lag < s[i - 1]->lag)
            return false;
    return s[n - 1]->lag > s[0]->lag;
}

static bool over_threshold(const lag_sample_t *s, const lag_thresholds_t *th,
                           int64_t default_warn_lag)
{
    int64_t warn_lag = th && th->warn_lag >= 0 ? th->warn_lag : default_warn_lag;

    if (warn_lag >= 0 && s->lag > warn_lag)
        return true;
    return th && th->warn_lag_seconds >= 0 && s->lag_seconds >= 0 &&
           s->lag_seconds > th->warn_lag_seconds;
}

static lag_status_t judge(const lag_sample_t **s, size_t n, bool full,
                          const lag_thresholds_t *th)
{
    const lag_sample_t *newest = s[n - 1];
    /* A member is consuming, and no window full of evidence says otherwise
     * yet: a short window cannot tell a busy consumer between two commits
     * from a stuck one. */
    bool too_early = newest->owner == LAG_OWNER_MEMBER && (!full || n == 1);

    if (rewound(s, n))
        return LAG_REWIND;
    if (!any_zero_lag(s, n) && !too_early) {
        if (n == 1) {
            /* No trend, and nobody known to consume: only the size of the
             * lag speaks. Without a threshold any lag warns; with one, lag
             * within it is OK. */
            bool has_threshold = th && (th->warn_lag >= 0 || th->warn_lag_seconds >= 0);
            return over_threshold(newest, th, has_threshold ? -1 : 0) ? LAG_WARN
                                                                      : LAG_OK;
        }
        if (committed_unchanged(s, n))
            return full ? LAG_STOP : LAG_STALL;
        if (lag_grew_throughout(s, n))
            return LAG_WARN;
    }
    return over_threshold(newest, th, -1) ? LAG_WARN : LAG_OK;
}

lag_status_t lag_evaluate(const lag_window_t *w, const lag_thresholds_t *th)
{
    const lag_sample_t **s;
    lag_status_t status;
    size_t n;

    if (!w->count || !lag_window_at(w, w->count - 1)->ok)
        return LAG_ERR;
    if (!(s = malloc(w->count * sizeof(*s))))
        return LAG_ERR;
    n = collect(w, s);
    /* A full window of readable samples is needed to say "for longer than
     * the window": an unreadable sample in between leaves it partial. */
    status = judge(s, n, n == w->capacity, th);
    free(s);
    return status;
}
