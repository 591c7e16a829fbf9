/*
 * cmd_dlq.c - `ballast dlq inspect` and the shared parts of `ballast dlq`:
 * the options of both commands, the group-less reader of a dead-letter
 * topic, and a view of a dead-letter record's headers (dlq.h). The replay
 * itself is dlq_replay.c; the --where expressions are dlq_filter.c.
 *
 * Reading. The DLQ is read with librdkafka's per-partition ("simple")
 * consumer API, which needs no group.id at all: nothing joins a group.
 * Every partition is read from where the caller says (its beginning, or a
 * replay group's committed offset) up to the high watermark it had when the
 * reader was opened (a snapshot: records that fail again while a replay
 * runs are not replayed again by the same run), read_committed, and a
 * partition counts as read when it reports its end (enable.partition.eof)
 * or reaches its snapshot end.
 *
 * Dead-letter records carry the headers of SPEC.md ("Dead-letter records"):
 * x-original-topic, x-original-partition, x-original-offset,
 * x-original-timestamp, x-retry-count, x-error-message, x-consumer-group,
 * x-failed-at; a replayed record adds x-replay-count and x-replayed-from.
 * Where a name occurs more than once, the last occurrence counts (as for
 * ballast_message_header_find() and `:header.NAME`).
 */
#include "dlq.h"
#include "dlq_track.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char dlq_usage[] =
    "usage: ballast dlq inspect -b BOOTSTRAP -t DLQ_TOPIC [--json] [--limit N]\n"
    "                           [--where EXPR]... [-X PROP=VALUE]...\n"
    "       ballast dlq replay  -b BOOTSTRAP --from DLQ_TOPIC [--to TOPIC]\n"
    "                           [--group NAME] [--where EXPR]... [--rate N/s]\n"
    "                           [--dry-run] [--limit N] [--max-replays N]\n"
    "                           [-X PROP=VALUE]...\n"
    "\n"
    "Tools for a dead-letter topic (dlq.topic). Both read it without joining\n"
    "any consumer group and never write to it.\n"
    "  inspect  list its records (table or JSON lines) and count them by error\n"
    "  replay   send selected records back to their x-original-topic (or --to)\n"
    "\n"
    "Run `ballast dlq inspect --help` or `ballast dlq replay --help` for the\n"
    "options.\n";

static const char inspect_usage[] =
    "usage: ballast dlq inspect -b BOOTSTRAP -t DLQ_TOPIC [--json] [--limit N]\n"
    "                           [--where EXPR]... [--timeout SECONDS]\n"
    "                           [-X PROP=VALUE]...\n"
    "\n"
    "Lists the records of a dead-letter topic, then counts them by error\n"
    "message, most frequent first. The topic is read from outside any consumer\n"
    "group (no group.id; nothing is committed): every partition from its\n"
    "beginning up to the end offset it had when the command started,\n"
    "read_committed (records of aborted or still open transactions are not\n"
    "shown).\n"
    "\n"
    "The table shows per record: the DLQ partition and offset; where it failed\n"
    "(x-original-topic[x-original-partition]@x-original-offset); x-failed-at;\n"
    "x-retry-count; x-replay-count; the key; x-error-message (cut to 60\n"
    "characters). Keys that are not UTF-8 text show as <N bytes>.\n"
    "\n"
    "--json prints one object per record per line:\n"
    "  topic, partition, offset, timestamp  the DLQ record\n"
    "  key, value           strings when valid UTF-8, else key_b64 / value_b64\n"
    "                       (base64); null when absent\n"
    "  original_topic, original_partition, original_offset, original_timestamp,\n"
    "  retry_count, error, consumer_group, failed_at, replay_count,\n"
    "  replayed_from        the x-* headers decoded (numbers as numbers, null\n"
    "                       when absent; replay_count is 0 when absent)\n"
    "  headers              every header: name -> string, or null for a null\n"
    "                       value (the last header of a name wins)\n"
    "  headers_b64          name -> base64, for header values that are not\n"
    "                       UTF-8 (present only when there are some)\n"
    "and then one last line:\n"
    "  {\"summary\":{\"topic\":..., \"records\":N,\n"
    "               \"errors\":[{\"error\":TEXT,\"count\":N},...]}}\n"
    "(most frequent first; records without x-error-message count under null).\n"
    "To keep only the records: jq -c 'select(has(\"summary\") | not)'.\n"
    "\n"
    "options:\n"
    "  -b, --bootstrap BOOTSTRAP  brokers (host:port,...)\n"
    "  -t, --topic DLQ_TOPIC      the dead-letter topic\n"
    "  --json                     JSON lines instead of the table\n"
    "  --limit N                  show at most N records; reading stops there and\n"
    "                             the summary counts the records shown\n"
    "  --where EXPR               only records matching EXPR; repeatable, all must\n"
    "                             match (the filters of `ballast dlq replay --help`)\n"
    "  --timeout SECONDS          per broker request, and the longest wait for the\n"
    "                             next record (default 10)\n"
    "  -X PROP=VALUE              a librdkafka property (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "Exit codes: 0 done, 64 usage, 69 broker unreachable at start-up, 78 the\n"
    "topic does not exist or a bad -X property, 1 other failure.\n";

