/*
 * runtime.h - the consumer runtime's state and its primitives. Internal.
 *
 * The state is one struct, ballast_consumer_s, made of one sub-struct per
 * subsystem, as librdkafka's rdkafka_int.h holds rk_eos and the consumer
 * group's state. Each sub-struct says which file owns it: only that file
 * writes it, and other files call that file's functions (or read a field
 * through an inline accessor in its header). The files, from the top:
 *
 *   consumer.c   construction, the poll loop, the stop, destruction
 *   status.c     snapshots, health, readiness, metrics, stats
 *   rebalance.c  assignments and revocations; where partitions start, and
 *                every rewind (after an aborted Kafka transaction or a
 *                fenced database batch)
 *   dispatch.c   the poll thread's traffic: messages to workers and back,
 *                backpressure and pauses
 *   worker.c     worker threads: taking work, handing it back, the stop
 *   dbtxn.c      exactly-once into a database: a batch's transaction
 *   outcome.c    a handler call, its retries, what its outcome means
 *   ktxn.c       exactly-once with Kafka outputs: Kafka transactions
 *   txnwatch.c   the transaction watchdog: which blocking transaction call
 *                the poll thread is in (ballast_consumer_stalled())
 *   commit.c     at-least-once commits
 *   emit.c       everything produced: outputs, dead letters, tier moves,
 *                their delivery reports
 *   parts.c      partitions and the message pool
 *   clients.c    librdkafka clients, with the callback table they are given
 *   runtime.c    the run's flags and fatal error, the completion list
 * Below them are the pure policies (breaker, pause, cadence, route.h,
 * tracker, backoff, tiers, donemeta) and the message, producer and handler
 * modules. Each file calls and includes only files below it (scripts/layers
 * checks this; docs/design.md draws it).
 *
 * Threading rules: fields marked "poll thread" are touched only by the
 * thread in ballast_consumer_run(); a worker's queue is guarded by its
 * signal's mutex; the completion list by its own; atomics are atomics.
 */
#ifndef BALLAST_RUNTIME_H
#define BALLAST_RUNTIME_H

#include "backoff.h"
#include "breaker.h"
#include "cadence.h"
#include "donemeta.h"
#include "handlers/handlers.h"
#include "history.h"
#include "internal.h"
#include "message.h"
#include "observe.h"
#include "pause.h"
#include "route.h"
#include "tiers.h"
#include "tracker.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- primitives ----------------------------------------------------------- */

typedef struct ballast_message_s bl_msg_t;

/** A queue of messages, linked through their `next`. */
typedef struct bl_queue {
    bl_msg_t *head, *tail;
    size_t len;
} bl_queue_t;

static inline void bl_queue_push(bl_queue_t *q, bl_msg_t *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
}

/** Moves every message of @p more to the end of @p q. */
static inline void bl_queue_append(bl_queue_t *q, bl_queue_t *more)
{
    if (!more->head)
        return;
    if (q->tail)
        q->tail->next = more->head;
    else
        q->head = more->head;
    q->tail = more->tail;
    q->len += more->len;
    memset(more, 0, sizeof(*more));
}

/** Takes the head of @p q; NULL when it is empty. */
static inline bl_msg_t *bl_queue_pop(bl_queue_t *q)
{
    bl_msg_t *m = q->head;

    if (m) {
        q->head = m->next;
        if (!q->head)
            q->tail = NULL;
        q->len--;
    }
    return m;
}

/** Moves up to @p max messages from the head of @p from into @p to (made
 *  empty first): all of them at once when they fit, so that no list is
 *  walked (each step is a cache miss on a message another thread wrote). */
static inline void bl_queue_take(bl_queue_t *from, bl_queue_t *to, size_t max)
{
    bl_msg_t *m;

    memset(to, 0, sizeof(*to));
    if (from->len <= max) {
        *to = *from;
        memset(from, 0, sizeof(*from));
        return;
    }
    while (to->len < max && (m = bl_queue_pop(from)))
        bl_queue_push(to, m);
}

/** A mutex and a condition to wait on under it. */
typedef struct bl_signal {
    pthread_mutex_t mtx;
    pthread_cond_t cond;
} bl_signal_t;

/** Wakes everyone waiting on @p s. */
static inline void bl_signal_wake(bl_signal_t *s)
{
    pthread_mutex_lock(&s->mtx);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mtx);
}

