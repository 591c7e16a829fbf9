/*
 * support.c - helpers shared by the mock, cli and integration suites.
 */
#include "support.h"

#include "clients.h"

#include <librdkafka/rdkafka_mock.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *bt_bootstrap(void)
{
    const char *v = getenv("BALLAST_TEST_BOOTSTRAP");
    return v && *v ? v : NULL;
}

const char *bt_pg(void)
{
    const char *v = getenv("BALLAST_TEST_PG");
    return v && *v ? v : NULL;
}

const char *bt_pg_pw_dsn(void)
{
    const char *v = getenv("BALLAST_TEST_PG_PW_DSN");
    if (!v || !*v)
        fail_msg("BALLAST_TEST_PG_PW_DSN is unset: this scripts/testenv predates the "
                 "password role; run `eval \"$(scripts/testenv up)\"` again");
    return v;
}

bool bt_consumer_protocol(void)
{
    const char *v = getenv("BALLAST_TEST_GROUP_PROTOCOL");

    if (!v || !*v || !strcmp(v, "classic"))
        return false;
    if (strcmp(v, "consumer"))
        fail_msg("BALLAST_TEST_GROUP_PROTOCOL=%s: expected classic or consumer", v);
    return true;
}

const char *bt_group_protocol(void)
{
    return bt_consumer_protocol() ? "consumer" : "classic";
}

void bt_header_text(rd_kafka_headers_t *h, const char *name, char *out, size_t size)
{
    const void *v;
    size_t len;

    out[0] = '\0';
    if (h && !rd_kafka_header_get_last(h, name, &v, &len) && v)
        snprintf(out, size, "%.*s", (int)len, (const char *)v);
}

rd_kafka_t *bt_member_join(rd_kafka_conf_t *conf, const char *topic, int partitions,
                           int timeout_ms)
{
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1), *assigned;
    int64_t deadline = bt_now_ms() + timeout_ms;
    char errstr[256];
    rd_kafka_t *rk;

    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))))
        fail_msg("consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, subs), 0);
    rd_kafka_topic_partition_list_destroy(subs);
    for (bool done = false; !done;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m)
            rd_kafka_message_destroy(m);
        assert_int_equal(rd_kafka_assignment(rk, &assigned), 0);
        done = partitions ? assigned->cnt == partitions : assigned->cnt > 0;
        rd_kafka_topic_partition_list_destroy(assigned);
        if (!done && bt_now_ms() > deadline)
            fail_msg("a member subscribed to %s got no assignment in %d s", topic,
                     timeout_ms / 1000);
    }
    return rk;
}

rd_kafka_t *bt_member_start(const char *group, const char *topic, const char *protocol,
                            const char *client_id, int partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "group.protocol", protocol, NULL, 0);
    rd_kafka_conf_set(conf, "client.id", client_id, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    return bt_member_join(conf, topic, partitions, 60000);
}

const char *bt_group_lines(void)
{
    static char lines[256];
    const char *assignor = getenv("BALLAST_TEST_ASSIGNOR");
    int n;

    if (bt_consumer_protocol())
        return "kafka.group.protocol = consumer\n";
    n = snprintf(lines, sizeof(lines),
                 "kafka.session.timeout.ms = 6000\nkafka.heartbeat.interval.ms = 500\n");
    if (assignor && *assignor)
        snprintf(lines + n, sizeof(lines) - (size_t)n,
                 "kafka.partition.assignment.strategy = %s\n", assignor);
    return lines;
}

/* Sets each "key = value" line of @p lines on @p conf. */
static void set_lines(ballast_conf_t *conf, const char *lines)
{
    char key[128], value[128];

    for (const char *line = lines; *line;) {
        const char *nl = strchr(line, '\n');
        if (sscanf(line, "%127s = %127[^\n]", key, value) != 2)
            fail_msg("not a key = value line: %s", line);
        bt_set(conf, key, value);
        line = nl ? nl + 1 : line + strlen(line);
    }
}

void bt_set_group(ballast_conf_t *conf)
{
    set_lines(conf, bt_group_lines());
}

const char *bt_cooperative_lines(void)
{
    return bt_consumer_protocol() ? ""
                                  : "kafka.partition.assignment.strategy = cooperative-sticky\n";
}

void bt_set_cooperative(ballast_conf_t *conf)
{
    set_lines(conf, bt_cooperative_lines());
}

