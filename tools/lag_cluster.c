/*
 * lag_cluster.c - `ballast lag --all-groups`: every consumer group of a
 * cluster (classic and consumer-protocol), found anew at each evaluation,
 * judged by the same rules as one group (shared/lag.c), served as
 * kafka_exporter's metrics and a JSON API (lag_cluster_output.c).
 *
 * One evaluation asks the cluster in batches, never one request per
 * partition:
 *   1. ListConsumerGroups: the groups, filtered by --include/--exclude;
 *   2. ListConsumerGroupOffsets: one request per group, all in flight at
 *      once (shared/lag.c);
 *   3. DescribeConsumerGroups: one call for every group (state, members,
 *      who holds which partition);
 *   4. ListOffsets: one call for the latest offsets of every partition of
 *      every group, one for the earliest;
 *   5. time lag: from each partition's log-end history, recorded at step
 *      4 once per partition for all the groups that read it (lag_time.c);
 *      where the history cannot say yet (or --lag-seconds-method
 *      timestamp), one group-less consumer reads the message at the
 *      lagging committed offset (lag_probe.c).
 * The network part runs without the lock; the results then replace the
 * previous evaluation's under it, each partition keeping its window of
 * samples across evaluations. A group that is gone is forgotten, one that
 * appears starts with an empty window.
 *
 * Nothing about one group stops the loop: a group deleted between the
 * listing and the reading, or one whose offsets we may not read, is logged
 * once and counted (ballast_lag_errors_total), and an unreachable cluster
 * turns ballast_lag_up to 0 until it answers again.
 */
#include "lagmon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ----------------------------------------------------------- */

