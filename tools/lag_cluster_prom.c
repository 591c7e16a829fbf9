/*
 * lag_cluster_prom.c - the Prometheus text of `ballast lag --all-groups`,
 * with kafka_exporter's metric names, every sample labelled with the
 * cluster: written whole on stdout, or streamed to a scrape a piece at a
 * time, so that the text (66 MB for 100,000 group-partitions) is never
 * whole in memory.
 *
 * The text is a sequence of units: a family's header and its first
 * group's samples, then each further group's (or, for the partition
 * families, each further PARTITION_UNIT partitions'). A scrape takes a
 * reference to the groups of the latest evaluation under the lock
 * (lag_groups_t: the evaluation that replaces them drops its own and the
 * last one frees them) and renders the units from those without it, so
 * that every sample of one scrape is of one evaluation and the evaluation
 * never waits for a slow scraper.
 */
#include "lagmon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions of kafka_topic_partition_*_offset rendered per unit. */
#define PARTITION_UNIT 512

/* One partition's watermarks, for the partition families. */
typedef struct wm_sample {
    const char *topic; /* interned: one partition, one pointer */
    int32_t partition;
    int64_t high, low;
} wm_sample_t;

/* What one rendering reads: the groups of one evaluation and the
 * cluster's figures at that time, copied. */
typedef struct prom_src {
    const char *name; /* the cluster label; the cluster's, for the whole run */
    lag_groups_t *groups;
    bool up;
    unsigned long evaluations, errors[LAG_ERR_KIND_COUNT];
    double eval_seconds;
    lag_prom_extra_fn *extra; /* the alert families at the end, or NULL */
    void *extra_arg;
    size_t extra_index;
    wm_sample_t *wm; /* every partition read, once: made when first needed */
    size_t nwm;
    bool wm_made;
} prom_src_t;

/* The name of an error kind, as the errors metric labels it. */
static const char *lag_error_kind_name(lag_error_kind_t kind)
{
    static const char *const names[LAG_ERR_KIND_COUNT] = {
        "unreachable", "group_vanished", "group_denied", "group_offsets", "describe",
        "watermarks"};
    return kind < LAG_ERR_KIND_COUNT ? names[kind] : "other";
}

