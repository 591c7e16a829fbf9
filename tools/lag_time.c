/*
 * lag_time.c - time lag for both modes of `ballast lag`: each partition's
 * log-end history (shared/lag_history.h), kept once per partition however
 * many groups read it, and the choice, per group-partition, between the
 * history's estimate and the timestamp of the message at the committed
 * offset (read only where the choice needs it: lag_probe.c).
 *
 * Histories are kept for the partitions of the latest evaluation: a
 * partition no watched group reads any more is forgotten, and starts
 * afresh if one reads it again.
 */
#include "lagmon.h"

#include <stdlib.h>
#include <string.h>

static int hist_cmp(const void *a, const void *b)
{
    const lag_hist_t *x = a, *y = b;
    return lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
}

static lag_hist_t *hist_find(const lag_hist_table_t *t, const char *topic, int32_t partition)
{
    lag_hist_t key;

    key.topic = topic;
    key.partition = partition;
    return t->n ? bsearch(&key, t->e, t->n, sizeof(*t->e), hist_cmp) : NULL;
}

int lag_hist_update(lag_hist_table_t *t, const lag_log_end_t *ends, size_t n, int64_t now_ms)
{
    lag_hist_t *next = calloc(n ? n : 1, sizeof(*next));

    if (!next)
        return -1;
    for (size_t i = 0; i < n; i++) {
        lag_hist_t *old = hist_find(t, ends[i].topic, ends[i].partition);
        next[i].topic = ends[i].topic;
        next[i].partition = ends[i].partition;
        if (old) {
            next[i].h = old->h;
            old->h = NULL;
        } else {
            next[i].h = calloc(1, sizeof(*next[i].h)); /* NULL: no history, as if new */
        }
        if (next[i].h)
            bl_lag_history_observe(next[i].h, ends[i].high, now_ms);
    }
    lag_hist_free(t);
    t->e = next;
    t->n = n;
    return 0;
}

void lag_hist_free(lag_hist_table_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].h);
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

/* The history of @p topic [@p partition]; an empty one when none is kept. */
static const bl_lag_history_t *history_of(const lag_hist_table_t *t, const char *topic,
                                          int32_t partition)
{
    static const bl_lag_history_t empty;
    const lag_hist_t *e = hist_find(t, topic, partition);

    return e && e->h ? e->h : &empty;
}

void lag_time_of(const lag_opts_t *o, const lag_hist_table_t *t, lag_time_ask_t *asks, size_t n,
                 int64_t deadline_ms)
{
    lag_probe_t *probes = calloc(n ? n : 1, sizeof(*probes));
    size_t *of = calloc(n ? n : 1, sizeof(*of)), np = 0;
    double *ts_age = malloc((n ? n : 1) * sizeof(*ts_age));

    for (size_t i = 0; ts_age && i < n; i++)
        ts_age[i] = -1;
    for (size_t i = 0; probes && of && ts_age && i < n; i++) {
        const lag_time_ask_t *a = &asks[i];
        if (!bl_lag_time_wants_timestamp(history_of(t, a->topic, a->partition), a->committed,
                                         o->prefer_timestamps))
            continue;
        probes[np].topic = a->topic;
        probes[np].partition = a->partition;
        /* Past a deleted message, the first one left. */
        probes[np].offset = a->committed > a->low ? a->committed : a->low;
        of[np++] = i;
    }
    lag_probe_ages(o, probes, np, deadline_ms);
    for (size_t k = 0; ts_age && k < np; k++)
        ts_age[of[k]] = probes[k].lag_seconds;
    for (size_t i = 0; i < n; i++) {
        lag_time_ask_t *a = &asks[i];
        bl_lag_time_t lt =
            bl_lag_time_choose(history_of(t, a->topic, a->partition), a->committed, bl_now_ms(),
                               ts_age ? ts_age[i] : -1, o->prefer_timestamps);
        *a->seconds = lt.seconds;
        *a->method = lt.method;
    }
    free(probes);
    free(of);
    free(ts_age);
}
