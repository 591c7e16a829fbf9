/*
 * ballast.h - the one public header of libballast, a Kafka consumer runtime.
 *
 * This header is the contract. Every sentence below is meant to be testable.
 *
 * Conventions:
 *  - Every type is an opaque handle. Objects made by `*_new` are released by
 *    the matching `*_destroy`; `*_destroy(NULL)` is a no-op.
 *  - Functions that can fail return a `ballast_error_t *` (NULL on success).
 *    The caller owns the returned error and releases it with
 *    ballast_error_destroy().
 *  - Strings passed in are copied; the caller keeps ownership of its own.
 *  - Strings returned are owned by the object they came from and stay valid
 *    until that object is modified or destroyed.
 *  - Threading: a handle may be used by one thread at a time unless a
 *    function says otherwise. Handler callbacks run on worker threads; each
 *    worker calls only its own handler state.
 *
 * ABI policy: the library's soname major changes whenever a function is
 * removed or changes signature. BALLAST_HANDLER_ABI_VERSION changes whenever
 * the layout of ballast_handler_t changes; plugins built for another
 * version are refused at load time with a clear error.
 */
#ifndef BALLAST_BALLAST_H
#define BALLAST_BALLAST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BALLAST_API __attribute__((visibility("default")))
#else
#define BALLAST_API
#endif

#define BALLAST_VERSION_MAJOR 0
#define BALLAST_VERSION_MINOR 1
#define BALLAST_VERSION_PATCH 0
#define BALLAST_VERSION_STR "0.1.0"

/** @brief The library's version string, e.g. "0.1.0". */
BALLAST_API const char *ballast_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/** @brief What kind of failure an error describes. */
typedef enum ballast_err_code {
    BALLAST_OK = 0,
    BALLAST_ERR_CONFIG,      /**< a configuration key or value is invalid */
    BALLAST_ERR_UNREACHABLE, /**< broker or database unreachable at start */
    BALLAST_ERR_KAFKA,       /**< a Kafka operation failed at run time */
    BALLAST_ERR_DATABASE,    /**< a database operation failed at run time */
    BALLAST_ERR_HANDLER,     /**< a handler failed permanently */
    BALLAST_ERR_FENCED,      /**< another instance took over (exactly-once) */
    BALLAST_ERR_IO,          /**< a file or process operation failed */
    BALLAST_ERR_INTERNAL,    /**< a bug or resource exhaustion */
    BALLAST_ERR_STOPPED,     /**< a stop was requested before start-up ended */
    BALLAST_ERR_INCOMPLETE,  /**< the stop's drain timed out: in-flight work was
                                  left uncommitted (it comes back on restart) */
    BALLAST_ERR_STALLED      /**< a librdkafka transaction call overran its
                                  timeout (ballast_consumer_stalled()) */
} ballast_err_code_t;

typedef struct ballast_error_s ballast_error_t;

/** @returns the error's code. */
BALLAST_API ballast_err_code_t ballast_error_code(const ballast_error_t *err);
/** @returns a one-line, human-readable description naming what is at fault. */
BALLAST_API const char *ballast_error_message(const ballast_error_t *err);
/** @returns 1 if retrying the same operation later may succeed, else 0. */
BALLAST_API int ballast_error_is_retriable(const ballast_error_t *err);
/** @returns 1 if the object that raised the error cannot be used again. */
BALLAST_API int ballast_error_is_fatal(const ballast_error_t *err);
/** @brief Releases an error. NULL is a no-op. */
BALLAST_API void ballast_error_destroy(ballast_error_t *err);

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

typedef struct ballast_conf_s ballast_conf_t;

/** @brief Creates an empty configuration: every key has its default. */
BALLAST_API ballast_conf_t *ballast_conf_new(void);
/** @brief Releases a configuration. NULL is a no-op. */
BALLAST_API void ballast_conf_destroy(ballast_conf_t *conf);
/** @brief Deep copy. @returns NULL when out of memory. */
BALLAST_API ballast_conf_t *ballast_conf_dup(const ballast_conf_t *conf);

/**
 * @brief Sets one key. Unknown keys and invalid values are refused with a
 *        BALLAST_ERR_CONFIG error naming the key and what was expected.
 *        `kafka.<prop>` keys are checked against librdkafka.
 */
BALLAST_API ballast_error_t *ballast_conf_set(ballast_conf_t *conf,
                                              const char *key,
                                              const char *value);

