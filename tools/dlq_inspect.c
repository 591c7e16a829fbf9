/*
 * dlq_inspect.c - `ballast dlq inspect`: a dead-letter topic's records as a
 * table or JSON lines, then counted by error message.
 */
#include "dlq.h"
#include "dlq_track.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors by count ---------------------------------------------------- */

#define MAX_DISTINCT_ERRORS 10000

/* A distinct error and how many records had it. */
typedef struct err_count {
    const char *text; /* NULL: records without x-error-message */
    uint64_t count;
    size_t order; /* first seen */
} err_count_t;

/* Records counted by error text. The index's keys are "t" + the text, or
 * "n" for records without an error header. */
typedef struct err_table {
    dlq_index_t *ix;
    uint64_t *counts; /* by the index's numbers */
    size_t cap;
    uint64_t other; /* records past MAX_DISTINCT_ERRORS distinct errors */
} err_table_t;

/* Counts one record under its error text (@p text NULL: no error header).
 * Texts are kept whole up to 1000 bytes. */
static void err_table_add(err_table_t *t, const void *text, size_t len)
{
    char key[1001];
    size_t n;
    bool added;

    if (len > 1000)
        len = 1000;
    key[0] = text ? 't' : 'n';
    if (text)
        memcpy(key + 1, text, len);
    if ((!t->ix && !(t->ix = dlq_index_new())) ||
        (dlq_index_count(t->ix) >= MAX_DISTINCT_ERRORS &&
         dlq_index_find(t->ix, key, text ? len + 1 : 1) == SIZE_MAX)) {
        t->other++;
        return;
    }
    if ((n = dlq_index_add(t->ix, key, text ? len + 1 : 1, &added)) == SIZE_MAX) {
        t->other++;
        return;
    }
    if (n >= t->cap) {
        uint64_t *grown = bl_grow(t->counts, &t->cap, n, sizeof(*grown), 64);
        if (!grown) {
            t->other++;
            return;
        }
        t->counts = grown;
    }
    if (added)
        t->counts[n] = 0;
    t->counts[n]++;
}

static size_t err_table_size(const err_table_t *t)
{
    return t->ix ? dlq_index_count(t->ix) : 0;
}

static int err_count_cmp(const void *a, const void *b)
{
    const err_count_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The distinct errors, most frequent first (ties: first seen first), in a
 * new array of err_table_size() entries that share the table's strings. */
static err_count_t *err_table_sorted(const err_table_t *t)
{
    size_t n = err_table_size(t), len;
    err_count_t *out = calloc(n ? n : 1, sizeof(*out));

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *key = dlq_index_key(t->ix, i, &len);
        out[i].text = key[0] == 't' ? key + 1 : NULL;
        out[i].count = t->counts[i];
        out[i].order = i;
    }
    qsort(out, n, sizeof(*out), err_count_cmp);
    return out;
}

static void err_table_free(err_table_t *t)
{
    dlq_index_free(t->ix);
    free(t->counts);
    memset(t, 0, sizeof(*t));
}

/* ---- inspect ---------------------------------------------------------- */

typedef struct inspect {
    const dlq_opts_t *o;
    err_table_t errors;
    uint64_t shown;
    bool out_failed; /* stdout went away (e.g. `| head`) */
} inspect_t;

static json_t *json_bytes_or_null(const dlq_field_t *f)
{
    if (!f->present || !f->value || !dlq_is_text(f->value, f->len))
        return json_null();
    return json_stringn_nocheck(f->value, f->len);
}

static json_t *json_int_or_null(const dlq_field_t *f)
{
    int64_t n;
    if (!dlq_bytes_int64(f->value, f->len, &n))
        return json_null();
    return json_integer((json_int_t)n);
}

/* Sets obj.name to the bytes as text, obj.b64name to their base64, or
 * obj.name to null when absent. */
static void put_bytes(json_t *obj, const char *name, const char *b64name, const void *p,
                      size_t len)
{
    if (!p) {
        json_object_set_new_nocheck(obj, name, json_null());
    } else if (dlq_is_text(p, len)) {
        json_object_set_new_nocheck(obj, name, json_stringn_nocheck(p, len));
    } else {
        char *b = bl_base64_encode(p, len, NULL);
        json_object_set_new_nocheck(obj, b64name, b ? json_string(b) : json_null());
        free(b);
    }
}

