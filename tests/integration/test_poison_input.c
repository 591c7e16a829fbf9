/*
 * test_poison_input.c - poison input into a PostgreSQL pipeline:
 * `INSERT INTO t (v) VALUES (:value::jsonb)` into a
 * `v jsonb NOT NULL` column, with a dead-letter topic, against the real
 * broker and PostgreSQL. Interleaved with good messages come invalid JSON,
 * bytes that are not UTF-8, a NUL byte, an empty value, an absent value
 * (tombstone), an absent key, and values near the broker's size limit.
 *
 * Each poison message must reach the DLQ exactly once, byte for byte, with
 * an x-error-message that states its reason; the table must hold exactly
 * the good rows; and the pipeline must go on to the end (committed offsets
 * == high watermarks). Run with processing = message, processing = batch,
 * and processing = batch with semantics = exactly-once (offsets in the
 * database, savepoints per message).
 */
#include "support.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PARTS 2
#ifndef WAIT_MS
#define WAIT_MS 120000
#endif
/* The broker's default message.max.bytes is 1048588, and so is the limit
 * of ballast's producer; a DLQ record adds some 400 bytes of headers.
 * 900,000 bytes fits both ways. A value within 300 bytes of the limit
 * (HUGE) fits as input, but its dead-letter copy does not: the pipeline
 * must stop without committing past it (test_dlq_copy_too_large_*). */
#ifndef BIG
#define BIG 900000
#endif
#define BROKER_MAX 1048588
#define HUGE (BROKER_MAX - 300)

/* One input message. */
typedef struct spec {
    const char *name;
    const void *key;
    size_t klen;
    bool has_key;
    const void *value;
    size_t vlen;
    bool has_value;
    /* NULL for a good message; else words one of which the DLQ record's
     * x-error-message must contain (case-insensitive, '|'-separated). */
    const char *reason;
    /* filled in by the delivery report */
    int32_t partition;
    int64_t offset;
    int delivered;
    /* DLQ copies seen */
    int dead;
} spec_t;

typedef struct input {
    spec_t *specs;
    size_t count, cap;
    size_t good, poison;
    char *big_good, *big_bad; /* owned */
    char goods[64][48];       /* texts of the ordinary good values */
    char keys[64][16];
    size_t ngoods;
} input_t;

static spec_t *add(input_t *in, const char *name, const void *key, ssize_t klen,
                   const void *value, ssize_t vlen, const char *reason)
{
    spec_t *s;

    if (in->count == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 64;
        in->specs = realloc(in->specs, in->cap * sizeof(*in->specs));
        assert_non_null(in->specs);
    }
    s = &in->specs[in->count++];
    memset(s, 0, sizeof(*s));
    s->name = name;
    s->key = key;
    s->has_key = klen >= 0;
    s->klen = klen >= 0 ? (size_t)klen : 0;
    s->value = value;
    s->has_value = vlen >= 0;
    s->vlen = vlen >= 0 ? (size_t)vlen : 0;
    s->reason = reason;
    s->partition = (int32_t)(in->count % PARTS);
    s->offset = -1;
    if (reason)
        in->poison++;
    else
        in->good++;
    return s;
}

/* A few ordinary good messages: {"n": <i>} with key "g<i>". */
static void add_goods(input_t *in, int count)
{
    for (int i = 0; i < count; i++) {
        size_t n = in->ngoods++;
        assert_true(n < 64);
        snprintf(in->goods[n], sizeof(in->goods[n]), "{\"n\": %zu, \"ok\": true}", n);
        snprintf(in->keys[n], sizeof(in->keys[n]), "g%zu", n);
        add(in, "good", in->keys[n], (ssize_t)strlen(in->keys[n]), in->goods[n],
            (ssize_t)strlen(in->goods[n]), NULL);
    }
}

#define S(lit) lit, (ssize_t)(sizeof(lit) - 1)