static bool filter_pass(const lag_filter_t *include, const lag_filter_t *exclude,
                        const char *name)
{
    if (include->set && regexec(&include->re, name, 0, NULL, 0))
        return false;
    return !(exclude->set && !regexec(&exclude->re, name, 0, NULL, 0));
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The cluster's copy of @p topic (added when new). NULL: out of memory. */
static const char *intern_topic(cluster_t *c, const char *topic)
{
    char **found = c->ntopics ? bsearch(&topic, c->topics, c->ntopics, sizeof(char *), str_cmp)
                              : NULL;
    char **grown, *copy;

    if (found)
        return *found;
    if (!(grown = bl_grow(c->topics, &c->topics_cap, c->ntopics, sizeof(char *), 64)))
        return NULL;
    c->topics = grown;
    if (!(copy = strdup(topic)))
        return NULL;
    c->topics[c->ntopics++] = copy;
    qsort(c->topics, c->ntopics, sizeof(char *), str_cmp);
    return copy;
}

/* ---- groups and partitions ------------------------------------------- */

static int cpart_cmp(const void *a, const void *b)
{
    const cpart_t *x = a, *y = b;
    return lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
}

static cpart_t *find_cpart(const cgroup_t *g, const char *topic, int32_t partition)
{
    cpart_t key;

    key.topic = topic;
    key.partition = partition;
    return g->nparts ? bsearch(&key, g->parts, g->nparts, sizeof(cpart_t), cpart_cmp) : NULL;
}

static void cpart_error(cpart_t *p, const char *why)
{
    p->ok = false;
    free(p->error);
    p->error = strdup(why);
}

/* Makes @p g (n of them, sorted; taken) the watched groups, dropping the
 * cluster's reference to the previous ones (a scrape may still hold one).
 * Call with c->mtx held. */
static void publish(cluster_t *c, cgroup_t *g, size_t n)
{
    lag_groups_t *gs = calloc(1, sizeof(*gs));

    if (!gs) { /* out of memory: no groups rather than stale ones */
        for (size_t i = 0; i < n; i++)
            lag_group_free(&g[i]);
        free(g);
        g = NULL;
        n = 0;
    } else {
        gs->g = g;
        gs->n = n;
        atomic_init(&gs->refs, 1);
    }
    lag_groups_release(c->published);
    c->published = gs;
    c->groups = g;
    c->ngroups = n;
}

/* Adds @p topic [@p partition] to @p g's partitions unless there (they are
 * sorted once all are in). @returns it, or NULL when out of memory. */
static cpart_t *add_cpart(cluster_t *c, cgroup_t *g, const char *topic, int32_t partition)
{
    const char *t = intern_topic(c, topic);
    cpart_t *p;

    if (!t)
        return NULL;
    for (size_t i = 0; i < g->nparts; i++)
        if (g->parts[i].topic == t && g->parts[i].partition == partition)
            return &g->parts[i];
    if (!(p = bl_grow(g->parts, &g->cap, g->nparts, sizeof(*p), 8)))
        return NULL;
    g->parts = p;
    p = &g->parts[g->nparts++];
    memset(p, 0, sizeof(*p));
    p->topic = t;
    p->partition = partition;
    p->ok = true;
    p->committed = -1;
    p->low = p->high = p->lag = -1;
    p->lag_seconds = -1;
    p->member = -1;
    return p;
}

/* ---- 1. the groups ---------------------------------------------------- */

/* The names of the cluster's consumer groups that the filters let through,
 * sorted. @returns them (caller frees each and the array), or NULL with a
 * reason. */
static char **list_groups(cluster_t *c, size_t *countp, char *errbuf, size_t errsize)
{
    static const rd_kafka_consumer_group_type_t types[] = {RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC,
                                                          RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER};
    const rd_kafka_ListConsumerGroups_result_t *res;
    const rd_kafka_ConsumerGroupListing_t **valid;
    rd_kafka_resp_err_t err;
    rd_kafka_error_t *e;
    char **names = NULL;
    size_t n = 0, kept = 0;
    bl_admin_t a;

    bl_admin_start(&a, c->rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, c->o->timeout_ms);
    /* Consumer groups of both protocols; not share or streams groups. */
    if ((e = rd_kafka_AdminOptions_set_match_consumer_group_types(a.opts, types, 2)))
        rd_kafka_error_destroy(e);
    rd_kafka_ListConsumerGroups(c->rk, a.opts, a.q);
    if (!bl_admin_answer(&a, "ListConsumerGroups", &err, errbuf, errsize)) {
        bl_admin_end(&a);
        return NULL;
    }
    res = rd_kafka_event_ListConsumerGroups_result(a.ev);
    valid = rd_kafka_ListConsumerGroups_result_valid(res, &n);
    /* Errors from some brokers leave out their groups: without any valid
     * listing that is an unreachable cluster, else a partial one. */
    {
        size_t nerr = 0;
        const rd_kafka_error_t **errs = rd_kafka_ListConsumerGroups_result_errors(res, &nerr);
        if (nerr && !n) {
            snprintf(errbuf, errsize, "ListConsumerGroups: %s", rd_kafka_error_string(errs[0]));
            bl_admin_end(&a);
            return NULL;
        }
    }
    if (!(names = calloc(n ? n : 1, sizeof(*names)))) {
        snprintf(errbuf, errsize, "out of memory");
        bl_admin_end(&a);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *id = rd_kafka_ConsumerGroupListing_group_id(valid[i]);
        if (id && filter_pass(&c->o->include, &c->o->exclude, id) &&
            (names[kept] = strdup(id)))
            kept++;
    }
    bl_admin_end(&a);
    qsort(names, kept, sizeof(*names), str_cmp);
    *countp = kept;
    return names;
}

/* ---- 3. their members -------------------------------------------------- */

/* Describes every group of @p g in one call; a group whose description
 * fails keeps an undescribed view. */
static void describe_groups(cluster_t *c, cgroup_t *g, size_t n)
{
    const char **names;
    const rd_kafka_ConsumerGroupDescription_t **d;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    size_t nd = 0;
    bl_admin_t a;

    if (c->cannot_describe || !n || !(names = malloc(n * sizeof(*names))))
        return;
    for (size_t i = 0; i < n; i++)
        names[i] = g[i].name;
    bl_admin_start(&a, c->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, c->o->timeout_ms);
    rd_kafka_DescribeConsumerGroups(c->rk, names, n, a.opts, a.q);
    if (!bl_admin_answer(&a, "DescribeConsumerGroups", &err, errbuf, sizeof(errbuf))) {
        c->errors[LAG_ERR_DESCRIBE]++;
        bl_admin_end(&a);
        free(names);
        return;
    }
    d = rd_kafka_DescribeConsumerGroups_result_groups(
        rd_kafka_event_DescribeConsumerGroups_result(a.ev), &nd);
    for (size_t i = 0; i < nd; i++) {
        const char *name = rd_kafka_ConsumerGroupDescription_group_id(d[i]);
        cgroup_t *grp;
        if (name && (grp = lag_group_find(g, n, name)) &&
            lag_view_read(&grp->view, d[i], errbuf, sizeof(errbuf)))
            lag_view_clear(&grp->view); /* its members stay unknown */
    }
    bl_admin_end(&a);
    free(names);
}

/* ---- 2. committed offsets, and the partitions they make ---------------- */

/* Reads every group's committed offsets and makes its partitions: those it
 * committed and those its members hold, of the topics the filters let
 * through. Marks the groups that vanished or failed. @returns false when
 * out of memory. */
static bool read_groups(cluster_t *c, cgroup_t *g, size_t n)
{
    const lag_opts_t *o = c->o;
    bl_lag_group_offsets_t *go = calloc(n ? n : 1, sizeof(*go));
    bool ok = true;

    if (!go)
        return false;
    for (size_t i = 0; i < n; i++)
        go[i].group = g[i].name;
    bl_lag_read_committed_many(c->rk, go, n, o->timeout_ms);
    describe_groups(c, g, n);
    for (size_t i = 0; i < n && ok; i++) {
        const bl_lag_offsets_t *off = &go[i].offsets;
        g[i].ok = !go[i].err;
        g[i].err = go[i].err;
        /* Gone since the listing: the broker knows neither its offsets
         * nor a member. */
        if (go[i].err == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND ||
            (!go[i].err && !off->n && g[i].view.not_found)) {
            g[i].vanished = true;
            continue;
        }
        if (go[i].err) {
            snprintf(g[i].error, sizeof(g[i].error), "%s", go[i].error);
            continue;
        }
        for (size_t k = 0; k < off->n && ok; k++) {
            cpart_t *p;
            if (!filter_pass(&o->include_topic, &o->exclude_topic, off->c[k].topic))
                continue;
            if (!(p = add_cpart(c, &g[i], off->c[k].topic, off->c[k].partition))) {
                ok = false;
                break;
            }
            p->committed = off->c[k].offset;
            if (off->c[k].err)
                cpart_error(p, rd_kafka_err2str(off->c[k].err));
        }
        for (size_t k = 0; k < g[i].view.nassigned && ok; k++) {
            const assigned_t *as = &g[i].view.assigned[k];
            if (filter_pass(&o->include_topic, &o->exclude_topic, as->topic))
                ok = add_cpart(c, &g[i], as->topic, as->partition) != NULL;
        }
        if (g[i].nparts)
            qsort(g[i].parts, g[i].nparts, sizeof(cpart_t), cpart_cmp);
        for (size_t k = 0; k < g[i].nparts; k++)
            g[i].parts[k].member =
                lag_view_holder(&g[i].view, g[i].parts[k].topic, g[i].parts[k].partition);
    }
    for (size_t i = 0; i < n; i++)
        bl_lag_offsets_free(&go[i].offsets);
    free(go);
    return ok;
}

/* ---- 4. watermarks ----------------------------------------------------- */

/* One partition of the cluster, for its watermarks. */
typedef struct wmark {
    const char *topic; /* interned */
    int32_t partition;
    int64_t low, high;
    rd_kafka_resp_err_t err;
} wmark_t;

static int wmark_cmp(const void *a, const void *b)
{
    const wmark_t *x = a, *y = b;
    return lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
}

/* Reads @p spec (earliest or latest) of every partition of @p w in one
 * ListOffsets call, into low or high. */
static void list_offsets(cluster_t *c, wmark_t *w, size_t n, rd_kafka_OffsetSpec_t spec)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    const rd_kafka_ListOffsetsResultInfo_t **infos;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    size_t ninfos = 0;
    bl_admin_t a;

    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(list, w[i].topic, w[i].partition)->offset = spec;
    bl_admin_start(&a, c->rk, RD_KAFKA_ADMIN_OP_LISTOFFSETS, c->o->timeout_ms);
    rd_kafka_ListOffsets(c->rk, list, a.opts, a.q);
    if (!bl_admin_answer(&a, "ListOffsets", &err, errbuf, sizeof(errbuf))) {
        for (size_t i = 0; i < n; i++)
            w[i].err = err;
    } else {
        infos = rd_kafka_ListOffsets_result_infos(rd_kafka_event_ListOffsets_result(a.ev),
                                                 &ninfos);
        for (size_t i = 0; i < ninfos; i++) {
            const rd_kafka_topic_partition_t *tp =
                rd_kafka_ListOffsetsResultInfo_topic_partition(infos[i]);
            wmark_t key, *found;
            key.topic = tp->topic; /* compared by content: not the interned pointer */
            key.partition = tp->partition;
            if (!(found = bsearch(&key, w, n, sizeof(*w), wmark_cmp)))
                continue;
            if (tp->err)
                found->err = tp->err;
            else if (spec == RD_KAFKA_OFFSET_SPEC_EARLIEST)
                found->low = tp->offset;
            else
                found->high = tp->offset;
        }
    }
    bl_admin_end(&a);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Records each partition's log end in its history (lag_time.c). */
static void record_log_ends(cluster_t *c, const wmark_t *w, size_t n)
{
    lag_log_end_t *ends = malloc((n ? n : 1) * sizeof(*ends));

    if (!ends)
        return;
    for (size_t i = 0; i < n; i++)
        ends[i] = (lag_log_end_t){w[i].topic, w[i].partition, w[i].err ? -1 : w[i].high};
    lag_hist_update(&c->hist, ends, n, bl_now_ms());
    free(ends);
}

/* Reads the watermarks of every partition of every group, and their lag.
 * @returns false when out of memory. */
static bool read_watermarks(cluster_t *c, cgroup_t *g, size_t n)
{
    size_t total = 0, nw = 0;
    wmark_t *w;

    for (size_t i = 0; i < n; i++)
        total += g[i].nparts;
    if (!total)
        return true;
    if (!(w = malloc(total * sizeof(*w))))
        return false;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g[i].nparts; k++) {
            w[nw].topic = g[i].parts[k].topic;
            w[nw].partition = g[i].parts[k].partition;
            w[nw].low = w[nw].high = -1;
            w[nw].err = RD_KAFKA_RESP_ERR_NO_ERROR;
            nw++;
        }
    qsort(w, nw, sizeof(*w), wmark_cmp);
    total = nw;
    nw = 0;
    for (size_t i = 0; i < total; i++)
        if (!nw || wmark_cmp(&w[nw - 1], &w[i]))
            w[nw++] = w[i];
    list_offsets(c, w, nw, RD_KAFKA_OFFSET_SPEC_EARLIEST);
    list_offsets(c, w, nw, RD_KAFKA_OFFSET_SPEC_LATEST);
    record_log_ends(c, w, nw);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g[i].nparts; k++) {
            cpart_t *p = &g[i].parts[k];
            wmark_t key, *m;
            key.topic = p->topic;
            key.partition = p->partition;
            m = bsearch(&key, w, nw, sizeof(*w), wmark_cmp);
            if (!p->ok)
                continue;
            if (!m || m->err || m->high < 0) {
                char why[256];
                snprintf(why, sizeof(why), "watermarks: %s",
                         rd_kafka_err2str(m && m->err ? m->err : RD_KAFKA_RESP_ERR__FAIL));
                cpart_error(p, why);
                c->errors[LAG_ERR_WATERMARKS]++;
                continue;
            }
            p->low = m->low;
            p->high = m->high;
            p->lag = bl_lag_of(p->committed, p->low, p->high);
            if (p->committed >= 0 && p->lag == 0) {
                p->lag_seconds = 0;
                p->lag_seconds_method = BL_LAG_TIME_CAUGHT_UP;
            }
        }
    free(w);
    return true;
}

