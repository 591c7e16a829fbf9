/*
 * pipeline.c - a worker's messages pipelined through its exec child
 * (`handler.exec.max.inflight` above 1, `processing = message`): the child
 * has several messages open at once and answers them in any order
 * (docs/exec-protocol.md, version 2), yet per-key or per-partition order
 * holds, because no two messages that must run in order are ever open at
 * once.
 *
 * The worker's messages wait in lanes: one FIFO per ordering key (the key
 * under ordering = key, the partition under ordering = partition, a
 * round-robin lane under none), hashed into PIPE_LANES lanes. Only a lane's
 * head may be open, and it stays the head until its outcome is final: while
 * it waits for a retry's back-off, or for an unavailable child to come back,
 * the lane is blocked, so a later message of its key never overtakes it.
 * Two keys that hash to one lane only wait for each other: order is never
 * at stake, only a little parallelism. A keyless message under ordering =
 * key must follow every earlier message of its partition (route.h), so it
 * runs alone: it waits for every lane to empty, and nothing after it is
 * admitted until it is done.
 *
 * Lanes whose head may go now are on the ready ring; lanes whose head waits
 * for a due time are on the later list. The exec handler asks next() for a
 * message whenever its window has room, and hands every outcome to done(),
 * which settles it as outcome.c would (retries with back-off, retry tiers,
 * the DLQ, unavailable handlers), except that a retry blocks only its lane,
 * not the worker. Finished messages go back on the completion list about
 * every millisecond.
 */
#include "pipeline.h"

#include "outcome.h"
#include "route.h"

#include <stdlib.h>

#define PIPE_LANES 4096
#define PIPE_FLUSH_MAX 256 /* finished messages handed back at the latest */

typedef struct lane {
    bl_msg_t *head, *tail; /* its messages in order; only the head may be open */
    int64_t due;           /* the head waits until then (bl_now_ms), 0: it need not */
    int64_t sent_us;       /* when the head was sent */
    bool busy;             /* the head is open in the child */
    bool listed;           /* on the ready ring or the later list */
} lane_t;

typedef struct pipe {
    bl_worker_t *w;
    lane_t lanes[PIPE_LANES];
    uint32_t ready[PIPE_LANES]; /* a ring: [rhead, rhead + rlen) */
    size_t rhead, rlen;
    uint32_t later[PIPE_LANES];
    size_t nlater;
    bl_queue_t inbox;      /* taken from the worker's queue, not yet in a lane */
    size_t held;           /* messages in lanes */
    size_t open;           /* of them, open in the child */
    bool alone;            /* a keyless message under ordering = key is held */
    bool quit;             /* the worker is told to end */
    int64_t down_until;    /* the unavailable child's back-off of this loss */
    unsigned round_robin;  /* ordering = none */
    bl_queue_t finished;   /* settled, not yet handed back */
    int64_t flushed_ms;
} pipe_t;

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- lanes -------------------------------------------------------------- */

static uint32_t lane_of(pipe_t *p, const bl_msg_t *m)
{
    const ballast_consumer_t *c = p->w->cons;

    if (c->set.ordering == BL_ORDER_NONE)
        return p->round_robin++ % PIPE_LANES;
    if (c->set.ordering == BL_ORDER_KEY && m->key)
        return (uint32_t)(bl_fnv1a(m->key, m->key_len, BL_FNV1A_SEED) % PIPE_LANES);
    return (uint32_t)bl_route_partition(m->topic, m->partition, PIPE_LANES);
}

static void make_ready(pipe_t *p, uint32_t i)
{
    p->lanes[i].listed = true;
    p->ready[(p->rhead + p->rlen++) % PIPE_LANES] = i;
}

/* Lists lane @p i when its head may go (now, or at its due time). */
static void list_lane(pipe_t *p, uint32_t i)
{
    lane_t *l = &p->lanes[i];

    if (!l->head || l->busy || l->listed)
        return;
    if (l->due) {
        l->listed = true;
        p->later[p->nlater++] = i;
    } else {
        make_ready(p, i);
    }
}