static const char replay_usage[] =
    "usage: ballast dlq replay -b BOOTSTRAP --from DLQ_TOPIC [--to TOPIC]\n"
    "                          [--group NAME] [--where EXPR]... [--rate N[/s]]\n"
    "                          [--dry-run] [--limit N] [--max-replays N]\n"
    "                          [--timeout SECONDS] [-X PROP=VALUE]...\n"
    "\n"
    "Sends dead-lettered records back for another try. DLQ_TOPIC is read as\n"
    "`ballast dlq inspect` reads it (no consumer group joined; every partition\n"
    "up to its end offset at start, read_committed), from its beginning or,\n"
    "with --group, from where the last run with that group stopped. Each\n"
    "selected record is produced to its x-original-topic, on its\n"
    "x-original-partition (or, with --to, to TOPIC, partitioned by key), with\n"
    "its key, value and headers, except that:\n"
    "  - x-error-message, x-failed-at, x-retry-count, x-consumer-group,\n"
    "    x-retry-due and x-retry-tier are removed: they describe the failure\n"
    "    being retried, and a new failure writes new ones;\n"
    "  - x-original-* are kept (the first of each name), so a record that\n"
    "    fails again keeps the provenance of its first failure;\n"
    "  - x-replay-count is set to the record's x-replay-count + 1 (1 the first\n"
    "    time), and x-replayed-from to DLQ_TOPIC:PARTITION:OFFSET of the DLQ\n"
    "    record it came from.\n"
    "\n"
    "Each original record (x-original-topic, -partition, -offset) is replayed\n"
    "at most once per run. A DLQ can hold several copies of one, when a replay\n"
    "failed again: the newest copy that matches the filters goes (the highest\n"
    "x-replay-count, then the latest x-failed-at), counted past the highest\n"
    "x-replay-count of all its copies; the others are skipped as duplicates.\n"
    "An original whose x-replay-count has reached --max-replays is skipped\n"
    "with a note: a record that keeps failing comes back to the DLQ at most\n"
    "that many times, and never loops.\n"
    "\n"
    "--group NAME remembers how far replays got, as the consumer group NAME\n"
    "on DLQ_TOPIC (its offsets are committed through the admin API; the replay\n"
    "never joins it), so a second run with the same NAME continues where the\n"
    "first stopped: it replays only what was dead-lettered since. A record's\n"
    "offset counts as done once it was skipped (filtered out, a duplicate, at\n"
    "--max-replays: the group remembers what it looked at, so use one group\n"
    "per selection) or its replayed copy was acknowledged by the broker. A\n"
    "record that cannot be routed or delivered stops its partition there:\n"
    "nothing after it is sent, and the next run starts with it. Offsets are\n"
    "committed every second and at the end, also after SIGINT/SIGTERM. NAME\n"
    "must be a group of its own: one with members is refused. With --dry-run\n"
    "nothing is committed: the run shows what the next one would do. Without\n"
    "--group every run reads the whole DLQ (use --where after=TIME with the\n"
    "start time of an earlier run to skip what it saw).\n"
    "\n"
    "Records go out through an idempotent producer, in DLQ order within each DLQ\n"
    "partition; the command waits for every delivery report. The DLQ itself\n"
    "is never written to.\n"
    "\n"
    "filters (--where EXPR, repeatable; a record must match all of them):\n"
    "  header:NAME=VALUE  the header NAME (its last occurrence) is VALUE\n"
    "  header:NAME        the record has a header NAME\n"
    "  error~TEXT         x-error-message contains TEXT\n"
    "  error=TEXT         x-error-message is TEXT\n"
    "  after=TIME         x-failed-at is at or after TIME\n"
    "  before=TIME        x-failed-at is before TIME\n"
    "  topic=NAME         x-original-topic is NAME\n"
    "  partition=N        x-original-partition is N\n"
    "  key=VALUE          the key is VALUE\n"
    "joined with AND and OR (capitals, words of their own; AND binds tighter)\n"
    "and grouped with ( ), e.g. --where \"error~timeout OR (topic=orders AND\n"
    "partition=2)\". A value runs to the next AND or OR; quote it, '...' or\n"
    "\"...\", when it holds AND or OR itself, or a ')' it does not open.\n"
    "TIME is ISO-8601: 2024-05-01, 2024-05-01T12:00, 2024-05-01T12:00:00.250Z or\n"
    "2024-05-01T14:00:00+02:00 (UTC when no zone is given). A record without\n"
    "the header that a filter reads does not match it.\n"
    "\n"
    "options:\n"
    "  -b, --bootstrap BOOTSTRAP  brokers (host:port,...)\n"
    "  --from DLQ_TOPIC           the dead-letter topic to read\n"
    "  --to TOPIC                 send every selected record to TOPIC instead of\n"
    "                             its x-original-topic\n"
    "  -g, --group NAME           remember how far replays got (see above)\n"
    "  --where EXPR               a filter, as above\n"
    "  --rate N[/s]               at most N records per second (a token bucket;\n"
    "                             N may have decimals, e.g. 0.5/s)\n"
    "  --dry-run                  print what each record would come to, and why:\n"
    "                             replay, skip (filtered out, duplicate, at\n"
    "                             --max-replays), cannot (no destination), hold\n"
    "                             (behind one that cannot); write and commit\n"
    "                             nothing\n"
    "  --limit N                  replay at most N records\n"
    "  --max-replays N            skip records whose x-replay-count is N or more\n"
    "                             (default 3)\n"
    "  --timeout SECONDS          per broker request, and the longest wait for the\n"
    "                             next record (default 10)\n"
    "  -X PROP=VALUE              a librdkafka property for the reading and the\n"
    "                             producing client (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "On a terminal a progress line on stderr is updated in place. The summary\n"
    "goes to stdout: records scanned, matched, sent, skipped, unroutable,\n"
    "duplicates, held back, delivered and failed; the start time (for a later\n"
    "--where after=); and, with --group, the offsets committed.\n"
    "\n"
    "Exit codes: 0 every selected record was delivered (or nothing was\n"
    "selected), 1 some delivery failed, a record could not be routed, the\n"
    "group's offsets could not be committed (the summary says) or the run\n"
    "was interrupted, 64 usage, 69 broker unreachable at start-up, 78 the\n"
    "DLQ or --to topic does not exist, --group names a group with members, or\n"
    "a bad -X property.\n";

