/*
 * consumer.c - the consumer runtime: one poll thread, N handler workers.
 * (Workers are in worker.c, client construction in clients.c, status in
 * status.c; the shared state is in runtime.h.)
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
 * At-least-once: the committable offset of each partition (the lowest one
 * not finished) is committed every commit interval, asynchronously, with
 * the offsets finished beyond it in the commit's metadata (donemeta.c), and
 * synchronously on revoke and shutdown.
 *
 * The poll thread never blocks on a handler: long handlers, retries and
 * backpressure only pause partitions, and polling goes on, so the member is
 * never evicted for exceeding max.poll.interval.ms.
 *
 * Where to extend: routing of messages to workers is route_worker();
 * what happens to a finished message is finish_outcome(); partition
 * lifecycle is on_assign()/on_revoke().
 */
#include "runtime.h"

#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ------------------------------------------------------ */

void bl_queue_push(bl_queue_t *q, bl_msg_t *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
}

void bl_queue_append(bl_queue_t *q, bl_queue_t *more)
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
void bl_set_fatal(ballast_consumer_t *c, ballast_error_t *err)
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

bool bl_stopping(const ballast_consumer_t *c)
{
    return c->stop_requested || bl_conf_stop_requested(c->conf) || atomic_load(&c->failed);
}

static uint32_t fnv1a(const void *p, size_t len, uint32_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Names the partitions of @p list, topic by topic: "orders [0, 1],
 * payments [3]"; cut with "..." when it does not fit. */
static const char *name_parts(const rd_kafka_topic_partition_list_t *list, char *buf,
                              size_t size)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < list->cnt && n < size; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        bool same = i > 0 && !strcmp(tp->topic, list->elems[i - 1].topic);
        int w = snprintf(buf + n, size - n, "%s%s%s%d", same ? ", " : i ? "], " : "",
                         same ? "" : tp->topic, same ? "" : " [", (int)tp->partition);
        n += w > 0 ? (size_t)w : 0;
    }
    if (n + 2 < size && list->cnt)
        memcpy(buf + n, "]", 2);
    else if (size > 4)
        memcpy(buf + size - 4, "...", 4);
    return buf;
}

/* ---- partitions --------------------------------------------------------- */

bl_part_t *bl_part_find(ballast_consumer_t *c, const char *topic,
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
    bl_skipset_free(&p->skip);
    free(p->stored_meta);
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
    atomic_init(&p->rewind, false);
    p->worker = (int)(fnv1a(&partition, sizeof(partition),
                            fnv1a(topic, strlen(topic), 2166136261u)) %
                      (uint32_t)c->nworkers);
    return p;
}

static void drop_held(ballast_consumer_t *c, bl_part_t *p);

/* Makes @p p, already out of the partition list, an orphan: workers drop
 * its messages that have not started, and sweep_orphans() frees it once
 * nothing refers to it. */
static void part_orphan(ballast_consumer_t *c, bl_part_t *p)
{
    if (c->last_part == p)
        c->last_part = NULL;
    atomic_store(&p->revoked, true);
    drop_held(c, p);
    p->orphan = true;
    p->next = c->orphans;
    c->orphans = p;
}

/* Detaches @p p from the assignment. */
static void part_retire(ballast_consumer_t *c, bl_part_t *p)
{
    for (bl_part_t **pp = &c->parts; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    part_orphan(c, p);
}

/* Frees orphaned partition states that nothing refers to any more. Called
 * only at the top of the poll loop, so that no drain or commit in progress
 * holds a pointer to one. */
static void sweep_orphans(ballast_consumer_t *c)
{
    for (bl_part_t **pp = &c->orphans; *pp;) {
        bl_part_t *p = *pp;
        if (p->inflight == 0) {
            *pp = p->next;
            part_free(p);
        } else {
            pp = &p->next;
        }
    }
}

/* ---- finishing messages (poll thread) ----------------------------------- */

/* Message structs are reused: one malloc and free per message showed up
 * as the largest single cost in the drain benchmark. Poll thread only. */
static bl_msg_t *msg_alloc(ballast_consumer_t *c)
{
    bl_msg_t *m = c->free_msgs;

    if (!m)
        return malloc(sizeof(*m));
    c->free_msgs = m->next;
    c->free_count--;
    return m;
}

static void msg_free(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_message_clear(m);
    if (c->free_count >= FREE_MSGS_MAX) {
        free(m);
        return;
    }
    m->next = c->free_msgs;
    c->free_msgs = m;
    c->free_count++;
}

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
    msg_free(c, m);
}

static void msg_release_ref(ballast_consumer_t *c, bl_msg_t *m)
{
    if (atomic_fetch_sub(&m->pending_emits, 1) == 1)
        msg_retire(c, m);
}

static void hold(ballast_consumer_t *c, bl_msg_t *m);

/* Produces the failure record a worker left to this thread (at-least-once),
 * then lets the consumed message go. Produced here, the record is
 * allocated by the thread that frees it in its delivery report, which
 * allocators serve from per-thread caches: with glibc's, the dead-letter
 * benchmark spent about 0.1 s less CPU per 20,000 than when a worker
 * produced it. */
static void produce_pending_failure(ballast_consumer_t *c, bl_msg_t *m)
{
    m->failure_pending = false;
    bl_produce_failure_of(c, m, true);
    bl_message_release_payload(m, m->part->topic);
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
        if (c->eos && m->fate == BL_FATE_DONE && m->result.record_count) {
            hold(c, m);
            continue;
        }
        if (m->failure_pending)
            produce_pending_failure(c, m);
        msg_release_ref(c, m);
    }
    if (c->eos)
        bl_flush_held(c);
}

/* Exactly-once: a transaction may only hold the records of messages whose
 * offsets it commits. Messages finish out of order (ordering = key, none),
 * so a finished message's records wait, in offset order, until every
 * earlier offset of its partition finished too. */
static void hold(ballast_consumer_t *c, bl_msg_t *m)
{
    bl_part_t *p = m->part;
    bl_msg_t **pp = &p->held.head;

    if (p->orphan || atomic_load(&p->revoked)) {
        m->fate = BL_FATE_DROPPED;
        msg_release_ref(c, m);
        return;
    }
    bl_tracker_done(&p->tracker, m->seq);
    c->offsets_dirty = true;
    /* Usually the newest: walk from the head only when out of order. */
    if (p->held.tail && p->held.tail->offset < m->offset)
        pp = &p->held.tail->next;
    else
        while (*pp && (*pp)->offset < m->offset)
            pp = &(*pp)->next;
    m->next = *pp;
    *pp = m;
    if (!m->next)
        p->held.tail = m;
    p->held.len++;
}

static void drop_held(ballast_consumer_t *c, bl_part_t *p)
{
    while (p->held.head) {
        bl_msg_t *m = p->held.head;
        p->held.head = m->next;
        p->held.len--;
        m->fate = BL_FATE_DROPPED;
        msg_release_ref(c, m);
    }
    p->held.tail = NULL;
}

