/*
 * dlq_group.c - `ballast dlq replay --group NAME`: the replay's place kept
 * as a consumer group on the DLQ, through the admin API only (the replay
 * never joins the group): refusing a group with members, reading its
 * committed offsets, and committing the settled positions.
 */
#include "dlq_group.h"
#include "lag.h"

#include <stdio.h>
#include <string.h>

int dlq_group_check_unused(replay_t *rp)
{
    const char *groups[1] = {rp->o->group};
    rd_kafka_resp_err_t err;
    bl_admin_t a;
    rd_kafka_event_t *ev;
    char errbuf[512];
    int rc = 0;

    /* A broker that cannot describe groups refuses a commit to a group
     * with members anyway (only later, at the first commit). */
    if (cli_cannot_describe_groups(rp->admin, rp->o->timeout_ms))
        return 0;
    bl_admin_start(&a, rp->admin, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, rp->o->timeout_ms);
    rd_kafka_DescribeConsumerGroups(rp->admin, groups, 1, a.opts, a.q);
    if (!(ev = bl_admin_answer(&a, "DescribeConsumerGroups", &err, errbuf, sizeof(errbuf)))) {
        cli_error("--group %s: %s", rp->o->group, errbuf);
        rc = 1;
    } else {
        size_t n = 0;
        const rd_kafka_ConsumerGroupDescription_t **d =
            rd_kafka_DescribeConsumerGroups_result_groups(
                rd_kafka_event_DescribeConsumerGroups_result(ev), &n);
        const rd_kafka_error_t *gerr = n ? rd_kafka_ConsumerGroupDescription_error(d[0]) : NULL;
        size_t members = n ? rd_kafka_ConsumerGroupDescription_member_count(d[0]) : 0;
        const char *state = n ? rd_kafka_consumer_group_state_name(
                                    rd_kafka_ConsumerGroupDescription_state(d[0]))
                              : NULL;

        if (gerr && rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            cli_error("--group %s: %s", rp->o->group, rd_kafka_error_string(gerr));
            rc = 1;
        } else if (members) {
            cli_error("--group %s has %zu member(s) (state %s): it must be a group of its "
                      "own, which nothing consumes with",
                      rp->o->group, members, state ? state : "Unknown");
            rc = EX_CONFIG;
        }
    }
    bl_admin_end(&a);
    return rc;
}

int dlq_group_read(replay_t *rp)
{
    const dlq_opts_t *o = rp->o;
    rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(rp->r->nparts);
    bl_lag_offsets_t offs;
    rd_kafka_resp_err_t err;
    char errbuf[512];

    for (int32_t p = 0; p < rp->r->nparts; p++) {
        rd_kafka_topic_partition_list_add(want, o->topic, p);
        rp->committed[p] = -1;
    }
    /* A group the broker does not know yet has no offsets. */
    err = bl_lag_read_committed(rp->admin, o->group, want, o->timeout_ms, &offs, errbuf,
                                sizeof(errbuf));
    rd_kafka_topic_partition_list_destroy(want);
    for (size_t i = 0; !err && i < offs.n; i++) {
        const bl_lag_committed_t *c = &offs.c[i];
        if ((err = c->err))
            snprintf(errbuf, sizeof(errbuf), "partition %d: %s", (int)c->partition,
                     rd_kafka_err2str(c->err));
        else if (c->partition >= 0 && c->partition < rp->r->nparts)
            rp->committed[c->partition] = c->offset;
    }
    bl_lag_offsets_free(&offs);
    if (err)
        cli_error("--group %s: the committed offsets on %s: %s", o->group, o->topic, errbuf);
    return err ? 1 : 0;
}

int dlq_group_commit(replay_t *rp)
{
    const dlq_opts_t *o = rp->o;
    rd_kafka_topic_partition_list_t *offsets =
        rd_kafka_topic_partition_list_new(rp->r->nparts);
    rd_kafka_AlterConsumerGroupOffsets_t *req;
    rd_kafka_resp_err_t err;
    bl_admin_t a;
    rd_kafka_event_t *ev;
    char errbuf[400];
    int rc = -1;

    rp->last_commit = cli_now_s();
    for (int32_t p = 0; p < rp->r->nparts; p++) {
        int64_t pos = dlq_progress_position(rp->progress, p);
        if (pos >= 0 && pos != rp->committed[p])
            rd_kafka_topic_partition_list_add(offsets, o->topic, p)->offset = pos;
    }
    if (!offsets->cnt) {
        rd_kafka_topic_partition_list_destroy(offsets);
        return 0;
    }
    req = rd_kafka_AlterConsumerGroupOffsets_new(o->group, offsets);
    bl_admin_start(&a, rp->admin, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, o->timeout_ms);
    rd_kafka_AlterConsumerGroupOffsets(rp->admin, &req, 1, a.opts, a.q);
    if ((ev = bl_admin_answer(&a, "AlterConsumerGroupOffsets", &err, errbuf, sizeof(errbuf)))) {
        size_t n = 0;
        const rd_kafka_group_result_t **groups =
            rd_kafka_AlterConsumerGroupOffsets_result_groups(
                rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &n);
        const rd_kafka_error_t *gerr = n ? rd_kafka_group_result_error(groups[0]) : NULL;
        const rd_kafka_topic_partition_list_t *parts =
            n ? rd_kafka_group_result_partitions(groups[0]) : NULL;

        if (gerr)
            snprintf(errbuf, sizeof(errbuf), "%s", rd_kafka_error_string(gerr));
        else if (!parts)
            snprintf(errbuf, sizeof(errbuf), "no answer for the group");
        else
            rc = 0;
        for (int i = 0; !rc && i < parts->cnt; i++) {
            if (parts->elems[i].err) {
                snprintf(errbuf, sizeof(errbuf), "partition %d: %s",
                         (int)parts->elems[i].partition,
                         rd_kafka_err2str(parts->elems[i].err));
                rc = -1;
            }
        }
    }
    if (!rc) {
        for (int i = 0; i < offsets->cnt; i++)
            rp->committed[offsets->elems[i].partition] = offsets->elems[i].offset;
        rp->commit_error[0] = '\0'; /* a later commit covers an earlier failure */
    } else {
        snprintf(rp->commit_error, sizeof(rp->commit_error), "%s", errbuf);
    }
    bl_admin_end(&a);
    rd_kafka_AlterConsumerGroupOffsets_destroy(req);
    rd_kafka_topic_partition_list_destroy(offsets);
    return rc;
}

void dlq_group_positions(const replay_t *rp, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (int32_t p = 0; p < rp->r->nparts && len < size; p++) {
        int64_t at = dlq_progress_position(rp->progress, p);
        len += (size_t)snprintf(buf + len, size - len, "%s%d:", p ? ", " : "", (int)p);
        if (len < size)
            len += (size_t)(at >= 0 ? snprintf(buf + len, size - len, "%lld", (long long)at)
                                    : snprintf(buf + len, size - len, "-"));
    }
}

