/*
 * test_burrow.c - `ballast lag --all-groups` and Burrow 1.2.1 (Debian 12's
 * package) judge the same scripted situations on the same broker: caught
 * up, growing, stalled, stopped, rewound, idle and a dead consumer (a
 * member killed with SIGKILL). The expected statuses are read from the table
 * of docs/operations.md ("Agreement with Burrow"): each situation's ballast
 * status must be the table's, and Burrow's must be the table's too, which is
 * ballast's unless the table gives another value and the reason. Either
 * side drifting from the documented table fails the test.
 *
 * Burrow 1.2.1 cannot read a Kafka 4 broker (its cluster module asks for
 * the latest offsets with ListOffsets v0, which Kafka 4 no longer serves,
 * and it cannot decode the offset commits that Kafka 4 writes), so
 * scripts/run-tests runs this suite in its Kafka 3.9 environment only.
 *
 * The situations advance in lockstep with ballast's evaluations: one tick's
 * commits and messages fall between two evaluations (--watch 3 leaves about
 * three seconds between them; one tick takes milliseconds: one producer and
 * one admin client for every commit), so that no evaluation sees half a
 * tick, and a tick that overlapped an evaluation fails the test.
 */
#include "support.h"

#include "shared/lag.h"
#include "shared/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

extern char **environ;

enum { TICKS = 9, WINDOW = 4, REWIND_TICK = TICKS - 2, KILL_TICK = 2 };

enum situation {
    CAUGHT_UP, GROWING, STALLED, STOPPED, REWOUND, IDLE, DEAD, SITUATIONS
};

/* The names of the situations, as the first column of the docs' table. */
static const char *const situation_names[SITUATIONS] = {
    "caught up", "growing", "stalled", "stopped", "rewound", "idle", "dead consumer"};

typedef struct world {
    rd_kafka_t *producer, *admin;
    char topic[SITUATIONS][160], group[SITUATIONS][160];
    int64_t produced[SITUATIONS];  /* the high watermark of each topic */
    int64_t committed[SITUATIONS]; /* the last offset committed through the admin client */
    pid_t burrow, ballast, member;
    char burrow_addr[64], ballast_addr[64];
} world_t;

/* Burrow and kcat are this test's children; a failed assertion must not
 * leave them running (ballast's are killed by the support code). */
static pid_t children[2];

/* ---- the documented table ------------------------------------------------ */

typedef struct expected {
    char ballast[16], burrow[16];
} expected_t;

/* Copies the @p col-th cell (0-based) of the table row @p line, trimmed and
 * without backquotes. */
static bool cell(const char *line, int col, char *out, size_t size)
{
    const char *p = line;
    size_t n = 0;

    for (int i = 0; i <= col; i++)
        if (!(p = strchr(p, '|')))
            return false;
        else
            p++;
    while (*p == ' ' || *p == '`')
        p++;
    while (p[n] && p[n] != '|' && n + 1 < size)
        n++;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '`'))
        n--;
    memcpy(out, p, n);
    out[n] = '\0';
    return p[n] == '|' || p[n] == ' ' || p[n] == '`';
}

/* Reads the statuses of every situation from the table that follows the
 * heading "Agreement with Burrow" in docs/operations.md. */
static void read_documented(expected_t *want)
{
    char *doc = bt_read_file(BALLAST_SRC_DIR "/docs/operations.md"), *save = NULL, *line;
    bool in_section = false, seen[SITUATIONS] = {false};

    if (!doc)
        fail_msg("cannot read docs/operations.md");
    for (line = strtok_r(doc, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[64];
        if (strstr(line, "Agreement with Burrow"))
            in_section = true;
        if (!in_section || line[0] != '|' || !cell(line, 0, name, sizeof(name)))
            continue;
        for (int s = 0; s < SITUATIONS; s++) {
            if (strcmp(name, situation_names[s]) != 0)
                continue;
            if (!cell(line, 1, want[s].ballast, sizeof(want[s].ballast)) ||
                !cell(line, 2, want[s].burrow, sizeof(want[s].burrow)))
                fail_msg("docs/operations.md: a row without 3 cells: %s", line);
            if (strcmp(want[s].burrow, "the same") == 0)
                strcpy(want[s].burrow, want[s].ballast);
            seen[s] = true;
        }
    }
    free(doc);
    for (int s = 0; s < SITUATIONS; s++)
        if (!seen[s])
            fail_msg("docs/operations.md: the table after \"Agreement with Burrow\" has no "
                     "row \"%s\"", situation_names[s]);
}

/* ---- the clients that script the situations ------------------------------ */

static rd_kafka_t *client(rd_kafka_type_t type)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), errstr, sizeof(errstr)))
        fail_msg("%s", errstr);
    if (!(rk = rd_kafka_new(type, conf, errstr, sizeof(errstr))))
        fail_msg("rd_kafka_new: %s", errstr);
    return rk;
}

