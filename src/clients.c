/*
 * clients.c - makes the librdkafka consumer and producer from the kafka.*
 * keys, with ballast's reliable defaults, and installs the callback table
 * it was given (bl_clients_init): delivery reports, rebalances and commit
 * results go where the consumer says, not to functions this file names.
 * Routes librdkafka's logs and errors to ballast's logger, sums up what it
 * complains of while starting, waits for the cluster at start-up, reads
 * committed offsets, and destroys a client within a bound.
 */
#include "clients.h"

#include "cluster.h"
#include "shared/lag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DESTROY_TIMEOUT_MS 10000 /* rd_kafka_destroy() of each client */

void bl_clients_init(ballast_consumer_t *c, const bl_client_cbs_t *cbs)
{
    c->clients.cbs = cbs;
    atomic_init(&c->clients.starting, true);
    pthread_mutex_init(&c->clients.start_mtx, NULL);
}

void bl_clients_started(ballast_consumer_t *c)
{
    atomic_store(&c->clients.starting, false);
}

void bl_clients_free(ballast_consumer_t *c)
{
    pthread_mutex_destroy(&c->clients.start_mtx);
}

bool bl_kafka_fenced(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* The librdkafka floor (docs/design.md, "Dependencies"): the build refuses an
 * older one, and a process that loaded an older one before libballast gets a
 * one-line error instead of ballast running on it. */
#define BL_RDKAFKA_FLOOR 0x020c0000 /* 2.12.0 */
#define BL_RDKAFKA_FLOOR_STR "2.12"
#if RD_KAFKA_VERSION < BL_RDKAFKA_FLOOR
#error "librdkafka 2.12 or later is needed: run scripts/install-deps"
#endif

/* What librdkafka's cgrp debug log says when the broker lacks the consumer
 * group protocol (see watch_group_protocol). */
#define NO_CONSUMER_PROTOCOL "ConsumerGroupHeartbeatRequest not supported by broker"

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    ballast_consumer_t *c = rd_kafka_opaque(rk);
    /* librdkafka logs lost connections at LOG_ERR (3); they are transient
     * and retried, so they are warnings here. */
    ballast_log_level_t lv = level <= 2   ? BALLAST_LOG_ERROR
                             : level <= 4 ? BALLAST_LOG_WARN
                             : level <= 6 ? BALLAST_LOG_INFO
                                          : BALLAST_LOG_DEBUG;
    if (!c)
        return;
    /* A fatal error ends the run, which reports it (bl_on_fatal). */
    if (!strcmp(fac, "FATAL"))
        lv = BALLAST_LOG_DEBUG;
    /* Only librdkafka's main thread says it, so it is reported once. */
    if (strstr(buf, NO_CONSUMER_PROTOCOL) && !atomic_load(&c->run.failed))
        bl_set_fatal(c, bl_group_protocol_refused(c->conf, NO_CONSUMER_PROTOCOL));
    if (atomic_load(&c->clients.starting) && lv < BALLAST_LOG_DEBUG)
        lv = BALLAST_LOG_DEBUG;
    bl_log(&c->log, lv, "librdkafka %s: %s", fac, buf);
}

