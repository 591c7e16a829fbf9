/*
 * fuzz_exec_decode.c - the exec protocol's reply parser, bl_exec_decode(),
 * and its base64 decoder.
 *
 * Each input is one reply line, decoded into a result that already holds
 * one record (as when a batch's earlier replies emitted something).
 * Checks, beyond "no crash, no leak, no undefined behaviour":
 *  - a malformed reply changes nothing (all or nothing) and comes with a
 *    one-line reason;
 *  - a decoded reply's records are exactly what the JSON says, compared
 *    with an independent reading of the same JSON with jansson: topic,
 *    key/key_b64, value/value_b64 and headers/headers_b64 in order, bytes
 *    exact, base64 decoded by an independent decoder;
 *  - the decoded outcome is the reply's "status" (ok, retry, fail), read
 *    independently with jansson; a reply whose status is none of them (or
 *    missing, or not a string) is malformed; a non-ok status always leaves
 *    an error text, the reply's own "error" when it gives one;
 *  - bl_base64_decode() of the raw input agrees with the reference decoder,
 *    and encode(decode(x)) decodes to the same bytes.
 */
#include "execproto.h"
#include "message.h"

#include "fuzz_base64_ref.h"
#include "fuzz_common.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes a reply member stands for: text, base64, or null. */
typedef struct want {
    bool present;
    unsigned char *bytes; /* malloc'd */
    size_t len;
} want_t;

static want_t want_member(json_t *obj, const char *name, const char *b64name)
{
    json_t *t = json_object_get(obj, name), *b = json_object_get(obj, b64name);
    want_t w = {0};

    if (t && !json_is_null(t)) {
        w.present = true;
        w.len = json_string_length(t);
        w.bytes = (unsigned char *)fuzz_strndup(json_string_value(t), w.len);
    } else if (b && !json_is_null(b)) {
        w.present = true;
        FUZZ_CHECK(ref_b64_decode(json_string_value(b), json_string_length(b),
                                  &w.bytes, &w.len),
                   "decoder accepted %s \"%s\", which is not base64", b64name,
                   json_string_value(b));
    }
    return w;
}

static void expect_bytes(const char *what, size_t idx, const want_t *w,
                         bool has, const void *p, size_t len)
{
    FUZZ_CHECK(has == w->present, "emit[%zu].%s: present %d, expected %d", idx,
               what, has, w->present);
    if (!w->present) {
        FUZZ_CHECK(p == NULL && len == 0, "emit[%zu].%s: null with bytes", idx, what);
        return;
    }
    FUZZ_CHECK(p != NULL, "emit[%zu].%s: no buffer", idx, what);
    FUZZ_CHECK(len == w->len && !memcmp(p, w->bytes, len),
               "emit[%zu].%s: %zu bytes, expected %zu", idx, what, len, w->len);
}

/* Checks rec's headers from index *hip on against emit.member. */
static void expect_headers(const bl_record_t *rec, size_t idx, json_t *emit,
                           const char *member, bool b64, size_t *hip)
{
    json_t *obj = json_object_get(emit, member), *v;
    const char *name;

    if (!obj || json_is_null(obj))
        return;
    json_object_foreach(obj, name, v) {
        const bl_header_t *h;

        FUZZ_CHECK(*hip < rec->header_count, "emit[%zu]: header \"%s\" missing",
                   idx, name);
        h = &rec->headers[(*hip)++];
        FUZZ_CHECK(!strcmp(h->name, name), "emit[%zu]: header \"%s\", expected \"%s\"",
                   idx, h->name, name);
        if (json_is_null(v)) {
            FUZZ_CHECK(!h->value && !h->len, "emit[%zu]: header \"%s\" not null",
                       idx, name);
        } else if (b64) {
            unsigned char *bytes;
            size_t len;
            FUZZ_CHECK(ref_b64_decode(json_string_value(v), json_string_length(v),
                                      &bytes, &len),
                       "emit[%zu]: header \"%s\": accepted bad base64", idx, name);
            FUZZ_CHECK(h->value && h->len == len && !memcmp(h->value, bytes, len),
                       "emit[%zu]: header \"%s\": wrong bytes", idx, name);
            free(bytes);
        } else {
            FUZZ_CHECK(h->value && h->len == json_string_length(v) &&
                           !memcmp(h->value, json_string_value(v), h->len),
                       "emit[%zu]: header \"%s\": wrong text", idx, name);
        }
    }
}

static void check_decoded(const struct ballast_result_s *res, size_t before,
                          const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *reply = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    json_t *emit;
    size_t n;

    FUZZ_CHECK(reply && json_is_object(reply), "decoded a reply jansson rejects");
    emit = json_object_get(reply, "emit");
    n = json_is_array(emit) ? json_array_size(emit) : 0;
    FUZZ_CHECK(res->record_count == before + n, "%zu records for %zu emits",
               res->record_count - before, n);
    for (size_t i = 0; i < n; i++) {
        const bl_record_t *rec = &res->records[before + i];
        json_t *e = json_array_get(emit, i), *topic = json_object_get(e, "topic");
        want_t key = want_member(e, "key", "key_b64"),
               value = want_member(e, "value", "value_b64");
        size_t hi = 0;

        if (json_is_string(topic))
            FUZZ_CHECK(rec->topic && !strcmp(rec->topic, json_string_value(topic)),
                       "emit[%zu]: wrong topic", i);
        else
            FUZZ_CHECK(!rec->topic, "emit[%zu]: topic invented", i);
        expect_bytes("key", i, &key, rec->has_key, rec->key, rec->key_len);
        expect_bytes("value", i, &value, rec->has_value, rec->value, rec->value_len);
        expect_headers(rec, i, e, "headers", false, &hi);
        expect_headers(rec, i, e, "headers_b64", true, &hi);
        FUZZ_CHECK(hi == rec->header_count, "emit[%zu]: %zu headers, expected %zu",
                   i, rec->header_count, hi);
        free(key.bytes);
        free(value.bytes);
    }
    json_decref(reply);
}

