/*
 * support.h - helpers shared by the mock, cli and integration suites:
 * unique names, producing, reading committed offsets and watermarks,
 * running the `ballast` command, and waiting for conditions with deadlines.
 */
#ifndef BALLAST_TEST_SUPPORT_H
#define BALLAST_TEST_SUPPORT_H

#include <ballast/ballast.h>

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <setjmp.h>
#include <cmocka.h>

/** The real broker from `scripts/testenv up`, or NULL (tests then skip). */
const char *bt_bootstrap(void);
/** The PostgreSQL connection string from `scripts/testenv up`, or NULL. */
const char *bt_pg(void);
/** BALLAST_TEST_PG_PW_DSN: the same database as role ballast_pw, which must
 *  log in with its password (all others are trusted). Fails the test when
 *  unset. */
const char *bt_pg_pw_dsn(void);
/** Fails the test unless @p text is exactly one line containing
 *  @p fragment (NULL: any). */
void bt_assert_one_line(const char *text, const char *fragment);
/** Fails the current test unless the real test environment is up: an
 *  integration test that silently skipped would prove nothing. */
#define BT_REQUIRE_ENV()                                                     \
    do {                                                                     \
        if (!bt_bootstrap())                                                 \
            fail_msg("BALLAST_TEST_BOOTSTRAP is unset: run the suite via "   \
                     "`make test` (it starts scripts/testenv)");             \
    } while (0)

/* ---- the consumer group protocol ------------------------------------------ */

/** Whether the suite runs its groups on the consumer group protocol
 *  (KIP-848): BALLAST_TEST_GROUP_PROTOCOL=consumer. The default, classic,
 *  uses ballast's default assignor (cooperative-sticky), or
 *  BALLAST_TEST_ASSIGNOR (partition.assignment.strategy) when set.
 *  tests/CMakeLists.txt runs the suites about group membership a second
 *  time with the consumer protocol. */
bool bt_consumer_protocol(void);
/** That protocol's name, as librdkafka's group.protocol, the status
 *  document and `ballast lag` give it: "classic" or "consumer". */
const char *bt_group_protocol(void);
/** A plain librdkafka consumer in @p group (group.protocol @p protocol, client.id
 *  @p client_id, auto-commit off), subscribed to @p topic and polled until it holds
 *  @p partitions of its partitions (0: any); fails the test after 60 s. The caller
 *  closes and destroys it. */
rd_kafka_t *bt_member_start(const char *group, const char *topic, const char *protocol,
                            const char *client_id, int partitions);
/** The same from @p conf (a consumer's, which this takes over): subscribed
 *  to @p topic and polled until it holds @p partitions of its partitions
 *  (0: any); fails the test after @p timeout_ms. */
rd_kafka_t *bt_member_join(rd_kafka_conf_t *conf, const char *topic, int partitions,
                           int timeout_ms);
/** Config-file lines ("key = value\n") for a member of a test group under
 *  that protocol. Classic: a 6 s session with 500 ms heartbeats, so that a
 *  killed member's partitions move within seconds, and the assignor of
 *  BALLAST_TEST_ASSIGNOR. Consumer: kafka.group.protocol = consumer (the
 *  broker sets the session and heartbeat; scripts/testenv gives it the
 *  same 6 s and 500 ms). */
const char *bt_group_lines(void);
/** Sets the keys of bt_group_lines() on @p conf. */
void bt_set_group(ballast_conf_t *conf);
/** Config-file lines for incremental (cooperative) rebalancing: the
 *  cooperative-sticky assignor under classic, nothing under the consumer
 *  protocol, which always is. */
const char *bt_cooperative_lines(void);
/** Sets the keys of bt_cooperative_lines() on @p conf. */
void bt_set_cooperative(ballast_conf_t *conf);

/* ---- tests of bugs not fixed yet ------------------------------------------ */

