/*
 * runtime.h - the consumer runtime's shared state and the functions its
 * files call on each other. Internal.
 *
 * consumer.c  construction, the poll loop, rebalances, shutdown
 * worker.c    handler workers: taking work, retries, outcomes
 * clients.c   librdkafka client construction and its logging callbacks
 * status.c    snapshots for metrics, status and health
 *
 * Threading rules: fields marked "poll thread" are touched only by the
 * thread in ballast_consumer_run(); worker queues are guarded by the
 * worker's mutex; the completion list by done_mtx; atomics are atomics.
 */
#ifndef BALLAST_RUNTIME_H
#define BALLAST_RUNTIME_H

#include "backoff.h"
#include "handlers/handlers.h"
#include "history.h"
#include "internal.h"
#include "message.h"
#include "observe.h"
#include "producer.h"
#include "tiers.h"
#include "donemeta.h"
#include "tracker.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define STAGE_CHUNK 256      /* messages polled before handing them over */
#define WORKER_TAKE_MAX 256  /* messages a worker takes per lock in message mode */
#define POLL_IDLE_MS 20      /* also the stop latency when idle */
#define POLL_BUSY_MS 10
#define FREE_MSGS_MAX 4096   /* message structs kept for reuse */
#define REWIND_TIMEOUT_MS 30000 /* each blocking call of a rewind */
#define COMMIT_WAIT_MS 5000  /* a sync commit waits this long for an async one */
#define WARM_TIMEOUT_MS 5000  /* each topic lookup of bl_producer_warm() */
#define UNAVAILABLE_RETRY_MAX_MS 5000 /* the longest wait for an unavailable handler */
#define STOP_GRACE_MS 5000    /* a handler call may outlive the drain by this much */
#define DESTROY_TIMEOUT_MS 10000 /* rd_kafka_destroy() of each client */

typedef struct ballast_message_s bl_msg_t;

typedef struct bl_queue {
    bl_msg_t *head, *tail;
    size_t len;
} bl_queue_t;

typedef struct bl_part {
    char *topic;
    int32_t partition;
    bl_tracker_t tracker;
    int64_t stored;       /* last offset handed to offsets_store/commit */
    atomic_bool revoked;  /* written by the poll thread, read by workers */
    atomic_bool rewind;   /* exactly-once into a database: a worker found a
                             batch of it fenced; the poll thread rewinds it */
    size_t inflight;      /* messages of this partition not yet retired */
    bool paused;          /* paused by ballast (only those are resumed) */
    bool orphan;          /* no longer assigned: freed when inflight is 0 */
    int worker;           /* the worker for ordering = partition */
    const rd_kafka_topic_t *rkt; /* its topic handle, for a pointer compare */
    int64_t committed;    /* last offset the broker confirmed, -1: none */
    bl_queue_t held;      /* exactly-once: finished messages whose records
                             wait until every earlier offset finished */
    int64_t tier_wait_until; /* retry tier: paused until this epoch ms */
    bl_skipset_t skip;    /* finished before a restart (commit metadata) */
    char *stored_meta;    /* the metadata of the last commit sent */
    int64_t last_ts;      /* timestamp of the last message received */
    struct {              /* status.c: its processing rate, per history frame */
        uint64_t finished; /* tracker.finished at the last frame */
        int64_t at_ms;     /* when that frame was taken, 0: none yet */
        double per_second; /* between the last two frames, -1: unknown */
    } rate;
    struct bl_part *next;
} bl_part_t;

typedef struct bl_worker {
    struct ballast_consumer_s *cons;
    int index;
    pthread_t thread;
    bool started;
    pthread_mutex_t mtx;
    pthread_cond_t cond;
    bl_queue_t queue; /* guarded by mtx */
    bool quit;        /* guarded by mtx */
    void *state;      /* the handler's state for this worker */
    bool state_ok;
    atomic_int_fast64_t busy_since; /* ms when the running call began, 0: idle */
    atomic_bool transient;          /* its latest handler call said RETRY */
    atomic_bool unavailable;        /* ... or UNAVAILABLE (or its database is down) */
    int down_tries;                 /* calls in a row that found it unavailable */
    bl_queue_t staged; /* poll thread only: not yet handed over */
    unsigned rnd;
    bool left;   /* under the consumer's life_mtx: left running by a stop */
    bool exited; /* under life_mtx: its thread is done with the consumer */
} bl_worker_t;

