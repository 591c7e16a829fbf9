/*
 * consumer.c - the consumer runtime: one poll thread, N handler workers.
 *
 * Design
 * ------
 * The poll thread (the caller of ballast_consumer_run) is the only thread
 * that talks to the consumer handle and the only one that touches partition
 * state and offset trackers. It polls, wraps each message, records its
 * offset in the partition's tracker, and stages it for a worker. Staged
 * messages are handed over in chunks so that a fast pipeline takes one lock
 * per chunk, not per message.
 *
 * Workers run the handler (with blocking retries and back-off), produce any
 * emitted or dead-letter records, and hand finished messages back on the
 * completion list. The poll thread then marks them finished in the tracker;
 * a message with records counts as finished only when the producer's
 * delivery report for each record arrived (delivery reports are served on
 * the poll thread too, by polling the producer).
 *
 * At-least-once: offsets are stored (rd_kafka_offsets_store) only up to the
 * tracker's committable offset, librdkafka's auto-commit commits stored
 * offsets, and explicit synchronous commits happen on revoke and shutdown.
 *
 * The poll thread never blocks on a handler: long handlers, retries and
 * backpressure only pause partitions, and polling goes on, so the member is
 * never evicted for exceeding max.poll.interval.ms.
 *
 * Where to extend: routing of messages to workers is route_worker();
 * what happens to a finished message is finish_outcome(); partition
 * lifecycle is on_assign()/on_revoke().
 */
#include "backoff.h"
#include "handlers/handlers.h"
#include "internal.h"
#include "message.h"
#include "observe.h"
#include "producer.h"
#include "tracker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STAGE_CHUNK 256      /* messages polled before handing them over */
#define WORKER_TAKE_MAX 256  /* messages a worker takes per lock in message mode */
#define POLL_IDLE_MS 100
#define POLL_BUSY_MS 10

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
    size_t inflight;      /* messages of this partition not yet retired */
    bool paused;          /* paused by ballast (only those are resumed) */
    bool orphan;          /* no longer assigned: freed when inflight is 0 */
    int worker;           /* the worker for ordering = partition */
    int64_t committed;    /* last offset the broker confirmed, -1: none */
    int64_t last_ts;      /* timestamp of the last message received */
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
    bl_queue_t staged; /* poll thread only: not yet handed over */
    unsigned rnd;
} bl_worker_t;

typedef enum { ORDER_PARTITION, ORDER_KEY, ORDER_NONE } ordering_t;

struct ballast_consumer_s {
    ballast_conf_t *conf;
    bl_logger_t log;
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkqu;
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
    int64_t max_poll_interval_ms;
    int64_t started_ms;

    /* Observability: the poll thread publishes a snapshot of its partitions
     * about once a second; readers on other threads copy it under obs_mtx. */
    pthread_mutex_t obs_mtx;
    bl_part_view_t *snapshot;
    size_t snapshot_count;
    int64_t next_snapshot_ms;
    char last_transient[256]; /* guarded by obs_mtx */
    atomic_bool transient;     /* the latest handler call said RETRY */
    atomic_int_fast64_t last_poll_ms;
    atomic_int running;        /* 1 while ballast_consumer_run polls */
    bl_histogram_t latency;

    /* Poll thread only. */
    bl_part_t *parts, *orphans, *last_part;
    size_t inflight, staged;
    uint64_t inflight_bytes;
    bool backpressured, offsets_dirty, ran;

    /* While starting, librdkafka's complaints are summed up by the start-up
     * error instead of being logged one by one. */
    atomic_bool starting;
    pthread_mutex_t start_mtx;
    char start_reason[256];

    /* Completion list: workers append, the poll thread takes. */
    pthread_mutex_t done_mtx;
    pthread_cond_t done_cond;
    bl_queue_t done;
    atomic_bool done_ready;

    volatile sig_atomic_t stop_requested; /* set by ballast_consumer_stop() */
    atomic_bool abandon; /* drain timed out: workers stop retrying */
    atomic_bool failed;  /* a fatal error is recorded */
    pthread_mutex_t err_mtx;
    ballast_error_t *fatal;

    struct {
        atomic_uint_fast64_t consumed, processed_ok, retried, failed,
            dead_lettered, emitted, commits, commit_errors, rebalances,
            paused_partitions;
    } stats;
    atomic_uint_fast64_t inflight_pub, inflight_bytes_pub;
};

/* ---- small helpers ------------------------------------------------------ */

static void queue_push(bl_queue_t *q, bl_msg_t *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
}

static void queue_append(bl_queue_t *q, bl_queue_t *more)
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

/* Records the first fatal error; later ones are logged only. Any thread. */
static void set_fatal(ballast_consumer_t *c, ballast_error_t *err)
{
    pthread_mutex_lock(&c->err_mtx);
    if (!c->fatal) {
        c->fatal = err;
        err = NULL;
    }
    pthread_mutex_unlock(&c->err_mtx);
    if (err) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "%s", ballast_error_message(err));
        ballast_error_destroy(err);
    }
    atomic_store(&c->failed, true);
}

static bool stopping(const ballast_consumer_t *c)
{
    return c->stop_requested || atomic_load(&c->failed);
}