void bl_flush_held(ballast_consumer_t *c)
{
    for (bl_part_t *p = c->parts; p; p = p->next) {
        if (c->txn_halted) {
            /* Nothing commits any more: nothing waits for a transaction. */
            drop_held(c, p);
            continue;
        }
        int64_t next = bl_tracker_committable(&p->tracker);
        while (p->held.head && p->held.head->offset < next) {
            bl_msg_t *m = p->held.head;
            p->held.head = m->next;
            if (!p->held.head)
                p->held.tail = NULL;
            p->held.len--;
            if (!bl_txn_add(c, m)) {
                /* Aborted and rewound: every partition state was replaced,
                 * so stop walking the old ones. Or halted: drop the rest. */
                m->fate = BL_FATE_DROPPED;
                msg_release_ref(c, m);
                if (c->txn_halted)
                    bl_flush_held(c);
                return;
            }
            msg_release_ref(c, m);
        }
    }
}

rd_kafka_topic_partition_list_t *bl_reset_parts(ballast_consumer_t *c, bool flagged_only)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);

    for (bl_part_t **pp = &c->parts; *pp;) {
        bl_part_t *p = *pp, *fresh;
        if (flagged_only && !atomic_load(&p->rewind)) {
            pp = &p->next;
            continue;
        }
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
        if (!(fresh = part_new(c, p->topic, p->partition))) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                         "out of memory while rewinding"));
            *pp = p->next;
        } else {
            fresh->paused = p->paused;
            fresh->committed = p->committed;
            fresh->next = p->next;
            *pp = fresh;
            pp = &fresh->next;
        }
        /* Its in-flight messages are dropped with it. */
        part_orphan(c, p);
    }
    return list;
}

void bl_seek_parts(ballast_consumer_t *c, const rd_kafka_topic_partition_list_t *list)
{
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, tp->topic, NULL);
        int64_t to = tp->offset >= 0 ? tp->offset : RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_resp_err_t err;

        if (!rkt)
            continue;
        /* Blocking, so that the fetch version is bumped before the next
         * poll: messages fetched before the seek are then discarded. (An
         * asynchronous seek lets a few stale, later messages through,
         * which would break order.) */
        if ((err = rd_kafka_seek(rkt, tp->partition, to, REWIND_TIMEOUT_MS)))
            bl_log(&c->log, BALLAST_LOG_WARN, "%s [%d]: seek to %lld failed: %s",
                   tp->topic, (int)tp->partition, (long long)to, rd_kafka_err2str(err));
        rd_kafka_topic_destroy(rkt);
    }
}

/* Delivery report of an emitted or dead-letter record (poll thread). */
void bl_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                        void *opaque)
{
    ballast_consumer_t *c = opaque;
    bl_msg_t *m = rkm->_private;

    (void)rk;
    if (c->eos) {
        /* Transactional: durable only when the transaction commits. */
        bl_txn_delivered(c, rkm);
        return;
    }
    if (!m)
        return;
    if (rkm->err) {
        m->fate = BL_FATE_FAILED;
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                  "topic %s: delivery of a record for %s [%d] "
                                  "offset %lld failed: %s; the offset stays uncommitted",
                                  rd_kafka_topic_name(rkm->rkt), m->topic,
                                  (int)m->partition, (long long)m->offset,
                                  rd_kafka_err2str(rkm->err)));
    } else if (m->failed_over) {
        bl_failure_note_t *note = bl_failure_note(c, m);
        if (note)
            bl_log_failure_note(c, note);
        free(note);
        atomic_fetch_add(m->failure_tier < 0 ? &c->stats.dead_lettered : &c->stats.emitted, 1);
    } else {
        atomic_fetch_add(&c->stats.emitted, 1);
    }
    if (m->waiter) {
        /* A worker waits for this delivery (database exactly-once): it
         * still holds its own reference, so m stays valid. */
        bl_worker_t *w = m->waiter;
        msg_release_ref(c, m);
        pthread_mutex_lock(&w->mtx);
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mtx);
        return;
    }
    msg_release_ref(c, m);
}

static void serve_producer(ballast_consumer_t *c)
{
    if (c->producer)
        rd_kafka_poll(c->producer, 0);
}

/* Stores the committable offset of every partition that advanced. */
/* Adds a partition's committable offset to @p list, with the offsets
 * finished beyond it as metadata. @returns false when nothing changed
 * since the last commit (unless @p always). */
static bool add_commit(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                       bl_part_t *p, bool always)
{
    int64_t next = bl_tracker_committable(&p->tracker);
    bool truncated = false;
    char *meta;
    rd_kafka_topic_partition_t *tp;

    if (next < 0)
        return false;
    meta = bl_donemeta_encode(&p->tracker, next, &truncated);
    if (!always && next == p->stored &&
        ((!meta && !p->stored_meta) ||
         (meta && p->stored_meta && !strcmp(meta, p->stored_meta)))) {
        free(meta);
        return false;
    }
    if (truncated)
        atomic_fetch_add(&c->stats.metadata_truncated, 1);
    tp = rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
    tp->offset = next;
    if (meta) {
        /* The list frees it; stored_meta keeps a copy to compare with. */
        tp->metadata = meta;
        tp->metadata_size = strlen(meta);
    }
    free(p->stored_meta);
    p->stored_meta = meta ? bl_strdup(meta) : NULL;
    p->stored = next;
    return true;
}

/* Result of an asynchronous commit (poll thread, from serve_commits()):
 * counted as every commit is; a partition whose offset did not make it is
 * committed again at the next chance. */
static void on_async_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    ballast_consumer_t *c = opaque;

    c->commits_pending--;
    bl_on_commit(rk, err, offsets, c);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if ((err || tp->err) && err != RD_KAFKA_RESP_ERR__NO_OFFSET && p &&
            p->stored == tp->offset) {
            p->stored = -1;
            c->offsets_dirty = true;
        }
    }
}

/* Commits @p list asynchronously. One such commit is in flight at a time:
 * librdkafka retries a failed OffsetCommit by itself, and a retried older
 * commit landing after a newer one would move the group's offset back. */
static void commit_async(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk, list, c->commit_q,
                                                    on_async_commit, c);
    if (err)
        bl_log(&c->log, BALLAST_LOG_WARN, "commit failed: %s", rd_kafka_err2str(err));
    else
        c->commits_pending++;
}

/* Serves the results of asynchronous commits, waiting up to @p timeout_ms
 * for the one in flight (0: only what has arrived). */
static void serve_commits(ballast_consumer_t *c, int timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;

    while (c->commits_pending) {
        int64_t left = deadline - bl_now_ms();
        if (!rd_kafka_queue_poll_callback(c->commit_q, left > 0 ? (int)left : 0) &&
            left <= 0)
            break;
    }
}

