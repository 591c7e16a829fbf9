/*
 * test_http.c - the HTTP endpoints as an operator uses them, against the
 * real broker (and PostgreSQL):
 *   - `ballast run` with metrics.listen: /metrics parses with a real
 *     Prometheus parser (python3-prometheus-client) and its lag equals high
 *     watermark minus committed per partition; /healthz and /readyz; the
 *     status document; 404 and 405;
 *   - the dashboard loads in headless Chromium with no console errors and
 *     draws its chart (the screenshot's path is printed);
 *   - /healthz fails while a handler is stuck past handler.timeout.ms, and
 *     recovers;
 *   - /readyz fails while the database is unreachable (a dedicated role is
 *     refused logins and its sessions terminated: nothing shared is
 *     disturbed), and recovers;
 *   - a metrics.listen address that cannot be bound exits 78 before
 *     anything is consumed;
 *   - `ballast lag --prometheus --listen` serves the same lag numbers.
 */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
/* Debian's python3, where python3-prometheus-client installs. */
#define PYTHON "/usr/bin/python3"
#define PARTITIONS 3

/* ---- helpers -------------------------------------------------------------- */

/* Polls @p path until it answers @p want_status (30 s at most). */
static bt_http_reply_t wait_status(const char *addr, const char *path, int want_status,
                                int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;
    bt_http_reply_t r;

    for (;;) {
        r = bt_http_get(addr, path);
        if (r.status == want_status)
            return r;
        if (bt_now_ms() > deadline)
            fail_msg("%s answered %d, expected %d: %s", path, r.status, want_status,
                     r.body ? r.body : "");
        bt_http_reply_free(&r);
        usleep(100 * 1000);
    }
}

/* Runs a program to completion with stdout and stderr in files.
 * @returns its exit code. */
static int run_program(const char *const *argv, const char *out_path, const char *err_path,
                       int timeout_ms)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || in < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return bt_wait(pid, timeout_ms);
}

/* Parses Prometheus text with prometheus_client's parser; @returns one JSON
 * object per sample: {"family", "type", "name", "labels", "value"}. */
static json_t *parse_prometheus(const char *text)
{
    static const char script[] =
        "import json, sys\n"
        "from prometheus_client.parser import text_string_to_metric_families\n"
        "out = []\n"
        "for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
        "    for s in fam.samples:\n"
        "        out.append({'family': fam.name, 'type': fam.type, 'name': s.name,\n"
        "                    'labels': s.labels, 'value': s.value})\n"
        "print(json.dumps(out))\n";
    const char *dir = bt_tmpdir();
    char py[300], in[300], out[300], err[300];
    char *parsed, *errors;
    json_t *samples;
    int rc;

    if (access(PYTHON, X_OK))
        fail_msg(PYTHON " is missing: run scripts/install-deps --test");
    snprintf(py, sizeof(py), "%s/parse.py", dir);
    snprintf(in, sizeof(in), "%s/metrics.txt", dir);
    snprintf(out, sizeof(out), "%s/parsed.json", dir);
    snprintf(err, sizeof(err), "%s/parse.err", dir);
    bt_write_file(py, "%s", script);
    bt_write_file(in, "%s", text);
    rc = run_program((const char *const[]){PYTHON, py, in, NULL}, out, err, 60000);
    parsed = bt_read_file(out);
    errors = bt_read_file(err);
    if (rc != 0)
        fail_msg("the Prometheus parser rejected /metrics (exit %d): %s\n%s", rc,
                 errors ? errors : "", text);
    samples = json_loads(parsed, 0, NULL);
    assert_non_null(samples);
    free(parsed);
    free(errors);
    return samples;
}