static void build_input(input_t *in)
{
    static const char bad_utf8[] = "{\"n\": \"\xff\xfe\xc3\x28\"}";
    static const char nul_inside[] = "{\"n\": 1}\0{\"m\": 2}";
    static const char bad_key[] = "\xff\xfe\x80key";
    static const char prefix[] = "{\"big\": true, \"pad\": \"";
    size_t pad = BIG - 64, plen = sizeof(prefix) - 1;

    memset(in, 0, sizeof(*in));
    /* ~900 KB of valid JSON, and the same with its closing brace cut. */
    in->big_good = malloc(BIG + 1);
    in->big_bad = malloc(BIG + 1);
    assert_non_null(in->big_good);
    assert_non_null(in->big_bad);
    memcpy(in->big_good, prefix, plen);
    memset(in->big_good + plen, 'x', pad);
    strcpy(in->big_good + plen + pad, "\"}");
    memcpy(in->big_bad, in->big_good, strlen(in->big_good) + 1);
    in->big_bad[strlen(in->big_bad) - 1] = '\0'; /* no closing brace */

    add_goods(in, 3);
    add(in, "invalid JSON", S("bad-json"), S("{\"n\": 1,"), "json");
    add_goods(in, 3);
    add(in, "not UTF-8", S("bad-utf8"), bad_utf8, (ssize_t)strlen(bad_utf8), "UTF-8");
    add_goods(in, 3);
    add(in, "NUL byte", S("nul"), nul_inside, (ssize_t)(sizeof(nul_inside) - 1), "UTF-8");
    add_goods(in, 3);
    add(in, "empty value", S("empty"), "", 0, "json");
    add_goods(in, 3);
    add(in, "absent value (tombstone)", S("tombstone"), NULL, -1, "null");
    add_goods(in, 3);
    add(in, "absent key, invalid JSON", NULL, -1, S("not json at all"), "json");
    add_goods(in, 2);
    add(in, "not JSON (a bare word)", S("word"), S("hello"), "json");
    add_goods(in, 2);
    add(in, "~900 KB, invalid JSON", S("big-bad"), in->big_bad,
        (ssize_t)strlen(in->big_bad), "json");
    add_goods(in, 3);
    /* Good ones that look odd. */
    add(in, "absent key", NULL, -1, S("{\"nokey\": 1}"), NULL);
    add(in, "empty key", "", 0, S("{\"emptykey\": 1}"), NULL);
    add(in, "key not UTF-8", bad_key, (ssize_t)strlen(bad_key), S("{\"badkey\": 1}"), NULL);
    add(in, "JSON null literal", S("json-null"), S("null"), NULL);
    add(in, "~900 KB valid JSON", S("big-good"), in->big_good,
        (ssize_t)strlen(in->big_good), NULL);
    add_goods(in, 3);
}

static void free_input(input_t *in)
{
    free(in->specs);
    free(in->big_good);
    free(in->big_bad);
}

/* ---- Kafka -------------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    spec_t *s = m->_private;
    (void)rk;
    (void)opaque;
    if (m->err)
        fail_msg("producing %s: %s", s->name, rd_kafka_err2str(m->err));
    s->partition = m->partition;
    s->offset = m->offset;
    s->delivered++;
}

static void produce_input(const char *bs, const char *topic, input_t *in)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "message.max.bytes", "1048588", NULL, 0); /* HUGE fits */
    rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    for (size_t i = 0; i < in->count; i++) {
        spec_t *s = &in->specs[i];
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(s->partition),
            RD_KAFKA_V_KEY((s->has_key ? s->key : NULL), s->klen),
            RD_KAFKA_V_VALUE((s->has_value ? (void *)s->value : NULL), s->vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(s),
            RD_KAFKA_V_END);
        if (err)
            fail_msg("producev(%s): %s", s->name, rd_kafka_err2str(err));
        rd_kafka_poll(rk, 0);
    }
    assert_int_equal(rd_kafka_flush(rk, 60000), 0);
    rd_kafka_destroy(rk);
    for (size_t i = 0; i < in->count; i++)
        assert_int_equal(in->specs[i].delivered, 1);
}

/* A DLQ record, as read back. */
typedef struct dead {
    void *key, *value; /* NULL when absent */
    size_t klen, vlen;
    char error[600];
    long part;
    long long off;
} dead_t;