static char *record_json(const dlq_view_t *v, const char *topic)
{
    const rd_kafka_message_t *m = v->m;
    json_t *o = json_object(), *headers = json_object(), *binary = json_object();
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    const char *name;
    const void *val;
    size_t size;
    char *line;

    json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer((json_int_t)m->offset));
    json_object_set_new(o, "timestamp", ts >= 0 ? json_integer((json_int_t)ts) : json_null());
    put_bytes(o, "key", "key_b64", m->key, m->key_len);
    put_bytes(o, "value", "value_b64", m->payload, m->len);
    json_object_set_new(o, "original_topic", json_bytes_or_null(&v->h[H_TOPIC]));
    json_object_set_new(o, "original_partition", json_int_or_null(&v->h[H_PARTITION]));
    json_object_set_new(o, "original_offset", json_int_or_null(&v->h[H_OFFSET]));
    json_object_set_new(o, "original_timestamp", json_int_or_null(&v->h[H_TIMESTAMP]));
    json_object_set_new(o, "retry_count", json_int_or_null(&v->h[H_RETRIES]));
    json_object_set_new(o, "error", json_bytes_or_null(&v->h[H_ERROR]));
    json_object_set_new(o, "consumer_group", json_bytes_or_null(&v->h[H_GROUP]));
    json_object_set_new(o, "failed_at", json_bytes_or_null(&v->h[H_FAILED_AT]));
    json_object_set_new(o, "replay_count", json_integer((json_int_t)v->replays));
    json_object_set_new(o, "replayed_from", json_bytes_or_null(&v->h[H_REPLAYED_FROM]));
    /* Every header; the last of a name wins across both maps. A header
     * whose name is not UTF-8 cannot be a JSON key and is left out. */
    for (size_t i = 0; v->hdrs && !rd_kafka_header_get_all(v->hdrs, i, &name, &val, &size);
         i++) {
        if (!bl_utf8_valid(name, strlen(name)))
            continue;
        if (!val || dlq_is_text(val, size)) {
            json_object_del(binary, name);
            json_object_set_new_nocheck(headers, name,
                                        val ? json_stringn_nocheck(val, size) : json_null());
        } else {
            char *b = bl_base64_encode(val, size, NULL);
            json_object_del(headers, name);
            json_object_set_new_nocheck(binary, name, b ? json_string(b) : json_null());
            free(b);
        }
    }
    json_object_set_new(o, "headers", headers);
    if (json_object_size(binary))
        json_object_set_new(o, "headers_b64", binary);
    else
        json_decref(binary);
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return line;
}

/* Prints @p s left-aligned in @p width characters (UTF-8 aware). */
static void put_padded(const char *s, size_t width)
{
    size_t chars = 0;

    for (const char *p = s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            chars++;
    fputs(s, stdout);
    for (; chars < width; chars++)
        putchar(' ');
}

static void print_table_head(void)
{
    printf("%-9s  %8s  %-32s  %-24s  %7s  %7s  %-16s  %s\n", "PARTITION", "OFFSET",
           "ORIGINAL", "FAILED-AT", "RETRIES", "REPLAYS", "KEY", "ERROR");
}

static void print_table_row(const dlq_view_t *v)
{
    const rd_kafka_message_t *m = v->m;
    char original[400], topic[300], failed[64], retries[32], key[128], error[400];
    int64_t part, off, n;

    dlq_cell(topic, sizeof(topic), v->h[H_TOPIC].value, v->h[H_TOPIC].len, 249);
    if (v->h[H_TOPIC].value) {
        char ps[32] = "?", os[32] = "?";
        if (dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &part))
            snprintf(ps, sizeof(ps), "%lld", (long long)part);
        if (dlq_bytes_int64(v->h[H_OFFSET].value, v->h[H_OFFSET].len, &off))
            snprintf(os, sizeof(os), "%lld", (long long)off);
        snprintf(original, sizeof(original), "%s[%s]@%s", topic, ps, os);
    } else {
        snprintf(original, sizeof(original), "-");
    }
    dlq_cell(failed, sizeof(failed), v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, 30);
    if (dlq_bytes_int64(v->h[H_RETRIES].value, v->h[H_RETRIES].len, &n))
        snprintf(retries, sizeof(retries), "%lld", (long long)n);
    else
        snprintf(retries, sizeof(retries), "-");
    dlq_cell(key, sizeof(key), m->key, m->key_len, 16);
    dlq_cell(error, sizeof(error), v->h[H_ERROR].value, v->h[H_ERROR].len, 60);
    printf("%-9d  %8lld  ", (int)m->partition, (long long)m->offset);
    put_padded(original, 32);
    fputs("  ", stdout);
    put_padded(failed, 24);
    printf("  %7s  %7lld  ", retries, (long long)v->replays);
    put_padded(key, 16);
    printf("  %s\n", error);
}