/* ---- options ------------------------------------------------------------ */

/* The bytes [p, p+len) as a whole decimal number. */
bool dlq_bytes_int64(const void *p, size_t len, int64_t *out)
{
    char buf[32];

    if (!p || !len || len >= sizeof(buf))
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return cli_parse_int64(buf, INT64_MIN, INT64_MAX, out);
}

static void opts_free(dlq_opts_t *o)
{
    for (size_t i = 0; i < o->nwhere; i++)
        dlq_filter_free(o->where[i]);
    free(o->where);
    free(o->props);
}

/* @returns 0, -1 for --help, or EX_USAGE after printing why. argv[0] is
 * "inspect" or "replay". */
static int parse_dlq_args(int argc, char **argv, bool replay, dlq_opts_t *o)
{
    const char *cmd = replay ? "replay" : "inspect";
    const char *v;
    bool missing = false;

    memset(o, 0, sizeof(*o));
    o->replay = replay;
    o->max_replays = 3;
    o->timeout_ms = 10000;
    o->props = calloc((size_t)argc, sizeof(*o->props));
    o->where = calloc((size_t)argc, sizeof(*o->where));
    if (!o->props || !o->where) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return -1;
        if (!replay && !strcmp(a, "--json")) {
            o->json = true;
        } else if (replay && !strcmp(a, "--dry-run")) {
            o->dry_run = true;
        } else if ((v = cli_opt_value(argc, argv, &i, "--bootstrap", "-b", &missing))) {
            o->bootstrap = v;
        } else if (!replay && (v = cli_opt_value(argc, argv, &i, "--topic", "-t", &missing))) {
            o->topic = v;
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--from", NULL, &missing))) {
            o->topic = v;
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--group", "-g", &missing))) {
            o->group = v;
            if (!*v) {
                cli_error("--group needs a consumer group name");
                return EX_USAGE;
            }
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--to", NULL, &missing))) {
            o->to = v;
            if (!*v) {
                cli_error("--to needs a topic name");
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--where", NULL, &missing))) {
            char why[300];
            if (!(o->where[o->nwhere] = dlq_filter_parse(v, why, sizeof(why)))) {
                cli_error("--where \"%s\": %s", v, why);
                return EX_USAGE;
            }
            o->nwhere++;
        } else if ((v = cli_opt_value(argc, argv, &i, "--limit", NULL, &missing))) {
            if (!cli_parse_int64(v, 1, INT64_MAX, &o->limit)) {
                cli_error("--limit needs a whole number of records >= 1, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--rate", NULL, &missing))) {
            char num[64];
            size_t n = strlen(v);
            if (n > 2 && !strcmp(v + n - 2, "/s"))
                n -= 2;
            snprintf(num, sizeof(num), "%.*s", (int)n, v);
            if (n >= sizeof(num) || !cli_parse_double(num, 0, &o->rate) || o->rate <= 0 ||
                o->rate > 1e7) {
                cli_error("--rate needs records per second, more than 0 (e.g. 100 or "
                          "100/s), got \"%s\"", v);
                return EX_USAGE;
            }
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--max-replays", NULL,
                                            &missing))) {
            if (!cli_parse_int64(v, 1, 1000000, &o->max_replays)) {
                cli_error("--max-replays needs a whole number from 1 to 1000000, got "
                          "\"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--timeout", NULL, &missing))) {
            double secs;
            if (!cli_parse_double(v, 0.1, &secs) || secs > 3600) {
                cli_error("--timeout needs seconds from 0.1 to 3600, got \"%s\"", v);
                return EX_USAGE;
            }
            o->timeout_ms = (int)(secs * 1000);
        } else if (!strncmp(a, "-X", 2) && !missing) {
            const char *kv = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : "");
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                cli_error("-X needs PROP=VALUE, got \"%s\"", kv);
                return EX_USAGE;
            }
            o->props[o->nprops++] = kv;
        } else if (!missing) {
            cli_error("unexpected argument \"%s\" (see ballast dlq %s --help)", a, cmd);
            return EX_USAGE;
        }
        if (missing) {
            cli_error("%s needs a value (see ballast dlq %s --help)", a, cmd);
            return EX_USAGE;
        }
    }
    if (!o->bootstrap || !*o->bootstrap || !o->topic || !*o->topic) {
        cli_error(replay ? "dlq replay needs -b BOOTSTRAP and --from DLQ_TOPIC (see "
                           "ballast dlq replay --help)"
                         : "dlq inspect needs -b BOOTSTRAP and -t DLQ_TOPIC (see "
                           "ballast dlq inspect --help)");
        return EX_USAGE;
    }
    if (o->to && !strcmp(o->to, o->topic)) {
        cli_error("--to %s is the dead-letter topic itself", o->to);
        return EX_USAGE;
    }
    return 0;
}

