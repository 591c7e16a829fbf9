/*
 * kafka_util.c - small, fast Kafka helpers for the benchmark driver
 * (bench/run), built as `bench_kafka`:
 *
 *   bench_kafka produce   -b BOOTSTRAP -t TOPIC -n COUNT [-s VALUE_BYTES] [-k KEYS] [-r RATE]
 *       Produces COUNT deterministic records: value i is VALUE_BYTES (default
 *       100) bytes, "%012llu" of i followed by a fixed pattern (below 12
 *       bytes: that head's last VALUE_BYTES digits); record i goes
 *       to partition i % partitions (so partitions get equal shares); with
 *       -k KEYS > 0 record i has key "key-%08u" of i % KEYS, else no key.
 *       With -r RATE, record i is sent at i/RATE seconds after the start (a
 *       steady load; linger 5 ms), and -n 0 means until SIGTERM or SIGINT.
 *       With -j 1 record i is a payment instead (-s and -k ignored): key
 *       "pay-%012llu" of i, value {"id":"pay-%012llu","idempotencyKey":
 *       "idem-%012llu","customerId":"cust-%04u" of i % 1000,"amount":A} with
 *       A = (100 + i * 7919 % 99900) / 100 written with two decimals.
 *       Prints {"produced":N,"seconds":S}.
 *   bench_kafka count     -b BOOTSTRAP -t TOPIC
 *       Prints {"partitions":P,"messages":sum(high-low),"end":sum(high)}.
 *   bench_kafka committed -b BOOTSTRAP -t TOPIC -g GROUP
 *       Prints {"committed":sum of committed offsets (missing ones count as
 *       the low watermark),"end":sum(high),"lag":end-committed,
 *       "partitions":[each partition's committed offset, the same way]}.
 *   bench_kafka delete-topic -b BOOTSTRAP -t TOPIC
 *   bench_kafka create-topic -b BOOTSTRAP -t TOPIC [-p PARTITIONS] [-c NAME=VALUE[,...]]
 *       Creates the topic (default 4 partitions, replication 1; ok if it
 *       exists) with the topic configs of -c, e.g.
 *       message.timestamp.type=LogAppendTime (so that a record's timestamp
 *       is when the broker appended it), and waits until every partition
 *       has a leader.
 *   bench_kafka consume-count -b BOOTSTRAP -t TOPIC [-I committed|uncommitted] [-n EXPECT]
 *       Reads every partition from the beginning to its end (with
 *       `-I committed`, isolation.level=read_committed: to the last stable
 *       offset, skipping aborted records and transaction markers) and prints
 *       {"messages":M,"distinct":D,"duplicates":M-D,"foreign":F}. distinct
 *       counts different values by their "%012llu" head (as produced by
 *       `produce`) below EXPECT (default: the count read); foreign counts
 *       records whose head is not such a number below EXPECT.
 *   bench_kafka watch -b BOOTSTRAP -t TOPIC (-g GROUP | -n COUNT) -o MARKER [-i MS] [-T SECONDS]
 *       Polls every MS (default 20) milliseconds until the group's committed
 *       offsets reach the log end of TOPIC (-g), or the topic's watermarks
 *       hold COUNT records (-n), then writes MARKER like the no-op plugin
 *       ("<count> <CLOCK_REALTIME ns> <CLOCK_MONOTONIC ns>") and exits 0.
 *       Used by bench/run to learn when a system without the plugin is done.
 *   bench_kafka alter-group -b BOOTSTRAP -g GROUP -c NAME=VALUE[,NAME=VALUE...]
 *       Sets the group's own configs (IncrementalAlterConfigs on the GROUP
 *       resource, Kafka 4.x), e.g. consumer.heartbeat.interval.ms for a
 *       consumer-protocol group.
 *   bench_kafka latency-produce -b BOOTSTRAP -t TOPIC -n COUNT -r RATE [-s VALUE_BYTES]
 *                               [-l LINGER_MS]
 *       The latency scenario's load: sends record i at i/RATE seconds after
 *       the start, to partition i % partitions, no key. Its value
 *       (VALUE_BYTES, default 100, at least 32) starts with "%012llu %019lld":
 *       i and CLOCK_REALTIME in ns taken right before rd_kafka_producev(),
 *       i.e. the produce time. The producer's linger.ms is LINGER_MS
 *       (default 0: a record is sent at once, so the producer's batching adds
 *       nothing to the latency). Prints {"produced":N,"seconds":S,
 *       "late_max_ms":L}, L being how far behind its schedule the pacing
 *       ever was.
 *   bench_kafka latency-read -b BOOTSTRAP -t TOPIC -n COUNT -o FILE [-I committed|uncommitted]
 *                            [-T SECONDS]
 *       Reads every partition from the beginning until COUNT records of
 *       latency-produce's form were seen (read_committed with -I committed)
 *       and writes FILE: one line "i e2e_us append_us" per record, e2e_us
 *       being when the reader saw it (CLOCK_REALTIME) minus its produce time
 *       and append_us the same minus its (LogAppendTime) timestamp.
 *
 * Exit 0 on success, 1 on failure (one line on stderr), 2 on bad usage.
 */