/**
 * @brief Reads a Java-properties style file (`key = value`, `#` or `!`
 *        comments, `\` line continuation, `${ENV_VAR}` expansion) and sets
 *        each key as ballast_conf_set() would. Errors name file and line.
 */
BALLAST_API ballast_error_t *ballast_conf_load_file(ballast_conf_t *conf,
                                                    const char *path);

/**
 * @brief Checks the rules that span keys (e.g. `handler = sqlite` needs
 *        `handler.sqlite.path`). ballast_consumer_new() calls it too.
 */
BALLAST_API ballast_error_t *ballast_conf_validate(const ballast_conf_t *conf);

/** @brief Flag of ballast_conf_check(): also ask the broker and the database. */
#define BALLAST_CHECK_CONNECT 0x1u

/**
 * @brief Callback for ballast_conf_check(), called once per item checked, in
 *        order, on the calling thread. @p item says what was checked
 *        ("configuration", "SQL statement", "topic orders", "database"...);
 *        @p err is NULL when the item is fine, else why not: a one-line
 *        message naming the key at fault, with the code that
 *        ballast_consumer_new() would fail with. @p err is valid during the
 *        call only.
 */
typedef void (ballast_check_cb)(const char *item, const ballast_error_t *err,
                                void *opaque);

/**
 * @brief Checks, item by item, what ballast_consumer_new() would refuse,
 *        without consuming, joining the group or changing anything.
 *
 * Always: ballast_conf_validate(), then the built-in handler's own keys: the
 * SQL statement's placeholders (`sqlite`, `postgres`), the connection
 * string's syntax (`postgres`), the program of `handler.exec.command` (found
 * in PATH and executable, and an argument naming a script file that exists),
 * the plugin file (`plugin`; it is not loaded). Nothing here uses the
 * network; the database is not opened.
 *
 * With BALLAST_CHECK_CONNECT, also: the broker answers (waiting up to
 * `startup.timeout.ms`; refused credentials or TLS fail at once), each
 * input, retry-tier, output and dead-letter topic exists, and the
 * database: PostgreSQL accepts the login (its refusal is reported at once)
 * and prepares the statements; SQLite opens the file without creating it
 * and prepares the statements. The statements are prepared in a
 * transaction that is rolled back, after creating `ballast_offsets` there
 * first when exactly-once needs it, so the database is left as it was.
 *
 * When validation fails, nothing else is checked.
 *
 * @returns NULL when every item is fine; else an error counting the items
 *          that failed, whose code is BALLAST_ERR_CONFIG when any failed
 *          for a configuration reason, else that of the first failure
 *          (BALLAST_ERR_UNREACHABLE...). Not thread-safe with respect to
 *          changes of @p conf.
 */
BALLAST_API ballast_error_t *ballast_conf_check(const ballast_conf_t *conf,
                                                unsigned flags,
                                                ballast_check_cb *cb,
                                                void *opaque);

/**
 * @returns the effective value of a key (its default when unset), or NULL
 *          when the key is unknown or has no value.
 */
BALLAST_API const char *ballast_conf_get(const ballast_conf_t *conf,
                                         const char *key);

/** @brief Callback for ballast_conf_dump(). */
typedef void (ballast_conf_dump_cb)(const char *key, const char *value,
                                    void *opaque);

/**
 * @brief Calls @p cb for each `kafka.*` key that is set, then every key
 *        that is set or has a default, in table order, then each
 *        `handler.plugin.param.*` key. With @p redact, secrets (passwords,
 *        DSN passwords, keys marked secret) are shown as "[redacted]".
 */
BALLAST_API void ballast_conf_dump(const ballast_conf_t *conf, int redact,
                                   ballast_conf_dump_cb *cb, void *opaque);

/** @brief Callback for ballast_conf_properties(). */
typedef void (ballast_conf_property_cb)(const char *key, const char *type,
                                        const char *default_value,
                                        const char *description,
                                        void *opaque);

/** @brief Lists every known key (the table behind docs/configuration.md). */
BALLAST_API void ballast_conf_properties(ballast_conf_property_cb *cb,
                                         void *opaque);

/* ------------------------------------------------------------------------ */
/* Messages (read-only views handed to handlers)                             */
/* ------------------------------------------------------------------------ */

typedef struct ballast_message_s ballast_message_t;