static void produce(world_t *w, int s, int count)
{
    for (int i = 0; i < count; i++) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(w->topic[s]), RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_VALUE("m", 1), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err)
            fail_msg("produce to %s: %s", w->topic[s], rd_kafka_err2str(err));
    }
    if (rd_kafka_flush(w->producer, 30000))
        fail_msg("produce to %s: not delivered within 30 s", w->topic[s]);
    w->produced[s] += count;
}

/* One AlterConsumerGroupOffsets call: @p offset for partition 0 of situation
 * @p s's topic, as its group. @returns the broker's answer (0: committed),
 * failing the test when there is none. */
static rd_kafka_resp_err_t try_commit(world_t *w, int s, int64_t offset)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_AlterConsumerGroupOffsets_t *req;
    const rd_kafka_group_result_t **res;
    const rd_kafka_topic_partition_list_t *got;
    const rd_kafka_error_t *gerr;
    rd_kafka_resp_err_t err;
    char errbuf[512];
    size_t n = 0;
    bl_admin_t a;

    rd_kafka_topic_partition_list_add(parts, w->topic[s], 0)->offset = offset;
    req = rd_kafka_AlterConsumerGroupOffsets_new(w->group[s], parts);
    bl_admin_start(&a, w->admin, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, 30000);
    rd_kafka_AlterConsumerGroupOffsets(w->admin, &req, 1, a.opts, a.q);
    rd_kafka_AlterConsumerGroupOffsets_destroy(req);
    rd_kafka_topic_partition_list_destroy(parts);
    if (!bl_admin_answer(&a, "AlterConsumerGroupOffsets", &err, errbuf, sizeof(errbuf)))
        fail_msg("commit for %s: %s", w->group[s], errbuf);
    res = rd_kafka_AlterConsumerGroupOffsets_result_groups(
        rd_kafka_event_AlterConsumerGroupOffsets_result(a.ev), &n);
    if (n != 1)
        fail_msg("commit for %s: no answer", w->group[s]);
    got = rd_kafka_group_result_partitions(res[0]);
    if ((gerr = rd_kafka_group_result_error(res[0])))
        err = rd_kafka_error_code(gerr);
    else if (!got || got->cnt != 1)
        fail_msg("commit for %s: no answer for its partition", w->group[s]);
    else
        err = got->elems[0].err;
    bl_admin_end(&a);
    return err;
}

/* Commits @p offset for partition 0 of situation @p s's topic, as its group,
 * without joining it; asks again while the group's coordinator is loading
 * or moving (a fresh broker's is, at the first commit). */
static void commit(world_t *w, int s, int64_t offset)
{
    int64_t deadline = bt_now_ms() + 30000;
    rd_kafka_resp_err_t err;

    while ((err = try_commit(w, s, offset)) && bl_lag_coordinator_moving(err) &&
           bt_now_ms() < deadline)
        usleep(100 * 1000);
    if (err)
        fail_msg("commit for %s: %s", w->group[s], rd_kafka_err2str(err));
    w->committed[s] = offset;
}

/* ---- the two watchers ---------------------------------------------------- */

static pid_t spawn(const char *const *argv, const char *log)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        fail_msg("%s: %s%s", argv[0], strerror(rc),
                 rc == ENOENT ? " (scripts/install-deps --test installs it)" : "");
    return pid;
}

/* Burrow with a short memory: 4 commits per partition (as ballast's
 * --window 4), the latest offsets every second, no evaluation cached for
 * longer than a second; kafka-version picks the request versions of its
 * Kafka client (2.1.0, a version that client knows). It insists on a
 * ZooKeeper ensemble, but with the root path "/" only its notifier (not
 * configured here) ever needs one, so a closed port stands in for it. */