void bt_assert_one_line(const char *text, const char *fragment)
{
    const char *nl;

    assert_non_null(text);
    nl = strchr(text, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("expected exactly one line, got: %s", text);
    if (fragment && !strstr(text, fragment))
        fail_msg("\"%s\" is not mentioned in: %s", fragment, text);
}

int64_t bt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *bt_unique(const char *prefix)
{
    static char ring[16][160];
    static int next, counter;
    char *buf = ring[next++ % 16];

    snprintf(buf, sizeof(ring[0]), "%s-%d-%d-%lld", prefix, (int)getpid(),
             ++counter, (long long)time(NULL));
    return buf;
}

bool bt_wait_for(bool (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;

    for (;;) {
        if (cond(arg))
            return true;
        if (bt_now_ms() >= deadline)
            return false;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- tests of bugs not fixed yet ------------------------------------------ */

/* The exit code ctest reports as "skipped" (SKIP_RETURN_CODE in
 * tests/CMakeLists.txt). */
#define SKIPPED 77

int bt_run_group(const char *name, const struct CMUnitTest *tests, size_t count,
                 CMFixtureFunction setup, CMFixtureFunction teardown)
{
    /* Set by the known-bug ctest entry of the suite. */
    bool bug_entry = getenv("BALLAST_KNOWN_BUG_ENTRY") != NULL;
    const char *asked = getenv("BALLAST_KNOWN_BUGS");
    struct CMUnitTest *chosen = calloc(count ? count : 1, sizeof(*chosen));
    size_t n = 0;
    int rc;

    assert_non_null(chosen);
    for (size_t i = 0; i < count; i++) {
        bool known_bug = !strncmp(tests[i].name, "known bug: ", 11);
        if (known_bug == bug_entry)
            chosen[n++] = tests[i];
    }
    if (bug_entry && (!asked || !*asked || !strcmp(asked, "0"))) {
        printf("%s: %zu test(s) of bugs not fixed yet, not run; "
               "BALLAST_KNOWN_BUGS=1 ctest -L known-bug runs them\n",
               name, n);
        free(chosen);
        return SKIPPED;
    }
    rc = _cmocka_run_group_tests(name, chosen, n, setup, teardown);
    free(chosen);
    return rc;
}

/* ---- Kafka helpers ------------------------------------------------------ */

static rd_kafka_t *make_client(rd_kafka_type_t type, const char *bootstrap,
                               const char *group)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    if (group)
        rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
        rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
    }
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    return rk;
}

void bt_deny(const char *bootstrap, rd_kafka_ResourceType_t type, const char *name,
             const char *principal, rd_kafka_AclOperation_t operation)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    char errstr[256];
    rd_kafka_AclBinding_t *acl = rd_kafka_AclBinding_new(
        type, name, RD_KAFKA_RESOURCE_PATTERN_LITERAL, principal, "*", operation,
        RD_KAFKA_ACL_PERMISSION_TYPE_DENY, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev;
    const rd_kafka_acl_result_t **results;
    size_t n;

    if (!acl)
        fail_msg("ACL for %s: %s", name, errstr);
    rd_kafka_CreateAcls(rk, &acl, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    if (rd_kafka_event_error(ev))
        fail_msg("create ACL for %s: %s (the test broker needs its authorizer: "
                 "scripts/testenv restart-kafka)",
                 name, rd_kafka_event_error_string(ev));
    results = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &n);
    assert_int_equal(n, 1);
    if (rd_kafka_acl_result_error(results[0]))
        fail_msg("create ACL for %s: %s", name,
                 rd_kafka_error_string(rd_kafka_acl_result_error(results[0])));
    rd_kafka_event_destroy(ev);
    rd_kafka_AclBinding_destroy(acl);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

void bt_create_topic(const char *bootstrap, const char *topic, int partitions)
{
    bt_create_topic_conf(bootstrap, topic, partitions, NULL);
}

void bt_create_topic_conf(const char *bootstrap, const char *topic, int partitions,
                          const char *const *config)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    /* -1: the broker's default.replication.factor (1, or 3 on a cluster). */
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, NULL, 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev;
    const rd_kafka_CreateTopics_result_t *res;
    const rd_kafka_topic_result_t **results;
    size_t n;

    for (size_t i = 0; config && config[i]; i += 2)
        assert_int_equal(rd_kafka_NewTopic_set_config(nt, config[i], config[i + 1]), 0);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    res = rd_kafka_event_CreateTopics_result(ev);
    assert_non_null(res);
    results = rd_kafka_CreateTopics_result_topics(res, &n);
    assert_int_equal(n, 1);
    if (rd_kafka_topic_result_error(results[0]) &&
        rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        fail_msg("create topic %s: %s", topic,
                 rd_kafka_topic_result_error_string(results[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    /* Wait until the topic's partitions all have leaders. */
    for (int64_t deadline = bt_now_ms() + 30000;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        bool ready = false;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000)) {
            ready = md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt == partitions;
            for (int i = 0; ready && i < md->topics[0].partition_cnt; i++)
                if (md->topics[0].partitions[i].leader < 0)
                    ready = false;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (ready)
            break;
        if (bt_now_ms() > deadline)
            fail_msg("topic %s did not become ready", topic);
        usleep(100 * 1000);
    }
    rd_kafka_destroy(rk);
}

void bt_alter_topic_conf(const char *bootstrap, const char *topic,
                         const char *const *config)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    const rd_kafka_ConfigResource_t **results;
    rd_kafka_event_t *ev;
    size_t n;

    for (size_t i = 0; config && config[i]; i += 2)
        assert_int_equal(rd_kafka_ConfigResource_set_config(cr, config[i], config[i + 1]), 0);
    rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    if (rd_kafka_event_error(ev))
        fail_msg("alter configs of %s: %s", topic, rd_kafka_event_error_string(ev));
    results = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev),
                                                     &n);
    assert_int_equal(n, 1);
    if (rd_kafka_ConfigResource_error(results[0]))
        fail_msg("alter configs of %s: %s", topic,
                 rd_kafka_ConfigResource_error_string(results[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

void bt_produce_seq(const char *bootstrap, const char *topic, int partitions,
                    int first, int count, int keys)
{
    bt_produce_seq_sized(bootstrap, topic, partitions, first, count, keys, 0);
}

void bt_produce_seq_sized(const char *bootstrap, const char *topic, int partitions,
                          int first, int count, int keys, size_t value_len)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_PRODUCER, bootstrap, NULL);
    char *value = malloc(value_len + 32);

    assert_non_null(value);
    for (int i = first; i < first + count; i++) {
        char key[32];
        rd_kafka_resp_err_t err;
        size_t len;
        snprintf(key, sizeof(key), "k%d", keys ? i % keys : 0);
        len = (size_t)snprintf(value, 32, "%d", i);
        if (len < value_len) {
            memset(value + len, '.', value_len - len);
            len = value_len;
        }
        do {
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic),
                RD_KAFKA_V_PARTITION((partitions ? i % partitions : RD_KAFKA_PARTITION_UA)),
                RD_KAFKA_V_KEY((keys ? key : NULL), (keys ? strlen(key) : 0)),
                RD_KAFKA_V_VALUE(value, len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 50);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        assert_int_equal(err, 0);
        rd_kafka_poll(rk, 0);
    }
    free(value);
    assert_int_equal(rd_kafka_flush(rk, 60000), 0);
    rd_kafka_destroy(rk);
}

void bt_commit(const char *bootstrap, const char *group, const char *topic,
               const int64_t *offsets, int n)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_CONSUMER, bootstrap, group);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);

    for (int i = 0; i < n; i++)
        if (offsets[i] >= 0)
            rd_kafka_topic_partition_list_add(list, topic, i)->offset = offsets[i];
    if (list->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, 0);
        if (err)
            fail_msg("commit for %s: %s", group, rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
}

/* The client bt_committed() asks with, kept while the same group is asked
 * about: the fault tests ask every few tens of milliseconds, and a client a
 * question (connect, metadata, the coordinator's lookup) would load the
 * machine they measure. */
static struct {
    pthread_mutex_t mtx;
    rd_kafka_t *rk;
    char *bootstrap, *group;
} committed_client = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL};

static void committed_client_free(void)
{
    if (committed_client.rk)
        rd_kafka_destroy(committed_client.rk);
    free(committed_client.bootstrap);
    free(committed_client.group);
    committed_client.rk = NULL;
    committed_client.bootstrap = committed_client.group = NULL;
}

/* The kept client for @p group on @p bootstrap (under the mutex; NULL when
 * it cannot be made: the caller fails once it let the mutex go); *kept says
 * whether an earlier call made it. */
static rd_kafka_t *committed_client_for(const char *bootstrap, const char *group, bool *kept)
{
    static bool registered;
    rd_kafka_conf_t *conf;

    *kept = committed_client.rk && !strcmp(committed_client.bootstrap, bootstrap) &&
            !strcmp(committed_client.group, group);
    if (*kept)
        return committed_client.rk;
    committed_client_free();
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    committed_client.bootstrap = strdup(bootstrap);
    committed_client.group = strdup(group);
    if (!committed_client.bootstrap || !committed_client.group ||
        !(committed_client.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, NULL, 0))) {
        committed_client_free();
        return NULL;
    }
    if (!registered) {
        registered = true;
        atexit(committed_client_free);
    }
    return committed_client.rk;
}

