/*
 * lag_measure.c - one evaluation of `ballast lag`: the group's committed
 * offsets, members and partitions, each partition's watermarks and time
 * lag, and the status of each by the rules of shared/lag.c.
 *
 * It never joins the group it watches (the reference article's monitor
 * does, and so rebalances the consumers it is meant to observe). Each
 * evaluation uses short-lived clients of its own:
 *   - an admin client: ListConsumerGroupOffsets for the committed offsets
 *     (shared/lag.c), metadata for the partitions, query_watermark_offsets
 *     for the watermarks;
 *   - another one for DescribeConsumerGroups: the group's state, its
 *     members and who holds which partition. It also says whether the
 *     group exists: described as Dead (or not found) with no committed
 *     offsets, it does not, and the first evaluation fails with exit 78;
 *   - for the time lag, each partition's log-end history (lag_time.c),
 *     and, where that history cannot say yet (or --lag-seconds-method
 *     timestamp), a group-less consumer (the legacy per-partition API,
 *     which needs no group.id at all) that fetches the one message at the
 *     lagging partition's committed offset and reads its timestamp.
 * Short-lived handles also keep one wedged admin call from poisoning later
 * evaluations (FIELD-NOTES: admin calls against the mock cluster).
 */
#include "lagmon.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Kafka clients ------------------------------------------------------- */

static bool unreachable_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        return true;
    default:
        return false;
    }
}

/* ---- the group's members ------------------------------------------------- */

void lag_view_clear(group_view_t *g)
{
    for (size_t i = 0; i < g->nmembers; i++) {
        free(g->members[i].consumer_id);
        free(g->members[i].client_id);
        free(g->members[i].host);
    }
    for (size_t i = 0; i < g->nassigned; i++)
        free(g->assigned[i].topic);
    free(g->members);
    free(g->assigned);
    g->members = NULL;
    g->assigned = NULL;
    g->nmembers = g->nassigned = 0;
    g->described = g->not_found = false;
    g->state[0] = '\0';
    g->protocol = NULL;
}

static char *copy_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* Copies the members of @p d and the partitions each holds.
 * @returns false when out of memory. */
static bool copy_members(group_view_t *g, const rd_kafka_ConsumerGroupDescription_t *d)
{
    size_t n = rd_kafka_ConsumerGroupDescription_member_count(d);

    if (n && !(g->members = calloc(n, sizeof(*g->members))))
        return false;
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_MemberDescription_t *md = rd_kafka_ConsumerGroupDescription_member(d, i);
        const rd_kafka_MemberAssignment_t *ma = rd_kafka_MemberDescription_assignment(md);
        const rd_kafka_topic_partition_list_t *parts =
            ma ? rd_kafka_MemberAssignment_partitions(ma) : NULL;
        member_t *mb = &g->members[g->nmembers++];
        assigned_t *grown;

        if (!(mb->consumer_id = copy_or_empty(rd_kafka_MemberDescription_consumer_id(md))) ||
            !(mb->client_id = copy_or_empty(rd_kafka_MemberDescription_client_id(md))) ||
            !(mb->host = copy_or_empty(rd_kafka_MemberDescription_host(md))))
            return false;
        if (!parts || parts->cnt <= 0)
            continue;
        mb->partitions = parts->cnt;
        grown = realloc(g->assigned, (g->nassigned + (size_t)parts->cnt) * sizeof(*grown));
        if (!grown)
            return false;
        g->assigned = grown;
        for (int k = 0; k < parts->cnt; k++) {
            assigned_t *a = &g->assigned[g->nassigned];
            if (!(a->topic = strdup(parts->elems[k].topic)))
                return false;
            a->partition = parts->elems[k].partition;
            a->member = i;
            g->nassigned++;
        }
    }
    return true;
}

/* The group protocol of a described group, as the status document names
 * it; NULL when the broker does not say. */
static const char *group_protocol(rd_kafka_consumer_group_type_t type)
{
    return type == RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER  ? "consumer"
           : type == RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC ? "classic"
                                                          : NULL;
}