static void lane_push(pipe_t *p, bl_msg_t *m)
{
    uint32_t i = lane_of(p, m);
    lane_t *l = &p->lanes[i];

    m->lane = i;
    m->next = NULL;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
    p->held++;
    list_lane(p, i);
}

/* Takes lane @p i's head out (its outcome is final, or it is dropped) and
 * hands it back. */
static void lane_pop(pipe_t *p, uint32_t i)
{
    lane_t *l = &p->lanes[i];
    bl_msg_t *m = l->head;

    l->head = m->next;
    if (!l->head)
        l->tail = NULL;
    l->due = 0;
    bl_queue_push(&p->finished, m);
    if (!--p->held)
        p->alone = false;
    list_lane(p, i);
}

/* Moves lanes whose due time has come to the ready ring. @returns the
 * earliest due time still to come, or 0. */
static int64_t promote_due(pipe_t *p, int64_t now)
{
    int64_t first = 0;

    for (size_t k = 0; k < p->nlater;) {
        uint32_t i = p->later[k];
        lane_t *l = &p->lanes[i];
        if (l->due <= now) {
            l->due = 0;
            p->later[k] = p->later[--p->nlater];
            make_ready(p, i);
            continue;
        }
        if (!first || l->due < first)
            first = l->due;
        k++;
    }
    return first;
}

/* ---- intake and hand-back ----------------------------------------------- */

/* Admits inbox messages to their lanes, up to a keyless one under
 * ordering = key, which waits for every lane to empty and then runs alone. */
static void admit(pipe_t *p)
{
    bl_msg_t *m;

    while ((m = p->inbox.head)) {
        bool alone = p->w->cons->set.ordering == BL_ORDER_KEY && !m->key;
        if (p->alone || (alone && p->held))
            return;
        bl_queue_pop(&p->inbox);
        p->alone = alone;
        lane_push(p, m);
    }
}

/* Takes what the poll thread handed this worker. */
static void intake(pipe_t *p)
{
    bl_worker_t *w = p->w;

    pthread_mutex_lock(&w->sig.mtx);
    bl_queue_append(&p->inbox, &w->queue);
    p->quit = w->quit;
    pthread_mutex_unlock(&w->sig.mtx);
    admit(p);
}

static void flush(pipe_t *p, bool now)
{
    int64_t ms = bl_now_ms();

    if (!p->finished.len ||
        (!now && p->finished.len < PIPE_FLUSH_MAX && ms - p->flushed_ms < 1))
        return;
    bl_done_put(p->w->cons, &p->finished);
    p->flushed_ms = ms;
}

/* Drops every message held and waiting (none is open). */
static void drop_all(pipe_t *p)
{
    bl_msg_t *m;

    for (uint32_t i = 0; i < PIPE_LANES && p->held; i++) {
        lane_t *l = &p->lanes[i];
        for (m = l->head; m; m = m->next)
            m->fate = BL_FATE_DROPPED;
        while (l->head)
            lane_pop(p, i);
        l->listed = false;
    }
    while ((m = bl_queue_pop(&p->inbox))) {
        m->fate = BL_FATE_DROPPED;
        bl_queue_push(&p->finished, m);
    }
    p->rlen = p->nlater = 0;
    p->alone = false;
}

/* ---- the feed ------------------------------------------------------------ */

static ballast_message_t *feed_next(void *ctx, ballast_result_t **resp)
{
    pipe_t *p = ctx;
    ballast_consumer_t *c = p->w->cons;

    if (!p->rlen)
        intake(p);
    promote_due(p, bl_now_ms());
    flush(p, false);
    while (p->rlen) {
        uint32_t i = p->ready[p->rhead];
        lane_t *l = &p->lanes[i];
        bl_msg_t *m = l->head;

        p->rhead = (p->rhead + 1) % PIPE_LANES;
        p->rlen--;
        l->listed = false;
        if (bl_outcome_halted(p->w) || bl_outcome_must_drop(c, m)) {
            m->fate = BL_FATE_DROPPED;
            lane_pop(p, i);
            continue;
        }
        l->busy = true;
        l->sent_us = now_us();
        if (!p->open++)
            atomic_store(&p->w->busy_since, bl_now_ms());
        bl_outcome_prepare(c, m); /* before it is encoded */
        *resp = &m->result;
        return m;
    }
    return NULL;
}

