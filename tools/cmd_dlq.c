/*
 * cmd_dlq.c - `ballast dlq inspect` and `ballast dlq replay`: read a
 * dead-letter topic from outside any consumer group, list its records and
 * count them by error, and send selected records back for another try.
 *
 * Reading. The DLQ is read with librdkafka's per-partition ("simple")
 * consumer API, which needs no group.id at all: nothing joins a group,
 * nothing is committed. Every partition is read from its beginning up to
 * the high watermark it had when the command started (a snapshot: records
 * that fail again while a replay runs are not replayed again by the same
 * run), read_committed, and a partition counts as read when it reports its
 * end (enable.partition.eof) or reaches its snapshot end.
 *
 * Dead-letter records carry the headers of SPEC.md ("Dead-letter records"):
 * x-original-topic, x-original-partition, x-original-offset,
 * x-original-timestamp, x-retry-count, x-error-message, x-consumer-group,
 * x-failed-at; a replayed record adds x-replay-count and x-replayed-from.
 * Where a name occurs more than once, the last occurrence counts (as for
 * ballast_message_header_find() and `:header.NAME`).
 *
 * Replaying. Each selected record is produced by an idempotent producer to
 * its x-original-topic (on its x-original-partition, so that a key stays on
 * the partition its other records are on) or to --to (partitioned by key),
 * with key, value and headers, minus the headers that describe the failure
 * being retried, plus x-replay-count + 1. A record whose x-replay-count has
 * reached --max-replays is skipped, so a record that keeps failing comes
 * back to the DLQ a bounded number of times. The DLQ itself is an audit
 * log: nothing there is deleted or committed.
 */
#include "cli.h"

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
    "                           [--where EXPR]... [--rate N/s] [--dry-run]\n"
    "                           [--limit N] [--max-replays N] [-X PROP=VALUE]...\n"
    "\n"
    "Tools for a dead-letter topic (dlq.topic). Both read it without joining\n"
    "any consumer group and change nothing in it.\n"
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
    "Exit codes: 0 done, 64 usage, 69 broker unreachable at start-up, 78 bad -X\n"
    "property, 1 other failure (e.g. the topic does not exist).\n";

