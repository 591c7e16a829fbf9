/*
 * fuzz_exec_roundtrip.c - the exec protocol's request encoder,
 * bl_exec_encode(), with round-trip invariants.
 *
 * Each input becomes a message (layout in fuzz_message.h): topic, partition,
 * offset, timestamp, key, value and headers. Checks:
 *  - the request is one line: ends in '\n', no other newline, no NUL;
 *  - jansson parses it; topic, partition, offset and timestamp (null when
 *    negative) are exact;
 *  - key and value: null when absent; otherwise "key"/"value" text exactly
 *    when the bytes are valid UTF-8 without NUL (reference validator), else
 *    "key_b64"/"value_b64", whose base64 decodes (reference decoder) to the
 *    exact bytes; never both members;
 *  - headers: "headers" (always there) and "headers_b64" (only when not
 *    empty) hold, per name, the last header of that name, as text, null or
 *    base64 by the same rule; names that are not UTF-8 are left out;
 *  - echo: the request object, sent back as the single emit of an "ok"
 *    reply, decodes with bl_exec_decode() to a record with the original
 *    topic, key, value and (last-wins) headers, byte for byte.
 */
#include "execproto.h"
#include "message.h"

#include "fuzz_base64_ref.h"
#include "fuzz_common.h"
#include "fuzz_message.h"
#include "fuzz_utf8_ref.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_text(const void *p, size_t len)
{
    return !memchr(p, 0, len) && ref_utf8_valid(p, len);
}

/* Checks obj.name / obj.b64name against the bytes [p, p+len) (p NULL: null). */
static void expect_member(json_t *obj, const char *name, const char *b64name,
                          const void *p, size_t len)
{
    json_t *t = json_object_get(obj, name), *b = json_object_get(obj, b64name);

    if (!p) {
        FUZZ_CHECK(json_is_null(t) && !b, "%s: expected null", name);
    } else if (is_text(p, len)) {
        FUZZ_CHECK(json_is_string(t) && !b, "%s: expected text", name);
        FUZZ_CHECK(json_string_length(t) == len &&
                       !memcmp(json_string_value(t), p, len),
                   "%s: text differs", name);
    } else {
        unsigned char *bytes;
        size_t n;
        FUZZ_CHECK(json_is_string(b) && !t, "%s: expected base64", b64name);
        FUZZ_CHECK(ref_b64_decode(json_string_value(b), json_string_length(b),
                                  &bytes, &n),
                   "%s: not base64: %s", b64name, json_string_value(b));
        FUZZ_CHECK(n == len && !memcmp(bytes, p, len), "%s: bytes differ", b64name);
        free(bytes);
    }
}

/* The header a name ends up as: the last one of that (C string) name. */
typedef struct want_hdr {
    char *name;
    const uint8_t *value; /* NULL: null */
    size_t len;
    bool text;
} want_hdr_t;

static size_t want_headers(const fuzz_msg_t *f, want_hdr_t *w)
{
    size_t n = 0;

    for (size_t i = 0; i < f->hdr_count; i++) {
        const fuzz_header_t *h = &f->hdr[i];
        size_t nl = fuzz_header_cname_len(h), j;

        if (!ref_utf8_valid(h->name, nl))
            continue; /* not representable as a JSON object key */
        for (j = 0; j < n; j++)
            if (strlen(w[j].name) == nl && !memcmp(w[j].name, h->name, nl))
                break;
        if (j == n)
            w[n++].name = fuzz_strndup(h->name, nl);
        w[j].value = h->value;
        w[j].len = h->value_len;
        w[j].text = !h->value || is_text(h->value, h->value_len);
    }
    return n;
}

static void check_request_headers(json_t *req, const want_hdr_t *w, size_t n)
{
    json_t *text = json_object_get(req, "headers"), *bin = json_object_get(req, "headers_b64");
    size_t ntext = 0, nbin = 0;

    FUZZ_CHECK(json_is_object(text), "\"headers\" missing");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(w[i].text ? text : bin, w[i].name);
        FUZZ_CHECK(!json_object_get(w[i].text ? bin : text, w[i].name),
                   "header \"%s\" in both maps", w[i].name);
        if (w[i].text) {
            ntext++;
            if (!w[i].value)
                FUZZ_CHECK(json_is_null(v), "header \"%s\": expected null", w[i].name);
            else
                FUZZ_CHECK(json_is_string(v) && json_string_length(v) == w[i].len &&
                               !memcmp(json_string_value(v), w[i].value, w[i].len),
                           "header \"%s\": text differs", w[i].name);
        } else {
            unsigned char *bytes;
            size_t len;
            nbin++;
            FUZZ_CHECK(json_is_string(v) && ref_b64_decode(json_string_value(v),
                                                           json_string_length(v),
                                                           &bytes, &len),
                       "header \"%s\": expected base64", w[i].name);
            FUZZ_CHECK(len == w[i].len && !memcmp(bytes, w[i].value, len),
                       "header \"%s\": bytes differ", w[i].name);
            free(bytes);
        }
    }
    FUZZ_CHECK(json_object_size(text) == ntext, "headers: %zu members, expected %zu",
               json_object_size(text), ntext);
    if (nbin)
        FUZZ_CHECK(json_is_object(bin) && json_object_size(bin) == nbin,
                   "headers_b64: %zu members, expected %zu", json_object_size(bin), nbin);
    else
        FUZZ_CHECK(!bin, "headers_b64 present but empty");
}

