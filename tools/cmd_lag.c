/*
 * cmd_lag.c - `ballast lag`: a consumer group's offset lag, time lag and
 * status per partition, read from outside the group.
 *
 * It never joins the group it watches (the reference article's monitor
 * does, and so rebalances the consumers it is meant to observe). Each
 * evaluation uses short-lived clients of its own:
 *   - an admin client: ListConsumerGroupOffsets for the committed offsets,
 *     metadata for the partitions, query_watermark_offsets for the
 *     watermarks;
 *   - another one for DescribeConsumerGroups: the group's state, its
 *     members and who holds which partition. It also says whether the
 *     group exists: described as Dead (or not found) with no committed
 *     offsets, it does not, and the first evaluation fails with exit 78;
 *   - for the time lag, a group-less consumer (the legacy per-partition
 *     API, which needs no group.id at all) that fetches the one message at
 *     each lagging partition's committed offset and reads its timestamp.
 * Short-lived handles also keep one wedged admin call from poisoning later
 * evaluations (FIELD-NOTES: admin calls against the mock cluster).
 *
 * Each evaluation adds a sample per partition (with whether a member holds
 * it) to a sliding window and judges it with the pure rules of
 * lag_rules.c; the group's status is the worst partition's. Output is a table (coloured on a terminal), JSON lines,
 * or Prometheus text (printed, or served with --listen). --on-change runs a
 * command, without a shell, whenever the group's status changes.
 */
#include "cli.h"
#include "http.h"
#include "lag_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char lag_usage[] =
    "usage: ballast lag -b BOOTSTRAP -g GROUP [-t TOPIC] [--json | --prometheus]\n"
    "                   [--watch SECONDS] [--listen HOST:PORT] [--on-change CMD]\n"
    "                   [--window N] [--warn-lag N] [--warn-lag-seconds S]\n"
    "                   [--timeout SECONDS] [-X PROP=VALUE]...\n"
    "\n"
    "Reports a consumer group's lag per partition without joining the group\n"
    "(admin API and watermarks only), with the group's state and members, as\n"
    "the broker describes them:\n"
    "  committed       the group's committed offset (null: nothing committed)\n"
    "  high_watermark  the partition's end offset\n"
    "  lag             high_watermark - committed; with nothing committed,\n"
    "                  high_watermark - low watermark (all retained messages)\n"
    "  lag_seconds     age of the oldest unconsumed message (the one at the\n"
    "                  committed offset); 0 when caught up; null when nothing\n"
    "                  is committed or its timestamp cannot be read\n"
    "  consumer_id, host, client_id\n"
    "                  the member that holds the partition (null: none)\n"
    "  group_state, group_members\n"
    "                  Stable, Empty, PreparingRebalance, ...; how many members\n"
    "  group_protocol  classic, or consumer for a KIP-848 group\n"
    "  status          over a window of the last N evaluations (Burrow's rules\n"
    "                  without its false alarms):\n"
    "    OK      some evaluation in the window saw zero lag (an idle partition\n"
    "            stays OK), or the consumer keeps up or catches up; and, until\n"
    "            the window is full, any partition a member holds (a trend\n"
    "            needs a full window: lag in flight on a busy group is no\n"
    "            warning)\n"
    "    WARN    offsets advance but lag grew across the whole window; or, at\n"
    "            the first evaluation, lag that no member is consuming; or a\n"
    "            threshold is exceeded (--warn-lag, --warn-lag-seconds)\n"
    "    STALL   committed offset unchanged with lag > 0 and no member holding\n"
    "            the partition (window not yet full)\n"
    "    STOP    committed offset unchanged with lag > 0 across the full window:\n"
    "            no progress for longer than the window spans (this is where a\n"
    "            dead consumer's frozen lag ends up)\n"
    "    REWIND  the committed offset went backwards\n"
    "    ERR     the offsets could not be read\n"
    "  Without --watch there is one evaluation and no trend: OK when lag is 0\n"
    "  or a member holds the partition, else WARN (lag within --warn-lag /\n"
    "  --warn-lag-seconds, when given, is OK).\n"
    "  The group's status is its worst partition's.\n"
    "\n"
    "A group the broker does not know (no members, no committed offsets) is an\n"
    "error, exit 78: a typo in -g must not look like a healthy, idle group.\n"
    "\n"
    "options:\n"
    "  -b, --bootstrap BOOTSTRAP  brokers (host:port,...)\n"
    "  -g, --group GROUP          the consumer group to watch\n"
    "  -t, --topic TOPIC          only this topic, all of its partitions (default:\n"
    "                             every topic the group has committed offsets for\n"
    "                             or its members hold)\n"
    "  --json                     one JSON object per partition per evaluation\n"
    "  --prometheus               Prometheus text (kafka_exporter's metric names)\n"
    "  --watch SECONDS            evaluate every SECONDS until SIGINT/SIGTERM\n"
    "  --listen HOST:PORT         serve the Prometheus text at /metrics (evaluating\n"
    "                             every --watch SECONDS, default 10); prints nothing\n"
    "                             more unless --json or the table is wanted too\n"
    "  --on-change CMD            run CMD when the group's status changes (and on\n"
    "                             the first evaluation unless it is OK). CMD is\n"
    "                             split into words like a shell would ('...', \"...\",\n"
    "                             \\ escapes) but run without one; its stdout goes to\n"
    "                             stderr. Environment: BALLAST_LAG_GROUP,\n"
    "                             BALLAST_LAG_STATUS, BALLAST_LAG_PREVIOUS_STATUS\n"
    "                             (empty at first), BALLAST_LAG_TOPIC (topics, comma-\n"
    "                             separated), BALLAST_LAG_TOTAL_LAG,\n"
    "                             BALLAST_LAG_MAX_LAG_SECONDS (empty if unknown),\n"
    "                             BALLAST_LAG_PARTITIONS (topic:partition of the\n"
    "                             partitions in the group's status, comma-separated)\n"
    "  --window N                 evaluations in the status window (default 10);\n"
    "                             make N x SECONDS longer than the group's commit\n"
    "                             interval\n"
    "  --warn-lag N               lag above N messages is at least WARN\n"
    "  --warn-lag-seconds S       time lag above S seconds is at least WARN\n"
    "  --timeout SECONDS          per broker request (default 10)\n"
    "  -X PROP=VALUE              a librdkafka property (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "Exit codes: 0 done (whatever the status), 64 usage, 69 broker unreachable\n"
    "at start-up, 78 the group or the -t topic does not exist, or a bad -X\n"
    "property or --listen address, 1 other failure.\n";

typedef enum out_format { OUT_TABLE, OUT_JSON, OUT_PROMETHEUS } out_format_t;

typedef struct lag_opts {
    const char *bootstrap, *group, *topic, *listen;
    out_format_t format;
    bool print; /* whether evaluations are printed on stdout */
    double watch_s; /* 0: evaluate once */
    char **on_change; /* argv, NULL-terminated; NULL when unset */
    size_t window;
    lag_thresholds_t th;
    int timeout_ms;
    const char **props; /* "key=value" for librdkafka */
    size_t nprops;
} lag_opts_t;

/* One partition: its window and its latest measurement. */
typedef struct part_state {
    char *topic;
    int32_t partition;
    lag_window_t window;
    lag_status_t status;
    bool ok;
    char error[200];
    int64_t committed, low, high, lag;
    double lag_seconds; /* < 0: unknown */
    long member;        /* index into the group's members; -1: none holds it */
} part_state_t;

