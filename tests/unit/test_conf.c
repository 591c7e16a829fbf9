/* test_conf.c - unit tests of the configuration object (src/conf.c): the
 * property table, ballast_conf_set/get/validate/dump/properties/dup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

#define assert_contains(hay, needle)                                          \
    do {                                                                      \
        const char *h_ = (hay), *n_ = (needle);                               \
        if (!h_ || !strstr(h_, n_))                                           \
            fail_msg("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)",    \
                     n_);                                                     \
    } while (0)

#define assert_not_contains(hay, needle)                                      \
    do {                                                                      \
        const char *h_ = (hay), *n_ = (needle);                               \
        if (h_ && strstr(h_, n_))                                             \
            fail_msg("\"%s\" contains \"%s\"", h_, n_);                       \
    } while (0)

static void set_ok(ballast_conf_t *conf, const char *key, const char *value)
{
    ballast_error_t *err = ballast_conf_set(conf, key, value);
    if (err)
        fail_msg("set %s=%s: unexpected error: %s", key,
                 value ? value : "(null)", ballast_error_message(err));
}

/* Expects a BALLAST_ERR_CONFIG error mentioning every non-NULL substring. */
static void set_fails(ballast_conf_t *conf, const char *key, const char *value,
                      const char *s1, const char *s2)
{
    ballast_error_t *err = ballast_conf_set(conf, key, value);
    char msg[600];

    if (!err)
        fail_msg("set %s=%s: accepted, expected an error", key, value);
    snprintf(msg, sizeof(msg), "%s", ballast_error_message(err));
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    assert_false(ballast_error_is_retriable(err));
    assert_false(ballast_error_is_fatal(err));
    ballast_error_destroy(err);
    if (s1)
        assert_contains(msg, s1);
    if (s2)
        assert_contains(msg, s2);
}

/* ---- the keys of the spec's table --------------------------------------- */

typedef struct keyval {
    const char *key, *value;
} keyval_t;

/* Every key of the SPEC.md "Config file" table that conf.c implements, with
 * a valid value. */
static const keyval_t spec_keys[] = {
    {"kafka.bootstrap.servers", "127.0.0.1:9092"},
    {"kafka.group.id", "g1"},
    {"topics", "orders,payments"},
    {"semantics", "at-least-once"},
    {"semantics", "exactly-once"},
    {"processing", "message"},
    {"processing", "batch"},
    {"batch.max.messages", "1000"},
    {"batch.max.ms", "250"},
    {"handler", "sqlite"},
    {"handler", "postgres"},
    {"handler", "exec"},
    {"handler", "plugin"},
    {"handler", "forward"},
    {"handler.sqlite.path", "/tmp/x.db"},
    {"handler.sqlite.sql", "INSERT INTO t VALUES (:key, :value)"},
    {"handler.postgres.dsn", "host=localhost dbname=x"},
    {"handler.postgres.sql", "INSERT INTO t VALUES (:value::jsonb)"},
    {"handler.exec.command", "/usr/bin/python3 handler.py"},
    {"handler.plugin.path", "/usr/lib/ballast/plugin.so"},
    {"output.topic", "out"},
    {"retry.max.attempts", "5"},
    {"retry.backoff.initial.ms", "50"},
    {"retry.backoff.max.ms", "60000"},
    {"retry.backoff.multiplier", "1.5"},
    {"retry.backoff.jitter", "0.1"},
    {"dlq.topic", "orders-dlq"},
    {"ordering", "partition"},
    {"ordering", "key"},
    {"ordering", "none"},
    {"concurrency", "8"},
    {"max.inflight.messages", "20000"},
    {"max.inflight.bytes", "1048576"},
    {"metrics.listen", "127.0.0.1:9464"},
    {"metrics.listen", ""},
};

/* Keys of the spec's table that conf.c does not know yet. */
static const keyval_t spec_keys_missing[] = {
    {"retry.topics", "orders-retry-5s:5000,orders-retry-1m:60000"},
    {"dlq.max.ratio", "0.5"},
    {"dlq.max.consecutive", "10"},
};

typedef struct names {
    char *name[256];
    char *type[256];
    char *def[256];
    size_t count;
} names_t;

static void collect_prop(const char *key, const char *type,
                         const char *default_value, const char *description,
                         void *opaque)
{
    names_t *n = opaque;

    assert_non_null(key);
    assert_non_null(type);
    assert_non_null(description);
    assert_true(*description);
    assert_true(n->count < 256);
    n->name[n->count] = strdup(key);
    n->type[n->count] = strdup(type);
    n->def[n->count] = default_value ? strdup(default_value) : NULL;
    n->count++;
}

static void names_free(names_t *n)
{
    for (size_t i = 0; i < n->count; i++) {
        free(n->name[i]);
        free(n->type[i]);
        free(n->def[i]);
    }
}

static int names_count(const names_t *n, const char *key)
{
    int c = 0;
    for (size_t i = 0; i < n->count; i++)
        if (!strcmp(n->name[i], key))
            c++;
    return c;
}

static void check_spec_keys(const keyval_t *keys, size_t count)
{
    names_t n = {0};
    int bad = 0;

    ballast_conf_properties(collect_prop, &n);
    for (size_t i = 0; i < count; i++) {
        ballast_conf_t *conf = ballast_conf_new();
        ballast_error_t *err = ballast_conf_set(conf, keys[i].key, keys[i].value);
        if (err) {
            print_error("set %s=%s: %s\n", keys[i].key, keys[i].value,
                        ballast_error_message(err));
            bad++;
        } else if (strcmp(ballast_conf_get(conf, keys[i].key), keys[i].value)) {
            print_error("get %s: \"%s\", expected \"%s\"\n", keys[i].key,
                        ballast_conf_get(conf, keys[i].key), keys[i].value);
            bad++;
        }
        ballast_error_destroy(err);
        if (strncmp(keys[i].key, "kafka.", 6) &&
            names_count(&n, keys[i].key) != 1) {
            print_error("%s: listed %d times by ballast_conf_properties\n",
                        keys[i].key, names_count(&n, keys[i].key));
            bad++;
        }
        ballast_conf_destroy(conf);
    }
    names_free(&n);
    assert_int_equal(bad, 0);
}

