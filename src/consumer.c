/*
 * consumer.c - the consumer: construction, the poll loop, the stop, and
 * destruction. The rest of the runtime is in the files runtime.h lists;
 * this one only puts them together.
 *
 * Design
 * ------
 * The poll thread (the caller of ballast_consumer_run) is the only thread
 * that talks to the consumer handle and the only one that touches partition
 * state and offset trackers. Each turn of its loop publishes a snapshot
 * about once a second (status.c), takes back what workers finished and
 * serves delivery reports and commit results (dispatch.c, emit.c,
 * commit.c; ktxn.c for Kafka transactions), rewinds what an exactly-once
 * engine flagged (rebalance.c), frees partition states nothing refers to
 * any more (parts.c), and then either holds back (backpressure) or polls a
 * chunk of messages and hands them to the workers (dispatch.c), serving
 * rebalances on the way (rebalance.c). Workers run the handler (worker.c,
 * outcome.c, dbtxn.c) and hand messages back on the completion list.
 *
 * A stop pauses every partition and handles what is in flight until
 * shutdown.timeout.ms; then nothing new starts, the calls still running get
 * their grace (or are cancelled), what finished is committed, and the
 * consumer leaves the group.
 *
 * Where to extend: see the file of the subsystem (runtime.h's list); a new
 * librdkafka callback goes into the table below.
 */
#include "clients.h"
#include "cluster.h"
#include "commit.h"
#include "dispatch.h"
#include "emit.h"
#include "ktxn.h"
#include "outcome.h"
#include "parts.h"
#include "rebalance.h"
#include "status.h"
#include "txnwatch.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>

/* What librdkafka calls back, in each mode: transactional records are
 * durable only when their transaction commits (ktxn.c). */
static const bl_client_cbs_t callbacks = {bl_emit_delivered, bl_rebalance, bl_commit_result};
static const bl_client_cbs_t txn_callbacks = {bl_ktxn_delivered, bl_rebalance,
                                              bl_commit_result};

/* ---- construction ----------------------------------------------------------- */

/* An integer librdkafka property of kafka.*, or @p def when unset. */
static int64_t kafka_int(const ballast_conf_t *conf, const char *key, int64_t def)
{
    const char *v = bl_conf_str(conf, key);

    return *v ? strtoll(v, NULL, 10) : def;
}

/* A topic key's value, NULL when unset. */
static const char *topic_key(const ballast_conf_t *conf, const char *key)
{
    return *bl_conf_str(conf, key) ? bl_conf_str(conf, key) : NULL;
}

static void read_settings(ballast_consumer_t *c)
{
    const char *ordering = bl_conf_str(c->conf, "ordering");
    bl_settings_t *s = &c->set;

    c->log = bl_conf_logger(c->conf);
    s->group = bl_conf_str(c->conf, "kafka.group.id");
    s->output_topic = topic_key(c->conf, "output.topic");
    s->dlq_topic = topic_key(c->conf, "dlq.topic");
    s->backoff.initial_ms = bl_conf_int(c->conf, "retry.backoff.initial.ms");
    s->backoff.max_ms = bl_conf_int(c->conf, "retry.backoff.max.ms");
    s->backoff.multiplier = bl_conf_double(c->conf, "retry.backoff.multiplier");
    s->backoff.jitter = bl_conf_double(c->conf, "retry.backoff.jitter");
    s->max_attempts = (int)bl_conf_int(c->conf, "retry.max.attempts");
    s->batch_mode = !strcmp(bl_conf_str(c->conf, "processing"), "batch");
    s->batch_max = (size_t)bl_conf_int(c->conf, "batch.max.messages");
    s->batch_ms = bl_conf_int(c->conf, "batch.max.ms");
    s->ordering = !strcmp(ordering, "key")    ? BL_ORDER_KEY
                  : !strcmp(ordering, "none") ? BL_ORDER_NONE
                                              : BL_ORDER_PARTITION;
    s->nworkers = (int)bl_conf_int(c->conf, "concurrency");
    s->shutdown_timeout_ms = bl_conf_int(c->conf, "shutdown.timeout.ms");
    s->handler_timeout_ms = bl_conf_int(c->conf, "handler.timeout.ms");
    s->progress_interval_ms = bl_conf_int(c->conf, "log.progress.interval.ms");
    s->max_poll_interval_ms = kafka_int(c->conf, "kafka.max.poll.interval.ms", 300000);
    s->txn_interval_ms = bl_conf_int(c->conf, "transaction.interval.ms");
    s->tracing = !strcmp(bl_conf_str(c->conf, "tracing"), "on");
    s->rebalance_cb = bl_conf_rebalance_cb(c->conf, &s->rebalance_opaque);
    s->handler = bl_conf_handler(c->conf, &s->handler_opaque);
    if (!s->handler)
        s->handler = bl_handler_by_name(bl_conf_str(c->conf, "handler"));
    /* Exactly-once with a database handler keeps offsets in the database;
     * with any other handler, in Kafka transactions. */
    if (bl_conf_exactly_once(c->conf)) {
        c->dbtxn.ops = bl_handler_dbtxn_ops(s->handler);
        s->semantics = c->dbtxn.ops ? BL_EXACTLY_ONCE_DB : BL_EXACTLY_ONCE_KAFKA;
    }
    /* Message mode into PostgreSQL: messages grouped in transactions. */
    if (s->handler == &bl_handler_postgres && (s->group_max = bl_conf_pg_group(c->conf))) {
        s->group_ms = bl_conf_int(c->conf, "handler.postgres.group.ms");
        c->dbtxn.ops = bl_handler_dbtxn_ops(s->handler);
    }
}

