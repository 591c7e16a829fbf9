/*
 * util.h - small string, time and encoding helpers (util.c). They need
 * nothing but libc, so the `ballast` command compiles util.c too.
 */
#ifndef BALLAST_UTIL_H
#define BALLAST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define BL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BL_PRINTF(a, b)
#endif

/** strdup that returns NULL only when @p s is NULL or memory is out. */
char *bl_strdup(const char *s);
/** snprintf into a fixed buffer, always terminated, never overflowing. */
void bl_fmt(char *buf, size_t size, const char *fmt, ...) BL_PRINTF(3, 4);
/** Milliseconds from a monotonic clock. */
int64_t bl_now_ms(void);
/** Milliseconds since the epoch. */
int64_t bl_wall_ms(void);
/** Sleeps @p ms (nothing when <= 0), resuming after signals. */
void bl_sleep_ms(int64_t ms);
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
