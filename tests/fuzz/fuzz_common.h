/* fuzz_common.h - helpers shared by the libFuzzer targets (tests/fuzz). */
#ifndef BALLAST_FUZZ_COMMON_H
#define BALLAST_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant that does not hold is a finding: print it and abort, so that
 * libFuzzer saves the input as a crash artifact. */
#define FUZZ_CHECK(cond, ...)                                                 \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__,        \
                    __LINE__, #cond);                                         \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* FUZZ_IGNORE_KNOWN=1 in the environment: for a target to step over a
 * finding that is reported but not fixed yet (guard the invariant with it
 * and say which finding), so that a long run can look for new ones.
 * scripts/fuzz does not set it; no target uses it while nothing is open. */
static inline bool fuzz_ignore_known(void)
{
    static int ignore = -1;
    if (ignore < 0) {
        const char *v = getenv("FUZZ_IGNORE_KNOWN");
        ignore = v && *v && strcmp(v, "0");
    }
    return ignore;
}

/* Reads typed values from the fuzz input; past its end everything is 0. */
typedef struct fuzz_reader {
    const uint8_t *p;
    size_t left;
} fuzz_reader_t;

static inline uint8_t fr_u8(fuzz_reader_t *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

static inline uint64_t fr_uint(fuzz_reader_t *r, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | fr_u8(r);
    return v;
}

/* A run of at most @p max bytes whose length is given by the next byte
 * (0xff: all that is left, capped at max). Points into the input. */
static inline const uint8_t *fr_bytes(fuzz_reader_t *r, size_t max, size_t *lenp)
{
    size_t n = fr_u8(r);
    const uint8_t *p = r->p;

    if (n == 0xff)
        n = r->left;
    if (n > r->left)
        n = r->left;
    if (n > max)
        n = max;
    r->p += n;
    r->left -= n;
    *lenp = n;
    return p;
}

/* A malloc'd copy of [p, p+len) with a NUL after it (never NULL). */
static inline char *fuzz_strndup(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

#endif /* BALLAST_FUZZ_COMMON_H */
