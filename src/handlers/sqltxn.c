/* sqltxn.c - what the sqlite and postgres handlers share: the outcomes of a
 * batch whose transaction is gone, and the error of a fenced batch. */
#include "sqltxn.h"

#include <string.h>

bool bl_sqltxn_usable(bool eo, const char *name, const char *op, char *errbuf,
                      size_t errsize)
{
    if (!eo)
        bl_fmt(errbuf, errsize, "%s: %s needs semantics = exactly-once", name, op);
    return eo;
}

void bl_sqltxn_retry_all(ballast_result_t *const *results, size_t count,
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

void bl_sqltxn_retry_rest(ballast_result_t *const *results, size_t count,
                       ballast_outcome_t *outcomes, const char *err)
{
    settle_rest(results, count, outcomes, BALLAST_OUTCOME_RETRY, err);
}

void bl_sqltxn_unavailable_rest(ballast_result_t *const *results, size_t count,
                             ballast_outcome_t *outcomes, const char *err)
{
    settle_rest(results, count, outcomes, BALLAST_OUTCOME_UNAVAILABLE, err);
}

void bl_dbtxn_stale_error(char *errbuf, size_t errsize, const bl_dbtxn_offset_t *off)
{
    bl_fmt(errbuf, errsize, "%s [%d] was committed past offset %lld by another member",
           off->topic, (int)off->partition, (long long)off->first_offset);
}