void bt_committed(const char *bootstrap, const char *group, const char *topic,
                  int n, int64_t *out)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    bool kept;

    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(list, topic, i);
    pthread_mutex_lock(&committed_client.mtx);
    rk = committed_client_for(bootstrap, group, &kept);
    /* The library's: asked again while the coordinator loads or moves. */
    err = rk ? bl_committed(rk, list, 30000) : RD_KAFKA_RESP_ERR__FAIL;
    if (err && kept) {
        /* A client kept across a broker restart can stay stuck on the old
         * coordinator (a timeout after 30 s): a fresh one asks once more.
         * A fresh client that failed would only fail again. */
        committed_client_free();
        rk = committed_client_for(bootstrap, group, &kept);
        err = rk ? bl_committed(rk, list, 30000) : RD_KAFKA_RESP_ERR__FAIL;
    }
    if (err)
        committed_client_free(); /* the next question starts afresh */
    pthread_mutex_unlock(&committed_client.mtx);
    if (err)
        fail_msg("committed(%s): %s", group, rd_kafka_err2str(err));
    for (int i = 0; i < n; i++)
        out[i] = list->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(list);
}

bool bt_wait_committed_to_end(const char *bootstrap, const char *group,
                              const char *topic, int n, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms, hwm[64], committed[64];

    assert_true(n <= 64);
    for (;;) {
        bool done = true;
        bt_high_watermarks(bootstrap, topic, n, hwm);
        bt_committed(bootstrap, group, topic, n, committed);
        for (int i = 0; i < n; i++)
            done = done && committed[i] == hwm[i];
        if (done)
            return true;
        if (bt_now_ms() > deadline)
            return false;
        usleep(200 * 1000);
    }
}

void bt_high_watermarks(const char *bootstrap, const char *topic, int n,
                        int64_t *out)
{
    rd_kafka_t *rk = make_client(RD_KAFKA_PRODUCER, bootstrap, NULL);

    for (int i = 0; i < n; i++) {
        int64_t lo, hi, deadline = bt_now_ms() + 30000;
        rd_kafka_resp_err_t err;
        /* Leadership may still be settling (new topic, broker restart). */
        while ((err = rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000)) &&
               bt_now_ms() < deadline)
            usleep(200 * 1000);
        if (err)
            fail_msg("watermarks(%s [%d]): %s", topic, i, rd_kafka_err2str(err));
        out[i] = hi;
    }
    rd_kafka_destroy(rk);
}

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

int64_t bt_total_watermark(const char *bootstrap, const char *topic, int n)
{
    int64_t hwm[64], sum = 0;

    assert_true(n <= 64);
    bt_high_watermarks(bootstrap, topic, n, hwm);
    for (int i = 0; i < n; i++)
        sum += hwm[i];
    return sum;
}

static bt_record_t *consume(const char *bootstrap, const char *topic,
                            size_t expect, int timeout_ms, bool to_end,
                            size_t *countp);

bt_record_t *bt_consume_all(const char *bootstrap, const char *topic,
                            size_t expect, int timeout_ms, size_t *countp)
{
    return consume(bootstrap, topic, expect, timeout_ms, false, countp);
}

bt_record_t *bt_consume_to_end(const char *bootstrap, const char *topic,
                               int timeout_ms, size_t *countp)
{
    return consume(bootstrap, topic, SIZE_MAX, timeout_ms, true, countp);
}

/* A partition's end under read_committed is its last stable offset: a
 * transaction still open holds it below the high watermark, and the
 * committed records written after that transaction's first one are not
 * readable yet. The end counts only once it reaches the high watermark
 * (the open transaction committed or aborted); until then the reader waits,
 * and says so once. The high watermark is asked of @p hw, a read_uncommitted
 * client: a read_committed one is answered with the last stable offset. */
static atomic_int reader_waits;

int bt_reader_open_txn_waits(void)
{
    return atomic_load(&reader_waits);
}

static bool at_true_end(rd_kafka_t *hw, const char *topic, const rd_kafka_message_t *eof,
                        bool *told)
{
    int64_t lo, hi;

    if (rd_kafka_query_watermark_offsets(hw, topic, eof->partition, &lo, &hi, 10000))
        return false; /* asked again at the next end */
    if (eof->offset >= hi)
        return true;
    if (!*told) {
        atomic_fetch_add(&reader_waits, 1);
        printf("%s [%d]: read_committed end at %lld, below the high watermark %lld: "
               "a transaction is still open; waiting for it to end\n",
               topic, (int)eof->partition, (long long)eof->offset, (long long)hi);
        fflush(stdout);
        *told = true;
    }
    return false;
}

/* The position of a partition waiting behind an open transaction, checked
 * again each second: the end it reaches once the transaction ends may come
 * with no new record, and so with no new end event. */
static int recheck_waiting(rd_kafka_t *rk, rd_kafka_t *hw, const char *topic, int parts,
                           char *ended, char *waiting, bool *told)
{
    int more = 0;

    for (int p = 0; p < parts && p < 256; p++) {
        rd_kafka_topic_partition_list_t *pos;
        rd_kafka_message_t eof = {.partition = p};
        if (!waiting[p])
            continue;
        pos = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pos, topic, p);
        if (!rd_kafka_position(rk, pos) && pos->elems[0].offset >= 0) {
            eof.offset = pos->elems[0].offset;
            if (at_true_end(hw, topic, &eof, &told[p])) {
                waiting[p] = 0;
                ended[p] = 1;
                more++;
            }
        }
        rd_kafka_topic_partition_list_destroy(pos);
    }
    return more;
}

