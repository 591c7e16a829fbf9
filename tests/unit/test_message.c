/* test_message.c - unit tests of the message accessors and handler results
 * (src/message.c). Messages are built without librdkafka's consumer: the
 * view fields are filled directly and headers come from
 * rd_kafka_headers_new(). Run under ASan: reset must free everything. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "message.h"
#include "producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ----------------------------------------------------------- */

static void test_message_view(void **state)
{
    struct ballast_message_s m;
    const void *p;
    size_t len = 99;
    (void)state;

    memset(&m, 0, sizeof(m));
    m.topic = "orders";
    m.partition = 7;
    m.offset = 123456789012LL;
    m.timestamp = 1700000000123LL;
    m.key = "k1";
    m.key_len = 2;
    m.value = "{\"a\":1}";
    m.value_len = 7;
    m.attempt = 3;

    assert_string_equal(ballast_message_topic(&m), "orders");
    assert_int_equal(ballast_message_partition(&m), 7);
    assert_int_equal(ballast_message_offset(&m), 123456789012LL);
    assert_int_equal(ballast_message_timestamp(&m), 1700000000123LL);
    assert_int_equal(ballast_message_attempt(&m), 3);
    p = ballast_message_key(&m, &len);
    assert_ptr_equal(p, m.key);
    assert_int_equal(len, 2);
    p = ballast_message_value(&m, &len);
    assert_memory_equal(p, "{\"a\":1}", 7);
    assert_int_equal(len, 7);
    /* lenp may be NULL */
    assert_ptr_equal(ballast_message_key(&m, NULL), m.key);
    assert_ptr_equal(ballast_message_value(&m, NULL), m.value);
    /* no headers */
    assert_int_equal(ballast_message_header_count(&m), 0);
    assert_int_equal(ballast_message_header(&m, 0, NULL, NULL, NULL), -1);
    assert_int_equal(ballast_message_header_find(&m, "x", NULL, NULL), -1);
}

static void test_message_null_key_tombstone(void **state)
{
    struct ballast_message_s m;
    size_t len = 99;
    (void)state;

    memset(&m, 0, sizeof(m));
    m.topic = "t";
    m.timestamp = -1;
    m.attempt = 1;
    assert_null(ballast_message_key(&m, &len));
    assert_int_equal(len, 0);
    len = 99;
    assert_null(ballast_message_value(&m, &len));
    assert_int_equal(len, 0);
    assert_int_equal(ballast_message_timestamp(&m), -1);

    /* an empty (non-null) value is not a tombstone */
    m.value = "";
    m.value_len = 0;
    assert_non_null(ballast_message_value(&m, &len));
    assert_int_equal(len, 0);
}