/* At-least-once: every commit interval, commits each partition whose
 * committable offset (or finished-beyond record) changed. Asynchronous:
 * results arrive in on_async_commit(). (Explicit commits rather than
 * librdkafka's auto-commit, because 2.0.2 drops stored metadata.) */
static void commit_due(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    int64_t now = bl_now_ms();

    /* Exactly-once commits offsets in transactions (txn.c) instead. */
    if (c->eos || !c->offsets_dirty || c->commits_pending)
        return;
    /* Caught up: no need to wait for the interval, so that lag reads 0 as
     * soon as the work is done; at most ten times an interval, so that a
     * trickle of messages does not commit each one. */
    if (now < c->next_commit_ms &&
        (c->inflight || now < c->last_commit_ms + c->commit_interval_ms / 10))
        return;
    c->offsets_dirty = false;
    c->last_commit_ms = now;
    c->next_commit_ms = now + c->commit_interval_ms;
    list = rd_kafka_topic_partition_list_new(8);
    for (bl_part_t *p = c->parts; p; p = p->next)
        add_commit(c, list, p, false);
    if (list->cnt)
        commit_async(c, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---- backpressure ------------------------------------------------------- */

/* Whether a partition should be paused now: backpressure, shutdown, a
 * tripped DLQ breaker, or a retry tier whose head message is not due. */
static bool want_paused(const ballast_consumer_t *c, const bl_part_t *p, int64_t now_wall)
{
    return c->backpressured || c->draining || atomic_load(&c->breaker) ||
           atomic_load(&c->unavailable_workers) > 0 || p->tier_wait_until > now_wall;
}

/* At debug level: which partitions were paused or resumed, and why. */
static void log_pauses(ballast_consumer_t *c, const char *what,
                       const rd_kafka_topic_partition_list_t *list)
{
    char names[512];

    if (c->log.level < BALLAST_LOG_DEBUG)
        return;
    bl_log(&c->log, BALLAST_LOG_DEBUG, "%s %s (backpressure %s, stopping %s, breaker %s, "
           "handler unavailable %s, retry tier waiting %s)", what,
           name_parts(list, names, sizeof(names)), c->backpressured ? "yes" : "no",
           c->draining ? "yes" : "no", atomic_load(&c->breaker) ? "yes" : "no",
           atomic_load(&c->unavailable_workers) ? "yes" : "no", c->tier_waiting ? "yes" : "no");
}

/* Pauses and resumes partitions to match want_paused(). Only partitions
 * ballast paused are ever resumed (resuming one that is not paused can
 * rewind its fetch position in librdkafka 2.0.2). */
static void sync_pause(ballast_consumer_t *c)
{
    int64_t now_wall = bl_wall_ms();
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    uint64_t paused = 0;

    for (bl_part_t *p = c->parts; p; p = p->next) {
        bool want = want_paused(c, p, now_wall);
        if (want != p->paused) {
            rd_kafka_topic_partition_list_t **list = want ? &pause : &resume;
            if (!*list)
                *list = rd_kafka_topic_partition_list_new(8);
            rd_kafka_topic_partition_list_add(*list, p->topic, p->partition);
            p->paused = want;
            if (!want && p->tier_wait_until) {
                p->tier_wait_until = 0;
                c->tier_waiting--;
            }
        }
        paused += p->paused;
    }
    if (pause) {
        rd_kafka_pause_partitions(c->rk, pause);
        log_pauses(c, "paused", pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(c->rk, resume);
        log_pauses(c, "resumed", resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
    atomic_store(&c->stats.paused_partitions, paused);
    c->paused_breaker = atomic_load(&c->breaker);
    c->paused_unavailable = atomic_load(&c->unavailable_workers) > 0;
    c->paused_bp = c->backpressured;
}

/* Waits up to @p ms for workers to hand messages back. */
static void wait_completions(ballast_consumer_t *c, int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->done_mtx);
    if (!atomic_load(&c->done_ready))
        pthread_cond_timedwait(&c->done_cond, &c->done_mtx, &ts);
    pthread_mutex_unlock(&c->done_mtx);
}

static bool over_limit(const ballast_consumer_t *c)
{
    return c->inflight >= c->max_inflight || c->inflight_bytes >= c->max_inflight_bytes;
}

/* Backpressure, in two steps. At the high-water mark the poll loop first
 * stops polling and waits for completions: librdkafka's prefetch queue
 * fills and its fetcher stops by itself, and no fetched data is lost.
 * Pausing partitions is the second step, only when the backlog lasts
 * (soft_limit_ms), because a pause in librdkafka 2.0.2 discards what was
 * prefetched for the partition and its resume refetches after a back-off
 * of about a second: pausing on every short burst cut throughput by 4x.
 * Partitions resume at half the marks. @returns true when this iteration
 * held back instead of polling. */
static bool hold_back(ballast_consumer_t *c, int64_t now)
{
    bool over = over_limit(c);
    bool under = c->inflight <= c->max_inflight / 2 &&
                 c->inflight_bytes <= c->max_inflight_bytes / 2;

    atomic_store(&c->inflight_pub, c->inflight);
    atomic_store(&c->inflight_bytes_pub, c->inflight_bytes);
    /* The backlog lasts from reaching the marks until it falls to half of
     * them: hovering at the mark is a backlog too. */
    if (under)
        c->over_since = 0;
    else if (over && !c->over_since)
        c->over_since = now;
    if (!c->backpressured && over && now - c->over_since >= c->soft_limit_ms)
        c->backpressured = true;
    else if (c->backpressured && under)
        c->backpressured = false;
    if (c->backpressured != c->paused_bp || c->tier_waiting ||
        c->paused_breaker != atomic_load(&c->breaker) ||
        c->paused_unavailable != (atomic_load(&c->unavailable_workers) > 0))
        sync_pause(c);
    if (!over || c->backpressured)
        return false;
    bl_flush_staged(c);
    wait_completions(c, POLL_BUSY_MS);
    return true;
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

void bl_flush_staged(ballast_consumer_t *c)
{
    if (!c->staged)
        return;
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (!w->staged.len)
            continue;
        pthread_mutex_lock(&w->mtx);
        bl_queue_append(&w->queue, &w->staged);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mtx);
    }
    c->staged = 0;
}

/* A retry tier's message runs only when due. When its head is early, the
 * partition pauses, seeks back to it, and resumes at the due time; tiers
 * have one delay each, so later messages are due later still. */
static bool tier_not_due(ballast_consumer_t *c, bl_part_t *p, bl_msg_t *m,
                         rd_kafka_message_t *rkm)
{
    const void *v;
    size_t len;
    char buf[24];
    int64_t due;
    rd_kafka_resp_err_t err;

    if (bl_tiers_index(&c->tiers, m->topic) < 0 ||
        ballast_message_header_find(m, "x-retry-due", &v, &len) || !v ||
        len >= sizeof(buf))
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    due = strtoll(buf, NULL, 10);
    if (due <= bl_wall_ms())
        return false;
    p->tier_wait_until = due;
    c->tier_waiting++;
    sync_pause(c);
    if ((err = rd_kafka_seek(rkm->rkt, m->partition, m->offset, 5000)))
        bl_log(&c->log, BALLAST_LOG_WARN, "%s [%d]: seek back to %lld failed: %s",
               m->topic, (int)m->partition, (long long)m->offset,
               rd_kafka_err2str(err));
    return true;
}

static void accept_message(ballast_consumer_t *c, rd_kafka_message_t *rkm)
{
    bl_part_t *p = c->last_part;
    const char *topic;
    bl_msg_t *m;

    /* Messages come in runs per partition: compare handles, not names. */
    if (!p || p->rkt != rkm->rkt || p->partition != rkm->partition) {
        if ((p = bl_part_find(c, rd_kafka_topic_name(rkm->rkt), rkm->partition)))
            p->rkt = rkm->rkt;
    }
    topic = p ? p->topic : rd_kafka_topic_name(rkm->rkt);
    if (!p || atomic_load(&p->revoked)) {
        /* Not ours (any more): the next owner reads it from its offset. */
        rd_kafka_message_destroy(rkm);
        return;
    }
    m = msg_alloc(c);
    if (!m) {
        rd_kafka_message_destroy(rkm);
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                  "out of memory receiving a message"));
        return;
    }
    bl_message_from_rkm(m, rkm);
    if (c->tiers.count && tier_not_due(c, p, m, rkm)) {
        msg_free(c, m);
        return;
    }
    if (bl_tracker_add_ts(&p->tracker, m->offset, m->timestamp, &m->seq)) {
        /* An offset at or below one already received: a rewind we did not
         * ask for. Handling it again would break per-partition order. */
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%s [%d]: offset %lld received again; ignored", topic,
               (int)rkm->partition, (long long)m->offset);
        msg_free(c, m);
        return;
    }
    m->part = p;
    p->last_ts = m->timestamp;
    atomic_init(&m->pending_emits, 1);
    if (p->skip.bits && bl_skipset_has(&p->skip, m->offset)) {
        /* Finished before a restart (commit metadata): done already. */
        bl_tracker_done(&p->tracker, m->seq);
        c->offsets_dirty = true;
        atomic_fetch_add(&c->stats.skipped_done, 1);
        msg_free(c, m);
        return;
    }
    p->inflight++;
    c->inflight++;
    c->inflight_bytes += m->bytes;
    atomic_fetch_add(&c->stats.consumed, 1);
    bl_queue_push(&c->workers[route_worker(c, m)].staged, m);
    c->staged++;
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

/* ListOffsets' timestamp for the position auto.offset.reset names, or 0
 * (`error`: librdkafka reports it). */
static int64_t reset_timestamp(const ballast_consumer_t *c)
{
    const char *v = bl_conf_str(c->conf, "kafka.auto.offset.reset");

    if (!*v || !strcmp(v, "earliest") || !strcmp(v, "smallest") || !strcmp(v, "beginning"))
        return RD_KAFKA_OFFSET_BEGINNING; /* -2: the log start */
    if (!strcmp(v, "latest") || !strcmp(v, "largest") || !strcmp(v, "end"))
        return RD_KAFKA_OFFSET_END; /* -1: the end (the LSO under read_committed) */
    return 0;
}

/* Sets the start offset of the partitions of @p list that the group never
 * committed (per @p committed, rd_kafka_committed's answer for the same
 * list) and nothing else placed, to the position auto.offset.reset names,
 * looked up in one ListOffsets round trip. librdkafka (2.0.2 and later)
 * would look it up itself, but only after a 100 ms back-off, as it treats
 * the missing offset as an error; and a logical start offset given to
 * assign waits 500 ms when the partition has not joined its leader's
 * thread yet, as on a first assignment. On failure the offsets stay unset
 * and librdkafka resets them as usual. */
static void start_fresh(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list,
                        const rd_kafka_topic_partition_list_t *committed)
{
    int64_t ts = reset_timestamp(c);
    rd_kafka_topic_partition_list_t *q;

    if (!ts)
        return;
    q = rd_kafka_topic_partition_list_new(list->cnt);
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        if (committed->elems[i].offset < 0 && !committed->elems[i].err &&
            tp->offset == RD_KAFKA_OFFSET_INVALID) {
            rd_kafka_topic_partition_t *qp =
                rd_kafka_topic_partition_list_add(q, tp->topic, tp->partition);
            qp->offset = ts;
            qp->opaque = tp; /* where the answer goes */
        }
    }
    if (q->cnt && !rd_kafka_offsets_for_times(c->rk, q, 5000))
        for (int j = 0; j < q->cnt; j++)
            if (!q->elems[j].err && q->elems[j].offset >= 0)
                ((rd_kafka_topic_partition_t *)q->elems[j].opaque)->offset =
                    q->elems[j].offset;
    rd_kafka_topic_partition_list_destroy(q);
}

