/*
 * alert_notify.c - the alerts of a watcher: each cluster's groups' state
 * (when an alert fires and resolves, the rate limit), the notifications'
 * bodies (JSON, or Slack's {"text": ...}), sent through one set of
 * webhooks for every cluster, and their metrics per cluster. See alert.h.
 */
#include "alert.h"

#include "cli.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a stop gives the notifications still queued, at most: a
 * supervisor's stop must not wait on a dead receiver. */
#define STOP_GRACE_MAX_S 5.0

/* One cluster's alerts: only its evaluation loop touches its states. */
typedef struct alert_cluster {
    const char *name;
    alert_state_t *states; /* one per group judged and not forgotten, sorted by group */
    size_t nstates, states_cap;
    unsigned long firing, fired, resolved, suppressed; /* under alerts.mtx */
} alert_cluster_t;

struct alerts {
    const alert_conf_t *c;
    webhook_t **hooks;     /* shared by every cluster; a body's tag is its cluster */
    size_t nhooks;
    alert_cluster_t *clusters;
    size_t nclusters;
    pthread_mutex_t mtx;   /* guards the counters: the HTTP thread reads them */
};

/* ---- one group ---------------------------------------------------------- */

static bool rule_holds(const alert_rule_t *r, const alert_reading_t *g)
{
    return (r->status >= 0 && (int)g->status >= r->status) ||
           (r->lag >= 0 && g->total_lag > r->lag) ||
           (r->lag_seconds >= 0 && g->max_lag_seconds > r->lag_seconds);
}

static const alert_rule_t *rule_for(const alert_conf_t *c, const char *cluster,
                                    const char *group)
{
    for (size_t i = 0; i < c->nrules; i++)
        if (!regexec(&c->rules[i].match, group, 0, NULL, 0) &&
            (!c->rules[i].cluster_source ||
             !regexec(&c->rules[i].cluster, cluster, 0, NULL, 0)))
            return &c->rules[i];
    return &c->deflt;
}

/* ---- notifications -------------------------------------------------------- */