#include "latency_head.h"

#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMEOUT_MS 30000

static const char *bootstrap, *topic, *group;
static unsigned long long count;
static size_t value_bytes = 100;
static unsigned keys;
static int payments; /* produce -j 1: payment JSON records */
static unsigned long long delivery_failures;
static const char *isolation = "uncommitted";
static const char *out_path;      /* -o: watch's marker, latency-read's samples */
static const char *configs;       /* -c: alter-group's or create-topic's NAME=VALUE list */
static int partitions_opt = 4;
static long interval_ms = 20, timeout_s = 600, linger_ms;
static double rate; /* produce: records per second; 0: as fast as possible */
static int topics_opt, groups_opt, messages_opt = 20; /* lag-setup, lag-teardown */
static volatile sig_atomic_t stop_producing;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_kafka: %s: %s\n", what, why);
    exit(1);
}

static void usage(void)
{
    fputs("usage: bench_kafka produce -b BOOTSTRAP -t TOPIC -n COUNT [-s VALUE_BYTES] [-k KEYS] "
          "[-r RATE] [-j 1]\n"
          "       bench_kafka count -b BOOTSTRAP -t TOPIC\n"
          "       bench_kafka committed -b BOOTSTRAP -t TOPIC -g GROUP\n"
          "       bench_kafka delete-topic -b BOOTSTRAP -t TOPIC\n"
          "       bench_kafka create-topic -b BOOTSTRAP -t TOPIC [-p PARTITIONS] "
          "[-c NAME=VALUE[,...]]\n"
          "       bench_kafka consume-count -b BOOTSTRAP -t TOPIC [-I committed|uncommitted] [-n EXPECT]\n"
          "       bench_kafka watch -b BOOTSTRAP -t TOPIC (-g GROUP | -n COUNT) -o MARKER [-i MS] [-T S]\n"
          "       bench_kafka alter-group -b BOOTSTRAP -g GROUP -c NAME=VALUE[,NAME=VALUE...]\n"
          "       bench_kafka lag-setup -b BOOTSTRAP -t PREFIX -n TOPICS -p PARTITIONS -G GROUPS "
          "[-m MESSAGES]\n"
          "       bench_kafka lag-teardown -b BOOTSTRAP -t PREFIX -n TOPICS -G GROUPS\n"
          "       bench_kafka latency-produce -b BOOTSTRAP -t TOPIC -n COUNT -r RATE "
          "[-s VALUE_BYTES] [-l LINGER_MS]\n"
          "       bench_kafka latency-read -b BOOTSTRAP -t TOPIC -n COUNT -o FILE "
          "[-I committed|uncommitted] [-T SECONDS]\n",
          stderr);
    exit(2);
}

static long long clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double now_s(void)
{
    return (double)clock_ns(CLOCK_MONOTONIC) / 1e9;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        die(name, errstr);
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk;

    if (!conf)
        conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "log_level", "3");
    if (!(rk = rd_kafka_new(type, conf, errstr, sizeof(errstr))))
        die("rd_kafka_new", errstr);
    return rk;
}

static int partition_count(rd_kafka_t *rk)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
    int n;

    if (err)
        die("metadata", rd_kafka_err2str(err));
    if (md->topic_cnt != 1 || md->topics[0].err)
        die(topic, md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
    n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (n <= 0)
        die(topic, "no partitions");
    return n;
}

/* ---- produce ------------------------------------------------------------ */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (rkm->err && delivery_failures++ == 0)
        fprintf(stderr, "bench_kafka: delivery failed: %s\n", rd_kafka_err2str(rkm->err));
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_producing = 1;
}

/* produce -j 1: record @p i as a payment; returns the value's length. */
static size_t payment_record(unsigned long long i, char *key, size_t key_size, size_t *key_len,
                             char *value, size_t value_size)
{
    unsigned long long cents = 100 + i * 7919 % 99900;
    int n;

    *key_len = (size_t)snprintf(key, key_size, "pay-%012llu", i);
    n = snprintf(value, value_size,
                 "{\"id\":\"pay-%012llu\",\"idempotencyKey\":\"idem-%012llu\","
                 "\"customerId\":\"cust-%04u\",\"amount\":%llu.%02llu}",
                 i, i, (unsigned)(i % 1000), cents / 100, cents % 100);
    return (size_t)n;
}

/* With -r: polls the producer until record @p i is due; returns how late
 * it is (seconds). @p slack_ms is added to each poll's timeout: produce's
 * steady load (1) sleeps through the last millisecond, latency-produce (0)
 * polls without waiting then, so that a stamped record leaves on time. */