/* ---- 5. time lag --------------------------------------------------------- */

/* The time lag of every lagging, committed partition of every group, by
 * lag_time.c's choice of method. */
static void time_lag(cluster_t *c, cgroup_t *g, size_t n)
{
    size_t total = 0, na = 0;
    lag_time_ask_t *asks;

    for (size_t i = 0; i < n; i++)
        total += g[i].nparts;
    if (!total || !(asks = malloc(total * sizeof(*asks))))
        return;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g[i].nparts; k++) {
            cpart_t *p = &g[i].parts[k];
            if (p->ok && p->committed >= 0 && p->lag > 0)
                asks[na++] = (lag_time_ask_t){p->topic, p->partition, p->committed, p->low,
                                              &p->lag_seconds, &p->lag_seconds_method};
        }
    lag_time_of(c->o, &c->hist, asks, na,
                bl_wall_ms() + (c->o->timeout_ms < 5000 ? c->o->timeout_ms : 5000));
    free(asks);
}

/* ---- judging, and the new evaluation replacing the old ------------------ */

/* Adds @p p's sample to its window (taken over from @p old, the same
 * partition at the previous evaluation, or new) and judges it. */
static void judge_part(cluster_t *c, const cgroup_t *g, cpart_t *p, cpart_t *old)
{
    bl_lag_owner_t owner = !g->view.described ? BL_LAG_OWNER_UNKNOWN
                        : p->member >= 0    ? BL_LAG_OWNER_MEMBER
                                            : BL_LAG_OWNER_NONE;
    bl_lag_sample_t s = {.committed = p->committed, .high_watermark = p->high, .lag = p->lag,
                         .lag_seconds = (float)p->lag_seconds, .ok = p->ok, .owner = owner};

    if (old && old->window.samples) {
        p->window = old->window;
        memset(&old->window, 0, sizeof(old->window));
    } else if (bl_lag_window_init(&p->window, c->o->window)) {
        p->status = BL_LAG_ERR;
        return;
    }
    bl_lag_window_push(&p->window, &s);
    p->status = bl_lag_evaluate(&p->window, &c->o->th);
}

