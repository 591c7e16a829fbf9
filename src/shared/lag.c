/*
 * lag.c - a consumer group's lag: reading it (committed offsets through the
 * admin API, the lag of a partition) and judging it by Burrow's rules over a
 * sliding window, without its false alarms (see lag.h for the rules and why
 * they are ordered so).
 */
#include "lag.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ------------------------------------------------------------- */

int64_t bl_lag_of(int64_t committed, int64_t low, int64_t high)
{
    int64_t from = committed >= 0 ? committed : low;

    if (high < 0 || from < 0)
        return -1;
    return high > from ? high - from : 0;
}

bool bl_lag_coordinator_moving(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
}

void bl_lag_offsets_free(bl_lag_offsets_t *o)
{
    while (o->n)
        free(o->c[--o->n].topic);
    free(o->c);
    o->c = NULL;
}

void bl_admin_start(bl_admin_t *a, rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms)
{
    a->opts = rd_kafka_AdminOptions_new(rk, op);
    rd_kafka_AdminOptions_set_request_timeout(a->opts, timeout_ms, NULL, 0);
    a->q = rd_kafka_queue_new(rk);
    a->ev = NULL;
    a->timeout_ms = timeout_ms;
}

rd_kafka_event_t *bl_admin_answer(bl_admin_t *a, const char *what, rd_kafka_resp_err_t *errp,
                                  char *errbuf, size_t errsize)
{
    *errp = RD_KAFKA_RESP_ERR_NO_ERROR;
    a->ev = rd_kafka_queue_poll(a->q, a->timeout_ms + 2000);
    if (!a->ev) {
        *errp = RD_KAFKA_RESP_ERR__TIMED_OUT;
        snprintf(errbuf, errsize, "no answer to %s within %d ms", what, a->timeout_ms);
    } else if ((*errp = rd_kafka_event_error(a->ev))) {
        snprintf(errbuf, errsize, "%s: %s", what, rd_kafka_event_error_string(a->ev));
        rd_kafka_event_destroy(a->ev);
        a->ev = NULL;
    }
    return a->ev;
}

void bl_admin_end(bl_admin_t *a)
{
    if (a->ev)
        rd_kafka_event_destroy(a->ev);
    rd_kafka_queue_destroy(a->q);
    rd_kafka_AdminOptions_destroy(a->opts);
}

/* Copies the committed offsets of @p parts, and the partitions whose offset
 * the broker could not read, into @p out. */
static rd_kafka_resp_err_t copy_offsets(const rd_kafka_topic_partition_list_t *parts,
                                        bl_lag_offsets_t *out, char *errbuf, size_t errsize)
{
    if (!parts || parts->cnt <= 0)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!(out->c = calloc((size_t)parts->cnt, sizeof(*out->c)))) {
        snprintf(errbuf, errsize, "out of memory");
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        if ((!p->err && p->offset < 0) || !(out->c[out->n].topic = bl_strdup(p->topic)))
            continue;
        out->c[out->n].partition = p->partition;
        out->c[out->n].offset = p->err ? -1 : p->offset;
        out->c[out->n].err = p->err;
        out->n++;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Reads one ListConsumerGroupOffsets answer into @p e, the entry it is for. */
static void read_answer(rd_kafka_event_t *ev, bl_lag_group_offsets_t *e)
{
    size_t count = 0;
    const rd_kafka_group_result_t **res = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(ev), &count);
    const rd_kafka_error_t *gerr = count ? rd_kafka_group_result_error(res[0]) : NULL;

    if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
        (gerr && rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)) {
        e->err = RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
        snprintf(e->error, sizeof(e->error),
                 "group %s: not authorized to read its offsets: the principal needs "
                 "Describe on the group (an ACL refuses it)",
                 e->group);
    } else if (rd_kafka_event_error(ev)) {
        e->err = rd_kafka_event_error(ev);
        snprintf(e->error, sizeof(e->error), "ListConsumerGroupOffsets: %s",
                 rd_kafka_event_error_string(ev));
    } else if (gerr) {
        e->err = rd_kafka_error_code(gerr);
        snprintf(e->error, sizeof(e->error), "group %s: %s", e->group,
                 rd_kafka_error_string(gerr));
    } else if (count) {
        e->err = copy_offsets(rd_kafka_group_result_partitions(res[0]), &e->offsets, e->error,
                              sizeof(e->error));
    } else {
        e->err = RD_KAFKA_RESP_ERR__FAIL;
        snprintf(e->error, sizeof(e->error), "ListConsumerGroupOffsets: no answer for group %s",
                 e->group);
    }
}

