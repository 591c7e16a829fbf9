/*
 * conf.c - the configuration object, driven by one property table.
 *
 * The table below is the single source of truth for every ballast key: its
 * type, default, range and description drive parsing, validation, defaults,
 * `ballast check` output and the generated docs/configuration.md. To add a
 * key: add a row here, read it with bl_conf_int/str/double where it is used,
 * and regenerate the docs (`build/ballast config-reference`).
 *
 * `kafka.<prop>` keys are passed to librdkafka and checked against it when
 * set; `handler.plugin.param.<name>` keys are free-form plugin parameters;
 * `lag.<key>` keys belong to `ballast lag` (its alerts), which checks them,
 * so that one file serves a pipeline and its watcher.
 */
#include "internal.h"
#include "tiers.h"

#include <ctype.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { T_STR, T_INT, T_DOUBLE, T_ENUM, T_LIST } prop_type_t;

#define F_SECRET 0x1   /* never shown in dumps */
#define F_DSN 0x2      /* libpq string: only its password is hidden */
#define F_REQUIRED 0x4 /* ballast_conf_validate() insists on it */

typedef struct prop {
    const char *name;
    prop_type_t type;
    const char *def;     /* NULL: no default */
    double min, max;     /* T_INT / T_DOUBLE range */
    const char *choices; /* T_ENUM: '|'-separated */
    unsigned flags;
    const char *desc;
} prop_t;

