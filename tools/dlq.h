/*
 * dlq.h - what `ballast dlq inspect` (dlq_inspect.c) and `ballast dlq
 * replay` (dlq_replay.c) share: their options (cmd_dlq.c), the group-less
 * reader of a dead-letter topic and a view of one dead-letter record's
 * headers (dlq_read.c).
 */
#ifndef BALLAST_DLQ_H
#define BALLAST_DLQ_H

#include "cli.h"
#include "dlq_filter.h"

#include <stdbool.h>
#include <stdint.h>

/** The options of both commands (parsed by cmd_dlq.c). */
typedef struct dlq_opts {
    bool replay;
    const char *bootstrap, *topic, *to;
    const char *group; /**< replay --group: remember progress; NULL: none */
    bool json, dry_run;
    int64_t limit; /**< 0: no limit */
    double rate;   /**< records per second; 0: unlimited */
    int64_t max_replays;
    int timeout_ms;
    dlq_filter_t **where; /**< all must match */
    size_t nwhere;
    const char **props; /**< "key=value" for librdkafka */
    size_t nprops;
} dlq_opts_t;

/* ---- reading the DLQ ------------------------------------------------------ */

/** A dead-letter topic read without any consumer group: each partition from
 *  where the caller says up to the end offset it had when it was opened (a
 *  snapshot: records added later are not read). */
typedef struct dlq_reader {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt;
    int32_t nparts, remaining;
    int64_t *low, *end; /**< per partition: the watermarks when opened */
    bool *started;      /**< consume_start'ed */
    bool *done;         /**< read to the end (or nothing to read) */
    uint64_t total;     /**< records (or at least offsets) to read */
} dlq_reader_t;

/** Connects, checks that the topic exists and takes each partition's
 *  watermarks. @returns 0, or an exit code after printing why. */
int dlq_reader_open(dlq_reader_t *r, const dlq_opts_t *o);
/** (Re)starts reading each partition p from @p from[p] (from its beginning
 *  when @p from is NULL or from[p] < 0). @returns 0 or 1 after printing
 *  why. */
int dlq_reader_start(dlq_reader_t *r, const dlq_opts_t *o, const int64_t *from);
/** Called for each record; @returns 0 to go on, 1 to stop reading. */
typedef int(dlq_record_fn)(void *arg, const rd_kafka_message_t *m);
/** Called now and then while reading (progress lines). */
typedef void(dlq_tick_fn)(void *arg);
/** Hands every record up to the snapshot to @p cb, in offset order per
 *  partition (partitions interleaved). @returns 0 when every partition was
 *  read (or @p cb stopped it), 1 after printing why (or on a stop signal). */
int dlq_reader_run(dlq_reader_t *r, const dlq_opts_t *o, dlq_record_fn *cb,
                   dlq_tick_fn *tick, void *arg);
/** Stops reading and frees everything; a closed reader can be closed again. */
void dlq_reader_close(dlq_reader_t *r);

/* ---- a dead-letter record ---------------------------------------------- */

/** The headers of SPEC.md's dead-letter records, as read by a view. */
enum {
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_TIMESTAMP,
    H_RETRIES,
    H_ERROR,
    H_GROUP,
    H_FAILED_AT,
    H_REPLAYS,
    H_REPLAYED_FROM,
    H_COUNT
};

typedef struct dlq_field {
    bool present;
    const void *value; /**< NULL for a null header value */
    size_t len;
} dlq_field_t;

/** A record and its x-* headers (the last occurrence of each name). Points
 *  into the message: valid while it is. */
typedef struct dlq_view {
    const rd_kafka_message_t *m;
    rd_kafka_headers_t *hdrs; /**< owned by m; NULL when it has none */
    dlq_field_t h[H_COUNT];
    int64_t failed_at_ms; /**< -1: absent or not a time */
    int64_t replays;      /**< x-replay-count, 0 when absent */
} dlq_view_t;

void dlq_view_init(dlq_view_t *v, const rd_kafka_message_t *m);
/** Whether the record matches every --where of @p o. */
bool dlq_matches(const dlq_opts_t *o, const dlq_view_t *v);
/** The bytes [p, p+len) as a whole decimal number. */
bool dlq_bytes_int64(const void *p, size_t len, int64_t *out);
/** Text that can travel as a JSON string (valid UTF-8, no NUL). */
bool dlq_is_text(const void *p, size_t len);
/** A table cell: the bytes as text with control characters shown as
 *  spaces, cut to @p max characters ("..." marks a cut); "-" when absent;
 *  "<N bytes>" when not UTF-8 text. */
void dlq_cell(char *out, size_t size, const void *p, size_t len, size_t max);

/** `ballast dlq inspect` (dlq_inspect.c). @returns the exit code. */
int dlq_inspect_run(const dlq_opts_t *o);
/** `ballast dlq replay` (dlq_replay.c). @returns the exit code. */
int dlq_replay_run(const dlq_opts_t *o);

#endif