static uint32_t fnv1a(const void *p, size_t len, uint32_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

/* ---- partitions --------------------------------------------------------- */

static bl_part_t *part_find(ballast_consumer_t *c, const char *topic,
                            int32_t partition)
{
    bl_part_t *p = c->last_part;

    if (p && p->partition == partition && !strcmp(p->topic, topic))
        return p;
    for (p = c->parts; p; p = p->next)
        if (p->partition == partition && !strcmp(p->topic, topic))
            return c->last_part = p;
    return NULL;
}

static void part_free(bl_part_t *p)
{
    bl_tracker_free(&p->tracker);
    free(p->topic);
    free(p);
}

static bl_part_t *part_new(ballast_consumer_t *c, const char *topic,
                           int32_t partition)
{
    bl_part_t *p = calloc(1, sizeof(*p));

    if (!p || !(p->topic = bl_strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->stored = -1;
    p->committed = -1;
    p->last_ts = -1;
    bl_tracker_init(&p->tracker);
    atomic_init(&p->revoked, false);
    p->worker = (int)(fnv1a(&partition, sizeof(partition),
                            fnv1a(topic, strlen(topic), 2166136261u)) %
                      (uint32_t)c->nworkers);
    return p;
}

/* Detaches @p p from the assignment; frees it once nothing refers to it. */
static void part_retire(ballast_consumer_t *c, bl_part_t *p)
{
    bl_part_t **pp;

    for (pp = &c->parts; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (c->last_part == p)
        c->last_part = NULL;
    atomic_store(&p->revoked, true);
    if (p->inflight == 0) {
        part_free(p);
    } else {
        p->orphan = true;
        p->next = c->orphans;
        c->orphans = p;
    }
}

static void orphan_release(ballast_consumer_t *c, bl_part_t *p)
{
    for (bl_part_t **pp = &c->orphans; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            part_free(p);
            return;
        }
    }
}

/* ---- finishing messages (poll thread) ----------------------------------- */

/* A message is retired when its handler finished and every record it
 * produced was acknowledged: only then may its offset count as done. */
static void msg_retire(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_part_t *p = m->part;

    if (m->fate == BL_FATE_DONE && !p->orphan) {
        bl_tracker_done(&p->tracker, m->seq);
        c->offsets_dirty = true;
    }
    p->inflight--;
    c->inflight--;
    c->inflight_bytes -= m->bytes;
    bl_message_clear(m);
    free(m);
    if (p->orphan && p->inflight == 0)
        orphan_release(c, p);
}

static void msg_release_ref(ballast_consumer_t *c, bl_msg_t *m)
{
    if (atomic_fetch_sub(&m->pending_emits, 1) == 1)
        msg_retire(c, m);
}

static void handle_completions(ballast_consumer_t *c)
{
    bl_queue_t done;

    if (!atomic_load(&c->done_ready))
        return;
    pthread_mutex_lock(&c->done_mtx);
    done = c->done;
    memset(&c->done, 0, sizeof(c->done));
    atomic_store(&c->done_ready, false);
    pthread_mutex_unlock(&c->done_mtx);
    for (bl_msg_t *m = done.head, *next; m; m = next) {
        next = m->next;
        msg_release_ref(c, m);
    }
}

/* Delivery report of an emitted or dead-letter record (poll thread). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                        void *opaque)
{
    ballast_consumer_t *c = opaque;
    bl_msg_t *m = rkm->_private;

    (void)rk;
    if (!m)
        return;
    if (rkm->err) {
        m->fate = BL_FATE_FAILED;
        set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                  "topic %s: delivery of a record for %s [%d] "
                                  "offset %lld failed: %s",
                                  rd_kafka_topic_name(rkm->rkt), m->topic,
                                  (int)m->partition, (long long)m->offset,
                                  rd_kafka_err2str(rkm->err)));
    } else if (m->result.error && c->dlq_topic &&
               !strcmp(rd_kafka_topic_name(rkm->rkt), c->dlq_topic)) {
        atomic_fetch_add(&c->stats.dead_lettered, 1);
    } else {
        atomic_fetch_add(&c->stats.emitted, 1);
    }
    msg_release_ref(c, m);
}

static void serve_producer(ballast_consumer_t *c)
{
    if (c->producer)
        rd_kafka_poll(c->producer, 0);
}

/* Stores the committable offset of every partition that advanced. */
static void store_offsets(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;

    if (!c->offsets_dirty)
        return;
    c->offsets_dirty = false;
    list = rd_kafka_topic_partition_list_new(8);
    for (bl_part_t *p = c->parts; p; p = p->next) {
        int64_t next = bl_tracker_committable(&p->tracker);
        if (next > p->stored) {
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)
                ->offset = next;
            p->stored = next;
        }
    }
    if (list->cnt && (err = rd_kafka_offsets_store(c->rk, list)))
        bl_log(&c->log, BALLAST_LOG_WARN, "storing offsets failed: %s",
               rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---- backpressure ------------------------------------------------------- */

static void set_paused(ballast_consumer_t *c, bool pause)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);

    for (bl_part_t *p = c->parts; p; p = p->next) {
        if (p->paused != pause) {
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
            p->paused = pause;
        }
    }
    if (list->cnt) {
        if (pause)
            rd_kafka_pause_partitions(c->rk, list);
        else
            rd_kafka_resume_partitions(c->rk, list);
    }
    atomic_store(&c->stats.paused_partitions, 0);
    for (bl_part_t *p = c->parts; p; p = p->next)
        if (p->paused)
            atomic_fetch_add(&c->stats.paused_partitions, 1);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Pauses at the high-water marks and resumes at half of them, so that
 * partitions do not flap on every message. */
static void apply_backpressure(ballast_consumer_t *c)
{
    bool over = c->inflight >= c->max_inflight ||
                c->inflight_bytes >= c->max_inflight_bytes;
    bool under = c->inflight <= c->max_inflight / 2 &&
                 c->inflight_bytes <= c->max_inflight_bytes / 2;

    atomic_store(&c->inflight_pub, c->inflight);
    atomic_store(&c->inflight_bytes_pub, c->inflight_bytes);
    if (!c->backpressured && over) {
        c->backpressured = true;
        set_paused(c, true);
    } else if (c->backpressured && under) {
        c->backpressured = false;
        set_paused(c, false);
    }
}

/* ---- dispatch (poll thread) --------------------------------------------- */

static int route_worker(ballast_consumer_t *c, const bl_msg_t *m)
{
    if (c->nworkers == 1)
        return 0;
    switch (c->ordering) {
    case ORDER_KEY:
        if (m->key)
            return (int)(fnv1a(m->key, m->key_len, 2166136261u) %
                         (uint32_t)c->nworkers);
        return m->part->worker;
    case ORDER_NONE:
        return (int)(c->round_robin++ % (unsigned)c->nworkers);
    case ORDER_PARTITION:
    default:
        return m->part->worker;
    }
}

static void flush_staged(ballast_consumer_t *c)
{
    if (!c->staged)
        return;
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (!w->staged.len)
            continue;
        pthread_mutex_lock(&w->mtx);
        queue_append(&w->queue, &w->staged);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mtx);
    }
    c->staged = 0;
}

static void accept_message(ballast_consumer_t *c, rd_kafka_message_t *rkm)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    bl_part_t *p = part_find(c, topic, rkm->partition);
    bl_msg_t *m;

    if (!p || atomic_load(&p->revoked)) {
        /* Not ours (any more): the next owner reads it from its offset. */
        rd_kafka_message_destroy(rkm);
        return;
    }
    m = malloc(sizeof(*m));
    if (!m) {
        rd_kafka_message_destroy(rkm);
        set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                  "out of memory receiving a message"));
        return;
    }
    bl_message_from_rkm(m, rkm);
    if (bl_tracker_add_ts(&p->tracker, m->offset, m->timestamp, &m->seq)) {
        /* An offset at or below one already received: a rewind we did not
         * ask for. Handling it again would break per-partition order. */
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%s [%d]: offset %lld received again; ignored", topic,
               (int)rkm->partition, (long long)m->offset);
        bl_message_clear(m);
        free(m);
        return;
    }
    m->part = p;
    p->last_ts = m->timestamp;
    atomic_init(&m->pending_emits, 1);
    p->inflight++;
    c->inflight++;
    c->inflight_bytes += m->bytes;
    atomic_fetch_add(&c->stats.consumed, 1);
    queue_push(&c->workers[route_worker(c, m)].staged, m);
    c->staged++;
}

/* ---- workers ------------------------------------------------------------ */

/* Takes the next messages for a worker; blocks while there are none.
 * @returns false when the worker should exit. */
static bool worker_take(bl_worker_t *w, bl_queue_t *out)
{
    ballast_consumer_t *c = w->cons;
    size_t want = c->batch_mode ? c->batch_max : WORKER_TAKE_MAX;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->mtx);
    while (!w->queue.len && !w->quit)
        pthread_cond_wait(&w->cond, &w->mtx);
    if (c->batch_mode && w->queue.len < want && !w->quit && c->batch_ms > 0) {
        /* Let the batch fill for up to batch.max.ms. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += c->batch_ms / 1000;
        deadline.tv_nsec += (c->batch_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (w->queue.len < want && !w->quit && !stopping(c) &&
               pthread_cond_timedwait(&w->cond, &w->mtx, &deadline) != ETIMEDOUT)
            ;
    }
    while (w->queue.head && out->len < want) {
        bl_msg_t *m = w->queue.head;
        w->queue.head = m->next;
        if (!w->queue.head)
            w->queue.tail = NULL;
        w->queue.len--;
        queue_push(out, m);
    }
    pthread_mutex_unlock(&w->mtx);
    return out->len > 0 || !w->quit;
}

/* Waits @p ms unless the consumer abandons its work first.
 * @returns false when abandoned. */
static bool worker_sleep(bl_worker_t *w, int64_t ms)
{
    int64_t until = bl_now_ms() + ms;
    ballast_consumer_t *c = w->cons;

    pthread_mutex_lock(&w->mtx);
    while (!atomic_load(&c->abandon) && !w->quit) {
        int64_t left = until - bl_now_ms();
        struct timespec ts;
        if (left <= 0)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->mtx, &ts);
    }
    pthread_mutex_unlock(&w->mtx);
    return !atomic_load(&c->abandon);
}

