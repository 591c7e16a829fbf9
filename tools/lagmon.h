/*
 * lagmon.h - the parts of `ballast lag`: the command and its loop
 * (cmd_lag.c), one evaluation of the group (lag_measure.c), its output
 * (lag_output.c), the --on-change command (lag_alert.c), its clients
 * (lag_client.c), time lag (lag_probe.c), and the watch of every group of a cluster, --all-groups
 * (lag_cluster.c, lag_cluster_output.c), of several clusters in one process
 * (lag_clusters.c); time lag's choice of method,
 * shared by both (lag_time.c). How lag is read and judged is
 * shared with the library and the demo (shared/lag.h).
 */
#ifndef BALLAST_LAGMON_H
#define BALLAST_LAGMON_H

#include "alert.h"
#include "cli.h"
#include "http.h"
#include "lag.h"
#include "lag_history.h"

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/** Orders topic-partitions by topic, then partition: the order of every
 *  sorted partition array of the lag tools. Topics compare equal at once
 *  when they are one pointer (interned). */
static inline int lag_tp_cmp(const char *ta, int32_t pa, const char *tb, int32_t pb)
{
    int t = ta == tb ? 0 : strcmp(ta, tb);
    return t ? t : (pa > pb) - (pa < pb);
}

typedef enum out_format { OUT_TABLE, OUT_JSON, OUT_PROMETHEUS } out_format_t;

/* --include, --exclude, --include-topic, --exclude-topic: a regex each,
 * compiled once. */
typedef struct lag_filter {
    const char *source;
    regex_t re;
    bool set;
} lag_filter_t;

/* A cluster of the --config file (lag.cluster.NAME.*): its name and
 * client settings ("key=value", bootstrap.servers among them). */
typedef struct lag_cluster_conf {
    char *name;
    char **props;
    size_t nprops;
} lag_cluster_conf_t;

typedef struct lag_opts {
    const char *bootstrap, *group, *topic, *listen;
    lag_cluster_conf_t *clusters; /* --all-groups of several clusters; NULL: -b's alone */
    size_t nclusters;
    bool all_groups;          /* --all-groups: every group of the cluster */
    const char *cluster_name; /* the `cluster` label (default: bootstrap) */
    lag_filter_t include, exclude, include_topic, exclude_topic;
    out_format_t format;
    bool print; /* whether evaluations are printed on stdout */
    double watch_s; /* 0: evaluate once */
    char **on_change; /* argv, NULL-terminated; NULL when unset */
    alert_conf_t alert; /* rules and webhooks; alerts are off without a webhook */
    size_t window;
    bl_lag_thresholds_t th;
    bool prefer_timestamps; /* --lag-seconds-method timestamp */
    int timeout_ms;
    const char **props; /* "key=value" for librdkafka */
    size_t nprops;
} lag_opts_t;

/* A partition's log-end history. */
typedef struct lag_hist {
    const char *topic; /* not copied: the caller's for the whole run */
    int32_t partition;
    bl_lag_history_t *h; /* NULL: none (out of memory) */
} lag_hist_t;

/* Every watched partition's history, sorted by topic and partition. */
typedef struct lag_hist_table {
    lag_hist_t *e;
    size_t n;
} lag_hist_table_t;

/* One partition: its window and its latest measurement. */
typedef struct part_state {
    char *topic;
    int32_t partition;
    bl_lag_window_t window;
    bl_lag_status_t status;
    bool ok;
    char error[200];
    int64_t committed, low, high, lag;
    double lag_seconds; /* < 0: unknown */
    bl_lag_time_method_t lag_seconds_method;
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
    bl_lag_status_t status, previous; /* the group's, now and at the last evaluation */
    bool have_status;
    unsigned long evaluations;
    int64_t eval_ms; /* wall clock of the latest evaluation */
    pthread_mutex_t mtx; /* guards prom, read by the HTTP thread */
    char *prom;
    lag_hist_table_t hist; /* the partitions' log-end histories */
    pid_t *children; /* --on-change commands not yet reaped */
    size_t nchildren;
    alerts_t *alerts; /* NULL: no webhook */
} monitor_t;

/* ---- clients (lag_client.c) ----------------------------------------------- */

/** A fresh client with the user's -X properties. @p probe: tuned to fetch
 *  one message per partition. @returns NULL with a reason on failure. */
rd_kafka_t *lag_client_new(const lag_opts_t *o, bool probe, char *errbuf, size_t errsize);
/** Whether @p rk (a client from lag_client_new()) reaches the cluster: 0;
 *  EX_UNAVAILABLE, or EX_CONFIG when the broker refused our TLS or
 *  credentials, with a one-line reason. */
