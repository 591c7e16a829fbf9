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
 * Version 2 (a child that wrote {"hello":{"protocol":2,"max_inflight":N}}
 * first) also has batch requests, {"id":9,"batch":[request without id,...]},
 * answered by {"id":9,"results":[reply without id,...]}; its replies name
 * their request's id and may come in any order.
 *
 * Reply (one line per request; version 1: in request order):
 *   {"id":7 (optional in version 1: the request it answers), "status":"ok"|"retry"|"fail",
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

/** The protocol version ballast speaks at most. */
#define BL_EXEC_PROTOCOL 2

/** Where a reply goes: the request it answers, a message request (count 1)
 *  or a batch request (version 2) of @p count messages. */
typedef struct bl_exec_target {
    ballast_result_t *const *results; /* one per message */
    ballast_outcome_t *outcomes;      /* one per message */
    size_t count;
    bool batch; /* a batch request: the reply carries "results" */
} bl_exec_target_t;

/**
 * @brief Where a reply goes. @p id is the reply's "id", or -1 when it has
 *        none. @returns true with *t set, or false when no request the
 *        reply may answer has that id (the reply is then MALFORMED).
 */
typedef bool(bl_exec_route_fn)(void *ctx, int64_t id, bl_exec_target_t *t);

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
 *        @p route picks the target by the reply's "id", and nothing is
 *        applied unless the whole reply is well formed for it (a batch
 *        request's reply: "results", one per message, in order).
 * @param idp receives the line's "id" when it is a JSON object with a valid
 *            one, whatever else is wrong with it (-1 otherwise), so that a
 *            bad reply can be pinned on the request it names; may be NULL.
 * Thread-safe.
 */
bl_exec_decode_status_t bl_exec_decode_routed(const char *line, size_t len,
                                              bl_exec_route_fn *route, void *ctx,
                                              int64_t *idp, char **whyp);

/**
 * @brief Encodes a version-2 batch request: {"id":N,"batch":[...]}, each
 *        element a message request without "id". One line, as
 *        bl_exec_encode(). @returns NULL when out of memory.
 */
char *bl_exec_encode_batch(const ballast_message_t *const *msgs, size_t count, uint64_t id,
                           size_t *lenp);

/** What a child's hello says. */
typedef struct bl_exec_hello {
    int64_t protocol;     /* BL_EXEC_PROTOCOL */
    int64_t max_inflight; /* at least 1 */
    char sdk[64];         /* "" when not given */
} bl_exec_hello_t;

typedef enum bl_exec_hello_status {
    BL_EXEC_NOT_HELLO = 0, /* no "hello" member: a reply, or junk */
    BL_EXEC_HELLO_OK,      /* *h filled */
    BL_EXEC_HELLO_BAD,     /* a protocol ballast does not speak, or a bad
                              max_inflight: *whyp says which */
    BL_EXEC_HELLO_NOMEM
} bl_exec_hello_status_t;

/**
 * @brief Reads a child's first line as a hello:
 *        {"hello":{"protocol":2,"max_inflight":N,"sdk":"..."}}.
 * @param whyp receives a malloc'd reason when BL_EXEC_HELLO_BAD (else NULL).
 * Thread-safe.
 */
bl_exec_hello_status_t bl_exec_hello(const char *line, size_t len, bl_exec_hello_t *h,
                                     char **whyp);

/** What ended a child's conversation. */
typedef enum bl_exec_fault {
    BL_EXEC_FAULT_PROTOCOL, /* a bad line */
    BL_EXEC_FAULT_TIMEOUT,  /* a request not answered within handler.timeout.ms */
    BL_EXEC_FAULT_GONE      /* it exited, is incompatible, or was cancelled */
} bl_exec_fault_t;

/** What the open requests get after a fault (indexes into them, in the
 *  order they were written; -1: none). Every other open request is sent
 *  again without an attempt. */
typedef struct bl_exec_blame {
    long attempt;       /* takes an attempt: its message is retried */
    long split;         /* a batch of several: its messages go again one per
                           request, without an attempt */
    bool one_at_a_time; /* the open requests go again one at a time */
} bl_exec_blame_t;

/**
 * @brief Who pays for a fault. @p named is the open request the fault
 *        names (the one that timed out; for a bad line, the open request
 *        its valid "id" names, version 2 only), or -1; a bad line that
 *        names none is pinned on the only open request, if just one is.
 *        @p count is the messages of the request the fault may be pinned
 *        on: the one @p named names, else the oldest of the @p nopen open
 *        ones. Pure (docs/exec-protocol.md, "When the child breaks the
 *        rules").
 */
bl_exec_blame_t bl_exec_blame(bl_exec_fault_t fault, long named, size_t nopen, size_t count);

#endif /* BALLAST_EXECPROTO_H */