static void test_spec_keys_known(void **state)
{
    (void)state;
    check_spec_keys(spec_keys, sizeof(spec_keys) / sizeof(spec_keys[0]));
}

/* Regression: failed until retry.topics, dlq.max.ratio and dlq.max.consecutive (SPEC.md
 * "Config file" table) are added to the property table of src/conf.c */
static void test_spec_keys_retry_topics_and_dlq_breaker(void **state)
{
    (void)state;
    check_spec_keys(spec_keys_missing,
                    sizeof(spec_keys_missing) / sizeof(spec_keys_missing[0]));
}

/* ---- refused values ----------------------------------------------------- */

typedef struct bad_case {
    const char *key, *value;
    const char *s1, *s2; /* substrings of the message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* unknown keys */
    {"no.such.key", "1", "no.such.key", "unknown key"},
    {"Topics", "a", "Topics", "unknown key"},
    {"kafka.", "x", "kafka.", "unknown key"},
    {"handler.plugin.param.", "x", "handler.plugin.param.", "unknown key"},
    {"", "x", "empty key", NULL},
    /* integers */
    {"concurrency", "abc", "concurrency", "expected an integer from 1 to 1024"},
    {"concurrency", "", "concurrency", "expected an integer"},
    {"concurrency", "1.5", "concurrency", "expected an integer"},
    {"concurrency", "5x", "concurrency", "\"5x\""},
    {"concurrency", "0", "concurrency", "from 1 to 1024"},
    {"concurrency", "1025", "concurrency", "from 1 to 1024"},
    {"concurrency", "-1", "concurrency", "from 1 to 1024"},
    {"concurrency", "99999999999999999999", "concurrency", "expected an integer"},
    {"batch.max.messages", "0", "batch.max.messages", "expected an integer"},
    {"batch.max.ms", "-1", "batch.max.ms", "from 0 to 3600000"},
    {"batch.max.ms", "3600001", "batch.max.ms", "from 0 to 3600000"},
    {"retry.max.attempts", "0", "retry.max.attempts", "expected an integer"},
    {"retry.backoff.initial.ms", "86400001", "retry.backoff.initial.ms", "86400000"},
    {"retry.backoff.max.ms", "ten", "retry.backoff.max.ms", "expected an integer"},
    {"startup.timeout.ms", "99", "startup.timeout.ms", "from 100 to 3600000"},
    {"shutdown.timeout.ms", "3600001", "shutdown.timeout.ms", "expected an integer"},
    {"max.inflight.messages", "0", "max.inflight.messages", "expected an integer"},
    {"max.inflight.bytes", "1023", "max.inflight.bytes", "from 1024"},
    /* doubles */
    {"retry.backoff.multiplier", "0.5", "retry.backoff.multiplier",
     "expected a number from 1 to 1000"},
    {"retry.backoff.multiplier", "1000.5", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.multiplier", "abc", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.multiplier", "", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.multiplier", "nan", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.multiplier", "inf", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.multiplier", "2x", "retry.backoff.multiplier", "expected a number"},
    {"retry.backoff.jitter", "1.01", "retry.backoff.jitter", "expected a number from 0 to 1"},
    {"retry.backoff.jitter", "-0.1", "retry.backoff.jitter", "expected a number from 0 to 1"},
    /* enums */
    {"semantics", "at-most-once", "semantics",
     "expected one of at-least-once|exactly-once"},
    {"semantics", "", "semantics", "expected one of"},
    {"semantics", "at-least-onc", "semantics", "expected one of"},
    {"semantics", "at-least-once ", "semantics", "expected one of"},
    {"processing", "stream", "processing", "expected one of message|batch"},
    {"handler", "SQLITE", "handler", "sqlite|postgres|exec|plugin|forward"},
    {"handler", "http", "handler", "expected one of"},
    {"ordering", "random", "ordering", "partition|key|none"},
    {"log.level", "trace", "log.level", "error|warn|info|debug"},
    /* lists */
    {"topics", "", "topics", "comma-separated list"},
    {"topics", "a,,b", "topics", "comma-separated list"},
    {"topics", "a,", "topics", "comma-separated list"},
    {"topics", ",a", "topics", "comma-separated list"},
    {"topics", " , ", "topics", "comma-separated list"},
    /* librdkafka properties */
    {"kafka.no.such.prop", "1", "kafka.no.such.prop", "unknown librdkafka property"},
    {"kafka.session.timeout.ms", "abc", "kafka.session.timeout.ms", "invalid value"},
    {"kafka.session.timeout.ms", "0", "kafka.session.timeout.ms", "invalid value"},
    {"kafka.auto.offset.reset", "sometimes", "kafka.auto.offset.reset", "invalid value"},
    {"kafka.enable.auto.commit", "false", "kafka.enable.auto.commit",
     "ballast commits offsets itself"},
    {"kafka.enable.auto.commit", "true", "kafka.enable.auto.commit", "cannot be set"},
    {"kafka.enable.auto.offset.store", "false", "kafka.enable.auto.offset.store",
     "cannot be set"},
    {"kafka.isolation.level", "read_committed", "kafka.isolation.level", "semantics"},
    {"kafka.enable.partition.eof", "true", "kafka.enable.partition.eof", "cannot be set"},
    /* the consumer group protocol: classic or consumer (KIP-848) */
    {"kafka.group.protocol", "kip848", "kafka.group.protocol", "invalid value"},
    {"kafka.group.protocol", "", "kafka.group.protocol", "invalid value"},
    {"kafka.group.protocol.type", "consumer", "kafka.group.protocol.type", "cannot be set"},
};

static void test_bad_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        set_fails(conf, bad_cases[i].key, bad_cases[i].value, bad_cases[i].s1,
                  bad_cases[i].s2);
        ballast_conf_destroy(conf);
    }
}

