/*
 * lag_cluster_output.c - what `ballast lag --all-groups` shows of its
 * groups: the HTTP routes (/metrics, whose text lag_cluster_prom.c
 * writes; the JSON API, /groups and /groups/NAME; at / the page that shows
 * them, tools/lag_dashboard.html), and, without --listen,
 * a table of the groups, JSON lines or the Prometheus text on stdout.
 */
#include "lagmon.h"
#include "lag_dashboard_html.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- finding ------------------------------------------------------------- */

static int group_cmp(const void *a, const void *b)
{
    return strcmp(((const cgroup_t *)a)->name, ((const cgroup_t *)b)->name);
}

cgroup_t *lag_group_find(const cgroup_t *g, size_t n, const char *name)
{
    cgroup_t key;

    key.name = (char *)name;
    return n ? bsearch(&key, g, n, sizeof(cgroup_t), group_cmp) : NULL;
}

/* ---- JSON ---------------------------------------------------------------- */

/* A group's summary: what /groups lists. */
static json_t *group_summary(const cgroup_t *g)
{
    json_t *o = json_object();

    json_object_set_new(o, "group", json_string(g->name));
    json_object_set_new(o, "status", json_string(bl_lag_status_name(g->status)));
    json_object_set_new(o, "state", lag_json_text(g->view.state));
    json_object_set_new(o, "protocol", lag_json_text(g->view.protocol));
    json_object_set_new(o, "members", g->view.described
                                          ? json_integer((json_int_t)g->view.nmembers)
                                          : json_null());
    json_object_set_new(o, "partitions", json_integer((json_int_t)g->nparts));
    json_object_set_new(o, "total_lag", json_integer((json_int_t)g->total_lag));
    json_object_set_new(o, "max_lag_seconds", lag_json_seconds(g->max_lag_seconds, true));
    json_object_set_new(o, "max_lag_seconds_method",
                        json_string(bl_lag_time_method_name(g->max_lag_seconds_method)));
    json_object_set_new(o, "error", g->ok ? json_null() : json_string(g->error));
    return o;
}

static json_t *part_json(const cgroup_t *g, const cpart_t *p)
{
    const member_t *mb = p->member >= 0 ? &g->view.members[p->member] : NULL;
    json_t *o = json_object();

    lag_json_put_reading(o, p->topic, p->partition, p->ok, p->committed, p->high, p->low, p->lag,
                         p->lag_seconds, p->lag_seconds_method, p->status);
    lag_json_put_holder(o, mb);
    if (!p->ok)
        json_object_set_new(o, "error", json_string(p->error ? p->error : "unreadable"));
    return o;
}

static void put_header(json_t *o, const cluster_t *c)
{
    char when[40];

    bl_iso8601(c->eval_ms, when, sizeof(when));
    json_object_set_new(o, "cluster", json_string(c->name));
    json_object_set_new(o, "up", json_boolean(c->up));
    json_object_set_new(o, "time", c->eval_ms ? json_string(when) : json_null());
    json_object_set_new(o, "evaluations", json_integer((json_int_t)c->evaluations));
}

/* A group and its cluster. */
typedef struct ranked {
    const cluster_t *c;
    const cgroup_t *g;
} ranked_t;

/* Worst status first, then by cluster and name. */
static int by_status(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    int d;

    if (x->g->status != y->g->status)
        return x->g->status > y->g->status ? -1 : 1;
    if (x->c != y->c && (d = strcmp(x->c->name, y->c->name)))
        return d;
    return strcmp(x->g->name, y->g->name);
}

/* Every group of @p f's clusters, worst status first. Call with their
 * mtx held. NULL: out of memory. */
static ranked_t *rank_groups(const lag_fleet_t *f, size_t *countp)
{
    size_t n = 0, k = 0;
    ranked_t *order;

    for (size_t i = 0; i < f->n; i++)
        n += f->c[i]->ngroups;
    if (!(order = malloc((n ? n : 1) * sizeof(*order))))
        return NULL;
    for (size_t i = 0; i < f->n; i++)
        for (size_t j = 0; j < f->c[i]->ngroups; j++)
            order[k++] = (ranked_t){f->c[i], &f->c[i]->groups[j]};
    qsort(order, n, sizeof(*order), by_status);
    *countp = n;
    return order;
}