BALLAST_API const char *ballast_message_topic(const ballast_message_t *msg);
BALLAST_API int32_t ballast_message_partition(const ballast_message_t *msg);
BALLAST_API int64_t ballast_message_offset(const ballast_message_t *msg);
/** @returns the timestamp in milliseconds since the epoch, or -1. */
BALLAST_API int64_t ballast_message_timestamp(const ballast_message_t *msg);
/** @returns the key, or NULL when the message has none (*lenp = 0). */
BALLAST_API const void *ballast_message_key(const ballast_message_t *msg,
                                            size_t *lenp);
/** @returns the value, or NULL for a tombstone (*lenp = 0). */
BALLAST_API const void *ballast_message_value(const ballast_message_t *msg,
                                              size_t *lenp);
/** @returns how many headers the message has. */
BALLAST_API size_t ballast_message_header_count(const ballast_message_t *msg);
/**
 * @brief The @p idx'th header. @returns 0 on success, -1 when out of range.
 *        A header with a null value gives *valuep = NULL.
 */
BALLAST_API int ballast_message_header(const ballast_message_t *msg,
                                       size_t idx, const char **namep,
                                       const void **valuep, size_t *lenp);
/** @brief The last header named @p name. @returns 0 if found, else -1. */
BALLAST_API int ballast_message_header_find(const ballast_message_t *msg,
                                            const char *name,
                                            const void **valuep,
                                            size_t *lenp);
/** @returns 1 for the first delivery to the handler, 2 for the first retry... */
BALLAST_API int ballast_message_attempt(const ballast_message_t *msg);

/**
 * @brief The message's W3C trace context (https://www.w3.org/TR/trace-context/):
 *        its `traceparent` header when that is valid, in version-00 form
 *        ("00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>"); with
 *        `tracing = on`, for a message without a valid one, the context
 *        ballast started for it. A malformed header (wrong length,
 *        uppercase hex, an all-zero id, version ff) counts as absent.
 * @returns a NUL-terminated string owned by the message, valid while the
 *          handler call lasts, or NULL when the message has no context.
 * @remark Records the runtime produces for the message (emitted records,
 *         retry-tier copies, dead letters) carry a child of this context:
 *         the same trace-id and flags and a parent-id of their own.
 */
BALLAST_API const char *ballast_message_traceparent(const ballast_message_t *msg);
/**
 * @brief The message's `tracestate` header (printable ASCII), passed on as
 *        is; kept only beside a valid traceparent.
 * @returns a NUL-terminated string owned by the message, or NULL.
 */
BALLAST_API const char *ballast_message_tracestate(const ballast_message_t *msg);

/* ------------------------------------------------------------------------ */
/* Handler results                                                           */
/* ------------------------------------------------------------------------ */

/** @brief What a handler says about a message. */
typedef enum ballast_outcome {
    BALLAST_OUTCOME_OK = 0, /**< done; its offset may be committed */
    BALLAST_OUTCOME_RETRY,  /**< transient failure: retry with back-off;
                                 counts as an attempt (retry.max.attempts) */
    BALLAST_OUTCOME_FAIL,   /**< permanent failure: dead-letter or stop */
    /**
     * The handler could not try the message at all: what it depends on
     * (its process, its database) is down. No verdict on the message: it
     * is retried with back-off without counting an attempt, for as long as
     * it takes, and never dead-lettered; meanwhile consumption pauses and
     * readiness fails with the error text. A stop does not wait for it.
     */
    BALLAST_OUTCOME_UNAVAILABLE
} ballast_outcome_t;

typedef struct ballast_result_s ballast_result_t;

/** @brief Records why the message failed (copied; the last call wins). */
BALLAST_API void ballast_result_set_error(ballast_result_t *res,
                                          const char *message);

/**
 * @brief Asks the runtime to produce a record as part of this message's
 *        effect. @p topic NULL means `output.topic`. The message counts as
 *        done only once every emitted record is acknowledged (at-least-once)
 *        or inside the same transaction (exactly-once). Key and value are
 *        copied; NULL key or value produce a null key or value.
 * @returns 0, or -1 when out of memory or when no topic can be chosen.
 */
BALLAST_API int ballast_result_emit(ballast_result_t *res, const char *topic,
                                    const void *key, size_t key_len,
                                    const void *value, size_t value_len);

/** @brief Adds a header to the record emitted last. @returns 0 or -1. */
BALLAST_API int ballast_result_emit_header(ballast_result_t *res,
                                           const char *name,
                                           const void *value, size_t len);

/* ------------------------------------------------------------------------ */
/* Dead-letter and retry-tier records                                        */
/* ------------------------------------------------------------------------ */

