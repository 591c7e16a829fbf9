/*
 * txnwatch.c - the transaction watchdog (exactly-once into Kafka).
 *
 * librdkafka's transaction calls block the poll thread for up to the
 * timeout they are given. librdkafka 2.14 can stay inside one far past it
 * after a transaction coordinator died (docs/reliability.md, "Findings");
 * the poll loop then stops for good. The poll thread records here which
 * call it entered and when (ktxn.c), and ballast_consumer_stalled() tells
 * any thread when that call has overrun its timeout by more than
 * BL_TXN_OVERRUN_MARGIN_MS.
 *
 * The library only reports it: the poll thread cannot be taken back from
 * inside librdkafka, so the way out is to end the process, and that is the
 * embedding program's decision (`ballast run` exits 1, tools/stallwatch.c).
 *
 * The record is three atomics, written by the poll thread alone: entering
 * sets the call and its timeout, then the start; leaving clears the start
 * first. A reader takes the start before and after the rest and believes
 * the record only when the two agree, so a call and another's start are
 * never combined into an overrun.
 */
#include "txnwatch.h"

#include <stdio.h>

void bl_txnwatch_init(ballast_consumer_t *c)
{
    c->txnwatch.margin_ms = BL_TXN_OVERRUN_MARGIN_MS;
}

void bl_txnwatch_enter(ballast_consumer_t *c, const char *call, int64_t timeout_ms)
{
    atomic_store(&c->txnwatch.call, call);
    atomic_store(&c->txnwatch.timeout_ms, timeout_ms);
    atomic_store(&c->txnwatch.since_ms, bl_now_ms());
    if (c->txnwatch.hook)
        c->txnwatch.hook(c, call);
}

void bl_txnwatch_leave(ballast_consumer_t *c)
{
    atomic_store(&c->txnwatch.since_ms, 0);
    atomic_store(&c->txnwatch.call, NULL);
}

bool bl_txnwatch_current(const ballast_consumer_t *c, const char **call,
                         int64_t *elapsed_ms, int64_t *timeout_ms)
{
    /* The atomics are read through a pointer to non-const: C11's
     * atomic_load takes one. */
    bl_txnwatch_t *w = (bl_txnwatch_t *)&c->txnwatch;
    int64_t since = atomic_load(&w->since_ms);

    if (!since)
        return false;
    *call = atomic_load(&w->call);
    *timeout_ms = atomic_load(&w->timeout_ms);
    if (!*call || atomic_load(&w->since_ms) != since)
        return false;
    *elapsed_ms = bl_now_ms() - since;
    return true;
}

ballast_error_t *ballast_consumer_stalled(const ballast_consumer_t *c)
{
    const char *call;
    int64_t elapsed, timeout;

    ballast_error_t *err;

    if (!c || !bl_txnwatch_current(c, &call, &elapsed, &timeout) ||
        elapsed <= timeout + c->txnwatch.margin_ms)
        return NULL;
    err = bl_error_new(BALLAST_ERR_STALLED, false, true,
                        "kafka: %s has not returned after %.1f s (its timeout is %.1f s): "
                        "librdkafka is stuck in the transaction and the poll loop with it; "
                        "only a restart recovers (the broker aborts the open transaction "
                        "and fences this producer)",
                        call, (double)elapsed / 1000.0, (double)timeout / 1000.0);
    /* Logged once, whoever asks and however often. */
    if (!atomic_exchange(&((ballast_consumer_t *)c)->txnwatch.reported, true))
        bl_log(&c->log, BALLAST_LOG_ERROR, "%s", ballast_error_message(err));
    return err;
}