/* Learns the group's committed offsets of newly assigned partitions, so
 * that lag is known even before ballast commits anything, and starts the
 * ones the group never committed at once (start_fresh). The query asks for
 * stable offsets under read_committed, as librdkafka's own does, so a
 * transaction still committing offsets is waited for. */
static void load_committed(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(list);

    if (!bl_committed(c->rk, copy, 5000)) {
        for (int i = 0; i < copy->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &copy->elems[i];
            bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
            if (!p || tp->offset < 0)
                continue;
            p->committed = tp->offset;
            /* At-least-once: what finished beyond the committed offset
             * before a restart is not handled again. */
            if (!c->eos && !c->txn_ops && tp->metadata)
                bl_donemeta_decode(tp->metadata, tp->metadata_size, tp->offset, &p->skip);
        }
        start_fresh(c, list, copy);
    }
    rd_kafka_topic_partition_list_destroy(copy);
}

/* Exactly-once into a database: the database's offsets are the truth, so
 * each assigned partition starts where the database says. Kafka's own
 * committed offsets may lag behind them (they are advisory). Without the
 * database's answer nothing may start: retried until the drain timeout,
 * then the pipeline stops. */
static bool load_db_offsets(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    int64_t deadline = bl_now_ms() + c->shutdown_timeout_ms;
    char err[512] = "";

    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t next = -1;
        int rc;
        while ((rc = c->txn_ops->load_offset(c->loader_state, c->group, tp->topic,
                                             tp->partition, &next, err,
                                             sizeof(err))) < 0 &&
               bl_now_ms() < deadline && !bl_stopping(c))
            bl_sleep_ms(500);
        if (rc < 0) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_DATABASE, true, false,
                                         "%s [%d]: cannot read the stored offset "
                                         "from the database: %s",
                                         tp->topic, (int)tp->partition, err));
            return false;
        }
        if (rc == 1)
            tp->offset = next;
    }
    return true;
}

/* Exactly-once into a database: a partition whose database offset is ahead
 * of Kafka's committed one may get no new message to carry the advisory
 * commit forward, and lag tools would report lag for a group that caught
 * up; so commit the database's offsets to Kafka now. */