/* Sets up what read_settings() cannot without allocating. */
static ballast_error_t *set_up(ballast_consumer_t *c)
{
    /* Without a DLQ nothing is dead-lettered (a failure stops the run), so
     * the breaker is off and costs no lock per message. */
    const char *dlq_topic = bl_conf_str(c->conf, "dlq.topic");
    bool dlq = dlq_topic && *dlq_topic;
    char err[256];

    if (bl_tiers_parse(bl_conf_str(c->conf, "retry.topics"), &c->set.tiers, err, sizeof(err)))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "retry.topics: %s", err);
    if (bl_breaker_init(&c->breaker, dlq ? bl_conf_int(c->conf, "dlq.max.consecutive") : 0,
                        dlq ? bl_conf_double(c->conf, "dlq.max.ratio") : 0,
                        (size_t)bl_conf_int(c->conf, "dlq.window.messages")) ||
        bl_dispatch_init(c, (size_t)bl_conf_int(c->conf, "max.inflight.messages"),
                         (uint64_t)bl_conf_int(c->conf, "max.inflight.bytes")))
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    return NULL;
}

/* A producer is needed when the handler may emit, or a DLQ or retry tiers
 * are set. */
static bool needs_producer(const ballast_consumer_t *c)
{
    if (c->set.dlq_topic || c->set.output_topic || c->set.tiers.count ||
        c->set.semantics == BL_EXACTLY_ONCE_KAFKA)
        return true;
    return c->set.handler != &bl_handler_sqlite && c->set.handler != &bl_handler_postgres;
}

/* Subscribes to the input topics and the retry tiers, which are consumed
 * like input topics. */
static ballast_error_t *subscribe(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *topics = bl_topic_list(bl_conf_str(c->conf, "topics"));
    rd_kafka_resp_err_t kerr;
    ballast_error_t *err = NULL;

    for (size_t i = 0; i < c->set.tiers.count; i++)
        rd_kafka_topic_partition_list_add(topics, c->set.tiers.tiers[i].topic,
                                          RD_KAFKA_PARTITION_UA);
    if ((kerr = rd_kafka_subscribe(c->rk, topics)))
        err = bl_error_new(BALLAST_ERR_CONFIG, false, false, "topics: cannot subscribe: %s",
                           rd_kafka_err2str(kerr));
    rd_kafka_topic_partition_list_destroy(topics);
    return err;
}

static ballast_error_t *consumer_start(ballast_consumer_t *c)
{
    ballast_error_t *err;

    if ((err = bl_make_client(c, false, &c->rk)))
        return err;
    /* One queue for messages, rebalances, errors and commit results, all
     * served by rd_kafka_consumer_poll on the poll thread. */
    rd_kafka_poll_set_consumer(c->rk);
    bl_commit_init(c, kafka_int(c->conf, "kafka.auto.commit.interval.ms", -1));
    if (needs_producer(c) && (err = bl_make_client(c, true, &c->producer)))
        return err;
    if ((err = bl_clients_check_cluster(c)))
        return err;
    bl_emit_warm(c, WARM_TIMEOUT_MS);
    if (c->set.semantics == BL_EXACTLY_ONCE_KAFKA &&
        (err = bl_ktxn_init(c, bl_conf_int(c->conf, "startup.timeout.ms"))))
        return err;
    if ((err = bl_workers_start(c)))
        return err;
    if (c->set.semantics == BL_EXACTLY_ONCE_DB &&
        (err = bl_handler_state_new(c, -1, &c->dbtxn.loader)))
        return err;
    return subscribe(c);
}

