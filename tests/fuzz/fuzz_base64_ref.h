/* fuzz_base64_ref.h - an independent base64 decoder for the exec targets:
 * RFC 4648 alphabet, '=' padding optional but, when present, only as the
 * last one or two characters of a multiple of four (execproto.h). */
#ifndef BALLAST_FUZZ_BASE64_REF_H
#define BALLAST_FUZZ_BASE64_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static inline int ref_b64_digit(unsigned char c)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *hit = c ? strchr(alphabet, c) : NULL;
    return hit ? (int)(hit - alphabet) : -1;
}

/* @returns true and a malloc'd *outp (never NULL) when @p in is base64. */
static inline bool ref_b64_decode(const char *in, size_t len, unsigned char **outp,
                                  size_t *outlenp)
{
    size_t n = len, pad = 0, o = 0;
    unsigned char *out;
    unsigned bits = 0, acc = 0;

    while (pad < 2 && n > 0 && in[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad && len % 4 != 0)
        return false;
    if (n % 4 == 1)
        return false;
    if (!(out = malloc(n + 1)))
        abort();
    for (size_t i = 0; i < n; i++) {
        int d = ref_b64_digit((unsigned char)in[i]);
        if (d < 0) {
            free(out);
            return false;
        }
        acc = (acc << 6 | (unsigned)d) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outp = out;
    *outlenp = o;
    return true;
}

#endif /* BALLAST_FUZZ_BASE64_REF_H */
