/*
 * lag_history.h - time lag that stays true: when did the log end pass an
 * offset? Shared by both modes of `ballast lag`.
 *
 * The age of the message at a committed offset, read from its timestamp,
 * fails when that message is gone (retention, compaction, DeleteRecords)
 * or when its producer set a wrong timestamp. A partition's history answers
 * without the message: samples of (log-end offset, time it was first seen
 * there), one recorded each time an evaluation sees the log end move. The
 * message at offset X was written when the log end went from X to X + 1,
 * so its age is now minus the time, interpolated between the two samples
 * around X + 1, at which the log end reached X + 1 (kafka-lag-exporter's
 * interpolation table).
 *
 * Bounded: at most BL_LAG_HISTORY_SAMPLES samples. When a new one comes to
 * a full history, the interior sample whose removal loses least goes: the
 * one whose neighbours are closest in time relative to its age (now minus
 * its time). An interpolated time is wrong by at most the gap between the
 * two samples around it (when the rate varied inside the gap), and the lag
 * there is about the sample's age, so this keeps that error a roughly
 * constant fraction of the lag: recent history fine, older history
 * coarser, geometrically. The oldest and the newest sample always stay.
 *
 * Below the oldest sample (a committed offset older than the history) the
 * time is extrapolated back at the history's average rate (offsets per
 * millisecond between the oldest and newest sample); it is never later
 * than the oldest sample's time, which is a lower bound of the truth. With
 * no rate yet (one sample) there is no estimate: the caller falls back on
 * the message's timestamp, or else on that lower bound (both rules in
 * bl_lag_time_choose()).
 *
 * Times are the caller's, in milliseconds of a monotonic clock (so a step
 * of the wall clock changes nothing); a time earlier than the newest
 * sample's is taken as the newest sample's, and an estimate later than
 * now is an age of 0. A log end below the newest sample's (the topic was
 * deleted and made again) starts the history afresh.
 *
 * Pure: no Kafka, no clock, no I/O, no allocation.
 */
#ifndef BALLAST_LAG_HISTORY_H
#define BALLAST_LAG_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Samples kept per partition (16 bytes each). */
#define BL_LAG_HISTORY_SAMPLES 64

/** The log end seen at @p ms. */
typedef struct bl_lag_history_sample {
    int64_t offset;
    int64_t ms;
} bl_lag_history_sample_t;

/** One partition's history; all zero is an empty one. */
typedef struct bl_lag_history {
    bl_lag_history_sample_t s[BL_LAG_HISTORY_SAMPLES]; /**< oldest first */
    uint32_t n;                                        /**< samples held */
} bl_lag_history_t;

/** How a time lag was found. */
typedef enum bl_lag_time_method {
    BL_LAG_TIME_NONE = 0,      /**< not known */
    BL_LAG_TIME_CAUGHT_UP,     /**< nothing to consume: 0 */
    BL_LAG_TIME_TIMESTAMP,     /**< the timestamp of the message at the offset */
    BL_LAG_TIME_INTERPOLATED,  /**< between two samples of the history */
    BL_LAG_TIME_EXTRAPOLATED   /**< below the oldest sample */
} bl_lag_time_method_t;

/** @returns "none", "caught_up", "timestamp", "interpolated" or
 *  "extrapolated". */
const char *bl_lag_time_method_name(bl_lag_time_method_t method);

/** Empties @p h. */
void bl_lag_history_reset(bl_lag_history_t *h);

/** Records that the log end was @p high at @p now_ms, when it moved since
 *  the newest sample (or there is none); a log end below the newest sample
 *  starts afresh. Negative @p high is ignored.
 *  @returns true when a sample was recorded. */
bool bl_lag_history_observe(bl_lag_history_t *h, int64_t high, int64_t now_ms);

/** The age at @p now_ms of the message at offset @p committed, from the
 *  history alone: INTERPOLATED, EXTRAPOLATED (below the oldest sample, at
 *  the history's rate), or NONE (no sample, no rate to extrapolate with, an
 *  offset the history has not seen written, or @p committed < 0), with the
 *  seconds in *seconds (-1 with NONE). A caught-up partition (lag 0) is
 *  the caller's to tell. */
bl_lag_time_method_t bl_lag_history_estimate(const bl_lag_history_t *h, int64_t committed,
                                             int64_t now_ms, double *seconds);

/** A partition's time lag, and how it was found. */
typedef struct bl_lag_time {
    double seconds; /**< < 0: unknown */
    bl_lag_time_method_t method;
} bl_lag_time_t;

/** The time lag to report for @p committed: with @p prefer_timestamp, the
 *  message's age by its timestamp (@p timestamp_age, seconds; < 0 unknown)
 *  when known; otherwise the history's estimate; failing that the
 *  timestamp; failing that, with a sample, the time since the oldest
 *  sample (a lower bound, EXTRAPOLATED); else NONE. */
bl_lag_time_t bl_lag_time_choose(const bl_lag_history_t *h, int64_t committed, int64_t now_ms,
                                 double timestamp_age, bool prefer_timestamp);

/** Whether bl_lag_time_choose() would read @p timestamp_age: the caller
 *  need fetch the message only then. */
bool bl_lag_time_wants_timestamp(const bl_lag_history_t *h, int64_t committed,
                                 bool prefer_timestamp);

#endif