static const char *text_or_empty(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

/* The value of sample @p name with labels topic=@p topic, partition=@p p
 * (and consumergroup=@p group when given); NAN when absent. */
static double sample_value(json_t *samples, const char *name, const char *group,
                           const char *topic, int p)
{
    size_t i;
    json_t *s;
    char part[16];

    snprintf(part, sizeof(part), "%d", p);
    json_array_foreach(samples, i, s) {
        json_t *labels = json_object_get(s, "labels");
        const char *cg = json_string_value(json_object_get(labels, "consumergroup"));
        if (strcmp(json_string_value(json_object_get(s, "name")), name) ||
            strcmp(text_or_empty(json_object_get(labels, "topic")), topic) ||
            strcmp(text_or_empty(json_object_get(labels, "partition")), part) ||
            (group && (!cg || strcmp(cg, group))))
            continue;
        return json_number_value(json_object_get(s, "value"));
    }
    return NAN;
}

static bool has_sample(json_t *samples, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s) {
        if (!strcmp(json_string_value(json_object_get(s, "name")), name))
            return true;
    }
    return false;
}

/* Every sample, ballast's own and the lag ones, is labelled with the
 * consumer group (as kafka_exporter labels its lag). */
static void assert_every_sample_names_group(json_t *samples, const char *group)
{
    size_t i;
    json_t *s;

    json_array_foreach(samples, i, s) {
        const char *cg =
            json_string_value(json_object_get(json_object_get(s, "labels"), "consumergroup"));
        if (!cg || strcmp(cg, group))
            fail_msg("%s has consumergroup \"%s\", expected \"%s\"",
                     json_string_value(json_object_get(s, "name")), cg ? cg : "(none)", group);
    }
}

/* Sample values are written as people and parsers expect: integers as
 * integers, fractions without binary noise (4.087, not 4.0869999999999997)
 * and no exponents. Every ballast value is a count, milliseconds or
 * microseconds, so six decimals always suffice. */
static void assert_values_short(const char *text)
{
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        const char *end = strchr(line, '\n'), *value, *dot;
        int len = (int)(end - line);
        if (line[0] == '#')
            continue;
        value = memrchr(line, ' ', (size_t)len) + 1;
        dot = memchr(value, '.', (size_t)(end - value));
        if (memchr(value, 'e', (size_t)(end - value)) || (dot && end - dot - 1 > 6))
            fail_msg("a value written too long: %.*s", len, line);
    }
}

static void produce_value(const char *topic, int partition, const char *value)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* ---- the daemon under test -------------------------------------------------- */

typedef struct daemon_under_test {
    pid_t pid;
    char addr[64];
    char err_path[256];
    const char *topic, *group;
} daemon_t;

static daemon_t dut;

/* Starts `ballast run` on @p conf_text with its stderr in a file. */
static void start_daemon(daemon_t *d, const char *conf_text)
{
    const char *dir = bt_tmpdir();
    char conf_path[300];

    snprintf(conf_path, sizeof(conf_path), "%s/ballast.conf", dir);
    snprintf(d->err_path, sizeof(d->err_path), "%s/stderr", dir);
    bt_write_file(conf_path, "%s", conf_text);
    d->pid = bt_spawn_ballast(ARGV("run", conf_path), d->err_path);
    bt_wait_listening(d->err_path, d->pid, d->addr, sizeof(d->addr));
}

static void stop_daemon(daemon_t *d)
{
    if (d->pid <= 0)
        return;
    bt_term(d->pid);
    assert_int_equal(bt_wait(d->pid, 60000), 0);
    d->pid = 0;
}

static int setup_daemon(void **state)
{
    char conf[2048];

    (void)state;
    if (!bt_bootstrap())
        return 0; /* each test then fails with BT_REQUIRE_ENV */
    dut.topic = strdup(bt_unique("http"));
    dut.group = strdup(bt_unique("http-g"));
    bt_create_topic(bt_bootstrap(), dut.topic, PARTITIONS);
    bt_produce_seq(bt_bootstrap(), dut.topic, PARTITIONS, 0, 30, 0);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\n"
             "kafka.group.id = %s\n"
             "%s"
             "topics = %s\n"
             "handler = plugin\n"
             "handler.plugin.path = %s\n"
             "handler.plugin.param.sleep_ms = 2500\n"
             "handler.timeout.ms = 1000\n"
             "metrics.listen = 127.0.0.1:0\n",
             bt_bootstrap(), dut.group, bt_group_lines(), dut.topic, BALLAST_TEST_PLUGIN);
    start_daemon(&dut, conf);
    return 0;
}

static int teardown_daemon(void **state)
{
    (void)state;
    stop_daemon(&dut);
    free((void *)dut.topic);
    free((void *)dut.group);
    return 0;
}

