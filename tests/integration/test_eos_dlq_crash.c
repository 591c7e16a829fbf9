/*
 * test_eos_dlq_crash.c - exactly-once with Kafka transactions and dead
 * letters, through crashes: a crash between the DLQ write and the commit
 * leaves no DLQ duplicate under read_committed.
 *
 * `ballast run` (semantics = exactly-once, handler = plugin with the
 * example plugin, which fails values equal to "poison" permanently and
 * emits nothing) consumes 20,000 messages of which 1% are "poison", each
 * with its own key "p<i>". Its dead-letter records and the consumed offsets
 * commit together in Kafka transactions. ballast is kill -9'd three times
 * at progress points (measured on the DLQ topic's log end, which counts
 * records of open and aborted transactions too) and restarted; each kill
 * is checked to have left dead letters in an open transaction; the
 * restarted instance's init_transactions aborts what the dead one left
 * open, and the group rewinds to the committed offsets, so the poison
 * messages of the aborted transactions are dead-lettered again.
 *
 * Finally a read_committed reader of the DLQ sees every poison key exactly
 * once (with the right origin), and the group's committed offsets equal
 * the input's high watermarks.
 */
#include "support.h"

#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 4
#define TOTAL 20000
#define EVERY 100 /* 1% poison: i % EVERY == POISON_AT */
#define POISON_AT 37
#define NPOISON (TOTAL / EVERY)
#define KILLS 3

static bool is_poison(int i)
{
    return i % EVERY == POISON_AT;
}

/* Value "<i>" with key "k<i % 100>", or value "poison" with key "p<i>", to
 * partition i % PARTS; so input offset = i / PARTS. In record batches of
 * at most 20 messages, so that a small fetch brings few messages. */
static void produce_input(const char *bs, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    rd_kafka_conf_set(conf, "batch.num.messages", "20", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    for (int i = 0; i < TOTAL; i++) {
        char key[32], value[32];
        rd_kafka_resp_err_t err;
        if (is_poison(i)) {
            snprintf(key, sizeof(key), "p%d", i);
            snprintf(value, sizeof(value), "poison");
        } else {
            snprintf(key, sizeof(key), "k%d", i % 100);
            snprintf(value, sizeof(value), "%d", i);
        }
        while ((err = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % PARTS),
                    RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(value, strlen(value)),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50);
        assert_int_equal(err, 0);
        rd_kafka_poll(rk, 0);
    }
    assert_int_equal(rd_kafka_flush(rk, 60000), 0);
    rd_kafka_destroy(rk);
}

/* A DLQ record's key and origin. */
typedef struct dead {
    char key[32];
    char value[16];
    long part;
    long long off;
} dead_t;

/* Reads the (one-partition) DLQ topic to its end with @p isolation. */
static dead_t *read_dlq(const char *bs, const char *topic, const char *isolation,
                        size_t *countp)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    dead_t *out = NULL;
    size_t n = 0, cap = 0;
    int64_t deadline = bt_now_ms() + 60000;
    bool ended = false;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "bt-eos-dlq-reader", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", isolation, NULL, 0);
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
        const void *v;
        size_t len;
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ended = true;
        } else if (m->err) {
            fail_msg("reading %s: %s", topic, rd_kafka_message_errstr(m));
        } else {
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                out = realloc(out, cap * sizeof(*out));
                assert_non_null(out);
            }
            memset(&out[n], 0, sizeof(out[n]));
            snprintf(out[n].key, sizeof(out[n].key), "%.*s", (int)m->key_len,
                     m->key ? (const char *)m->key : "");
            snprintf(out[n].value, sizeof(out[n].value), "%.*s", (int)m->len,
                     m->payload ? (const char *)m->payload : "");
            out[n].part = out[n].off = -1;
            if (!rd_kafka_message_headers(m, &h)) {
                char num[32];
                if (!rd_kafka_header_get_last(h, "x-original-partition", &v, &len) && v) {
                    snprintf(num, sizeof(num), "%.*s", (int)len, (const char *)v);
                    out[n].part = strtol(num, NULL, 10);
                }
                if (!rd_kafka_header_get_last(h, "x-original-offset", &v, &len) && v) {
                    snprintf(num, sizeof(num), "%.*s", (int)len, (const char *)v);
                    out[n].off = strtoll(num, NULL, 10);
                }
            }
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!ended)
        fail_msg("%s: did not reach the end (%s)", topic, isolation);
    *countp = n;
    return out;
}

