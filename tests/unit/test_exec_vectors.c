/*
 * test_exec_vectors.c - the exec protocol codec against the shared test
 * vectors of sdk/vectors (the SDKs test against the same files):
 *   requests.json       each message encodes to the vector's request line
 *                       (compared as parsed JSON, not as text);
 *   replies.json        each reply line decodes to the vector's outcome,
 *                       error text and emitted records;
 *   conversations.json  the child's lines, replayed against the open
 *                       requests as the exec handler pairs them (its hello
 *                       first, then by id in version 2, in order in
 *                       version 1), are accepted up to the vector's first
 *                       bad line and answer what it says; and what follows
 *                       (who takes an attempt, who is sent again, one at a
 *                       time or split) is what bl_exec_blame(), the exec
 *                       handler's rule, says.
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
#define CODEC_PROTOCOL BL_EXEC_PROTOCOL

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

/* Whether the codec speaks the version @p v needs (a vector of a later
 * version than the codec fails: the vectors lead, the codec follows). */
static bool checkable(const json_t *v)
{
    if (json_integer_value(json_object_get(v, "since")) > CODEC_PROTOCOL)
        fail_msg("vector '%s' needs protocol %lld", json_string_value(json_object_get(v, "name")),
                 (long long)json_integer_value(json_object_get(v, "since")));
    return true;
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

/* Compares an encoded line with a vector's request, as parsed JSON. */
static void expect_line(const json_t *v, const char *line, size_t len)
{
    json_t *want = json_object_get(v, "request"), *got;
    json_error_t err;

    assert_non_null(line);
    assert_ptr_equal(strchr(line, '\n'), line + len - 1); /* one line */
    got = json_loadb(line, len, 0, &err);
    if (!got || !json_equal(got, want)) {
        char *w = json_dumps(want, JSON_COMPACT);
        fail_msg("request '%s':\n got  %s want %s", vname(v), line, w);
    }
    json_decref(got);
}

/* A batch vector: its messages encode to one batch request. */
static void check_batch_request(const json_t *v)
{
    const json_t *specs = json_object_get(v, "messages");
    size_t n = json_array_size(specs), len;
    struct ballast_message_s *m = calloc(n, sizeof(*m));
    const ballast_message_t **ptrs = calloc(n, sizeof(*ptrs));
    vbytes_t *keep = calloc(2 * n, sizeof(*keep));
    char *line;

    assert_true(m && ptrs && keep && n);
    for (size_t i = 0; i < n; i++) {
        message_from_vector(&m[i], json_array_get(specs, i), &keep[2 * i], vname(v));
        ptrs[i] = &m[i];
    }
    line = bl_exec_encode_batch(ptrs, n, (uint64_t)json_integer_value(json_object_get(v, "id")),
                                &len);
    expect_line(v, line, len);
    free(line);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_headers_destroy(m[i].hdrs);
        vbytes_free(&keep[2 * i]);
        vbytes_free(&keep[2 * i + 1]);
    }
    free(keep);
    free(ptrs);
    free(m);
}

