/* fuzz_utf8_ref.h - a reference UTF-8 validator for differential checks,
 * written from the Unicode Standard's table of well-formed byte sequences
 * (Table 3-7) rather than by decoding code points as util.c does. */
#ifndef BALLAST_FUZZ_UTF8_REF_H
#define BALLAST_FUZZ_UTF8_REF_H

#include <stdbool.h>
#include <stddef.h>

static inline bool ref_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;

    while (i < n) {
        unsigned char b = s[i], lo = 0x80, hi = 0xbf;
        size_t need;

        if (b <= 0x7f) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf)
            need = 1;
        else if (b == 0xe0)
            need = 2, lo = 0xa0;
        else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
            need = 2;
        else if (b == 0xed)
            need = 2, hi = 0x9f; /* no surrogates */
        else if (b == 0xf0)
            need = 3, lo = 0x90;
        else if (b >= 0xf1 && b <= 0xf3)
            need = 3;
        else if (b == 0xf4)
            need = 3, hi = 0x8f; /* nothing above U+10FFFF */
        else
            return false; /* 80..C1 (continuation, overlong), F5..FF */
        if (n - i <= need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += need + 1;
    }
    return true;
}

#endif /* BALLAST_FUZZ_UTF8_REF_H */
