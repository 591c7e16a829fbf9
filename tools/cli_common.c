/*
 * cli_common.c - what the subcommands share: errors and exit codes,
 * options, a clock, the stop signals, and the configuration and checks of
 * their Kafka clients (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_error(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ballast: %s\n", line);
}

int cli_exit_code(const ballast_error_t *err)
{
    switch (ballast_error_code(err)) {
    case BALLAST_OK:
    case BALLAST_ERR_STOPPED: /* a stop during start-up is a clean stop */
        return 0;
    case BALLAST_ERR_CONFIG:
        return EX_CONFIG;
    case BALLAST_ERR_UNREACHABLE:
        return EX_UNAVAILABLE;
    case BALLAST_ERR_INTERNAL:
        return EX_SOFTWARE;
    default:
        return 1;
    }
}

int cli_fail(ballast_error_t *err)
{
    int code = cli_exit_code(err);

    if (err)
        cli_error("%s", ballast_error_message(err));
    ballast_error_destroy(err);
    return code;
}

volatile sig_atomic_t cli_stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_stop_requested = 1;
}

void cli_handle_stop_signals(void (*handler)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Writes to a closed pipe (a dead exec child, a closed reader) must
     * fail with EPIPE, not kill the command. */
    signal(SIGPIPE, SIG_IGN);
}

void cli_catch_stop_signals(void)
{
    cli_handle_stop_signals(on_stop_signal);
}

double cli_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool cli_is_help(const char *arg)
{
    return !strcmp(arg, "-h") || !strcmp(arg, "--help");
}

void *cli_slots(int argc, size_t size)
{
    void *p = calloc(argc > 0 ? (size_t)argc : 1, size);

    if (!p)
        cli_error("out of memory");
    return p;
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *name,
                          const char *alias, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (!strncmp(a, name, n) && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, name) && !(alias && !strcmp(a, alias)))
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

const char **cli_props_new(int argc)
{
    return cli_slots(argc + CLI_CONFIG_KEYS, sizeof(const char *));
}

const char *cli_props_get(const char *const *props, size_t nprops, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = nprops; i-- > 0;)
        if (!strncmp(props[i], name, n) && props[i][n] == '=')
            return props[i] + n + 1;
    return NULL;
}

/* The librdkafka properties of a client's connection and its security:
 * what a pipeline's consumer and producer share with the tools' clients.
 * A config file's other kafka.* keys (a consumer's group, a producer's
 * transactions) belong to the run, and the tools leave them alone. */
static bool connection_property(const char *name)
{
    static const char *const prefixes[] = {"sasl.", "ssl.", "ssl_", "socket.",
                                            "broker.", "reconnect.backoff",
                                            "enable.ssl.", "https."};
    static const char *const names[] = {
        "bootstrap.servers", "security.protocol", "client.id", "client.dns.lookup",
        "client.rack", "connections.max.idle.ms", "metadata.max.age.ms",
        "topic.metadata.refresh.interval.ms", "api.version.request",
        "api.version.request.timeout.ms", "retry.backoff.ms", "retry.backoff.max.ms"};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
            return true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

/* The "name=value" strings --config made; they live until exit. */
static struct {
    char *kv[CLI_CONFIG_KEYS];
    size_t n;
    bool loaded;
} config_props;

/* The file's `lag.*` keys, for `ballast lag` ("key=value" each). */
static struct {
    char **kv;
    size_t n, cap;
} config_lag;

static void free_config_props(void)
{
    for (size_t i = 0; i < config_props.n; i++)
        free(config_props.kv[i]);
    config_props.n = 0;
    for (size_t i = 0; i < config_lag.n; i++)
        free(config_lag.kv[i]);
    free(config_lag.kv);
    config_lag.kv = NULL;
    config_lag.n = config_lag.cap = 0;
}

/* Keeps a `lag.*` key. @returns false when out of memory. */
static bool take_lag_key(const char *key, const char *value)
{
    size_t len = strlen(key) + strlen(value) + 2;
    char **grown = bl_grow(config_lag.kv, &config_lag.cap, config_lag.n, sizeof(*grown), 8);

    if (!grown)
        return false;
    config_lag.kv = grown;
    if (!(grown[config_lag.n] = malloc(len)))
        return false;
    snprintf(grown[config_lag.n++], len, "%s=%s", key, value);
    return true;
}

void cli_config_each(const char *prefix, cli_config_cb *cb, void *opaque)
{
    size_t n = strlen(prefix);

    for (size_t i = 0; i < config_lag.n; i++) {
        char *eq = strchr(config_lag.kv[i], '=');
        if (strncmp(config_lag.kv[i], prefix, n))
            continue;
        *eq = '\0';
        cb(config_lag.kv[i], eq + 1, opaque);
        *eq = '=';
    }
}

static void take_config_prop(const char *key, const char *value, void *opaque)
{
    bool *full = opaque;
    size_t len;

    if (!strncmp(key, "lag.", 4)) {
        if (!take_lag_key(key, value))
            *full = true;
        return;
    }
    if (strncmp(key, "kafka.", 6) || !connection_property(key + 6))
        return;
    if (config_props.n == CLI_CONFIG_KEYS) {
        *full = true;
        return;
    }
    len = strlen(key + 6) + strlen(value) + 2;
    if ((config_props.kv[config_props.n] = malloc(len)))
        snprintf(config_props.kv[config_props.n++], len, "%s=%s", key + 6, value);
    else
        *full = true;
}

/* Appends the connection settings of the config file @p path to @p props. */
static int load_client_config(const char *path, const char **props, size_t *nprops)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    size_t first = config_props.n;
    bool full = false;

    if (config_props.loaded) {
        ballast_conf_destroy(conf);
        cli_error("--config: given twice");
        return EX_USAGE;
    }
    if (!conf) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    config_props.loaded = true;
    if ((err = ballast_conf_load_file(conf, path))) {
        ballast_conf_destroy(conf);
        return cli_fail(err);
    }
    atexit(free_config_props);
    ballast_conf_dump(conf, 0, take_config_prop, &full);
    ballast_conf_destroy(conf);
    if (full) {
        cli_error("--config %s: more than %d client settings, or out of memory", path,
                  CLI_CONFIG_KEYS);
        return EX_CONFIG;
    }
    for (size_t i = first; i < config_props.n; i++)
        props[(*nprops)++] = config_props.kv[i];
    return 1;
}