#define BIG 9.0e15
static const prop_t props[] = {
    {"topics", T_LIST, NULL, 0, 0, NULL, F_REQUIRED,
     "Comma-separated input topics."},
    {"semantics", T_ENUM, "at-least-once", 0, 0, "at-least-once|exactly-once", 0,
     "Delivery guarantee. at-least-once commits an offset only after the "
     "handler succeeded for it and every earlier offset of its partition."},
    {"processing", T_ENUM, "message", 0, 0, "message|batch", 0,
     "Hand the handler one message at a time, or batches."},
    {"batch.max.messages", T_INT, "500", 1, 1000000, NULL, 0,
     "Largest batch handed to the handler with processing=batch."},
    {"batch.max.ms", T_INT, "100", 0, 3600000, NULL, 0,
     "Longest a batch waits to fill before it is handled anyway."},
    {"handler", T_ENUM, NULL, 0, 0, "sqlite|postgres|exec|plugin|forward", 0,
     "What handles each message."},
    {"handler.sqlite.path", T_STR, NULL, 0, 0, NULL, 0,
     "SQLite database file (created if missing)."},
    {"handler.sqlite.sql", T_STR, NULL, 0, 0, NULL, 0,
     "One statement run per message, with :topic :partition :offset :key "
     ":value :timestamp :header.NAME placeholders bound as parameters."},
    {"handler.postgres.dsn", T_STR, NULL, 0, 0, NULL, F_DSN,
     "libpq connection string (its password is redacted in dumps)."},
    {"handler.postgres.sql", T_STR, NULL, 0, 0, NULL, 0,
     "One statement run per message; placeholders as for SQLite. An INSERT "
     "... VALUES (...) [ON CONFLICT ... DO NOTHING | DO UPDATE SET c = "
     "EXCLUDED.c, ...] whose tuple holds only placeholders, literals and "
     "casts runs a batch as statements of up to 100 rows (an upsert's "
     "statement ends before a repeated key; statement-level triggers fire "
     "once per statement); any other statement runs once per message "
     "(docs/design.md, Database batches)."},
    {"handler.postgres.group.messages", T_INT, "64", 1, 10000, NULL, 0,
     "processing = message: consecutive messages a worker already holds run in "
     "one transaction of up to this many, each in its own savepoint (a failing "
     "message is rolled back and fails alone); none is finished (its offset "
     "committable) before the COMMIT returns, and a worker never idles with "
     "one open (exactly-once: the group's offsets commit with it). Above 64, a "
     "transaction's savepoints overflow PostgreSQL's subtransaction cache. 1: a "
     "transaction per message (docs/design.md, Grouped messages)."},
    {"handler.postgres.group.ms", T_INT, "50", 0, 3600000, NULL, 0,
     "processing = message: a group commits once it has been open this long, "
     "even short of handler.postgres.group.messages."},
    {"handler.exec.command", T_STR, NULL, 0, 0, NULL, 0,
     "A long-running child process speaking the exec protocol (JSON lines). "
     "Split into arguments like a shell would (quotes, backslashes), looked "
     "up in PATH, and never run through a shell."},
    {"handler.exec.max.inflight", T_INT, "1", 1, 1024, NULL, 0,
     "Requests one exec child may have open at once (protocol version 2, "
     "docs/exec-protocol.md): above 1, ballast offers the child version 2 "
     "(BALLAST_EXEC_PROTOCOL=2) and, once it says hello, sends it up to the "
     "smaller of this and the child's max_inflight messages at once, never "
     "two of one key (ordering = key) or partition (ordering = partition). A "
     "child that says no hello gets one at a time. 1: one request at a time, "
     "version 1."},
    {"handler.plugin.path", T_STR, NULL, 0, 0, NULL, 0,
     "Absolute path of a shared object exporting ballast_plugin_handler()."},
    {"output.topic", T_STR, NULL, 0, 0, NULL, 0,
     "Where forward (and records emitted without a topic) go."},
    {"retry.max.attempts", T_INT, "3", 1, 1000000, NULL, 0,
     "Handler attempts per message, the first included, before the message "
     "counts as failed."},
    {"retry.backoff.initial.ms", T_INT, "100", 0, 86400000, NULL, 0,
     "Wait before the first retry."},
    {"retry.backoff.max.ms", T_INT, "30000", 0, 86400000, NULL, 0,
     "Longest wait between retries."},
    {"retry.backoff.multiplier", T_DOUBLE, "2", 1, 1000, NULL, 0,
     "Each wait is the previous one times this."},
    {"retry.backoff.jitter", T_DOUBLE, "0.2", 0, 1, NULL, 0,
     "Each wait is randomised by up to this fraction, up or down."},
    {"retry.topics", T_STR, NULL, 0, 0, NULL, 0,
     "Non-blocking retry tiers, topic:delay_ms pairs, e.g. "
     "orders-retry-5s:5000,orders-retry-1m:60000. A message still failing "
     "transiently after retry.max.attempts moves to the next tier (its offset "
     "commits once the copy is acknowledged), runs again when its delay has "
     "passed, and after the last tier goes to the DLQ. Tier topics are "
     "consumed by the same group."},
    {"dlq.topic", T_STR, NULL, 0, 0, NULL, 0,
     "Dead-letter topic for messages that failed permanently. Without it, a "
     "permanent failure stops the pipeline."},
    {"dlq.max.ratio", T_DOUBLE, "0.5", 0, 1, NULL, 0,
     "DLQ breaker: when more than this fraction of the last "
     "dlq.window.messages messages failed, stop dead-lettering and pause "
     "consumption (/healthz fails) instead, so that a bad deploy cannot empty "
     "a topic into the DLQ; the run ends with that reason when stopped. 0 "
     "disables."},
    {"dlq.max.consecutive", T_INT, "0", 0, BIG, NULL, 0,
     "DLQ breaker: when more than this many messages in a row failed, stop "
     "dead-lettering and pause consumption (/healthz fails). 0 disables."},
    {"dlq.window.messages", T_INT, "100", 10, 1000000, NULL, 0,
     "The window of recent messages dlq.max.ratio looks at."},
    {"transaction.interval.ms", T_INT, "100", 1, 900000, NULL, 0,
     "Exactly-once with Kafka outputs: how long a transaction collects "
     "records and offsets before it commits (Kafka Streams uses 100 ms)."},
    {"ordering", T_ENUM, "partition", 0, 0, "partition|key|none", 0,
     "Order kept while handling: per partition, per key, or none."},
    {"concurrency", T_INT, "1", 1, 1024, NULL, 0, "Handler workers."},
    {"max.inflight.messages", T_INT, "100000", 1, BIG, NULL, 0,
     "Messages received and not yet finished at which ballast stops fetching "
     "(first by not polling, then, if the backlog lasts a quarter of "
     "max.poll.interval.ms, by pausing partitions); resumes at half. A low "
     "value caps throughput: each message costs a hand-over to a worker and "
     "back."},
    {"max.inflight.bytes", T_INT, "67108864", 1024, BIG, NULL, 0,
     "Key+value bytes received and not yet finished at which ballast stops "
     "fetching, as for max.inflight.messages. librdkafka's prefetch queue is "
     "sized to the same number of bytes, so memory stays within about twice "
     "this plus a fixed overhead, whatever the backlog."},
    {"metrics.listen", T_STR, "", 0, 0, NULL, 0,
     "host:port of the HTTP endpoint (/metrics, /healthz, ...); empty "
     "disables it."},
    {"handler.timeout.ms", T_INT, "60000", 1, 86400000, NULL, 0,
     "Deadline of one handler call. A call running longer makes /healthz "
     "fail; the exec handler kills and restarts a child that misses it (the "
     "message is retried)."},
    {"log.format", T_ENUM, "logfmt", 0, 0, "logfmt|json", 0,
     "Log line format on stderr: logfmt (key=value) or JSON lines."},
    {"startup.timeout.ms", T_INT, "30000", 100, 3600000, NULL, 0,
     "How long start-up waits for the broker and database before giving up "
     "(exit 69)."},
    {"shutdown.timeout.ms", T_INT, "30000", 0, 3600000, NULL, 0,
     "How long a stop or a revoke waits for in-flight messages to finish; "
     "what has not finished by then is not committed and comes back."},
    {"log.level", T_ENUM, "info", 0, 0, "error|warn|info|debug", 0,
     "Least severe log level written. debug adds each partition's commits, "
     "pauses and resumes."},
    {"log.progress.interval.ms", T_INT, "30000", 0, 86400000, NULL, 0,
     "How often an info line sums up progress: rates, lag, in flight, paused "
     "partitions. 0: never. A summary line ends every run."},
    {"tracing", T_ENUM, "off", 0, 0, "off|on", 0,
     "W3C Trace Context. A message's valid traceparent header is always "
     "handed to the handler and continued, as a child context (same "
     "trace-id, a span of ballast's own), on every record produced for it: "
     "outputs, retry-tier copies, dead letters; its tracestate is copied. "
     "on also starts a fresh context for each message without a valid "
     "traceparent (ids from getrandom(2)); off adds none."},
};
#define NPROPS (sizeof(props) / sizeof(props[0]))