/* A member of the group, as DescribeConsumerGroups reports it. */
typedef struct member {
    char *consumer_id, *client_id, *host;
    int partitions; /* assigned, of every topic */
} member_t;

/* A partition a member holds. */
typedef struct assigned {
    char *topic;
    int32_t partition;
    size_t member;
} assigned_t;

/* The group as the broker describes it, at the latest evaluation. */
typedef struct group_view {
    bool described;  /* the members are known */
    bool unsupported; /* the broker cannot describe groups: not asked again */
    bool not_found;  /* described as Dead, or unknown to the broker */
    char state[40];  /* "Stable", "Empty", ...; "" when not described */
    const char *protocol; /* "classic" or "consumer" (KIP-848); NULL: not known */
    member_t *members;
    size_t nmembers;
    assigned_t *assigned;
    size_t nassigned;
} group_view_t;

typedef struct monitor {
    const lag_opts_t *o;
    part_state_t *parts; /* sorted by topic, partition */
    size_t nparts, cap;
    char **topics; /* every topic seen so far */
    size_t ntopics;
    group_view_t group;
    lag_status_t status, previous; /* the group's, now and at the last evaluation */
    bool have_status;
    unsigned long evaluations;
    int64_t eval_ms; /* wall clock of the latest evaluation */
    pthread_mutex_t mtx; /* guards prom, read by the HTTP thread */
    char *prom;
    pid_t *children; /* --on-change commands not yet reaped */
    size_t nchildren;
} monitor_t;

/* ---- command line -------------------------------------------------------- */

/* Splits @p cmd into words like a POSIX shell, with no expansion of any
 * kind: blanks separate words, '...' is literal, "..." is literal except
 * for \" \\ \$ \`, and a backslash outside quotes escapes the next
 * character. @returns a NULL-terminated vector, or NULL with a reason. */
static char **split_words(const char *cmd, char *errbuf, size_t errsize)
{
    size_t len = strlen(cmd), nwords = 0;
    char **argv = calloc(len / 2 + 2, sizeof(char *));
    char *word = NULL;
    size_t wlen = 0;
    const char *p = cmd;

    if (!argv)
        goto oom;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        if (!(word = malloc(len + 1)))
            goto oom;
        wlen = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (!end) {
                    snprintf(errbuf, errsize, "unbalanced ' in \"%s\"", cmd);
                    goto fail;
                }
                memcpy(word + wlen, p + 1, (size_t)(end - p - 1));
                wlen += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                        p++;
                    word[wlen++] = *p;
                }
                if (*p != '"') {
                    snprintf(errbuf, errsize, "unbalanced \" in \"%s\"", cmd);
                    goto fail;
                }
                p++;
            } else if (*p == '\\' && p[1]) {
                word[wlen++] = p[1];
                p += 2;
            } else {
                word[wlen++] = *p++;
            }
        }
        word[wlen] = '\0';
        argv[nwords++] = word;
        word = NULL;
    }
    if (!nwords) {
        snprintf(errbuf, errsize, "the command is empty");
        goto fail;
    }
    return argv;
oom:
    snprintf(errbuf, errsize, "out of memory");
fail:
    free(word);
    for (size_t i = 0; argv && i < nwords; i++)
        free(argv[i]);
    free(argv);
    return NULL;
}

static void free_words(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++)
        free(argv[i]);
    free(argv);
}

/* @returns 0, -1 for --help, or EX_USAGE after printing why. */
static int parse_lag_args(int argc, char **argv, lag_opts_t *o)
{
    char errbuf[512];
    const char *v;
    bool json = false, prom = false, missing = false;
    int64_t n;

    memset(o, 0, sizeof(*o));
    o->window = 10;
    o->th.warn_lag = -1;
    o->th.warn_lag_seconds = -1;
    o->timeout_ms = 10000;
    if (!(o->props = calloc((size_t)argc, sizeof(*o->props)))) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return -1;
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--prometheus")) {
            prom = true;
        } else if ((v = cli_opt_value(argc, argv, &i, "--bootstrap", "-b", &missing))) {
            o->bootstrap = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--group", "-g", &missing))) {
            o->group = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--topic", "-t", &missing))) {
            o->topic = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--listen", NULL, &missing))) {
            o->listen = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--watch", NULL, &missing))) {
            if (!cli_parse_double(v, 0.1, &o->watch_s)) {
                cli_error("--watch needs a number of seconds >= 0.1, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--window", NULL, &missing))) {
            if (!cli_parse_int64(v, 1, 100000, &n)) {
                cli_error("--window needs a whole number from 1 to 100000, got \"%s\"", v);
                return EX_USAGE;
            }
            o->window = (size_t)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--warn-lag", NULL, &missing))) {
            if (!cli_parse_int64(v, 0, INT64_MAX, &o->th.warn_lag)) {
                cli_error("--warn-lag needs a whole number of messages >= 0, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--warn-lag-seconds", NULL, &missing))) {
            if (!cli_parse_double(v, 0, &o->th.warn_lag_seconds)) {
                cli_error("--warn-lag-seconds needs a number of seconds >= 0, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--timeout", NULL, &missing))) {
            double secs;
            if (!cli_parse_double(v, 0.1, &secs) || secs > 3600) {
                cli_error("--timeout needs seconds from 0.1 to 3600, got \"%s\"", v);
                return EX_USAGE;
            }
            o->timeout_ms = (int)(secs * 1000);
        } else if ((v = cli_opt_value(argc, argv, &i, "--on-change", NULL, &missing))) {
            free_words(o->on_change);
            if (!(o->on_change = split_words(v, errbuf, sizeof(errbuf)))) {
                cli_error("--on-change: %s", errbuf);
                return EX_USAGE;
            }
        } else if (!strncmp(a, "-X", 2) && !missing) {
            const char *kv = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : "");
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                cli_error("-X needs PROP=VALUE, got \"%s\"", kv);
                return EX_USAGE;
            }
            o->props[o->nprops++] = kv;
        } else if (missing) {
            cli_error("%s needs a value (see ballast lag --help)", a);
            return EX_USAGE;
        } else {
            cli_error("unexpected argument \"%s\" (see ballast lag --help)", a);
            return EX_USAGE;
        }
        if (missing) {
            cli_error("%s needs a value (see ballast lag --help)", a);
            return EX_USAGE;
        }
    }
    if (!o->bootstrap || !*o->bootstrap || !o->group || !*o->group) {
        cli_error("lag needs -b BOOTSTRAP and -g GROUP (see ballast lag --help)");
        return EX_USAGE;
    }
    if (o->topic && !*o->topic) {
        cli_error("-t needs a topic name");
        return EX_USAGE;
    }
    if (json && prom) {
        cli_error("--json and --prometheus exclude each other");
        return EX_USAGE;
    }
    o->format = json ? OUT_JSON : prom ? OUT_PROMETHEUS : OUT_TABLE;
    /* With --listen the Prometheus text goes over HTTP, not to stdout. */
    o->print = !(o->listen && o->format == OUT_PROMETHEUS);
    if (o->listen && o->watch_s == 0)
        o->watch_s = 10;
    return 0;
}

/* ---- Kafka clients ------------------------------------------------------- */

/* The last error librdkafka reported on a client: used to tell a broker
 * that refused our credentials or certificate from one that is down. */
typedef struct client_error {
    rd_kafka_resp_err_t code;
    char reason[256];
} client_error_t;

static bool refused_by_broker(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL;
}

/* Keeps a refusal once seen: librdkafka follows it with "all brokers are
 * down" and transport errors, its consequences. */
