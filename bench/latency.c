/*
 * latency.c - the latency scenario's producer and reader (bench/run), built
 * as `bench_latency`:
 *
 *   bench_latency create-topic -b BOOTSTRAP -t TOPIC [-p PARTITIONS]
 *       Creates the topic with message.timestamp.type=LogAppendTime (so a
 *       record's timestamp is when the broker appended it) and waits until
 *       every partition has a leader.
 *   bench_latency produce -b BOOTSTRAP -t TOPIC -n COUNT -r RATE [-s VALUE_BYTES] [-l LINGER_MS]
 *       Sends record i at i/RATE seconds after the start, to partition
 *       i % partitions, no key. Its value (VALUE_BYTES, default 100, at
 *       least 32) starts with "%012llu %019lld": i and CLOCK_REALTIME in ns
 *       taken right before rd_kafka_producev(), i.e. the produce time. The
 *       producer's linger.ms is LINGER_MS (default 0: a record is sent at
 *       once, so the producer's batching adds nothing to the latency).
 *       Prints {"produced":N,"seconds":S,"late_max_ms":L}, L being how far
 *       behind its schedule the pacing ever was.
 *   bench_latency read -b BOOTSTRAP -t TOPIC -n COUNT -o FILE [-I committed|uncommitted]
 *       Reads every partition from the beginning until COUNT records of
 *       the producer's form were seen (read_committed with -I committed) and
 *       writes FILE: one line "i e2e_us append_us" per record, e2e_us being
 *       when the reader saw it (CLOCK_REALTIME) minus its produce time and
 *       append_us the same minus its (LogAppendTime) timestamp.
 *
 * Exit 0 on success, 1 on failure (one line on stderr), 2 on bad usage.
 */
#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMEOUT_MS 30000

static const char *bootstrap, *topic, *out_path, *isolation = "uncommitted";
static unsigned long long count;
static size_t value_bytes = 100;
static double rate;
static int partitions_opt = 4;
static long linger_ms, timeout_s = 300;
static unsigned long long delivery_failures;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_latency: %s: %s\n", what, why);
    exit(1);
}

static void usage(void)
{
    fputs("usage: bench_latency create-topic -b BOOTSTRAP -t TOPIC [-p PARTITIONS]\n"
          "       bench_latency produce -b BOOTSTRAP -t TOPIC -n COUNT -r RATE "
          "[-s VALUE_BYTES] [-l LINGER_MS]\n"
          "       bench_latency read -b BOOTSTRAP -t TOPIC -n COUNT -o FILE "
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
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        die(name, errstr);
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk;

    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "log_level", "3");
    if (!(rk = rd_kafka_new(type, conf, errstr, sizeof(errstr))))
        die("rd_kafka_new", errstr);
    return rk;
}

/* The topic's partition count, or 0 while it has a partition without a
 * leader (with @p must: a missing topic or no partitions is fatal). */
static int partitions_led(rd_kafka_t *rk, int must)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = 0;

    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err) {
            n = md->topics[0].partition_cnt;
            for (int p = 0; p < n; p++)
                if (md->topics[0].partitions[p].leader < 0 || md->topics[0].partitions[p].err)
                    n = 0;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (must && n <= 0)
        die(topic, "not found, no partitions or a partition without a leader");
    return n;
}

static int cmd_create_topic(void)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, rd_kafka_conf_new());
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions_opt, 1, errstr,
                                                    sizeof(errstr));
    const rd_kafka_topic_result_t **results;
    rd_kafka_event_t *ev;
    double deadline = now_s() + 60;
    size_t n;

    if (!nt)
        die("create-topic", errstr);
    if (rd_kafka_NewTopic_set_config(nt, "message.timestamp.type", "LogAppendTime"))
        die("create-topic", "cannot set message.timestamp.type");
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    if (!(ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000)))
        die("create-topic", "timed out");
    if (rd_kafka_event_error(ev))
        die("create-topic", rd_kafka_event_error_string(ev));
    results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++)
        if (rd_kafka_topic_result_error(results[i]))
            die("create-topic", rd_kafka_topic_result_error_string(results[i]));
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    while (partitions_led(rk, 0) != partitions_opt) {
        struct timespec ts = {0, 50 * 1000000};
        if (now_s() > deadline)
            die("create-topic", "partitions have no leader after 60 s");
        nanosleep(&ts, NULL);
    }
    rd_kafka_destroy(rk);
    printf("{\"created\":\"%s\",\"partitions\":%d}\n", topic, partitions_opt);
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (rkm->err && delivery_failures++ == 0)
        fprintf(stderr, "bench_latency: delivery failed: %s\n", rd_kafka_err2str(rkm->err));
}

