/*
 * status.c - what the consumer shows about itself: the stats snapshot, a
 * per-partition snapshot published by the poll thread (with five minutes
 * of history, history.c), health and readiness, the metrics and status
 * documents built from them (rendered by observe.c), and the progress and
 * summary lines. It reads the other subsystems through their headers and
 * the counters every file bumps (bl_stats_t).
 */
#include "status.h"

#include "outcome.h"
#include "parts.h"
#include "shared/lag.h"
#include "txnwatch.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Messages finished per second since the last history frame: the growth
 * of the tracker's count, which rebalances and rewinds restart along with
 * the partition's state. The first frame only starts the count. */
static void sample_rate(bl_part_t *p, int64_t now)
{
    uint64_t finished = p->tracker.finished;

    if (p->rate.at_ms && now > p->rate.at_ms)
        p->rate.per_second =
            (double)(finished - p->rate.finished) * 1000.0 / (double)(now - p->rate.at_ms);
    else
        p->rate.per_second = -1;
    p->rate.finished = finished;
    p->rate.at_ms = now;
}

static void fill_view(ballast_consumer_t *c, const bl_part_t *p, bl_part_view_t *v,
                      int64_t now_wall)
{
    int64_t lo = -1, hi = -1;

    bl_fmt(v->topic, sizeof(v->topic), "%s", p->topic);
    v->partition = p->partition;
    v->committed = p->committed;
    v->inflight = p->inflight;
    v->paused = p->paused;
    if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) || hi < 0)
        hi = -1;
    v->high_watermark = hi;
    /* Nothing committed yet: everything retained is still to do. */
    v->lag = bl_lag_of(p->committed, lo, hi);
    v->lag_ms = v->lag >= 0 ? part_lag_ms(p, v->lag, now_wall) : -1;
    v->rate = p->rate.at_ms ? p->rate.per_second : -1;
}

/* The in-flight totals are taken at the same moment as the partitions, so
 * that the status document's total is the sum of its partitions (plus those
 * of partitions revoked while their messages finish). */
void bl_status_publish(ballast_consumer_t *c)
{
    size_t n = bl_parts_count(c), i = 0;
    bl_status_t *s = &c->status;
    bl_part_view_t *views;
    int64_t now_wall = bl_wall_ms(), now = bl_now_ms();
    bool frame;

    views = calloc(n + 1, sizeof(*views));
    if (!views)
        return;
    pthread_mutex_lock(&s->mtx);
    if (!s->history)
        s->history = bl_history_new();
    frame = s->history && bl_history_due(s->history, now);
    pthread_mutex_unlock(&s->mtx);
    BL_PARTS_EACH(c, p) {
        if (frame)
            sample_rate(p, now);
        fill_view(c, p, &views[i++], now_wall);
    }
    pthread_mutex_lock(&s->mtx);
    free(s->snapshot);
    s->snapshot = views;
    s->count = n;
    s->inflight = bl_parts_inflight(c);
    s->inflight_bytes = bl_parts_inflight_bytes(c);
    s->revoked = bl_parts_orphaned(c);
    /* Out of memory loses a frame's partitions, not the consumer. */
    if (frame)
        (void)bl_history_add(s->history, now, views, n);
    pthread_mutex_unlock(&s->mtx);
}

/* Sums the snapshot's lag (offsets, and the oldest time lag) and paused
 * partitions. Poll thread. */
static void sum_parts(const ballast_consumer_t *c, int64_t *lag, int64_t *lag_ms,
                      size_t *paused)
{
    *lag = 0;
    *lag_ms = -1;
    *paused = 0;
    for (size_t i = 0; i < c->status.count; i++) {
        const bl_part_view_t *v = &c->status.snapshot[i];
        *lag += v->lag > 0 ? v->lag : 0;
        if (v->lag_ms > *lag_ms)
            *lag_ms = v->lag_ms;
        *paused += v->paused;
    }
}

/* Logs the progress line when log.progress.interval.ms has passed since the
 * last one (poll thread, after a snapshot). */