static void note_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    client_error_t *e = opaque;
    (void)rk;
    if (refused_by_broker(e->code) && !refused_by_broker((rd_kafka_resp_err_t)err))
        return;
    e->code = (rd_kafka_resp_err_t)err;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

static client_error_t last_client_error;

/* A fresh client with the user's -X properties. @p probe: tuned to fetch
 * one message per partition. @returns NULL with a reason on failure. */
static rd_kafka_t *new_client(const lag_opts_t *o, bool probe, char *errbuf,
                              size_t errsize)
{
    /* The admin client names the watched group although it never joins it
     * (it never subscribes): librdkafka (2.4 to at least 2.14) dereferences
     * the client's own group handle when a ListConsumerGroupOffsets answer
     * says NOT_COORDINATOR, and a client without group.id has none
     * (librdkafka issue 5040). */
    const char *const plain[] = {"client.id", "ballast-lag", "group.id", o->group, NULL};
    static const char *const prober[] = {"client.id", "ballast-lag-probe",
                                         "enable.partition.eof", "true",
                                         "enable.auto.commit", "false",
                                         "fetch.wait.max.ms", "100",
                                         "queued.max.messages.kbytes", "1024",
                                         "auto.offset.reset", "error",
                                         NULL};
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, probe ? prober : plain,
                                         o->props, o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    memset(&last_client_error, 0, sizeof(last_client_error));
    rd_kafka_conf_set_opaque(conf, &last_client_error);
    rd_kafka_conf_set_error_cb(conf, note_error);
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static bool unreachable_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        return true;
    default:
        return false;
    }
}

/* A committed offset the group holds. */
typedef struct committed {
    char *topic;
    int32_t partition;
    int64_t offset;
} committed_t;

typedef struct fetch_result {
    committed_t *c;
    size_t n;
} fetch_result_t;

static void fetch_result_free(fetch_result_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->c[i].topic);
    free(r->c);
    r->c = NULL;
    r->n = 0;
}

/* The group's committed offsets (all of its partitions), by the admin API:
 * one request. @returns 0, or the error with a reason. */
static rd_kafka_resp_err_t list_committed_once(rd_kafka_t *rk, const lag_opts_t *o,
                                               fetch_result_t *out, char *errbuf,
                                               size_t errsize)
{
    rd_kafka_ListConsumerGroupOffsets_t *req =
        rd_kafka_ListConsumerGroupOffsets_new(o->group, NULL);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_event_t *ev;

    memset(out, 0, sizeof(*out));
    rd_kafka_AdminOptions_set_request_timeout(opts, o->timeout_ms, NULL, 0);
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, opts, q);
    ev = rd_kafka_queue_poll(q, o->timeout_ms + 2000);
    if (!ev) {
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        snprintf(errbuf, errsize, "no answer to ListConsumerGroupOffsets within %d ms",
                 o->timeout_ms);
    } else if ((err = rd_kafka_event_error(ev))) {
        snprintf(errbuf, errsize, "ListConsumerGroupOffsets: %s",
                 rd_kafka_event_error_string(ev));
    } else {
        const rd_kafka_ListConsumerGroupOffsets_result_t *res =
            rd_kafka_event_ListConsumerGroupOffsets_result(ev);
        size_t ngroups = 0;
        const rd_kafka_group_result_t **groups =
            res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &ngroups) : NULL;
        const rd_kafka_error_t *gerr = ngroups ? rd_kafka_group_result_error(groups[0]) : NULL;
        const rd_kafka_topic_partition_list_t *parts =
            ngroups ? rd_kafka_group_result_partitions(groups[0]) : NULL;

        /* A broker may answer "no such group" here rather than with no
         * offsets: the description decides whether the group exists. */
        if (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            parts = NULL;
        } else if (gerr) {
            err = rd_kafka_error_code(gerr);
            snprintf(errbuf, errsize, "group %s: %s", o->group,
                     rd_kafka_error_string(gerr));
        } else if (parts && parts->cnt > 0 &&
                   !(out->c = calloc((size_t)parts->cnt, sizeof(*out->c)))) {
            err = RD_KAFKA_RESP_ERR__FAIL;
            snprintf(errbuf, errsize, "out of memory");
        } else {
            for (int i = 0; parts && i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &parts->elems[i];
                if (p->err || p->offset < 0)
                    continue;
                if (!(out->c[out->n].topic = strdup(p->topic)))
                    continue;
                out->c[out->n].partition = p->partition;
                out->c[out->n].offset = p->offset;
                out->n++;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    return err;
}

/* ---- the group's members ------------------------------------------------- */

static void group_view_clear(group_view_t *g)
{
    for (size_t i = 0; i < g->nmembers; i++) {
        free(g->members[i].consumer_id);
        free(g->members[i].client_id);
        free(g->members[i].host);
    }
    for (size_t i = 0; i < g->nassigned; i++)
        free(g->assigned[i].topic);
    free(g->members);
    free(g->assigned);
    g->members = NULL;
    g->assigned = NULL;
    g->nmembers = g->nassigned = 0;
    g->described = g->not_found = false;
    g->state[0] = '\0';
    g->protocol = NULL;
}

static char *copy_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* Copies the members of @p d and the partitions each holds.
 * @returns false when out of memory. */
static bool copy_members(group_view_t *g, const rd_kafka_ConsumerGroupDescription_t *d)
{
    size_t n = rd_kafka_ConsumerGroupDescription_member_count(d);

    if (n && !(g->members = calloc(n, sizeof(*g->members))))
        return false;
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_MemberDescription_t *md = rd_kafka_ConsumerGroupDescription_member(d, i);
        const rd_kafka_MemberAssignment_t *ma = rd_kafka_MemberDescription_assignment(md);
        const rd_kafka_topic_partition_list_t *parts =
            ma ? rd_kafka_MemberAssignment_partitions(ma) : NULL;
        member_t *mb = &g->members[g->nmembers++];
        assigned_t *grown;

        if (!(mb->consumer_id = copy_or_empty(rd_kafka_MemberDescription_consumer_id(md))) ||
            !(mb->client_id = copy_or_empty(rd_kafka_MemberDescription_client_id(md))) ||
            !(mb->host = copy_or_empty(rd_kafka_MemberDescription_host(md))))
            return false;
        if (!parts || parts->cnt <= 0)
            continue;
        mb->partitions = parts->cnt;
        grown = realloc(g->assigned, (g->nassigned + (size_t)parts->cnt) * sizeof(*grown));
        if (!grown)
            return false;
        g->assigned = grown;
        for (int k = 0; k < parts->cnt; k++) {
            assigned_t *a = &g->assigned[g->nassigned];
            if (!(a->topic = strdup(parts->elems[k].topic)))
                return false;
            a->partition = parts->elems[k].partition;
            a->member = i;
            g->nassigned++;
        }
    }
    return true;
}

/* The group protocol of a described group, as the status document names
 * it; NULL when the broker does not say. */
static const char *group_protocol(rd_kafka_consumer_group_type_t type)
{
    return type == RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER  ? "consumer"
           : type == RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC ? "classic"
                                                          : NULL;
}

