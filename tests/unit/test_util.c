/* test_util.c - unit tests of the small helpers of src/util.c:
 * bl_utf8_valid, bl_iso8601, bl_strdup, bl_fmt, base64, Prometheus labels. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- bl_utf8_valid ------------------------------------------------------ */

typedef struct utf8_case {
    const char *what;
    const char *bytes;
    size_t len; /* 0: strlen(bytes) */
    bool valid;
} utf8_case_t;

static const utf8_case_t utf8_cases[] = {
    {"empty", "", 0, true},
    {"ascii", "hello, world {\"k\":1}", 0, true},
    {"NUL byte is ASCII", "a\0b", 3, true},
    {"DEL", "\x7f", 0, true},
    /* 2 bytes */
    {"U+0080", "\xc2\x80", 0, true},
    {"e acute", "caf\xc3\xa9", 0, true},
    {"U+07FF", "\xdf\xbf", 0, true},
    /* 3 bytes */
    {"U+0800", "\xe0\xa0\x80", 0, true},
    {"euro sign", "\xe2\x82\xac", 0, true},
    {"U+D7FF", "\xed\x9f\xbf", 0, true},
    {"U+E000", "\xee\x80\x80", 0, true},
    {"U+FFFD", "\xef\xbf\xbd", 0, true},
    {"U+FFFF", "\xef\xbf\xbf", 0, true},
    /* 4 bytes */
    {"U+10000", "\xf0\x90\x80\x80", 0, true},
    {"emoji", "\xf0\x9f\x98\x80", 0, true},
    {"U+10FFFF", "\xf4\x8f\xbf\xbf", 0, true},
    {"mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", 0, true},
    /* overlong */
    {"overlong NUL C0 80", "\xc0\x80", 0, false},
    {"overlong '/' C0 AF", "\xc0\xaf", 0, false},
    {"overlong C1 BF", "\xc1\xbf", 0, false},
    {"overlong 3-byte U+007F", "\xe0\x81\xbf", 0, false},
    {"overlong 3-byte U+07FF", "\xe0\x9f\xbf", 0, false},
    {"overlong 4-byte U+FFFF", "\xf0\x8f\xbf\xbf", 0, false},
    {"overlong 4-byte NUL", "\xf0\x80\x80\x80", 0, false},
    /* surrogates */
    {"U+D800", "\xed\xa0\x80", 0, false},
    {"U+DBFF", "\xed\xaf\xbf", 0, false},
    {"U+DC00", "\xed\xb0\x80", 0, false},
    {"U+DFFF", "\xed\xbf\xbf", 0, false},
    {"surrogate pair CESU-8", "\xed\xa0\xbd\xed\xb8\x80", 0, false},
    /* beyond U+10FFFF */
    {"U+110000", "\xf4\x90\x80\x80", 0, false},
    {"F5 lead", "\xf5\x80\x80\x80", 0, false},
    {"F7 lead", "\xf7\xbf\xbf\xbf", 0, false},
    {"5-byte form", "\xf8\x88\x80\x80\x80", 0, false},
    {"6-byte form", "\xfc\x84\x80\x80\x80\x80", 0, false},
    {"FE", "\xfe", 0, false},
    {"FF", "\xff", 0, false},
    /* truncated */
    {"truncated 2-byte", "\xc3", 0, false},
    {"truncated 3-byte after 1", "\xe2", 0, false},
    {"truncated 3-byte after 2", "\xe2\x82", 0, false},
    {"truncated 4-byte after 3", "\xf0\x9f\x98", 0, false},
    {"truncated at end of text", "abc\xf0\x9f", 0, false},
    {"truncated by len", "\xe2\x82\xac", 2, false},
    {"truncated then ASCII", "\xe2\x82" "a", 0, false},
    /* bad continuation bytes */
    {"lone continuation", "\x80", 0, false},
    {"lone continuation BF", "a\xbf" "b", 0, false},
    {"2-byte with ASCII second", "\xc3\x41", 0, false},
    {"3-byte with C0 third", "\xe2\x82\xc0", 0, false},
    {"4-byte with bad fourth", "\xf0\x9f\x98\x20", 0, false},
    {"latin-1 text", "caf\xe9", 0, false},
};

static void test_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const utf8_case_t *c = &utf8_cases[i];
        size_t len = c->len ? c->len : strlen(c->bytes);
        /* a heap copy of exactly len bytes, so ASan sees any over-read */
        char *copy = malloc(len ? len : 1);
        bool got;

        assert_non_null(copy);
        memcpy(copy, c->bytes, len);
        got = bl_utf8_valid(copy, len);
        free(copy);
        if (got != c->valid)
            fail_msg("%s: bl_utf8_valid = %d, expected %d", c->what, got, c->valid);
    }
}

