/*
 * test_exec_vectors.c - the exec protocol codec against the shared test
 * vectors of sdk/vectors (the SDKs test against the same files):
 *   requests.json       each message encodes to the vector's request line
 *                       (compared as parsed JSON, not as text);
 *   replies.json        each reply line decodes to the vector's outcome,
 *                       error text and emitted records;
 *   conversations.json  the child's lines, replayed against the open
 *                       requests in order, are accepted up to the vector's
 *                       first bad line, and answer what it says.
 * The codec speaks version 1: vectors with "since" 2 (batch requests, the
 * hello, replies in any order) are counted and reported as skipped, to be
 * checked once the codec speaks version 2. What the exec handler does after
 * a bad line (which request takes an attempt) is for its own tests.
 */
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

/* The vector format this test understands (sdk/vectors/README.md). */
#define VECTORS_VERSION 1
/* The protocol version the codec speaks. */
#define CODEC_PROTOCOL 1

static size_t g_unchecked; /* vectors newer than the codec */

/* ---- reading the vectors -------------------------------------------------- */

/* The vector list of sdk/vectors/@p name, after checking its header. */
static json_t *load_vectors(const char *name)
{
    char path[1024];
    json_error_t err;
    json_t *doc;

    snprintf(path, sizeof(path), "%s/sdk/vectors/%s", BALLAST_SRC_DIR, name);
    /* JSON_ALLOW_NUL: a vector's bytes may hold NUL ("a\u0000b"). */
    doc = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!doc)
        fail_msg("%s: %s (line %d)", path, err.text, err.line);
    if (json_integer_value(json_object_get(doc, "vectors_version")) != VECTORS_VERSION)
        fail_msg("%s: vectors_version is not %d: update this test", path, VECTORS_VERSION);
    if (!json_is_array(json_object_get(doc, "vectors")) ||
        !json_array_size(json_object_get(doc, "vectors")))
        fail_msg("%s: no vectors", path);
    return doc;
}

/* Whether the codec speaks the version @p v needs; counts those it does not. */
static bool checkable(const json_t *v)
{
    if (json_integer_value(json_object_get(v, "since")) <= CODEC_PROTOCOL)
        return true;
    g_unchecked++;
    return false;
}

static const char *vname(const json_t *v)
{
    return json_string_value(json_object_get(v, "name"));
}

/* Bytes as a vector writes them: null, a string (its UTF-8 bytes), or
 * {"b64": "..."}. */
typedef struct vbytes {
    const void *p; /* NULL: null */
    size_t len;
    void *owned;
} vbytes_t;

static vbytes_t vbytes(const json_t *spec, const char *where)
{
    vbytes_t b = {0};

    if (!spec || json_is_null(spec))
        return b;
    if (json_is_string(spec)) {
        b.p = json_string_value(spec);
        b.len = json_string_length(spec);
        return b;
    }
    {
        const json_t *s = json_object_get(spec, "b64");
        if (!json_is_string(s) ||
            bl_base64_decode(json_string_value(s), json_string_length(s), &b.owned,
                             &b.len))
            fail_msg("%s: bytes are neither null, a string nor {\"b64\": ...}", where);
    }
    b.p = b.owned ? b.owned : "";
    return b;
}

static void vbytes_free(vbytes_t *b)
{
    free(b->owned);
    memset(b, 0, sizeof(*b));
}

/* ---- requests.json -------------------------------------------------------- */