/* librdkafka properties that ballast manages itself: setting them would
 * break the delivery guarantee, so they are refused with a reason. */
static const struct {
    const char *name, *why;
} managed[] = {
    {"enable.auto.offset.store", "offsets are stored only after processing"},
    {"enable.auto.commit", "ballast commits offsets itself"},
    {"isolation.level", "set by `semantics`"},
    {"enable.partition.eof", "ballast does not use partition EOF events"},
    {"group.protocol.type", "not configurable"},
    /* librdkafka dlopen()s these as soon as the key is set, from the
     * library search path: `check` would load code. */
    {"plugin.library.paths", "ballast loads no librdkafka plugins (see handler.plugin.path)"},
};

static const char *const prefixes[] = {"kafka.", "handler.plugin.param.", "lag."};

typedef struct kv {
    char *key, *value;
} kv_t;

struct ballast_conf_s {
    char *values[NPROPS];
    kv_t *extra; /* prefixed keys, in the order they were set */
    size_t extra_count;
    const ballast_handler_t *handler;
    void *handler_opaque;
    ballast_rebalance_cb *rebalance_cb;
    void *rebalance_opaque;
    ballast_log_cb *log_cb;
    void *log_opaque;
    const volatile sig_atomic_t *stop_flag;
};

static const prop_t *prop_find(const char *name, size_t *idxp)
{
    for (size_t i = 0; i < NPROPS; i++) {
        if (!strcmp(props[i].name, name)) {
            if (idxp)
                *idxp = i;
            return &props[i];
        }
    }
    return NULL;
}

static const char *prefix_of(const char *key)
{
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncmp(key, prefixes[i], strlen(prefixes[i])) &&
            key[strlen(prefixes[i])])
            return prefixes[i];
    return NULL;
}

ballast_conf_t *ballast_conf_new(void)
{
    return calloc(1, sizeof(struct ballast_conf_s));
}

void ballast_conf_destroy(ballast_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < NPROPS; i++)
        free(conf->values[i]);
    for (size_t i = 0; i < conf->extra_count; i++) {
        free(conf->extra[i].key);
        free(conf->extra[i].value);
    }
    free(conf->extra);
    free(conf);
}