int cli_client_option(int argc, char **argv, int *i, bool *missing, int *timeout_ms,
                      const char **props, size_t *nprops)
{
    const char *a = argv[*i], *v;

    if (*missing)
        return 0;
    if ((v = cli_opt_value(argc, argv, i, "--config", NULL, missing)))
        return load_client_config(v, props, nprops);
    if ((v = cli_opt_value(argc, argv, i, "--timeout", NULL, missing))) {
        double secs;
        if (!bl_parse_double(v, 0.1, &secs) || secs > 3600) {
            cli_error("--timeout needs seconds from 0.1 to 3600, got \"%s\"", v);
            return EX_USAGE;
        }
        *timeout_ms = (int)(secs * 1000);
        return 1;
    }
    if (!*missing && !strncmp(a, "-X", 2)) {
        const char *kv = a[2] ? a + 2 : (*i + 1 < argc ? argv[++*i] : "");
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            cli_error("-X needs PROP=VALUE, got \"%s\"", kv);
            return EX_USAGE;
        }
        props[(*nprops)++] = kv;
        return 1;
    }
    return 0;
}

/* Failures are reported through the calls' results, once; librdkafka's own
 * retries would otherwise fill stderr (unless -X debug asks for them). */
static void silent_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

/* Sets the -X properties on @p conf and, unless one of them is `debug`,
 * silences librdkafka's log. @returns 0, or -1 with "-X key: reason". */
static int apply_props(rd_kafka_conf_t *conf, const char *const *props, size_t nprops,
                       char *errbuf, size_t errsize)
{
    bool debug = false;

    for (size_t i = 0; i < nprops; i++) {
        const char *eq = strchr(props[i], '=');
        char key[256], why[512];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - props[i]), props[i]);
        if (!strcmp(key, "debug"))
            debug = true;
        if (rd_kafka_conf_set(conf, key, eq + 1, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errsize, "-X %s: %s", key, why);
            return -1;
        }
    }
    if (!debug)
        rd_kafka_conf_set_log_cb(conf, silent_log);
    return 0;
}

int cli_check_props(const char *const *props, size_t nprops)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errbuf[1024];
    int rc = 0;

    if (apply_props(conf, props, nprops, errbuf, sizeof(errbuf))) {
        cli_error("%s", errbuf);
        rc = EX_CONFIG;
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

rd_kafka_conf_t *cli_conf_new(const char *bootstrap, int timeout_ms,
                              const char *const *settings, const char *const *props,
                              size_t nprops, char *errbuf, size_t errsize)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char timeout[32];
    bool ok;

    snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
    ok = rd_kafka_conf_set(conf, "socket.timeout.ms", timeout, errbuf, errsize) ==
         RD_KAFKA_CONF_OK;
    for (size_t i = 0; ok && settings[i]; i += 2)
        ok = rd_kafka_conf_set(conf, settings[i], settings[i + 1], errbuf, errsize) ==
             RD_KAFKA_CONF_OK;
    if (ok && !apply_props(conf, props, nprops, errbuf, errsize) &&
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errbuf, errsize) ==
            RD_KAFKA_CONF_OK)
        return conf;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int cli_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errbuf,
                        size_t errsize)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    int count = -1;

    if (!rkt) {
        snprintf(errbuf, errsize, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err) {
        snprintf(errbuf, errsize, "metadata of %s: %s", topic, rd_kafka_err2str(err));
    } else if (md->topic_cnt != 1) {
        snprintf(errbuf, errsize, "metadata of %s: no answer for the topic", topic);
    } else if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        count = 0;
    } else if (md->topics[0].err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        snprintf(errbuf, errsize,
                 "topic %s: not authorized to describe it: the principal needs Describe "
                 "on the topic (an ACL refuses it)",
                 topic);
        count = CLI_TOPIC_DENIED;
    } else if (md->topics[0].err) {
        snprintf(errbuf, errsize, "metadata of %s: %s", topic,
                 rd_kafka_err2str(md->topics[0].err));
    } else {
        count = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return count;
}

bool cli_cannot_describe_groups(rd_kafka_t *rk, int timeout_ms)
{
#if RD_KAFKA_VERSION < 0x020a0000
    char *id = rd_kafka_clusterid(rk, timeout_ms);
    bool mock = id && !strncmp(id, "mockCluster", 11);

    if (id)
        rd_kafka_mem_free(rk, id);
    return mock;
#else
    (void)rk;
    (void)timeout_ms;
    return false;
#endif
}