typedef struct caught_up_arg {
    const char *addr, *group, *topic;
    int64_t committed[PARTITIONS], hwm[PARTITIONS];
} caught_up_arg_t;

/* True once the broker's committed offsets reach the high watermarks. */
static bool caught_up(void *opaque)
{
    caught_up_arg_t *a = opaque;
    bt_committed(bt_bootstrap(), a->group, a->topic, PARTITIONS, a->committed);
    bt_high_watermarks(bt_bootstrap(), a->topic, PARTITIONS, a->hwm);
    for (int p = 0; p < PARTITIONS; p++)
        if (a->committed[p] != a->hwm[p])
            return false;
    return true;
}

typedef struct metrics_match_arg {
    caught_up_arg_t *broker;
    const char *addr;
    json_t *samples;
} metrics_match_arg_t;

/* True once /metrics reports hwm - committed for every partition. */
static bool metrics_match(void *opaque)
{
    metrics_match_arg_t *a = opaque;
    bt_http_reply_t r = bt_http_get(a->addr, "/metrics");
    bool match = r.status == 200;

    json_decref(a->samples);
    a->samples = match ? parse_prometheus(r.body) : NULL;
    for (int p = 0; match && p < PARTITIONS; p++)
        match = sample_value(a->samples, "kafka_consumergroup_lag", a->broker->group,
                             a->broker->topic, p) ==
                (double)(a->broker->hwm[p] - a->broker->committed[p]);
    bt_http_reply_free(&r);
    return match;
}

/* ---- tests --------------------------------------------------------------- */

static void test_metrics_parse_and_lag_matches_broker(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    caught_up_arg_t broker = {dut.addr, dut.group, dut.topic, {0}, {0}};
    metrics_match_arg_t m = {&broker, dut.addr, NULL};
    bt_http_reply_t r;
    static const char *const required[] = {
        "kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds",
        "ballast_messages_consumed_total", "ballast_messages_processed_total",
        "ballast_processing_seconds_bucket", "ballast_inflight_messages",
        "ballast_paused_partitions", "ballast_rebalances_total", "ballast_commits_total",
        "ballast_commit_failures_total", "ballast_retries_total",
        "ballast_dlq_records_total", "ballast_poll_interval_headroom_seconds"};

    assert_true(bt_wait_for(caught_up, &broker, 60000));
    if (!bt_wait_for(metrics_match, &m, 30000))
        fail_msg("kafka_consumergroup_lag never matched the broker's hwm - committed");
    /* Exactly hwm - committed, per partition, from the broker's own numbers. */
    for (int p = 0; p < PARTITIONS; p++) {
        double lag = sample_value(m.samples, "kafka_consumergroup_lag", dut.group,
                                  dut.topic, p);
        double secs = sample_value(m.samples, "kafka_consumergroup_lag_seconds", dut.group,
                                   dut.topic, p);
        assert_true(lag == (double)(broker.hwm[p] - broker.committed[p]));
        assert_true(secs == 0.0); /* caught up */
    }
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!has_sample(m.samples, required[i]))
            fail_msg("/metrics has no %s sample", required[i]);
    assert_every_sample_names_group(m.samples, dut.group);
    json_decref(m.samples);

    r = bt_http_get(dut.addr, "/metrics");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "Content-Type: text/plain; version=0.0.4"));
    assert_values_short(r.body);
    bt_http_reply_free(&r);
}