static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n);

/* Runs the handler once over @p msgs, timing it for the latency histogram
 * and the stuck-handler watchdog, and noting transient failures for
 * readiness. */
static void call_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    int64_t start = bl_now_ms();
    struct timespec t0, t1;
    int64_t micros;
    bool transient = false;

    atomic_store(&w->busy_since, start ? start : 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_handler(w, msgs, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_store(&w->busy_since, 0);
    micros = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
             (t1.tv_nsec - t0.tv_nsec) / 1000;
    for (size_t i = 0; i < n; i++) {
        bl_histogram_observe(&c->latency, micros / (int64_t)n);
        if (msgs[i]->outcome == BALLAST_OUTCOME_RETRY && !transient) {
            transient = true;
            pthread_mutex_lock(&c->obs_mtx);
            bl_fmt(c->last_transient, sizeof(c->last_transient), "%s",
                   msgs[i]->result.error ? msgs[i]->result.error : "retry");
            pthread_mutex_unlock(&c->obs_mtx);
        }
    }
    atomic_store(&c->transient, transient);
}

/* Runs the handler once over @p msgs (one message, or a batch). */
static void run_handler(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    const ballast_handler_t *h = w->cons->handler;

    for (size_t i = 0; i < n; i++) {
        bl_result_reset(&msgs[i]->result);
        msgs[i]->outcome = BALLAST_OUTCOME_RETRY;
    }
    if (n > 1 && h->handle_batch) {
        ballast_outcome_t stack_out[64], *outcomes = stack_out;
        ballast_result_t *stack_res[64], **results = stack_res;
        if (n > 64) {
            outcomes = malloc(n * sizeof(*outcomes));
            results = malloc(n * sizeof(*results));
        }
        if (!outcomes || !results) {
            if (outcomes != stack_out)
                free(outcomes);
            if (results != stack_res)
                free(results);
            for (size_t i = 0; i < n; i++)
                ballast_result_set_error(&msgs[i]->result, "out of memory");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            results[i] = &msgs[i]->result;
            outcomes[i] = BALLAST_OUTCOME_RETRY;
        }
        h->handle_batch(w->state, (const ballast_message_t *const *)msgs,
                        results, n, outcomes);
        for (size_t i = 0; i < n; i++)
            msgs[i]->outcome = outcomes[i];
        if (outcomes != stack_out) {
            free(outcomes);
            free(results);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        msgs[i]->outcome = h->handle(w->state, msgs[i], &msgs[i]->result);
}

/* Produces the records of a finished message. @returns false when the
 * producer refused one for good (the message then fails). */
static bool produce_records(ballast_consumer_t *c, bl_msg_t *m)
{
    size_t n = m->result.record_count;

    atomic_store(&m->pending_emits, (int)n + 1);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err;
        while ((err = bl_produce_record(c->producer, &m->result.records[i],
                                        c->output_topic, m)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* The poll thread serves delivery reports and frees room. */
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (err) {
            atomic_fetch_sub(&m->pending_emits, (int)(n - i));
            m->fate = BL_FATE_FAILED;
            set_fatal(c, bl_error_new(
                             BALLAST_ERR_KAFKA, false, false,
                             "topic %s: cannot produce a record for %s [%d] "
                             "offset %lld: %s",
                             m->result.records[i].topic ? m->result.records[i].topic
                                                        : c->output_topic,
                             m->topic, (int)m->partition, (long long)m->offset,
                             rd_kafka_err2str(err)));
            return false;
        }
    }
    return true;
}

/* Decides what a final outcome means: commit, dead-letter, or stop. */
static void finish_outcome(bl_worker_t *w, bl_msg_t *m)
{
    ballast_consumer_t *c = w->cons;
    const char *why = m->result.error ? m->result.error : "no reason given";

    if (m->outcome == BALLAST_OUTCOME_OK) {
        atomic_fetch_add(&c->stats.processed_ok, 1);
        if (m->result.record_count && !c->producer) {
            m->fate = BL_FATE_FAILED;
            set_fatal(c, bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                      "handler emitted records but no "
                                      "producer is configured"));
            return;
        }
        if (m->result.record_count)
            produce_records(c, m);
        return;
    }
    atomic_fetch_add(&c->stats.failed, 1);
    if (c->dlq_topic) {
        char *error = bl_strdup(why);
        bl_result_reset(&m->result);
        m->result.error = error;
        if (!error || bl_dlq_record(m, c->dlq_topic, c->group, error,
                                    m->attempt, &m->result)) {
            m->fate = BL_FATE_FAILED;
            set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                      "out of memory building a dead-letter "
                                      "record"));
            return;
        }
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%s [%d] offset %lld: dead-lettered to %s after %d attempt(s): %s",
               m->topic, (int)m->partition, (long long)m->offset, c->dlq_topic,
               m->attempt, error);
        produce_records(c, m);
        return;
    }
    m->fate = BL_FATE_FAILED;
    set_fatal(c, bl_error_new(BALLAST_ERR_HANDLER, false, false,
                              "%s [%d] offset %lld: handler failed %s after %d "
                              "attempt(s): %s; no dlq.topic is configured, so "
                              "the pipeline stops here and the offset stays "
                              "uncommitted",
                              m->topic, (int)m->partition, (long long)m->offset,
                              m->outcome == BALLAST_OUTCOME_FAIL ? "permanently"
                                                                  : "repeatedly",
                              m->attempt, why));
}

/* Handles a group of messages: drops revoked ones, runs the handler with
 * blocking retries, and settles each message. */