static char *copy_bytes(const void *p, size_t len)
{
    char *c;
    if (!p)
        return NULL;
    c = malloc(len + 1);
    assert_non_null(c);
    memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

/* Every record of the (one-partition) DLQ topic, read_committed. */
static dead_t *read_dlq(const char *bs, const char *topic, size_t *countp)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    dead_t *out = NULL;
    size_t n = 0, cap = 0;
    int64_t deadline = bt_now_ms() + 60000;
    bool ended = false;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "bt-poison-dlq-reader", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, NULL, 0);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(list, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, list), 0);
    rd_kafka_topic_partition_list_destroy(list);
    while (!ended && bt_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *h = NULL;
        char num[40];
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            ended = true;
        else if (m->err)
            fail_msg("reading %s: %s", topic, rd_kafka_message_errstr(m));
        else {
            if (n == cap) {
                cap = cap ? 2 * cap : 32;
                out = realloc(out, cap * sizeof(*out));
                assert_non_null(out);
            }
            memset(&out[n], 0, sizeof(out[n]));
            out[n].key = copy_bytes(m->key, m->key_len);
            out[n].klen = m->key_len;
            out[n].value = copy_bytes(m->payload, m->len);
            out[n].vlen = m->len;
            rd_kafka_message_headers(m, &h);
            bt_header_text(h, "x-error-message", out[n].error, sizeof(out[n].error));
            bt_header_text(h, "x-original-partition", num, sizeof(num));
            out[n].part = num[0] ? strtol(num, NULL, 10) : -1;
            bt_header_text(h, "x-original-offset", num, sizeof(num));
            out[n].off = num[0] ? strtoll(num, NULL, 10) : -1;
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!ended)
        fail_msg("%s: did not reach the end", topic);
    *countp = n;
    return out;
}

static void free_dead(dead_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].key);
        free(d[i].value);
    }
    free(d);
}

/* ---- PostgreSQL --------------------------------------------------------- */

static PGconn *pg_connect(void)
{
    PGconn *db = PQconnectdb(bt_pg());
    if (PQstatus(db) != CONNECTION_OK)
        fail_msg("postgres: %s", PQerrorMessage(db));
    return db;
}

