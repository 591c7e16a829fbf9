/* test_trace.c - unit tests of W3C Trace Context (src/trace.c): which
 * traceparents are valid, the child and fresh contexts derived from them,
 * what a message's looked-up context keeps, and the log tag. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "trace.h"

#include <stdio.h>
#include <string.h>

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

typedef struct parse_case {
    const char *text; /* NULL: absent */
    const char *want; /* the version-00 form, or NULL: invalid */
} parse_case_t;

static const parse_case_t cases[] = {
    {TP, TP},
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", /* not sampled */
     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff", /* flags kept */
     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff"},
    {"00-00000000000000000000000000000001-0000000000000001-01",
     "00-00000000000000000000000000000001-0000000000000001-01"},
    /* A later version: its first four fields, passed on as version 00. */
    {"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TP},
    {"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes", TP},
    {NULL, NULL},
    {"", NULL},
    {"00-1-2-01", NULL},
    {"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL}, /* version ff */
    {"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", NULL}, /* uppercase */
    {"00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01", NULL},
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A", NULL},
    {"0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL},
    {"00-00000000000000000000000000000000-b7ad6b7169203331-01", NULL}, /* zero trace */
    {"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", NULL}, /* zero parent */
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", NULL}, /* 00 + more */
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1", NULL},   /* short */
    {"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", NULL}, /* no '-' */
    {"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL},
    {"00-0af7651916cd43dd8448eb211c80319cb-7ad6b7169203331-01", NULL},
    {"00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", NULL},
    {" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL},
    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ", NULL},
};

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[BL_TRACEPARENT_LEN + 1] = "untouched";
        const char *t = cases[i].text;
        bool ok = bl_traceparent_parse(t, t ? strlen(t) : 0, out);
        if (ok != (cases[i].want != NULL))
            fail_msg("case %zu (%s): %s", i, t ? t : "NULL", ok ? "valid" : "invalid");
        if (ok)
            assert_string_equal(out, cases[i].want);
        else
            assert_string_equal(out, "untouched");
    }
}

/* The length is the one given, not strlen: a header value is not
 * NUL-terminated, and a NUL inside it makes it invalid. */
static void test_parse_length(void **state)
{
    char out[BL_TRACEPARENT_LEN + 1];
    char padded[80];

    (void)state;
    snprintf(padded, sizeof(padded), "%sGARBAGE", TP);
    assert_true(bl_traceparent_parse(padded, BL_TRACEPARENT_LEN, out));
    assert_string_equal(out, TP);
    assert_false(bl_traceparent_parse(padded, strlen(padded), out));
    assert_false(bl_traceparent_parse(TP, BL_TRACEPARENT_LEN - 1, out));
    memcpy(padded, TP, sizeof(TP));
    padded[40] = '\0';
    assert_false(bl_traceparent_parse(padded, BL_TRACEPARENT_LEN, out));
}

static void test_child(void **state)
{
    const uint8_t span[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
    const uint8_t zero[8] = {0};
    char out[BL_TRACEPARENT_LEN + 1], back[BL_TRACEPARENT_LEN + 1];

    (void)state;
    bl_traceparent_child(TP, span, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
    assert_true(bl_traceparent_parse(out, strlen(out), back));
    /* Flags are kept. */
    bl_traceparent_child("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", span, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00");
    /* A span of zeros would be invalid. */
    bl_traceparent_child(TP, zero, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-0000000000000001-01");
    assert_true(bl_traceparent_parse(out, strlen(out), back));
}

static void test_root(void **state)
{
    uint8_t rnd[24];
    char out[BL_TRACEPARENT_LEN + 1], back[BL_TRACEPARENT_LEN + 1];

    (void)state;
    for (int i = 0; i < 24; i++)
        rnd[i] = (uint8_t)(0x10 * (i % 16) + i % 7);
    bl_traceparent_root(rnd, out);
    assert_string_equal(out, "00-00112233445566708192a3b4c5d6e0f1-0213243546506172-01");
    assert_true(bl_traceparent_parse(out, strlen(out), back));
    memset(rnd, 0, sizeof(rnd));
    bl_traceparent_root(rnd, out);
    assert_string_equal(out, "00-00000000000000000000000000000001-0000000000000001-01");
    assert_true(bl_traceparent_parse(out, strlen(out), back));
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_true(bl_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", 39));
    assert_true(bl_tracestate_valid("a", 1));
    assert_false(bl_tracestate_valid("", 0));
    assert_false(bl_tracestate_valid(NULL, 0));
    assert_false(bl_tracestate_valid("a\nb", 3));
    assert_false(bl_tracestate_valid("a\0b", 3));
    assert_false(bl_tracestate_valid("caf\xc3\xa9", 5));
}

/* Random bytes come from the kernel, and never twice the same. */
static void test_random(void **state)
{
    uint8_t a[24], b[24], big[2000];

    (void)state;
    assert_int_equal(bl_trace_random(a, sizeof(a)), 0);
    assert_int_equal(bl_trace_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    /* More than the pool holds at once. */
    assert_int_equal(bl_trace_random(big, sizeof(big)), 0);
    assert_memory_not_equal(big, big + 1000, 24);
}

/* A valid incoming context: kept with its tracestate; the child has the
 * same trace-id and flags, and a fresh span. */
static void test_init_incoming(void **state)
{
    bl_trace_t t = {0}, u = {0};
    char child[BL_TRACEPARENT_LEN + 1], child2[BL_TRACEPARENT_LEN + 1], back[56];
    char tag[BL_TRACE_TAG_SIZE];

    (void)state;
    bl_trace_init(&t, TP, strlen(TP), "k=v", 3, false);
    assert_true(t.loaded);
    assert_string_equal(t.parent, TP);
    assert_non_null(t.state);
    assert_string_equal(t.state, "k=v");
    assert_true(bl_trace_child(&t, child));
    assert_true(bl_traceparent_parse(child, strlen(child), back));
    assert_memory_equal(child, TP, 36);      /* version and trace-id */
    assert_string_equal(child + 52, "-01"); /* flags */
    assert_memory_not_equal(child + 36, &TP[36], 16);
    /* Another message with the same parent gets another span. */
    bl_trace_init(&u, TP, strlen(TP), NULL, 0, true);
    assert_null(u.state);
    assert_true(bl_trace_child(&u, child2));
    assert_memory_not_equal(child + 36, child2 + 36, 16);
    assert_string_equal(bl_trace_log_tag(&t, tag), " trace=0af7651916cd43dd8448eb211c80319c");
    bl_trace_clear(&t);
    bl_trace_clear(&u);
    assert_false(t.loaded);
    assert_null(t.state);
    assert_false(bl_trace_child(&t, child));
    assert_string_equal(bl_trace_log_tag(&t, tag), "");
}

/* Without a valid traceparent: nothing, or with start a fresh context;
 * a tracestate without a valid traceparent is never kept. */
static void test_init_absent_or_malformed(void **state)
{
    static const char *const bad[] = {NULL, "00-1-2-01",
                                      "00-00000000000000000000000000000000-b7ad6b7169203331-01"};
    char child[BL_TRACEPARENT_LEN + 1], back[56], tag[BL_TRACE_TAG_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bl_trace_t off = {0}, on = {0};
        size_t len = bad[i] ? strlen(bad[i]) : 0;
        bl_trace_init(&off, bad[i], len, "k=v", 3, false);
        assert_true(off.loaded);
        assert_string_equal(off.parent, "");
        assert_null(off.state);
        assert_false(bl_trace_child(&off, child));
        assert_string_equal(bl_trace_log_tag(&off, tag), "");
        bl_trace_init(&on, bad[i], len, "k=v", 3, true);
        assert_true(bl_traceparent_parse(on.parent, strlen(on.parent), back));
        assert_string_equal(on.parent + 52, "-01");
        assert_null(on.state);
        assert_true(bl_trace_child(&on, child));
        assert_memory_equal(child, on.parent, 36);
        assert_memory_not_equal(child + 36, on.parent + 36, 16);
        bl_trace_clear(&on);
    }
}

/* A tracestate that is not text is dropped; the context stays. */
static void test_init_bad_state(void **state)
{
    bl_trace_t t = {0};

    (void)state;
    bl_trace_init(&t, TP, strlen(TP), "k=\x01", 3, false);
    assert_string_equal(t.parent, TP);
    assert_null(t.state);
    bl_trace_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_length),
        cmocka_unit_test(test_child),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_init_incoming),
        cmocka_unit_test(test_init_absent_or_malformed),
        cmocka_unit_test(test_init_bad_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