/* /groups: every group, worst status first; with several clusters, their
 * headers under "clusters". Call with every cluster's mtx held. */
static json_t *groups_doc(const lag_fleet_t *f)
{
    json_t *doc = json_object(), *list = json_array();
    size_t n = 0;
    ranked_t *order = rank_groups(f, &n);

    if (f->n == 1) {
        put_header(doc, f->c[0]);
    } else {
        json_t *clusters = json_array();
        for (size_t i = 0; i < f->n; i++) {
            json_t *h = json_object();
            put_header(h, f->c[i]);
            json_array_append_new(clusters, h);
        }
        json_object_set_new(doc, "clusters", clusters);
    }
    for (size_t i = 0; order && i < n; i++) {
        json_t *entry = group_summary(order[i].g);
        json_object_set_new(entry, "cluster", json_string(order[i].c->name));
        json_array_append_new(list, entry);
    }
    free(order);
    json_object_set_new(doc, "groups", list);
    return doc;
}

/* /groups/NAME: the group's summary and its partitions. */
static json_t *group_doc(const cluster_t *c, const cgroup_t *g)
{
    json_t *doc = group_summary(g), *parts = json_array();

    put_header(doc, c);
    for (size_t k = 0; k < g->nparts; k++)
        json_array_append_new(parts, part_json(g, &g->parts[k]));
    json_object_set_new(doc, "partitions", parts);
    return doc;
}

static void json_reply(http_response_t *r, int status, json_t *doc)
{
    r->body = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(doc);
    r->release = free;
    r->status = r->body ? status : 500;
    r->content_type = "application/json";
    r->len = r->body ? strlen(r->body) : 0;
}

static void text_reply(http_response_t *r, int status, const char *text, const char *type)
{
    r->status = status;
    r->content_type = type;
    r->body = (char *)text;
    r->len = strlen(text);
}

/* /groups/NAME, or /groups/CLUSTER/NAME with several clusters. Call with
 * every cluster's mtx held. */
static void group_reply(http_response_t *r, const lag_fleet_t *f, const char *rest)
{
    const cluster_t *c = f->c[0];
    const cgroup_t *g = NULL;
    json_t *err;

    if (f->n > 1) {
        const char *slash = strchr(rest, '/');
        c = NULL;
        for (size_t i = 0; slash && i < f->n && !c; i++)
            if (strlen(f->c[i]->name) == (size_t)(slash - rest) &&
                !strncmp(f->c[i]->name, rest, (size_t)(slash - rest)))
                c = f->c[i];
        rest = slash ? slash + 1 : rest;
    }
    if (c && (g = lag_group_find(c->groups, c->ngroups, rest))) {
        json_reply(r, 200, group_doc(c, g));
        return;
    }
    err = json_object();
    json_object_set_new(err, "error", json_string(c ? "no such group" : "no such cluster"));
    json_reply(r, 404, err);
}

/* Whether some cluster is still in its first evaluation. */
static bool first_pending(const lag_fleet_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        if (!f->c[i]->evaluations && f->c[i]->up)
            return true;
    return false;
}

void lag_cluster_routes(const char *path, http_response_t *r, void *opaque)
{
    const lag_fleet_t *f = opaque;
    bool groups = !strcmp(path, "/groups") || !strncmp(path, "/groups/", 8);

    if (!strcmp(path, "/healthz")) {
        text_reply(r, 200, "ok\n", "text/plain; charset=utf-8");
        return;
    }
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        r->body = (char *)lag_dashboard_html;
        r->len = sizeof(lag_dashboard_html);
        return;
    }
    if (!groups && strcmp(path, "/metrics"))
        return;
    for (size_t i = 0; i < f->n; i++)
        pthread_mutex_lock(&f->c[i]->mtx);
    if (first_pending(f))
        text_reply(r, 503, "the first evaluation is in progress\n", "text/plain; charset=utf-8");
    else if (!strcmp(path, "/groups"))
        json_reply(r, 200, groups_doc(f));
    else if (groups)
        group_reply(r, f, path + 8);
    for (size_t i = f->n; i-- > 0;)
        pthread_mutex_unlock(&f->c[i]->mtx);
    if (!r->status) { /* /metrics: takes the locks itself */
        r->status = 200;
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        if (!lag_clusters_stream_prometheus(r, f->c, f->n))
            r->status = 500; /* no body: "out of memory" */
    }
}