static bt_record_t *consume_as(const char *bootstrap, const char *topic, size_t expect,
                               int timeout_ms, bool to_end, const char *isolation,
                               size_t *countp)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    int parts = 0, at_end = 0;
    char ended[256] = {0}, waiting[256] = {0};
    bool told[256] = {0};
    rd_kafka_t *hw = NULL;
    int64_t recheck = 0;

    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "bt-reader", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", isolation, NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", to_end ? "true" : "false", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    if (to_end && !strcmp(isolation, "read_committed")) {
        conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
        rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
        rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", NULL, 0);
        hw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        assert_non_null(hw);
    }
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_topic_partition_list_t *assign;
    bt_record_t *recs = NULL;
    size_t count = 0, cap = 0;
    int64_t deadline = bt_now_ms() + timeout_ms;

    assert_int_equal(rd_kafka_metadata(rk, 0, rkt, &md, 10000), 0);
    parts = md->topics[0].partition_cnt;
    assign = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(assign, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    assert_int_equal(rd_kafka_assign(rk, assign), 0);
    rd_kafka_topic_partition_list_destroy(assign);
    while (count < expect && bt_now_ms() < deadline && !(to_end && at_end == parts)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (bt_now_ms() >= recheck) {
            at_end += recheck_waiting(rk, hw, topic, parts, ended, waiting, told);
            recheck = bt_now_ms() + 1000;
        }
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition < 256 &&
            !ended[m->partition]) {
            if (!hw || at_true_end(hw, topic, m, &told[m->partition])) {
                ended[m->partition] = 1;
                waiting[m->partition] = 0;
                at_end++;
            } else {
                waiting[m->partition] = 1;
            }
        }
        if (!m->err) {
            if (m->partition < 256 && ended[m->partition]) {
                ended[m->partition] = 0; /* more arrived after its end */
                at_end--;
            }
            if (count == cap) {
                cap = cap ? cap * 2 : 1024;
                recs = realloc(recs, cap * sizeof(*recs));
                assert_non_null(recs);
            }
            recs[count].partition = m->partition;
            recs[count].offset = m->offset;
            recs[count].key = dup_bytes(m->key, m->key_len);
            recs[count].value = dup_bytes(m->payload, m->len);
            count++;
        }
        rd_kafka_message_destroy(m);
    }
    if (to_end && at_end != parts)
        fail_msg("%s: did not reach the end of every partition within %d ms%s",
                 topic, timeout_ms,
                 memchr(waiting, 1, sizeof(waiting)) ? " (a transaction stayed open)" : "");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (hw)
        rd_kafka_destroy(hw);
    *countp = count;
    return recs;
}

static bt_record_t *consume(const char *bootstrap, const char *topic,
                            size_t expect, int timeout_ms, bool to_end,
                            size_t *countp)
{
    return consume_as(bootstrap, topic, expect, timeout_ms, to_end, "read_committed",
                      countp);
}

bt_record_t *bt_consume_uncommitted(const char *bootstrap, const char *topic,
                                    int timeout_ms, size_t *countp)
{
    return consume_as(bootstrap, topic, SIZE_MAX, timeout_ms, true, "read_uncommitted",
                      countp);
}

void bt_records_free(bt_record_t *recs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(recs[i].key);
        free(recs[i].value);
    }
    free(recs);
}

/* ---- files and processes ------------------------------------------------ */

void bt_write_file(const char *path, const char *fmt, ...)
{
    FILE *fp = fopen(path, "w");
    va_list ap;

    if (!fp)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    va_start(ap, fmt);
    vfprintf(fp, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(fp), 0);
}

int bt_sh(char **out, char **err, const char *fmt, ...)
{
    char cmd[4096], line[5000], out_path[600], err_path[600];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(out_path, sizeof(out_path), "%s/sh.out", bt_tmpdir());
    snprintf(err_path, sizeof(err_path), "%s/sh.err", bt_tmpdir());
    if (err)
        snprintf(line, sizeof(line), "{ %s ; } </dev/null >'%s' 2>'%s'", cmd, out_path, err_path);
    else
        snprintf(line, sizeof(line), "{ %s ; } </dev/null >'%s' 2>&1", cmd, out_path);
    rc = system(line);
    *out = bt_read_file(out_path);
    assert_non_null(*out);
    if (err) {
        *err = bt_read_file(err_path);
        assert_non_null(*err);
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

char *bt_read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long len;

    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    buf[fread(buf, 1, (size_t)len, fp)] = '\0';
    fclose(fp);
    return buf;
}

bt_row_t *bt_plugin_rows(const char *path, size_t *countp)
{
    char *text = bt_read_file(path), *line, *save = NULL, *end;
    size_t n = 0, cap = 64;
    bt_row_t *rows = malloc(cap * sizeof(*rows));

    assert_non_null(rows);
    /* A line without its newline is still being written: not a row yet. */
    if (text && (end = strrchr(text, '\n')))
        end[1] = '\0';
    else if (text)
        text[0] = '\0';
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (n == cap) {
            cap *= 2;
            rows = realloc(rows, cap * sizeof(*rows));
            assert_non_null(rows);
        }
        /* "<pid> <topic> <partition> <offset>" */
        if (sscanf(line, "%d %*s %d %lld", &rows[n].pid, &rows[n].partition,
                   &rows[n].offset) != 3)
            fail_msg("%s: a row that does not parse: %s", path, line);
        n++;
    }
    free(text);
    *countp = n;
    return rows;
}