/* A group whose offsets could not be read keeps its partitions, each with
 * an unreadable (ERR) sample. @returns false when out of memory. */
static bool carry_over(cgroup_t *g, cgroup_t *old)
{
    if (!old || !old->nparts)
        return true;
    if (!(g->parts = calloc(old->nparts, sizeof(*g->parts))))
        return false;
    for (size_t k = 0; k < old->nparts; k++) {
        cpart_t *p = &g->parts[k];
        p->topic = old->parts[k].topic;
        p->partition = old->parts[k].partition;
        p->member = -1;
        p->committed = p->low = p->high = p->lag = -1;
        p->lag_seconds = -1;
        p->error = strdup(g->error);
    }
    g->nparts = g->cap = old->nparts;
    return true;
}

/* Logs, once, what went wrong with a group, and counts it each time. */
static void note_group_trouble(cluster_t *c, const cgroup_t *g, const cgroup_t *old)
{
    if (g->vanished) {
        c->errors[LAG_ERR_VANISHED]++;
        fprintf(stderr, "ballast: lag: group %s was deleted during the evaluation; "
                        "no longer watched\n", g->name);
        return;
    }
    if (g->ok)
        return;
    c->errors[g->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                      g->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
                  ? LAG_ERR_DENIED
                  : LAG_ERR_OFFSETS]++;
    if (!old || strcmp(old->error, g->error))
        fprintf(stderr, "ballast: lag: group %s: its offsets cannot be read: %s\n", g->name,
                g->error);
}

