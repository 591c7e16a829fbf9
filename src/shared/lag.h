/*
 * lag.h - a consumer group's lag: how it is read and how it is judged.
 * Shared by the library (the consumer's own lag, in status.c; reading
 * committed offsets, in clients.c), `ballast lag` and the lag demo.
 *
 * Reading (lag.c, librdkafka): the lag of a partition from its committed
 * offset and watermarks, the group's committed offsets through the admin
 * API (never joining the group), and which answers mean "ask again".
 *
 * Judging: the lag status rules of `ballast lag`, Burrow's evaluation of a
 * sliding window of samples, without its false alarms. Pure: no Kafka, no
 * clock, no I/O; every input is a sample the caller measured.
 *
 * A sample is one evaluation of one partition: the group's committed offset,
 * the partition's high watermark, the lag between them, the time lag (age
 * of the oldest unconsumed message) and whether a member of the group holds
 * the partition. The window keeps the newest N samples of a partition.
 * bl_lag_evaluate() applies, in this order:
 *
 *   ERR     the newest sample could not be read.
 *   REWIND  the committed offset went backwards between two samples of the
 *           window.
 *   OK      some sample of the window has zero lag (Burrow's rule 1). This
 *           is what keeps an idle partition (no traffic, nothing to commit,
 *           lag 0) OK however long its offset stays put (Burrow before 1.0
 *           judged commit age instead of lag, and raised a false alarm).
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
 *           last commit, ends up (frozen but nonzero lag is not OK because it
 *           is not growing).
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
 * partitions' (bl_lag_status_worst()).
 */
#ifndef BALLAST_LAG_H
#define BALLAST_LAG_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- reading ------------------------------------------------------------- */

/** The lag of a partition: @p high - @p committed, or with nothing committed
 *  (@p committed < 0) every retained message, @p high - @p low; never
 *  negative. -1 when it cannot be known (@p high, or the offset it counts
 *  from, is negative). */
int64_t bl_lag_of(int64_t committed, int64_t low, int64_t high);

/** Whether @p err says the group coordinator is loading, moving or not
 *  elected yet (a fresh broker's, say): librdkafka reports that at once
 *  instead of waiting, and asking again shortly is the cure. */
bool bl_lag_coordinator_moving(rd_kafka_resp_err_t err);

/** One admin call (librdkafka's admin API): its options and the queue its
 *  answer comes on. */
typedef struct bl_admin {
    rd_kafka_AdminOptions_t *opts;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev; /* the answer, once there */
    int timeout_ms;
} bl_admin_t;

/** Prepares a call of @p op on @p rk with a request timeout of
 *  @p timeout_ms; the call itself takes a->opts and a->q. */
void bl_admin_start(bl_admin_t *a, rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms);
/** Waits for the answer of the call @p what (its timeout and 2 s more).
 *  @returns it (a->ev), or NULL with the error in *errp and a reason in
 *  @p errbuf. */
rd_kafka_event_t *bl_admin_answer(bl_admin_t *a, const char *what, rd_kafka_resp_err_t *errp,
                                  char *errbuf, size_t errsize);
/** Frees what the call holds. */
void bl_admin_end(bl_admin_t *a);

/** One committed offset of a group. */
typedef struct bl_lag_committed {
    char *topic;
    int32_t partition;
    int64_t offset;          /* -1 with err */
    rd_kafka_resp_err_t err; /* the broker could not say, for this partition */
} bl_lag_committed_t;

/** A group's committed offsets (those it has, and the partitions the broker
 *  could not answer for; partitions without a commit are left out). */
typedef struct bl_lag_offsets {
    bl_lag_committed_t *c;
    size_t n;
} bl_lag_offsets_t;

/** Reads @p group's committed offsets through the admin API
 *  (ListConsumerGroupOffsets on @p rk, which never joins the group): of
 *  the partitions in @p want, or of all the group's when NULL. Asks again
 *  after coordinator errors until @p timeout_ms passed, as Kafka's own admin
 *  client does. A group the broker does not know reads as no offsets.
 *  @returns 0 with *out filled (free it with bl_lag_offsets_free()), or the
 *  error with a reason in @p errbuf. */
rd_kafka_resp_err_t bl_lag_read_committed(rd_kafka_t *rk, const char *group,
                                          const rd_kafka_topic_partition_list_t *want,
                                          int timeout_ms, bl_lag_offsets_t *out,
                                          char *errbuf, size_t errsize);
/** Marks an entry of bl_lag_read_committed_many() not answered yet. */
#define BL_LAG_PENDING ((rd_kafka_resp_err_t)-1)

