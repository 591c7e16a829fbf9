/*
 * producer.h - producing emitted and dead-letter records. Internal.
 */
#ifndef BALLAST_PRODUCER_H
#define BALLAST_PRODUCER_H

#include "internal.h"
#include "trace.h"

#include <librdkafka/rdkafka.h>

/**
 * Produces @p rec (copied) to its topic, or @p default_topic when it has
 * none; @p opaque comes back in the delivery report. @p trace is the
 * context of the message the record is for: the record carries its child
 * (and its tracestate), unless the handler set a valid traceparent of its
 * own; a malformed traceparent, or a copy of the message's, never goes
 * out. Thread-safe.
 */
rd_kafka_resp_err_t bl_produce_record(rd_kafka_t *rk, const bl_record_t *rec,
                                      const char *default_topic, const bl_trace_t *trace,
                                      void *opaque);

/**
 * True for a produce or delivery error that retrying the same record can
 * never fix: too large, no such topic, invalid. (Not authorised is not
 * among them: an operator may grant it, and an aborted transaction is
 * redone.) Pure.
 */
bool bl_record_refused(rd_kafka_resp_err_t err);

/** Where and why a failed message goes (a retry tier or the DLQ). */
typedef struct bl_failure {
    const char *topic;  /* the tier or dead-letter topic */
    const char *group;  /* x-consumer-group */
    const char *error;  /* x-error-message */
    int attempts;       /* handler attempts in this hop */
    int64_t due_ms;     /* retry tiers: epoch ms when it may run again; -1 */
    int tier;           /* retry tiers: the tier's index */
} bl_failure_t;

/**
 * Appends to @p res one record carrying @p msg to f->topic: key, value and
 * headers preserved, plus x-original-topic, x-original-partition,
 * x-original-offset, x-original-timestamp (kept from the first hop when the
 * message already has them), x-retry-count (cumulative), x-error-message,
 * x-consumer-group, x-failed-at, for retry tiers x-retry-due and
 * x-retry-tier, and the child of the message's trace context (traceparent,
 * and its tracestate) when it has one. @returns 0, or -1 when out of
 * memory.
 */
int bl_failure_record(const ballast_message_t *msg, const bl_failure_t *f,
                      ballast_result_t *res);

/**
 * Produces the record bl_failure_record() would append, straight from
 * @p msg (copied) without building it first; @p opaque comes back in the
 * delivery report. Thread-safe.
 */
rd_kafka_resp_err_t bl_produce_failure(rd_kafka_t *rk, const ballast_message_t *msg,
                                       const bl_failure_t *f, void *opaque);

#endif