/* Reads DescribeConsumerGroups' answer for the group into @p g. */
static rd_kafka_resp_err_t read_description(group_view_t *g, const lag_opts_t *o,
                                            rd_kafka_event_t *ev, char *errbuf,
                                            size_t errsize)
{
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    const rd_kafka_error_t *gerr = n ? rd_kafka_ConsumerGroupDescription_error(d[0]) : NULL;
    rd_kafka_consumer_group_state_t state;
    const char *name;

    if (!n) {
        snprintf(errbuf, errsize, "DescribeConsumerGroups: no answer for group %s",
                 o->group);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    if (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
        g->unsupported = true;
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    /* A group the broker does not know: DescribeGroups answers "Dead" (up
     * to Kafka 3.9), or GROUP_ID_NOT_FOUND (DescribeGroups v6 and the
     * consumer-protocol describe of 4.x). */
    if (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        g->not_found = true;
        snprintf(g->state, sizeof(g->state), "Dead");
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    if (gerr) {
        snprintf(errbuf, errsize, "group %s: %s", o->group, rd_kafka_error_string(gerr));
        return rd_kafka_error_code(gerr);
    }
    state = rd_kafka_ConsumerGroupDescription_state(d[0]);
    name = rd_kafka_consumer_group_state_name(state);
    /* Newer states (a consumer-protocol group's Assigning, Reconciling)
     * have no code of their own in librdkafka: Unknown. */
    snprintf(g->state, sizeof(g->state), "%s", name ? name : "Unknown");
    g->protocol = group_protocol(rd_kafka_ConsumerGroupDescription_type(d[0]));
    g->not_found = state == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD;
    g->described = !g->not_found;
    if (!copy_members(g, d[0])) {
        snprintf(errbuf, errsize, "out of memory");
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Describes the group (state, members, who holds which partition) on a
 * client of its own (FIELD-NOTES: an admin call a broker cannot serve can
 * wedge its client). A broker that cannot describe groups is not asked
 * again: the members are then unknown. Newer librdkafka describes a
 * consumer-protocol (KIP-848) group with ConsumerGroupDescribe and falls
 * back to DescribeGroups for a classic one, behind the same call.
 * @p reached is the evaluation's client, which has reached the cluster.
 * @returns 0, or the error with a reason. */
static rd_kafka_resp_err_t describe_group(monitor_t *m, rd_kafka_t *reached, char *errbuf,
                                          size_t errsize)
{
    const lag_opts_t *o = m->o;
    group_view_t *g = &m->group;
    const char *groups[1] = {o->group};
    rd_kafka_AdminOptions_t *opts;
    rd_kafka_resp_err_t err;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    rd_kafka_t *rk;

    if (g->unsupported || (g->unsupported = cli_cannot_describe_groups(reached, o->timeout_ms)))
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!(rk = new_client(o, false, errbuf, errsize)))
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_set_request_timeout(opts, o->timeout_ms, NULL, 0);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, opts, q);
    ev = rd_kafka_queue_poll(q, o->timeout_ms + 2000);
    if (!ev) {
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        snprintf(errbuf, errsize, "no answer to DescribeConsumerGroups within %d ms",
                 o->timeout_ms);
    } else if ((err = rd_kafka_event_error(ev))) {
        snprintf(errbuf, errsize, "DescribeConsumerGroups: %s",
                 rd_kafka_event_error_string(ev));
    } else {
        err = read_description(g, o, ev, errbuf, errsize);
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_destroy(rk);
    return err;
}

/* The member that holds @p topic [@p partition]; -1: none. */
static long holder(const group_view_t *g, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < g->nassigned; i++)
        if (g->assigned[i].partition == partition && !strcmp(g->assigned[i].topic, topic))
            return (long)g->assigned[i].member;
    return -1;
}

/* A group coordinator that is loading, moving or not elected yet (a fresh
 * broker's, say): librdkafka's admin API does not ask again by itself. */
static bool coordinator_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
}

/* list_committed_once(), asked again after coordinator errors until the
 * timeout, as Kafka's own admin client does. */
static rd_kafka_resp_err_t list_committed(rd_kafka_t *rk, const lag_opts_t *o,
                                          fetch_result_t *out, char *errbuf,
                                          size_t errsize)
{
    int64_t deadline_ms = bl_wall_ms() + o->timeout_ms;
    rd_kafka_resp_err_t err;

    while (coordinator_error(err = list_committed_once(rk, o, out, errbuf, errsize)) &&
           bl_wall_ms() < deadline_ms)
        usleep(100 * 1000);
    return err;
}

/* ---- partitions and their state ---------------------------------------- */

static int part_cmp(const void *a, const void *b)
{
    const part_state_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static part_state_t *find_part(monitor_t *m, const char *topic, int32_t partition)
{
    part_state_t key;
    key.topic = (char *)topic;
    key.partition = partition;
    if (!m->nparts)
        return NULL; /* bsearch() must not see a NULL array */
    return bsearch(&key, m->parts, m->nparts, sizeof(*m->parts), part_cmp);
}

/* Finds or adds a partition (keeping the array sorted). NULL: out of memory. */
static part_state_t *get_part(monitor_t *m, const char *topic, int32_t partition)
{
    part_state_t *p = find_part(m, topic, partition), fresh;

    if (p)
        return p;
    if (m->nparts == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        part_state_t *grown = realloc(m->parts, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        m->parts = grown;
        m->cap = cap;
    }
    memset(&fresh, 0, sizeof(fresh));
    fresh.partition = partition;
    fresh.ok = true;
    fresh.committed = -1;
    fresh.lag_seconds = -1;
    fresh.member = -1;
    if (!(fresh.topic = strdup(topic)) ||
        lag_window_init(&fresh.window, m->o->window)) {
        free(fresh.topic);
        return NULL;
    }
    m->parts[m->nparts++] = fresh;
    qsort(m->parts, m->nparts, sizeof(*m->parts), part_cmp);
    return find_part(m, topic, partition);
}

static bool add_topic(monitor_t *m, const char *topic)
{
    char **grown;

    for (size_t i = 0; i < m->ntopics; i++)
        if (!strcmp(m->topics[i], topic))
            return true;
    if (!(grown = realloc(m->topics, (m->ntopics + 1) * sizeof(*grown))))
        return false;
    m->topics = grown;
    if (!(m->topics[m->ntopics] = strdup(topic)))
        return false;
    m->ntopics++;
    return true;
}

static void mark_error(part_state_t *p, const char *why)
{
    p->ok = false;
    snprintf(p->error, sizeof(p->error), "%s", why);
}

/* ---- time lag ------------------------------------------------------------ */

/* Sets lag_seconds of every partition with committed offsets and lag > 0 to
 * the age of the message at its committed offset (at its low watermark when
 * retention already deleted that one), fetched by a group-less consumer.
 * Partitions whose message does not arrive in time keep an unknown time
 * lag rather than a guessed one. */
static void probe_time_lag(monitor_t *m, int64_t deadline_ms)
{
    const lag_opts_t *o = m->o;
    char errbuf[512];
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t **rkts;
    size_t pending = 0;

    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].ok && m->parts[i].committed >= 0 && m->parts[i].lag > 0)
            pending++;
    if (!pending)
        return;
    if (!(rk = new_client(o, true, errbuf, sizeof(errbuf))))
        return;
    q = rd_kafka_queue_new(rk);
    rkts = calloc(m->nparts, sizeof(*rkts));
    if (!rkts) {
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return;
    }
    /* -2 marks a partition awaiting its message; -1 stays "unknown". */
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        int64_t start;
        if (!(p->ok && p->committed >= 0 && p->lag > 0))
            continue;
        start = p->committed > p->low ? p->committed : p->low;
        /* One topic handle per partition is simplest: handles are
         * refcounted per topic by librdkafka. */
        if (!(rkts[i] = rd_kafka_topic_new(rk, p->topic, NULL)))
            continue;
        if (rd_kafka_consume_start_queue(rkts[i], p->partition, start, q) == -1) {
            rd_kafka_topic_destroy(rkts[i]);
            rkts[i] = NULL;
            continue;
        }
        p->lag_seconds = -2;
    }
    while (pending) {
        int64_t left = deadline_ms - bl_wall_ms();
        rd_kafka_message_t *msg;
        part_state_t *p;
        if (left <= 0 || cli_stop_requested)
            break;
        if (!(msg = rd_kafka_consume_queue(q, (int)(left > 200 ? 200 : left))))
            continue;
        p = msg->rkt ? find_part(m, rd_kafka_topic_name(msg->rkt), msg->partition)
                     : NULL;
        if (p && p->lag_seconds == -2) {
            if (!msg->err) {
                int64_t ts = rd_kafka_message_timestamp(msg, NULL);
                int64_t age = bl_wall_ms() - ts;
                p->lag_seconds = ts < 0 ? -1 : (age > 0 ? (double)age / 1000.0 : 0);
            } else if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* Only control records (transaction markers) are left. */
                p->lag_seconds = 0;
            } else {
                p->lag_seconds = -1;
            }
            pending--;
        }
        rd_kafka_message_destroy(msg);
    }
    for (size_t i = 0; i < m->nparts; i++) {
        if (m->parts[i].lag_seconds == -2)
            m->parts[i].lag_seconds = -1;
        if (rkts[i]) {
            rd_kafka_consume_stop(rkts[i], m->parts[i].partition);
            rd_kafka_topic_destroy(rkts[i]);
        }
    }
    free(rkts);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* ---- one evaluation ------------------------------------------------------ */

/* Measures every partition once. @returns 0; or, when the broker cannot be
 * reached or the group's offsets cannot be read at all, EX_UNAVAILABLE or
 * 1 with a reason (every known partition then holds an ERR sample). */
static int measure(monitor_t *m, char *errbuf, size_t errsize)
{
    const lag_opts_t *o = m->o;
    const struct rd_kafka_metadata *md = NULL;
    fetch_result_t committed = {NULL, 0};
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    int rc = 0;

    for (size_t i = 0; i < m->nparts; i++) {
        m->parts[i].ok = true;
        m->parts[i].error[0] = '\0';
        m->parts[i].committed = -1;
        m->parts[i].lag_seconds = -1;
        m->parts[i].member = -1;
    }
    group_view_clear(&m->group);
    if (!(rk = new_client(o, false, errbuf, errsize)))
        return EX_CONFIG;
    /* A broker-only metadata request first: the clearest unreachability test. */
    if ((err = rd_kafka_metadata(rk, 0, NULL, &md, o->timeout_ms))) {
        rd_kafka_poll(rk, 0); /* serves the error callback */
        if (refused_by_broker(last_client_error.code)) {
            snprintf(errbuf, errsize, "the broker at %s refused the connection's %s: %s",
                     o->bootstrap,
                     last_client_error.code == RD_KAFKA_RESP_ERR__SSL
                         ? "TLS (check -X ssl.*)"
                         : "authentication (check -X sasl.*)",
                     last_client_error.reason);
            rc = EX_CONFIG;
            goto out;
        }
        snprintf(errbuf, errsize, "cannot reach the broker at %s: %s", o->bootstrap,
                 rd_kafka_err2str(err));
        rc = EX_UNAVAILABLE;
        goto out;
    }
    rd_kafka_metadata_destroy(md);
    if ((err = list_committed(rk, o, &committed, errbuf, errsize)) ||
        (err = describe_group(m, rk, errbuf, errsize))) {
        rc = unreachable_error(err) ? EX_UNAVAILABLE : 1;
        goto out;
    }
    /* Committed offsets alone make a group as far as lag goes (a group
     * whose consumers commit without joining it, or a consumer-protocol
     * group that an older librdkafka describes as Dead). Neither offsets
     * nor a description: a typo, which must not look like a healthy,
     * empty group. */
    if (m->group.not_found && !committed.n) {
        snprintf(errbuf, errsize,
                 "group %s not found: the broker at %s has no consumer group of that "
                 "name (no members, no committed offsets)",
                 o->group, o->bootstrap);
        rc = m->evaluations ? 1 : EX_CONFIG;
        goto out;
    }
    if (o->topic && !add_topic(m, o->topic))
        goto oom;
    for (size_t i = 0; i < committed.n; i++)
        if (!o->topic || !strcmp(committed.c[i].topic, o->topic))
            if (!add_topic(m, committed.c[i].topic))
                goto oom;
    /* The topics the members hold, committed or not yet. */
    for (size_t i = 0; i < m->group.nassigned; i++)
        if (!o->topic || !strcmp(m->group.assigned[i].topic, o->topic))
            if (!add_topic(m, m->group.assigned[i].topic))
                goto oom;
    for (size_t t = 0; t < m->ntopics; t++) {
        char why[300];
        int n = cli_partition_count(rk, m->topics[t], o->timeout_ms, why, sizeof(why));
        if (n == 0 && o->topic && !m->evaluations) {
            snprintf(errbuf, errsize, "topic %s does not exist", m->topics[t]);
            rc = EX_CONFIG;
            goto out;
        }
        for (int32_t p = 0; p < n; p++)
            if (!get_part(m, m->topics[t], p))
                goto oom;
        if (n <= 0)
            for (size_t i = 0; i < m->nparts; i++)
                if (!strcmp(m->parts[i].topic, m->topics[t]))
                    mark_error(&m->parts[i], n == 0 ? "the topic does not exist" : why);
    }
    for (size_t i = 0; i < committed.n; i++) {
        part_state_t *p = find_part(m, committed.c[i].topic, committed.c[i].partition);
        if (p)
            p->committed = committed.c[i].offset;
    }
    for (size_t i = 0; i < m->nparts; i++)
        m->parts[i].member = holder(&m->group, m->parts[i].topic, m->parts[i].partition);
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        if (!p->ok)
            continue;
        err = rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &p->low,
                                               &p->high, o->timeout_ms);
        if (err) {
            char why[256];
            snprintf(why, sizeof(why), "watermarks: %s", rd_kafka_err2str(err));
            mark_error(p, why);
            continue;
        }
        if (p->committed >= 0) {
            p->lag = p->high > p->committed ? p->high - p->committed : 0;
            if (p->lag == 0)
                p->lag_seconds = 0;
        } else {
            p->lag = p->high > p->low ? p->high - p->low : 0;
        }
    }
    rd_kafka_destroy(rk);
    rk = NULL;
    probe_time_lag(m, bl_wall_ms() + (o->timeout_ms < 5000 ? o->timeout_ms : 5000));
    goto out;