/* ---- Kafka clients ------------------------------------------------------- */

/* The group-less reader, with the user's -X properties. NULL with a reason
 * on failure. */
static rd_kafka_t *reader_client(const dlq_opts_t *o, char *errbuf, size_t errsize)
{
    const char *const settings[] = {
        "client.id", o->replay ? "ballast-dlq-replay-reader" : "ballast-dlq-inspect",
        "enable.partition.eof", "true",
        "enable.auto.commit", "false",
        "isolation.level", "read_committed",
        "auto.offset.reset", "earliest",
        "fetch.wait.max.ms", "100",
        "queued.max.messages.kbytes", "16384",
        NULL};
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, settings, o->props,
                                         o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- reading the DLQ ------------------------------------------------------ */

static void reader_stop(dlq_reader_t *r)
{
    for (int32_t p = 0; r->started && p < r->nparts; p++)
        if (r->started[p]) {
            rd_kafka_consume_stop(r->rkt, p);
            r->started[p] = false;
        }
    if (r->q)
        rd_kafka_queue_destroy(r->q);
    r->q = NULL;
}

void dlq_reader_close(dlq_reader_t *r)
{
    reader_stop(r);
    if (r->rkt)
        rd_kafka_topic_destroy(r->rkt);
    if (r->rk)
        rd_kafka_destroy(r->rk);
    free(r->low);
    free(r->end);
    free(r->started);
    free(r->done);
    memset(r, 0, sizeof(*r));
}

int dlq_reader_open(dlq_reader_t *r, const dlq_opts_t *o)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    int n;

    memset(r, 0, sizeof(*r));
    if (!(r->rk = reader_client(o, errbuf, sizeof(errbuf)))) {
        cli_error("%s", errbuf);
        return EX_CONFIG;
    }
    /* A broker-only metadata request first: the clearest unreachability test. */
    if ((err = rd_kafka_metadata(r->rk, 0, NULL, &md, o->timeout_ms))) {
        cli_error("cannot reach the broker at %s: %s", o->bootstrap, rd_kafka_err2str(err));
        return EX_UNAVAILABLE;
    }
    rd_kafka_metadata_destroy(md);
    n = cli_partition_count(r->rk, o->topic, o->timeout_ms, errbuf, sizeof(errbuf));
    if (n < 0) {
        cli_error("%s", errbuf);
        return 1;
    }
    if (n == 0) {
        /* A name given on the command line that names nothing: a
         * configuration error, as for `ballast lag -g`. */
        cli_error("topic %s does not exist", o->topic);
        return EX_CONFIG;
    }
    r->nparts = n;
    r->low = calloc((size_t)n, sizeof(*r->low));
    r->end = calloc((size_t)n, sizeof(*r->end));
    r->started = calloc((size_t)n, sizeof(*r->started));
    r->done = calloc((size_t)n, sizeof(*r->done));
    r->rkt = rd_kafka_topic_new(r->rk, o->topic, NULL);
    if (!r->low || !r->end || !r->started || !r->done || !r->rkt) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int32_t p = 0; p < n; p++)
        if ((err = rd_kafka_query_watermark_offsets(r->rk, o->topic, p, &r->low[p],
                                                    &r->end[p], o->timeout_ms))) {
            cli_error("end offsets of %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(err));
            return 1;
        }
    return 0;
}

