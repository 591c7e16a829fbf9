/*
 * msggroup.c - message mode into PostgreSQL, grouped. A worker that holds
 * consecutive messages runs them in one database transaction (the
 * handler's bl_dbtxn_ops_t, as exactly-once does), each message in a
 * savepoint of its own (the handler's statements while a transaction is
 * open), and COMMITs once the group has settings.group_max messages, has
 * been open settings.group_ms, or the worker's slice ends: a worker never
 * idles with a transaction open, so a message that arrives alone runs
 * alone, at once. A group's messages are settled (OK: finished, its offset
 * committable; FAIL: dead-lettered) only after its COMMIT returned, so a
 * kill loses the group's rows and offsets together and the messages are
 * delivered again.
 *
 * What ends a group early: a message that fails for good (rolled back to
 * its savepoint; the group commits without it and the failure is settled
 * right after, in order, as without groups); a message whose outcome is
 * RETRY or UNAVAILABLE, or a COMMIT that fails: the group is rolled back and
 * its messages run again one by one, each in a transaction of its own, with
 * the usual retries. Order holds: one worker runs a lane's messages in
 * order, and a group that runs again does so in the same order.
 */
#include "msggroup.h"

#include "outcome.h"

/* Runs @p msgs one by one, each in a transaction of its own (the handler's
 * own, no group open), with the usual retries. */
static void run_alone(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bl_msg_t *m = msgs[i];
        if (m->fate == BL_FATE_DROPPED)
            continue;
        if (bl_outcome_halted(w) || bl_outcome_must_drop(w->cons, m))
            m->fate = BL_FATE_DROPPED;
        else
            bl_outcome_run(w, &m, 1);
    }
}

/* Runs messages from @p msgs[0] in the open transaction until @p n ran,
 * settings.group_ms passed, one failed, or the run halted. @returns how
 * many it took; *broken when the last came back RETRY or UNAVAILABLE (the
 * transaction can then only be rolled back). */
static size_t group_fill(bl_worker_t *w, bl_msg_t **msgs, size_t n, bool *broken)
{
    ballast_consumer_t *c = w->cons;
    int64_t until = bl_now_ms() + c->set.group_ms;
    size_t j = 0;

    *broken = false;
    while (j < n && (j == 0 || bl_now_ms() < until) && !bl_outcome_halted(w)) {
        bl_msg_t *m = msgs[j++];
        if (bl_outcome_must_drop(c, m)) {
            m->fate = BL_FATE_DROPPED;
            continue;
        }
        bl_outcome_call(w, &m, 1);
        if (m->outcome == BALLAST_OUTCOME_FAIL)
            break;
        if (m->outcome != BALLAST_OUTCOME_OK) {
            *broken = true;
            break;
        }
    }
    return j;
}

/* After the COMMIT: each message's outcome counts (done, or dead-lettered). */
static void group_settle(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (msgs[i]->fate != BL_FATE_DROPPED)
            bl_outcome_finish(w, msgs[i]);
}

/* One group from @p msgs[0] (at most @p n messages), committed or rolled
 * back. @returns how many messages it settled. */
static size_t run_group(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    ballast_consumer_t *c = w->cons;
    const bl_dbtxn_ops_t *ops = c->dbtxn.ops;
    char err[512] = "";
    bool broken;
    size_t j;

    if (n < 2 || ops->begin(w->state, err, sizeof(err)) != BALLAST_OUTCOME_OK) {
        /* Alone, or the database is down: the usual path waits for it. */
        run_alone(w, msgs, 1);
        return 1;
    }
    j = group_fill(w, msgs, n, &broken);
    if (broken || !j) {
        ops->rollback(w->state);
        run_alone(w, msgs, j);
    } else if (ops->commit(w->state, c->set.group, NULL, 0, err, sizeof(err)) !=
               BALLAST_OUTCOME_OK) {
        bl_log(&c->log, BALLAST_LOG_WARN,
               "database commit of %zu grouped messages failed: %s; they run again one "
               "by one", j, err);
        run_alone(w, msgs, j);
    } else {
        group_settle(w, msgs, j);
    }
    return j;
}

void bl_msggroup_process(bl_worker_t *w, bl_msg_t **msgs, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (bl_outcome_halted(w)) {
            for (; i < n; i++)
                msgs[i]->fate = BL_FATE_DROPPED;
            return;
        }
        i += run_group(w, msgs + i, n - i);
    }
}
