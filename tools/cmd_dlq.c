/*
 * cmd_dlq.c - `ballast dlq inspect|replay`: their usage, their options, and
 * the entry. Reading a dead-letter topic is dlq_read.c, inspect is
 * dlq_inspect.c, replay is dlq_replay.c (and dlq_group.c), the --where
 * expressions are dlq_filter.c.
 */
#include "dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char dlq_usage[] =
    "usage: ballast dlq inspect {-b BOOTSTRAP | --config FILE} -t DLQ_TOPIC\n"
    "                           [--json] [--limit N] [--where EXPR]...\n"
    "                           [-X PROP=VALUE]...\n"
    "       ballast dlq replay  {-b BOOTSTRAP | --config FILE} --from DLQ_TOPIC\n"
    "                           [--to TOPIC] [--group NAME] [--where EXPR]...\n"
    "                           [--rate N/s] [--dry-run] [--limit N]\n"
    "                           [--max-replays N]\n"
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
    "usage: ballast dlq inspect {-b BOOTSTRAP | --config FILE} -t DLQ_TOPIC\n"
    "                           [--json] [--limit N] [--where EXPR]...\n"
    "                           [--timeout SECONDS]\n"
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
    CLI_CONFIG_HELP
    "  -X PROP=VALUE              a librdkafka property (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "Exit codes: 0 done, 64 usage, 69 broker unreachable at start-up, 78 the\n"
    "topic does not exist, a bad -X property or --config file, 1 other failure.\n";

static const char replay_usage[] =
    "usage: ballast dlq replay {-b BOOTSTRAP | --config FILE} --from DLQ_TOPIC\n"
    "                          [--to TOPIC] [--group NAME] [--where EXPR]...\n"
    "                          [--rate N[/s]]\n"
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
    CLI_CONFIG_HELP
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
    "a bad -X property or --config file.\n";

/* ---- options ------------------------------------------------------------ */

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
    int rc;

    memset(o, 0, sizeof(*o));
    o->replay = replay;
    o->max_replays = 3;
    o->timeout_ms = 10000;
    o->props = cli_props_new(argc);
    o->where = o->props ? cli_slots(argc, sizeof(*o->where)) : NULL;
    if (!o->where)
        return EX_SOFTWARE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a))
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
            if (!bl_parse_int64(v, 1, INT64_MAX, &o->limit)) {
                cli_error("--limit needs a whole number of records >= 1, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--rate", NULL, &missing))) {
            char num[64];
            size_t n = strlen(v);
            if (n > 2 && !strcmp(v + n - 2, "/s"))
                n -= 2;
            snprintf(num, sizeof(num), "%.*s", (int)n, v);
            if (n >= sizeof(num) || !bl_parse_double(num, 0, &o->rate) || o->rate <= 0 ||
                o->rate > 1e7) {
                cli_error("--rate needs records per second, more than 0 (e.g. 100 or "
                          "100/s), got \"%s\"", v);
                return EX_USAGE;
            }
        } else if (replay && (v = cli_opt_value(argc, argv, &i, "--max-replays", NULL,
                                            &missing))) {
            if (!bl_parse_int64(v, 1, 1000000, &o->max_replays)) {
                cli_error("--max-replays needs a whole number from 1 to 1000000, got "
                          "\"%s\"", v);
                return EX_USAGE;
            }
        } else if ((rc = cli_client_option(argc, argv, &i, &missing, &o->timeout_ms, o->props,
                                           &o->nprops))) {
            if (rc != 1)
                return rc;
        } else if (!missing) {
            cli_error("unexpected argument \"%s\" (see ballast dlq %s --help)", a, cmd);
            return EX_USAGE;
        }
        if (missing) {
            cli_error("%s needs a value (see ballast dlq %s --help)", a, cmd);
            return EX_USAGE;
        }
    }
    if (!o->bootstrap)
        o->bootstrap = cli_props_get(o->props, o->nprops, "bootstrap.servers");
    if (!o->bootstrap || !*o->bootstrap || !o->topic || !*o->topic) {
        cli_error(replay ? "dlq replay needs -b BOOTSTRAP (or --config FILE) and --from "
                           "DLQ_TOPIC (see ballast dlq replay --help)"
                         : "dlq inspect needs -b BOOTSTRAP (or --config FILE) and -t "
                           "DLQ_TOPIC (see ballast dlq inspect --help)");
        return EX_USAGE;
    }
    if (o->to && !strcmp(o->to, o->topic)) {
        cli_error("--to %s is the dead-letter topic itself", o->to);
        return EX_USAGE;
    }
    return 0;
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
    rc = replay ? dlq_replay_run(&o) : dlq_inspect_run(&o);
    opts_free(&o);
    return rc;
}