/* ---- a partition ------------------------------------------------------------ */

/** An assigned partition (parts.c), or an orphan: one no longer assigned
 *  (revoked, or replaced by a rewind) whose messages are still in flight.
 *  Poll thread, but for the atomics; fields marked with a file are that
 *  file's. */
typedef struct bl_part {
    char *topic;
    int32_t partition;
    bl_tracker_t tracker;
    atomic_bool revoked;  /* workers drop its messages that have not started */
    atomic_bool rewind;   /* to be rewound by the poll loop (rebalance.c) */
    size_t inflight;      /* messages of this partition not yet retired */
    bool orphan;          /* no longer assigned: freed when inflight is 0 */
    int worker;           /* its worker for ordering = partition */
    const rd_kafka_topic_t *rkt; /* its topic handle, for a pointer compare */
    int64_t committed;    /* last offset the broker confirmed, -1: none */
    int64_t last_ts;      /* timestamp of the last message received */
    int64_t stored;       /* commit.c, ktxn.c: last offset sent for commit */
    char *stored_meta;    /* commit.c: the metadata of the last commit sent */
    bl_queue_t held;      /* ktxn.c: finished messages waiting for every
                             earlier offset to finish */
    bool paused;          /* dispatch.c: paused by ballast (only those are
                             resumed) */
    int64_t tier_wait_until; /* dispatch.c: paused until this epoch ms */
    bl_skipset_t skip;    /* rebalance.c: finished before a restart */
    struct {              /* status.c: its rate, per history frame */
        uint64_t finished; /* tracker.finished at the last frame */
        int64_t at_ms;     /* when that frame was taken, 0: none yet */
        double per_second; /* between the last two frames, -1: unknown */
    } rate;
    struct bl_part *next;
} bl_part_t;

/* ---- the subsystems ------------------------------------------------------- */

/** Which exactly-once engine runs, if any. */
typedef enum bl_semantics {
    BL_AT_LEAST_ONCE,
    BL_EXACTLY_ONCE_KAFKA, /* Kafka transactions hold outputs and offsets (ktxn.c) */
    BL_EXACTLY_ONCE_DB     /* the database's transactions hold them (dbtxn.c) */
} bl_semantics_t;

/** The configuration as the runtime uses it: read once by consumer.c,
 *  read-only afterwards (any thread). */
typedef struct bl_settings {
    bl_semantics_t semantics;
    const ballast_handler_t *handler;
    void *handler_opaque;
    ballast_rebalance_cb *rebalance_cb;
    void *rebalance_opaque;
    const char *group, *output_topic, *dlq_topic; /* topics: NULL when unset */
    bl_tiers_t tiers; /* retry.topics */
    bl_backoff_t backoff;
    int max_attempts;
    bool batch_mode;
    size_t batch_max;
    int64_t batch_ms;
    size_t group_max; /* message mode into PostgreSQL: messages a transaction
                         (msggroup.c); 0: one per message */
    int64_t group_ms;
    bl_ordering_t ordering;
    int nworkers;
    int64_t shutdown_timeout_ms, handler_timeout_ms, max_poll_interval_ms;
    int64_t txn_interval_ms, progress_interval_ms;
    bool tracing; /* tracing = on: start a context where a message has none */
} bl_settings_t;

/** The run (runtime.c): how it ends. Any thread. */
typedef struct bl_run {
    volatile sig_atomic_t stop_requested; /* ballast_consumer_stop() */
    atomic_bool failed;  /* a fatal error is recorded */
    atomic_bool abandon; /* the drain's deadline passed: workers start
                            nothing new and stop retrying */
    pthread_mutex_t err_mtx;
    ballast_error_t *fatal;
    bool ran;            /* consumer.c: ballast_consumer_run() was called */
    atomic_int running;  /* consumer.c: 1 while ballast_consumer_run polls */
    atomic_int_fast64_t last_poll_ms; /* consumer.c, rebalance.c, dispatch.c */
    int64_t started_ms;
} bl_run_t;