/** A test that shows a bug not fixed yet, in a suite's table instead of
 *  cmocka_unit_test(f). It stays out of the suite's own run (which stays
 *  green); tests/CMakeLists.txt gives such a suite a second ctest entry,
 *  labelled known-bug, that runs only these tests, and only when asked:
 *  `BALLAST_KNOWN_BUGS=1 ctest -L known-bug` (otherwise it reports itself
 *  skipped). When the bug is fixed, make it a cmocka_unit_test again. */
#define bt_known_bug(f) {"known bug: " #f, f, NULL, NULL, NULL}
/** cmocka_run_group_tests() that honours bt_known_bug(). */
#define bt_run_group_tests(tests, setup, teardown)                                     \
    bt_run_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)
int bt_run_group(const char *name, const struct CMUnitTest *tests, size_t count,
                 CMFixtureFunction setup, CMFixtureFunction teardown);

/** A name unique to this process and call ("prefix-<pid>-<n>-<time>"),
 *  in a static ring of buffers (valid for the next 16 calls). */
const char *bt_unique(const char *prefix);

/** Adds an ACL on @p bootstrap (whose PLAINTEXT clients are super users)
 *  that denies @p principal ("User:NAME") @p operation on the resource
 *  @p name of @p type, from any host; asserts success. */
void bt_deny(const char *bootstrap, rd_kafka_ResourceType_t type, const char *name,
             const char *principal, rd_kafka_AclOperation_t operation);
/** Creates a topic on @p bootstrap with the admin API, replicated as the
 *  broker's default.replication.factor says; asserts success. */
void bt_create_topic(const char *bootstrap, const char *topic, int partitions);
/** As bt_create_topic(), with topic configs: @p config is NULL or a
 *  NULL-terminated list of name, value pairs (e.g. "max.message.bytes",
 *  "200", NULL), to make the broker refuse or stall what is sent to it. */
void bt_create_topic_conf(const char *bootstrap, const char *topic, int partitions,
                          const char *const *config);
/** Replaces the topic's configs with @p config (pairs as above; the
 *  non-incremental AlterConfigs: what is not named goes back to the
 *  broker's default); asserts success. */
void bt_alter_topic_conf(const char *bootstrap, const char *topic,
                         const char *const *config);

/** Produces messages with key "k<i % keys>" (keys 0: no key) and value
 *  "<i>" for i in [first, first+count), to partition i % partitions, or by
 *  key when @p partitions is 0. Waits for every delivery; asserts success. */
void bt_produce_seq(const char *bootstrap, const char *topic, int partitions,
                    int first, int count, int keys);
/** As bt_produce_seq(), with each value padded with '.' to @p value_len
 *  bytes (when longer than "<i>"). */
void bt_produce_seq_sized(const char *bootstrap, const char *topic, int partitions,
                          int first, int count, int keys, size_t value_len);

/** Commits @p offsets (-1: none) for partitions 0..n-1 of @p topic for
 *  @p group without joining it (a "simple" commit, which the broker accepts
 *  for a group without members). */
void bt_commit(const char *bootstrap, const char *group, const char *topic,
               const int64_t *offsets, int n);
/** Committed offsets of @p group for partitions 0..n-1 of @p topic
 *  (-1001 when none). Does not join the group. */
void bt_committed(const char *bootstrap, const char *group, const char *topic,
                  int n, int64_t *out);
/** Waits up to @p timeout_ms until @p group's committed offsets equal the
 *  high watermarks of partitions 0..n-1. @returns whether they did. */
bool bt_wait_committed_to_end(const char *bootstrap, const char *group,
                              const char *topic, int n, int timeout_ms);
/** High watermarks of partitions 0..n-1. */
void bt_high_watermarks(const char *bootstrap, const char *topic, int n,
                        int64_t *out);

/** A record read back by bt_consume_all(). */
typedef struct bt_record {
    int32_t partition;
    int64_t offset;
    char *key, *value; /* NUL-terminated copies, NULL when absent */
} bt_record_t;
/** Reads every record of @p topic from the beginning with a group-less
 *  consumer (read_committed), until @p expect records arrived or
 *  @p timeout_ms passed. Caller frees with bt_records_free(). */
bt_record_t *bt_consume_all(const char *bootstrap, const char *topic,
                            size_t expect, int timeout_ms, size_t *countp);
