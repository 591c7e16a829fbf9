/* execproto.c - encodes exec requests and decodes replies (see execproto.h). */
#include "execproto.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ----------------------------------------------------------- */

/* Text travels as a JSON string; NUL is excluded because many child
 * languages (and C string APIs) mishandle "\u0000". */
static bool is_text(const void *p, size_t len)
{
    return !memchr(p, 0, len) && bl_utf8_valid(p, len);
}

/* A JSON string holding the base64 of [p, p+len), or NULL (out of memory). */
static json_t *b64_string(const void *p, size_t len)
{
    size_t blen;
    char *b = bl_base64_encode(p, len, &blen);
    json_t *s;

    if (!b)
        return NULL;
    s = json_stringn_nocheck(b, blen);
    free(b);
    return s;
}

/* Sets obj.name to the bytes as text, or obj.b64name to their base64, or
 * obj.name to null when p is NULL. @returns 0 or -1 (out of memory). */
static int put_bytes(json_t *obj, const char *name, const char *b64name,
                     const void *p, size_t len)
{
    json_t *v;

    if (!p)
        v = json_null();
    else if (is_text(p, len))
        v = json_stringn_nocheck(p, len);
    else {
        v = b64_string(p, len);
        name = b64name;
    }
    return v ? json_object_set_new_nocheck(obj, name, v) : -1;
}

/* Adds every header to text (name -> string or null) or binary (name ->
 * base64), the last header of a name winning in both maps together. */
static int put_headers(const ballast_message_t *msg, json_t *text, json_t *binary)
{
    size_t count = ballast_message_header_count(msg);

    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t len;
        json_t *v, *into;

        if (ballast_message_header(msg, i, &name, &value, &len))
            continue;
        /* A JSON object key must be UTF-8: a header whose name is not has
         * no representation in the protocol and is left out. */
        if (!bl_utf8_valid(name, strlen(name)))
            continue;
        if (!value || is_text(value, len)) {
            v = value ? json_stringn_nocheck(value, len) : json_null();
            into = text;
            json_object_del(binary, name);
        } else {
            v = b64_string(value, len);
            into = binary;
            json_object_del(text, name);
        }
        if (!v || json_object_set_new_nocheck(into, name, v))
            return -1;
    }
    return 0;
}

/* Sets "traceparent" (and "tracestate") to the message's trace context,
 * when it has one: the header checked (a malformed one is left out), or
 * the context started for it with tracing = on. */
static int put_trace(json_t *req, const ballast_message_t *msg)
{
    const char *tp = ballast_message_traceparent(msg), *ts = ballast_message_tracestate(msg);
    int rc = 0;

    if (tp)
        rc |= json_object_set_new_nocheck(req, "traceparent", json_string_nocheck(tp));
    if (tp && ts)
        rc |= json_object_set_new_nocheck(req, "tracestate", json_string_nocheck(ts));
    return rc;
}

/* Builds the request object, with "id" unless @p id is 0 (a batch's
 * element). @returns NULL when out of memory. */
static json_t *request_new(const ballast_message_t *msg, uint64_t id)
{
    json_t *req = json_object(), *headers = json_object(),
           *headers_b64 = json_object();
    const char *topic = ballast_message_topic(msg);
    int64_t ts = ballast_message_timestamp(msg);
    const void *key, *value;
    size_t klen, vlen;
    int rc = 0;

    if (!req || !headers || !headers_b64)
        goto fail;
    key = ballast_message_key(msg, &klen);
    value = ballast_message_value(msg, &vlen);
    if (id)
        rc |= json_object_set_new_nocheck(req, "id", json_integer((json_int_t)id));
    rc |= json_object_set_new_nocheck(req, "attempt",
                                      json_integer(ballast_message_attempt(msg)));
    rc |= json_object_set_new_nocheck(req, "topic", topic ? json_string(topic)
                                                         : json_null());
    rc |= json_object_set_new_nocheck(req, "partition",
                                      json_integer(ballast_message_partition(msg)));
    rc |= json_object_set_new_nocheck(req, "offset",
                                      json_integer(ballast_message_offset(msg)));
    rc |= json_object_set_new_nocheck(req, "timestamp",
                                      ts >= 0 ? json_integer(ts) : json_null());
    rc |= put_bytes(req, "key", "key_b64", key, klen);
    rc |= put_bytes(req, "value", "value_b64", value, vlen);
    rc |= put_headers(msg, headers, headers_b64);
    rc |= put_trace(req, msg);
    if (rc)
        goto fail;
    rc |= json_object_set_nocheck(req, "headers", headers);
    if (json_object_size(headers_b64))
        rc |= json_object_set_nocheck(req, "headers_b64", headers_b64);
    if (rc)
        goto fail;
    json_decref(headers);
    json_decref(headers_b64);
    return req;
fail:
    json_decref(req);
    json_decref(headers);
    json_decref(headers_b64);
    return NULL;
}