long bt_sqlite_long(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long n = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = (long)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* Every temporary directory made, removed with its contents when the
 * suite exits (kept with BALLAST_TEST_KEEP_TMP=1, to look at after a
 * failure). Only the process that made them removes them. */
static char **tmpdirs;
static size_t ntmpdirs;
static pid_t tmpdirs_owner;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tmpdirs(void)
{
    const char *keep = getenv("BALLAST_TEST_KEEP_TMP");

    if (getpid() != tmpdirs_owner)
        return;
    for (size_t i = 0; i < ntmpdirs; i++) {
        if (!keep || !*keep || !strcmp(keep, "0"))
            nftw(tmpdirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(tmpdirs[i]);
    }
    free(tmpdirs);
    tmpdirs = NULL;
    ntmpdirs = 0;
}

const char *bt_tmpdir(void)
{
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = malloc(strlen(base) + sizeof("/ballast-test-XXXXXX"));
    char **grown = realloc(tmpdirs, (ntmpdirs + 1) * sizeof(*tmpdirs));

    assert_non_null(dir);
    strcpy(dir, base);
    strcat(dir, "/ballast-test-XXXXXX");
    assert_non_null(grown);
    tmpdirs = grown;
    if (!mkdtemp(dir))
        fail_msg("mkdtemp: %s", strerror(errno));
    if (!ntmpdirs) {
        tmpdirs_owner = getpid();
        atexit(remove_tmpdirs);
    }
    tmpdirs[ntmpdirs++] = dir;
    return dir;
}

/* Every child started, so that a failing test (which leaves through a
 * longjmp) does not leave a `ballast run` behind when the suite ends. */
static pid_t spawned[256];
static size_t nspawned;

/* Reaped: never signal the pid again, another process may get it. */
static void forget_spawned(pid_t pid)
{
    for (size_t i = 0; i < nspawned; i++)
        if (spawned[i] == pid)
            spawned[i] = 0;
}

static void kill_spawned(void)
{
    for (size_t i = 0; i < nspawned; i++)
        if (spawned[i] > 0 && kill(spawned[i], SIGKILL) == 0)
            waitpid(spawned[i], NULL, 0);
}

/* In a spawned child: points fd @p target at @p path opened with @p flags,
 * or exits with 126 when it cannot be opened. */
static void redirect(int target, const char *path, int flags)
{
    int fd = open(path, flags, 0644);

    if (fd < 0)
        _exit(126);
    dup2(fd, target);
    close(fd);
}

/* The network namespace of the processes spawned (NULL: ours). */
static const char *spawn_netns;

/* Joins network namespace @p name; @returns 0 or -1 with errno set. */
static int join_netns(const char *name)
{
    char path[300];
    int fd, rc;

    snprintf(path, sizeof(path), "/run/netns/%s", name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

void bt_netns_enter(const char *name)
{
    if (join_netns(name))
        fail_msg("cannot enter network namespace %s: %s", name, strerror(errno));
}

void bt_spawn_netns(const char *name)
{
    spawn_netns = name;
}

pid_t bt_spawn_ballast_io(const char *const *argv, const char *stdout_path,
                          const char *stderr_path)
{
    pid_t pid;

    if (!nspawned)
        atexit(kill_spawned);
    pid = fork();
    assert_true(pid >= 0);
    if (pid > 0 && nspawned < sizeof(spawned) / sizeof(spawned[0]))
        spawned[nspawned++] = pid;
    if (pid == 0) {
        redirect(0, "/dev/null", O_RDONLY);
        redirect(1, stdout_path ? stdout_path : "/dev/null",
                 O_WRONLY | O_CREAT | O_TRUNC);
        if (stderr_path)
            redirect(2, stderr_path, O_WRONLY | O_CREAT | O_TRUNC);
        if (spawn_netns && join_netns(spawn_netns))
            _exit(125);
        execv(BALLAST_BIN, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

pid_t bt_spawn_ballast(const char *const *argv, const char *stderr_path)
{
    return bt_spawn_ballast_io(argv, NULL, stderr_path);
}

/* True when /proc says @p pid has a handler for SIGTERM. */
static bool handles_sigterm(pid_t pid)
{
    char path[64], line[256];
    bool yes = false;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(fp = fopen(path, "r")))
        return false;
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, "SigCgt:", 7))
            yes = (strtoull(line + 7, NULL, 16) >> (SIGTERM - 1)) & 1;
    fclose(fp);
    return yes;
}

void bt_term(pid_t pid)
{
    int64_t deadline = bt_now_ms() + 10000;

    while (!handles_sigterm(pid) && bt_now_ms() < deadline)
        usleep(5 * 1000);
    kill(pid, SIGTERM);
}

int bt_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            forget_spawned(pid);
            break;
        }
        if (bt_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            forget_spawned(pid);
            return -1;
        }
        usleep(10 * 1000);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int bt_run_ballast(const char *const *argv, int timeout_ms, char **stderr_text)
{
    char path[] = "/tmp/ballast-stderr-XXXXXX";
    int fd = mkstemp(path), rc;

    assert_true(fd >= 0);
    close(fd);
    rc = bt_wait(bt_spawn_ballast(argv, path), timeout_ms);
    if (stderr_text)
        *stderr_text = bt_read_file(path);
    unlink(path);
    return rc;
}

bt_captured_t bt_run_captured(const char *const *argv, int timeout_ms)
{
    const char *dir = bt_tmpdir();
    char out_path[256], err_path[256];
    bt_captured_t c;

    snprintf(out_path, sizeof(out_path), "%s/stdout", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    c.rc = bt_wait(bt_spawn_ballast_io(argv, out_path, err_path), timeout_ms);
    c.out = bt_read_file(out_path);
    c.err = bt_read_file(err_path);
    assert_non_null(c.out);
    assert_non_null(c.err);
    return c;
}

void bt_captured_free(bt_captured_t *c)
{
    free(c->out);
    free(c->err);
}

static bool option_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-';
}

/* Whether @p word occurs in @p text not inside a longer option name. */
static bool has_word(const char *text, const char *word, size_t len)
{
    for (const char *p = text; (p = strstr(p, word)); p++)
        if ((p == text || !option_char(p[-1])) && !option_char(p[len]))
            return true;
    return false;
}

void bt_assert_options_documented(const char *const *argv, const char *doc)
{
    bt_captured_t c = bt_run_captured(argv, 10000);
    char path[512], missing[2048] = "", word[64], command[256] = "ballast";
    char *text;
    size_t checked = 0;

    for (size_t i = 1; argv[i]; i++)
        snprintf(command + strlen(command), sizeof(command) - strlen(command), " %s",
                 argv[i]);
    if (c.rc != 0)
        fail_msg("`%s` exited %d: %s", command, c.rc, c.err);
    if (doc[0] == '/')
        snprintf(path, sizeof(path), "%s", doc);
    else
        snprintf(path, sizeof(path), "%s/%s", BALLAST_SRC_DIR, doc);
    if (!(text = bt_read_file(path)))
        fail_msg("cannot read %s", path);
    for (const char *p = c.out; *p; p++) {
        size_t len = 0;
        if (p > c.out && option_char(p[-1]))
            continue;
        if (p[0] == '-' && p[1] == '-' && p[2] >= 'a' && p[2] <= 'z')
            while (option_char(p[len]))
                len++;
        else if (p[0] == '-' && p[1] == 'X' && !option_char(p[2]))
            len = 2;
        if (!len || len >= sizeof(word))
            continue;
        memcpy(word, p, len);
        word[len] = '\0';
        checked++;
        if (!has_word(text, word, len) && !has_word(missing, word, len))
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s",
                     word);
        p += len - 1;
    }
    if (checked < 3)
        fail_msg("found only %zu options in the output of `%s`", checked, command);
    if (*missing)
        fail_msg("%s does not document these options of `%s`:%s", doc, command, missing);
    free(text);
    bt_captured_free(&c);
}

/* ---- HTTP (the daemon's metrics endpoint) -------------------------------- */

void bt_http_reply_free(bt_http_reply_t *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* One HTTP/1.0 request to @p addr ("127.0.0.1:PORT"); status 0 when the
 * connection failed. */
bt_http_reply_t bt_http_request(const char *addr, const char *method, const char *path)
{
    bt_http_reply_t r = {0, NULL, NULL};
    struct sockaddr_in sa;
    char host[64], req[512], *buf = NULL, *sep;
    size_t len = 0, cap = 0;
    const char *colon = strrchr(addr, ':');
    int fd;

    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    inet_pton(AF_INET, host, &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        return r;
    }
    snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
             method, path, addr);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    for (;;) {
        ssize_t n;
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!buf)
        return r;
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &r.status) != 1 || !(sep = strstr(buf, "\r\n\r\n"))) {
        free(buf);
        r.status = 0;
        return r;
    }
    *sep = '\0';
    r.headers = strdup(buf);
    r.body = strdup(sep + 4);
    free(buf);
    return r;
}

