/*
 * fuzz_message.h - builds a ballast message view (rkm NULL, as the unit
 * tests do) and its headers from fuzz bytes, keeping a plain model of the
 * headers to compare the accessors and the encoder against.
 *
 * Input layout (all fields optional: missing bytes read as 0):
 *   flags:1      bit0 key absent, bit1 value absent (tombstone),
 *                bit2 no timestamp (-1), bit3 headers
 *   partition:4  offset:8  timestamp:8  (big-endian)
 *   topic:  len:1 bytes  (mapped onto Kafka's [a-zA-Z0-9._-]; empty -> "t")
 *   key:    len:1 bytes  (len 0xff: the rest of the input)
 *   value:  len:1 bytes
 *   headers (bit3): count:1 (mod 17), then per header
 *           name: len:1 bytes, vflags:1 (bit0 null value), value: len:1 bytes
 */
#ifndef BALLAST_FUZZ_MESSAGE_H
#define BALLAST_FUZZ_MESSAGE_H

#include "message.h"

#include "fuzz_common.h"

#define FUZZ_MAX_HEADERS 16

typedef struct fuzz_header {
    const uint8_t *name; /* raw bytes given to rd_kafka_header_add() */
    size_t name_len;
    const uint8_t *value; /* NULL: null value */
    size_t value_len;
} fuzz_header_t;

typedef struct fuzz_msg {
    struct ballast_message_s m;
    char topic[250];
    fuzz_header_t hdr[FUZZ_MAX_HEADERS];
    size_t hdr_count;
} fuzz_msg_t;

static inline void fuzz_msg_build(fuzz_msg_t *f, fuzz_reader_t *r)
{
    static const char topic_chars[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    uint8_t flags = fr_u8(r);
    const uint8_t *p;
    size_t n;

    memset(f, 0, sizeof(*f));
    f->m.partition = (int32_t)(uint32_t)fr_uint(r, 4);
    f->m.offset = (int64_t)fr_uint(r, 8);
    f->m.timestamp = (int64_t)fr_uint(r, 8);
    if (flags & 4)
        f->m.timestamp = -1;
    p = fr_bytes(r, 249, &n);
    for (size_t i = 0; i < n; i++)
        f->topic[i] = topic_chars[p[i] % (sizeof(topic_chars) - 1)];
    if (!n)
        f->topic[0] = 't';
    f->m.topic = f->topic;
    p = fr_bytes(r, 4096, &n);
    if (!(flags & 1)) {
        f->m.key = p;
        f->m.key_len = n;
    }
    p = fr_bytes(r, 4096, &n);
    if (!(flags & 2)) {
        f->m.value = p;
        f->m.value_len = n;
    }
    f->m.attempt = 1;
    f->m.hdrs_loaded = true; /* no rkm: the headers are the ones set here */
    if (flags & 8) {
        f->hdr_count = fr_u8(r) % (FUZZ_MAX_HEADERS + 1);
        if (!(f->m.hdrs = rd_kafka_headers_new(f->hdr_count)))
            abort();
        for (size_t i = 0; i < f->hdr_count; i++) {
            fuzz_header_t *h = &f->hdr[i];
            uint8_t vflags;

            h->name = fr_bytes(r, 255, &h->name_len);
            vflags = fr_u8(r);
            h->value = fr_bytes(r, 4096, &h->value_len);
            if (vflags & 1) {
                h->value = NULL;
                h->value_len = 0;
            }
            if (rd_kafka_header_add(f->m.hdrs, (const char *)h->name,
                                    (ssize_t)h->name_len, h->value,
                                    h->value ? (ssize_t)h->value_len : 0))
                abort();
        }
    }
}

static inline void fuzz_msg_free(fuzz_msg_t *f)
{
    if (f->m.hdrs)
        rd_kafka_headers_destroy(f->m.hdrs);
    f->m.hdrs = NULL;
}

/* The name a consumer sees: a C string, so cut at the first NUL. */
static inline size_t fuzz_header_cname_len(const fuzz_header_t *h)
{
    const void *nul = memchr(h->name, 0, h->name_len);
    return nul ? (size_t)((const uint8_t *)nul - h->name) : h->name_len;
}

#endif /* BALLAST_FUZZ_MESSAGE_H */
