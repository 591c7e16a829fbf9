/*
 * lag_rules.h - the lag status rules of `ballast lag`: Burrow's evaluation
 * of a sliding window of samples, without its false alarms. Pure: no Kafka,
 * no clock, no I/O; every input is a sample the caller measured.
 *
 * A sample is one evaluation of one partition: the group's committed offset,
 * the partition's high watermark, the lag between them, the time lag (age
 * of the oldest unconsumed message) and whether a member of the group holds
 * the partition. The window keeps the newest N samples of a partition.
 * lag_evaluate() applies, in this order:
 *
 *   ERR     the newest sample could not be read.
 *   REWIND  the committed offset went backwards between two samples of the
 *           window.
 *   OK      some sample of the window has zero lag (Burrow's rule 1). This
 *           is what keeps an idle partition (no traffic, nothing to commit,
 *           lag 0) OK however long its offset stays put - Burrow's first
 *           false alarm, which judges commit age instead of lag.
 *   (a member of the group holds the partition, and the window is not yet
 *           full) OK. A consumer is on it, and a trend needs a full window:
 *           a busy, healthy group always has lag in flight, and a short
 *           window cannot tell a consumer between two commits from a stuck
 *           one. This is what keeps a watcher that starts on a busy group
 *           from reporting WARN and then OK a moment later.
 *   (one sample only, nobody known to hold the partition) WARN: lag that no
 *           member is consuming. (--warn-lag/--warn-lag-seconds make lag
 *           within them OK.)
 *   STOP    the committed offset did not move across a full window while lag
 *           stayed above zero: no commit progress for longer than the window
 *           spans. This is also where a dead consumer's lag, frozen at its
 *           last commit, ends up - Burrow's second false alarm is to call
 *           that frozen-but-nonzero lag OK because it is not growing.
 *   STALL   the committed offset did not move across a partial window while
 *           lag stayed above zero and no member holds the partition (turns
 *           into STOP once the window is full).
 *   WARN    the committed offset moves, but the lag grew across the whole
 *           window (never shrank from one sample to the next, and ended
 *           higher than it began); with a member holding the partition,
 *           only across a full window.
 *   OK      otherwise: the consumer is keeping up or catching up.
 * Thresholds then raise an OK to WARN: lag above --warn-lag, or time lag
 * above --warn-lag-seconds. They are levels, judged on every sample, the
 * first one included.
 *
 * Statuses are ordered by severity; a group's status is the worst of its
 * partitions' (lag_status_worst()).
 */
#ifndef BALLAST_LAG_RULES_H
#define BALLAST_LAG_RULES_H

#include <stddef.h>
#include <stdint.h>

/** Statuses, least to most severe. */
typedef enum lag_status {
    LAG_OK = 0,
    LAG_WARN,
    LAG_REWIND,
    LAG_STALL,
    LAG_STOP,
    LAG_ERR,
    LAG_STATUS_COUNT
} lag_status_t;

/** @returns "OK", "WARN", "REWIND", "STALL", "STOP" or "ERR". */
const char *lag_status_name(lag_status_t status);

/** @returns the more severe of @p a and @p b. */
lag_status_t lag_status_worst(lag_status_t a, lag_status_t b);

/** Whether a member of the group holds a partition. Unknown (0, so that a
 *  sample written without it keeps the stricter rules) when the group's
 *  members could not be described. */
typedef enum lag_owner {
    LAG_OWNER_UNKNOWN = 0,
    LAG_OWNER_NONE,  /**< no member holds it (an empty group, say) */
    LAG_OWNER_MEMBER /**< a member of the group holds it */
} lag_owner_t;

/** One evaluation of one partition. */
typedef struct lag_sample {
    int ok;                 /**< 0: the offsets could not be read (ERR) */
    int64_t committed;      /**< the group's committed offset; -1: none */
    int64_t high_watermark; /**< the partition's high watermark */
    int64_t lag;            /**< messages not yet consumed (>= 0) */
    double lag_seconds;     /**< age of the oldest unconsumed one; < 0: unknown */
    lag_owner_t owner;      /**< whether a member holds the partition */
} lag_sample_t;

/** Levels that turn an otherwise OK partition into WARN. */
typedef struct lag_thresholds {
    int64_t warn_lag;        /**< lag above this warns; < 0: unset */
    double warn_lag_seconds; /**< time lag above this warns; < 0: unset */
} lag_thresholds_t;

/** The newest samples of one partition (a ring buffer). */
typedef struct lag_window {
    lag_sample_t *samples;
    size_t capacity; /**< the window size N */
    size_t count;    /**< samples held, <= capacity */
    size_t next;     /**< where the next sample goes */
} lag_window_t;

/** Prepares an empty window of @p capacity (>= 1) samples.
 *  @returns 0, or -1 when out of memory. Release with lag_window_free(). */
int lag_window_init(lag_window_t *w, size_t capacity);
/** Releases the window's memory (not @p w itself). */
void lag_window_free(lag_window_t *w);
/** Appends a sample, dropping the oldest when the window is full. */
void lag_window_push(lag_window_t *w, const lag_sample_t *sample);
/** @returns the @p i'th sample, 0 = the oldest held. */
const lag_sample_t *lag_window_at(const lag_window_t *w, size_t i);

/** Applies the rules above to @p w (which must hold at least one sample).
 *  @p th may be NULL (no thresholds). */
lag_status_t lag_evaluate(const lag_window_t *w, const lag_thresholds_t *th);

#endif
