/*
 * test_sdk_examples.c - the handler SDKs' examples (examples/node, examples/python) run as a
 * user runs them: `ballast run examples/<lang>/<name>.conf` from the repository root, against
 * the real broker and PostgreSQL, with only the topics, group and table made unique (-X and
 * the environment). For each language:
 *   payments: 40 payments, 10 of them delivered twice, and one value that is not JSON. The
 *     table must hold each idempotency key exactly once with its amount, the duplicates must
 *     have reached the handler (and changed nothing), and the bad value must be in the DLQ,
 *     failed at once.
 *   orders: 30 orders, 3 of them for a SKU the handler cannot process (it throws every
 *     time). Each good order must be emitted exactly once; each bad one must be in the DLQ
 *     exactly once, after retry.max.attempts attempts, with the handler's error text.
 * In both, every input offset is committed: nothing is lost.
 *
 * The example configs set handler.exec.max.inflight = 16, so ballast offers the children
 * protocol version 2 and each works on several messages at once.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
#define PARTS 2
#define PAYMENTS 40
#define DUPLICATES 10
#define ORDERS 30
#define ORDERS_ATTEMPTS 3 /* retry.max.attempts in examples/<lang>/orders.conf */

/* A record read back, with the headers the checks need. */
typedef struct rec {
    char *key, *value;
    char error[512];
    long retry_count;
} rec_t;

