/* test_execproto.c - the exec protocol codec: requests and replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "execproto.h"
#include "message.h"

/* ---- helpers ------------------------------------------------------------ */

/* A message view built without Kafka (rkm NULL). */
static void msg_fill(struct ballast_message_s *m, const void *key, size_t klen,
                     const void *value, size_t vlen)
{
    memset(m, 0, sizeof(*m));
    m->topic = "orders";
    m->partition = 3;
    m->offset = 42;
    m->timestamp = 1700000000123;
    m->key = key;
    m->key_len = key ? klen : 0;
    m->value = value;
    m->value_len = value ? vlen : 0;
    m->attempt = 1;
}

static char *encode(const struct ballast_message_s *m)
{
    size_t len = 0;
    char *line = bl_exec_encode(m, 7, &len);

    assert_non_null(line);
    assert_int_equal(len, strlen(line));
    assert_true(len > 0 && line[len - 1] == '\n');
    /* One line: the only newline is the terminator. */
    assert_ptr_equal(strchr(line, '\n'), line + len - 1);
    return line;
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct enc_case {
    const char *name;
    const char *key;
    size_t klen; /* SIZE_MAX: strlen(key) */
    const char *value;
    size_t vlen;
    int64_t timestamp;
    const char *expect; /* the whole line, without '\n' */
} enc_case_t;

#define PREFIX "{\"id\":7,\"attempt\":1,\"topic\":\"orders\",\"partition\":3,\"offset\":42,"
#define TS "\"timestamp\":1700000000123,"

static const enc_case_t enc_cases[] = {
    {"text", "k1", SIZE_MAX, "hello", SIZE_MAX, 1700000000123,
     PREFIX TS "\"key\":\"k1\",\"value\":\"hello\",\"headers\":{}}"},
    {"null key", NULL, 0, "v", SIZE_MAX, 1700000000123,
     PREFIX TS "\"key\":null,\"value\":\"v\",\"headers\":{}}"},
    {"tombstone", "k", SIZE_MAX, NULL, 0, 1700000000123,
     PREFIX TS "\"key\":\"k\",\"value\":null,\"headers\":{}}"},
    {"empty key and value", "", 0, "", 0, 1700000000123,
     PREFIX TS "\"key\":\"\",\"value\":\"\",\"headers\":{}}"},
    {"binary value", "k", SIZE_MAX, "\xff\xfe", 2, 1700000000123,
     PREFIX TS "\"key\":\"k\",\"value_b64\":\"//4=\",\"headers\":{}}"},
    {"binary key", "\x80", 1, "v", SIZE_MAX, 1700000000123,
     PREFIX TS "\"key_b64\":\"gA==\",\"value\":\"v\",\"headers\":{}}"},
    {"NUL is not text", "k", SIZE_MAX, "a\0b", 3, 1700000000123,
     PREFIX TS "\"key\":\"k\",\"value_b64\":\"YQBi\",\"headers\":{}}"},
    {"overlong UTF-8 is not text", "k", SIZE_MAX, "\xc0\xaf", 2, 1700000000123,
     PREFIX TS "\"key\":\"k\",\"value_b64\":\"wK8=\",\"headers\":{}}"},
    {"UTF-8 stays raw", "k", SIZE_MAX, "caf\xc3\xa9 \xe2\x82\xac", SIZE_MAX,
     1700000000123,
     PREFIX TS "\"key\":\"k\",\"value\":\"caf\xc3\xa9 \xe2\x82\xac\",\"headers\":{}}"},
    {"control characters are escaped", "k", SIZE_MAX, "a\nb\r\t\"\\", SIZE_MAX,
     1700000000123,
     PREFIX TS "\"key\":\"k\",\"value\":\"a\\nb\\r\\t\\\"\\\\\",\"headers\":{}}"},
    {"no timestamp", "k", SIZE_MAX, "v", SIZE_MAX, -1,
     PREFIX "\"timestamp\":null,\"key\":\"k\",\"value\":\"v\",\"headers\":{}}"},
};

static void test_encode_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(enc_cases) / sizeof(enc_cases[0]); i++) {
        const enc_case_t *c = &enc_cases[i];
        struct ballast_message_s m;
        char *line, *expect;

        msg_fill(&m, c->key, c->klen == SIZE_MAX && c->key ? strlen(c->key) : c->klen,
                 c->value,
                 c->vlen == SIZE_MAX && c->value ? strlen(c->value) : c->vlen);
        m.timestamp = c->timestamp;
        line = encode(&m);
        expect = malloc(strlen(c->expect) + 2);
        assert_non_null(expect);
        memcpy(expect, c->expect, strlen(c->expect));
        memcpy(expect + strlen(c->expect), "\n", 2);
        if (strcmp(line, expect))
            fail_msg("case '%s':\n got    %s want   %s", c->name, line, expect);
        free(expect);
        free(line);
    }
}

