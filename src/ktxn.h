/*
 * ktxn.h - exactly-once with Kafka outputs: Kafka transactions (ktxn.c).
 * Internal; poll thread only.
 */
#ifndef BALLAST_KTXN_H
#define BALLAST_KTXN_H

#include "runtime.h"

/* Each blocking transaction call's timeout (send_offsets_to_transaction,
 * commit_transaction, abort_transaction). */
#define BL_TXN_TIMEOUT_MS 30000

/** Sets the calls' timeout to BL_TXN_TIMEOUT_MS (construction). */
void bl_ktxn_setup(ballast_consumer_t *c);

/** Initialises the transactional producer, in rounds, within
 *  @p timeout_ms (a stop ends the wait). */
ballast_error_t *bl_ktxn_init(ballast_consumer_t *c, int64_t timeout_ms);

/** Takes a finished message with records: they wait, in offset order,
 *  until every earlier offset of its partition finished (a transaction may
 *  only hold the records of messages whose offsets it commits). */
void bl_ktxn_hold(ballast_consumer_t *c, bl_msg_t *m);
/** Produces the records of held messages that the committable offsets now
 *  cover, in offset order, into the open transaction (opening one). */
void bl_ktxn_flush(ballast_consumer_t *c);

/** Produces the records the offsets cover, sends the committable offsets
 *  and commits. @returns false when it did not commit: then the
 *  transaction was aborted and its partitions flagged for a rewind, or the
 *  pipeline is stopping (a fatal error, or a record refused for good). */
bool bl_ktxn_commit(ballast_consumer_t *c);
/** Aborts the open transaction and flags every partition for a rewind
 *  (after a lost assignment). */
void bl_ktxn_abort(ballast_consumer_t *c);
/** Commits the open transaction once transaction.interval.ms has passed. */
void bl_ktxn_tick(ballast_consumer_t *c);

/** The delivery report of a transactional record (every record, in this
 *  mode): counts it, logs the dead letter it may be, and dooms the
 *  transaction when the broker refused it for good. */
void bl_ktxn_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);

#endif