/*
 * The headers of a record that ballast writes to `dlq.topic` or to a retry
 * tier (`retry.topics`), a wire contract that `ballast dlq` and other tools
 * read. The record keeps the message's key, value and other headers. Values
 * are text; numbers are decimal.
 */
/** Prefix of the four headers that say where the message was consumed
 *  first; a message moving on from a retry tier keeps them. */
#define BALLAST_HEADER_ORIGINAL_PREFIX "x-original-"
#define BALLAST_HEADER_ORIGINAL_TOPIC "x-original-topic"
#define BALLAST_HEADER_ORIGINAL_PARTITION "x-original-partition"
#define BALLAST_HEADER_ORIGINAL_OFFSET "x-original-offset"
/** The message's timestamp, ms since the epoch (-1: none). */
#define BALLAST_HEADER_ORIGINAL_TIMESTAMP "x-original-timestamp"
/** Retries so far, of every hop (tiers included): attempts minus one. */
#define BALLAST_HEADER_RETRY_COUNT "x-retry-count"
/** The handler's error text (ballast_result_set_error()). */
#define BALLAST_HEADER_ERROR_MESSAGE "x-error-message"
#define BALLAST_HEADER_CONSUMER_GROUP "x-consumer-group"
/** When it failed, ISO-8601 UTC with milliseconds. */
#define BALLAST_HEADER_FAILED_AT "x-failed-at"
/** Retry tiers only: when the message may run again, ms since the epoch. */
#define BALLAST_HEADER_RETRY_DUE "x-retry-due"
/** Retry tiers only: the tier's index in `retry.topics`, from 0. */
#define BALLAST_HEADER_RETRY_TIER "x-retry-tier"
/** Written by `ballast dlq replay`: how often the record was replayed. */
#define BALLAST_HEADER_REPLAY_COUNT "x-replay-count"
/** Written by `ballast dlq replay`: DLQ_TOPIC:PARTITION:OFFSET it came from. */
#define BALLAST_HEADER_REPLAYED_FROM "x-replayed-from"

/* ------------------------------------------------------------------------ */
/* Handlers and the plugin ABI                                               */
/* ------------------------------------------------------------------------ */

#define BALLAST_HANDLER_ABI_VERSION 1

/** @brief What a handler instance is told when it starts. */
typedef struct ballast_handler_params {
    const ballast_conf_t *conf; /**< read keys with ballast_conf_get() */
    int worker;                 /**< 0 .. workers-1 */
    int workers;                /**< the `concurrency` setting */
    void *opaque;               /**< as given to ballast_conf_set_handler() */
} ballast_handler_params_t;

/**
 * @brief A message handler. One instance (state) is made per worker, so the
 *        callbacks of one state are never called concurrently.
 *
 * A plugin (`handler = plugin`) is a shared object exporting
 * `const ballast_handler_t *ballast_plugin_handler(void);`.
 */
typedef struct ballast_handler {
    int abi_version; /**< BALLAST_HANDLER_ABI_VERSION */
    const char *name;
    /**
     * Optional. Makes the worker's state. @returns 0, or a ballast_err_code_t
     * (BALLAST_ERR_CONFIG, BALLAST_ERR_UNREACHABLE, ...; any other non-zero
     * value counts as BALLAST_ERR_HANDLER) with a one-line reason in
     * @p errbuf; the consumer then fails to start with that code.
     */
    int (*init)(void **statep, const ballast_handler_params_t *params,
                char *errbuf, size_t errsize);
    /** Handles one message. Required unless handle_batch is given. */
    ballast_outcome_t (*handle)(void *state, const ballast_message_t *msg,
                                ballast_result_t *result);
    /**
     * Optional. Handles a batch (`processing = batch`): sets outcomes[i] for
     * each message. Without it, batches are handled one message at a time.
     */
    void (*handle_batch)(void *state, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results, size_t count,
                         ballast_outcome_t *outcomes);
    /** Optional. Releases the state. */
    void (*destroy)(void *state);
} ballast_handler_t;

/**
 * @brief Uses @p handler (not copied; it must outlive every consumer made
 *        from this configuration) instead of the `handler` key.
 */
BALLAST_API void ballast_conf_set_handler(ballast_conf_t *conf,
                                          const ballast_handler_t *handler,
                                          void *opaque);

/* ------------------------------------------------------------------------ */
/* Rebalance events                                                          */
/* ------------------------------------------------------------------------ */