static void test_health_ready_status_and_routes(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    bt_http_reply_t r;
    json_t *status, *parts;

    r = wait_status(dut.addr, "/healthz", 200, 30000);
    assert_string_equal(r.body, "ok\n");
    bt_http_reply_free(&r);
    r = wait_status(dut.addr, "/readyz", 200, 30000);
    assert_string_equal(r.body, "ok\n");
    bt_http_reply_free(&r);

    r = bt_http_get(dut.addr, "/status.json");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "Content-Type: application/json"));
    status = json_loads(r.body, 0, NULL);
    assert_non_null(status);
    assert_string_equal(json_string_value(json_object_get(status, "group")), dut.group);
    assert_string_equal(json_string_value(json_object_get(status, "group_protocol")),
                        bt_group_protocol());
    assert_true(json_is_true(json_object_get(status, "healthy")));
    assert_true(json_is_true(json_object_get(status, "ready")));
    parts = json_object_get(status, "partitions");
    assert_int_equal(json_array_size(parts), PARTITIONS);
    for (size_t i = 0; i < PARTITIONS; i++) {
        json_t *p = json_array_get(parts, i);
        for (const char *const *k = (const char *const[]){"topic", "partition", "committed",
                                                         "high_watermark", "lag",
                                                         "lag_seconds", "inflight",
                                                         "paused", NULL};
             *k; k++)
            if (!json_object_get(p, *k))
                fail_msg("status.json partition without \"%s\": %s", *k, r.body);
    }
    assert_non_null(json_object_get(json_object_get(status, "stats"), "dead_lettered"));
    json_decref(status);
    bt_http_reply_free(&r);

    r = bt_http_get(dut.addr, "/");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "Content-Type: text/html"));
    assert_non_null(strstr(r.headers, "Content-Security-Policy: default-src 'none'"));
    assert_non_null(strstr(r.body, "<canvas id=\"chart\""));
    assert_null(strstr(r.body, "http://"));  /* nothing fetched from elsewhere */
    assert_null(strstr(r.body, "https://"));
    bt_http_reply_free(&r);

    r = bt_http_get(dut.addr, "/no/such/page");
    assert_int_equal(r.status, 404);
    bt_http_reply_free(&r);
    r = bt_http_request(dut.addr, "POST", "/metrics");
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers, "Allow: GET"));
    bt_http_reply_free(&r);
    r = bt_http_request(dut.addr, "HEAD", "/healthz");
    assert_int_equal(r.status, 200);
    bt_http_reply_free(&r);
}

static void test_dashboard_in_headless_chromium(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    char url[128], shot[300];
    char *dom, *png;
    struct stat st;

    /* Some traffic, so that there is something to chart. */
    bt_produce_seq(bt_bootstrap(), dut.topic, PARTITIONS, 1000, 300, 0);
    snprintf(url, sizeof(url), "http://%s/", dut.addr);
    dom = bt_chromium_dom(url, 7000);
    assert_non_null(dom);
    if (!strstr(dom, "data-chart=\"drawn\""))
        fail_msg("the dashboard did not draw its chart; DOM:\n%s", dom);
    assert_non_null(strstr(dom, dut.group)); /* the data arrived */
    free(dom);

    snprintf(shot, sizeof(shot), "%s/dashboard.png", bt_tmpdir());
    bt_chromium_screenshot(url, shot, 7000);
    assert_int_equal(stat(shot, &st), 0);
    assert_true(st.st_size > 10000);
    png = bt_read_file(shot);
    assert_memory_equal(png, "\x89PNG", 4);
    free(png);
    print_message("dashboard screenshot: %s\n", shot);
}

/* ---- the dashboard against /status.json while a backlog is processed ----- */

#define BUSY_PARTITIONS 12 /* more than the chart draws as lines: small charts */
#define BUSY_MESSAGES (BUSY_PARTITIONS * 4000)

/* The text of @p html with its character references resolved (those
 * Chromium writes in text: &amp; &lt; &gt; &quot; &nbsp;). Caller frees. */
static char *html_unescape(const char *html, size_t len)
{
    static const struct {
        const char *ref, *text;
    } refs[] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""},
                {"&nbsp;", " "}};
    char *out = malloc(len + 1), *o = out;

    assert_non_null(out);
    for (size_t i = 0; i < len;) {
        size_t r = 0;
        while (r < sizeof(refs) / sizeof(refs[0]) &&
               strncmp(html + i, refs[r].ref, strlen(refs[r].ref)))
            r++;
        if (r < sizeof(refs) / sizeof(refs[0])) {
            *o++ = refs[r].text[0];
            i += strlen(refs[r].ref);
        } else {
            *o++ = html[i++];
        }
    }
    *o = '\0';
    return out;
}

