/*
 * internal.h - declarations shared by the library's modules (never
 * installed): errors (error.c), logging (log.c), the configuration
 * (conf.c, conffile.c) and handler results (message.c).
 *
 * Public names start with `ballast_`; internal ones with `bl_`. The modules
 * of pure policy (tracker, donemeta, backoff, tiers, breaker, pause,
 * cadence, route.h, sqltmpl, ...; docs/design.md lists them) do not include
 * rdkafka.h; conf.c is not one of them: it asks librdkafka and libpq to
 * check the kafka.* keys and the PostgreSQL DSN.
 */
#ifndef BALLAST_INTERNAL_H
#define BALLAST_INTERNAL_H

#include "ballast/ballast.h"
#include "shared/util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (error.c) --------------------------------------------------- */

/** Makes an error; never returns NULL (falls back to a static "out of
 *  memory" error that ballast_error_destroy() recognises). */
ballast_error_t *bl_error_new(ballast_err_code_t code, bool retriable,
                              bool fatal, const char *fmt, ...) BL_PRINTF(4, 5);

/* ---- logging (log.c) ---------------------------------------------------- */

typedef struct bl_logger {
    ballast_log_cb *cb; /* NULL: logfmt on stderr */
    void *opaque;
    ballast_log_level_t level;
    bool json; /* JSON lines instead of logfmt */
} bl_logger_t;

/** Thread-safe; formats one line and hands it to the logger. */
void bl_log(const bl_logger_t *lg, ballast_log_level_t level, const char *fmt,
            ...) BL_PRINTF(3, 4);

/* ---- configuration (conf.c) --------------------------------------------- */

/** The value of an integer key (its default when unset). */
int64_t bl_conf_int(const ballast_conf_t *conf, const char *key);
/** The value of a floating-point key. */
double bl_conf_double(const ballast_conf_t *conf, const char *key);
/** The value of a key as a string, "" when unset and without default. */
const char *bl_conf_str(const ballast_conf_t *conf, const char *key);
/** True when @p conf asks for `semantics = exactly-once` (with a database
 *  handler the database's transactions hold the offsets, with any other
 *  Kafka transactions do). */
bool bl_conf_exactly_once(const ballast_conf_t *conf);
/** How many consecutive messages one PostgreSQL transaction takes in
 *  `processing = message` (handler.postgres.group.messages), or 0 when
 *  messages are not grouped (batch mode, or a group of one). */
size_t bl_conf_pg_group(const ballast_conf_t *conf);

typedef void (bl_conf_kv_cb)(const char *key, const char *value, void *opaque);
/** Calls @p cb for each `<prefix><name>` key that is set, with the prefix
 *  stripped (e.g. prefix "kafka." for librdkafka properties). */
void bl_conf_each_prefixed(const ballast_conf_t *conf, const char *prefix,
                           bl_conf_kv_cb *cb, void *opaque);

/** Parses a whole properties text; @p path names it in errors. */
ballast_error_t *bl_conf_load_text(ballast_conf_t *conf, const char *text,
                                   size_t len, const char *path);

const ballast_handler_t *bl_conf_handler(const ballast_conf_t *conf,
                                         void **opaquep);
ballast_rebalance_cb *bl_conf_rebalance_cb(const ballast_conf_t *conf,
                                           void **opaquep);
bl_logger_t bl_conf_logger(const ballast_conf_t *conf);
/** True once the stop flag of ballast_conf_set_stop_flag() is set. Any
 *  thread; async-signal-safe. */
bool bl_conf_stop_requested(const ballast_conf_t *conf);
/** The stop flag itself (NULL: none), for a handler to keep: it outlives
 *  the consumers made from the configuration. */
const volatile sig_atomic_t *bl_conf_stop_flag(const ballast_conf_t *conf);

/* ---- messages and results (message.c) ----------------------------------- */

/** One header of an emitted record. */
typedef struct bl_header {
    char *name;  /* in the record's hbuf; the value follows the name */
    void *value; /* NULL: null header value */
    size_t len;
} bl_header_t;

/** A record a handler asked to produce. */
typedef struct bl_record {
    char *topic; /* NULL: output.topic */
    void *key;
    size_t key_len;
    void *value;
    size_t value_len;
    bl_header_t *headers;
    size_t header_count, header_cap;
    char *hbuf; /* every header's name and value, one after another */
    size_t hbuf_len, hbuf_cap;
    bool has_key, has_value;
} bl_record_t;

/** Per-message handler result (ballast_result_t). */
struct ballast_result_s {
    char *error;          /* set by ballast_result_set_error() */
    bl_record_t *records; /* emitted records */
    size_t record_count, record_cap;
};

/** Clears a result for reuse (frees error and records). */
void bl_result_reset(struct ballast_result_s *res);
/** Frees the result's records, keeping its error text. */
void bl_result_free_records(struct ballast_result_s *res);

#endif /* BALLAST_INTERNAL_H */
