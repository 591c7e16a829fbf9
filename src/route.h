/*
 * route.h - which worker handles a message (`ordering`), and which messages
 * must be handled in order. Pure, and inline: it runs for every message.
 *
 *   partition  all messages of a partition go to one worker;
 *   key        all messages of a key go to one worker (messages without a
 *              key follow their partition);
 *   none       messages are spread round-robin.
 *
 * A worker handles its queue in order, so per-partition or per-key order
 * holds.
 */
#ifndef BALLAST_ROUTE_H
#define BALLAST_ROUTE_H

#include "shared/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef enum bl_ordering { BL_ORDER_PARTITION, BL_ORDER_KEY, BL_ORDER_NONE } bl_ordering_t;

/** The worker (of @p nworkers) of partition @p partition of @p topic. */
static inline int bl_route_partition(const char *topic, int32_t partition, int nworkers)
{
    uint64_t h = bl_fnv1a(topic, strlen(topic), BL_FNV1A_SEED);

    return (int)(bl_fnv1a(&partition, sizeof(partition), h) % (uint64_t)nworkers);
}

/** The worker of a message of a partition whose worker is @p part_worker,
 *  with key @p key (NULL: none) of @p key_len bytes; *round_robin counts
 *  the messages spread for ordering = none. */
static inline int bl_route_message(bl_ordering_t ordering, int nworkers, int part_worker,
                                   const void *key, size_t key_len, unsigned *round_robin)
{
    if (nworkers == 1)
        return 0;
    switch (ordering) {
    case BL_ORDER_KEY:
        if (key)
            return (int)(bl_fnv1a(key, key_len, BL_FNV1A_SEED) % (uint64_t)nworkers);
        return part_worker;
    case BL_ORDER_NONE:
        return (int)((*round_robin)++ % (unsigned)nworkers);
    case BL_ORDER_PARTITION:
    default:
        return part_worker;
    }
}

/** Whether two messages must be handled in order: of one partition
 *  (@p same_part) under ordering = partition; of one key, or of one
 *  partition when either has no key (NULL), under key; never under none. */
static inline bool bl_route_ordered(bl_ordering_t ordering, bool same_part, const void *key_a,
                                    size_t len_a, const void *key_b, size_t len_b)
{
    if (ordering == BL_ORDER_NONE)
        return false;
    if (ordering == BL_ORDER_PARTITION || !key_a || !key_b)
        return same_part;
    return len_a == len_b && !memcmp(key_a, key_b, len_a);
}

#endif