static void log_progress(ballast_consumer_t *c, int64_t now)
{
    uint64_t processed = atomic_load(&c->stats.processed_ok);
    double secs = (double)(now - c->status.progress_ms) / 1000.0;
    int64_t lag, lag_ms;
    size_t paused;

    if (!c->set.progress_interval_ms ||
        now - c->status.progress_ms < c->set.progress_interval_ms)
        return;
    sum_parts(c, &lag, &lag_ms, &paused);
    bl_log(&c->log, BALLAST_LOG_INFO,
           "progress: %llu processed (%.0f/s), %llu retried, %llu dead-lettered, lag %lld "
           "(%.1f s), %zu in flight, %zu of %zu partition(s) paused",
           (unsigned long long)processed,
           secs > 0 ? (double)(processed - c->status.progress_processed) / secs : 0.0,
           (unsigned long long)atomic_load(&c->stats.retried),
           (unsigned long long)atomic_load(&c->stats.dead_lettered), (long long)lag,
           lag_ms > 0 ? (double)lag_ms / 1000.0 : 0.0, bl_parts_inflight(c), paused,
           c->status.count);
    c->status.progress_ms = now;
    c->status.progress_processed = processed;
}

void bl_status_tick(ballast_consumer_t *c, int64_t now)
{
    if (now < c->status.next_snapshot_ms)
        return;
    bl_status_publish(c);
    log_progress(c, now);
    c->status.next_snapshot_ms = now + 1000;
}

void bl_status_summary(ballast_consumer_t *c)
{
    int64_t ran = (bl_now_ms() - c->run.started_ms) / 1000;

    bl_log(&c->log, BALLAST_LOG_INFO,
           "summary: ran %lldh%02lldm%02llds; %llu consumed, %llu processed, %llu retried, "
           "%llu failed, %llu dead-lettered, %llu emitted, %llu commit(s), %llu "
           "rebalance(s)",
           (long long)(ran / 3600), (long long)(ran / 60 % 60), (long long)(ran % 60),
           (unsigned long long)atomic_load(&c->stats.consumed),
           (unsigned long long)atomic_load(&c->stats.processed_ok),
           (unsigned long long)atomic_load(&c->stats.retried),
           (unsigned long long)atomic_load(&c->stats.failed),
           (unsigned long long)atomic_load(&c->stats.dead_lettered),
           (unsigned long long)atomic_load(&c->stats.emitted),
           (unsigned long long)atomic_load(&c->stats.commits),
           (unsigned long long)atomic_load(&c->stats.rebalances));
}

void bl_status_init(ballast_consumer_t *c)
{
    pthread_mutex_init(&c->status.mtx, NULL);
}

void bl_status_free(ballast_consumer_t *c)
{
    free(c->status.snapshot);
    bl_history_free(c->status.history);
    pthread_mutex_destroy(&c->status.mtx);
}

/* ---- observability ------------------------------------------------------ */

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
    s.inflight = atomic_load(&c->stats.inflight);
    s.inflight_bytes = atomic_load(&c->stats.inflight_bytes);
    s.paused_partitions = atomic_load(&c->stats.paused_partitions);
    s.skipped_done = atomic_load(&c->stats.skipped_done);
    s.metadata_truncated = atomic_load(&c->stats.metadata_truncated);
    s.fenced_batches = atomic_load(&c->stats.fenced);
    memcpy(stats, &s, size < sizeof(s) ? size : sizeof(s));
}

static bool check_health(const ballast_consumer_t *c, char *reason, size_t size)
{
    int64_t now = bl_now_ms(), since;
    int worker;

    if (!atomic_load(&c->run.running)) {
        bl_fmt(reason, size, "the consumer is not running");
        return false;
    }
    if (atomic_load(&c->run.failed)) {
        bl_fmt(reason, size, "the pipeline is stopping after a fatal error");
        return false;
    }
    if (bl_breaker_tripped(&c->breaker)) {
        bl_fmt(reason, size, "%s", bl_breaker_reason(&c->breaker));
        return false;
    }
    if (now - atomic_load(&c->run.last_poll_ms) > 10000) {
        const char *call;
        int64_t in_call, timeout;
        bl_fmt(reason, size, "the poll loop has not run for %lld ms",
               (long long)(now - atomic_load(&c->run.last_poll_ms)));
        if (bl_txnwatch_current(c, &call, &in_call, &timeout))
            bl_fmt(reason + strlen(reason), size - strlen(reason),
                   ": inside %s for %lld ms (its timeout: %lld ms)", call, (long long)in_call,
                   (long long)timeout);
        return false;
    }
    if (bl_workers_stuck(c, now, &worker, &since)) {
        bl_fmt(reason, size,
               "worker %d: a handler call has run for %lld ms (handler.timeout.ms = %lld)",
               worker, (long long)(now - since), (long long)c->set.handler_timeout_ms);
        return false;
    }
    bl_fmt(reason, size, "ok");
    return true;
}