ballast_conf_t *ballast_conf_dup(const ballast_conf_t *conf)
{
    ballast_conf_t *copy = ballast_conf_new();

    if (!copy)
        return NULL;
    *copy = *conf;
    memset(copy->values, 0, sizeof(copy->values));
    copy->extra = NULL;
    copy->extra_count = 0;
    for (size_t i = 0; i < NPROPS; i++)
        if (conf->values[i] && !(copy->values[i] = bl_strdup(conf->values[i])))
            goto oom;
    if (conf->extra_count) {
        copy->extra = calloc(conf->extra_count, sizeof(kv_t));
        if (!copy->extra)
            goto oom;
        for (size_t i = 0; i < conf->extra_count; i++) {
            copy->extra[i].key = bl_strdup(conf->extra[i].key);
            copy->extra[i].value = bl_strdup(conf->extra[i].value);
            copy->extra_count++;
            if (!copy->extra[i].key || !copy->extra[i].value)
                goto oom;
        }
    }
    return copy;
oom:
    ballast_conf_destroy(copy);
    return NULL;
}

/* ---- value checks ------------------------------------------------------- */

static bool enum_has(const char *choices, const char *value)
{
    size_t len = strlen(value);

    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !strncmp(p, value, n))
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static ballast_error_t *check_value(const prop_t *p, const char *value)
{
    int64_t iv;
    double dv;

    switch (p->type) {
    case T_INT:
        if (!bl_parse_int64(value, INT64_MIN, INT64_MAX, &iv) || iv < p->min || iv > p->max)
            return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                "%s: invalid value \"%s\": expected an integer "
                                "from %.0f to %.0f",
                                p->name, value, p->min, p->max);
        break;
    case T_DOUBLE:
        if (!bl_parse_double(value, -HUGE_VAL, &dv) || dv < p->min || dv > p->max)
            return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                "%s: invalid value \"%s\": expected a number "
                                "from %g to %g",
                                p->name, value, p->min, p->max);
        break;
    case T_ENUM:
        if (!enum_has(p->choices, value))
            return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                "%s: invalid value \"%s\": expected one of %s",
                                p->name, value, p->choices);
        break;
    case T_LIST: {
        /* Each comma-separated item must be non-empty after trimming. */
        const char *s = value;
        for (;;) {
            const char *comma = strchr(s, ',');
            const char *end = comma ? comma : s + strlen(s);
            bool empty = true;
            for (const char *q = s; q < end; q++)
                if (!isspace((unsigned char)*q))
                    empty = false;
            if (empty)
                return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                    "%s: invalid value \"%s\": expected a "
                                    "comma-separated list of names",
                                    p->name, value);
            if (!comma)
                break;
            s = comma + 1;
        }
        break;
    }
    case T_STR:
        break;
    }
    return NULL;
}

/* Asks librdkafka whether it knows the property and accepts the value. */
static ballast_error_t *check_kafka_prop(const char *name, const char *value)
{
    char errstr[256];
    rd_kafka_conf_t *rkconf;
    rd_kafka_conf_res_t res;

    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
        if (!strcmp(name, managed[i].name))
            return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                "kafka.%s: cannot be set: %s", name,
                                managed[i].why);
    rkconf = rd_kafka_conf_new();
    res = rd_kafka_conf_set(rkconf, name, value, errstr, sizeof(errstr));
    rd_kafka_conf_destroy(rkconf);
    if (res == RD_KAFKA_CONF_UNKNOWN)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka.%s: unknown librdkafka property", name);
    if (res != RD_KAFKA_CONF_OK)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka.%s: invalid value \"%s\": %s", name, value,
                            errstr);
    return NULL;
}