/* Every code point round-trips: encode, check valid iff not a surrogate. */
static size_t encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static void test_utf8_all_code_points(void **state)
{
    unsigned char buf[4];
    (void)state;

    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        size_t n = encode(cp, buf);
        bool want = !(cp >= 0xd800 && cp <= 0xdfff);
        if (bl_utf8_valid(buf, n) != want)
            fail_msg("U+%04X: expected %s", cp, want ? "valid" : "invalid");
        /* every proper prefix of a multi-byte sequence is invalid */
        for (size_t k = 1; k < n; k++)
            if (bl_utf8_valid(buf, k))
                fail_msg("U+%04X truncated to %zu bytes accepted", cp, k);
    }
}

/* ---- bl_iso8601 --------------------------------------------------------- */

typedef struct time_case {
    int64_t ms;
    const char *want;
} time_case_t;

static const time_case_t time_cases[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {1, "1970-01-01T00:00:00.001Z"},
    {999, "1970-01-01T00:00:00.999Z"},
    {1000, "1970-01-01T00:00:01.000Z"},
    {1700000000123LL, "2023-11-14T22:13:20.123Z"},
    {951782400000LL, "2000-02-29T00:00:00.000Z"},
    {1709251199999LL, "2024-02-29T23:59:59.999Z"},
    {4102444799999LL, "2099-12-31T23:59:59.999Z"},
    {1234567890050LL, "2009-02-13T23:31:30.050Z"},
};

static void test_iso8601(void **state)
{
    char buf[64];
    (void)state;

    for (size_t i = 0; i < sizeof(time_cases) / sizeof(time_cases[0]); i++) {
        memset(buf, 'x', sizeof(buf));
        bl_iso8601(time_cases[i].ms, buf, sizeof(buf));
        assert_string_equal(buf, time_cases[i].want);
    }
}

static void test_iso8601_small_buffer(void **state)
{
    char buf[32];
    (void)state;

    memset(buf, 'x', sizeof(buf));
    bl_iso8601(0, buf, 11);
    assert_string_equal(buf, "1970-01-01");
    assert_int_equal(buf[11], 'x'); /* nothing written past size */
    bl_iso8601(0, buf, 25); /* exactly fits 24 chars + NUL */
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    buf[0] = 'x';
    bl_iso8601(0, buf, 0); /* size 0: nothing written */
    assert_int_equal(buf[0], 'x');
}

/* Regression: failed until bl_iso8601 (src/util.c) handles epoch_ms < 0: it truncates
 * seconds toward zero and prints a negative millisecond field
 * ("1970-01-01T00:00:00.-01Z" for -1) */
static void test_iso8601_before_epoch(void **state)
{
    char buf[64];
    (void)state;

    bl_iso8601(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    bl_iso8601(-1500, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:58.500Z");
}

/* ---- bl_strdup, bl_fmt -------------------------------------------------- */

static void test_strdup(void **state)
{
    char src[] = "abc";
    char *copy;
    (void)state;

    assert_null(bl_strdup(NULL));
    copy = bl_strdup(src);
    assert_non_null(copy);
    assert_ptr_not_equal(copy, src);
    src[0] = 'z';
    assert_string_equal(copy, "abc");
    free(copy);
    copy = bl_strdup("");
    assert_string_equal(copy, "");
    free(copy);
}

static void test_fmt(void **state)
{
    char buf[8];
    (void)state;

    memset(buf, 'x', sizeof(buf));
    bl_fmt(buf, sizeof(buf), "%s-%d", "abc", 12);
    assert_string_equal(buf, "abc-12");
    bl_fmt(buf, sizeof(buf), "%s", "0123456789"); /* truncated, terminated */
    assert_string_equal(buf, "0123456");
    buf[0] = 'q';
    bl_fmt(buf, 0, "%s", "zzz"); /* size 0: untouched */
    assert_int_equal(buf[0], 'q');
    bl_fmt(buf, 1, "%s", "zzz");
    assert_string_equal(buf, "");
}

static void test_clocks(void **state)
{
    int64_t a = bl_now_ms(), b = bl_now_ms(), w = bl_wall_ms();
    (void)state;

    assert_true(b >= a);
    assert_true(w > 1600000000000LL); /* after 2020 */
}

/* ---- base64 ------------------------------------------------------------- */

static void test_base64_vectors(void **state)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
                                        "Zm9vYmE=", "Zm9vYmFy"};
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        size_t len, dlen;
        char *b = bl_base64_encode(plain[i], strlen(plain[i]), &len);
        void *d;

        assert_non_null(b);
        assert_string_equal(b, coded[i]);
        assert_int_equal(len, strlen(coded[i]));
        assert_int_equal(bl_base64_decode(b, len, &d, &dlen), 0);
        assert_non_null(d);
        assert_int_equal(dlen, strlen(plain[i]));
        if (dlen)
            assert_memory_equal(d, plain[i], dlen);
        free(d);
        free(b);
    }
}

