/*
 * donemeta.h - offsets finished beyond the committed one, carried in the
 * commit's metadata so that a restart does not redo them. Pure: no Kafka.
 *
 * With ordering = key or none, messages finish out of order: the committed
 * offset is the lowest unfinished one, and everything finished above it
 * would be handled again after a restart. The metadata string
 * "bl1:<committed>:<base64 bitmap>" marks them (bit i: offset committed+1+i
 * finished). It is bounded: past the limit the rest is simply redone (the
 * safe direction), and foreign or garbled metadata means "redo everything".
 */
#ifndef BALLAST_DONEMETA_H
#define BALLAST_DONEMETA_H

#include "tracker.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** At most this many bytes of metadata (brokers allow 4096 by default). */
#define BL_DONEMETA_MAX 3000

/**
 * The metadata for a commit of @p committed, or NULL when nothing above it
 * finished (or out of memory). *truncatedp tells whether some finished
 * offsets did not fit. Caller frees.
 */
char *bl_donemeta_encode(const bl_tracker_t *t, int64_t committed, bool *truncatedp);

/** Offsets known to be finished, from a commit's metadata. */
typedef struct bl_skipset {
    int64_t base; /* the committed offset the bitmap starts after */
    uint8_t *bits;
    size_t nbits;
} bl_skipset_t;

/** Parses metadata committed with @p committed. Accepts only what
 *  bl_donemeta_encode() writes for that offset, byte for byte (canonical
 *  number and base64, at most BL_DONEMETA_MAX bytes). @returns false (and
 *  an empty set: skip nothing) for anything else. */
bool bl_donemeta_decode(const char *meta, size_t len, int64_t committed, bl_skipset_t *out);
/** True when @p offset is in the set. */
bool bl_skipset_has(const bl_skipset_t *s, int64_t offset);
void bl_skipset_free(bl_skipset_t *s);

#endif