/* Offsets and timestamps beyond 2^53 must survive: no double on the way. */
static void test_encode_64bit_exact(void **state)
{
    static const int64_t offsets[] = {INT64_MAX, 9007199254740993LL,
                                      9007199254740992LL + 7, 0, -1001};
    (void)state;
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        struct ballast_message_s m;
        json_error_t err;
        json_t *obj;
        char *line;

        msg_fill(&m, "k", 1, "v", 1);
        m.offset = offsets[i];
        m.timestamp = 9007199254740993LL;
        m.partition = INT32_MAX;
        line = encode(&m);
        obj = json_loads(line, 0, &err);
        assert_non_null(obj);
        assert_true(json_integer_value(json_object_get(obj, "offset")) == offsets[i]);
        assert_true(json_integer_value(json_object_get(obj, "timestamp")) ==
                    9007199254740993LL);
        assert_int_equal(json_integer_value(json_object_get(obj, "partition")),
                         INT32_MAX);
        json_decref(obj);
        free(line);
    }
}

static void test_encode_headers(void **state)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    struct ballast_message_s m;
    char *line;
    const char *expect =
        PREFIX TS "\"key\":\"k\",\"value\":\"v\",\"headers\":{\"trace\":\"abc\","
                  "\"empty\":null,\"dup\":\"second\"},"
                  "\"headers_b64\":{\"bin\":\"AAE=\",\"flip\":\"/w==\"}}\n";

    (void)state;
    assert_non_null(hdrs);
    rd_kafka_header_add(hdrs, "trace", -1, "abc", 3);
    rd_kafka_header_add(hdrs, "empty", -1, NULL, 0);
    rd_kafka_header_add(hdrs, "bin", -1, "\x00\x01", 2);
    /* Duplicates: the last one wins, even across text and binary. */
    rd_kafka_header_add(hdrs, "dup", -1, "\xff", 1);
    rd_kafka_header_add(hdrs, "dup", -1, "second", 6);
    rd_kafka_header_add(hdrs, "flip", -1, "text", 4);
    rd_kafka_header_add(hdrs, "flip", -1, "\xff", 1);
    /* A name that is not UTF-8 cannot be a JSON key: left out. */
    rd_kafka_header_add(hdrs, "bad\xff", -1, "x", 1);
    msg_fill(&m, "k", 1, "v", 1);
    m.hdrs = hdrs;
    m.hdrs_loaded = true;
    line = encode(&m);
    if (strcmp(line, expect))
        fail_msg("got  %swant %s", line, expect);
    free(line);
    rd_kafka_headers_destroy(hdrs);
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec_case {
    const char *line;
    bl_exec_decode_status_t status;
    ballast_outcome_t outcome; /* when decoded */
    const char *text;          /* decoded: the result's error (NULL: none);
                                  malformed: a substring of the reason */
    size_t records;
} dec_case_t;