void bl_on_fatal(ballast_consumer_t *c, rd_kafka_t *rk)
{
    char fatal[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    bool fenced = bl_kafka_fenced(orig);

    /* A broker that lists the consumer group protocol's API but refuses
     * its version: no member can join. */
    if ((orig == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION ||
         orig == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) &&
        strstr(fatal, "ConsumerGroupHeartbeat")) {
        bl_set_fatal(c, bl_group_protocol_refused(c->conf, fatal));
        return;
    }
    if (orig == RD_KAFKA_RESP_ERR_UNSUPPORTED_ASSIGNOR) {
        bl_set_fatal(c, bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                     "kafka.group.remote.assignor: the broker has no "
                                     "assignor \"%s\" (%s)",
                                     bl_conf_str(c->conf, "kafka.group.remote.assignor"),
                                     fatal));
        return;
    }
    bl_set_fatal(c, bl_error_new(fenced ? BALLAST_ERR_FENCED : BALLAST_ERR_KAFKA, false, true,
                                 "kafka: fatal error: %s%s", fatal,
                                 fenced ? BL_FENCED_NOTE : ""));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ballast_consumer_t *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        bl_on_fatal(c, rk);
        return;
    }
    if (atomic_load(&c->clients.starting)) {
        pthread_mutex_lock(&c->clients.start_mtx);
        bl_kafka_note_cause(&c->clients.start_error, c->clients.start_reason,
                            sizeof(c->clients.start_reason), err, reason);
        pthread_mutex_unlock(&c->clients.start_mtx);
        return;
    }
    bl_log(&c->log, BALLAST_LOG_WARN, "kafka: %s", reason);
}

/* librdkafka properties that only one client type understands; each is
 * kept away from the other so that librdkafka does not warn about it. */
