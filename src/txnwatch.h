/*
 * txnwatch.h - the transaction watchdog's record: which blocking Kafka
 * transaction call the poll thread is in, since when, with what timeout
 * (see txnwatch.c).
 */
#ifndef BALLAST_TXNWATCH_H
#define BALLAST_TXNWATCH_H

#include "runtime.h"

/* A call that has not returned this long after its timeout is taken as
 * hung inside librdkafka (ballast_consumer_stalled()). */
#define BL_TXN_OVERRUN_MARGIN_MS 30000

/** Sets the margin to BL_TXN_OVERRUN_MARGIN_MS (construction). */
void bl_txnwatch_init(ballast_consumer_t *c);

/** Records that the poll thread enters @p call (a librdkafka function's
 *  name, a static string) with @p timeout_ms. Poll thread. */
void bl_txnwatch_enter(ballast_consumer_t *c, const char *call, int64_t timeout_ms);

/** Records that the call returned. Poll thread. */
void bl_txnwatch_leave(ballast_consumer_t *c);

/** The call the poll thread is in: true with @p call, how long it has run
 *  (@p elapsed_ms) and its @p timeout_ms; false when it is in none. Any
 *  thread. */
bool bl_txnwatch_current(const ballast_consumer_t *c, const char **call,
                         int64_t *elapsed_ms, int64_t *timeout_ms);

#endif