rd_kafka_resp_err_t lag_view_read(group_view_t *g, const rd_kafka_ConsumerGroupDescription_t *d,
                                  char *errbuf, size_t errsize)
{
    const rd_kafka_error_t *gerr = rd_kafka_ConsumerGroupDescription_error(d);
    rd_kafka_consumer_group_state_t state;
    const char *name;

    if (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
        g->unsupported = true;
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    /* A group the broker does not know: DescribeGroups answers "Dead" (up
     * to Kafka 3.9), or GROUP_ID_NOT_FOUND (DescribeGroups v6 and the
     * consumer-protocol describe of 4.x). */
    if (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        g->not_found = true;
        snprintf(g->state, sizeof(g->state), "Dead");
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    if (gerr) {
        snprintf(errbuf, errsize, "group %s: %s", rd_kafka_ConsumerGroupDescription_group_id(d),
                 rd_kafka_error_string(gerr));
        return rd_kafka_error_code(gerr);
    }
    state = rd_kafka_ConsumerGroupDescription_state(d);
    name = rd_kafka_consumer_group_state_name(state);
    /* Newer states (a consumer-protocol group's Assigning, Reconciling)
     * have no code of their own in librdkafka: Unknown. */
    snprintf(g->state, sizeof(g->state), "%s", name ? name : "Unknown");
    g->protocol = group_protocol(rd_kafka_ConsumerGroupDescription_type(d));
    g->not_found = state == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD;
    g->described = !g->not_found;
    if (!copy_members(g, d)) {
        snprintf(errbuf, errsize, "out of memory");
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Reads DescribeConsumerGroups' answer for the group into @p g. */
static rd_kafka_resp_err_t read_description(group_view_t *g, const lag_opts_t *o,
                                            rd_kafka_event_t *ev, char *errbuf,
                                            size_t errsize)
{
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;

    if (!n) {
        snprintf(errbuf, errsize, "DescribeConsumerGroups: no answer for group %s",
                 o->group);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    return lag_view_read(g, d[0], errbuf, errsize);
}

/* Describes the group (state, members, who holds which partition) on a
 * client of its own (FIELD-NOTES: an admin call a broker cannot serve can
 * wedge its client). A broker that cannot describe groups is not asked
 * again: the members are then unknown. Newer librdkafka describes a
 * consumer-protocol (KIP-848) group with ConsumerGroupDescribe and falls
 * back to DescribeGroups for a classic one, behind the same call.
 * @p reached is the evaluation's client, which has reached the cluster.
 * @returns 0, or the error with a reason. */
static rd_kafka_resp_err_t describe_group(monitor_t *m, rd_kafka_t *reached, char *errbuf,
                                          size_t errsize)
{
    const lag_opts_t *o = m->o;
    group_view_t *g = &m->group;
    const char *groups[1] = {o->group};
    rd_kafka_resp_err_t err;
    bl_admin_t a;
    rd_kafka_t *rk;

    if (g->unsupported || (g->unsupported = cli_cannot_describe_groups(reached, o->timeout_ms)))
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!(rk = lag_client_new(o, false, errbuf, errsize)))
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    bl_admin_start(&a, rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, o->timeout_ms);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, a.opts, a.q);
    if (bl_admin_answer(&a, "DescribeConsumerGroups", &err, errbuf, errsize))
        err = read_description(g, o, a.ev, errbuf, errsize);
    bl_admin_end(&a);
    rd_kafka_destroy(rk);
    return err;
}

long lag_view_holder(const group_view_t *g, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < g->nassigned; i++)
        if (g->assigned[i].partition == partition && !strcmp(g->assigned[i].topic, topic))
            return (long)g->assigned[i].member;
    return -1;
}

/* ---- partitions and their state ---------------------------------------- */

static int part_cmp(const void *a, const void *b)
{
    const part_state_t *x = a, *y = b;
    return lag_tp_cmp(x->topic, x->partition, y->topic, y->partition);
}

static part_state_t *find_part(monitor_t *m, const char *topic, int32_t partition)
{
    part_state_t key;
    key.topic = (char *)topic;
    key.partition = partition;
    if (!m->nparts)
        return NULL; /* bsearch() must not see a NULL array */
    return bsearch(&key, m->parts, m->nparts, sizeof(*m->parts), part_cmp);
}

/* Finds or adds a partition (keeping the array sorted). NULL: out of memory. */
static part_state_t *get_part(monitor_t *m, const char *topic, int32_t partition)
{
    part_state_t *p = find_part(m, topic, partition), fresh;

    if (p)
        return p;
    if (!(p = bl_grow(m->parts, &m->cap, m->nparts, sizeof(*p), 16)))
        return NULL;
    m->parts = p;
    memset(&fresh, 0, sizeof(fresh));
    fresh.partition = partition;
    fresh.ok = true;
    fresh.committed = -1;
    fresh.lag_seconds = -1;
    fresh.member = -1;
    if (!(fresh.topic = strdup(topic)) ||
        bl_lag_window_init(&fresh.window, m->o->window)) {
        free(fresh.topic);
        return NULL;
    }
    m->parts[m->nparts++] = fresh;
    qsort(m->parts, m->nparts, sizeof(*m->parts), part_cmp);
    return find_part(m, topic, partition);
}

static bool add_topic(monitor_t *m, const char *topic)
{
    char **grown;

    for (size_t i = 0; i < m->ntopics; i++)
        if (!strcmp(m->topics[i], topic))
            return true;
    if (!(grown = realloc(m->topics, (m->ntopics + 1) * sizeof(*grown))))
        return false;
    m->topics = grown;
    if (!(m->topics[m->ntopics] = strdup(topic)))
        return false;
    m->ntopics++;
    return true;
}

static void mark_error(part_state_t *p, const char *why)
{
    p->ok = false;
    snprintf(p->error, sizeof(p->error), "%s", why);
}

/* ---- time lag ------------------------------------------------------------ */

/* Records each partition's log end in its history, and sets lag_seconds of
 * every partition with committed offsets and lag > 0 by lag_time.c's
 * choice of method. */
static void time_lag(monitor_t *m, int64_t deadline_ms)
{
    lag_log_end_t *ends = calloc(m->nparts ? m->nparts : 1, sizeof(*ends));
    lag_time_ask_t *asks = calloc(m->nparts ? m->nparts : 1, sizeof(*asks));
    size_t n = 0;

    if (!ends || !asks)
        goto out;
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        ends[i] = (lag_log_end_t){p->topic, p->partition, p->ok ? p->high : -1};
    }
    lag_hist_update(&m->hist, ends, m->nparts, bl_now_ms());
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        if (p->ok && p->committed >= 0 && p->lag > 0)
            asks[n++] = (lag_time_ask_t){p->topic, p->partition, p->committed, p->low,
                                         &p->lag_seconds, &p->lag_seconds_method};
    }
    lag_time_of(m->o, &m->hist, asks, n, deadline_ms);
out:
    free(ends);
    free(asks);
}