/* The message a vector describes; its key and value bytes stay in keep[0] and keep[1]. */
static void message_from_vector(struct ballast_message_s *m, const json_t *spec,
                                vbytes_t *keep, const char *where)
{
    const json_t *ts = json_object_get(spec, "timestamp"), *headers, *pair;
    size_t i;

    memset(m, 0, sizeof(*m));
    m->topic = json_string_value(json_object_get(spec, "topic"));
    m->partition = (int32_t)json_integer_value(json_object_get(spec, "partition"));
    m->offset = json_integer_value(json_object_get(spec, "offset"));
    m->timestamp = json_is_null(ts) ? -1 : json_integer_value(ts);
    m->attempt = (int)json_integer_value(json_object_get(spec, "attempt"));
    keep[0] = vbytes(json_object_get(spec, "key"), where);
    keep[1] = vbytes(json_object_get(spec, "value"), where);
    m->key = keep[0].p;
    m->key_len = keep[0].len;
    m->value = keep[1].p;
    m->value_len = keep[1].len;
    headers = json_object_get(spec, "headers");
    m->hdrs = rd_kafka_headers_new(json_array_size(headers) + 1);
    m->hdrs_loaded = true;
    assert_non_null(m->hdrs);
    json_array_foreach(headers, i, pair) {
        vbytes_t hv = vbytes(json_array_get(pair, 1), where);
        assert_int_equal(rd_kafka_header_add(m->hdrs,
                                             json_string_value(json_array_get(pair, 0)),
                                             -1, hv.p, hv.p ? (ssize_t)hv.len : 0),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        vbytes_free(&hv);
    }
}

static void test_requests(void **state)
{
    json_t *doc = load_vectors("requests.json"), *v;
    size_t i, checked = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "vectors"), i, v) {
        struct ballast_message_s m;
        vbytes_t keep[2];
        json_error_t err;
        json_t *got, *want = json_object_get(v, "request");
        size_t len;
        char *line;

        if (!checkable(v))
            continue;
        message_from_vector(&m, json_object_get(v, "message"), keep, vname(v));
        line = bl_exec_encode(&m, (uint64_t)json_integer_value(json_object_get(v, "id")),
                              &len);
        assert_non_null(line);
        assert_ptr_equal(strchr(line, '\n'), line + len - 1); /* one line */
        got = json_loadb(line, len, 0, &err);
        if (!got || !json_equal(got, want)) {
            char *w = json_dumps(want, JSON_COMPACT);
            fail_msg("request '%s':\n got  %s want %s", vname(v), line, w);
        }
        json_decref(got);
        free(line);
        bl_trace_clear(&m.trace); /* what encoding looked up */
        rd_kafka_headers_destroy(m.hdrs);
        vbytes_free(&keep[0]);
        vbytes_free(&keep[1]);
        checked++;
    }
    assert_true(checked > 0);
    json_decref(doc);
}

/* ---- replies.json --------------------------------------------------------- */

static ballast_outcome_t outcome_named(const char *status)
{
    if (status && !strcmp(status, "retry"))
        return BALLAST_OUTCOME_RETRY;
    if (status && !strcmp(status, "fail"))
        return BALLAST_OUTCOME_FAIL;
    if (status && !strcmp(status, "ok"))
        return BALLAST_OUTCOME_OK;
    fail_msg("a vector names the status '%s'", status ? status : "(none)");
    return BALLAST_OUTCOME_RETRY;
}

static void expect_bytes(const char *where, const char *what, const json_t *spec,
                         bool has, const void *p, size_t len)
{
    vbytes_t b = vbytes(spec, where);

    if (!b.p != !has || (b.p && (b.len != len || memcmp(b.p, p, len))))
        fail_msg("reply '%s': %s differs", where, what);
    vbytes_free(&b);
}

/* Checks a decoded record against a vector's emitted record. */
static void expect_record(const char *where, const json_t *want, const bl_record_t *r)
{
    const json_t *topic = json_object_get(want, "topic"),
                 *headers = json_object_get(want, "headers"), *pair;
    size_t i;

    if (json_is_string(topic) ? !r->topic || strcmp(r->topic, json_string_value(topic))
                              : r->topic != NULL)
        fail_msg("reply '%s': topic differs", where);
    expect_bytes(where, "key", json_object_get(want, "key"), r->has_key, r->key, r->key_len);
    expect_bytes(where, "value", json_object_get(want, "value"), r->has_value, r->value,
                 r->value_len);
    if (r->header_count != json_array_size(headers))
        fail_msg("reply '%s': %zu headers, want %zu", where, r->header_count,
                 json_array_size(headers));
    json_array_foreach(headers, i, pair) {
        assert_string_equal(r->headers[i].name, json_string_value(json_array_get(pair, 0)));
        expect_bytes(where, r->headers[i].name, json_array_get(pair, 1),
                     r->headers[i].value != NULL, r->headers[i].value, r->headers[i].len);
    }
}

static void test_replies(void **state)
{
    json_t *doc = load_vectors("replies.json"), *v;
    size_t i, checked = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "vectors"), i, v) {
        const json_t *want = json_object_get(v, "result"), *emit, *rec;
        const char *error = json_string_value(json_object_get(want, "error"));
        ballast_outcome_t expected;
        struct ballast_result_s res = {0};
        ballast_outcome_t outcome;
        char *line, *why;
        size_t j;

        if (!checkable(v))
            continue;
        expected = outcome_named(json_string_value(json_object_get(want, "status")));
        line = json_dumps(json_object_get(v, "reply"), JSON_COMPACT);
        assert_non_null(line);
        if (bl_exec_decode(line, strlen(line), &res, &outcome, &why) != BL_EXEC_DECODED)
            fail_msg("reply '%s' (%s) was refused: %s", vname(v), line, why ? why : "");
        assert_int_equal(outcome, expected);
        if (expected == BALLAST_OUTCOME_OK)
            assert_null(res.error);
        else if (error)
            assert_string_equal(res.error, error);
        else if (!res.error || strncmp(res.error, "child replied", 13))
            fail_msg("reply '%s': no error given, so a default text is due", vname(v));
        emit = json_object_get(want, "emit");
        if (res.record_count != json_array_size(emit))
            fail_msg("reply '%s': %zu records, want %zu", vname(v), res.record_count,
                     json_array_size(emit));
        json_array_foreach(emit, j, rec)
            expect_record(vname(v), rec, &res.records[j]);
        bl_result_reset(&res);
        free(line);
        checked++;
    }
    assert_true(checked > 0);
    json_decref(doc);
}

