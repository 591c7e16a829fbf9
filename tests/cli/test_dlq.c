/*
 * test_dlq.c - `ballast dlq inspect` and `ballast dlq replay` against the
 * real broker: inspect --json decodes every header (non-UTF-8 values as
 * base64) and counts errors; replay --dry-run writes nothing; --where
 * selects, --to overrides, x-replay-count grows and stops at --max-replays;
 * --rate paces; a record without a destination fails the run; and a round
 * trip: a pipeline dead-letters poison records, they are inspected,
 * replayed, fail again and come back (bounded), and are finally processed
 * by a fixed pipeline once.
 */
#include "support.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

/* ---- running the command ------------------------------------------------ */

static void expect_rc(const bt_captured_t *c, int rc)
{
    if (c->rc != rc)
        fail_msg("exit code %d, expected %d\nstdout: %s\nstderr: %s", c->rc, rc, c->out,
                 c->err);
}

/* Exactly one line on stderr, containing @p fragment. */
static void expect_one_error_line(const bt_captured_t *c, const char *fragment)
{
    const char *nl = strchr(c->err, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("expected exactly one line on stderr, got: %s", c->err);
    if (!strstr(c->err, fragment))
        fail_msg("stderr does not mention \"%s\": %s", fragment, c->err);
}

static size_t count_occurrences(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- producing and reading records with headers ------------------------- */

typedef struct hdr {
    const char *name;
    const void *value;
    ssize_t len; /* -1: a C string */
} hdr_t;

static int delivery_failures;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        delivery_failures++;
}

static rd_kafka_t *producer_open(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    delivery_failures = 0;
    return rk;
}

static void produce(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                    const void *value, size_t vlen, const hdr_t *hdrs, size_t nh)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(nh + 1);
    rd_kafka_resp_err_t err;

    for (size_t i = 0; i < nh; i++)
        rd_kafka_header_add(h, hdrs[i].name, -1, hdrs[i].value, hdrs[i].len);
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(key, (key ? strlen(key) : 0)),
                            RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_HEADERS(h),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err)
        fail_msg("produce to %s: %s", topic, rd_kafka_err2str(err));
    rd_kafka_poll(rk, 0);
}

static void producer_close(rd_kafka_t *rk)
{
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    assert_int_equal(delivery_failures, 0);
    rd_kafka_destroy(rk);
}

/* A record read back, headers included. */
typedef struct rec {
    int32_t partition;
    int64_t offset;
    char *key, *value; /* NUL-terminated copies; NULL when absent */
    size_t klen, vlen;
    rd_kafka_headers_t *hdrs; /* a copy; NULL when none */
} rec_t;

static char *dup_bytes(const void *p, size_t len)
{
    char *s;
    if (!p)
        return NULL;
    s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static int rec_cmp(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Every record of @p topic (read_committed, to the end of each partition,
 * without a group), sorted by partition and offset. */
static rec_t *read_all(const char *topic, int partitions, size_t *countp)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt;
    rec_t *recs = NULL;
    size_t count = 0, cap = 0;
    int at_end = 0;
    int64_t deadline = bt_now_ms() + 20000;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    q = rd_kafka_queue_new(rk);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    for (int p = 0; p < partitions; p++)
        assert_int_equal(rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q),
                         0);
    while (at_end < partitions) {
        rd_kafka_message_t *m = rd_kafka_consume_queue(q, 100);
        rd_kafka_headers_t *h;
        if (bt_now_ms() > deadline)
            fail_msg("%s: did not reach the end of every partition", topic);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            at_end++;
        } else if (m->err) {
            fail_msg("reading %s: %s", topic, rd_kafka_message_errstr(m));
        } else {
            if (count == cap) {
                cap = cap ? cap * 2 : 64;
                recs = realloc(recs, cap * sizeof(*recs));
                assert_non_null(recs);
            }
            recs[count].partition = m->partition;
            recs[count].offset = m->offset;
            recs[count].key = dup_bytes(m->key, m->key_len);
            recs[count].klen = m->key_len;
            recs[count].value = dup_bytes(m->payload, m->len);
            recs[count].vlen = m->len;
            recs[count].hdrs =
                rd_kafka_message_headers(m, &h) ? NULL : rd_kafka_headers_copy(h);
            count++;
        }
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < partitions; p++)
        rd_kafka_consume_stop(rkt, p);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    if (count)
        qsort(recs, count, sizeof(*recs), rec_cmp);
    *countp = count;
    return recs;
}

static void recs_free(rec_t *recs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(recs[i].key);
        free(recs[i].value);
        if (recs[i].hdrs)
            rd_kafka_headers_destroy(recs[i].hdrs);
    }
    free(recs);
}

/* The last header @p name of @p r as a string (a static buffer), or NULL. */
static const char *hget(const rec_t *r, const char *name)
{
    static char buf[4][512];
    static int next;
    const void *v;
    size_t len;
    char *out = buf[next++ % 4];

    if (!r->hdrs || rd_kafka_header_get_last(r->hdrs, name, &v, &len) || !v)
        return NULL;
    assert_true(len < sizeof(buf[0]));
    memcpy(out, v, len);
    out[len] = '\0';
    return out;
}

static size_t hcount(const rec_t *r, const char *name)
{
    size_t n = 0;
    const char *hn;
    const void *v;
    size_t len;
    for (size_t i = 0; r->hdrs && !rd_kafka_header_get_all(r->hdrs, i, &hn, &v, &len); i++)
        if (!strcmp(hn, name))
            n++;
    return n;
}

/* ---- the DLQ fixture -------------------------------------------------------- */

/* Five dead-letter records, as the runtime writes them, into a fresh
 * 2-partition DLQ whose x-original-topic is a fresh 3-partition topic:
 *   #  dlq  key  value         tenant  error         failed-at  orig.p  replays
 *   0  0/0  k0   order-0       a       db timeout    10:00      0       -
 *   1  0/1  k1   ff fe 00 01   b       invalid json  11:00      1       -
 *   2  1/0  -    order-2       a       db timeout    12:00      2       -     (+ binary "trace")
 *   3  1/1  k3   order-3       b       db timeout    13:00      0       -
 *   4  1/2  k4   order-4       a       invalid json  14:00      1       3
 * plus a content-type header that the original record had. */
