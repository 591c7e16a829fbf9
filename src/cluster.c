/*
 * cluster.c - start-up's verdicts on the Kafka cluster (see cluster.h).
 */
#include "cluster.h"

#include "tiers.h"

#include <string.h>

void bl_each_needed_topic(const ballast_conf_t *conf, bl_topic_cb *cb, void *opaque)
{
    rd_kafka_topic_partition_list_t *inputs = bl_topic_list(bl_conf_str(conf, "topics"));
    static const char *const outputs[] = {"output.topic", "dlq.topic"};
    bl_tiers_t tiers = {NULL, 0};
    char err[256];

    for (int i = 0; i < inputs->cnt; i++)
        cb("topics", inputs->elems[i].topic, opaque);
    rd_kafka_topic_partition_list_destroy(inputs);
    if (!bl_tiers_parse(bl_conf_str(conf, "retry.topics"), &tiers, err, sizeof(err)))
        for (size_t i = 0; i < tiers.count; i++)
            cb("retry.topics", tiers.tiers[i].topic, opaque);
    bl_tiers_free(&tiers);
    for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++)
        if (*bl_conf_str(conf, outputs[i]))
            cb(outputs[i], bl_conf_str(conf, outputs[i]), opaque);
}

ballast_error_t *bl_topic_missing(const struct rd_kafka_metadata *md, const char *key,
                                  const char *topic)
{
    if (topic[0] == '^')
        return NULL;
    for (int t = 0; t < md->topic_cnt; t++)
        if (!strcmp(md->topics[t].topic, topic) && !md->topics[t].err)
            return NULL;
    return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                        "%s: topic \"%s\" does not exist on the cluster", key, topic);
}

/* Whether @p err is a refusal no retry can fix: the broker refused the
 * credentials, or the TLS handshake failed. */
static bool is_refusal(int err)
{
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
           err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
           err == RD_KAFKA_RESP_ERR__SSL;
}

void bl_kafka_note_cause(int *error, char *cause, size_t size, int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT && reason && strstr(reason, " alert ") &&
        (strstr(reason, "certificate") || strstr(reason, "unknown ca")))
        err = RD_KAFKA_RESP_ERR__SSL;
    if (is_refusal(*error) && !is_refusal(err))
        return;
    *error = err;
    bl_fmt(cause, size, "%s", reason);
}

ballast_error_t *bl_kafka_refused(int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka.sasl.*: the broker refused authentication: %s", reason);
    if (err == RD_KAFKA_RESP_ERR__SSL)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka.ssl.*: TLS with the broker failed (certificate or "
                            "protocol): %s",
                            reason);
    return NULL;
}

bool bl_kafka_waitable(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
}

ballast_error_t *bl_kafka_unreachable(const ballast_conf_t *conf, int64_t timeout_ms,
                                      const char *reason)
{
    return bl_error_new(BALLAST_ERR_UNREACHABLE, true, false,
                        "kafka.bootstrap.servers: no broker reachable at \"%s\" within "
                        "%lld ms (%s)",
                        bl_conf_str(conf, "kafka.bootstrap.servers"), (long long)timeout_ms,
                        reason);
}

/* Splits `topics` into a librdkafka subscription list. */
rd_kafka_topic_partition_list_t *bl_topic_list(const char *topics)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    const char *s = topics;

    while (s && *s) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        char name[512];
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > s && (size_t)(end - s) < sizeof(name)) {
            memcpy(name, s, (size_t)(end - s));
            name[end - s] = '\0';
            rd_kafka_topic_partition_list_add(list, name, RD_KAFKA_PARTITION_UA);
        }
        s = comma ? comma + 1 : NULL;
    }
    return list;
}

ballast_error_t *bl_group_protocol_refused(const ballast_conf_t *conf, const char *reason)
{
    return bl_error_new(BALLAST_ERR_UNREACHABLE, false, false,
                        "kafka.group.protocol: the broker at \"%s\" does not serve the "
                        "consumer group protocol (KIP-848: Kafka 4.0 or later), so no "
                        "member can join; use kafka.group.protocol = classic with it (%s)",
                        bl_conf_str(conf, "kafka.bootstrap.servers"), reason);
}