/* A growable byte buffer fed by json_dump_callback(). */
typedef struct dumpbuf {
    char *p;
    size_t len, cap;
} dumpbuf_t;

static int dump_cb(const char *chunk, size_t size, void *opaque)
{
    dumpbuf_t *b = opaque;

    /* +2: room for the '\n' and NUL appended after the dump. */
    if (size > SIZE_MAX - b->len - 2)
        return -1;
    if (b->len + size + 2 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *grown;
        while (cap < b->len + size + 2)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (!(grown = realloc(b->p, cap)))
            return -1;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, chunk, size);
    b->len += size;
    return 0;
}

/* Dumps @p req (consumed) as one line. */
static char *dump_line(json_t *req, size_t *lenp)
{
    dumpbuf_t b = {0};
    int rc;

    if (!req)
        return NULL;
    /* Compact output escapes control characters, so the line can hold no
     * raw newline. */
    rc = json_dump_callback(req, dump_cb, &b, JSON_COMPACT);
    json_decref(req);
    if (rc || !b.p) {
        free(b.p);
        return NULL;
    }
    b.p[b.len++] = '\n';
    b.p[b.len] = '\0';
    if (lenp)
        *lenp = b.len;
    return b.p;
}

char *bl_exec_encode(const ballast_message_t *msg, uint64_t id, size_t *lenp)
{
    return dump_line(request_new(msg, id), lenp);
}

char *bl_exec_encode_batch(const ballast_message_t *const *msgs, size_t count, uint64_t id,
                           size_t *lenp)
{
    json_t *req = json_object(), *batch = json_array();

    if (!req || !batch || json_object_set_new_nocheck(req, "id", json_integer((json_int_t)id)))
        goto fail;
    for (size_t i = 0; i < count; i++)
        if (json_array_append_new(batch, request_new(msgs[i], 0)))
            goto fail;
    if (json_object_set_nocheck(req, "batch", batch))
        goto fail;
    json_decref(batch);
    return dump_line(req, lenp);
fail:
    json_decref(batch);
    json_decref(req);
    return NULL;
}

/* ---- decoding ----------------------------------------------------------- */

/* Fills *whyp with a printf-formatted, single-line, heap-allocated reason. */
static bl_exec_decode_status_t malformed(char **whyp, const char *fmt, ...)
    BL_PRINTF(2, 3);

static bl_exec_decode_status_t malformed(char **whyp, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *why;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(why = malloc((size_t)n + 1)))
        return BL_EXEC_MALFORMED;
    va_start(ap, fmt);
    vsnprintf(why, (size_t)n + 1, fmt, ap);
    va_end(ap);
    for (char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    *whyp = why;
    return BL_EXEC_MALFORMED;
}

/* Context of one decode: where the result goes and why it failed. */
typedef struct decoder {
    struct ballast_result_s *scratch; /* emits land here until all is valid */
    char **whyp;
    bl_exec_decode_status_t status;
} decoder_t;

/* Bytes of one key/value/header from an emit: either text or base64. */
typedef struct bytes {
    const void *p; /* NULL: null */
    size_t len;
    void *owned; /* decoded base64, freed by bytes_clear() */
} bytes_t;