static double pace(rd_kafka_t *rk, double t0, unsigned long long i, int slack_ms)
{
    double due = t0 + (double)i / rate, now = now_s();

    for (; !stop_producing && now < due; now = now_s())
        rd_kafka_poll(rk, (int)((due - now) * 1000) + slack_ms);
    return now - due;
}

static int cmd_produce(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    char *value, key[32];
    double t0 = now_s();
    unsigned long long produced = 0;
    int parts;

    if ((!count && !rate) || value_bytes < 1)
        usage();
    if (rate) {
        signal(SIGTERM, on_stop_signal);
        signal(SIGINT, on_stop_signal);
    }
    set(conf, "acks", "all");
    set(conf, "enable.idempotence", "false");
    set(conf, "compression.type", "none");
    set(conf, "linger.ms", rate ? "5" : "20");
    set(conf, "batch.num.messages", "10000");
    set(conf, "batch.size", "1000000");
    set(conf, "queue.buffering.max.messages", "1000000");
    set(conf, "queue.buffering.max.kbytes", "1048576");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = client(RD_KAFKA_PRODUCER, conf);
    parts = partition_count(rk);
    if (payments && value_bytes < 160)
        value_bytes = 160; /* room for the longest payment record */
    if (!(value = malloc(value_bytes + 16)))
        die("malloc", "out of memory");
    for (size_t j = 0; j < value_bytes; j++)
        value[j] = (char)('a' + j % 26);

    for (unsigned long long i = 0; (!count || i < count) && !stop_producing; i++) {
        rd_kafka_resp_err_t err;
        char head[24];
        size_t key_len = 0, len = value_bytes;
        if (rate)
            pace(rk, t0, i, 1);
        if (stop_producing)
            break;
        snprintf(head, sizeof(head), "%012llu", i);
        if (value_bytes >= 12)
            memcpy(value, head, 12);
        else /* a shorter value holds the index's last digits */
            memcpy(value, head + 12 - value_bytes, value_bytes);
        if (payments)
            len = payment_record(i, key, sizeof(key), &key_len, value, value_bytes + 16);
        else if (keys)
            key_len = (size_t)snprintf(key, sizeof(key), "key-%08u", (unsigned)(i % keys));
        for (;;) {
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(i % (unsigned)parts)),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(value, len),
                RD_KAFKA_V_KEY((key_len ? key : NULL), key_len), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 50);
        }
        if (err)
            die("produce", rd_kafka_err2str(err));
        produced++;
        if ((i & 0xffff) == 0)
            rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 120000))
        die("flush", "records still queued after 120 s");
    rd_kafka_destroy(rk);
    free(value);
    if (delivery_failures) {
        fprintf(stderr, "bench_kafka: %llu deliveries failed\n", delivery_failures);
        return 1;
    }
    printf("{\"produced\":%llu,\"seconds\":%.3f}\n", produced, now_s() - t0);
    return 0;
}

/* ---- count / committed -------------------------------------------------- */

static void watermarks(rd_kafka_t *rk, int parts, int64_t *low, int64_t *high)
{
    for (int p = 0; p < parts; p++) {
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], TIMEOUT_MS);
        if (err)
            die("watermarks", rd_kafka_err2str(err));
    }
}

static int cmd_count(void)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL);
    int parts = partition_count(rk);
    int64_t *low = calloc((size_t)parts, sizeof(*low)), *high = calloc((size_t)parts, sizeof(*high));
    long long msgs = 0, end = 0;

    if (!low || !high)
        die("calloc", "out of memory");
    watermarks(rk, parts, low, high);
    for (int p = 0; p < parts; p++) {
        msgs += high[p] - low[p];
        end += high[p];
    }
    printf("{\"partitions\":%d,\"messages\":%lld,\"end\":%lld}\n", parts, msgs, end);
    free(low);
    free(high);
    rd_kafka_destroy(rk);
    return 0;
}

