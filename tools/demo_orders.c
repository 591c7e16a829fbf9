/*
 * demo_orders.c - poison orders go to a dead-letter topic; the rest are
 * stored, in order, and every offset is committed.
 *
 * Orders {"orderId","sku","qty"} keyed by customer are inserted into SQLite
 * (`INSERT ... ON CONFLICT (order_id) DO NOTHING`, so a redelivery is
 * harmless). Some orders are poison: a value that is not JSON, a negative
 * quantity (CHECK (qty > 0)) or a missing SKU (NOT NULL). Those fail
 * permanently: retrying cannot fix them, so they skip the retries that
 * `retry.max.attempts` grants transient failures (a locked database) and
 * go straight to `orders-dlq`, with their key, value and headers and the
 * x-original-* and x-error-message headers. To show that the copy is safe
 * before the offset moves, the broker refuses the first dead-letter writes
 * (injected NOT_ENOUGH_REPLICAS errors); they are retried, and the input
 * offsets are committed only once the broker acknowledged each copy.
 *
 * Checked by reading both topics back from the broker: the dead-letter
 * topic holds each poison order exactly once, byte for byte, with the
 * headers that name its origin and the reason, in the order of its
 * partition; the table holds exactly the good orders, including those
 * after the last poison one of each partition; nothing was written to the
 * input topic; and the committed offsets are the high watermarks.
 * examples/orders.conf is the same pipeline for `ballast run`.
 */
#include "cli.h"
#include "demo.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORDERS 600
#define CUSTOMERS 30
#define PARTITIONS 3
#define GROUP "demo-orders"
#define TOPIC "orders"
#define DLQ "orders-dlq"
#define INJECTED_ERRORS 3

static const char schema[] =
    "CREATE TABLE orders (\n"
    "  order_id        TEXT PRIMARY KEY,\n"
    "  customer        TEXT NOT NULL,\n"
    "  sku             TEXT NOT NULL,\n"
    "  qty             INTEGER NOT NULL CHECK (qty > 0),\n"
    "  kafka_partition INTEGER NOT NULL,\n"
    "  kafka_offset    INTEGER NOT NULL\n"
    ");";

static const char sql[] =
    "INSERT INTO orders (order_id, customer, sku, qty, kafka_partition, "
    "kafka_offset) "
    "VALUES (json_extract(:value, '$.orderId'), :key, "
    "json_extract(:value, '$.sku'), json_extract(:value, '$.qty'), "
    ":partition, :offset) "
    "ON CONFLICT (order_id) DO NOTHING";

/* What is wrong with an order, and what the error must say. */
typedef enum poison { GOOD = 0, NOT_JSON, NEGATIVE_QTY, NO_SKU } poison_t;

static const char *const poison_reason[] = {
    NULL, "malformed JSON", "CHECK constraint failed", "NOT NULL constraint"};

static poison_t poison_of(int i)
{
    if (i % 50 == 17)
        return NOT_JSON;
    if (i % 50 == 41)
        return NEGATIVE_QTY;
    if (i % 120 == 60)
        return NO_SKU;
    return GOOD;
}

/* One record read back from the broker. */
typedef struct record {
    int32_t partition;
    int64_t offset;
    char *key, *value;
    char *hdr[8]; /* the headers the checks look at, by index of hdr_names */
    int order;    /* the order's number (from its value), -1 if none */
} record_t;

static const char *const hdr_names[] = {
    "trace-id",
    BALLAST_HEADER_ORIGINAL_TOPIC,
    BALLAST_HEADER_ORIGINAL_PARTITION,
    BALLAST_HEADER_ORIGINAL_OFFSET,
    BALLAST_HEADER_ORIGINAL_TIMESTAMP,
    BALLAST_HEADER_ERROR_MESSAGE,
    BALLAST_HEADER_RETRY_COUNT,
    BALLAST_HEADER_CONSUMER_GROUP};