oom:
    snprintf(errbuf, errsize, "out of memory");
    rc = EX_SOFTWARE;
out:
    if (rk)
        rd_kafka_destroy(rk);
    fetch_result_free(&committed);
    if (rc)
        for (size_t i = 0; i < m->nparts; i++)
            mark_error(&m->parts[i], errbuf);
    return rc;
}

/* Adds this evaluation's samples to the windows and judges them. */
static void judge(monitor_t *m)
{
    m->status = LAG_OK;
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        lag_owner_t owner = !m->group.described ? LAG_OWNER_UNKNOWN
                            : p->member >= 0    ? LAG_OWNER_MEMBER
                                                : LAG_OWNER_NONE;
        lag_sample_t s = {p->ok, p->committed, p->high, p->lag, p->lag_seconds, owner};
        lag_window_push(&p->window, &s);
        p->status = lag_evaluate(&p->window, &m->o->th);
        m->status = lag_status_worst(m->status, p->status);
    }
}

/* ---- output -------------------------------------------------------------- */

static const char *status_colour(lag_status_t s)
{
    switch (s) {
    case LAG_OK:
        return "\033[32m";
    case LAG_WARN:
        return "\033[33m";
    case LAG_REWIND:
        return "\033[35m";
    case LAG_STALL:
        return "\033[31m";
    default:
        return "\033[1;31m";
    }
}