static void test_base64_decode_table(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } cases[] = {
        {"Zg", 0, "f"},          {"Zm8", 0, "fo"},     {"Zm9vYg", 0, "foob"},
        {"+/+/", 0, "\xfb\xff\xbf"},
        {"Z", -1, NULL},         {"Zg=", -1, NULL},    {"Z===", -1, NULL},
        {"====", -1, NULL},      {"Zm9v\n", -1, NULL}, {"Zm-_", -1, NULL},
        {"Zg==Zg==", -1, NULL},  {"Z m9v", -1, NULL},  {"Zm9vY", -1, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        void *out = (void *)1;
        size_t len = 99;
        int rc = bl_base64_decode(cases[i].in, strlen(cases[i].in), &out, &len);

        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(len, strlen(cases[i].out));
            assert_memory_equal(out, cases[i].out, len);
        } else {
            assert_null(out);
        }
        free(out);
    }
}

static void test_base64_roundtrip_all_bytes(void **state)
{
    unsigned char data[300];

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= sizeof(data); len++) {
        size_t blen, dlen;
        char *b = bl_base64_encode(data, len, &blen);
        void *d;

        assert_non_null(b);
        assert_int_equal(blen % 4, 0);
        assert_int_equal(bl_base64_decode(b, blen, &d, &dlen), 0);
        assert_int_equal(dlen, len);
        if (len)
            assert_memory_equal(d, data, len);
        free(d);
        free(b);
    }
}

/* ---- bl_prom_label ------------------------------------------------------ */

static void test_prom_label(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    (void)state;
    assert_non_null(fp);
    bl_prom_label(fp, "a\\b\"c\nd");
    fclose(fp);
    assert_string_equal(text, "a\\\\b\\\"c\\nd");
    free(text);
}

/* ---- bl_prom_number ----------------------------------------------------- */

static char *prom_number(double v)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    assert_non_null(fp);
    bl_prom_number(fp, v);
    fclose(fp);
    return text;
}

static void test_prom_number(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {4087 / 1000.0, "4.087"}, /* %.17g wrote 4.0869999999999997 */
        {0, "0"},
        {-0.0, "0"},
        {1, "1"},
        {19020, "19020"}, /* not 1.902e+04 */
        {10, "10"},
        {-3, "-3"},
        {2.5, "2.5"},
        {0.0001, "0.0001"},
        {299.987, "299.987"},
        {0.1 + 0.2, "0.30000000000000004"}, /* not 0.3: that reads back otherwise */
        {2e-6, "0.000002"}, /* not 2e-06 */
        {1e-7, "0.0000001"},
        {1e-20, "1e-20"},
        {123456.789, "123456.789"},
        {9007199254740992.0, "9007199254740992"},
        {1e300, "1e+300"},
    };
    char *text;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        text = prom_number(cases[i].v);
        if (strcmp(text, cases[i].text))
            fail_msg("case %zu: \"%s\", expected \"%s\"", i, text, cases[i].text);
        free(text);
    }
    text = prom_number(NAN);
    assert_string_equal(text, "NaN");
    free(text);
    text = prom_number(INFINITY);
    assert_string_equal(text, "+Inf");
    free(text);
    text = prom_number(-INFINITY);
    assert_string_equal(text, "-Inf");
    free(text);
    /* Whatever the value, the text reads back as the same double. */
    for (int i = 1; i < 100000; i += 7) {
        double v = (double)i / 1000.0 + (double)i * 1e-9;
        text = prom_number(v);
        if (strtod(text, NULL) != v)
            fail_msg("%s does not read back as %.17g", text, v);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_utf8_all_code_points),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_iso8601_small_buffer),
        cmocka_unit_test(test_iso8601_before_epoch),
        cmocka_unit_test(test_strdup),
        cmocka_unit_test(test_fmt),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_decode_table),
        cmocka_unit_test(test_base64_roundtrip_all_bytes),
        cmocka_unit_test(test_prom_label),
        cmocka_unit_test(test_prom_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
