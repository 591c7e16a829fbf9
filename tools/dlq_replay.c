/*
 * dlq_replay.c - `ballast dlq replay`: send dead-lettered records back for
 * another try.
 *
 * The DLQ is read from outside any consumer group (dlq.h's reader), as a
 * snapshot: each partition up to the end offset it had at the start, from
 * its beginning or, with --group, from the group's committed offset.
 *
 * Two passes over that snapshot:
 *   1. Index: every copy of every original record (x-original-topic,
 *      -partition, -offset) is noted (dlq_track.h). A DLQ can hold several
 *      copies of one original: a replay that failed again writes another.
 *      Of the copies that match the filters, the newest (highest
 *      x-replay-count) is the one to replay, and its x-replay-count is taken
 *      as the highest of all copies, so that --max-replays bounds an
 *      original whichever copy goes back.
 *   2. Replay: each record is filtered out, held back, a duplicate of the
 *      chosen copy, over --max-replays, unroutable, or sent: produced by an
 *      idempotent producer to its x-original-topic (on its
 *      x-original-partition, so that a key stays on the partition its other
 *      records are on) or to --to (partitioned by key), with key, value and
 *      headers, minus the headers that describe the failure being retried,
 *      plus x-replay-count and x-replayed-from. --dry-run prints each
 *      decision and sends nothing.
 *
 * --group NAME keeps the replay's place as a consumer group on the DLQ
 * (commits through the admin API; the replay never joins the group). A
 * record's offset is committed once it is settled: skipped for any reason
 * (filtered out, a duplicate, over --max-replays: the group remembers what
 * was looked at, not only what was sent), or sent and acknowledged by the
 * broker. A record that could not be routed or delivered holds its
 * partition: nothing after it is sent in that run, and the next run starts
 * with it. Commits happen every second and at the end, also after a stop
 * signal. The DLQ itself is never written to.
 */
#include "dlq_group.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_NOTES 10
#define COMMIT_INTERVAL_S 1.0