static void consumer_free(ballast_consumer_t *c);

ballast_error_t *ballast_consumer_new(const ballast_conf_t *conf, ballast_consumer_t **consp)
{
    ballast_consumer_t *c;
    ballast_error_t *err;

    *consp = NULL;
    if ((err = ballast_conf_validate(conf)))
        return err;
    if (!(c = calloc(1, sizeof(*c))) || !(c->conf = ballast_conf_dup(conf))) {
        free(c);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    pthread_mutex_init(&c->run.err_mtx, NULL);
    pthread_mutex_init(&c->done.sig.mtx, NULL);
    pthread_cond_init(&c->done.sig.cond, NULL);
    c->run.started_ms = bl_now_ms();
    read_settings(c);
    bl_clients_init(c, c->set.semantics == BL_EXACTLY_ONCE_KAFKA ? &txn_callbacks
                                                                  : &callbacks);
    bl_emit_init(c);
    bl_outcome_init(c);
    bl_status_init(c);
    bl_ktxn_setup(c);
    bl_txnwatch_init(c);
    if (bl_workers_init(c, consumer_free)) {
        ballast_consumer_destroy(c);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    if (!c->set.handler || (!c->set.handler->handle && !c->set.handler->handle_batch)) {
        ballast_consumer_destroy(c);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "handler: no usable handler");
    }
    if (bl_conf_stop_requested(c->conf))
        err = bl_error_new(BALLAST_ERR_STOPPED, false, false, "stopped before start-up");
    if (err || (err = set_up(c)) || (err = consumer_start(c))) {
        ballast_consumer_destroy(c);
        return err;
    }
    bl_clients_started(c);
    *consp = c;
    return NULL;
}

/* ---- running ---------------------------------------------------------------- */

/* Takes back what finished, serves delivery reports and commit results,
 * and commits what is due. */
static void settle(ballast_consumer_t *c)
{
    bl_dispatch_take_back(c);
    bl_emit_serve(c);
    bl_commit_serve(c, 0);
    bl_commit_due(c);
    if (c->set.semantics == BL_EXACTLY_ONCE_KAFKA)
        bl_ktxn_tick(c);
}

/* The drain timed out with handler calls running: those that can be
 * cancelled are (exec kills its child, and the message is left); the
 * others get STOP_GRACE_MS more, serving what they hand back, so that a
 * call that does return is committed rather than done again by the next
 * owner. @returns the calls whose work was left: cancelled, or still
 * running. */
static int settle_running_calls(ballast_consumer_t *c)
{
    int64_t deadline = bl_now_ms() + STOP_GRACE_MS;
    int cancelled = bl_workers_cancel(c);

    while (bl_workers_busy(c) && bl_now_ms() < deadline) {
        atomic_store(&c->run.last_poll_ms, bl_now_ms());
        bl_dispatch_take_back(c);
        bl_emit_serve(c);
        bl_done_wait(c, 5);
    }
    bl_dispatch_take_back(c);
    return cancelled + bl_workers_busy(c);
}

/* Stops fetching, lets the handler calls running finish for up to the
 * drain timeout, and commits what finished. */
static void drain_all(ballast_consumer_t *c)
{
    int64_t deadline = bl_now_ms() + c->set.shutdown_timeout_ms;
    bool in_txn = c->set.semantics == BL_EXACTLY_ONCE_KAFKA;
    size_t n = 0;
    bl_part_t **parts;

    bl_dispatch_stop_fetching(c);
    parts = calloc(bl_parts_count(c) + 1, sizeof(*parts));
    BL_PARTS_EACH(c, p)
        if (parts)
            parts[n++] = p;
    /* What is in flight is handled until the deadline (after a fatal
     * error workers drop what they have not started, so this only waits
     * for handlers already running). */
    if (parts)
        bl_dispatch_drain(c, parts, n, deadline);
    /* Then nothing more starts: what has not, and messages waiting for a
     * retry, stay uncommitted and come back. The calls running get their
     * grace, so that what they finish is committed below. */
    atomic_store(&c->run.abandon, true);
    bl_workers_wake(c);
    if (bl_workers_busy(c))
        c->workers.abandoned_calls = settle_running_calls(c);
    settle(c);
    if (in_txn)
        bl_ktxn_commit(c);
    else if (parts)
        bl_commit_parts(c, parts, n);
    free(parts);
}

/* What the run ends with, said in one line: the fatal error, the breaker
 * that kept consumption paused, work the drain had to leave, or a clean
 * stop. */
static ballast_error_t *run_outcome(ballast_consumer_t *c)
{
    ballast_error_t *err = bl_take_fatal(c);
    int abandoned = c->workers.abandoned_calls;
    char left[200] = "";

    if (abandoned)
        bl_fmt(left, sizeof(left),
               "%d handler call(s) did not finish within shutdown.timeout.ms (%lld ms); "
               "their messages stay uncommitted and will be delivered again",
               abandoned, (long long)c->set.shutdown_timeout_ms);
    if (!err && bl_breaker_tripped(&c->breaker))
        err = bl_error_new(BALLAST_ERR_HANDLER, false, false, "%s",
                           bl_breaker_reason(&c->breaker));
    if (!err && abandoned)
        return bl_error_new(BALLAST_ERR_INCOMPLETE, false, false, "stopped: %s", left);
    if (abandoned)
        bl_log(&c->log, BALLAST_LOG_WARN, "%s", left);
    if (!err)
        bl_log(&c->log, BALLAST_LOG_INFO,
               "stopped: the handler calls running finished, and what finished is committed");
    return err;
}

ballast_error_t *ballast_consumer_run(ballast_consumer_t *c)
{
    if (c->run.ran)
        return bl_error_new(BALLAST_ERR_INTERNAL, false, false,
                            "ballast_consumer_run: already ran");
    c->run.ran = true;
    c->status.progress_ms = bl_now_ms();
    atomic_store(&c->run.running, 1);
    while (!bl_stopping(c)) {
        int64_t now = bl_now_ms();

        atomic_store(&c->run.last_poll_ms, now);
        bl_status_tick(c, now);
        settle(c);
        bl_rewind(c);
        bl_parts_sweep(c);
        if (!bl_dispatch_hold_back(c, now))
            bl_dispatch_poll(c);
    }
    drain_all(c);
    /* Leaving the group triggers a final revoke, which commits again. */
    rd_kafka_consumer_close(c->rk);
    /* The drain already gave running calls their grace. */
    bl_workers_stop(c, 100);
    settle(c);
    bl_status_publish(c);
    atomic_store(&c->run.running, 0);
    if (c->producer && rd_kafka_flush(c->producer, 10000))
        bl_log(&c->log, BALLAST_LOG_WARN, "producer: records still queued at exit");
    bl_status_summary(c);
    return run_outcome(c);
}

void ballast_consumer_stop(ballast_consumer_t *c)
{
    if (c)
        c->run.stop_requested = 1;
}

/* ---- destruction -------------------------------------------------------------- */

/* Frees everything; no worker runs any more (the last worker a stop left
 * running calls this, through bl_workers_init()'s callback). */
static void consumer_free(ballast_consumer_t *c)
{
    bl_workers_free(c);
    if (c->dbtxn.loader && c->set.handler->destroy)
        c->set.handler->destroy(c->dbtxn.loader);
    bl_queue_free(&c->done.q);
    bl_dispatch_free(c);
    bl_commit_free(c);
    if (c->rk) {
        if (!c->run.ran)
            rd_kafka_consumer_close(c->rk);
        bl_client_destroy(c, c->rk, "consumer");
    }
    if (c->producer) {
        rd_kafka_flush(c->producer, 5000);
        bl_client_destroy(c, c->producer, "producer");
    }
    bl_parts_free(c);
    ballast_error_destroy(c->run.fatal);
    ballast_conf_destroy(c->conf);
    pthread_mutex_destroy(&c->done.sig.mtx);
    pthread_cond_destroy(&c->done.sig.cond);
    pthread_mutex_destroy(&c->run.err_mtx);
    bl_clients_free(c);
    bl_outcome_free(c);
    bl_emit_free(c);
    bl_tiers_free(&c->set.tiers);
    bl_breaker_free(&c->breaker);
    bl_status_free(c);
    free(c);
}

void ballast_consumer_destroy(ballast_consumer_t *c)
{
    if (!c)
        return;
    if (c->workers.w)
        bl_workers_stop(c, STOP_GRACE_MS);
    /* A handler call that has not returned still uses the consumer: the
     * last such call to return frees it. */
    if (bl_workers_keep_consumer(c))
        return;
    consumer_free(c);
}
