/*
 * lagmon.h - the parts of `ballast lag`: the command and its loop
 * (cmd_lag.c), one evaluation of the group (lag_measure.c), its output
 * (lag_output.c) and the --on-change command (lag_alert.c). How lag is read
 * and judged is shared with the library and the demo (shared/lag.h).
 */
#ifndef BALLAST_LAGMON_H
#define BALLAST_LAGMON_H

#include "cli.h"
#include "lag.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum out_format { OUT_TABLE, OUT_JSON, OUT_PROMETHEUS } out_format_t;

typedef struct lag_opts {
    const char *bootstrap, *group, *topic, *listen;
    out_format_t format;
    bool print; /* whether evaluations are printed on stdout */
    double watch_s; /* 0: evaluate once */
    char **on_change; /* argv, NULL-terminated; NULL when unset */
    size_t window;
    bl_lag_thresholds_t th;
    int timeout_ms;
    const char **props; /* "key=value" for librdkafka */
    size_t nprops;
} lag_opts_t;

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
    pid_t *children; /* --on-change commands not yet reaped */
    size_t nchildren;
} monitor_t;

/* ---- one evaluation (lag_measure.c) --------------------------------------- */

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

#endif