static int inspect_record(void *arg, const rd_kafka_message_t *m)
{
    inspect_t *in = arg;
    dlq_view_t v;

    dlq_view_init(&v, m);
    if (!dlq_matches(in->o, &v))
        return 0;
    in->shown++;
    err_table_add(&in->errors, v.h[H_ERROR].value, v.h[H_ERROR].len);
    if (in->o->json) {
        char *line = record_json(&v, in->o->topic);
        if (line)
            puts(line);
        free(line);
    } else {
        if (in->shown == 1)
            print_table_head();
        print_table_row(&v);
    }
    if (fflush(stdout) == EOF || ferror(stdout)) {
        in->out_failed = true;
        return 1;
    }
    return in->o->limit && in->shown >= (uint64_t)in->o->limit;
}

static void print_summary(inspect_t *in)
{
    err_count_t *sorted = err_table_sorted(&in->errors);
    size_t n = err_table_size(&in->errors);

    if (in->o->json) {
        json_t *s = json_object(), *errs = json_array(), *wrap = json_object();
        char *line;
        for (size_t i = 0; sorted && i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "error",
                                !sorted[i].text ? json_null()
                                : dlq_is_text(sorted[i].text, strlen(sorted[i].text))
                                    ? json_string(sorted[i].text)
                                    : json_string("<not UTF-8>"));
            json_object_set_new(e, "count", json_integer((json_int_t)sorted[i].count));
            json_array_append_new(errs, e);
        }
        json_object_set_new(s, "topic", json_string(in->o->topic));
        json_object_set_new(s, "records", json_integer((json_int_t)in->shown));
        json_object_set_new(s, "errors", errs);
        if (in->errors.other)
            json_object_set_new(s, "other_errors",
                                json_integer((json_int_t)in->errors.other));
        json_object_set_new(wrap, "summary", s);
        line = json_dumps(wrap, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line)
            puts(line);
        free(line);
        json_decref(wrap);
    } else {
        if (!in->shown)
            printf("(no records in %s%s)\n", in->o->topic,
                   in->o->nwhere ? " match the filters" : "");
        else {
            printf("\n%llu record%s%s; errors by count:\n", (unsigned long long)in->shown,
                   in->shown == 1 ? "" : "s",
                   in->o->limit && in->shown >= (uint64_t)in->o->limit ? " (--limit)" : "");
            for (size_t i = 0; sorted && i < n && i < 20; i++) {
                char text[400];
                if (!sorted[i].text)
                    snprintf(text, sizeof(text), "(no x-error-message)");
                else
                    dlq_cell(text, sizeof(text), sorted[i].text, strlen(sorted[i].text), 120);
                printf("%8llu  %s\n", (unsigned long long)sorted[i].count, text);
            }
            if (n > 20 || in->errors.other) {
                uint64_t rest = in->errors.other;
                for (size_t i = 20; sorted && i < n; i++)
                    rest += sorted[i].count;
                printf("%8llu  (%zu other distinct errors)\n", (unsigned long long)rest,
                       n > 20 ? n - 20 : 0);
            }
        }
    }
    fflush(stdout);
    free(sorted);
}

int dlq_inspect_run(const dlq_opts_t *o)
{
    dlq_reader_t r;
    inspect_t in;
    int rc;

    memset(&in, 0, sizeof(in));
    in.o = o;
    if ((rc = dlq_reader_open(&r, o)) || (rc = dlq_reader_start(&r, o, NULL))) {
        dlq_reader_close(&r);
        return rc;
    }
    rc = dlq_reader_run(&r, o, inspect_record, NULL, &in);
    dlq_reader_close(&r);
    if (!in.out_failed)
        print_summary(&in);
    if (cli_stop_requested)
        cli_error("interrupted: the summary covers the records listed");
    err_table_free(&in.errors);
    return rc;
}

