/*
 * lag_clusters.c - `ballast lag --all-groups` of several clusters in one
 * process: each `lag.cluster.NAME.*` section of the --config file is a
 * cluster, with its own client settings (bootstrap.servers and any other
 * librdkafka property), evaluated in a thread of its own (lag_cluster.c's
 * loop), all served by one --listen server (lag_cluster_output.c): one
 * /metrics with every sample labelled with its cluster, /groups of every
 * cluster, and each cluster's ballast_lag_up, so that an unreachable
 * cluster reads 0 while the others go on; one set of webhooks carries
 * every cluster's alerts (lag_cluster_alerts.c).
 */
#include "lagmon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the sections of the file --------------------------------------------- */

typedef struct reading {
    lag_opts_t *o;
    int rc;
} reading_t;

/* The cluster named @p name (@p len bytes), added when new. NULL: out of
 * memory. */
static lag_cluster_conf_t *cluster_named(lag_opts_t *o, const char *name, size_t len)
{
    lag_cluster_conf_t *grown;

    for (size_t i = 0; i < o->nclusters; i++)
        if (strlen(o->clusters[i].name) == len && !strncmp(o->clusters[i].name, name, len))
            return &o->clusters[i];
    if (!(grown = realloc(o->clusters, (o->nclusters + 1) * sizeof(*grown))))
        return NULL;
    o->clusters = grown;
    grown = &o->clusters[o->nclusters];
    memset(grown, 0, sizeof(*grown));
    if (!(grown->name = strndup(name, len)))
        return NULL;
    o->nclusters++;
    return grown;
}

/* A key lag.cluster.NAME.PROP = VALUE (cli_config_cb). */
static void take_key(const char *key, const char *value, void *opaque)
{
    reading_t *rd = opaque;
    const char *name = key + strlen("lag.cluster."), *dot = strchr(name, '.');
    lag_cluster_conf_t *c;
    char **grown;
    size_t len;

    if (rd->rc)
        return;
    if (!dot || dot == name || !dot[1] || strcspn(name, "/\"\\") < (size_t)(dot - name)) {
        cli_error("--config: %s: expected lag.cluster.NAME.PROPERTY (a NAME without '/', "
                  "'\"' or '\\')", key);
        rd->rc = EX_CONFIG;
        return;
    }
    len = strlen(dot + 1) + strlen(value) + 2;
    if (!(c = cluster_named(rd->o, name, (size_t)(dot - name))) ||
        !(grown = realloc(c->props, (c->nprops + 1) * sizeof(*grown))) ||
        !((c->props = grown)[c->nprops] = malloc(len))) {
        cli_error("out of memory");
        rd->rc = EX_SOFTWARE;
        return;
    }
    snprintf(c->props[c->nprops++], len, "%s=%s", dot + 1, value);
}

int lag_clusters_read(lag_opts_t *o)
{
    reading_t rd = {o, 0};

    cli_config_each("lag.cluster.", take_key, &rd);
    if (rd.rc)
        return rd.rc;
    for (size_t i = 0; i < o->nclusters; i++)
        if (!cli_props_get((const char *const *)o->clusters[i].props, o->clusters[i].nprops,
                           "bootstrap.servers")) {
            cli_error("--config: lag.cluster.%s.bootstrap.servers is missing",
                      o->clusters[i].name);
            return EX_CONFIG;
        }
    return 0;
}

void lag_clusters_free(lag_opts_t *o)
{
    for (size_t i = 0; i < o->nclusters; i++) {
        for (size_t k = 0; k < o->clusters[i].nprops; k++)
            free(o->clusters[i].props[k]);
        free(o->clusters[i].props);
        free(o->clusters[i].name);
    }
    free(o->clusters);
    o->clusters = NULL;
    o->nclusters = 0;
}

/* ---- the loops -------------------------------------------------------------- */

/* One cluster: its options (the command's, with its own client settings
 * after the command's), its state and its thread. */
typedef struct lag_member {
    lag_opts_t o;
    cluster_t c;
    bool open, started;
    pthread_t thread;
    int rc;
} lag_member_t;

static pthread_mutex_t print_mtx = PTHREAD_MUTEX_INITIALIZER;

static void *member_main(void *arg)
{
    lag_member_t *m = arg;

    m->rc = lag_cluster_loop(&m->c, &print_mtx);
    if (m->rc && m->o.watch_s > 0)
        cli_stop_requested = 1; /* a fault no retry will fix: all stop */
    return NULL;
}

/* The options of cluster @p conf: the command's, its settings last. */
static int member_opts(lag_opts_t *mo, const lag_opts_t *o, const lag_cluster_conf_t *conf)
{
    *mo = *o;
    mo->nclusters = 0;
    mo->clusters = NULL;
    mo->cluster_name = conf->name;
    mo->bootstrap = cli_props_get((const char *const *)conf->props, conf->nprops,
                                  "bootstrap.servers");
    if (!(mo->props = calloc(o->nprops + conf->nprops + 1, sizeof(*mo->props)))) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    memcpy(mo->props, o->props, o->nprops * sizeof(*mo->props));
    for (size_t k = 0; k < conf->nprops; k++)
        mo->props[o->nprops + k] = conf->props[k];
    mo->nprops = o->nprops + conf->nprops;
    return 0;
}

int lag_clusters_run(const lag_opts_t *o)
{
    size_t n = o->nclusters;
    lag_member_t *m = calloc(n, sizeof(*m));
    cluster_t **cs = calloc(n, sizeof(*cs));
    lag_fleet_t fleet = {cs, n};
    http_server_t *http = NULL;
    alerts_t *alerts = NULL;
    char errbuf[1024];
    int rc = 0;

    if (!m || !cs) {
        cli_error("out of memory");
        free(m);
        free(cs);
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (!(rc = member_opts(&m[i].o, o, &o->clusters[i])) &&
            !(rc = lag_cluster_open(&m[i].c, &m[i].o, false)))
            m[i].open = true;
        cs[i] = &m[i].c;
    }
    if (!rc)
        rc = lag_cluster_alerts_start(cs, n, &o->alert, &alerts);
    if (!rc && o->listen) {
        if (http_server_start(o->listen, lag_cluster_routes, &fleet, &http, errbuf,
                              sizeof(errbuf))) {
            cli_error("--listen: %s", errbuf);
            rc = EX_CONFIG;
        } else {
            fprintf(stderr,
                    "ballast: lag metrics listening on %s (http://%s/metrics, /groups)\n",
                    http_server_address(http), http_server_address(http));
        }
    }
    for (size_t i = 0; i < n && !rc; i++)
        m[i].started = !pthread_create(&m[i].thread, NULL, member_main, &m[i]);
    for (size_t i = 0; i < n; i++) {
        if (m[i].started) {
            pthread_join(m[i].thread, NULL);
            if (!rc)
                rc = m[i].rc;
        }
    }
    http_server_stop(http);
    for (size_t i = 0; i < n; i++) {
        if (m[i].open)
            lag_cluster_close(&m[i].c);
        free(m[i].o.props);
    }
    alerts_stop(alerts);
    free(m);
    free(cs);
    return rc;
}
