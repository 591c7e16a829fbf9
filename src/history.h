/*
 * history.h - the last five minutes of each partition's lag and processing
 * rate, kept by the consumer so that the dashboard draws its chart at once
 * instead of starting empty. Pure: no Kafka calls.
 *
 * One frame is recorded every BL_HISTORY_INTERVAL_MS and the newest
 * BL_HISTORY_FRAMES are kept, so the memory is bounded by the number of
 * partitions seen in the window: about 2 KB per partition (one 8-byte lag
 * and one 4-byte rate per frame, plus the name). A partition that was in
 * none of the kept frames is forgotten.
 *
 * Not thread-safe: the consumer adds frames on its poll thread and copies
 * the history under its observability mutex for readers (bl_history_copy),
 * which then render the copy without holding the lock.
 */
#ifndef BALLAST_HISTORY_H
#define BALLAST_HISTORY_H

#include "observe.h"

#define BL_HISTORY_INTERVAL_MS 2000
#define BL_HISTORY_FRAMES 150 /* five minutes of frames */

typedef struct bl_history bl_history_t;

/** @returns an empty history, or NULL when out of memory. */
bl_history_t *bl_history_new(void);
/** NULL is a no-op. */
void bl_history_free(bl_history_t *h);
/** @returns true when a frame taken at @p now_ms (a monotonic clock) is due. */
bool bl_history_due(const bl_history_t *h, int64_t now_ms);
/**
 * @brief Records one frame at @p now_ms: each partition's lag (negative:
 *        unknown) and processing rate (negative: unknown) as given in
 *        @p parts. Partitions not in @p parts have no value in this frame.
 * @returns 0, or -1 when out of memory (the frame is then incomplete: the
 *          partitions that could not be added have no value in it).
 */
int bl_history_add(bl_history_t *h, int64_t now_ms, const bl_part_view_t *parts,
                   size_t n);
/** @returns a deep copy, or NULL when out of memory. */
bl_history_t *bl_history_copy(const bl_history_t *h);
/**
 * @brief The history as JSON: the interval and window in seconds, the age
 *        of each kept frame at @p now_ms (oldest first), and per partition
 *        (sorted by topic, then partition) its lag and processed_per_second
 *        in each frame, null where unknown or not assigned. Caller frees.
 *        @p h may be NULL (no frames yet). NULL when out of memory.
 */
char *bl_history_render(const bl_history_t *h, int64_t now_ms);

#endif