static int cmd_committed(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;
    int parts;
    int64_t *low, *high;
    long long committed = 0, end = 0;

    if (!group)
        usage();
    set(conf, "group.id", group);
    set(conf, "enable.auto.commit", "false");
    rk = client(RD_KAFKA_CONSUMER, conf);
    parts = partition_count(rk);
    low = calloc((size_t)parts, sizeof(*low));
    high = calloc((size_t)parts, sizeof(*high));
    if (!low || !high)
        die("calloc", "out of memory");
    watermarks(rk, parts, low, high);
    list = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(list, topic, p);
    if ((err = rd_kafka_committed(rk, list, TIMEOUT_MS)))
        die("committed", rd_kafka_err2str(err));
    for (int i = 0; i < list->cnt; i++) {
        int p = list->elems[i].partition;
        int64_t off = list->elems[i].offset;
        committed += off >= 0 ? off : low[p];
        end += high[p];
    }
    printf("{\"committed\":%lld,\"end\":%lld,\"lag\":%lld,\"partitions\":[", committed, end,
           end - committed);
    for (int i = 0; i < list->cnt; i++) {
        int64_t off = list->elems[i].offset;
        printf("%s%lld", i ? "," : "", (long long)(off >= 0 ? off : low[list->elems[i].partition]));
    }
    printf("]}\n");
    rd_kafka_topic_partition_list_destroy(list);
    free(low);
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- delete-topic ------------------------------------------------------- */

static int cmd_delete_topic(void)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *del = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_event_t *ev;
    const rd_kafka_DeleteTopics_result_t *res;
    const rd_kafka_topic_result_t **results;
    size_t n;
    int rc = 0;

    rd_kafka_DeleteTopics(rk, &del, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
    if (!ev)
        die("delete-topic", "timed out");
    if (rd_kafka_event_error(ev))
        die("delete-topic", rd_kafka_event_error_string(ev));
    res = rd_kafka_event_DeleteTopics_result(ev);
    results = rd_kafka_DeleteTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_topic_result_error(results[i])) {
            fprintf(stderr, "bench_kafka: delete-topic %s: %s\n",
                    rd_kafka_topic_result_name(results[i]),
                    rd_kafka_topic_result_error_string(results[i]));
            rc = 1;
        }
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy(del);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- alter-group -------------------------------------------------------- */

/* Calls @p apply for each NAME=VALUE of -c (none without -c). */
static void each_config(void (*apply)(void *obj, const char *name, const char *value), void *obj)
{
    char *list, *save = NULL;

    if (!configs)
        return;
    if (!(list = strdup(configs)))
        die("-c", "out of memory");
    for (char *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            usage();
        *eq = '\0';
        apply(obj, kv, eq + 1);
    }
    free(list);
}

static void set_group_config(void *res, const char *name, const char *value)
{
    rd_kafka_error_t *err = rd_kafka_ConfigResource_add_incremental_config(
        res, name, RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, value);
    if (err)
        die(name, rd_kafka_error_string(err));
}

/* The configs are set before the client starts, so that a bad -c exits
 * (usage, die) with no client threads running. */
static int cmd_alter_group(void)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_GROUP, group);
    const rd_kafka_ConfigResource_t **results;
    rd_kafka_event_t *ev;
    rd_kafka_queue_t *q;
    rd_kafka_t *rk;
    size_t n;

    each_config(set_group_config, res);
    rk = client(RD_KAFKA_PRODUCER, NULL);
    q = rd_kafka_queue_new(rk);
    rd_kafka_IncrementalAlterConfigs(rk, &res, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
    if (!ev)
        die("alter-group", "timed out");
    if (rd_kafka_event_error(ev))
        die("alter-group", rd_kafka_event_error_string(ev));
    results = rd_kafka_IncrementalAlterConfigs_result_resources(
        rd_kafka_event_IncrementalAlterConfigs_result(ev), &n);
    for (size_t i = 0; i < n; i++)
        if (rd_kafka_ConfigResource_error(results[i]))
            die("alter-group", rd_kafka_ConfigResource_error_string(results[i]));
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    printf("{\"altered\":\"%s\"}\n", group);
    return 0;
}

/* ---- create-topic ------------------------------------------------------- */

static void set_topic_config(void *nt, const char *name, const char *value)
{
    if (rd_kafka_NewTopic_set_config(nt, name, value))
        die(name, "cannot set this topic config");
}

/* The topic and its configs are made before the client starts (as in
 * alter-group). */
static int cmd_create_topic(void)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions_opt, 1, errstr,
                                                    sizeof(errstr));
    rd_kafka_event_t *ev;
    const rd_kafka_topic_result_t **results;
    rd_kafka_queue_t *q;
    rd_kafka_t *rk;
    size_t n;
    double deadline = now_s() + 60;

    if (!nt)
        die("create-topic", errstr);
    each_config(set_topic_config, nt);
    rk = client(RD_KAFKA_PRODUCER, NULL);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
    if (!ev)
        die("create-topic", "timed out");
    if (rd_kafka_event_error(ev))
        die("create-topic", rd_kafka_event_error_string(ev));
    results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            die("create-topic", rd_kafka_topic_result_error_string(results[i]));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    /* Wait until every partition has a leader. */
    for (;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int ok = 0;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err &&
                md->topics[0].partition_cnt == partitions_opt) {
                ok = 1;
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                    if (md->topics[0].partitions[p].leader < 0 ||
                        md->topics[0].partitions[p].err)
                        ok = 0;
            }
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (ok)
            break;
        if (now_s() > deadline)
            die("create-topic", "partitions have no leader after 60 s");
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    rd_kafka_destroy(rk);
    printf("{\"created\":\"%s\",\"partitions\":%d}\n", topic, partitions_opt);
    return 0;
}

/* ---- consume-count ------------------------------------------------------ */

/* A consumer of TOPIC that commits nothing (group @p group_id, -I's
 * isolation, the settings already in @p conf), assigned every partition from
 * the beginning; their number goes to @p parts unless it is NULL. */