static void bytes_clear(bytes_t *b)
{
    free(b->owned);
    memset(b, 0, sizeof(*b));
}

/* Reads obj.name (string or null) or obj.b64name (base64 string); neither
 * means null. @returns 0 or -1 with d->status set. */
static int get_bytes(decoder_t *d, json_t *obj, size_t idx, const char *name,
                     const char *b64name, bytes_t *out)
{
    json_t *text = json_object_get(obj, name), *b64 = json_object_get(obj, b64name);
    int rc;

    memset(out, 0, sizeof(*out));
    if (json_is_null(text))
        text = NULL;
    if (json_is_null(b64))
        b64 = NULL;
    if (text && b64) {
        d->status = malformed(d->whyp, "emit[%zu]: both \"%s\" and \"%s\" given",
                              idx, name, b64name);
        return -1;
    }
    if (b64) {
        if (!json_is_string(b64)) {
            d->status = malformed(d->whyp, "emit[%zu].%s is not a string", idx,
                                  b64name);
            return -1;
        }
        rc = bl_base64_decode(json_string_value(b64), json_string_length(b64),
                              &out->owned, &out->len);
        if (rc == -2) {
            d->status = BL_EXEC_NOMEM;
            return -1;
        }
        if (rc) {
            d->status = malformed(d->whyp, "emit[%zu].%s is not valid base64",
                                  idx, b64name);
            return -1;
        }
        out->p = out->owned;
        return 0;
    }
    if (!text)
        return 0;
    if (!json_is_string(text)) {
        d->status = malformed(d->whyp, "emit[%zu].%s is not a string or null",
                              idx, name);
        return -1;
    }
    out->p = json_string_value(text);
    out->len = json_string_length(text);
    return 0;
}

/* Adds the headers of obj.member (an object of strings or nulls, as text
 * or, with b64, as base64) to the record emitted last. */
static int add_headers(decoder_t *d, json_t *emit, size_t idx,
                       const char *member, bool b64)
{
    json_t *headers = json_object_get(emit, member), *v;
    const char *name;

    if (!headers || json_is_null(headers))
        return 0;
    if (!json_is_object(headers)) {
        d->status = malformed(d->whyp, "emit[%zu].%s is not an object", idx,
                              member);
        return -1;
    }
    json_object_foreach(headers, name, v) {
        bytes_t b = {0};
        int rc;

        if (!json_is_null(v) && !json_is_string(v)) {
            d->status = malformed(d->whyp,
                                  "emit[%zu].%s.\"%s\" is not a string or null",
                                  idx, member, name);
            return -1;
        }
        if (json_is_string(v)) {
            b.p = json_string_value(v);
            b.len = json_string_length(v);
            if (b64) {
                rc = bl_base64_decode(b.p, b.len, &b.owned, &b.len);
                if (rc) {
                    d->status = rc == -2 ? BL_EXEC_NOMEM
                                         : malformed(d->whyp,
                                                     "emit[%zu].%s.\"%s\" is "
                                                     "not valid base64",
                                                     idx, member, name);
                    return -1;
                }
                b.p = b.owned;
            }
        }
        rc = ballast_result_emit_header(d->scratch, name, b.p, b.len);
        bytes_clear(&b);
        if (rc) {
            d->status = BL_EXEC_NOMEM;
            return -1;
        }
    }
    return 0;
}

/* Validates emit[idx] and records it in the scratch result. */
static int add_emit(decoder_t *d, json_t *emit, size_t idx)
{
    json_t *topic = json_object_get(emit, "topic");
    bytes_t key, value;
    int rc;

    if (!json_is_object(emit)) {
        d->status = malformed(d->whyp, "emit[%zu] is not an object", idx);
        return -1;
    }
    if (topic && !json_is_null(topic) &&
        (!json_is_string(topic) || !json_string_length(topic) ||
         strlen(json_string_value(topic)) != json_string_length(topic))) {
        d->status = malformed(d->whyp, "emit[%zu].topic is not a non-empty string",
                              idx);
        return -1;
    }
    if (get_bytes(d, emit, idx, "key", "key_b64", &key))
        return -1;
    if (get_bytes(d, emit, idx, "value", "value_b64", &value)) {
        bytes_clear(&key);
        return -1;
    }
    rc = ballast_result_emit(d->scratch, json_string_value(topic), key.p,
                             key.len, value.p, value.len);
    bytes_clear(&key);
    bytes_clear(&value);
    if (rc) {
        d->status = BL_EXEC_NOMEM;
        return -1;
    }
    return add_headers(d, emit, idx, "headers", false) ||
                   add_headers(d, emit, idx, "headers_b64", true)
               ? -1
               : 0;
}

