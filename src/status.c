/*
 * status.c - what the consumer shows about itself: a per-partition snapshot
 * published by the poll thread, health and readiness, and the metrics and
 * status documents built from them (rendered by observe.c).
 */
#include "runtime.h"

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
    int64_t from = p->committed >= 0 ? p->committed : lo;
    v->lag = hi >= 0 && from >= 0 ? (hi > from ? hi - from : 0) : -1;
    v->lag_ms = v->lag >= 0 ? part_lag_ms(p, v->lag, now_wall) : -1;
    v->rate = p->rate.at_ms ? p->rate.per_second : -1;
}

/* Copies the partitions' state for readers on other threads (poll thread).
 * The in-flight totals are taken at the same moment, so that the status
 * document's total is the sum of its partitions (plus those of partitions
 * revoked while their messages finish). */
void bl_publish_snapshot(ballast_consumer_t *c)
{
    size_t n = 0, i = 0;
    bl_part_view_t *views;
    int64_t now_wall = bl_wall_ms(), now = bl_now_ms();
    uint64_t revoked = 0;
    bool frame;

    for (bl_part_t *p = c->parts; p; p = p->next)
        n++;
    for (bl_part_t *p = c->orphans; p; p = p->next)
        revoked += p->inflight;
    views = calloc(n + 1, sizeof(*views));
    if (!views)
        return;
    pthread_mutex_lock(&c->obs_mtx);
    if (!c->history)
        c->history = bl_history_new();
    frame = c->history && bl_history_due(c->history, now);
    pthread_mutex_unlock(&c->obs_mtx);
    for (bl_part_t *p = c->parts; p; p = p->next, i++) {
        if (frame)
            sample_rate(p, now);
        fill_view(c, p, &views[i], now_wall);
    }
    pthread_mutex_lock(&c->obs_mtx);
    free(c->snapshot);
    c->snapshot = views;
    c->snapshot_count = n;
    c->snapshot_inflight = c->inflight;
    c->snapshot_inflight_bytes = c->inflight_bytes;
    c->snapshot_revoked = revoked;
    /* Out of memory loses a frame's partitions, not the consumer. */
    if (frame)
        (void)bl_history_add(c->history, now, views, n);
    pthread_mutex_unlock(&c->obs_mtx);
}

/* Sums the snapshot's lag (offsets, and the oldest time lag) and paused
 * partitions. Poll thread. */
static void sum_parts(const ballast_consumer_t *c, int64_t *lag, int64_t *lag_ms,
                      size_t *paused)
{
    *lag = 0;
    *lag_ms = -1;
    *paused = 0;
    for (size_t i = 0; i < c->snapshot_count; i++) {
        const bl_part_view_t *v = &c->snapshot[i];
        *lag += v->lag > 0 ? v->lag : 0;
        if (v->lag_ms > *lag_ms)
            *lag_ms = v->lag_ms;
        *paused += v->paused;
    }
}

void bl_log_progress(ballast_consumer_t *c, int64_t now)
{
    uint64_t processed = atomic_load(&c->stats.processed_ok);
    double secs = (double)(now - c->progress_ms) / 1000.0;
    int64_t lag, lag_ms;
    size_t paused;

    if (!c->progress_interval_ms || now - c->progress_ms < c->progress_interval_ms)
        return;
    sum_parts(c, &lag, &lag_ms, &paused);
    bl_log(&c->log, BALLAST_LOG_INFO,
           "progress: %llu processed (%.0f/s), %llu retried, %llu dead-lettered, lag %lld "
           "(%.1f s), %zu in flight, %zu of %zu partition(s) paused",
           (unsigned long long)processed,
           secs > 0 ? (double)(processed - c->progress_processed) / secs : 0.0,
           (unsigned long long)atomic_load(&c->stats.retried),
           (unsigned long long)atomic_load(&c->stats.dead_lettered), (long long)lag,
           lag_ms > 0 ? (double)lag_ms / 1000.0 : 0.0, c->inflight, paused,
           c->snapshot_count);
    c->progress_ms = now;
    c->progress_processed = processed;
}

void bl_log_summary(ballast_consumer_t *c)
{
    int64_t ran = (bl_now_ms() - c->started_ms) / 1000;

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

void bl_status_free(ballast_consumer_t *c)
{
    free(c->snapshot);
    bl_history_free(c->history);
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
    if (atomic_load(&c->breaker)) {
        bl_fmt(reason, size, "%s", c->breaker_reason);
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

    bool transient = false;

    /* Not ready while any worker's latest call failed transiently (its
     * database is down, say): one worker's success must not hide it. */
    for (int i = 0; i < c->nworkers; i++)
        transient = transient || atomic_load(&c->workers[i].transient);
    pthread_mutex_lock(&c->obs_mtx);
    assigned = c->snapshot_count;
    if (atomic_load(&c->unavailable_workers)) {
        bl_fmt(reason, size, "the handler is unavailable: %s", c->unavailable_reason);
        pthread_mutex_unlock(&c->obs_mtx);
        return false;
    }
    if (transient) {
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
    int64_t since = bl_now_ms() - atomic_load(&c->last_poll_ms);

    memset(v, 0, sizeof(*v));
    v->group = c->group;
    v->topics = bl_conf_str(c->conf, "topics");
    v->semantics = bl_conf_str(c->conf, "semantics");
    group_protocol(c, protocol, psize);
    v->group_protocol = protocol;
    ballast_consumer_stats(c, &v->stats, sizeof(v->stats));
    v->latency = &c->latency;
    v->uptime_ms = bl_now_ms() - c->started_ms;
    v->poll_headroom_ms = atomic_load(&c->running) ? c->max_poll_interval_ms - since
                                                   : c->max_poll_interval_ms;
    v->healthy = check_health(c, health, size);
    v->ready = check_ready(c, ready, size);
    v->health_reason = health;
    v->ready_reason = ready;
    v->breaker_open = atomic_load(&c->breaker);
    v->handler_unavailable = atomic_load(&c->unavailable_workers) > 0;
    v->processed_per_second = -1;
    pthread_mutex_lock(&c->obs_mtx);
    parts = calloc(c->snapshot_count + 1, sizeof(*parts));
    if (parts) {
        memcpy(parts, c->snapshot, c->snapshot_count * sizeof(*parts));
        v->nparts = c->snapshot_count;
    }
    v->stats.inflight = c->snapshot_inflight;
    v->stats.inflight_bytes = c->snapshot_inflight_bytes;
    v->inflight_revoked = c->snapshot_revoked;
    pthread_mutex_unlock(&c->obs_mtx);
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
    pthread_mutex_lock(&c->obs_mtx);
    empty = !c->history;
    if (!empty)
        copy = bl_history_copy(c->history);
    pthread_mutex_unlock(&c->obs_mtx);
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
