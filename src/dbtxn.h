/*
 * dbtxn.h - exactly-once into a database (dbtxn.c): the database's
 * transactions hold both a batch's writes and its partitions' next offsets.
 * Internal.
 */
#ifndef BALLAST_DBTXN_H
#define BALLAST_DBTXN_H

#include "runtime.h"

/** One database transaction over @p msgs (a batch, or consecutive
 *  messages in message mode), on worker @p w: begin, handle, dead-letter
 *  the failures, commit the writes with the next offsets. In message mode
 *  the transaction may take fewer than @p n (settings.group_ms passed
 *  first). @returns how many messages it settled or dropped. */
size_t bl_dbtxn_process(bl_worker_t *w, bl_msg_t **msgs, size_t n);

/** Reads the database's next offset of each partition of @p list into its
 *  offset (left as it is where the database has none), on the loader's
 *  state, retrying until the drain timeout. @returns false (a fatal error
 *  recorded) when the database did not answer. Poll thread. */
bool bl_dbtxn_load_offsets(ballast_consumer_t *c, rd_kafka_topic_partition_list_t *list);

#endif