/* Watermark queries send the client's isolation.level: a read_committed
 * client (librdkafka's default, and bt_high_watermarks') gets the last
 * stable offset, which moves only when a transaction ends. The DLQ's log
 * end (records of open transactions included) needs a read_uncommitted
 * client. */
typedef struct dlq_watch {
    rd_kafka_t *uncommitted, *committed;
    const char *topic;
    int64_t want;
    pid_t pid;
} dlq_watch_t;

static rd_kafka_t *watch_client(const char *bs, const char *isolation)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bs, NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", isolation, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    return rk;
}

static int64_t end_offset(rd_kafka_t *rk, const char *topic)
{
    int64_t lo, hi;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000);
    if (err)
        fail_msg("watermarks(%s): %s", topic, rd_kafka_err2str(err));
    return hi;
}

/* The DLQ's log end reached the goal (a progress gauge: records of open
 * and aborted transactions and their markers count too). Gives up early
 * if ballast died by itself. */
static bool dlq_reached(void *arg)
{
    dlq_watch_t *w = arg;
    if (waitpid(w->pid, NULL, WNOHANG) == w->pid)
        fail_msg("ballast exited by itself before the DLQ reached %lld",
                 (long long)w->want);
    return end_offset(w->uncommitted, w->topic) >= w->want;
}

static bool input_committed(const char *bs, const char *group, const char *topic)
{
    int64_t hwm[PARTS], committed[PARTS];
    bt_high_watermarks(bs, topic, PARTS, hwm);
    bt_committed(bs, group, topic, PARTS, committed);
    for (int p = 0; p < PARTS; p++)
        if (committed[p] != hwm[p])
            return false;
    return true;
}