int dlq_reader_start(dlq_reader_t *r, const dlq_opts_t *o, const int64_t *from)
{
    reader_stop(r);
    /* A fresh queue: nothing of an earlier pass can reach this one. */
    if (!(r->q = rd_kafka_queue_new(r->rk))) {
        cli_error("out of memory");
        return 1;
    }
    r->total = 0;
    r->remaining = 0;
    for (int32_t p = 0; p < r->nparts; p++) {
        int64_t start = from && from[p] >= 0 ? from[p] : RD_KAFKA_OFFSET_BEGINNING;
        int64_t first = start > r->low[p] ? start : r->low[p];
        r->done[p] = first >= r->end[p];
        if (r->done[p])
            continue;
        r->total += (uint64_t)(r->end[p] - first);
        if (rd_kafka_consume_start_queue(r->rkt, p, start, r->q) == -1) {
            cli_error("reading %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(rd_kafka_last_error()));
            return 1;
        }
        r->started[p] = true;
        r->remaining++;
    }
    return 0;
}

int dlq_reader_run(dlq_reader_t *r, const dlq_opts_t *o, dlq_record_fn *cb,
                   dlq_tick_fn *tick, void *arg)
{
    double idle_since = cli_now_s();

    while (r->remaining > 0) {
        rd_kafka_message_t *m;
        int32_t p;

        if (cli_stop_requested)
            return 1; /* the caller says so */
        if (tick)
            tick(arg);
        if (!(m = rd_kafka_consume_queue(r->q, 100))) {
            if (cli_now_s() - idle_since > o->timeout_ms / 1000.0) {
                cli_error("no record from %s for %.1f s while %d partition(s) had not "
                          "reached their end (see --timeout)",
                          o->topic, o->timeout_ms / 1000.0, (int)r->remaining);
                return 1;
            }
            continue;
        }
        p = m->partition;
        if (p < 0 || p >= r->nparts || r->done[p]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            r->done[p] = true;
            r->remaining--;
        } else if (m->err) {
            cli_error("reading %s [%d]: %s", o->topic, (int)p, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return 1;
        } else if (m->offset >= r->end[p]) {
            r->done[p] = true;
            r->remaining--;
        } else {
            int stop = cb(arg, m);
            if (m->offset + 1 >= r->end[p]) {
                r->done[p] = true;
                r->remaining--;
            }
            if (stop) {
                rd_kafka_message_destroy(m);
                return 0;
            }
        }
        rd_kafka_message_destroy(m);
        idle_since = cli_now_s();
    }
    return 0;
}

/* ---- a dead-letter record ---------------------------------------------- */

static const char *const header_names[H_COUNT] = {
    "x-original-topic",     "x-original-partition", "x-original-offset",
    "x-original-timestamp", "x-retry-count",        "x-error-message",
    "x-consumer-group",     "x-failed-at",          "x-replay-count",
    "x-replayed-from"};

void dlq_view_init(dlq_view_t *v, const rd_kafka_message_t *m)
{
    memset(v, 0, sizeof(*v));
    v->m = m;
    if (rd_kafka_message_headers(m, &v->hdrs))
        v->hdrs = NULL;
    for (int i = 0; i < H_COUNT && v->hdrs; i++) {
        const void *val;
        size_t size;
        if (!rd_kafka_header_get_last(v->hdrs, header_names[i], &val, &size)) {
            v->h[i].present = true;
            v->h[i].value = val;
            v->h[i].len = val ? size : 0;
        }
    }
    if (!dlq_parse_time(v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, &v->failed_at_ms))
        v->failed_at_ms = -1;
    if (!dlq_bytes_int64(v->h[H_REPLAYS].value, v->h[H_REPLAYS].len, &v->replays) ||
        v->replays < 0)
        v->replays = 0;
}

static bool field_is(const dlq_field_t *f, const char *s, size_t len)
{
    return f->present && f->value && f->len == len && !memcmp(f->value, s, len);
}

/* Tests one --where condition against the record in view @p arg. */
static bool cond_matches(const dlq_cond_t *c, void *arg)
{
    const dlq_view_t *v = arg;
    const void *val;
    size_t size;
    int64_t n;

    switch (c->kind) {
    case DLQ_HEADER:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, c->name, &val, &size) &&
               val && size == c->vlen && !memcmp(val, c->value, size);
    case DLQ_HEADER_PRESENT:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, c->name, &val, &size);
    case DLQ_ERROR_CONTAINS:
        return v->h[H_ERROR].value &&
               memmem(v->h[H_ERROR].value, v->h[H_ERROR].len, c->value, c->vlen);
    case DLQ_ERROR_IS:
        return field_is(&v->h[H_ERROR], c->value, c->vlen);
    case DLQ_AFTER:
        return v->failed_at_ms >= 0 && v->failed_at_ms >= c->num;
    case DLQ_BEFORE:
        return v->failed_at_ms >= 0 && v->failed_at_ms < c->num;
    case DLQ_TOPIC:
        return field_is(&v->h[H_TOPIC], c->value, c->vlen);
    case DLQ_PARTITION:
        return dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &n) &&
               n == c->num;
    case DLQ_KEY:
        return v->m->key && v->m->key_len == c->vlen &&
               !memcmp(v->m->key, c->value, c->vlen);
    }
    return false;
}

bool dlq_matches(const dlq_opts_t *o, const dlq_view_t *v)
{
    for (size_t i = 0; i < o->nwhere; i++)
        if (!dlq_filter_match(o->where[i], cond_matches, (void *)v))
            return false;
    return true;
}