static const unsigned char binary_value[] = {0xff, 0xfe, 0x00, 0x01};
static const unsigned char binary_trace[] = {0x80, 0x81};

typedef struct fixture_rec {
    int32_t dlq_partition;
    const char *key, *value, *tenant, *error, *failed_at, *opart, *ooffset, *replays;
} fixture_rec_t;

static const fixture_rec_t fixture[5] = {
    {0, "k0", "order-0", "a", "db timeout", "2024-05-01T10:00:00.000Z", "0", "100", NULL},
    {0, "k1", NULL, "b", "invalid json", "2024-05-01T11:00:00.000Z", "1", "101", NULL},
    {1, NULL, "order-2", "a", "db timeout", "2024-05-01T12:00:00.000Z", "2", "102", NULL},
    {1, "k3", "order-3", "b", "db timeout", "2024-05-01T13:00:00.000Z", "0", "103", NULL},
    {1, "k4", "order-4", "a", "invalid json", "2024-05-01T14:00:00.000Z", "1", "104", "3"},
};

static void make_dlq(const char *dlq, const char *orders)
{
    rd_kafka_t *rk;

    bt_create_topic(bt_bootstrap(), dlq, 2);
    bt_create_topic(bt_bootstrap(), orders, 3);
    rk = producer_open();
    for (int i = 0; i < 5; i++) {
        const fixture_rec_t *f = &fixture[i];
        hdr_t h[12];
        size_t n = 0;
        h[n++] = (hdr_t){"content-type", "application/json", -1};
        h[n++] = (hdr_t){"tenant", f->tenant, -1};
        if (i == 2)
            h[n++] = (hdr_t){"trace", binary_trace, sizeof(binary_trace)};
        if (f->replays)
            h[n++] = (hdr_t){"x-replay-count", f->replays, -1};
        h[n++] = (hdr_t){"x-original-topic", orders, -1};
        h[n++] = (hdr_t){"x-original-partition", f->opart, -1};
        h[n++] = (hdr_t){"x-original-offset", f->ooffset, -1};
        h[n++] = (hdr_t){"x-original-timestamp", "1714550400000", -1};
        h[n++] = (hdr_t){"x-retry-count", "2", -1};
        h[n++] = (hdr_t){"x-error-message", f->error, -1};
        h[n++] = (hdr_t){"x-consumer-group", "orders-svc", -1};
        h[n++] = (hdr_t){"x-failed-at", f->failed_at, -1};
        if (f->value)
            produce(rk, dlq, f->dlq_partition, f->key, f->value, strlen(f->value), h, n);
        else
            produce(rk, dlq, f->dlq_partition, f->key, binary_value, sizeof(binary_value), h,
                    n);
        /* One at a time, so that offsets within a partition follow the table. */
        assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    }
    producer_close(rk);
}

/* The JSON lines of @p text; the last must be the summary. */
static json_t *parse_lines(const char *text)
{
    json_t *arr = json_array();
    char *copy = strdup(text), *save = NULL;

    assert_non_null(copy);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("not a JSON line: %s (%s)", line, jerr.text);
        json_array_append_new(arr, o);
    }
    free(copy);
    return arr;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string in %s", key, json_dumps(o, JSON_COMPACT));
    return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer in %s", key, json_dumps(o, JSON_COMPACT));
    return json_integer_value(v);
}

/* ---- tests --------------------------------------------------------------- */

static void test_help_usage_and_exit_codes(void **state)
{
    (void)state;
    bt_captured_t c;

    c = bt_run_captured(ARGV("dlq", "--help"), 10000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "dlq replay"));
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "inspect", "--help"), 10000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "--limit"));
    assert_non_null(strstr(c.out, "\"summary\""));
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "--help"), 10000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "header:NAME=VALUE"));
    assert_non_null(strstr(c.out, "--max-replays"));
    assert_non_null(strstr(c.out, "after=TIME"));
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("--help"), 10000);
    assert_non_null(strstr(c.out, "dlq inspect"));
    bt_captured_free(&c);

    /* Usage errors: 64, one line naming the culprit. */
    c = bt_run_captured(ARGV("dlq"), 10000);
    expect_rc(&c, 64);
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "purge"), 10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "purge");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", "127.0.0.1:1"), 10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "-t DLQ_TOPIC");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "x:1", "--from", "d", "--where", "colour=red"),
                     10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "colour=red");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "x:1", "--from", "d", "--where",
                          "after=yesterday"),
                     10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "ISO-8601");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "x:1", "--from", "d", "--rate", "0"), 10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "--rate");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "x:1", "--from", "d", "--to", "d"), 10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "--to");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "x:1", "--from", "d", "--max-replays"),
                     10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "--max-replays");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", "x:1", "-t", "d", "--dry-run"), 10000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "--dry-run");
    bt_captured_free(&c);

    /* A bad librdkafka property: 78. */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", "127.0.0.1:1", "-t", "d", "-X",
                          "no.such.property=1"),
                     10000);
    expect_rc(&c, 78);
    expect_one_error_line(&c, "no.such.property");
    bt_captured_free(&c);

    /* Nobody listening: 69 after the timeout, for both commands. */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", "127.0.0.1:1", "-t", "d", "--timeout", "1"),
                     30000);
    expect_rc(&c, 69);
    expect_one_error_line(&c, "127.0.0.1:1");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", "127.0.0.1:1", "--from", "d", "--timeout",
                          "1"),
                     30000);
    expect_rc(&c, 69);
    expect_one_error_line(&c, "127.0.0.1:1");
    bt_captured_free(&c);
}

/* A name on the command line that names nothing is a configuration error
 * (78), as in `ballast lag`. */
static void test_missing_topic_exits_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *missing = bt_unique("dlq-missing");
    bt_captured_t c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", missing),
                                30000);
    expect_rc(&c, 78);
    expect_one_error_line(&c, missing);
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", missing,
                             "--group", bt_unique("dlq-missing-g")),
                        30000);
    expect_rc(&c, 78);
    expect_one_error_line(&c, missing);
    bt_captured_free(&c);
}