/* Replaces the watched groups with @p g (n of them, sorted; taken), under
 * the lock. */
static void replace_groups(cluster_t *c, cgroup_t *g, size_t n)
{
    size_t kept = 0;

    pthread_mutex_lock(&c->mtx);
    for (size_t i = 0; i < n; i++) {
        cgroup_t *grp = &g[i], *old = lag_group_find(c->groups, c->ngroups, grp->name);
        note_group_trouble(c, grp, old);
        if (grp->vanished) {
            lag_group_free(grp);
            continue;
        }
        if (!grp->ok && !carry_over(grp, old))
            grp->nparts = 0;
        grp->status = BL_LAG_OK;
        grp->total_lag = 0;
        grp->max_lag_seconds = -1;
        grp->max_lag_seconds_method = BL_LAG_TIME_NONE;
        for (size_t k = 0; k < grp->nparts; k++) {
            cpart_t *p = &grp->parts[k];
            judge_part(c, grp, p, old ? find_cpart(old, p->topic, p->partition) : NULL);
            grp->status = bl_lag_status_worst(grp->status, p->status);
            if (p->ok)
                grp->total_lag += p->lag;
            if (p->ok && p->lag_seconds > grp->max_lag_seconds) {
                grp->max_lag_seconds = p->lag_seconds;
                grp->max_lag_seconds_method = p->lag_seconds_method;
            }
        }
        if (!grp->ok)
            grp->status = BL_LAG_ERR;
        g[kept++] = *grp;
    }
    publish(c, g, kept);
    pthread_mutex_unlock(&c->mtx);
}