static void fmt_duration(char *out, size_t size, int64_t ms)
{
    int64_t s = ms / 1000;

    if (s < 60)
        snprintf(out, size, "%.1fs", (double)ms / 1000);
    else if (s < 3600)
        snprintf(out, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(out, size, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
}

static json_t *iso_time(int64_t ms)
{
    char buf[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return json_sprintf("%s.%03dZ", buf, (int)(ms % 1000));
}

/* The one-line summary of a notification. */
static void summary(char *out, size_t size, const char *cluster, const alert_state_t *s,
                    const alert_reading_t *g, bool gone, alert_kind_t kind,
                    unsigned long suppressed, int64_t now_ms)
{
    char dur[32], secs[48] = "", more[64] = "";

    fmt_duration(dur, sizeof(dur), now_ms - s->fired_ms);
    if (g->max_lag_seconds >= 0)
        snprintf(secs, sizeof(secs), ", %.1f s behind", g->max_lag_seconds);
    if (suppressed)
        snprintf(more, sizeof(more), " (%lu notification%s suppressed by the rate limit)",
                 suppressed, suppressed == 1 ? "" : "s");
    if (kind == ALERT_FIRING)
        snprintf(out, size, "FIRING: consumer group %s on %s is %s: lag %lld messages%s, "
                 "for %s (rule %s)%s", g->group, cluster, bl_lag_status_name(g->status),
                 (long long)g->total_lag, secs, dur, s->rule->name, more);
    else if (gone)
        snprintf(out, size, "RESOLVED: consumer group %s on %s no longer exists, after %s "
                 "(rule %s)%s", g->group, cluster, dur, s->rule->name, more);
    else
        snprintf(out, size, "RESOLVED: consumer group %s on %s is %s: lag %lld messages%s, "
                 "after %s (rule %s)%s", g->group, cluster, bl_lag_status_name(g->status),
                 (long long)g->total_lag, secs, dur, s->rule->name, more);
}

/* @p in with Slack's three control characters escaped (&, <, >: Slack
 * reads <...> as a link or mention). */
static void slack_escape(const char *in, char *out, size_t size)
{
    size_t n = 0;

    for (; *in && n + 6 < size; in++) {
        const char *e = *in == '&' ? "&amp;" : *in == '<' ? "&lt;" : *in == '>' ? "&gt;" : NULL;
        if (e) {
            memcpy(out + n, e, strlen(e));
            n += strlen(e);
        } else {
            out[n++] = *in;
        }
    }
    out[n] = '\0';
}

static char *body_of(const alerts_t *a, const char *cluster, const alert_state_t *s,
                     const alert_reading_t *g, bool gone, alert_kind_t kind,
                     unsigned long suppressed, int64_t now_ms)
{
    char text[1024], escaped[sizeof(text) * 5];
    json_t *o;
    char *body;

    summary(text, sizeof(text), cluster, s, g, gone, kind, suppressed, now_ms);
    if (a->c->format == ALERT_SLACK) {
        slack_escape(text, escaped, sizeof(escaped));
        o = json_pack("{s:s+}", "text", kind == ALERT_FIRING ? ":rotating_light: "
                                                              : ":white_check_mark: ", escaped);
    } else {
        o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:f,s:I,s:s}", "status",
                      kind == ALERT_FIRING ? "firing" : "resolved", "group", g->group,
                      "cluster", cluster, "rule", s->rule->name, "lag_status",
                      gone ? "GONE" : bl_lag_status_name(g->status), "total_lag",
                      (json_int_t)g->total_lag,
                      "max_lag_seconds",
                      g->max_lag_seconds >= 0 ? json_real(g->max_lag_seconds) : json_null(),
                      "started_at", iso_time(s->fired_ms), "at", iso_time(now_ms),
                      "duration_seconds", (double)(now_ms - s->fired_ms) / 1000.0,
                      "suppressed", (json_int_t)suppressed, "summary", text);
    }
    body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return body;
}

static void notify(alerts_t *a, size_t cluster, const alert_state_t *s,
                   const alert_reading_t *g, bool gone, alert_kind_t kind,
                   unsigned long suppressed, int64_t now_ms)
{
    alert_cluster_t *ac = &a->clusters[cluster];
    char *body = body_of(a, ac->name, s, g, gone, kind, suppressed, now_ms);

    if (!body) {
        cli_error("alert for group %s on %s: cannot build the notification (out of memory)",
                  g->group, ac->name);
        return;
    }
    for (size_t i = 0; i < a->nhooks; i++)
        webhook_post(a->hooks[i], cluster, body);
    free(body);
    pthread_mutex_lock(&a->mtx);
    if (kind == ALERT_FIRING)
        ac->fired++;
    else
        ac->resolved++;
    ac->suppressed += suppressed;
    pthread_mutex_unlock(&a->mtx);
}

/* ---- the watcher's alerts --------------------------------------------------- */

alerts_t *alerts_start(const alert_conf_t *c, const char *const *clusters, size_t n,
                       char *errbuf, size_t errsize)
{
    alerts_t *a = calloc(1, sizeof(*a));

    if (!a || !(a->hooks = calloc(c->nurls ? c->nurls : 1, sizeof(*a->hooks))) ||
        !(a->clusters = calloc(n ? n : 1, sizeof(*a->clusters)))) {
        if (a)
            free(a->hooks);
        free(a);
        snprintf(errbuf, errsize, "out of memory");
        return NULL;
    }
    a->c = c;
    for (; a->nclusters < n; a->nclusters++)
        a->clusters[a->nclusters].name = clusters[a->nclusters];
    pthread_mutex_init(&a->mtx, NULL);
    if (webhook_global_init(errbuf, errsize)) {
        alerts_stop(a);
        return NULL;
    }
    for (; a->nhooks < c->nurls; a->nhooks++)
        if (!(a->hooks[a->nhooks] = webhook_start(c->urls[a->nhooks], &c->webhook, n, errbuf,
                                                  errsize))) {
            alerts_stop(a);
            return NULL;
        }
    return a;
}

/* Where @p group is in a->states, or would go. */
static size_t state_slot(const alert_cluster_t *a, const char *group)
{
    size_t lo = 0, hi = a->nstates;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(a->states[mid].group, group) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The state of @p group, added when new (in order: the groups of an
 * evaluation come by name, so a new one is mostly the last). NULL when out
 * of memory. */
static alert_state_t *state_of(alert_cluster_t *a, const alert_conf_t *c, const char *group)
{
    size_t i = state_slot(a, group);
    alert_state_t *grown, fresh = {0};

    if (i < a->nstates && !strcmp(a->states[i].group, group))
        return &a->states[i];
    if (!(grown = bl_grow(a->states, &a->states_cap, a->nstates, sizeof(*grown), 16)))
        return NULL;
    a->states = grown;
    if (!(fresh.group = strdup(group)))
        return NULL;
    fresh.rule = rule_for(c, a->name, group);
    memmove(&grown[i + 1], &grown[i], (a->nstates - i) * sizeof(*grown));
    grown[i] = fresh;
    a->nstates++;
    return &grown[i];
}

void alerts_evaluate(alerts_t *a, size_t cluster, const alert_reading_t *r, size_t n,
                     int64_t now_ms)
{
    alert_cluster_t *ac = &a->clusters[cluster];
    unsigned long suppressed, firing = 0;
    alert_kind_t kind;
    size_t kept = 0;

    for (size_t i = 0; i < ac->nstates; i++)
        ac->states[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        alert_state_t *s = state_of(ac, a->c, r[i].group);
        if (!s)
            continue;
        s->seen = true;
        if ((kind = alert_step(s, rule_holds(s->rule, &r[i]), now_ms, &suppressed)))
            notify(a, cluster, s, &r[i], false, kind, suppressed, now_ms);
    }
    /* Groups gone from the cluster: their condition no longer holds. */
    for (size_t i = 0; i < ac->nstates; i++) {
        alert_state_t *s = &ac->states[i];
        alert_reading_t gone = {s->group, BL_LAG_OK, 0, -1};
        if (!s->seen && (kind = alert_step(s, false, now_ms, &suppressed)))
            notify(a, cluster, s, &gone, true, kind, suppressed, now_ms);
        if (s->seen || s->firing || (s->suppressed && s->sent == ALERT_FIRING)) {
            firing += s->firing;
            ac->states[kept++] = *s;
        } else {
            free(s->group);
        }
    }
    ac->nstates = kept;
    pthread_mutex_lock(&a->mtx);
    ac->firing = firing;
    pthread_mutex_unlock(&a->mtx);
}

/* ---- metrics ------------------------------------------------------------------ */

/* The families, in the order of the text: the alerts' own counters, then
 * the webhooks' (delivery_samples()). */
enum { AF_FIRING, AF_NOTIFICATIONS, AF_SUPPRESSED, AF_SENT, AF_ATTEMPTS, AF_FAILURES, AF_COUNT };
_Static_assert(AF_COUNT == ALERT_PROM_FAMILIES, "alert.h's count of the alert families");

static const struct {
    const char *name, *type, *help;
} alert_families[AF_COUNT] = {
    {"ballast_lag_alerts_firing", "gauge", "Groups whose alert is firing."},
    {"ballast_lag_alert_notifications_total", "counter",
     "Notifications made, by kind (each sent to every webhook)."},
    {"ballast_lag_alert_suppressed_total", "counter",
     "Notifications held back by the rate limit of their group."},
    {"ballast_lag_alerts_sent_total", "counter", "Notifications a webhook accepted (2xx)."},
    {"ballast_lag_alert_attempts_total", "counter",
     "HTTP requests made to the webhooks, tries again included."},
    {"ballast_lag_alert_failures_total", "counter",
     "Notifications a webhook did not accept after every try, or dropped from a full "
     "queue, by reason."},
};

static void sample(FILE *fp, const char *name, const char *label_name, const char *label_value,
                   const char *extra, unsigned long v)
{
    fprintf(fp, "%s{%s=\"", name, label_name);
    bl_prom_label(fp, label_value);
    fprintf(fp, "\"%s} %lu\n", extra, v);
}

/* The samples of the webhooks' families (AF_SENT and after). */
static void delivery_samples(FILE *fp, alerts_t *a, int family, size_t cluster,
                             const char *label_name, const char *label_value)
{
    const char *name = alert_families[family].name;
    webhook_counts_t c;
    char extra[64];

    memset(&c, 0, sizeof(c));
    for (size_t i = 0; i < a->nhooks; i++)
        webhook_add_counts(a->hooks[i], cluster, &c);
    if (family == AF_SENT) {
        sample(fp, name, label_name, label_value, "", c.sent);
    } else if (family == AF_ATTEMPTS) {
        sample(fp, name, label_name, label_value, "", c.attempts);
    } else {
        for (int r = 0; r < WEBHOOK_REASON_COUNT; r++) {
            snprintf(extra, sizeof(extra), ",reason=\"%s\"",
                     webhook_reason_name((webhook_reason_t)r));
            sample(fp, name, label_name, label_value, extra, c.failures[r]);
        }
    }
}

void alerts_prometheus_family(FILE *fp, alerts_t *a, int family, size_t cluster,
                              const char *label_name, const char *label_value, bool header)
{
    const char *name;
    alert_cluster_t *ac;

    if (family < 0 || family >= ALERT_PROM_FAMILIES || cluster >= a->nclusters)
        return;
    name = alert_families[family].name;
    ac = &a->clusters[cluster];
    if (header)
        fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", name, alert_families[family].help, name,
                alert_families[family].type);
    if (family >= AF_SENT) {
        delivery_samples(fp, a, family, cluster, label_name, label_value);
        return;
    }
    pthread_mutex_lock(&a->mtx);
    if (family == AF_FIRING) {
        sample(fp, name, label_name, label_value, "", ac->firing);
    } else if (family == AF_NOTIFICATIONS) {
        sample(fp, name, label_name, label_value, ",kind=\"firing\"", ac->fired);
        sample(fp, name, label_name, label_value, ",kind=\"resolved\"", ac->resolved);
    } else {
        sample(fp, name, label_name, label_value, "", ac->suppressed);
    }
    pthread_mutex_unlock(&a->mtx);
}

void alerts_prometheus(FILE *fp, alerts_t *a, const char *label_name, const char *label_value)
{
    for (int f = 0; f < ALERT_PROM_FAMILIES; f++)
        alerts_prometheus_family(fp, a, f, 0, label_name, label_value, true);
}

void alerts_stop(alerts_t *a)
{
    double grace_s;
    int64_t stop_by_ms;

    if (!a)
        return;
    grace_s = a->c->webhook.timeout_s < STOP_GRACE_MAX_S ? a->c->webhook.timeout_s
                                                         : STOP_GRACE_MAX_S;
    stop_by_ms = bl_now_ms() + (int64_t)(grace_s * 1000);
    /* Every thread has the same deadline: they stop together. */
    for (size_t i = 0; i < a->nhooks; i++)
        webhook_stop(a->hooks[i], stop_by_ms);
    for (size_t k = 0; k < a->nclusters; k++) {
        for (size_t i = 0; i < a->clusters[k].nstates; i++)
            free(a->clusters[k].states[i].group);
        free(a->clusters[k].states);
    }
    free(a->clusters);
    free(a->hooks);
    pthread_mutex_destroy(&a->mtx);
    free(a);
}
