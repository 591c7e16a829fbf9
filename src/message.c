/*
 * message.c - accessors of ballast_message_t and ballast_result_t.
 */
#include "message.h"

#include <stdlib.h>
#include <string.h>

void bl_message_from_rkm(struct ballast_message_s *msg, rd_kafka_message_t *rkm)
{
    rd_kafka_timestamp_type_t tstype;

    memset(msg, 0, sizeof(*msg));
    msg->rkm = rkm;
    msg->topic = rd_kafka_topic_name(rkm->rkt);
    msg->partition = rkm->partition;
    msg->offset = rkm->offset;
    msg->timestamp = rd_kafka_message_timestamp(rkm, &tstype);
    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
        msg->timestamp = -1;
    msg->key = rkm->key;
    msg->key_len = rkm->key ? rkm->key_len : 0;
    msg->value = rkm->payload;
    msg->value_len = rkm->payload ? rkm->len : 0;
    msg->attempt = 1;
    msg->bytes = msg->key_len + msg->value_len;
}

void bl_message_release_payload(struct ballast_message_s *msg, const char *topic)
{
    if (msg->rkm)
        rd_kafka_message_destroy(msg->rkm);
    msg->rkm = NULL;
    msg->topic = topic;
    msg->key = msg->value = NULL;
    msg->key_len = msg->value_len = 0;
    msg->hdrs = NULL;
    msg->hdrs_loaded = false;
}

void bl_message_clear(struct ballast_message_s *msg)
{
    bl_result_reset(&msg->result);
    bl_trace_clear(&msg->trace);
    bl_message_release_payload(msg, msg->topic);
}

const char *ballast_message_topic(const ballast_message_t *msg) { return msg->topic; }
int32_t ballast_message_partition(const ballast_message_t *msg) { return msg->partition; }
int64_t ballast_message_offset(const ballast_message_t *msg) { return msg->offset; }
int64_t ballast_message_timestamp(const ballast_message_t *msg) { return msg->timestamp; }
int ballast_message_attempt(const ballast_message_t *msg) { return msg->attempt; }

const void *ballast_message_key(const ballast_message_t *msg, size_t *lenp)
{
    if (lenp)
        *lenp = msg->key_len;
    return msg->key;
}

const void *ballast_message_value(const ballast_message_t *msg, size_t *lenp)
{
    if (lenp)
        *lenp = msg->value_len;
    return msg->value;
}

/* Headers are parsed by librdkafka on first use; a message is only ever
 * looked at by one worker at a time, so the lazy load needs no lock. */
static rd_kafka_headers_t *message_headers(const ballast_message_t *cmsg)
{
    struct ballast_message_s *msg = (struct ballast_message_s *)cmsg;

    if (!msg->hdrs_loaded && msg->rkm) {
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(msg->rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
            msg->hdrs = hdrs;
        msg->hdrs_loaded = true;
    }
    return msg->hdrs;
}

size_t ballast_message_header_count(const ballast_message_t *msg)
{
    rd_kafka_headers_t *hdrs = message_headers(msg);
    return hdrs ? rd_kafka_header_cnt(hdrs) : 0;
}

int ballast_message_header(const ballast_message_t *msg, size_t idx,
                           const char **namep, const void **valuep,
                           size_t *lenp)
{
    rd_kafka_headers_t *hdrs = message_headers(msg);
    const char *name;
    const void *value;
    size_t len;

    if (!hdrs || idx >= rd_kafka_header_cnt(hdrs) ||
        rd_kafka_header_get_all(hdrs, idx, &name, &value, &len))
        return -1;
    if (namep)
        *namep = name;
    if (valuep)
        *valuep = value;
    if (lenp)
        *lenp = value ? len : 0;
    return 0;
}

int ballast_message_header_find(const ballast_message_t *msg, const char *name,
                                const void **valuep, size_t *lenp)
{
    rd_kafka_headers_t *hdrs = message_headers(msg);
    const void *value;
    size_t len;

    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &value, &len))
        return -1;
    if (valuep)
        *valuep = value;
    if (lenp)
        *lenp = value ? len : 0;
    return 0;
}

bool bl_message_header_int(const struct ballast_message_s *msg, const char *name,
                           int64_t *out)
{
    const void *v;
    size_t len;
    char buf[24];

    if (ballast_message_header_find(msg, name, &v, &len) || !v || len >= sizeof(buf))
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    *out = strtoll(buf, NULL, 10);
    return true;
}

/* ---- trace context -------------------------------------------------------- */

void bl_message_trace_load(struct ballast_message_s *msg, bool start)
{
    const void *tp = NULL, *ts = NULL;
    size_t tp_len = 0, ts_len = 0;

    if (msg->trace.loaded)
        return;
    /* A message without headers costs no lookup: librdkafka answers that
     * without parsing anything. */
    if (ballast_message_header_count(msg)) {
        ballast_message_header_find(msg, BL_TRACE_HEADER_PARENT, &tp, &tp_len);
        ballast_message_header_find(msg, BL_TRACE_HEADER_STATE, &ts, &ts_len);
    }
    bl_trace_init(&msg->trace, tp, tp_len, ts, ts_len, start);
}