static void test_message_headers(void **state)
{
    struct ballast_message_s m;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    const char *name;
    const void *value;
    size_t len;
    (void)state;

    assert_int_equal(rd_kafka_header_add(hdrs, "trace-id", -1, "abc", 3), 0);
    assert_int_equal(rd_kafka_header_add(hdrs, "nullval", -1, NULL, 0), 0);
    assert_int_equal(rd_kafka_header_add(hdrs, "bin", -1, "\0\1\2", 3), 0);
    assert_int_equal(rd_kafka_header_add(hdrs, "trace-id", -1, "def", 3), 0);
    assert_int_equal(rd_kafka_header_add(hdrs, "empty", -1, "", 0), 0);

    memset(&m, 0, sizeof(m));
    m.topic = "t";
    m.hdrs = hdrs;
    m.attempt = 1;

    assert_int_equal(ballast_message_header_count(&m), 5);

    assert_int_equal(ballast_message_header(&m, 0, &name, &value, &len), 0);
    assert_string_equal(name, "trace-id");
    assert_int_equal(len, 3);
    assert_memory_equal(value, "abc", 3);

    len = 99;
    value = "not null";
    assert_int_equal(ballast_message_header(&m, 1, &name, &value, &len), 0);
    assert_string_equal(name, "nullval");
    assert_null(value);
    assert_int_equal(len, 0);

    assert_int_equal(ballast_message_header(&m, 2, &name, &value, &len), 0);
    assert_string_equal(name, "bin");
    assert_int_equal(len, 3);
    assert_memory_equal(value, "\0\1\2", 3);

    assert_int_equal(ballast_message_header(&m, 4, &name, &value, &len), 0);
    assert_string_equal(name, "empty");
    assert_int_equal(len, 0);

    /* out of range */
    assert_int_equal(ballast_message_header(&m, 5, &name, &value, &len), -1);
    /* NULL out-pointers are fine */
    assert_int_equal(ballast_message_header(&m, 0, NULL, NULL, NULL), 0);

    /* find returns the last header of that name */
    assert_int_equal(ballast_message_header_find(&m, "trace-id", &value, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(value, "def", 3);
    len = 99;
    assert_int_equal(ballast_message_header_find(&m, "nullval", &value, &len), 0);
    assert_null(value);
    assert_int_equal(len, 0);
    assert_int_equal(ballast_message_header_find(&m, "missing", &value, &len), -1);
    assert_int_equal(ballast_message_header_find(&m, "bin", NULL, NULL), 0);

    /* clear leaves headers it does not own alone (rkm is NULL) */
    bl_message_clear(&m);
    assert_null(m.hdrs);
    assert_int_equal(rd_kafka_header_cnt(hdrs), 5);
    rd_kafka_headers_destroy(hdrs);
}

/* ballast_message_header() must answer -1 for any idx >= header_count.
 * Regression: failed until ballast_message_header (src/message.c) checks idx against
 * rd_kafka_header_cnt() before calling rd_kafka_header_get_all(), which
 * casts idx to int: idx = 2^32 + 1 returns header 1, and idx = SIZE_MAX or
 * 2^31 reads before the array (SIGSEGV; not exercised here so the suite
 * keeps running). */
static void test_message_header_huge_index(void **state)
{
    struct ballast_message_s m;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    const char *name = NULL;
    const void *value;
    size_t len;
    int rc;
    (void)state;

    assert_int_equal(rd_kafka_header_add(hdrs, "a", -1, "1", 1), 0);
    assert_int_equal(rd_kafka_header_add(hdrs, "b", -1, "2", 1), 0);
    memset(&m, 0, sizeof(m));
    m.hdrs = hdrs;
    if (sizeof(size_t) > 4) {
        char got[16] = "";
        rc = ballast_message_header(&m, ((size_t)1 << 32) + 1, &name, &value, &len);
        if (rc == 0 && name)
            snprintf(got, sizeof(got), "%s", name);
        rd_kafka_headers_destroy(hdrs);
        if (rc != -1)
            fail_msg("idx 2^32+1 of 2 headers: returned %d (header \"%s\"), "
                     "expected -1", rc, got);
    } else {
        rd_kafka_headers_destroy(hdrs);
    }
}

/* ---- results ------------------------------------------------------------ */

static void test_emit_nulls(void **state)
{
    struct ballast_result_s res = {0};
    bl_record_t *r;
    (void)state;

    assert_int_equal(ballast_result_emit(&res, NULL, NULL, 0, NULL, 0), 0);
    assert_int_equal(res.record_count, 1);
    r = &res.records[0];
    assert_null(r->topic);
    assert_null(r->key);
    assert_null(r->value);
    assert_false(r->has_key);
    assert_false(r->has_value);
    assert_int_equal(r->key_len, 0);
    assert_int_equal(r->value_len, 0);
    assert_int_equal(r->header_count, 0);

    /* NULL key/value with a non-zero length: still null, length 0 */
    assert_int_equal(ballast_result_emit(&res, "t", NULL, 5, NULL, 9), 0);
    r = &res.records[1];
    assert_string_equal(r->topic, "t");
    assert_false(r->has_key);
    assert_false(r->has_value);
    assert_int_equal(r->key_len, 0);
    assert_int_equal(r->value_len, 0);

    /* empty but present key and value differ from null */
    assert_int_equal(ballast_result_emit(&res, "t", "", 0, "", 0), 0);
    r = &res.records[2];
    assert_true(r->has_key);
    assert_true(r->has_value);
    assert_int_equal(r->key_len, 0);
    assert_int_equal(r->value_len, 0);
    bl_result_reset(&res);
}

static void test_emit_copies(void **state)
{
    struct ballast_result_s res = {0};
    char topic[] = "out", key[] = "k\0y", value[] = "v\0alue";
    bl_record_t *r;
    (void)state;

    assert_int_equal(ballast_result_emit(&res, topic, key, 3, value, 6), 0);
    memset(topic, 'X', 3);
    memset(key, 'X', 3);
    memset(value, 'X', 6);
    r = &res.records[0];
    assert_string_equal(r->topic, "out");
    assert_int_equal(r->key_len, 3);
    assert_memory_equal(r->key, "k\0y", 3);
    assert_int_equal(r->value_len, 6);
    assert_memory_equal(r->value, "v\0alue", 6);
    assert_true(r->has_key);
    assert_true(r->has_value);
    bl_result_reset(&res);
}

static void test_emit_many_and_headers_on_last(void **state)
{
    struct ballast_result_s res = {0};
    char buf[16];
    (void)state;

    /* grows past the initial capacity; headers go to the latest record */
    for (int i = 0; i < 50; i++) {
        snprintf(buf, sizeof(buf), "v%d", i);
        assert_int_equal(ballast_result_emit(&res, i % 2 ? "t" : NULL, NULL, 0, buf,
                                             strlen(buf)),
                         0);
        for (int h = 0; h < i % 4; h++) {
            char name[48];
            snprintf(name, sizeof(name), "h%d-%d", i, h);
            assert_int_equal(ballast_result_emit_header(&res, name, buf, strlen(buf)),
                             0);
        }
    }
    assert_int_equal(res.record_count, 50);
    for (int i = 0; i < 50; i++) {
        bl_record_t *r = &res.records[i];
        snprintf(buf, sizeof(buf), "v%d", i);
        assert_int_equal(r->value_len, strlen(buf));
        assert_memory_equal(r->value, buf, strlen(buf));
        if (i % 2)
            assert_string_equal(r->topic, "t");
        else
            assert_null(r->topic);
        assert_int_equal(r->header_count, (size_t)(i % 4));
        for (size_t h = 0; h < r->header_count; h++) {
            char name[48];
            snprintf(name, sizeof(name), "h%d-%zu", i, h);
            assert_string_equal(r->headers[h].name, name);
            assert_int_equal(r->headers[h].len, strlen(buf));
            assert_memory_equal(r->headers[h].value, buf, strlen(buf));
        }
    }
    bl_result_reset(&res);
}

static void test_emit_header(void **state)
{
    struct ballast_result_s res = {0};
    char name[] = "x-id", value[] = "42";
    bl_record_t *r;
    (void)state;

    /* no record yet */
    assert_int_equal(ballast_result_emit_header(&res, "h", "v", 1), -1);
    assert_int_equal(res.record_count, 0);

    assert_int_equal(ballast_result_emit(&res, "a", NULL, 0, "1", 1), 0);
    assert_int_equal(ballast_result_emit(&res, "b", NULL, 0, "2", 1), 0);
    assert_int_equal(ballast_result_emit_header(&res, name, value, 2), 0);
    memset(name, 'X', 4); /* copied */
    memset(value, 'X', 2);
    assert_int_equal(ballast_result_emit_header(&res, "nullval", NULL, 0), 0);
    assert_int_equal(ballast_result_emit_header(&res, "nullval-len", NULL, 7), 0);
    assert_int_equal(ballast_result_emit_header(&res, "empty", "", 0), 0);
    assert_int_equal(ballast_result_emit_header(&res, NULL, "v", 1), -1);

    assert_int_equal(res.records[0].header_count, 0); /* only the last record */
    r = &res.records[1];
    assert_int_equal(r->header_count, 4);
    assert_string_equal(r->headers[0].name, "x-id");
    assert_int_equal(r->headers[0].len, 2);
    assert_memory_equal(r->headers[0].value, "42", 2);
    assert_string_equal(r->headers[1].name, "nullval");
    assert_null(r->headers[1].value);
    assert_int_equal(r->headers[1].len, 0);
    assert_string_equal(r->headers[2].name, "nullval-len");
    assert_null(r->headers[2].value);
    assert_int_equal(r->headers[2].len, 0);
    assert_string_equal(r->headers[3].name, "empty");
    assert_non_null(r->headers[3].value);
    assert_int_equal(r->headers[3].len, 0);
    bl_result_reset(&res);
}

static void test_set_error(void **state)
{
    struct ballast_result_s res = {0};
    char msg[] = "first failure";
    (void)state;

    ballast_result_set_error(&res, msg);
    memset(msg, 'X', sizeof(msg) - 1); /* copied */
    assert_string_equal(res.error, "first failure");
    ballast_result_set_error(&res, "second"); /* last call wins */
    assert_string_equal(res.error, "second");
    ballast_result_set_error(&res, NULL);
    assert_non_null(res.error);
    assert_string_equal(res.error, "");
    ballast_result_set_error(&res, "third");
    assert_string_equal(res.error, "third");
    bl_result_reset(&res);
    assert_null(res.error);
}

/* reset frees everything (ASan reports leaks at exit) and the result can be
 * used again. */
static void test_reset_and_reuse(void **state)
{
    struct ballast_result_s res = {0};
    (void)state;

    bl_result_reset(&res); /* reset of an empty result is fine */
    for (int round = 0; round < 3; round++) {
        ballast_result_set_error(&res, "boom");
        for (int i = 0; i < 9; i++) {
            assert_int_equal(ballast_result_emit(&res, "t", "k", 1, "v", 1), 0);
            assert_int_equal(ballast_result_emit_header(&res, "h1", "x", 1), 0);
            assert_int_equal(ballast_result_emit_header(&res, "h2", NULL, 0), 0);
        }
        assert_int_equal(res.record_count, 9);
        bl_result_reset(&res);
        assert_null(res.error);
        assert_null(res.records);
        assert_int_equal(res.record_count, 0);
        assert_int_equal(res.record_cap, 0);
        assert_int_equal(ballast_result_emit_header(&res, "h", "v", 1), -1);
    }
    bl_result_reset(&res); /* twice is fine */
}

/* bl_message_clear releases the message's result. */
static void test_message_clear_frees_result(void **state)
{
    struct ballast_message_s m;
    (void)state;

    memset(&m, 0, sizeof(m));
    ballast_result_set_error(&m.result, "x");
    assert_int_equal(ballast_result_emit(&m.result, NULL, "k", 1, "v", 1), 0);
    assert_int_equal(ballast_result_emit_header(&m.result, "h", "v", 1), 0);
    bl_message_clear(&m);
    assert_null(m.result.error);
    assert_int_equal(m.result.record_count, 0);
    assert_null(m.rkm);
    bl_message_clear(&m); /* twice is fine */
}

/* Headers past the first buffer's room move with it: every name and value
 * still reads back, a null value included. */
static void test_many_large_headers_survive_growth(void **state)
{
    (void)state;
    ballast_result_t res = {0};
    char name[32], value[128];

    assert_int_equal(ballast_result_emit(&res, NULL, NULL, 0, "v", 1), 0);
    for (int h = 0; h < 40; h++) {
        snprintf(name, sizeof(name), "header-%d", h);
        memset(value, 'a' + h % 26, sizeof(value));
        assert_int_equal(ballast_result_emit_header(&res, name, h == 17 ? NULL : value,
                                                    sizeof(value)),
                         0);
    }
    bl_record_t *r = &res.records[0];
    assert_int_equal(r->header_count, 40);
    for (int h = 0; h < 40; h++) {
        snprintf(name, sizeof(name), "header-%d", h);
        memset(value, 'a' + h % 26, sizeof(value));
        assert_string_equal(r->headers[h].name, name);
        if (h == 17) {
            assert_null(r->headers[h].value);
            assert_int_equal(r->headers[h].len, 0);
        } else {
            assert_int_equal(r->headers[h].len, sizeof(value));
            assert_memory_equal(r->headers[h].value, value, sizeof(value));
        }
    }
    bl_result_reset(&res);
}

/* ---- trace context ------------------------------------------------------ */

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* A message with headers (name, value pairs; a NULL name ends them). */
static void traced_message(struct ballast_message_s *m, const char *const *hdrs)
{
    memset(m, 0, sizeof(*m));
    m->topic = "in";
    m->offset = 5;
    m->timestamp = 1700000000000;
    m->attempt = 1;
    m->hdrs = rd_kafka_headers_new(4);
    m->hdrs_loaded = true;
    for (; *hdrs; hdrs += 2)
        assert_int_equal(rd_kafka_header_add(m->hdrs, hdrs[0], -1, hdrs[1], -1), 0);
}

/* How many headers named @p name the record has; the last one's value,
 * NUL-terminated, in @p value. */
static int record_header(const bl_record_t *rec, const char *name, char *value, size_t size)
{
    int n = 0;

    value[0] = '\0';
    for (size_t i = 0; i < rec->header_count; i++) {
        if (strcmp(rec->headers[i].name, name))
            continue;
        n++;
        snprintf(value, size, "%.*s", (int)rec->headers[i].len, (char *)rec->headers[i].value);
    }
    return n;
}

/* A dead letter (as a Kafka transaction holds it) carries the child of the
 * message's context, never the message's own traceparent, and its
 * tracestate; a malformed traceparent goes nowhere, nor its tracestate. */
static void test_failure_record_trace(void **state)
{
    static const char *const valid[] = {"x-app", "kept", "traceparent", TP,
                                        "tracestate", "a=1", NULL};
    static const char *const bad[] = {"x-app", "kept", "traceparent", "00-1-2-01",
                                      "tracestate", "a=1", NULL};
    const bl_failure_t f = {"dlq", "g", "boom", 1, -1, -1};
    struct ballast_message_s m;
    struct ballast_result_s res = {0};
    char v[128];

    (void)state;
    traced_message(&m, valid);
    bl_message_trace_load(&m, false);
    assert_string_equal(ballast_message_traceparent(&m), TP);
    assert_string_equal(ballast_message_tracestate(&m), "a=1");
    assert_int_equal(bl_failure_record(&m, &f, &res), 0);
    assert_int_equal(record_header(&res.records[0], "traceparent", v, sizeof(v)), 1);
    assert_memory_equal(v, TP, 36);          /* version, trace-id */
    assert_string_equal(v + 52, "-01");       /* flags */
    assert_memory_not_equal(v + 36, &TP[36], 16); /* a span of its own */
    assert_int_equal(record_header(&res.records[0], "tracestate", v, sizeof(v)), 1);
    assert_string_equal(v, "a=1");
    assert_int_equal(record_header(&res.records[0], "x-app", v, sizeof(v)), 1);
    bl_result_reset(&res);
    rd_kafka_headers_destroy(m.hdrs);
    bl_message_clear(&m);

    traced_message(&m, bad);
    bl_message_trace_load(&m, false);
    assert_null(ballast_message_traceparent(&m));
    assert_null(ballast_message_tracestate(&m));
    assert_int_equal(bl_failure_record(&m, &f, &res), 0);
    assert_int_equal(record_header(&res.records[0], "traceparent", v, sizeof(v)), 0);
    assert_int_equal(record_header(&res.records[0], "tracestate", v, sizeof(v)), 0);
    assert_int_equal(record_header(&res.records[0], "x-app", v, sizeof(v)), 1);
    bl_result_reset(&res);
    rd_kafka_headers_destroy(m.hdrs);
    bl_message_clear(&m);

    /* tracing = on: a fresh context instead. */
    traced_message(&m, bad);
    bl_message_trace_load(&m, true);
    assert_non_null(ballast_message_traceparent(&m));
    assert_null(ballast_message_tracestate(&m));
    assert_int_equal(bl_failure_record(&m, &f, &res), 0);
    assert_int_equal(record_header(&res.records[0], "traceparent", v, sizeof(v)), 1);
    assert_memory_equal(v, ballast_message_traceparent(&m), 36);
    assert_int_equal(record_header(&res.records[0], "tracestate", v, sizeof(v)), 0);
    bl_result_reset(&res);
    rd_kafka_headers_destroy(m.hdrs);
    bl_message_clear(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_large_headers_survive_growth),
        cmocka_unit_test(test_message_view),
        cmocka_unit_test(test_message_null_key_tombstone),
        cmocka_unit_test(test_message_headers),
        cmocka_unit_test(test_message_header_huge_index),
        cmocka_unit_test(test_emit_nulls),
        cmocka_unit_test(test_emit_copies),
        cmocka_unit_test(test_emit_many_and_headers_on_last),
        cmocka_unit_test(test_emit_header),
        cmocka_unit_test(test_set_error),
        cmocka_unit_test(test_reset_and_reuse),
        cmocka_unit_test(test_message_clear_frees_result),
        cmocka_unit_test(test_failure_record_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