void bt_records_free(bt_record_t *recs, size_t count);
/** Reads @p topic from the beginning to its end and stops when every
 *  partition reported it (read_committed: the end counts once the last
 *  stable offset reached the high watermark, no transaction left open).
 *  Fails the test after @p timeout_ms. */
bt_record_t *bt_consume_to_end(const char *bootstrap, const char *topic,
                               int timeout_ms, size_t *countp);
/** How many times a bt_consume_to_end() reader found a transaction open
 *  at a partition's read_committed end and waited for it. */
int bt_reader_open_txn_waits(void);
/** Reads @p topic from the beginning to its high watermark read_uncommitted:
 *  records of aborted and open transactions too. */
bt_record_t *bt_consume_uncommitted(const char *bootstrap, const char *topic,
                                    int timeout_ms, size_t *countp);
/** Sum of the high watermarks of partitions 0..n-1. */
int64_t bt_total_watermark(const char *bootstrap, const char *topic, int n);

/** One query's single integer on BALLAST_TEST_PG, or -1 when the database
 *  cannot answer (down, or no such row). */
long bt_pg_long(const char *sql);
/** Runs @p sql on BALLAST_TEST_PG; fails the test if it fails. */
void bt_pg_exec(const char *sql);
/** Every row of @p sql (two text columns: key, value) as records, in the
 *  query's order; fails the test if the query fails. */
bt_record_t *bt_pg_records(const char *sql, size_t *countp);

/** The last header @p name of @p h as text (its first @p size - 1 bytes), or ""
 *  when there is none or it has no value. */
void bt_header_text(rd_kafka_headers_t *h, const char *name, char *out, size_t size);

