/*
 * exec_exchange.h - the exec handler's exchanges with its child
 * (exec_exchange.c), for the handler proper (exec.c). The pipeline's entry
 * points, which the worker calls, are in handlers.h. Internal to the two.
 */
#ifndef BALLAST_EXEC_EXCHANGE_H
#define BALLAST_EXEC_EXCHANGE_H

#include "exec_child.h"

/** Runs one call (handle, or handle_batch when @p batch_call): sends @p msgs
 *  to the child, restarting it first when its back-off has passed, and reads
 *  the replies into @p results and @p outcomes; a message without a reply
 *  gets RETRY or UNAVAILABLE as the top of exec_exchange.c tells. */
void bl_exec_exchange(exec_state_t *st, const ballast_message_t *const *msgs,
                      ballast_result_t *const *results, size_t count,
                      ballast_outcome_t *outcomes, bool batch_call);

#endif
