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
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "evaluations", json_integer((json_int_t)c->evaluations));
}

/* Worst status first, then by name. */
static int by_status(const void *a, const void *b)
{
    const cgroup_t *x = *(const cgroup_t *const *)a, *y = *(const cgroup_t *const *)b;
    if (x->status != y->status)
        return x->status > y->status ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* /groups: every group, worst status first. */
static json_t *groups_doc(const cluster_t *c)
{
    json_t *doc = json_object(), *list = json_array();
    const cgroup_t **order = malloc((c->ngroups ? c->ngroups : 1) * sizeof(*order));

    put_header(doc, c);
    for (size_t i = 0; order && i < c->ngroups; i++)
        order[i] = &c->groups[i];
    if (order)
        qsort(order, c->ngroups, sizeof(*order), by_status);
    for (size_t i = 0; order && i < c->ngroups; i++)
        json_array_append_new(list, group_summary(order[i]));
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

void lag_cluster_routes(const char *path, http_response_t *r, void *opaque)
{
    cluster_t *c = opaque;

    if (!strcmp(path, "/healthz")) {
        r->status = 200;
        r->content_type = "text/plain; charset=utf-8";
        r->body = (char *)"ok\n";
        r->len = strlen(r->body);
        return;
    }
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        r->body = (char *)lag_dashboard_html;
        r->len = sizeof(lag_dashboard_html);
        return;
    }
    pthread_mutex_lock(&c->mtx);
    if (!strcmp(path, "/metrics") || !strcmp(path, "/groups") ||
        !strncmp(path, "/groups/", 8)) {
        if (!c->evaluations && c->up) {
            static const char wait_text[] = "the first evaluation is in progress\n";
            r->status = 503;
            r->content_type = "text/plain; charset=utf-8";
            r->body = (char *)wait_text;
            r->len = sizeof(wait_text) - 1;
        } else if (!strcmp(path, "/metrics")) {
            r->status = 200;
            r->content_type = "text/plain; version=0.0.4; charset=utf-8";
            if (!lag_cluster_stream_prometheus(r, c))
                r->status = 500; /* no body: "out of memory" */
        } else if (!strcmp(path, "/groups")) {
            json_reply(r, 200, groups_doc(c));
        } else {
            const cgroup_t *g = lag_group_find(c->groups, c->ngroups, path + 8);
            json_t *err = json_object();
            if (g) {
                json_decref(err);
                json_reply(r, 200, group_doc(c, g));
            } else {
                json_object_set_new(err, "error", json_string("no such group"));
                json_reply(r, 404, err);
            }
        }
    }
    pthread_mutex_unlock(&c->mtx);
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
            json_object_set_new(o, "time", json_string(when));
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
    const cgroup_t **order = malloc((c->ngroups ? c->ngroups : 1) * sizeof(*order));
    int w = 5;
    char when[40];

    if (!order)
        return;
    for (size_t i = 0; i < c->ngroups; i++) {
        order[i] = &c->groups[i];
        if ((int)strlen(c->groups[i].name) > w)
            w = (int)strlen(c->groups[i].name);
    }
    qsort(order, c->ngroups, sizeof(*order), by_status);
    bl_iso8601(c->eval_ms, when, sizeof(when));
    printf("cluster %s  groups %zu  evaluated in %.3f s  %s\n", c->name, c->ngroups,
           c->eval_seconds, when);
    printf("%-*s  %-6s  %-18s  %-8s  %7s  %10s  %12s  %11s  %s\n", w, "GROUP", "STATUS",
           "STATE", "PROTOCOL", "MEMBERS", "PARTITIONS", "TOTAL-LAG", "MAX-LAG-SEC", "METHOD");
    for (size_t i = 0; i < c->ngroups; i++) {
        const cgroup_t *g = order[i];
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
