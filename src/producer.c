/*
 * producer.c - the producer behind emitted records and dead-letter records,
 * and the dead-letter record format.
 */
#include "producer.h"

#include <stdio.h>
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

int bl_dlq_record(const ballast_message_t *msg, const char *dlq_topic,
                  const char *group, const char *error, int attempts,
                  ballast_result_t *res)
{
    size_t klen, vlen, count = ballast_message_header_count(msg);
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);
    char num[32], when[40];

    if (ballast_result_emit(res, dlq_topic, key, klen, value, vlen))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *hv;
        size_t hlen;
        if (!ballast_message_header(msg, i, &name, &hv, &hlen) &&
            ballast_result_emit_header(res, name, hv, hlen))
            return -1;
    }
    if (add_text(res, "x-original-topic", ballast_message_topic(msg)))
        return -1;
    bl_fmt(num, sizeof(num), "%d", (int)ballast_message_partition(msg));
    if (add_text(res, "x-original-partition", num))
        return -1;
    bl_fmt(num, sizeof(num), "%lld", (long long)ballast_message_offset(msg));
    if (add_text(res, "x-original-offset", num))
        return -1;
    bl_fmt(num, sizeof(num), "%lld", (long long)ballast_message_timestamp(msg));
    if (add_text(res, "x-original-timestamp", num))
        return -1;
    bl_fmt(num, sizeof(num), "%d", attempts > 0 ? attempts - 1 : 0);
    if (add_text(res, "x-retry-count", num))
        return -1;
    if (add_text(res, "x-error-message", error ? error : "unknown error") ||
        add_text(res, "x-consumer-group", group))
        return -1;
    bl_iso8601(bl_wall_ms(), when, sizeof(when));
    return add_text(res, "x-failed-at", when);
}