static void worker_process(bl_worker_t *w, bl_queue_t *batch)
{
    ballast_consumer_t *c = w->cons;
    bl_msg_t *stack[WORKER_TAKE_MAX], **todo = stack;
    size_t n = 0;

    if (batch->len > WORKER_TAKE_MAX && !(todo = malloc(batch->len * sizeof(*todo)))) {
        for (bl_msg_t *m = batch->head; m; m = m->next)
            m->fate = BL_FATE_DROPPED;
        return;
    }
    for (bl_msg_t *m = batch->head; m; m = m->next) {
        if (atomic_load(&m->part->revoked) || atomic_load(&c->abandon) ||
            atomic_load(&c->failed))
            m->fate = BL_FATE_DROPPED;
        else
            todo[n++] = m;
    }
    /* In message mode each message runs alone; in batch mode together. */
    for (size_t start = 0; start < n;) {
        size_t count = c->batch_mode ? n - start : 1, left;
        bl_msg_t **group = todo + start;

        if (atomic_load(&c->failed) || atomic_load(&c->abandon)) {
            /* Nothing after a stopping failure may run: order matters. */
            for (size_t i = start; i < n; i++)
                todo[i]->fate = BL_FATE_DROPPED;
            break;
        }

        for (;;) {
            call_handler(w, group, count);
            left = 0;
            for (size_t i = 0; i < count; i++) {
                bl_msg_t *m = group[i];
                if (m->outcome == BALLAST_OUTCOME_RETRY &&
                    m->attempt < c->max_attempts)
                    group[left++] = m; /* retry these, in order */
                else
                    finish_outcome(w, m);
            }
            if (!left)
                break;
            atomic_fetch_add(&c->stats.retried, left);
            bl_log(&c->log, BALLAST_LOG_INFO,
                   "%s [%d] offset %lld: retry %d of %d: %s", group[0]->topic,
                   (int)group[0]->partition, (long long)group[0]->offset,
                   group[0]->attempt, c->max_attempts - 1,
                   group[0]->result.error ? group[0]->result.error : "retry");
            if (!worker_sleep(w, bl_backoff_delay(&c->backoff, group[0]->attempt,
                                                  rand_r(&w->rnd) / (RAND_MAX + 1.0)))) {
                for (size_t i = 0; i < left; i++)
                    group[i]->fate = BL_FATE_DROPPED;
                break;
            }
            for (size_t i = 0; i < left; i++)
                group[i]->attempt++;
            count = left;
        }
        start += c->batch_mode ? n - start : 1;
    }
    if (todo != stack)
        free(todo);
}

static void *worker_main(void *arg)
{
    bl_worker_t *w = arg;
    ballast_consumer_t *c = w->cons;
    bl_queue_t batch;

    while (worker_take(w, &batch)) {
        if (!batch.len)
            continue;
        worker_process(w, &batch);
        pthread_mutex_lock(&c->done_mtx);
        queue_append(&c->done, &batch);
        atomic_store(&c->done_ready, true);
        pthread_cond_broadcast(&c->done_cond);
        pthread_mutex_unlock(&c->done_mtx);
    }
    return NULL;
}

/* ---- rebalances (poll thread, inside rd_kafka_consumer_poll) ------------- */

static void notify_rebalance(ballast_consumer_t *c, ballast_rebalance_event_t ev,
                             const rd_kafka_topic_partition_list_t *list)
{
    ballast_partition_t *parts;

    if (!c->rebalance_cb)
        return;
    parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    if (!parts)
        return;
    for (int i = 0; i < list->cnt; i++) {
        parts[i].topic = list->elems[i].topic;
        parts[i].partition = list->elems[i].partition;
    }
    c->rebalance_cb(ev, parts, (size_t)list->cnt, c->rebalance_opaque);
    free(parts);
}

static bool cooperative(ballast_consumer_t *c)
{
    const char *proto = rd_kafka_rebalance_protocol(c->rk);
    return proto && !strcmp(proto, "COOPERATIVE");
}

/* Learns the group's committed offsets of newly assigned partitions, so
 * that lag is known even before ballast commits anything. */
static void load_committed(ballast_consumer_t *c,
                           const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(list);

    if (!rd_kafka_committed(c->rk, copy, 5000)) {
        for (int i = 0; i < copy->cnt; i++) {
            bl_part_t *p = part_find(c, copy->elems[i].topic, copy->elems[i].partition);
            if (p && copy->elems[i].offset >= 0)
                p->committed = copy->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(copy);
}

static void on_assign(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        bl_part_t *p;
        if (part_find(c, tp->topic, tp->partition))
            continue;
        if (!(p = part_new(c, tp->topic, tp->partition))) {
            set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                      "out of memory on assignment"));
            return;
        }
        /* Partitions assigned while backpressured start paused. */
        p->paused = c->backpressured;
        p->next = c->parts;
        c->parts = p;
    }
    if (cooperative(c))
        error = rd_kafka_incremental_assign(c->rk, list);
    else
        err = rd_kafka_assign(c->rk, list);
    if (error) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "incremental assign failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (err) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "assign failed: %s",
               rd_kafka_err2str(err));
    }
    load_committed(c, list);
    if (c->backpressured) {
        c->backpressured = false; /* re-evaluated below with the new parts */
        apply_backpressure(c);
    }
    atomic_fetch_add(&c->stats.rebalances, 1);
    bl_log(&c->log, BALLAST_LOG_INFO, "assigned %d partition(s)", list->cnt);
    notify_rebalance(c, BALLAST_PARTITIONS_ASSIGNED, list);
}

/* Waits until no message of a revoked partition is in flight, or the drain
 * deadline passes; serves completions and delivery reports meanwhile. */
static void drain_parts(ballast_consumer_t *c, bl_part_t **parts, size_t n,
                        int64_t deadline)
{
    for (;;) {
        bool busy = false;
        atomic_store(&c->last_poll_ms, bl_now_ms());
        handle_completions(c);
        serve_producer(c);
        for (size_t i = 0; i < n; i++)
            if (parts[i] && parts[i]->inflight)
                busy = true;
        if (!busy || bl_now_ms() >= deadline)
            return;
        pthread_mutex_lock(&c->done_mtx);
        if (!atomic_load(&c->done_ready)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 5 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->done_cond, &c->done_mtx, &ts);
        }
        pthread_mutex_unlock(&c->done_mtx);
    }
}