/* The text inside the element with id @p id (up to its first tag). */
static char *dom_text(const char *dom, const char *id)
{
    char needle[80];
    const char *at, *end = NULL;

    snprintf(needle, sizeof(needle), "id=\"%s\"", id);
    if ((at = strstr(dom, needle)) && (at = strchr(at, '>')))
        end = strchr(++at, '<');
    if (!end)
        fail_msg("the dashboard has no element #%s", id);
    return html_unescape(at, end ? (size_t)(end - at) : 0);
}

/* A number as the page shows it ("12,345" or "7.5"). */
static double shown_number(const char *text)
{
    char digits[64];
    size_t n = 0;
    char *end;
    double v;

    for (const char *p = text; *p && n < sizeof(digits) - 1; p++)
        if (*p != ',')
            digits[n++] = *p;
    digits[n] = '\0';
    v = strtod(digits, &end);
    if (end == digits || *end)
        fail_msg("the dashboard shows \"%s\" where a number belongs", text);
    return v;
}

static double dom_number(const char *dom, const char *id)
{
    char *text = dom_text(dom, id);
    double v = shown_number(text);
    free(text);
    return v;
}

/* The value of attribute @p name on the chart, -1 when it has none. */
static long chart_attr(const char *dom, const char *name)
{
    char needle[80];
    const char *chart = strstr(dom, "id=\"chart\""), *at;

    snprintf(needle, sizeof(needle), "%s=\"", name);
    /* The attributes of the canvas, before the tag closes. */
    if (!chart || !(at = strstr(chart, needle)) || at > strchr(chart, '>'))
        return -1;
    return strtol(at + strlen(needle), NULL, 10);
}

/* Sums the partition table's in-flight column; *rowsp gets its rows. */
static double table_inflight(const char *dom, int *rowsp)
{
    enum { INFLIGHT_COLUMN = 7 };
    const char *body = strstr(dom, "id=\"parts\""), *end = body ? strstr(body, "</tbody>") : NULL;
    double sum = 0;

    *rowsp = 0;
    assert_non_null(end);
    for (const char *tr = strstr(body, "<tr"); tr && tr < end; tr = strstr(tr + 3, "<tr")) {
        const char *td = tr;
        for (int col = 0; col <= INFLIGHT_COLUMN; col++)
            if (!(td = strstr(td + 1, "<td")) || td > end)
                fail_msg("a partition row with fewer than %d cells", INFLIGHT_COLUMN + 1);
        td = strchr(td, '>') + 1;
        char *cell = html_unescape(td, (size_t)(strchr(td, '<') - td));
        sum += shown_number(cell);
        free(cell);
        (*rowsp)++;
    }
    return sum;
}

static json_t *get_json(const char *addr, const char *path)
{
    bt_http_reply_t r = bt_http_get(addr, path);
    json_t *doc;

    if (r.status != 200)
        fail_msg("%s answered %d", path, r.status);
    doc = json_loads(r.body, 0, NULL);
    if (!doc)
        fail_msg("%s is not JSON: %s", path, r.body);
    bt_http_reply_free(&r);
    return doc;
}

static double doc_rate(json_t *status)
{
    json_t *v = json_object_get(status, "processed_per_second");
    return json_is_number(v) ? json_number_value(v) : -1;
}

static json_int_t doc_stat(json_t *status, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(status, "stats"), name));
}

typedef struct busy_arg {
    const char *addr;
    long history_lags; /* lag values in /history.json */
} busy_arg_t;

/* True once the pipeline processes and the daemon has kept at least three
 * frames of every partition's lag. */
static bool busy_with_history(void *opaque)
{
    busy_arg_t *a = opaque;
    json_t *status = get_json(a->addr, "/status.json");
    json_t *history = get_json(a->addr, "/history.json"), *part, *lag;
    size_t i, j;
    bool processing = doc_rate(status) > 0;

    a->history_lags = 0;
    json_array_foreach(json_object_get(history, "partitions"), i, part) {
        json_array_foreach(json_object_get(part, "lag"), j, lag) {
            a->history_lags += json_is_integer(lag);
        }
    }
    json_decref(status);
    json_decref(history);
    return processing && a->history_lags >= 3 * BUSY_PARTITIONS;
}

