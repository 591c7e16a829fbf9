/*
 * dlq_group.c - `ballast dlq replay --group NAME`: the replay's place kept
 * as a consumer group on the DLQ, through the admin API only (the replay
 * never joins the group): refusing a group with members, reading its
 * committed offsets, and committing the settled positions.
 */
#include "dlq_group.h"

#include <stdio.h>
#include <string.h>

/* One admin call: its options and the queue its answer comes on. */
typedef struct admin_call {
    rd_kafka_AdminOptions_t *opts;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
} admin_call_t;

static void admin_start(const replay_t *rp, admin_call_t *a, rd_kafka_admin_op_t op)
{
    a->opts = rd_kafka_AdminOptions_new(rp->admin, op);
    rd_kafka_AdminOptions_set_request_timeout(a->opts, rp->o->timeout_ms, NULL, 0);
    a->q = rd_kafka_queue_new(rp->admin);
    a->ev = NULL;
}

/* Waits for the answer of the call @p what. NULL with a reason. */
static rd_kafka_event_t *admin_answer(const replay_t *rp, admin_call_t *a, const char *what,
                                      char *errbuf, size_t errsize)
{
    a->ev = rd_kafka_queue_poll(a->q, rp->o->timeout_ms + 2000);
    if (!a->ev) {
        snprintf(errbuf, errsize, "%s: no answer within %d ms", what, rp->o->timeout_ms);
    } else if (rd_kafka_event_error(a->ev)) {
        snprintf(errbuf, errsize, "%s: %s", what, rd_kafka_event_error_string(a->ev));
        rd_kafka_event_destroy(a->ev);
        a->ev = NULL;
    }
    return a->ev;
}

static void admin_end(admin_call_t *a)
{
    if (a->ev)
        rd_kafka_event_destroy(a->ev);
    rd_kafka_queue_destroy(a->q);
    rd_kafka_AdminOptions_destroy(a->opts);
}

int dlq_group_check_unused(replay_t *rp)
{
    const char *groups[1] = {rp->o->group};
    admin_call_t a;
    rd_kafka_event_t *ev;
    char errbuf[512];
    int rc = 0;

    /* A broker that cannot describe groups refuses a commit to a group
     * with members anyway (only later, at the first commit). */
    if (cli_cannot_describe_groups(rp->admin, rp->o->timeout_ms))
        return 0;
    admin_start(rp, &a, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_DescribeConsumerGroups(rp->admin, groups, 1, a.opts, a.q);
    if (!(ev = admin_answer(rp, &a, "DescribeConsumerGroups", errbuf, sizeof(errbuf)))) {
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
    admin_end(&a);
    return rc;
}

int dlq_group_read(replay_t *rp)
{
    const dlq_opts_t *o = rp->o;
    rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(rp->r->nparts);
    rd_kafka_ListConsumerGroupOffsets_t *req;
    admin_call_t a;
    rd_kafka_event_t *ev;
    char errbuf[512];
    int rc = 1;

    for (int32_t p = 0; p < rp->r->nparts; p++) {
        rd_kafka_topic_partition_list_add(want, o->topic, p);
        rp->committed[p] = -1;
    }
    req = rd_kafka_ListConsumerGroupOffsets_new(o->group, want);
    rd_kafka_topic_partition_list_destroy(want);
    admin_start(rp, &a, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_ListConsumerGroupOffsets(rp->admin, &req, 1, a.opts, a.q);
    if ((ev = admin_answer(rp, &a, "ListConsumerGroupOffsets", errbuf, sizeof(errbuf)))) {
        size_t n = 0;
        const rd_kafka_group_result_t **groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
        const rd_kafka_error_t *gerr = n ? rd_kafka_group_result_error(groups[0]) : NULL;
        const rd_kafka_topic_partition_list_t *parts =
            n ? rd_kafka_group_result_partitions(groups[0]) : NULL;

        if (gerr && rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            snprintf(errbuf, sizeof(errbuf), "%s", rd_kafka_error_string(gerr));
        } else {
            /* A group the broker does not know yet has no offsets. */
            rc = 0;
            if (gerr)
                parts = NULL;
            for (int i = 0; parts && i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &parts->elems[i];
                if (tp->err) {
                    snprintf(errbuf, sizeof(errbuf), "partition %d: %s", (int)tp->partition,
                             rd_kafka_err2str(tp->err));
                    rc = 1;
                } else if (tp->partition >= 0 && tp->partition < rp->r->nparts &&
                           tp->offset >= 0) {
                    rp->committed[tp->partition] = tp->offset;
                }
            }
        }
    }
    if (rc)
        cli_error("--group %s: the committed offsets on %s: %s", o->group, o->topic, errbuf);
    admin_end(&a);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    return rc;
}

int dlq_group_commit(replay_t *rp)
{
    const dlq_opts_t *o = rp->o;
    rd_kafka_topic_partition_list_t *offsets =
        rd_kafka_topic_partition_list_new(rp->r->nparts);
    rd_kafka_AlterConsumerGroupOffsets_t *req;
    admin_call_t a;
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
    admin_start(rp, &a, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS);
    rd_kafka_AlterConsumerGroupOffsets(rp->admin, &req, 1, a.opts, a.q);
    if ((ev = admin_answer(rp, &a, "AlterConsumerGroupOffsets", errbuf, sizeof(errbuf)))) {
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
    admin_end(&a);
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

