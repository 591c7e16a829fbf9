/*
 * pipeline.h - a worker's messages pipelined through its exec child
 * (pipeline.c). Internal; worker thread.
 */
#ifndef BALLAST_PIPELINE_H
#define BALLAST_PIPELINE_H

#include "runtime.h"

/** Whether a worker with handler state @p state pipelines: the exec
 *  handler with handler.exec.max.inflight above 1, in message mode, not
 *  exactly-once into a database. */
bool bl_pipeline_wanted(const ballast_consumer_t *c, void *state);

/** The worker's loop when it pipelines: takes its messages, has them
 *  handled several at a time (never two that must run in order), settles
 *  each, and hands them back, until it is told to end and holds nothing.
 *  @returns 0, or -1 when out of memory before anything was taken. */
int bl_pipeline_run(bl_worker_t *w);

#endif