static bool check_ready(ballast_consumer_t *c, char *reason, size_t size)
{
    char why[256];
    size_t assigned;

    pthread_mutex_lock(&c->status.mtx);
    assigned = c->status.count;
    pthread_mutex_unlock(&c->status.mtx);
    if (bl_handler_down(c, why, sizeof(why))) {
        bl_fmt(reason, size, "the handler is unavailable: %s", why);
        return false;
    }
    /* Not ready while any worker's latest call failed transiently (its
     * database is down, say): one worker's success must not hide it. */
    if (bl_handler_transient(c, why, sizeof(why))) {
        bl_fmt(reason, size, "the handler reports a transient failure: %s", why);
        return false;
    }
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

/* The consumer group protocol the consumer was configured with: librdkafka
 * uses the one configured or fails, it never falls back. Builds whose
 * librdkafka predates KIP-848 have no such property and speak "classic". */
static void group_protocol(ballast_consumer_t *c, char *buf, size_t size)
{
    size_t len = size;

    if (!c->rk || rd_kafka_conf_get(rd_kafka_conf(c->rk), "group.protocol", buf, &len) !=
                      RD_KAFKA_CONF_OK ||
        !*buf)
        bl_fmt(buf, size, "classic");
}

/* Fills @p v from the consumer; v->parts must be freed by the caller.
 * @p protocol receives the group protocol's name. */
static void make_view(ballast_consumer_t *c, bl_view_t *v, char *health, char *ready,
                      size_t size, char *protocol, size_t psize)
{
    bl_part_view_t *parts;
    int64_t since = bl_now_ms() - atomic_load(&c->run.last_poll_ms);

    memset(v, 0, sizeof(*v));
    v->group = c->set.group;
    v->topics = bl_conf_str(c->conf, "topics");
    v->semantics = bl_conf_str(c->conf, "semantics");
    group_protocol(c, protocol, psize);
    v->group_protocol = protocol;
    ballast_consumer_stats(c, &v->stats, sizeof(v->stats));
    v->latency = &c->stats.latency;
    v->uptime_ms = bl_now_ms() - c->run.started_ms;
    v->poll_headroom_ms = atomic_load(&c->run.running) ? c->set.max_poll_interval_ms - since
                                                       : c->set.max_poll_interval_ms;
    v->healthy = check_health(c, health, size);
    v->ready = check_ready(c, ready, size);
    v->health_reason = health;
    v->ready_reason = ready;
    v->breaker_open = bl_breaker_tripped(&c->breaker);
    v->handler_unavailable = bl_handler_unavailable(c);
    v->processed_per_second = -1;
    pthread_mutex_lock(&c->status.mtx);
    parts = calloc(c->status.count + 1, sizeof(*parts));
    if (parts) {
        memcpy(parts, c->status.snapshot, c->status.count * sizeof(*parts));
        v->nparts = c->status.count;
    }
    v->stats.inflight = c->status.inflight;
    v->stats.inflight_bytes = c->status.inflight_bytes;
    v->inflight_revoked = c->status.revoked;
    pthread_mutex_unlock(&c->status.mtx);
    for (size_t i = 0; i < v->nparts; i++)
        if (parts[i].rate >= 0)
            v->processed_per_second =
                (v->processed_per_second < 0 ? 0 : v->processed_per_second) + parts[i].rate;
    v->parts = parts;
}

char *ballast_consumer_metrics(const ballast_consumer_t *cons)
{
    ballast_consumer_t *c = (ballast_consumer_t *)cons;
    char health[256], ready[512], protocol[32], *text;
    bl_view_t v;

    make_view(c, &v, health, ready, sizeof(health), protocol, sizeof(protocol));
    text = bl_render_metrics(&v);
    free((void *)v.parts);
    return text;
}

char *ballast_consumer_status_json(const ballast_consumer_t *cons)
{
    ballast_consumer_t *c = (ballast_consumer_t *)cons;
    char health[256], ready[512], protocol[32], *text;
    bl_view_t v;

    make_view(c, &v, health, ready, sizeof(health), protocol, sizeof(protocol));
    text = bl_render_status(&v);
    free((void *)v.parts);
    return text;
}

char *ballast_consumer_history_json(const ballast_consumer_t *cons)
{
    ballast_consumer_t *c = (ballast_consumer_t *)cons;
    bl_history_t *copy = NULL;
    char *text;
    bool empty;

    /* Rendered from a copy, so that the poll thread never waits for it. */
    pthread_mutex_lock(&c->status.mtx);
    empty = !c->status.history;
    if (!empty)
        copy = bl_history_copy(c->status.history);
    pthread_mutex_unlock(&c->status.mtx);
    if (!empty && !copy)
        return NULL;
    text = bl_history_render(copy, bl_now_ms());
    bl_history_free(copy);
    return text;
}

void ballast_free(void *ptr)
{
    free(ptr);
}