static void test_null_key_and_value(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    err = ballast_conf_set(conf, NULL, "x");
    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    ballast_error_destroy(err);
    /* A NULL value is "": fine for a string, not for an integer. */
    set_ok(conf, "output.topic", NULL);
    assert_string_equal(ballast_conf_get(conf, "output.topic"), "");
    set_fails(conf, "concurrency", NULL, "concurrency", "expected an integer");
    ballast_conf_destroy(conf);
}

/* A refused value leaves the previous one in place. */
static void test_refused_value_keeps_previous(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    (void)state;

    set_ok(conf, "concurrency", "4");
    set_fails(conf, "concurrency", "4000", "concurrency", NULL);
    assert_string_equal(ballast_conf_get(conf, "concurrency"), "4");
    set_ok(conf, "kafka.session.timeout.ms", "10000");
    set_fails(conf, "kafka.session.timeout.ms", "abc", NULL, NULL);
    assert_string_equal(ballast_conf_get(conf, "kafka.session.timeout.ms"), "10000");
    ballast_conf_destroy(conf);
}

static const keyval_t good_cases[] = {
    /* range limits, both ends */
    {"concurrency", "1"},
    {"concurrency", "1024"},
    {"batch.max.messages", "1"},
    {"batch.max.messages", "1000000"},
    {"batch.max.ms", "0"},
    {"batch.max.ms", "3600000"},
    {"startup.timeout.ms", "100"},
    {"shutdown.timeout.ms", "0"},
    {"retry.backoff.initial.ms", "0"},
    {"retry.backoff.max.ms", "86400000"},
    {"max.inflight.messages", "9000000000000000"},
    {"max.inflight.bytes", "1024"},
    {"retry.backoff.multiplier", "1"},
    {"retry.backoff.multiplier", "1000"},
    {"retry.backoff.jitter", "0"},
    {"retry.backoff.jitter", "1"},
    {"retry.backoff.jitter", "0.25"},
    {"log.level", "error"},
    {"log.level", "debug"},
    /* lists: blanks around items are fine */
    {"topics", "a"},
    {"topics", " a , b "},
    /* librdkafka properties, global and topic-level */
    {"kafka.bootstrap.servers", "h1:9092,h2:9092"},
    {"kafka.group.id", "my-group"},
    {"kafka.session.timeout.ms", "45000"},
    {"kafka.auto.offset.reset", "earliest"},
    {"kafka.security.protocol", "sasl_ssl"},
    {"kafka.sasl.mechanisms", "PLAIN"},
    {"kafka.sasl.username", "u"},
    {"kafka.sasl.password", "p"},
    {"kafka.client.id", "ballast-test"},
    /* free-form plugin parameters */
    {"handler.plugin.param.anything", "goes"},
    {"handler.plugin.param.x.y.z", ""},
};

static void test_good_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        set_ok(conf, good_cases[i].key, good_cases[i].value);
        assert_string_equal(ballast_conf_get(conf, good_cases[i].key),
                            good_cases[i].value);
        ballast_conf_destroy(conf);
    }
}

/* Setting a key twice keeps the last value (table and prefixed keys). */
static void test_set_twice(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    (void)state;

    set_ok(conf, "topics", "a");
    set_ok(conf, "topics", "b");
    assert_string_equal(ballast_conf_get(conf, "topics"), "b");
    set_ok(conf, "kafka.client.id", "one");
    set_ok(conf, "kafka.client.id", "two");
    assert_string_equal(ballast_conf_get(conf, "kafka.client.id"), "two");
    set_ok(conf, "handler.plugin.param.p", "1");
    set_ok(conf, "handler.plugin.param.p", "2");
    assert_string_equal(ballast_conf_get(conf, "handler.plugin.param.p"), "2");
    ballast_conf_destroy(conf);
}

/* ---- defaults and typed reads ------------------------------------------- */

static const keyval_t defaults[] = {
    {"semantics", "at-least-once"},
    {"processing", "message"},
    {"batch.max.messages", "500"},
    {"batch.max.ms", "100"},
    {"retry.max.attempts", "3"},
    {"retry.backoff.initial.ms", "100"},
    {"retry.backoff.max.ms", "30000"},
    {"retry.backoff.multiplier", "2"},
    {"retry.backoff.jitter", "0.2"},
    {"ordering", "partition"},
    {"concurrency", "1"},
    {"max.inflight.messages", "100000"},
    {"max.inflight.bytes", "67108864"},
    {"metrics.listen", ""},
    {"startup.timeout.ms", "30000"},
    {"shutdown.timeout.ms", "30000"},
    {"log.level", "info"},
};

static void test_get_defaults(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    (void)state;

    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        const char *v = ballast_conf_get(conf, defaults[i].key);
        if (!v || strcmp(v, defaults[i].value))
            fail_msg("default of %s: \"%s\", expected \"%s\"", defaults[i].key,
                     v ? v : "(null)", defaults[i].value);
    }
    /* no default, unknown, unset prefixed: NULL */
    assert_null(ballast_conf_get(conf, "topics"));
    assert_null(ballast_conf_get(conf, "handler"));
    assert_null(ballast_conf_get(conf, "output.topic"));
    assert_null(ballast_conf_get(conf, "dlq.topic"));
    assert_null(ballast_conf_get(conf, "no.such.key"));
    assert_null(ballast_conf_get(conf, "kafka.bootstrap.servers"));
    assert_null(ballast_conf_get(conf, "handler.plugin.param.x"));
    /* a set value replaces the default */
    set_ok(conf, "concurrency", "7");
    assert_string_equal(ballast_conf_get(conf, "concurrency"), "7");
    ballast_conf_destroy(conf);
}

