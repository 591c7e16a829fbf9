/*
 * chaos.h - what the fault tests share: a seeded schedule of faults that a
 * seed replays, a producer that keeps messages in flight while faults
 * happen, the group's progress, a log of the faults injected (each checked
 * to have hit while messages were being processed), and the history checker
 * (no loss, no duplicates where promised, order per key).
 *
 * Used by tests/integration/test_chaos.c (processes and the broker),
 * test_netfault.c (network faults, scripts/netlab) and test_cluster.c (a
 * replicated cluster).
 */
#ifndef BALLAST_TEST_CHAOS_H
#define BALLAST_TEST_CHAOS_H

#include "support.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- a seeded random number generator ---------------------------------- */

/** splitmix64: the same seed gives the same numbers on every machine (rand()
 *  is the libc's). */
typedef struct bt_rng {
    uint64_t state;
} bt_rng_t;

/** The seed of this run: CHAOS_SEED when set (a replay), otherwise a new
 *  one. Prints "<what>: seed N (replay: CHAOS_SEED=N ...)". */
uint64_t bt_chaos_seed(const char *what);
/** A generator for @p seed; @p stream keeps independent draws apart (one per
 *  mode, say) under one seed. */
bt_rng_t bt_rng(uint64_t seed, uint64_t stream);

/* ---- the schedule -------------------------------------------------------- */

/** One planned fault: its kind (the test's own numbering), its victim (an
 *  instance or broker index), a parameter (a duration in ms, say), and when:
 *  after the group has processed @c after more messages. */
typedef struct bt_fault {
    int kind, victim, param_ms;
    long after;
} bt_fault_t;

/** A schedule: every kind of [0, kinds) at least once in a seeded order,
 *  then random kinds, @p count faults in all (at least @p kinds). Victims
 *  are drawn from [0, victims); param_ms from [param_lo, param_hi];
 *  @c after from [after_lo, after_hi]. Caller frees. */
bt_fault_t *bt_schedule(bt_rng_t *r, int kinds, int count, int victims, int param_lo,
                        int param_hi, long after_lo, long after_hi);
/** How many faults a run of @p seconds gets: one per @p per_fault seconds,
 *  at least @p kinds. */
int bt_schedule_count(const char *seconds_env, int default_seconds, int per_fault, int kinds);
/** Prints the schedule, kinds named by @p names. */
void bt_schedule_print(const bt_fault_t *f, int n, const char *const *names);

/* ---- a producer that keeps messages in flight --------------------------- */

/** Produces sequenced messages (value "<i>", key "k<i % keys>", partition
 *  i % partitions, as bt_produce_seq()) on a thread of its own at about
 *  @p per_second, idempotently, until stopped. */
typedef struct bt_feeder bt_feeder_t;
bt_feeder_t *bt_feeder_start(const char *bootstrap, const char *topic, int partitions,
                             int keys, int per_second);
/** Stops producing, waits for every delivery; fails the test if any message
 *  was not delivered. @returns the number produced (values 0..n-1). */
long bt_feeder_stop(bt_feeder_t *f);

/* ---- progress and the fault log ----------------------------------------- */

/** Offsets @p group committed on partitions 0..n-1 of @p topic, summed (none:
 *  0): the messages it has processed, as far as the broker knows. */
long bt_group_progress(const char *bootstrap, const char *group, const char *topic, int n);

/** What the checker knows of each fault injected. */
typedef struct bt_fault_log {
    int count;
    struct {
        char what[96];
        long processed, produced; /* at the moment of injection */
    } entry[256];
} bt_fault_log_t;

/** Notes a fault (@p what is printed) as it is injected, with the progress
 *  and the production at that moment. */
void bt_fault_note(bt_fault_log_t *log, const char *what, long processed, long produced);
/** Every fault hit while messages were being processed: consumption had
 *  started (something was processed) and messages were in flight (produced
 *  but not yet processed). Fails the test naming the first that did not. */
void bt_fault_log_check(const bt_fault_log_t *log);

/** A moment when messages are in flight: waits (up to 10 s) until the group
 *  has processed fewer than @p feeder has had acknowledged, and stores both
 *  counts. */
void bt_in_flight_moment(const char *bootstrap, const char *group, const char *topic, int n,
                         bt_feeder_t *feeder, long *processed, long *produced);

/** Waits until bt_group_progress() reaches @p target; fails the test, saying
 *  @p what, when it does not within @p timeout_ms. @returns the progress. */
long bt_wait_progress(const char *bootstrap, const char *group, const char *topic, int n,
                      long target, int timeout_ms, const char *what);

/* ---- the history checker --------------------------------------------------- */

/** The verdict on an output history of sequenced inputs 0..produced-1. */
typedef struct bt_verdict {
    size_t records;
    long lost, duplicates, reorders;
    long first_lost[20]; /* the first min(lost, 20) lost sequence numbers */
} bt_verdict_t;

/** Checks @p n output records whose value is an input's sequence number and
 *  whose key is its key ("k<seq % keys>"): every input appears (no loss), how
 *  many appear more than once, and per key whether a first delivery is older
 *  than one already seen (out of order). Fails the test on a record that
 *  has no valid origin. */
bt_verdict_t bt_check_history(const bt_record_t *recs, size_t n, long produced, int keys);
/** Fails the test on loss or reordering, and on duplicates when
 *  @p exactly_once; prints the verdict under @p label first. */
void bt_assert_verdict(const bt_verdict_t *v, bool exactly_once, const char *label);
/** For a replay's debugging: prints where each of @p v's first lost records
 *  sits in @p in (partition, offset) and whether @p out holds it outside the
 *  committed history (in an aborted or still open transaction). */
void bt_explain_lost(const char *bootstrap, const char *in, const char *out,
                     const bt_verdict_t *v);

/* ---- the delivery modes the fault tests run ------------------------------- */

typedef enum bt_chaos_mode {
    BT_AT_LEAST_ONCE, /* forward to a topic, at-least-once */
    BT_EXACTLY_ONCE,  /* forward to a topic in Kafka transactions */
    BT_POSTGRES       /* the postgres handler, exactly-once into the database */
} bt_chaos_mode_t;

/** The mode's name: "at-least-once", "exactly-once" or "postgres". */
const char *bt_chaos_mode_name(bt_chaos_mode_t mode);
/** Whether CHAOS_MODES (a comma list of mode names; unset or empty: all)
 *  asks for @p mode, so that the long form can run each in a process of
 *  its own. */
bool bt_chaos_mode_wanted(bt_chaos_mode_t mode);
/** Makes the output of a run in @p mode: a topic of @p partitions named
 *  after @p prefix, or (BT_POSTGRES) a table with no unique constraint whose
 *  identity column keeps the insertion order. @returns its name (the table's
 *  in @p table, of @p size bytes). */
const char *bt_chaos_output(bt_chaos_mode_t mode, const char *bootstrap, const char *prefix,
                            int partitions, char *table, size_t size);
/** What @p mode adds to member @p member's configuration, writing to
 *  @p out: forward with key order (a transactional.id of the member's own
 *  under BT_EXACTLY_ONCE), or batches of `INSERT INTO out (k, v) VALUES
 *  (:key, <value>)` exactly-once into PostgreSQL. */
void bt_chaos_member_conf(char *buf, size_t size, bt_chaos_mode_t mode, const char *out,
                          const char *group, int member, const char *value);

#endif