static const char replay_usage[] =
    "usage: ballast dlq replay -b BOOTSTRAP --from DLQ_TOPIC [--to TOPIC]\n"
    "                          [--where EXPR]... [--rate N[/s]] [--dry-run]\n"
    "                          [--limit N] [--max-replays N] [--timeout SECONDS]\n"
    "                          [-X PROP=VALUE]...\n"
    "\n"
    "Sends dead-lettered records back for another try. DLQ_TOPIC is read as\n"
    "`ballast dlq inspect` reads it (no consumer group; every partition from its\n"
    "beginning up to its end offset at start, read_committed), and each selected\n"
    "record is produced to its x-original-topic, on its x-original-partition\n"
    "(or, with --to, to TOPIC, partitioned by key), with its key, value and\n"
    "headers, except that:\n"
    "  - x-error-message, x-failed-at, x-retry-count, x-consumer-group,\n"
    "    x-retry-due and x-retry-tier are removed: they describe the failure\n"
    "    being retried, and a new failure writes new ones;\n"
    "  - x-original-* are kept (the first of each name), so a record that\n"
    "    fails again keeps the provenance of its first failure;\n"
    "  - x-replay-count is set to the record's x-replay-count + 1 (1 the first\n"
    "    time), and x-replayed-from to DLQ_TOPIC:PARTITION:OFFSET of the DLQ\n"
    "    record it came from.\n"
    "A record whose x-replay-count has reached --max-replays is skipped with a\n"
    "note: a record that keeps failing comes back to the DLQ at most that many\n"
    "times, and never loops.\n"
    "\n"
    "The DLQ is an audit log: replay deletes nothing and commits nothing there.\n"
    "Replaying the same DLQ twice sends its records twice; to replay only the\n"
    "failures that happened since an earlier replay (including records of that\n"
    "replay that failed again), give --where after=TIME with the start time\n"
    "that replay printed in its summary.\n"
    "\n"
    "Records go out through an idempotent producer, in DLQ order within each DLQ\n"
    "partition; the command waits for every delivery report.\n"
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
    "TIME is ISO-8601: 2024-05-01, 2024-05-01T12:00, 2024-05-01T12:00:00.250Z or\n"
    "2024-05-01T14:00:00+02:00 (UTC when no zone is given). A record without\n"
    "the header that a filter reads does not match it.\n"
    "\n"
    "options:\n"
    "  -b, --bootstrap BOOTSTRAP  brokers (host:port,...)\n"
    "  --from DLQ_TOPIC           the dead-letter topic to read\n"
    "  --to TOPIC                 send every selected record to TOPIC instead of\n"
    "                             its x-original-topic\n"
    "  --where EXPR               a filter, as above\n"
    "  --rate N[/s]               at most N records per second (a token bucket;\n"
    "                             N may have decimals, e.g. 0.5/s)\n"
    "  --dry-run                  print what would be sent, one line per record,\n"
    "                             and write nothing\n"
    "  --limit N                  replay at most N records\n"
    "  --max-replays N            skip records whose x-replay-count is N or more\n"
    "                             (default 3)\n"
    "  --timeout SECONDS          per broker request, and the longest wait for the\n"
    "                             next record (default 10)\n"
    "  -X PROP=VALUE              a librdkafka property for the reading and the\n"
    "                             producing client (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "On a terminal a progress line on stderr is updated in place (records\n"
    "scanned of the total, sent, delivered, skipped, rate). The summary goes to\n"
    "stdout; it gives the replay's start time, for a later --where after=.\n"
    "\n"
    "Exit codes: 0 every selected record was delivered (or nothing was\n"
    "selected), 1 some delivery failed or a record could not be routed (the\n"
    "summary says how many) or the run was interrupted, 64 usage, 69 broker\n"
    "unreachable at start-up, 78 bad -X property.\n";

/* ---- options ------------------------------------------------------------ */

typedef enum where_kind {
    W_HEADER,         /* header:NAME=VALUE */
    W_HEADER_PRESENT, /* header:NAME */
    W_ERROR_CONTAINS, /* error~TEXT */
    W_ERROR_IS,       /* error=TEXT */
    W_AFTER,          /* after=TIME */
    W_BEFORE,         /* before=TIME */
    W_TOPIC,          /* topic=NAME */
    W_PARTITION,      /* partition=N */
    W_KEY             /* key=VALUE */
} where_kind_t;

typedef struct where {
    where_kind_t kind;
    char *name;        /* W_HEADER*: the header name */
    const char *value; /* points into argv */
    size_t vlen;
    int64_t num; /* W_AFTER/W_BEFORE: epoch ms; W_PARTITION: N */
} where_t;

typedef struct dlq_opts {
    bool replay;
    const char *bootstrap, *topic, *to;
    bool json, dry_run;
    int64_t limit; /* 0: no limit */
    double rate;   /* records per second; 0: unlimited */
    int64_t max_replays;
    int timeout_ms;
    where_t *where;
    size_t nwhere;
    const char **props; /* "key=value" for librdkafka */
    size_t nprops;
} dlq_opts_t;

/* The bytes [p, p+len) as a whole decimal number. */
static bool bytes_int64(const void *p, size_t len, int64_t *out)
{
    char buf[32];

    if (!p || !len || len >= sizeof(buf))
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return cli_parse_int64(buf, INT64_MIN, INT64_MAX, out);
}

/* Reads exactly @p n digits at *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* Parses ISO-8601 time [p, p+len): YYYY-MM-DD, then optionally T (or a
 * space) HH:MM[:SS[.fraction]], then optionally Z or +HH[:MM] / -HH[:MM]
 * (UTC when no zone is given). @returns whether it parsed; *ms is epoch
 * milliseconds. */
static bool parse_time(const void *text, size_t len, int64_t *ms)
{
    char buf[64];
    const char *p = buf;
    int year, mon, day, hour = 0, min = 0, sec = 0, frac_ms = 0, off_min = 0;
    struct tm tm;
    time_t t;

    if (!text || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
        !digits(&p, 2, &day))
        return false;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min))
            return false;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                return false;
            if (*p == '.' || *p == ',') {
                int scale = 100, nd = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                    frac_ms += (*p - '0') * scale;
                    scale /= 10;
                    p++;
                    nd++;
                }
                if (!nd)
                    return false;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (!digits(&p, 2, &oh))
                return false;
            if (*p == ':')
                p++;
            if (*p && !digits(&p, 2, &om))
                return false;
            if (oh > 23 || om > 59)
                return false;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return false;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1 && !(year == 1969 && mon == 12 && day == 31))
        return false;
    /* timegm() normalises 2024-02-31 into March: refuse such dates. */
    if (tm.tm_mday != day || tm.tm_mon != mon - 1)
        return false;
    *ms = ((int64_t)t - (int64_t)off_min * 60) * 1000 + frac_ms;
    return true;
}