static void test_inspect_json_decodes_headers_and_counts_errors(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-insp"), *orders = bt_unique("dlq-insp-orders");
    static const int order[5] = {0, 1, 2, 3, 4}; /* fixture order = partition, offset */
    json_t *lines, *summary, *errors;
    bt_captured_t c;

    make_dlq(dlq, orders);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq, "--json"), 30000);
    expect_rc(&c, 0);
    lines = parse_lines(c.out);
    assert_int_equal(json_array_size(lines), 6);
    /* Records in partition, offset order for the comparison. */
    {
        json_t *recs[5] = {0};
        for (int i = 0; i < 5; i++) {
            json_t *r = json_array_get(lines, (size_t)i);
            json_int_t p = jint(r, "partition"), off = jint(r, "offset");
            int idx = p == 0 ? (int)off : 2 + (int)off;
            assert_true(idx >= 0 && idx < 5 && !recs[idx]);
            recs[idx] = r;
        }
        for (int k = 0; k < 5; k++) {
            int i = order[k];
            const fixture_rec_t *f = &fixture[i];
            json_t *r = recs[i], *h = json_object_get(r, "headers");
            assert_string_equal(jstr(r, "topic"), dlq);
            assert_int_equal(jint(r, "partition"), f->dlq_partition);
            if (f->key)
                assert_string_equal(jstr(r, "key"), f->key);
            else
                assert_true(json_is_null(json_object_get(r, "key")));
            if (f->value) {
                assert_string_equal(jstr(r, "value"), f->value);
                assert_null(json_object_get(r, "value_b64"));
            } else {
                /* Not UTF-8: base64 of ff fe 00 01, and no "value". */
                assert_string_equal(jstr(r, "value_b64"), "//4AAQ==");
                assert_null(json_object_get(r, "value"));
            }
            assert_string_equal(jstr(r, "original_topic"), orders);
            assert_int_equal(jint(r, "original_partition"), atoi(f->opart));
            assert_int_equal(jint(r, "original_offset"), atoi(f->ooffset));
            assert_int_equal(jint(r, "original_timestamp"), 1714550400000LL);
            assert_int_equal(jint(r, "retry_count"), 2);
            assert_string_equal(jstr(r, "error"), f->error);
            assert_string_equal(jstr(r, "consumer_group"), "orders-svc");
            assert_string_equal(jstr(r, "failed_at"), f->failed_at);
            assert_int_equal(jint(r, "replay_count"), f->replays ? atoi(f->replays) : 0);
            assert_true(json_is_null(json_object_get(r, "replayed_from")));
            /* The headers object: every header, decoded. */
            assert_true(json_is_object(h));
            assert_string_equal(jstr(h, "tenant"), f->tenant);
            assert_string_equal(jstr(h, "content-type"), "application/json");
            assert_string_equal(jstr(h, "x-original-topic"), orders);
            assert_string_equal(jstr(h, "x-error-message"), f->error);
            assert_string_equal(jstr(h, "x-failed-at"), f->failed_at);
            if (i == 2) {
                json_t *b = json_object_get(r, "headers_b64");
                assert_true(json_is_object(b));
                assert_string_equal(jstr(b, "trace"), "gIE=");
                assert_null(json_object_get(h, "trace"));
            } else {
                assert_null(json_object_get(r, "headers_b64"));
            }
        }
    }
    /* The summary: errors by count, most frequent first. */
    summary = json_object_get(json_array_get(lines, 5), "summary");
    assert_true(json_is_object(summary));
    assert_int_equal(jint(summary, "records"), 5);
    errors = json_object_get(summary, "errors");
    assert_int_equal(json_array_size(errors), 2);
    assert_string_equal(jstr(json_array_get(errors, 0), "error"), "db timeout");
    assert_int_equal(jint(json_array_get(errors, 0), "count"), 3);
    assert_string_equal(jstr(json_array_get(errors, 1), "error"), "invalid json");
    assert_int_equal(jint(json_array_get(errors, 1), "count"), 2);
    json_decref(lines);
    bt_captured_free(&c);

    /* --limit caps the records shown (and the summary counts those). */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq, "--json",
                          "--limit", "2"),
                     30000);
    expect_rc(&c, 0);
    lines = parse_lines(c.out);
    assert_int_equal(json_array_size(lines), 3);
    assert_int_equal(jint(json_object_get(json_array_get(lines, 2), "summary"), "records"), 2);
    json_decref(lines);
    bt_captured_free(&c);

    /* --where works for inspect too. */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq, "--json",
                          "--where", "error~json", "--where", "header:tenant=b"),
                     30000);
    expect_rc(&c, 0);
    lines = parse_lines(c.out);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(jstr(json_array_get(lines, 0), "key"), "k1");
    json_decref(lines);
    bt_captured_free(&c);

    /* The table: a row per record and the errors by count. */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq), 30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "FAILED-AT"));
    assert_int_equal(count_occurrences(c.out, orders), 5);
    assert_non_null(strstr(c.out, "errors by count"));
    assert_non_null(strstr(c.out, "       3  db timeout"));
    assert_non_null(strstr(c.out, "       2  invalid json"));
    bt_captured_free(&c);
}

