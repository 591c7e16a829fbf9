/*
 * lag_cluster_alerts.c - the alerts of `ballast lag --all-groups`, of one
 * cluster or several: one alerts_t (alert.h) for all, its webhooks started
 * once, each cluster judged and counted under its number, and the alert
 * families of /metrics for lag_cluster_prom.c.
 */
#include "lagmon.h"

#include <stdlib.h>

/* The alerts' families on /metrics (lag_prom_extra_fn). */
static void alert_metrics(FILE *fp, void *alerts, size_t index, int family, const char *name,
                          bool header)
{
    alerts_prometheus_family(fp, alerts, family, index, "cluster", name, header);
}

int lag_cluster_alerts_start(cluster_t *const *cs, size_t n, const alert_conf_t *conf,
                             alerts_t **out)
{
    const char **names;
    char errbuf[1024];

    *out = NULL;
    if (!conf->nurls)
        return 0;
    if (!(names = calloc(n ? n : 1, sizeof(*names)))) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = cs[i]->name;
    *out = alerts_start(conf, names, n, errbuf, sizeof(errbuf));
    free(names);
    if (!*out) {
        cli_error("alerts: %s", errbuf);
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < n; i++) {
        cs[i]->alerts = *out;
        cs[i]->alert_index = i;
        cs[i]->prom_extra = alert_metrics;
    }
    return 0;
}