static void advise_db_offsets(ballast_consumer_t *c,
                              const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *ahead = rd_kafka_topic_partition_list_new(list->cnt);

    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if (p && tp->offset >= 0 && tp->offset > p->committed) {
            rd_kafka_topic_partition_list_add(ahead, tp->topic, tp->partition)->offset =
                tp->offset;
            p->stored = tp->offset;
        }
    }
    if (ahead->cnt)
        commit_async(c, ahead);
    rd_kafka_topic_partition_list_destroy(ahead);
}

/* Exactly-once into a database: a worker found a batch fenced (another
 * member committed past it), so this instance's view of those partitions
 * is stale. Drops what is in flight for them and starts them again where
 * the database says, as an assignment would: the group's committed offset
 * where the database has none (the fenced batch was their first). Then the
 * advisory Kafka commit follows the database's offset, so lag tools see no
 * hole where the dropped batch was. */
static void db_rewind(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;

    if (!atomic_exchange(&c->rewind_wanted, false))
        return;
    bl_flush_staged(c);
    list = bl_reset_parts(c, true);
    if (list->cnt && (err = bl_committed(c->rk, list, REWIND_TIMEOUT_MS)))
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, true, false,
                                     "kafka: cannot read committed offsets to "
                                     "rewind after a fenced batch: %s",
                                     rd_kafka_err2str(err)));
    else if (list->cnt && load_db_offsets(c, list)) {
        bl_seek_parts(c, list);
        advise_db_offsets(c, list);
        bl_log(&c->log, BALLAST_LOG_WARN,
               "%d partition(s) rewound to the database's offsets", list->cnt);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* The log level of a rebalance: @p level, or debug for one served only by
 * the close of a consumer that never ran (its start failed after the group
 * join), which is not news. */
static ballast_log_level_t rebalance_level(const ballast_consumer_t *c,
                                           ballast_log_level_t level)
{
    return c->ran ? level : BALLAST_LOG_DEBUG;
}

static void on_assign(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list)
{
    char names[512];
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        bl_part_t *p;
        if (bl_part_find(c, tp->topic, tp->partition))
            continue;
        if (!(p = part_new(c, tp->topic, tp->partition))) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                      "out of memory on assignment"));
            return;
        }
        p->next = c->parts;
        c->parts = p;
    }
    if (c->txn_ops && !load_db_offsets(c, list))
        return;
    load_committed(c, list);
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
    if (c->txn_ops)
        advise_db_offsets(c, list);
    sync_pause(c); /* partitions assigned while paused for any reason */
    atomic_fetch_add(&c->stats.rebalances, 1);
    bl_log(&c->log, rebalance_level(c, BALLAST_LOG_INFO), "assigned %d partition(s): %s",
           list->cnt, name_parts(list, names, sizeof(names)));
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
        /* Records still wait in the producer: send them now rather than
         * after its linger (flushing serves their delivery reports too). */
        if (c->producer && !c->eos && rd_kafka_outq_len(c->producer) > 0)
            rd_kafka_flush(c->producer, 5);
        else
            wait_completions(c, 5);
    }
}

/* Commits the committable offsets of @p parts synchronously. */
static void commit_parts(ballast_consumer_t *c, bl_part_t **parts, size_t n)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_resp_err_t err;

    serve_commits(c, COMMIT_WAIT_MS); /* this one must land last */
    for (size_t i = 0; i < n; i++)
        if (parts[i])
            add_commit(c, list, parts[i], true);
    if (list->cnt) {
        /* Counted in bl_on_commit(), which librdkafka calls for every commit. */
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
    char names[512];
    bl_part_t **parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    rd_kafka_error_t *error = NULL;

    bl_flush_staged(c);
    for (int i = 0; parts && i < list->cnt; i++) {
        parts[i] = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (parts[i])
            atomic_store(&parts[i]->revoked, true);
    }
    if (parts && !lost) {
        /* At shutdown the drain already happened (and may have timed out). */
        drain_parts(c, parts, (size_t)list->cnt,
                    atomic_load(&c->abandon) ? 0
                                             : bl_now_ms() + c->shutdown_timeout_ms);
        if (c->eos)
            bl_txn_commit(c); /* before the partitions go: they are in it */
        else
            commit_parts(c, parts, (size_t)list->cnt);
    } else if (lost && c->eos) {
        bl_txn_abort(c); /* its offsets would be refused anyway */
    }
    free(parts);
    /* A rewind may have replaced partition states: look them up again. */
    for (int i = 0; i < list->cnt; i++) {
        bl_part_t *p = bl_part_find(c, list->elems[i].topic, list->elems[i].partition);
        if (p)
            part_retire(c, p);
    }
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
    bl_log(&c->log, rebalance_level(c, lost ? BALLAST_LOG_WARN : BALLAST_LOG_INFO),
           "%s %d partition(s): %s", lost ? "lost" : "revoked", list->cnt,
           name_parts(list, names, sizeof(names)));
    notify_rebalance(c, lost ? BALLAST_PARTITIONS_LOST : BALLAST_PARTITIONS_REVOKED,
                     list);
}

void bl_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
void bl_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
        bl_part_t *p = bl_part_find(c, tp->topic, tp->partition);
        if (p && !tp->err && tp->offset >= 0 && tp->offset > p->committed)
            p->committed = tp->offset;
        if (c->log.level >= BALLAST_LOG_DEBUG)
            bl_log(&c->log, BALLAST_LOG_DEBUG, "%s [%d]: committed offset %lld%s%s",
                   tp->topic, (int)tp->partition, (long long)tp->offset,
                   tp->err ? ": " : "", tp->err ? rd_kafka_err2str(tp->err) : "");
    }
}

/* Serves librdkafka's error events while starting (nothing is subscribed
 * yet, so no message can arrive) and turns the ones no retry can fix -- the
 * broker refused our credentials or certificate -- into a configuration
 * error at once, instead of waiting out startup.timeout.ms. */
static ballast_error_t *start_refused(ballast_consumer_t *c)
{
    rd_kafka_message_t *rkm;
    ballast_error_t *err;

    while ((rkm = rd_kafka_consumer_poll(c->rk, 0)))
        rd_kafka_message_destroy(rkm);
    pthread_mutex_lock(&c->start_mtx);
    err = bl_kafka_refused(c->start_error, c->start_reason);
    pthread_mutex_unlock(&c->start_mtx);
    return err;
}

/* Says what start-up waits for, every few seconds, so that a person
 * watching is not left guessing: "waiting for 127.0.0.1:1 (Connection
 * refused), 5 s of 30". */