static ballast_error_t *set_extra(ballast_conf_t *conf, const char *key,
                                  const char *value)
{
    char *v = bl_strdup(value), *k;
    kv_t *grown;

    if (!v)
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    for (size_t i = 0; i < conf->extra_count; i++) {
        if (!strcmp(conf->extra[i].key, key)) {
            free(conf->extra[i].value);
            conf->extra[i].value = v;
            return NULL;
        }
    }
    k = bl_strdup(key);
    grown = k ? realloc(conf->extra, (conf->extra_count + 1) * sizeof(kv_t)) : NULL;
    if (!grown) {
        free(k);
        free(v);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    conf->extra = grown;
    conf->extra[conf->extra_count].key = k;
    conf->extra[conf->extra_count].value = v;
    conf->extra_count++;
    return NULL;
}

ballast_error_t *ballast_conf_set(ballast_conf_t *conf, const char *key,
                                  const char *value)
{
    const char *prefix;
    const prop_t *p;
    ballast_error_t *err;
    size_t idx;
    char *copy;

    if (!key || !*key)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "empty key");
    if (!value)
        value = "";
    if ((prefix = prefix_of(key))) {
        if (!strcmp(prefix, "kafka.") &&
            (err = check_kafka_prop(key + strlen(prefix), value)))
            return err;
        return set_extra(conf, key, value);
    }
    if (!(p = prop_find(key, &idx)))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s: unknown key (see `ballast check --help` or "
                            "docs/configuration.md)",
                            key);
    if ((err = check_value(p, value)))
        return err;
    if (!(copy = bl_strdup(value)))
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    free(conf->values[idx]);
    conf->values[idx] = copy;
    return NULL;
}

/* ---- reading ------------------------------------------------------------ */

static const char *extra_get(const ballast_conf_t *conf, const char *key)
{
    for (size_t i = 0; i < conf->extra_count; i++)
        if (!strcmp(conf->extra[i].key, key))
            return conf->extra[i].value;
    return NULL;
}

const char *ballast_conf_get(const ballast_conf_t *conf, const char *key)
{
    size_t idx;
    const prop_t *p;

    if (prefix_of(key))
        return extra_get(conf, key);
    if (!(p = prop_find(key, &idx)))
        return NULL;
    return conf->values[idx] ? conf->values[idx] : p->def;
}

const char *bl_conf_str(const ballast_conf_t *conf, const char *key)
{
    const char *v = ballast_conf_get(conf, key);
    return v ? v : "";
}

bool bl_conf_exactly_once(const ballast_conf_t *conf)
{
    return !strcmp(bl_conf_str(conf, "semantics"), "exactly-once");
}

size_t bl_conf_pg_group(const ballast_conf_t *conf)
{
    int64_t n = bl_conf_int(conf, "handler.postgres.group.messages");

    return !strcmp(bl_conf_str(conf, "processing"), "message") && n > 1 ? (size_t)n : 0;
}

int64_t bl_conf_int(const ballast_conf_t *conf, const char *key)
{
    int64_t v = 0;
    bl_parse_int64(bl_conf_str(conf, key), INT64_MIN, INT64_MAX, &v);
    return v;
}

double bl_conf_double(const ballast_conf_t *conf, const char *key)
{
    double v = 0;
    bl_parse_double(bl_conf_str(conf, key), -HUGE_VAL, &v);
    return v;
}

void bl_conf_each_prefixed(const ballast_conf_t *conf, const char *prefix,
                           bl_conf_kv_cb *cb, void *opaque)
{
    size_t n = strlen(prefix);

    for (size_t i = 0; i < conf->extra_count; i++)
        if (!strncmp(conf->extra[i].key, prefix, n))
            cb(conf->extra[i].key + n, conf->extra[i].value, opaque);
}

void ballast_conf_set_handler(ballast_conf_t *conf,
                              const ballast_handler_t *handler, void *opaque)
{
    conf->handler = handler;
    conf->handler_opaque = opaque;
}

void ballast_conf_set_rebalance_cb(ballast_conf_t *conf,
                                   ballast_rebalance_cb *cb, void *opaque)
{
    conf->rebalance_cb = cb;
    conf->rebalance_opaque = opaque;
}

void ballast_conf_set_stop_flag(ballast_conf_t *conf, const volatile sig_atomic_t *flag)
{
    conf->stop_flag = flag;
}

bool bl_conf_stop_requested(const ballast_conf_t *conf)
{
    return conf->stop_flag && *conf->stop_flag;
}

const volatile sig_atomic_t *bl_conf_stop_flag(const ballast_conf_t *conf)
{
    return conf->stop_flag;
}

void ballast_conf_set_log_cb(ballast_conf_t *conf, ballast_log_cb *cb,
                             void *opaque)
{
    conf->log_cb = cb;
    conf->log_opaque = opaque;
}

const ballast_handler_t *bl_conf_handler(const ballast_conf_t *conf,
                                         void **opaquep)
{
    *opaquep = conf->handler_opaque;
    return conf->handler;
}

ballast_rebalance_cb *bl_conf_rebalance_cb(const ballast_conf_t *conf,
                                           void **opaquep)
{
    *opaquep = conf->rebalance_opaque;
    return conf->rebalance_cb;
}

