/*
 * producer.h - producing emitted and dead-letter records. Internal.
 */
#ifndef BALLAST_PRODUCER_H
#define BALLAST_PRODUCER_H

#include "internal.h"

#include <librdkafka/rdkafka.h>

/**
 * Produces @p rec (copied) to its topic, or @p default_topic when it has
 * none; @p opaque comes back in the delivery report. Thread-safe.
 */
rd_kafka_resp_err_t bl_produce_record(rd_kafka_t *rk, const bl_record_t *rec,
                                      const char *default_topic, void *opaque);

/**
 * Replaces nothing: appends to @p res one dead-letter record for @p msg on
 * @p dlq_topic: key, value and headers preserved, plus x-original-topic,
 * x-original-partition, x-original-offset, x-original-timestamp,
 * x-retry-count, x-error-message, x-consumer-group and x-failed-at.
 * @returns 0, or -1 when out of memory.
 */
int bl_dlq_record(const ballast_message_t *msg, const char *dlq_topic,
                  const char *group, const char *error, int attempts,
                  ballast_result_t *res);

#endif