/* ---- text ---------------------------------------------------------------- */

/* Text that can travel as a JSON string (as in the exec protocol: no NUL). */
bool dlq_is_text(const void *p, size_t len)
{
    return !memchr(p, 0, len) && bl_utf8_valid(p, len);
}

/* A table cell: the bytes as text with control characters shown as spaces,
 * cut to @p max characters ("..." marks a cut); "-" when absent; "<N bytes>"
 * when not UTF-8 text. */
void dlq_cell(char *out, size_t size, const void *p, size_t len, size_t max)
{
    const unsigned char *s = p;
    size_t o = 0, chars = 0, total = 0, keep;

    if (!p) {
        snprintf(out, size, "-");
        return;
    }
    if (!dlq_is_text(p, len)) {
        snprintf(out, size, "<%zu bytes>", len);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            total++;
    keep = total <= max ? total : (max > 3 ? max - 3 : 0);
    for (size_t i = 0; i < len && chars < keep;) {
        size_t n = s[i] < 0x80 ? 1 : s[i] < 0xe0 ? 2 : s[i] < 0xf0 ? 3 : 4;
        if (o + n + 4 > size)
            break;
        if (s[i] < 0x20 || s[i] == 0x7f)
            out[o++] = ' ';
        else
            for (size_t k = 0; k < n; k++)
                out[o++] = (char)s[i + k];
        i += n;
        chars++;
    }
    if (chars < total) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ---- errors by count ---------------------------------------------------- */

#define MAX_DISTINCT_ERRORS 10000

/* A distinct error and how many records had it. */
typedef struct err_count {
    const char *text; /* NULL: records without x-error-message */
    uint64_t count;
    size_t order; /* first seen */
} err_count_t;

/* Records counted by error text. The index's keys are "t" + the text, or
 * "n" for records without an error header. */
typedef struct err_table {
    dlq_index_t *ix;
    uint64_t *counts; /* by the index's numbers */
    size_t cap;
    uint64_t other; /* records past MAX_DISTINCT_ERRORS distinct errors */
} err_table_t;

/* Counts one record under its error text (@p text NULL: no error header).
 * Texts are kept whole up to 1000 bytes. */
static void err_table_add(err_table_t *t, const void *text, size_t len)
{
    char key[1001];
    size_t n;
    bool added;

    if (len > 1000)
        len = 1000;
    key[0] = text ? 't' : 'n';
    if (text)
        memcpy(key + 1, text, len);
    if ((!t->ix && !(t->ix = dlq_index_new())) ||
        (dlq_index_count(t->ix) >= MAX_DISTINCT_ERRORS &&
         dlq_index_find(t->ix, key, text ? len + 1 : 1) == SIZE_MAX)) {
        t->other++;
        return;
    }
    if ((n = dlq_index_add(t->ix, key, text ? len + 1 : 1, &added)) == SIZE_MAX) {
        t->other++;
        return;
    }
    if (n >= t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uint64_t *grown = realloc(t->counts, cap * sizeof(*grown));
        if (!grown) {
            t->other++;
            return;
        }
        t->counts = grown;
        t->cap = cap;
    }
    if (added)
        t->counts[n] = 0;
    t->counts[n]++;
}

static size_t err_table_size(const err_table_t *t)
{
    return t->ix ? dlq_index_count(t->ix) : 0;
}

static int err_count_cmp(const void *a, const void *b)
{
    const err_count_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The distinct errors, most frequent first (ties: first seen first), in a
 * new array of err_table_size() entries that share the table's strings. */
static err_count_t *err_table_sorted(const err_table_t *t)
{
    size_t n = err_table_size(t), len;
    err_count_t *out = calloc(n ? n : 1, sizeof(*out));

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *key = dlq_index_key(t->ix, i, &len);
        out[i].text = key[0] == 't' ? key + 1 : NULL;
        out[i].count = t->counts[i];
        out[i].order = i;
    }
    qsort(out, n, sizeof(*out), err_count_cmp);
    return out;
}

static void err_table_free(err_table_t *t)
{
    dlq_index_free(t->ix);
    free(t->counts);
    memset(t, 0, sizeof(*t));
}

/* ---- inspect ---------------------------------------------------------- */

typedef struct inspect {
    const dlq_opts_t *o;
    err_table_t errors;
    uint64_t shown;
    bool out_failed; /* stdout went away (e.g. `| head`) */
} inspect_t;

static json_t *json_bytes_or_null(const dlq_field_t *f)
{
    if (!f->present || !f->value || !dlq_is_text(f->value, f->len))
        return json_null();
    return json_stringn_nocheck(f->value, f->len);
}

static json_t *json_int_or_null(const dlq_field_t *f)
{
    int64_t n;
    if (!dlq_bytes_int64(f->value, f->len, &n))
        return json_null();
    return json_integer((json_int_t)n);
}

/* Sets obj.name to the bytes as text, obj.b64name to their base64, or
 * obj.name to null when absent. */
static void put_bytes(json_t *obj, const char *name, const char *b64name, const void *p,
                      size_t len)
{
    if (!p) {
        json_object_set_new_nocheck(obj, name, json_null());
    } else if (dlq_is_text(p, len)) {
        json_object_set_new_nocheck(obj, name, json_stringn_nocheck(p, len));
    } else {
        char *b = bl_base64_encode(p, len, NULL);
        json_object_set_new_nocheck(obj, b64name, b ? json_string(b) : json_null());
        free(b);
    }
}

static char *record_json(const dlq_view_t *v, const char *topic)
{
    const rd_kafka_message_t *m = v->m;
    json_t *o = json_object(), *headers = json_object(), *binary = json_object();
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    const char *name;
    const void *val;
    size_t size;
    char *line;

    json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer((json_int_t)m->offset));
    json_object_set_new(o, "timestamp", ts >= 0 ? json_integer((json_int_t)ts) : json_null());
    put_bytes(o, "key", "key_b64", m->key, m->key_len);
    put_bytes(o, "value", "value_b64", m->payload, m->len);
    json_object_set_new(o, "original_topic", json_bytes_or_null(&v->h[H_TOPIC]));
    json_object_set_new(o, "original_partition", json_int_or_null(&v->h[H_PARTITION]));
    json_object_set_new(o, "original_offset", json_int_or_null(&v->h[H_OFFSET]));
    json_object_set_new(o, "original_timestamp", json_int_or_null(&v->h[H_TIMESTAMP]));
    json_object_set_new(o, "retry_count", json_int_or_null(&v->h[H_RETRIES]));
    json_object_set_new(o, "error", json_bytes_or_null(&v->h[H_ERROR]));
    json_object_set_new(o, "consumer_group", json_bytes_or_null(&v->h[H_GROUP]));
    json_object_set_new(o, "failed_at", json_bytes_or_null(&v->h[H_FAILED_AT]));
    json_object_set_new(o, "replay_count", json_integer((json_int_t)v->replays));
    json_object_set_new(o, "replayed_from", json_bytes_or_null(&v->h[H_REPLAYED_FROM]));
    /* Every header; the last of a name wins across both maps. A header
     * whose name is not UTF-8 cannot be a JSON key and is left out. */
    for (size_t i = 0; v->hdrs && !rd_kafka_header_get_all(v->hdrs, i, &name, &val, &size);
         i++) {
        if (!bl_utf8_valid(name, strlen(name)))
            continue;
        if (!val || dlq_is_text(val, size)) {
            json_object_del(binary, name);
            json_object_set_new_nocheck(headers, name,
                                        val ? json_stringn_nocheck(val, size) : json_null());
        } else {
            char *b = bl_base64_encode(val, size, NULL);
            json_object_del(headers, name);
            json_object_set_new_nocheck(binary, name, b ? json_string(b) : json_null());
            free(b);
        }
    }
    json_object_set_new(o, "headers", headers);
    if (json_object_size(binary))
        json_object_set_new(o, "headers_b64", binary);
    else
        json_decref(binary);
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return line;
}

/* Prints @p s left-aligned in @p width characters (UTF-8 aware). */
static void put_padded(const char *s, size_t width)
{
    size_t chars = 0;

    for (const char *p = s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            chars++;
    fputs(s, stdout);
    for (; chars < width; chars++)
        putchar(' ');
}

static void print_table_head(void)
{
    printf("%-9s  %8s  %-32s  %-24s  %7s  %7s  %-16s  %s\n", "PARTITION", "OFFSET",
           "ORIGINAL", "FAILED-AT", "RETRIES", "REPLAYS", "KEY", "ERROR");
}

static void print_table_row(const dlq_view_t *v)
{
    const rd_kafka_message_t *m = v->m;
    char original[400], topic[300], failed[64], retries[32], key[128], error[400];
    int64_t part, off, n;

    dlq_cell(topic, sizeof(topic), v->h[H_TOPIC].value, v->h[H_TOPIC].len, 249);
    if (v->h[H_TOPIC].value) {
        char ps[32] = "?", os[32] = "?";
        if (dlq_bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &part))
            snprintf(ps, sizeof(ps), "%lld", (long long)part);
        if (dlq_bytes_int64(v->h[H_OFFSET].value, v->h[H_OFFSET].len, &off))
            snprintf(os, sizeof(os), "%lld", (long long)off);
        snprintf(original, sizeof(original), "%s[%s]@%s", topic, ps, os);
    } else {
        snprintf(original, sizeof(original), "-");
    }
    dlq_cell(failed, sizeof(failed), v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, 30);
    if (dlq_bytes_int64(v->h[H_RETRIES].value, v->h[H_RETRIES].len, &n))
        snprintf(retries, sizeof(retries), "%lld", (long long)n);
    else
        snprintf(retries, sizeof(retries), "-");
    dlq_cell(key, sizeof(key), m->key, m->key_len, 16);
    dlq_cell(error, sizeof(error), v->h[H_ERROR].value, v->h[H_ERROR].len, 60);
    printf("%-9d  %8lld  ", (int)m->partition, (long long)m->offset);
    put_padded(original, 32);
    fputs("  ", stdout);
    put_padded(failed, 24);
    printf("  %7s  %7lld  ", retries, (long long)v->replays);
    put_padded(key, 16);
    printf("  %s\n", error);
}

static int inspect_record(void *arg, const rd_kafka_message_t *m)
{
    inspect_t *in = arg;
    dlq_view_t v;

    dlq_view_init(&v, m);
    if (!dlq_matches(in->o, &v))
        return 0;
    in->shown++;
    err_table_add(&in->errors, v.h[H_ERROR].value, v.h[H_ERROR].len);
    if (in->o->json) {
        char *line = record_json(&v, in->o->topic);
        if (line)
            puts(line);
        free(line);
    } else {
        if (in->shown == 1)
            print_table_head();
        print_table_row(&v);
    }
    if (fflush(stdout) == EOF || ferror(stdout)) {
        in->out_failed = true;
        return 1;
    }
    return in->o->limit && in->shown >= (uint64_t)in->o->limit;
}

static void print_summary(inspect_t *in)
{
    err_count_t *sorted = err_table_sorted(&in->errors);
    size_t n = err_table_size(&in->errors);

    if (in->o->json) {
        json_t *s = json_object(), *errs = json_array(), *wrap = json_object();
        char *line;
        for (size_t i = 0; sorted && i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "error",
                                !sorted[i].text ? json_null()
                                : dlq_is_text(sorted[i].text, strlen(sorted[i].text))
                                    ? json_string(sorted[i].text)
                                    : json_string("<not UTF-8>"));
            json_object_set_new(e, "count", json_integer((json_int_t)sorted[i].count));
            json_array_append_new(errs, e);
        }
        json_object_set_new(s, "topic", json_string(in->o->topic));
        json_object_set_new(s, "records", json_integer((json_int_t)in->shown));
        json_object_set_new(s, "errors", errs);
        if (in->errors.other)
            json_object_set_new(s, "other_errors",
                                json_integer((json_int_t)in->errors.other));
        json_object_set_new(wrap, "summary", s);
        line = json_dumps(wrap, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line)
            puts(line);
        free(line);
        json_decref(wrap);
    } else {
        if (!in->shown)
            printf("(no records in %s%s)\n", in->o->topic,
                   in->o->nwhere ? " match the filters" : "");
        else {
            printf("\n%llu record%s%s; errors by count:\n", (unsigned long long)in->shown,
                   in->shown == 1 ? "" : "s",
                   in->o->limit && in->shown >= (uint64_t)in->o->limit ? " (--limit)" : "");
            for (size_t i = 0; sorted && i < n && i < 20; i++) {
                char text[400];
                if (!sorted[i].text)
                    snprintf(text, sizeof(text), "(no x-error-message)");
                else
                    dlq_cell(text, sizeof(text), sorted[i].text, strlen(sorted[i].text), 120);
                printf("%8llu  %s\n", (unsigned long long)sorted[i].count, text);
            }
            if (n > 20 || in->errors.other) {
                uint64_t rest = in->errors.other;
                for (size_t i = 20; sorted && i < n; i++)
                    rest += sorted[i].count;
                printf("%8llu  (%zu other distinct errors)\n", (unsigned long long)rest,
                       n > 20 ? n - 20 : 0);
            }
        }
    }
    fflush(stdout);
    free(sorted);
}