static void test_dry_run_writes_nothing(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-dry"), *orders = bt_unique("dlq-dry-orders");
    int64_t before[3], after[3], dlq_before, dlq_after;
    bt_captured_t c;

    make_dlq(dlq, orders);
    bt_high_watermarks(bt_bootstrap(), orders, 3, before);
    dlq_before = bt_total_watermark(bt_bootstrap(), dlq, 2);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run"),
                     30000);
    expect_rc(&c, 0);
    /* Four would go back to their original partitions; #4 is at the limit. */
    assert_int_equal(count_occurrences(c.out, " -> "), 4);
    assert_int_equal(count_occurrences(c.out, "skip "), 1);
    assert_non_null(strstr(c.out, "would send 4"));
    assert_non_null(strstr(c.out, "nothing was written"));
    {
        char expect[300];
        snprintf(expect, sizeof(expect), "%s[0]@0 -> %s [0]", dlq, orders);
        assert_non_null(strstr(c.out, expect));
    }
    bt_captured_free(&c);
    /* Filters ANDed in a dry run: tenant b and an error about JSON: #1 only. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run",
                          "--where", "header:tenant=b", "--where", "error~json"),
                     30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 1, would send 1"));
    bt_captured_free(&c);
    bt_high_watermarks(bt_bootstrap(), orders, 3, after);
    dlq_after = bt_total_watermark(bt_bootstrap(), dlq, 2);
    for (int p = 0; p < 3; p++)
        assert_int_equal(after[p], before[p]);
    assert_int_equal(before[0] + before[1] + before[2], 0);
    assert_int_equal(dlq_after, dlq_before);
}

/* The replayed copies of fixture records @p idx (ascending) in @p recs. */
static void check_replayed(const rec_t *recs, size_t n, const char *dlq, const char *orders,
                           const int *idx, size_t count, bool original_partition,
                           const char *replays)
{
    assert_int_equal(n, count);
    for (size_t k = 0; k < count; k++) {
        const fixture_rec_t *f = &fixture[idx[k]];
        const rec_t *r = NULL;
        char from[300];
        /* Find it by its x-original-offset (unique per fixture record). */
        for (size_t j = 0; j < n; j++)
            if (hget(&recs[j], "x-original-offset") &&
                !strcmp(hget(&recs[j], "x-original-offset"), f->ooffset))
                r = &recs[j];
        if (!r)
            fail_msg("fixture record %d was not replayed", idx[k]);
        if (original_partition)
            assert_int_equal(r->partition, atoi(f->opart));
        if (f->key)
            assert_string_equal(r->key, f->key);
        else
            assert_null(r->key);
        if (f->value) {
            assert_string_equal(r->value, f->value);
        } else {
            assert_int_equal(r->vlen, sizeof(binary_value));
            assert_memory_equal(r->value, binary_value, sizeof(binary_value));
        }
        /* Original headers and provenance kept... */
        assert_string_equal(hget(r, "tenant"), f->tenant);
        assert_string_equal(hget(r, "content-type"), "application/json");
        assert_string_equal(hget(r, "x-original-topic"), orders);
        assert_string_equal(hget(r, "x-original-partition"), f->opart);
        assert_string_equal(hget(r, "x-original-timestamp"), "1714550400000");
        assert_int_equal(hcount(r, "x-original-topic"), 1);
        if (idx[k] == 2) {
            const void *v;
            size_t len;
            assert_int_equal(rd_kafka_header_get_last(r->hdrs, "trace", &v, &len), 0);
            assert_int_equal(len, sizeof(binary_trace));
            assert_memory_equal(v, binary_trace, len);
        }
        /* ...the failure's own headers gone, the replay counted. */
        assert_null(hget(r, "x-error-message"));
        assert_null(hget(r, "x-failed-at"));
        assert_null(hget(r, "x-retry-count"));
        assert_null(hget(r, "x-consumer-group"));
        assert_string_equal(hget(r, "x-replay-count"), replays);
        assert_int_equal(hcount(r, "x-replay-count"), 1);
        snprintf(from, sizeof(from), "%s:%d:", dlq, (int)f->dlq_partition);
        assert_non_null(hget(r, "x-replayed-from"));
        assert_true(!strncmp(hget(r, "x-replayed-from"), from, strlen(from)));
    }
}

static void test_replay_where_header_sends_only_matching(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-where"), *orders = bt_unique("dlq-where-orders");
    static const int tenant_a[] = {0, 2}; /* #4 is tenant a too, but at --max-replays */
    int64_t dlq_before;
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    dlq_before = bt_total_watermark(bt_bootstrap(), dlq, 2);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--where",
                          "header:tenant=a"),
                     30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "sent 2"));
    assert_non_null(strstr(c.out, "delivered 2, failed 0"));
    assert_non_null(strstr(c.out, "skipped 1"));
    /* The skipped record gets a note naming why. */
    assert_non_null(strstr(c.err, "--max-replays"));
    bt_captured_free(&c);
    recs = read_all(orders, 3, &n);
    check_replayed(recs, n, dlq, orders, tenant_a, 2, true, "1");
    recs_free(recs, n);
    /* The DLQ is an audit log: nothing removed, nothing added. */
    assert_int_equal(bt_total_watermark(bt_bootstrap(), dlq, 2), dlq_before);
}

static void test_replay_skips_records_at_max_replays(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-max"), *orders = bt_unique("dlq-max-orders");
    static const int only4[] = {4};
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    /* #4 has x-replay-count 3 = the default --max-replays: skipped, not an error. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--where",
                          "key=k4"),
                     30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 1, sent 0, skipped 1"));
    assert_non_null(strstr(c.err, "x-replay-count 3 reached --max-replays 3"));
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 0);
    /* A higher limit lets it through, counted once more. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--where",
                          "key=k4", "--max-replays", "5"),
                     30000);
    expect_rc(&c, 0);
    bt_captured_free(&c);
    recs = read_all(orders, 3, &n);
    check_replayed(recs, n, dlq, orders, only4, 1, true, "4");
    recs_free(recs, n);
}

static void test_replay_to_overrides_destination(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-to"), *orders = bt_unique("dlq-to-orders");
    const char *other = bt_unique("dlq-to-other");
    static const int tenant_b[] = {1, 3};
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    bt_create_topic(bt_bootstrap(), other, 1);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--to", other,
                          "--where", "header:tenant=b"),
                     30000);
    expect_rc(&c, 0);
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 0);
    recs = read_all(other, 1, &n);
    /* x-original-topic still names where they came from. */
    check_replayed(recs, n, dlq, orders, tenant_b, 2, false, "1");
    recs_free(recs, n);

    /* --to a topic that does not exist: 78, before anything is sent. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--to",
                          "no-such-topic-dlq-test"),
                     30000);
    expect_rc(&c, 78);
    expect_one_error_line(&c, "no-such-topic-dlq-test");
    bt_captured_free(&c);
}

static void test_unroutable_record_exits_1(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-unroutable"), *other = bt_unique("dlq-unroutable-to");
    rd_kafka_t *rk;
    bt_captured_t c;
    hdr_t h[1] = {{"x-error-message", "lost its origin", -1}};

    bt_create_topic(bt_bootstrap(), dlq, 1);
    bt_create_topic(bt_bootstrap(), other, 1);
    rk = producer_open();
    produce(rk, dlq, 0, "k", "v", 1, h, 1);
    producer_close(rk);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq), 30000);
    expect_rc(&c, 1);
    assert_non_null(strstr(c.err, "x-original-topic"));
    assert_non_null(strstr(c.err, "could not be routed"));
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--to", other),
                     30000);
    expect_rc(&c, 0);
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), other, 1), 1);
}

static void test_rate_paces_replay(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-rate"), *target = bt_unique("dlq-rate-target");
    rd_kafka_t *rk;
    bt_captured_t c;
    int64_t t0, elapsed;

    bt_create_topic(bt_bootstrap(), dlq, 1);
    bt_create_topic(bt_bootstrap(), target, 2);
    rk = producer_open();
    for (int i = 0; i < 100; i++) {
        char key[16], value[16];
        hdr_t h[3] = {{"x-original-topic", target, -1},
                      {"x-error-message", "e", -1},
                      {"x-failed-at", "2024-05-01T10:00:00.000Z", -1}};
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(value, sizeof(value), "%d", i);
        produce(rk, dlq, 0, key, value, strlen(value), h, 3);
    }
    producer_close(rk);
    t0 = bt_now_ms();
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--rate",
                          "200/s"),
                     60000);
    elapsed = bt_now_ms() - t0;
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "delivered 100, failed 0"));
    bt_captured_free(&c);
    /* 100 records at 200/s: at least ~0.5 s of sending (a lower bound only). */
    if (elapsed < 400)
        fail_msg("100 records at --rate 200 took only %lld ms", (long long)elapsed);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), target, 2), 100);
}