/* The outcome the reply's "status" names, read with jansson; -1 when the
 * line is not a JSON object with one of the three statuses. */
static int status_of(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *reply = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    json_t *status = json_object_get(reply, "status");
    const char *s = json_string_value(status);
    int outcome = !s || strlen(s) != json_string_length(status) ? -1
                  : !strcmp(s, "ok")    ? BALLAST_OUTCOME_OK
                  : !strcmp(s, "retry") ? BALLAST_OUTCOME_RETRY
                  : !strcmp(s, "fail")  ? BALLAST_OUTCOME_FAIL
                                        : -1;

    json_decref(reply);
    return outcome;
}

/* The error text a decoded non-ok reply leaves: its own "error" string
 * when it has a non-empty one. */
static void check_error_text(const struct ballast_result_s *res, const uint8_t *data,
                             size_t size)
{
    json_error_t jerr;
    json_t *reply = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    const char *error = json_string_value(json_object_get(reply, "error"));

    FUZZ_CHECK(res->error && *res->error, "non-ok reply without error text");
    if (error && *error)
        FUZZ_CHECK(!strcmp(res->error, error), "error text \"%s\", the reply says \"%s\"",
                   res->error, error);
    json_decref(reply);
}

static void check_base64(const uint8_t *data, size_t size)
{
    void *out = NULL, *again = NULL;
    size_t len = 0, again_len = 0, enc_len = 0;
    unsigned char *ref = NULL;
    size_t ref_len = 0;
    int rc = bl_base64_decode((const char *)data, size, &out, &len);
    bool ref_ok = ref_b64_decode((const char *)data, size, &ref, &ref_len);
    char *enc;

    FUZZ_CHECK(rc == 0 || rc == -1, "bl_base64_decode returned %d", rc);
    FUZZ_CHECK((rc == 0) == ref_ok, "bl_base64_decode says %d, reference says %s",
               rc, ref_ok ? "valid" : "invalid");
    if (rc) {
        FUZZ_CHECK(!out && !len, "failed decode left output");
        return;
    }
    FUZZ_CHECK(out != NULL, "no buffer for a valid decode");
    FUZZ_CHECK(len == ref_len && !memcmp(out, ref, len),
               "decoded %zu bytes, reference %zu (or different bytes)", len, ref_len);
    FUZZ_CHECK(len == size * 6 / 8 || size % 4 == 0, "odd output length");
    enc = bl_base64_encode(out, len, &enc_len);
    FUZZ_CHECK(enc && enc_len == (len + 2) / 3 * 4 && strlen(enc) == enc_len,
               "encode length %zu for %zu bytes", enc_len, len);
    FUZZ_CHECK(bl_base64_decode(enc, enc_len, &again, &again_len) == 0 &&
                   again_len == len && !memcmp(again, out, len),
               "decode(encode(x)) != x");
    free(enc);
    free(again);
    free(out);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ballast_result_s res = {0};
    ballast_outcome_t outcome = (ballast_outcome_t)77;
    char *why = (char *)&res; /* must be overwritten */
    bl_exec_decode_status_t st;
    int want;

    if (ballast_result_emit(&res, "earlier", "k", 1, "v", 1) ||
        ballast_result_emit_header(&res, "h", "x", 1))
        abort();
    st = bl_exec_decode((const char *)data, size, &res, &outcome, &why);
    FUZZ_CHECK(st == BL_EXEC_DECODED || st == BL_EXEC_MALFORMED,
               "status %d (out of memory?)", (int)st);
    want = status_of(data, size);
    if (want < 0)
        FUZZ_CHECK(st == BL_EXEC_MALFORMED, "decoded a reply without a valid status");
    /* What was there before is untouched in every case. */
    FUZZ_CHECK(res.record_count >= 1 && !strcmp(res.records[0].topic, "earlier") &&
                   res.records[0].header_count == 1,
               "the earlier record changed");
    if (st == BL_EXEC_MALFORMED) {
        FUZZ_CHECK(why != NULL && *why, "malformed without a reason");
        for (const char *p = why; *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20, "reason has a control char: %s", why);
        FUZZ_CHECK(res.record_count == 1 && !res.error && outcome == (ballast_outcome_t)77,
                   "a malformed reply was partly applied: %s", why);
        free(why);
    } else {
        FUZZ_CHECK(why == NULL, "decoded, yet a reason: %s", why);
        FUZZ_CHECK((int)outcome == want, "outcome %d, the reply's status says %d",
                   (int)outcome, want);
        if (outcome == BALLAST_OUTCOME_OK)
            FUZZ_CHECK(!res.error, "ok reply set an error");
        else
            check_error_text(&res, data, size);
        check_decoded(&res, 1, data, size);
    }
    bl_result_reset(&res);
    check_base64(data, size);
    return 0;
}
