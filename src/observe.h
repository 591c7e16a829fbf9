/*
 * observe.h - metrics rendering (Prometheus text), the JSON status
 * document, and a lock-free latency histogram. Pure: no Kafka calls.
 */
#ifndef BALLAST_OBSERVE_H
#define BALLAST_OBSERVE_H

#include "internal.h"

#include <stdatomic.h>

#define BL_HIST_BUCKETS 14

/** A latency histogram; observe() is lock-free and callable from any thread. */
typedef struct bl_histogram {
    atomic_uint_fast64_t buckets[BL_HIST_BUCKETS + 1]; /* last: +Inf */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
} bl_histogram_t;

void bl_histogram_observe(bl_histogram_t *h, int64_t micros);
/** @p n observations of @p micros each (a batch's calls, timed together). */
void bl_histogram_observe_n(bl_histogram_t *h, int64_t micros, size_t n);

/** One partition as seen by the status page and the lag metrics. */
typedef struct bl_part_view {
    char topic[256];
    int32_t partition;
    int64_t committed; /* -1: nothing committed yet */
    int64_t high_watermark; /* -1: unknown */
    int64_t lag;            /* -1: unknown */
    int64_t lag_ms;         /* -1: unknown */
    size_t inflight;
    bool paused;
    double rate; /* messages finished per second between the last two
                    history frames, negative: unknown */
} bl_part_view_t;

/** Everything the renderers show; filled by the consumer. */
typedef struct bl_view {
    const char *group;
    const char *topics;
    const char *semantics;
    const char *group_protocol; /* "classic" or "consumer" (KIP-848) */
    ballast_stats_t stats;      /* in flight: as of the partitions' snapshot */
    uint64_t inflight_revoked;  /* in flight from partitions no longer
                                   assigned (not in parts) */
    double processed_per_second; /* the partitions' rates summed, negative:
                                    unknown */
    const bl_part_view_t *parts;
    size_t nparts;
    const bl_histogram_t *latency;
    int64_t poll_headroom_ms;
    int64_t uptime_ms;
    bool healthy, ready;
    const char *health_reason, *ready_reason;
    bool breaker_open;        /* the DLQ breaker tripped: consumption paused */
    bool handler_unavailable; /* some worker's handler is UNAVAILABLE */
} bl_view_t;

/** Prometheus text format 0.0.4. Caller frees. NULL when out of memory. */
char *bl_render_metrics(const bl_view_t *v);
/** The JSON status document. Caller frees. NULL when out of memory. */
char *bl_render_status(const bl_view_t *v);

#endif