static void test_typed_reads(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    bl_logger_t lg;
    (void)state;

    assert_int_equal(bl_conf_int(conf, "concurrency"), 1);
    assert_int_equal(bl_conf_int(conf, "max.inflight.bytes"), 67108864);
    assert_true(bl_conf_double(conf, "retry.backoff.jitter") == 0.2);
    assert_string_equal(bl_conf_str(conf, "topics"), "");
    assert_string_equal(bl_conf_str(conf, "no.such.key"), "");
    set_ok(conf, "max.inflight.messages", "9000000000000000");
    assert_true(bl_conf_int(conf, "max.inflight.messages") == 9000000000000000LL);
    set_ok(conf, "retry.backoff.multiplier", "1.5");
    assert_true(bl_conf_double(conf, "retry.backoff.multiplier") == 1.5);

    lg = bl_conf_logger(conf);
    assert_int_equal(lg.level, BALLAST_LOG_INFO);
    set_ok(conf, "log.level", "debug");
    assert_int_equal(bl_conf_logger(conf).level, BALLAST_LOG_DEBUG);
    set_ok(conf, "log.level", "warn");
    assert_int_equal(bl_conf_logger(conf).level, BALLAST_LOG_WARN);
    set_ok(conf, "log.level", "error");
    assert_int_equal(bl_conf_logger(conf).level, BALLAST_LOG_ERROR);
    ballast_conf_destroy(conf);
}

typedef struct kvlist {
    char *key[64], *value[64];
    size_t count;
} kvlist_t;

static void collect_kv(const char *key, const char *value, void *opaque)
{
    kvlist_t *l = opaque;

    assert_true(l->count < 64);
    l->key[l->count] = strdup(key);
    l->value[l->count] = strdup(value);
    l->count++;
}

static void kvlist_free(kvlist_t *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->key[i]);
        free(l->value[i]);
    }
    l->count = 0;
}

static const char *kvlist_get(const kvlist_t *l, const char *key)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->key[i], key))
            return l->value[i];
    return NULL;
}

static void test_each_prefixed(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    kvlist_t l = {0};
    (void)state;

    set_ok(conf, "kafka.bootstrap.servers", "b:1");
    set_ok(conf, "handler.plugin.param.mode", "fast");
    set_ok(conf, "kafka.group.id", "g");
    set_ok(conf, "topics", "t");
    bl_conf_each_prefixed(conf, "kafka.", collect_kv, &l);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.key[0], "bootstrap.servers"); /* in set order */
    assert_string_equal(l.value[0], "b:1");
    assert_string_equal(l.key[1], "group.id");
    kvlist_free(&l);
    bl_conf_each_prefixed(conf, "handler.plugin.param.", collect_kv, &l);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.key[0], "mode");
    assert_string_equal(l.value[0], "fast");
    kvlist_free(&l);
    ballast_conf_destroy(conf);
}

/* ---- properties --------------------------------------------------------- */

static void test_properties_each_once(void **state)
{
    names_t n = {0};
    (void)state;

    ballast_conf_properties(collect_prop, &n);
    assert_true(n.count > 20);
    assert_int_equal(names_count(&n, "kafka.<property>"), 1);
    assert_int_equal(names_count(&n, "handler.plugin.param.<name>"), 1);
    for (size_t i = 0; i < n.count; i++) {
        assert_int_equal(names_count(&n, n.name[i]), 1);
        if (strchr(n.name[i], '<'))
            continue;
        /* every listed key is known, and its default is a valid value */
        ballast_conf_t *conf = ballast_conf_new();
        if (n.def[i]) {
            set_ok(conf, n.name[i], n.def[i]);
            assert_string_equal(ballast_conf_get(conf, n.name[i]), n.def[i]);
        } else {
            assert_null(ballast_conf_get(conf, n.name[i]));
        }
        ballast_conf_destroy(conf);
    }
    /* enums list their choices as the type */
    for (size_t i = 0; i < n.count; i++) {
        if (!strcmp(n.name[i], "semantics"))
            assert_string_equal(n.type[i], "at-least-once|exactly-once");
        if (!strcmp(n.name[i], "concurrency"))
            assert_string_equal(n.type[i], "integer");
        if (!strcmp(n.name[i], "topics"))
            assert_string_equal(n.type[i], "list");
        if (!strcmp(n.name[i], "retry.backoff.jitter"))
            assert_string_equal(n.type[i], "number");
    }
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        assert_int_equal(names_count(&n, defaults[i].key), 1);
    names_free(&n);
}

/* ---- validate ----------------------------------------------------------- */

static const char *const base_conf[] = {
    "kafka.bootstrap.servers=127.0.0.1:9092",
    "kafka.group.id=g",
    "topics=in1,in2",
    "handler=sqlite",
    "handler.sqlite.path=/tmp/x.db",
    "handler.sqlite.sql=INSERT INTO t VALUES (:value)",
    NULL,
};

typedef struct validate_case {
    const char *what;
    const char *omit;         /* comma-separated base keys to leave out */
    const char *const set[6]; /* "key=value", applied after the base */
    const char *s1, *s2;      /* NULL s1: valid */
} validate_case_t;