/* ---- the round trip ------------------------------------------------------ */

typedef struct wm_goal {
    const char *topic;
    int partitions;
    int64_t want;
} wm_goal_t;

static bool watermark_reached(void *arg)
{
    const wm_goal_t *g = arg;
    return bt_total_watermark(bt_bootstrap(), g->topic, g->partitions) >= g->want;
}

static void wait_watermark(const char *topic, int partitions, int64_t want)
{
    wm_goal_t g = {topic, partitions, want};
    if (!bt_wait_for(watermark_reached, &g, 30000))
        fail_msg("%s did not reach %lld records", topic, (long long)want);
}

/* The "started ..." time of a replay summary, for --where after=. */
static void replay_started(const char *out, char *buf, size_t size)
{
    const char *p = strstr(out, "started ");
    const char *end;
    assert_non_null(p);
    p += 8;
    end = strchr(p, ',');
    assert_non_null(end);
    snprintf(buf, size, "after=%.*s", (int)(end - p), p);
}

static pid_t start_pipeline(const char *conf_body)
{
    char path[300];
    const char *dir = bt_tmpdir();
    char errpath[300];

    snprintf(path, sizeof(path), "%s/pipeline.conf", dir);
    snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
    bt_write_file(path, "%s", conf_body);
    return bt_spawn_ballast(ARGV("run", path), errpath);
}

static void test_round_trip(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *orders = bt_unique("dlq-rt-orders"), *dlq = bt_unique("dlq-rt-dlq");
    const char *out = bt_unique("dlq-rt-out"), *group = bt_unique("dlq-rt-g");
    char conf[2048], after[80];
    json_t *lines;
    bt_captured_t c;
    rec_t *recs;
    size_t n;
    rd_kafka_t *rk;
    pid_t pid;

    bt_create_topic(bs, orders, 2);
    bt_create_topic(bs, dlq, 1);
    bt_create_topic(bs, out, 1);
    rk = producer_open();
    for (int i = 0; i < 10; i++) {
        char key[16];
        const char *value = i == 3 || i == 7 ? "poison" : "fine";
        hdr_t h[1] = {{"tenant", i == 3 ? "a" : "b", -1}};
        snprintf(key, sizeof(key), "k%d", i);
        produce(rk, orders, i % 2, key, value, strlen(value), h, 1);
    }
    producer_close(rk);

    /* 1. The buggy deploy: the example plugin fails "poison" permanently. */
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
             "handler = plugin\nhandler.plugin.path = %s\ndlq.topic = %s\n"
             "log.level = error\n",
             bs, group, orders, BALLAST_EXAMPLE_PLUGIN, dlq);
    pid = start_pipeline(conf);
    wait_watermark(dlq, 1, 2);

    /* 2. Inspect: both poison records, why and where they failed. */
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bs, "-t", dlq, "--json"), 30000);
    expect_rc(&c, 0);
    lines = parse_lines(c.out);
    assert_int_equal(json_array_size(lines), 3);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(lines, i);
        assert_string_equal(jstr(r, "value"), "poison");
        assert_string_equal(jstr(r, "original_topic"), orders);
        assert_string_equal(jstr(r, "error"), "poison value");
        assert_string_equal(jstr(r, "consumer_group"), group);
        assert_int_equal(jint(r, "replay_count"), 0);
    }
    {
        json_t *errs = json_object_get(json_object_get(json_array_get(lines, 2), "summary"),
                                       "errors");
        assert_int_equal(json_array_size(errs), 1);
        assert_string_equal(jstr(json_array_get(errs, 0), "error"), "poison value");
        assert_int_equal(jint(json_array_get(errs, 0), "count"), 2);
    }
    json_decref(lines);
    bt_captured_free(&c);

    /* 3. Replay while the bug is still deployed: both fail again and come
     *    back to the DLQ, counted, with their first origin kept. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bs, "--from", dlq), 30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "delivered 2, failed 0"));
    replay_started(c.out, after, sizeof(after));
    bt_captured_free(&c);
    wait_watermark(dlq, 1, 4);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bs, "-t", dlq, "--json", "--where", after),
                     30000);
    expect_rc(&c, 0);
    lines = parse_lines(c.out);
    assert_int_equal(json_array_size(lines), 3);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(lines, i);
        assert_int_equal(jint(r, "offset"), 2 + (json_int_t)i);
        assert_int_equal(jint(r, "replay_count"), 1);
        assert_string_equal(jstr(r, "original_topic"), orders);
        assert_string_equal(jstr(r, "value"), "poison");
        assert_non_null(strstr(jstr(r, "replayed_from"), dlq));
    }
    json_decref(lines);
    bt_captured_free(&c);

    /* 4. The bound: with --max-replays 1 the re-failed records are skipped,
     *    so a record that keeps failing does not loop. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bs, "--from", dlq, "--where", after,
                          "--max-replays", "1"),
                     30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "sent 0, skipped 2"));
    bt_captured_free(&c);

    /* 5. The fix is deployed: the same group, a handler that succeeds. */
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
             "handler = forward\noutput.topic = %s\nlog.level = error\n",
             bs, group, orders, out);
    pid = start_pipeline(conf);

    /* 6. Replay only the failures since the first replay (the re-failed
     *    copies, not the first failures again). */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bs, "--from", dlq, "--where", after), 30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 2, sent 2"));
    bt_captured_free(&c);
    wait_watermark(out, 1, 2);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 30000), 0);

    /* Processed once each: exactly the two poison records, nothing else
     * (the group had committed everything else before). */
    recs = read_all(out, 1, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(recs[i].value, "poison");
        assert_true(!strcmp(recs[i].key, "k3") || !strcmp(recs[i].key, "k7"));
        assert_string_equal(hget(&recs[i], "x-replay-count"), "2");
        assert_string_equal(hget(&recs[i], "x-original-topic"), orders);
        assert_string_equal(hget(&recs[i], "tenant"), !strcmp(recs[i].key, "k3") ? "a" : "b");
        assert_null(hget(&recs[i], "x-error-message"));
    }
    recs_free(recs, n);
    /* The DLQ kept all four failures. */
    assert_int_equal(bt_total_watermark(bs, dlq, 1), 4);
}