/* Sends one ListConsumerGroupOffsets request for each entry of @p g still
 * pending (err == BL_LAG_PENDING), each naming its entry as the answer's
 * opaque, and reads the answers that come within the timeout (and 2 s
 * more). */
static void read_committed_round(rd_kafka_t *rk, bl_lag_group_offsets_t *g, size_t n,
                                 int timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms + 2000;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    size_t sent = 0, answered = 0;

    for (size_t i = 0; i < n; i++) {
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_ListConsumerGroupOffsets_t *req;
        if (g[i].err != BL_LAG_PENDING)
            continue;
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, NULL, 0);
        rd_kafka_AdminOptions_set_opaque(opts, &g[i]);
        req = rd_kafka_ListConsumerGroupOffsets_new(g[i].group, g[i].want);
        /* The request keeps a copy of the options and of req. */
        rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, opts, q);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        rd_kafka_AdminOptions_destroy(opts);
        sent++;
    }
    while (answered < sent) {
        int64_t left = deadline - bl_now_ms();
        rd_kafka_event_t *ev = left > 0 ? rd_kafka_queue_poll(q, (int)left) : NULL;
        bl_lag_group_offsets_t *e;
        if (!ev)
            break;
        e = rd_kafka_event_opaque(ev);
        if (e && e->err == BL_LAG_PENDING) {
            read_answer(ev, e);
            answered++;
        }
        rd_kafka_event_destroy(ev);
    }
    for (size_t i = 0; i < n; i++)
        if (g[i].err == BL_LAG_PENDING) {
            g[i].err = RD_KAFKA_RESP_ERR__TIMED_OUT;
            snprintf(g[i].error, sizeof(g[i].error),
                     "no answer to ListConsumerGroupOffsets within %d ms", timeout_ms);
        }
    rd_kafka_queue_destroy(q);
}

void bl_lag_read_committed_many(rd_kafka_t *rk, bl_lag_group_offsets_t *g, size_t n,
                                int timeout_ms)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    size_t again;

    for (size_t i = 0; i < n; i++) {
        memset(&g[i].offsets, 0, sizeof(g[i].offsets));
        g[i].err = BL_LAG_PENDING;
        g[i].error[0] = '\0';
    }
    for (;;) {
        read_committed_round(rk, g, n, timeout_ms);
        again = 0;
        for (size_t i = 0; i < n; i++)
            if (bl_lag_coordinator_moving(g[i].err)) {
                g[i].err = BL_LAG_PENDING;
                again++;
            }
        if (!again)
            return;
        if (bl_now_ms() >= deadline) {
            for (size_t i = 0; i < n; i++)
                if (g[i].err == BL_LAG_PENDING) {
                    g[i].err = RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
                    snprintf(g[i].error, sizeof(g[i].error),
                             "group %s: its coordinator is not available", g[i].group);
                }
            return;
        }
        bl_sleep_ms(100);
    }
}