/* The tiles say what /status.json says while a backlog that fits in
 * max.inflight.messages is processed (so the received counter stands
 * still), the in-flight tile is the table's sum, and the chart has the
 * daemon's history before the page polled twice. */
static void test_dashboard_tiles_match_status(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("http-busy"), *group = bt_unique("http-busy-g");
    char conf[2048], url[128], cwd[512], shot[600];
    busy_arg_t busy;
    daemon_t d;
    json_t *before, *after, *shown;
    char *dom, *raw, *text;
    double rate, inflight, ok, table;
    int rows;

    bt_create_topic(bt_bootstrap(), topic, BUSY_PARTITIONS);
    bt_produce_seq(bt_bootstrap(), topic, BUSY_PARTITIONS, 0, BUSY_MESSAGES, 0);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\n%stopics = %s\n"
             "handler = plugin\nhandler.plugin.path = %s\n"
             "handler.plugin.param.every_ms = 2\nconcurrency = 2\n"
             "shutdown.timeout.ms = 1000\nmetrics.listen = 127.0.0.1:0\n",
             bt_bootstrap(), group, bt_group_lines(), topic, BALLAST_TEST_PLUGIN);
    start_daemon(&d, conf);
    snprintf(url, sizeof(url), "http://%s/", d.addr);
    busy.addr = d.addr;
    if (!bt_wait_for(busy_with_history, &busy, 60000))
        fail_msg("no processing with 3 frames of history after 60 s (%ld lag values)",
                 busy.history_lags);

    /* Right after load (less than one poll interval): the chart already
     * holds the kept frames. */
    dom = bt_chromium_dom(url, 1000);
    if (!strstr(dom, "data-chart=\"drawn\""))
        fail_msg("the chart was not drawn right after load; DOM:\n%s", dom);
    if (chart_attr(dom, "data-history-points") < busy.history_lags ||
        chart_attr(dom, "data-points") < chart_attr(dom, "data-history-points"))
        fail_msg("right after load the chart drew %ld points, %ld from history; the daemon "
                 "had %ld lag values",
                 chart_attr(dom, "data-points"), chart_attr(dom, "data-history-points"),
                 busy.history_lags);
    free(dom);

    /* The tiles against the documents served before, during and after. */
    before = get_json(d.addr, "/status.json");
    dom = bt_chromium_dom(url, 3000);
    after = get_json(d.addr, "/status.json");
    raw = dom_text(dom, "raw");
    shown = json_loads(raw, 0, NULL);
    if (!shown)
        fail_msg("the page shows no status document: %s", raw);
    rate = dom_number(dom, "rate");
    inflight = dom_number(dom, "inflight");
    ok = dom_number(dom, "ok");
    table = table_inflight(dom, &rows);
    print_message("throughput tile %.1f msgs/s (served before %.1f, shown %.1f, after %.1f); "
                  "in flight %.0f; processed %.0f\n",
                  rate, doc_rate(before), doc_rate(shown), doc_rate(after), inflight, ok);
    /* Processing went on throughout, and the tile says so. */
    assert_true(doc_rate(before) > 0 && doc_rate(after) > 0);
    assert_true(doc_stat(after, "consumed") == BUSY_MESSAGES);
    assert_true(rate > 0);
    assert_true(fabs(rate - doc_rate(shown)) <= 0.5); /* the tile rounds */
    assert_true(ok >= (double)doc_stat(before, "processed_ok") &&
                ok <= (double)doc_stat(after, "processed_ok"));
    /* In flight: the tile, the document and the table agree. */
    assert_int_equal(rows, BUSY_PARTITIONS);
    assert_true(inflight == (double)doc_stat(shown, "inflight"));
    assert_true(inflight == table + (double)doc_stat(shown, "inflight_revoked"));
    text = dom_text(dom, "protocol");
    assert_string_equal(text, json_string_value(json_object_get(shown, "group_protocol")));
    assert_string_equal(text, bt_group_protocol());
    free(text);
    json_decref(before);
    json_decref(after);
    json_decref(shown);
    free(raw);
    free(dom);

    /* Kept in the working directory (build/tests), to look at. */
    if (!getcwd(cwd, sizeof(cwd)))
        fail_msg("getcwd: %s", strerror(errno));
    snprintf(shot, sizeof(shot), "%s/dashboard-busy.png", cwd);
    bt_chromium_screenshot(url, shot, 3000);
    print_message("dashboard screenshot (%d partitions, busy): %s\n", BUSY_PARTITIONS, shot);
    stop_daemon(&d);
}

