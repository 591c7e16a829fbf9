/*
 * demo_backpressure.c - a slow handler behind a large backlog: at the
 * in-flight limit the consumer stops polling, pauses the partitions once the
 * backlog has lasted a quarter of max.poll.interval.ms (here 4 s, so 1 s),
 * and resumes them at half the limit; then a SIGTERM stops the consumer
 * gracefully while it is busy.
 *
 * The handler is a C function given through the public API
 * (ballast_conf_set_handler), as a program embedding the library would:
 * it takes 10 ms per message and records every (partition, offset) it
 * handles. 2,000 events wait in the topic; `max.inflight.messages = 200`
 * bounds what the consumer holds. While it runs, its counters are sampled
 * every 5 ms (paused_partitions, inflight). Once 40% is handled, the
 * process sends itself SIGTERM, whose handler calls ballast_consumer_stop()
 * (async-signal-safe) as `ballast run` does: fetching stops, the messages
 * in flight finish, their offsets are committed, the member leaves.
 *
 * Checked: partitions were paused and resumed; in flight stayed within half
 * a limit of max.inflight.messages; the member was never evicted
 * (the poll loop kept polling while paused); after the stop each
 * partition's committed offset equals the number of its messages handled,
 * with no gap; and a second run of the same group handles exactly the
 * rest, so every event is handled exactly once over both runs.
 * examples/backpressure.conf is a pipeline with the same settings.
 */
#include "demo.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define EVENTS 2000
#define PARTITIONS 4
#define WORKERS 4
#define MAX_INFLIGHT 200
#define HANDLER_US 10000
#define STR_(x) #x
#define STR(x) STR_(x)
#define GROUP "demo-backpressure"
#define TOPIC "events"

/* What the handler saw, shared by its workers. */
typedef struct seen {
    atomic_uchar hits[PARTITIONS][EVENTS]; /* handled, per offset */
    atomic_int count[PARTITIONS];          /* handled in the current run */
} seen_t;

/* What the watcher saw of the running consumer. */
typedef struct watch {
    uint64_t stop_at;            /* handled count that triggers SIGTERM */
    uint64_t max_inflight;
    uint64_t samples, paused_samples, pauses, resumes;
    uint64_t busy_at_signal;     /* received, not handled; 0 until then */
    uint64_t handled_at_signal, rebalances_at_signal;
    bool was_paused;
} watch_t;

static seen_t seen;

static ballast_outcome_t slow_handle(void *state, const ballast_message_t *msg,
                                     ballast_result_t *result)
{
    seen_t *s = state;
    int32_t p = ballast_message_partition(msg);
    int64_t off = ballast_message_offset(msg);
    struct timespec ts = {0, HANDLER_US * 1000L};

    (void)result;
    nanosleep(&ts, NULL); /* the slow part: a call to another service */
    if (p >= 0 && p < PARTITIONS && off >= 0 && off < EVENTS) {
        atomic_fetch_add(&s->hits[p][off], 1);
        atomic_fetch_add(&s->count[p], 1);
    }
    return BALLAST_OUTCOME_OK;
}

static int slow_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    (void)errbuf;
    (void)errsize;
    *statep = params->opaque;
    return 0;
}

static const ballast_handler_t slow_handler = {
    BALLAST_HANDLER_ABI_VERSION, "slow", slow_init, slow_handle, NULL, NULL};

/* SIGTERM, as `ballast run` handles it: only ballast_consumer_stop(),
 * which is async-signal-safe. */
static ballast_consumer_t *volatile signalled_consumer;

static void on_sigterm(int sig)
{
    (void)sig;
    if (signalled_consumer)
        ballast_consumer_stop(signalled_consumer);
}

static bool watch_run(ballast_consumer_t *cons, const ballast_stats_t *st,
                      void *opaque)
{
    watch_t *w = opaque;
    bool paused = st->paused_partitions > 0;

    w->samples++;
    if (st->inflight > w->max_inflight)
        w->max_inflight = st->inflight;
    w->paused_samples += paused;
    w->pauses += paused && !w->was_paused;
    w->resumes += !paused && w->was_paused;
    w->was_paused = paused;
    /* Stop while busy: messages received and not handled yet. */
    if (w->stop_at && st->processed_ok >= w->stop_at &&
        st->consumed > st->processed_ok) {
        w->busy_at_signal = st->consumed - st->processed_ok;
        w->handled_at_signal = st->processed_ok;
        w->rebalances_at_signal = st->rebalances;
        signalled_consumer = cons;
        raise(SIGTERM);
        return true;
    }
    return false;
}