static void fmt_offset(int64_t v, bool known, char *out, size_t size)
{
    if (known && v >= 0)
        snprintf(out, size, "%lld", (long long)v);
    else
        snprintf(out, size, "-");
}

static void fmt_seconds(double v, bool known, char *out, size_t size)
{
    if (known && v >= 0)
        snprintf(out, size, "%.3f", v);
    else
        snprintf(out, size, "-");
}

static int64_t total_lag(const monitor_t *m)
{
    int64_t total = 0;
    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].ok)
            total += m->parts[i].lag;
    return total;
}

/* Prints one table row: each cell padded to its column's width (numbers to
 * the right), the last one unpadded; @p colour, when set, around column
 * @p coloured, or around the whole row when @p coloured >= @p ncols. */
static void print_row(const char *const *cells, const size_t *width, const bool *right,
                      size_t ncols, size_t coloured, const char *colour)
{
    bool whole = colour && coloured >= ncols;

    if (whole)
        fputs(colour, stdout);
    for (size_t c = 0; c < ncols; c++) {
        int w = c + 1 == ncols ? 0 : (int)width[c];
        if (c)
            fputs("  ", stdout);
        if (colour && c == coloured)
            fputs(colour, stdout);
        printf(right[c] ? "%*s" : "%-*s", w, cells[c]);
        if (colour && (c == coloured || (whole && c + 1 == ncols)))
            fputs("\033[0m", stdout);
    }
    putchar('\n');
}

static void widen(size_t *width, const char *const *cells, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++)
        if (strlen(cells[c]) > width[c])
            width[c] = strlen(cells[c]);
}

enum { C_TOPIC, C_PARTITION, C_COMMITTED, C_HIGH, C_LAG, C_SECONDS, C_STATUS, C_CONSUMER,
       C_HOST, C_CLIENT, C_COUNT };

/* The cells of @p p's row; numbers go to @p buf. */
static void part_cells(const monitor_t *m, const part_state_t *p, const char **cells,
                       char buf[][64])
{
    const member_t *mb = p->member >= 0 ? &m->group.members[p->member] : NULL;

    cells[C_TOPIC] = p->topic;
    snprintf(buf[C_PARTITION], sizeof(buf[0]), "%d", (int)p->partition);
    fmt_offset(p->committed, p->ok, buf[C_COMMITTED], sizeof(buf[0]));
    fmt_offset(p->high, p->ok, buf[C_HIGH], sizeof(buf[0]));
    fmt_offset(p->lag, p->ok, buf[C_LAG], sizeof(buf[0]));
    fmt_seconds(p->lag_seconds, p->ok, buf[C_SECONDS], sizeof(buf[0]));
    for (int c = C_PARTITION; c <= C_SECONDS; c++)
        cells[c] = buf[c];
    cells[C_STATUS] = lag_status_name(p->status);
    cells[C_CONSUMER] = mb && *mb->consumer_id ? mb->consumer_id : "-";
    cells[C_HOST] = mb && *mb->host ? mb->host : "-";
    cells[C_CLIENT] = mb && *mb->client_id ? mb->client_id : "-";
}

/* The members, as `kafka-consumer-groups --describe --members` lists them. */
static void print_members(const group_view_t *g, bool colour)
{
    static const char *const heads[] = {"CONSUMER-ID", "HOST", "CLIENT-ID", "PARTITIONS"};
    static const bool right[] = {false, false, false, true};
    size_t width[4];
    char count[32];

    for (int c = 0; c < 4; c++)
        width[c] = strlen(heads[c]);
    for (size_t i = 0; i < g->nmembers; i++)
        widen(width, (const char *[]){g->members[i].consumer_id, g->members[i].host,
                                      g->members[i].client_id, ""},
              3);
    putchar('\n');
    print_row(heads, width, right, 4, 4, colour ? "\033[1m" : NULL);
    for (size_t i = 0; i < g->nmembers; i++) {
        const member_t *mb = &g->members[i];
        snprintf(count, sizeof(count), "%d", mb->partitions);
        print_row((const char *[]){mb->consumer_id, mb->host, mb->client_id, count}, width,
                  right, 4, 4, NULL);
    }
}

static void print_table(const monitor_t *m, bool colour, bool redraw)
{
    static const char *const heads[C_COUNT] = {
        "TOPIC", "PARTITION",   "COMMITTED", "HIGH-WATERMARK", "LAG",
        "LAG-SECONDS", "STATUS", "CONSUMER-ID", "HOST",        "CLIENT-ID"};
    static const bool right[C_COUNT] = {false, true, true, true, true,
                                        true,  false, false, false, false};
    const group_view_t *g = &m->group;
    /* The member columns only when the members are known. */
    size_t ncols = g->described ? C_COUNT : C_STATUS + 1, width[C_COUNT];
    const char *cells[C_COUNT];
    char when[40], buf[C_COUNT][64], last[400];

    for (int c = 0; c < C_COUNT; c++)
        width[c] = strlen(heads[c]);
    for (size_t i = 0; i < m->nparts; i++) {
        part_cells(m, &m->parts[i], cells, buf);
        widen(width, cells, ncols);
    }
    if (redraw)
        fputs("\033[H\033[2J", stdout);
    bl_iso8601(m->eval_ms, when, sizeof(when));
    printf("group %s", m->o->group);
    if (g->state[0])
        printf("  state %s", g->state);
    if (g->described)
        printf("  members %zu", g->nmembers);
    if (g->protocol)
        printf("  protocol %s", g->protocol);
    printf("  status %s%s%s  total lag %lld  partitions %zu  %s\n",
           colour ? status_colour(m->status) : "", lag_status_name(m->status),
           colour ? "\033[0m" : "", (long long)total_lag(m), m->nparts, when);
    if (m->nparts)
        print_row(heads, width, right, ncols, ncols, colour ? "\033[1m" : NULL);
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        part_cells(m, p, cells, buf);
        /* An error goes after the row's last cell. */
        if (!p->ok) {
            snprintf(last, sizeof(last), "%s  %s", cells[ncols - 1], p->error);
            cells[ncols - 1] = last;
        }
        print_row(cells, width, right, ncols, C_STATUS,
                  colour ? status_colour(p->status) : NULL);
    }
    if (!m->nparts)
        printf("(no partitions: the group has no committed offsets and its members hold "
               "none%s)\n",
               m->o->topic ? "" : "; -t TOPIC shows a topic's lag anyway");
    if (g->nmembers)
        print_members(g, colour);
}

static json_t *opt_int(int64_t v, bool known)
{
    return known && v >= 0 ? json_integer((json_int_t)v) : json_null();
}

static json_t *string_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* The group's state and member count, and who holds the partition: null
 * where the broker could not say (or nobody holds it). */