int lag_reach(const lag_opts_t *o, rd_kafka_t *rk, char *errbuf, size_t errsize);

/* ---- one evaluation (lag_measure.c) --------------------------------------- */

/** Forgets what @p g held (keeps g->unsupported). */
void lag_view_clear(group_view_t *g);
/** Reads one group's DescribeConsumerGroups answer into @p g, which holds
 *  nothing yet (new, or lag_view_clear()ed).
 *  @returns 0 (an unknown group is g->not_found, a broker that cannot
 *  describe is g->unsupported), or the group's error with a reason. */
rd_kafka_resp_err_t lag_view_read(group_view_t *g, const rd_kafka_ConsumerGroupDescription_t *d,
                                  char *errbuf, size_t errsize);
/** The member of @p g that holds @p topic [@p partition]; -1: none. */
long lag_view_holder(const group_view_t *g, const char *topic, int32_t partition);

/** Measures every partition once. @returns 0; or, when the broker cannot be
 *  reached or the group's offsets cannot be read at all, EX_UNAVAILABLE,
 *  EX_CONFIG, EX_SOFTWARE or 1 with a reason (every known partition then
 *  holds an ERR sample). */
int lag_measure(monitor_t *m, char *errbuf, size_t errsize);
/** Adds the evaluation's samples to the windows and judges them: each
 *  partition's status, and the group's (the worst). */
void lag_judge(monitor_t *m);
/** Frees what the monitor holds (not @p m itself). */
void lag_monitor_free(monitor_t *m);

/* ---- output (lag_output.c) -------------------------------------------------- */

/** The sum of the lag of the partitions that could be read. */
int64_t lag_total(const monitor_t *m);
/** Prints the table of the latest evaluation (and the group's members);
 *  @p redraw clears the terminal first. */
void lag_print_table(const monitor_t *m, bool colour, bool redraw);
/** Prints one JSON line per partition. */
void lag_print_json(const monitor_t *m);
/** The Prometheus text of the latest evaluation. Caller frees. */
char *lag_render_prometheus(const monitor_t *m);

/* ---- --on-change (lag_alert.c) --------------------------------------------- */

/** Starts the --on-change command, without a shell, with the group's status
 *  in its environment; @p previous is the status before ("" at first). */
void lag_run_on_change(monitor_t *m, const char *previous);
/** Reaps the commands that ended; with @p block, waits for each until
 *  @p deadline_ms (wall clock). */
void lag_reap_children(monitor_t *m, bool block, int64_t deadline_ms);

/* ---- time lag (lag_probe.c) ----------------------------------------------- */

/** One message whose age lag_probe_ages() reads. */
typedef struct lag_probe {
    const char *topic;  /* not copied */
    int32_t partition;
    int64_t offset;     /* the committed offset (or the low watermark, past it) */
    double lag_seconds; /* out: the age of the first message at or after
                           offset; 0 when only control records are left;
                           -1 unknown */
} lag_probe_t;

/** Reads the ages of @p n messages with one group-less consumer, until
 *  each is known or @p deadline_ms (wall clock) passes. */
void lag_probe_ages(const lag_opts_t *o, lag_probe_t *probes, size_t n, int64_t deadline_ms);

/* ---- time lag's method (lag_time.c) --------------------------------------- */

/* A partition's log end at this evaluation (high < 0: unreadable). */
typedef struct lag_log_end {
    const char *topic;
    int32_t partition;
    int64_t high;
} lag_log_end_t;

/** Makes @p t the histories of @p ends (sorted by topic and partition, each
 *  once; their topic strings must outlive @p t): a partition's history is
 *  kept, a new one starts, one not in @p ends is forgotten; then records
 *  each log end at @p now_ms (bl_now_ms()). @returns 0, or -1 when out of
 *  memory (@p t unchanged). */
int lag_hist_update(lag_hist_table_t *t, const lag_log_end_t *ends, size_t n, int64_t now_ms);
/** Frees the histories of @p t (not @p t itself). */
void lag_hist_free(lag_hist_table_t *t);

/** One group-partition whose time lag is wanted. */
typedef struct lag_time_ask {
    const char *topic;
    int32_t partition;
    int64_t committed, low;
    double *seconds;               /* out */
    bl_lag_time_method_t *method;  /* out */
} lag_time_ask_t;

/** Sets the time lag of @p n asks (lagging, committed ones) by
 *  bl_lag_time_choose(): from @p t's histories, reading message timestamps
 *  (lag_probe_ages(), until @p deadline_ms, wall clock) only for the asks
 *  whose choice needs them. */