/* ---- --group, duplicates, OR, and what a dry run says --------------------- */

/* A dead letter of the original @p topic [@p opart] @ @p ooffset, written to
 * DLQ partition @p dlq_partition (and flushed, so that offsets follow the
 * calls). @p replays may be NULL (no x-replay-count). */
static void dead_letter(const char *dlq, int32_t dlq_partition, const char *key,
                        const char *topic, const char *opart, const char *ooffset,
                        const char *replays, const char *failed_at, const char *error)
{
    rd_kafka_t *rk = producer_open();
    hdr_t h[7];
    size_t n = 0;

    if (topic)
        h[n++] = (hdr_t){"x-original-topic", topic, -1};
    h[n++] = (hdr_t){"x-original-partition", opart, -1};
    h[n++] = (hdr_t){"x-original-offset", ooffset, -1};
    h[n++] = (hdr_t){"x-error-message", error, -1};
    h[n++] = (hdr_t){"x-failed-at", failed_at, -1};
    if (replays)
        h[n++] = (hdr_t){"x-replay-count", replays, -1};
    produce(rk, dlq, dlq_partition, key, key, strlen(key), h, n);
    producer_close(rk);
}

/* How many records of @p recs have key @p key. */
static size_t key_count(const rec_t *recs, size_t n, const char *key)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += recs[i].key && !strcmp(recs[i].key, key);
    return k;
}

static void expect_committed(const char *group, const char *dlq, const int64_t *want, int n)
{
    int64_t got[8];
    bt_committed(bt_bootstrap(), group, dlq, n, got);
    for (int p = 0; p < n; p++)
        if (got[p] != want[p])
            fail_msg("group %s on %s [%d]: committed %lld, expected %lld", group, dlq, p,
                     (long long)got[p], (long long)want[p]);
}

/* A second run with the same --group replays nothing; after new dead
 * letters arrive, a run replays exactly those; a dry run shows them and
 * commits nothing. */
static void test_group_continues_where_it_stopped(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-grp"), *orders = bt_unique("dlq-grp-orders");
    const char *group = bt_unique("dlq-grp-g");
    int64_t end[2];
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "sent 4"));
    assert_non_null(strstr(c.out, "delivered 4, failed 0"));
    bt_captured_free(&c);
    /* Everything was looked at (#4 skipped at --max-replays counts too). */
    bt_high_watermarks(bt_bootstrap(), dlq, 2, end);
    expect_committed(group, dlq, end, 2);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 4);

    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 0);
    if (!strstr(c.out, "scanned 0, matched 0, sent 0"))
        fail_msg("the second run replayed again: %s", c.out);
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 4);

    /* New failures. */
    dead_letter(dlq, 0, "k5", orders, "0", "105", NULL, "2024-05-02T10:00:00Z", "db timeout");
    dead_letter(dlq, 1, "k6", orders, "2", "106", NULL, "2024-05-02T11:00:00Z", "db timeout");
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group, "--dry-run"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "scanned 2, matched 2, would send 2"));
    {
        char want[300];
        snprintf(want, sizeof(want), "%s[0]@2 -> %s [0]  key k5", dlq, orders);
        assert_non_null(strstr(c.out, want));
        snprintf(want, sizeof(want), "%s[1]@3 -> %s [2]  key k6", dlq, orders);
        assert_non_null(strstr(c.out, want));
        snprintf(want, sizeof(want), "group %s: would commit 0:3, 1:4", group);
        assert_non_null(strstr(c.out, want));
    }
    bt_captured_free(&c);
    expect_committed(group, dlq, end, 2); /* the dry run committed nothing */
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 4);

    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "scanned 2, matched 2, sent 2"));
    bt_captured_free(&c);
    recs = read_all(orders, 3, &n);
    assert_int_equal(n, 6);
    /* Each original once: the five first ones and the two new ones. */
    assert_int_equal(key_count(recs, n, "k0"), 1);
    assert_int_equal(key_count(recs, n, "k1"), 1);
    assert_int_equal(key_count(recs, n, "k3"), 1);
    assert_int_equal(key_count(recs, n, "k5"), 1);
    assert_int_equal(key_count(recs, n, "k6"), 1);
    assert_int_equal(key_count(recs, n, "k4"), 0); /* at --max-replays */
    recs_free(recs, n);
    end[0] = 3;
    end[1] = 4;
    expect_committed(group, dlq, end, 2);
}

/* A DLQ holding several copies of one original (its replays failed again):
 * each original is replayed once, from its newest copy, counted past the
 * highest x-replay-count of all its copies; an original whose newest copy
 * reached --max-replays is not replayed through an older copy. */