typedef enum { ORDER_PARTITION, ORDER_KEY, ORDER_NONE } ordering_t;

struct ballast_consumer_s {
    ballast_conf_t *conf;
    bl_logger_t log;
    rd_kafka_t *rk;
    rd_kafka_t *producer;
    const ballast_handler_t *handler;
    void *handler_opaque;
    ballast_rebalance_cb *rebalance_cb;
    void *rebalance_opaque;
    const char *group, *output_topic, *dlq_topic;

    bl_backoff_t backoff;
    int max_attempts;
    bool batch_mode;
    size_t batch_max;
    int64_t batch_ms;
    ordering_t ordering;
    int nworkers;
    bl_worker_t *workers;
    unsigned round_robin;
    size_t max_inflight;
    uint64_t max_inflight_bytes;
    int64_t shutdown_timeout_ms;
    int64_t handler_timeout_ms;
    int64_t commit_interval_ms, next_commit_ms, last_commit_ms; /* Kafka commits */
    rd_kafka_queue_t *commit_q; /* results of asynchronous commits */
    int commits_pending;        /* asynchronous commits in flight (0 or 1) */
    bl_tiers_t tiers;     /* retry.topics */
    bool draining;        /* poll thread: shutting down, every partition paused */

    /* The DLQ breaker (worker threads, under breaker_mtx). */
    pthread_mutex_t breaker_mtx;
    int64_t breaker_max_consecutive, breaker_consecutive;
    double breaker_max_ratio;
    uint8_t *breaker_window; /* 1: dead-lettered, 0: handled */
    size_t breaker_window_size, breaker_pos, breaker_fill, breaker_dead;
    atomic_bool breaker;     /* tripped: consumption stays paused */
    char breaker_reason[512];

    /* Topics named by emitted records that the cluster was found to have
     * (bl_topic_exists); any thread, under topics_mtx. */
    pthread_mutex_t topics_mtx;
    char **known_topics;
    size_t known_count;

    /* Exactly-once into a database: the handler's transaction operations,
     * and a handler state of its own for reading stored offsets (poll
     * thread). */
    const bl_txn_ops_t *txn_ops;
    void *loader_state;
    atomic_bool rewind_wanted; /* some partition's rewind flag is set */

    /* Exactly-once with Kafka outputs (txn.c); poll thread only. */
    bool eos;
    bool txn_open;
    bool txn_doomed;  /* a delivery report refused a record for good */
    bool txn_halted;  /* so the transaction was aborted: nothing commits */
    int64_t txn_deadline_ms, txn_interval_ms;
    int64_t max_poll_interval_ms;
    int64_t started_ms;

    /* Observability: the poll thread publishes a snapshot of its partitions
     * about once a second, with the in-flight totals of the same moment, and
     * adds a history frame every BL_HISTORY_INTERVAL_MS; readers on other
     * threads copy them under obs_mtx. */
    pthread_mutex_t obs_mtx;
    bl_part_view_t *snapshot;
    size_t snapshot_count;
    uint64_t snapshot_inflight, snapshot_inflight_bytes, snapshot_revoked;
    bl_history_t *history; /* NULL until the first snapshot */
    int64_t next_snapshot_ms;
    int64_t progress_interval_ms, progress_ms; /* the progress line (poll thread) */
    uint64_t progress_processed;
    char last_transient[256]; /* guarded by obs_mtx */
    char unavailable_reason[256]; /* guarded by obs_mtx */
    atomic_int unavailable_workers; /* workers whose handler is unavailable */
    atomic_int_fast64_t unavailable_since_ms;

    atomic_int_fast64_t last_poll_ms;
    atomic_int running;        /* 1 while ballast_consumer_run polls */
    bl_histogram_t latency;

