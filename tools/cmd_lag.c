/*
 * cmd_lag.c - `ballast lag`: a consumer group's offset lag, time lag and
 * status per partition, read from outside the group. This file holds the
 * command line and the loop of evaluations; see lagmon.h for the rest.
 *
 * Each evaluation (lag_measure.c) adds a sample per partition (with whether
 * a member holds it) to a sliding window and judges it with the pure rules
 * of shared/lag.c; the group's status is the worst partition's. Output is a
 * table (coloured on a terminal), JSON lines, or Prometheus text (printed,
 * or served with --listen); --on-change runs a command, without a shell,
 * whenever the group's status changes.
 */
#include "http.h"
#include "lagmon.h"
#include "words.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char lag_usage[] =
    "usage: ballast lag {-b BOOTSTRAP | --config FILE} -g GROUP [-t TOPIC]\n"
    "                   [--json | --prometheus]\n"
    "                   [--watch SECONDS] [--listen HOST:PORT] [--on-change CMD]\n"
    "                   [--window N] [--warn-lag N] [--warn-lag-seconds S]\n"
    "                   [--lag-seconds-method METHOD] [ALERT OPTIONS]\n"
    "                   [--timeout SECONDS] [-X PROP=VALUE]...\n"
    "       ballast lag -b BOOTSTRAP --all-groups [--include REGEX] [--exclude REGEX]\n"
    "                   [--include-topic REGEX] [--exclude-topic REGEX]\n"
    "                   [--cluster-name NAME] [--json | --prometheus] [--watch SECONDS]\n"
    "                   [--listen HOST:PORT] [--window N] [--warn-lag N]\n"
    "                   [--warn-lag-seconds S] [--lag-seconds-method METHOD]\n"
    "                   [ALERT OPTIONS] [--timeout SECONDS] [-X PROP=VALUE]...\n"
    "\n"
    "Reports a consumer group's lag per partition without joining the group\n"
    "(admin API and watermarks only), with the group's state and members, as\n"
    "the broker describes them:\n"
    "  committed       the group's committed offset (null: nothing committed)\n"
    "  high_watermark  the partition's end offset\n"
    "  lag             high_watermark - committed; with nothing committed,\n"
    "                  high_watermark - low watermark (all retained messages)\n"
    "  lag_seconds     age of the oldest unconsumed message (the one at the\n"
    "                  committed offset): how long ago the partition's log end\n"
    "                  passed that offset, from a history of the log end that\n"
    "                  each evaluation extends; 0 when caught up; null when\n"
    "                  nothing is committed or it cannot be known\n"
    "  lag_seconds_method\n"
    "                  how lag_seconds was found: interpolated (between two\n"
    "                  samples of the history), extrapolated (older than the\n"
    "                  history), timestamp (the message's own, before there is\n"
    "                  any history), caught_up, none\n"
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
    "With --all-groups it watches every consumer group of the cluster (classic\n"
    "and consumer protocol), found again at each evaluation, by the same rules;\n"
    "the table then has a row per group, and --listen also serves /groups (each\n"
    "group's status, total lag and members, worst first) and /groups/NAME (its\n"
    "partitions) as JSON, and at / a page of the groups. Every metric carries a\n"
    "cluster label. Several clusters in one process: name each in the --config\n"
    "file, lag.cluster.NAME.bootstrap.servers and any other client property\n"
    "under lag.cluster.NAME. (see docs/operations.md, \"Watching a whole\n"
    "cluster\"); each is evaluated in its own loop and served on one /metrics.\n"
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
    "  --all-groups               every consumer group of the cluster instead of -g\n"
    "  --include REGEX            only the groups whose name matches REGEX (POSIX\n"
    "                             extended; unanchored: use ^...$ for a whole name)\n"
    "  --exclude REGEX            not the groups whose name matches REGEX\n"
    "  --include-topic REGEX      only the partitions of topics matching REGEX\n"
    "  --exclude-topic REGEX      not the partitions of topics matching REGEX\n"
    "  --cluster-name NAME        the value of the cluster label (default: BOOTSTRAP)\n"
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
    "  --lag-seconds-method METHOD\n"
    "                             interpolated (default: the log end's history)\n"
    "                             or timestamp (the message's timestamp where it\n"
    "                             can be read, the history otherwise)\n"
    "  --timeout SECONDS          per broker request (default 10)\n"
    CLI_CONFIG_HELP
    "  -X PROP=VALUE              a librdkafka property (security.protocol, sasl.*)\n"
    "  -h, --help\n"
    "\n"
    "alert options (per group; SECONDS may be 90, 1.5s, 5m, 1h):\n"
    "  --webhook URL              POST a notification when a group's alert fires\n"
    "                             and when it resolves (repeatable: each URL has its\n"
    "                             own queue and thread; evaluations never wait)\n"
    "  --webhook-format FORMAT    json (default: the alert as an object) or slack\n"
    "                             (a Slack incoming-webhook body, {\"text\": ...})\n"
    "  --webhook-timeout SECONDS  per try, to connect and to be answered (default 5)\n"
    "  --webhook-retry-for SECONDS\n"
    "                             tries again after a timeout, a refused connection,\n"
    "                             a 5xx or 429, with back-off from 0.5 s doubling, for\n"
    "                             at most this long (default 60)\n"
    "  --alert-status STATUS      fire when the group's status is STATUS or worse\n"
    "                             (WARN, REWIND, STALL, STOP, ERR)\n"
    "  --alert-lag N              fire when the group's total lag is above N\n"
    "  --alert-lag-seconds S      fire when its time lag is above S seconds\n"
    "                             (any of the three that is given; none: WARN)\n"
    "  --alert-for SECONDS        the condition must hold that long, evaluation\n"
    "                             after evaluation, before the alert fires\n"
    "                             (default 60)\n"
    "  --alert-rate-limit SECONDS at most one notification per group per SECONDS;\n"
    "                             the next one counts those held back (default 300)\n"
    "  Rules per group pattern, and all of the above, can be given in the --config\n"
    "  file: lag.webhook.url, lag.webhook.format, lag.alert.for, ...,\n"
    "  lag.alert.NAME.match = REGEX with lag.alert.NAME.status, .lag, .lag-seconds,\n"
    "  .for, .rate-limit (see docs/operations.md, \"Alerts\"); options win over the\n"
    "  file's defaults. A bad URL or rule exits 78.\n"
    "\n"
    "Exit codes: 0 done (whatever the status), 64 usage, 69 broker unreachable\n"
    "at start-up, 78 the group or the -t topic does not exist, an ACL refuses\n"
    "the group, or a bad -X property, --config file, --listen address, webhook\n"
    "URL or alert rule, 1 other failure. With --all-groups, a cluster that stops\n"
    "answering later is ballast_lag_up 0, not an exit.\n";

