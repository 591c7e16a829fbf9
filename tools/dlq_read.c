/*
 * dlq_read.c - reading a dead-letter topic for `ballast dlq` (dlq.h): the
 * group-less reader, and a view of one record's headers.
 *
 * Reading. The DLQ is read with librdkafka's per-partition ("simple")
 * consumer API, which needs no group.id at all: nothing joins a group.
 * Every partition is read from where the caller says (its beginning, or a
 * replay group's committed offset) up to the high watermark it had when the
 * reader was opened (a snapshot: records that fail again while a replay
 * runs are not replayed again by the same run), read_committed, and a
 * partition counts as read when it reports its end (enable.partition.eof)
 * or reaches its snapshot end.
 *
 * Dead-letter records carry the headers of SPEC.md ("Dead-letter records",
 * BALLAST_HEADER_* in ballast.h): x-original-topic, x-original-partition,
 * x-original-offset, x-original-timestamp, x-retry-count, x-error-message,
 * x-consumer-group, x-failed-at; a replayed record adds x-replay-count and
 * x-replayed-from. Where a name occurs more than once, the last occurrence
 * counts (as for ballast_message_header_find() and `:header.NAME`).
 */
#include "dlq.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dlq_bytes_int64(const void *p, size_t len, int64_t *out)
{
    char buf[32];

    if (!p || !len || len >= sizeof(buf))
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return bl_parse_int64(buf, INT64_MIN, INT64_MAX, out);
}


/* ---- Kafka clients ------------------------------------------------------- */

/* The group-less reader, with the user's -X properties. NULL with a reason
 * on failure. */
static rd_kafka_t *reader_client(const dlq_opts_t *o, char *errbuf, size_t errsize)
{
    const char *const settings[] = {
        "client.id", o->replay ? "ballast-dlq-replay-reader" : "ballast-dlq-inspect",
        "enable.partition.eof", "true",
        "enable.auto.commit", "false",
        "isolation.level", "read_committed",
        "auto.offset.reset", "earliest",
        "fetch.wait.max.ms", "100",
        "queued.max.messages.kbytes", "16384",
        NULL};
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, settings, o->props,
                                         o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- reading the DLQ ------------------------------------------------------ */

static void reader_stop(dlq_reader_t *r)
{
    for (int32_t p = 0; r->started && p < r->nparts; p++)
        if (r->started[p]) {
            rd_kafka_consume_stop(r->rkt, p);
            r->started[p] = false;
        }
    if (r->q)
        rd_kafka_queue_destroy(r->q);
    r->q = NULL;
}

void dlq_reader_close(dlq_reader_t *r)
{
    reader_stop(r);
    if (r->rkt)
        rd_kafka_topic_destroy(r->rkt);
    if (r->rk)
        rd_kafka_destroy(r->rk);
    free(r->low);
    free(r->end);
    free(r->started);
    free(r->done);
    memset(r, 0, sizeof(*r));
}

int dlq_reader_open(dlq_reader_t *r, const dlq_opts_t *o)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    int n;

    memset(r, 0, sizeof(*r));
    if (!(r->rk = reader_client(o, errbuf, sizeof(errbuf)))) {
        cli_error("%s", errbuf);
        return EX_CONFIG;
    }
    /* A broker-only metadata request first: the clearest unreachability test. */
    if ((err = rd_kafka_metadata(r->rk, 0, NULL, &md, o->timeout_ms))) {
        cli_error("cannot reach the broker at %s: %s", o->bootstrap, rd_kafka_err2str(err));
        return EX_UNAVAILABLE;
    }
    rd_kafka_metadata_destroy(md);
    n = cli_partition_count(r->rk, o->topic, o->timeout_ms, errbuf, sizeof(errbuf));
    if (n < 0) {
        cli_error("%s", errbuf);
        return n == CLI_TOPIC_DENIED ? EX_CONFIG : 1;
    }
    if (n == 0) {
        /* A name given on the command line that names nothing: a
         * configuration error, as for `ballast lag -g`. */
        cli_error("topic %s does not exist", o->topic);
        return EX_CONFIG;
    }
    r->nparts = n;
    r->low = calloc((size_t)n, sizeof(*r->low));
    r->end = calloc((size_t)n, sizeof(*r->end));
    r->started = calloc((size_t)n, sizeof(*r->started));
    r->done = calloc((size_t)n, sizeof(*r->done));
    r->rkt = rd_kafka_topic_new(r->rk, o->topic, NULL);
    if (!r->low || !r->end || !r->started || !r->done || !r->rkt) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int32_t p = 0; p < n; p++)
        if ((err = rd_kafka_query_watermark_offsets(r->rk, o->topic, p, &r->low[p],
                                                    &r->end[p], o->timeout_ms))) {
            cli_error("end offsets of %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(err));
            return 1;
        }
    return 0;
}