void lag_time_of(const lag_opts_t *o, const lag_hist_table_t *t, lag_time_ask_t *asks, size_t n,
                 int64_t deadline_ms);

/* ---- every group of a cluster (lag_cluster.c, lag_cluster_output.c) ------- */

/* One partition of a watched group. */
typedef struct cpart {
    const char *topic; /* interned: the cluster's topics own it */
    int32_t partition;
    long member;       /* index into the group's view.members; -1: none holds it */
    bool ok;
    char *error;       /* why not ok (NULL when ok) */
    bl_lag_status_t status;
    int64_t committed, low, high, lag;
    double lag_seconds; /* < 0: unknown */
    bl_lag_time_method_t lag_seconds_method;
    bl_lag_window_t window;
} cpart_t;

/* A watched group, at the latest evaluation. */
typedef struct cgroup {
    char *name;
    group_view_t view;
    cpart_t *parts; /* sorted by topic, partition */
    size_t nparts, cap;
    bool ok;         /* its offsets could be read */
    bool vanished;   /* listed, then gone before its offsets were read */
    rd_kafka_resp_err_t err; /* why not ok */
    char error[200];
    bl_lag_status_t status;
    int64_t total_lag;
    double max_lag_seconds; /* < 0: unknown */
    bl_lag_time_method_t max_lag_seconds_method;
} cgroup_t;

/* What went wrong in an evaluation, counted by kind. */
typedef enum lag_error_kind {
    LAG_ERR_UNREACHABLE, /* the cluster could not be listed */
    LAG_ERR_VANISHED,    /* a group deleted between listing and reading it */
    LAG_ERR_DENIED,      /* a listed group whose offsets we may not read */
    LAG_ERR_OFFSETS,     /* a group's offsets could not be read otherwise */
    LAG_ERR_DESCRIBE,    /* the groups could not be described */
    LAG_ERR_WATERMARKS,  /* a partition's watermarks could not be read */
    LAG_ERR_KIND_COUNT
} lag_error_kind_t;

/* The groups of one evaluation, shared by the cluster and the scrapes
 * still rendering them: read-only once published; the last reference
 * frees them. */
typedef struct lag_groups {
    cgroup_t *g; /* sorted by name */
    size_t n;
    atomic_uint refs;
} lag_groups_t;

/** Frees what @p g holds (not @p g itself) (lag_groups.c). */
void lag_group_free(cgroup_t *g);
/** Another reference to @p gs. @returns it. */
lag_groups_t *lag_groups_ref(lag_groups_t *gs);
/** Drops a reference to @p gs (NULL: none); the last one frees it and its
 *  groups. Any thread. */
void lag_groups_release(lag_groups_t *gs);

/** Writes family @p family (0 to ALERT_PROM_FAMILIES - 1) of the extra
 *  /metrics families of cluster number @p index of @p arg, any thread,
 *  labelled cluster = @p name; its HELP and TYPE first when @p header. */
typedef void lag_prom_extra_fn(FILE *fp, void *arg, size_t index, int family, const char *name,
                               bool header);

typedef struct cluster {
    const lag_opts_t *o;
    const char *name;    /* the `cluster` label */
    rd_kafka_t *rk;      /* the admin client, for the whole run */
    bool cannot_describe; /* the brokers cannot describe groups: not asked */
    pthread_mutex_t mtx; /* guards what follows: the HTTP thread reads it */
    lag_groups_t *published; /* the latest evaluation's groups (NULL before one) */
    cgroup_t *groups;    /* published->g: sorted by name */
    size_t ngroups;      /* published->n */
    char **topics;       /* every topic seen, sorted */
    size_t ntopics, topics_cap;
    bool up;             /* the latest evaluation could list the groups */
    unsigned long evaluations;
    unsigned long errors[LAG_ERR_KIND_COUNT];
    int64_t eval_ms;     /* wall clock at the end of the latest evaluation */
    double eval_seconds; /* how long it took */
    alerts_t *alerts;    /* NULL: no webhook; else shared by every cluster */
    size_t alert_index;  /* this cluster's number in alerts */
    lag_prom_extra_fn *prom_extra; /* /metrics' last families (the alerts'), or NULL */
    lag_hist_table_t hist; /* log-end histories: the evaluation's alone, not locked */
} cluster_t;

/** The group named @p name in @p g (@p n of them, sorted by name); NULL:
 *  none. */
cgroup_t *lag_group_find(const cgroup_t *g, size_t n, const char *name);
/* ---- JSON shared by both modes (lag_output.c) ----------------------------- */

