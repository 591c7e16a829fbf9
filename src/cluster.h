/*
 * cluster.h - what start-up asks of the Kafka cluster, as verdicts shared
 * by ballast_consumer_new() and ballast_conf_check(): which topics a
 * configuration needs (and the subscription they make), whether one
 * exists, and which connection failures no retry can fix. Internal.
 */
#ifndef BALLAST_CLUSTER_H
#define BALLAST_CLUSTER_H

#include "internal.h"

#include <librdkafka/rdkafka.h>

/** Splits `topics` (comma-separated) into a subscription list. */
rd_kafka_topic_partition_list_t *bl_topic_list(const char *topics);

typedef void (bl_topic_cb)(const char *key, const char *topic, void *opaque);

/** Calls @p cb for each topic @p conf needs on the cluster, with the key
 *  that names it: each of `topics` (patterns, starting with '^',
 *  included), each of `retry.topics`, then `output.topic` and `dlq.topic`
 *  when set. `retry.topics` must have passed ballast_conf_validate(). */
void bl_each_needed_topic(const ballast_conf_t *conf, bl_topic_cb *cb, void *opaque);

/** NULL when @p md lists @p topic without error (a pattern always passes:
 *  it matches what exists), else the configuration error naming @p key. */
ballast_error_t *bl_topic_missing(const struct rd_kafka_metadata *md, const char *key,
                                  const char *topic);

/** The configuration error for a failure librdkafka reported to its
 *  error_cb while connecting that no retry can fix (the broker refused the
 *  credentials, or the TLS handshake failed), or NULL for any other. */
ballast_error_t *bl_kafka_refused(int err, const char *reason);

/** Notes librdkafka's error @p err with @p reason (an error callback's
 *  arguments) as the cause of a failed connection, in *@p error and
 *  @p cause (@p size bytes), unless the cause already kept is a refusal
 *  (credentials, certificate) and this is not: the "all brokers are down"
 *  and transport errors that follow a refusal are its consequence. A
 *  transport error carrying a TLS alert about the client's certificate
 *  (the broker refused it: "alert bad certificate", "alert certificate
 *  required", "alert unknown ca") is noted as a failed handshake,
 *  RD_KAFKA_RESP_ERR__SSL, not a broker out of reach. */
void bl_kafka_note_cause(int *error, char *cause, size_t size, int err, const char *reason);

/** True when a failed metadata request may succeed if asked again. */
bool bl_kafka_waitable(rd_kafka_resp_err_t err);

/** The error for no broker answering within @p timeout_ms; @p reason is
 *  librdkafka's last complaint. */
ballast_error_t *bl_kafka_unreachable(const ballast_conf_t *conf, int64_t timeout_ms,
                                      const char *reason);

/** The error for a broker that does not serve the consumer group protocol
 *  (kafka.group.protocol = consumer: KIP-848, Kafka 4.0 or later); @p reason
 *  is librdkafka's. */
ballast_error_t *bl_group_protocol_refused(const ballast_conf_t *conf, const char *reason);

#endif