static int run_inspect(const dlq_opts_t *o)
{
    dlq_reader_t r;
    inspect_t in;
    int rc;

    memset(&in, 0, sizeof(in));
    in.o = o;
    if ((rc = dlq_reader_open(&r, o)) || (rc = dlq_reader_start(&r, o, NULL))) {
        dlq_reader_close(&r);
        return rc;
    }
    rc = dlq_reader_run(&r, o, inspect_record, NULL, &in);
    dlq_reader_close(&r);
    if (!in.out_failed)
        print_summary(&in);
    if (cli_stop_requested)
        cli_error("interrupted: the summary covers the records listed");
    err_table_free(&in.errors);
    return rc;
}

/* ---- entry ------------------------------------------------------------- */

int cmd_dlq(int argc, char **argv)
{
    dlq_opts_t o;
    bool replay;
    int rc;

    if (argc < 2) {
        fputs(dlq_usage, stderr);
        return EX_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(dlq_usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "inspect") && strcmp(argv[1], "replay")) {
        cli_error("unknown dlq command \"%s\" (expected inspect or replay; see ballast dlq "
                  "--help)", argv[1]);
        return EX_USAGE;
    }
    replay = !strcmp(argv[1], "replay");
    rc = parse_dlq_args(argc - 1, argv + 1, replay, &o);
    if (rc) {
        if (rc < 0)
            fputs(replay ? replay_usage : inspect_usage, stdout);
        opts_free(&o);
        return rc < 0 ? 0 : rc;
    }
    if ((rc = cli_check_props(o.props, o.nprops))) {
        opts_free(&o);
        return rc;
    }
    cli_catch_stop_signals();
    rc = replay ? dlq_replay_run(&o) : run_inspect(&o);
    opts_free(&o);
    return rc;
}