/* ---- command line -------------------------------------------------------- */

/* Compiles @p v into @p f. @returns 0, or EX_USAGE after printing why. */
static int set_filter(lag_filter_t *f, const char *option, const char *v)
{
    char why[256];
    int err;

    if (f->set) {
        regfree(&f->re);
        f->set = false;
    }
    if ((err = regcomp(&f->re, v, REG_EXTENDED | REG_NOSUB))) {
        regerror(err, &f->re, why, sizeof(why));
        cli_error("%s: not a regular expression: \"%s\": %s", option, v, why);
        return EX_USAGE;
    }
    f->source = v;
    f->set = true;
    return 0;
}

static void free_opts(lag_opts_t *o)
{
    lag_filter_t *filters[] = {&o->include, &o->exclude, &o->include_topic, &o->exclude_topic};

    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        if (filters[i]->set)
            regfree(&filters[i]->re);
    bl_words_free(o->on_change);
    alert_conf_free(&o->alert);
    lag_clusters_free(o);
    free(o->props);
}

/* The options of --all-groups: a filter each. */
static const struct {
    const char *name;
    size_t offset;
} filter_options[] = {
    {"--include", offsetof(lag_opts_t, include)},
    {"--exclude", offsetof(lag_opts_t, exclude)},
    {"--include-topic", offsetof(lag_opts_t, include_topic)},
    {"--exclude-topic", offsetof(lag_opts_t, exclude_topic)},
};

/* Parses a filter option at argv[*i]. @returns 1 when it was one, 0 when
 * not, or EX_USAGE. */
static int filter_option(int argc, char **argv, int *i, bool *missing, lag_opts_t *o)
{
    for (size_t k = 0; k < sizeof(filter_options) / sizeof(filter_options[0]); k++) {
        const char *v = cli_opt_value(argc, argv, i, filter_options[k].name, NULL, missing);
        if (v) {
            int rc = set_filter((lag_filter_t *)((char *)o + filter_options[k].offset),
                                filter_options[k].name, v);
            return rc ? rc : 1;
        }
        if (*missing)
            return 0;
    }
    return 0;
}