/* Commits the committable offsets of @p parts synchronously. */
static void commit_parts(ballast_consumer_t *c, bl_part_t **parts, size_t n)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_resp_err_t err;

    for (size_t i = 0; i < n; i++) {
        bl_part_t *p = parts[i];
        int64_t next;
        if (!p || (next = bl_tracker_committable(&p->tracker)) < 0)
            continue;
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = next;
        p->stored = next;
    }
    if (list->cnt) {
        /* Counted in on_commit(), which librdkafka calls for every commit. */
        err = rd_kafka_commit(c->rk, list, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            bl_log(&c->log, BALLAST_LOG_WARN, "commit failed: %s",
                   rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void on_revoke(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                      bool lost)
{
    bl_part_t **parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    rd_kafka_error_t *error = NULL;

    flush_staged(c);
    for (int i = 0; parts && i < list->cnt; i++) {
        parts[i] = part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (parts[i])
            atomic_store(&parts[i]->revoked, true);
    }
    if (parts && !lost) {
        /* At shutdown the drain already happened (and may have timed out). */
        drain_parts(c, parts, (size_t)list->cnt,
                    atomic_load(&c->abandon) ? 0
                                             : bl_now_ms() + c->shutdown_timeout_ms);
        commit_parts(c, parts, (size_t)list->cnt);
    }
    for (int i = 0; parts && i < list->cnt; i++)
        if (parts[i])
            part_retire(c, parts[i]);
    free(parts);
    if (cooperative(c))
        error = rd_kafka_incremental_unassign(c->rk, list);
    else
        rd_kafka_assign(c->rk, NULL);
    if (error) {
        bl_log(&c->log, BALLAST_LOG_ERROR, "incremental unassign failed: %s",
               rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    atomic_fetch_add(&c->stats.rebalances, 1);
    bl_log(&c->log, lost ? BALLAST_LOG_WARN : BALLAST_LOG_INFO,
           "%s %d partition(s)", lost ? "lost" : "revoked", list->cnt);
    notify_rebalance(c, lost ? BALLAST_PARTITIONS_LOST : BALLAST_PARTITIONS_REVOKED,
                     list);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque)
{
    ballast_consumer_t *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(c, list);
    else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        on_revoke(c, list, rd_kafka_assignment_lost(rk));
    else {
        bl_log(&c->log, BALLAST_LOG_ERROR, "rebalance failed: %s",
               rd_kafka_err2str(err));
        on_revoke(c, list, true);
    }
}

/* ---- librdkafka callbacks ------------------------------------------------ */

/* Result of every commit, automatic or explicit (poll thread). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    ballast_consumer_t *c = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return; /* nothing was stored: not a commit */
    if (err) {
        atomic_fetch_add(&c->stats.commit_errors, 1);
        bl_log(&c->log, BALLAST_LOG_WARN, "offset commit failed: %s",
               rd_kafka_err2str(err));
        return;
    }
    atomic_fetch_add(&c->stats.commits, 1);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        bl_part_t *p = part_find(c, tp->topic, tp->partition);
        if (p && !tp->err && tp->offset >= 0 && tp->offset > p->committed)
            p->committed = tp->offset;
    }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    ballast_consumer_t *c = rd_kafka_opaque(rk);
    /* librdkafka logs lost connections at LOG_ERR (3); they are transient
     * and retried, so they are warnings here. */
    ballast_log_level_t lv = level <= 2   ? BALLAST_LOG_ERROR
                             : level <= 4 ? BALLAST_LOG_WARN
                             : level <= 6 ? BALLAST_LOG_INFO
                                          : BALLAST_LOG_DEBUG;
    if (!c)
        return;
    if (atomic_load(&c->starting) && lv < BALLAST_LOG_DEBUG)
        lv = BALLAST_LOG_DEBUG;
    bl_log(&c->log, lv, "librdkafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ballast_consumer_t *c = opaque;
    char fatal[512];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, true,
                                  "kafka: fatal error: %s", fatal));
        return;
    }
    if (atomic_load(&c->starting)) {
        pthread_mutex_lock(&c->start_mtx);
        bl_fmt(c->start_reason, sizeof(c->start_reason), "%s", reason);
        pthread_mutex_unlock(&c->start_mtx);
        return;
    }
    bl_log(&c->log, BALLAST_LOG_WARN, "kafka: %s", reason);
}

/* ---- construction ------------------------------------------------------- */

/* librdkafka properties that only one client type understands; each is
 * kept away from the other so that librdkafka does not warn about it. */
static bool producer_only(const char *name)
{
    static const char *const names[] = {
        "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
        "batch.num.messages", "batch.size", "compression.codec",
        "compression.type", "compression.level", "enable.idempotence",
        "transactional.id", "transaction.timeout.ms", "message.timeout.ms",
        "delivery.timeout.ms", "queue.buffering.max.messages",
        "queue.buffering.max.kbytes", "retries", "message.send.max.retries",
        "retry.backoff.ms", "partitioner", "sticky.partitioning.linger.ms",
        "enable.gapless.guarantee", "request.timeout.ms", "dr_msg_cb"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

static bool consumer_only(const char *name)
{
    static const char *const names[] = {
        "group.id", "group.instance.id", "partition.assignment.strategy",
        "session.timeout.ms", "heartbeat.interval.ms", "group.protocol.type",
        "coordinator.query.interval.ms", "max.poll.interval.ms",
        "auto.commit.interval.ms", "queued.min.messages",
        "queued.max.messages.kbytes", "fetch.wait.max.ms",
        "fetch.message.max.bytes", "max.partition.fetch.bytes",
        "fetch.max.bytes", "fetch.min.bytes", "fetch.error.backoff.ms",
        "offset.store.method", "check.crcs", "allow.auto.create.topics",
        "auto.offset.reset", "consume.callback.max.messages"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

typedef struct conf_build {
    rd_kafka_conf_t *rkconf;
    bool producer;
    ballast_error_t *err;
} conf_build_t;

static void apply_kafka_prop(const char *name, const char *value, void *opaque)
{
    conf_build_t *b = opaque;
    char errstr[256];

    if (b->err || (b->producer ? consumer_only(name) : producer_only(name)))
        return;
    if (rd_kafka_conf_set(b->rkconf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        b->err = bl_error_new(BALLAST_ERR_CONFIG, false, false, "kafka.%s: %s",
                              name, errstr);
}

static ballast_error_t *set_prop(rd_kafka_conf_t *rkconf, const char *name,
                                 const char *value)
{
    char errstr[256];

    if (rd_kafka_conf_set(rkconf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "kafka.%s: %s",
                            name, errstr);
    return NULL;
}

static ballast_error_t *make_client(ballast_consumer_t *c, bool producer,
                                    rd_kafka_t **rkp)
{
    conf_build_t b = {rd_kafka_conf_new(), producer, NULL};
    char errstr[512];

    /* Reliable defaults first; the user's kafka.* keys may override them
     * (except the managed ones, which conf.c refuses). */
    if (!producer) {
        b.err = set_prop(b.rkconf, "auto.offset.reset", "earliest");
        if (!b.err)
            b.err = set_prop(b.rkconf, "enable.auto.offset.store", "false");
        if (!b.err)
            b.err = set_prop(b.rkconf, "enable.partition.eof", "false");
        if (!b.err)
            b.err = set_prop(b.rkconf, "enable.auto.commit", "true");
    } else {
        b.err = set_prop(b.rkconf, "enable.idempotence", "true");
    }
    if (!b.err)
        bl_conf_each_prefixed(c->conf, "kafka.", apply_kafka_prop, &b);
    if (b.err) {
        rd_kafka_conf_destroy(b.rkconf);
        return b.err;
    }
    rd_kafka_conf_set_opaque(b.rkconf, c);
    rd_kafka_conf_set_log_cb(b.rkconf, log_cb);
    rd_kafka_conf_set_error_cb(b.rkconf, error_cb);
    if (producer)
        rd_kafka_conf_set_dr_msg_cb(b.rkconf, on_delivery);
    else {
        rd_kafka_conf_set_rebalance_cb(b.rkconf, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(b.rkconf, on_commit);
    }
    *rkp = rd_kafka_new(producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER,
                        b.rkconf, errstr, sizeof(errstr));
    if (!*rkp) {
        rd_kafka_conf_destroy(b.rkconf);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka: cannot create the %s: %s",
                            producer ? "producer" : "consumer", errstr);
    }
    return NULL;
}

/* Splits `topics` into a librdkafka subscription list. */
static rd_kafka_topic_partition_list_t *topic_list(const char *topics)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    const char *s = topics;

    while (s && *s) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        char name[512];
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > s && (size_t)(end - s) < sizeof(name)) {
            memcpy(name, s, (size_t)(end - s));
            name[end - s] = '\0';
            rd_kafka_topic_partition_list_add(list, name, RD_KAFKA_PARTITION_UA);
        }
        s = comma ? comma + 1 : NULL;
    }
    return list;
}

/* Waits for the cluster's metadata and checks that every input topic (and
 * the output and dead-letter topics) exists. */
static ballast_error_t *check_cluster(ballast_consumer_t *c,
                                      const rd_kafka_topic_partition_list_t *topics)
{
    int64_t timeout = bl_conf_int(c->conf, "startup.timeout.ms");
    int64_t deadline = bl_now_ms() + timeout;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    const char *extra[2] = {c->output_topic, c->dlq_topic};
    const char *extra_keys[2] = {"output.topic", "dlq.topic"};

    for (;;) {
        int64_t left = deadline - bl_now_ms();
        err = rd_kafka_metadata(c->rk, 1, NULL, &md,
                                (int)(left < 100 ? 100 : left > 2000 ? 2000 : left));
        if (!err || bl_now_ms() >= deadline)
            break;
        if (err != RD_KAFKA_RESP_ERR__TRANSPORT &&
            err != RD_KAFKA_RESP_ERR__TIMED_OUT &&
            err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
            break;
        }
    }
    if (err) {
        ballast_error_t *e;
        pthread_mutex_lock(&c->start_mtx);
        e = bl_error_new(BALLAST_ERR_UNREACHABLE, true, false,
                         "kafka.bootstrap.servers: no broker reachable at "
                         "\"%s\" within %lld ms (%s)",
                         bl_conf_str(c->conf, "kafka.bootstrap.servers"),
                         (long long)timeout,
                         *c->start_reason ? c->start_reason : rd_kafka_err2str(err));
        pthread_mutex_unlock(&c->start_mtx);
        return e;
    }
    for (int i = 0; i < topics->cnt + 2; i++) {
        const char *name = i < topics->cnt ? topics->elems[i].topic : extra[i - topics->cnt];
        const char *key = i < topics->cnt ? "topics" : extra_keys[i - topics->cnt];
        bool found = false;
        if (!name || !*name || name[0] == '^')
            continue; /* regex subscriptions match what exists */
        for (int t = 0; t < md->topic_cnt; t++)
            if (!strcmp(md->topics[t].topic, name) && !md->topics[t].err)
                found = true;
        if (!found) {
            rd_kafka_metadata_destroy(md);
            return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                "%s: topic \"%s\" does not exist on the cluster",
                                key, name);
        }
    }
    rd_kafka_metadata_destroy(md);
    return NULL;
}

static ballast_error_t *start_handlers(ballast_consumer_t *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        ballast_handler_params_t params = {c->conf, i, c->nworkers, c->handler_opaque};
        char errbuf[512] = "";
        int rc = 0;

        if (c->handler->init)
            rc = c->handler->init(&w->state, &params, errbuf, sizeof(errbuf));
        if (rc) {
            ballast_err_code_t code = rc >= BALLAST_ERR_CONFIG && rc <= BALLAST_ERR_INTERNAL
                                          ? (ballast_err_code_t)rc
                                          : BALLAST_ERR_HANDLER;
            return bl_error_new(code, code == BALLAST_ERR_UNREACHABLE, false,
                                "handler %s: %s", c->handler->name,
                                *errbuf ? errbuf : "init failed");
        }
        w->state_ok = true;
    }
    return NULL;
}

static ballast_error_t *start_workers(ballast_consumer_t *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w))
            return bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                "cannot start worker thread %d", i);
        w->started = true;
    }
    return NULL;
}