int dlq_reader_start(dlq_reader_t *r, const dlq_opts_t *o, const int64_t *from)
{
    reader_stop(r);
    /* A fresh queue: nothing of an earlier pass can reach this one. */
    if (!(r->q = rd_kafka_queue_new(r->rk))) {
        cli_error("out of memory");
        return 1;
    }
    r->total = 0;
    r->remaining = 0;
    for (int32_t p = 0; p < r->nparts; p++) {
        int64_t start = from && from[p] >= 0 ? from[p] : RD_KAFKA_OFFSET_BEGINNING;
        int64_t first = start > r->low[p] ? start : r->low[p];
        r->done[p] = first >= r->end[p];
        if (r->done[p])
            continue;
        r->total += (uint64_t)(r->end[p] - first);
        if (rd_kafka_consume_start_queue(r->rkt, p, start, r->q) == -1) {
            cli_error("reading %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(rd_kafka_last_error()));
            return 1;
        }
        r->started[p] = true;
        r->remaining++;
    }
    return 0;
}

int dlq_reader_run(dlq_reader_t *r, const dlq_opts_t *o, dlq_record_fn *cb,
                   dlq_tick_fn *tick, void *arg)
{
    double idle_since = cli_now_s();

    while (r->remaining > 0) {
        rd_kafka_message_t *m;
        int32_t p;

        if (cli_stop_requested)
            return 1; /* the caller says so */
        if (tick)
            tick(arg);
        if (!(m = rd_kafka_consume_queue(r->q, 100))) {
            if (cli_now_s() - idle_since > o->timeout_ms / 1000.0) {
                cli_error("no record from %s for %.1f s while %d partition(s) had not "
                          "reached their end (see --timeout)",
                          o->topic, o->timeout_ms / 1000.0, (int)r->remaining);
                return 1;
            }
            continue;
        }
        p = m->partition;
        if (p < 0 || p >= r->nparts || r->done[p]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            r->done[p] = true;
            r->remaining--;
        } else if (m->err) {
            cli_error("reading %s [%d]: %s", o->topic, (int)p, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return 1;
        } else if (m->offset >= r->end[p]) {
            r->done[p] = true;
            r->remaining--;
        } else {
            int stop = cb(arg, m);
            if (m->offset + 1 >= r->end[p]) {
                r->done[p] = true;
                r->remaining--;
            }
            if (stop) {
                rd_kafka_message_destroy(m);
                return 0;
            }
        }
        rd_kafka_message_destroy(m);
        idle_since = cli_now_s();
    }
    return 0;
}

/* ---- a dead-letter record ---------------------------------------------- */

static const char *const header_names[H_COUNT] = {
    BALLAST_HEADER_ORIGINAL_TOPIC,     BALLAST_HEADER_ORIGINAL_PARTITION,
    BALLAST_HEADER_ORIGINAL_OFFSET,    BALLAST_HEADER_ORIGINAL_TIMESTAMP,
    BALLAST_HEADER_RETRY_COUNT,        BALLAST_HEADER_ERROR_MESSAGE,
    BALLAST_HEADER_CONSUMER_GROUP,     BALLAST_HEADER_FAILED_AT,
    BALLAST_HEADER_REPLAY_COUNT,       BALLAST_HEADER_REPLAYED_FROM};

void dlq_view_init(dlq_view_t *v, const rd_kafka_message_t *m)
{
    memset(v, 0, sizeof(*v));
    v->m = m;
    if (rd_kafka_message_headers(m, &v->hdrs))
        v->hdrs = NULL;
    for (int i = 0; i < H_COUNT && v->hdrs; i++) {
        const void *val;
        size_t size;
        if (!rd_kafka_header_get_last(v->hdrs, header_names[i], &val, &size)) {
            v->h[i].present = true;
            v->h[i].value = val;
            v->h[i].len = val ? size : 0;
        }
    }
    if (!dlq_parse_time(v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, &v->failed_at_ms))
        v->failed_at_ms = -1;
    if (!dlq_bytes_int64(v->h[H_REPLAYS].value, v->h[H_REPLAYS].len, &v->replays) ||
        v->replays < 0)
        v->replays = 0;
}

static bool field_is(const dlq_field_t *f, const char *s, size_t len)
{
    return f->present && f->value && f->len == len && !memcmp(f->value, s, len);
}

/* Tests one --where condition against the record in view @p arg. */
static bool cond_matches(const dlq_cond_t *c, void *arg)
{
    const dlq_view_t *v = arg;
    const void *val;
    size_t size;
    int64_t n;

    switch (c->kind) {
    case DLQ_HEADER:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, c->name, &val, &size) &&
               val && size == c->vlen && !memcmp(val, c->value, size);
    case DLQ_HEADER_PRESENT:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, c->name, &val, &size);
    case DLQ_ERROR_CONTAINS:
        return v->h[H_ERROR].value &&
               memmem(v->h[H_ERROR].value, v->h[H_ERROR].len, c->value, c->vlen);
    case DLQ_ERROR_IS:
        return field_is(&v->h[H_ERROR], c->value, c->vlen);
    case DLQ_AFTER:
        return v->failed_at_ms >= 0 && v->failed_at_ms >= c->num;
    case DLQ_BEFORE:
        return v->failed_at_ms >= 0 && v->failed_at_ms < c->num;
    case DLQ_TOPIC:
        return field_is(&v->h[H_TOPIC], c->value, c->vlen);
    case DLQ_PARTITION:
        return dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &n) &&
               n == c->num;
    case DLQ_KEY:
        return v->m->key && v->m->key_len == c->vlen &&
               !memcmp(v->m->key, c->value, c->vlen);
    }
    return false;
}