static void test_healthz_fails_while_handler_stuck(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    bt_http_reply_t r;

    r = wait_status(dut.addr, "/healthz", 200, 30000);
    bt_http_reply_free(&r);
    /* The plugin sleeps 2.5 s on this message; handler.timeout.ms is 1 s. */
    produce_value(dut.topic, 0, "sleep");
    r = wait_status(dut.addr, "/healthz", 503, 15000);
    if (!strstr(r.body, "handler"))
        fail_msg("/healthz 503 without naming the stuck handler: %s", r.body);
    bt_http_reply_free(&r);
    /* The call ends: healthy again. */
    r = wait_status(dut.addr, "/healthz", 200, 30000);
    bt_http_reply_free(&r);
}

static void test_lag_serves_prometheus(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    caught_up_arg_t broker = {NULL, dut.group, dut.topic, {0}, {0}};
    metrics_match_arg_t m = {&broker, NULL, NULL};
    char err_path[300], addr[64];
    pid_t pid;

    assert_true(bt_wait_for(caught_up, &broker, 60000));
    snprintf(err_path, sizeof(err_path), "%s/lag.err", bt_tmpdir());
    pid = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "-g", dut.group, "--prometheus",
                                "--listen", "127.0.0.1:0", "--watch", "0.5"),
                           err_path);
    bt_wait_listening(err_path, pid, addr, sizeof(addr));
    m.addr = addr;
    if (!bt_wait_for(metrics_match, &m, 30000))
        fail_msg("ballast lag's kafka_consumergroup_lag never matched the broker");
    for (int p = 0; p < PARTITIONS; p++) {
        assert_true(sample_value(m.samples, "kafka_consumergroup_current_offset", dut.group,
                                 dut.topic, p) == (double)broker.committed[p]);
        assert_true(sample_value(m.samples, "kafka_topic_partition_current_offset", NULL,
                                 dut.topic, p) == (double)broker.hwm[p]);
        assert_true(sample_value(m.samples, "kafka_consumergroup_lag_seconds", dut.group,
                                 dut.topic, p) == 0.0);
    }
    json_decref(m.samples);
    bt_term(pid);
    assert_int_equal(bt_wait(pid, 15000), 0);
}

static void test_unbindable_listen_exits_78(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    const char *group = bt_unique("http-bind-g");
    char conf_path[300], listen_opt[128], addr[64], *err = NULL;
    int64_t committed[PARTITIONS];
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

    /* Hold a port so that ballast cannot bind it. */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    snprintf(listen_opt, sizeof(listen_opt), "metrics.listen=%s", addr);
    snprintf(conf_path, sizeof(conf_path), "%s/bind.conf", bt_tmpdir());
    bt_write_file(conf_path,
                  "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
                  "handler = plugin\nhandler.plugin.path = %s\n",
                  bt_bootstrap(), group, dut.topic, BALLAST_TEST_PLUGIN);
    rc = bt_run_ballast(ARGV("run", conf_path, "-X", listen_opt), 60000, &err);
    if (rc != 78)
        fail_msg("exit %d, expected 78: %s", rc, err ? err : "");
    if (!strstr(err, "metrics.listen") || !strstr(err, addr) ||
        strchr(err, '\n') != err + strlen(err) - 1)
        fail_msg("expected one line naming metrics.listen and %s: %s", addr, err);
    free(err);
    /* Nothing was consumed, so nothing was committed. */
    bt_committed(bt_bootstrap(), group, dut.topic, PARTITIONS, committed);
    for (int p = 0; p < PARTITIONS; p++)
        assert_true(committed[p] < 0);

    rc = bt_run_ballast(ARGV("lag", "-b", bt_bootstrap(), "-g", group, "--prometheus",
                             "--listen", addr),
                        60000, &err);
    if (rc != 78 || !strstr(err, addr))
        fail_msg("ballast lag --listen on a taken port: exit %d: %s", rc, err ? err : "");
    free(err);
    close(fd);
}

