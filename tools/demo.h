/*
 * demo.h - what the scenarios of `ballast demo` share.
 *
 * Each scenario is one function (in its own demo_*.c file) plus one row in
 * the table of cmd_demo.c. A scenario creates its topics on the embedded
 * broker, produces its input, runs a ballast consumer until every message
 * is handled, then checks an invariant with demo_check(). It uses only
 * ballast's public API, librdkafka's and SQLite's - plus, for the lag
 * scenario, the status rules of `ballast lag` (shared/lag.h) - and may run
 * this very program as a child process (`ballast run`, `ballast lag`) with
 * demo_spawn_self().
 */
#ifndef BALLAST_DEMO_H
#define BALLAST_DEMO_H

#include <ballast/ballast.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/** The environment every scenario runs in. */
typedef struct demo {
    const char *bootstrap; /**< the embedded broker's "host:port" */
    const char *dir;       /**< temporary directory for database files */
    rd_kafka_t *producer;  /**< produces the scenarios' input */
    rd_kafka_mock_cluster_t *mcluster;
    int failed_checks;     /**< of the scenario being run */
    int delivery_errors;   /**< of the producer since the last demo_flush() */
} demo_t;

/** A scenario: @returns 0 when it ran to its checks, -1 when it could not
 *  (the reason already printed). It passes when it returned 0 and every
 *  demo_check() held. */
typedef int demo_scenario_fn(demo_t *d);

/** The most partitions a scenario's topic has (for fixed-size arrays). */
#define DEMO_MAX_PARTITIONS 16

/* ---- helpers (cmd_demo.c) ---------------------------------------------- */

/** Makes d->producer, an idempotent producer on the embedded broker whose
 *  delivery reports demo_produce() and demo_flush() use. @returns 0, or -1
 *  (printed). */
int demo_producer_start(demo_t *d);

/** Creates @p topic with @p partitions partitions on the embedded broker. */
int demo_create_topic(demo_t *d, const char *topic, int partitions);

/** Produces one record (value from a printf format) to @p topic, keyed by
 *  @p key (NULL: no key). When @p offsetp is given, the delivery report
 *  raises *offsetp to the record's offset if that is greater. */
int demo_produce(demo_t *d, const char *topic, const char *key,
                 int64_t *offsetp, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** Waits until everything produced is acknowledged. @returns 0, or -1 when
 *  a record could not be delivered. */
int demo_flush(demo_t *d);

/** Puts "<dir>/<file>" in @p buf. */
void demo_path(const demo_t *d, const char *file, char *buf, size_t size);

/** Opens (creating) an SQLite file in the demo directory and runs
 *  @p schema on it. @returns NULL on error (printed). */
sqlite3 *demo_db_open(const demo_t *d, const char *file, const char *schema);

/** The first column of the first row of @p sql as an integer (0 when the
 *  row or value is missing, -1 on error, printed). */
int64_t demo_db_int(sqlite3 *db, const char *sql);

/** A consumer configuration for group @p group reading @p topics from the
 *  embedded broker (settings that suit it and a quiet log level), plus the
 *  scenario's own keys from @p kv: "key", "value", ..., NULL.
 *  @returns NULL when a key is refused (printed). */
ballast_conf_t *demo_conf(const demo_t *d, const char *group,
                          const char *topics, const char *const *kv);

/** Runs a consumer made from @p conf on a thread until its handled
 *  messages (ok + dead-lettered) reach @p expected or a deadline passes,
 *  stops it, prints its timings and counters, and leaves them in *stats.
 *  @returns 0, or -1 when the consumer failed or the deadline passed. */
int demo_consume(demo_t *d, const ballast_conf_t *conf, uint64_t expected,
                 ballast_stats_t *stats);

/** Called by demo_consume_watch() every 5 ms on the watching thread with
 *  the running consumer and its latest counters. @returns true to stop the
 *  consumer now (the run then counts as complete). */
typedef bool demo_watch_fn(ballast_consumer_t *cons,
                           const ballast_stats_t *stats, void *opaque);

/** demo_consume() that also calls @p watch (may be NULL) while it runs. */
int demo_consume_watch(demo_t *d, const ballast_conf_t *conf,
                       uint64_t expected, ballast_stats_t *stats,
                       demo_watch_fn *watch, void *opaque);

/** A consumer handle on the embedded broker, with group.id @p group unless
 *  it is NULL and the further settings @p kv ("name", "value", ..., NULL;
 *  may be NULL). It never subscribes, so it never joins the group.
 *  @returns NULL on error (printed). */
rd_kafka_t *demo_client(const demo_t *d, const char *group, const char *const *kv);

/** Reads, without joining the group, @p group's committed offset (-1 when
 *  none) and the low and high watermarks of partitions 0..partitions-1 of
 *  @p topic into the arrays given (any may be NULL).
 *  @returns 0, or -1 on error (printed). */
int demo_offsets(demo_t *d, const char *group, const char *topic,
                 int partitions, int64_t *committed, int64_t *low,
                 int64_t *high);

/** How many messages of partitions 0..partitions-1 of @p topic lie beyond
 *  @p group's committed offsets (what a restart would deliver again), read
 *  without joining the group. @returns -1 on error (printed). */
int64_t demo_uncommitted(demo_t *d, const char *group, const char *topic,
                         int partitions);

/** Checks the end of a run that handled everything: every one of the
 *  @p produced messages was consumed and handled ok (per @p st), and none
 *  is left past @p group's committed offsets on @p topic, so that a restart
 *  redelivers nothing. */
void demo_check_all_handled(demo_t *d, const ballast_stats_t *st, uint64_t produced,
                            const char *group, const char *topic, int partitions);

/** Starts this very program (/proc/self/exe) with @p argv ("ballast",
 *  COMMAND, ..., NULL), stdin from /dev/null, stdout and stderr to
 *  @p out_path. @returns its pid, or -1 (printed). */
pid_t demo_spawn_self(char *const argv[], const char *out_path);

/** Copies a file (a child's output) to stderr under a heading. */
void demo_show_file(const char *what, const char *path);

/** Prints one line of the scenario's story, indented under its title. */
void demo_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Prints the check described by the format with "ok" or "FAIL" and
 *  counts it against the scenario when @p ok is false. @returns @p ok. */
bool demo_check(demo_t *d, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** A small deterministic pseudo-random generator (xorshift32), so that
 *  every run of the demo produces the same input. */
static inline uint32_t demo_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

#endif
