/*
 * history.c - per-partition lag and rate over the last five minutes (see
 * history.h).
 *
 * Frame number f lives in slot f % BL_HISTORY_FRAMES of the frame times and
 * of every series, so adding a frame overwrites the oldest one in place;
 * a series has a value in each slot (-1: none), so a partition that comes
 * and goes leaves gaps rather than lines drawn across its absence.
 */
#include "history.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    char topic[256];
    int32_t partition;
    uint64_t last_frame; /* the newest frame it has a value in */
    int64_t lag[BL_HISTORY_FRAMES];
    float rate[BL_HISTORY_FRAMES];
} series_t;

struct bl_history {
    int64_t times[BL_HISTORY_FRAMES]; /* monotonic ms of each frame */
    uint64_t frames;                  /* frames recorded so far */
    series_t **series;
    size_t nseries, cap;
};

bl_history_t *bl_history_new(void)
{
    return calloc(1, sizeof(bl_history_t));
}

void bl_history_free(bl_history_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nseries; i++)
        free(h->series[i]);
    free(h->series);
    free(h);
}

bool bl_history_due(const bl_history_t *h, int64_t now_ms)
{
    return !h->frames ||
           now_ms - h->times[(h->frames - 1) % BL_HISTORY_FRAMES] >= BL_HISTORY_INTERVAL_MS;
}

/* The series of @p topic / @p partition, made when missing. @p hint is
 * where the same partition was found in the previous frame: assignments
 * rarely change, so the lookup is usually one comparison. */
static series_t *series_for(bl_history_t *h, const char *topic, int32_t partition,
                            size_t hint)
{
    series_t *s;

    if (hint < h->nseries && h->series[hint]->partition == partition &&
        !strcmp(h->series[hint]->topic, topic))
        return h->series[hint];
    for (size_t i = 0; i < h->nseries; i++)
        if (h->series[i]->partition == partition && !strcmp(h->series[i]->topic, topic))
            return h->series[i];
    if (h->nseries == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        series_t **grown = realloc(h->series, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        h->series = grown;
        h->cap = cap;
    }
    if (!(s = malloc(sizeof(*s))))
        return NULL;
    bl_fmt(s->topic, sizeof(s->topic), "%s", topic);
    s->partition = partition;
    s->last_frame = 0;
    for (size_t i = 0; i < BL_HISTORY_FRAMES; i++) {
        s->lag[i] = -1;
        s->rate[i] = -1;
    }
    h->series[h->nseries++] = s;
    return s;
}

/* Forgets the series with no value in any kept frame. */
static void forget_absent(bl_history_t *h)
{
    size_t kept = 0;

    for (size_t i = 0; i < h->nseries; i++) {
        series_t *s = h->series[i];
        if (s->last_frame + BL_HISTORY_FRAMES < h->frames)
            free(s);
        else
            h->series[kept++] = s;
    }
    h->nseries = kept;
}

int bl_history_add(bl_history_t *h, int64_t now_ms, const bl_part_view_t *parts, size_t n)
{
    uint64_t frame = h->frames;
    size_t slot = frame % BL_HISTORY_FRAMES;
    int rc = 0;

    h->times[slot] = now_ms;
    h->frames++;
    /* Nobody has a value in the new frame until given one below. */
    for (size_t i = 0; i < h->nseries; i++) {
        h->series[i]->lag[slot] = -1;
        h->series[i]->rate[slot] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        series_t *s = series_for(h, parts[i].topic, parts[i].partition, i);
        if (!s) {
            rc = -1;
            continue;
        }
        s->lag[slot] = parts[i].lag < 0 ? -1 : parts[i].lag;
        s->rate[slot] = parts[i].rate < 0 ? -1 : (float)parts[i].rate;
        s->last_frame = frame;
    }
    forget_absent(h);
    return rc;
}

bl_history_t *bl_history_copy(const bl_history_t *h)
{
    bl_history_t *copy = calloc(1, sizeof(*copy));

    if (!copy)
        return NULL;
    memcpy(copy->times, h->times, sizeof(h->times));
    copy->frames = h->frames;
    if (h->nseries && !(copy->series = calloc(h->nseries, sizeof(*copy->series)))) {
        free(copy);
        return NULL;
    }
    copy->cap = h->nseries;
    for (size_t i = 0; i < h->nseries; i++) {
        if (!(copy->series[i] = malloc(sizeof(series_t)))) {
            bl_history_free(copy);
            return NULL;
        }
        memcpy(copy->series[i], h->series[i], sizeof(series_t));
        copy->nseries++;
    }
    return copy;
}

static int by_partition(const void *a, const void *b)
{
    const series_t *x = *(series_t *const *)a, *y = *(series_t *const *)b;
    int c = strcmp(x->topic, y->topic);

    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Rounded to 0.1 s (ages) or 0.01 msgs/s (rates): finer digits would only
 * be noise in the document. */
static json_t *rounded(double v, double unit)
{
    return json_real((double)(int64_t)(v / unit + 0.5) * unit);
}

static json_t *render_series(const series_t *s, uint64_t first, uint64_t end)
{
    json_t *lag = json_array(), *rate = json_array();

    for (uint64_t f = first; f < end; f++) {
        size_t slot = f % BL_HISTORY_FRAMES;
        json_array_append_new(lag, s->lag[slot] < 0 ? json_null()
                                                    : json_integer((json_int_t)s->lag[slot]));
        json_array_append_new(rate, s->rate[slot] < 0 ? json_null()
                                                      : rounded(s->rate[slot], 0.01));
    }
    return json_pack("{s:s, s:i, s:o, s:o}", "topic", s->topic, "partition",
                     (int)s->partition, "lag", lag, "processed_per_second", rate);
}

char *bl_history_render(const bl_history_t *h, int64_t now_ms)
{
    uint64_t end = h ? h->frames : 0;
    uint64_t first = end > BL_HISTORY_FRAMES ? end - BL_HISTORY_FRAMES : 0;
    json_t *ages = json_array(), *parts = json_array(), *root;
    series_t **sorted = NULL;
    char *text;

    if (h && h->nseries && (sorted = malloc(h->nseries * sizeof(*sorted)))) {
        memcpy(sorted, h->series, h->nseries * sizeof(*sorted));
        qsort(sorted, h->nseries, sizeof(*sorted), by_partition);
        for (size_t i = 0; i < h->nseries; i++)
            json_array_append_new(parts, render_series(sorted[i], first, end));
    }
    for (uint64_t f = first; f < end; f++) {
        int64_t age = now_ms - h->times[f % BL_HISTORY_FRAMES];
        json_array_append_new(ages, rounded(age > 0 ? (double)age / 1000.0 : 0, 0.1));
    }
    root = json_pack("{s:f, s:f, s:o, s:o}", "interval_seconds",
                     BL_HISTORY_INTERVAL_MS / 1000.0, "window_seconds",
                     BL_HISTORY_INTERVAL_MS * BL_HISTORY_FRAMES / 1000.0,
                     "ages_seconds", ages, "partitions", parts);
    free(sorted);
    if (!root || (h && h->nseries && !sorted)) {
        json_decref(root);
        return NULL;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(root);
    return text;
}