static const validate_case_t validate_cases[] = {
    {"valid sqlite", NULL, {NULL}, NULL, NULL},
    {"no bootstrap", "kafka.bootstrap.servers", {NULL}, "kafka.bootstrap.servers",
     "missing"},
    {"no group", "kafka.group.id", {NULL}, "kafka.group.id", "missing"},
    {"no topics", "topics", {NULL}, "topics", "missing"},
    {"no handler", "handler,handler.sqlite.path,handler.sqlite.sql", {NULL},
     "handler", "missing"},
    {"sqlite without path", "handler.sqlite.path", {NULL}, "handler.sqlite.path",
     "handler = sqlite"},
    {"sqlite without sql", "handler.sqlite.sql", {NULL}, "handler.sqlite.sql",
     "handler = sqlite"},
    {"sqlite with empty path", NULL, {"handler.sqlite.path=", NULL},
     "handler.sqlite.path", "missing"},
    {"postgres without dsn", NULL,
     {"handler=postgres", "handler.postgres.sql=SELECT 1", NULL},
     "handler.postgres.dsn", "handler = postgres"},
    {"postgres without sql", NULL,
     {"handler=postgres", "handler.postgres.dsn=host=h", NULL},
     "handler.postgres.sql", "handler = postgres"},
    {"postgres valid", NULL,
     {"handler=postgres", "handler.postgres.dsn=host=h",
      "handler.postgres.sql=SELECT 1", NULL},
     NULL, NULL},
    {"exec without command", NULL, {"handler=exec", NULL}, "handler.exec.command",
     "handler = exec"},
    {"exec valid", NULL, {"handler=exec", "handler.exec.command=/bin/cat", NULL},
     NULL, NULL},
    {"plugin without path", NULL, {"handler=plugin", NULL}, "handler.plugin.path",
     "handler = plugin"},
    {"plugin relative path", NULL,
     {"handler=plugin", "handler.plugin.path=plugins/p.so", NULL},
     "handler.plugin.path", "not an absolute path"},
    {"plugin dot path", NULL,
     {"handler=plugin", "handler.plugin.path=./p.so", NULL}, "handler.plugin.path",
     "absolute"},
    {"plugin valid", NULL,
     {"handler=plugin", "handler.plugin.path=/usr/lib/p.so", NULL}, NULL, NULL},
    {"forward without output", NULL, {"handler=forward", NULL}, "output.topic",
     "handler = forward"},
    {"forward valid", NULL, {"handler=forward", "output.topic=out", NULL}, NULL,
     NULL},
    {"output is input", NULL, {"handler=forward", "output.topic=in2", NULL},
     "output.topic", "input topic"},
    {"output is input, blanks in list", NULL,
     {"topics= in1 , in2 ", "handler=forward", "output.topic=in1", NULL},
     "output.topic", "\"in1\""},
    {"output is a prefix of an input", NULL,
     {"handler=forward", "output.topic=in", NULL}, NULL, NULL},
    {"output of sqlite handler is input", NULL, {"output.topic=in1", NULL},
     "output.topic", "input topic"},
    {"dlq is input", NULL, {"dlq.topic=in1", NULL}, "dlq.topic", "input topic"},
    {"dlq is the only input", NULL, {"topics=orders", "dlq.topic=orders", NULL},
     "dlq.topic", "\"orders\""},
    {"dlq valid", NULL, {"dlq.topic=in1-dlq", NULL}, NULL, NULL},
    {"backoff max below initial", NULL, {"retry.backoff.max.ms=50", NULL},
     "retry.backoff.max.ms", "retry.backoff.initial.ms"},
    {"backoff max below initial, both set", NULL,
     {"retry.backoff.initial.ms=5000", "retry.backoff.max.ms=4999", NULL},
     "retry.backoff.max.ms", NULL},
    {"backoff max equal initial", NULL,
     {"retry.backoff.initial.ms=5000", "retry.backoff.max.ms=5000", NULL}, NULL,
     NULL},
    /* The consumer group protocol leaves assignment, session and heartbeat
     * to the broker: the classic keys for them are refused, all named. */
    {"classic protocol with its own keys", NULL,
     {"kafka.group.protocol=classic", "kafka.session.timeout.ms=6000",
      "kafka.heartbeat.interval.ms=500",
      "kafka.partition.assignment.strategy=cooperative-sticky", NULL},
     NULL, NULL},
    {"consumer protocol", NULL,
     {"kafka.group.protocol=consumer", "kafka.group.remote.assignor=uniform", NULL}, NULL,
     NULL},
    {"consumer protocol with an assignor", NULL,
     {"kafka.group.protocol=consumer", "kafka.partition.assignment.strategy=range", NULL},
     "kafka.partition.assignment.strategy: not supported with kafka.group.protocol = "
     "consumer",
     "kafka.group.remote.assignor"},
    {"consumer protocol with a session timeout", NULL,
     {"kafka.session.timeout.ms=6000", "kafka.group.protocol=consumer", NULL},
     "kafka.session.timeout.ms: not supported", "group.consumer.session.timeout.ms"},
    {"consumer protocol with a heartbeat", NULL,
     {"kafka.group.protocol=consumer", "kafka.heartbeat.interval.ms=500", NULL},
     "kafka.heartbeat.interval.ms: not supported", "group.consumer.heartbeat.interval.ms"},
    {"consumer protocol with all three", NULL,
     {"kafka.group.protocol=consumer", "kafka.heartbeat.interval.ms=500",
      "kafka.session.timeout.ms=6000", "kafka.partition.assignment.strategy=range", NULL},
     "kafka.partition.assignment.strategy, kafka.session.timeout.ms, "
     "kafka.heartbeat.interval.ms: not supported with kafka.group.protocol = consumer",
     "heartbeat interval"},
    {"everything set", NULL,
     {"processing=batch", "ordering=key", "concurrency=4", "dlq.topic=dlq",
      "kafka.auto.offset.reset=earliest", NULL},
     NULL, NULL},
};

