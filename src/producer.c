/*
 * producer.c - the producer behind emitted records and dead-letter records,
 * and the dead-letter record format.
 */
#include "producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rd_kafka_resp_err_t bl_produce_record(rd_kafka_t *rk, const bl_record_t *rec,
                                      const char *default_topic, void *opaque)
{
    const char *topic = rec->topic ? rec->topic : default_topic;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;

    if (!topic || !*topic)
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (rec->header_count) {
        hdrs = rd_kafka_headers_new(rec->header_count);
        for (size_t i = 0; i < rec->header_count; i++)
            rd_kafka_header_add(hdrs, rec->headers[i].name, -1,
                                rec->headers[i].value,
                                (ssize_t)rec->headers[i].len);
    }
    /* The producer takes ownership of hdrs only on success. */
    err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(rec->has_key ? rec->key : NULL, rec->key_len),
        RD_KAFKA_V_VALUE(rec->has_value ? rec->value : NULL, rec->value_len),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err && hdrs)
        rd_kafka_headers_destroy(hdrs);
    return err;
}

/* Adds a text header to the record emitted last. */
static int add_text(ballast_result_t *res, const char *name, const char *text)
{
    return ballast_result_emit_header(res, name, text, strlen(text));
}

/* Adds a decimal header to the record emitted last (without printf: a
 * dead-letter record has up to six of them). */
static int add_int(ballast_result_t *res, const char *name, long long v)
{
    char buf[24], *p = buf + sizeof(buf);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    *--p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return add_text(res, name, p);
}

/* Headers a failure record rewrites; every other header is kept. */
static bool rewritten(const char *name)
{
    static const char *const names[] = {"x-retry-count", "x-error-message",
                                        "x-failed-at",   "x-consumer-group",
                                        "x-retry-due",   "x-retry-tier"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

/* The message's x-retry-count, or -1 when absent. */
static long previous_retries(const ballast_message_t *msg)
{
    const void *v;
    size_t len;
    char buf[24];

    if (ballast_message_header_find(msg, "x-retry-count", &v, &len) || !v ||
        len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtol(buf, NULL, 10);
}

int bl_failure_record(const ballast_message_t *msg, const bl_failure_t *f,
                      ballast_result_t *res)
{
    size_t klen, vlen, count = ballast_message_header_count(msg);
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);
    bool has_origin = !ballast_message_header_find(msg, "x-original-topic", NULL, NULL);
    long prev = previous_retries(msg);
    char when[40];

    if (ballast_result_emit(res, f->topic, key, klen, value, vlen))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *hv;
        size_t hlen;
        if (!ballast_message_header(msg, i, &name, &hv, &hlen) && !rewritten(name) &&
            ballast_result_emit_header(res, name, hv, hlen))
            return -1;
    }
    /* A message coming back from a retry tier keeps its first origin. */
    if (!has_origin) {
        if (add_text(res, "x-original-topic", ballast_message_topic(msg)) ||
            add_int(res, "x-original-partition", ballast_message_partition(msg)) ||
            add_int(res, "x-original-offset", ballast_message_offset(msg)) ||
            add_int(res, "x-original-timestamp", ballast_message_timestamp(msg)))
            return -1;
    }
    /* Retries so far: this hop's attempts after the first, plus one for
     * every earlier hop's delivery, plus what earlier hops counted. */
    if (add_int(res, "x-retry-count",
                prev < 0 ? (f->attempts > 0 ? f->attempts - 1 : 0) : prev + f->attempts))
        return -1;
    if (add_text(res, "x-error-message", f->error ? f->error : "unknown error") ||
        add_text(res, "x-consumer-group", f->group))
        return -1;
    bl_iso8601(bl_wall_ms(), when, sizeof(when));
    if (add_text(res, "x-failed-at", when))
        return -1;
    if (f->due_ms >= 0 &&
        (add_int(res, "x-retry-due", f->due_ms) || add_int(res, "x-retry-tier", f->tier)))
        return -1;
    return 0;
}
