/*
 * demo_lag.c - lag monitoring from outside the group, with an alert on a
 * status change.
 *
 * A consumer of group demo-lag reads `clicks` and stops (it crashed, say)
 * while clicks keep coming. A monitor evaluates the group the
 * way `ballast lag --watch` does: committed offsets through the admin API
 * (ListConsumerGroupOffsets), high watermarks from the partition leader,
 * on short-lived client handles that never join the group, and a status
 * per partition from a sliding window of evaluations (src/shared/lag.c,
 * the rules of `ballast lag`: Burrow's, without its false alarms). Every
 * change of the group's status is an alert - what `--on-change` would run.
 * The real command is also run, as a child process, once with --json and
 * --on-change examples/lag-alert.sh, to show it reports the same numbers
 * and fires. (On the mock cluster it sees no committed offsets: it asks
 * ListConsumerGroupOffsets for all of the group's partitions, which
 * librdkafka's mock cluster (2.14 too) answers with none; the monitor here
 * names the partitions, which both the mock and a real broker answer.)
 *
 * The story: lag stays far below the article's alert threshold (10,000),
 * yet the stopped consumer is caught: OK -> STALL -> STOP as the committed
 * offsets stand still across the window. The consumer then restarts and
 * catches up while the monitor keeps evaluating: STOP -> OK. Checked: the
 * statuses, the lag numbers against the broker, the real command's
 * agreement and its alert, and that the running consumer saw exactly one
 * assignment while it was being watched - the monitor caused no rebalance
 * (the article's monitor joins the group it watches, so each of its checks
 * rebalances the consumers it is meant to observe).
 */
#include "cli.h"
#include "demo.h"
#include "lag.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARTITIONS 2
#define FIRST_BATCH 600
#define WHILE_DOWN 400 /* clicks produced after the consumer stopped */
#define TRAFFIC 100    /* clicks produced between two evaluations */
#define WINDOW 4
#define WARN_LAG 1000
#define GROUP "demo-lag"
#define TOPIC "clicks"

typedef struct monitor {
    demo_t *d;
    bl_lag_window_t window[PARTITIONS];
    bl_lag_sample_t last[PARTITIONS];
    bl_lag_status_t part_status[PARTITIONS], status;
    bool have_status;
    int evaluations, alerts;
    double t0, next_eval;
    /* during the catch-up run */
    bool caught_up;
    uint64_t rebalances_when_caught_up;
    bool quiet;   /* print only evaluations that show something new */
    int unshown;  /* evaluations not printed since the last one printed */
} monitor_t;

/* The group's committed offsets as `ballast lag` reads them: the admin API
 * (an OffsetFetch to the group coordinator), on a handle of its own that
 * never subscribes, so it never joins the group. @returns 0 or -1. */