/* Serves delivery reports until record @p i is due; returns how late it is. */
static double pace(rd_kafka_t *rk, double t0, unsigned long long i)
{
    double due = t0 + (double)i / rate, now;

    while ((now = now_s()) < due)
        rd_kafka_poll(rk, (int)((due - now) * 1000));
    return now - due;
}

static int cmd_produce(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char linger[32], *value;
    double t0, late_max = 0;
    rd_kafka_t *rk;
    int parts;

    if (!count || rate <= 0 || value_bytes < 32)
        usage();
    snprintf(linger, sizeof(linger), "%ld", linger_ms);
    set(conf, "acks", "all");
    set(conf, "compression.type", "none");
    set(conf, "linger.ms", linger);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = client(RD_KAFKA_PRODUCER, conf);
    parts = partitions_led(rk, 1);
    if (!(value = malloc(value_bytes + 1)))
        die("malloc", "out of memory");
    for (size_t j = 0; j < value_bytes; j++)
        value[j] = (char)('a' + j % 26);
    t0 = now_s();
    for (unsigned long long i = 0; i < count; i++) {
        double late = pace(rk, t0, i);
        rd_kafka_resp_err_t err;
        char head[40];

        if (late > late_max)
            late_max = late;
        snprintf(head, sizeof(head), "%012llu %019lld", i, clock_ns(CLOCK_REALTIME));
        memcpy(value, head, 32);
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

/* Parses the producer's value head: index and produce time (ns). */
static int parse_head(const rd_kafka_message_t *m, unsigned long long *i, long long *ns)
{
    char head[33], *end;

    if (m->len < 32)
        return -1;
    memcpy(head, m->payload, 32);
    head[32] = 0;
    if (head[12] != ' ')
        return -1;
    head[12] = 0;
    *i = strtoull(head, &end, 10);
    if (*end)
        return -1;
    *ns = strtoll(head + 13, &end, 10);
    return *end ? -1 : 0;
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

static int cmd_read(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    long long *e2e = calloc(count, sizeof(*e2e)), *app = calloc(count, sizeof(*app));
    unsigned char *seen = calloc(count, 1);
    unsigned long long got = 0;
    rd_kafka_topic_partition_list_t *list;
    double deadline = now_s() + (double)timeout_s;
    rd_kafka_t *rk;
    int parts;

    if (!count || !out_path || !e2e || !app || !seen)
        usage();
    set(conf, "group.id", "bench-latency-reader");
    set(conf, "enable.auto.commit", "false");
    set(conf, "isolation.level",
        !strcmp(isolation, "committed") ? "read_committed" : "read_uncommitted");
    rk = client(RD_KAFKA_CONSUMER, conf);
    parts = partitions_led(rk, 1);
    list = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, list))
        die("assign", "failed");
    rd_kafka_topic_partition_list_destroy(list);
    while (got < count) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        unsigned long long i;
        long long ns, now = clock_ns(CLOCK_REALTIME);

        if (now_s() > deadline)
            die("read", "timed out before COUNT records were seen");
        if (!m)
            continue;
        if (m->err)
            die("read", rd_kafka_message_errstr(m));
        if (!parse_head(m, &i, &ns) && i < count && !seen[i]) {
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
        else if (!strcmp(opt, "-n"))
            count = strtoull(arg, NULL, 10);
        else if (!strcmp(opt, "-r"))
            rate = strtod(arg, NULL);
        else if (!strcmp(opt, "-s"))
            value_bytes = strtoul(arg, NULL, 10);
        else if (!strcmp(opt, "-l"))
            linger_ms = atol(arg);
        else if (!strcmp(opt, "-p"))
            partitions_opt = atoi(arg);
        else if (!strcmp(opt, "-o"))
            out_path = arg;
        else if (!strcmp(opt, "-I"))
            isolation = arg;
        else if (!strcmp(opt, "-T"))
            timeout_s = atol(arg);
        else
            usage();
    }
    if (!bootstrap || !topic)
        usage();
    if (!strcmp(cmd, "create-topic"))
        return partitions_opt > 0 ? cmd_create_topic() : (usage(), 2);
    if (!strcmp(cmd, "produce"))
        return cmd_produce();
    if (!strcmp(cmd, "read"))
        return cmd_read();
    usage();
    return 2;
}