/* ---- /readyz while the database is unreachable --------------------------- */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *pg_admin(void)
{
    PGconn *conn = PQconnectdb(bt_pg());
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("PostgreSQL: %s", PQerrorMessage(conn));
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return conn;
}

static void pg_exec(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pg_exec(PGconn *conn, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    PGresult *res;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
}

static long pg_count(PGconn *conn, const char *table)
{
    char sql[256];
    PGresult *res;
    long n;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    res = PQexec(conn, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

static void test_readyz_fails_while_database_unreachable(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    if (!bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run the suite via `make test`");
    const char *topic = bt_unique("http-pg"), *group = bt_unique("http-pg-g");
    char role[64], table[64], dsn[512], conf[2048];
    PGconn *admin = pg_admin();
    daemon_t d;
    bt_http_reply_t r;

    /* A role of our own: refusing its logins disturbs nobody else. */
    snprintf(role, sizeof(role), "ballast_ready_%d", (int)getpid());
    snprintf(table, sizeof(table), "ready_probe_%d", (int)getpid());
    pg_exec(admin, "DROP TABLE IF EXISTS %s", table);
    pg_exec(admin, "DROP ROLE IF EXISTS %s", role);
    pg_exec(admin, "CREATE ROLE %s LOGIN", role);
    pg_exec(admin, "CREATE TABLE %s (v text)", table);
    pg_exec(admin, "GRANT INSERT ON %s TO %s", table, role);
    snprintf(dsn, sizeof(dsn), "%s user=%s connect_timeout=2", bt_pg(), role);

    bt_create_topic(bt_bootstrap(), topic, 1);
    bt_produce_seq(bt_bootstrap(), topic, 1, 0, 1, 0);
    snprintf(conf, sizeof(conf),
             "kafka.bootstrap.servers = %s\nkafka.group.id = %s\ntopics = %s\n"
             "handler = postgres\nhandler.postgres.dsn = %s\n"
             "handler.postgres.sql = INSERT INTO %s (v) VALUES (:value)\n"
             "retry.max.attempts = 1000000\nretry.backoff.initial.ms = 100\n"
             "retry.backoff.max.ms = 500\nmetrics.listen = 127.0.0.1:0\n",
             bt_bootstrap(), group, topic, dsn, table);
    start_daemon(&d, conf);
    r = wait_status(d.addr, "/readyz", 200, 60000);
    bt_http_reply_free(&r);

    /* The database becomes unreachable for ballast: its sessions end and
     * new logins are refused. */
    pg_exec(admin, "ALTER ROLE %s NOLOGIN", role);
    pg_exec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'",
            role);
    bt_produce_seq(bt_bootstrap(), topic, 1, 1, 1, 0);
    r = wait_status(d.addr, "/readyz", 503, 30000);
    print_message("/readyz while the database is unreachable: %s", r.body);
    bt_http_reply_free(&r);
    r = bt_http_get(d.addr, "/healthz"); /* alive all the same */
    assert_int_equal(r.status, 200);
    bt_http_reply_free(&r);

    /* Back: the retried message goes through and ballast is ready again. */
    pg_exec(admin, "ALTER ROLE %s LOGIN", role);
    r = wait_status(d.addr, "/readyz", 200, 30000);
    bt_http_reply_free(&r);
    stop_daemon(&d);
    assert_int_equal(pg_count(admin, table), 2);
    pg_exec(admin, "DROP TABLE %s", table);
    pg_exec(admin, "DROP ROLE %s", role);
    PQfinish(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_parse_and_lag_matches_broker),
        cmocka_unit_test(test_health_ready_status_and_routes),
        cmocka_unit_test(test_dashboard_in_headless_chromium),
        cmocka_unit_test(test_dashboard_tiles_match_status),
        cmocka_unit_test(test_healthz_fails_while_handler_stuck),
        cmocka_unit_test(test_lag_serves_prometheus),
        cmocka_unit_test(test_unbindable_listen_exits_78),
        cmocka_unit_test(test_readyz_fails_while_database_unreachable),
    };
    return cmocka_run_group_tests(tests, setup_daemon, teardown_daemon);
}