static void family(FILE *fp, const char *name, const char *type, const char *help)
{
    fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* NAME{cluster="..."[,consumergroup="..."][,topic="..."][,partition="..."]} */
static void sample_name(FILE *fp, const prom_src_t *s, const char *name, const char *group,
                        const char *topic, long partition)
{
    fprintf(fp, "%s{cluster=\"", name);
    bl_prom_label(fp, s->name);
    if (group) {
        fputs("\",consumergroup=\"", fp);
        bl_prom_label(fp, group);
    }
    if (topic) {
        fputs("\",topic=\"", fp);
        bl_prom_label(fp, topic);
    }
    if (partition >= 0)
        fprintf(fp, "\",partition=\"%ld", partition);
    fputs("\"} ", fp);
}

enum part_value { PV_LAG, PV_LAG_SECONDS, PV_COMMITTED, PV_STATUS };

/* A sample per partition of group @p g. */
static void part_samples(FILE *fp, const prom_src_t *s, const char *name, const cgroup_t *g,
                         enum part_value which)
{
    for (size_t k = 0; k < g->nparts; k++) {
        const cpart_t *p = &g->parts[k];
        if (which != PV_STATUS &&
            (!p->ok || (which == PV_LAG_SECONDS && p->lag_seconds < 0) ||
             (which == PV_COMMITTED && p->committed < 0)))
            continue;
        sample_name(fp, s, name, g->name, p->topic, p->partition);
        if (which == PV_LAG)
            fprintf(fp, "%lld\n", (long long)p->lag);
        else if (which == PV_LAG_SECONDS)
            fprintf(fp, "%.3f\n", p->lag_seconds);
        else if (which == PV_COMMITTED)
            fprintf(fp, "%lld\n", (long long)p->committed);
        else
            fprintf(fp, "%d\n", (int)p->status);
    }
}

/* kafka_consumergroup_{lag,current_offset}_sum of group @p g: per topic,
 * over the partitions that could be read. */
static void topic_sums(FILE *fp, const prom_src_t *s, const char *name, const cgroup_t *g,
                       bool lag)
{
    for (size_t k = 0; k < g->nparts;) {
        const char *topic = g->parts[k].topic;
        int64_t sum = 0;
        bool any = false;
        for (; k < g->nparts && g->parts[k].topic == topic; k++) {
            const cpart_t *p = &g->parts[k];
            if (p->ok && (lag || p->committed >= 0)) {
                sum += lag ? p->lag : p->committed;
                any = true;
            }
        }
        if (!any)
            continue;
        sample_name(fp, s, name, g->name, topic, -1);
        fprintf(fp, "%lld\n", (long long)sum);
    }
}

static int wm_cmp(const void *a, const void *b)
{
    const wm_sample_t *x = a, *y = b;
    return lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
}

/* Makes s->wm: every partition read, once whichever groups read it, in
 * order (none when out of memory). */
static void make_watermarks(prom_src_t *s)
{
    const lag_groups_t *gs = s->groups;
    size_t n = 0, kept = 0, total = 0;
    wm_sample_t *all;

    s->wm_made = true;
    for (size_t i = 0; i < gs->n; i++)
        total += gs->g[i].nparts;
    if (!total || !(all = malloc(total * sizeof(*all))))
        return;
    for (size_t i = 0; i < gs->n; i++)
        for (size_t k = 0; k < gs->g[i].nparts; k++) {
            const cpart_t *p = &gs->g[i].parts[k];
            if (p->ok)
                all[n++] = (wm_sample_t){p->topic, p->partition, p->high, p->low};
        }
    qsort(all, n, sizeof(*all), wm_cmp);
    for (size_t i = 0; i < n; i++)
        if (!kept || all[i].topic != all[kept - 1].topic ||
            all[i].partition != all[kept - 1].partition)
            all[kept++] = all[i];
    s->wm = all;
    s->nwm = kept;
}

/* The errors by kind: one sample each. */
static void error_samples(FILE *fp, const prom_src_t *s)
{
    for (int k = 0; k < LAG_ERR_KIND_COUNT; k++) {
        fprintf(fp, "ballast_lag_errors_total{cluster=\"");
        bl_prom_label(fp, s->name);
        fprintf(fp, "\",kind=\"%s\"} %lu\n", lag_error_kind_name((lag_error_kind_t)k),
                s->errors[k]);
    }
}

/* The families, in the order of the text. */
enum prom_family { F_LAG, F_LAG_SECONDS, F_COMMITTED, F_LAG_SUM, F_COMMITTED_SUM, F_HIGH, F_LOW,
                   F_MEMBERS, F_PART_STATUS, F_GROUP_STATUS, F_UP, F_GROUPS, F_EVAL_SECONDS,
                   F_EVALUATIONS, F_ERRORS, F_ALERT, /* the alerts' families */
                   F_COUNT = F_ALERT + ALERT_PROM_FAMILIES };

static const struct {
    const char *name, *help, *type;
} families[F_COUNT] = {
    [F_LAG] = {"kafka_consumergroup_lag", "High watermark minus the group's committed offset.",
               "gauge"},
    [F_LAG_SECONDS] = {"kafka_consumergroup_lag_seconds", LAG_SECONDS_HELP, "gauge"},
    [F_COMMITTED] = {"kafka_consumergroup_current_offset", "The group's committed offset.",
                     "gauge"},
    [F_LAG_SUM] = {"kafka_consumergroup_lag_sum", "The group's lag over a topic.", "gauge"},
    [F_COMMITTED_SUM] = {"kafka_consumergroup_current_offset_sum",
                         "The group's committed offsets summed over a topic.", "gauge"},
    [F_HIGH] = {"kafka_topic_partition_current_offset", "The partition's high watermark.", "gauge"},
    [F_LOW] = {"kafka_topic_partition_oldest_offset", "The partition's low watermark.", "gauge"},
    [F_MEMBERS] = {"kafka_consumergroup_members", "Members of the group.", "gauge"},
    [F_PART_STATUS] = {"ballast_lag_partition_status",
                       "Lag status: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.", "gauge"},
    [F_GROUP_STATUS] = {"ballast_lag_group_status",
                        "The group's worst partition status: 0 OK, 1 WARN, 2 REWIND, 3 "
                        "STALL, 4 STOP, 5 ERR.", "gauge"},
    [F_UP] = {"ballast_lag_up", "1 when the latest evaluation could list the cluster's groups.",
              "gauge"},
    [F_GROUPS] = {"ballast_lag_groups", "Consumer groups watched.", "gauge"},
    [F_EVAL_SECONDS] = {"ballast_lag_evaluation_seconds",
                        "How long the latest evaluation of every group took.", "gauge"},
    [F_EVALUATIONS] = {"ballast_lag_evaluations_total", "Evaluations made.", "counter"},
    [F_ERRORS] = {"ballast_lag_errors_total",
                  "Evaluation errors by kind: unreachable, group_vanished, group_denied, "
                  "group_offsets, describe, watermarks.",
                  "counter"},
    /* F_ALERT and after: alert_notify.c's */
};

/* Units of family @p f (at least one: its header). */
static size_t units_of(prom_src_t *s, enum prom_family f)
{
    size_t n;

    if (f >= F_UP)
        return 1;
    if (f == F_HIGH || f == F_LOW) {
        if (!s->wm_made)
            make_watermarks(s);
        n = (s->nwm + PARTITION_UNIT - 1) / PARTITION_UNIT;
    } else {
        n = s->groups->n;
    }
    return n ? n : 1;
}

/* The one sample of scalar family @p f. */
static void scalar_sample(FILE *fp, const prom_src_t *s, enum prom_family f)
{
    if (f == F_ERRORS) {
        error_samples(fp, s);
        return;
    }
    sample_name(fp, s, families[f].name, NULL, NULL, -1);
    if (f == F_UP)
        fprintf(fp, "%d\n", s->up ? 1 : 0);
    else if (f == F_GROUPS)
        fprintf(fp, "%zu\n", s->groups->n);
    else if (f == F_EVAL_SECONDS)
        fprintf(fp, "%.3f\n", s->eval_seconds);
    else
        fprintf(fp, "%lu\n", s->evaluations);
}

/* Writes unit @p u of family @p f of one cluster; @p header: the family's
 * HELP and TYPE first (its first unit of the first cluster). */
static void render_unit(FILE *fp, prom_src_t *s, enum prom_family f, size_t u, bool header)
{
    const char *name = families[f].name;
    const cgroup_t *g = u < s->groups->n ? &s->groups->g[u] : NULL;

    if (f >= F_ALERT) {
        if (s->extra)
            s->extra(fp, s->extra_arg, s->extra_index, f - F_ALERT, s->name, header);
        return;
    }
    if (header)
        family(fp, name, families[f].type, families[f].help);
    if (f >= F_UP) {
        scalar_sample(fp, s, f);
        return;
    }
    if (f == F_HIGH || f == F_LOW) {
        if (!s->wm_made)
            make_watermarks(s);
        for (size_t i = u * PARTITION_UNIT; i < s->nwm && i < (u + 1) * PARTITION_UNIT; i++) {
            sample_name(fp, s, name, NULL, s->wm[i].topic, s->wm[i].partition);
            fprintf(fp, "%lld\n", (long long)(f == F_HIGH ? s->wm[i].high : s->wm[i].low));
        }
        return;
    }
    if (!g)
        return;
    switch (f) {
    case F_LAG:
        part_samples(fp, s, name, g, PV_LAG);
        break;
    case F_LAG_SECONDS:
        part_samples(fp, s, name, g, PV_LAG_SECONDS);
        break;
    case F_COMMITTED:
        part_samples(fp, s, name, g, PV_COMMITTED);
        break;
    case F_PART_STATUS:
        part_samples(fp, s, name, g, PV_STATUS);
        break;
    case F_LAG_SUM:
    case F_COMMITTED_SUM:
        topic_sums(fp, s, name, g, f == F_LAG_SUM);
        break;
    case F_MEMBERS:
        if (g->view.described) {
            sample_name(fp, s, name, g->name, NULL, -1);
            fprintf(fp, "%zu\n", g->view.nmembers);
        }
        break;
    default: /* F_GROUP_STATUS */
        sample_name(fp, s, name, g->name, NULL, -1);
        fprintf(fp, "%d\n", (int)g->status);
        break;
    }
}

/* Before the first evaluation. */
static lag_groups_t no_groups;

/* Takes what a rendering reads from @p c (call with c->mtx held). */
static void src_take(prom_src_t *s, const cluster_t *c)
{
    memset(s, 0, sizeof(*s));
    s->name = c->name;
    s->groups = c->published ? lag_groups_ref(c->published) : &no_groups;
    s->up = c->up;
    s->evaluations = c->evaluations;
    memcpy(s->errors, c->errors, sizeof(s->errors));
    s->eval_seconds = c->eval_seconds;
    s->extra = c->prom_extra;
    s->extra_arg = c->alerts;
    s->extra_index = c->alert_index;
}

static void src_release(prom_src_t *s)
{
    if (s->groups != &no_groups)
        lag_groups_release(s->groups);
    free(s->wm);
}

void lag_cluster_write_prometheus(FILE *fp, const cluster_t *c)
{
    prom_src_t s;

    src_take(&s, c);
    for (int f = 0; f < F_COUNT; f++)
        for (size_t u = 0, n = units_of(&s, (enum prom_family)f); u < n; u++)
            render_unit(fp, &s, (enum prom_family)f, u, !u);
    src_release(&s);
}

/* ---- a scrape, streamed ---------------------------------------------------- */

/* A scrape of one or more clusters: each family once, with the samples of
 * every cluster in turn. */
typedef struct prom_stream {
    prom_src_t *src;
    size_t nsrc;
    int family;  /* the next unit: F_COUNT at the end */
    size_t cluster, unit;
    char *pending; /* the rendered unit not sent yet */
    size_t len, sent;
} prom_stream_t;

/* Renders the next unit into st->pending. @returns false at the end or
 * when out of memory (*failed). */
static bool next_unit(prom_stream_t *st, bool *failed)
{
    FILE *fp;
    size_t size = 0;

    free(st->pending);
    st->pending = NULL;
    st->len = st->sent = 0;
    if (st->family >= F_COUNT)
        return false;
    if (!(fp = open_memstream(&st->pending, &size))) {
        *failed = true;
        return false;
    }
    render_unit(fp, &st->src[st->cluster], (enum prom_family)st->family, st->unit,
                !st->cluster && !st->unit);
    if (fclose(fp)) {
        *failed = true;
        return false;
    }
    st->len = size;
    if (++st->unit >= units_of(&st->src[st->cluster], (enum prom_family)st->family)) {
        st->unit = 0;
        if (++st->cluster >= st->nsrc) {
            st->cluster = 0;
            st->family++;
        }
    }
    return true;
}

static long stream_read(void *arg, char *buf, size_t max)
{
    prom_stream_t *st = arg;
    size_t filled = 0;
    bool failed = false;

    while (filled < max) {
        size_t n = st->len - st->sent;
        if (!n) {
            if (!next_unit(st, &failed))
                break;
            continue;
        }
        if (n > max - filled)
            n = max - filled;
        memcpy(buf + filled, st->pending + st->sent, n);
        st->sent += n;
        filled += n;
    }
    return failed ? -1 : (long)filled;
}

static void stream_free(void *arg)
{
    prom_stream_t *st = arg;

    for (size_t i = 0; i < st->nsrc; i++)
        src_release(&st->src[i]);
    free(st->src);
    free(st->pending);
    free(st);
}

bool lag_clusters_stream_prometheus(http_response_t *r, cluster_t *const *cs, size_t n)
{
    prom_stream_t *st = calloc(1, sizeof(*st));

    if (!st || !(st->src = calloc(n ? n : 1, sizeof(*st->src)))) {
        free(st);
        return false;
    }
    st->nsrc = n;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&cs[i]->mtx);
        src_take(&st->src[i], cs[i]);
        pthread_mutex_unlock(&cs[i]->mtx);
    }
    if (!n)
        st->family = F_COUNT;
    r->stream = stream_read;
    r->stream_arg = st;
    r->stream_free = stream_free;
    return true;
}