static const dec_case_t dec_cases[] = {
    /* well formed */
    {"{\"status\":\"ok\"}", BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 0},
    {"{\"status\":\"ok\"}\r", BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 0},
    {" { \"status\" : \"ok\" , \"extra\": [1,2] } ", BL_EXEC_DECODED,
     BALLAST_OUTCOME_OK, NULL, 0},
    {"{\"status\":\"ok\",\"error\":\"ignored\"}", BL_EXEC_DECODED,
     BALLAST_OUTCOME_OK, NULL, 0},
    {"{\"status\":\"retry\",\"error\":\"db down\"}", BL_EXEC_DECODED,
     BALLAST_OUTCOME_RETRY, "db down", 0},
    {"{\"status\":\"fail\",\"error\":\"bad input\"}", BL_EXEC_DECODED,
     BALLAST_OUTCOME_FAIL, "bad input", 0},
    {"{\"status\":\"fail\"}", BL_EXEC_DECODED, BALLAST_OUTCOME_FAIL,
     "child replied fail without an error", 0},
    {"{\"status\":\"retry\",\"error\":null}", BL_EXEC_DECODED,
     BALLAST_OUTCOME_RETRY, "child replied retry without an error", 0},
    {"{\"status\":\"ok\",\"emit\":[]}", BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 0},
    {"{\"status\":\"ok\",\"emit\":null}", BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 0},
    {"{\"status\":\"ok\",\"emit\":[{},{\"value\":\"x\"},{\"topic\":\"t\"}]}",
     BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 3},
    {"{\"status\":\"ok\",\"emit\":[{\"key\":null,\"key_b64\":\"YQ==\"}]}",
     BL_EXEC_DECODED, BALLAST_OUTCOME_OK, NULL, 1},
    /* malformed: each a one-line reason, nothing applied */
    {"", BL_EXEC_MALFORMED, 0, "not JSON", 0},
    {"hello", BL_EXEC_MALFORMED, 0, "not JSON", 0},
    {"{\"status\":\"ok\"", BL_EXEC_MALFORMED, 0, "not JSON", 0},
    {"{\"status\":\"ok\"} {}", BL_EXEC_MALFORMED, 0, "not JSON", 0},
    /* A NUL in a value is valid JSON (JSON.stringify writes it): kept. */
    {"{\"status\":\"ok\",\"emit\":[{\"value\":\"a\\u0000b\"}]}", BL_EXEC_DECODED,
     BALLAST_OUTCOME_OK, NULL, 1},
    /* ... but a topic or status with a NUL inside is none. */
    {"{\"status\":\"ok\",\"emit\":[{\"topic\":\"t\\u0000x\"}]}", BL_EXEC_MALFORMED, 0,
     "topic is not a non-empty string", 0},
    {"{\"status\":\"ok\\u0000x\"}", BL_EXEC_MALFORMED, 0, "unknown status", 0},
    {"[\"ok\"]", BL_EXEC_MALFORMED, 0, "not a JSON object", 0},
    {"\"ok\"", BL_EXEC_MALFORMED, 0, "not a JSON object", 0},
    {"{}", BL_EXEC_MALFORMED, 0, "no \"status\" member", 0},
    {"{\"status\":null}", BL_EXEC_MALFORMED, 0, "\"status\" is not a string", 0},
    {"{\"status\":1}", BL_EXEC_MALFORMED, 0, "\"status\" is not a string", 0},
    {"{\"status\":\"OK\"}", BL_EXEC_MALFORMED, 0, "unknown status \"OK\"", 0},
    {"{\"status\":\"maybe\\nlater\"}", BL_EXEC_MALFORMED, 0,
     "unknown status \"maybe later\"", 0},
    {"{\"status\":\"fail\",\"error\":42}", BL_EXEC_MALFORMED, 0,
     "\"error\" is not a string", 0},
    {"{\"status\":\"ok\",\"emit\":{}}", BL_EXEC_MALFORMED, 0,
     "\"emit\" is not an array", 0},
    {"{\"status\":\"ok\",\"emit\":[1]}", BL_EXEC_MALFORMED, 0,
     "emit[0] is not an object", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"topic\":5}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].topic is not a non-empty string", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"topic\":\"\"}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].topic is not a non-empty string", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"key\":1}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].key is not a string or null", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"value\":{}}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].value is not a string or null", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"value_b64\":\"!!!!\"}]}", BL_EXEC_MALFORMED,
     0, "emit[0].value_b64 is not valid base64", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"key_b64\":7}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].key_b64 is not a string", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"value\":\"a\",\"value_b64\":\"YQ==\"}]}",
     BL_EXEC_MALFORMED, 0, "emit[0]: both \"value\" and \"value_b64\" given", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"headers\":[]}]}", BL_EXEC_MALFORMED, 0,
     "emit[0].headers is not an object", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"headers\":{\"a\":1}}]}", BL_EXEC_MALFORMED,
     0, "emit[0].headers.\"a\" is not a string or null", 0},
    {"{\"status\":\"ok\",\"emit\":[{\"headers_b64\":{\"a\":\"*\"}}]}",
     BL_EXEC_MALFORMED, 0, "emit[0].headers_b64.\"a\" is not valid base64", 0},
    /* all or nothing: the first emit is valid, the second is not */
    {"{\"status\":\"ok\",\"emit\":[{\"value\":\"x\"},{\"value_b64\":\"%%\"}]}",
     BL_EXEC_MALFORMED, 0, "emit[1].value_b64 is not valid base64", 0},
};

static void test_decode_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
        const dec_case_t *c = &dec_cases[i];
        struct ballast_result_s res = {0};
        ballast_outcome_t outcome = (ballast_outcome_t)-1;
        char *why = (char *)"unset";
        bl_exec_decode_status_t st =
            bl_exec_decode(c->line, strlen(c->line), &res, &outcome, &why);

        if (st != c->status)
            fail_msg("case %zu (%s): status %d, want %d (why: %s)", i, c->line,
                     (int)st, (int)c->status, why ? why : "-");
        if (st == BL_EXEC_DECODED) {
            assert_null(why);
            assert_int_equal(outcome, c->outcome);
            if (c->text)
                assert_string_equal(res.error, c->text);
            else
                assert_null(res.error);
        } else {
            assert_non_null(why);
            if (!strstr(why, c->text))
                fail_msg("case %zu (%s): reason '%s' lacks '%s'", i, c->line, why,
                         c->text);
            for (const char *p = why; *p; p++)
                assert_true((unsigned char)*p >= 0x20); /* one line */
            assert_null(res.error);
            free(why);
        }
        assert_int_equal(res.record_count, c->records);
        bl_result_reset(&res);
    }
}