static int parse_status(decoder_t *d, json_t *reply, ballast_outcome_t *outcomep)
{
    json_t *status = json_object_get(reply, "status");
    const char *s;

    if (!status) {
        d->status = malformed(d->whyp, "no \"status\" member");
        return -1;
    }
    if (!json_is_string(status)) {
        d->status = malformed(d->whyp, "\"status\" is not a string");
        return -1;
    }
    s = json_string_value(status);
    if (strlen(s) != json_string_length(status))
        s = ""; /* a NUL inside: no status we know */
    if (!strcmp(s, "ok"))
        *outcomep = BALLAST_OUTCOME_OK;
    else if (!strcmp(s, "retry"))
        *outcomep = BALLAST_OUTCOME_RETRY;
    else if (!strcmp(s, "fail"))
        *outcomep = BALLAST_OUTCOME_FAIL;
    else {
        d->status = malformed(d->whyp,
                              "unknown status \"%.40s%s\" (expected ok, retry or fail)",
                              s, strlen(s) > 40 ? "..." : "");
        return -1;
    }
    return 0;
}

/* Makes room in @p res for @p from's records. */
static int reserve_records(struct ballast_result_s *res, const struct ballast_result_s *from)
{
    size_t need = res->record_count + from->record_count;

    if (need > res->record_cap) {
        bl_record_t *grown = realloc(res->records, need * sizeof(*grown));
        if (!grown)
            return -1;
        res->records = grown;
        res->record_cap = need;
    }
    return 0;
}

/* Moves the scratch records to the end of res, which reserve_records()
 * made room for. Reaches into the result's internals (internal.h) so that
 * a reply is applied all or nothing. */
static void move_records(struct ballast_result_s *res, struct ballast_result_s *from)
{
    if (!from->record_count)
        return;
    memcpy(res->records + res->record_count, from->records,
           from->record_count * sizeof(*from->records));
    res->record_count += from->record_count;
    from->record_count = 0; /* the records now belong to res */
}

/* One result decoded, not yet applied. */
typedef struct decoded {
    struct ballast_result_s scratch;
    ballast_outcome_t outcome;
    const char *error; /* the child's text (in the parsed reply), or NULL */
} decoded_t;

/* Decodes a result object (a message reply, or an element of "results")
 * into @p out; @returns 0 or -1 (d->status). */
static int decode_result(decoder_t *d, json_t *reply, decoded_t *out)
{
    json_t *error, *emit;

    d->scratch = &out->scratch;
    if (!json_is_object(reply)) {
        d->status = malformed(d->whyp, "not a JSON object");
        return -1;
    }
    if (parse_status(d, reply, &out->outcome))
        return -1;
    error = json_object_get(reply, "error");
    if (error && !json_is_null(error) && !json_is_string(error)) {
        d->status = malformed(d->whyp, "\"error\" is not a string");
        return -1;
    }
    out->error = json_string_value(error); /* NULL unless a string */
    emit = json_object_get(reply, "emit");
    if (!emit || json_is_null(emit))
        return 0;
    if (!json_is_array(emit)) {
        d->status = malformed(d->whyp, "\"emit\" is not an array");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(emit); i++)
        if (add_emit(d, json_array_get(emit, i), i))
            return -1;
    return 0;
}

