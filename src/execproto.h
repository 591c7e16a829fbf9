/* execproto.h - the exec handler's wire format: JSON lines each way. Internal.
 *
 * Request (one line per message; docs/exec-protocol.md is the contract):
 *   {"id":7,"attempt":1,"topic":"t","partition":0,"offset":42,
 *    "timestamp":1700000000000,"key":"k","value":"v","headers":{"name":"text"}}
 * "id" numbers the requests sent to one child (1, 2, ...); "attempt" is the
 * message's attempt (1 on its first delivery to the handler).
 * Bytes that are valid UTF-8 without NUL travel as JSON strings; other key or
 * value bytes travel as "key_b64"/"value_b64" (standard base64, padded)
 * instead of "key"/"value", and such header values under
 * "headers_b64":{"name":"b64"}. An absent key, a tombstone value, a null
 * header value and a missing timestamp are JSON null. When a message has
 * several headers with one name, the last one wins (as with
 * ballast_message_header_find()). A message with a trace context also has
 * "traceparent" (ballast_message_traceparent()) and, beside it, its
 * "tracestate" when it has one; the headers keep the raw values.
 *
 * Reply (one line per request, in request order):
 *   {"id":7 (optional: the request it answers), "status":"ok"|"retry"|"fail",
 *    "error":"why" (optional),
 *    "emit":[{"topic":"t" (optional: output.topic), "key"|"key_b64",
 *             "value"|"value_b64", "headers":{...}, "headers_b64":{...}}]}
 * Unknown members are ignored so that either side can grow.
 *
 * The codec is pure (jansson only): no I/O, no global state, thread-safe.
 */
#ifndef BALLAST_EXECPROTO_H
#define BALLAST_EXECPROTO_H

#include "internal.h"

/** What bl_exec_decode() made of a reply line. */
typedef enum bl_exec_decode_status {
    BL_EXEC_DECODED = 0, /* outcome, error text and emits were applied */
    BL_EXEC_MALFORMED,   /* the line breaks the protocol; *whyp says how */
    BL_EXEC_NOMEM        /* out of memory; nothing was applied */
} bl_exec_decode_status_t;

/**
 * @brief Encodes @p msg as one request line: compact JSON, no embedded
 *        newline, terminated by '\n' (and a NUL not counted in *lenp).
 * @returns a malloc'd line the caller frees, or NULL when out of memory.
 *          Thread-safe; reads @p msg only (its headers are loaded lazily,
 *          so the caller must own the message as for any handler call).
 */
char *bl_exec_encode(const ballast_message_t *msg, uint64_t id, size_t *lenp);

/**
 * @brief Decodes one reply line (@p len bytes, without its '\n') and, when it
 *        is well formed, applies it to @p res: the child's error text with
 *        ballast_result_set_error() and its records with ballast_result_emit()
 *        / ballast_result_emit_header(), all or nothing.
 * @param outcomep receives the reply's status when BL_EXEC_DECODED.
 * @param whyp     receives, when BL_EXEC_MALFORMED, a malloc'd one-line
 *                 description the caller frees (NULL if even that could not
 *                 be allocated); otherwise NULL.
 * Thread-safe.
 */
bl_exec_decode_status_t bl_exec_decode(const char *line, size_t len,
                                       ballast_result_t *res,
                                       ballast_outcome_t *outcomep,
                                       char **whyp);

/**
 * @brief Where a reply goes: the result and outcome of the request the
 *        reply answers. @p id is the reply's "id", or -1 when it has none.
 * @returns the result, with *outcomepp set, or NULL when no request the
 *          reply may answer has that id (the reply is then MALFORMED).
 */
typedef ballast_result_t *(bl_exec_route_fn)(void *ctx, int64_t id,
                                             ballast_outcome_t **outcomepp);

/**
 * @brief Which open request a version-1 reply answers (replies come in
 *        request order): the oldest one, which a reply that names an id
 *        must name. @p first_id is the id of request 0, @p sent and
 *        @p done the requests written and the replies matched so far, @p id
 *        the reply's "id" (-1: none).
 * @returns the request's index, or -1 when the reply answers no request
 *          (none is open, or it names another id). Pure.
 */
long bl_exec_pair_in_order(uint64_t first_id, size_t sent, size_t done, int64_t id);

/**
 * @brief bl_exec_decode() for a child with several requests outstanding:
 *        @p route picks the result by the reply's "id" once the reply is
 *        known to be well formed, and nothing is applied unless it says
 *        where. Thread-safe.
 */
bl_exec_decode_status_t bl_exec_decode_routed(const char *line, size_t len,
                                              bl_exec_route_fn *route, void *ctx,
                                              char **whyp);

#endif /* BALLAST_EXECPROTO_H */