/* Checks how the options combine. @returns 0 or EX_USAGE after printing why. */
static int check_combination(const lag_opts_t *o)
{
    if (o->nclusters) {
        if (!o->all_groups || o->cluster_name || o->alert.nurls) {
            cli_error("the clusters of --config (lag.cluster.NAME.*) go with --all-groups, "
                      "without %s", o->all_groups && o->cluster_name ? "--cluster-name"
                                    : o->all_groups ? "alerts (not supported yet)"
                                                    : "-g");
            return EX_USAGE;
        }
    } else if (!o->bootstrap || !*o->bootstrap) {
        cli_error("lag needs -b BOOTSTRAP or --config FILE (see ballast lag --help)");
        return EX_USAGE;
    }
    if (o->all_groups) {
        if (o->group || o->topic) {
            cli_error("--all-groups watches every group: it takes no %s (use --include%s)",
                      o->group ? "-g" : "-t", o->group ? "" : "-topic");
            return EX_USAGE;
        }
        if (o->on_change) {
            cli_error("--on-change watches one group's status: it does not go with "
                      "--all-groups (use --webhook, or alert on ballast_lag_group_status)");
            return EX_USAGE;
        }
        return 0;
    }
    if (o->include.set || o->exclude.set || o->include_topic.set || o->exclude_topic.set ||
        o->cluster_name) {
        cli_error("--include, --exclude, --include-topic, --exclude-topic and --cluster-name "
                  "go with --all-groups");
        return EX_USAGE;
    }
    if (!o->group || !*o->group) {
        cli_error("lag needs -g GROUP, or --all-groups (see ballast lag --help)");
        return EX_USAGE;
    }
    if (o->topic && !*o->topic) {
        cli_error("-t needs a topic name");
        return EX_USAGE;
    }
    return 0;
}

