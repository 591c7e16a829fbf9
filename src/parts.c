/*
 * parts.c - the partitions of a consumer: lookup, assignment and retirement
 * (orphans, freed once nothing refers to them), the first and last steps of
 * a rewind, and the message pool (inline in parts.h). Poll thread, but for
 * bl_part_flag_rewind().
 */
#include "parts.h"

#include <stdio.h>

bl_part_t *bl_part_find(ballast_consumer_t *c, const char *topic, int32_t partition)
{
    bl_part_t *p = c->parts.last;

    if (p && p->partition == partition && !strcmp(p->topic, topic))
        return p;
    for (p = c->parts.list; p; p = p->next)
        if (p->partition == partition && !strcmp(p->topic, topic))
            return c->parts.last = p;
    return NULL;
}

static void part_free(bl_part_t *p)
{
    bl_tracker_free(&p->tracker);
    bl_skipset_free(&p->skip);
    free(p->stored_meta);
    free(p->topic);
    free(p);
}

static bl_part_t *part_new(ballast_consumer_t *c, const char *topic, int32_t partition)
{
    bl_part_t *p = calloc(1, sizeof(*p));

    if (!p || !(p->topic = bl_strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->stored = -1;
    p->committed = -1;
    p->last_ts = -1;
    bl_tracker_init(&p->tracker);
    atomic_init(&p->revoked, false);
    atomic_init(&p->rewind, false);
    p->worker = bl_route_partition(topic, partition, c->set.nworkers);
    return p;
}

bl_part_t *bl_parts_add(ballast_consumer_t *c, const char *topic, int32_t partition)
{
    bl_part_t *p = part_new(c, topic, partition);

    if (p) {
        p->next = c->parts.list;
        c->parts.list = p;
    }
    return p;
}

void bl_part_drop_held(ballast_consumer_t *c, bl_part_t *p)
{
    bl_msg_t *m;

    while ((m = bl_queue_pop(&p->held))) {
        m->fate = BL_FATE_DROPPED;
        bl_msg_release(c, m);
    }
}

/* Makes @p p, already out of the partition list, an orphan: workers drop
 * its messages that have not started, and bl_parts_sweep() frees it once
 * nothing refers to it. */
static void part_orphan(ballast_consumer_t *c, bl_part_t *p)
{
    if (c->parts.last == p)
        c->parts.last = NULL;
    atomic_store(&p->revoked, true);
    bl_part_drop_held(c, p);
    p->orphan = true;
    p->next = c->parts.orphans;
    c->parts.orphans = p;
}

void bl_part_retire(ballast_consumer_t *c, bl_part_t *p)
{
    for (bl_part_t **pp = &c->parts.list; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    part_orphan(c, p);
}

void bl_parts_sweep(ballast_consumer_t *c)
{
    for (bl_part_t **pp = &c->parts.orphans; *pp;) {
        bl_part_t *p = *pp;
        if (p->inflight == 0) {
            *pp = p->next;
            part_free(p);
        } else {
            pp = &p->next;
        }
    }
}

uint64_t bl_parts_orphaned(const ballast_consumer_t *c)
{
    uint64_t n = 0;

    for (const bl_part_t *p = c->parts.orphans; p; p = p->next)
        n += p->inflight;
    return n;
}

size_t bl_parts_count(const ballast_consumer_t *c)
{
    size_t n = 0;

    for (const bl_part_t *p = c->parts.list; p; p = p->next)
        n++;
    return n;
}

void bl_parts_free(ballast_consumer_t *c)
{
    bl_part_t *p;

    while ((p = c->parts.list)) {
        c->parts.list = p->next;
        part_free(p);
    }
    while ((p = c->parts.orphans)) {
        c->parts.orphans = p->next;
        part_free(p);
    }
    while (c->parts.free_msgs) {
        bl_msg_t *m = c->parts.free_msgs;
        c->parts.free_msgs = m->next;
        free(m);
    }
}

/* ---- rewinds ----------------------------------------------------------------- */

void bl_part_flag_rewind(ballast_consumer_t *c, bl_part_t *p)
{
    atomic_store(&p->rewind, true);
    atomic_store(&c->parts.rewind_wanted, true);
}

void bl_parts_flag_all(ballast_consumer_t *c)
{
    for (bl_part_t *p = c->parts.list; p; p = p->next)
        bl_part_flag_rewind(c, p);
}

rd_kafka_topic_partition_list_t *bl_parts_reset_flagged(ballast_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);

    for (bl_part_t **pp = &c->parts.list; *pp;) {
        bl_part_t *p = *pp, *fresh;
        if (!atomic_load(&p->rewind)) {
            pp = &p->next;
            continue;
        }
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
        if (!(fresh = part_new(c, p->topic, p->partition))) {
            bl_set_fatal(c, bl_error_new(BALLAST_ERR_INTERNAL, false, true,
                                         "out of memory while rewinding"));
            *pp = p->next;
        } else {
            fresh->paused = p->paused;
            fresh->committed = p->committed;
            fresh->next = p->next;
            *pp = fresh;
            pp = &fresh->next;
        }
        /* Its in-flight messages are dropped with it. */
        part_orphan(c, p);
    }
    return list;
}

void bl_parts_seek(ballast_consumer_t *c, const rd_kafka_topic_partition_list_t *list)
{
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, tp->topic, NULL);
        int64_t to = tp->offset >= 0 ? tp->offset : RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_resp_err_t err;

        if (!rkt)
            continue;
        /* Blocking, so that the fetch version is bumped before the next
         * poll: messages fetched before the seek are then discarded. (An
         * asynchronous seek lets a few stale, later messages through,
         * which would break order.) */
        if ((err = rd_kafka_seek(rkt, tp->partition, to, REWIND_TIMEOUT_MS)))
            bl_log(&c->log, BALLAST_LOG_WARN, "%s [%d]: seek to %lld failed: %s",
                   tp->topic, (int)tp->partition, (long long)to, rd_kafka_err2str(err));
        rd_kafka_topic_destroy(rkt);
    }
}

const char *bl_parts_name(const rd_kafka_topic_partition_list_t *list, char *buf,
                          size_t size)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < list->cnt && n < size; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        bool same = i > 0 && !strcmp(tp->topic, list->elems[i - 1].topic);
        int w = snprintf(buf + n, size - n, "%s%s%s%d", same ? ", " : i ? "], " : "",
                         same ? "" : tp->topic, same ? "" : " [", (int)tp->partition);
        n += w > 0 ? (size_t)w : 0;
    }
    if (n + 2 < size && list->cnt)
        memcpy(buf + n, "]", 2);
    else if (size > 4)
        memcpy(buf + size - 4, "...", 4);
    return buf;
}
