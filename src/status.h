/*
 * status.h - what a consumer shows about itself (status.c): the stats
 * snapshot, a per-partition snapshot with its history, health, readiness,
 * the progress and summary lines; the public ballast_consumer_stats(),
 * _healthy(), _ready(), _metrics(), _status_json() and _history_json().
 * Internal.
 */
#ifndef BALLAST_STATUS_H
#define BALLAST_STATUS_H

#include "runtime.h"

void bl_status_init(ballast_consumer_t *c);
void bl_status_free(ballast_consumer_t *c);

/** About once a second: copies the partitions' state for readers on other
 *  threads (adding a history frame when one is due) and logs the progress
 *  line when log.progress.interval.ms has passed. Poll thread. */
void bl_status_tick(ballast_consumer_t *c, int64_t now);
/** Copies the partitions' state now (poll thread, at the end of the run). */
void bl_status_publish(ballast_consumer_t *c);
/** Logs the run's summary line (poll thread, at the end of the run). */
void bl_status_summary(ballast_consumer_t *c);

#endif