static rd_kafka_t *topic_reader(rd_kafka_conf_t *conf, const char *group_id, int *parts)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_t *rk;
    int n;

    set(conf, "group.id", group_id);
    set(conf, "enable.auto.commit", "false");
    set(conf, "isolation.level",
        !strcmp(isolation, "committed") ? "read_committed" : "read_uncommitted");
    rk = client(RD_KAFKA_CONSUMER, conf);
    n = partition_count(rk);
    list = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, list))
        die("assign", "failed");
    rd_kafka_topic_partition_list_destroy(list);
    if (parts)
        *parts = n;
    return rk;
}

static int cmd_consume_count(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    unsigned char *seen = NULL;
    unsigned long long msgs = 0, distinct = 0, foreign = 0;
    int parts, eofs = 0;
    int64_t *low, *high;
    double deadline;

    set(conf, "enable.auto.offset.store", "false");
    set(conf, "enable.partition.eof", "true");
    rk = topic_reader(conf, "bench-consume-count", &parts);
    low = calloc((size_t)parts, sizeof(*low));
    high = calloc((size_t)parts, sizeof(*high));
    if (!low || !high)
        die("calloc", "out of memory");
    watermarks(rk, parts, low, high);
    if (count && !(seen = calloc((size_t)(count / 8 + 1), 1)))
        die("calloc", "out of memory");
    for (int p = 0; p < parts; p++)
        if (high[p] == low[p])
            eofs++; /* empty: no EOF event is guaranteed */
    deadline = now_s() + timeout_s;
    while (eofs < parts) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (now_s() > deadline)
            die("consume-count", "timed out before the end of every partition");
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (high[m->partition] != low[m->partition])
                eofs++;
        } else if (m->err) {
            die("consume", rd_kafka_message_errstr(m));
        } else {
            char head[13];
            char *end;
            unsigned long long i;
            msgs++;
            if (seen) {
                if (m->len >= 12) {
                    memcpy(head, m->payload, 12);
                    head[12] = 0;
                    i = strtoull(head, &end, 10);
                    if (*end == 0 && i < count) {
                        if (!(seen[i / 8] & (1u << (i % 8)))) {
                            seen[i / 8] |= (unsigned char)(1u << (i % 8));
                            distinct++;
                        }
                    } else {
                        foreign++;
                    }
                } else {
                    foreign++;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (!seen)
        distinct = msgs;
    printf("{\"messages\":%llu,\"distinct\":%llu,\"duplicates\":%llu,\"foreign\":%llu}\n", msgs,
           distinct, msgs - distinct - foreign, foreign);
    free(seen);
    free(low);
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- watch -------------------------------------------------------------- */

static void write_marker(long long n)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
    if (!(f = fopen(tmp, "w")))
        die("watch", "cannot write the marker");
    fprintf(f, "%lld %lld %lld\n", n, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_MONOTONIC));
    if (fclose(f) || rename(tmp, out_path))
        die("watch", "cannot write the marker");
}

static int cmd_watch(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    int parts;
    int64_t *low, *high;
    double deadline = now_s() + timeout_s;
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000};

    if (!out_path || (!group && !count))
        usage();
    set(conf, "group.id", group ? group : "bench-watch");
    set(conf, "enable.auto.commit", "false");
    rk = client(RD_KAFKA_CONSUMER, conf);
    parts = partition_count(rk);
    low = calloc((size_t)parts, sizeof(*low));
    high = calloc((size_t)parts, sizeof(*high));
    if (!low || !high)
        die("calloc", "out of memory");
    for (;;) {
        long long have = 0, end = 0;
        int ok = 1;
        for (int p = 0; p < parts && ok; p++)
            if (rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], TIMEOUT_MS))
                ok = 0;
        if (ok && group) {
            rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
            for (int p = 0; p < parts; p++)
                rd_kafka_topic_partition_list_add(list, topic, p);
            if (rd_kafka_committed(rk, list, TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (int i = 0; i < list->cnt; i++) {
                    int p = list->elems[i].partition;
                    int64_t off = list->elems[i].offset;
                    have += off >= 0 ? off : low[p];
                    end += high[p];
                }
                if (end && have >= end) {
                    write_marker(have);
                    rd_kafka_topic_partition_list_destroy(list);
                    break;
                }
            }
            rd_kafka_topic_partition_list_destroy(list);
        } else if (ok) {
            for (int p = 0; p < parts; p++)
                have += high[p] - low[p];
            if (have >= (long long)count) {
                write_marker(have);
                break;
            }
        }
        if (now_s() > deadline)
            die("watch", "timed out");
        nanosleep(&ts, NULL);
    }
    free(low);
    free(high);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- lag-setup, lag-teardown ------------------------------------------- */

static void fixture_name(char *buf, size_t size, char kind, int i)
{
    snprintf(buf, size, "%s-%c%04d", topic, kind, i);
}

/* Whether @p err is no failure for what a fixture call meant: the thing
 * already exists (create) or is already gone (delete). */
