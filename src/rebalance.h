/*
 * rebalance.h - assignments and revocations, where partitions start, and
 * rewinds (rebalance.c). Internal; poll thread.
 */
#ifndef BALLAST_REBALANCE_H
#define BALLAST_REBALANCE_H

#include "runtime.h"

/** librdkafka's rebalance_cb: assigns or revokes (inside
 *  rd_kafka_consumer_poll, on the poll thread). */
void bl_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *list, void *opaque);

/** Rewinds the partitions flagged for it (parts.c), whichever engine
 *  flagged them: after an aborted Kafka transaction (ktxn.c), to the
 *  group's committed offsets; after a fenced database batch (dbtxn.c), to
 *  the database's. What was in flight for them is dropped. The poll loop's
 *  one place for every rewind. */
void bl_rewind(ballast_consumer_t *c);

#endif