static void put_membership(json_t *o, const group_view_t *g, const part_state_t *p)
{
    const member_t *mb = p->member >= 0 ? &g->members[p->member] : NULL;

    json_object_set_new(o, "group_state", string_or_null(g->state));
    json_object_set_new(o, "group_protocol", string_or_null(g->protocol));
    json_object_set_new(o, "group_members",
                        g->described ? json_integer((json_int_t)g->nmembers) : json_null());
    json_object_set_new(o, "consumer_id", string_or_null(mb ? mb->consumer_id : NULL));
    json_object_set_new(o, "client_id", string_or_null(mb ? mb->client_id : NULL));
    json_object_set_new(o, "host", string_or_null(mb ? mb->host : NULL));
}

static void print_json(const monitor_t *m)
{
    char when[40];

    bl_iso8601(m->eval_ms, when, sizeof(when));
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        json_t *o = json_object();
        char *line;
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "group", json_string(m->o->group));
        json_object_set_new(o, "topic", json_string(p->topic));
        json_object_set_new(o, "partition", json_integer(p->partition));
        json_object_set_new(o, "committed", opt_int(p->committed, p->ok));
        json_object_set_new(o, "high_watermark", opt_int(p->high, p->ok));
        json_object_set_new(o, "low_watermark", opt_int(p->low, p->ok));
        json_object_set_new(o, "lag", opt_int(p->lag, p->ok));
        json_object_set_new(o, "lag_seconds",
                            p->ok && p->lag_seconds >= 0
                                ? json_real(round(p->lag_seconds * 1000) / 1000)
                                : json_null());
        json_object_set_new(o, "status", json_string(lag_status_name(p->status)));
        json_object_set_new(o, "group_status", json_string(lag_status_name(m->status)));
        json_object_set_new(o, "evaluation", json_integer((json_int_t)m->evaluations));
        put_membership(o, &m->group, p);
        if (!p->ok)
            json_object_set_new(o, "error", json_string(p->error));
        line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
        if (line)
            puts(line);
        free(line);
        json_decref(o);
    }
}

static void labels(FILE *fp, const char *group, const part_state_t *p)
{
    fputc('{', fp);
    if (group) {
        fputs("consumergroup=\"", fp);
        bl_prom_label(fp, group);
        fputs("\",", fp);
    }
    fputs("topic=\"", fp);
    bl_prom_label(fp, p->topic);
    fprintf(fp, "\",partition=\"%d\"}", (int)p->partition);
}

enum prom_value { PV_LAG, PV_LAG_SECONDS, PV_COMMITTED, PV_HIGH, PV_LOW, PV_STATUS };

static void prom_family(FILE *fp, const monitor_t *m, const char *name,
                        const char *help, enum prom_value which, bool group_label)
{
    fprintf(fp, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        if (which != PV_STATUS && !p->ok)
            continue;
        if ((which == PV_LAG_SECONDS && p->lag_seconds < 0) ||
            (which == PV_COMMITTED && p->committed < 0))
            continue;
        fputs(name, fp);
        labels(fp, group_label ? m->o->group : NULL, p);
        switch (which) {
        case PV_LAG:
            fprintf(fp, " %lld\n", (long long)p->lag);
            break;
        case PV_LAG_SECONDS:
            fprintf(fp, " %.3f\n", p->lag_seconds);
            break;
        case PV_COMMITTED:
            fprintf(fp, " %lld\n", (long long)p->committed);
            break;
        case PV_HIGH:
            fprintf(fp, " %lld\n", (long long)p->high);
            break;
        case PV_LOW:
            fprintf(fp, " %lld\n", (long long)p->low);
            break;
        case PV_STATUS:
            fprintf(fp, " %d\n", (int)p->status);
            break;
        }
    }
}

