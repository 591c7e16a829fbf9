/*
 * tiers.c - parsing and lookup of non-blocking retry tiers (see tiers.h).
 */
#include "tiers.h"
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bl_tiers_free(bl_tiers_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->tiers[i].topic);
    free(t->tiers);
    t->tiers = NULL;
    t->count = 0;
}

/* Parses one "topic:ms" item of length @p n. */
static int parse_item(const char *s, size_t n, bl_tier_t *out, char *err, size_t errsize)
{
    const char *colon, *end = s + n;
    char num[32], *stop;
    long long ms;

    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s || (size_t)(end - colon - 1) >= sizeof(num) || colon + 1 == end) {
        bl_fmt(err, errsize, "expected topic:delay_ms items, got \"%.*s\"", (int)(end - s), s);
        return -1;
    }
    memcpy(num, colon + 1, (size_t)(end - colon - 1));
    num[end - colon - 1] = '\0';
    errno = 0;
    ms = strtoll(num, &stop, 10);
    if (errno || *stop || ms < 0 || ms > 7LL * 86400000) {
        bl_fmt(err, errsize, "delay \"%s\" is not a number of milliseconds from 0 to 7 days",
               num);
        return -1;
    }
    out->topic = malloc((size_t)(colon - s) + 1);
    if (!out->topic) {
        bl_fmt(err, errsize, "out of memory");
        return -1;
    }
    memcpy(out->topic, s, (size_t)(colon - s));
    out->topic[colon - s] = '\0';
    out->delay_ms = ms;
    return 0;
}

int bl_tiers_parse(const char *spec, bl_tiers_t *out, char *err, size_t errsize)
{
    const char *s = spec;

    out->tiers = NULL;
    out->count = 0;
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        bl_tier_t *grown = realloc(out->tiers, (out->count + 1) * sizeof(*grown));
        if (!grown) {
            bl_tiers_free(out);
            bl_fmt(err, errsize, "out of memory");
            return -1;
        }
        out->tiers = grown;
        if (parse_item(s, n, &out->tiers[out->count], err, errsize)) {
            bl_tiers_free(out);
            return -1;
        }
        for (size_t i = 0; i < out->count; i++) {
            if (!strcmp(out->tiers[i].topic, out->tiers[out->count].topic)) {
                bl_fmt(err, errsize, "topic \"%s\" listed twice", out->tiers[i].topic);
                out->count++;
                bl_tiers_free(out);
                return -1;
            }
        }
        out->count++;
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

int bl_tiers_index(const bl_tiers_t *t, const char *topic)
{
    for (size_t i = 0; i < t->count; i++)
        if (!strcmp(t->tiers[i].topic, topic))
            return (int)i;
    return -1;
}