static void produce(const char *bs, const char *topic, const char *const *keys,
                    const char *const *values, size_t n)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(kc, "bootstrap.servers", bs, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                           RD_KAFKA_V_KEY(keys[i], strlen(keys[i])),
                                           RD_KAFKA_V_VALUE((void *)values[i], strlen(values[i])),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

static char *dup_bytes(const void *p, size_t len)
{
    char *s = malloc(len + 1);

    assert_non_null(s);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Every record of partition 0 of @p topic (the sinks have one partition). */
static rec_t *read_all(const char *bs, const char *topic, size_t *countp)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    int64_t want = bt_total_watermark(bs, topic, 1), deadline = bt_now_ms() + 60000;
    rec_t *recs = calloc((size_t)want + 1, sizeof(*recs));
    size_t got = 0;
    char errstr[256];
    rd_kafka_t *rk;

    assert_non_null(recs);
    rd_kafka_conf_set(kc, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(kc, "group.id", bt_unique("sdk-reader"), NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    while ((int64_t)got < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h = NULL;
        char count[24];

        if (bt_now_ms() > deadline)
            fail_msg("%s: read %zu of %lld records", topic, got, (long long)want);
        if (!m)
            continue;
        assert_int_equal(m->err, 0);
        rd_kafka_message_headers(m, &h);
        recs[got].key = m->key ? dup_bytes(m->key, m->key_len) : NULL;
        recs[got].value = dup_bytes(m->payload ? m->payload : "", m->len);
        bt_header_text(h, "x-error-message", recs[got].error, sizeof(recs[got].error));
        bt_header_text(h, "x-retry-count", count, sizeof(count));
        recs[got].retry_count = count[0] ? strtol(count, NULL, 10) : -1;
        got++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *countp = got;
    return recs;
}

static void recs_free(rec_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(recs[i].key);
        free(recs[i].value);
    }
    free(recs);
}

/* How often @p needle occurs in @p hay. */
static size_t occurrences(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Hands BALLAST_TEST_PG (a libpq "key=value ..." string) to the payments handlers as the
 * libpq environment variables, which both psycopg and node-postgres read. */
static void pg_environment(void)
{
    static const char *const vars[][2] = {{"host", "PGHOST"}, {"port", "PGPORT"},
                                          {"dbname", "PGDATABASE"}, {"user", "PGUSER"},
                                          {"password", "PGPASSWORD"}};
    char *dsn = strdup(bt_pg()), *kv = dsn;

    assert_non_null(dsn);
    unsetenv("PG_DSN");
    while (*kv) {
        char *end = kv + strcspn(kv, " "), *eq;
        bool last = !*end;
        *end = '\0';
        if (*kv) {
            if (!(eq = strchr(kv, '=')))
                fail_msg("BALLAST_TEST_PG: '%s' is not key=value", kv);
            *eq = '\0';
            for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                if (!strcmp(kv, vars[i][0]))
                    setenv(vars[i][1], eq + 1, 1);
        }
        kv = last ? end : end + 1;
    }
    free(dsn);
}

/* The environment the example children run in: no BALLAST_EXEC_PROTOCOL of the caller's
 * (ballast offers version 2 itself); python3 and node are the interpreters the tests were configured with (whose packages
 * scripts/install-deps installed); the database for the payments handlers. */
static void child_environment(void)
{
    char path[4096];

    unsetenv("BALLAST_EXEC_PROTOCOL");
    snprintf(path, sizeof(path), "%s:%s:%s", BALLAST_PYTHON_DIR, BALLAST_NODE_DIR,
             getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    pg_environment();
    /* The configs name their programs relative to the repository root. */
    assert_int_equal(chdir(BALLAST_SRC_DIR), 0);
}

/* Runs `ballast run CONF -X...` until every offset of @p in is committed, then stops it
 * with SIGTERM; @returns its stderr. */
static char *run_example(const char *conf, const char *in, const char *group,
                         const char *const *overrides)
{
    const char *bs = bt_bootstrap();
    char path[1024], err_path[1024], servers[512], topics[256], grp[256];
    const char *argv[24] = {"ballast", "run", path, "-X", servers, "-X", topics, "-X", grp};
    size_t argc = 9;
    pid_t pid;
    bool done;
    char *err;

    snprintf(path, sizeof(path), "examples/%s", conf);
    snprintf(servers, sizeof(servers), "kafka.bootstrap.servers=%s", bs);
    snprintf(topics, sizeof(topics), "topics=%s", in);
    snprintf(grp, sizeof(grp), "kafka.group.id=%s", group);
    for (size_t i = 0; overrides[i]; i++) {
        argv[argc++] = "-X";
        argv[argc++] = overrides[i];
    }
    argv[argc] = NULL;
    snprintf(err_path, sizeof(err_path), "%s/%s.err", bt_tmpdir(), group);
    pid = bt_spawn_ballast(argv, err_path);
    done = bt_wait_committed_to_end(bs, group, in, PARTS, 180000);
    bt_term(pid);
    err = bt_read_file(err_path);
    if (!done)
        fail_msg("%s: the committed offsets did not reach the end; stderr:\n%s", conf,
                 err ? err : "");
    if (bt_wait(pid, 60000) != 0)
        fail_msg("%s: ballast did not stop cleanly; stderr:\n%s", conf, err ? err : "");
    return err;
}

static void run_payments(const char *lang)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("sdk-pay"), *dlq = bt_unique("sdk-pay-dlq");
    const char *group = bt_unique("sdk-pay-g");
    static char keys[PAYMENTS + DUPLICATES + 1][32], values[PAYMENTS + DUPLICATES + 1][160];
    const char *kp[PAYMENTS + DUPLICATES + 1], *vp[PAYMENTS + DUPLICATES + 1];
    char table[64], conf[64], dlq_kv[256], sql[256];
    long expected_sum = 0;
    size_t n = 0, dead_n;
    rec_t *dead;
    char *err;

    BT_REQUIRE_ENV();
    child_environment();
    snprintf(table, sizeof(table), "sdk_payments_%s_%ld_%lld", lang, (long)getpid(),
             (long long)bt_now_ms());
    setenv("PAYMENTS_TABLE", table, 1);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, dlq, 1);
    for (int i = 0; i < PAYMENTS + DUPLICATES; i++, n++) {
        int p = i < PAYMENTS ? i : i - PAYMENTS; /* the duplicates repeat 0..9 */
        snprintf(keys[n], sizeof(keys[n]), "cust-%03d", p % 7);
        snprintf(values[n], sizeof(values[n]),
                 "{\"idempotencyKey\":\"pay-%03d\",\"customerId\":\"cust-%03d\","
                 "\"amount\":%d}", p, p % 7, 100 + p);
        if (i < PAYMENTS)
            expected_sum += 100 + p;
    }
    snprintf(keys[n], sizeof(keys[n]), "cust-bad");
    snprintf(values[n], sizeof(values[n]), "this is not a payment");
    n++;
    for (size_t i = 0; i < n; i++) {
        kp[i] = keys[i];
        vp[i] = values[i];
    }
    produce(bs, in, kp, vp, n);

    snprintf(conf, sizeof(conf), "%s/payments.conf", lang);
    snprintf(dlq_kv, sizeof(dlq_kv), "dlq.topic=%s", dlq);
    err = run_example(conf, in, group, (const char *const[]){dlq_kv, NULL});

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(bt_pg_long(sql), PAYMENTS);
    snprintf(sql, sizeof(sql), "SELECT count(DISTINCT idempotency_key) FROM %s", table);
    assert_int_equal(bt_pg_long(sql), PAYMENTS);
    snprintf(sql, sizeof(sql), "SELECT sum(amount) FROM %s", table);
    assert_int_equal(bt_pg_long(sql), expected_sum);
    /* Each duplicate reached the handler and changed nothing. */
    if (occurrences(err, "seen before: nothing to do") < DUPLICATES)
        fail_msg("%s: the duplicates did not all reach the handler; stderr:\n%s", conf, err);

    dead = read_all(bs, dlq, &dead_n);
    assert_int_equal(dead_n, 1);
    assert_string_equal(dead[0].value, "this is not a payment");
    assert_string_equal(dead[0].key, "cust-bad");
    if (!strstr(dead[0].error, "payment is not JSON"))
        fail_msg("%s: x-error-message '%s' does not say why", conf, dead[0].error);
    assert_int_equal(dead[0].retry_count, 0); /* PermanentError: no retry */
    recs_free(dead, dead_n);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    bt_pg_exec(sql);
    free(err);
}

static bool is_poison(int i)
{
    return i % 10 == 3;
}

/* The order number in a record's value ("orderId": "o-NN", with or without the space),
 * or -1. */
static int order_number(const char *value)
{
    const char *p = strstr(value, "\"orderId\"");
    return p && (p = strstr(p, "\"o-")) ? (int)strtol(p + 3, NULL, 10) : -1;
}

static void run_orders(const char *lang)
{
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("sdk-ord"), *out = bt_unique("sdk-ord-out");
    const char *dlq = bt_unique("sdk-ord-dlq"), *group = bt_unique("sdk-ord-g");
    static char keys[ORDERS][32], values[ORDERS][128];
    const char *kp[ORDERS], *vp[ORDERS];
    char conf[64], out_kv[256], dlq_kv[256];
    int emitted[ORDERS] = {0}, dead_count[ORDERS] = {0};
    size_t out_n, dead_n;
    rec_t *recs;

    BT_REQUIRE_ENV();
    child_environment();
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, out, 1);
    bt_create_topic(bs, dlq, 1);
    for (int i = 0; i < ORDERS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "cust-%d", i % 5);
        snprintf(values[i], sizeof(values[i]), "{\"orderId\":\"o-%02d\",\"sku\":\"%s\",\"qty\":%d}",
                 i, is_poison(i) ? "SKU-404" : i % 2 ? "SKU-1" : "SKU-2", 1 + i % 4);
        kp[i] = keys[i];
        vp[i] = values[i];
    }
    produce(bs, in, kp, vp, ORDERS);

    snprintf(conf, sizeof(conf), "%s/orders.conf", lang);
    snprintf(out_kv, sizeof(out_kv), "output.topic=%s", out);
    snprintf(dlq_kv, sizeof(dlq_kv), "dlq.topic=%s", dlq);
    free(run_example(conf, in, group, (const char *const[]){out_kv, dlq_kv, NULL}));

    recs = read_all(bs, out, &out_n);
    for (size_t i = 0; i < out_n; i++) {
        int o = order_number(recs[i].value);
        if (o < 0 || o >= ORDERS || is_poison(o))
            fail_msg("%s: emitted a record no good order explains: %s", conf, recs[i].value);
        if (!strstr(recs[i].value, "\"total\""))
            fail_msg("%s: emitted an order without its total: %s", conf, recs[i].value);
        assert_string_equal(recs[i].key, keys[o]);
        emitted[o]++;
    }
    recs_free(recs, out_n);

    recs = read_all(bs, dlq, &dead_n);
    for (size_t i = 0; i < dead_n; i++) {
        int o = order_number(recs[i].value);
        char want[96];
        if (o < 0 || o >= ORDERS || !is_poison(o))
            fail_msg("%s: dead-lettered a good order: %s", conf, recs[i].value);
        assert_string_equal(recs[i].value, values[o]); /* unchanged */
        snprintf(want, sizeof(want), "no such sku: SKU-404 (attempt %d)", ORDERS_ATTEMPTS);
        if (!strstr(recs[i].error, want))
            fail_msg("%s: x-error-message '%s' lacks '%s'", conf, recs[i].error, want);
        assert_int_equal(recs[i].retry_count, ORDERS_ATTEMPTS - 1);
        dead_count[o]++;
    }
    recs_free(recs, dead_n);
    for (int i = 0; i < ORDERS; i++)
        if ((is_poison(i) ? dead_count[i] : emitted[i]) != 1 ||
            (is_poison(i) ? emitted[i] : dead_count[i]) != 0)
            fail_msg("%s: order %d: emitted %d time(s), dead-lettered %d time(s)", conf, i,
                     emitted[i], dead_count[i]);
}

static void test_node_payments(void **state)
{
    (void)state;
    run_payments("node");
}

static void test_python_payments(void **state)
{
    (void)state;
    run_payments("python");
}

static void test_node_orders(void **state)
{
    (void)state;
    run_orders("node");
}

static void test_python_orders(void **state)
{
    (void)state;
    run_orders("python");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_payments),
        cmocka_unit_test(test_python_payments),
        cmocka_unit_test(test_node_orders),
        cmocka_unit_test(test_python_orders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
