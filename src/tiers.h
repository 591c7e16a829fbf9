/*
 * tiers.h - non-blocking retry tiers (`retry.topics`): parsing and lookup.
 * Pure: no Kafka.
 *
 * `retry.topics = orders-retry-5s:5000,orders-retry-1m:60000` lists topics
 * a message that keeps failing transiently moves through, each with the
 * delay before it is tried again; after the last tier it goes to the DLQ.
 */
#ifndef BALLAST_TIERS_H
#define BALLAST_TIERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bl_tier {
    char *topic;
    int64_t delay_ms;
} bl_tier_t;

typedef struct bl_tiers {
    bl_tier_t *tiers;
    size_t count;
} bl_tiers_t;

/** Parses "topic:ms,topic:ms". @returns 0, or -1 with a reason in @p err. */
int bl_tiers_parse(const char *spec, bl_tiers_t *out, char *err, size_t errsize);
void bl_tiers_free(bl_tiers_t *t);
/** @returns the tier index of @p topic, or -1 when it is not a tier topic. */
int bl_tiers_index(const bl_tiers_t *t, const char *topic);

#endif
