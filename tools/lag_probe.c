/*
 * lag_probe.c - time lag: the age of the message at a committed offset,
 * read by a group-less consumer (the legacy per-partition API, which needs
 * no group.id at all) that fetches from each offset asked about and reads
 * the timestamp of the first message there.
 *
 * Partitions are probed a chunk at a time, each chunk on a consumer of its
 * own, so that memory stays bounded however many partitions lag.
 *
 * Several offsets of one partition (several groups reading it) share one
 * fetch: it starts at the lowest, each message answers every offset at or
 * below it, and a gap wider than SEEK_GAP is crossed by a seek rather than
 * read through. An offset whose message does not arrive by the deadline
 * keeps an unknown time lag rather than a guessed one.
 */
#include "lagmon.h"

#include <stdlib.h>
#include <string.h>

/* Offsets closer than this are read through rather than sought: a seek
 * discards what was fetched and fetches again. */
#define SEEK_GAP 500

/* Partitions one consumer fetches at once: each costs it some KiB, and a
 * cluster has thousands. */
#define CHUNK_PARTITIONS 500

/* The asks of one partition: asks[first..first+count) of the sorted asks. */
typedef struct probe_part {
    rd_kafka_topic_t *rkt;
    const char *topic;
    int32_t partition;
    size_t first, count;
    size_t next; /* the first ask not answered yet, from first */
    int64_t from; /* where the fetch (re)started: earlier messages are stale */
} probe_part_t;

static int ask_cmp(const void *a, const void *b)
{
    const lag_probe_t *x = *(lag_probe_t *const *)a, *y = *(lag_probe_t *const *)b;
    int c = lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
    return c ? c : (x->offset > y->offset) - (x->offset < y->offset);
}

static int part_key_cmp(const void *key, const void *elem)
{
    const probe_part_t *k = key, *e = elem;
    return lag_tp_cmp(k->topic, k->partition, e->topic, e->partition);
}

/* Answers the asks of @p pp up to offset @p upto (all when negative) with
 * @p seconds. @returns how many. */
static size_t answer(probe_part_t *pp, lag_probe_t **asks, int64_t upto, double seconds)
{
    size_t n = 0;

    while (pp->next < pp->count && (upto < 0 || asks[pp->first + pp->next]->offset <= upto)) {
        asks[pp->first + pp->next]->lag_seconds = seconds;
        pp->next++;
        n++;
    }
    return n;
}

/* Handles one message of the probe. @returns the asks it answered. */
static size_t on_message(probe_part_t *parts, size_t nparts, lag_probe_t **asks,
                         const rd_kafka_message_t *msg)
{
    probe_part_t key, *pp;
    int64_t ts, age;

    if (!msg->rkt)
        return 0;
    key.topic = rd_kafka_topic_name(msg->rkt);
    key.partition = msg->partition;
    if (!(pp = bsearch(&key, parts, nparts, sizeof(*parts), part_key_cmp)) ||
        pp->next >= pp->count)
        return 0;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return answer(pp, asks, -1, 0); /* only control records (transaction markers) left */
    if (msg->err)
        return answer(pp, asks, -1, -1);
    if (msg->offset < pp->from)
        return 0;
    ts = rd_kafka_message_timestamp(msg, NULL);
    age = bl_wall_ms() - ts;
    size_t n = answer(pp, asks, msg->offset, ts < 0 ? -1 : age > 0 ? (double)age / 1000.0 : 0);
    if (pp->next < pp->count) {
        int64_t want = asks[pp->first + pp->next]->offset;
        if (want > msg->offset + SEEK_GAP && !rd_kafka_seek(pp->rkt, pp->partition, want, 0))
            pp->from = want;
    }
    return n;
}

/* Groups the sorted asks by partition and starts a fetch for each on @p q.
 * @returns the partitions (caller frees), with *nparts, or NULL. */
static probe_part_t *start_fetches(rd_kafka_t *rk, rd_kafka_queue_t *q, lag_probe_t **asks,
                                   size_t n, size_t *nparts, size_t *pending)
{
    probe_part_t *parts = calloc(n, sizeof(*parts));
    size_t np = 0;

    if (!parts)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        probe_part_t *pp = np ? &parts[np - 1] : NULL;
        if (pp && pp->partition == asks[i]->partition && !strcmp(pp->topic, asks[i]->topic)) {
            pp->count++;
            continue;
        }
        pp = &parts[np++];
        pp->topic = asks[i]->topic;
        pp->partition = asks[i]->partition;
        pp->first = i;
        pp->count = 1;
        pp->from = asks[i]->offset;
    }
    for (size_t k = 0; k < np; k++) {
        probe_part_t *pp = &parts[k];
        /* Handles are refcounted per topic by librdkafka. */
        if ((pp->rkt = rd_kafka_topic_new(rk, pp->topic, NULL)) &&
            rd_kafka_consume_start_queue(pp->rkt, pp->partition, pp->from, q) == -1) {
            rd_kafka_topic_destroy(pp->rkt);
            pp->rkt = NULL;
        }
        if (!pp->rkt)
            pp->next = pp->count; /* stays unknown */
        else
            *pending += pp->count;
    }
    *nparts = np;
    return parts;
}

/* Reads the ages of @p n sorted asks on a client of their own. */
static void probe_chunk(const lag_opts_t *o, lag_probe_t **asks, size_t n, int64_t deadline_ms)
{
    char errbuf[512];
    probe_part_t *parts;
    size_t nparts = 0, pending = 0;
    rd_kafka_queue_t *q;
    rd_kafka_t *rk;

    if (!(rk = lag_client_new(o, true, errbuf, sizeof(errbuf))))
        return;
    q = rd_kafka_queue_new(rk);
    parts = start_fetches(rk, q, asks, n, &nparts, &pending);
    while (parts && pending) {
        int64_t left = deadline_ms - bl_wall_ms();
        rd_kafka_message_t *msg;
        if (left <= 0 || cli_stop_requested)
            break;
        if (!(msg = rd_kafka_consume_queue(q, (int)(left > 200 ? 200 : left))))
            continue;
        pending -= on_message(parts, nparts, asks, msg);
        rd_kafka_message_destroy(msg);
    }
    for (size_t k = 0; parts && k < nparts; k++)
        if (parts[k].rkt) {
            rd_kafka_consume_stop(parts[k].rkt, parts[k].partition);
            rd_kafka_topic_destroy(parts[k].rkt);
        }
    free(parts);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

void lag_probe_ages(const lag_opts_t *o, lag_probe_t *probes, size_t n, int64_t deadline_ms)
{
    lag_probe_t **asks;

    for (size_t i = 0; i < n; i++)
        probes[i].lag_seconds = -1;
    if (!n || !(asks = malloc(n * sizeof(*asks))))
        return;
    for (size_t i = 0; i < n; i++)
        asks[i] = &probes[i];
    qsort(asks, n, sizeof(*asks), ask_cmp);
    /* A chunk of at most CHUNK_PARTITIONS partitions at a time (the asks of
     * one partition are side by side). */
    for (size_t first = 0, end; first < n; first = end) {
        size_t partitions = 1;
        for (end = first + 1; end < n; end++) {
            bool same = asks[end]->partition == asks[end - 1]->partition &&
                        !strcmp(asks[end]->topic, asks[end - 1]->topic);
            if (!same && ++partitions > CHUNK_PARTITIONS)
                break;
        }
        probe_chunk(o, asks + first, end - first, deadline_ms);
    }
    free(asks);
}