static void test_each_original_replayed_once(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-dup"), *orders = bt_unique("dlq-dup-orders");
    char want[400];
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    bt_create_topic(bt_bootstrap(), dlq, 2);
    bt_create_topic(bt_bootstrap(), orders, 3);
    /* X: orders[0]@100, one copy. Y: orders[1]@101, three copies; the
     * newest is dlq[0]@2. Z: orders[2]@102, two copies, the newest at
     * x-replay-count 3. */
    dead_letter(dlq, 0, "x", orders, "0", "100", NULL, "2024-05-01T10:00:00Z", "e");   /* 0@0 */
    dead_letter(dlq, 0, "y", orders, "1", "101", NULL, "2024-05-01T10:00:00Z", "e");   /* 0@1 */
    dead_letter(dlq, 1, "y", orders, "1", "101", "1", "2024-05-01T11:00:00Z", "e");    /* 1@0 */
    dead_letter(dlq, 0, "y", orders, "1", "101", "1", "2024-05-01T12:00:00Z", "e");    /* 0@2 */
    dead_letter(dlq, 1, "z", orders, "2", "102", NULL, "2024-05-01T10:00:00Z", "e");   /* 1@1 */
    dead_letter(dlq, 1, "z", orders, "2", "102", "3", "2024-05-01T13:00:00Z", "e");    /* 1@2 */

    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run"),
                        30000);
    expect_rc(&c, 0);
    /* What a dry run says about each, and why. */
    snprintf(want, sizeof(want), "skip     %s[0]@1: duplicate of %s[1]@101, which is "
             "replayed from %s[0]@2", dlq, orders, dlq);
    assert_non_null(strstr(c.out, want));
    snprintf(want, sizeof(want), "skip     %s[1]@0: duplicate of %s[1]@101", dlq, orders);
    assert_non_null(strstr(c.out, want));
    snprintf(want, sizeof(want), "skip     %s[1]@1: duplicate of %s[2]@102, which is "
             "replayed from %s[1]@2", dlq, orders, dlq);
    assert_non_null(strstr(c.out, want));
    snprintf(want, sizeof(want), "skip     %s[1]@2: x-replay-count 3 reached --max-replays 3",
             dlq);
    assert_non_null(strstr(c.out, want));
    snprintf(want, sizeof(want), "replay   %s[0]@2 -> %s [1]  key y  x-replay-count 2", dlq,
             orders);
    assert_non_null(strstr(c.out, want));
    snprintf(want, sizeof(want), "replay   %s[0]@0 -> %s [0]  key x  x-replay-count 1", dlq,
             orders);
    assert_non_null(strstr(c.out, want));
    assert_non_null(strstr(c.out, "would send 2, skipped 1 (x-replay-count >= 3), "
                                  "unroutable 0, duplicates 3"));
    bt_captured_free(&c);

    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq), 30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "sent 2, skipped 1 (x-replay-count >= 3), unroutable 0, "
                                  "duplicates 3"));
    bt_captured_free(&c);
    recs = read_all(orders, 3, &n);
    assert_int_equal(n, 2);
    assert_int_equal(key_count(recs, n, "x"), 1);
    assert_int_equal(key_count(recs, n, "y"), 1);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(recs[i].key, "y")) {
            assert_int_equal(recs[i].partition, 1);
            assert_string_equal(hget(&recs[i], "x-replay-count"), "2");
            snprintf(want, sizeof(want), "%s:0:2", dlq);
            assert_string_equal(hget(&recs[i], "x-replayed-from"), want);
        } else {
            assert_string_equal(hget(&recs[i], "x-replay-count"), "1");
        }
    }
    recs_free(recs, n);
}

/* --where with OR: AND binds tighter, parentheses group; a dry run says
 * which records the filters leave out. */
static void test_where_or(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-or"), *orders = bt_unique("dlq-or-orders");
    static const int tenant_b_or_k0[] = {0, 1, 3};
    char want[300];
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    /* k0 OR (tenant b AND json): #0 and #1. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run",
                             "--where", "key=k0 OR header:tenant=b AND error~json"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 2, would send 2"));
    snprintf(want, sizeof(want), "skip     %s[1]@1: filtered out by --where", dlq);
    assert_non_null(strstr(c.out, want)); /* #3: tenant b, but a timeout */
    snprintf(want, sizeof(want), "skip     %s[1]@0: filtered out by --where", dlq);
    assert_non_null(strstr(c.out, want)); /* #2 */
    assert_int_equal(count_occurrences(c.out, "filtered out by --where"), 3);
    bt_captured_free(&c);
    /* (k0 OR tenant b) AND json: #1 only. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run",
                             "--where", "(key=k0 OR header:tenant=b) AND error~json"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 1, would send 1"));
    bt_captured_free(&c);
    /* A value with blanks needs no quotes without AND/OR in it. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--dry-run",
                             "--where", "error=db timeout OR error='invalid json'"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 5, would send 4"));
    bt_captured_free(&c);
    /* A broken expression: 64, one line that says where. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--where",
                             "key=k0 OR"),
                        30000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "expected a condition at the end");
    bt_captured_free(&c);
    c = bt_run_captured(ARGV("dlq", "inspect", "-b", bt_bootstrap(), "-t", dlq, "--where",
                             "key=k0 key=k1"),
                        30000);
    expect_rc(&c, 64);
    expect_one_error_line(&c, "expected AND or OR");
    bt_captured_free(&c);

    /* The real thing: tenant b or key k0. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--where",
                             "header:tenant=b OR key=k0"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 3, sent 3"));
    bt_captured_free(&c);
    recs = read_all(orders, 3, &n);
    check_replayed(recs, n, dlq, orders, tenant_b_or_k0, 3, true, "1");
    recs_free(recs, n);
}

/* With --group, a record skipped by the filters counts as handled: a later
 * run with the same group and other filters does not see it again. A record
 * that cannot be routed holds its partition: nothing after it is sent, and
 * the next run starts with it, so nothing goes out twice. */
static void test_group_filters_and_holds(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-hold"), *orders = bt_unique("dlq-hold-orders");
    const char *other = bt_unique("dlq-hold-other"), *group = bt_unique("dlq-hold-g");
    char want[300];
    bt_captured_t c;
    rec_t *recs;
    size_t n;

    make_dlq(dlq, orders);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group, "--where", "header:tenant=a"),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "matched 3, sent 2")); /* #0, #2; #4 at the limit */
    bt_captured_free(&c);
    expect_committed(group, dlq, (int64_t[]){2, 3}, 2);
    /* Tenant b's records were looked at: this group is done with them. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "scanned 0"));
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 2);

    /* Three more in partition 0: routable, without an origin, routable. */
    bt_create_topic(bt_bootstrap(), other, 1);
    dead_letter(dlq, 0, "m0", orders, "0", "200", NULL, "2024-05-03T10:00:00Z", "e");
    dead_letter(dlq, 0, "m1", NULL, "0", "201", NULL, "2024-05-03T10:00:00Z", "e");
    dead_letter(dlq, 0, "m2", orders, "0", "202", NULL, "2024-05-03T10:00:00Z", "e");
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 1);
    assert_non_null(strstr(c.out, "sent 1"));
    assert_non_null(strstr(c.out, "unroutable 1"));
    assert_non_null(strstr(c.out, "held back 1"));
    bt_captured_free(&c);
    expect_committed(group, dlq, (int64_t[]){3, 3}, 2); /* at m1 */
    /* A dry run says why m2 waits. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group, "--dry-run"),
                        30000);
    snprintf(want, sizeof(want), "hold     %s[0]@4: held back behind %s[0]@3", dlq, dlq);
    if (!strstr(c.out, want))
        fail_msg("no \"%s\" in: %s", want, c.out);
    bt_captured_free(&c);
    /* The operator routes the rest elsewhere: m1 and m2 go, m0 does not go
     * again. */
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group, "--to", other),
                        30000);
    expect_rc(&c, 0);
    assert_non_null(strstr(c.out, "scanned 2, matched 2, sent 2"));
    bt_captured_free(&c);
    expect_committed(group, dlq, (int64_t[]){5, 3}, 2);
    recs = read_all(orders, 3, &n);
    assert_int_equal(n, 3);
    assert_int_equal(key_count(recs, n, "m0"), 1);
    recs_free(recs, n);
    recs = read_all(other, 1, &n);
    assert_int_equal(n, 2);
    assert_int_equal(key_count(recs, n, "m1"), 1);
    assert_int_equal(key_count(recs, n, "m2"), 1);
    recs_free(recs, n);
}