/* ---- conversations.json --------------------------------------------------- */

/* Requests open in a replay, oldest first, and their results. */
typedef struct replay {
    int64_t ids[64];
    struct ballast_result_s results[64];
    ballast_outcome_t outcomes[64];
    size_t head, tail; /* open: [head, tail) */
} replay_t;

/* Version 1: a reply answers the oldest open request, and may name it. */
static ballast_result_t *route_oldest(void *ctx, int64_t id, ballast_outcome_t **outcomepp)
{
    replay_t *r = ctx;

    if (r->head == r->tail || (id >= 0 && id != r->ids[r->head]))
        return NULL;
    *outcomepp = &r->outcomes[r->head];
    return &r->results[r->head];
}

static const char *status_name(ballast_outcome_t o)
{
    return o == BALLAST_OUTCOME_OK ? "ok" : o == BALLAST_OUTCOME_RETRY ? "retry" : "fail";
}

/* Replays one conversation's child lines; @returns the index of the first
 * bad line or -1, with the answers in @p answered (id -> status). */
static int64_t replay(const json_t *v, json_t *answered)
{
    replay_t r = {0};
    const json_t *step;
    int64_t bad = -1;
    size_t i;

    json_array_foreach(json_object_get(v, "steps"), i, step) {
        const json_t *req = json_object_get(step, "ballast"),
                     *child = json_object_get(step, "child"),
                     *raw = json_object_get(step, "child_raw");
        char *line, *why = NULL;
        char key[32];

        if (req) {
            assert_true(r.tail < 64);
            r.ids[r.tail++] = json_integer_value(json_object_get(req, "id"));
            continue;
        }
        if (!child && !raw)
            continue; /* a timeout or an exit: the handler's business */
        line = raw ? strdup(json_string_value(raw)) : json_dumps(child, JSON_COMPACT);
        assert_non_null(line);
        if (bl_exec_decode_routed(line, strlen(line), route_oldest, &r, &why) !=
            BL_EXEC_DECODED) {
            free(why);
            free(line);
            bad = (int64_t)i;
            break;
        }
        snprintf(key, sizeof(key), "%lld", (long long)r.ids[r.head]);
        json_object_set_new(answered, key, json_string(status_name(r.outcomes[r.head])));
        r.head++;
        free(line);
    }
    for (size_t k = 0; k < r.tail; k++)
        bl_result_reset(&r.results[k]);
    return bad;
}

static void test_conversations(void **state)
{
    json_t *doc = load_vectors("conversations.json"), *v;
    size_t i, checked = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "vectors"), i, v) {
        const json_t *expect = json_object_get(v, "expect"),
                     *bad_step = json_object_get(expect, "bad_step");
        json_t *answered = json_object();
        int64_t bad;

        if (!checkable(v)) {
            json_decref(answered);
            continue;
        }
        bad = replay(v, answered);
        if (bad != (json_is_null(bad_step) ? -1 : json_integer_value(bad_step)))
            fail_msg("conversation '%s': the first bad line is step %lld", vname(v),
                     (long long)bad);
        if (!json_equal(answered, json_object_get(expect, "answered"))) {
            char *got = json_dumps(answered, JSON_COMPACT);
            fail_msg("conversation '%s': answered %s", vname(v), got);
        }
        json_decref(answered);
        checked++;
    }
    assert_true(checked > 0);
    json_decref(doc);
}

/* Runs last: reports the vectors the codec cannot check yet as a skip, so
 * that the run says so instead of passing over them in silence. */
static void test_version2_vectors(void **state)
{
    (void)state;
    if (g_unchecked) {
        print_message("%zu vectors need protocol version 2, which the codec does "
                      "not speak yet\n", g_unchecked);
        skip();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_conversations),
        cmocka_unit_test(test_version2_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
