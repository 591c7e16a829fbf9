/*
 * producer.c - the producer behind emitted records and dead-letter records,
 * and the dead-letter record format.
 */
#include "producer.h"

#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Produces a copy of key, value and @p hdrs (which it takes, and frees on
 * failure too). */
static rd_kafka_resp_err_t produce_copy(rd_kafka_t *rk, const char *topic, const void *key,
                                        size_t key_len, const void *value,
                                        size_t value_len, rd_kafka_headers_t *hdrs,
                                        void *opaque)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, (key ? key_len : 0)),
        /* copied (F_COPY), never written */
        RD_KAFKA_V_VALUE((void *)value, (value ? value_len : 0)), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);

    /* The producer takes ownership of hdrs only on success. */
    if (err && hdrs)
        rd_kafka_headers_destroy(hdrs);
    return err;
}

bool bl_record_refused(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default:
        return false;
    }
}

/* Where failure headers go: a ballast record, or librdkafka's headers. */
typedef int (*header_fn)(void *sink, const char *name, const void *value, size_t len);

static int add_text(header_fn add, void *sink, const char *name, const char *text)
{
    return add(sink, name, text, strlen(text));
}

static int kafka_header(void *hdrs, const char *name, const void *value, size_t len)
{
    return rd_kafka_header_add(hdrs, name, -1, value, (ssize_t)len) ? -1 : 0;
}

/* ---- trace context ---------------------------------------------------------- */

/* Adds the trace headers of a record produced for a message with context
 * @p trace: the message's child context with the message's tracestate, or
 * the handler's own traceparent @p own (version-00 form) when it set one,
 * with the tracestate @p state it set (else the message's, when @p own is
 * of the same trace). A tracestate goes with the span that wrote it: one
 * on a record without a traceparent of the handler's own is a copy, and
 * one beside no traceparent means nothing. */
static int add_trace(header_fn add, void *sink, const bl_trace_t *trace, const char *own,
                     const bl_header_t *state)
{
    char child[BL_TRACEPARENT_LEN + 1];

    if (!own && !bl_trace_child(trace, child))
        return 0;
    if (add_text(add, sink, BL_TRACE_HEADER_PARENT, own ? own : child))
        return -1;
    if (own && state)
        return add(sink, BL_TRACE_HEADER_STATE, state->value, state->len);
    return trace->state && (!own || !memcmp(own + 3, trace->parent + 3, 32))
               ? add_text(add, sink, BL_TRACE_HEADER_STATE, trace->state)
               : 0;
}

/* Whether @p h is a trace header of a handler's record, which
 * add_trace() writes instead: a traceparent the handler set itself (valid,
 * and not the message's own, which a copy of the message's headers
 * carries) goes to @p own, the last valid tracestate to *statep; anything
 * else of those names is dropped. */
static bool trace_header(const bl_header_t *h, const bl_trace_t *trace,
                         char own[BL_TRACEPARENT_LEN + 1], const bl_header_t **statep)
{
    char tp[BL_TRACEPARENT_LEN + 1];

    if (h->name[0] != 't')
        return false;
    if (!strcmp(h->name, BL_TRACE_HEADER_PARENT)) {
        if (bl_traceparent_parse(h->value, h->len, tp) && strcmp(tp, trace->parent))
            memcpy(own, tp, sizeof(tp));
        return true;
    }
    if (!strcmp(h->name, BL_TRACE_HEADER_STATE)) {
        if (bl_tracestate_valid(h->value, h->len))
            *statep = h;
        return true;
    }
    return false;
}

rd_kafka_resp_err_t bl_produce_record(rd_kafka_t *rk, const bl_record_t *rec,
                                      const char *default_topic, const bl_trace_t *trace,
                                      void *opaque)
{
    const char *topic = rec->topic ? rec->topic : default_topic;
    rd_kafka_headers_t *hdrs = NULL;
    const bl_header_t *state = NULL;
    char own[BL_TRACEPARENT_LEN + 1] = "";

    if (!topic || !*topic)
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (rec->header_count || trace->parent[0]) {
        hdrs = rd_kafka_headers_new(rec->header_count + 2);
        for (size_t i = 0; i < rec->header_count; i++)
            if (!trace_header(&rec->headers[i], trace, own, &state))
                rd_kafka_header_add(hdrs, rec->headers[i].name, -1,
                                    rec->headers[i].value,
                                    (ssize_t)rec->headers[i].len);
        add_trace(kafka_header, hdrs, trace, own[0] ? own : NULL, state);
    }
    return produce_copy(rk, topic, rec->has_key ? rec->key : NULL, rec->key_len,
                        rec->has_value ? rec->value : NULL, rec->value_len, hdrs, opaque);
}