/* ---- one evaluation ------------------------------------------------------ */

int lag_measure(monitor_t *m, char *errbuf, size_t errsize)
{
    const lag_opts_t *o = m->o;
    bl_lag_offsets_t committed = {NULL, 0};
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    int rc = 0;

    for (size_t i = 0; i < m->nparts; i++) {
        m->parts[i].ok = true;
        m->parts[i].error[0] = '\0';
        m->parts[i].committed = -1;
        m->parts[i].lag_seconds = -1;
        m->parts[i].lag_seconds_method = BL_LAG_TIME_NONE;
        m->parts[i].member = -1;
    }
    lag_view_clear(&m->group);
    if (!(rk = lag_client_new(o, false, errbuf, errsize)))
        return EX_CONFIG;
    if ((rc = lag_reach(o, rk, errbuf, errsize)))
        goto out;
    if ((err = bl_lag_read_committed(rk, o->group, NULL, o->timeout_ms, &committed, errbuf,
                                     errsize)) ||
        (err = describe_group(m, rk, errbuf, errsize))) {
        /* A group an ACL refuses is the principal's configuration, like
         * a group that does not exist. */
        rc = unreachable_error(err)                                     ? EX_UNAVAILABLE
             : err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED && !m->evaluations ? EX_CONFIG
                                                                        : 1;
        goto out;
    }
    /* Committed offsets alone make a group as far as lag goes (a group
     * whose consumers commit without joining it, or a consumer-protocol
     * group that an older librdkafka describes as Dead). Neither offsets
     * nor a description: a typo, which must not look like a healthy,
     * empty group. */
    if (m->group.not_found && !committed.n) {
        snprintf(errbuf, errsize,
                 "group %s not found: the broker at %s has no consumer group of that "
                 "name (no members, no committed offsets)",
                 o->group, o->bootstrap);
        rc = m->evaluations ? 1 : EX_CONFIG;
        goto out;
    }
    if (o->topic && !add_topic(m, o->topic))
        goto oom;
    /* A partition whose offset the broker could not read is left out. */
    for (size_t i = 0; i < committed.n; i++)
        if (!committed.c[i].err && (!o->topic || !strcmp(committed.c[i].topic, o->topic)))
            if (!add_topic(m, committed.c[i].topic))
                goto oom;
    /* The topics the members hold, committed or not yet. */
    for (size_t i = 0; i < m->group.nassigned; i++)
        if (!o->topic || !strcmp(m->group.assigned[i].topic, o->topic))
            if (!add_topic(m, m->group.assigned[i].topic))
                goto oom;
    for (size_t t = 0; t < m->ntopics; t++) {
        char why[300];
        int n = cli_partition_count(rk, m->topics[t], o->timeout_ms, why, sizeof(why));
        if ((n == 0 || n == CLI_TOPIC_DENIED) && o->topic && !m->evaluations) {
            if (n == 0)
                snprintf(errbuf, errsize, "topic %s does not exist", m->topics[t]);
            else
                snprintf(errbuf, errsize, "%s", why);
            rc = EX_CONFIG;
            goto out;
        }
        for (int32_t p = 0; p < n; p++)
            if (!get_part(m, m->topics[t], p))
                goto oom;
        if (n <= 0)
            for (size_t i = 0; i < m->nparts; i++)
                if (!strcmp(m->parts[i].topic, m->topics[t]))
                    mark_error(&m->parts[i], n == 0 ? "the topic does not exist" : why);
    }
    for (size_t i = 0; i < committed.n; i++) {
        part_state_t *p = find_part(m, committed.c[i].topic, committed.c[i].partition);
        if (p)
            p->committed = committed.c[i].offset;
    }
    for (size_t i = 0; i < m->nparts; i++)
        m->parts[i].member = lag_view_holder(&m->group, m->parts[i].topic, m->parts[i].partition);
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        if (!p->ok)
            continue;
        err = rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &p->low,
                                               &p->high, o->timeout_ms);
        if (err) {
            char why[256];
            snprintf(why, sizeof(why), "watermarks: %s", rd_kafka_err2str(err));
            mark_error(p, why);
            continue;
        }
        p->lag = bl_lag_of(p->committed, p->low, p->high);
        if (p->committed >= 0 && p->lag == 0) {
            p->lag_seconds = 0;
            p->lag_seconds_method = BL_LAG_TIME_CAUGHT_UP;
        }
    }
    rd_kafka_destroy(rk);
    rk = NULL;
    time_lag(m, bl_wall_ms() + (o->timeout_ms < 5000 ? o->timeout_ms : 5000));
    goto out;