/* ---- stdout -------------------------------------------------------------- */

static void print_json_lines(const cluster_t *c)
{
    char when[40];

    bl_iso8601(c->eval_ms, when, sizeof(when));
    for (size_t i = 0; i < c->ngroups; i++) {
        const cgroup_t *g = &c->groups[i];
        for (size_t k = 0; k < g->nparts; k++) {
            json_t *o = json_object(), *p = part_json(g, &g->parts[k]);
            char *line;
            json_object_set_new(o, "time", c->eval_ms ? json_string(when) : json_null());
            json_object_set_new(o, "cluster", json_string(c->name));
            json_object_set_new(o, "group", json_string(g->name));
            json_object_update(o, p);
            json_decref(p);
            json_object_set_new(o, "group_status", json_string(bl_lag_status_name(g->status)));
            json_object_set_new(o, "group_state", lag_json_text(g->view.state));
            json_object_set_new(o, "group_protocol", lag_json_text(g->view.protocol));
            json_object_set_new(o, "evaluation", json_integer((json_int_t)c->evaluations));
            line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
            if (line)
                puts(line);
            free(line);
            json_decref(o);
        }
    }
}

/* The table: a row per group, worst status first. */
static void print_table(const cluster_t *c)
{
    cluster_t *one = (cluster_t *)c;
    lag_fleet_t f = {&one, 1};
    size_t n = 0;
    ranked_t *order = rank_groups(&f, &n);
    int w = 5;
    char when[40];

    if (!order)
        return;
    for (size_t i = 0; i < c->ngroups; i++)
        if ((int)strlen(c->groups[i].name) > w)
            w = (int)strlen(c->groups[i].name);
    bl_iso8601(c->eval_ms, when, sizeof(when));
    printf("cluster %s  groups %zu  evaluated in %.3f s  %s\n", c->name, c->ngroups,
           c->eval_seconds, when);
    printf("%-*s  %-6s  %-18s  %-8s  %7s  %10s  %12s  %11s  %s\n", w, "GROUP", "STATUS",
           "STATE", "PROTOCOL", "MEMBERS", "PARTITIONS", "TOTAL-LAG", "MAX-LAG-SEC", "METHOD");
    for (size_t i = 0; i < c->ngroups; i++) {
        const cgroup_t *g = order[i].g;
        char members[24] = "-", seconds[32] = "-";
        if (g->view.described)
            snprintf(members, sizeof(members), "%zu", g->view.nmembers);
        if (g->max_lag_seconds >= 0)
            snprintf(seconds, sizeof(seconds), "%.3f", g->max_lag_seconds);
        printf("%-*s  %-6s  %-18s  %-8s  %7s  %10zu  %12lld  %11s  %s%s%s\n", w, g->name,
               bl_lag_status_name(g->status), g->view.state[0] ? g->view.state : "-",
               g->view.protocol ? g->view.protocol : "-", members, g->nparts,
               (long long)g->total_lag, seconds,
               bl_lag_time_method_name(g->max_lag_seconds_method), g->ok ? "" : "  ",
               g->ok ? "" : g->error);
    }
    free(order);
}

void lag_cluster_print(const cluster_t *c)
{
    if (c->o->format == OUT_JSON) {
        print_json_lines(c);
    } else if (c->o->format == OUT_PROMETHEUS) {
        lag_cluster_write_prometheus(stdout, c);
    } else {
        print_table(c);
        if (c->o->watch_s > 0)
            putchar('\n');
    }
}
