/*
 * message.h - the message view handed to handlers (ballast_message_t) and
 * the bookkeeping the runtime keeps with it. Internal.
 *
 * A message wraps a librdkafka message without copying key, value or
 * headers. Tests may build one without librdkafka by filling the public
 * fields and leaving rkm NULL (headers then come from `hdrs` if set).
 */
#ifndef BALLAST_MESSAGE_H
#define BALLAST_MESSAGE_H

#include "internal.h"
#include "trace.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>

struct bl_part;
struct bl_signal;

/* What finishing a message means for its partition's committed offset. */
enum {
    BL_FATE_DONE = 0, /* handled (or dead-lettered): its offset may commit */
    BL_FATE_DROPPED,  /* not handled (revoked, shutting down): comes back */
    BL_FATE_FAILED    /* failed permanently with no DLQ: the pipeline stops */
};

struct ballast_message_s {
    /* The view. */
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since epoch, -1 when absent */
    const void *key;   /* NULL: absent */
    size_t key_len;
    const void *value; /* NULL: tombstone */
    size_t value_len;
    rd_kafka_headers_t *hdrs; /* NULL: no headers; owned by rkm when set */
    bool hdrs_loaded;
    int attempt; /* 1 on the first delivery */
    bl_trace_t trace; /* its trace context (bl_message_trace()) */

    /* Runtime bookkeeping (parts.c, dispatch.c, outcome.c, emit.c). */
    rd_kafka_message_t *rkm; /* owned; destroyed with the message */
    struct bl_part *part;
    uint64_t seq; /* position in the partition's tracker */
    size_t bytes;
    ballast_outcome_t outcome;
    struct ballast_result_s result;
    atomic_int pending_emits; /* records not yet acknowledged, +1 until the
                                 worker has handed the message back */
    struct bl_signal *waiter; /* a worker waiting for this message's deliveries */
    int fate;     /* BL_FATE_*: what finishing it means for its offset */
    /* Where the message failed to (bl_emit_fail_over() in emit.c). */
    int failure_tier;       /* the retry tier's index, or -1: the DLQ */
    int64_t failure_due_ms; /* retry tiers: when it may run again; else -1 */
    bool failure_pending;   /* the poll thread is to produce the record */
    bool failed_over;       /* its one record is that tier or DLQ copy */
    int lane;               /* pipeline.c: its lane while a worker holds it */
    struct ballast_message_s *next;
};

/** Fills the view from a consumed librdkafka message (takes ownership). */
void bl_message_from_rkm(struct ballast_message_s *msg, rd_kafka_message_t *rkm);
/** Releases the consumed message (rkm, and with it key, value, headers and
 *  the fetch buffer librdkafka keeps alive for it) and points the view's
 *  topic at @p topic, a copy that outlives the message; partition, offset
 *  and the result stay. Any thread that owns the message. */
void bl_message_release_payload(struct ballast_message_s *msg, const char *topic);
/** The number at the start of header @p name's value (as strtoll reads it),
 *  in @p out. @returns false when the message has no such header, or its
 *  value is empty or longer than 23 bytes. */
bool bl_message_header_int(const struct ballast_message_s *msg, const char *name,
                           int64_t *out);
/** The message's trace context, looked up at its first use (later calls
 *  return it as it is): its traceparent and tracestate headers, read only
 *  when it has headers, or a fresh context when it has no valid
 *  traceparent and its trace.start is set (tracing = on). Lazily, so that
 *  a message nobody asks about never has its headers parsed. The lookup
 *  only fills the message's cache, hence the const. */
const bl_trace_t *bl_message_trace(const struct ballast_message_s *msg);
/** Looks the message's trace context up now, once (later calls do nothing),
 *  as bl_message_trace() would, with @p start for trace.start.
 *  Any thread that owns the message, before its payload is released. */
void bl_message_trace_load(struct ballast_message_s *msg, bool start);
/** Releases what the message owns (rkm, result, trace context); not the
 *  struct itself. */
void bl_message_clear(struct ballast_message_s *msg);

#endif /* BALLAST_MESSAGE_H */
