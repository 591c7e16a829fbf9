/*
 * test_plugin.c - a handler plugin for the cli and integration suites, set
 * up with `handler.plugin.param.*` keys (all optional):
 *   sleep_ms     messages whose value is sleep_value (default "sleep") take
 *                this long (default 3000): a handler stuck past
 *                `handler.timeout.ms`, or one that holds a message while the
 *                process is told to stop;
 *   every_ms     every message takes this long: a slow handler;
 *   log          a file each finished message appends one line to,
 *                "<pid> <topic> <partition> <offset>", so that a test knows
 *                which process handled what (one write() per line on an
 *                O_APPEND descriptor: lines of concurrent writers never mix);
 *   init_error   init fails with this code (a ballast_err_code_t);
 *   on_value, outcome
 *                messages whose value is on_value return this number as
 *                their outcome, which need not be a ballast_outcome_t;
 *   echo_trace   when 1, each message that succeeds emits a record to
 *                output.topic, without headers, whose value is
 *                "<value>|<traceparent>|<tracestate>" as the trace
 *                accessors gave them ("-" for NULL).
 * Every other message succeeds.
 */
#include <ballast/ballast.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct test_plugin {
    long sleep_ms, every_ms;
    int log_fd; /* -1 without a log */
    const char *on_value, *sleep_value; /* owned copies, or NULL */
    long outcome;
    bool echo_trace;
} test_plugin_t;

static long param_long(const ballast_conf_t *conf, const char *name, long def)
{
    char key[96];
    const char *v;

    snprintf(key, sizeof(key), "handler.plugin.param.%s", name);
    v = ballast_conf_get(conf, key);
    return v && *v ? strtol(v, NULL, 10) : def;
}

static void test_destroy(void *state)
{
    test_plugin_t *tp = state;

    if (!tp)
        return;
    if (tp->log_fd >= 0)
        close(tp->log_fd);
    free((void *)tp->on_value);
    free((void *)tp->sleep_value);
    free(tp);
}

static int test_init(void **statep, const ballast_handler_params_t *params, char *errbuf,
                     size_t errsize)
{
    const char *log = ballast_conf_get(params->conf, "handler.plugin.param.log");
    const char *on_value = ballast_conf_get(params->conf, "handler.plugin.param.on_value");
    const char *sleep_value =
        ballast_conf_get(params->conf, "handler.plugin.param.sleep_value");
    long init_error = param_long(params->conf, "init_error", 0);
    test_plugin_t *tp;

    if (init_error) {
        snprintf(errbuf, errsize, "test plugin: init fails with code %ld as asked",
                 init_error);
        return (int)init_error;
    }
    if (!(tp = calloc(1, sizeof(*tp)))) {
        snprintf(errbuf, errsize, "test plugin: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    tp->sleep_ms = param_long(params->conf, "sleep_ms", 3000);
    tp->every_ms = param_long(params->conf, "every_ms", 0);
    tp->outcome = param_long(params->conf, "outcome", BALLAST_OUTCOME_OK);
    tp->echo_trace = param_long(params->conf, "echo_trace", 0) == 1;
    tp->log_fd = -1;
    if ((on_value && !(tp->on_value = strdup(on_value))) ||
        !(tp->sleep_value = strdup(sleep_value ? sleep_value : "sleep")) ||
        (log && (tp->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0)) {
        snprintf(errbuf, errsize, "test plugin: cannot open %s", log ? log : "(no log)");
        test_destroy(tp);
        return BALLAST_ERR_IO;
    }
    *statep = tp;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts))
        ;
}

static bool value_is(const ballast_message_t *msg, const char *want)
{
    size_t len;
    const void *value = ballast_message_value(msg, &len);

    return value && len == strlen(want) && !memcmp(value, want, len);
}

/* Emits "<value>|<traceparent>|<tracestate>". @returns 0 or -1. */
static int echo_trace(const ballast_message_t *msg, ballast_result_t *res)
{
    const char *tp = ballast_message_traceparent(msg), *ts = ballast_message_tracestate(msg);
    size_t len;
    const char *value = ballast_message_value(msg, &len);
    char out[1024];
    int n = snprintf(out, sizeof(out), "%.*s|%s|%s", value ? (int)len : 0, value ? value : "",
                     tp ? tp : "-", ts ? ts : "-");

    if (n <= 0 || (size_t)n >= sizeof(out))
        return -1;
    return ballast_result_emit(res, NULL, NULL, 0, out, (size_t)n);
}

static ballast_outcome_t test_handle(void *state, const ballast_message_t *msg,
                                     ballast_result_t *res)
{
    test_plugin_t *tp = state;
    char line[512];
    int n;

    if (value_is(msg, tp->sleep_value))
        sleep_ms(tp->sleep_ms);
    if (tp->every_ms)
        sleep_ms(tp->every_ms);
    if (tp->on_value && value_is(msg, tp->on_value))
        return (ballast_outcome_t)tp->outcome;
    if (tp->log_fd >= 0) {
        n = snprintf(line, sizeof(line), "%d %s %d %lld\n", (int)getpid(),
                     ballast_message_topic(msg), (int)ballast_message_partition(msg),
                     (long long)ballast_message_offset(msg));
        /* A lost line would read as a lost message: fail loudly instead. */
        if (n <= 0 || (size_t)n >= sizeof(line) || write(tp->log_fd, line, (size_t)n) != n)
            abort();
    }
    if (tp->echo_trace && echo_trace(msg, res)) {
        ballast_result_set_error(res, "test plugin: out of memory");
        return BALLAST_OUTCOME_RETRY;
    }
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t handler = {BALLAST_HANDLER_ABI_VERSION, "test", test_init,
                                          test_handle, NULL, test_destroy};

__attribute__((visibility("default"))) const ballast_handler_t *
ballast_plugin_handler(void)
{
    return &handler;
}