static void test_dlq_records_exactly_once_through_kills(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *bs = bt_bootstrap();
    const char *in = bt_unique("eosdlq-in"), *dlq = bt_unique("eosdlq-dlq");
    const char *group = bt_unique("eosdlq-g"), *txn_id = bt_unique("eosdlq-txn");
    const char *dir = bt_tmpdir();
    char conf[256], errp[256];
    const char *const argv[] = {"ballast", "run", conf, NULL};
    dlq_watch_t watch;
    int in_window = 0;
    dead_t *recs;
    size_t n, raw;
    int *seen;
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/eosdlq.conf", dir);
    snprintf(errp, sizeof(errp), "%s/stderr", dir);
    bt_create_topic(bs, in, PARTS);
    bt_create_topic(bs, dlq, 1);
    produce_input(bs, in);
    /* Transactions of a second hold ~15 dead letters each, so a kill on
     * a dead letter's arrival lands between it and its commit.
     * The consumer is throttled so that the run lasts long enough to be
     * killed mid-way, on any machine: each fetch asks for more bytes than
     * it may return (fetch.min.bytes > partitions x max.partition.fetch.bytes),
     * so the broker holds it for fetch.wait.max.ms, and it returns about
     * one or two 20-message batches per partition: ~1,500 messages/s. */
    bt_write_file(conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "%s"
                  "kafka.transactional.id = %s\n"
                  "kafka.transaction.timeout.ms = 20000\n"
                  "kafka.max.partition.fetch.bytes = 2048\n"
                  "kafka.fetch.min.bytes = 1000000\n"
                  "kafka.fetch.wait.max.ms = 100\n"
                  "topics = %s\n"
                  "handler = plugin\n"
                  "handler.plugin.path = %s\n"
                  "semantics = exactly-once\n"
                  "transaction.interval.ms = 1000\n"
                  "dlq.topic = %s\n"
                  "concurrency = 2\n"
                  "log.level = warn\n",
                  bs, group, bt_group_lines(), txn_id, in, BALLAST_EXAMPLE_PLUGIN, dlq);

    /* Three hard kills, at 25%, 50% and 75% of the dead letters written. */
    watch.uncommitted = watch_client(bs, "read_uncommitted");
    watch.committed = watch_client(bs, "read_committed");
    watch.topic = dlq;
    for (int k = 0; k < KILLS; k++) {
        int64_t committed[PARTS], sum = 0, end, stable;
        watch.want = (int64_t)NPOISON * (k + 1) / 4;
        pid = bt_spawn_ballast(argv, errp);
        watch.pid = pid;
        if (!bt_wait_for(dlq_reached, &watch, 120000))
            fail_msg("no progress before kill %d: %s", k + 1, bt_read_file(errp));
        kill(pid, SIGKILL);
        assert_int_equal(bt_wait(pid, 10000), 128 + SIGKILL);
        /* The dead instance's open transaction stays open until the next
         * one's init_transactions aborts it: a log end beyond the last
         * stable offset means the kill came between DLQ writes and their
         * commit. */
        end = end_offset(watch.uncommitted, dlq);
        stable = end_offset(watch.committed, dlq);
        in_window += end > stable;
        bt_committed(bs, group, in, PARTS, committed);
        for (int i = 0; i < PARTS; i++)
            sum += committed[i] > 0 ? committed[i] : 0;
        print_message("    kill %d: DLQ log end %lld, last stable offset %lld (%s); "
                      "input committed %lld of %d\n",
                      k + 1, (long long)end, (long long)stable,
                      end > stable ? "dead letters in an open transaction"
                                   : "no open transaction",
                      (long long)sum, TOTAL);
        if (sum >= TOTAL)
            fail_msg("kill %d came after the whole input was committed: the "
                     "run is too fast for this test", k + 1);
    }
    rd_kafka_destroy(watch.uncommitted);
    rd_kafka_destroy(watch.committed);
    /* Without this the scenario of the issue was not exercised. */
    if (!in_window)
        fail_msg("no kill came between a DLQ write and its commit");
    /* The rest, then a clean stop once the input is fully committed. */
    pid = bt_spawn_ballast(argv, errp);
    for (int64_t deadline = bt_now_ms() + 180000; !input_committed(bs, group, in);) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            fail_msg("ballast exited by itself: %s", bt_read_file(errp));
        if (bt_now_ms() > deadline)
            fail_msg("input not fully committed: %s", bt_read_file(errp));
        usleep(200 * 1000);
    }
    kill(pid, SIGTERM);
    assert_int_equal(bt_wait(pid, 60000), 0);
    assert_true(input_committed(bs, group, in));

    /* What a read_uncommitted reader sees: the crashes' aborted copies. */
    free(read_dlq(bs, dlq, "read_uncommitted", &raw));

    /* read_committed: every poison key exactly once, with its origin. */
    recs = read_dlq(bs, dlq, "read_committed", &n);
    seen = calloc(TOTAL, sizeof(*seen));
    assert_non_null(seen);
    for (size_t r = 0; r < n; r++) {
        long i;
        if (recs[r].key[0] != 'p')
            fail_msg("DLQ record %zu has key \"%s\": not a poison message", r, recs[r].key);
        i = strtol(recs[r].key + 1, NULL, 10);
        if (i < 0 || i >= TOTAL || !is_poison((int)i))
            fail_msg("DLQ record %zu has key \"%s\"", r, recs[r].key);
        assert_string_equal(recs[r].value, "poison");
        assert_int_equal(recs[r].part, i % PARTS);
        assert_int_equal(recs[r].off, i / PARTS);
        if (seen[i]++)
            print_message("    duplicate dead letter for key %s (DLQ offset %zu)\n",
                          recs[r].key, r);
    }
    {
        size_t dups = 0, missing = 0;
        for (int i = 0; i < TOTAL; i++) {
            if (!is_poison(i))
                continue;
            dups += seen[i] > 1 ? (size_t)(seen[i] - 1) : 0;
            missing += seen[i] == 0;
        }
        print_message("    DLQ: %zu committed records (%zu incl. aborted ones), "
                      "%zu duplicates, %zu missing, of %d poison messages\n",
                      n, raw, dups, missing, NPOISON);
        assert_int_equal(dups, 0);
        assert_int_equal(missing, 0);
        assert_int_equal(n, NPOISON);
        /* The killed instances' open transactions left aborted copies. */
        assert_true(raw > n);
    }
    free(seen);
    free(recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlq_records_exactly_once_through_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
