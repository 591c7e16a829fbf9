/*
 * noop_plugin.c - the benchmark's handler plugin (`handler = plugin`): does
 * nothing with a message but look at its value, and counts messages across
 * all workers.
 *
 * Parameters (all optional):
 *   handler.plugin.param.expect     when the process-wide count reaches this
 *                                   number, write done_file once
 *   handler.plugin.param.done_file  path of the marker file; it gets one line:
 *                                   "<count> <CLOCK_REALTIME ns> <CLOCK_MONOTONIC ns>"
 *   handler.plugin.param.sleep_us   sleep this many microseconds in every
 *                                   call (a slow handler; default 0)
 *   handler.plugin.param.fail_every fail permanently (BALLAST_OUTCOME_FAIL) every
 *                                   message whose value head ("%012llu" of i, as
 *                                   bench_kafka produces) has i % fail_every ==
 *                                   fail_every - 1, i.e. 1/fail_every of the
 *                                   messages, the same ones on every run;
 *                                   0 parses every head and fails none (not
 *                                   given: the head is not parsed, only one
 *                                   byte of the value is read)
 *   handler.plugin.param.trace_file append one line per message to this file:
 *                                   "<partition> <offset> <CLOCK_MONOTONIC ns>",
 *                                   one write() each, so that a kill -9 loses
 *                                   nothing handled (the rebalance scenario's
 *                                   handler-side timeline; default: none)
 *   handler.plugin.param.latency_file  record, for each message whose value
 *                                   starts as bench_kafka latency-produce
 *                                   writes it
 *                                   ("%012llu %019lld": index i below expect,
 *                                   produce time in CLOCK_REALTIME ns), when
 *                                   the handler returns minus its produce
 *                                   time and minus its (LogAppendTime)
 *                                   timestamp, and write them to this file
 *                                   when the plugin is unloaded, one line
 *                                   "i e2e_us append_us" per message (the
 *                                   latency scenario; requires expect)
 *
 * The plugin never stops the consumer itself: the driver (bench/run) waits for
 * the marker and then sends SIGTERM, which `ballast run` turns into a clean
 * stop (drain, commit, leave the group).
 */
#include "latency_head.h"

#include <ballast/ballast.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_ulong seen;       /* every worker's messages */
static atomic_int marker_done;  /* the marker was written */

/* latency_file: one slot per message index, shared by every worker; the
 * last worker to be destroyed writes the file. */
static struct {
    long long *e2e_us, *append_us; /* 0 in e2e_us: not seen */
    unsigned long cap;
    char *path;
    atomic_int users;
} lat;

typedef struct noop {
    unsigned long expect;  /* 0: never write the marker */
    char *done_file;
    unsigned long sink;    /* keeps the value read from being optimised out */
    unsigned long sleep_us;
    unsigned long fail_every;
    unsigned long long period; /* fail_every, or ULLONG_MAX when 0 */
    int parse_index;           /* fail_every was given (0 included) */
    int trace_fd;              /* trace_file, or -1 */
    int latency_user;          /* counted in lat.users */
} noop_t;

static int parse_count(const ballast_handler_params_t *params, const char *key,
                       unsigned long *out, char *errbuf, size_t errsize)
{
    const char *v = ballast_conf_get(params->conf, key);
    char *end;

    if (!v || !*v)
        return 0;
    errno = 0;
    *out = strtoul(v, &end, 10);
    if (errno || *end || end == v) {
        snprintf(errbuf, errsize, "%s: \"%s\" is not a count", key, v);
        return BALLAST_ERR_CONFIG;
    }
    return 0;
}

/* latency_file: the first worker allocates the slots, every worker counts
 * itself as a user. Workers are created one after another, so this needs
 * no lock beyond the atomic count. */
static int latency_init(const ballast_handler_params_t *params, noop_t *n, char *errbuf,
                        size_t errsize)
{
    unsigned long expect = n->expect;
    const char *path = ballast_conf_get(params->conf, "handler.plugin.param.latency_file");

    if (!path || !*path)
        return 0;
    if (!expect) {
        snprintf(errbuf, errsize, "handler.plugin.param.latency_file: requires expect");
        return -1;
    }
    n->latency_user = 1;
    if (atomic_fetch_add(&lat.users, 1) > 0)
        return 0;
    lat.cap = expect;
    lat.e2e_us = calloc(expect, sizeof(*lat.e2e_us));
    lat.append_us = calloc(expect, sizeof(*lat.append_us));
    lat.path = strdup(path);
    if (!lat.e2e_us || !lat.append_us || !lat.path) {
        snprintf(errbuf, errsize, "out of memory");
        return -1;
    }
    return 0;
}