/* ---- failure records ---------------------------------------------------------- */

/* A decimal header, without printf: a failure record has up to six. */
static int add_int(header_fn add, void *sink, const char *name, long long v)
{
    char buf[24], *p = buf + sizeof(buf);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    *--p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return add_text(add, sink, name, p);
}

/* Headers a failure record rewrites; every other header is kept. The
 * trace context goes on as the message's child (add_trace()). */
static bool rewritten(const char *name)
{
    static const char *const names[] = {
        BALLAST_HEADER_RETRY_COUNT,    BALLAST_HEADER_ERROR_MESSAGE,
        BALLAST_HEADER_FAILED_AT,      BALLAST_HEADER_CONSUMER_GROUP,
        BALLAST_HEADER_RETRY_DUE,      BALLAST_HEADER_RETRY_TIER,
        BL_TRACE_HEADER_PARENT,        BL_TRACE_HEADER_STATE};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

/* The message's x-retry-count, or -1 when absent. */
static long previous_retries(const ballast_message_t *msg)
{
    int64_t n;

    return bl_message_header_int(msg, BALLAST_HEADER_RETRY_COUNT, &n) ? (long)n : -1;
}

/* Adds every header of a failure record for @p msg through @p add. */
static int failure_headers(const ballast_message_t *msg, const bl_failure_t *f,
                           header_fn add, void *sink)
{
    size_t count = ballast_message_header_count(msg);
    bool has_origin =
        !ballast_message_header_find(msg, BALLAST_HEADER_ORIGINAL_TOPIC, NULL, NULL);
    long prev = previous_retries(msg);
    char when[40];

    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *hv;
        size_t hlen;
        if (!ballast_message_header(msg, i, &name, &hv, &hlen) && !rewritten(name) &&
            add(sink, name, hv, hlen))
            return -1;
    }
    /* A message coming back from a retry tier keeps its first origin. */
    if (!has_origin) {
        if (add_text(add, sink, BALLAST_HEADER_ORIGINAL_TOPIC, ballast_message_topic(msg)) ||
            add_int(add, sink, BALLAST_HEADER_ORIGINAL_PARTITION,
                    ballast_message_partition(msg)) ||
            add_int(add, sink, BALLAST_HEADER_ORIGINAL_OFFSET, ballast_message_offset(msg)) ||
            add_int(add, sink, BALLAST_HEADER_ORIGINAL_TIMESTAMP,
                    ballast_message_timestamp(msg)))
            return -1;
    }
    /* Retries so far: this hop's attempts after the first, plus one for
     * every earlier hop's delivery, plus what earlier hops counted. */
    if (add_int(add, sink, BALLAST_HEADER_RETRY_COUNT,
                prev < 0 ? (f->attempts > 0 ? f->attempts - 1 : 0) : prev + f->attempts))
        return -1;
    if (add_text(add, sink, BALLAST_HEADER_ERROR_MESSAGE,
                 f->error ? f->error : "unknown error") ||
        add_text(add, sink, BALLAST_HEADER_CONSUMER_GROUP, f->group))
        return -1;
    bl_iso8601(bl_wall_ms(), when, sizeof(when));
    if (add_text(add, sink, BALLAST_HEADER_FAILED_AT, when))
        return -1;
    if (f->due_ms >= 0 && (add_int(add, sink, BALLAST_HEADER_RETRY_DUE, f->due_ms) ||
                           add_int(add, sink, BALLAST_HEADER_RETRY_TIER, f->tier)))
        return -1;
    return add_trace(add, sink, bl_message_trace(msg), NULL, NULL);
}

static int result_header(void *res, const char *name, const void *value, size_t len)
{
    return ballast_result_emit_header(res, name, value, len);
}

int bl_failure_record(const ballast_message_t *msg, const bl_failure_t *f,
                      ballast_result_t *res)
{
    size_t klen, vlen;
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);

    if (ballast_result_emit(res, f->topic, key, klen, value, vlen))
        return -1;
    return failure_headers(msg, f, result_header, res);
}

rd_kafka_resp_err_t bl_produce_failure(rd_kafka_t *rk, const ballast_message_t *msg,
                                       const bl_failure_t *f, void *opaque)
{
    size_t klen, vlen;
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);
    rd_kafka_headers_t *hdrs =
        rd_kafka_headers_new(ballast_message_header_count(msg) + 12);

    if (failure_headers(msg, f, kafka_header, hdrs)) {
        rd_kafka_headers_destroy(hdrs);
        return RD_KAFKA_RESP_ERR__INVALID_ARG; /* a header without a name */
    }
    return produce_copy(rk, f->topic, key, klen, value, vlen, hdrs, opaque);
}