int bt_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

bt_http_reply_t bt_http_get(const char *addr, const char *path)
{
    return bt_http_request(addr, "GET", path);
}

/* Waits for "listening on ADDR" in the stderr file of a starting process. */
void bt_wait_listening(const char *err_path, pid_t pid, char *addr, size_t size)
{
    int64_t deadline = bt_now_ms() + 60000;

    for (;;) {
        char *text = bt_read_file(err_path), *at = text ? strstr(text, "listening on ") : NULL;
        if (at) {
            at += strlen("listening on ");
            snprintf(addr, size, "%.*s", (int)strcspn(at, " \"\n)"), at);
            free(text);
            return;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            fail_msg("ballast exited before listening: %s", text ? text : "");
        free(text);
        if (bt_now_ms() > deadline)
            fail_msg("ballast did not log its metrics address");
        usleep(50 * 1000);
    }
}

/* The value text of @p line when it is the sample @p name: NAME or
 * NAME{LABELS} (as `outcome="ok"`), labelled with the consumer group first
 * as ballast labels every sample. NULL when it is another sample. */
static const char *group_sample_value(const char *line, const char *name)
{
    static const char label[] = "{consumergroup=\"";
    size_t base = strcspn(name, "{");
    const char *rest = name[base] ? name + base + 1 : "}", *at;
    size_t rest_len = strlen(rest);

    if (strncmp(line, name, base) || strncmp(line + base, label, sizeof(label) - 1))
        return NULL;
    if (!(at = strchr(line + base + sizeof(label) - 1, '"')))
        return NULL;
    at++;
    if (name[base] && *at++ != ',')
        return NULL;
    return !strncmp(at, rest, rest_len) && at[rest_len] == ' ' ? at + rest_len + 1 : NULL;
}

/* The value of sample @p name in Prometheus text, or -1. */
static double metric_in(const char *text, const char *name)
{
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        const char *value;
        if (*line == '\n')
            line++;
        if ((value = group_sample_value(line, name)))
            return strtod(value, NULL);
    }
    return -1;
}

double bt_metric(const char *addr, const char *name)
{
    bt_http_reply_t r = bt_http_get(addr, "/metrics");
    double v = r.status == 200 ? metric_in(r.body, name) : -1;

    bt_http_reply_free(&r);
    return v;
}

/* ---- a process's resources (/proc) ---------------------------------------- */