static void read_settings(ballast_consumer_t *c)
{
    const char *ordering = bl_conf_str(c->conf, "ordering");

    c->log = bl_conf_logger(c->conf);
    c->group = bl_conf_str(c->conf, "kafka.group.id");
    c->output_topic = *bl_conf_str(c->conf, "output.topic")
                          ? bl_conf_str(c->conf, "output.topic")
                          : NULL;
    c->dlq_topic = *bl_conf_str(c->conf, "dlq.topic") ? bl_conf_str(c->conf, "dlq.topic")
                                                      : NULL;
    c->backoff.initial_ms = bl_conf_int(c->conf, "retry.backoff.initial.ms");
    c->backoff.max_ms = bl_conf_int(c->conf, "retry.backoff.max.ms");
    c->backoff.multiplier = bl_conf_double(c->conf, "retry.backoff.multiplier");
    c->backoff.jitter = bl_conf_double(c->conf, "retry.backoff.jitter");
    c->max_attempts = (int)bl_conf_int(c->conf, "retry.max.attempts");
    c->batch_mode = !strcmp(bl_conf_str(c->conf, "processing"), "batch");
    c->batch_max = (size_t)bl_conf_int(c->conf, "batch.max.messages");
    c->batch_ms = bl_conf_int(c->conf, "batch.max.ms");
    c->ordering = !strcmp(ordering, "key")    ? ORDER_KEY
                  : !strcmp(ordering, "none") ? ORDER_NONE
                                              : ORDER_PARTITION;
    c->nworkers = (int)bl_conf_int(c->conf, "concurrency");
    c->max_inflight = (size_t)bl_conf_int(c->conf, "max.inflight.messages");
    c->max_inflight_bytes = (uint64_t)bl_conf_int(c->conf, "max.inflight.bytes");
    c->shutdown_timeout_ms = bl_conf_int(c->conf, "shutdown.timeout.ms");
    c->handler_timeout_ms = bl_conf_int(c->conf, "handler.timeout.ms");
    c->max_poll_interval_ms = 300000;
    if (*bl_conf_str(c->conf, "kafka.max.poll.interval.ms"))
        c->max_poll_interval_ms = strtoll(bl_conf_str(c->conf, "kafka.max.poll.interval.ms"),
                                          NULL, 10);
    c->rebalance_cb = bl_conf_rebalance_cb(c->conf, &c->rebalance_opaque);
}

/* A producer is needed when the handler may emit or a DLQ is set. */
static bool needs_producer(const ballast_consumer_t *c)
{
    if (c->dlq_topic || c->output_topic)
        return true;
    return c->handler != &bl_handler_sqlite && c->handler != &bl_handler_postgres;
}

static ballast_error_t *consumer_start(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *topics;
    ballast_error_t *err;
    rd_kafka_resp_err_t kerr;

    if ((err = make_client(c, false, &c->rk)))
        return err;
    /* One queue for messages, rebalances, errors and commit results, all
     * served by rd_kafka_consumer_poll on the poll thread. */
    rd_kafka_poll_set_consumer(c->rk);
    c->rkqu = rd_kafka_queue_get_consumer(c->rk);
    if (needs_producer(c) && (err = make_client(c, true, &c->producer)))
        return err;
    topics = topic_list(bl_conf_str(c->conf, "topics"));
    err = check_cluster(c, topics);
    if (!err && (err = start_handlers(c)) == NULL &&
        (kerr = rd_kafka_subscribe(c->rk, topics)))
        err = bl_error_new(BALLAST_ERR_CONFIG, false, false,
                           "topics: cannot subscribe: %s", rd_kafka_err2str(kerr));
    rd_kafka_topic_partition_list_destroy(topics);
    if (!err)
        err = start_workers(c);
    return err;
}