bl_logger_t bl_conf_logger(const ballast_conf_t *conf)
{
    bl_logger_t lg = {conf->log_cb, conf->log_opaque, BALLAST_LOG_INFO, false};
    const char *level = bl_conf_str(conf, "log.level");

    lg.json = !strcmp(bl_conf_str(conf, "log.format"), "json");
    if (!strcmp(level, "error"))
        lg.level = BALLAST_LOG_ERROR;
    else if (!strcmp(level, "warn"))
        lg.level = BALLAST_LOG_WARN;
    else if (!strcmp(level, "debug"))
        lg.level = BALLAST_LOG_DEBUG;
    return lg;
}

/* ---- cross-key validation ----------------------------------------------- */

static bool list_contains(const char *list, const char *item)
{
    size_t len = strlen(item);

    for (const char *s = list; s && *s;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        while (s < end && isspace((unsigned char)*s))
            s++;
        while (end > s && isspace((unsigned char)end[-1]))
            end--;
        if ((size_t)(end - s) == len && !strncmp(s, item, len))
            return true;
        s = comma ? comma + 1 : NULL;
    }
    return false;
}

static ballast_error_t *missing(const char *key, const char *why)
{
    return bl_error_new(BALLAST_ERR_CONFIG, false, false, "%s: missing (%s)",
                        key, why);
}

/* retry.topics must parse, and its topics must be nobody else's. */
static ballast_error_t *validate_tiers(const ballast_conf_t *conf, const char *topics,
                                       const char *dlq, const char *out)
{
    bl_tiers_t tiers;
    char err[256];

    if (bl_tiers_parse(bl_conf_str(conf, "retry.topics"), &tiers, err, sizeof(err)))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "retry.topics: %s", err);
    for (size_t i = 0; i < tiers.count; i++) {
        const char *t = tiers.tiers[i].topic;
        if (list_contains(topics, t) || !strcmp(t, dlq) || !strcmp(t, out)) {
            ballast_error_t *e = bl_error_new(
                BALLAST_ERR_CONFIG, false, false,
                "retry.topics: \"%s\" is also an input, output or dead-letter topic", t);
            bl_tiers_free(&tiers);
            return e;
        }
    }
    bl_tiers_free(&tiers);
    return NULL;
}

/* What the consumer group protocol (KIP-848) leaves to the broker: the
 * classic protocol's keys for it are refused, each with where it went.
 * librdkafka would refuse them too, but only when the consumer is made and
 * one at a time; `ballast check` names them all at once. */
static const struct {
    const char *key, *why;
} classic_only[] = {
    {"kafka.partition.assignment.strategy",
     "the broker assigns partitions (kafka.group.remote.assignor picks its assignor)"},
    {"kafka.session.timeout.ms",
     "the broker sets the session timeout (group.consumer.session.timeout.ms, or the "
     "group's consumer.session.timeout.ms)"},
    {"kafka.heartbeat.interval.ms",
     "the broker sets the heartbeat interval (group.consumer.heartbeat.interval.ms, or "
     "the group's consumer.heartbeat.interval.ms)"},
};

static ballast_error_t *validate_group_protocol(const ballast_conf_t *conf)
{
    const char *protocol = extra_get(conf, "kafka.group.protocol");
    char keys[256] = "", why[768] = "";

    if (!protocol || strcasecmp(protocol, "consumer"))
        return NULL;
    for (size_t i = 0; i < sizeof(classic_only) / sizeof(classic_only[0]); i++) {
        size_t klen = strlen(keys), wlen = strlen(why);
        if (!extra_get(conf, classic_only[i].key))
            continue;
        bl_fmt(keys + klen, sizeof(keys) - klen, "%s%s", klen ? ", " : "",
               classic_only[i].key);
        bl_fmt(why + wlen, sizeof(why) - wlen, "%s%s", wlen ? "; " : "", classic_only[i].why);
    }
    if (!*keys)
        return NULL;
    return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                        "%s: not supported with kafka.group.protocol = consumer: %s", keys,
                        why);
}