/* One evaluation of every group. @returns 0, or EX_UNAVAILABLE (the
 * cluster could not be listed) or EX_SOFTWARE with a reason. */
static int evaluate(cluster_t *c, char *errbuf, size_t errsize)
{
    int64_t start = bl_now_ms();
    size_t n = 0;
    char **names = list_groups(c, &n, errbuf, errsize);
    cgroup_t *g;

    if (!names)
        return EX_UNAVAILABLE;
    if (!(g = calloc(n ? n : 1, sizeof(*g)))) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        snprintf(errbuf, errsize, "out of memory");
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < n; i++)
        g[i].name = names[i];
    free(names);
    if (!read_groups(c, g, n) || !read_watermarks(c, g, n)) {
        for (size_t i = 0; i < n; i++)
            lag_group_free(&g[i]);
        free(g);
        snprintf(errbuf, errsize, "out of memory");
        return EX_SOFTWARE;
    }
    time_lag(c, g, n);
    replace_groups(c, g, n);
    pthread_mutex_lock(&c->mtx);
    c->evaluations++;
    c->eval_ms = bl_wall_ms();
    c->eval_seconds = (double)(bl_now_ms() - start) / 1000.0;
    pthread_mutex_unlock(&c->mtx);
    return 0;
}

/* ---- the loop ------------------------------------------------------------ */