static void note_waiting(ballast_consumer_t *c, int64_t start, int64_t timeout,
                         rd_kafka_resp_err_t err)
{
    char why[256];
    const char *cut;

    pthread_mutex_lock(&c->start_mtx);
    /* librdkafka's "<broker>: Connect to <address> failed: <reason> (after
     * ...)" is long; its reason is what matters. */
    cut = strstr(c->start_reason, " failed: ");
    bl_fmt(why, sizeof(why), "%s", cut ? cut + 9 : *c->start_reason ? c->start_reason
                                                                      : rd_kafka_err2str(err));
    pthread_mutex_unlock(&c->start_mtx);
    if ((cut = strstr(why, " (after ")))
        why[cut - why] = '\0';
    bl_log(&c->log, BALLAST_LOG_INFO, "waiting for %s (%s), %lld s of %lld",
           bl_conf_str(c->conf, "kafka.bootstrap.servers"), why,
           (long long)((bl_now_ms() - start) / 1000), (long long)(timeout / 1000));
}

/* Collects the first topic a configuration needs that the cluster lacks. */
typedef struct topic_check {
    const struct rd_kafka_metadata *md;
    ballast_error_t *err;
} topic_check_t;

static void check_topic(const char *key, const char *topic, void *opaque)
{
    topic_check_t *tc = opaque;

    if (!tc->err)
        tc->err = bl_topic_missing(tc->md, key, topic);
}

/* Waits for the cluster's metadata and checks that every topic the
 * configuration needs exists. */
static ballast_error_t *check_cluster(ballast_consumer_t *c)
{
    int64_t timeout = bl_conf_int(c->conf, "startup.timeout.ms");
    int64_t start = bl_now_ms(), deadline = start + timeout, next_note = start + 5000;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    topic_check_t tc = {NULL, NULL};

    for (;;) {
        int64_t left = deadline - bl_now_ms();
        ballast_error_t *refused;
        /* Short rounds, so that a stop during start-up is prompt. */
        err = rd_kafka_metadata(c->rk, 1, NULL, &md,
                                (int)(left < 100 ? 100 : left > 500 ? 500 : left));
        if (!err || bl_now_ms() >= deadline)
            break;
        if ((refused = start_refused(c)))
            return refused;
        if (!bl_kafka_waitable(err))
            break;
        if (bl_conf_stop_requested(c->conf))
            return bl_error_new(BALLAST_ERR_STOPPED, false, false,
                                "stopped while waiting for the broker");
        if (bl_now_ms() >= next_note) {
            note_waiting(c, start, timeout, err);
            next_note += 5000;
        }
    }
    if (err) {
        pthread_mutex_lock(&c->start_mtx);
        tc.err = bl_kafka_unreachable(c->conf, timeout, *c->start_reason
                                                            ? c->start_reason
                                                            : rd_kafka_err2str(err));
        pthread_mutex_unlock(&c->start_mtx);
        return tc.err;
    }
    tc.md = md;
    bl_each_needed_topic(c->conf, check_topic, &tc);
    rd_kafka_metadata_destroy(md);
    return tc.err;
}

/* Makes one handler state (worker -1: the offset loader). */
static ballast_error_t *init_handler(ballast_consumer_t *c, int worker, void **statep)
{
    ballast_handler_params_t params = {c->conf, worker, c->nworkers, c->handler_opaque};
    char errbuf[512] = "";
    int rc = 0;
    ballast_err_code_t code;

    *statep = NULL;
    if (c->handler->init)
        rc = c->handler->init(statep, &params, errbuf, sizeof(errbuf));
    if (!rc)
        return NULL;
    /* A stop during start-up (a database wait cut short) is one too. */
    code = (rc >= BALLAST_ERR_CONFIG && rc <= BALLAST_ERR_INTERNAL) || rc == BALLAST_ERR_STOPPED
               ? (ballast_err_code_t)rc
               : BALLAST_ERR_HANDLER;
    return bl_error_new(code, code == BALLAST_ERR_UNREACHABLE, false, "handler %s: %s",
                        c->handler->name, *errbuf ? errbuf : "init failed");
}

static ballast_error_t *start_handlers(ballast_consumer_t *c)
{
    ballast_error_t *err;

    for (int i = 0; i < c->nworkers; i++) {
        if ((err = init_handler(c, i, &c->workers[i].state)))
            return err;
        c->workers[i].state_ok = true;
    }
    if (c->txn_ops && (err = init_handler(c, -1, &c->loader_state)))
        return err;
    return NULL;
}

static ballast_error_t *start_workers(ballast_consumer_t *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        char name[16];
        if (pthread_create(&w->thread, NULL, bl_worker_main, w))
            return bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                "cannot start worker thread %d", i);
        w->started = true;
        /* Best effort: names it in top -H, ps -L and perf. */
        bl_fmt(name, sizeof(name), "ballast-w%d", i);
        pthread_setname_np(w->thread, name);
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
    c->progress_interval_ms = bl_conf_int(c->conf, "log.progress.interval.ms");
    c->commit_interval_ms = 5000;
    if (*bl_conf_str(c->conf, "kafka.auto.commit.interval.ms"))
        c->commit_interval_ms =
            strtoll(bl_conf_str(c->conf, "kafka.auto.commit.interval.ms"), NULL, 10);
    c->max_poll_interval_ms = 300000;
    if (*bl_conf_str(c->conf, "kafka.max.poll.interval.ms"))
        c->max_poll_interval_ms = strtoll(bl_conf_str(c->conf, "kafka.max.poll.interval.ms"),
                                          NULL, 10);
    c->soft_limit_ms = c->max_poll_interval_ms / 4 < 5000 ? c->max_poll_interval_ms / 4 : 5000;
    c->rebalance_cb = bl_conf_rebalance_cb(c->conf, &c->rebalance_opaque);
    c->breaker_max_consecutive = bl_conf_int(c->conf, "dlq.max.consecutive");
    c->breaker_max_ratio = bl_conf_double(c->conf, "dlq.max.ratio");
    c->breaker_window_size = (size_t)bl_conf_int(c->conf, "dlq.window.messages");
}

/* Reads what read_settings() cannot without allocating. */
static ballast_error_t *read_tiers_and_breaker(ballast_consumer_t *c)
{
    char err[256];

    if (bl_tiers_parse(bl_conf_str(c->conf, "retry.topics"), &c->tiers, err, sizeof(err)))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "retry.topics: %s", err);
    if (c->breaker_max_ratio > 0 &&
        !(c->breaker_window = calloc(c->breaker_window_size, 1)))
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    return NULL;
}

/* A producer is needed when the handler may emit, or a DLQ or retry tiers
 * are set. */
static bool needs_producer(const ballast_consumer_t *c)
{
    if (c->dlq_topic || c->output_topic || c->eos || c->tiers.count)
        return true;
    return c->handler != &bl_handler_sqlite && c->handler != &bl_handler_postgres;
}

