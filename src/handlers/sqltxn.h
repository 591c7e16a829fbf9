/*
 * sqltxn.h - what the database handlers share: their exactly-once
 * bl_dbtxn_ops_t (see handlers.h) and a few helpers for batch outcomes.
 * Internal.
 */
#ifndef BALLAST_SQLTXN_H
#define BALLAST_SQLTXN_H

#include "handlers.h"

extern const bl_dbtxn_ops_t bl_sqlite_dbtxn_ops;   /* sqlite.c */
extern const bl_dbtxn_ops_t bl_postgres_dbtxn_ops; /* postgres.c */

/* The table both dialects create (the spec's DDL; `partition` is an
 * unreserved keyword in PostgreSQL and a fallback one in SQLite, so it
 * needs no quotes in either). */
#define BL_SQLTXN_OFFSETS_DDL                                                    \
    "CREATE TABLE IF NOT EXISTS ballast_offsets (group_id TEXT NOT NULL, "   \
    "topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT "   \
    "NOT NULL, PRIMARY KEY (group_id, topic, partition))"

/** False, with the reason in @p errbuf, when transaction operation @p op
 *  of handler @p name is called on a state made without semantics =
 *  exactly-once (@p eo). */
bool bl_sqltxn_usable(bool eo, const char *name, const char *op, char *errbuf,
                      size_t errsize);

/** Marks every message of a batch RETRY with @p err: a transient failure
 *  dooms the whole transaction, so nothing of the batch stands, not even
 *  its FAIL verdicts (the batch is handled again from the start). */
void bl_sqltxn_retry_all(ballast_result_t *const *results, size_t count,
                      ballast_outcome_t *outcomes, const char *err);

/** Marks every message of a batch that is not already FAIL as RETRY with
 *  @p err: the batch's transaction is gone, so nothing of it was committed,
 *  but the messages found bad for good stay failed. */
void bl_sqltxn_retry_rest(ballast_result_t *const *results, size_t count,
                       ballast_outcome_t *outcomes, const char *err);
/** The same with UNAVAILABLE: the database could not be reached, so
 *  nothing of the batch could be tried. */
void bl_sqltxn_unavailable_rest(ballast_result_t *const *results, size_t count,
                             ballast_outcome_t *outcomes, const char *err);

#endif