/* @returns 0, -1 for --help, or EX_USAGE after printing why. */
static int parse_lag_args(int argc, char **argv, lag_opts_t *o)
{
    char errbuf[512];
    const char *v;
    bool json = false, prom = false, missing = false;
    int rc;
    int64_t n;

    memset(o, 0, sizeof(*o));
    alert_conf_init(&o->alert);
    o->window = 10;
    o->th.warn_lag = -1;
    o->th.warn_lag_seconds = -1;
    o->timeout_ms = 10000;
    if (!(o->props = cli_props_new(argc)))
        return EX_SOFTWARE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a))
            return -1;
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--all-groups")) {
            o->all_groups = true;
        } else if ((rc = filter_option(argc, argv, &i, &missing, o))) {
            if (rc != 1)
                return rc;
        } else if ((v = cli_opt_value(argc, argv, &i, "--cluster-name", NULL, &missing))) {
            o->cluster_name = v;
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
            if (!bl_parse_double(v, 0.1, &o->watch_s)) {
                cli_error("--watch needs a number of seconds >= 0.1, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--window", NULL, &missing))) {
            if (!bl_parse_int64(v, 1, 100000, &n)) {
                cli_error("--window needs a whole number from 1 to 100000, got \"%s\"", v);
                return EX_USAGE;
            }
            o->window = (size_t)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--warn-lag", NULL, &missing))) {
            if (!bl_parse_int64(v, 0, INT64_MAX, &o->th.warn_lag)) {
                cli_error("--warn-lag needs a whole number of messages >= 0, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--warn-lag-seconds", NULL, &missing))) {
            if (!bl_parse_double(v, 0, &o->th.warn_lag_seconds)) {
                cli_error("--warn-lag-seconds needs a number of seconds >= 0, got \"%s\"", v);
                return EX_USAGE;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--lag-seconds-method", NULL, &missing))) {
            if (strcmp(v, "interpolated") && strcmp(v, "timestamp")) {
                cli_error("--lag-seconds-method needs interpolated or timestamp, got \"%s\"", v);
                return EX_USAGE;
            }
            o->prefer_timestamps = !strcmp(v, "timestamp");
        } else if ((v = cli_opt_value(argc, argv, &i, "--on-change", NULL, &missing))) {
            bl_words_free(o->on_change);
            o->on_change = NULL;
            if (bl_words_split(v, &o->on_change, errbuf, sizeof(errbuf))) {
                cli_error("--on-change: %s", errbuf);
                return EX_USAGE;
            }
        } else if ((rc = alert_option(argc, argv, &i, &missing, &o->alert))) {
            if (rc != 1)
                return rc;
        } else if ((rc = cli_client_option(argc, argv, &i, &missing, &o->timeout_ms, o->props,
                                           &o->nprops))) {
            if (rc != 1)
                return rc;
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
    if (!o->bootstrap)
        o->bootstrap = cli_props_get(o->props, o->nprops, "bootstrap.servers");
    if ((rc = lag_clusters_read(o)))
        return rc;
    if ((rc = check_combination(o)) || (rc = alert_conf_finish(&o->alert)))
        return rc;
    if (json && prom) {
        cli_error("--json and --prometheus exclude each other");
        return EX_USAGE;
    }
    o->format = json ? OUT_JSON : prom ? OUT_PROMETHEUS : OUT_TABLE;
    if (o->nclusters > 1 && prom && !o->listen) {
        cli_error("--prometheus on stdout takes one cluster; use --listen for several");
        return EX_USAGE;
    }
    /* With --listen the Prometheus text goes over HTTP, not to stdout. */
    o->print = !(o->listen && o->format == OUT_PROMETHEUS);
    if (o->listen && o->watch_s == 0)
        o->watch_s = 10;
    return 0;
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

/* Sleeps @p seconds, in steps of 100 ms, so that a stop signal is prompt. */
static void sleep_interval(double seconds)
{
    int64_t until = bl_wall_ms() + (int64_t)(seconds * 1000), left;

    while (!cli_stop_requested && (left = until - bl_wall_ms()) > 0)
        bl_sleep_ms(left > 100 ? 100 : left);
}

/* Judges the group's alert on the latest evaluation. */
static void evaluate_alerts(monitor_t *m)
{
    alert_reading_t r = {m->o->group, m->status, lag_total(m), -1};

    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].ok && m->parts[i].lag_seconds > r.max_lag_seconds)
            r.max_lag_seconds = m->parts[i].lag_seconds;
    alerts_evaluate(m->alerts, &r, 1, m->eval_ms);
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
            lag_monitor_free(&m);
            return EX_CONFIG;
        }
        fprintf(stderr, "ballast: lag metrics listening on %s (http://%s/metrics)\n",
                http_server_address(http), http_server_address(http));
    }
    if (o->alert.nurls &&
        !(m.alerts = alerts_start(&o->alert, o->bootstrap, errbuf, sizeof(errbuf)))) {
        cli_error("alerts: %s", errbuf);
        http_server_stop(http);
        lag_monitor_free(&m);
        return EX_SOFTWARE;
    }
    while (!cli_stop_requested) {
        char *prom;
        int mrc = lag_measure(&m, errbuf, sizeof(errbuf));
        if (mrc && (!m.evaluations || mrc == EX_CONFIG || mrc == EX_SOFTWARE)) {
            /* Unreachable at start-up, or a problem no retry will fix. */
            cli_error("%s", errbuf);
            rc = mrc;
            break;
        }
        m.eval_ms = bl_wall_ms();
        m.evaluations++;
        lag_judge(&m);
        if (m.evaluations == 1 && !m.nparts && !o->topic)
            cli_error("group %s has no committed offsets this principal may see and its "
                      "members hold no partitions (give -t TOPIC to see a topic's lag "
                      "anyway)", o->group);
        if (m.alerts)
            evaluate_alerts(&m);
        /* Rendered once, for stdout and for the /metrics endpoint. */
        prom = http || (o->print && o->format == OUT_PROMETHEUS) ? lag_render_prometheus(&m)
                                                                 : NULL;
        if (o->print) {
            if (o->format == OUT_JSON)
                lag_print_json(&m);
            else if (o->format == OUT_PROMETHEUS) {
                if (prom)
                    fputs(prom, stdout);
            } else {
                lag_print_table(&m, colour, colour && o->watch_s > 0);
                if (!colour && o->watch_s > 0)
                    putchar('\n');
            }
            if (fflush(stdout) == EOF || ferror(stdout)) {
                free(prom);
                break; /* the reader went away (e.g. `| head`) */
            }
        }
        pthread_mutex_lock(&m.mtx);
        free(m.prom);
        m.prom = prom;
        pthread_mutex_unlock(&m.mtx);
        /* The first evaluation alerts unless all is well; later ones on
         * every change of the group's status. */
        if (o->on_change &&
            (m.have_status ? m.status != m.previous : m.status != BL_LAG_OK))
            lag_run_on_change(&m, m.have_status ? bl_lag_status_name(m.previous) : "");
        m.previous = m.status;
        m.have_status = true;
        lag_reap_children(&m, false, 0);
        if (o->watch_s <= 0)
            break;
        sleep_interval(o->watch_s);
    }
    http_server_stop(http);
    alerts_stop(m.alerts);
    lag_reap_children(&m, true, bl_wall_ms() + 10000);
    lag_monitor_free(&m);
    return rc;
}

int cmd_lag(int argc, char **argv)
{
    lag_opts_t o;
    int rc = parse_lag_args(argc, argv, &o);

    if (rc) {
        if (rc < 0)
            fputs(lag_usage, stdout);
        free_opts(&o);
        return rc < 0 ? 0 : rc;
    }
    if ((rc = cli_check_props(o.props, o.nprops))) {
        free_opts(&o);
        return rc;
    }
    cli_catch_stop_signals();
    rc = !o.all_groups ? run_monitor(&o) : o.nclusters ? lag_clusters_run(&o) : lag_cluster_run(&o);
    free_opts(&o);
    return rc;
}