/* Lane @p i's head waits until @p until before it goes again. */
static void wait_until(pipe_t *p, uint32_t i, int64_t until)
{
    p->lanes[i].due = until > 0 ? until : 1;
    list_lane(p, i);
}

static void feed_done(void *ctx, ballast_message_t *msg, ballast_outcome_t outcome)
{
    pipe_t *p = ctx;
    bl_worker_t *w = p->w;
    ballast_consumer_t *c = w->cons;
    bl_msg_t *m = msg;
    uint32_t i = (uint32_t)m->lane;
    lane_t *l = &p->lanes[i];
    int64_t now = bl_now_ms();

    l->busy = false;
    /* The stuck-handler watchdog sees the time since the last reply. */
    atomic_store(&w->busy_since, --p->open ? now : 0);
    m->outcome = outcome;
    bl_outcome_note(w, &m, 1, now_us() - l->sent_us);
    if (m->outcome == BALLAST_OUTCOME_UNAVAILABLE) {
        /* No verdict: it goes again, without an attempt, once the child
         * may be back (one back-off for all that one loss settled). */
        if (bl_stopping(c)) {
            m->fate = BL_FATE_DROPPED;
            lane_pop(p, i);
            return;
        }
        if (p->down_until <= now)
            p->down_until = now + bl_outcome_down_delay(w);
        wait_until(p, i, p->down_until);
        return;
    }
    if (m->outcome == BALLAST_OUTCOME_RETRY && m->attempt < c->set.max_attempts) {
        bl_outcome_log_retry(c, &m, 1, 1);
        wait_until(p, i, now + bl_outcome_backoff(w, m->attempt));
        m->attempt++;
        return;
    }
    bl_outcome_finish(w, m);
    lane_pop(p, i);
}

static int64_t feed_due(void *ctx)
{
    pipe_t *p = ctx;

    return promote_due(p, bl_now_ms());
}

/* ---- the worker's loop ---------------------------------------------------- */

/* Blocks until the worker's queue has messages, it is told to end, or a
 * held message is due (@p due, 0: none). */
static void wait_for_work(pipe_t *p, int64_t due)
{
    bl_worker_t *w = p->w;

    pthread_mutex_lock(&w->sig.mtx);
    while (!w->queue.len && !w->quit && !bl_outcome_halted(p->w)) {
        int64_t left = due ? due - bl_now_ms() : 100;
        struct timespec deadline;
        if (left <= 0)
            break;
        /* In rounds: a stop's abandon flag is looked at at least every 100 ms. */
        deadline = bl_deadline(left < 100 ? left : 100);
        pthread_cond_timedwait(&w->sig.cond, &w->sig.mtx, &deadline);
    }
    pthread_mutex_unlock(&w->sig.mtx);
}

bool bl_pipeline_wanted(const ballast_consumer_t *c, void *state)
{
    return c->set.handler == &bl_handler_exec && !c->set.batch_mode &&
           c->set.semantics != BL_EXACTLY_ONCE_DB && bl_exec_max_inflight(state) > 1;
}

int bl_pipeline_run(bl_worker_t *w)
{
    pipe_t *p = calloc(1, sizeof(*p));
    bl_exec_feed_t feed = {feed_next, feed_done, feed_due, p};

    if (!p)
        return -1;
    p->w = w;
    for (;;) {
        int64_t due;

        intake(p);
        if (bl_outcome_halted(p->w))
            drop_all(p);
        due = promote_due(p, bl_now_ms());
        if (p->rlen) {
            bl_exec_pipeline(w->state, &feed);
            flush(p, true);
            continue;
        }
        flush(p, true);
        if (!p->held && !p->inbox.len && p->quit)
            break;
        wait_for_work(p, due);
    }
    free(p);
    return 0;
}