/* ---- the producer ---------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    replay_t *rp = opaque;
    in_flight_t *f = m->_private;

    (void)rk;
    if (f) {
        dlq_progress_acked(rp->progress, f->partition, f->offset, !m->err);
        free(f);
    }
    if (!m->err) {
        rp->delivered++;
        return;
    }
    if (!rp->failed++)
        snprintf(rp->first_failure, sizeof(rp->first_failure), "to %s: %s",
                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    replay_t *rp = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL && !rp->fatal[0]) {
        char why[400];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        snprintf(rp->fatal, sizeof(rp->fatal), "the producer failed: %s", why);
    }
    (void)reason;
}

/* The idempotent producer, with the user's -X properties. */
static rd_kafka_t *producer_new(replay_t *rp, char *errbuf, size_t errsize)
{
    static const char *const settings[] = {"client.id", "ballast-dlq-replay",
                                           "enable.idempotence", "true",
                                           "acks", "all", NULL};
    const dlq_opts_t *o = rp->o;
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, settings, o->props,
                                         o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    rd_kafka_conf_set_opaque(conf, rp);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- messages -------------------------------------------------------------- */

/* Clears the progress line (on a terminal) so that a note can be printed. */
static void clear_progress(const replay_t *rp)
{
    if (rp->tty && rp->last_progress > 0)
        fputs("\r\033[K", stderr);
}

static void progress(replay_t *rp, bool final)
{
    double now = cli_now_s(), elapsed = now - rp->started;

    if (!rp->tty || (!final && now - rp->last_progress < 0.1))
        return;
    rp->last_progress = now;
    if (rp->indexing)
        fprintf(stderr, "\r\033[Kreplay %s: looking for duplicates %llu/%llu", rp->o->topic,
                (unsigned long long)rp->indexed, (unsigned long long)rp->r->total);
    else
        fprintf(stderr,
                "\r\033[Kreplay %s: scanned %llu/%llu  sent %llu  delivered %llu  "
                "skipped %llu  %.1f/s",
                rp->o->topic, (unsigned long long)rp->scanned,
                (unsigned long long)rp->r->total, (unsigned long long)rp->sent,
                (unsigned long long)rp->delivered,
                (unsigned long long)(rp->skipped + rp->duplicates),
                elapsed > 0 ? (double)rp->sent / elapsed : 0.0);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* A note on stderr about one record (at most MAX_NOTES of them). */
static void note(replay_t *rp, const rd_kafka_message_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(replay_t *rp, const rd_kafka_message_t *m, const char *fmt, ...)
{
    char text[600];
    va_list ap;

    if (rp->notes++ >= MAX_NOTES) {
        if (rp->notes == MAX_NOTES + 1) {
            clear_progress(rp);
            fprintf(stderr, "ballast: (further notes left out; the summary counts them)\n");
        }
        return;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    clear_progress(rp);
    fprintf(stderr, "ballast: %s [%d] offset %lld: %s\n", rp->o->topic, (int)m->partition,
            (long long)m->offset, text);
}

/* What becomes of a record that is not sent: in a dry run a line on stdout
 * ("VERB DLQ[P]@O: why"); otherwise, when @p noted is set, a note on
 * stderr ("noted: why"). */
static void tell(replay_t *rp, const rd_kafka_message_t *m, const char *verb,
                 const char *noted, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void tell(replay_t *rp, const rd_kafka_message_t *m, const char *verb,
                 const char *noted, const char *fmt, ...)
{
    char why[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (rp->o->dry_run)
        printf("%-8s %s[%d]@%lld: %s\n", verb, rp->o->topic, (int)m->partition,
               (long long)m->offset, why);
    else if (noted)
        note(rp, m, "%s: %s", noted, why);
}

/* ---- where a record goes --------------------------------------------------- */

/* The partition count of a target topic (cached). */
static const topic_info_t *target_info(replay_t *rp, const char *topic)
{
    topic_info_t *grown, *t;

    for (size_t i = 0; i < rp->ntopics; i++)
        if (!strcmp(rp->topics[i].name, topic))
            return &rp->topics[i];
    if (!(grown = realloc(rp->topics, (rp->ntopics + 1) * sizeof(*grown))))
        return NULL;
    rp->topics = grown;
    t = &rp->topics[rp->ntopics];
    memset(t, 0, sizeof(*t));
    if (!(t->name = strdup(topic)))
        return NULL;
    /* Asked through the producer when there is one: the answer also primes
     * its metadata, so that the first record to a topic is sent at once
     * rather than after librdkafka's next periodic topic scan (1 s). */
    if (rp->prod)
        t->rkt = rd_kafka_topic_new(rp->prod, topic, NULL);
    t->partitions = cli_partition_count(rp->prod ? rp->prod : rp->r->rk, topic,
                                        rp->o->timeout_ms, t->reason, sizeof(t->reason));
    rp->ntopics++;
    return t;
}

/* The original of a dead-letter record; false when its x-original-*
 * headers do not say. */
static bool origin_of(const dlq_view_t *v, origin_t *out)
{
    const dlq_field_t *t = &v->h[H_TOPIC];
    int64_t partition;

    if (!t->value || !t->len || t->len >= sizeof(out->topic) ||
        !dlq_is_text(t->value, t->len) ||
        !dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &partition) ||
        partition < 0 || partition > INT32_MAX ||
        !dlq_bytes_int64(v->h[H_OFFSET].value, v->h[H_OFFSET].len, &out->offset))
        return false;
    memcpy(out->topic, t->value, t->len);
    out->topic[t->len] = '\0';
    out->partition = (int32_t)partition;
    return true;
}

/* Headers that describe the failure being retried: dropped on replay (a new
 * failure writes new ones). x-replay-count and x-replayed-from are set anew. */
static bool dropped_header(const char *name)
{
    static const char *const names[] = {
        BALLAST_HEADER_ERROR_MESSAGE, BALLAST_HEADER_FAILED_AT,
        BALLAST_HEADER_RETRY_COUNT,   BALLAST_HEADER_CONSUMER_GROUP,
        BALLAST_HEADER_RETRY_DUE,     BALLAST_HEADER_RETRY_TIER,
        BALLAST_HEADER_REPLAY_COUNT,  BALLAST_HEADER_REPLAYED_FROM};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

/* The headers of the replayed record, which is replay number @p count.
 * NULL when out of memory. */
static rd_kafka_headers_t *replay_headers(const dlq_view_t *v, const char *dlq_topic,
                                          int64_t count)
{
    size_t n = v->hdrs ? rd_kafka_header_cnt(v->hdrs) : 0;
    rd_kafka_headers_t *out = rd_kafka_headers_new(n + 2);
    const char *name;
    const void *val, *seen;
    size_t size, seen_size;
    char num[32], from[400];

    if (!out)
        return NULL;
    for (size_t i = 0; v->hdrs && !rd_kafka_header_get_all(v->hdrs, i, &name, &val, &size);
         i++) {
        if (dropped_header(name))
            continue;
        /* The first of each x-original-* name: the first failure's. */
        if (!strncmp(name, BALLAST_HEADER_ORIGINAL_PREFIX,
                     sizeof(BALLAST_HEADER_ORIGINAL_PREFIX) - 1) &&
            !rd_kafka_header_get_last(out, name, &seen, &seen_size))
            continue;
        rd_kafka_header_add(out, name, -1, val, val ? (ssize_t)size : 0);
    }
    snprintf(num, sizeof(num), "%lld", (long long)count);
    rd_kafka_header_add(out, BALLAST_HEADER_REPLAY_COUNT, -1, num, -1);
    snprintf(from, sizeof(from), "%s:%d:%lld", dlq_topic, (int)v->m->partition,
             (long long)v->m->offset);
    rd_kafka_header_add(out, BALLAST_HEADER_REPLAYED_FROM, -1, from, -1);
    return out;
}

/* ---- pacing ---------------------------------------------------------------- */

/* Waits, serving delivery reports, until @p until (monotonic seconds). */
static void wait_until(replay_t *rp, double until)
{
    for (;;) {
        double left = until - cli_now_s();
        if (left <= 0 || cli_stop_requested)
            return;
        if (left >= 0.002 && rp->prod) {
            rd_kafka_poll(rp->prod, (int)(left * 1000));
        } else {
            /* Whole seconds apart: a --dry-run at a rate below one a
             * second waits longer than one, and tv_nsec must stay below
             * 10^9 (else nanosleep fails at once and this loop spins). */
            struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
            nanosleep(&ts, NULL);
        }
        progress(rp, false);
    }
}

/* Takes a token from the --rate bucket, waiting for one when it is empty.
 * The bucket holds up to 10 ms worth of tokens (at least one), so the
 * average rate is --rate and bursts stay small. */
static void take_token(replay_t *rp)
{
    double now, interval, depth;

    if (rp->o->rate <= 0)
        return;
    interval = 1.0 / rp->o->rate;
    depth = rp->o->rate * 0.01 > 1 ? rp->o->rate * 0.01 : 1;
    now = cli_now_s();
    /* next_token_at is when the bucket would hold exactly one token; it
     * may lie in the past by at most depth tokens' worth. */
    if (rp->next_token_at < now - (depth - 1) * interval)
        rp->next_token_at = now - (depth - 1) * interval;
    if (rp->next_token_at > now)
        wait_until(rp, rp->next_token_at);
    rp->next_token_at += interval;
}

static void replay_tick(void *arg)
{
    replay_t *rp = arg;

    if (rp->prod)
        rd_kafka_poll(rp->prod, 0);
    if (rp->admin && !rp->o->dry_run && !rp->indexing &&
        cli_now_s() - rp->last_commit >= COMMIT_INTERVAL_S)
        dlq_group_commit(rp); /* a failure is reported by the last commit */
    progress(rp, false);
}

/* ---- the two passes --------------------------------------------------------- */

/* Pass 1: notes every copy of every original. */
static int index_record(void *arg, const rd_kafka_message_t *m)
{
    replay_t *rp = arg;
    dlq_view_t v;
    origin_t orig;

    rp->indexed++;
    dlq_view_init(&v, m);
    if (origin_of(&v, &orig)) {
        dlq_copy_t copy = {m->partition, m->offset, v.replays, v.failed_at_ms};
        if (!dlq_origins_add(rp->origins, orig.topic, orig.partition, orig.offset, &copy,
                             dlq_matches(rp->o, &v))) {
            snprintf(rp->fatal, sizeof(rp->fatal), "out of memory");
            return 1;
        }
    }
    return 0;
}

/* Where the record goes: @p target and @p partition (UA: by key); false
 * after saying why it cannot go anywhere (it then holds its partition). */
static bool route(replay_t *rp, const rd_kafka_message_t *m, const dlq_view_t *v,
                  char *target, size_t size, int32_t *partition)
{
    const dlq_opts_t *o = rp->o;
    const topic_info_t *ti;
    const char *why;
    int64_t op;

    *partition = RD_KAFKA_PARTITION_UA;
    if (o->to) {
        snprintf(target, size, "%s", o->to);
    } else if (v->h[H_TOPIC].value && v->h[H_TOPIC].len && v->h[H_TOPIC].len < 250 &&
               dlq_is_text(v->h[H_TOPIC].value, v->h[H_TOPIC].len)) {
        snprintf(target, size, "%.*s", (int)v->h[H_TOPIC].len,
                 (const char *)v->h[H_TOPIC].value);
    } else {
        tell(rp, m, "cannot", "not replayed", "no usable x-original-topic header (give --to)");
        return false;
    }
    ti = target_info(rp, target);
    why = !ti                         ? "out of memory"
          : !strcmp(target, o->topic) ? "it names the DLQ itself"
          : ti->partitions == 0       ? "the topic does not exist"
          : ti->partitions < 0        ? ti->reason
                                      : NULL;
    if (why) {
        tell(rp, m, "cannot", "not replayed", "to %s: %s", target, why);
        return false;
    }
    /* Back to the partition it came from, so that its key stays with the
     * key's other records; with --to, the partitioner decides by key. */
    if (!o->to && dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &op) &&
        op >= 0 && op < ti->partitions)
        *partition = (int32_t)op;
    return true;
}

/* Produces the replayed copy of @p m. @returns 0, or 1 to stop the run. */
static int send_record(replay_t *rp, const rd_kafka_message_t *m, const dlq_view_t *v,
                       const char *target, int32_t partition, int64_t count)
{
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t err;
    in_flight_t *f;

    take_token(rp);
    if (cli_stop_requested)
        return 1;
    f = malloc(sizeof(*f));
    if (!f || !(hdrs = replay_headers(v, rp->o->topic, count))) {
        free(f);
        rp->not_sent++;
        snprintf(rp->fatal, sizeof(rp->fatal), "out of memory");
        return 1;
    }
    f->partition = m->partition;
    f->offset = m->offset;
    if (!dlq_progress_sent(rp->progress, m->partition, m->offset)) {
        free(f);
        rd_kafka_headers_destroy(hdrs);
        snprintf(rp->fatal, sizeof(rp->fatal), "out of memory");
        return 1;
    }
    for (;;) {
        err = rd_kafka_producev(
            rp->prod, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(f), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || cli_stop_requested)
            break;
        rd_kafka_poll(rp->prod, 50);
        progress(rp, false);
    }
    if (err) {
        /* The producer took the headers (and the opaque) only on success. */
        rd_kafka_headers_destroy(hdrs);
        free(f);
        dlq_progress_acked(rp->progress, m->partition, m->offset, false);
        rp->not_sent++;
        if (!rp->failed && !rp->first_failure[0])
            snprintf(rp->first_failure, sizeof(rp->first_failure), "to %s: %s", target,
                     rd_kafka_err2str(err));
        note(rp, m, "not replayed to %s: %s", target, rd_kafka_err2str(err));
        if (err == RD_KAFKA_RESP_ERR__FATAL)
            return 1;
    } else {
        rp->sent++;
    }
    rd_kafka_poll(rp->prod, 0);
    return rp->fatal[0] ? 1 : 0;
}

/* Pass 2: decides about one record, and sends it or says why not. */
static int replay_record(void *arg, const rd_kafka_message_t *m)
{
    replay_t *rp = arg;
    const dlq_opts_t *o = rp->o;
    const dlq_origin_t *e = NULL;
    char target[300];
    int32_t partition;
    int64_t replays, held;
    dlq_view_t v;
    origin_t orig;

    rp->scanned++;
    dlq_view_init(&v, m);
    if (!dlq_matches(o, &v)) {
        tell(rp, m, "skip", NULL, "filtered out by --where");
        dlq_progress_settled(rp->progress, m->partition, m->offset);
        return 0;
    }
    rp->matched++;
    /* With --group nothing passes a record that could not be replayed: the
     * next run starts with it, and must not send what follows twice. */
    if (o->group && (held = dlq_progress_held_at(rp->progress, m->partition)) >= 0) {
        rp->held_back++;
        tell(rp, m, "hold", NULL,
             "held back behind %s[%d]@%lld, which could not be replayed (the next run "
             "with --group %s starts there)",
             o->topic, (int)m->partition, (long long)held, o->group);
        return 0;
    }
    replays = v.replays;
    if (origin_of(&v, &orig) &&
        (e = dlq_origins_find(rp->origins, orig.topic, orig.partition, orig.offset))) {
        replays = e->max_replays;
        if (e->chosen_set &&
            (e->chosen.partition != m->partition || e->chosen.offset != m->offset)) {
            rp->duplicates++;
            tell(rp, m, "skip", NULL, "duplicate of %s[%d]@%lld, which is replayed from %s[%d]@%lld",
                 orig.topic, (int)orig.partition, (long long)orig.offset, o->topic,
                 (int)e->chosen.partition, (long long)e->chosen.offset);
            dlq_progress_settled(rp->progress, m->partition, m->offset);
            return 0;
        }
    }
    if (replays >= o->max_replays) {
        rp->skipped++;
        tell(rp, m, "skip", "skipped", "x-replay-count %lld reached --max-replays %lld%s",
             (long long)replays, (long long)o->max_replays,
             e && e->max_replays > v.replays ? " (on another copy of the record)" : "");
        dlq_progress_settled(rp->progress, m->partition, m->offset);
        return 0;
    }
    if (!route(rp, m, &v, target, sizeof(target), &partition)) {
        rp->unroutable++;
        if (!dlq_progress_hold(rp->progress, m->partition, m->offset)) {
            snprintf(rp->fatal, sizeof(rp->fatal), "out of memory");
            return 1;
        }
        return 0;
    }
    if (o->dry_run) {
        char key[128], ps[32] = "by key";
        dlq_cell(key, sizeof(key), m->key, m->key_len, 32);
        if (partition != RD_KAFKA_PARTITION_UA)
            snprintf(ps, sizeof(ps), "%d", (int)partition);
        printf("replay   %s[%d]@%lld -> %s [%s]  key %s  x-replay-count %lld\n", o->topic,
               (int)m->partition, (long long)m->offset, target, ps, key,
               (long long)replays + 1);
        rp->sent++;
        dlq_progress_settled(rp->progress, m->partition, m->offset);
    } else if (send_record(rp, m, &v, target, partition, replays + 1)) {
        return 1;
    }
    progress(rp, false);
    if (o->limit && rp->sent >= (uint64_t)o->limit) {
        rp->limit_reached = true;
        return 1;
    }
    return 0;
}

/* ---- the run ----------------------------------------------------------------- */

/* Opens what a run needs: the producer, the reader and, with --group, the
 * group's offsets (where each partition starts). @returns 0 or an exit
 * code after printing why. */
static int replay_open(replay_t *rp)
{
    const dlq_opts_t *o = rp->o;
    char errbuf[512];
    int rc;

    /* The producer first: its producer id is then fetched while the DLQ's
     * partitions and end offsets are looked up. */
    if (!o->dry_run && !(rp->prod = producer_new(rp, errbuf, sizeof(errbuf)))) {
        cli_error("%s", errbuf);
        return EX_CONFIG;
    }
    if ((rc = dlq_reader_open(rp->r, o)))
        return rc;
    if (!(rp->origins = dlq_origins_new()) ||
        !(rp->progress = dlq_progress_new(rp->r->nparts)) ||
        !(rp->committed = calloc((size_t)rp->r->nparts, sizeof(*rp->committed)))) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int32_t p = 0; p < rp->r->nparts; p++)
        rp->committed[p] = -1;
    if (o->group) {
        /* The reader's client serves the admin calls too: it never joins a
         * group, and it is the one that just reached the broker. */
        rp->admin = rp->r->rk;
        if ((rc = dlq_group_check_unused(rp)) || (rc = dlq_group_read(rp)))
            return rc;
    }
    for (int32_t p = 0; p < rp->r->nparts; p++)
        dlq_progress_start(rp->progress, p,
                           rp->committed[p] >= 0 ? rp->committed[p] : rp->r->low[p]);
    if (o->to) {
        const topic_info_t *ti = target_info(rp, o->to);
        if (!ti || ti->partitions <= 0) {
            cli_error("--to %s: %s", o->to,
                      !ti                   ? "out of memory"
                      : ti->partitions == 0 ? "the topic does not exist"
                                            : ti->reason);
            if (!ti)
                return EX_SOFTWARE;
            return ti->partitions == 0 || ti->partitions == CLI_TOPIC_DENIED ? EX_CONFIG : 1;
        }
    }
    return 0;
}

/* Both passes over the snapshot. @returns what the reader returned. */
static int replay_passes(replay_t *rp)
{
    int rc;

    rp->indexing = true;
    rc = dlq_reader_start(rp->r, rp->o, rp->committed) ||
         dlq_reader_run(rp->r, rp->o, index_record, replay_tick, rp);
    rp->indexing = false;
    if (rc || rp->fatal[0])
        return 1;
    if (dlq_reader_start(rp->r, rp->o, rp->committed))
        return 1;
    rc = dlq_reader_run(rp->r, rp->o, replay_record, replay_tick, rp);
    /* Partitions read to their end: offsets past the last record (markers
     * of transactions) are settled too. */
    for (int32_t p = 0; p < rp->r->nparts; p++)
        if (rp->r->done[p])
            dlq_progress_end(rp->progress, p, rp->r->end[p]);
    return rc;
}

static void print_summary(const replay_t *rp, bool incomplete)
{
    const dlq_opts_t *o = rp->o;
    char started[40];

    bl_iso8601(rp->started_wall, started, sizeof(started));
    printf("replay from %s%s: scanned %llu, matched %llu, %s %llu, skipped %llu "
           "(x-replay-count >= %lld), unroutable %llu, duplicates %llu",
           o->topic, o->dry_run ? " (dry run: nothing was written)" : "",
           (unsigned long long)rp->scanned, (unsigned long long)rp->matched,
           o->dry_run ? "would send" : "sent", (unsigned long long)rp->sent,
           (unsigned long long)rp->skipped, (long long)o->max_replays,
           (unsigned long long)rp->unroutable, (unsigned long long)rp->duplicates);
    if (rp->held_back)
        printf(", held back %llu", (unsigned long long)rp->held_back);
    if (!o->dry_run)
        printf(", delivered %llu, failed %llu", (unsigned long long)rp->delivered,
               (unsigned long long)(rp->failed + rp->not_sent));
    printf("%s; started %s, took %.2f s\n",
           rp->limit_reached ? " (--limit reached)" : incomplete ? " (incomplete)" : "",
           started, cli_now_s() - rp->started);
    if (o->group) {
        char at[1024];
        dlq_group_positions(rp, at, sizeof(at));
        if (o->dry_run)
            printf("group %s: would commit %s\n", o->group, at);
        else if (rp->commit_error[0])
            printf("group %s: not committed (see the error)\n", o->group);
        else
            printf("group %s: committed %s\n", o->group, at);
    }
    fflush(stdout);
}

/* The exit code, after saying on stderr what went wrong. */
static int replay_verdict(const replay_t *rp, int read_rc)
{
    int rc = 0;

    if (rp->fatal[0]) {
        cli_error("%s", rp->fatal);
        rc = 1;
    }
    if (rp->failed + rp->not_sent) {
        cli_error("%llu of %llu record(s) were not delivered; the first failure: %s",
                  (unsigned long long)(rp->failed + rp->not_sent),
                  (unsigned long long)(rp->sent + rp->not_sent), rp->first_failure);
        rc = 1;
    }
    if (rp->unroutable) {
        cli_error("%llu record(s) could not be routed (see the notes above)",
                  (unsigned long long)rp->unroutable);
        rc = 1;
    }
    if (rp->commit_error[0]) {
        cli_error("--group %s: the offsets could not be committed (%s): the next run "
                  "sends again what this one sent since the last commit",
                  rp->o->group, rp->commit_error);
        rc = 1;
    }
    if (cli_stop_requested) {
        cli_error("interrupted: the records sent before the signal were delivered or "
                  "counted as failed%s",
                  rp->o->group && !rp->o->dry_run ? ", and the group remembers them" : "");
        rc = 1;
    } else if (read_rc) {
        rc = 1;
    }
    return rc;
}

static void replay_close(replay_t *rp)
{
    for (size_t i = 0; i < rp->ntopics; i++) {
        if (rp->topics[i].rkt)
            rd_kafka_topic_destroy(rp->topics[i].rkt);
        free(rp->topics[i].name);
    }
    if (rp->prod)
        rd_kafka_destroy(rp->prod);
    free(rp->topics);
    free(rp->committed);
    dlq_origins_free(rp->origins);
    dlq_progress_free(rp->progress);
    dlq_reader_close(rp->r);
}

int dlq_replay_run(const dlq_opts_t *o)
{
    dlq_reader_t r;
    replay_t rp;
    int rc, read_rc;

    memset(&rp, 0, sizeof(rp));
    memset(&r, 0, sizeof(r));
    rp.o = o;
    rp.r = &r;
    rp.tty = isatty(STDERR_FILENO);
    rp.started = cli_now_s();
    rp.started_wall = bl_wall_ms();
    if ((rc = replay_open(&rp))) {
        replay_close(&rp);
        return rc;
    }
    read_rc = replay_passes(&rp);
    /* Every delivery report, however long the producer's own timeouts
     * (message.timeout.ms) make it take. */
    while (rp.prod && rd_kafka_flush(rp.prod, 100) == RD_KAFKA_RESP_ERR__TIMED_OUT)
        progress(&rp, false);
    /* The last commit, also after a stop signal: what was delivered stays
     * done for the next run. */
    if (rp.admin && !o->dry_run)
        dlq_group_commit(&rp);
    if (rp.tty && rp.last_progress > 0)
        progress(&rp, true);
    print_summary(&rp, read_rc || cli_stop_requested || rp.fatal[0]);
    rc = replay_verdict(&rp, read_rc);
    replay_close(&rp);
    return rc;
}
