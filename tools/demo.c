/*
 * demo.c - what the scenarios of `ballast demo` share (demo.h): printing,
 * the embedded broker's topics and producer, SQLite files, running a
 * consumer, reading a group's offsets, and child processes.
 */
#include "cli.h"
#include "demo.h"
#include "lag.h"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long one consumer run may take before the scenario fails. */
#define RUN_DEADLINE_S 30.0

/* ---- printing ----------------------------------------------------------- */

void demo_say(const char *fmt, ...)
{
    va_list ap;

    fputs("  ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

bool demo_check(demo_t *d, bool ok, const char *fmt, ...)
{
    va_list ap;

    printf("  %-6s", ok ? "ok" : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!ok)
        d->failed_checks++;
    return ok;
}

/* ---- the embedded broker and the producer -------------------------------- */

int demo_create_topic(demo_t *d, const char *topic, int partitions)
{
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(d->mcluster, topic, partitions, 1);

    if (err) {
        cli_error("demo: cannot create topic %s: %s", topic,
                  rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Delivery report: count failures; record the offset the caller asked for. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    demo_t *d = opaque;
    int64_t *offsetp = m->_private;

    (void)rk;
    if (m->err) {
        if (d->delivery_errors++ == 0)
            cli_error("demo: cannot produce to %s: %s",
                      rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    } else if (offsetp && m->offset > *offsetp) {
        *offsetp = m->offset;
    }
}

int demo_producer_start(demo_t *d)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", d->bootstrap, errstr,
                          sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          sizeof(errstr))) {
        rd_kafka_conf_destroy(conf);
        cli_error("demo: producer configuration: %s", errstr);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                     sizeof(errstr)))) {
        rd_kafka_conf_destroy(conf);
        cli_error("demo: cannot create the producer: %s", errstr);
        return -1;
    }
    return 0;
}