enum { H_TRACE, H_TOPIC, H_PARTITION, H_OFFSET, H_TIMESTAMP, H_ERROR,
       H_RETRIES, H_GROUP, H_COUNT };

typedef struct records {
    record_t *r;
    size_t n, cap;
} records_t;

static void records_free(records_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].value);
        for (int h = 0; h < H_COUNT; h++)
            free(rs->r[i].hdr[h]);
    }
    free(rs->r);
    memset(rs, 0, sizeof(*rs));
}

static char *dup_bytes(const void *p, size_t len)
{
    char *s = p ? malloc(len + 1) : NULL;

    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

static int add_record(records_t *rs, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    record_t *r;
    const char *v;

    if (!(r = bl_grow(rs->r, &rs->cap, rs->n, sizeof(*r), 256)))
        return -1;
    rs->r = r;
    r = &rs->r[rs->n++];
    memset(r, 0, sizeof(*r));
    r->partition = m->partition;
    r->offset = m->offset;
    r->key = dup_bytes(m->key, m->key_len);
    r->value = dup_bytes(m->payload, m->len);
    r->order = -1;
    if (r->value && (v = strstr(r->value, "\"ord-")))
        r->order = atoi(v + 5);
    if (!rd_kafka_message_headers(m, &hdrs)) {
        for (int h = 0; h < H_COUNT; h++) {
            const void *hv;
            size_t hl;
            if (!rd_kafka_header_get_last(hdrs, hdr_names[h], &hv, &hl))
                r->hdr[h] = dup_bytes(hv ? hv : "", hv ? hl : 0);
        }
    }
    return 0;
}

/* Reads partitions 0..partitions-1 of @p topic from the beginning to their
 * high watermarks. (librdkafka's assign() needs a group.id on the handle,
 * but assign() never joins that group, and nothing is committed.)
 * @returns 0, or -1 (printed). */
static int read_topic(demo_t *d, const char *topic, int partitions,
                      records_t *out)
{
    rd_kafka_topic_partition_list_t *parts;
    int64_t high[DEMO_MAX_PARTITIONS], low, left = 0;
    rd_kafka_t *rk;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!(rk = demo_client(d, "demo-reader",
                           (const char *const[]){"enable.auto.commit", "false", NULL})))
        return -1;
    parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) {
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high[p],
                                             10000)) {
            cli_error("demo: cannot read the watermarks of %s [%d]", topic,
                      p);
            rc = -1;
        }
        left += high[p];
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    if (!rc && rd_kafka_assign(rk, parts)) {
        cli_error("demo: cannot read %s", topic);
        rc = -1;
    }
    for (int idle = 0; !rc && left > 0 && idle < 100;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err && m->offset < high[m->partition]) {
            if (add_record(out, m))
                rc = -1;
            left--;
        }
        rd_kafka_message_destroy(m);
    }
    if (!rc && left > 0) {
        cli_error("demo: %lld records of %s could not be read back",
                  (long long)left, topic);
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static int produce_order(demo_t *d, int i, uint32_t *seed)
{
    char key[16], value[160], trace[24];
    int sku = (int)(demo_rand(seed) % 40), qty = 1 + (int)(demo_rand(seed) % 9);
    rd_kafka_resp_err_t err;

    snprintf(key, sizeof(key), "cust-%02d", i % CUSTOMERS);
    snprintf(trace, sizeof(trace), "trace-%05d", i);
    switch (poison_of(i)) {
    case NOT_JSON: /* cut short, as a buggy producer might send it */
        snprintf(value, sizeof(value),
                 "{\"orderId\":\"ord-%05d\",\"sku\":\"SKU-%02d\",\"qty\":", i,
                 sku);
        break;
    case NEGATIVE_QTY:
        snprintf(value, sizeof(value),
                 "{\"orderId\":\"ord-%05d\",\"sku\":\"SKU-%02d\",\"qty\":%d}",
                 i, sku, -qty);
        break;
    case NO_SKU:
        snprintf(value, sizeof(value), "{\"orderId\":\"ord-%05d\",\"qty\":%d}",
                 i, qty);
        break;
    default:
        snprintf(value, sizeof(value),
                 "{\"orderId\":\"ord-%05d\",\"sku\":\"SKU-%02d\",\"qty\":%d}",
                 i, sku, qty);
    }
    do {
        err = rd_kafka_producev(
            d->producer, RD_KAFKA_V_TOPIC(TOPIC),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(value, strlen(value)),
            RD_KAFKA_V_HEADER("trace-id", trace, (ssize_t)strlen(trace)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(d->producer, 100);
    } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    if (err) {
        cli_error("demo: cannot produce to " TOPIC ": %s",
                  rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_poll(d->producer, 0);
    return 0;
}

/* The consumer's log: its one warning per dead-lettered order is counted
 * rather than printed, to keep the demo readable; anything else is
 * printed as usual. Called on any thread. */
static void on_log(ballast_log_level_t level, const char *line, void *opaque)
{
    atomic_int *dead_letter_lines = opaque;

    if (level == BALLAST_LOG_WARN && strstr(line, "dead-lettered to " DLQ))
        atomic_fetch_add(dead_letter_lines, 1);
    else
        fprintf(stderr, "%s\n", line);
}

static bool same(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* Checks the dead-letter records against the input read back. */
static void check_dlq(demo_t *d, const records_t *in, const records_t *dlq,
                      int poison_count)
{
    static int seen[ORDERS];
    int bad = 0, dup = 0, out_of_order = 0, reasons_ok = 0;
    int64_t last_offset[PARTITIONS];
    const char *first_bad = "";

    memset(seen, 0, sizeof(seen));
    for (int p = 0; p < PARTITIONS; p++)
        last_offset[p] = -1;
    for (size_t i = 0; i < dlq->n; i++) {
        const record_t *q = &dlq->r[i];
        const record_t *orig = NULL;
        int p = q->hdr[H_PARTITION] ? atoi(q->hdr[H_PARTITION]) : -1;
        long long off = q->hdr[H_OFFSET] ? atoll(q->hdr[H_OFFSET]) : -1;

        for (size_t j = 0; j < in->n && !orig; j++)
            if (in->r[j].partition == p && in->r[j].offset == off)
                orig = &in->r[j];
        if (!orig || orig->order < 0 || orig->order >= ORDERS ||
            poison_of(orig->order) == GOOD) {
            if (!bad++)
                first_bad = "a record that is not a poison order";
            continue;
        }
        if (seen[orig->order]++)
            dup++;
        if (!same(q->key, orig->key) || !same(q->value, orig->value) ||
            !same(q->hdr[H_TRACE], orig->hdr[H_TRACE])) {
            if (!bad++)
                first_bad = "key, value or trace-id header changed";
        } else if (!same(q->hdr[H_TOPIC], TOPIC) ||
                   !same(q->hdr[H_GROUP], GROUP) || !q->hdr[H_TIMESTAMP] ||
                   !q->hdr[H_RETRIES] || !q->hdr[H_ERROR]) {
            if (!bad++)
                first_bad = "x-original-topic, x-consumer-group, "
                            "x-original-timestamp, x-retry-count or "
                            "x-error-message missing or wrong";
        }
        if (q->hdr[H_ERROR] &&
            strstr(q->hdr[H_ERROR], poison_reason[poison_of(orig->order)]))
            reasons_ok++;
        if (off < last_offset[p])
            out_of_order++;
        last_offset[p] = off;
    }
    demo_check(d, (int)dlq->n == poison_count && !dup && !bad,
               "dead-letter records (%zu) == poison orders (%d), each once, "
               "byte for byte with its trace-id header%s%s",
               dlq->n, poison_count, bad ? "; wrong: " : "", first_bad);
    demo_check(d, reasons_ok == poison_count,
               "x-error-message names the reason (malformed JSON / CHECK / "
               "NOT NULL) for %d of %d",
               reasons_ok, poison_count);
    demo_check(d, !out_of_order,
               "dead-letter records keep their partition's order "
               "(x-original-offset increasing per x-original-partition)");
    if (dlq->n) {
        const record_t *q = &dlq->r[0];
        demo_say("          e.g. x-original-topic=%s x-original-partition=%s "
                 "x-original-offset=%s x-retry-count=%s",
                 q->hdr[H_TOPIC] ? q->hdr[H_TOPIC] : "?",
                 q->hdr[H_PARTITION] ? q->hdr[H_PARTITION] : "?",
                 q->hdr[H_OFFSET] ? q->hdr[H_OFFSET] : "?",
                 q->hdr[H_RETRIES] ? q->hdr[H_RETRIES] : "?");
        demo_say("               x-error-message=\"%s\"",
                 q->hdr[H_ERROR] ? q->hdr[H_ERROR] : "?");
    }
}

int demo_orders(demo_t *d)
{
    uint32_t seed = 1234;
    int poison_count = 0, good_count = 0;
    int64_t good_qty = 0, high[PARTITIONS];
    char path[4096];
    sqlite3 *db;
    ballast_conf_t *conf;
    ballast_stats_t st;
    records_t in = {0}, dlq = {0};
    atomic_int dead_letter_lines = 0;
    size_t refusals_left = 1;
    int rc = -1;

    demo_say("invariant: poison orders end up in " DLQ
             " once each, intact; every other order is stored; nothing is "
             "skipped or left uncommitted");
    if (demo_create_topic(d, TOPIC, PARTITIONS) ||
        demo_create_topic(d, DLQ, 1))
        return -1;
    for (int i = 0; i < ORDERS; i++) {
        if (produce_order(d, i, &seed))
            return -1;
        if (poison_of(i) != GOOD)
            poison_count++;
    }
    if (demo_flush(d) || read_topic(d, TOPIC, PARTITIONS, &in))
        return -1;
    for (size_t i = 0; i < in.n; i++) {
        const char *q;
        if (poison_of(in.r[i].order) == GOOD) {
            good_count++;
            if ((q = strstr(in.r[i].value, "\"qty\":")))
                good_qty += atoi(q + 6);
        }
    }
    demo_say("produced  %d orders to " TOPIC " (%d partitions, keyed by "
             "customer, each with a trace-id header); %d are poison: not "
             "JSON, qty < 0, or no sku",
             ORDERS, PARTITIONS, poison_count);

    if (!(db = demo_db_open(d, "orders.db", schema))) {
        records_free(&in);
        return -1;
    }
    demo_path(d, "orders.db", path, sizeof(path));
    conf = demo_conf(d, GROUP, TOPIC,
                     (const char *const[]){"handler", "sqlite",
                                           "handler.sqlite.path", path,
                                           "handler.sqlite.sql", sql,
                                           "retry.max.attempts", "3",
                                           "retry.backoff.initial.ms", "100",
                                           "dlq.topic", DLQ,
                                           "dlq.max.consecutive", "5",
                                           "dlq.max.ratio", "0.5",
                                           /* The mock broker does not check an
                                            * idempotent producer's sequence
                                            * numbers: with several requests in
                                            * flight, a later batch it accepts
                                            * while a refused one waits for its
                                            * retry makes librdkafka count the
                                            * refused one as written (a real
                                            * broker refuses the gap). */
                                           "kafka.max.in.flight.requests.per.connection",
                                           "1",
                                           NULL});
    if (conf) {
        ballast_conf_set_log_cb(conf, on_log, &dead_letter_lines);
        /* From now on the only producer is the consumer's, writing to the
         * dead-letter topic: the broker (id 1) refuses its first writes. */
        rd_kafka_mock_broker_push_request_error_rtts(
            d->mcluster, 1, 0 /* Produce */, INJECTED_ERRORS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0);
        demo_say("broker    will refuse the first %d dead-letter writes "
                 "(NOT_ENOUGH_REPLICAS, injected)",
                 INJECTED_ERRORS);
    }
    if (conf && demo_consume(d, conf, ORDERS, &st) == 0) {
        int64_t rows = demo_db_int(db, "SELECT count(*) FROM orders");
        int64_t qty = demo_db_int(db, "SELECT coalesce(sum(qty), 0) FROM orders");
        int64_t behind = demo_uncommitted(d, GROUP, TOPIC, PARTITIONS);
        int after_last = 0, stored_after_last = 0;

        rd_kafka_mock_broker_error_stack_cnt(d->mcluster, 1, 0 /* Produce */,
                                             &refusals_left);
        demo_say("          (the consumer logged %d dead-letter warnings, "
                 "counted here instead of shown)",
                 atomic_load(&dead_letter_lines));
        demo_check(d, refusals_left == 0,
                   "the broker refused %d of the dead-letter writes; they "
                   "were retried (no copy lost, none doubled: see below)",
                   INJECTED_ERRORS - (int)refusals_left);
        demo_check(d, st.processed_ok == (uint64_t)good_count &&
                          st.dead_lettered == (uint64_t)poison_count &&
                          st.retried == 0,
                   "handled ok %llu == good orders %d; dead-lettered %llu == "
                   "poison %d; retried %llu (a permanent failure is not "
                   "retried)",
                   (unsigned long long)st.processed_ok, good_count,
                   (unsigned long long)st.dead_lettered, poison_count,
                   (unsigned long long)st.retried);
        demo_check(d, rows == good_count && qty == good_qty,
                   "rows in orders (%lld) == good orders (%d), sum(qty) %lld "
                   "== %lld",
                   (long long)rows, good_count, (long long)qty,
                   (long long)good_qty);
        /* Past the poison: the good orders after each partition's last
         * poison one are stored too. */
        for (int p = 0; p < PARTITIONS; p++) {
            int64_t last = -1;
            char q[160];
            for (size_t i = 0; i < in.n; i++)
                if (in.r[i].partition == p &&
                    poison_of(in.r[i].order) != GOOD && in.r[i].offset > last)
                    last = in.r[i].offset;
            for (size_t i = 0; i < in.n; i++)
                if (in.r[i].partition == p && in.r[i].offset > last)
                    after_last++;
            snprintf(q, sizeof(q),
                     "SELECT count(*) FROM orders WHERE kafka_partition = %d "
                     "AND kafka_offset > %lld",
                     p, (long long)last);
            stored_after_last += (int)demo_db_int(db, q);
        }
        demo_check(d, stored_after_last == after_last,
                   "good orders after the last poison one of each partition: "
                   "%d of %d stored (consumption went on past the poison)",
                   stored_after_last, after_last);
        if (read_topic(d, DLQ, 1, &dlq) == 0)
            check_dlq(d, &in, &dlq, poison_count);
        else
            d->failed_checks++;
        if (demo_offsets(d, GROUP, TOPIC, PARTITIONS, NULL, NULL, high) == 0) {
            int64_t total = 0;
            for (int p = 0; p < PARTITIONS; p++)
                total += high[p];
            demo_check(d, total == ORDERS,
                       "records in " TOPIC " after the run: %lld == produced "
                       "(nothing re-published to the input topic)",
                       (long long)total);
        }
        demo_check(d, behind == 0,
                   "messages past the committed offsets after the stop: "
                   "%lld (each poison offset committed once its dead-letter "
                   "copy was acknowledged)",
                   (long long)behind);
        demo_say("vs. the article: it re-publishes a failing order to the end "
                 "of " TOPIC " (behind newer orders of the same key, and seen "
                 "by every group) and retries it at once; ballast retries in "
                 "place with backoff, keeps order, and never writes to the "
                 "input topic");
        rc = 0;
    }
    records_free(&in);
    records_free(&dlq);
    ballast_conf_destroy(conf);
    sqlite3_close(db);
    return rc;
}
