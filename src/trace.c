/*
 * trace.c - W3C Trace Context: reading, deriving and starting traceparents
 * (see trace.h).
 */
#include "trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char hexdigits[] = "0123456789abcdef";

/* Whether the @p n characters at @p s are lowercase hex digits, and
 * whether any of them is not '0' (*nonzerop). */
static bool lower_hex(const char *s, size_t n, bool *nonzerop)
{
    bool nonzero = false;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero = nonzero || s[i] != '0';
    }
    if (nonzerop)
        *nonzerop = nonzero;
    return true;
}

bool bl_traceparent_parse(const void *text, size_t len, char out[BL_TRACEPARENT_LEN + 1])
{
    const char *s = text;
    bool trace_set, parent_set;

    /* version "-" trace-id(32) "-" parent-id(16) "-" flags(2) */
    if (!s || len < BL_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    if (!lower_hex(s, 2, NULL) || !memcmp(s, "ff", 2))
        return false;
    /* Version 00 is exactly this long; a later version may add fields,
     * each after a '-'. */
    if (len != BL_TRACEPARENT_LEN && (!memcmp(s, "00", 2) || s[BL_TRACEPARENT_LEN] != '-'))
        return false;
    if (!lower_hex(s + 3, 32, &trace_set) || !trace_set ||
        !lower_hex(s + 36, 16, &parent_set) || !parent_set || !lower_hex(s + 53, 2, NULL))
        return false;
    memcpy(out, s, BL_TRACEPARENT_LEN);
    out[0] = out[1] = '0';
    out[BL_TRACEPARENT_LEN] = '\0';
    return true;
}

/* Writes @p n bytes as 2n lowercase hex digits; an all-zero id gets its
 * last bit set, as the format forbids it. */
static void put_id(char *out, const uint8_t *bytes, size_t n)
{
    bool nonzero = false;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[bytes[i] >> 4];
        out[2 * i + 1] = hexdigits[bytes[i] & 15];
        nonzero = nonzero || bytes[i];
    }
    if (!nonzero)
        out[2 * n - 1] = '1';
}

void bl_traceparent_child(const char *parent, const uint8_t span[8],
                          char out[BL_TRACEPARENT_LEN + 1])
{
    memcpy(out, parent, BL_TRACEPARENT_LEN + 1);
    put_id(out + 36, span, 8);
}

void bl_traceparent_root(const uint8_t rnd[24], char out[BL_TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    put_id(out + 3, rnd, 16);
    out[35] = '-';
    put_id(out + 36, rnd + 16, 8);
    memcpy(out + 52, "-01", 4);
}

bool bl_tracestate_valid(const void *text, size_t len)
{
    const unsigned char *s = text;

    if (!s || !len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* Random ids for every message with a context: one getrandom(2) call per
 * pool rather than one per message. */
#define POOL_SIZE 480
static _Thread_local uint8_t pool[POOL_SIZE];
static _Thread_local size_t pool_left;

int bl_trace_random(void *buf, size_t n)
{
    uint8_t *out = buf;

    while (n) {
        size_t take;
        if (!pool_left) {
            ssize_t got = getrandom(pool, sizeof(pool), 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return -1;
            /* A short read keeps its bytes at the pool's end. */
            if ((size_t)got < sizeof(pool))
                memmove(pool + sizeof(pool) - (size_t)got, pool, (size_t)got);
            pool_left = (size_t)got;
        }
        take = n < pool_left ? n : pool_left;
        memcpy(out, pool + sizeof(pool) - pool_left, take);
        pool_left -= take; /* each byte goes out once */
        out += take;
        n -= take;
    }
    return 0;
}

void bl_trace_init(bl_trace_t *t, const void *tp, size_t tp_len, const void *ts,
                   size_t ts_len, bool start)
{
    uint8_t rnd[24];

    t->loaded = true;
    t->parent[0] = '\0';
    t->state = NULL;
    if (bl_traceparent_parse(tp, tp_len, t->parent)) {
        if (bl_tracestate_valid(ts, ts_len) && (t->state = malloc(ts_len + 1))) {
            memcpy(t->state, ts, ts_len);
            t->state[ts_len] = '\0';
        }
        if (bl_trace_random(t->span, sizeof(t->span))) {
            bl_trace_clear(t); /* no span: no child to give */
            t->loaded = true;
        }
        return;
    }
    if (start && !bl_trace_random(rnd, sizeof(rnd)) &&
        !bl_trace_random(t->span, sizeof(t->span)))
        bl_traceparent_root(rnd, t->parent);
}

void bl_trace_clear(bl_trace_t *t)
{
    free(t->state);
    t->state = NULL;
    t->parent[0] = '\0';
    t->loaded = false;
}

bool bl_trace_child(const bl_trace_t *t, char out[BL_TRACEPARENT_LEN + 1])
{
    if (!t->parent[0])
        return false;
    bl_traceparent_child(t->parent, t->span, out);
    return true;
}

const char *bl_trace_log_tag(const bl_trace_t *t, char buf[BL_TRACE_TAG_SIZE])
{
    if (!t->parent[0])
        return "";
    memcpy(buf, " trace=", 7);
    memcpy(buf + 7, t->parent + 3, 32);
    buf[39] = '\0';
    return buf;
}
