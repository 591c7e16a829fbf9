/*
 * trace.h - W3C Trace Context (https://www.w3.org/TR/trace-context/) for
 * the records ballast consumes and produces: reading a `traceparent`,
 * deriving the child context that goes on what ballast produces for a
 * message, and starting a fresh one (`tracing = on`). Pure policy: no
 * Kafka; the only I/O is getrandom(2) in bl_trace_random().
 *
 * A traceparent is "VV-TTTT...(32)-PPPP...(16)-FF": version, trace-id,
 * parent-id (the id of the span that sent the record) and flags, all
 * lowercase hex. Version ff, uppercase hex, an all-zero trace-id or
 * parent-id, or a wrong length make it invalid, and an invalid one is
 * treated as absent (never passed on). A later version is read as the
 * specification asks (its first four fields, when what follows them
 * starts with '-') and passed on as version 00, the version ballast
 * speaks.
 */
#ifndef BALLAST_TRACE_H
#define BALLAST_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BL_TRACE_HEADER_PARENT "traceparent"
#define BL_TRACE_HEADER_STATE "tracestate"
/** Length of a version-00 traceparent, without its NUL. */
#define BL_TRACEPARENT_LEN 55
/** Room for bl_trace_log_tag()'s " trace=<32 hex>". */
#define BL_TRACE_TAG_SIZE 48

/** A message's trace context, looked up once per message. */
typedef struct bl_trace {
    /* The incoming traceparent in version-00 form, or the one started for
     * the message (tracing = on); "" when it has none. */
    char parent[BL_TRACEPARENT_LEN + 1];
    /* ballast's own span for the message: the parent-id of the records
     * it produces for it (their child context). */
    uint8_t span[8];
    /* The incoming tracestate (NUL-terminated copy), kept only next to a
     * valid incoming traceparent; NULL when none. */
    char *state;
    bool loaded; /* looked up (bl_trace_init() ran) */
    bool start;  /* tracing = on for the message: a lookup that finds no
                    valid traceparent starts a context */
} bl_trace_t;

/**
 * @brief Reads a traceparent of @p len bytes at @p text (not
 *        NUL-terminated; NULL: absent).
 * @returns true when it is valid, and then writes its version-00 form
 *          (BL_TRACEPARENT_LEN characters and a NUL) to @p out. Pure.
 */
bool bl_traceparent_parse(const void *text, size_t len, char out[BL_TRACEPARENT_LEN + 1]);

/**
 * @brief Writes the child of the valid version-00 traceparent @p parent:
 *        the same trace-id and flags, @p span as its parent-id (an
 *        all-zero span, which the format forbids, gets its last bit set).
 *        Pure.
 */
void bl_traceparent_child(const char *parent, const uint8_t span[8],
                          char out[BL_TRACEPARENT_LEN + 1]);

/**
 * @brief Writes a fresh traceparent from 24 random bytes: the first 16 are
 *        the trace-id, the last 8 the parent-id, flags 01 (sampled); an
 *        all-zero id gets its last bit set. Pure.
 */
void bl_traceparent_root(const uint8_t rnd[24], char out[BL_TRACEPARENT_LEN + 1]);

/**
 * @brief Whether @p text (@p len bytes) may travel as a tracestate: one or
 *        more printable ASCII characters, the specification's alphabet.
 *        Its finer list grammar is not checked: the value belongs to the
 *        tracing systems and is passed on as is. Pure.
 */
bool bl_tracestate_valid(const void *text, size_t len);

/**
 * @brief Fills @p buf with @p n random bytes from getrandom(2), through a
 *        small per-thread pool so that a message costs no system call of
 *        its own. @returns 0, or -1 when the kernel gives none.
 *        Thread-safe.
 */
int bl_trace_random(void *buf, size_t n);

/**
 * @brief Looks a message's context up, once: @p tp / @p ts are its
 *        traceparent and tracestate header values (NULL: absent). A valid
 *        traceparent is kept with its tracestate (copied); without one,
 *        @p start starts a fresh context and otherwise the message has
 *        none. A message with a context gets a fresh span. Out of memory
 *        for the tracestate copy drops the tracestate only. Any thread
 *        that owns @p t.
 */
void bl_trace_init(bl_trace_t *t, const void *tp, size_t tp_len, const void *ts,
                   size_t ts_len, bool start);

/** Frees what bl_trace_init() kept and forgets the context: the next
 *  bl_trace_init() looks again. */
void bl_trace_clear(bl_trace_t *t);

/**
 * @brief The child context of what ballast produces for the message.
 * @returns false, writing nothing, when the message has no context.
 */
bool bl_trace_child(const bl_trace_t *t, char out[BL_TRACEPARENT_LEN + 1]);

/**
 * @returns " trace=<trace-id>" (written to @p buf) for a log line about a
 *          message with a context, else "".
 */
const char *bl_trace_log_tag(const bl_trace_t *t, char buf[BL_TRACE_TAG_SIZE]);

#endif