static int noop_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    const char *expect = ballast_conf_get(params->conf, "handler.plugin.param.expect");
    const char *done = ballast_conf_get(params->conf, "handler.plugin.param.done_file");
    const char *trace = ballast_conf_get(params->conf, "handler.plugin.param.trace_file");
    noop_t *n = calloc(1, sizeof(*n));

    if (!n) {
        snprintf(errbuf, errsize, "out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    n->trace_fd = -1;
    if (expect && *expect) {
        char *end;
        errno = 0;
        n->expect = strtoul(expect, &end, 10);
        if (errno || *end || end == expect) {
            snprintf(errbuf, errsize,
                     "handler.plugin.param.expect: \"%s\" is not a count", expect);
            free(n);
            return BALLAST_ERR_CONFIG;
        }
    }
    if (parse_count(params, "handler.plugin.param.sleep_us", &n->sleep_us, errbuf, errsize) ||
        parse_count(params, "handler.plugin.param.fail_every", &n->fail_every, errbuf,
                    errsize)) {
        free(n);
        return BALLAST_ERR_CONFIG;
    }
    /* fail_every = 0 parses every index and fails none: the dlq scenario's
     * baseline, which must do the same per-message work as its poison run. */
    n->parse_index = ballast_conf_get(params->conf, "handler.plugin.param.fail_every") != NULL;
    n->period = n->fail_every ? n->fail_every : ULLONG_MAX;
    if (n->expect && !(done && *done)) {
        snprintf(errbuf, errsize,
                 "handler.plugin.param.done_file: missing (required by expect)");
        free(n);
        return BALLAST_ERR_CONFIG;
    }
    if (done && *done && !(n->done_file = strdup(done))) {
        free(n);
        snprintf(errbuf, errsize, "out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    if (trace && *trace &&
        (n->trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        snprintf(errbuf, errsize, "handler.plugin.param.trace_file: %s: %s", trace,
                 strerror(errno));
        free(n->done_file);
        free(n);
        return BALLAST_ERR_CONFIG;
    }
    if (latency_init(params, n, errbuf, errsize)) {
        if (n->trace_fd >= 0)
            close(n->trace_fd);
        free(n->done_file);
        free(n);
        return BALLAST_ERR_CONFIG;
    }
    *statep = n;
    return 0;
}

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes the marker atomically (temp file + rename), so that the driver never
 * reads a half-written line. */
static void write_marker(const noop_t *n, unsigned long count)
{
    char tmp[4096], line[128];
    int fd, len;

    len = snprintf(line, sizeof(line), "%lu %lld %lld\n", count,
                   (long long)now_ns(CLOCK_REALTIME),
                   (long long)now_ns(CLOCK_MONOTONIC));
    snprintf(tmp, sizeof(tmp), "%s.tmp", n->done_file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)len) == len && close(fd) == 0)
        rename(tmp, n->done_file);
    else
        close(fd);
}

/* Records the message's latencies at the handler's return (latency_file). */
static void latency_record(const ballast_message_t *msg, const unsigned char *value,
                           size_t len)
{
    unsigned long long i;
    long long produced, now;

    if (latency_head_parse(value, len, &i, &produced) || i >= lat.cap)
        return;
    now = (long long)now_ns(CLOCK_REALTIME);
    lat.e2e_us[i] = (now - produced) / 1000;
    lat.append_us[i] = now / 1000 - (long long)ballast_message_timestamp(msg) * 1000;
    if (!lat.e2e_us[i])
        lat.e2e_us[i] = 1; /* 0 means "not seen" */
}

static void latency_write(void)
{
    FILE *f;

    if (atomic_fetch_sub(&lat.users, 1) != 1 || !lat.path)
        return;
    if ((f = fopen(lat.path, "w"))) {
        for (unsigned long i = 0; i < lat.cap; i++)
            if (lat.e2e_us[i])
                fprintf(f, "%lu %lld %lld\n", i, lat.e2e_us[i], lat.append_us[i]);
        fclose(f);
    }
    free(lat.e2e_us);
    free(lat.append_us);
    free(lat.path);
    memset(&lat, 0, sizeof(lat));
}

static ballast_outcome_t noop_handle(void *state, const ballast_message_t *msg,
                                     ballast_result_t *res)
{
    noop_t *n = state;
    size_t len;
    const unsigned char *value = ballast_message_value(msg, &len);
    unsigned long count;

    ballast_outcome_t outcome = BALLAST_OUTCOME_OK;

    if (value && len)
        n->sink += value[0];
    if (n->sleep_us) {
        struct timespec ts = {(time_t)(n->sleep_us / 1000000),
                              (long)(n->sleep_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
    /* With fail_every given, every message's index is parsed and tested,
     * so that fail_every = 0 (its period, ULLONG_MAX, is never reached) does
     * the same per-message work as a run with failures. Without it the
     * handler only reads a byte, as the raw-librdkafka baseline does. */
    if (n->parse_index && value && len >= 12) {
        unsigned long long i = 0;
        for (size_t j = 0; j < 12; j++)
            i = i * 10 + (unsigned)(value[j] - '0');
        if (i % n->period == n->period - 1) {
            ballast_result_set_error(res, "bench: poison message");
            outcome = BALLAST_OUTCOME_FAIL;
        }
    }
    if (n->trace_fd >= 0) {
        char line[64];
        int w = snprintf(line, sizeof(line), "%d %lld %lld\n", (int)ballast_message_partition(msg),
                         (long long)ballast_message_offset(msg),
                         (long long)now_ns(CLOCK_MONOTONIC));
        /* A line that could not be written shows as a gap in the timeline. */
        ssize_t written = write(n->trace_fd, line, (size_t)w);
        (void)written;
    }
    if (lat.cap)
        latency_record(msg, value, len);
    count = atomic_fetch_add_explicit(&seen, 1, memory_order_relaxed) + 1;
    if (n->expect && count >= n->expect &&
        !atomic_exchange(&marker_done, 1))
        write_marker(n, count);
    return outcome;
}

static void noop_destroy(void *state)
{
    noop_t *n = state;
    if (!n)
        return;
    if (n->trace_fd >= 0)
        close(n->trace_fd);
    if (n->latency_user)
        latency_write();
    free(n->done_file);
    free(n);
}

static const ballast_handler_t handler = {
    BALLAST_HANDLER_ABI_VERSION, "bench-noop", noop_init, noop_handle, NULL,
    noop_destroy};

__attribute__((visibility("default"))) const ballast_handler_t *
ballast_plugin_handler(void)
{
    return &handler;
}