static void test_decode_emits(void **state)
{
    const char *line =
        "{\"status\":\"ok\",\"emit\":["
        "{\"topic\":\"out\",\"key\":\"k\\u00e9\",\"value\":\"v\","
        "\"headers\":{\"h1\":\"x\",\"h2\":null},\"headers_b64\":{\"h3\":\"AP8=\"}},"
        "{\"key_b64\":\"AAE=\",\"value_b64\":\"\"},"
        "{\"key\":null,\"value\":\"\"}]}";
    struct ballast_result_s res = {0};
    ballast_outcome_t outcome;
    char *why;
    bl_record_t *r;

    (void)state;
    /* A result may already hold records: new ones are appended. */
    assert_int_equal(ballast_result_emit(&res, "first", NULL, 0, "0", 1), 0);
    assert_int_equal(bl_exec_decode(line, strlen(line), &res, &outcome, &why),
                     BL_EXEC_DECODED);
    assert_int_equal(outcome, BALLAST_OUTCOME_OK);
    assert_int_equal(res.record_count, 4);
    assert_string_equal(res.records[0].topic, "first");

    r = &res.records[1];
    assert_string_equal(r->topic, "out");
    assert_true(r->has_key && r->key_len == 3 && !memcmp(r->key, "k\xc3\xa9", 3));
    assert_true(r->has_value && r->value_len == 1 && !memcmp(r->value, "v", 1));
    assert_int_equal(r->header_count, 3);
    assert_string_equal(r->headers[0].name, "h1");
    assert_true(r->headers[0].len == 1 && !memcmp(r->headers[0].value, "x", 1));
    assert_string_equal(r->headers[1].name, "h2");
    assert_null(r->headers[1].value);
    assert_string_equal(r->headers[2].name, "h3");
    assert_true(r->headers[2].len == 2 && !memcmp(r->headers[2].value, "\x00\xff", 2));

    r = &res.records[2];
    assert_null(r->topic); /* output.topic */
    assert_true(r->has_key && r->key_len == 2 && !memcmp(r->key, "\x00\x01", 2));
    assert_true(r->has_value && r->value_len == 0);

    r = &res.records[3];
    assert_false(r->has_key);
    assert_true(r->has_value && r->value_len == 0);
    bl_result_reset(&res);
}

/* Byte strings that are nothing like JSON must not crash the decoder. */
static void test_decode_garbage(void **state)
{
    unsigned char buf[256];
    unsigned seed = 12345;

    (void)state;
    for (int round = 0; round < 2000; round++) {
        struct ballast_result_s res = {0};
        ballast_outcome_t outcome;
        size_t len = (size_t)(seed % sizeof(buf));
        char *why;

        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (unsigned char)(seed >> 16);
        }
        seed = seed * 1103515245u + 12345u;
        if (bl_exec_decode((const char *)buf, len, &res, &outcome, &why) ==
            BL_EXEC_MALFORMED) {
            assert_non_null(why);
            free(why);
        }
        bl_result_reset(&res);
    }
}

/* ---- through the codec ------------------------------------------------- */

/* A request's key/value travel back unchanged when a child echoes them as
 * an emit: the encoder's output is the decoder's input. */
static void test_roundtrip_binary_through_emit(void **state)
{
    static const unsigned char value[] = {0x00, 0xff, 0x10, 'a', 0xc3};
    struct ballast_message_s m;
    struct ballast_result_s res = {0};
    json_t *req, *reply;
    json_error_t err;
    ballast_outcome_t outcome;
    char *line, *out, *why;

    (void)state;
    msg_fill(&m, "key", 3, value, sizeof(value));
    line = encode(&m);
    req = json_loads(line, 0, &err);
    assert_non_null(req);
    reply = json_pack("{s:s, s:[{s:O, s:O}]}", "status", "ok", "emit", "key",
                      json_object_get(req, "key"), "value_b64",
                      json_object_get(req, "value_b64"));
    assert_non_null(reply);
    out = json_dumps(reply, JSON_COMPACT);
    assert_non_null(out);
    assert_int_equal(bl_exec_decode(out, strlen(out), &res, &outcome, &why),
                     BL_EXEC_DECODED);
    assert_int_equal(res.record_count, 1);
    assert_int_equal(res.records[0].value_len, sizeof(value));
    assert_memory_equal(res.records[0].value, value, sizeof(value));
    assert_memory_equal(res.records[0].key, "key", 3);
    bl_result_reset(&res);
    free(out);
    free(line);
    json_decref(reply);
    json_decref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_table),
        cmocka_unit_test(test_encode_64bit_exact),
        cmocka_unit_test(test_encode_headers),
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_decode_emits),
        cmocka_unit_test(test_decode_garbage),
        cmocka_unit_test(test_roundtrip_binary_through_emit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