    /* Poll thread only. */
    bl_part_t *parts, *orphans, *last_part;
    size_t inflight, staged;
    uint64_t inflight_bytes;
    bool backpressured, offsets_dirty, ran;
    int64_t over_since;   /* when the in-flight limit was reached (since in
                             flight last fell to half of it), 0: not */
    int64_t soft_limit_ms; /* how long to hold back before pausing */
    bool paused_breaker;  /* the breaker state sync_pause() last applied */
    bool paused_unavailable; /* the handler state sync_pause() last applied */
    bool paused_bp;       /* the backpressure state sync_pause() last applied */
    size_t tier_waiting;  /* partitions waiting for a retry tier's due time */
    bl_msg_t *free_msgs;  /* reusable message structs (poll thread) */
    size_t free_count;

    /* While starting, librdkafka's complaints are summed up by the start-up
     * error instead of being logged one by one. */
    atomic_bool starting;
    pthread_mutex_t start_mtx;
    char start_reason[256];
    int start_error; /* the librdkafka error code behind start_reason */

    /* Completion list: workers append, the poll thread takes. */
    pthread_mutex_t done_mtx;
    pthread_cond_t done_cond;
    bl_queue_t done;
    atomic_bool done_ready;

    volatile sig_atomic_t stop_requested; /* set by ballast_consumer_stop() */
    atomic_bool abandon; /* the drain's deadline passed: workers start
                            nothing new and stop retrying */
    int abandoned_calls; /* handler calls still running when the drain ended */
    pthread_mutex_t life_mtx; /* the next two, and each worker's left/exited */
    int left_running;    /* workers left running by stop_workers() */
    bool destroy_pending; /* destroyed while some were: the last one frees */
    atomic_bool failed;  /* a fatal error is recorded */
    pthread_mutex_t err_mtx;
    ballast_error_t *fatal;

    struct {
        atomic_uint_fast64_t consumed, processed_ok, retried, failed,
            dead_lettered, emitted, commits, commit_errors, rebalances,
            paused_partitions, skipped_done, metadata_truncated, fenced;
    } stats;
    atomic_uint_fast64_t inflight_pub, inflight_bytes_pub;
};

/* consumer.c */
void bl_queue_push(bl_queue_t *q, bl_msg_t *m);
void bl_queue_append(bl_queue_t *q, bl_queue_t *more);
/** Records the first fatal error; later ones are logged. Any thread. */
void bl_set_fatal(ballast_consumer_t *c, ballast_error_t *err);
/** True once a stop was requested or a fatal error recorded. Any thread. */
bool bl_stopping(const ballast_consumer_t *c);
bl_part_t *bl_part_find(ballast_consumer_t *c, const char *topic, int32_t partition);
void bl_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *list, void *opaque);
void bl_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);
void bl_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *offsets, void *opaque);

void bl_flush_staged(ballast_consumer_t *c);
/** Exactly-once: produces the records of held messages that the committable
 *  offsets now cover, in offset order, into the open transaction. */
void bl_flush_held(ballast_consumer_t *c);
/** Replaces the state of every assigned partition (@p flagged_only: of
 *  those whose rewind flag is set) with a fresh one, dropping what was in
 *  flight; the first step of a rewind. @returns the partitions replaced,
 *  for the caller to seek and destroy. */
rd_kafka_topic_partition_list_t *bl_reset_parts(ballast_consumer_t *c, bool flagged_only);
/** Seeks each partition of @p list, blocking, to its offset (none: the
 *  beginning); the last step of a rewind. */
void bl_seek_parts(ballast_consumer_t *c, const rd_kafka_topic_partition_list_t *list);

/* txn.c (poll thread only) */
ballast_error_t *bl_txn_init(ballast_consumer_t *c, int64_t timeout_ms);
/** Produces a finished message's records in the open transaction (opening
 *  one if needed). @returns false when the transaction was aborted. */
bool bl_txn_add(ballast_consumer_t *c, bl_msg_t *m);
/** Sends the committable offsets and commits. @returns false on failure
 *  (after aborting and rewinding, or recording a fatal error). */
bool bl_txn_commit(ballast_consumer_t *c);
/** Aborts the open transaction and rewinds. */
void bl_txn_abort(ballast_consumer_t *c);
/** Commits the open transaction when its interval has passed. */
void bl_txn_tick(ballast_consumer_t *c);
/** The delivery report of a transactional record (every record, in this
 *  mode): counts it, logs the dead letter it may be, and dooms the
 *  transaction when the broker refused it for good. */