static bool producer_only(const char *name)
{
    static const char *const names[] = {
        "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
        "batch.num.messages", "batch.size", "compression.codec",
        "compression.type", "compression.level", "enable.idempotence",
        "transactional.id", "transaction.timeout.ms", "message.timeout.ms",
        "delivery.timeout.ms", "queue.buffering.max.messages",
        "queue.buffering.max.kbytes", "retries", "message.send.max.retries",
        "retry.backoff.ms", "partitioner", "sticky.partitioning.linger.ms",
        "enable.gapless.guarantee", "request.timeout.ms", "dr_msg_cb"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

static bool consumer_only(const char *name)
{
    static const char *const names[] = {
        "group.id", "group.instance.id", "partition.assignment.strategy",
        "session.timeout.ms", "heartbeat.interval.ms", "group.protocol.type",
        "group.protocol", "group.remote.assignor",
        "coordinator.query.interval.ms", "max.poll.interval.ms",
        "auto.commit.interval.ms", "queued.min.messages", "fetch.queue.backoff.ms",
        "queued.max.messages.kbytes", "fetch.wait.max.ms",
        "fetch.message.max.bytes", "max.partition.fetch.bytes",
        "fetch.max.bytes", "fetch.min.bytes", "fetch.error.backoff.ms",
        "offset.store.method", "check.crcs", "allow.auto.create.topics",
        "auto.offset.reset", "consume.callback.max.messages"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

typedef struct conf_build {
    rd_kafka_conf_t *rkconf;
    bool producer;
    ballast_error_t *err;
} conf_build_t;

static void apply_kafka_prop(const char *name, const char *value, void *opaque)
{
    conf_build_t *b = opaque;
    char errstr[256];

    if (b->err || (b->producer ? consumer_only(name) : producer_only(name)))
        return;
    if (rd_kafka_conf_set(b->rkconf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        b->err = bl_error_new(BALLAST_ERR_CONFIG, false, false, "kafka.%s: %s",
                              name, errstr);
}

/* A transactional.id that is stable across restarts of this instance (so
 * that a restart settles the transaction a crash left open) and distinct
 * from other hosts': ballast-<group>-<host>. Several instances on one host
 * need kafka.transactional.id set apart by hand. */
static const char *default_txn_id(ballast_consumer_t *c)
{
    static __thread char id[512];
    char host[256] = "localhost";

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    bl_fmt(id, sizeof(id), "ballast-%s-%s", c->set.group, host);
    return id;
}

static ballast_error_t *set_prop(rd_kafka_conf_t *rkconf, const char *name,
                                 const char *value)
{
    char errstr[256];

    if (rd_kafka_conf_set(rkconf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "kafka.%s: %s",
                            name, errstr);
    return NULL;
}

/* The consumer's defaults. */
static ballast_error_t *consumer_defaults(rd_kafka_conf_t *rkconf,
                                         const ballast_conf_t *conf)
{
    /* librdkafka's prefetch queue follows the in-flight byte limit, so
     * that memory stays bounded by max.inflight.bytes twice over plus a
     * fixed overhead; within that, fetch deep. A fetcher that found its
     * queue full looks again fetch.queue.backoff.ms later (librdkafka's
     * default is a second, which a fast handler empties many times over). */
    char kbytes[32];
    int64_t kb = bl_conf_int(conf, "max.inflight.bytes") / 1024;
    ballast_error_t *err;

    bl_fmt(kbytes, sizeof(kbytes), "%lld",
           (long long)(kb < 1024 ? 1024 : kb > 2097151 ? 2097151 : kb));
    err = set_prop(rkconf, "queued.max.messages.kbytes", kbytes);
    if (!err)
        err = set_prop(rkconf, "queued.min.messages", "1000000");
    if (!err)
        err = set_prop(rkconf, "fetch.queue.backoff.ms", "20");
    if (!err)
        err = set_prop(rkconf, "auto.offset.reset", "earliest");
    if (!err)
        err = set_prop(rkconf, "enable.auto.offset.store", "false");
    if (!err)
        err = set_prop(rkconf, "enable.partition.eof", "false");
    /* Exactly-once commits offsets inside transactions only, and must
     * not read records of aborted transactions. */
    /* ballast commits itself (commit.c), with metadata. */
    if (!err)
        err = set_prop(rkconf, "enable.auto.commit", "false");
    if (!err)
        err = set_prop(rkconf, "isolation.level", "read_committed");
    return err;
}

/* Whether @p rkconf joins its group with the consumer group protocol
 * (KIP-848) rather than the classic one. */
static bool consumer_protocol(rd_kafka_conf_t *rkconf)
{
    char protocol[32];
    size_t len = sizeof(protocol);

    return rd_kafka_conf_get(rkconf, "group.protocol", protocol, &len) == RD_KAFKA_CONF_OK &&
           !strcmp(protocol, "consumer");
}

/* The classic protocol's assignor, unless kafka.partition.assignment.strategy
 * names one: cooperative-sticky, so that a rebalance moves only the
 * partitions that change owner and the others keep being consumed
 * (librdkafka's default, range,roundrobin, is eager: every member gives up
 * everything). The consumer protocol refuses the key: the broker assigns. */
static ballast_error_t *default_assignor(rd_kafka_conf_t *rkconf, const ballast_conf_t *conf)
{
    if (consumer_protocol(rkconf) ||
        ballast_conf_get(conf, "kafka.partition.assignment.strategy"))
        return NULL;
    return set_prop(rkconf, "partition.assignment.strategy", "cooperative-sticky");
}

/* librdkafka (2.14) does not report a broker that lacks the consumer group
 * protocol as an error: it marks the coordinator dead and looks for one
 * again, every second, forever, and says why only in its cgrp debug log.
 * So under that protocol the consumer logs cgrp debug lines (a few per
 * heartbeat), and log_cb turns that one into a start-up error. */
static ballast_error_t *watch_group_protocol(rd_kafka_conf_t *rkconf)
{
    char debug[480], both[512];
    size_t len;

    if (!consumer_protocol(rkconf))
        return NULL;
    len = sizeof(debug);
    if (rd_kafka_conf_get(rkconf, "debug", debug, &len) != RD_KAFKA_CONF_OK)
        debug[0] = '\0';
    if (strstr(debug, "cgrp") || strstr(debug, "all"))
        return NULL;
    bl_fmt(both, sizeof(both), "%s%scgrp", debug, *debug ? "," : "");
    return set_prop(rkconf, "debug", both);
}

ballast_error_t *bl_consumer_conf_new(const ballast_conf_t *conf,
                                      rd_kafka_conf_t **rkconfp)
{
    conf_build_t b = {rd_kafka_conf_new(), false, NULL};

    b.err = consumer_defaults(b.rkconf, conf);
    if (!b.err)
        bl_conf_each_prefixed(conf, "kafka.", apply_kafka_prop, &b);
    if (!b.err)
        b.err = default_assignor(b.rkconf, conf);
    if (!b.err)
        b.err = watch_group_protocol(b.rkconf);
    if (b.err) {
        rd_kafka_conf_destroy(b.rkconf);
        return b.err;
    }
    *rkconfp = b.rkconf;
    return NULL;
}

ballast_error_t *bl_make_client(ballast_consumer_t *c, bool producer,
                                    rd_kafka_t **rkp)
{
    conf_build_t b = {NULL, producer, NULL};
    char errstr[512];

    if (rd_kafka_version() < BL_RDKAFKA_FLOOR)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "librdkafka %s is loaded, ballast needs " BL_RDKAFKA_FLOOR_STR
                            " or later (the process loaded another librdkafka.so.1 first)",
                            rd_kafka_version_str());

    /* Reliable defaults first; the user's kafka.* keys may override them
     * (except the managed ones, which conf.c refuses). */
    if (!producer) {
        if ((b.err = bl_consumer_conf_new(c->conf, &b.rkconf)))
            return b.err;
    } else {
        b.rkconf = rd_kafka_conf_new();
        /* As large as the broker accepts by default (1048588), so that the
         * dead-letter copy of a value near the limit, with its extra
         * headers, still fits; librdkafka's own default is 1000000. */
        b.err = set_prop(b.rkconf, "message.max.bytes", "1048588");
        if (!b.err)
            b.err = set_prop(b.rkconf, "enable.idempotence", "true");
        /* librdkafka's idempotent producer (2.14 too) busy-loops its broker
         * thread while a produce request is outstanding once the next
         * batch's linger has passed. With 5 ms (its default) that is most
         * of every round trip longer than 5 ms; with 100 ms (Kafka
         * Streams' choice, for the same kind of consume-transform-produce
         * work) it is rare. A flush, a stop and a transaction commit send
         * at once regardless. Exactly-once into a database keeps 5 ms: a
         * worker waits there for each dead letter's acknowledgement before
         * its transaction commits. */
        if (!b.err && c->set.semantics != BL_EXACTLY_ONCE_DB)
            b.err = set_prop(b.rkconf, "linger.ms", "100");
        if (!b.err && c->set.semantics == BL_EXACTLY_ONCE_KAFKA)
            b.err = set_prop(b.rkconf, "transactional.id", default_txn_id(c));
        if (!b.err)
            bl_conf_each_prefixed(c->conf, "kafka.", apply_kafka_prop, &b);
    }
    if (b.err) {
        rd_kafka_conf_destroy(b.rkconf);
        return b.err;
    }
    rd_kafka_conf_set_opaque(b.rkconf, c);
    rd_kafka_conf_set_log_cb(b.rkconf, log_cb);
    rd_kafka_conf_set_error_cb(b.rkconf, error_cb);
    if (producer)
        rd_kafka_conf_set_dr_msg_cb(b.rkconf, c->clients.cbs->delivered);
    else {
        rd_kafka_conf_set_rebalance_cb(b.rkconf, c->clients.cbs->rebalanced);
        rd_kafka_conf_set_offset_commit_cb(b.rkconf, c->clients.cbs->committed);
    }
    *rkp = rd_kafka_new(producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER,
                        b.rkconf, errstr, sizeof(errstr));
    if (!*rkp) {
        rd_kafka_conf_destroy(b.rkconf);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka: cannot create the %s: %s",
                            producer ? "producer" : "consumer", errstr);
    }
    return NULL;
}

/* ---- start-up ---------------------------------------------------------- */

/* Serves librdkafka's error events while starting (nothing is subscribed
 * yet, so no message can arrive) and turns the ones no retry can fix -- the
 * broker refused our credentials or certificate -- into a configuration
 * error at once, instead of waiting out startup.timeout.ms. */
static ballast_error_t *start_refused(ballast_consumer_t *c)
{
    rd_kafka_message_t *rkm;
    ballast_error_t *err;

    while ((rkm = rd_kafka_consumer_poll(c->rk, 0)))
        rd_kafka_message_destroy(rkm);
    pthread_mutex_lock(&c->clients.start_mtx);
    err = bl_kafka_refused(c->clients.start_error, c->clients.start_reason);
    pthread_mutex_unlock(&c->clients.start_mtx);
    return err;
}

/* Says what start-up waits for, every few seconds, so that a person
 * watching is not left guessing: "waiting for 127.0.0.1:1 (Connection
 * refused), 5 s of 30". */
static void note_waiting(ballast_consumer_t *c, int64_t start, int64_t timeout,
                         rd_kafka_resp_err_t err)
{
    char why[256];
    const char *cut;

    pthread_mutex_lock(&c->clients.start_mtx);
    /* librdkafka's "<broker>: Connect to <address> failed: <reason> (after
     * ...)" is long; its reason is what matters. */
    cut = strstr(c->clients.start_reason, " failed: ");
    bl_fmt(why, sizeof(why), "%s",
           cut                        ? cut + 9
           : *c->clients.start_reason ? c->clients.start_reason
                                      : rd_kafka_err2str(err));
    pthread_mutex_unlock(&c->clients.start_mtx);
    if ((cut = strstr(why, " (after ")))
        why[cut - why] = '\0';
    bl_log(&c->log, BALLAST_LOG_INFO, "waiting for %s (%s), %lld s of %lld",
           bl_conf_str(c->conf, "kafka.bootstrap.servers"), why,
           (long long)((bl_now_ms() - start) / 1000), (long long)(timeout / 1000));
}

/* Start-up's questions to the cluster, each asked in short rounds until it
 * answers or startup.timeout.ms (from the first question) has passed, and
 * the first topic the configuration needs that the cluster lacks. */
typedef struct topic_check {
    ballast_consumer_t *c;
    int64_t timeout, start, deadline, next_note;
    const struct rd_kafka_metadata *all; /* every topic's, when asked for */
    bool answered;                       /* the cluster has answered a question */
    ballast_error_t *err;
} topic_check_t;

/* Asks the cluster, as the consumer, about @p rkt's topic, or about every
 * topic (@p rkt NULL, @p all_topics 1), or about its brokers (NULL, 0).
 * @returns NULL with *mdp set, or the error that ends start-up. */
static ballast_error_t *ask_cluster(topic_check_t *tc, int all_topics, rd_kafka_topic_t *rkt,
                                    const struct rd_kafka_metadata **mdp)
{
    ballast_consumer_t *c = tc->c;
    rd_kafka_resp_err_t err;
    ballast_error_t *fail;

    for (;;) {
        int64_t left = tc->deadline - bl_now_ms();
        /* Short rounds, so that a stop during start-up is prompt. */
        err = rd_kafka_metadata(c->rk, all_topics, rkt, mdp,
                                (int)(left < 100 ? 100 : left > 500 ? 500 : left));
        if (!err || bl_now_ms() >= tc->deadline)
            break;
        if ((fail = start_refused(c)))
            return fail;
        if (!bl_kafka_waitable(err))
            break;
        if (bl_conf_stop_requested(c->conf))
            return bl_error_new(BALLAST_ERR_STOPPED, false, false,
                                "stopped while waiting for the broker");
        if (bl_now_ms() >= tc->next_note) {
            note_waiting(c, tc->start, tc->timeout, err);
            tc->next_note += 5000;
        }
    }
    if (!err) {
        tc->answered = true;
        return NULL;
    }
    pthread_mutex_lock(&c->clients.start_mtx);
    fail = bl_kafka_unreachable(c->conf, tc->timeout, *c->clients.start_reason
                                                         ? c->clients.start_reason
                                                         : rd_kafka_err2str(err));
    pthread_mutex_unlock(&c->clients.start_mtx);
    return fail;
}

/* Whether a question naming a topic lets the broker create it: the
 * client allows that (kafka.allow.auto.create.topics = true; the
 * consumer's default is false). */
static bool may_create_topics(rd_kafka_t *rk)
{
    char value[16];
    size_t size = sizeof(value);

    return rd_kafka_conf_get(rd_kafka_conf(rk), "allow.auto.create.topics", value, &size) ==
               RD_KAFKA_CONF_OK &&
           !strcmp(value, "true");
}

/* Asks about each needed topic alone (a pattern needs no question), so
 * that start-up reads the few topics it needs, not every topic of a
 * cluster that may hold thousands; with every topic's answer at hand,
 * looks there. */
static void check_topic(const char *key, const char *topic, void *opaque)
{
    static const struct rd_kafka_metadata no_topics;
    topic_check_t *tc = opaque;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;

    if (tc->err)
        return;
    if (tc->all || topic[0] == '^') {
        tc->err = bl_topic_missing(tc->all ? tc->all : &no_topics, key, topic);
        return;
    }
    /* A name librdkafka refuses is no topic of any cluster. */
    if (!(rkt = rd_kafka_topic_new(tc->c->rk, topic, NULL))) {
        tc->err = bl_topic_missing(&no_topics, key, topic);
        return;
    }
    if (!(tc->err = ask_cluster(tc, 0, rkt, &md))) {
        tc->err = bl_topic_missing(md, key, topic);
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
}

ballast_error_t *bl_clients_check_cluster(ballast_consumer_t *c)
{
    topic_check_t tc = {.c = c, .timeout = bl_conf_int(c->conf, "startup.timeout.ms")};
    const struct rd_kafka_metadata *md = NULL;

    tc.start = bl_now_ms();
    tc.deadline = tc.start + tc.timeout;
    tc.next_note = tc.start + 5000;
    /* Where a question naming a missing topic would create it, the check
     * would make what it should find missing: such a consumer asks for
     * every topic instead. */
    if (may_create_topics(c->rk) && (tc.err = ask_cluster(&tc, 1, NULL, &tc.all)))
        return tc.err;
    bl_each_needed_topic(c->conf, check_topic, &tc);
    /* Patterns only: the cluster must still answer before the run. */
    if (!tc.err && !tc.answered && !(tc.err = ask_cluster(&tc, 0, NULL, &md)))
        rd_kafka_metadata_destroy(md);
    if (tc.all)
        rd_kafka_metadata_destroy(tc.all);
    return tc.err;
}

/* ---- offsets and destruction ---------------------------------------------- */

rd_kafka_resp_err_t bl_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list,
                                 int timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    rd_kafka_resp_err_t err;

    while (bl_lag_coordinator_moving(err = rd_kafka_committed(rk, list, timeout_ms)) &&
           bl_now_ms() + 100 < deadline) {
        bl_sleep_ms(100);
        timeout_ms = (int)(deadline - bl_now_ms());
    }
    return err;
}

/* rd_kafka_destroy() on a thread of its own, waited for DESTROY_TIMEOUT_MS:
 * librdkafka has had destroys that hang, and a stop must end. */
static void *destroy_main(void *rk)
{
    rd_kafka_destroy(rk);
    return NULL;
}

void bl_client_destroy(ballast_consumer_t *c, rd_kafka_t *rk, const char *what)
{
    struct timespec deadline;
    pthread_t t;

    if (pthread_create(&t, NULL, destroy_main, rk)) {
        rd_kafka_destroy(rk);
        return;
    }
    deadline = bl_deadline(DESTROY_TIMEOUT_MS);
    if (pthread_timedjoin_np(t, NULL, &deadline)) {
        bl_log(&c->log, BALLAST_LOG_WARN, "kafka: the %s did not close within %d s; "
               "leaving it", what, DESTROY_TIMEOUT_MS / 1000);
        pthread_detach(t);
    }
}