static int fixture_ok(rd_kafka_resp_err_t err)
{
    return !err || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ||
           err == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

static int coordinator_moving(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
}

/* Waits for @p n admin answers on @p q and fails on any error but a group
 * coordinator that is loading or moving. @returns how many groups got
 * that one (the caller asks again). */
static int await_results(rd_kafka_queue_t *q, int n, const char *what)
{
    int again = 0;

    for (int i = 0; i < n; i++) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS * 4);
        const rd_kafka_group_result_t **groups = NULL;
        const rd_kafka_topic_result_t **topics = NULL;
        size_t ng = 0, nt = 0;
        if (!ev)
            die(what, "timed out");
        if (rd_kafka_event_error(ev))
            die(what, rd_kafka_event_error_string(ev));
        if (rd_kafka_event_AlterConsumerGroupOffsets_result(ev))
            groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(
                rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &ng);
        else if (rd_kafka_event_DeleteGroups_result(ev))
            groups = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev),
                                                         &ng);
        else if (rd_kafka_event_CreateTopics_result(ev))
            topics = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev),
                                                         &nt);
        else if (rd_kafka_event_DeleteTopics_result(ev))
            topics = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev),
                                                         &nt);
        for (size_t k = 0; k < ng; k++) {
            const rd_kafka_error_t *e = rd_kafka_group_result_error(groups[k]);
            const rd_kafka_topic_partition_list_t *parts =
                rd_kafka_group_result_partitions(groups[k]);
            int moving = e && coordinator_moving(rd_kafka_error_code(e));
            for (int p = 0; parts && p < parts->cnt; p++)
                moving = moving || coordinator_moving(parts->elems[p].err);
            if (moving) {
                again++;
                continue;
            }
            if (e && !fixture_ok(rd_kafka_error_code(e)))
                die(rd_kafka_group_result_name(groups[k]), rd_kafka_error_string(e));
            for (int p = 0; parts && p < parts->cnt; p++)
                if (parts->elems[p].err)
                    die(rd_kafka_group_result_name(groups[k]),
                        rd_kafka_err2str(parts->elems[p].err));
        }
        for (size_t k = 0; k < nt; k++)
            if (!fixture_ok(rd_kafka_topic_result_error(topics[k])))
                die(rd_kafka_topic_result_name(topics[k]),
                    rd_kafka_topic_result_error_string(topics[k]));
        rd_kafka_event_destroy(ev);
    }
    return again;
}

/* Runs @p send until await_results() has no group to ask again (for up to
 * a minute: a restarted broker loads its groups first). */