/* Prefixes *d->whyp with "results[i]: ". */
static void in_results(decoder_t *d, size_t i)
{
    char *inner = *d->whyp;

    if (d->status != BL_EXEC_MALFORMED || !inner)
        return;
    *d->whyp = NULL;
    malformed(d->whyp, "results[%zu]: %s", i, inner);
    free(inner);
}

/* Decodes the reply to target @p t into @p out (t->count of them). */
static int decode_for(decoder_t *d, json_t *reply, const bl_exec_target_t *t, decoded_t *out)
{
    json_t *results;

    if (!t->batch)
        return decode_result(d, reply, out);
    results = json_object_get(reply, "results");
    if (!json_is_array(results)) {
        d->status = malformed(d->whyp, "no \"results\" array in the reply to a batch request");
        return -1;
    }
    if (json_array_size(results) != t->count) {
        d->status = malformed(d->whyp, "\"results\" holds %zu results for a batch of %zu",
                              json_array_size(results), t->count);
        return -1;
    }
    for (size_t i = 0; i < t->count; i++)
        if (decode_result(d, json_array_get(results, i), &out[i])) {
            in_results(d, i);
            return -1;
        }
    return 0;
}

/* Applies decoded results to the target: all of them, or none. */
static int apply(const bl_exec_target_t *t, decoded_t *out)
{
    for (size_t i = 0; i < t->count; i++)
        if (reserve_records(t->results[i], &out[i].scratch))
            return -1;
    for (size_t i = 0; i < t->count; i++) {
        ballast_outcome_t o = out[i].outcome;
        const char *error = out[i].error;

        move_records(t->results[i], &out[i].scratch);
        t->outcomes[i] = o;
        if (o != BALLAST_OUTCOME_OK)
            ballast_result_set_error(t->results[i],
                                     error && *error ? error
                                     : o == BALLAST_OUTCOME_RETRY
                                         ? "child replied retry without an error"
                                         : "child replied fail without an error");
    }
    return 0;
}

/* Reads the reply's "id" into *idp (-1: none). @returns 0, or -1 when it
 * is there but not a non-negative integer. */
static int reply_id(json_t *reply, int64_t *idp)
{
    json_t *id = json_object_get(reply, "id");

    *idp = -1;
    if (!id)
        return 0;
    if (!json_is_integer(id) || json_integer_value(id) < 0)
        return -1;
    *idp = (int64_t)json_integer_value(id);
    return 0;
}

bl_exec_decode_status_t bl_exec_decode_routed(const char *line, size_t len,
                                              bl_exec_route_fn *route, void *ctx,
                                              int64_t *idp, char **whyp)
{
    decoder_t d = {.whyp = whyp, .status = BL_EXEC_DECODED};
    decoded_t one, *out = &one;
    bl_exec_target_t t = {0};
    int64_t id = -1;
    json_error_t jerr;
    json_t *reply;

    *whyp = NULL;
    if (idp)
        *idp = -1;
    /* DECODE_ANY: a bare "ok" is JSON, just not an object; say so. */
    /* JSON_ALLOW_NUL: "\u0000" is valid JSON (what JSON.stringify and
     * json.dumps write for a NUL byte); values are taken by length. */
    if (!(reply = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr))) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return BL_EXEC_NOMEM;
        return malformed(whyp, "not JSON: %s (at byte %d)", jerr.text, jerr.position);
    }
    memset(&one, 0, sizeof(one));
    if (!json_is_object(reply))
        d.status = malformed(whyp, "not a JSON object");
    else if (reply_id(reply, &id))
        d.status = malformed(whyp, "\"id\" is not a non-negative integer");
    else if (idp)
        *idp = id;
    if (d.status == BL_EXEC_DECODED && !route(ctx, id, &t))
        d.status = id < 0 ? malformed(whyp, "a reply that answers no request")
                          : malformed(whyp, "a reply for id %lld, which answers no "
                                      "request it may answer now", (long long)id);
    if (d.status == BL_EXEC_DECODED && t.count > 1 && !(out = calloc(t.count, sizeof(*out))))
        d.status = BL_EXEC_NOMEM;
    if (d.status == BL_EXEC_DECODED && decode_for(&d, reply, &t, out) == 0 && apply(&t, out))
        d.status = BL_EXEC_NOMEM;
    for (size_t i = 0; out && i < (t.count ? t.count : 1); i++)
        bl_result_reset(&out[i].scratch);
    if (out != &one)
        free(out);
    json_decref(reply);
    return d.status;
}

