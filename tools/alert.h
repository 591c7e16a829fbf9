/*
 * alert.h - `ballast lag`'s alerts: rules per group pattern, when an alert
 * fires and resolves, the rate limit per group, and the notifications sent
 * to the webhooks (webhook.h).
 *
 * A rule holds a condition on a group's evaluation - its status at least
 * STATUS, its total lag above N messages, or its time lag above S seconds
 * (any of those given; with none, a status of WARN or worse) - and:
 *   for         how long the condition must hold, evaluation after
 *               evaluation, before the alert fires (as Prometheus' `for`);
 *               one evaluation without it starts the count again.
 *   rate-limit  at most one notification per group per this many seconds;
 *               what falls within is counted, and the next notification
 *               says how many were suppressed. When the group's state at the
 *               end of the interval differs from the last one notified, it
 *               is sent then, so that the channel never stays on a stale
 *               state.
 * An alert that fired resolves (and says so) when its condition no longer
 * holds. A group's rule is the first, in name order, of the config file's
 * rules whose `match` (POSIX extended, unanchored) matches its name, and
 * whose `cluster`, when it has one (the same kind of expression), matches
 * the name of the group's cluster; else the default rule (the --alert-*
 * options, or lag.alert.* keys).
 *
 * With several clusters, every rule applies to each cluster's groups (a
 * rule with a `cluster` to those of the clusters it matches), and each
 * cluster's groups have their own states: a group of the same name in
 * two clusters is two alerts, each notification naming its cluster. One
 * set of webhooks (one thread per URL) carries every cluster's
 * notifications; their counters (sent, attempts, failures) are kept per
 * cluster, by the cluster of the notification.
 *
 * The state machine (alert_step()) is pure: the caller gives the clock.
 */
#ifndef BALLAST_ALERT_H
#define BALLAST_ALERT_H

#include "lag.h"
#include "webhook.h"

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct alert_rule {
    char *name;            /* "default", or the config file's NAME */
    char *match_source;    /* NULL: every group (the default rule) */
    regex_t match;
    char *cluster_source;  /* NULL: every cluster's groups */
    regex_t cluster;
    int status;            /* fire at this status or worse; -1: not a condition */
    int64_t lag;           /* fire above this total lag; -1: not a condition */
    double lag_seconds;    /* fire above this time lag; < 0: not a condition */
    double for_s;
    double rate_limit_s;
} alert_rule_t;

typedef enum alert_format { ALERT_JSON, ALERT_SLACK } alert_format_t;

/* Everything the command line and the config file say about alerts. */
typedef struct alert_conf {
    alert_rule_t deflt;    /* the default rule */
    alert_rule_t *rules;   /* the config file's, sorted by name */
    size_t nrules;
    const char **urls;     /* --webhook, then lag.webhook.url's */
    size_t nurls;
    char *config_urls;     /* lag.webhook.url's copy, that urls point into */
    alert_format_t format;
    webhook_opts_t webhook;
    bool any_option;       /* an --alert-* or --webhook-* option was given */
    unsigned set_by_cli;   /* what the command line set, which the file does not override */
} alert_conf_t;

/** Sets the defaults (no webhook: alerts off). */
void alert_conf_init(alert_conf_t *c);
/** Frees what @p c holds. */
void alert_conf_free(alert_conf_t *c);
/** Takes argv[*i] when it is an alert option (--webhook, --webhook-format,
 *  --webhook-timeout, --webhook-retry-for, --alert-status, --alert-lag,
 *  --alert-lag-seconds, --alert-for, --alert-rate-limit). @returns 1 when
 *  it did, 0 when it is another argument (or *missing was set, see
 *  cli_opt_value()), or EX_USAGE/EX_CONFIG after printing why. */
int alert_option(int argc, char **argv, int *i, bool *missing, alert_conf_t *c);
/** Reads the config file's lag.* keys (through cli_config_each()) under
 *  what the command line set, and checks the result. @returns 0, or
 *  EX_CONFIG after printing one line. */
int alert_conf_finish(alert_conf_t *c);

/* ---- the state of one group ---------------------------------------------- */

typedef enum alert_kind { ALERT_NONE, ALERT_FIRING, ALERT_RESOLVED } alert_kind_t;

typedef struct alert_state {
    char *group;
    const alert_rule_t *rule;
    int64_t since_ms;         /* the condition holds since; 0: it does not */
    int64_t fired_ms;         /* when the alert fired (0: it is not firing) */
    bool firing;
    alert_kind_t sent;        /* the last notification's kind */
    int64_t sent_ms;          /* when it was sent; 0: never */
    unsigned long suppressed; /* notifications held back since */
    bool seen;                /* in the latest evaluation */
} alert_state_t;

/** The next step of @p s, whose condition holds (@p cond) or not at
 *  @p now_ms. @returns the notification to send now (ALERT_NONE: none), with
 *  the number suppressed before it in *suppressed. */
alert_kind_t alert_step(alert_state_t *s, bool cond, int64_t now_ms, unsigned long *suppressed);

/* ---- the alerts of a watcher --------------------------------------------- */

/* One group's evaluation. */
typedef struct alert_reading {
    const char *group;
    bl_lag_status_t status;
    int64_t total_lag;
    double max_lag_seconds; /* < 0: unknown */
} alert_reading_t;

typedef struct alerts alerts_t;

/* Threads: alerts_evaluate() of one cluster is called from one thread
 * (that cluster's evaluation loop; each cluster may have its own);
 * alerts_stop() once they are all done; alerts_prometheus*() from any
 * thread, while they run (they read counters under the alerts' lock and
 * the webhooks'). */

/** Starts the webhooks of @p c (which must outlive the result), shared by
 *  the @p n clusters named @p clusters (the names, not copied, outlive the
 *  result; the array need not), numbered 0 to n - 1 in what follows; NULL
 *  with a reason on failure. */
alerts_t *alerts_start(const alert_conf_t *c, const char *const *clusters, size_t n,
                       char *errbuf, size_t errsize);
/** Judges one evaluation of cluster @p cluster: @p n groups (those missing
 *  from it, but alerted on before, are judged as not meeting their
 *  condition) and queues the notifications due. */
void alerts_evaluate(alerts_t *a, size_t cluster, const alert_reading_t *r, size_t n,
                     int64_t now_ms);

/* The alert metric families: each written once, with every cluster's
 * samples (alerts_prometheus_family()). */
#define ALERT_PROM_FAMILIES 6
/** Writes family @p family (0 to ALERT_PROM_FAMILIES - 1) of cluster
 *  @p cluster: its HELP and TYPE first when @p header, then its samples,
 *  each with the label @p label_name = @p label_value first. */
void alerts_prometheus_family(FILE *fp, alerts_t *a, int family, size_t cluster,
                              const char *label_name, const char *label_value, bool header);
/** Writes every alert family of cluster 0 (one cluster), headers included,
 *  each sample with the label @p label_name = @p label_value. */
void alerts_prometheus(FILE *fp, alerts_t *a, const char *label_name, const char *label_value);
/** Gives the notifications still queued --webhook-timeout, at most 5 s, to
 *  go out (a try still in flight then is cut short), stops the webhooks
 *  and frees @p a. NULL is a no-op. */
void alerts_stop(alerts_t *a);

#endif