static int list_committed(demo_t *d, int64_t *committed)
{
    rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(PARTITIONS);
    bl_lag_offsets_t offs;
    char errbuf[512];
    rd_kafka_t *rk = demo_client(d, NULL, NULL);
    int rc = -1;

    for (int p = 0; p < PARTITIONS; p++) {
        committed[p] = -1;
        rd_kafka_topic_partition_list_add(want, TOPIC, p);
    }
    /* The partitions are named: librdkafka's mock cluster answers a request
     * for all of a group's partitions (NULL) with none, a real broker with
     * all of them. */
    if (rk && bl_lag_read_committed(rk, GROUP, want, 5000, &offs, errbuf, sizeof(errbuf))) {
        cli_error("demo: %s", errbuf);
    } else if (rk) {
        for (size_t i = 0; i < offs.n; i++)
            if (!strcmp(offs.c[i].topic, TOPIC) && offs.c[i].partition >= 0 &&
                offs.c[i].partition < PARTITIONS)
                committed[offs.c[i].partition] = offs.c[i].offset;
        bl_lag_offsets_free(&offs);
        rc = 0;
    }
    rd_kafka_topic_partition_list_destroy(want);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

/* One evaluation: measure, push a sample per partition, judge, print,
 * and raise an alert when the group's status changed. */
static int evaluate(monitor_t *m)
{
    int64_t committed[PARTITIONS], low[PARTITIONS], high[PARTITIONS];
    bl_lag_thresholds_t th = {WARN_LAG, -1};
    bl_lag_status_t group = BL_LAG_OK;
    char line[512];
    int64_t total = 0;
    bool news = !m->quiet;
    int ok = list_committed(m->d, committed) == 0 &&
             demo_offsets(m->d, GROUP, TOPIC, PARTITIONS, NULL, low, high) ==
                 0;

    snprintf(line, sizeof(line), "eval %2d  t=%4.1fs ", ++m->evaluations,
             cli_now_s() - m->t0);
    for (int p = 0; p < PARTITIONS; p++) {
        bl_lag_sample_t s = {.committed = committed[p], .high_watermark = high[p],
                             .lag_seconds = -1, .ok = (uint8_t)ok,
                             .owner = BL_LAG_OWNER_UNKNOWN};
        if (ok)
            s.lag = bl_lag_of(committed[p], low[p], high[p]);
        if (s.lag < 0)
            s.lag = 0;
        news = news || s.committed != m->last[p].committed ||
               s.lag == 0 || !ok;
        bl_lag_window_push(&m->window[p], &s);
        m->last[p] = s;
        m->part_status[p] = bl_lag_evaluate(&m->window[p], &th);
        group = bl_lag_status_worst(group, m->part_status[p]);
        total += s.lag;
        snprintf(line + strlen(line), sizeof(line) - strlen(line),
                 "| p%d committed %5lld high %5lld lag %4lld %-5s ", p,
                 (long long)committed[p], (long long)high[p],
                 (long long)s.lag, bl_lag_status_name(m->part_status[p]));
    }
    snprintf(line + strlen(line), sizeof(line) - strlen(line), "| group %s",
             bl_lag_status_name(group));
    news = news || group != m->status;
    if (news && m->unshown)
        demo_say("          (%d evaluation%s with nothing new)", m->unshown,
                 m->unshown > 1 ? "s" : "");
    if (news) {
        demo_say("%s", line);
        m->unshown = 0;
    } else {
        m->unshown++;
    }
    if (!m->have_status ? group != BL_LAG_OK : group != m->status) {
        m->alerts++;
        demo_say("ALERT     group " GROUP " %s -> %s, total lag %lld",
                 m->have_status ? bl_lag_status_name(m->status) : "(none)",
                 bl_lag_status_name(group), (long long)total);
    }
    m->status = group;
    m->have_status = true;
    return ok ? 0 : -1;
}

/* Watches the catch-up run: an evaluation every 300 ms; stops the
 * consumer once every partition is caught up (lag 0, status OK), noting
 * how many assignments the consumer had seen by then. */
static bool watch_catch_up(ballast_consumer_t *cons, const ballast_stats_t *st,
                           void *opaque)
{
    monitor_t *m = opaque;
    bool zero = true;

    (void)cons;
    if (cli_now_s() < m->next_eval)
        return false;
    m->next_eval = cli_now_s() + 0.3;
    if (evaluate(m))
        return false;
    for (int p = 0; p < PARTITIONS; p++)
        zero = zero && m->last[p].lag == 0;
    if (zero && m->status == BL_LAG_OK) {
        m->caught_up = true;
        m->rebalances_when_caught_up = st->rebalances;
        return true;
    }
    return false;
}

static ballast_outcome_t count_click(void *state, const ballast_message_t *msg,
                                     ballast_result_t *result)
{
    (void)state;
    (void)msg;
    (void)result;
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t click_handler = {
    BALLAST_HANDLER_ABI_VERSION, "clicks", NULL, count_click, NULL, NULL};

static int produce_clicks(demo_t *d, int from, int count)
{
    for (int i = from; i < from + count; i++) {
        char key[16];
        snprintf(key, sizeof(key), "user-%03d", i % 97);
        if (demo_produce(d, TOPIC, key, NULL, "{\"click\":%d}", i))
            return -1;
    }
    return demo_flush(d);
}

/* Puts the path of examples/lag-alert.sh in @p buf when this program runs
 * from a build directory of the repository (BUILD/ballast). @returns 0 when
 * found, else -1 with @p buf empty. */
static int find_alert_script(char *buf, size_t size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;

    buf[0] = '\0';
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    if (!(slash = strrchr(exe, '/')))
        return -1;
    *slash = '\0';
    snprintf(buf, size, "%s/../examples/lag-alert.sh", exe);
    if (!strchr(buf, '\'') && access(buf, X_OK) == 0)
        return 0;
    buf[0] = '\0';
    return -1;
}

/* Runs the real `ballast lag` once (--json, --warn-lag, --on-change) as a
 * child process and compares it with the monitor's last evaluation.
 * @returns 0 when it ran (checks counted), -1 when it could not run. */
static int run_real_command(demo_t *d, monitor_t *m)
{
    char out[4096], alert[4096], hook[8192], warn[32], line[2048];
    FILE *f;
    pid_t pid;
    int status = 0, rows = 0, same_high = 0, same_commit = 0, no_commit = 0;
    char committed[32], seconds[32], script[4096];
    char alert_status[32] = "";
    const char *arrow;

    demo_path(d, "lag.out", out, sizeof(out));
    demo_path(d, "lag-alert.txt", alert, sizeof(alert));
    unlink(alert);
    /* The hook: examples/lag-alert.sh when this program runs from a build
     * directory of the repository (its line to stderr captured in a file),
     * else a one-line stand-in that says the same. */
    if (find_alert_script(script, sizeof(script)) == 0)
        snprintf(hook, sizeof(hook),
                 "sh -c 'exec 2>>\"$1\"; exec \"$2\"' sh '%s' '%s'", alert,
                 script);
    else
        snprintf(hook, sizeof(hook),
                 "sh -c 'echo \"lag-alert: consumer group "
                 "$BALLAST_LAG_GROUP: ${BALLAST_LAG_PREVIOUS_STATUS:-start} -> "
                 "$BALLAST_LAG_STATUS, lag $BALLAST_LAG_TOTAL_LAG messages\" "
                 ">>\"$1\"' sh '%s'",
                 alert);
    snprintf(warn, sizeof(warn), "%d", WARN_LAG / 4);
    pid = demo_spawn_self(
        (char *const[]){"ballast", "lag", "-b", (char *)m->d->bootstrap, "-g",
                        GROUP, "-t", TOPIC, "--json", "--warn-lag", warn,
                        "--on-change", hook, NULL},
        out);
    if (pid < 0)
        return -1;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        cli_error("demo: `ballast lag` failed (status %d)", status);
        demo_show_file("output of `ballast lag`", out);
        return -1;
    }
    if (!(f = fopen(out, "r")))
        return -1;
    while (fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        json_int_t p = json_integer_value(json_object_get(o, "partition"));
        json_t *c = json_object_get(o, "committed");
        const char *st = json_string_value(json_object_get(o, "status"));

        if (o && p >= 0 && p < PARTITIONS) {
            rows++;
            same_high += json_integer_value(json_object_get(
                             o, "high_watermark")) == m->last[p].high_watermark;
            no_commit += json_is_null(c);
            same_commit +=
                json_integer_value(c) == m->last[p].committed &&
                json_integer_value(json_object_get(o, "lag")) == m->last[p].lag;
            if (json_is_null(c))
                snprintf(committed, sizeof(committed), "null");
            else
                snprintf(committed, sizeof(committed), "%lld",
                         (long long)json_integer_value(c));
            if (json_is_number(json_object_get(o, "lag_seconds")))
                snprintf(seconds, sizeof(seconds), "%.1f",
                         json_number_value(json_object_get(o, "lag_seconds")));
            else
                snprintf(seconds, sizeof(seconds), "null");
            demo_say("          ballast lag --json: partition %d committed %s "
                     "high_watermark %lld lag %lld lag_seconds %s status %s",
                     (int)p, committed,
                     (long long)json_integer_value(
                         json_object_get(o, "high_watermark")),
                     (long long)json_integer_value(json_object_get(o, "lag")),
                     seconds, st ? st : "?");
        }
        json_decref(o);
    }
    fclose(f);
    demo_check(d, rows == PARTITIONS && same_high == PARTITIONS,
               "the real `ballast lag` (a separate process, never a member) "
               "agrees on the high watermarks of %d of %d partitions",
               same_high, PARTITIONS);
    if (no_commit == PARTITIONS)
        demo_say("note      it saw no committed offsets: it asks "
                 "ListConsumerGroupOffsets for all of the group's partitions, "
                 "which librdkafka's mock cluster answers with none (a "
                 "real broker answers; the monitor above names the "
                 "partitions), so its lag counts from the low watermark");
    else
        demo_check(d, same_commit == PARTITIONS,
                   "... and on committed offsets and lag for %d of %d",
                   same_commit, PARTITIONS);
    /* The hook runs asynchronously: give it a moment. */
    for (int i = 0; i < 40 && access(alert, R_OK); i++)
        usleep(50 * 1000);
    if ((f = fopen(alert, "r"))) {
        if (fgets(line, sizeof(line), f) && (arrow = strstr(line, "-> "))) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(alert_status, sizeof(alert_status), "%.*s",
                     (int)strcspn(arrow + 3, ", "), arrow + 3);
            demo_say("          --on-change %s: %s",
                     *script ? "examples/lag-alert.sh" : "hook", line);
        }
        fclose(f);
    }
    demo_check(d, !strcmp(alert_status, "WARN"),
               "its --on-change alert fired: status %s (one evaluation, "
               "lag above --warn-lag %s)",
               *alert_status ? alert_status : "none", warn);
    return 0;
}