/** One group of bl_lag_read_committed_many(). */
typedef struct bl_lag_group_offsets {
    const char *group;                           /**< in: the group (not copied) */
    const rd_kafka_topic_partition_list_t *want; /**< in: its partitions; NULL: all */
    bl_lag_offsets_t offsets;                    /**< out: as bl_lag_read_committed() */
    rd_kafka_resp_err_t err; /**< out: 0, or why not (GROUP_ID_NOT_FOUND: the broker
                                  does not know the group) */
    char error[200];         /**< out: the reason, with err */
} bl_lag_group_offsets_t;

/** bl_lag_read_committed() for @p n groups at once: one request per group,
 *  all in flight together on @p rk, the groups whose coordinator was moving
 *  asked again until @p timeout_ms passed. Each entry's offsets are filled
 *  in even when another group failed; free each with bl_lag_offsets_free(). */
void bl_lag_read_committed_many(rd_kafka_t *rk, bl_lag_group_offsets_t *g, size_t n,
                                int timeout_ms);
/** Frees what bl_lag_read_committed() filled in; it can be freed again. */
void bl_lag_offsets_free(bl_lag_offsets_t *o);

/* ---- judging ------------------------------------------------------------- */

/** Statuses, least to most severe. */
typedef enum bl_lag_status {
    BL_LAG_OK = 0,
    BL_LAG_WARN,
    BL_LAG_REWIND,
    BL_LAG_STALL,
    BL_LAG_STOP,
    BL_LAG_ERR,
    BL_LAG_STATUS_COUNT
} bl_lag_status_t;

/** @returns "OK", "WARN", "REWIND", "STALL", "STOP" or "ERR". */
const char *bl_lag_status_name(bl_lag_status_t status);

/** @returns the more severe of @p a and @p b. */
bl_lag_status_t bl_lag_status_worst(bl_lag_status_t a, bl_lag_status_t b);

/** Whether a member of the group holds a partition. Unknown (0, so that a
 *  sample written without it keeps the stricter rules) when the group's
 *  members could not be described. */
typedef enum bl_lag_owner {
    BL_LAG_OWNER_UNKNOWN = 0,
    BL_LAG_OWNER_NONE,  /**< no member holds it (an empty group, say) */
    BL_LAG_OWNER_MEMBER /**< a member of the group holds it */
} bl_lag_owner_t;

/** One evaluation of one partition. */
typedef struct bl_lag_sample {
    int64_t committed;      /**< the group's committed offset; -1: none */
    int64_t high_watermark; /**< the partition's high watermark */
    int64_t lag;            /**< messages not yet consumed (>= 0) */
    float lag_seconds;      /**< age of the oldest unconsumed one; < 0: unknown (a float:
                                 to the millisecond up to 4 hours, to the second up to
                                 six months; only thresholds read it) */
    uint8_t ok;             /**< 0: the offsets could not be read (ERR) */
    uint8_t owner;          /**< a bl_lag_owner_t: whether a member holds the partition */
} bl_lag_sample_t; /* 32 bytes: a window holds one per partition per evaluation, and a
                      cluster watcher one window per group-partition */

/** Levels that turn an otherwise OK partition into WARN. */
typedef struct bl_lag_thresholds {
    int64_t warn_lag;        /**< lag above this warns; < 0: unset */
    double warn_lag_seconds; /**< time lag above this warns; < 0: unset */
} bl_lag_thresholds_t;

/** The newest samples of one partition (a ring buffer). */
typedef struct bl_lag_window {
    bl_lag_sample_t *samples;
    size_t capacity; /**< the window size N */
    size_t count;    /**< samples held, <= capacity */
    size_t next;     /**< where the next sample goes */
} bl_lag_window_t;

/** Prepares an empty window of @p capacity (>= 1) samples.
 *  @returns 0, or -1 when out of memory. Release with bl_lag_window_free(). */
int bl_lag_window_init(bl_lag_window_t *w, size_t capacity);
/** Releases the window's memory (not @p w itself). */
void bl_lag_window_free(bl_lag_window_t *w);
/** Appends a sample, dropping the oldest when the window is full. */
void bl_lag_window_push(bl_lag_window_t *w, const bl_lag_sample_t *sample);
/** @returns the @p i'th sample, 0 = the oldest held. */
const bl_lag_sample_t *bl_lag_window_at(const bl_lag_window_t *w, size_t i);

/** Applies the rules above to @p w (which must hold at least one sample).
 *  @p th may be NULL (no thresholds). */
bl_lag_status_t bl_lag_evaluate(const bl_lag_window_t *w, const bl_lag_thresholds_t *th);

#endif