static bool in_list(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, key, n))
            return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

static void apply_kv(ballast_conf_t *conf, const char *kv)
{
    char key[128];
    const char *eq = strchr(kv, '=');

    assert_non_null(eq);
    snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
    set_ok(conf, key, eq + 1);
}

static ballast_conf_t *build(const char *omit, const char *const *set)
{
    ballast_conf_t *conf = ballast_conf_new();

    for (size_t i = 0; base_conf[i]; i++) {
        char key[128];
        snprintf(key, sizeof(key), "%.*s",
                 (int)(strchr(base_conf[i], '=') - base_conf[i]), base_conf[i]);
        if (!in_list(omit, key))
            apply_kv(conf, base_conf[i]);
    }
    for (size_t i = 0; set && set[i]; i++)
        apply_kv(conf, set[i]);
    return conf;
}

static void test_validate(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(validate_cases) / sizeof(validate_cases[0]); i++) {
        const validate_case_t *c = &validate_cases[i];
        ballast_conf_t *conf = build(c->omit, c->set);
        ballast_error_t *err = ballast_conf_validate(conf);

        if (!c->s1) {
            if (err)
                fail_msg("%s: unexpected error: %s", c->what,
                         ballast_error_message(err));
        } else {
            if (!err)
                fail_msg("%s: accepted, expected an error naming %s", c->what,
                         c->s1);
            assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
            if (!strstr(ballast_error_message(err), c->s1) ||
                (c->s2 && !strstr(ballast_error_message(err), c->s2)))
                fail_msg("%s: error \"%s\" does not name \"%s\" and \"%s\"",
                         c->what, ballast_error_message(err), c->s1,
                         c->s2 ? c->s2 : "");
        }
        ballast_error_destroy(err);
        ballast_conf_destroy(conf);
    }
}

static void test_validate_empty_conf(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = ballast_conf_validate(conf);
    (void)state;

    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    assert_contains(ballast_error_message(err), "missing");
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

static ballast_outcome_t noop_handle(void *st, const ballast_message_t *msg,
                                     ballast_result_t *res)
{
    (void)st;
    (void)msg;
    (void)res;
    return BALLAST_OUTCOME_OK;
}

/* A handler given through the library API needs no `handler` key. */
static void test_validate_library_handler(void **state)
{
    static const ballast_handler_t h = {BALLAST_HANDLER_ABI_VERSION, "noop",
                                        NULL, noop_handle, NULL, NULL};
    ballast_conf_t *conf = build("handler,handler.sqlite.path,handler.sqlite.sql",
                                 NULL);
    ballast_error_t *err;
    void *opaque = NULL;
    (void)state;

    err = ballast_conf_validate(conf);
    assert_non_null(err);
    ballast_error_destroy(err);
    ballast_conf_set_handler(conf, &h, (void *)&h);
    err = ballast_conf_validate(conf);
    if (err)
        fail_msg("unexpected: %s", ballast_error_message(err));
    assert_ptr_equal(bl_conf_handler(conf, &opaque), &h);
    assert_ptr_equal(opaque, &h);
    ballast_conf_destroy(conf);
}

/* Regression: failed until validate() (or set()) refuses an empty kafka.bootstrap.servers:
 * src/conf.c ballast_conf_validate checks only that the key exists */
static void test_validate_empty_bootstrap(void **state)
{
    ballast_conf_t *conf = build(NULL, (const char *const[]){
                                           "kafka.bootstrap.servers=", NULL});
    ballast_error_t *err = ballast_conf_validate(conf);
    (void)state;

    ballast_conf_destroy(conf);
    if (!err)
        fail_msg("an empty kafka.bootstrap.servers was accepted by validate()");
    assert_contains(ballast_error_message(err), "kafka.bootstrap.servers");
    ballast_error_destroy(err);
}

/* ---- dump --------------------------------------------------------------- */

static void dump(const ballast_conf_t *conf, int redact, kvlist_t *l)
{
    ballast_conf_dump(conf, redact, collect_kv, l);
}

static void test_dump_redacts_secrets(void **state)
{
    ballast_conf_t *conf = build(NULL, NULL);
    kvlist_t l = {0};
    (void)state;

    set_ok(conf, "kafka.sasl.username", "alice");
    set_ok(conf, "kafka.sasl.password", "secret-sasl");
    set_ok(conf, "kafka.ssl.key.password", "secret-ssl");
    set_ok(conf, "handler.postgres.dsn",
           "host=db port=5432 user=u password=secret-pg dbname=x");
    set_ok(conf, "handler.plugin.param.token", "secret-token");

    dump(conf, 1, &l);
    assert_string_equal(kvlist_get(&l, "kafka.sasl.password"), "[redacted]");
    assert_string_equal(kvlist_get(&l, "kafka.ssl.key.password"), "[redacted]");
    assert_string_equal(kvlist_get(&l, "kafka.sasl.username"), "alice");
    assert_string_equal(kvlist_get(&l, "kafka.bootstrap.servers"), "127.0.0.1:9092");
    assert_string_equal(kvlist_get(&l, "handler.postgres.dsn"),
                        "user=u password=[redacted] dbname=x host=db port=5432");
    assert_string_equal(kvlist_get(&l, "handler.plugin.param.token"), "[redacted]");
    for (size_t i = 0; i < l.count; i++)
        assert_not_contains(l.value[i], "secret");
    kvlist_free(&l);

    dump(conf, 0, &l);
    assert_string_equal(kvlist_get(&l, "kafka.sasl.password"), "secret-sasl");
    assert_string_equal(kvlist_get(&l, "kafka.ssl.key.password"), "secret-ssl");
    assert_string_equal(kvlist_get(&l, "handler.postgres.dsn"),
                        "host=db port=5432 user=u password=secret-pg dbname=x");
    assert_string_equal(kvlist_get(&l, "handler.plugin.param.token"), "secret-token");
    kvlist_free(&l);
    ballast_conf_destroy(conf);
}

typedef struct dsn_case {
    const char *dsn, *redacted;
} dsn_case_t;

/* The dump is libpq's own reading of the string, as keyword=value pairs in
 * libpq's order, with every password replaced. */
static const dsn_case_t dsn_cases[] = {
    {"host=h user=u password=secret dbname=db",
     "user=u password=[redacted] dbname=db host=h"},
    {"password=secret", "password=[redacted]"},
    {"host=h password='se cret' dbname=db", "password=[redacted] dbname=db host=h"},
    {"host=h password='it\\'s secret' dbname=db",
     "password=[redacted] dbname=db host=h"},
    {"host=h password=''", "password=[redacted] host=h"},
    {"postgresql://u:secret@h/db", "user=u password=[redacted] dbname=db host=h"},
    {"postgresql://u:secret@h:5432/db?sslmode=disable",
     "user=u password=[redacted] dbname=db host=h port=5432 sslmode=disable"},
    {"postgres://u:secret@h/db", "user=u password=[redacted] dbname=db host=h"},
    {"postgresql://h/db?user=u&password=secret",
     "user=u password=[redacted] dbname=db host=h"},
    /* nothing to hide */
    {"postgresql://u@h:5432/db", "user=u dbname=db host=h port=5432"},
    {"host=h user=u dbname=db", "user=u dbname=db host=h"},
    {"", ""},
    /* not a connection string: hidden whole */
    {"host=h password='unterminated", "[redacted: not a valid connection string]"},
};

static void test_dump_redacts_dsn_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dsn_cases) / sizeof(dsn_cases[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        kvlist_t l = {0};

        set_ok(conf, "handler.postgres.dsn", dsn_cases[i].dsn);
        dump(conf, 1, &l);
        assert_string_equal(kvlist_get(&l, "handler.postgres.dsn"),
                            dsn_cases[i].redacted);
        kvlist_free(&l);
        dump(conf, 0, &l);
        assert_string_equal(kvlist_get(&l, "handler.postgres.dsn"), dsn_cases[i].dsn);
        kvlist_free(&l);
        ballast_conf_destroy(conf);
    }
}