/* Parses one --where EXPR into @p w. @returns false after printing why. */
static bool parse_where(const char *expr, where_t *w)
{
    const char *eq;

    memset(w, 0, sizeof(*w));
    if (!strncmp(expr, "header:", 7)) {
        const char *name = expr + 7;
        eq = strchr(name, '=');
        if (eq == name || !*name) {
            cli_error("--where %s: header:NAME=VALUE needs a header name", expr);
            return false;
        }
        w->kind = eq ? W_HEADER : W_HEADER_PRESENT;
        w->name = eq ? strndup(name, (size_t)(eq - name)) : strdup(name);
        if (!w->name) {
            cli_error("out of memory");
            return false;
        }
        if (eq) {
            w->value = eq + 1;
            w->vlen = strlen(w->value);
        }
        return true;
    }
    if (!strncmp(expr, "error~", 6) || !strncmp(expr, "error=", 6)) {
        w->kind = expr[5] == '~' ? W_ERROR_CONTAINS : W_ERROR_IS;
        w->value = expr + 6;
        w->vlen = strlen(w->value);
        if (w->kind == W_ERROR_CONTAINS && !w->vlen) {
            cli_error("--where %s: error~TEXT needs some text", expr);
            return false;
        }
        return true;
    }
    if (!strncmp(expr, "after=", 6) || !strncmp(expr, "before=", 7)) {
        bool after = expr[0] == 'a';
        const char *v = expr + (after ? 6 : 7);
        w->kind = after ? W_AFTER : W_BEFORE;
        if (!parse_time(v, strlen(v), &w->num)) {
            cli_error("--where %s: expected an ISO-8601 time such as "
                      "2024-05-01T12:00:00Z, got \"%s\"", expr, v);
            return false;
        }
        return true;
    }
    if (!strncmp(expr, "topic=", 6)) {
        w->kind = W_TOPIC;
        w->value = expr + 6;
        w->vlen = strlen(w->value);
        if (!w->vlen) {
            cli_error("--where %s: topic=NAME needs a topic name", expr);
            return false;
        }
        return true;
    }
    if (!strncmp(expr, "partition=", 10)) {
        w->kind = W_PARTITION;
        if (!cli_parse_int64(expr + 10, 0, INT32_MAX, &w->num)) {
            cli_error("--where %s: partition=N needs a partition number >= 0", expr);
            return false;
        }
        return true;
    }
    if (!strncmp(expr, "key=", 4)) {
        w->kind = W_KEY;
        w->value = expr + 4;
        w->vlen = strlen(w->value);
        return true;
    }
    cli_error("--where \"%s\": expected header:NAME=VALUE, header:NAME, error~TEXT, "
              "error=TEXT, after=TIME, before=TIME, topic=NAME, partition=N or key=VALUE",
              expr);
    return false;
}

