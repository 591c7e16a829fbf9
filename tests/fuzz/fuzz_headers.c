/*
 * fuzz_headers.c - header decoding: the ballast_message_header*()
 * accessors over librdkafka headers, and the strict UTF-8 check
 * bl_utf8_valid() that decides text or base64 for the exec protocol.
 *
 * Each input becomes a message with headers (layout in fuzz_message.h;
 * names and values are arbitrary bytes, names possibly with NUL, values
 * possibly null). Checks against a plain model of what was added:
 *  - header_count, and header(i) for every i: name (as the C string a
 *    consumer sees), null-ness, length and bytes; out-of-range indexes
 *    fail; NULL out-parameters are accepted;
 *  - header_find(name) returns the last header of that name, and fails for
 *    a name that is not there; bl_sqltmpl_value() for :header.NAME agrees;
 *  - differential UTF-8: bl_utf8_valid() agrees with a reference validator
 *    (fuzz_utf8_ref.h) and with jansson's json_stringn() on the whole input,
 *    on every prefix of it (up to 512 bytes), and on each name and value.
 */
#include "message.h"
#include "sqltmpl.h"

#include "fuzz_common.h"
#include "fuzz_message.h"
#include "fuzz_utf8_ref.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const void *p, size_t len, bool with_jansson)
{
    bool ref = ref_utf8_valid(p, len);

    FUZZ_CHECK(bl_utf8_valid(p, len) == ref, "bl_utf8_valid says %d for %zu bytes",
               !ref, len);
    if (with_jansson) {
        json_t *s = json_stringn(len ? p : "", len);
        FUZZ_CHECK((s != NULL) == ref, "jansson says %d, reference %d for %zu bytes",
                   s != NULL, ref, len);
        json_decref(s);
    }
}

/* The last header named exactly [name, name+nl) (no NUL in it), or -1.
 * librdkafka's rd_kafka_header_get_last() compares the whole stored name,
 * so a header whose name has a NUL is never found under its C-string
 * prefix (which ballast_message_header() reports as its name). */
static long model_find(const fuzz_msg_t *f, const uint8_t *name, size_t nl)
{
    long last = -1;
    for (size_t i = 0; i < f->hdr_count; i++)
        if (f->hdr[i].name_len == nl && !memcmp(f->hdr[i].name, name, nl))
            last = (long)i;
    return last;
}

static void expect_value(const fuzz_header_t *h, const void *value, size_t len,
                         const char *what)
{
    if (!h->value) {
        FUZZ_CHECK(!value && !len, "%s: expected a null value", what);
    } else {
        FUZZ_CHECK(value && len == h->value_len &&
                       (!len || !memcmp(value, h->value, len)),
                   "%s: value differs (%zu bytes, expected %zu)", what, len,
                   h->value_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    fuzz_msg_t *f = malloc(sizeof(*f));
    const ballast_message_t *msg;
    size_t count;

    check_utf8(data, size, true);
    for (size_t n = 0; n < size && n < 512; n++)
        check_utf8(data, n, false);

    if (!f)
        abort();
    fuzz_msg_build(f, &r);
    msg = &f->m;
    count = ballast_message_header_count(msg);
    FUZZ_CHECK(count == f->hdr_count, "%zu headers, expected %zu", count, f->hdr_count);

    for (size_t i = 0; i < count; i++) {
        const fuzz_header_t *h = &f->hdr[i];
        size_t nl = fuzz_header_cname_len(h), len = 12345;
        const char *name = NULL;
        const void *value = (const void *)1;
        bl_param_t param = {BL_PARAM_HEADER, NULL};
        bl_sqlval_t sv;
        long last;

        FUZZ_CHECK(ballast_message_header(msg, i, &name, &value, &len) == 0,
                   "header(%zu) failed", i);
        FUZZ_CHECK(name && strlen(name) == nl && !memcmp(name, h->name, nl),
                   "header(%zu): wrong name", i);
        expect_value(h, value, len, "header(i)");
        FUZZ_CHECK(ballast_message_header(msg, i, NULL, NULL, NULL) == 0,
                   "header(%zu) with NULL outputs failed", i);

        check_utf8(h->name, h->name_len, true);
        check_utf8(name, nl, false);
        if (h->value)
            check_utf8(h->value, h->value_len, true);

        last = model_find(f, h->name, nl);
        FUZZ_CHECK(nl < h->name_len || last >= (long)i, "model");
        value = (const void *)1;
        len = 12345;
        param.header = (char *)name;
        bl_sqltmpl_value(&param, msg, &sv);
        FUZZ_CHECK(!sv.is_int, ":header is not an integer");
        if (last < 0) {
            FUZZ_CHECK(ballast_message_header_find(msg, name, &value, &len) == -1,
                       "find(\"%s\") found a header the model has not", name);
            FUZZ_CHECK(!sv.data && !sv.len, ":header.%s: not null", name);
            continue;
        }
        FUZZ_CHECK(ballast_message_header_find(msg, name, &value, &len) == 0,
                   "find(\"%s\") failed", name);
        expect_value(&f->hdr[last], value, len, "find()");
        FUZZ_CHECK(ballast_message_header_find(msg, name, NULL, NULL) == 0,
                   "find with NULL outputs failed");
        expect_value(&f->hdr[last], sv.data, sv.len, "bl_sqltmpl_value(:header)");
    }
    FUZZ_CHECK(ballast_message_header(msg, count, NULL, NULL, NULL) == -1,
               "header(count) succeeded");
    FUZZ_CHECK(ballast_message_header(msg, SIZE_MAX, NULL, NULL, NULL) == -1,
               "header(SIZE_MAX) succeeded");
    {
        /* A name no header has: the first name with a byte appended. */
        static const uint8_t absent_suffix[] = "\x01never";
        char absent[300];
        size_t nl = f->hdr_count ? fuzz_header_cname_len(&f->hdr[0]) : 0;

        if (nl)
            memcpy(absent, f->hdr[0].name, nl);
        memcpy(absent + nl, absent_suffix, sizeof(absent_suffix));
        if (model_find(f, (const uint8_t *)absent, strlen(absent)) < 0)
            FUZZ_CHECK(ballast_message_header_find(msg, absent, NULL, NULL) == -1,
                       "find() of an absent name succeeded");
    }
    fuzz_msg_free(f);
    free(f);
    return 0;
}