/* libpq allows blanks around '=' and takes the last of repeated keywords;
 * `sslpassword` is a keyword of its own. None may leak the password. */
static const char *const leaky_dsns[] = {
    "host=h password = secret dbname=db",
    "host=h password =secret",
    "host=h sslpassword=secret1 password=secret2",
    "host=h password=secret1 password=secret2",
    "postgresql://u:secret1@h/db?password=secret2",
};

/* Regression: failed until redact_dsn in src/conf.c hides every password value: it only
 * looks for the first "password=" (no blanks around '='), and for a URI with
 * a user:password part it never looks at the query string */
static void test_dump_redacts_dsn_variants(void **state)
{
    int leaks = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(leaky_dsns) / sizeof(leaky_dsns[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        kvlist_t l = {0};
        const char *v;

        set_ok(conf, "handler.postgres.dsn", leaky_dsns[i]);
        dump(conf, 1, &l);
        v = kvlist_get(&l, "handler.postgres.dsn");
        if (strstr(v, "secret")) {
            print_error("DSN \"%s\" dumped as \"%s\"\n", leaky_dsns[i], v);
            leaks++;
        }
        kvlist_free(&l);
        ballast_conf_destroy(conf);
    }
    assert_int_equal(leaks, 0);
}

/* A URI without user:password must come out unchanged, even with an '@'
 * later on (in the query).
 * Regression: failed until redact_dsn in src/conf.c looks for the '@' of the authority
 * only (before the first '/', '?' or '#'), not anywhere in the string */
static void test_dump_dsn_uri_at_in_query_unchanged(void **state)
{
    static const char dsn[] = "postgresql://h:5432/db?application_name=me@work";
    ballast_conf_t *conf = ballast_conf_new();
    kvlist_t l = {0};
    char got[128];
    (void)state;

    set_ok(conf, "handler.postgres.dsn", dsn);
    dump(conf, 1, &l);
    snprintf(got, sizeof(got), "%s", kvlist_get(&l, "handler.postgres.dsn"));
    kvlist_free(&l);
    ballast_conf_destroy(conf);
    /* libpq reads the whole query value; nothing is taken for a password. */
    assert_string_equal(got, "dbname=db host=h port=5432 application_name=me@work");
}

static void test_dump_redacts_kafka_secret_names(void **state)
{
    static const char *const secret_keys[] = {
        "kafka.sasl.password", "kafka.ssl.key.password",
        "kafka.ssl.keystore.password", "kafka.sasl.oauthbearer.config",
        "kafka.ssl.key.pem"};
    ballast_conf_t *conf = ballast_conf_new();
    kvlist_t l = {0};
    (void)state;

    for (size_t i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++)
        set_ok(conf, secret_keys[i], "hunter2");
    dump(conf, 1, &l);
    for (size_t i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++) {
        const char *v = kvlist_get(&l, secret_keys[i]);
        if (!v || strcmp(v, "[redacted]"))
            fail_msg("%s dumped as \"%s\"", secret_keys[i], v ? v : "(absent)");
    }
    kvlist_free(&l);
    ballast_conf_destroy(conf);
}

/* Dump shows set keys and defaults, never unset keys without default, each
 * key once. */
static void test_dump_contents(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    kvlist_t l = {0};
    (void)state;

    set_ok(conf, "topics", "a,b");
    set_ok(conf, "kafka.group.id", "g");
    dump(conf, 0, &l);
    assert_string_equal(kvlist_get(&l, "topics"), "a,b");
    assert_string_equal(kvlist_get(&l, "kafka.group.id"), "g");
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        assert_string_equal(kvlist_get(&l, defaults[i].key), defaults[i].value);
    assert_null(kvlist_get(&l, "handler"));
    assert_null(kvlist_get(&l, "output.topic"));
    assert_null(kvlist_get(&l, "dlq.topic"));
    for (size_t i = 0; i < l.count; i++)
        for (size_t j = i + 1; j < l.count; j++)
            assert_string_not_equal(l.key[i], l.key[j]);
    kvlist_free(&l);
    ballast_conf_destroy(conf);
}

/* include/ballast/ballast.h: kafka.* keys first, then the table keys. */
static void test_dump_order(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    kvlist_t l = {0};
    size_t first_kafka = (size_t)-1, last_table = 0;
    (void)state;

    set_ok(conf, "kafka.group.id", "g");
    set_ok(conf, "topics", "a");
    dump(conf, 0, &l);
    for (size_t i = 0; i < l.count; i++) {
        if (!strncmp(l.key[i], "kafka.", 6)) {
            if (first_kafka == (size_t)-1)
                first_kafka = i;
        } else if (strncmp(l.key[i], "handler.plugin.param.", 21)) {
            last_table = i;
        }
    }
    kvlist_free(&l);
    ballast_conf_destroy(conf);
    assert_true(first_kafka != (size_t)-1);
    if (first_kafka > last_table)
        fail_msg("kafka.* key dumped at position %zu, after table key at %zu",
                 first_kafka, last_table);
}

/* ---- dup ---------------------------------------------------------------- */

static void test_dup_is_deep(void **state)
{
    ballast_conf_t *orig = build(NULL, NULL), *copy;
    kvlist_t a = {0}, b = {0};
    (void)state;

    set_ok(orig, "handler.plugin.param.p", "orig");
    set_ok(orig, "concurrency", "2");
    copy = ballast_conf_dup(orig);
    assert_non_null(copy);

    /* same content */
    dump(orig, 0, &a);
    dump(copy, 0, &b);
    assert_int_equal(a.count, b.count);
    for (size_t i = 0; i < a.count; i++) {
        assert_string_equal(a.key[i], b.key[i]);
        assert_string_equal(a.value[i], b.value[i]);
    }
    kvlist_free(&a);
    kvlist_free(&b);

    /* changing the copy leaves the original alone */
    set_ok(copy, "concurrency", "9");
    set_ok(copy, "topics", "other");
    set_ok(copy, "kafka.group.id", "g2");
    set_ok(copy, "kafka.client.id", "new");
    set_ok(copy, "handler.plugin.param.p", "copy");
    assert_string_equal(ballast_conf_get(orig, "concurrency"), "2");
    assert_string_equal(ballast_conf_get(orig, "topics"), "in1,in2");
    assert_string_equal(ballast_conf_get(orig, "kafka.group.id"), "g");
    assert_null(ballast_conf_get(orig, "kafka.client.id"));
    assert_string_equal(ballast_conf_get(orig, "handler.plugin.param.p"), "orig");

    /* and the copy outlives the original (ASan catches shared storage) */
    ballast_conf_destroy(orig);
    assert_string_equal(ballast_conf_get(copy, "concurrency"), "9");
    assert_string_equal(ballast_conf_get(copy, "kafka.bootstrap.servers"),
                        "127.0.0.1:9092");
    assert_string_equal(ballast_conf_get(copy, "handler.sqlite.path"), "/tmp/x.db");
    assert_string_equal(ballast_conf_get(copy, "handler.plugin.param.p"), "copy");
    ballast_conf_destroy(copy);
}

static void test_dup_empty_and_callbacks(void **state)
{
    static const ballast_handler_t h = {BALLAST_HANDLER_ABI_VERSION, "noop",
                                        NULL, noop_handle, NULL, NULL};
    ballast_conf_t *orig = ballast_conf_new(), *copy;
    void *opaque = NULL;
    (void)state;

    ballast_conf_set_handler(orig, &h, &opaque);
    copy = ballast_conf_dup(orig);
    assert_non_null(copy);
    assert_ptr_equal(bl_conf_handler(copy, &opaque), &h);
    assert_ptr_equal(opaque, &opaque);
    assert_null(ballast_conf_get(copy, "topics"));
    assert_string_equal(ballast_conf_get(copy, "semantics"), "at-least-once");
    ballast_conf_destroy(orig);
    ballast_conf_destroy(copy);
    ballast_conf_destroy(NULL); /* a no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_keys_known),
        cmocka_unit_test(test_spec_keys_retry_topics_and_dlq_breaker),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_null_key_and_value),
        cmocka_unit_test(test_refused_value_keeps_previous),
        cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_set_twice),
        cmocka_unit_test(test_get_defaults),
        cmocka_unit_test(test_typed_reads),
        cmocka_unit_test(test_each_prefixed),
        cmocka_unit_test(test_properties_each_once),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_empty_conf),
        cmocka_unit_test(test_validate_library_handler),
        cmocka_unit_test(test_validate_empty_bootstrap),
        cmocka_unit_test(test_dump_redacts_secrets),
        cmocka_unit_test(test_dump_redacts_dsn_forms),
        cmocka_unit_test(test_dump_redacts_dsn_variants),
        cmocka_unit_test(test_dump_dsn_uri_at_in_query_unchanged),
        cmocka_unit_test(test_dump_redacts_kafka_secret_names),
        cmocka_unit_test(test_dump_contents),
        cmocka_unit_test(test_dump_order),
        cmocka_unit_test(test_dup_is_deep),
        cmocka_unit_test(test_dup_empty_and_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