/** Writes a file from a format string; asserts success. */
void bt_write_file(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** The integer the query @p sql returns from the SQLite database at
 *  @p path (read-only, waiting up to 5 s for a lock), or -1. */
long bt_sqlite_long(const char *path, const char *sql);
/** A new temporary directory (in $TMPDIR, else /tmp), removed with its
 *  contents when the suite exits (kept with BALLAST_TEST_KEEP_TMP=1). */
const char *bt_tmpdir(void);

/** Moves this process into network namespace @p name (/run/netns/NAME, as
 *  `ip netns exec` names them); fails the test when it cannot. Call before
 *  any thread starts: threads made later inherit it. */
void bt_netns_enter(const char *name);
/** The `ballast` processes spawned from now on run in network namespace
 *  @p name (NULL: this process's). */
void bt_spawn_netns(const char *name);

/** Starts `ballast` with @p argv (argv[0] is ignored), stdin from
 *  /dev/null, stdout to @p stdout_path (NULL: /dev/null) and stderr to
 *  @p stderr_path (NULL: inherited). Still running at exit: killed. */
pid_t bt_spawn_ballast_io(const char *const *argv, const char *stdout_path,
                          const char *stderr_path);
/** bt_spawn_ballast_io() with stdout to /dev/null. */
pid_t bt_spawn_ballast(const char *const *argv, const char *stderr_path);
/** Sends SIGTERM once the process handles it (its handler is installed at
 *  the start of `ballast run`; before that, SIGTERM would simply kill it),
 *  so that a test's stop is always the graceful one. */
void bt_term(pid_t pid);
/** Waits up to @p timeout_ms for @p pid; @returns its exit code, 128+signal
 *  when killed, or -1 on timeout (the process is then killed). */
int bt_wait(pid_t pid, int timeout_ms);
/** Runs ballast to completion; @returns the exit code; stderr captured in
 *  *stderr_text (caller frees) when non-NULL. */
int bt_run_ballast(const char *const *argv, int timeout_ms, char **stderr_text);
/** What a finished `ballast` run printed. */
typedef struct bt_captured {
    int rc; /* as bt_wait() */
    char *out, *err;
} bt_captured_t;
/** Runs ballast to completion with stdout and stderr captured. */
bt_captured_t bt_run_captured(const char *const *argv, int timeout_ms);
void bt_captured_free(bt_captured_t *c);
/** Runs `ballast ... --help` (@p argv) and fails the test unless every
 *  long option it names (--name) and -X appear, as whole words, in the
 *  document @p doc (a path under the source tree, e.g. "docs/operations.md",
 *  or an absolute path: a rendered manual page, say). */
void bt_assert_options_documented(const char *const *argv, const char *doc);
/** Runs the shell command line built from @p fmt (stdin /dev/null) and
 *  reads back its stdout into *out and its stderr into *err (caller frees
 *  both); with @p err NULL, stderr goes into *out too. @returns its exit
 *  status (128 when it did not exit). */
int bt_sh(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** The DOM of @p url (no quote in it) after @p budget_ms of the page's
 *  (virtual) time in headless Chromium; fails the test when the page
 *  logged to the console or set data-error on <html>. Caller frees
 *  (browser.c). */
char *bt_chromium_dom(const char *url, int budget_ms);
/** Writes a PNG of @p url (no quote in it, nor in @p path) to @p path after
 *  @p budget_ms of the page's time in headless Chromium; fails the test
 *  when the page logged to the console (browser.c). */
void bt_chromium_screenshot(const char *url, const char *path, int budget_ms);
/** Reads a whole file; caller frees. NULL if missing. */
char *bt_read_file(const char *path);

/** A line of the test plugin's log (handler.plugin.param.log, see
 *  tests/cli/plugins/test_plugin.c): which process handled what. */
typedef struct bt_row {
    int pid;
    int partition;
    long long offset;
} bt_row_t;
/** Every row of the log at @p path (none while it does not exist; a last
 *  line without its newline, still being written, is not one); fails the
 *  test on a line that does not parse. Caller frees. */
bt_row_t *bt_plugin_rows(const char *path, size_t *countp);

/** Milliseconds on a monotonic clock. */
int64_t bt_now_ms(void);
/** Polls @p cond every 20 ms until it returns true or @p timeout_ms passes;
 *  @returns whether it became true. */
bool bt_wait_for(bool (*cond)(void *), void *arg, int timeout_ms);

/** Whether the file at @p path contains @p text. */
bool bt_file_has(const char *path, const char *text);
/** Waits up to @p timeout_ms until the file at @p path contains @p text
 *  (a `ballast` process's log, say); @returns whether it did. */
bool bt_wait_file_has(const char *path, const char *text, int timeout_ms);

/* ---- librdkafka's mock cluster ------------------------------------------- */

typedef struct bt_mock {
    rd_kafka_t *host;
    struct rd_kafka_mock_cluster_s *mc;
    const char *bootstrap;
} bt_mock_t;
/** Starts a one-broker mock cluster with @p topic of @p partitions. */
void bt_mock_start(bt_mock_t *m, const char *topic, int partitions);
void bt_mock_stop(bt_mock_t *m);

/* ---- the daemon's HTTP endpoint ------------------------------------------ */

typedef struct bt_http_reply {
    int status; /* 0 when the connection failed */
    char *headers, *body;
} bt_http_reply_t;
void bt_http_reply_free(bt_http_reply_t *r);
/** One HTTP/1.0 request to @p addr ("127.0.0.1:PORT"). */
bt_http_reply_t bt_http_request(const char *addr, const char *method, const char *path);
bt_http_reply_t bt_http_get(const char *addr, const char *path);
/** A TCP port on 127.0.0.1 that nothing listens on (just released). */
int bt_free_port(void);
/** Waits for "listening on ADDR" in the stderr file of a starting `ballast`
 *  and copies ADDR; fails the test if it exits first or after 60 s. */
void bt_wait_listening(const char *err_path, pid_t pid, char *addr, size_t size);
/** The value of the sample @p name on @p addr's /metrics (NAME, or
 *  NAME{LABELS} for labels besides the consumer group, which every ballast
 *  sample carries first), or -1 (not served, or no such sample). */
double bt_metric(const char *addr, const char *name);

/* ---- a process's resources ----------------------------------------------- */

/** What /proc says a process holds. */
typedef struct bt_proc_usage {
    int fds;      /* open file descriptors */
    int threads;
    long rss_kib; /* VmRSS */
    int children; /* child processes, zombies included */
    int zombies;  /* children exited and not reaped */
} bt_proc_usage_t;
/** Reads /proc for @p pid; fails the test when it cannot. */
bt_proc_usage_t bt_proc_usage(pid_t pid);

/* ---- an in-process recording handler ---------------------------------- */

/** What the recording handler saw: one entry per handler call. */
typedef struct bt_seen {
    char topic[128];
    int32_t partition;
    int64_t offset;
    char key[64];
    char value[64];
    int attempt;
} bt_seen_t;

typedef struct bt_recorder {
    void *mtx; /* pthread_mutex_t, opaque here */
    bt_seen_t *seen;
    size_t count, cap;
    /* Optional fault: fail messages whose value equals fail_value with
     * fail_outcome (BALLAST_OUTCOME_FAIL or _RETRY), fail_times times
     * (0 = always). */
    const char *fail_value;
    ballast_outcome_t fail_outcome;
    int fail_times, failed;
    /* Also fail (with fail_outcome) every value divisible by fail_modulo. */
    long fail_modulo;
    int sleep_ms; /* per message */
    const char *slow_value; /* this value sleeps slow_ms instead */
    int slow_ms;
    /* Parallelism as the handler itself sees it: calls in the handler now
     * and at most, and calls that started while another call of the same
     * key was running (0 when per-key order holds). */
    int active, max_active, key_overlaps;
    /* A rendezvous: the first calls wait in the handler until this many
     * run at once (rendezvous_met is then set), or give up after 60 s. */
    int rendezvous, rendezvous_met;
    /* A gate: while gated, each call waits for a token from
     * bt_recorder_release() or for the gate to open (no deadline: open it
     * before stopping the consumer). */
    int gated, tokens;
    void *cond; /* pthread_cond_t, opaque here */
    char (*active_keys)[64];
} bt_recorder_t;

bt_recorder_t *bt_recorder_new(void);
void bt_recorder_free(bt_recorder_t *r);
size_t bt_recorder_count(bt_recorder_t *r);
/** Waits until @p r counted at least @p want messages; fails the test with
 *  how many it saw when @p timeout_ms passes first. */
void bt_recorder_wait_count(bt_recorder_t *r, size_t want, int timeout_ms);
/** Lets @p n more calls through the gate. */
void bt_recorder_release(bt_recorder_t *r, int n);
/** Opens the gate for good. */
void bt_recorder_open(bt_recorder_t *r);
/** Counts handler calls with outcome OK (attempts that did not fail). */
extern const ballast_handler_t bt_recording_handler;

/** A consumer running on its own thread. */
typedef struct bt_runner bt_runner_t;
/** Makes a consumer from @p conf (not taken) and runs it on a thread;
 *  asserts that ballast_consumer_new succeeded. */
bt_runner_t *bt_runner_start(const ballast_conf_t *conf);
/** Stops the consumer, joins, destroys; @returns the run's error (caller
 *  destroys) or NULL. */
ballast_error_t *bt_runner_stop(bt_runner_t *r);
/** Waits for the run to end by itself (a fatal error) for up to timeout. */
ballast_error_t *bt_runner_join(bt_runner_t *r, int timeout_ms);
ballast_consumer_t *bt_runner_consumer(bt_runner_t *r);
/** For bt_wait_for(): true once the runner (@p run) got its first
 *  assignment. */
bool bt_runner_assigned(void *run);

/** A handler's init whose state is the opaque the handler was set with
 *  (ballast_conf_set_handler()). */
int bt_opaque_init(void **statep, const ballast_handler_params_t *params, char *errbuf,
                   size_t errsize);
/** A configuration for the real broker with the recording handler. */
ballast_conf_t *bt_conf_recording(const char *bootstrap, const char *group,
                                  const char *topics, bt_recorder_t *rec);
/** ballast_conf_set that asserts success. */
void bt_set(ballast_conf_t *conf, const char *key, const char *value);

#endif
