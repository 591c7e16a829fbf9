/*
 * observe.c - renders metrics (Prometheus text format 0.0.4) and the JSON
 * status document from a snapshot of the consumer, and keeps the latency
 * histogram. Lag metrics use kafka_exporter's names and labels so existing
 * dashboards work; ballast's own metrics are prefixed ballast_.
 */
#include "observe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds; chosen to span a fast in-memory handler to a slow HTTP call. */
static const double bucket_bounds[BL_HIST_BUCKETS] = {
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,    0.25,  0.5,    1,     2.5,  10};

void bl_histogram_observe_n(bl_histogram_t *h, int64_t micros, size_t n)
{
    double secs = (double)micros / 1e6;
    size_t i = 0;

    while (i < BL_HIST_BUCKETS && secs > bucket_bounds[i])
        i++;
    atomic_fetch_add(&h->buckets[i], n);
    atomic_fetch_add(&h->count, n);
    atomic_fetch_add(&h->sum_us, (uint_fast64_t)(micros < 0 ? 0 : micros) * n);
}

void bl_histogram_observe(bl_histogram_t *h, int64_t micros)
{
    bl_histogram_observe_n(h, micros, 1);
}

static void header(FILE *fp, const char *name, const char *type, const char *help)
{
    fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `NAME{consumergroup="GROUP"` with the brace left open for more labels:
 * every sample carries the group, as kafka_consumergroup_lag does, so that
 * the metrics of several pipelines scraped together stay apart. */
static void open_sample(FILE *fp, const bl_view_t *v, const char *name)
{
    fprintf(fp, "%s{consumergroup=\"", name);
    bl_prom_label(fp, v->group);
    fputc('"', fp);
}

static void counter(FILE *fp, const bl_view_t *v, const char *name, const char *help,
                    uint64_t value)
{
    header(fp, name, "counter", help);
    open_sample(fp, v, name);
    fprintf(fp, "} %llu\n", (unsigned long long)value);
}

static void gauge(FILE *fp, const bl_view_t *v, const char *name, const char *help,
                  double value)
{
    header(fp, name, "gauge", help);
    open_sample(fp, v, name);
    fputs("} ", fp);
    bl_prom_number(fp, value);
    fputc('\n', fp);
}

/* One sample per partition, labelled as kafka_exporter labels them. */
static void part_sample(FILE *fp, const bl_view_t *v, const char *name,
                        const bl_part_view_t *p, double value)
{
    open_sample(fp, v, name);
    fputs(",topic=\"", fp);
    bl_prom_label(fp, p->topic);
    fprintf(fp, "\",partition=\"%d\"} ", (int)p->partition);
    bl_prom_number(fp, value);
    fputc('\n', fp);
}

static void render_lag(FILE *fp, const bl_view_t *v)
{
    header(fp, "kafka_consumergroup_lag", "gauge",
           "High watermark minus committed offset, per partition.");
    for (size_t i = 0; i < v->nparts; i++)
        if (v->parts[i].lag >= 0)
            part_sample(fp, v, "kafka_consumergroup_lag", &v->parts[i],
                        (double)v->parts[i].lag);
    header(fp, "kafka_consumergroup_lag_seconds", "gauge",
           "Age of the oldest message not yet committed, per partition "
           "(0 when caught up).");
    for (size_t i = 0; i < v->nparts; i++)
        if (v->parts[i].lag_ms >= 0)
            part_sample(fp, v, "kafka_consumergroup_lag_seconds", &v->parts[i],
                        (double)v->parts[i].lag_ms / 1000.0);
    header(fp, "ballast_partition_paused", "gauge",
           "1 when ballast paused the partition (backpressure or shutdown).");
    for (size_t i = 0; i < v->nparts; i++)
        part_sample(fp, v, "ballast_partition_paused", &v->parts[i],
                    v->parts[i].paused ? 1 : 0);
}

static void render_latency(FILE *fp, const bl_view_t *v)
{
    static const char name[] = "ballast_processing_seconds";
    const bl_histogram_t *h = v->latency;
    uint64_t cumulative = 0;

    header(fp, name, "histogram",
           "Handler time per message (a batch's time is shared by its "
           "messages).");
    for (size_t i = 0; i <= BL_HIST_BUCKETS; i++) {
        cumulative += atomic_load(&h->buckets[i]);
        open_sample(fp, v, "ballast_processing_seconds_bucket");
        if (i < BL_HIST_BUCKETS) {
            fputs(",le=\"", fp);
            bl_prom_number(fp, bucket_bounds[i]);
            fputc('"', fp);
        } else {
            fputs(",le=\"+Inf\"", fp);
        }
        fprintf(fp, "} %llu\n", (unsigned long long)cumulative);
    }
    open_sample(fp, v, "ballast_processing_seconds_sum");
    fputs("} ", fp);
    bl_prom_number(fp, (double)atomic_load(&h->sum_us) / 1e6);
    fputc('\n', fp);
    open_sample(fp, v, "ballast_processing_seconds_count");
    fprintf(fp, "} %llu\n", (unsigned long long)cumulative);
}

static void render_outcomes(FILE *fp, const bl_view_t *v)
{
    static const char name[] = "ballast_messages_processed_total";

    header(fp, name, "counter", "Final handler outcomes, by outcome.");
    open_sample(fp, v, name);
    fprintf(fp, ",outcome=\"ok\"} %llu\n", (unsigned long long)v->stats.processed_ok);
    open_sample(fp, v, name);
    fprintf(fp, ",outcome=\"failed\"} %llu\n", (unsigned long long)v->stats.failed);
}

static void write_metrics(FILE *fp, const void *arg)
{
    const bl_view_t *v = arg;
    const ballast_stats_t *s = &v->stats;

    render_lag(fp, v);
    counter(fp, v, "ballast_messages_consumed_total", "Messages received from Kafka.",
            s->consumed);
    render_outcomes(fp, v);
    counter(fp, v, "ballast_retries_total", "Handler retry attempts.", s->retried);
    counter(fp, v, "ballast_dlq_records_total",
            "Dead-letter records acknowledged by the broker.", s->dead_lettered);
    counter(fp, v, "ballast_emitted_records_total",
            "Records produced by handlers and acknowledged.", s->emitted);
    counter(fp, v, "ballast_commits_total", "Synchronous offset commits and "
            "acknowledged auto-commits.", s->commits);
    counter(fp, v, "ballast_commit_failures_total", "Offset commits that failed.",
            s->commit_errors);
    counter(fp, v, "ballast_rebalances_total", "Partition assignment changes.",
            s->rebalances);
    counter(fp, v, "ballast_redeliveries_skipped_total",
            "Redelivered messages not handled again: finished before a restart, "
            "as recorded in the commit metadata.",
            s->skipped_done);
    counter(fp, v, "ballast_offset_metadata_truncated_total",
            "Commits whose record of offsets finished out of order did not fit "
            "(those are redone after a restart).",
            s->metadata_truncated);
    counter(fp, v, "ballast_db_batches_fenced_total",
            "Exactly-once into a database: batches refused because another member "
            "had committed past them (dropped; the partitions were rewound).",
            s->fenced_batches);
    gauge(fp, v, "ballast_inflight_messages", "Messages received and not finished.",
          (double)s->inflight);
    gauge(fp, v, "ballast_inflight_bytes", "Key+value bytes received and not finished.",
          (double)s->inflight_bytes);
    gauge(fp, v, "ballast_paused_partitions", "Partitions paused by ballast.",
          (double)s->paused_partitions);
    gauge(fp, v, "ballast_poll_interval_headroom_seconds",
          "max.poll.interval.ms minus the time since the last poll.",
          (double)v->poll_headroom_ms / 1000.0);
    gauge(fp, v, "ballast_up", "1 while healthy (see /healthz).", v->healthy ? 1 : 0);
    gauge(fp, v, "ballast_ready", "1 while ready (see /readyz).", v->ready ? 1 : 0);
    gauge(fp, v, "ballast_dlq_breaker_open",
          "1 once the DLQ breaker tripped: consumption is paused until a restart.",
          v->breaker_open ? 1 : 0);
    gauge(fp, v, "ballast_handler_unavailable",
          "1 while the handler cannot run (its process or database is down): "
          "consumption is paused and its messages wait.",
          v->handler_unavailable ? 1 : 0);
    gauge(fp, v, "ballast_uptime_seconds", "Seconds since the consumer started.",
          (double)v->uptime_ms / 1000.0);
    render_latency(fp, v);
}

char *bl_render_metrics(const bl_view_t *v)
{
    return bl_text(write_metrics, v);
}

/* An integer, or null when unknown (negative). */
static json_t *opt_int(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

/* A rate rounded to 0.01 messages per second, or null when unknown. */
static json_t *opt_rate(double v)
{
    return v < 0 ? json_null() : json_real((double)(int64_t)(v * 100 + 0.5) / 100);
}

char *bl_render_status(const bl_view_t *v)
{
    const ballast_stats_t *s = &v->stats;
    json_t *parts = json_array(), *root;
    char *text;

    for (size_t i = 0; i < v->nparts; i++) {
        const bl_part_view_t *p = &v->parts[i];
        json_array_append_new(
            parts,
            json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:I, s:b, s:o}", "topic", p->topic,
                      "partition", (int)p->partition, "committed", opt_int(p->committed),
                      "high_watermark", opt_int(p->high_watermark), "lag", opt_int(p->lag),
                      "lag_seconds",
                      p->lag_ms < 0 ? json_null() : json_real((double)p->lag_ms / 1000.0),
                      "inflight", (json_int_t)p->inflight, "paused", p->paused,
                      "processed_per_second", opt_rate(p->rate)));
    }
    root = json_pack(
        "{s:s, s:s, s:s, s:s, s:f, s:b, s:s, s:b, s:s, s:b, s:b, s:f, s:o, s:o, s:{s:I, s:I, "
        "s:I, "
        "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
        "group", v->group, "group_protocol", v->group_protocol, "topics", v->topics,
        "semantics", v->semantics, "uptime_seconds", (double)v->uptime_ms / 1000.0,
        "healthy", v->healthy, "health_reason", v->health_reason, "ready", v->ready,
        "ready_reason", v->ready_reason, "dlq_breaker_open", v->breaker_open,
        "handler_unavailable", v->handler_unavailable, "poll_headroom_seconds",
        (double)v->poll_headroom_ms / 1000.0, "processed_per_second",
        opt_rate(v->processed_per_second), "partitions", parts, "stats", "consumed",
        (json_int_t)s->consumed, "processed_ok", (json_int_t)s->processed_ok, "retried",
        (json_int_t)s->retried, "failed", (json_int_t)s->failed, "dead_lettered",
        (json_int_t)s->dead_lettered, "emitted", (json_int_t)s->emitted, "commits",
        (json_int_t)s->commits, "commit_errors", (json_int_t)s->commit_errors,
        "rebalances", (json_int_t)s->rebalances, "inflight", (json_int_t)s->inflight,
        "inflight_bytes", (json_int_t)s->inflight_bytes, "inflight_revoked",
        (json_int_t)v->inflight_revoked, "paused_partitions",
        (json_int_t)s->paused_partitions);
    if (!root)
        return NULL;
    text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(root);
    return text;
}