ballast_error_t *ballast_consumer_new(const ballast_conf_t *conf,
                                      ballast_consumer_t **consp)
{
    ballast_consumer_t *c;
    ballast_error_t *err;

    *consp = NULL;
    if ((err = ballast_conf_validate(conf)))
        return err;
    if (!(c = calloc(1, sizeof(*c))) || !(c->conf = ballast_conf_dup(conf))) {
        free(c);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    pthread_mutex_init(&c->done_mtx, NULL);
    pthread_cond_init(&c->done_cond, NULL);
    pthread_mutex_init(&c->err_mtx, NULL);
    pthread_mutex_init(&c->start_mtx, NULL);
    pthread_mutex_init(&c->obs_mtx, NULL);
    c->started_ms = bl_now_ms();
    atomic_init(&c->starting, true);
    read_settings(c);
    c->handler = bl_conf_handler(c->conf, &c->handler_opaque);
    if (!c->handler)
        c->handler = bl_handler_by_name(bl_conf_str(c->conf, "handler"));
    c->workers = calloc((size_t)c->nworkers, sizeof(*c->workers));
    if (!c->workers) {
        ballast_consumer_destroy(c);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    for (int i = 0; i < c->nworkers; i++) {
        c->workers[i].cons = c;
        c->workers[i].index = i;
        c->workers[i].rnd = (unsigned)(bl_wall_ms() ^ (i * 7919));
        pthread_mutex_init(&c->workers[i].mtx, NULL);
        pthread_cond_init(&c->workers[i].cond, NULL);
    }
    if (!c->handler || (!c->handler->handle && !c->handler->handle_batch)) {
        ballast_consumer_destroy(c);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "handler: no usable handler");
    }
    if ((err = consumer_start(c))) {
        ballast_consumer_destroy(c);
        return err;
    }
    atomic_store(&c->starting, false);
    *consp = c;
    return NULL;
}

/* ---- running ------------------------------------------------------------ */

static void handle_consumer_error(ballast_consumer_t *c, rd_kafka_message_t *rkm)
{
    const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "-";

    switch (rkm->err) {
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        break;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
                                  "topic %s: %s", topic,
                                  rd_kafka_message_errstr(rkm)));
        break;
    default:
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: %s: %s", topic,
               rd_kafka_message_errstr(rkm));
        break;
    }
    rd_kafka_message_destroy(rkm);
}

static void settle(ballast_consumer_t *c)
{
    handle_completions(c);
    serve_producer(c);
    store_offsets(c);
}

/* Stops fetching, lets in-flight work finish for up to the drain timeout,
 * and commits what finished. */
static void drain_all(ballast_consumer_t *c)
{
    int64_t deadline = bl_now_ms() + c->shutdown_timeout_ms;
    size_t n = 0;
    bl_part_t **parts;

    flush_staged(c);
    set_paused(c, true);
    for (bl_part_t *p = c->parts; p; p = p->next)
        n++;
    parts = calloc(n + 1, sizeof(*parts));
    n = 0;
    for (bl_part_t *p = c->parts; parts && p; p = p->next)
        parts[n++] = p;
    /* After a fatal error workers drop what they have not started, so this
     * only waits for handlers already running. */
    if (parts)
        drain_parts(c, parts, n, deadline);
    if (c->inflight) {
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%zu message(s) still in flight at shutdown; they stay "
               "uncommitted and will be delivered again",
               c->inflight);
    }
    /* Nothing more should start; workers drop what they have queued. */
    atomic_store(&c->abandon, true);
    for (int i = 0; i < c->nworkers; i++) {
        pthread_mutex_lock(&c->workers[i].mtx);
        pthread_cond_broadcast(&c->workers[i].cond);
        pthread_mutex_unlock(&c->workers[i].mtx);
    }
    settle(c);
    if (parts)
        commit_parts(c, parts, n);
    free(parts);
}

static void stop_workers(ballast_consumer_t *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        pthread_mutex_lock(&w->mtx);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mtx);
    }
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (!w->started)
            continue;
        /* A handler stuck past the drain timeout cannot be joined safely
         * forever; give it a bounded grace and then leave it. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        if (pthread_timedjoin_np(w->thread, NULL, &ts)) {
            bl_log(&c->log, BALLAST_LOG_ERROR,
                   "worker %d did not stop (a handler is stuck); leaving it", i);
            pthread_detach(w->thread);
            w->state_ok = false; /* its state may be in use: never destroy it */
        }
        w->started = false;
    }
}

/* Age of the oldest message not yet committed, -1 when unknown. */
static int64_t part_lag_ms(const bl_part_t *p, int64_t lag, int64_t now_wall)
{
    int64_t ts;

    if (lag == 0)
        return 0;
    if ((ts = bl_tracker_head_timestamp(&p->tracker)) >= 0)
        return now_wall > ts ? now_wall - ts : 0;
    /* Nothing held: the next message is newer than the last one received,
     * so this over-estimates by at most the gap between the two. */
    if (p->last_ts >= 0 && lag > 0)
        return now_wall > p->last_ts ? now_wall - p->last_ts : 0;
    return -1;
}

/* Copies the partitions' state for readers on other threads (poll thread). */
static void publish_snapshot(ballast_consumer_t *c)
{
    size_t n = 0, i = 0;
    bl_part_view_t *views;
    int64_t now_wall = bl_wall_ms();

    for (bl_part_t *p = c->parts; p; p = p->next)
        n++;
    views = calloc(n + 1, sizeof(*views));
    if (!views)
        return;
    for (bl_part_t *p = c->parts; p; p = p->next, i++) {
        bl_part_view_t *v = &views[i];
        int64_t lo = -1, hi = -1;
        bl_fmt(v->topic, sizeof(v->topic), "%s", p->topic);
        v->partition = p->partition;
        v->committed = p->committed;
        v->inflight = p->inflight;
        v->paused = p->paused;
        if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) ||
            hi < 0)
            hi = -1;
        v->high_watermark = hi;
        v->lag = hi >= 0 && p->committed >= 0 ? (hi > p->committed ? hi - p->committed : 0)
                                              : -1;
        v->lag_ms = v->lag >= 0 ? part_lag_ms(p, v->lag, now_wall) : -1;
    }
    pthread_mutex_lock(&c->obs_mtx);
    free(c->snapshot);
    c->snapshot = views;
    c->snapshot_count = n;
    pthread_mutex_unlock(&c->obs_mtx);
}

ballast_error_t *ballast_consumer_run(ballast_consumer_t *c)
{
    ballast_error_t *err;

    if (c->ran)
        return bl_error_new(BALLAST_ERR_INTERNAL, false, false,
                            "ballast_consumer_run: already ran");
    c->ran = true;
    atomic_store(&c->running, 1);
    while (!stopping(c)) {
        rd_kafka_message_t *rkm;
        int64_t now = bl_now_ms();

        atomic_store(&c->last_poll_ms, now);
        if (now >= c->next_snapshot_ms) {
            publish_snapshot(c);
            c->next_snapshot_ms = now + 1000;
        }
        settle(c);
        apply_backpressure(c);
        rkm = rd_kafka_consumer_poll(c->rk, c->staged ? 0
                                            : c->backpressured ? POLL_BUSY_MS
                                                               : POLL_IDLE_MS);
        if (!rkm) {
            flush_staged(c);
            continue;
        }
        if (rkm->err) {
            handle_consumer_error(c, rkm);
            continue;
        }
        accept_message(c, rkm);
        if (c->staged >= STAGE_CHUNK)
            flush_staged(c);
    }
    drain_all(c);
    /* Leaving the group triggers a final revoke, which commits again. */
    rd_kafka_consumer_close(c->rk);
    stop_workers(c);
    settle(c);
    publish_snapshot(c);
    atomic_store(&c->running, 0);
    if (c->producer && rd_kafka_flush(c->producer, 10000))
        bl_log(&c->log, BALLAST_LOG_WARN, "producer: records still queued at exit");
    pthread_mutex_lock(&c->err_mtx);
    err = c->fatal;
    c->fatal = NULL;
    pthread_mutex_unlock(&c->err_mtx);
    return err;
}

