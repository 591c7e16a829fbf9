/*
 * dlq_group.h - `ballast dlq replay`'s state (dlq_replay.c), and its
 * consumer group on the DLQ (dlq_group.c), which the replay calls.
 */
#ifndef BALLAST_DLQ_GROUP_H
#define BALLAST_DLQ_GROUP_H

#include "dlq.h"
#include "dlq_track.h"

typedef struct topic_info {
    char *name;
    rd_kafka_topic_t *rkt; /* the producer's handle, kept for its metadata */
    int partitions;        /* 0: does not exist; -1: unknown (reason) */
    char reason[300];
} topic_info_t;

/* The DLQ record a produced record came from: its delivery report's opaque. */
typedef struct in_flight {
    int32_t partition;
    int64_t offset;
} in_flight_t;

/* Where a dead-letter record's original was. */
typedef struct origin {
    char topic[256];
    int32_t partition;
    int64_t offset;
} origin_t;

typedef struct replay {
    const dlq_opts_t *o;
    dlq_reader_t *r;
    rd_kafka_t *prod;  /* NULL in a dry run */
    rd_kafka_t *admin; /* --group: the group's offsets; NULL without */
    topic_info_t *topics;
    size_t ntopics;
    dlq_origins_t *origins;
    dlq_progress_t *progress;
    int64_t *committed; /* --group: its offsets, as last committed (-1: none) */
    bool indexing;      /* the first pass is running */
    bool tty;
    double started, last_progress, next_token_at, last_commit;
    int64_t started_wall;
    uint64_t indexed, scanned, matched, sent, skipped, duplicates, unroutable, held_back,
        not_sent;
    /* Updated by delivery reports (on this thread, inside rd_kafka_poll). */
    uint64_t delivered, failed;
    char first_failure[400];
    char fatal[512];
    char commit_error[400];
    unsigned notes;
    bool limit_reached;
} replay_t;

/* ---- the group on the DLQ (dlq_group.c) ------------------------------------ */

/** Refuses a group that has members: its committed offsets are theirs, and
 *  a commit from outside would move a consumer (the broker would refuse it
 *  anyway, but only after the records went out). @returns 0 or an exit
 *  code after printing why. */
int dlq_group_check_unused(replay_t *rp);
/** Reads the group's committed offsets on the DLQ into rp->committed.
 *  @returns 0 or 1 after printing why. */
int dlq_group_read(replay_t *rp);
/** Commits each partition's settled position where it moved. @returns 0,
 *  or -1 with the reason in rp->commit_error. */
int dlq_group_commit(replay_t *rp);
/** "0:12, 1:7": up to where each partition is settled. */
void dlq_group_positions(const replay_t *rp, char *buf, size_t size);

#endif