/* Sends the request back as an emit and checks the decoded record. */
static void check_echo(const fuzz_msg_t *f, json_t *req, const want_hdr_t *w, size_t n)
{
    json_t *reply = json_pack("{s:s, s:[O]}", "status", "ok", "emit", req);
    struct ballast_result_s res = {0};
    ballast_outcome_t outcome;
    char *why = NULL, *line;
    const bl_record_t *rec;

    FUZZ_CHECK(reply != NULL, "json_pack failed");
    line = json_dumps(reply, JSON_COMPACT);
    FUZZ_CHECK(line != NULL, "json_dumps failed");
    FUZZ_CHECK(bl_exec_decode(line, strlen(line), &res, &outcome, &why) == BL_EXEC_DECODED,
               "echo reply rejected: %s", why ? why : "(no reason)");
    FUZZ_CHECK(outcome == BALLAST_OUTCOME_OK && res.record_count == 1 && !res.error,
               "echo: outcome %d, %zu records", (int)outcome, res.record_count);
    rec = &res.records[0];
    FUZZ_CHECK(rec->topic && !strcmp(rec->topic, f->m.topic), "echo: topic differs");
    FUZZ_CHECK(rec->has_key == (f->m.key != NULL) && rec->key_len == f->m.key_len &&
                   (!f->m.key_len || !memcmp(rec->key, f->m.key, f->m.key_len)),
               "echo: key differs");
    FUZZ_CHECK(rec->has_value == (f->m.value != NULL) &&
                   rec->value_len == f->m.value_len &&
                   (!f->m.value_len || !memcmp(rec->value, f->m.value, f->m.value_len)),
               "echo: value differs");
    FUZZ_CHECK(rec->header_count == n, "echo: %zu headers, expected %zu",
               rec->header_count, n);
    for (size_t i = 0; i < rec->header_count; i++) {
        const bl_header_t *h = &rec->headers[i];
        size_t j;
        for (j = 0; j < n; j++)
            if (!strcmp(w[j].name, h->name))
                break;
        FUZZ_CHECK(j < n, "echo: unexpected header \"%s\"", h->name);
        FUZZ_CHECK((h->value == NULL) == (w[j].value == NULL) && h->len == w[j].len &&
                       (!h->len || !memcmp(h->value, w[j].value, h->len)),
                   "echo: header \"%s\" differs", h->name);
    }
    bl_result_reset(&res);
    free(line);
    json_decref(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    fuzz_msg_t *f = malloc(sizeof(*f));
    want_hdr_t w[FUZZ_MAX_HEADERS] = {{0}};
    size_t len = 0, nw;
    json_error_t jerr;
    json_t *req;
    char *line;

    if (!f)
        abort();
    fuzz_msg_build(f, &r);
    line = bl_exec_encode(&f->m, 1, &len);
    FUZZ_CHECK(line != NULL, "bl_exec_encode failed");
    FUZZ_CHECK(len > 0 && line[len - 1] == '\n' && line[len] == '\0',
               "not a terminated line");
    FUZZ_CHECK(strlen(line) == len, "NUL inside the line");
    FUZZ_CHECK(memchr(line, '\n', len - 1) == NULL, "newline inside the line");

    req = json_loadb(line, len - 1, 0, &jerr);
    FUZZ_CHECK(json_is_object(req), "request is not a JSON object: %s: %s",
               jerr.text, line);
    FUZZ_CHECK(json_is_string(json_object_get(req, "topic")) &&
                   !strcmp(json_string_value(json_object_get(req, "topic")), f->m.topic),
               "topic");
    FUZZ_CHECK(json_integer_value(json_object_get(req, "partition")) == f->m.partition,
               "partition");
    FUZZ_CHECK(json_integer_value(json_object_get(req, "offset")) == f->m.offset,
               "offset");
    if (f->m.timestamp >= 0)
        FUZZ_CHECK(json_is_integer(json_object_get(req, "timestamp")) &&
                       json_integer_value(json_object_get(req, "timestamp")) ==
                           f->m.timestamp,
                   "timestamp");
    else
        FUZZ_CHECK(json_is_null(json_object_get(req, "timestamp")), "timestamp not null");
    expect_member(req, "key", "key_b64", f->m.key, f->m.key_len);
    expect_member(req, "value", "value_b64", f->m.value, f->m.value_len);
    nw = want_headers(f, w);
    check_request_headers(req, w, nw);
    check_echo(f, req, w, nw);

    for (size_t i = 0; i < nw; i++)
        free(w[i].name);
    json_decref(req);
    free(line);
    fuzz_msg_free(f);
    free(f);
    return 0;
}