/* The HELP of kafka_consumergroup_lag_seconds, in both modes. */
#define LAG_SECONDS_HELP                                                                     \
    "Age of the oldest unconsumed message: when the log end passed the committed offset, "  \
    "from the partition's log-end history (by the message's timestamp only before any "     \
    "history, or with --lag-seconds-method timestamp); 0 when caught up."

struct json_t;
/** @p v as a JSON integer, or null when not @p known or negative. */
struct json_t *lag_json_int(int64_t v, bool known);
/** @p v seconds, to the millisecond, or null when not @p known or negative. */
struct json_t *lag_json_seconds(double v, bool known);
/** @p s, or null when NULL or empty. */
struct json_t *lag_json_text(const char *s);
/** Sets a partition's reading on @p o: topic, partition, committed, high_watermark,
 *  low_watermark, lag, lag_seconds (null where not @p ok), lag_seconds_method
 *  ("none" where not @p ok) and status. */
void lag_json_put_reading(struct json_t *o, const char *topic, int32_t partition, bool ok,
                          int64_t committed, int64_t high, int64_t low, int64_t lag,
                          double lag_seconds, bl_lag_time_method_t method,
                          bl_lag_status_t status);
/** Sets who holds a partition on @p o: consumer_id, client_id and host of @p mb
 *  (null when none holds it). */
void lag_json_put_holder(struct json_t *o, const member_t *mb);

/** Writes the Prometheus text of @p c on @p fp (lag_cluster_prom.c). Call
 *  with c->mtx held. */
void lag_cluster_write_prometheus(FILE *fp, const cluster_t *c);
/** Sets @p r to stream the Prometheus text of the latest evaluation of
 *  each of @p n clusters, a piece at a time, each family once with every
 *  cluster's samples, without the locks (the groups it reads are kept for
 *  it). Takes each cluster's mtx in turn: call without them. @returns
 *  false when out of memory. */
bool lag_clusters_stream_prometheus(http_response_t *r, cluster_t *const *cs, size_t n);

/* The clusters one process watches, each in its own loop. */
typedef struct lag_fleet {
    cluster_t **c;
    size_t n;
} lag_fleet_t;

/** Serves /, /metrics, /groups, /groups/NAME (/groups/CLUSTER/NAME with
 *  several clusters) and /healthz for a lag_fleet_t. */
http_route_fn lag_cluster_routes;
/** What an evaluation prints without --listen (the table of groups, JSON
 *  lines or Prometheus text). Call with c->mtx held. */
void lag_cluster_print(const cluster_t *c);

/** Makes @p c the cluster of @p o (its client, alerts). An unreachable
 *  cluster fails with @p must_reach, else starts down. @returns 0, or the
 *  exit code after printing why (nothing to free then). */
int lag_cluster_open(cluster_t *c, const lag_opts_t *o, bool must_reach);
/** Evaluates @p c every --watch seconds until a stop signal (once without
 *  it); @p print_mtx, when several clusters print, serializes stdout.
 *  @returns 0, or an exit code after printing why. */
int lag_cluster_loop(cluster_t *c, pthread_mutex_t *print_mtx);
/** Frees what lag_cluster_open() made (not the alerts). */
void lag_cluster_close(cluster_t *c);
/** Starts the alerts of @p conf, when it has a webhook, for the @p n open
 *  clusters @p cs (one set of webhooks for all), and gives each its part
 *  (lag_cluster_alerts.c). @returns 0 with *out the alerts (NULL: no
 *  webhook; alerts_stop() them once the loops and the server have
 *  stopped), or the exit code after printing why. */
int lag_cluster_alerts_start(cluster_t *const *cs, size_t n, const alert_conf_t *conf,
                             alerts_t **out);

/** Watches every consumer group of the cluster (--all-groups) until a stop
 *  signal, or once without --watch/--listen. @returns
 *  the exit code: 0, EX_UNAVAILABLE when the cluster cannot be reached at
 *  start, EX_CONFIG. */
int lag_cluster_run(const lag_opts_t *o);

/* ---- several clusters (lag_clusters.c) ------------------------------------ */

/** Reads the lag.cluster.NAME.* keys of the --config file into o->clusters.
 *  @returns 0, or EX_CONFIG / EX_SOFTWARE after printing why. */
int lag_clusters_read(lag_opts_t *o);
/** Frees o->clusters. */
void lag_clusters_free(lag_opts_t *o);
/** Watches each cluster of o->clusters in a thread of its own, all served
 *  by one --listen server. @returns the exit code. */
int lag_clusters_run(const lag_opts_t *o);

#endif