typedef struct count_goal {
    const char *topic;
    int partitions;
    int64_t want;
} count_goal_t;

static bool topic_has(void *arg)
{
    const count_goal_t *g = arg;
    return bt_total_watermark(bt_bootstrap(), g->topic, g->partitions) >= g->want;
}

/* A run stopped by SIGTERM commits what was delivered: the next run with
 * the same group sends the rest, and no record goes out twice. */
static void test_group_resumes_after_a_stop(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-stop"), *target = bt_unique("dlq-stop-target");
    const char *group = bt_unique("dlq-stop-g"), *dir = bt_tmpdir();
    char out_path[300], err_path[300];
    count_goal_t some = {target, 2, 20};
    rd_kafka_t *rk;
    bt_captured_t c;
    rec_t *recs;
    size_t n;
    pid_t pid;
    int rc;

    bt_create_topic(bt_bootstrap(), dlq, 1);
    bt_create_topic(bt_bootstrap(), target, 2);
    rk = producer_open();
    for (int i = 0; i < 100; i++) {
        char key[16];
        hdr_t h[2] = {{"x-original-topic", target, -1}, {"x-error-message", "e", -1}};
        snprintf(key, sizeof(key), "k%d", i);
        produce(rk, dlq, 0, key, key, strlen(key), h, 2);
    }
    producer_close(rk);
    snprintf(out_path, sizeof(out_path), "%s/out", dir);
    snprintf(err_path, sizeof(err_path), "%s/err", dir);
    pid = bt_spawn_ballast_io(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq,
                                   "--group", group, "--rate", "40/s"),
                              out_path, err_path);
    assert_true(bt_wait_for(topic_has, &some, 30000));
    bt_term(pid);
    rc = bt_wait(pid, 30000);
    {
        char *err = bt_read_file(err_path);
        if (rc != 1 || !err || !strstr(err, "interrupted"))
            fail_msg("the stopped run exited %d: %s", rc, err ? err : "");
        free(err);
    }
    /* Everything delivered is committed, and nothing more. */
    {
        int64_t committed[1], delivered = bt_total_watermark(bt_bootstrap(), target, 2);
        bt_committed(bt_bootstrap(), group, dlq, 1, committed);
        assert_int_equal(committed[0], delivered);
        assert_true(delivered < 100);
    }
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        60000);
    expect_rc(&c, 0);
    bt_captured_free(&c);
    recs = read_all(target, 2, &n);
    assert_int_equal(n, 100);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        if (key_count(recs, n, key) != 1)
            fail_msg("%s was sent %zu times", key, key_count(recs, n, key));
    }
    recs_free(recs, n);
    expect_committed(group, dlq, (int64_t[]){100}, 1);
}

/* --group must name a group nothing consumes with: its offsets are not the
 * replay's to move. */
static void test_group_in_use_is_refused(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *dlq = bt_unique("dlq-inuse"), *orders = bt_unique("dlq-inuse-orders");
    const char *group = bt_unique("dlq-inuse-g");
    bt_captured_t c;
    rd_kafka_t *rk;

    make_dlq(dlq, orders);
    rk = bt_member_start(group, dlq, "classic", "dlq-test-member", 0);
    c = bt_run_captured(ARGV("dlq", "replay", "-b", bt_bootstrap(), "--from", dlq, "--group",
                             group),
                        30000);
    expect_rc(&c, 78);
    expect_one_error_line(&c, "member");
    bt_captured_free(&c);
    assert_int_equal(bt_total_watermark(bt_bootstrap(), orders, 3), 0);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void test_every_option_is_documented(void **state)
{
    (void)state;
    bt_assert_options_documented(ARGV("dlq", "--help"), "docs/operations.md");
    bt_assert_options_documented(ARGV("dlq", "inspect", "--help"), "docs/operations.md");
    bt_assert_options_documented(ARGV("dlq", "replay", "--help"), "docs/operations.md");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_usage_and_exit_codes),
        cmocka_unit_test(test_missing_topic_exits_78),
        cmocka_unit_test(test_inspect_json_decodes_headers_and_counts_errors),
        cmocka_unit_test(test_dry_run_writes_nothing),
        cmocka_unit_test(test_replay_where_header_sends_only_matching),
        cmocka_unit_test(test_replay_skips_records_at_max_replays),
        cmocka_unit_test(test_replay_to_overrides_destination),
        cmocka_unit_test(test_unroutable_record_exits_1),
        cmocka_unit_test(test_rate_paces_replay),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_group_continues_where_it_stopped),
        cmocka_unit_test(test_each_original_replayed_once),
        cmocka_unit_test(test_where_or),
        cmocka_unit_test(test_group_filters_and_holds),
        cmocka_unit_test(test_group_resumes_after_a_stop),
        cmocka_unit_test(test_group_in_use_is_refused),
        cmocka_unit_test(test_every_option_is_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