typedef enum ballast_rebalance_event {
    BALLAST_PARTITIONS_ASSIGNED,
    BALLAST_PARTITIONS_REVOKED, /**< after in-flight work drained and committed */
    BALLAST_PARTITIONS_LOST     /**< ownership lost: nothing was committed */
} ballast_rebalance_event_t;

/** @brief One partition in a rebalance event. */
typedef struct ballast_partition {
    const char *topic;
    int32_t partition;
} ballast_partition_t;

typedef void (ballast_rebalance_cb)(ballast_rebalance_event_t event,
                                    const ballast_partition_t *partitions,
                                    size_t count, void *opaque);

/** @brief Called on the polling thread at every rebalance event. */
BALLAST_API void ballast_conf_set_rebalance_cb(ballast_conf_t *conf,
                                               ballast_rebalance_cb *cb,
                                               void *opaque);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum ballast_log_level {
    BALLAST_LOG_ERROR = 0,
    BALLAST_LOG_WARN,
    BALLAST_LOG_INFO,
    BALLAST_LOG_DEBUG
} ballast_log_level_t;

typedef void (ballast_log_cb)(ballast_log_level_t level, const char *line,
                              void *opaque);

/**
 * @brief Routes the library's log lines (and librdkafka's) to @p cb, which
 *        may be called from any thread. Default: logfmt lines on stderr at
 *        the `log.level` threshold.
 */
BALLAST_API void ballast_conf_set_log_cb(ballast_conf_t *conf,
                                         ballast_log_cb *cb, void *opaque);

/**
 * @brief Stops consumers made from @p conf once `*flag` is non-zero, as
 *        ballast_consumer_stop() does, and also while ballast_consumer_new()
 *        is still starting (which then fails at once with
 *        BALLAST_ERR_STOPPED). Meant for a signal handler that sets a
 *        `volatile sig_atomic_t`; @p flag must outlive the consumers.
 */
BALLAST_API void ballast_conf_set_stop_flag(ballast_conf_t *conf,
                                           const volatile sig_atomic_t *flag);

/* ------------------------------------------------------------------------ */
/* The consumer                                                              */
/* ------------------------------------------------------------------------ */

typedef struct ballast_consumer_s ballast_consumer_t;

/**
 * @brief Validates @p conf, connects to the broker (and the handler's
 *        database), checks that every topic exists and starts the handler
 *        workers. Nothing is consumed until ballast_consumer_run().
 *        The configuration is copied. Fails with BALLAST_ERR_CONFIG or
 *        BALLAST_ERR_UNREACHABLE (after `startup.timeout.ms`).
 */
BALLAST_API ballast_error_t *ballast_consumer_new(const ballast_conf_t *conf,
                                                  ballast_consumer_t **consp);

/**
 * @brief Consumes until ballast_consumer_stop() is called or a fatal error
 *        happens; then stops fetching, lets in-flight messages finish for up
 *        to `shutdown.timeout.ms`, commits what completed, and leaves the
 *        group. @returns NULL after a clean stop (every in-flight message
 *        finished and was committed); BALLAST_ERR_INCOMPLETE when the drain
 *        timed out and unfinished work was left uncommitted (a handler
 *        still running then is cancelled if it is `exec`, or left running
 *        on its thread, whose memory is then never freed).
 */
BALLAST_API ballast_error_t *ballast_consumer_run(ballast_consumer_t *cons);

/**
 * @brief Asks a running consumer to stop. Async-signal-safe and callable
 *        from any thread; calling it again is harmless.
 */
BALLAST_API void ballast_consumer_stop(ballast_consumer_t *cons);

/**
 * @brief Releases a consumer that is not running. NULL is a no-op. A
 *        handler call that a stop had to leave running keeps what it uses:
 *        destroy then returns at once, and the consumer (with that worker's
 *        handler state) is freed when the call returns.
 */
BALLAST_API void ballast_consumer_destroy(ballast_consumer_t *cons);