bool dlq_matches(const dlq_opts_t *o, const dlq_view_t *v)
{
    for (size_t i = 0; i < o->nwhere; i++)
        if (!dlq_filter_match(o->where[i], cond_matches, (void *)v))
            return false;
    return true;
}

/* ---- text ---------------------------------------------------------------- */

/* Text that can travel as a JSON string (as in the exec protocol: no NUL). */
bool dlq_is_text(const void *p, size_t len)
{
    return !memchr(p, 0, len) && bl_utf8_valid(p, len);
}

/* A table cell: the bytes as text with control characters shown as spaces,
 * cut to @p max characters ("..." marks a cut); "-" when absent; "<N bytes>"
 * when not UTF-8 text. */
void dlq_cell(char *out, size_t size, const void *p, size_t len, size_t max)
{
    const unsigned char *s = p;
    size_t o = 0, chars = 0, total = 0, keep;

    if (!p) {
        snprintf(out, size, "-");
        return;
    }
    if (!dlq_is_text(p, len)) {
        snprintf(out, size, "<%zu bytes>", len);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            total++;
    keep = total <= max ? total : (max > 3 ? max - 3 : 0);
    for (size_t i = 0; i < len && chars < keep;) {
        size_t n = s[i] < 0x80 ? 1 : s[i] < 0xe0 ? 2 : s[i] < 0xf0 ? 3 : 4;
        if (o + n + 4 > size)
            break;
        if (s[i] < 0x20 || s[i] == 0x7f)
            out[o++] = ' ';
        else
            for (size_t k = 0; k < n; k++)
                out[o++] = (char)s[i + k];
        i += n;
        chars++;
    }
    if (chars < total) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