static void start_burrow(world_t *w)
{
    const char *dir = bt_tmpdir();
    char conf[300], log[300];
    int port = bt_free_port(); /* Burrow cannot say which port it bound */

    snprintf(conf, sizeof(conf), "%s/burrow.toml", dir);
    snprintf(log, sizeof(log), "%s/burrow.log", dir);
    snprintf(w->burrow_addr, sizeof(w->burrow_addr), "127.0.0.1:%d", port);
    bt_write_file(conf,
                  "[general]\npidfile=\"%s/burrow.pid\"\n"
                  "[logging]\nlevel=\"error\"\n"
                  "[zookeeper]\nservers=[\"127.0.0.1:1\"]\nroot-path=\"/\"\n"
                  "[client-profile.test]\nclient-id=\"burrow\"\nkafka-version=\"2.1.0\"\n"
                  "[cluster.test]\nclass-name=\"kafka\"\nservers=[\"%s\"]\n"
                  "client-profile=\"test\"\ntopic-refresh=1\noffset-refresh=1\n"
                  "[consumer.test]\nclass-name=\"kafka\"\ncluster=\"test\"\nservers=[\"%s\"]\n"
                  "client-profile=\"test\"\n"
                  "[httpserver.default]\naddress=\"%s\"\n"
                  "[storage.default]\nclass-name=\"inmemory\"\nworkers=4\nintervals=%d\n"
                  "expire-group=604800\nmin-distance=1\n"
                  "[evaluator.default]\nclass-name=\"caching\"\nexpire-cache=1\n",
                  dir, bt_bootstrap(), bt_bootstrap(), w->burrow_addr, WINDOW);
    w->burrow = spawn((const char *const[]){"Burrow", "--config-dir", dir, NULL}, log);
}

