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

/* Parses [p, end) as a decimal in the one form the encoder writes: digits
 * only (no sign, no space), no leading zero, within int64_t. strtoll would
 * also take "5x", " 5", "+5" or "05" and saturate on overflow, so that
 * metadata that is not ours could pass for a commit of the same offset. */
static bool parse_offset(const char *p, const char *end, int64_t *out)
{
    int64_t v = 0;

    if (p == end || (*p == '0' && end - p > 1))
        return false;
    for (; p < end; p++) {
        int digit = *p - '0';
        if (digit < 0 || digit > 9 || v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

/* Decodes the bitmap only when [b64, end) is exactly what the encoder would
 * have written for it: canonical padded base64 of a non-empty bitmap whose
 * last byte marks something (the encoder stops at the highest finished
 * offset). @returns the bitmap (caller frees), or NULL. */
static uint8_t *parse_bitmap(const char *b64, const char *end, size_t *nbytesp)
{
    size_t len = (size_t)(end - b64), nbytes = 0, again_len = 0;
    void *bits = NULL;
    char *again = NULL;
    bool canonical;

    if (!len || len % 4 || bl_base64_decode(b64, len, &bits, &nbytes) || !nbytes ||
        !((uint8_t *)bits)[nbytes - 1]) {
        free(bits);
        return NULL;
    }
    again = bl_base64_encode(bits, nbytes, &again_len);
    canonical = again && again_len == len && !memcmp(again, b64, len);
    free(again);
    if (!canonical) {
        free(bits);
        return NULL;
    }
    *nbytesp = nbytes;
    return bits;
}

bool bl_donemeta_decode(const char *meta, size_t len, int64_t committed, bl_skipset_t *out)
{
    const char *colon, *end;
    int64_t written_for;
    uint8_t *bits;
    size_t nbytes;

    memset(out, 0, sizeof(*out));
    /* Longer than we ever write, or not our prefix: not ours. */
    if (!meta || committed < 0 || len > BL_DONEMETA_MAX || len < strlen(PREFIX) ||
        memcmp(meta, PREFIX, strlen(PREFIX)))
        return false;
    end = meta + len;
    meta += strlen(PREFIX);
    colon = memchr(meta, ':', (size_t)(end - meta));
    /* Metadata written for another offset (a commit by something else since)
     * says nothing about this one. */
    if (!colon || !parse_offset(meta, colon, &written_for) || written_for != committed)
        return false;
    if (!(bits = parse_bitmap(colon + 1, end, &nbytes)))
        return false;
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