static void pg_exec(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("postgres: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static long pg_long(PGconn *db, const char *sql, const char *param, int plen)
{
    const char *params[1] = {param};
    int lens[1] = {plen}, fmts[1] = {0};
    PGresult *r = PQexecParams(db, sql, param ? 1 : 0, NULL, params, lens, fmts, 0);
    long v;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("postgres: %s: %s", sql, PQresultErrorMessage(r));
    v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* ---- the test ------------------------------------------------------------ */

static bool reason_matches(const char *error, const char *reasons)
{
    char words[128], *save = NULL;

    snprintf(words, sizeof(words), "%s", reasons);
    for (char *w = strtok_r(words, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (strcasestr(error, w))
            return true;
    return false;
}

static bool same_bytes(const void *a, size_t alen, bool a_present, const void *b,
                       size_t blen)
{
    if (!a_present || !b)
        return !a_present && !b;
    return alen == blen && (alen == 0 || !memcmp(a, b, alen));
}

typedef struct done_arg {
    const char *bs, *group, *topic;
    bt_runner_t *run;
    uint64_t dead;
} done_arg_t;

/* Every poison message dead-lettered and every offset committed. */
static bool pipeline_done(void *arg)
{
    done_arg_t *a = arg;
    int64_t hwm[PARTS], committed[PARTS];
    ballast_stats_t st;

    ballast_consumer_stats(bt_runner_consumer(a->run), &st, sizeof(st));
    if (st.dead_lettered < a->dead)
        return false;
    bt_high_watermarks(a->bs, a->topic, PARTS, hwm);
    bt_committed(a->bs, a->group, a->topic, PARTS, committed);
    for (int p = 0; p < PARTS; p++)
        if (committed[p] != hwm[p])
            return false;
    return true;
}

/* The PostgreSQL pipeline under test: jsonb rows into @p table. */
static void pipeline_conf(ballast_conf_t *conf, const char *topic, const char *group,
                          const char *dlq, const char *table, const char *processing,
                          const char *semantics)
{
    char sql[256];

    bt_set(conf, "kafka.bootstrap.servers", bt_bootstrap());
    bt_set(conf, "kafka.group.id", group);
    bt_set(conf, "kafka.session.timeout.ms", "6000");
    bt_set(conf, "kafka.auto.commit.interval.ms", "200");
    bt_set(conf, "topics", topic);
    bt_set(conf, "handler", "postgres");
    bt_set(conf, "handler.postgres.dsn", bt_pg());
    snprintf(sql, sizeof(sql), "INSERT INTO %s (v) VALUES (:value::jsonb)", table);
    bt_set(conf, "handler.postgres.sql", sql);
    bt_set(conf, "dlq.topic", dlq);
    bt_set(conf, "processing", processing);
    bt_set(conf, "batch.max.messages", "8");
    bt_set(conf, "batch.max.ms", "50");
    bt_set(conf, "semantics", semantics);
    bt_set(conf, "retry.backoff.initial.ms", "10");
    bt_set(conf, "retry.backoff.max.ms", "100");
    bt_set(conf, "log.level", "error");
}

static void run_poison(const char *processing, const char *semantics)
{
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("poisonin"), *dlq = bt_unique("poisonin-dlq");
    const char *group = bt_unique("poisonin-g");
    input_t in;
    PGconn *db = pg_connect();
    char table[64], sql[512];
    ballast_conf_t *conf = ballast_conf_new();
    bt_runner_t *run;
    ballast_stats_t st;
    done_arg_t done;
    dead_t *dead;
    size_t ndead;
    int64_t hwm[PARTS], committed[PARTS];
    ballast_error_t *err;

    build_input(&in);
    snprintf(table, sizeof(table), "poison_%d_%lld", (int)getpid(),
             (long long)(bt_now_ms() % 100000000));
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (v jsonb NOT NULL)", table);
    pg_exec(db, sql);
    bt_create_topic(bs, topic, PARTS);
    bt_create_topic(bs, dlq, 1);
    produce_input(bs, topic, &in);

    pipeline_conf(conf, topic, group, dlq, table, processing, semantics);
    run = bt_runner_start(conf);
    done = (done_arg_t){bs, group, topic, run, in.poison};
    if (!bt_wait_for(pipeline_done, &done, WAIT_MS)) {
        ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
        err = bt_runner_stop(run);
        fail_msg("%s/%s: not done: %llu of %zu dead-lettered, %llu ok; the run "
                 "ended with: %s", processing, semantics,
                 (unsigned long long)st.dead_lettered, in.poison,
                 (unsigned long long)st.processed_ok,
                 err ? ballast_error_message(err) : "no error");
    }
    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    err = bt_runner_stop(run);
    if (err)
        fail_msg("the run ended with an error: %s", ballast_error_message(err));

    /* The pipeline went on to the end. */
    bt_high_watermarks(bs, topic, PARTS, hwm);
    bt_committed(bs, group, topic, PARTS, committed);
    for (int p = 0; p < PARTS; p++)
        assert_int_equal(committed[p], hwm[p]);
    assert_int_equal(hwm[0] + hwm[1], (int64_t)in.count);
    assert_int_equal(st.dead_lettered, in.poison);
    assert_int_equal(st.failed, in.poison);

    /* Each poison message once in the DLQ, byte for byte, with its reason. */
    dead = read_dlq(bs, dlq, &ndead);
    for (size_t i = 0; i < ndead; i++) {
        spec_t *s = NULL;
        for (size_t j = 0; j < in.count && !s; j++)
            if (in.specs[j].partition == dead[i].part && in.specs[j].offset == dead[i].off)
                s = &in.specs[j];
        if (!s)
            fail_msg("DLQ record %zu names no input message ([%ld] %lld)", i,
                     dead[i].part, dead[i].off);
        if (!s->reason)
            fail_msg("a good message was dead-lettered: %s: %s", s->name, dead[i].error);
        s->dead++;
        print_message("    %-26s -> %.160s\n", s->name, dead[i].error);
        if (!reason_matches(dead[i].error, s->reason))
            fail_msg("%s: x-error-message does not say why (%s): \"%s\"", s->name,
                     s->reason, dead[i].error);
        if (!same_bytes(s->value, s->vlen, s->has_value, dead[i].value, dead[i].vlen))
            fail_msg("%s: the DLQ record's value differs from the input's (%zu vs %zu "
                     "bytes, %s)", s->name, dead[i].vlen, s->vlen,
                     dead[i].value ? "present" : "null");
        if (!same_bytes(s->key, s->klen, s->has_key, dead[i].key, dead[i].klen))
            fail_msg("%s: the DLQ record's key differs from the input's", s->name);
    }
    for (size_t j = 0; j < in.count; j++)
        if (in.specs[j].reason && in.specs[j].dead != 1)
            fail_msg("%s: %d DLQ record(s), expected exactly 1", in.specs[j].name,
                     in.specs[j].dead);
    assert_int_equal(ndead, in.poison);
    free_dead(dead, ndead);

    /* The table holds exactly the good rows, each once. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(pg_long(db, sql, NULL, 0), (long)in.good);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE v = $1::jsonb", table);
    for (size_t j = 0; j < in.count; j++) {
        spec_t *s = &in.specs[j];
        if (s->reason)
            continue;
        if (pg_long(db, sql, s->value, (int)s->vlen) != 1)
            fail_msg("good message %s is not in the table exactly once", s->name);
    }
    print_message("    %s/%s: %zu good rows, %zu dead letters, committed %lld+%lld\n",
                  processing, semantics, in.good, in.poison, (long long)committed[0],
                  (long long)committed[1]);

    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec(db, sql);
    PQfinish(db);
    ballast_conf_destroy(conf);
    free_input(&in);
}

static void test_poison_input_message_mode(void **state)
{
    (void)state;
    run_poison("message", "at-least-once");
}

static void test_poison_input_batch_mode(void **state)
{
    (void)state;
    run_poison("batch", "at-least-once");
}

static void test_poison_input_batch_exactly_once(void **state)
{
    (void)state;
    run_poison("batch", "exactly-once");
}

/* A poison value so large that its dead-letter copy (the value plus its
 * x-* headers) is over the broker's and the producer's limit, while the
 * value itself was accepted as input. No copy can be acknowledged, so the
 * pipeline must stop with an error naming the DLQ topic and the message,
 * and nothing - Kafka's committed offset, or the database's in exactly-once
 * mode - may pass it. Good messages before it are kept. */
static void run_too_large(const char *processing, const char *semantics)
{
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    const char *bs = bt_bootstrap();
    const char *topic = bt_unique("hugein"), *dlq = bt_unique("hugein-dlq");
    const char *group = bt_unique("hugein-g");
    static const char prefix[] = "{\"huge\": \"";
    char *huge = malloc(HUGE + 1), table[64], sql[512];
    PGconn *db = pg_connect();
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    spec_t *poison;
    input_t in;
    dead_t *dead;
    size_t ndead;
    int64_t committed[PARTS];

    assert_non_null(huge);
    memset(huge, 'x', HUGE);
    memcpy(huge, prefix, sizeof(prefix) - 1); /* never closed: invalid JSON */
    memset(&in, 0, sizeof(in));
    add_goods(&in, 6);
    poison = add(&in, "~1 MB, invalid JSON", S("huge"), huge, HUGE, "json");
    add_goods(&in, 6);
    snprintf(table, sizeof(table), "huge_%d_%lld", (int)getpid(),
             (long long)(bt_now_ms() % 100000000));
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (v jsonb NOT NULL)", table);
    pg_exec(db, sql);
    bt_create_topic(bs, topic, PARTS);
    bt_create_topic(bs, dlq, 1);
    produce_input(bs, topic, &in);
    pipeline_conf(conf, topic, group, dlq, table, processing, semantics);

    err = bt_runner_join(bt_runner_start(conf), WAIT_MS);
    if (!err)
        fail_msg("%s/%s: the run went on past a dead letter that cannot be delivered",
                 processing, semantics);
    print_message("    %s/%s: %s\n", processing, semantics, ballast_error_message(err));
    snprintf(sql, sizeof(sql), "offset %lld", (long long)poison->offset);
    if (!strstr(ballast_error_message(err), dlq) || !strstr(ballast_error_message(err), sql))
        fail_msg("the error names neither the DLQ topic nor %s: %s", sql,
                 ballast_error_message(err));
    ballast_error_destroy(err);

    /* Nothing passed it: not Kafka's commit, not the database's offsets. */
    bt_committed(bs, group, topic, PARTS, committed);
    if (committed[poison->partition] > poison->offset)
        fail_msg("committed %lld, past the undeliverable dead letter at offset %lld",
                 (long long)committed[poison->partition], (long long)poison->offset);
    /* At-least-once commits what finished before it, one message at a time. */
    if (!strcmp(processing, "message"))
        assert_int_equal(committed[poison->partition], poison->offset);
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(next_offset), -1) FROM ballast_offsets WHERE "
             "group_id = '%s' AND topic = '%s' AND partition = %d",
             group, topic, (int)poison->partition);
    if (!strcmp(semantics, "exactly-once") && pg_long(db, sql, NULL, 0) > poison->offset)
        fail_msg("the database's offsets passed the undeliverable dead letter at %lld",
                 (long long)poison->offset);
    dead = read_dlq(bs, dlq, &ndead);
    assert_int_equal(ndead, 0);
    free_dead(dead, ndead);

    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    pg_exec(db, sql);
    PQfinish(db);
    ballast_conf_destroy(conf);
    free(in.specs);
    free(huge);
}

static void test_dlq_copy_too_large_message_mode(void **state)
{
    (void)state;
    run_too_large("message", "at-least-once");
}

static void test_dlq_copy_too_large_batch_exactly_once(void **state)
{
    (void)state;
    run_too_large("batch", "exactly-once");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poison_input_message_mode),
        cmocka_unit_test(test_poison_input_batch_mode),
        cmocka_unit_test(test_poison_input_batch_exactly_once),
        cmocka_unit_test(test_dlq_copy_too_large_message_mode),
        cmocka_unit_test(test_dlq_copy_too_large_batch_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