static void test_requests(void **state)
{
    json_t *doc = load_vectors("requests.json"), *v;
    size_t i, checked = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "vectors"), i, v) {
        struct ballast_message_s m;
        vbytes_t keep[2];
        size_t len;
        char *line;

        if (!checkable(v))
            continue;
        if (json_object_get(v, "messages")) {
            check_batch_request(v);
            checked++;
            continue;
        }
        message_from_vector(&m, json_object_get(v, "message"), keep, vname(v));
        line = bl_exec_encode(&m, (uint64_t)json_integer_value(json_object_get(v, "id")),
                              &len);
        expect_line(v, line, len);
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

/* Checks a decoded result against a vector's result. */
static void expect_result(const char *where, const json_t *want, ballast_outcome_t outcome,
                          const struct ballast_result_s *res)
{
    const char *error = json_string_value(json_object_get(want, "error"));
    ballast_outcome_t expected = outcome_named(json_string_value(json_object_get(want, "status")));
    const json_t *emit = json_object_get(want, "emit"), *rec;
    size_t j;

    assert_int_equal(outcome, expected);
    if (expected == BALLAST_OUTCOME_OK)
        assert_null(res->error);
    else if (error)
        assert_string_equal(res->error, error);
    else if (!res->error || strncmp(res->error, "child replied", 13))
        fail_msg("reply '%s': no error given, so a default text is due", where);
    if (res->record_count != json_array_size(emit))
        fail_msg("reply '%s': %zu records, want %zu", where, res->record_count,
                 json_array_size(emit));
    json_array_foreach(emit, j, rec)
        expect_record(where, rec, &res->records[j]);
}

/* The reply of a vector goes to one request: a message's, or a batch's of
 * as many messages as the vector has results. */
typedef struct one_request {
    ballast_result_t *results[16];
    ballast_outcome_t outcomes[16];
    size_t count;
    bool batch;
} one_request_t;

static bool route_one(void *ctx, int64_t id, bl_exec_target_t *t)
{
    one_request_t *r = ctx;

    (void)id;
    t->results = r->results;
    t->outcomes = r->outcomes;
    t->count = r->count;
    t->batch = r->batch;
    return true;
}

static void test_replies(void **state)
{
    json_t *doc = load_vectors("replies.json"), *v;
    size_t i, checked = 0;

    (void)state;
    json_array_foreach(json_object_get(doc, "vectors"), i, v) {
        const json_t *batch = json_object_get(v, "results");
        struct ballast_result_s res[16];
        one_request_t r = {.count = batch ? json_array_size(batch) : 1, .batch = batch != NULL};
        char *line, *why;
        int64_t id;

        if (!checkable(v))
            continue;
        assert_true(r.count <= 16);
        memset(res, 0, sizeof(res));
        for (size_t k = 0; k < r.count; k++)
            r.results[k] = &res[k];
        line = json_dumps(json_object_get(v, "reply"), JSON_COMPACT);
        assert_non_null(line);
        if (bl_exec_decode_routed(line, strlen(line), route_one, &r, &id, &why) !=
            BL_EXEC_DECODED)
            fail_msg("reply '%s' (%s) was refused: %s", vname(v), line, why ? why : "");
        assert_int_equal(id, json_integer_value(json_object_get(v, "id")));
        for (size_t k = 0; k < r.count; k++) {
            expect_result(vname(v), batch ? json_array_get(batch, k) : json_object_get(v, "result"),
                          r.outcomes[k], &res[k]);
            bl_result_reset(&res[k]);
        }
        free(line);
        checked++;
    }
    assert_true(checked > 0);
    json_decref(doc);
}

/* ---- conversations.json --------------------------------------------------- */

#define MAX_OPEN 16
#define MAX_BATCH 8

/* A replay of one conversation, paired as the exec handler pairs it. */
typedef struct replay {
    int proto; /* 0 until the child's first line, then 1 or 2 */
    struct {
        int64_t id;
        size_t count;
        bool batch;
        struct ballast_result_s res[MAX_BATCH];
        ballast_result_t *results[MAX_BATCH];
        ballast_outcome_t outcomes[MAX_BATCH];
    } open[MAX_OPEN]; /* in the order written */
    size_t nopen;
    long routed;
} replay_t;

static long find_id(const replay_t *r, int64_t id)
{
    for (size_t i = 0; id >= 0 && i < r->nopen; i++)
        if (r->open[i].id == id)
            return (long)i;
    return -1;
}

/* Version 2: by id; version 1: the oldest open request, which a reply that
 * names an id must name. */
static bool route_replay(void *ctx, int64_t id, bl_exec_target_t *t)
{
    replay_t *r = ctx;

    r->routed = r->proto == 2 ? find_id(r, id)
                : r->nopen && (id < 0 || id == r->open[0].id) ? 0
                                                              : -1;
    if (r->routed < 0)
        return false;
    t->results = r->open[r->routed].results;
    t->outcomes = r->open[r->routed].outcomes;
    t->count = r->open[r->routed].count;
    t->batch = r->open[r->routed].batch;
    return true;
}

static const char *status_name(ballast_outcome_t o)
{
    return o == BALLAST_OUTCOME_OK ? "ok" : o == BALLAST_OUTCOME_RETRY ? "retry" : "fail";
}

static void close_open(replay_t *r, long i, json_t *answered)
{
    char key[32];
    json_t *got;

    snprintf(key, sizeof(key), "%lld", (long long)r->open[i].id);
    if (r->open[i].batch) {
        got = json_array();
        for (size_t k = 0; k < r->open[i].count; k++)
            json_array_append_new(got, json_string(status_name(r->open[i].outcomes[k])));
    } else {
        got = json_string(status_name(r->open[i].outcomes[0]));
    }
    json_object_set_new(answered, key, got);
    for (size_t k = 0; k < r->open[i].count; k++)
        bl_result_reset(&r->open[i].res[k]);
    memmove(&r->open[i], &r->open[i + 1], (r->nopen - (size_t)i - 1) * sizeof(r->open[0]));
    r->nopen--;
    for (size_t j = 0; j < r->nopen; j++)
        for (size_t k = 0; k < MAX_BATCH; k++)
            r->open[j].results[k] = &r->open[j].res[k];
}

/* What a replay found. */
typedef struct verdict {
    const char *outcome;
    int64_t bad_step;
    bl_exec_fault_t fault;
    long named;
} verdict_t;

/* Feeds one child line; @returns false when it ends the conversation. */
static bool replay_line(replay_t *r, const char *line, json_t *answered, verdict_t *out)
{
    bl_exec_hello_t hello;
    char *why = NULL;
    int64_t id;

    if (!r->proto) {
        switch (bl_exec_hello(line, strlen(line), &hello, &why)) {
        case BL_EXEC_HELLO_OK:
            r->proto = 2;
            return true;
        case BL_EXEC_HELLO_BAD:
            free(why);
            out->outcome = "unavailable";
            out->fault = BL_EXEC_FAULT_GONE;
            return false;
        default:
            r->proto = 1;
            break;
        }
    }
    if (bl_exec_decode_routed(line, strlen(line), route_replay, r, &id, &why) ==
        BL_EXEC_DECODED) {
        close_open(r, r->routed, answered);
        return true;
    }
    free(why);
    out->outcome = "protocol_error";
    out->fault = BL_EXEC_FAULT_PROTOCOL;
    out->named = r->proto == 2 ? find_id(r, id) : -1;
    return false;
}

/* Replays one conversation's steps. */
static verdict_t replay(const json_t *v, replay_t *r, json_t *answered)
{
    verdict_t out = {"accepted", -1, BL_EXEC_FAULT_GONE, -1};
    const json_t *step;
    size_t i;

    json_array_foreach(json_object_get(v, "steps"), i, step) {
        const json_t *req = json_object_get(step, "ballast"),
                     *child = json_object_get(step, "child"),
                     *raw = json_object_get(step, "child_raw"),
                     *timeout = json_object_get(step, "timeout");
        char *line;
        bool more;

        if (req) {
            const json_t *batch = json_object_get(req, "batch");
            assert_true(r->nopen < MAX_OPEN);
            r->open[r->nopen].id = json_integer_value(json_object_get(req, "id"));
            r->open[r->nopen].batch = batch != NULL;
            r->open[r->nopen].count = batch ? (size_t)json_integer_value(batch) : 1;
            assert_true(r->open[r->nopen].count <= MAX_BATCH);
            for (size_t k = 0; k < MAX_BATCH; k++)
                r->open[r->nopen].results[k] = &r->open[r->nopen].res[k];
            r->nopen++;
            continue;
        }
        if (timeout) {
            out.outcome = "timeout";
            out.fault = BL_EXEC_FAULT_TIMEOUT;
            out.named = find_id(r, json_integer_value(timeout));
            break;
        }
        if (!child && !raw) { /* the child exits */
            out.outcome = "unavailable";
            break;
        }
        line = raw ? strdup(json_string_value(raw)) : json_dumps(child, JSON_COMPACT);
        assert_non_null(line);
        more = replay_line(r, line, answered, &out);
        free(line);
        if (!more) {
            out.bad_step = (int64_t)i;
            break;
        }
    }
    return out;
}

/* What happens to the requests still open: who takes an attempt, who is
 * sent again, and how, by the exec handler's rule. */
static void expect_aftermath(const json_t *v, const replay_t *r, const verdict_t *out)
{
    const json_t *expect = json_object_get(v, "expect");
    json_t *resend = json_array(), *split = json_array();
    bl_exec_blame_t b;
    int64_t attempt = -1;

    size_t pinned = out->named >= 0 ? (size_t)out->named : 0;

    b = strcmp(out->outcome, "accepted")
            ? bl_exec_blame(out->fault, out->named, r->nopen,
                            pinned < r->nopen ? r->open[pinned].count : 0)
            : (bl_exec_blame_t){-1, -1, false};
    for (size_t i = 0; i < r->nopen; i++) {
        if ((long)i == b.attempt)
            attempt = r->open[i].id;
        else
            json_array_append_new((long)i == b.split ? split : resend,
                                  json_integer(r->open[i].id));
    }
    if (json_is_null(json_object_get(expect, "attempt")) ? attempt != -1
        : attempt != json_integer_value(json_object_get(expect, "attempt")))
        fail_msg("conversation '%s': request %lld takes the attempt", vname(v),
                 (long long)attempt);
    if (!json_equal(resend, json_object_get(expect, "resend")))
        fail_msg("conversation '%s': resends %s", vname(v), json_dumps(resend, JSON_COMPACT));
    if (!json_equal(split, json_object_get(expect, "split")))
        fail_msg("conversation '%s': splits %s", vname(v), json_dumps(split, JSON_COMPACT));
    if (b.one_at_a_time != json_is_true(json_object_get(expect, "one_at_a_time")))
        fail_msg("conversation '%s': one at a time is %d", vname(v), b.one_at_a_time);
    json_decref(resend);
    json_decref(split);
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
        replay_t *r = calloc(1, sizeof(*r));
        verdict_t out;

        assert_non_null(r);
        if (!checkable(v)) {
            json_decref(answered);
            free(r);
            continue;
        }
        out = replay(v, r, answered);
        if (out.bad_step != (json_is_null(bad_step) ? -1 : json_integer_value(bad_step)))
            fail_msg("conversation '%s': the first bad line is step %lld", vname(v),
                     (long long)out.bad_step);
        if (strcmp(out.outcome, json_string_value(json_object_get(expect, "outcome"))))
            fail_msg("conversation '%s': outcome %s", vname(v), out.outcome);
        if (!json_equal(answered, json_object_get(expect, "answered"))) {
            char *got = json_dumps(answered, JSON_COMPACT);
            fail_msg("conversation '%s': answered %s", vname(v), got);
        }
        expect_aftermath(v, r, &out);
        for (size_t k = 0; k < r->nopen; k++)
            for (size_t j = 0; j < r->open[k].count; j++)
                bl_result_reset(&r->open[k].res[j]);
        json_decref(answered);
        free(r);
        checked++;
    }
    assert_true(checked > 0);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_conversations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