int demo_produce(demo_t *d, const char *topic, const char *key,
                 int64_t *offsetp, const char *fmt, ...)
{
    char value[1024];
    va_list ap;
    int len;
    rd_kafka_resp_err_t err;

    va_start(ap, fmt);
    len = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof(value)) {
        cli_error("demo: record for %s too long", topic);
        return -1;
    }
    for (;;) {
        err = rd_kafka_producev(
            d->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_KEY(key, (key ? strlen(key) : 0)),
            RD_KAFKA_V_VALUE(value, (size_t)len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(offsetp), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(d->producer, 100); /* let deliveries drain */
    }
    if (err) {
        cli_error("demo: cannot produce to %s: %s", topic,
                  rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_poll(d->producer, 0);
    return 0;
}

int demo_flush(demo_t *d)
{
    if (rd_kafka_flush(d->producer, 15000)) {
        cli_error("demo: records not acknowledged after 15 s");
        return -1;
    }
    if (d->delivery_errors) {
        d->delivery_errors = 0;
        return -1;
    }
    return 0;
}

/* ---- SQLite ------------------------------------------------------------- */

void demo_path(const demo_t *d, const char *file, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", d->dir, file);
}

sqlite3 *demo_db_open(const demo_t *d, const char *file, const char *schema)
{
    char path[4096];
    sqlite3 *db = NULL;
    char *msg = NULL;

    demo_path(d, file, path, sizeof(path));
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        cli_error("demo: %s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

int64_t demo_db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt;
    int64_t v = 0;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        cli_error("demo: %s: %s", sql, sqlite3_errmsg(db));
        return -1;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    else if (rc != SQLITE_DONE) {
        cli_error("demo: %s: %s", sql, sqlite3_errmsg(db));
        v = -1;
    }
    sqlite3_finalize(stmt);
    return v;
}

/* ---- running a consumer ------------------------------------------------- */

static int set_all(ballast_conf_t *conf, const char *const *kv)
{
    for (; kv && kv[0]; kv += 2) {
        ballast_error_t *err = ballast_conf_set(conf, kv[0], kv[1]);
        if (err) {
            cli_error("demo: %s", ballast_error_message(err));
            ballast_error_destroy(err);
            return -1;
        }
    }
    return 0;
}

ballast_conf_t *demo_conf(const demo_t *d, const char *group,
                          const char *topics, const char *const *kv)
{
    /* The mock cluster forms a group only when session.timeout.ms is above
     * 3 s, and each rebalance phase there lasts about that long minus 1 s:
     * keep it low. Only warnings and errors, so the summary stays readable. */
    const char *const common[] = {"kafka.bootstrap.servers", d->bootstrap,
                                  "kafka.group.id", group,
                                  "topics", topics,
                                  "kafka.session.timeout.ms", "6000",
                                  "kafka.heartbeat.interval.ms", "1000",
                                  "startup.timeout.ms", "10000",
                                  "shutdown.timeout.ms", "10000",
                                  "log.level", "warn",
                                  NULL};
    ballast_conf_t *conf = ballast_conf_new();

    if (!conf) {
        cli_error("demo: out of memory");
        return NULL;
    }
    if (set_all(conf, common) || set_all(conf, kv)) {
        ballast_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

typedef struct run {
    ballast_consumer_t *cons;
    ballast_error_t *err; /* what ballast_consumer_run() returned */
    atomic_bool returned;
    double assigned_at;   /* first assignment, 0 until then */
} run_t;

static void *run_thread(void *arg)
{
    run_t *r = arg;

    r->err = ballast_consumer_run(r->cons);
    atomic_store(&r->returned, true);
    return NULL;
}

/* Called on the consumer's polling thread. */
static void on_rebalance(ballast_rebalance_event_t event,
                         const ballast_partition_t *parts, size_t count,
                         void *opaque)
{
    run_t *r = opaque;

    (void)parts;
    if (event == BALLAST_PARTITIONS_ASSIGNED && count > 0 && !r->assigned_at)
        r->assigned_at = cli_now_s();
}

int demo_consume(demo_t *d, const ballast_conf_t *conf, uint64_t expected,
                 ballast_stats_t *st)
{
    return demo_consume_watch(d, conf, expected, st, NULL, NULL);
}

int demo_consume_watch(demo_t *d, const ballast_conf_t *conf,
                       uint64_t expected, ballast_stats_t *st,
                       demo_watch_fn *watch, void *opaque)
{
    run_t r = {0};
    ballast_conf_t *own = ballast_conf_dup(conf);
    ballast_error_t *err;
    pthread_t tid;
    double t0 = cli_now_s(), t_done, t_end;
    bool reached = false;

    (void)d;
    memset(st, 0, sizeof(*st));
    if (!own) {
        cli_error("demo: out of memory");
        return -1;
    }
    ballast_conf_set_rebalance_cb(own, on_rebalance, &r);
    err = ballast_consumer_new(own, &r.cons);
    ballast_conf_destroy(own);
    if (err) {
        cli_error("demo: cannot start the consumer: %s",
                  ballast_error_message(err));
        ballast_error_destroy(err);
        return -1;
    }
    if (pthread_create(&tid, NULL, run_thread, &r)) {
        cli_error("demo: cannot start a thread");
        ballast_consumer_destroy(r.cons);
        return -1;
    }
    /* Watch the counters until every message is handled (or the watcher
     * has seen enough): every 5 ms for a watcher, which samples states
     * that last only milliseconds, else every 20 ms. */
    while (!atomic_load(&r.returned) && cli_now_s() - t0 < RUN_DEADLINE_S) {
        ballast_consumer_stats(r.cons, st, sizeof(*st));
        if ((reached = st->processed_ok + st->dead_lettered >= expected))
            break;
        if (watch && (reached = watch(r.cons, st, opaque)))
            break;
        usleep(watch ? 5 * 1000 : 20 * 1000);
    }
    t_done = cli_now_s();
    ballast_consumer_stop(r.cons);
    pthread_join(tid, NULL);
    t_end = cli_now_s();
    ballast_consumer_stats(r.cons, st, sizeof(*st));
    ballast_consumer_destroy(r.cons);

    if (r.assigned_at)
        demo_say("consumer  partitions assigned after %.1f s, %llu messages "
                 "handled %.1f s later, stopped in %.1f s",
                 r.assigned_at - t0,
                 (unsigned long long)(st->processed_ok + st->dead_lettered),
                 t_done - r.assigned_at, t_end - t_done);
    demo_say("          consumed %llu, ok %llu, retried %llu, failed %llu, "
             "dead-lettered %llu, offset commits %llu",
             (unsigned long long)st->consumed,
             (unsigned long long)st->processed_ok,
             (unsigned long long)st->retried, (unsigned long long)st->failed,
             (unsigned long long)st->dead_lettered,
             (unsigned long long)st->commits);
    if (r.err) {
        cli_error("demo: the consumer stopped with an error: %s",
                  ballast_error_message(r.err));
        ballast_error_destroy(r.err);
        return -1;
    }
    if (!reached) {
        cli_error("demo: only %llu of %llu messages handled after %.0f s",
                  (unsigned long long)(st->processed_ok + st->dead_lettered),
                  (unsigned long long)expected, RUN_DEADLINE_S);
        return -1;
    }
    return 0;
}

rd_kafka_t *demo_client(const demo_t *d, const char *group, const char *const *kv)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    bool ok = rd_kafka_conf_set(conf, "bootstrap.servers", d->bootstrap, errstr,
                                sizeof(errstr)) == RD_KAFKA_CONF_OK &&
              (!group || rd_kafka_conf_set(conf, "group.id", group, errstr,
                                           sizeof(errstr)) == RD_KAFKA_CONF_OK);

    for (size_t i = 0; ok && kv && kv[i]; i += 2)
        ok = rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)) ==
             RD_KAFKA_CONF_OK;
    if (ok)
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cli_error("demo: cannot create a consumer handle: %s", errstr);
    }
    return rk;
}

int demo_offsets(demo_t *d, const char *group, const char *topic,
                 int partitions, int64_t *committed, int64_t *low,
                 int64_t *high)
{
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk = demo_client(d, group, NULL);

    if (!rk)
        return -1;
    parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    /* Committed offsets come from the group coordinator (OffsetFetch),
     * watermarks from the partition leader; neither needs a membership:
     * this handle never subscribes, so it never joins the group. */
    err = rd_kafka_committed(rk, parts, 10000);
    for (int p = 0; !err && p < partitions; p++) {
        int64_t lo = 0, hi = 0;

        err = parts->elems[p].err;
        if (!err)
            err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi,
                                                   10000);
        if (committed)
            committed[p] = parts->elems[p].offset < 0 ? -1
                                                      : parts->elems[p].offset;
        if (low)
            low[p] = lo;
        if (high)
            high[p] = hi;
    }
    if (err)
        cli_error("demo: cannot read the offsets of group %s on %s: %s",
                  group, topic, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return err ? -1 : 0;
}

int64_t demo_uncommitted(demo_t *d, const char *group, const char *topic,
                         int partitions)
{
    int64_t committed[DEMO_MAX_PARTITIONS], low[DEMO_MAX_PARTITIONS],
        high[DEMO_MAX_PARTITIONS], behind = 0;

    if (partitions > DEMO_MAX_PARTITIONS) {
        cli_error("demo: %s has more than %d partitions", topic,
                  DEMO_MAX_PARTITIONS);
        return -1;
    }
    if (demo_offsets(d, group, topic, partitions, committed, low, high))
        return -1;
    for (int p = 0; p < partitions; p++)
        behind += bl_lag_of(committed[p], low[p], high[p]);
    return behind;
}

void demo_check_all_handled(demo_t *d, const ballast_stats_t *st, uint64_t produced,
                            const char *group, const char *topic, int partitions)
{
    int64_t behind = demo_uncommitted(d, group, topic, partitions);

    demo_check(d, st->consumed == produced && st->processed_ok == produced,
               "consumed (%llu) == handled ok (%llu) == produced (%llu)",
               (unsigned long long)st->consumed, (unsigned long long)st->processed_ok,
               (unsigned long long)produced);
    demo_check(d, behind == 0,
               "messages past the committed offsets after the stop: %lld (a restart "
               "redelivers nothing)",
               (long long)behind);
}

/* ---- child processes ---------------------------------------------------- */

extern char **environ;

pid_t demo_spawn_self(char *const argv[], const char *out_path)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        cli_error("demo: cannot start `ballast %s`: %s", argv[1],
                  strerror(rc));
        return -1;
    }
    return pid;
}

void demo_show_file(const char *what, const char *path)
{
    char line[1024];
    FILE *f = fopen(path, "r");

    if (!f)
        return;
    fprintf(stderr, "--- %s (%s) ---\n", what, path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---\n");
    fclose(f);
}