int demo_lag(demo_t *d)
{
    monitor_t m;
    ballast_conf_t *conf;
    ballast_stats_t st;
    int produced = FIRST_BATCH, rc = -1;
    bool stall_seen = false;

    memset(&m, 0, sizeof(m));
    m.d = d;
    for (int p = 0; p < PARTITIONS; p++)
        if (bl_lag_window_init(&m.window[p], WINDOW))
            goto out;
    demo_say("invariant: a stopped consumer is detected however small its "
             "lag, by a monitor that never joins its group");
    if (demo_create_topic(d, TOPIC, PARTITIONS) ||
        produce_clicks(d, 0, FIRST_BATCH))
        goto out;
    demo_say("produced  %d clicks to " TOPIC " (%d partitions)", FIRST_BATCH,
             PARTITIONS);
    conf = demo_conf(d, GROUP, TOPIC,
                     (const char *const[]){
                         /* commit often, so that lag tools see progress */
                         "kafka.auto.commit.interval.ms", "200",
                         "kafka.session.timeout.ms", "4000", NULL});
    if (!conf)
        goto out;
    ballast_conf_set_handler(conf, &click_handler, NULL);

    /* 1. The consumer reads what is there, then stops; clicks go on. */
    if (demo_consume(d, conf, FIRST_BATCH, &st) ||
        produce_clicks(d, produced, WHILE_DOWN))
        goto out_conf;
    produced += WHILE_DOWN;
    demo_say("stopped   the consumer after %llu clicks (say it crashed); %d "
             "more arrived since, and %d arrive between evaluations",
             (unsigned long long)st.processed_ok, WHILE_DOWN, TRAFFIC);

    /* 2. The monitor, every 0.3 s, window of 4, warn above 1000. */
    demo_say("monitor   like `ballast lag -g " GROUP " --watch 0.3 --window "
             "%d --warn-lag %d --on-change examples/lag-alert.sh`: each "
             "status change is an ALERT",
             WINDOW, WARN_LAG);
    m.t0 = cli_now_s();
    for (int i = 0; i < WINDOW; i++) {
        if (i) {
            if (produce_clicks(d, produced, TRAFFIC))
                goto out_conf;
            produced += TRAFFIC;
            usleep(300 * 1000);
        }
        if (evaluate(&m))
            goto out_conf;
        if (i == 0)
            demo_check(d, m.status == BL_LAG_OK,
                       "first evaluation: lag within --warn-lag, no trend "
                       "yet: %s",
                       bl_lag_status_name(m.status));
        stall_seen = stall_seen || m.status == BL_LAG_STALL;
    }
    demo_check(d, stall_seen && m.status == BL_LAG_STOP,
               "committed offsets frozen with lag > 0: STALL, then STOP once "
               "the window is full (the article's alert, lag > 10,000, never "
               "fires here)");
    if (run_real_command(d, &m))
        d->failed_checks++;

    /* 3. The consumer restarts; the monitor keeps watching. */
    demo_say("restart   the consumer; the monitor evaluates while it runs");
    m.next_eval = 0;
    m.quiet = true;
    if (demo_consume_watch(d, conf, UINT64_MAX, &st, watch_catch_up, &m))
        goto out_conf;
    demo_check(d, m.caught_up && m.status == BL_LAG_OK,
               "caught up: lag 0 on every partition, status back to OK");
    demo_check(d, m.alerts == 3,
               "alerts raised: %d (OK -> STALL, STALL -> STOP, STOP -> OK)",
               m.alerts);
    demo_check(d, m.rebalances_when_caught_up == 1,
               "assignments the watched consumer saw: %llu - the %d "
               "evaluations caused no rebalance",
               (unsigned long long)m.rebalances_when_caught_up,
               m.evaluations);
    rc = 0;
out_conf:
    ballast_conf_destroy(conf);
out:
    for (int p = 0; p < PARTITIONS; p++)
        bl_lag_window_free(&m.window[p]);
    return rc;
}
