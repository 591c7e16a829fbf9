/*
 * handlers.h - the built-in handlers. Each is an ordinary ballast_handler_t
 * (the same ABI plugins implement) whose init reads its keys from
 * params->conf. Internal.
 */
#ifndef BALLAST_HANDLERS_H
#define BALLAST_HANDLERS_H

#include "../internal.h"

extern const ballast_handler_t bl_handler_sqlite;   /* sqlite.c */
extern const ballast_handler_t bl_handler_postgres; /* postgres.c */
extern const ballast_handler_t bl_handler_exec;     /* exec.c */
extern const ballast_handler_t bl_handler_plugin;   /* plugin.c */
extern const ballast_handler_t bl_handler_forward;  /* forward.c */

/** Makes the exec handler's call running on @p state (another thread's)
 *  return at once: its child is killed and its messages are UNAVAILABLE.
 *  A cancel with no call running is forgotten by the next call.
 *  Async-safe: one write(2). */
void bl_exec_cancel(void *state);
/**
 * Pipelining (docs/exec-protocol.md, version 2): what a worker hands one
 * exec child. The worker decides which messages may be open together (none
 * of one key, or partition); the handler keeps up to the window open.
 */
typedef struct bl_exec_feed {
    /** The next message to send now, and the result its reply goes into;
     *  NULL when none may go now. */
    ballast_message_t *(*next)(void *ctx, ballast_result_t **resp);
    /** A message sent by next() has its outcome: its reply's, or its
     *  loss's (UNAVAILABLE: no verdict; RETRY: an attempt), with the error
     *  text in its result. Called once per message next() gave. */
    void (*done)(void *ctx, ballast_message_t *msg, ballast_outcome_t outcome);
    /** When next() may have a message again without a reply or a wake-up
     *  (a retry's due time, bl_now_ms()), or 0. */
    int64_t (*due)(void *ctx);
    void *ctx;
} bl_exec_feed_t;

/** handler.exec.max.inflight of an exec handler state. */
size_t bl_exec_max_inflight(const void *state);
/** Sends @p feed's messages to the state's child, up to the window at once,
 *  and reads their replies, until none is open and next() has none. A lost
 *  child settles every open message (done()). Worker thread. */
void bl_exec_pipeline(void *state, const bl_exec_feed_t *feed);
/** Wakes a bl_exec_pipeline() running on @p state (another thread's) to ask
 *  next() again: new messages have arrived. Async-safe: one write(2). */
void bl_exec_wake(void *state);
/** Ends the children of @p n exec handler states together: closes their
 *  stdin, waits up to 5 s for them, then SIGTERM, 2 s, then SIGKILL. The
 *  states stay to be destroyed (which then finds no child). */
void bl_exec_close(void *const *states, size_t n);

/* ---- exactly-once into a database ----------------------------------------
 *
 * With `semantics = exactly-once` and a database handler, the consumer (not
 * the handler) drives each batch's transaction, so that the batch's writes
 * and the next offsets of its partitions commit atomically:
 *
 *   begin -> handle_batch (each message in a savepoint; the handler must not
 *   BEGIN/COMMIT itself while a transaction is open) -> the consumer
 *   dead-letters FAIL messages and waits for the broker's acknowledgement ->
 *   commit(offsets) advances ballast_offsets and COMMITs.
 *
 * Any error before COMMIT succeeds -> rollback, and the whole batch is
 * handled again. The table, created by init in exactly-once mode:
 *   ballast_offsets(group_id TEXT, topic TEXT, partition INTEGER,
 *                   next_offset BIGINT, PRIMARY KEY (group_id, topic, partition))
 *
 * Fencing: commit advances a partition's row only while its next_offset is
 * not past the batch's first offset (a compare-and-set in the upsert's
 * WHERE). A row past it means another member took the partition over and
 * committed this range already: this batch is a zombie's and must never
 * commit. `<=` rather than `==` because offsets have gaps (compaction,
 * transaction markers): a batch may legitimately start above the stored
 * offset. No row yet: the upsert inserts.
 */
typedef struct bl_dbtxn_offset {
    const char *topic;
    int32_t partition;
    int64_t first_offset; /* the batch's first offset of the partition */
    int64_t next_offset;  /* one past its last */
} bl_dbtxn_offset_t;

typedef struct bl_dbtxn_ops {
    /** Opens a transaction. @returns BALLAST_OUTCOME_OK, or _RETRY with a
     *  reason (connection lost, ...). */
    ballast_outcome_t (*begin)(void *state, char *errbuf, size_t errsize);
    /** Advances each partition's offset for @p group (fenced, see above)
     *  and COMMITs. _OK; _RETRY: rolled back, or the COMMIT's outcome is
     *  unknown (errbuf says so; the stored offsets tell); _FAIL: a stored
     *  offset is past the batch's first one (errbuf from
     *  bl_dbtxn_stale_error), rolled back, never to be redone. */
    ballast_outcome_t (*commit)(void *state, const char *group,
                                const bl_dbtxn_offset_t *offsets, size_t count,
                                char *errbuf, size_t errsize);
    /** Rolls back the open transaction, if any. */
    void (*rollback)(void *state);
    /** Reads the stored next offset of a partition: 1 found, 0 none, -1
     *  error (errbuf set). Called on a state of its own (worker = -1). */
    int (*load_offset)(void *state, const char *group, const char *topic,
                       int32_t partition, int64_t *next, char *errbuf,
                       size_t errsize);
} bl_dbtxn_ops_t;

/** Formats the error of a batch whose range of @p off another member
 *  committed already (see Fencing above). */
void bl_dbtxn_stale_error(char *errbuf, size_t errsize, const bl_dbtxn_offset_t *off);

/** The transaction operations of a built-in database handler, or NULL. */
const bl_dbtxn_ops_t *bl_handler_dbtxn_ops(const ballast_handler_t *handler);

/** The built-in handler called @p name (the `handler` key), or NULL. */
const ballast_handler_t *bl_handler_by_name(const char *name);

#endif