int demo_backpressure(demo_t *d)
{
    int64_t committed[PARTITIONS], high[PARTITIONS];
    int first_run[PARTITIONS];
    uint32_t seed = 99;
    ballast_conf_t *conf;
    ballast_stats_t st1, st2;
    watch_t w1 = {0}, w2 = {0};
    struct sigaction sa, old;
    int rc = -1, commit_ok = 0, once = 0, total = 0;
    uint64_t handled1 = 0;

    demo_say("invariant: in flight stays near max.inflight.messages; a "
             "SIGTERM while busy loses and repeats nothing");
    memset(&seen, 0, sizeof(seen));
    if (demo_create_topic(d, TOPIC, PARTITIONS))
        return -1;
    for (int i = 0; i < EVENTS; i++) {
        char key[16];
        snprintf(key, sizeof(key), "device-%03u", demo_rand(&seed) % 500);
        if (demo_produce(d, TOPIC, key, NULL, "{\"event\":%d}", i))
            return -1;
    }
    if (demo_flush(d))
        return -1;
    demo_say("produced  %d events to " TOPIC " (%d partitions, keyed by "
             "device); the handler takes %d ms each, on %d workers "
             "(ordering = key)",
             EVENTS, PARTITIONS, HANDLER_US / 1000, WORKERS);

    conf = demo_conf(d, GROUP, TOPIC,
                     (const char *const[]){"concurrency", STR(WORKERS),
                                           "ordering", "key",
                                           "max.inflight.messages",
                                           STR(MAX_INFLIGHT),
                                           /* a faster second join */
                                           "kafka.session.timeout.ms", "4000",
                                           /* pause after 1 s of backlog */
                                           "kafka.max.poll.interval.ms", "4000",
                                           NULL});
    if (!conf)
        return -1;
    ballast_conf_set_handler(conf, &slow_handler, &seen);

    /* 1. Run until 40% is handled, then SIGTERM while busy. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old);
    w1.stop_at = EVENTS * 4 / 10;
    rc = demo_consume_watch(d, conf, EVENTS, &st1, watch_run, &w1);
    sigaction(SIGTERM, &old, NULL);
    signalled_consumer = NULL;
    if (rc)
        goto out;
    rc = -1;
    for (int p = 0; p < PARTITIONS; p++) {
        first_run[p] = atomic_load(&seen.count[p]);
        handled1 += (uint64_t)first_run[p];
        atomic_store(&seen.count[p], 0);
    }
    demo_say("samples   %llu of the counters: partitions paused in %llu, "
             "%llu pauses and %llu resumes, in flight at most %llu",
             (unsigned long long)w1.samples,
             (unsigned long long)w1.paused_samples,
             (unsigned long long)w1.pauses, (unsigned long long)w1.resumes,
             (unsigned long long)w1.max_inflight);
    demo_say("SIGTERM   at %llu handled, %llu received and not yet handled; "
             "the stop let them finish: %llu handled in all",
             (unsigned long long)w1.handled_at_signal,
             (unsigned long long)w1.busy_at_signal,
             (unsigned long long)handled1);
    demo_check(d, w1.pauses > 0 && w1.resumes > 0,
               "partitions paused at the mark and resumed (%llu pauses, "
               "%llu resumes)",
               (unsigned long long)w1.pauses, (unsigned long long)w1.resumes);
    demo_check(d, w1.max_inflight <= MAX_INFLIGHT + MAX_INFLIGHT / 2,
               "in flight at most %llu with max.inflight.messages = %d, "
               "against a backlog of %d",
               (unsigned long long)w1.max_inflight, MAX_INFLIGHT, EVENTS);
    demo_check(d, w1.busy_at_signal > 0 && w1.rebalances_at_signal == 1,
               "the SIGTERM came while busy (%llu unhandled) and after one "
               "assignment (%llu): polling went on while paused, so the "
               "member was never evicted",
               (unsigned long long)w1.busy_at_signal,
               (unsigned long long)w1.rebalances_at_signal);
    demo_check(d, handled1 == st1.consumed,
               "handled (%llu) == received (%llu): the stop drained what it "
               "held",
               (unsigned long long)handled1,
               (unsigned long long)st1.consumed);

    if (demo_offsets(d, GROUP, TOPIC, PARTITIONS, committed, NULL, high))
        goto out;
    for (int p = 0; p < PARTITIONS; p++) {
        /* Nothing committed (-1) starts at the beginning, like 0. */
        int64_t next = committed[p] < 0 ? 0 : committed[p], gap = -1;
        for (int64_t o = 0; o < high[p] && o < EVENTS && gap < 0; o++)
            if (atomic_load(&seen.hits[p][o]) != (o < first_run[p]))
                gap = o;
        if (next != first_run[p] || gap >= 0)
            demo_say("          partition %d: committed %lld, handled %d, "
                     "first offset out of place %lld",
                     p, (long long)committed[p], first_run[p], (long long)gap);
        else
            commit_ok++;
    }
    demo_check(d, commit_ok == PARTITIONS,
               "after the stop, committed offset == messages handled, with "
               "no gap, on %d of %d partitions",
               commit_ok, PARTITIONS);

    /* 2. The same group again: exactly the rest. */
    rc = demo_consume_watch(d, conf, EVENTS - handled1, &st2, watch_run, &w2);
    if (rc)
        goto out;
    rc = -1;
    if (demo_offsets(d, GROUP, TOPIC, PARTITIONS, committed, NULL, high))
        goto out;
    for (int p = 0; p < PARTITIONS; p++) {
        total += (int)high[p];
        for (int64_t o = 0; o < high[p] && o < EVENTS; o++)
            once += atomic_load(&seen.hits[p][o]) == 1;
    }
    demo_check(d, st2.consumed == EVENTS - handled1,
               "the second run consumed %llu == %d - %llu: it began at the "
               "committed offsets",
               (unsigned long long)st2.consumed, EVENTS,
               (unsigned long long)handled1);
    demo_check(d, once == EVENTS && total == EVENTS,
               "every event handled exactly once over both runs (%d of %d)",
               once, EVENTS);
    demo_check(d, w2.max_inflight <= MAX_INFLIGHT + MAX_INFLIGHT / 2,
               "second run: in flight at most %llu (%llu pauses)",
               (unsigned long long)w2.max_inflight,
               (unsigned long long)w2.pauses);
    demo_say("vs. the article: its queue depth counts messages inside its own "
             "eachMessage, which kafkajs runs one at a time, so it never "
             "passes 1 and never pauses; its SIGTERM handler waits at most "
             "5 s, then disconnects whatever still runs");
    rc = 0;
out:
    ballast_conf_destroy(conf);
    return rc;
}