ballast_error_t *ballast_conf_validate(const ballast_conf_t *conf)
{
    ballast_error_t *err;
    static const struct {
        const char *handler, *key;
    } needs[] = {
        {"sqlite", "handler.sqlite.path"},   {"sqlite", "handler.sqlite.sql"},
        {"postgres", "handler.postgres.dsn"}, {"postgres", "handler.postgres.sql"},
        {"exec", "handler.exec.command"},     {"plugin", "handler.plugin.path"},
        {"forward", "output.topic"},
    };
    const char *handler = bl_conf_str(conf, "handler");
    const char *topics = bl_conf_str(conf, "topics");
    const char *out = bl_conf_str(conf, "output.topic");
    const char *dlq = bl_conf_str(conf, "dlq.topic");
    const char *plugin = bl_conf_str(conf, "handler.plugin.path");

    const char *bootstrap = extra_get(conf, "kafka.bootstrap.servers");
    const char *group = extra_get(conf, "kafka.group.id");

    if (!bootstrap || !*bootstrap)
        return missing("kafka.bootstrap.servers", "the brokers to connect to");
    if (!group || !*group)
        return missing("kafka.group.id", "the consumer group");
    for (size_t i = 0; i < NPROPS; i++) {
        if ((props[i].flags & F_REQUIRED) && !conf->values[i])
            return missing(props[i].name, props[i].desc);
    }
    if (!conf->handler && !*handler)
        return missing("handler", "one of sqlite, postgres, exec, plugin, forward");
    if (!conf->handler) {
        for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++)
            if (!strcmp(handler, needs[i].handler) &&
                !*bl_conf_str(conf, needs[i].key))
                return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                    "%s: missing (required by handler = %s)",
                                    needs[i].key, handler);
    }
    if (*plugin && plugin[0] != '/')
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "handler.plugin.path: \"%s\" is not an absolute path",
                            plugin);
    if (*out && list_contains(topics, out))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "output.topic: \"%s\" is also an input topic "
                            "(a forwarding loop)",
                            out);
    if (*dlq && list_contains(topics, dlq))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "dlq.topic: \"%s\" is also an input topic", dlq);
    if ((err = validate_tiers(conf, topics, dlq, out)))
        return err;
    if ((err = validate_group_protocol(conf)))
        return err;
    /* A transactional producer refuses records outside a transaction. */
    if (extra_get(conf, "kafka.transactional.id") && !bl_conf_exactly_once(conf))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka.transactional.id: only used with semantics = "
                            "exactly-once");
    /* A partition's offsets are stored with its writes; that needs each
     * partition's messages handled in order by one worker. */
    if (bl_conf_exactly_once(conf) &&
        (!strcmp(handler, "sqlite") || !strcmp(handler, "postgres")) &&
        !conf->handler && strcmp(bl_conf_str(conf, "ordering"), "partition"))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "ordering: exactly-once with handler = %s needs "
                            "ordering = partition (offsets are stored per "
                            "partition with each transaction)",
                            handler);
    if (bl_conf_int(conf, "retry.backoff.max.ms") <
        bl_conf_int(conf, "retry.backoff.initial.ms"))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "retry.backoff.max.ms: must be at least "
                            "retry.backoff.initial.ms");
    return NULL;
}

/* ---- dumping ------------------------------------------------------------ */

static bool kafka_secret(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") ||
           strstr(name, "sasl.jaas") || strstr(name, "sasl.oauthbearer.config") ||
           !strcmp(name, "ssl.key.pem") || !strcmp(name, "ssl_key");
}

/* Appends @p text to out, quoted for a libpq keyword/value string when it
 * needs to be. */
static void put_dsn_value(char *out, size_t size, size_t *len, const char *text)
{
    bool quote = !*text;

    for (const char *t = text; *t && !quote; t++)
        quote = isspace((unsigned char)*t) || iscntrl((unsigned char)*t) || *t == '\'' ||
                *t == '\\';

    if (quote && *len + 1 < size)
        out[(*len)++] = '\'';
    for (const char *t = text; *t && *len + 2 < size; t++) {
        if (quote && (*t == '\'' || *t == '\\'))
            out[(*len)++] = '\\';
        out[(*len)++] = *t;
    }
    if (quote && *len + 1 < size)
        out[(*len)++] = '\'';
    out[*len] = '\0';
}

/* Rewrites a libpq connection string (keyword/value or URI) as keyword/value
 * pairs with every password replaced. libpq itself parses it, so whatever
 * libpq would read as a password is what gets hidden; a string libpq cannot
 * parse is hidden whole. */
