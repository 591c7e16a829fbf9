/* sqltxn.c - exactly-once glue and batch outcomes shared by the sqlite and
 * postgres handlers. */
#include "sqltxn.h"

#include <string.h>

bool bl_txn_exactly_once(const ballast_conf_t *conf)
{
    return !strcmp(bl_conf_str(conf, "semantics"), "exactly-once");
}

void bl_txn_retry_all(ballast_result_t *const *results, size_t count,
                      ballast_outcome_t *outcomes, const char *err)
{
    for (size_t i = 0; i < count; i++) {
        outcomes[i] = BALLAST_OUTCOME_RETRY;
        ballast_result_set_error(results[i], err);
    }
}

/* Gives @p outcome and @p err to every message not yet FAIL. */
static void settle_rest(ballast_result_t *const *results, size_t count,
                        ballast_outcome_t *outcomes, ballast_outcome_t outcome, const char *err)
{
    for (size_t i = 0; i < count; i++) {
        if (outcomes[i] == BALLAST_OUTCOME_FAIL)
            continue;
        outcomes[i] = outcome;
        ballast_result_set_error(results[i], err);
    }
}

void bl_txn_retry_rest(ballast_result_t *const *results, size_t count,
                       ballast_outcome_t *outcomes, const char *err)
{
    settle_rest(results, count, outcomes, BALLAST_OUTCOME_RETRY, err);
}

void bl_txn_unavailable_rest(ballast_result_t *const *results, size_t count,
                             ballast_outcome_t *outcomes, const char *err)
{
    settle_rest(results, count, outcomes, BALLAST_OUTCOME_UNAVAILABLE, err);
}

void bl_txn_stale_error(char *errbuf, size_t errsize, const bl_offset_t *off)
{
    bl_fmt(errbuf, errsize, "%s [%d] was committed past offset %lld by another member",
           off->topic, (int)off->partition, (long long)off->first_offset);
}

const bl_txn_ops_t *bl_handler_txn_ops(const ballast_handler_t *handler)
{
    if (handler == &bl_handler_sqlite)
        return &bl_sqlite_txn_ops;
    if (handler == &bl_handler_postgres)
        return &bl_postgres_txn_ops;
    return NULL;
}