rd_kafka_resp_err_t bl_lag_read_committed(rd_kafka_t *rk, const char *group,
                                          const rd_kafka_topic_partition_list_t *want,
                                          int timeout_ms, bl_lag_offsets_t *out,
                                          char *errbuf, size_t errsize)
{
    bl_lag_group_offsets_t g;

    g.group = group;
    g.want = want;
    bl_lag_read_committed_many(rk, &g, 1, timeout_ms);
    *out = g.offsets;
    /* A broker may answer "no such group" rather than with no offsets:
     * the caller decides whether the group exists. */
    if (g.err == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    if (g.err)
        snprintf(errbuf, errsize, "%s", g.error);
    return g.err;
}

/* ---- judging ------------------------------------------------------------- */

static const char *const status_names[BL_LAG_STATUS_COUNT] = {
    "OK", "WARN", "REWIND", "STALL", "STOP", "ERR"};

const char *bl_lag_status_name(bl_lag_status_t status)
{
    return status >= 0 && status < BL_LAG_STATUS_COUNT ? status_names[status] : "ERR";
}

bl_lag_status_t bl_lag_status_worst(bl_lag_status_t a, bl_lag_status_t b)
{
    return a > b ? a : b;
}

int bl_lag_window_init(bl_lag_window_t *w, size_t capacity)
{
    w->capacity = capacity ? capacity : 1;
    w->count = w->next = 0;
    w->samples = calloc(w->capacity, sizeof(*w->samples));
    return w->samples ? 0 : -1;
}

void bl_lag_window_free(bl_lag_window_t *w)
{
    free(w->samples);
    w->samples = NULL;
    w->count = w->next = 0;
}

_Static_assert(sizeof(bl_lag_sample_t) == 32, "a sample is 32 bytes: windows are many");

void bl_lag_window_push(bl_lag_window_t *w, const bl_lag_sample_t *sample)
{
    w->samples[w->next] = *sample;
    w->next = (w->next + 1) % w->capacity;
    if (w->count < w->capacity)
        w->count++;
}

const bl_lag_sample_t *bl_lag_window_at(const bl_lag_window_t *w, size_t i)
{
    size_t oldest = (w->next + w->capacity - w->count) % w->capacity;
    return &w->samples[(oldest + i) % w->capacity];
}

/* Puts the readable samples of the window in @p out, oldest first
 * (unreadable ones say nothing about progress and are skipped). */
static size_t collect(const bl_lag_window_t *w, const bl_lag_sample_t **out)
{
    size_t n = 0;
    for (size_t i = 0; i < w->count; i++) {
        const bl_lag_sample_t *s = bl_lag_window_at(w, i);
        if (s->ok)
            out[n++] = s;
    }
    return n;
}

static bool rewound(const bl_lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i - 1]->committed >= 0 && s[i]->committed >= 0 &&
            s[i]->committed < s[i - 1]->committed)
            return true;
    return false;
}

static bool any_zero_lag(const bl_lag_sample_t **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i]->lag <= 0)
            return true;
    return false;
}

/* "No commit" (-1) that stays "no commit" counts as not moving. */
static bool committed_unchanged(const bl_lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i]->committed != s[0]->committed)
            return false;
    return true;
}

static bool lag_grew_throughout(const bl_lag_sample_t **s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i]->lag < s[i - 1]->lag)
            return false;
    return s[n - 1]->lag > s[0]->lag;
}

static bool over_threshold(const bl_lag_sample_t *s, const bl_lag_thresholds_t *th,
                           int64_t default_warn_lag)
{
    int64_t warn_lag = th && th->warn_lag >= 0 ? th->warn_lag : default_warn_lag;

    if (warn_lag >= 0 && s->lag > warn_lag)
        return true;
    return th && th->warn_lag_seconds >= 0 && s->lag_seconds >= 0 &&
           s->lag_seconds > th->warn_lag_seconds;
}

static bl_lag_status_t judge(const bl_lag_sample_t **s, size_t n, bool full,
                          const bl_lag_thresholds_t *th)
{
    const bl_lag_sample_t *newest = s[n - 1];
    /* A member is consuming, and no window full of evidence says otherwise
     * yet: a short window cannot tell a busy consumer between two commits
     * from a stuck one. */
    bool too_early = newest->owner == BL_LAG_OWNER_MEMBER && (!full || n == 1);

    if (rewound(s, n))
        return BL_LAG_REWIND;
    if (!any_zero_lag(s, n) && !too_early) {
        if (n == 1) {
            /* No trend, and nobody known to consume: only the size of the
             * lag speaks. Without a threshold any lag warns; with one, lag
             * within it is OK. */
            bool has_threshold = th && (th->warn_lag >= 0 || th->warn_lag_seconds >= 0);
            return over_threshold(newest, th, has_threshold ? -1 : 0) ? BL_LAG_WARN
                                                                      : BL_LAG_OK;
        }
        if (committed_unchanged(s, n))
            return full ? BL_LAG_STOP : BL_LAG_STALL;
        if (lag_grew_throughout(s, n))
            return BL_LAG_WARN;
    }
    return over_threshold(newest, th, -1) ? BL_LAG_WARN : BL_LAG_OK;
}

bl_lag_status_t bl_lag_evaluate(const bl_lag_window_t *w, const bl_lag_thresholds_t *th)
{
    const bl_lag_sample_t **s;
    bl_lag_status_t status;
    size_t n;

    if (!w->count || !bl_lag_window_at(w, w->count - 1)->ok)
        return BL_LAG_ERR;
    if (!(s = malloc(w->count * sizeof(*s))))
        return BL_LAG_ERR;
    n = collect(w, s);
    /* A full window of readable samples is needed to say "for longer than
     * the window": an unreadable sample in between leaves it partial. */
    status = judge(s, n, n == w->capacity, th);
    free(s);
    return status;
}