static void redact_dsn(const char *dsn, char *out, size_t size)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &errmsg);
    size_t len = 0;

    out[0] = '\0';
    if (!opts) {
        PQfreemem(errmsg);
        bl_fmt(out, size, "[redacted: not a valid connection string]");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        bool secret = !strcmp(o->keyword, "password") || !strcmp(o->keyword, "sslpassword");
        if (!o->val)
            continue;
        if (len && len + 1 < size)
            out[len++] = ' ';
        for (const char *k = o->keyword; *k && len + 2 < size; k++)
            out[len++] = *k;
        if (len + 1 < size)
            out[len++] = '=';
        out[len] = '\0';
        put_dsn_value(out, size, &len, secret ? "[redacted]" : o->val);
    }
    PQconninfoFree(opts);
}

void ballast_conf_dump(const ballast_conf_t *conf, int redact,
                       ballast_conf_dump_cb *cb, void *opaque)
{
    char buf[2048];

    for (size_t i = 0; i < conf->extra_count; i++) {
        const char *key = conf->extra[i].key, *value = conf->extra[i].value;
        if (strncmp(key, "kafka.", 6))
            continue;
        cb(key, redact && kafka_secret(key + 6) ? "[redacted]" : value, opaque);
    }
    for (size_t i = 0; i < NPROPS; i++) {
        const char *value = conf->values[i] ? conf->values[i] : props[i].def;
        if (!value)
            continue;
        if (redact && (props[i].flags & F_SECRET))
            value = "[redacted]";
        else if (redact && (props[i].flags & F_DSN)) {
            redact_dsn(value, buf, sizeof(buf));
            value = buf;
        }
        cb(props[i].name, value, opaque);
    }
    for (size_t i = 0; i < conf->extra_count; i++)
        if (!strncmp(conf->extra[i].key, "handler.plugin.param.", 21))
            cb(conf->extra[i].key, redact ? "[redacted]" : conf->extra[i].value,
               opaque);
    /* A webhook's URL holds its credential (Slack's path is its token). */
    for (size_t i = 0; i < conf->extra_count; i++)
        if (!strncmp(conf->extra[i].key, "lag.", 4))
            cb(conf->extra[i].key,
               redact && strstr(conf->extra[i].key, "webhook.url") ? "[redacted]"
                                                                   : conf->extra[i].value,
               opaque);
}

void ballast_conf_properties(ballast_conf_property_cb *cb, void *opaque)
{
    static const char *type_names[] = {"string", "integer", "number", "enum",
                                       "list"};
    char type[160];

    cb("kafka.<property>", "string", NULL,
       "Passed to librdkafka (consumer and producer); checked against "
       "librdkafka's own table. kafka.bootstrap.servers and kafka.group.id "
       "are required. They override ballast's own defaults: for the "
       "producer linger.ms=100 (5 with a database exactly-once handler), "
       "enable.idempotence=true and "
       "message.max.bytes=1048588; for the consumer auto.offset.reset=earliest, "
       "and partition.assignment.strategy=cooperative-sticky under the classic "
       "group protocol. "
       "auto.commit.interval.ms is ballast's commit interval: unset, offsets are "
       "committed every second or every 10,000 finished messages, whichever comes "
       "first (exactly-once into a database: every second); set, at that interval "
       "alone. "
       "Keys that would break the delivery guarantee are refused.",
       opaque);
    for (size_t i = 0; i < NPROPS; i++) {
        if (props[i].type == T_ENUM)
            bl_fmt(type, sizeof(type), "%s", props[i].choices);
        else
            bl_fmt(type, sizeof(type), "%s", type_names[props[i].type]);
        cb(props[i].name, type, props[i].def, props[i].desc, opaque);
    }
    cb("handler.plugin.param.<name>", "string", NULL,
       "Free-form parameters for a plugin handler, read with "
       "ballast_conf_get().",
       opaque);
    cb("lag.<key>", "string", NULL,
       "Settings of `ballast lag --config FILE`: its webhooks (lag.webhook.url, "
       "lag.webhook.format, ...) and alert rules (lag.alert.*, "
       "lag.alert.<name>.match, ...), checked by `ballast lag`; see "
       "docs/operations.md, \"Alerts\". The pipeline ignores them, so that one "
       "file serves both.",
       opaque);
}
