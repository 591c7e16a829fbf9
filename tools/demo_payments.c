/*
 * demo_payments.c - at-least-once with idempotency keys.
 *
 * At-least-once delivery means a payment may arrive twice: a producer
 * retried after a lost acknowledgement, or a consumer died after writing
 * but before committing its offset. The article checks for the key with a
 * SELECT and then INSERTs, which races with itself; here one statement does
 * both, atomically, with the key as the primary key:
 *
 *   INSERT ... ON CONFLICT(idempotency_key) DO NOTHING
 *
 * The input holds duplicates on purpose: every 10th payment is sent a
 * second time 25 payments later (same key, so same partition, as a retry
 * would be). The effect must still be each payment exactly once.
 * examples/payments.conf is the same pipeline for `ballast run`.
 */
#include "demo.h"

#include <stdio.h>

#define PAYMENTS 1000
#define CUSTOMERS 50
#define PARTITIONS 3
#define RESEND_EVERY 10 /* every 10th payment is sent twice... */
#define RESEND_AFTER 25 /* ...the second time 25 payments later */

static const char schema[] =
    "CREATE TABLE payments (\n"
    "  idempotency_key TEXT PRIMARY KEY,\n"
    "  customer_id     TEXT NOT NULL,\n"
    "  amount          INTEGER NOT NULL  -- cents\n"
    ");";

static const char sql[] =
    "INSERT INTO payments(idempotency_key, customer_id, amount) "
    "VALUES (json_extract(:value, '$.idempotencyKey'), "
    "json_extract(:value, '$.customerId'), json_extract(:value, '$.amount')) "
    "ON CONFLICT(idempotency_key) DO NOTHING";

static int send_payment(demo_t *d, int i, const int *amount)
{
    char customer[32];

    snprintf(customer, sizeof(customer), "cust-%03d", i % CUSTOMERS);
    return demo_produce(d, "payments", customer, NULL,
                        "{\"idempotencyKey\":\"pay-%06d\","
                        "\"customerId\":\"%s\",\"amount\":%d}",
                        i, customer, amount[i]);
}

int demo_payments(demo_t *d)
{
    static int amount[PAYMENTS];
    uint32_t seed = 20240501;
    int64_t expect_sum = 0;
    uint64_t sent = 0;
    char path[4096];
    sqlite3 *db;
    ballast_conf_t *conf;
    ballast_stats_t st;
    int rc = -1;

    demo_say("invariant: each payment takes effect once, however often it "
             "is delivered");
    if (demo_create_topic(d, "payments", PARTITIONS))
        return -1;
    for (int i = 0; i < PAYMENTS; i++) {
        amount[i] = 100 + (int)(demo_rand(&seed) % 99900); /* $1 to $999 */
        expect_sum += amount[i];
        if (send_payment(d, i, amount))
            return -1;
        sent++;
        if (i >= RESEND_AFTER && (i - RESEND_AFTER) % RESEND_EVERY == 0) {
            if (send_payment(d, i - RESEND_AFTER, amount))
                return -1;
            sent++;
        }
    }
    if (demo_flush(d))
        return -1;
    demo_say("produced  %llu messages to payments (%d partitions, keyed by "
             "customer): %d payments, %llu of them twice",
             (unsigned long long)sent, PARTITIONS, PAYMENTS,
             (unsigned long long)(sent - PAYMENTS));

    if (!(db = demo_db_open(d, "payments.db", schema)))
        return -1;
    demo_path(d, "payments.db", path, sizeof(path));
    conf = demo_conf(d, "demo-payments", "payments",
                     (const char *const[]){"handler", "sqlite",
                                           "handler.sqlite.path", path,
                                           "handler.sqlite.sql", sql,
                                           NULL});
    if (conf && demo_consume(d, conf, sent, &st) == 0) {
        int64_t rows = demo_db_int(db, "SELECT count(*) FROM payments");
        int64_t sum =
            demo_db_int(db, "SELECT coalesce(sum(amount), 0) FROM payments");

        demo_check(d, rows == PAYMENTS,
                   "rows in payments (%lld) == distinct payments (%d)",
                   (long long)rows, PAYMENTS);
        demo_check(d, sum == expect_sum,
                   "sum(amount) (%lld) == sum over distinct payments (%lld)",
                   (long long)sum, (long long)expect_sum);
        demo_check_all_handled(d, &st, sent, "demo-payments", "payments", PARTITIONS);
        rc = 0;
    }
    ballast_conf_destroy(conf);
    sqlite3_close(db);
    return rc;
}