/* Burrow's JSON answer to @p path, or NULL (not up yet, or an error). */
static json_t *burrow_get(world_t *w, const char *path)
{
    bt_http_reply_t r = bt_http_get(w->burrow_addr, path);
    json_t *o = r.status == 200 && r.body ? json_loads(r.body, 0, NULL) : NULL;

    bt_http_reply_free(&r);
    if (o && json_is_true(json_object_get(o, "error"))) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* Situation @p s's partition 0 as Burrow's /lag gives it, or NULL. */
static json_t *burrow_partition(world_t *w, int s)
{
    char path[400];
    json_t *o, *parts, *p = NULL;

    snprintf(path, sizeof(path), "/v3/kafka/test/consumer/%s/lag", w->group[s]);
    if (!(o = burrow_get(w, path)))
        return NULL;
    parts = json_object_get(json_object_get(o, "status"), "partitions");
    if (json_array_size(parts) == 1)
        p = json_incref(json_array_get(parts, 0));
    json_decref(o);
    return p;
}

/* Waits until Burrow knows the latest offset of every situation's topic:
 * it drops the commits for a topic it does not know yet. */
static void wait_burrow_topics(world_t *w)
{
    int64_t deadline = bt_now_ms() + 60000;

    for (int s = 0; s < SITUATIONS;) {
        char path[300];
        json_t *o;
        if (waitpid(w->burrow, NULL, WNOHANG) == w->burrow) {
            children[0] = 0; /* reaped */
            fail_msg("Burrow exited at start-up: see %s/burrow.log", bt_tmpdir());
        }
        snprintf(path, sizeof(path), "/v3/kafka/test/topic/%s", w->topic[s]);
        o = burrow_get(w, path);
        if (o && json_integer_value(json_array_get(json_object_get(o, "offsets"), 0)) ==
                     w->produced[s])
            s++;
        json_decref(o);
        if (bt_now_ms() > deadline)
            fail_msg("Burrow did not learn the latest offset of %s within 60 s (Burrow 1.2.1 "
                     "asks with ListOffsets v0, which Kafka 4 refuses: run against "
                     "BALLAST_TESTENV_KAFKA=3.9)",
                     w->topic[s]);
        usleep(100 * 1000);
    }
}

/* Waits until Burrow has read the latest commit of every situation whose
 * commits this test makes (all but the dead consumer's). */
static void wait_burrow_commits(world_t *w)
{
    int64_t deadline = bt_now_ms() + 30000;

    for (int s = 0; s < SITUATIONS;) {
        json_t *p = s == DEAD ? NULL : burrow_partition(w, s);
        if (s == DEAD ||
            (p && json_integer_value(json_object_get(json_object_get(p, "end"), "offset")) ==
                      w->committed[s]))
            s++;
        json_decref(p);
        if (bt_now_ms() > deadline)
            fail_msg("Burrow did not read the commit of %s (offset %lld) within 30 s",
                     w->group[s], (long long)w->committed[s]);
        usleep(100 * 1000);
    }
}

static void start_ballast(world_t *w, const char *include)
{
    char err_path[300];

    snprintf(err_path, sizeof(err_path), "%s/ballast-lag.err", bt_tmpdir());
    w->ballast = bt_spawn_ballast(ARGV("lag", "-b", bt_bootstrap(), "--all-groups", "--include",
                                       include, "--watch", "3", "--window", "4", "--listen",
                                       "127.0.0.1:0"),
                                  err_path);
    bt_wait_listening(err_path, w->ballast, w->ballast_addr, sizeof(w->ballast_addr));
}

static json_t *ballast_get(world_t *w, const char *path)
{
    bt_http_reply_t r = bt_http_get(w->ballast_addr, path);
    json_t *o = r.status == 200 && r.body ? json_loads(r.body, 0, NULL) : NULL;

    bt_http_reply_free(&r);
    if (!o)
        fail_msg("ballast lag: GET %s failed", path);
    return o;
}

/* How many evaluations ballast has made (0 before its first: /groups then
 * answers 503). */
static long ballast_evaluations(world_t *w)
{
    bt_http_reply_t r = bt_http_get(w->ballast_addr, "/groups");
    json_t *o = r.status == 200 && r.body ? json_loads(r.body, 0, NULL) : NULL;
    long n = (long)json_integer_value(json_object_get(o, "evaluations"));

    bt_http_reply_free(&r);

    json_decref(o);
    return n;
}

/* Waits for ballast's evaluation number @p n. */
static void wait_evaluation(world_t *w, long n)
{
    int64_t deadline = bt_now_ms() + 30000;

    while (ballast_evaluations(w) < n) {
        if (bt_now_ms() > deadline)
            fail_msg("ballast lag made no evaluation %ld within 30 s", n);
        usleep(20 * 1000);
    }
}

/* Situation @p s's partition 0 as ballast's /groups/NAME gives it. */
static json_t *ballast_partition(world_t *w, int s)
{
    char path[300];
    json_t *o, *p;

    snprintf(path, sizeof(path), "/groups/%s", w->group[s]);
    o = ballast_get(w, path);
    p = json_array_get(json_object_get(o, "partitions"), 0);
    if (!p)
        fail_msg("ballast lag: no partition in %s", path);
    json_incref(p);
    json_decref(o);
    return p;
}

/* ---- the script ---------------------------------------------------------- */

static void start_member(world_t *w)
{
    char log[300];

    snprintf(log, sizeof(log), "%s/kcat.log", bt_tmpdir());
    w->member = spawn((const char *const[]){"kcat", "-C", "-q", "-b", bt_bootstrap(), "-G",
                                            w->group[DEAD], "-X", "session.timeout.ms=6000",
                                            "-X", "heartbeat.interval.ms=500", "-X",
                                            "auto.commit.interval.ms=500", w->topic[DEAD],
                                            NULL},
                      log);
    if (!bt_wait_committed_to_end(bt_bootstrap(), w->group[DEAD], w->topic[DEAD], 1, 60000))
        fail_msg("the kcat member of %s did not commit to the end within 60 s", w->group[DEAD]);
}

/* One tick: what each situation's consumer and producer do between two
 * evaluations. */
static void tick(world_t *w, int k)
{
    /* Caught up: messages, then a commit of all of them. */
    produce(w, CAUGHT_UP, 5);
    commit(w, CAUGHT_UP, w->produced[CAUGHT_UP]);
    /* Growing: 5 consumed for every 10 produced. The commit comes first:
     * Burrow stores each commit's lag against the latest offset it last
     * fetched (every second), which then includes the previous tick's
     * messages, so the stored lag grows by 5 a tick as ballast's does. */
    commit(w, GROWING, w->committed[GROWING] + 5);
    produce(w, GROWING, 10);
    /* Stalled: the same offset committed again while messages come. */
    commit(w, STALLED, w->committed[STALLED]);
    produce(w, STALLED, 5);
    /* Stopped: two more commits, then none; lag stays. */
    if (k < 2)
        commit(w, STOPPED, w->committed[STOPPED] + 2);
    /* Rewound: commits move on, one goes back (to 5), then on again. */
    commit(w, REWOUND, k == REWIND_TICK ? 5 : w->committed[REWOUND] + 2);
    /* Idle: caught up, no messages, no commits. */
    /* Dead consumer: messages keep coming; its member is killed. */
    produce(w, DEAD, 5);
    if (k == KILL_TICK) {
        kill(w->member, SIGKILL);
        assert_int_equal(bt_wait(w->member, 10000), 128 + SIGKILL);
        w->member = 0;
    }
}

static void kill_children(void)
{
    for (int i = 0; i < 2; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
}

/* The topics and messages, Burrow, a first commit of each group (the dead
 * consumer's by its member, kcat), Burrow having read them, then ballast. */
static void set_up(world_t *w)
{
    const char *prefix = bt_unique("burrow");
    char include[200];

    for (int s = 0; s < SITUATIONS; s++) {
        snprintf(w->topic[s], sizeof(w->topic[s]), "%s-t%d", prefix, s);
        snprintf(w->group[s], sizeof(w->group[s]), "%s-g%d", prefix, s);
    }
    snprintf(include, sizeof(include), "^%s-g", prefix);
    w->producer = client(RD_KAFKA_PRODUCER);
    w->admin = client(RD_KAFKA_PRODUCER);
    for (int s = 0; s < SITUATIONS; s++) {
        bt_create_topic(bt_bootstrap(), w->topic[s], 1);
        produce(w, s, s == GROWING || s == STALLED || s == STOPPED || s == REWOUND ? 100 : 10);
    }
    /* Burrow needs __consumer_offsets to exist when it starts. */
    commit(w, IDLE, 10);
    start_burrow(w);
    children[0] = w->burrow;
    wait_burrow_topics(w);
    /* The dead consumer's member first (it takes a rebalance), so that the
     * first commits of the others are a few seconds old at most when the
     * ticks begin: Burrow's STOP compares their age with their span. */
    commit(w, DEAD, 0);
    start_member(w);
    children[1] = w->member;
    for (int s = 0; s < SITUATIONS; s++)
        if (s != DEAD)
            commit(w, s, 10);
    wait_burrow_commits(w);
    start_ballast(w, include);
}

/* The ticks, each between two evaluations of ballast's. */
static void run_ticks(world_t *w)
{
    wait_evaluation(w, ballast_evaluations(w) + 1);
    for (int k = 0; k < TICKS; k++) {
        long before = ballast_evaluations(w);
        tick(w, k);
        if (ballast_evaluations(w) != before)
            fail_msg("tick %d overlapped ballast's evaluation %ld (the machine is too slow "
                     "for --watch 3)",
                     k, before + 1);
        if (k == KILL_TICK)
            children[1] = 0;
        wait_evaluation(w, before + 1);
    }
    wait_burrow_commits(w);
}

/* The time (ms) of the @p which ("start" or "end") commit that Burrow
 * stores for a partition. */
static json_int_t commit_time(json_t *partition, const char *which)
{
    return json_integer_value(json_object_get(json_object_get(partition, which), "timestamp"));
}

/* Appends to @p diffs a line for each situation whose status, on either
 * side, is not the documented one; prints every situation's. */
static void compare(world_t *w, const expected_t *want, char *diffs, size_t size)
{
    for (int s = 0; s < SITUATIONS; s++) {
        json_t *b = ballast_partition(w, s), *r = burrow_partition(w, s);
        const char *bs = json_string_value(json_object_get(b, "status"));
        const char *rs = r ? json_string_value(json_object_get(r, "status")) : "NOTFOUND";
        /* Burrow's stored commits: their span and the age of the last, which
         * its STOP compares. */
        json_int_t first = commit_time(r, "start"), last = commit_time(r, "end");
        char line[400];
        snprintf(line, sizeof(line),
                 "%s: ballast %s (lag %lld), Burrow %s (commits over %.1f s, the last %.1f s "
                 "ago); documented: %s, %s\n",
                 situation_names[s], bs ? bs : "?",
                 (long long)json_integer_value(json_object_get(b, "lag")), rs ? rs : "?",
                 (double)(last - first) / 1000, (double)(bl_wall_ms() - last) / 1000,
                 want[s].ballast, want[s].burrow);
        fputs(line, stderr);
        if (!bs || !rs || strcmp(bs, want[s].ballast) || strcmp(rs, want[s].burrow))
            strncat(diffs, line, size - strlen(diffs) - 1);
        json_decref(b);
        json_decref(r);
    }
}

static void test_statuses_agree_with_burrow(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    world_t w = {0};
    expected_t want[SITUATIONS];
    char diffs[4096] = "";

    read_documented(want);
    atexit(kill_children);
    set_up(&w);
    run_ticks(&w);
    compare(&w, want, diffs, sizeof(diffs));
    bt_term(w.ballast);
    assert_int_equal(bt_wait(w.ballast, 20000), 0);
    kill(w.burrow, SIGTERM);
    bt_wait(w.burrow, 20000);
    children[0] = 0;
    rd_kafka_destroy(w.producer);
    rd_kafka_destroy(w.admin);
    if (diffs[0])
        fail_msg("statuses that differ from docs/operations.md (\"Agreement with Burrow\"):\n%s",
                 diffs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses_agree_with_burrow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
