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

/* One ListConsumerGroupOffsets request: bl_lag_read_committed() without
 * asking again. */
static rd_kafka_resp_err_t read_committed_once(rd_kafka_t *rk, const char *group,
                                               const rd_kafka_topic_partition_list_t *want,
                                               int timeout_ms, bl_lag_offsets_t *out,
                                               char *errbuf, size_t errsize)
{
    rd_kafka_ListConsumerGroupOffsets_t *req =
        rd_kafka_ListConsumerGroupOffsets_new(group, want);
    rd_kafka_resp_err_t err;
    bl_admin_t a;

    bl_admin_start(&a, rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout_ms);
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, a.opts, a.q);
    if (bl_admin_answer(&a, "ListConsumerGroupOffsets", &err, errbuf, errsize)) {
        size_t n = 0;
        const rd_kafka_group_result_t **groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(a.ev), &n);
        const rd_kafka_error_t *gerr = n ? rd_kafka_group_result_error(groups[0]) : NULL;

        /* A broker may answer "no such group" here rather than with no
         * offsets: the caller decides whether the group exists. */
        if (gerr && rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            err = rd_kafka_error_code(gerr);
            snprintf(errbuf, errsize, "group %s: %s", group, rd_kafka_error_string(gerr));
        } else if (!gerr && n) {
            err = copy_offsets(rd_kafka_group_result_partitions(groups[0]), out, errbuf,
                               errsize);
        }
    }
    bl_admin_end(&a);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    return err;
}

rd_kafka_resp_err_t bl_lag_read_committed(rd_kafka_t *rk, const char *group,
                                          const rd_kafka_topic_partition_list_t *want,
                                          int timeout_ms, bl_lag_offsets_t *out,
                                          char *errbuf, size_t errsize)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    rd_kafka_resp_err_t err;

    memset(out, 0, sizeof(*out));
    while (bl_lag_coordinator_moving(
               err = read_committed_once(rk, group, want, timeout_ms, out, errbuf, errsize)) &&
           bl_now_ms() < deadline)
        bl_sleep_ms(100);
    return err;
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