const bl_trace_t *bl_message_trace(const struct ballast_message_s *msg)
{
    struct ballast_message_s *m = (struct ballast_message_s *)msg;

    bl_message_trace_load(m, m->trace.start);
    return &m->trace;
}

const char *ballast_message_traceparent(const ballast_message_t *msg)
{
    const bl_trace_t *t = bl_message_trace(msg);

    return t->parent[0] ? t->parent : NULL;
}

const char *ballast_message_tracestate(const ballast_message_t *msg)
{
    return bl_message_trace(msg)->state;
}

/* ---- results ------------------------------------------------------------ */

static void record_free(bl_record_t *rec)
{
    free(rec->topic);
    free(rec->key);
    free(rec->value);
    free(rec->hbuf);
    free(rec->headers);
}

/* Results are reset around every handler call and most hold nothing: the
 * checks skip free(NULL), which jemalloc does not make cheap (about 40
 * instructions each, two or three per message). */
void bl_result_free_records(struct ballast_result_s *res)
{
    if (!res->records)
        return;
    for (size_t i = 0; i < res->record_count; i++)
        record_free(&res->records[i]);
    free(res->records);
    res->records = NULL;
    res->record_count = res->record_cap = 0;
}

void bl_result_reset(struct ballast_result_s *res)
{
    if (res->error) {
        free(res->error);
        res->error = NULL;
    }
    bl_result_free_records(res);
}

void ballast_result_set_error(ballast_result_t *res, const char *message)
{
    char *copy = bl_strdup(message ? message : "");
    if (!copy)
        return; /* keep the previous text rather than lose it */
    free(res->error);
    res->error = copy;
}

/* Copies len bytes; a NULL source stays NULL (a null key or value). */
static int copy_bytes(void **dst, const void *src, size_t len)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = malloc(len ? len : 1);
    if (!*dst)
        return -1;
    memcpy(*dst, src, len);
    return 0;
}

int ballast_result_emit(ballast_result_t *res, const char *topic,
                        const void *key, size_t key_len, const void *value,
                        size_t value_len)
{
    bl_record_t rec = {0}, *recs;

    if (!(recs = bl_grow(res->records, &res->record_cap, res->record_count,
                      sizeof(*recs), 4)))
        return -1;
    res->records = recs;
    if ((topic && !(rec.topic = bl_strdup(topic))) ||
        copy_bytes(&rec.key, key, key_len) ||
        copy_bytes(&rec.value, value, value_len)) {
        record_free(&rec);
        return -1;
    }
    rec.key_len = key ? key_len : 0;
    rec.value_len = value ? value_len : 0;
    rec.has_key = key != NULL;
    rec.has_value = value != NULL;
    res->records[res->record_count++] = rec;
    return 0;
}

/* Makes room for @p more bytes in the record's header buffer; the headers
 * already in it follow it when it moves. */
static int hbuf_reserve(bl_record_t *rec, size_t more)
{
    size_t cap = rec->hbuf_cap ? rec->hbuf_cap : 512;
    char *old = rec->hbuf, *buf;

    if (more > SIZE_MAX / 2 - rec->hbuf_len)
        return -1;
    while (cap < rec->hbuf_len + more)
        cap *= 2;
    if (cap == rec->hbuf_cap)
        return 0;
    if (!(buf = malloc(cap)))
        return -1;
    if (old)
        memcpy(buf, old, rec->hbuf_len);
    for (size_t i = 0; i < rec->header_count; i++) {
        bl_header_t *h = &rec->headers[i];
        h->name = buf + (h->name - old);
        if (h->value)
            h->value = buf + ((char *)h->value - old);
    }
    free(old);
    rec->hbuf = buf;
    rec->hbuf_cap = cap;
    return 0;
}

int ballast_result_emit_header(ballast_result_t *res, const char *name,
                               const void *value, size_t len)
{
    bl_record_t *rec;
    bl_header_t *hdr;
    size_t name_size;

    if (!res->record_count || !name)
        return -1;
    rec = &res->records[res->record_count - 1];
    /* Dead-letter records get about ten headers: room for 8 at once. */
    if (!(hdr = bl_grow(rec->headers, &rec->header_cap, rec->header_count,
                     sizeof(*hdr), 8)))
        return -1;
    rec->headers = hdr;
    name_size = strlen(name) + 1;
    if (!value)
        len = 0;
    /* One buffer for all the record's headers rather than an allocation
     * each: a forwarded record keeps all of its message's headers, and a
     * dead letter in a transaction has eight or more. */
    if (hbuf_reserve(rec, name_size + len))
        return -1;
    hdr = &rec->headers[rec->header_count];
    hdr->name = rec->hbuf + rec->hbuf_len;
    memcpy(hdr->name, name, name_size);
    hdr->value = value ? hdr->name + name_size : NULL;
    if (value)
        memcpy(hdr->value, value, len);
    hdr->len = len;
    rec->hbuf_len += name_size + len;
    rec->header_count++;
    return 0;
}