static void with_retries(void (*send)(rd_kafka_t *, rd_kafka_queue_t *), rd_kafka_t *rk,
                         rd_kafka_queue_t *q, int answers, const char *what)
{
    double deadline = now_s() + 60;

    for (;;) {
        send(rk, q);
        if (!await_results(q, answers, what))
            return;
        if (now_s() > deadline)
            die(what, "the group coordinator is not available");
        struct timespec ts = {0, 500 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Waits until every partition of the fixture's topics has a leader. */
static void await_leaders(rd_kafka_t *rk)
{
    double deadline = now_s() + 300;

    for (;;) {
        const struct rd_kafka_metadata *md;
        int ready = 0;
        if (!rd_kafka_metadata(rk, 1, NULL, &md, TIMEOUT_MS)) {
            for (int t = 0; t < md->topic_cnt; t++) {
                int ok = !md->topics[t].err && md->topics[t].partition_cnt == partitions_opt &&
                         !strncmp(md->topics[t].topic, topic, strlen(topic));
                for (int p = 0; ok && p < md->topics[t].partition_cnt; p++)
                    ok = md->topics[t].partitions[p].leader >= 0;
                ready += ok;
            }
            rd_kafka_metadata_destroy(md);
        }
        if (ready >= topics_opt)
            return;
        if (now_s() > deadline)
            die("lag-setup", "partitions have no leader after 300 s");
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Commits the offsets of every fixture group, one request each. */
static void send_offsets(rd_kafka_t *rk, rd_kafka_queue_t *q)
{
    char name[256];

    for (int g = 0; g < groups_opt; g++) {
        rd_kafka_topic_partition_list_t *offs =
            rd_kafka_topic_partition_list_new(partitions_opt);
        rd_kafka_AlterConsumerGroupOffsets_t *alter;
        fixture_name(name, sizeof(name), 't', g % topics_opt);
        for (int p = 0; p < partitions_opt; p++)
            rd_kafka_topic_partition_list_add(offs, name, p)->offset =
                (7LL * g + 13LL * p) % (messages_opt + 1);
        fixture_name(name, sizeof(name), 'g', g);
        alter = rd_kafka_AlterConsumerGroupOffsets_new(name, offs);
        rd_kafka_AlterConsumerGroupOffsets(rk, &alter, 1, NULL, q);
        rd_kafka_AlterConsumerGroupOffsets_destroy(alter);
        rd_kafka_topic_partition_list_destroy(offs);
    }
}

/* Deletes every fixture group in one call. */
static void send_delete_groups(rd_kafka_t *rk, rd_kafka_queue_t *q)
{
    rd_kafka_DeleteGroup_t **dg = calloc((size_t)groups_opt, sizeof(*dg));
    char name[256];

    if (!dg)
        die("lag-teardown", "out of memory");
    for (int g = 0; g < groups_opt; g++) {
        fixture_name(name, sizeof(name), 'g', g);
        dg[g] = rd_kafka_DeleteGroup_new(name);
    }
    rd_kafka_DeleteGroups(rk, dg, (size_t)groups_opt, NULL, q);
    rd_kafka_DeleteGroup_destroy_array(dg, (size_t)groups_opt);
    free(dg);
}

static int cmd_lag_setup(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_NewTopic_t **nts = calloc((size_t)topics_opt, sizeof(*nts));
    char name[256], errstr[512];

    set(conf, "linger.ms", "50");
    set(conf, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = client(RD_KAFKA_PRODUCER, conf);
    q = rd_kafka_queue_new(rk);
    if (!nts)
        die("lag-setup", "out of memory");
    for (int t = 0; t < topics_opt; t++) {
        fixture_name(name, sizeof(name), 't', t);
        if (!(nts[t] = rd_kafka_NewTopic_new(name, partitions_opt, 1, errstr, sizeof(errstr))))
            die(name, errstr);
    }
    rd_kafka_CreateTopics(rk, nts, (size_t)topics_opt, NULL, q);
    await_results(q, 1, "CreateTopics");
    rd_kafka_NewTopic_destroy_array(nts, (size_t)topics_opt);
    free(nts);
    await_leaders(rk);
    for (int t = 0; t < topics_opt; t++) {
        fixture_name(name, sizeof(name), 't', t);
        for (int p = 0; p < partitions_opt; p++)
            for (int m = 0; m < messages_opt; m++)
                while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(name), RD_KAFKA_V_PARTITION(p),
                                         RD_KAFKA_V_VALUE("lag-scale", 9),
                                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, TIMEOUT_MS * 4);
    if (delivery_failures)
        die("lag-setup", "some records were not delivered");
    with_retries(send_offsets, rk, q, groups_opt, "AlterConsumerGroupOffsets");
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    printf("{\"topics\":%d,\"partitions\":%d,\"groups\":%d,\"group_partitions\":%d}\n",
           topics_opt, topics_opt * partitions_opt, groups_opt, groups_opt * partitions_opt);
    return 0;
}

static int cmd_lag_teardown(void)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t **dt = calloc((size_t)topics_opt, sizeof(*dt));
    char name[256];

    if (!dt)
        die("lag-teardown", "out of memory");
    for (int t = 0; t < topics_opt; t++) {
        fixture_name(name, sizeof(name), 't', t);
        dt[t] = rd_kafka_DeleteTopic_new(name);
    }
    /* The topics first: they weigh on a shared broker. */
    rd_kafka_DeleteTopics(rk, dt, (size_t)topics_opt, NULL, q);
    await_results(q, 1, "DeleteTopics");
    rd_kafka_DeleteTopic_destroy_array(dt, (size_t)topics_opt);
    free(dt);
    with_retries(send_delete_groups, rk, q, 1, "DeleteGroups");
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    printf("{\"deleted_groups\":%d,\"deleted_topics\":%d}\n", groups_opt, topics_opt);
    return 0;
}

/* ---- latency-produce, latency-read --------------------------------------- */

static int cmd_latency_produce(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char linger[32], *value;
    double t0, late_max = 0;
    rd_kafka_t *rk;
    int parts;

    if (!count || rate <= 0 || value_bytes < LATENCY_HEAD_LEN)
        usage();
    snprintf(linger, sizeof(linger), "%ld", linger_ms);
    set(conf, "acks", "all");
    set(conf, "compression.type", "none");
    set(conf, "linger.ms", linger);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = client(RD_KAFKA_PRODUCER, conf);
    parts = partition_count(rk);
    if (!(value = malloc(value_bytes + 1)))
        die("malloc", "out of memory");
    for (size_t j = 0; j < value_bytes; j++)
        value[j] = (char)('a' + j % 26);
    t0 = now_s();
    for (unsigned long long i = 0; i < count; i++) {
        double late = pace(rk, t0, i, 0);
        rd_kafka_resp_err_t err;
        char head[LATENCY_HEAD_LEN + 8];

        if (late > late_max)
            late_max = late;
        snprintf(head, sizeof(head), LATENCY_HEAD_FMT, i, clock_ns(CLOCK_REALTIME));
        memcpy(value, head, LATENCY_HEAD_LEN);
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_PARTITION((int32_t)(i % (unsigned)parts)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_VALUE(value, value_bytes), RD_KAFKA_V_END);
        if (err)
            die("produce", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 60000))
        die("flush", "records still queued after 60 s");
    rd_kafka_destroy(rk);
    free(value);
    if (delivery_failures)
        die("produce", "deliveries failed");
    printf("{\"produced\":%llu,\"seconds\":%.3f,\"late_max_ms\":%.3f}\n", count, now_s() - t0,
           late_max * 1000);
    return 0;
}

static void write_samples(const long long *e2e, const long long *app, const unsigned char *seen)
{
    FILE *f = fopen(out_path, "w");

    if (!f)
        die(out_path, "cannot open");
    for (unsigned long long i = 0; i < count; i++)
        if (seen[i])
            fprintf(f, "%llu %lld %lld\n", i, e2e[i], app[i]);
    if (fclose(f))
        die(out_path, "write failed");
}

static int cmd_latency_read(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    long long *e2e = calloc(count, sizeof(*e2e)), *app = calloc(count, sizeof(*app));
    unsigned char *seen = calloc(count, 1);
    unsigned long long got = 0;
    double deadline = now_s() + (double)timeout_s;
    rd_kafka_t *rk;

    if (!count || !out_path || !e2e || !app || !seen)
        usage();
    rk = topic_reader(conf, "bench-latency-reader", NULL);
    while (got < count) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        unsigned long long i;
        long long ns, now = clock_ns(CLOCK_REALTIME);

        if (now_s() > deadline)
            die("latency-read", "timed out before COUNT records were seen");
        if (!m)
            continue;
        if (m->err)
            die("latency-read", rd_kafka_message_errstr(m));
        if (!latency_head_parse(m->payload, m->len, &i, &ns) && i < count && !seen[i]) {
            seen[i] = 1;
            got++;
            e2e[i] = (now - ns) / 1000;
            app[i] = now / 1000 - rd_kafka_message_timestamp(m, NULL) * 1000;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    write_samples(e2e, app, seen);
    printf("{\"read\":%llu}\n", got);
    free(e2e);
    free(app);
    free(seen);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd;

    if (argc < 2)
        usage();
    cmd = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *opt = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
        if (!arg)
            usage();
        if (!strcmp(opt, "-b"))
            bootstrap = arg;
        else if (!strcmp(opt, "-t"))
            topic = arg;
        else if (!strcmp(opt, "-g"))
            group = arg;
        else if (!strcmp(opt, "-n"))
            count = strtoull(arg, NULL, 10);
        else if (!strcmp(opt, "-s"))
            value_bytes = strtoul(arg, NULL, 10);
        else if (!strcmp(opt, "-j"))
            payments = atoi(arg);
        else if (!strcmp(opt, "-k"))
            keys = (unsigned)strtoul(arg, NULL, 10);
        else if (!strcmp(opt, "-I"))
            isolation = arg;
        else if (!strcmp(opt, "-o"))
            out_path = arg;
        else if (!strcmp(opt, "-p"))
            partitions_opt = atoi(arg);
        else if (!strcmp(opt, "-i"))
            interval_ms = atol(arg);
        else if (!strcmp(opt, "-T"))
            timeout_s = atol(arg);
        else if (!strcmp(opt, "-r"))
            rate = strtod(arg, NULL);
        else if (!strcmp(opt, "-c"))
            configs = arg;
        else if (!strcmp(opt, "-l"))
            linger_ms = atol(arg);
        else if (!strcmp(opt, "-G"))
            groups_opt = atoi(arg);
        else if (!strcmp(opt, "-m"))
            messages_opt = atoi(arg);
        else
            usage();
    }
    if (!strcmp(cmd, "alter-group")) {
        if (!bootstrap || !group || !configs)
            usage();
        return cmd_alter_group();
    }
    if (!bootstrap || !topic)
        usage();
    if (!strcmp(cmd, "lag-setup") || !strcmp(cmd, "lag-teardown")) {
        topics_opt = (int)count;
        if (topics_opt <= 0 || groups_opt <= 0 || partitions_opt <= 0 || messages_opt < 0)
            usage();
        return !strcmp(cmd, "lag-setup") ? cmd_lag_setup() : cmd_lag_teardown();
    }
    if (!strcmp(cmd, "produce"))
        return cmd_produce();
    if (!strcmp(cmd, "count"))
        return cmd_count();
    if (!strcmp(cmd, "committed"))
        return cmd_committed();
    if (!strcmp(cmd, "delete-topic"))
        return cmd_delete_topic();
    if (!strcmp(cmd, "create-topic"))
        return cmd_create_topic();
    if (!strcmp(cmd, "consume-count"))
        return cmd_consume_count();
    if (!strcmp(cmd, "watch"))
        return cmd_watch();
    if (!strcmp(cmd, "latency-produce"))
        return cmd_latency_produce();
    if (!strcmp(cmd, "latency-read"))
        return cmd_latency_read();
    usage();
    return 2;
}
