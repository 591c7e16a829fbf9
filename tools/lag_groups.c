/*
 * lag_groups.c - what a watched group of `ballast lag --all-groups` owns,
 * and the groups of one evaluation, shared by the evaluation loop
 * (lag_cluster.c) and the scrapes still rendering them
 * (lag_cluster_prom.c).
 */
#include "lagmon.h"

#include <stdlib.h>

void lag_group_free(cgroup_t *g)
{
    for (size_t i = 0; i < g->nparts; i++) {
        free(g->parts[i].error);
        bl_lag_window_free(&g->parts[i].window);
    }
    free(g->parts);
    lag_view_clear(&g->view);
    free(g->name);
}

lag_groups_t *lag_groups_ref(lag_groups_t *gs)
{
    atomic_fetch_add(&gs->refs, 1);
    return gs;
}

void lag_groups_release(lag_groups_t *gs)
{
    if (!gs || atomic_fetch_sub(&gs->refs, 1) != 1)
        return;
    for (size_t i = 0; i < gs->n; i++)
        lag_group_free(&gs->g[i]);
    free(gs->g);
    free(gs);
}