oom:
    snprintf(errbuf, errsize, "out of memory");
    rc = EX_SOFTWARE;
out:
    if (rk)
        rd_kafka_destroy(rk);
    bl_lag_offsets_free(&committed);
    if (rc)
        for (size_t i = 0; i < m->nparts; i++)
            mark_error(&m->parts[i], errbuf);
    return rc;
}

void lag_judge(monitor_t *m)
{
    m->status = BL_LAG_OK;
    for (size_t i = 0; i < m->nparts; i++) {
        part_state_t *p = &m->parts[i];
        bl_lag_owner_t owner = !m->group.described ? BL_LAG_OWNER_UNKNOWN
                            : p->member >= 0    ? BL_LAG_OWNER_MEMBER
                                                : BL_LAG_OWNER_NONE;
        bl_lag_sample_t s = {.committed = p->committed, .high_watermark = p->high,
                             .lag = p->lag, .lag_seconds = (float)p->lag_seconds,
                             .ok = p->ok, .owner = owner};
        bl_lag_window_push(&p->window, &s);
        p->status = bl_lag_evaluate(&p->window, &m->o->th);
        m->status = bl_lag_status_worst(m->status, p->status);
    }
}

void lag_monitor_free(monitor_t *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        free(m->parts[i].topic);
        bl_lag_window_free(&m->parts[i].window);
    }
    free(m->parts);
    for (size_t i = 0; i < m->ntopics; i++)
        free(m->topics[i]);
    free(m->topics);
    free(m->prom);
    lag_hist_free(&m->hist);
    free(m->children);
    lag_view_clear(&m->group);
    pthread_mutex_destroy(&m->mtx);
}
