/*
 * donemeta.c - offsets finished beyond the committed one, as commit
 * metadata (see donemeta.h).
 */
#include "donemeta.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "bl1:"

char *bl_donemeta_encode(const bl_tracker_t *t, int64_t committed, bool *truncatedp)
{
    /* Base64 grows 4/3; keep room for the prefix and the offset. */
    size_t max_bits = (BL_DONEMETA_MAX - 40) / 4 * 3 * 8, nbits = 0;
    uint8_t *bits;
    char *b64, *out;
    size_t b64len, n;

    *truncatedp = false;
    if (committed < 0)
        return NULL;
    bits = calloc(max_bits / 8 + 1, 1);
    if (!bits)
        return NULL;
    for (size_t i = 0; i < t->count; i++) {
        size_t slot = (t->head + i) % t->cap;
        int64_t off = t->offsets[slot];
        uint64_t bit;
        if (!t->done[slot] || off <= committed)
            continue;
        bit = (uint64_t)(off - committed - 1);
        if (bit >= max_bits) {
            *truncatedp = true;
            break;
        }
        bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
        if (bit + 1 > nbits)
            nbits = (size_t)bit + 1;
    }
    if (!nbits) {
        free(bits);
        return NULL;
    }
    b64 = bl_base64_encode(bits, (nbits + 7) / 8, &b64len);
    free(bits);
    if (!b64)
        return NULL;
    n = strlen(PREFIX) + 24 + b64len;
    if ((out = malloc(n)))
        snprintf(out, n, PREFIX "%lld:%s", (long long)committed, b64);
    free(b64);
    return out;
}

bool bl_donemeta_decode(const char *meta, size_t len, int64_t committed, bl_skipset_t *out)
{
    char num[24];
    const char *colon, *end = meta + len;
    void *bits = NULL;
    size_t nbytes = 0;

    memset(out, 0, sizeof(*out));
    if (!meta || len < strlen(PREFIX) || memcmp(meta, PREFIX, strlen(PREFIX)))
        return false;
    meta += strlen(PREFIX);
    colon = memchr(meta, ':', (size_t)(end - meta));
    if (!colon || colon == meta || (size_t)(colon - meta) >= sizeof(num))
        return false;
    memcpy(num, meta, (size_t)(colon - meta));
    num[colon - meta] = '\0';
    /* Metadata written for another offset (a commit by something else since)
     * says nothing about this one. */
    if (strtoll(num, NULL, 10) != committed || committed < 0)
        return false;
    if (bl_base64_decode(colon + 1, (size_t)(end - colon - 1), &bits, &nbytes) || !nbytes) {
        free(bits);
        return false;
    }
    out->base = committed;
    out->bits = bits;
    out->nbits = nbytes * 8;
    return true;
}

bool bl_skipset_has(const bl_skipset_t *s, int64_t offset)
{
    uint64_t bit;

    if (!s->bits || offset <= s->base)
        return false;
    bit = (uint64_t)(offset - s->base - 1);
    return bit < s->nbits && (s->bits[bit / 8] >> (bit % 8) & 1);
}

void bl_skipset_free(bl_skipset_t *s)
{
    free(s->bits);
    memset(s, 0, sizeof(*s));
}
