/*
 * raw_consumer.c - the benchmark's baseline: the smallest honest at-least-once
 * librdkafka consumer, linked with the command's allocator and run with its
 * fetch settings (the ceiling ballast is held to). It subscribes, polls with
 * rd_kafka_consumer_poll(), "handles" each message (reads its value), stores
 * its offset with
 * rd_kafka_offsets_store() (enable.auto.offset.store=false, auto-commit on),
 * stops after N messages, commits synchronously and closes.
 *
 * usage: raw_consumer -b BOOTSTRAP -g GROUP -t TOPIC -n COUNT
 *                     [-X prop=value]... [-T timeout_s]
 *        raw_consumer --version
 *
 * Prints one JSON object on stdout:
 *   {"messages":N,"seconds":S,"drain_seconds":D,"first_to_last_seconds":F,
 *    "librdkafka_version":"2.14.2"}
 * where S is start to exit, D start to the N-th message and F first to N-th
 * message. Exit 0 when N messages were consumed, 1 on timeout or error.
 */
#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "raw_consumer: %s: %s\n", what, why);
    exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        die(name, errstr);
}

static void usage(void)
{
    fputs("usage: raw_consumer -b BOOTSTRAP -g GROUP -t TOPIC -n COUNT "
          "[-X prop=value]... [-T timeout_s]\n"
          "       raw_consumer --version\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *bootstrap = NULL, *group = NULL, *topic = NULL;
    unsigned long long want = 0, got = 0;
    double timeout_s = 600, t0 = now_s(), t_first = 0, t_last = 0;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_topic_partition_list_t **store = NULL; /* one 1-element list per partition */
    size_t nstore = 0;
    unsigned long sink = 0;
    char errstr[512];
    rd_kafka_resp_err_t err;

    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("%s\n", rd_kafka_version_str());
        return 0;
    }
    conf = rd_kafka_conf_new();
    /* The at-least-once baseline: offsets are stored only after the message
     * was handled; librdkafka's auto-commit commits what was stored. */
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "enable.auto.offset.store", "false");
    set(conf, "enable.auto.commit", "true");
    set(conf, "enable.partition.eof", "false");
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
        if (!arg)
            usage();
        i++;
        if (!strcmp(opt, "-b")) {
            bootstrap = arg;
        } else if (!strcmp(opt, "-g")) {
            group = arg;
        } else if (!strcmp(opt, "-t")) {
            topic = arg;
        } else if (!strcmp(opt, "-n")) {
            want = strtoull(arg, NULL, 10);
        } else if (!strcmp(opt, "-T")) {
            timeout_s = strtod(arg, NULL);
        } else if (!strcmp(opt, "-X")) {
            char name[256];
            const char *eq = strchr(arg, '=');
            if (!eq || (size_t)(eq - arg) >= sizeof(name))
                usage();
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
            set(conf, name, eq + 1);
        } else {
            usage();
        }
    }
    if (!bootstrap || !group || !topic || !want)
        usage();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "group.id", group);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))))
        die("rd_kafka_new", errstr);
    rd_kafka_poll_set_consumer(rk);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    if ((err = rd_kafka_subscribe(rk, sub)))
        die("subscribe", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(sub);

    while (got < want && !stop) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (!rkm) {
            if (now_s() - t0 > timeout_s)
                break;
            continue;
        }
        if (rkm->err) {
            fprintf(stderr, "raw_consumer: %s\n", rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            continue;
        }
        /* "Handle" the message: look at its value. */
        if (rkm->payload && rkm->len)
            sink += ((const unsigned char *)rkm->payload)[0];
        /* Store offset+1 for its partition, reusing a 1-element list. */
        if ((size_t)rkm->partition >= nstore) {
            size_t n = (size_t)rkm->partition + 1;
            rd_kafka_topic_partition_list_t **more = realloc(store, n * sizeof(*more));
            if (!more)
                die("realloc", "out of memory");
            memset(more + nstore, 0, (n - nstore) * sizeof(*more));
            store = more;
            nstore = n;
        }
        if (!store[rkm->partition]) {
            store[rkm->partition] = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(store[rkm->partition],
                                              rd_kafka_topic_name(rkm->rkt),
                                              rkm->partition);
        }
        store[rkm->partition]->elems[0].offset = rkm->offset + 1;
        if ((err = rd_kafka_offsets_store(rk, store[rkm->partition])))
            fprintf(stderr, "raw_consumer: offsets_store: %s\n", rd_kafka_err2str(err));
        rd_kafka_message_destroy(rkm);
        if (!got++)
            t_first = now_s();
    }
    t_last = now_s();
    /* Commit what was stored, then leave the group. */
    err = rd_kafka_commit(rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        fprintf(stderr, "raw_consumer: commit: %s\n", rd_kafka_err2str(err));
    rd_kafka_consumer_close(rk);
    /* The lists hold partition references (rd_kafka_offsets_store caches
     * them): release them before the handle, or rd_kafka_destroy waits for
     * them forever. */
    for (size_t i = 0; i < nstore; i++)
        if (store[i])
            rd_kafka_topic_partition_list_destroy(store[i]);
    free(store);
    rd_kafka_destroy(rk);

    printf("{\"messages\":%llu,\"seconds\":%.6f,\"drain_seconds\":%.6f,"
           "\"first_to_last_seconds\":%.6f,\"librdkafka_version\":\"%s\","
           "\"sink\":%lu}\n",
           got, now_s() - t0, got ? t_last - t0 : 0.0,
           got ? t_last - t_first : 0.0, rd_kafka_version_str(), sink);
    if (got < want) {
        fprintf(stderr, "raw_consumer: only %llu of %llu messages\n", got, want);
        return 1;
    }
    return 0;
}