/* Entries of directory @p path other than "." and "..", or -1. */
static int count_entries(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    int n = 0;

    if (!dir)
        return -1;
    while ((e = readdir(dir)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(dir);
    return n;
}

/* The number after "@p key:" in /proc/<pid>/status, or -1. */
static long status_field(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t len = strlen(key);
    long v = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(fp = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, key, len) && line[len] == ':')
            v = strtol(line + len + 1, NULL, 10);
    fclose(fp);
    return v;
}

/* Adds /proc/<child>/stat's verdict to @p u when its parent is @p pid. */
static void count_if_child(pid_t pid, const char *child, bt_proc_usage_t *u)
{
    char path[300], buf[512], state;
    const char *paren;
    int ppid;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%s/stat", child);
    if (!(fp = fopen(path, "r")))
        return; /* gone meanwhile */
    buf[fread(buf, 1, sizeof(buf) - 1, fp)] = '\0';
    fclose(fp);
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    if ((paren = strrchr(buf, ')')) && sscanf(paren + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == pid) {
        u->children++;
        u->zombies += state == 'Z';
    }
}

bt_proc_usage_t bt_proc_usage(pid_t pid)
{
    bt_proc_usage_t u = {0, 0, 0, 0, 0};
    char path[64];
    DIR *proc = opendir("/proc");
    struct dirent *e;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    u.fds = count_entries(path);
    u.threads = (int)status_field(pid, "Threads");
    u.rss_kib = status_field(pid, "VmRSS");
    assert_non_null(proc);
    while ((e = readdir(proc)))
        if (isdigit((unsigned char)e->d_name[0]))
            count_if_child(pid, e->d_name, &u);
    closedir(proc);
    if (u.fds < 0 || u.threads < 0 || u.rss_kib < 0)
        fail_msg("cannot read /proc/%d", (int)pid);
    return u;
}

/* ---- the recording handler --------------------------------------------- */

/* Calls in the handler at once, at most (a bound for active_keys). */
#define MAX_ACTIVE 256

bt_recorder_t *bt_recorder_new(void)
{
    bt_recorder_t *r = calloc(1, sizeof(*r));
    pthread_mutex_t *mtx = malloc(sizeof(*mtx));
    pthread_cond_t *cond = malloc(sizeof(*cond));
    pthread_condattr_t attr;

    assert_non_null(r);
    assert_non_null(mtx);
    assert_non_null(cond);
    pthread_mutex_init(mtx, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    r->mtx = mtx;
    r->cond = cond;
    r->active_keys = calloc(MAX_ACTIVE, sizeof(*r->active_keys));
    assert_non_null(r->active_keys);
    return r;
}

void bt_recorder_free(bt_recorder_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(r->mtx);
    pthread_cond_destroy(r->cond);
    free(r->mtx);
    free(r->cond);
    free(r->active_keys);
    free(r->seen);
    free(r);
}

void bt_recorder_release(bt_recorder_t *r, int n)
{
    pthread_mutex_lock(r->mtx);
    r->tokens += n;
    pthread_cond_broadcast(r->cond);
    pthread_mutex_unlock(r->mtx);
}

void bt_recorder_open(bt_recorder_t *r)
{
    pthread_mutex_lock(r->mtx);
    r->gated = 0;
    pthread_cond_broadcast(r->cond);
    pthread_mutex_unlock(r->mtx);
}

/* Waits on the recorder's condition (its mutex held) until @p deadline_ms
 * on the monotonic clock. @returns false once the deadline has passed. */
static bool recorder_wait(bt_recorder_t *r, int64_t deadline_ms)
{
    struct timespec ts = {deadline_ms / 1000, (deadline_ms % 1000) * 1000000L};

    if (bt_now_ms() >= deadline_ms)
        return false;
    pthread_cond_timedwait(r->cond, r->mtx, &ts);
    return true;
}

/* A call enters the handler (mutex held): counts it, notes a call of the
 * same key already running, then meets the rendezvous (60 s at most) and
 * passes the gate. */
static void recorder_enter(bt_recorder_t *r, const char *key)
{
    int64_t deadline = bt_now_ms() + 60000;
    int slot = -1;

    for (int i = 0; i < MAX_ACTIVE; i++) {
        if (r->active_keys[i][0] && !strcmp(r->active_keys[i], key))
            r->key_overlaps++;
        else if (!r->active_keys[i][0] && slot < 0)
            slot = i;
    }
    if (slot >= 0 && *key)
        snprintf(r->active_keys[slot], sizeof(r->active_keys[slot]), "%s", key);
    if (++r->active > r->max_active)
        r->max_active = r->active;
    if (r->rendezvous && !r->rendezvous_met) {
        if (r->active >= r->rendezvous) {
            r->rendezvous_met = 1;
            pthread_cond_broadcast(r->cond);
        }
        while (!r->rendezvous_met && recorder_wait(r, deadline))
            ;
    }
    /* No deadline here: a call let through by a timeout would break the
     * test's count of what is in flight. The test opens the gate before it
     * stops the consumer; a failed test exits with the call still held. */
    while (r->gated && !r->tokens)
        pthread_cond_wait(r->cond, r->mtx);
    if (r->gated)
        r->tokens--;
}

/* The call leaves the handler (mutex held). */
static void recorder_leave(bt_recorder_t *r, const char *key)
{
    for (int i = 0; *key && i < MAX_ACTIVE; i++)
        if (!strcmp(r->active_keys[i], key)) {
            r->active_keys[i][0] = '\0';
            break;
        }
    r->active--;
}

size_t bt_recorder_count(bt_recorder_t *r)
{
    size_t n;
    pthread_mutex_lock(r->mtx);
    n = r->count;
    pthread_mutex_unlock(r->mtx);
    return n;
}

typedef struct count_arg {
    bt_recorder_t *rec;
    size_t want;
} count_arg_t;

static bool count_reached(void *arg)
{
    count_arg_t *a = arg;
    return bt_recorder_count(a->rec) >= a->want;
}

void bt_recorder_wait_count(bt_recorder_t *r, size_t want, int timeout_ms)
{
    count_arg_t a = {r, want};

    if (!bt_wait_for(count_reached, &a, timeout_ms))
        fail_msg("handled %zu of %zu messages before the deadline", bt_recorder_count(r),
                 want);
}

static void copy_text(char *dst, size_t size, const void *src, size_t len)
{
    if (!src) {
        dst[0] = '\0';
        return;
    }
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int bt_opaque_init(void **statep, const ballast_handler_params_t *params, char *errbuf,
                   size_t errsize)
{
    (void)errbuf;
    (void)errsize;
    *statep = params->opaque;
    return 0;
}

static ballast_outcome_t recording_handle(void *state, const ballast_message_t *msg,
                                          ballast_result_t *res)
{
    bt_recorder_t *r = state;
    bt_seen_t seen;
    size_t klen, vlen;
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);
    ballast_outcome_t outcome = BALLAST_OUTCOME_OK;

    memset(&seen, 0, sizeof(seen));
    copy_text(seen.topic, sizeof(seen.topic), ballast_message_topic(msg),
              strlen(ballast_message_topic(msg)));
    seen.partition = ballast_message_partition(msg);
    seen.offset = ballast_message_offset(msg);
    copy_text(seen.key, sizeof(seen.key), key, klen);
    copy_text(seen.value, sizeof(seen.value), value, vlen);
    seen.attempt = ballast_message_attempt(msg);
    pthread_mutex_lock(r->mtx);
    recorder_enter(r, seen.key);
    pthread_mutex_unlock(r->mtx);
    if (r->slow_value && !strcmp(seen.value, r->slow_value))
        usleep((useconds_t)r->slow_ms * 1000);
    else if (r->sleep_ms)
        usleep((useconds_t)r->sleep_ms * 1000);
    pthread_mutex_lock(r->mtx);
    if ((r->fail_modulo && strtol(seen.value, NULL, 10) % r->fail_modulo == 0) ||
        (r->fail_value && !strcmp(seen.value, r->fail_value) &&
         (r->fail_times == 0 || r->failed < r->fail_times))) {
        r->failed++;
        outcome = r->fail_outcome;
        ballast_result_set_error(res, "injected failure");
    } else {
        if (r->count == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 1024;
            /* A worker thread cannot fail a cmocka test; a lost record
             * must not pass for a message never handled either. */
            if (!(r->seen = realloc(r->seen, r->cap * sizeof(*r->seen))))
                abort();
        }
        r->seen[r->count++] = seen;
    }
    recorder_leave(r, seen.key);
    pthread_mutex_unlock(r->mtx);
    return outcome;
}

const ballast_handler_t bt_recording_handler = {
    BALLAST_HANDLER_ABI_VERSION, "recording", bt_opaque_init, recording_handle,
    NULL, NULL};

void bt_set(ballast_conf_t *conf, const char *key, const char *value)
{
    ballast_error_t *err = ballast_conf_set(conf, key, value);
    if (err)
        fail_msg("conf %s=%s: %s", key, value, ballast_error_message(err));
}

ballast_conf_t *bt_conf_recording(const char *bootstrap, const char *group,
                                  const char *topics, bt_recorder_t *rec)
{
    ballast_conf_t *conf = ballast_conf_new();

    assert_non_null(conf);
    bt_set(conf, "kafka.bootstrap.servers", bootstrap);
    bt_set(conf, "kafka.group.id", group);
    bt_set_group(conf);
    bt_set(conf, "topics", topics);
    /* BALLAST_TEST_LOG=debug shows what a failing test's consumer did. */
    bt_set(conf, "log.level", getenv("BALLAST_TEST_LOG") ? getenv("BALLAST_TEST_LOG") : "warn");
    bt_set(conf, "retry.backoff.initial.ms", "10");
    bt_set(conf, "retry.backoff.max.ms", "100");
    ballast_conf_set_handler(conf, &bt_recording_handler, rec);
    return conf;
}

/* ---- a consumer on a thread -------------------------------------------- */

struct bt_runner {
    ballast_consumer_t *cons;
    pthread_t thread;
    ballast_error_t *err;
    volatile int finished;
};

static void *runner_main(void *arg)
{
    bt_runner_t *r = arg;
    r->err = ballast_consumer_run(r->cons);
    r->finished = 1;
    return NULL;
}

bt_runner_t *bt_runner_start(const ballast_conf_t *conf)
{
    bt_runner_t *r = calloc(1, sizeof(*r));
    ballast_error_t *err;

    assert_non_null(r);
    err = ballast_consumer_new(conf, &r->cons);
    if (err)
        fail_msg("ballast_consumer_new: %s", ballast_error_message(err));
    assert_int_equal(pthread_create(&r->thread, NULL, runner_main, r), 0);
    return r;
}

ballast_consumer_t *bt_runner_consumer(bt_runner_t *r)
{
    return r->cons;
}

bool bt_runner_assigned(void *run)
{
    ballast_stats_t st;

    ballast_consumer_stats(bt_runner_consumer(run), &st, sizeof(st));
    return st.rebalances > 0;
}

ballast_error_t *bt_runner_join(bt_runner_t *r, int timeout_ms)
{
    ballast_error_t *err;
    int64_t deadline = bt_now_ms() + timeout_ms;

    while (!r->finished && bt_now_ms() < deadline)
        usleep(10 * 1000);
    if (!r->finished)
        fail_msg("consumer did not finish within %d ms", timeout_ms);
    pthread_join(r->thread, NULL);
    ballast_consumer_destroy(r->cons);
    err = r->err;
    free(r);
    return err;
}

ballast_error_t *bt_runner_stop(bt_runner_t *r)
{
    ballast_consumer_stop(r->cons);
    return bt_runner_join(r, 60000);
}

/* ---- PostgreSQL ---------------------------------------------------------- */

long bt_pg_long(const char *sql)
{
    PGconn *db = PQconnectdb(bt_pg());
    long v = -1;

    if (PQstatus(db) == CONNECTION_OK) {
        PGresult *r = PQexec(db, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            !PQgetisnull(r, 0, 0))
            v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    PQfinish(db);
    return v;
}

/* Runs @p sql and returns its result, or fails the test. */
static PGresult *pg_query(PGconn **dbp, const char *sql, ExecStatusType want)
{
    PGconn *db = *dbp = PQconnectdb(bt_pg());
    PGresult *r;

    if (PQstatus(db) != CONNECTION_OK)
        fail_msg("postgres: %s", PQerrorMessage(db));
    r = PQexec(db, sql);
    if (PQresultStatus(r) != want)
        fail_msg("postgres: %s: %s", sql, PQresultErrorMessage(r));
    return r;
}

void bt_pg_exec(const char *sql)
{
    PGconn *db;

    PQclear(pg_query(&db, sql, PGRES_COMMAND_OK));
    PQfinish(db);
}

bt_record_t *bt_pg_records(const char *sql, size_t *countp)
{
    PGconn *db;
    PGresult *r = pg_query(&db, sql, PGRES_TUPLES_OK);
    size_t n = (size_t)PQntuples(r);
    bt_record_t *recs = calloc(n ? n : 1, sizeof(*recs));

    assert_non_null(recs);
    for (size_t i = 0; i < n; i++) {
        recs[i].key = PQgetisnull(r, (int)i, 0) ? NULL : strdup(PQgetvalue(r, (int)i, 0));
        recs[i].value = PQgetisnull(r, (int)i, 1) ? NULL : strdup(PQgetvalue(r, (int)i, 1));
        recs[i].partition = -1;
        recs[i].offset = -1;
    }
    PQclear(r);
    PQfinish(db);
    *countp = n;
    return recs;
}

/* ---- files and the mock cluster -------------------------------------------- */

bool bt_file_has(const char *path, const char *text)
{
    char *all = bt_read_file(path);
    bool has = all && strstr(all, text);

    free(all);
    return has;
}

typedef struct file_wait {
    const char *path, *text;
} file_wait_t;

static bool file_wait_has(void *arg)
{
    file_wait_t *w = arg;
    return bt_file_has(w->path, w->text);
}

bool bt_wait_file_has(const char *path, const char *text, int timeout_ms)
{
    file_wait_t w = {path, text};
    return bt_wait_for(file_wait_has, &w, timeout_ms);
}

void bt_mock_start(bt_mock_t *m, const char *topic, int partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(m->host);
    m->mc = rd_kafka_mock_cluster_new(m->host, 1);
    assert_non_null(m->mc);
    m->bootstrap = rd_kafka_mock_cluster_bootstraps(m->mc);
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, topic, partitions, 1), 0);
}

void bt_mock_stop(bt_mock_t *m)
{
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->host);
}