static void cluster_free(cluster_t *c)
{
    lag_groups_release(c->published); /* the server has stopped: the last reference */
    for (size_t i = 0; i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    lag_hist_free(&c->hist);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    pthread_mutex_destroy(&c->mtx);
}

/* Marks the cluster up or down, logging each change (not each failure). */
static void set_up(cluster_t *c, bool up, const char *why)
{
    pthread_mutex_lock(&c->mtx);
    if (!up) {
        c->errors[LAG_ERR_UNREACHABLE]++;
        if (c->up)
            fprintf(stderr, "ballast: lag: cluster %s: %s; will try again\n", c->name, why);
        /* No stale figure may look current. */
        publish(c, NULL, 0);
    } else if (!c->up && c->evaluations) {
        fprintf(stderr, "ballast: lag: cluster %s answers again\n", c->name);
    }
    c->up = up;
    pthread_mutex_unlock(&c->mtx);
}

/* Judges every group's alert on the latest evaluation. Only this thread
 * changes the groups, so it reads them without the lock. */
static void evaluate_alerts(cluster_t *c)
{
    alert_reading_t *r = calloc(c->ngroups ? c->ngroups : 1, sizeof(*r));

    if (!r) {
        cli_error("alerts: out of memory; this evaluation is not judged");
        return;
    }
    for (size_t i = 0; i < c->ngroups; i++) {
        const cgroup_t *g = &c->groups[i];
        r[i] = (alert_reading_t){g->name, g->status, g->total_lag, g->max_lag_seconds};
    }
    alerts_evaluate(c->alerts, c->alert_index, r, c->ngroups, c->eval_ms);
    free(r);
}

static void sleep_until(int64_t until)
{
    int64_t left;

    while (!cli_stop_requested && (left = until - bl_wall_ms()) > 0)
        bl_sleep_ms(left > 100 ? 100 : left);
}

int lag_cluster_open(cluster_t *c, const lag_opts_t *o, bool must_reach)
{
    char errbuf[1024];
    int rc;

    memset(c, 0, sizeof(*c));
    c->o = o;
    c->name = o->cluster_name ? o->cluster_name : o->bootstrap;
    c->up = true;
    pthread_mutex_init(&c->mtx, NULL);
    if (!(c->rk = lag_client_new(o, false, errbuf, sizeof(errbuf)))) {
        if (must_reach)
            cli_error("%s", errbuf);
        else
            cli_error("cluster %s: %s", c->name, errbuf);
        cluster_free(c);
        return EX_CONFIG;
    }
    if ((rc = lag_reach(o, c->rk, errbuf, sizeof(errbuf)))) {
        if (must_reach || rc == EX_CONFIG) {
            cli_error("%s", errbuf);
            cluster_free(c);
            return rc;
        }
        /* One of several: the others go on, and this one is tried again
         * (once only without --watch: the loop then says why). */
        if (o->watch_s > 0)
            fprintf(stderr, "ballast: lag: cluster %s: %s; will try again\n", c->name, errbuf);
        c->up = false;
    }
    c->cannot_describe = !rc && cli_cannot_describe_groups(c->rk, o->timeout_ms);
    return 0;
}

void lag_cluster_close(cluster_t *c)
{
    cluster_free(c);
}

int lag_cluster_loop(cluster_t *c, pthread_mutex_t *print_mtx)
{
    const lag_opts_t *o = c->o;
    char errbuf[1024];

    while (!cli_stop_requested) {
        int64_t next = bl_wall_ms() + (int64_t)(o->watch_s * 1000);
        int erc = evaluate(c, errbuf, sizeof(errbuf));
        if (erc == EX_SOFTWARE) {
            cli_error("%s", errbuf);
            return erc;
        }
        if (erc && !c->evaluations && o->watch_s <= 0) {
            /* One evaluation: an unreachable cluster is the exit code (of
             * several, the others are printed all the same). */
            if (print_mtx)
                cli_error("cluster %s: %s", c->name, errbuf);
            else
                cli_error("%s", errbuf);
            return erc;
        }
        set_up(c, !erc, errbuf);
        /* A cluster that does not answer says nothing of its groups: their
         * alerts stay as they are (ballast_lag_up tells). */
        if (c->alerts && !erc)
            evaluate_alerts(c);
        if (o->print && !erc) {
            bool gone;
            if (print_mtx)
                pthread_mutex_lock(print_mtx);
            pthread_mutex_lock(&c->mtx);
            lag_cluster_print(c);
            pthread_mutex_unlock(&c->mtx);
            gone = fflush(stdout) == EOF || ferror(stdout);
            if (print_mtx)
                pthread_mutex_unlock(print_mtx);
            if (gone)
                break; /* the reader went away (e.g. `| head`) */
        }
        if (o->watch_s <= 0)
            break;
        sleep_until(next);
    }
    return 0;
}

int lag_cluster_run(const lag_opts_t *o)
{
    cluster_t c, *one = &c;
    lag_fleet_t fleet = {&one, 1};
    http_server_t *http = NULL;
    char errbuf[1024];
    int rc;

    alerts_t *alerts;

    if ((rc = lag_cluster_open(&c, o, true)))
        return rc;
    if ((rc = lag_cluster_alerts_start(&one, 1, &o->alert, &alerts))) {
        lag_cluster_close(&c);
        return rc;
    }
    if (o->listen) {
        if (http_server_start(o->listen, lag_cluster_routes, &fleet, &http, errbuf,
                              sizeof(errbuf))) {
            cli_error("--listen: %s", errbuf);
            lag_cluster_close(&c);
            alerts_stop(alerts);
            return EX_CONFIG;
        }
        fprintf(stderr, "ballast: lag metrics listening on %s (http://%s/metrics, /groups)\n",
                http_server_address(http), http_server_address(http));
    }
    rc = lag_cluster_loop(&c, NULL);
    http_server_stop(http);
    lag_cluster_close(&c);
    alerts_stop(alerts);
    return rc;
}