static void opts_free(dlq_opts_t *o)
{
    for (size_t i = 0; i < o->nwhere; i++)
        free(o->where[i].name);
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
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--to", NULL, &missing))) {
            o->to = v;
            if (!*v) {
                cli_error("--to needs a topic name");
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--where", NULL, &missing))) {
            if (!parse_where(v, &o->where[o->nwhere]))
                return EX_USAGE;
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

typedef struct replay replay_t;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* A client with the user's -X properties: the group-less reader, or the
 * idempotent producer of a replay (@p rp). NULL with a reason on failure. */
static rd_kafka_t *new_client(const dlq_opts_t *o, replay_t *rp, char *errbuf,
                              size_t errsize)
{
    static const char *const producer[] = {"client.id", "ballast-dlq-replay",
                                           "enable.idempotence", "true",
                                           "acks", "all", NULL};
    const char *const reader[] = {
        "client.id", o->replay ? "ballast-dlq-replay-reader" : "ballast-dlq-inspect",
        "enable.partition.eof", "true",
        "enable.auto.commit", "false",
        "isolation.level", "read_committed",
        "auto.offset.reset", "earliest",
        "fetch.wait.max.ms", "100",
        "queued.max.messages.kbytes", "16384",
        NULL};
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, rp ? producer : reader,
                                         o->props, o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    if (rp) {
        rd_kafka_conf_set_opaque(conf, rp);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_error_cb(conf, on_error);
    }
    if ((rk = rd_kafka_new(rp ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, errbuf,
                           errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- reading the DLQ ------------------------------------------------------ */

typedef struct reader {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt;
    int32_t nparts, remaining;
    int64_t *end;   /* per partition: the high watermark at start */
    bool *started;  /* consume_start'ed */
    bool *done;
    uint64_t total; /* records (or at least offsets) up to the snapshot */
} reader_t;

static void reader_close(reader_t *r)
{
    for (int32_t p = 0; r->started && p < r->nparts; p++)
        if (r->started[p])
            rd_kafka_consume_stop(r->rkt, p);
    if (r->rkt)
        rd_kafka_topic_destroy(r->rkt);
    if (r->q)
        rd_kafka_queue_destroy(r->q);
    if (r->rk)
        rd_kafka_destroy(r->rk);
    free(r->end);
    free(r->started);
    free(r->done);
    memset(r, 0, sizeof(*r));
}

/* Connects, checks the topic, takes each partition's end offset and starts
 * reading every non-empty partition from its beginning. @returns 0, or an
 * exit code after printing why. */
static int reader_open(reader_t *r, const dlq_opts_t *o)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    int n;

    memset(r, 0, sizeof(*r));
    if (!(r->rk = new_client(o, NULL, errbuf, sizeof(errbuf)))) {
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
        cli_error("topic %s does not exist", o->topic);
        return 1;
    }
    r->nparts = n;
    r->end = calloc((size_t)n, sizeof(*r->end));
    r->started = calloc((size_t)n, sizeof(*r->started));
    r->done = calloc((size_t)n, sizeof(*r->done));
    r->q = rd_kafka_queue_new(r->rk);
    r->rkt = rd_kafka_topic_new(r->rk, o->topic, NULL);
    if (!r->end || !r->started || !r->done || !r->q || !r->rkt) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int32_t p = 0; p < n; p++) {
        int64_t low, high;
        if ((err = rd_kafka_query_watermark_offsets(r->rk, o->topic, p, &low, &high,
                                                    o->timeout_ms))) {
            cli_error("end offsets of %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(err));
            return 1;
        }
        r->end[p] = high;
        if (high <= low) {
            r->done[p] = true;
            continue;
        }
        r->total += (uint64_t)(high - low);
        if (rd_kafka_consume_start_queue(r->rkt, p, RD_KAFKA_OFFSET_BEGINNING, r->q) ==
            -1) {
            cli_error("reading %s [%d]: %s", o->topic, (int)p,
                      rd_kafka_err2str(rd_kafka_last_error()));
            return 1;
        }
        r->started[p] = true;
        r->remaining++;
    }
    return 0;
}

/* Called for each record; @returns 0 to go on, 1 to stop reading. */
typedef int (record_cb)(void *arg, const rd_kafka_message_t *m);
/* Called now and then while reading (progress lines). */
typedef void (tick_cb)(void *arg);

/* Hands every record up to the snapshot to @p cb, partition by partition in
 * offset order (partitions interleaved). @returns 0 when every partition was
 * read (or @p cb stopped it), 1 after printing why. */
static int reader_run(reader_t *r, const dlq_opts_t *o, record_cb *cb, tick_cb *tick,
                      void *arg)
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

enum {
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_TIMESTAMP,
    H_RETRIES,
    H_ERROR,
    H_GROUP,
    H_FAILED_AT,
    H_REPLAYS,
    H_REPLAYED_FROM,
    H_COUNT
};

static const char *const header_names[H_COUNT] = {
    "x-original-topic",     "x-original-partition", "x-original-offset",
    "x-original-timestamp", "x-retry-count",        "x-error-message",
    "x-consumer-group",     "x-failed-at",          "x-replay-count",
    "x-replayed-from"};

typedef struct field {
    bool present;
    const void *value; /* NULL for a null header value */
    size_t len;
} field_t;

typedef struct view {
    const rd_kafka_message_t *m;
    rd_kafka_headers_t *hdrs; /* owned by m; NULL when it has none */
    field_t h[H_COUNT];
    int64_t failed_at_ms; /* -1: absent or not a time */
    int64_t replays;      /* x-replay-count, 0 when absent */
} view_t;

static void view_init(view_t *v, const rd_kafka_message_t *m)
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
    if (!parse_time(v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, &v->failed_at_ms))
        v->failed_at_ms = -1;
    if (!bytes_int64(v->h[H_REPLAYS].value, v->h[H_REPLAYS].len, &v->replays) ||
        v->replays < 0)
        v->replays = 0;
}

static bool field_is(const field_t *f, const char *s, size_t len)
{
    return f->present && f->value && f->len == len && !memcmp(f->value, s, len);
}

static bool where_match(const where_t *w, const view_t *v)
{
    const void *val;
    size_t size;
    int64_t n;

    switch (w->kind) {
    case W_HEADER:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, w->name, &val, &size) &&
               val && size == w->vlen && !memcmp(val, w->value, size);
    case W_HEADER_PRESENT:
        return v->hdrs && !rd_kafka_header_get_last(v->hdrs, w->name, &val, &size);
    case W_ERROR_CONTAINS:
        return v->h[H_ERROR].value &&
               memmem(v->h[H_ERROR].value, v->h[H_ERROR].len, w->value, w->vlen);
    case W_ERROR_IS:
        return field_is(&v->h[H_ERROR], w->value, w->vlen);
    case W_AFTER:
        return v->failed_at_ms >= 0 && v->failed_at_ms >= w->num;
    case W_BEFORE:
        return v->failed_at_ms >= 0 && v->failed_at_ms < w->num;
    case W_TOPIC:
        return field_is(&v->h[H_TOPIC], w->value, w->vlen);
    case W_PARTITION:
        return bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &n) &&
               n == w->num;
    case W_KEY:
        return v->m->key && v->m->key_len == w->vlen &&
               !memcmp(v->m->key, w->value, w->vlen);
    }
    return false;
}

static bool matches(const dlq_opts_t *o, const view_t *v)
{
    for (size_t i = 0; i < o->nwhere; i++)
        if (!where_match(&o->where[i], v))
            return false;
    return true;
}

/* ---- text ---------------------------------------------------------------- */

/* Text that can travel as a JSON string (as in the exec protocol: no NUL). */
static bool is_text(const void *p, size_t len)
{
    return !memchr(p, 0, len) && bl_utf8_valid(p, len);
}

/* A table cell: the bytes as text with control characters shown as spaces,
 * cut to @p max characters ("..." marks a cut); "-" when absent; "<N bytes>"
 * when not UTF-8 text. */
static void cell(char *out, size_t size, const void *p, size_t len, size_t max)
{
    const unsigned char *s = p;
    size_t o = 0, chars = 0, total = 0, keep;

    if (!p) {
        snprintf(out, size, "-");
        return;
    }
    if (!is_text(p, len)) {
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

typedef struct err_count {
    char *text; /* NULL: records without x-error-message */
    bool none;
    uint64_t count;
    size_t order; /* first seen */
} err_count_t;

typedef struct err_table {
    err_count_t *slots;
    size_t cap, n;
    uint64_t other; /* records past MAX_DISTINCT_ERRORS distinct errors */
} err_table_t;

static uint64_t fnv1a(const void *p, size_t len, bool none)
{
    const unsigned char *s = p;
    uint64_t h = none ? 0x9e3779b97f4a7c15ULL : 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

static bool err_table_grow(err_table_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    err_count_t *slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return false;
    for (size_t i = 0; i < t->cap; i++) {
        err_count_t *e = &t->slots[i];
        size_t j;
        if (!e->count)
            continue;
        j = fnv1a(e->text, e->text ? strlen(e->text) : 0, e->none) & (cap - 1);
        while (slots[j].count)
            j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return true;
}

/* Counts one record under its error text (@p text NULL: no error header).
 * Texts are kept whole up to 1000 bytes. */
static void err_table_add(err_table_t *t, const void *text, size_t len)
{
    bool none = !text;
    size_t j;

    if (len > 1000)
        len = 1000;
    if ((t->n + 1) * 2 > t->cap && !err_table_grow(t)) {
        t->other++;
        return;
    }
    j = fnv1a(text, len, none) & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        err_count_t *e = &t->slots[j];
        if (!e->count)
            break;
        if (e->none == none &&
            (none || (strlen(e->text) == len && !memcmp(e->text, text, len)))) {
            e->count++;
            return;
        }
    }
    if (t->n >= MAX_DISTINCT_ERRORS) {
        t->other++;
        return;
    }
    if (!none && !(t->slots[j].text = strndup(text, len))) {
        t->other++;
        return;
    }
    t->slots[j].none = none;
    t->slots[j].count = 1;
    t->slots[j].order = t->n++;
}

static int err_count_cmp(const void *a, const void *b)
{
    const err_count_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The distinct errors, most frequent first (ties: first seen first), in a
 * new array of t->n entries that share the table's strings. */
static err_count_t *err_table_sorted(const err_table_t *t)
{
    err_count_t *out = calloc(t->n ? t->n : 1, sizeof(*out));
    size_t k = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].count)
            out[k++] = t->slots[i];
    qsort(out, k, sizeof(*out), err_count_cmp);
    return out;
}

static void err_table_free(err_table_t *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].text);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* ---- inspect ---------------------------------------------------------- */

typedef struct inspect {
    const dlq_opts_t *o;
    err_table_t errors;
    uint64_t shown;
    bool out_failed; /* stdout went away (e.g. `| head`) */
} inspect_t;

static json_t *json_bytes_or_null(const field_t *f)
{
    if (!f->present || !f->value || !is_text(f->value, f->len))
        return json_null();
    return json_stringn_nocheck(f->value, f->len);
}

static json_t *json_int_or_null(const field_t *f)
{
    int64_t n;
    if (!bytes_int64(f->value, f->len, &n))
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
    } else if (is_text(p, len)) {
        json_object_set_new_nocheck(obj, name, json_stringn_nocheck(p, len));
    } else {
        char *b = bl_base64_encode(p, len, NULL);
        json_object_set_new_nocheck(obj, b64name, b ? json_string(b) : json_null());
        free(b);
    }
}

static char *record_json(const view_t *v, const char *topic)
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
        if (!val || is_text(val, size)) {
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

static void print_table_row(const view_t *v)
{
    const rd_kafka_message_t *m = v->m;
    char original[400], topic[300], failed[64], retries[32], key[128], error[400];
    int64_t part, off, n;

    cell(topic, sizeof(topic), v->h[H_TOPIC].value, v->h[H_TOPIC].len, 249);
    if (v->h[H_TOPIC].value) {
        char ps[32] = "?", os[32] = "?";
        if (bytes_int64(v->h[H_PARTITION].value, v->h[H_PARTITION].len, &part))
            snprintf(ps, sizeof(ps), "%lld", (long long)part);
        if (bytes_int64(v->h[H_OFFSET].value, v->h[H_OFFSET].len, &off))
            snprintf(os, sizeof(os), "%lld", (long long)off);
        snprintf(original, sizeof(original), "%s[%s]@%s", topic, ps, os);
    } else {
        snprintf(original, sizeof(original), "-");
    }
    cell(failed, sizeof(failed), v->h[H_FAILED_AT].value, v->h[H_FAILED_AT].len, 30);
    if (bytes_int64(v->h[H_RETRIES].value, v->h[H_RETRIES].len, &n))
        snprintf(retries, sizeof(retries), "%lld", (long long)n);
    else
        snprintf(retries, sizeof(retries), "-");
    cell(key, sizeof(key), m->key, m->key_len, 16);
    cell(error, sizeof(error), v->h[H_ERROR].value, v->h[H_ERROR].len, 60);
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
    view_t v;

    view_init(&v, m);
    if (!matches(in->o, &v))
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
    size_t n = in->errors.n;

    if (in->o->json) {
        json_t *s = json_object(), *errs = json_array(), *wrap = json_object();
        char *line;
        for (size_t i = 0; sorted && i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "error",
                                sorted[i].none ? json_null()
                                : is_text(sorted[i].text, strlen(sorted[i].text))
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
                if (sorted[i].none)
                    snprintf(text, sizeof(text), "(no x-error-message)");
                else
                    cell(text, sizeof(text), sorted[i].text, strlen(sorted[i].text), 120);
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
    reader_t r;
    inspect_t in;
    int rc;

    memset(&in, 0, sizeof(in));
    in.o = o;
    if ((rc = reader_open(&r, o))) {
        reader_close(&r);
        return rc;
    }
    rc = reader_run(&r, o, inspect_record, NULL, &in);
    reader_close(&r);
    if (!in.out_failed)
        print_summary(&in);
    if (cli_stop_requested)
        cli_error("interrupted: the summary covers the records listed");
    err_table_free(&in.errors);
    return rc;
}

/* ---- replay ------------------------------------------------------------- */

typedef struct topic_info {
    char *name;
    rd_kafka_topic_t *rkt; /* the producer's handle, kept for its metadata */
    int partitions; /* 0: does not exist; -1: unknown (reason) */
    char reason[300];
} topic_info_t;

#define MAX_NOTES 10

struct replay {
    const dlq_opts_t *o;
    reader_t *r;
    rd_kafka_t *prod; /* NULL in a dry run */
    topic_info_t *topics;
    size_t ntopics;
    bool tty;
    double started, last_progress, next_token_at;
    int64_t started_wall;
    uint64_t scanned, matched, sent, skipped, unroutable, not_sent;
    /* Updated by delivery reports (on this thread, inside rd_kafka_poll). */
    uint64_t delivered, failed;
    char first_failure[400];
    char fatal[512];
    unsigned notes;
    bool limit_reached;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    replay_t *rp = opaque;

    (void)rk;
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
    fprintf(stderr,
            "\r\033[Kreplay %s: scanned %llu/%llu  sent %llu  delivered %llu  "
            "skipped %llu  %.1f/s",
            rp->o->topic, (unsigned long long)rp->scanned, (unsigned long long)rp->r->total,
            (unsigned long long)rp->sent, (unsigned long long)rp->delivered,
            (unsigned long long)rp->skipped,
            elapsed > 0 ? (double)rp->sent / elapsed : 0.0);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static void replay_tick(void *arg)
{
    replay_t *rp = arg;

    if (rp->prod)
        rd_kafka_poll(rp->prod, 0);
    progress(rp, false);
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

/* Headers that describe the failure being retried: dropped on replay (a new
 * failure writes new ones). x-replay-count and x-replayed-from are set anew. */
static bool dropped_header(const char *name)
{
    static const char *const names[] = {
        "x-error-message", "x-failed-at",  "x-retry-count",  "x-consumer-group",
        "x-retry-due",     "x-retry-tier", "x-replay-count", "x-replayed-from"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

/* The headers of the replayed record. NULL when out of memory. */
static rd_kafka_headers_t *replay_headers(const view_t *v, const char *dlq_topic)
{
    size_t count = v->hdrs ? rd_kafka_header_cnt(v->hdrs) : 0;
    rd_kafka_headers_t *out = rd_kafka_headers_new(count + 2);
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
        if (!strncmp(name, "x-original-", 11) &&
            !rd_kafka_header_get_last(out, name, &seen, &seen_size))
            continue;
        rd_kafka_header_add(out, name, -1, val, val ? (ssize_t)size : 0);
    }
    snprintf(num, sizeof(num), "%lld", (long long)v->replays + 1);
    rd_kafka_header_add(out, "x-replay-count", -1, num, -1);
    snprintf(from, sizeof(from), "%s:%d:%lld", dlq_topic, (int)v->m->partition,
             (long long)v->m->offset);
    rd_kafka_header_add(out, "x-replayed-from", -1, from, -1);
    return out;
}

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
            struct timespec ts = {0, (long)(left * 1e9)};
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

static int replay_record(void *arg, const rd_kafka_message_t *m)
{
    replay_t *rp = arg;
    const dlq_opts_t *o = rp->o;
    const topic_info_t *ti;
    char target[300];
    int32_t partition = RD_KAFKA_PARTITION_UA;
    int64_t op;
    view_t v;

    rp->scanned++;
    view_init(&v, m);
    if (!matches(o, &v))
        return 0;
    rp->matched++;
    if (v.replays >= o->max_replays) {
        rp->skipped++;
        if (o->dry_run)
            printf("skip     %s[%d]@%lld: x-replay-count %lld reached --max-replays %lld\n",
                   o->topic, (int)m->partition, (long long)m->offset,
                   (long long)v.replays, (long long)o->max_replays);
        else
            note(rp, m, "skipped: x-replay-count %lld reached --max-replays %lld",
                 (long long)v.replays, (long long)o->max_replays);
        return 0;
    }
    /* Where it goes. */
    if (o->to) {
        snprintf(target, sizeof(target), "%s", o->to);
    } else if (v.h[H_TOPIC].value && v.h[H_TOPIC].len && v.h[H_TOPIC].len < 250 &&
               is_text(v.h[H_TOPIC].value, v.h[H_TOPIC].len)) {
        snprintf(target, sizeof(target), "%.*s", (int)v.h[H_TOPIC].len,
                 (const char *)v.h[H_TOPIC].value);
    } else {
        rp->unroutable++;
        if (o->dry_run)
            printf("cannot   %s[%d]@%lld: no usable x-original-topic header (give --to)\n",
                   o->topic, (int)m->partition, (long long)m->offset);
        else
            note(rp, m, "not replayed: no usable x-original-topic header (give --to)");
        return 0;
    }
    ti = target_info(rp, target);
    if (!ti || ti->partitions <= 0 || !strcmp(target, o->topic)) {
        const char *why = !ti                          ? "out of memory"
                          : !strcmp(target, o->topic) ? "it names the DLQ itself"
                          : ti->partitions == 0        ? "the topic does not exist"
                                                       : ti->reason;
        rp->unroutable++;
        if (o->dry_run)
            printf("cannot   %s[%d]@%lld -> %s: %s\n", o->topic, (int)m->partition,
                   (long long)m->offset, target, why);
        else
            note(rp, m, "not replayed to %s: %s", target, why);
        return 0;
    }
    /* Back to the partition it came from, so that its key stays with the
     * key's other records; with --to, the partitioner decides by key. */
    if (!o->to && bytes_int64(v.h[H_PARTITION].value, v.h[H_PARTITION].len, &op) &&
        op >= 0 && op < ti->partitions)
        partition = (int32_t)op;
    if (o->dry_run) {
        char key[128], ps[32] = "by key";
        cell(key, sizeof(key), m->key, m->key_len, 32);
        if (partition != RD_KAFKA_PARTITION_UA)
            snprintf(ps, sizeof(ps), "%d", (int)partition);
        printf("replay   %s[%d]@%lld -> %s [%s]  key %s  x-replay-count %lld\n", o->topic,
               (int)m->partition, (long long)m->offset, target, ps, key,
               (long long)v.replays + 1);
        rp->sent++;
    } else {
        rd_kafka_headers_t *hdrs;
        rd_kafka_resp_err_t err;

        take_token(rp);
        if (cli_stop_requested)
            return 1;
        if (!(hdrs = replay_headers(&v, o->topic))) {
            rp->not_sent++;
            note(rp, m, "not replayed: out of memory");
            return 1;
        }
        for (;;) {
            err = rd_kafka_producev(
                rp->prod, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_PARTITION(partition),
                RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || cli_stop_requested)
                break;
            rd_kafka_poll(rp->prod, 50);
            progress(rp, false);
        }
        if (err) {
            /* The producer took the headers only on success. */
            rd_kafka_headers_destroy(hdrs);
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
        if (rp->fatal[0])
            return 1;
    }
    progress(rp, false);
    if (o->limit && rp->sent >= (uint64_t)o->limit) {
        rp->limit_reached = true;
        return 1;
    }
    return 0;
}

static int run_replay(const dlq_opts_t *o)
{
    reader_t r;
    replay_t rp;
    char errbuf[512], started[40];
    int rc, read_rc;
    bool incomplete;

    memset(&rp, 0, sizeof(rp));
    rp.o = o;
    rp.r = &r;
    rp.tty = isatty(STDERR_FILENO);
    rp.started = cli_now_s();
    rp.started_wall = bl_wall_ms();
    memset(&r, 0, sizeof(r));
    /* The producer first: its producer id is then fetched while the DLQ's
     * partitions and end offsets are looked up. */
    if (!o->dry_run && !(rp.prod = new_client(o, &rp, errbuf, sizeof(errbuf)))) {
        cli_error("%s", errbuf);
        return EX_CONFIG;
    }
    if ((rc = reader_open(&r, o)))
        goto out;
    if (o->to) {
        const topic_info_t *ti = target_info(&rp, o->to);
        if (!ti || ti->partitions <= 0) {
            cli_error("--to %s: %s", o->to,
                      !ti ? "out of memory"
                      : ti->partitions == 0 ? "the topic does not exist"
                                            : ti->reason);
            rc = 1;
            goto out;
        }
    }
    read_rc = reader_run(&r, o, replay_record, replay_tick, &rp);
    /* Every delivery report, however long the producer's own timeouts
     * (message.timeout.ms) make it take. */
    while (rp.prod && rd_kafka_flush(rp.prod, 100) == RD_KAFKA_RESP_ERR__TIMED_OUT)
        progress(&rp, false);
    if (rp.tty && rp.last_progress > 0)
        progress(&rp, true);
    bl_iso8601(rp.started_wall, started, sizeof(started));
    incomplete = read_rc || cli_stop_requested || rp.fatal[0];
    printf("replay from %s%s: scanned %llu, matched %llu, %s %llu, skipped %llu "
           "(x-replay-count >= %lld), unroutable %llu",
           o->topic, o->dry_run ? " (dry run: nothing was written)" : "",
           (unsigned long long)rp.scanned, (unsigned long long)rp.matched,
           o->dry_run ? "would send" : "sent", (unsigned long long)rp.sent,
           (unsigned long long)rp.skipped, (long long)o->max_replays,
           (unsigned long long)rp.unroutable);
    if (!o->dry_run)
        printf(", delivered %llu, failed %llu", (unsigned long long)rp.delivered,
               (unsigned long long)(rp.failed + rp.not_sent));
    printf("%s; started %s, took %.2f s\n",
           rp.limit_reached ? " (--limit reached)" : incomplete ? " (incomplete)" : "",
           started, cli_now_s() - rp.started);
    fflush(stdout);
    rc = 0;
    if (rp.fatal[0]) {
        cli_error("%s", rp.fatal);
        rc = 1;
    }
    if (rp.failed + rp.not_sent) {
        cli_error("%llu of %llu record(s) were not delivered; the first failure: %s",
                  (unsigned long long)(rp.failed + rp.not_sent),
                  (unsigned long long)(rp.sent + rp.not_sent), rp.first_failure);
        rc = 1;
    }
    if (rp.unroutable) {
        cli_error("%llu record(s) could not be routed (see the notes above)",
                  (unsigned long long)rp.unroutable);
        rc = 1;
    }
    if (cli_stop_requested) {
        cli_error("interrupted: the records sent before the signal were delivered or "
                  "counted as failed");
        rc = 1;
    } else if (read_rc) {
        rc = 1;
    }
out:
    for (size_t i = 0; i < rp.ntopics; i++) {
        if (rp.topics[i].rkt)
            rd_kafka_topic_destroy(rp.topics[i].rkt);
        free(rp.topics[i].name);
    }
    if (rp.prod)
        rd_kafka_destroy(rp.prod);
    free(rp.topics);
    reader_close(&r);
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
    rc = replay ? run_replay(&o) : run_inspect(&o);
    opts_free(&o);
    return rc;
}