static ballast_error_t *consumer_start(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *topics;
    ballast_error_t *err;
    rd_kafka_resp_err_t kerr;

    if ((err = bl_make_client(c, false, &c->rk)))
        return err;
    /* One queue for messages, rebalances, errors and commit results, all
     * served by rd_kafka_consumer_poll on the poll thread. */
    rd_kafka_poll_set_consumer(c->rk);
    c->commit_q = rd_kafka_queue_new(c->rk);
    if (needs_producer(c) && (err = bl_make_client(c, true, &c->producer)))
        return err;
    topics = bl_topic_list(bl_conf_str(c->conf, "topics"));
    /* Retry tiers are consumed like input topics. */
    for (size_t i = 0; i < c->tiers.count; i++)
        rd_kafka_topic_partition_list_add(topics, c->tiers.tiers[i].topic,
                                          RD_KAFKA_PARTITION_UA);
    err = check_cluster(c);
    if (!err)
        bl_producer_warm(c, WARM_TIMEOUT_MS);
    if (!err && c->eos)
        err = bl_txn_init(c, bl_conf_int(c->conf, "startup.timeout.ms"));
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
    pthread_mutex_init(&c->breaker_mtx, NULL);
    pthread_mutex_init(&c->topics_mtx, NULL);
    pthread_mutex_init(&c->life_mtx, NULL);
    c->started_ms = bl_now_ms();
    atomic_init(&c->starting, true);
    read_settings(c);
    c->handler = bl_conf_handler(c->conf, &c->handler_opaque);
    if (!c->handler)
        c->handler = bl_handler_by_name(bl_conf_str(c->conf, "handler"));
    /* Exactly-once with a database handler keeps offsets in the database;
     * with any other handler, in Kafka transactions. */
    if (!strcmp(bl_conf_str(c->conf, "semantics"), "exactly-once")) {
        c->txn_ops = bl_handler_txn_ops(c->handler);
        c->eos = !c->txn_ops;
    }
    c->txn_interval_ms = bl_conf_int(c->conf, "transaction.interval.ms");
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
    if (bl_conf_stop_requested(c->conf))
        err = bl_error_new(BALLAST_ERR_STOPPED, false, false, "stopped before start-up");
    if (err || (err = read_tiers_and_breaker(c)) || (err = consumer_start(c))) {
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
    case RD_KAFKA_RESP_ERR__FATAL:
        /* The consumer is of no more use (a consumer group protocol
         * heartbeat refused for good, say): librdkafka reports it here,
         * not to the error callback. */
        bl_on_fatal(c, c->rk);
        break;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_KAFKA, false, false,
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
    serve_commits(c, 0);
    commit_due(c);
    if (c->eos)
        bl_txn_tick(c);
}

/* The number of handler calls running now. */
static int calls_running(const ballast_consumer_t *c)
{
    int n = 0;

    for (int i = 0; i < c->nworkers; i++)
        n += atomic_load(&c->workers[i].busy_since) != 0;
    return n;
}

/* The drain timed out with handler calls running: those that can be
 * cancelled are (exec kills its child, and the message is left); the
 * others get STOP_GRACE_MS more, serving what they hand back, so that a
 * call that does return is committed rather than done again by the next
 * owner. @returns the calls whose work was left: cancelled, or still
 * running. */
static int settle_running_calls(ballast_consumer_t *c)
{
    int64_t deadline = bl_now_ms() + STOP_GRACE_MS;
    int cancelled = 0;

    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (w->started && w->state_ok && atomic_load(&w->busy_since) &&
            c->handler == &bl_handler_exec) {
            bl_exec_cancel(w->state);
            cancelled++;
        }
    }
    while (calls_running(c) && bl_now_ms() < deadline) {
        atomic_store(&c->last_poll_ms, bl_now_ms());
        handle_completions(c);
        serve_producer(c);
        wait_completions(c, 5);
    }
    handle_completions(c);
    return cancelled + calls_running(c);
}

/* Wakes every worker to look at the stop flags. */
static void wake_workers(ballast_consumer_t *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        pthread_mutex_lock(&c->workers[i].mtx);
        pthread_cond_broadcast(&c->workers[i].cond);
        pthread_mutex_unlock(&c->workers[i].mtx);
    }
}

/* Stops fetching, lets the handler calls running finish for up to the
 * drain timeout, and commits what finished. */
static void drain_all(ballast_consumer_t *c)
{
    int64_t deadline = bl_now_ms() + c->shutdown_timeout_ms;
    size_t n = 0;
    bl_part_t **parts;

    bl_flush_staged(c);
    c->draining = true;
    sync_pause(c);
    for (bl_part_t *p = c->parts; p; p = p->next)
        n++;
    parts = calloc(n + 1, sizeof(*parts));
    n = 0;
    for (bl_part_t *p = c->parts; parts && p; p = p->next)
        parts[n++] = p;
    /* What is in flight is handled until the deadline (after a fatal
     * error workers drop what they have not started, so this only waits
     * for handlers already running). */
    if (parts)
        drain_parts(c, parts, n, deadline);
    /* Then nothing more starts: what has not, and messages waiting for a
     * retry, stay uncommitted and come back. The calls running get their
     * grace, so that what they finish is committed below. */
    atomic_store(&c->abandon, true);
    wake_workers(c);
    if (calls_running(c))
        c->abandoned_calls = settle_running_calls(c);
    settle(c);
    if (c->eos)
        bl_txn_commit(c);
    else if (parts)
        commit_parts(c, parts, n);
    free(parts);
}

/* Ends the workers, waiting up to @p grace_ms for each; one that does not
 * end (its handler call has not returned) is left running on its thread,
 * which from then on owns the consumer's memory (see
 * ballast_consumer_destroy). */
static void stop_workers(ballast_consumer_t *c, int grace_ms)
{
    struct timespec deadline;

    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        pthread_mutex_lock(&w->mtx);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mtx);
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += grace_ms / 1000;
    deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (int i = 0; i < c->nworkers; i++) {
        bl_worker_t *w = &c->workers[i];
        if (!w->started)
            continue;
        w->started = false;
        if (!pthread_timedjoin_np(w->thread, NULL, &deadline))
            continue;
        pthread_mutex_lock(&c->life_mtx);
        if (!w->exited) {
            w->left = true;
            c->left_running++;
        }
        pthread_mutex_unlock(&c->life_mtx);
        pthread_detach(w->thread);
        if (w->left)
            bl_log(&c->log, BALLAST_LOG_ERROR,
                   "worker %d: its handler call has not returned after the stop's drain "
                   "and grace; it is left running, and its messages stay uncommitted", i);
    }
}

/* Polls up to a chunk of messages and hands them to the workers; the
 * loop's bookkeeping then runs once per chunk, not per message. */
static void poll_burst(ballast_consumer_t *c)
{
    int timeout = c->backpressured ? POLL_BUSY_MS : POLL_IDLE_MS;

    for (int n = 0; n < STAGE_CHUNK && !over_limit(c); n++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, 0);
        if (!rkm && !n)
            rkm = rd_kafka_consumer_poll(c->rk, timeout);
        if (!rkm)
            break;
        if (rkm->err)
            handle_consumer_error(c, rkm);
        else
            accept_message(c, rkm);
    }
    bl_flush_staged(c);
}