/** @brief Counters a program or test may read at any time (any thread). */
typedef struct ballast_stats {
    uint64_t consumed;      /**< messages received from Kafka */
    uint64_t processed_ok;  /**< handler outcomes: ok */
    uint64_t retried;       /**< retry attempts made */
    uint64_t failed;        /**< permanent failures */
    uint64_t dead_lettered; /**< records acknowledged on the DLQ */
    uint64_t emitted;       /**< records produced and acknowledged */
    uint64_t commits;       /**< offset commits that succeeded */
    uint64_t commit_errors; /**< offset commits that failed */
    uint64_t rebalances;    /**< assignment changes */
    uint64_t inflight;      /**< messages received and not yet finished */
    uint64_t inflight_bytes;
    uint64_t paused_partitions;
    uint64_t skipped_done;       /**< redelivered messages not handled again:
                                      finished before a restart, as recorded
                                      in the commit's metadata */
    uint64_t metadata_truncated; /**< commits whose finished-offset record
                                      did not fit (those offsets are redone) */
    uint64_t fenced_batches;     /**< exactly-once into a database: batches
                                      refused because another member had
                                      committed past them (dropped) */
} ballast_stats_t;

/**
 * @brief Copies the current counters into @p stats. Thread-safe.
 *        @p size is sizeof(ballast_stats_t), so that fields can be appended.
 */
BALLAST_API void ballast_consumer_stats(const ballast_consumer_t *cons,
                                        ballast_stats_t *stats, size_t size);

/* ------------------------------------------------------------------------ */
/* Observability: metrics, status and health (the library opens no socket;   */
/* the daemon serves these over HTTP)                                        */
/* ------------------------------------------------------------------------ */

/**
 * @brief The consumer's metrics in the Prometheus text format 0.0.4:
 *        kafka_consumergroup_lag and kafka_consumergroup_lag_seconds per
 *        partition (kafka_exporter's names and labels) and ballast_* metrics.
 *        Thread-safe. @returns a string the caller frees with ballast_free(),
 *        or NULL when out of memory.
 */
BALLAST_API char *ballast_consumer_metrics(const ballast_consumer_t *cons);

/**
 * @brief A JSON document describing the consumer: group, consumer group
 *        protocol, counters, health, the processing rate, and per partition
 *        committed offset, high watermark, lag, lag seconds, in-flight count,
 *        processing rate and whether it is paused. The partitions and the
 *        in-flight totals are one snapshot (refreshed about every second),
 *        so the totals are the partitions' sums. Thread-safe. The caller
 *        frees it with ballast_free(). Contains no secrets.
 */
BALLAST_API char *ballast_consumer_status_json(const ballast_consumer_t *cons);

/**
 * @brief The last five minutes of each partition's lag and processing rate
 *        as JSON, one frame every 2 seconds (the memory this takes is
 *        bounded: about 2 KB per partition). Thread-safe. The caller frees
 *        it with ballast_free(); NULL when out of memory.
 */
BALLAST_API char *ballast_consumer_history_json(const ballast_consumer_t *cons);

/**
 * @brief Liveness: 1 when the poll loop is alive and no handler has run
 *        past `handler.timeout.ms`; else 0 with a one-line reason in
 *        @p reason (may be NULL). Thread-safe.
 */
BALLAST_API int ballast_consumer_healthy(const ballast_consumer_t *cons,
                                         char *reason, size_t size);

/**
 * @brief The transaction watchdog (exactly-once into Kafka): NULL while the
 *        poll thread is in no blocking librdkafka transaction call, or in
 *        one that has not yet overrun its own timeout (30 s) by more than
 *        30 s; else a BALLAST_ERR_STALLED error naming the call and how long
 *        it has run, which the caller destroys (the first such answer also
 *        logs it, once, at error level through the consumer's logger). Such a call is stuck inside
 *        librdkafka (seen in 2.14 after a transaction coordinator died), and
 *        the poll loop with it; it cannot be taken back, so only a restart
 *        of the process recovers. The library does nothing about it by
 *        itself: a program that embeds it and wants that bound asks this
 *        from a thread of its own, say every second, and ends the process
 *        (`ballast run` logs the error and exits 1). Ending it is safe for
 *        exactly-once: the open transaction is never committed (the broker
 *        aborts it when the next instance initialises the same
 *        transactional.id, or at transaction.timeout.ms), so its records
 *        stay invisible to read_committed readers and its offsets
 *        uncommitted. Thread-safe.
 */
BALLAST_API ballast_error_t *ballast_consumer_stalled(const ballast_consumer_t *cons);

/**
 * @brief Readiness: 1 when partitions are assigned and the handler's last
 *        outcome was not a transient failure (e.g. its database is down);
 *        else 0 with a reason. Thread-safe.
 */
BALLAST_API int ballast_consumer_ready(const ballast_consumer_t *cons,
                                       char *reason, size_t size);

/** @brief Frees memory returned by the library. NULL is a no-op. */
BALLAST_API void ballast_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* BALLAST_BALLAST_H */