void bl_txn_delivered(ballast_consumer_t *c, const rd_kafka_message_t *rkm);

/* worker.c */
/** The worker thread's body; @p arg is its bl_worker_t. */
void *bl_worker_main(void *arg);
/** The worker's thread is done with the consumer: the last of those a stop
 *  left running frees a consumer destroyed meanwhile. Its final call. */
void bl_worker_exited(bl_worker_t *w);
/** Produces the retry-tier or dead-letter record send_failure() decided
 *  for @p m, straight from the message, counting it in pending_emits: on
 *  the @p poll_thread (at-least-once, once the message is handed back), or
 *  on a worker that waits for the acknowledgement (exactly-once into a
 *  database). A refusal fails the message and stops the pipeline. */
void bl_produce_failure_of(ballast_consumer_t *c, bl_msg_t *m, bool poll_thread);

/** A dead letter's or retry-tier move's log line, kept until the broker
 *  acknowledged its record. */
typedef struct bl_failure_note {
    bool tier; /* a tier move (info), else a dead letter (warning) */
    char line[];
} bl_failure_note_t;
/** The note of @p m's dead letter or tier move, or NULL when the rate
 *  limit (one full line a second) counts it instead. Caller frees. Any
 *  thread. */
bl_failure_note_t *bl_failure_note(ballast_consumer_t *c, const bl_msg_t *m);
/** Logs a note of bl_failure_note(). */
void bl_log_failure_note(ballast_consumer_t *c, const bl_failure_note_t *note);

/* clients.c */
/** Makes the consumer or producer handle from the kafka.* keys. */
ballast_error_t *bl_make_client(ballast_consumer_t *c, bool producer, rd_kafka_t **rkp);
/** The consumer's configuration: ballast's defaults, then the kafka.* keys
 *  of @p conf; the caller owns *rkconfp (bl_make_client() and `ballast
 *  check` make their consumers from it). */
ballast_error_t *bl_consumer_conf_new(const ballast_conf_t *conf,
                                      rd_kafka_conf_t **rkconfp);
/* Looks up the output, dead-letter and retry-tier topics with the
 * producer, so that its first record to each does not wait for
 * librdkafka's periodic scan for unknown topics (about 1 s in 2.0.2, while
 * every record to the topic queues). Best effort: a topic still unknown
 * when @p timeout_ms passes is found by that scan. */
void bl_producer_warm(ballast_consumer_t *c, int timeout_ms);
/** Whether the cluster has @p topic, a topic an emitted record names.
 *  output.topic was checked at start-up; any other name is asked about
 *  once and remembered. When the cluster cannot answer, says yes (the
 *  record then waits in the producer as usual). Any thread. */
bool bl_topic_exists(ballast_consumer_t *c, const char *topic);
/** rd_kafka_committed(), asked again while the group coordinator is
 *  loading or moving (librdkafka reports that instead of waiting), within
 *  @p timeout_ms in all. */
rd_kafka_resp_err_t bl_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list,
                                 int timeout_ms);
/** Stops the pipeline on @p rk's fatal error (librdkafka's error_cb for the
 *  producer, a consumer error event for the consumer), with the error kind
 *  it calls for. Any thread. */
void bl_on_fatal(ballast_consumer_t *c, rd_kafka_t *rk);
/** Splits `topics` into a subscription list. */
rd_kafka_topic_partition_list_t *bl_topic_list(const char *topics);

/* status.c */
/** Copies the partitions' state for readers on other threads, and adds a
 *  history frame when one is due (poll thread). */
void bl_publish_snapshot(ballast_consumer_t *c);
/** Logs the progress line when log.progress.interval.ms has passed since
 *  the last one (poll thread, after a snapshot). */
void bl_log_progress(ballast_consumer_t *c, int64_t now);
/** Logs the run's summary line (poll thread, at the end of the run). */
void bl_log_summary(ballast_consumer_t *c);
/** Frees what bl_publish_snapshot() made (ballast_consumer_destroy). */
void bl_status_free(ballast_consumer_t *c);

#endif
