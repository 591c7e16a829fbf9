/*
 * util.h - small string, time, memory, hashing and encoding helpers
 * (util.c). They need nothing but libc. Part of the shared unit (src/shared/),
 * which the library and the `ballast` command both compile.
 */
#ifndef BALLAST_UTIL_H
#define BALLAST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__GNUC__)
#define BL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BL_PRINTF(a, b)
#endif

/** The seed of bl_fnv1a(). */
#define BL_FNV1A_SEED 0xcbf29ce484222325ULL

/** FNV-1a (64-bit) of the @p len bytes at @p p, going on from @p h
 *  (BL_FNV1A_SEED to start): a fast hash for hash tables and for routing
 *  keys and partitions to workers. */
static inline uint64_t bl_fnv1a(const void *p, size_t len, uint64_t h)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

/** Room for one more element in the array @p arr of @p count elements of
 *  @p elem bytes with room for *cap: doubles it (from @p first). @returns
 *  the array (@p arr itself when it had room), or NULL when out of memory,
 *  and @p arr is then left as it was. */
static inline void *bl_grow(void *arr, size_t *cap, size_t count, size_t elem, size_t first)
{
    size_t n = *cap ? *cap * 2 : first;

    if (count < *cap)
        return arr;
    if ((arr = realloc(arr, n * elem)))
        *cap = n;
    return arr;
}

/** strdup that returns NULL only when @p s is NULL or memory is out. */
char *bl_strdup(const char *s);
/** Parses the whole of @p s as a decimal integer within [@p min, @p max]
 *  into *out. @returns false (and leaves *out) otherwise. */
bool bl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
/** Parses the whole of @p s as a finite number >= @p min into *out.
 *  @returns false (and leaves *out) otherwise. */
bool bl_parse_double(const char *s, double min, double *out);
/** snprintf into a fixed buffer, always terminated, never overflowing. */
void bl_fmt(char *buf, size_t size, const char *fmt, ...) BL_PRINTF(3, 4);
/** Milliseconds from a monotonic clock. */
int64_t bl_now_ms(void);
/** Milliseconds since the epoch. */
int64_t bl_wall_ms(void);
/** Sleeps @p ms (nothing when <= 0), resuming after signals. */
void bl_sleep_ms(int64_t ms);
/** The moment @p ms from now, as pthread_cond_timedwait() and
 *  pthread_timedjoin_np() take it (CLOCK_REALTIME). */
static inline struct timespec bl_deadline(int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}
/** Runs @p write on a memory stream (open_memstream) with @p arg.
 *  @returns what it wrote, NUL-terminated (caller frees), or NULL when out
 *  of memory. */
char *bl_text(void (*write)(FILE *fp, const void *arg), const void *arg);
/** Formats epoch milliseconds as ISO-8601 UTC ("2026-11-26T20:35:01.123Z").
 *  Each thread keeps the text of the last second it formatted. */
void bl_iso8601(int64_t epoch_ms, char *buf, size_t size);
/** True when [p, p+len) is valid UTF-8. */
bool bl_utf8_valid(const void *p, size_t len);
/** Writes @p s as a Prometheus label value: backslash, double quote and
 *  newline escaped. */
void bl_prom_label(FILE *fp, const char *s);
/** Writes @p v as a Prometheus sample value: the shortest text that reads
 *  back as the same double (4.087, not 4.0869999999999997), in plain
 *  decimals where 17 of them suffice (19020, 0.000002), else with an
 *  exponent; or NaN, +Inf, -Inf. */
void bl_prom_number(FILE *fp, double v);

/**
 * @brief Standard base64 (RFC 4648, '+' '/', '=' padding) of @p len bytes.
 * @returns a malloc'd NUL-terminated string (length in *outlenp if given),
 *          or NULL when out of memory. Thread-safe.
 */
char *bl_base64_encode(const void *data, size_t len, size_t *outlenp);

/**
 * @brief Decodes standard base64; the '=' padding may be omitted, nothing
 *        else (no whitespace, no URL alphabet) is accepted.
 * @param outp receives a malloc'd buffer (never NULL on success, even for
 *             zero bytes) that the caller frees.
 * @returns 0, -1 when @p in is not base64, -2 when out of memory.
 */
int bl_base64_decode(const char *in, size_t len, void **outp, size_t *outlenp);

#endif /* BALLAST_UTIL_H */