/** The counters, bumped where things happen and read by status.c. */
typedef struct bl_stats {
    atomic_uint_fast64_t consumed, processed_ok, retried, failed, dead_lettered, emitted,
        commits, commit_errors, rebalances, paused_partitions, skipped_done,
        metadata_truncated, fenced;
    atomic_uint_fast64_t inflight, inflight_bytes; /* dispatch.c publishes */
    bl_histogram_t latency;                        /* outcome.c observes */
} bl_stats_t;

/** The completion list (runtime.c): workers hand finished messages back,
 *  the poll thread takes them. */
typedef struct bl_done {
    bl_signal_t sig;
    bl_queue_t q; /* under sig.mtx */
    atomic_bool ready;
} bl_done_t;

/** What librdkafka calls back (clients.c installs the table it is given). */
typedef struct bl_client_cbs {
    void (*delivered)(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);
    void (*rebalanced)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t *list, void *opaque);
    void (*committed)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);
} bl_client_cbs_t;

/** clients.c. While starting, librdkafka's complaints are summed up by the
 *  start-up error instead of being logged one by one. */
typedef struct bl_clients {
    const bl_client_cbs_t *cbs;
    atomic_bool starting;
    pthread_mutex_t start_mtx;
    char start_reason[256]; /* under start_mtx */
    int start_error;        /* the librdkafka error code behind it */
} bl_clients_t;

/** parts.c; poll thread. */
typedef struct bl_parts {
    bl_part_t *list, *orphans, *last;
    size_t inflight;         /* messages received and not retired */
    uint64_t inflight_bytes;
    uint64_t finished;       /* offsets finished since the last commit (cadence.h) */
    atomic_bool rewind_wanted; /* some partition's rewind flag is set */
    bl_msg_t *free_msgs;     /* message structs kept for reuse */
    size_t free_count;
} bl_parts_t;

/** emit.c: topics named by emitted records that the cluster was found to
 *  have (bl_emit_topic_exists). Any thread, under topics_mtx. */
typedef struct bl_emit {
    pthread_mutex_t topics_mtx;
    char **known;
    size_t nknown;
} bl_emit_t;

/** commit.c; poll thread. */
typedef struct bl_commit {
    bl_cadence_t cadence;
    rd_kafka_queue_t *q; /* results of asynchronous commits */
    int pending;         /* asynchronous commits in flight (0 or 1) */
} bl_commit_t;

/** ktxn.c: the Kafka transaction; poll thread. */
typedef struct bl_ktxn {
    bool open;
    bool doomed;  /* a delivery report refused a record for good */
    bool halted;  /* so the transaction was aborted: nothing commits */
    int64_t deadline_ms;
    int64_t timeout_ms; /* each blocking call's: BL_TXN_TIMEOUT_MS (tests
                           lower it) */
} bl_ktxn_t;

/** txnwatch.c: the blocking Kafka transaction call the poll thread is in,
 *  for the watchdog, which reads it from any thread. */
typedef struct bl_txnwatch {
    _Atomic(const char *) call;     /* its librdkafka function, or NULL */
    atomic_int_fast64_t since_ms;   /* when it was entered; 0: none */
    atomic_int_fast64_t timeout_ms; /* the timeout it was given */
    atomic_bool reported;           /* ballast_consumer_stalled() logged it */
    int64_t margin_ms; /* how far past its timeout a call counts as hung:
                          BL_TXN_OVERRUN_MARGIN_MS (tests lower it) */
    /* Tests only (NULL otherwise): called inside the watched window of
     * every call, so that a test can make one block. */
    void (*hook)(ballast_consumer_t *c, const char *call);
} bl_txnwatch_t;

/** dbtxn.c: the database's transaction operations, and a handler state of
 *  the poll thread's own for reading stored offsets. */
typedef struct bl_dbtxn {
    const bl_dbtxn_ops_t *ops;
    void *loader;
} bl_dbtxn_t;

/** One worker (worker.c; outcome.c uses the fields of its calls). */
typedef struct bl_worker {
    struct ballast_consumer_s *cons;
    pthread_t thread;
    bool started;
    bl_signal_t sig;  /* guards queue and quit; the worker waits on it */
    bl_queue_t queue; /* under sig.mtx */
    bool quit;        /* under sig.mtx */
    void *state;      /* the handler's state for this worker */
    bool state_ok;
    bool pipelined; /* pipeline.c runs its messages (set before it starts) */
    atomic_int_fast64_t busy_since; /* outcome.c: ms the running call began, 0: idle */
    atomic_bool transient;          /* outcome.c: its latest call said RETRY */
    atomic_bool unavailable;        /* outcome.c: ... or UNAVAILABLE */
    int down_tries;                 /* outcome.c: calls in a row that found it so */
    unsigned rnd;
    bool left;   /* under life_mtx: left running by a stop */
    bool exited; /* under life_mtx: its thread is done with the consumer */
} bl_worker_t;