/* The Prometheus text of the latest evaluation. Caller frees. */
static char *render_prometheus(const monitor_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    if (!fp)
        return NULL;
    prom_family(fp, m, "kafka_consumergroup_lag",
                "High watermark minus the group's committed offset.", PV_LAG, true);
    prom_family(fp, m, "kafka_consumergroup_lag_seconds",
                "Age of the oldest unconsumed message (0 when caught up).",
                PV_LAG_SECONDS, true);
    prom_family(fp, m, "kafka_consumergroup_current_offset",
                "The group's committed offset.", PV_COMMITTED, true);
    prom_family(fp, m, "kafka_topic_partition_current_offset",
                "The partition's high watermark.", PV_HIGH, false);
    prom_family(fp, m, "kafka_topic_partition_oldest_offset",
                "The partition's low watermark.", PV_LOW, false);
    prom_family(fp, m, "ballast_lag_partition_status",
                "Lag status: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.",
                PV_STATUS, true);
    fputs("# HELP ballast_lag_group_status The group's worst partition status: "
          "0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.\n"
          "# TYPE ballast_lag_group_status gauge\nballast_lag_group_status{consumergroup=\"",
          fp);
    bl_prom_label(fp, m->o->group);
    fprintf(fp, "\"} %d\n", (int)m->status);
    if (m->group.described) {
        fputs("# HELP ballast_lag_group_members Members of the group.\n"
              "# TYPE ballast_lag_group_members gauge\n"
              "ballast_lag_group_members{consumergroup=\"",
              fp);
        bl_prom_label(fp, m->o->group);
        fprintf(fp, "\"} %zu\n", m->group.nmembers);
    }
    fputs("# HELP ballast_lag_evaluations_total Evaluations made.\n"
          "# TYPE ballast_lag_evaluations_total counter\n"
          "ballast_lag_evaluations_total{consumergroup=\"",
          fp);
    bl_prom_label(fp, m->o->group);
    fprintf(fp, "\"} %lu\n", m->evaluations);
    if (fclose(fp)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- --on-change ---------------------------------------------------------- */

static void reap_children(monitor_t *m, bool block, int64_t deadline_ms)
{
    for (size_t i = 0; i < m->nchildren;) {
        int status;
        pid_t r = waitpid(m->children[i], &status, WNOHANG);
        while (!r && block && bl_wall_ms() < deadline_ms) {
            usleep(20000);
            r = waitpid(m->children[i], &status, WNOHANG);
        }
        if (r == m->children[i] || (r < 0 && errno == ECHILD))
            m->children[i] = m->children[--m->nchildren];
        else
            i++;
    }
}

/* Appends "NAME=value" to @p env. */
static bool env_add(char **env, size_t *n, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    if (!(env[*n] = malloc(len)))
        return false;
    snprintf(env[(*n)++], len, "%s=%s", name, value);
    return true;
}

static void run_on_change(monitor_t *m, const char *previous)
{
    extern char **environ;
    size_t nenv = 0, ours = 0, cap;
    char **env, buf[64], *topics = NULL, *parts = NULL;
    size_t tlen = 0, plen = 0;
    FILE *tf = open_memstream(&topics, &tlen), *pf = open_memstream(&parts, &plen);
    double max_seconds = -1;
    bool unknown_seconds = false;
    pid_t pid, *grown;

    for (size_t i = 0; i < m->ntopics && tf; i++)
        fprintf(tf, "%s%s", i ? "," : "", m->topics[i]);
    for (size_t i = 0, k = 0; i < m->nparts && pf; i++) {
        const part_state_t *p = &m->parts[i];
        if (p->status == m->status && p->status != LAG_OK)
            fprintf(pf, "%s%s:%d", k++ ? "," : "", p->topic, (int)p->partition);
        if (p->ok && p->lag > 0 && p->lag_seconds < 0)
            unknown_seconds = true;
        if (p->ok && p->lag_seconds > max_seconds)
            max_seconds = p->lag_seconds;
    }
    if (tf)
        fclose(tf);
    if (pf)
        fclose(pf);
    while (environ[nenv])
        nenv++;
    cap = nenv + 8;
    if (!(env = calloc(cap, sizeof(*env))))
        goto out;
    /* Ours first; inherited variables of the same names are dropped. */
    env_add(env, &ours, "BALLAST_LAG_GROUP", m->o->group);
    env_add(env, &ours, "BALLAST_LAG_STATUS", lag_status_name(m->status));
    env_add(env, &ours, "BALLAST_LAG_PREVIOUS_STATUS", previous);
    env_add(env, &ours, "BALLAST_LAG_TOPIC", topics ? topics : "");
    snprintf(buf, sizeof(buf), "%lld", (long long)total_lag(m));
    env_add(env, &ours, "BALLAST_LAG_TOTAL_LAG", buf);
    if (unknown_seconds || max_seconds < 0)
        buf[0] = '\0';
    else
        snprintf(buf, sizeof(buf), "%.3f", max_seconds);
    env_add(env, &ours, "BALLAST_LAG_MAX_LAG_SECONDS", buf);
    env_add(env, &ours, "BALLAST_LAG_PARTITIONS", parts ? parts : "");
    for (size_t i = 0, n = ours; i < nenv; i++)
        if (strncmp(environ[i], "BALLAST_LAG_", 12))
            env[n++] = environ[i];
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
        /* stdout belongs to our own output (JSON lines, tables). */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        signal(SIGPIPE, SIG_DFL);
        execvpe(m->o->on_change[0], m->o->on_change, env);
        dprintf(STDERR_FILENO, "ballast: --on-change: cannot run %s: %s\n",
                m->o->on_change[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0) {
        cli_error("--on-change: cannot start %s: %s", m->o->on_change[0], strerror(errno));
    } else if ((grown = realloc(m->children, (m->nchildren + 1) * sizeof(*grown)))) {
        m->children = grown;
        m->children[m->nchildren++] = pid;
    }
out:
    for (size_t i = 0; env && i < ours; i++)
        free(env[i]);
    free(env);
    free(topics);
    free(parts);
}

/* ---- the loop ----------------------------------------------------------- */

static void lag_routes(const char *path, http_response_t *r, void *opaque)
{
    monitor_t *m = opaque;
    static const char index_text[] =
        "ballast lag: Prometheus metrics at /metrics\n";

    if (!strcmp(path, "/metrics")) {
        pthread_mutex_lock(&m->mtx);
        r->body = m->prom ? strdup(m->prom) : NULL;
        pthread_mutex_unlock(&m->mtx);
        r->release = free;
        if (r->body) {
            r->status = 200;
            r->content_type = "text/plain; version=0.0.4; charset=utf-8";
            r->len = strlen(r->body);
        } else {
            static const char wait_text[] = "the first evaluation is in progress\n";
            r->status = 503;
            r->content_type = "text/plain; charset=utf-8";
            r->body = (char *)wait_text;
            r->len = sizeof(wait_text) - 1;
            r->release = NULL;
        }
    } else if (!strcmp(path, "/healthz") || !strcmp(path, "/")) {
        r->status = 200;
        r->content_type = "text/plain; charset=utf-8";
        r->body = (char *)(strcmp(path, "/") ? "ok\n" : index_text);
        r->len = strlen(r->body);
    }
}

static void sleep_interval(double seconds)
{
    int64_t until = bl_wall_ms() + (int64_t)(seconds * 1000);
    while (!cli_stop_requested) {
        int64_t left = until - bl_wall_ms();
        struct timespec ts;
        if (left <= 0)
            break;
        if (left > 100)
            left = 100;
        ts.tv_sec = 0;
        ts.tv_nsec = left * 1000000L;
        nanosleep(&ts, NULL);
    }
}

static void monitor_free(monitor_t *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        free(m->parts[i].topic);
        lag_window_free(&m->parts[i].window);
    }
    free(m->parts);
    for (size_t i = 0; i < m->ntopics; i++)
        free(m->topics[i]);
    free(m->topics);
    free(m->prom);
    free(m->children);
    group_view_clear(&m->group);
    pthread_mutex_destroy(&m->mtx);
}

static int run_monitor(const lag_opts_t *o)
{
    monitor_t m;
    http_server_t *http = NULL;
    bool tty = isatty(STDOUT_FILENO);
    const char *no_colour = getenv("NO_COLOR"), *term = getenv("TERM");
    bool colour = tty && !(no_colour && *no_colour) && !(term && !strcmp(term, "dumb"));
    char errbuf[1024];
    int rc = 0;

    memset(&m, 0, sizeof(m));
    m.o = o;
    pthread_mutex_init(&m.mtx, NULL);
    if (o->listen) {
        if (http_server_start(o->listen, lag_routes, &m, &http, errbuf, sizeof(errbuf))) {
            cli_error("--listen: %s", errbuf);
            monitor_free(&m);
            return EX_CONFIG;
        }
        fprintf(stderr, "ballast: lag metrics listening on %s (http://%s/metrics)\n",
                http_server_address(http), http_server_address(http));
    }
    while (!cli_stop_requested) {
        char *prom;
        int mrc = measure(&m, errbuf, sizeof(errbuf));
        if (mrc && (!m.evaluations || mrc == EX_CONFIG || mrc == EX_SOFTWARE)) {
            /* Unreachable at start-up, or a problem no retry will fix. */
            cli_error("%s", errbuf);
            rc = mrc;
            break;
        }
        m.eval_ms = bl_wall_ms();
        m.evaluations++;
        judge(&m);
        if (m.evaluations == 1 && !m.nparts && !o->topic)
            cli_error("group %s has no committed offsets and its members hold no "
                      "partitions (give -t TOPIC to see a topic's lag anyway)", o->group);
        if (o->print) {
            if (o->format == OUT_JSON)
                print_json(&m);
            else if (o->format == OUT_PROMETHEUS) {
                char *text = render_prometheus(&m);
                if (text)
                    fputs(text, stdout);
                free(text);
            } else {
                print_table(&m, colour, colour && o->watch_s > 0);
                if (!colour && o->watch_s > 0)
                    putchar('\n');
            }
            if (fflush(stdout) == EOF || ferror(stdout))
                break; /* the reader went away (e.g. `| head`) */
        }
        prom = render_prometheus(&m);
        pthread_mutex_lock(&m.mtx);
        free(m.prom);
        m.prom = prom;
        pthread_mutex_unlock(&m.mtx);
        /* The first evaluation alerts unless all is well; later ones on
         * every change of the group's status. */
        if (o->on_change &&
            (m.have_status ? m.status != m.previous : m.status != LAG_OK))
            run_on_change(&m, m.have_status ? lag_status_name(m.previous) : "");
        m.previous = m.status;
        m.have_status = true;
        reap_children(&m, false, 0);
        if (o->watch_s <= 0)
            break;
        sleep_interval(o->watch_s);
    }
    http_server_stop(http);
    reap_children(&m, true, bl_wall_ms() + 10000);
    monitor_free(&m);
    return rc;
}

int cmd_lag(int argc, char **argv)
{
    lag_opts_t o;
    int rc = parse_lag_args(argc, argv, &o);

    if (rc) {
        if (rc < 0)
            fputs(lag_usage, stdout);
        free_words(o.on_change);
        free(o.props);
        return rc < 0 ? 0 : rc;
    }
    if ((rc = cli_check_props(o.props, o.nprops))) {
        free_words(o.on_change);
        free(o.props);
        return rc;
    }
    cli_catch_stop_signals();
    rc = run_monitor(&o);
    free_words(o.on_change);
    free(o.props);
    return rc;
}
