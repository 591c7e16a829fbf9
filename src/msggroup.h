/*
 * msggroup.h - message mode into PostgreSQL, consecutive messages in one
 * transaction (msggroup.c). Internal.
 */
#ifndef BALLAST_MSGGROUP_H
#define BALLAST_MSGGROUP_H

#include "runtime.h"

/** Runs @p msgs (one slice of a worker's, at most settings.group_max, in
 *  order) in groups: each group in one database transaction, a savepoint a
 *  message, its messages settled only once its COMMIT returned. Every group
 *  is committed or rolled back on return. */
void bl_msggroup_process(bl_worker_t *w, bl_msg_t **msgs, size_t n);

#endif
