/*
 * util.c - small string, time and encoding helpers, used across the library
 * and by the `ballast` command (see util.h).
 */
#include "util.h"

#include <math.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *bl_strdup(const char *s)
{
    size_t len;
    char *copy;

    if (!s)
        return NULL;
    len = strlen(s) + 1;
    copy = malloc(len);
    if (copy)
        memcpy(copy, s, len);
    return copy;
}

void bl_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (!size)
        return;
    va_start(ap, fmt);
    if (vsnprintf(buf, size, fmt, ap) < 0)
        buf[0] = '\0';
    va_end(ap);
}

int64_t bl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bl_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void bl_iso8601(int64_t epoch_ms, char *buf, size_t size)
{
    /* The date and time up to the second change once a second, and every
     * dead-letter record and log line needs them: keep the last ones. */
    static __thread time_t cached_secs = -1;
    static __thread char cached[48];
    static __thread size_t cached_len;
    /* Floor division, so that times before 1970 keep a positive remainder. */
    int64_t ms = ((epoch_ms % 1000) + 1000) % 1000;
    time_t secs = (time_t)((epoch_ms - ms) / 1000);
    struct tm tm;

    if (secs != cached_secs) {
        if (!gmtime_r(&secs, &tm)) {
            bl_fmt(buf, size, "invalid-time");
            return;
        }
        bl_fmt(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_secs = secs;
        cached_len = strlen(cached);
    }
    if (size < cached_len + sizeof(".000Z")) {
        bl_fmt(buf, size, "%s.%03dZ", cached, (int)ms);
        return;
    }
    /* The milliseconds by hand: vsnprintf was a tenth of a dead letter's
     * instructions. */
    memcpy(buf, cached, cached_len);
    buf += cached_len;
    buf[0] = '.';
    buf[1] = (char)('0' + ms / 100);
    buf[2] = (char)('0' + ms / 10 % 10);
    buf[3] = (char)('0' + ms % 10);
    buf[4] = 'Z';
    buf[5] = '\0';
}

/* Strict UTF-8: rejects overlong forms, surrogates and code points beyond
 * U+10FFFF, so that what passes can be put in a JSON string as is. */
bool bl_utf8_valid(const void *p, size_t len)
{
    const unsigned char *s = p, *end = s + len;

    while (s < end) {
        unsigned c = *s;
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - s) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

/* Label values escape backslash, double quote and newline. */
void bl_prom_label(FILE *fp, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', fp);
        if (*s == '\n')
            fputs("\\n", fp);
        else
            fputc(*s, fp);
    }
}

void bl_prom_number(FILE *fp, double v)
{
    char text[32];

    if (isnan(v)) {
        fputs("NaN", fp);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", fp);
        return;
    }
    /* Whole numbers as such (19020, not 1.902e+04), up to where doubles
     * still hold every integer. */
    if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v) {
        fprintf(fp, "%lld", (long long)v);
        return;
    }
    /* The fewest decimals that read back (2e-06 as 0.000002); then the
     * fewest significant digits, in exponent form, for what has none. */
    for (int decimals = 1; decimals <= 17 && fabs(v) < 1e15; decimals++) {
        snprintf(text, sizeof(text), "%.*f", decimals, v);
        if (strtod(text, NULL) == v) {
            fputs(text, fp);
            return;
        }
    }
    /* 17 significant digits always read back exactly. */
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, sizeof(text), "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    fputs(text, fp);
}

/* ---- base64 ------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *bl_base64_encode(const void *data, size_t len, size_t *outlenp)
{
    const unsigned char *in = data;
    size_t groups = len / 3 + (len % 3 != 0), outlen, o = 0;
    char *out;

    if (groups > (SIZE_MAX - 1) / 4)
        return NULL;
    outlen = groups * 4;
    if (!(out = malloc(outlen + 1)))
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        size_t left = len - i;
        uint32_t v = (uint32_t)in[i] << 16;
        if (left > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = left > 2 ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    if (outlenp)
        *outlenp = outlen;
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int bl_base64_decode(const char *in, size_t len, void **outp, size_t *outlenp)
{
    size_t n = len, o = 0;
    unsigned char *out;
    uint32_t acc = 0;
    int bits = 0;

    *outp = NULL;
    *outlenp = 0;
    /* Padding is only meaningful on a whole number of quads; elsewhere '='
     * is simply not in the alphabet and is refused below. */
    if (len % 4 == 0)
        for (int pad = 0; pad < 2 && n > 0 && in[n - 1] == '='; pad++)
            n--;
    if (n % 4 == 1)
        return -1;
    /* +1: a zero-byte result is still a valid (non-NULL) buffer. */
    if (!(out = malloc(n / 4 * 3 + 2 + 1)))
        return -2;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in[i]);
        if (v < 0) {
            free(out);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *outp = out;
    *outlenp = o;
    return 0;
}