void ballast_consumer_stop(ballast_consumer_t *c)
{
    if (c)
        c->stop_requested = 1;
}

void ballast_consumer_stats(const ballast_consumer_t *c, ballast_stats_t *stats,
                            size_t size)
{
    ballast_stats_t s;

    memset(&s, 0, sizeof(s));
    s.consumed = atomic_load(&c->stats.consumed);
    s.processed_ok = atomic_load(&c->stats.processed_ok);
    s.retried = atomic_load(&c->stats.retried);
    s.failed = atomic_load(&c->stats.failed);
    s.dead_lettered = atomic_load(&c->stats.dead_lettered);
    s.emitted = atomic_load(&c->stats.emitted);
    s.commits = atomic_load(&c->stats.commits);
    s.commit_errors = atomic_load(&c->stats.commit_errors);
    s.rebalances = atomic_load(&c->stats.rebalances);
    s.inflight = atomic_load(&c->inflight_pub);
    s.inflight_bytes = atomic_load(&c->inflight_bytes_pub);
    s.paused_partitions = atomic_load(&c->stats.paused_partitions);
    memcpy(stats, &s, size < sizeof(s) ? size : sizeof(s));
}

static void free_queue(bl_queue_t *q)
{
    for (bl_msg_t *m = q->head, *next; m; m = next) {
        next = m->next;
        bl_message_clear(m);
        free(m);
    }
    memset(q, 0, sizeof(*q));
}

void ballast_consumer_destroy(ballast_consumer_t *c)
{
    if (!c)
        return;
    if (c->workers) {
        stop_workers(c);
        for (int i = 0; i < c->nworkers; i++) {
            bl_worker_t *w = &c->workers[i];
            if (w->state_ok && c->handler->destroy)
                c->handler->destroy(w->state);
            free_queue(&w->queue);
            free_queue(&w->staged);
            pthread_mutex_destroy(&w->mtx);
            pthread_cond_destroy(&w->cond);
        }
    }
    free_queue(&c->done);
    if (c->rkqu)
        rd_kafka_queue_destroy(c->rkqu);
    if (c->rk) {
        if (!c->ran)
            rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    if (c->producer) {
        rd_kafka_flush(c->producer, 5000);
        rd_kafka_destroy(c->producer);
    }
    while (c->parts) {
        bl_part_t *p = c->parts;
        c->parts = p->next;
        part_free(p);
    }
    while (c->orphans) {
        bl_part_t *p = c->orphans;
        c->orphans = p->next;
        part_free(p);
    }
    free(c->workers);
    ballast_error_destroy(c->fatal);
    ballast_conf_destroy(c->conf);
    pthread_mutex_destroy(&c->done_mtx);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->err_mtx);
    pthread_mutex_destroy(&c->start_mtx);
    pthread_mutex_destroy(&c->obs_mtx);
    free(c->snapshot);
    free(c);
}

/* ---- observability ------------------------------------------------------ */

static bool check_health(const ballast_consumer_t *c, char *reason, size_t size)
{
    int64_t now = bl_now_ms();

    if (!atomic_load(&c->running)) {
        bl_fmt(reason, size, "the consumer is not running");
        return false;
    }
    if (atomic_load(&c->failed)) {
        bl_fmt(reason, size, "the pipeline is stopping after a fatal error");
        return false;
    }
    if (now - atomic_load(&c->last_poll_ms) > 10000) {
        bl_fmt(reason, size, "the poll loop has not run for %lld ms",
               (long long)(now - atomic_load(&c->last_poll_ms)));
        return false;
    }
    for (int i = 0; i < c->nworkers; i++) {
        int64_t since = atomic_load(&c->workers[i].busy_since);
        if (since && now - since > c->handler_timeout_ms) {
            bl_fmt(reason, size,
                   "worker %d: a handler call has run for %lld ms "
                   "(handler.timeout.ms = %lld)",
                   i, (long long)(now - since), (long long)c->handler_timeout_ms);
            return false;
        }
    }
    bl_fmt(reason, size, "ok");
    return true;
}

static bool check_ready(ballast_consumer_t *c, char *reason, size_t size)
{
    size_t assigned;

    pthread_mutex_lock(&c->obs_mtx);
    assigned = c->snapshot_count;
    if (atomic_load(&c->transient)) {
        bl_fmt(reason, size, "the handler reports a transient failure: %s",
               c->last_transient);
        pthread_mutex_unlock(&c->obs_mtx);
        return false;
    }
    pthread_mutex_unlock(&c->obs_mtx);
    if (!check_health(c, reason, size))
        return false;
    if (!assigned) {
        bl_fmt(reason, size, "no partitions assigned");
        return false;
    }
    bl_fmt(reason, size, "ok");
    return true;
}

int ballast_consumer_healthy(const ballast_consumer_t *c, char *reason, size_t size)
{
    char buf[256];
    bool ok = check_health(c, buf, sizeof(buf));
    if (reason && size)
        bl_fmt(reason, size, "%s", buf);
    return ok;
}

int ballast_consumer_ready(const ballast_consumer_t *c, char *reason, size_t size)
{
    char buf[512];
    bool ok = check_ready((ballast_consumer_t *)c, buf, sizeof(buf));
    if (reason && size)
        bl_fmt(reason, size, "%s", buf);
    return ok;
}

/* Fills @p v from the consumer; *partsp must be freed by the caller. */
static void make_view(ballast_consumer_t *c, bl_view_t *v, char *health,
                      char *ready, size_t size)
{
    bl_part_view_t *parts;
    int64_t since = bl_now_ms() - atomic_load(&c->last_poll_ms);

    memset(v, 0, sizeof(*v));
    v->group = c->group;
    v->topics = bl_conf_str(c->conf, "topics");
    v->semantics = bl_conf_str(c->conf, "semantics");
    ballast_consumer_stats(c, &v->stats, sizeof(v->stats));
    v->latency = &c->latency;
    v->uptime_ms = bl_now_ms() - c->started_ms;
    v->poll_headroom_ms = atomic_load(&c->running) ? c->max_poll_interval_ms - since
                                                   : c->max_poll_interval_ms;
    v->healthy = check_health(c, health, size);
    v->ready = check_ready(c, ready, size);
    v->health_reason = health;
    v->ready_reason = ready;
    pthread_mutex_lock(&c->obs_mtx);
    parts = calloc(c->snapshot_count + 1, sizeof(*parts));
    if (parts) {
        memcpy(parts, c->snapshot, c->snapshot_count * sizeof(*parts));
        v->nparts = c->snapshot_count;
    }
    pthread_mutex_unlock(&c->obs_mtx);
    v->parts = parts;
}

char *ballast_consumer_metrics(const ballast_consumer_t *cons)
{
    ballast_consumer_t *c = (ballast_consumer_t *)cons;
    char health[256], ready[512], *text;
    bl_view_t v;

    make_view(c, &v, health, ready, sizeof(health));
    text = bl_render_metrics(&v);
    free((void *)v.parts);
    return text;
}

char *ballast_consumer_status_json(const ballast_consumer_t *cons)
{
    ballast_consumer_t *c = (ballast_consumer_t *)cons;
    char health[256], ready[512], *text;
    bl_view_t v;

    make_view(c, &v, health, ready, sizeof(health));
    text = bl_render_status(&v);
    free((void *)v.parts);
    return text;
}

void ballast_free(void *ptr)
{
    free(ptr);
}