long bl_exec_pair_in_order(uint64_t first_id, size_t sent, size_t done, int64_t id)
{
    if (done >= sent || (id >= 0 && (uint64_t)id != first_id + done))
        return -1;
    return (long)done;
}

/* The route of a reply to a single request: any id goes there. */
typedef struct single_route {
    ballast_result_t *res;
    ballast_outcome_t *outcomep;
} single_route_t;

static bool route_single(void *ctx, int64_t id, bl_exec_target_t *t)
{
    single_route_t *r = ctx;

    (void)id;
    t->results = &r->res;
    t->outcomes = r->outcomep;
    t->count = 1;
    t->batch = false;
    return true;
}

bl_exec_decode_status_t bl_exec_decode(const char *line, size_t len,
                                       ballast_result_t *res,
                                       ballast_outcome_t *outcomep,
                                       char **whyp)
{
    single_route_t r = {res, outcomep};

    return bl_exec_decode_routed(line, len, route_single, &r, NULL, whyp);
}

/* ---- the hello and what a bad line costs -------------------------------- */

bl_exec_hello_status_t bl_exec_hello(const char *line, size_t len, bl_exec_hello_t *h,
                                     char **whyp)
{
    json_t *doc, *hello, *protocol, *inflight, *sdk;
    bl_exec_hello_status_t st = BL_EXEC_HELLO_OK;
    json_error_t jerr;

    *whyp = NULL;
    memset(h, 0, sizeof(*h));
    if (!(doc = json_loadb(line, len, JSON_DECODE_ANY, &jerr)))
        return json_error_code(&jerr) == json_error_out_of_memory ? BL_EXEC_HELLO_NOMEM
                                                                  : BL_EXEC_NOT_HELLO;
    if (!json_is_object(doc) || !(hello = json_object_get(doc, "hello"))) {
        json_decref(doc);
        return BL_EXEC_NOT_HELLO;
    }
    protocol = json_object_get(hello, "protocol");
    inflight = json_object_get(hello, "max_inflight");
    sdk = json_object_get(hello, "sdk");
    if (json_is_string(sdk))
        bl_fmt(h->sdk, sizeof(h->sdk), "%s", json_string_value(sdk));
    if (!json_is_object(hello))
        malformed(whyp, "its hello is not an object");
    else if (!json_is_integer(protocol))
        malformed(whyp, "its hello's protocol is not an integer");
    else if (json_integer_value(protocol) != BL_EXEC_PROTOCOL)
        malformed(whyp, "it speaks protocol %lld, and ballast speaks %d",
                  (long long)json_integer_value(protocol), BL_EXEC_PROTOCOL);
    else if (!json_is_integer(inflight) || json_integer_value(inflight) < 1)
        malformed(whyp, "its hello's max_inflight is not an integer of at least 1");
    else {
        h->protocol = json_integer_value(protocol);
        h->max_inflight = json_integer_value(inflight);
    }
    if (!h->protocol)
        st = *whyp ? BL_EXEC_HELLO_BAD : BL_EXEC_HELLO_NOMEM;
    json_decref(doc);
    return st;
}

bl_exec_blame_t bl_exec_blame(bl_exec_fault_t fault, long named, size_t nopen, size_t count)
{
    bl_exec_blame_t b = {-1, -1, false};
    long culprit = named;

    if (fault == BL_EXEC_FAULT_GONE)
        return b;
    if (culprit < 0 && nopen == 1)
        culprit = 0;
    if (culprit >= 0 && count > 1)
        b.split = culprit; /* a batch is never pinned as a whole */
    else
        b.attempt = culprit;
    b.one_at_a_time = fault == BL_EXEC_FAULT_PROTOCOL && culprit < 0 && nopen > 1;
    return b;
}