/* What the run ends with, said in one line: the fatal error, the breaker
 * that kept consumption paused, work the drain had to leave, or a clean
 * stop. */
static ballast_error_t *run_outcome(ballast_consumer_t *c)
{
    ballast_error_t *err;
    char abandoned[200] = "";

    pthread_mutex_lock(&c->err_mtx);
    err = c->fatal;
    c->fatal = NULL;
    pthread_mutex_unlock(&c->err_mtx);
    if (c->abandoned_calls)
        bl_fmt(abandoned, sizeof(abandoned),
               "%d handler call(s) did not finish within shutdown.timeout.ms (%lld ms); "
               "their messages stay uncommitted and will be delivered again",
               c->abandoned_calls, (long long)c->shutdown_timeout_ms);
    if (!err && atomic_load(&c->breaker))
        err = bl_error_new(BALLAST_ERR_HANDLER, false, false, "%s", c->breaker_reason);
    if (!err && c->abandoned_calls)
        return bl_error_new(BALLAST_ERR_INCOMPLETE, false, false, "stopped: %s", abandoned);
    if (c->abandoned_calls)
        bl_log(&c->log, BALLAST_LOG_WARN, "%s", abandoned);
    if (!err)
        bl_log(&c->log, BALLAST_LOG_INFO,
               "stopped: the handler calls running finished, and what finished is committed");
    return err;
}

ballast_error_t *ballast_consumer_run(ballast_consumer_t *c)
{
    if (c->ran)
        return bl_error_new(BALLAST_ERR_INTERNAL, false, false,
                            "ballast_consumer_run: already ran");
    c->ran = true;
    c->progress_ms = bl_now_ms();
    atomic_store(&c->running, 1);
    while (!bl_stopping(c)) {
        int64_t now = bl_now_ms();

        atomic_store(&c->last_poll_ms, now);
        if (now >= c->next_snapshot_ms) {
            bl_publish_snapshot(c);
            bl_log_progress(c, now);
            c->next_snapshot_ms = now + 1000;
        }
        settle(c);
        if (c->txn_ops)
            db_rewind(c);
        sweep_orphans(c);
        if (!hold_back(c, now))
            poll_burst(c);
    }
    drain_all(c);
    /* Leaving the group triggers a final revoke, which commits again. */
    rd_kafka_consumer_close(c->rk);
    /* The drain already gave running calls their grace. */
    stop_workers(c, 100);
    settle(c);
    bl_publish_snapshot(c);
    atomic_store(&c->running, 0);
    if (c->producer && rd_kafka_flush(c->producer, 10000))
        bl_log(&c->log, BALLAST_LOG_WARN, "producer: records still queued at exit");
    bl_log_summary(c);
    return run_outcome(c);
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
    s.skipped_done = atomic_load(&c->stats.skipped_done);
    s.metadata_truncated = atomic_load(&c->stats.metadata_truncated);
    s.fenced_batches = atomic_load(&c->stats.fenced);
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

/* rd_kafka_destroy() on a thread of its own, waited for DESTROY_TIMEOUT_MS:
 * librdkafka has had destroys that hang, and a stop must end. */
static void *destroy_main(void *rk)
{
    rd_kafka_destroy(rk);
    return NULL;
}

static void destroy_client(ballast_consumer_t *c, rd_kafka_t *rk, const char *what)
{
    struct timespec deadline;
    pthread_t t;

    if (pthread_create(&t, NULL, destroy_main, rk)) {
        rd_kafka_destroy(rk);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DESTROY_TIMEOUT_MS / 1000;
    if (pthread_timedjoin_np(t, NULL, &deadline)) {
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: the %s did not close within %d s; "
               "leaving it", what, DESTROY_TIMEOUT_MS / 1000);
        pthread_detach(t);
    }
}

/* Frees everything; no worker runs any more. */
static void consumer_free(ballast_consumer_t *c)
{
    if (c->workers && c->handler == &bl_handler_exec) {
        /* Their children end together, not one grace after another. */
        void **states = calloc((size_t)c->nworkers, sizeof(*states));
        for (int i = 0; states && i < c->nworkers; i++)
            states[i] = c->workers[i].state_ok ? c->workers[i].state : NULL;
        if (states)
            bl_exec_close(states, (size_t)c->nworkers);
        free(states);
    }
    if (c->workers) {
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
    if (c->loader_state && c->handler->destroy)
        c->handler->destroy(c->loader_state);
    free_queue(&c->done);
    if (c->commit_q)
        rd_kafka_queue_destroy(c->commit_q);
    if (c->rk) {
        if (!c->ran)
            rd_kafka_consumer_close(c->rk);
        destroy_client(c, c->rk, "consumer");
    }
    if (c->producer) {
        rd_kafka_flush(c->producer, 5000);
        destroy_client(c, c->producer, "producer");
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
    while (c->free_msgs) {
        bl_msg_t *m = c->free_msgs;
        c->free_msgs = m->next;
        free(m);
    }
    free(c->workers);
    ballast_error_destroy(c->fatal);
    ballast_conf_destroy(c->conf);
    pthread_mutex_destroy(&c->done_mtx);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->err_mtx);
    pthread_mutex_destroy(&c->start_mtx);
    pthread_mutex_destroy(&c->obs_mtx);
    pthread_mutex_destroy(&c->breaker_mtx);
    pthread_mutex_destroy(&c->topics_mtx);
    for (size_t i = 0; i < c->known_count; i++)
        free(c->known_topics[i]);
    free(c->known_topics);
    bl_tiers_free(&c->tiers);
    free(c->breaker_window);
    bl_status_free(c);
    pthread_mutex_destroy(&c->life_mtx);
    free(c);
}

void ballast_consumer_destroy(ballast_consumer_t *c)
{
    bool pending;

    if (!c)
        return;
    if (c->workers)
        stop_workers(c, STOP_GRACE_MS);
    pthread_mutex_lock(&c->life_mtx);
    pending = c->destroy_pending = c->left_running > 0;
    pthread_mutex_unlock(&c->life_mtx);
    if (pending) {
        /* A handler call that has not returned still uses the consumer, its
         * messages (which hold librdkafka's fetch buffers, so that its
         * destroy would wait for them forever) and its producer: the last
         * such call to return frees them (bl_worker_exited). */
        bl_log(&c->log, BALLAST_LOG_WARN, "%d handler call(s) still running: the "
               "consumer is freed when they return", c->left_running);
        return;
    }
    consumer_free(c);
}

void bl_worker_exited(bl_worker_t *w)
{
    ballast_consumer_t *c = w->cons;
    bool last;

    pthread_mutex_lock(&c->life_mtx);
    w->exited = true;
    last = w->left && --c->left_running == 0 && c->destroy_pending;
    pthread_mutex_unlock(&c->life_mtx);
    if (last)
        consumer_free(c);
}