/** The workers (worker.c), and what their calls found (outcome.c). */
typedef struct bl_workers {
    bl_worker_t *w; /* settings.nworkers of them */
    /* outcome.c: whether the handler can run at all, and its last transient
     * failure, for readiness. */
    atomic_int unavailable;   /* workers whose handler is unavailable */
    atomic_int_fast64_t unavailable_since_ms;
    pthread_mutex_t why_mtx;
    char unavailable_reason[256], last_transient[256]; /* under why_mtx */
    /* worker.c: the stop. */
    pthread_mutex_t life_mtx; /* the next two, and each worker's left/exited */
    int left_running;     /* workers left running by a stop */
    bool destroy_pending; /* destroyed while some were: the last one frees */
    void (*free_consumer)(struct ballast_consumer_s *c); /* consumer.c's */
    int abandoned_calls;  /* handler calls still running when the drain ended */
} bl_workers_t;

/** dispatch.c; poll thread. */
typedef struct bl_dispatch {
    bl_queue_t *staged; /* per worker: polled, not yet handed over */
    size_t nstaged;
    unsigned round_robin;
    bl_backpressure_t bp;
    bool draining;        /* a stop: every partition paused */
    size_t tier_waiting;  /* partitions waiting for a retry tier's due time */
    bl_pause_why_t applied; /* the reasons sync_pause() last applied */
} bl_dispatch_t;

/** status.c: the poll thread publishes a snapshot of its partitions about
 *  once a second, with the in-flight totals of the same moment, and adds a
 *  history frame every BL_HISTORY_INTERVAL_MS; readers on other threads
 *  copy them under mtx. */
typedef struct bl_status {
    pthread_mutex_t mtx;
    bl_part_view_t *snapshot;
    size_t count;
    uint64_t inflight, inflight_bytes, revoked;
    bl_history_t *history; /* NULL until the first snapshot */
    int64_t next_snapshot_ms;
    int64_t progress_ms;   /* the progress line's (poll thread) */
    uint64_t progress_processed;
} bl_status_t;

struct ballast_consumer_s {
    ballast_conf_t *conf; /* our copy */
    bl_logger_t log;
    bl_settings_t set;
    rd_kafka_t *rk;       /* the consumer handle (poll thread) */
    rd_kafka_t *producer; /* NULL when nothing is produced; ktxn.c replaces
                             it after a transaction's unknown outcome */
    bl_run_t run;
    bl_stats_t stats;
    bl_done_t done;
    bl_clients_t clients;
    bl_parts_t parts;
    bl_emit_t emit;
    bl_commit_t commit;
    bl_ktxn_t ktxn;
    bl_txnwatch_t txnwatch;
    bl_dbtxn_t dbtxn;
    bl_breaker_t breaker;
    bl_workers_t workers;
    bl_dispatch_t dispatch;
    bl_status_t status;
};

/* ---- runtime.c --------------------------------------------------------------- */

/** Records the first fatal error (takes @p err); later ones are logged.
 *  Any thread. */
void bl_set_fatal(ballast_consumer_t *c, ballast_error_t *err);
/** True once a stop was requested or a fatal error recorded. Any thread. */
bool bl_stopping(const ballast_consumer_t *c);
/** Takes the fatal error (NULL: none); the caller owns it. */
ballast_error_t *bl_take_fatal(ballast_consumer_t *c);

/** Frees every message of @p q (destruction). */
void bl_queue_free(bl_queue_t *q);

/** Hands @p q's messages back to the poll thread (a worker). */
void bl_done_put(ballast_consumer_t *c, bl_queue_t *q);
/** Takes every message handed back (poll thread). */
void bl_done_take(ballast_consumer_t *c, bl_queue_t *out);
/** Waits up to @p ms for messages to be handed back (poll thread). */
void bl_done_wait(ballast_consumer_t *c, int ms);

#endif
